//! The record of a running sandbox, from the host's side: `/run/stockade/instances/NAME.json`
//! exists while the sandbox runs and names its processes (pids with start times), its
//! namespaces and its plan; it is gone after every ending, stale records left by a killed
//! stockade are removed by the next run of that name, and a name is held by one sandbox at
//! a time.

use crate::harness::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn record_path(name: &str) -> PathBuf {
    Path::new(INSTANCES).join(format!("{name}.json"))
}

/// Field 22 of /proc/PID/stat, found after the last `)` (comm may hold anything).
fn start_time(pid: u64) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

fn children(pid: u64) -> Vec<u64> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

fn ns_inode(pid: u64, ns: &str) -> u64 {
    fs::metadata(format!("/proc/{pid}/ns/{ns}")).unwrap().ino()
}

fn signal(child: &std::process::Child, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
}

/// A service that sleeps `$1` seconds (30 unless `-- N` is appended).
fn sleeper(profiles: &Profiles, name: &str, m: &str) -> PathBuf {
    profiles.write(
        name,
        &sh_profile("sleep ${1:-30}", m, "args_append = true\n"),
    )
}

#[test]
fn a_running_sandbox_has_its_record_with_its_processes_namespaces_and_plan() {
    require_root();
    let m = marker();
    let profiles = Profiles::new();
    let p = sleeper(&profiles, "rec", &m);
    let name = format!("rec-{m}");
    let snap = Snapshot::take();
    let child = Run::profile(&p, &m).spawn();
    let r = wait_for_record(&name);
    let supervisor = u64::from(child.id());
    let init = children(supervisor)[0];
    assert_eq!(r["format"], 1);
    assert_eq!(r["stockade_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(r["instance"], name.as_str());
    assert_eq!(r["profile"], "rec");
    assert_eq!(r["supervisor"]["pid"], supervisor);
    assert_eq!(r["supervisor"]["start_time"], start_time(supervisor));
    assert_eq!(r["init"]["pid"], init);
    assert_eq!(r["init"]["start_time"], start_time(init));
    // The namespaces the service runs in, not the host's: read from the service itself.
    // Once it has exec'd (until then it is init's non-dumpable copy).
    let exec_d = |pid: &u64| {
        fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&m))
    };
    assert!(wait_until(Duration::from_secs(5), || children(init)
        .iter()
        .any(exec_d)));
    let service = children(init)[0];
    let me = u64::from(std::process::id());
    for (key, file) in [
        ("net", "net"),
        ("mount", "mnt"),
        ("pid", "pid"),
        ("user", "user"),
    ] {
        assert_eq!(r["namespaces"][key], ns_inode(service, file), "{key}");
        assert_ne!(
            r["namespaces"][key],
            ns_inode(me, file),
            "{key} is the host's"
        );
    }
    // The plan as `show --plan --json` prints it, provenance and all.
    assert_eq!(r["plan"]["name"], "rec");
    let argv = r["plan"]["argv"]["value"].as_array().unwrap();
    assert_eq!(argv[3], format!("marker-{m}").as_str());
    assert_eq!(
        r["plan"]["argv"]["from"]["profile"]["key"], "exec.command",
        "{}",
        r["plan"]["argv"]
    );
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let started = r["started_unix_ms"].as_u64().unwrap();
    assert!(now_ms >= started && now_ms - started < 60_000, "{started}");
    // Only root can reach it: a 0700 directory of root's, a 0600 file.
    let dir = fs::metadata(INSTANCES).unwrap();
    assert_eq!((dir.uid(), dir.mode() & 0o7777), (0, 0o700));
    let file = fs::metadata(record_path(&name)).unwrap();
    assert_eq!((file.uid(), file.mode() & 0o7777), (0, 0o600));
    assert!(instance_locked(&name), "the supervisor holds the name");
    // A normal end (the service dies of the forwarded SIGTERM) removes it.
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    let out = child.wait_with_output().unwrap();
    assert!(!record_path(&name).exists(), "{}", text(&out.stderr));
    snap.assert_unchanged(&m);
}

#[test]
fn the_record_is_gone_after_an_exit_and_after_a_failure_once_it_was_written() {
    require_root();
    let m = marker();
    let profiles = Profiles::new();
    let p = profiles.write("gone", &sh_profile("exit 3", &m, ""));
    let out = Run::profile(&p, &m).arg("-v").output();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&format!("recorded instance gone-{m}")));
    assert!(!record_path(&format!("gone-{m}")).exists());
    // A program whose interpreter is missing passes every check and fails at execve, after
    // the record was written: the failure path removes it too (the harness's snapshot
    // compares /run/stockade).
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let prog = dir.path().join("prog");
    fs::write(&prog, "#!/nonexistent/interpreter\n").unwrap();
    fs::set_permissions(&prog, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let p = profiles.write(
        "fails",
        // Bound at /srv/x: a checkout under /tmp would be hidden by the private /tmp.
        &format!(
            "[exec]\ncommand = [\"/srv/x/prog\", \"marker-{m}\"]\n[[mount]]\ntype = \"tmpfs\"\ntarget = \"/srv\"\n[[mount]]\ntype = \"bind\"\nsource = {:?}\ntarget = \"/srv/x\"\nread_only = true\n",
            dir.path().display().to_string()
        ),
    );
    let out = Run::profile(&p, &m).arg("-v").output();
    let e = text(&out.stderr);
    assert_eq!(out.status.code(), Some(127), "{e}");
    assert!(e.contains(&format!("recorded instance fails-{m}")), "{e}");
    assert!(!record_path(&format!("fails-{m}")).exists());
}

#[test]
fn sigkill_of_stockade_leaves_a_stale_record_the_next_run_of_that_name_removes() {
    require_root();
    let _alone = STALE_RECORDS.lock().unwrap_or_else(|e| e.into_inner());
    let m = marker();
    let profiles = Profiles::new();
    let p = sleeper(&profiles, "stale", &m);
    let name = format!("stale-{m}");
    let snap = Snapshot::take();
    let mut child = Run::profile(&p, &m).spawn();
    let r = wait_for_record(&name);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(wait_until(Duration::from_secs(3), || processes_with(&m).is_empty()));
    assert!(record_path(&name).exists(), "a SIGKILL leaves the record");
    assert!(!instance_locked(&name), "the kernel released the name");
    // The next run of that name removes it, says so at -v, and starts.
    let out = Run::stockade(&["-v", "run", "--name", &name], &m)
        .arg(&p)
        .arg("--")
        .arg("0")
        .output();
    let e = text(&out.stderr);
    assert!(out.status.success(), "{e}");
    assert!(
        e.contains(&format!(
            "removed the stale record of instance {name}: its supervisor (pid {}) is gone",
            r["supervisor"]["pid"]
        )),
        "{e}"
    );
    assert!(!record_path(&name).exists());
    snap.assert_unchanged(&m);
}

#[test]
fn a_taken_name_is_refused_before_anything_is_set_up_and_another_name_runs_alongside() {
    require_root();
    let m = marker();
    let profiles = Profiles::new();
    let p = sleeper(&profiles, "taken", &m);
    let name = format!("taken-{m}");
    let snap = Snapshot::take();
    let child = Run::profile(&p, &m).spawn();
    let r = wait_for_record(&name);
    // The runs beside it carry a marker of their own: the harness looks for processes of
    // each run's marker after it ends, and the first sandbox still runs.
    let m2 = marker();
    // A profile never started before: its id-range claim would be the run's first effect.
    let other = format!("fresh{m}");
    let fresh = profiles.write(&other, &sh_profile("true", &m2, ""));
    let out = Run::stockade(&["run", "--name", &name], &m2)
        .arg(&fresh)
        .output();
    let e = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{e}");
    assert!(
        e.contains(&format!(
            "stockade: instance `{name}` is already running (supervisor pid {}, unit ",
            child.id()
        )),
        "{e}"
    );
    assert_eq!(r["supervisor"]["pid"], child.id());
    assert!(
        !Path::new(&format!("/var/lib/stockade/ids/by-name/{other}")).exists(),
        "the refused run claimed an id range"
    );
    // Another name of the same profile (`taken`, from another directory) starts while the
    // first runs.
    let beside = Profiles::new();
    let p2 = sleeper(&beside, "taken", &m2);
    let out = Run::stockade(&["run", "--name", &format!("{name}-2")], &m2)
        .arg(&p2)
        .arg("--")
        .arg("0")
        .output();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(record_path(&name).exists(), "the first is still recorded");
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    child.wait_with_output().unwrap();
    snap.assert_unchanged(&m);
}

#[test]
fn an_invalid_name_is_refused_naming_the_argument() {
    require_root();
    let m = marker();
    let profiles = Profiles::new();
    let p = profiles.write("named", &sh_profile("true", &m, ""));
    let long = "x".repeat(65);
    for (bad, why) in [
        (".hidden", "an instance name cannot start with `.`"),
        ("a/b", "`/` cannot be in an instance name"),
        ("a b", "` ` cannot be in an instance name"),
        (
            long.as_str(),
            "an instance name has at most 64 characters, not 65",
        ),
        ("", "an instance name cannot be empty"),
    ] {
        let out = Run::stockade(&["run", "--name", bad], &m).arg(&p).output();
        let e = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {e}");
        assert!(
            e.contains(&format!("invalid value '{bad}' for '--name <NAME>': {why}")),
            "{bad}: {e}"
        );
    }
}

/// The supervisor sleeps while the kernel tears the sandbox down. Once init has reported
/// the service's end its status socket hangs up, and poll reports a hang-up on every entry
/// for that socket: left in the poll set it made the supervisor spin (a read of its
/// signalfd each round) until SIGCHLD, on the cores the teardown needed. The teardown is
/// made long here with 100 MiB allocated in the sandbox's /tmp, a tmpfs freed when its
/// mount namespace goes. Read syscalls of the supervisor (with its reaped children) are
/// counted in /proc/PID/io while it is a zombie: about 80 for this launch; a spin adds one
/// per round, hundreds to thousands (it did not spin in every launch: three are made).
#[test]
fn the_supervisor_does_not_spin_while_the_sandbox_is_torn_down() {
    use nix::sys::wait::{waitid, Id, WaitPidFlag};
    require_root();
    let m = marker();
    let profiles = Profiles::new();
    let p = profiles.write(
        "teardown",
        &sh_profile(
            "fallocate -l 100M /tmp/fill",
            &m,
            "[filesystem]\nprivate_tmp = true\n",
        ),
    );
    for _ in 0..3 {
        let snap = Snapshot::take();
        let child = Run::profile(&p, &m).spawn();
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        // Exited, not yet reaped: its /proc entry still holds the counts.
        waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT).unwrap();
        let io = fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
        let reads: u64 = io
            .lines()
            .find_map(|l| l.strip_prefix("syscr: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no syscr in /proc/{pid}/io: {io}"));
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        snap.assert_unchanged(&m);
        assert!(
            reads < 300,
            "the supervisor made {reads} read calls for a launch that needs about 80: it spun while the sandbox was torn down"
        );
    }
}
