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
mod playbook;
mod services;
mod users;

pub use links::{host_links, points_at_imageswitch, tree_links};
pub use packages::installed_packages;
pub(crate) use users::getent;

/// Host-side places, from the command line (defaults are the production ones).
#[derive(Debug, Clone)]
pub struct Host {
    pub imageswitch: PathBuf,
    pub alias_dir: PathBuf,
    pub applications_dir: PathBuf,
    /// The declaration file, as `realpath` names it: recorded with what an
    /// apply makes, so `retire` under another file leaves it alone.
    pub config: PathBuf,
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

impl<'a> Ctx<'a> {
    /// A step context with nothing recorded yet: no previous record, no
    /// notes, no content diffs.
    pub fn new(
        decl: &'a Declared,
        build: &'a Build,
        tree: &Path,
        apply: bool,
        verbosity: Verbosity,
        host: &'a Host,
    ) -> Ctx<'a> {
        Ctx {
            decl,
            build,
            tree: tree.to_path_buf(),
            apply,
            verbosity,
            host,
            prev: Record::default(),
            record: Record::default(),
            notes: Vec::new(),
            diffs: None,
        }
    }
}

/// One change: the line `plan` prints (`text`), and the same typed for
/// `--json` (schema 1 in sysrootctl(8)): what kind, on what, why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    pub kind: &'static str,
    /// The file, directory or link it is about (in the tree, or on the host
    /// when `host`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The packages, services, accounts or links it is about.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    pub host: bool,
    pub text: String,
}

/// Every `kind` and `reason` of a change, as sysrootctl(8) lists them.
pub const KINDS: &[&str] = &[
    "bootstrap",
    "reconcile",
    "receive",
    "retire",
    "write_file",
    "remove_file",
    "create_directory",
    "create_file",
    "install_packages",
    "enable_service",
    "disable_service",
    "merge_accounts",
    "link",
    "remove_link",
    "run_playbook",
    "playbook_task",
];
pub const REASONS: &[&str] = &[
    "new",
    "overlay_changed",
    "changed_in_the_tree",
    "accounts_merged",
    "launcher",
    "left_by_an_interrupted_run",
    "bind_destination",
    "host_file_mount_point",
    "home_mount_point",
    "stale",
    "no_longer_declared",
    "playbook_changed",
    "not_checked",
    "check_failed",
];

impl Change {
    pub fn new(kind: &'static str, text: impl Into<String>) -> Change {
        debug_assert!(KINDS.contains(&kind), "change kind {kind} is not in KINDS");
        Change { kind, path: None, names: Vec::new(), reason: None, host: false, text: text.into() }
    }

    pub fn path(mut self, path: &Path) -> Change {
        self.path = Some(path.display().to_string());
        self
    }

    pub fn names(mut self, names: &[String]) -> Change {
        self.names = names.to_vec();
        self
    }

    pub fn reason(mut self, reason: &'static str) -> Change {
        debug_assert!(REASONS.contains(&reason), "reason {reason} is not in REASONS");
        self.reason = Some(reason);
        self
    }

    /// A change of the host's links, shown as `host: ...`.
    pub fn on_host(mut self) -> Change {
        self.host = true;
        self.text = format!("host: {}", self.text);
        self
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// How a file's content would change (`plan --diff`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ContentDiff {
    pub path: String,
    /// A unified diff, tree first, declared second.
    pub diff: String,
}

/// Names of password databases and their `-` backups: their contents are
/// never shown, in whatever directory.
const PASSWORD_FILES: &[&str] = &["shadow", "gshadow", "shadow-", "gshadow-"];

/// For `plan --diff`: a line in place of the contents of a password database,
/// or of a file that not every user can read (`files`: the declared source
/// and the tree's copy; missing ones do not count).
pub(crate) fn hidden(inner: &str, files: &[&Path]) -> Option<ContentDiff> {
    let name = Path::new(inner).file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let why = if PASSWORD_FILES.contains(&name) {
        "password data".to_string()
    } else {
        let mode = files
            .iter()
            .filter_map(|f| fs::symlink_metadata(f).ok())
            .map(|m| m.mode() & 0o7777)
            .find(|m| m & 0o004 == 0)?;
        format!("mode {mode:04o}")
    };
    Some(ContentDiff { path: inner.to_string(), diff: format!("{inner}: contents not shown ({why})\n") })
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
pub fn tree_steps(ctx: &mut Ctx<'_>) -> Result<Vec<Change>> {
    let mut changes = Vec::new();
    changes.extend(leftovers(ctx)?);
    changes.extend(overlays::skeleton(ctx)?);
    changes.extend(packages::packages(ctx)?);
    changes.extend(services::services(ctx)?);
    changes.extend(users::users(ctx)?);
    changes.extend(overlays::overlays(ctx)?);
    changes.extend(tree_links(ctx)?);
    changes.extend(bind_destinations(ctx)?);
    changes.extend(playbook::playbook(ctx)?);
    Ok(changes)
}

/// What an interrupted `shell` or `apply` left in the tree it worked on.
fn leftovers(ctx: &mut Ctx<'_>) -> Result<Vec<Change>> {
    if !runner::services_left_blocked(&ctx.tree)? {
        return Ok(Vec::new());
    }
    if ctx.apply {
        runner::unblock_services(&ctx.tree)?;
    }
    Ok(vec![
        Change::new(
            "remove_file",
            "remove /usr/sbin/policy-rc.d (left by an interrupted sysrootctl; it blocks every service start)",
        )
        .path(Path::new("/usr/sbin/policy-rc.d"))
        .reason("left_by_an_interrupted_run"),
    ])
}

fn bind_destinations(ctx: &mut Ctx<'_>) -> Result<Vec<Change>> {
    // /run too: imageswitch shows each caller's /run/user/UID there, and a
    // tree without /run (a minimal tarball) has nowhere to show it.
    let dirs: Vec<PathBuf> = ctx.decl.binds.iter().cloned().chain([PathBuf::from("/run")]).collect();
    let changes = bind_targets::diff(&bind_targets::observe(&ctx.tree, &dirs, &ctx.decl.host_files));
    if ctx.apply {
        bind_targets::act(&ctx.tree, &changes)?;
    }
    Ok(changes
        .iter()
        .map(|c| match c {
            bind_targets::Change::Create(dir) => {
                Change::new("create_directory", c.to_string()).path(dir).reason("bind_destination")
            }
            bind_targets::Change::CreateFile(file) => {
                Change::new("create_file", c.to_string()).path(file).reason("host_file_mount_point")
            }
        })
        .collect())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// sysrootctl(8) lists every kind and reason `--json` can give.
    #[test]
    fn the_man_page_lists_every_kind_and_reason() {
        let page = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../doc/sysrootctl.8.md")).unwrap();
        let missing: Vec<&&str> = KINDS.iter().chain(REASONS).filter(|k| !page.contains(&format!("*{k}*"))).collect();
        assert!(missing.is_empty(), "not in doc/sysrootctl.8.md: {missing:?}");
    }

    #[test]
    fn plan_diff_never_shows_secret_contents() {
        let dir = std::env::temp_dir().join(format!("sysrootctl-hidden-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = |name: &str, mode: u32| {
            let path = dir.join(name);
            fs::write(&path, "secret\n").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            path
        };
        let (open, private, group) = (file("open", 0o644), file("site-secret", 0o600), file("grp", 0o640));
        let missing = dir.join("missing");
        let rows: Vec<(&str, Vec<&Path>, Option<&str>)> = vec![
            // The review's cases: a `files` overlay with etc/shadow, and etc/site-secret 0600.
            ("/etc/shadow", vec![&open, &open], Some("password data")),
            ("/etc/site-secret", vec![&private, &missing], Some("mode 0600")),
            ("/etc/gshadow-", vec![&open], Some("password data")),
            ("/srv/x/shadow-", vec![&open], Some("password data")),
            ("/etc/apt/auth.conf.d/site.conf", vec![&open, &group], Some("mode 0640")),
            ("/etc/motd", vec![&open, &missing], None),
            ("/etc/shadowsocks.json", vec![&open], None),
        ];
        for (inner, files, why) in rows {
            let got = hidden(inner, &files).map(|d| d.diff);
            assert_eq!(got, why.map(|w| format!("{inner}: contents not shown ({w})\n")), "{inner}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
