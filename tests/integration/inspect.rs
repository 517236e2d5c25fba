//! `why` and `analyze` against a real running sandbox: the service tries paths, system calls
//! and capabilities itself and reports what the kernel answered; `why`, reading the
//! instance's record, must give the same verdict (and the same errno) for each. `analyze`
//! of the instance is the analysis of its profile, and `--threshold` and usage errors exit
//! with the documented statuses.

use crate::harness::*;
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

/// What the sandbox allows and refuses, written to disagree with the defaults in places:
/// a hidden /root, landlock rules without /var/log or /run, a distinctive errno for denied
/// calls (so a seccomp denial is told from the kernel's own EPERM), one call denied by the
/// profile, one capability kept.
const EXTRA: &str = r#"
[filesystem]
hide = ["/root"]
[security]
capabilities = ["net_bind_service"]
syscall_errno = "EUCLEAN"
syscall_deny = ["getpriority"]
landlock = { read = ["/usr", "/lib", "/lib64", "/etc", "/proc", "/dev"], write = ["/tmp", "/dev/null"], exec = ["/bin", "/usr/bin", "/usr/lib", "/lib", "/lib64"] }
"#;

/// The service: each attempt prints `NAME=ok` or `NAME=fail MESSAGE`, then `done`, and it
/// waits for SIGTERM. `$0` is the marker.
const PROBE: &str = r#"trap 'exit 0' TERM
t() { n=$1; shift; if out=$("$@" 2>&1); then echo "$n=ok"; else echo "$n=fail $out"; fi; }
t read_etc cat /etc/hostname
t write_etc sh -c ': >> /etc/hostname'
t create_etc touch /etc/stockade-why-$0
t create_tmp touch /tmp/new
t read_root ls /root
t read_varlog ls /var/log
t create_run touch /run/new
t create_shm touch /dev/shm/new
t exec_sbin /usr/sbin/ldconfig --version
t write_devnull sh -c 'echo x > /dev/null'
cp /bin/true /tmp/true && chmod 755 /tmp/true
t exec_tmp /tmp/true
t exec_bin /bin/true
s() { n=$1; shift; echo "$n=$(perl -e '@a = map { $_ + 0 } @ARGV; $r = syscall(shift(@a), @a); print $r < 0 ? "errno " . ($! + 0) : "ok"' "$@")"; }
s sys_getpid 39
s sys_ptrace 101 0 0 0 0
s sys_keyctl 250 0 -3 0
s sys_unshare 272 67108864
s sys_getpriority 140 0 0
echo "caps=$(grep CapEff /proc/self/status | tr -d '\t' | cut -d: -f2)"
echo done
while :; do sleep 0.05; done"#;

/// A running stockade, stopped with SIGTERM when the test ends, passed or failed: a failed
/// assertion must not leave its sandbox running.
struct Stopped(std::process::Child);

impl Stopped {
    fn stop(&mut self) -> Option<i32> {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        self.0.wait().ok().and_then(|s| s.code())
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            self.stop();
        }
    }
}

/// The errno numbers of the names `why` prints (x86_64, as the syscall numbers above).
fn errno_of(name: &str) -> i32 {
    match name {
        "EPERM" => 1,
        "ENOENT" => 2,
        "EACCES" => 13,
        "ENOSYS" => 38,
        "EROFS" => 30,
        "EUCLEAN" => 117,
        other => panic!("no number for {other}"),
    }
}

/// The kernel's message for an errno, as a shell tool prints it.
fn message_of(name: &str) -> &'static str {
    match name {
        "EROFS" => "Read-only file system",
        "EACCES" => "Permission denied",
        "ENOENT" => "No such file or directory",
        other => panic!("no message for {other}"),
    }
}

/// `why`'s exit status and its `denied (ERRNO)` verdict.
fn why(target: &str, args: &[&str], marker: &str) -> (i32, Option<String>, String) {
    let out = Run::stockade(&[&["why", target][..], args].concat(), marker).output();
    let o = text(&out.stdout);
    let code = out.status.code().unwrap();
    assert!(
        code == 0 || code == 1,
        "why {args:?}: {code}: {o}{}",
        text(&out.stderr)
    );
    // `denied (EROFS)` or `denied (EROFS, or EACCES where ...)`: each errno it names.
    let errno = o
        .lines()
        .nth(1)
        .and_then(|l| l.split_once("denied ("))
        .map(|(_, e)| e.trim_end_matches(')').to_owned());
    (code, errno, o)
}

/// The errno names in a verdict: `EROFS, or EACCES where the file's mode ...`.
fn errnos(verdict: &str) -> Vec<&str> {
    verdict
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.len() > 2 && w.starts_with('E') && w.chars().all(|c| c.is_ascii_uppercase()))
        .collect()
}

#[cfg(target_arch = "x86_64")]
#[test]
fn why_agrees_with_what_the_running_sandbox_does() {
    require_root();
    let m = marker();
    let c = marker();
    let profiles = Profiles::new();
    let snap = Snapshot::take();
    let p = profiles.write("why", &sh_profile(PROBE, &m, EXTRA));
    let name = format!("why-{m}");
    let mut child = Stopped(Run::profile(&p, &m).spawn());
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = std::collections::BTreeMap::new();
    let until = Instant::now() + Duration::from_secs(20);
    while let Ok(line) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
        if line == "done" {
            break;
        }
        if let Some((k, v)) = line.split_once('=') {
            seen.insert(k.to_owned(), v.to_owned());
        }
    }
    assert!(
        seen.contains_key("caps"),
        "the probe did not finish: {seen:#?}"
    );
    wait_for_record(&name);

    let paths = [
        ("read_etc", "/etc/hostname", "read"),
        ("write_etc", "/etc/hostname", "write"),
        (
            "create_etc",
            &format!("/etc/stockade-why-marker-{m}"),
            "create",
        ),
        ("create_tmp", "/tmp/new", "create"),
        ("read_root", "/root", "read"),
        ("read_varlog", "/var/log", "read"),
        ("create_run", "/run/new", "create"),
        ("create_shm", "/dev/shm/new", "create"),
        ("exec_sbin", "/usr/sbin/ldconfig", "exec"),
        ("write_devnull", "/dev/null", "write"),
        ("exec_tmp", "/tmp/true", "exec"),
        ("exec_bin", "/bin/true", "exec"),
    ];
    let mut denials = 0;
    for (case, path, access) in paths {
        let real = &seen[case];
        let (code, errno, o) = why(&name, &["--path", path, "--access", access], &c);
        if real == "ok" {
            assert_eq!(code, 0, "{case}: the sandbox allowed it, why says:\n{o}");
            continue;
        }
        denials += 1;
        assert_eq!(
            code, 1,
            "{case}: the sandbox refused it ({real}), why says:\n{o}"
        );
        let errno = errno.unwrap_or_else(|| panic!("{case}: no errno in\n{o}"));
        assert!(
            errnos(&errno).iter().any(|e| real.contains(message_of(e))),
            "{case}: why says {errno}, the sandbox said `{real}`:\n{o}"
        );
    }
    assert!(
        denials >= 5,
        "the sandbox refused only {denials} of the paths"
    );

    let calls = [
        ("sys_getpid", "getpid"),
        ("sys_ptrace", "ptrace"),
        ("sys_keyctl", "keyctl"),
        ("sys_unshare", "unshare"),
        ("sys_getpriority", "getpriority"),
    ];
    for (case, call) in calls {
        let real = &seen[case];
        let (code, errno, o) = why(&name, &["--syscall", call], &c);
        match errno {
            Some(e) => {
                assert_eq!(code, 1, "{o}");
                assert_eq!(errnos(&e).len(), 1, "{o}");
                assert_eq!(
                    real,
                    &format!("errno {}", errno_of(&e)),
                    "{case}: why says {e}:\n{o}"
                );
            }
            None => {
                assert_eq!(code, 0, "{o}");
                assert_ne!(
                    real, "errno 117",
                    "{case}: the filter denied it, why says:\n{o}"
                );
            }
        }
    }
    // The profile's own deny-list entry is cited at its line.
    let written = std::fs::read_to_string(&p).unwrap();
    let line = 1 + written
        .lines()
        .position(|l| l.starts_with("syscall_deny"))
        .unwrap();
    let (_, _, o) = why(&name, &["--syscall", "getpriority"], &c);
    assert!(o.contains(&format!("why.toml:{line}")), "{o}");

    // CAP_NET_BIND_SERVICE is bit 10 of CapEff; CAP_SYS_ADMIN bit 21.
    let eff = u64::from_str_radix(seen["caps"].trim(), 16).unwrap();
    for (cap, bit) in [("net_bind_service", 10), ("sys_admin", 21)] {
        let (code, _, o) = why(&name, &["--capability", cap], &c);
        assert_eq!(
            code == 0,
            eff & (1 << bit) != 0,
            "{cap}: CapEff {eff:x}, why says:\n{o}"
        );
    }

    // analyze of the running instance (its record) is the analysis of its profile.
    let json = |target: &str| {
        let out = Run::stockade(&["analyze", "--json", target], &c).output();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let live = json(&name);
    let planned = json(p.to_str().unwrap());
    assert_eq!(live["exposure_tenths"], planned["exposure_tenths"]);
    assert_eq!(
        live["checks"].as_array().unwrap().len(),
        planned["checks"].as_array().unwrap().len()
    );
    let threshold = |n: &str| {
        Run::stockade(&["analyze", &name, "--threshold", n], &c)
            .output()
            .status
            .code()
    };
    assert_eq!(threshold("0"), Some(1));
    assert_eq!(threshold("10"), Some(0));

    assert_eq!(child.stop(), Some(0));
    let _ = std::fs::remove_file(format!("/etc/stockade-why-marker-{m}"));
    snap.assert_unchanged(&m);
}

/// A question `why` cannot answer exits 2, never 1 (which means denied), and leaves nothing.
#[test]
fn why_and_analyze_exit_2_when_they_cannot_answer() {
    require_root();
    let m = marker();
    let profiles = Profiles::new();
    let p = profiles.write("q", &sh_profile("true", &m, ""));
    let p = p.to_str().unwrap();
    for args in [
        vec!["why", p, "--syscall", "no_such_call"],
        vec!["why", p, "--capability", "no_such_cap"],
        vec!["why", p, "--path", "relative/path"],
        vec!["why", p],
        vec!["why", p, "--syscall", "read", "--capability", "kill"],
        vec!["why", p, "--syscall", "read", "--access", "write"],
        vec!["analyze", p, "--threshold", "eleven"],
    ] {
        let out = Run::stockade(&args, &m).output();
        let e = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {e}");
        assert!(!e.contains("panicked") && !e.is_empty(), "{args:?}: {e}");
    }
    let out = Run::stockade(&["why", "/nonexistent/q.toml", "--syscall", "read"], &m).output();
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
}

/// The calls of the explain test, each made twice: (x86_64 number, arguments, name).
const CALLS: [(&str, &str); 4] = [
    ("ptrace", "101 0 0 0 0"),
    ("keyctl", "250 0 -3 0"),
    ("mount", "165 0 0 0 0 0"),
    ("getpriority", "140 0 0"),
];

/// `run --explain`: each denied call is reported once per (call, executable) with the rule
/// and the profile line that deny it, the service sees the same errnos as without it, and
/// the seccomp listener never reaches the service.
#[cfg(target_arch = "x86_64")]
#[test]
fn explain_reports_each_denied_call_once_and_changes_no_answer() {
    require_root();
    let m = marker();
    let profiles = Profiles::new();
    let mut script = String::new();
    for _ in 0..2 {
        for (name, args) in CALLS {
            script.push_str(&format!("echo \"{name}=$(perl -e '@a = map {{ $_ + 0 }} @ARGV; $r = syscall(shift(@a), @a); print $r < 0 ? \"errno \" . ($! + 0) : \"ok\"' {args})\"; "));
        }
    }
    script.push_str("echo \"fds=$(ls -l /proc/$$/fd | grep -c -e seccomp -e anon_inode)\"");
    let extra = "[security]\nsyscall_errno = \"EUCLEAN\"\nsyscall_deny = [\"getpriority\"]\n";
    let p = profiles.write("explain", &sh_profile(&script, &m, extra));
    let written = std::fs::read_to_string(&p).unwrap();
    let deny_line = 1 + written
        .lines()
        .position(|l| l.starts_with("syscall_deny"))
        .unwrap();
    let plain = Run::profile(&p, &m).output();
    let explained = Run::stockade(&["run", "--explain", "--name", &format!("explain-{m}")], &m)
        .arg(&p)
        .output();
    assert!(plain.status.success(), "{}", text(&plain.stderr));
    assert!(explained.status.success(), "{}", text(&explained.stderr));
    let (a, b) = (probe_values(&plain), probe_values(&explained));
    assert_eq!(a, b, "the service's answers changed under --explain");
    for (name, _) in CALLS {
        assert_eq!(a[name], "errno 117", "{name}: {a:#?}");
    }
    assert_eq!(b["fds"], "0", "the listener reached the service");
    let e = text(&explained.stderr);
    let plain_e = text(&plain.stderr);
    assert!(
        !plain_e.contains("denied"),
        "reports without --explain: {plain_e}"
    );
    for (name, rule) in [
        (
            "ptrace",
            "default (security.syscall_deny: baseline)".to_owned(),
        ),
        (
            "keyctl",
            "default (security.syscall_deny: baseline)".to_owned(),
        ),
        (
            "mount",
            "default (security.syscall_deny: baseline)".to_owned(),
        ),
        ("getpriority", format!("explain.toml:{deny_line}")),
    ] {
        let lines: Vec<&str> = e
            .lines()
            .filter(|l| l.contains(&format!("stockade_denied_syscall={name} ")))
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "{name} reported {} times:\n{e}",
            lines.len()
        );
        assert!(
            lines[0].contains(&format!("stockade_rule={rule}"))
                && lines[0].contains("stockade_errno=EUCLEAN")
                && lines[0].contains("stockade_exe=/usr/bin/perl"),
            "{}",
            lines[0]
        );
    }
    // The profile key does the same under a unit (or anywhere), without the flag.
    let keyed = profiles.write(
        "explainkey",
        &sh_profile(&script, &m, &format!("{extra}explain = true\n")),
    );
    let out = Run::profile(&keyed, &m).output();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(probe_values(&out), a);
    let e = text(&out.stderr);
    assert_eq!(
        e.matches("stockade_denied_syscall=").count(),
        CALLS.len(),
        "{e}"
    );
    // A kill action cannot be answered by the supervisor: refused at its line, before
    // anything starts.
    let kill = profiles.write(
        "explainkill",
        "[exec]\ncommand = [\"/bin/true\"]\n[security]\nsyscall_errno = \"kill\"\nexplain = true\n",
    );
    let out = Run::stockade(&["check"], &m).arg(&kill).output();
    let e = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert!(
        e.contains(&format!(
            "{}:5:11: security.explain: explaining answers denied calls with an errno",
            kill.display()
        )),
        "{e}"
    );
}

/// Whether kernel audit is on, read as stockade reads it: an AUDIT_GET request on a netlink
/// audit socket (a read; nothing is changed). None when the kernel would not say.
fn audit_enabled() -> Option<bool> {
    use nix::sys::socket::*;
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkAudit,
    )
    .ok()?;
    let mut msg = Vec::new();
    msg.extend_from_slice(&16u32.to_ne_bytes());
    msg.extend_from_slice(&1000u16.to_ne_bytes()); // AUDIT_GET
    msg.extend_from_slice(&1u16.to_ne_bytes()); // NLM_F_REQUEST
    msg.extend_from_slice(&[0; 8]);
    sendto(
        fd.as_raw_fd(),
        &msg,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .ok()?;
    let mut buf = [0u8; 4096];
    let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).ok()?;
    // The reply's header, then struct audit_status: mask, enabled.
    let kind = u16::from_ne_bytes([buf[4], buf[5]]);
    (kind == 1000 && n >= 24).then(|| u32::from_ne_bytes(buf[20..24].try_into().unwrap()) != 0)
}

/// `run --explain -v` of a landlock profile: with kernel audit off (this host) it says once
/// why landlock denials are not reported; with audit on it reports the denial once, with the
/// missing right, the path and the rule's line. Either way the service is denied as before.
#[test]
fn explain_reports_landlock_denials_or_says_why_not() {
    require_root();
    let m = marker();
    let profiles = Profiles::new();
    let script = "for i in 1 2; do true > /tmp/llaudit-$i 2>/dev/null; echo \"w$i=$?\"; done";
    let extra = "[security]\nlandlock = { read = [\"/\"], write = [\"/dev/null\"], exec = [\"/bin\", \"/usr\", \"/lib\", \"/lib64\"] }\n";
    let p = profiles.write("llaudit", &sh_profile(script, &m, extra));
    let out = Run::stockade(
        &["-v", "run", "--explain", "--name", &format!("llaudit-{m}")],
        &m,
    )
    .arg(&p)
    .output();
    let e = text(&out.stderr);
    assert!(out.status.success(), "{e}");
    let v = probe_values(&out);
    assert!(
        v["w1"] != "0" && v["w2"] != "0",
        "landlock let the write through: {v:#?}"
    );
    let plain = Run::profile(&p, &m).output();
    assert_eq!(
        probe_values(&plain),
        v,
        "the service's answers changed under --explain"
    );
    let once =
        "landlock denials are not reported: kernel audit is off (audit=1 or auditd turns it on)";
    match audit_enabled() {
        Some(false) => {
            assert_eq!(e.matches(once).count(), 1, "{e}");
            assert!(!e.contains("stockade_denied_access="), "{e}");
        }
        on => {
            assert!(!e.contains(once), "audit is {on:?}, yet: {e}");
            let lines: Vec<&str> = e
                .lines()
                .filter(|l| l.contains("stockade_denied_access=fs.make_reg"))
                .collect();
            assert_eq!(lines.len(), 2, "one per path:\n{e}");
            assert!(
                lines[0].contains("stockade_path=/tmp")
                    && lines[0].contains("stockade_rule=security.landlock.read (llaudit.toml:"),
                "{}",
                lines[0]
            );
        }
    }
}

/// A command `stockade exec` runs in a sandbox under `security.explain` has no supervisor
/// listening for its filter: its denied calls still fail at once with the profile's errno
/// (not ENOSYS, what a notifying filter without a listener gives), and only the service's
/// are reported.
#[cfg(target_arch = "x86_64")]
#[test]
fn an_exec_into_an_explained_sandbox_gets_the_profiles_errno() {
    require_root();
    let m = marker();
    let c = marker();
    let profiles = Profiles::new();
    let extra = "[security]\nsyscall_errno = \"EUCLEAN\"\nexplain = true\n";
    let (child, name) = start_daemon(&profiles, "exex", &m, extra);
    let mut child = Stopped(child);
    let out = Run::stockade(
        &[
            "exec",
            &name,
            "--",
            "perl",
            "-e",
            "print syscall(101, 0, 0, 0, 0) < 0 ? $! + 0 : \"ok\"",
            &format!("marker-{c}"),
        ],
        &c,
    )
    .output();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "117", "{}", text(&out.stderr));
    assert_eq!(child.stop(), Some(0));
}
