//! stockade's own log records: where they go (journald, stderr) and at which level. Set up
//! once, before any subcommand runs; never inside a sandbox.

use super::Cli;
use tracing_subscriber::prelude::*;

/// stockade's own records go to journald when its socket exists, and to stderr unless
/// stderr already is the journal (a unit's output stream). `-v`/`-q` set the level of both.
pub fn init(cli: &Cli) {
    let (journal_level, stderr_level) = match (cli.quiet, cli.verbose) {
        (true, _) => (tracing::Level::ERROR, tracing::Level::ERROR),
        (false, 0) => (tracing::Level::INFO, tracing::Level::WARN),
        (false, 1) => (tracing::Level::DEBUG, tracing::Level::DEBUG),
        (false, _) => (tracing::Level::TRACE, tracing::Level::TRACE),
    };
    let journal = std::path::Path::new("/run/systemd/journal/socket")
        .exists()
        .then(|| tracing_journald::layer().ok())
        .flatten()
        .map(|l| {
            // syslog's meaning of the levels: info is 6 (`journalctl -p info`), not the
            // crate's default of notice (5), and debug is debug (7).
            use tracing_journald::{Priority, PriorityMappings};
            let priorities = PriorityMappings {
                info: Priority::Informational,
                debug: Priority::Debug,
                ..PriorityMappings::new()
            };
            l.with_field_prefix(None)
                .with_priority_mappings(priorities)
                .with_filter(tracing_subscriber::filter::LevelFilter::from_level(
                    journal_level,
                ))
        });
    // JOURNAL_STREAM names the journal stream systemd connected; stderr is that stream only
    // when its device and inode match (a child of a unit may have redirected it).
    let under_journal = std::env::var("JOURNAL_STREAM").ok().is_some_and(|js| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self/fd/2").is_ok_and(|m| js == format!("{}:{}", m.dev(), m.ino()))
    });
    // Colour only for a person at a terminal: escape codes in a file or the journal are noise.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let stderr = (journal.is_none() || !under_journal).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(colour)
            .with_target(false)
            .without_time()
            .with_filter(tracing_subscriber::filter::LevelFilter::from_level(
                stderr_level,
            ))
    });
    tracing_subscriber::registry()
        .with(journal)
        .with(stderr)
        .init();
}
