//! The plan as an OCI runtime bundle (runtime-spec 1.x, the `oci-spec` crate's types): the
//! `config.json` and the `rootfs` directory it names, for crun, runc or youki and so for
//! podman, containerd and Kubernetes. A pure function of the plan and a listing of the host
//! root: the CLI writes what it returns.
//!
//! The root: a runtime cannot use the host's `/` itself (pivot_root onto it fails with EBUSY,
//! and a bind of `/` in `mounts` is refused with EINVAL, both measured with crun 1.8.1), so
//! the bundle has a `rootfs` of its own: empty mount points for the host's top-level
//! directories, bound through `mounts` (read-only when the plan's root is), and the host's
//! top-level symlinks (the merged-/usr `bin -> usr/bin`). The plan's mounts follow in order.
//!
//! What OCI cannot express (landlock, the notify relay) is returned as `org.stockade.*`
//! annotations and as a list the CLI prints on stderr.

use crate::plan::{
    Access, CgroupPlan, LaunchPlan, Limit, MountOp, Namespace, Prop, RootSource, SysAction,
};
use oci_spec::runtime::{
    Arch, LinuxBuilder, LinuxCapabilities, LinuxCpuBuilder, LinuxIdMappingBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder,
    LinuxSeccompBuilder, LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder, Mount,
    MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec,
    SpecBuilder, UserBuilder,
};
use std::collections::{BTreeSet, HashMap};

/// One entry of the host's root directory, as the CLI lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEntry {
    /// A directory, and whether others may search it (mode o+x).
    Dir(String, bool),
    Symlink(String, String),
}

/// What the bundle's `rootfs` holds: mount points and symlinks, relative to it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rootfs {
    pub dirs: Vec<String>,
    pub symlinks: Vec<(String, String)>,
}

/// The bundle for `plan`.
pub struct Bundle {
    pub config: Spec,
    pub rootfs: Rootfs,
    /// What OCI cannot express, one item each (also in the annotations).
    pub missing: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the OCI configuration: {0}")]
pub struct Error(String);

fn e(err: impl std::fmt::Display) -> Error {
    Error(err.to_string())
}

/// The bundle's config and rootfs. `host_root` lists `/` of this machine (for a plan whose
/// root is the host's).
pub fn bundle(plan: &LaunchPlan, host_root: &[HostEntry]) -> Result<Bundle, Error> {
    let mut missing = Vec::new();
    let mut annotations = HashMap::new();
    annotations.insert("org.stockade.profile".to_owned(), plan.name.clone());
    let mut rootfs = Rootfs::default();
    let mut mounts = Vec::new();
    let mut masked = Vec::new();
    let mut readonly = Vec::new();
    let (root_path, root_ro) = match plan.fs.as_ref().map(|f| (&f.root, *f.read_only)) {
        Some((RootSource::Host(dir), ro)) if dir == "/" => ("rootfs".to_owned(), ro),
        Some((RootSource::Host(dir), ro)) => (dir.clone(), ro),
        Some((RootSource::Empty, ro)) => ("rootfs".to_owned(), ro),
        // Without a mount namespace the service sees the host's tree: a runtime always
        // makes one, so the host's root is bound whole, writable as it is.
        None => ("rootfs".to_owned(), false),
    };
    let host_root_bound = matches!(
        plan.fs.as_ref().map(|f| &f.root),
        Some(RootSource::Host(d)) if d == "/"
    ) || plan.fs.is_none();
    let planned: BTreeSet<&str> = plan
        .fs
        .iter()
        .flat_map(|f| f.ops.iter().map(|o| o.target()))
        .collect();
    if host_root_bound {
        for entry in host_root {
            match entry {
                HostEntry::Dir(name, searchable) => {
                    rootfs.dirs.push(name.clone());
                    let target = format!("/{name}");
                    // A directory the plan mounts over needs only its mount point.
                    if planned.contains(target.as_str()) {
                        continue;
                    }
                    // The runtime opens every mount source as the id-mapped root, which
                    // cannot search the host root's private directories (lost+found); the
                    // service could not enter them under stockade either.
                    if !searchable && plan.has(Namespace::User) {
                        continue;
                    }
                    let mut opts = vec!["rbind".to_owned()];
                    opts.push(if root_ro { "rro" } else { "rw" }.to_owned());
                    mounts.push(bind(&target, &target, opts)?);
                }
                HostEntry::Symlink(name, text) => {
                    rootfs.symlinks.push((name.clone(), text.clone()))
                }
            }
        }
    }
    if plan.fs.is_none() {
        missing.push("no mount namespace: an OCI runtime always makes one; the bundle binds the host's root directories instead".to_owned());
    }
    let notify_socket = plan
        .notify
        .as_ref()
        .map(|n| n.host_socket.display().to_string());
    for op in plan.fs.iter().flat_map(|f| f.ops.iter()) {
        let private_dev = crate::export::setting(&op.from) == "filesystem.private_dev";
        match &op.value {
            // The runtime makes the standard nodes and /dev/fd, /dev/std* in a /dev tmpfs
            // itself (runtime-spec "Default Devices"); a bind over them would fail.
            MountOp::Bind { target, .. } | MountOp::Symlink { target, .. }
                if private_dev && target.starts_with("/dev/") => {}
            MountOp::Bind { source, .. } if Some(source) == notify_socket.as_ref() => {
                missing.push("the notify relay: crun and podman relay NOTIFY_SOCKET to the service themselves".into());
                annotations.insert("org.stockade.notify".into(), "true".into());
            }
            MountOp::Bind {
                source,
                target,
                read_only,
                noexec,
                ..
            } => {
                let mut opts = vec![
                    "rbind".to_owned(),
                    if *read_only { "rro" } else { "rw" }.to_owned(),
                    "nosuid".to_owned(),
                ];
                if *noexec {
                    opts.push("noexec".into());
                }
                mounts.push(bind(source, target, opts)?);
            }
            MountOp::Tmpfs {
                target,
                size,
                mode,
                noexec,
                read_only,
                ..
            } => {
                let mut opts = vec![
                    "nosuid".to_owned(),
                    "nodev".to_owned(),
                    format!("mode={mode:o}"),
                ];
                if let Some(b) = size.value {
                    opts.push(format!("size={b}"));
                }
                if *noexec {
                    opts.push("noexec".into());
                }
                if *read_only {
                    opts.push("ro".into());
                }
                mounts.push(fs("tmpfs", target, opts)?);
            }
            MountOp::Proc { target, .. } => mounts.push(fs(
                "proc",
                target,
                vec!["nosuid".into(), "nodev".into(), "noexec".into()],
            )?),
            MountOp::Sysfs { target } => mounts.push(fs(
                "sysfs",
                target,
                ["nosuid", "nodev", "noexec", "ro"]
                    .map(String::from)
                    .to_vec(),
            )?),
            MountOp::Devpts { target } => mounts.push(fs(
                "devpts",
                target,
                [
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                ]
                .map(String::from)
                .to_vec(),
            )?),
            MountOp::Mqueue { target } => mounts.push(fs(
                "mqueue",
                target,
                ["nosuid", "nodev", "noexec"].map(String::from).to_vec(),
            )?),
            MountOp::Symlink { target, text } => {
                missing.push(format!(
                    "the symlink {target} -> {text}: OCI mounts make no files"
                ));
            }
            MountOp::Hide { target, .. } => masked.push(target.clone()),
            MountOp::ReadOnly { target } => readonly.push(target.clone()),
        }
    }
    if let Some(rules) = &plan.finals.landlock {
        let mut by = |access: Access, key: &str| {
            let paths: Vec<&str> = rules
                .iter()
                .filter(|r| r.access == access)
                .map(|r| r.path.as_str())
                .collect();
            if !paths.is_empty() {
                annotations.insert(format!("org.stockade.landlock.{key}"), paths.join(":"));
                missing.push(format!(
                    "landlock: {key} only below {}: OCI has no landlock",
                    paths.join(" ")
                ));
            }
        };
        by(Access::Read, "read");
        by(Access::Write, "write");
        by(Access::Exec, "exec");
    }
    if let Some(net) = &plan.network {
        let ports: Vec<String> = net.publish.iter().map(|p| p.value.to_string()).collect();
        annotations.insert("org.stockade.network".into(), net.network.value.clone());
        annotations.insert("org.stockade.network.publish".into(), ports.join(","));
        missing.push(format!("the bridge network `{}` with its published ports [{}] and outbound NAT: an OCI runtime makes the network namespace only (podman's --network and -p, or a CNI plugin, give the rest)", net.network.value, ports.join(", ")));
    }
    if plan.has(Namespace::Pid) {
        missing.push("stockade's init as pid 1: the service is pid 1 of the bundle, reaping orphans and taking signals itself (podman run --init adds an init)".into());
    }
    let f = &plan.finals.syscalls.filter;
    if f.default != SysAction::Allow && f.listed.contains("ioctl") {
        annotations.insert("org.stockade.seccomp.tiocsti".into(), "EPERM".into());
        missing.push("the refusal of terminal injection (ioctl TIOCSTI, TIOCLINUX) with an allow-list: stockade installs it as a second filter, and one OCI filter cannot hold it beside the list's allow of ioctl (the bundle's process gets no terminal: terminal is false)".into());
    }
    if plan.memfd_noexec {
        annotations.insert("org.stockade.memfd_noexec".into(), "2".into());
        missing.push("vm.memfd_noexec = 2 in the pid namespace: a runtime sets only sysctls it knows are namespaced; the bundle's seccomp filter refuses memory files without MFD_NOEXEC_SEAL instead".into());
    }

    let caps = capabilities(plan)?;
    let creds = &plan.creds;
    let user = UserBuilder::default()
        .uid(*creds.uid)
        .gid(*creds.gid)
        .additional_gids(creds.groups.value.clone())
        .umask(plan.finals.umask.value)
        .build()
        .map_err(e)?;
    let env: Vec<String> = plan
        .env
        .iter()
        .filter(|v| v.value.0 != "NOTIFY_SOCKET" && v.value.0 != "WATCHDOG_USEC")
        .map(|v| format!("{}={}", v.value.0, v.value.1))
        .collect();
    let rlimits = plan
        .finals
        .rlimits
        .iter()
        .map(|r| {
            let v = match r.limit {
                Limit::Value(n) => n,
                Limit::Infinity => u64::MAX,
            };
            PosixRlimitBuilder::default()
                .typ(rlimit_type(r.resource))
                .hard(v)
                .soft(v)
                .build()
                .map_err(e)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(user)
        .args(plan.argv.value.clone())
        .env(env)
        .cwd(plan.workdir.value.clone())
        .capabilities(caps)
        .no_new_privileges(plan.finals.no_new_privs.value)
        .rlimits(rlimits)
        .build()
        .map_err(e)?;

    let namespaces = plan
        .enabled_namespaces()
        .map(|n| {
            let typ = match n {
                Namespace::User => LinuxNamespaceType::User,
                Namespace::Pid => LinuxNamespaceType::Pid,
                Namespace::Mount => LinuxNamespaceType::Mount,
                Namespace::Net => LinuxNamespaceType::Network,
                Namespace::Ipc => LinuxNamespaceType::Ipc,
                Namespace::Uts => LinuxNamespaceType::Uts,
                Namespace::Cgroup => LinuxNamespaceType::Cgroup,
                Namespace::Time => LinuxNamespaceType::Time,
            };
            LinuxNamespaceBuilder::default().typ(typ).build().map_err(e)
        })
        .chain(
            // A runtime always makes a mount namespace.
            (!plan.has(Namespace::Mount)).then(|| {
                LinuxNamespaceBuilder::default()
                    .typ(LinuxNamespaceType::Mount)
                    .build()
                    .map_err(e)
            }),
        )
        .collect::<Result<Vec<_>, _>>()?;
    let maps = |m: &[crate::plan::IdRange]| {
        m.iter()
            .map(|r| {
                LinuxIdMappingBuilder::default()
                    .container_id(r.inside)
                    .host_id(r.outside)
                    .size(r.count)
                    .build()
                    .map_err(e)
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .masked_paths(masked)
        .readonly_paths(readonly)
        .seccomp(seccomp(plan)?)
        .resources(resources(plan)?);
    if let Some(idmap) = &plan.idmap {
        linux = linux
            .uid_mappings(maps(&idmap.uid_map)?)
            .gid_mappings(maps(&idmap.gid_map)?);
    }
    if let CgroupPlan::Scope(s) = &plan.cgroup {
        // systemd's form: the runtime asks systemd for the scope `stockade-NAME.scope`.
        linux = linux.cgroups_path(format!("{}:stockade:{}", s.slice, plan.name));
    }
    let root = RootBuilder::default()
        .path(root_path)
        .readonly(root_ro)
        .build()
        .map_err(e)?;
    let mut spec = SpecBuilder::default()
        .version("1.0.2")
        .root(root)
        .process(process)
        .mounts(mounts)
        .linux(linux.build().map_err(e)?)
        .annotations(annotations);
    if let Some(h) = &plan.hostname {
        spec = spec.hostname(h.value.clone());
    }
    Ok(Bundle {
        config: spec.build().map_err(e)?,
        rootfs,
        missing,
    })
}

fn bind(source: &str, target: &str, options: Vec<String>) -> Result<Mount, Error> {
    MountBuilder::default()
        .destination(target)
        .typ("bind")
        .source(source)
        .options(options)
        .build()
        .map_err(e)
}

fn fs(typ: &str, target: &str, options: Vec<String>) -> Result<Mount, Error> {
    MountBuilder::default()
        .destination(target)
        .typ(typ)
        .source(typ)
        .options(options)
        .build()
        .map_err(e)
}

/// The capabilities the service keeps, in all five sets (as stockade leaves them).
fn capabilities(plan: &LaunchPlan) -> Result<LinuxCapabilities, Error> {
    let set = plan
        .finals
        .capabilities
        .iter()
        .map(|c| serde_json::from_value(serde_json::Value::String(c.to_string())).map_err(e))
        .collect::<Result<oci_spec::runtime::Capabilities, _>>()?;
    oci_spec::runtime::LinuxCapabilitiesBuilder::default()
        .bounding(set.clone())
        .effective(set.clone())
        .permitted(set.clone())
        .inheritable(set.clone())
        .ambient(set)
        .build()
        .map_err(e)
}

fn rlimit_type(r: nix::sys::resource::Resource) -> PosixRlimitType {
    use nix::sys::resource::Resource as R;
    match r {
        R::RLIMIT_AS => PosixRlimitType::RlimitAs,
        R::RLIMIT_CORE => PosixRlimitType::RlimitCore,
        R::RLIMIT_CPU => PosixRlimitType::RlimitCpu,
        R::RLIMIT_DATA => PosixRlimitType::RlimitData,
        R::RLIMIT_FSIZE => PosixRlimitType::RlimitFsize,
        R::RLIMIT_LOCKS => PosixRlimitType::RlimitLocks,
        R::RLIMIT_MEMLOCK => PosixRlimitType::RlimitMemlock,
        R::RLIMIT_MSGQUEUE => PosixRlimitType::RlimitMsgqueue,
        R::RLIMIT_NICE => PosixRlimitType::RlimitNice,
        R::RLIMIT_NPROC => PosixRlimitType::RlimitNproc,
        R::RLIMIT_RSS => PosixRlimitType::RlimitRss,
        R::RLIMIT_RTPRIO => PosixRlimitType::RlimitRtprio,
        R::RLIMIT_RTTIME => PosixRlimitType::RlimitRttime,
        R::RLIMIT_SIGPENDING => PosixRlimitType::RlimitSigpending,
        R::RLIMIT_STACK => PosixRlimitType::RlimitStack,
        _ => PosixRlimitType::RlimitNofile,
    }
}

/// A stockade action as OCI's, with its errno.
fn action(a: SysAction) -> (LinuxSeccompAction, Option<u32>) {
    match a {
        SysAction::Allow => (LinuxSeccompAction::ScmpActAllow, None),
        SysAction::Errno(n) => (LinuxSeccompAction::ScmpActErrno, u32::try_from(n).ok()),
        SysAction::KillProcess => (LinuxSeccompAction::ScmpActKillProcess, None),
        SysAction::Log => (LinuxSeccompAction::ScmpActLog, None),
    }
}

/// This machine's architecture, the only one stockade's filter admits.
fn native_arch() -> Arch {
    match std::env::consts::ARCH {
        "aarch64" => Arch::ScmpArchAarch64,
        "x86" => Arch::ScmpArchX86,
        "arm" => Arch::ScmpArchArm,
        "riscv64" => Arch::ScmpArchRiscv64,
        "s390x" => Arch::ScmpArchS390x,
        "powerpc64" => Arch::ScmpArchPpc64le,
        _ => Arch::ScmpArchX86_64,
    }
}

/// One rule: `names` do `act`, when argument `arg` (if any) compares as given.
fn rule(
    names: Vec<String>,
    act: SysAction,
    arg: Option<(u32, LinuxSeccompOperator, u64, u64)>,
) -> Result<LinuxSyscall, Error> {
    let (a, errno) = action(act);
    let mut b = LinuxSyscallBuilder::default().names(names).action(a);
    if let Some(n) = errno {
        b = b.errno_ret(n);
    }
    if let Some((index, op, value, value_two)) = arg {
        let mut arg = LinuxSeccompArgBuilder::default()
            .index(index as usize)
            .op(op)
            .value(value);
        if op == LinuxSeccompOperator::ScmpCmpMaskedEq {
            arg = arg.value_two(value_two);
        }
        b = b.args(vec![arg.build().map_err(e)?]);
    }
    b.build().map_err(e)
}

/// The namespace flags clone(2) may not carry when namespaces are restricted.
const CLONE_NEW: [libc::c_int; 7] = [
    libc::CLONE_NEWNS,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWCGROUP,
];

/// The plan's filter as OCI seccomp: the listed calls by name (groups expanded already),
/// and the argument checks stockade's filter makes (namespace flags of clone, socket
/// families, memfd sealing) as argument rules.
fn seccomp(plan: &LaunchPlan) -> Result<LinuxSeccomp, Error> {
    let f = &plan.finals.syscalls.filter;
    let eperm = SysAction::Errno(libc::EPERM);
    let known = |n: &&String| libseccomp::ScmpSyscall::from_name(n).is_ok();
    let mut listed: Vec<String> = f.listed.iter().filter(known).cloned().collect();
    let mut syscalls = Vec::new();
    let allow_list = f.default != SysAction::Allow;
    // Calls whose verdict depends on an argument are taken out of the plain list.
    let mut conditional: Vec<&str> = Vec::new();
    if f.restrict_namespaces {
        conditional.extend(["clone", "clone3", "unshare", "setns"]);
    }
    conditional.extend(["socket", "socketpair"]);
    // OCI sets no vm.memfd_noexec (a runtime writes only sysctls it knows are namespaced):
    // where stockade would set it, the bundle's filter demands the seal instead.
    let memfd_seal = f.memfd_noexec_seal || plan.memfd_noexec;
    if memfd_seal {
        conditional.push("memfd_create");
    }
    let was_listed = |n: &str| f.listed.contains(n);
    // Whether a conditional call is allowed at all (before its argument is looked at).
    let allowed = |n: &str| {
        if allow_list {
            was_listed(n)
        } else {
            !was_listed(n)
        }
    };
    // A denied call stays in the plain list; an allowed one is decided by its argument.
    listed.retain(|n| !(conditional.contains(&n.as_str()) && allowed(n)));
    if !listed.is_empty() {
        syscalls.push(rule(listed, f.listed_action, None)?);
    }
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    if f.restrict_namespaces {
        for n in ["unshare", "setns"].into_iter().filter(|n| allowed(n)) {
            syscalls.push(rule(names(&[n]), eperm, None)?);
        }
        if allowed("clone3") {
            // ENOSYS, so libc falls back to clone, whose flags a filter can read.
            syscalls.push(rule(
                names(&["clone3"]),
                SysAction::Errno(libc::ENOSYS),
                None,
            )?);
        }
        if allowed("clone") {
            if allow_list {
                let mask = CLONE_NEW.iter().fold(0u64, |m, f| m | *f as u64);
                syscalls.push(rule(
                    names(&["clone"]),
                    SysAction::Allow,
                    Some((0, LinuxSeccompOperator::ScmpCmpMaskedEq, mask, 0)),
                )?);
            }
            for flag in CLONE_NEW {
                let flag = flag as u64;
                syscalls.push(rule(
                    names(&["clone"]),
                    eperm,
                    Some((0, LinuxSeccompOperator::ScmpCmpMaskedEq, flag, flag)),
                )?);
            }
        }
    } else if allow_list {
        for n in ["clone", "clone3", "unshare", "setns"]
            .into_iter()
            .filter(|n| allowed(n))
        {
            syscalls.push(rule(names(&[n]), SysAction::Allow, None)?);
        }
    }
    // Socket families: the low 32 bits of the int, and anything at or above AF_MAX in the
    // full register, as stockade's own filter compares them.
    let eafnosupport = SysAction::Errno(libc::EAFNOSUPPORT);
    for n in ["socket", "socketpair"].into_iter().filter(|n| allowed(n)) {
        for fam in 0..crate::plan::AF_MAX {
            let act = if f.families.contains(&fam) {
                if !allow_list {
                    continue;
                }
                SysAction::Allow
            } else {
                eafnosupport
            };
            syscalls.push(rule(
                names(&[n]),
                act,
                Some((
                    0,
                    LinuxSeccompOperator::ScmpCmpMaskedEq,
                    0xffff_ffff,
                    fam as u64,
                )),
            )?);
        }
        syscalls.push(rule(
            names(&[n]),
            eafnosupport,
            Some((
                0,
                LinuxSeccompOperator::ScmpCmpGe,
                crate::plan::AF_MAX as u64,
                0,
            )),
        )?);
    }
    if memfd_seal && allowed("memfd_create") {
        const MFD_NOEXEC_SEAL: u64 = 0x8;
        if allow_list {
            syscalls.push(rule(
                names(&["memfd_create"]),
                SysAction::Allow,
                Some((
                    1,
                    LinuxSeccompOperator::ScmpCmpMaskedEq,
                    MFD_NOEXEC_SEAL,
                    MFD_NOEXEC_SEAL,
                )),
            )?);
        }
        syscalls.push(rule(
            names(&["memfd_create"]),
            eperm,
            Some((1, LinuxSeccompOperator::ScmpCmpMaskedEq, MFD_NOEXEC_SEAL, 0)),
        )?);
    }
    // Terminal injection: ioctl's request is an int, so the low 32 bits are compared. Only
    // beside a default allow: next to an allow-list's unconditional allow of ioctl, libseccomp
    // drops the conditional rules (measured with crun 1.8.1: TIOCSTI then reaches the
    // kernel), and one OCI filter cannot be split in two as stockade's is.
    if allowed("ioctl") && !allow_list {
        for request in [0x5412u64, 0x541C] {
            syscalls.push(rule(
                names(&["ioctl"]),
                eperm,
                Some((
                    1,
                    LinuxSeccompOperator::ScmpCmpMaskedEq,
                    0xffff_ffff,
                    request,
                )),
            )?);
        }
    }
    let (default, default_errno) = action(f.default);
    let mut b = LinuxSeccompBuilder::default()
        .default_action(default)
        .architectures(vec![native_arch()])
        .syscalls(syscalls);
    if let Some(n) = default_errno {
        b = b.default_errno_ret(n);
    }
    b.build().map_err(e)
}

/// The cgroup limits, from the systemd properties the plan decided: typed where the
/// runtime-spec has a field, cgroup v2 files (`unified`) where it has none.
fn resources(plan: &LaunchPlan) -> Result<oci_spec::runtime::LinuxResources, Error> {
    let CgroupPlan::Scope(s) = &plan.cgroup else {
        return LinuxResourcesBuilder::default().build().map_err(e);
    };
    let get = |k: &str| {
        s.properties.iter().find_map(|(n, v)| match v {
            Prop::U64(x) if n == k => Some(*x),
            _ => None,
        })
    };
    let max = |v: u64| {
        if v == u64::MAX {
            "max".to_owned()
        } else {
            v.to_string()
        }
    };
    let mut unified = HashMap::new();
    let mut r = LinuxResourcesBuilder::default();
    let signed = |v: u64| i64::try_from(v).unwrap_or(-1);
    if let Some(m) = get("MemoryMax") {
        r = r.memory(
            LinuxMemoryBuilder::default()
                .limit(signed(m))
                .build()
                .map_err(e)?,
        );
    }
    if let Some(h) = get("MemoryHigh") {
        unified.insert("memory.high".to_owned(), max(h));
    }
    if let Some(w) = get("MemorySwapMax") {
        unified.insert("memory.swap.max".to_owned(), max(w));
    }
    let mut cpu = LinuxCpuBuilder::default();
    let mut has_cpu = false;
    if let Some(q) = get("CPUQuotaPerSecUSec") {
        // systemd's 100 ms period: the quota per period is a tenth of the per-second one.
        cpu = cpu.quota(signed(q / 10)).period(100_000u64);
        has_cpu = true;
    }
    if let Some(list) = plan
        .resources
        .iter()
        .find(|r| r.key == "resources.allowed_cpus")
    {
        cpu = cpu.cpus(list.value.value.clone());
        has_cpu = true;
    }
    if has_cpu {
        r = r.cpu(cpu.build().map_err(e)?);
    }
    if let Some(w) = get("CPUWeight") {
        unified.insert("cpu.weight".to_owned(), w.to_string());
    }
    if let Some(t) = get("TasksMax") {
        r = r.pids(
            LinuxPidsBuilder::default()
                .limit(signed(t))
                .build()
                .map_err(e)?,
        );
    }
    if let Some(w) = get("IOWeight") {
        unified.insert("io.weight".to_owned(), format!("default {w}"));
    }
    if !unified.is_empty() {
        r = r.unified(unified);
    }
    r.build().map_err(e)
}

#[cfg(test)]
mod tests;
