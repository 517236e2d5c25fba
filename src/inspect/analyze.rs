//! `stockade analyze`: how exposed a sandbox is, as one figure from 0.0 (nothing exposed) to
//! 10.0, from one table of checks ([`CHECKS`]) over the plan. The arithmetic and the grade
//! words are those of `systemd-analyze security`, so the figure reads the same way: each
//! check's badness (0..=its range) times its weight, divided by the range and rounded up,
//! summed, times 100, divided by the sum of the weights of the checks that apply and rounded
//! up gives tenths; a grade is the first of DANGEROUS (≥ 10.0), UNSAFE (≥ 9.0), EXPOSED (≥ 7.5),
//! MEDIUM (≥ 5.0), OK (≥ 1.0), SAFE (≥ 0.1), PERFECT the figure reaches. The checks and
//! weights are stockade's own: what systemd scores for a unit, and what it cannot see
//! (the user namespace and its id map, landlock, kernel masks, limits, writable host binds).
//!
//! Pure: reads the plan only. The table is also the man page's (see [`help`]).

use super::namespace;
use crate::plan::{
    Access, LaunchPlan, MountOp, Namespace, Provenance, RootSource, DEV_NODES, RUN_DIR, VOLUME_DIR,
};
use crate::profile::networks::Publish;
use caps::Capability as C;
use serde::Serialize;
use std::fmt::Write;

/// One check: what it looks at, its weight, and how bad the plan is on it.
pub struct Check {
    pub id: &'static str,
    /// What the check asks, as a reader of the table needs it.
    pub about: &'static str,
    pub weight: u64,
    assess: fn(&LaunchPlan) -> Verdict,
}

/// How bad the plan is on one check (0 good .. [`RANGE`] bad; None: does not apply), in
/// words, and the setting that decided it.
pub struct Verdict {
    pub badness: Option<u64>,
    pub says: String,
    pub from: Provenance,
}

/// Every check's badness runs 0..=10, as most of systemd's do.
pub const RANGE: u64 = 10;

fn v(badness: u64, says: impl Into<String>, from: Provenance) -> Verdict {
    Verdict {
        badness: Some(badness),
        says: says.into(),
        from,
    }
}

/// The checks, in the order they are printed.
pub const CHECKS: &[Check] = &[
    Check { id: "user", about: "the service runs as a user other than root", weight: 1500, assess: user },
    Check { id: "userns.root", about: "root inside the sandbox is not the host's root (a user namespace maps uid 0 elsewhere)", weight: 3000, assess: userns_root },
    Check { id: "userns.range", about: "the id map gives the sandbox a private host id range, no host system ids", weight: 500, assess: userns_range },
    Check { id: "groups", about: "no supplementary groups", weight: 300, assess: groups },
    Check { id: "cap.admin", about: "CAP_SYS_ADMIN is dropped", weight: 1500, assess: cap_admin },
    Check { id: "cap.kernel", about: "kernel-facing capabilities are dropped (SYS_MODULE, SYS_RAWIO, SYS_BOOT, SYS_TIME, WAKE_ALARM, SYSLOG, SYS_PACCT, MAC_*, AUDIT_*)", weight: 1500, assess: cap_kernel },
    Check { id: "cap.trace", about: "tracing capabilities are dropped (SYS_PTRACE, BPF, PERFMON)", weight: 1000, assess: cap_trace },
    Check { id: "cap.files", about: "file-permission capabilities are dropped (DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER, FSETID, CHOWN, LINUX_IMMUTABLE, MKNOD)", weight: 1000, assess: cap_files },
    Check { id: "cap.ids", about: "identity capabilities are dropped (SETUID, SETGID, SETPCAP, SETFCAP)", weight: 800, assess: cap_ids },
    Check { id: "cap.net", about: "network administration capabilities are dropped (NET_ADMIN, NET_RAW)", weight: 800, assess: cap_net },
    Check { id: "cap.other", about: "no other capability is kept", weight: 300, assess: cap_other },
    Check { id: "no_new_privs", about: "no_new_privs is set: exec cannot gain privileges", weight: 1000, assess: nnp },
    Check { id: "ns.restrict", about: "the service cannot create or join namespaces", weight: 1500, assess: ns_restrict },
    Check { id: "ns.mount", about: "a mount namespace of its own", weight: 500, assess: ns_mount },
    Check { id: "ns.pid", about: "a pid namespace of its own: the host's processes are invisible", weight: 800, assess: ns_pid },
    Check { id: "ns.ipc", about: "an IPC namespace of its own: no host SysV IPC or POSIX queues", weight: 500, assess: ns_ipc },
    Check { id: "ns.uts", about: "a UTS namespace of its own: cannot change the host's hostname", weight: 300, assess: ns_uts },
    Check { id: "ns.cgroup", about: "a cgroup namespace of its own: the host's cgroup tree is not shown", weight: 300, assess: ns_cgroup },
    Check { id: "net", about: "a network namespace of its own: no host interfaces, ports or outbound network", weight: 1500, assess: net },
    Check { id: "net.publish", about: "no port of the sandbox is published on the host (a bridge network's `publish`); n/a on the host's network, which `net` scores", weight: 500, assess: net_publish },
    Check { id: "net.outbound", about: "the sandbox cannot open connections beyond its own network (mode none, or a bridge with outbound = false); n/a on the host's network, which `net` scores", weight: 800, assess: net_outbound },
    Check { id: "net.abstract", about: "the host's abstract unix sockets are out of reach", weight: 500, assess: net_abstract },
    Check { id: "af.inet", about: "AF_INET/AF_INET6 sockets are refused (or reach only the sandbox's own network)", weight: 800, assess: af_inet },
    Check { id: "af.netlink", about: "AF_NETLINK sockets are refused (or see only the sandbox's own network)", weight: 300, assess: af_netlink },
    Check { id: "af.packet", about: "AF_PACKET (raw link-layer) sockets are refused", weight: 800, assess: af_packet },
    Check { id: "af.other", about: "no address family beyond UNIX, INET, INET6, NETLINK, PACKET (AF_VSOCK reaches the hypervisor)", weight: 1000, assess: af_other },
    Check { id: "fs.root", about: "the root the service sees is read-only (or an empty tmpfs)", weight: 1500, assess: fs_root },
    Check { id: "fs.tmp", about: "/tmp and /var/tmp are private", weight: 800, assess: fs_tmp },
    Check { id: "fs.dev", about: "/dev is private: a few device nodes only", weight: 1000, assess: fs_dev },
    Check { id: "fs.run", about: "/run is private: the host's sockets (D-Bus, systemd, docker) are gone", weight: 800, assess: fs_run },
    Check { id: "fs.home", about: "/home and /root are hidden", weight: 800, assess: fs_home },
    Check { id: "fs.binds", about: "no writable bind mount of a host path (volumes are stockade's own)", weight: 1000, assess: fs_binds },
    Check { id: "kernel.tunables", about: "/proc/sys and /sys are read-only", weight: 1000, assess: kernel_tunables },
    Check { id: "kernel.masks", about: "kernel interfaces in /proc and /sys are masked (kcore, keys, timer_list, firmware, ...)", weight: 800, assess: kernel_masks },
    Check { id: "kernel.modules", about: "kernel modules cannot be loaded (@module denied, no SYS_MODULE)", weight: 1000, assess: kernel_modules },
    Check { id: "kernel.logs", about: "the kernel log cannot be read (syslog denied, no SYSLOG, no /dev/kmsg)", weight: 500, assess: kernel_logs },
    Check { id: "keyring", about: "the kernel keyring, which is not namespaced, is out of reach (@keyring denied)", weight: 500, assess: keyring },
    Check { id: "seccomp.abi", about: "system calls of other ABIs (i386, x32) are refused", weight: 300, assess: seccomp_abi },
    Check { id: "seccomp.clock", about: "@clock denied: cannot set the system clock", weight: 500, assess: |p| group(p, "@clock") },
    Check { id: "seccomp.cpu-emulation", about: "@cpu-emulation denied", weight: 200, assess: |p| group(p, "@cpu-emulation") },
    Check { id: "seccomp.debug", about: "@debug denied: no ptrace, process_vm_*, perf", weight: 800, assess: |p| group(p, "@debug") },
    Check { id: "seccomp.mount", about: "@mount denied", weight: 1000, assess: |p| group(p, "@mount") },
    Check { id: "seccomp.obsolete", about: "@obsolete denied", weight: 200, assess: |p| group(p, "@obsolete") },
    Check { id: "seccomp.privileged", about: "@privileged denied", weight: 700, assess: |p| group(p, "@privileged") },
    Check { id: "seccomp.raw-io", about: "@raw-io denied: no ioperm/iopl, no raw PCI access", weight: 800, assess: |p| group(p, "@raw-io") },
    Check { id: "seccomp.reboot", about: "@reboot denied", weight: 800, assess: |p| group(p, "@reboot") },
    Check { id: "seccomp.resources", about: "@resources denied: cannot raise its priority or limits", weight: 300, assess: |p| group(p, "@resources") },
    Check { id: "seccomp.swap", about: "@swap denied", weight: 500, assess: |p| group(p, "@swap") },
    Check { id: "seccomp.bpf", about: "bpf, perf_event_open and userfaultfd denied", weight: 800, assess: |p| calls(p, &["bpf", "perf_event_open", "userfaultfd"]) },
    Check { id: "seccomp.io_uring", about: "io_uring denied (a large, often-exploited kernel surface)", weight: 500, assess: |p| calls(p, &["io_uring_setup", "io_uring_enter", "io_uring_register"]) },
    Check { id: "landlock.write", about: "landlock limits writing to a few deep paths", weight: 1000, assess: |p| landlock(p, Some(Access::Write)) },
    Check { id: "landlock.exec", about: "landlock limits executing to a few deep paths", weight: 800, assess: |p| landlock(p, Some(Access::Exec)) },
    Check { id: "landlock.read", about: "landlock limits reading to a few deep paths", weight: 300, assess: |p| landlock(p, None) },
    Check { id: "limits.memory", about: "a memory limit (resources.memory_max)", weight: 800, assess: |p| limit(p, "resources.memory_max") },
    Check { id: "limits.tasks", about: "a tasks limit (resources.tasks_max): no fork bomb", weight: 800, assess: |p| limit(p, "resources.tasks_max") },
    Check { id: "umask", about: "files the service creates are not world- or group-accessible by default", weight: 200, assess: umask },
    Check { id: "notes", about: "no hole in the default walls that the profile opened on purpose (the notes check and show print)", weight: 1000, assess: notes },
];

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub id: &'static str,
    pub about: &'static str,
    pub weight: u64,
    pub range: u64,
    /// None: the check does not apply to this sandbox.
    pub badness: Option<u64>,
    pub verdict: String,
    pub origin: Provenance,
}

/// The score of one sandbox.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub name: String,
    /// 0..=100 tenths: 42 is 4.2.
    pub exposure_tenths: u64,
    pub exposure: f64,
    pub grade: &'static str,
    pub checks: Vec<Row>,
}

/// The grade words and the exposure (tenths) from which each applies, worst first.
pub const GRADES: [(u64, &str); 7] = [
    (100, "DANGEROUS"),
    (90, "UNSAFE"),
    (75, "EXPOSED"),
    (50, "MEDIUM"),
    (10, "OK"),
    (1, "SAFE"),
    (0, "PERFECT"),
];

/// Scores the plan.
pub fn analyze(plan: &LaunchPlan) -> Report {
    let checks: Vec<Row> = CHECKS
        .iter()
        .map(|c| {
            let v = (c.assess)(plan);
            Row {
                id: c.id,
                about: c.about,
                weight: c.weight,
                range: RANGE,
                badness: v.badness.map(|b| b.min(RANGE)),
                verdict: v.says,
                origin: v.from,
            }
        })
        .collect();
    let exposure = exposure(&checks);
    Report {
        name: plan.name.clone(),
        exposure_tenths: exposure,
        exposure: exposure as f64 / 10.0,
        grade: grade(exposure),
        checks,
    }
}

/// systemd-analyze's sum: Σ ⌈badness·weight/range⌉ · 100 / Σ weight, rounded up, in tenths.
fn exposure(rows: &[Row]) -> u64 {
    let (mut bad, mut weights) = (0u64, 0u64);
    for r in rows {
        if let Some(b) = r.badness {
            bad += (b * r.weight).div_ceil(r.range);
            weights += r.weight;
        }
    }
    if weights == 0 {
        return 0;
    }
    (bad * 100).div_ceil(weights)
}

pub fn grade(tenths: u64) -> &'static str {
    GRADES
        .iter()
        .find(|(from, _)| tenths >= *from)
        .map_or("PERFECT", |(_, g)| g)
}

/// The report as a table, then the total.
pub fn text(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<22} {:>6} {:>5}  {:<58} ORIGIN",
        "CHECK", "WEIGHT", "BAD", "VERDICT"
    );
    for row in &r.checks {
        let bad = row
            .badness
            .map_or("n/a".into(), |b| format!("{b}/{}", row.range));
        let _ = writeln!(
            out,
            "{:<22} {:>6} {:>5}  {:<58} {}",
            row.id, row.weight, bad, row.verdict, row.origin
        );
    }
    let _ = writeln!(
        out,
        "\nOverall exposure of {}: {}.{} {}",
        r.name,
        r.exposure_tenths / 10,
        r.exposure_tenths % 10,
        r.grade
    );
    out
}

/// The table of checks for `stockade analyze --help` and its man page.
pub fn help() -> String {
    let mut out = String::from(
        "Scores a sandbox from its plan: a profile as it would run on this host, or a running \
instance by name. Each check has a badness from 0 (protected) to 10 (exposed) and a weight; \
the exposure is systemd-analyze security's figure: the sum over the checks that apply of \
badness × weight / 10 (each rounded up), × 10, divided by the sum of their weights, from 0.0 to \
10.0. Grades: PERFECT 0.0, SAFE from 0.1, OK from 1.0, MEDIUM from 5.0, EXPOSED from 7.5, \
UNSAFE from 9.0, DANGEROUS 10.0. Each row names the profile line (or default) that decided it.\n\n\
Most checks score 0 or 10; in between: user 4 (root of its own user namespace), a capability \
group 7 (kept, inside a user namespace), af.inet and af.netlink 2 and af.packet 5 (allowed, in \
the sandbox's own network), a seccomp group 5 (some of its calls allowed), landlock 6 (a rule \
at a top-level directory) or 2 (deeper rules only), fs.binds, fs.home, fs.tmp and notes 5 (one \
of them), umask 5, 2 or 1 (world-readable, group-writable, group-readable), net.publish 2 (ports \
published on loopback addresses only) or 5 (on a specific host address; every address is 10), \
net.outbound 3 (a bridge with outbound = false: the network's other sandboxes and the host at \
the gateway address stay reachable; with outbound NAT 10; mode none 0). On the host's network \
net.publish and net.outbound do not apply (n/a): `net` already scores every host port and \
route at 10, and scoring them again would count one hole three times.\n\n\
Checks (id, weight: what a badness of 0 means):\n",
    );
    for c in CHECKS {
        let _ = writeln!(out, "  {} ({}): {}", c.id, c.weight, c.about);
    }
    out
}

// The checks. Each finds the decision in the plan and says it; badness is 0 (protected) to
// RANGE.

fn userns(p: &LaunchPlan) -> (bool, Provenance) {
    namespace(p, Namespace::User)
}

fn user(p: &LaunchPlan) -> Verdict {
    let uid = &p.creds.uid;
    match (uid.value, userns(p).0) {
        (0, false) => v(10, "runs as root, the host's root", uid.from.clone()),
        (0, true) => v(
            4,
            "runs as root of its own user namespace",
            uid.from.clone(),
        ),
        (n, _) => v(0, format!("runs as uid {n}"), uid.from.clone()),
    }
}

fn userns_root(p: &LaunchPlan) -> Verdict {
    let (on, from) = userns(p);
    let Some(m) = p.idmap.as_ref().filter(|_| on) else {
        return v(10, "no user namespace: uid 0 is the host's root", from);
    };
    match m.uid_map.iter().find(|r| r.inside == 0) {
        Some(r) if r.outside == 0 => v(
            10,
            "uid 0 is mapped to the host's root",
            m.uid_map.from.clone(),
        ),
        Some(r) => v(
            0,
            format!("uid 0 is host uid {}", r.outside),
            m.uid_map.from.clone(),
        ),
        None => v(0, "uid 0 is not mapped", m.uid_map.from.clone()),
    }
}

fn userns_range(p: &LaunchPlan) -> Verdict {
    let (on, from) = userns(p);
    let Some(m) = p.idmap.as_ref().filter(|_| on) else {
        return v(10, "no user namespace: every host id", from);
    };
    // Single ids kept as they are on the host are the service's own (exec.user).
    let shared = m
        .uid_map
        .iter()
        .chain(m.gid_map.iter())
        .find(|r| r.count > 1 && r.outside < 65536);
    match shared {
        Some(r) => v(
            10,
            format!(
                "maps host ids {}-{}",
                r.outside,
                u64::from(r.outside) + u64::from(r.count) - 1
            ),
            m.uid_map.from.clone(),
        ),
        None => {
            let ids: u64 = m.uid_map.iter().map(|r| u64::from(r.count)).sum();
            v(
                0,
                format!("{ids} ids in a private range"),
                m.uid_map.from.clone(),
            )
        }
    }
}

fn groups(p: &LaunchPlan) -> Verdict {
    let g = &p.creds.groups;
    if g.is_empty() {
        v(0, "none", g.from.clone())
    } else {
        v(10, format!("{:?}", g.value), g.from.clone())
    }
}

/// Kept capabilities of a group: 10 without a user namespace, 7 with one (they act on its
/// namespaces, but the kernel surfaces they open are the host's).
fn caps(p: &LaunchPlan, group: &[C]) -> Verdict {
    let kept = &p.finals.capabilities;
    let hit: Vec<String> = kept
        .iter()
        .filter(|c| group.contains(c))
        .map(|c| c.to_string())
        .collect();
    if hit.is_empty() {
        return v(0, "dropped", kept.from.clone());
    }
    let bad = if userns(p).0 { 7 } else { 10 };
    v(bad, format!("kept: {}", hit.join(", ")), kept.from.clone())
}

const CAP_KERNEL: &[C] = &[
    C::CAP_SYS_MODULE,
    C::CAP_SYS_RAWIO,
    C::CAP_SYS_BOOT,
    C::CAP_SYS_TIME,
    C::CAP_WAKE_ALARM,
    C::CAP_SYSLOG,
    C::CAP_SYS_PACCT,
    C::CAP_MAC_ADMIN,
    C::CAP_MAC_OVERRIDE,
    C::CAP_AUDIT_CONTROL,
    C::CAP_AUDIT_WRITE,
    C::CAP_AUDIT_READ,
];
const CAP_TRACE: &[C] = &[C::CAP_SYS_PTRACE, C::CAP_BPF, C::CAP_PERFMON];
const CAP_FILES: &[C] = &[
    C::CAP_DAC_OVERRIDE,
    C::CAP_DAC_READ_SEARCH,
    C::CAP_FOWNER,
    C::CAP_FSETID,
    C::CAP_CHOWN,
    C::CAP_LINUX_IMMUTABLE,
    C::CAP_MKNOD,
];
const CAP_IDS: &[C] = &[C::CAP_SETUID, C::CAP_SETGID, C::CAP_SETPCAP, C::CAP_SETFCAP];
const CAP_NET: &[C] = &[C::CAP_NET_ADMIN, C::CAP_NET_RAW];

fn cap_admin(p: &LaunchPlan) -> Verdict {
    caps(p, &[C::CAP_SYS_ADMIN])
}
fn cap_kernel(p: &LaunchPlan) -> Verdict {
    caps(p, CAP_KERNEL)
}
fn cap_trace(p: &LaunchPlan) -> Verdict {
    caps(p, CAP_TRACE)
}
fn cap_files(p: &LaunchPlan) -> Verdict {
    caps(p, CAP_FILES)
}
fn cap_ids(p: &LaunchPlan) -> Verdict {
    caps(p, CAP_IDS)
}
fn cap_net(p: &LaunchPlan) -> Verdict {
    caps(p, CAP_NET)
}
fn cap_other(p: &LaunchPlan) -> Verdict {
    let named: Vec<C> = [CAP_KERNEL, CAP_TRACE, CAP_FILES, CAP_IDS, CAP_NET]
        .concat()
        .into_iter()
        .chain([C::CAP_SYS_ADMIN])
        .collect();
    let other: Vec<C> = caps::all()
        .into_iter()
        .filter(|c| !named.contains(c))
        .collect();
    caps(p, &other)
}

fn nnp(p: &LaunchPlan) -> Verdict {
    let n = &p.finals.no_new_privs;
    if **n {
        v(0, "set", n.from.clone())
    } else {
        v(
            10,
            "not set: a setuid program gains privileges",
            n.from.clone(),
        )
    }
}

fn ns_restrict(p: &LaunchPlan) -> Verdict {
    let from = p.finals.capabilities.from.clone();
    if p.finals.syscalls.filter.restrict_namespaces {
        v(0, "clone/unshare/setns with namespace flags refused", from)
    } else {
        v(10, "allowed (CAP_SYS_ADMIN is kept)", from)
    }
}

fn own_ns(p: &LaunchPlan, ns: Namespace, without: &str) -> Verdict {
    let (on, from) = namespace(p, ns);
    if on {
        v(0, "own", from)
    } else {
        v(10, format!("shared with the host: {without}"), from)
    }
}

fn ns_mount(p: &LaunchPlan) -> Verdict {
    own_ns(p, Namespace::Mount, "the host's mounts")
}
fn ns_pid(p: &LaunchPlan) -> Verdict {
    own_ns(p, Namespace::Pid, "sees and signals host processes")
}
fn ns_ipc(p: &LaunchPlan) -> Verdict {
    own_ns(p, Namespace::Ipc, "host SysV IPC and POSIX queues")
}
fn ns_uts(p: &LaunchPlan) -> Verdict {
    own_ns(p, Namespace::Uts, "the host's hostname")
}
fn ns_cgroup(p: &LaunchPlan) -> Verdict {
    own_ns(p, Namespace::Cgroup, "the host's cgroup tree")
}
fn net(p: &LaunchPlan) -> Verdict {
    own_ns(p, Namespace::Net, "interfaces, ports, outbound")
}

/// The host's network is `net`'s to score (10 there, weight 1500): scoring its ports and
/// outbound again would count one hole three times, so these two do not apply there.
fn host_network(p: &LaunchPlan) -> Option<Verdict> {
    let (own, from) = namespace(p, Namespace::Net);
    (!own).then(|| Verdict {
        badness: None,
        says: "the host's network: scored by `net`".into(),
        from,
    })
}

/// Published ports, by the widest: none 0; only on loopback addresses 2 (local users of the
/// host reach it); on a specific host address 5 (whoever reaches that address); on every
/// host address 10.
fn net_publish(p: &LaunchPlan) -> Verdict {
    if let Some(h) = host_network(p) {
        return h;
    }
    let Some(n) = &p.network else {
        return v(
            0,
            "none (no network but loopback)",
            namespace(p, Namespace::Net).1,
        );
    };
    let badness = |pb: &Publish| match pb.host_ip {
        None => 10,
        Some(ip) if ip.is_unspecified() => 10,
        Some(ip) if ip.is_loopback() => 2,
        Some(_) => 5,
    };
    let Some(worst) = n.publish.iter().max_by_key(|d| badness(d)) else {
        return v(0, "none", Provenance::default("network.publish"));
    };
    let shown: Vec<String> = n.publish.iter().map(|d| d.value.to_string()).collect();
    let wide = match badness(worst) {
        10 => "every host address",
        5 => "a host address",
        _ => "loopback only",
    };
    v(
        badness(worst),
        format!("{wide}: {}", shown.join(", ")),
        worst.from.clone(),
    )
}

/// Outbound connections: none (loopback only) 0; a bridge without NAT 3 (it still reaches
/// the host at the gateway address and the network's other sandboxes); with NAT 10.
fn net_outbound(p: &LaunchPlan) -> Verdict {
    if let Some(h) = host_network(p) {
        return h;
    }
    let Some(n) = &p.network else {
        return v(0, "none: loopback only", namespace(p, Namespace::Net).1);
    };
    let o = &n.outbound;
    if o.value {
        v(
            10,
            format!("anywhere, masqueraded via network `{}`", n.network.value),
            o.from.clone(),
        )
    } else {
        v(
            3,
            format!(
                "network `{}` only: its sandboxes and the host at {}",
                n.network.value, n.def.gateway
            ),
            o.from.clone(),
        )
    }
}

fn net_abstract(p: &LaunchPlan) -> Verdict {
    let (own, from) = namespace(p, Namespace::Net);
    if own {
        v(0, "own network namespace", from)
    } else if p.finals.scope_abstract_sockets {
        v(0, "landlock scopes abstract sockets", from)
    } else {
        v(10, "the host's abstract sockets are reachable", from)
    }
}

fn family_allowed(p: &LaunchPlan, names: &[&str]) -> Vec<String> {
    p.finals
        .syscalls
        .families
        .iter()
        .filter(|f| names.contains(&f.as_str()))
        .cloned()
        .collect()
}

/// A family: refused 0; allowed in the sandbox's own network `own`; with the host's 10.
fn family(p: &LaunchPlan, names: &[&str], own: u64) -> Verdict {
    let from = p.finals.syscalls.families.from.clone();
    let hit = family_allowed(p, names);
    if hit.is_empty() {
        return v(0, "refused", from);
    }
    if namespace(p, Namespace::Net).0 {
        v(
            own,
            format!("{} allowed, own network", hit.join(", ")),
            from,
        )
    } else {
        v(
            10,
            format!("{} allowed, host network", hit.join(", ")),
            from,
        )
    }
}

fn af_inet(p: &LaunchPlan) -> Verdict {
    family(p, &["AF_INET", "AF_INET6"], 2)
}
fn af_netlink(p: &LaunchPlan) -> Verdict {
    family(p, &["AF_NETLINK"], 2)
}
fn af_packet(p: &LaunchPlan) -> Verdict {
    family(p, &["AF_PACKET"], 5)
}
fn af_other(p: &LaunchPlan) -> Verdict {
    let from = p.finals.syscalls.families.from.clone();
    let known = ["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET"];
    let other: Vec<&String> = p
        .finals
        .syscalls
        .families
        .iter()
        .filter(|f| !known.contains(&f.as_str()))
        .collect();
    if other.is_empty() {
        v(0, "none", from)
    } else {
        let names: Vec<&str> = other.iter().map(|s| s.as_str()).collect();
        v(10, format!("allowed: {}", names.join(", ")), from)
    }
}

fn no_mount_ns(p: &LaunchPlan, what: &str) -> Verdict {
    let (_, from) = namespace(p, Namespace::Mount);
    v(10, format!("no mount namespace: {what}"), from)
}

fn fs_root(p: &LaunchPlan) -> Verdict {
    let Some(fs) = &p.fs else {
        return no_mount_ns(p, "the host's root, as writable as on the host");
    };
    match (&fs.root, *fs.read_only) {
        (RootSource::Empty, _) => v(0, "an empty tmpfs", fs.read_only.from.clone()),
        (RootSource::Host(r), true) => v(0, format!("{r}, read-only"), fs.read_only.from.clone()),
        (RootSource::Host(r), false) => v(10, format!("{r}, writable"), fs.read_only.from.clone()),
    }
}

/// The op mounted at `target` that hides the host's, if any.
fn covered<'a>(p: &'a LaunchPlan, target: &str) -> Option<&'a crate::plan::Decided<MountOp>> {
    p.fs.as_ref()?.ops.iter().rev().find(|o| {
        o.target() == target
            && match &o.value {
                MountOp::Tmpfs { .. } | MountOp::Hide { .. } => true,
                MountOp::Bind { source, .. } => source != target,
                _ => false,
            }
    })
}

/// A private mount over `targets`: 0 when all are covered (or the root is empty).
fn private(p: &LaunchPlan, targets: &[&str], setting: &str, what: &str) -> Verdict {
    let Some(fs) = &p.fs else {
        return no_mount_ns(p, what);
    };
    if fs.root == RootSource::Empty {
        return v(
            0,
            "not in the empty root unless mounted",
            fs.read_only.from.clone(),
        );
    }
    let found: Vec<_> = targets.iter().map(|t| (t, covered(p, t))).collect();
    let missing: Vec<&str> = found
        .iter()
        .filter(|(_, o)| o.is_none())
        .map(|(t, _)| **t)
        .collect();
    let from = found
        .iter()
        .find_map(|(_, o)| o.map(|o| o.from.clone()))
        .unwrap_or_else(|| Provenance::default(setting));
    match missing.len() {
        0 => v(0, "private", from),
        n if n == targets.len() => v(10, format!("the host's: {what}"), from),
        _ => v(5, format!("the host's {}", missing.join(", ")), from),
    }
}

fn fs_tmp(p: &LaunchPlan) -> Verdict {
    private(
        p,
        &["/tmp", "/var/tmp"],
        "filesystem.private_tmp",
        "shared with host users",
    )
}
fn fs_dev(p: &LaunchPlan) -> Verdict {
    private(p, &["/dev"], "filesystem.private_dev", "every device node")
}
fn fs_run(p: &LaunchPlan) -> Verdict {
    private(p, &["/run"], "filesystem.private_run", "the host's sockets")
}

fn fs_home(p: &LaunchPlan) -> Verdict {
    let Some(fs) = &p.fs else {
        return no_mount_ns(p, "every home directory");
    };
    // Landlock keeping the service out is as good as a mask.
    let unreachable = |t: &str| {
        p.finals.landlock.as_ref().is_some_and(|rules| {
            !rules.iter().any(|r| {
                r.path == t
                    || crate::host::walk::is_below(t, &r.path)
                    || crate::host::walk::is_below(&r.path, t)
            })
        })
    };
    if fs.root == RootSource::Empty {
        return v(
            0,
            "not in the empty root unless mounted",
            fs.read_only.from.clone(),
        );
    }
    let mut from = None;
    let mut open = Vec::new();
    for t in ["/home", "/root"] {
        match covered(p, t) {
            Some(o) => {
                from.get_or_insert(o.from.clone());
            }
            None if unreachable(t) => {}
            None => open.push(t),
        }
    }
    let from = from.unwrap_or_else(|| Provenance::default("filesystem.hide"));
    match open.len() {
        0 => v(0, "hidden or out of landlock's reach", from),
        1 => v(5, format!("{} visible", open[0]), from),
        _ => v(10, "/home and /root visible", from),
    }
}

fn fs_binds(p: &LaunchPlan) -> Verdict {
    let Some(fs) = &p.fs else {
        return no_mount_ns(p, "the whole host");
    };
    let binds: Vec<_> = fs
        .ops
        .iter()
        .filter(|o| match &o.value {
            MountOp::Bind {
                source, read_only, ..
            } => {
                !read_only
                    && !source.starts_with(&format!("{VOLUME_DIR}/"))
                    && !source.starts_with(&format!("{RUN_DIR}/"))
                    && !DEV_NODES.contains(&source.as_str())
            }
            _ => false,
        })
        .collect();
    match binds.first() {
        None => v(0, "none", Provenance::default("[[mount]]")),
        Some(first) => {
            let names: Vec<&str> = binds.iter().map(|b| b.target()).collect();
            let bad = if binds.len() == 1 { 5 } else { 10 };
            v(
                bad,
                format!("writable: {}", names.join(", ")),
                first.from.clone(),
            )
        }
    }
}

fn kernel_tunables(p: &LaunchPlan) -> Verdict {
    let pk = &p.protect_kernel;
    match (&p.fs, **pk) {
        (None, _) => no_mount_ns(p, "the host's /proc/sys and /sys"),
        (Some(_), true) => v(0, "read-only", pk.from.clone()),
        (Some(_), false) => v(10, "writable where permissions allow", pk.from.clone()),
    }
}

fn kernel_masks(p: &LaunchPlan) -> Verdict {
    let pk = &p.protect_kernel;
    match (&p.fs, **pk) {
        (None, _) => no_mount_ns(p, "every kernel file"),
        (Some(_), true) => v(0, "masked", pk.from.clone()),
        (Some(_), false) => v(10, "visible", pk.from.clone()),
    }
}

/// Every call of `names` denied: 0; some: 5; none: 10. Cites the first call's deciding rule.
fn calls(p: &LaunchPlan, names: &[&str]) -> Verdict {
    let open: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| super::runs(p, n))
        .collect();
    let cited = super::syscall(p, open.first().unwrap_or(&names[0]));
    let from = cited.from.clone();
    match open.len() {
        0 => v(0, format!("denied ({})", cited.action), from),
        n if n == names.len() => v(10, "allowed", from),
        _ => {
            let shown: Vec<&str> = open.iter().take(3).copied().collect();
            let more = if open.len() > 3 { ", ..." } else { "" };
            v(
                5,
                format!(
                    "{} of {} allowed: {}{more}",
                    open.len(),
                    names.len(),
                    shown.join(", ")
                ),
                from,
            )
        }
    }
}

fn group(p: &LaunchPlan, name: &str) -> Verdict {
    let mut members = std::collections::BTreeSet::new();
    crate::profile::syscalls::expand(name, &mut members);
    let names: Vec<&str> = members.iter().map(|s| s.as_str()).collect();
    calls(p, &names)
}

fn kernel_modules(p: &LaunchPlan) -> Verdict {
    let c = caps(p, &[C::CAP_SYS_MODULE]);
    match c.badness {
        Some(b) if b > 0 => c,
        _ => group(p, "@module"),
    }
}

fn kernel_logs(p: &LaunchPlan) -> Verdict {
    let c = caps(p, &[C::CAP_SYSLOG]);
    if c.badness.is_some_and(|b| b > 0) {
        return c;
    }
    let dev = fs_dev(p);
    if dev.badness.is_some_and(|b| b > 0) {
        return v(10, "/dev/kmsg is the host's", dev.from);
    }
    calls(p, &["syslog"])
}

fn keyring(p: &LaunchPlan) -> Verdict {
    group(p, "@keyring")
}

fn seccomp_abi(p: &LaunchPlan) -> Verdict {
    v(
        0,
        "other ABIs kill the process",
        p.finals.syscalls.action.from.clone(),
    )
}

/// Landlock's breadth for one access (None: any, as every rule allows reading): no
/// landlock 10; a rule at `/` 10; a rule at a top-level directory 6; deeper rules 2; no rule
/// 0.
fn landlock(p: &LaunchPlan, access: Option<Access>) -> Verdict {
    let Some(rules) = &p.finals.landlock else {
        return v(
            10,
            "no landlock rules: anything permissions allow",
            Provenance::default("security.landlock"),
        );
    };
    let mine: Vec<_> = rules
        .iter()
        .filter(|r| access.is_none_or(|a| r.access == a))
        .collect();
    let depth = |path: &str| path.split('/').filter(|c| !c.is_empty()).count();
    let worst = mine.iter().min_by_key(|r| depth(&r.path));
    match worst {
        None => v(
            0,
            "none",
            rules.first().map_or_else(
                || Provenance::default("security.landlock"),
                |r| r.from.clone(),
            ),
        ),
        Some(r) => {
            let bad = match depth(&r.path) {
                0 => 10,
                1 => 6,
                _ => 2,
            };
            v(
                bad,
                format!("{} rule(s), widest {}", mine.len(), r.path),
                r.from.clone(),
            )
        }
    }
}

fn limit(p: &LaunchPlan, key: &str) -> Verdict {
    match p.resources.iter().find(|r| r.value.key == key) {
        Some(r) if r.value.value == "infinity" || r.value.value == "max" => {
            v(10, "unlimited", r.from.clone())
        }
        Some(r) => v(0, r.value.value.clone(), r.from.clone()),
        None => v(10, "none", Provenance::default(key)),
    }
}

fn umask(p: &LaunchPlan) -> Verdict {
    let u = &p.finals.umask;
    let m = **u;
    let (bad, says) = if m & 0o002 == 0 {
        (10, "world-writable")
    } else if m & 0o004 == 0 {
        (5, "world-readable")
    } else if m & 0o020 == 0 {
        (2, "group-writable")
    } else if m & 0o040 == 0 {
        (1, "group-readable")
    } else {
        (0, "owner only")
    };
    v(bad, format!("{m:04o}: {says}"), u.from.clone())
}

fn notes(p: &LaunchPlan) -> Verdict {
    let from = p
        .notes
        .first()
        .map_or_else(|| Provenance::default("plan notes"), |n| note_origin(n));
    match p.notes.len() {
        0 => v(0, "none", from),
        1 => v(
            5,
            p.notes[0]
                .split_once(": ")
                .map_or(p.notes[0].as_str(), |(_, m)| m)
                .to_owned(),
            from,
        ),
        n => v(10, format!("{n} holes noted (see `stockade check`)"), from),
    }
}

/// A note reads `file:line:col: key: message` (or `file: key: message`).
fn note_origin(note: &str) -> Provenance {
    let mut parts = note.splitn(4, ':');
    let (file, line, col) = (parts.next(), parts.next(), parts.next());
    match (
        file,
        line.and_then(|l| l.parse().ok()),
        col.and_then(|c| c.trim().parse().ok()),
    ) {
        (Some(file), Some(line), Some(col)) => {
            let key = parts
                .next()
                .unwrap_or("")
                .trim()
                .split(':')
                .next()
                .unwrap_or("")
                .to_owned();
            Provenance::Profile {
                file: file.into(),
                line,
                col,
                key,
            }
        }
        _ => Provenance::default("plan notes"),
    }
}
