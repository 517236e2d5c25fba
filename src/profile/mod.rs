//! What the admin wrote: finding a profile on the search path, reading it with its includes
//! and drop-ins, merging them (every value keeps the file and span it came from) and checking
//! everything that does not depend on the host.
//!
//! This stage reads profile files and nothing else: no users, no bind sources, no syscalls.

pub mod families;
mod keys;
pub mod networks;
pub mod problem;
pub mod schema;
pub mod source;
mod syscall_groups;
pub mod syscalls;
pub mod validate;
pub mod values;

pub use problem::{At, Problem, Problems};
pub use schema::{Profile, Section};
pub use source::{FileId, Origin, SourceMap, Src};

use std::collections::HashSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The largest profile, include or drop-in read; profiles are a few kilobytes.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// The most text one profile may pull in through its includes and drop-ins together.
pub const MAX_TOTAL_BYTES: u64 = 4 << 20;

/// Where profiles are looked up by name, highest priority first.
#[derive(Debug, Clone)]
pub struct SearchPath {
    pub dirs: Vec<PathBuf>,
    /// Who may own the profile files read. `None` trusts any file the caller can read.
    pub trusted_owners: Option<Vec<u32>>,
}

pub const DEFAULT_DIRS: [&str; 3] = [
    "/etc/stockade/profiles",
    "/run/stockade/profiles",
    "/usr/share/stockade/profiles",
];

impl SearchPath {
    /// `--profile-path` directories, then `$STOCKADE_PROFILE_PATH`, then the system directories.
    pub fn new(cli: &[PathBuf], env: Option<&OsStr>) -> Self {
        let mut dirs = cli.to_vec();
        if let Some(env) = env {
            dirs.extend(std::env::split_paths(env).filter(|p| !p.as_os_str().is_empty()));
        }
        dirs.extend(DEFAULT_DIRS.iter().map(PathBuf::from));
        SearchPath {
            dirs,
            trusted_owners: None,
        }
    }

    /// The file for a profile name, first match wins. Anything of that name counts, a FIFO,
    /// a directory or a dangling symlink too: reading refuses it, where skipping it would
    /// silently pick a lower-priority profile instead.
    fn find(&self, name: &str) -> Option<PathBuf> {
        self.dirs
            .iter()
            .map(|d| d.join(format!("{name}.toml")))
            .find(|p| p.symlink_metadata().is_ok())
    }

    /// Every profile name on the search path, each once.
    pub fn all_names(&self) -> Vec<String> {
        let mut names = std::collections::BTreeSet::new();
        for dir in &self.dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                // Not only regular files: `check` must report a FIFO or a directory named
                // like a profile, which `run` would refuse.
                if p.extension() == Some(OsStr::new("toml")) {
                    if let Some(stem) = p.file_stem().and_then(OsStr::to_str) {
                        names.insert(stem.to_owned());
                    }
                }
            }
        }
        names.into_iter().collect()
    }
}

/// An argument names a file when it contains `/` or ends in `.toml`; otherwise a profile.
pub fn is_path_arg(arg: &str) -> bool {
    arg.contains('/') || arg.ends_with(".toml")
}

/// The profile name of a file: `redis.toml` is `redis`.
pub fn name_of(path: &Path) -> String {
    path.file_stem()
        .and_then(OsStr::to_str)
        .unwrap_or("profile")
        .to_owned()
}

/// A resolved, merged and validated profile.
#[derive(Debug)]
pub struct Loaded {
    pub name: String,
    pub path: PathBuf,
    pub profile: Profile,
    pub sources: SourceMap,
}

impl Loaded {
    /// `show`'s text: a header naming the profile's files, then every effective value with
    /// the file and line it came from.
    pub fn render(&self) -> String {
        let mut r = schema::Render {
            map: &self.sources,
            out: String::new(),
        };
        self.profile.render("", &mut r);
        let files: Vec<String> = self
            .sources
            .files()
            .map(|f| f.path.display().to_string())
            .collect();
        format!(
            "# profile {} from {}\n{}",
            self.name,
            files.join(", "),
            r.out
        )
    }
}

/// A profile that could not be loaded, with every problem found.
#[derive(Debug)]
pub struct Invalid {
    pub problems: Problems,
    pub sources: SourceMap,
}

impl Invalid {
    pub fn lines(&self) -> Vec<String> {
        self.problems.render(&self.sources)
    }
}

/// Finds, reads, merges and validates the profile `arg` (a name or a path).
pub fn load(arg: &str, search: &SearchPath) -> Result<Loaded, Box<Invalid>> {
    let mut loader = Loader::new(search);
    let (path, dropin_dirs) = if is_path_arg(arg) {
        let p = PathBuf::from(arg);
        let d = dropin_dir(&p);
        (p, vec![d])
    } else {
        let Some(p) = search.find(arg) else {
            let looked: Vec<String> = search
                .dirs
                .iter()
                .map(|d| d.join(format!("{arg}.toml")).display().to_string())
                .collect();
            return Err(Box::new(Invalid {
                problems: std::iter::once(Problem::new(
                    At::Nowhere,
                    None,
                    format!(
                        "profile `{arg}` not found; looked for {}",
                        looked.join(", ")
                    ),
                ))
                .collect(),
                sources: loader.sources,
            }));
        };
        let dirs = search
            .dirs
            .iter()
            .map(|d| d.join(format!("{arg}.toml.d")))
            .collect();
        (p, dirs)
    };
    let mut profile = loader.load_file(&path, None).unwrap_or_default();
    // The profile stays on the stack while its drop-ins load, so a drop-in that includes it
    // is a cycle rather than a second copy of the profile.
    let main = std::fs::canonicalize(&path).ok();
    loader.stack.extend(main);
    for dropin in dropins(&dropin_dirs) {
        if let Some(layer) = loader.load_file(&dropin, None) {
            profile.merge(layer);
        }
    }
    loader.finish(profile, path)
}

enum ReadError {
    Unreadable(std::io::Error),
    /// Not read at all: a special file or an untrusted one.
    Refused(String),
    /// Longer than the limit it was read with.
    TooLarge,
    /// The bytes before the first invalid sequence, and that sequence's first byte.
    NotUtf8(String, u8),
}
use ReadError::{NotUtf8, Refused, TooLarge, Unreadable};

/// What a file is, when it is not a regular file.
fn special_kind(t: std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    }
}

fn refuse_special(path: &Path, t: std::fs::FileType) -> Result<(), ReadError> {
    match special_kind(t) {
        None => Ok(()),
        Some(kind) => Err(Refused(format!(
            "refusing {}: it is {kind}; profiles, includes and drop-ins must be regular files",
            path.display()
        ))),
    }
}

/// Reads a profile file of at most `limit` bytes, refusing it (as sudo does its sudoers)
/// when someone other than a trusted owner could have written it: the file's owner, its
/// group/other write bits, and those of its directory, which decide who can replace it. The
/// checks use the opened file, so a file swapped in after them is not the one read.
///
/// Only a regular file is read. Its type is checked before opening, since opening a device
/// can have effects of its own, and again on the opened file; the open is non-blocking so a
/// FIFO swapped in between cannot stall the reader.
fn read_trusted(path: &Path, owners: Option<&[u32]>, limit: u64) -> Result<String, ReadError> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    refuse_special(
        path,
        std::fs::metadata(path).map_err(Unreadable)?.file_type(),
    )?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(Unreadable)?;
    let meta = file.metadata().map_err(Unreadable)?;
    refuse_special(path, meta.file_type())?;
    if let Some(owners) = owners {
        let fix = "stockade runs as root and reads only profiles that no one but root (or the user who ran sudo) can change";
        let mode = meta.mode() & 0o7777;
        if !owners.contains(&meta.uid()) {
            return Err(Refused(format!(
                "refusing {}: owned by uid {} (mode {mode:04o}); {fix}: chown root {0}",
                path.display(),
                meta.uid()
            )));
        }
        if mode & 0o022 != 0 {
            return Err(Refused(format!(
                "refusing {}: mode {mode:04o} lets group or others write it; {fix}: chmod go-w {0}",
                path.display()
            )));
        }
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if let Ok(d) = std::fs::metadata(dir) {
            let dmode = d.mode() & 0o7777;
            // A sticky directory (/tmp) lets others create files but not replace ours.
            let replaceable = dmode & 0o022 != 0 && dmode & 0o1000 == 0;
            if replaceable || !owners.contains(&d.uid()) {
                return Err(Refused(format!("refusing {}: its directory {} (uid {}, mode {dmode:04o}) lets someone else replace it; {fix}", path.display(), dir.display(), d.uid())));
            }
        }
    }
    // One byte past the limit tells a file of exactly `limit` bytes from a larger one,
    // without reading all of a larger one.
    let mut bytes = Vec::new();
    file.by_ref()
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(Unreadable)?;
    if bytes.len() as u64 > limit {
        return Err(TooLarge);
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let mut bytes = e.into_bytes();
        let bad = bytes[valid];
        bytes.truncate(valid);
        NotUtf8(String::from_utf8(bytes).unwrap_or_default(), bad)
    })
}

/// Parses, merges in order and validates profile texts held in memory, each as if read from
/// its path: the parser, merger and validator without the filesystem (includes are not
/// followed). For the fuzz target, and tests of the language itself.
#[cfg_attr(not(test), allow(dead_code))] // fuzz/ includes this module by path
pub fn load_texts(layers: &[(PathBuf, String)]) -> Result<Loaded, Box<Invalid>> {
    let search = SearchPath {
        dirs: Vec::new(),
        trusted_owners: None,
    };
    let mut loader = Loader::new(&search);
    let mut profile = Profile::default();
    for (path, text) in layers {
        let file = loader.sources.add(path.clone(), text.clone());
        if let Some(layer) = loader.parse(file) {
            profile.merge(layer);
        }
    }
    let path = layers.first().map(|l| l.0.clone()).unwrap_or_default();
    loader.finish(profile, path)
}

fn dropin_dir(profile: &Path) -> PathBuf {
    let mut s = profile.as_os_str().to_owned();
    s.push(".d");
    PathBuf::from(s)
}

/// Drop-in files from every directory, by file name; a name in an earlier (higher-priority)
/// directory masks the same name in later ones, as with systemd's drop-ins.
fn dropins(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut by_name = std::collections::BTreeMap::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension() == Some(OsStr::new("toml")) {
                by_name.entry(e.file_name()).or_insert(p);
            }
        }
    }
    by_name.into_values().collect()
}

struct Loader<'a> {
    search: &'a SearchPath,
    sources: SourceMap,
    problems: Problems,
    /// Files being loaded, outermost first, to detect include cycles.
    stack: Vec<PathBuf>,
    /// Every file reached so far. A file included twice (A includes B and C, both include
    /// D) is read and merged once, at its first place: merging it again later would undo
    /// whatever came between, and re-reading it at every path through a diamond grows
    /// exponentially with the depth.
    seen: HashSet<PathBuf>,
    /// Bytes read so far, against [`MAX_TOTAL_BYTES`].
    read: u64,
}

impl<'a> Loader<'a> {
    fn new(search: &'a SearchPath) -> Self {
        Loader {
            search,
            sources: SourceMap::default(),
            problems: Problems::default(),
            stack: Vec::new(),
            seen: HashSet::new(),
            read: 0,
        }
    }

    /// Validates the merged profile (when every file parsed) and hands over the result.
    fn finish(mut self, profile: Profile, path: PathBuf) -> Result<Loaded, Box<Invalid>> {
        if self.problems.is_empty() {
            // Problems without a position of their own are reported against the main file.
            let main = FileId(0);
            self.problems
                .extend(validate::validate(&profile, main, &path));
        }
        if self.problems.is_empty() {
            Ok(Loaded {
                name: name_of(&path),
                path,
                profile,
                sources: self.sources,
            })
        } else {
            Err(Box::new(Invalid {
                problems: self.problems,
                sources: self.sources,
            }))
        }
    }

    /// Reads one file and, before it, the files it includes. `via` is the include entry that
    /// named this file, for messages.
    fn load_file(&mut self, path: &Path, via: Option<Origin>) -> Option<Profile> {
        let at = || via.map_or(At::File(path.to_owned()), At::Span);
        let canonical = match std::fs::canonicalize(path) {
            Ok(c) => c,
            Err(e) => {
                self.problems.push(Problem::new(
                    at(),
                    via.map(|_| "include".to_owned()),
                    format!("cannot read {}: {}", path.display(), io_reason(&e)),
                ));
                return None;
            }
        };
        if let Some(pos) = self.stack.iter().position(|p| *p == canonical) {
            let chain: Vec<String> = self.stack[pos..]
                .iter()
                .chain(std::iter::once(&canonical))
                .map(|p| p.display().to_string())
                .collect();
            self.problems.push(Problem::new(
                at(),
                Some("include".to_owned()),
                format!("include cycle: {}", chain.join(" -> ")),
            ));
            return None;
        }
        if !self.seen.insert(canonical.clone()) {
            return None;
        }
        let left = MAX_TOTAL_BYTES.saturating_sub(self.read);
        let limit = MAX_FILE_BYTES.min(left);
        let text = match read_trusted(path, self.search.trusted_owners.as_deref(), limit) {
            Ok(t) => t,
            Err(TooLarge) => {
                let why = if limit < MAX_FILE_BYTES {
                    format!(
                        "with the files read before it, the profile's files exceed {} MiB together",
                        MAX_TOTAL_BYTES >> 20
                    )
                } else {
                    format!("larger than {} MiB", MAX_FILE_BYTES >> 20)
                };
                self.problems.push(Problem::new(
                    at(),
                    None,
                    format!("refusing {}: {why}", path.display()),
                ));
                return None;
            }
            Err(Refused(msg)) => {
                self.problems.push(Problem::new(at(), None, msg));
                return None;
            }
            Err(NotUtf8(valid, byte)) => {
                let end = valid.len();
                let file = self.sources.add(path.to_owned(), valid);
                self.problems.push(Problem::new(
                    At::Span(Origin::new(file, end..end)),
                    None,
                    format!("invalid UTF-8 (byte 0x{byte:02x}): a profile is UTF-8 text"),
                ));
                return None;
            }
            Err(Unreadable(e)) => {
                self.problems.push(Problem::new(
                    at(),
                    None,
                    format!("cannot read {}: {}", path.display(), io_reason(&e)),
                ));
                return None;
            }
        };
        self.read += text.len() as u64;
        let file = self.sources.add(path.to_owned(), text);
        let own = self.parse(file)?;

        self.stack.push(canonical);
        let mut merged = Profile::default();
        if let Some(includes) = &own.include {
            for name in includes.value.iter() {
                match self.resolve_include(path, name) {
                    Ok(p) => {
                        if let Some(layer) = self.load_file(&p, Some(name.origin)) {
                            merged.merge(layer);
                        }
                    }
                    Err(msg) => self.problems.push(Problem::at(name.origin, "include", msg)),
                }
            }
        }
        self.stack.pop();
        merged.merge(own);
        Some(merged)
    }

    fn parse(&mut self, file: FileId) -> Option<Profile> {
        let text = self.sources.file(file).text.clone();
        let table = match toml::de::DeTable::parse(&text) {
            Ok(t) => t,
            Err(e) => {
                let mut problem = toml_problem(file, &e);
                if let (Some(span), "duplicate key") = (e.span(), problem.message.as_str()) {
                    problem.message = keys::duplicate_message(&text, &span);
                }
                self.problems.push(problem);
                return None;
            }
        };
        keys::check_unknown(file, table.get_ref(), &mut self.problems);
        let parsed = source::with_file(file, || {
            <Profile as serde::Deserialize>::deserialize(toml::de::Deserializer::from(
                table.clone(),
            ))
        });
        // Unknown keys are recorded but the file's includes are still read, so problems in
        // every file are reported in one pass.
        match parsed {
            Ok(p) => Some(p),
            Err(e) => {
                let mut problem = toml_problem(file, &e);
                problem.key = e.span().and_then(|s| keys::key_at(table.get_ref(), &s));
                self.problems.push(problem);
                None
            }
        }
    }

    fn resolve_include(&self, from: &Path, name: &str) -> Result<PathBuf, String> {
        // The man page promises a name or a path relative to the including file; an absolute
        // path would let a profile pull in any file on the host and echo parts of it in
        // error messages.
        if Path::new(name).is_absolute() {
            return Err(format!(
                "`{name}` is an absolute path; an include is a profile name on the search path or a path relative to this file"
            ));
        }
        if is_path_arg(name) {
            let base = from.parent().unwrap_or(Path::new("."));
            return Ok(base.join(name));
        }
        self.search.find(name).ok_or_else(|| {
            let dirs: Vec<String> = self
                .search
                .dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            format!(
                "included profile `{name}` not found in the search path ({})",
                dirs.join(":")
            )
        })
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => e.to_string(),
    }
}

fn toml_problem(file: FileId, e: &toml::de::Error) -> Problem {
    let message = e.message().trim().to_owned();
    let at = match e.span() {
        Some(span) => At::Span(Origin::new(file, span)),
        None => At::Span(Origin::new(file, 0..0)),
    };
    Problem::new(at, None, message)
}

#[cfg(test)]
mod tests;
