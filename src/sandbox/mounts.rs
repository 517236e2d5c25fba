//! Builds the sandbox's filesystem from the plan, inside the new mount namespace.
//!
//! The sequence: make every mount private so nothing propagates to the host; pivot into a
//! scratch tmpfs so the host root sits at /oldroot and the new root is assembled at /newroot
//! with no host path shadowed by our own scratch mounts; apply each mount operation in plan
//! order; detach the old root; pivot into the new root and detach the scratch tmpfs.

use super::error::{check, SetupError};
use super::sys;
use crate::plan::{FsPlan, MountOp, NodeKind, RootSource};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use nix::unistd::{chdir, mkdir, pivot_root};
use std::path::{Path, PathBuf};

const OLD: &str = "/oldroot";
const NEW: &str = "/newroot";
/// An empty, unreadable file on the scratch tmpfs, bound over hidden files.
const HIDDEN_FILE: &str = "/hidden";

fn new_path(target: &str) -> PathBuf {
    PathBuf::from(format!("{NEW}{target}"))
}

fn old_path(source: &str) -> PathBuf {
    if source == "/" {
        PathBuf::from(OLD)
    } else {
        PathBuf::from(format!("{OLD}{source}"))
    }
}

fn do_mount(
    step: &str,
    src: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), SetupError> {
    check(mount(src, target, fstype, flags, data), step, || {
        format!(
            "mount({:?}, {:?}, {:?}, {:?}, {:?})",
            src.map_or("none".into(), |s| s.display().to_string()),
            target.display().to_string(),
            fstype.unwrap_or("none"),
            flags,
            data.unwrap_or("")
        )
    })
}

pub fn apply(fs: &FsPlan) -> Result<(), SetupError> {
    // Nothing we mount may propagate back to the host's mount namespace.
    do_mount(
        "make mounts private",
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )?;
    // A scratch tmpfs to pivot into; /tmp exists on every system and is ours to cover here.
    do_mount(
        "mount the scratch tmpfs",
        Some(Path::new("tmpfs")),
        Path::new("/tmp"),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755,size=64k"),
    )?;
    check(chdir("/tmp"), "enter the scratch tmpfs", || {
        "chdir(\"/tmp\")".into()
    })?;
    for d in ["newroot", "oldroot"] {
        check(
            mkdir(d, Mode::from_bits_truncate(0o755)),
            "prepare the scratch tmpfs",
            || format!("mkdir({d:?})"),
        )?;
    }
    // From here on the host root is /oldroot and no host path is shadowed by /tmp.
    check(
        pivot_root(".", "oldroot"),
        "pivot into the scratch tmpfs",
        || "pivot_root(\".\", \"oldroot\")".into(),
    )?;
    check(chdir("/"), "enter the scratch tmpfs", || {
        "chdir(\"/\")".into()
    })?;

    match &fs.root {
        RootSource::Host(dir) => {
            do_mount(
                "bind the sandbox root",
                Some(&old_path(dir)),
                Path::new(NEW),
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )?;
            if fs.read_only {
                // Before the other mounts, so they stay writable where the profile says so.
                check(
                    sys::make_readonly_recursive(Path::new(NEW)),
                    "make the root read-only",
                    || format!("mount_setattr({NEW:?}, AT_RECURSIVE, MOUNT_ATTR_RDONLY)"),
                )?;
            }
        }
        RootSource::Empty => {
            do_mount(
                "mount the empty root",
                Some(Path::new("tmpfs")),
                Path::new(NEW),
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some("mode=0755"),
            )?;
        }
    }

    for op in &fs.ops {
        apply_op(op)?;
    }

    if fs.read_only && fs.root == RootSource::Empty {
        // Only now: every mount point on the empty root has been created.
        do_mount(
            "make the root read-only",
            None,
            Path::new(NEW),
            None,
            MsFlags::MS_REMOUNT
                | MsFlags::MS_BIND
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV,
            None,
        )?;
    }

    // Detach the host root: from now on nothing outside the new root is reachable.
    check(
        umount2(OLD, MntFlags::MNT_DETACH),
        "detach the host root",
        || format!("umount2({OLD:?}, MNT_DETACH)"),
    )?;
    check(chdir(NEW), "enter the new root", || {
        format!("chdir({NEW:?})")
    })?;
    // pivot_root(".", ".") stacks the scratch root on top of the new root; detaching "."
    // then removes it without needing a directory for it inside the sandbox.
    check(pivot_root(".", "."), "pivot into the new root", || {
        "pivot_root(\".\", \".\")".into()
    })?;
    check(
        umount2(".", MntFlags::MNT_DETACH),
        "detach the scratch tmpfs",
        || "umount2(\".\", MNT_DETACH)".into(),
    )?;
    check(chdir("/"), "enter the new root", || "chdir(\"/\")".into())?;
    Ok(())
}

fn ensure(path: &Path, kind: NodeKind) -> Result<(), SetupError> {
    let step = format!("create the mount point {}", path.display());
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| SetupError::other(&step, e.to_string()))?;
    }
    let r = match kind {
        NodeKind::Dir => std::fs::create_dir(path),
        NodeKind::File => std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map(drop),
    };
    match r {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(SetupError::other(step, e.to_string()))
        }
        _ => Ok(()),
    }
}

fn apply_op(op: &MountOp) -> Result<(), SetupError> {
    let target = new_path(op.target());
    let tmpfs_flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    match op {
        MountOp::Bind {
            source,
            read_only,
            create,
            ..
        } => {
            if let Some(kind) = create {
                ensure(&target, *kind)?;
            }
            let step = format!("bind {source} to {}", op.target());
            do_mount(
                &step,
                Some(&old_path(source)),
                &target,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )?;
            if *read_only {
                check(sys::make_readonly_recursive(&target), &step, || {
                    format!("mount_setattr({target:?}, AT_RECURSIVE, MOUNT_ATTR_RDONLY)")
                })?;
            }
        }
        MountOp::Tmpfs {
            size,
            mode,
            noexec,
            read_only,
            create,
            ..
        } => {
            if *create {
                ensure(&target, NodeKind::Dir)?;
            }
            let mut flags = tmpfs_flags;
            flags.set(MsFlags::MS_NOEXEC, *noexec);
            flags.set(MsFlags::MS_RDONLY, *read_only);
            let mut data = format!("mode={mode:04o}");
            if let Some(s) = size {
                data.push_str(&format!(",size={s}"));
            }
            do_mount(
                &format!("mount a tmpfs on {}", op.target()),
                Some(Path::new("tmpfs")),
                &target,
                Some("tmpfs"),
                flags,
                Some(&data),
            )?;
        }
        MountOp::Proc { create, .. } => {
            if *create {
                ensure(&target, NodeKind::Dir)?;
            }
            do_mount(
                "mount a fresh /proc",
                Some(Path::new("proc")),
                &target,
                Some("proc"),
                tmpfs_flags | MsFlags::MS_NOEXEC,
                None,
            )?;
        }
        MountOp::Sysfs { .. } => {
            do_mount(
                "mount a fresh /sys",
                Some(Path::new("sysfs")),
                &target,
                Some("sysfs"),
                tmpfs_flags | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY,
                None,
            )?;
        }
        MountOp::Devpts { .. } => {
            ensure(&target, NodeKind::Dir)?;
            do_mount(
                "mount a private devpts",
                Some(Path::new("devpts")),
                &target,
                Some("devpts"),
                MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
                Some("newinstance,ptmxmode=0666,mode=0620"),
            )?;
        }
        MountOp::Mqueue { .. } => {
            ensure(&target, NodeKind::Dir)?;
            do_mount(
                "mount a private mqueue",
                Some(Path::new("mqueue")),
                &target,
                Some("mqueue"),
                tmpfs_flags | MsFlags::MS_NOEXEC,
                None,
            )?;
        }
        MountOp::Symlink { text, .. } => {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    SetupError::other(format!("create {}", parent.display()), e.to_string())
                })?;
            }
            std::os::unix::fs::symlink(text, &target).map_err(|e| {
                SetupError::other(
                    format!("create the symlink {} -> {text}", op.target()),
                    e.to_string(),
                )
            })?;
        }
        MountOp::ReadOnly { .. } => {
            let step = format!("make {} read-only", op.target());
            do_mount(
                &step,
                Some(&target),
                &target,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )?;
            check(sys::make_readonly_recursive(&target), &step, || {
                format!("mount_setattr({target:?}, AT_RECURSIVE, MOUNT_ATTR_RDONLY)")
            })?;
        }
        MountOp::HideFile { .. } => {
            if !Path::new(HIDDEN_FILE).exists() {
                let f = std::fs::File::create(HIDDEN_FILE)
                    .map_err(|e| SetupError::other("create the hiding file", e.to_string()))?;
                f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o000))
                    .map_err(|e| SetupError::other("create the hiding file", e.to_string()))?;
            }
            let step = format!("hide {}", op.target());
            do_mount(
                &step,
                Some(Path::new(HIDDEN_FILE)),
                &target,
                None,
                MsFlags::MS_BIND,
                None,
            )?;
            do_mount(
                &step,
                None,
                &target,
                None,
                MsFlags::MS_REMOUNT
                    | MsFlags::MS_BIND
                    | MsFlags::MS_RDONLY
                    | tmpfs_flags
                    | MsFlags::MS_NOEXEC,
                None,
            )?;
        }
    }
    Ok(())
}
