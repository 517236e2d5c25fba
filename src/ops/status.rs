//! What a running sandbox is doing now: its record joined with its cgroup's figures and the
//! service's host pid. `ps` and `stats` print it, `metrics` exports it; nothing here changes anything.

use super::records::Instance;
use crate::host::stats::{self, Usage};
use serde::Serialize;

/// Where a running sandbox is in its life, as `ps` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Running,
    /// A stop was asked for, or the service ended: it is going, and cannot be entered.
    Stopping,
}

impl State {
    pub fn of(i: &Instance) -> State {
        if i.stopping {
            State::Stopping
        } else {
            State::Running
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Stopping => "stopping",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub name: String,
    pub state: State,
    pub profile: String,
    /// The stockade that started it (the record's `stockade_version`).
    pub version: String,
    /// The service's pid as the host sees it (init's first child); None while it starts.
    pub service_pid: Option<u32>,
    pub supervisor_pid: u32,
    pub unit: Option<String>,
    pub started_unix_ms: u64,
    pub cgroup: Option<std::path::PathBuf>,
    /// A bridge sandbox's network, bridge, veth and leased address(es); None otherwise.
    pub network: Option<super::records::Attached>,
    /// None without a cgroup of its own (mode off, or no cgroup v2 placement).
    pub usage: Option<UsageJson>,
}

/// The cgroup's figures, as they are serialised (None: not accounted here).
#[derive(Debug, Clone, Serialize)]
pub struct UsageJson {
    pub memory_bytes: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    pub memory_peak_bytes: Option<u64>,
    pub cpu_usage_usec: Option<u64>,
    /// When `cpu_usage_usec` was read (microseconds since the Unix epoch).
    pub cpu_read_unix_us: Option<u64>,
    pub cpu_throttled_usec: Option<u64>,
    pub tasks: Option<u64>,
    pub tasks_limit: Option<u64>,
    pub io_read_bytes: Option<u64>,
    pub io_write_bytes: Option<u64>,
    pub oom_kills: Option<u64>,
    pub memory_high_events: Option<u64>,
    pub controllers: Vec<String>,
}

impl From<Usage> for UsageJson {
    fn from(u: Usage) -> Self {
        UsageJson {
            memory_bytes: u.memory_current,
            memory_limit_bytes: u.memory_max,
            memory_peak_bytes: u.memory_peak,
            cpu_usage_usec: u.cpu_usage_usec,
            cpu_read_unix_us: u.cpu_read_unix_us,
            cpu_throttled_usec: u.cpu_throttled_usec,
            tasks: u.tasks_current,
            tasks_limit: u.tasks_max,
            io_read_bytes: u.io_read_bytes,
            io_write_bytes: u.io_write_bytes,
            oom_kills: u.oom_kills,
            memory_high_events: u.memory_high_events,
            controllers: u.controllers,
        }
    }
}

/// Init's first child: the service (init forks nothing else).
pub fn service_pid(init: u32) -> Option<u32> {
    let children = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

pub fn of(i: &Instance) -> Status {
    let r = &i.record;
    Status {
        name: i.name.clone(),
        state: State::of(i),
        profile: r.profile.clone(),
        version: r.stockade_version.clone(),
        service_pid: service_pid(r.init.pid),
        supervisor_pid: r.supervisor.pid,
        unit: r.unit.clone(),
        started_unix_ms: r.started_unix_ms,
        cgroup: r.cgroup.clone(),
        network: r.network.clone(),
        usage: r.cgroup.as_deref().map(|d| {
            let mut u: UsageJson = stats::read(d).into();
            // Counted over every run of the name since boot, as a counter must be.
            u.oom_kills = u.oom_kills.map(|n| n + i.earlier_oom_kills);
            u
        }),
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Controllers the figures need that this cgroup lacks, for a "not accounted" note.
pub fn missing_controllers(u: &UsageJson) -> Vec<&'static str> {
    ["memory", "cpu", "pids", "io"]
        .into_iter()
        .filter(|c| !u.controllers.iter().any(|h| h == c))
        .collect()
}
