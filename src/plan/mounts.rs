//! The mount half of the plan: the new root, the standard private mounts (/proc, /dev, /tmp),
//! hidden paths and the profile's `[[mount]]` entries, as one list ordered parents first.
//!
//! Mount points are created only on filesystems stockade itself made (its tmpfs mounts, the
//! "empty" root); on the host's root they must already exist, because creating them would
//! write to the host.

use super::{Access, Builder, Namespace, Volume};
use crate::host::PathKind;
use crate::profile::schema::{or, Mount, Profile};
use crate::profile::validate::normalize_abs;
use crate::profile::values::MountType;
use crate::profile::Src;

/// Where the sandbox root comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSource {
    /// A host directory ("/" for the host root), bound recursively.
    Host(String),
    /// A fresh tmpfs.
    Empty,
}

/// What a missing mount point is created as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Dir,
    File,
}

/// One mount operation. Targets are paths inside the sandbox; bind sources are host paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountOp {
    Bind {
        source: String,
        target: String,
        read_only: bool,
        /// Create the mount point first (it lies on a stockade tmpfs).
        create: Option<NodeKind>,
    },
    Tmpfs {
        target: String,
        size: Option<u64>,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsPlan {
    pub root: RootSource,
    /// Make the root read-only: recursively right after binding it (host roots), or after
    /// every mount point is made (the empty root).
    pub read_only: bool,
    pub ops: Vec<MountOp>,
}

fn depth(path: &str) -> usize {
    path.split('/').filter(|c| !c.is_empty()).count()
}

/// Whether `path` lies strictly below `ancestor` (every path lies below "/").
pub(super) fn is_below(path: &str, ancestor: &str) -> bool {
    ancestor == "/" || path.starts_with(&format!("{ancestor}/"))
}

/// One planned operation with what the plan must still check about its target.
struct Entry<'p> {
    op: MountOp,
    /// The kind of node the target must be.
    kind: NodeKind,
    /// Where the mount was written, for messages; None for built-in mounts.
    origin: Option<(&'p Src<String>, String)>,
    /// The setting a built-in mount comes from, for messages.
    setting: &'static str,
    /// Makes its target a tmpfs on which later mount points may be created.
    own_tmpfs: bool,
}

const PROTECT_KERNEL: &str = "security.protect_kernel";

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
    b: &Builder,
    landlock: Option<&[(String, Access)]>,
    proc: bool,
    fresh_sys: bool,
    host_sys: bool,
) -> Vec<Entry<'static>> {
    let reaches = |path: &str, write: bool| landlock_reaches(landlock, path, write);
    let mut out = Vec::new();
    let entry = |op| Entry {
        op,
        kind: NodeKind::Dir,
        origin: None,
        setting: PROTECT_KERNEL,
        own_tmpfs: false,
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
        let dir = match b.host.kind(path) {
            Ok(Some(PathKind::Dir)) => true,
            Ok(Some(PathKind::File | PathKind::Other)) => false,
            _ => continue,
        };
        let op = MountOp::Hide {
            target: (*path).into(),
            dir,
        };
        out.push(entry(op));
    }
    for path in PROC_READ_ONLY.iter().filter(|_| proc) {
        if reaches(path, true)
            && matches!(b.host.kind(path), Ok(Some(PathKind::Dir | PathKind::File)))
        {
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

pub(super) fn plan(
    b: &mut Builder,
    p: &Profile,
    volumes: &[(Volume, &Src<Mount>)],
    namespaces: &[Namespace],
) -> Option<FsPlan> {
    let fs = &p.filesystem;
    let root_text = or(&fs.root, "/".to_owned());
    let root = if root_text == "empty" {
        RootSource::Empty
    } else {
        let r = normalize_abs(&root_text).unwrap_or(root_text.clone());
        if r != "/" {
            match b.host.kind(&r) {
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
        RootSource::Host(r)
    };

    let mut entries: Vec<Entry> = Vec::new();
    let mut setting = "filesystem.proc";
    let builtin = |op: MountOp, kind: NodeKind, own_tmpfs: bool, setting: &'static str| Entry {
        op,
        kind,
        origin: None,
        setting,
        own_tmpfs,
    };
    let tmpfs = |target: &str, mode: u32, noexec: bool| MountOp::Tmpfs {
        target: target.into(),
        size: None,
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
                create: None,
            }
        };
        entries.push(builtin(op, NodeKind::Dir, false, setting));
    }
    // The host's /sys would show the host's network devices; a root without /sys gets none.
    let has_sys = match &root {
        RootSource::Host(r) => matches!(b.host.kind_below(r, "/sys"), Ok(Some((PathKind::Dir, _)))),
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
        let landlock = super::landlock_rules(p);
        entries.extend(kernel_masks(
            b,
            landlock.as_deref(),
            proc,
            fresh_sys,
            host_sys,
        ));
    }
    setting = "filesystem.private_dev";
    if or(&fs.private_dev, true) {
        entries.push(builtin(
            tmpfs("/dev", 0o755, true),
            NodeKind::Dir,
            true,
            setting,
        ));
        for dev in ["null", "zero", "full", "random", "urandom", "tty"] {
            let path = format!("/dev/{dev}");
            entries.push(builtin(
                MountOp::Bind {
                    source: path.clone(),
                    target: path,
                    read_only: false,
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
                target: "/dev/ptmx".into(),
                text: "pts/ptmx".into(),
            },
            NodeKind::File,
            false,
            setting,
        ));
        entries.push(builtin(
            tmpfs("/dev/shm", 0o1777, false),
            NodeKind::Dir,
            true,
            setting,
        ));
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
        for (name, text) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            entries.push(builtin(
                MountOp::Symlink {
                    target: format!("/dev/{name}"),
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
        entries.push(builtin(
            tmpfs("/tmp", 0o1777, false),
            NodeKind::Dir,
            true,
            setting,
        ));
        entries.push(builtin(
            tmpfs("/var/tmp", 0o1777, false),
            NodeKind::Dir,
            true,
            setting,
        ));
    }
    let mut hidden: Vec<String> = Vec::new();
    if let Some(hide) = &fs.hide {
        for h in &hide.value {
            let Ok(target) = normalize_abs(h) else {
                continue;
            };
            // Hiding what stockade mounts itself, or a parent of it, would break the sandbox.
            if let Some(e) = entries.iter().find(|e| {
                !matches!(e.setting, PROTECT_KERNEL | "filesystem.hide")
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
                RootSource::Host(r) => b.host.kind_below(r, &target),
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
                kind: NodeKind::Dir,
                origin: None,
                setting: "filesystem.hide",
                own_tmpfs: false,
                op,
            });
        }
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
                let node = match b.host.kind(&source.value) {
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
                let resolved = match b.host.resolve(&source.value) {
                    Ok(r) => r,
                    Err(e) => {
                        b.err(
                            source,
                            &format!("{key}.source"),
                            format!("bind source `{}`: {e}", source.value),
                        );
                        continue;
                    }
                };
                (
                    MountOp::Bind {
                        source: resolved,
                        target: target.clone(),
                        read_only,
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
                        create: None,
                    },
                    NodeKind::Dir,
                    false,
                )
            }
            MountType::Tmpfs => (
                MountOp::Tmpfs {
                    target: target.clone(),
                    size: m.size.as_ref().and_then(|s| s.value.bytes()),
                    mode: m.mode.as_ref().map_or(0o755, |m| m.value.0),
                    noexec: false,
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
            kind: node,
            origin: Some((target_src, format!("{key}.target"))),
            setting: "mount",
            own_tmpfs,
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
        // Kernel masks were checked against the kernel's own files when planned.
        let checked_already = e.setting == PROTECT_KERNEL;
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
            let found = b.host.kind_below(r, &target);
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
        ops.push(e.op);
    }

    Some(FsPlan {
        root,
        read_only: or(&fs.read_only, true),
        ops,
    })
}
