//! Provenance for the plan: every decision the plan records says where it came from, the
//! profile file, line and column of the value that decided it, or the default's name.
//!
//! Positions are resolved from the profile's [`Origin`]s through its [`SourceMap`] while the
//! plan is built, so the record (JSON) stands on its own: `show --plan`, `analyze` and `why`
//! read it without the profile files. Nothing here reads files.

use crate::profile::{SourceMap, Src};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// Where one decision of the plan came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provenance {
    /// A value the profile (or one of its includes or drop-ins) wrote.
    Profile {
        file: PathBuf,
        line: u32,
        col: u32,
        /// The profile key, `exec.user`, `mount[2].target`.
        key: String,
    },
    /// The profile says nothing: stockade's default for the setting `name`.
    Default { name: String },
    /// What the caller of stockade supplied: arguments after `--`, its environment, the
    /// unit's notify socket.
    Invocation { name: String },
}

impl Provenance {
    pub fn default(name: impl Into<String>) -> Self {
        Provenance::Default { name: name.into() }
    }

    pub fn invocation(name: impl Into<String>) -> Self {
        Provenance::Invocation { name: name.into() }
    }
}

impl fmt::Display for Provenance {
    /// `redis.toml:14` (the file's name only: the record holds the full path), `default
    /// (filesystem.private_tmp)`, `invocation (args after --)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Provenance::Profile { file, line, .. } => {
                let name = file.file_name().map_or(file.as_os_str(), |n| n);
                write!(f, "{}:{line}", name.to_string_lossy())
            }
            Provenance::Default { name } => write!(f, "default ({name})"),
            Provenance::Invocation { name } => write!(f, "invocation ({name})"),
        }
    }
}

/// A value of the plan with the provenance of the decision that set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decided<T> {
    pub value: T,
    pub from: Provenance,
}

impl<T> Decided<T> {
    pub fn new(value: T, from: Provenance) -> Self {
        Decided { value, from }
    }
}

impl<T> std::ops::Deref for Decided<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// Turns profile origins into provenance, once, while the plan is built.
#[derive(Clone, Copy)]
pub(crate) struct Resolver<'a> {
    pub(crate) sources: &'a SourceMap,
}

impl Resolver<'_> {
    /// Where the profile wrote `v`, under `key`.
    pub(crate) fn at<T>(&self, v: &Src<T>, key: &str) -> Provenance {
        let loc = self.sources.locate(v.origin);
        Provenance::Profile {
            file: loc.path.to_owned(),
            line: u32::try_from(loc.line).unwrap_or(u32::MAX),
            col: u32::try_from(loc.col).unwrap_or(u32::MAX),
            key: key.to_owned(),
        }
    }

    /// The profile's value of `key` if it wrote one, else the default of `key`.
    pub(crate) fn setting<T>(&self, v: &Option<Src<T>>, key: &str) -> Provenance {
        match v {
            Some(v) => self.at(v, key),
            None => Provenance::default(key),
        }
    }
}

/// `nix`'s `Resource` by its profile name (`nofile`), from the one rlimit table.
pub mod resource_name {
    use crate::profile::validate::RLIMITS;
    use nix::sys::resource::Resource;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(r: &Resource, s: S) -> Result<S::Ok, S::Error> {
        match RLIMITS.iter().find(|(_, res)| res == r) {
            Some((name, _)) => s.serialize_str(name),
            None => Err(serde::ser::Error::custom(format!(
                "{r:?} is not in the rlimit table"
            ))),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Resource, D::Error> {
        let name = String::deserialize(d)?;
        crate::profile::validate::rlimit(&name)
            .ok_or_else(|| D::Error::custom(format!("unknown resource limit `{name}`")))
    }
}
