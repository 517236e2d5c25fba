//! `stockade stop [--time SECONDS] NAME...`: stops running sandboxes by name, waits until
//! each is gone, and says when a unit owns one (systemd may start it again).

use super::{instance_by_name, instances};
use crate::error::Error;
use crate::host::Host;
use crate::ops::stop::{self, Ended};
use std::time::Duration;

pub fn stop(names: &[String], time: u64) -> Result<u8, Error> {
    let running = instances()?;
    let mut failed = false;
    for name in names {
        let i = instance_by_name(&running, name)?;
        let dir = std::path::Path::new(crate::plan::INSTANCES_DIR);
        if i.stopping {
            eprintln!(
                "stockade: {name} is already stopping; waiting for it (SIGKILL after {time} s)"
            );
        }
        match stop::stop(dir, &Host::current(), i, Duration::from_secs(time)) {
            Ok(ended) => {
                let how = match ended {
                    Ended::Terminated => "stopped",
                    Ended::Killed => "killed (it did not stop within the grace time)",
                };
                println!("{name}: {how}");
                // A sandbox started by a unit: its unit may restart it.
                if let Some(unit) = i.record.unit.as_deref().filter(|u| u.ends_with(".service")) {
                    eprintln!("stockade: {name} belonged to {unit}, which may start it again (Restart=); use `systemctl stop {unit}` to stop the unit");
                }
            }
            Err(e) => {
                eprintln!("stockade: {name}: {e}");
                failed = true;
            }
        }
    }
    Ok(u8::from(failed))
}
