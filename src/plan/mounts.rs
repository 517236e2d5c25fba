//! The mount half of the plan: the new root, the standard private mounts (/proc, /dev, /tmp),
//! hidden paths and the profile's `[[mount]]` entries, as one list ordered parents first.
//!
//! Mount points are created only on filesystems stockade itself made (its tmpfs mounts, the
//! "empty" root); on the host's root they must already exist, because creating them would
//! write to the host.
//!
//! What it asks about the host (the root, bind sources, targets below the root, kernel
//! files) is named by [`needs`] and read from the gathered facts, never from the host.

use super::record::Decided;
use super::{Access, Builder, Invocation, Namespace, Provenance, Volume};
use crate::host::{Needs, PathKind};
use crate::profile::schema::{or, Filesystem, Mount, Profile};
use crate::profile::validate::normalize_abs;
use crate::profile::values::MountType;
use crate::profile::{Problem, Src};
use serde::{Deserialize, Serialize};

/// Where the sandbox root comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootSource {
    /// A host directory ("/" for the host root), bound recursively.
    Host(String),
    /// A fresh tmpfs.
    Empty,
}

/// What a missing mount point is created as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    Dir,
    File,
}

/// One mount operation. Targets are paths inside the sandbox; bind sources are host paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountOp {
    Bind {
        source: String,
        target: String,
        read_only: bool,
        noexec: bool,
        /// Create the mount point first (it lies on a stockade tmpfs).
        create: Option<NodeKind>,
    },
    Tmpfs {
        target: String,
        /// Its own decision: the size setting is not the one that asked for the mount.
        size: Decided<Option<u64>>,
        mode: u32,
        noexec: bool,
        read_only: bool,
        create: bool,
    },
    Proc {
        target: String,
        create: bool,
    },
    /// A fresh, read-only sysfs, so /sys/class/net shows the sandbox's network namespace.
    Sysfs {
        target: String,
    },
    Devpts {
        target: String,
    },
    Mqueue {
        target: String,
    },
    Symlink {
        target: String,
        text: String,
    },
    /// An empty, mode 0000 file (or directory) bound read-only over a path to hide it:
    /// a bind, not a tmpfs per hidden directory, which would cost a superblock each.
    Hide {
        target: String,
        dir: bool,
    },
    /// A path of the sandbox bound onto itself and made read-only, with what is below it.
    ReadOnly {
        target: String,
    },
}

impl MountOp {
    pub fn target(&self) -> &str {
        match self {
            MountOp::Bind { target, .. }
            | MountOp::Tmpfs { target, .. }
            | MountOp::Proc { target, .. }
            | MountOp::Devpts { target }
            | MountOp::Sysfs { target }
            | MountOp::Mqueue { target }
            | MountOp::Symlink { target, .. }
            | MountOp::Hide { target, .. }
            | MountOp::ReadOnly { target } => target,
        }
    }

    fn set_create(&mut self, kind: NodeKind) {
        match self {
            MountOp::Bind { create, .. } => *create = Some(kind),
            MountOp::Tmpfs { create, .. } | MountOp::Proc { create, .. } => *create = true,
            // These are only ever planned on stockade's own tmpfs and always create.
            MountOp::Devpts { .. }
            | MountOp::Sysfs { .. }
            | MountOp::Mqueue { .. }
            | MountOp::Symlink { .. }
            | MountOp::Hide { .. }
            | MountOp::ReadOnly { .. } => {}
        }
    }
}

/// The filesystem half of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsPlan {
    pub root: RootSource,
    /// Make the root read-only: recursively right after binding it (host roots), or after
    /// every mount point is made (the empty root).
    pub read_only: Decided<bool>,
    /// Each operation with the setting that asked for it.
    pub ops: Vec<Decided<MountOp>>,
}

fn depth(path: &str) -> usize {
    path.split('/').filter(|c| !c.is_empty()).count()
}

pub(super) use crate::host::walk::is_below;

/// One planned operation with what the plan must still check about its target.
struct Entry<'p> {
    op: MountOp,
    /// Why the mount is there, for the record.
    from: Provenance,
    /// The kind of node the target must be.
    kind: NodeKind,
    /// Where the mount was written, for messages; None for built-in mounts.
    origin: Option<(&'p Src<String>, String)>,
    /// The setting a built-in mount comes from, for messages.
    setting: &'static str,
    /// Makes its target a tmpfs on which later mount points may be created.
    own_tmpfs: bool,
    /// Its target was checked when it was planned (kernel files, stockade's own state).
    checked: bool,
}

const PROTECT_KERNEL: &str = "security.protect_kernel";
/// The hiding of stockade's own state (not a setting: it cannot be turned off).
const STATE: &str = "filesystem (stockade's state)";

/// Kernel interfaces a service has no business reading: they leak kernel memory layout,
/// other tenants' activity or hardware details (the list Docker and systemd mask).
const PROC_MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/key-users",
    "/proc/kpagecgroup",
    "/proc/kpagecount",
    "/proc/kpageflags",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
];
/// Kernel settings a service must not change, even as root of its user namespace.
const PROC_READ_ONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];
const SYS_MASKED: &[&str] = &["/sys/firmware", "/sys/devices/virtual/powercap"];
/// Filesystems mounted below the host's /sys; a fresh sysfs has only empty directories there.
const HOST_SYS_MASKED: &[&str] = &["/sys/kernel/debug", "/sys/kernel/tracing"];

/// Every kernel path whose kind the masks depend on: the host facts hold their kinds.
pub(super) fn kernel_paths() -> impl Iterator<Item = &'static str> {
    [PROC_MASKED, PROC_READ_ONLY, SYS_MASKED, HOST_SYS_MASKED]
        .into_iter()
        .flatten()
        .copied()
}

/// The host's device nodes bound into the private /dev.
pub const DEV_NODES: [&str; 6] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
];
/// The symlinks the private /dev holds, as (target, text); ptmx is planned with devpts.
const DEV_PTMX: (&str, &str) = ("/dev/ptmx", "pts/ptmx");
const DEV_LINKS: [(&str, &str); 4] = [
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
];
const TMP_DIRS: [&str; 2] = ["/tmp", "/var/tmp"];

/// Every target of a built-in mount that may be checked on a host root, and the host paths
/// the planner looks for there (/sys, /run, stockade's state). One missing here is found
/// by every test: the lookup panics in debug builds (see `FactError::NotGathered`).
fn builtin_targets() -> impl Iterator<Item = &'static str> {
    ["/proc", "/sys", "/dev", "/dev/shm", "/run"]
        .into_iter()
        .chain(DEV_NODES)
        .chain(TMP_DIRS)
        .chain([super::STATE_DIR, super::RUN_DIR])
}

/// Where the sandbox root comes from, as the profile says (whether a host root is a
/// directory is checked as the plan is built).
pub(super) fn root_source(fs: &Filesystem) -> RootSource {
    let root_text = or(&fs.root, "/".to_owned());
    if root_text == "empty" {
        RootSource::Empty
    } else {
        RootSource::Host(normalize_abs(&root_text).unwrap_or(root_text))
    }
}

/// The `[[mount]]` entries of one type, with their normalized targets.
fn mounts_of(p: &Profile, kind: MountType) -> impl Iterator<Item = (&Mount, String)> {
    p.mount.iter().filter_map(move |m| {
        let target = normalize_abs(&m.target.as_ref()?.value).ok()?;
        (m.kind.as_ref()?.value == kind).then_some((&m.value, target))
    })
}

/// What [`plan`] asks about the host, and what the sandbox view may see of it through the
/// mounts (see `ViewNeeds`): the root's kind; each bind source's kind and resolution; every
/// target, built-in or the profile's, below the host root. Only with a mount namespace,
/// as [`plan`] runs only then.
pub(super) fn needs(p: &Profile, inv: &Invocation, n: &mut Needs) {
    if !p.namespaces.is("mount") {
        n.view.roots.push("/".into());
        return;
    }
    let fs = &p.filesystem;
    if let RootSource::Host(r) = root_source(fs) {
        if r != "/" {
            n.stat.push(r.clone());
        }
        let targets = p
            .mount
            .iter()
            .filter_map(|m| normalize_abs(&m.target.as_ref()?.value).ok());
        let hidden = fs
            .hide
            .iter()
            .flat_map(|h| h.value.iter())
            .filter_map(|h| normalize_abs(h).ok());
        let below = builtin_targets()
            .map(str::to_owned)
            .chain(targets)
            .chain(hidden);
        n.below.extend(below.map(|t| (r.clone(), t)));
        n.view.roots.push(r);
    }
    for (m, target) in mounts_of(p, MountType::Bind) {
        let Some(source) = &m.source else { continue };
        n.stat.push(source.value.clone());
        n.resolve.push(source.value.clone());
        n.view.binds.push((target, source.value.clone()));
    }
    for (m, target) in mounts_of(p, MountType::Volume) {
        let Some(name) = &m.name else { continue };
        let source = inv.volume_dir.join(&name.value).display().to_string();
        n.view.binds.push((target, source));
    }
    for (m, target) in mounts_of(p, MountType::Symlink) {
        let Some(text) = &m.source else { continue };
        n.view.links.push((target, text.value.clone()));
    }
    if or(&fs.proc, true) && !p.namespaces.is("pid") {
        n.view.binds.push(("/proc".into(), "/proc".into()));
    }
    if or(&fs.private_dev, true) {
        let nodes = DEV_NODES.map(|d| (d.to_owned(), d.to_owned()));
        n.view.binds.extend(nodes);
        let links = [DEV_PTMX].into_iter().chain(DEV_LINKS);
        let links = links.map(|(t, text)| (t.to_owned(), text.to_owned()));
        n.view.links.extend(links);
    }
}

/// Whether the profile's landlock rules let the service at `path` at all (`write`: to write
/// there): a rule at the path, above or below it. Landlock denies everything else, so a mask
/// there would guard what is already out of reach.
fn landlock_reaches(rules: Option<&[(String, Access)]>, path: &str, write: bool) -> bool {
    let Some(rules) = rules else {
        return true;
    };
    rules.iter().any(|(rule, access)| {
        (*access == Access::Write || !write)
            && (rule == path || is_below(path, rule) || is_below(rule, path))
    })
}

/// The mounts `protect_kernel` adds. What exists is read from the host: a fresh /proc or
/// sysfs shows the same kernel's files. Paths the profile's landlock rules keep the service
/// away from need no mount: each costs time at every start.
fn kernel_masks(
    b: &mut Builder,
    from: Provenance,
    landlock: Option<&[(String, Access)]>,
    proc: bool,
    fresh_sys: bool,
    host_sys: bool,
) -> Vec<Entry<'static>> {
    let reaches = |path: &str, write: bool| landlock_reaches(landlock, path, write);
    let mut out = Vec::new();
    let entry = |op| Entry {
        op,
        from: from.clone(),
        kind: NodeKind::Dir,
        origin: None,
        setting: PROTECT_KERNEL,
        own_tmpfs: false,
        checked: true,
    };
    let masked = PROC_MASKED.iter().filter(|_| proc);
    let sys_masked = SYS_MASKED.iter().filter(|_| fresh_sys || host_sys);
    for path in masked
        .chain(sys_masked)
        .chain(HOST_SYS_MASKED.iter().filter(|_| host_sys))
    {
        if !reaches(path, false) {
            continue;
        }
        let dir = match b.fact(b.host.kind(path)) {
            Ok(Some(PathKind::Dir)) => true,
            Ok(Some(PathKind::File | PathKind::Other)) => false,
            // Absent on this kernel: nothing to mask. A symlink is never masked: hiding it
            // would cover whatever it points at.
            Ok(None | Some(PathKind::Symlink)) => continue,
            // Unknown is not absent: a mask skipped on an error would leave the path open.
            Err(e) => {
                b.file_err(
                    PROTECT_KERNEL,
                    format!("cannot inspect `{path}` on this host to mask it: {e}"),
                );
                continue;
            }
        };
        let op = MountOp::Hide {
            target: (*path).into(),
            dir,
        };
        out.push(entry(op));
    }
    for path in PROC_READ_ONLY.iter().filter(|_| proc) {
        if !reaches(path, true) {
            continue;
        }
        let kind = b.fact(b.host.kind(path));
        if let Err(e) = &kind {
            b.file_err(
                PROTECT_KERNEL,
                format!("cannot inspect `{path}` on this host to make it read-only: {e}"),
            );
        }
        if matches!(kind, Ok(Some(PathKind::Dir | PathKind::File))) {
            out.push(entry(MountOp::ReadOnly {
                target: (*path).into(),
            }));
        }
    }
    // A fresh sysfs is mounted read-only already; the host's needs it done.
    if host_sys && reaches("/sys", true) {
        out.push(entry(MountOp::ReadOnly {
            target: "/sys".into(),
        }));
    }
    out
}

/// What the mount planner needs from the rest of the plan.
pub(super) struct Context<'a, 'p> {
    pub volumes: &'a [(Volume, &'p Src<Mount>)],
    pub namespaces: &'a [Namespace],
    /// The sandbox stage creates stockade's state directory before the mounts (a volume,
    /// an id-range claim), so it must be hidden even though it is not there yet.
    pub creates_state: bool,
    /// The profile restricts exec with landlock: writable mounts get noexec, or a loader
    /// (`ld.so /tmp/prog`) would run what the exec rules forbid.
    pub exec_locked: bool,
}

/// Default sizes of the built-in tmpfs mounts: a tmpfs without a size may fill half of RAM.
pub const TMP_SIZE: u64 = 128 << 20;
pub const SHM_SIZE: u64 = 64 << 20;
pub const RUN_SIZE: u64 = 16 << 20;
pub const MOUNT_TMPFS_SIZE: u64 = 64 << 20;
/// The private /dev holds device nodes and symlinks only.
const DEV_SIZE: u64 = 1 << 20;

pub(super) fn plan(b: &mut Builder, p: &Profile, ctx: &Context) -> Option<FsPlan> {
    let (volumes, namespaces) = (ctx.volumes, ctx.namespaces);
    let fs = &p.filesystem;
    let at = b.at;
    let landlock: Option<Vec<(String, Access)>> = super::landlock_rules(p)
        .map(|rules| rules.into_iter().map(|(path, a, _)| (path, a)).collect());
    // A writable mount is noexec when exec is locked, unless an exec rule covers all of
    // it (at or above its target): the profile lets everything there run anyway.
    let exec_rules: Vec<String> = landlock
        .iter()
        .flatten()
        .filter(|(_, a)| *a == Access::Exec)
        .map(|(path, _)| path.clone())
        .collect();
    let noexec = |target: &str| {
        ctx.exec_locked
            && !exec_rules
                .iter()
                .any(|r| r == target || is_below(target, r))
    };
    let size_of = |v: &Option<Src<crate::profile::values::Size>>, key: &str, default: u64| {
        Decided::new(
            Some(v.as_ref().and_then(|s| s.value.bytes()).unwrap_or(default)),
            at.setting(v, key),
        )
    };
    // A [[mount]] at the target of a built-in tmpfs replaces it.
    let profile_targets: Vec<String> = p
        .mount
        .iter()
        .filter_map(|m| m.target.as_ref())
        .filter_map(|t| normalize_abs(&t.value).ok())
        .collect();
    let builtin_wanted = |target: &str| !profile_targets.iter().any(|t| t == target);
    let root = root_source(fs);
    if let RootSource::Host(r) = &root {
        if r != "/" {
            match b.fact(b.host.kind(r)) {
                Ok(Some(PathKind::Dir)) => {}
                _ => {
                    if let Some(src) = &fs.root {
                        b.err(
                            src,
                            "filesystem.root",
                            format!("`{r}` is not a directory on the host"),
                        );
                    }
                }
            }
        }
    }

    let mut entries: Vec<Entry> = Vec::new();
    let mut setting = "filesystem.proc";
    // The provenance of a built-in mount: the setting that turned it on, written or default.
    let on_by = |setting: &'static str| match setting {
        "filesystem.proc" => at.setting(&fs.proc, setting),
        "namespaces.net" => at.setting(&p.namespaces.net, setting),
        "filesystem.private_dev" => at.setting(&fs.private_dev, setting),
        "filesystem.private_tmp" => at.setting(&fs.private_tmp, setting),
        "filesystem.private_run" => at.setting(&fs.private_run, setting),
        _ => Provenance::default(setting),
    };
    let builtin = |op: MountOp, kind: NodeKind, own_tmpfs: bool, setting: &'static str| Entry {
        op,
        from: on_by(setting),
        kind,
        origin: None,
        setting,
        own_tmpfs,
        checked: false,
    };
    let tmpfs =
        |target: &str, mode: u32, size: Decided<Option<u64>>, noexec: bool| MountOp::Tmpfs {
            target: target.into(),
            size,
            mode,
            noexec,
            read_only: false,
            create: false,
        };
    if or(&fs.proc, true) {
        // A procfs belongs to a pid namespace: without our own, show the host's read-only.
        let op = if namespaces.contains(&Namespace::Pid) {
            MountOp::Proc {
                target: "/proc".into(),
                create: false,
            }
        } else {
            MountOp::Bind {
                source: "/proc".into(),
                target: "/proc".into(),
                read_only: true,
                noexec: true,
                create: None,
            }
        };
        entries.push(builtin(op, NodeKind::Dir, false, setting));
    }
    // The host's /sys would show the host's network devices; a root without /sys gets none.
    let has_sys = match &root {
        RootSource::Host(r) => matches!(
            b.fact(b.host.kind_below(r, "/sys")),
            Ok(Some((PathKind::Dir, _)))
        ),
        RootSource::Empty => false,
    };
    setting = "namespaces.net";
    if namespaces.contains(&Namespace::Net) && has_sys {
        entries.push(builtin(
            MountOp::Sysfs {
                target: "/sys".into(),
            },
            NodeKind::Dir,
            false,
            setting,
        ));
    }
    if or(&p.security.protect_kernel, true) {
        let proc = or(&fs.proc, true);
        let fresh_sys = namespaces.contains(&Namespace::Net) && has_sys;
        let host_sys = root == RootSource::Host("/".into()) && !fresh_sys;
        entries.extend(kernel_masks(
            b,
            at.setting(&p.security.protect_kernel, PROTECT_KERNEL),
            landlock.as_deref(),
            proc,
            fresh_sys,
            host_sys,
        ));
    }
    setting = "filesystem.private_dev";
    if or(&fs.private_dev, true) {
        entries.push(builtin(
            tmpfs(
                "/dev",
                0o755,
                Decided::new(
                    Some(DEV_SIZE),
                    Provenance::default("filesystem.private_dev"),
                ),
                true,
            ),
            NodeKind::Dir,
            true,
            setting,
        ));
        for path in DEV_NODES {
            entries.push(builtin(
                MountOp::Bind {
                    source: path.into(),
                    target: path.into(),
                    read_only: false,
                    noexec: true,
                    create: None,
                },
                NodeKind::File,
                false,
                setting,
            ));
        }
        entries.push(builtin(
            MountOp::Devpts {
                target: "/dev/pts".into(),
            },
            NodeKind::Dir,
            false,
            setting,
        ));
        entries.push(builtin(
            MountOp::Symlink {
                target: DEV_PTMX.0.into(),
                text: DEV_PTMX.1.into(),
            },
            NodeKind::File,
            false,
            setting,
        ));
        if builtin_wanted("/dev/shm") {
            entries.push(builtin(
                tmpfs(
                    "/dev/shm",
                    0o1777,
                    size_of(&fs.shm_size, "filesystem.shm_size", SHM_SIZE),
                    noexec("/dev/shm"),
                ),
                NodeKind::Dir,
                true,
                setting,
            ));
        }
        if namespaces.contains(&Namespace::Ipc) {
            entries.push(builtin(
                MountOp::Mqueue {
                    target: "/dev/mqueue".into(),
                },
                NodeKind::Dir,
                false,
                setting,
            ));
        }
        for (target, text) in DEV_LINKS {
            entries.push(builtin(
                MountOp::Symlink {
                    target: target.into(),
                    text: text.into(),
                },
                NodeKind::File,
                false,
                setting,
            ));
        }
    }
    setting = "filesystem.private_tmp";
    if or(&fs.private_tmp, true) {
        for dir in TMP_DIRS.into_iter().filter(|d| builtin_wanted(d)) {
            let size = size_of(&fs.tmp_size, "filesystem.tmp_size", TMP_SIZE);
            entries.push(builtin(
                tmpfs(dir, 0o1777, size, noexec(dir)),
                NodeKind::Dir,
                true,
                setting,
            ));
        }
    }
    // The host's /run holds its IPC endpoints (the system bus, systemd's private socket,
    // journald, docker.sock): read-only does not stop connect(2), so the sandbox gets its own.
    let host_has = |b: &mut Builder, path: &str| match &root {
        RootSource::Host(r) => {
            matches!(
                b.fact(b.host.kind_below(r, path)),
                Ok(Some((PathKind::Dir, _)))
            )
        }
        RootSource::Empty => false,
    };
    let private_run = or(&fs.private_run, true);
    if private_run && builtin_wanted("/run") && host_has(b, "/run") {
        entries.push(builtin(
            tmpfs(
                "/run",
                0o755,
                size_of(&fs.run_size, "filesystem.run_size", RUN_SIZE),
                noexec("/run"),
            ),
            NodeKind::Dir,
            true,
            "filesystem.private_run",
        ));
    }
    // stockade's own state: other sandboxes' volumes and id claims, notify relays.
    let mut hidden: Vec<String> = Vec::new();
    if root == RootSource::Host("/".into()) {
        let state = [
            (super::STATE_DIR, ctx.creates_state),
            (super::RUN_DIR, !private_run),
        ];
        for (dir, will_exist) in state {
            let exists = host_has(b, dir);
            let shadowed_by_run = private_run && is_below(dir, "/run");
            if (exists || will_exist) && !shadowed_by_run {
                hidden.push(dir.to_owned());
                entries.push(Entry {
                    op: MountOp::Hide {
                        target: dir.to_owned(),
                        dir: true,
                    },
                    from: Provenance::default(STATE),
                    kind: NodeKind::Dir,
                    origin: None,
                    setting: STATE,
                    own_tmpfs: false,
                    // The sandbox stage creates it before the mounts if it is not there.
                    checked: true,
                });
            }
        }
    }
    if let Some(hide) = &fs.hide {
        for h in &hide.value {
            let Ok(target) = normalize_abs(h) else {
                continue;
            };
            // Hiding what stockade mounts itself, or a parent of it, would break the sandbox.
            if let Some(e) = entries.iter().find(|e| {
                !matches!(e.setting, PROTECT_KERNEL | "filesystem.hide" | STATE)
                    && (e.op.target() == target || is_below(e.op.target(), &target))
            }) {
                let by = match e.setting {
                    "namespaces.net" => "a fresh sysfs, for namespaces.net",
                    s => s,
                };
                let msg = if e.op.target() == target {
                    format!("cannot hide `{target}`: stockade mounts it itself ({by}); turn that off, or hide paths below it")
                } else {
                    format!("cannot hide `{target}`: stockade mounts `{}` below it ({by}); turn that off, or hide paths beside it", e.op.target())
                };
                b.err(hide, "filesystem.hide", msg);
                continue;
            }
            let kind = match &root {
                RootSource::Host(r) => b.fact(b.host.kind_below(r, &target)),
                RootSource::Empty => Ok(None),
            };
            let op = match kind {
                Ok(None) => continue, // nothing there, nothing to hide
                Ok(Some((PathKind::Dir, _))) => MountOp::Hide {
                    target: target.clone(),
                    dir: true,
                },
                Ok(Some((PathKind::Symlink, at))) => {
                    b.err(hide, "filesystem.hide", format!("`{target}` passes through the symlink `{}`; hide the path it points to", at.display()));
                    continue;
                }
                Ok(Some(_)) => MountOp::Hide {
                    target: target.clone(),
                    dir: false,
                },
                Err(e) => {
                    b.err(
                        hide,
                        "filesystem.hide",
                        format!("cannot inspect `{target}`: {e}"),
                    );
                    continue;
                }
            };
            hidden.push(target);
            entries.push(Entry {
                from: at.at(hide, "filesystem.hide"),
                kind: NodeKind::Dir,
                origin: None,
                setting: "filesystem.hide",
                own_tmpfs: false,
                checked: false,
                op,
            });
        }
        // State below a path the profile hides is hidden with it; its own mount point
        // would not exist there.
        let by_profile: Vec<&str> = entries
            .iter()
            .filter(|e| e.setting == "filesystem.hide")
            .map(|e| e.op.target())
            .collect::<Vec<_>>();
        let covered: Vec<String> = entries
            .iter()
            .filter(|e| e.setting == STATE)
            .map(|e| e.op.target().to_owned())
            .filter(|t| by_profile.iter().any(|h| h == t || is_below(t, h)))
            .collect();
        entries.retain(|e| !(e.setting == STATE && covered.iter().any(|c| c == e.op.target())));
    }

    let mut volumes = volumes.iter();
    for (i, m) in p.mount.iter().enumerate() {
        let (Some(kind), Some(target_src)) = (&m.kind, &m.target) else {
            continue;
        };
        let Ok(target) = normalize_abs(&target_src.value) else {
            continue;
        };
        let key = format!("mount[{}]", i + 1);
        let read_only = or(&m.read_only, false);
        let (op, node, own_tmpfs) = match kind.value {
            MountType::Bind => {
                let Some(source) = &m.source else { continue };
                let node = match b.fact(b.host.kind(&source.value)) {
                    Ok(Some(PathKind::Dir)) => NodeKind::Dir,
                    Ok(Some(_)) => NodeKind::File,
                    Ok(None) if or(&m.optional, false) => continue,
                    Ok(None) => {
                        b.err(source, &format!("{key}.source"), format!("bind source `{}` does not exist on the host (set `optional = true` to skip it when missing)", source.value));
                        continue;
                    }
                    Err(e) => {
                        b.err(
                            source,
                            &format!("{key}.source"),
                            format!("cannot inspect `{}`: {e}", source.value),
                        );
                        continue;
                    }
                };
                // Symlinks are resolved now, once; the sandbox refuses any it meets later.
                let resolved = match b.fact(b.host.resolved(&source.value)) {
                    Ok(r) => r.to_owned(),
                    Err(e) => {
                        b.err(
                            source,
                            &format!("{key}.source"),
                            format!("bind source `{}`: {e}", source.value),
                        );
                        continue;
                    }
                };
                let socket = matches!(b.fact(b.host.is_socket(&resolved)), Ok(true));
                if socket || is_below(&resolved, "/run") {
                    b.notes.push(Problem::at(source.origin, &format!("{key}.source"), format!("binds `{resolved}` from the host: a host IPC endpoint the sandbox can connect to, a hole in the default walls")));
                }
                (
                    MountOp::Bind {
                        source: resolved,
                        target: target.clone(),
                        read_only,
                        noexec: !read_only && noexec(&target),
                        create: None,
                    },
                    node,
                    false,
                )
            }
            MountType::Volume => {
                let Some((vol, _)) = volumes.next() else {
                    continue;
                };
                (
                    MountOp::Bind {
                        source: vol.host_path.display().to_string(),
                        target: target.clone(),
                        read_only,
                        noexec: !read_only && noexec(&target),
                        create: None,
                    },
                    NodeKind::Dir,
                    false,
                )
            }
            MountType::Tmpfs => (
                MountOp::Tmpfs {
                    target: target.clone(),
                    size: size_of(&m.size, &format!("{key}.size"), MOUNT_TMPFS_SIZE),
                    mode: m.mode.as_ref().map_or(0o755, |m| m.value.0),
                    noexec: noexec(&target),
                    read_only: false,
                    create: false,
                },
                NodeKind::Dir,
                true,
            ),
            MountType::Symlink => {
                let Some(source) = &m.source else { continue };
                (
                    MountOp::Symlink {
                        target: target.clone(),
                        text: source.value.clone(),
                    },
                    NodeKind::File,
                    false,
                )
            }
        };
        if let Some(h) = hidden
            .iter()
            .find(|h| is_below(&target, h) || **h == target)
        {
            b.err(
                target_src,
                &format!("{key}.target"),
                format!("`{target}` is inside the hidden path `{h}`"),
            );
            continue;
        }
        entries.push(Entry {
            op,
            from: at.at(target_src, &format!("{key}.target")),
            kind: node,
            origin: Some((target_src, format!("{key}.target"))),
            setting: "mount",
            own_tmpfs,
            checked: false,
        });
    }

    // Parents before children, so a mount is never hidden by a later mount of its parent.
    entries.sort_by_key(|e| depth(e.op.target()));

    // Decide, in order, which targets must exist and which stockade creates.
    let mut own: Vec<String> = Vec::new();
    if root == RootSource::Empty {
        own.push("/".into());
    }
    let mut ops = Vec::with_capacity(entries.len());
    for mut e in entries {
        let target = e.op.target().to_owned();
        let on_own_tmpfs = own.iter().any(|o| is_below(&target, o));
        let checked_already = e.checked;
        let always_created = matches!(
            e.op,
            MountOp::Devpts { .. } | MountOp::Mqueue { .. } | MountOp::Symlink { .. }
        );
        if on_own_tmpfs {
            e.op.set_create(e.kind);
        } else if always_created {
            if let Some((src, key)) = &e.origin {
                b.err(*src, key, format!("a symlink can only be created on a tmpfs stockade mounts (such as /tmp, /dev or a [[mount]] of type tmpfs), not at `{target}` on the host's filesystem"));
            }
        } else if let (RootSource::Host(r), false) = (&root, checked_already) {
            let found = b.fact(b.host.kind_below(r, &target));
            let complain = |b: &mut Builder, msg: String| match &e.origin {
                Some((src, key)) => b.err(*src, key, msg),
                None => b.file_err(e.setting, msg),
            };
            match found {
                Ok(Some((PathKind::Symlink, at))) => complain(b, format!("mount target `{target}` passes through the symlink `{}` in the sandbox root; use the path it points to", at.display())),
                Ok(Some((PathKind::Dir, _))) if e.kind == NodeKind::File => complain(b, format!("`{target}` is a directory but the mount is a file")),
                Ok(Some((PathKind::File | PathKind::Other, _))) if e.kind == NodeKind::Dir => complain(b, format!("`{target}` is a file but the mount is a directory")),
                Ok(Some(_)) => {}
                Ok(None) => complain(b, format!("mount target `{target}` does not exist in the sandbox root `{r}`, and stockade never creates files on the host; create it there, or mount a tmpfs on a parent directory")),
                Err(err) => complain(b, format!("cannot inspect mount target `{target}`: {err}")),
            }
        }
        if e.own_tmpfs {
            own.push(target);
        }
        ops.push(Decided::new(e.op, e.from));
    }
    // An exec rule inside a mount made noexec would fail only when the service runs.
    for rule in &exec_rules {
        let supplier = ops
            .iter()
            .filter(|o| o.target() == rule || is_below(rule, o.target()))
            .max_by_key(|o| depth(o.target()));
        let noexec_target = match supplier.map(|o| &o.value) {
            Some(MountOp::Tmpfs {
                noexec: true,
                target,
                ..
            })
            | Some(MountOp::Bind {
                noexec: true,
                target,
                ..
            }) => target,
            _ => continue,
        };
        let msg = format!("`{rule}` lies on the writable mount `{noexec_target}`, which stockade mounts noexec when landlock restricts exec (a file written there could be run through the loader); bind the programs read-only at `{rule}`, or allow exec for all of `{noexec_target}`");
        match p.security.landlock.as_ref().and_then(|l| l.exec.as_ref()) {
            Some(src) => b.err(src, "security.landlock.exec", msg),
            None => b.file_err("security.landlock.exec", msg),
        }
    }

    Some(FsPlan {
        root,
        read_only: Decided::new(
            or(&fs.read_only, true),
            at.setting(&fs.read_only, "filesystem.read_only"),
        ),
        ops,
    })
}
