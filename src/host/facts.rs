//! The host facts a plan is built from, gathered once before planning: the users and groups
//! the profile names, the kernel's `fs.nr_open`, the id-range claims, cgroup facts, the
//! landlock ABI, and every host path the planner looks at (the root, bind sources and their
//! resolution, mount and hide targets, kernel files, volumes, and what the sandbox view's
//! walk may visit), each as lstat(2) and stat(2) saw it.
//!
//! The planner says what it needs ([`Needs`], a pure function of the profile in
//! `plan::needs`); [`HostFacts::gather`] reads exactly that below the host root, and the
//! planner then reads the facts instead of the host: it holds no [`Host`]. Read errors are
//! kept as text: the planner reports them at the profile value that needed the fact. A path
//! the planner asks about that was not gathered is [`FactError::NotGathered`], never a
//! silent read or a silent "absent".

use super::net::NetFacts;
use super::walk::{self, is_below, join, parent, parts, MAX_LINKS};
use super::{CgroupFacts, Group, Host, PathKind, Stat, User};
use crate::profile::networks::NetworkDef;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;

/// What the planner will ask about this host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Users named by the profile, and users looked up by id (for their primary group).
    pub user_names: Vec<String>,
    pub user_ids: Vec<u32>,
    pub group_names: Vec<String>,
    /// The id-range claims directory and the profile's name, when the planner may claim.
    pub claim: Option<(PathBuf, String)>,
    /// Host paths whose kind, following symlinks, decides something: a host root, bind
    /// sources, kernel files (a fresh /proc shows the host kernel's files).
    pub stat: Vec<String>,
    /// Host paths whose owner decides something, not following a final symlink: volumes
    /// made before id ranges.
    pub lstat: Vec<String>,
    /// Paths checked component by component below a host directory, as (base, path): mount
    /// and hide targets below the sandbox root, where a symlink on the way is refused.
    pub below: Vec<(String, String)>,
    /// Bind sources, whose symlinks are resolved once, before planning.
    pub resolve: Vec<String>,
    pub view: ViewNeeds,
    /// A bridge network to join: its name, the directories its definition may be in, and its
    /// lease directory (below the host root).
    pub network: Option<(String, Vec<PathBuf>, PathBuf)>,
    /// Whether the bridge profile publishes ports, so the host's bound ports are read (each
    /// /proc/net/tcp read walks the kernel's whole TCP hash: milliseconds, not worth it
    /// for a profile that publishes nothing).
    pub network_ports: bool,
}

/// What the sandbox view's walk may look at: it resolves `paths` inside the sandbox as the
/// planned mounts will show them, and which mount shows a path is decided only as the plan
/// is built. So gather reads ahead for every mount that may show it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewNeeds {
    /// Paths inside the sandbox the service's last steps open (workdir, program, landlock).
    pub paths: Vec<String>,
    /// Host directories shown at the sandbox's "/": the sandbox root, or the host's.
    pub roots: Vec<String>,
    /// Host paths that may be bound into the sandbox, as (target, source); a source also
    /// in [`Needs::resolve`] is looked at where it resolves to, as the plan binds it.
    pub binds: Vec<(String, String)>,
    /// Symlinks stockade may create, as (target, text).
    pub links: Vec<(String, String)>,
}

/// The id-range claims as found in the claims directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    /// The slot this profile holds already.
    pub own: Option<u32>,
    /// Every claimed slot.
    pub used: Vec<u32>,
}

/// Why a host fact cannot be told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FactError {
    /// Reading it failed; the text is the kernel's error, shown as it was.
    #[error("{0}")]
    Failed(String),
    /// gather never read it: `plan::needs` does not name a path the planner looks at.
    #[error("`{0}` was not gathered from the host before planning (a bug in stockade: plan::needs does not name it)")]
    NotGathered(String),
}

/// A host fact, or why it cannot be told.
pub type Fact<T> = Result<T, FactError>;

/// A path the planner asks about that gather did not read. This is a bug, never a host
/// condition, so it is made loud rather than guessed: debug builds (every test) stop here,
/// at the lookup, naming the path; release builds return it as an error the planner
/// reports as a problem, so `check` and `run` refuse rather than plan on "absent" or read
/// the host behind the facts' back.
fn not_gathered(path: &str) -> FactError {
    if cfg!(debug_assertions) {
        panic!("the planner asked about `{path}`, which plan::needs did not name");
    }
    FactError::NotGathered(path.to_owned())
}

/// lstat(2) or stat(2) results by path, as the planner names the path.
type Table = BTreeMap<String, Result<Option<Stat>, String>>;

/// Everything the planner knows about the host.
#[derive(Debug, Clone)]
pub struct HostFacts {
    /// The effective uid and gid stockade runs with.
    pub euid: u32,
    pub egid: u32,
    /// The users found of those asked for; a user asked for and absent is not on the host.
    pub users: Result<Vec<User>, String>,
    pub groups: Result<Vec<Group>, String>,
    /// Where the user and group databases are, for messages.
    pub passwd_path: PathBuf,
    pub group_path: PathBuf,
    /// `fs.nr_open`; None when the file is absent.
    pub nr_open: Result<Option<u64>, String>,
    pub nr_open_path: PathBuf,
    pub claims: Result<Claims, String>,
    pub cgroup: CgroupFacts,
    /// The landlock ABI the kernel offers (None: no landlock).
    pub landlock_abi: Option<u32>,
    /// The network a bridge plan joins, as its files define it (None: not defined; Err:
    /// its definition is wrong), and the host's network as it stands.
    pub network: Option<(Result<Option<NetworkDef>, String>, NetFacts)>,
    /// Each path read, not following a final symlink (link text and owner included). Read
    /// only through the accessors, which tell a path not gathered from one that is absent.
    lstat: Table,
    /// Each path read following symlinks.
    stat: Table,
    /// Each bind source with its symlinks resolved by [`Host::resolve`] (and its rule on
    /// whose links are followed).
    resolved: BTreeMap<String, Result<String, String>>,
}

/// The host, read through a cache that keeps every answer: what gather read is what the
/// facts hold, and a path asked twice is read once.
struct Reader<'h> {
    host: &'h Host,
    lstat: Table,
    stat: Table,
}

impl Reader<'_> {
    fn lstat(&mut self, path: &str) -> Result<Option<Stat>, String> {
        let host = self.host;
        self.lstat
            .entry(path.to_owned())
            .or_insert_with(|| host.stat(path, false).map_err(|e| e.to_string()))
            .clone()
    }

    fn stat(&mut self, path: &str) -> Result<Option<Stat>, String> {
        let host = self.host;
        self.stat
            .entry(path.to_owned())
            .or_insert_with(|| host.stat(path, true).map_err(|e| e.to_string()))
            .clone()
    }

    /// Reads ahead what the sandbox view's walk (plan/view.rs) may look at. The walk goes
    /// component by component, asking the mount that shows each path: the root, or a bind
    /// (stat(2) of its source at its target, lstat(2) below it), and follows the symlinks it
    /// meets there or that stockade makes. Which mount shows a path is decided by the plan,
    /// so every one that may show it is read, and the walk goes on past what the host lacks
    /// (a mount may put a directory there): a superset of what the planner asks, which is
    /// cheap, since a walk is a handful of paths. At most [`MAX_LINKS`] links are followed
    /// along any one walk, as the planner does.
    fn view(&mut self, v: &ViewNeeds, resolved: &BTreeMap<String, Result<String, String>>) {
        // Bound regardless, in case a host's links fan out: a walk past it is NotGathered.
        const MAX_STATES: usize = 100_000;
        let binds: Vec<(&str, &str)> = v
            .binds
            .iter()
            .map(|(t, s)| match resolved.get(s) {
                Some(Ok(r)) => (t.as_str(), r.as_str()),
                _ => (t.as_str(), s.as_str()),
            })
            .collect();
        // (path walked so far, names still to walk, links followed)
        type State = (String, VecDeque<String>, u32);
        let mut todo: Vec<State> = v
            .paths
            .iter()
            .map(|p| ("/".to_owned(), parts(p).collect(), 0))
            .collect();
        let mut seen: BTreeSet<State> = BTreeSet::new();
        while let Some(state) = todo.pop() {
            if seen.len() >= MAX_STATES || !seen.insert(state.clone()) {
                continue;
            }
            let (done, mut rest, links) = state;
            let Some(c) = rest.pop_front() else { continue };
            if c == ".." {
                todo.push((parent(&done), rest, links));
                continue;
            }
            let next = join(&done, &c);
            let mut texts: Vec<String> = Vec::new();
            let link = |s: Result<Option<Stat>, String>| s.ok().flatten().and_then(|s| s.link);
            for root in &v.roots {
                texts.extend(link(self.lstat(&join(root, next.trim_start_matches('/')))));
            }
            for &(target, source) in &binds {
                if target == next {
                    // Only its kind and mode are read: a bind shows its source followed.
                    let _ = self.stat(source);
                } else if is_below(&next, target) {
                    let below = &next[target.len()..];
                    texts.extend(link(
                        self.lstat(&join(source, below.trim_start_matches('/'))),
                    ));
                }
            }
            texts.extend(
                v.links
                    .iter()
                    .filter(|(t, _)| *t == next)
                    .map(|(_, text)| text.clone()),
            );
            if links < MAX_LINKS {
                for text in texts {
                    let mut more: VecDeque<String> = parts(&text).collect();
                    more.extend(rest.iter().cloned());
                    let from = if text.starts_with('/') {
                        "/".to_owned()
                    } else {
                        done.clone()
                    };
                    todo.push((from, more, links + 1));
                }
            }
            todo.push((next, rest, links));
        }
    }
}

/// What `path` is below the host directory `base`, each component looked at with `lstat`:
/// a symlink anywhere on the way is reported as [`PathKind::Symlink`] with where it is,
/// because mounting onto or from a path through a symlink would resolve it against the
/// wrong root. None when it does not exist. One walk for gather (which reads) and the
/// planner (which looks up what gather read), so both name the same paths.
fn kind_below(
    base: &str,
    path: &str,
    mut lstat: impl FnMut(&str) -> Fact<Option<Stat>>,
) -> Fact<Option<(PathKind, PathBuf)>> {
    let mut cur = base.to_owned();
    let mut shown = PathBuf::from("/");
    let mut last = None;
    for c in parts(path).filter(|c| c != "..") {
        cur = walk::join(&cur, &c);
        shown.push(&c);
        match lstat(&cur)? {
            Some(s) if s.kind == PathKind::Symlink => {
                return Ok(Some((PathKind::Symlink, shown)));
            }
            Some(s) => last = Some(s.kind),
            None => return Ok(None),
        }
    }
    let kind = match last {
        Some(kind) => kind,
        // No components: the base itself, which must exist.
        None => match lstat(&cur)? {
            Some(s) if s.kind == PathKind::Symlink => PathKind::Other,
            Some(s) => s.kind,
            None => {
                let e = std::io::Error::from_raw_os_error(libc::ENOENT);
                return Err(FactError::Failed(e.to_string()));
            }
        },
    };
    Ok(Some((kind, shown)))
}

fn lookup<'t>(table: &'t Table, path: &str) -> Fact<Option<&'t Stat>> {
    match table.get(path) {
        Some(Ok(s)) => Ok(s.as_ref()),
        Some(Err(e)) => Err(FactError::Failed(e.clone())),
        None => Err(not_gathered(path)),
    }
}

impl HostFacts {
    /// Reads what `needs` names below the host root. `cgroup` and `landlock_abi` are
    /// gathered by the caller (they need /proc/self and a syscall).
    pub fn gather(
        host: &Host,
        needs: &Needs,
        cgroup: CgroupFacts,
        landlock_abi: Option<u32>,
    ) -> HostFacts {
        let text = |e: std::io::Error| e.to_string();
        let users = host.passwd().map_err(text).map(|all| {
            all.into_iter()
                .filter(|u| needs.user_names.contains(&u.name) || needs.user_ids.contains(&u.uid))
                .collect()
        });
        let groups = host.groups().map_err(text).map(|all| {
            all.into_iter()
                .filter(|g| needs.group_names.contains(&g.name))
                .collect()
        });
        let claims = match &needs.claim {
            None => Ok(Claims::default()),
            Some((dir, name)) => host.id_slot(dir, name).and_then(|own| {
                Ok(Claims {
                    own,
                    used: host.id_slots_used(dir)?,
                })
            }),
        }
        .map_err(text);
        let mut r = Reader {
            host,
            lstat: Table::new(),
            stat: Table::new(),
        };
        for p in &needs.stat {
            let _ = r.stat(p);
        }
        for p in &needs.lstat {
            let _ = r.lstat(p);
        }
        for (base, path) in &needs.below {
            let _ = kind_below(base, path, |p| r.lstat(p).map_err(FactError::Failed));
        }
        let resolved: BTreeMap<String, Result<String, String>> = needs
            .resolve
            .iter()
            .map(|p| (p.clone(), host.resolve(p).map_err(text)))
            .collect();
        // What a bind source resolves to is what the planner asks about (is it a socket).
        for to in resolved.values().flatten() {
            let _ = r.stat(to);
        }
        r.view(&needs.view, &resolved);
        HostFacts {
            euid: host.euid,
            egid: host.egid,
            users,
            groups,
            passwd_path: host.path("/etc/passwd"),
            group_path: host.path("/etc/group"),
            nr_open: host.nr_open().map_err(text),
            nr_open_path: host.path("/proc/sys/fs/nr_open"),
            claims,
            cgroup,
            landlock_abi,
            network: needs.network.as_ref().map(|(name, dirs, leases)| {
                (
                    crate::profile::networks::find(name, dirs),
                    host.net_facts(leases, needs.network_ports),
                )
            }),
            lstat: r.lstat,
            stat: r.stat,
            resolved,
        }
    }

    pub fn user_by_name(&self, name: &str) -> Result<Option<&User>, &str> {
        match &self.users {
            Ok(u) => Ok(u.iter().find(|u| u.name == name)),
            Err(e) => Err(e),
        }
    }

    pub fn user_by_id(&self, uid: u32) -> Option<&User> {
        self.users.as_ref().ok()?.iter().find(|u| u.uid == uid)
    }

    pub fn group_by_name(&self, name: &str) -> Result<Option<&Group>, &str> {
        match &self.groups {
            Ok(g) => Ok(g.iter().find(|g| g.name == name)),
            Err(e) => Err(e),
        }
    }

    /// What a host path is, not following a final symlink; None when it does not exist.
    pub fn lstat(&self, path: &str) -> Fact<Option<&Stat>> {
        lookup(&self.lstat, path)
    }

    /// What a host path is, following symlinks; None when it (or its target) does not exist.
    pub fn stat(&self, path: &str) -> Fact<Option<&Stat>> {
        lookup(&self.stat, path)
    }

    /// The kind of a host path, following symlinks (bind sources may be symlinks on the
    /// host; kernel files are masked by what they are). An error is not absence: a mask
    /// skipped on it would leave the path open.
    pub fn kind(&self, path: &str) -> Fact<Option<PathKind>> {
        Ok(self.stat(path)?.map(|s| s.kind))
    }

    /// What `path` is below the host directory `base`; a symlink on the way is reported as
    /// [`PathKind::Symlink`] with where it is. None when it does not exist.
    pub fn kind_below(&self, base: &str, path: &str) -> Fact<Option<(PathKind, PathBuf)>> {
        kind_below(base, path, |p| Ok(self.lstat(p)?.cloned()))
    }

    /// A bind source with every symlink on it resolved inside the host root; see
    /// [`Host::resolve`] for the links it refuses to follow.
    pub fn resolved(&self, path: &str) -> Fact<&str> {
        match self.resolved.get(path) {
            Some(Ok(r)) => Ok(r),
            Some(Err(e)) => Err(FactError::Failed(e.clone())),
            None => Err(not_gathered(path)),
        }
    }

    /// Whether a host path is a unix socket (a host IPC endpoint); one that cannot be
    /// inspected is not known to be one.
    pub fn is_socket(&self, path: &str) -> Fact<bool> {
        match self.stat(path) {
            Ok(s) => Ok(s.is_some_and(|s| s.socket)),
            Err(FactError::Failed(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The (uid, gid) owning a path, not following a final symlink; None when it does not
    /// exist. An owner that cannot be read decides nothing: treated as missing.
    pub fn owner(&self, path: &str) -> Fact<Option<(u32, u32)>> {
        match self.lstat(path) {
            Ok(s) => Ok(s.map(|s| (s.uid, s.gid))),
            Err(FactError::Failed(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
