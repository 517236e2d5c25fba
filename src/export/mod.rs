//! `stockade export`: pure translations of a [`LaunchPlan`](crate::plan::LaunchPlan) into
//! what other engines run, so a profile that was written and tested with stockade carries
//! over. [`systemd`] makes a service unit of systemd's own directives. Every translation
//! reads the plan only (the profile's defaults and drop-ins are already in it), does no I/O,
//! and lists what the target cannot express instead of dropping it silently.

pub mod oci;
pub mod systemd;

use crate::plan::Provenance;

/// A decision's origin as a comment names it: `exec.command: /etc/stockade/redis.toml:11`,
/// `default (filesystem.private_tmp)`.
pub fn cite(p: &Provenance) -> String {
    match p {
        Provenance::Profile {
            file, line, key, ..
        } => format!("{key}: {}:{line}", file.display()),
        other => other.to_string(),
    }
}

/// The setting a decision belongs to, whether the profile wrote it or it is the default.
pub fn setting(p: &Provenance) -> &str {
    match p {
        Provenance::Profile { key, .. } => key,
        Provenance::Default { name } | Provenance::Invocation { name } => name,
    }
}

/// The cgroup facts an export is planned for: the machine that runs the unit or the bundle,
/// where systemd (or the runtime through it) places the service in a cgroup v2 tree with
/// every controller, and applies the limits. Planned with this host's facts instead, a
/// profile with `[resources]` would not export from a hybrid host that cannot enforce them.
pub fn target_cgroup() -> crate::host::CgroupFacts {
    crate::host::CgroupFacts {
        systemd_running: true,
        system_bus: true,
        v2_mount: Some("/sys/fs/cgroup".into()),
        root_controllers: ["cpuset", "cpu", "io", "memory", "pids"]
            .map(String::from)
            .to_vec(),
        own: None,
        own_controllers: Vec::new(),
        delegated: false,
    }
}

/// The invocation an export is planned for: started by a unit whose notify socket is
/// systemd's (so `[systemd] notify` is planned as it will run), with no environment of the
/// exporting shell carried over and no arguments after `--`.
pub fn invocation() -> crate::plan::Invocation {
    crate::plan::Invocation {
        extra_args: Vec::new(),
        env: Vec::new(),
        volume_dir: crate::plan::VOLUME_DIR.into(),
        id: 0,
        under_unit: true,
        notify_socket: Some("/run/systemd/notify".into()),
        ids_dir: crate::plan::IDS_DIR.into(),
        network_dirs: crate::profile::networks::search_dirs(),
    }
}
