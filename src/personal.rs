//! The caller-specific part of the view, made per entry after the shared one:
//! the caller's own passwd and group entries, host files under /etc (hosts,
//! resolv.conf, the time zone), and the caller's /run/user/UID.
//!
//! Everything is resolved on the host first ([`prepare`]: NSS, host files
//! read with the caller's filesystem identity). [`present`] then shows it in
//! the private namespace only: each file that differs from the tree's is
//! bound read-only over it from a root-only cache on the host
//! ([`crate::filecache`]). Where the tree has no file there to cover (or for
//! /run/user/UID, no directory), a small tmpfs holds the new files and is
//! laid under a read-only overlay whose lower layer is the tree's own /etc
//! (or /run). The tree is never written, its other entries stay as they
//! are, and its own entry for the caller's uid or a gid wins over the host's.
#![forbid(unsafe_code)]

use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, openat};
use nix::mount::{MsFlags, mount};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, mkdirat};
use nix::sys::statfs::{PROC_SUPER_MAGIC, SYSFS_MAGIC, fstatfs};
use nix::unistd::{Gid, Uid};

use crate::access::Caller;
use crate::accounts::{Account, account_lines, knows, merged_databases};
use crate::config::{Defaults, Sysroot};
use crate::error::{Stream, say};
use crate::filecache;
use crate::mounts::{self, BindKind, IfMissing, MountSpec, NODEV, NOSUID};
use crate::nss_files;
use crate::trusted::stat_type;

/// What [`present`] shows, resolved on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Personal {
    /// The caller's uid and gids (real, supplementary and passwd's primary,
    /// sorted), whose passwd and group entries are shown where the tree has
    /// none for one of them; looked up through NSS only then (see
    /// [`account_files`]). `None`: the tree's own databases apply, whole.
    pub ids: Option<(u32, Vec<u32>)>,
    /// Host files to show at the same paths (each under /etc, listed once).
    pub host_files: Vec<PathBuf>,
    /// The caller's own /run/user/UID on the host, when it exists.
    pub run_user: Option<PathBuf>,
}

/// Largest host file or tree account database read.
const MAX_FILE_BYTES: u64 = 16 << 20;

/// The contents of a regular file, at most [`MAX_FILE_BYTES`].
fn read_limited(file: std::fs::File) -> io::Result<Vec<u8>> {
    filecache::read_regular(&file, None, MAX_FILE_BYTES)?.ok_or_else(|| io::Error::other("larger than 16 MiB"))
}

/// Resolves, on the host and before anything is mounted, what the caller sees
/// of themselves inside `sysroot`, and which host files are shown. Problems
/// are warnings: the entry goes on with the tree's own view of what could not
/// be resolved.
/// `run_user` is [`own_run_user`]'s answer, looked at as the caller.
pub fn prepare(caller: &Caller, sysroot: &Sysroot, defaults: &Defaults, run_user: Option<PathBuf>) -> Personal {
    let mut gids: Vec<u32> =
        caller.groups.iter().chain([&caller.gid, &caller.passwd_gid]).map(|g| g.as_raw()).collect();
    gids.sort_unstable();
    gids.dedup();
    Personal { ids: Some((caller.uid.as_raw(), gids)), host_files: host_file_paths(sysroot, defaults), run_user }
}

/// The host files `sysroot` shows, each once, in the configured order.
pub fn host_file_paths(sysroot: &Sysroot, defaults: &Defaults) -> Vec<PathBuf> {
    let listed = sysroot.host_files(defaults);
    let once = listed.iter().enumerate().filter(|(i, path)| !listed[..*i].contains(path)).map(|(_, p)| p.clone());
    once.collect()
}

/// The caller's own /run/user/UID on the host: from the real uid, never the
/// environment; only a directory (no link) the caller owns. Call it with the
/// caller's identity (their filesystem uid at least), so that it is one
/// they reach themselves.
pub fn own_run_user(uid: Uid) -> Option<PathBuf> {
    let run_user = PathBuf::from(format!("/run/user/{uid}"));
    let owned = std::fs::symlink_metadata(&run_user);
    owned.is_ok_and(|m| m.is_dir() && m.uid() == uid.as_raw()).then_some(run_user)
}

/// The caller's entries as lines for the tree's databases, from NSS on the
/// host; `None` (with a warning) when they cannot be shown faithfully.
fn account(sysroot: &str, uid: u32, gids: &[u32]) -> Option<Account> {
    let account = match nss_files::passwd_by_uid(uid) {
        Ok(Some(pw)) => account_lines(&pw, gids, nss_files::group_by_gid),
        Ok(None) => Err(format!("uid {uid} has no passwd entry")),
        Err(e) => Err(format!("looking up uid {uid}: {}", crate::error::describe(&e))),
    };
    account
        .map_err(|why| {
            warn(sysroot, &format!("cannot show your account inside ({why}); the tree's passwd and group apply"))
        })
        .ok()
}

fn warn(sysroot: &str, what: &str) {
    say(Stream::Err, &format!("imageswitch: warning: {sysroot}: {what}"));
}

/// A failed step of [`present`]: what, and why.
pub type Failure = (String, io::Error);

fn failed(what: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> Failure {
    let what = what.into();
    move |errno| (what, errno.into())
}

/// Opens `path` inside the tree (no link followed) as a directory to work in.
fn open_dir(tree: &OwnedFd, path: &Path) -> Result<OwnedFd, Failure> {
    let found = mounts::open_target(tree, path).map_err(failed(format!("opening {} in the tree", path.display())))?;
    let stat = fstat(&found).map_err(failed(path.display().to_string()))?;
    if stat_type(&stat) != SFlag::S_IFDIR {
        return Err((format!("{} in the tree", path.display()), io::Error::from_raw_os_error(libc::ENOTDIR)));
    }
    openat(&found, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(failed(path.display().to_string()))
}

/// The contents of a regular file `name` in `dir`; empty when absent.
fn read_tree_file(dir: &OwnedFd, name: &str) -> Result<Vec<u8>, Failure> {
    let what = || format!("reading /etc/{name} in the tree");
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
    match openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => read_limited(std::fs::File::from(fd)).map_err(|e| (what(), e)),
        Err(nix::errno::Errno::ENOENT) => Ok(Vec::new()),
        Err(errno) => Err((what(), errno.into())),
    }
}

/// Writes `contents` at `relative` under `dir`, creating directories.
fn write_layer_file(dir: &OwnedFd, relative: &Path, contents: &[u8]) -> Result<(), Failure> {
    let what = || format!("writing {} into the per-entry layer", relative.display());
    let (Some(name), parent) = (relative.file_name(), relative.parent().unwrap_or(Path::new(""))) else {
        return Err((what(), io::Error::from_raw_os_error(libc::EINVAL)));
    };
    write_layer_dir(dir, parent)?;
    let parent = if parent.as_os_str().is_empty() {
        open_dir_at(dir, ".")?
    } else {
        open_dir_at(dir, &parent.to_string_lossy())?
    };
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(&parent, name, flags, Mode::from_bits_truncate(0o644)).map_err(|e| (what(), e.into()))?;
    std::fs::File::from(fd).write_all(contents).map_err(|e| (what(), e))
}

/// Mounts a read-only overlay on `point` in the tree: `layer` over `lower`
/// (the tree's own directory there, reached before anything covered it).
fn overlay(tree: &OwnedFd, point: &Path, layer: &OwnedFd, lower: &OwnedFd) -> Result<(), Failure> {
    let top = mounts::open_target(tree, point).map_err(failed(format!("opening {} in the tree", point.display())))?;
    let options = format!("lowerdir={}:{}", mounts::fd_path(layer), mounts::fd_path(lower));
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(Some("overlay"), mounts::fd_path(&top).as_str(), Some("overlay"), flags, Some(options.as_str()))
        .map_err(failed(format!("overlay on {}", point.display())))
}

/// What is shown under /etc for one entry, each with its path relative to
/// /etc: see [`account_files`] and [`host_files`].
pub type EtcFiles = Vec<(PathBuf, Shown)>;

/// The tree's passwd and group (in the tree at `tree`) with the caller's
/// lines added, where they differ from the tree's own. Runs as root where
/// the host's NSS still answers; loads nothing from the tree. Errors: the
/// tree's /etc or its databases cannot be read.
pub fn account_files(tree: &OwnedFd, sysroot: &str, personal: &Personal) -> Result<EtcFiles, Failure> {
    let mut shown: EtcFiles = Vec::new();
    let Some((uid, gids)) = &personal.ids else { return Ok(shown) };
    // One step, no link followed: the tree's own /etc, as open_dir finds it.
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let dir = openat(tree, "etc", flags, Mode::empty()).map_err(failed("opening /etc in the tree"))?;
    let (passwd, group) = (read_tree_file(&dir, "passwd")?, read_tree_file(&dir, "group")?);
    if let Some(account) = (!knows(&passwd, &group, *uid, gids)).then(|| account(sysroot, *uid, gids)).flatten() {
        let (passwd, group) = merged_databases(&passwd, &group, &account);
        shown.extend(passwd.map(|db| (PathBuf::from("passwd"), Shown::Made(db))));
        shown.extend(group.map(|db| (PathBuf::from("group"), Shown::Made(db))));
    }
    Ok(shown)
}

/// The host files `personal` shows, opened now with the caller's
/// filesystem identity (a file the caller cannot read is not shown), and a
/// warning for each that cannot be shown for another reason than being
/// absent.
pub fn host_files(personal: &Personal, uid: Uid, gid: Gid) -> OpenedHostFiles {
    if personal.host_files.is_empty() {
        return (EtcFiles::new(), Vec::new());
    }
    mounts::with_fs_identity(true, uid, gid, || host_files_as_caller(&personal.host_files))
}

/// Host files opened, and a warning for each that could not be.
pub type OpenedHostFiles = (EtcFiles, Vec<String>);

/// [`host_files`] for `paths`, in the caller's identity already (called
/// inside [`crate::privileges::as_caller`] or [`mounts::with_fs_identity`]).
pub fn host_files_as_caller(paths: &[PathBuf]) -> OpenedHostFiles {
    let (mut shown, mut warnings) = (EtcFiles::new(), Vec::new());
    for (path, file) in open_host_files(paths) {
        match file {
            Ok((file, st)) => {
                shown.push((path.strip_prefix("/etc").unwrap_or(path).to_path_buf(), Shown::Host(file, st)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => warnings.push(format!("host file {} not shown: {}", path.display(), crate::error::describe(&e))),
        }
    }
    (shown, warnings)
}

/// Says each of `warnings` (from [`host_files`]) as a warning about `sysroot`.
pub fn warn_all(sysroot: &str, warnings: &[String]) {
    for what in warnings {
        warn(sysroot, what);
    }
}

/// Opens each of `paths` as a regular file the kernel does not make up,
/// with the identity this process has (the caller's: see the callers).
fn open_host_files(paths: &[PathBuf]) -> Vec<(&PathBuf, io::Result<(std::fs::File, FileStat)>)> {
    // Non-blocking: a FIFO at the end of a link must not hold the entry.
    let open = |path| std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path);
    paths.iter().map(|path| (path, open(path).and_then(regular))).collect()
}

/// The host files of `shown` opened again in this mount namespace (a mount
/// is copied only from the namespace it is in), each checked to be the
/// same file. Errors: one cannot be opened, or is another file now.
pub fn reopen_host_files(shown: &EtcFiles, uid: Uid, gid: Gid) -> io::Result<EtcFiles> {
    let paths: Vec<PathBuf> = shown.iter().map(|(rel, _)| Path::new("/etc").join(rel)).collect();
    let mut out = EtcFiles::new();
    let opened = mounts::with_fs_identity(true, uid, gid, || open_host_files(&paths));
    for ((rel, before), (_, now)) in shown.iter().zip(opened) {
        let (Shown::Host(_, a), (now, b)) = (before, now?) else { return Err(io::Error::other("not a host file")) };
        if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
            return Err(io::Error::other("a host file was replaced"));
        }
        out.push((rel.clone(), Shown::Host(now, b)));
    }
    Ok(out)
}

/// Binds each of `shown` read-only over the tree's own file or link at its
/// path under /etc, one mount per file. False when the tree has nothing at
/// one of the paths or a bind cannot be made; some of the binds may then
/// be made already (the per-entry path lays an overlay over them; the
/// pinned view gives the pin up).
pub fn bind_etc(tree: &OwnedFd, shown: &EtcFiles) -> bool {
    open_dir(tree, Path::new("/etc")).is_ok_and(|dir| bound_over_the_trees(tree, &dir, Path::new("/etc"), shown))
}

/// Shows `shown` (from [`account_files`] and [`host_files`]) inside the
/// tree at `tree`, and makes the mount point of the caller's `run_user`
/// (bound afterwards with [`run_user_spec`]). `shared` are the targets of
/// the binds already made (the pinned host files' among them): those under a
/// directory an overlay covers are carried over onto it. Runs as root in a
/// private namespace, before the chroot; loads nothing from the tree.
pub fn present(
    tree: &OwnedFd,
    sysroot: &str,
    shown: EtcFiles,
    run_user: Option<&Path>,
    shared: &[&Path],
) -> Result<(), Failure> {
    let (etc, run) = (Path::new("/etc"), Path::new("/run"));
    let lower_etc = if shown.is_empty() { None } else { Some(open_dir(tree, etc)?) };
    let mut etc_layer: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let bound = |dir| bound_over_the_trees(tree, dir, etc, &shown);
    if !shown.is_empty() && !lower_etc.as_ref().is_some_and(bound) {
        for (relative, what) in shown {
            let contents = match what {
                Shown::Made(contents) => contents,
                Shown::Host(file, _) => {
                    read_limited(file).map_err(|e| (format!("reading the host's /etc/{}", relative.display()), e))?
                }
            };
            etc_layer.push((relative, contents));
        }
    }
    // The layer's files are written by this process, under the caller's
    // file-size limit (the kernel applies it to root too, and raising it
    // needs CAP_SYS_RESOURCE, which is not always ours): when a file would
    // not fit, the tree's /etc is shown whole rather than a partial layer.
    let fsize = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_FSIZE).map_or(0, |(soft, _)| soft);
    if etc_layer.iter().any(|(_, contents)| contents.len() as u64 > fsize) {
        say(
            Stream::Err,
            "imageswitch: warning: your file-size limit (ulimit -f) is too small for your passwd, group and host \
             files: the tree's own are shown",
        );
        etc_layer.clear();
    }
    // The session directory needs a layer over /run when the tree has no
    // directory to bind it onto; a tree without /run has nothing to lay one
    // over, and is never written.
    let run_has_point = |path: &Path| {
        mounts::open_target(tree, path).and_then(|fd| fstat(&fd)).is_ok_and(|st| stat_type(&st) == SFlag::S_IFDIR)
    };
    let run_user = run_user.filter(|path| {
        let shown = run_has_point(run);
        if !shown {
            let why = "the tree has no /run directory (sysrootctl apply makes one)";
            warn(sysroot, &format!("{} is not shown: {why}", path.display()));
        }
        shown
    });
    let lower_run = match run_user {
        Some(path) if !run_has_point(path) => Some(open_dir(tree, run)?),
        _ => None,
    };

    let stage =
        if etc_layer.is_empty() { lower_run.as_ref().map(|d| (d, run)) } else { lower_etc.as_ref().map(|d| (d, etc)) };
    if let Some((stage, stage_path)) = stage {
        // Binds already under a directory an overlay is about to cover, held
        // before the layer or the overlay hides them, and made again on top.
        let held_under = |point: &Path| -> Vec<(&Path, OwnedFd)> {
            shared
                .iter()
                .filter(|target| target.starts_with(point))
                .filter_map(|target| Some((*target, mounts::open_target(tree, target).ok()?)))
                .collect()
        };
        let carried = if etc_layer.is_empty() { Vec::new() } else { held_under(etc) };
        let carried_run = if lower_run.is_some() { held_under(run) } else { Vec::new() };
        // The layer is a tmpfs mounted on the first directory it goes over,
        // where the overlay then covers it: reachable from nowhere else.
        let size = etc_layer.iter().map(|(_, c)| c.len()).sum::<usize>() + (1 << 20);
        let options = format!("mode=0755,uid=0,gid=0,size={size},nr_inodes=1024");
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        mount(Some("tmpfs"), mounts::fd_path(stage).as_str(), Some("tmpfs"), flags, Some(options.as_str()))
            .map_err(failed("the per-entry layer"))?;
        let layer = open_dir(tree, stage_path)?;
        if let Some(lower) = &lower_etc.as_ref().filter(|_| !etc_layer.is_empty()) {
            let layer_etc = owned_by_root(|| {
                write_layer_dir(&layer, Path::new("etc"))?;
                let layer_etc = open_dir_at(&layer, "etc")?;
                for (relative, contents) in &etc_layer {
                    write_layer_file(&layer_etc, relative, contents)?;
                }
                Ok(layer_etc)
            })?;
            overlay(tree, etc, &layer_etc, lower)?;
            bind_again(tree, carried)?;
        }
        if let (Some(lower), Some(path)) = (&lower_run, run_user) {
            let inside = path.strip_prefix("/").unwrap_or(path);
            owned_by_root(|| write_layer_dir(&layer, inside))?;
            overlay(tree, run, &open_dir_at(&layer, "run")?, lower)?;
            bind_again(tree, carried_run)?;
        }
    }
    Ok(())
}

/// What [`present`] shows at a path under /etc.
pub enum Shown {
    /// Contents made for this entry (the tree's passwd or group with the
    /// caller's lines), bound from the root-only cache ([`filecache`]).
    Made(Vec<u8>),
    /// A host file, opened with the caller's identity, bound as it is, and
    /// its `fstat` when opened.
    Host(std::fs::File, FileStat),
}

impl Shown {
    /// The host file's `fstat` when it was opened.
    pub fn host_stat(&self) -> Option<&FileStat> {
        match self {
            Shown::Host(_, st) => Some(st),
            Shown::Made(_) => None,
        }
    }

    /// A made file's contents.
    pub fn made(&self) -> Option<&[u8]> {
        match self {
            Shown::Made(contents) => Some(contents),
            Shown::Host(..) => None,
        }
    }
}

/// Whether the tree has a file or link at each of `shown`'s paths under
/// /etc, for a bind over it (without one, the per-entry path lays an
/// overlay instead).
pub fn has_places(tree: &OwnedFd, shown: &EtcFiles) -> bool {
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    shown.is_empty()
        || open_dir(tree, Path::new("/etc")).is_ok_and(|etc| {
            shown.iter().all(|(path, _)| {
                openat(&etc, path.as_path(), flags, Mode::empty())
                    .and_then(|fd| fstat(&fd))
                    .is_ok_and(|st| matches!(stat_type(&st), SFlag::S_IFREG | SFlag::S_IFLNK))
            })
        })
}

/// `file` if it is a regular file, and not one the kernel makes up (procfs,
/// sysfs: what those hold depends on who reads them, and a host file is
/// shown to the command, not to imageswitch).
fn regular(file: std::fs::File) -> io::Result<(std::fs::File, FileStat)> {
    let st = fstat(&file)?;
    if stat_type(&st) != SFlag::S_IFREG {
        return Err(io::Error::other("not a regular file"));
    }
    let kind = fstatfs(&file)?.filesystem_type();
    if kind == PROC_SUPER_MAGIC || kind == SYSFS_MAGIC {
        return Err(io::Error::other("a file the kernel makes up (procfs or sysfs)"));
    }
    Ok((file, st))
}

/// Binds each of `shown` (paths under `etc`) read-only over the tree's own
/// file or link there: one mount per file, no new superblock. False when the
/// tree has nothing at one of the paths, or a bind cannot be made (a
/// directory there):
/// the caller then lays all of them in a per-entry layer under an overlay of
/// `etc` instead (which hides any bind made here).
fn bound_over_the_trees(tree: &OwnedFd, etc_dir: &OwnedFd, etc: &Path, shown: &[(PathBuf, Shown)]) -> bool {
    let targets: Option<Vec<OwnedFd>> = shown
        .iter()
        .map(|(relative, _)| {
            // Most are directly in /etc, opened already; deeper ones are
            // walked from the tree's root, no link followed.
            // A directory there makes its bind fail, and so the overlay.
            if relative.components().count() == 1 {
                let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                openat(etc_dir, relative.as_path(), flags, Mode::empty()).ok()
            } else {
                mounts::open_target(tree, &etc.join(relative)).ok()
            }
        })
        .collect();
    let Some(targets) = targets else { return false };
    let made: Vec<&[u8]> = shown
        .iter()
        .filter_map(|(_, what)| match what {
            Shown::Made(contents) => Some(contents.as_slice()),
            _ => None,
        })
        .collect();
    let Ok(cached) = filecache::files(&made) else { return false };
    let mut cached = cached.into_iter().zip(made);
    shown.iter().zip(&targets).all(|((_, what), target)| match what {
        Shown::Made(_) => {
            cached.next().is_some_and(|(file, contents)| filecache::bind_cached(file, contents, target).is_ok())
        }
        Shown::Host(file, _) => filecache::bind_file(file, target).is_ok(),
    })
}

/// Makes the held binds again at their paths, over an overlay that hid them.
fn bind_again(tree: &OwnedFd, held: Vec<(&Path, OwnedFd)>) -> Result<(), Failure> {
    for (target, held) in held {
        let new =
            mounts::open_target(tree, target).map_err(failed(format!("opening {} in the tree", target.display())))?;
        let flags = MsFlags::MS_BIND | MsFlags::MS_REC;
        mount(Some(mounts::fd_path(&held).as_str()), mounts::fd_path(&new).as_str(), None::<&str>, flags, None::<&str>)
            .map_err(failed(format!("binding {} again over the overlay", target.display())))?;
    }
    Ok(())
}

/// Runs `f` with root's filesystem ids: the setuid process's own fsgid is
/// still the caller's, which would otherwise own the files it creates.
fn owned_by_root<T>(f: impl FnOnce() -> T) -> T {
    mounts::with_fs_identity(true, Uid::from_raw(0), Gid::from_raw(0), f)
}

fn open_dir_at(dir: &OwnedFd, name: &str) -> Result<OwnedFd, Failure> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    openat(dir, name, flags, Mode::empty()).map_err(failed(format!("opening {name} in the per-entry layer")))
}

/// Creates `relative` and its parents as root-owned 0755 directories in `dir`.
fn write_layer_dir(dir: &OwnedFd, relative: &Path) -> Result<(), Failure> {
    let mut current = open_dir_at(dir, ".")?;
    for part in relative.iter() {
        match mkdirat(&current, part, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err((format!("creating {} in the per-entry layer", relative.display()), e.into())),
        }
        current = open_dir_at(&current, &part.to_string_lossy())?;
    }
    Ok(())
}

/// The bind of the caller's /run/user/UID onto the same path in the tree.
pub fn run_user_spec(source: &Path) -> MountSpec {
    MountSpec {
        source: source.to_path_buf(),
        target: source.to_path_buf(),
        recursive: false,
        attrs: NOSUID | NODEV,
        as_caller: true,
        caller_may_own_target: true,
        kind: BindKind::Directory,
        if_missing: IfMissing::Skip,
    }
}
