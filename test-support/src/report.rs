//! What the reliability tests measure with and report: figures, a seeded
//! random number generator, a listing of a whole tree, a line diff, and
//! clean-up that runs when a test fails half way.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Printed straight to fd 2, past libtest's capture, so CI logs show it.
/// One write, so lines from concurrently finishing tests do not interleave.
pub fn figure(text: &str) {
    let _ = std::io::stderr().write_all(format!("FIGURE {text}\n").as_bytes());
}

/// A count set from the environment (`IMGSW_REL_...`), or `default`.
pub fn count_from_env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A path removed (recursively, on this filesystem only) when dropped,
/// also when the test fails half way.
pub struct Removed(pub PathBuf);

impl std::ops::Deref for Removed {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Removed {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = Command::new("rm").arg("-rf").arg("--one-file-system").arg(&self.0).status();
    }
}

/// A mount point unmounted (lazily: whatever still uses it) when dropped,
/// also when the test fails half way.
pub struct Unmounted(pub PathBuf);

impl Drop for Unmounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("--lazy").arg(&self.0).stderr(std::process::Stdio::null()).status();
    }
}

/// xorshift64*: reproducible from the printed seed, no extra dependency.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `IMGSW_REL_SEED`, else the clock; the seed is printed as a figure.
    pub fn from_env(test: &str) -> Rng {
        let seed = std::env::var("IMGSW_REL_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
        });
        figure(&format!("{test}: seed {seed} (IMGSW_REL_SEED={seed} reproduces the delays)"));
        Rng(seed | 1)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Every entry of `root` (not following links) with type, mode, owner, size,
/// mtime, ctime (so even a change undone, like chmod and back, shows) and
/// link target: any change to the tree changes this text.
pub fn tree_listing(root: &Path) -> String {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<PathBuf> =
            fs::read_dir(dir).expect("read tree dir").map(|e| e.expect("dir entry").path()).collect();
        entries.sort();
        for path in entries {
            let meta = fs::symlink_metadata(&path).expect("lstat");
            let rel = path.strip_prefix(root).expect("under root").display().to_string();
            let mut line = format!("{rel} {} {}", meta.size(), stamp(&meta));
            if meta.file_type().is_symlink() {
                line.push_str(&format!(" -> {}", fs::read_link(&path).expect("readlink").display()));
            }
            out.push(line);
            if meta.is_dir() {
                walk(&path, root, out);
            }
        }
    }
    let meta = fs::symlink_metadata(root).expect("tree root");
    let mut out = vec![format!(". {}", stamp(&meta))];
    walk(root, root, &mut out);
    out.join("\n")
}

fn stamp(meta: &fs::Metadata) -> String {
    format!(
        "{:o} {}:{} {}.{} {}.{}",
        meta.mode(),
        meta.uid(),
        meta.gid(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec()
    )
}

/// FNV-1a, 64 bits: a short, stable name for a long text in a figure (and
/// the hash imageswitch names pins with).
pub fn fnv1a(bytes: impl AsRef<[u8]>) -> u64 {
    bytes.as_ref().iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The GNU build ID of the ELF file at `path` (the descriptor of its
/// `NT_GNU_BUILD_ID` note, found by the note's header: name size 4,
/// descriptor size 20, type 3, name "GNU"), or `None`.
pub fn build_id(path: &std::path::Path) -> Option<Vec<u8>> {
    const HEADER: [u8; 16] = [4, 0, 0, 0, 20, 0, 0, 0, 3, 0, 0, 0, b'G', b'N', b'U', 0];
    let bytes = fs::read(path).ok()?;
    let at = bytes.windows(HEADER.len()).position(|w| w == HEADER)? + HEADER.len();
    bytes.get(at..at + 20).map(<[u8]>::to_vec)
}

/// The lines only in `before` ("gone") and only in `after` ("new").
pub fn diff_lines(before: &str, after: &str) -> String {
    let b: BTreeSet<&str> = before.lines().collect();
    let a: BTreeSet<&str> = after.lines().collect();
    let gone: Vec<&&str> = b.difference(&a).collect();
    let new: Vec<&&str> = a.difference(&b).collect();
    format!("gone: {gone:#?}\nnew: {new:#?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn the_same_seed_gives_the_same_delays_within_bounds() {
        let (mut a, mut b) = (Rng(42 | 1), Rng(42 | 1));
        let xs: Vec<u64> = (0..100).map(|_| a.below(7)).collect();
        assert_eq!(xs, (0..100).map(|_| b.below(7)).collect::<Vec<_>>());
        assert!(xs.iter().all(|x| *x < 7));
        assert!((0..7).all(|v| xs.contains(&v)), "every value turns up: {xs:?}");
    }

    #[test]
    fn diff_lines_names_what_went_and_what_came() {
        let d = diff_lines("a\nb\nc", "a\nc\nd");
        assert!(d.starts_with("gone: [\n    \"b\",\n]\nnew: [\n    \"d\",\n]"), "{d}");
    }

    #[test]
    fn a_tree_listing_changes_with_any_change_even_one_undone() {
        let dir = std::env::temp_dir().join(format!("test-support-listing-{}", std::process::id()));
        let _cleanup = Removed(dir.clone());
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("sub/file"), "x").unwrap();
        std::os::unix::fs::symlink("sub/file", dir.join("link")).unwrap();
        let before = tree_listing(&dir);
        assert_eq!(before.lines().count(), 4, "{before}");
        assert!(before.contains("link ") && before.contains(" -> sub/file"), "{before}");
        assert_eq!(tree_listing(&dir), before, "reading changes nothing");
        std::thread::sleep(std::time::Duration::from_millis(10));
        let file = dir.join("sub/file");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        assert_ne!(tree_listing(&dir), before, "a chmod and back shows in the ctime");
    }
}
