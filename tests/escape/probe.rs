//! The escape probe: runs inside a hardened stockade sandbox and tries, one named check at a
//! time, what a compromised service would try. Each check prints `name<TAB>verdict`, the
//! verdict being the errno name the attempt failed with, a signal name, or a word the test
//! knows (`OK` means the attempt worked). tests/integration/escape.rs asserts every verdict.
//!
//! It refuses to run unless it is a low pid of its own pid namespace: several attempts
//! (reboot, settime, kill) must never reach the host.
#![allow(unsafe_code)] // a probe makes raw system calls on purpose
#![allow(clippy::undocumented_unsafe_blocks)]

use std::ffi::CString;
use std::io::Read;

fn errno_name(e: i32) -> String {
    format!("{:?}", nix::errno::Errno::from_raw(e))
}

/// The verdict of a raw syscall return value.
fn verdict(ret: libc::c_long) -> String {
    if ret < 0 {
        errno_name(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        "OK".into()
    }
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn open(path: &str, flags: i32) -> String {
    let p = c(path);
    let fd = unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC, 0o644) };
    let v = verdict(fd.into());
    if fd >= 0 {
        unsafe { libc::close(fd) };
    }
    v
}

/// Connects a stream socket to a unix path, or to an abstract name when it starts with '@'.
fn connect_unix(path: &str) -> String {
    use std::os::linux::net::SocketAddrExt;
    let addr = match path.strip_prefix('@') {
        Some(name) => std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()),
        None => std::os::unix::net::SocketAddr::from_pathname(path),
    };
    match addr.and_then(|a| std::os::unix::net::UnixStream::connect_addr(&a)) {
        Ok(_) => "OK".into(),
        Err(e) => e
            .raw_os_error()
            .map_or_else(|| format!("{:?}", e.kind()), errno_name),
    }
}

/// socket(2) with a raw domain argument (the full register, high bits included).
fn socket_of(domain: u64) -> String {
    let fd = unsafe { libc::syscall(libc::SYS_socket, domain, libc::SOCK_STREAM, 0) };
    let v = verdict(fd);
    if fd >= 0 {
        unsafe { libc::close(fd as i32) };
    }
    v
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

/// Runs `f` in a forked child and reports how the child ended: its exit code as a verdict
/// number, or the signal that killed it.
fn in_child(f: impl FnOnce() -> i32) -> String {
    match unsafe { libc::fork() } {
        0 => {
            let code = f();
            unsafe { libc::_exit(code) }
        }
        pid if pid > 0 => {
            let mut status = 0;
            unsafe { libc::waitpid(pid, &mut status, 0) };
            if libc::WIFSIGNALED(status) {
                format!(
                    "{:?}",
                    nix::sys::signal::Signal::try_from(libc::WTERMSIG(status)).unwrap()
                )
            } else {
                format!("exit {}", libc::WEXITSTATUS(status))
            }
        }
        _ => verdict(-1),
    }
}

fn connect(addr: &str) -> String {
    match std::net::TcpStream::connect_timeout(
        &addr.parse().unwrap(),
        std::time::Duration::from_secs(2),
    ) {
        Ok(_) => "OK".into(),
        Err(e) => e
            .raw_os_error()
            .map_or_else(|| format!("{:?}", e.kind()), errno_name),
    }
}

fn status_field(name: &str) -> String {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

/// Execs `prog caps` in a child and reports whether it gained anything: `nothing-gained`
/// when it ran with no capabilities and the caller's uid, else what it reported, or the
/// errno exec failed with.
fn exec_report(prog: &str) -> String {
    let (r, w) = nix::unistd::pipe().unwrap();
    let mut r = std::fs::File::from(r);
    let prog = c(prog);
    let child = in_child(|| {
        use std::os::fd::AsRawFd;
        unsafe { libc::dup2(w.as_raw_fd(), 1) };
        let argv = [prog.as_ptr(), c"caps".as_ptr(), std::ptr::null()];
        unsafe { libc::execv(prog.as_ptr(), argv.as_ptr()) };
        println!("exec-failed {}", verdict(-1));
        127
    });
    drop(w);
    let mut out = String::new();
    r.read_to_string(&mut out).unwrap();
    let me = unsafe { libc::geteuid() }.to_string();
    let zero = |s: &str| s.trim_start_matches('0').is_empty();
    match out.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["exec-failed", errno] => errno.to_string(),
        [euid, eff, prm] if *euid == me && zero(eff) && zero(prm) => "nothing-gained".into(),
        _ => format!("{child}: {}", out.trim()),
    }
}

/// Copies /bin/true into an anonymous memory file and executes it, as a payload dropped by
/// an attacker would be: `OK` when it ran.
fn memfd_exec() -> String {
    let fd = unsafe { libc::memfd_create(c"payload".as_ptr(), 0) };
    if fd < 0 {
        return format!("memfd_create:{}", verdict(-1));
    }
    let bytes = std::fs::read("/bin/true").unwrap();
    let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    assert_eq!(n as usize, bytes.len());
    let ran = in_child(|| {
        let argv = [c"true".as_ptr(), std::ptr::null()];
        let envp = [std::ptr::null()];
        unsafe { libc::fexecve(fd, argv.as_ptr(), envp.as_ptr()) };
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0) + 100
    });
    match ran.as_str() {
        "exit 0" => "OK".into(),
        other => match other
            .strip_prefix("exit ")
            .and_then(|c| c.parse::<i32>().ok())
        {
            Some(code) if code > 100 => format!("exec:{}", errno_name(code - 100)),
            _ => other.into(),
        },
    }
}

/// A named attempt and how to make it.
type Check = (&'static str, Box<dyn Fn() -> String>);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("caps") {
        // Run as the exec'ed setuid / file-capability copy: report what it gained.
        println!(
            "{} {} {}",
            unsafe { libc::geteuid() },
            status_field("CapEff"),
            status_field("CapPrm")
        );
        return;
    }
    if args.get(1).map(String::as_str) == Some("memfd-exec") {
        // Harmless anywhere (it runs /bin/true), so not behind the pid gate: the test of the
        // seccomp fallback runs without a pid namespace.
        println!("memfd-exec\t{}", memfd_exec());
        return;
    }
    let pid = std::process::id();
    if pid > 10 {
        eprintln!("escape-probe: pid {pid} is not a small pid of a sandbox's pid namespace; refusing to run");
        std::process::exit(2);
    }
    let checks: Vec<Check> = vec![
        // Processes and signals.
        (
            "signal-host-process",
            Box::new(|| {
                let host: i32 = env("PROBE_HOST_PID").parse().unwrap_or(1);
                verdict(unsafe { libc::kill(host, 0) }.into())
            }),
        ),
        (
            "ptrace-host-process",
            Box::new(|| {
                let host: i32 = env("PROBE_HOST_PID").parse().unwrap_or(1);
                verdict(unsafe { libc::ptrace(libc::PTRACE_ATTACH, host, 0, 0) })
            }),
        ),
        (
            "ptrace-init",
            Box::new(|| verdict(unsafe { libc::ptrace(libc::PTRACE_ATTACH, 1, 0, 0) })),
        ),
        (
            "proc-lists-only-sandbox",
            Box::new(|| {
                let n = std::fs::read_dir("/proc")
                    .unwrap()
                    .flatten()
                    .filter(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .chars()
                            .all(|c| c.is_ascii_digit())
                    })
                    .count();
                if n <= 4 {
                    "few".into()
                } else {
                    format!("{n} processes")
                }
            }),
        ),
        // Read-only filesystems.
        (
            "write-root",
            Box::new(|| open("/etc/escape-probe", libc::O_CREAT | libc::O_WRONLY)),
        ),
        (
            "write-read-only-bind",
            Box::new(|| open("/tmp/data/escape-probe", libc::O_CREAT | libc::O_WRONLY)),
        ),
        (
            "write-stockade-binary",
            Box::new(|| open(&env("PROBE_STOCKADE"), libc::O_WRONLY)),
        ),
        (
            "write-proc-1-exe",
            Box::new(|| open("/proc/1/exe", libc::O_WRONLY)),
        ),
        (
            "write-proc-sys",
            Box::new(|| open("/proc/sys/kernel/hostname", libc::O_WRONLY)),
        ),
        (
            "write-sysrq-trigger",
            Box::new(|| open("/proc/sysrq-trigger", libc::O_WRONLY)),
        ),
        (
            "write-sys",
            Box::new(|| open("/sys/class/net/lo/mtu", libc::O_WRONLY)),
        ),
        (
            "cgroup-procs",
            Box::new(|| open("/sys/fs/cgroup/cgroup.procs", libc::O_WRONLY)),
        ),
        // Masked kernel files.
        (
            "read-proc-keys",
            Box::new(|| open("/proc/keys", libc::O_RDONLY)),
        ),
        (
            "read-proc-timer-list",
            Box::new(|| open("/proc/timer_list", libc::O_RDONLY)),
        ),
        (
            "read-proc-kcore",
            Box::new(|| open("/proc/kcore", libc::O_RDONLY)),
        ),
        (
            "read-sys-firmware",
            Box::new(|| open("/sys/firmware", libc::O_RDONLY | libc::O_DIRECTORY)),
        ),
        (
            "open-dev-mem",
            Box::new(|| open("/dev/mem", libc::O_RDONLY)),
        ),
        (
            "mknod-block-device",
            Box::new(|| {
                let p = c("/tmp/escape-disk");
                verdict(
                    unsafe { libc::mknod(p.as_ptr(), libc::S_IFBLK | 0o600, libc::makedev(8, 0)) }
                        .into(),
                )
            }),
        ),
        // Mounts and namespaces.
        (
            "mount",
            Box::new(|| {
                let (s, t, f) = (c("tmpfs"), c("/tmp"), c("tmpfs"));
                verdict(
                    unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), 0, std::ptr::null()) }
                        .into(),
                )
            }),
        ),
        (
            "fsopen",
            Box::new(|| {
                let f = c("tmpfs");
                verdict(unsafe { libc::syscall(libc::SYS_fsopen, f.as_ptr(), 0) })
            }),
        ),
        (
            "open-tree",
            Box::new(|| {
                let p = c("/");
                verdict(unsafe {
                    libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, p.as_ptr(), 1)
                })
            }),
        ),
        (
            "pivot-root",
            Box::new(|| {
                let p = c("/tmp");
                verdict(unsafe { libc::syscall(libc::SYS_pivot_root, p.as_ptr(), p.as_ptr()) })
            }),
        ),
        (
            "chroot",
            Box::new(|| {
                let p = c("/tmp");
                verdict(unsafe { libc::chroot(p.as_ptr()) }.into())
            }),
        ),
        (
            "unshare-user",
            Box::new(|| verdict(unsafe { libc::unshare(libc::CLONE_NEWUSER) }.into())),
        ),
        (
            "unshare-mount",
            Box::new(|| verdict(unsafe { libc::unshare(libc::CLONE_NEWNS) }.into())),
        ),
        (
            "setns",
            Box::new(|| verdict(unsafe { libc::setns(0, 0) }.into())),
        ),
        (
            "clone-new-user",
            Box::new(|| {
                let ret = unsafe {
                    libc::syscall(
                        libc::SYS_clone,
                        libc::CLONE_NEWUSER | libc::SIGCHLD,
                        0,
                        0,
                        0,
                        0,
                    )
                };
                if ret == 0 {
                    unsafe { libc::_exit(0) };
                }
                if ret > 0 {
                    unsafe { libc::waitpid(ret as i32, std::ptr::null_mut(), 0) };
                }
                verdict(ret)
            }),
        ),
        (
            "clone3",
            Box::new(|| verdict(unsafe { libc::syscall(libc::SYS_clone3, 0, 0) })),
        ),
        // Kernel-wide operations.
        (
            "load-module",
            Box::new(|| {
                let p = c("");
                verdict(unsafe { libc::syscall(libc::SYS_finit_module, -1, p.as_ptr(), 0) })
            }),
        ),
        (
            "reboot",
            Box::new(|| {
                // CAD_OFF only changes what ctrl-alt-del does; inside a pid namespace it is EINVAL.
                verdict(unsafe {
                    libc::syscall(
                        libc::SYS_reboot,
                        libc::LINUX_REBOOT_MAGIC1,
                        libc::LINUX_REBOOT_MAGIC2,
                        libc::LINUX_REBOOT_CMD_CAD_OFF,
                        0,
                    )
                })
            }),
        ),
        (
            "set-clock",
            Box::new(|| {
                let mut now = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
                verdict(unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &now) }.into())
            }),
        ),
        (
            "sethostname",
            Box::new(|| {
                let n = c("escaped");
                verdict(unsafe { libc::sethostname(n.as_ptr(), 7) }.into())
            }),
        ),
        (
            "bpf",
            Box::new(|| verdict(unsafe { libc::syscall(libc::SYS_bpf, 5, 0, 0) })),
        ),
        (
            "perf-event-open",
            Box::new(|| {
                verdict(unsafe { libc::syscall(libc::SYS_perf_event_open, 0, 0, -1, -1, 0) })
            }),
        ),
        (
            "keyctl",
            Box::new(|| verdict(unsafe { libc::syscall(libc::SYS_keyctl, 0, -3, 0) })),
        ),
        (
            "add-key",
            Box::new(|| verdict(unsafe { libc::syscall(libc::SYS_add_key, 0, 0, 0, 0, -3) })),
        ),
        (
            "userfaultfd",
            Box::new(|| verdict(unsafe { libc::syscall(libc::SYS_userfaultfd, 0) })),
        ),
        (
            "io-uring",
            Box::new(|| verdict(unsafe { libc::syscall(libc::SYS_io_uring_setup, 1, 0) })),
        ),
        (
            "open-by-handle-at",
            Box::new(|| {
                verdict(unsafe { libc::syscall(libc::SYS_open_by_handle_at, libc::AT_FDCWD, 0, 0) })
            }),
        ),
        (
            "raw-socket",
            Box::new(|| {
                let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
                verdict(fd.into())
            }),
        ),
        // Terminal injection, with and without garbage in the request's high bits.
        (
            "tiocsti",
            Box::new(|| {
                let ch = b'x';
                verdict(unsafe { libc::syscall(libc::SYS_ioctl, 0, libc::TIOCSTI, &ch) })
            }),
        ),
        (
            "tiocsti-high-bits",
            Box::new(|| {
                let ch = b'x';
                verdict(unsafe {
                    libc::syscall(
                        libc::SYS_ioctl,
                        0,
                        0xffff_ffff_0000_0000u64 | libc::TIOCSTI,
                        &ch,
                    )
                })
            }),
        ),
        (
            "tioclinux",
            Box::new(|| {
                let sub = 6u8;
                verdict(unsafe { libc::syscall(libc::SYS_ioctl, 0, 0x541C, &sub) })
            }),
        ),
        (
            "controlling-tty",
            Box::new(|| open("/dev/tty", libc::O_RDWR)),
        ),
        // The host's descriptors and working directory.
        (
            "inherited-host-fd",
            Box::new(|| {
                let fd: i32 = env("PROBE_HOST_FD").parse().unwrap_or(7);
                verdict(unsafe { libc::fcntl(fd, libc::F_GETFD) }.into())
            }),
        ),
        (
            "extra-fds",
            Box::new(|| {
                let n = std::fs::read_dir("/proc/self/fd").unwrap().count();
                // 0, 1, 2 and the directory being read.
                if n <= 4 {
                    "none".into()
                } else {
                    format!("{n} open")
                }
            }),
        ),
        (
            "host-cwd",
            Box::new(|| open(&env("PROBE_CWD_MARKER"), libc::O_RDONLY)),
        ),
        (
            "init-cwd",
            Box::new(|| {
                open(
                    &format!("/proc/1/cwd/{}", env("PROBE_CWD_MARKER")),
                    libc::O_RDONLY,
                )
            }),
        ),
        // Network.
        (
            "connect-host-loopback",
            Box::new(|| connect(&format!("127.0.0.1:{}", env("PROBE_HOST_PORT")))),
        ),
        ("connect-outside", Box::new(|| connect("192.0.2.1:80"))),
        // Host IPC endpoints: none is visible, as a path or in the abstract namespace.
        (
            "system-bus",
            Box::new(|| connect_unix("/run/dbus/system_bus_socket")),
        ),
        (
            "systemd-private",
            Box::new(|| connect_unix("/run/systemd/private")),
        ),
        (
            "journal-socket",
            Box::new(|| connect_unix("/run/systemd/journal/socket")),
        ),
        (
            "host-path-socket",
            Box::new(|| connect_unix(&env("PROBE_HOST_SOCKET"))),
        ),
        (
            "host-abstract-socket",
            Box::new(|| connect_unix(&format!("@{}", env("PROBE_HOST_ABSTRACT")))),
        ),
        // Socket families outside the default list.
        ("af-vsock", Box::new(|| socket_of(libc::AF_VSOCK as u64))),
        (
            "af-bluetooth",
            Box::new(|| socket_of(libc::AF_BLUETOOTH as u64)),
        ),
        ("af-alg", Box::new(|| socket_of(libc::AF_ALG as u64))),
        ("af-beyond-max", Box::new(|| socket_of(200))),
        (
            "af-vsock-high-bits",
            Box::new(|| socket_of((1 << 32) | libc::AF_VSOCK as u64)),
        ),
        // Root inside is not root outside.
        (
            "read-etc-shadow",
            Box::new(|| open("/etc/shadow", libc::O_RDONLY)),
        ),
        (
            "list-root-home",
            Box::new(|| open("/root", libc::O_RDONLY | libc::O_DIRECTORY)),
        ),
        (
            "uid-map-host-root",
            Box::new(|| {
                let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
                let maps_root = map
                    .lines()
                    .any(|l| l.split_whitespace().nth(1) == Some("0"));
                if maps_root { "maps-host-root" } else { "none" }.into()
            }),
        ),
        // stockade's own state: other sandboxes' volumes, claims and notify relays.
        (
            "stockade-state",
            Box::new(|| {
                open(
                    "/var/lib/stockade/volumes",
                    libc::O_RDONLY | libc::O_DIRECTORY,
                )
            }),
        ),
        (
            "stockade-run",
            Box::new(|| open("/run/stockade", libc::O_RDONLY | libc::O_DIRECTORY)),
        ),
        // Privilege regained through exec: a setuid-root copy of the probe, and a copy with
        // the file capability cap_sys_admin+ep.
        (
            "exec-setuid-root",
            Box::new(|| exec_report("/tmp/privileged/setuid-probe")),
        ),
        (
            "exec-file-capability",
            Box::new(|| exec_report("/tmp/privileged/filecap-probe")),
        ),
        // Other architectures' system call tables.
        (
            "x32-syscall",
            Box::new(|| {
                in_child(|| unsafe { libc::syscall(0x4000_0000 | libc::SYS_getpid) } as i32)
            }),
        ),
        (
            "i386-syscall",
            Box::new(|| {
                in_child(|| {
                    let mut ret: i32 = 20; // getpid in the i386 table
                    unsafe { std::arch::asm!("int 0x80", inout("eax") ret) };
                    ret
                })
            }),
        ),
    ];
    for (name, check) in checks {
        println!("{name}\t{}", check());
    }
}
