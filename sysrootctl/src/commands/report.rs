//! What a verb says about one sysroot: the record `--json` gives (schema in
//! sysrootctl(8), JSON OUTPUT) and the lines printed for it.
#![forbid(unsafe_code)]

use super::*;

/// The layout of `--json` records, documented in sysrootctl(8).
pub const SCHEMA: u32 = 1;

/// What happened (or would) to one sysroot.
#[derive(Debug, Serialize)]
pub struct Report {
    pub schema: u32,
    pub name: String,
    /// Live generation before (plan: now).
    pub generation: Option<u32>,
    /// Live generation after an apply or rollback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<u32>,
    /// The lines `plan` prints; `records` has them typed.
    pub changes: Vec<String>,
    pub records: Vec<Change>,
    pub notes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `plan --diff`: how files' contents would change.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diffs: Vec<reconcile::ContentDiff>,
    /// A sysroot no longer declared: what `retire` removes (or removed) and leaves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retire: Option<store::retire::Retirement>,
}

impl Default for Report {
    fn default() -> Report {
        Report {
            schema: SCHEMA,
            name: String::new(),
            generation: None,
            published: None,
            changes: Vec::new(),
            records: Vec::new(),
            notes: Vec::new(),
            error: None,
            diffs: Vec::new(),
            retire: None,
        }
    }
}

impl Report {
    pub fn add(&mut self, changes: impl IntoIterator<Item = Change>) {
        for change in changes {
            self.changes.push(change.text.clone());
            self.records.push(change);
        }
    }
}

pub(super) fn print_report(verb: &str, r: &Report, opts: &Opts) {
    if opts.json {
        return;
    }
    if let Some(err) = &r.error {
        eprintln!("sysrootctl: {}: {err}", r.name);
        return;
    }
    let quiet = opts.verbosity.quiet();
    match (verb, &r.retire) {
        ("plan", Some(retirement)) if retirement.refused.is_some() => crate::outln!(
            "{}: not declared any more; `sysrootctl retire {}` refuses: {}",
            r.name,
            r.name,
            retirement.refused.as_deref().unwrap_or_default()
        ),
        ("plan", Some(retirement)) => {
            crate::outln!("{}: not declared any more; `sysrootctl retire {}` would:", r.name, r.name);
            for line in store::retire::describe(retirement) {
                crate::outln!("  {line}");
            }
        }
        ("retire", Some(_)) => crate::outln!("{}: retired", r.name),
        ("retire", None) => crate::outln!("{}: nothing to retire", r.name),
        _ => print_outcome(verb, r, quiet),
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
    for d in &r.diffs {
        crate::output::write(d.diff.as_bytes());
    }
}

fn print_outcome(verb: &str, r: &Report, quiet: bool) {
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
}
