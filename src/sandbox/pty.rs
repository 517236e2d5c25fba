//! `stockade exec --tty`: relays the caller's terminal and the pseudo-terminal the command
//! got from the sandbox's devpts. The caller's terminal is put in raw mode (keys, Ctrl-C
//! included, go to the command's terminal, whose own line discipline handles them) and
//! restored when the relay ends, however it ends; a window-size change follows the
//! caller's (SIGWINCH). The command's terminal is only ever reached by its master end,
//! which the joining process handed over; nothing here opens a path of the sandbox.

use super::error::{check, SetupError};
use super::ServiceEnd;
use crate::sys;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::termios::{self, SetArg, Termios};
use nix::unistd::Pid;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// The caller's terminal in raw mode; its mode as it was comes back on drop.
struct Raw {
    saved: Termios,
}

impl Raw {
    fn enter() -> Result<Raw, SetupError> {
        let stdin = std::io::stdin();
        let saved = check(
            termios::tcgetattr(stdin.as_fd()),
            "read the terminal's mode",
            || "tcgetattr(0)".into(),
        )?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        check(
            termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw),
            "put the terminal in raw mode",
            || "tcsetattr(0, TCSANOW, raw)".into(),
        )?;
        Ok(Raw { saved })
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        // TCSADRAIN: what the command wrote reaches the screen in the mode it was meant for.
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSADRAIN, &self.saved);
    }
}

/// Writes all of `buf` to `fd`, waiting while it is full.
fn write_all(fd: BorrowedFd, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                let mut p = [PollFd::new(fd, PollFlags::POLLOUT)];
                let _ = poll(&mut p, PollTimeout::from(100u16));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Relays until the command ends, then passes on what it wrote last.
pub fn relay(
    master: OwnedFd,
    command: Pid,
    sfd: &nix::sys::signalfd::SignalFd,
) -> Result<ServiceEnd, SetupError> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let _raw = Raw::enter()?;
    let mut winch = || {
        if let Ok(ws) = sys::window_size(stdin.as_fd()) {
            let _ = sys::set_window_size(master.as_fd(), &ws);
        }
    };
    // The size may have changed while the command started.
    winch();
    let mut buf = vec![0u8; 16 * 1024];
    let mut stdin_open = true;
    let mut master_open = true;
    loop {
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if master_open {
            fds.push(PollFd::new(master.as_fd(), PollFlags::POLLIN));
        }
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(SetupError::sys("relay the terminal", "poll()", e)),
            Ok(_) => {}
        }
        let ready = |f: &PollFd| {
            f.revents().is_some_and(|r| {
                r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
            })
        };
        let signals = ready(&fds[0]);
        let from_master = master_open && ready(&fds[1]);
        let from_stdin = stdin_open && ready(&fds[fds.len() - 1]);
        drop(fds);
        if from_master {
            match nix::unistd::read(master.as_raw_fd(), &mut buf) {
                // EIO: no process has the terminal end open any more.
                Ok(0) | Err(Errno::EIO) => master_open = false,
                Ok(n) => {
                    // The caller's terminal went away: nothing left to show output on.
                    if write_all(stdout.as_fd(), &buf[..n]).is_err() {
                        master_open = false;
                    }
                }
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(e) => return Err(SetupError::sys("relay the terminal", "read(master)", e)),
            }
        }
        if from_stdin {
            match nix::unistd::read(stdin.as_raw_fd(), &mut buf) {
                Ok(0) | Err(Errno::EIO) => stdin_open = false,
                Ok(n) => {
                    let _ = write_all(master.as_fd(), &buf[..n]);
                }
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(_) => stdin_open = false,
            }
        }
        if signals {
            if let Some(end) = super::join::on_signals(command, sfd, &mut winch)? {
                drain(&master, stdout.as_fd(), &mut buf);
                return Ok(end);
            }
        }
    }
}

/// What the command wrote before it ended and is still in the terminal's buffer.
fn drain(master: &OwnedFd, out: BorrowedFd, buf: &mut [u8]) {
    loop {
        let mut p = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        match poll(&mut p, PollTimeout::ZERO) {
            Ok(n) if n > 0 => {}
            _ => return,
        }
        match nix::unistd::read(master.as_raw_fd(), buf) {
            Ok(n) if n > 0 => {
                if write_all(out, &buf[..n]).is_err() {
                    return;
                }
            }
            _ => return,
        }
    }
}
