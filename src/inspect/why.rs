//! `stockade why`: whether one access is allowed in a sandbox, and the settings that decide
//! it, from the plan alone. A path is followed through the mounts in plan order (which one
//! supplies it, read-only, noexec, hidden) and then the landlock rules; a system call
//! through the seccomp policy (see [`super::syscall`]); a capability through the kept set.
//! What the plan cannot know (the host file's owner and mode, whether a path on the host
//! root exists) is said, never guessed.

use crate::host::walk::is_below;
use crate::plan::{Access, LaunchPlan, MountOp, Provenance, RootSource};
use std::fmt::Write;

/// The access `why --path` asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PathAccess {
    Read,
    Write,
    Exec,
    /// Create the path (a file or directory) where it does not exist yet.
    Create,
}

impl PathAccess {
    fn name(self) -> &'static str {
        match self {
            PathAccess::Read => "read",
            PathAccess::Write => "write",
            PathAccess::Exec => "exec",
            PathAccess::Create => "create",
        }
    }
}

/// One finding on the way to the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// `mount`, `landlock`, `seccomp`, `capabilities`, `permissions`.
    pub layer: &'static str,
    pub says: String,
    pub from: Option<Provenance>,
    /// The layer denies the access.
    pub denies: bool,
}

/// The answer to one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// `write /var/log/redis`, `syscall ptrace`, `capability CAP_NET_ADMIN`.
    pub question: String,
    pub allowed: bool,
    /// What the service sees when denied: `EROFS`, `EACCES`, `ENOENT`, `kill`.
    pub error: Option<String>,
    /// What it sees instead when a check the plan does not hold comes first: writing an
    /// existing file on a read-only mount fails with EACCES when the file's mode refuses
    /// the service already (the kernel checks the mode before the mount).
    pub or_error: Option<String>,
    pub steps: Vec<Step>,
    /// How to change the answer, one line each.
    pub change: Vec<String>,
    /// The words for yes and no: allowed/denied, kept/dropped.
    pub words: (&'static str, &'static str),
}

/// The answer as an admin reads it.
pub fn text(a: &Answer) -> String {
    let mut out = String::new();
    let (yes, no) = a.words;
    let verdict = match (&a.allowed, &a.error) {
        (true, _) => yes.to_owned(),
        (false, Some(e)) => match &a.or_error {
            Some(or) => format!("{no} ({e}, or {or} where the file's mode refuses it first)"),
            None => format!("{no} ({e})"),
        },
        (false, None) => no.to_owned(),
    };
    let _ = writeln!(out, "{}: {verdict}", a.question);
    for s in &a.steps {
        let mark = if s.denies { "✗" } else { " " };
        let from = s.from.as_ref().map_or(String::new(), |f| f.to_string());
        let _ = writeln!(out, "  {mark} {:<12} {:<66} {from}", s.layer, s.says);
    }
    for c in &a.change {
        let _ = writeln!(out, "  to change: {c}");
    }
    out
}

fn step(
    layer: &'static str,
    says: impl Into<String>,
    from: Option<Provenance>,
    denies: bool,
) -> Step {
    Step {
        layer,
        says: says.into(),
        from,
        denies,
    }
}

/// A path below a tmpfs: the plan cannot know whether the service makes it.
const MADE_AT_RUN_TIME: &str = " (exists only if made at run time)";

/// What supplies a path inside the sandbox, as the mounts leave it.
struct Supply {
    says: String,
    from: Provenance,
    read_only: bool,
    noexec: bool,
    /// Covered by a mode-0000 node (filesystem.hide, protect_kernel, stockade's state).
    hidden: bool,
    /// Nothing supplies it: the empty root has no such path.
    absent: bool,
    /// A file stockade writes at each start for a bridge network (/etc/hosts,
    /// /etc/resolv.conf): its contents are settings, not a mount to change.
    generated: Option<&'static str>,
}

impl Supply {
    /// A mount that supplies the path as it is: neither hidden, absent nor generated.
    fn mounted(says: String, from: Provenance, read_only: bool, noexec: bool) -> Supply {
        Supply {
            says,
            from,
            read_only,
            noexec,
            hidden: false,
            absent: false,
            generated: None,
        }
    }
}

/// The last mount at or above `path` decides (the plan orders parents first); symlinks
/// stockade makes are followed, at most `MAX` times.
fn supply(plan: &LaunchPlan, path: &str) -> (Supply, String) {
    const MAX: usize = 8;
    let mut path = path.to_owned();
    let Some(fs) = &plan.fs else {
        let (_, from) = super::namespace(plan, crate::plan::Namespace::Mount);
        let s = Supply {
            says: "no mount namespace: the host's own path".into(),
            from,
            read_only: false,
            noexec: false,
            hidden: false,
            absent: false,
            generated: None,
        };
        return (s, path);
    };
    'follow: for _ in 0..MAX {
        let mut s = match &fs.root {
            RootSource::Host(r) => Supply::mounted(
                format!(
                    "the host's {r} (the sandbox root), {}",
                    if *fs.read_only {
                        "read-only"
                    } else {
                        "writable"
                    }
                ),
                fs.read_only.from.clone(),
                *fs.read_only,
                false,
            ),
            RootSource::Empty => Supply {
                says: "the empty root: no mount supplies it".into(),
                from: fs.read_only.from.clone(),
                read_only: *fs.read_only,
                noexec: false,
                hidden: false,
                absent: path != "/",
                generated: None,
            },
        };
        for op in &fs.ops {
            let t = op.target();
            let exact = t == path;
            if !exact && !is_below(&path, t) {
                continue;
            }
            let rest = &path[t.len()..];
            let flags = |ro: bool, noexec: bool| {
                let mut f = vec![if ro { "read-only" } else { "writable" }];
                if noexec {
                    f.push("noexec");
                }
                f.join(", ")
            };
            s = match &op.value {
                MountOp::Bind {
                    source,
                    read_only,
                    noexec,
                    ..
                } if exact && generated(plan, source).is_some() => {
                    let (key, what) = generated(plan, source).unwrap_or_default();
                    Supply {
                        says: format!(
                            "{what}, generated at start from {key} and bound read-only from the host's {source}"
                        ),
                        // The bind exists because the profile chose a bridge network.
                        from: super::namespace(plan, crate::plan::Namespace::Net).1,
                        read_only: *read_only,
                        noexec: *noexec,
                        hidden: false,
                        absent: false,
                        generated: Some(key),
                    }
                }
                MountOp::Bind {
                    source,
                    read_only,
                    noexec,
                    ..
                } => Supply::mounted(
                    format!(
                        "bind of the host's {source}{rest} at {t}, {}",
                        flags(*read_only, *noexec)
                    ),
                    op.from.clone(),
                    *read_only,
                    *noexec,
                ),
                MountOp::Tmpfs {
                    read_only, noexec, ..
                } => Supply::mounted(
                    format!(
                        "tmpfs at {t}, {}{}",
                        flags(*read_only, *noexec),
                        if exact { "" } else { MADE_AT_RUN_TIME }
                    ),
                    op.from.clone(),
                    *read_only,
                    *noexec,
                ),
                MountOp::Proc { .. } => Supply::mounted(
                    format!("the sandbox's own procfs at {t}"),
                    op.from.clone(),
                    false,
                    true,
                ),
                MountOp::Sysfs { .. } => Supply::mounted(
                    format!("a fresh sysfs at {t}, read-only"),
                    op.from.clone(),
                    true,
                    true,
                ),
                MountOp::Devpts { .. } | MountOp::Mqueue { .. } => Supply::mounted(
                    format!(
                        "the sandbox's own {} at {t}",
                        if matches!(op.value, MountOp::Devpts { .. }) {
                            "devpts"
                        } else {
                            "mqueue"
                        }
                    ),
                    op.from.clone(),
                    false,
                    true,
                ),
                MountOp::Symlink { text, .. } => {
                    let base = crate::host::walk::parent(t);
                    let joined = if text.starts_with('/') {
                        format!("{text}{rest}")
                    } else {
                        format!("{}/{text}{rest}", base.trim_end_matches('/'))
                    };
                    match crate::profile::validate::normalize_abs(&joined) {
                        Ok(next) => {
                            path = next;
                            continue 'follow;
                        }
                        Err(_) => s,
                    }
                }
                MountOp::Hide { dir, .. } => Supply {
                    says: format!(
                        "hidden: an empty mode-0000 {} covers {t}",
                        if *dir { "directory" } else { "file" }
                    ),
                    from: op.from.clone(),
                    read_only: true,
                    noexec: true,
                    hidden: true,
                    absent: false,
                    generated: None,
                },
                MountOp::ReadOnly { .. } => Supply {
                    says: format!("{}; {t} made read-only", s.says),
                    from: op.from.clone(),
                    read_only: true,
                    ..s
                },
            };
        }
        return (s, path);
    }
    let s = Supply {
        says: "too many symlinks".into(),
        from: Provenance::default("mount"),
        read_only: false,
        noexec: false,
        hidden: false,
        absent: true,
        generated: None,
    };
    (s, path)
}

/// Which generated network file `source` is, if any: the setting that fills it and what it
/// is, in words.
fn generated(plan: &LaunchPlan, source: &str) -> Option<(&'static str, String)> {
    let n = plan.network.as_ref()?;
    let net = &n.network.value;
    if n.resolv_file.as_os_str() == source {
        let servers: Vec<String> = n.dns.iter().map(|ip| ip.to_string()).collect();
        Some((
            "network.dns",
            format!(
                "the resolv.conf of bridge network `{net}` (name servers: {})",
                if servers.is_empty() {
                    "none".into()
                } else {
                    servers.join(", ")
                }
            ),
        ))
    } else if n.hosts_file.as_os_str() == source {
        Some((
            "network.hostname",
            format!(
                "the hosts file of bridge network `{net}` (`{}` and its address)",
                n.hostname
            ),
        ))
    } else {
        None
    }
}

/// May the service `access` `path` (absolute)? Err: the path is not absolute or climbs
/// above `/`.
pub fn path(plan: &LaunchPlan, path: &str, access: PathAccess) -> Result<Answer, String> {
    let asked = crate::profile::validate::normalize_abs(path)
        .map_err(|e| format!("--path `{path}`: {e}"))?;
    let (s, resolved) = supply(plan, &asked);
    let mut steps = Vec::new();
    let mut change = Vec::new();
    let mut error: Option<&str> = None;
    let writes = matches!(access, PathAccess::Write | PathAccess::Create);
    if resolved != asked {
        steps.push(step(
            "symlink",
            format!("{asked} leads to {resolved}"),
            None,
            false,
        ));
    }
    let mount_denies = if s.hidden {
        error = Some("EACCES");
        change.push("remove it from filesystem.hide (or, for a kernel file, set security.protect_kernel = false)".into());
        true
    } else if s.absent && access != PathAccess::Create {
        error = Some("ENOENT");
        change.push(format!(
            "mount something at {resolved} ([[mount]] bind, volume or tmpfs)"
        ));
        true
    } else if let (true, Some(key)) = (writes && s.read_only, s.generated) {
        error = Some("EROFS");
        change.push(format!("it cannot be made writable: stockade writes {resolved} at each start; set its contents with {key} in the profile's [network]"));
        true
    } else if writes && s.read_only {
        error = Some("EROFS");
        change.push(format!("mount a volume, tmpfs or writable bind at {resolved} (or set filesystem.read_only = false, which opens the whole root)"));
        true
    } else if access == PathAccess::Exec && s.noexec {
        error = Some("EACCES");
        change.push(format!("cover {resolved} with a security.landlock.exec rule (writable mounts are noexec under landlock exec rules), or mount it without noexec"));
        true
    } else {
        false
    };
    steps.push(step(
        "mount",
        if access == PathAccess::Create {
            s.says.replace(MADE_AT_RUN_TIME, "")
        } else {
            s.says.clone()
        },
        Some(s.from.clone()),
        mount_denies,
    ));
    // Landlock: every rule grants reading; write and exec need a rule of their kind.
    let needed = match access {
        PathAccess::Read => None,
        PathAccess::Write | PathAccess::Create => Some(Access::Write),
        PathAccess::Exec => Some(Access::Exec),
    };
    let landlock_denies = match &plan.finals.landlock {
        None => {
            steps.push(step(
                "landlock",
                "not used: no rules restrict the service",
                Some(Provenance::default("security.landlock")),
                false,
            ));
            false
        }
        Some(rules) => {
            let covers = |r: &crate::plan::LandlockRule| {
                needed.is_none_or(|a| r.access == a)
                    && (r.path == resolved || is_below(&resolved, &r.path))
            };
            match rules.iter().find(|r| covers(r)) {
                Some(r) => {
                    let kind = format!("{:?}", r.access).to_lowercase();
                    steps.push(step(
                        "landlock",
                        format!("the {kind} rule {} covers it", r.path),
                        Some(r.from.clone()),
                        false,
                    ));
                    false
                }
                None => {
                    let list = needed.map_or("security.landlock", |a| match a {
                        Access::Read => "security.landlock.read",
                        Access::Write => "security.landlock.write",
                        Access::Exec => "security.landlock.exec",
                    });
                    let kind = needed.map_or("", |a| match a {
                        Access::Read => "read ",
                        Access::Write => "write ",
                        Access::Exec => "exec ",
                    });
                    let from = rules
                        .iter()
                        .find(|r| needed.is_none_or(|a| r.access == a))
                        .or(rules.first())
                        .map(|r| r.from.clone())
                        .unwrap_or_else(|| Provenance::default("security.landlock"));
                    steps.push(step(
                        "landlock",
                        format!("no {kind}rule covers it (rules match as written: host symlinks are not followed)"),
                        Some(from),
                        true,
                    ));
                    change.push(format!(
                        "add {resolved} (or a directory above it) to {}",
                        if needed.is_none() {
                            "security.landlock.read"
                        } else {
                            list
                        }
                    ));
                    error.get_or_insert("EACCES");
                    true
                }
            }
        }
    };
    let allowed = !mount_denies && !landlock_denies;
    if allowed {
        let uid = *plan.creds.uid;
        let host = plan.idmap.as_ref().and_then(|m| {
            m.uid_map
                .iter()
                .find(|r| {
                    uid >= r.inside && u64::from(uid) < u64::from(r.inside) + u64::from(r.count)
                })
                .map(|r| r.outside + (uid - r.inside))
        });
        let who = match host {
            Some(h) if h != uid => format!("uid {uid} (host uid {h})"),
            _ => format!("uid {uid}"),
        };
        steps.push(step(
            "permissions",
            format!("then the file's owner and mode decide, for {who}: not in the plan"),
            Some(plan.creds.uid.from.clone()),
            false,
        ));
    }
    if mount_denies && s.generated.is_some() {
        // No rule makes a generated file writable: its settings are the only change.
        change.truncate(1);
    } else if mount_denies && landlock_denies && change.len() > 1 {
        change.push("both are needed".into());
    }
    // Opening an existing file for writing checks its mode before the mount's read-only
    // flag; creating checks the mount first.
    let or_error =
        (error == Some("EROFS") && access == PathAccess::Write).then(|| "EACCES".to_owned());
    Ok(Answer {
        question: format!("{} {asked}", access.name()),
        allowed,
        or_error,
        error: (!allowed).then(|| error.unwrap_or("EACCES").to_owned()),
        steps,
        change,
        words: ("allowed", "denied"),
    })
}

/// Is system call `name` allowed? Err: no such system call.
pub fn syscall(plan: &LaunchPlan, name: &str) -> Result<Answer, String> {
    if !crate::profile::syscalls::is_syscall(name) {
        return Err(format!("--syscall `{name}`: no such system call"));
    }
    let a = super::syscall(plan, name);
    let mut steps = vec![step(
        "seccomp",
        a.because.clone(),
        Some(a.from.clone()),
        !a.allowed,
    )];
    if !a.allowed {
        let act = &plan.finals.syscalls.action;
        steps.push(step(
            "action",
            format!("a denied call gets {}", super::action_name(act.value)),
            Some(act.from.clone()),
            false,
        ));
    }
    if name == "socket" || name == "socketpair" {
        let f = &plan.finals.syscalls.families;
        steps.push(step(
            "families",
            format!("only for {}; others fail with EAFNOSUPPORT", f.join(", ")),
            Some(f.from.clone()),
            false,
        ));
    }
    Ok(Answer {
        question: format!("syscall {name}"),
        allowed: a.allowed,
        error: (!a.allowed).then(|| a.action.clone()),
        or_error: None,
        steps,
        change: a.change.into_iter().collect(),
        words: ("allowed", "denied"),
    })
}

/// Is capability `name` kept? Err: no such capability.
pub fn capability(plan: &LaunchPlan, name: &str) -> Result<Answer, String> {
    let Some(cap) = crate::profile::validate::capability(name) else {
        return Err(format!("--capability `{name}`: no such capability"));
    };
    let kept = &plan.finals.capabilities;
    let short = cap.to_string().trim_start_matches("CAP_").to_lowercase();
    let has = kept.contains(&cap);
    let (says, change) = if has {
        (
            "kept in every set (bounding, permitted, effective, inheritable, ambient)".to_owned(),
            format!("remove `{short}` from security.capabilities"),
        )
    } else {
        (
            "dropped from every set, the bounding set too: not in security.capabilities".to_owned(),
            format!("add `{short}` to security.capabilities"),
        )
    };
    let mut steps = vec![step("capabilities", says, Some(kept.from.clone()), !has)];
    if has && super::namespace(plan, crate::plan::Namespace::User).0 {
        steps.push(step(
            "user ns",
            "it acts on the sandbox's own namespaces only, not the host's",
            None,
            false,
        ));
    }
    Ok(Answer {
        question: format!("capability {cap}"),
        allowed: has,
        error: None,
        or_error: None,
        steps,
        change: vec![change],
        words: ("kept", "dropped"),
    })
}
