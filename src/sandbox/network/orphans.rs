//! The TCP connections a sandbox's processes closed but the kernel still carries: a
//! closed socket that has not finished its goodbye (FIN_WAIT1/2, CLOSING, LAST_ACK) belongs
//! to no process but keeps its network namespace alive, for up to `tcp_fin_timeout` (60 s)
//! or its retransmissions (minutes) when the other end is unreachable. The namespace holds
//! the veth, so the veth would stay on the host that long. Once the sandbox's last
//! process is gone the supervisor aborts them (RST, as the kernel's `ss -K` does), and the
//! kernel tears the namespace down at once.
//!
//! sock_diag messages by hand (`inet_diag_req_v2` and `inet_diag_msg` are fixed structs):
//! no crate of the netlink family covers SOCK_DESTROY.

use crate::sandbox::nlmsg;
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr};
use nix::sched::{setns, CloneFlags};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const SOCK_DESTROY: u16 = 21;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
/// include/net/tcp_states.h: the states a closed socket passes through while it still
/// has something to say.
const CLOSING_STATES: u32 = 1 << 4 | 1 << 5 | 1 << 9 | 1 << 11;
/// `inet_diag_sockid`: ports, addresses, interface, cookie.
const SOCKID: usize = 48;

/// What the supervisor keeps of init's network namespace from `attach` on: the namespace
/// itself, and its TCP counters. sockstat counts every TCP socket still hashed, closed ones
/// included, not TIME_WAIT's (which hold nothing); files opened through init's /proc entry
/// stay bound to the namespace once init is gone, so reading them needs no thread.
pub struct Netns {
    ns: File,
    counters: Vec<(io::Result<File>, &'static str, u8)>,
}

impl Netns {
    pub fn new(init: u32, ns: File) -> Netns {
        let counters = [
            ("sockstat", "TCP:", libc::AF_INET),
            ("sockstat6", "TCP6:", libc::AF_INET6),
        ]
        .into_iter()
        .map(|(file, row, family)| {
            let f = File::open(format!("/proc/{init}/net/{file}"));
            (f, row, family as u8)
        })
        .collect();
        Netns { ns, counters }
    }

    /// Aborts every TCP connection of the namespace that no process holds, and returns how
    /// many there were. An error (a kernel without `inet_diag` or its destroy support)
    /// means they may live on: the caller deletes the veth itself.
    pub fn abort_orphans(self) -> io::Result<usize> {
        // A dump walks the kernel's whole connection table, about 2 ms a family on this
        // machine, for what is nearly always none: the counters decide whether to look.
        let families: Vec<u8> = self
            .counters
            .into_iter()
            .filter(|(f, row, _)| in_use(f, row))
            .map(|(_, _, family)| family)
            .collect();
        if families.is_empty() {
            return Ok(0);
        }
        let ns = self.ns;
        // A thread of its own enters the namespace: the socket stays bound to it, and the
        // supervisor's own thread never leaves the host's network.
        let sock = std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || -> io::Result<Socket> {
                setns(&ns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                let mut s = Socket::new(NETLINK_SOCK_DIAG)?;
                s.bind_auto()?;
                s.connect(&SocketAddr::new(0, 0))?;
                Ok(s)
            })?
            .join()
            .map_err(|_| io::Error::other("the thread entering the sandbox's network died"))??;
        abort(sock, &families)
    }
}

/// Whether a sockstat file's `ROW inuse N` has an N other than 0. A file that could not be
/// opened counts as in use unless it is absent (IPv6 disabled: no sockstat6).
fn in_use(file: &io::Result<File>, row: &str) -> bool {
    let mut f = match file {
        Ok(f) => f,
        Err(e) => return e.kind() != io::ErrorKind::NotFound,
    };
    let mut text = String::new();
    if f.seek(SeekFrom::Start(0))
        .and_then(|_| f.read_to_string(&mut text))
        .is_err()
    {
        return true;
    }
    text.lines()
        .find_map(|l| l.strip_prefix(row))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .is_none_or(|n| n != "0")
}

/// Lists the closing TCP sockets of `families` through `sock` (bound to the sandbox's
/// namespace) and destroys those no process holds.
fn abort(mut sock: Socket, families: &[u8]) -> io::Result<usize> {
    let mut closed = Vec::new();
    for &family in families {
        let req = diag_request(family, CLOSING_STATES, &[0; SOCKID]);
        for msg in exchange(&mut sock, SOCK_DIAG_BY_FAMILY, NLM_F_DUMP, &req)? {
            // inet_diag_msg: family, state, timer, retrans, id, expires, rqueue, wqueue,
            // uid, inode. No inode: no process holds it.
            if msg.len() >= 72 && msg[68..72] == [0; 4] {
                closed.push((msg[0], msg[4..4 + SOCKID].to_vec()));
            }
        }
    }
    for (family, id) in &closed {
        let req = diag_request(*family, u32::MAX, id);
        match exchange(&mut sock, SOCK_DESTROY, NLM_F_ACK, &req) {
            // Gone meanwhile: what was wanted.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            other => drop(other?),
        }
    }
    Ok(closed.len())
}

/// `inet_diag_req_v2` for TCP: family, protocol, extensions, pad, states, id.
fn diag_request(family: u8, states: u32, id: &[u8]) -> Vec<u8> {
    let mut r = vec![family, libc::IPPROTO_TCP as u8, 0, 0];
    r.extend_from_slice(&states.to_ne_bytes());
    r.extend_from_slice(id);
    r
}

/// Sends one request and returns the payloads of the answers up to the acknowledgement or
/// the end of the dump; a negative acknowledgement is the kernel's errno.
fn exchange(sock: &mut Socket, kind: u16, flags: u16, payload: &[u8]) -> io::Result<Vec<Vec<u8>>> {
    sock.send(&nlmsg::request(kind, flags, payload), 0)?;
    let mut out = Vec::new();
    loop {
        let (data, _) = sock.recv_from_full()?;
        for (kind, body) in nlmsg::messages(&data) {
            match kind {
                nlmsg::NLMSG_DONE => return Ok(out),
                nlmsg::NLMSG_ERROR => {
                    return match nlmsg::error_code(body) {
                        0 => Ok(out),
                        c => Err(io::Error::from_raw_os_error(-c)),
                    }
                }
                _ => out.push(body.to_vec()),
            }
        }
    }
}
