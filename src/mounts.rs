//! The tree's view: which host paths appear where inside, with which mount
//! flags, and attaching them in a private mount namespace.
//!
//! Each bind is made with the new mount API: `open_tree(OPEN_TREE_CLONE)`
//! copies the source into a detached mount, `mount_setattr` sets nosuid/nodev
//! on it and on every submount *before* it is visible anywhere, and
//! `move_mount` attaches it onto a destination descriptor that was resolved
//! inside the tree without following any symbolic link. Kernels without that
//! API (before 5.12) get the same view through mount(2); see [`classic`].
#![forbid(unsafe_code)]

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, openat};
use nix::sys::stat::Mode;
use nix::sys::stat::{FileStat, SFlag, fstat};
use nix::unistd::{Gid, Uid, setfsgid, setfsuid};

use crate::config::{Defaults, Sysroot};
use crate::sys;
use crate::trusted::stat_type;

pub const NOSUID: u64 = libc::MOUNT_ATTR_NOSUID;
pub const NODEV: u64 = libc::MOUNT_ATTR_NODEV;
pub const NOEXEC: u64 = libc::MOUNT_ATTR_NOEXEC;

/// What a bind joins: the source and the destination must both be one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindKind {
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
    pub kind: BindKind,
    pub if_missing: IfMissing,
}

/// Host paths every tree shows at the same path, before any configured bind.
const SYSTEM_BINDS: [&str; 3] = ["/proc", "/sys", "/dev"];

/// Whether `path` is already shown under a system bind or another of `binds`.
fn shown_by_another(binds: &[&Path], path: &Path) -> bool {
    SYSTEM_BINDS
        .iter()
        .map(Path::new)
        .chain(binds.iter().copied())
        .any(|other| other != path && path.starts_with(other))
}

/// The configured binds that get a mount of their own. Every bind shows its
/// host path at the same path, recursively: one under another (/tmp/data
/// under /tmp, anything under /dev) is already there, and a mount of its own
/// would resolve its destination through the other bind — through a
/// directory any user may write to, and squat.
pub fn own_binds<'a>(sysroot: &'a Sysroot, defaults: &'a Defaults) -> Vec<&'a Path> {
    let binds = sysroot.all_binds(defaults);
    binds.iter().copied().filter(|bind| !shown_by_another(&binds, bind)).collect()
}

/// A bind whose source lies where a user other than root may remove,
/// replace or plant it: under `ancestor`, for `why`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedSource {
    pub bind: PathBuf,
    pub ancestor: PathBuf,
    pub why: String,
}

impl std::fmt::Display for SharedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "bind source {} lies under {}, {}: users other than root could block or replace it for everyone; \
             move it under a directory only root can write",
            self.bind.display(),
            self.ancestor.display(),
            self.why
        )
    }
}

/// The first of `sysroot`'s own binds whose source `shared_ancestor` (see
/// [`crate::trusted::shared_ancestor`]) places under a directory someone
/// other than root may change. Such a sysroot is refused whole: a bind made
/// or skipped by what a user left there would let them stop others' entries
/// or choose what they see.
pub fn shared_source(
    sysroot: &Sysroot,
    defaults: &Defaults,
    shared_ancestor: impl Fn(&Path) -> Option<(PathBuf, String)>,
) -> Option<SharedSource> {
    own_binds(sysroot, defaults).into_iter().find_map(|bind| {
        shared_ancestor(bind).map(|(ancestor, why)| SharedSource { bind: bind.to_path_buf(), ancestor, why })
    })
}

/// The binds for `sysroot`, in the order they are made. `home` is the
/// caller's home directory, bound on its own when no other bind shows it;
/// `None` (a scheduler's host mounts, for no one in particular) binds no home.
/// A home of `/` or a relative one (a passwd entry's) gets no bind either.
pub fn plan(sysroot: &Sysroot, defaults: &Defaults, home: Option<&Path>) -> Vec<MountSpec> {
    let system = |path: &str, attrs: u64| MountSpec {
        source: PathBuf::from(path),
        target: PathBuf::from(path),
        recursive: true,
        attrs,
        as_caller: false,
        caller_may_own_target: false,
        kind: BindKind::Directory,
        if_missing: IfMissing::Fail,
    };
    let mut specs = vec![
        system("/proc", NOSUID | NODEV | NOEXEC),
        system("/sys", NOSUID | NODEV | NOEXEC),
        // Device nodes are what /dev is for: nodev would break /dev/null.
        system("/dev", NOSUID),
    ];
    for bind in own_binds(sysroot, defaults) {
        let optional = defaults.binds_if_present.iter().any(|b| b == bind) && !sysroot.binds.iter().any(|b| b == bind);
        specs.push(MountSpec {
            source: bind.to_path_buf(),
            target: bind.to_path_buf(),
            recursive: true,
            attrs: NOSUID | NODEV,
            as_caller: true,
            caller_may_own_target: false,
            kind: BindKind::Directory,
            if_missing: if optional { IfMissing::Skip } else { IfMissing::Fail },
        });
    }
    let binds = sysroot.all_binds(defaults);
    let own_home = home.filter(|home| {
        home.is_absolute() && *home != Path::new("/") && !shown_by_another(&binds, home) && !binds.contains(home)
    });
    if let Some(home) = own_home {
        specs.push(MountSpec {
            source: home.to_path_buf(),
            target: home.to_path_buf(),
            recursive: true,
            attrs: NOSUID | NODEV,
            as_caller: true,
            caller_may_own_target: true,
            kind: BindKind::Directory,
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
            kind: BindKind::Socket,
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
fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
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

    let source_c = CString::new(spec.source.as_os_str().as_bytes())
        .map_err(|_| fail(source_shown.clone(), io::Error::from(io::ErrorKind::InvalidInput)))?;
    let detached = with_fs_identity(spec.as_caller, uid, gid, || {
        sys::open_tree_clone(nix::fcntl::AT_FDCWD, &source_c, spec.recursive)
    });
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

/// Binds the tree over itself nodev and nosuid, so device nodes and setuid
/// files in the tree do nothing; returns a descriptor of the new mount's
/// root, which every later step uses instead of `tree`.
pub fn seal_tree(tree: &OwnedFd) -> io::Result<OwnedFd> {
    let attrs = NODEV | NOSUID;
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

/// (mount id, mount point) of every mount in this namespace, from
/// /proc/self/mountinfo.
pub fn mount_table() -> io::Result<Vec<(u64, PathBuf)>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let id = fields.next()?.parse().ok()?;
            let point = fields.nth(3)?;
            Some((id, PathBuf::from(OsStr::from_bytes(&unescape_mountinfo(point)))))
        })
        .collect())
}

/// mountinfo's octal escapes (`\040` for a space, ...).
fn unescape_mountinfo(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        match (bytes[i], octal) {
            (b'\\', Some(value)) => {
                out.push(value);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// Kernels before 5.12 (no open_tree/mount_setattr): a recursive bind with
/// mount(2) onto the destination's descriptor, then a bind remount of each new
/// mount — found by comparing mount ids in mountinfo before and after, and
/// reached again by descriptor — adding nosuid/nodev/noexec to the flags each
/// already has.
mod classic {
    use super::*;
    use nix::mount::{MsFlags, mount};
    use nix::sys::statvfs::{FsFlags, fstatvfs};

    fn ms_flags(attrs: u64) -> MsFlags {
        let mut flags = MsFlags::empty();
        flags.set(MsFlags::MS_NOSUID, attrs & NOSUID != 0);
        flags.set(MsFlags::MS_NODEV, attrs & NODEV != 0);
        flags.set(MsFlags::MS_NOEXEC, attrs & NOEXEC != 0);
        flags
    }

    /// The per-mount flags a bind remount must repeat so as not to clear them.
    fn current_flags(fd: &OwnedFd) -> nix::Result<MsFlags> {
        let have = fstatvfs(fd)?.flags();
        let mut flags = MsFlags::empty();
        for (st, ms) in [
            (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            flags.set(ms, have.contains(st));
        }
        Ok(flags)
    }

    fn mount_ids() -> io::Result<Vec<u64>> {
        Ok(mount_table()?.into_iter().map(|(id, _)| id).collect())
    }

    /// Adds `attrs` to every mount that is not in `before` and lies at or
    /// under `target` (a path inside the tree), reaching each one by walking
    /// from `tree`, whose own path in this namespace is `tree_real`. A host
    /// mount stacked under another at the same point (the host's /dev/pts
    /// often is) stays covered: unreachable by path, and so unusable.
    fn flag_new_mounts(tree: &OwnedFd, tree_real: &Path, target: &Path, before: &[u64], attrs: u64) -> io::Result<()> {
        let target_real = tree_real.join(target.strip_prefix("/").unwrap_or(target));
        for (_, point) in mount_table()?.into_iter().filter(|(id, _)| !before.contains(id)) {
            let Ok(inside) = point.strip_prefix(tree_real) else { continue };
            if !point.starts_with(&target_real) {
                continue;
            }
            let fd = open_target(tree, &Path::new("/").join(inside))?;
            let remount = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | current_flags(&fd)? | ms_flags(attrs);
            mount(None::<&str>, fd_path(&fd).as_str(), None::<&str>, remount, None::<&str>)?;
        }
        Ok(())
    }

    fn tree_real_path(tree: &OwnedFd) -> io::Result<PathBuf> {
        std::fs::read_link(fd_path(tree))
    }

    pub(super) fn bind(
        tree: &OwnedFd,
        target: &OwnedFd,
        spec: &MountSpec,
        uid: Uid,
        gid: Gid,
    ) -> Result<Outcome, (String, io::Error)> {
        let shown = spec.source.display().to_string();
        let context = |what: &str| {
            let what = format!("{what} {shown}");
            move |e: io::Error| (what, e)
        };
        let tree_real = tree_real_path(tree).map_err(context("locating the tree for"))?;
        let before = mount_ids().map_err(context("reading mountinfo for"))?;
        let mut flags = MsFlags::MS_BIND;
        flags.set(MsFlags::MS_REC, spec.recursive);
        with_fs_identity(spec.as_caller, uid, gid, || {
            mount(Some(&spec.source), fd_path(target).as_str(), None::<&str>, flags, None::<&str>)
        })
        .map_err(|e| context("bind source")(e.into()))?;
        flag_new_mounts(tree, &tree_real, &spec.target, &before, spec.attrs)
            .map_err(context("setting mount flags on"))?;
        Ok(Outcome::Mounted)
    }

    /// [`super::seal_tree`] without the new mount API.
    pub(super) fn seal(tree: &OwnedFd, attrs: u64) -> io::Result<OwnedFd> {
        let tree_real = tree_real_path(tree)?;
        let before = mount_ids()?;
        let path = fd_path(tree);
        mount(Some(path.as_str()), path.as_str(), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)?;
        // The old descriptor still names the covered directory; the path,
        // whose every component was checked root-owned, now crosses into the
        // new mount.
        let sealed = openat(
            nix::fcntl::AT_FDCWD,
            &tree_real,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let (old, new) = (fstat(tree)?, fstat(&sealed)?);
        if (old.st_dev, old.st_ino) != (new.st_dev, new.st_ino) {
            return Err(io::Error::other("the tree changed while it was being bound"));
        }
        flag_new_mounts(&sealed, &tree_real, Path::new("/"), &before, attrs)?;
        Ok(sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn plan_for(text: &str, home: &str) -> Vec<MountSpec> {
        let config = parse("t", text).expect("valid");
        plan(&config.sysroots[0], &config.defaults, Some(Path::new(home)))
    }

    fn targets(specs: &[MountSpec]) -> Vec<String> {
        specs.iter().map(|s| s.target.display().to_string()).collect()
    }

    #[test]
    fn default_plan_order_and_flags() {
        let specs = plan_for("[sysroot.a]\npath = \"/a\"\nbinds = [\"/data\"]\n", "/home/alice");
        assert_eq!(targets(&specs), ["/proc", "/sys", "/dev", "/home", "/tmp", "/var/tmp", "/data", "/dev/log"]);
        assert_eq!(specs[0].attrs, NOSUID | NODEV | NOEXEC);
        assert_eq!(specs[2].attrs, NOSUID);
        for bind in &specs[3..7] {
            assert_eq!(bind.attrs, NOSUID | NODEV);
            assert!(bind.as_caller && bind.recursive);
            // The built-in /var/tmp only where the tree has it (trees made by
            // hand may lack it); every other bind is required.
            let expected = if bind.target == Path::new("/var/tmp") { IfMissing::Skip } else { IfMissing::Fail };
            assert_eq!(bind.if_missing, expected, "{}", bind.target.display());
        }
        assert_eq!(specs[7].kind, BindKind::Socket);
        assert_eq!(specs[7].if_missing, IfMissing::Skip);
        // Stated in the configuration, /var/tmp is required like any bind.
        for stated in [
            "[defaults]\nbinds = [\"/var/tmp\"]\n[sysroot.a]\npath = \"/a\"\n",
            "[sysroot.a]\npath = \"/a\"\nbinds = [\"/var/tmp\"]\n",
        ] {
            let specs = plan_for(stated, "/home/alice");
            let var_tmp = specs.iter().find(|s| s.target == Path::new("/var/tmp")).expect("/var/tmp bind");
            assert_eq!(var_tmp.if_missing, IfMissing::Fail, "{stated}");
        }
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
    fn no_home_or_a_home_of_slash_or_relative_gets_no_bind_of_its_own() {
        let config = parse("t", "[defaults]\nbinds = [\"/tmp\"]\n[sysroot.a]\npath = \"/a\"\n").expect("valid");
        let without = targets(&plan(&config.sysroots[0], &config.defaults, None));
        assert_eq!(without, ["/proc", "/sys", "/dev", "/tmp", "/dev/log"]);
        for home in ["/", "home/alice", ""] {
            assert_eq!(
                targets(&plan_for("[defaults]\nbinds = [\"/tmp\"]\n[sysroot.a]\npath = \"/a\"\n", home)),
                without
            );
        }
    }

    #[test]
    fn a_bind_another_bind_already_shows_gets_no_mount_of_its_own() {
        let specs = plan_for(
            "[defaults]\nbinds = [\"/tmp/shared-data\", \"/home\"]\n\
             [sysroot.a]\npath = \"/a\"\nbinds = [\"/tmp\", \"/dev/shm\", \"/tmp2\", \"/home/x/y\"]\n",
            "/tmp/alice",
        );
        assert_eq!(targets(&specs), ["/proc", "/sys", "/dev", "/home", "/tmp", "/tmp2", "/dev/log"]);
        let specs = plan_for("[defaults]\nbinds = [\"/home/alice\"]\n[sysroot.a]\npath = \"/a\"\n", "/home/alice");
        assert_eq!(targets(&specs), ["/proc", "/sys", "/dev", "/home/alice", "/dev/log"]);
    }

    #[test]
    fn a_bind_source_under_a_directory_others_may_change_refuses_the_sysroot() {
        let config = crate::config::parse(
            "/etc/sysroots.toml",
            "[defaults]\nbinds = [\"/tmp\", \"/home\"]\n[sysroot.a]\npath = \"/a\"\n\
             binds = [\"/tmp/under-a-bind\", \"/srv/data\", \"/var/tmp/r10-src\", \"/scratch/x\"]\n",
        )
        .expect("config");
        let sysroot = &config.sysroots[0];
        let probed = std::cell::RefCell::new(Vec::new());
        // The real rule on this machine: /var/tmp is shared, / and /var are root-only.
        let found = shared_source(sysroot, &config.defaults, |bind| {
            probed.borrow_mut().push(bind.to_path_buf());
            crate::trusted::shared_ancestor(bind)
        });
        let found = found.expect("/var/tmp/r10-src is refused");
        assert_eq!(
            (found.bind.as_path(), found.ancestor.as_path()),
            (Path::new("/var/tmp/r10-src"), Path::new("/var/tmp"))
        );
        assert_eq!(
            found.to_string(),
            "bind source /var/tmp/r10-src lies under /var/tmp, writable by group or others (mode 1777): users other \
             than root could block or replace it for everyone; move it under a directory only root can write"
        );
        // A bind another bind shows is never resolved on its own, so not judged.
        assert_eq!(probed.into_inner(), ["/tmp", "/home", "/srv/data", "/var/tmp/r10-src"].map(PathBuf::from));
        // Under the default binds (/var/tmp among them) it needs no mount of its own.
        let defaults = crate::config::Defaults::default();
        assert_eq!(shared_source(sysroot, &defaults, crate::trusted::shared_ancestor), None);
        // The default binds themselves lie under root-only directories.
        for fine in ["/home", "/tmp", "/var/tmp", "/srv/missing/x"] {
            assert_eq!(crate::trusted::shared_ancestor(Path::new(fine)), None, "{fine}");
        }
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/a\\040b\\011c"), b"/a b\tc");
        assert_eq!(unescape_mountinfo("/plain"), b"/plain");
        assert_eq!(unescape_mountinfo("/odd\\04"), b"/odd\\04");
    }

    #[test]
    fn no_log_socket_when_disabled() {
        let specs = plan_for("[defaults]\nlog_socket = \"\"\n[sysroot.a]\npath = \"/a\"\n", "/home/a");
        assert!(!specs.iter().any(|s| s.kind == BindKind::Socket));
    }
}
