//! The sandbox's first process: pid 1 of the new pid namespace. It finishes the setup that
//! must happen inside the namespaces (hostname, mounts, loopback), forks the service, then
//! stays as a minimal init: it forwards signals to the service, reaps every zombie, and exits
//! with the service's status (128+N for death by signal N), which takes the rest of the
//! namespace down with it.
//!
//! This code never returns into the supervisor's code: every path ends in exec or `_exit`.

use super::channel::{ChildEnd, ServiceEnd, StatusWriter};
use super::error::{check, Call, SetupError};
use super::{exec, mounts, Runtime, FORWARDED};
use crate::plan::{LaunchPlan, Namespace};
use crate::sys;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

pub fn run(plan: &LaunchPlan, mut chan: ChildEnd, status: StatusWriter, mut runtime: Runtime) -> ! {
    // If the supervisor dies, so does the sandbox: init's death kills its pid namespace.
    if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err() || !chan.wait_for_proceed() {
        sys::exit_now(125);
    }
    // The filesystem is built while the supervisor registers the cgroup (D-Bus round trips
    // overlap the mounts); nothing of the service runs before both are done.
    if let Err(e) = setup(plan, runtime.address, runtime.address6) {
        chan.report_failure(e.exit_code, &e.to_string());
        sys::exit_now(e.exit_code);
    }
    match chan.wait_for_placed().map(|f| super::seccomp::decode(&f)) {
        Some(Some(filters)) => runtime.filters = filters,
        Some(None) => {
            chan.report_failure(125, "the seccomp filters arrived damaged");
            sys::exit_now(125)
        }
        None => sys::exit_now(125),
    }
    if plan.has(Namespace::Cgroup) {
        // Only now: the supervisor has placed us in our final cgroup, which becomes the
        // namespace's root.
        if let Err(e) = check(
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP),
            "create the cgroup namespace",
            || "unshare(CLONE_NEWCGROUP)".into(),
        )
        .map_err(|e| e.failed_in(Call::Unshare))
        {
            chan.report_failure(e.exit_code, &e.to_string());
            sys::exit_now(e.exit_code);
        }
    }
    // The supervisor records the sandbox, namespaces and all, before any of the service runs.
    if !chan.report_ready_and_wait_for_start() {
        sys::exit_now(125);
    }
    match sys::fork() {
        Err(errno) => {
            let e = SetupError::sys("start the service", "fork()", errno);
            chan.report_failure(e.exit_code, &e.to_string());
            sys::exit_now(e.exit_code)
        }
        Ok(sys::Forked::Child) => {
            drop(status);
            let e = match reset_signals() {
                Ok(()) => exec::exec_service(plan, runtime, &mut chan),
                Err(e) => e,
            };
            chan.report_failure(e.exit_code, &e.to_string());
            sys::exit_now(e.exit_code)
        }
        Ok(sys::Forked::Parent(service)) => {
            // Only the service's copy may remain, so the supervisor sees EOF at its exec.
            drop((chan, runtime));
            supervise(service, status)
        }
    }
}

fn setup(
    plan: &LaunchPlan,
    address: Option<std::net::Ipv4Addr>,
    address6: Option<std::net::Ipv6Addr>,
) -> Result<(), SetupError> {
    let flags = super::unshare_flags(plan);
    if !flags.is_empty() {
        check(nix::sched::unshare(flags), "create the namespaces", || {
            format!("unshare({flags:?})")
        })
        .map_err(|e| e.failed_in(Call::Unshare))?;
    }
    if plan.memfd_noexec {
        memfd_noexec()?;
    }
    let sources = plan.fs.as_ref().map(mounts::prepare).transpose()?;
    if plan.idmap.as_ref().is_some_and(|m| m.init_becomes_root) {
        let (uid, gid) = (nix::unistd::Uid::from_raw(0), nix::unistd::Gid::from_raw(0));
        check(
            nix::unistd::setresgid(gid, gid, gid),
            "become root in the user namespace",
            || "setresgid(0, 0, 0)".into(),
        )?;
        check(
            nix::unistd::setresuid(uid, uid, uid),
            "become root in the user namespace",
            || "setresuid(0, 0, 0)".into(),
        )?;
        // A new host uid clears the parent-death signal. Had the supervisor died before
        // this line, the start channel's EOF ends init instead.
        check(
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL),
            "follow the supervisor",
            || "prctl(PR_SET_PDEATHSIG, SIGKILL)".into(),
        )?;
    }
    if let Some(h) = &plan.hostname {
        check(
            nix::unistd::sethostname(h.as_str()),
            "set the hostname",
            || format!("sethostname({h:?})"),
        )?;
    }
    if let (Some(fs), Some(sources)) = (&plan.fs, sources) {
        mounts::apply(fs, sources)?;
    }
    if plan.loopback_up {
        check(
            sys::loopback_up(),
            "bring up the loopback interface",
            || "ioctl(SIOCSIFFLAGS, \"lo\", IFF_UP)".into(),
        )?;
    }
    if let (Some(net), Some(address)) = (&plan.network, address) {
        super::network::configure_inside(net, address, address6)?;
    }
    if !plan.has(Namespace::Pid) {
        // Without a pid namespace, orphans of the service are still ours to reap.
        check(
            nix::sys::prctl::set_child_subreaper(true),
            "become a subreaper",
            || "prctl(PR_SET_CHILD_SUBREAPER, 1)".into(),
        )?;
    }
    // The service must not be able to open /proc/1/mem or /proc/1/exe of stockade's init.
    check(nix::sys::prctl::set_dumpable(false), "protect init", || {
        "prctl(PR_SET_DUMPABLE, 0)".into()
    })?;
    for sig in FORWARDED {
        check(
            sys::install_noop_handler(sig),
            "install signal handlers",
            || format!("sigaction({sig})"),
        )?;
    }
    Ok(())
}

/// vm.memfd_noexec = 2 for the sandbox's pid namespace (and any below it): no anonymous
/// memory file can be executed. Written while init is still the host's root (the file is
/// root's, checked before the namespace's CAP_SYS_ADMIN); the value is the writer's pid
/// namespace's (see sysctl.rs).
fn memfd_noexec() -> Result<(), SetupError> {
    super::sysctl::write(
        "make anonymous memory files non-executable",
        "vm/memfd_noexec",
        "2",
    )
}

/// The service starts with default dispositions and nothing blocked: SIGPIPE too (Rust's
/// runtime ignores it in stockade) and whatever stockade's own parent ignored.
pub(super) fn reset_signals() -> Result<(), SetupError> {
    sys::reset_all_signal_dispositions();
    check(
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None),
        "unblock signals",
        || "sigprocmask(SIG_SETMASK, {})".into(),
    )
}

fn supervise(service: Pid, mut status: StatusWriter) -> ! {
    let mut set = SigSet::empty();
    for sig in FORWARDED {
        set.add(sig);
    }
    set.add(Signal::SIGCHLD);
    loop {
        let Ok(sig) = set.wait() else { continue };
        if sig != Signal::SIGCHLD {
            let _ = kill(service, sig);
            continue;
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == service => {
                    status.report(ServiceEnd::Exited(code as u8));
                    sys::exit_now(code as u8)
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == service => {
                    status.report(ServiceEnd::Killed(sig as i32));
                    sys::exit_now(128u8.wrapping_add(sig as u8))
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue, // an orphan reaped
            }
        }
    }
}
