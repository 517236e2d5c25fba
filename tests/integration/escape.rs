//! The escape suite: tests/escape/probe.rs runs inside a hardened sandbox (the defaults: every
//! namespace, read-only root, private /tmp and /dev, protect_kernel, the seccomp baseline, no
//! capabilities) and attempts what a compromised service would; every attempt must fail with
//! the errno (or signal) listed here. Plus the races and file checks that need the host side.

use crate::harness::*;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

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
    /// Host unix listeners the sandbox must not reach: a path in the host's /run, and an
    /// abstract name in the host's network namespace.
    _unix: (
        std::os::unix::net::UnixListener,
        std::os::unix::net::UnixListener,
    ),
    socket_path: PathBuf,
    abstract_name: String,
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.socket_path);
    }
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
        let tag = format!("stockade-escape-{}-{}", std::process::id(), marker());
        let socket_path = PathBuf::from(format!("/run/{tag}.sock"));
        let path_listener = std::os::unix::net::UnixListener::bind(&socket_path).unwrap();
        fs::set_permissions(&socket_path, fs::Permissions::from_mode(0o777)).unwrap();
        let abstract_listener = {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(tag.as_bytes()).unwrap();
            std::os::unix::net::UnixListener::bind_addr(&addr).unwrap()
        };
        Stage {
            dir,
            listener: std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
            _unix: (path_listener, abstract_listener),
            socket_path,
            abstract_name: tag,
        }
    }

    /// Fails if a sandbox connected to one of the host's unix listeners.
    fn assert_unix_listeners_untouched(&self) {
        for l in [&self._unix.0, &self._unix.1] {
            l.set_nonblocking(true).unwrap();
            match l.accept() {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                other => panic!("a sandbox reached a host unix socket: {other:?}"),
            }
        }
    }

    fn profile(&self, user: &str) -> String {
        let d = self.dir.path().display();
        format!(
            r#"[exec]
command = ["/tmp/privileged/escape-probe"]
user = "{user}"
env = {{ PROBE_HOST_PID = "{pid}", PROBE_STOCKADE = "{bin}", PROBE_HOST_FD = "7", PROBE_CWD_MARKER = "cwd-marker", PROBE_HOST_PORT = "{port}", PROBE_HOST_SOCKET = "{sock}", PROBE_HOST_ABSTRACT = "{abs}" }}
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
            sock = self.socket_path.display(),
            abs = self.abstract_name,
        )
    }

    /// Runs the probe as `user`, from the marker directory, with descriptor 7 open on a host
    /// file (not close-on-exec), and returns its verdicts.
    fn run(&self, user: &str) -> BTreeMap<String, String> {
        self.run_with(user, "")
    }

    fn run_with(&self, user: &str, extra: &str) -> BTreeMap<String, String> {
        let profiles = Profiles::new();
        let p = profiles.write("escape", &format!("{}{extra}", self.profile(user)));
        let out = Run::shell(
            // Named apart: the escape tests run side by side, each with its own sandbox;
            // named after the run's marker, so the harness checks its record is removed.
            &format!(
                "exec 7</etc/hostname; exec {{bin}} run --name escape-probe-{} {}",
                marker(),
                p.display()
            ),
            "escape-probe",
        )
        .current_dir(self.dir.path().join("cwd"))
        .output();
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

impl Stage {
    /// Runs the probe through `stockade exec` in a sandbox of the same profile whose
    /// service only sleeps (the probe's pid must stay small), from the marker directory with
    /// descriptor 7 open on a host file, and returns its verdicts.
    fn run_through_exec(&self, user: &str) -> BTreeMap<String, String> {
        let m = marker();
        let profiles = Profiles::new();
        let text_of = self.profile(user).replace(
            r#"["/tmp/privileged/escape-probe"]"#,
            r#"["/bin/sleep", "1000"]"#,
        );
        let p = profiles.write("escape-exec", &text_of);
        let mut service = Run::profile(&p, &m).spawn();
        let name = format!("escape-exec-{m}");
        wait_for_record(&name);
        let out = Run::shell(
            &format!(
                "exec 7</etc/hostname; exec {{bin}} exec {name} -- /tmp/privileged/escape-probe"
            ),
            &marker(),
        )
        .current_dir(self.dir.path().join("cwd"))
        .output();
        let stop = Run::stockade(&["stop", "--time", "2", &name], &marker()).output();
        assert!(stop.status.success(), "{}", text(&stop.stderr));
        let _ = service.wait();
        assert!(
            out.status.success(),
            "the probe failed through exec ({:?}): {}{}",
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
        // AF_PACKET is not among the default address families.
        ("raw-socket", "EAFNOSUPPORT"),
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
        ("system-bus", "ENOENT"),
        ("systemd-private", "ENOENT"),
        ("journal-socket", "ENOENT"),
        ("host-path-socket", "ENOENT"),
        // A network namespace of its own has its own abstract namespace.
        ("host-abstract-socket", "ECONNREFUSED"),
        ("af-vsock", "EAFNOSUPPORT"),
        ("af-bluetooth", "EAFNOSUPPORT"),
        ("af-alg", "EAFNOSUPPORT"),
        ("af-beyond-max", "EAFNOSUPPORT"),
        ("af-vsock-high-bits", "EAFNOSUPPORT"),
        ("read-etc-shadow", "EACCES"),
        ("list-root-home", "EACCES"),
        ("uid-map-host-root", "none"),
        ("stockade-state", "EACCES"),
        ("stockade-run", "ENOENT"),
        ("i386-syscall", "SIGSYS"),
    ] {
        e.insert(k, v.to_owned());
    }
    // Sandbox root is an unprivileged host id: the binary's mode refuses it, like nobody
    // (as host root it would have met ETXTBSY, a running binary refusing writers).
    // A build under /tmp is not even visible (private_tmp).
    let hidden = ["/tmp/", "/var/tmp/"]
        .iter()
        .any(|t| stockade_bin().starts_with(t));
    e.insert(
        "write-stockade-binary",
        if hidden {
            "ENOENT".into()
        } else {
            "EACCES".into()
        },
    );
    // /proc/sys is root's; sandbox root is not, so the mode refuses before the read-only mount.
    e.insert("write-proc-sys", "EACCES".into());
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
    stage.assert_unix_listeners_untouched();
}

#[test]
fn escape_attempts_fail_as_nobody() {
    require_root();
    let stage = Stage::new();
    assert_all_denied(&stage.run("nobody"), false);
    stage.assert_unix_listeners_untouched();
}

/// `stockade exec` runs a command with exactly the service's walls: the probe run through
/// it gives, verdict by verdict, what it gives as the service (and every one is a denial).
#[test]
fn escape_attempts_through_exec_meet_the_service_walls() {
    require_root();
    let stage = Stage::new();
    for (user, root) in [("root", true), ("nobody", false)] {
        let service = stage.run(user);
        let exec = stage.run_through_exec(user);
        let differ: Vec<String> = service
            .keys()
            .chain(exec.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter(|k| service.get(*k) != exec.get(*k))
            .map(|k| format!("{k}: service {:?}, exec {:?}", service.get(k), exec.get(k)))
            .collect();
        assert!(
            differ.is_empty(),
            "as {user}, exec differs from the service:\n{}",
            differ.join("\n")
        );
        assert_all_denied(&exec, root);
        // The comparison, for the closing note (`--nocapture`).
        println!(
            "as {user}: {} verdicts, all equal to the service's",
            exec.len()
        );
        for (k, v) in &exec {
            println!("  {k}\t{v}");
        }
    }
    stage.assert_unix_listeners_untouched();
}

/// With the host's network namespace the abstract socket namespace is the host's too:
/// landlock's scope keeps the service out (EPERM), and the private /run hides paths.
#[test]
fn host_sockets_stay_out_of_reach_with_the_host_network() {
    require_root();
    let stage = Stage::new();
    let got = stage.run_with("root", "[namespaces]\nnet = false\n");
    for (name, want) in [
        ("host-path-socket", "ENOENT"),
        ("host-abstract-socket", "EPERM"),
        ("system-bus", "ENOENT"),
        ("af-vsock", "EAFNOSUPPORT"),
        ("read-etc-shadow", "EACCES"),
        // The host's loopback is reachable: the profile shares the network on purpose.
        ("connect-host-loopback", "OK"),
    ] {
        assert_eq!(
            got.get(name).map(String::as_str),
            Some(want),
            "{name}: {got:#?}"
        );
    }
    stage.assert_unix_listeners_untouched();
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
        let out = Run::profile(&p, &m).output();
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
    let out = Run::shell(&format!("exec {{bin}} run {}", p.display()), &m).output();
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
    let run = |sudo_uid: &str| Run::profile(&p, &m).env("SUDO_UID", sudo_uid).output();
    let out = run("65534");
    assert!(text(&out.stdout).contains("ran"), "{}", text(&out.stderr));
    let out = run("1000");
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out.stderr).contains("owned by uid 65534"));
}

/// With landlock's exec rules, what the service writes cannot be run around them: not
/// through the dynamic loader (the writable mounts are noexec) and not as an anonymous
/// memory file (vm.memfd_noexec in the sandbox's pid namespace, or seccomp without one).
#[test]
fn exec_rules_hold_against_the_loader_and_memory_files() {
    require_root();
    let stage = Stage::new();
    let profiles = Profiles::new();
    let d = stage.dir.path().display();
    let landlock = r#"landlock = { read = ["/"], write = ["/tmp", "/dev/shm", "/dev/null"], exec = ["/usr", "/bin", "/lib", "/lib64", "/tmp/privileged"] }"#;
    let mounts = format!("[[mount]]\ntype = \"bind\"\nsource = \"{d}/privileged\"\ntarget = \"/tmp/privileged\"\nread_only = true\n");
    let loader = "cp /bin/true /tmp/prog && cp /bin/true /dev/shm/prog && chmod +x /tmp/prog /dev/shm/prog; \
        /lib64/ld-linux-x86-64.so.2 /tmp/prog 2>/dev/null; echo tmp=$?; \
        /lib64/ld-linux-x86-64.so.2 /dev/shm/prog 2>/dev/null; echo shm=$?; \
        /lib64/ld-linux-x86-64.so.2 /bin/true; echo usr=$?; \
        /tmp/prog 2>/dev/null; echo direct=$?";
    let m = marker();
    let p = profiles.write(
        "loader",
        &sh_profile(loader, &m, &format!("[security]\n{landlock}\n{mounts}")),
    );
    let out = Run::profile(&p, &m).output();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v = probe_values(&out);
    // ld.so maps what it runs itself: the noexec mount refuses (127, "failed to map").
    assert_eq!(v.get("tmp").map(String::as_str), Some("127"), "{v:?}");
    assert_eq!(v.get("shm").map(String::as_str), Some("127"), "{v:?}");
    assert_eq!(v.get("usr").map(String::as_str), Some("0"), "{v:?}");
    assert_eq!(v.get("direct").map(String::as_str), Some("126"), "{v:?}");

    for (name, pid_ns, want) in [
        // The sysctl makes every memory file non-executable: created, but refused at exec.
        ("memfd-sysctl", true, "exec:EACCES"),
        // Without a pid namespace of its own the sysctl would be the host's: seccomp
        // refuses to create a memory file that is not sealed non-executable.
        ("memfd-seccomp", false, "memfd_create:EPERM"),
    ] {
        let text_ = format!(
            "[exec]\ncommand = [\"/tmp/privileged/escape-probe\", \"memfd-exec\"]\n[namespaces]\npid = {pid_ns}\n[security]\n{landlock}\n{mounts}"
        );
        let p = profiles.write(name, &text_);
        let out = Run::profile(&p, name).output();
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout).trim(),
            format!("memfd-exec\t{want}"),
            "{name}"
        );
    }
    // Without landlock nothing restricts exec, and the same probe runs its payload: the
    // checks above are not vacuous.
    let p = profiles.write(
        "memfd-free",
        &format!("[exec]\ncommand = [\"/tmp/privileged/escape-probe\", \"memfd-exec\"]\n{mounts}"),
    );
    let out = Run::profile(&p, "memfd-free").output();
    assert_eq!(
        text(&out.stdout).trim(),
        "memfd-exec\tOK",
        "{}",
        text(&out.stderr)
    );
}
