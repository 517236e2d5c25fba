//! Leaf cgroups stockade manages itself (delegate mode, and its own cgroup v2 directory when
//! systemd is absent): created and limited before any sandbox process runs in them, killed
//! and removed when the service ends. The guard remembers what it created and undoes only
//! that.

use super::error::SetupError;
use crate::plan::Leaves;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A payload leaf with init inside; removed on drop.
pub struct Leaf {
    dir: PathBuf,
    /// Directories we created and must remove (innermost last).
    created: Vec<PathBuf>,
    owner: u32,
}

fn write(path: &Path, value: &str, step: &str) -> Result<(), SetupError> {
    fs::write(path, value)
        .map_err(|e| SetupError::other(step, format!("write {value:?} to {}: {e}", path.display())))
}

impl Leaf {
    pub fn create(l: &Leaves, init: u32) -> Result<Leaf, SetupError> {
        let mut leaf = Leaf {
            dir: l.parent.join(&l.payload),
            created: Vec::new(),
            owner: std::process::id(),
        };
        if !l.parent.is_dir() {
            fs::create_dir(&l.parent).map_err(|e| {
                SetupError::other(
                    "create the stockade cgroup",
                    format!("{}: {e}", l.parent.display()),
                )
            })?;
            leaf.created.push(l.parent.clone());
        }
        if let Some(sup) = &l.supervisor {
            // The no-internal-process rule: a cgroup with controllers enabled for its
            // children may not hold processes, so the supervisor moves into a leaf first.
            let dir = l.parent.join(sup);
            if !dir.is_dir() {
                fs::create_dir(&dir).map_err(|e| {
                    SetupError::other(
                        "create the supervisor's cgroup",
                        format!("{}: {e}", dir.display()),
                    )
                })?;
            }
            write(
                &dir.join("cgroup.procs"),
                &std::process::id().to_string(),
                "move the supervisor into its cgroup",
            )?;
            // Init was cloned into the unit's cgroup too; it waits in the supervisor's leaf
            // until its own leaf exists.
            write(
                &dir.join("cgroup.procs"),
                &init.to_string(),
                "move the sandbox out of the unit's cgroup",
            )?;
        }
        if !l.controllers.is_empty() {
            let enable: Vec<String> = l.controllers.iter().map(|c| format!("+{c}")).collect();
            write(
                &l.parent.join("cgroup.subtree_control"),
                &enable.join(" "),
                "enable cgroup controllers",
            )?;
        }
        fs::create_dir(&leaf.dir).map_err(|e| {
            SetupError::other(
                "create the sandbox's cgroup",
                format!("{}: {e}", leaf.dir.display()),
            )
        })?;
        leaf.created.push(leaf.dir.clone());
        for (file, value) in &l.limits {
            write(&leaf.dir.join(file), value, "apply a resource limit")?;
        }
        write(
            &leaf.dir.join("cgroup.procs"),
            &init.to_string(),
            "move the sandbox into its cgroup",
        )?;
        Ok(leaf)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Leaf {
    fn drop(&mut self) {
        // Only the process that created the leaf removes it.
        if std::process::id() != self.owner {
            return;
        }
        // Anything the service left behind (without a pid namespace) dies with it.
        let _ = fs::write(self.dir.join("cgroup.kill"), "1");
        for dir in self.created.iter().rev() {
            let start = Instant::now();
            // rmdir fails with EBUSY until the killed processes are fully gone.
            while fs::remove_dir(dir).is_err() && start.elapsed() < Duration::from_secs(2) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// The number of OOM kills recorded for a cgroup (`memory.events`), when it has the file.
pub fn oom_kills(dir: &Path) -> Option<u64> {
    let text = fs::read_to_string(dir.join("memory.events")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
}

/// Refuses a scope whose cgroup lacks a controller the limits need: systemd records such
/// a limit on the unit and runs without it (a v1/v2 hybrid host), and the README promises a
/// refusal instead. Init is killed by the caller's guard, which removes the scope.
pub fn check_controllers(
    dir: Option<&Path>,
    needed: &[&str],
    unit: &str,
) -> Result<(), SetupError> {
    if needed.is_empty() {
        return Ok(());
    }
    let step = format!("check the limits of {unit}");
    let Some(dir) = dir else {
        return Err(SetupError::other(
            step,
            "the scope's cgroup v2 directory was not found; refusing to run without the limits",
        ));
    };
    let file = dir.join("cgroup.controllers");
    let text = fs::read_to_string(&file).unwrap_or_default();
    let have: Vec<&str> = text.split_whitespace().collect();
    let missing: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|c| !have.contains(c))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(SetupError::other(
        step,
        format!(
            "systemd made the scope, but its cgroup {} has no {} controller ({} lists `{}`); refusing to run without the limits",
            dir.display(),
            missing.join(", "),
            file.display(),
            text.trim()
        ),
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_scope_without_a_needed_controller_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.controllers"), "cpu pids\n").unwrap();
        let check = |needed: &[&str]| super::check_controllers(Some(dir.path()), needed, "x.scope");
        assert!(check(&["cpu", "pids"]).is_ok());
        assert!(check(&[]).is_ok());
        let e = check(&["memory", "pids"]).unwrap_err().to_string();
        assert!(
            e.contains("has no memory controller") && e.contains("x.scope"),
            "{e}"
        );
        assert!(super::check_controllers(None, &["pids"], "x.scope").is_err());
        assert!(super::check_controllers(None, &[], "x.scope").is_ok());
    }
}
