//! `show --plan`: the plan as an admin reads it, one decision per line, each with where it
//! came from (`redis.toml:14`, `default (filesystem.private_tmp)`). A pure function of the
//! record: it prints what the plan holds and derives nothing the sandbox would not do.

use super::{
    Access, CgroupPlan, Decided, LaunchPlan, MountOp, NodeKind, Prop, Provenance, RootSource,
    SysAction,
};
use std::fmt::Write;

/// One line: the decision, padded, then its provenance.
fn line(out: &mut String, text: impl AsRef<str>, from: &Provenance) {
    let _ = writeln!(out, "{:<64} {from}", text.as_ref());
}

fn decided<T>(out: &mut String, text: impl AsRef<str>, d: &Decided<T>) {
    line(out, text, &d.from);
}

fn plain(out: &mut String, text: impl AsRef<str>) {
    let _ = writeln!(out, "{}", text.as_ref());
}

fn size(b: Option<u64>) -> String {
    b.map_or("unlimited".into(), |b| {
        crate::profile::values::Size::Bytes(b).to_string()
    })
}

fn action(a: SysAction) -> String {
    match a {
        SysAction::Allow => "allow".into(),
        SysAction::Errno(e) => format!("{:?}", nix::errno::Errno::from_raw(e)),
        SysAction::KillProcess => "kill".into(),
        SysAction::Log => "log".into(),
    }
}

fn op(o: &MountOp) -> String {
    let flags = |ro: bool, noexec: bool| {
        let mut f = vec![if ro { "ro" } else { "rw" }];
        if noexec {
            f.push("noexec");
        }
        f.join(",")
    };
    match o {
        MountOp::Bind {
            source,
            target,
            read_only,
            noexec,
            create,
        } => {
            let made = match create {
                Some(NodeKind::Dir) => " (dir created)",
                Some(NodeKind::File) => " (file created)",
                None => "",
            };
            format!(
                "bind {source} -> {target} {}{made}",
                flags(*read_only, *noexec)
            )
        }
        MountOp::Tmpfs {
            target,
            size: s,
            mode,
            noexec,
            read_only,
            ..
        } => format!(
            "tmpfs {target} size={} mode={mode:04o} {}",
            size(s.value),
            flags(*read_only, *noexec)
        ),
        MountOp::Proc { target, .. } => format!("proc {target}"),
        MountOp::Sysfs { target } => format!("sysfs {target} ro"),
        MountOp::Devpts { target } => format!("devpts {target}"),
        MountOp::Mqueue { target } => format!("mqueue {target}"),
        MountOp::Symlink { target, text } => format!("symlink {target} -> {text}"),
        MountOp::Hide { target, dir } => {
            format!("hide {target} ({})", if *dir { "dir" } else { "file" })
        }
        MountOp::ReadOnly { target } => format!("read-only {target}"),
    }
}

/// The plan, one decision per line.
pub fn text(p: &LaunchPlan) -> String {
    let mut out = String::new();
    let o = &mut out;
    plain(o, format!("# launch plan for {}", p.name));
    for ns in &p.namespaces {
        let state = if ns.enabled { "on" } else { "off" };
        let name = format!("{:?}", ns.kind).to_lowercase();
        decided(o, format!("namespace {name:<8} {state}"), ns);
    }
    if let Some(c) = &p.id_claim {
        plain(
            o,
            format!(
                "id range  slot {} (host ids {}..{}){}",
                c.slot,
                c.base(),
                c.base() + (super::ID_RANGE - 1),
                if c.new { ", claimed at start" } else { "" }
            ),
        );
    }
    if let Some(m) = &p.idmap {
        for (name, map) in [("uid_map", &m.uid_map), ("gid_map", &m.gid_map)] {
            let lines: Vec<String> = map
                .iter()
                .map(|r| format!("{} {} {}", r.inside, r.outside, r.count))
                .collect();
            decided(o, format!("{name}   {}", lines.join(", ")), map);
        }
    }
    let c = &p.creds;
    decided(o, format!("uid       {}", *c.uid), &c.uid);
    decided(o, format!("gid       {}", *c.gid), &c.gid);
    if !c.groups.is_empty() {
        decided(o, format!("groups    {:?}", c.groups.value), &c.groups);
    }
    if let Some(h) = &p.hostname {
        decided(o, format!("hostname  {}", h.value), h);
    }
    decided(
        o,
        format!("protect_kernel {}", *p.protect_kernel),
        &p.protect_kernel,
    );
    if let Some(fs) = &p.fs {
        let root = match &fs.root {
            RootSource::Host(r) => r.clone(),
            RootSource::Empty => "empty (tmpfs)".into(),
        };
        let ro = if *fs.read_only {
            "read-only"
        } else {
            "writable"
        };
        decided(o, format!("root      {root} {ro}"), &fs.read_only);
        for m in &fs.ops {
            decided(o, format!("mount     {}", op(m)), m);
            if let MountOp::Tmpfs { size: s, .. } = &m.value {
                if s.from != m.from {
                    decided(o, format!("  size    {}", size(s.value)), s);
                }
            }
        }
    } else {
        plain(o, "mounts    none (no mount namespace)");
    }
    for v in &p.volumes {
        plain(
            o,
            format!(
                "volume    {} owner {}:{}",
                v.host_path.display(),
                v.uid,
                v.gid
            ),
        );
    }
    let f = &p.finals;
    for r in &f.rlimits {
        let name = crate::profile::validate::RLIMITS
            .iter()
            .find(|(_, res)| *res == r.resource)
            .map_or("?", |(n, _)| n);
        let limit = match r.limit {
            super::Limit::Value(v) => v.to_string(),
            super::Limit::Infinity => "infinity".into(),
        };
        decided(o, format!("rlimit    {name} = {limit}"), r);
    }
    decided(o, format!("umask     {:04o}", *f.umask), &f.umask);
    match &f.landlock {
        None => plain(o, "landlock  off"),
        Some(rules) => {
            for r in rules {
                let a = match r.access {
                    Access::Read => "read",
                    Access::Write => "write",
                    Access::Exec => "exec",
                };
                decided(o, format!("landlock  {a:<5} {}", r.path), r);
            }
        }
    }
    let caps: Vec<String> = f
        .capabilities
        .iter()
        .map(|c| c.to_string().to_lowercase())
        .collect();
    let caps = if caps.is_empty() {
        "none".to_owned()
    } else {
        caps.join(" ")
    };
    decided(o, format!("capabilities {caps}"), &f.capabilities);
    decided(
        o,
        format!("no_new_privs {}", *f.no_new_privs),
        &f.no_new_privs,
    );
    let s = &f.syscalls;
    let mode = if s.filter.default == SysAction::Allow {
        "deny-list"
    } else {
        "allow-list"
    };
    let prebuilt = if s.prebuilt {
        " (the prebuilt baseline)"
    } else {
        ""
    };
    plain(
        o,
        format!(
            "seccomp   {mode}, {} calls listed{prebuilt}",
            s.filter.listed.len()
        ),
    );
    for r in &s.rules {
        decided(o, format!("  {:<8} {}", action(r.action), r.entry), r);
    }
    decided(
        o,
        format!("  denied calls: {}", action(*s.action)),
        &s.action,
    );
    decided(
        o,
        format!("  address families {}", s.families.join(" ")),
        &s.families,
    );
    decided(o, format!("argv      {:?}", p.argv.value), &p.argv);
    decided(o, format!("workdir   {}", p.workdir.value), &p.workdir);
    for e in &p.env {
        decided(o, format!("env       {}={}", e.value.0, e.value.1), e);
    }
    decided(
        o,
        format!("systemd mode {:?}", *p.systemd_mode).to_lowercase(),
        &p.systemd_mode,
    );
    match &p.cgroup {
        CgroupPlan::None => plain(o, "cgroup    none (the caller's)"),
        CgroupPlan::Scope(s) => {
            plain(o, format!("cgroup    scope {} in {}", s.unit, s.slice));
            for (k, v) in &s.properties {
                let v = match v {
                    Prop::U64(n) => n.to_string(),
                    Prop::Bool(b) => b.to_string(),
                    Prop::Str(s) => s.clone(),
                    Prop::Bytes(b) => format!("{b:?}"),
                };
                plain(o, format!("  property {k}={v}"));
            }
        }
        CgroupPlan::Leaves(l) => {
            plain(
                o,
                format!("cgroup    leaf {}/{}", l.parent.display(), l.payload),
            );
            for (k, v) in &l.limits {
                plain(o, format!("  {k} = {v}"));
            }
        }
    }
    for r in &p.resources {
        decided(o, format!("resource  {} = {}", r.key, r.value.value), r);
    }
    if let Some(n) = &p.notify {
        decided(
            o,
            format!(
                "notify    relay {} -> {}",
                n.host_socket.display(),
                n.target
            ),
            n,
        );
    }
    if let Some(j) = &p.journal_identifier {
        decided(o, format!("journal   as {}", j.value), j);
    }
    for n in &p.notes {
        plain(o, format!("# note: {n}"));
    }
    out
}

/// The record as JSON, as `show --plan --json` prints it.
pub fn json(p: &LaunchPlan) -> String {
    // A plan holds only strings, numbers and lists: serialising cannot fail.
    serde_json::to_string_pretty(p).expect("a plan serialises")
}
