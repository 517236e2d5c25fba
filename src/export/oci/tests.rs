//! The bundle made of plans built on a fake host: every wall of the plan has its OCI field,
//! and what OCI cannot express is listed and annotated.

use super::{bundle, HostEntry};
use crate::plan::tests::for_export;
use serde_json::Value;

const PROFILE: &str = r#"
[exec]
command = ["/bin/true", "x"]
user = "redis"
supplementary_groups = ["adm"]
umask = "0027"
rlimits = { nofile = 4096, core = 0 }
[network]
hostname = "cache"
[filesystem]
read_only = true
hide = ["/home"]
[[mount]]
type = "bind"
source = "/etc/redis"
target = "/etc/redis"
read_only = true
[[mount]]
type = "tmpfs"
target = "/run"
size = "16M"
mode = "0750"
[resources]
memory_max = "256M"
memory_high = "200M"
cpu_quota = "50%"
cpu_weight = 100
tasks_max = 32
io_weight = 200
[security]
capabilities = ["net_bind_service"]
syscall_deny = ["@swap"]
landlock = { read = ["/usr"], exec = ["/bin"] }
"#;

fn config(text: &str) -> (Value, Vec<String>, super::Rootfs) {
    let host = [
        HostEntry::Dir("etc".into(), true),
        HostEntry::Dir("usr".into(), true),
        HostEntry::Dir("run".into(), true),
        HostEntry::Dir("lost+found".into(), false),
        HostEntry::Symlink("bin".into(), "usr/bin".into()),
    ];
    let b = bundle(&for_export(text), &host).unwrap();
    (
        serde_json::to_value(&b.config).unwrap(),
        b.missing,
        b.rootfs,
    )
}

#[test]
fn process_identity_capabilities_and_limits() {
    let (c, _, _) = config(PROFILE);
    let p = &c["process"];
    assert_eq!(p["args"], serde_json::json!(["/bin/true", "x"]));
    assert_eq!(p["user"]["uid"], 102);
    assert_eq!(p["user"]["gid"], 105);
    assert_eq!(p["user"]["additionalGids"], serde_json::json!([4]));
    assert_eq!(p["user"]["umask"], 0o027);
    assert_eq!(p["noNewPrivileges"], true);
    for set in [
        "bounding",
        "effective",
        "permitted",
        "inheritable",
        "ambient",
    ] {
        assert_eq!(
            p["capabilities"][set],
            serde_json::json!(["CAP_NET_BIND_SERVICE"]),
            "{set}"
        );
    }
    let rl = p["rlimits"].as_array().unwrap();
    assert!(
        rl.iter()
            .any(|r| r["type"] == "RLIMIT_NOFILE" && r["hard"] == 4096 && r["soft"] == 4096),
        "{rl:?}"
    );
    assert_eq!(c["hostname"], "cache");
}

#[test]
fn namespaces_id_maps_and_cgroups_path() {
    let (c, _, _) = config(PROFILE);
    let l = &c["linux"];
    let ns: Vec<&str> = l["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        ns,
        ["user", "pid", "mount", "network", "ipc", "uts", "cgroup"]
    );
    // The service's own id keeps its host id inside the range, as with stockade.
    let uid = l["uidMappings"].as_array().unwrap();
    assert!(
        uid.iter()
            .any(|m| m["containerID"] == 102 && m["hostID"] == 102 && m["size"] == 1),
        "{uid:?}"
    );
    assert!(uid
        .iter()
        .any(|m| m["containerID"] == 0 && m["hostID"].as_u64().unwrap() >= 0x6000_0000));
    assert_eq!(l["cgroupsPath"], "stockade.slice:stockade:p");
    let r = &l["resources"];
    assert_eq!(r["memory"]["limit"], 256 << 20);
    assert_eq!(r["cpu"]["quota"], 50_000);
    assert_eq!(r["cpu"]["period"], 100_000);
    assert_eq!(r["pids"]["limit"], 32);
    assert_eq!(r["unified"]["memory.high"], (200u64 << 20).to_string());
    assert_eq!(r["unified"]["cpu.weight"], "100");
    assert_eq!(r["unified"]["io.weight"], "default 200");
}

#[test]
fn mounts_masks_and_the_rootfs() {
    let (c, _, rootfs) = config(PROFILE);
    assert_eq!(c["root"]["path"], "rootfs");
    assert_eq!(c["root"]["readonly"], true);
    let mounts = c["mounts"].as_array().unwrap();
    let at = |d: &str| {
        mounts
            .iter()
            .find(|m| m["destination"] == d)
            .unwrap_or_else(|| panic!("no {d} in {mounts:?}"))
    };
    // The host's directories, read-only; /run is the profile's tmpfs, not the host's.
    assert_eq!(at("/usr")["type"], "bind");
    assert!(at("/usr")["options"]
        .as_array()
        .unwrap()
        .contains(&"rro".into()));
    assert_eq!(at("/run")["type"], "tmpfs");
    let run_opts = at("/run")["options"].as_array().unwrap();
    assert!(
        run_opts.contains(&"size=16777216".into()) && run_opts.contains(&"mode=750".into()),
        "{run_opts:?}"
    );
    assert_eq!(at("/proc")["type"], "proc");
    assert_eq!(at("/dev")["type"], "tmpfs");
    assert_eq!(at("/etc/redis")["source"], "/etc/redis");
    // The id-mapped root cannot open lost+found: only its mount point is made.
    assert!(!mounts.iter().any(|m| m["destination"] == "/lost+found"));
    assert!(rootfs.dirs.contains(&"lost+found".to_owned()));
    assert_eq!(rootfs.symlinks, [("bin".to_owned(), "usr/bin".to_owned())]);
    let masked = c["linux"]["maskedPaths"].as_array().unwrap();
    assert!(
        masked.contains(&"/home".into()) && masked.contains(&"/var/lib/stockade".into()),
        "{masked:?}"
    );
}

#[test]
fn seccomp_is_expanded_to_names_with_errno_and_the_native_architecture() {
    let (c, _, _) = config(PROFILE);
    let s = &c["linux"]["seccomp"];
    assert_eq!(s["defaultAction"], "SCMP_ACT_ALLOW");
    assert_eq!(s["architectures"], serde_json::json!(["SCMP_ARCH_X86_64"]));
    let rules = s["syscalls"].as_array().unwrap();
    let plain = &rules[0];
    assert_eq!(plain["action"], "SCMP_ACT_ERRNO");
    assert_eq!(plain["errnoRet"], libc::EPERM);
    let names: Vec<&str> = plain["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    // @swap expanded, the baseline's groups too.
    for n in [
        "swapon",
        "swapoff",
        "mount",
        "keyctl",
        "ptrace",
        "io_uring_setup",
    ] {
        assert!(names.contains(&n), "{n} not denied: {names:?}");
    }
    let cond = |name: &str| {
        rules
            .iter()
            .filter(|r| r["names"][0] == name && r.get("args").is_some())
            .count()
    };
    assert_eq!(cond("clone"), 7, "one rule per namespace flag");
    assert!(cond("socket") > 30, "families outside the list are refused");
    assert_eq!(cond("ioctl"), 2, "TIOCSTI and TIOCLINUX");
    assert!(rules
        .iter()
        .any(|r| r["names"][0] == "clone3" && r["errnoRet"] == libc::ENOSYS));
}

#[test]
fn what_oci_cannot_express_is_listed_and_annotated() {
    let (c, missing, _) = config(PROFILE);
    let a = &c["annotations"];
    assert_eq!(a["org.stockade.landlock.read"], "/usr");
    assert_eq!(a["org.stockade.landlock.exec"], "/bin");
    let m = missing.join("\n");
    assert!(m.contains("landlock: read only below /usr"), "{m}");
    assert!(m.contains("stockade's init as pid 1"), "{m}");
    // An allow-list's terminal-injection refusal cannot be carried: said, not dropped.
    let (c, missing, _) = config(
        "[exec]\ncommand = [\"/bin/true\"]\n[security]\nsyscall_filter = [\"@system-service\"]\n",
    );
    assert_eq!(c["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    assert!(missing.iter().any(|m| m.contains("TIOCSTI")), "{missing:?}");
    assert_eq!(c["annotations"]["org.stockade.seccomp.tiocsti"], "EPERM");
}

#[test]
fn a_bridge_network_is_listed_and_annotated_not_dropped() {
    let (c, missing, _) = config(
        "[exec]\ncommand = [\"/bin/true\"]\n[network]\nmode = \"bridge\"\npublish = [\"127.0.0.1:8080:80\"]\n",
    );
    let a = &c["annotations"];
    assert_eq!(a["org.stockade.network"], "default");
    assert_eq!(a["org.stockade.network.publish"], "127.0.0.1:8080:80/tcp");
    assert!(
        missing
            .iter()
            .any(|m| m.contains("bridge network `default`")),
        "{missing:?}"
    );
}
