//! The seccomp half of the plan: which system calls the service may make, decided from the
//! profile and the capabilities it keeps. Names only; the sandbox compiles them to BPF for
//! this architecture before it forks.

use super::record::{Decided, Provenance, Resolver};
use crate::profile::families::{self, family};
use crate::profile::schema::{or, Profile};
use crate::profile::syscalls::{errno, expand};
use caps::Capability as C;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// What a listed (or unlisted) system call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SysAction {
    Allow,
    Errno(i32),
    KillProcess,
    /// Run it, and have the kernel log it.
    Log,
}

/// The seccomp decisions of the plan: the filter the sandbox installs, and what it was made
/// of, for the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyscallPolicy {
    pub filter: Filter,
    /// The filter is the default baseline, compiled when stockade was built: the sandbox
    /// loads that program instead of compiling (decided here, so the sandbox does not plan).
    pub prebuilt: bool,
    /// The groups and names the filter lists, as written (or the baseline's), each with
    /// what it does.
    pub rules: Vec<Decided<SyscallRule>>,
    /// What a denied call does (`syscall_errno`, `syscall_log`).
    pub action: Decided<SysAction>,
    /// The socket address families allowed, by name.
    pub families: Decided<Vec<String>>,
    /// `run --explain`: denied calls are reported to the supervisor, which logs each once
    /// per (call, executable) and answers with the same errno (see [`explain`]).
    #[serde(default)]
    pub explain: Option<Provenance>,
}

/// One entry of the policy: a `@group` or a call's name, and what calls in it do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyscallRule {
    pub entry: String,
    pub action: SysAction,
}

/// What the sandbox compiles to BPF.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// What calls not in `listed` do: Allow for the baseline deny-list, the deny action for
    /// an allow-list.
    pub default: SysAction,
    pub listed: BTreeSet<String>,
    /// What calls in `listed` do.
    pub listed_action: SysAction,
    /// Refuse namespace creation and joining (the service keeps no CAP_SYS_ADMIN): clone
    /// with CLONE_NEW* flags, unshare and setns fail with EPERM, clone3 with ENOSYS so libc
    /// falls back to clone, whose flags a filter can read.
    pub restrict_namespaces: bool,
    /// The socket address families socket(2) and socketpair(2) may create; any other
    /// fails with EAFNOSUPPORT.
    pub families: BTreeSet<i32>,
    /// memfd_create must seal its file non-executable (MFD_NOEXEC_SEAL), else EPERM: with
    /// landlock's exec rules, where the pid namespace's vm.memfd_noexec cannot be set.
    pub memfd_noexec_seal: bool,
    /// The deny action goes to a user-notification listener instead of failing the call
    /// at once: the supervisor answers with the errno of [`SyscallPolicy::action`].
    #[serde(default)]
    pub notify: bool,
}

/// The baseline: what a profile that says nothing about syscalls cannot call, unless it
/// keeps the capability that would make the call meaningful. Modelled on Docker's default
/// profile and systemd's groups.
const BASELINE: &[(&str, Option<C>)] = &[
    ("@clock", Some(C::CAP_SYS_TIME)),
    ("@module", Some(C::CAP_SYS_MODULE)),
    ("@reboot", Some(C::CAP_SYS_BOOT)),
    ("@swap", Some(C::CAP_SYS_ADMIN)),
    ("@mount", Some(C::CAP_SYS_ADMIN)),
    ("@raw-io", Some(C::CAP_SYS_RAWIO)),
    ("@debug", Some(C::CAP_SYS_PTRACE)),
    ("@cpu-emulation", None),
    ("@obsolete", None),
    // The kernel keyring is not namespaced.
    ("@keyring", None),
    ("bpf", Some(C::CAP_BPF)),
    ("perf_event_open", Some(C::CAP_PERFMON)),
    ("userfaultfd", Some(C::CAP_SYS_PTRACE)),
    ("kexec_load", Some(C::CAP_SYS_BOOT)),
    ("kexec_file_load", Some(C::CAP_SYS_BOOT)),
    ("acct", Some(C::CAP_SYS_PACCT)),
    ("syslog", Some(C::CAP_SYSLOG)),
    // open_by_handle_at bypasses path-based confinement (the "shocker" escape).
    ("open_by_handle_at", Some(C::CAP_DAC_READ_SEARCH)),
    ("quotactl", Some(C::CAP_SYS_ADMIN)),
    ("fanotify_init", Some(C::CAP_SYS_ADMIN)),
    ("sethostname", Some(C::CAP_SYS_ADMIN)),
    ("setdomainname", Some(C::CAP_SYS_ADMIN)),
    ("vhangup", Some(C::CAP_SYS_TTY_CONFIG)),
    // unshare, setns, clone with namespace flags: restrict_namespaces.
    // A large, often-exploited kernel surface that daemons rarely need (Docker denies it too).
    ("io_uring_setup", None),
    ("io_uring_enter", None),
    ("io_uring_register", None),
];

/// The baseline's entries, each with the capability whose keeping takes it off the list
/// (None: always denied), for the inspectors to name what decides a call.
pub fn baseline() -> &'static [(&'static str, Option<C>)] {
    BASELINE
}

/// Calls stockade itself makes after the filter is installed, each with why: exec, reporting
/// a failed exec, and (only without no_new_privileges, where installing the filter needed
/// CAP_SYS_ADMIN) dropping that capability. A deny-list naming one is refused, not trimmed.
const STOCKADE_NEEDS: &[(&str, Need)] = &[
    ("execve", Need::Always("stockade execs the service after installing the filter; denying execve would deny the service itself")),
    ("write", Need::Always("stockade reports a failed exec with write(2) after installing the filter")),
    ("exit_group", Need::Always("stockade exits with exit_group(2) after installing the filter when the exec fails")),
    ("capget", Need::WithoutNoNewPrivs("without no_new_privileges, stockade installs the filter with CAP_SYS_ADMIN and reads its capabilities with capget(2) afterwards to drop it")),
    ("capset", Need::WithoutNoNewPrivs("without no_new_privileges, stockade installs the filter with CAP_SYS_ADMIN and drops it with capset(2) afterwards")),
];

#[derive(Clone, Copy)]
enum Need {
    Always(&'static str),
    WithoutNoNewPrivs(&'static str),
}

/// What stockade calls after installing the filter of a profile, with why.
fn needs(p: &Profile) -> impl Iterator<Item = (&'static str, &'static str)> {
    let nnp = or(&p.security.no_new_privileges, true);
    STOCKADE_NEEDS
        .iter()
        .filter_map(move |(name, need)| match need {
            Need::Always(why) => Some((*name, *why)),
            Need::WithoutNoNewPrivs(why) => (!nnp).then_some((*name, *why)),
        })
}

/// A deny-list entry that would deny what stockade needs after installing the filter is an
/// error, for a group too (naming the member): trimming it silently would allow a call the
/// profile says is denied.
pub(super) fn check(b: &mut super::Builder, p: &Profile) {
    let Some(list) = &p.security.syscall_deny else {
        return;
    };
    for entry in &list.value {
        let mut calls = BTreeSet::new();
        expand(entry, &mut calls);
        for (call, why) in needs(p) {
            if !calls.contains(call) {
                continue;
            }
            let msg = if entry.starts_with('@') {
                format!("`{entry}` contains {call}, which stockade cannot deny: {why}; list the calls of `{entry}` the service must not make one by one instead")
            } else {
                let nnp = if matches!(call, "capget" | "capset") {
                    "; set `no_new_privileges = true` to deny it"
                } else {
                    "; remove it from the list"
                };
                format!("cannot deny {call}: {why}{nnp}")
            };
            b.err(list, "security.syscall_deny", msg);
        }
    }
}

/// The filter of a profile that says nothing about system calls and keeps none of the
/// capabilities the baseline looks at: what most services run with.
pub fn default_baseline() -> Filter {
    filter(&Profile::default(), &[], false)
}

/// The policy with the provenance of its parts.
pub(super) fn plan(
    at: &Resolver,
    p: &Profile,
    kept: &[C],
    memfd_noexec_seal: bool,
) -> SyscallPolicy {
    let s = &p.security;
    let filter = filter(p, kept, memfd_noexec_seal);
    let action_from = match (&s.syscall_log, &s.syscall_errno) {
        (Some(l), _) if l.value => at.at(l, "security.syscall_log"),
        (_, e) => at.setting(e, "security.syscall_errno"),
    };
    let deny = match s.syscall_filter {
        Some(_) => filter.default,
        None => filter.listed_action,
    };
    let mut rules = Vec::new();
    for (list, key, action) in [
        (
            &s.syscall_filter,
            "security.syscall_filter",
            SysAction::Allow,
        ),
        (&s.syscall_deny, "security.syscall_deny", deny),
    ] {
        for list in list.iter() {
            for entry in &list.value {
                let rule = SyscallRule {
                    entry: entry.clone(),
                    action,
                };
                rules.push(Decided::new(rule, at.at(list, key)));
            }
        }
    }
    if s.syscall_filter.is_some() {
        let rule = SyscallRule {
            entry: "@default".into(),
            action: SysAction::Allow,
        };
        rules.push(Decided::new(
            rule,
            Provenance::default("security.syscall_filter: @default"),
        ));
    } else {
        for (entry, cap) in BASELINE {
            if cap.is_none_or(|c| !kept.contains(&c)) {
                let rule = SyscallRule {
                    entry: (*entry).into(),
                    action: deny,
                };
                rules.push(Decided::new(
                    rule,
                    Provenance::default("security.syscall_deny: baseline"),
                ));
            }
        }
    }
    let families = match &s.address_families {
        Some(list) => Decided::new(list.value.clone(), at.at(list, "security.address_families")),
        None => Decided::new(
            families::DEFAULT.iter().map(|f| f.to_string()).collect(),
            Provenance::default("security.address_families"),
        ),
    };
    SyscallPolicy {
        prebuilt: filter == default_baseline(),
        filter,
        rules,
        action: Decided::new(deny, action_from),
        families,
        explain: None,
    }
}

/// The one call stockade makes after installing a notifying filter beyond those it always
/// needs: it waits with read(2) until the supervisor holds the listener.
const EXPLAIN_NEEDS: &str = "read";

/// Turns on live explanations (`run --explain`): denied calls are sent to the supervisor,
/// which only ever answers them with the policy's errno. Err when the policy cannot be
/// explained that way: a kill action (the notifier never kills), or a deny-list naming
/// what stockade calls while handing the listener over.
pub fn explain(policy: &mut SyscallPolicy, from: Provenance) -> Result<(), String> {
    let f = &mut policy.filter;
    match policy.action.value {
        SysAction::Errno(_) => {}
        SysAction::KillProcess => {
            return Err(format!("explaining answers denied calls with an errno, and `kill` (security.syscall_errno at {}) cannot be answered", policy.action.from))
        }
        // Nothing is denied: nothing to explain.
        SysAction::Allow | SysAction::Log => return Ok(()),
    }
    if f.default == SysAction::Allow {
        if f.listed.contains(EXPLAIN_NEEDS) {
            return Err(format!("explaining needs {EXPLAIN_NEEDS}(2) after the filter is installed, and security.syscall_deny denies it"));
        }
    } else {
        f.listed.insert(EXPLAIN_NEEDS.to_owned());
    }
    f.notify = true;
    policy.prebuilt = false;
    policy.explain = Some(from);
    Ok(())
}

fn filter(p: &Profile, kept: &[C], memfd_noexec_seal: bool) -> Filter {
    let s = &p.security;
    let families = match &s.address_families {
        Some(list) => list.value.iter().filter_map(|n| family(n)).collect(),
        None => families::DEFAULT.iter().filter_map(|n| family(n)).collect(),
    };
    let deny = match s.syscall_errno.as_ref().map(|e| e.value.as_str()) {
        Some("kill") => SysAction::KillProcess,
        Some(name) => SysAction::Errno(errno(name).unwrap_or(libc::EPERM)),
        None => SysAction::Errno(libc::EPERM),
    };
    let deny = if or(&s.syscall_log, false) {
        SysAction::Log
    } else {
        deny
    };
    let names = |list: &Option<crate::profile::Src<Vec<String>>>| {
        let mut out = BTreeSet::new();
        for entry in list.iter().flat_map(|l| l.value.iter()) {
            expand(entry, &mut out);
        }
        out
    };
    let denied = names(&s.syscall_deny);
    let restrict_namespaces = !kept.contains(&C::CAP_SYS_ADMIN);
    match &s.syscall_filter {
        Some(_) => {
            let mut allowed = names(&s.syscall_filter);
            // Like systemd: an allow-list always includes what every process needs.
            expand("@default", &mut allowed);
            allowed.retain(|n| !denied.contains(n));
            allowed.extend(needs(p).map(|(n, _)| n.to_string()));
            Filter {
                default: deny,
                listed: allowed,
                listed_action: SysAction::Allow,
                restrict_namespaces,
                families,
                memfd_noexec_seal,
                notify: false,
            }
        }
        None => {
            let mut listed = denied;
            for (entry, cap) in BASELINE {
                if cap.is_none_or(|c| !kept.contains(&c)) {
                    expand(entry, &mut listed);
                }
            }
            // The baseline holds none of them (a test checks); a deny-list naming one was
            // refused by check.
            for (n, _) in needs(p) {
                listed.remove(n);
            }
            Filter {
                default: SysAction::Allow,
                listed,
                listed_action: deny,
                restrict_namespaces,
                families,
                memfd_noexec_seal,
                notify: false,
            }
        }
    }
}
