//! Compiles the plan's syscall policy into classic BPF for this architecture, in the
//! supervisor while init builds the filesystem (the default baseline was compiled at build
//! time): the programs reach init with the message that lets it fork the service, and the
//! service only hands finished programs to the kernel.
//!
//! libseccomp does the compiling (name → number per architecture, the architecture check,
//! x32 refusal on x86_64, argument comparisons); packages link it statically.
//! With an allow-list, two filters (the kernel applies the strictest verdict of all): the
//! policy, and fixed rules no profile turns off (terminal injection, namespace creation),
//! which would otherwise collide with the list's unconditional allow of ioctl and clone in
//! libseccomp's rule database. A deny-list holds the fixed rules itself.

use super::error::SetupError;
use crate::plan::{Filter, SysAction, SyscallPolicy, AF_MAX};

use libseccomp::{ScmpAction, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};

/// One compiled filter: the raw `struct sock_filter` array.
pub struct Program(pub Vec<libc::sock_filter>);

const INSN: usize = std::mem::size_of::<libc::sock_filter>();

/// The filters as the supervisor sends them (per filter, its instruction count as a u32,
/// then its `struct sock_filter`s) back to programs; None for a malformed message.
pub fn decode(mut bytes: &[u8]) -> Option<Vec<Program>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (n, rest) = bytes.split_first_chunk::<4>()?;
        let len = u32::from_ne_bytes(*n) as usize * INSN;
        let body = rest.get(..len)?;
        out.push(Program(body.chunks_exact(INSN).map(insn).collect()));
        bytes = &rest[len..];
    }
    Some(out)
}

fn insn(c: &[u8]) -> libc::sock_filter {
    libc::sock_filter {
        code: u16::from_ne_bytes([c[0], c[1]]),
        jt: c[2],
        jf: c[3],
        k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
    }
}

fn action(a: SysAction) -> ScmpAction {
    match a {
        SysAction::Allow => ScmpAction::Allow,
        SysAction::Errno(e) => ScmpAction::Errno(e),
        SysAction::KillProcess => ScmpAction::KillProcess,
        SysAction::Log => ScmpAction::Log,
    }
}

const TIOCSTI: u64 = 0x5412;
const MFD_NOEXEC_SEAL: u64 = 0x8;
const TIOCLINUX: u64 = 0x541C;

/// The default baseline, compiled when the code was built (the unit test
/// `baseline_bpf_is_current` keeps it equal to what libseccomp makes of it now): most
/// services run with it, and it saves them libseccomp's work at every start.
#[cfg(target_arch = "x86_64")]
const BASELINE_BPF: &[u8] = include_bytes!("baseline-x86_64.bpf");

/// A compile under way.
pub enum Compiling {
    Done(Result<Vec<u8>, SetupError>),
    /// libseccomp needs milliseconds for a long allow-list: a thread, which the scheduler
    /// puts on another CPU than the one init is about to wake up on, does it meanwhile.
    Thread(std::thread::JoinHandle<Result<Vec<u8>, SetupError>>),
}

impl Compiling {
    /// The filters, encoded for the start channel.
    pub fn finish(self) -> Result<Vec<u8>, SetupError> {
        match self {
            Compiling::Done(r) => r,
            Compiling::Thread(t) => t.join().unwrap_or_else(|_| {
                Err(SetupError::other(
                    "compile the seccomp filter",
                    "the compiling thread failed",
                ))
            }),
        }
    }
}

/// Starts compiling `policy`; only after the sandbox's init exists (a user namespace cannot
/// be created by a process with threads).
pub fn start(policy: &SyscallPolicy) -> Compiling {
    // The plan decided whether this is the baseline compiled at build time.
    #[cfg(target_arch = "x86_64")]
    if policy.prebuilt {
        return Compiling::Done(Ok(BASELINE_BPF.to_vec()));
    }
    let policy = policy.filter.clone();
    match std::thread::Builder::new()
        .name("seccomp".into())
        .spawn(move || compile_now(&policy))
    {
        Ok(t) => Compiling::Thread(t),
        Err(e) => Compiling::Done(Err(SetupError::other(
            "compile the seccomp filter",
            format!("cannot start a thread: {e}"),
        ))),
    }
}

fn compile_now(policy: &Filter) -> Result<Vec<u8>, SetupError> {
    let step = "compile the seccomp filter";
    let fail = |e: libseccomp::error::SeccompError| SetupError::other(step, e.to_string());

    // Under --explain the policy's denials go to the supervisor's listener, which answers
    // with the same errno; the fixed rules keep failing at once.
    let policy_action = |a: SysAction| match a {
        SysAction::Errno(_) if policy.notify => ScmpAction::Notify,
        a => action(a),
    };
    let mut main = new_filter(policy_action(policy.default)).map_err(fail)?;
    let listed = policy_action(policy.listed_action);
    for name in &policy.listed {
        // A name this libseccomp cannot place on this architecture has no number to
        // filter: it cannot be called here either, except through a newer kernel ABI, and
        // an allow-list denies those anyway.
        let Ok(nr) = ScmpSyscall::from_name(name) else {
            continue;
        };
        main.add_rule(listed, nr).map_err(fail)?;
    }

    // Without an allow-list the fixed rules fit in the same filter, unless the profile
    // names one of their calls itself: one filter is one program less to build and run.
    if policy.default == SysAction::Allow && !FIXED.iter().any(|n| policy.listed.contains(*n)) {
        add_fixed(&mut main, policy).map_err(fail)?;
        return export(&main);
    }
    let mut fixed = new_filter(ScmpAction::Allow).map_err(fail)?;
    add_fixed(&mut fixed, policy).map_err(fail)?;
    // The fixed rules first: installing a filter is itself a system call, which the
    // policy may deny.
    let mut both = export(&fixed)?;
    both.extend(export(&main)?);
    Ok(both)
}

/// The calls the fixed rules decide on.
const FIXED: [&str; 8] = [
    "ioctl",
    "clone",
    "clone3",
    "unshare",
    "setns",
    "socket",
    "socketpair",
    "memfd_create",
];

/// Rules no profile turns off: terminal injection, namespaces without CAP_SYS_ADMIN, socket
/// families outside the profile's list, executable memory files when exec is locked.
fn add_fixed(
    f: &mut ScmpFilterContext,
    policy: &Filter,
) -> Result<(), libseccomp::error::SeccompError> {
    let eperm = ScmpAction::Errno(libc::EPERM);
    // The family is an int: the low 32 bits are compared, and anything at or above AF_MAX
    // in the full register (a newer kernel's family, or high-bit garbage) is refused too.
    let no_family = ScmpAction::Errno(libc::EAFNOSUPPORT);
    for call in ["socket", "socketpair"] {
        let nr = ScmpSyscall::from_name(call)?;
        for family in (0..AF_MAX).filter(|f| !policy.families.contains(f)) {
            f.add_rule_conditional(
                no_family,
                nr,
                &[ScmpArgCompare::new(
                    0,
                    ScmpCompareOp::MaskedEqual(0xffff_ffff),
                    family as u64,
                )],
            )?;
        }
        f.add_rule_conditional(
            no_family,
            nr,
            &[ScmpArgCompare::new(
                0,
                ScmpCompareOp::GreaterEqual,
                AF_MAX as u64,
            )],
        )?;
    }
    if policy.memfd_noexec_seal {
        f.add_rule_conditional(
            eperm,
            ScmpSyscall::from_name("memfd_create")?,
            &[ScmpArgCompare::new(
                1,
                ScmpCompareOp::MaskedEqual(MFD_NOEXEC_SEAL),
                0,
            )],
        )?;
    }
    // ioctl's request is an int: compare only the low 32 bits, or garbage in the high bits
    // would slip past an equality test while the kernel still sees TIOCSTI.
    for request in [TIOCSTI, TIOCLINUX] {
        f.add_rule_conditional(
            eperm,
            ScmpSyscall::from_name("ioctl")?,
            &[ScmpArgCompare::new(
                1,
                ScmpCompareOp::MaskedEqual(0xffff_ffff),
                request,
            )],
        )?;
    }
    if policy.restrict_namespaces {
        for name in ["unshare", "setns"] {
            f.add_rule(eperm, ScmpSyscall::from_name(name)?)?;
        }
        let clone = ScmpSyscall::from_name("clone")?;
        // Every namespace kind the kernel has, from the one table of them.
        for row in crate::plan::Namespace::ALL {
            let flag = row.flag as u64;
            f.add_rule_conditional(
                eperm,
                clone,
                &[ScmpArgCompare::new(
                    0,
                    ScmpCompareOp::MaskedEqual(flag),
                    flag,
                )],
            )?;
        }
        // clone3 passes its flags in memory a filter cannot read; ENOSYS makes libc fall
        // back to clone, whose flags the rules above see.
        f.add_rule(
            ScmpAction::Errno(libc::ENOSYS),
            ScmpSyscall::from_name("clone3")?,
        )?;
    }
    Ok(())
}

fn new_filter(default: ScmpAction) -> Result<ScmpFilterContext, libseccomp::error::SeccompError> {
    let mut f = ScmpFilterContext::new(default)?;
    // Only the native architecture: i386 and x32 system calls kill the process.
    f.set_act_badarch(ScmpAction::KillProcess)?;
    // stockade sets no_new_privs itself when the profile asks for it.
    f.set_ctl_nnp(false)?;
    // A binary tree instead of a linear scan: an allow-list has hundreds of entries.
    f.set_ctl_optimize(2)?;
    Ok(f)
}

/// Exports one filter, encoded for the start channel (see [`decode`]), through a memfd:
/// libseccomp 2.5 (Debian 12) can only export to a descriptor.
fn export(f: &ScmpFilterContext) -> Result<Vec<u8>, SetupError> {
    use std::io::{Read, Seek};
    let step = "export the seccomp filter";
    let memfd = nix::sys::memfd::memfd_create(
        c"stockade-seccomp",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
    )
    .map_err(|e| SetupError::sys(step, "memfd_create", e))?;
    let mut file = std::fs::File::from(memfd);
    f.export_bpf(&file)
        .map_err(|e| SetupError::other(step, e.to_string()))?;
    let mut insns = Vec::new();
    file.rewind()
        .and_then(|_| file.read_to_end(&mut insns))
        .map_err(|e| SetupError::other(step, e.to_string()))?;
    let mut out = ((insns.len() / INSN) as u32).to_ne_bytes().to_vec();
    out.extend(insns);
    Ok(out)
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn baseline_bpf_is_current() {
        let now = compile_now(&crate::plan::default_baseline()).unwrap();
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/sandbox/baseline-x86_64.bpf"
        );
        if std::env::var_os("STOCKADE_UPDATE_BPF").is_some() {
            std::fs::write(path, &now).unwrap();
        }
        assert!(
            now == BASELINE_BPF,
            "{path} is stale: regenerate it with `STOCKADE_UPDATE_BPF=1 cargo test --bins baseline_bpf`"
        );
    }

    #[test]
    fn encoding_round_trips() {
        let progs = decode(BASELINE_BPF).unwrap();
        let mut encoded = Vec::new();
        for p in &progs {
            encoded.extend((p.0.len() as u32).to_ne_bytes());
            for i in &p.0 {
                encoded.extend(i.code.to_ne_bytes());
                encoded.extend([i.jt, i.jf]);
                encoded.extend(i.k.to_ne_bytes());
            }
        }
        assert_eq!(encoded, BASELINE_BPF);
        assert!(decode(&BASELINE_BPF[..BASELINE_BPF.len() - 1]).is_none());
    }
}
