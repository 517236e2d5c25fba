//! Planning against a fake host root (a temp dir with etc/passwd and a few paths): users,
//! idmaps, mount order and mount-point rules, privilege checks. No root needed.

use super::*;
use crate::host::Host;
use crate::profile::{load, SearchPath};
use std::fs;
use std::os::unix::fs::PermissionsExt;

/// A small valid plan, for the tests of what carries plans (the instance record).
pub(crate) fn sample() -> LaunchPlan {
    Fixture::new(0)
        .plan("[exec]\ncommand = [\"/bin/true\"]\n", &[])
        .unwrap()
}

/// A profile planned on a fake host as `export` plans it (a systemd host with cgroup v2),
/// for the exporters' tests.
pub(crate) fn for_export(text: &str) -> LaunchPlan {
    let mut f = Fixture::new(0);
    f.cgroup = crate::export::target_cgroup();
    f.notify = crate::export::invocation().notify_socket;
    // Only the loopback route and interface: a bridge profile's default network fits.
    fs::create_dir_all(f.host.root.join("sys/class/net/lo")).unwrap();
    fs::create_dir_all(f.host.root.join("proc/net")).unwrap();
    fs::write(
        f.host.root.join("proc/net/route"),
        "Iface\tDestination\tGateway\n",
    )
    .unwrap();
    f.plan(text, &[]).unwrap_or_else(|e| panic!("{e:#?}"))
}

pub(crate) struct Fixture {
    dir: tempfile::TempDir,
    host: Host,
    cgroup: crate::host::CgroupFacts,
    notify: Option<String>,
}

impl Fixture {
    pub(crate) fn new(euid: u32) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        for d in [
            "etc/redis",
            "var/lib/redis",
            "proc",
            "dev",
            "sys",
            "tmp",
            "var/tmp",
            "home/alice",
            "run",
            "srv/rootfs/usr",
            "srv/rootfs/bin",
            "usr/bin",
            "bin",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        // The programs profiles run: they must exist and be executable in the sandbox.
        for prog in ["bin/true", "srv/rootfs/bin/true"] {
            fs::write(root.join(prog), "").unwrap();
            fs::set_permissions(root.join(prog), fs::Permissions::from_mode(0o755)).unwrap();
        }
        fs::write(
            root.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nredis:x:102:105::/var/lib/redis:/usr/sbin/nologin\n",
        )
        .unwrap();
        fs::write(
            root.join("etc/group"),
            "root:x:0:\nredis:x:105:\nadm:x:4:\n",
        )
        .unwrap();
        fs::write(root.join("etc/hosts"), "").unwrap();
        std::os::unix::fs::symlink("/run", root.join("var/run")).unwrap();
        Fixture {
            host: Host {
                root,
                euid,
                egid: euid,
            },
            dir,
            cgroup: Default::default(),
            notify: None,
        }
    }

    /// Writes `text` as `name` in the fixture's directory and loads it with no search path.
    fn load_text(
        &self,
        name: &str,
        text: &str,
    ) -> Result<crate::profile::Loaded, Box<crate::profile::Invalid>> {
        let path = self.dir.path().join(name);
        fs::write(&path, text).unwrap();
        load(
            path.to_str().unwrap(),
            &SearchPath {
                dirs: vec![],
                trusted_owners: None,
            },
        )
    }

    pub(crate) fn plan(&self, text: &str, extra: &[&str]) -> Result<LaunchPlan, Vec<String>> {
        let loaded = self
            .load_text("p.toml", text)
            .unwrap_or_else(|e| panic!("{:#?}", e.lines()));
        let inv = Invocation {
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            env: vec![
                ("PATH".into(), "/bin".into()),
                ("HOME".into(), "/root".into()),
            ],
            volume_dir: "/var/lib/stockade/volumes".into(),
            id: 42,
            under_unit: false,
            notify_socket: self.notify.clone(),
            ids_dir: "/var/lib/stockade/ids".into(),
            network_dirs: vec![self.dir.path().join("networks")],
        };
        self.build(&loaded, &inv, Some(6))
    }

    /// Gathers the host facts the profile needs from the fake root, then plans.
    fn build(
        &self,
        loaded: &crate::profile::Loaded,
        inv: &Invocation,
        landlock_abi: Option<u32>,
    ) -> Result<LaunchPlan, Vec<String>> {
        let facts = self.facts(loaded, inv, landlock_abi);
        plan_with(loaded, inv, &facts)
    }

    /// What the planner will know of the fake root for this profile: the only reading of
    /// the host a plan gets.
    fn facts(
        &self,
        loaded: &crate::profile::Loaded,
        inv: &Invocation,
        landlock_abi: Option<u32>,
    ) -> HostFacts {
        let needs = needs(&loaded.name, &loaded.profile, inv);
        HostFacts::gather(&self.host, &needs, self.cgroup.clone(), landlock_abi)
    }
}

/// Plans from facts gathered already: no host in sight.
fn plan_with(
    loaded: &crate::profile::Loaded,
    inv: &Invocation,
    facts: &HostFacts,
) -> Result<LaunchPlan, Vec<String>> {
    let input = Input {
        name: &loaded.name,
        profile: &loaded.profile,
        path: &loaded.path,
        sources: &loaded.sources,
    };
    build(&input, facts, inv).map_err(|ps| ps.iter().map(|p| p.render(&loaded.sources)).collect())
}

impl Fixture {
    fn problems(&self, text: &str) -> Vec<String> {
        self.plan(text, &[]).expect_err("plan should fail")
    }

    /// What loading (parsing and validating) `text` as a profile refuses, before any plan.
    fn load_problems(&self, text: &str) -> Vec<String> {
        match self.load_text("v.toml", text) {
            Ok(_) => panic!("the profile should be refused: {text}"),
            Err(e) => e.lines(),
        }
    }
}

const MIN: &str = "[exec]\ncommand = [\"/bin/true\"]\n";

fn targets(p: &LaunchPlan) -> Vec<&str> {
    p.fs.as_ref()
        .unwrap()
        .ops
        .iter()
        .map(|o| o.target())
        .collect()
}

#[test]
fn defaults_give_every_namespace_but_time_and_standard_mounts() {
    let f = Fixture::new(0);
    let p = f.plan(MIN, &[]).unwrap();
    use Namespace::*;
    assert_eq!(
        p.enabled_namespaces().collect::<Vec<_>>(),
        [User, Pid, Mount, Net, Ipc, Uts, Cgroup]
    );
    let fs = p.fs.as_ref().unwrap();
    assert_eq!(fs.root, RootSource::Host("/".into()));
    assert!(*fs.read_only);
    let t = targets(&p);
    for expected in [
        "/proc",
        "/sys",
        "/dev",
        "/tmp",
        "/dev/null",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/var/tmp",
    ] {
        assert!(t.contains(&expected), "{expected} missing from {t:?}");
    }
    assert!(p.loopback_up);
    assert_eq!(
        p.env.iter().map(|e| e.value.clone()).collect::<Vec<_>>(),
        [("PATH".to_string(), "/bin".to_string())],
        "HOME must not leak"
    );
    assert_eq!(p.finals.capabilities.value, []);
    assert!(*p.finals.no_new_privs);
}

#[test]
fn mounts_are_ordered_parents_first() {
    let f = Fixture::new(0);
    let p = f.plan(&format!("{MIN}[[mount]]\ntype = \"tmpfs\"\ntarget = \"/run/app/cache\"\n[[mount]]\ntype = \"tmpfs\"\ntarget = \"/run\"\n"), &[]).unwrap();
    let t = targets(&p);
    let run = t.iter().position(|x| *x == "/run").unwrap();
    let cache = t.iter().position(|x| *x == "/run/app/cache").unwrap();
    assert!(run < cache, "{t:?}");
    // /run/app/cache lies on our /run tmpfs, so it may be created.
    assert!(matches!(
        p.fs.unwrap().ops[cache].value,
        MountOp::Tmpfs { create: true, .. }
    ));
}

#[test]
fn mount_points_are_never_created_on_the_host() {
    let f = Fixture::new(0);
    let p = f.problems(&format!(
        "{MIN}[[mount]]\ntype = \"tmpfs\"\ntarget = \"/opt/new\"\n"
    ));
    assert!(p[0].contains("mount[1].target: mount target `/opt/new` does not exist in the sandbox root `/`, and stockade never creates files on the host"), "{p:#?}");
}

#[test]
fn targets_through_symlinks_are_refused() {
    let f = Fixture::new(0);
    let p = f.problems(&format!(
        "{MIN}[[mount]]\ntype = \"tmpfs\"\ntarget = \"/var/run/x\"\n"
    ));
    assert!(
        p[0].contains("passes through the symlink `/var/run`"),
        "{p:#?}"
    );
}

#[test]
fn missing_bind_source_is_an_error_unless_optional() {
    let f = Fixture::new(0);
    let bind = |optional: bool| {
        format!("{MIN}[[mount]]\ntype = \"bind\"\nsource = \"/etc/nope\"\ntarget = \"/etc/redis\"\noptional = {optional}\n")
    };
    let p = f.problems(&bind(false));
    assert!(p[0].contains(":5:10: mount[1].source: bind source `/etc/nope` does not exist on the host (set `optional = true`"), "{p:#?}");
    let ok = f.plan(&bind(true), &[]).unwrap();
    assert!(!targets(&ok).contains(&"/etc/redis"));
}

#[test]
fn users_resolve_on_the_host_and_get_an_identity_map() {
    let f = Fixture::new(0);
    let p = f.plan(&String::from("[exec]\ncommand = [\"/bin/true\"]\nuser = \"redis\"\nsupplementary_groups = [\"adm\"]\n[[mount]]\ntype = \"volume\"\nname = \"data\"\ntarget = \"/var/lib/redis\"\n"), &[]).unwrap();
    assert_eq!(
        (*p.creds.uid, *p.creds.gid, p.creds.groups.value.clone()),
        (102, 105, vec![4])
    );
    let m = p.idmap.as_ref().unwrap();
    let claim = p.id_claim.as_ref().unwrap();
    let base = claim.base();
    assert!(claim.new && base >= ID_BASE, "{claim:?}");
    // Root inside is the range's first id, never host root; the service keeps its own ids.
    assert_eq!(
        m.uid_map.value,
        [
            IdRange {
                inside: 0,
                outside: base,
                count: 102
            },
            IdRange {
                inside: 102,
                outside: 102,
                count: 1
            },
            IdRange {
                inside: 103,
                outside: base + 103,
                count: ID_RANGE - 103
            }
        ]
    );
    assert!(!m
        .uid_map
        .iter()
        .chain(m.gid_map.iter())
        .any(|r| r.outside == 0));
    // gid 105 and supplementary 4 punched out of the range: five lines.
    assert_eq!(m.gid_map.len(), 5);
    assert!(!m.deny_setgroups);
    assert_eq!(
        p.volumes[0].host_path,
        PathBuf::from("/var/lib/stockade/volumes/data")
    );
    assert_eq!((p.volumes[0].uid, p.volumes[0].gid), (102, 105));
}

#[test]
fn volume_owner_follows_an_explicit_idmap() {
    let f = Fixture::new(0);
    let p = f.plan(&String::from("[exec]\ncommand = [\"/bin/true\"]\nuser = 1000\ngroup = 1000\n[idmap]\nuid = [{ inside = 0, outside = 200000, count = 65536 }]\ngid = [{ inside = 0, outside = 200000, count = 65536 }]\n[[mount]]\ntype = \"volume\"\nname = \"d\"\ntarget = \"/srv\"\n"), &[]).unwrap();
    assert_eq!((p.volumes[0].uid, p.volumes[0].gid), (201000, 201000));
}

#[test]
fn unknown_user_is_reported_at_its_key() {
    let f = Fixture::new(0);
    let p = f.problems("[exec]\ncommand = [\"/bin/true\"]\nuser = \"nosuch\"\n");
    assert!(p[0].contains(":3:8: exec.user: no user `nosuch`"), "{p:#?}");
}

#[test]
fn unmapped_service_uid_is_refused() {
    let f = Fixture::new(0);
    let p = f.problems("[exec]\ncommand = [\"/bin/true\"]\nuser = 5\n[idmap]\nuid = [{ inside = 0, outside = 100000, count = 1 }]\ngid = [{ inside = 0, outside = 100000, count = 1 }]\n");
    assert!(
        p[0].contains("idmap.uid: the service's uid 5 is not mapped"),
        "{p:#?}"
    );
}

#[test]
fn without_root_only_an_own_uid_user_namespace_works() {
    let f = Fixture::new(1000);
    let p = f.plan(MIN, &[]).unwrap();
    let m = p.idmap.unwrap();
    assert_eq!(
        m.uid_map.value,
        [IdRange {
            inside: 0,
            outside: 1000,
            count: 1
        }]
    );
    assert!(m.deny_setgroups);

    let p = f.problems(&format!("{MIN}[namespaces]\nuser = false\n"));
    assert!(
        p[0].contains("namespaces.user: needs root (stockade runs as uid 1000)"),
        "{p:#?}"
    );
    let p = f.problems(&format!(
        "{MIN}[[mount]]\ntype = \"volume\"\nname = \"v\"\ntarget = \"/srv\"\n"
    ));
    assert!(
        p[0].contains("needs root (stockade runs as uid 1000): volumes live in"),
        "{p:#?}"
    );
}

#[test]
fn extra_arguments_need_args_append() {
    let f = Fixture::new(0);
    let p = f
        .plan(&format!("{MIN}args_append = true\n"), &["-v"])
        .unwrap();
    assert_eq!(p.argv.value, ["/bin/true", "-v"]);
    let p = f.plan(MIN, &["-v"]).unwrap_err();
    assert!(
        p[0].contains("exec.args_append: this profile does not accept extra arguments"),
        "{p:#?}"
    );
}

#[test]
fn empty_root_creates_every_mount_point_and_hides_nothing_from_the_host() {
    let f = Fixture::new(0);
    let p = f.plan(&format!("{MIN}[filesystem]\nroot = \"empty\"\n[[mount]]\ntype = \"bind\"\nsource = \"/etc/hosts\"\ntarget = \"/etc/hosts\"\n[[mount]]\ntype = \"bind\"\nsource = \"/bin\"\ntarget = \"/bin\"\n"), &[]).unwrap();
    let fs = p.fs.unwrap();
    assert_eq!(fs.root, RootSource::Empty);
    assert!(fs.ops.iter().any(|o| matches!(&o.value, MountOp::Bind { target, create: Some(NodeKind::File), .. } if target == "/etc/hosts")));
    assert!(!fs
        .ops
        .iter()
        .any(|o| matches!(&o.value, MountOp::Sysfs { .. })));
}

#[test]
fn hidden_directories_and_mounts_inside_them() {
    let f = Fixture::new(0);
    let p = f
        .plan(
            &format!("{MIN}[filesystem]\nhide = [\"/home\", \"/nonexistent\"]\n"),
            &[],
        )
        .unwrap();
    assert!(p
        .fs
        .unwrap()
        .ops
        .iter()
        .any(|o| matches!(&o.value, MountOp::Hide { target, dir: true } if target == "/home")));
    let e = f.problems(&format!("{MIN}[filesystem]\nhide = [\"/home\"]\n[[mount]]\ntype = \"tmpfs\"\ntarget = \"/home/alice\"\n"));
    assert!(
        e[0].contains("`/home/alice` is inside the hidden path `/home`"),
        "{e:#?}"
    );
}

#[test]
fn no_mount_namespace_means_no_filesystem_plan() {
    let f = Fixture::new(0);
    let p = f.plan(&format!("{MIN}[namespaces]\nmount = false\n[filesystem]\nread_only = false\nprivate_tmp = false\nprivate_dev = false\nproc = false\n"), &[]).unwrap();
    assert!(p.fs.is_none());
}

#[test]
fn root_directory_must_exist() {
    let f = Fixture::new(0);
    f.plan(&format!("{MIN}[filesystem]\nroot = \"/srv/rootfs\"\nprivate_tmp = false\nprivate_dev = false\nproc = false\n"), &[]).unwrap();
    let p = f.problems(&format!("{MIN}[filesystem]\nroot = \"/srv/none\"\n"));
    assert!(
        p[0].contains("filesystem.root: `/srv/none` is not a directory on the host"),
        "{p:#?}"
    );
}

mod cgroups {
    use super::*;
    use crate::host::CgroupFacts;

    const LIMITS: &str = "[resources]\nmemory_max = \"256M\"\nmemory_high = \"infinity\"\ncpu_quota = \"150%\"\ntasks_max = \"infinity\"\nio_weight = 10\nallowed_cpus = \"0,9-10\"\n";

    fn with(facts: CgroupFacts) -> Fixture {
        let mut f = Fixture::new(0);
        f.cgroup = facts;
        f
    }

    fn systemd() -> CgroupFacts {
        CgroupFacts {
            systemd_running: true,
            system_bus: true,
            v2_mount: Some("/sys/fs/cgroup".into()),
            root_controllers: ["cpuset", "cpu", "io", "memory", "pids"]
                .map(String::from)
                .to_vec(),
            ..Default::default()
        }
    }

    /// systemd records a limit on a scope it cannot enforce; the plan refuses instead.
    #[test]
    fn scope_limits_without_their_controllers_are_refused() {
        let mut facts = systemd();
        facts.v2_mount = Some("/sys/fs/cgroup/unified".into());
        facts.root_controllers.clear();
        let f = with(facts);
        let p = f.problems(&format!("{MIN}{LIMITS}"));
        assert!(
            p.iter().any(|l| l
                .contains("resources.memory_max: needs the cgroup v2 `memory` controller")
                && l.contains("hybrid")),
            "{p:#?}"
        );
        assert!(
            p.iter().any(|l| l.contains("resources.tasks_max")),
            "{p:#?}"
        );
        // Without limits, a scope on the same host is fine.
        assert!(f.plan(MIN, &[]).is_ok());
    }

    #[test]
    fn limits_become_systemd_properties_with_exact_names_and_units() {
        let f = with(systemd());
        let p = f
            .plan(&format!("description = \"d\"\n{MIN}{LIMITS}"), &[])
            .unwrap();
        let CgroupPlan::Scope(s) = p.cgroup else {
            panic!("{:?}", p.cgroup)
        };
        assert_eq!(s.unit, "stockade-p-42.scope");
        assert_eq!(s.slice, "stockade.slice");
        let get = |k: &str| {
            s.properties
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("MemoryMax"), Some(Prop::U64(256 << 20)));
        assert_eq!(get("MemoryHigh"), Some(Prop::U64(u64::MAX)));
        assert_eq!(get("CPUQuotaPerSecUSec"), Some(Prop::U64(1_500_000)));
        assert_eq!(get("TasksMax"), Some(Prop::U64(u64::MAX)));
        assert_eq!(get("IOWeight"), Some(Prop::U64(10)));
        assert_eq!(
            get("AllowedCPUs"),
            Some(Prop::Bytes(vec![0b0000_0001, 0b0000_0110]))
        );
        assert_eq!(get("Description"), Some(Prop::Str("d".into())));
        assert_eq!(get("Delegate"), Some(Prop::Bool(true)));
        // Refused by systemd on its private socket (see plan/cgroup.rs).
        assert_eq!(get("AddRef"), None);
        assert_eq!(
            get("CollectMode"),
            Some(Prop::Str("inactive-or-failed".into()))
        );
    }

    #[test]
    fn limits_become_cgroup_files_in_a_delegated_cgroup() {
        let f = with(CgroupFacts {
            v2_mount: Some("/sys/fs/cgroup".into()),
            own: Some("/system.slice/stockade@p.service".into()),
            own_controllers: ["cpu", "memory", "pids", "io", "cpuset"]
                .map(String::from)
                .to_vec(),
            delegated: true,
            ..systemd()
        });
        let p = f.plan(&format!("{MIN}{LIMITS}"), &[]).unwrap();
        let CgroupPlan::Leaves(l) = p.cgroup else {
            panic!("{:?}", p.cgroup)
        };
        assert_eq!(
            l.parent,
            PathBuf::from("/sys/fs/cgroup/system.slice/stockade@p.service")
        );
        assert_eq!(l.supervisor.as_deref(), Some("supervisor"));
        assert_eq!(l.controllers, ["cpu", "cpuset", "io", "memory", "pids"]);
        let get = |k: &str| {
            l.limits
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("memory.max"), Some("268435456"));
        assert_eq!(get("memory.high"), Some("max"));
        assert_eq!(get("cpu.max"), Some("150000 100000"));
        assert_eq!(get("pids.max"), Some("max"));
        assert_eq!(get("io.weight"), Some("default 10"));
        assert_eq!(get("cpuset.cpus"), Some("0,9-10"));
    }

    #[test]
    fn a_hybrid_host_without_systemd_refuses_limits_it_cannot_enforce() {
        let f = with(CgroupFacts {
            v2_mount: Some("/sys/fs/cgroup/unified".into()),
            ..Default::default()
        });
        let p = f.problems(&format!("{MIN}[resources]\nmemory_max = \"1G\"\n"));
        assert!(p[0].contains("resources.memory_max: needs the cgroup v2 `memory` controller, which /sys/fs/cgroup/unified (a hybrid hierarchy"), "{p:#?}");
        // Without limits nothing needs a cgroup.
        assert_eq!(f.plan(MIN, &[]).unwrap().cgroup, CgroupPlan::None);
    }

    #[test]
    fn explicit_modes_need_what_they_use() {
        let f = with(CgroupFacts::default());
        let p = f.problems(&format!("{MIN}[systemd]\nmode = \"scope\"\n"));
        assert!(
            p[0].contains("systemd.mode: `scope` needs systemd as the system manager"),
            "{p:#?}"
        );
        let f = with(CgroupFacts {
            v2_mount: Some("/sys/fs/cgroup".into()),
            own: Some("/user.slice".into()),
            ..systemd()
        });
        let p = f.problems(&format!("{MIN}[systemd]\nmode = \"delegate\"\n"));
        assert!(
            p[0].contains("`delegate` needs a unit with Delegate=yes"),
            "{p:#?}"
        );
    }

    #[test]
    fn notify_relay_goes_on_a_stockade_tmpfs_and_never_exposes_the_host_socket() {
        let mut f = with(CgroupFacts::default());
        f.notify = Some("/run/systemd/notify".into());
        let p = f
            .plan(&format!("{MIN}[systemd]\nnotify = true\n"), &[])
            .unwrap();
        let n = p.notify.clone().unwrap();
        assert_eq!(n.target, "/run/stockade-notify.sock");
        assert!(p
            .env
            .iter()
            .any(|e| e.value == ("NOTIFY_SOCKET".into(), n.target.clone())));
        let ops = &p.fs.as_ref().unwrap().ops;
        assert!(ops.iter().any(|o| matches!(&o.value, MountOp::Bind { source, target, .. } if *source == n.host_socket.display().to_string() && *target == n.target)));
        assert!(!ops.iter().any(
            |o| matches!(&o.value, MountOp::Bind { source, .. } if source.starts_with("/run/systemd"))
        ));
        assert!(!p.ready_after_exec);
        // Without notify = true, stockade reports readiness itself.
        let p = f.plan(MIN, &[]).unwrap();
        assert!(p.notify.is_none() && p.ready_after_exec);
        assert!(!p.env.iter().any(|e| e.value.0 == "NOTIFY_SOCKET"));
    }
}

#[test]
fn baseline_denies_by_capability() {
    let f = Fixture::new(0);
    let p = f.plan(MIN, &[]).unwrap();
    let s = &p.finals.syscalls.filter;
    assert_eq!(s.default, SysAction::Allow);
    assert_eq!(s.listed_action, SysAction::Errno(libc::EPERM));
    for denied in [
        "mount",
        "pivot_root",
        "init_module",
        "reboot",
        "kexec_load",
        "keyctl",
    ] {
        assert!(s.listed.contains(denied), "{denied} not denied");
    }
    for denied in [
        "clock_settime",
        "bpf",
        "perf_event_open",
        "ptrace",
        "io_uring_setup",
    ] {
        assert!(s.listed.contains(denied), "{denied} not denied");
    }
    assert!(!s.listed.contains("openat") && !s.listed.contains("execve"));
    assert!(s.restrict_namespaces);

    // Keeping the capability that governs a group lets its calls through.
    let p = f
        .plan(
            &format!("{MIN}[security]\ncapabilities = [\"sys_time\", \"sys_admin\"]\n"),
            &[],
        )
        .unwrap();
    let s = &p.finals.syscalls.filter;
    assert!(!s.listed.contains("clock_settime") && !s.listed.contains("mount"));
    assert!(s.listed.contains("init_module") && s.listed.contains("keyctl"));
    assert!(!s.restrict_namespaces);
}

#[test]
fn allow_list_adds_default_and_subtracts_deny() {
    let f = Fixture::new(0);
    let text = format!(
        "{MIN}[security]\nsyscall_filter = [\"@system-service\"]\nsyscall_deny = [\"@resources\", \"kcmp\"]\nsyscall_errno = \"ENOSYS\"\n"
    );
    let s = f.plan(&text, &[]).unwrap().finals.syscalls.filter;
    assert_eq!(s.default, SysAction::Errno(libc::ENOSYS));
    assert_eq!(s.listed_action, SysAction::Allow);
    assert!(s.listed.contains("openat") && s.listed.contains("execve"));
    assert!(!s.listed.contains("kcmp") && !s.listed.contains("setrlimit"));
    assert!(!s.listed.contains("mount") && !s.listed.contains("reboot"));
    // stockade's own last call after the filter.
    assert!(s.listed.contains("capset"));

    let text = format!("{MIN}[security]\nsyscall_errno = \"kill\"\nsyscall_log = true\n");
    let s = f.plan(&text, &[]).unwrap().finals.syscalls.filter;
    assert_eq!(s.listed_action, SysAction::Log);
    let text = format!("{MIN}[security]\nsyscall_errno = \"kill\"\n");
    let s = f.plan(&text, &[]).unwrap().finals.syscalls.filter;
    assert_eq!(s.listed_action, SysAction::KillProcess);
}

#[test]
fn protect_kernel_masks_what_the_kernel_has() {
    let f = Fixture::new(0);
    let root = &f.host.root;
    fs::create_dir_all(root.join("proc/sys")).unwrap();
    fs::create_dir_all(root.join("proc/acpi")).unwrap();
    fs::write(root.join("proc/keys"), "").unwrap();
    fs::create_dir_all(root.join("sys/firmware")).unwrap();
    let p = f.plan(MIN, &[]).unwrap();
    let ops = &p.fs.as_ref().unwrap().ops;
    let find = |t: &str| {
        ops.iter()
            .find(|o| o.target() == t)
            .map(|o| o.value.clone())
    };
    assert!(matches!(
        find("/proc/keys"),
        Some(MountOp::Hide { dir: false, .. })
    ));
    assert!(matches!(
        find("/proc/acpi"),
        Some(MountOp::Hide { dir: true, .. })
    ));
    assert!(matches!(find("/proc/sys"), Some(MountOp::ReadOnly { .. })));
    // Sysfs is fresh (network namespace) and read-only already; its firmware is masked.
    assert!(matches!(find("/sys"), Some(MountOp::Sysfs { .. })));
    assert!(matches!(
        find("/sys/firmware"),
        Some(MountOp::Hide { dir: true, .. })
    ));
    // Not on this kernel, not masked.
    assert!(find("/proc/kcore").is_none());
    // Masks come after the /proc they cover.
    let pos = |t: &str| ops.iter().position(|o| o.target() == t).unwrap();
    assert!(pos("/proc") < pos("/proc/keys") && pos("/proc") < pos("/proc/sys"));

    let p = f
        .plan(&format!("{MIN}[security]\nprotect_kernel = false\n"), &[])
        .unwrap();
    assert!(!targets(&p).contains(&"/proc/keys") && !targets(&p).contains(&"/proc/sys"));
}

#[test]
fn kernel_masks_are_skipped_where_landlock_keeps_the_service_out() {
    let f = Fixture::new(0);
    let root = &f.host.root;
    fs::create_dir_all(root.join("proc/sys")).unwrap();
    fs::write(root.join("proc/keys"), "").unwrap();
    fs::create_dir_all(root.join("sys/firmware")).unwrap();
    let with = |landlock: &str| {
        let p = f
            .plan(&format!("{MIN}[security]\nlandlock = {landlock}\n"), &[])
            .unwrap();
        targets(&p)
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
    };
    // Nothing under /proc or /sys is reachable: no mask is needed.
    let t = with("{ read = [\"/usr\"], exec = [\"/bin\"] }");
    assert!(
        !t.contains(&"/proc/keys".into()) && !t.contains(&"/proc/sys".into()),
        "{t:?}"
    );
    assert!(!t.contains(&"/sys/firmware".into()), "{t:?}");
    // /proc readable: its files are masked; not writable: no read-only binds.
    let t = with("{ read = [\"/proc\"], exec = [\"/bin\"] }");
    assert!(
        t.contains(&"/proc/keys".into()) && !t.contains(&"/proc/sys".into()),
        "{t:?}"
    );
    // Readable through an ancestor ("/") and writable below: everything applies.
    let t = with("{ read = [\"/\"], write = [\"/proc/sys/kernel\"], exec = [\"/bin\"] }");
    assert!(
        t.contains(&"/proc/keys".into()) && t.contains(&"/proc/sys".into()),
        "{t:?}"
    );
    assert!(t.contains(&"/sys/firmware".into()), "{t:?}");
}

impl Fixture {
    /// Plans `text` as the profile `name` (its file name), for what depends on the name.
    fn plan_as(&self, name: &str, text: &str) -> Result<LaunchPlan, Vec<String>> {
        let path = self.dir.path().join(format!("{name}.toml"));
        fs::write(&path, text).unwrap();
        let loaded = load(
            path.to_str().unwrap(),
            &SearchPath {
                dirs: vec![],
                trusted_owners: None,
            },
        )
        .unwrap_or_else(|e| panic!("{:#?}", e.lines()));
        let inv = Invocation {
            volume_dir: "/var/lib/stockade/volumes".into(),
            ..Default::default()
        };
        self.build(&loaded, &inv, None)
    }
}

#[test]
fn landlock_rules_must_exist_in_the_sandbox_not_merely_on_the_host() {
    let f = Fixture::new(0);
    // On the host, but the sandbox's /tmp is a fresh tmpfs.
    fs::create_dir_all(f.host.root.join("tmp/x")).unwrap();
    let text = |read: &str, write: &str| {
        format!("{MIN}[security]\nlandlock = {{ read = [{read}], write = [{write}], exec = [\"/bin\"] }}\n[[mount]]\ntype = \"tmpfs\"\ntarget = \"/run\"\n[[mount]]\ntype = \"volume\"\nname = \"d\"\ntarget = \"/run/data\"\n")
    };
    // What stockade mounts exists inside: private /tmp and /dev/shm, a volume on a tmpfs
    // (whose directory is made only at the start), a path through a symlink (/var/run).
    f.plan(
        &text(
            "\"/usr\", \"/tmp\", \"/dev/shm\", \"/var/run\", \"/proc/self\"",
            "\"/run/data\"",
        ),
        &[],
    )
    .unwrap();
    let p = f.problems(&text("\"/usr\", \"/srv/nope\"", "\"/tmp/x\""));
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(p[0].contains(":4:21: security.landlock.read: `/srv/nope` does not exist in the sandbox, so landlock cannot add a rule for it: there is no `/srv/nope` in the sandbox root `/`"), "{p:#?}");
    assert!(p[1].contains("security.landlock.write: `/tmp/x` does not exist in the sandbox, so landlock cannot add a rule for it: `/tmp` is a fresh tmpfs stockade mounts, which starts empty"), "{p:#?}");
}

#[test]
fn workdir_must_be_a_directory_in_the_sandbox() {
    let f = Fixture::new(0);
    let with = |w: &str| f.plan(&format!("{MIN}workdir = \"{w}\"\n"), &[]);
    for ok in ["/", "/tmp", "/var/run", "/var/lib/redis", "/dev"] {
        assert_eq!(with(ok).unwrap().workdir.value, ok);
    }
    let p = with("/srv/app").unwrap_err();
    assert!(p[0].contains(":3:11: exec.workdir: the working directory `/srv/app` does not exist in the sandbox: there is no `/srv/app` in the sandbox root `/`; choose one"), "{p:#?}");
    let p = with("/etc/hosts").unwrap_err();
    assert!(
        p[0].contains("exec.workdir: `/etc/hosts` is a file in the sandbox, not a directory"),
        "{p:#?}"
    );
    let p = with("/tmp/app").unwrap_err();
    assert!(p[0].contains("`/tmp` is a fresh tmpfs"), "{p:#?}");
}

#[test]
fn command_must_be_an_executable_file_in_the_sandbox() {
    let f = Fixture::new(0);
    let root = &f.host.root;
    std::os::unix::fs::symlink("true", root.join("bin/link")).unwrap();
    let with = |c: &str, extra: &str| f.plan(&format!("[exec]\ncommand = [\"{c}\"]\n{extra}"), &[]);
    with("/bin/link", "").unwrap();
    with("/var/run/../../bin/true", "").unwrap();
    let p = with("/usr/bin", "").unwrap_err();
    assert!(p[0].contains(":2:11: exec.command: `/usr/bin` is a directory, not a program; name the program inside it"), "{p:#?}");
    let p = with("/etc/hosts", "").unwrap_err();
    assert!(p[0].contains("exec.command: the program `/etc/hosts` is not executable (mode 0644); make it executable"), "{p:#?}");
    let p = with("/bin/nope", "").unwrap_err();
    assert!(p[0].contains("exec.command: the program `/bin/nope` does not exist in the sandbox: there is no `/bin/nope` in the sandbox root `/`"), "{p:#?}");
    // Below a hidden directory nothing is left.
    let p = with("/bin/true", "[filesystem]\nhide = [\"/bin\"]\n").unwrap_err();
    assert!(
        p[0].contains("`/bin` is hidden by filesystem.hide and empty"),
        "{p:#?}"
    );
    // Without a mount namespace the service sees the host as it is.
    let p = with("/usr/bin", "[namespaces]\nmount = false\n[filesystem]\nread_only = false\nprivate_tmp = false\nprivate_dev = false\nproc = false\n").unwrap_err();
    assert!(p[0].contains("is a directory, not a program"), "{p:#?}");
    // In another root, the program is looked up there.
    let p = with("/usr/bin", "[filesystem]\nroot = \"/srv/rootfs\"\nprivate_tmp = false\nprivate_dev = false\nproc = false\n").unwrap_err();
    assert!(
        p[0].contains("there is no `/usr/bin` in the sandbox root `/srv/rootfs`"),
        "{p:#?}"
    );
}

#[test]
fn hiding_what_stockade_mounts_is_refused() {
    let f = Fixture::new(0);
    let hide = |h: &str, extra: &str| {
        f.plan(
            &format!("{MIN}[filesystem]\nhide = [\"{h}\"]\n{extra}"),
            &[],
        )
    };
    for (h, msg) in [
        ("/dev", "cannot hide `/dev`: stockade mounts it itself (filesystem.private_dev); turn that off, or hide paths below it"),
        ("/proc", "cannot hide `/proc`: stockade mounts it itself (filesystem.proc)"),
        ("/sys", "cannot hide `/sys`: stockade mounts it itself (a fresh sysfs, for namespaces.net)"),
        ("/dev/shm", "cannot hide `/dev/shm`: stockade mounts it itself (filesystem.private_dev)"),
        ("/var", "cannot hide `/var`: stockade mounts `/var/tmp` below it (filesystem.private_tmp); turn that off, or hide paths beside it"),
    ] {
        let p = hide(h, "").unwrap_err();
        assert!(p[0].contains(&format!(":4:8: filesystem.hide: {msg}")), "{p:#?}");
    }
    // What stockade does not mount may be hidden.
    hide("/dev", "private_dev = false\n").unwrap();
    hide("/var/lib", "").unwrap();
    // A [[mount]] inside a hidden path is refused at the mount.
    let p = hide("/run", "[[mount]]\ntype = \"tmpfs\"\ntarget = \"/run\"\n").unwrap_err();
    assert!(
        p[0].contains("mount[1].target: `/run` is inside the hidden path `/run`"),
        "{p:#?}"
    );
}

#[test]
fn nofile_may_not_exceed_the_kernels_nr_open() {
    let f = Fixture::new(0);
    fs::create_dir_all(f.host.root.join("proc/sys/fs")).unwrap();
    fs::write(f.host.root.join("proc/sys/fs/nr_open"), "1048576\n").unwrap();
    let p = f
        .plan(
            &format!("{MIN}rlimits = {{ nofile = 1048576, core = 0 }}\n"),
            &[],
        )
        .unwrap();
    assert!(p.finals.rlimits.iter().any(|r| r.value
        == Rlimit {
            resource: nix::sys::resource::Resource::RLIMIT_NOFILE,
            limit: Limit::Value(1048576)
        }));
    let p = f.problems(&format!("{MIN}rlimits = {{ nofile = 1048577 }}\n"));
    assert!(p[0].contains(":3:22: exec.rlimits.nofile: 1048577 is above the kernel's limit fs.nr_open = 1048576; use at most 1048576, or raise it with `sysctl fs.nr_open=1048577`"), "{p:#?}");
}

#[test]
fn the_hostname_defaults_to_the_profile_name_with_a_uts_namespace() {
    let f = Fixture::new(0);
    assert_eq!(
        f.plan(MIN, &[])
            .unwrap()
            .hostname
            .as_ref()
            .map(|h| h.as_str()),
        Some("p")
    );
    // A name that is no hostname does not make a default profile invalid.
    let p = f.plan_as("my_svc", MIN).unwrap();
    assert_eq!(p.hostname.as_ref().map(|h| h.as_str()), Some("my-svc"));
    let p = f
        .plan(
            &format!("{MIN}[network]\nhostname = \"web.example\"\n"),
            &[],
        )
        .unwrap();
    assert_eq!(p.hostname.as_ref().map(|h| h.as_str()), Some("web.example"));
    let p = f
        .plan(&format!("{MIN}[namespaces]\nuts = false\n"), &[])
        .unwrap();
    assert_eq!(p.hostname, None);
}

#[test]
fn hostnames_made_of_profile_names_are_valid() {
    let long = "a".repeat(100);
    for (name, host) in [
        ("redis", "redis"),
        ("my_svc", "my-svc"),
        ("_x_", "x"),
        ("a..b", "a.b"),
        ("web@1.-x-", "web-1.x"),
        ("...", "stockade"),
        ("ünï", "n"),
        (long.as_str(), &long[..64]),
    ] {
        let h = super::hostname_for(name);
        assert_eq!(h, host, "{name}");
        assert_eq!(crate::profile::validate::hostname_problem(&h), None, "{h}");
    }
    let labels = format!("{}.{}", "a".repeat(63), "b".repeat(10));
    let h = super::hostname_for(&labels);
    assert!(
        h.len() <= 64 && crate::profile::validate::hostname_problem(&h).is_none(),
        "{h}"
    );
}

#[test]
fn deny_lists_may_not_deny_what_stockade_needs_after_the_filter() {
    let f = Fixture::new(0);
    let deny = |list: &str, extra: &str| {
        f.plan(
            &format!("{MIN}[security]\nsyscall_deny = [{list}]\n{extra}"),
            &[],
        )
    };
    let p = deny("\"execve\"", "").unwrap_err();
    assert!(p[0].contains(":4:16: security.syscall_deny: cannot deny execve: stockade execs the service after installing the filter; denying execve would deny the service itself; remove it from the list"), "{p:#?}");
    // The same in an allow-list, where it used to be put back silently.
    let p = deny("\"write\"", "syscall_filter = [\"@system-service\"]\n").unwrap_err();
    assert!(
        p[0].contains("cannot deny write: stockade reports a failed exec"),
        "{p:#?}"
    );
    let p = deny("\"@default\"", "").unwrap_err();
    assert!(p[0].contains("security.syscall_deny: `@default` contains execve, which stockade cannot deny: stockade execs the service"), "{p:#?}");
    assert!(p[1].contains("`@default` contains exit_group"), "{p:#?}");
    // With no_new_privs nothing needs capset after the filter: denying it means it.
    let s = deny("\"@privileged\", \"capget\"", "")
        .unwrap()
        .finals
        .syscalls
        .filter;
    assert!(s.listed.contains("capset") && s.listed.contains("capget"));
    let s = deny("\"@resources\"", "syscall_filter = [\"@system-service\"]\n")
        .unwrap()
        .finals
        .syscalls
        .filter;
    assert!(s.listed.contains("execve") && !s.listed.contains("setrlimit"));
    let p = deny("\"@privileged\"", "no_new_privileges = false\n").unwrap_err();
    assert!(p[0].contains("`@privileged` contains capset, which stockade cannot deny: without no_new_privileges, stockade installs the filter with CAP_SYS_ADMIN"), "{p:#?}");
    let p = deny("\"capget\"", "no_new_privileges = false\n").unwrap_err();
    assert!(
        p[0].contains("cannot deny capget: ")
            && p[0].ends_with("set `no_new_privileges = true` to deny it"),
        "{p:#?}"
    );
}

#[test]
fn the_baseline_denies_nothing_stockade_needs_after_the_filter() {
    let s = default_baseline();
    for call in ["execve", "write", "exit_group", "capget", "capset"] {
        assert!(!s.listed.contains(call), "{call}");
    }
}

#[test]
fn the_namespace_table_and_the_schema_name_the_same_keys() {
    use crate::profile::schema::Namespaces;
    use crate::profile::Section;
    let table: Vec<&str> = Namespace::ALL.iter().map(|r| r.key).collect();
    let schema: Vec<&str> = Namespaces::KEYS.iter().map(|k| k.name).collect();
    assert_eq!(table, schema);
    for row in Namespace::ALL {
        assert_eq!(row.ns.row().key, row.key);
    }
}

#[test]
fn every_resource_key_has_its_controller() {
    use crate::profile::schema::Resources;
    use crate::profile::Section;
    let table: Vec<&str> = cgroup::CONTROLLERS.iter().map(|(k, _)| *k).collect();
    let schema: Vec<&str> = Resources::KEYS.iter().map(|k| k.name).collect();
    assert_eq!(table, schema);
}

#[test]
fn a_kernel_mask_that_cannot_be_inspected_is_a_problem_not_skipped() {
    let f = Fixture::new(0);
    // /sys/devices a regular file: stat of /sys/devices/virtual/powercap fails with
    // ENOTDIR, not ENOENT, so nobody can tell whether the path needs its mask.
    let devices = f.host.root.join("sys/devices");
    fs::write(&devices, "").unwrap();
    let p = f.problems(MIN);
    assert!(
        p.iter().any(|l| l.contains(
            "security.protect_kernel: cannot inspect `/sys/devices/virtual/powercap` on this host to mask it: "
        )),
        "{p:#?}"
    );
    // Absent is fine: nothing to mask.
    fs::remove_file(&devices).unwrap();
    f.plan(MIN, &[]).unwrap();
}
/// The record: every plan serialises to JSON and back unchanged, and its decisions cite
/// the file and line that made them (or the default).
pub(crate) mod record {
    use super::*;
    use crate::host::CgroupFacts;

    /// A fake host that has what the example profiles run: their users, programs, config
    /// and data directories, systemd with every controller.
    pub(crate) fn example_host() -> Fixture {
        let mut f = Fixture::new(0);
        let root = f.host.root.clone();
        for d in [
            "etc/nginx",
            "usr/lib",
            "usr/share/nginx",
            "usr/sbin",
            "lib",
            "lib64",
            "var/www",
            "var/log/nginx",
            "var/lib/nginx",
            "var/lib/postgresql",
            "proc/self",
            "sys/devices/system/cpu",
            "sys/kernel/mm/transparent_hugepage",
            "srv",
            "mnt",
            "media",
            "boot",
            "root",
            "var/lib/every",
            "proc/net",
            "sys/class/net/lo",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        // A host without routes but the loopback one's: the every-key fixture's bridge fits.
        fs::write(root.join("proc/net/route"), "Iface\tDestination\tGateway\n").unwrap();
        ipv6_on(&root);
        for prog in [
            "bin/sh",
            "usr/bin/redis-server",
            "usr/bin/redis-check-rdb",
            "usr/bin/memcached",
            "usr/sbin/nginx",
        ] {
            fs::write(root.join(prog), "").unwrap();
            fs::set_permissions(root.join(prog), fs::Permissions::from_mode(0o755)).unwrap();
        }
        for file in ["etc/ld.so.cache", "dev/urandom", "dev/null"] {
            fs::write(root.join(file), "").unwrap();
        }
        fs::write(
            root.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nredis:x:102:105::/var/lib/redis:/usr/sbin/nologin\nmemcache:x:103:106::/nonexistent:/usr/sbin/nologin\npostgres:x:104:107::/var/lib/postgresql:/bin/sh\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n",
        )
        .unwrap();
        fs::write(
            root.join("etc/group"),
            "root:x:0:\nredis:x:105:\nmemcache:x:106:\npostgres:x:107:\nwww-data:x:33:\nadm:x:4:\n",
        )
        .unwrap();
        let all = ["cpu", "cpuset", "io", "memory", "pids"]
            .map(String::from)
            .to_vec();
        f.cgroup = CgroupFacts {
            systemd_running: true,
            system_bus: true,
            v2_mount: Some("/sys/fs/cgroup".into()),
            root_controllers: all.clone(),
            own: Some("/user.slice".into()),
            own_controllers: all,
            delegated: false,
        };
        f.notify = Some("/run/systemd/notify".into());
        f
    }

    pub(crate) fn plan_file(f: &Fixture, path: &Path, search: &[PathBuf]) -> LaunchPlan {
        let (loaded, inv) = load_file(f, path, search);
        f.build(&loaded, &inv, Some(6))
            .unwrap_or_else(|e| panic!("{}: {e:#?}", path.display()))
    }

    fn load_file(
        f: &Fixture,
        path: &Path,
        search: &[PathBuf],
    ) -> (crate::profile::Loaded, Invocation) {
        let loaded = load(
            path.to_str().unwrap(),
            &SearchPath {
                dirs: search.to_vec(),
                trusted_owners: None,
            },
        )
        .unwrap_or_else(|e| panic!("{}: {:#?}", path.display(), e.lines()));
        let inv = Invocation {
            env: vec![("PATH".into(), "/bin".into())],
            volume_dir: VOLUME_DIR.into(),
            id: 7,
            notify_socket: f.notify.clone(),
            ids_dir: IDS_DIR.into(),
            // The every-key fixture's network.
            network_dirs: vec![
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/networks")
            ],
            ..Default::default()
        };
        (loaded, inv)
    }

    /// Every example profile and the every-key fixture, with the examples' directory (their
    /// include search path).
    pub(crate) fn example_files() -> (Vec<PathBuf>, PathBuf) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let examples = dir.join("examples");
        let mut files: Vec<PathBuf> = fs::read_dir(&examples)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        assert!(files.len() >= 5, "{files:?}");
        files.push(dir.join("tests/fixtures/every-key.toml"));
        (files, examples)
    }

    /// The planner is a pure function of (profile, host facts, invocation): with the facts
    /// gathered, the fake host root is deleted, and every profile plans exactly as it did
    /// with the root there. A read of the host while planning would find nothing and change
    /// the plan (or fail it). Beside the examples, a profile whose walks go through symlinks
    /// on the host, through a bind whose source is a symlink, and through a symlink stockade
    /// makes, so the view's read-ahead is put to work.
    #[test]
    fn planning_reads_the_gathered_facts_and_nothing_else() {
        let f = example_host();
        let root = f.host.root.clone();
        fs::create_dir_all(root.join("srv/data/logs")).unwrap();
        fs::create_dir_all(root.join("opt/app/bin")).unwrap();
        fs::create_dir_all(root.join("var/lib/app")).unwrap();
        fs::write(root.join("opt/app/bin/run"), "").unwrap();
        fs::set_permissions(
            root.join("opt/app/bin/run"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let link = |text: &str, at: &str| std::os::unix::fs::symlink(text, root.join(at)).unwrap();
        link("data", "srv/current");
        link("/opt/app/bin/run", "usr/bin/app");
        link("app", "usr/bin/app-link");
        link("logs", "srv/data/latest");
        let symlinks = f.dir.path().join("symlinks.toml");
        fs::write(
            &symlinks,
            r#"[exec]
command = ["/usr/bin/app-link"]
workdir = "/var/lib/app/latest"
[[mount]]
type = "bind"
source = "/srv/current"
target = "/var/lib/app"
[[mount]]
type = "bind"
source = "/opt/app"
target = "/opt/app"
read_only = true
[[mount]]
type = "symlink"
source = "/var/lib/app/latest"
target = "/tmp/logs"
[security]
landlock = { read = ["/usr", "/tmp/logs/", "/dev/stdout", "/var/run"], exec = ["/usr/bin/app-link"] }
"#,
        )
        .unwrap();
        let (mut files, examples) = example_files();
        files.push(symlinks);
        let planned: Vec<_> = files
            .iter()
            .map(|path| {
                let (loaded, inv) = load_file(&f, path, std::slice::from_ref(&examples));
                let facts = f.facts(&loaded, &inv, Some(6));
                let with_root = plan_with(&loaded, &inv, &facts)
                    .unwrap_or_else(|e| panic!("{}: {e:#?}", path.display()));
                (loaded, inv, facts, with_root)
            })
            .collect();
        // The symlinked bind source is bound where it resolves, read before planning.
        let sym = &planned.last().unwrap().3;
        assert!(
            sym.fs.as_ref().unwrap().ops.iter().any(|o| matches!(
                &o.value,
                MountOp::Bind { source, target, .. } if source == "/srv/data" && target == "/var/lib/app"
            )),
            "{sym:#?}"
        );
        fs::remove_dir_all(&root).unwrap();
        assert!(!root.exists());
        for (loaded, inv, facts, with_root) in &planned {
            let without = plan_with(loaded, inv, facts)
                .unwrap_or_else(|e| panic!("{}: {e:#?}", loaded.path.display()));
            assert_eq!(&without, with_root, "{}", loaded.path.display());
        }
    }

    fn round_trips(p: &LaunchPlan) {
        let json = serde_json::to_string(p).unwrap();
        let back: LaunchPlan = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, p, "{json}");
    }

    #[test]
    fn every_example_and_the_every_key_fixture_round_trip_through_json() {
        let f = example_host();
        let (files, examples) = example_files();
        for path in &files {
            let p = plan_file(&f, path, std::slice::from_ref(&examples));
            round_trips(&p);
        }
        // The plan of redis is what the README shows.
        let redis = plan_file(
            &f,
            &examples.join("redis.toml"),
            std::slice::from_ref(&examples),
        );
        assert!(redis.notify.is_some() && !redis.finals.syscalls.prebuilt);
        // The default baseline is the one compiled at build time, decided by the plan; a
        // profile with landlock exec rules adds the memfd seal, so hello has a filter of its own.
        assert!(f.plan(MIN, &[]).unwrap().finals.syscalls.prebuilt);
        let hello = plan_file(&f, &examples.join("hello.toml"), &[examples]);
        assert!(!hello.finals.syscalls.prebuilt);
    }

    #[test]
    fn a_drop_in_value_is_cited_at_its_file_and_line_and_a_default_by_name() {
        let f = Fixture::new(0);
        let dir = f.dir.path();
        fs::write(
            dir.join("svc.toml"),
            format!("{MIN}[network]\nhostname = \"a\"\n"),
        )
        .unwrap();
        fs::create_dir_all(dir.join("svc.toml.d")).unwrap();
        let dropin = dir.join("svc.toml.d/10-x.toml");
        fs::write(&dropin, "# a comment\n\n[network]\nhostname = \"b\"\n").unwrap();
        let p = plan_file_at(&f, &dir.join("svc.toml"));
        let h = p.hostname.as_ref().unwrap();
        assert_eq!(h.value, "b");
        assert_eq!(
            h.from,
            Provenance::Profile {
                file: dropin.clone(),
                line: 4,
                col: 12,
                key: "network.hostname".into()
            }
        );
        assert_eq!(h.from.to_string(), "10-x.toml:4");
        // Nothing set private_tmp: its mounts cite the default, by name.
        let tmp =
            p.fs.as_ref()
                .unwrap()
                .ops
                .iter()
                .find(|o| o.target() == "/tmp")
                .unwrap();
        assert_eq!(tmp.from, Provenance::default("filesystem.private_tmp"));
        assert_eq!(tmp.from.to_string(), "default (filesystem.private_tmp)");
        // And the record keeps both through JSON.
        round_trips(&p);
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["hostname"]["from"]["profile"]["line"], 4);
    }

    fn plan_file_at(f: &Fixture, path: &Path) -> LaunchPlan {
        plan_file(f, path, &[])
    }
}

/// A fake host network: a default route and its subnet on eth0, one listening socket
/// (127.0.0.1:8080), a stub resolver with an upstream, and an `eth1` that is no bridge.
fn net_fixture() -> Fixture {
    let f = Fixture::new(0);
    let root = &f.host.root;
    fs::create_dir_all(root.join("proc/net")).unwrap();
    fs::write(root.join("proc/net/route"), "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\neth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\neth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n").unwrap();
    fs::write(
        root.join("proc/net/tcp"),
        "  sl  local_address rem_address   st\n   0: 0100007F:1F90 00000000:0000 0A 0\n",
    )
    .unwrap();
    fs::create_dir_all(root.join("sys/class/net/eth0")).unwrap();
    fs::create_dir_all(root.join("sys/class/net/eth1")).unwrap();
    fs::write(root.join("etc/resolv.conf"), "nameserver 127.0.0.53\n").unwrap();
    fs::create_dir_all(root.join("run/systemd/resolve")).unwrap();
    fs::write(
        root.join("run/systemd/resolve/resolv.conf"),
        "nameserver 192.0.2.53\n",
    )
    .unwrap();
    // IPv6: on; a default route and fd00:1::/48 via a router on eth0; [::1]:8082 listening.
    ipv6_on(root);
    fs::write(root.join("proc/net/ipv6_route"), concat!(
        "fd000001000000000000000000000000 30 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003     eth0\n",
        "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003     eth0\n",
    )).unwrap();
    fs::write(
        root.join("proc/net/tcp6"),
        "  sl  local_address rem_address   st\n   0: 00000000000000000000000001000000:1F92 00000000000000000000000000000000:0000 0A 0\n",
    )
    .unwrap();
    fs::create_dir_all(f.dir.path().join("networks")).unwrap();
    fs::write(
        f.dir.path().join("networks/v6.toml"),
        "subnet = \"10.90.0.0/24\"\nsubnet6 = \"fd89::/64\"\n",
    )
    .unwrap();
    f
}

/// IPv6 as a host has it by default: on for every interface.
fn ipv6_on(root: &Path) {
    for c in ["all", "default"] {
        let conf = root.join("proc/sys/net/ipv6/conf").join(c);
        fs::create_dir_all(&conf).unwrap();
        fs::write(conf.join("disable_ipv6"), "0\n").unwrap();
    }
}

const BRIDGE: &str = "[exec]\ncommand = [\"/bin/true\"]\n[network]\nmode = \"bridge\"\n";

#[test]
fn a_bridge_plan_joins_the_default_network_with_its_decisions_cited() {
    let f = net_fixture();
    let p = f
        .plan(
            &format!("{BRIDGE}publish = [\"127.0.0.1:16379:6379\", \"5353:53/udp\"]\n"),
            &[],
        )
        .unwrap();
    let n = p.network.as_ref().unwrap();
    assert_eq!(n.network.value, "default");
    assert_eq!(n.network.from, Provenance::default("network.network"));
    assert_eq!(
        (n.def.bridge.as_str(), n.def.gateway.to_string().as_str()),
        ("stockade0", "10.89.0.1")
    );
    assert_eq!(n.veth, "vstk42");
    assert_eq!(n.address, None);
    assert!(n.outbound.value);
    assert_eq!(
        n.publish
            .iter()
            .map(|p| p.value.to_string())
            .collect::<Vec<_>>(),
        ["127.0.0.1:16379:6379/tcp", "5353:53/udp"]
    );
    // The host's resolver is a loopback stub: its upstream is used.
    assert_eq!(
        n.dns.value,
        vec!["192.0.2.53".parse::<std::net::IpAddr>().unwrap()]
    );
    assert!(p.has(Namespace::Net) && p.loopback_up);
}

#[test]
fn mode_host_is_the_hosts_network_namespace_and_contradictions_are_one_error() {
    let f = net_fixture();
    let p = f
        .plan(&format!("{MIN}[network]\nmode = \"host\"\n"), &[])
        .unwrap();
    assert!(!p.has(Namespace::Net));
    assert!(p.network.is_none());
    let text = format!("{MIN}[namespaces]\nnet = true\n[network]\nmode = \"host\"\n");
    let e = f.load_problems(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains(":6:")
            && e[0].contains("network.mode")
            && e[0].contains("contradicts `namespaces.net = true`"),
        "{e:?}"
    );
}

#[test]
fn bad_network_values_are_refused_with_file_line_and_key() {
    let f = net_fixture();
    let cases: &[(&str, &str)] = &[
        (
            "address = \"10.90.0.5\"\n",
            "network.address: 10.90.0.5 is outside the subnet 10.89.0.0/24",
        ),
        ("address = \"10.89.0.1\"\n", "is the gateway"),
        (
            "publish = [\"8080:80\"]\n",
            "host port 8080/tcp is already bound on the host",
        ),
        (
            "network = \"lab\"\n",
            "network.network: network `lab` is not defined",
        ),
    ];
    for (extra, want) in cases {
        let e = f.problems(&format!("{BRIDGE}{extra}"));
        assert!(
            e.iter().any(|l| l.contains(":5:") && l.contains(want)),
            "{extra}: {e:?}"
        );
    }
    // Host-independent ones are found by validation already.
    for (extra, want) in [
        (
            "publish = [\"99999:80\"]\n",
            "network.publish: `99999:80`: port 99999 is outside 1-65535",
        ),
        ("publish = [\"80\"]\n", "is not a port mapping"),
        ("address = \"10.89.0\"\n", "is not an IPv4 address"),
    ] {
        let e = f.load_problems(&format!("{BRIDGE}{extra}"));
        assert!(
            e.iter().any(|l| l.contains(":5:") && l.contains(want)),
            "{extra}: {e:?}"
        );
    }
    // A leased address.
    let leases = f.host.root.join("run/stockade/networks/default/leases");
    fs::create_dir_all(&leases).unwrap();
    fs::write(leases.join("10.89.0.10"), "1 1\n").unwrap();
    let e = f.problems(&format!("{BRIDGE}address = \"10.89.0.10\"\n"));
    assert!(
        e.iter().any(|l| l.contains("10.89.0.10 is already leased")),
        "{e:?}"
    );
}

#[test]
fn a_subnet_over_a_host_route_or_a_bridge_name_taken_is_refused_naming_it() {
    let f = net_fixture();
    let nets = f.dir.path().join("networks");
    fs::write(nets.join("lan.toml"), "subnet = \"192.168.0.0/16\"\n").unwrap();
    let e = f.problems(&format!("{BRIDGE}network = \"lan\"\n"));
    assert!(
        e.iter().any(
            |l| l.contains("overlaps the host's route `192.168.2.0/24 dev eth0`")
                && l.contains("lan.toml")
        ),
        "{e:?}"
    );
    fs::write(
        nets.join("taken.toml"),
        "subnet = \"10.77.0.0/24\"\nbridge = \"eth1\"\n",
    )
    .unwrap();
    let e = f.problems(&format!("{BRIDGE}network = \"taken\"\n"));
    assert!(
        e.iter()
            .any(|l| l.contains("the bridge name `eth1`") && l.contains("not a bridge")),
        "{e:?}"
    );
    // A bridge that exists already (an admin's, or stockade's for another sandbox) is joined.
    fs::create_dir_all(f.host.root.join("sys/class/net/br0/bridge")).unwrap();
    fs::write(
        nets.join("admin.toml"),
        "subnet = \"10.78.0.0/24\"\nbridge = \"br0\"\n",
    )
    .unwrap();
    assert!(f
        .plan(&format!("{BRIDGE}network = \"admin\"\n"), &[])
        .is_ok());
}

#[test]
fn a_network_with_subnet6_gives_the_plan_ipv6_with_its_decisions_cited() {
    let f = net_fixture();
    let p = f
        .plan(
            &format!("{BRIDGE}network = \"v6\"\naddress6 = \"fd89::10\"\npublish = [\"8081:80\", \"[fd00::1]:8443:443\"]\ndns = [\"2001:db8::53\"]\n"),
            &[],
        )
        .unwrap();
    let n = p.network.as_ref().unwrap();
    let v6 = n.def.ipv6.unwrap();
    assert_eq!(
        (v6.subnet.to_string(), v6.gateway.to_string()),
        ("fd89::/64".into(), "fd89::1".into())
    );
    let a6 = n.address6.as_ref().unwrap();
    assert_eq!(a6.value.to_string(), "fd89::10");
    assert!(a6.from.to_string().contains(":6"), "{}", a6.from);
    assert_eq!(
        n.publish
            .iter()
            .map(|p| p.value.to_string())
            .collect::<Vec<_>>(),
        ["8081:80/tcp", "[fd00::1]:8443:443/tcp"]
    );
    assert_eq!(
        n.dns.value,
        vec!["2001:db8::53".parse::<std::net::IpAddr>().unwrap()]
    );
    // Without address6 the address is leased at start; the default network has no IPv6.
    let p = f.plan(&format!("{BRIDGE}network = \"v6\"\n"), &[]).unwrap();
    assert_eq!(p.network.as_ref().unwrap().address6, None);
    assert!(p.network.as_ref().unwrap().def.ipv6.is_some());
    let p = f.plan(BRIDGE, &[]).unwrap();
    assert_eq!(p.network.as_ref().unwrap().def.ipv6, None);
}

#[test]
fn bad_ipv6_values_are_refused_with_file_line_and_key() {
    let f = net_fixture();
    let v6 = "network = \"v6\"\n";
    let cases: &[(&str, &str)] = &[
        (
            "address6 = \"fd90::5\"\n",
            ":6:12: network.address6: fd90::5 is outside the subnet6 fd89::/64 of network `v6`",
        ),
        ("address6 = \"fd89::1\"\n", ":6:12: network.address6: fd89::1 is the IPv6 gateway"),
        ("address6 = \"fd89::\"\n", "subnet-router anycast address"),
        (
            "publish = [\"[::]:8082:80\"]\n",
            ":6:11: network.publish: `[::]:8082:80`: host port 8082/tcp is already bound on the host (by a socket on ::1)",
        ),
        (
            "publish = [\"[::1]:5353:53/udp\"]\n",
            ":6:11: network.publish: `[::1]:5353:53/udp`: UDP cannot be published on ::1",
        ),
        // No host address: both families, so the IPv6 socket is in the way too.
        ("publish = [\"8082:80\"]\n", "host port 8082/tcp is already bound"),
    ];
    for (extra, want) in cases {
        let e = f.problems(&format!("{BRIDGE}{v6}{extra}"));
        assert!(e.iter().any(|l| l.contains(want)), "{extra}: {e:?}");
    }
    // An IPv6 socket is no obstacle to an IPv4-only publish, nor an IPv4 one to an IPv6 one.
    assert!(f
        .plan(&format!("{BRIDGE}publish = [\"8082:80\"]\n"), &[])
        .is_ok());
    assert!(f
        .plan(
            &format!("{BRIDGE}{v6}publish = [\"[fd00::1]:8080:80\"]\n"),
            &[]
        )
        .is_ok());
    // TCP on ::1 is forwarded in user space; UDP there is refused above.
    assert!(f
        .plan(&format!("{BRIDGE}{v6}publish = [\"[::1]:8080:80\"]\n"), &[])
        .is_ok());
    // On the IPv4-only default network, nothing of IPv6 is accepted.
    for (extra, want) in [
        (
            "address6 = \"fd89::10\"\n",
            ":5:12: network.address6: network `default` has no IPv6 (no subnet6); the built-in `default` is IPv4 only",
        ),
        (
            "publish = [\"[::1]:8443:443\"]\n",
            ":5:11: network.publish: `[::1]:8443:443`: an IPv6 host address, but network `default` has no IPv6",
        ),
        (
            "dns = [\"2001:db8::53\"]\n",
            ":5:7: network.dns: 2001:db8::53 is an IPv6 server, but network `default` has no IPv6",
        ),
    ] {
        let e = f.problems(&format!("{BRIDGE}{extra}"));
        assert!(e.iter().any(|l| l.contains(want)), "{extra}: {e:?}");
    }
    // A leased address.
    let leases = f.host.root.join("run/stockade/networks/v6/leases");
    fs::create_dir_all(&leases).unwrap();
    fs::write(leases.join("fd89::10"), "1 1 vstk1\n").unwrap();
    let e = f.problems(&format!("{BRIDGE}{v6}address6 = \"fd89::10\"\n"));
    assert!(
        e.iter()
            .any(|l| l.contains("fd89::10 is already leased on network `v6`")),
        "{e:?}"
    );
    // Malformed: validation finds it without the host.
    let e = f.load_problems(&format!("{BRIDGE}address6 = \"fd89::g\"\n"));
    assert!(
        e.iter()
            .any(|l| l.contains(":5:12: network.address6: `fd89::g` is not an IPv6 address")),
        "{e:?}"
    );
}

#[test]
fn a_subnet6_over_a_host_ipv6_route_or_on_a_host_without_ipv6_is_refused_naming_it() {
    let f = net_fixture();
    let nets = f.dir.path().join("networks");
    fs::write(
        nets.join("ula.toml"),
        "subnet = \"10.91.0.0/24\"\nsubnet6 = \"fd00:1:0:5::/64\"\n",
    )
    .unwrap();
    let e = f.problems(&format!("{BRIDGE}network = \"ula\"\n"));
    assert!(
        e.iter().any(|l| l.contains(
            "the subnet6 fd00:1:0:5::/64 of network `ula` overlaps the host's IPv6 route `fd00:1::/48 via fe80::1 dev eth0`"
        ) && l.contains("ula.toml")),
        "{e:?}"
    );
    fs::write(
        f.host
            .root
            .join("proc/sys/net/ipv6/conf/default/disable_ipv6"),
        "1\n",
    )
    .unwrap();
    let e = f.problems(&format!("{BRIDGE}network = \"v6\"\n"));
    assert!(
        e.iter().any(|l| l.contains("network `v6` has subnet6 fd89::/64 but IPv6 is disabled on this host (sysctl net.ipv6.conf.default.disable_ipv6 = 1)")),
        "{e:?}"
    );
    // An IPv4-only network does not care.
    assert!(f.plan(BRIDGE, &[]).is_ok());
}

#[test]
fn a_resolv_conf_symlinked_into_run_gives_the_upstream_servers_or_a_clear_error() {
    let f = net_fixture();
    let root = &f.host.root;
    let etc = root.join("etc/resolv.conf");
    let stub = root.join("run/systemd/resolve/stub-resolv.conf");
    fs::write(&stub, "nameserver 127.0.0.53\noptions edns0 trust-ad\n").unwrap();
    let dns = |f: &Fixture| -> Vec<String> {
        let p = f.plan(BRIDGE, &[]).unwrap();
        let n = p.network.unwrap();
        n.dns.value.iter().map(ToString::to_string).collect()
    };
    // systemd-resolved's own link (relative), and an absolute one: both are followed inside
    // the host root, and the stub's upstream servers are used.
    for target in [
        "../run/systemd/resolve/stub-resolv.conf",
        "/run/systemd/resolve/stub-resolv.conf",
    ] {
        let _ = fs::remove_file(&etc);
        std::os::unix::fs::symlink(target, &etc).unwrap();
        assert_eq!(dns(&f), ["192.0.2.53"], "{target}");
    }
    // A link to a regular resolv.conf elsewhere: its servers as they are.
    fs::write(
        root.join("run/systemd/resolve/resolv.conf"),
        "nameserver 198.51.100.7\nnameserver 127.0.0.53\n",
    )
    .unwrap();
    let _ = fs::remove_file(&etc);
    std::os::unix::fs::symlink("/run/systemd/resolve/resolv.conf", &etc).unwrap();
    assert_eq!(dns(&f), ["198.51.100.7"]);
    // resolved is not running: the link's target is missing.
    let _ = fs::remove_file(&etc);
    std::os::unix::fs::symlink("../run/systemd/resolve/stub-resolv.conf", &etc).unwrap();
    fs::remove_file(&stub).unwrap();
    let e = f.problems(BRIDGE);
    assert!(
        e.iter().any(|l| l.contains("network.dns: /etc/resolv.conf is a symlink to /run/systemd/resolve/stub-resolv.conf, which does not exist")
            && l.contains("dns = [")),
        "{e:?}"
    );
    // The profile's own servers need nothing of the host.
    let p = f
        .plan(&format!("{BRIDGE}dns = [\"192.0.2.1\"]\n"), &[])
        .unwrap();
    assert_eq!(p.network.unwrap().dns.value.len(), 1);
    // A loopback stub with no upstream file: nothing the sandbox could reach.
    fs::write(&stub, "nameserver 127.0.0.53\n").unwrap();
    fs::remove_file(root.join("run/systemd/resolve/resolv.conf")).unwrap();
    let e = f.problems(BRIDGE);
    assert!(
        e.iter().any(|l| l
            .contains("network.dns: the host's name server 127.0.0.53 is on loopback")
            && l.contains("/run/systemd/resolve/resolv.conf names no other")),
        "{e:?}"
    );
    // No resolv.conf at all: the sandbox's is empty, as the host's resolver would be.
    fs::remove_file(&etc).unwrap();
    assert!(dns(&f).is_empty());
}
