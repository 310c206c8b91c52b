//! Opening root-owned paths without trusting anything a user could change.
//!
//! Every directory on the way must be owned by root and not writable by group
//! or others; a symbolic link on the way must be owned by root and is followed
//! by hand, so its target is checked the same way. The result is a descriptor:
//! later steps work on it, never on the path again (no check-then-use race).
//! The walk itself ([`walk`]) takes the judgement of each component as a
//! closure: the working directory inside a tree is walked the same way, as
//! the caller, to see whose directories and links lead to it.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};

/// Most symbolic links followed while opening one path.
const MAX_LINKS: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Open as an `O_PATH` directory descriptor.
    Directory,
    /// Open a regular file for reading.
    File,
}

/// The file type bits (`S_IFMT`) of a stat result.
pub(crate) fn stat_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// Why `what` may not be trusted, or `None` when it is root-owned and not
/// writable by group or others.
pub fn untrusted_reason(st: &FileStat) -> Option<String> {
    if st.st_uid != 0 {
        return Some(format!("owned by uid {}, not root", st.st_uid));
    }
    if stat_type(st) != SFlag::S_IFLNK && st.st_mode & 0o022 != 0 {
        return Some(format!("writable by group or others (mode {:04o})", st.st_mode & 0o7777));
    }
    None
}

fn errno_text(err: Errno) -> String {
    crate::error::describe(&std::io::Error::from(err))
}

/// Why a [`walk`] stopped at a component.
#[derive(Debug)]
pub enum Stop {
    /// The kernel's answer, or the walk's own for a component of the wrong
    /// type (`ENOTDIR`, `EISDIR`) or too many links (`ELOOP`).
    Errno(Errno),
    /// The judge refused it, or a file was wanted and this is not a regular one.
    Refused(String),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Errno(e) => f.write_str(&errno_text(*e)),
            Stop::Refused(why) => f.write_str(why),
        }
    }
}

/// Opens `path` as described in the module docs. Errors say which component
/// failed and why, as `(component, reason)`.
pub fn open_trusted(path: &Path, kind: Kind) -> Result<OwnedFd, (PathBuf, String)> {
    if let Some(fd) = open_trusted_without_links(path, kind) {
        return Ok(fd);
    }
    walk(path, kind, |_, st| untrusted_reason(st).map_or(Ok(()), Err)).map_err(|(at, stop)| (at, stop.to_string()))
}

/// [`open_trusted`] for a path with no link on the way, in n + 2 system
/// calls rather than about 3n: every directory from `/` down to the last
/// one's parent is stat'ed by its path (`AT_SYMLINK_NOFOLLOW`) and judged
/// first, then the whole path is opened with one `openat2` that follows no
/// link (`RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`), and what it opened is
/// judged. Sound because the directories were judged before the open: each
/// is root's and closed to everybody else, so only root could change what
/// the path leads to in between, as with the walk's descriptors. `None` on
/// anything else (a link, `..`, any error or refusal, a kernel before 5.6
/// without openat2): the component walk then decides, and says why.
fn open_trusted_without_links(path: &Path, kind: Kind) -> Option<OwnedFd> {
    use nix::fcntl::{OpenHow, ResolveFlag, openat2};
    trusted_parents_without_links(path)?;
    let (flags, want) = match kind {
        Kind::File => (
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
            SFlag::S_IFREG,
        ),
        Kind::Directory => (OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_DIRECTORY, SFlag::S_IFDIR),
    };
    let how =
        OpenHow::new().flags(flags).resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(nix::fcntl::AT_FDCWD, path, how).ok()?;
    let st = fstat(&fd).ok()?;
    (stat_type(&st) == want && untrusted_reason(&st).is_none()).then_some(fd)
}

/// `Some` when `path` is absolute and exactly its plain components (no
/// `..`, no `.`, no trailing or repeated `/`, which `Path::components`
/// would drop while a system call still reads them), and every directory
/// from `/` down to its parent, stat'ed by path
/// without following links, is a directory that is root's and closed to
/// everybody else; `None` on anything else (a link among them, an error, a
/// refusal), for the component walk to decide and say why. Once each is
/// judged, top down, only root can change what the path leads to.
fn trusted_parents_without_links(path: &Path) -> Option<()> {
    use std::path::Component;
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir if parts.is_empty() => {}
            Component::Normal(part) => parts.push(part),
            _ => return None,
        }
    }
    let rebuilt = parts.iter().fold(Vec::new(), |mut out, part| {
        out.push(b'/');
        out.extend_from_slice(part.as_bytes());
        out
    });
    let exact = path.as_os_str().as_bytes() == if rebuilt.is_empty() { b"/".as_slice() } else { &rebuilt };
    if !path.is_absolute() || !exact {
        return None;
    }
    let trusted_dir = |at: &Path| {
        let st = lstat(at)?;
        (stat_type(&st) == SFlag::S_IFDIR && untrusted_reason(&st).is_none()).then_some(())
    };
    let mut dir = PathBuf::from("/");
    trusted_dir(&dir)?;
    for part in parts.iter().take(parts.len().saturating_sub(1)) {
        dir.push(part);
        trusted_dir(&dir)?;
    }
    Some(())
}

/// `lstat(2)`: `path`'s own status, a link not followed.
pub(crate) fn lstat(path: &Path) -> Option<FileStat> {
    fstatat(nix::fcntl::AT_FDCWD, path, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).ok()
}

/// The directory above `path` (links followed as [`open_trusted`] does) that
/// someone other than root may change, with why: whoever may write there can
/// remove, replace or plant `path`. `None` when every one is root-only, or
/// when the walk stops at a missing one (which no user can create either).
/// `path` itself may belong to anyone: its owner changes what is in it, never
/// what is there. Only root decides the answer: the first such directory is
/// below root-only ones, so root made it what it is.
pub fn shared_ancestor(path: &Path) -> Option<(PathBuf, String)> {
    // Without a link on the way, the directories above, judged by path,
    // answer alone (as in open_trusted_without_links).
    if trusted_parents_without_links(path).is_some() && lstat(path).is_some_and(|st| stat_type(&st) != SFlag::S_IFLNK) {
        return None;
    }
    shared_ancestor_by_walk(path)
}

/// [`shared_ancestor`] decided by the component walk alone.
fn shared_ancestor_by_walk(path: &Path) -> Option<(PathBuf, String)> {
    let judge = |shown: &Path, st: &FileStat| {
        let the_source_itself = shown == path && stat_type(st) != SFlag::S_IFLNK;
        match untrusted_reason(st) {
            Some(why) if !the_source_itself => Err(why),
            _ => Ok(()),
        }
    };
    match walk(path, Kind::Directory, judge) {
        Err((at, Stop::Refused(why))) => Some((at, why)),
        _ => None,
    }
}

/// Opens `path` from `/` one component at a time without following links,
/// following each symbolic link by hand. `judge` sees every component — the
/// root, each directory and link on the way, the result — as it is shown
/// (the path it was reached by) and may refuse it. Errors say where it stopped.
pub fn walk(
    path: &Path,
    kind: Kind,
    mut judge: impl FnMut(&Path, &FileStat) -> Result<(), String>,
) -> Result<OwnedFd, (PathBuf, Stop)> {
    let dir_flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let root = openat(nix::fcntl::AT_FDCWD, "/", dir_flags | OFlag::O_DIRECTORY, Mode::empty())
        .map_err(|e| (PathBuf::from("/"), Stop::Errno(e)))?;
    judged(&mut judge, &root, Path::new("/"))?;

    let mut pending: VecDeque<OsString> = components(path);
    // `None` is the root itself: no duplicate of its descriptor is made.
    let mut current: Option<OwnedFd> = None;
    let mut shown = PathBuf::from("/");
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        if part == "." {
            continue;
        }
        let last = pending.is_empty();
        shown.push(&part);
        let want_file = last && kind == Kind::File;
        let flags = if want_file {
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOCTTY
        } else {
            dir_flags
        };
        let dir = current.as_ref().unwrap_or(&root);
        let next = match openat(dir, part.as_os_str(), flags, Mode::empty()) {
            Ok(fd) => fd,
            // O_NOFOLLOW on a symlink without O_PATH gives ELOOP: reopen it as a path to read the link.
            Err(Errno::ELOOP) if want_file => {
                openat(dir, part.as_os_str(), dir_flags, Mode::empty()).map_err(|e| (shown.clone(), Stop::Errno(e)))?
            }
            Err(e) => return Err((shown, Stop::Errno(e))),
        };
        let st = judged(&mut judge, &next, &shown)?;
        match stat_type(&st) {
            SFlag::S_IFLNK => {
                links += 1;
                if links > MAX_LINKS {
                    return Err((shown, Stop::Errno(Errno::ELOOP)));
                }
                let target = readlinkat(&next, "").map_err(|e| (shown.clone(), Stop::Errno(e)))?;
                let target = PathBuf::from(target);
                let mut spliced = components(&target);
                spliced.extend(pending.drain(..));
                pending = spliced;
                shown.pop();
                if target.is_absolute() {
                    current = None;
                    shown = PathBuf::from("/");
                }
            }
            SFlag::S_IFDIR if !want_file => {
                current = Some(next);
            }
            SFlag::S_IFREG if want_file => {
                return Ok(next);
            }
            _ if want_file => return Err((shown, Stop::Refused("not a regular file".to_string()))),
            _ => return Err((shown, Stop::Errno(Errno::ENOTDIR))),
        }
        if part == ".." {
            shown.pop();
            shown.pop();
        }
    }
    if kind == Kind::File {
        return Err((shown, Stop::Errno(Errno::EISDIR)));
    }
    Ok(current.unwrap_or(root))
}

fn judged(
    judge: &mut impl FnMut(&Path, &FileStat) -> Result<(), String>,
    fd: &OwnedFd,
    shown: &Path,
) -> Result<FileStat, (PathBuf, Stop)> {
    let st = fstat(fd).map_err(|e| (shown.to_path_buf(), Stop::Errno(e)))?;
    judge(shown, &st).map_err(|why| (shown.to_path_buf(), Stop::Refused(why)))?;
    Ok(st)
}

fn components(path: &Path) -> VecDeque<OsString> {
    path.as_os_str()
        .as_bytes()
        .split(|&b| b == b'/')
        .filter(|part| !part.is_empty())
        .map(|part| OsString::from(std::ffi::OsStr::from_bytes(part)))
        .collect()
}

/// Top-level entries of a tree that programs inside trust; each present one
/// must be root-owned and not group/world-writable, like the tree root.
const CRITICAL_ENTRIES: &[&str] = &[
    "etc",
    "bin",
    "sbin",
    "lib",
    "lib32",
    "lib64",
    "libx32",
    "usr",
    "usr/bin",
    "usr/sbin",
    "usr/lib",
    "etc/passwd",
    "etc/group",
    "etc/shadow",
    "etc/sudoers",
    "etc/ld.so.preload",
    "etc/ld.so.conf",
    "etc/nsswitch.conf",
];

/// Checks the tree's critical entries (see [`CRITICAL_ENTRIES`]) without following links.
pub fn check_tree_entries(tree: &OwnedFd) -> Result<(), (String, String)> {
    for entry in CRITICAL_ENTRIES {
        match fstatat(tree, *entry, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => {
                if let Some(why) = untrusted_reason(&st) {
                    return Err((entry.to_string(), why));
                }
            }
            Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => {}
            Err(e) => return Err((entry.to_string(), errno_text(e))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn id(fd: &OwnedFd) -> (u64, u64) {
        let st = fstat(fd).expect("fstat");
        (st.st_dev, st.st_ino)
    }

    /// The direct open and the walk agree: the same file where there is no
    /// link; no direct answer (the walk's) where there is one, or a
    /// directory others may write; the walk's refusal stands.
    #[test]
    fn the_direct_open_is_the_walk_without_links() {
        let passwd = std::fs::metadata("/etc/passwd").expect("/etc/passwd");
        let direct = open_trusted_without_links(Path::new("/etc/passwd"), Kind::File).expect("a direct open");
        assert_eq!(id(&direct), (passwd.dev(), passwd.ino()));
        let walked = walk(Path::new("/etc/passwd"), Kind::File, |_, st| untrusted_reason(st).map_or(Ok(()), Err))
            .expect("the walk");
        assert_eq!(id(&walked), id(&direct));
        assert!(open_trusted_without_links(Path::new("/"), Kind::Directory).is_some());
        assert!(open_trusted_without_links(Path::new("/etc"), Kind::File).is_none(), "a directory is no file");
        assert!(open_trusted_without_links(Path::new("/etc/passwd"), Kind::Directory).is_none());
        assert!(open_trusted_without_links(Path::new("/etc/../etc/passwd"), Kind::File).is_none());
        assert!(open_trusted_without_links(Path::new("etc/passwd"), Kind::File).is_none());

        // A link on the way (merged /usr: /bin -> usr/bin): only the walk follows it.
        let bin = Path::new("/bin");
        if std::fs::symlink_metadata(bin).is_ok_and(|m| m.file_type().is_symlink()) {
            assert!(open_trusted_without_links(&bin.join("sh"), Kind::File).is_none());
            let followed = open_trusted(&bin.join("sh"), Kind::File).expect("the walk follows root's links");
            let sh = std::fs::metadata("/bin/sh").expect("/bin/sh");
            assert_eq!(id(&followed), (sh.dev(), sh.ino()));
        }

        // /tmp is writable by everybody: refused, and the walk says where.
        let dir = tempfile_in_tmp("direct");
        assert!(open_trusted_without_links(&dir, Kind::Directory).is_none());
        let (at, why) = open_trusted(&dir, Kind::Directory).expect_err("under /tmp");
        assert_eq!(at, Path::new("/tmp"), "{why}");
        std::fs::remove_dir(&dir).expect("remove");
    }

    /// The answer by path and the walk's agree wherever the first applies,
    /// and the walk still answers where it does not: a directory others may
    /// write above the source, a link on the way, a missing source.
    #[test]
    fn shared_ancestor_by_path_is_the_walks_answer() {
        let dir = tempfile_in_tmp("shared");
        let below = dir.join("below");
        std::fs::create_dir_all(&below).expect("mkdir");
        for path in ["/", "/etc", "/usr/bin", "/tmp", "/home", "/bin/sh", "/etc/no-such-dir/x", "/proc/self"]
            .iter()
            .map(PathBuf::from)
            .chain([dir.clone(), below.clone()])
        {
            assert_eq!(shared_ancestor(&path), shared_ancestor_by_walk(&path), "{}", path.display());
        }
        let (at, _) = shared_ancestor(&below).expect("/tmp is writable by everybody");
        assert_eq!(at, Path::new("/tmp"));
        assert_eq!(shared_ancestor(Path::new("/tmp")), None, "the source itself may be anybody's");

        // A root-owned link in a root-only directory, into /tmp: with a
        // trailing `/` or `/.` (which Path::components drops, while lstat
        // follows the link) the answer is still the walk's, /tmp.
        if nix::unistd::geteuid().is_root() {
            let holder = Path::new("/run").join(format!("trusted-test-{}", std::process::id()));
            std::fs::create_dir_all(&holder).expect("mkdir under /run");
            std::os::unix::fs::symlink(&below, holder.join("link")).expect("symlink");
            for tail in ["link", "link/", "link/.", "link//"] {
                let path = PathBuf::from(format!("{}/{tail}", holder.display()));
                let (at, _) = shared_ancestor(&path).unwrap_or_else(|| panic!("{}: no answer", path.display()));
                assert_eq!(at, Path::new("/tmp"), "{}", path.display());
                assert_eq!(shared_ancestor(&path), shared_ancestor_by_walk(&path), "{}", path.display());
            }
            std::fs::remove_dir_all(&holder).expect("remove");
        }
        std::fs::remove_dir_all(&dir).expect("remove");
    }

    fn tempfile_in_tmp(test: &str) -> PathBuf {
        let dir = Path::new("/tmp").join(format!("trusted-test-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }
}
