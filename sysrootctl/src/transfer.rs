//! Build once, publish to many: a generation built on one machine is sent to
//! others and published there with the same atomic link swap as `apply`.
//!
//! Each generation carries an identity (`Record::id`, made when it is built)
//! that travels with it, so `status` shows which machines run which build.
//! The transport is not ours: the sender copies the tree with rsync over ssh
//! into `STORE/NAME/incoming` (hard-linking what the receiver's live
//! generation already has, so only changes cross the wire), then the record
//! into `STORE/NAME/incoming.json`, and `receive` turns the two into a new
//! local generation. The record is sent last and consumed by `receive`, and a
//! record that does not describe the tree beside it is never trusted: one
//! that arrived before anything in the tree last changed (a record left by a
//! transfer whose `receive` never ran, then part of another tree) is refused.
//! An interrupted transfer leaves the live generation alone, and the next one
//! reuses what already arrived.
#![forbid(unsafe_code)]

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::commands::{Opts, Report, store_of};
use crate::decl::{Build, Declaration, Declared};
use crate::reconcile::{self, Ctx};
use crate::store::{Record, Store};

/// Whether `id` is a generation id as [`crate::store::new_id`] makes them.
pub fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Where a sender puts the tree and the record for `receive`: inside
/// `STORE/NAME`, beside the generations (the same filesystem, so the tree is
/// renamed into place and hard links to the live generation work).
fn incoming(store: &Store) -> (PathBuf, PathBuf) {
    (store.dir.join("incoming"), store.dir.join("incoming.json"))
}

/// What `export` prints: the live generation to send, and where a sender
/// puts one for this machine.
#[derive(Debug, Serialize)]
pub struct Export {
    pub name: String,
    pub generation: Option<u32>,
    pub id: Option<String>,
    /// The live generation's tree and record (the source of a transfer).
    pub tree: Option<PathBuf>,
    pub record: Option<PathBuf>,
    /// Where a transfer to this machine goes (its destination).
    pub incoming: PathBuf,
    pub incoming_record: PathBuf,
    /// Every generation here with its id, oldest first (a rollback across
    /// machines names one by id).
    pub generations: Vec<Generation>,
}

#[derive(Debug, Serialize)]
pub struct Generation {
    pub generation: u32,
    pub id: Option<String>,
}

fn managed(d: &Declared) -> Result<&Build> {
    d.build.as_ref().with_context(|| format!("{}: no [sysroot.{0}.build] table", d.sysroot.name))
}

pub fn export(decl: &Declaration, name: &str, opts: &Opts) -> Result<i32> {
    let d = decl.get(name)?;
    let store = store_of(d, managed(d)?);
    // A transfer then lands in a store laid out and protected by sysrootctl.
    if nix::unistd::geteuid().is_root() {
        store.create()?;
    }
    let live = store.live()?;
    let (incoming, incoming_record) = incoming(&store);
    let e = Export {
        name: name.to_string(),
        generation: live,
        id: live.and_then(|n| store.record(n).ok()).map(|r| r.id).filter(|id| !id.is_empty()),
        tree: live.map(|n| store.tree(n)),
        record: live.map(|n| store.dir.join(format!("{n}.json"))),
        incoming,
        incoming_record,
        generations: store
            .generations()
            .into_iter()
            .map(|n| Generation { generation: n, id: store.record(n).ok().map(|r| r.id).filter(|id| !id.is_empty()) })
            .collect(),
    };
    if opts.json {
        crate::outln!("{}", serde_json::to_string_pretty(&e)?);
    } else {
        let shown = |p: &Option<PathBuf>| p.as_ref().map_or("none".to_string(), |p| p.display().to_string());
        let generation = live.map_or("none".to_string(), |n| n.to_string());
        crate::outln!("{name}: generation {generation}, id {}", e.id.as_deref().unwrap_or("none"));
        crate::outln!("  tree {}, record {}", shown(&e.tree), shown(&e.record));
        crate::outln!("  receives into {} and {}", e.incoming.display(), e.incoming_record.display());
    }
    Ok(0)
}

/// Publishes what a sender left in `STORE/NAME/incoming`: a generation with
/// the same id already here is published again instead of stored twice.
pub fn receive(decl: &Declaration, name: &str, opts: &Opts) -> Result<i32> {
    let d = decl.get(name)?;
    let report = receive_one(d, opts)?;
    if opts.json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.generation == report.published {
        crate::outln!("{name}: up to date, nothing changed (generation {})", report.published.unwrap_or(0));
    } else {
        let from = report.generation.map_or("none".to_string(), |n| n.to_string());
        crate::outln!("{name}: generation {from} -> {}", report.published.unwrap_or(0));
    }
    if !opts.json && !opts.verbosity.quiet() {
        for line in report.changes.iter().chain(&report.notes) {
            crate::outln!("  {line}");
        }
    }
    Ok(0)
}

fn receive_one(d: &Declared, opts: &Opts) -> Result<Report> {
    let build = managed(d)?;
    let name = d.sysroot.name.as_str();
    let store = store_of(d, build);
    let _lock = store.lock(opts.no_wait, opts.verbosity.quiet())?;
    let (dir, record_path) = incoming(&store);
    // Before anything here is removed: removing a file that shares its inode
    // with the tree (a hard link from --link-dest) changes the inode's ctime.
    let tree_changed = if dir.exists() { Some(last_change(&dir)?) } else { None };
    store.clean_partial()?;
    let (text, arrived) = match read_record(&record_path) {
        Ok(read) => read,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "nothing received for {name}: {} is missing (send the tree to {}, then its record)",
            record_path.display(),
            dir.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", record_path.display())),
    };
    // Consumed whatever happens next: a record is only trusted right after the
    // tree it describes arrived complete.
    fs::remove_file(&record_path).with_context(|| format!("cannot remove {}", record_path.display()))?;
    let sent: Record =
        serde_json::from_str(&text).with_context(|| format!("cannot parse {}", record_path.display()))?;
    if !valid_id(&sent.id) {
        bail!("{} has no valid generation id (\"{}\")", record_path.display(), sent.id);
    }
    if let Some((changed, what)) = tree_changed {
        if changed > arrived {
            bail!(
                "{} arrived before {} last changed: it does not describe the tree beside it, which stays for the \
                 next transfer (send the tree again, then its record)",
                record_path.display(),
                what.display()
            );
        }
    }
    let live = store.live()?;
    let mut report = Report { name: name.to_string(), generation: live, ..Report::default() };
    let have = store.generations().into_iter().find(|&n| store.record(n).is_ok_and(|r| r.id == sent.id));
    let target = match have {
        Some(n) => {
            if dir.exists() {
                crate::util::remove_tree(&dir)?;
            }
            report.notes.push(format!("generation {n} already is {}; the received copy is not kept", sent.id));
            n
        }
        None => {
            let next = store.next();
            let tmp = store.partial(next);
            fs::rename(&dir, &tmp).with_context(|| format!("cannot move {} to {}", dir.display(), tmp.display()))?;
            let record = Record { generation: next, parent: live, ..sent };
            if let Err(err) = verify(d, build, &tmp, opts).context("verification") {
                crate::util::kill_rooted_in(&tmp);
                let _ = crate::util::remove_tree(&tmp);
                return Err(err.context(format!("received generation {} not published", record.id)));
            }
            store.finish(next, &record)?;
            report.add([reconcile::Change::new("receive", format!("received generation {} as {next}", record.id))]);
            next
        }
    };
    if live != Some(target) {
        store.publish(target)?;
        store.gc(build.keep)?;
    }
    let c = ctx(d, build, &store.tree(target), opts);
    report.add(reconcile::host_links(&c)?.into_iter().map(reconcile::Change::on_host));
    report.published = Some(target);
    Ok(report)
}

/// A record's text and when it arrived here (its ctime).
fn read_record(path: &Path) -> std::io::Result<(String, (i64, i64))> {
    let mut file = fs::File::open(path)?;
    let meta = file.metadata()?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok((text, (meta.ctime(), meta.ctime_nsec())))
}

/// When anything in `path` last changed here, and what: the newest ctime. Not
/// the mtime, which rsync -t sets to the sender's; every write, link, rename
/// or removal here sets a ctime to the time it happened.
fn last_change(path: &Path) -> Result<((i64, i64), PathBuf)> {
    let meta = fs::symlink_metadata(path).with_context(|| format!("cannot stat {}", path.display()))?;
    let mut newest = ((meta.ctime(), meta.ctime_nsec()), path.to_path_buf());
    if meta.is_dir() {
        for entry in fs::read_dir(path).with_context(|| format!("cannot read {}", path.display()))? {
            let inner = last_change(&entry?.path())?;
            if inner.0 > newest.0 {
                newest = inner;
            }
        }
    }
    Ok(newest)
}

fn ctx<'a>(d: &'a Declared, build: &'a Build, tree: &Path, opts: &'a Opts) -> Ctx<'a> {
    Ctx::new(d, build, tree, true, opts.verbosity, &opts.host)
}

/// The checks `apply` makes before publishing, on the received tree.
fn verify(d: &Declared, build: &Build, tree: &Path, opts: &Opts) -> Result<()> {
    let meta = fs::symlink_metadata(tree)?;
    if !meta.is_dir() || meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        bail!("{} is not a root-owned directory closed to group and others", tree.display());
    }
    reconcile::verify(&ctx(d, build, tree, opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_fresh_lowercase_hex() {
        let (a, b) = (crate::store::new_id().unwrap(), crate::store::new_id().unwrap());
        assert!(valid_id(&a) && valid_id(&b));
        assert_ne!(a, b);
        for bad in ["", "../etc", "ABCDEF0123456789ABCDEF0123456789", "0123456789abcdef0123456789abcde"] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}
