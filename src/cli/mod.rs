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
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    #[command(
        after_help = "Examples:\n  stockade completions bash > /usr/share/bash-completion/completions/stockade\n  stockade completions zsh > /usr/share/zsh/vendor-completions/_stockade"
    )]
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// Print the resolved profile (includes and drop-ins applied) with each value's origin
    #[command(
        after_help = "Examples:\n  stockade show redis\n  stockade show ./hello.toml\n  stockade show --plan redis          (what run would do, each decision with its origin)\n  stockade show --plan --json redis | jq .finals.syscalls"
    )]
    Show {
        /// Profile name or path to a .toml file
        profile: String,
        /// Print the launch plan for this host instead: every decision with the profile
        /// line or default that made it
        #[arg(long)]
        plan: bool,
        /// With --plan: print the plan as its JSON record
        #[arg(long, requires = "plan")]
        json: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// man/stockade.1 and one page per subcommand are generated from these definitions;
    /// regenerate them with `STOCKADE_UPDATE_MAN=1 cargo test --bins man_pages`.
    #[test]
    fn man_pages_are_generated_from_the_cli_and_current() {
        let render = |cmd: clap::Command| {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page).unwrap();
            String::from_utf8(page).unwrap()
        };
        let mut pages = vec![("stockade.1".to_owned(), render(Cli::command()))];
        for sub in Cli::command().get_subcommands() {
            let name: &'static str =
                Box::leak(format!("stockade-{}", sub.get_name()).into_boxed_str());
            pages.push((format!("{name}.1"), render(sub.clone().name(name))));
        }
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/man");
        let update = std::env::var_os("STOCKADE_UPDATE_MAN").is_some();
        for (file, page) in pages {
            let path = format!("{dir}/{file}");
            if update {
                std::fs::write(&path, &page).unwrap();
            }
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == page,
                "man/{file} is stale: run STOCKADE_UPDATE_MAN=1 cargo test --bins man_pages"
            );
        }
    }
}
