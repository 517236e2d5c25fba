//! The escape suite: tests/escape/probe.rs runs inside a hardened sandbox (the defaults: every
//! namespace, read-only root, private /tmp and /dev, protect_kernel, the seccomp baseline, no
//! capabilities) and attempts what a compromised service would; every attempt must fail with
//! the errno (or signal) listed here. Plus the races and file checks that need the host side.

use crate::harness::*;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn probe_bin() -> PathBuf {
    let p = Path::new(stockade_bin())
        .parent()
        .unwrap()
        .join("examples/escape-probe");
    assert!(
        p.exists(),
        "{} is missing: build it with `cargo build --example escape-probe` (tests/run-all.sh does)",
        p.display()
    );
    p
}

/// Host-side material the probe attacks: a read-only bind, privileged copies of the probe,
/// a marker in the launching directory, an inherited descriptor, a listening port.
struct Stage {
    dir: tempfile::TempDir,
    listener: std::net::TcpListener,
}

impl Stage {
    fn new() -> Stage {
        // Beside the build, not in /tmp: a nosuid /tmp would make the setuid check vacuous.
        let target = Path::new(stockade_bin()).parent().unwrap().to_owned();
        let dir = tempfile::tempdir_in(target).unwrap();
        let d = dir.path();
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["data", "privileged", "cwd"] {
            fs::create_dir(d.join(sub)).unwrap();
        }
        fs::write(d.join("cwd/cwd-marker"), "host").unwrap();
        // The probe runs from the bind mount: a build under /tmp is hidden by private_tmp.
        fs::copy(probe_bin(), d.join("privileged/escape-probe")).unwrap();
        let setuid = d.join("privileged/setuid-probe");
        fs::copy(probe_bin(), &setuid).unwrap();
        fs::set_permissions(&setuid, fs::Permissions::from_mode(0o4755)).unwrap();
        let filecap = d.join("privileged/filecap-probe");
        fs::copy(probe_bin(), &filecap).unwrap();
        let out = Command::new("setcap")
            .arg("cap_sys_admin+ep")
            .arg(&filecap)
            .output()
            .expect("setcap (libcap2-bin) is needed");
        assert!(out.status.success(), "setcap: {}", text(&out.stderr));
        Stage {
            dir,
            listener: std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        }
    }

    fn profile(&self, user: &str) -> String {
        let d = self.dir.path().display();
        format!(
            r#"[exec]
command = ["/tmp/privileged/escape-probe"]
user = "{user}"
env = {{ PROBE_HOST_PID = "{pid}", PROBE_STOCKADE = "{bin}", PROBE_HOST_FD = "7", PROBE_CWD_MARKER = "cwd-marker", PROBE_HOST_PORT = "{port}" }}
[[mount]]
type = "bind"
source = "{d}/data"
target = "/tmp/data"
read_only = true
[[mount]]
type = "bind"
source = "{d}/privileged"
target = "/tmp/privileged"
read_only = true
[security]
capabilities = []
"#,
            pid = std::process::id(),
            bin = stockade_bin(),
            port = self.listener.local_addr().unwrap().port(),
        )
    }

    /// Runs the probe as `user`, from the marker directory, with descriptor 7 open on a host
    /// file (not close-on-exec), and returns its verdicts.
    fn run(&self, user: &str) -> BTreeMap<String, String> {
        let profiles = Profiles::new();
        let p = profiles.write("escape", &self.profile(user));
        let snap = Snapshot::take();
        let out = Command::new("/bin/sh")
            .args(["-c", "exec 7</etc/hostname; exec \"$@\"", "sh"])
            .arg(stockade_bin())
            .arg("run")
            .arg(&p)
            .current_dir(self.dir.path().join("cwd"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        snap.assert_unchanged("escape-probe");
        assert!(
            out.status.success(),
            "the probe failed ({:?}): {}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

/// What each attempt must end in, as root of the sandbox (no capabilities) and as nobody.
fn expected(root: bool) -> BTreeMap<&'static str, String> {
    let as_root = |r: &str, other: &str| if root { r.to_owned() } else { other.to_owned() };
    // Masked files this kernel has are unreadable; ones it lacks are simply absent.
    let masked = |host_path: &str, errno: &str| {
        if Path::new(host_path).exists() {
            errno.to_owned()
        } else {
            "ENOENT".to_owned()
        }
    };
    let mut e: BTreeMap<&str, String> = BTreeMap::new();
    for (k, v) in [
        ("signal-host-process", "ESRCH"),
        ("ptrace-host-process", "EPERM"),
        ("ptrace-init", "EPERM"),
        ("proc-lists-only-sandbox", "few"),
        ("write-root", "EROFS"),
        ("write-read-only-bind", "EROFS"),
        // Init (pid 1) is stockade, not dumpable: its exe link cannot even be opened.
        ("write-proc-1-exe", "EACCES"),
        ("cgroup-procs", "ENOENT"),
        ("open-dev-mem", "ENOENT"),
        ("mknod-block-device", "EPERM"),
        ("mount", "EPERM"),
        ("fsopen", "EPERM"),
        ("open-tree", "EPERM"),
        ("pivot-root", "EPERM"),
        ("chroot", "EPERM"),
        ("unshare-user", "EPERM"),
        ("unshare-mount", "EPERM"),
        ("setns", "EPERM"),
        ("clone-new-user", "EPERM"),
        ("clone3", "ENOSYS"),
        ("load-module", "EPERM"),
        ("reboot", "EPERM"),
        ("set-clock", "EPERM"),
        ("sethostname", "EPERM"),
        ("bpf", "EPERM"),
        ("perf-event-open", "EPERM"),
        ("keyctl", "EPERM"),
        ("add-key", "EPERM"),
        ("userfaultfd", "EPERM"),
        ("io-uring", "EPERM"),
        ("open-by-handle-at", "EPERM"),
        ("raw-socket", "EPERM"),
        ("tiocsti", "EPERM"),
        ("tiocsti-high-bits", "EPERM"),
        ("tioclinux", "EPERM"),
        ("controlling-tty", "ENXIO"),
        ("inherited-host-fd", "EBADF"),
        ("extra-fds", "none"),
        ("host-cwd", "ENOENT"),
        ("init-cwd", "EACCES"),
        ("connect-host-loopback", "ECONNREFUSED"),
        ("connect-outside", "ENETUNREACH"),
        ("exec-setuid-root", "nothing-gained"),
        // The kernel refuses to exec a "+ep" binary whose capabilities it cannot grant.
        ("exec-file-capability", "EPERM"),
        ("x32-syscall", "SIGSYS"),
        ("i386-syscall", "SIGSYS"),
    ] {
        e.insert(k, v.to_owned());
    }
    // Running binaries refuse writers (ETXTBSY) before the read-only mount is consulted;
    // nobody is refused by the file's mode first.
    // A build under /tmp is not even visible (private_tmp).
    let hidden = ["/tmp/", "/var/tmp/"]
        .iter()
        .any(|t| stockade_bin().starts_with(t));
    e.insert(
        "write-stockade-binary",
        if hidden {
            "ENOENT".into()
        } else {
            as_root("ETXTBSY", "EACCES")
        },
    );
    e.insert("write-proc-sys", as_root("EROFS", "EACCES"));
    e.insert("write-sys", as_root("EROFS", "EACCES"));
    e.insert(
        "write-sysrq-trigger",
        masked("/proc/sysrq-trigger", &as_root("EROFS", "EACCES")),
    );
    e.insert("read-proc-keys", masked("/proc/keys", "EACCES"));
    e.insert("read-proc-timer-list", masked("/proc/timer_list", "EACCES"));
    e.insert("read-proc-kcore", masked("/proc/kcore", "EACCES"));
    e.insert("read-sys-firmware", masked("/sys/firmware", "EACCES"));
    e
}

fn assert_all_denied(got: &BTreeMap<String, String>, root: bool) {
    let want = expected(root);
    let mut wrong = Vec::new();
    for (name, verdict) in &want {
        match got.get(*name) {
            Some(v) if v == verdict => {}
            Some(v) => wrong.push(format!("{name}: got {v}, want {verdict}")),
            None => wrong.push(format!("{name}: no verdict (did the probe crash?)")),
        }
    }
    for name in got.keys() {
        if !want.contains_key(name.as_str()) {
            wrong.push(format!("{name}: not in the expected table"));
        }
    }
    assert!(
        wrong.is_empty(),
        "escape checks failed:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn escape_attempts_fail_as_sandbox_root() {
    require_root();
    let stage = Stage::new();
    assert_all_denied(&stage.run("root"), true);
}

#[test]
fn escape_attempts_fail_as_nobody() {
    require_root();
    let stage = Stage::new();
    assert_all_denied(&stage.run("nobody"), false);
}

#[test]
fn probe_refuses_to_run_outside_a_sandbox() {
    // The probe's own gate: on the host its pid is large, and it must do nothing.
    let out = Command::new(probe_bin()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
}

/// A bind source flipped between a directory and a symlink to /etc by another thread while
/// sandboxes start: each launch either binds the real directory, or refuses (at planning:
/// an untrusted symlink; at mount time: a symlink that was not there when planned). None
/// may ever show /etc.
#[test]
fn symlink_swapped_into_a_bind_source_is_refused_never_followed() {
    require_root();
    let base = tempfile::tempdir().unwrap();
    let b = base.path().to_owned();
    // Writable by anyone: an attacker's directory.
    fs::set_permissions(&b, fs::Permissions::from_mode(0o777)).unwrap();
    fs::create_dir(b.join("src")).unwrap();
    fs::write(b.join("src/inside"), "x").unwrap();
    std::os::unix::fs::symlink("/etc", b.join("evil")).unwrap();
    let m = marker();
    let profiles = Profiles::new();
    let p = profiles.write(
        "race",
        &sh_profile(
            "ls /tmp/data",
            &m,
            &format!(
                "[[mount]]\ntype = \"bind\"\nsource = \"{}/src\"\ntarget = \"/tmp/data\"\nread_only = true\n",
                b.display()
            ),
        ),
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (stop, b) = (stop.clone(), b.clone());
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                nix::fcntl::renameat2(
                    None,
                    &b.join("src"),
                    None,
                    &b.join("evil"),
                    nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                )
                .unwrap();
                swaps += 1;
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            swaps
        })
    };
    let snap = Snapshot::take();
    let (mut bound, mut refused_plan, mut refused_mount) = (0, 0, 0);
    for _ in 0..150 {
        let out = Command::new(stockade_bin())
            .arg("run")
            .arg(&p)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(
            !stdout.contains("passwd") && !stdout.contains("hostname"),
            "the sandbox saw /etc through the swapped symlink:\n{stdout}"
        );
        match out.status.code() {
            Some(0) => {
                assert_eq!(stdout.trim(), "inside", "{stderr}");
                bound += 1;
            }
            Some(78) if stderr.contains("symlink that someone other than root can change") => {
                refused_plan += 1
            }
            Some(125) if stderr.contains("now passes through a symlink") => refused_mount += 1,
            // Any other refusal must at least name the source it refused.
            Some(78 | 125) if stderr.contains("/src") => refused_plan += 1,
            other => panic!("unexpected outcome {other:?}:\n{stdout}\n{stderr}"),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    snap.assert_unchanged(&m);
    eprintln!(
        "{swaps} swaps; bound {bound}, refused when planning {refused_plan}, refused when mounting {refused_mount}"
    );
    assert!(
        bound > 0 && refused_plan > 0,
        "the race never hit both states"
    );
}

#[test]
fn profiles_others_can_write_are_refused_when_running_as_root() {
    require_root();
    let m = marker();
    let profiles = Profiles::new();
    let p = profiles.write("loose", &sh_profile("echo ran", &m, ""));
    fs::set_permissions(&p, fs::Permissions::from_mode(0o666)).unwrap();
    let out = Run::profile(&p, &m).output();
    let e = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{e}");
    assert!(
        e.contains("loose.toml") && e.contains("mode 0666") && e.contains("chmod go-w"),
        "{e}"
    );
    assert!(!text(&out.stdout).contains("ran"));

    // The same file owned by another user is refused even when its mode is strict.
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    nix::unistd::chown(&p, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    let out = Run::profile(&p, &m).output();
    let e = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{e}");
    assert!(e.contains("owned by uid 65534"), "{e}");
}

/// An allow-list (systemd's groups) with a chosen errno, and the kill action: both installed
/// in front of a real program, which keeps working for what the list allows.
#[test]
fn seccomp_allow_list_errno_and_kill() {
    require_root();
    let m = marker();
    let profiles = Profiles::new();
    let p = profiles.write(
        "allow",
        &sh_profile(
            "cat /etc/hostname >/dev/null && echo read=ok; date -s @0 2>&1; echo date=$?",
            &m,
            "[security]\nsyscall_filter = [\"@system-service\"]\nsyscall_errno = \"EACCES\"\n",
        ),
    );
    let out = Run::profile(&p, &m).output();
    let o = text(&out.stdout);
    assert!(out.status.success(), "{o}{}", text(&out.stderr));
    assert!(o.contains("read=ok"), "{o}");
    // @clock is not in @system-service: settimeofday fails with the profile's errno.
    assert!(
        o.contains("Permission denied") && o.contains("date=1"),
        "{o}"
    );

    // hostname is killed by SIGSYS; the shell sees 128 + 31.
    let p = profiles.write(
        "kill",
        &sh_profile(
            "hostname escaped; echo status=$?",
            &m,
            "[security]\nsyscall_deny = [\"sethostname\"]\nsyscall_errno = \"kill\"\n",
        ),
    );
    let out = Run::profile(&p, &m).output();
    assert!(
        text(&out.stdout).contains("status=159"),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// stockade's own last steps survive the narrowest allow-list: it reports a failed exec
/// through the filter, and without no_new_privileges it drops CAP_SYS_ADMIN after it.
#[test]
fn narrow_allow_list_still_reports_a_failed_exec() {
    require_root();
    let m = marker();
    let profiles = Profiles::new();
    // A program the plan finds executable whose interpreter is missing: only execve can
    // tell (a missing program is refused by the plan already).
    let script = profiles.path().join("script");
    fs::write(&script, format!("#!/nonexistent-{m}\n")).unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    for nnp in ["true", "false"] {
        let p = profiles.write(
            "narrow",
            &format!("[exec]\ncommand = [\"{}\"]\n[filesystem]\nprivate_tmp = false\n[security]\nsyscall_filter = [\"@basic-io\"]\nno_new_privileges = {nnp}\n", script.display()),
        );
        let out = Run::profile(&p, &m).output();
        let e = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(127),
            "no_new_privileges = {nnp}: {e}"
        );
        assert!(e.contains("execve") && e.contains("no such file"), "{e}");
    }
}

/// syscall_log lets a denied call run (the kernel logs it), where the errno action fails it.
#[test]
fn syscall_log_lets_denied_calls_run() {
    require_root();
    let m = marker();
    let profiles = Profiles::new();
    let run = |extra: &str| {
        let p = profiles.write(
            "log",
            &sh_profile(
                "uname -n >/dev/null 2>&1; echo uname=$?",
                &m,
                &format!("[security]\nsyscall_deny = [\"uname\"]\n{extra}"),
            ),
        );
        text(&Run::profile(&p, &m).output().stdout)
    };
    assert!(run("").contains("uname=1"), "uname must be denied");
    assert!(run("syscall_log = true\n").contains("uname=0"));
}

/// The service gets a session keyring of its own, not the one of the session that started
/// stockade (an allow-list with @keyring lets it look). Without a user namespace and without
/// a session keyring of their own, processes of one user share the user-session keyring.
#[test]
fn the_service_gets_a_new_session_keyring() {
    require_root();
    const KEYCTL: &str = "import ctypes; print(ctypes.CDLL(None).syscall(250, 0, -3, 0))";
    let host = Command::new("python3")
        .args(["-c", KEYCTL])
        .output()
        .unwrap();
    let host_id = text(&host.stdout).trim().to_owned();
    assert!(host_id.parse::<i64>().is_ok_and(|v| v > 0), "{host_id}");
    let m = marker();
    let profiles = Profiles::new();
    let p = profiles.write(
        "keys",
        &format!(
            "[exec]\ncommand = [\"/usr/bin/python3\", \"-c\", \"{KEYCTL}\", \"marker-{m}\"]\n\
             [namespaces]\nuser = false\n\
             [security]\nsyscall_filter = [\"@system-service\"]\n"
        ),
    );
    // Started from this process, so without the new keyring the service would share ours.
    let out = Command::new("/bin/sh")
        .args(["-c", "exec \"$@\"", "sh"])
        .arg(stockade_bin())
        .arg("run")
        .arg(&p)
        .output()
        .unwrap();
    let id = text(&out.stdout).trim().to_owned();
    assert!(out.status.success(), "{id}{}", text(&out.stderr));
    assert!(id.parse::<i64>().is_ok_and(|v| v > 0), "{id}");
    assert_ne!(
        id, host_id,
        "the service shares the caller's session keyring"
    );
}

/// `sudo stockade run ./profile.toml` from a user's checkout: the sudo user's own files are
/// trusted, anyone else's are not.
#[test]
fn the_sudo_users_profiles_are_trusted() {
    require_root();
    let m = marker();
    let profiles = Profiles::new();
    let p = profiles.write("mine", &sh_profile("echo ran", &m, ""));
    nix::unistd::chown(&p, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    let run = |sudo_uid: &str| {
        Command::new(stockade_bin())
            .arg("run")
            .arg(&p)
            .env("SUDO_UID", sudo_uid)
            .output()
            .unwrap()
    };
    let out = run("65534");
    assert!(text(&out.stdout).contains("ran"), "{}", text(&out.stderr));
    let out = run("1000");
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out.stderr).contains("owned by uid 65534"));
}
