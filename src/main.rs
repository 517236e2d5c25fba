//! stockade: wires the command line to the stages (profile → plan → sandbox) and maps every
//! error to an exit code. Errors are printed here, once; each subcommand lives in `cli/`.

mod cli;
mod error;
mod export;
mod host;
mod inspect;
mod ops;
mod plan;
mod profile;
mod sandbox;
mod sys;
mod systemd;

use clap::Parser;
use cli::{Cli, Command, VolumeCommand};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::logging::init(&cli);
    let search = cli::search_path(&cli);
    // The inspectors answer yes (0) or no (1): a question they cannot answer is 2 or more.
    let query = matches!(cli.command, Command::Analyze { .. } | Command::Why { .. });
    let result = match cli.command {
        Command::Run {
            profile,
            name,
            explain,
            args,
        } => cli::run::run(&profile, name, explain, args, &search),
        Command::Check { profiles } => cli::check::check(profiles, &search),
        Command::Show {
            profile,
            plan: true,
            json,
        } => cli::show::show_plan(&profile, json, &search),
        Command::Show { profile, .. } => cli::show::show(&profile, &search),
        Command::Analyze {
            target,
            json,
            threshold,
        } => cli::analyze::analyze(&target, json, threshold, &search),
        Command::Why {
            target,
            question,
            access,
        } => cli::why::why(&target, &question, access, &search),
        Command::Completions { shell } => cli::completions::completions(shell),
        Command::Export {
            format,
            profile,
            dir,
        } => cli::export::export(format, &profile, dir.as_deref(), &search),
        Command::Ps { json } => cli::ps::ps(json),
        Command::Exec {
            user,
            tty,
            name,
            command,
        } => cli::exec::exec(&name, &command, user.as_deref(), tty),
        Command::Cleanup => cli::cleanup::cleanup(),
        Command::Stop { time, names } => cli::stop::stop(&names, time),
        Command::Stats {
            names,
            no_stream,
            json,
        } => cli::stats::stats(&names, no_stream, json),
        Command::Metrics { listen } => cli::metrics::metrics(listen),
        Command::Volume(v) => match v {
            VolumeCommand::Ls { json } => cli::volume::ls(json),
            VolumeCommand::Inspect { name } => cli::volume::inspect(&name),
            VolumeCommand::Create { name, owner } => cli::volume::create(&name, owner),
            VolumeCommand::Rm { names } => cli::volume::rm(&names),
        },
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(if query {
                e.query_exit_code()
            } else {
                e.exit_code()
            })
        }
    }
}
