//! `rollback` and `gc`: publishing an older generation, removing old ones.
#![forbid(unsafe_code)]

use super::*;

pub fn rollback(decl: &Declaration, name: &str, to: Option<&str>, opts: &Opts) -> Result<i32> {
    let d = decl.get(name)?;
    let build = managed(d)?;
    let store = store_of(d, build);
    let _lock = store.lock(opts.no_wait, opts.verbosity.quiet())?;
    let live = store.live()?.with_context(|| format!("{name} has no published generation"))?;
    let generations = store.generations();
    let target = match to {
        Some(to) => number_or_id(&store, &generations, to)
            .with_context(|| format!("{name} has no generation {to} (have: {})", join(&generations)))?,
        None => *generations
            .iter()
            .rev()
            .find(|&&n| n < live)
            .with_context(|| format!("{name} has no generation older than {live}"))?,
    };
    store.publish(target)?;
    let c = ctx(d, build, &store.tree(target), true, opts, Record::default());
    let changes = reconcile::host_links(&c)?;
    let mut report =
        Report { name: name.to_string(), generation: Some(live), published: Some(target), ..Report::default() };
    report.add(changes.into_iter().map(reconcile::Change::on_host));
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

/// A generation named by its id (which a generation keeps on every machine
/// it is sent to, where its number may differ), or by its number here as
/// `list` shows it (digits, no sign, no leading zero).
fn number_or_id(store: &Store, generations: &[u32], to: &str) -> Option<u32> {
    if crate::transfer::valid_id(to) {
        return generations.iter().copied().find(|&n| store.record(n).is_ok_and(|r| r.id == to));
    }
    let n = generation_number(to)?;
    generations.contains(&n).then_some(n)
}

fn generation_number(word: &str) -> Option<u32> {
    let digits = word.bytes().all(|b| b.is_ascii_digit()) && !(word.len() > 1 && word.starts_with('0'));
    digits.then(|| word.parse().ok()).flatten()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generation_number_is_written_as_list_shows_it() {
        for (word, want) in [("1", Some(1)), ("42", Some(42)), ("0", Some(0)), ("01", None), ("+1", None), ("-1", None)]
        {
            assert_eq!(generation_number(word), want, "{word}");
        }
        for word in ["", " 1", "1e3", "4294967296", "00000000000000000000000000000001"] {
            assert_eq!(generation_number(word), None, "{word}");
        }
        assert!(crate::transfer::valid_id("00000000000000000000000000000001"));
    }
}
