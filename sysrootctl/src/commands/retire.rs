//! `retire NAME`, and the leftovers `plan` reports: what sysrootctl made for
//! sysroots the declaration no longer has (the store decides; see
//! `store::retire`).
#![forbid(unsafe_code)]

use super::*;
use crate::store::retire::{self, InUse, Retirement};

/// The stores to look in: every one an entry of the file names (the default
/// store only when an entry uses it), never another file's.
fn stores(decl: &Declaration) -> Vec<PathBuf> {
    let mut stores = Vec::new();
    for build in decl.sysroots.iter().filter_map(|d| d.build.as_ref()) {
        if !stores.contains(&build.store) {
            stores.push(build.store.clone());
        }
    }
    stores
}

/// Every name the file has (broken entries too: one that cannot be
/// evaluated is not retired), and the host paths its sysroots use.
fn in_use(decl: &Declaration, opts: &Opts) -> InUse {
    let mut u = InUse { file: opts.host.config.clone(), ..InUse::default() };
    for s in &decl.config.sysroots {
        u.names.push(s.name.clone());
        u.paths.push((s.path.clone(), s.name.clone()));
        u.aliases.extend(s.aliases.iter().map(|a| (opts.host.alias_dir.join(a), s.name.clone())));
        u.bin_dirs.extend(s.bin_dir.iter().map(|b| (b.clone(), s.name.clone())));
    }
    u.names.extend(decl.broken.iter().map(|(name, _)| name.clone()));
    u
}

fn launcher(name: &str, opts: &Opts) -> PathBuf {
    opts.host.applications_dir.join(format!("sysroot-{name}.desktop"))
}

/// `plan` without names: one report per undeclared sysroot with leftovers.
pub(super) fn leftovers(decl: &Declaration, opts: &Opts) -> Vec<Report> {
    let u = in_use(decl, opts);
    let mut reports = Vec::new();
    for store in stores(decl) {
        for name in retire::undeclared(&store, &u) {
            let r = retire::diff(&observe(&store, &name, &u, opts), &u);
            if r.foreign {
                continue;
            }
            reports.push(Report { name: name.clone(), notes: kept_notes(&r), retire: Some(r), ..Report::default() });
        }
    }
    reports
}

fn observe(store: &Path, name: &str, u: &InUse, opts: &Opts) -> retire::Observed {
    retire::observe(store, name, &launcher(name, opts), &opts.host.imageswitch, u)
}

fn kept_notes(r: &Retirement) -> Vec<String> {
    let mut notes: Vec<String> =
        r.kept.iter().map(|k| format!("left alone: {}: {}", k.path.display(), k.reason)).collect();
    if r.unrecorded {
        notes.push(format!(
            "an older sysrootctl built it and kept no record of its path and bin_dir: links there into {} are yours to remove",
            r.store.join(&r.name).display()
        ));
    }
    if r.made_under.is_none() {
        notes.push(format!(
            "no record of the declaration file it was made under (an older sysrootctl): retire it only if {} declared it",
            r.store.display()
        ));
    }
    notes
}

fn retire_one(decl: &Declaration, name: &str, opts: &Opts) -> Result<Vec<Report>> {
    if !imageswitch::config::is_valid_name(name) {
        bail!("not a valid sysroot name");
    }
    if decl.config.sysroots.iter().any(|s| s.name == name) || decl.broken.iter().any(|(n, _)| n == name) {
        bail!(
            "still declared in {}: remove its entry first (retire removes only what no entry declares)",
            decl.file.display()
        );
    }
    let u = in_use(decl, opts);
    let mut reports = Vec::new();
    for store in stores(decl) {
        if !retire::undeclared(&store, &u).iter().any(|n| n == name) {
            continue;
        }
        // Refused before the lock, which would be made inside STORE/NAME.
        let r = retire::diff(&observe(&store, name, &u, opts), &u);
        if let Some(why) = &r.refused {
            bail!("{why}");
        }
        let _lock = Store::new(&store, name, Path::new("")).lock(opts.no_wait, opts.verbosity.quiet())?;
        let r = retire::diff(&observe(&store, name, &u, opts), &u);
        retire::act(&r).with_context(|| format!("retiring it from {}", store.display()))?;
        let mut report = Report { name: name.to_string(), notes: kept_notes(&r), ..Report::default() };
        report.changes = retire::describe(&r).into_iter().map(|l| l.replacen("remove", "removed", 1)).collect();
        report.records = r.remove.iter().map(record).collect();
        report.retire = Some(r);
        reports.push(report);
    }
    if reports.is_empty() {
        let notes = vec![format!("nothing sysrootctl made for it is left in {}", join_paths(&stores(decl)))];
        reports.push(Report { name: name.to_string(), notes, ..Report::default() });
    }
    Ok(reports)
}

/// One removal as a typed record: its path, and whether it is on the host.
fn record(x: &retire::Removal) -> Change {
    use retire::Kind;
    let change = Change::new("retire", format!("removed {}", x.path.display())).path(&x.path);
    match x.kind {
        Kind::Link | Kind::Alias | Kind::BinLink | Kind::BinDir | Kind::Launcher => change.on_host(),
        Kind::Generation | Kind::Store | Kind::Record => change,
    }
}

fn join_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" ")
}

/// Exit status 0 when every name is retired (or nothing was left), 1 on an error.
pub fn retire(decl: &Declaration, names: &[String], opts: &Opts) -> Result<i32> {
    let mut all = Vec::new();
    for name in names {
        let reports = retire_one(decl, name, opts).unwrap_or_else(|err| {
            vec![Report { name: name.clone(), error: Some(format!("{err:#}")), ..Report::default() }]
        });
        for r in reports {
            print_report("retire", &r, opts);
            all.push(r);
        }
    }
    if opts.json {
        crate::outln!("{}", serde_json::to_string_pretty(&all)?);
    }
    Ok(if all.iter().any(|r| r.error.is_some()) { 1 } else { 0 })
}
