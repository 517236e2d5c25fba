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
        f.v2_mount = self.v2_mount();
        let Some(mount) = &f.v2_mount else { return f };
        let host_mount = self.path(&mount.display().to_string());
        f.root_controllers = words(&host_mount.join("cgroup.controllers"));
        f.own = v2_path(proc_self_cgroup).map(str::to_owned);
        if let Some(own) = &f.own {
            let dir = host_mount.join(own.trim_start_matches('/'));
            f.own_controllers = words(&dir.join("cgroup.controllers"));
            f.delegated = crate::sys::getxattr(&dir, "trusted.delegate").is_some_and(|v| v == b"1");
        }
        f
    }

    /// Where cgroup v2 is mounted, as the host's mount table says (a path inside the host).
    pub fn v2_mount(&self) -> Option<PathBuf> {
        v2_mount(&fs::read_to_string(self.path("/proc/self/mounts")).unwrap_or_default())
    }

    /// The cgroup v2 directory process `pid` is in, as a path below the host root.
    pub fn cgroup_dir_of(&self, pid: u32) -> Option<PathBuf> {
        let text = fs::read_to_string(self.path(&format!("/proc/{pid}/cgroup"))).ok()?;
        let rel = v2_path(&text)?;
        let mount = self.v2_mount()?;
        Some(
            self.path(&mount.display().to_string())
                .join(rel.trim_start_matches('/')),
        )
    }

    /// The systemd service this process runs under, named by its own cgroup
    /// (`/system.slice/stockade@redis.service` → `stockade@redis.service`).
    pub fn own_service_unit(&self) -> Option<String> {
        let text = fs::read_to_string(self.path("/proc/self/cgroup")).ok()?;
        service_unit(v2_path(&text)?).map(str::to_owned)
    }
}

/// The cgroup v2 path of a `/proc/PID/cgroup` text: its `0::` line, the only one under pure
/// v2 and the unified hierarchy's on a hybrid host. The one parser of that file.
pub fn v2_path(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup.lines().find_map(|l| l.strip_prefix("0::"))
}

/// The cgroup v2 mount point in a mount table (`/proc/self/mounts`): the shortest, because
/// a container may show the host's hierarchy again below its own.
pub fn v2_mount(mounts: &str) -> Option<PathBuf> {
    mounts
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (_, dir, kind) = (it.next()?, it.next()?, it.next()?);
            (kind == "cgroup2").then(|| PathBuf::from(dir))
        })
        .min_by_key(|p| p.as_os_str().len())
}

/// The innermost `.service` a cgroup path is named after.
pub fn service_unit(cgroup: &str) -> Option<&str> {
    cgroup.rsplit('/').find(|c| c.ends_with(".service"))
}

fn words(path: &std::path::Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v2_line_is_found_on_hybrid_and_pure_hosts() {
        let hybrid =
            "12:memory:/system.slice/a.service\n1:name=systemd:/x\n0::/system.slice/a.service\n";
        assert_eq!(v2_path(hybrid), Some("/system.slice/a.service"));
        assert_eq!(v2_path("0::/\n"), Some("/"));
        assert_eq!(v2_path("1:name=systemd:/x\n"), None);
    }

    #[test]
    fn the_shortest_cgroup2_mount_wins() {
        let m = "sysfs /sys sysfs rw 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\ncgroup2 /sys/fs/cgroup/unified/nested cgroup2 rw 0 0\n";
        assert_eq!(v2_mount(m), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(v2_mount("tmpfs /tmp tmpfs rw 0 0\n"), None);
    }

    #[test]
    fn the_innermost_service_names_the_unit() {
        assert_eq!(
            service_unit("/system.slice/stockade@redis.service/payload"),
            Some("stockade@redis.service")
        );
        assert_eq!(service_unit("/user.slice/session-1.scope"), None);
    }
}
