//! Overlay files copied into the tree, with fingerprints to tell drift from an overlay change.
#![forbid(unsafe_code)]

use super::*;

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

pub(super) fn overlays(ctx: &mut Ctx<'_>) -> Result<Vec<String>> {
    let mut changes = Vec::new();
    let mut written = Vec::new();
    for overlay in &ctx.build.files {
        let meta =
            fs::symlink_metadata(&overlay.src).with_context(|| format!("overlay source {}", overlay.src.display()))?;
        let mut stack = vec![(overlay.src.clone(), overlay.dst.clone(), meta)];
        while let Some((src, dst, meta)) = stack.pop() {
            let target = in_tree(&ctx.tree, &dst, false)?;
            let shown = dst.display().to_string();
            if meta.is_dir() {
                let existing = fs::symlink_metadata(&target).ok();
                if !existing.as_ref().is_some_and(|m| m.is_dir())
                    && in_tree(&ctx.tree, &dst, true).map(|p| !p.is_dir()).unwrap_or(true)
                {
                    changes.push(format!("create directory {shown}"));
                    if ctx.apply {
                        fs::DirBuilder::new().recursive(true).mode(overlay_mode(&meta)).create(&target)?;
                    }
                }
                let mut entries: Vec<_> = fs::read_dir(&src)?.flatten().collect();
                entries.sort_by_key(|e| std::cmp::Reverse(e.file_name()));
                for e in entries {
                    stack.push((e.path(), dst.join(e.file_name()), e.metadata()?));
                }
                continue;
            }
            written.push(shown.clone());
            let want = fingerprint(&src, Some(overlay_mode(&meta)));
            ctx.record.file_sums.insert(shown.clone(), want.clone());
            let current = fs::symlink_metadata(&target).ok();
            let same = if meta.file_type().is_symlink() {
                current.as_ref().is_some_and(|m| m.file_type().is_symlink())
                    && fs::read_link(&target).ok() == fs::read_link(&src).ok()
            } else {
                current
                    .as_ref()
                    .is_some_and(|m| m.is_file() && m.mode() & 0o7777 == overlay_mode(&meta) && m.uid() == 0)
                    && fs::read(&target).ok() == Some(fs::read(&src)?)
            };
            if same {
                continue;
            }
            // Ours before: did the tree drift from what we wrote, or did the overlay change?
            let change = match ctx.prev.file_sums.get(&shown) {
                None => format!("write {shown}"),
                Some(sum) if *sum == fingerprint(&target, None) => format!("update {shown} (the overlay changed)"),
                Some(_) => format!("restore {shown} (changed in the tree)"),
            };
            changes.push(change);
            if !ctx.apply {
                continue;
            }
            if let Some(parent) = target.parent() {
                fs::DirBuilder::new().recursive(true).mode(0o755).create(parent)?;
            }
            if current.as_ref().is_some_and(|m| m.is_dir()) {
                bail!("overlay {}: {shown} is a directory in the tree", src.display());
            }
            if meta.file_type().is_symlink() {
                util::symlink_atomic(&fs::read_link(&src)?, &target)?;
            } else {
                util::write_atomic(&target, &fs::read(&src)?, overlay_mode(&meta))?;
                chown(&target, Some(0), Some(0))?;
                fs::set_permissions(&target, fs::Permissions::from_mode(overlay_mode(&meta)))?;
            }
        }
    }
    ctx.record.files = written;
    Ok(changes)
}
