//! What a sandbox's cgroup v2 directory says it uses: memory, CPU, tasks, I/O and the
//! events that matter to an admin (OOM kills, memory.high throttling). Read-only, from the
//! files the kernel keeps; `ps`, `stats` and `metrics` read the same figures. A controller
//! the cgroup does not have (a v1/v2 hybrid host) leaves its figures `None`, never zero, so
//! the consumers can say which controller is missing.

use std::fs;
use std::path::Path;

/// One reading of a cgroup's files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub memory_current: Option<u64>,
    /// None for "max" (no limit) as well as for a missing controller; see `controllers`.
    pub memory_max: Option<u64>,
    /// memory.peak (Linux 5.19).
    pub memory_peak: Option<u64>,
    pub cpu_usage_usec: Option<u64>,
    /// When `cpu_usage_usec` was read, in microseconds since the Unix epoch: a CPU percent
    /// divides by the time between two readings, not between two loop turns of the caller
    /// (reading the other sandboxes' files in between made a 1-s figure off by tens of %
    /// on a loaded host).
    pub cpu_read_unix_us: Option<u64>,
    pub cpu_throttled_usec: Option<u64>,
    pub tasks_current: Option<u64>,
    pub tasks_max: Option<u64>,
    pub io_read_bytes: Option<u64>,
    pub io_write_bytes: Option<u64>,
    pub oom_kills: Option<u64>,
    pub memory_high_events: Option<u64>,
    /// `cgroup.controllers` of the cgroup: what it can account and limit.
    pub controllers: Vec<String>,
}

/// A single number, or None for "max", a missing file or garbage.
fn number(dir: &Path, file: &str) -> Option<u64> {
    fs::read_to_string(dir.join(file)).ok()?.trim().parse().ok()
}

/// A field of a flat-keyed file's text (`cpu.stat`, `memory.events`), each file read once
/// for all its fields (a scrape reads every sandbox's files).
fn keyed(text: Option<&str>, key: &str) -> Option<u64> {
    text?.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// The sum of `key=` over every device line of `io.stat`; None when the file is absent.
fn io_sum(dir: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(dir.join("io.stat")).ok()?;
    let prefix = format!("{key}=");
    Some(
        text.split_whitespace()
            .filter_map(|f| f.strip_prefix(&prefix)?.parse::<u64>().ok())
            .sum(),
    )
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Reads the figures of the cgroup v2 directory `dir` (a host path).
pub fn read(dir: &Path) -> Usage {
    let cpu_stat = fs::read_to_string(dir.join("cpu.stat")).ok();
    let cpu_usage_usec = keyed(cpu_stat.as_deref(), "usage_usec");
    let events = fs::read_to_string(dir.join("memory.events")).ok();
    let cpu_read_unix_us = cpu_usage_usec.map(|_| now_us());
    let controllers: Vec<String> = fs::read_to_string(dir.join("cgroup.controllers"))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    Usage {
        memory_current: number(dir, "memory.current"),
        memory_max: number(dir, "memory.max"),
        memory_peak: number(dir, "memory.peak"),
        // cpu.stat exists without the cpu controller (usage only); throttling needs it.
        cpu_usage_usec,
        cpu_read_unix_us,
        cpu_throttled_usec: keyed(cpu_stat.as_deref(), "throttled_usec"),
        tasks_current: number(dir, "pids.current"),
        tasks_max: number(dir, "pids.max"),
        io_read_bytes: io_sum(dir, "rbytes"),
        io_write_bytes: io_sum(dir, "wbytes"),
        oom_kills: keyed(events.as_deref(), "oom_kill"),
        memory_high_events: keyed(events.as_deref(), "high"),
        controllers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_kernels_files_and_leaves_missing_controllers_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (file, text) in [
            ("cgroup.controllers", "cpu io memory pids\n"),
            ("memory.current", "104857600\n"),
            ("memory.max", "max\n"),
            ("memory.peak", "209715200\n"),
            ("cpu.stat", "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\nnr_throttled 3\nthrottled_usec 25000\n"),
            ("pids.current", "21\n"),
            ("pids.max", "64\n"),
            ("io.stat", "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n8:16 rbytes=1 wbytes=2 rios=1 wios=1 dbytes=0 dios=0\n"),
            ("memory.events", "low 0\nhigh 17\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n"),
        ] {
            fs::write(d.join(file), text).unwrap();
        }
        let u = read(d);
        assert_eq!(u.memory_current, Some(100 << 20));
        assert_eq!(u.memory_max, None, "max means no limit");
        assert_eq!(u.memory_peak, Some(200 << 20));
        assert_eq!(
            (u.cpu_usage_usec, u.cpu_throttled_usec),
            (Some(1_500_000), Some(25_000))
        );
        assert!(u
            .cpu_read_unix_us
            .is_some_and(|t| t > 1_700_000_000_000_000));
        assert_eq!((u.tasks_current, u.tasks_max), (Some(21), Some(64)));
        assert_eq!(
            (u.io_read_bytes, u.io_write_bytes),
            (Some(4097), Some(8194))
        );
        assert_eq!((u.oom_kills, u.memory_high_events), (Some(1), Some(17)));
        assert_eq!(u.controllers, ["cpu", "io", "memory", "pids"]);

        let empty = tempfile::tempdir().unwrap();
        let none = read(empty.path());
        assert_eq!(none, Usage::default());
    }
}
