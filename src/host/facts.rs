//! The host facts a plan is built from, gathered once before planning: the users and groups
//! the profile names, the kinds of the kernel files the planner masks, the kernel's
//! `fs.nr_open`, the id-range claims, the volumes' owners, cgroup facts and the landlock ABI.
//!
//! The planner says what it needs ([`Needs`], a pure function of the profile in
//! `plan::needs`); [`HostFacts::gather`] reads exactly that below the host root, and the
//! planner then reads the facts instead of the host. Read errors are kept as text: the
//! planner reports them at the profile value that needed the fact.

use super::{CgroupFacts, Group, Host, PathKind, User};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What the planner will ask about this host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Users named by the profile, and users looked up by id (for their primary group).
    pub user_names: Vec<String>,
    pub user_ids: Vec<u32>,
    pub group_names: Vec<String>,
    /// Kernel files whose kind decides a mask (a fresh /proc shows the host kernel's files).
    pub kernel_paths: Vec<String>,
    /// The id-range claims directory and the profile's name, when the planner may claim.
    pub claim: Option<(PathBuf, String)>,
    /// Host paths whose owner decides something (volumes made before id ranges).
    pub owners: Vec<String>,
}

/// The id-range claims as found in the claims directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    /// The slot this profile holds already.
    pub own: Option<u32>,
    /// Every claimed slot.
    pub used: Vec<u32>,
}

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
    /// The kind of each kernel path asked for (following symlinks); None when absent,
    /// Err when it could not be inspected.
    pub kernel: BTreeMap<String, Result<Option<PathKind>, String>>,
    /// `fs.nr_open`; None when the file is absent.
    pub nr_open: Result<Option<u64>, String>,
    pub nr_open_path: PathBuf,
    pub claims: Result<Claims, String>,
    /// The (uid, gid) owning each path asked for; None when it does not exist.
    pub owners: BTreeMap<String, Option<(u32, u32)>>,
    pub cgroup: CgroupFacts,
    /// The landlock ABI the kernel offers (None: no landlock).
    pub landlock_abi: Option<u32>,
    /// The host's filesystem, for the path questions the planner still asks as it plans
    /// (mount sources and targets, the sandbox's view); see the plan module's header.
    pub fs: Host,
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
        let kernel = needs
            .kernel_paths
            .iter()
            .map(|p| (p.clone(), host.kind(p).map_err(text)))
            .collect();
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
        let owners = needs
            .owners
            .iter()
            // An owner that cannot be read decides nothing: treated as missing.
            .map(|p| (p.clone(), host.owner(p).ok().flatten()))
            .collect();
        HostFacts {
            euid: host.euid,
            egid: host.egid,
            users,
            groups,
            passwd_path: host.path("/etc/passwd"),
            group_path: host.path("/etc/group"),
            kernel,
            nr_open: host.nr_open().map_err(text),
            nr_open_path: host.path("/proc/sys/fs/nr_open"),
            claims,
            owners,
            cgroup,
            landlock_abi,
            fs: host.clone(),
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

    /// The kind of a kernel path: None when absent (or not gathered), an error when it could
    /// not be inspected (which is not absence: a mask skipped on it would leave it open).
    pub fn kernel_kind(&self, path: &str) -> Result<Option<PathKind>, String> {
        self.kernel.get(path).cloned().unwrap_or(Ok(None))
    }

    pub fn owner(&self, path: &str) -> Option<(u32, u32)> {
        self.owners.get(path).copied().flatten()
    }
}
