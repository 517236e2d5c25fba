//! The inspectors against plans of the shipped profiles (planned on the fake example host of
//! the plan's tests: systemd with every controller) and of small profiles: every profile
//! scores, weakening any one protection never lowers a score, the ends of the scale are
//! reached, and `why` names the deciding setting.

use super::analyze::{analyze, Report, CHECKS, RANGE};
use super::why::{self, PathAccess};
use crate::plan::tests::record::{example_files, example_host, plan_file};
use crate::plan::tests::Fixture;
use crate::plan::{
    Access, Decided, IdRange, LandlockRule, LaunchPlan, MountOp, Namespace, NetworkPlan,
    Provenance, SysAction,
};
use crate::profile::networks::parse_publish;
use caps::Capability as C;
use std::collections::BTreeSet;

fn examples() -> Vec<(String, LaunchPlan)> {
    let f = example_host();
    let (files, dir) = example_files();
    files
        .iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, plan_file(&f, p, std::slice::from_ref(&dir)))
        })
        .collect()
}

fn badness(r: &Report, id: &str) -> u64 {
    r.checks
        .iter()
        .find(|c| c.id == id)
        .and_then(|c| c.badness)
        .unwrap_or(0)
}

/// Every shipped profile scores, and the README's table of the daemon profiles' scores (and
/// nginx-bridge's) is the one this build computes.
#[test]
fn every_shipped_profile_scores_and_the_readme_says_so() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut missing = Vec::new();
    for (name, plan) in examples() {
        let r = analyze(&plan);
        assert!(r.exposure_tenths <= 100, "{name}: {}", r.exposure_tenths);
        assert_eq!(r.checks.len(), CHECKS.len());
        let line = format!(
            "| `{name}` | {}.{} {} |",
            r.exposure_tenths / 10,
            r.exposure_tenths % 10,
            r.grade
        );
        println!("{line}");
        if ["redis", "nginx", "postgresql", "memcached", "nginx-bridge"].contains(&name.as_str())
            && !readme.contains(&line)
        {
            missing.push(line);
        }
    }
    assert!(missing.is_empty(), "README.md lacks {missing:#?}");
}

/// The checks' ids are unique (they name rows in JSON and in the man page).
#[test]
fn check_ids_are_unique() {
    let ids: BTreeSet<&str> = CHECKS.iter().map(|c| c.id).collect();
    assert_eq!(ids.len(), CHECKS.len());
}

fn add_cap(p: &mut LaunchPlan, c: C) {
    if !p.finals.capabilities.contains(&c) {
        p.finals.capabilities.value.push(c);
    }
}

fn set_ns(p: &mut LaunchPlan, ns: Namespace, on: bool) {
    for n in &mut p.namespaces {
        if n.kind == ns {
            n.value.enabled = on;
        }
    }
}

fn drop_ops(p: &mut LaunchPlan, targets: &[&str]) {
    if let Some(fs) = &mut p.fs {
        fs.ops.retain(|o| !targets.contains(&o.target()));
    }
}

/// Lets every call of `entry` through the filter.
fn allow(p: &mut LaunchPlan, entry: &str) {
    let mut calls = BTreeSet::new();
    crate::profile::syscalls::expand(entry, &mut calls);
    let f = &mut p.finals.syscalls.filter;
    if f.default == SysAction::Allow {
        f.listed.retain(|c| !calls.contains(c));
    } else {
        f.listed.extend(calls);
    }
}

fn family(p: &mut LaunchPlan, names: &[&str]) {
    for n in names {
        if !p.finals.syscalls.families.contains(&n.to_string()) {
            p.finals.syscalls.families.value.push(n.to_string());
        }
    }
}

fn rule(p: &mut LaunchPlan, access: Access) {
    if let Some(rules) = &mut p.finals.landlock {
        rules.push(Decided::new(
            LandlockRule {
                path: "/".into(),
                access,
            },
            Provenance::default("test"),
        ));
    }
}

/// The plan on a bridge network (the built-in `default`), keeping one it has: a plan in its
/// own network namespace without one gets a bridge with no published port and no outbound
/// NAT, the narrowest bridge. None on the host's network, which `net` scores.
fn bridge(p: &mut LaunchPlan) -> Option<&mut NetworkPlan> {
    if !p.has(Namespace::Net) {
        return None;
    }
    Some(
        p.network
            .get_or_insert_with(|| crate::plan::network::test_plan(false, &[])),
    )
}

/// Removes one protection from the plan, the one check `id` looks at.
fn weaken(id: &str, p: &mut LaunchPlan) {
    let full = vec![IdRange {
        inside: 0,
        outside: 0,
        count: 65536,
    }];
    match id {
        "user" => p.creds.uid.value = 0,
        "userns.root" | "userns.range" => {
            if let Some(m) = &mut p.idmap {
                m.uid_map.value = full.clone();
                m.gid_map.value = full;
            }
        }
        "groups" => p.creds.groups.value.push(4),
        "cap.admin" => add_cap(p, C::CAP_SYS_ADMIN),
        "cap.kernel" => add_cap(p, C::CAP_SYS_RAWIO),
        "cap.trace" => add_cap(p, C::CAP_SYS_PTRACE),
        "cap.files" => add_cap(p, C::CAP_DAC_OVERRIDE),
        "cap.ids" => add_cap(p, C::CAP_SETUID),
        "cap.net" => add_cap(p, C::CAP_NET_ADMIN),
        "cap.other" => add_cap(p, C::CAP_KILL),
        "no_new_privs" => p.finals.no_new_privs.value = false,
        "ns.restrict" => p.finals.syscalls.filter.restrict_namespaces = false,
        "ns.mount" => {
            set_ns(p, Namespace::Mount, false);
            p.fs = None;
        }
        "ns.pid" => set_ns(p, Namespace::Pid, false),
        "ns.ipc" => set_ns(p, Namespace::Ipc, false),
        "ns.uts" => set_ns(p, Namespace::Uts, false),
        "ns.cgroup" => set_ns(p, Namespace::Cgroup, false),
        "net" => set_ns(p, Namespace::Net, false),
        "net.publish" => {
            if let Some(n) = bridge(p) {
                n.publish.push(Decided::new(
                    parse_publish("8080:80").unwrap(),
                    Provenance::default("test"),
                ));
            }
        }
        "net.outbound" => {
            if let Some(n) = bridge(p) {
                n.outbound.value = true;
            }
        }
        "net.abstract" => {
            set_ns(p, Namespace::Net, false);
            p.finals.scope_abstract_sockets = false;
        }
        "af.inet" => family(p, &["AF_INET"]),
        "af.netlink" => family(p, &["AF_NETLINK"]),
        "af.packet" => family(p, &["AF_PACKET"]),
        "af.other" => family(p, &["AF_VSOCK"]),
        "fs.root" => {
            if let Some(fs) = &mut p.fs {
                fs.read_only.value = false;
                fs.root = crate::plan::RootSource::Host("/".into());
            }
        }
        "fs.tmp" => drop_ops(p, &["/tmp", "/var/tmp"]),
        "fs.dev" => drop_ops(p, &["/dev"]),
        "fs.run" => drop_ops(p, &["/run"]),
        "fs.home" => {
            drop_ops(p, &["/home", "/root"]);
            rule(p, Access::Read);
        }
        "fs.binds" => {
            if let Some(fs) = &mut p.fs {
                fs.ops.push(Decided::new(
                    MountOp::Bind {
                        source: "/srv".into(),
                        target: "/srv".into(),
                        read_only: false,
                        noexec: false,
                        create: None,
                    },
                    Provenance::default("test"),
                ));
            }
        }
        "kernel.tunables" | "kernel.masks" => p.protect_kernel.value = false,
        "kernel.modules" => add_cap(p, C::CAP_SYS_MODULE),
        "kernel.logs" => add_cap(p, C::CAP_SYSLOG),
        "keyring" => allow(p, "@keyring"),
        "seccomp.abi" => {} // fixed: nothing in a profile weakens it
        "seccomp.bpf" => ["bpf", "perf_event_open", "userfaultfd"]
            .iter()
            .for_each(|c| allow(p, c)),
        "seccomp.io_uring" => ["io_uring_setup", "io_uring_enter", "io_uring_register"]
            .iter()
            .for_each(|c| allow(p, c)),
        s if s.starts_with("seccomp.") => allow(p, &format!("@{}", &s["seccomp.".len()..])),
        "landlock.write" => rule(p, Access::Write),
        "landlock.exec" => rule(p, Access::Exec),
        "landlock.read" => rule(p, Access::Read),
        "limits.memory" => p.resources.retain(|r| r.key != "resources.memory_max"),
        "limits.tasks" => p.resources.retain(|r| r.key != "resources.tasks_max"),
        "umask" => p.finals.umask.value = 0,
        "notes" => p.notes.push("p.toml:1:1: test: a hole".into()),
        other => panic!("no weakening for check `{other}`: add one"),
    }
}

/// The property: for every check, removing its protection from any shipped profile never
/// lowers the total nor that check's badness, and does raise the check for some profile
/// (so the weakening is real and the check sees it).
#[test]
fn removing_any_single_protection_never_lowers_the_score() {
    let mut plans = examples();
    plans.push(("tight".into(), Fixture::new(0).plan(TIGHT, &[]).unwrap()));
    for c in CHECKS {
        let mut rose = false;
        for (name, plan) in &plans {
            let before = analyze(plan);
            let mut weak = plan.clone();
            weaken(c.id, &mut weak);
            let after = analyze(&weak);
            assert!(
                after.exposure_tenths >= before.exposure_tenths,
                "{name}: weakening {} lowered the exposure {} -> {}",
                c.id,
                before.exposure_tenths,
                after.exposure_tenths
            );
            let (b, a) = (badness(&before, c.id), badness(&after, c.id));
            assert!(
                a >= b,
                "{name}: weakening {} lowered its badness {b} -> {a}",
                c.id
            );
            rose |= a > b;
        }
        assert!(
            rose || c.id == "seccomp.abi",
            "weakening {} changed no profile's badness",
            c.id
        );
    }
}

/// Removing every protection at once from the tightest profile ends at the top of the
/// scale.
#[test]
fn removing_every_protection_is_dangerous() {
    for (name, plan) in examples() {
        let mut weak = plan.clone();
        for c in CHECKS {
            weaken(c.id, &mut weak);
        }
        weak.finals.landlock = None;
        let r = analyze(&weak);
        assert!(
            r.exposure_tenths >= 90,
            "{name}: {}",
            super::analyze::text(&r)
        );
    }
}

/// Tighter than the examples where they all open something (address families).
const TIGHT: &str = "[exec]\ncommand = [\"/bin/true\"]\nuser = \"redis\"\n\
[security]\naddress_families = []\nlandlock = { read = [\"/usr/bin\"], exec = [\"/bin/true\"] }\n";

const BARE: &str = "[exec]\ncommand = [\"/bin/true\"]\n";

const WIDE: &str = "[exec]\ncommand = [\"/bin/true\"]\n\
[namespaces]\nuser = false\npid = false\nmount = false\nnet = false\nipc = false\nuts = false\ncgroup = false\ntime = false\n\
[security]\ncapabilities = [\"sys_admin\", \"sys_module\", \"sys_rawio\", \"sys_ptrace\", \"dac_override\", \"setuid\", \"net_admin\", \"net_raw\", \"kill\", \"syslog\"]\n\
no_new_privileges = false\nsyscall_log = true\nprotect_kernel = false\n\
address_families = [\"AF_UNIX\", \"AF_INET\", \"AF_INET6\", \"AF_NETLINK\", \"AF_PACKET\", \"AF_VSOCK\"]\n";

/// A profile of `[exec]` alone (every default) scores low; a deliberately wide one at the
/// top.
#[test]
fn bare_and_wide_profiles_land_at_the_ends_of_the_scale() {
    let f = Fixture::new(0);
    let bare = analyze(&f.plan(BARE, &[]).unwrap());
    assert!(
        bare.exposure_tenths <= 20,
        "bare: {}",
        super::analyze::text(&bare)
    );
    let wide = analyze(&f.plan(WIDE, &[]).unwrap());
    assert!(
        wide.exposure_tenths >= 90,
        "wide: {}",
        super::analyze::text(&wide)
    );
    assert!(["UNSAFE", "DANGEROUS"].contains(&wide.grade));
    println!(
        "bare {} {}, wide {} {}",
        bare.exposure, bare.grade, wide.exposure, wide.grade
    );
}

/// The arithmetic is systemd-analyze's: Σ⌈b·w/r⌉·100/Σw, rounded up, over the checks that
/// apply; the grade words at its thresholds.
#[test]
fn the_exposure_is_systemds_arithmetic() {
    use super::analyze::grade;
    assert_eq!(grade(0), "PERFECT");
    assert_eq!(grade(1), "SAFE");
    assert_eq!(grade(9), "SAFE");
    assert_eq!(grade(10), "OK");
    assert_eq!(grade(49), "OK");
    assert_eq!(grade(50), "MEDIUM");
    assert_eq!(grade(75), "EXPOSED");
    assert_eq!(grade(90), "UNSAFE");
    assert_eq!(grade(100), "DANGEROUS");
    let f = Fixture::new(0);
    let r = analyze(&f.plan(BARE, &[]).unwrap());
    let (mut bad, mut w) = (0u64, 0u64);
    for c in &r.checks {
        if let Some(b) = c.badness {
            bad += (b * c.weight).div_ceil(RANGE);
            w += c.weight;
        }
    }
    assert_eq!(r.exposure_tenths, (bad * 100).div_ceil(w));
}

/// A bridge profile's published ports score by how widely the host offers them: every
/// address is worse than loopback only, which is worse than none; outbound NAT is worse than
/// the network alone; and the rows cite the profile's lines.
#[test]
fn published_ports_and_outbound_score_by_their_reach() {
    let f = example_host();
    let score = |net: &str| {
        let text =
            format!("[exec]\ncommand = [\"/bin/true\"]\n[network]\nmode = \"bridge\"\n{net}");
        analyze(
            &f.plan(&text, &[])
                .unwrap_or_else(|e| panic!("{net}: {e:#?}")),
        )
    };
    let row = |r: &Report, id: &str| r.checks.iter().find(|c| c.id == id).unwrap().clone();
    let none = score("outbound = false\n");
    let local = score("outbound = false\npublish = [\"127.0.0.1:8080:80\"]\n");
    let every = score("outbound = false\npublish = [\"0.0.0.0:8080:80\"]\n");
    let (n, l, e) = (
        row(&none, "net.publish"),
        row(&local, "net.publish"),
        row(&every, "net.publish"),
    );
    assert!(
        n.badness < l.badness && l.badness < e.badness,
        "{n:?} {l:?} {e:?}"
    );
    assert!(
        none.exposure_tenths < local.exposure_tenths
            && local.exposure_tenths < every.exposure_tenths,
        "none {} local {} every {}",
        none.exposure_tenths,
        local.exposure_tenths,
        every.exposure_tenths
    );
    assert!(
        matches!(&e.origin, Provenance::Profile { line: 6, key, .. } if key == "network.publish"),
        "{e:?}"
    );
    let out = score("outbound = true\n");
    let o = row(&out, "net.outbound");
    assert!(row(&none, "net.outbound").badness < o.badness);
    assert!(out.exposure_tenths > none.exposure_tenths);
    assert!(
        matches!(&o.origin, Provenance::Profile { line: 5, key, .. } if key == "network.outbound"),
        "{o:?}"
    );
    // mode none is the narrowest; the host's network is `net`'s alone to score.
    let plain = analyze(&f.plan(BARE, &[]).unwrap());
    assert_eq!(row(&plain, "net.publish").badness, Some(0));
    assert_eq!(row(&plain, "net.outbound").badness, Some(0));
    let host = analyze(
        &f.plan(&format!("{BARE}[network]\nmode = \"host\"\n"), &[])
            .unwrap(),
    );
    assert_eq!(row(&host, "net.publish").badness, None);
    assert_eq!(row(&host, "net.outbound").badness, None);
    assert_eq!(row(&host, "net").badness, Some(10));
}

fn redis() -> LaunchPlan {
    let f = example_host();
    let (_, dir) = example_files();
    plan_file(&f, &dir.join("redis.toml"), std::slice::from_ref(&dir))
}

fn cites(step: &why::Step, file: &str) -> bool {
    matches!(&step.from, Some(Provenance::Profile { file: f, .. }) if f.file_name() == Some(file.as_ref()))
}

/// A write to the read-only host root is denied by the mount (base.toml's read_only) and
/// by landlock (redis.toml's write list); the volume is writable and covered.
#[test]
fn why_a_path_names_the_mount_and_the_landlock_rule() {
    let p = redis();
    let a = why::path(&p, "/var/log/redis", PathAccess::Write).unwrap();
    assert!(!a.allowed);
    assert_eq!(a.error.as_deref(), Some("EROFS"));
    let mount = a.steps.iter().find(|s| s.layer == "mount").unwrap();
    assert!(mount.denies && cites(mount, "base.toml"), "{a:#?}");
    let ll = a.steps.iter().find(|s| s.layer == "landlock").unwrap();
    assert!(ll.denies && cites(ll, "redis.toml"), "{a:#?}");
    assert_eq!(a.change.len(), 3, "{a:#?}");

    let a = why::path(&p, "/var/lib/redis/dump.rdb", PathAccess::Write).unwrap();
    assert!(a.allowed, "{a:#?}");
    let a = why::path(&p, "/home/alice", PathAccess::Read).unwrap();
    assert!(!a.allowed && a.steps[0].says.contains("hidden"), "{a:#?}");
    let a = why::path(&p, "/usr/bin/redis-server", PathAccess::Exec).unwrap();
    assert!(a.allowed, "{a:#?}");
    let a = why::path(&p, "/tmp/x", PathAccess::Exec).unwrap();
    assert!(!a.allowed, "{a:#?}");
    assert!(why::path(&p, "relative", PathAccess::Read).is_err());
    assert!(why::path(&p, "/../..", PathAccess::Read).is_err());
}

/// On a bridge network /etc/resolv.conf and /etc/hosts are the files stockade generates,
/// bound read-only: `why` says so, cites the profile's `mode = "bridge"` line and names the
/// setting that fills each, not a mount to add.
#[test]
fn why_a_bridge_profiles_resolv_conf_and_hosts_names_the_generated_file() {
    let f = example_host();
    let (_, dir) = example_files();
    let p = plan_file(
        &f,
        &dir.join("nginx-bridge.toml"),
        std::slice::from_ref(&dir),
    );
    for (path, key) in [
        ("/etc/resolv.conf", "network.dns"),
        ("/etc/hosts", "network.hostname"),
    ] {
        let a = why::path(&p, path, PathAccess::Read).unwrap();
        assert!(a.allowed, "{a:#?}");
        let mount = a.steps.iter().find(|s| s.layer == "mount").unwrap();
        assert!(
            mount.says.contains("bound read-only")
                && mount.says.contains("bridge network `default`")
                && mount.says.contains(key),
            "{a:#?}"
        );
        assert!(cites(mount, "nginx-bridge.toml"), "{a:#?}");
        let a = why::path(&p, path, PathAccess::Write).unwrap();
        assert!(!a.allowed && a.error.as_deref() == Some("EROFS"), "{a:#?}");
        assert!(a.change.len() == 1 && a.change[0].contains(key), "{a:#?}");
        print!("{}", why::text(&a));
    }
    // Without a bridge the file is the root's own.
    let a = why::path(&redis(), "/etc/resolv.conf", PathAccess::Read).unwrap();
    assert!(!a.steps[0].says.contains("generated"), "{a:#?}");
}

/// The baseline names the group and the capability that would re-allow it; an allow-list
/// names its entry or its absence; namespace calls name the fixed rule.
#[test]
fn why_a_syscall_names_its_rule() {
    let f = Fixture::new(0);
    let bare = f.plan(BARE, &[]).unwrap();
    let a = why::syscall(&bare, "ptrace").unwrap();
    assert!(!a.allowed);
    assert_eq!(a.error.as_deref(), Some("EPERM"));
    assert!(
        a.steps[0].says.contains("@debug") && a.steps[0].says.contains("CAP_SYS_PTRACE"),
        "{a:#?}"
    );
    assert!(why::syscall(&bare, "read").unwrap().allowed);
    assert!(!why::syscall(&bare, "unshare").unwrap().allowed);
    assert!(why::syscall(&bare, "no_such_call").is_err());

    let p = redis();
    let a = why::syscall(&p, "mount").unwrap();
    assert!(!a.allowed && cites(&a.steps[0], "redis.toml"), "{a:#?}");
    let a = why::syscall(&p, "read").unwrap();
    assert!(
        a.allowed && a.steps[0].says.contains("@system-service"),
        "{a:#?}"
    );
    let a = why::syscall(&p, "setpriority").unwrap();
    assert!(
        !a.allowed && a.steps[0].says.contains("@resources"),
        "{a:#?}"
    );
}

#[test]
fn why_a_capability_says_kept_or_dropped_where() {
    let p = redis();
    let a = why::capability(&p, "net_admin").unwrap();
    assert!(!a.allowed && cites(&a.steps[0], "base.toml"), "{a:#?}");
    let f = Fixture::new(0);
    let kept = f
        .plan(
            "[exec]\ncommand = [\"/bin/true\"]\n[security]\ncapabilities = [\"net_bind_service\"]\n",
            &[],
        )
        .unwrap();
    assert!(
        why::capability(&kept, "CAP_NET_BIND_SERVICE")
            .unwrap()
            .allowed
    );
    assert!(why::capability(&kept, "no_such_cap").is_err());
}

#[test]
#[ignore]
fn print_reports() {
    for (name, plan) in examples() {
        println!("== {name}\n{}", super::analyze::text(&analyze(&plan)));
    }
}
