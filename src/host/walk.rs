//! The path arithmetic of path walks, shared by the planner (which walks the gathered host
//! facts) and [`super::HostFacts::gather`] (which reads what those walks may visit): both
//! must name every path with the same string, or the planner would ask for a path the
//! facts hold under another name. Pure string functions; no I/O.

/// The names a walk visits in `path`, `..` kept (it may climb out of a symlink's directory).
pub(crate) fn parts(path: &str) -> impl Iterator<Item = String> + '_ {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_owned)
}

/// `name` inside `dir`; `dir` itself when `name` is empty.
pub(crate) fn join(dir: &str, name: &str) -> String {
    if name.is_empty() {
        dir.to_owned()
    } else if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The directory holding `path` ("/" for "/" itself).
pub(crate) fn parent(path: &str) -> String {
    match path.rsplit_once('/') {
        Some(("", _)) | None => "/".into(),
        Some((p, _)) => p.into(),
    }
}

/// Whether `path` lies strictly below `ancestor` (every path lies below "/").
pub(crate) fn is_below(path: &str, ancestor: &str) -> bool {
    ancestor == "/" || path.starts_with(&format!("{ancestor}/"))
}

/// How many symlinks a walk follows before it gives up, as the kernel's path lookup does
/// (ELOOP after 40).
pub(crate) const MAX_LINKS: u32 = 40;
