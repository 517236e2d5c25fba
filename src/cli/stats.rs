//! `stockade stats [NAME...] [--no-stream] [--json]`: what running sandboxes use, from their
//! cgroup v2 files, refreshed every second (CPU as a percentage of one core over the last
//! second; the first sample covers the time since start).

use super::ps::{size, table};
use super::{instance_by_name, instances};
use crate::error::Error;
use crate::ops::status::{self, Status};
use std::collections::BTreeMap;

fn pick(names: &[String]) -> Result<Vec<Status>, Error> {
    let running = instances()?;
    if names.is_empty() {
        return Ok(running.iter().map(status::of).collect());
    }
    names
        .iter()
        .map(|n| instance_by_name(&running, n).map(status::of))
        .collect()
}

fn opt(v: Option<u64>, f: fn(u64) -> String) -> String {
    v.map_or("-".into(), f)
}

pub fn stats(names: &[String], no_stream: bool, json: bool) -> Result<u8, Error> {
    // CPU time and when it was read (µs since the epoch), of the previous sample, per instance.
    let mut last: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    loop {
        let list = pick(names)?;
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&list).unwrap_or_else(|e| format!("\"{e}\""))
            );
        } else {
            if !no_stream {
                // Clear the screen and go home, as `docker stats` redraws.
                print!("\x1b[2J\x1b[H");
            }
            let mut notes = Vec::new();
            let rows: Vec<[String; 10]> = list
                .iter()
                .map(|s| {
                    let Some(u) = &s.usage else {
                        notes.push(format!(
                            "{}: no cgroup of its own, nothing is accounted",
                            s.name
                        ));
                        return [
                            s.name.clone(),
                            "-".into(),
                            "-".into(),
                            "-".into(),
                            "-".into(),
                            "-".into(),
                            "-".into(),
                            "-".into(),
                            "-".into(),
                            s.state.as_str().into(),
                        ];
                    };
                    let missing = status::missing_controllers(u);
                    if !missing.is_empty() {
                        notes.push(format!(
                            "{}: its cgroup has no {} controller: those figures are not accounted",
                            s.name,
                            missing.join(", ")
                        ));
                    }
                    let (prev_cpu, prev_us) = last
                        .get(&s.name)
                        .copied()
                        .unwrap_or((0, s.started_unix_ms.saturating_mul(1000)));
                    // Over the time between the two readings of cpu.stat, each stamped
                    // when it was read.
                    let sample = u.cpu_usage_usec.zip(u.cpu_read_unix_us);
                    let cpu = sample.map_or("-".into(), |(us, at)| {
                        let wall_us = at.saturating_sub(prev_us).max(1);
                        format!(
                            "{:.1}%",
                            us.saturating_sub(prev_cpu) as f64 * 100.0 / wall_us as f64
                        )
                    });
                    if let Some(s2) = sample {
                        last.insert(s.name.clone(), s2);
                    }
                    let mem = match (u.memory_bytes, u.memory_limit_bytes) {
                        (Some(c), Some(m)) if m > 0 => format!(
                            "{} / {} ({:.1}%)",
                            size(c),
                            size(m),
                            c as f64 * 100.0 / m as f64
                        ),
                        (Some(c), _) => format!("{} / -", size(c)),
                        _ => "-".into(),
                    };
                    [
                        s.name.clone(),
                        mem,
                        opt(u.memory_peak_bytes, size),
                        cpu,
                        opt(u.cpu_throttled_usec, |t| format!("{:.2}s", t as f64 / 1e6)),
                        match (u.tasks, u.tasks_limit) {
                            (Some(t), Some(m)) => format!("{t} / {m}"),
                            (Some(t), None) => format!("{t} / -"),
                            _ => "-".into(),
                        },
                        format!(
                            "{} / {}",
                            opt(u.io_read_bytes, size),
                            opt(u.io_write_bytes, size)
                        ),
                        opt(u.oom_kills, |n| n.to_string()),
                        opt(u.memory_high_events, |n| n.to_string()),
                        s.state.as_str().into(),
                    ]
                })
                .collect();
            table(
                [
                    "NAME",
                    "MEM / LIMIT",
                    "PEAK",
                    "CPU",
                    "THROTTLED",
                    "TASKS",
                    "IO R / W",
                    "OOM",
                    "HIGH",
                    "STATE",
                ],
                &rows,
            );
            for n in notes {
                println!("{n}");
            }
        }
        if no_stream {
            return Ok(0);
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
