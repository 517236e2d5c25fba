//! Bridge networks, in the bed's own network namespace (tests/systemd/bed.sh gives it one):
//! every address a test talks to is inside it (the sandboxes, the bridge's gateway). Each
//! test compares the bed's links, addresses and routes, and stockade's network state, before
//! and after.

use super::{bed, stockade};
use crate::common::{out, text};
use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// What a sandbox on a network may leave behind: the bed's interfaces, addresses, routes
/// and stockade's leases.
fn net_snapshot() -> Vec<String> {
    vec![
        out("ip -j link show"),
        out("ip -j addr show"),
        out("ip -j route show"),
        out("find /run/stockade/networks -mindepth 1 2>/dev/null || true"),
    ]
}

fn write_profile(name: &str, body: &str) -> String {
    let dir = "/tmp/stockade-net-tests";
    std::fs::create_dir_all(dir).unwrap();
    let path = format!("{dir}/{name}.toml");
    std::fs::write(&path, body).unwrap();
    path
}

/// Accepts one connection within `limit`, returning the peer's address and what it sent.
fn accept_one(l: &TcpListener, limit: Duration) -> Option<(std::net::SocketAddr, String)> {
    l.set_nonblocking(true).unwrap();
    let end = Instant::now() + limit;
    while Instant::now() < end {
        match l.accept() {
            Ok((mut s, peer)) => {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut got = String::new();
                let _ = s.read_to_string(&mut got);
                return Some((peer, got));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    None
}

#[test]
fn a_bridge_sandbox_has_eth0_reaches_its_gateway_and_leaves_nothing_behind() {
    bed();
    let before = net_snapshot();
    // Listening in the bed's namespace: the sandbox reaches it through the gateway address.
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let path = write_profile(
        "gateway",
        &format!(
            r#"[exec]
command = ["/bin/bash", "-c", "ip -4 -o addr show dev eth0; ip -4 route show default; echo hello >/dev/tcp/10.89.0.1/{port}"]
[network]
mode = "bridge"
"#
        ),
    );
    let run = std::thread::spawn(move || stockade(&["run", &path]).output().unwrap());
    let got = accept_one(&listener, Duration::from_secs(20));
    let o = run.join().unwrap();
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}{}", text(&o.stderr));
    let (peer, said) = got.expect("the sandbox did not reach the gateway");
    assert_eq!(said.trim(), "hello");
    // eth0 carries the leased address, which is the one the gateway saw; the default route
    // goes via the gateway.
    assert!(
        stdout.contains(&format!("inet {}/24", peer.ip())),
        "{stdout} (peer {peer})"
    );
    assert!(peer.ip().to_string().starts_with("10.89.0."), "{peer}");
    assert!(
        stdout.contains("default via 10.89.0.1 dev eth0"),
        "{stdout}"
    );
    assert_eq!(
        net_snapshot(),
        before,
        "the bridge, its addresses or a lease were left behind"
    );
}
