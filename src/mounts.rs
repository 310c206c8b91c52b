//! The tree's view: which host paths appear where inside, with which mount
//! flags, and attaching them in a private mount namespace.
//!
//! Each bind is made with the new mount API: `open_tree(OPEN_TREE_CLONE)`
//! copies the source into a detached mount, `mount_setattr` sets nosuid/nodev
//! on it and on every submount *before* it is visible anywhere, and
//! `move_mount` attaches it onto a destination descriptor that was resolved
//! inside the tree without following any symbolic link.
#![forbid(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{FileStat, SFlag, fstat};
use nix::unistd::{Gid, Uid, setfsgid, setfsuid};

use crate::config::{Defaults, Sysroot};
use crate::sys;

pub const NOSUID: u64 = libc::MOUNT_ATTR_NOSUID;
pub const NODEV: u64 = libc::MOUNT_ATTR_NODEV;
pub const NOEXEC: u64 = libc::MOUNT_ATTR_NOEXEC;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Directory,
    Socket,
}

/// What to do when the source or the destination does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMissing {
    Fail,
    Warn,
    Skip,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    /// Host path.
    pub source: PathBuf,
    /// Absolute path inside the tree.
    pub target: PathBuf,
    pub recursive: bool,
    /// `MOUNT_ATTR_*` flags set on the bind (and its submounts).
    pub attrs: u64,
    /// Resolve the source with the caller's filesystem identity, so a bind
    /// never shows what the caller could not reach (root_squash, 0700 homes).
    pub as_caller: bool,
    /// The destination may also be owned by the caller (their home in the tree).
    pub caller_may_own_target: bool,
    pub kind: Kind,
    pub if_missing: IfMissing,
}

/// The binds for `sysroot`, in the order they are made.
pub fn plan(sysroot: &Sysroot, defaults: &Defaults, home: &Path) -> Vec<MountSpec> {
    let system = |path: &str, attrs: u64| MountSpec {
        source: PathBuf::from(path),
        target: PathBuf::from(path),
        recursive: true,
        attrs,
        as_caller: false,
        caller_may_own_target: false,
        kind: Kind::Directory,
        if_missing: IfMissing::Fail,
    };
    let mut specs = vec![
        system("/proc", NOSUID | NODEV | NOEXEC),
        system("/sys", NOSUID | NODEV | NOEXEC),
        // Device nodes are what /dev is for: nodev would break /dev/null.
        system("/dev", NOSUID),
    ];
    let binds = sysroot.all_binds(defaults);
    for bind in &binds {
        specs.push(MountSpec {
            source: bind.to_path_buf(),
            target: bind.to_path_buf(),
            recursive: true,
            attrs: NOSUID | NODEV,
            as_caller: true,
            caller_may_own_target: false,
            kind: Kind::Directory,
            if_missing: IfMissing::Fail,
        });
    }
    let home_is_bound = binds.iter().any(|bind| home.starts_with(bind));
    if home.is_absolute() && home != Path::new("/") && !home_is_bound {
        specs.push(MountSpec {
            source: home.to_path_buf(),
            target: home.to_path_buf(),
            recursive: true,
            attrs: NOSUID | NODEV,
            as_caller: true,
            caller_may_own_target: true,
            kind: Kind::Directory,
            if_missing: IfMissing::Warn,
        });
    }
    if let Some(socket) = &defaults.log_socket {
        specs.push(MountSpec {
            source: socket.clone(),
            target: PathBuf::from("/dev/log"),
            recursive: false,
            attrs: NOSUID | NODEV | NOEXEC,
            as_caller: false,
            caller_may_own_target: false,
            kind: Kind::Socket,
            if_missing: IfMissing::Skip,
        });
    }
    specs
}

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

fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

fn kind_matches(kind: Kind, st: &FileStat) -> bool {
    match kind {
        Kind::Directory => file_type(st) == SFlag::S_IFDIR,
        Kind::Socket => file_type(st) == SFlag::S_IFSOCK,
    }
}

/// Runs `f` with the filesystem uid/gid switched to the caller's, when asked.
fn with_fs_identity<T>(as_caller: bool, uid: Uid, gid: Gid, f: impl FnOnce() -> T) -> T {
    if !as_caller {
        return f();
    }
    let old_gid = setfsgid(gid);
    let old_uid = setfsuid(uid);
    let result = f();
    setfsuid(old_uid);
    setfsgid(old_gid);
    result
}

/// Opens the destination inside `tree` without following any symbolic link
/// and without leaving the tree, even through `..`.
fn open_target(tree: &OwnedFd, target: &Path) -> nix::Result<OwnedFd> {
    let relative = target.strip_prefix("/").unwrap_or(target);
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(tree, relative, how)
}

/// Makes one bind from `spec` onto the tree at `tree`.
pub fn bind(tree: &OwnedFd, tree_path: &Path, spec: &MountSpec, uid: Uid, gid: Gid) -> Result<Outcome, MountError> {
    let source_shown = spec.source.display().to_string();
    let target_shown = tree_path.join(spec.target.strip_prefix("/").unwrap_or(&spec.target)).display().to_string();
    let missing = |what: String, err: io::Error| -> Result<Outcome, MountError> {
        if spec.if_missing == IfMissing::Fail || err.kind() != io::ErrorKind::NotFound {
            Err(fail(what, err))
        } else {
            Ok(Outcome::Missing(format!("{what}: {}", crate::error::describe(&err))))
        }
    };

    // The tree's /dev is the host's: a host /dev/log socket is already there.
    // Only a link (journald's, into /run) needs the socket bound over it.
    if spec.kind == Kind::Socket
        && spec.source == spec.target
        && std::fs::symlink_metadata(&spec.source).is_ok_and(|m| m.file_type().is_socket())
    {
        return Ok(Outcome::Mounted);
    }
    let source_c = CString::new(spec.source.as_os_str().as_bytes())
        .map_err(|_| fail(source_shown.clone(), io::Error::from(io::ErrorKind::InvalidInput)))?;
    let too_old = |e: io::Error| {
        if e.raw_os_error() == Some(libc::ENOSYS) {
            io::Error::other("the kernel lacks the new mount API (imageswitch needs Linux 5.12 or newer)")
        } else {
            e
        }
    };
    let detached = match with_fs_identity(spec.as_caller, uid, gid, || {
        sys::open_tree_clone(nix::fcntl::AT_FDCWD, &source_c, spec.recursive)
    }) {
        Ok(fd) => fd,
        Err(err) => return missing(format!("bind source {source_shown}"), too_old(err)),
    };
    let source_stat = fstat(&detached).map_err(|e| fail(format!("bind source {source_shown}"), e))?;
    if !kind_matches(spec.kind, &source_stat) {
        if spec.if_missing == IfMissing::Skip {
            return Ok(Outcome::Missing(format!("{source_shown} is not a {:?}", spec.kind)));
        }
        return Err(fail(format!("bind source {source_shown}"), io::Error::from_raw_os_error(libc::ENOTDIR)));
    }
    sys::mount_setattr(&detached, spec.attrs, spec.recursive)
        .map_err(|e| fail(format!("setting mount flags on {source_shown}"), too_old(e)))?;

    let target = match open_target(tree, &spec.target) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ELOOP) | Err(nix::errno::Errno::EXDEV) if spec.if_missing == IfMissing::Skip => {
            return Ok(Outcome::Missing(format!("{target_shown} is a symbolic link")));
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
    let socket_over_link = spec.kind == Kind::Socket && file_type(&target_stat) == SFlag::S_IFLNK;
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
    sys::move_mount_onto(&detached, &target)
        .map_err(|e| fail(format!("binding {source_shown} onto {target_shown}"), e))?;
    Ok(Outcome::Mounted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn plan_for(text: &str, home: &str) -> Vec<MountSpec> {
        let config = parse("t", text).expect("valid");
        plan(&config.sysroots[0], &config.defaults, Path::new(home))
    }

    fn targets(specs: &[MountSpec]) -> Vec<String> {
        specs.iter().map(|s| s.target.display().to_string()).collect()
    }

    #[test]
    fn default_plan_order_and_flags() {
        let specs = plan_for("[sysroot.a]\npath = \"/a\"\nbinds = [\"/data\"]\n", "/home/alice");
        assert_eq!(targets(&specs), ["/proc", "/sys", "/dev", "/home", "/tmp", "/data", "/dev/log"]);
        assert_eq!(specs[0].attrs, NOSUID | NODEV | NOEXEC);
        assert_eq!(specs[2].attrs, NOSUID);
        for bind in &specs[3..6] {
            assert_eq!(bind.attrs, NOSUID | NODEV);
            assert!(bind.as_caller && bind.recursive);
            assert_eq!(bind.if_missing, IfMissing::Fail);
        }
        assert_eq!(specs[6].kind, Kind::Socket);
        assert_eq!(specs[6].if_missing, IfMissing::Skip);
    }

    #[test]
    fn home_outside_binds_gets_its_own_bind() {
        let specs = plan_for("[defaults]\nbinds = [\"/tmp\"]\n[sysroot.a]\npath = \"/a\"\n", "/users/alice");
        let home = specs.iter().find(|s| s.target == Path::new("/users/alice")).expect("home bind");
        assert!(home.as_caller && home.caller_may_own_target);
        assert_eq!(home.if_missing, IfMissing::Warn);
        // Component-wise: /home2/x is not under /home.
        let specs = plan_for("[sysroot.a]\npath = \"/a\"\n", "/home2/alice");
        assert!(specs.iter().any(|s| s.target == Path::new("/home2/alice")));
    }

    #[test]
    fn no_log_socket_when_disabled() {
        let specs = plan_for("[defaults]\nlog_socket = \"\"\n[sysroot.a]\npath = \"/a\"\n", "/home/a");
        assert!(!specs.iter().any(|s| s.kind == Kind::Socket));
    }
}
