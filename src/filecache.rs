//! The files the per-entry view binds over the tree's own (its passwd and
//! group with the caller's lines added, the host's hosts, resolv.conf and
//! time zone): kept in a root-only, content-addressed cache on the host's
//! /run, written once and never changed, and bound one by one read-only.
//!
//! Why a cache and file binds: a bind adds one mount to the private
//! namespace and costs next to nothing when the namespace dies, while a
//! tmpfs and an overlay made per entry each add a superblock that the
//! kernel tears down at every exit (about 0.2 ms per entry here, see
//! doc/bench.md). The files cannot be made per entry and removed at once:
//! the kernel refuses to bind a file that has no name (`O_TMPFILE`, or one
//! already unlinked, fail with ENOENT), and a file named per entry would be
//! left behind by a `kill -9` between its creation and its removal.
//!
//! What keeps it safe: the directory ([`DIR`]) and its parent are root's and
//! writable by nobody else, so no user can read, add or swap a file in it;
//! a file is found by a hash of its contents and then compared byte for byte
//! before use, so a file is bound only where it holds exactly what the entry
//! would show; a file is written without a name (`O_TMPFILE`) and linked
//! into place when complete, so a killed writer leaves no partial file under
//! a real name, and no writer ever waits for another (the caller may stop
//! their own entry at any point: nothing it holds can stall anyone else). The cache
//! is emptied whenever it holds more than [`MAX_FILES`] files or
//! [`MAX_BYTES`]; a file that is bound somewhere stays there when it is
//! removed from the cache (the mount holds it).
#![forbid(unsafe_code)]

use std::hash::Hasher;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, RenameFlags, openat, renameat2};
use nix::mount::{MsFlags, mount};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, linkat, unlinkat};

use crate::sys;
use crate::trusted::stat_type;

/// The cache directory on the host (in the private namespace's copy of /run).
pub const DIR: &str = "/run/imageswitch/view";
/// The cache is emptied before a file is added beyond this many files...
pub const MAX_FILES: usize = 512;
/// ...or beyond this many bytes (the largest single file is 16 MiB, the
/// limit on what the per-entry view reads).
pub const MAX_BYTES: u64 = 64 << 20;

/// The cache's name for `contents`: its 64-bit FNV-1a hash (Fowler, Noll
/// and Vo; offset basis 0xcbf29ce484222325, prime 0x100000001b3) and its
/// length. Names only find a candidate; the contents are compared before a
/// file is used, so a collision costs a rewrite, never a wrong file.
fn name_for(contents: &[u8]) -> String {
    let mut hash = Fnv1a::default();
    hash.write(contents);
    format!("{:016x}-{}", hash.finish(), contents.len())
}

/// The 64-bit FNV-1a hash (Fowler, Noll and Vo; offset basis
/// 0xcbf29ce484222325, prime 0x100000001b3) as a [`std::hash::Hasher`]: names
/// for the cache and for pins ([`crate::pin`]), which only find a candidate
/// that is then checked.
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = bytes.iter().fold(self.0, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY.union(OFlag::O_DIRECTORY).union(OFlag::O_NOFOLLOW).union(OFlag::O_CLOEXEC);

/// Opens `name` in `parent` as a directory root owns and nobody else may
/// write, creating it (mode 0700) when it is absent.
fn root_only_dir(parent: &OwnedFd, name: &str) -> io::Result<OwnedFd> {
    match mkdirat(parent, name, Mode::from_bits_truncate(0o700)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(e.into()),
    }
    root_only(openat(parent, name, DIR_FLAGS, Mode::empty())?)
}

/// `dir` if root owns it and nobody else may write it.
fn root_only(dir: OwnedFd) -> io::Result<OwnedFd> {
    let st = fstat(&dir)?;
    if st.st_uid != 0 || st.st_mode & 0o022 != 0 {
        return Err(io::Error::other("the cache directory is not root's alone"));
    }
    Ok(dir)
}

/// Opens [`DIR`], creating it and its parent root-owned, mode 0700.
/// Errors: the directory cannot be made, or one of the two exists and is
/// not a directory only root may write.
fn open_dir() -> io::Result<OwnedFd> {
    run_dir("view")
}

/// Opens /run/imageswitch/`name`, creating it and its parent root-owned,
/// mode 0700 (the file cache's and the pins' directories). Errors: as
/// [`open_dir`].
pub(crate) fn run_dir(name: &str) -> io::Result<OwnedFd> {
    let top = match openat(nix::fcntl::AT_FDCWD, "/run/imageswitch", DIR_FLAGS, Mode::empty()) {
        Err(Errno::ENOENT) => {
            let run = openat(nix::fcntl::AT_FDCWD, "/run", DIR_FLAGS, Mode::empty())?;
            let st = fstat(&run)?;
            if st.st_uid != 0 || st.st_mode & 0o022 != 0 {
                return Err(io::Error::other("/run is not root's alone"));
            }
            as_root(|| root_only_dir(&run, "imageswitch"))?
        }
        opened => root_only(opened?)?,
    };
    match openat(&top, name, DIR_FLAGS, Mode::empty()) {
        Err(Errno::ENOENT) => as_root(|| root_only_dir(&top, name)),
        opened => root_only(opened?),
    }
}

/// Runs `f` with root's filesystem ids.
pub(crate) fn as_root<T>(f: impl FnOnce() -> T) -> T {
    crate::mounts::with_fs_identity(true, Uid::from_raw(0), Gid::from_raw(0), f)
}

/// Reads a regular file with as few system calls as the kernel allows (one
/// fstat, then reads until the end): `Ok(None)` when it is larger than `max`
/// bytes or, with `Some(size)`, when its size is not `size` (nothing read).
/// Errors: not a regular file, or a read error.
pub(crate) fn read_regular(file: &std::fs::File, size: Option<u64>, max: u64) -> io::Result<Option<Vec<u8>>> {
    read_regular_if(file, size, max, |_| true)
}

/// [`read_regular`], reading nothing (`Ok(None)`) unless `wanted` accepts
/// the file's status.
fn read_regular_if(
    file: &std::fs::File,
    size: Option<u64>,
    max: u64,
    wanted: impl FnOnce(&FileStat) -> bool,
) -> io::Result<Option<Vec<u8>>> {
    let st = fstat(file)?;
    if stat_type(&st) != SFlag::S_IFREG {
        return Err(io::Error::other("not a regular file"));
    }
    let have = st.st_size as u64;
    if !wanted(&st) || have > max || size.is_some_and(|size| size != have) {
        return Ok(None);
    }
    // One byte more than the size: a file that grew is read to its end.
    let mut bytes = vec![0; have as usize + 1];
    let mut len = 0;
    loop {
        match (&mut &*file).read(&mut bytes[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if len as u64 == have {
            break;
        }
        if len == bytes.len() {
            if len as u64 > max {
                return Ok(None);
            }
            bytes.resize(len * 2, 0);
        }
    }
    bytes.truncate(len);
    Ok((size.is_none_or(|size| size == len as u64) && len as u64 <= max).then_some(bytes))
}

/// A descriptor of `name` in `dir` if it is a root-owned 0644 regular file
/// holding exactly `contents`.
fn cached(dir: &OwnedFd, name: &str, contents: &[u8]) -> io::Result<Option<OwnedFd>> {
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
    let fd = match openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let file = std::fs::File::from(fd);
    let owned = |st: &FileStat| st.st_uid == 0 && st.st_gid == 0 && st.st_mode & 0o7777 == 0o644;
    let held = read_regular_if(&file, Some(contents.len() as u64), contents.len() as u64, owned)?;
    Ok((held.as_deref() == Some(contents)).then(|| file.into()))
}

/// Empties the cache when adding `adding` bytes would pass a limit.
fn keep_within_limits(adding: usize) -> io::Result<()> {
    let (mut files, mut bytes) = (1, adding as u64);
    let entries: Vec<_> = std::fs::read_dir(DIR)?.collect::<io::Result<_>>()?;
    for entry in &entries {
        files += 1;
        bytes += entry.metadata().map_or(0, |m| m.size());
    }
    if files <= MAX_FILES && bytes <= MAX_BYTES {
        return Ok(());
    }
    for entry in entries {
        match std::fs::remove_file(entry.path()) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// A new file in `dir` holding `contents`, mode `mode` whatever the umask,
/// with no name yet (`O_TMPFILE`): a writer killed or stopped (by the
/// caller, whose process this is) at any point leaves nothing behind and
/// holds nothing another entry waits for. Errors: EFBIG, before writing,
/// when the caller's file-size limit is smaller (the kernel applies it to
/// root too, and a write past it would raise SIGXFSZ); a failed open or write.
pub(crate) fn nameless(dir: &OwnedFd, contents: &[u8], mode: Mode) -> io::Result<std::fs::File> {
    let fsize = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_FSIZE).map_or(0, |(soft, _)| soft);
    if contents.len() as u64 > fsize {
        return Err(io::Error::from_raw_os_error(libc::EFBIG));
    }
    let flags = OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC;
    let fd = openat(dir, ".", flags, mode)?;
    fchmod(&fd, mode)?;
    let mut file = std::fs::File::from(fd);
    file.write_all(contents)?;
    Ok(file)
}

/// Names `file` (from [`nameless`]) `name` in `dir`. Errors: EEXIST when
/// the name is taken.
pub(crate) fn link_nameless(file: &std::fs::File, dir: &OwnedFd, name: &str) -> nix::Result<()> {
    let unnamed = crate::mounts::fd_path(file);
    linkat(AT_FDCWD, unnamed.as_str(), dir, name, AtFlags::AT_SYMLINK_FOLLOW)
}

/// Writes `contents` as `name` in `dir`: made 0644 whatever the umask,
/// without a name until complete ([`nameless`]), then linked (or renamed)
/// into place.
fn write(dir: &OwnedFd, name: &str, contents: &[u8]) -> io::Result<OwnedFd> {
    let file = nameless(dir, contents, Mode::from_bits_truncate(0o644))?;
    keep_within_limits(contents.len())?;
    match link_nameless(&file, dir, name) {
        Ok(()) => {}
        Err(Errno::EEXIST) => {
            // Another entry named the same contents first, or the file
            // there does not hold them: it is replaced by a rename.
            if let Some(fd) = cached(dir, name, contents)? {
                return Ok(fd);
            }
            let temporary = format!("{name}.{}.tmp", std::process::id());
            let _ = unlinkat(dir, temporary.as_str(), UnlinkatFlags::NoRemoveDir);
            link_nameless(&file, dir, &temporary)?;
            renameat2(dir, temporary.as_str(), dir, name, RenameFlags::empty())?;
        }
        Err(e) => return Err(e.into()),
    }
    // Reopened through its name: the O_TMPFILE descriptor's own stays
    // nameless after the link, and the kernel attaches only a file reached
    // through a name (a bind from it fails with ENOENT).
    drop(file);
    cached(dir, name, contents)?.ok_or_else(|| io::Error::other("a cached file changed as it was written"))
}

/// A descriptor of a cached file holding exactly `contents`, written if
/// absent, with root's filesystem ids (the set-uid process's fsgid is the
/// caller's, which would otherwise own what it creates).
fn file_with(dir: &OwnedFd, contents: &[u8]) -> io::Result<OwnedFd> {
    let name = name_for(contents);
    match cached(dir, &name, contents)? {
        Some(fd) => Ok(fd),
        None => as_root(|| write(dir, &name, contents)),
    }
}

/// Descriptors of cached files holding exactly each of `contents`, written
/// where absent.
pub fn files(contents: &[&[u8]]) -> io::Result<Vec<OwnedFd>> {
    let dir = open_dir()?;
    contents.iter().map(|c| file_with(&dir, c)).collect()
}

/// Binds `file` (from [`files`], holding `contents`) over `target` as
/// [`bind_file`] does. A file the cache drops between being found and being
/// bound has no name left, and the kernel refuses to bind it (ENOENT): it is
/// found (or written) again.
pub fn bind_cached(file: OwnedFd, contents: &[u8], target: &OwnedFd) -> io::Result<()> {
    let mut file = file;
    for _ in 0..2 {
        match bind_file(&file, target) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => file = files(&[contents])?.remove(0),
            done => return done,
        }
    }
    bind_file(&file, target)
}

/// Read-only, nosuid, nodev, noexec: how a shown file is bound.
const FILE_ATTRS: u64 =
    libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOEXEC;

/// A detached copy of `file`'s mount, flagged [`FILE_ATTRS`], private (no
/// mount event reaches it or comes from it).
fn detach_file(file: &impl AsFd) -> io::Result<OwnedFd> {
    let detached = sys::open_tree_clone(file, c"", false)?;
    sys::mount_setattr(&detached, FILE_ATTRS, false)?;
    sys::mount_set_propagation(&detached, libc::MS_PRIVATE, false)?;
    Ok(detached)
}

/// Binds `file` read-only, nosuid, nodev and noexec over `target`: a
/// descriptor (`O_PATH`, not followed) of a regular file or a symbolic link
/// inside the tree. With the mount(2) fallback (kernels before 5.12) only a
/// regular file can be covered; a link gives ELOOP. Runs as root in the
/// private namespace; `file` must be reached through this namespace.
pub fn bind_file(file: &impl AsFd, target: &OwnedFd) -> io::Result<()> {
    match detach_file(file) {
        Ok(detached) => sys::move_mount_onto(&detached, target),
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            if stat_type(&fstat(target)?) != SFlag::S_IFREG {
                return Err(io::Error::from_raw_os_error(libc::ELOOP));
            }
            let (source, point) = (crate::mounts::fd_path(file), crate::mounts::fd_path(target));
            mount(Some(source.as_str()), point.as_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>)?;
            let ro = MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC;
            Ok(mount(None::<&str>, point.as_str(), None::<&str>, ro, None::<&str>)?)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_differ_with_contents_and_length_and_never_contain_a_slash() {
        let names = [name_for(b""), name_for(b"a"), name_for(b"b"), name_for(b"a\n")];
        for (i, a) in names.iter().enumerate() {
            assert!(!a.contains('/') && !a.ends_with(".tmp"), "{a}");
            for b in &names[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(name_for(b"root:x:0:0::/root:/bin/sh\n"), name_for(b"root:x:0:0::/root:/bin/sh\n"));
        assert!(name_for(b"abc").ends_with("-3"));
    }
}
