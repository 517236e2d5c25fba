//! Host-independent checks of a merged profile: required keys, absolute paths, mount keys
//! per type, idmap ranges, names of capabilities and limits. Everything here can be decided
//! from the profile alone; checks that need the host (users, bind sources) live in the plan.

use super::problem::{closest, At, Problem};
use super::schema::Profile;
use super::source::{FileId, Src};
use super::syscalls;
use super::values::{IdRange, Limit, MountType, Size};
use nix::sys::resource::Resource;
use std::collections::BTreeSet;
use std::path::Path;

/// Resource limit names, as in `prlimit(1)` and systemd's `Limit*=` without the prefix, with
/// the resource each one sets: the one list validation, the plan and the sandbox use.
pub const RLIMITS: [(&str, Resource); 16] = [
    ("as", Resource::RLIMIT_AS),
    ("core", Resource::RLIMIT_CORE),
    ("cpu", Resource::RLIMIT_CPU),
    ("data", Resource::RLIMIT_DATA),
    ("fsize", Resource::RLIMIT_FSIZE),
    ("locks", Resource::RLIMIT_LOCKS),
    ("memlock", Resource::RLIMIT_MEMLOCK),
    ("msgqueue", Resource::RLIMIT_MSGQUEUE),
    ("nice", Resource::RLIMIT_NICE),
    ("nofile", Resource::RLIMIT_NOFILE),
    ("nproc", Resource::RLIMIT_NPROC),
    ("rss", Resource::RLIMIT_RSS),
    ("rtprio", Resource::RLIMIT_RTPRIO),
    ("rttime", Resource::RLIMIT_RTTIME),
    ("sigpending", Resource::RLIMIT_SIGPENDING),
    ("stack", Resource::RLIMIT_STACK),
];

/// The resource a profile's rlimit name sets.
pub fn rlimit(name: &str) -> Option<Resource> {
    RLIMITS.iter().find(|(n, _)| *n == name).map(|(_, r)| *r)
}

/// The capability a profile name means: `net_bind_service`, `CAP_NET_BIND_SERVICE`, ... .
pub fn capability(name: &str) -> Option<caps::Capability> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    full.parse().ok()
}

/// An absolute path with `.` and `..` resolved lexically; `..` may not climb above `/`,
/// because inside the sandbox that would leave the sandbox root.
/// A volume's name: one path component of its own under the volume directory, checked the
/// same way in profiles and by `stockade volume`.
pub fn volume_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(format!("`{name}` is not a valid volume name (letters, digits, `-`, `_`, `.`; starting with a letter or digit; at most 64)"))
    }
}

pub fn normalize_abs(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!("`{path}` is not an absolute path"));
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!("`{path}` resolves outside the sandbox root"));
                }
            }
            c => parts.push(c),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

pub fn validate(p: &Profile, _main: FileId, path: &Path) -> Vec<Problem> {
    let mut v = Validator {
        out: Vec::new(),
        path,
    };
    v.exec(p);
    v.namespaces(p);
    v.network(p);
    v.filesystem(p);
    v.mounts(p);
    v.security(p);
    v.resources(p);
    v.out
}

/// Parses a CPU list such as "0-3,6" into CPU numbers.
pub fn cpu_list(text: &str) -> Result<Vec<u32>, String> {
    let bad =
        || format!("invalid CPU list `{text}`: expected numbers and ranges such as \"0-3,6\"");
    let mut cpus = Vec::new();
    for part in text.split(',').map(str::trim) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let (a, b): (u32, u32) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
        if a > b || b >= 8192 {
            return Err(bad());
        }
        cpus.extend(a..=b);
    }
    Ok(cpus)
}

/// The kernel's limit on a hostname's length (HOST_NAME_MAX).
pub const HOSTNAME_MAX: usize = 64;

/// Why `name` is not a hostname (RFC 1123 labels: letters, digits and `-`, separated by
/// single dots, no label starting or ending with `-`), or None when it is one.
pub fn hostname_problem(name: &str) -> Option<String> {
    let fix = "use letters, digits, `-` and `.`";
    if name.is_empty() {
        return Some("it is empty; leave network.hostname out for the profile's name".into());
    }
    if name.len() > HOSTNAME_MAX {
        return Some(format!(
            "it has {} characters, more than the kernel's {HOSTNAME_MAX}; shorten it",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && *c != '-' && *c != '.')
    {
        return Some(format!("`{c}` is not allowed; {fix}"));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Some("it has an empty label (a leading, trailing or doubled `.`); write labels separated by single dots".into());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some(format!(
                "the label `{label}` starts or ends with `-`; put `-` only between letters or digits"
            ));
        }
    }
    None
}

/// Characters systemd accepts in a unit name.
pub fn valid_unit_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":-_.\\@".contains(c))
}

struct Validator<'a> {
    out: Vec<Problem>,
    path: &'a Path,
}

impl Validator<'_> {
    fn err<T>(&mut self, v: &Src<T>, key: &str, msg: impl Into<String>) {
        self.out.push(Problem::at(v.origin, key, msg));
    }

    fn missing(&mut self, key: &str, msg: &str) {
        self.out.push(Problem::new(
            At::File(self.path.to_owned()),
            Some(key.to_owned()),
            msg,
        ));
    }

    fn abs_path(&mut self, v: &Src<String>, key: &str, what: &str) {
        if !v.value.starts_with('/') {
            self.err(
                v,
                key,
                format!("{what} must be an absolute path, not `{}`", v.value),
            );
        }
    }

    fn exec(&mut self, p: &Profile) {
        let e = &p.exec;
        match &e.command {
            None => self.missing(
                "exec.command",
                "missing: every profile needs `command = [\"/absolute/path\", ...]` in [exec]",
            ),
            Some(c) if c.value.is_empty() => {
                self.err(c, "exec.command", "must name a program: the list is empty")
            }
            Some(c) if !c.value[0].starts_with('/') => self.err(
                c,
                "exec.command",
                format!(
                    "the program must be an absolute path, not `{}` (there is no PATH lookup)",
                    c.value[0]
                ),
            ),
            Some(c) if c.value.iter().any(|a| a.contains('\0')) => {
                self.err(c, "exec.command", "arguments cannot contain NUL bytes")
            }
            Some(_) => {}
        }
        if let Some(w) = &e.workdir {
            self.abs_path(w, "exec.workdir", "the working directory");
        }
        for (k, val) in &e.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || val.value.contains('\0') {
                self.err(
                    val,
                    &format!("exec.env.{k}"),
                    "not a valid environment variable",
                );
            }
        }
        if let Some(u) = &e.umask {
            if u.value.0 > 0o777 {
                self.err(u, "exec.umask", "a umask has at most three octal digits");
            }
        }
        for (name, val) in &e.rlimits {
            if rlimit(name).is_none() {
                self.out.push(
                    Problem::at(
                        val.origin,
                        &format!("exec.rlimits.{name}"),
                        "unknown resource limit",
                    )
                    .suggest(closest(name, RLIMITS.iter().map(|(n, _)| *n))),
                );
            } else if name == "nofile" && val.value == Limit::Infinity {
                self.err(val, "exec.rlimits.nofile", "cannot be infinity: the kernel caps open files at fs.nr_open (see /proc/sys/fs/nr_open); give a number");
            }
        }
    }

    fn namespaces(&mut self, p: &Profile) {
        let ns = &p.namespaces;
        if !ns.is("user") {
            for (key, map) in [("idmap.uid", &p.idmap.uid), ("idmap.gid", &p.idmap.gid)] {
                if let Some(m) = map {
                    self.err(m, key, "an idmap needs a user namespace: set `user = true` in [namespaces] or remove [idmap]");
                }
            }
        }
        for (key, map) in [("idmap.uid", &p.idmap.uid), ("idmap.gid", &p.idmap.gid)] {
            if let Some(m) = map {
                if let Some(msg) = idmap_problem(&m.value) {
                    self.err(m, key, msg);
                }
            }
        }
        if let Some(h) = &p.network.hostname {
            if !ns.is("uts") {
                self.err(
                    h,
                    "network.hostname",
                    "setting a hostname needs `uts = true` in [namespaces]",
                );
            }
            if let Some(why) = hostname_problem(&h.value) {
                self.err(
                    h,
                    "network.hostname",
                    format!("`{}` is not a valid hostname: {why}", h.value),
                );
            }
        }
        let needs_mount_ns = p.filesystem.root.is_some()
            || !p.mount.is_empty()
            || p.filesystem.hide.is_some()
            || [
                &p.filesystem.read_only,
                &p.filesystem.private_tmp,
                &p.filesystem.private_dev,
                &p.filesystem.private_run,
                &p.filesystem.proc,
            ]
            .iter()
            .any(|v| v.as_ref().is_some_and(|s| s.value));
        if !ns.is("mount") && needs_mount_ns {
            if let Some(m) = &ns.mount {
                self.err(m, "namespaces.mount", "[filesystem] and [[mount]] settings need a mount namespace; set filesystem.read_only, private_tmp, private_dev, private_run and proc to false and remove mounts, or keep `mount = true`");
            }
        }
        if let Some(t) = &ns.time {
            if t.value && !ns.is("pid") {
                self.err(t, "namespaces.time", "a time namespace needs `pid = true`");
            }
        }
    }

    /// `[network]`: the mode agrees with `namespaces.net`, and the bridge keys are well formed
    /// and only used in bridge mode.
    fn network(&mut self, p: &Profile) {
        use super::networks::{name_problem, parse_publish};
        use super::values::NetMode;
        let n = &p.network;
        if let (Some(m), Some(net)) = (&n.mode, &p.namespaces.net) {
            let agree = (m.value == NetMode::Host) != net.value;
            if !agree {
                let want = if m.value == NetMode::Host {
                    "false"
                } else {
                    "true"
                };
                self.err(m, "network.mode", format!("contradicts `namespaces.net = {}`: mode = \"host\" means the host's network namespace (net = false), \"none\" and \"bridge\" a namespace of its own (net = true); set net = {want} or remove it", net.value));
            }
        }
        let bridge = n.mode.as_ref().is_some_and(|m| m.value == NetMode::Bridge);
        let bridge_keys: [(&str, Option<super::source::Origin>); 6] = [
            ("network.network", n.network.as_ref().map(|v| v.origin)),
            ("network.address", n.address.as_ref().map(|v| v.origin)),
            ("network.address6", n.address6.as_ref().map(|v| v.origin)),
            ("network.publish", n.publish.as_ref().map(|v| v.origin)),
            ("network.outbound", n.outbound.as_ref().map(|v| v.origin)),
            ("network.dns", n.dns.as_ref().map(|v| v.origin)),
        ];
        if !bridge {
            for (key, origin) in bridge_keys {
                if let Some(o) = origin {
                    self.out.push(Problem::at(
                        o,
                        key,
                        "only applies with `mode = \"bridge\"` in [network]",
                    ));
                }
            }
        }
        if let Some(net) = &n.network {
            if let Some(why) = name_problem(&net.value) {
                self.err(net, "network.network", why);
            }
        }
        if let Some(a) = &n.address {
            if a.value.parse::<std::net::Ipv4Addr>().is_err() {
                self.err(
                    a,
                    "network.address",
                    format!("`{}` is not an IPv4 address", a.value),
                );
            }
        }
        if let Some(a) = &n.address6 {
            if a.value.parse::<std::net::Ipv6Addr>().is_err() {
                self.err(
                    a,
                    "network.address6",
                    format!("`{}` is not an IPv6 address", a.value),
                );
            }
        }
        if let Some(list) = &n.publish {
            let mut seen: Vec<super::networks::Publish> = Vec::new();
            for spec in &list.value {
                match parse_publish(spec) {
                    Err(e) => self.err(list, "network.publish", e),
                    Ok(p) if seen.iter().any(|s| s.collides(&p)) => self.err(
                        list,
                        "network.publish",
                        format!(
                            "`{spec}`: host port {}/{} is published twice on the same host address",
                            p.host_port, p.proto
                        ),
                    ),
                    Ok(p) => seen.push(p),
                }
            }
        }
        if let Some(d) = &n.dns {
            for s in &d.value {
                if s.parse::<std::net::IpAddr>().is_err() {
                    self.err(d, "network.dns", format!("`{s}` is not an IP address"));
                }
            }
        }
    }

    /// A tmpfs is memory: the kernel reads size 0 as "unlimited", and so would "infinity".
    fn tmpfs_size(&mut self, size: &Src<Size>, key: &str) {
        match size.value {
            Size::Bytes(0) => self.err(size, key, "a tmpfs of size 0 is unlimited to the kernel (half of RAM); give a size such as \"64M\""),
            Size::Infinity => self.err(size, key, "a tmpfs is held in memory and must be bounded; give a size such as \"64M\""),
            Size::Bytes(_) => {}
        }
    }

    fn filesystem(&mut self, p: &Profile) {
        let fs = &p.filesystem;
        for (key, size) in [
            ("filesystem.tmp_size", &fs.tmp_size),
            ("filesystem.run_size", &fs.run_size),
            ("filesystem.shm_size", &fs.shm_size),
        ] {
            if let Some(size) = size {
                self.tmpfs_size(size, key);
            }
        }
        if let Some(root) = &fs.root {
            if root.value != "empty" && !root.value.starts_with('/') {
                self.err(
                    root,
                    "filesystem.root",
                    format!(
                        "expected \"/\", \"empty\" or an absolute directory, not `{}`",
                        root.value
                    ),
                );
            }
        }
        if let Some(hide) = &fs.hide {
            for h in &hide.value {
                match normalize_abs(h) {
                    Ok(n) if n == "/" => self.err(hide, "filesystem.hide", "cannot hide `/`"),
                    Ok(_) => {}
                    Err(msg) => self.err(hide, "filesystem.hide", msg),
                }
            }
        }
    }

    fn mounts(&mut self, p: &Profile) {
        let mut targets: Vec<String> = Vec::new();
        for (i, m) in p.mount.iter().enumerate() {
            let prefix = format!("mount[{}]", i + 1);
            let key = |k: &str| format!("{prefix}.{k}");
            let Some(kind) = &m.kind else {
                self.out.push(Problem::at(
                    m.origin,
                    &key("type"),
                    "missing: one of bind, volume, tmpfs, symlink",
                ));
                continue;
            };
            let kind = kind.value;
            // Which keys each type needs and accepts.
            let (required, allowed): (&[&str], &[&str]) = match kind {
                MountType::Bind => (&["source", "target"], &["read_only", "optional"]),
                MountType::Volume => (&["name", "target"], &["read_only"]),
                MountType::Tmpfs => (&["target"], &["size", "mode"]),
                MountType::Symlink => (&["source", "target"], &[]),
            };
            let set: [(&str, Option<crate::profile::Origin>); 7] = [
                ("source", m.source.as_ref().map(|v| v.origin)),
                ("target", m.target.as_ref().map(|v| v.origin)),
                ("read_only", m.read_only.as_ref().map(|v| v.origin)),
                ("optional", m.optional.as_ref().map(|v| v.origin)),
                ("name", m.name.as_ref().map(|v| v.origin)),
                ("size", m.size.as_ref().map(|v| v.origin)),
                ("mode", m.mode.as_ref().map(|v| v.origin)),
            ];
            for (name, origin) in set {
                match origin {
                    None if required.contains(&name) => self.out.push(Problem::at(
                        m.origin,
                        &key(name),
                        format!("missing: a {kind} mount needs `{name}`"),
                    )),
                    Some(o) if !required.contains(&name) && !allowed.contains(&name) => {
                        self.out.push(Problem::at(
                            o,
                            &key(name),
                            format!("does not apply to a {kind} mount"),
                        ))
                    }
                    _ => {}
                }
            }
            if let Some(t) = &m.target {
                match normalize_abs(&t.value) {
                    Ok(n) if n == "/" => self.err(
                        t,
                        &key("target"),
                        "cannot mount over `/`; use filesystem.root",
                    ),
                    Ok(n) => {
                        if targets.contains(&n) {
                            self.err(
                                t,
                                &key("target"),
                                format!("`{n}` is already the target of an earlier mount"),
                            );
                        } else {
                            targets.push(n);
                        }
                    }
                    Err(msg) => self.err(t, &key("target"), msg),
                }
            }
            match kind {
                MountType::Bind => {
                    if let Some(s) = &m.source {
                        self.abs_path(s, &key("source"), "a bind source");
                    }
                }
                MountType::Symlink => {
                    if let Some(s) = &m.source {
                        if s.value.is_empty() || s.value.contains('\0') {
                            self.err(s, &key("source"), "the link text cannot be empty");
                        }
                    }
                }
                MountType::Volume => {
                    if let Some(n) = &m.name {
                        if let Err(msg) = volume_name(&n.value) {
                            self.err(n, &key("name"), msg);
                        }
                    }
                }
                MountType::Tmpfs => {
                    if let Some(size) = &m.size {
                        self.tmpfs_size(size, &key("size"));
                    }
                    if let Some(mode) = &m.mode {
                        if mode.value.0 > 0o7777 {
                            self.err(mode, &key("mode"), "not a valid mode");
                        }
                    }
                }
            }
        }
    }

    fn security(&mut self, p: &Profile) {
        let s = &p.security;
        if let Some(c) = &s.capabilities {
            for name in &c.value {
                if capability(name).is_none() {
                    let all: Vec<String> = caps::all()
                        .iter()
                        .map(|c| c.to_string().trim_start_matches("CAP_").to_lowercase())
                        .collect();
                    let bare = name.to_lowercase();
                    let bare = bare.trim_start_matches("cap_");
                    let sugg = closest(bare, all.iter().map(String::as_str));
                    self.out.push(
                        Problem::at(
                            c.origin,
                            "security.capabilities",
                            format!("unknown capability `{name}`"),
                        )
                        .suggest(sugg),
                    );
                }
            }
        }
        self.syscalls(p);
        if let Some(f) = &s.address_families {
            for name in &f.value {
                if super::families::family(name).is_none() {
                    let names = super::families::FAMILIES.iter().map(|(n, _)| *n);
                    let sugg = closest(&name.to_ascii_uppercase(), names);
                    self.out.push(
                        Problem::at(
                            f.origin,
                            "security.address_families",
                            format!("unknown address family `{name}`"),
                        )
                        .suggest(sugg),
                    );
                }
            }
        }
        if let Some(l) = &s.landlock {
            for (key, list) in [
                ("security.landlock.read", &l.read),
                ("security.landlock.write", &l.write),
                ("security.landlock.exec", &l.exec),
            ] {
                if let Some(list) = list {
                    for path in &list.value {
                        if let Err(msg) = normalize_abs(path) {
                            self.err(list, key, msg);
                        }
                    }
                }
            }
            if let Some(cmd) = p.exec.command.as_ref().and_then(|c| c.value.first()) {
                let exec_paths = l.exec.as_ref().map(|e| e.value.clone()).unwrap_or_default();
                let covered = exec_paths
                    .iter()
                    .filter_map(|e| normalize_abs(e).ok())
                    .any(|e| Path::new(cmd).starts_with(&e));
                if !covered && cmd.starts_with('/') {
                    let origin = l.exec.as_ref().map(|e| e.origin);
                    let problem = format!("landlock would forbid executing the service itself: `{cmd}` is not under any `exec` path");
                    match origin {
                        Some(o) => self
                            .out
                            .push(Problem::at(o, "security.landlock.exec", problem)),
                        None => self.missing("security.landlock.exec", &problem),
                    }
                }
            }
        }
    }
}

impl Validator<'_> {
    fn syscalls(&mut self, p: &Profile) {
        let s = &p.security;
        for (key, list) in [
            ("security.syscall_filter", &s.syscall_filter),
            ("security.syscall_deny", &s.syscall_deny),
        ] {
            let Some(list) = list else { continue };
            for entry in &list.value {
                if let Some(rest) = entry.strip_prefix('~') {
                    self.err(list, key, format!("`{entry}`: stockade has no `~` deny syntax; put `{rest}` in security.syscall_deny"));
                } else if !syscalls::expand(entry, &mut BTreeSet::new()) {
                    let what = if entry.starts_with('@') {
                        "syscall group"
                    } else {
                        "system call"
                    };
                    let sugg = closest(entry, syscalls::all_names());
                    self.out.push(
                        Problem::at(list.origin, key, format!("unknown {what} `{entry}`"))
                            .suggest(sugg),
                    );
                }
            }
        }
        if let Some(f) = &s.syscall_filter {
            if f.value.is_empty() {
                self.err(f, "security.syscall_filter", "an empty allow-list would deny every system call; leave the key out for stockade's baseline, or list what the service needs (\"@system-service\")");
            }
        }
        if let Some(e) = &s.syscall_errno {
            if e.value != "kill" && syscalls::errno(&e.value).is_none() {
                let names = syscalls::errno_names();
                let sugg = closest(&e.value, names.iter().map(String::as_str).chain(["kill"]));
                self.out.push(
                    Problem::at(
                        e.origin,
                        "security.syscall_errno",
                        format!(
                            "`{}` is neither an errno name (EPERM, ENOSYS, ...) nor \"kill\"",
                            e.value
                        ),
                    )
                    .suggest(sugg),
                );
            }
        }
    }

    fn resources(&mut self, p: &Profile) {
        let r = &p.resources;
        for (key, v) in [
            ("resources.cpu_weight", &r.cpu_weight),
            ("resources.io_weight", &r.io_weight),
        ] {
            if let Some(v) = v {
                if !(1..=10000).contains(&v.value) {
                    self.err(
                        v,
                        key,
                        format!("{} is out of range: weights go from 1 to 10000", v.value),
                    );
                }
            }
        }
        if let Some(t) = &r.tasks_max {
            if t.value == super::values::Limit::Value(0) {
                self.err(
                    t,
                    "resources.tasks_max",
                    "0 tasks would forbid the service itself; use at least 1",
                );
            }
        }
        if let Some(c) = &r.allowed_cpus {
            if let Err(msg) = cpu_list(&c.value) {
                self.err(c, "resources.allowed_cpus", msg);
            }
        }
        let sd = &p.systemd;
        if let Some(slice) = &sd.slice {
            if !slice.value.ends_with(".slice") || !valid_unit_name(&slice.value) {
                self.err(
                    slice,
                    "systemd.slice",
                    format!(
                        "`{}` is not a slice name (letters, digits, `:-_.@`, ending in `.slice`)",
                        slice.value
                    ),
                );
            }
        }
        if let Some(u) = &sd.unit_name {
            let probe = u.value.replace("{profile}", "p").replace("{id}", "1");
            if !u.value.contains("{id}") {
                self.err(
                    u,
                    "systemd.unit_name",
                    "must contain `{id}`: a scope name has to be unique per run",
                );
            } else if !probe.ends_with(".scope") || !valid_unit_name(&probe) {
                self.err(
                    u,
                    "systemd.unit_name",
                    format!(
                        "`{}` is not a scope name (letters, digits, `:-_.@`, ending in `.scope`)",
                        u.value
                    ),
                );
            }
        }
        if let Some(m) = &sd.mode {
            if m.value == super::values::CgroupMode::Off {
                let set = super::Section::set_leaves(r);
                if !set.is_empty() {
                    self.err(m, "systemd.mode", format!("`off` does no cgroup handling, so [resources] cannot be enforced (set: {})", set.join(", ")));
                }
            }
        }
    }
}

/// Overlapping or empty ranges make the kernel refuse the whole map; say which ones.
fn idmap_problem(ranges: &[IdRange]) -> Option<String> {
    if ranges.is_empty() {
        return Some("an empty map maps nobody; remove it to get the default".into());
    }
    for r in ranges {
        if r.count == 0 {
            return Some(format!(
                "range inside={} outside={} has count 0",
                r.inside, r.outside
            ));
        }
        for (start, what) in [(r.inside, "inside"), (r.outside, "outside")] {
            if u64::from(start) + u64::from(r.count) > u64::from(u32::MAX) {
                return Some(format!(
                    "range {what}={start} count={} goes past the largest id",
                    r.count
                ));
            }
        }
    }
    for (i, a) in ranges.iter().enumerate() {
        for b in &ranges[i + 1..] {
            let overlap = |x: u32, y: u32| {
                u64::from(x) < u64::from(y) + u64::from(b.count)
                    && u64::from(y) < u64::from(x) + u64::from(a.count)
            };
            for (side, x, y) in [
                ("inside the sandbox", a.inside, b.inside),
                ("on the host", a.outside, b.outside),
            ] {
                if overlap(x, y) {
                    let end = |start: u32, count: u32| u64::from(start) + u64::from(count);
                    return Some(format!(
                        "ranges overlap {side}: {x}..{} and {y}..{}",
                        end(x, a.count),
                        end(y, b.count)
                    ));
                }
            }
        }
    }
    None
}
