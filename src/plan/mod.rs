//! What stockade will do: a pure [`LaunchPlan`] built from a validated profile and the host
//! facts gathered for it. It resolves users, decides the uid/gid maps, orders the mount
//! operations (parents first) and decides which mount points may be created, checks bind
//! sources and targets, and lists the final security steps. It writes nothing and makes no
//! syscalls, so every decision is unit-tested without root; after it succeeds, only the
//! kernel can refuse. The plan is the sandbox's record: serialisable, and every decision
//! carries its [`Provenance`].
//!
//! The planner does no I/O: [`build`] is a pure function of (profile, host facts,
//! invocation). [`needs`] says, from the profile alone, everything the planner will ask
//! about the host: users and groups, kernel files, `fs.nr_open`, id claims, and every host
//! path it looks at (the root, bind sources and their resolution, mount and hide targets,
//! volumes, and what the sandbox view's walk may visit, symlinks included).
//! [`HostFacts::gather`] reads it once, before [`build`]; the planner holds no `Host`. A
//! path it asks about that was not gathered is a bug made loud (`FactError::NotGathered`:
//! a panic in debug builds, a problem in release), never a quiet read of the host.

mod cgroup;
mod mounts;
pub mod network;
mod record;
pub mod render;
mod seccomp;
#[cfg(test)]
pub(crate) mod tests;
mod view;

use crate::host::{Fact, FactError, HostFacts, Needs};
use crate::profile::schema::or;
use crate::profile::validate::{capability, rlimit};
use crate::profile::values::IdRef;
use crate::profile::{At, Problem, Profile, SourceMap, Src};
use nix::sys::resource::Resource;
use record::Resolver;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use crate::profile::families::AF_MAX;
// The plan's own vocabulary, shared with the profile language: the sandbox takes them from
// here and never sees profile types.
pub use crate::profile::values::{CgroupMode, IdRange, Limit};
pub use cgroup::{CgroupPlan, Leaves, Prop, ResourceLimit, ScopeSpec};
pub use mounts::{FsPlan, MountOp, NodeKind, RootSource, DEV_NODES};
pub use network::NetworkPlan;
pub use record::{Decided, Provenance};
#[cfg(test)]
pub use seccomp::default_baseline;
pub use seccomp::{baseline, explain, Filter, SysAction, SyscallPolicy, SyscallRule};

/// stockade's persistent state on the host: volumes and id-range claims. Never visible
/// inside a sandbox.
pub const STATE_DIR: &str = "/var/lib/stockade";
/// Where named volumes live on the host.
pub const VOLUME_DIR: &str = "/var/lib/stockade/volumes";
/// Which profile holds which host id range (see [`IdClaim`]).
pub const IDS_DIR: &str = "/var/lib/stockade/ids";
/// stockade's runtime state on the host (notify relays); never visible inside a sandbox.
pub const RUN_DIR: &str = "/run/stockade";
/// The records of running sandboxes, one `NAME.json` per instance (see `ops::records`).
pub const INSTANCES_DIR: &str = "/run/stockade/instances";

/// The host id ranges given to sandboxes: 4096 ranges of 65536 ids from 0x60000000, in the
/// upper part of the range systemd documents for containers (524288-1879048191), far from
/// system and login users.
pub const ID_BASE: u32 = 0x6000_0000;
pub const ID_RANGE: u32 = 65536;
pub const ID_SLOTS: u32 = 4096;

/// The namespaces stockade knows, in the order the profile's `[namespaces]` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Namespace {
    User,
    Pid,
    Mount,
    Net,
    Ipc,
    Uts,
    Cgroup,
    Time,
}

/// One row of [`Namespace::ALL`].
#[derive(Debug, Clone, Copy)]
pub struct NamespaceRow {
    pub ns: Namespace,
    /// Its key in `[namespaces]`.
    pub key: &'static str,
    /// Its clone(2)/unshare(2) flag, and that flag's name for error messages.
    pub flag: libc::c_int,
    pub flag_name: &'static str,
    /// Init's file in `/proc/PID/ns/` for this namespace, whose inode names it (the record of
    /// a running sandbox lists them).
    pub proc: &'static str,
}

impl Namespace {
    /// Every namespace, in the order they are listed and created: the one table the planner,
    /// the sandbox's clone and unshare, and their error messages use. The profile's schema
    /// names the same keys (a test keeps the two equal).
    pub const ALL: [NamespaceRow; 8] = {
        const fn row(
            ns: Namespace,
            key: &'static str,
            flag: libc::c_int,
            flag_name: &'static str,
            proc: &'static str,
        ) -> NamespaceRow {
            NamespaceRow {
                ns,
                key,
                flag,
                flag_name,
                proc,
            }
        }
        [
            row(
                Namespace::User,
                "user",
                libc::CLONE_NEWUSER,
                "CLONE_NEWUSER",
                "user",
            ),
            row(
                Namespace::Pid,
                "pid",
                libc::CLONE_NEWPID,
                "CLONE_NEWPID",
                "pid",
            ),
            row(
                Namespace::Mount,
                "mount",
                libc::CLONE_NEWNS,
                "CLONE_NEWNS",
                "mnt",
            ),
            row(
                Namespace::Net,
                "net",
                libc::CLONE_NEWNET,
                "CLONE_NEWNET",
                "net",
            ),
            row(
                Namespace::Ipc,
                "ipc",
                libc::CLONE_NEWIPC,
                "CLONE_NEWIPC",
                "ipc",
            ),
            row(
                Namespace::Uts,
                "uts",
                libc::CLONE_NEWUTS,
                "CLONE_NEWUTS",
                "uts",
            ),
            row(
                Namespace::Cgroup,
                "cgroup",
                libc::CLONE_NEWCGROUP,
                "CLONE_NEWCGROUP",
                "cgroup",
            ),
            row(
                Namespace::Time,
                "time",
                libc::CLONE_NEWTIME,
                "CLONE_NEWTIME",
                // unshare(CLONE_NEWTIME) moves init's children only, the service among them.
                "time_for_children",
            ),
        ]
    };

    /// This namespace's row of [`Namespace::ALL`].
    pub fn row(self) -> &'static NamespaceRow {
        Namespace::ALL
            .iter()
            .find(|r| r.ns == self)
            .expect("every namespace has a row")
    }
}

/// Whether one namespace is created; the plan lists all of them, on or off, so an
/// inspector can say why a namespace is missing too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceChoice {
    pub kind: Namespace,
    pub enabled: bool,
}

/// The uid_map and gid_map contents, ready to write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMaps {
    pub uid_map: Decided<Vec<IdRange>>,
    pub gid_map: Decided<Vec<IdRange>>,
    /// Unprivileged user namespaces must deny setgroups before writing gid_map.
    pub deny_setgroups: bool,
    /// Init switches to uid/gid 0 inside: when the caller's own ids are not mapped (an
    /// explicit idmap such as 0→200000), files it creates would otherwise fail with EOVERFLOW.
    pub init_becomes_root: bool,
}

/// The identity the service runs with, as seen inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub uid: Decided<u32>,
    pub gid: Decided<u32>,
    pub groups: Decided<Vec<u32>>,
    /// setgroups(2) is unavailable (denied in an unprivileged user namespace).
    pub setgroups_denied: bool,
}

/// A volume directory to create on the host before the sandbox starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub host_path: PathBuf,
    /// Owner as seen from the host: the service's ids translated through the idmap.
    pub uid: u32,
    pub gid: u32,
    /// A volume made before sandbox root had an id range of its own is owned by host root:
    /// what host uid/gid 0 own in it is handed to these ids (the range's root) first.
    pub carry_root_to: Option<(u32, u32)>,
}

/// The host id range a profile's sandboxes map their ids to, claimed once per profile name
/// and kept in [`IDS_DIR`] so the owner of its volumes is the same at every start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdClaim {
    pub dir: PathBuf,
    pub name: String,
    pub slot: u32,
    /// The claim does not exist yet: the sandbox records it before anything else.
    pub new: bool,
}

impl IdClaim {
    pub fn base(&self) -> u32 {
        ID_BASE + self.slot * ID_RANGE
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Read,
    Write,
    Exec,
}

/// One resource limit set with setrlimit(2), soft and hard alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    #[serde(with = "record::resource_name")]
    pub resource: Resource,
    pub limit: Limit,
}

/// One landlock rule: what the service may do below `path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandlockRule {
    pub path: String,
    pub access: Access,
}

/// The steps taken in the service's process just before exec, in this order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalSteps {
    pub rlimits: Vec<Decided<Rlimit>>,
    pub umask: Decided<u32>,
    /// Landlock rules, each cited at the list that holds it; None means no landlock at all.
    pub landlock: Option<Vec<Decided<LandlockRule>>>,
    /// Run with what the kernel enforces of the landlock rules (else refuse to start).
    pub landlock_best_effort: bool,
    pub capabilities: Decided<Vec<caps::Capability>>,
    pub no_new_privs: Decided<bool>,
    /// Installed last, just before exec.
    pub syscalls: SyscallPolicy,
    /// Landlock's abstract-unix-socket scope: the service cannot connect to abstract sockets
    /// made outside its sandbox (needed when it shares the host's network namespace, where
    /// those sockets live).
    pub scope_abstract_sockets: bool,
}

/// Everything `stockade run` will do, in order: the sandbox's record. Every decision an
/// admin (or `why`) asks about carries its [`Provenance`]; `show --plan` renders it and
/// `show --plan --json` prints it as serde makes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchPlan {
    pub name: String,
    /// Every namespace, on or off.
    pub namespaces: Vec<Decided<NamespaceChoice>>,
    pub idmap: Option<IdMaps>,
    /// The host id range claimed for the default id map.
    pub id_claim: Option<IdClaim>,
    /// Init sets vm.memfd_noexec = 2 in the sandbox's pid namespace: landlock's exec rules
    /// are not bypassed by executing an anonymous memory file.
    pub memfd_noexec: bool,
    /// Set whenever there is a UTS namespace: the profile's, else one made of its name.
    pub hostname: Option<Decided<String>>,
    /// The kernel's interfaces are masked and made read-only (the mounts carry it too).
    pub protect_kernel: Decided<bool>,
    pub volumes: Vec<Volume>,
    /// None when the profile runs without a mount namespace.
    pub fs: Option<FsPlan>,
    pub loopback_up: bool,
    /// A bridge network's eth0, address, routes and rules; None for `mode = "none"` (only
    /// `lo`) and `"host"`.
    pub network: Option<NetworkPlan>,
    pub creds: Credentials,
    pub finals: FinalSteps,
    pub argv: Decided<Vec<String>>,
    pub env: Vec<Decided<(String, String)>>,
    pub workdir: Decided<String>,
    /// `[systemd] mode` as written or defaulted; [`LaunchPlan::cgroup`] is what it became.
    pub systemd_mode: Decided<CgroupMode>,
    /// Each `[resources]` limit as written; the cgroup plan holds its translation.
    pub resources: Vec<Decided<ResourceLimit>>,
    /// Where the sandbox's processes are accounted and limited.
    pub cgroup: CgroupPlan,
    /// The memory limit as the admin wrote it, for the exit message after an OOM kill.
    pub memory_max: Option<String>,
    /// Connect the service's stdout/stderr to journald under this identifier.
    pub journal_identifier: Option<Decided<String>>,
    /// Relay sd_notify messages from the service to the unit's NOTIFY_SOCKET.
    pub notify: Option<Decided<Notify>>,
    /// Under a Type=notify unit whose service does not speak sd_notify: stockade reports
    /// READY=1 itself once the service has exec'd.
    pub ready_after_exec: bool,
    /// What the plan allows that an admin should know: holes in the default walls the
    /// profile opened on purpose, rendered `file:line:col: key: message`. `check` prints
    /// them; `run` logs them at -v.
    pub notes: Vec<String>,
}

impl LaunchPlan {
    pub fn has(&self, ns: Namespace) -> bool {
        self.enabled_namespaces().any(|n| n == ns)
    }

    /// The namespaces created, in the order of [`Namespace`].
    pub fn enabled_namespaces(&self) -> impl Iterator<Item = Namespace> + '_ {
        self.namespaces.iter().filter(|n| n.enabled).map(|n| n.kind)
    }
}

/// The relayed notify socket: created by the supervisor on the host, bound into the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    pub host_socket: PathBuf,
    /// Where NOTIFY_SOCKET points the service.
    pub target: String,
}

/// What the caller adds to the profile.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    /// Arguments after `--`.
    pub extra_args: Vec<String>,
    /// The caller's environment (PATH, LANG and TERM are passed on).
    pub env: Vec<(String, String)>,
    /// Where volumes live; [`VOLUME_DIR`] unless a test says otherwise.
    pub volume_dir: PathBuf,
    /// Unique per run (the supervisor's pid), for scope and cgroup names.
    pub id: u32,
    /// Started by a systemd unit (its stdout already goes to the journal).
    pub under_unit: bool,
    /// The unit's NOTIFY_SOCKET, when it is Type=notify.
    pub notify_socket: Option<String>,
    /// Where id-range claims live; [`IDS_DIR`] unless a test says otherwise.
    pub ids_dir: PathBuf,
    /// Where named networks are defined, in order (none: only the built-in `default`).
    pub network_dirs: Vec<PathBuf>,
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the planner will ask about the host for this profile: gathered by
/// [`HostFacts::gather`] before [`build`], which then reads the facts only.
pub fn needs(name: &str, profile: &Profile, inv: &Invocation) -> Needs {
    let e = &profile.exec;
    let mut n = Needs::default();
    match e.user.as_ref().map(|u| &u.value) {
        Some(IdRef::Name(u)) => n.user_names.push(u.clone()),
        Some(IdRef::Id(id)) => n.user_ids.push(*id),
        None => {}
    }
    let groups = e
        .group
        .iter()
        .map(|g| &g.value)
        .chain(e.supplementary_groups.iter().flat_map(|l| l.value.iter()));
    for g in groups {
        if let IdRef::Name(g) = g {
            n.group_names.push(g.clone());
        }
    }
    // Kernel files: what a fresh /proc or sysfs shows is the host kernel's.
    n.stat = mounts::kernel_paths()
        .chain([MEMFD_NOEXEC])
        .map(str::to_owned)
        .collect();
    n.claim = Some((inv.ids_dir.clone(), name.to_owned()));
    // Volumes' owners (one made before id ranges is host root's).
    n.lstat = volume_names(profile)
        .map(|v| inv.volume_dir.join(&v.value).display().to_string())
        .collect();
    mounts::needs(profile, inv, &mut n);
    if inv.notify_socket.is_some() && or(&profile.systemd.notify, false) {
        let source = notify_socket(inv.id).display().to_string();
        let binds = NOTIFY_DIRS.map(|d| (notify_target(d), source.clone()));
        n.view.binds.extend(binds);
    }
    view::needs(profile, &mut n);
    network::needs(profile, inv, &mut n);
    n
}

/// Where the supervisor makes the relayed notify socket on the host.
fn notify_socket(id: u32) -> PathBuf {
    PathBuf::from(format!("{RUN_DIR}/notify-{id}.sock"))
}

/// The tmpfs mounts the service's notify socket may be placed on, in order of preference.
const NOTIFY_DIRS: [&str; 3] = ["/run", "/dev", "/tmp"];

fn notify_target(dir: &str) -> String {
    format!("{dir}/stockade-notify.sock")
}

const MEMFD_NOEXEC: &str = "/proc/sys/vm/memfd_noexec";

fn volume_names(p: &Profile) -> impl Iterator<Item = &Src<String>> {
    p.mount
        .iter()
        .filter(|m| {
            m.kind
                .as_ref()
                .is_some_and(|k| k.value == crate::profile::values::MountType::Volume)
        })
        .filter_map(|m| m.name.as_ref())
}

/// The profile as loaded: the merged values and the files they came from (to cite them).
pub struct Input<'a> {
    pub name: &'a str,
    pub profile: &'a Profile,
    pub path: &'a Path,
    pub sources: &'a SourceMap,
}

/// Builds the plan, or returns every problem that needs the host to be found.
pub fn build(
    input: &Input,
    host: &HostFacts,
    inv: &Invocation,
) -> Result<LaunchPlan, Vec<Problem>> {
    let (name, profile) = (input.name, input.profile);
    let mut b = Builder {
        host,
        problems: Vec::new(),
        notes: Vec::new(),
        profile_path: input.path,
        at: Resolver {
            sources: input.sources,
        },
    };
    let namespaces = namespaces(&b, profile);
    let enabled: Vec<Namespace> = namespaces
        .iter()
        .filter(|n| n.enabled)
        .map(|n| n.kind)
        .collect();
    let userns = enabled.contains(&Namespace::User);
    let creds = b.credentials(profile, userns);
    let (idmap, id_claim) = if userns {
        b.idmap(profile, name, &creds, inv)
    } else {
        if *creds.uid == 0 && host.euid == 0 {
            let why = "without a user namespace the service runs as the host's root";
            match &profile.namespaces.user {
                Some(u) => b.notes.push(Problem::at(u.origin, "namespaces.user", why)),
                None => b.file_note("namespaces.user", why),
            }
        }
        (None, None)
    };
    b.privileges(profile, userns);
    let volumes = b.volumes(profile, inv, idmap.as_ref(), &creds, id_claim.as_ref());
    let exec_locked = profile.security.landlock.is_some();
    let fs = if enabled.contains(&Namespace::Mount) {
        let ctx = mounts::Context {
            volumes: &volumes,
            namespaces: &enabled,
            creates_state: !volumes.is_empty() || id_claim.as_ref().is_some_and(|c| c.new),
            exec_locked,
        };
        mounts::plan(&mut b, profile, &ctx)
    } else {
        None
    };
    let argv = b.argv(profile, inv);
    // The sysctl is per pid namespace and only the host's root may write it (the file is
    // root's, and not namespaced for permission checks); otherwise seccomp refuses
    // executable memory files instead.
    let memfd_noexec = exec_locked
        && enabled.contains(&Namespace::Pid)
        && host.euid == 0
        && b.fact(host.kind(MEMFD_NOEXEC)) == Ok(Some(crate::host::PathKind::File));
    let mut finals = b.finals(profile, exec_locked && !memfd_noexec);
    let shares_host_net = !enabled.contains(&Namespace::Net);
    finals.scope_abstract_sockets = shares_host_net && host.landlock_abi.is_some_and(|v| v >= 6);
    if shares_host_net && !finals.scope_abstract_sockets {
        b.file_note("namespaces.net", format!("the service shares the host's network namespace and this kernel's landlock (ABI {}) cannot scope abstract unix sockets (ABI 6, Linux 6.12): the host's abstract sockets are reachable", host.landlock_abi.map_or("none".into(), |v| v.to_string())));
    }
    let cgroup = cgroup::plan(&mut b, profile, name, inv.id, &host.cgroup);
    let mut fs = fs;
    let relay = inv.notify_socket.is_some() && or(&profile.systemd.notify, false);
    let notify_from = b.at.setting(&profile.systemd.notify, "systemd.notify");
    let notify = relay
        .then(|| b.notify_target(fs.as_ref()))
        .flatten()
        .map(|target| {
            let host_socket = notify_socket(inv.id);
            if let Some(fs) = fs.as_mut() {
                fs.ops.push(Decided::new(
                    MountOp::Bind {
                        source: host_socket.display().to_string(),
                        target: target.clone(),
                        read_only: false,
                        noexec: true,
                        create: Some(NodeKind::File),
                    },
                    notify_from.clone(),
                ));
            }
            Decided::new(
                Notify {
                    host_socket,
                    target,
                },
                notify_from.clone(),
            )
        });
    view::check(&mut b, profile, fs.as_ref());
    let network = network::plan(&mut b, profile, inv, name);
    // The generated /etc/hosts and /etc/resolv.conf, over the root's.
    if let (Some(n), Some(fs)) = (&network, fs.as_mut()) {
        for (source, target) in [
            (&n.hosts_file, network::HOSTS),
            (&n.resolv_file, network::RESOLV),
        ] {
            fs.ops.push(Decided::new(
                MountOp::Bind {
                    source: source.display().to_string(),
                    target: target.into(),
                    read_only: true,
                    noexec: true,
                    create: None,
                },
                n.network.from.clone(),
            ));
        }
    }
    if !b.problems.is_empty() {
        return Err(b.problems);
    }
    let caller = Provenance::invocation("environment");
    let mut env: Vec<Decided<(String, String)>> = inv
        .env
        .iter()
        .filter(|(k, _)| matches!(k.as_str(), "PATH" | "LANG" | "TERM"))
        .map(|kv| Decided::new(kv.clone(), caller.clone()))
        .collect();
    if !env.iter().any(|e| e.value.0 == "PATH") {
        env.push(Decided::new(
            ("PATH".into(), DEFAULT_PATH.into()),
            Provenance::default("exec.env.PATH"),
        ));
    }
    for (k, v) in &profile.exec.env {
        env.retain(|e| e.value.0 != *k);
        env.push(Decided::new(
            (k.clone(), v.value.clone()),
            b.at.at(v, &format!("exec.env.{k}")),
        ));
    }
    if let Some(n) = &notify {
        env.push(Decided::new(
            ("NOTIFY_SOCKET".into(), n.target.clone()),
            n.from.clone(),
        ));
        // The watchdog interval belongs to the unit; the service is the one to keep it fed.
        env.extend(
            inv.env
                .iter()
                .filter(|(k, _)| k == "WATCHDOG_USEC")
                .map(|kv| Decided::new(kv.clone(), caller.clone())),
        );
    }
    // With a UTS namespace the sandbox always gets a name of its own, never the host's.
    let hostname = enabled
        .contains(&Namespace::Uts)
        .then(|| match &profile.network.hostname {
            Some(h) => Decided::new(h.value.clone(), b.at.at(h, "network.hostname")),
            None => Decided::new(hostname_for(name), Provenance::default("network.hostname")),
        });
    let notes: crate::profile::Problems = b.notes.into_iter().collect();
    Ok(LaunchPlan {
        name: name.to_owned(),
        loopback_up: enabled.contains(&Namespace::Net),
        network,
        namespaces,
        idmap,
        id_claim,
        memfd_noexec,
        hostname,
        protect_kernel: Decided::new(
            or(&profile.security.protect_kernel, true),
            b.at.setting(&profile.security.protect_kernel, "security.protect_kernel"),
        ),
        volumes: volumes.into_iter().map(|(v, _)| v).collect(),
        fs,
        creds,
        finals,
        argv,
        env,
        workdir: Decided::new(
            or(&profile.exec.workdir, "/".to_owned()),
            b.at.setting(&profile.exec.workdir, "exec.workdir"),
        ),
        systemd_mode: Decided::new(
            or(&profile.systemd.mode, CgroupMode::Auto),
            b.at.setting(&profile.systemd.mode, "systemd.mode"),
        ),
        resources: cgroup::limits(&b.at, &profile.resources),
        cgroup,
        memory_max: profile
            .resources
            .memory_max
            .as_ref()
            .map(|m| m.value.to_string()),
        journal_identifier: (or(&profile.logging.journal, false) && !inv.under_unit).then(|| {
            Decided::new(
                name.to_owned(),
                b.at.setting(&profile.logging.journal, "logging.journal"),
            )
        }),
        notify,
        ready_after_exec: inv.notify_socket.is_some() && !relay,
        notes: notes.render(input.sources),
    })
}

/// The hostname of a sandbox whose profile sets none: the profile's name made a valid
/// hostname (characters other than letters, digits, `-` and `.` become `-`; `-` and empty
/// labels trimmed; at most 64 characters), or "stockade" when nothing is left of it.
fn hostname_for(name: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut out = String::new();
    for label in mapped.split('.').map(|l| l.trim_matches('-')) {
        if label.is_empty() {
            continue;
        }
        let room = crate::profile::validate::HOSTNAME_MAX - out.len();
        let sep = usize::from(!out.is_empty());
        if room <= sep {
            break;
        }
        if sep == 1 {
            out.push('.');
        }
        out.push_str(label[..label.len().min(room - sep)].trim_end_matches('-'));
    }
    let out = out.trim_end_matches(['.', '-']).to_owned();
    if out.is_empty() {
        "stockade".into()
    } else {
        out
    }
}

fn namespaces(b: &Builder, p: &Profile) -> Vec<Decided<NamespaceChoice>> {
    let n = &p.namespaces;
    let all = [
        (Namespace::User, &n.user),
        (Namespace::Pid, &n.pid),
        (Namespace::Mount, &n.mount),
        (Namespace::Net, &n.net),
        (Namespace::Ipc, &n.ipc),
        (Namespace::Uts, &n.uts),
        (Namespace::Cgroup, &n.cgroup),
        (Namespace::Time, &n.time),
    ];
    all.into_iter()
        .zip(n.enabled())
        .map(|((kind, src), (key, enabled))| {
            // The schema, its defaults and the namespace table list the same keys in order
            // (the_namespace_table_and_the_schema_name_the_same_keys).
            debug_assert_eq!(kind.row().key, key);
            // `[network] mode = "host"` is the host's network namespace (plan::network).
            if let (Namespace::Net, None, Some(m)) = (kind, src, &p.network.mode) {
                return Decided::new(
                    NamespaceChoice {
                        kind,
                        enabled: m.value != crate::profile::values::NetMode::Host,
                    },
                    b.at.at(m, "network.mode"),
                );
            }
            Decided::new(
                NamespaceChoice { kind, enabled },
                b.at.setting(src, &format!("namespaces.{}", kind.row().key)),
            )
        })
        .collect()
}

pub(crate) struct Builder<'a> {
    pub(crate) host: &'a HostFacts,
    pub(crate) problems: Vec<Problem>,
    pub(crate) notes: Vec<Problem>,
    profile_path: &'a Path,
    /// Turns the origins of the values that decide into the plan's provenance.
    pub(crate) at: Resolver<'a>,
}

impl Builder<'_> {
    pub(crate) fn err<T>(&mut self, v: &Src<T>, key: &str, msg: impl Into<String>) {
        self.problems.push(Problem::at(v.origin, key, msg));
    }

    pub(crate) fn file_err(&mut self, key: &str, msg: impl Into<String>) {
        self.problems.push(Problem::new(
            At::File(self.profile_path.to_owned()),
            Some(key.to_owned()),
            msg,
        ));
    }

    /// A host fact, with one that was not gathered reported as the bug it is: in release
    /// builds it is a problem, so the plan is refused rather than built on a guess (debug
    /// builds have stopped at the lookup already). The caller still sees the error and
    /// decides as for any fact that cannot be told.
    pub(crate) fn fact<T>(&mut self, fact: Fact<T>) -> Fact<T> {
        if let Err(e @ FactError::NotGathered(_)) = &fact {
            self.problems.push(Problem::new(
                At::File(self.profile_path.to_owned()),
                None::<String>,
                e.to_string(),
            ));
        }
        fact
    }

    pub(crate) fn file_note(&mut self, key: &str, msg: impl Into<String>) {
        self.notes.push(Problem::new(
            At::File(self.profile_path.to_owned()),
            Some(key.to_owned()),
            msg,
        ));
    }

    fn credentials(&mut self, p: &Profile, userns: bool) -> Credentials {
        let e = &p.exec;
        let (uid, user_gid) = match &e.user {
            None => (0, Some(0)),
            Some(u) => match &u.value {
                IdRef::Id(id) => (*id, self.host.user_by_id(*id).map(|u| u.gid)),
                IdRef::Name(n) => match self.host.user_by_name(n) {
                    Ok(Some(user)) => (user.uid, Some(user.gid)),
                    Ok(None) => {
                        let msg = format!("no user `{n}` in {}", self.host.passwd_path.display());
                        self.err(u, "exec.user", msg);
                        (0, Some(0))
                    }
                    Err(err) => {
                        let msg = format!("cannot read the user database: {err}");
                        self.err(u, "exec.user", msg);
                        (0, Some(0))
                    }
                },
            },
        };
        let gid = match &e.group {
            None => Decided::new(
                user_gid.unwrap_or(uid),
                self.at.setting(&e.user, "exec.user"),
            ),
            Some(g) => Decided::new(
                self.gid_of(g, "exec.group").unwrap_or(0),
                self.at.at(g, "exec.group"),
            ),
        };
        let mut groups = Vec::new();
        if let Some(list) = &e.supplementary_groups {
            for g in &list.value {
                let src = Src::new(g.clone(), list.origin);
                if let Some(id) = self.gid_of(&src, "exec.supplementary_groups") {
                    groups.push(id);
                }
            }
        }
        Credentials {
            uid: Decided::new(uid, self.at.setting(&e.user, "exec.user")),
            gid,
            groups: Decided::new(
                groups,
                self.at
                    .setting(&e.supplementary_groups, "exec.supplementary_groups"),
            ),
            setgroups_denied: userns && self.host.euid != 0,
        }
    }

    fn gid_of(&mut self, g: &Src<IdRef>, key: &str) -> Option<u32> {
        match &g.value {
            IdRef::Id(id) => Some(*id),
            IdRef::Name(n) => match self.host.group_by_name(n) {
                Ok(Some(group)) => Some(group.gid),
                Ok(None) => {
                    let msg = format!("no group `{n}` in {}", self.host.group_path.display());
                    self.err(g, key, msg);
                    None
                }
                Err(err) => {
                    let msg = format!("cannot read the group database: {err}");
                    self.err(g, key, msg);
                    None
                }
            },
        }
    }

    /// The id maps. Without `[idmap]`, root's sandboxes map their ids 0-65535 to a host
    /// range of their own ([`IdClaim`]), so root inside is an unprivileged id outside; only
    /// the service's own user and groups keep their host ids, so the files the package gave
    /// them (a config readable by `redis` only, a data directory) still are theirs. Without
    /// root, the kernel allows only the caller's own id, mapped to 0.
    fn idmap(
        &mut self,
        p: &Profile,
        name: &str,
        creds: &Credentials,
        inv: &Invocation,
    ) -> (Option<IdMaps>, Option<IdClaim>) {
        let root = self.host.euid == 0;
        let explicit = p.idmap.uid.is_some() && p.idmap.gid.is_some();
        let claim = (root && !explicit).then(|| self.claim(name, inv)).flatten();
        let default = |caller: u32, own: &[u32]| match &claim {
            Some(c) => ranged(c.base(), own),
            None => vec![IdRange {
                inside: 0,
                outside: caller,
                count: 1,
            }],
        };
        let uid_map = p
            .idmap
            .uid
            .as_ref()
            .map(|m| m.value.clone())
            .unwrap_or_else(|| default(self.host.euid, &[*creds.uid]));
        let mut wanted_gids = vec![*creds.gid];
        wanted_gids.extend(creds.groups.iter());
        let gid_map = p
            .idmap
            .gid
            .as_ref()
            .map(|m| m.value.clone())
            .unwrap_or_else(|| default(self.host.egid, &wanted_gids));
        for (key, map) in [("idmap.uid", &p.idmap.uid), ("idmap.gid", &p.idmap.gid)] {
            if let Some(m) = map {
                if m.value.iter().any(|r| r.outside == 0) {
                    self.notes.push(Problem::at(m.origin, key, "maps host id 0 (root) into the sandbox: what runs as that id inside is root on the host"));
                }
            }
        }
        let mapped = |map: &[IdRange], id: u32| {
            map.iter()
                .any(|r| id >= r.inside && u64::from(id) < u64::from(r.inside) + u64::from(r.count))
        };
        if !mapped(&uid_map, *creds.uid) {
            match (&p.idmap.uid, &p.exec.user) {
                (Some(m), _) => self.err(m, "idmap.uid", format!("the service's uid {} is not mapped inside the sandbox", *creds.uid)),
                (None, Some(u)) => self.err(u, "exec.user", format!("uid {} cannot be mapped without root: an unprivileged user namespace maps only your own uid (as 0)", *creds.uid)),
                (None, None) => {}
            }
        }
        for gid in wanted_gids {
            if !mapped(&gid_map, gid) {
                match &p.idmap.gid {
                    Some(m) => self.err(m, "idmap.gid", format!("gid {gid} used by the service is not mapped inside the sandbox")),
                    None => self.file_err("exec.group", format!("gid {gid} cannot be mapped without root: an unprivileged user namespace maps only your own gid (as 0)")),
                }
            }
        }
        let init_becomes_root = mapped(&uid_map, 0) && mapped(&gid_map, 0);
        // Without [idmap] the map follows from the claim (root) or the caller's own ids.
        let map_from = |v: &Option<Src<Vec<IdRange>>>, key: &str| match v {
            Some(m) => self.at.at(m, key),
            None if claim.is_some() => Provenance::default("idmap: the profile's id range"),
            None => Provenance::default("idmap: the caller's own id"),
        };
        let maps = IdMaps {
            uid_map: Decided::new(uid_map, map_from(&p.idmap.uid, "idmap.uid")),
            gid_map: Decided::new(gid_map, map_from(&p.idmap.gid, "idmap.gid")),
            deny_setgroups: !root,
            init_becomes_root,
        };
        (Some(maps), claim)
    }

    /// The profile's claimed id range, or the first free one from a slot its name hashes
    /// to (so a lost claims directory tends to give the same range back).
    fn claim(&mut self, name: &str, inv: &Invocation) -> Option<IdClaim> {
        let safe = !name.is_empty()
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
        if !safe {
            self.file_err("idmap", format!("the profile name `{name}` cannot name an id range in {} (letters, digits, `-_.@`, not starting with `.`); rename the file or give an explicit [idmap]", inv.ids_dir.display()));
            return None;
        }
        let dir = inv.ids_dir.clone();
        let failed = |b: &mut Self, e: String| {
            b.file_err(
                "idmap",
                format!("cannot read the id-range claims in {}: {e}", dir.display()),
            );
        };
        let claims = match &self.host.claims {
            Ok(c) => c.clone(),
            Err(e) => {
                failed(self, e.clone());
                return None;
            }
        };
        if let Some(slot) = claims.own.filter(|&s| s < ID_SLOTS) {
            return Some(IdClaim {
                dir: inv.ids_dir.clone(),
                name: name.to_owned(),
                slot,
                new: false,
            });
        }
        let used = claims.used;
        // FNV-1a: stable across builds and machines, unlike std's hasher.
        let hash = name.bytes().fold(0x811c_9dc5u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        let start = hash % ID_SLOTS;
        let free = (0..ID_SLOTS)
            .map(|i| (start + i) % ID_SLOTS)
            .find(|s| !used.contains(s));
        let Some(slot) = free else {
            self.file_err("idmap", format!("all {ID_SLOTS} id ranges in {} are claimed; remove the claims of profiles that are gone, or give an explicit [idmap]", inv.ids_dir.display()));
            return None;
        };
        Some(IdClaim {
            dir: inv.ids_dir.clone(),
            name: name.to_owned(),
            slot,
            new: true,
        })
    }

    /// Without root, only a user namespace mapping the caller alone is possible.
    fn privileges(&mut self, p: &Profile, userns: bool) {
        if self.host.euid == 0 {
            return;
        }
        let why = format!("needs root (stockade runs as uid {})", self.host.euid);
        if !userns {
            match &p.namespaces.user {
                Some(u) => self.err(u, "namespaces.user", format!("{why}: without a user namespace, creating namespaces and mounts requires CAP_SYS_ADMIN")),
                None => self.file_err("namespaces.user", why.clone()),
            }
        }
        for (key, map) in [("idmap.uid", &p.idmap.uid), ("idmap.gid", &p.idmap.gid)] {
            if let Some(m) = map {
                self.err(
                    m,
                    key,
                    format!("{why}: only root can map ids other than its own"),
                );
            }
        }
        if let Some(g) = &p.exec.supplementary_groups {
            if !g.value.is_empty() {
                self.err(
                    g,
                    "exec.supplementary_groups",
                    format!("{why}: setgroups is denied in an unprivileged user namespace"),
                );
            }
        }
    }

    fn volumes<'p>(
        &mut self,
        p: &'p Profile,
        inv: &Invocation,
        idmap: Option<&IdMaps>,
        creds: &Credentials,
        claim: Option<&IdClaim>,
    ) -> Vec<(Volume, &'p Src<crate::profile::schema::Mount>)> {
        let outside = |map: Option<&Vec<IdRange>>, id: u32| match map {
            None => Some(id),
            Some(m) => m.iter().find_map(|r| {
                (id >= r.inside && u64::from(id) < u64::from(r.inside) + u64::from(r.count))
                    .then(|| r.outside + (id - r.inside))
            }),
        };
        let mut out = Vec::new();
        for m in p.mount.iter().filter(|m| {
            m.kind
                .as_ref()
                .is_some_and(|k| k.value == crate::profile::values::MountType::Volume)
        }) {
            let Some(name) = &m.name else { continue };
            let (uid, gid) = (*creds.uid, *creds.gid);
            if self.host.euid != 0 {
                self.err(
                    name,
                    "mount.name",
                    format!(
                        "needs root (stockade runs as uid {}): volumes live in {}",
                        self.host.euid,
                        inv.volume_dir.display()
                    ),
                );
            }
            let uid = outside(idmap.map(|i| &i.uid_map.value), uid).unwrap_or(uid);
            let gid = outside(idmap.map(|i| &i.gid_map.value), gid).unwrap_or(gid);
            let host_path = inv.volume_dir.join(&name.value);
            // Before id ranges, a root service's volume was owned by host root.
            let carry_root_to = match claim.filter(|_| *creds.uid == 0) {
                Some(c) => {
                    let owner = self.fact(self.host.owner(&host_path.display().to_string()));
                    (owner == Ok(Some((0, 0)))).then(|| (c.base(), c.base()))
                }
                None => None,
            };
            out.push((
                Volume {
                    host_path,
                    uid,
                    gid,
                    carry_root_to,
                },
                m,
            ));
        }
        out
    }

    fn argv(&mut self, p: &Profile, inv: &Invocation) -> Decided<Vec<String>> {
        let mut argv = p
            .exec
            .command
            .as_ref()
            .map(|c| c.value.clone())
            .unwrap_or_default();
        if !inv.extra_args.is_empty() {
            if or(&p.exec.args_append, false) {
                argv.extend(inv.extra_args.iter().cloned());
            } else {
                match &p.exec.args_append {
                    Some(a) => self.err(a, "exec.args_append", "this profile does not accept extra arguments after `--`"),
                    None => self.file_err("exec.args_append", "this profile does not accept extra arguments after `--` (set `args_append = true` in [exec] to allow them)"),
                }
            }
        }
        Decided::new(argv, self.at.setting(&p.exec.command, "exec.command"))
    }

    /// Where the relayed notify socket appears inside: on a tmpfs stockade mounts, because
    /// the socket file is bound there and a mount point cannot be created on the host root.
    fn notify_target(&mut self, fs: Option<&FsPlan>) -> Option<String> {
        let Some(fs) = fs else {
            self.file_err("namespaces.mount", "relaying sd_notify (NOTIFY_SOCKET is set) needs a mount namespace to place the service's notify socket");
            return None;
        };
        let tmpfs: Vec<&str> = fs
            .ops
            .iter()
            .filter_map(|o| match &o.value {
                MountOp::Tmpfs {
                    target,
                    read_only: false,
                    ..
                } => Some(target.as_str()),
                _ => None,
            })
            .collect();
        for dir in NOTIFY_DIRS {
            if tmpfs.contains(&dir) || (dir == "/run" && fs.root == RootSource::Empty) {
                return Some(notify_target(dir));
            }
        }
        self.file_err("filesystem.private_dev", "relaying sd_notify (NOTIFY_SOCKET is set) needs a tmpfs to place the service's notify socket: keep private_dev or private_tmp, or mount a tmpfs on /run");
        None
    }

    fn finals(&mut self, p: &Profile, memfd_seccomp: bool) -> FinalSteps {
        let s = &p.security;
        let landlock = landlock_rules(p).map(|rules| {
            rules
                .into_iter()
                .map(|(path, access, list)| {
                    Decided::new(
                        LandlockRule { path, access },
                        self.at.at(list, access.key()),
                    )
                })
                .collect()
        });
        let capabilities: Vec<caps::Capability> = s
            .capabilities
            .iter()
            .flat_map(|c| c.value.iter())
            .filter_map(|c| capability(c))
            .collect();
        seccomp::check(self, p);
        let mut syscalls = seccomp::plan(&self.at, p, &capabilities, memfd_seccomp);
        if let Some(e) = s.explain.as_ref().filter(|e| e.value) {
            if let Err(why) = seccomp::explain(&mut syscalls, self.at.at(e, "security.explain")) {
                self.err(e, "security.explain", why);
            }
        }
        FinalSteps {
            syscalls,
            scope_abstract_sockets: false,
            landlock_best_effort: or(&s.landlock_best_effort, false),
            rlimits: self.rlimits(p),
            umask: Decided::new(
                p.exec.umask.as_ref().map_or(0o022, |u| u.value.0),
                self.at.setting(&p.exec.umask, "exec.umask"),
            ),
            landlock,
            capabilities: Decided::new(
                capabilities,
                self.at.setting(&s.capabilities, "security.capabilities"),
            ),
            no_new_privs: Decided::new(
                or(&s.no_new_privileges, true),
                self.at
                    .setting(&s.no_new_privileges, "security.no_new_privileges"),
            ),
        }
    }
}

impl Access {
    /// The landlock list of the profile this access is written in.
    fn key(self) -> &'static str {
        match self {
            Access::Read => "security.landlock.read",
            Access::Write => "security.landlock.write",
            Access::Exec => "security.landlock.exec",
        }
    }
}

impl Builder<'_> {
    /// The limits, each by its resource; none may exceed what the kernel allows.
    fn rlimits(&mut self, p: &Profile) -> Vec<Decided<Rlimit>> {
        let mut out = Vec::new();
        for (name, v) in &p.exec.rlimits {
            let key = format!("exec.rlimits.{name}");
            let Some(res) = rlimit(name) else {
                self.err(v, &key, "unknown resource limit");
                continue;
            };
            if let (Resource::RLIMIT_NOFILE, Limit::Value(n)) = (res, v.value) {
                match &self.host.nr_open {
                    Ok(Some(max)) if n > *max => {
                        let max = *max;
                        self.err(v, &key, format!("{n} is above the kernel's limit fs.nr_open = {max}; use at most {max}, or raise it with `sysctl fs.nr_open={n}`"))
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let msg = format!(
                            "cannot read the kernel's limit fs.nr_open from {}: {e}",
                            self.host.nr_open_path.display()
                        );
                        self.err(v, &key, msg)
                    }
                }
            }
            out.push(Decided::new(
                Rlimit {
                    resource: res,
                    limit: v.value,
                },
                self.at.at(v, &key),
            ));
        }
        out
    }
}

/// A landlock rule's normalized path, its access and the list it is written in.
type RuleAt<'p> = (String, Access, &'p Src<Vec<String>>);

/// The profile's landlock rules, paths normalized, each with the list it is written in;
/// None without landlock.
fn landlock_rules(p: &Profile) -> Option<Vec<RuleAt<'_>>> {
    p.security.landlock.as_ref().map(|l| {
        let mut rules = Vec::new();
        for (list, access) in [
            (&l.read, Access::Read),
            (&l.write, Access::Write),
            (&l.exec, Access::Exec),
        ] {
            for list in list.iter() {
                for path in &list.value {
                    rules.push((
                        crate::profile::validate::normalize_abs(path)
                            .unwrap_or_else(|_| path.clone()),
                        access,
                        list,
                    ));
                }
            }
        }
        rules
    })
}

/// ids 0..[`ID_RANGE`] mapped to `base..`, except `own` (the service's user or groups),
/// which keep their host ids; root (0) is never one of those.
fn ranged(base: u32, own: &[u32]) -> Vec<IdRange> {
    let mut holes: Vec<u32> = own.iter().copied().filter(|&id| id != 0).collect();
    holes.sort_unstable();
    holes.dedup();
    let mut out = Vec::new();
    let mut next = 0;
    for &id in holes.iter().filter(|&&id| id < ID_RANGE) {
        if id > next {
            out.push(IdRange {
                inside: next,
                outside: base + next,
                count: id - next,
            });
        }
        out.push(IdRange {
            inside: id,
            outside: id,
            count: 1,
        });
        next = id + 1;
    }
    if next < ID_RANGE {
        out.push(IdRange {
            inside: next,
            outside: base + next,
            count: ID_RANGE - next,
        });
    }
    out.extend(
        holes
            .iter()
            .filter(|&&id| id >= ID_RANGE)
            .map(|&id| IdRange {
                inside: id,
                outside: id,
                count: 1,
            }),
    );
    out
}
