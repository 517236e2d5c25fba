//! The records of running sandboxes: `/run/stockade/instances/NAME.json`, one per instance,
//! written by its supervisor before the service may exec and removed when the sandbox ends.
//! This module owns that directory: taking an instance name, writing and removing a record,
//! and [`list`], the one reader every command that looks at running sandboxes uses (it
//! removes the records of sandboxes that are gone). It never starts or signals a process.
//!
//! Why a record read here may be trusted: the directory is root's, mode 0700, checked before
//! it is used (a directory anyone else could write is refused), and `/run/stockade` is hidden
//! in every sandbox that could otherwise see the host's /run, so no sandboxed process (nor
//! any other user) can write, replace or link into it. Nothing is ever read back from a
//! place a sandbox can write.
//!
//! Names are taken with a lock, not with the record's existence: the supervisor holds an
//! exclusive flock(2) on `NAME.lock` for its whole life. The kernel releases it when the
//! supervisor dies however it dies (SIGKILL included), so "the name is taken" is exactly
//! "the lock is held", and two starts of one name cannot both win (flock is atomic). An
//! O_EXCL record would instead stay taken after a SIGKILL and need a pid check that races
//! with the next start. The lock file is removed, still locked, when the sandbox ends; a
//! start that locked a file removed meanwhile sees its inode gone from the path and tries
//! again. Init is cloned, not exec'd, and keeps a copy of the descriptor: the name stays
//! taken until it is gone too (it dies with the supervisor, by PR_SET_PDEATHSIG).
//!
//! A sandbox on its way out is marked by an empty sibling file, `NAME.stopping`, which its
//! supervisor creates once (a stop was asked for, or the service ended) and removes, first
//! of its files, when the sandbox ends. A file, not a field of the record: creating it is
//! one atomic open(2) that readers see at once, and the supervisor never serialises the
//! plan again while it stops. Only the lock holder creates or removes it, as with the
//! record; a stale one goes with its stale record.

use crate::host::{Host, ProcId};
use crate::plan::LaunchPlan;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The record's layout; a reader refuses a record of another format instead of misreading it.
pub const FORMAT: u32 = 1;

/// What a running sandbox is: its plan and the facts only known once it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub format: u32,
    /// The stockade that started it (`CARGO_PKG_VERSION`).
    pub stockade_version: String,
    /// The instance name: the profile's name unless `run --name` gave another.
    pub instance: String,
    pub profile: String,
    /// The process that holds the name and waits for the sandbox, in the host's namespaces.
    pub supervisor: ProcId,
    /// The sandbox's init (pid 1 inside when there is a pid namespace), as the host sees it.
    pub init: ProcId,
    /// Init's namespaces by `[namespaces]` key: the inode of `/proc/PID/ns/...`.
    pub namespaces: BTreeMap<String, u64>,
    /// The sandbox's cgroup v2 directory on the host, when it has one of its own.
    pub cgroup: Option<PathBuf>,
    /// The scope stockade registered, or the service unit stockade runs under.
    pub unit: Option<String>,
    /// When the service was let start, in milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// A bridge sandbox's place on its network, as leased (absent in older records).
    #[serde(default)]
    pub network: Option<Attached>,
    pub plan: LaunchPlan,
}

/// A bridge sandbox's network as it was leased at start: the plan names the network and
/// the veth, but an address left to the lease is only known once leased, so it is here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attached {
    /// The named network.
    pub network: String,
    /// Its bridge on the host.
    pub bridge: String,
    /// The host end of the sandbox's veth pair.
    pub veth: String,
    /// eth0's leased IPv4 address.
    pub address: std::net::Ipv4Addr,
    /// eth0's leased IPv6 address, when the network has an IPv6 subnet.
    pub address6: Option<std::net::Ipv6Addr>,
}

/// A record as it is written: [`Record`]'s fields, in its order, borrowed, with the plan
/// rendered to JSON beforehand ([`render_plan`]). The plan is nearly all of a record's
/// bytes and of the time to write one, and it is known before the sandbox starts: the
/// supervisor renders it while init builds the filesystem, so the service does not wait
/// for it. A test reads what this writes back as a [`Record`].
#[derive(Debug, Serialize)]
pub struct Written<'a> {
    pub format: u32,
    pub stockade_version: &'a str,
    pub instance: &'a str,
    pub profile: &'a str,
    pub supervisor: ProcId,
    pub init: ProcId,
    pub namespaces: &'a BTreeMap<String, u64>,
    pub cgroup: Option<&'a Path>,
    pub unit: Option<&'a str>,
    pub started_unix_ms: u64,
    pub network: Option<&'a Attached>,
    pub plan: &'a serde_json::value::RawValue,
}

/// The plan as it goes into a record (compact JSON).
pub fn render_plan(plan: &LaunchPlan) -> Result<Box<serde_json::value::RawValue>, String> {
    serde_json::value::to_raw_value(plan).map_err(|e| format!("render the plan: {e}"))
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("instance `{name}` is already running (supervisor pid {pid}, unit {unit}); start another with --name")]
    Running {
        name: String,
        pid: u32,
        unit: String,
    },
    #[error("instance `{name}` is being started by another stockade; start another with --name")]
    Starting { name: String },
    #[error("{}: {detail}", path.display())]
    Io { path: PathBuf, detail: String },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |e| Error::Io {
        path: path.to_owned(),
        detail: e.to_string(),
    }
}

/// Why `name` cannot name an instance, if it cannot: it becomes a file name here and part of
/// journal fields, so letters, digits and `-_.@` only, not starting with `.`, at most 64.
pub fn invalid_name(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("an instance name cannot be empty".into())
    } else if name.len() > 64 {
        Some(format!(
            "an instance name has at most 64 characters, not {}",
            name.len()
        ))
    } else if name.starts_with('.') {
        Some("an instance name cannot start with `.`".into())
    } else {
        name.chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-_.@".contains(*c)))
            .map(|c| {
                format!(
                    "`{}` cannot be in an instance name (letters, digits and -_.@ only)",
                    c.escape_default()
                )
            })
    }
}

/// The files of instance `name` in `dir`.
struct Files {
    record: PathBuf,
    lock: PathBuf,
    temp: PathBuf,
    /// Present while the sandbox stops (see the module header).
    stopping: PathBuf,
    /// OOM kills of earlier runs of the name (see [`Claim::end`]).
    oom_kills: PathBuf,
}

impl Files {
    fn of(dir: &Path, name: &str) -> Files {
        Files {
            record: dir.join(format!("{name}.json")),
            lock: dir.join(format!("{name}.lock")),
            // A dot file: never a name (names cannot start with `.`), never listed.
            temp: dir.join(format!(".{name}.json.tmp")),
            stopping: dir.join(format!("{name}.stopping")),
            oom_kills: dir.join(format!("{name}.oom_kills")),
        }
    }
}

/// An instance name held by this process: the lock, and the record once written. Dropping it
/// removes both, in the process that took it only.
pub struct Claim {
    name: String,
    files: Files,
    lock: Option<Flock<fs::File>>,
    owner: u32,
}

/// Creates `dir` (and `/run/stockade` above it) root-only, and refuses one that someone
/// other than root could write: what is read back from it is trusted.
fn ensure_dir(dir: &Path) -> Result<(), Error> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true).mode(0o700);
    b.create(dir).map_err(io_error(dir))?;
    let m = fs::symlink_metadata(dir).map_err(io_error(dir))?;
    if !m.is_dir() || m.uid() != 0 || m.mode() & 0o077 != 0 {
        return Err(Error::Io {
            path: dir.to_owned(),
            detail: format!(
                "not a directory only root can reach (owner uid {}, mode {:04o}); remove it",
                m.uid(),
                m.mode() & 0o7777
            ),
        });
    }
    Ok(())
}

/// Tries to lock `NAME.lock` without waiting. Some(lock) when this process now holds the
/// file the path names; None when another process holds it.
fn try_lock(files: &Files) -> Result<Option<Flock<fs::File>>, Error> {
    loop {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&files.lock)
            .map_err(io_error(&files.lock))?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Ok(None),
            Err((_, e)) => {
                return Err(Error::Io {
                    path: files.lock.clone(),
                    detail: format!("flock(LOCK_EX|LOCK_NB): {e}"),
                })
            }
        };
        // The holder before us removes the file, still locked, as it ends: a lock on the
        // inode it unlinked takes no name. Locked and still at the path is ours.
        let ours = lock.metadata().map_err(io_error(&files.lock))?.ino();
        match fs::symlink_metadata(&files.lock) {
            Ok(m) if m.ino() == ours => return Ok(Some(lock)),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error(&files.lock)(e)),
        }
    }
}

/// The record at `path`, if it is one of this format.
fn read(path: &Path) -> Option<Record> {
    let text = fs::read_to_string(path).ok()?;
    serde_json::from_str::<Record>(&text)
        .ok()
        .filter(|r| r.format == FORMAT)
}

/// What identifies a record file's content: a record is only ever replaced by a rename
/// ([`Claim::write`]), which gives it a new inode, so an equal identity is the same text.
type FileId = (u64, u64, u64, i64, i64);

fn file_id(path: &Path) -> Option<FileId> {
    let m = fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}

/// Records already parsed, by instance name, for a long-running reader (`metrics
/// --listen`): parsing every plan on every scrape was nearly all of a scrape's time
/// (~2 ms a record in a debug build). Which sandboxes run is still decided afresh on each
/// [`list_cached`]; only the parse of an unchanged file is saved.
#[derive(Default)]
pub struct Cache(std::sync::Mutex<BTreeMap<String, (FileId, std::sync::Arc<Record>)>>);

impl Cache {
    /// The record at `path` (instance `name`), parsed once per file.
    fn read(&self, name: &str, path: &Path) -> Option<std::sync::Arc<Record>> {
        let id = file_id(path)?;
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((cached, record)) = map.get(name) {
            if *cached == id {
                return Some(record.clone());
            }
        }
        let record = std::sync::Arc::new(read(path)?);
        // Read again after the parse: a rename in between makes the parse not this id's.
        if file_id(path) == Some(id) {
            map.insert(name.to_owned(), (id, record.clone()));
        }
        Some(record)
    }

    /// Forgets every name but those in `names`.
    fn keep(&self, names: &[String]) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|n, _| names.contains(n));
    }
}

/// Removes the files of a sandbox that is gone (the caller holds its name's lock, so no
/// supervisor of that name runs or starts meanwhile). Says so at -v: its supervisor was
/// killed before it could clean up.
fn remove_stale(name: &str, files: &Files) {
    let _ = fs::remove_file(&files.stopping);
    if !files.record.exists() && !files.temp.exists() {
        return;
    }
    match read(&files.record) {
        Some(r) => tracing::info!(
            "removed the stale record of instance {name}: its supervisor (pid {}) is gone",
            r.supervisor.pid
        ),
        None => tracing::info!("removed the stale record of instance {name}"),
    }
    let _ = fs::remove_file(&files.record);
    let _ = fs::remove_file(&files.temp);
}

/// Takes instance name `name` in `dir` for this process, or says who holds it. A record
/// left by a sandbox that is gone is removed (the lock proves its supervisor is).
pub fn take(dir: &Path, name: &str) -> Result<Claim, Error> {
    ensure_dir(dir)?;
    let files = Files::of(dir, name);
    let Some(lock) = try_lock(&files)? else {
        return Err(match read(&files.record) {
            Some(r) => Error::Running {
                name: name.to_owned(),
                pid: r.supervisor.pid,
                unit: r.unit.unwrap_or_else(|| "none".into()),
            },
            // Held, with no record yet: another start is setting its sandbox up.
            None => Error::Starting {
                name: name.to_owned(),
            },
        });
    };
    remove_stale(name, &files);
    Ok(Claim {
        name: name.to_owned(),
        files,
        lock: Some(lock),
        owner: std::process::id(),
    })
}

impl Claim {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the record is (once written): `DIR/NAME.json`.
    pub fn path(&self) -> &Path {
        &self.files.record
    }

    /// Writes the record atomically (see [`Claim::write_rendered`]).
    #[cfg(test)]
    pub fn write(&self, record: &Record) -> Result<(), Error> {
        let plan = render_plan(&record.plan).map_err(|detail| Error::Io {
            path: self.files.record.clone(),
            detail,
        })?;
        self.write_rendered(&Written {
            format: record.format,
            stockade_version: &record.stockade_version,
            instance: &record.instance,
            profile: &record.profile,
            supervisor: record.supervisor,
            init: record.init,
            namespaces: &record.namespaces,
            cgroup: record.cgroup.as_deref(),
            unit: record.unit.as_deref(),
            started_unix_ms: record.started_unix_ms,
            network: record.network.as_ref(),
            plan: &plan,
        })
    }

    /// Writes the record atomically: to a temporary file in the same directory, then renamed
    /// over `NAME.json`, so a reader sees the whole record or none. No fsync: /run is a
    /// tmpfs, gone at reboot with the sandboxes it describes.
    pub fn write_rendered(&self, record: &Written) -> Result<(), Error> {
        use std::io::Write;
        let text = serde_json::to_string(record).map_err(|e| Error::Io {
            path: self.files.record.clone(),
            detail: e.to_string(),
        })?;
        let temp = &self.files.temp;
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(temp)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(io_error(temp))?;
        fs::rename(temp, &self.files.record).map_err(io_error(&self.files.record))
    }

    /// Marks the sandbox stopping: creates `NAME.stopping` (once; again is a no-op).
    pub fn mark_stopping(&self) -> Result<(), Error> {
        let path = &self.files.stopping;
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map(drop)
            .map_err(io_error(path))
    }
}

/// The OOM kills that ended earlier runs of a name since boot (0 when none did).
fn earlier_oom_kills(files: &Files) -> u64 {
    fs::read_to_string(&files.oom_kills)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

impl Claim {
    /// The sandbox is gone: its record goes first, then `oom_kills` (its cgroup's count)
    /// is added to the name's tally in `NAME.oom_kills`, still under the name's lock.
    /// The tally keeps `stockade_oom_kills_total` a counter across restarts: an OOM kill
    /// usually ends the sandbox, its cgroup (and the kernel's count) goes with it, and a
    /// unit's restart starts from 0, so a scrape would otherwise almost never see it. The
    /// record is removed before the tally grows so no reader counts a kill twice. /run is
    /// a tmpfs: the tally starts again at boot, as a counter may.
    pub fn end(self, oom_kills: u64) {
        if oom_kills > 0 && std::process::id() == self.owner {
            let _ = fs::remove_file(&self.files.record);
            let total = earlier_oom_kills(&self.files) + oom_kills;
            let temp = self.files.oom_kills.with_extension("oom_kills.tmp");
            let written = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&temp)
                .and_then(|mut f| {
                    std::io::Write::write_all(&mut f, format!("{total}\n").as_bytes())
                })
                .and_then(|()| fs::rename(&temp, &self.files.oom_kills));
            if let Err(e) = written {
                let _ = fs::remove_file(&temp);
                tracing::warn!(
                    "cannot count the OOM kill in {}: {e}",
                    self.files.oom_kills.display()
                );
            }
        }
        drop(self);
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        // A forked copy of this value is never this process's to clean up.
        if std::process::id() != self.owner {
            return;
        }
        // The mark first: it never outlives the record it qualifies.
        let _ = fs::remove_file(&self.files.stopping);
        let _ = fs::remove_file(&self.files.record);
        let _ = fs::remove_file(&self.files.temp);
        // Removed while still locked, then unlocked by closing (see the module header).
        let _ = fs::remove_file(&self.files.lock);
        drop(self.lock.take());
    }
}

/// A running sandbox, as its record describes it.
#[derive(Debug, Clone)]
pub struct Instance {
    pub name: String,
    /// OOM kills that ended earlier runs of this name since boot.
    pub earlier_oom_kills: u64,
    /// Shared: a long-running reader's cache hands out the same parse on every scrape.
    pub record: std::sync::Arc<Record>,
    /// Its supervisor has marked it stopping: a stop was asked for, or the service ended.
    pub stopping: bool,
}

/// The running instance `name`, read only: its record, when the supervisor it names runs
/// (its pid with the recorded start time). Unlike [`list`], a stale record is left for the
/// next start of the name or `ps` to remove: a reader such as `why` changes nothing.
pub fn running(dir: &Path, name: &str, host: &Host) -> Option<Instance> {
    if invalid_name(name).is_some() {
        return None;
    }
    let files = Files::of(dir, name);
    let record = std::sync::Arc::new(read(&files.record)?);
    host.is_running(record.supervisor).then(|| Instance {
        earlier_oom_kills: earlier_oom_kills(&files),
        name: name.to_owned(),
        record,
        stopping: files.stopping.exists(),
    })
}

/// Every running sandbox recorded in `dir`, by name: its name's lock is held and its
/// supervisor runs (its pid, with the start time recorded: a reused pid is another
/// process). A record whose lock is free is stale: no supervisor of it lives. It is removed
/// under that lock, so a new start of the name is never mistaken for it; a name locked by
/// a start that has not replaced the old record yet is left to that start.
pub fn list(dir: &Path, host: &Host) -> Vec<Instance> {
    list_with(dir, host, None)
}

/// [`list`], with the parsed records kept in `cache` between calls.
pub fn list_cached(dir: &Path, host: &Host, cache: &Cache) -> Vec<Instance> {
    list_with(dir, host, Some(cache))
}

fn list_with(dir: &Path, host: &Host, cache: Option<&Cache>) -> Vec<Instance> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            let name = n.strip_suffix(".json")?;
            (invalid_name(name).is_none()).then(|| name.to_owned())
        })
        .collect();
    names.sort();
    if let Some(c) = cache {
        c.keep(&names);
    }
    let mut live = Vec::new();
    for name in names {
        let files = Files::of(dir, &name);
        match try_lock(&files) {
            Ok(Some(lock)) => {
                remove_stale(&name, &files);
                let _ = fs::remove_file(&files.lock);
                drop(lock);
            }
            Ok(None) => {
                match cache.map_or_else(
                    || read(&files.record).map(std::sync::Arc::new),
                    |c| c.read(&name, &files.record),
                ) {
                    // Read after the record: the mark is made after it and removed before it.
                    Some(record) if host.is_running(record.supervisor) => {
                        let stopping = files.stopping.exists();
                        live.push(Instance {
                            earlier_oom_kills: earlier_oom_kills(&files),
                            name,
                            record,
                            stopping,
                        })
                    }
                    _ => {}
                }
            }
            Err(e) => tracing::warn!("instance {name}: {e}"),
        }
    }
    live
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_are_plain_file_names() {
        for ok in ["redis", "redis-2", "a.b_c@d", "0", &"x".repeat(64)] {
            assert_eq!(invalid_name(ok), None, "{ok}");
        }
        for bad in [
            "",
            ".hidden",
            "a/b",
            "..",
            "sp ace",
            "ünï",
            "new\nline",
            &"x".repeat(65),
        ] {
            assert!(invalid_name(bad).is_some(), "{bad:?}");
        }
        assert_eq!(
            invalid_name("a/b").unwrap(),
            "`/` cannot be in an instance name (letters, digits and -_.@ only)"
        );
    }

    fn record(name: &str, supervisor: ProcId) -> Record {
        let plan = crate::plan::tests::sample();
        Record {
            format: FORMAT,
            stockade_version: "0".into(),
            instance: name.into(),
            profile: "p".into(),
            supervisor,
            init: supervisor,
            namespaces: BTreeMap::new(),
            cgroup: None,
            unit: Some("u.scope".into()),
            started_unix_ms: 0,
            network: Some(Attached {
                network: "default".into(),
                bridge: "stockade0".into(),
                veth: "vstk1".into(),
                address: std::net::Ipv4Addr::new(10, 89, 0, 2),
                address6: None,
            }),
            plan,
        }
    }

    /// Root only: the directory's owner is checked.
    #[test]
    fn a_name_is_taken_once_and_a_stale_record_is_removed() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let host = Host::current();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("instances");
        let me = host.proc_id(std::process::id()).unwrap();
        let claim = take(&dir, "a").unwrap();
        // Flock is per open file: a second take in this process is refused too.
        let e = take(&dir, "a").err().unwrap().to_string();
        assert!(e.contains("being started"), "{e}");
        let written = record("a", me);
        claim.write(&written).unwrap();
        // What is written (the plan rendered ahead) reads back as the record it was.
        let back: Record =
            serde_json::from_str(&fs::read_to_string(dir.join("a.json")).unwrap()).unwrap();
        assert_eq!(back, written);
        let e = take(&dir, "a").err().unwrap().to_string();
        assert!(
            e.contains(&format!(
                "already running (supervisor pid {}, unit u.scope)",
                me.pid
            )),
            "{e}"
        );
        let running = list(&dir, &host);
        assert_eq!(running.len(), 1);
        assert_eq!(
            (running[0].name.as_str(), running[0].record.supervisor),
            ("a", me)
        );
        assert!(!running[0].stopping);
        claim.mark_stopping().unwrap();
        claim.mark_stopping().unwrap();
        assert!(list(&dir, &host)[0].stopping, "marked stopping");
        drop(claim);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0, "all files removed");
        // A record whose supervisor is gone (no lock held, a start time that never was).
        let gone = ProcId {
            pid: me.pid,
            start_time: me.start_time + 1,
        };
        fs::write(
            dir.join("b.json"),
            serde_json::to_string(&record("b", gone)).unwrap(),
        )
        .unwrap();
        assert!(list(&dir, &host).is_empty());
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            0,
            "stale record removed"
        );
        fs::write(
            dir.join("c.json"),
            serde_json::to_string(&record("c", gone)).unwrap(),
        )
        .unwrap();
        fs::write(dir.join("c.stopping"), "").unwrap();
        let c = take(&dir, "c").unwrap();
        assert!(!dir.join("c.json").exists(), "take removes a stale record");
        assert!(!dir.join("c.stopping").exists(), "and its stale mark");
        drop(c);
    }

    /// Root only, as above.
    #[test]
    fn oom_kills_that_ended_a_run_count_for_the_next_run_of_the_name() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let host = Host::current();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("instances");
        let me = host.proc_id(std::process::id()).unwrap();
        let run = |kills: u64| {
            let claim = take(&dir, "r").unwrap();
            claim.write(&record("r", me)).unwrap();
            let earlier = list(&dir, &host)[0].earlier_oom_kills;
            claim.end(kills);
            assert!(list(&dir, &host).is_empty(), "the record is gone");
            earlier
        };
        assert_eq!(run(0), 0);
        assert!(!dir.join("r.oom_kills").exists(), "no tally without a kill");
        assert_eq!(run(2), 0);
        assert_eq!(run(1), 2);
        assert_eq!(run(0), 3);
        assert_eq!(fs::read_to_string(dir.join("r.oom_kills")).unwrap(), "3\n");
    }
}
