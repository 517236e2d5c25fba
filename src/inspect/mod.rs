//! Inspecting a plan: `analyze` scores how exposed a sandbox is, `why` says whether one
//! access is allowed and which setting decides it. Both are pure functions of a
//! [`LaunchPlan`] (planned from a profile, or read from a running sandbox's record) and
//! answer with the plan's own provenance, so every verdict cites a profile line or a
//! default. Nothing here reads the host or the profile files: what the plan does not record
//! (a host file's permission bits, whether a path exists on the host) is said to be
//! unknown, never guessed.

pub mod analyze;
#[cfg(test)]
mod tests;
pub mod why;

use crate::plan::{baseline, Decided, LaunchPlan, Namespace, Provenance, SysAction, SyscallRule};
use crate::profile::syscalls::expand;
use std::collections::BTreeSet;

/// Whether the plan creates namespace `ns`, and the setting that decided it.
pub(crate) fn namespace(plan: &LaunchPlan, ns: Namespace) -> (bool, Provenance) {
    plan.namespaces
        .iter()
        .find(|n| n.kind == ns)
        .map(|n| (n.enabled, n.from.clone()))
        .unwrap_or_else(|| {
            (
                false,
                Provenance::default(format!("namespaces.{}", ns.row().key)),
            )
        })
}

/// The name an admin reads for a seccomp action.
pub(crate) fn action_name(a: SysAction) -> String {
    match a {
        SysAction::Allow => "allow".into(),
        SysAction::Errno(e) => format!("{:?}", nix::errno::Errno::from_raw(e)),
        SysAction::KillProcess => "kill".into(),
        SysAction::Log => "allow and log".into(),
    }
}

/// What the plan's seccomp filter does with one system call, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyscallAnswer {
    pub allowed: bool,
    /// What happens: allow, the errno's name, kill; "allow and log".
    pub action: String,
    /// The rule that decides, in words.
    pub because: String,
    pub from: Provenance,
    /// How to change the answer, when it can be changed.
    pub change: Option<String>,
}

/// The calls whose namespace flags `restrict_namespaces` refuses outright.
const NAMESPACE_CALLS: [&str; 3] = ["unshare", "setns", "clone3"];

/// The rule of the policy that names `call` (expanding groups), last written first.
fn rule_naming<'a>(
    rules: &'a [Decided<SyscallRule>],
    call: &str,
    pick: impl Fn(&SyscallRule) -> bool,
) -> Option<&'a Decided<SyscallRule>> {
    rules.iter().filter(|r| pick(&r.value)).find(|r| {
        let mut calls = BTreeSet::new();
        expand(&r.entry, &mut calls);
        calls.contains(call)
    })
}

/// Whether the filter lets `call` run (logged or not), without the reasons: cheap.
pub(crate) fn runs(plan: &LaunchPlan, call: &str) -> bool {
    let f = &plan.finals.syscalls.filter;
    if f.restrict_namespaces && NAMESPACE_CALLS.contains(&call) {
        return false;
    }
    let action = if f.listed.contains(call) {
        f.listed_action
    } else {
        f.default
    };
    matches!(action, SysAction::Allow | SysAction::Log)
}

/// The seccomp verdict on `call` (a valid name) under `plan`.
pub fn syscall(plan: &LaunchPlan, call: &str) -> SyscallAnswer {
    let policy = &plan.finals.syscalls;
    let f = &policy.filter;
    let caps_from = plan.finals.capabilities.from.clone();
    if f.restrict_namespaces && NAMESPACE_CALLS.contains(&call) {
        let errno = if call == "clone3" { "ENOSYS" } else { "EPERM" };
        return SyscallAnswer {
            allowed: false,
            action: errno.into(),
            because: "creating and joining namespaces is refused because the service keeps no CAP_SYS_ADMIN (a fixed rule; clone3 fails with ENOSYS so libc falls back to clone, which is allowed without CLONE_NEW* flags)".into(),
            from: caps_from,
            change: Some("keep `sys_admin` in security.capabilities (this gives the service far more than namespaces)".into()),
        };
    }
    let listed = f.listed.contains(call);
    let action = if listed { f.listed_action } else { f.default };
    let allowed = matches!(action, SysAction::Allow | SysAction::Log);
    let act = action_name(action);
    let allow_list = f.default != SysAction::Allow;
    let answer = |because: String, from: Provenance, change: Option<String>| SyscallAnswer {
        allowed,
        action: act.clone(),
        because,
        from,
        change,
    };
    let is_deny = |r: &SyscallRule| r.action != SysAction::Allow;
    let is_allow = |r: &SyscallRule| r.action == SysAction::Allow;
    let logged = action == SysAction::Log;
    let log_note = if logged {
        " (security.syscall_log lets denied calls run and logs them)"
    } else {
        ""
    };
    match (allow_list, listed) {
        // An allow-list: listed calls run, the rest are denied.
        (true, true) => match rule_naming(&policy.rules, call, is_allow) {
            Some(r) => answer(
                format!("`{}` in the allow-list names it", r.entry),
                r.from.clone(),
                Some(format!("add `{call}` to security.syscall_deny to deny it")),
            ),
            None => answer(
                "stockade itself needs it after installing the filter".into(),
                Provenance::default("security.syscall_filter: stockade's own calls"),
                None,
            ),
        },
        (true, false) => {
            match rule_naming(&policy.rules, call, is_deny) {
                Some(r) => answer(
                    format!(
                        "`{}` in security.syscall_deny takes it out of the allow-list{log_note}",
                        r.entry
                    ),
                    r.from.clone(),
                    Some(format!("remove `{}` from security.syscall_deny", r.entry)),
                ),
                None => {
                    let from = policy
                        .rules
                        .iter()
                        .find(|r| r.entry != "@default" && is_allow(&r.value))
                        .map_or_else(
                            || Provenance::default("security.syscall_filter"),
                            |r| r.from.clone(),
                        );
                    answer(
                    format!("no entry of the allow-list (security.syscall_filter) names it{log_note}"),
                    from,
                    Some(format!("add `{call}` (or a group holding it) to security.syscall_filter")),
                )
                }
            }
        }
        // The deny-list: the baseline plus syscall_deny.
        (false, true) => match rule_naming(&policy.rules, call, is_deny) {
            Some(r) => {
                let cap = baseline()
                    .iter()
                    .find(|(e, _)| *e == r.entry)
                    .map(|(_, c)| *c);
                let (because, change) = match cap {
                    Some(Some(c)) => (
                        format!("the baseline denies `{}` while the service does not keep {c}{log_note}", r.entry),
                        format!("keep `{}` in security.capabilities, or write an allow-list (security.syscall_filter) naming `{call}`", c.to_string().trim_start_matches("CAP_").to_lowercase()),
                    ),
                    Some(None) => (
                        format!("the baseline always denies `{}`{log_note}", r.entry),
                        format!("write an allow-list (security.syscall_filter) naming `{call}`"),
                    ),
                    None => (
                        format!("`{}` in security.syscall_deny denies it{log_note}", r.entry),
                        format!("remove `{}` from security.syscall_deny", r.entry),
                    ),
                };
                answer(because, r.from.clone(), Some(change))
            }
            None => answer(
                format!("the filter lists it{log_note}"),
                policy.action.from.clone(),
                None,
            ),
        },
        (false, false) => {
            let kept = baseline().iter().find(|(e, cap)| {
                let mut calls = BTreeSet::new();
                expand(e, &mut calls);
                calls.contains(call) && cap.is_some()
            });
            match kept {
                Some((entry, Some(c))) => answer(
                    format!("the baseline would deny `{entry}`, but the service keeps {c}"),
                    caps_from,
                    Some(format!("drop `{}` from security.capabilities, or add `{call}` to security.syscall_deny", c.to_string().trim_start_matches("CAP_").to_lowercase())),
                ),
                _ => answer(
                    "neither the baseline nor security.syscall_deny names it".into(),
                    Provenance::default("security.syscall_deny"),
                    Some(format!("add `{call}` to security.syscall_deny to deny it")),
                ),
            }
        }
    }
}
