//! The command line: parsed and validated before anything on the system is
//! touched; errors printed once as `sysrootctl: ...` with their context.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::{ArgAction, Parser, Subcommand};

use crate::commands::{self, Opts};
use crate::decl;
use crate::reconcile::Host;
use crate::util::Verbosity;

/// Exit status for errors (plan and check use 2 for "something to report").
pub const EXIT_ERROR: i32 = 1;

const AFTER_HELP: &str = "\
Exit status: 0 success (plan: nothing to change; check: no problems),
1 error, 2 plan has changes pending / check found problems.
See sysrootctl(8).";

#[derive(Debug, Parser)]
#[command(name = "sysrootctl", version, about = "Build and maintain the sysroot trees imageswitch enters, declared in sysroots.toml", after_help = AFTER_HELP)]
pub struct Cli {
    /// The declaration to read.
    #[arg(long, global = true, value_name = "PATH", default_value = imageswitch::config::CONFIG_PATH)]
    pub config: PathBuf,
    /// The installed setuid imageswitch binary that host links point at
    /// [default: /usr/local/sbin/imageswitch, else /usr/sbin/imageswitch].
    #[arg(long, global = true, value_name = "PATH")]
    pub imageswitch: Option<PathBuf>,
    /// Where alias links (e.g. `sl5 -> imageswitch`) are made.
    #[arg(long, global = true, value_name = "DIR", default_value = "/usr/local/bin")]
    pub alias_dir: PathBuf,
    /// Where `sysroot-NAME.desktop` launchers are written.
    #[arg(long, global = true, value_name = "DIR", default_value = "/usr/local/share/applications")]
    pub applications_dir: PathBuf,
    /// More output; -v passes the package tools' own output through.
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
    /// Only errors (and plan's list of changes).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what apply would change (exit 0: nothing, 2: changes, 1: error).
    Plan {
        /// Sysroots to plan (default: every one with a build table).
        names: Vec<String>,
        /// Machine-readable output on standard output.
        #[arg(long)]
        json: bool,
        /// Show how the contents of overlay and account files would change.
        #[arg(long)]
        diff: bool,
    },
    /// Bootstrap missing trees, reconcile existing ones, publish atomically.
    Apply {
        /// Sysroots to apply (default: every one with a build table).
        names: Vec<String>,
        /// Machine-readable output on standard output.
        #[arg(long)]
        json: bool,
        /// Fail instead of waiting when another sysrootctl holds the lock.
        #[arg(long)]
        no_wait: bool,
        /// Take over a tree that is a plain directory at `path` (built by hand):
        /// it becomes a generation, and `path` a link to it.
        #[arg(long)]
        adopt: bool,
    },
    /// Generations, what is live, what is in use, and drift from the declaration.
    Status {
        /// One sysroot (default: all).
        name: Option<String>,
        /// Machine-readable output on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Every sysroot in the declaration, managed or not.
    List {
        /// Machine-readable output on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Verify the security invariants imageswitch relies on (exit 2: problems found).
    Check {
        /// Sysroots to check (default: all).
        names: Vec<String>,
        /// Machine-readable output on standard output.
        #[arg(long)]
        json: bool,
    },
    /// A root shell (or CMD) in the live tree, service starts blocked.
    Shell {
        /// The sysroot.
        name: String,
        /// Command and arguments to run instead of a login shell.
        #[arg(last = true, value_name = "CMD")]
        command: Vec<String>,
        /// Fail instead of waiting when another sysrootctl holds the lock.
        #[arg(long)]
        no_wait: bool,
    },
    /// Publish an older generation again (default: the one before the live one).
    Rollback {
        /// The sysroot.
        name: String,
        /// The generation to publish: its number here, or its id (the same on
        /// every machine it was sent to).
        #[arg(long, value_name = "N|ID")]
        to: Option<String>,
        /// Machine-readable output on standard output.
        #[arg(long)]
        json: bool,
        /// Fail instead of waiting when another sysrootctl holds the lock.
        #[arg(long)]
        no_wait: bool,
    },
    /// Where the live generation and its record are (to send them), and where a
    /// generation sent to this machine goes.
    Export {
        /// The sysroot.
        name: String,
        /// Machine-readable output on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Publish the generation a sender put in STORE/NAME.incoming (see export).
    Receive {
        /// The sysroot.
        name: String,
        /// Machine-readable output on standard output.
        #[arg(long)]
        json: bool,
        /// Fail instead of waiting when another sysrootctl holds the lock.
        #[arg(long)]
        no_wait: bool,
    },
    /// Remove generations beyond `keep`, never the live one or one in use.
    Gc {
        /// Sysroots to clean up (default: every one with a build table).
        names: Vec<String>,
        /// Machine-readable output on standard output.
        #[arg(long)]
        json: bool,
        /// Fail instead of waiting when another sysrootctl holds the lock.
        #[arg(long)]
        no_wait: bool,
    },
    /// Remove what sysrootctl made for sysroots no longer declared (plan lists
    /// them): their path link, alias and bin_dir links, launcher and store.
    Retire {
        /// The sysroots, already removed from the declaration.
        #[arg(required = true)]
        names: Vec<String>,
        /// Machine-readable output on standard output.
        #[arg(long)]
        json: bool,
        /// Fail instead of waiting when another sysrootctl holds the lock.
        #[arg(long)]
        no_wait: bool,
    },
    /// Make the tree's binds in the host namespace (for tools that chroot on
    /// their own, e.g. Torque's qsub -D); idempotent.
    Mount {
        /// The sysroot.
        name: String,
    },
    /// Remove the binds `mount` made; idempotent.
    Umount {
        /// The sysroot.
        name: String,
    },
    /// Print a shell completion script generated from these definitions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn default_imageswitch() -> PathBuf {
    ["/usr/local/sbin/imageswitch", "/usr/sbin/imageswitch"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("/usr/local/sbin/imageswitch"))
}

fn absolute(what: &str, path: &Path) -> Result<()> {
    if !imageswitch::config::is_clean_absolute(&path.to_string_lossy()) {
        bail!("{what} must be a clean absolute path, got {}", path.display());
    }
    Ok(())
}

fn run(cli: Cli) -> Result<i32> {
    if let Command::Completions { shell } = cli.command {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "sysrootctl", &mut script);
        crate::output::write(&script);
        return Ok(0);
    }
    let imageswitch = cli.imageswitch.clone().unwrap_or_else(default_imageswitch);
    absolute("--imageswitch", &imageswitch)?;
    absolute("--alias-dir", &cli.alias_dir)?;
    absolute("--applications-dir", &cli.applications_dir)?;
    let (json, no_wait) = match &cli.command {
        Command::Plan { json, .. }
        | Command::Status { json, .. }
        | Command::List { json }
        | Command::Export { json, .. }
        | Command::Check { json, .. } => (*json, false),
        Command::Apply { json, no_wait, .. }
        | Command::Rollback { json, no_wait, .. }
        | Command::Receive { json, no_wait, .. }
        | Command::Gc { json, no_wait, .. }
        | Command::Retire { json, no_wait, .. } => (*json, *no_wait),
        Command::Shell { no_wait, .. } => (false, *no_wait),
        Command::Mount { .. } | Command::Umount { .. } | Command::Completions { .. } => (false, false),
    };
    let opts = Opts {
        host: Host {
            imageswitch,
            alias_dir: cli.alias_dir.clone(),
            applications_dir: cli.applications_dir.clone(),
            config: std::fs::canonicalize(&cli.config).unwrap_or_else(|_| cli.config.clone()),
        },
        verbosity: Verbosity(if cli.quiet { 0 } else { 1 + cli.verbose }),
        json,
        no_wait,
        adopt: matches!(cli.command, Command::Apply { adopt: true, .. }),
        diff: matches!(cli.command, Command::Plan { diff: true, .. }),
    };
    // `plan` reads every tree and store as root does: as a user its answer
    // would be wrong.
    let needs_root = matches!(
        cli.command,
        Command::Plan { .. }
            | Command::Apply { .. }
            | Command::Rollback { .. }
            | Command::Receive { .. }
            | Command::Gc { .. }
            | Command::Retire { .. }
            | Command::Shell { .. }
            | Command::Mount { .. }
            | Command::Umount { .. }
    );
    if needs_root && !nix::unistd::geteuid().is_root() {
        bail!("this command works on system trees and needs root");
    }
    let decl = decl::load(&cli.config)?;
    match &cli.command {
        Command::Plan { names, .. } => commands::plan(&decl, names, &opts),
        Command::Apply { names, .. } => commands::apply(&decl, names, &opts),
        Command::Status { name, .. } => commands::status(&decl, name.as_deref(), &opts),
        Command::List { .. } => commands::list(&decl, &opts),
        Command::Check { names, .. } => crate::check::check(&decl, names, &opts),
        Command::Shell { name, command, .. } => commands::shell(&decl, name, command, &opts),
        Command::Rollback { name, to, .. } => commands::rollback(&decl, name, to.as_deref(), &opts),
        Command::Gc { names, .. } => commands::gc(&decl, names, &opts),
        Command::Retire { names, .. } => commands::retire(&decl, names, &opts),
        Command::Export { name, .. } => crate::transfer::export(&decl, name, &opts),
        Command::Receive { name, .. } => crate::transfer::receive(&decl, name, &opts),
        Command::Mount { name } => crate::hostmount::mount_tree(&decl, name, opts.verbosity),
        Command::Umount { name } => crate::hostmount::umount_tree(&decl, name, opts.verbosity),
        Command::Completions { .. } => Ok(0),
    }
}

pub fn main() -> i32 {
    // Every file and directory sysrootctl (or a tool it starts) makes gets the
    // mode it asks for, never one narrowed by root's umask (077 would hide
    // aliases, bin_dir links and trees from users).
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let args: Vec<String> = std::env::args().collect();
    // The hidden helpers run before clap: they are not part of the interface.
    if args.get(1).map(String::as_str) == Some(crate::namespace::HELPER) {
        crate::namespace::helper_main(&args[2..]);
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { EXIT_ERROR } else { 0 };
            let _ = err.print();
            return code;
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("sysrootctl: {err:#}");
            EXIT_ERROR
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    /// The man page documents every subcommand, every flag and every build key.
    #[test]
    fn man_page_covers_every_definition() {
        let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../doc/sysrootctl.8.md")).unwrap();
        let cmd = Cli::command();
        let mut missing = Vec::new();
        let mut args: Vec<&clap::Arg> = cmd.get_arguments().collect();
        for sub in cmd.get_subcommands() {
            if !page.contains(&format!("**{}**", sub.get_name())) {
                missing.push(sub.get_name().to_string());
            }
            args.extend(sub.get_arguments());
        }
        for arg in args {
            if let Some(long) = arg.get_long() {
                if !page.contains(&format!("**--{long}**")) {
                    missing.push(format!("--{long}"));
                }
            }
        }
        for key in [
            "method", "suite", "arch", "mirror", "source", "packages", "services", "users", "skeleton", "files",
            "playbook", "keep", "store",
        ] {
            if !page.contains(&format!("**{key}**")) {
                missing.push(key.to_string());
            }
        }
        assert!(missing.is_empty(), "not in doc/sysrootctl.8.md: {missing:?}");
    }
}
