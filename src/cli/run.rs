//! `stockade run PROFILE [-- ARGS]`: plans the profile, runs the sandbox in the foreground
//! under a log span naming the profile and unit, logs how the service ended (with the OOM
//! killer as the cause when it was), and ends the way the service did.

use crate::error::Error;
use crate::profile::SearchPath;
use crate::{host, plan, sandbox, sys, systemd};

pub fn run(arg: &str, args: Vec<String>, search: &SearchPath) -> Result<u8, Error> {
    let (plan, notes) = super::load_and_plan(arg, args, search)?;
    tracing::debug!(?plan, "launch plan");
    for n in &notes {
        tracing::debug!("note: {n}");
    }
    // Every record of this run carries these fields: `journalctl STOCKADE_PROFILE=redis`.
    let unit = match &plan.cgroup {
        plan::CgroupPlan::Scope(s) => s.unit.clone(),
        // Under a unit, our own cgroup is named after it.
        _ => host::Host::current().own_service_unit().unwrap_or_default(),
    };
    let span = tracing::info_span!(
        "stockade",
        STOCKADE_PROFILE = %plan.name,
        STOCKADE_UNIT = %unit,
        STOCKADE_PID = std::process::id()
    );
    let _entered = span.enter();
    let mut manager = systemd::Systemd::new(std::env::var("NOTIFY_SOCKET").ok());
    let outcome = sandbox::run(&plan, &mut manager).map_err(|source| Error::Sandbox {
        name: plan.name.clone(),
        source,
    })?;
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
