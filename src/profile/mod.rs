//! What the admin wrote: finding a profile on the search path, reading it with its includes
//! and drop-ins, merging them (every value keeps the file and span it came from) and checking
//! everything that does not depend on the host.
//!
//! This stage reads profile files and nothing else: no users, no bind sources, no syscalls.

pub mod families;
mod keys;
pub mod problem;
pub mod schema;
pub mod source;
mod syscall_groups;
pub mod syscalls;
pub mod validate;
pub mod values;

pub use problem::{At, Problem};
pub use schema::{Profile, Section};
pub use source::{FileId, Origin, SourceMap, Src};

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

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

    /// The file for a profile name, first match wins.
    fn find(&self, name: &str) -> Option<PathBuf> {
        self.dirs
            .iter()
            .map(|d| d.join(format!("{name}.toml")))
            .find(|p| p.is_file())
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
                if p.extension() == Some(OsStr::new("toml")) && p.is_file() {
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

/// A profile that could not be loaded, with every problem found.
#[derive(Debug)]
pub struct Invalid {
    pub problems: Vec<Problem>,
    pub sources: SourceMap,
}

impl Invalid {
    pub fn lines(&self) -> Vec<String> {
        self.problems
            .iter()
            .map(|p| p.render(&self.sources))
            .collect()
    }
}

/// Finds, reads, merges and validates the profile `arg` (a name or a path).
pub fn load(arg: &str, search: &SearchPath) -> Result<Loaded, Box<Invalid>> {
    let mut loader = Loader {
        search,
        sources: SourceMap::default(),
        problems: Vec::new(),
        stack: Vec::new(),
    };
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
                problems: vec![Problem::new(
                    At::Nowhere,
                    None,
                    format!(
                        "profile `{arg}` not found; looked for {}",
                        looked.join(", ")
                    ),
                )],
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
    for dropin in dropins(&dropin_dirs) {
        if let Some(layer) = loader.load_file(&dropin, None) {
            profile.merge(layer);
        }
    }
    loader.finish(profile, path)
}

enum ReadError {
    Unreadable(std::io::Error),
    Untrusted(String),
}
use ReadError::{Unreadable, Untrusted};

/// Reads a profile file, refusing it (as sudo does its sudoers) when someone other than a
/// trusted owner could have written it: the file's owner, its group/other write bits, and
/// those of its directory, which decide who can replace it. The checks use the opened file,
/// so a file swapped in after them is not the one read.
fn read_trusted(path: &Path, owners: Option<&[u32]>) -> Result<String, ReadError> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let mut file = std::fs::File::open(path).map_err(Unreadable)?;
    if let Some(owners) = owners {
        let fix = "stockade runs as root and reads only profiles that no one but root (or the user who ran sudo) can change";
        let meta = file.metadata().map_err(Unreadable)?;
        let mode = meta.mode() & 0o7777;
        if !owners.contains(&meta.uid()) {
            return Err(Untrusted(format!(
                "refusing {}: owned by uid {} (mode {mode:04o}); {fix}: chown root {0}",
                path.display(),
                meta.uid()
            )));
        }
        if mode & 0o022 != 0 {
            return Err(Untrusted(format!(
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
                return Err(Untrusted(format!("refusing {}: its directory {} (uid {}, mode {dmode:04o}) lets someone else replace it; {fix}", path.display(), dir.display(), d.uid())));
            }
        }
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(Unreadable)?;
    Ok(text)
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
    let mut loader = Loader {
        search: &search,
        sources: SourceMap::default(),
        problems: Vec::new(),
        stack: Vec::new(),
    };
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
    problems: Vec<Problem>,
    /// Files being loaded, outermost first, to detect include cycles.
    stack: Vec<PathBuf>,
}

impl Loader<'_> {
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
        let text = match read_trusted(path, self.search.trusted_owners.as_deref()) {
            Ok(t) => t,
            Err(Untrusted(msg)) => {
                self.problems.push(Problem::new(at(), None, msg));
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
        let file = self.sources.add(path.to_owned(), text);
        let own = self.parse(file)?;

        self.stack.push(canonical);
        let mut merged = Profile::default();
        if let Some(includes) = &own.include {
            for name in includes.value.iter() {
                match self.resolve_include(path, name) {
                    Ok(p) => {
                        if let Some(layer) = self.load_file(&p, Some(includes.origin)) {
                            merged.merge(layer);
                        }
                    }
                    Err(msg) => self
                        .problems
                        .push(Problem::at(includes.origin, "include", msg)),
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
                self.problems.push(toml_problem(file, &e));
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
