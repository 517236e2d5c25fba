//! The one error every subcommand returns, and the exit code each kind maps to. Each stage
//! keeps its own error type with its context; this enum only says which of them ended the
//! command, so `main.rs` can print it once and exit with the right status.

use crate::{ops, sandbox};

/// The profile is invalid (sysexits' EX_CONFIG, as systemd uses it).
pub const EXIT_CONFIG: u8 = 78;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A profile failed to load or plan; each line is `file:line:col: key: message`.
    #[error("{}", lines.join("\n"))]
    Invalid { lines: Vec<String> },
    /// `check` found problems in some profiles (already printed as its output).
    #[error("stockade: {failed} of {checked} profiles have problems")]
    CheckFailed { failed: usize, checked: usize },
    #[error("stockade: no profiles found in {dirs}")]
    NoProfiles { dirs: String },
    /// The instance name is taken by a running sandbox, or cannot be taken; nothing was set
    /// up.
    #[error("stockade: {0}")]
    Instance(#[from] ops::records::Error),
    /// The profile's name cannot name an instance; `--name` gives one.
    #[error("stockade: the profile name `{profile}` cannot name an instance: {why}; give one with --name")]
    InstanceName { profile: String, why: String },
    /// A command that reads or changes stockade's root-only state, run without root.
    #[error(
        "stockade: {what} needs root (stockade's records and volumes are root's); run it with sudo"
    )]
    NeedsRoot { what: String },
    #[error("stockade: no running sandbox `{name}` (running: {running})")]
    UnknownInstance { name: String, running: String },
    /// The sandbox is marked stopping (a stop was asked for, or its service ended).
    #[error("stockade: sandbox `{name}` is stopping and cannot be entered (running: {running})")]
    Stopping { name: String, running: String },
    /// `metrics --listen` cannot bind its address (in use, not this host's, a low port).
    #[error("stockade: cannot listen on {addr}: {detail}")]
    Listen { addr: String, detail: String },
    #[error("stockade: {0}")]
    Volume(#[from] crate::ops::volumes::Error),
    /// The sandbox could not start the service.
    #[error("stockade: {name}: {source}")]
    Sandbox {
        name: String,
        #[source]
        source: sandbox::Error,
    },
}

impl Error {
    /// The exit status for this error: the one table of stockade's own statuses (78 invalid
    /// profile; 125 setup or a taken instance name; 126/127 exec as the sandbox reports
    /// them; 1 otherwise).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Invalid { .. } => EXIT_CONFIG,
            Error::Sandbox { source, .. } => source.exit_code(),
            // As a setup failure: the sandbox cannot be set up under this name.
            Error::Instance(_) | Error::InstanceName { .. } => 125,
            Error::CheckFailed { .. }
            | Error::NoProfiles { .. }
            | Error::NeedsRoot { .. }
            | Error::UnknownInstance { .. }
            | Error::Stopping { .. }
            | Error::Listen { .. }
            | Error::Volume(_) => 1,
        }
    }
}
