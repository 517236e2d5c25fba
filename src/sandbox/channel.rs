//! The typed protocol between the supervisor and the sandbox's init and service processes,
//! over a close-on-exec SOCK_SEQPACKET socketpair (one message per datagram).
//!
//! The supervisor tells the child when the id maps are written (proceed) and when the
//! sandbox is in its cgroup (placed); init says when every namespace is made (ready) and
//! waits until the supervisor has recorded the sandbox (start) before it forks the service.
//! The child reports a failure with its exit code and a message. A successful exec closes the last child copy of the
//! socket, so the supervisor reading end-of-file means "the service is running".

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

enum Message {
    /// Supervisor → child: maps are written, go on.
    Proceed,
    /// Supervisor → child: the sandbox is in its final cgroup; the service may start, with
    /// the seccomp filters the supervisor compiled meanwhile.
    Placed(Vec<u8>),
    /// Child → supervisor: every namespace is made; init waits for [`Message::Start`].
    Ready,
    /// Supervisor → child: the sandbox is recorded; fork and exec the service.
    Start,
    /// Child → supervisor: setup or exec failed.
    Failed { exit_code: u8, message: String },
}

impl Message {
    fn encode(&self) -> Vec<u8> {
        match self {
            Message::Proceed => vec![b'P'],
            Message::Ready => vec![b'R'],
            Message::Start => vec![b'S'],
            Message::Placed(filters) => {
                let mut v = vec![b'C'];
                v.extend_from_slice(filters);
                v
            }
            Message::Failed { exit_code, message } => {
                let mut v = vec![b'F', *exit_code];
                v.extend_from_slice(message.as_bytes());
                v
            }
        }
    }

    fn decode(buf: &[u8]) -> Option<Message> {
        match buf {
            [b'P'] => Some(Message::Proceed),
            [b'R'] => Some(Message::Ready),
            [b'S'] => Some(Message::Start),
            [b'C', rest @ ..] => Some(Message::Placed(rest.to_vec())),
            [b'F', code, rest @ ..] => Some(Message::Failed {
                exit_code: *code,
                message: String::from_utf8_lossy(rest).into_owned(),
            }),
            _ => None,
        }
    }
}

fn send(sock: &mut UnixStream, m: &Message) -> std::io::Result<()> {
    // write(2), not the send(2) std uses for sockets: a failed exec is reported after the
    // seccomp filter is in place, and an allow-list without @network-io denies send.
    let bytes = m.encode();
    loop {
        match nix::unistd::write(&*sock, &bytes) {
            Err(nix::errno::Errno::EINTR) => continue,
            Ok(n) if n == bytes.len() => return Ok(()),
            Ok(_) => return Err(std::io::ErrorKind::WriteZero.into()),
            Err(e) => return Err(e.into()),
        }
    }
}

fn recv(sock: &mut UnixStream) -> std::io::Result<Option<Message>> {
    use nix::errno::Errno;
    use nix::sys::socket::MsgFlags;
    use std::os::fd::AsRawFd;
    loop {
        // The next datagram's size first, so a message carrying filters gets a buffer that
        // fits and the small ones need no large, freshly zeroed allocation.
        let peeked = nix::sys::socket::recv(
            sock.as_raw_fd(),
            &mut [],
            MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC,
        );
        let read = peeked.and_then(|size| {
            let mut buf = vec![0u8; size.max(1)];
            let n = nix::sys::socket::recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty())?;
            buf.truncate(n);
            Ok(buf)
        });
        match read {
            Ok(buf) if buf.is_empty() => return Ok(None),
            Ok(buf) => return Ok(Message::decode(&buf)),
            Err(Errno::EINTR) => continue,
            // The peer closed with our message unread (init failed before reading "placed"):
            // the kernel reports that once, ahead of what the peer sent before closing.
            Err(Errno::ECONNRESET) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// A failure the sandbox reported before the service could start.
#[derive(Debug, Clone)]
pub struct ChildFailure {
    pub exit_code: u8,
    pub message: String,
}

/// The supervisor's end.
pub struct SupervisorEnd(UnixStream);

/// The end held by init and then by the service until its exec.
pub struct ChildEnd(UnixStream);

/// A close-on-exec SOCK_SEQPACKET pair: message boundaries kept, EOF when the peer is gone.
fn seqpacket_pair() -> nix::Result<(UnixStream, UnixStream)> {
    let (a, b): (OwnedFd, OwnedFd) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    Ok((UnixStream::from(a), UnixStream::from(b)))
}

pub fn pair() -> nix::Result<(SupervisorEnd, ChildEnd)> {
    let (a, b) = seqpacket_pair()?;
    Ok((SupervisorEnd(a), ChildEnd(b)))
}

impl SupervisorEnd {
    pub fn tell_proceed(&mut self) -> std::io::Result<()> {
        send(&mut self.0, &Message::Proceed)
    }

    pub fn tell_placed(&mut self, filters: Vec<u8>) -> std::io::Result<()> {
        send(&mut self.0, &Message::Placed(filters))
    }

    /// Blocks until init has made every namespace (Ok(true)) or reported a failure (Err).
    /// Ok(false): init ended without a word; the caller learns why from waitpid.
    pub fn wait_for_ready(&mut self) -> Result<bool, ChildFailure> {
        loop {
            match recv(&mut self.0) {
                Ok(Some(Message::Ready)) => return Ok(true),
                Ok(Some(Message::Failed { exit_code, message })) => {
                    return Err(ChildFailure { exit_code, message })
                }
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(false),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(ChildFailure {
                        exit_code: 125,
                        message: format!("lost contact with the sandbox: {e}"),
                    })
                }
            }
        }
    }

    pub fn tell_start(&mut self) -> std::io::Result<()> {
        send(&mut self.0, &Message::Start)
    }

    /// Blocks until the service has exec'd (Ok) or a failure is reported (Err). End of file
    /// without a report means the child died silently; the caller learns why from waitpid.
    pub fn wait_for_exec(&mut self) -> Result<(), ChildFailure> {
        loop {
            match recv(&mut self.0) {
                Ok(Some(Message::Failed { exit_code, message })) => {
                    return Err(ChildFailure { exit_code, message })
                }
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(ChildFailure {
                        exit_code: 125,
                        message: format!("lost contact with the sandbox: {e}"),
                    })
                }
            }
        }
    }
}

impl ChildEnd {
    /// Waits for the supervisor; false when it went away (then the child must exit).
    pub fn wait_for_proceed(&mut self) -> bool {
        matches!(recv(&mut self.0), Ok(Some(Message::Proceed)))
    }

    /// Waits until the supervisor has placed the sandbox in its cgroup; returns the encoded
    /// seccomp filters, or None when the supervisor went away.
    pub fn wait_for_placed(&mut self) -> Option<Vec<u8>> {
        match recv(&mut self.0) {
            Ok(Some(Message::Placed(filters))) => Some(filters),
            _ => None,
        }
    }

    /// Tells the supervisor every namespace is made and waits until it says the service
    /// may start; false when it went away (then the child must exit).
    pub fn report_ready_and_wait_for_start(&mut self) -> bool {
        send(&mut self.0, &Message::Ready).is_ok()
            && matches!(recv(&mut self.0), Ok(Some(Message::Start)))
    }

    pub fn report_failure(&mut self, exit_code: u8, message: &str) {
        // If the supervisor is gone there is no one left to tell; the exit code remains.
        let _ = send(
            &mut self.0,
            &Message::Failed {
                exit_code,
                message: message.to_owned(),
            },
        );
    }
}

/// How the service ended, as init saw it (the supervisor only sees init's exit status, which
/// cannot tell "exit 137" from "killed by SIGKILL").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceEnd {
    Exited(u8),
    Killed(i32),
}

/// Init's end of the status channel.
pub struct StatusWriter(UnixStream);

/// The supervisor's end of the status channel.
pub struct StatusReader(UnixStream);

pub fn status_pair() -> nix::Result<(StatusReader, StatusWriter)> {
    let (a, b) = seqpacket_pair()?;
    Ok((StatusReader(a), StatusWriter(b)))
}

impl StatusWriter {
    /// Reports the service's end, then waits until the supervisor has read what it needs
    /// from the cgroup (init's exit may remove it) or has gone away.
    pub fn report(&mut self, end: ServiceEnd) {
        let msg = match end {
            ServiceEnd::Exited(c) => [b'E', c],
            ServiceEnd::Killed(s) => [b'K', s as u8],
        };
        if self.0.write_all(&msg).is_ok() {
            let mut ack = [0u8; 1];
            let _ = self.0.read(&mut ack);
        }
    }
}

impl StatusReader {
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.0)
    }

    /// The report, if one is waiting (never blocks).
    pub fn receive(&mut self) -> Option<ServiceEnd> {
        let _ = self.0.set_nonblocking(true);
        let mut buf = [0u8; 2];
        match self.0.read(&mut buf) {
            Ok(2) if buf[0] == b'E' => Some(ServiceEnd::Exited(buf[1])),
            Ok(2) if buf[0] == b'K' => Some(ServiceEnd::Killed(i32::from(buf[1]))),
            _ => None,
        }
    }

    /// Lets init exit.
    pub fn release(&mut self) {
        let _ = self.0.write_all(b"A");
    }
}

/// `stockade exec`'s channel, from the process that joins the sandbox (and the command it
/// forks, until its exec) to the stockade that waits: the command's host pid, with the
/// terminal's controlling end when `--tty` asked for one, or a failure. End of file after
/// the pid means the command exec'd.
pub fn join_pair() -> nix::Result<(ExecWaiter, JoinerEnd)> {
    let (a, b) = seqpacket_pair()?;
    Ok((ExecWaiter(a), JoinerEnd(b)))
}

/// The waiting stockade's end.
pub struct ExecWaiter(UnixStream);

/// The joining process's end, and its command's copy until exec.
pub struct JoinerEnd(UnixStream);

/// What the waiting stockade learned when the channel closed.
pub struct Joined {
    /// The command's host pid, once it was forked.
    pub pid: Option<u32>,
    /// The terminal's controlling (master) end, for `--tty`.
    pub terminal: Option<OwnedFd>,
    /// Why the join or the command's exec failed, if it did.
    pub failure: Option<ChildFailure>,
}

impl JoinerEnd {
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.0)
    }

    /// Tells the waiting stockade the command's host pid, handing over the terminal's
    /// controlling end with it.
    pub fn report_started(&mut self, pid: u32, terminal: Option<&OwnedFd>) -> nix::Result<()> {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
        use std::os::fd::AsRawFd;
        let mut bytes = vec![b'J'];
        bytes.extend_from_slice(&pid.to_ne_bytes());
        let iov = [std::io::IoSlice::new(&bytes)];
        let fds: Vec<std::os::fd::RawFd> = terminal.iter().map(|t| t.as_raw_fd()).collect();
        let cmsg = [ControlMessage::ScmRights(&fds)];
        let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
        sendmsg::<UnixAddr>(self.0.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None).map(drop)
    }

    pub fn report_failure(&mut self, exit_code: u8, message: &str) {
        // If the waiting stockade is gone there is no one left to tell.
        let _ = send(
            &mut self.0,
            &Message::Failed {
                exit_code,
                message: message.to_owned(),
            },
        );
    }
}

impl ExecWaiter {
    /// Reads until the channel closes: every copy of the other end is gone (the joining
    /// process exited and the command exec'd or died).
    pub fn wait_for_exec(&mut self) -> Joined {
        use std::os::fd::AsFd;
        let mut joined = Joined {
            pid: None,
            terminal: None,
            failure: None,
        };
        loop {
            let mut buf = vec![0u8; 4096];
            let (n, fds) = match crate::sys::recv_with_fds(self.0.as_fd(), &mut buf) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    joined.failure.get_or_insert(ChildFailure {
                        exit_code: 125,
                        message: format!("lost contact with the joining process: {e}"),
                    });
                    return joined;
                }
                Ok(got) => got,
            };
            let mut fds = fds.into_iter();
            if n == 0 {
                return joined;
            }
            match &buf[..n] {
                [b'J', pid @ ..] if pid.len() == 4 => {
                    joined.pid = Some(u32::from_ne_bytes([pid[0], pid[1], pid[2], pid[3]]));
                    joined.terminal = fds.next();
                }
                other => {
                    if let Some(Message::Failed { exit_code, message }) = Message::decode(other) {
                        joined
                            .failure
                            .get_or_insert(ChildFailure { exit_code, message });
                    }
                }
            }
        }
    }
}
