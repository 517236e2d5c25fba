//! The command line: clap definitions (parsing, help text, examples) here, one file per
//! subcommand beside them, and the glue they share (the search path, loading and planning a
//! profile with this host's facts). Glue only: every decision belongs to a stage; `main.rs`
//! dispatches and maps errors to exit codes.

pub mod analyze;
pub mod check;
pub mod cleanup;
pub mod completions;
pub mod exec;
pub mod export;
pub mod logging;
pub mod metrics;
pub mod ps;
pub mod run;
pub mod show;
pub mod stats;
pub mod stop;
pub mod volume;
pub mod why;

use crate::error::Error;
use crate::profile::{self, SearchPath};
use crate::{host, inspect, plan, sys};
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
        after_help = "Examples:\n  stockade run redis\n  stockade run ./hello.toml\n  stockade run --name redis-2 redis      (a second instance of one profile)\n  stockade run redis -- --loglevel debug   (needs exec.args_append = true)\n\nWhile it runs, the sandbox's record is /run/stockade/instances/NAME.json.\n\nExits with the service's exit status, or 128+N when it dies of signal N; \
78 for an invalid profile, 125 when the sandbox cannot be set up or its instance name is taken, 126/127 when the command cannot be executed."
    )]
    Run {
        /// Profile name or path to a .toml file
        profile: String,
        /// Instance name, for a second sandbox of one profile: names its record and its
        /// journal field STOCKADE_INSTANCE (letters, digits, -_.@; at most 64) [default:
        /// the profile's name]
        #[arg(long, value_name = "NAME", value_parser = instance_name)]
        name: Option<String>,
        /// Report each system call the seccomp filter denies, once per (call, executable),
        /// with the rule and profile line that deny it, on stockade's log (journald fields
        /// STOCKADE_DENIED_SYSCALL, STOCKADE_RULE, STOCKADE_ERRNO, STOCKADE_EXE; stderr from
        /// a shell). The service still gets the profile's errno; the supervisor only ever
        /// denies
        #[arg(long)]
        explain: bool,
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
    /// Translate a profile's plan for another engine: an OCI runtime bundle, or a systemd
    /// unit of systemd's own directives
    #[command(
        after_help = "Examples:\n  stockade export --format oci redis /var/lib/bundles/redis\n  crun run --bundle /var/lib/bundles/redis redis\n  stockade export --format systemd redis > /etc/systemd/system/redis.service\n  systemd-analyze security redis.service\n\n\
The plan is made as for a systemd host with cgroup v2 (where the limits apply), from the profile with its includes and drop-ins.\n\n\
oci: DIR (new or empty) gets config.json and rootfs/, a directory of empty mount points and the host root's symlinks; the host's top-level directories are bound into it \
(read-only when the profile's root is). What OCI cannot express (landlock, the notify relay) is listed on stderr and kept as org.stockade.* annotations.\n\n\
systemd: the unit is printed; each directive is preceded by a comment naming the profile line or default that decided it, and \
what systemd cannot express (landlock, id ranges, a PID namespace, ...) is listed in a comment block at the top and on stderr.\n\nExits 78 for an invalid profile."
    )]
    Export {
        /// What to make
        #[arg(long, value_enum, value_name = "FORMAT")]
        format: ExportFormat,
        /// Profile name or path to a .toml file
        profile: String,
        /// With --format oci: the bundle directory to make (new or empty)
        #[arg(value_name = "DIR", required_if_eq("format", "oci"))]
        dir: Option<PathBuf>,
    },
    /// List the running sandboxes
    #[command(
        after_help = "Examples:\n  stockade ps\n  stockade ps --json | jq '.[].service_pid'\n\nSTATE is running, or stopping from the moment its supervisor passes on a SIGTERM or SIGINT (or the service ends) until it is gone. \
ADDRESS is a bridge sandbox's leased address and its network (`-` for the other network modes). \
Stale records (of a stockade that was killed) are removed first. Needs root."
    )]
    Ps {
        /// The records with their live figures, as JSON
        #[arg(long)]
        json: bool,
    },
    /// Run a command inside a running sandbox, with no more privilege than its service
    #[command(
        after_help = "Examples:\n  stockade exec redis -- redis-cli ping\n  stockade exec -t redis -- /bin/sh\n  stockade exec --user nobody redis -- id\n\nThe command joins every namespace and the cgroup of the sandbox and takes the service's \
credentials, capabilities, rlimits, landlock rules, seccomp filters, environment and working directory, \
in a new session. A bare command name is looked up in the sandbox's PATH. A sandbox that is stopping is refused.\n\nExits with the command's status, or 128+N when it dies of signal N; \
125 when it cannot join the sandbox, 126/127 when the command cannot be executed. Needs root."
    )]
    Exec {
        /// Run as this user of the sandbox's /etc/passwd (name or uid) instead of the
        /// service's; it must be mapped in the sandbox's user namespace
        #[arg(short, long, value_name = "USER")]
        user: Option<String>,
        /// Give the command a new terminal from the sandbox's devpts, relayed to this one
        /// (raw mode, window size); without it stdin, stdout and stderr pass through
        #[arg(short, long)]
        tty: bool,
        /// Instance name (see `stockade ps`)
        name: String,
        /// The command and its arguments (after `--`)
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Stop running sandboxes: SIGTERM to the service, SIGKILL after --time
    #[command(
        after_help = "Examples:\n  stockade stop redis\n  stockade stop --time 30 redis nginx\n\nWaits until each sandbox is gone; exits 0 when all stopped. A sandbox already stopping gets no second SIGTERM: \
stop waits for it, and still sends SIGKILL after --time. Needs root."
    )]
    Stop {
        /// Seconds to wait after SIGTERM before SIGKILL
        #[arg(short, long, default_value_t = 10, value_name = "SECONDS")]
        time: u64,
        /// Instance names (see `stockade ps`)
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Show what running sandboxes use against their limits, refreshed every second
    #[command(
        after_help = "Examples:\n  stockade stats\n  stockade stats --no-stream redis\n  stockade stats --no-stream --json\n\nFigures come from each sandbox's cgroup v2 files; a controller the cgroup lacks is named. Needs root."
    )]
    Stats {
        /// Instance names; all running sandboxes when none are given
        names: Vec<String>,
        /// Print once instead of refreshing
        #[arg(long)]
        no_stream: bool,
        /// Print JSON (once per refresh)
        #[arg(long)]
        json: bool,
    },
    /// Print the running sandboxes' figures in the Prometheus text format, or serve them
    #[command(after_help = crate::ops::metrics::help_text())]
    Metrics {
        /// Serve GET /metrics over HTTP at ADDR (IP:PORT, or PORT on 127.0.0.1) instead of
        /// printing once
        #[arg(long, value_name = "ADDR", value_parser = metrics::listen_addr)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Score how exposed a sandbox is, 0.0 to 10.0, as systemd-analyze security does
    #[command(
        long_about = crate::inspect::analyze::help(),
        after_help = "Examples:\n  stockade analyze redis                 (a running instance, else the profile)\n  stockade analyze ./new.toml --threshold 3.0\n  stockade analyze --json redis | jq .exposure\n\nExits 0; 1 when --threshold is given and the exposure is above it; 2 when the sandbox cannot be scored (an unknown instance, a bad argument); 78 for an invalid profile."
    )]
    Analyze {
        /// Profile name or path, or the name of a running instance (preferred when running)
        target: String,
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
        /// Exit 1 when the exposure is above N (0.0 to 10.0)
        #[arg(long, value_name = "N", value_parser = threshold)]
        threshold: Option<u64>,
    },
    /// Say whether the sandbox allows one access, and which setting decides it
    #[command(
        after_help = "Examples:\n  stockade why redis --path /var/log/redis --access write\n  stockade why redis --syscall ptrace\n  stockade why ./new.toml --capability net_bind_service\n\nStatic answers from the plan (a running instance's record, else the profile planned for this host), each citing the profile line or default that decides. Exits 0 when the access is allowed, 1 when it is denied, 2 when the question cannot be answered (a bad argument, an unknown instance), 78 for an invalid profile."
    )]
    Why {
        /// Profile name or path, or the name of a running instance (preferred when running)
        target: String,
        #[command(flatten)]
        question: WhyQuestion,
        /// With --path: the access asked about
        /// [default: read]
        #[arg(long, value_enum, requires = "path")]
        access: Option<inspect::why::PathAccess>,
    },
    /// Remove what killed sandboxes left of their networks (leases, nftables rules, bridges)
    #[command(
        after_help = "Examples:\n  stockade cleanup\n\nRuns as ExecStopPost= of stockade@.service; the next start on a network does the same for it. Needs root."
    )]
    Cleanup,
    /// Manage named volumes (/var/lib/stockade/volumes)
    #[command(subcommand)]
    Volume(VolumeCommand),
}

/// What `why` is asked: one of a path, a system call or a capability.
#[derive(Debug, clap::Args)]
#[group(id = "question", required = true, multiple = false)]
pub struct WhyQuestion {
    /// A path inside the sandbox: is it visible, which mount supplies it, may it be accessed
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
    /// A system call by name: allowed or denied by the seccomp filter, by which rule
    #[arg(long, value_name = "NAME")]
    pub syscall: Option<String>,
    /// A capability (`net_bind_service`, `CAP_SYS_ADMIN`): kept or dropped
    #[arg(long, value_name = "CAP")]
    pub capability: Option<String>,
}

/// `export --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// An OCI runtime bundle in DIR (config.json and rootfs/), for crun, runc, podman
    Oci,
    /// A service unit on stdout
    Systemd,
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// List volumes with their size, host owner and the running sandboxes using them
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Print a volume's path, owner, size and users
    Inspect { name: String },
    /// Make a volume ahead of its first use (mode 0700)
    #[command(
        after_help = "Examples:\n  stockade volume create redis-data --owner 1610612736:1610612736"
    )]
    Create {
        name: String,
        /// Host uid:gid to own it (default root:root)
        #[arg(long, value_name = "UID:GID", value_parser = owner)]
        owner: Option<(u32, u32)>,
    },
    /// Remove volumes and their contents; refused while a running sandbox uses one
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// `--threshold N`: 0.0 to 10.0, kept in tenths as the exposure is.
fn threshold(s: &str) -> Result<u64, String> {
    let n: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number from 0.0 to 10.0"))?;
    if !(0.0..=10.0).contains(&n) {
        return Err(format!("{s} is outside 0.0 to 10.0"));
    }
    Ok((n * 10.0).round() as u64)
}

/// `--owner UID:GID`.
fn owner(s: &str) -> Result<(u32, u32), String> {
    let (u, g) = s
        .split_once(':')
        .ok_or_else(|| format!("expected UID:GID, not `{s}`"))?;
    let id = |t: &str| {
        t.parse::<u32>()
            .map_err(|_| format!("`{t}` is not a numeric id"))
    };
    Ok((id(u)?, id(g)?))
}

/// Commands that read stockade's root-only state refuse to give a partial answer.
pub fn require_root(what: &str) -> Result<(), Error> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(Error::NeedsRoot {
            what: what.to_owned(),
        })
    }
}

/// The running sandboxes (stale records removed on the way).
pub fn instances() -> Result<Vec<crate::ops::records::Instance>, Error> {
    require_root("reading the records of running sandboxes")?;
    Ok(crate::ops::records::list(
        std::path::Path::new(plan::INSTANCES_DIR),
        &host::Host::current(),
    ))
}

/// [`instances`] for a long-running reader, which keeps the parsed records in `cache`.
pub fn instances_cached(
    cache: &crate::ops::records::Cache,
) -> Result<Vec<crate::ops::records::Instance>, Error> {
    require_root("reading the records of running sandboxes")?;
    Ok(crate::ops::records::list_cached(
        std::path::Path::new(plan::INSTANCES_DIR),
        &host::Host::current(),
        cache,
    ))
}

/// The running instance `name`, or an error listing the running ones.
pub fn instance_by_name<'a>(
    running: &'a [crate::ops::records::Instance],
    name: &str,
) -> Result<&'a crate::ops::records::Instance, Error> {
    running.iter().find(|i| i.name == name).ok_or_else(|| {
        let names: Vec<String> = running
            .iter()
            .map(|i| {
                if i.stopping {
                    format!("{} (stopping)", i.name)
                } else {
                    i.name.clone()
                }
            })
            .collect();
        Error::UnknownInstance {
            name: name.to_owned(),
            running: if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            },
        }
    })
}

/// The plan an inspector reads: the record of the running instance `arg` when there is one
/// (root only), else the profile `arg` planned for this host. Returns it with a line saying
/// which it is.
pub fn plan_of(arg: &str, search: &SearchPath) -> Result<(plan::LaunchPlan, String), Error> {
    let file_like = arg.contains('/') || arg.ends_with(".toml");
    if !file_like && nix::unistd::geteuid().is_root() {
        // Read only: a stale record stays for `ps` or the next start to remove.
        let dir = std::path::Path::new(plan::INSTANCES_DIR);
        if let Some(i) = crate::ops::records::running(dir, arg, &host::Host::current()) {
            let pid = crate::ops::status::service_pid(i.record.init.pid)
                .map_or(String::new(), |p| format!(", service pid {p}"));
            let what = format!(
                "running instance {} (profile {}{pid})",
                i.name, i.record.profile
            );
            return Ok((i.record.plan.clone(), what));
        }
    }
    let (plan, _) = load_and_plan(arg, Vec::new(), search)?;
    Ok((plan, format!("profile {arg}, as it would run on this host")))
}

/// `--name`'s check, so clap's error names the argument.
fn instance_name(s: &str) -> Result<String, String> {
    match crate::ops::records::invalid_name(s) {
        Some(why) => Err(why),
        None => Ok(s.to_owned()),
    }
}

/// The profile search path of this invocation, and whose files root may trust.
pub fn search_path(cli: &Cli) -> SearchPath {
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
    search
}

/// Loads and plans a profile against this host and invocation. Returns the plan with its
/// notes (the holes in the default walls the profile opened) rendered.
pub fn load_and_plan(
    arg: &str,
    extra_args: Vec<String>,
    search: &SearchPath,
) -> Result<(plan::LaunchPlan, Vec<String>), Error> {
    let inv = plan::Invocation {
        extra_args,
        env: std::env::vars().collect(),
        volume_dir: plan::VOLUME_DIR.into(),
        id: std::process::id(),
        under_unit: std::env::var_os("INVOCATION_ID").is_some(),
        notify_socket: std::env::var("NOTIFY_SOCKET").ok(),
        ids_dir: plan::IDS_DIR.into(),
        network_dirs: profile::networks::search_dirs(),
    };
    load_and_plan_for(arg, search, &inv, None)
}

/// [`load_and_plan`] for an invocation the caller describes, and, when `cgroup` is given,
/// for those cgroup facts instead of this host's (`export` plans for the machine that will
/// run the unit or bundle, where systemd or the runtime places and limits the service).
pub fn load_and_plan_for(
    arg: &str,
    search: &SearchPath,
    inv: &plan::Invocation,
    cgroup: Option<host::CgroupFacts>,
) -> Result<(plan::LaunchPlan, Vec<String>), Error> {
    let loaded = profile::load(arg, search).map_err(|inv| Error::Invalid { lines: inv.lines() })?;
    let host = host::Host::current();
    let cgroup = cgroup.unwrap_or_else(|| {
        host.cgroup_facts(&std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default())
    });
    // The host is read once, here, for what this profile needs; the planner reads only this.
    let facts = host::HostFacts::gather(
        &host,
        &plan::needs(&loaded.name, &loaded.profile, inv),
        cgroup,
        sys::landlock_abi(),
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
    match plan::build(&input, &facts, inv) {
        Ok(plan) => {
            let notes = plan.notes.clone();
            Ok((plan, notes))
        }
        Err(problems) => Err(Error::Invalid {
            lines: render(problems),
        }),
    }
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
