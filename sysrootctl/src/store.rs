//! Generations: `STORE/NAME/N` trees, `STORE/NAME/N.json` records, the
//! `path -> STORE/NAME/N` symlink that publishes one, and the per-sysroot lock.
//!
//! A generation is complete once its record exists and its directory has its
//! final name; anything named `N.tmp` is a build that did not finish (a crash,
//! `kill -9`) and is thrown away by the next run that holds the lock. The live
//! tree is only ever replaced by renaming a new symlink over `path`.
#![forbid(unsafe_code)]

use std::fs;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use nix::fcntl::{Flock, FlockArg};

use crate::util;

mod adopt;
pub mod retire;

/// What we remember about one generation.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Record {
    pub generation: u32,
    /// The build's identity, made when it is built and kept wherever the
    /// generation is sent (`transfer`); empty for generations built before ids.
    pub id: String,
    pub parent: Option<u32>,
    /// Seconds since the epoch.
    pub created: u64,
    pub method: String,
    /// Host accounts merged into this generation (removed again when they leave the host).
    pub users: Vec<String>,
    pub groups: Vec<String>,
    /// Packages the bootstrap or import put there: not reported as extras.
    #[serde(default)]
    pub baseline: Vec<String>,
    /// Paths (inside the tree) written from overlays.
    pub files: Vec<String>,
    /// Fingerprint of each overlay file as written, to tell drift from an overlay change.
    pub file_sums: std::collections::BTreeMap<String, String>,
    /// The digest of the playbook project run on it (`playbook` key), to
    /// tell a changed playbook from an unchanged one; empty without one.
    pub playbook: String,
    /// What building it changed, as shown by `plan`.
    pub changes: Vec<String>,
}

/// What `gc` did: removed, kept because processes have their root in it,
/// kept because something is mounted in it (`sysrootctl mount`).
#[derive(Debug, Default)]
pub struct Collected {
    pub removed: Vec<u32>,
    pub in_use: Vec<(u32, Vec<u32>)>,
    pub mounted: Vec<(u32, PathBuf)>,
}

pub struct Store {
    pub name: String,
    /// `STORE/NAME`.
    pub dir: PathBuf,
    /// The configured `path`: the symlink that publishes a generation.
    pub link: PathBuf,
}

/// A new generation identity: 128 random bits, hex.
pub fn new_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for a generation id")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Store {
    pub fn new(store: &Path, name: &str, link: &Path) -> Store {
        Store { name: name.to_string(), dir: store.join(name), link: link.to_path_buf() }
    }

    pub fn tree(&self, generation: u32) -> PathBuf {
        self.dir.join(generation.to_string())
    }

    pub fn partial(&self, generation: u32) -> PathBuf {
        self.dir.join(format!("{generation}.tmp"))
    }

    fn record_path(&self, generation: u32) -> PathBuf {
        self.dir.join(format!("{generation}.json"))
    }

    /// Inside `STORE/NAME`, which only root can enter: no user can open it,
    /// so no user can hold it and stall every run.
    fn lock_path(&self) -> PathBuf {
        self.dir.join(".lock")
    }

    /// Where sysrootctl kept the lock before, openable by every user.
    pub fn old_lock_path(&self) -> PathBuf {
        self.dir.with_file_name(format!("{}.lock", self.name))
    }

    /// Creates `STORE` (0755) and `STORE/NAME` (0700), whatever root's umask,
    /// and brings an existing store to that layout: generations are reachable
    /// only through imageswitch's sealed view, never through the store path.
    /// A chmod on a directory: no rebuild, and entries in progress go on.
    pub fn create(&self) -> Result<()> {
        let store = self.dir.parent().unwrap_or(Path::new("/"));
        for (dir, mode) in [(store, 0o755), (self.dir.as_path(), 0o700)] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            // The store may be stricter than 0755; STORE/NAME is exactly 0700.
            let have = fs::metadata(dir)?.mode() & 0o7777;
            if (dir == store && have & 0o755 != 0o755) || (dir != store && have != mode) {
                fs::set_permissions(dir, fs::Permissions::from_mode(mode))
                    .with_context(|| format!("cannot set the mode of {}", dir.display()))?;
            }
        }
        match fs::remove_file(self.old_lock_path()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove {}", self.old_lock_path().display()))
            }
            _ => Ok(()),
        }
    }

    /// Whether users can get into `STORE/NAME` (a store laid out by an older
    /// sysrootctl, or changed by hand), for `check`.
    pub fn exposed(&self) -> Option<String> {
        let meta = fs::metadata(&self.dir).ok()?;
        if meta.uid() != 0 || meta.mode() & 0o077 != 0 {
            return Some(format!("{} is mode {:04o} owner {}", self.dir.display(), meta.mode() & 0o7777, meta.uid()));
        }
        self.old_lock_path()
            .exists()
            .then(|| format!("every user can open and hold the lock {}", self.old_lock_path().display()))
    }

    /// Takes the per-sysroot lock, waiting for another run unless `no_wait`.
    /// The lock file lives beside the generations, never inside a tree.
    pub fn lock(&self, no_wait: bool, quiet: bool) -> Result<Flock<fs::File>> {
        self.create()?;
        let path = self.lock_path();
        let file = fs::OpenOptions::new()
            .mode(0o600)
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(lock),
            Err((file, nix::errno::Errno::EWOULDBLOCK)) => {
                if no_wait {
                    bail!("another sysrootctl is working on {} (lock {} is held)", self.name, path.display());
                }
                if !quiet {
                    eprintln!("sysrootctl: {}: waiting for another sysrootctl (lock {})", self.name, path.display());
                }
                Flock::lock(file, FlockArg::LockExclusive)
                    .map_err(|(_, e)| e)
                    .with_context(|| format!("cannot lock {}", path.display()))
            }
            Err((_, e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
        }
    }

    /// Written by `retire` before it removes anything, gone with `STORE/NAME`:
    /// while it is there no generation is listed, published or built on.
    pub fn retiring_path(&self) -> PathBuf {
        self.dir.join(".retiring")
    }

    fn retiring(&self) -> Result<()> {
        if fs::symlink_metadata(self.retiring_path()).is_ok() {
            bail!(
                "{} is being retired ({} is there: a `sysrootctl retire {}` was interrupted): remove its entry and run retire again to finish, then declare it anew",
                self.dir.display(),
                self.retiring_path().display(),
                self.name
            );
        }
        Ok(())
    }

    /// Complete generations, oldest first: the only ones listed, kept,
    /// rolled back to or built on (none while it is being retired).
    pub fn generations(&self) -> Vec<u32> {
        if self.retiring().is_err() {
            return Vec::new();
        }
        let mut out: Vec<u32> = self.numbered().into_iter().filter(|&n| self.is_complete(n)).collect();
        out.sort_unstable();
        out
    }

    /// Every `STORE/NAME/N` with a record, complete or not.
    fn numbered(&self) -> Vec<u32> {
        match fs::read_dir(&self.dir) {
            Ok(entries) => entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
                .filter(|&n| self.record_path(n).is_file())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// A generation is complete when it has its final name, its record, and
    /// the top of a tree: a removal is always a rename to `N.tmp` first, but
    /// an older sysrootctl deleted in place and could be interrupted halfway.
    pub fn is_complete(&self, generation: u32) -> bool {
        let tree = self.tree(generation);
        self.record_path(generation).is_file()
            && fs::symlink_metadata(&tree).is_ok_and(|m| m.is_dir())
            && ["etc", "bin"].iter().all(|d| fs::symlink_metadata(tree.join(d)).is_ok())
    }

    /// Highest number used by anything in the store, complete or not.
    fn highest(&self) -> u32 {
        fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().to_str().and_then(|s| s.split('.').next()?.parse::<u32>().ok()))
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    }

    pub fn next(&self) -> u32 {
        self.highest() + 1
    }

    /// The published generation: `None` when `path` does not exist yet.
    pub fn live(&self) -> Result<Option<u32>> {
        self.retiring()?;
        let meta = match fs::symlink_metadata(&self.link) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot stat {}", self.link.display())),
        };
        if !meta.file_type().is_symlink() {
            bail!(
                "{} is not a symlink to a generation: take the existing tree over with `sysrootctl apply --adopt {}`",
                self.link.display(),
                self.name
            );
        }
        let target = fs::read_link(&self.link)?;
        let generation =
            target.strip_prefix(&self.dir).ok().and_then(|rest| rest.to_str()).and_then(|s| s.parse::<u32>().ok());
        match generation {
            Some(n) if self.tree(n).is_dir() => Ok(Some(n)),
            _ => bail!(
                "{} points at {}, which is not a generation in {}",
                self.link.display(),
                target.display(),
                self.dir.display()
            ),
        }
    }

    pub fn record(&self, generation: u32) -> Result<Record> {
        let path = self.record_path(generation);
        let text = fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))
    }

    /// Throws away builds that never finished (kill -9, crash), generations
    /// whose removal did not finish, incomplete generations that are not
    /// live (first the processes still running in them, then the trees), and
    /// what a cut-off transfer of a record left (`.incoming.json.XXXXXX`).
    pub fn clean_partial(&self) -> Result<Vec<PathBuf>> {
        let live = self.live().ok().flatten();
        for n in self.numbered() {
            if !self.is_complete(n) && Some(n) != live {
                self.retire_generation(n)?;
            }
        }
        let mut removed = Vec::new();
        let Ok(entries) = fs::read_dir(&self.dir) else { return Ok(removed) };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let path = entry.path();
            if name.ends_with(".tmp") {
                util::kill_rooted_in(&path);
                util::remove_tree(&path)?;
                removed.push(path);
            } else if let Some(n) = name.strip_suffix(".json").and_then(|s| s.parse::<u32>().ok()) {
                if !self.tree(n).exists() {
                    fs::remove_file(&path)?;
                    removed.push(path);
                }
            } else if name.ends_with(".sysrootctl-new") || name.starts_with(".incoming.json.") {
                // The second: the temporary file of an rsync of a record that was cut off.
                fs::remove_file(&path)?;
            } else if name.ends_with(".rpm-home") {
                fs::remove_dir_all(&path)?;
            }
        }
        Ok(removed)
    }

    /// Removes generation `N` so that no moment of it shows a listed, usable,
    /// half-removed generation: renamed to `N.tmp` (unfinished, never listed),
    /// then the record, then the tree.
    fn retire_generation(&self, generation: u32) -> Result<()> {
        let doomed = self.partial(generation);
        fs::rename(self.tree(generation), &doomed)
            .with_context(|| format!("cannot set generation {generation} aside for removal"))?;
        util::sync_dir(&self.dir)?;
        fs::remove_file(self.record_path(generation))?;
        util::remove_tree(&doomed)
    }

    /// Makes a finished build generation `N`: record first, then the rename, so
    /// a crash in between leaves a record without a tree (cleaned up later).
    pub fn finish(&self, generation: u32, record: &Record) -> Result<()> {
        let json = serde_json::to_vec_pretty(record)?;
        util::write_atomic(&self.record_path(generation), &json, 0o644)?;
        fs::rename(self.partial(generation), self.tree(generation))?;
        util::sync_dir(&self.dir)?;
        Ok(())
    }

    /// Publishes generation `N` by renaming a new symlink over `path`.
    pub fn publish(&self, generation: u32) -> Result<()> {
        if let Some(parent) = self.link.parent() {
            fs::DirBuilder::new().recursive(true).mode(0o755).create(parent)?;
        }
        util::symlink_atomic(&self.tree(generation), &self.link)?;
        if let Some(parent) = self.link.parent() {
            util::sync_dir(parent)?;
        }
        Ok(())
    }

    /// PIDs of processes whose root is inside generation `N`.
    pub fn users_of(&self, generation: u32) -> Vec<u32> {
        util::processes_rooted_in(&self.tree(generation)).into_iter().map(|(pid, _)| pid).collect()
    }

    /// Removes generations beyond the newest `keep`, never the live one, nor
    /// one a process still has as its root, nor one something is mounted in.
    pub fn gc(&self, keep: u32) -> Result<Collected> {
        let live = self.live()?;
        let all = self.generations();
        let keep_from = all.len().saturating_sub(keep as usize);
        let mut out = Collected::default();
        for &n in &all[..keep_from] {
            if Some(n) == live {
                continue;
            }
            let users = self.users_of(n);
            if !users.is_empty() {
                out.in_use.push((n, users));
                continue;
            }
            if let Some(point) = util::mounts_below(&self.tree(n)).into_iter().next() {
                out.mounted.push((n, point));
                continue;
            }
            self.retire_generation(n)?;
            out.removed.push(n);
        }
        Ok(out)
    }
}
