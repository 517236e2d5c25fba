//! The service's last steps before exec, in the only order that works: limits and umask;
//! landlock (while we still hold CAP_SYS_ADMIN in the namespace); the bounding set (needs
//! CAP_SETPCAP); the user/group switch (keeping capabilities across it); the kept
//! capabilities in every set including ambient; no_new_privs; descriptors closed; exec.
//! `stockade exec` (`join.rs`) takes the same steps, from the same plan, for its command:
//! one code path, so a command run inside never has more than the service.

use super::error::{check, Call, SetupError};
use super::seccomp;
use crate::plan::{Access, Credentials, FinalSteps, LaunchPlan};
use crate::sys;
use caps::{CapSet, Capability, CapsHashSet};
use nix::sys::resource::setrlimit;
use nix::unistd::{Gid, Uid};
use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};

/// Who a command runs as, after the final steps.
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// The user namespace denies setgroups(2): the groups are left as they are.
    pub setgroups_denied: bool,
}

impl From<&Credentials> for Ids {
    fn from(c: &Credentials) -> Self {
        Ids {
            uid: *c.uid,
            gid: *c.gid,
            groups: c.groups.to_vec(),
            setgroups_denied: c.setgroups_denied,
        }
    }
}

/// What runs once the final steps are taken: the service, or a command `stockade exec`
/// runs inside the sandbox.
pub struct Command<'a> {
    pub argv: &'a [String],
    pub env: Vec<(String, String)>,
    pub workdir: &'a str,
    pub ids: Ids,
    /// A terminal made the controlling terminal and stdin, stdout and stderr, once the
    /// command has its own session.
    pub terminal: Option<OwnedFd>,
    /// Look a bare command name up in PATH (the service's command was resolved when
    /// planned; an admin types `redis-cli`).
    pub search_path: bool,
}

/// Runs every final step and execs the service; returns only on failure.
pub fn exec_service(
    plan: &LaunchPlan,
    runtime: super::Runtime,
    chan: &mut super::channel::ChildEnd,
) -> SetupError {
    if let Some((out, err)) = runtime.journal {
        for (fd, target) in [(out, 1), (err, 2)] {
            if let Err(e) = nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&fd), target) {
                return SetupError::sys(
                    "connect the output to journald",
                    format!("dup2(stream, {target})"),
                    e,
                );
            }
        }
    }
    let service = Command {
        argv: &plan.argv,
        env: plan.env.iter().map(|e| e.value.clone()).collect(),
        workdir: &plan.workdir,
        ids: Ids::from(&plan.creds),
        terminal: None,
        search_path: false,
    };
    // Under --explain the service's filter notifies the supervisor, over this channel.
    let listener_to = plan.finals.syscalls.filter.notify.then_some(chan);
    exec_with(&plan.finals, service, &runtime.filters, listener_to)
}

/// Takes the plan's final steps `f` and execs `cmd`; returns only on failure.
/// `listener_to`: the filters notify (`--explain`), and the supervisor takes the listener
/// over this channel.
pub fn exec_with(
    f: &FinalSteps,
    cmd: Command,
    filters: &[seccomp::Program],
    listener_to: Option<&mut super::channel::ChildEnd>,
) -> SetupError {
    match prepare(f, &cmd, filters, listener_to) {
        Ok(()) => exec(&cmd),
        Err(e) => e,
    }
}

fn prepare(
    f: &FinalSteps,
    cmd: &Command,
    filters: &[seccomp::Program],
    listener_to: Option<&mut super::channel::ChildEnd>,
) -> Result<(), SetupError> {
    // The process whose death must end this one: compared again once the parent-death
    // signal is re-armed below.
    let parent = nix::unistd::getppid();
    // Keys of the caller's session (the admin's login) must not be reachable; done before
    // the filter, which denies keyctl.
    check(
        sys::new_session_keyring(),
        "start a new session keyring",
        || "keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL)".into(),
    )?;
    // A new session: the service cannot read or inject into the caller's terminal.
    check(nix::unistd::setsid(), "start a new session", || {
        "setsid()".into()
    })?;
    if let Some(t) = &cmd.terminal {
        attach_terminal(t)?;
    }
    check(
        nix::unistd::chdir(cmd.workdir),
        "enter the working directory",
        || format!("chdir({:?})", cmd.workdir),
    )?;
    // The kernel reports a directory outside our root as unreachable, and getcwd fails.
    check(
        nix::unistd::getcwd(),
        "check the working directory is inside the sandbox",
        || "getcwd()".into(),
    )?;
    rlimits(f)?;
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(*f.umask));
    if f.landlock.is_some() || f.scope_abstract_sockets {
        landlock(f)?;
    }
    drop_bounding(f)?;
    switch_user(&cmd.ids)?;
    raise_kept(f)?;
    if *f.no_new_privs {
        check(
            nix::sys::prctl::set_no_new_privs(),
            "set no_new_privs",
            || "prctl(PR_SET_NO_NEW_PRIVS, 1)".into(),
        )?;
    }
    // Changing credentials cleared the parent-death signal; without a pid namespace this is
    // what kills the service when the sandbox's init dies (and a command of `stockade
    // exec` when the stockade that waits for it dies).
    check(
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL),
        "set the parent-death signal",
        || "prctl(PR_SET_PDEATHSIG, SIGKILL)".into(),
    )?;
    // A parent that died between the credential change and the line above sent no signal:
    // this process was reparented, and must not outlive the sandbox.
    if nix::unistd::getppid() != parent {
        return Err(SetupError::other(
            "follow the sandbox's init",
            format!("its parent {parent} ended before the command started"),
        ));
    }
    check(
        sys::cloexec_from_3(),
        "close stockade's descriptors",
        || "close_range(3, ~0, CLOSE_RANGE_CLOEXEC)".into(),
    )?;
    install_filters(f, filters, listener_to)
}

/// The terminal becomes the session's controlling terminal and the command's stdin,
/// stdout and stderr (the session is new, so no other process has it as its own).
fn attach_terminal(t: &OwnedFd) -> Result<(), SetupError> {
    check(
        sys::set_controlling_tty(t.as_fd()),
        "take the terminal as the controlling terminal",
        || "ioctl(TIOCSCTTY, 0)".into(),
    )?;
    for target in 0..=2 {
        check(
            nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(t), target),
            "connect the terminal",
            || format!("dup2(terminal, {target})"),
        )?;
    }
    Ok(())
}

/// The seccomp filters, last before exec so none of the steps above is filtered. Without
/// no_new_privs the kernel wants CAP_SYS_ADMIN for this: raise_kept left it effective when
/// the process had it, and it is dropped right after (the policy allows that capset).
fn install_filters(
    f: &FinalSteps,
    filters: &[seccomp::Program],
    mut listener_to: Option<&mut super::channel::ChildEnd>,
) -> Result<(), SetupError> {
    let admin = caps::has_cap(None, CapSet::Effective, Capability::CAP_SYS_ADMIN).unwrap_or(false);
    if !admin && !*f.no_new_privs {
        // Nothing to drop and no other way in: the same rule systemd applies to
        // SystemCallFilter= for services without CAP_SYS_ADMIN.
        check(
            nix::sys::prctl::set_no_new_privs(),
            "set no_new_privs for the seccomp filter",
            || "prctl(PR_SET_NO_NEW_PRIVS, 1)".into(),
        )?;
    }
    for (i, prog) in filters.iter().enumerate() {
        // Under --explain the policy (the last filter) notifies the supervisor, which must
        // hold its listener before anything denied can be called: the exec itself waits.
        if let Some(chan) = listener_to.as_mut().filter(|_| i + 1 == filters.len()) {
            let listener = check(
                sys::install_seccomp_listener(&prog.0),
                "install the seccomp filter",
                || {
                    format!("seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, filter {i} of {} instructions)", prog.0.len())
                },
            )?;
            let fd = std::os::fd::AsRawFd::as_raw_fd(&listener) as u32;
            if !chan.hand_over_listener(fd) {
                return Err(SetupError::other(
                    "hand the seccomp listener to the supervisor",
                    "the supervisor did not take it",
                ));
            }
            // Closed by the exec (close-on-exec): close(2) may be a denied call by now.
            std::mem::forget(listener);
            continue;
        }
        check(
            sys::install_seccomp(&prog.0),
            "install the seccomp filter",
            || {
                format!(
                    "seccomp(SECCOMP_SET_MODE_FILTER, filter {i} of {} instructions)",
                    prog.0.len()
                )
            },
        )?;
    }
    if admin && !f.capabilities.contains(&Capability::CAP_SYS_ADMIN) {
        let keep = kept(f);
        for which in [CapSet::Effective, CapSet::Permitted] {
            caps::set(None, which, &keep).map_err(|e| {
                SetupError::other("drop CAP_SYS_ADMIN after the seccomp filter", e.to_string())
            })?;
        }
    }
    Ok(())
}

fn rlimits(f: &FinalSteps) -> Result<(), SetupError> {
    for r in &f.rlimits {
        let (res, limit) = (r.resource, r.limit);
        let v = match limit {
            crate::plan::Limit::Value(v) => v,
            crate::plan::Limit::Infinity => libc::RLIM_INFINITY,
        };
        check(setrlimit(res, v, v), "set a resource limit", || {
            format!("setrlimit({res:?}, {v}, {v})")
        })?;
    }
    Ok(())
}

/// The profile's landlock rules, and the abstract-socket scope when the service shares the
/// host's network namespace. The plan asked for the scope only where the kernel has it.
fn landlock(f: &FinalSteps) -> Result<(), SetupError> {
    use landlock::{
        Access as _, AccessFs, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
        Scope, ABI,
    };
    let abi = ABI::V6;
    let step = "apply landlock";
    let err = |e: &dyn std::fmt::Display| SetupError::other(step, e.to_string());
    let mut ruleset = Ruleset::default();
    if f.landlock.is_some() {
        ruleset = ruleset
            .handle_access(AccessFs::from_all(abi))
            .map_err(|e| err(&e))?;
    }
    if f.scope_abstract_sockets {
        ruleset = ruleset
            .scope(Scope::AbstractUnixSocket)
            .map_err(|e| err(&e))?;
    }
    let mut ruleset = ruleset
        .create()
        .map_err(|e| err(&e))?
        .no_new_privs(*f.no_new_privs);
    // Under --explain the kernel logs the service's denials (after its exec, which it does
    // not by default for a launcher's domain) so the supervisor can report them. Asked for
    // only where the kernel has the flag (ABI 7): elsewhere it would weaken the status.
    if f.syscalls.explain.is_some() && crate::sys::landlock_abi().is_some_and(|v| v >= 7) {
        ruleset = ruleset.log_new_exec(true).map_err(|e| err(&e))?;
    }
    let read = AccessFs::ReadFile | AccessFs::ReadDir;
    for rule in f.landlock.iter().flatten() {
        let (path, access) = (&rule.path, &rule.access);
        let fd = PathFd::new(path).map_err(|e| {
            SetupError::other(
                step,
                format!("cannot open landlock path `{path}` inside the sandbox: {e}"),
            )
        })?;
        let mut wanted = match access {
            Access::Read => read,
            Access::Exec => read | AccessFs::Execute,
            Access::Write => AccessFs::from_write(abi) | read,
        };
        // Directory-only rights are invalid on a file; keep the ones that apply.
        if !std::path::Path::new(path).is_dir() {
            wanted &= AccessFs::from_file(abi);
        }
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, wanted))
            .map_err(|e| err(&e))?;
    }
    let status = ruleset.restrict_self().map_err(|e| err(&e))?;
    match status.ruleset {
        landlock::RulesetStatus::FullyEnforced => Ok(()),
        landlock::RulesetStatus::NotEnforced => Err(SetupError::other(
            step,
            "the kernel does not enforce landlock (is it in the lsm= boot parameter?)",
        )),
        // Fail closed: an access right the kernel cannot restrict would be silently allowed.
        landlock::RulesetStatus::PartiallyEnforced if !f.landlock_best_effort => Err(SetupError::other(
            step,
            "this kernel enforces only part of the landlock access rights stockade asks for; set `landlock_best_effort = true` in [security] to run anyway",
        )),
        landlock::RulesetStatus::PartiallyEnforced => Ok(()),
    }
}

fn kept(f: &FinalSteps) -> CapsHashSet {
    f.capabilities.iter().copied().collect()
}

fn drop_bounding(f: &FinalSteps) -> Result<(), SetupError> {
    let keep = kept(f);
    for cap in caps::all() {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap).map_err(|e| {
                SetupError::other(format!("drop {cap} from the bounding set"), e.to_string())
            })?;
        }
    }
    Ok(())
}

fn switch_user(c: &Ids) -> Result<(), SetupError> {
    // Keep the permitted set across setuid so the kept capabilities survive a non-root user.
    check(
        nix::sys::prctl::set_keepcaps(true),
        "keep capabilities across the user switch",
        || "prctl(PR_SET_KEEPCAPS, 1)".into(),
    )?;
    if !c.setgroups_denied {
        let groups: Vec<Gid> = c.groups.iter().map(|&g| Gid::from_raw(g)).collect();
        check(
            nix::unistd::setgroups(&groups),
            "set supplementary groups",
            || format!("setgroups({:?})", c.groups),
        )?;
    }
    let gid = Gid::from_raw(c.gid);
    check(
        nix::unistd::setresgid(gid, gid, gid),
        "switch group",
        || format!("setresgid({0}, {0}, {0})", c.gid),
    )?;
    let uid = Uid::from_raw(c.uid);
    check(nix::unistd::setresuid(uid, uid, uid), "switch user", || {
        format!("setresuid({0}, {0}, {0})", c.uid)
    })?;
    Ok(())
}

fn raise_kept(f: &FinalSteps) -> Result<(), SetupError> {
    let keep = kept(f);
    let set = |which: CapSet| {
        caps::set(None, which, &keep).map_err(|e| {
            SetupError::other(
                format!("set the {which:?} capabilities to {keep:?}"),
                e.to_string(),
            )
        })
    };
    // Inheritable first (needs the full effective set), then effective and permitted down,
    // keeping CAP_SYS_ADMIN a little longer if we hold it and the profile turned
    // no_new_privs off: it installs the seccomp filter without forcing no_new_privs. With
    // no_new_privs the filter needs no capability, so nothing is left to drop after it (and
    // the filter may deny capset, as the plan promises).
    set(CapSet::Inheritable)?;
    let admin = caps::has_cap(None, CapSet::Permitted, Capability::CAP_SYS_ADMIN).unwrap_or(false);
    let mut until_filter = keep.clone();
    if admin && !*f.no_new_privs {
        until_filter.insert(Capability::CAP_SYS_ADMIN);
    }
    for which in [CapSet::Effective, CapSet::Permitted] {
        caps::set(None, which, &until_filter).map_err(|e| {
            SetupError::other(
                format!("set the {which:?} capabilities to {keep:?}"),
                e.to_string(),
            )
        })?;
    }
    caps::clear(None, CapSet::Ambient)
        .map_err(|e| SetupError::other("clear ambient capabilities", e.to_string()))?;
    for cap in &keep {
        // Ambient is what carries capabilities through exec for a non-root user.
        caps::raise(None, CapSet::Ambient, *cap).map_err(|e| {
            SetupError::other(format!("raise {cap} in the ambient set"), e.to_string())
        })?;
    }
    Ok(())
}

/// The directories a bare command name is looked up in when the command's environment
/// has no PATH (the list systemd gives services).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn exec(cmd: &Command) -> SetupError {
    let cstr = |s: &str| CString::new(s).unwrap_or_default();
    let argv: Vec<CString> = cmd.argv.iter().map(|a| cstr(a)).collect();
    let env: Vec<CString> = cmd
        .env
        .iter()
        .map(|(k, v)| cstr(&format!("{k}={v}")))
        .collect();
    let Some(name) = cmd.argv.first() else {
        return SetupError::other("start the command", "empty command");
    };
    let step = if cmd.search_path {
        "start the command"
    } else {
        "start the service"
    };
    // A name with a slash is a path; a bare name is looked for in PATH, as a shell does:
    // a candidate that is missing is skipped, one that exists but cannot run is reported.
    let candidates: Vec<String> = if !cmd.search_path || name.contains('/') {
        vec![name.clone()]
    } else {
        let path = cmd
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map_or(DEFAULT_PATH, |(_, v)| v.as_str());
        path.split(':')
            .map(|d| if d.is_empty() { "." } else { d })
            .map(|d| format!("{}/{name}", d.trim_end_matches('/')))
            .collect()
    };
    use nix::errno::Errno;
    // The first candidate that exists but failed, unless a later one fails harder than
    // with EACCES (execvp's rule).
    let mut failed: Option<(Errno, &str)> = None;
    for prog in &candidates {
        let errno = match nix::unistd::execve(&cstr(prog), &argv, &env) {
            Err(e) => e,
            Ok(never) => match never {},
        };
        match errno {
            Errno::ENOENT | Errno::ENOTDIR if candidates.len() > 1 => continue,
            Errno::EACCES if candidates.len() > 1 => {
                failed.get_or_insert((errno, prog));
            }
            _ => {
                failed = Some((errno, prog));
                break;
            }
        }
    }
    let (mut errno, prog) = failed.unwrap_or((Errno::ENOENT, name));
    // Denied in a directory of PATH the command's user cannot even look into (root's
    // home, say): as far as it can tell, the command is not there.
    if errno == Errno::EACCES
        && candidates.len() > 1
        && nix::unistd::access(prog, nix::unistd::AccessFlags::F_OK).is_err()
    {
        errno = Errno::ENOENT;
    }
    let code = if errno == Errno::ENOENT { 127 } else { 126 };
    let call = if candidates.len() > 1 && errno == Errno::ENOENT {
        format!("execve({name:?}) in each directory of PATH")
    } else {
        format!("execve({prog:?})")
    };
    SetupError::sys(step, call, errno)
        .failed_in(Call::Execve)
        .with_code(code)
}
