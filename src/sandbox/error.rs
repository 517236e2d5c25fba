//! Errors of the apply stage: which step, which call with which arguments, the errno, and
//! a hint an admin can act on.

use nix::errno::Errno;
use std::fmt;

#[derive(Debug)]
pub struct SetupError {
    /// What stockade was doing, in words ("mount the private /tmp").
    pub step: String,
    /// The call and its arguments (`mount("tmpfs", "/newroot/tmp", ...)`).
    pub call: String,
    pub errno: Option<Errno>,
    /// Extra detail when no errno applies (a crate's error).
    pub detail: Option<String>,
    pub exit_code: u8,
}

impl SetupError {
    pub fn sys(step: impl Into<String>, call: impl Into<String>, errno: Errno) -> Self {
        SetupError {
            step: step.into(),
            call: call.into(),
            errno: Some(errno),
            detail: None,
            exit_code: 125,
        }
    }

    pub fn other(step: impl Into<String>, detail: impl Into<String>) -> Self {
        SetupError {
            step: step.into(),
            call: String::new(),
            errno: None,
            detail: Some(detail.into()),
            exit_code: 125,
        }
    }

    pub fn with_code(mut self, code: u8) -> Self {
        self.exit_code = code;
        self
    }

    fn hint(&self) -> Option<&'static str> {
        let call = self.call.as_str();
        match self.errno? {
            Errno::EPERM | Errno::ENOSPC if call.starts_with("clone") || call.starts_with("unshare") => Some(
                "the kernel refused to create namespaces: check kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0 and that no seccomp filter or container forbids unshare",
            ),
            Errno::EPERM if call.contains("uid_map") || call.contains("gid_map") => Some(
                "the kernel refused the id map: without root you can map only your own uid and gid",
            ),
            Errno::EPERM if call.starts_with("mount(\"proc\"") => Some(
                "a fresh /proc is refused when the host's /proc is partly hidden (for example inside a container); set filesystem.proc = false",
            ),
            Errno::ENOENT if call.starts_with("execve") => Some(
                "the program does not exist inside the sandbox; check exec.command and the sandbox root",
            ),
            Errno::EACCES if call.starts_with("execve") => Some(
                "the program is not executable for the service's user, or landlock/noexec forbids it",
            ),
            _ => None,
        }
    }
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.step)?;
        if !self.call.is_empty() {
            write!(f, ": {}", self.call)?;
        }
        if let Some(e) = self.errno {
            write!(f, " failed: {}", e.desc().to_lowercase())?;
        }
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        if let Some(h) = self.hint() {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for SetupError {}

/// Shorthand: run a nix call and name it on failure.
pub fn check<T>(
    r: nix::Result<T>,
    step: &str,
    call: impl FnOnce() -> String,
) -> Result<T, SetupError> {
    r.map_err(|e| SetupError::sys(step, call(), e))
}
