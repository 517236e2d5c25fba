//! `stockade export --format oci`: the bundle of a profile runs with crun as written, and
//! what the service sees there is what it sees under `stockade run` of the same profile.
//!
//! Debian 12's crun 1.8.1 refuses this host's v1/v2 hybrid cgroup layout ("cgroups in hybrid
//! mode not supported") even with `--cgroup-manager=disabled`; in a private mount namespace
//! with `/sys/fs/cgroup/unified` unmounted it runs (on a pure cgroup v2 host the unmount is
//! skipped). The limits are systemd's job there and are not enforced here, so the profiles
//! compared have none; the VM tier is not needed for what is compared.

use crate::harness::*;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn probe_bin() -> PathBuf {
    Path::new(stockade_bin())
        .parent()
        .unwrap()
        .join("examples/escape-probe")
}

/// `stockade export --format oci PROFILE DIR`, which must succeed.
fn export(profile: &Path, dir: &Path, marker: &str) -> Output {
    let o = Run::stockade(
        &[
            "export".as_ref(),
            "--format".as_ref(),
            "oci".as_ref(),
            profile.as_os_str(),
            dir.as_os_str(),
        ],
        marker,
    )
    .output();
    assert!(o.status.success(), "export: {}", text(&o.stderr));
    o
}

/// `crun run --bundle DIR NAME` as root, with nothing prepared by hand beyond the cgroup
/// workaround above; the host must be unchanged afterwards (crun's state, mounts, processes).
fn crun(bundle: &Path, marker: &str) -> Output {
    let name = format!("stockade-export-{marker}");
    let snap = Snapshot::take();
    let o = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("if [ -d /sys/fs/cgroup/unified ]; then umount /sys/fs/cgroup/unified; fi; exec crun --cgroup-manager=disabled run --bundle \"$1\" \"$2\"")
        .arg("sh")
        .arg(bundle)
        .arg(&name)
        .stdin(Stdio::null())
        .output()
        .expect("crun (Debian package crun, in tests/deps.sh) is needed");
    snap.assert_unchanged(marker);
    assert!(
        !Path::new("/run/crun").join(&name).exists(),
        "crun left its state behind"
    );
    o
}

fn lines(o: &Output) -> Vec<String> {
    text(&o.stdout).lines().map(str::to_owned).collect()
}

/// The lines of `out` starting with one of `prefixes`.
fn picked(out: &[String], prefixes: &[&str]) -> Vec<String> {
    out.iter()
        .filter(|l| prefixes.iter().any(|p| l.starts_with(p)))
        .cloned()
        .collect()
}

#[test]
fn the_hello_bundle_runs_with_crun_and_sees_what_stockade_run_shows() {
    require_root();
    let m = marker();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("hello");
    let hello = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello.toml");
    let e = export(&hello, &bundle, &m);
    // What OCI cannot express is named, and kept in the config.
    assert!(
        text(&e.stderr).contains("not in the bundle: landlock: read only below /"),
        "{}",
        text(&e.stderr)
    );
    let config: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["annotations"]["org.stockade.landlock.read"], "/");
    assert_eq!(config["hostname"], "hello");
    assert!(bundle.join("rootfs/usr").is_dir());
    let inside = crun(&bundle, &m);
    assert!(
        inside.status.success(),
        "crun: {}{}",
        text(&inside.stdout),
        text(&inside.stderr)
    );
    let run = Run::profile(&hello, &m).output();
    assert!(run.status.success(), "{}", text(&run.stderr));
    let keys = ["hostname:", "uid:", "network:"];
    let (a, b) = (picked(&lines(&inside), &keys), picked(&lines(&run), &keys));
    assert_eq!(a.len(), 3, "{}", text(&inside.stdout));
    assert_eq!(
        a,
        b,
        "crun saw\n{}\nstockade run saw\n{}",
        text(&inside.stdout),
        text(&run.stdout)
    );
    // A pid namespace in both: a handful of processes, not the host's.
    let count = |o: &Output| {
        let l = lines(o);
        let i = l.iter().position(|l| l == "processes:").unwrap();
        l[i + 1].split_whitespace().count()
    };
    assert!(
        count(&inside) <= 6 && count(&run) <= 6,
        "{} / {}",
        count(&inside),
        count(&run)
    );
}

/// What a hardened service sees of itself: hostname, capability sets, no_new_privs and
/// seccomp mode, whether the root is writable and hidden paths are empty.
const FACTS: &str = r#"echo "hostname=$(hostname)"
grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status | tr -d '\t' | tr ':' '='
if touch /usr/stockade-export-probe 2>/dev/null; then echo "root=rw"; else echo "root=ro"; fi
echo "home-entries=$(ls -A /home | wc -l)"
echo "srv-entries=$(ls -A /srv 2>/dev/null | wc -l)"
if cat /proc/kcore >/dev/null 2>&1; then echo "kcore=readable"; else echo "kcore=hidden"; fi
echo "proc-keys-bytes=$(cat /proc/keys 2>/dev/null | wc -c)"
echo "timer-list-bytes=$(cat /proc/timer_list 2>/dev/null | wc -c)"
if [ -e /var/lib/stockade/volumes ]; then echo "state=visible"; else echo "state=hidden"; fi
echo "procs=$(ls /proc | grep -c '^[0-9]')"
"#;

const HARDENED: &str = r#"
[network]
hostname = "fortress"
[filesystem]
read_only = true
hide = ["/home", "/srv"]
[security]
capabilities = ["net_bind_service"]
no_new_privileges = true
syscall_deny = ["@swap"]
landlock = { read = ["/"], exec = ["/bin", "/usr", "/lib", "/lib64"EXTRA] }
"#;

/// The hardened profile's tables, with `extra_exec` (`, "/tmp/probe"`) allowed to exec.
fn hardened(extra_exec: &str) -> String {
    HARDENED.replace("EXTRA", extra_exec)
}

#[test]
fn a_hardened_bundle_under_crun_matches_stockade_run_wall_for_wall() {
    require_root();
    let m = marker();
    let profiles = Profiles::new();
    let dir = tempfile::tempdir().unwrap();

    // Identity, capabilities, no_new_privs, the root and hidden paths.
    let facts = profiles.write(
        "facts",
        &format!("{}{}", sh_profile(FACTS, &m, ""), hardened("")),
    );
    export(&facts, &dir.path().join("facts"), &m);
    let inside = crun(&dir.path().join("facts"), &m);
    assert!(inside.status.success(), "crun: {}", text(&inside.stderr));
    let run = Run::profile(&facts, &m).output();
    assert!(run.status.success(), "{}", text(&run.stderr));
    let (a, b) = (probe_values(&inside), probe_values(&run));
    for (k, v) in [
        ("hostname", "fortress"),
        ("CapEff", "0000000000000400"),
        ("CapBnd", "0000000000000400"),
        ("NoNewPrivs", "1"),
        ("Seccomp", "2"),
        ("root", "ro"),
        ("home-entries", "0"),
        ("srv-entries", "0"),
        ("kcore", "hidden"),
        // Masked: stockade binds an unreadable empty file, OCI runtimes /dev/null.
        ("proc-keys-bytes", "0"),
        ("timer-list-bytes", "0"),
        ("state", "hidden"),
    ] {
        assert_eq!(
            b.get(k).map(String::as_str),
            Some(v),
            "stockade run: {k} in {b:?}"
        );
        assert_eq!(
            a.get(k),
            b.get(k),
            "crun and stockade run differ on {k}:\n{a:?}\n{b:?}"
        );
    }
    for k in ["CapPrm", "CapInh", "CapAmb"] {
        assert_eq!(
            a.get(k),
            b.get(k),
            "crun and stockade run differ on {k}:\n{a:?}\n{b:?}"
        );
    }
    let procs = |v: &BTreeMap<String, String>| v["procs"].parse::<u32>().unwrap();
    assert!(procs(&a) <= 6 && procs(&b) <= 6, "{a:?} {b:?}");

    // The seccomp verdicts of the escape probe, bound in read-only.
    let stage = tempfile::tempdir_in(Path::new(stockade_bin()).parent().unwrap()).unwrap();
    fs::copy(probe_bin(), stage.path().join("escape-probe"))
        .expect("cargo build --example escape-probe");
    let probe = profiles.write(
        "probe",
        &format!(
            "[exec]\ncommand = [\"/tmp/probe/escape-probe\", \"marker-{m}\"]\n[[mount]]\ntype = \"bind\"\nsource = \"{}\"\ntarget = \"/tmp/probe\"\nread_only = true\n{}",
            stage.path().display(),
            hardened(", \"/tmp/probe\"")
        ),
    );
    export(&probe, &dir.path().join("probe"), &m);
    let verdicts = |o: &Output| -> BTreeMap<String, String> {
        text(&o.stdout)
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    };
    let inside = crun(&dir.path().join("probe"), &m);
    let run = Run::profile(&probe, &m).output();
    let (a, b) = (verdicts(&inside), verdicts(&run));
    assert!(
        !a.is_empty(),
        "crun: {}{}",
        text(&inside.stdout),
        text(&inside.stderr)
    );
    for (k, v) in [
        ("mount", "EPERM"),
        ("keyctl", "EPERM"),
        ("add-key", "EPERM"),
        ("ptrace-init", "EPERM"),
        ("unshare-user", "EPERM"),
        ("clone-new-user", "EPERM"),
        ("clone3", "ENOSYS"),
        ("bpf", "EPERM"),
        ("io-uring", "EPERM"),
        ("raw-socket", "EAFNOSUPPORT"),
        ("write-root", "EROFS"),
        ("tiocsti", "EPERM"),
        ("tiocsti-high-bits", "EPERM"),
        ("proc-lists-only-sandbox", "few"),
    ] {
        assert_eq!(
            b.get(k).map(String::as_str),
            Some(v),
            "stockade run: {k} in {b:?}"
        );
        assert_eq!(
            a.get(k),
            b.get(k),
            "crun and stockade run differ on {k}:\n{a:?}\n{b:?}"
        );
    }
}

#[test]
fn export_refuses_a_non_empty_bundle_directory_and_writes_nothing() {
    require_root();
    let m = marker();
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("keep"), "mine").unwrap();
    let hello = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello.toml");
    let o = Run::stockade(
        &[
            "export".as_ref(),
            "--format".as_ref(),
            "oci".as_ref(),
            hello.as_os_str(),
            dir.path().as_os_str(),
        ],
        &m,
    )
    .output();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("is not an empty directory"),
        "{}",
        text(&o.stderr)
    );
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["keep"]);
    // Without DIR, clap names the missing argument.
    let o = Run::stockade(&["export", "--format", "oci", "hello"], &m).output();
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("<DIR>"), "{}", text(&o.stderr));
}

#[test]
fn every_shipped_profile_exports_to_a_bundle_that_oci_spec_reads_back() {
    require_root();
    let m = marker();
    let dir = tempfile::tempdir().unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for name in ["hello", "redis", "nginx", "memcached", "postgresql"] {
        let bundle = dir.path().join(name);
        let e = export(&examples.join(format!("{name}.toml")), &bundle, &m);
        // Every daemon has landlock rules: named on stderr, never dropped.
        assert!(
            text(&e.stderr).contains("not in the bundle: landlock: "),
            "{name}: {}",
            text(&e.stderr)
        );
        let spec = oci_spec::runtime::Spec::load(bundle.join("config.json"))
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(spec.root().as_ref().unwrap().path(), Path::new("rootfs"));
        let args = spec.process().as_ref().unwrap().args().clone().unwrap();
        assert!(args[0].starts_with('/'), "{name}: {args:?}");
        assert!(bundle.join("rootfs/usr").is_dir() && bundle.join("rootfs/proc").is_dir());
        // The limits ride along for a runtime under systemd.
        if name != "hello" {
            let linux = spec.linux().as_ref().unwrap();
            assert_eq!(
                linux.cgroups_path().as_deref(),
                Some(Path::new(&format!("stockade.slice:stockade:{name}")))
            );
            assert!(
                linux.resources().as_ref().unwrap().memory().is_some(),
                "{name}"
            );
        }
    }
}
