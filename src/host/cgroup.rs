//! What this machine offers for cgroups and systemd: whether systemd runs with a reachable
//! system bus, where the cgroup v2 hierarchy is mounted, which controllers it has, our own
//! cgroup and whether systemd delegated it to us. Readers only, below the host root.

use super::Host;
use std::fs;
use std::path::PathBuf;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupFacts {
    /// systemd is the system manager (`/run/systemd/system` exists).
    pub systemd_running: bool,
    /// The system bus socket exists.
    pub system_bus: bool,
    /// Where cgroup v2 is mounted: `/sys/fs/cgroup` (pure v2) or `/sys/fs/cgroup/unified`
    /// (hybrid: the controllers are bound to v1), or None.
    pub v2_mount: Option<PathBuf>,
    /// Controllers the v2 root offers (`cgroup.controllers`).
    pub root_controllers: Vec<String>,
    /// Our own cgroup, relative to the v2 mount (`/system.slice/foo.service`).
    pub own: Option<String>,
    /// Controllers available in our own cgroup.
    pub own_controllers: Vec<String>,
    /// systemd delegated our cgroup to us (the unit has Delegate=yes).
    pub delegated: bool,
}

impl Host {
    pub fn cgroup_facts(&self, proc_self_cgroup: &str) -> CgroupFacts {
        let mut f = CgroupFacts {
            systemd_running: self.path("/run/systemd/system").is_dir(),
            system_bus: self.path("/run/dbus/system_bus_socket").exists(),
            ..Default::default()
        };
        let mounts = fs::read_to_string(self.path("/proc/self/mounts")).unwrap_or_default();
        f.v2_mount = mounts
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let (_, dir, kind) = (it.next()?, it.next()?, it.next()?);
                (kind == "cgroup2").then(|| PathBuf::from(dir))
            })
            .min_by_key(|p| p.as_os_str().len());
        let Some(mount) = &f.v2_mount else { return f };
        let host_mount = self.path(&mount.display().to_string());
        f.root_controllers = words(&host_mount.join("cgroup.controllers"));
        f.own = proc_self_cgroup
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .map(str::to_owned);
        if let Some(own) = &f.own {
            let dir = host_mount.join(own.trim_start_matches('/'));
            f.own_controllers = words(&dir.join("cgroup.controllers"));
            f.delegated = crate::sys::getxattr(&dir, "trusted.delegate").is_some_and(|v| v == b"1");
        }
        f
    }
}

fn words(path: &std::path::Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}
