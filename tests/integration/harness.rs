//! A small harness for tests that start real sandboxes: a command builder, a snapshot of the
//! host taken before and compared after ("nothing left behind"), and profiles written to a
//! temporary directory.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub use crate::common::{text, wait_until};

pub fn stockade_bin() -> &'static str {
    crate::common::BIN
}

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "integration tests start real sandboxes and must run as root (CI does)"
    );
}

/// Held by a test that leaves a stale record for the next run of its name to find, and by
/// a test that lists the records over and over (each listing removes stale records, so it
/// could remove that one first): the two never overlap.
pub static STALE_RECORDS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A unique token, put into a sandboxed command line to find its processes from the host.
pub fn marker() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}{:03}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// What the host looks like, for "nothing left behind" checks.
pub struct Snapshot {
    mounts: BTreeSet<String>,
    cgroups: BTreeSet<PathBuf>,
    run_dir: BTreeSet<PathBuf>,
}

impl Snapshot {
    pub fn take() -> Snapshot {
        Snapshot {
            mounts: mount_lines(),
            cgroups: cgroup_dirs(),
            run_dir: run_entries(),
        }
    }

    /// Fails if a mount, a cgroup directory or an entry below /run/stockade appeared on the
    /// host, or a process carrying `marker` is still alive.
    pub fn assert_unchanged(&self, marker: &str) {
        let added: Vec<String> = mount_lines().difference(&self.mounts).cloned().collect();
        assert!(added.is_empty(), "mounts left on the host: {added:#?}");
        let left = wait_until(Duration::from_secs(3), || processes_with(marker).is_empty());
        assert!(left, "processes left behind: {:?}", processes_with(marker));
        // A cgroup is removed once its last process is reaped: give it the same grace.
        let new = |now: BTreeSet<PathBuf>, then: &BTreeSet<PathBuf>| -> Vec<PathBuf> {
            now.difference(then).cloned().collect()
        };
        wait_until(Duration::from_secs(3), || {
            new(cgroup_dirs(), &self.cgroups).is_empty()
        });
        let added = new(cgroup_dirs(), &self.cgroups);
        assert!(added.is_empty(), "cgroups left on the host: {added:#?}");
        // Tests run side by side: an entry named after a stockade that is still running
        // (notify-PID.sock) belongs to another test's sandbox, not to a leak of this one.
        // So does the record of an instance not named after this marker (a killed one
        // stays until its test runs the name again), or one whose name is still locked.
        // The instances directory itself stays, as /run/stockade does.
        let owner_alive = |p: &PathBuf| {
            if p == Path::new(INSTANCES) {
                return true;
            }
            if p.parent() == Some(Path::new(INSTANCES)) {
                return instance_of(p)
                    .is_none_or(|name| !name.contains(marker) || instance_locked(&name));
            }
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let digits: String = name.chars().filter(char::is_ascii_digit).collect();
            !digits.is_empty() && Path::new(&format!("/proc/{digits}")).exists()
        };
        wait_until(Duration::from_secs(3), || {
            new(run_entries(), &self.run_dir).iter().all(owner_alive)
        });
        let added: Vec<PathBuf> = new(run_entries(), &self.run_dir)
            .into_iter()
            .filter(|p| !owner_alive(p))
            .collect();
        assert!(
            added.is_empty(),
            "entries left in /run/stockade: {added:#?}"
        );
    }
}

/// Where stockade keeps the records of running sandboxes.
pub const INSTANCES: &str = "/run/stockade/instances";

/// The instance a file of the instances directory belongs to: `NAME.json`, `NAME.lock`,
/// the mark `NAME.stopping` or the record's temporary `.NAME.json.tmp`.
fn instance_of(p: &Path) -> Option<String> {
    let f = p.file_name()?.to_str()?;
    let name = f
        .strip_prefix('.')
        .and_then(|f| f.strip_suffix(".json.tmp"))
        .or_else(|| f.strip_suffix(".json"))
        .or_else(|| f.strip_suffix(".lock"))
        .or_else(|| f.strip_suffix(".stopping"))?;
    Some(name.to_owned())
}

/// Whether a process holds instance `name`'s lock, as /proc/locks says (read only: taking
/// the lock to find out would refuse a start that raced with the test).
pub fn instance_locked(name: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = fs::metadata(format!("{INSTANCES}/{name}.lock")) else {
        return false;
    };
    let dev = format!(
        "{:02x}:{:02x}:{}",
        nix::sys::stat::major(m.dev()),
        nix::sys::stat::minor(m.dev()),
        m.ino()
    );
    // `1: FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF`; waiters' lines start with `->`.
    fs::read_to_string("/proc/locks")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().any(|f| f == dev))
}

/// Every directory of the cgroup v2 hierarchy (wherever it is mounted: /sys/fs/cgroup, or
/// /sys/fs/cgroup/unified on a hybrid host).
pub fn cgroup_dirs() -> BTreeSet<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    let root = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .min_by_key(|p| p.as_os_str().len());
    let mut out = BTreeSet::new();
    if let Some(root) = root {
        walk_dirs(&root, &mut out);
    }
    out
}

/// Everything below stockade's runtime directory.
pub fn run_entries() -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    walk_all(Path::new("/run/stockade"), &mut out);
    out
}

fn walk_dirs(dir: &Path, out: &mut BTreeSet<PathBuf>) {
    // A systemd test bed (tests/systemd/bed.sh) booted beside this run keeps its own tree
    // and removes it itself, as does a test that makes a cgroup for its own callers
    // (`stockade-test-*`); neither is a sandbox of this run.
    if dir
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("stockade-bed-") || n.starts_with("stockade-test-"))
    {
        return;
    }
    out.insert(dir.to_owned());
    // A cgroup that vanishes while it is walked is simply not there.
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk_dirs(&e.path(), out);
        }
    }
}

fn walk_all(dir: &Path, out: &mut BTreeSet<PathBuf>) {
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        out.insert(e.path());
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk_all(&e.path(), out);
        }
    }
}

fn mount_lines() -> BTreeSet<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        // Mount ids change when unrelated mounts come and go; compare what is mounted where.
        .map(|l| l.split_whitespace().skip(3).collect::<Vec<_>>().join(" "))
        .collect()
}

/// Pids whose command line contains `marker`.
pub fn processes_with(marker: &str) -> Vec<u32> {
    let me = std::process::id();
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(marker))
                .unwrap_or(false)
        })
        .collect()
}

/// A directory of profiles for one test.
pub struct Profiles {
    pub dir: tempfile::TempDir,
}

impl Profiles {
    pub fn new() -> Profiles {
        Profiles {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(format!("{name}.toml"));
        fs::write(&p, text).unwrap();
        p
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A stockade command (`run` of a profile file, or any other), with a host snapshot
/// compared afterwards. Every test starts stockade through this.
pub struct Run {
    cmd: Command,
    marker: String,
}

impl Run {
    /// `stockade run --name STEM-MARKER PATH`: tests run side by side, many with profiles of
    /// one name (probe), and a second sandbox of a running name is refused.
    pub fn profile(path: &Path, marker: &str) -> Run {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("p");
        let mut cmd = Command::new(stockade_bin());
        cmd.arg("run")
            .arg("--name")
            .arg(format!("{stem}-{marker}"))
            .arg(path);
        Run {
            cmd,
            marker: marker.to_owned(),
        }
    }

    /// `stockade ARGS...`, for subcommands other than `run PROFILE`.
    pub fn stockade<S: AsRef<std::ffi::OsStr>>(args: &[S], marker: &str) -> Run {
        let mut cmd = Command::new(stockade_bin());
        cmd.args(args);
        Run {
            cmd,
            marker: marker.to_owned(),
        }
    }

    /// A shell script that starts stockade itself (to give it inherited descriptors, or to
    /// see its status as a shell does); `{bin}` in `script` is replaced by stockade's path.
    pub fn shell(script: &str, marker: &str) -> Run {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(script.replace("{bin}", stockade_bin()));
        Run {
            cmd,
            marker: marker.to_owned(),
        }
    }

    /// `stockade ARGS...` run through `wrapper` (`setpriv ... --`, say).
    pub fn wrapped<S: AsRef<std::ffi::OsStr>>(wrapper: &[&str], args: &[S], marker: &str) -> Run {
        let mut cmd = Command::new(wrapper[0]);
        cmd.args(&wrapper[1..]).arg(stockade_bin()).args(args);
        Run {
            cmd,
            marker: marker.to_owned(),
        }
    }

    pub fn arg(mut self, a: impl AsRef<std::ffi::OsStr>) -> Run {
        self.cmd.arg(a);
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Run {
        self.cmd.current_dir(dir);
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Run {
        self.cmd.env(k, v);
        self
    }

    /// Runs to completion and checks the host afterwards.
    pub fn output(mut self) -> Output {
        let snap = Snapshot::take();
        let out = self.cmd.stdin(Stdio::null()).output().unwrap();
        snap.assert_unchanged(&self.marker);
        out
    }

    pub fn spawn(mut self) -> std::process::Child {
        self.cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

/// A service that runs until SIGTERM and then exits 0, as a daemon does.
pub const DAEMON: &str = "trap 'exit 0' TERM; while :; do sleep 0.05; done";

/// Starts profile `stem` (DAEMON with `extra` TOML) as instance `STEM-MARKER` and waits for
/// its record: the sandbox is up. Returns the running stockade and the instance name.
pub fn start_daemon(
    profiles: &Profiles,
    stem: &str,
    marker: &str,
    extra: &str,
) -> (std::process::Child, String) {
    let p = profiles.write(stem, &sh_profile(DAEMON, marker, extra));
    let name = format!("{stem}-{marker}");
    let child = Run::profile(&p, marker).spawn();
    wait_for_record(&name);
    (child, name)
}

/// The record of instance `name`, once it is there: the sandbox is set up.
pub fn wait_for_record(name: &str) -> serde_json::Value {
    let path = Path::new(INSTANCES).join(format!("{name}.json"));
    assert!(
        wait_until(Duration::from_secs(5), || path.exists()),
        "no record at {}",
        path.display()
    );
    serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap()
}

/// Runs a short sandbox under instance name `name`, which removes the stale record a
/// SIGKILL of its stockade left (checked: `run` says so at -v).
pub fn reclaim(name: &str, marker: &str) {
    let profiles = Profiles::new();
    let p = profiles.write("reclaim", &sh_profile("true", marker, ""));
    // Tests run side by side: another test's `ps` or `exec` lists the instances, which
    // removes a stale record too, so this run's log may not be the one that says so
    // (instances.rs tests that message); what must hold is that the name is free again.
    let record = Path::new(INSTANCES).join(format!("{name}.json"));
    let out = Run::stockade(&["-v", "run", "--name", name], marker)
        .arg(&p)
        .output();
    let e = text(&out.stderr);
    assert!(out.status.success(), "{e}");
    assert!(!record.exists(), "{name}'s record is still there: {e}");
}

/// A profile running `script` with /bin/sh; `extra` is appended TOML. The marker goes on the
/// command line so the host can find the sandbox's processes.
pub fn sh_profile(script: &str, marker: &str, extra: &str) -> String {
    format!("[exec]\ncommand = [\"/bin/sh\", \"-c\", {script:?}, \"marker-{marker}\"]\n{extra}\n")
}

/// Lines `key=value` printed by a probe script, as a map.
pub fn probe_values(out: &Output) -> std::collections::BTreeMap<String, String> {
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}
