//! Opening root-owned paths without trusting anything a user could change.
//!
//! Every directory on the way must be owned by root and not writable by group
//! or others; a symbolic link on the way must be owned by root and is followed
//! by hand, so its target is checked the same way. The result is a descriptor:
//! later steps work on it, never on the path again (no check-then-use race).
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

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
    /// A bind's source: every directory above it is checked, a link is
    /// followed as usual, but the object itself may belong to anyone (its
    /// owner changes what is in it, never what is there).
    BindSource,
}

/// Why [`open_checked`] stopped: a component someone other than root may
/// change, or one that could not be opened.
enum Refused {
    Untrusted(String),
    Unreachable(String),
}

fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// Why `what` may not be trusted, or `None` when it is root-owned and not
/// writable by group or others.
pub fn untrusted_reason(st: &FileStat) -> Option<String> {
    if st.st_uid != 0 {
        return Some(format!("owned by uid {}, not root", st.st_uid));
    }
    if file_type(st) != SFlag::S_IFLNK && st.st_mode & 0o022 != 0 {
        return Some(format!("writable by group or others (mode {:04o})", st.st_mode & 0o7777));
    }
    None
}

fn errno_text(err: nix::errno::Errno) -> String {
    crate::error::describe(&std::io::Error::from(err))
}

/// Opens `path` as described in the module docs. Errors say which component
/// failed and why, as `(component, reason)`.
pub fn open_trusted(path: &Path, kind: Kind) -> Result<OwnedFd, (PathBuf, String)> {
    open_checked(path, kind).map_err(|(component, refused)| match refused {
        Refused::Untrusted(why) | Refused::Unreachable(why) => (component, why),
    })
}

/// The directory above `path` (links followed as [`open_trusted`] does) that
/// someone other than root may change, with why: whoever may write there can
/// remove, replace or plant `path`. `None` when every one is root-only, or
/// when the walk stops at a missing one (which no user can create either).
/// Only root decides the answer: the first such directory is below root-only
/// ones, so root made it what it is.
pub fn shared_ancestor(path: &Path) -> Option<(PathBuf, String)> {
    match open_checked(path, Kind::BindSource) {
        Err((component, Refused::Untrusted(why))) => Some((component, why)),
        _ => None,
    }
}

fn open_checked(path: &Path, kind: Kind) -> Result<OwnedFd, (PathBuf, Refused)> {
    let unreachable = |shown: &Path, why: String| (shown.to_path_buf(), Refused::Unreachable(why));
    let dir_flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let root = openat(nix::fcntl::AT_FDCWD, "/", dir_flags | OFlag::O_DIRECTORY, Mode::empty())
        .map_err(|e| unreachable(Path::new("/"), errno_text(e)))?;
    let root_stat = fstat(&root).map_err(|e| unreachable(Path::new("/"), errno_text(e)))?;
    if let Some(why) = untrusted_reason(&root_stat) {
        return Err((PathBuf::from("/"), Refused::Untrusted(why)));
    }

    let mut pending: VecDeque<OsString> = components(path);
    let mut current = root.try_clone().map_err(|e| unreachable(Path::new("/"), e.to_string()))?;
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
        let next = match openat(&current, part.as_os_str(), flags, Mode::empty()) {
            Ok(fd) => fd,
            // O_NOFOLLOW on a symlink without O_PATH gives ELOOP: reopen it as a path to read the link.
            Err(nix::errno::Errno::ELOOP) if want_file => openat(&current, part.as_os_str(), dir_flags, Mode::empty())
                .map_err(|e| unreachable(&shown, errno_text(e)))?,
            Err(e) => return Err(unreachable(&shown, errno_text(e))),
        };
        let st = fstat(&next).map_err(|e| unreachable(&shown, errno_text(e)))?;
        let owner_free = last && kind == Kind::BindSource && file_type(&st) != SFlag::S_IFLNK;
        if let Some(why) = untrusted_reason(&st).filter(|_| !owner_free) {
            return Err((shown, Refused::Untrusted(why)));
        }
        match file_type(&st) {
            SFlag::S_IFLNK => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(unreachable(&shown, "too many levels of symbolic links".to_string()));
                }
                let target = readlinkat(&next, "").map_err(|e| unreachable(&shown, errno_text(e)))?;
                let target = PathBuf::from(target);
                let mut spliced = components(&target);
                spliced.extend(pending.drain(..));
                pending = spliced;
                shown.pop();
                if target.is_absolute() {
                    current = root.try_clone().map_err(|e| unreachable(&shown, e.to_string()))?;
                    shown = PathBuf::from("/");
                }
            }
            SFlag::S_IFDIR if !want_file => {
                current = next;
            }
            SFlag::S_IFREG if want_file => {
                return Ok(next);
            }
            _ if want_file => return Err(unreachable(&shown, "not a regular file".to_string())),
            _ => return Err(unreachable(&shown, "not a directory".to_string())),
        }
        if part == ".." {
            shown.pop();
            shown.pop();
        }
    }
    if kind == Kind::File {
        return Err(unreachable(&shown, "is a directory".to_string()));
    }
    Ok(current)
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
            Err(nix::errno::Errno::ENOENT) | Err(nix::errno::Errno::ENOTDIR) => {}
            Err(e) => return Err((entry.to_string(), errno_text(e))),
        }
    }
    Ok(())
}
