//! `stockade run [--name NAME] PROFILE [-- ARGS]`: plans the profile, takes the instance
//! name, runs the sandbox in the foreground under a log span naming the profile, instance
//! and unit, records it while it runs, logs its start (where to find it) and how the service
//! ended (a stop someone asked for at info; the OOM killer named as the cause when it was,
//! and every other end but status 0 as a warning), and ends the way the service did.

use crate::error::Error;
use crate::ops::records;
use crate::profile::SearchPath;
use crate::{host, plan, sandbox, sys, systemd};
use std::path::Path;

pub fn run(
    arg: &str,
    name: Option<String>,
    explain: bool,
    args: Vec<String>,
    search: &SearchPath,
) -> Result<u8, Error> {
    let (mut plan, notes) = super::load_and_plan(arg, args, search)?;
    if explain && plan.finals.syscalls.explain.is_none() {
        let from = plan::Provenance::invocation("--explain");
        plan::explain(&mut plan.finals.syscalls, from).map_err(|why| Error::Invalid {
            lines: vec![format!("{arg}: --explain: {why}")],
        })?;
    }
    if plan.finals.syscalls.explain.is_some() {
        tracing::debug!("--explain reports denied system calls, and landlock denials where the kernel audits them");
    }
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
        instance: &instance,
        cgroup: None,
        prepared: None,
        network: None,
    };
    let mut manager = systemd::Systemd::new(std::env::var("NOTIFY_SOCKET").ok());
    let outcome =
        sandbox::run(&plan, &mut manager, &mut recording).map_err(|source| Error::Sandbox {
            name: plan.name.clone(),
            source,
        })?;
    // The sandbox is gone: so is its record (its OOM kills added to the name's tally), and
    // the name is free again.
    if let Some(claim) = claim {
        claim.end(outcome.oom_kills.unwrap_or(0));
    }
    let (level, message) = outcome_message(&plan, outcome);
    match level {
        tracing::Level::INFO => tracing::info!("{message}"),
        _ => tracing::warn!("{message}"),
    }
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
    instance: &'a str,
    /// The sandbox's cgroup, once [`Recording::record`] has been told it.
    cgroup: Option<std::path::PathBuf>,
    /// What [`Recording::prepare`] gathered while init built the filesystem.
    prepared: Option<Prepared>,
    /// A bridge sandbox's network, once its address is leased.
    network: Option<records::Attached>,
}

/// The part of a record known as soon as init exists: its processes and the rendered plan.
struct Prepared {
    supervisor: Result<host::ProcId, String>,
    init: Result<host::ProcId, String>,
    plan: Result<Box<serde_json::value::RawValue>, String>,
}

fn proc_id(host: &host::Host, pid: u32) -> Result<host::ProcId, String> {
    host.proc_id(pid)
        .ok_or_else(|| format!("/proc/{pid}/stat: no such process"))
}

impl sandbox::Recorder for Recording<'_> {
    fn leased(&mut self, address: std::net::Ipv4Addr, address6: Option<std::net::Ipv6Addr>) {
        self.network = self.plan.network.as_ref().map(|n| records::Attached {
            network: n.network.value.clone(),
            bridge: n.def.bridge.clone(),
            veth: n.veth.clone(),
            address,
            address6,
        });
    }

    fn prepare(&mut self, init: u32) {
        if self.claim.is_none() {
            return;
        }
        let host = host::Host::current();
        self.prepared = Some(Prepared {
            supervisor: proc_id(&host, std::process::id()),
            init: proc_id(&host, init),
            plan: records::render_plan(self.plan),
        });
    }

    fn record(&mut self, init: u32, cgroup: Option<&Path>) -> Result<(), String> {
        self.cgroup = cgroup.map(Path::to_owned);
        let Some(claim) = self.claim else {
            return Ok(());
        };
        if self.prepared.is_none() {
            self.prepare(init);
        }
        let Some(prepared) = self.prepared.take() else {
            return Ok(());
        };
        // Only these wait until now: init's last namespace is made just before Ready.
        let host = host::Host::current();
        let namespaces = host.namespace_inodes(init);
        let started_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let plan = prepared.plan?;
        let record = records::Written {
            format: records::FORMAT,
            stockade_version: env!("CARGO_PKG_VERSION"),
            instance: claim.name(),
            profile: &self.plan.name,
            supervisor: prepared.supervisor?,
            init: prepared.init?,
            namespaces: &namespaces,
            cgroup,
            unit: self.unit.as_deref(),
            started_unix_ms,
            network: self.network.as_ref(),
            plan: &plan,
        };
        claim.write_rendered(&record).map_err(|e| e.to_string())?;
        tracing::debug!(
            "recorded instance {} in {}",
            claim.name(),
            plan::INSTANCES_DIR
        );
        Ok(())
    }

    /// Marks the record stopping for `ps` and `exec`. A failure stops nothing: the stop
    /// goes on, and readers see the sandbox running until it is gone.
    fn stopping(&mut self) {
        if let Some(claim) = self.claim {
            match claim.mark_stopping() {
                Ok(()) => tracing::debug!("instance {} is stopping", claim.name()),
                Err(e) => tracing::warn!("cannot mark instance {} stopping: {e}", claim.name()),
            }
        }
    }

    /// The start, in the journal at info: what `stockade ps` would show, and where the
    /// record is, for an admin who reads the journal first.
    fn started(&mut self, init: u32) {
        let service_pid = crate::ops::status::service_pid(init);
        let record = self.claim.map(|c| c.path().display().to_string());
        let cgroup = self.cgroup.as_ref().map(|c| c.display().to_string());
        tracing::info!(
            STOCKADE_SERVICE_PID = service_pid,
            STOCKADE_RECORD = record.as_deref(),
            "{}",
            start_message(
                self.instance,
                &self.plan.name,
                service_pid,
                self.unit.as_deref(),
                cgroup.as_deref(),
                record.as_deref(),
            )
        );
    }
}

/// "redis started (profile redis): supervisor pid 10, service pid 12, unit u, cgroup c,
/// record r", with `-` for what is not known (no record without root).
fn start_message(
    instance: &str,
    profile: &str,
    service_pid: Option<u32>,
    unit: Option<&str>,
    cgroup: Option<&str>,
    record: Option<&str>,
) -> String {
    format!(
        "{instance} started (profile {profile}): supervisor pid {}, service pid {}, unit {}, cgroup {}, record {}",
        std::process::id(),
        service_pid.map_or("-".into(), |p| p.to_string()),
        unit.unwrap_or("-"),
        cgroup.unwrap_or("-"),
        record.unwrap_or("-"),
    )
}

/// The end of the service, in words, and how loud: info for status 0 and for an end after a
/// SIGTERM or SIGINT the supervisor forwarded (a stop someone asked for), unless the OOM
/// killer was the cause or the service had to be killed; a warning for every other end.
fn outcome_message(plan: &plan::LaunchPlan, o: sandbox::Outcome) -> (tracing::Level, String) {
    use tracing::Level;
    let name = &plan.name;
    let signame = |sig: i32| {
        nix::sys::signal::Signal::try_from(sig)
            .map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_owned())
    };
    let oom = o.oom_kills.filter(|&n| n > 0);
    let stop = o.stop_requested.map(|s| s.as_str());
    match (o.service, oom, stop) {
        // The OOM killer sends SIGKILL; an end by another signal was not its doing, even
        // when the cgroup counts a kill (of a command `stockade exec` ran inside, say).
        (sandbox::ServiceEnd::Killed(sig @ libc::SIGKILL), Some(n), _) => {
            let why = match &plan.memory_max {
                Some(limit) => format!("memory limit {limit} reached"),
                None => "out of memory".into(),
            };
            (
                Level::WARN,
                format!(
                    "{name} was killed by {}: {why} (oom_kill {n})",
                    signame(sig)
                ),
            )
        }
        (sandbox::ServiceEnd::Killed(libc::SIGKILL), None, Some(stop)) => (
            Level::WARN,
            format!("{name} was killed by SIGKILL: it did not stop after {stop}"),
        ),
        (sandbox::ServiceEnd::Killed(sig), _, Some(stop)) => (
            Level::INFO,
            format!(
                "{name} stopped on request ({stop}): killed by {}",
                signame(sig)
            ),
        ),
        (sandbox::ServiceEnd::Exited(c), None, Some(stop)) => (
            Level::INFO,
            format!("{name} stopped on request ({stop}): exited with status {c}"),
        ),
        (sandbox::ServiceEnd::Exited(0), _, None) => {
            (Level::INFO, format!("{name} exited with status 0"))
        }
        (sandbox::ServiceEnd::Exited(c), _, _) => {
            (Level::WARN, format!("{name} exited with status {c}"))
        }
        (sandbox::ServiceEnd::Killed(sig), _, None) => (
            Level::WARN,
            format!("{name} was killed by {}", signame(sig)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;
    use sandbox::{Outcome, ServiceEnd};
    use tracing::Level;

    fn end(service: ServiceEnd, oom_kills: Option<u64>, stop: Option<Signal>) -> (Level, String) {
        let mut plan = plan::tests::sample();
        plan.name = "p".into();
        outcome_message(
            &plan,
            Outcome {
                service,
                oom_kills,
                stop_requested: stop,
            },
        )
    }

    #[test]
    fn a_stop_someone_asked_for_is_info_and_failures_are_warnings() {
        let term = Some(Signal::SIGTERM);
        let cases = [
            (
                end(ServiceEnd::Exited(0), Some(0), None),
                Level::INFO,
                "p exited with status 0",
            ),
            (
                end(ServiceEnd::Exited(0), None, term),
                Level::INFO,
                "p stopped on request (SIGTERM): exited with status 0",
            ),
            (
                end(ServiceEnd::Exited(143), None, Some(Signal::SIGINT)),
                Level::INFO,
                "p stopped on request (SIGINT): exited with status 143",
            ),
            (
                end(ServiceEnd::Killed(libc::SIGTERM), Some(0), term),
                Level::INFO,
                "p stopped on request (SIGTERM): killed by SIGTERM",
            ),
            // A kill the cgroup counted was not the service's end when it died of SIGTERM
            // (the OOM killer sends SIGKILL): an exec'd command was its victim.
            (
                end(ServiceEnd::Killed(libc::SIGTERM), Some(1), term),
                Level::INFO,
                "p stopped on request (SIGTERM): killed by SIGTERM",
            ),
            (
                end(ServiceEnd::Killed(libc::SIGHUP), Some(1), None),
                Level::WARN,
                "p was killed by SIGHUP",
            ),
            (
                end(ServiceEnd::Killed(libc::SIGKILL), None, term),
                Level::WARN,
                "p was killed by SIGKILL: it did not stop after SIGTERM",
            ),
            // The OOM killer is the cause even when a stop was asked for meanwhile.
            (
                end(ServiceEnd::Killed(libc::SIGKILL), Some(2), term),
                Level::WARN,
                "p was killed by SIGKILL: out of memory (oom_kill 2)",
            ),
            (
                end(ServiceEnd::Killed(libc::SIGKILL), Some(1), None),
                Level::WARN,
                "p was killed by SIGKILL: out of memory (oom_kill 1)",
            ),
            (
                end(ServiceEnd::Exited(3), None, None),
                Level::WARN,
                "p exited with status 3",
            ),
            (
                end(ServiceEnd::Killed(libc::SIGSEGV), Some(0), None),
                Level::WARN,
                "p was killed by SIGSEGV",
            ),
        ];
        for ((level, message), want_level, want) in cases {
            assert_eq!((level, message.as_str()), (want_level, want));
        }
    }

    #[test]
    fn the_start_names_what_is_known_and_dashes_the_rest() {
        let m = start_message(
            "r2",
            "redis",
            Some(12),
            Some("stockade@r2.service"),
            Some("/sys/fs/cgroup/x"),
            Some("/run/stockade/instances/r2.json"),
        );
        assert!(
            m.starts_with("r2 started (profile redis): supervisor pid ")
                && m.ends_with(", service pid 12, unit stockade@r2.service, cgroup /sys/fs/cgroup/x, record /run/stockade/instances/r2.json"),
            "{m}"
        );
        let m = start_message("r", "r", None, None, None, None);
        assert!(
            m.ends_with("service pid -, unit -, cgroup -, record -"),
            "{m}"
        );
    }
}
