//! The fast path: the caller-independent view of a sysroot built once, kept
//! as a mount namespace pinned in a root-only directory, and entered with
//! `setns(CLONE_NEWNS)`.
//!
//! The per-entry path copies the caller's whole mount table into a new
//! namespace (and the kernel tears the copy down at exit), so its cost grows
//! with the host's mount count. A pin holds what every caller sees alike:
//! the sealed tree, `/proc`, `/sys`, `/dev`, the configured binds whose host
//! path everybody may reach, `/dev/log`, and the host files (hosts,
//! resolv.conf, the time zone) as the caller opened them (the key names each
//! file, so only callers who opened that very file join); pivoted into the tree
//! with the old root detached, so its mount table is small (about 20
//! mounts), and entering it costs one `setns`.
//!
//! A pin is named by a hash of everything its content depends on (see
//! [`key`]): this binary, the sysroot's configured view, the tree's
//! identity (a new generation is a new directory) and that of each mount point
//! in it, each bind source's and host file's identity, the caller's mount
//! namespace and root. A change
//! selects a new name, built on first use; the old pin of the same sysroot
//! and namespace is removed then, and pins of namespaces that no longer
//! exist with it.
//!
//! Building runs in a forked child, under a lock that is only ever tried
//! (an entry that finds it held, by a concurrent first entry or by one its
//! owner stopped, takes the per-entry path: nobody waits on another user's
//! process). The child makes the namespace and hands it over only when
//! complete; the parent publishes it with one bind mount of its nsfs file.
//! A kill at any point leaves no pin, an empty file (not a namespace, never
//! entered), or a whole pin.
//!
//! Host mounts made after the pin was built (autofs under `/home`, a job's
//! tmpfs) reach it by slave propagation, which exists only when the caller's
//! mounts are shared (systemd's default); when they are not, a marker
//! records that this key takes the per-entry path. Nothing in a pin is
//! shared, so nothing mounted in a private copy of it (made per entry for
//! what only the caller sees) reaches it, and nobody inside holds the
//! capabilities to change it.
#![forbid(unsafe_code)]

use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, Flock, FlockArg, OFlag, openat};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};
use nix::sys::statfs::{NSFS_MAGIC, fstatfs};
use nix::unistd::{Gid, Uid, UnlinkatFlags, unlinkat};

use crate::config::Sysroot;
use crate::filecache::{self, Fnv1a};
use crate::mounts::{self, BindKind, IfMissing, MountEntry, MountSpec, Outcome};
use crate::personal::{self, EtcFiles, Shown};
use crate::trusted::stat_type;
use crate::{sys, trusted};

/// The pin directory: root's, mode 0700, a private mount of its own in each
/// mount namespace pins are published from.
pub const PIN_DIR: &str = "/run/imageswitch/pins";

/// Changes whenever what a pin holds, or how, changes.
const LAYOUT: u32 = 1;

/// Pins and markers kept in [`PIN_DIR`] before all but the one being built
/// are removed (a pin holds about 20 mounts and a namespace).
const MAX_PINS: usize = 256;

/// Lock file inside [`PIN_DIR`], tried while a pin is built.
const LOCK: &str = "lock";

/// File inside [`PIN_DIR`] holding the key of the hashes in pins' names
/// (see [`NameKey`]): 16 random bytes, root's alone, made by the first entry
/// that finds none.
const NAME_KEY: &str = "key";

/// Suffix of the marker saying "no pin for this key: the caller's mounts are
/// not shared, or the view cannot be pinned" (see [`mark_per_entry`]).
const PER_ENTRY: &str = ".perentry";

/// What a pin is built from, resolved on the host.
pub struct Request<'a> {
    pub sysroot: &'a Sysroot,
    /// The tree, opened and checked as trusted on the host.
    pub tree: &'a OwnedFd,
    /// The binds every caller gets alike (see [`split`]).
    pub shared: &'a [MountSpec],
    /// The host files shown under /etc (all [`Shown::Host`]).
    pub host_files: &'a EtcFiles,
    /// The caller's passwd and group where they differ from the tree's (all
    /// [`Shown::Made`]; none for a caller the tree knows).
    pub made: &'a EtcFiles,
}

/// Whether `spec` depends on who enters: their home or session directory,
/// or a bind whose host path not everybody may reach (`public` says who may).
pub fn is_caller_specific(spec: &MountSpec, public: impl FnOnce(&Path) -> bool) -> bool {
    spec.caller_may_own_target || (spec.as_caller && !public(&spec.source))
}

/// Whether everybody may reach paths on the host: every directory on the
/// way to one (links followed) is root's and searchable by its group and by
/// others, with no access ACL (see [`Reach::judged`]). A bind
/// of such a path shows nobody anything they could not reach anyway, whoever
/// built the pin; permissions below it apply inside as outside. Each
/// directory is looked at once per entry.
#[derive(Debug, Default)]
pub struct Reach {
    dirs: Vec<(PathBuf, bool)>,
}

impl Reach {
    /// For `path` as the host resolves it now.
    pub fn is_public(&mut self, path: &Path) -> bool {
        self.resolve(path).is_some()
    }

    /// For the file `st` (a descriptor's `fstat`) at `path`: every directory
    /// on the way public, and `path` leads to that very file (device and
    /// inode) now.
    pub fn is_public_file(&mut self, path: &Path, st: &FileStat) -> bool {
        self.resolve(path).is_some_and(|end| (end.st_dev, end.st_ino) == (st.st_dev, st.st_ino))
    }

    /// `path` resolved from `/` by hand (`lstat` and `readlink`, at most
    /// [`MAX_LINKS`] links, no procfs), judging each directory passed
    /// through, links' own directories included: what `path` ends at, or
    /// `None` when a directory on the way is not public or anything fails.
    fn resolve(&mut self, path: &Path) -> Option<FileStat> {
        let mut pending: std::collections::VecDeque<std::ffi::OsString> =
            path.components().filter(|c| c != &Component::RootDir).map(|c| c.as_os_str().to_owned()).collect();
        if !path.is_absolute() || pending.is_empty() {
            return None;
        }
        let mut at = PathBuf::from("/");
        let mut links = 0;
        while let Some(part) = pending.pop_front() {
            if part == "." {
                continue;
            }
            if !self.judged(&at) {
                return None;
            }
            if part == ".." {
                at.pop();
                continue;
            }
            let next = at.join(&part);
            let st = trusted::lstat(&next)?;
            if stat_type(&st) != SFlag::S_IFLNK {
                if pending.is_empty() {
                    return Some(st);
                }
                at = next;
                continue;
            }
            links += 1;
            let target = std::fs::read_link(&next).ok().filter(|_| links <= MAX_LINKS)?;
            if target.is_absolute() {
                at = PathBuf::from("/");
            }
            for part in target.components().rev().filter(|c| c != &Component::RootDir) {
                pending.push_front(part.as_os_str().to_owned());
            }
        }
        // Ended at a directory by `..` or `.`: look at it.
        trusted::lstat(&at)
    }

    /// Whether the directory `dir` (no links in its path) is root's, a
    /// directory, and searchable by every user: by its group's members as
    /// by others (the kernel applies the group bits, not the others', to a
    /// member: `root:g 0705` shuts g out), with no access ACL (acl(5): a
    /// named user or group entry may shut someone out whatever the mode).
    fn judged(&mut self, dir: &Path) -> bool {
        if let Some((_, public)) = self.dirs.iter().find(|(seen, _)| seen == dir) {
            return *public;
        }
        let public = trusted::lstat(dir)
            .is_some_and(|st| stat_type(&st) == SFlag::S_IFDIR && st.st_uid == 0 && st.st_mode & 0o011 == 0o011)
            && !sys::has_access_acl(dir);
        self.dirs.push((dir.to_path_buf(), public));
        public
    }
}

/// Most symbolic links [`Reach`] follows on one path (as the kernel's
/// `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// Splits the view into the shared part (in the pin) and the caller-specific
/// part (made per entry), each in its original order.
pub fn split(specs: Vec<MountSpec>, mut public: impl FnMut(&Path) -> bool) -> (Vec<MountSpec>, Vec<MountSpec>) {
    specs.into_iter().partition(|spec| !is_caller_specific(spec, &mut public))
}

fn dev_ino(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

/// A file's identity and its last change: a replaced file (a new inode) or
/// one written in place (a new mtime or ctime) selects a new pin.
fn changes(st: &FileStat) -> (u64, u64, i64, i64, i64, i64, i64) {
    (st.st_dev, st.st_ino, st.st_size, st.st_mtime, st.st_mtime_nsec, st.st_ctime, st.st_ctime_nsec)
}

/// The pin's file name for this entry, `KEY.SYSROOT.NS.EXE.VIEW.ACCOUNT` (KEY:
/// [`NameKey::id`]; SYSROOT: [`hidden_name`]; NS:
/// the caller's mount namespace's inode number, EXE: [`this_binary`], both
/// in hex; VIEW: 16 hex digits hashing the view every caller shares; ACCOUNT:
/// `0` for a caller the tree knows, else `LINES-OWNER`, 16 hex digits
/// hashing the caller's passwd and group as shown and 16 hashing their uid
/// `uid`); `None` when something it depends on cannot be identified. Two
/// installed binaries (a test's, the system's) keep a pin each rather than
/// replacing each other's, and so do callers the tree does not know; a
/// caller's new lines (their gecos changed with chfn, say) replace their
/// own old pin only.
fn key(req: &Request<'_>, uid: Uid, keyed: &NameKey) -> Option<String> {
    let mut h = keyed.hasher();
    (LAYOUT, env!("CARGO_PKG_VERSION"), &req.sysroot.name, &req.sysroot.path).hash(&mut h);
    let exe = this_binary(&mut h)?;
    changes(&fstat(req.tree).ok()?).hash(&mut h);
    // Each mount point in the tree, too: a file or directory replaced there
    // (by hand, in place) takes the pin's mount on it away.
    let in_tree = |target: &Path| {
        let relative = target.strip_prefix("/").unwrap_or(target);
        fstatat(req.tree, relative, AtFlags::AT_SYMLINK_NOFOLLOW).ok().map(|st| (st.st_dev, st.st_ino))
    };
    for spec in req.shared {
        spec.hash(&mut h);
        std::fs::metadata(&spec.source).ok().map(|m| dev_ino(&m)).hash(&mut h);
        in_tree(&spec.target).hash(&mut h);
    }
    for (path, shown) in req.host_files {
        path.hash(&mut h);
        in_tree(&Path::new("etc").join(path)).hash(&mut h);
        changes(shown.host_stat()?).hash(&mut h);
    }
    dev_ino(&std::fs::metadata("/").ok()?).hash(&mut h);
    // Apart: every caller the tree does not know has a pin of the same view.
    let account = if req.made.is_empty() {
        "0".to_string()
    } else {
        let mut a = keyed.hasher();
        for (path, shown) in req.made {
            (path, shown.made()?, in_tree(&Path::new("etc").join(path))).hash(&mut a);
        }
        let mut owner = keyed.hasher();
        owner.write(&uid.as_raw().to_le_bytes());
        format!("{:016x}-{:016x}", a.finish(), owner.finish())
    };
    let ns = sys::namespace_inode(sys::OwnNamespace::Mount).ok()?;
    let sysroot = hidden_name(&req.sysroot.name, keyed);
    Some(format!("{}.{sysroot}.{ns:x}.{exe:x}.{:016x}.{account}", keyed.id(), h.finish()))
}

/// This binary, for a pin's name: the FNV-1a hash of its GNU build ID, read
/// in memory (the same build installed twice shares its pins; any other
/// build has pins of its own); without a build ID, the inode number of
/// /proc/self/exe, with its every change hashed into `view`.
fn this_binary(view: &mut impl Hasher) -> Option<u64> {
    if let Some(id) = crate::sys::build_id() {
        let mut h = Fnv1a::default();
        h.write(&id);
        return Some(h.finish());
    }
    let exe = std::fs::metadata("/proc/self/exe").ok()?;
    (exe.dev(), exe.ino(), exe.mtime(), exe.mtime_nsec(), exe.ctime(), exe.ctime_nsec()).hash(view);
    Some(exe.ino())
}

/// The sysroot's part of a pin's name: the keyed hash of its name, in hex.
/// Mount points are listed in /proc/PID/mountinfo for every process in the
/// namespace; without the key, a user can neither tell which sysroot a name
/// stands for nor confirm a guess.
pub fn hidden_name(sysroot: &str, keyed: &NameKey) -> String {
    let mut h = keyed.hasher();
    h.write(sysroot.as_bytes());
    format!("{:016x}", h.finish())
}

/// The key of every hash in a pin's name but the binary's ([`key`]):
/// SipHash-2-4 (Aumasson and Bernstein, 2012), a keyed pseudorandom
/// function, as std implements it, so that names said in the mount table
/// everybody reads give away neither sysroot names, views, passwd lines nor
/// uids. An unkeyed hash (FNV-1a) did: guesses could be hashed and matched.
/// The key is [`NAME_KEY`] in the pin directory; names made with another
/// key (after a reboot, or one removed by hand), or by an older binary that
/// had none, have another [`NameKey::id`], and the next build removes them
/// ([`remove_stale`]).
pub struct NameKey(u64, u64);

impl NameKey {
    /// The key from `bytes`, the key file's 16 bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        let (k0, k1) = bytes.split_at(8);
        let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
        NameKey(word(k0), word(k1))
    }

    /// The first part of every name made with this key: 8 hex digits of
    /// its hash of a fixed text, which tells names made with it from others
    /// and gives nothing of the key away.
    pub fn id(&self) -> String {
        let mut h = self.hasher();
        h.write(b"imageswitch pin names");
        format!("{:08x}", h.finish() >> 32)
    }

    /// A hasher keyed with this key.
    #[allow(deprecated)] // SipHasher: std's only keyed SipHash; no crate is added to the set-uid binary.
    pub fn hasher(&self) -> std::hash::SipHasher {
        std::hash::SipHasher::new_with_keys(self.0, self.1)
    }
}

/// The key of pins' names, from `dir`'s [`NAME_KEY`], which the first entry
/// that finds none (or one that is not 16 bytes) makes: 16 bytes from
/// /dev/urandom, written with root's filesystem ids into a file with no name
/// and linked into place ([`filecache::nameless`]), so that no entry reads
/// half a key, a kill leaves nothing, and concurrent first entries agree on
/// one. `None`: it cannot be read or made.
fn name_key(dir: &OwnedFd) -> Option<NameKey> {
    let read = || -> nix::Result<NameKey> {
        // Non-blocking: a FIFO there must not hold every entry up.
        let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK;
        let fd = openat(dir, NAME_KEY, flags, Mode::empty())?;
        let mut bytes = [0u8; 17];
        match nix::unistd::read(&fd, &mut bytes) {
            Ok(16) => Ok(NameKey::from_bytes(bytes[..16].try_into().unwrap_or_default())),
            Ok(_) | Err(Errno::EAGAIN) => Err(Errno::EINVAL),
            Err(e) => Err(e),
        }
    };
    match read() {
        Err(Errno::ENOENT) => {}
        // Not 16 bytes, a FIFO, a link or a socket: replaced.
        Err(Errno::EINVAL | Errno::ELOOP | Errno::ENXIO) => {
            unlinkat(dir, NAME_KEY, UnlinkatFlags::NoRemoveDir).ok()?;
        }
        other => return other.ok(),
    }
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom").and_then(|mut random| random.read_exact(&mut bytes)).ok()?;
    filecache::as_root(|| {
        let file = filecache::nameless(dir, &bytes, Mode::S_IRUSR | Mode::S_IWUSR).ok()?;
        matches!(filecache::link_nameless(&file, dir, NAME_KEY), Ok(()) | Err(Errno::EEXIST)).then_some(())
    })?;
    read().ok()
}

/// After joining a pin built with the caller's passwd and group: that it
/// shows exactly `made` (the name is a hash, which only finds it). Errors:
/// it shows anything else, or cannot be read.
pub fn check_made(made: &EtcFiles) -> io::Result<()> {
    for (path, shown) in made {
        let contents = shown.made().ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        let file = File::open(Path::new("/etc").join(path))?;
        if sys::read_all(&file, contents.len() + 1, contents.len())? != contents {
            return Err(io::Error::other(format!("/etc/{} is not the one this entry shows", path.display())));
        }
    }
    Ok(())
}

/// The pinned namespace for this entry, found or built now, or `None` for
/// the per-entry path. Runs as root in the caller's namespace; nothing about
/// the process changes (it joins with [`join`]). `shareable` is asked only
/// before building: whether this view should be a pin at all (its host
/// files readable by everybody; else entries with it stay per entry, and
/// build nothing that would replace other callers' pin).
pub fn find_or_build(req: &Request<'_>, uid: Uid, gid: Gid, shareable: impl FnOnce() -> bool) -> Option<OwnedFd> {
    let dir = open_pin_dir()?;
    let name = key(req, uid, &name_key(&dir)?)?;
    match open_pin(&dir, &name) {
        Found::Pin(fd) => return Some(fd),
        Found::PerEntry => return None,
        Found::Nothing => {}
    }
    if !shareable() {
        return None;
    }
    let lock = create_root_file(&dir, LOCK).ok()?;
    // Never waits: the holder may be stopped by its owner.
    let _held = Flock::lock(File::from(lock), FlockArg::LockExclusiveNonblock).ok()?;
    // Another entry may have built it just before.
    match open_pin(&dir, &name) {
        Found::Pin(fd) => return Some(fd),
        Found::PerEntry => return None,
        Found::Nothing => {}
    }
    let table = mounts::mount_table().ok()?;
    let sources: Vec<PathBuf> = req
        .shared
        .iter()
        .filter(|s| s.kind == BindKind::Directory)
        .map(|s| std::fs::canonicalize(&s.source))
        .collect::<io::Result<_>>()
        .ok()?;
    remove_stale(&dir, &name);
    make_pin_dir_private(&table).ok()?;
    // Reopened: the directory may have just become a mount of its own.
    let dir = open_pin_dir()?;
    // Marked from what root sees of the host and the tree only: a build
    // that fails (the caller's own limits apply to it) marks nothing.
    if !propagation_reaches(&table, &sources) || !has_places(req) {
        let _ = mark_per_entry(&dir, &name);
        return None;
    }
    let ns = build(req, uid, gid)?;
    publish(&dir, &name, &ns).ok().map(|()| ns)
}

/// Whether the tree has a place for everything the pin would show: a mount
/// point for each shared bind that must be there (as [`mounts::bind`] wants
/// it: no link on the way) and a file or link for each host and made file.
fn has_places(req: &Request<'_>) -> bool {
    let required = req.shared.iter().filter(|spec| spec.if_missing == IfMissing::Fail);
    required.into_iter().all(|spec| mounts::open_target(req.tree, &spec.target).is_ok())
        && personal::has_places(req.tree, req.host_files)
        && personal::has_places(req.tree, req.made)
}

/// Joins the pinned namespace: the process's root and directory become the
/// tree's root.
pub fn join(ns: &OwnedFd) -> io::Result<()> {
    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNS).map_err(io::Error::from)
}

/// Opens [`PIN_DIR`] (creating it), trusting it only when it is root's and
/// closed to everybody else: a pin's file is the namespace's, which anyone
/// who reaches it may open.
fn open_pin_dir() -> Option<OwnedFd> {
    let dir = filecache::run_dir("pins").ok()?;
    let st = fstat(&dir).ok()?;
    (st.st_mode & 0o077 == 0).then_some(dir)
}

enum Found {
    Pin(OwnedFd),
    PerEntry,
    Nothing,
}

/// A pin is a file on nsfs (the bind of a namespace); an empty file left by
/// an interrupted build is not, and is never entered.
fn open_pin(dir: &OwnedFd, name: &str) -> Found {
    if let Ok(fd) = openat(dir, name, OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW, Mode::empty()) {
        if fstatfs(&fd).is_ok_and(|fs| fs.filesystem_type() == NSFS_MAGIC) {
            return Found::Pin(fd);
        }
    }
    let marker = format!("{name}{PER_ENTRY}");
    let at = fstatat(dir, marker.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW);
    if at.is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == DEV_NULL) {
        return Found::PerEntry;
    }
    Found::Nothing
}

/// `/dev/null`'s device number, which a per-entry marker shows.
const DEV_NULL: libc::dev_t = libc::makedev(1, 3);

/// Records that entries with this key take the per-entry path: `/dev/null`
/// bound onto the marker. Like a pin, a mount dies with the namespace it is
/// in, so a later namespace that reuses this one's inode number (and so the
/// name) finds only an empty file.
fn mark_per_entry(dir: &OwnedFd, name: &str) -> nix::Result<()> {
    let marker = format!("{name}{PER_ENTRY}");
    drop(create_root_file(dir, &marker)?);
    let target = format!("{}/{marker}", mounts::fd_path(dir));
    mount(Some("/dev/null"), target.as_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>)
}

/// Whether a mount made later at or under each of `sources` reaches a slave
/// copy: the mount holding each source, and every mount under it, is shared.
fn propagation_reaches(table: &[MountEntry], sources: &[PathBuf]) -> bool {
    sources.iter().all(|source| {
        let holder = table.iter().filter(|m| source.starts_with(&m.point)).max_by_key(|m| m.point.as_os_str().len());
        holder.is_some_and(|m| m.shared) && table.iter().filter(|m| m.point.starts_with(source)).all(|m| m.shared)
    })
}

/// A namespace's file may be bound only where the bind does not propagate:
/// [`PIN_DIR`] becomes a private mount of its own in this namespace.
fn make_pin_dir_private(table: &[MountEntry]) -> nix::Result<()> {
    if !table.iter().any(|m| m.point == Path::new(PIN_DIR)) {
        mount(Some(PIN_DIR), PIN_DIR, None::<&str>, MsFlags::MS_BIND, None::<&str>)?;
    }
    // Always: an entry killed between the two steps leaves a shared mount.
    mount(None::<&str>, PIN_DIR, None::<&str>, MsFlags::MS_PRIVATE, None::<&str>)
}

/// Builds the view in a forked child's new namespace; returns that namespace
/// once it is complete. `None` when the child failed or was killed: a later
/// entry tries again.
fn build(req: &Request<'_>, uid: Uid, gid: Gid) -> Option<OwnedFd> {
    let (ready_r, ready_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ok()?;
    let (done_r, done_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ok()?;
    let Some(child) = sys::fork().ok()? else {
        drop((ready_r, done_w));
        let built = new_namespace_after_callers().is_ok() && build_view(req, uid, gid).is_ok();
        if built {
            let _ = File::from(ready_w).write_all(b"y");
            // Stay (and keep the namespace alive) until the parent holds it.
            let _ = File::from(done_r).read(&mut [0]);
        }
        std::process::exit(if built { 0 } else { 1 });
    };
    drop((ready_w, done_r));
    let mut answer = [0u8];
    let ready = File::from(ready_r).read(&mut answer).is_ok_and(|n| n == 1);
    let ns = ready
        .then(|| {
            let path = format!("/proc/{child}/ns/mnt");
            openat(nix::fcntl::AT_FDCWD, path.as_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).ok()
        })
        .flatten();
    drop(done_w);
    let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child), None);
    ns.filter(|_| matches!(status, Ok(nix::sys::wait::WaitStatus::Exited(_, 0))))
}

/// The pin's content, made in a new namespace: everything a slave of the
/// caller's, the tree sealed, the shared binds and host files, then the tree
/// pivoted to be the root and the rest detached.
fn build_view(req: &Request<'_>, uid: Uid, gid: Gid) -> io::Result<()> {
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_SLAVE, None::<&str>)?;
    let path = &req.sysroot.path;
    // Opened again in this namespace: binds must target its mounts.
    let tree = trusted::open_trusted(path, trusted::Kind::Directory).map_err(|(_, why)| io::Error::other(why))?;
    trusted::check_tree_entries(&tree).map_err(|(_, why)| io::Error::other(why))?;
    if fstat(&tree).map(|st| (st.st_dev, st.st_ino)) != fstat(req.tree).map(|st| (st.st_dev, st.st_ino)) {
        return Err(io::Error::other("the tree changed while its pin was built"));
    }
    let host_files = personal::reopen_host_files(req.host_files, uid, gid)?;
    let sealed = mounts::seal_tree(&tree)?;
    for spec in req.shared {
        match mounts::bind(&sealed, path, spec, uid, gid) {
            Ok(Outcome::Mounted) => {}
            // Only what may be absent may be left out; anything the
            // per-entry path would warn about is left to it.
            Ok(Outcome::Missing(_)) if spec.if_missing == IfMissing::Skip => {}
            Ok(Outcome::Missing(why)) => return Err(io::Error::other(why)),
            Err(err) => return Err(err.why),
        }
    }
    let mut shown = host_files;
    shown.extend(req.made.iter().filter_map(|(path, s)| Some((path.clone(), Shown::Made(s.made()?.to_vec())))));
    if !personal::bind_etc(&sealed, &shown) {
        return Err(io::Error::other("a host file, or the caller's passwd or group, has no place in the tree"));
    }
    nix::unistd::fchdir(&sealed)?;
    nix::unistd::pivot_root(".", ".")?;
    umount2(".", MntFlags::MNT_DETACH)?;
    nix::unistd::chdir("/")?;
    // Nothing in a pin may be shared: a mount made in a copy of it (a
    // caller-specific bind) must never come back into it.
    if mounts::mount_table()?.iter().any(|m| m.shared) {
        return Err(io::Error::other("a mount in the pinned view is shared"));
    }
    Ok(())
}

/// A new mount namespace for this process whose id is larger than the
/// caller's: the kernel binds a namespace's file only into a namespace with
/// a smaller id, and hands ids out in batches per CPU (Linux 6.18), so a
/// namespace made later on another CPU may have a smaller one. Each CPU this
/// process may run on is tried in turn. Errors: none qualifies (the entry
/// takes the per-entry path), or `unshare` fails.
fn new_namespace_after_callers() -> io::Result<()> {
    let ns_id = || sys::own_namespace(sys::OwnNamespace::Mount).and_then(sys::mount_namespace_id);
    let callers = ns_id();
    let allowed = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))?;
    let cpus = (0..nix::sched::CpuSet::count()).filter(|&cpu| allowed.is_set(cpu).unwrap_or(false));
    for cpu in cpus {
        let mut one = nix::sched::CpuSet::new();
        one.set(cpu)?;
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &one)?;
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
        match (callers, ns_id()) {
            (Some(callers), Some(ours)) if ours <= callers => continue,
            _ => return Ok(()),
        }
    }
    Err(io::Error::other("no CPU this entry may use hands out a namespace id after the caller's"))
}

/// Opens (creating) `dir/name`, a file of root's group: our egid is the caller's.
fn create_root_file(dir: &OwnedFd, name: &str) -> nix::Result<OwnedFd> {
    let flags = OFlag::O_CREAT | OFlag::O_RDWR | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
    let fd = openat(dir, name, flags, Mode::S_IRUSR | Mode::S_IWUSR)?;
    nix::unistd::fchown(&fd, Some(Uid::from_raw(0)), Some(Gid::from_raw(0)))?;
    Ok(fd)
}

/// Binds the namespace onto `PIN_DIR/name` in one step.
fn publish(dir: &OwnedFd, name: &str, ns: &OwnedFd) -> nix::Result<()> {
    drop(create_root_file(dir, name)?);
    let target = format!("{}/{name}", mounts::fd_path(dir));
    mount(Some(mounts::fd_path(ns).as_str()), target.as_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>)
}

/// `KEY.SYSROOT.NS.EXE.VIEW.ACCOUNT` (or a marker's base name) split into
/// (`KEY.SYSROOT.NS.EXE`, NS, VIEW, ACCOUNT).
fn parts(name: &str) -> Option<(&str, &str, &str, &str)> {
    let (rest, account) = name.rsplit_once('.')?;
    let (prefix, view) = rest.rsplit_once('.')?;
    let (rest, _exe) = prefix.rsplit_once('.')?;
    let (_, ns) = rest.rsplit_once('.')?;
    Some((prefix, ns, view, account))
}

/// An account's OWNER part (see [`key`]); `None` for `0`.
fn owner(account: &str) -> Option<&str> {
    account.split_once('-').map(|(_, owner)| owner)
}

/// Removes, under the lock, the pins and markers `name` replaces (same
/// sysroot, caller namespace and binary, and another view, or the same
/// caller's other lines: other callers' pins of the same view stay), those
/// of namespaces that no longer exist, those named with another key or by a
/// binary that had none (their names can no longer be found, only read: an
/// older binary's told who entered which sysroot), and all others once
/// there are more than [`MAX_PINS`] (binaries replaced by upgrades leave
/// theirs).
fn remove_stale(dir: &OwnedFd, name: &str) {
    let Some((ours, _, our_view, our_account)) = parts(name) else { return };
    let our_key = name.split('.').next();
    let Ok(entries) = std::fs::read_dir(mounts::fd_path(dir)) else { return };
    let names: Vec<String> = entries.flatten().filter_map(|e| e.file_name().into_string().ok()).collect();
    let crowded = names.len() > MAX_PINS;
    let mut live: Option<Vec<String>> = None;
    for file in &names {
        if file == LOCK || file == NAME_KEY || file == name {
            continue;
        }
        if file.split('.').next() != our_key {
            remove(dir, file);
            continue;
        }
        let Some((prefix, ns, view, account)) = parts(file.strip_suffix(PER_ENTRY).unwrap_or(file)) else { continue };
        let same_caller = account != our_account && owner(account).is_some() && owner(account) == owner(our_account);
        let replaced = prefix == ours && (view != our_view || same_caller);
        let stale = crowded || replaced || !live.get_or_insert_with(live_namespaces).iter().any(|l| l == ns);
        if stale {
            remove(dir, file);
        }
    }
}

/// Removes the pin or marker `file` in `dir`: its mount, then its name.
fn remove(dir: &OwnedFd, file: &str) {
    let path = format!("{}/{file}", mounts::fd_path(dir));
    let _ = umount2(path.as_str(), MntFlags::MNT_DETACH);
    let _ = unlinkat(dir, file, UnlinkatFlags::NoRemoveDir);
}

/// The mount namespaces processes are in now, as hex inode numbers.
fn live_namespaces() -> Vec<String> {
    let Ok(procs) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut out: Vec<String> = procs
        .flatten()
        .filter_map(|p| std::fs::metadata(p.path().join("ns/mnt")).ok())
        .map(|m| format!("{:x}", m.ino()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Whether a detached source can be made before joining a pin (the new
/// mount API; kernels before 5.12 take the per-entry path).
pub fn detached_sources_work(detached: &[(PathBuf, io::Result<OwnedFd>)]) -> bool {
    !detached.iter().any(|(_, d)| d.as_ref().is_err_and(|e| e.raw_os_error() == Some(libc::ENOSYS)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    /// Links are followed by hand; a directory others, or its group, may
    /// not search anywhere on the way (a link's own included), one with an
    /// access ACL, or a link loop answer no.
    #[test]
    fn reach_follows_links_by_hand_and_judges_every_directory_passed() {
        let mut reach = Reach::default();
        for path in ["/etc/passwd", "/usr/bin/env", "/usr/bin/../bin/sh", "/etc/./hostname", "/usr/bin"] {
            let path = Path::new(path);
            if path.exists() {
                assert!(reach.is_public(path), "{}", path.display());
            }
        }
        assert!(!reach.is_public(Path::new("usr/bin")), "relative");
        let opened = |path: &str| fstat(File::open(path).expect("open")).expect("fstat");
        assert!(reach.is_public_file(Path::new("/etc/passwd"), &opened("/etc/passwd")));
        assert!(!reach.is_public_file(Path::new("/etc/passwd"), &opened("/etc/group")), "another file there");

        let root = nix::unistd::geteuid().is_root();
        let dir = std::env::temp_dir().join(format!("reach-test-{}", std::process::id()));
        let (secret, grouped, acl) = (dir.join("secret"), dir.join("grouped"), dir.join("acl"));
        for (d, mode) in [(&dir, 0o755), (&secret, 0o700), (&grouped, 0o705), (&acl, 0o755)] {
            std::fs::create_dir_all(d).expect("mkdir");
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode)).expect("chmod");
        }
        for d in [&dir, &secret, &grouped, &acl] {
            std::fs::write(d.join("file"), "x").expect("write");
        }
        let acl_set = std::process::Command::new("setfacl").args(["-m", "u:nobody:---"]).arg(&acl).status();
        symlink("secret/file", dir.join("to-secret")).expect("symlink");
        symlink("file", dir.join("to-open")).expect("symlink");
        symlink("loop", dir.join("loop")).expect("symlink");
        // Under a root-owned /tmp, a directory is public only when it is root's.
        assert_eq!(reach.is_public(&dir.join("to-open")), root);
        assert!(!reach.is_public(&dir.join("to-secret")), "through a directory others may not search");
        assert!(!reach.is_public(&secret.join("file")));
        assert!(!reach.is_public(&grouped.join("file")), "through a directory its group may not search");
        if acl_set.is_ok_and(|s| s.success()) {
            assert!(!reach.is_public(&acl.join("file")), "through a directory with an access ACL");
        }
        assert!(!reach.is_public(&dir.join("loop")), "a link loop");
        std::fs::remove_dir_all(&dir).expect("remove");
    }

    fn spec(source: &str, as_caller: bool, home: bool) -> MountSpec {
        MountSpec {
            source: source.into(),
            target: source.into(),
            recursive: true,
            attrs: 0,
            as_caller,
            caller_may_own_target: home,
            kind: BindKind::Directory,
            if_missing: IfMissing::Fail,
        }
    }

    #[test]
    fn only_binds_everybody_may_reach_are_shared() {
        let specs = vec![
            spec("/proc", false, false),
            spec("/home", true, false),
            spec("/srv/private/data", true, false),
            spec("/users/alice", true, true),
        ];
        let (shared, own) = split(specs, |p| p != Path::new("/srv/private/data"));
        let targets = |v: &[MountSpec]| v.iter().map(|s| s.target.display().to_string()).collect::<Vec<_>>();
        assert_eq!(targets(&shared), ["/proc", "/home"]);
        assert_eq!(targets(&own), ["/srv/private/data", "/users/alice"]);
    }

    const TABLE: &str = "\
20 1 8:1 / / rw shared:1 - ext4 /dev/sda1 rw
21 20 0:5 / /proc rw shared:2 - proc proc rw
22 20 0:6 / /home rw shared:3 - autofs auto rw
23 22 0:7 / /home/alice rw shared:4 - nfs srv:/a rw
24 20 0:8 / /data rw master:9 - nfs srv:/d rw
25 20 0:9 / /scratch\\040x rw - tmpfs t rw
";

    #[test]
    fn propagation_needs_every_mount_at_or_under_a_source_shared() {
        let paths = |v: &[&str]| v.iter().map(PathBuf::from).collect::<Vec<_>>();
        let table = mounts::parse_mountinfo(TABLE.as_bytes());
        assert!(propagation_reaches(&table, &paths(&["/proc", "/home", "/tmp"])));
        // Held by a slave that is not shared, or a private mount.
        assert!(!propagation_reaches(&table, &paths(&["/data"])));
        assert!(!propagation_reaches(&table, &paths(&["/scratch x/job"])));
        // A private mount under an otherwise shared source.
        let private_under = mounts::parse_mountinfo(TABLE.replace("shared:4", "").as_bytes());
        assert!(!propagation_reaches(&private_under, &paths(&["/home"])));
        assert!(propagation_reaches(&private_under, &paths(&["/tmp"])));
    }

    #[test]
    fn the_namespace_link_names_the_namespace_a_stat_finds() {
        let stat = std::fs::metadata("/proc/self/ns/mnt").expect("/proc/self/ns/mnt");
        assert_eq!(sys::namespace_inode(sys::OwnNamespace::Mount).ok(), Some(stat.ino()));
    }

    #[test]
    fn a_sysroot_is_named_in_pins_by_a_hash_only() {
        // FNV-1a 64 of "a" (Fowler, Noll and Vo's published test vector).
        let key = NameKey::from_bytes(*b"0123456789abcdef");
        assert_ne!(hidden_name("deb11", &key), hidden_name("deb12", &key));
        assert!(!hidden_name("secret", &key).contains("secret"));
        // Keyed: another key names the same sysroot otherwise, and no key
        // gives the unkeyed FNV-1a hash a user could compute.
        let other = NameKey::from_bytes(*b"0123456789abcdeg");
        assert_ne!(hidden_name("deb11", &key), hidden_name("deb11", &other));
        assert_ne!(hidden_name("a", &key), "af63dc4c8601ec8c");
        // SipHash-2-4's published test vector (key 00..0f, empty input).
        let id = key.id();
        assert!(id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit()) && id != other.id(), "{id}");
        let vector = NameKey::from_bytes(std::array::from_fn(|i| i as u8));
        assert_eq!(vector.hasher().finish(), 0x726f_db47_dd0e_0e31);
    }

    #[test]
    fn names_split_from_the_right_whatever_dots_the_sysroot_has() {
        assert_eq!(
            parts("deb.11.f0a1.9c.0123456789abcdef.0"),
            Some(("deb.11.f0a1.9c", "f0a1", "0123456789abcdef", "0"))
        );
        let account = "fedcba9876543210-00000000000003e8";
        assert_eq!(
            parts(&format!("sl5.f0.9c.0123456789abcdef.{account}")),
            Some(("sl5.f0.9c", "f0", "0123456789abcdef", account))
        );
        assert_eq!(owner(account), Some("00000000000003e8"));
        assert_eq!(owner("0"), None);
        assert_eq!(
            parts("0a1b2c3d.af63dc4c8601ec8c.f0a1.9c.0123456789abcdef.0"),
            Some(("0a1b2c3d.af63dc4c8601ec8c.f0a1.9c", "f0a1", "0123456789abcdef", "0"))
        );
        assert_eq!(parts("sl5.f0.0123456789abcdef.0"), None);
        assert_eq!(parts("lock"), None);
    }
}
