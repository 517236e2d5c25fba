//! The cgroup half of the plan: which placement (a systemd scope, leaves in a delegated
//! cgroup, a cgroup of our own, or none) and the limits, as systemd D-Bus properties or as
//! cgroup v2 file writes. Both translations are pure functions of `[resources]`.

use super::record::{Decided, Resolver};
use super::Builder;
use crate::host::CgroupFacts;
use crate::profile::schema::{or, Resources};
use crate::profile::validate::{cpu_list, valid_unit_name};
use crate::profile::values::{CgroupMode, Limit, Size};
use crate::profile::{Profile, Section, Src};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A D-Bus property value, typed as systemd expects it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Prop {
    /// `t`
    U64(u64),
    /// `b`
    Bool(bool),
    /// `s`
    Str(String),
    /// `ay`
    Bytes(Vec<u8>),
}

/// A transient scope to register; `PIDs` is added when init's pid is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeSpec {
    pub unit: String,
    pub slice: String,
    pub properties: Vec<(String, Prop)>,
    /// Controllers the limits need: checked on the scope's cgroup once systemd made it,
    /// because systemd accepts a limit it cannot enforce.
    pub controllers: Vec<String>,
}

/// Where the sandbox's processes go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupPlan {
    /// Stay in the caller's cgroup.
    None,
    /// A transient scope from systemd.
    Scope(ScopeSpec),
    /// Leaf cgroups stockade creates and removes itself below `parent` (a host path).
    Leaves(Leaves),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leaves {
    /// The directory the leaves are created in.
    pub parent: PathBuf,
    /// The sandbox's leaf.
    pub payload: String,
    /// Where the supervisor moves itself first (no process may stay in an inner cgroup
    /// once controllers are enabled for its children); None when it is not in `parent`.
    pub supervisor: Option<String>,
    /// Controllers enabled in `parent/cgroup.subtree_control`.
    pub controllers: Vec<String>,
    /// Files written in the payload leaf before any process enters it.
    pub limits: Vec<(String, String)>,
}

/// The cgroup v2 controller each `[resources]` key needs: the one table of them (the keys
/// themselves are the schema's; a test keeps every key in this table).
pub const CONTROLLERS: [(&str, &str); 8] = [
    ("memory_max", "memory"),
    ("memory_high", "memory"),
    ("memory_swap_max", "memory"),
    ("cpu_quota", "cpu"),
    ("cpu_weight", "cpu"),
    ("tasks_max", "pids"),
    ("io_weight", "io"),
    ("allowed_cpus", "cpuset"),
];

/// The limits the profile sets, each with the controller it needs.
fn needed(r: &Resources) -> Vec<(&'static str, &'static str)> {
    r.set_leaves()
        .into_iter()
        .filter_map(|key| CONTROLLERS.iter().find(|(k, _)| *k == key).copied())
        .collect()
}

fn size_u64(s: &Option<Src<Size>>) -> Option<u64> {
    s.as_ref().map(|s| s.value.bytes().unwrap_or(u64::MAX))
}

fn size_file(s: &Option<Src<Size>>) -> Option<String> {
    s.as_ref().map(|s| match s.value.bytes() {
        Some(b) => b.to_string(),
        None => "max".into(),
    })
}

/// `[resources]` as systemd's D-Bus properties (names and types as in org.freedesktop.systemd1).
pub fn properties(r: &Resources) -> Vec<(String, Prop)> {
    let mut p = Vec::new();
    if let Some(v) = size_u64(&r.memory_max) {
        p.push(("MemoryMax", Prop::U64(v)));
    }
    if let Some(v) = size_u64(&r.memory_high) {
        p.push(("MemoryHigh", Prop::U64(v)));
    }
    if let Some(v) = size_u64(&r.memory_swap_max) {
        p.push(("MemorySwapMax", Prop::U64(v)));
    }
    if let Some(q) = &r.cpu_quota {
        // systemd stores CPUQuota= as CPU microseconds per second of wall time.
        p.push((
            "CPUQuotaPerSecUSec",
            Prop::U64(u64::from(q.value.0) * 10_000),
        ));
    }
    if let Some(w) = &r.cpu_weight {
        p.push(("CPUWeight", Prop::U64(w.value)));
    }
    if let Some(t) = &r.tasks_max {
        let v = match t.value {
            Limit::Value(v) => v,
            Limit::Infinity => u64::MAX,
        };
        p.push(("TasksMax", Prop::U64(v)));
    }
    if let Some(w) = &r.io_weight {
        p.push(("IOWeight", Prop::U64(w.value)));
    }
    if let Some(c) = &r.allowed_cpus {
        if let Ok(cpus) = cpu_list(&c.value) {
            p.push(("AllowedCPUs", Prop::Bytes(cpu_mask(&cpus))));
        }
    }
    p.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// A CPU set as systemd's byte mask: bit `n % 8` of byte `n / 8` is CPU n.
pub fn cpu_mask(cpus: &[u32]) -> Vec<u8> {
    let len = cpus.iter().max().map_or(0, |&m| m as usize / 8 + 1);
    let mut mask = vec![0u8; len];
    for &c in cpus {
        mask[c as usize / 8] |= 1 << (c % 8);
    }
    mask
}

/// `[resources]` as cgroup v2 files, for the modes where stockade writes them itself.
pub fn cgroup_files(r: &Resources) -> Vec<(String, String)> {
    let mut f = Vec::new();
    if let Some(v) = size_file(&r.memory_max) {
        f.push(("memory.max", v));
    }
    if let Some(v) = size_file(&r.memory_high) {
        f.push(("memory.high", v));
    }
    if let Some(v) = size_file(&r.memory_swap_max) {
        f.push(("memory.swap.max", v));
    }
    if let Some(q) = &r.cpu_quota {
        // cpu.max is "quota period" in microseconds; systemd uses a 100 ms period.
        f.push(("cpu.max", format!("{} 100000", u64::from(q.value.0) * 1000)));
    }
    if let Some(w) = &r.cpu_weight {
        f.push(("cpu.weight", w.value.to_string()));
    }
    if let Some(t) = &r.tasks_max {
        let v = match t.value {
            Limit::Value(v) => v.to_string(),
            Limit::Infinity => "max".into(),
        };
        f.push(("pids.max", v));
    }
    if let Some(w) = &r.io_weight {
        f.push(("io.weight", format!("default {}", w.value)));
    }
    if let Some(c) = &r.allowed_cpus {
        f.push(("cpuset.cpus", c.value.clone()));
    }
    f.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// One `[resources]` limit as the profile wrote it (`memory_max = "256M"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceLimit {
    pub key: String,
    pub value: String,
}

/// Every `[resources]` limit the profile sets, each at its line.
pub(super) fn limits(at: &Resolver, r: &Resources) -> Vec<Decided<ResourceLimit>> {
    fn one<T: Serialize>(
        at: &Resolver,
        out: &mut Vec<Decided<ResourceLimit>>,
        key: &str,
        v: &Option<Src<T>>,
    ) {
        if let Some(v) = v {
            // The profile language's own text for the value (`256M`, `50%`, `infinity`).
            let value = toml::Value::try_from(&v.value)
                .map(|t| match t {
                    toml::Value::String(s) => s,
                    other => other.to_string(),
                })
                .unwrap_or_default();
            let key = format!("resources.{key}");
            out.push(Decided::new(
                ResourceLimit {
                    key: key.clone(),
                    value,
                },
                at.at(v, &key),
            ));
        }
    }
    let mut out = Vec::new();
    one(at, &mut out, "memory_max", &r.memory_max);
    one(at, &mut out, "memory_high", &r.memory_high);
    one(at, &mut out, "memory_swap_max", &r.memory_swap_max);
    one(at, &mut out, "cpu_quota", &r.cpu_quota);
    one(at, &mut out, "cpu_weight", &r.cpu_weight);
    one(at, &mut out, "tasks_max", &r.tasks_max);
    one(at, &mut out, "io_weight", &r.io_weight);
    one(at, &mut out, "allowed_cpus", &r.allowed_cpus);
    out
}

/// Decides the placement. `id` makes names unique per run (the supervisor's pid).
pub(super) fn plan(
    b: &mut Builder,
    p: &Profile,
    name: &str,
    id: u32,
    facts: &CgroupFacts,
) -> CgroupPlan {
    let r = &p.resources;
    let needs = needed(r);
    let mode_src = p.systemd.mode.as_ref();
    let mode = or(&p.systemd.mode, CgroupMode::Auto);
    let scope_possible = facts.systemd_running && facts.system_bus;
    let chosen = match mode {
        // Validation refuses [resources] with `off`.
        CgroupMode::Off => return CgroupPlan::None,
        CgroupMode::Auto if facts.delegated => CgroupMode::Delegate,
        CgroupMode::Auto if scope_possible => CgroupMode::Scope,
        CgroupMode::Auto if needs.is_empty() => return CgroupPlan::None,
        CgroupMode::Auto => CgroupMode::Auto, // our own cgroup v2 directory
        m => m,
    };
    let complain = |b: &mut Builder, msg: String| match mode_src {
        Some(m) => b.err(m, "systemd.mode", msg),
        None => b.file_err("systemd.mode", msg),
    };
    match chosen {
        CgroupMode::Scope => {
            if !scope_possible {
                complain(b, "`scope` needs systemd as the system manager with its system bus (/run/systemd/system and /run/dbus/system_bus_socket are missing)".into());
                return CgroupPlan::None;
            }
            let unit = or(&p.systemd.unit_name, "stockade-{profile}-{id}.scope".into())
                .replace("{profile}", name)
                .replace("{id}", &id.to_string());
            if !valid_unit_name(&unit) {
                b.file_err("systemd.unit_name", format!("`{unit}` is not a valid unit name; the profile name `{name}` needs characters systemd accepts"));
            }
            // systemd records a limit on a scope whether or not the kernel can enforce it.
            match &facts.v2_mount {
                Some(mount) => {
                    let place = if mount.ends_with("unified") {
                        format!("{} (a hybrid hierarchy: the controller is bound to cgroup v1)", mount.display())
                    } else {
                        mount.display().to_string()
                    };
                    missing_controllers(b, &needs, &facts.root_controllers, &place);
                }
                None if !needs.is_empty() => complain(b, "[resources] needs cgroup v2, and this host has no cgroup2 mount; refusing to run without the limits".into()),
                None => {}
            }
            let slice = or(&p.systemd.slice, "stockade.slice".into());
            let description = p.description.as_ref().map_or_else(
                || format!("stockade sandbox for {name}"),
                |d| d.value.clone(),
            );
            let props = vec![
                ("Description", Prop::Str(description)),
                ("Slice", Prop::Str(slice.clone())),
                // The sandbox may create cgroups of its own below the scope.
                ("Delegate", Prop::Bool(true)),
                // A failed scope is collected too, so no unit is left loaded.
                ("CollectMode", Prop::Str("inactive-or-failed".into())),
                // No AddRef: systemd tracks that reference by the caller's name on the
                // system bus, and refuses it (EINVAL) on its private socket, which stockade
                // uses. It is not needed: the supervisor reads memory.events while init
                // still holds the scope.
            ];
            let mut props: Vec<(String, Prop)> =
                props.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            props.extend(properties(r));
            CgroupPlan::Scope(ScopeSpec {
                unit,
                slice,
                properties: props,
                controllers: controllers(&needs),
            })
        }
        CgroupMode::Delegate => {
            let (Some(mount), Some(own)) = (&facts.v2_mount, &facts.own) else {
                complain(
                    b,
                    "`delegate` needs a cgroup v2 hierarchy, and none is mounted".into(),
                );
                return CgroupPlan::None;
            };
            if !facts.delegated {
                complain(b, format!("`delegate` needs a unit with Delegate=yes, but this process's cgroup {own} was not delegated"));
                return CgroupPlan::None;
            }
            missing_controllers(
                b,
                &needs,
                &facts.own_controllers,
                &format!("the delegated cgroup {own}"),
            );
            CgroupPlan::Leaves(Leaves {
                parent: mount.join(own.trim_start_matches('/')),
                payload: format!("{name}-{id}"),
                supervisor: Some("supervisor".into()),
                controllers: controllers(&needs),
                limits: cgroup_files(r),
            })
        }
        _ => {
            let Some(mount) = &facts.v2_mount else {
                complain(b, "[resources] needs cgroup v2, and this host has no cgroup2 mount; refusing to run without the limits".into());
                return CgroupPlan::None;
            };
            let hybrid = mount.ends_with("unified");
            let why = if hybrid {
                format!(
                    "{} (a hybrid hierarchy: the controller is bound to cgroup v1)",
                    mount.display()
                )
            } else {
                mount.display().to_string()
            };
            missing_controllers(b, &needs, &facts.root_controllers, &why);
            CgroupPlan::Leaves(Leaves {
                parent: mount.join("stockade"),
                payload: format!("{name}-{id}"),
                supervisor: None,
                controllers: controllers(&needs),
                limits: cgroup_files(r),
            })
        }
    }
}

fn controllers(needs: &[(&str, &'static str)]) -> Vec<String> {
    let mut c: Vec<String> = needs.iter().map(|(_, c)| c.to_string()).collect();
    c.sort();
    c.dedup();
    c
}

fn missing_controllers(b: &mut Builder, needs: &[(&str, &str)], available: &[String], place: &str) {
    for (key, ctl) in needs {
        if !available.iter().any(|a| a == ctl) {
            b.file_err(
                &format!("resources.{key}"),
                format!("needs the cgroup v2 `{ctl}` controller, which {place} does not offer; refusing to run without the limit (run under systemd on a cgroup v2 system, or remove the limit)"),
            );
        }
    }
}
