//! What this machine has: users and groups, the kind of a path, the caller's ids.
//!
//! Readers only; nothing here writes. Every reader works below `root`, so tests point it at a
//! temporary directory holding `etc/passwd`, `etc/group` and whatever paths they need.

mod cgroup;
mod facts;
mod instances;
pub mod net;
pub mod stats;
pub(crate) mod walk;

pub use cgroup::CgroupFacts;
pub use facts::{Fact, FactError, HostFacts, Needs};
pub use instances::ProcId;

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// A user from `etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// A group from `etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
}

/// What a path is, without following a final symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    Dir,
    File,
    Symlink,
    Other,
}

/// What a path is, with its permission bits, its owner and, for a symlink, its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub kind: PathKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub link: Option<String>,
    /// A unix socket (a host IPC endpoint); its kind is [`PathKind::Other`].
    pub socket: bool,
}

/// A view of the host below `root`.
#[derive(Debug, Clone)]
pub struct Host {
    pub root: PathBuf,
    /// The effective uid and gid stockade runs with.
    pub euid: u32,
    pub egid: u32,
}

impl Host {
    /// The real host, as seen by this process.
    pub fn current() -> Self {
        Host {
            root: PathBuf::from("/"),
            euid: nix::unistd::geteuid().as_raw(),
            egid: nix::unistd::getegid().as_raw(),
        }
    }

    /// `path` (absolute, as the profile writes it) below the host root.
    pub fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    fn passwd(&self) -> io::Result<Vec<User>> {
        let text = read_optional(&self.path("/etc/passwd"))?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 7).then_some(())?;
                Some(User {
                    name: f[0].to_owned(),
                    uid: f[2].parse().ok()?,
                    gid: f[3].parse().ok()?,
                    home: f[5].to_owned(),
                })
            })
            .collect())
    }

    fn groups(&self) -> io::Result<Vec<Group>> {
        let text = read_optional(&self.path("/etc/group"))?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 3).then_some(())?;
                Some(Group {
                    name: f[0].to_owned(),
                    gid: f[2].parse().ok()?,
                })
            })
            .collect())
    }

    /// The user `spec` names (a name, or a uid) in `etc/passwd`, with the gids of the
    /// groups in `etc/group` that list it as a member. (`stockade exec --user` reads the
    /// sandbox's files, with the sandbox's root as this root.)
    pub fn user_with_groups(&self, spec: &str) -> io::Result<Option<(User, Vec<u32>)>> {
        let users = self.passwd()?;
        let by_id = spec.parse::<u32>().ok();
        let Some(user) = users
            .iter()
            .find(|u| u.name == spec)
            .or_else(|| users.iter().find(|u| Some(u.uid) == by_id))
            .cloned()
        else {
            return Ok(None);
        };
        let text = read_optional(&self.path("/etc/group"))?;
        let mut groups: Vec<u32> = text
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                let member = f.get(3)?.split(',').any(|m| m == user.name);
                member.then(|| f[2].parse().ok())?
            })
            .collect();
        groups.sort_unstable();
        groups.dedup();
        groups.retain(|&g| g != user.gid);
        groups.insert(0, user.gid);
        Ok(Some((user, groups)))
    }

    /// `path` with every symlink on it resolved, inside the host root (absolute links start
    /// again at the root). A missing tail is kept as written. Only links that root (or the
    /// caller) made in a directory no one else can write are followed: anyone else's link
    /// is an error naming it. The sandbox later opens the result refusing any symlink, so
    /// one swapped in after planning is refused, not followed.
    pub fn resolve(&self, path: &str) -> io::Result<String> {
        let mut done = PathBuf::from("/");
        let mut todo: std::collections::VecDeque<std::ffi::OsString> =
            walk_parts(Path::new(path)).collect();
        let mut links = 0;
        while let Some(c) = todo.pop_front() {
            if c == ".." {
                done.pop();
                continue;
            }
            let next = done.join(&c);
            let shown = next.to_string_lossy().into_owned();
            match fs::symlink_metadata(self.path(&shown)) {
                Ok(m) if m.file_type().is_symlink() => {
                    use std::os::unix::fs::MetadataExt;
                    let trusted = |uid: u32| uid == 0 || uid == self.euid;
                    let dir = fs::metadata(self.path(&done.to_string_lossy()))?;
                    if !trusted(m.uid()) || !trusted(dir.uid()) || dir.mode() & 0o022 != 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::PermissionDenied,
                            format!("`{shown}` is a symlink that someone other than root can change (link owner uid {}, directory mode {:04o}); name the real path", m.uid(), dir.mode() & 0o7777),
                        ));
                    }
                    links += 1;
                    if links > 40 {
                        return Err(io::Error::from_raw_os_error(libc::ELOOP));
                    }
                    let target = match fs::read_link(self.path(&shown)) {
                        Ok(t) => t,
                        // Replaced by something else meanwhile: look at it again.
                        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                            todo.push_front(c);
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    if target.is_absolute() {
                        done = PathBuf::from("/");
                    }
                    for (i, part) in walk_parts(&target).enumerate() {
                        todo.insert(i, part);
                    }
                }
                Ok(_) => done = next,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    done = next;
                    done.extend(todo.drain(..));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(done.to_string_lossy().into_owned())
    }

    /// What `path` is below the host root, following a final symlink only when `follow`
    /// says so (then [`Stat::link`] is always None); None when it does not exist.
    pub fn stat(&self, path: &str, follow: bool) -> io::Result<Option<Stat>> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
        let full = self.path(path);
        let m = match if follow {
            fs::metadata(&full)
        } else {
            fs::symlink_metadata(&full)
        } {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let (kind, link) = if m.file_type().is_symlink() {
            let text = fs::read_link(&full)?;
            (PathKind::Symlink, Some(text.to_string_lossy().into_owned()))
        } else if m.is_dir() {
            (PathKind::Dir, None)
        } else if m.is_file() {
            (PathKind::File, None)
        } else {
            (PathKind::Other, None)
        };
        Ok(Some(Stat {
            kind,
            mode: m.permissions().mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            link,
            socket: m.file_type().is_socket(),
        }))
    }

    /// The kernel's ceiling for `RLIMIT_NOFILE` (`fs.nr_open`); None when the file is absent.
    pub fn nr_open(&self) -> io::Result<Option<u64>> {
        let text = read_optional(&self.path("/proc/sys/fs/nr_open"))?;
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("/proc/sys/fs/nr_open holds `{text}`, not a number"),
            )
        })
    }

    /// The id-range slot claimed for profile `name` in the claims directory `dir`
    /// (`by-name/NAME` holds the slot number).
    pub fn id_slot(&self, dir: &Path, name: &str) -> io::Result<Option<u32>> {
        let file = self.path(&dir.join("by-name").join(name).display().to_string());
        match fs::read_to_string(file) {
            Ok(text) => Ok(text.trim().parse().ok()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every claimed slot (`by-slot/N`, a symlink to the profile name that holds it).
    pub fn id_slots_used(&self, dir: &Path) -> io::Result<Vec<u32>> {
        let slots = self.path(&dir.join("by-slot").display().to_string());
        match fs::read_dir(slots) {
            Ok(entries) => Ok(entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

/// The names a path walk visits, `..` kept (it may climb out of a symlink's directory).
fn walk_parts(path: &Path) -> impl Iterator<Item = std::ffi::OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_owned()),
        Component::ParentDir => Some("..".into()),
        _ => None,
    })
}

fn read_optional(path: &Path) -> io::Result<String> {
    match fs::read_to_string(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_with(files: &[(&str, &str)]) -> (tempfile::TempDir, Host) {
        let dir = tempfile::tempdir().unwrap();
        for (p, text) in files {
            let full = dir.path().join(p);
            fs::create_dir_all(full.parent().unwrap()).unwrap();
            fs::write(full, text).unwrap();
        }
        let host = Host {
            root: dir.path().to_owned(),
            euid: 0,
            egid: 0,
        };
        (dir, host)
    }

    #[test]
    fn a_user_is_found_by_name_or_uid_with_its_groups() {
        let (_d, host) = host_with(&[
            (
                "etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\nredis:x:101:102::/var/lib/redis:/bin/false\n",
            ),
            (
                "etc/group",
                "root:x:0:\nredis:x:102:\nadm:x:4:redis,other\ntty:x:5:someone\n",
            ),
        ]);
        let (u, groups) = host.user_with_groups("redis").unwrap().unwrap();
        assert_eq!(
            (u.uid, u.gid, u.home.as_str()),
            (101, 102, "/var/lib/redis")
        );
        assert_eq!(
            groups,
            [102, 4],
            "the primary group first, then memberships"
        );
        assert_eq!(host.user_with_groups("0").unwrap().unwrap().0.name, "root");
        assert!(host.user_with_groups("nosuchuser").unwrap().is_none());
        assert!(host.user_with_groups("4242").unwrap().is_none());
    }

    #[test]
    fn reads_users_and_groups_below_root() {
        let (_d, host) = host_with(&[
            ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nredis:x:101:105::/var/lib/redis:/usr/sbin/nologin\n"),
            ("etc/group", "root:x:0:\nredis:x:105:\n"),
        ]);
        let needs = Needs {
            user_names: vec!["redis".into(), "nobody".into()],
            group_names: vec!["redis".into()],
            ..Default::default()
        };
        let facts = HostFacts::gather(&host, &needs, CgroupFacts::default(), None);
        let u = facts.user_by_name("redis").unwrap().unwrap();
        assert_eq!((u.uid, u.gid), (101, 105));
        assert_eq!(facts.group_by_name("redis").unwrap().unwrap().gid, 105);
        assert!(facts.user_by_name("nobody").unwrap().is_none());
        // Only what was asked for is kept: root is on the host but not gathered.
        assert!(facts.user_by_name("root").unwrap().is_none());
    }

    #[test]
    fn resolve_follows_links_inside_the_root() {
        let (d, host) = host_with(&[("srv/real/file", "x"), ("run/stub", "y")]);
        std::os::unix::fs::symlink("real", d.path().join("srv/link")).unwrap();
        std::os::unix::fs::symlink("/run", d.path().join("srv/abs")).unwrap();
        std::os::unix::fs::symlink("../../run/stub", d.path().join("srv/real/up")).unwrap();
        assert_eq!(host.resolve("/srv/link/file").unwrap(), "/srv/real/file");
        assert_eq!(host.resolve("/srv/abs/stub").unwrap(), "/run/stub");
        assert_eq!(host.resolve("/srv/link/up").unwrap(), "/run/stub");
        assert_eq!(
            host.resolve("/srv/link/missing/x").unwrap(),
            "/srv/real/missing/x"
        );
        std::os::unix::fs::symlink("loop", d.path().join("srv/loop")).unwrap();
        assert!(host.resolve("/srv/loop").is_err());
        // A link in a directory others can write is not followed.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(d.path().join("srv"), fs::Permissions::from_mode(0o777)).unwrap();
        let e = host.resolve("/srv/link/file").unwrap_err().to_string();
        assert!(e.contains("/srv/link") && e.contains("0777"), "{e}");
    }

    #[test]
    fn kind_below_reports_symlinks_on_the_way() {
        let (d, host) = host_with(&[("srv/real/file", "x")]);
        std::os::unix::fs::symlink("real", d.path().join("srv/link")).unwrap();
        let needs = Needs {
            below: ["/link/file", "/real/file", "/nope"]
                .map(|p| ("/srv".to_owned(), p.to_owned()))
                .to_vec(),
            ..Default::default()
        };
        let facts = HostFacts::gather(&host, &needs, CgroupFacts::default(), None);
        let (k, at) = facts.kind_below("/srv", "/link/file").unwrap().unwrap();
        assert_eq!(k, PathKind::Symlink);
        assert_eq!(at, PathBuf::from("/link"));
        assert_eq!(
            facts.kind_below("/srv", "/real/file").unwrap().unwrap().0,
            PathKind::File
        );
        assert!(facts.kind_below("/srv", "/nope").unwrap().is_none());
    }

    /// A path never gathered is not "absent": asking for it is a bug, loud in tests.
    #[test]
    #[cfg_attr(debug_assertions, should_panic(expected = "plan::needs did not name"))]
    fn a_path_not_gathered_is_not_absent() {
        let (_d, host) = host_with(&[("srv/file", "x")]);
        let needs = Needs {
            stat: vec!["/srv/file".into()],
            ..Default::default()
        };
        let facts = HostFacts::gather(&host, &needs, CgroupFacts::default(), None);
        assert_eq!(facts.kind("/srv/file"), Ok(Some(PathKind::File)));
        let e = facts.kind("/srv/other").unwrap_err();
        assert_eq!(e, FactError::NotGathered("/srv/other".into()));
    }
}
