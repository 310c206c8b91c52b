//! Links: `BIN_DIR` inside the tree, aliases, host `bin_dir` and the launcher.
#![forbid(unsafe_code)]

use super::*;
use crate::store::retire::{self, HostRecord};

/// Makes `dir` hold one symlink per name, pointing where `target(name)` says;
/// foreign files are left alone; with `sweep` (a directory only this sysroot
/// uses), other links we made are removed as stale.
fn sync_links(
    dir: &Path,
    shown: &str,
    names: &[String],
    target: &dyn Fn(&str) -> PathBuf,
    ours: &dyn Fn(&Path) -> bool,
    sweep: bool,
    apply: bool,
) -> Result<Vec<String>> {
    let mut changes = Vec::new();
    if !dir.is_dir() {
        changes.push(format!("create {shown}"));
        if apply {
            fs::DirBuilder::new().recursive(true).mode(0o755).create(dir)?;
        }
    }
    let mut added = 0;
    for name in names {
        let link = dir.join(name);
        let want = target(name);
        match fs::symlink_metadata(&link) {
            Ok(m) if m.file_type().is_symlink() && fs::read_link(&link)? == want => continue,
            Ok(m) if m.file_type().is_symlink() && ours(&fs::read_link(&link)?) => {}
            Ok(_) => bail!(
                "refusing to replace {}: it is not a link sysrootctl made (want a link to {})",
                link.display(),
                want.display()
            ),
            Err(_) => {}
        }
        added += 1;
        if apply {
            util::symlink_atomic(&want, &link)?;
        }
    }
    if added > 0 {
        changes.push(format!("link {added} entr{} in {shown}", if added == 1 { "y" } else { "ies" }));
    }
    let mut stale = Vec::new();
    if let Ok(entries) = fs::read_dir(dir).map(|e| e.filter(|_| sweep)) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if names.contains(&name) {
                continue;
            }
            if fs::read_link(e.path()).is_ok_and(|t| ours(&t)) {
                stale.push(name);
                if apply {
                    fs::remove_file(e.path())?;
                }
            }
        }
    }
    if !stale.is_empty() {
        stale.sort();
        changes.push(format!("remove stale links in {shown}: {}", stale.join(" ")));
    }
    Ok(changes)
}

/// Inside the tree: `BIN_DIR/NAME -> /bin/NAME`, so `#!/bin5/sh` works there too.
pub fn tree_links(ctx: &mut Ctx<'_>) -> Result<Vec<String>> {
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
pub fn host_links(ctx: &Ctx<'_>) -> Result<Vec<String>> {
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
        let made =
            HostRecord { path: sysroot.path.clone(), bin_dir: sysroot.bin_dir.clone(), launcher: desktop.clone() };
        retire::remember(&ctx.build.store, &sysroot.name, &made)?;
    }
    let text = desktop_entry(&sysroot.name, &exe);
    if fs::read_to_string(&desktop).ok().as_deref() != Some(text.as_str()) {
        changes.push(format!("write launcher {}", desktop.display()));
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
fn stale_aliases(ctx: &Ctx<'_>) -> Result<Vec<String>> {
    let sysroot = &ctx.decl.sysroot;
    let list = retire::aliases_path(&ctx.build.store, &sysroot.name);
    let current: Vec<PathBuf> = sysroot.aliases.iter().map(|a| ctx.host.alias_dir.join(a)).collect();
    let previous: Vec<PathBuf> = fs::read_to_string(&list).unwrap_or_default().lines().map(PathBuf::from).collect();
    let mut changes = Vec::new();
    for old in previous.iter().filter(|p| !current.contains(p)) {
        if fs::read_link(old).is_ok_and(|t| points_at_imageswitch(&t, &ctx.host.imageswitch)) {
            changes.push(format!("remove alias link {} (no longer declared)", old.display()));
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

/// A launcher that opens a terminal with the user's shell in the sysroot.
pub fn desktop_entry(name: &str, imageswitch: &Path) -> String {
    format!(
        "[Desktop Entry]\nType=Application\nName=Sysroot {name}\nComment=Shell inside the {name} sysroot\nExec={} {name}\nIcon=utilities-terminal\nTerminal=true\nCategories=System;\n",
        imageswitch.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
