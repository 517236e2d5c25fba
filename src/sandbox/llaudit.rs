//! `run --explain`, landlock's half: the supervisor reads the kernel's landlock audit records
//! (ABI 7, Linux 6.15+) from the read-only audit multicast group and reports each denial of
//! the sandbox once per (right, path, executable), like the seccomp half in `explain.rs`.
//!
//! It only listens: it never sends AUDIT_SET, never registers as the audit daemon and
//! changes no audit setting (the one request it sends is AUDIT_GET, a read of the status).
//! The record parser is a pure function of the record text.

use super::nlmsg;
use crate::plan::{LandlockRule, LaunchPlan};
use nix::sys::socket::{
    bind, recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
    SockType,
};
use std::collections::HashSet;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// `AUDIT_GET`: the status request (a read).
const AUDIT_GET: u16 = 1000;
/// The syscall record that closes an event, carrying the caller's pid and exe.
const AUDIT_SYSCALL: u16 = 1300;
const AUDIT_LANDLOCK_ACCESS: u16 = 1423;
const AUDIT_LANDLOCK_DOMAIN: u16 = 1424;
/// `AUDIT_NLGRP_READLOG`: the read-only multicast group (needs CAP_AUDIT_READ).
const AUDIT_NLGRP_READLOG: u32 = 1;

/// One record's event serial and its `key=value` fields, values unquoted and hex-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub serial: u64,
    pub fields: Vec<(String, String)>,
}

impl Record {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses an audit record's text, `audit(1729738800.268:30): domain=1a6fdc66f
/// blockers=fs.write_file path="/etc/x" dev="vda2" ino=351`. Values the kernel wrote
/// quoted are taken as they are; `path`, `exe`, `comm`, `name` and `dev` written unquoted
/// are hex (the kernel's encoding of a string with spaces, quotes or control characters).
pub fn parse(text: &str) -> Option<Record> {
    let rest = text.trim_end_matches(['\0', '\n']).strip_prefix("audit(")?;
    let (stamp, body) = rest.split_once("):")?;
    let serial = stamp.split_once(':')?.1.parse().ok()?;
    let mut fields = Vec::new();
    let mut s = body.trim_start();
    while !s.is_empty() {
        let (key, after) = s.split_once('=')?;
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (q[..end].to_owned(), &q[end + 1..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            let raw = &after[..end];
            let hexed = matches!(key, "path" | "exe" | "comm" | "name" | "dev");
            let value = match hexed.then(|| unhex(raw)).flatten() {
                Some(v) => v,
                None => raw.to_owned(),
            };
            (value, &after[end..])
        };
        fields.push((key.to_owned(), value));
        s = next.trim_start();
    }
    Some(Record { serial, fields })
}

fn unhex(s: &str) -> Option<String> {
    if s.is_empty() || s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect();
    Some(String::from_utf8_lossy(&bytes?).into_owned())
}

/// The landlock rule a denial at `path` is decided by: the rule for the nearest directory
/// above it (it grants less than the call asked), else none (no rule reaches the path, so
/// the landlock list as a whole denies it).
pub fn deciding_rule<'a>(
    rules: &'a [crate::plan::Decided<LandlockRule>],
    path: &str,
) -> Option<&'a crate::plan::Decided<LandlockRule>> {
    let under = |r: &str| {
        let r = r.trim_end_matches('/');
        r.is_empty() || path == r || path.strip_prefix(r).is_some_and(|t| t.starts_with('/'))
    };
    rules
        .iter()
        .filter(|r| under(&r.path))
        .max_by_key(|r| r.path.trim_end_matches('/').len())
}

/// Whether kernel audit is on, read with AUDIT_GET (None: the kernel would not say).
pub fn audit_enabled() -> Option<bool> {
    let fd = open(0).ok()?;
    let msg = nlmsg::request(AUDIT_GET, 0, &[]);
    sendto(
        fd.as_raw_fd(),
        &msg,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .ok()?;
    let mut buf = vec![0u8; 8192];
    // Bounded: the kernel answers at once; a few tries cover an interrupted wait.
    for _ in 0..5 {
        let mut pfd = [nix::poll::PollFd::new(
            fd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        if nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(1000u16)).ok()? == 0 {
            return None;
        }
        let Ok(n) = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) else {
            continue;
        };
        for (kind, payload) in nlmsg::messages(&buf[..n]) {
            match kind {
                // struct audit_status: mask, then enabled.
                AUDIT_GET => {
                    let b = payload.get(4..8)?;
                    return Some(u32::from_ne_bytes(b.try_into().ok()?) != 0);
                }
                nlmsg::NLMSG_ERROR => return None,
                _ => {}
            }
        }
    }
    None
}

/// An audit netlink socket, bound to `groups` (0: unicast only).
fn open(groups: u32) -> nix::Result<OwnedFd> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        SockProtocol::NetlinkAudit,
    )?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, groups))?;
    Ok(fd)
}

/// One landlock denial waiting for its event's syscall record (which names the caller).
struct Pending {
    serial: u64,
    domain: String,
    blockers: String,
    path: String,
}

/// One denial to report: the missing right, the path, the caller and the deciding rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub right: String,
    pub path: String,
    pub exe: String,
    /// `security.landlock.read (web.toml:12)`.
    pub rule: String,
}

/// Links records to the sandbox and picks what to report: a pure state machine fed one
/// record at a time, so its choices are unit-tested on record sequences.
pub struct Linker<'a> {
    rules: &'a [crate::plan::Decided<LandlockRule>],
    /// The service's host pid: the process that created the sandbox's landlock domain.
    pub service: u32,
    /// Domains the service created (from their AUDIT_LANDLOCK_DOMAIN records).
    ours: HashSet<String>,
    pending: Vec<Pending>,
    seen: HashSet<(String, String, String)>,
}

impl<'a> Linker<'a> {
    pub fn new(rules: &'a [crate::plan::Decided<LandlockRule>], service: u32) -> Self {
        Linker {
            rules,
            service,
            ours: HashSet::new(),
            pending: Vec::new(),
            seen: HashSet::new(),
        }
    }

    /// Takes one record; returns the denials now known to be the sandbox's and new. An
    /// event's records come in order: the access record, the domain record (with the
    /// domain's first denial), then the syscall record naming the caller (when the kernel
    /// audits the call). A record of a later event ends the wait for a syscall record.
    pub fn take(&mut self, kind: u16, r: &Record) -> Vec<Report> {
        let mut out = Vec::new();
        if self.pending.first().is_some_and(|p| p.serial != r.serial) {
            out = self.flush(None);
        }
        match kind {
            AUDIT_LANDLOCK_ACCESS => {
                if let (Some(domain), Some(blockers)) = (r.get("domain"), r.get("blockers")) {
                    let path = r.get("path").or_else(|| r.get("name")).unwrap_or("?");
                    self.pending.push(Pending {
                        serial: r.serial,
                        domain: domain.to_owned(),
                        blockers: blockers.to_owned(),
                        path: path.to_owned(),
                    });
                }
            }
            AUDIT_LANDLOCK_DOMAIN => {
                let pid = r.get("pid").and_then(|p| p.parse::<u32>().ok());
                if let (Some(d), Some(true)) = (r.get("domain"), pid.map(|p| p == self.service)) {
                    self.ours.insert(d.to_owned());
                }
            }
            AUDIT_SYSCALL => out.extend(self.flush(r.get("exe").map(str::to_owned))),
            _ => {}
        }
        out
    }

    fn flush(&mut self, exe: Option<String>) -> Vec<Report> {
        let exe = exe.unwrap_or_else(|| "?".to_owned());
        let mut out = Vec::new();
        for p in std::mem::take(&mut self.pending) {
            if !self.ours.contains(&p.domain) {
                continue;
            }
            for right in p.blockers.split(',') {
                if !self
                    .seen
                    .insert((right.to_owned(), p.path.clone(), exe.clone()))
                {
                    continue;
                }
                let rule = match deciding_rule(self.rules, &p.path) {
                    Some(r) => format!("security.landlock.{} ({})", access_key(&r.value), r.from),
                    // No rule reaches the path: the lists as a whole deny it.
                    None => match self.rules.first() {
                        Some(r) => format!("security.landlock ({})", r.from),
                        None => "security.landlock".to_owned(),
                    },
                };
                out.push(Report {
                    right: right.to_owned(),
                    path: p.path.clone(),
                    exe: exe.clone(),
                    rule,
                });
            }
        }
        out
    }
}

/// Reads landlock denials from the audit multicast group and reports the sandbox's.
pub struct Reader<'a> {
    fd: OwnedFd,
    pub linker: Linker<'a>,
}

impl<'a> Reader<'a> {
    /// Opens the read-only multicast socket. Call it before the service applies landlock:
    /// a domain's AUDIT_LANDLOCK_DOMAIN record comes only with its first denial.
    pub fn open(plan: &'a LaunchPlan, service: u32) -> nix::Result<Reader<'a>> {
        let rules = plan.finals.landlock.as_deref().unwrap_or(&[]);
        Ok(Reader {
            fd: open(AUDIT_NLGRP_READLOG)?,
            linker: Linker::new(rules, service),
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Reads every record waiting (a lost one, ENOBUFS, only costs its report).
    pub fn read(&mut self) {
        let mut buf = vec![0u8; 16384];
        for _ in 0..256 {
            let n = match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(n) => n,
                Err(nix::errno::Errno::ENOBUFS | nix::errno::Errno::EINTR) => continue,
                Err(_) => return,
            };
            let records: Vec<(u16, Record)> = nlmsg::messages(&buf[..n])
                .into_iter()
                .filter_map(|(k, p)| Some((k, parse(std::str::from_utf8(p).ok()?)?)))
                .collect();
            for (kind, r) in records {
                for d in self.linker.take(kind, &r) {
                    tracing::warn!(
                        stockade_denied_access = %d.right,
                        stockade_path = %d.path,
                        stockade_rule = %d.rule,
                        stockade_exe = %d.exe,
                        "landlock denied {} on {} to {}: {} does not grant it",
                        d.right,
                        d.path,
                        d.exe,
                        d.rule,
                    );
                }
            }
        }
    }
}

fn access_key(r: &LandlockRule) -> &'static str {
    match r.access {
        crate::plan::Access::Read => "read",
        crate::plan::Access::Write => "write",
        crate::plan::Access::Exec => "exec",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Provenance;

    #[test]
    fn parses_an_access_record_with_a_quoted_path() {
        let r = parse("audit(1729738800.268:30): domain=195ba459b blockers=fs.write_file,fs.make_reg path=\"/etc/x\" dev=\"vda2\" ino=351").unwrap();
        assert_eq!(r.serial, 30);
        assert_eq!(r.get("domain"), Some("195ba459b"));
        assert_eq!(r.get("blockers"), Some("fs.write_file,fs.make_reg"));
        assert_eq!(r.get("path"), Some("/etc/x"));
        assert_eq!(r.get("dev"), Some("vda2"));
        assert_eq!(r.get("ino"), Some("351"));
    }

    #[test]
    fn decodes_a_hex_path_and_keeps_plain_values() {
        // "/tmp/a b" has a space: the kernel writes it as unquoted hex.
        let r = parse("audit(1.2:7): domain=1a blockers=fs.read_file path=2F746D702F612062 dev=\"tmpfs\" ino=12\n").unwrap();
        assert_eq!(r.get("path"), Some("/tmp/a b"));
        // A domain id looks like hex but is not a string field: kept as written.
        assert_eq!(r.get("domain"), Some("1a"));
    }

    #[test]
    fn parses_a_domain_record_and_a_syscall_record() {
        let d = parse("audit(1732186800.349:44): domain=195ba459b status=allocated mode=enforcing pid=300 uid=0 exe=\"/root/sandboxer\" comm=\"sandboxer\"").unwrap();
        assert_eq!(d.get("pid"), Some("300"));
        assert_eq!(d.get("exe"), Some("/root/sandboxer"));
        let s = parse("audit(1732186800.349:44): arch=c000003e syscall=257 success=no exit=-13 a0=ffffff9c items=0 ppid=263 pid=300 auid=0 uid=0 comm=\"sh\" exe=\"/usr/bin/dash\" key=(null)").unwrap();
        assert_eq!(s.serial, 44);
        assert_eq!(s.get("exe"), Some("/usr/bin/dash"));
        assert_eq!(s.get("key"), Some("(null)"));
    }

    #[test]
    fn refuses_text_that_is_no_record() {
        assert_eq!(parse("domain=1 blockers=fs.refer"), None);
        assert_eq!(parse("audit(1.2:x): a=b"), None);
        assert_eq!(parse("audit(1.2:3): path=\"/unterminated"), None);
    }

    #[test]
    fn the_nearest_rule_above_the_path_decides() {
        let rule = |path: &str, access| {
            crate::plan::Decided::new(
                LandlockRule {
                    path: path.into(),
                    access,
                },
                Provenance::invocation("t"),
            )
        };
        let rules = [
            rule("/", crate::plan::Access::Read),
            rule("/var/lib/", crate::plan::Access::Write),
        ];
        let at = |p| deciding_rule(&rules, p).map(|r| r.path.as_str());
        assert_eq!(at("/etc/x"), Some("/"));
        assert_eq!(at("/var/lib/app/x"), Some("/var/lib/"));
        assert_eq!(at("/var/library"), Some("/"));
        assert_eq!(deciding_rule(&rules[1..], "/etc/x"), None);
    }

    #[test]
    fn reports_the_services_domain_once_and_nothing_else() {
        let rules = [crate::plan::Decided::new(
            LandlockRule {
                path: "/".into(),
                access: crate::plan::Access::Read,
            },
            Provenance::invocation("t"),
        )];
        let mut l = Linker::new(&rules, 300);
        let mut all = Vec::new();
        let mut feed = |kind, text: &str| all.extend(l.take(kind, &parse(text).unwrap()));
        // The service's first denial: access, its domain (created by pid 300), syscall.
        feed(
            1423,
            "audit(1.0:10): domain=aa blockers=fs.make_reg path=\"/tmp\" dev=\"tmpfs\" ino=1",
        );
        feed(1424, "audit(1.0:10): domain=aa status=allocated mode=enforcing pid=300 uid=0 exe=\"/usr/bin/stockade\" comm=\"sh\"");
        feed(1300, "audit(1.0:10): arch=c000003e syscall=257 success=no exit=-13 pid=300 comm=\"sh\" exe=\"/usr/bin/dash\"");
        // The same again, and another process's domain (created by pid 999).
        feed(
            1423,
            "audit(1.1:11): domain=aa blockers=fs.make_reg path=\"/tmp\" dev=\"tmpfs\" ino=1",
        );
        feed(1300, "audit(1.1:11): pid=300 exe=\"/usr/bin/dash\"");
        feed(
            1423,
            "audit(1.2:12): domain=bb blockers=fs.write_file path=\"/etc/x\"",
        );
        feed(1424, "audit(1.2:12): domain=bb status=allocated mode=enforcing pid=999 uid=0 exe=\"/x\" comm=\"x\"");
        // Without a syscall record: reported when a later event begins, caller unknown.
        feed(
            1423,
            "audit(1.3:13): domain=aa blockers=fs.write_file,fs.truncate path=\"/etc/passwd\"",
        );
        feed(1300, "audit(1.4:14): pid=1 exe=\"/sbin/init\"");
        let got: Vec<(&str, &str, &str)> = all
            .iter()
            .map(|r| (r.right.as_str(), r.path.as_str(), r.exe.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("fs.make_reg", "/tmp", "/usr/bin/dash"),
                ("fs.write_file", "/etc/passwd", "?"),
                ("fs.truncate", "/etc/passwd", "?"),
            ]
        );
        assert_eq!(all[0].rule, "security.landlock.read (invocation (t))");
    }
}
