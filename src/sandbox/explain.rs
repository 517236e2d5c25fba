//! `run --explain`, the supervisor's half: it holds the service's seccomp listener (copied
//! with pidfd_getfd before the service execs, so the service never holds it), answers every
//! notified call with the policy's errno, and reports each (call, executable) once with the
//! rule that denies it (from the plan, by `inspect::syscall`) and its file:line.
//!
//! It only ever denies: a notification is answered with an error, never allowed or run on
//! the service's behalf, so nothing the service changes after the check can matter.

use crate::plan::{LaunchPlan, SysAction};
use libseccomp::{ScmpNotifReq, ScmpNotifResp, ScmpNotifRespFlags};
use std::collections::HashSet;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

pub struct Explainer<'a> {
    listener: OwnedFd,
    plan: &'a LaunchPlan,
    errno: i32,
    seen: HashSet<(String, String)>,
}

impl<'a> Explainer<'a> {
    /// None when the plan does not explain (no --explain, or nothing it would deny).
    pub fn new(plan: &'a LaunchPlan, listener: OwnedFd) -> Option<Explainer<'a>> {
        let SysAction::Errno(errno) = plan.finals.syscalls.action.value else {
            return None;
        };
        Some(Explainer {
            listener,
            plan,
            errno,
            seen: HashSet::new(),
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// Answers one notification. A failed receive (the caller died meanwhile, a signal)
    /// leaves the listener watched: dropping it would make every later denied call fail
    /// with ENOSYS instead of the profile's errno. The caller lets it go at POLLHUP, when
    /// every filtered process has ended.
    pub fn answer(&mut self) {
        let fd = self.listener.as_raw_fd();
        let Ok(req) = ScmpNotifReq::receive(fd) else {
            return;
        };
        // Read while the caller waits in its call: its executable cannot change meanwhile.
        let exe = std::fs::read_link(format!("/proc/{}/exe", req.pid))
            .map_or_else(|_| "?".to_owned(), |p| p.display().to_string());
        let resp = ScmpNotifResp::new_error(req.id, -self.errno, ScmpNotifRespFlags::empty());
        let _ = resp.respond(fd);
        let name = req
            .data
            .syscall
            .get_name_by_arch(req.data.arch)
            .unwrap_or_else(|_| format!("syscall {}", req.data.syscall.as_raw_syscall()));
        if self.seen.insert((name.clone(), exe.clone())) {
            let a = crate::inspect::syscall(self.plan, &name);
            let errno = format!("{:?}", nix::errno::Errno::from_raw(self.errno));
            tracing::warn!(
                stockade_denied_syscall = %name,
                stockade_rule = %a.from,
                stockade_errno = %errno,
                stockade_exe = %exe,
                "denied {name} to {exe} with {errno}: {} ({})",
                a.because,
                a.from,
            );
        }
    }
}
