//! Overlay files copied into the tree: `skeleton` before packages (an apt
//! source or proxy the install needs), `files` after. *observe* walks the
//! sources on the host (the declared side) and looks at each destination in
//! the tree; the pure *diff* tells drift in the tree from an overlay change by
//! the fingerprints recorded when sysrootctl wrote them; *act* writes.
#![forbid(unsafe_code)]

use super::*;
use crate::decl::Overlay;

/// What a file (content and mode) or a link (target) was, to tell drift in the
/// tree from a change in the overlay. FNV-1a: stable, and no need to resist
/// forgery (both sides are root's).
fn fingerprint(path: &Path, mode: Option<u32>) -> String {
    let meta = fs::symlink_metadata(path).ok();
    let bytes = match &meta {
        Some(m) if m.file_type().is_symlink() => {
            fs::read_link(path).map(|t| t.into_os_string().into_encoded_bytes()).unwrap_or_default()
        }
        Some(_) => fs::read(path).unwrap_or_default(),
        None => return String::new(),
    };
    let mode = match &meta {
        Some(m) if m.file_type().is_symlink() => 0,
        Some(m) => mode.unwrap_or(m.mode() & 0o7777),
        None => 0,
    };
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes.iter().chain(mode.to_le_bytes().iter()) {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The source's mode without group/other write: imageswitch refuses trees with
/// writable critical entries, and nothing in a tree should be writable by users.
fn overlay_mode(meta: &fs::Metadata) -> u32 {
    meta.mode() & 0o7755
}

/// What an overlay entry on the host asks for at `dst` in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Want {
    Dir {
        mode: u32,
    },
    /// A file (content and mode) or a link (target), by fingerprint.
    Entry {
        sum: String,
        link: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Source {
    pub src: PathBuf,
    pub dst: PathBuf,
    pub want: Want,
}

/// What is at `dst` in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seen {
    Missing,
    Dir,
    /// A file or a link, by fingerprint; `root`: owned by root.
    Entry {
        sum: String,
        link: bool,
        root: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Why {
    New,
    OverlayChanged,
    Drifted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Change {
    CreateDir { dst: PathBuf, mode: u32 },
    Write { src: PathBuf, dst: PathBuf, why: Why },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::CreateDir { dst, .. } => write!(f, "create directory {}", dst.display()),
            Change::Write { dst, why: Why::New, .. } => write!(f, "write {}", dst.display()),
            Change::Write { dst, why: Why::OverlayChanged, .. } => {
                write!(f, "update {} (the overlay changed)", dst.display())
            }
            Change::Write { dst, why: Why::Drifted, .. } => {
                write!(f, "restore {} (changed in the tree)", dst.display())
            }
        }
    }
}

/// Every entry of the overlays, in the order they are laid down.
pub(super) fn walk(overlays: &[Overlay]) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    for overlay in overlays {
        let meta =
            fs::symlink_metadata(&overlay.src).with_context(|| format!("overlay source {}", overlay.src.display()))?;
        let mut stack = vec![(overlay.src.clone(), overlay.dst.clone(), meta)];
        while let Some((src, dst, meta)) = stack.pop() {
            if meta.is_dir() {
                let mut entries: Vec<_> = fs::read_dir(&src)?.flatten().collect();
                entries.sort_by_key(|e| std::cmp::Reverse(e.file_name()));
                for e in entries {
                    stack.push((e.path(), dst.join(e.file_name()), e.metadata()?));
                }
                out.push(Source { src, dst, want: Want::Dir { mode: overlay_mode(&meta) } });
                continue;
            }
            let want =
                Want::Entry { sum: fingerprint(&src, Some(overlay_mode(&meta))), link: meta.file_type().is_symlink() };
            out.push(Source { src, dst, want });
        }
    }
    Ok(out)
}

pub(super) fn observe(tree: &Path, sources: Vec<Source>) -> Result<Vec<(Source, Seen)>> {
    sources
        .into_iter()
        .map(|s| {
            let target = in_tree(tree, &s.dst, false)?;
            let meta = fs::symlink_metadata(&target).ok();
            let seen = match (&s.want, meta) {
                // A link to a directory (`/bin -> usr/bin`) is one.
                (Want::Dir { .. }, m)
                    if m.as_ref().is_some_and(|m| m.is_dir()) || in_tree(tree, &s.dst, true)?.is_dir() =>
                {
                    Seen::Dir
                }
                (_, None) => Seen::Missing,
                (_, Some(m)) if m.is_dir() => Seen::Dir,
                (_, Some(m)) => Seen::Entry {
                    sum: fingerprint(&target, None),
                    link: m.file_type().is_symlink(),
                    root: m.uid() == 0,
                },
            };
            Ok((s, seen))
        })
        .collect()
}

/// Declared vs found; `prev`: the fingerprints of what sysrootctl wrote
/// before, by destination. Pure.
pub(super) fn diff(observed: &[(Source, Seen)], prev: &BTreeMap<String, String>) -> Vec<Change> {
    let mut changes = Vec::new();
    for (s, seen) in observed {
        match (&s.want, seen) {
            (Want::Dir { .. }, Seen::Dir) => {}
            (Want::Dir { mode }, _) => changes.push(Change::CreateDir { dst: s.dst.clone(), mode: *mode }),
            (Want::Entry { sum, link }, Seen::Entry { sum: have, link: is_link, root })
                if sum == have && link == is_link && (*link || *root) => {}
            (Want::Entry { .. }, seen) => {
                let have = match seen {
                    Seen::Entry { sum, .. } => sum.as_str(),
                    _ => "",
                };
                let why = match prev.get(&s.dst.display().to_string()) {
                    None => Why::New,
                    Some(sum) if sum == have => Why::OverlayChanged,
                    Some(_) => Why::Drifted,
                };
                changes.push(Change::Write { src: s.src.clone(), dst: s.dst.clone(), why });
            }
        }
    }
    changes
}

pub(super) fn act(tree: &Path, changes: &[Change]) -> Result<()> {
    for change in changes {
        match change {
            Change::CreateDir { dst, mode } => {
                fs::DirBuilder::new().recursive(true).mode(*mode).create(in_tree(tree, dst, false)?)?;
            }
            Change::Write { src, dst, .. } => {
                let target = in_tree(tree, dst, false)?;
                if let Some(parent) = target.parent() {
                    fs::DirBuilder::new().recursive(true).mode(0o755).create(parent)?;
                }
                if fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
                    bail!("overlay {}: {} is a directory in the tree", src.display(), dst.display());
                }
                let meta = fs::symlink_metadata(src)?;
                if meta.file_type().is_symlink() {
                    util::symlink_atomic(&fs::read_link(src)?, &target)?;
                } else {
                    util::write_atomic(&target, &fs::read(src)?, overlay_mode(&meta))?;
                    chown(&target, Some(0), Some(0))?;
                    fs::set_permissions(&target, fs::Permissions::from_mode(overlay_mode(&meta)))?;
                }
            }
        }
    }
    Ok(())
}

/// How `dst` in the tree would change (`plan --diff`); links by their target.
fn content(tree: &Path, src: &Path, dst: &Path) -> Result<ContentDiff> {
    let target = in_tree(tree, dst, false)?;
    let is_link = |p: &Path| fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink());
    if is_link(src) || is_link(&target) {
        let shown =
            |p: &Path| fs::read_link(p).map_or("not a link".to_string(), |t| format!("a link to {}", t.display()));
        let diff = format!("{}: {} (in the tree: {})\n", dst.display(), shown(src), shown(&target));
        return Ok(ContentDiff { path: dst.display().to_string(), diff });
    }
    let inner = dst.display().to_string();
    match hidden(&inner, &[src, &target]) {
        Some(hidden) => Ok(hidden),
        None => unified(&inner, &target, &fs::read(src)?),
    }
}

/// One overlay step: the files it manages are recorded with their
/// fingerprints; entries at a destination in `skip` are left to a later step.
fn step(ctx: &mut Ctx<'_>, overlays: &[Overlay], skip: &[PathBuf]) -> Result<Vec<super::Change>> {
    let sources: Vec<Source> = walk(overlays)?
        .into_iter()
        .filter(|s| !(matches!(s.want, Want::Entry { .. }) && skip.contains(&s.dst)))
        .collect();
    for s in &sources {
        if let Want::Entry { sum, .. } = &s.want {
            ctx.record.files.push(s.dst.display().to_string());
            ctx.record.file_sums.insert(s.dst.display().to_string(), sum.clone());
        }
    }
    let changes = diff(&observe(&ctx.tree, sources)?, &ctx.prev.file_sums);
    if let Some(diffs) = ctx.diffs.as_mut() {
        for change in &changes {
            if let Change::Write { src, dst, .. } = change {
                diffs.push(content(&ctx.tree, src, dst)?);
            }
        }
    }
    if ctx.apply {
        act(&ctx.tree, &changes)?;
    }
    Ok(changes.iter().map(typed).collect())
}

fn typed(change: &Change) -> super::Change {
    let text = change.to_string();
    match change {
        Change::CreateDir { dst, .. } => super::Change::new("create_directory", text).path(dst),
        Change::Write { dst, why, .. } => super::Change::new("write_file", text).path(dst).reason(match why {
            Why::New => "new",
            Why::OverlayChanged => "overlay_changed",
            Why::Drifted => "changed_in_the_tree",
        }),
    }
}

/// Before packages. A file `files` also lays down is the `files` one.
pub(super) fn skeleton(ctx: &mut Ctx<'_>) -> Result<Vec<super::Change>> {
    let later: Vec<PathBuf> = walk(&ctx.build.files)?.into_iter().map(|s| s.dst).collect();
    let skeleton = ctx.build.skeleton.clone();
    step(ctx, &skeleton, &later)
}

/// After packages, services and accounts.
pub(super) fn overlays(ctx: &mut Ctx<'_>) -> Result<Vec<super::Change>> {
    let files = ctx.build.files.clone();
    step(ctx, &files, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dst: &str, sum: &str) -> Source {
        Source {
            src: PathBuf::from("/o").join(&dst[1..]),
            dst: dst.into(),
            want: Want::Entry { sum: sum.into(), link: false },
        }
    }

    fn seen(sum: &str, root: bool) -> Seen {
        Seen::Entry { sum: sum.into(), link: false, root }
    }

    #[test]
    fn drift_is_told_from_an_overlay_change() {
        let prev: BTreeMap<String, String> = [("/etc/motd".to_string(), "a".to_string())].into();
        let dir = Source { src: "/o/etc".into(), dst: "/etc".into(), want: Want::Dir { mode: 0o755 } };
        let link = Source { src: "/o/l".into(), dst: "/l".into(), want: Want::Entry { sum: "t".into(), link: true } };
        type Row = (Vec<(Source, Seen)>, Vec<&'static str>);
        let rows: Vec<Row> = vec![
            (vec![], vec![]),
            (vec![(dir.clone(), Seen::Dir)], vec![]),
            (vec![(dir.clone(), Seen::Missing)], vec!["create directory /etc"]),
            (vec![(entry("/etc/new", "x"), Seen::Missing)], vec!["write /etc/new"]),
            (vec![(entry("/etc/motd", "a"), seen("a", true))], vec![]),
            (vec![(entry("/etc/motd", "a"), seen("a", false))], vec!["update /etc/motd (the overlay changed)"]),
            (vec![(entry("/etc/motd", "b"), seen("a", true))], vec!["update /etc/motd (the overlay changed)"]),
            (vec![(entry("/etc/motd", "a"), seen("z", true))], vec!["restore /etc/motd (changed in the tree)"]),
            (vec![(entry("/etc/motd", "a"), Seen::Missing)], vec!["restore /etc/motd (changed in the tree)"]),
            (vec![(entry("/etc/motd", "a"), Seen::Dir)], vec!["restore /etc/motd (changed in the tree)"]),
            (vec![(link.clone(), Seen::Entry { sum: "t".into(), link: true, root: false })], vec![]),
            (vec![(link, Seen::Entry { sum: "t".into(), link: false, root: true })], vec!["write /l"]),
        ];
        for (observed, want) in rows {
            let got: Vec<String> = diff(&observed, &prev).iter().map(ToString::to_string).collect();
            assert_eq!(got, want, "{observed:?}");
        }
    }
}
