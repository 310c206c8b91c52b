//! Links: `BIN_DIR` inside the tree, aliases, host `bin_dir` and the launcher.
#![forbid(unsafe_code)]

use super::*;
use crate::store::retire::{self, HostRecord};

/// A directory of links as found: whether it exists, and what is at each
/// name looked at (a link's target, or `None` for anything else).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Observed {
    pub exists: bool,
    pub entries: BTreeMap<String, Option<PathBuf>>,
}

/// Reads the entries at `names`, and with `sweep` every entry of `dir`.
pub(super) fn observe(dir: &Path, names: &[String], sweep: bool) -> Observed {
    let seen = |name: &str| {
        let path = dir.join(name);
        let meta = fs::symlink_metadata(&path).ok()?;
        Some(if meta.file_type().is_symlink() { fs::read_link(&path).ok() } else { None })
    };
    let mut wanted: Vec<String> = names.to_vec();
    if sweep {
        wanted
            .extend(fs::read_dir(dir).into_iter().flatten().flatten().filter_map(|e| e.file_name().into_string().ok()));
    }
    let entries = wanted.iter().filter_map(|n| Some((n.clone(), seen(n)?))).collect();
    Observed { exists: dir.is_dir(), entries }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Change {
    CreateDir,
    Link { name: String, target: PathBuf },
    RemoveStale { name: String },
}

/// `dir` holds one link per name, pointing where `target(name)` says; a file
/// in the way that is not one of `ours` is an error (its name); with `sweep` (a
/// directory only this sysroot uses), other links of ours are stale. Pure.
pub(super) fn diff(
    o: &Observed,
    names: &[String],
    target: &dyn Fn(&str) -> PathBuf,
    ours: &dyn Fn(&Path) -> bool,
    sweep: bool,
) -> Result<Vec<Change>, String> {
    let mut changes = Vec::new();
    if !o.exists {
        changes.push(Change::CreateDir);
    }
    for name in names {
        let want = target(name);
        match o.entries.get(name) {
            Some(Some(have)) if *have == want => continue,
            Some(Some(have)) if ours(have) => {}
            Some(_) => return Err(name.clone()),
            None => {}
        }
        changes.push(Change::Link { name: name.clone(), target: want });
    }
    if sweep {
        for (name, seen) in &o.entries {
            if !names.contains(name) && seen.as_deref().is_some_and(ours) {
                changes.push(Change::RemoveStale { name: name.clone() });
            }
        }
    }
    Ok(changes)
}

/// How `plan` shows them: one line per kind.
pub(super) fn describe(changes: &[Change], dir: &Path, shown: &str) -> Vec<super::Change> {
    let mut lines = Vec::new();
    if changes.contains(&Change::CreateDir) {
        lines.push(super::Change::new("create_directory", format!("create {shown}")).path(dir));
    }
    let added = changes.iter().filter(|c| matches!(c, Change::Link { .. })).count();
    if added > 0 {
        let text = format!("link {added} entr{} in {shown}", if added == 1 { "y" } else { "ies" });
        lines.push(super::Change::new("link", text).path(dir));
    }
    let stale: Vec<String> = changes
        .iter()
        .filter_map(|c| match c {
            Change::RemoveStale { name } => Some(name.clone()),
            _ => None,
        })
        .collect();
    if !stale.is_empty() {
        let text = format!("remove stale links in {shown}: {}", stale.join(" "));
        lines.push(super::Change::new("remove_link", text).path(dir).names(&stale).reason("stale"));
    }
    lines
}

pub(super) fn act(dir: &Path, changes: &[Change]) -> Result<()> {
    for change in changes {
        match change {
            Change::CreateDir => fs::DirBuilder::new().recursive(true).mode(0o755).create(dir)?,
            Change::Link { name, target } => util::symlink_atomic(target, &dir.join(name))?,
            Change::RemoveStale { name } => fs::remove_file(dir.join(name))?,
        }
    }
    Ok(())
}

fn sync_links(
    dir: &Path,
    shown: &str,
    names: &[String],
    target: &dyn Fn(&str) -> PathBuf,
    ours: &dyn Fn(&Path) -> bool,
    sweep: bool,
    apply: bool,
) -> Result<Vec<super::Change>> {
    let changes = diff(&observe(dir, names, sweep), names, target, ours, sweep).map_err(|name| {
        anyhow::anyhow!(
            "refusing to replace {}: it is not a link sysrootctl made (want a link to {})",
            dir.join(&name).display(),
            target(&name).display()
        )
    })?;
    if apply {
        act(dir, &changes)?;
    }
    Ok(describe(&changes, dir, shown))
}

/// Inside the tree: `BIN_DIR/NAME -> /bin/NAME`, so `#!/bin5/sh` works there too.
pub fn tree_links(ctx: &mut Ctx<'_>) -> Result<Vec<super::Change>> {
    let Some(bin_dir) = ctx.decl.sysroot.bin_dir.clone() else { return Ok(Vec::new()) };
    let names = util::tree_bin_names(&ctx.tree)?;
    let dir = in_tree(&ctx.tree, &bin_dir, true)?;
    let shown = format!("{} (in the tree)", bin_dir.display());
    sync_links(&dir, &shown, &names, &|n| Path::new("/bin").join(n), &|t| t.starts_with("/bin/"), true, ctx.apply)
}

/// Whether a host link is one sysrootctl made: it points at imageswitch, here
/// or where it was installed before (moved from `/usr/local/sbin` to the
/// package's `/usr/sbin`, say), so such links are re-pointed, never refused.
pub fn points_at_imageswitch(target: &Path, exe: &Path) -> bool {
    target == exe || (target.is_absolute() && target.file_name() == Some(std::ffi::OsStr::new("imageswitch")))
}

/// On the host: aliases and `BIN_DIR/NAME` -> imageswitch, and the launcher.
pub fn host_links(ctx: &Ctx<'_>) -> Result<Vec<super::Change>> {
    let sysroot = &ctx.decl.sysroot;
    let exe = ctx.host.imageswitch.clone();
    let is_exe = |t: &Path| points_at_imageswitch(t, &exe);
    let mut changes = Vec::new();
    if !sysroot.aliases.is_empty() {
        let shown = ctx.host.alias_dir.display().to_string();
        // Shared by every sysroot: dropped aliases go by their record (stale_aliases).
        changes.extend(sync_links(
            &ctx.host.alias_dir,
            &shown,
            &sysroot.aliases,
            &|_| exe.clone(),
            &is_exe,
            false,
            ctx.apply,
        )?);
    }
    if let Some(bin_dir) = &sysroot.bin_dir {
        let names = util::tree_bin_names(&ctx.tree)?;
        let shown = format!("{} (on the host)", bin_dir.display());
        changes.extend(sync_links(bin_dir, &shown, &names, &|_| exe.clone(), &is_exe, true, ctx.apply)?);
    }
    changes.extend(stale_aliases(ctx)?);
    let desktop = ctx.host.applications_dir.join(format!("sysroot-{}.desktop", sysroot.name));
    if ctx.apply {
        // What `retire` finds once the declaration no longer names them.
        let made = HostRecord {
            path: sysroot.path.clone(),
            bin_dir: sysroot.bin_dir.clone(),
            launcher: desktop.clone(),
            config: Some(ctx.host.config.clone()),
            imageswitch: Some(exe.clone()),
        };
        retire::remember(&ctx.build.store, &sysroot.name, &made)?;
    }
    let text = crate::launcher::desktop_entry(&sysroot.name, &exe);
    if fs::read_to_string(&desktop).ok().as_deref() != Some(text.as_str()) {
        let line = format!("write launcher {}", desktop.display());
        changes.push(super::Change::new("write_file", line).path(&desktop).reason("launcher"));
        if ctx.apply {
            fs::DirBuilder::new().recursive(true).mode(0o755).create(&ctx.host.applications_dir)?;
            util::write_atomic(&desktop, text.as_bytes(), 0o644)?;
        }
    }
    Ok(changes)
}

/// Alias links made for names no longer declared: the links made are listed in
/// `STORE/NAME.aliases` (one path a line), so a dropped alias is removed when it
/// still points at imageswitch, and nothing else ever is.
fn stale_aliases(ctx: &Ctx<'_>) -> Result<Vec<super::Change>> {
    let sysroot = &ctx.decl.sysroot;
    let list = retire::aliases_path(&ctx.build.store, &sysroot.name);
    let current: Vec<PathBuf> = sysroot.aliases.iter().map(|a| ctx.host.alias_dir.join(a)).collect();
    let previous: Vec<PathBuf> = fs::read_to_string(&list).unwrap_or_default().lines().map(PathBuf::from).collect();
    let mut changes = Vec::new();
    for old in previous.iter().filter(|p| !current.contains(p)) {
        if fs::read_link(old).is_ok_and(|t| points_at_imageswitch(&t, &ctx.host.imageswitch)) {
            let text = format!("remove alias link {} (no longer declared)", old.display());
            changes.push(super::Change::new("remove_link", text).path(old).reason("no_longer_declared"));
            if ctx.apply {
                fs::remove_file(old)?;
            }
        }
    }
    if ctx.apply && previous != current {
        let text: String = current.iter().map(|p| format!("{}\n", p.display())).collect();
        fs::DirBuilder::new().recursive(true).mode(0o755).create(&ctx.build.store)?;
        util::write_atomic(&list, text.as_bytes(), 0o644)?;
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_made_repointed_and_swept_never_over_a_foreign_file() {
        let exe = PathBuf::from("/usr/sbin/imageswitch");
        let target = |_: &str| exe.clone();
        let ours = |t: &Path| points_at_imageswitch(t, Path::new("/usr/sbin/imageswitch"));
        let names: Vec<String> = vec!["sh".into(), "ls".into()];
        let found = |entries: &[(&str, Option<&str>)]| Observed {
            exists: true,
            entries: entries.iter().map(|(n, t)| (n.to_string(), t.map(PathBuf::from))).collect(),
        };
        type Row = (Observed, bool, Result<Vec<&'static str>, &'static str>);
        let rows: Vec<Row> = vec![
            (Observed::default(), true, Ok(vec!["create D", "link 2 entries in D"])),
            (found(&[("sh", Some("/usr/sbin/imageswitch")), ("ls", Some("/usr/sbin/imageswitch"))]), true, Ok(vec![])),
            (found(&[("sh", Some("/usr/local/sbin/imageswitch"))]), true, Ok(vec!["link 2 entries in D"])),
            (
                found(&[
                    ("sh", Some("/usr/sbin/imageswitch")),
                    ("ls", Some("/usr/sbin/imageswitch")),
                    ("vi", Some("/usr/sbin/imageswitch")),
                    ("own", Some("/opt/own")),
                ]),
                true,
                Ok(vec!["remove stale links in D: vi"]),
            ),
            (
                found(&[
                    ("sh", Some("/usr/sbin/imageswitch")),
                    ("ls", Some("/usr/sbin/imageswitch")),
                    ("vi", Some("/usr/sbin/imageswitch")),
                ]),
                false,
                Ok(vec![]),
            ),
            (found(&[("sh", None)]), true, Err("sh")),
            (found(&[("sh", Some("/usr/bin/python3"))]), false, Err("sh")),
        ];
        for (observed, sweep, want) in rows {
            let got = diff(&observed, &names, &target, &ours, sweep)
                .map(|c| describe(&c, Path::new("D"), "D").iter().map(ToString::to_string).collect::<Vec<_>>());
            let want = want.map(|v| v.into_iter().map(String::from).collect::<Vec<_>>()).map_err(String::from);
            assert_eq!(got, want, "{observed:?}");
        }
    }

    #[test]
    fn links_to_imageswitch_anywhere_are_ours() {
        let exe = Path::new("/usr/sbin/imageswitch");
        for (target, ours) in [
            ("/usr/sbin/imageswitch", true),
            ("/usr/local/sbin/imageswitch", true),
            ("/opt/imageswitch/bin/imageswitch", true),
            ("imageswitch", false),
            ("/usr/bin/python3", false),
            ("/usr/sbin/imageswitch.old", false),
        ] {
            assert_eq!(points_at_imageswitch(Path::new(target), exe), ours, "{target}");
        }
    }
}
