//! Command-line definitions (clap). Glue only: parsing, help text and examples; `main.rs`
//! wires the subcommands to the stages and maps errors to exit codes.

use clap::{ArgAction, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "stockade",
    version,
    about = "Run a service in a sandbox described by a TOML profile",
    long_about = "stockade runs a service inside Linux namespaces with its own mounts, ids, \
capabilities and landlock rules, all described by a per-service TOML profile.\n\n\
Profiles are found by name in --profile-path directories, then $STOCKADE_PROFILE_PATH, then \
/etc/stockade/profiles, /run/stockade/profiles and /usr/share/stockade/profiles; an argument \
containing `/` or ending in `.toml` is a file.",
    after_help = "Examples:\n  stockade run redis\n  stockade check\n  stockade show redis\n\nSee stockade.toml(5) for the profile format."
)]
pub struct Cli {
    /// More output (-v debug, -vv trace)
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    /// Only errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Directory searched for profiles before the standard ones (repeatable)
    #[arg(long = "profile-path", value_name = "DIR", global = true)]
    pub profile_path: Vec<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the service in its sandbox, in the foreground
    #[command(
        after_help = "Examples:\n  stockade run redis\n  stockade run ./hello.toml\n  stockade run redis -- --loglevel debug   (needs exec.args_append = true)\n\nExits with the service's exit status, or 128+N when it dies of signal N; \
78 for an invalid profile, 125 when the sandbox cannot be set up, 126/127 when the command cannot be executed."
    )]
    Run {
        /// Profile name or path to a .toml file
        profile: String,
        /// Arguments appended to exec.command (after `--`)
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Validate profiles and print one line per problem
    #[command(
        after_help = "Examples:\n  stockade check              (every profile on the search path)\n  stockade check redis nginx\n  stockade check ./new.toml\n\nExits 0 only when every profile is valid."
    )]
    Check {
        /// Profile names or paths; all profiles on the search path when none are given
        profiles: Vec<String>,
    },
    /// Print the resolved profile (includes and drop-ins applied) with each value's origin
    #[command(after_help = "Examples:\n  stockade show redis\n  stockade show ./hello.toml")]
    Show {
        /// Profile name or path to a .toml file
        profile: String,
    },
}
