//! Tests against a real systemd: scopes over D-Bus, units, sd_notify and journald. They run
//! inside the container that tests/systemd/bed.sh boots (tests/run-all.sh makes it this
//! binary's cargo runner); outside it they refuse to run rather than touch the host's
//! systemd.

use std::fs;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

#[path = "../common/mod.rs"]
mod common;

use common::{out, sh, show, text, wait_until, BIN, ROOT};

mod network;

/// Installs stockade, its units and the test profiles into the container, once.
fn bed() {
    static SETUP: Once = Once::new();
    SETUP.call_once(|| {
        let env = fs::read_to_string("/proc/1/environ").unwrap_or_default();
        assert!(
            env.contains("container=stockade-bed") && out("cat /proc/1/comm") == "systemd",
            "these tests must run inside tests/systemd/bed.sh (see tests/run-all.sh), not against the host's init"
        );
        fs::copy(BIN, "/usr/bin/stockade").unwrap();
        for unit in ["stockade@.service", "stockade.slice"] {
            fs::copy(format!("{ROOT}/units/{unit}"), format!("/etc/systemd/system/{unit}")).unwrap();
        }
        fs::create_dir_all("/etc/stockade/profiles").unwrap();
        for e in fs::read_dir(format!("{ROOT}/tests/systemd/profiles")).unwrap() {
            let p = e.unwrap().path();
            fs::copy(&p, format!("/etc/stockade/profiles/{}", p.file_name().unwrap().to_str().unwrap())).unwrap();
        }
        // The bed's cgroup v2 tree has no controllers on a v1/v2 hybrid host, and stockade
        // refuses limits it cannot enforce: the daemon profiles run here without their
        // [resources] table (tests/vm runs them with it).
        for name in ["redis", "nginx", "memcached", "postgresql"] {
            let text = fs::read_to_string(format!("{ROOT}/examples/{name}.toml")).unwrap();
            let text = if bed_enforces_limits() { text } else { without_resources(&text) };
            fs::write(format!("/etc/stockade/profiles/{name}.toml"), text).unwrap();
        }
        fs::create_dir_all("/etc/stockade/profiles/include").unwrap();
        fs::copy(format!("{ROOT}/examples/include/base.toml"), "/etc/stockade/profiles/include/base.toml").unwrap();
        assert!(sh("systemctl daemon-reload").status.success());
    });
}

/// Whether this bed's cgroup v2 root offers the controllers limits need (pure cgroup v2).
fn bed_enforces_limits() -> bool {
    let c = fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
    ["memory", "pids", "cpu"]
        .iter()
        .all(|w| c.split_whitespace().any(|x| x == *w))
}

/// A profile's text without its `[resources]` table.
fn without_resources(text: &str) -> String {
    let mut keep = true;
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with('[') {
            keep = line.trim() != "[resources]";
        }
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn stockade(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args);
    c
}

fn spawn(args: &[&str]) -> Child {
    stockade(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn scope_of(pid: u32) -> String {
    format!("stockade-{{}}-{pid}.scope")
}

/// systemd no longer knows the unit. Only its own answer counts: empty output is a failed
/// query, not a missing unit.
fn unit_gone(unit: &str) -> bool {
    show(unit, "LoadState") == "not-found"
}

#[test]
fn scope_holds_the_sandbox_and_is_gone_after() {
    bed();
    let mut child = spawn(&["run", "scope-probe"]);
    let unit = scope_of(child.id()).replace("{}", "scope-probe");
    // The service's first line comes once its TERM trap is set: a SIGTERM before would end
    // it by the signal (the machine may be slow to get it there).
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || show(&unit, "ActiveState")
            == "active"),
        "scope {unit} never became active: {}",
        out("systemctl list-units --all 'stockade*'")
    );
    assert_eq!(show(&unit, "Slice"), "stockade.slice");
    assert_eq!(
        show(&unit, "Description"),
        "scope probe for stockade's tests"
    );
    assert_eq!(show(&unit, "Delegate"), "yes");
    assert_eq!(show(&unit, "CollectMode"), "inactive-or-failed");
    // The scope's processes are the sandbox: init and the service, never the supervisor.
    let cgroup = show(&unit, "ControlGroup");
    let procs = out(&format!("cat /sys/fs/cgroup{cgroup}/cgroup.procs"));
    let pids: Vec<&str> = procs.split_whitespace().collect();
    assert!(pids.len() >= 2, "scope holds {pids:?}");
    assert!(
        !pids.contains(&child.id().to_string().as_str()),
        "the supervisor is inside its own scope"
    );
    // From the host, every process of the sandbox sits in the scope's cgroup, in a cgroup
    // namespace of its own: the namespace was made after placement, so its root is the scope
    // (the service's own view, `0::/`, is checked below).
    let host_ns = fs::read_link("/proc/self/ns/cgroup").unwrap();
    let mut checked = 0;
    for pid in &pids {
        // The probe's `sleep`s come and go; init and the service stay.
        let (Ok(seen), Ok(ns)) = (
            fs::read_to_string(format!("/proc/{pid}/cgroup")),
            fs::read_link(format!("/proc/{pid}/ns/cgroup")),
        ) else {
            continue;
        };
        // The v2 line: on a hybrid host the v1 hierarchies are listed too.
        let v2 = seen.lines().find_map(|l| l.strip_prefix("0::"));
        assert_eq!(v2, Some(cgroup.as_str()), "pid {pid}: {seen}");
        assert_ne!(ns, host_ns, "pid {pid} shares the host's cgroup namespace");
        checked += 1;
    }
    assert!(checked >= 2, "only {checked} of {pids:?} checked");
    // Its record names the scope and the scope's cgroup, and init among its processes.
    let record: serde_json::Value = serde_json::from_str(
        &fs::read_to_string("/run/stockade/instances/scope-probe.json").unwrap(),
    )
    .unwrap();
    assert_eq!(record["unit"], unit.as_str());
    assert_eq!(
        record["cgroup"],
        format!("/sys/fs/cgroup{cgroup}").as_str(),
        "{record}"
    );
    assert_eq!(record["supervisor"]["pid"], child.id());
    assert!(pids.contains(&record["init"]["pid"].to_string().as_str()));
    // The service sees its cgroup namespace rooted at the scope.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        first.trim().ends_with(" 0::/"),
        "cgroup namespace not rooted at the scope: {first}"
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        wait_until(Duration::from_secs(5), || unit_gone(&unit)),
        "scope {unit} left behind: {}",
        show(&unit, "ActiveState")
    );
    assert!(
        !std::path::Path::new(&format!("/sys/fs/cgroup{cgroup}")).exists(),
        "cgroup left behind"
    );
}

/// The limits reach the scope as systemd's properties where the kernel enforces them; on a
/// bed without controllers (a v1/v2 hybrid host) the run is refused before any scope
/// exists: never a scope that records limits nobody enforces.
#[test]
fn scope_limits_are_set_or_refused_never_ignored() {
    bed();
    if !bed_enforces_limits() {
        let o = stockade(&["run", "scope-limits"]).output().unwrap();
        assert_eq!(o.status.code(), Some(78), "{}", text(&o.stderr));
        for key in ["memory_max", "tasks_max", "cpu_quota"] {
            assert!(
                text(&o.stderr).contains(&format!("resources.{key}: needs the cgroup v2 `")),
                "{key}: {}",
                text(&o.stderr)
            );
        }
        let units = out("systemctl list-units --all --plain --no-legend 'stockade-scope-limits*'");
        assert!(units.is_empty(), "a scope was made: {units}");
        return;
    }
    let child = spawn(&["run", "scope-limits"]);
    let unit = scope_of(child.id()).replace("{}", "scope-limits");
    assert!(wait_until(Duration::from_secs(10), || show(
        &unit,
        "ActiveState"
    ) == "active"));
    assert_eq!(show(&unit, "MemoryMax"), (256u64 << 20).to_string());
    assert_eq!(show(&unit, "MemoryHigh"), (200u64 << 20).to_string());
    assert_eq!(show(&unit, "TasksMax"), "64");
    assert_eq!(show(&unit, "CPUQuotaPerSecUSec"), "500ms");
    assert_eq!(show(&unit, "CPUWeight"), "200");
    assert_eq!(show(&unit, "IOWeight"), "300");
    assert_eq!(show(&unit, "AllowedCPUs"), "0");
    let o = stop(child);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
}

/// The default sandbox cannot make the host's systemd run anything: the system bus and
/// systemd's private socket are out of reach (a private /run), and so is journald's.
/// The same with the host's network namespace (`net = false`).
#[test]
fn a_default_sandbox_cannot_reach_the_hosts_systemd() {
    bed();
    let _ = fs::remove_file("/run/escaped-from-sandbox");
    for extra in ["", "[namespaces]\nnet = false\n"] {
        let text_ = fs::read_to_string("/etc/stockade/profiles/bare-escape.toml").unwrap();
        fs::write(
            "/etc/stockade/profiles/bare-escape-x.toml",
            format!("{text_}{extra}"),
        )
        .unwrap();
        let o = stockade(&["run", "bare-escape-x"]).output().unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
        let got = text(&o.stdout);
        for line in ["systemd_run=", "busctl=", "private=", "journal="] {
            let v = got
                .lines()
                .find_map(|l| l.strip_prefix(line))
                .unwrap_or_else(|| panic!("no {line} in {got}"));
            assert_ne!(
                v, "0",
                "{line} succeeded from inside the sandbox ({extra:?}): {got}"
            );
        }
        assert!(
            !std::path::Path::new("/run/escaped-from-sandbox").exists(),
            "systemd ran a command for the sandbox ({extra:?})"
        );
    }
    let _ = fs::remove_file("/etc/stockade/profiles/bare-escape-x.toml");
}

#[test]
fn sigkill_of_stockade_leaves_no_scope() {
    bed();
    // Its own instance name: the scope test runs scope-probe beside it.
    let mut child = spawn(&["run", "--name", "scope-probe-killed", "scope-probe"]);
    let unit = scope_of(child.id()).replace("{}", "scope-probe");
    assert!(wait_until(Duration::from_secs(10), || show(
        &unit,
        "ActiveState"
    ) == "active"));
    let cgroup = show(&unit, "ControlGroup");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || unit_gone(&unit)),
        "scope {unit} survived SIGKILL of stockade: {}",
        show(&unit, "ActiveState")
    );
    assert!(!std::path::Path::new(&format!("/sys/fs/cgroup{cgroup}")).exists());
}

/// stockade with `args`, in a mount namespace where systemd's private socket is hidden (a
/// bind of /dev/null over it, which refuses connections), so only the system bus is left.
fn without_private_socket(args: &[&str]) -> Command {
    let mut c = Command::new("unshare");
    c.args(["-m", "--", "sh", "-c"])
        .arg("mount --bind /dev/null /run/systemd/private && exec \"$0\" \"$@\"")
        .arg(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

#[test]
fn bus_down_is_a_clear_error_and_leaves_nothing() {
    bed();
    let child = without_private_socket(&["run", "scope-only"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/run/no-such-bus")
        .spawn()
        .unwrap();
    // unshare and sh exec: the pid is stockade's.
    let unit = scope_of(child.id()).replace("{}", "scope-only");
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(125), "{}", text(&o.stderr));
    let e = text(&o.stderr);
    assert!(
        e.contains("register the scope") && e.contains("cannot connect to the system bus"),
        "{e}"
    );
    assert!(unit_gone(&unit), "{unit} exists");
}

/// Whether `pid` has a connection open to systemd's private socket: one of its sockets is
/// the peer of a socket systemd accepted there (`ss` shows systemd's ends with their peers).
fn connected_to_private_socket(pid: u32) -> bool {
    let ours: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_str()?;
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    out("ss -xH src /run/systemd/private")
        .lines()
        .filter_map(|l| l.split_whitespace().nth(7).map(str::to_owned))
        .any(|peer| ours.contains(&peer))
}

#[test]
fn the_scope_is_registered_over_systemds_private_socket_without_the_bus() {
    bed();
    // No system bus at all: only the direct socket can register the scope.
    let child = stockade(&["-v", "run", "--name", "scope-direct", "scope-probe"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/run/no-such-bus")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let unit = scope_of(child.id()).replace("{}", "scope-probe");
    assert!(
        wait_until(Duration::from_secs(10), || show(&unit, "ActiveState")
            == "active"),
        "scope {unit} never became active"
    );
    // The direct connection is closed once the job is done: systemd sends each subscribed
    // direct client every signal, and PID 1 would queue them for a sandbox that never reads.
    assert!(
        !connected_to_private_socket(child.id()),
        "the supervisor keeps its connection to systemd open"
    );
    let o = stop(child);
    let e = text(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert!(
        e.contains("scope registered over systemd's private socket") && e.contains(&unit),
        "{e}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || unit_gone(&unit)),
        "{unit} is left"
    );
}

#[test]
fn without_the_private_socket_the_scope_is_registered_over_the_system_bus() {
    bed();
    let child = without_private_socket(&["-v", "run", "scope-probe"])
        .spawn()
        .unwrap();
    let unit = scope_of(child.id()).replace("{}", "scope-probe");
    assert!(
        wait_until(Duration::from_secs(10), || show(&unit, "ActiveState")
            == "active"),
        "scope {unit} never became active"
    );
    // The same properties as on the direct path.
    assert_eq!(show(&unit, "Slice"), "stockade.slice");
    assert_eq!(show(&unit, "Delegate"), "yes");
    let o = stop(child);
    let e = text(&o.stderr);
    assert!(
        e.contains("private socket is not usable")
            && e.contains("scope registered over the system bus"),
        "{e}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || unit_gone(&unit)),
        "{unit} is left"
    );
}

#[test]
fn unit_start_and_stop_leave_no_residue() {
    bed();
    let o = sh("systemctl start stockade@hello-unit");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(show("stockade@hello-unit", "ActiveState"), "active");
    let cgroup = show("stockade@hello-unit", "ControlGroup");
    // Delegate mode: the supervisor and the sandbox in separate leaves of the unit's cgroup.
    let leaves = out(&format!("ls /sys/fs/cgroup{cgroup}"));
    assert!(
        leaves.contains("supervisor") && leaves.contains("hello-unit-"),
        "leaves: {leaves}"
    );
    let payload = leaves
        .split_whitespace()
        .find(|l| l.starts_with("hello-unit-"))
        .unwrap()
        .to_owned();
    let procs = out(&format!(
        "cat /sys/fs/cgroup{cgroup}/{payload}/cgroup.procs"
    ));
    assert_eq!(
        procs.split_whitespace().count(),
        2,
        "init and the service in {payload}: {procs}"
    );
    // Under a unit, the record names the unit stockade runs under.
    let record: serde_json::Value = serde_json::from_str(
        &fs::read_to_string("/run/stockade/instances/hello-unit.json").unwrap(),
    )
    .unwrap();
    assert_eq!(record["unit"], "stockade@hello-unit.service", "{record}");
    let o = sh("systemctl stop stockade@hello-unit");
    assert!(o.status.success());
    assert_eq!(show("stockade@hello-unit", "ActiveState"), "inactive");
    assert!(
        !std::path::Path::new(&format!("/sys/fs/cgroup{cgroup}")).exists(),
        "unit cgroup left behind"
    );
    assert!(
        !std::path::Path::new("/run/stockade/instances/hello-unit.json").exists(),
        "record left behind"
    );
    assert_eq!(out("systemctl list-units --all --plain --no-legend 'stockade-*.scope' | grep -c hello-unit || true"), "0");
    // The unit's stdout went to its journal; stockade's own records carry its fields.
    assert!(wait_until(Duration::from_secs(3), || out(
        "journalctl -u stockade@hello-unit --no-pager -o cat"
    )
    .contains("hello from a unit")));
    let fields = out("journalctl STOCKADE_PROFILE=hello-unit --no-pager -o verbose");
    assert!(
        fields.contains("STOCKADE_UNIT=stockade@hello-unit.service")
            && fields.contains("STOCKADE_INSTANCE=hello-unit"),
        "{fields}"
    );
}

#[test]
fn notify_unit_is_active_only_after_the_service_is_ready() {
    bed();
    let start = Instant::now();
    let o = sh("systemctl start stockade@notify-probe");
    let took = start.elapsed();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        took >= Duration::from_millis(900),
        "active after {took:?}, before the service said READY=1"
    );
    assert_eq!(show("stockade@notify-probe", "ActiveState"), "active");
    assert_eq!(show("stockade@notify-probe", "StatusText"), "probing done");
    sh("systemctl stop stockade@notify-probe");
}

#[test]
fn redis_under_type_notify_answers_as_soon_as_the_unit_is_active() {
    bed();
    let o = sh("systemctl start stockade@redis-notify");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(out("redis-cli -p 16380 ping"), "PONG");
    assert_eq!(show("stockade@redis-notify", "ActiveState"), "active");
    sh("systemctl stop stockade@redis-notify");
    assert_eq!(show("stockade@redis-notify", "ActiveState"), "inactive");
}

#[test]
fn journal_finds_the_service_output_and_stockade_records() {
    bed();
    let o = stockade(&["run", "journal-probe"]).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert!(
        !text(&o.stdout).contains("to the journal"),
        "output went to the terminal"
    );
    assert!(wait_until(Duration::from_secs(3), || out(
        "journalctl -t journal-probe --no-pager -o cat"
    )
    .contains("to the journal")));
    assert!(wait_until(Duration::from_secs(3), || out(
        "journalctl STOCKADE_PROFILE=journal-probe --no-pager -o cat"
    )
    .contains("journal-probe exited with status 3")));
}

/// `run --explain` reports each denied call to journald with its fields: the call, the
/// rule's file:line (or default), the errno the service got, the caller's executable.
#[test]
fn explain_reports_denied_calls_to_the_journal_with_their_fields() {
    bed();
    let o = stockade(&["run", "--explain", "explain-probe"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout),
        "errno 117\nerrno 117\n",
        "{}",
        text(&o.stderr)
    );
    for (call, rule) in [
        ("keyctl", "default (security.syscall_deny: baseline)"),
        ("getpriority", "explain-probe.toml:7"),
    ] {
        let query = format!("journalctl STOCKADE_DENIED_SYSCALL={call} STOCKADE_PROFILE=explain-probe --no-pager -o verbose");
        assert!(
            wait_until(Duration::from_secs(3), || out(&query)
                .contains("STOCKADE_ERRNO=EUCLEAN")),
            "{call}: {}",
            out(&query)
        );
        let fields = out(&query);
        assert!(
            fields.contains(&format!("STOCKADE_RULE={rule}")),
            "{fields}"
        );
        assert!(fields.contains("STOCKADE_EXE=/usr/bin/perl"), "{fields}");
    }
}

#[test]
fn a_unit_name_already_taken_is_a_clear_error_and_the_other_unit_survives() {
    bed();
    // `exec` keeps the shell's pid, so stockade's {id} is known in advance and its scope
    // name can be taken first.
    let o = sh(&format!(
        "systemd-run --quiet --scope --unit=stockade-scope-only-$$.scope sleep 30 >/dev/null 2>&1 & \
         for i in $(seq 100); do systemctl -q is-active stockade-scope-only-$$.scope && break; sleep 0.02; done; \
         echo taken=stockade-scope-only-$$.scope; exec {BIN} run --name scope-only-taken scope-only"
    ));
    let taken = text(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("taken=").map(str::to_owned))
        .unwrap();
    assert_eq!(o.status.code(), Some(125), "{}", text(&o.stderr));
    let e = text(&o.stderr);
    assert!(
        e.contains(&format!("a unit named {taken} already exists")),
        "{e}"
    );
    assert_eq!(
        show(&taken, "ActiveState"),
        "active",
        "the existing unit was disturbed"
    );
    sh(&format!("systemctl stop {taken}"));
}

// The shipped daemon profiles, each exercised with the daemon's own client. They run here,
// under systemd in scope mode, because their [resources] need a manager or a cgroup v2
// host; tests/vm checks that the limits are enforced.

fn examples() -> String {
    format!("{ROOT}/examples")
}

/// `stockade run` of a shipped daemon profile, stopped with SIGTERM by `stop`, as installed by `bed()`, as installed by `bed()` (without limits the bed cannot
/// enforce).
fn start_example(name: &str, args: &[&str]) -> Child {
    let mut c = Command::new(BIN);
    c.args(["run", name]);
    if !args.is_empty() {
        c.arg("--").args(args);
    }
    c.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn stop(child: Child) -> Output {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn shipped_profiles_check_and_show() {
    bed();
    let shipped = ["hello", "redis", "nginx", "memcached", "postgresql"];
    let dir = examples();
    let mut args = vec!["--profile-path", dir.as_str(), "check"];
    args.extend(shipped);
    let o = stockade(&args).output().unwrap();
    if bed_enforces_limits() {
        assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
        for name in shipped {
            assert!(
                text(&o.stdout).contains(&format!("{name}: ok")),
                "{name} not checked: {}",
                text(&o.stdout)
            );
        }
    } else {
        // Every problem is a limit this bed cannot enforce, and check says so before run.
        assert!(!o.status.success());
        assert!(text(&o.stdout).contains("hello: ok"), "{}", text(&o.stdout));
        let mut problems: Vec<String> = text(&o.stderr)
            .lines()
            .filter(|l| !l.starts_with("warning: "))
            .map(str::to_owned)
            .collect();
        // check ends with its count of failed profiles: hello passes, the daemons fail.
        assert_eq!(
            problems.pop().as_deref(),
            Some("stockade: 4 of 5 profiles have problems"),
            "{}",
            text(&o.stderr)
        );
        assert!(!problems.is_empty());
        for l in &problems {
            assert!(l.contains("needs the cgroup v2 `"), "{l}");
        }
    }
    let o = stockade(&["--profile-path", &examples(), "show", "redis"])
        .output()
        .unwrap();
    let s = text(&o.stdout);
    assert!(
        s.contains("user = \"redis\"  # ") && s.contains("examples/redis.toml:"),
        "{s}"
    );
    assert!(
        s.contains("no_new_privileges = true  # ") && s.contains("examples/include/base.toml:"),
        "{s}"
    );
}

#[test]
fn redis_keeps_its_data_across_restarts() {
    bed();
    let port = "16379";
    let cli = |args: &str| out(&format!("timeout 5 redis-cli -p {port} {args}"));
    let start = || {
        let child = start_example("redis", &["--port", port]);
        assert!(
            wait_until(Duration::from_secs(10), || cli("ping") == "PONG"),
            "redis did not answer"
        );
        child
    };
    let r = start();
    assert_eq!(cli("set persisted-key persisted"), "OK");
    let o = stop(r);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
    let r = start();
    assert_eq!(
        cli("get persisted-key"),
        "persisted",
        "data lost across a restart"
    );
    stop(r);
    let owner = out("stat -c %U /var/lib/stockade/volumes/redis-data/appendonlydir");
    assert_eq!(
        owner, "redis",
        "the volume's files belong to redis on the host"
    );
}

#[test]
fn memcached_answers_set_and_get() {
    bed();
    let m = start_example("memcached", &[]);
    let mut conn = None;
    assert!(wait_until(Duration::from_secs(10), || {
        conn = std::net::TcpStream::connect("127.0.0.1:11211").ok();
        conn.is_some()
    }));
    let mut conn = conn.unwrap();
    use std::io::{Read, Write};
    conn.write_all(b"set greeting 0 0 5\r\nhello\r\nget greeting\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&got).contains("END\r\n") {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "memcached closed the connection");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(
        text(&got),
        "STORED\r\nVALUE greeting 0 5\r\nhello\r\nEND\r\n"
    );
    let user = out("ps -o user= -C memcached");
    assert_eq!(user, "memcache", "memcached runs as its own user");
    stop(m);
}

#[test]
fn nginx_serves_its_default_page() {
    bed();
    let n = start_example("nginx", &[]);
    assert!(
        wait_until(Duration::from_secs(10), || out("curl -s http://127.0.0.1/")
            .contains("Welcome to nginx")),
        "{}",
        {
            let o = stop(n);
            text(&o.stderr)
        }
    );
    let o = stop(n);
    assert!(o.status.code() == Some(0), "{}", text(&o.stderr));
    assert!(
        out("cat /var/lib/stockade/volumes/nginx-logs/access.log").contains("GET / HTTP/1.1"),
        "no access log in the volume"
    );
}

#[test]
fn postgresql_keeps_a_table_across_restarts() {
    bed();
    let socket = "/var/lib/stockade/volumes/postgresql-socket";
    let psql = |sql: &str| sh(&format!("psql -h {socket} -U postgres -qtA -c {sql:?}"));
    let start = || {
        let child = start_example("postgresql", &[]);
        assert!(
            wait_until(Duration::from_secs(60), || psql("select 1")
                .status
                .success()),
            "postgres did not answer"
        );
        child
    };
    let p = start();
    let o = psql(
        "create table kv (k text primary key, v text); insert into kv values ('a', 'persisted')",
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = stop(p);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let p = start();
    let o = psql("select v from kv where k = 'a'");
    assert_eq!(text(&o.stdout).trim(), "persisted", "{}", text(&o.stderr));
    stop(p);
}

// Running sandboxes, operated on: `ps` names the unit that owns each, `stop` says when a
// unit owns one, and the journal has a record of each start and of each end, a stop someone
// asked for at info (6), not as a warning (4).

/// stockade's own journal records of instance `name`: (PRIORITY, MESSAGE), oldest first.
fn records_of(name: &str) -> Vec<(String, String)> {
    out(&format!(
        "journalctl STOCKADE_INSTANCE={name} --no-pager -o json"
    ))
    .lines()
    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    .map(|v| {
        let field = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        (field("PRIORITY"), field("MESSAGE"))
    })
    .collect()
}

/// Waits until instance `name` has `n` records whose message contains `part`, and returns
/// them.
fn wait_for_records(name: &str, part: &str, n: usize) -> Vec<(String, String)> {
    let mut found = Vec::new();
    wait_until(Duration::from_secs(5), || {
        found = records_of(name)
            .into_iter()
            .filter(|(_, m)| m.contains(part))
            .collect();
        found.len() >= n
    });
    assert_eq!(found.len(), n, "{part:?} in {:#?}", records_of(name));
    found
}

fn ps_row(name: &str) -> Option<serde_json::Value> {
    let o = stockade(&["ps", "--json"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    serde_json::from_slice::<Vec<serde_json::Value>>(&o.stdout)
        .unwrap()
        .into_iter()
        .find(|s| s["name"] == name)
}

#[test]
fn a_unit_is_listed_by_ps_stopped_by_stop_with_a_word_and_journaled_at_info() {
    bed();
    let unit = "stockade@stop-unit.service";
    let o = sh("systemctl start stockade@stop-unit");
    assert!(o.status.success(), "{}", text(&o.stderr));
    // ps names the unit that owns the sandbox, in its table and in --json.
    let row = ps_row("stop-unit").expect("stop-unit not listed by ps");
    assert_eq!(row["unit"], unit, "{row}");
    let service_pid = row["service_pid"].as_u64().unwrap();
    let table = text(&stockade(&["ps"]).output().unwrap().stdout);
    let line = table
        .lines()
        .find(|l| l.starts_with("stop-unit "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        line.split_whitespace().any(|c| c == unit),
        "UNIT column: {table}"
    );
    // The start is in the journal at info, with where to find the sandbox.
    let start = wait_for_records("stop-unit", "stop-unit started", 1);
    let (priority, message) = &start[0];
    assert_eq!(priority, "6", "{message}");
    for part in [
        "stop-unit started (profile stop-unit): supervisor pid ".to_owned(),
        format!("service pid {service_pid}, unit {unit}, cgroup /sys/fs/cgroup/"),
        ", record /run/stockade/instances/stop-unit.json".to_owned(),
    ] {
        assert!(message.contains(&part), "{part:?} not in {message}");
    }
    // stop is allowed, and says the unit owns the sandbox and how to stop the unit.
    let o = stockade(&["stop", "stop-unit"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), "stop-unit: stopped");
    let e = text(&o.stderr);
    assert!(
        e.contains(&format!(
            "stop-unit belonged to {unit}, which may start it again"
        )) && e.contains(&format!("use `systemctl stop {unit}`")),
        "{e}"
    );
    // It stopped cleanly (status 0): Restart=on-failure leaves the unit stopped.
    assert!(
        wait_until(Duration::from_secs(5), || show(unit, "ActiveState")
            == "inactive"),
        "{unit}: {}",
        show(unit, "ActiveState")
    );
    assert!(ps_row("stop-unit").is_none(), "still listed after stop");
    let end = wait_for_records("stop-unit", "stopped on request", 1);
    assert_eq!(
        end[0],
        (
            "6".to_owned(),
            "stop-unit stopped on request (SIGTERM): exited with status 0".to_owned()
        )
    );
    // systemctl stop is a stop asked for too: SIGTERM to stockade, forwarded.
    let o = sh("systemctl start stockade@stop-unit");
    assert!(o.status.success(), "{}", text(&o.stderr));
    wait_for_records("stop-unit", "stop-unit started", 2);
    assert!(sh("systemctl stop stockade@stop-unit").status.success());
    let ends = wait_for_records("stop-unit", "stopped on request (SIGTERM)", 2);
    assert!(ends.iter().all(|(p, _)| p == "6"), "{ends:?}");
    let warnings: Vec<_> = records_of("stop-unit")
        .into_iter()
        .filter(|(p, _)| p.as_str() <= "4")
        .collect();
    assert!(
        warnings.is_empty(),
        "warnings for a stop asked for: {warnings:?}"
    );
}

#[test]
fn ps_names_the_scope_of_a_sandbox_run_from_a_shell_and_its_stop_is_info() {
    bed();
    // Its own instance name: other tests run scope-probe.
    let name = "scope-probe-ps";
    let mut child = spawn(&["run", "--name", name, "scope-probe"]);
    let unit = scope_of(child.id()).replace("{}", "scope-probe");
    assert!(
        wait_until(Duration::from_secs(10), || ps_row(name).is_some()),
        "{name} never listed"
    );
    let row = ps_row(name).unwrap();
    assert_eq!(row["unit"], unit.as_str(), "{row}");
    let table = text(&stockade(&["ps"]).output().unwrap().stdout);
    let line = table
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        line.split_whitespace().any(|c| c == unit),
        "UNIT column: {table}"
    );
    let cgroup = show(&unit, "ControlGroup");
    let start = wait_for_records(name, &format!("{name} started"), 1);
    assert_eq!(start[0].0, "6", "{}", start[0].1);
    assert!(
        start[0].1.contains(&format!(
            "supervisor pid {}, service pid {}, unit {unit}, cgroup /sys/fs/cgroup{cgroup}, record /run/stockade/instances/{name}.json",
            child.id(),
            row["service_pid"]
        )),
        "{}",
        start[0].1
    );
    // Not a unit's: stop says nothing about restarts.
    let o = stockade(&["stop", name]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        !text(&o.stderr).contains("systemctl stop"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let end = wait_for_records(name, "stopped on request", 1);
    assert_eq!(
        end[0],
        (
            "6".to_owned(),
            "scope-probe stopped on request (SIGTERM): exited with status 0".to_owned()
        )
    );
    assert!(wait_until(Duration::from_secs(5), || unit_gone(&unit)));
}

/// A failure stays a warning: the service's own non-zero status, with no stop asked for.
#[test]
fn a_failure_is_a_warning_in_the_journal() {
    bed();
    let o = stockade(&["run", "--name", "journal-probe-warn", "journal-probe"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    let end = wait_for_records("journal-probe-warn", "exited with status 3", 1);
    assert_eq!(end[0].0, "4", "{}", end[0].1);
}

/// A stop that had to end in SIGKILL is a warning: the service did not stop when asked.
#[test]
fn a_stop_that_needed_sigkill_is_a_warning() {
    bed();
    let mut child = spawn(&["run", "stubborn"]);
    assert!(
        wait_until(Duration::from_secs(10), || ps_row("stubborn").is_some()),
        "stubborn never listed"
    );
    let o = stockade(&["stop", "--time", "1", "stubborn"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("killed"), "{}", text(&o.stdout));
    child.wait().unwrap();
    let end = wait_for_records("stubborn", "was killed by", 1);
    assert_eq!(
        end[0],
        (
            "4".to_owned(),
            "stubborn was killed by SIGKILL: it did not stop after SIGTERM".to_owned()
        )
    );
}

/// `stockade exec` into a sandbox that `stockade@.service` started: redis-cli runs inside
/// (the service's user, its network) and answers through a pipe, and the command is a
/// member of the sandbox's cgroup leaf of the unit while it runs.
#[test]
fn exec_enters_a_sandbox_started_by_its_unit() {
    bed();
    let o = sh("systemctl start stockade@exec-unit");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = stockade(&[
        "exec",
        "exec-unit",
        "--",
        "redis-cli",
        "-p",
        "16381",
        "ping",
    ])
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), "PONG");
    let o = stockade(&["exec", "exec-unit", "--", "id", "-un"])
        .output()
        .unwrap();
    assert_eq!(text(&o.stdout).trim(), "redis", "{}", text(&o.stderr));
    let record: serde_json::Value = serde_json::from_str(
        &fs::read_to_string("/run/stockade/instances/exec-unit.json").unwrap(),
    )
    .unwrap();
    let cgroup = record["cgroup"]
        .as_str()
        .expect("a sandbox of a unit has a cgroup")
        .to_owned();
    let mut c = stockade(&[
        "exec",
        "exec-unit",
        "--",
        "/bin/sh",
        "-c",
        "sleep 2; : exec-in-unit",
    ])
    .spawn()
    .unwrap();
    let shell = || {
        out("pgrep -f '^/bin/sh -c sleep 2; : exec-in-unit'")
            .lines()
            .next()
            .map(str::to_owned)
    };
    assert!(wait_until(Duration::from_secs(5), || shell().is_some()));
    let pid = shell().unwrap();
    let procs = fs::read_to_string(format!("{cgroup}/cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l == pid),
        "{pid} not in {cgroup}: {procs}"
    );
    assert!(c.wait().unwrap().success());
    let o = sh("systemctl stop stockade@exec-unit");
    assert!(o.status.success());
    assert_eq!(show("stockade@exec-unit", "ActiveState"), "inactive");
}

/// `systemctl stop` of a unit whose service takes a few seconds to stop: meanwhile `ps`
/// says stopping, `exec` refuses it, `stockade stop` sends nothing more and returns once it
/// is gone, and the unit ends cleanly with its end at info.
#[test]
fn a_unit_being_stopped_is_stopping_to_ps_exec_and_stop() {
    bed();
    let unit = "stockade@linger-unit.service";
    let o = sh("systemctl start stockade@linger-unit");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        ps_row("linger-unit").expect("not listed")["state"],
        "running"
    );
    // --no-block: systemd sends the SIGTERM and returns; the service lingers.
    assert!(sh("systemctl stop --no-block stockade@linger-unit")
        .status
        .success());
    assert!(
        wait_until(Duration::from_secs(5), || ps_row("linger-unit")
            .is_some_and(|r| r["state"] == "stopping")),
        "never stopping: {:?}",
        ps_row("linger-unit")
    );
    let o = stockade(&["exec", "linger-unit", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).starts_with(
            "stockade: sandbox `linger-unit` is stopping and cannot be entered (running: "
        ),
        "{}",
        text(&o.stderr)
    );
    let o = stockade(&["stop", "linger-unit"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), "linger-unit: stopped");
    assert!(
        text(&o.stderr).contains("linger-unit is already stopping; waiting for it"),
        "{}",
        text(&o.stderr)
    );
    assert!(ps_row("linger-unit").is_none(), "still listed after stop");
    assert!(
        wait_until(Duration::from_secs(5), || show(unit, "ActiveState")
            == "inactive"),
        "{unit}: {}",
        show(unit, "ActiveState")
    );
    let end = wait_for_records("linger-unit", "stopped on request (SIGTERM)", 1);
    assert_eq!(end[0].0, "6", "{end:?}");
    assert!(!std::path::Path::new("/run/stockade/instances/linger-unit.stopping").exists());
}

/// Many sandboxes started at once (issue 15's load, in small: tests/bench/run.sh starts 200
/// and times them): every one starts, each in a scope of its own holding its init, and once
/// they are stopped no scope, cgroup, record, mount or process of theirs is left.
#[test]
fn twenty_sandboxes_started_at_once_each_get_a_scope_and_leave_nothing() {
    bed();
    const N: usize = 20;
    let mounts = || out("wc -l < /proc/self/mountinfo");
    let slice_cgroups = || {
        out("find /sys/fs/cgroup/stockade.slice -type d -name 'stockade-many-*' 2>/dev/null | wc -l")
    };
    let (mounts_before, cgroups_before) = (mounts(), slice_cgroups());
    let children: Vec<Child> = (0..N)
        .map(|i| spawn(&["run", "--name", &format!("many-{i}"), "many"]))
        .collect();
    let units: Vec<String> = children
        .iter()
        .map(|c| scope_of(c.id()).replace("{}", "many"))
        .collect();
    let record = |i: usize| format!("/run/stockade/instances/many-{i}.json");
    assert!(
        wait_until(Duration::from_secs(60), || (0..N)
            .all(|i| std::path::Path::new(&record(i)).exists())),
        "not all {N} started: {}",
        out("ls /run/stockade/instances")
    );
    let mut cgroups = std::collections::BTreeSet::new();
    for (i, unit) in units.iter().enumerate() {
        assert!(
            wait_until(Duration::from_secs(10), || show(unit, "ActiveState")
                == "active"),
            "scope {unit} never became active"
        );
        let cgroup = show(unit, "ControlGroup");
        let r: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(record(i)).unwrap()).unwrap();
        let procs = out(&format!("cat /sys/fs/cgroup{cgroup}/cgroup.procs"));
        let init = r["init"]["pid"].to_string();
        assert!(
            procs.split_whitespace().any(|p| p == init),
            "{unit} does not hold init {init}: {procs}"
        );
        cgroups.insert(cgroup);
    }
    assert_eq!(cgroups.len(), N, "scopes share a cgroup: {cgroups:?}");
    for c in &children {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
    }
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    }
    for unit in &units {
        assert!(
            wait_until(Duration::from_secs(5), || unit_gone(unit)),
            "scope {unit} left behind"
        );
    }
    assert!(
        (0..N).all(|i| !std::path::Path::new(&record(i)).exists()),
        "records left behind"
    );
    assert_eq!(slice_cgroups(), cgroups_before, "cgroups left behind");
    assert_eq!(mounts(), mounts_before, "mounts left behind");
    assert_eq!(
        out("pgrep -fx 'sleep 1000' | wc -l"),
        "0",
        "processes left behind"
    );
}

/// `stockade export --format systemd` of a shipped profile, planned from `examples/` as it
/// is (limits included: the unit is for a systemd host, whose job they are).
fn export_unit(name: &str) -> String {
    let o = stockade(&[
        "--profile-path",
        &examples(),
        "export",
        "--format",
        "systemd",
        name,
    ])
    .output()
    .unwrap();
    assert!(o.status.success(), "export {name}: {}", text(&o.stderr));
    // What the unit cannot express is said on stderr too, and listed in the unit.
    for l in text(&o.stderr).lines() {
        assert!(l.starts_with("stockade: export: not in the unit: "), "{l}");
        let item = l.trim_start_matches("stockade: export: not in the unit: ");
        assert!(text(&o.stdout).contains(&format!("#   - {item}")), "{item}");
    }
    text(&o.stdout)
}

#[test]
fn exported_units_of_every_shipped_profile_pass_systemd_analyze_verify() {
    bed();
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for name in ["hello", "redis", "nginx", "memcached", "postgresql"] {
        let path = dir.path().join(format!("stockade-export-{name}.service"));
        fs::write(&path, export_unit(name)).unwrap();
        files.push(path.display().to_string());
    }
    // verify exits 0 even for a directive it ignores: anything it says is a failure.
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .args(&files)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        o.status.success() && o.stdout.is_empty() && o.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
}

#[test]
fn the_exported_hello_unit_runs_and_reports_its_walls_to_the_journal() {
    bed();
    let unit = "stockade-export-hello.service";
    fs::write(format!("/etc/systemd/system/{unit}"), export_unit("hello")).unwrap();
    assert!(sh("systemctl daemon-reload").status.success());
    let cursor = out("journalctl -n0 --show-cursor --no-pager | sed -n 's/^-- cursor: //p'");
    assert!(!cursor.is_empty());
    let o = sh(&format!("systemctl start {unit}"));
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        wait_until(Duration::from_secs(20), || {
            show(unit, "ActiveState") != "active" && show(unit, "ActiveState") != "activating"
        }),
        "{unit} is still {}",
        show(unit, "ActiveState")
    );
    assert_eq!(show(unit, "Result"), "success");
    // Its stdout reaches the journal under its SyslogIdentifier; a unit that exited this
    // fast is not always attributed to the unit, so read from a cursor taken before start.
    let mut log = String::new();
    wait_until(Duration::from_secs(10), || {
        log = out(&format!(
            "journalctl --no-pager -o cat --after-cursor='{cursor}' -t hello"
        ));
        log.contains("mounts:")
    });
    let field = |name: &str| {
        log.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no `{name}` in\n{log}"))
            .trim()
            .to_owned()
    };
    // A dynamic user, not root: stockade's id range has no systemd equivalent.
    let uid: u32 = field("uid:")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((61184..=65519).contains(&uid), "uid {uid}");
    // PrivateNetwork=yes: loopback only (systemd's /sys shows the unit's network namespace).
    assert_eq!(field("network:"), "lo", "{log}");
    // ProtectSystem=strict: the root is read-only.
    assert!(log.lines().any(|l| l.trim().starts_with("/  ro")), "{log}");
    // ProtectProc=invisible, the nearest to a PID namespace systemd 252 has: only the
    // service's own processes are visible, the bed's init among none of them.
    let pids: Vec<u32> = log
        .lines()
        .skip_while(|l| *l != "processes:")
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(!pids.is_empty() && !pids.contains(&1), "{pids:?}");
    // No UTS name of its own in systemd 252 (the unit's comment block says so).
    assert_eq!(field("hostname:"), out("hostname"));
    let _ = fs::remove_file(format!("/etc/systemd/system/{unit}"));
    sh("systemctl daemon-reload");
}
