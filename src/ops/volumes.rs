//! Named volumes (`[[mount]] type = "volume"`) as an admin manages them: list them with their
//! size on disk and host owner, make one ahead of time, remove one. Volumes live in
//! `plan::VOLUME_DIR`; every name is checked with the same rule as in profiles, and nothing
//! here follows a symlink out of the volume directory.

use crate::plan::VOLUME_DIR;
use crate::profile::validate::volume_name;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Volume {
    pub name: String,
    pub path: PathBuf,
    pub uid: u32,
    pub gid: u32,
    /// Bytes on disk (allocated blocks), the volume's own filesystem only.
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("volume name: {0}")]
    Name(String),
    #[error("no volume `{name}` in {dir}")]
    Missing { name: String, dir: String },
    #[error("volume `{name}` already exists at {path}")]
    Exists { name: String, path: String },
    #[error(
        "{path} is not a directory stockade made (it is a symlink or a file); refusing to touch it"
    )]
    NotADirectory { path: String },
    #[error(
        "volume `{name}` is in use by the running sandbox {instance} (pid {pid}); stop it first"
    )]
    InUse {
        name: String,
        instance: String,
        pid: u32,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Where volumes live; a test points it elsewhere.
pub fn dir() -> PathBuf {
    PathBuf::from(VOLUME_DIR)
}

fn checked(name: &str) -> Result<(), Error> {
    volume_name(name).map_err(Error::Name)
}

/// Bytes allocated below `path`, not following symlinks nor crossing into other mounts.
fn disk_usage(path: &Path, dev: u64) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.dev() != dev {
        return 0;
    }
    let mut total = meta.blocks() * 512;
    if meta.is_dir() {
        for e in std::fs::read_dir(path).into_iter().flatten().flatten() {
            total += disk_usage(&e.path(), dev);
        }
    }
    total
}

/// The volume `name` in `dir`, refusing anything that is not a real directory.
pub fn inspect(dir: &Path, name: &str) -> Result<Volume, Error> {
    checked(name)?;
    let path = dir.join(name);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Missing {
                name: name.to_owned(),
                dir: dir.display().to_string(),
            })
        }
        Err(e) => return Err(io(&path)(e)),
    };
    if !meta.is_dir() {
        return Err(Error::NotADirectory {
            path: path.display().to_string(),
        });
    }
    Ok(Volume {
        name: name.to_owned(),
        size: disk_usage(&path, meta.dev()),
        uid: meta.uid(),
        gid: meta.gid(),
        path,
    })
}

/// Every volume in `dir`, by name; entries that are not valid volumes are skipped.
pub fn list(dir: &Path) -> Result<Vec<Volume>, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut out: Vec<Volume> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter_map(|n| inspect(dir, &n).ok())
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Makes volume `name` ahead of its first use, as the sandbox would: mode 0700, owned by
/// `owner` (host ids; root when not given).
pub fn create(dir: &Path, name: &str, owner: Option<(u32, u32)>) -> Result<Volume, Error> {
    checked(name)?;
    let path = dir.join(name);
    if std::fs::symlink_metadata(&path).is_ok() {
        return Err(Error::Exists {
            name: name.to_owned(),
            path: path.display().to_string(),
        });
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(io(dir))?;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&path)
        .map_err(io(&path))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).map_err(io(&path))?;
    let (uid, gid) = owner.unwrap_or((0, 0));
    nix::unistd::chown(
        &path,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .map_err(|e| io(&path)(e.into()))?;
    inspect(dir, name)
}

/// Removes volume `name` and what is in it. `in_use` names the running sandbox (instance,
/// supervisor pid) that mounts it, if any: then nothing is removed.
pub fn remove(dir: &Path, name: &str, in_use: Option<(String, u32)>) -> Result<Volume, Error> {
    let v = inspect(dir, name)?;
    if let Some((instance, pid)) = in_use {
        return Err(Error::InUse {
            name: name.to_owned(),
            instance,
            pid,
        });
    }
    // std's remove_dir_all removes symlinks themselves and never what they point to.
    std::fs::remove_dir_all(&v.path).map_err(io(&v.path))?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_list_inspect_and_remove_without_following_symlinks() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("volumes");
        let outside = base.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();

        let v = create(&dir, "data", Some((1234, 5678))).unwrap();
        assert_eq!((v.uid, v.gid), (1234, 5678));
        assert_eq!(std::fs::metadata(&v.path).unwrap().mode() & 0o777, 0o700);
        std::fs::write(v.path.join("file"), vec![1u8; 64 << 10]).unwrap();
        std::os::unix::fs::symlink(&outside, v.path.join("link")).unwrap();
        assert!(matches!(
            create(&dir, "data", None),
            Err(Error::Exists { .. })
        ));
        let all = list(&dir).unwrap();
        assert_eq!(all.len(), 1);
        assert!(all[0].size >= 64 << 10, "{all:?}");

        // A symlink planted as a volume is refused, and never followed.
        std::os::unix::fs::symlink(&outside, dir.join("evil")).unwrap();
        assert!(matches!(
            inspect(&dir, "evil"),
            Err(Error::NotADirectory { .. })
        ));
        assert!(matches!(
            remove(&dir, "evil", None),
            Err(Error::NotADirectory { .. })
        ));
        for bad in ["../x", ".hidden", "a/b", ""] {
            assert!(
                matches!(remove(&dir, bad, None), Err(Error::Name(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            remove(&dir, "data", Some(("redis".into(), 42))),
            Err(Error::InUse { .. })
        ));
        assert!(dir.join("data/file").exists());
        remove(&dir, "data", None).unwrap();
        assert!(!dir.join("data").exists());
        assert!(
            outside.join("keep").exists(),
            "followed a symlink out of the volume"
        );
        assert!(matches!(
            remove(&dir, "data", None),
            Err(Error::Missing { .. })
        ));
    }
}
