//! Connects the service's stdout and stderr to journald's stream socket, as systemd does for
//! units, so a service started from a shell logs under its own SYSLOG_IDENTIFIER.

use super::error::SetupError;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

const STREAM_SOCKET: &str = "/run/systemd/journal/stdout";

/// One stream: identifier, no unit, the given priority, no level prefixes, no forwarding.
fn stream(identifier: &str, priority: u8) -> Result<OwnedFd, SetupError> {
    let step = "connect the service's output to journald";
    let mut s = UnixStream::connect(STREAM_SOCKET).map_err(|e| {
        SetupError::other(
            step,
            format!("{STREAM_SOCKET}: {e} (is systemd-journald running?)"),
        )
    })?;
    s.shutdown(std::net::Shutdown::Read)
        .map_err(|e| SetupError::other(step, e.to_string()))?;
    s.write_all(format!("{identifier}\n\n{priority}\n0\n0\n0\n0\n").as_bytes())
        .map_err(|e| SetupError::other(step, e.to_string()))?;
    Ok(OwnedFd::from(s))
}

/// Streams for stdout (info) and stderr (error).
pub fn streams(identifier: &str) -> Result<(OwnedFd, OwnedFd), SetupError> {
    Ok((stream(identifier, 6)?, stream(identifier, 3)?))
}
