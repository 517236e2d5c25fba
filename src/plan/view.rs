//! The sandbox's own view of its filesystem, as the planned mounts will make it: whether a
//! path exists inside and what it is, read from the host below the sandbox root or below the
//! bind sources, with symlinks followed inside the sandbox. The service's last steps open
//! such paths (the working directory, the program, the landlock rules); checking them here
//! makes `check` refuse what would otherwise fail only at run time.
//!
//! Reads the gathered host facts only, never the host: [`needs`] names the paths it walks,
//! and gather reads ahead whatever the walk may visit (`ViewNeeds`). It answers only what it
//! can know: what the kernel fills in (proc, sysfs, devpts, mqueue) and what stockade
//! creates before the start (volumes, the notify socket) is [`Found::Unknown`], never an
//! error.

use super::mounts::{FsPlan, MountOp, RootSource};
use super::{Builder, Decided};
use crate::host::walk::{is_below, join, parent, parts, MAX_LINKS};
use crate::host::{FactError, HostFacts, Needs, PathKind};
use crate::profile::validate::normalize_abs;
use crate::profile::{Profile, Src};
use std::collections::VecDeque;

/// What a path inside the sandbox resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Found {
    Is {
        kind: PathKind,
        /// Permission bits, when they come from the host.
        mode: Option<u32>,
        /// The `filesystem.hide` path that covers it with an empty, mode 0000 node.
        hidden: Option<String>,
    },
    /// Why it does not exist, as a clause: "there is no `/srv` in the sandbox root `/`".
    Missing(String),
    Unknown,
    /// A host path the walk needed was not gathered: a bug, reported (see `FactError`).
    NotGathered(String),
}

/// One path of the sandbox, not following a final symlink.
enum Node {
    Is(PathKind, Option<u32>, Option<String>),
    Link(String),
    Missing(String),
    Unknown,
    NotGathered(String),
}

pub(super) struct View<'a> {
    host: &'a HostFacts,
    root: RootSource,
    ops: &'a [Decided<MountOp>],
}

impl<'a> View<'a> {
    /// The view of a plan; without a mount namespace the service sees the host's root.
    pub(super) fn new(host: &'a HostFacts, fs: Option<&'a FsPlan>) -> View<'a> {
        match fs {
            Some(fs) => View {
                host,
                root: fs.root.clone(),
                ops: &fs.ops,
            },
            None => View {
                host,
                root: RootSource::Host("/".into()),
                ops: &[],
            },
        }
    }

    /// `path` (absolute, normalized) resolved as the service will see it.
    pub(super) fn resolve(&self, path: &str) -> Found {
        let mut done = String::from("/");
        let mut todo: VecDeque<String> = parts(path).collect();
        let mut last = Found::Is {
            kind: PathKind::Dir,
            mode: None,
            hidden: None,
        };
        let mut links = 0;
        while let Some(c) = todo.pop_front() {
            if c == ".." {
                done = parent(&done);
                continue;
            }
            let next = join(&done, &c);
            match self.node(&next) {
                Node::Is(kind, mode, hidden) => {
                    if kind != PathKind::Dir && !todo.is_empty() {
                        return Found::Missing(format!("`{next}` is not a directory"));
                    }
                    last = Found::Is { kind, mode, hidden };
                    done = next;
                }
                Node::Link(text) => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Found::Unknown;
                    }
                    if text.starts_with('/') {
                        done = "/".into();
                    }
                    for (i, part) in parts(&text).enumerate() {
                        todo.insert(i, part);
                    }
                    // A link to "/" or "." leaves nothing to look at: what it names is a dir.
                    last = Found::Is {
                        kind: PathKind::Dir,
                        mode: None,
                        hidden: None,
                    };
                }
                Node::Missing(why) => return Found::Missing(why),
                Node::Unknown => return Found::Unknown,
                Node::NotGathered(e) => return Found::NotGathered(e),
            }
        }
        last
    }

    /// What is at `path` in the sandbox: the last mount at or above it decides.
    fn node(&self, path: &str) -> Node {
        // A mount point below it makes it a directory: on the host already, or created.
        if self
            .ops
            .iter()
            .any(|o| !matches!(o.value, MountOp::ReadOnly { .. }) && is_below(o.target(), path))
        {
            return Node::Is(PathKind::Dir, None, None);
        }
        // Ops are ordered parents first: the last one covering the path is what shows.
        let cover = self.ops.iter().rev().find(|o| {
            !matches!(o.value, MountOp::ReadOnly { .. })
                && (o.target() == path || is_below(path, o.target()))
        });
        let Some(op) = cover else {
            return match &self.root {
                RootSource::Host(r) => self.on_host(r, path, &format!("the sandbox root `{r}`")),
                RootSource::Empty => Node::Missing(format!(
                    "the empty root holds only what the profile mounts, and nothing is mounted at `{path}`"
                )),
            };
        };
        let target = op.target();
        if target == path {
            return match &op.value {
                MountOp::Bind { source, .. } => match self.host.stat(source) {
                    Ok(Some(s)) => Node::Is(s.kind, Some(s.mode), None),
                    Err(e @ FactError::NotGathered(_)) => Node::NotGathered(e.to_string()),
                    // Made by stockade before the start: a volume, the notify socket.
                    _ => Node::Unknown,
                },
                MountOp::Symlink { text, .. } => Node::Link(text.clone()),
                MountOp::Hide { dir, .. } => {
                    let kind = if *dir { PathKind::Dir } else { PathKind::File };
                    Node::Is(kind, Some(0), Some(target.to_owned()))
                }
                _ => Node::Is(PathKind::Dir, None, None),
            };
        }
        match &op.value {
            MountOp::Bind { source, .. } => {
                let rest = &path[target.len()..];
                let inside = format!("`{source}`, which is bound at `{target}`");
                self.on_host(source, rest, &inside)
            }
            MountOp::Tmpfs { .. } => Node::Missing(format!(
                "`{target}` is a fresh tmpfs stockade mounts, which starts empty"
            )),
            MountOp::Hide { .. } => {
                Node::Missing(format!("`{target}` is hidden by filesystem.hide and empty"))
            }
            // Filled in by the kernel.
            _ => Node::Unknown,
        }
    }

    /// `path` below the host directory `base`, which the sandbox shows as `shown`.
    fn on_host(&self, base: &str, path: &str, shown: &str) -> Node {
        let full = join(base, path.trim_start_matches('/'));
        match self.host.lstat(&full) {
            Ok(Some(s)) => match &s.link {
                Some(text) => Node::Link(text.clone()),
                None => Node::Is(s.kind, Some(s.mode), None),
            },
            Ok(None) => Node::Missing(format!(
                "there is no `{}` in {shown}",
                if path.is_empty() { "/" } else { path }
            )),
            Err(e @ FactError::NotGathered(_)) => Node::NotGathered(e.to_string()),
            Err(FactError::Failed(_)) => Node::Unknown,
        }
    }
}

fn kind_name(kind: PathKind) -> &'static str {
    match kind {
        PathKind::Dir => "a directory",
        PathKind::File => "a file",
        PathKind::Symlink => "a symlink",
        PathKind::Other => "a device, socket or pipe",
    }
}

/// The sandbox paths [`check`] walks: the working directory, the program, every landlock
/// rule. Which host paths the walks visit is gathered from these (`ViewNeeds`).
pub(super) fn needs(p: &Profile, n: &mut Needs) {
    let workdir = p.exec.workdir.iter().map(|w| w.value.as_str());
    let program = p
        .exec
        .command
        .iter()
        .filter_map(|c| c.value.first())
        .filter(|s| s.starts_with('/'))
        .map(String::as_str);
    let rules = p.security.landlock.iter().flat_map(|l| {
        [&l.read, &l.write, &l.exec]
            .into_iter()
            .flatten()
            .flat_map(|list| list.value.iter().map(String::as_str))
    });
    let paths = workdir.chain(program).chain(rules);
    n.view
        .paths
        .extend(paths.filter_map(|path| normalize_abs(path).ok()));
}

/// The paths the service's last steps open must exist in the sandbox: the working directory
/// (chdir), the program (execve) and every landlock rule (opened to add it).
pub(super) fn check(b: &mut Builder, p: &Profile, fs: Option<&FsPlan>) {
    let view = View::new(b.host, fs);
    if let Some(w) = &p.exec.workdir {
        if let Ok(path) = normalize_abs(&w.value) {
            match view.resolve(&path) {
                Found::Is { kind: PathKind::Dir, .. } | Found::Unknown => {}
                Found::NotGathered(e) => b.err(w, "exec.workdir", e),
                Found::Is { kind, .. } => b.err(
                    w,
                    "exec.workdir",
                    format!("`{path}` is {} in the sandbox, not a directory; name a directory", kind_name(kind)),
                ),
                Found::Missing(why) => b.err(
                    w,
                    "exec.workdir",
                    format!("the working directory `{path}` does not exist in the sandbox: {why}; choose one that does, or mount one there"),
                ),
            }
        }
    }
    if let Some(c) = &p.exec.command {
        if let Some(prog) = c.value.first().filter(|s| s.starts_with('/')) {
            command(b, c, &view, prog);
        }
    }
    if let Some(l) = &p.security.landlock {
        for (key, list) in [
            ("security.landlock.read", &l.read),
            ("security.landlock.write", &l.write),
            ("security.landlock.exec", &l.exec),
        ] {
            for rule in list.iter().flat_map(|l| l.value.iter()) {
                let Ok(path) = normalize_abs(rule) else {
                    continue;
                };
                let list = list.as_ref().expect("a rule comes from a list");
                match view.resolve(&path) {
                    Found::Missing(why) => b.err(
                        list,
                        key,
                        format!("`{path}` does not exist in the sandbox, so landlock cannot add a rule for it: {why}; remove the rule, or name a path the sandbox has"),
                    ),
                    Found::NotGathered(e) => b.err(list, key, e),
                    Found::Is { .. } | Found::Unknown => {}
                }
            }
        }
    }
}

fn command(b: &mut Builder, c: &Src<Vec<String>>, view: &View, prog: &str) {
    let key = "exec.command";
    let Ok(path) = normalize_abs(prog) else {
        return;
    };
    match view.resolve(&path) {
        Found::Is {
            hidden: Some(h), ..
        } => b.err(
            c,
            key,
            format!("the program `{path}` is hidden by filesystem.hide (`{h}`); remove it from hide"),
        ),
        Found::Is {
            kind: PathKind::Dir,
            ..
        } => b.err(
            c,
            key,
            format!("`{path}` is a directory, not a program; name the program inside it"),
        ),
        Found::Is {
            kind: PathKind::File,
            mode: Some(mode),
            ..
        } if mode & 0o111 == 0 => b.err(
            c,
            key,
            format!("the program `{path}` is not executable (mode {mode:04o}); make it executable (chmod +x), or run it through its interpreter"),
        ),
        Found::Is {
            kind: PathKind::File,
            ..
        }
        | Found::Unknown => {}
        Found::Is { kind, .. } => b.err(
            c,
            key,
            format!("the program `{path}` is {} in the sandbox, not a file", kind_name(kind)),
        ),
        Found::Missing(why) => b.err(
            c,
            key,
            format!("the program `{path}` does not exist in the sandbox: {why}; install it, or mount it there"),
        ),
        Found::NotGathered(e) => b.err(c, key, e),
    }
}
