//! stockade: wires the command line to the stages (profile → plan → sandbox) and maps every
//! error to an exit code. Errors are printed here, once; each subcommand lives in `cli/`.

mod cli;
mod error;
mod host;
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
    let result = match cli.command {
        Command::Run {
            profile,
            name,
            args,
        } => cli::run::run(&profile, name, args, &search),
        Command::Check { profiles } => cli::check::check(profiles, &search),
        Command::Show {
            profile,
            plan: true,
            json,
        } => cli::show::show_plan(&profile, json, &search),
        Command::Show { profile, .. } => cli::show::show(&profile, &search),
        Command::Completions { shell } => cli::completions::completions(shell),
        Command::Ps { json } => cli::ps::ps(json),
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
            ExitCode::from(e.exit_code())
        }
    }
}
