//! `stockade completions SHELL`: a completion script generated from the clap definitions.

use super::Cli;
use crate::error::Error;

pub fn completions(shell: clap_complete::Shell) -> Result<u8, Error> {
    use clap::CommandFactory;
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "stockade",
        &mut std::io::stdout(),
    );
    Ok(0)
}
