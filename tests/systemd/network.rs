//! Bridge networks, in the bed's own network namespace (tests/systemd/bed.sh gives it one):
//! every address a test talks to is inside it (the sandboxes, the bridge's gateways, IPv4
//! and IPv6). Each test compares the bed's links, addresses and routes of both families, and
//! stockade's network state, before and after.

use super::{bed, stockade};
use crate::common::{out, text};
use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// The tests share the bed's one network namespace and compare it before and after: one at
/// a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static NET: std::sync::Mutex<()> = std::sync::Mutex::new(());
    NET.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a sandbox on a network may leave behind: the bed's interfaces, addresses, routes
/// and stockade's leases.
fn net_snapshot() -> Vec<String> {
    vec![
        out("ip -j link show"),
        out("ip -j addr show"),
        out("ip -j route show"),
        out("ip -6 -j route show"),
        out("find /run/stockade/networks -mindepth 1 2>/dev/null || true"),
    ]
}

/// What `snap` shows once the kernel has finished: a sandbox's veth goes with its network
/// namespace, which the kernel tears down in its own worker moments after the sandbox's
/// last process (stockade does not wait for that). Waits at most 5 s for `before` to be
/// back and returns what there is then.
fn settled(before: &[String], snap: impl Fn() -> Vec<String>) -> Vec<String> {
    let mut now = Vec::new();
    crate::common::wait_until(Duration::from_secs(5), || {
        now = snap();
        now == before
    });
    now
}

/// A listener in the bed's namespace on a free port: sandboxes reach it at the gateway.
fn listen() -> (TcpListener, u16) {
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

/// A network with IPv6 beside IPv4, defined in /etc/stockade/networks for the test's
/// length; removed on drop.
struct Net6 {
    path: String,
}

impl Net6 {
    fn define(name: &str, subnet: &str, subnet6: &str) -> Net6 {
        std::fs::create_dir_all("/etc/stockade/networks").unwrap();
        let path = format!("/etc/stockade/networks/{name}.toml");
        std::fs::write(
            &path,
            format!("subnet = \"{subnet}\"\nsubnet6 = \"{subnet6}\"\n"),
        )
        .unwrap();
        Net6 { path }
    }
}

impl Drop for Net6 {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
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
                // The peer connects before its command runs: under load (twenty sandboxes
                // starting at once on two cores) that command may take seconds to start.
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
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
    let _one = serial();
    let before = net_snapshot();
    // Listening in the bed's namespace: the sandbox reaches it through the gateway address.
    let (listener, port) = listen();
    let path = write_profile(
        "gateway",
        &format!(
            r#"[exec]
command = ["/bin/bash", "-c", "ip -4 -o addr show dev eth0; ip -4 route show default; cat /etc/hosts /etc/resolv.conf; echo hello >/dev/tcp/10.89.0.1/{port}"]
[network]
mode = "bridge"
dns = ["192.0.2.53"]
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
    // The generated /etc/hosts names the sandbox at its address; resolv.conf has the
    // profile's name server.
    assert!(
        stdout.contains(&format!("{}\tgateway\n", peer.ip())),
        "{stdout}"
    );
    assert!(stdout.contains("nameserver 192.0.2.53\n"), "{stdout}");
    assert_eq!(
        settled(&before, net_snapshot),
        before,
        "the bridge, its addresses or a lease were left behind"
    );
}

/// A connection the service closed whose other end has not closed yet stays in the kernel
/// (FIN_WAIT2, no process) after the sandbox is gone, and with it the sandbox's network
/// namespace and its veth, for tcp_fin_timeout (60 s): stockade aborts it, so the veth goes
/// at once; where it cannot abort it (a fault stands in for a kernel without inet_diag's
/// destroy), it deletes the veth itself. The listener never accepts until the check is over.
#[test]
fn a_connection_left_half_closed_does_not_keep_the_veth() {
    bed();
    let _one = serial();
    for fault in ["", "abort the closed connections"] {
        let before = net_snapshot();
        let (listener, port) = listen();
        let path = write_profile(
            "half-closed",
            &format!(
                "[exec]\ncommand = [\"/bin/bash\", \"-c\", \"echo bye >/dev/tcp/10.89.0.1/{port}\"]\n[network]\nmode = \"bridge\"\n"
            ),
        );
        let o = stockade(&["run", &path])
            .env("STOCKADE_TEST_FAULT", fault)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
        let after = settled(&before, net_snapshot);
        drop(listener);
        assert_eq!(
            after, before,
            "the veth (or more) stayed (fault: {fault:?})"
        );
    }
}

/// A namespace someone else still holds keeps the veth after the sandbox is gone, but off
/// the bridge from the moment stockade stops: the address's next lease (the same MAC) meets
/// no stale port. The bridge stays (a keeper sandbox is on it), so only stockade's own
/// detach can take the port off.
#[test]
fn a_veth_whose_namespace_is_held_leaves_the_bridge_at_stop() {
    bed();
    let _one = serial();
    let before = net_snapshot();
    let sleeper = |name: &str| {
        let path = write_profile(
            name,
            "[exec]\ncommand = [\"/bin/sleep\", \"60\"]\n[network]\nmode = \"bridge\"\n",
        );
        stockade(&["run", "--name", name, &path]).spawn().unwrap()
    };
    let keeper = sleeper("keeper");
    let held = sleeper("held");
    let record = "/run/stockade/instances/held.json";
    let up = crate::common::wait_until(Duration::from_secs(15), || {
        std::fs::read_to_string(record).is_ok_and(|r| r.contains("\"veth\""))
    });
    assert!(up, "the held sandbox never recorded its veth");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(record).unwrap()).unwrap();
    let veth = r["network"]["veth"].as_str().unwrap().to_owned();
    let init = r["init"]["pid"].as_u64().unwrap();
    let ns = std::fs::File::open(format!("/proc/{init}/ns/net")).unwrap();
    let on_bridge = out(&format!("ip -j link show {veth}"));
    terminate(held);
    let after_stop = out(&format!("ip -j link show {veth}"));
    drop(ns);
    terminate(keeper);
    let after = settled(&before, net_snapshot);
    assert!(
        on_bridge.contains("\"master\":\"stockade0\""),
        "{on_bridge}"
    );
    assert!(
        after_stop.contains(&format!("\"ifname\":\"{veth}\"")) && !after_stop.contains("master"),
        "the held veth is gone or still on the bridge: {after_stop}"
    );
    assert_eq!(after, before, "left behind");
}

/// After a SIGKILL of stockade nobody aborts such a connection: `stockade cleanup` (as the
/// next stockade command would) deletes the veth the stale lease names. Here the service's
/// goodbye is never answered (a rule of the test's own table drops what reaches the
/// listener's port once the connection is up), so its socket retransmits in FIN_WAIT1,
/// holding the namespace for minutes.
#[test]
fn after_sigkill_a_connection_still_closing_does_not_keep_the_veth() {
    bed();
    let _one = serial();
    let before = net_snapshot();
    let (listener, port) = listen();
    let path = write_profile(
        "closing-killed",
        &format!(
            "[exec]\ncommand = [\"/bin/bash\", \"-c\", \"exec 3<>/dev/tcp/10.89.0.1/{port}; sleep 2; echo bye >&3; exec 3>&-; exec sleep 60\"]\n[network]\nmode = \"bridge\"\n"
        ),
    );
    let mut child = stockade(&["run", &path]).spawn().unwrap();
    let up = crate::common::wait_until(Duration::from_secs(15), || {
        out("ss -Htn state established").contains(&format!(":{port} "))
    });
    let drop_rule = format!(
        "add table inet stktest; add chain inet stktest in {{ type filter hook input priority 0; }}; add rule inet stktest in tcp dport {port} drop"
    );
    let ruled = std::process::Command::new("nft")
        .arg(&drop_rule)
        .status()
        .unwrap();
    // The service writes, closes and sleeps; nothing it sends is answered.
    std::thread::sleep(Duration::from_secs(3));
    child.kill().unwrap();
    child.wait().unwrap();
    let o = stockade(&["cleanup"]).output().unwrap();
    let after = settled(&before, net_snapshot);
    let _ = std::process::Command::new("nft")
        .arg("delete table inet stktest")
        .status();
    drop(listener);
    assert!(up && ruled.success(), "the service never connected");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        after, before,
        "the veth (or more) stayed after SIGKILL and cleanup"
    );
}

/// Everything networking may change in the bed, nftables and sysctls included.
fn full_snapshot() -> Vec<String> {
    let mut s = net_snapshot();
    s.push(out("nft -j list ruleset"));
    s.push(out("cat /proc/sys/net/ipv4/ip_forward"));
    s.push(out("cat /proc/sys/net/ipv6/conf/all/forwarding"));
    s
}

#[test]
fn an_ipv6_network_gives_eth0_its_address_and_the_sandbox_reaches_gateway6() {
    bed();
    let _one = serial();
    // The bed's namespace has IPv6 (else nothing below would mean anything).
    assert_eq!(out("cat /proc/sys/net/ipv6/conf/all/disable_ipv6"), "0");
    let _net = Net6::define("v6", "10.92.0.0/24", "fd89::/64");
    let before = full_snapshot();
    // Listening on the bed's IPv6 addresses only: the sandbox reaches it at gateway6.
    let listener = TcpListener::bind("[::]:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let path = write_profile(
        "gateway6",
        &format!(
            r#"[exec]
command = ["/bin/bash", "-c", "ip -6 -o addr show dev eth0 scope global; ip -6 route show default; cat /etc/hosts; echo hello6 >/dev/tcp/fd89::1/{port}"]
[network]
mode = "bridge"
network = "v6"
dns = ["fd89::53"]
"#
        ),
    );
    let t = Instant::now();
    let run = std::thread::spawn(move || stockade(&["run", &path]).output().unwrap());
    let got = accept_one(&listener, Duration::from_secs(20));
    let o = run.join().unwrap();
    let took = t.elapsed();
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}{}", text(&o.stderr));
    let (peer, said) = got.expect("the sandbox did not reach gateway6 over IPv6");
    assert_eq!(said.trim(), "hello6");
    // The first address of the subnet6 after the gateway's, on eth0 with no duplicate
    // address detection pending (it is usable at once, never "tentative").
    assert_eq!(peer.ip().to_string(), "fd89::2", "{stdout}");
    assert!(
        stdout.contains("inet6 fd89::2/64 scope global nodad"),
        "{stdout}"
    );
    assert!(!stdout.contains("tentative"), "{stdout}");
    assert!(stdout.contains("default via fd89::1 dev eth0"), "{stdout}");
    assert!(stdout.contains("fd89::2\tgateway6\n"), "{stdout}");
    // Without DAD the whole run takes no DAD second (under load it may still be slow).
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert_eq!(
        settled(&before, full_snapshot),
        before,
        "the bridge, its IPv6 address, a route, a lease or IPv6 forwarding was left behind"
    );
}

#[test]
fn bad_ipv6_network_values_are_refused_naming_file_line_and_key_and_leave_nothing() {
    bed();
    let _one = serial();
    let before = full_snapshot();
    std::fs::create_dir_all("/etc/stockade/networks").unwrap();
    std::fs::write(
        "/etc/stockade/networks/bad6.toml",
        "subnet = \"10.93.0.0/24\"\nsubnet6 = \"fd89::1/64\"\n",
    )
    .unwrap();
    std::fs::write(
        "/etc/stockade/networks/good6.toml",
        "subnet = \"10.93.0.0/24\"\nsubnet6 = \"fd89::/64\"\n",
    )
    .unwrap();
    let run = |name: &str, extra: &str| {
        let path = write_profile(
            name,
            &format!("[exec]\ncommand = [\"/bin/true\"]\n[network]\nmode = \"bridge\"\n{extra}"),
        );
        let o = stockade(&["run", &path]).output().unwrap();
        (o.status.code(), text(&o.stderr), path)
    };
    let malformed = run("bad6", "network = \"bad6\"\n");
    let outside = run("outside6", "network = \"good6\"\naddress6 = \"fd90::5\"\n");
    let without = run("without6", "address6 = \"fd89::5\"\n");
    let _ = std::fs::remove_file("/etc/stockade/networks/bad6.toml");
    let _ = std::fs::remove_file("/etc/stockade/networks/good6.toml");
    let (code, err, _) = &malformed;
    assert_ne!(*code, Some(0), "{err}");
    assert!(
        err.contains(
            "/etc/stockade/networks/bad6.toml:2:11: subnet6: `fd89::1/64` has host bits set"
        ),
        "{err}"
    );
    let (code, err, path) = &outside;
    assert_ne!(*code, Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "{path}:6:12: network.address6: fd90::5 is outside the subnet6 fd89::/64"
        )),
        "{err}"
    );
    let (code, err, path) = &without;
    assert_ne!(*code, Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "{path}:5:12: network.address6: network `default` has no IPv6 (no subnet6)"
        )),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        settled(&before, full_snapshot),
        before,
        "a refused profile left something behind"
    );
}

const REDIS: &str = r#"include = ["include/base.toml"]
[exec]
command = ["/usr/bin/redis-server", "--port", "6379", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no", "--daemonize", "no"]
user = "redis"
group = "redis"
[security]
syscall_filter = ["@system-service"]
[network]
mode = "bridge"
"#;

/// Runs `cmd` in a throwaway sandbox on `network`; returns its exit status and output.
fn client(name: &str, network: &str, cmd: &str) -> (bool, String) {
    let path = write_profile(
        name,
        &format!("[exec]\ncommand = [\"/bin/sh\", \"-c\", {cmd:?}]\n[network]\nmode = \"bridge\"\nnetwork = \"{network}\"\n"),
    );
    let o = stockade(&["run", &path]).output().unwrap();
    (
        o.status.success(),
        format!("{}{}", text(&o.stdout), text(&o.stderr)),
    )
}

#[test]
fn a_published_redis_answers_the_host_and_its_network_but_not_another_network() {
    bed();
    let _one = serial();
    std::fs::create_dir_all("/etc/stockade/networks").unwrap();
    std::fs::write(
        "/etc/stockade/networks/other.toml",
        "subnet = \"10.90.0.0/24\"\n",
    )
    .unwrap();
    let before = full_snapshot();
    // Beside the shipped profiles, for its include.
    let path = "/etc/stockade/profiles/redis-bridge.toml";
    std::fs::write(
        path,
        format!("{REDIS}address = \"10.89.0.50\"\npublish = [\"127.0.0.1:16479:6379\"]\n"),
    )
    .unwrap();
    let redis = stockade(&["run", path])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ping = || out("timeout 2 redis-cli -h 127.0.0.1 -p 16479 ping");
    let answered = crate::common::wait_until(Duration::from_secs(15), || ping() == "PONG");
    let same = client(
        "same-net",
        "default",
        "timeout 5 redis-cli -h 10.89.0.50 ping",
    );
    let t = Instant::now();
    let other = client(
        "other-net",
        "other",
        "timeout 2 redis-cli -h 10.89.0.50 ping",
    );
    let other_took = t.elapsed();
    let o = terminate(redis);
    let _ = std::fs::remove_file("/etc/stockade/networks/other.toml");
    assert!(
        answered,
        "redis-cli -p 16479 ping from the host got no PONG: {}",
        text(&o.stderr)
    );
    assert!(
        same.0 && same.1.contains("PONG"),
        "a sandbox on the same network: {}",
        same.1
    );
    assert!(
        !other.1.contains("PONG"),
        "a sandbox on another network reached redis: {}",
        other.1
    );
    assert!(
        other_took < Duration::from_secs(5),
        "the refusal took {other_took:?}"
    );
    assert_eq!(
        settled(&before, full_snapshot),
        before,
        "links, addresses, routes, rules or sysctls were left behind"
    );
}

#[test]
fn a_published_redis_answers_over_ipv6_from_the_host_and_its_network() {
    bed();
    let _one = serial();
    let _net = Net6::define("pub6", "10.96.0.0/24", "fd96::/64");
    let _other = Net6::define("pub6b", "10.97.0.0/24", "fd97::/64");
    let before = full_snapshot();
    let path = "/etc/stockade/profiles/redis-bridge6.toml";
    // No host address: both families; and one port on the bridge's IPv6 address only.
    std::fs::write(
        path,
        format!("{}network = \"pub6\"\naddress6 = \"fd96::50\"\npublish = [\"16579:6379\", \"[fd96::1]:16580:6379\"]\n", REDIS.replace("\"0.0.0.0\"", "\"0.0.0.0 ::\"")),
    )
    .unwrap();
    let redis = stockade(&["run", path])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The host's own IPv6 address (the bridge's fd96::1 is one): DNAT in the output hook.
    let ping = |to: &str, port: u16| out(&format!("timeout 2 redis-cli -h {to} -p {port} ping"));
    let answered =
        crate::common::wait_until(Duration::from_secs(15), || ping("fd96::1", 16579) == "PONG");
    let at = ping("fd96::1", 16580);
    // [::1], which the kernel cannot NAT: the supervisor forwards it.
    let loopback6 = ping("::1", 16579);
    // IPv4 still answers on the port without host address.
    let v4 = ping("10.96.0.1", 16579);
    // A sandbox of the network reaches it at its own address and through the published port.
    let same = client(
        "same-net6",
        "pub6",
        "timeout 5 redis-cli -h fd96::50 ping; timeout 5 redis-cli -h fd96::1 -p 16579 ping",
    );
    // A sandbox on another IPv6 network does not reach its address (only published ports).
    let t = Instant::now();
    let other = client(
        "other-net6",
        "pub6b",
        "timeout 2 redis-cli -h fd96::50 ping",
    );
    let other_took = t.elapsed();
    let o = terminate(redis);
    let _ = std::fs::remove_file(path);
    assert!(
        !other.1.contains("PONG") && other_took < Duration::from_secs(5),
        "a sandbox on another network reached redis over IPv6 ({other_took:?}): {}",
        other.1
    );
    assert!(
        answered,
        "redis-cli -h fd96::1 -p 16579 ping from the host got no PONG: {}",
        text(&o.stderr)
    );
    assert_eq!(at, "PONG", "the port published on [fd96::1]");
    assert_eq!(loopback6, "PONG", "the port without host address at [::1]");
    assert_eq!(v4, "PONG", "the same port over IPv4");
    assert_eq!(
        same.1.matches("PONG").count(),
        2,
        "a sandbox on the same network: {}",
        same.1
    );
    assert_eq!(
        settled(&before, full_snapshot),
        before,
        "links, addresses, routes, rules or sysctls were left behind"
    );
}

#[test]
fn after_sigkill_of_stockade_cleanup_removes_the_lease_rules_and_bridge() {
    bed();
    let _one = serial();
    // On a network with IPv6: both leases, the IPv6 rules and IPv6 forwarding go too.
    let _net = Net6::define("killed6", "10.98.0.0/24", "fd98::/64");
    let before = full_snapshot();
    let path = write_profile(
        "killed",
        "[exec]\ncommand = [\"/bin/sleep\", \"60\"]\n[network]\nmode = \"bridge\"\nnetwork = \"killed6\"\npublish = [\"16480:80\"]\n",
    );
    let mut child = stockade(&["run", &path]).spawn().unwrap();
    let started = crate::common::wait_until(Duration::from_secs(10), || {
        out("ls /run/stockade/networks/killed6/leases 2>/dev/null")
            .lines()
            .count()
            == 2
            && out("nft list table inet stockade 2>/dev/null").contains("dnat ip6 to")
            && out("cat /proc/sys/net/ipv6/conf/all/forwarding") == "1"
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(started, "the sandbox never got its lease and rules");
    // Init follows its supervisor (PR_SET_PDEATHSIG); its namespace takes the veth.
    let o = stockade(&["cleanup"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        settled(&before, full_snapshot),
        before,
        "left behind after cleanup"
    );
}

/// An "outside" server in a namespace of the test's own, behind a veth whose bed end the
/// bed's default route points at: 198.18.0.2:7777 (redis), which has no route back to any
/// sandbox subnet (only masqueraded traffic gets an answer). Torn down on drop.
struct Outside {
    server: std::process::Child,
}

impl Outside {
    fn start() -> Outside {
        for cmd in [
            "ip netns add stk-outside",
            "ip link add stko0 type veth peer name stko1 netns stk-outside",
            // No IPv6 link-local address whose duplicate detection ends mid-test and changes
            // what `ip -j addr` shows.
            "ip link set stko0 addrgenmode none",
            "ip -n stk-outside link set stko1 addrgenmode none",
            "ip addr add 198.18.0.1/30 dev stko0",
            "ip link set stko0 up",
            "ip -n stk-outside addr add 198.18.0.2/30 dev stko1",
            "ip -n stk-outside link set stko1 up",
            "ip -n stk-outside link set lo up",
            "ip route add default via 198.18.0.2",
            // And over IPv6: [fd99::2]:7777, no route back to any sandbox subnet6 either.
            "ip addr add fd99::1/64 dev stko0 nodad",
            "ip -n stk-outside addr add fd99::2/64 dev stko1 nodad",
            "ip -6 route add default via fd99::2",
        ] {
            let o = crate::common::sh(cmd);
            assert!(o.status.success(), "{cmd}: {}", text(&o.stderr));
        }
        let server = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                "stk-outside",
                "timeout",
                "60",
                "redis-server",
                "--port",
                "7777",
            ])
            .args([
                "--bind",
                "198.18.0.2 fd99::2",
                "--protected-mode",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let up = crate::common::wait_until(Duration::from_secs(10), || {
            out("timeout 2 redis-cli -h 198.18.0.2 -p 7777 ping") == "PONG"
                && out("timeout 2 redis-cli -h fd99::2 -p 7777 ping") == "PONG"
        });
        assert!(up, "the outside server did not start");
        Outside { server }
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        crate::common::sh(
            "ip route del default via 198.18.0.2; ip -6 route del default via fd99::2; ip link del stko0; ip netns del stk-outside",
        );
    }
}

#[test]
fn outbound_true_reaches_the_outside_and_outbound_false_does_not() {
    bed();
    let _one = serial();
    let outside = Outside::start();
    let _net = Net6::define("out6", "10.95.0.0/24", "fd95::/64");
    // A network whose default is no outbound: a sandbox asking for it is its exception.
    std::fs::create_dir_all("/etc/stockade/networks").unwrap();
    std::fs::write(
        "/etc/stockade/networks/closed.toml",
        "subnet = \"10.94.0.0/24\"\noutbound = false\n",
    )
    .unwrap();
    let before = full_snapshot();
    let run = |name: &str, network: &str, server: &str, outbound: bool| {
        let ping = format!("timeout 3 redis-cli -h {server} -p 7777 ping");
        let path = write_profile(
            name,
            &format!("[exec]\ncommand = [\"/bin/sh\", \"-c\", {ping:?}]\n[network]\nmode = \"bridge\"\nnetwork = \"{network}\"\noutbound = {outbound}\n"),
        );
        let o = stockade(&["run", &path]).output().unwrap();
        format!("{}{}", text(&o.stdout), text(&o.stderr))
    };
    let with = run("outbound-on", "default", "198.18.0.2", true);
    let without = run("outbound-off", "default", "198.18.0.2", false);
    // Over IPv6, from a network with subnet6: masqueraded to the bed's fd99::1.
    let with6 = run("outbound6-on", "out6", "fd99::2", true);
    let without6 = run("outbound6-off", "out6", "fd99::2", false);
    let closed_with = run("closed-on", "closed", "198.18.0.2", true);
    let closed_without = run("closed-off", "closed", "198.18.0.2", false);
    let _ = std::fs::remove_file("/etc/stockade/networks/closed.toml");
    let after = settled(&before, full_snapshot);
    drop(outside);
    assert!(
        closed_with.contains("PONG"),
        "outbound = true on a network without outbound: {closed_with}"
    );
    assert!(
        !closed_without.contains("PONG"),
        "a network without outbound reached the outside: {closed_without}"
    );
    assert!(with.contains("PONG"), "outbound = true: {with}");
    assert!(
        !without.contains("PONG"),
        "outbound = false reached the outside: {without}"
    );
    assert!(with6.contains("PONG"), "outbound = true over IPv6: {with6}");
    assert!(
        !without6.contains("PONG"),
        "outbound = false reached the outside over IPv6: {without6}"
    );
    assert_eq!(
        after, before,
        "links, addresses, routes, rules or sysctls were left behind"
    );
}

/// A sandbox joining a network that already has rules: its `outbound` exception is its
/// own element, added and removed by its own nft run, and the next sandbox given the same
/// address (the lowest free one) has the network's default again.
#[test]
fn a_joining_sandboxs_outbound_exception_goes_with_it() {
    bed();
    let _one = serial();
    let outside = Outside::start();
    let before = full_snapshot();
    // Holds the default network's shared rules while the others come and go.
    let keeper = write_profile(
        "keeper",
        "[exec]\ncommand = [\"/bin/sleep\", \"60\"]\n[network]\nmode = \"bridge\"\n",
    );
    let keep = stockade(&["run", &keeper])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let up = crate::common::wait_until(Duration::from_secs(15), || {
        out("ls /run/stockade/networks/default/leases 2>/dev/null")
            .lines()
            .count()
            == 1
    });
    let run = |name: &str, outbound: Option<bool>| {
        let line = outbound.map_or(String::new(), |o| format!("outbound = {o}\n"));
        let path = write_profile(
            name,
            &format!("[exec]\ncommand = [\"/bin/sh\", \"-c\", \"ip -4 -o addr show dev eth0; timeout 3 redis-cli -h 198.18.0.2 -p 7777 ping\"]\n[network]\nmode = \"bridge\"\n{line}"),
        );
        let o = stockade(&["run", &path]).output().unwrap();
        format!("{}{}", text(&o.stdout), text(&o.stderr))
    };
    let off = run("joining-off", Some(false));
    let on = run("joining-default", None);
    terminate(keep);
    let after = settled(&before, full_snapshot);
    drop(outside);
    assert!(up, "the keeper sandbox never leased its address");
    let addr = |o: &str| {
        o.split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .map(str::to_owned)
    };
    assert!(addr(&off).is_some(), "{off}");
    assert_eq!(
        addr(&off),
        addr(&on),
        "the second did not reuse the address: {off} / {on}"
    );
    assert!(
        !off.contains("PONG"),
        "outbound = false, joining, reached the outside: {off}"
    );
    assert!(
        on.contains("PONG"),
        "the default sandbox at the same address was still held back: {on}"
    );
    assert_eq!(after, before, "something was left behind");
}

#[test]
fn twenty_sandboxes_at_once_get_twenty_distinct_addresses_and_leave_nothing() {
    bed();
    let _one = serial();
    // On a network with IPv6: each also leases an IPv6 address under the same lock.
    let _net = Net6::define("twenty", "10.94.0.0/24", "fd94::/64");
    let before = full_snapshot();
    let (listener, port) = listen();
    let path = write_profile(
        "twenty",
        &format!("[exec]\ncommand = [\"/bin/bash\", \"-c\", \"for i in 1 2 3 4 5; do a=$(ip -o addr show dev eth0 scope global) && [ -n \\\"$a\\\" ] && break; sleep 0.2; done; echo \\\"$a\\\" >/dev/tcp/10.94.0.1/{port}; sleep 1\"]\n[network]\nmode = \"bridge\"\nnetwork = \"twenty\"\n"),
    );
    let children: Vec<_> = (0..20)
        .map(|i| {
            stockade(&["run", "--name", &format!("twenty-{i}"), &path])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut seen = std::collections::BTreeMap::new();
    let end = Instant::now() + Duration::from_secs(60);
    while seen.len() < 20 && Instant::now() < end {
        if let Some((peer, said)) = accept_one(&listener, end - Instant::now()) {
            seen.insert(peer.ip(), said);
        }
    }
    let failed: Vec<String> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .filter(|o| !o.status.success())
        .map(|o| text(&o.stderr))
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(
        seen.len(),
        20,
        "distinct addresses that reached the gateway: {seen:?}"
    );
    let mut v6 = std::collections::BTreeSet::new();
    for (ip, said) in &seen {
        assert!(said.contains(&format!("inet {ip}/24")), "{ip} said {said}");
        let a6 = said
            .split_whitespace()
            .skip_while(|w| *w != "inet6")
            .nth(1)
            .unwrap_or_else(|| panic!("{ip} has no IPv6 address: {said}"));
        assert!(
            a6.starts_with("fd94::") && a6.ends_with("/64"),
            "{ip}: {a6}"
        );
        v6.insert(a6.to_owned());
    }
    assert_eq!(v6.len(), 20, "distinct IPv6 addresses: {v6:?}");
    assert_eq!(settled(&before, full_snapshot), before, "left behind");
}

#[test]
fn nginx_in_a_user_namespace_on_a_bridge_serves_its_published_port() {
    bed();
    let _one = serial();
    let before = full_snapshot();
    let text_of = std::fs::read_to_string(format!(
        "{}/examples/nginx-bridge.toml",
        crate::common::ROOT
    ))
    .unwrap();
    let profile = if super::bed_enforces_limits() {
        text_of
    } else {
        super::without_resources(&text_of)
    };
    std::fs::write("/etc/stockade/profiles/nginx-bridge.toml", profile).unwrap();
    let nginx = stockade(&["run", "nginx-bridge"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let served = crate::common::wait_until(Duration::from_secs(15), || {
        out("curl -s --max-time 2 http://127.0.0.1:8080/").contains("Welcome to nginx")
    });
    // The master is root only inside: on the host its uid is the sandbox's id range.
    let master_uid = out(&format!(
        "ps -o uid= --ppid $(pgrep -P {} | head -1) | head -1",
        nginx.id()
    ));
    let o = terminate(nginx);
    assert!(
        served,
        "curl http://127.0.0.1:8080/ got no nginx page: {}",
        text(&o.stderr)
    );
    assert!(
        master_uid
            .trim()
            .parse::<u32>()
            .is_ok_and(|u| u >= 0x6000_0000),
        "nginx runs as host uid {master_uid:?}"
    );
    assert_eq!(settled(&before, full_snapshot), before, "left behind");
}

#[test]
fn nft_missing_is_a_clear_error_and_leaves_nothing_behind() {
    bed();
    let _one = serial();
    let before = full_snapshot();
    let path = write_profile(
        "no-nft",
        "[exec]\ncommand = [\"/bin/true\"]\n[network]\nmode = \"bridge\"\n",
    );
    // nft is in /usr/sbin: with only /bin on PATH stockade cannot find it. The bridge and
    // the lease are made by then, and must go again.
    let o = stockade(&["run", &path])
        .env("PATH", "/bin")
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(
        err.contains("cannot run nft") && err.contains("apt-get install nftables"),
        "{err}"
    );
    assert_eq!(
        settled(&before, full_snapshot),
        before,
        "a failed setup left something behind"
    );
}

/// Starts redis in a bridge sandbox on `network`, publishing 127.0.0.1:`port`:6379, and waits
/// for its PONG; returns the stockade process.
fn published_redis(name: &str, network: &str, port: u16) -> std::process::Child {
    let path = format!("/etc/stockade/profiles/{name}.toml");
    std::fs::write(
        &path,
        format!("{REDIS}network = \"{network}\"\npublish = [\"127.0.0.1:{port}:6379\"]\n"),
    )
    .unwrap();
    let child = stockade(&["run", &path])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let up = crate::common::wait_until(Duration::from_secs(15), || {
        out(&format!("timeout 2 redis-cli -h 127.0.0.1 -p {port} ping")) == "PONG"
    });
    assert!(up, "redis on network `{network}` never answered on {port}");
    child
}

/// SIGTERM to a stockade the test started, and what it printed once it has exited.
fn terminate(child: std::process::Child) -> std::process::Output {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    child.wait_with_output().unwrap()
}

fn stop(child: std::process::Child) {
    let o = terminate(child);
    assert!(o.status.success(), "{:?}", o.status);
}

#[test]
fn stopping_one_of_two_networks_sandboxes_leaves_the_others_rules_and_port() {
    bed();
    let _one = serial();
    std::fs::create_dir_all("/etc/stockade/networks").unwrap();
    std::fs::write(
        "/etc/stockade/networks/second.toml",
        "subnet = \"10.91.0.0/24\"\n",
    )
    .unwrap();
    let before = full_snapshot();
    let first = published_redis("redis-first", "default", 16491);
    let second = published_redis("redis-second", "second", 16492);
    let table = || out("nft list table inet stockade");
    let both = table();
    stop(first);
    let after_one = table();
    let ping = |port: u16| out(&format!("timeout 2 redis-cli -h 127.0.0.1 -p {port} ping"));
    let (first_ping, second_ping) = (ping(16491), ping(16492));
    stop(second);
    let _ = std::fs::remove_file("/etc/stockade/networks/second.toml");
    assert!(both.contains("16491") && both.contains("16492"), "{both}");
    assert_eq!(
        second_ping, "PONG",
        "the second network's port stopped answering"
    );
    assert_ne!(first_ping, "PONG", "the first sandbox's port still answers");
    // Both networks had their shared chains, keyed by their subnets.
    for net in ["stockade0", "stk-second"] {
        for part in ["post", "fwd"] {
            let chain = format!("\tchain net-{net}-{part} {{");
            assert!(both.contains(&chain), "{chain} not in {both}");
        }
    }
    assert!(both.contains("ip daddr 10.89.0.0/24"), "{both}");
    // Only the second sandbox's rules are left: its port, its address, its DNAT chain,
    // and its network's chains; the first network's went with its last sandbox.
    assert!(!after_one.contains("16491"), "{after_one}");
    assert!(!after_one.contains("10.89.0."), "{after_one}");
    assert!(!after_one.contains("stockade0"), "{after_one}");
    assert!(
        after_one.contains("dnat ip to 10.91.0.2:6379"),
        "{after_one}"
    );
    assert!(after_one.contains("ip daddr 10.91.0.0/24"), "{after_one}");
    assert!(
        after_one.contains("\tchain net-stk-second-post {")
            && after_one.contains("\tchain net-stk-second-fwd {")
            && after_one.contains("\"stk-second\" : jump net-stk-second-fwd"),
        "{after_one}"
    );
    assert_eq!(after_one.matches("\tchain vstk").count(), 1, "{after_one}");
    assert_eq!(
        settled(&before, full_snapshot),
        before,
        "links, addresses, routes, rules or sysctls were left behind"
    );
}

#[test]
fn a_host_port_another_sandbox_publishes_is_refused_and_the_first_keeps_it() {
    bed();
    let _one = serial();
    let before = full_snapshot();
    let first = published_redis("redis-holder", "default", 16493);
    let path = write_profile(
        "same-port",
        "[exec]\ncommand = [\"/bin/true\"]\n[network]\nmode = \"bridge\"\npublish = [\"127.0.0.1:16493:80\"]\n",
    );
    let o = stockade(&["run", &path]).output().unwrap();
    let err = text(&o.stderr);
    let still = out("timeout 2 redis-cli -h 127.0.0.1 -p 16493 ping");
    let table = out("nft list table inet stockade");
    stop(first);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(
        err.contains("another running sandbox publishes the same host address, port and protocol"),
        "{err}"
    );
    assert_eq!(still, "PONG", "the first sandbox lost its port");
    assert_eq!(table.matches("\tchain vstk").count(), 1, "{table}");
    assert_eq!(
        settled(&before, full_snapshot),
        before,
        "links, addresses, routes, rules or sysctls were left behind"
    );
}

#[test]
fn ps_shows_the_leased_address_that_eth0_has() {
    bed();
    let _one = serial();
    let before = full_snapshot();
    let (listener, port) = listen();
    // The address is left to the lease: only the record can tell it.
    let path = write_profile(
        "leased",
        &format!("[exec]\ncommand = [\"/bin/bash\", \"-c\", \"ip -4 -o addr show dev eth0 >/dev/tcp/10.89.0.1/{port}; sleep 30\"]\n[network]\nmode = \"bridge\"\n"),
    );
    let child = stockade(&["run", &path])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let got = accept_one(&listener, Duration::from_secs(20));
    let table = out(&format!("{} ps", crate::common::BIN));
    let json = out(&format!("{} ps --json", crate::common::BIN));
    let metrics = out(&format!("{} metrics", crate::common::BIN));
    terminate(child);
    let (peer, said) = got.expect("the sandbox did not report eth0");
    let ip = peer.ip().to_string();
    assert!(said.contains(&format!("inet {ip}/24")), "{said}");
    let header = table.lines().next().unwrap_or_default();
    let row = table
        .lines()
        .find(|l| l.starts_with("leased "))
        .unwrap_or_else(|| panic!("no row for the sandbox: {table}"));
    let col = header.find("ADDRESS").expect("an ADDRESS column");
    assert!(
        row[col..].starts_with(&format!("{ip} (default)")),
        "{table}"
    );
    let list: serde_json::Value = serde_json::from_str(&json).unwrap();
    let me = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "leased")
        .unwrap_or_else(|| panic!("{json}"));
    assert_eq!(me["network"]["address"], ip.as_str(), "{json}");
    assert_eq!(me["network"]["network"], "default", "{json}");
    assert_eq!(me["network"]["bridge"], "stockade0", "{json}");
    assert!(
        me["network"]["veth"].as_str().unwrap().starts_with("vstk"),
        "{json}"
    );
    assert!(
        metrics.contains(&format!("network=\"default\",address=\"{ip}\"")),
        "{metrics}"
    );
    assert_eq!(settled(&before, full_snapshot), before, "left behind");
}

/// The network setup's steps, in the order a start takes them, as their errors name them
/// (src/sandbox/network/fault.rs matches these prefixes against the same strings).
const STEPS: &[&str] = &[
    "lease the address",
    "create the bridge",
    "address the bridge",
    "set route_localnet",
    "add the nftables rules",
    "turn on IPv4 forwarding",
    "write the sandbox's hosts and resolv.conf",
    "connect the sandbox to network",
    "configure eth0",
];

/// Spawns stockade paused at `step` and returns it once it says so (within 20 s).
fn paused_at(path: &str, step: &str) -> std::process::Child {
    let mut child = stockade(&["run", path])
        .env("STOCKADE_TEST_PAUSE", step)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let end = Instant::now() + Duration::from_secs(20);
    let mut said = Vec::new();
    while let Ok(line) = rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
        if line.contains("paused at") {
            assert!(line.contains(step), "{line}");
            return child;
        }
        said.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("stockade never paused at `{step}`: {said:?}");
}

#[test]
fn a_failure_or_a_sigkill_at_every_network_setup_step_leaves_nothing_behind() {
    bed();
    let _one = serial();
    let before = full_snapshot();
    let path = write_profile(
        "faults",
        "[exec]\ncommand = [\"/bin/true\"]\n[network]\nmode = \"bridge\"\npublish = [\"16482:80\"]\n",
    );
    let clean = |what: &str, step: &str| {
        assert_eq!(
            settled(&before, full_snapshot),
            before,
            "{what} at `{step}` left behind"
        );
    };
    for step in STEPS {
        let o = stockade(&["run", &path])
            .env("STOCKADE_TEST_FAULT", step)
            .output()
            .unwrap();
        let err = text(&o.stderr);
        assert!(
            !o.status.success(),
            "a fault at `{step}` was not reported: {err}"
        );
        assert!(
            err.contains(step) && err.contains("STOCKADE_TEST_FAULT"),
            "the error does not name `{step}`: {err}"
        );
        clean("a failure", step);
        let mut child = paused_at(&path, step);
        child.kill().unwrap();
        child.wait().unwrap();
        let o = stockade(&["cleanup"]).output().unwrap();
        assert!(
            o.status.success(),
            "cleanup after `{step}`: {}",
            text(&o.stderr)
        );
        clean("SIGKILL", step);
    }
}

#[test]
fn an_admins_bridge_gets_route_localnet_for_127_0_0_1_and_its_own_value_back() {
    bed();
    let _one = serial();
    // The admin's bridge, with its address, a MAC of its own and a port of its own (a
    // veth pair): a bridge's MAC and carrier otherwise follow the ports that come and go.
    for cmd in [
        "ip link add br-admin type bridge",
        "ip link set br-admin addrgenmode none",
        "ip link set br-admin address 02:00:00:00:93:01",
        "ip link add br-admin-p type veth peer name br-admin-q",
        "ip link set br-admin-p addrgenmode none",
        "ip link set br-admin-q addrgenmode none",
        "ip link set br-admin-p master br-admin up",
        "ip link set br-admin-q up",
        "ip addr add 10.93.0.1/24 dev br-admin",
        "ip link set br-admin up",
    ] {
        let o = crate::common::sh(cmd);
        assert!(o.status.success(), "{cmd}: {}", text(&o.stderr));
    }
    let up = crate::common::wait_until(Duration::from_secs(10), || {
        out("ip -j link show br-admin").contains("\"operstate\":\"UP\"")
    });
    assert!(up, "the admin's bridge did not come up");
    std::fs::create_dir_all("/etc/stockade/networks").unwrap();
    std::fs::write(
        "/etc/stockade/networks/admin.toml",
        "subnet = \"10.93.0.0/24\"\nbridge = \"br-admin\"\n",
    )
    .unwrap();
    let sysctl = "/proc/sys/net/ipv4/conf/br-admin/route_localnet";
    let mut before = full_snapshot();
    before.push(out(&format!("cat {sysctl}")));
    let snapshot = || {
        let mut s = full_snapshot();
        s.push(out(&format!("cat {sysctl}")));
        s
    };
    let path = "/etc/stockade/profiles/redis-admin.toml";
    std::fs::write(
        path,
        format!("{REDIS}network = \"admin\"\npublish = [\"127.0.0.1:16481:6379\"]\n"),
    )
    .unwrap();
    let ping = || out("timeout 2 redis-cli -h 127.0.0.1 -p 16481 ping");
    // A normal start and stop, then a SIGKILL and `stockade cleanup`.
    let mut results = Vec::new();
    for kill in [false, true] {
        let mut redis = stockade(&["run", path])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let answered = crate::common::wait_until(Duration::from_secs(15), || ping() == "PONG");
        let during = out(&format!("cat {sysctl}"));
        if kill {
            redis.kill().unwrap();
            redis.wait().unwrap();
            let o = stockade(&["cleanup"]).output().unwrap();
            assert!(o.status.success(), "{}", text(&o.stderr));
        } else {
            terminate(redis);
        }
        let after = settled(&before, snapshot);
        results.push((kill, answered, during, after == before, after));
    }
    let _ = std::fs::remove_file("/etc/stockade/networks/admin.toml");
    crate::common::sh("ip link del br-admin-p; ip link del br-admin");
    assert_eq!(before.last().map(String::as_str), Some("0"), "{before:?}");
    for (kill, answered, during, clean, after) in results {
        assert!(
            answered,
            "127.0.0.1:16481 got no PONG through the admin's bridge (kill {kill})"
        );
        assert_eq!(during, "1", "route_localnet while it runs (kill {kill})");
        assert!(clean, "left behind (kill {kill}): {after:?} vs {before:?}");
    }
}

/// "Another host": a namespace of the test's own behind a veth pair, 198.19.0.2/30, whose
/// bed end is 198.19.0.1/30. It has no route to any sandbox subnet: it reaches a sandbox
/// only as another host would, at the bed's address. Torn down on drop.
struct Remote;

impl Remote {
    fn start() -> Remote {
        for cmd in [
            "ip netns add stk-remote",
            "ip link add stkr0 type veth peer name stkr1 netns stk-remote",
            "ip link set stkr0 addrgenmode none",
            "ip -n stk-remote link set stkr1 addrgenmode none",
            "ip addr add 198.19.0.1/30 dev stkr0",
            "ip link set stkr0 up",
            "ip -n stk-remote addr add 198.19.0.2/30 dev stkr1",
            "ip -n stk-remote link set stkr1 up",
            "ip -n stk-remote link set lo up",
        ] {
            let o = crate::common::sh(cmd);
            assert!(o.status.success(), "{cmd}: {}", text(&o.stderr));
        }
        let up = crate::common::wait_until(Duration::from_secs(10), || {
            out("ip -j link show stkr0").contains("\"operstate\":\"UP\"")
        });
        assert!(up, "the remote's link did not come up");
        Remote
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        crate::common::sh("ip link del stkr0; ip netns del stk-remote");
    }
}

#[test]
fn a_published_port_answers_another_host_and_a_sandbox_through_the_hosts_address() {
    bed();
    let _one = serial();
    let remote = Remote::start();
    let before = full_snapshot();
    let path = "/etc/stockade/profiles/redis-remote.toml";
    std::fs::write(
        path,
        format!("{REDIS}address = \"10.89.0.60\"\npublish = [\"16483:6379\"]\n"),
    )
    .unwrap();
    let redis = stockade(&["run", path])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // From the other host, to the bed's address on the link between them.
    let from_remote =
        || out("ip netns exec stk-remote timeout 2 redis-cli -h 198.19.0.1 -p 16483 ping");
    let answered = crate::common::wait_until(Duration::from_secs(15), || from_remote() == "PONG");
    // Not the sandbox's own address: the other host has no route to it.
    let direct =
        out("ip netns exec stk-remote timeout 2 redis-cli -h 10.89.0.60 -p 6379 ping 2>&1");
    // Hairpin: a sandbox on the same network, through the host's address. Redis lists the
    // connection as coming from the gateway: masqueraded, so the replies go back through
    // the host's NAT even where bridged traffic bypasses netfilter (no br_netfilter).
    let hairpin = client(
        "hairpin",
        "default",
        "timeout 5 redis-cli -h 198.19.0.1 -p 16483 client list",
    );
    let o = terminate(redis);
    let after = settled(&before, full_snapshot);
    drop(remote);
    assert!(
        answered,
        "198.19.0.1:16483 from the other host got no PONG: {}",
        text(&o.stderr)
    );
    assert_ne!(
        direct, "PONG",
        "the other host reached the sandbox's own address"
    );
    assert!(
        hairpin.0 && hairpin.1.contains("addr=10.89.0.1:"),
        "a sandbox through the host's address: {}",
        hairpin.1
    );
    assert_eq!(after, before, "left behind");
}
