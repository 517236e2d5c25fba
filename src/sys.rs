//! The syscall facade: every `unsafe` block and raw syscall of stockade lives here, each
//! wrapped in a small safe function whose error names the call. Callers in every stage (host
//! readers such as getxattr, the sandbox's clone and mounts) use these wrappers and never see
//! a raw pointer. It decides nothing: no plan, no profile, no logging.
#![allow(unsafe_code)]

use nix::errno::Errno;
use nix::sys::signal::{SigHandler, Signal};
use nix::unistd::Pid;
use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Result of [`clone_namespaces`]: which side of the clone we are on.
pub enum Forked {
    Parent(Pid),
    Child,
}

/// clone(2) with namespace flags and fork semantics (no new stack: the child continues on a
/// copy of the parent's). Must be called while the process is single-threaded.
pub fn clone_namespaces(flags: libc::c_int) -> Result<Forked, Errno> {
    // SAFETY: with a null stack, clone behaves like fork(2): the child gets a copy of the
    // address space. The caller guarantees no other threads exist, so no lock can be held
    // by a thread that does not exist in the child.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::c_ulong::try_from(flags | libc::SIGCHLD).unwrap_or(0),
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    match ret {
        -1 => Err(Errno::last()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(Pid::from_raw(pid as libc::pid_t))),
    }
}

/// fork(2), for the single-threaded init process.
pub fn fork() -> Result<Forked, Errno> {
    // SAFETY: the init process is single-threaded (it was cloned from the single-threaded
    // supervisor and started no threads), so the child may run arbitrary code.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
    }
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// Installs a handler that does nothing. A pid namespace's init only receives signals it
/// has a handler for; the signal itself stays blocked and is collected with sigwait.
pub fn install_noop_handler(sig: Signal) -> Result<(), Errno> {
    let action = nix::sys::signal::SigAction::new(
        SigHandler::Handler(ignore_signal),
        nix::sys::signal::SaFlags::SA_RESTART,
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: the handler is an empty extern "C" function, trivially async-signal-safe.
    unsafe { nix::sys::signal::sigaction(sig, &action) }.map(drop)
}

/// Restores the default disposition, so the service starts with a clean signal state.
pub fn default_handler(sig: Signal) -> Result<(), Errno> {
    // SAFETY: SIG_DFL involves no code of ours.
    unsafe { nix::sys::signal::signal(sig, SigHandler::SigDfl) }.map(drop)
}

fn cpath(path: &Path) -> Result<CString, Errno> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const AT_RECURSIVE: libc::c_uint = 0x8000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Marks every descriptor from 3 up close-on-exec, so the service inherits only 0, 1, 2
/// while our own channel still reports an exec failure.
pub fn cloexec_from_3() -> Result<(), Errno> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes flags of this process's descriptors.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    Errno::result(ret).map(drop)
}

/// Brings the loopback interface of the current network namespace up.
pub fn loopback_up() -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads into the ifreq we own; the socket is open.
    Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
    // SAFETY: ifr_ifru is a union; SIOCGIFFLAGS filled its flags member.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: as above, with the flags we just set.
    Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) }).map(drop)
}

/// Ends a forked child at once, without running exit handlers or flushing buffers that
/// belong to the parent's copy of the process.
pub fn exit_now(code: u8) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(libc::c_int::from(code)) }
}

/// Reads an extended attribute; None when it is absent or unreadable. (Used by the host
/// readers to see systemd's `trusted.delegate` mark on a delegated cgroup.)
pub fn getxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = cpath(path).ok()?;
    let n = CString::new(name).ok()?;
    let mut buf = vec![0u8; 256];
    // SAFETY: both strings are NUL-terminated and live across the call; the buffer's real
    // length is passed, so the kernel writes at most that many bytes.
    let len = unsafe {
        libc::getxattr(
            p.as_ptr(),
            n.as_ptr(),
            buf.as_mut_ptr().cast::<libc::c_void>(),
            buf.len(),
        )
    };
    let len = usize::try_from(len).ok()?;
    buf.truncate(len);
    Some(buf)
}

/// The landlock ABI version the kernel offers, or None without landlock. (A host fact the
/// planner needs: which landlock features the plan may ask for.)
pub fn landlock_abi() -> Option<u32> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_long = 1;
    // SAFETY: with a NULL attribute pointer, size 0 and the VERSION flag the kernel reads
    // no memory and only returns the ABI number (or an error).
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(v).ok().filter(|&v| v > 0)
}

/// Ends this process by `sig` with its default action, so whoever waits for stockade (a
/// shell, systemd) sees the service's own death by signal. No core dump is written.
pub fn die_by_signal(sig: Signal) -> ! {
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
    let _ = default_handler(sig);
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(sig);
    let _ =
        nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_UNBLOCK, Some(&set), None);
    let _ = nix::sys::signal::raise(sig);
    // Only reached for signals whose default action is not to terminate.
    std::process::exit(128 + sig as i32)
}

/// Installs one classic-BPF seccomp filter on the calling thread. The caller holds
/// CAP_SYS_ADMIN in its user namespace or has set no_new_privs, as the kernel requires.
pub fn install_seccomp(insns: &[libc::sock_filter]) -> Result<(), Errno> {
    Errno::result(seccomp_set_filter(insns, 0)?).map(drop)
}

/// Installs a seccomp filter whose user-notification listener is returned (close-on-exec,
/// as the kernel makes it).
pub fn install_seccomp_listener(insns: &[libc::sock_filter]) -> Result<OwnedFd, Errno> {
    // With SECCOMP_FILTER_FLAG_NEW_LISTENER the kernel returns a new descriptor.
    owned(seccomp_set_filter(
        insns,
        libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32,
    )?)
}

/// seccomp(SECCOMP_SET_MODE_FILTER, flags, insns): the kernel's raw return value (or
/// E2BIG for a program too long to describe).
fn seccomp_set_filter(insns: &[libc::sock_filter], flags: u32) -> Result<libc::c_long, Errno> {
    let len = u16::try_from(insns.len()).map_err(|_| Errno::E2BIG)?;
    let prog = libc::sock_fprog {
        len,
        filter: insns.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points at `insns`, which outlives the call; the kernel copies the
    // program and does not keep the pointer.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const libc::sock_fprog,
        )
    };
    Ok(ret)
}

/// A copy of descriptor `fd` of process `pid` (pidfd_open, then pidfd_getfd, Linux 5.6).
pub fn take_fd(pid: Pid, fd: i32) -> Result<OwnedFd, Errno> {
    let pidfd = pidfd_open(u32::try_from(pid.as_raw()).map_err(|_| Errno::ESRCH)?)?;
    // SAFETY: no memory is passed; the flags argument must be 0.
    owned(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) })
}

/// Gives the process a new, empty session keyring, so the service cannot reach keys of the
/// session stockade was started from.
pub fn new_session_keyring() -> Result<(), Errno> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: a NULL name asks for a new anonymous keyring; no memory is passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            std::ptr::null::<libc::c_char>(),
        )
    };
    Errno::result(ret).map(drop)
}

// --- fd-based mounting (the new mount API): a path is resolved once to a descriptor and
// never walked again, so a symlink swapped in between cannot redirect a mount.

fn cstr(s: &str) -> Result<CString, Errno> {
    CString::new(s).map_err(|_| Errno::EINVAL)
}

fn owned(ret: libc::c_long) -> Result<OwnedFd, Errno> {
    let fd = Errno::result(ret)?;
    let raw = libc::c_int::try_from(fd).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// struct open_how of openat2(2) (libc's is non-exhaustive).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// openat2(2) to an O_PATH descriptor: `path` is resolved beneath `dir` as if `dir` were
/// the root, and any symlink on the way (or a /proc magic link) fails the call with ELOOP.
pub fn open_beneath(dir: BorrowedFd, path: &str) -> Result<OwnedFd, Errno> {
    let rel = path.trim_start_matches('/');
    let c = cstr(if rel.is_empty() { "." } else { rel })?;
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: `c` and `how` are valid and outlive the call; their size is passed.
    owned(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    })
}

/// open_tree(2): a detached copy of the mount (recursively: with everything below) at `fd`.
pub fn clone_tree(fd: BorrowedFd, recursive: bool) -> Result<OwnedFd, Errno> {
    let mut flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | libc::AT_EMPTY_PATH as u32;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: an empty, NUL-terminated path with AT_EMPTY_PATH names `fd` itself.
    owned(unsafe { libc::syscall(libc::SYS_open_tree, fd.as_raw_fd(), c"".as_ptr(), flags) })
}

/// Mount attributes for [`set_attrs`] and [`new_mount`].
pub mod attr {
    pub const RDONLY: u64 = super::MOUNT_ATTR_RDONLY;
    pub const NOSUID: u64 = libc::MOUNT_ATTR_NOSUID;
    pub const NODEV: u64 = libc::MOUNT_ATTR_NODEV;
    pub const NOEXEC: u64 = libc::MOUNT_ATTR_NOEXEC;
}

/// mount_setattr(2) on a (detached) mount descriptor, and everything below it.
pub fn set_attrs(fd: BorrowedFd, attrs: u64) -> Result<(), Errno> {
    let a = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: an empty path with AT_EMPTY_PATH names `fd`; `a` is a valid struct mount_attr
    // that outlives the call, its size passed alongside.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE,
            &a as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(ret).map(drop)
}

/// move_mount(2): attaches the detached mount `mnt` on the node `target` refers to.
pub fn attach(mnt: BorrowedFd, target: BorrowedFd) -> Result<(), Errno> {
    let flags = libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH;
    // SAFETY: empty paths with the EMPTY_PATH flags name the two descriptors themselves.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            flags,
        )
    };
    Errno::result(ret).map(drop)
}

/// A new, detached filesystem mount: fsopen(2), fsconfig(2) per option, fsmount(2).
pub fn new_mount(fstype: &str, options: &[(&str, &str)], attrs: u64) -> Result<OwnedFd, Errno> {
    let t = cstr(fstype)?;
    // SAFETY: `t` is a valid NUL-terminated string.
    let fs = owned(unsafe { libc::syscall(libc::SYS_fsopen, t.as_ptr(), libc::FSOPEN_CLOEXEC) })?;
    for (key, value) in options {
        let (k, v) = (cstr(key)?, cstr(value)?);
        // SAFETY: `k` and `v` are valid NUL-terminated strings for FSCONFIG_SET_STRING.
        Errno::result(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                libc::FSCONFIG_SET_STRING,
                k.as_ptr(),
                v.as_ptr(),
                0,
            )
        })?;
    }
    // SAFETY: FSCONFIG_CMD_CREATE takes no key or value.
    Errno::result(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            libc::FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    })?;
    // SAFETY: plain integer arguments.
    owned(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            libc::FSMOUNT_CLOEXEC,
            attrs,
        )
    })
}

/// Creates an empty regular file `name` in `dir` unless something exists there already;
/// never follows a symlink at `name`.
pub fn create_file_at(dir: BorrowedFd, name: &str) -> Result<(), Errno> {
    let c = cstr(name)?;
    let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW;
    // SAFETY: `c` is a valid NUL-terminated name; the descriptor is closed at once.
    match owned(libc::c_long::from(unsafe {
        libc::openat(dir.as_raw_fd(), c.as_ptr(), flags, 0o644)
    })) {
        Ok(_) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Resets every signal's disposition to the default, real-time signals included: ignored
/// signals stay ignored across exec, and the service must not inherit what its launcher's
/// parents chose.
pub fn reset_all_signal_dispositions() {
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // The kernel's struct sigaction, not libc's: glibc refuses to touch the two signals
        // it reserves for threads (32, 33), which a parent may still have left ignored.
        #[repr(C)]
        struct KernelSigaction {
            handler: libc::sighandler_t,
            flags: libc::c_ulong,
            restorer: usize,
            mask: u64,
        }
        let act = KernelSigaction {
            handler: libc::SIG_DFL,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        // SAFETY: SIG_DFL involves no handler code; `act` is valid for the call and its mask
        // size (8 bytes, the kernel's sigset) is passed; errors leave the signal as it was.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &act as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            )
        };
    }
}

// --- joining a running sandbox (`stockade exec`).

/// pidfd_open(2): a descriptor that names process `pid` for as long as it is held, so a
/// later call through it cannot reach another process given the same pid.
pub fn pidfd_open(pid: u32) -> Result<OwnedFd, Errno> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| Errno::ESRCH)?;
    // SAFETY: plain integer arguments; the kernel returns a new descriptor or an error.
    owned(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) })
}

/// Closes every descriptor of this process except 0, 1, 2 and those in `keep`.
pub fn close_all_but(keep: &[libc::c_int]) -> Result<(), Errno> {
    let mut keep: Vec<u32> = keep.iter().filter_map(|&f| u32::try_from(f).ok()).collect();
    keep.extend([0, 1, 2]);
    keep.sort_unstable();
    keep.dedup();
    let mut first = 0u32;
    for k in keep.into_iter().chain([u32::MAX]) {
        if k > first {
            // SAFETY: close_range only closes descriptors of this process; every descriptor
            // still in use is in `keep` and outside the range.
            let ret = unsafe { libc::syscall(libc::SYS_close_range, first, k - 1, 0u32) };
            Errno::result(ret)?;
        }
        first = k.saturating_add(1);
    }
    Ok(())
}

const TIOCGPTPEER: libc::c_ulong = 0x5441;

/// Unlocks the pseudo-terminal `master` and opens its peer (the terminal end) without a path
/// lookup: the peer is the one of this master's devpts instance, whatever the mounts say.
pub fn pty_peer(master: BorrowedFd) -> Result<OwnedFd, Errno> {
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from the pointer, which lives across the call.
    Errno::result(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) })?;
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes open flags by value and returns a new descriptor.
    owned(libc::c_long::from(unsafe {
        libc::ioctl(master.as_raw_fd(), TIOCGPTPEER, flags)
    }))
}

/// Makes the terminal `fd` the controlling terminal of this process (a session leader
/// without one).
pub fn set_controlling_tty(fd: BorrowedFd) -> Result<(), Errno> {
    // SAFETY: TIOCSCTTY takes an int by value (0: do not steal it from another session).
    Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) }).map(drop)
}

/// The window size of terminal `fd`.
pub fn window_size(fd: BorrowedFd) -> Result<libc::winsize, Errno> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one struct winsize into the one we own.
    Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) })?;
    Ok(ws)
}

/// Sets the window size of terminal `fd` (its foreground process group gets SIGWINCH).
pub fn set_window_size(fd: BorrowedFd, ws: &libc::winsize) -> Result<(), Errno> {
    // SAFETY: TIOCSWINSZ reads one struct winsize from a reference valid for the call.
    Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, ws) }).map(drop)
}

/// recvmsg(2) of one datagram into `buf`, with the descriptors that came with it (at most
/// four; close-on-exec). Returns the datagram's length (0: the peer is gone).
pub fn recv_with_fds(sock: BorrowedFd, buf: &mut [u8]) -> Result<(usize, Vec<OwnedFd>), Errno> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 4]);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = recvmsg::<UnixAddr>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: SCM_RIGHTS just installed these descriptors in this process, for this
            // call's caller alone; nothing else owns them.
            fds.extend(
                raw.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    Ok((msg.bytes, fds))
}

/// Whether the process a pidfd names is alive: pidfd_send_signal(2) of signal 0.
pub fn pidfd_alive(pidfd: BorrowedFd) -> Result<(), Errno> {
    // SAFETY: signal 0 with a NULL siginfo only checks the target exists and may be
    // signalled; no memory is passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    Errno::result(ret).map(drop)
}
