//! Stopping a running sandbox by name: SIGTERM to its supervisor, which forwards it to the
//! service as a unit's stop would; after the grace time SIGKILL to its init, which ends
//! the whole pid namespace and lets the supervisor clean up (scope, cgroup, record). Signals
//! go to processes whose start time still matches the record, never to a reused pid. A
//! sandbox already marked stopping (by an earlier stop, `systemctl stop`, or its service's
//! end) gets no second SIGTERM, which a service may take as "hurry" or count against its
//! shutdown: the stop only waits, and still kills it when the grace time runs out.

use super::records::{self, Instance};
use crate::host::Host;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot signal {what} (pid {pid}): {errno}")]
    Signal {
        what: &'static str,
        pid: u32,
        errno: nix::errno::Errno,
    },
    #[error("instance `{name}` was still running {secs} s after SIGKILL")]
    Stuck { name: String, secs: u64 },
}

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The service ended after SIGTERM.
    Terminated,
    /// The grace time ran out and the sandbox was killed.
    Killed,
}

fn signal(
    host: &Host,
    p: crate::host::ProcId,
    what: &'static str,
    sig: nix::sys::signal::Signal,
) -> Result<(), Error> {
    // A process that is gone, or whose pid now names another process, is not signalled.
    if !host.is_running(p) {
        return Ok(());
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.pid as i32), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(errno) => Err(Error::Signal {
            what,
            pid: p.pid,
            errno,
        }),
    }
}

fn gone(dir: &Path, host: &Host, name: &str) -> bool {
    !records::list(dir, host).iter().any(|i| i.name == name)
}

fn wait_gone(dir: &Path, host: &Host, name: &str, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    loop {
        if gone(dir, host, name) {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops `i` and waits until its record is gone.
pub fn stop(dir: &Path, host: &Host, i: &Instance, grace: Duration) -> Result<Ended, Error> {
    use nix::sys::signal::Signal;
    if !i.stopping {
        signal(host, i.record.supervisor, "the supervisor", Signal::SIGTERM)?;
    }
    if wait_gone(dir, host, &i.name, grace) {
        return Ok(Ended::Terminated);
    }
    signal(host, i.record.init, "the sandbox's init", Signal::SIGKILL)?;
    let secs = 10;
    if wait_gone(dir, host, &i.name, Duration::from_secs(secs)) {
        Ok(Ended::Killed)
    } else {
        Err(Error::Stuck {
            name: i.name.clone(),
            secs,
        })
    }
}
