//! Errors of the apply stage: which step, which call with which arguments, the errno, and
//! a hint an admin can act on.

use nix::errno::Errno;
use std::fmt;

/// The kernel calls whose refusals stockade can explain. A failing call names itself with
/// [`SetupError::failed_in`], so its hint follows from what failed, not from its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// clone(2) of init into its first namespaces.
    Clone,
    /// unshare(2) of the namespaces init creates itself.
    Unshare,
    /// A write of init's uid_map or gid_map.
    IdMap,
    /// execve(2) of the service.
    Execve,
}

#[derive(Debug)]
pub struct SetupError {
    /// What stockade was doing, in words ("mount the private /tmp").
    pub step: String,
    /// The call and its arguments (`mount("tmpfs", "/newroot/tmp", ...)`).
    pub call: String,
    pub errno: Option<Errno>,
    /// Which explainable call failed, when it is one.
    pub kind: Option<Call>,
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
            kind: None,
            detail: None,
            exit_code: 125,
        }
    }

    pub fn other(step: impl Into<String>, detail: impl Into<String>) -> Self {
        SetupError {
            step: step.into(),
            call: String::new(),
            errno: None,
            kind: None,
            detail: Some(detail.into()),
            exit_code: 125,
        }
    }

    pub fn with_code(mut self, code: u8) -> Self {
        self.exit_code = code;
        self
    }

    /// Marks the failure as one of the calls with a hint.
    pub fn failed_in(mut self, kind: Call) -> Self {
        self.kind = Some(kind);
        self
    }

    fn hint(&self) -> Option<&'static str> {
        match (self.kind?, self.errno?) {
            (Call::Clone | Call::Unshare, Errno::EPERM | Errno::ENOSPC) => Some(
                "the kernel refused to create namespaces: check kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0 and that no seccomp filter or container forbids unshare",
            ),
            (Call::IdMap, Errno::EPERM) => Some(
                "the kernel refused the id map: without root you can map only your own uid and gid",
            ),
            (Call::Execve, Errno::ENOENT) => Some(
                "the program does not exist inside the sandbox; check exec.command and the sandbox root",
            ),
            (Call::Execve, Errno::EACCES) => Some(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_follow_the_failing_call_not_its_text() {
        let e = SetupError::sys("start the service", "execve(\"/x\")", Errno::ENOENT);
        assert!(!e.to_string().contains("hint"), "{e}");
        let e = e.failed_in(Call::Execve);
        assert!(
            e.to_string().contains("(hint: the program does not exist"),
            "{e}"
        );
        // The text says clone, the call is not: no namespace hint.
        let e = SetupError::sys("x", "clone(CLONE_NEWUSER)", Errno::EPERM);
        assert!(!e.to_string().contains("hint"), "{e}");
        let e = SetupError::sys("x", "unshare(...)", Errno::EPERM).failed_in(Call::Unshare);
        assert!(
            e.to_string().contains("refused to create namespaces"),
            "{e}"
        );
        let e =
            SetupError::sys("x", "write(\"/proc/1/uid_map\")", Errno::EPERM).failed_in(Call::IdMap);
        assert!(e.to_string().contains("refused the id map"), "{e}");
    }
}
