//! stockade: wires the command line to the stages (profile → plan → sandbox) and maps every
//! error to an exit code. Errors are printed here, once.

mod cli;
mod host;
mod plan;
mod profile;
mod sandbox;
mod systemd;

use clap::Parser;
use cli::{Cli, Command};
use profile::{SearchPath, Section};
use std::process::ExitCode;

/// The profile is invalid (sysexits' EX_CONFIG, as systemd uses it).
const EXIT_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let mut search = SearchPath::new(
        &cli.profile_path,
        std::env::var_os("STOCKADE_PROFILE_PATH").as_deref(),
    );
    if nix::unistd::geteuid().is_root() {
        // Root runs what the profile says: only root, or the admin who ran sudo (who could
        // do anything anyway), may have written it.
        let mut owners = vec![0];
        owners.extend(
            std::env::var("SUDO_UID")
                .ok()
                .and_then(|u| u.parse::<u32>().ok()),
        );
        search.trusted_owners = Some(owners);
    }
    match cli.command {
        Command::Run { profile, args } => run(&profile, args, &search),
        Command::Check { profiles } => check(profiles, &search),
        Command::Show {
            profile,
            plan: true,
            json,
        } => show_plan(&profile, json, &search),
        Command::Show { profile, .. } => show(&profile, &search),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "stockade",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
    }
}

/// stockade's own records go to journald when its socket exists, and to stderr unless
/// stderr already is the journal (a unit's output stream). `-v`/`-q` set the level of both.
fn init_logging(cli: &Cli) {
    use tracing_subscriber::prelude::*;
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
            l.with_field_prefix(None).with_filter(
                tracing_subscriber::filter::LevelFilter::from_level(journal_level),
            )
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

fn print_problems(lines: &[String]) {
    for l in lines {
        eprintln!("{l}");
    }
}

/// Loads and plans a profile; on failure prints every problem. Returns the plan with its
/// notes (the holes in the default walls the profile opened) rendered.
fn load_and_plan(
    arg: &str,
    extra_args: Vec<String>,
    search: &SearchPath,
) -> Result<(plan::LaunchPlan, Vec<String>), ()> {
    let loaded = profile::load(arg, search).map_err(|inv| print_problems(&inv.lines()))?;
    let host = host::Host::current();
    let own_cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let inv = plan::Invocation {
        extra_args,
        env: std::env::vars().collect(),
        volume_dir: plan::VOLUME_DIR.into(),
        id: std::process::id(),
        under_unit: std::env::var_os("INVOCATION_ID").is_some(),
        notify_socket: std::env::var("NOTIFY_SOCKET").ok(),
        ids_dir: plan::IDS_DIR.into(),
    };
    // The host is read once, here, for what this profile needs; the planner reads only this.
    let facts = host::HostFacts::gather(
        &host,
        &plan::needs(&loaded.name, &loaded.profile, &inv),
        host.cgroup_facts(&own_cgroup),
        sandbox::sys::landlock_abi(),
    );
    let input = plan::Input {
        name: &loaded.name,
        profile: &loaded.profile,
        path: &loaded.path,
        sources: &loaded.sources,
    };
    let render = |problems: Vec<profile::Problem>| -> Vec<String> {
        let problems: profile::Problems = problems.into_iter().collect();
        problems.render(&loaded.sources)
    };
    match plan::build(&input, &facts, &inv) {
        Ok(plan) => {
            let notes = plan.notes.clone();
            Ok((plan, notes))
        }
        Err(problems) => {
            print_problems(&render(problems));
            Err(())
        }
    }
}

fn run(arg: &str, args: Vec<String>, search: &SearchPath) -> ExitCode {
    let Ok((plan, notes)) = load_and_plan(arg, args, search) else {
        return ExitCode::from(EXIT_CONFIG);
    };
    tracing::debug!(?plan, "launch plan");
    for n in &notes {
        tracing::debug!("note: {n}");
    }
    // Every record of this run carries these fields: `journalctl STOCKADE_PROFILE=redis`.
    let unit = match &plan.cgroup {
        plan::CgroupPlan::Scope(s) => s.unit.clone(),
        // Under a unit, our own cgroup is named after it.
        _ => std::fs::read_to_string("/proc/self/cgroup")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find_map(|l| l.strip_prefix("0::"))
                    .map(str::to_owned)
            })
            .and_then(|p| {
                p.rsplit('/')
                    .find(|c| c.ends_with(".service"))
                    .map(str::to_owned)
            })
            .unwrap_or_default(),
    };
    let span = tracing::info_span!(
        "stockade",
        STOCKADE_PROFILE = %plan.name,
        STOCKADE_UNIT = %unit,
        STOCKADE_PID = std::process::id()
    );
    let _entered = span.enter();
    let mut manager = systemd::Systemd::new(std::env::var("NOTIFY_SOCKET").ok());
    match sandbox::run(&plan, &mut manager) {
        Ok(outcome) => {
            log_outcome(&plan, outcome);
            // Releases the scope reference before this process ends.
            drop(manager);
            if let sandbox::ServiceEnd::Killed(sig) = outcome.service {
                if let Ok(sig) = nix::sys::signal::Signal::try_from(sig) {
                    sandbox::sys::die_by_signal(sig);
                }
            }
            ExitCode::from(outcome.code())
        }
        Err(e) => {
            eprintln!("stockade: {}: {e}", plan.name);
            ExitCode::from(e.exit_code())
        }
    }
}

/// The end of the service, in words, with the cause when the kernel's OOM killer was it.
fn log_outcome(plan: &plan::LaunchPlan, o: sandbox::Outcome) {
    let name = &plan.name;
    match o.service {
        sandbox::ServiceEnd::Exited(0) => tracing::info!("{name} exited with status 0"),
        sandbox::ServiceEnd::Exited(c) => tracing::warn!("{name} exited with status {c}"),
        sandbox::ServiceEnd::Killed(sig) => {
            let signame = nix::sys::signal::Signal::try_from(sig)
                .map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_owned());
            match (o.oom_kills, &plan.memory_max) {
                (Some(n), Some(limit)) if n > 0 => tracing::warn!(
                    "{name} was killed by {signame}: memory limit {limit} reached (oom_kill {n})"
                ),
                (Some(n), None) if n > 0 => {
                    tracing::warn!("{name} was killed by {signame}: out of memory (oom_kill {n})")
                }
                _ => tracing::warn!("{name} was killed by {signame}"),
            }
        }
    }
}

fn check(profiles: Vec<String>, search: &SearchPath) -> ExitCode {
    let names = if profiles.is_empty() {
        search.all_names()
    } else {
        profiles
    };
    if names.is_empty() {
        eprintln!(
            "stockade: no profiles found in {}",
            search
                .dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return ExitCode::FAILURE;
    }
    let mut ok = true;
    for name in &names {
        match load_and_plan(name, Vec::new(), search) {
            Ok((_, notes)) => {
                println!("{name}: ok");
                // Valid, but weaker than the defaults on purpose: say so every time.
                for n in notes {
                    eprintln!("warning: {n}");
                }
            }
            Err(()) => ok = false,
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `show --plan`: the plan `run` would carry out on this host, as text or its JSON record.
fn show_plan(arg: &str, json: bool, search: &SearchPath) -> ExitCode {
    let Ok((plan, _)) = load_and_plan(arg, Vec::new(), search) else {
        return ExitCode::from(EXIT_CONFIG);
    };
    if json {
        println!("{}", plan::render::json(&plan));
    } else {
        print!("{}", plan::render::text(&plan));
    }
    ExitCode::SUCCESS
}

fn show(arg: &str, search: &SearchPath) -> ExitCode {
    match profile::load(arg, search) {
        Ok(loaded) => {
            let mut r = profile::schema::Render {
                map: &loaded.sources,
                out: String::new(),
            };
            loaded.profile.render("", &mut r);
            let files: Vec<String> = loaded
                .sources
                .files()
                .map(|f| f.path.display().to_string())
                .collect();
            println!("# profile {} from {}", loaded.name, files.join(", "));
            print!("{}", r.out);
            if let Ok((_, notes)) = load_and_plan(arg, Vec::new(), search) {
                for n in notes {
                    println!("# warning: {n}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(inv) => {
            print_problems(&inv.lines());
            ExitCode::from(EXIT_CONFIG)
        }
    }
}
