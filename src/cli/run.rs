//! `stockade run [--name NAME] PROFILE [-- ARGS]`: plans the profile, takes the instance
//! name, runs the sandbox in the foreground under a log span naming the profile, instance
//! and unit, records it while it runs, logs how the service ended (with the OOM killer as
//! the cause when it was), and ends the way the service did.

use crate::error::Error;
use crate::ops::records;
use crate::profile::SearchPath;
use crate::{host, plan, sandbox, sys, systemd};
use std::path::Path;

pub fn run(
    arg: &str,
    name: Option<String>,
    args: Vec<String>,
    search: &SearchPath,
) -> Result<u8, Error> {
    let (plan, notes) = super::load_and_plan(arg, args, search)?;
    tracing::debug!(?plan, "launch plan");
    for n in &notes {
        tracing::debug!("note: {n}");
    }
    let instance = match name {
        Some(n) => n,
        None => match records::invalid_name(&plan.name) {
            None => plan.name.clone(),
            Some(why) => {
                return Err(Error::InstanceName {
                    profile: plan.name.clone(),
                    why,
                })
            }
        },
    };
    // Every record of this run carries these fields: `journalctl STOCKADE_PROFILE=redis`.
    let unit = match &plan.cgroup {
        plan::CgroupPlan::Scope(s) => s.unit.clone(),
        // Under a unit, our own cgroup is named after it.
        _ => host::Host::current().own_service_unit().unwrap_or_default(),
    };
    let span = tracing::info_span!(
        "stockade",
        STOCKADE_PROFILE = %plan.name,
        STOCKADE_INSTANCE = %instance,
        STOCKADE_UNIT = %unit,
        STOCKADE_PID = std::process::id()
    );
    let _entered = span.enter();
    // Taken before anything is set up, and held until the sandbox is gone: a second start
    // of a running instance changes nothing. Records are root's (/run/stockade is), so a
    // run without root keeps none.
    let claim = if nix::unistd::geteuid().is_root() {
        // Taking the name removes a stale record of it (its supervisor was killed).
        let dir = Path::new(plan::INSTANCES_DIR);
        Some(records::take(dir, &instance)?)
    } else {
        tracing::debug!("not running as root: no record of instance {instance} is kept");
        None
    };
    let mut recording = Recording {
        claim: claim.as_ref(),
        plan: &plan,
        unit: (!unit.is_empty()).then_some(unit),
    };
    let mut manager = systemd::Systemd::new(std::env::var("NOTIFY_SOCKET").ok());
    let outcome =
        sandbox::run(&plan, &mut manager, &mut recording).map_err(|source| Error::Sandbox {
            name: plan.name.clone(),
            source,
        })?;
    // The sandbox is gone: so is its record, and the name is free again.
    drop(claim);
    log_outcome(&plan, outcome);
    // Releases the scope reference before this process ends.
    drop(manager);
    if let sandbox::ServiceEnd::Killed(sig) = outcome.service {
        if let Ok(sig) = nix::sys::signal::Signal::try_from(sig) {
            // The caller sees what it would for the service itself: death by that signal.
            sys::die_by_signal(sig);
        }
    }
    Ok(outcome.code())
}

/// Writes the record when the sandbox asks: the plan with what is known once it runs.
struct Recording<'a> {
    claim: Option<&'a records::Claim>,
    plan: &'a plan::LaunchPlan,
    unit: Option<String>,
}

impl sandbox::Recorder for Recording<'_> {
    fn record(&mut self, init: u32, cgroup: Option<&Path>) -> Result<(), String> {
        let Some(claim) = self.claim else {
            return Ok(());
        };
        let host = host::Host::current();
        let proc_id = |pid: u32| {
            host.proc_id(pid)
                .ok_or_else(|| format!("/proc/{pid}/stat: no such process"))
        };
        let started_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let record = records::Record {
            format: records::FORMAT,
            stockade_version: env!("CARGO_PKG_VERSION").to_owned(),
            instance: claim.name().to_owned(),
            profile: self.plan.name.clone(),
            supervisor: proc_id(std::process::id())?,
            init: proc_id(init)?,
            namespaces: host.namespace_inodes(init),
            cgroup: cgroup.map(Path::to_owned),
            unit: self.unit.clone(),
            started_unix_ms,
            plan: self.plan.clone(),
        };
        claim.write(&record).map_err(|e| e.to_string())?;
        tracing::debug!(
            "recorded instance {} in {}",
            claim.name(),
            plan::INSTANCES_DIR
        );
        Ok(())
    }
}

/// The end of the service, in words, with the cause when the kernel's OOM killer was it.
fn log_outcome(plan: &plan::LaunchPlan, o: sandbox::Outcome) {
    let name = &plan.name;
    match o.service {
        sandbox::ServiceEnd::Exited(0) => tracing::info!("{name} exited with status 0"),
        sandbox::ServiceEnd::Exited(c) => tracing::warn!("{name} exited with status {c}"),
        sandbox::ServiceEnd::Killed(sig) => {
            let signame = nix::sys::signal::Signal::try_from(sig)
                .map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_owned());
            match (o.oom_kills, &plan.memory_max) {
                (Some(n), Some(limit)) if n > 0 => tracing::warn!(
                    "{name} was killed by {signame}: memory limit {limit} reached (oom_kill {n})"
                ),
                (Some(n), None) if n > 0 => {
                    tracing::warn!("{name} was killed by {signame}: out of memory (oom_kill {n})")
                }
                _ => tracing::warn!("{name} was killed by {signame}"),
            }
        }
    }
}
