//! The service's own sd_notify socket: a datagram socket the supervisor binds on the host
//! (in a root-only directory) and the plan binds into the sandbox, so the host's notify
//! socket is never visible inside. The file is removed when the guard drops.

use super::error::SetupError;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

pub struct NotifySocket {
    sock: UnixDatagram,
    path: PathBuf,
    owner: u32,
}

impl NotifySocket {
    pub fn create(path: &Path) -> Result<NotifySocket, SetupError> {
        let step = "create the service's notify socket";
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| SetupError::other(step, format!("{}: {e}", dir.display())))?;
        }
        let _ = std::fs::remove_file(path);
        let sock = UnixDatagram::bind(path)
            .map_err(|e| SetupError::other(step, format!("{}: {e}", path.display())))?;
        // Any user inside may notify; outside, the 0700 directory keeps others away.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
            .map_err(|e| SetupError::other(step, e.to_string()))?;
        sock.set_nonblocking(true)
            .map_err(|e| SetupError::other(step, e.to_string()))?;
        Ok(NotifySocket {
            sock,
            path: path.to_owned(),
            owner: std::process::id(),
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// The next pending message, with lines the host must not see from a sandbox removed
    /// (MAINPID= would name a pid from the sandbox's namespace).
    pub fn receive(&self) -> Option<String> {
        let mut buf = [0u8; 4096];
        let n = self.sock.recv(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]);
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("MAINPID=") && !l.starts_with("FDSTORE") && !l.is_empty())
            .collect();
        (!kept.is_empty()).then(|| kept.join("\n"))
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        if std::process::id() == self.owner {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
