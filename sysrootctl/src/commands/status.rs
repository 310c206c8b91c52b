//! `status` and `list`: what each sysroot is, its generations and its drift.
#![forbid(unsafe_code)]

use super::*;

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

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_795_421_972), "2026-11-23 08:19 UTC");
    }
}
