//! Operating running sandboxes from a shell: `ps` lists them with the service's host pid,
//! `stop` ends them (SIGTERM, then SIGKILL after --time) and waits until they are gone,
//! `volume` manages named volumes and refuses to remove one in use; each refuses a caller
//! without root and an unknown name, naming the running ones. A sandbox that is stopping
//! says so in `ps`, `metrics` and `exec`, and a second `stop` only waits for it.

use crate::harness::*;
use std::fs;
use std::time::Duration;

fn ps_json(marker: &str) -> Vec<serde_json::Value> {
    let out = Run::stockade(&["ps", "--json"], marker).output();
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
}

#[test]
fn ps_lists_a_running_sandbox_and_stop_ends_it() {
    require_root();
    let m = marker();
    // The commands run while the sandbox lives: their own marker, or their snapshot would
    // count the sandbox as left behind.
    let c = marker();
    let profiles = Profiles::new();
    let snap = Snapshot::take();
    let (mut child, name) = start_daemon(&profiles, "svc", &m, "");
    let list = ps_json(&c);
    let me = list
        .iter()
        .find(|s| s["name"] == name.as_str())
        .unwrap_or_else(|| panic!("{name} not in {list:#?}"));
    assert_eq!(me["profile"], "svc");
    assert_eq!(me["state"], "running");
    // The pid is the service's as the host sees it: its command line carries the marker.
    let pid = me["service_pid"].as_u64().unwrap();
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(text(&cmdline).contains(&m), "{pid}: {}", text(&cmdline));
    let table = Run::stockade(&["ps"], &c).output();
    let t = text(&table.stdout);
    assert!(
        t.starts_with("NAME") && t.contains(&name) && t.contains(&pid.to_string()),
        "{t}"
    );

    let out = Run::stockade(&["stop", &name], &c).output();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), format!("{name}: stopped"));
    // stop returns once the sandbox is gone: the service and its record with it.
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(
        child.wait().unwrap().code(),
        Some(0),
        "the service ended by its own TERM trap"
    );
    assert!(!ps_json(&c).iter().any(|s| s["name"] == name.as_str()));
    snap.assert_unchanged(&m);
}

#[test]
fn stop_kills_a_service_that_ignores_sigterm_after_the_grace_time() {
    require_root();
    let m = marker();
    let profiles = Profiles::new();
    let p = profiles.write(
        "stubborn",
        &sh_profile("trap '' TERM; while :; do sleep 0.05; done", &m, ""),
    );
    let name = format!("stubborn-{m}");
    let mut child = Run::profile(&p, &m).spawn();
    wait_for_record(&name);
    let start = std::time::Instant::now();
    let out = Run::stockade(&["stop", "--time", "1", &name], &m).output();
    let took = start.elapsed();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("killed"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(8),
        "{took:?}"
    );
    assert!(child.wait().unwrap().code().is_none_or(|c| c != 0));
}

/// The `state` `ps --json` gives instance `name` (None: not listed).
fn state_of(name: &str, marker: &str) -> Option<String> {
    ps_json(marker)
        .iter()
        .find(|s| s["name"] == name)
        .map(|s| s["state"].as_str().unwrap_or_default().to_owned())
}

/// Waits (5 s at most) until `ps --json` says instance `name` is stopping.
fn wait_stopping(name: &str, marker: &str) {
    let seen = wait_until(Duration::from_secs(5), || {
        state_of(name, marker).as_deref() == Some("stopping")
    });
    assert!(seen, "{name} never stopping: {:?}", state_of(name, marker));
}

#[test]
fn a_sandbox_that_is_stopping_says_so_refuses_exec_and_gets_one_sigterm() {
    require_root();
    let m = marker();
    let c = marker();
    let profiles = Profiles::new();
    let snap = Snapshot::take();
    // Takes about 4 s to stop once it has a SIGTERM; says so for each SIGTERM it gets.
    let p = profiles.write(
        "linger",
        &sh_profile(
            "trap 'echo got-term; t=1' TERM; i=0; while [ $i -lt 80 ]; do sleep 0.05; [ -n \"$t\" ] && i=$((i+1)); done; echo done",
            &m,
            "",
        ),
    );
    let name = format!("linger-{m}");
    let child = Run::profile(&p, &m).spawn();
    wait_for_record(&name);
    assert_eq!(state_of(&name, &c).as_deref(), Some("running"));
    let first = Run::stockade(&["stop", "--time", "20", &name], &c).spawn();
    wait_stopping(&name, &c);

    let t = text(&Run::stockade(&["ps"], &c).output().stdout);
    let line = t.lines().find(|l| l.starts_with(&name)).unwrap_or_default();
    assert!(line.trim_end().ends_with("stopping"), "{t}");
    let metrics = text(&Run::stockade(&["metrics"], &c).output().stdout);
    assert!(
        metrics.contains(&format!(
            "stockade_sandbox_stopping{{sandbox=\"{name}\",profile=\"linger\"}} 1\n"
        )),
        "{metrics}"
    );
    let out = Run::stockade(&["exec", &name, "--", "true"], &c).output();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).starts_with(&format!(
            "stockade: sandbox `{name}` is stopping and cannot be entered (running: "
        )),
        "{}",
        text(&out.stderr)
    );
    // A second stop waits for the first one's end and sends nothing.
    let out = Run::stockade(&["stop", &name], &c).output();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), format!("{name}: stopped"));
    assert!(
        text(&out.stderr).contains(&format!("{name} is already stopping; waiting for it")),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(state_of(&name, &c), None, "gone once stop returns");

    let out = first.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), format!("{name}: stopped"));
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).matches("got-term").count(),
        1,
        "one SIGTERM: {}",
        text(&out.stdout)
    );
    snap.assert_unchanged(&m);
}

#[test]
fn a_second_stop_of_a_stopping_sandbox_still_kills_it_at_its_time() {
    require_root();
    let m = marker();
    let c = marker();
    let profiles = Profiles::new();
    let snap = Snapshot::take();
    let p = profiles.write(
        "deaf",
        &sh_profile("trap '' TERM; while :; do sleep 0.05; done", &m, ""),
    );
    let name = format!("deaf-{m}");
    let child = Run::profile(&p, &m).spawn();
    wait_for_record(&name);
    let first = Run::stockade(&["stop", "--time", "60", &name], &c).spawn();
    wait_stopping(&name, &c);
    let start = std::time::Instant::now();
    let out = Run::stockade(&["stop", "--time", "1", &name], &c).output();
    let took = start.elapsed();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("killed"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(8),
        "{took:?}"
    );
    // The first stop sees it gone as well, long before its own 60 s.
    assert!(first.wait_with_output().unwrap().status.success());
    assert!(child
        .wait_with_output()
        .unwrap()
        .status
        .code()
        .is_none_or(|c| c != 0));
    snap.assert_unchanged(&m);
}

#[test]
fn unknown_names_and_callers_without_root_are_refused() {
    require_root();
    let m = marker();
    for args in [
        vec!["stop", "no-such-sandbox"],
        vec!["stats", "--no-stream", "no-such-sandbox"],
    ] {
        let out = Run::stockade(&args, &m).output();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            text(&out.stderr).contains("no running sandbox `no-such-sandbox` (running: "),
            "{}",
            text(&out.stderr)
        );
    }
    for args in [
        vec!["ps"],
        vec!["stop", "x"],
        vec!["stats", "--no-stream"],
        vec!["volume", "ls"],
    ] {
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
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains("needs root"),
            "{}",
            text(&out.stderr)
        );
        assert!(
            out.stdout.is_empty(),
            "a partial answer: {}",
            text(&out.stdout)
        );
    }
}

#[test]
fn volumes_are_created_listed_and_removed_but_not_while_in_use() {
    require_root();
    let m = marker();
    // The commands run while the sandbox lives: their own marker, or their snapshot would
    // count the sandbox as left behind.
    let c = marker();
    let vol = format!("opsvol-{m}");
    let dir = format!("/var/lib/stockade/volumes/{vol}");
    let _cleanup = scopeguard(dir.clone());
    let out = Run::stockade(&["volume", "create", &vol, "--owner", "4242:4343"], &c).output();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let meta = fs::metadata(&dir).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (4242, 4343, 0o700)
    );
    let again = Run::stockade(&["volume", "create", &vol], &c).output();
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );
    let bad = Run::stockade(&["volume", "rm", "../etc"], &c).output();
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("not a valid volume name"),
        "{}",
        text(&bad.stderr)
    );

    // In use by a running sandbox: rm names it and removes nothing.
    let profiles = Profiles::new();
    let (mut child, name) = start_daemon(
        &profiles,
        "user",
        &m,
        &format!("[[mount]]\ntype = \"tmpfs\"\ntarget = \"/srv\"\n[[mount]]\ntype = \"volume\"\nname = \"{vol}\"\ntarget = \"/srv/v\"\n"),
    );
    let ls = Run::stockade(&["volume", "ls"], &c).output();
    let line = text(&ls.stdout)
        .lines()
        .find(|l| l.starts_with(&vol))
        .map(str::to_owned);
    assert!(
        line.as_deref().is_some_and(|l| l.ends_with(&name)),
        "{}",
        text(&ls.stdout)
    );
    let busy = Run::stockade(&["volume", "rm", &vol], &c).output();
    assert_eq!(busy.status.code(), Some(1));
    assert!(
        text(&busy.stderr).contains(&format!("in use by the running sandbox {name}")),
        "{}",
        text(&busy.stderr)
    );
    assert!(std::path::Path::new(&dir).is_dir());
    assert!(Run::stockade(&["stop", &name], &m)
        .output()
        .status
        .success());
    child.wait().unwrap();

    let out = Run::stockade(&["volume", "rm", &vol], &c).output();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!std::path::Path::new(&dir).exists());
}

/// Removes a volume directory when the test ends, whatever happened.
fn scopeguard(dir: String) -> impl Drop {
    struct G(String);
    impl Drop for G {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    G(dir)
}
