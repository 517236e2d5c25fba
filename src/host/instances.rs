//! What `/proc` says about a running sandbox's processes: a process's identity (its pid and
//! the start time that tells it from a later process given the same pid) and the inodes of
//! its namespaces. The records of running sandboxes (`ops::records`) are written from these
//! and checked against them. Readers only, below the host root.

use super::Host;
use crate::plan::Namespace;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;

/// One process, as a record names it: a pid alone may be reused once the process is gone,
/// a pid with its start time (clock ticks after boot, field 22 of `/proc/PID/stat`) cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcId {
    pub pid: u32,
    pub start_time: u64,
}

impl Host {
    /// Process `pid` with its start time; None when there is no such process.
    pub fn proc_id(&self, pid: u32) -> Option<ProcId> {
        let stat = fs::read_to_string(self.path(&format!("/proc/{pid}/stat"))).ok()?;
        Some(ProcId {
            pid,
            start_time: start_time(&stat)?,
        })
    }

    /// The process `p` names is still running: its pid exists and started when it did (a
    /// zombie counts as gone: it runs nothing and holds nothing).
    pub fn is_running(&self, p: ProcId) -> bool {
        let Ok(stat) = fs::read_to_string(self.path(&format!("/proc/{}/stat", p.pid))) else {
            return false;
        };
        start_time(&stat) == Some(p.start_time) && state(&stat) != Some('Z')
    }

    /// The inode of each namespace process `pid` is in (or, for time, its children are in),
    /// by the key `[namespaces]` uses; a namespace the kernel lacks is left out.
    pub fn namespace_inodes(&self, pid: u32) -> BTreeMap<String, u64> {
        use std::os::unix::fs::MetadataExt;
        Namespace::ALL
            .iter()
            .filter_map(|row| {
                // stat(2) follows the magic link to the namespace's nsfs inode.
                let m = fs::metadata(self.path(&format!("/proc/{pid}/ns/{}", row.proc))).ok()?;
                Some((row.key.to_owned(), m.ino()))
            })
            .collect()
    }
}

/// The fields after `comm`: comm is in parentheses and may itself hold spaces and `)`, so
/// the fields start after the last `)`. The first of them is field 3 (the state).
fn fields_after_comm(stat: &str) -> Option<impl Iterator<Item = &str>> {
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace())
}

/// Field 22 of a `/proc/PID/stat` text: the process's start time in clock ticks after boot.
pub fn start_time(stat: &str) -> Option<u64> {
    fields_after_comm(stat)?.nth(22 - 3)?.parse().ok()
}

/// Field 3: the process state (`R`, `S`, `Z`...).
fn state(stat: &str) -> Option<char> {
    fields_after_comm(stat)?.next()?.chars().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_time_is_found_past_any_comm() {
        let tail = "S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 424242 19 20";
        assert_eq!(start_time(&format!("77 (sh) {tail}")), Some(424242));
        // A comm holding spaces, parentheses and digits cannot shift the fields.
        assert_eq!(
            start_time(&format!("77 (a) 1 2 (x) ) {tail}")),
            Some(424242)
        );
        assert_eq!(state(&format!("77 (a) Z) {tail}")), Some('S'));
        assert_eq!(start_time("77 (sh) S 1 2"), None);
        assert_eq!(start_time("garbage"), None);
    }

    #[test]
    fn a_reused_pid_is_not_the_recorded_process() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host {
            root: dir.path().to_owned(),
            euid: 0,
            egid: 0,
        };
        fs::create_dir_all(dir.path().join("proc/77")).unwrap();
        let stat = |t: u64, s: char| {
            format!("77 (stockade) {s} 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 {t} 19")
        };
        fs::write(dir.path().join("proc/77/stat"), stat(500, 'S')).unwrap();
        let p = host.proc_id(77).unwrap();
        assert_eq!(p.start_time, 500);
        assert!(host.is_running(p));
        fs::write(dir.path().join("proc/77/stat"), stat(900, 'S')).unwrap();
        assert!(!host.is_running(p), "another process now has pid 77");
        fs::write(dir.path().join("proc/77/stat"), stat(500, 'Z')).unwrap();
        assert!(!host.is_running(p), "a zombie runs nothing");
        assert!(host.proc_id(78).is_none());
        assert!(!host.is_running(ProcId {
            pid: 78,
            start_time: 500
        }));
    }
}
