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
use crate::reconcile::{self, Ctx, Host};
use crate::store::{self, Record, Store};
use crate::util::{Phase, Verbosity};

pub struct Opts {
    pub host: Host,
    pub verbosity: Verbosity,
    pub json: bool,
    pub no_wait: bool,
    /// `apply --adopt`: take over a hand-built tree at `path`.
    pub adopt: bool,
}

/// What happened (or would) to one sysroot.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub name: String,
    /// Live generation before (plan: now).
    pub generation: Option<u32>,
    /// Live generation after an apply or rollback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<u32>,
    pub changes: Vec<String>,
    pub notes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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
        decl: d,
        build,
        tree: tree.to_path_buf(),
        apply,
        verbosity: opts.verbosity,
        host: &opts.host,
        prev,
        record: Record::default(),
        notes: Vec::new(),
    }
}

/// Pending changes for one sysroot, read from the live tree only.
pub fn plan_one(d: &Declared, opts: &Opts) -> Result<Report> {
    let build = managed(d)?;
    let store = store_of(d, build);
    let mut report = Report { name: d.sysroot.name.clone(), ..Report::default() };
    let Some(live) = store.live()? else {
        report.changes.push(backend::describe(build));
        report.changes.push("then reconcile packages, services, users, files and links in it".to_string());
        return Ok(report);
    };
    report.generation = Some(live);
    let prev = store.record(live).unwrap_or_default();
    let mut c = ctx(d, build, &store.tree(live), false, opts, prev);
    report.changes = reconcile::tree_steps(&mut c)?;
    report.changes.extend(reconcile::host_links(&c)?.into_iter().map(|s| format!("host: {s}")));
    report.notes = c.notes;
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
                adopted_path(&store).display()
            ));
            Some(n)
        }
        other => other?,
    };
    report.generation = live;
    let prev = live.and_then(|n| store.record(n).ok()).unwrap_or_default();

    let pending = match live {
        None => vec![backend::describe(build)],
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
        report.changes = changes;
    }
    if let Some(n) = published {
        let c = ctx(d, build, &store.tree(n), true, opts, Record::default());
        report.changes.extend(reconcile::host_links(&c)?.into_iter().map(|s| format!("host: {s}")));
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
) -> Result<Vec<String>> {
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
    let mut changes = if live.is_none() { vec![backend::describe(build)] } else { Vec::new() };
    changes.extend(reconcile::tree_steps(&mut c)?);
    reconcile::verify(&c).context("verification")?;
    let mut record = c.record;
    record.generation = next;
    record.id = crate::transfer::new_id()?;
    record.parent = live;
    record.created = store::now();
    record.method = build.method.as_str().to_string();
    record.changes = changes.clone();
    store.finish(next, &record)?;
    Ok(changes)
}

fn adopted_path(store: &Store) -> PathBuf {
    crate::util::sibling(&store.link, ".pre-sysrootctl")
}

/// Takes over a hand-built tree: copies it as the next generation, then swaps
/// it for the link in one `renameat2(RENAME_EXCHANGE)`, so `path` always names
/// a complete tree. Processes inside keep the old directory, which stays at
/// `PATH.pre-sysrootctl`.
fn adopt(d: &Declared, store: &Store, opts: &Opts) -> Result<u32> {
    let old = adopted_path(store);
    if fs::symlink_metadata(&old).is_ok() {
        bail!("{} exists from an earlier adoption; remove it first", old.display());
    }
    let next = store.next();
    let phase =
        Phase::start(&d.sysroot.name, format!("adopt {} as generation {next}", store.link.display()), opts.verbosity);
    backend::copy_generation(&store.link, &store.partial(next), opts.verbosity)?;
    let record = Record {
        generation: next,
        id: crate::transfer::new_id()?,
        created: store::now(),
        method: "adopted".to_string(),
        baseline: reconcile::installed_packages(&store.partial(next)),
        changes: vec![format!("adopt {}", store.link.display())],
        ..Record::default()
    };
    store.finish(next, &record)?;
    let new_link = crate::util::sibling(&store.link, ".sysrootctl-new");
    let _ = fs::remove_file(&new_link);
    std::os::unix::fs::symlink(store.tree(next), &new_link)?;
    nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        &new_link,
        nix::fcntl::AT_FDCWD,
        &store.link,
        nix::fcntl::RenameFlags::RENAME_EXCHANGE,
    )
    .with_context(|| format!("cannot swap {} for a link to generation {next}", store.link.display()))?;
    fs::rename(&new_link, &old)?;
    phase.done();
    Ok(next)
}

/// `2026-11-23 08:12 UTC` from seconds since the epoch (proleptic Gregorian).
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let (hour, minute) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02} UTC")
}

fn join<T: ToString>(items: &[T]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
}

fn gen_name(n: Option<u32>) -> String {
    n.map_or("none".to_string(), |n| n.to_string())
}

fn print_report(verb: &str, r: &Report, opts: &Opts) {
    if opts.json {
        return;
    }
    if let Some(err) = &r.error {
        eprintln!("sysrootctl: {}: {err}", r.name);
        return;
    }
    let quiet = opts.verbosity.quiet();
    match verb {
        "plan" if r.changes.is_empty() => {
            if !quiet {
                crate::outln!("{}: up to date (generation {})", r.name, gen_name(r.generation))
            }
        }
        "plan" => {
            crate::outln!("{}: {} change(s) pending on generation {}", r.name, r.changes.len(), gen_name(r.generation))
        }
        _ if r.changes.is_empty() => {
            if !quiet {
                crate::outln!("{}: up to date, nothing changed (generation {})", r.name, gen_name(r.published))
            }
        }
        _ if r.generation != r.published => {
            crate::outln!("{}: generation {} -> {}", r.name, gen_name(r.generation), gen_name(r.published))
        }
        _ => crate::outln!("{}: host links updated (generation {})", r.name, gen_name(r.published)),
    }
    if quiet && verb != "plan" {
        return;
    }
    for c in &r.changes {
        crate::outln!("  {c}");
    }
    for n in &r.notes {
        crate::outln!("  note: {n}");
    }
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
) -> Result<Vec<Report>> {
    let selected = decl.select(names)?;
    let broken = broken_reports(decl, names);
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

/// Exit status: 0 nothing to do, 2 changes pending, 1 any error.
pub fn plan(decl: &Declaration, names: &[String], opts: &Opts) -> Result<i32> {
    let reports = each("plan", decl, names, opts, plan_one)?;
    Ok(if reports.iter().any(|r| r.error.is_some()) {
        1
    } else if reports.iter().any(|r| !r.changes.is_empty()) {
        2
    } else {
        0
    })
}

pub fn apply(decl: &Declaration, names: &[String], opts: &Opts) -> Result<i32> {
    let reports = each("apply", decl, names, opts, apply_one)?;
    Ok(if reports.iter().any(|r| r.error.is_some()) { 1 } else { 0 })
}

pub fn rollback(decl: &Declaration, name: &str, to: Option<u32>, opts: &Opts) -> Result<i32> {
    let d = decl.get(name)?;
    let build = managed(d)?;
    let store = store_of(d, build);
    let _lock = store.lock(opts.no_wait, opts.verbosity.quiet())?;
    let live = store.live()?.with_context(|| format!("{name} has no published generation"))?;
    let generations = store.generations();
    let target = match to {
        Some(n) if generations.contains(&n) => n,
        Some(n) => bail!("{name} has no generation {n} (have: {})", join(&generations)),
        None => *generations
            .iter()
            .rev()
            .find(|&&n| n < live)
            .with_context(|| format!("{name} has no generation older than {live}"))?,
    };
    store.publish(target)?;
    let c = ctx(d, build, &store.tree(target), true, opts, Record::default());
    let changes = reconcile::host_links(&c)?;
    let report = Report {
        name: name.to_string(),
        generation: Some(live),
        published: Some(target),
        changes: changes.into_iter().map(|s| format!("host: {s}")).collect(),
        ..Report::default()
    };
    if opts.json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        crate::outln!("{name}: rolled back from generation {live} to {target}");
        for c in &report.changes {
            crate::outln!("  {c}");
        }
    }
    Ok(0)
}

#[derive(Serialize, Default)]
struct GcReport {
    name: String,
    removed: Vec<u32>,
    in_use: Vec<(u32, Vec<u32>)>,
    kept: Vec<u32>,
    notes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn gc_one(d: &Declared, opts: &Opts) -> Result<GcReport> {
    let build = managed(d)?;
    let store = store_of(d, build);
    let _lock = store.lock(opts.no_wait, opts.verbosity.quiet())?;
    store.clean_partial()?;
    let gc = store.gc(build.keep)?;
    let notes = gc_notes(&gc, &d.sysroot.name).into_iter().filter(|n| n.starts_with("kept")).collect();
    Ok(GcReport {
        name: d.sysroot.name.clone(),
        removed: gc.removed,
        in_use: gc.in_use,
        kept: store.generations(),
        notes,
        error: None,
    })
}

pub fn gc(decl: &Declaration, names: &[String], opts: &Opts) -> Result<i32> {
    let mut out: Vec<GcReport> = decl
        .select(names)?
        .into_iter()
        .map(|d| {
            gc_one(d, opts).unwrap_or_else(|err| GcReport {
                name: d.sysroot.name.clone(),
                error: Some(format!("{err:#}")),
                ..GcReport::default()
            })
        })
        .collect();
    out.extend(broken_reports(decl, names).into_iter().map(|r| GcReport {
        name: r.name,
        error: r.error,
        ..GcReport::default()
    }));
    for report in out.iter().filter(|_| !opts.json) {
        if let Some(err) = &report.error {
            eprintln!("sysrootctl: {}: {err}", report.name);
            continue;
        }
        crate::outln!(
            "{}: removed generations [{}], kept [{}]",
            report.name,
            join(&report.removed),
            join(&report.kept)
        );
        for note in &report.notes {
            crate::outln!("  note: {note}");
        }
    }
    if opts.json {
        crate::outln!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(if out.iter().any(|r| r.error.is_some()) { 1 } else { 0 })
}

#[derive(Serialize)]
struct Status {
    name: String,
    path: String,
    managed: bool,
    method: Option<String>,
    live: Option<u32>,
    /// The live generation's build identity.
    id: Option<String>,
    generations: Vec<GenInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct GenInfo {
    generation: u32,
    id: String,
    created: u64,
    parent: Option<u32>,
    in_use_by: Vec<u32>,
}

fn status_of(d: &Declared, opts: &Opts, with_plan: bool) -> Status {
    let mut s = Status {
        name: d.sysroot.name.clone(),
        path: d.sysroot.path.display().to_string(),
        managed: d.build.is_some(),
        method: d.build.as_ref().map(|b| b.method.as_str().to_string()),
        live: None,
        id: None,
        generations: Vec::new(),
        pending: None,
        error: None,
    };
    let Some(build) = &d.build else { return s };
    let store = store_of(d, build);
    match store.live() {
        Ok(live) => s.live = live,
        Err(e) => s.error = Some(format!("{e:#}")),
    }
    for n in store.generations() {
        let r = store.record(n).unwrap_or_default();
        if s.live == Some(n) && !r.id.is_empty() {
            s.id = Some(r.id.clone());
        }
        s.generations.push(GenInfo {
            generation: n,
            id: r.id,
            created: r.created,
            parent: r.parent,
            in_use_by: store.users_of(n),
        });
    }
    if with_plan && s.error.is_none() {
        match plan_one(d, opts) {
            Ok(r) => s.pending = Some(r.changes),
            Err(e) => s.error = Some(format!("{e:#}")),
        }
    }
    s
}

pub fn status(decl: &Declaration, name: Option<&str>, opts: &Opts) -> Result<i32> {
    let selected: Vec<&Declared> = match name {
        Some(n) => vec![decl.get(n)?],
        None => decl.sysroots.iter().collect(),
    };
    let mut all: Vec<Status> = selected.iter().map(|d| status_of(d, opts, true)).collect();
    if name.is_none() {
        all.extend(broken_statuses(decl));
    }
    if opts.json {
        crate::outln!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        for s in &all {
            if let Some(err) = s.error.as_ref().filter(|_| s.path.is_empty()) {
                eprintln!("sysrootctl: {}: {err}", s.name);
                continue;
            }
            if !s.managed {
                crate::outln!("{}: {} (not managed by sysrootctl)", s.name, s.path);
                continue;
            }
            crate::outln!(
                "{}: {} -> generation {} ({}, id {})",
                s.name,
                s.path,
                gen_name(s.live),
                s.method.as_deref().unwrap_or("?"),
                s.id.as_deref().unwrap_or("none")
            );
            for g in &s.generations {
                let live = if Some(g.generation) == s.live { " (live)" } else { "" };
                let users = if g.in_use_by.is_empty() {
                    String::new()
                } else {
                    format!(", in use by pid {}", join(&g.in_use_by))
                };
                crate::outln!(
                    "  generation {}{live}: id {}, created {}, from {}{users}",
                    g.generation,
                    if g.id.is_empty() { "none" } else { &g.id },
                    utc(g.created),
                    gen_name(g.parent)
                );
            }
            match &s.pending {
                Some(p) if p.is_empty() => crate::outln!("  no drift: the tree matches the declaration"),
                Some(p) => {
                    crate::outln!("  {} change(s) pending:", p.len());
                    for c in p {
                        crate::outln!("    {c}");
                    }
                }
                None => {}
            }
        }
    }
    Ok(if all.iter().any(|s| s.error.is_some()) { 1 } else { 0 })
}

/// Broken entries as status records: a name and the error, nothing else known.
fn broken_statuses(decl: &Declaration) -> Vec<Status> {
    decl.broken
        .iter()
        .map(|(name, err)| Status {
            name: name.clone(),
            path: String::new(),
            managed: false,
            method: None,
            live: None,
            id: None,
            generations: Vec::new(),
            pending: None,
            error: Some(err.to_string()),
        })
        .collect()
}

/// Exit status 1 when an entry is broken: the Ansible role validates with it.
pub fn list(decl: &Declaration, opts: &Opts) -> Result<i32> {
    let mut all: Vec<Status> = decl.sysroots.iter().map(|d| status_of(d, opts, false)).collect();
    all.extend(broken_statuses(decl));
    if opts.json {
        crate::outln!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        for s in &all {
            match &s.error {
                Some(err) if s.path.is_empty() => crate::outln!("{}\tbroken\t{err}", s.name),
                _ => {
                    let method = s.method.as_deref().unwrap_or("unmanaged");
                    crate::outln!("{}\t{}\t{}\tgeneration {}", s.name, s.path, method, gen_name(s.live));
                }
            }
        }
    }
    Ok(if decl.broken.is_empty() { 0 } else { 1 })
}

/// A root shell in the live tree: package-manager mounts, service starts blocked,
/// the lock held so no apply copies the tree while it changes.
pub fn shell(decl: &Declaration, name: &str, cmd: &[String], opts: &Opts) -> Result<i32> {
    let d = decl.get(name)?;
    let linux32 = d.sysroot.personality == imageswitch::config::Personality::Linux32;
    // The lock first: the live generation is read while no apply or rollback can change it.
    let lock = match &d.build {
        Some(build) => Some(store_of(d, build).lock(opts.no_wait, opts.verbosity.quiet())?),
        None => None,
    };
    let tree = match &d.build {
        Some(build) => {
            let store = store_of(d, build);
            let live = store
                .live()?
                .with_context(|| format!("{name} has no published generation; run sysrootctl apply {name}"))?;
            store.tree(live)
        }
        None => d.sysroot.path.clone(),
    };
    let argv: Vec<String> = if cmd.is_empty() {
        let bash = crate::util::in_tree(&tree, Path::new("/bin/bash"), true)?;
        vec![if bash.exists() { "/bin/bash" } else { "/bin/sh" }.to_string(), "-l".to_string()]
    } else {
        cmd.to_vec()
    };
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let code = crate::runner::with_services_blocked(&tree, || crate::runner::interactive(&tree, linux32, &argv))?;
    drop(lock);
    Ok(code)
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(super::utc(1_795_421_972), "2026-11-23 08:19 UTC");
    }
}
