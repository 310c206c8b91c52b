//! Running a command inside a tree, the way a package manager needs it and
//! without leaving anything behind on the host.
//!
//! `sysrootctl` re-executes itself as a hidden two-stage helper rather than
//! forking, so no `unsafe` is needed:
//! 1. `__enter 1`: dies with its parent (`PR_SET_PDEATHSIG`), unshares the mount
//!    and PID namespaces, makes every mount private, binds `/dev`, `/sys` and the
//!    host's `resolv.conf` into the tree, and spawns stage 2.
//! 2. `__enter 2`: PID 1 of the new PID namespace; mounts a fresh `/proc` for it,
//!    chroots, sets the personality and execs the command.
//!
//! When the command (PID 1) exits the kernel kills whatever it left running, so
//! no daemon survives with its root in the tree; the mounts die with the
//! namespace when the last process in it does.
#![forbid(unsafe_code)]

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::Signal;

use crate::util::{self, Verbosity};

pub const ENTER: &str = "__enter";

/// The environment every command in a tree gets: nothing from the caller's.
fn tree_env(cmd: &mut Command, interactive: bool) {
    let term = std::env::var("TERM").ok();
    cmd.env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", "/root")
        .env("LC_ALL", "C")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("DEBCONF_NONINTERACTIVE_SEEN", "true");
    if interactive {
        if let Some(term) = term {
            cmd.env("TERM", term);
        }
    }
}

fn enter_command(tree: &Path, linux32: bool, argv: &[&str], interactive: bool) -> Result<Command> {
    let exe = std::env::current_exe().context("cannot find my own executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg(ENTER)
        .arg("1")
        .arg(std::process::id().to_string())
        .arg(if linux32 { "linux32" } else { "linux" })
        .arg(tree)
        .args(argv);
    tree_env(&mut cmd, interactive);
    Ok(cmd)
}

/// Runs `argv` inside `tree` as root; output captured (shown on failure) or
/// passed through with `-v`.
pub fn run_in(tree: &Path, linux32: bool, argv: &[&str], verbosity: Verbosity) -> Result<String> {
    let mut cmd = enter_command(tree, linux32, argv, false)?;
    let result = util::run(&mut cmd, verbosity).with_context(|| format!("in {}", tree.display()));
    util::kill_rooted_in(tree);
    result
}

/// Runs `argv` inside `tree` on the caller's terminal; returns its exit code.
pub fn interactive(tree: &Path, linux32: bool, argv: &[&str]) -> Result<i32> {
    let mut cmd = enter_command(tree, linux32, argv, true)?;
    let status = cmd.status().context("cannot start the shell")?;
    util::kill_rooted_in(tree);
    Ok(status.code().unwrap_or(128 + 9))
}

/// Blocks service starts from maintainer scripts while `f` runs (Debian's
/// `policy-rc.d` convention, exit 101 = action forbidden).
pub fn with_services_blocked<T>(tree: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let dir = util::in_tree(tree, Path::new("/usr/sbin"), true)?;
    if !dir.is_dir() {
        return f();
    }
    let policy = dir.join("policy-rc.d");
    let saved = dir.join("policy-rc.d.sysrootctl-saved");
    let had_one = fs::symlink_metadata(&policy).is_ok();
    if had_one {
        fs::rename(&policy, &saved)?;
    }
    util::write_atomic(&policy, b"#!/bin/sh\n# written by sysrootctl while it installs packages\nexit 101\n", 0o755)?;
    let result = f();
    fs::remove_file(&policy)?;
    if had_one {
        fs::rename(&saved, &policy)?;
    }
    result
}

/// The hidden helper's entry: `__enter STAGE PARENT PERSONALITY TREE CMD...`.
pub fn enter_main(args: &[String]) -> ! {
    let code = match enter(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("sysrootctl: entering the tree: {err:#}");
            125
        }
    };
    std::process::exit(code)
}

fn enter(args: &[String]) -> Result<i32> {
    let [stage, parent, personality, tree, argv @ ..] = args else { bail!("bad helper arguments") };
    if argv.is_empty() {
        bail!("no command");
    }
    let tree = PathBuf::from(tree);
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    // The parent may have died before the line above took effect.
    if nix::unistd::getppid().as_raw().to_string() != *parent {
        bail!("parent went away");
    }
    match stage.as_str() {
        "1" => {
            unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID).context("unshare")?;
            mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
                .context("making mounts private")?;
            bind(Path::new("/dev"), &tree.join("dev"))?;
            bind(Path::new("/sys"), &tree.join("sys"))?;
            let resolv = tree.join("etc/resolv.conf");
            if Path::new("/etc/resolv.conf").is_file() && fs::symlink_metadata(&resolv).is_ok_and(|m| m.is_file()) {
                mount(Some("/etc/resolv.conf"), &resolv, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                    .context("binding resolv.conf")?;
            }
            let exe = std::env::current_exe()?;
            let status = Command::new(exe)
                .arg(ENTER)
                .arg("2")
                // Stage 2's parent is outside its PID namespace: getppid() says 0.
                .arg("0")
                .arg(personality)
                .arg(&tree)
                .args(argv)
                .status()
                .context("starting PID 1 of the tree")?;
            Ok(status.code().unwrap_or(128 + 9))
        }
        "2" => {
            let proc_dir = tree.join("proc");
            require_dir(&proc_dir)?;
            mount(
                Some("proc"),
                &proc_dir,
                Some("proc"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None::<&str>,
            )
            .context("mounting /proc")?;
            nix::unistd::chroot(&tree).with_context(|| format!("chroot {}", tree.display()))?;
            std::env::set_current_dir("/")?;
            if personality == "linux32" {
                nix::sys::personality::set(nix::sys::personality::Persona::from_bits_retain(0x0008))?;
            }
            let err = Command::new(&argv[0]).args(&argv[1..]).exec();
            bail!("cannot run {}: {err}", argv[0])
        }
        _ => bail!("bad stage"),
    }
}

/// Binds `src` recursively onto `dst`, which must be a real directory in the tree
/// (never a symlink: an imported tree could point it anywhere).
fn bind(src: &Path, dst: &Path) -> Result<()> {
    require_dir(dst)?;
    mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .with_context(|| format!("binding {} onto {}", src.display(), dst.display()))
}

fn require_dir(dir: &Path) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => bail!("{} is not a directory", dir.display()),
        Err(_) => {
            fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
            Ok(())
        }
    }
}
