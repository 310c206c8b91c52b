//! Retiring a sysroot that is no longer declared. What sysrootctl made for it
//! — the `path` link, alias and host `bin_dir` links, the launcher,
//! `STORE/NAME` with its generations, and its records beside it — is found
//! from the store (the declaration no longer says), and removed; nothing else.
//!
//! *observe* reads the store and the host paths it recorded; the pure *diff*
//! turns that into typed removals, leaving alone whatever sysrootctl did not
//! make or a declared sysroot uses now; *act* removes them in an order that a
//! re-run finishes however it was interrupted: host links first, then each
//! generation (renamed to `N.tmp` before it is deleted, as `gc` does), then
//! the rest of `STORE/NAME`, then the records, the host record last.
#![forbid(unsafe_code)]

mod act;
mod record;

pub use act::act;
use record::read_host;
pub use record::{HostRecord, aliases_path, host_record_path, remember};

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Store;
use crate::launcher::desktop_entry;
use crate::util;

/// What is at a path sysrootctl recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Missing,
    Link(PathBuf),
    /// A regular file and its text.
    File(String),
    /// A directory, or anything else.
    Other,
}

fn seen(path: &Path) -> Seen {
    match fs::symlink_metadata(path) {
        Err(_) => Seen::Missing,
        Ok(m) if m.file_type().is_symlink() => fs::read_link(path).map_or(Seen::Other, Seen::Link),
        Ok(m) if m.is_file() && m.len() < 65_536 => Seen::File(fs::read_to_string(path).unwrap_or_default()),
        Ok(_) => Seen::Other,
    }
}

/// One undeclared sysroot's leftovers in one store, as found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub name: String,
    /// `STORE/NAME`.
    pub dir: PathBuf,
    pub dir_exists: bool,
    /// What `STORE/NAME` is when it is there but not a directory (a symlink
    /// to a tree moved elsewhere, say): retire then touches nothing.
    pub dir_odd: Option<&'static str>,
    /// The declaration file the host record names.
    pub config: Option<PathBuf>,
    /// The imageswitch paths its links may point at: the recorded one and
    /// the configured one.
    pub imageswitch: Vec<PathBuf>,
    /// Recorded host paths a declared sysroot uses under another spelling
    /// (the same directory by device and inode), with that sysroot.
    pub shared: Vec<(PathBuf, String)>,
    /// Numbered trees in `STORE/NAME`, complete or not.
    pub generations: Vec<u32>,
    /// Whether `STORE/NAME.host.json` was there (sysrootctl before it kept
    /// one recorded neither `path` nor `bin_dir`).
    pub recorded: bool,
    pub path: Option<(PathBuf, Seen)>,
    pub aliases: Vec<(PathBuf, Seen)>,
    /// `bin_dir` (when it exists) and its entries.
    pub bin_dir: Option<(PathBuf, Vec<(PathBuf, Seen)>)>,
    pub launcher: Option<(PathBuf, Seen)>,
    /// Records beside `STORE/NAME` that exist.
    pub records: Vec<PathBuf>,
}

/// What the declaration still uses, with the sysroot using it: never removed.
#[derive(Debug, Clone, Default)]
pub struct InUse {
    /// The declaration file (`realpath`).
    pub file: PathBuf,
    pub names: Vec<String>,
    pub paths: Vec<(PathBuf, String)>,
    pub aliases: Vec<(PathBuf, String)>,
    pub bin_dirs: Vec<(PathBuf, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The configured `path`, a link into `STORE/NAME`.
    Link,
    Alias,
    BinLink,
    /// `bin_dir` itself, once empty.
    BinDir,
    Launcher,
    Generation,
    /// `STORE/NAME` and whatever else is in it (unfinished builds, transfers, the lock).
    Store,
    Record,
}

/// One thing `retire` removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Removal {
    pub kind: Kind,
    pub path: PathBuf,
}

/// One thing `retire` leaves, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kept {
    pub path: PathBuf,
    pub reason: String,
}

/// The diff: removals in the order `act` makes them, and what stays.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Retirement {
    pub name: String,
    pub store: PathBuf,
    pub remove: Vec<Removal>,
    pub kept: Vec<Kept>,
    /// Built by a sysrootctl that did not record its `path` and `bin_dir`:
    /// links there, if any, are the administrator's to remove.
    pub unrecorded: bool,
    /// The declaration file it was made under, when recorded.
    pub made_under: Option<PathBuf>,
    /// Why nothing is removed (made under another declaration file, or
    /// `STORE/NAME` is not a directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// Made under another declaration file: `plan` does not list it.
    #[serde(skip)]
    pub foreign: bool,
}

/// Names with leftovers in `store` that the declaration no longer has: a
/// `STORE/NAME` sysrootctl laid out (its lock or a generation record in it),
/// or records beside one.
pub fn undeclared(store: &Path, in_use: &InUse) -> Vec<String> {
    let Ok(entries) = fs::read_dir(store) else { return Vec::new() };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().into_string().ok()?;
            let is_dir = e.file_type().ok()?.is_dir();
            let name = if is_dir {
                let ours = e.path().join(".lock").exists()
                    || Store::new(store, &file, Path::new("")).numbered().into_iter().next().is_some();
                ours.then_some(file.clone())?
            } else {
                [".host.json", ".aliases", ".lock"].iter().find_map(|s| file.strip_suffix(s))?.to_string()
            };
            imageswitch::config::is_valid_name(&name).then_some(name)
        })
        .filter(|n| !in_use.names.contains(n))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Where a host path is, whatever its spelling: the device and inode of the
/// directory it names (`whole`) or of its parent, and its file name.
fn identity(path: &Path, whole: bool) -> Option<(u64, u64, OsString)> {
    let (dir, file) = if whole { (path, OsString::new()) } else { (path.parent()?, path.file_name()?.to_owned()) };
    let m = fs::metadata(dir).ok()?;
    Some((m.dev(), m.ino(), file))
}

/// The declared sysroot using `found` under another spelling, if any.
fn shared(found: &Path, declared: &[(PathBuf, String)], whole: bool) -> Option<(PathBuf, String)> {
    let id = identity(found, whole)?;
    let (_, name) = declared.iter().find(|(p, _)| identity(p, whole).as_ref() == Some(&id))?;
    Some((found.to_path_buf(), name.clone()))
}

pub fn observe(store: &Path, name: &str, fallback_launcher: &Path, exe: &Path, in_use: &InUse) -> Observed {
    let s = Store::new(store, name, Path::new(""));
    let mut generations: Vec<u32> = fs::read_dir(&s.dir)
        .map(|entries| entries.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    generations.sort_unstable();
    let host = read_host(store, name);
    let aliases: Vec<(PathBuf, Seen)> = fs::read_to_string(aliases_path(store, name))
        .unwrap_or_default()
        .lines()
        .map(|l| (PathBuf::from(l), seen(Path::new(l))))
        .collect();
    let bin_dir = host.as_ref().and_then(|h| h.bin_dir.clone()).and_then(|dir| {
        let mut entries: Vec<(PathBuf, Seen)> =
            fs::read_dir(&dir).ok()?.flatten().map(|e| (e.path(), seen(&e.path()))).collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Some((dir, entries))
    });
    let launcher = host.as_ref().map_or(fallback_launcher.to_path_buf(), |h| h.launcher.clone());
    let mut shared_places: Vec<(PathBuf, String)> = Vec::new();
    if let Some(h) = &host {
        shared_places.extend(shared(&h.path, &in_use.paths, false));
        shared_places.extend(h.bin_dir.as_ref().and_then(|b| shared(b, &in_use.bin_dirs, true)));
    }
    for (alias, _) in &aliases {
        shared_places.extend(shared(alias, &in_use.aliases, false));
    }
    let dir_meta = fs::symlink_metadata(&s.dir).ok();
    let dir_odd = dir_meta.as_ref().and_then(|m| match m.file_type() {
        t if t.is_symlink() => Some("a symlink"),
        t if !t.is_dir() => Some("not a directory"),
        _ => None,
    });
    let mut imageswitch: Vec<PathBuf> = host.as_ref().and_then(|h| h.imageswitch.clone()).into_iter().collect();
    imageswitch.push(exe.to_path_buf());
    let records = [aliases_path(store, name), s.old_lock_path(), host_record_path(store, name)]
        .into_iter()
        .flat_map(|p| [util::sibling(&p, ".sysrootctl-new"), p])
        .filter(|p| fs::symlink_metadata(p).is_ok())
        .collect();
    Observed {
        name: name.to_string(),
        dir_exists: dir_meta.is_some_and(|m| m.is_dir()),
        dir_odd,
        config: host.as_ref().and_then(|h| h.config.clone()),
        imageswitch,
        shared: shared_places,
        dir: s.dir,
        generations,
        recorded: host.is_some(),
        path: host.as_ref().map(|h| (h.path.clone(), seen(&h.path))),
        aliases,
        bin_dir,
        launcher: Some((launcher.clone(), seen(&launcher))),
        records,
    }
}

/// A link to the imageswitch sysrootctl recorded, or the configured one.
fn to_imageswitch(seen: &Seen, exes: &[PathBuf]) -> bool {
    matches!(seen, Seen::Link(target) if exes.contains(target))
}

/// The declared sysroot using `path`, by spelling or (found by `observe`) by identity.
fn user(list: &[(PathBuf, String)], shared: &[(PathBuf, String)], path: &Path) -> Option<String> {
    list.iter().chain(shared).find(|(p, _)| p == path).map(|(_, name)| format!("sysroot \"{name}\" uses it"))
}

/// A launcher exactly as sysrootctl writes it for `name`, with any imageswitch.
fn our_launcher(name: &str, text: &str) -> bool {
    let exe = text.lines().find_map(|l| l.strip_prefix("Exec=")?.strip_suffix(&format!(" {name}")));
    exe.is_some_and(|exe| desktop_entry(name, Path::new(exe)) == text)
}

/// Declared vs found: what `retire` removes and what it leaves. Pure.
pub fn diff(o: &Observed, in_use: &InUse) -> Retirement {
    let mut r = Retirement {
        name: o.name.clone(),
        store: o.dir.parent().unwrap_or(Path::new("/")).to_path_buf(),
        unrecorded: !o.recorded,
        made_under: o.config.clone(),
        ..Retirement::default()
    };
    if let Some(file) = o.config.as_ref().filter(|f| **f != in_use.file) {
        r.refused = Some(format!(
            "made under {}, not {}: retire it with --config {}",
            file.display(),
            in_use.file.display(),
            file.display()
        ));
        r.foreign = true;
        return r;
    }
    if let Some(odd) = o.dir_odd {
        r.refused = Some(format!(
            "{} is {odd}, which sysrootctl never makes: move the tree back or remove it yourself",
            o.dir.display()
        ));
        return r;
    }
    let user = |list: &[(PathBuf, String)], path: &Path| user(list, &o.shared, path);
    let to_imageswitch = |seen: &Seen| to_imageswitch(seen, &o.imageswitch);
    let mut decide = |kind: Kind, path: &Path, not_ours: Option<&str>, user: Option<String>| match user
        .or(not_ours.map(str::to_string))
    {
        Some(reason) => r.kept.push(Kept { path: path.to_path_buf(), reason }),
        None => r.remove.push(Removal { kind, path: path.to_path_buf() }),
    };
    if let Some((path, seen)) = &o.path {
        let not_ours = match seen {
            Seen::Missing => None,
            Seen::Link(target) if target.starts_with(&o.dir) => None,
            _ => Some("not a link into the store sysrootctl made"),
        };
        if *seen != Seen::Missing {
            decide(Kind::Link, path, not_ours, user(&in_use.paths, path));
        }
    }
    for (path, seen) in &o.aliases {
        if *seen != Seen::Missing {
            let not_ours = (!to_imageswitch(seen)).then_some("not a link to imageswitch");
            decide(Kind::Alias, path, not_ours, user(&in_use.aliases, path));
        }
    }
    if let Some((dir, entries)) = &o.bin_dir {
        match user(&in_use.bin_dirs, dir) {
            Some(reason) => decide(Kind::BinDir, dir, None, Some(reason)),
            None => {
                let mut all_ours = true;
                for (path, seen) in entries {
                    let ours = to_imageswitch(seen);
                    all_ours &= ours;
                    decide(Kind::BinLink, path, (!ours).then_some("not a link to imageswitch"), None);
                }
                // It only ever held this sysroot's links.
                if all_ours {
                    decide(Kind::BinDir, dir, None, None);
                }
            }
        }
    }
    if let Some((path, seen)) = &o.launcher {
        match seen {
            Seen::Missing => {}
            Seen::File(text) if our_launcher(&o.name, text) => decide(Kind::Launcher, path, None, None),
            _ => decide(Kind::Launcher, path, Some("not a launcher sysrootctl wrote for it"), None),
        }
    }
    for n in &o.generations {
        decide(Kind::Generation, &o.dir.join(n.to_string()), None, None);
    }
    if o.dir_exists {
        decide(Kind::Store, &o.dir, None, None);
    }
    for record in &o.records {
        decide(Kind::Record, record, None, None);
    }
    r
}

/// The removals, one line each (a `bin_dir`'s links as one line).
pub fn describe(r: &Retirement) -> Vec<String> {
    let mut lines = Vec::new();
    let bin_links = r.remove.iter().filter(|x| x.kind == Kind::BinLink).count();
    for x in &r.remove {
        let path = x.path.display();
        lines.push(match x.kind {
            Kind::Link => format!("remove link {path}"),
            Kind::Alias => format!("remove alias link {path}"),
            Kind::BinLink => {
                let dir = x.path.parent().unwrap_or(Path::new("/")).display().to_string();
                let line = format!("remove {bin_links} link(s) to imageswitch in {dir}");
                if lines.contains(&line) {
                    continue;
                }
                line
            }
            Kind::BinDir => format!("remove directory {path} (bin_dir, once empty)"),
            Kind::Launcher => format!("remove launcher {path}"),
            Kind::Generation => format!("remove generation {path}"),
            Kind::Store => format!("remove {path}"),
            Kind::Record => format!("remove record {path}"),
        });
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    fn link(t: &str) -> Seen {
        Seen::Link(p(t))
    }

    /// The case: `old` applied with an alias, a `bin_dir` and a
    /// launcher, then dropped from the file.
    fn dropped() -> Observed {
        Observed {
            name: "old".into(),
            dir: p("/s/old"),
            dir_exists: true,
            dir_odd: None,
            config: Some(p("/etc/sysroots.toml")),
            imageswitch: vec![p("/usr/local/sbin/imageswitch"), p("/usr/sbin/imageswitch")],
            shared: Vec::new(),
            generations: vec![1, 2],
            recorded: true,
            path: Some((p("/roots/old"), link("/s/old/2"))),
            aliases: vec![(p("/a/old"), link("/usr/sbin/imageswitch"))],
            bin_dir: Some((p("/bin7"), vec![(p("/bin7/sh"), link("/usr/local/sbin/imageswitch"))])),
            launcher: Some((
                p("/apps/sysroot-old.desktop"),
                Seen::File(desktop_entry("old", Path::new("/usr/sbin/imageswitch"))),
            )),
            records: vec![p("/s/old.aliases"), p("/s/old.host.json")],
        }
    }

    /// What the file that made it declares now (nothing of `old`'s).
    fn declared() -> InUse {
        InUse { file: p("/etc/sysroots.toml"), ..InUse::default() }
    }

    fn kinds(r: &Retirement) -> Vec<(Kind, &str)> {
        r.remove.iter().map(|x| (x.kind, x.path.to_str().unwrap())).collect()
    }

    #[test]
    fn only_what_sysrootctl_made_and_nobody_uses_is_removed() {
        use Kind::*;
        let everything = vec![
            (Link, "/roots/old"),
            (Alias, "/a/old"),
            (BinLink, "/bin7/sh"),
            (BinDir, "/bin7"),
            (Launcher, "/apps/sysroot-old.desktop"),
            (Generation, "/s/old/1"),
            (Generation, "/s/old/2"),
            (Store, "/s/old"),
            (Record, "/s/old.aliases"),
            (Record, "/s/old.host.json"),
        ];
        let store_only = |k: &(Kind, &str)| !matches!(k.0, Link | Alias | BinLink | BinDir | Launcher);
        type Row = (&'static str, fn(&mut Observed, &mut InUse), Vec<&'static str>);
        let rows: Vec<Row> = vec![
            ("the issue's case", |_, _| {}, vec![]),
            ("already gone", |o, _| o.path = Some((p("/roots/old"), Seen::Missing)), vec![]),
            ("path replaced by a directory", |o, _| o.path = Some((p("/roots/old"), Seen::Other)), vec!["/roots/old"]),
            ("path points elsewhere", |o, _| o.path = Some((p("/roots/old"), link("/s/new/1"))), vec!["/roots/old"]),
            ("path declared again", |_, u| u.paths.push((p("/roots/old"), "new".into())), vec!["/roots/old"]),
            ("alias now a script", |o, _| o.aliases[0].1 = Seen::File("#!/bin/sh\n".into()), vec!["/a/old"]),
            ("alias now another's", |_, u| u.aliases.push((p("/a/old"), "new".into())), vec!["/a/old"]),
            ("relative imageswitch", |o, _| o.aliases[0].1 = link("imageswitch"), vec!["/a/old"]),
            // A copy of /bin/true named imageswitch is not the imageswitch.
            ("another imageswitch", |o, _| o.aliases[0].1 = link("/tmp/x/imageswitch"), vec!["/a/old"]),
            // $S/bl -> $S: keep's bin_dir "$S/bl/bin7" is old's "$S/bin7".
            ("bin_dir another's by identity", |o, _| o.shared.push((p("/bin7"), "keep".into())), vec!["/bin7"]),
            ("path another's by identity", |o, _| o.shared.push((p("/roots/old"), "keep".into())), vec!["/roots/old"]),
            ("bin_dir now another's", |_, u| u.bin_dirs.push((p("/bin7"), "new".into())), vec!["/bin7"]),
            (
                "launcher edited",
                |o, _| o.launcher.as_mut().unwrap().1 = Seen::File("x".into()),
                vec!["/apps/sysroot-old.desktop"],
            ),
        ];
        for (case, change, kept) in rows {
            let (mut o, mut u) = (dropped(), declared());
            change(&mut o, &mut u);
            let r = diff(&o, &u);
            let got_kept: Vec<&str> = r.kept.iter().map(|k| k.path.to_str().unwrap()).collect();
            assert_eq!(got_kept, kept, "{case}");
            let want: Vec<(Kind, &str)> = everything
                .iter()
                .filter(|k| !(kept.contains(&k.1) || kept.contains(&"/bin7") && k.1.starts_with("/bin7")))
                .filter(|k| !(case == "already gone" && k.0 == Link))
                .cloned()
                .collect();
            assert_eq!(kinds(&r), want, "{case}");
            assert!(kinds(&r).iter().filter(|k| store_only(k)).count() == 5, "{case}: the store always goes");
        }
    }

    #[test]
    fn a_store_from_before_the_host_record_loses_what_it_can_name() {
        let mut o = dropped();
        o.recorded = false;
        o.path = None;
        o.bin_dir = None;
        o.records.pop();
        o.config = None;
        let r = diff(&o, &declared());
        assert!(r.kept.is_empty() && r.unrecorded && r.made_under.is_none() && r.refused.is_none());
        assert_eq!(kinds(&r)[..2], [(Kind::Alias, "/a/old"), (Kind::Launcher, "/apps/sysroot-old.desktop")]);
        let mut foreign = dropped();
        foreign.bin_dir.as_mut().unwrap().1.push((p("/bin7/own"), Seen::File("x".into())));
        let r = diff(&foreign, &declared());
        assert!(!kinds(&r).contains(&(Kind::BinDir, "/bin7")), "a bin_dir with a file of someone else's stays");
        assert_eq!(r.kept, [Kept { path: p("/bin7/own"), reason: "not a link to imageswitch".into() }]);
    }

    #[test]
    fn removals_read_one_line_each() {
        let mut o = dropped();
        o.bin_dir.as_mut().unwrap().1.push((p("/bin7/ls"), link("/usr/sbin/imageswitch")));
        assert_eq!(
            describe(&diff(&o, &declared())),
            [
                "remove link /roots/old",
                "remove alias link /a/old",
                "remove 2 link(s) to imageswitch in /bin7",
                "remove directory /bin7 (bin_dir, once empty)",
                "remove launcher /apps/sysroot-old.desktop",
                "remove generation /s/old/1",
                "remove generation /s/old/2",
                "remove /s/old",
                "remove record /s/old.aliases",
                "remove record /s/old.host.json",
            ]
        );
    }

    #[test]
    fn leftovers_another_declaration_file_made_or_an_odd_store_are_never_touched() {
        type Row = (&'static str, fn(&mut Observed), &'static str);
        let rows: Vec<Row> = vec![
            // The review's case: `retire rv13victim` under config A removed config B's sysroot.
            (
                "made under another file",
                |o| o.config = Some(p("/etc/sysroots-b.toml")),
                "made under /etc/sysroots-b.toml, not /etc/sysroots.toml: retire it with --config /etc/sysroots-b.toml",
            ),
            (
                "STORE/NAME a symlink",
                |o| o.dir_odd = Some("a symlink"),
                "/s/old is a symlink, which sysrootctl never makes: move the tree back or remove it yourself",
            ),
            (
                "STORE/NAME a file",
                |o| o.dir_odd = Some("not a directory"),
                "/s/old is not a directory, which sysrootctl never makes: move the tree back or remove it yourself",
            ),
        ];
        for (case, change, why) in rows {
            let mut o = dropped();
            change(&mut o);
            let r = diff(&o, &declared());
            assert_eq!(r.refused.as_deref(), Some(why), "{case}");
            assert!(r.remove.is_empty(), "{case}: nothing is removed");
            assert_eq!(r.foreign, case == "made under another file", "{case}");
            assert!(act(&r).unwrap_err().to_string() == why, "{case}: act refuses too");
        }
    }

    #[test]
    fn host_paths_in_use_are_told_by_identity_not_spelling() {
        let dir = std::env::temp_dir().join(format!("sysrootctl-identity-{}", std::process::id()));
        fs::create_dir_all(dir.join("bin7")).unwrap();
        std::os::unix::fs::symlink(&dir, dir.join("bl")).unwrap();
        let keep = vec![(dir.join("bl/bin7"), "keep".to_string())];
        assert_eq!(shared(&dir.join("bin7"), &keep, true), Some((dir.join("bin7"), "keep".to_string())));
        let link = vec![(dir.join("bl/x"), "keep".to_string())];
        assert_eq!(shared(&dir.join("x"), &link, false), Some((dir.join("x"), "keep".to_string())));
        assert_eq!(shared(&dir.join("y"), &link, false), None, "another name in the same directory");
        assert_eq!(shared(&dir.join("bin7"), &[(dir.clone(), "keep".to_string())], true), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
