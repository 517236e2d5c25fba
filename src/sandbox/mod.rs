//! Doing it: every side effect of `stockade run`, in plan order. Takes a [`LaunchPlan`] only.
//!
//! Processes: the supervisor (this process, in the host's namespaces) clones init into the
//! new namespaces, writes its id maps, and then only waits: it forwards signals to init and
//! exits with init's status. Init (`init.rs`) builds the filesystem and forks the service,
//! which takes its final steps (`exec.rs`) and execs.

mod channel;
mod error;
mod exec;
mod init;
mod mounts;
mod sys;

pub use error::SetupError;

use crate::plan::{IdMaps, LaunchPlan, Namespace, Volume};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};

/// Signals passed on to the service.
pub const FORWARDED: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// How the service ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Status(u8),
    /// The supervisor saw init die of a signal (only SIGKILL can do that to a pid-ns init).
    Signal(i32),
}

impl Exit {
    /// The shell convention: the status, or 128+N for death by signal N.
    pub fn code(self) -> u8 {
        match self {
            Exit::Status(c) => c,
            Exit::Signal(s) => 128u8.wrapping_add(s as u8),
        }
    }
}

/// Why the sandbox could not start the service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("{message}")]
    Child { exit_code: u8, message: String },
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Setup(e) => e.exit_code,
            Error::Child { exit_code, .. } => *exit_code,
        }
    }
}

fn clone_flags(plan: &LaunchPlan) -> libc::c_int {
    plan.namespaces
        .iter()
        .map(|ns| match ns {
            Namespace::User => libc::CLONE_NEWUSER,
            Namespace::Pid => libc::CLONE_NEWPID,
            Namespace::Mount => libc::CLONE_NEWNS,
            Namespace::Net => libc::CLONE_NEWNET,
            Namespace::Ipc => libc::CLONE_NEWIPC,
            Namespace::Uts => libc::CLONE_NEWUTS,
            Namespace::Cgroup => libc::CLONE_NEWCGROUP,
            Namespace::Time => libc::CLONE_NEWTIME,
        })
        .fold(0, |acc, f| acc | f)
}

/// Runs the plan to the end and returns how the service exited.
pub fn run(plan: &LaunchPlan) -> Result<Exit, Error> {
    for v in &plan.volumes {
        prepare_volume(v)?;
    }
    // Blocked before the clone so no forwarded signal is lost while the sandbox starts; the
    // supervisor collects them with sigwait, init re-handles them, the service unblocks them.
    let mut set = SigSet::empty();
    for sig in FORWARDED {
        set.add(sig);
    }
    set.add(Signal::SIGCHLD);
    error::check(
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None),
        "block signals",
        || "sigprocmask(SIG_BLOCK)".into(),
    )?;

    let (mut sup, child) = error::check(channel::pair(), "create the sync channel", || {
        "socketpair(AF_UNIX, SOCK_SEQPACKET)".into()
    })?;
    let flags = clone_flags(plan);
    let init = match sys::clone_namespaces(flags) {
        Err(errno) => {
            return Err(SetupError::sys(
                "create the sandbox",
                format!("clone({})", describe_flags(plan)),
                errno,
            )
            .into())
        }
        Ok(sys::Forked::Child) => {
            drop(sup);
            init::run(plan, child)
        }
        Ok(sys::Forked::Parent(pid)) => pid,
    };
    drop(child);

    if let Some(maps) = &plan.idmap {
        if let Err(e) = write_idmaps(init, maps) {
            abandon(init);
            return Err(e.into());
        }
    }
    if let Err(e) = sup.tell_proceed() {
        abandon(init);
        return Err(SetupError::other("start the sandbox", format!("init went away: {e}")).into());
    }
    if let Err(f) = sup.wait_for_exec() {
        let _ = waitpid(init, None);
        return Err(Error::Child {
            exit_code: f.exit_code,
            message: f.message,
        });
    }
    tracing::debug!(pid = init.as_raw(), "service started");
    Ok(wait_forwarding(init, &set))
}

/// Kills and reaps init after a failure on our side, so nothing is left running.
fn abandon(init: Pid) {
    let _ = kill(init, Signal::SIGKILL);
    let _ = waitpid(init, None);
}

fn describe_flags(plan: &LaunchPlan) -> String {
    plan.namespaces
        .iter()
        .map(|ns| {
            format!(
                "CLONE_NEW{}",
                format!("{ns:?}").to_uppercase().replace("MOUNT", "NS")
            )
        })
        .collect::<Vec<_>>()
        .join("|")
}

fn write_idmaps(init: Pid, maps: &IdMaps) -> Result<(), SetupError> {
    let proc = format!("/proc/{}", init.as_raw());
    let write = |file: &str, text: &str| {
        let path = format!("{proc}/{file}");
        std::fs::write(&path, text).map_err(|e| {
            let errno = nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
            SetupError::sys(
                "write the id map",
                format!("write({path:?}, {text:?})"),
                errno,
            )
        })
    };
    let lines = |ranges: &[crate::profile::values::IdRange]| {
        ranges
            .iter()
            .map(|r| format!("{} {} {}\n", r.inside, r.outside, r.count))
            .collect::<String>()
    };
    if maps.deny_setgroups {
        write("setgroups", "deny")?;
    }
    write("uid_map", &lines(&maps.uid_map))?;
    write("gid_map", &lines(&maps.gid_map))
}

/// Creates a volume directory on first use, owned by the service's user as the host sees it.
fn prepare_volume(v: &Volume) -> Result<(), SetupError> {
    let step = format!("prepare the volume {}", v.host_path.display());
    if v.host_path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = v.host_path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|e| SetupError::other(&step, e.to_string()))?;
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&v.host_path)
        .map_err(|e| SetupError::other(&step, e.to_string()))?;
    std::fs::set_permissions(&v.host_path, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| SetupError::other(&step, e.to_string()))?;
    error::check(
        nix::unistd::chown(
            &v.host_path,
            Some(nix::unistd::Uid::from_raw(v.uid)),
            Some(nix::unistd::Gid::from_raw(v.gid)),
        ),
        &step,
        || format!("chown({:?}, {}, {})", v.host_path, v.uid, v.gid),
    )
}

/// Waits for init, passing forwarded signals on to it.
fn wait_forwarding(init: Pid, set: &SigSet) -> Exit {
    loop {
        let Ok(sig) = set.wait() else { continue };
        if sig != Signal::SIGCHLD {
            let _ = kill(init, sig);
            continue;
        }
        match waitpid(init, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Exit::Status(code as u8),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Exit::Signal(sig as i32),
            _ => continue,
        }
    }
}
