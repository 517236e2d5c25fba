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
}

impl Snapshot {
    pub fn take() -> Snapshot {
        Snapshot {
            mounts: mount_lines(),
        }
    }

    /// Fails if a mount appeared on the host or a process carrying `marker` is still alive.
    pub fn assert_unchanged(&self, marker: &str) {
        let added: Vec<String> = mount_lines().difference(&self.mounts).cloned().collect();
        assert!(added.is_empty(), "mounts left on the host: {added:#?}");
        let left = wait_until(Duration::from_secs(3), || processes_with(marker).is_empty());
        assert!(left, "processes left behind: {:?}", processes_with(marker));
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

/// `stockade run` of a profile file, with a host snapshot compared afterwards.
pub struct Run {
    cmd: Command,
    marker: String,
}

impl Run {
    pub fn profile(path: &Path, marker: &str) -> Run {
        let mut cmd = Command::new(stockade_bin());
        cmd.arg("run").arg(path);
        Run {
            cmd,
            marker: marker.to_owned(),
        }
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
