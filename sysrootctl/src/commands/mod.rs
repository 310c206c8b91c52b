//! The verbs. Each selects sysroots from the declaration, takes the lock where it
//! changes something, and reports per sysroot; one failing sysroot does not stop
//! the others.
#![forbid(unsafe_code)]

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::backend;
use crate::decl::{Build, Declaration, Declared};
use crate::reconcile::{self, Change, Ctx, Host};
use crate::store::{self, Record, Store};
use crate::util::{Phase, Verbosity};

mod generations;
mod report;
mod retire;
mod shell;
mod status;

pub use generations::{gc, rollback};
pub use report::Report;
use report::print_report;
pub use retire::retire;
pub use shell::shell;
pub use status::{list, status};

pub struct Opts {
    pub host: Host,
    pub verbosity: Verbosity,
    pub json: bool,
    pub no_wait: bool,
    /// `apply --adopt`: take over a hand-built tree at `path`.
    pub adopt: bool,
    /// `plan --diff`: content changes of overlay and account files too.
    pub diff: bool,
}

fn managed(d: &Declared) -> Result<&Build> {
    d.build.as_ref().with_context(|| {
        format!("{}: no [sysroot.{}.build] table, so sysrootctl does not manage it", d.sysroot.name, d.sysroot.name)
    })
}

pub fn store_of(d: &Declared, build: &Build) -> Store {
    Store::new(&build.store, &d.sysroot.name, &d.sysroot.path)
}

fn ctx<'a>(d: &'a Declared, build: &'a Build, tree: &Path, apply: bool, opts: &'a Opts, prev: Record) -> Ctx<'a> {
    Ctx {
        prev,
        diffs: (opts.diff && !apply).then(Vec::new),
        ..Ctx::new(d, build, tree, apply, opts.verbosity, &opts.host)
    }
}

/// Pending changes for one sysroot, read from the live tree only.
pub fn plan_one(d: &Declared, opts: &Opts) -> Result<Report> {
    let build = managed(d)?;
    let store = store_of(d, build);
    let mut report = Report { name: d.sysroot.name.clone(), ..Report::default() };
    let Some(live) = store.live()? else {
        report.add([
            Change::new("bootstrap", backend::describe(build)),
            Change::new("reconcile", "then reconcile skeleton files, packages, services, users, files and links in it"),
        ]);
        return Ok(report);
    };
    report.generation = Some(live);
    let prev = store.record(live).unwrap_or_default();
    let mut c = ctx(d, build, &store.tree(live), false, opts, prev);
    report.add(reconcile::tree_steps(&mut c)?);
    report.add(reconcile::host_links(&c)?.into_iter().map(Change::on_host));
    report.notes = c.notes;
    report.diffs = c.diffs.unwrap_or_default();
    Ok(report)
}

pub fn apply_one(d: &Declared, opts: &Opts) -> Result<Report> {
    let build = managed(d)?;
    let name = d.sysroot.name.as_str();
    let store = store_of(d, build);
    let _lock = store.lock(opts.no_wait, opts.verbosity.quiet())?;
    let mut report = Report { name: name.to_string(), ..Report::default() };
    for removed in store.clean_partial()? {
        report.notes.push(format!("removed an unfinished build: {}", removed.display()));
    }
    let live = match store.live() {
        Err(_) if opts.adopt && fs::symlink_metadata(&store.link).is_ok_and(|m| m.is_dir()) => {
            let n = adopt(d, &store, opts)?;
            report.notes.push(format!(
                "adopted {} as generation {n}; the hand-built tree stays at {} until you remove it",
                store.link.display(),
                store.adopted_path().display()
            ));
            Some(n)
        }
        other => other?,
    };
    report.generation = live;
    let prev = live.and_then(|n| store.record(n).ok()).unwrap_or_default();

    let pending = match live {
        None => vec![Change::new("bootstrap", backend::describe(build))],
        Some(n) => {
            let mut c = ctx(d, build, &store.tree(n), false, opts, prev.clone());
            let changes = reconcile::tree_steps(&mut c)?;
            report.notes.extend(c.notes);
            changes
        }
    };
    let mut published = live;
    if !pending.is_empty() {
        let next = store.next();
        let tmp = store.partial(next);
        let built = build_generation(d, build, &store, live, next, prev, opts).with_context(|| match live {
            Some(n) => format!("building generation {next} failed; generation {n} stays live"),
            None => format!("building generation {next} failed; nothing was published"),
        });
        let changes = match built {
            Ok(changes) => changes,
            Err(err) => {
                // Leave nothing half-built behind (a crash is handled by clean_partial).
                crate::util::kill_rooted_in(&tmp);
                let _ = crate::util::remove_tree(&tmp);
                return Err(err);
            }
        };
        store.publish(next)?;
        published = Some(next);
        report.add(changes);
    }
    if let Some(n) = published {
        let c = ctx(d, build, &store.tree(n), true, opts, Record::default());
        report.add(reconcile::host_links(&c)?.into_iter().map(Change::on_host));
    }
    if published != live {
        // Published and linked: an old generation that cannot go yet is a note.
        match store.gc(build.keep) {
            Ok(gc) => report.notes.extend(gc_notes(&gc, name)),
            Err(err) => report.notes.push(format!("old generations not removed: {err:#}")),
        }
    }
    report.published = published;
    Ok(report)
}

/// `apply --adopt`: the store takes the hand-built tree over; a copy of it,
/// with the packages it has as the baseline, becomes the next generation.
fn adopt(d: &Declared, store: &Store, opts: &Opts) -> Result<u32> {
    let what = format!("adopt {}", store.link.display());
    let phase = Phase::start(&d.sysroot.name, &what, opts.verbosity);
    let n = store.adopt(|from, to| {
        backend::copy_generation(from, to, opts.verbosity)?;
        Ok(Record {
            id: store::new_id()?,
            created: store::now(),
            method: "adopted".to_string(),
            baseline: reconcile::installed_packages(to),
            changes: vec![what.clone()],
            ..Record::default()
        })
    })?;
    phase.done();
    Ok(n)
}

fn gc_notes(gc: &store::Collected, name: &str) -> Vec<String> {
    let mut notes = Vec::new();
    if !gc.removed.is_empty() {
        notes.push(format!("removed old generations: {}", join(&gc.removed)));
    }
    for (n, pids) in &gc.in_use {
        notes.push(format!("kept generation {n}: in use by pid {}", join(pids)));
    }
    for (n, point) in &gc.mounted {
        notes.push(format!("kept generation {n}: {} is mounted (sysrootctl umount {name})", point.display()));
    }
    notes
}

/// Builds generation `next` beside the live one: bootstrap or copy, reconcile,
/// verify, record. Nothing here touches the live tree or the published link.
fn build_generation(
    d: &Declared,
    build: &Build,
    store: &Store,
    live: Option<u32>,
    next: u32,
    prev: Record,
    opts: &Opts,
) -> Result<Vec<Change>> {
    let name = d.sysroot.name.as_str();
    let tmp = store.partial(next);
    match live {
        None => {
            let phase = Phase::start(name, backend::describe(build), opts.verbosity);
            backend::bootstrap(build, &tmp, opts.verbosity)?;
            phase.done();
        }
        Some(n) => {
            let phase = Phase::start(name, format!("copy generation {n} to {next}"), opts.verbosity);
            backend::copy_generation(&store.tree(n), &tmp, opts.verbosity)?;
            phase.done();
        }
    }
    for dir in ["/proc", "/dev", "/sys", "/tmp"] {
        reconcile::ensure_dir(&tmp, dir)?;
    }
    let mut c = ctx(d, build, &tmp, true, opts, prev);
    let mut changes =
        if live.is_none() { vec![Change::new("bootstrap", backend::describe(build))] } else { Vec::new() };
    changes.extend(reconcile::tree_steps(&mut c)?);
    reconcile::verify(&c).context("verification")?;
    let mut record = c.record;
    record.generation = next;
    record.id = store::new_id()?;
    record.parent = live;
    record.created = store::now();
    record.method = build.method.as_str().to_string();
    record.changes = changes.iter().map(ToString::to_string).collect();
    store.finish(next, &record)?;
    Ok(changes)
}

fn join<T: ToString>(items: &[T]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
}

fn gen_name(n: Option<u32>) -> String {
    n.map_or("none".to_string(), |n| n.to_string())
}

/// Entries that could not be evaluated, when the run covers every sysroot:
/// each fails the run and is named, as Ansible fails a host it cannot evaluate.
fn broken_reports(decl: &Declaration, names: &[String]) -> Vec<Report> {
    if !names.is_empty() {
        return Vec::new();
    }
    decl.broken
        .iter()
        .map(|(name, err)| Report { name: name.clone(), error: Some(err.to_string()), ..Report::default() })
        .collect()
}

fn each(
    verb: &str,
    decl: &Declaration,
    names: &[String],
    opts: &Opts,
    f: fn(&Declared, &Opts) -> Result<Report>,
    leftovers: Vec<Report>,
) -> Result<Vec<Report>> {
    let selected = decl.select(names)?;
    let mut broken = broken_reports(decl, names);
    broken.extend(leftovers);
    if selected.is_empty() && broken.is_empty() {
        bail!("no sysroot in {} has a [sysroot.NAME.build] table", decl.file.display());
    }
    let mut reports = Vec::new();
    for d in selected {
        let report = f(d, opts).unwrap_or_else(|err| Report {
            name: d.sysroot.name.clone(),
            error: Some(format!("{err:#}")),
            ..Report::default()
        });
        print_report(verb, &report, opts);
        reports.push(report);
    }
    for report in broken {
        print_report(verb, &report, opts);
        reports.push(report);
    }
    if opts.json {
        crate::outln!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(reports)
}

/// Exit status: 0 nothing to do, 2 changes pending, 1 any error. Without
/// names, leftovers of sysroots no longer declared are reported too; they do
/// not change the status (`apply` does not remove them, `retire` does).
pub fn plan(decl: &Declaration, names: &[String], opts: &Opts) -> Result<i32> {
    let leftovers = if names.is_empty() { retire::leftovers(decl, opts) } else { Vec::new() };
    let reports = each("plan", decl, names, opts, plan_one, leftovers)?;
    Ok(if reports.iter().any(|r| r.error.is_some()) {
        1
    } else if reports.iter().any(|r| !r.changes.is_empty()) {
        2
    } else {
        0
    })
}

pub fn apply(decl: &Declaration, names: &[String], opts: &Opts) -> Result<i32> {
    let reports = each("apply", decl, names, opts, apply_one, Vec::new())?;
    Ok(if reports.iter().any(|r| r.error.is_some()) { 1 } else { 0 })
}
