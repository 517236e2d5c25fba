//! Published TCP ports on the host's IPv6 loopback address, [::1], forwarded in user space.
//! The kernel cannot NAT them: it drops an IPv6 packet from or to ::1 that arrives on any
//! interface but `lo` (RFC 4291 2.5.3) and IPv6 has no `route_localnet`, so the reply to a
//! DNAT from ::1 never reaches the client (nft.rs keeps ::1 out of its IPv6 DNAT rules).
//! As Docker's docker-proxy does for the same reason, the supervisor listens on
//! [::1]:HOST_PORT itself and copies each connection to [ADDRESS6]:PORT; the sandbox sees
//! it come from the network's gateway6, as it sees masqueraded traffic.
//!
//! Threads: started after the last clone (from `Attachment::attach`), like the seccomp
//! compiler's; one accepting per port, two copying per connection. Dropped, the listeners
//! are shut down (their accept returns) so the port is free again at once; connections in
//! flight end with the supervisor.

use super::super::error::SetupError;
use crate::profile::networks::{Proto, Publish};
use std::io;
use std::net::{IpAddr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// How long a forwarded connection waits for the sandbox to accept it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether a publish covers [::1] (and so needs the forwarder): TCP, and no host address,
/// [::] or [::1].
pub fn covers_loopback(p: &Publish) -> bool {
    p.proto == Proto::Tcp
        && match p.host_ip {
            None => true,
            Some(IpAddr::V6(h)) => h.is_unspecified() || h.is_loopback(),
            Some(IpAddr::V4(_)) => false,
        }
}

/// The listeners of one sandbox.
pub struct Forwarder {
    listeners: Vec<TcpListener>,
}

impl Forwarder {
    /// Binds [::1]:HOST_PORT for every publish that covers it and starts forwarding each
    /// to the sandbox's `address6`.
    pub fn start(publish: &[Publish], address6: Ipv6Addr) -> Result<Forwarder, SetupError> {
        let mut listeners = Vec::new();
        let mut ports: Vec<u16> = Vec::new();
        for p in publish.iter().filter(|p| covers_loopback(p)) {
            // One host port published on two sandbox ports: the plan refused that already.
            if ports.contains(&p.host_port) {
                continue;
            }
            ports.push(p.host_port);
            let at = SocketAddr::from((Ipv6Addr::LOCALHOST, p.host_port));
            let step = format!("forward [::1]:{} to the sandbox", p.host_port);
            let l = TcpListener::bind(at).map_err(|e| {
                SetupError::other(&step, format!("bind([::1]:{}): {e}", p.host_port))
            })?;
            let to = SocketAddr::from((address6, p.port));
            let accepting = l
                .try_clone()
                .map_err(|e| SetupError::other(&step, format!("dup: {e}")))?;
            std::thread::Builder::new()
                .name(format!("fwd-{}", p.host_port))
                .spawn(move || accept_loop(accepting, to))
                .map_err(|e| SetupError::other(&step, format!("cannot start a thread: {e}")))?;
            listeners.push(l);
        }
        Ok(Forwarder { listeners })
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        for l in &self.listeners {
            // Wakes the accepting thread (accept fails with EINVAL), which then ends.
            let _ = nix::sys::socket::shutdown(l.as_raw_fd(), nix::sys::socket::Shutdown::Read);
        }
    }
}

fn accept_loop(l: TcpListener, to: SocketAddr) {
    loop {
        match l.accept() {
            Ok((client, _)) => {
                let _ = std::thread::Builder::new()
                    .name("fwd-conn".into())
                    .spawn(move || connect_and_copy(client, to));
            }
            // Interrupted or a client gone before accept: keep serving.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                ) => {}
            // Shut down by the drop above.
            Err(_) => return,
        }
    }
}

/// Connects to the sandbox and copies both ways; each direction's end of file is passed
/// on as a half close, so request/response protocols see what they expect.
fn connect_and_copy(client: TcpStream, to: SocketAddr) {
    let Ok(server) = TcpStream::connect_timeout(&to, CONNECT_TIMEOUT) else {
        return; // the client sees the connection close
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let up = std::thread::Builder::new()
        .name("fwd-up".into())
        .spawn(move || pipe(c2, s2));
    pipe(server, client);
    if let Ok(t) = up {
        let _ = t.join();
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::networks::parse_publish;
    use std::io::{Read, Write};

    #[test]
    fn only_tcp_publishes_that_cover_the_ipv6_loopback_are_forwarded() {
        let p = |s: &str| covers_loopback(&parse_publish(s).unwrap());
        assert!(p("8080:80") && p("[::]:8080:80") && p("[::1]:8080:80"));
        assert!(!p("127.0.0.1:8080:80") && !p("0.0.0.0:8080:80"));
        assert!(!p("[fd00::1]:8080:80") && !p("5353:53/udp"));
    }

    /// Forwards to a server on [::1] of this test (no sandbox needed to see the bytes go
    /// both ways, the half close pass on, and the port free again after the drop).
    #[test]
    fn a_connection_is_copied_both_ways_and_the_port_is_freed_on_drop() {
        let server = TcpListener::bind("[::1]:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let echo = std::thread::spawn(move || {
            let (mut s, _) = server.accept().unwrap();
            let mut got = String::new();
            s.read_to_string(&mut got).unwrap();
            s.write_all(format!("got {got}").as_bytes()).unwrap();
        });
        // A free port for the forwarder's listener.
        let host_port = TcpListener::bind("[::1]:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let publish = parse_publish(&format!("{host_port}:{port}")).unwrap();
        let f = Forwarder::start(&[publish], Ipv6Addr::LOCALHOST).unwrap();
        let mut c = TcpStream::connect(("::1", host_port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"ping").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).unwrap();
        assert_eq!(answer, "got ping");
        echo.join().unwrap();
        drop(f);
        let freed = (0..50).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            TcpListener::bind(("::1", host_port)).is_ok()
        });
        assert!(freed, "[::1]:{host_port} is still bound after the drop");
    }
}
