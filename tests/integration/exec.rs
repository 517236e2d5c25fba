//! `stockade exec`: a command run inside a running sandbox is in the service's namespaces
//! and cgroup, with the service's ids, capabilities, no_new_privs, seccomp filter, limits,
//! environment and working directory (compared from the host, process against process);
//! exit statuses pass through; bad names and users are clear errors that leave nothing
//! behind; `--tty` gives it a terminal of the sandbox's own devpts and restores the
//! caller's. The escape probe run through exec is in escape.rs.

use crate::harness::*;
use std::fs;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// `stockade exec NAME -- ARGS...`, with the host checked afterwards (`marker` goes on the
/// command line of anything that runs inside).
fn exec(name: &str, args: &[&str], marker: &str) -> Output {
    let mut all = vec!["exec", name, "--"];
    all.extend(args);
    Run::stockade(&all, marker).output()
}

/// The host pids of the `sh -c "sleep ..."` shells whose command line carries `marker`,
/// once there is one
/// (the `stockade exec` that started one carries it too).
fn wait_for_shell(marker: &str) -> Vec<u32> {
    let shells = || -> Vec<u32> {
        processes_with(marker)
            .into_iter()
            .filter(|p| {
                fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| c.starts_with(b"/bin/sh\0-c\0sleep"))
            })
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(5), || !shells().is_empty()),
        "no shell with {marker}"
    );
    shells()
}

/// A cgroup a test made, removed when it is dropped (once empty).
struct CgroupDir(std::path::PathBuf);

impl CgroupDir {
    fn create(path: std::path::PathBuf) -> CgroupDir {
        fs::create_dir(&path).unwrap();
        CgroupDir(path)
    }
}

impl Drop for CgroupDir {
    fn drop(&mut self) {
        wait_until(Duration::from_secs(5), || fs::remove_dir(&self.0).is_ok());
    }
}

fn stop(name: &str, mut child: std::process::Child) {
    let out = Run::stockade(&["stop", "--time", "2", name], &marker()).output();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let _ = child.wait();
}

/// The lines of /proc/PID/status that say what a process may do.
fn privileges(pid: u32) -> Vec<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .filter(|l| {
            [
                "Uid:",
                "Gid:",
                "Groups:",
                "CapInh:",
                "CapPrm:",
                "CapEff:",
                "CapBnd:",
                "CapAmb:",
                "NoNewPrivs:",
                "Seccomp:",
                "Seccomp_filters:",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .map(str::to_owned)
        .collect()
}

fn ns_links(pid: u32) -> Vec<(String, String)> {
    ["user", "pid", "mnt", "net", "ipc", "uts", "cgroup"]
        .iter()
        .map(|ns| {
            let link = fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
            (ns.to_string(), link.display().to_string())
        })
        .collect()
}

/// Seen from the host, the exec'd process is the service's twin: same namespaces, same
/// cgroup (its pid is in cgroup.procs), same ids, capability sets, no_new_privs, seccomp
/// mode and filter count, resource limits, environment and working directory.
#[test]
fn exec_runs_with_exactly_the_services_namespaces_cgroup_and_privileges() {
    require_root();
    let m = marker();
    let e = marker();
    let profiles = Profiles::new();
    let snap = Snapshot::take();
    let p = profiles.write(
        "ex-twin",
        &format!(
            "[exec]\ncommand = [\"/bin/sh\", \"-c\", {DAEMON:?}, \"marker-{m}\"]\nuser = \"nobody\"\nworkdir = \"/tmp\"\nenv = {{ EXEC_TEST = \"yes\" }}\n[security]\ncapabilities = [\"CAP_NET_BIND_SERVICE\"]\n"
        ),
    );
    let child = Run::profile(&p, &m).spawn();
    let name = format!("ex-twin-{m}");
    let record = wait_for_record(&name);
    let init = record["init"]["pid"].as_u64().unwrap() as u32;
    // The record is written before init forks the service: wait for the service to be
    // there and to have exec'd its command.
    let service_pid = || {
        fs::read_to_string(format!("/proc/{init}/task/{init}/children"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse::<u32>()
            .ok()
            .filter(|pid| {
                fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.contains(&format!("marker-{m}")))
            })
    };
    assert!(
        wait_until(Duration::from_secs(5), || service_pid().is_some()),
        "the service of {name} never started"
    );
    let service = service_pid().unwrap();
    // `stockade exec` starts from a cgroup of its own, so joining the sandbox's is seen.
    let v2_root = cgroup_dirs()
        .into_iter()
        .min_by_key(|p| p.as_os_str().len())
        .unwrap();
    let caller_cg = CgroupDir::create(v2_root.join(format!("stockade-test-exec-caller-{e}")));
    let script = format!("sleep 3; : marker-{e}");
    let mut running = Run::shell(
        &format!(
            "echo $$ > {}/cgroup.procs && exec {{bin}} exec {name} -- /bin/sh -c '{script}'",
            caller_cg.0.display()
        ),
        &e,
    )
    .spawn();
    let pids = wait_for_shell(&format!("marker-{e}"));
    let pid = pids[0];
    assert_eq!(ns_links(pid), ns_links(service), "namespaces");
    // What runs inside is the command itself, never stockade's binary, and it is a child
    // of the `stockade exec` outside (CLONE_PARENT), not of anything in the sandbox.
    assert_eq!(
        fs::read_link(format!("/proc/{pid}/exe")).unwrap(),
        fs::canonicalize("/bin/sh").unwrap()
    );
    let ppid = |p: u32| {
        let stat = fs::read_to_string(format!("/proc/{p}/stat")).unwrap();
        let after = stat.rsplit_once(')').unwrap().1.to_owned();
        after
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u32>()
            .unwrap()
    };
    assert_eq!(
        ppid(pid),
        running.id(),
        "the waiting stockade is its parent"
    );
    assert_eq!(privileges(pid), privileges(service), "privileges");
    assert!(
        privileges(pid).iter().any(|l| l.starts_with("Uid:\t65534")),
        "nobody inside, as the host reads it through the map: {:?}",
        privileges(pid)
    );
    let read = |what: &str, pid: u32| fs::read(format!("/proc/{pid}/{what}")).unwrap();
    assert_eq!(read("limits", pid), read("limits", service), "rlimits");
    assert_eq!(
        read("environ", pid),
        read("environ", service),
        "environment"
    );
    assert!(text(&read("environ", pid)).contains("EXEC_TEST=yes"));
    assert_eq!(
        fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
        fs::read_link(format!("/proc/{service}/cwd")).unwrap(),
        "working directory"
    );
    assert_eq!(
        text(&read("cgroup", pid)),
        text(&read("cgroup", init)),
        "cgroup"
    );
    // Its pid is a member of the sandbox's cgroup on the v2 hierarchy.
    let v2 = text(&read("cgroup", init))
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
        .unwrap();
    let procs = v2_root
        .join(v2.trim_start_matches('/'))
        .join("cgroup.procs");
    let members = fs::read_to_string(&procs).unwrap();
    assert!(
        members.lines().any(|l| l == pid.to_string()),
        "{pid} not in {}: {members}",
        procs.display()
    );
    // The command leads a session of its own, not the caller's.
    let stat = text(&read("stat", pid));
    let session = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(3)
        .unwrap()
        .to_owned();
    assert_eq!(session, pid.to_string(), "{stat}");
    let status = running.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    drop(caller_cg);
    stop(&name, child);
    snap.assert_unchanged(&m);
}

/// What the exec'd process sees from inside: the sandbox's pid namespace (init as pid 1,
/// few processes), hostname, read-only root, private /tmp, only loopback; init's exe and
/// the host paths the service cannot see are out of reach.
#[test]
fn exec_sees_the_sandbox_from_inside() {
    require_root();
    let m = marker();
    let e = marker();
    let profiles = Profiles::new();
    // A file in the host's /tmp the private /tmp must hide.
    let host_tmp = tempfile::NamedTempFile::new_in("/tmp").unwrap();
    let (child, name) = start_daemon(
        &profiles,
        "ex-view",
        &m,
        "[network]\nhostname = \"exview\"\n",
    );
    let record = wait_for_record(&name);
    let init = record["init"]["pid"].as_u64().unwrap();
    // The sandbox's own record, on the host: the sandbox never sees stockade's /run.
    let host_file = format!("{INSTANCES}/{name}.json");
    let script = format!(
        r#"echo "pid=$$"
echo "pid1=$(tr '\0' ' ' < /proc/1/cmdline)"
echo "procs=$(ls /proc | grep -cE '^[0-9]+$')"
echo "hostname=$(hostname)"
echo "ifaces=$(ls /sys/class/net | tr '\n' ' ')"
if touch /etc/exec-probe 2>/dev/null; then echo etc_write=allowed; else echo etc_write=denied; fi
echo "tmp_fs=$(stat -f -c %T /tmp)"
if [ -e {tmp} ]; then echo host_tmp=visible; else echo host_tmp=hidden; fi
if [ -e {file} ]; then echo host_file=visible; else echo host_file=hidden; fi
if cat /proc/1/exe >/dev/null 2>&1; then echo init_exe=open; else echo init_exe=denied; fi
if readlink /proc/1/exe >/dev/null 2>&1; then echo init_exe_link=read; else echo init_exe_link=denied; fi
: marker-{e}"#,
        tmp = host_tmp.path().display(),
        file = host_file,
    );
    let out = exec(&name, &["/bin/sh", "-c", &script], &e);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v = probe_values(&out);
    let host_init_cmdline =
        text(&fs::read(format!("/proc/{init}/cmdline")).unwrap()).replace('\0', " ");
    assert_eq!(
        v["pid1"],
        host_init_cmdline.trim(),
        "/proc/1 is the sandbox's init"
    );
    assert!(
        v["pid"].parse::<u32>().unwrap() < 1000,
        "a pid of the sandbox's namespace: {v:?}"
    );
    // init, the service's shell and its sleep, this shell and its pipeline.
    assert!(v["procs"].parse::<u32>().unwrap() < 12, "{v:?}");
    assert_eq!(v["hostname"], "exview");
    assert_eq!(v["ifaces"], "lo");
    assert_eq!(v["etc_write"], "denied");
    assert_eq!(v["tmp_fs"], "tmpfs");
    assert_eq!(v["host_tmp"], "hidden");
    assert_eq!(v["host_file"], "hidden");
    assert_eq!(v["init_exe"], "denied");
    assert_eq!(v["init_exe_link"], "denied");
    stop(&name, child);
}

/// The command's status is stockade's: its exit code, 128+N for signal N, 127 for a
/// command not found inside. Without --tty stdin and stdout pass through (a pipe).
#[test]
fn exec_passes_the_exit_status_and_stdio_through() {
    require_root();
    let m = marker();
    let e = marker();
    let profiles = Profiles::new();
    let (child, name) = start_daemon(&profiles, "ex-status", &m, "");
    let tag = format!("marker-{e}");
    for (args, code) in [
        (vec!["/bin/sh", "-c", "exit 3", &tag], 3),
        (vec!["sh", "-c", "kill -9 $$", &tag], 137),
        (vec!["sh", "-c", "kill -TERM $$", &tag], 143),
    ] {
        let out = exec(&name, &args, &e);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let out = exec(&name, &["no-such-command", &tag], &e);
    assert_eq!(out.status.code(), Some(127));
    let err = text(&out.stderr);
    assert!(
        err.contains("execve(\"no-such-command\") in each directory of PATH failed: no such file or directory"),
        "{err}"
    );
    // A pipe in, a pipe out: scripts can use exec.
    let out = Run::shell(
        &format!("printf 'through the pipe' | {{bin}} exec {name} -- /bin/sh -c 'cat; : {tag}'"),
        &e,
    )
    .output();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "through the pipe");
    stop(&name, child);
}

/// Unknown and stopped names, a user the sandbox does not have, and a non-root caller:
/// each a clear error and a non-zero exit, with nothing left behind.
#[test]
fn exec_refuses_bad_names_and_users_clearly() {
    require_root();
    let m = marker();
    let e = marker();
    let profiles = Profiles::new();
    let (child, name) = start_daemon(&profiles, "ex-bad", &m, "");
    let tag = format!("marker-{e}");
    let out = exec(&format!("nosuch-{e}"), &["true", &tag], &e);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "stockade: no running sandbox `nosuch-{e}` (running: "
        )) && err.contains(&name),
        "{err}"
    );
    let out = Run::stockade(
        &["exec", "--user", "nosuchuser", &name, "--", "id", &tag],
        &e,
    )
    .output();
    assert_eq!(out.status.code(), Some(125));
    let err = text(&out.stderr);
    assert_eq!(
        err.trim(),
        format!("stockade: {name}: run as user `nosuchuser`: no user `nosuchuser` in the sandbox's /etc/passwd")
    );
    // A user of the sandbox's own /etc/passwd works (nobody exists there and is mapped).
    let out = Run::stockade(
        &[
            "exec", "--user", "nobody", &name, "--", "sh", "-c", "id -u", &tag,
        ],
        &e,
    )
    .output();
    assert_eq!(text(&out.stdout).trim(), "65534", "{}", text(&out.stderr));
    // --tty without a terminal to relay (stdin is /dev/null here).
    let out = Run::stockade(&["exec", "-t", &name, "--", "true", &tag], &e).output();
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("--tty needs a terminal on stdin"),
        "{}",
        text(&out.stderr)
    );
    let out = Run::wrapped(
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
        ],
        &["exec", &name, "--", "true", &tag],
        &e,
    )
    .output();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("needs root"),
        "{}",
        text(&out.stderr)
    );
    stop(&name, child);
    // Stopped: gone from the list, and said so.
    let out = exec(&name, &["true", &tag], &e);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with(&format!("stockade: no running sandbox `{name}` (running: ")),
        "{}",
        text(&out.stderr)
    );
}

/// `--tty` through script(1): the command's terminal is a new one of the sandbox's own
/// devpts, it is its controlling terminal, it has the caller's window size, and the
/// caller's terminal mode is the same afterwards.
#[test]
fn exec_tty_gives_a_terminal_of_the_sandbox_and_restores_the_callers() {
    require_root();
    let m = marker();
    let e = marker();
    let profiles = Profiles::new();
    let (child, name) = start_daemon(&profiles, "ex-tty", &m, "");
    let host_devpts = {
        use std::os::unix::fs::MetadataExt;
        fs::metadata("/dev/pts").unwrap().dev()
    };
    let inner = format!(
        r#"echo "tty=$(tty)"; echo "size=$(stty size)"; echo "dev=$(stat -c %d $(tty))"; echo "fs=$(stat -f -c %T $(tty))"; set -- $(cat /proc/self/stat); echo "ctty=$7"; exit 7; : marker-{e}"#
    );
    let outer = format!(
        "stty rows 33 cols 101; before=$(stty -g); {bin} exec -t {name} -- /bin/sh -c '{inner}'; echo \"rc=$?\"; after=$(stty -g); [ \"$before\" = \"$after\" ] && echo mode=restored || echo mode=changed",
        bin = stockade_bin(),
    );
    let snap = Snapshot::take();
    let out = Command::new("script")
        .args(["-qec", &outer, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script(1) from bsdutils");
    snap.assert_unchanged(&e);
    let lines = text(&out.stdout).replace('\r', "");
    let v: std::collections::BTreeMap<String, String> = lines
        .lines()
        // script(1) passes its stdin's end of file on as a NUL, which the command's
        // terminal echoes as `^@` before the first line.
        .filter_map(|l| l.trim_start_matches("^@").split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert!(
        v.get("tty").is_some_and(|t| t.starts_with("/dev/pts/")),
        "{lines}"
    );
    assert_eq!(v.get("size").map(String::as_str), Some("33 101"), "{lines}");
    assert_eq!(v.get("fs").map(String::as_str), Some("devpts"), "{lines}");
    assert_ne!(
        v.get("dev"),
        Some(&host_devpts.to_string()),
        "the sandbox's own devpts: {lines}"
    );
    assert_ne!(
        v.get("ctty").map(String::as_str),
        Some("0"),
        "a controlling terminal: {lines}"
    );
    assert_eq!(v.get("rc").map(String::as_str), Some("7"), "{lines}");
    assert_eq!(
        v.get("mode").map(String::as_str),
        Some("restored"),
        "{lines}"
    );
    stop(&name, child);
}

/// The profile's landlock rules hold for an exec'd command as for the service (landlock
/// has no /proc view to compare from the host: what it denies is tried).
#[test]
fn exec_is_held_by_the_services_landlock_rules() {
    require_root();
    let m = marker();
    let e = marker();
    let profiles = Profiles::new();
    let (child, name) = start_daemon(
        &profiles,
        "ex-ll",
        &m,
        "[security]\nlandlock = { read = [\"/usr\", \"/lib\", \"/lib64\", \"/proc\"], write = [\"/tmp\", \"/dev/null\"], exec = [\"/bin\", \"/usr/bin\", \"/usr/lib\"] }\n",
    );
    let script = format!("cat /etc/hostname >/dev/null 2>&1 && echo etc=allowed || echo etc=denied; ls /usr/bin >/dev/null && echo usr=allowed; echo x > /tmp/f && echo tmp=allowed; echo x > /var/tmp/f 2>/dev/null && echo vartmp=allowed || echo vartmp=denied; : marker-{e}");
    let out = exec(&name, &["/bin/sh", "-c", &script], &e);
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
    stop(&name, child);
}
