//! System call names and groups as profiles write them: systemd's `@group` names with
//! systemd's contents (generated into `syscall_groups.rs`), single syscall names, and errno
//! names. Pure lookups; turning names into numbers for this architecture is the sandbox's job.

use super::syscall_groups::GROUPS;
use std::collections::BTreeSet;

/// The members of a group, nested groups not yet expanded.
fn group(name: &str) -> Option<&'static [&'static str]> {
    GROUPS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, members)| *members)
}

/// Every group name, for suggestions.
fn group_names() -> impl Iterator<Item = &'static str> {
    GROUPS.iter().map(|(n, _, _)| *n)
}

/// Whether `name` is a system call on some architecture: listed in systemd's `@known`, or
/// known to libseccomp (which also knows calls newer than the systemd the table came from).
pub fn is_syscall(name: &str) -> bool {
    group("@known").is_some_and(|k| k.contains(&name))
        || libseccomp::ScmpSyscall::from_name(name).is_ok()
}

/// Adds the syscalls `entry` names (a group, recursively, or a single call) to `out`.
/// Returns false when the name is neither.
pub fn expand(entry: &str, out: &mut BTreeSet<String>) -> bool {
    if entry.starts_with('@') {
        let Some(members) = group(entry) else {
            return false;
        };
        for m in members {
            // The tables name only real calls and groups: no need to check each.
            if m.starts_with('@') {
                expand(m, out);
            } else {
                out.insert((*m).to_owned());
            }
        }
        true
    } else if is_syscall(entry) {
        out.insert(entry.to_owned());
        true
    } else {
        false
    }
}

/// The names validation suggests from when an entry is unknown.
pub fn all_names() -> impl Iterator<Item = &'static str> {
    group_names().chain(group("@known").unwrap_or(&[]).iter().copied())
}

/// This platform's errno values with their C names (nix's Debug names are the C names).
fn errnos() -> impl Iterator<Item = (i32, String)> {
    (1..200)
        .map(nix::errno::Errno::from_raw)
        .filter(|e| *e != nix::errno::Errno::UnknownErrno)
        .map(|e| (e as i32, format!("{e:?}")))
}

/// The errno a name like "EPERM" means.
pub fn errno(name: &str) -> Option<i32> {
    errnos().find(|(_, n)| n == name).map(|(e, _)| e)
}

/// Every errno name, for suggestions.
pub fn errno_names() -> Vec<String> {
    errnos().map(|(_, n)| n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_nest_and_expand() {
        let mut s = BTreeSet::new();
        assert!(expand("@system-service", &mut s));
        // @system-service includes @default and @file-system by reference.
        assert!(s.contains("execve") && s.contains("openat") && s.contains("ioctl"));
        assert!(!s.contains("reboot") && !s.contains("init_module"));
        let mut m = BTreeSet::new();
        assert!(expand("@mount", &mut m));
        assert!(m.contains("mount") && m.contains("pivot_root") && m.contains("open_tree"));
    }

    #[test]
    fn single_names_and_unknowns() {
        let mut s = BTreeSet::new();
        assert!(expand("keyctl", &mut s));
        assert!(expand("landlock_create_ruleset", &mut s));
        assert!(!expand("keyctll", &mut s));
        assert!(!expand("@nonsense", &mut s));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn errno_names_resolve() {
        assert_eq!(errno("EPERM"), Some(libc::EPERM));
        assert_eq!(errno("ENOSYS"), Some(libc::ENOSYS));
        assert_eq!(errno("EPREM"), None);
        assert!(errno_names().iter().any(|n| n == "EACCES"));
    }
}
