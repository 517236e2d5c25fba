//! The plan as a systemd service unit: the same walls built by systemd's own directives
//! (systemd 252, Debian 12), each preceded by a comment naming the profile line or default
//! that decided it, and a comment block of what systemd cannot express for this profile.
//! A pure function of the plan: it reads no files and asks systemd nothing.
//!
//! Where systemd has no exact equivalent the nearest directive is used and the difference
//! is listed (a PID namespace becomes `ProtectProc=invisible`; an id range becomes
//! `DynamicUser=yes`; a named volume becomes a `StateDirectory=`), never dropped silently.

use super::{cite, setting};
use crate::plan::{
    Access, CgroupPlan, Decided, IdRange, LaunchPlan, Limit, MountOp, Namespace, Provenance,
    RootSource, SysAction,
};
use crate::profile::validate::RLIMITS;
use crate::profile::values::Size;
use std::fmt::Write;

/// The unit text for `plan`.
pub fn unit(plan: &LaunchPlan) -> String {
    let mut u = Unit::default();
    u.service(plan);
    u.render(plan)
}

/// What systemd cannot express for `plan`, one item each with the decision it belongs to
/// (the unit's comment block lists the same).
pub fn missing(plan: &LaunchPlan) -> Vec<String> {
    let mut u = Unit::default();
    u.service(plan);
    u.missing
}

#[derive(Default)]
struct Unit {
    /// `[Service]`, comments and directives in order.
    service: String,
    /// What systemd cannot express, one item each.
    missing: Vec<String>,
    /// Directives written once for many decisions (PrivateDevices= for every /dev mount).
    once: Vec<&'static str>,
    /// The service runs as a user systemd allocates (DynamicUser=yes).
    dynamic_user: bool,
}

impl Unit {
    /// One directive with the comment citing its decision.
    fn set(&mut self, from: &Provenance, key: &str, value: impl AsRef<str>) {
        let _ = writeln!(self.service, "# {}", cite(from));
        let _ = writeln!(self.service, "{key}={}", value.as_ref());
    }

    /// A directive with a comment saying how it differs from what stockade does.
    fn set_why(&mut self, from: &Provenance, why: &str, key: &str, value: impl AsRef<str>) {
        let _ = writeln!(self.service, "# {} ({why})", cite(from));
        let _ = writeln!(self.service, "{key}={}", value.as_ref());
    }

    fn set_once(&mut self, from: &Provenance, key: &'static str, value: &str) {
        if !self.once.contains(&key) {
            self.once.push(key);
            self.set(from, key, value);
        }
    }

    fn missing(&mut self, from: &Provenance, what: impl AsRef<str>) {
        self.missing
            .push(format!("{} [{}]", what.as_ref(), cite(from)));
    }

    fn render(&self, plan: &LaunchPlan) -> String {
        let mut out = String::new();
        let name = &plan.name;
        let _ = writeln!(out, "# {name}.service: the sandbox of stockade profile `{name}`, in systemd's own directives.");
        let _ = writeln!(
            out,
            "# Made by `stockade export --format systemd` from the launch plan (defaults and"
        );
        let _ = writeln!(
            out,
            "# drop-ins included); the comment above each directive names the profile line or"
        );
        let _ = writeln!(
            out,
            "# default that decided it. Install it as /etc/systemd/system/{name}.service."
        );
        if self.missing.is_empty() {
            let _ = writeln!(
                out,
                "#\n# systemd expresses everything this profile asks for."
            );
        } else {
            let _ = writeln!(out, "#\n# What systemd cannot express for this profile (`stockade run` does it, this unit does not):");
            for m in &self.missing {
                let _ = writeln!(out, "#   - {m}");
            }
        }
        let description = match &plan.cgroup {
            CgroupPlan::Scope(s) => s.properties.iter().find_map(|(k, v)| match v {
                crate::plan::Prop::Str(d) if k == "Description" => Some(d.clone()),
                _ => None,
            }),
            _ => None,
        }
        .unwrap_or_else(|| format!("stockade profile {name}"));
        let _ = writeln!(out, "\n[Unit]\nDescription={}", spec(&description));
        let _ = writeln!(out, "\n[Service]\n{}", self.service.trim_end());
        let _ = writeln!(out, "\n[Install]\nWantedBy=multi-user.target");
        out
    }

    fn service(&mut self, plan: &LaunchPlan) {
        self.process(plan);
        self.identity(plan);
        self.namespaces(plan);
        self.filesystem(plan);
        self.kernel(plan);
        self.security(plan);
        self.limits(plan);
        self.landlock(plan);
    }

    fn process(&mut self, plan: &LaunchPlan) {
        match &plan.notify {
            Some(n) => self.set(&n.from, "Type", "notify"),
            None => self.set(&Provenance::default("systemd.notify"), "Type", "exec"),
        }
        let argv: Vec<String> = plan.argv.iter().map(|a| quote(a, true)).collect();
        self.set(&plan.argv.from, "ExecStart", argv.join(" "));
        self.set(&plan.workdir.from, "WorkingDirectory", spec(&plan.workdir));
        for e in &plan.env {
            let (k, v) = &e.value;
            // The service's notify socket is systemd's own here.
            if k == "NOTIFY_SOCKET" || k == "WATCHDOG_USEC" {
                continue;
            }
            self.set(&e.from, "Environment", quote(&format!("{k}={v}"), false));
        }
        self.set(
            &plan.finals.umask.from,
            "UMask",
            format!("{:04o}", plan.finals.umask.value),
        );
        self.set(
            &Provenance::default("the profile's name"),
            "SyslogIdentifier",
            spec(&plan.name),
        );
    }

    fn identity(&mut self, plan: &LaunchPlan) {
        let c = &plan.creds;
        let userns = plan.has(Namespace::User);
        let kept = |map: Option<&Decided<Vec<IdRange>>>, id: u32| {
            map.is_none_or(|m| outside(m, id) == Some(id))
        };
        let uid_kept = kept(plan.idmap.as_ref().map(|i| &i.uid_map), *c.uid);
        if userns && !uid_kept {
            // The service's uid is inside the profile's id range: on the host it is an
            // unprivileged id no other service has. DynamicUser= is systemd's way to that.
            let map = plan.idmap.as_ref().map(|i| &i.uid_map);
            let ranges = map.map_or(String::new(), |m| {
                m.iter()
                    .map(|r| format!("{} {} {}", r.inside, r.outside, r.count))
                    .collect::<Vec<_>>()
                    .join(", ")
            });
            self.dynamic_user = true;
            self.set_why(
                &c.uid.from,
                "the service's uid lies in the profile's id range, an unprivileged host id of its own: systemd's way to one is a dynamic user",
                "DynamicUser",
                "yes",
            );
            if let Some(m) = map {
                self.missing(&m.from, format!("the id map ({ranges}): systemd maps only root and the unit's own user (PrivateUsers=yes); the service runs as a dynamic user, not as uid {} of a private range", *c.uid));
            }
        } else {
            if *c.uid != 0 {
                self.set(&c.uid.from, "User", c.uid.to_string());
            } else {
                self.set_why(
                    &c.uid.from,
                    "uid 0 without an id range is the host's root, as with stockade",
                    "User",
                    "root",
                );
            }
            self.set(&c.gid.from, "Group", c.gid.to_string());
        }
        if !c.groups.is_empty() {
            let g: Vec<String> = c.groups.iter().map(u32::to_string).collect();
            self.set(&c.groups.from, "SupplementaryGroups", g.join(" "));
        }
    }

    fn namespaces(&mut self, plan: &LaunchPlan) {
        for n in &plan.namespaces {
            let on = n.enabled;
            let yes = if on { "yes" } else { "no" };
            match n.kind {
                Namespace::User => self.set(&n.from, "PrivateUsers", yes),
                Namespace::Net => {
                    self.set(&n.from, "PrivateNetwork", yes);
                    if let Some(net) = &plan.network {
                        let ports: Vec<String> =
                            net.publish.iter().map(|p| p.value.to_string()).collect();
                        self.missing(&net.network.from, format!("the bridge network `{}` (eth0 on {}, published ports [{}], outbound {}): PrivateNetwork= gives the service only lo; use systemd-networkd or a unit of the network's own for the bridge and NAT", net.network.value, net.def.bridge, ports.join(", "), net.outbound.value));
                    }
                }
                Namespace::Ipc => self.set(&n.from, "PrivateIPC", yes),
                Namespace::Mount => self.set(&n.from, "PrivateMounts", yes),
                Namespace::Uts if on => {
                    self.set_why(
                        &n.from,
                        "a UTS namespace in which the hostname cannot be changed",
                        "ProtectHostname",
                        "yes",
                    );
                    if let Some(h) = &plan.hostname {
                        self.missing(&h.from, format!("the hostname `{}`: systemd 252 cannot give a service a hostname of its own (ProtectHostname=yes keeps the host's)", h.value));
                    }
                }
                Namespace::Cgroup if on => {
                    self.set_why(
                        &n.from,
                        "no cgroup namespace in systemd: the cgroup tree is made read-only",
                        "ProtectControlGroups",
                        "yes",
                    );
                    self.missing(&n.from, "a cgroup namespace: the service sees the host's cgroup paths (read-only through ProtectControlGroups=yes)");
                }
                Namespace::Pid if on => {
                    self.set_why(&n.from, "no PID namespace in systemd 252: other users' processes are hidden in /proc", "ProtectProc", "invisible");
                    self.missing(&n.from, "a PID namespace: systemd 252 has none (PrivatePIDs= is systemd 257); ProtectProc=invisible hides other users' processes instead");
                }
                Namespace::Time if on => {
                    self.missing(&n.from, "a time namespace: systemd has none");
                }
                Namespace::Uts | Namespace::Cgroup | Namespace::Pid | Namespace::Time => {}
            }
        }
        if plan.finals.syscalls.filter.restrict_namespaces {
            self.set_why(
                &plan.finals.capabilities.from,
                "the service keeps no CAP_SYS_ADMIN, so it may not make or join namespaces",
                "RestrictNamespaces",
                "yes",
            );
        }
    }

    fn filesystem(&mut self, plan: &LaunchPlan) {
        let Some(fs) = &plan.fs else { return };
        match &fs.root {
            RootSource::Host(dir) => {
                if dir != "/" {
                    self.set(&fs.read_only.from, "RootDirectory", spec(dir));
                }
                if fs.read_only.value {
                    self.set(&fs.read_only.from, "ProtectSystem", "strict");
                }
            }
            RootSource::Empty => self.missing(&fs.read_only.from, "an empty root (a tmpfs holding only the mounts): systemd's RootDirectory= needs a directory on the host; the unit sees the host's root"),
        }
        let notify_socket = plan
            .notify
            .as_ref()
            .map(|n| n.host_socket.display().to_string());
        let mut hidden: Vec<(&Provenance, Vec<String>)> = Vec::new();
        for op in &fs.ops {
            let from = &op.from;
            let key = setting(from);
            let target = op.target();
            // A private /dev is systemd's own PrivateDevices=: its nodes, pts, shm and mqueue.
            if key == "filesystem.private_dev" && (target == "/dev" || target.starts_with("/dev/"))
            {
                self.set_once(from, "PrivateDevices", "yes");
                continue;
            }
            match &op.value {
                MountOp::Tmpfs { target, size, .. } if key == "filesystem.private_tmp" => {
                    self.set_once(from, "PrivateTmp", "yes");
                    let sz = size.map_or("no limit".into(), |b| Size::Bytes(b).to_string());
                    self.missing(&size.from, format!("{target} as a tmpfs of {sz}: PrivateTmp= gives a directory on the host's /var/tmp or /tmp, without that limit"));
                }
                MountOp::Tmpfs { target, size, mode, noexec, read_only, .. } => {
                    let mut opts = vec![format!("mode={mode:04o}")];
                    if let Some(b) = size.value {
                        opts.push(format!("size={b}"));
                    }
                    opts.push(if *noexec { "noexec" } else { "exec" }.into());
                    if *read_only {
                        opts.push("ro".into());
                    }
                    self.set(from, "TemporaryFileSystem", format!("{}:{}", spec(target), opts.join(",")));
                    if plan.notify.is_some() && target == "/run" {
                        // systemd's notify socket lives below /run.
                        self.set_why(from, "the notify socket systemd gives the service, below the new /run", "BindPaths", "/run/systemd/notify");
                    }
                }
                MountOp::Proc { .. } => {}
                // systemd's /sys shows the unit's own network namespace too (measured in the
                // systemd bed: a PrivateNetwork= unit lists only lo in /sys/class/net).
                MountOp::Sysfs { .. } => {}
                MountOp::Hide { target, .. } => match hidden.last_mut() {
                    Some((f, list)) if *f == from => list.push(format!("-{}", spec(target))),
                    _ => hidden.push((from, vec![format!("-{}", spec(target))])),
                },
                MountOp::Bind { source, .. } if Some(source) == notify_socket.as_ref() => {}
                MountOp::Bind { source, target, read_only, noexec, .. } => {
                    if let Some(v) = plan.volumes.iter().find(|v| v.host_path.display().to_string() == *source) {
                        let vname = v.host_path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
                        self.volume(from, &vname, source, target);
                    } else if source == target {
                        let key = if *read_only { "BindReadOnlyPaths" } else { "ReadWritePaths" };
                        self.set(from, key, spec(target));
                    } else {
                        let key = if *read_only { "BindReadOnlyPaths" } else { "BindPaths" };
                        self.set(from, key, format!("{}:{}", spec(source), spec(target)));
                    }
                    if *noexec {
                        self.set(from, "NoExecPaths", spec(target));
                    }
                }
                MountOp::ReadOnly { target } => self.set(from, "ReadOnlyPaths", spec(target)),
                MountOp::Symlink { target, text } => self.missing(from, format!("the symlink {target} -> {text}: systemd makes no files in the service's namespace")),
                MountOp::Devpts { target } | MountOp::Mqueue { target } => self.missing(from, format!("a private {} on {target}: systemd mounts these only with PrivateDevices= and PrivateIPC=", match op.value { MountOp::Devpts { .. } => "devpts", _ => "mqueue" })),
            }
        }
        for (from, list) in hidden {
            self.set(from, "InaccessiblePaths", list.join(" "));
        }
    }

    /// A named volume: systemd's directory for the place it is mounted, where there is one.
    fn volume(&mut self, from: &Provenance, name: &str, source: &str, target: &str) {
        let kinds = [
            ("/var/lib/", "StateDirectory"),
            ("/var/cache/", "CacheDirectory"),
            ("/var/log/", "LogsDirectory"),
            ("/run/", "RuntimeDirectory"),
        ];
        let own = kinds.iter().find_map(|(dir, key)| {
            target
                .strip_prefix(dir)
                .filter(|r| !r.is_empty())
                .map(|r| (*key, r))
        });
        match own {
            Some((key, rel)) => {
                self.set_why(
                    from,
                    &format!("volume `{name}`, owned by the service's user like stockade's"),
                    key,
                    spec(rel),
                );
                self.set(from, &format!("{key}Mode"), "0700");
                self.missing(from, format!("volume `{name}` at {source}: the unit keeps it in systemd's {key}={rel} instead (copy the data over to move)"));
            }
            None => {
                self.set_why(
                    from,
                    &format!("volume `{name}`"),
                    "StateDirectory",
                    spec(name),
                );
                self.set(from, "StateDirectoryMode", "0700");
                self.set(
                    from,
                    "BindPaths",
                    format!("/var/lib/{}:{}", spec(name), spec(target)),
                );
                self.missing(from, format!("volume `{name}` at {source}: the unit keeps it in systemd's StateDirectory={name} instead (copy the data over to move)"));
            }
        }
    }

    fn kernel(&mut self, plan: &LaunchPlan) {
        let pk = &plan.protect_kernel;
        if pk.value {
            self.set(&pk.from, "ProtectKernelTunables", "yes");
            self.set(&pk.from, "ProtectKernelModules", "yes");
            self.set(&pk.from, "ProtectKernelLogs", "yes");
        }
    }

    fn security(&mut self, plan: &LaunchPlan) {
        let f = &plan.finals;
        let caps: Vec<String> = f.capabilities.iter().map(|c| c.to_string()).collect();
        self.set(
            &f.capabilities.from,
            "CapabilityBoundingSet",
            caps.join(" "),
        );
        let root = *plan.creds.uid == 0 && !self.dynamic_user;
        if !caps.is_empty() && !root {
            self.set_why(
                &f.capabilities.from,
                "a service that is not root keeps them across exec",
                "AmbientCapabilities",
                caps.join(" "),
            );
        }
        self.set(
            &f.no_new_privs.from,
            "NoNewPrivileges",
            if f.no_new_privs.value { "yes" } else { "no" },
        );
        let s = &f.syscalls;
        self.set(
            &Provenance::default("seccomp: this architecture's calls only"),
            "SystemCallArchitectures",
            "native",
        );
        // Consecutive rules of one line and action make one directive.
        let mut groups: Vec<(&Provenance, SysAction, Vec<&str>)> = Vec::new();
        for r in &s.rules {
            if r.entry == "@default" {
                continue; // systemd's allow-lists always include it, as stockade's do
            }
            match groups.last_mut() {
                Some((from, action, list)) if *from == &r.from && *action == r.action => {
                    list.push(&r.entry)
                }
                _ => groups.push((&r.from, r.action, vec![&r.entry])),
            }
        }
        for (from, action, list) in groups {
            let list = list.join(" ");
            match action {
                SysAction::Allow => self.set(from, "SystemCallFilter", list),
                SysAction::Log => self.set_why(
                    from,
                    "run and logged, as with syscall_log",
                    "SystemCallLog",
                    list,
                ),
                SysAction::Errno(_) | SysAction::KillProcess => {
                    self.set(from, "SystemCallFilter", format!("~{list}"))
                }
            }
        }
        match s.action.value {
            SysAction::Errno(e) => self.set(
                &s.action.from,
                "SystemCallErrorNumber",
                format!("{:?}", nix::errno::Errno::from_raw(e)),
            ),
            SysAction::KillProcess => {
                let _ = writeln!(
                    self.service,
                    "# {} (a denied call kills the process: systemd's default)",
                    cite(&s.action.from)
                );
            }
            SysAction::Allow | SysAction::Log => {}
        }
        if s.rules
            .iter()
            .any(|r| r.entry == "@keyring" && r.action != SysAction::Allow)
        {
            let from = &s
                .rules
                .iter()
                .find(|r| r.entry == "@keyring")
                .expect("found")
                .from;
            self.set_why(
                from,
                "the kernel keyring is not namespaced",
                "KeyringMode",
                "private",
            );
        }
        if s.rules
            .iter()
            .any(|r| r.entry == "@clock" && r.action != SysAction::Allow)
        {
            let from = &s
                .rules
                .iter()
                .find(|r| r.entry == "@clock")
                .expect("found")
                .from;
            self.set(from, "ProtectClock", "yes");
        }
        self.set(
            &s.families.from,
            "RestrictAddressFamilies",
            s.families.join(" "),
        );
        let landlock_from = f.landlock.as_ref().and_then(|l| l.first()).map(|r| &r.from);
        if let Some(from) =
            landlock_from.filter(|_| s.filter.memfd_noexec_seal || plan.memfd_noexec)
        {
            self.missing(from, "executable memory files refused (vm.memfd_noexec or MFD_NOEXEC_SEAL): systemd's MemoryDenyWriteExecute= is a different, stricter wall, left out");
        }
    }

    fn limits(&mut self, plan: &LaunchPlan) {
        for r in &plan.finals.rlimits {
            let name = RLIMITS
                .iter()
                .find(|(_, res)| *res == r.resource)
                .map_or("", |(n, _)| n)
                .to_ascii_uppercase();
            let v = match r.limit {
                Limit::Value(n) => n.to_string(),
                Limit::Infinity => "infinity".into(),
            };
            self.set(&r.from, &format!("Limit{name}"), v);
        }
        for r in &plan.resources {
            let key = match r.key.trim_start_matches("resources.") {
                "memory_max" => "MemoryMax",
                "memory_high" => "MemoryHigh",
                "memory_swap_max" => "MemorySwapMax",
                "cpu_quota" => "CPUQuota",
                "cpu_weight" => "CPUWeight",
                "tasks_max" => "TasksMax",
                "io_weight" => "IOWeight",
                "allowed_cpus" => "AllowedCPUs",
                other => {
                    self.missing(&r.from, format!("resources.{other}"));
                    continue;
                }
            };
            // Numbers, sizes and percentages: these settings expand no specifiers.
            self.set(&r.from, key, &r.value.value);
        }
        if let CgroupPlan::Scope(s) = &plan.cgroup {
            self.set(&plan.systemd_mode.from, "Slice", spec(&s.slice));
        }
    }

    fn landlock(&mut self, plan: &LaunchPlan) {
        let Some(rules) = &plan.finals.landlock else {
            return;
        };
        for access in [Access::Read, Access::Write, Access::Exec] {
            let of: Vec<&Decided<_>> = rules.iter().filter(|r| r.access == access).collect();
            if let Some(first) = of.first() {
                let paths: Vec<&str> = of.iter().map(|r| r.path.as_str()).collect();
                let verb = match access {
                    Access::Read => "read",
                    Access::Write => "write",
                    Access::Exec => "execute",
                };
                self.missing(&first.from, format!("landlock: {verb} only below {}: systemd has no landlock (ProtectSystem= and InaccessiblePaths= are its nearest walls)", paths.join(" ")));
            }
        }
    }
}

/// Where `id` inside lands on the host.
fn outside(map: &[IdRange], id: u32) -> Option<u32> {
    map.iter().find_map(|r| {
        (id >= r.inside && u64::from(id) < u64::from(r.inside) + u64::from(r.count))
            .then(|| r.outside + (id - r.inside))
    })
}

/// `%` starts a specifier in every unit setting.
fn spec(s: &str) -> String {
    s.replace('%', "%%")
}

/// One word in double quotes with C escapes, as ExecStart= and Environment= unquote them;
/// in a command line `$` starts a variable too.
fn quote(s: &str, command: bool) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '%' => out.push_str("%%"),
            '$' if command => out.push_str("$$"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests;
