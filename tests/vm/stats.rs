//! `stockade stats` and `stockade metrics` checked against what the kernel enforces and
//! counts: a process that touches 100 MiB over its idle baseline, a busy loop held to half a
//! CPU, and a fork of 20 sleepers. Each figure is read from stockade and from the cgroup's
//! own file, and printed for the closing note.

use crate::common::{text, BIN};
use crate::{usage_usec, vm, SERIAL};
use std::fs;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

const MIB: f64 = (1 << 20) as f64;

/// The lines a child prints, as they come, read by a thread of their own.
fn lines_of(child: &mut Child) -> Receiver<(Instant, String)> {
    let (tx, rx) = channel();
    let out = child.stdout.take().expect("stdout is piped");
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            if tx.send((Instant::now(), l)).is_err() {
                break;
            }
        }
    });
    rx
}

/// Sandbox `name`'s entry in `stockade stats --no-stream --json NAME`.
pub fn status_of(name: &str) -> serde_json::Value {
    let o = Command::new(BIN)
        .args(["stats", "--no-stream", "--json", name])
        .output()
        .unwrap();
    assert!(o.status.success(), "stats: {}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v[0].clone()
}

/// `stockade run PROFILE` from a shell (a scope), stopped with `stockade stop` when dropped.
pub struct Sandbox {
    child: Child,
    pub name: String,
    lines: Receiver<(Instant, String)>,
}

impl Sandbox {
    pub fn start(profile: &str) -> Sandbox {
        let mut child = Command::new(BIN)
            .args(["run", profile])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = lines_of(&mut child);
        Sandbox {
            child,
            name: profile.to_owned(),
            lines,
        }
    }

    /// Waits for the service to print `line`.
    pub fn expect(&self, line: &str, limit: Duration) {
        let end = Instant::now() + limit;
        loop {
            match self
                .lines
                .recv_timeout(end.saturating_duration_since(Instant::now()))
            {
                Ok((_, l)) if l == line => return,
                Ok(_) => continue,
                Err(e) => panic!("{}: no line {line:?} within {limit:?}: {e}", self.name),
            }
        }
    }

    /// Waits until `stats` knows the sandbox (its record is written).
    pub fn wait_running(&self, limit: Duration) {
        let known = crate::common::wait_until(limit, || {
            Command::new(BIN)
                .args(["stats", "--no-stream", "--json", &self.name])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        assert!(known, "{} did not start within {limit:?}", self.name);
    }

    pub fn status(&self) -> serde_json::Value {
        status_of(&self.name)
    }

    pub fn cgroup(&self) -> String {
        self.status()["cgroup"]
            .as_str()
            .unwrap_or_else(|| panic!("{} has no cgroup", self.name))
            .to_owned()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let stopped = Command::new(BIN)
            .args(["stop", "--time", "5", &self.name])
            .output()
            .is_ok_and(|o| o.status.success());
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A figure of `u` (a status's `usage`) that must be known in the VM.
fn figure(u: &serde_json::Value, key: &str) -> u64 {
    u[key]
        .as_u64()
        .unwrap_or_else(|| panic!("usage.{key} unknown: {u}"))
}

/// The value of `metric` for sandbox `name` in `stockade metrics`'s output.
pub fn metric(metric: &str, name: &str) -> f64 {
    let o = Command::new(BIN).arg("metrics").output().unwrap();
    assert!(o.status.success(), "metrics: {}", text(&o.stderr));
    let t = text(&o.stdout);
    t.lines()
        .find(|l| {
            l.strip_prefix(metric)
                .is_some_and(|r| r.starts_with('{') && r.contains(&format!("sandbox=\"{name}\"")))
        })
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no {metric} for {name} in:\n{t}"))
}

fn number(path: &str) -> u64 {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn stats_and_metrics_show_100_mib_touched_over_the_idle_baseline() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    vm();
    let s = Sandbox::start("touch100");
    s.expect("idle", Duration::from_secs(60));
    // The same sandbox, idle: the interpreter, init and what the kernel charges for them.
    std::thread::sleep(Duration::from_millis(500));
    let idle = s.status();
    let baseline = figure(&idle["usage"], "memory_bytes");
    let cg = s.cgroup();
    let pid = idle["service_pid"].as_i64().expect("service pid") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    s.expect("touched", Duration::from_secs(60));
    let st = s.status();
    let current = number(&format!("{cg}/memory.current"));
    let u = &st["usage"];
    let (mem, peak, limit) = (
        figure(u, "memory_bytes"),
        figure(u, "memory_peak_bytes"),
        figure(u, "memory_limit_bytes"),
    );
    let exported = metric("stockade_memory_usage_bytes", &s.name);
    let exported_peak = metric("stockade_memory_peak_bytes", &s.name);
    let expected = baseline as f64 + 100.0 * MIB;
    let err = |v: f64| (v - expected) / (100.0 * MIB) * 100.0;
    println!(
        "memory: idle baseline {:.1} MiB; after touching 100 MiB: stats {:.1} MiB ({:+.2}% of 100 MiB off baseline + 100 MiB), \
metrics {:.1} MiB ({:+.2}%), memory.current {:.1} MiB, peak {:.1} MiB (metrics {:.1} MiB), limit {:.0} MiB",
        baseline as f64 / MIB,
        mem as f64 / MIB,
        err(mem as f64),
        exported / MIB,
        err(exported),
        current as f64 / MIB,
        peak as f64 / MIB,
        exported_peak / MIB,
        limit as f64 / MIB,
    );
    // Within 5 % of the 100 MiB touched (stricter than 5 % of baseline + 100 MiB).
    assert!(err(mem as f64).abs() <= 5.0, "stats: {mem} vs {expected}");
    assert!(
        err(exported).abs() <= 5.0,
        "metrics: {exported} vs {expected}"
    );
    // The process sleeps now: stockade and the kernel's file agree to within 1 %.
    assert!(
        (mem as f64 - current as f64).abs() <= current as f64 / 100.0,
        "stats {mem} vs memory.current {current}"
    );
    // memory.peak (Linux 5.19) is read: it has seen at least what is in use now.
    assert!(
        peak >= mem && exported_peak >= exported,
        "peak {peak} < {mem}"
    );
    assert_eq!(limit, 512 << 20);
}

/// The CPU column of `stockade stats NAME` (streaming): one figure a frame, each frame a
/// header line after the clear-screen sequence and then the sandbox's row.
fn cpu_frames(name: &str, frames: usize, limit: Duration) -> Vec<f64> {
    let mut stats = Command::new(BIN)
        .args(["stats", name])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(&mut stats);
    let end = Instant::now() + limit;
    let mut header = String::new();
    let mut cpu = Vec::new();
    while cpu.len() < frames {
        let Ok((_, l)) = lines.recv_timeout(end.saturating_duration_since(Instant::now())) else {
            break;
        };
        if let Some(h) = l.strip_prefix("\x1b[2J\x1b[H") {
            header = h.to_owned();
        } else if l.starts_with(&format!("{name} ")) {
            let at = header.find("CPU").expect("a CPU column");
            let cell = l.get(at..).and_then(|c| c.split_whitespace().next());
            let v = cell
                .and_then(|c| c.strip_suffix('%'))
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| panic!("no CPU figure under {header:?} in {l:?}"));
            cpu.push(v);
        }
    }
    let _ = stats.kill();
    let _ = stats.wait();
    assert_eq!(cpu.len(), frames, "stats printed {cpu:?} within {limit:?}");
    cpu
}

#[test]
fn stats_shows_a_busy_loop_under_half_a_cpu_at_45_to_55_percent() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    vm();
    let s = Sandbox::start("spin");
    s.wait_running(Duration::from_secs(60));
    let cg = s.cgroup();
    // Past the interpreter's start, into the loop.
    std::thread::sleep(Duration::from_secs(1));
    let (u0, t0) = (usage_usec(&cg), Instant::now());
    // The first frame covers the time since start; the next three one second each.
    let frames = cpu_frames(&s.name, 4, Duration::from_secs(20));
    let kernel = (usage_usec(&cg) - u0) as f64 / t0.elapsed().as_micros() as f64 * 100.0;
    let last3 = &frames[1..];
    let mean = last3.iter().sum::<f64>() / last3.len() as f64;
    println!(
        "cpu: busy loop under cpu_quota = 50%: stats frames {frames:?} (first since start), \
mean of the three 1-s frames {mean:.1}%; cpu.stat over the same {:.1} s: {kernel:.1}%",
        t0.elapsed().as_secs_f64()
    );
    assert!((45.0..=55.0).contains(&mean), "stats over 3 s: {mean}%");
}

#[test]
fn stats_and_metrics_count_a_fork_of_20_sleepers() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    vm();
    let s = Sandbox::start("sleepers");
    s.expect("forked 20", Duration::from_secs(60));
    let st = s.status();
    let cg = s.cgroup();
    let current = number(&format!("{cg}/pids.current"));
    let u = &st["usage"];
    let (tasks, limit) = (figure(u, "tasks"), figure(u, "tasks_limit"));
    let exported = metric("stockade_tasks", &s.name);
    let exported_limit = metric("stockade_tasks_limit", &s.name);
    println!(
        "tasks: 20 sleepers forked: stats {tasks} / {limit}, metrics {exported} / {exported_limit}, pids.current {current}"
    );
    assert!((21..=23).contains(&tasks), "stats: {tasks} tasks");
    assert_eq!(exported, tasks as f64);
    assert_eq!(tasks, current);
    assert_eq!((limit, exported_limit), (64, 64.0));
}
