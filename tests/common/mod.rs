//! Helpers shared by the test binaries of every tier (included with `#[path]`, since each
//! tier is its own binary run by its own cargo runner).
#![allow(dead_code)] // each binary uses a different subset

use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_stockade");
pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs a shell command line.
pub fn sh(cmd: &str) -> Output {
    Command::new("sh").arg("-c").arg(cmd).output().unwrap()
}

/// The trimmed stdout of a shell command line.
pub fn out(cmd: &str) -> String {
    text(&sh(cmd).stdout).trim().to_owned()
}

/// Polls `f` until it holds or `limit` passes; the last answer counts.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// A systemd unit's property (`systemctl show -P`).
pub fn show(unit: &str, prop: &str) -> String {
    out(&format!("systemctl show -P {prop} {unit}"))
}
