//! Bridge networks on a kernel that lacks their modules. The VM's kernel (Debian's 6.12)
//! has veth, bridge and nf_tables as loadable modules only, and the guest can load none of
//! them by itself: its root is the host's, with no /lib/modules for that kernel and no
//! modprobe. The test also points kernel.modprobe at /bin/false, so nothing is loaded on
//! demand even where both exist. It then loads, by hand (busybox insmod of the kernel
//! package's own files, in dependency order), one layer at a time: none, then the bridge,
//! then veth, nf_tables never. At each layer a bridge sandbox fails at the first missing
//! module the setup meets, with an error naming it, and leaves nothing behind.
//! Everything runs in a network namespace the test makes; no traffic is sent.

use super::{sh, text, vm, BIN, SERIAL};
use std::process::Command;

const NETNS: &str = "stk-vm-lacking";

/// The guest network's state stockade could leave behind, in the test's namespace.
fn snapshot() -> Vec<String> {
    let run = |cmd: &str| {
        let o = sh(cmd);
        format!("{}{}", text(&o.stdout), text(&o.stderr))
    };
    vec![
        run(&format!("ip -n {NETNS} -j link show")),
        run(&format!("ip -n {NETNS} -j addr show")),
        run(&format!("ip -n {NETNS} -j route show")),
        run(&format!(
            "ip netns exec {NETNS} cat /proc/sys/net/ipv4/ip_forward"
        )),
        // Without nf_tables this is nft's own error, the same before and after.
        run(&format!("ip netns exec {NETNS} nft -j list ruleset")),
        run("find /run/stockade/networks -mindepth 1 2>/dev/null || true"),
    ]
}

/// Loads the kernel package's modules, in order, as busybox insmod takes them (not
/// compressed).
fn insmod(modules: &[&str]) {
    let release = super::out("uname -r");
    let dir = format!("/var/cache/stockade-vm/kernel/lib/modules/{release}/kernel");
    assert!(
        std::path::Path::new(&dir).is_dir(),
        "{dir} is missing: tests/vm/vm.sh prepare unpacks the kernel package there (VM_CACHE must be the default)"
    );
    for m in modules {
        let name = m.rsplit('/').next().unwrap();
        let cmd =
            format!("xz -dc {dir}/{m}.ko.xz > /tmp/{name}.ko && busybox insmod /tmp/{name}.ko");
        let o = sh(&cmd);
        assert!(o.status.success(), "{cmd}: {}", text(&o.stderr));
    }
}

#[test]
fn a_kernel_without_bridge_nf_tables_or_veth_is_named_in_the_error_and_nothing_is_left() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    vm();
    let modprobe = super::out("cat /proc/sys/kernel/modprobe");
    assert!(sh("echo /bin/false > /proc/sys/kernel/modprobe")
        .status
        .success());
    for m in ["bridge", "nf_tables", "veth"] {
        assert!(
            !std::path::Path::new(&format!("/sys/module/{m}")).exists(),
            "{m} is loaded already: the test needs a kernel without it"
        );
    }
    assert!(sh(&format!("ip netns add {NETNS}")).status.success());
    let dir = "/tmp/stockade-vm-net";
    std::fs::create_dir_all(dir).unwrap();
    let profile = format!("{dir}/lacking.toml");
    std::fs::write(
        &profile,
        "[exec]\ncommand = [\"/bin/true\"]\n[network]\nmode = \"bridge\"\ndns = [\"192.0.2.53\"]\npublish = [\"16484:80\"]\n",
    )
    .unwrap();
    // In the order the setup meets them: the bridge, then the veth (made before nft's
    // answer is read: nft runs while the sandbox is built), then nf_tables.
    let layers: [(&[&str], &str, &str); 3] = [
        (
            &[],
            "the kernel lacks the `bridge` module",
            "modprobe bridge",
        ),
        (
            &["net/llc/llc", "net/802/stp", "net/bridge/bridge"],
            "the kernel lacks the `veth` module",
            "modprobe veth",
        ),
        (
            &["drivers/net/veth"],
            "the kernel lacks nf_tables",
            "modprobe nf_tables",
        ),
    ];
    let mut results = Vec::new();
    for (load, names, fix) in layers {
        insmod(load);
        let before = snapshot();
        let o = Command::new("ip")
            .args(["netns", "exec", NETNS, BIN, "run", &profile])
            .output()
            .unwrap();
        let err = text(&o.stderr);
        eprintln!("LAYER {names}: {}", err.trim());
        let clean = super::wait_until(std::time::Duration::from_secs(5), || snapshot() == before);
        results.push((names, fix, o.status.code(), err, clean, before, snapshot()));
    }
    sh(&format!("ip netns del {NETNS}"));
    sh(&format!("echo {modprobe} > /proc/sys/kernel/modprobe"));
    for (names, fix, code, err, clean, before, after) in results {
        assert_eq!(code, Some(125), "{err}");
        assert!(
            err.contains(names) && err.contains(fix),
            "expected `{names}` and `{fix}` in: {err}"
        );
        assert!(clean, "left behind when {names}: {after:?} vs {before:?}");
    }
}
