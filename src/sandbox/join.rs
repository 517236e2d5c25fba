//! `stockade exec`: runs a command inside a running sandbox with no more privilege than its
//! service has. Takes the running sandbox's plan (from its record) and the identity of its
//! init; never the profile, never D-Bus.
//!
//! Processes: this stockade (in the host's namespaces) verifies init, opens a pidfd on it,
//! compiles the plan's seccomp filters and forks the joiner. The joiner makes itself
//! undumpable, closes every descriptor it does not need, enters the sandbox's cgroup, joins
//! every namespace with one setns(2) on the pidfd, looks the user up in the sandbox's own
//! files, opens the terminal from the sandbox's own devpts, and forks the command with
//! CLONE_PARENT (a member of the sandbox's pid namespace, and this stockade's child), then
//! exits. The command takes the service's final steps (`exec.rs`, the same code) and execs.
//! This stockade relays the terminal or just waits, forwarding signals, and returns the
//! command's status. Nothing of stockade's own binary is ever exec'd inside.

use super::channel::{self, ChildFailure, JoinerEnd};
use super::error::{check, SetupError};
use super::{exec, pty, seccomp, Error, ServiceEnd, FORWARDED};
use crate::host::{Host, ProcId};
use crate::plan::{LaunchPlan, Namespace};
use crate::sys;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

/// The running sandbox, as its record describes it.
pub struct Target<'a> {
    pub name: &'a str,
    pub plan: &'a LaunchPlan,
    pub init: ProcId,
    /// Init's namespace inodes by key, as recorded.
    pub namespaces: &'a BTreeMap<String, u64>,
    /// The sandbox's cgroup directory on the host.
    pub cgroup: Option<&'a Path>,
}

/// What to run, as whom, with or without a terminal.
pub struct Request<'a> {
    pub argv: &'a [String],
    /// A user of the sandbox's /etc/passwd (name or uid) instead of the service's.
    pub user: Option<&'a str>,
    pub tty: bool,
    /// The caller's TERM, given to a command that has a terminal.
    pub term: Option<String>,
}

/// Resources the joiner takes into the sandbox: descriptors opened on the host side.
struct Carried {
    pidfd: OwnedFd,
    /// `/proc/INIT/ns/time_for_children`: a time namespace is joined through init's
    /// children (init itself stays in the host's), which a pidfd of init does not name.
    time_ns: Option<OwnedFd>,
    /// The sandbox's `cgroup.procs`, opened on the host.
    cgroup_procs: Option<OwnedFd>,
    filters: Vec<seccomp::Program>,
    /// The caller's window size, given to the new terminal before the command starts.
    window: Option<libc::winsize>,
}

/// Runs `req` inside `t` and returns its exit status (128+N for signal N).
pub fn exec(t: &Target, req: &Request) -> Result<u8, Error> {
    let host = Host::current();
    let pidfd = open_init(t, &host)?;
    let time_ns = if t.plan.has(Namespace::Time) {
        let path = format!("/proc/{}/ns/time_for_children", t.init.pid);
        let fd = std::fs::File::open(&path)
            .map_err(|e| SetupError::other("open the time namespace", format!("{path}: {e}")))?;
        // Still init (the pidfd names it, and a signal 0 through it reaches it): the file
        // was opened while the pid was init's.
        check(
            sys::pidfd_alive(pidfd.as_fd()),
            "check the sandbox's init is alive",
            || "pidfd_send_signal(pidfd, 0)".into(),
        )?;
        Some(OwnedFd::from(fd))
    } else {
        None
    };
    let cgroup_procs = match t
        .cgroup
        .map(Path::to_owned)
        .or_else(|| host.cgroup_dir_of(t.init.pid))
    {
        Some(dir) => {
            let path = dir.join("cgroup.procs");
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| {
                    SetupError::other(
                        "open the sandbox's cgroup",
                        format!("{}: {e}", path.display()),
                    )
                })?;
            Some(OwnedFd::from(f))
        }
        None => None,
    };
    let encoded = seccomp::start(&t.plan.finals.syscalls).finish()?;
    let filters = seccomp::decode(&encoded).ok_or_else(|| {
        SetupError::other("compile the seccomp filter", "the filters came out damaged")
    })?;
    let stdin = std::io::stdin();
    let window = if req.tty {
        if !nix::unistd::isatty(stdin.as_raw_fd()).unwrap_or(false) {
            return Err(SetupError::other(
                "give the command a terminal",
                "--tty needs a terminal on stdin (run it from an interactive shell, or drop --tty)",
            )
            .into());
        }
        sys::window_size(stdin.as_fd()).ok()
    } else {
        None
    };
    let carried = Carried {
        pidfd,
        time_ns,
        cgroup_procs,
        filters,
        window,
    };

    // Blocked before the fork so no signal meant for the command is lost; the command
    // unblocks them, this stockade reads them from a signalfd.
    let mut set = SigSet::empty();
    for sig in FORWARDED {
        set.add(sig);
    }
    set.add(Signal::SIGCHLD);
    check(
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None),
        "block signals",
        || "sigprocmask(SIG_BLOCK)".into(),
    )?;
    let (mut waiter, joiner) = check(channel::join_pair(), "create the sync channel", || {
        "socketpair(AF_UNIX, SOCK_SEQPACKET)".into()
    })?;
    let joiner_pid = match check(sys::fork(), "start the joining process", || "fork()".into())? {
        sys::Forked::Child => {
            drop(waiter);
            join(t, req, carried, joiner)
        }
        sys::Forked::Parent(pid) => pid,
    };
    drop((joiner, carried));
    let joined = waiter.wait_for_exec();
    // The joiner exits once the command is forked (or when it fails).
    let joiner_end = waitpid(joiner_pid, None);
    let command = joined.pid.map(|p| Pid::from_raw(p as i32));
    if let Some(ChildFailure { exit_code, message }) = joined.failure {
        if let Some(c) = command {
            let _ = waitpid(c, None);
        }
        return Err(Error::Child { exit_code, message });
    }
    let Some(command) = command else {
        return Err(SetupError::other(
            "join the sandbox",
            format!("the joining process ended without a word ({joiner_end:?})"),
        )
        .into());
    };
    let sfd = check(
        nix::sys::signalfd::SignalFd::with_flags(
            &set,
            nix::sys::signalfd::SfdFlags::SFD_CLOEXEC | nix::sys::signalfd::SfdFlags::SFD_NONBLOCK,
        ),
        "watch signals",
        || "signalfd()".into(),
    )?;
    let end = match joined.terminal {
        Some(master) => pty::relay(master, command, &sfd)?,
        None => wait(command, &sfd)?,
    };
    Ok(match end {
        ServiceEnd::Exited(c) => c,
        ServiceEnd::Killed(s) => 128u8.wrapping_add(s as u8),
    })
}

/// A pidfd of the recorded init: its start time checked before (a clear message when the
/// sandbox is gone) and after the open (the pid was not reused in between: the descriptor
/// names the recorded process), and its namespaces the recorded ones.
fn open_init(t: &Target, host: &Host) -> Result<OwnedFd, SetupError> {
    let gone = || {
        SetupError::other(
            "find the sandbox's init",
            format!(
                "process {} is no longer the init the record of `{}` names (the sandbox is stopping)",
                t.init.pid, t.name
            ),
        )
    };
    if !host.is_running(t.init) {
        return Err(gone());
    }
    let pidfd = check(
        sys::pidfd_open(t.init.pid),
        "open the sandbox's init",
        || format!("pidfd_open({}, 0)", t.init.pid),
    )?;
    if !host.is_running(t.init) {
        return Err(gone());
    }
    let now = host.namespace_inodes(t.init.pid);
    for (key, inode) in t.namespaces {
        if now.get(key) != Some(inode) {
            return Err(SetupError::other(
                "check the sandbox's namespaces",
                format!(
                    "init's {key} namespace is {:?}, the record says {inode}",
                    now.get(key)
                ),
            ));
        }
    }
    Ok(pidfd)
}

/// The namespaces joined through init's pidfd, in one setns(2): all the sandbox has but
/// time (see [`Carried::time_ns`]).
fn join_flags(plan: &LaunchPlan) -> nix::sched::CloneFlags {
    let bits = plan
        .enabled_namespaces()
        .filter(|&ns| ns != Namespace::Time)
        .fold(0, |acc, ns| acc | ns.row().flag);
    nix::sched::CloneFlags::from_bits_retain(bits)
}

fn flag_names(plan: &LaunchPlan) -> String {
    plan.enabled_namespaces()
        .filter(|&ns| ns != Namespace::Time)
        .map(|ns| ns.row().flag_name)
        .collect::<Vec<_>>()
        .join("|")
}

/// The joining process: never returns; reports a failure over `chan` and exits.
fn join(t: &Target, req: &Request, carried: Carried, mut chan: JoinerEnd) -> ! {
    match join_and_fork(t, req, carried, &mut chan) {
        Ok(()) => sys::exit_now(0),
        Err(e) => {
            chan.report_failure(e.exit_code, &e.to_string());
            sys::exit_now(e.exit_code)
        }
    }
}

fn join_and_fork(
    t: &Target,
    req: &Request,
    carried: Carried,
    chan: &mut JoinerEnd,
) -> Result<(), SetupError> {
    let plan = t.plan;
    // First of all: once in the sandbox's namespaces, its processes could otherwise
    // ptrace this one, which still holds host descriptors and memory.
    check(
        nix::sys::prctl::set_dumpable(false),
        "make the joining process undumpable",
        || "prctl(PR_SET_DUMPABLE, 0)".into(),
    )?;
    // Nothing of the host's goes in but what the join needs (stdin, stdout and stderr are
    // the caller's and pass through).
    let keep: Vec<i32> = [
        Some(carried.pidfd.as_raw_fd()),
        carried.time_ns.as_ref().map(AsRawFd::as_raw_fd),
        carried.cgroup_procs.as_ref().map(AsRawFd::as_raw_fd),
        Some(chan.fd().as_raw_fd()),
    ]
    .into_iter()
    .flatten()
    .collect();
    check(
        sys::close_all_but(&keep),
        "close stockade's descriptors",
        || format!("close_range(3.., keeping {keep:?})"),
    )?;
    // The cgroup before the namespaces: from inside the sandbox's cgroup namespace the
    // host's cgroup this process comes from is out of sight, and a move from there is
    // refused (nsdelegate). Forked from here, the command is accounted from its start.
    if let Some(procs) = &carried.cgroup_procs {
        check(
            nix::unistd::write(procs, b"0"),
            "join the sandbox's cgroup",
            || {
                format!(
                    "write(\"{}/cgroup.procs\", \"0\")",
                    t.cgroup.map_or("?".into(), |c| c.display().to_string())
                )
            },
        )?;
    }
    let flags = join_flags(plan);
    if !flags.is_empty() {
        // One call for every namespace: the kernel joins them in a valid order (the user
        // namespace first), all through the descriptor that names init alone.
        check(
            nix::sched::setns(carried.pidfd.as_fd(), flags),
            "join the sandbox's namespaces",
            || format!("setns(pidfd of {}, {})", t.init.pid, flag_names(plan)),
        )?;
    }
    if let Some(time) = &carried.time_ns {
        check(
            nix::sched::setns(
                time.as_fd(),
                nix::sched::CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
            ),
            "join the sandbox's time namespace",
            || {
                format!(
                    "setns(/proc/{}/ns/time_for_children, CLONE_NEWTIME)",
                    t.init.pid
                )
            },
        )?;
    }
    drop(carried.pidfd);
    drop(carried.time_ns);
    drop(carried.cgroup_procs);
    if plan.has(Namespace::User) {
        become_root_inside(plan)?;
    }
    // From here on every path is the sandbox's: its root, its /etc, its devpts.
    let (ids, user_env) = match req.user {
        None => (exec::Ids::from(&plan.creds), Vec::new()),
        Some(spec) => user_inside(plan, spec)?,
    };
    let terminal = if req.tty {
        Some(open_terminal(&ids, carried.window)?)
    } else {
        None
    };
    let mut env: Vec<(String, String)> = plan.env.iter().map(|e| e.value.clone()).collect();
    let mut set = |k: &str, v: String| {
        env.retain(|(key, _)| key != k);
        env.push((k.to_owned(), v));
    };
    for (k, v) in user_env {
        set(k, v);
    }
    if let (Some(_), Some(term)) = (&terminal, &req.term) {
        set("TERM", term.clone());
    }
    let command = match check(
        sys::clone_namespaces(libc::CLONE_PARENT),
        "start the command",
        || "clone(CLONE_PARENT)".into(),
    )? {
        sys::Forked::Child => {
            // The command: a member of the sandbox's pid namespace, the waiting stockade's
            // child. Every path ends in exec or _exit.
            let e = match super::init::reset_signals() {
                Err(e) => e,
                Ok(()) => {
                    let (master, slave) = match terminal {
                        Some((m, s)) => (Some(m), Some(s)),
                        None => (None, None),
                    };
                    drop(master);
                    let cmd = exec::Command {
                        argv: req.argv,
                        env,
                        workdir: &plan.workdir,
                        ids,
                        terminal: slave,
                        search_path: true,
                    };
                    exec::exec_with(&plan.finals, cmd, &carried.filters)
                }
            };
            chan.report_failure(e.exit_code, &e.to_string());
            sys::exit_now(e.exit_code)
        }
        sys::Forked::Parent(pid) => pid,
    };
    let master = terminal.map(|(m, _)| m);
    check(
        chan.report_started(command.as_raw() as u32, master.as_ref()),
        "hand the command over",
        || "sendmsg(pid, terminal)".into(),
    )
}

/// Host root is not mapped in the sandbox's user namespace: what this process creates
/// inside (the terminal's node) would belong to no one there, and could not be given to the
/// command's user. As the sandbox's own root (the identity its init has) it can.
fn become_root_inside(plan: &LaunchPlan) -> Result<(), SetupError> {
    let maps_root = plan.idmap.as_ref().is_none_or(|m| {
        [&m.uid_map, &m.gid_map]
            .iter()
            .all(|ranges| ranges.iter().any(|r| r.inside == 0))
    });
    if !maps_root {
        return Ok(());
    }
    let (uid, gid) = (nix::unistd::Uid::from_raw(0), nix::unistd::Gid::from_raw(0));
    check(
        nix::unistd::setresgid(gid, gid, gid),
        "become root in the sandbox's user namespace",
        || "setresgid(0, 0, 0)".into(),
    )?;
    check(
        nix::unistd::setresuid(uid, uid, uid),
        "become root in the sandbox's user namespace",
        || "setresuid(0, 0, 0)".into(),
    )?;
    // A change of credentials resets the dumpable flag to the system's default: set again.
    check(
        nix::sys::prctl::set_dumpable(false),
        "make the joining process undumpable",
        || "prctl(PR_SET_DUMPABLE, 0)".into(),
    )
}

/// Variables of the command's environment that name its user.
type UserEnv = Vec<(&'static str, String)>;

/// `--user`, looked up in the sandbox's own /etc/passwd and /etc/group (this process is in
/// its mount namespace): its ids, which the sandbox's id map must map, and HOME, USER,
/// LOGNAME for the command's environment.
fn user_inside(plan: &LaunchPlan, spec: &str) -> Result<(exec::Ids, UserEnv), SetupError> {
    let step = format!("run as user `{spec}`");
    let inside = Host {
        root: "/".into(),
        euid: 0,
        egid: 0,
    };
    let (user, groups) = inside
        .user_with_groups(spec)
        .map_err(|e| SetupError::other(&step, format!("reading the sandbox's /etc/passwd: {e}")))?
        .ok_or_else(|| {
            SetupError::other(
                &step,
                format!("no user `{spec}` in the sandbox's /etc/passwd"),
            )
        })?;
    if let Some(maps) = &plan.idmap {
        let mapped = |id: u32, ranges: &[crate::plan::IdRange]| {
            ranges
                .iter()
                .any(|r| id >= r.inside && u64::from(id) < u64::from(r.inside) + u64::from(r.count))
        };
        for (what, id, ranges) in [
            ("uid", user.uid, &maps.uid_map),
            ("gid", user.gid, &maps.gid_map),
        ] {
            if !mapped(id, ranges) {
                return Err(SetupError::other(
                    &step,
                    format!("its {what} {id} is not mapped in the sandbox's user namespace"),
                ));
            }
        }
    }
    let ids = exec::Ids {
        uid: user.uid,
        gid: user.gid,
        groups: if plan.creds.setgroups_denied {
            Vec::new()
        } else {
            groups
        },
        setgroups_denied: plan.creds.setgroups_denied,
    };
    let env = vec![
        ("HOME", user.home.clone()),
        ("USER", user.name.clone()),
        ("LOGNAME", user.name),
    ];
    Ok((ids, env))
}

/// A new pseudo-terminal from the devpts the sandbox sees at /dev/pts: its controlling
/// (master) end for the waiting stockade, and the terminal end for the command, owned by
/// the command's user and as large as the caller's window.
fn open_terminal(
    ids: &exec::Ids,
    window: Option<libc::winsize>,
) -> Result<(OwnedFd, OwnedFd), SetupError> {
    use std::os::unix::fs::OpenOptionsExt;
    let step = "open a terminal in the sandbox";
    let path = "/dev/pts/ptmx";
    let master: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| {
            SetupError::other(
                step,
                format!("open({path:?}, O_RDWR|O_NOCTTY|O_NOFOLLOW): {e}"),
            )
        })?
        .into();
    // The sandbox's root could have put anything at that path: only a devpts's ptmx is one.
    const DEVPTS_SUPER_MAGIC: i64 = 0x1cd1;
    let fs = check(nix::sys::statfs::fstatfs(&master), step, || {
        format!("fstatfs({path:?})")
    })?;
    if fs.filesystem_type().0 != DEVPTS_SUPER_MAGIC {
        return Err(SetupError::other(
            step,
            format!("{path} is not on a devpts filesystem"),
        ));
    }
    let slave = check(sys::pty_peer(master.as_fd()), step, || {
        "ioctl(TIOCSPTLCK), ioctl(TIOCGPTPEER)".into()
    })?;
    check(
        nix::unistd::fchown(
            slave.as_raw_fd(),
            Some(nix::unistd::Uid::from_raw(ids.uid)),
            Some(nix::unistd::Gid::from_raw(ids.gid)),
        ),
        step,
        || format!("fchown(terminal, {}, {})", ids.uid, ids.gid),
    )?;
    if let Some(ws) = window {
        check(sys::set_window_size(slave.as_fd(), &ws), step, || {
            "ioctl(TIOCSWINSZ)".into()
        })?;
    }
    Ok((master, slave))
}

/// Waits for the command, passing on the signals this stockade receives.
fn wait(command: Pid, sfd: &nix::sys::signalfd::SignalFd) -> Result<ServiceEnd, SetupError> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    loop {
        let mut fds = [PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(SetupError::sys("wait for the command", "poll()", e)),
            Ok(_) => {}
        }
        if let Some(end) = on_signals(command, sfd, &mut || {})? {
            return Ok(end);
        }
    }
}

/// Reads the pending signals: forwards each to the command (SIGWINCH goes to `on_winch`,
/// which resizes a terminal if there is one); on SIGCHLD, returns how the command ended if
/// it did.
pub(super) fn on_signals(
    command: Pid,
    sfd: &nix::sys::signalfd::SignalFd,
    on_winch: &mut dyn FnMut(),
) -> Result<Option<ServiceEnd>, SetupError> {
    while let Ok(Some(info)) = sfd.read_signal() {
        let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
            continue;
        };
        if sig == Signal::SIGWINCH {
            on_winch();
            continue;
        }
        if sig != Signal::SIGCHLD {
            let _ = kill(command, sig);
            continue;
        }
        match waitpid(command, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(Some(ServiceEnd::Exited(code as u8))),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(Some(ServiceEnd::Killed(sig as i32))),
            Ok(_) => continue,
            Err(e) => {
                return Err(SetupError::sys(
                    "wait for the command",
                    format!("waitpid({command})"),
                    e,
                ))
            }
        }
    }
    Ok(None)
}
