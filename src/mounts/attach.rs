//! Attaching a bind with the new mount API: `open_tree(OPEN_TREE_CLONE)`
//! copies the source into a detached mount, `mount_setattr` sets nosuid/nodev
//! on it and on every submount *before* it is visible anywhere, and
//! `move_mount` attaches it onto a destination descriptor that was resolved
//! inside the tree without following any symbolic link. Kernels without that
//! API (before 5.12) get the same view through mount(2); see [`super::classic`].
#![forbid(unsafe_code)]

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat};
use nix::unistd::{Gid, Uid, setfsgid, setfsuid};

use super::{BindKind, IfMissing, MountSpec, NODEV, NOSUID, RDONLY, classic};
use crate::sys;
use crate::trusted::stat_type;

/// What became of one bind.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Mounted,
    /// Not made, with the reason (for a warning when the spec says so).
    Missing(String),
}

/// A failed bind: which side and why.
#[derive(Debug)]
pub struct MountError {
    pub what: String,
    pub why: io::Error,
}

fn fail(what: String, why: impl Into<io::Error>) -> MountError {
    MountError { what, why: why.into() }
}

fn kind_matches(kind: BindKind, st: &FileStat) -> bool {
    match kind {
        BindKind::Directory => stat_type(st) == SFlag::S_IFDIR,
        BindKind::Socket => stat_type(st) == SFlag::S_IFSOCK,
    }
}

/// Runs `f` with the filesystem uid/gid switched to the caller's, when asked.
pub(crate) fn with_fs_identity<T>(as_caller: bool, uid: Uid, gid: Gid, f: impl FnOnce() -> T) -> T {
    if !as_caller {
        return f();
    }
    let old_gid = setfsgid(gid);
    let old_uid = setfsuid(uid);
    let result = f();
    setfsuid(old_uid);
    setfsgid(old_gid);
    let _ = crate::privileges::stay_undumpable();
    result
}

/// Opens the destination inside `tree` one component at a time, refusing
/// symbolic links and `..` (the same guarantee as openat2's
/// RESOLVE_NO_SYMLINKS within the tree, on kernels without openat2).
pub(crate) fn open_target(tree: &OwnedFd, target: &Path) -> nix::Result<OwnedFd> {
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut current = openat(tree, ".", flags | OFlag::O_DIRECTORY, Mode::empty())?;
    let mut parts = target.as_os_str().as_bytes().split(|&b| b == b'/').filter(|p| !p.is_empty()).peekable();
    while let Some(part) = parts.next() {
        if part == b"." || part == b".." {
            return Err(nix::errno::Errno::EINVAL);
        }
        let next = openat(&current, OsStr::from_bytes(part), flags, Mode::empty())?;
        // A link is returned only as the last component, unfollowed; the
        // caller decides whether a link may be mounted over.
        if parts.peek().is_some() && stat_type(&fstat(&next)?) == SFlag::S_IFLNK {
            return Err(nix::errno::Errno::ELOOP);
        }
        current = next;
    }
    Ok(current)
}

/// The path of a descriptor, for mount(2)'s path arguments.
pub(crate) fn fd_path(fd: &impl AsFd) -> String {
    format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())
}

/// A path for a message: a home or bind path comes from passwd or the
/// configuration, and may hold controls or bytes that are not UTF-8.
fn shown(path: &Path) -> String {
    crate::escape::escape(path.as_os_str().as_bytes())
}

/// Makes one bind from `spec` onto the tree at `tree`.
pub fn bind(tree: &OwnedFd, tree_path: &Path, spec: &MountSpec, uid: Uid, gid: Gid) -> Result<Outcome, MountError> {
    bind_from(tree, tree_path, spec, uid, gid, None)
}

/// Copies the source of `spec` into a detached mount (with the caller's
/// filesystem identity when the spec says so), for [`bind_from`] after the
/// process has joined a pinned namespace, where the host path is out of
/// reach. The copy is made a slave: a copy of a shared mount would be its
/// peer, and mounts made under it inside would reach the host.
/// Errors: as `open_tree(2)` (ENOSYS before Linux 5.12).
pub fn detach_source(spec: &MountSpec, uid: Uid, gid: Gid) -> io::Result<OwnedFd> {
    let source =
        CString::new(spec.source.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let detached = with_fs_identity(spec.as_caller, uid, gid, || {
        sys::open_tree_clone(nix::fcntl::AT_FDCWD, &source, spec.recursive)
    })?;
    sys::mount_set_propagation(&detached, libc::MS_SLAVE, spec.recursive)?;
    Ok(detached)
}

/// [`bind`], with the source already detached by [`detach_source`] when
/// `detached` is given.
pub fn bind_from(
    tree: &OwnedFd,
    tree_path: &Path,
    spec: &MountSpec,
    uid: Uid,
    gid: Gid,
    detached: Option<io::Result<OwnedFd>>,
) -> Result<Outcome, MountError> {
    let source_shown = shown(&spec.source);
    let target_shown = shown(&tree_path.join(spec.target.strip_prefix("/").unwrap_or(&spec.target)));
    let missing = |what: String, err: io::Error| -> Result<Outcome, MountError> {
        if spec.if_missing == IfMissing::Fail || err.kind() != io::ErrorKind::NotFound {
            Err(fail(what, err))
        } else {
            Ok(Outcome::Missing(format!("{what}: {}", crate::error::describe(&err))))
        }
    };

    // The tree's /dev is the host's: a host /dev/log socket is already there.
    // Only a link (journald's, into /run) needs the socket bound over it.
    if spec.kind == BindKind::Socket
        && spec.source == spec.target
        && std::fs::symlink_metadata(&spec.source).is_ok_and(|m| m.file_type().is_socket())
    {
        return Ok(Outcome::Mounted);
    }

    let target = match open_target(tree, &spec.target) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ELOOP) if spec.if_missing == IfMissing::Skip => {
            return Ok(Outcome::Missing(format!("{target_shown} passes through a symbolic link")));
        }
        Err(nix::errno::Errno::ELOOP) => {
            return Err(fail(
                format!("bind destination {target_shown} is or passes through a symbolic link"),
                io::Error::from_raw_os_error(libc::ELOOP),
            ));
        }
        Err(err) => return missing(format!("bind destination {target_shown}"), err.into()),
    };
    let target_stat = fstat(&target).map_err(|e| fail(format!("bind destination {target_shown}"), e))?;
    // /dev/log is often a symlink into /run (journald); the bind replaces the
    // link itself, which was opened without following it.
    let socket_over_link = spec.kind == BindKind::Socket && stat_type(&target_stat) == SFlag::S_IFLNK;
    if stat_type(&target_stat) == SFlag::S_IFLNK && !socket_over_link {
        return Err(fail(
            format!("bind destination {target_shown} is a symbolic link"),
            io::Error::from_raw_os_error(libc::ELOOP),
        ));
    }
    if !kind_matches(spec.kind, &target_stat) && !socket_over_link {
        if spec.if_missing == IfMissing::Skip {
            return Ok(Outcome::Missing(format!("{target_shown} is not a {:?}", spec.kind)));
        }
        return Err(fail(format!("bind destination {target_shown}"), io::Error::from_raw_os_error(libc::ENOTDIR)));
    }
    let owner_ok = target_stat.st_uid == 0 || (spec.caller_may_own_target && target_stat.st_uid == uid.as_raw());
    if !owner_ok {
        return Err(fail(
            format!("bind destination {target_shown} is owned by uid {}, not root", target_stat.st_uid),
            io::Error::from_raw_os_error(libc::EPERM),
        ));
    }

    let detached = match detached {
        Some(detached) => detached,
        None => {
            let source_c = CString::new(spec.source.as_os_str().as_bytes())
                .map_err(|_| fail(source_shown.clone(), io::Error::from(io::ErrorKind::InvalidInput)))?;
            with_fs_identity(spec.as_caller, uid, gid, || {
                sys::open_tree_clone(nix::fcntl::AT_FDCWD, &source_c, spec.recursive)
            })
        }
    };
    let detached = match detached {
        Ok(fd) => fd,
        Err(err) if err.raw_os_error() == Some(libc::ENOSYS) => {
            return classic::bind(tree, &target, spec, uid, gid).map_err(|(what, why)| fail(what, why));
        }
        Err(err) => return missing(format!("bind source {source_shown}"), err),
    };
    let source_stat = fstat(&detached).map_err(|e| fail(format!("bind source {source_shown}"), e))?;
    if !kind_matches(spec.kind, &source_stat) {
        if spec.if_missing == IfMissing::Skip {
            return Ok(Outcome::Missing(format!("{source_shown} is not a {:?}", spec.kind)));
        }
        return Err(fail(format!("bind source {source_shown}"), io::Error::from_raw_os_error(libc::ENOTDIR)));
    }
    sys::mount_setattr(&detached, spec.attrs, spec.recursive)
        .map_err(|e| fail(format!("setting mount flags on {source_shown}"), e))?;
    sys::move_mount_onto(&detached, &target)
        .map_err(|e| fail(format!("binding {source_shown} onto {target_shown}"), e))?;
    Ok(Outcome::Mounted)
}

/// Binds the tree over itself nodev, nosuid and read-only, so device nodes
/// and setuid files in the tree do nothing and nobody writes it through the
/// view (a group-writable directory of the tree's own, such as /var/mail,
/// would otherwise take a group member's files into a generation every
/// caller shares); returns a descriptor of the new mount's root, which every
/// later step uses instead of `tree`. Binds, layers and overlays go on top.
pub fn seal_tree(tree: &OwnedFd) -> io::Result<OwnedFd> {
    let attrs = NODEV | NOSUID | RDONLY;
    match sys::open_tree_clone(tree, c"", true) {
        Ok(sealed) => {
            sys::mount_setattr(&sealed, attrs, true)?;
            sys::move_mount_onto(&sealed, tree)?;
            Ok(sealed)
        }
        Err(err) if err.raw_os_error() == Some(libc::ENOSYS) => classic::seal(tree, attrs),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::errno::Errno;

    #[test]
    fn a_bind_destination_is_reached_without_links_or_dot_dot() {
        let dir = std::env::temp_dir().join(format!("imageswitch-open-target-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("home/alice")).expect("tree");
        std::os::unix::fs::symlink("home", dir.join("link")).expect("link");
        std::os::unix::fs::symlink("/etc", dir.join("home/escape")).expect("link");
        let tree = openat(nix::fcntl::AT_FDCWD, &dir, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).expect("tree");
        let kind =
            |target: &str| open_target(&tree, Path::new(target)).map(|fd| stat_type(&fstat(&fd).expect("fstat")));
        assert_eq!(kind("/home/alice"), Ok(SFlag::S_IFDIR));
        assert_eq!(kind("/"), Ok(SFlag::S_IFDIR));
        // A link on the way is refused; as the last component it is returned
        // unfollowed, for the caller to judge.
        assert_eq!(kind("/link/alice"), Err(Errno::ELOOP));
        assert_eq!(kind("/home/escape/passwd"), Err(Errno::ELOOP));
        assert_eq!(kind("/home/escape"), Ok(SFlag::S_IFLNK));
        assert_eq!(kind("/home/../home"), Err(Errno::EINVAL));
        assert_eq!(kind("/home/./alice"), Err(Errno::EINVAL));
        assert_eq!(kind("/home/bob"), Err(Errno::ENOENT));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn paths_in_messages_stay_on_one_line() {
        let odd = Path::new(OsStr::from_bytes(b"/var/homes/a\nb\x1b[31m\xff"));
        assert_eq!(shown(odd), "/var/homes/a\\nb\\u{1b}[31m\\xff");
        assert_eq!(shown(Path::new("/home/alice")), "/home/alice");
    }
}
