//! The profile schema: one Rust struct per TOML table, each field documented.
//!
//! The `section!` macro generates, from one field list, the serde struct, the list of valid
//! keys (used to report unknown keys and to check the man page), the merge rule and the `show`
//! rendering, so adding a key is a one-line change that cannot drift between those four.
//! Merge rules: a later file replaces a value, maps (`env`, `rlimits`) merge per key, nested
//! tables merge per key, `[[mount]]` entries append. Every value keeps its [`Origin`].

use super::source::{SourceMap, Src};
use super::values::{CgroupMode, IdRange, IdRef, Limit, Mode, MountType, NetMode, Percent, Size};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;

/// A key of the schema, for the unknown-key check and documentation tests.
#[derive(Debug)]
pub struct Key {
    pub name: &'static str,
    pub kind: KeyKind,
}

#[derive(Debug)]
pub enum KeyKind {
    /// A value.
    Leaf,
    /// A table whose keys are free (`env`, `rlimits`).
    Map,
    /// A table with known keys.
    Table(&'static [Key]),
    /// An array of tables with known keys (`[[mount]]`).
    List(&'static [Key]),
}

/// Renders a resolved profile as TOML, each value annotated with the file it came from.
pub struct Render<'a> {
    pub map: &'a SourceMap,
    pub out: String,
}

impl Render<'_> {
    fn leaf<T: Serialize>(&mut self, key: &str, v: &Src<T>) {
        let text = toml::Value::try_from(&v.value)
            .map(|v| v.to_string())
            .unwrap_or_else(|e| format!("\"<unprintable: {e}>\""));
        let loc = self.map.locate(v.origin);
        let _ = writeln!(
            self.out,
            "{key} = {text}  # {}:{}",
            loc.path.display(),
            loc.line
        );
    }
}

/// Behaviour shared by every table of the schema.
pub trait Section: Default {
    const KEYS: &'static [Key];
    fn merge(&mut self, later: Self);
    fn render(&self, prefix: &str, r: &mut Render);
    /// The names of the leaf keys this section sets, in schema order: lists of keys (which
    /// limits are set, say) come from the schema itself instead of a copy of it.
    fn set_leaves(&self) -> Vec<&'static str>;
}

fn bare_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_owned()
    } else {
        format!("{k:?}")
    }
}

macro_rules! section {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* $kind:ident $field:ident $(as $rename:literal)? : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(default)]
        pub struct $name {
            $( $(#[$fmeta])* $(#[serde(rename = $rename)])? pub $field: section!(@ty $kind $ty), )*
        }

        impl Section for $name {
            const KEYS: &'static [Key] = &[
                $( Key { name: section!(@name $field $($rename)?), kind: section!(@kind $kind $ty) }, )*
            ];

            fn merge(&mut self, later: Self) {
                $( section!(@merge $kind self.$field, later.$field); )*
            }

            fn render(&self, prefix: &str, r: &mut Render) {
                $( section!(@render $kind r, prefix, section!(@name $field $($rename)?), &self.$field); )*
            }

            fn set_leaves(&self) -> Vec<&'static str> {
                let mut set = Vec::new();
                $( if section!(@set $kind &self.$field) { set.push(section!(@name $field $($rename)?)); } )*
                set
            }
        }
    };
    (@name $f:ident) => { stringify!($f) };
    (@name $f:ident $r:literal) => { $r };
    (@ty leaf $t:ty) => { Option<Src<$t>> };
    (@ty map $t:ty) => { BTreeMap<String, Src<$t>> };
    (@ty table $t:ty) => { Option<$t> };
    (@ty section $t:ty) => { $t };
    (@ty list $t:ty) => { Vec<Src<$t>> };
    (@kind leaf $t:ty) => { KeyKind::Leaf };
    (@kind map $t:ty) => { KeyKind::Map };
    (@kind table $t:ty) => { KeyKind::Table(<$t as Section>::KEYS) };
    (@kind section $t:ty) => { KeyKind::Table(<$t as Section>::KEYS) };
    (@kind list $t:ty) => { KeyKind::List(<$t as Section>::KEYS) };
    (@set leaf $v:expr) => { $v.is_some() };
    (@set $other:ident $v:expr) => { false };
    (@merge leaf $a:expr, $b:expr) => { if $b.is_some() { $a = $b; } };
    (@merge map $a:expr, $b:expr) => { $a.extend($b) };
    (@merge list $a:expr, $b:expr) => { $a.extend($b) };
    (@merge section $a:expr, $b:expr) => { $a.merge($b) };
    (@merge table $a:expr, $b:expr) => {
        match (&mut $a, $b) {
            (Some(a), Some(b)) => a.merge(b),
            (a @ None, b) => *a = b,
            (Some(_), None) => {}
        }
    };
    (@render leaf $r:expr, $p:expr, $n:expr, $v:expr) => {
        if let Some(v) = $v { $r.leaf(&format!("{}{}", $p, $n), v) }
    };
    (@render map $r:expr, $p:expr, $n:expr, $v:expr) => {
        for (k, v) in $v { $r.leaf(&format!("{}{}.{}", $p, $n, bare_key(k)), v) }
    };
    (@render table $r:expr, $p:expr, $n:expr, $v:expr) => {
        if let Some(v) = $v { v.render(&format!("{}{}.", $p, $n), $r) }
    };
    (@render section $r:expr, $p:expr, $n:expr, $v:expr) => {{
        let mut sub = Render { map: $r.map, out: String::new() };
        $v.render("", &mut sub);
        if !sub.out.is_empty() {
            let _ = write!($r.out, "\n[{}{}]\n{}", $p, $n, sub.out);
        }
    }};
    (@render list $r:expr, $p:expr, $n:expr, $v:expr) => {
        for entry in $v {
            let _ = writeln!($r.out, "\n[[{}{}]]", $p, $n);
            entry.value.render("", $r);
        }
    };
}

section! {
    /// A whole profile, as one file holds it or as merged from several.
    pub struct Profile {
        /// One line saying what the service is; used in logs and the systemd scope.
        leaf description: String,
        /// Profiles merged before this one, by name or by path relative to this file.
        leaf include: Vec<Src<String>>,
        /// What to run and with which credentials.
        section exec: Exec,
        /// Which namespaces the sandbox gets.
        section namespaces: Namespaces,
        /// UID/GID maps of the user namespace.
        section idmap: Idmap,
        /// The sandbox's view of the filesystem.
        section filesystem: Filesystem,
        /// Extra mounts, applied parents first.
        list mount: Mount,
        /// Hostname and network.
        section network: Network,
        /// Capabilities, no_new_privs and landlock.
        section security: Security,
        /// cgroup v2 limits, named after systemd's resource-control properties.
        section resources: Resources,
        /// How the sandbox is placed in systemd's cgroup tree.
        section systemd: Systemd,
        /// Where the service's output goes.
        section logging: Logging,
    }
}

section! {
    /// `[resources]`: limits enforced by cgroup v2, as systemd's properties of the same name.
    pub struct Resources {
        /// MemoryMax=: hard memory limit; the OOM killer acts beyond it.
        leaf memory_max: Size,
        /// MemoryHigh=: throttling threshold, reclaimed aggressively above it.
        leaf memory_high: Size,
        /// MemorySwapMax=: swap limit ("0" for none).
        leaf memory_swap_max: Size,
        /// CPUQuota=: CPU time per wall-clock time, "50%" is half a core, "200%" two cores.
        leaf cpu_quota: Percent,
        /// CPUWeight=: relative CPU share, 1..10000 (systemd's default 100).
        leaf cpu_weight: u64,
        /// TasksMax=: maximum number of processes and threads, or "infinity".
        leaf tasks_max: Limit,
        /// IOWeight=: relative block I/O share, 1..10000.
        leaf io_weight: u64,
        /// AllowedCPUs=: CPUs the service may run on, such as "0-1" or "0,2".
        leaf allowed_cpus: String,
    }
}

section! {
    /// `[systemd]`: scope registration.
    pub struct Systemd {
        /// auto, scope, delegate or off (default auto).
        leaf mode: CgroupMode,
        /// Slice the scope goes into (default "stockade.slice").
        leaf slice: String,
        /// Scope name; `{profile}` and `{id}` are replaced (default "stockade-{profile}-{id}.scope").
        leaf unit_name: String,
        /// The service speaks sd_notify itself: relay its READY=1 (default false: under a
        /// Type=notify unit, stockade reports ready once the service has started).
        leaf notify: bool,
    }
}

section! {
    /// `[logging]`.
    pub struct Logging {
        /// When run from a shell, send the service's stdout and stderr to journald under
        /// SYSLOG_IDENTIFIER=<profile> (default false; under a unit they go to its journal).
        leaf journal: bool,
    }
}

section! {
    /// `[exec]`: the service's command line, credentials and process attributes.
    pub struct Exec {
        /// The command and its arguments; the first element is an absolute path. Required.
        leaf command: Vec<String>,
        /// Whether `stockade run PROFILE -- ARGS` may append ARGS (default false).
        leaf args_append: bool,
        /// User to run as: a name looked up on the host, or a number (default 0).
        leaf user: IdRef,
        /// Group to run as (default: the user's primary group, or 0).
        leaf group: IdRef,
        /// Supplementary groups (default none).
        leaf supplementary_groups: Vec<IdRef>,
        /// Working directory inside the sandbox (default `/`).
        leaf workdir: String,
        /// Environment; it starts empty except PATH, LANG and TERM.
        map env: String,
        /// The umask as an octal string (default "0022").
        leaf umask: Mode,
        /// Resource limits by name (`nofile`, `core`, `nproc`, ...), soft and hard alike.
        map rlimits: Limit,
    }
}

section! {
    /// `[namespaces]`: each true or false; all default to true except `time`.
    pub struct Namespaces {
        /// A user namespace (ids are mapped per `[idmap]`).
        leaf user: bool,
        /// A pid namespace with stockade's init as pid 1.
        leaf pid: bool,
        /// A mount namespace (required by every `[filesystem]` and `[[mount]]` setting).
        leaf mount: bool,
        /// A network namespace with only `lo`, brought up.
        leaf net: bool,
        /// An IPC namespace (System V IPC, POSIX message queues).
        leaf ipc: bool,
        /// A UTS namespace (hostname).
        leaf uts: bool,
        /// A cgroup namespace.
        leaf cgroup: bool,
        /// A time namespace (default false).
        leaf time: bool,
    }
}

section! {
    /// `[idmap]`: uid and gid maps (only with `namespaces.user`).
    pub struct Idmap {
        /// UID ranges; default maps the launching uid (and the exec user) to itself inside.
        leaf uid: Vec<IdRange>,
        /// GID ranges; default like `uid`.
        leaf gid: Vec<IdRange>,
    }
}

section! {
    /// `[filesystem]`: the root and the standard private mounts.
    pub struct Filesystem {
        /// "/" (the host root), a directory holding a root filesystem, or "empty" (default "/").
        leaf root: String,
        /// Make the whole root read-only (default true).
        leaf read_only: bool,
        /// Fresh tmpfs on /tmp and /var/tmp (default true).
        leaf private_tmp: bool,
        /// Size of each of the private /tmp and /var/tmp (default "128M").
        leaf tmp_size: Size,
        /// A fresh tmpfs on /run, so no host socket there is reachable (default true).
        leaf private_run: bool,
        /// Size of the private /run (default "16M").
        leaf run_size: Size,
        /// A minimal /dev on a fresh tmpfs (default true).
        leaf private_dev: bool,
        /// Size of /dev/shm in the private /dev (default "64M").
        leaf shm_size: Size,
        /// A fresh /proc for the new pid namespace (default true).
        leaf proc: bool,
        /// Paths made empty and inaccessible.
        leaf hide: Vec<String>,
    }
}

section! {
    /// One `[[mount]]` entry; which keys apply depends on `type`.
    pub struct Mount {
        /// bind, volume, tmpfs or symlink.
        leaf kind as "type": MountType,
        /// bind: the host path; symlink: the link text.
        leaf source: String,
        /// Path inside the sandbox.
        leaf target: String,
        /// bind and volume: mount read-only (default false).
        leaf read_only: bool,
        /// bind: skip the mount when the source is missing (default false).
        leaf optional: bool,
        /// volume: the directory's name under /var/lib/stockade/volumes.
        leaf name: String,
        /// tmpfs: size limit (default "64M").
        leaf size: Size,
        /// tmpfs: mode of the mount's root (default "0755").
        leaf mode: Mode,
    }
}

section! {
    /// `[network]`.
    pub struct Network {
        /// Hostname inside the sandbox (needs `namespaces.uts`).
        leaf hostname: String,
        /// none (a network namespace with only `lo`), host (the host's network) or bridge
        /// (`eth0` on a named network). Default: none, or host when `namespaces.net = false`.
        leaf mode: NetMode,
        /// bridge: the named network to join (default "default"); sandboxes on one network
        /// reach each other.
        leaf network: String,
        /// bridge: the sandbox's IPv4 address inside the network's subnet (default: the
        /// first free one, leased under /run/stockade/networks).
        leaf address: String,
        /// bridge: the sandbox's IPv6 address inside the network's subnet6 (default: the
        /// first free one; only on a network with subnet6).
        leaf address6: String,
        /// bridge: ports published on the host, as "[HOST_IP:]HOST_PORT:PORT[/tcp|/udp]".
        leaf publish: Vec<String>,
        /// bridge: masquerade to the host's default route (default: the network's setting).
        leaf outbound: bool,
        /// bridge: name servers for the generated /etc/resolv.conf (default: the host's).
        leaf dns: Vec<String>,
    }
}

section! {
    /// `[security]`: the final steps before exec.
    pub struct Security {
        /// Capabilities kept (bounding, permitted, effective, inheritable, ambient); all others dropped.
        leaf capabilities: Vec<String>,
        /// Set no_new_privs so exec can never gain privileges (default true).
        leaf no_new_privileges: bool,
        /// Seccomp allow-list: systemd group names ("@system-service") and syscall names.
        /// Every other call is denied; @default is always allowed. Without it, stockade's
        /// baseline deny-list applies.
        leaf syscall_filter: Vec<String>,
        /// Groups and syscalls denied: taken out of syscall_filter, or added to the baseline.
        leaf syscall_deny: Vec<String>,
        /// What a denied call returns: an errno name, or "kill" (default "EPERM").
        leaf syscall_errno: String,
        /// Let denied calls run and have the kernel log them, to write a filter (default false).
        leaf syscall_log: bool,
        /// Report each denied system call once per (call, executable) on stockade's log,
        /// with the deciding rule, as `run --explain` does (default false).
        leaf explain: bool,
        /// Socket address families the service may create, by name ("AF_UNIX", ...);
        /// socket(2) of any other fails with EAFNOSUPPORT (default AF_UNIX, AF_INET,
        /// AF_INET6, AF_NETLINK; `[]` allows none).
        leaf address_families: Vec<String>,
        /// Mask kernel files in /proc and /sys, make /proc/sys and /sys read-only (default true).
        leaf protect_kernel: bool,
        /// Run with the landlock rules the kernel can enforce when it cannot enforce them
        /// all (default false: refuse to start).
        leaf landlock_best_effort: bool,
        /// Landlock filesystem rules; when present, everything not listed is denied.
        table landlock: Landlock,
    }
}

section! {
    /// `security.landlock`: paths and what the service may do beneath them.
    pub struct Landlock {
        /// Paths the service may read (files and directory listings).
        leaf read: Vec<String>,
        /// Paths the service may read and write.
        leaf write: Vec<String>,
        /// Paths the service may read and execute from.
        leaf exec: Vec<String>,
    }
}

#[cfg_attr(not(test), allow(dead_code))] // used by the documentation tests
/// Every key path of the schema, dotted (`exec.command`, `mount.type`, ...).
pub fn all_key_paths() -> Vec<String> {
    fn walk(prefix: &str, keys: &[Key], out: &mut Vec<String>) {
        for k in keys {
            let path = format!("{prefix}{}", k.name);
            match k.kind {
                KeyKind::Table(sub) | KeyKind::List(sub) => walk(&format!("{path}."), sub, out),
                KeyKind::Leaf | KeyKind::Map => out.push(path),
            }
        }
    }
    let mut out = Vec::new();
    walk("", Profile::KEYS, &mut out);
    out
}

/// The value of an optional setting, or its default.
pub fn or<T: Clone>(v: &Option<Src<T>>, default: T) -> T {
    v.as_ref().map_or(default, |s| s.value.clone())
}

impl Namespaces {
    /// Each namespace with whether the profile enables it (defaults applied).
    pub fn enabled(&self) -> [(&'static str, bool); 8] {
        [
            ("user", or(&self.user, true)),
            ("pid", or(&self.pid, true)),
            ("mount", or(&self.mount, true)),
            ("net", or(&self.net, true)),
            ("ipc", or(&self.ipc, true)),
            ("uts", or(&self.uts, true)),
            ("cgroup", or(&self.cgroup, true)),
            ("time", or(&self.time, false)),
        ]
    }

    pub fn is(&self, name: &str) -> bool {
        self.enabled().iter().any(|&(n, on)| n == name && on)
    }
}
