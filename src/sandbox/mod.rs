//! Doing it: every side effect of `stockade run`, in plan order. Takes a [`LaunchPlan`] only.
//!
//! Processes: the supervisor (this process, in the host's namespaces) clones init into the
//! new namespaces, writes its id maps, places it in a cgroup, and then only waits: it
//! forwards signals to init, relays sd_notify messages, and exits with the service's status.
//! Init (`init.rs`) builds the filesystem and forks the service, which takes its final steps
//! (`exec.rs`) and execs. Talking to systemd is not done here: the [`Manager`] the caller
//! passes in does it.

mod cgroup;
mod channel;
mod error;
mod exec;
mod explain;
mod ids;
mod init;
pub mod join;
mod journal;
mod llaudit;
mod mounts;
mod network;
mod nlmsg;
mod notify;
mod pty;
mod seccomp;
mod sysctl;

pub use channel::ServiceEnd;
pub use error::SetupError;
pub use network::cleanup as cleanup_networks;

use crate::plan::{IdMaps, LaunchPlan, Namespace, ScopeSpec, Volume};
use crate::sys;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;

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

/// A [`Manager`]'s own error, kept whole (the systemd stage's typed error) without the
/// sandbox naming its type.
pub type ManagerError = Box<dyn std::error::Error + Send + Sync>;

/// What the supervisor needs from systemd; implemented outside the sandbox stage so this
/// module never touches D-Bus, and called only after the last clone.
pub trait Manager {
    /// Registers a transient scope holding `init` (a host pid) and waits until systemd
    /// confirms it. Returns the scope's cgroup directory for reading its events later.
    fn register_scope(&mut self, spec: &ScopeSpec, init: u32) -> Result<(), ManagerError>;
    /// Passes one sd_notify message of the service on to the unit's notify socket.
    fn relay_notify(&mut self, message: &str);
}

/// Records the running sandbox; implemented outside this stage, which knows neither the
/// instance name nor where records live.
pub trait Recorder {
    /// Called once for a bridge sandbox, when its address is leased (before the clone, so
    /// before [`Recorder::record`]): the record names no address that is not leased.
    fn leased(&mut self, address: std::net::Ipv4Addr, address6: Option<std::net::Ipv6Addr>);
    /// Called once, right after init is let go and while it builds the filesystem: what
    /// the record needs that is known already is gathered here, off the path the service
    /// waits on. `init` is init's host pid.
    fn prepare(&mut self, init: u32);
    /// Called once, when init has made every namespace and sits in its final cgroup, and
    /// before the service may exec: an error stops the start. `cgroup` is init's cgroup
    /// directory on the host.
    fn record(&mut self, init: u32, cgroup: Option<&std::path::Path>) -> Result<(), String>;
    /// Called once, when the service has exec'd: the sandbox runs. `init` is init's host pid.
    fn started(&mut self, init: u32);
    /// Called once, the first time the sandbox is on its way out: a SIGTERM or SIGINT is
    /// forwarded to the service, or the service's end is reported. Not on the launch's path.
    fn stopping(&mut self);
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub service: ServiceEnd,
    /// OOM kills recorded in the sandbox's cgroup, when it has a memory controller.
    pub oom_kills: Option<u64>,
    /// The first SIGTERM or SIGINT the supervisor forwarded to the service, if any: a stop
    /// someone asked for (`stockade stop`, `systemctl stop`, Ctrl-C), not a failure.
    pub stop_requested: Option<Signal>,
}

impl Outcome {
    /// The shell convention: the status, or 128+N for death by signal N.
    pub fn code(self) -> u8 {
        match self.service {
            ServiceEnd::Exited(c) => c,
            ServiceEnd::Killed(s) => 128u8.wrapping_add(s as u8),
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
    #[error("register the scope {unit}: {source}")]
    Scope {
        unit: String,
        #[source]
        source: ManagerError,
    },
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Setup(e) => e.exit_code,
            Error::Child { exit_code, .. } => *exit_code,
            Error::Scope { .. } => 125,
        }
    }
}

/// Runtime resources init hands to the service: not part of the plan because they are
/// descriptors, not decisions.
pub struct Runtime {
    /// journald streams for stdout and stderr.
    pub journal: Option<(OwnedFd, OwnedFd)>,
    /// The seccomp filters, compiled by the supervisor; init receives them before it forks
    /// the service.
    pub filters: Vec<seccomp::Program>,
    /// The address leased for eth0 on a bridge network.
    pub address: Option<std::net::Ipv4Addr>,
    /// Its IPv6 address, on a network with subnet6.
    pub address6: Option<std::net::Ipv6Addr>,
}

/// The service's host pid: init's one child.
fn service_of(init: Pid) -> Option<Pid> {
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", init)).ok()?;
    let pid: i32 = children.split_whitespace().next()?.parse().ok()?;
    Some(Pid::from_raw(pid))
}

/// The namespaces init is cloned into: only those that must exist from the start (the
/// user namespace, to write its maps; the pid namespace, whose first process init is). Init
/// creates the others itself with unshare(2), in parallel with the supervisor's cgroup
/// placement, so their cost (a network namespace's above all) overlaps the D-Bus calls.
fn clone_flags(plan: &LaunchPlan) -> libc::c_int {
    cloned(plan).fold(0, |acc, ns| acc | ns.row().flag)
}

/// The namespaces init is cloned with: a bridge sandbox's network namespace too, so the
/// supervisor can put the veth's inner end into it before init goes on.
fn cloned(plan: &LaunchPlan) -> impl Iterator<Item = Namespace> + '_ {
    [Namespace::User, Namespace::Pid, Namespace::Net]
        .into_iter()
        .filter(|&ns| plan.has(ns) && (ns != Namespace::Net || plan.network.is_some()))
}

/// The namespaces init unshares once its id maps are written. The cgroup namespace is not
/// among them: it comes last, once init sits in its final cgroup.
pub(crate) fn unshare_flags(plan: &LaunchPlan) -> nix::sched::CloneFlags {
    let bits = plan
        .enabled_namespaces()
        .filter(|ns| !matches!(ns, Namespace::User | Namespace::Pid | Namespace::Cgroup))
        .filter(|ns| *ns != Namespace::Net || plan.network.is_none())
        .fold(0, |acc, ns| acc | ns.row().flag);
    nix::sched::CloneFlags::from_bits_retain(bits)
}

/// Runs the plan to the end and returns how the service ended.
pub fn run(
    plan: &LaunchPlan,
    manager: &mut dyn Manager,
    recorder: &mut dyn Recorder,
) -> Result<Outcome, Error> {
    // stockade's runtime directory exists before any sandbox is built, so the plan can hide
    // it in every sandbox that would otherwise see the host's /run.
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(crate::plan::RUN_DIR)
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(e),
        })
        .map_err(|e| {
            SetupError::other(
                "create stockade's runtime directory",
                format!("{}: {e}", crate::plan::RUN_DIR),
            )
        })?;
    if let Some(claim) = &plan.id_claim {
        ids::claim(claim)?;
    }
    for v in &plan.volumes {
        prepare_volume(v)?;
    }
    // Host-side effects, each undone when its guard drops.
    // The lease and the bridge come before the clone: init is born knowing its address.
    let mut net = plan
        .network
        .as_ref()
        .map(network::Attachment::prepare)
        .transpose()?;
    if let Some(n) = &net {
        recorder.leased(n.address, n.address6);
    }
    let notify = plan
        .notify
        .as_ref()
        .map(|n| notify::NotifySocket::create(&n.host_socket))
        .transpose()?;
    let runtime = Runtime {
        journal: plan
            .journal_identifier
            .as_ref()
            .map(|id| journal::streams(id))
            .transpose()?,
        filters: Vec::new(),
        address: net.as_ref().map(|n| n.address),
        address6: net.as_ref().and_then(|n| n.address6),
    };
    // Blocked before the clone so no forwarded signal is lost while the sandbox starts; the
    // supervisor reads them from a signalfd, init re-handles them, the service unblocks them.
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
    let (mut status, status_writer) =
        error::check(channel::status_pair(), "create the status channel", || {
            "socketpair(AF_UNIX, SOCK_SEQPACKET)".into()
        })?;
    let init = match sys::clone_namespaces(clone_flags(plan)) {
        Err(errno) => {
            return Err(SetupError::sys(
                "create the sandbox",
                format!("clone({})", describe_flags(plan)),
                errno,
            )
            .failed_in(error::Call::Clone)
            .into())
        }
        Ok(sys::Forked::Child) => {
            drop((sup, status));
            init::run(plan, child, status_writer, runtime)
        }
        Ok(sys::Forked::Parent(pid)) => pid,
    };
    drop((child, status_writer, runtime));
    // From here on init exists: every failure must take it down before returning.
    let guard = InitGuard(init);

    if let Some(maps) = &plan.idmap {
        write_idmaps(init, maps)?;
    }
    // eth0 is in init's network namespace before init configures it.
    if let Some(n) = &net {
        n.attach(init.as_raw() as u32)?;
    }
    // Started before init is woken, so the two run side by side.
    let compiling = seccomp::start(&plan.finals.syscalls);
    sup.tell_proceed()
        .map_err(|e| SetupError::other("start the sandbox", format!("init went away: {e}")))?;
    // While init builds the filesystem: before, the service waited for it after Ready.
    recorder.prepare(init.as_raw() as u32);
    // Placed before init may fork the service, so nothing of it ever runs unaccounted.
    let mut leaf = None;
    let cgroup_dir: Option<PathBuf> = match &plan.cgroup {
        crate::plan::CgroupPlan::None => None,
        crate::plan::CgroupPlan::Scope(spec) => {
            manager
                .register_scope(spec, init.as_raw() as u32)
                .map_err(|source| Error::Scope {
                    unit: spec.unit.clone(),
                    source,
                })?;
            let dir = cgroup_of(init);
            let needed: Vec<&str> = spec.controllers.iter().map(String::as_str).collect();
            cgroup::check_controllers(dir.as_deref(), &needed, &spec.unit)?;
            dir
        }
        crate::plan::CgroupPlan::Leaves(l) => {
            let created = cgroup::Leaf::create(l, init.as_raw() as u32)?;
            let dir = created.dir().to_owned();
            leaf = Some(created);
            Some(dir)
        }
    };
    let filters = compiling.finish()?;
    // If init failed meanwhile, the send fails and its report is read below.
    let _ = sup.tell_placed(filters);
    let mut audit = None;
    // Recorded once init has made its last namespace (their inodes are final) and before
    // the service may exec: no service runs without its record.
    match sup.wait_for_ready() {
        Ok(true) => {
            // The sandbox's nft run went on while it was built.
            if let Some(n) = &mut net {
                n.rules_in_place()?;
            }
            recorder
                .record(init.as_raw() as u32, cgroup_dir.as_deref())
                .map_err(|e| SetupError::other("record the sandbox", e))?;
            // Bound before the service applies landlock: its domain's first record (which
            // links the domain to the service) comes with its first denial.
            audit = landlock_audit(plan);
            // If init is gone meanwhile, the end of file is read below.
            let _ = sup.tell_start();
        }
        // Init ended without a word: waitpid tells how, below.
        Ok(false) => {}
        Err(f) => {
            return Err(Error::Child {
                exit_code: f.exit_code,
                message: f.message,
            })
        }
    }
    // Under --explain the service names its seccomp listener before it execs: a copy is
    // taken here, where its notifications are answered.
    let mut listener = None;
    let take = |fd: u32| {
        let service = service_of(init).ok_or("the service process is not found")?;
        let fd = i32::try_from(fd).map_err(|e| e.to_string())?;
        let got = sys::take_fd(service, fd)
            .map_err(|e| format!("pidfd_getfd(service {service}, {fd}): {e}"))?;
        listener = Some(got);
        Ok(())
    };
    if let Err(f) = sup.wait_for_exec(take) {
        return Err(Error::Child {
            exit_code: f.exit_code,
            message: f.message,
        });
    }
    tracing::debug!(pid = init.as_raw(), "service started");
    recorder.started(init.as_raw() as u32);
    if plan.ready_after_exec {
        manager.relay_notify("READY=1");
    }
    std::mem::forget(guard);
    let explainer = listener.and_then(|l| explain::Explainer::new(plan, l));
    let audit = audit.and_then(|mut a| {
        // The domain's creator is the service, found now it has exec'd.
        a.linker.service = service_of(init)?.as_raw() as u32;
        Some(a)
    });
    let ended = supervise(
        init,
        &set,
        notify.as_ref(),
        explainer,
        audit,
        &mut status,
        cgroup_dir.as_deref(),
        manager,
        recorder,
    )?;
    let service = ended.service.unwrap_or(ended.init);
    let oom_kills = ended
        .oom_kills
        .or_else(|| cgroup_dir.as_deref().and_then(cgroup::oom_kills));
    drop(leaf);
    drop(net);
    Ok(Outcome {
        service,
        oom_kills,
        stop_requested: ended.stop_requested,
    })
}

/// The reader of landlock's audit records under --explain, when the plan has landlock rules
/// and the kernel writes such records; otherwise says once at -v why none are reported.
fn landlock_audit(plan: &LaunchPlan) -> Option<llaudit::Reader<'_>> {
    if plan.finals.syscalls.explain.is_none() || plan.finals.landlock.is_none() {
        return None;
    }
    match sys::landlock_abi() {
        Some(v) if v >= 7 => {}
        v => {
            tracing::debug!(
                "landlock denials are not reported: this kernel's landlock (ABI {}) writes no audit records (ABI 7, Linux 6.15)",
                v.map_or("none".into(), |v| v.to_string())
            );
            return None;
        }
    }
    match llaudit::audit_enabled() {
        Some(true) => {}
        Some(false) => {
            tracing::debug!("landlock denials are not reported: kernel audit is off (audit=1 or auditd turns it on)")
        }
        None => tracing::debug!(
            "the kernel's audit status cannot be read (AUDIT_GET): landlock denials are reported only if audit is on"
        ),
    }
    // Kept open even while audit is off: auditd may turn it on while the service runs.
    llaudit::Reader::open(plan, 0)
        .map_err(|e| {
            tracing::debug!("landlock denials are not reported: cannot read the audit log (netlink audit, group readlog): {e}")
        })
        .ok()
}

/// Kills and reaps init when the supervisor gives up on a failure of its own.
struct InitGuard(Pid);

impl Drop for InitGuard {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGKILL);
        let _ = waitpid(self.0, None);
    }
}

/// The cgroup v2 directory a process is in, as a host path.
fn cgroup_of(pid: Pid) -> Option<PathBuf> {
    crate::host::Host::current().cgroup_dir_of(pid.as_raw() as u32)
}

/// The names of the flags init is cloned with, for the error when the clone is refused.
fn describe_flags(plan: &LaunchPlan) -> String {
    cloned(plan)
        .map(|ns| ns.row().flag_name)
        .collect::<Vec<_>>()
        .join("|")
}

fn write_idmaps(init: Pid, maps: &IdMaps) -> Result<(), SetupError> {
    let proc = format!("/proc/{}", init.as_raw());
    let write = |file: &str, text: &str| {
        let path = format!("{proc}/{file}");
        std::fs::write(&path, text).map_err(|e| {
            let errno = nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
            let e = SetupError::sys(
                "write the id map",
                format!("write({path:?}, {text:?})"),
                errno,
            );
            // setgroups is written on the way, but only the maps' refusals have a hint.
            match file {
                "uid_map" | "gid_map" => e.failed_in(error::Call::IdMap),
                _ => e,
            }
        })
    };
    let lines = |ranges: &[crate::plan::IdRange]| {
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
        if let Some((uid, gid)) = v.carry_root_to {
            let moved = ids::carry_root_over(&v.host_path, uid, gid)
                .map_err(|e| SetupError::other(&step, e))?;
            tracing::info!(
                "volume {} carried over to the sandbox's id range: {moved} entries owned by host root now belong to {uid}:{gid}",
                v.host_path.display()
            );
        }
        return Ok(());
    }
    if let Some(parent) = v.host_path.parent() {
        ids::state_dirs(parent).map_err(|e| SetupError::other(&step, e))?;
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

/// What the supervisor learned when the sandbox ended.
struct Ended {
    /// How init ended: the fallback when it could not report the service's end itself.
    init: ServiceEnd,
    /// How the service ended, as init reported it.
    service: Option<ServiceEnd>,
    /// OOM kills read while init still held the cgroup (a scope is removed once empty).
    oom_kills: Option<u64>,
    /// The first SIGTERM or SIGINT forwarded to init.
    stop_requested: Option<Signal>,
}

/// Waits for init, forwarding signals to it and relaying notify messages. When init reports
/// the service's end, the cgroup's OOM count is read before init is let go. The first
/// SIGTERM or SIGINT forwarded is remembered: the end that follows was asked for. Either
/// that or the service's end marks the sandbox stopping, once. SIGHUP does not: for many
/// daemons it asks for a reload (`systemctl reload` sends it), and a sandbox that reloaded
/// runs on.
#[allow(clippy::too_many_arguments)]
fn supervise(
    init: Pid,
    set: &SigSet,
    notify: Option<&notify::NotifySocket>,
    mut explainer: Option<explain::Explainer>,
    mut audit: Option<llaudit::Reader>,
    status: &mut channel::StatusReader,
    cgroup_dir: Option<&std::path::Path>,
    manager: &mut dyn Manager,
    recorder: &mut dyn Recorder,
) -> Result<Ended, SetupError> {
    let sfd = error::check(
        SignalFd::with_flags(set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK),
        "watch signals",
        || "signalfd()".into(),
    )?;
    let mut service = None;
    let mut oom_kills = None;
    let mut stop_requested = None;
    let mut marked = false;
    let mut mark = |recorder: &mut dyn Recorder| {
        if !std::mem::replace(&mut marked, true) {
            recorder.stopping();
        }
    };
    // Whether init's status channel is still worth watching: not once the service's end
    // has been read, nor after a hang-up. poll reports a hang-up on every entry for that
    // socket, even one that asks for no events, so a hung-up channel left in the set makes
    // this loop spin until SIGCHLD: measured, thousands of rounds while the kernel tore
    // down init's namespaces, on the same two cores that teardown needed.
    let mut status_open = true;
    loop {
        // The stand-in for what is absent keeps the indices fixed: the signalfd with no
        // events asked for, which never hangs up.
        let absent = sfd.as_fd();
        let mut fds = vec![
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            if status_open {
                PollFd::new(status.fd(), PollFlags::POLLIN)
            } else {
                PollFd::new(absent, PollFlags::empty())
            },
        ];
        // Fixed places: 2 the notify socket, 3 the seccomp listener.
        fds.push(match notify {
            Some(n) => PollFd::new(n.fd(), PollFlags::POLLIN),
            None => PollFd::new(absent, PollFlags::empty()),
        });
        fds.push(match &explainer {
            Some(e) => PollFd::new(e.fd(), PollFlags::POLLIN),
            None => PollFd::new(absent, PollFlags::empty()),
        });
        // 4 the landlock audit records.
        fds.push(match &audit {
            Some(a) => PollFd::new(a.fd(), PollFlags::POLLIN),
            None => PollFd::new(absent, PollFlags::empty()),
        });
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(SetupError::sys("wait for the service", "poll()", e)),
            Ok(_) => {}
        }
        let ready = |i: usize| {
            fds.get(i).is_some_and(|f| {
                f.revents()
                    .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP))
            })
        };
        let (status_ready, notify_ready) = (status_open && ready(1), notify.is_some() && ready(2));
        let status_hung_up = status_open
            && fds[1]
                .revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR));
        // A notification waits (POLLIN); a hang-up alone means no process is filtered any
        // more (answering it would spin: the receive fails at once).
        let listener_ready = explainer.is_some()
            && fds[3]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLIN));
        let listener_gone = explainer.is_some()
            && fds[3].revents().is_some_and(|r| {
                r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL)
            });
        let audit_ready = audit.is_some()
            && fds[4]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLIN));
        drop(fds);
        if audit_ready {
            if let Some(a) = audit.as_mut() {
                a.read();
            }
        }
        if listener_ready {
            if let Some(e) = explainer.as_mut() {
                e.answer();
            }
        } else if listener_gone {
            // Every filtered process has ended: nothing is left to answer.
            explainer = None;
        }
        if notify_ready {
            while let Some(msg) = notify.and_then(|n| n.receive()) {
                manager.relay_notify(&msg);
            }
        }
        if status_ready && service.is_none() {
            if let Some(end) = status.receive() {
                service = Some(end);
                mark(recorder);
                oom_kills = cgroup_dir.and_then(cgroup::oom_kills);
                status.release();
            }
        }
        if service.is_some() || status_hung_up {
            status_open = false;
        }
        while let Ok(Some(info)) = sfd.read_signal() {
            let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            if sig != Signal::SIGCHLD {
                // A signal that arrives after the service ended asks nothing of it.
                if matches!(sig, Signal::SIGTERM | Signal::SIGINT) && service.is_none() {
                    stop_requested.get_or_insert(sig);
                    // Marked before it is passed on: whoever sees the service react to it
                    // sees the sandbox stopping.
                    mark(recorder);
                }
                let _ = kill(init, sig);
                continue;
            }
            let init_end = match waitpid(init, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => ServiceEnd::Exited(code as u8),
                Ok(WaitStatus::Signaled(_, sig, _)) => ServiceEnd::Killed(sig as i32),
                _ => continue,
            };
            if service.is_none() {
                service = status.receive();
            }
            return Ok(Ended {
                init: init_end,
                service,
                oom_kills,
                stop_requested,
            });
        }
    }
}
