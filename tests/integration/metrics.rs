//! `stockade metrics`: a running sandbox's figures in the Prometheus text format, printed
//! once and served at `GET /metrics` (checked by `promtool check metrics`); the server
//! answers only that, gives a 4xx to a malformed or oversized request and goes on serving,
//! and a second server on a taken port is refused with its address. Loopback only.

use crate::harness::*;
use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `promtool check metrics` (Debian's prometheus package, installed by tests/deps.sh) on
/// `text`: the exposition parses, and its names follow Prometheus' conventions.
fn promtool_accepts(text: &str) {
    let promtool = "/usr/bin/promtool";
    assert!(
        std::path::Path::new(promtool).exists(),
        "{promtool} is missing: run tests/deps.sh"
    );
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}\n{text}",
        text_of(&out.stdout),
        text_of(&out.stderr)
    );
}

fn text_of(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Sends `request` to `addr` and returns the whole answer (the server closes after one).
fn http(addr: &str, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    text_of(&out)
}

fn code(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

/// The body of an answer.
fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// Kills the server when the test ends, whatever happened.
struct Server(Child);

/// `stockade metrics --listen` on a port the kernel picks, and the address it says it took.
fn serve_metrics() -> (Server, String) {
    let mut server = Server(
        Command::new(stockade_bin())
            .args(["metrics", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufReader::new(server.0.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("stockade: serving http://")
        .and_then(|a| a.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    (server, addr)
}
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The sandbox's info line in `text`.
fn info_line<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find(|l| {
        l.starts_with("stockade_sandbox_info{") && l.contains(&format!("sandbox=\"{name}\""))
    })
}

#[test]
fn metrics_exports_a_running_sandbox_and_serves_only_get_metrics() {
    require_root();
    let m = marker();
    // The commands run while the sandbox lives: their own marker, or their snapshot would
    // count the sandbox as left behind.
    let c = marker();
    let profiles = Profiles::new();
    let snap = Snapshot::take();
    let (mut child, name) = start_daemon(&profiles, "exported", &m, "");

    // Printed once.
    let out = Run::stockade(&["metrics"], &c).output();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    let info = info_line(&t, &name).unwrap_or_else(|| panic!("{name} not in:\n{t}"));
    assert!(
        info.contains("profile=\"exported\"")
            && info.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")))
            && info.ends_with("} 1"),
        "{info}"
    );
    assert!(
        t.lines()
            .any(|l| l.starts_with("stockade_sandbox_start_time_seconds{")
                && l.contains(&format!("sandbox=\"{name}\""))),
        "{t}"
    );
    promtool_accepts(&t);

    // Served: port 0, and the server says which port it took.
    let (mut server, addr) = serve_metrics();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let get = |path: &str| {
        http(
            &addr,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        )
    };

    let a = get("/metrics");
    assert_eq!(code(&a), 200, "{a}");
    assert!(
        a.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
        "{a}"
    );
    assert!(info_line(body(&a), &name).is_some(), "{a}");
    promtool_accepts(body(&a));

    assert_eq!(code(&get("/other")), 404);
    let post = http(
        &addr,
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert_eq!(code(&post), 405, "{post}");
    assert!(post.contains("Allow: GET\r\n"), "{post}");
    // 100 KiB of garbage with no line end: refused once the head passes its bound.
    let garbage = http(&addr, &vec![b'x'; 100 << 10]);
    assert_eq!(code(&garbage), 431, "{garbage}");
    // Binary garbage: not a request line.
    let binary = http(&addr, b"\x00\xff\x16\x03 garbage\r\n\r\n");
    assert_eq!(code(&binary), 400, "{binary}");
    // A client that connects and says nothing, then leaves: no answer owed.
    drop(TcpStream::connect(&addr).unwrap());
    // The server goes on serving after all of them.
    let again = get("/metrics");
    assert_eq!(code(&again), 200, "{again}");
    assert!(server.0.try_wait().unwrap().is_none(), "the server ended");

    // A second server on the taken port is refused, naming the address.
    let out = Run::stockade(&["metrics", "--listen", &addr], &c).output();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let e = text(&out.stderr);
    assert!(
        e.contains(&format!("stockade: cannot listen on {addr}: "))
            && e.contains("Address already in use"),
        "{e}"
    );
    drop(server);

    let out = Run::stockade(&["stop", &name], &c).output();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(child.wait().unwrap().code(), Some(0));
    snap.assert_unchanged(&m);
}

#[test]
fn metrics_needs_root() {
    require_root();
    let m = marker();
    for args in [vec!["metrics"], vec!["metrics", "--listen", "127.0.0.1:0"]] {
        let out = Run::wrapped(
            &[
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--",
            ],
            &args,
            &m,
        )
        .output();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            text(&out.stderr).contains("needs root"),
            "{}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    }
}

/// A figure for the issue, not a timed assertion: the time a scrape of `/metrics` takes with
/// 50 sandboxes running (each a shell waiting on a sleep), over 20 scrapes.
#[test]
fn a_scrape_with_50_sandboxes_running_is_timed() {
    require_root();
    let _alone = STALE_RECORDS.lock().unwrap_or_else(|e| e.into_inner());
    let m = marker();
    let c = marker();
    let profiles = Profiles::new();
    let snap = Snapshot::take();
    let started = std::time::Instant::now();
    let sandboxes: Vec<(Child, String)> = (0..50)
        .map(|i| {
            let stem = format!("scrape{i}");
            let p = profiles.write(
                &stem,
                &sh_profile("trap 'exit 0' TERM; sleep 600 & wait", &m, ""),
            );
            let child = Run::profile(&p, &m).spawn();
            let name = format!("{stem}-{m}");
            wait_for_record(&name);
            (child, name)
        })
        .collect();
    let start_time = started.elapsed();
    let (server, addr) = serve_metrics();
    let mut times = Vec::new();
    let mut exported = 0;
    for _ in 0..20 {
        let t = std::time::Instant::now();
        let a = http(&addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        times.push(t.elapsed());
        assert_eq!(code(&a), 200, "{a}");
        exported = sandboxes
            .iter()
            .filter(|(_, n)| info_line(body(&a), n).is_some())
            .count();
    }
    drop(server);
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "metrics: 20 scrapes of /metrics with {} sandboxes running: median {:.2} ms, max {:.2} ms \
(min {:.2} ms; 50 sandboxes started in {:.1} s)",
        sandboxes.len(),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
        ms(times[0]),
        start_time.as_secs_f64()
    );
    assert_eq!(exported, 50, "not every sandbox was exported");
    let mut stop = vec!["stop", "--time", "5"];
    stop.extend(sandboxes.iter().map(|(_, n)| n.as_str()));
    let out = Run::stockade(&stop, &c).output();
    assert!(out.status.success(), "{}", text(&out.stderr));
    for (mut child, _) in sandboxes {
        assert_eq!(child.wait().unwrap().code(), Some(0));
    }
    snap.assert_unchanged(&m);
}
