//! Running a command inside a tree, the way a package manager needs it and
//! without leaving anything behind: every command goes through the namespace
//! helper ([`crate::namespace`]), so it ends with sysrootctl, and what it
//! started (a daemon a package starts, a job left in `shell`) ends with it:
//! they are in the helper's PID namespace. Nothing else is ever killed, not
//! even a process whose root is the tree (imageswitch's sessions in the live
//! generation are).
#![forbid(unsafe_code)]

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::namespace;
use crate::util::{self, Verbosity};

/// The PATH every command sysrootctl runs as root with a tree gets.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The environment every command in a tree gets: nothing from the caller's.
fn tree_env(cmd: &mut Command, interactive: bool) {
    let term = std::env::var("TERM").ok();
    cmd.env_clear()
        .env("PATH", PATH)
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

fn enter_command(tree: &Path, linux32: bool, argv: &[&str], interactive: bool) -> Command {
    let mut cmd = namespace::in_tree(tree, linux32, argv);
    tree_env(&mut cmd, interactive);
    cmd
}

/// Runs `argv` inside `tree` as root; output captured (shown on failure) or
/// passed through with `-v`.
pub fn run_in(tree: &Path, linux32: bool, argv: &[&str], verbosity: Verbosity) -> Result<String> {
    let mut cmd = enter_command(tree, linux32, argv, false);
    util::run(&mut cmd, verbosity).with_context(|| format!("in {}", tree.display()))
}

/// Runs `argv` inside `tree` on the caller's terminal; returns its exit code.
pub fn interactive(tree: &Path, linux32: bool, argv: &[&str]) -> Result<i32> {
    let mut cmd = enter_command(tree, linux32, argv, true);
    let status = cmd.status().context("cannot start the shell")?;
    Ok(status.code().unwrap_or(128 + 9))
}

const POLICY: &[u8] = b"#!/bin/sh\n# written by sysrootctl while it installs packages\nexit 101\n";
const SAVED: &str = "policy-rc.d.sysrootctl-saved";

/// The tree's `/usr/sbin`, when it has one.
fn sbin(tree: &Path) -> Result<Option<std::path::PathBuf>> {
    let dir = util::in_tree(tree, Path::new("/usr/sbin"), true)?;
    Ok(dir.is_dir().then_some(dir))
}

/// Whether an interrupted run (a `kill -9` of `shell` or `apply`) left its
/// service-blocking `policy-rc.d` in `tree`.
pub fn services_left_blocked(tree: &Path) -> Result<bool> {
    let Some(dir) = sbin(tree)? else { return Ok(false) };
    Ok(fs::read(dir.join("policy-rc.d")).is_ok_and(|text| text == POLICY) || dir.join(SAVED).exists())
}

/// Takes our `policy-rc.d` away and puts back the tree's own, if it had one.
/// Whatever was removed meanwhile (from inside the tree) is fine.
pub fn unblock_services(tree: &Path) -> Result<()> {
    let Some(dir) = sbin(tree)? else { return Ok(()) };
    let policy = dir.join("policy-rc.d");
    if fs::read(&policy).is_ok_and(|text| text == POLICY) {
        match fs::remove_file(&policy) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot remove {}", policy.display()));
            }
            _ => {}
        }
    }
    let saved = dir.join(SAVED);
    if saved.exists() {
        fs::rename(&saved, &policy).with_context(|| format!("cannot put back {}", policy.display()))?;
    }
    Ok(())
}

/// Blocks service starts from maintainer scripts while `f` runs (Debian's
/// `policy-rc.d` convention, exit 101 = action forbidden). What an earlier,
/// interrupted run left is undone first.
pub fn with_services_blocked<T>(tree: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    unblock_services(tree)?;
    let Some(dir) = sbin(tree)? else { return f() };
    let policy = dir.join("policy-rc.d");
    if fs::symlink_metadata(&policy).is_ok() {
        fs::rename(&policy, dir.join(SAVED)).with_context(|| format!("cannot set {} aside", policy.display()))?;
    }
    util::write_atomic(&policy, POLICY, 0o755)?;
    let result = f();
    unblock_services(tree)?;
    result
}
