//! `stockade ps [--json]`: one line per running sandbox, from the records and the cgroup
//! files. Stale records are removed by the listing itself.

use super::instances;
use crate::error::Error;
use crate::ops::status::{self, Status};

/// "1.2G", "340M", "12K": short sizes for a table.
pub fn size(b: u64) -> String {
    for (shift, unit) in [(30, "G"), (20, "M"), (10, "K")] {
        if b >= 1 << shift {
            let v = b as f64 / (1u64 << shift) as f64;
            return if v < 10.0 {
                format!("{v:.1}{unit}")
            } else {
                format!("{v:.0}{unit}")
            };
        }
    }
    format!("{b}B")
}

/// "3s", "5m", "2h", "4d".
fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn of_limit(cur: Option<u64>, max: Option<u64>, fmt: fn(u64) -> String) -> String {
    match (cur, max) {
        (Some(c), Some(m)) => format!("{} / {}", fmt(c), fmt(m)),
        (Some(c), None) => format!("{} / -", fmt(c)),
        _ => "-".into(),
    }
}

/// A bridge sandbox's leased address(es) on its network ("10.89.0.2 (default)"); "-"
/// for the other network modes.
fn address(s: &Status) -> String {
    s.network.as_ref().map_or("-".into(), |n| {
        let v6 = n.address6.map_or(String::new(), |a| format!(" {a}"));
        format!("{}{v6} ({})", n.address, n.network)
    })
}

fn row(s: &Status, now: u64) -> [String; 10] {
    let elapsed = now.saturating_sub(s.started_unix_ms);
    let u = s.usage.as_ref();
    let cpu = u
        .and_then(|u| u.cpu_usage_usec)
        .filter(|_| elapsed > 0)
        .map_or("-".into(), |us| {
            format!("{:.1}%", us as f64 / 10.0 / elapsed as f64)
        });
    [
        s.name.clone(),
        s.profile.clone(),
        s.service_pid.map_or("-".into(), |p| p.to_string()),
        s.unit.clone().unwrap_or_else(|| "-".into()),
        age(elapsed),
        of_limit(
            u.and_then(|u| u.memory_bytes),
            u.and_then(|u| u.memory_limit_bytes),
            size,
        ),
        cpu,
        of_limit(
            u.and_then(|u| u.tasks),
            u.and_then(|u| u.tasks_limit),
            |n| n.to_string(),
        ),
        address(s),
        s.state.as_str().into(),
    ]
}

/// Prints rows under a header, each column as wide as its widest cell.
pub fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) {
    let mut width = header.map(str::len);
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

pub fn ps(json: bool) -> Result<u8, Error> {
    let list: Vec<Status> = instances()?.iter().map(status::of).collect();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_else(|e| format!("\"{e}\""))
        );
        return Ok(0);
    }
    let now = status::now_ms();
    let rows: Vec<[String; 10]> = list.iter().map(|s| row(s, now)).collect();
    table(
        [
            "NAME", "PROFILE", "PID", "UNIT", "STARTED", "MEM", "CPU", "TASKS", "ADDRESS", "STATE",
        ],
        &rows,
    );
    Ok(0)
}
