//! stockade's persistent state on the host: the id-range claims that give each profile's
//! sandboxes a host id range of their own, and volumes made before such ranges existed.
//!
//! Claims live in `IDS_DIR`: `by-slot/N` is a symlink naming the profile that holds range
//! N (symlink(2) is atomic and fails if the slot is taken, so two first starts cannot get
//! the same range), and `by-name/NAME` holds the slot, for the planner's one-file lookup.

use super::error::SetupError;
use crate::plan::{IdClaim, STATE_DIR};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` and its missing parents up to stockade's state directory, which only root
/// may list (mode 0711: a volume's owner still reaches the volume it is given).
pub fn state_dirs(dir: &Path) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let state = Path::new(STATE_DIR);
    if dir.starts_with(state) {
        std::fs::set_permissions(state, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| format!("{STATE_DIR}: {e}"))?;
    }
    Ok(())
}

/// Records a new claim; an existing one was read by the planner and is kept as it is.
pub fn claim(c: &IdClaim) -> Result<(), SetupError> {
    if !c.new {
        return Ok(());
    }
    let step = format!(
        "claim the host id range {}-{}",
        c.base(),
        c.base() + crate::plan::ID_RANGE - 1
    );
    let fail = |e: String| SetupError::other(&step, e);
    let (slots, names) = (c.dir.join("by-slot"), c.dir.join("by-name"));
    state_dirs(&slots).map_err(fail)?;
    state_dirs(&names).map_err(fail)?;
    let slot = slots.join(c.slot.to_string());
    match std::os::unix::fs::symlink(&c.name, &slot) {
        Ok(()) => {}
        // Another start of the same profile claimed it a moment ago: the same range.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let holder = std::fs::read_link(&slot).unwrap_or_default();
            if holder != Path::new(&c.name) {
                return Err(fail(format!(
                    "{} was claimed by `{}` while this sandbox was being planned; start it again",
                    slot.display(),
                    holder.display()
                )));
            }
        }
        Err(e) => return Err(fail(format!("symlink {}: {e}", slot.display()))),
    }
    // Written to a temporary name and renamed, so a reader never sees half a number.
    let by_name = names.join(&c.name);
    let tmp = names.join(format!(".{}.{}", c.name, std::process::id()));
    std::fs::write(&tmp, format!("{}\n", c.slot))
        .and_then(|()| std::fs::rename(&tmp, &by_name))
        .map_err(|e| fail(format!("{}: {e}", by_name.display())))?;
    tracing::info!(
        "profile {} now owns host ids {}-{} (its sandbox's root is host uid {})",
        c.name,
        c.base(),
        c.base() + crate::plan::ID_RANGE - 1,
        c.base()
    );
    Ok(())
}

/// Hands what host root owns inside `dir` (the volume included) to `uid`/`gid`, without
/// following symlinks or leaving the volume's filesystem. Returns how many entries changed.
pub fn carry_root_over(dir: &Path, uid: u32, gid: u32) -> Result<usize, String> {
    use nix::fcntl::AtFlags;
    use nix::unistd::{fchownat, Gid, Uid};
    use std::os::unix::fs::MetadataExt;
    let top = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut stack = vec![dir.to_owned()];
    let mut moved = 0;
    while let Some(path) = stack.pop() {
        let meta =
            std::fs::symlink_metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.dev() != top.dev() {
            continue;
        }
        let new_uid = (meta.uid() == 0).then_some(Uid::from_raw(uid));
        let new_gid = (meta.gid() == 0).then_some(Gid::from_raw(gid));
        if new_uid.is_some() || new_gid.is_some() {
            fchownat(None, &path, new_uid, new_gid, AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(|e| format!("chown {}: {e}", path.display()))?;
            // chown clears set-id bits; a volume keeps the mode the service gave it.
            if !meta.file_type().is_symlink() {
                std::fs::set_permissions(
                    &path,
                    std::fs::Permissions::from_mode(meta.mode() & 0o7777),
                )
                .map_err(|e| format!("chmod {}: {e}", path.display()))?;
            }
            moved += 1;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).map_err(|e| format!("{}: {e}", path.display()))? {
                stack.push(entry.map_err(|e| e.to_string())?.path());
            }
        }
    }
    Ok(moved)
}
