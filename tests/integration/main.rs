//! Integration tests: real sandboxes on the real kernel, checked from inside (a probe script
//! prints what it sees) and from the host (mounts, processes, files, exit codes). Run as root.

#[path = "../common/mod.rs"]
mod common;
mod escape;
mod exec;
mod harness;
mod instances;
mod metrics;
mod ops;
mod walls;

use harness::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

/// A probe printing `key=value` lines about the sandbox it runs in.
const PROBE: &str = r#"
echo "pid=$$"
echo "pid1=$(tr '\0' ' ' < /proc/1/cmdline)"
echo "procs=$(ls /proc | grep -cE '^[0-9]+$')"
echo "ifaces=$(ls /sys/class/net | tr '\n' ' ')"
echo "lo=$(cat /sys/class/net/lo/operstate 2>&1)"
echo "hostname=$(cat /proc/sys/kernel/hostname)"
echo "uid=$(id -u) gid=$(id -g)"
grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb):' /proc/self/status | tr -d '\t' | sed 's/:/=/'
echo "nnp=$(grep NoNewPrivs /proc/self/status | tr -d '\t' | cut -d: -f2)"
echo "fds=$(ls /proc/$$/fd | tr '\n' ' ')"
echo "tmp_fs=$(stat -f -c %T /tmp)"
if touch /etc/stockade-probe 2>/dev/null; then echo "etc_write=allowed"; rm -f /etc/stockade-probe; else echo "etc_write=denied"; fi
if echo x > /tmp/probe; then echo "tmp_write=allowed"; fi
echo "root_listing=$(ls -A /root 2>&1 | head -c 200)"
echo "devs=$(ls /dev | tr '\n' ' ')"
echo "env=$(env | cut -d= -f1 | sort | tr '\n' ' ')"
"#;

fn probe(
    extra: &str,
) -> (
    std::process::Output,
    std::collections::BTreeMap<String, String>,
) {
    require_root();
    let m = marker();
    let profiles = Profiles::new();
    let p = profiles.write("probe", &sh_profile(PROBE, &m, extra));
    let out = Run::profile(&p, &m).output();
    assert!(out.status.success(), "probe failed: {}", text(&out.stderr));
    let v = probe_values(&out);
    (out, v)
}

#[test]
fn pid_namespace_has_init_and_only_sandbox_processes() {
    let (_, v) = probe("");
    assert_eq!(v["pid"], "2", "the service is pid 2, after stockade's init");
    assert!(v["pid1"].contains("stockade"), "pid 1 is {}", v["pid1"]);
    let procs: u32 = v["procs"].parse().unwrap();
    assert!(procs <= 5, "{procs} processes visible: the host's leak in");
}

#[test]
fn network_namespace_has_only_loopback_up() {
    let (_, v) = probe("");
    assert_eq!(v["ifaces"], "lo");
    assert_eq!(
        v["lo"], "unknown",
        "lo is up (operstate of loopback reads `unknown` when up)"
    );
}

#[test]
fn hostname_is_set() {
    let (_, v) = probe("[network]\nhostname = \"probe-host\"\n");
    assert_eq!(v["hostname"], "probe-host");
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(host.trim(), "probe-host", "the host's hostname changed");
    // Without network.hostname the sandbox is named after its profile, not after the host.
    let (_, v) = probe("");
    assert_eq!(v["hostname"], "probe");
}

#[test]
fn check_refuses_a_missing_workdir_and_a_directory_command_as_run_would() {
    require_root();
    let m = marker();
    let profiles = Profiles::new();
    let p = profiles.write(
        "broken",
        &format!("[exec]\ncommand = [\"/usr/bin\", \"marker-{m}\"]\nworkdir = \"/nonexistent/stockade-{m}\"\n"),
    );
    let check = |p: &std::path::Path| Run::stockade(&["check"], &m).arg(p).output();
    let out = check(&p);
    let e = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{e}");
    let file = p.display();
    assert!(e.contains(&format!("{file}:2:11: exec.command: `/usr/bin` is a directory, not a program; name the program inside it")), "{e}");
    assert!(e.contains(&format!("{file}:3:11: exec.workdir: the working directory `/nonexistent/stockade-{m}` does not exist in the sandbox: there is no `/nonexistent` in the sandbox root `/`; choose one that does, or mount one there")), "{e}");
    assert!(!text(&out.stdout).contains("ok"), "{}", text(&out.stdout));
    // run refuses it the same way, before starting anything (it used to exit 126 from
    // inside the sandbox).
    let out = Run::profile(&p, &m).output();
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("exec.command: `/usr/bin` is a directory"));
    // What the checks accept starts.
    let fine = profiles.write("fine", &sh_profile("pwd", &m, "workdir = \"/usr/bin\"\n"));
    let out = check(&fine);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = Run::profile(&fine, &m).output();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "/usr/bin");
}

#[test]
fn read_only_root_refuses_writes_and_private_tmp_is_a_fresh_tmpfs() {
    let (_, v) = probe("");
    assert_eq!(v["etc_write"], "denied");
    assert_eq!(v["tmp_write"], "allowed");
    assert_eq!(v["tmp_fs"], "tmpfs");
    // What the service writes to its /tmp never reaches the host's: a file named after this
    // run's marker, so no other run can have made it.
    require_root();
    let m = marker();
    let profiles = Profiles::new();
    let host_file = std::path::PathBuf::from(format!("/tmp/stockade-probe-marker-{m}"));
    let write = "echo x > /tmp/stockade-probe-$0 && echo wrote";
    let p = profiles.write("tmp", &sh_profile(write, &m, ""));
    let out = Run::profile(&p, &m).output();
    assert_eq!(text(&out.stdout).trim(), "wrote", "{}", text(&out.stderr));
    assert!(!host_file.exists(), "the service's /tmp is the host's");
    // The same write with the host's /tmp does land there: the check above can see it.
    let shared = "[filesystem]\nprivate_tmp = false\nread_only = false\n";
    let p = profiles.write("shared", &sh_profile(write, &m, shared));
    let out = Run::profile(&p, &m).output();
    let landed = fs::read_to_string(&host_file);
    let _ = fs::remove_file(&host_file);
    assert_eq!(text(&out.stdout).trim(), "wrote", "{}", text(&out.stderr));
    assert_eq!(landed.unwrap(), "x\n");
}

#[test]
fn private_dev_is_minimal() {
    let (_, v) = probe("");
    let devs: Vec<&str> = v["devs"].split_whitespace().collect();
    for d in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm", "mqueue", "fd",
    ] {
        assert!(devs.contains(&d), "/dev/{d} missing: {devs:?}");
    }
    assert!(
        !devs
            .iter()
            .any(|d| d.starts_with("sd") || d.starts_with("vd") || *d == "mem" || *d == "kmsg"),
        "host devices visible: {devs:?}"
    );
}

#[test]
fn hidden_paths_are_empty_and_inaccessible() {
    let (_, v) = probe("[filesystem]\nhide = [\"/root\"]\n");
    assert!(
        v["root_listing"].contains("Permission denied"),
        "{}",
        v["root_listing"]
    );
}

#[test]
fn capabilities_are_exactly_the_kept_ones() {
    let (_, v) = probe("");
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(
            v[set], "0000000000000000",
            "{set} with no capabilities kept"
        );
    }
    assert_eq!(v["nnp"], "1");
    // CAP_NET_BIND_SERVICE is bit 10.
    let (_, v) = probe("user = 65534\ngroup = 65534\n[security]\ncapabilities = [\"net_bind_service\"]\nno_new_privileges = false\n");
    assert_eq!(v["uid"], "65534 gid=65534");
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(
            v[set], "0000000000000400",
            "{set} keeping net_bind_service as a non-root user"
        );
    }
    assert_eq!(v["nnp"], "0");
}

#[test]
fn denying_capset_is_honoured_under_no_new_privileges() {
    // @privileged holds capset; with no_new_privs stockade needs no capset after the filter
    // (it used to drop CAP_SYS_ADMIN there, which this deny-list would have refused).
    let (_, v) = probe("[security]\nsyscall_deny = [\"@privileged\"]\n");
    assert_eq!(v["CapEff"], "0000000000000000");
    assert_eq!(v["nnp"], "1");
}

#[test]
fn no_descriptor_leaks_into_the_service() {
    require_root();
    let m = marker();
    let profiles = Profiles::new();
    // ls exec'd by the shell lists its own descriptors: 0-2 and the directory it reads (3).
    // (Listing the shell's own would race with the fds it briefly holds for pipes.)
    let p = profiles.write("fds", &sh_profile("exec ls /proc/self/fd", &m, ""));
    // Give stockade an inherited descriptor 7 that is not close-on-exec.
    let out = Run::shell(
        &format!("exec 7</dev/null; exec {{bin}} run {}", p.display()),
        &m,
    )
    .output();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let fds: Vec<String> = text(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(fds, ["0", "1", "2", "3"], "descriptors seen by the service");
}

#[test]
fn environment_is_cleared_but_path_lang_term_and_profile_env() {
    let (_, v) = probe("env = { TZ = \"UTC\" }\n");
    let env: Vec<&str> = v["env"].split_whitespace().collect();
    assert!(env.contains(&"TZ") && env.contains(&"PATH"), "{env:?}");
    assert!(!env.contains(&"HOME") && !env.contains(&"CARGO"), "{env:?}");
}

#[test]
fn landlock_denies_what_is_not_listed() {
    require_root();
    let m = marker();
    let profiles = Profiles::new();
    let script = "cat /etc/hostname >/dev/null 2>&1 && echo etc=allowed || echo etc=denied; ls /usr/bin >/dev/null && echo usr=allowed; echo x > /tmp/f && echo tmp=allowed; echo x > /var/tmp/f 2>/dev/null && echo vartmp=allowed || echo vartmp=denied";
    let p = profiles.write(
        "ll",
        &sh_profile(script, &m, "[security]\nlandlock = { read = [\"/usr\", \"/lib\", \"/lib64\", \"/proc\"], write = [\"/tmp\", \"/dev/null\"], exec = [\"/bin\", \"/usr/bin\", \"/usr/lib\"] }\n"),
    );
    let out = Run::profile(&p, &m).output();
    let v = probe_values(&out);
    assert_eq!(
        v.get("etc").map(String::as_str),
        Some("denied"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(v["usr"], "allowed");
    assert_eq!(v["tmp"], "allowed");
    assert_eq!(v["vartmp"], "denied");
}

#[test]
fn volume_files_are_owned_by_the_mapped_user_on_the_host() {
    require_root();
    let m = marker();
    let vol = format!("itest-{m}");
    let host_dir = format!("/var/lib/stockade/volumes/{vol}");
    let profiles = Profiles::new();
    let extra = format!(
        "user = 1000\ngroup = 1000\n[idmap]\nuid = [{{ inside = 0, outside = 200000, count = 65536 }}]\ngid = [{{ inside = 0, outside = 200000, count = 65536 }}]\n[[mount]]\ntype = \"volume\"\nname = \"{vol}\"\ntarget = \"/srv\"\n"
    );
    let p = profiles.write(
        "vol",
        &sh_profile(
            "echo hi > /srv/file && stat -c '%u:%g' /srv/file",
            &m,
            &extra,
        ),
    );
    let out = Run::profile(&p, &m).output();
    let meta_dir = fs::metadata(&host_dir);
    let meta_file = fs::metadata(format!("{host_dir}/file"));
    let _ = fs::remove_dir_all(&host_dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "1000:1000", "owner seen inside");
    let (d, f) = (meta_dir.unwrap(), meta_file.unwrap());
    assert_eq!(
        (d.uid(), d.gid()),
        (201000, 201000),
        "volume directory owner on the host"
    );
    assert_eq!(
        (f.uid(), f.gid()),
        (201000, 201000),
        "file owner on the host"
    );
}

#[test]
fn exit_status_and_death_by_signal_propagate() {
    require_root();
    let profiles = Profiles::new();
    let m = marker();
    let p = profiles.write("exit", &sh_profile("exit 7", &m, ""));
    assert_eq!(Run::profile(&p, &m).output().status.code(), Some(7));
    let p = profiles.write("sig", &sh_profile("kill -USR1 $$", &m, ""));
    // stockade dies of the service's signal, so its caller sees what it would for the
    // service itself: a shell's $? is 128+N, systemd records the signal.
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(Run::profile(&p, &m).output().status.signal(), Some(10));
    let out = Run::shell(&format!("{{bin}} run {}; echo $?", p.display()), &m).output();
    assert_eq!(text(&out.stdout).trim(), "138");
}

#[test]
fn signals_are_forwarded_to_the_service() {
    require_root();
    let m = marker();
    let profiles = Profiles::new();
    let script = "trap 'echo got-hup' HUP; trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 0.05; done";
    let p = profiles.write("sig", &sh_profile(script, &m, ""));
    let snap = Snapshot::take();
    let child = Run::profile(&p, &m).spawn();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    assert!(wait_until(Duration::from_secs(5), || !processes_with(&m).is_empty()));
    std::thread::sleep(Duration::from_millis(200));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(42), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("got-hup") && stdout.contains("got-term"),
        "{stdout}"
    );
    snap.assert_unchanged(&m);
}

#[test]
fn sigkill_of_stockade_kills_the_whole_sandbox() {
    require_root();
    let m = marker();
    let profiles = Profiles::new();
    // A child of the service that ignores SIGTERM and SIGHUP must die too.
    let script = "trap '' TERM HUP; sleep 1000 & sleep 1000";
    let p = profiles.write("k", &sh_profile(script, &m, ""));
    let snap = Snapshot::take();
    let mut child = Run::profile(&p, &m).spawn();
    // Set up: recorded, and the service runs.
    wait_for_record(&format!("k-{m}"));
    assert!(wait_until(Duration::from_secs(5), || !processes_with(&m).is_empty()));
    child.kill().unwrap();
    child.wait().unwrap();
    // Its record is all a SIGKILL leaves; the next run of the name removes it.
    assert!(wait_until(Duration::from_secs(3), || processes_with(&m).is_empty()));
    reclaim(&format!("k-{m}"), &m);
    snap.assert_unchanged(&m);
}

#[test]
fn sigkill_kills_the_service_without_a_pid_namespace_too() {
    require_root();
    let m = marker();
    let profiles = Profiles::new();
    let p = profiles.write(
        "k",
        &sh_profile("exec sleep 1000", &m, "[namespaces]\npid = false\n"),
    );
    let snap = Snapshot::take();
    let mut child = Run::profile(&p, &m).spawn();
    wait_for_record(&format!("k-{m}"));
    // With exec the marker leaves the command line; find the sleep by its parent instead.
    assert!(wait_until(Duration::from_secs(5), || fs::read_to_string(
        format!("/proc/{}/task/{}/children", child.id(), child.id())
    )
    .map(|c| !c.trim().is_empty())
    .unwrap_or(false)));
    let init: u32 = fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id()))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || fs::read_to_string(
        format!("/proc/{init}/task/{init}/children")
    )
    .map(|c| !c.trim().is_empty())
    .unwrap_or(false)));
    let service: u32 = fs::read_to_string(format!("/proc/{init}/task/{init}/children"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        wait_until(Duration::from_secs(3), || !std::path::Path::new(&format!(
            "/proc/{service}"
        ))
        .exists()
            || fs::read_to_string(format!("/proc/{service}/stat"))
                .map(|s| s.contains(") Z"))
                .unwrap_or(true)),
        "service {service} survived"
    );
    reclaim(&format!("k-{m}"), &m);
    snap.assert_unchanged(&m);
}

#[test]
fn bad_profiles_fail_cleanly_with_their_message() {
    require_root();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bad");
    let mut n = 0;
    for e in fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let src = fs::read_to_string(&path).unwrap();
        let expect = src
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} has no `# expect:` line", path.display()));
        let m = marker();
        let out = Run::profile(&path, &m).output();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{}: {stderr}", path.display());
        assert!(
            stderr.contains(expect),
            "{}: expected `{expect}` in:\n{stderr}",
            path.display()
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        n += 1;
    }
    assert!(n >= 10, "only {n} bad-profile fixtures");
}

#[test]
fn profile_not_found_lists_the_search_path() {
    let out = Run::stockade(
        &["--profile-path", "/nonexistent-dir", "run", "nosuch"],
        &marker(),
    )
    .env("STOCKADE_PROFILE_PATH", "/also-not-here")
    .output();
    assert_eq!(out.status.code(), Some(78));
    let e = text(&out.stderr);
    for dir in [
        "/nonexistent-dir/nosuch.toml",
        "/also-not-here/nosuch.toml",
        "/etc/stockade/profiles/nosuch.toml",
        "/usr/share/stockade/profiles/nosuch.toml",
    ] {
        assert!(e.contains(dir), "{dir} not in: {e}");
    }
}

#[test]
fn without_root_a_profile_needing_root_is_refused_and_a_user_namespace_works() {
    require_root();
    let profiles = Profiles::new();
    fs::set_permissions(
        profiles.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let m = marker();
    let needs_root = profiles.write(
        "root",
        &sh_profile("true", &m, "[namespaces]\nuser = false\n"),
    );
    let as_nobody = |p: &std::path::Path| {
        Run::wrapped(
            &[
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--",
            ],
            &["run"],
            &m,
        )
        .arg(p)
        .output()
    };
    let out = as_nobody(&needs_root);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out.stderr).contains("namespaces.user: needs root (stockade runs as uid 65534)"),
        "{}",
        text(&out.stderr)
    );

    let ok = profiles.write("userns", &sh_profile("echo uid=$(id -u)", &m, ""));
    let out = as_nobody(&ok);
    assert!(
        out.status.success(),
        "unprivileged run failed: {}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout).trim(), "uid=0");
}

#[test]
fn hello_example_runs() {
    require_root();
    let ex = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/hello.toml");
    // hello appends its arguments (args_append): the marker goes on the service's command
    // line, so the leftover check finds the sandbox's processes.
    let m = marker();
    let out = Run::profile(std::path::Path::new(ex), &m)
        .arg("--")
        .arg(format!("marker-{m}"))
        .output();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains("hostname: hello") && s.contains("pid:      2"),
        "{s}"
    );
}

#[test]
fn the_service_starts_with_no_signal_ignored_or_blocked() {
    require_root();
    let m = marker();
    let profiles = Profiles::new();
    // grep directly, not through a shell, which sets dispositions of its own.
    let p = profiles.write(
        "sigs",
        &format!("[exec]\ncommand = [\"/bin/grep\", \"-E\", \"^Sig(Ign|Blk)|{m}\", \"/proc/self/status\"]\n"),
    );
    let out = Run::profile(&p, &m).output();
    let o = text(&out.stdout);
    // SIGPIPE in particular: stockade itself ignores it, as every Rust program does.
    assert!(o.contains("SigIgn:\t0000000000000000"), "{o}");
    assert!(o.contains("SigBlk:\t0000000000000000"), "{o}");
}

#[test]
fn empty_root_holds_only_what_the_profile_mounts() {
    require_root();
    let m = marker();
    let profiles = Profiles::new();
    let p = profiles.write(
        "empty",
        &format!(
            "[exec]\ncommand = [\"/usr/bin/sh\", \"-c\", \"ls /; touch /x 2>&1; true\", \"marker-{m}\"]\n\
             [filesystem]\nroot = \"empty\"\n\
             [[mount]]\ntype = \"bind\"\nsource = \"/usr\"\ntarget = \"/usr\"\nread_only = true\n\
             [[mount]]\ntype = \"symlink\"\nsource = \"usr/lib\"\ntarget = \"/lib\"\n\
             [[mount]]\ntype = \"symlink\"\nsource = \"usr/lib64\"\ntarget = \"/lib64\"\n"
        ),
    );
    let out = Run::profile(&p, &m).output();
    let o = text(&out.stdout);
    assert!(out.status.success(), "{o}{}", text(&out.stderr));
    let entries: Vec<&str> = o.lines().take_while(|l| !l.contains("touch")).collect();
    assert_eq!(
        entries,
        ["dev", "lib", "lib64", "proc", "tmp", "usr", "var"],
        "{o}"
    );
    assert!(o.contains("Read-only file system"), "{o}");
}

/// stockade's own log lines are coloured for a person at a terminal only: into a pipe (a
/// file, the journal) they carry no escape codes.
#[test]
fn log_lines_are_coloured_only_on_a_terminal() {
    require_root();
    let m = marker();
    let profiles = Profiles::new();
    let p = profiles.write("colour", &sh_profile("true", &m, ""));
    let piped = Run::stockade(&["-v", "run"], &m).arg(&p).output();
    assert!(piped.status.success(), "{}", text(&piped.stderr));
    let e = text(&piped.stderr);
    assert!(e.contains("DEBUG"), "no log line to judge: {e}");
    assert!(!e.contains('\u{1b}'), "escape codes into a pipe: {e:?}");
    // The same run on a pseudo-terminal (script(1) from util-linux) is coloured: the check
    // above can see escape codes when there are any.
    let tty = Run::shell(
        &format!(
            "exec script -qec '{{bin}} -v run {}' /dev/null",
            p.display()
        ),
        &m,
    )
    .output();
    assert!(tty.status.success(), "{}", text(&tty.stderr));
    assert!(
        text(&tty.stdout).contains("\u{1b}["),
        "{:?}",
        text(&tty.stdout)
    );
}
