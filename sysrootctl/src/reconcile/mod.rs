//! Bringing one tree (and the host's links to it) to the declared state.
//!
//! Every step runs in two modes: `plan` reads the live tree and says what it
//! would change; `apply` changes a new generation (never the live one). The same
//! code decides both, so `plan` cannot promise something `apply` does not do.
//! Steps are idempotent: on an unchanged declaration each returns no change.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::accounts;
use crate::decl::{Build, Declared};
use crate::runner;
use crate::store::Record;
use crate::util::{self, Phase, Verbosity, in_tree};

pub mod bind_targets;
mod links;
mod overlays;
mod packages;
mod services;
mod users;

pub use links::{desktop_entry, host_links, points_at_imageswitch, tree_links};
pub use packages::installed_packages;
pub(crate) use users::getent;

/// Host-side places, from the command line (defaults are the production ones).
#[derive(Debug, Clone)]
pub struct Host {
    pub imageswitch: PathBuf,
    pub alias_dir: PathBuf,
    pub applications_dir: PathBuf,
}

pub struct Ctx<'a> {
    pub decl: &'a Declared,
    pub build: &'a Build,
    pub tree: PathBuf,
    /// false: only say what would change.
    pub apply: bool,
    pub verbosity: Verbosity,
    pub host: &'a Host,
    /// The record of the generation the tree was copied from.
    pub prev: Record,
    /// Filled in for the generation being built.
    pub record: Record,
    /// Things worth saying that are not changes (extra packages).
    pub notes: Vec<String>,
    /// `plan --diff`: the content changes of overlay and account files.
    pub diffs: Option<Vec<ContentDiff>>,
}

/// How a file's content would change (`plan --diff`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ContentDiff {
    pub path: String,
    /// A unified diff, tree first, declared second.
    pub diff: String,
}

/// `diff -u` of the tree's `old` (none when it is not a regular file) and `new`.
pub(crate) fn unified(inner: &str, old: &Path, new: &[u8]) -> Result<ContentDiff> {
    use std::io::Write;
    use std::process::Stdio;
    let old = if fs::symlink_metadata(old).is_ok_and(|m| m.is_file()) { old } else { Path::new("/dev/null") };
    let mut cmd = crate::namespace::tool("diff");
    cmd.args(["-u", "--label"]).arg(format!("{inner} (in the tree)")).arg("--label").arg(format!("{inner} (declared)"));
    cmd.arg(old).arg("-").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().context("cannot run diff")?;
    let mut stdin = child.stdin.take().context("diff's input")?;
    let new = new.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&new));
    let out = child.wait_with_output()?;
    let _ = writer.join();
    if out.status.code() == Some(2) {
        bail!("diff of {inner} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(ContentDiff { path: inner.to_string(), diff: String::from_utf8_lossy(&out.stdout).into_owned() })
}

impl Ctx<'_> {
    fn name(&self) -> &str {
        &self.decl.sysroot.name
    }

    fn linux32(&self) -> bool {
        self.decl.sysroot.personality == imageswitch::config::Personality::Linux32
    }

    fn run_in(&self, argv: &[&str]) -> Result<String> {
        runner::run_in(&self.tree, self.linux32(), argv, self.verbosity)
    }
}

/// All tree steps, in the order apply runs them.
pub fn tree_steps(ctx: &mut Ctx<'_>) -> Result<Vec<String>> {
    let mut changes = Vec::new();
    changes.extend(leftovers(ctx)?);
    changes.extend(overlays::skeleton(ctx)?);
    changes.extend(packages::packages(ctx)?);
    changes.extend(services::services(ctx)?);
    changes.extend(users::users(ctx)?);
    changes.extend(overlays::overlays(ctx)?);
    changes.extend(tree_links(ctx)?);
    changes.extend(bind_destinations(ctx)?);
    Ok(changes)
}

/// What an interrupted `shell` or `apply` left in the tree it worked on.
fn leftovers(ctx: &mut Ctx<'_>) -> Result<Vec<String>> {
    if !runner::services_left_blocked(&ctx.tree)? {
        return Ok(Vec::new());
    }
    if ctx.apply {
        runner::unblock_services(&ctx.tree)?;
    }
    Ok(vec![
        "remove /usr/sbin/policy-rc.d (left by an interrupted sysrootctl; it blocks every service start)".to_string(),
    ])
}

fn bind_destinations(ctx: &mut Ctx<'_>) -> Result<Vec<String>> {
    let changes = bind_targets::diff(&bind_targets::observe(&ctx.tree, &ctx.decl.binds, &ctx.decl.host_files));
    if ctx.apply {
        bind_targets::act(&ctx.tree, &changes)?;
    }
    Ok(changes.iter().map(ToString::to_string).collect())
}

/// Checks the new generation before it is published.
pub fn verify(ctx: &Ctx<'_>) -> Result<()> {
    let sh = in_tree(&ctx.tree, Path::new("/bin/sh"), true)?;
    if sh.exists() {
        ctx.run_in(&["/bin/sh", "-c", ":"]).context("the new generation cannot run /bin/sh")?;
    }
    for secret in ["/etc/shadow", "/etc/gshadow"] {
        if let Ok(m) = fs::metadata(in_tree(&ctx.tree, Path::new(secret), true)?) {
            if m.mode() & 0o027 != 0 || m.uid() != 0 {
                bail!("{secret} in the new generation is mode {:o} owner {}", m.mode() & 0o7777, m.uid());
            }
        }
    }
    let left = util::processes_rooted_in(&ctx.tree);
    if !left.is_empty() {
        bail!("processes still running in the new generation: {:?}", left.iter().map(|(p, _)| p).collect::<Vec<_>>());
    }
    Ok(())
}

/// Creates a missing directory in a tree (used by bootstraps that leave some out).
pub fn ensure_dir(tree: &Path, inner: &str) -> Result<()> {
    let path = in_tree(tree, Path::new(inner), true)?;
    if !path.exists() {
        fs::DirBuilder::new().recursive(true).mode(0o755).create(&path)?;
    }
    Ok(())
}
