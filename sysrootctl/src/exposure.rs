//! What of a tree users can reach on the host, outside imageswitch's sealed
//! (nodev, nosuid) view: device nodes they may open (a debootstrapped tree's
//! 0666 `dev/console`) and setuid, setgid or file-capability programs they may
//! run directly (an old tree's old `su`). sysrootctl keeps its generations in
//! a root-only `STORE/NAME`; trees made by hand are judged here for `check`.
#![forbid(unsafe_code)]

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// At most this many examples are named per kind.
const EXAMPLES: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hazard {
    /// A device node users may open.
    Device,
    /// A setuid/setgid program users may run.
    Privileged,
}

/// Whether an entry is a hazard when a user can reach it, from its type and mode.
pub fn hazard(file_type: fs::FileType, mode: u32) -> Option<Hazard> {
    if (file_type.is_char_device() || file_type.is_block_device()) && mode & 0o066 != 0 {
        return Some(Hazard::Device);
    }
    if file_type.is_file() && mode & 0o6000 != 0 && mode & 0o011 != 0 {
        return Some(Hazard::Privileged);
    }
    None
}

/// Whether every user may pass through `dir` (search permission for others).
fn traversable(meta: &fs::Metadata) -> bool {
    meta.is_dir() && meta.mode() & 0o001 != 0
}

/// Whether users can get to `path` itself: every directory above it searchable.
pub fn reachable(path: &Path) -> bool {
    let Ok(real) = fs::canonicalize(path) else { return false };
    real.ancestors().skip(1).all(|dir| fs::metadata(dir).is_ok_and(|m| traversable(&m)))
}

/// The first directory on the way to `dir` (itself included) that users
/// cannot pass, with its mode: what makes links there useless to them.
pub fn blocked(dir: &Path) -> Option<(PathBuf, u32)> {
    let mut ancestors: Vec<&Path> = dir.ancestors().collect();
    ancestors.reverse();
    ancestors.into_iter().find_map(|d| {
        let meta = fs::metadata(d).ok()?;
        (!traversable(&meta)).then(|| (d.to_path_buf(), meta.mode() & 0o7777))
    })
}

#[derive(Debug, Default)]
pub struct Exposure {
    pub devices: (usize, Vec<String>),
    pub privileged: (usize, Vec<String>),
}

impl Exposure {
    pub fn is_empty(&self) -> bool {
        self.devices.0 == 0 && self.privileged.0 == 0
    }

    fn add(&mut self, hazard: Hazard, inner: String) {
        let (count, examples) = match hazard {
            Hazard::Device => &mut self.devices,
            Hazard::Privileged => &mut self.privileged,
        };
        *count += 1;
        if examples.len() < EXAMPLES {
            examples.push(inner);
        }
    }

    /// `2 device nodes (/dev/console /dev/null) and 1 setuid/setgid/capability program (/bin/su)`
    pub fn describe(&self) -> String {
        let part = |(count, examples): &(usize, Vec<String>), one: &str, many: &str| {
            format!("{count} {} ({})", if *count == 1 { one } else { many }, examples.join(" "))
        };
        let mut parts = Vec::new();
        if self.devices.0 > 0 {
            parts.push(part(&self.devices, "device node", "device nodes"));
        }
        if self.privileged.0 > 0 {
            parts.push(part(&self.privileged, "setuid/setgid/capability program", "setuid/setgid/capability programs"));
        }
        parts.join(" and ")
    }
}

/// The hazards in `tree` that every user can reach from the host: the walk
/// stays on the tree's filesystem and only goes where others may search.
pub fn scan(tree: &Path) -> Exposure {
    let mut found = Exposure::default();
    if !reachable(tree) {
        return found;
    }
    let Ok(root) = fs::metadata(tree) else { return found };
    if !traversable(&root) {
        return found;
    }
    let inner = |p: &Path| format!("/{}", p.strip_prefix(tree).unwrap_or(p).display());
    let mut stack = vec![tree.to_path_buf()];
    let mut programs = Vec::new();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let Ok(meta) = e.path().symlink_metadata() else { continue };
            if meta.dev() != root.dev() {
                continue;
            }
            if traversable(&meta) {
                stack.push(e.path());
            } else if let Some(h) = hazard(meta.file_type(), meta.mode()) {
                found.add(h, inner(&e.path()));
            } else if meta.is_file() && meta.mode() & 0o011 != 0 {
                programs.push(e.path());
            }
        }
    }
    for program in with_capabilities(&programs) {
        found.add(Hazard::Privileged, inner(&program));
    }
    found
}

/// Those of `programs` that carry file capabilities, from `getcap` (none when
/// it is not installed: the setuid/setgid walk still runs).
fn with_capabilities(programs: &[PathBuf]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for chunk in programs.chunks(500) {
        let Ok(out) = Command::new("getcap").args(chunk).output() else { return found };
        found.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|line| line.rsplit_once(' ').map(|(path, _)| PathBuf::from(path.trim_end_matches(" ="))))
                .filter(|p| chunk.contains(p)),
        );
    }
    found
}

/// The exact commands that put a hand-made tree where only root can reach it,
/// leaving `path` a root-owned link imageswitch follows.
pub fn fix_for(path: &Path) -> String {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let hidden = parent.join(format!(".{name}.trees"));
    format!(
        "mkdir -m 0700 {hidden} && mv {path} {hidden}/{name} && ln -s .{name}.trees/{name} {path}",
        hidden = hidden.display(),
        path = path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn hazards_by_type_and_mode() {
        let dir = std::env::temp_dir().join(format!("sysrootctl-hazard-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f");
        fs::write(&file, "").unwrap();
        let file_type = fs::symlink_metadata(&file).unwrap().file_type();
        let dir_type = fs::symlink_metadata(&dir).unwrap().file_type();
        let dev_type = fs::symlink_metadata("/dev/null").unwrap().file_type();
        let rows = [
            (file_type, 0o4755, Some(Hazard::Privileged)),
            (file_type, 0o2755, Some(Hazard::Privileged)),
            (file_type, 0o4750, Some(Hazard::Privileged)),
            (file_type, 0o4700, None),
            (file_type, 0o0755, None),
            (dir_type, 0o2775, None),
            (dev_type, 0o666, Some(Hazard::Device)),
            (dev_type, 0o620, Some(Hazard::Device)),
            (dev_type, 0o600, None),
        ];
        for (t, mode, want) in rows {
            assert_eq!(hazard(t, mode), want, "{mode:o}");
        }
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_fix_moves_the_tree_under_a_root_only_directory() {
        assert_eq!(
            fix_for(Path::new("/sysroot/sl5")),
            "mkdir -m 0700 /sysroot/.sl5.trees && mv /sysroot/sl5 /sysroot/.sl5.trees/sl5 && ln -s .sl5.trees/sl5 /sysroot/sl5"
        );
        assert_eq!(
            fix_for(Path::new("/sl4")),
            "mkdir -m 0700 /.sl4.trees && mv /sl4 /.sl4.trees/sl4 && ln -s .sl4.trees/sl4 /sl4"
        );
    }

    #[test]
    fn descriptions_count_and_name_examples() {
        let mut e = Exposure::default();
        assert!(e.is_empty());
        e.add(Hazard::Device, "/dev/console".into());
        assert_eq!(e.describe(), "1 device node (/dev/console)");
        for p in ["/bin/su", "/bin/mount", "/bin/ping", "/bin/passwd"] {
            e.add(Hazard::Privileged, p.into());
        }
        assert_eq!(
            e.describe(),
            "1 device node (/dev/console) and 4 setuid/setgid/capability programs (/bin/su /bin/mount /bin/ping)"
        );
    }
}
