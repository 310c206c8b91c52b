//! The caller-specific part of the view, made per entry after the shared one:
//! the caller's own passwd and group entries, host files under /etc (hosts,
//! resolv.conf, the time zone), and the caller's /run/user/UID.
//!
//! Everything is resolved on the host first ([`prepare`]: NSS, host files
//! read with the caller's filesystem identity). [`present`] then shows it in
//! the private namespace only: a small tmpfs holds the new files and is laid
//! under a read-only overlay whose lower layer is the tree's own /etc (or
//! /run). The tree is never written, its other entries stay as they are, and
//! its own entry for the caller's uid or a gid wins over the host's.
#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, openat};
use nix::mount::{MsFlags, mount};
use nix::sys::stat::{Mode, SFlag, fstat, mkdirat};
use nix::unistd::{Gid, Uid};

use crate::access::Caller;
use crate::config::{Defaults, Sysroot};
use crate::error::{Stream, say};
use crate::mounts::{self, IfMissing, Kind, MountSpec, NODEV, NOSUID, Outcome};
use crate::sys::{self, PasswdEntry};

/// Largest host file or tree account database read.
const MAX_FILE_BYTES: u64 = 16 << 20;

/// The caller's entries, as lines ready to append to the tree's databases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub passwd: Vec<u8>,
    /// (gid, line) for the caller's primary and supplementary groups that
    /// have a name on the host.
    pub groups: Vec<(u32, Vec<u8>)>,
}

/// What [`present`] shows, resolved on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Personal {
    /// `None` when the caller's entries cannot be shown faithfully: the
    /// tree's own databases apply, whole.
    pub account: Option<Account>,
    /// (path under /etc, contents).
    pub host_files: Vec<(PathBuf, Vec<u8>)>,
    /// The caller's own /run/user/UID on the host, when it exists.
    pub run_user: Option<PathBuf>,
}

/// Why a field cannot go into a passwd or group line unchanged.
fn unrepresentable(field: &[u8]) -> Option<&'static str> {
    if field.contains(&b':') {
        Some("contains ':'")
    } else if field.contains(&b'\n') {
        Some("contains a newline")
    } else {
        None
    }
}

/// Why a user or group name cannot be shown: besides the line syntax, names
/// that `compat` NSS reads as NIS directives, and commas (member lists).
fn bad_name(name: &[u8]) -> Option<&'static str> {
    match name.first() {
        None => Some("is empty"),
        Some(b'+' | b'-') => Some("starts with '+' or '-'"),
        _ if name.contains(&b',') => Some("contains ','"),
        _ => unrepresentable(name),
    }
}

fn shown(bytes: &[u8]) -> String {
    crate::syslog::escape(bytes)
}

/// The caller's passwd line and group lines from their host entries, or why
/// they cannot be shown. `group_of` looks a gid up on the host.
pub fn account_lines(
    pw: &PasswdEntry,
    gids: &[u32],
    group_of: impl Fn(u32) -> io::Result<Option<sys::GroupEntry>>,
) -> Result<Account, String> {
    if let Some(why) = bad_name(&pw.name) {
        return Err(format!("the user name {} {why}", shown(&pw.name)));
    }
    for (what, field) in [("gecos", &pw.gecos), ("home", &pw.dir), ("shell", &pw.shell)] {
        if let Some(why) = unrepresentable(field) {
            return Err(format!("the {what} field {} {why}", shown(field)));
        }
    }
    // Markers that say "no password here" read the same inside; anything
    // else might be a hash, which never leaves the host.
    let marker: &[u8] = match pw.passwd.as_slice() {
        kept @ (b"x" | b"*" | b"!" | b"!!") => kept,
        _ => b"x",
    };
    let mut passwd = pw.name.clone();
    for field in [marker, pw.uid.to_string().as_bytes(), pw.gid.to_string().as_bytes(), &pw.gecos, &pw.dir, &pw.shell] {
        passwd.push(b':');
        passwd.extend_from_slice(field);
    }
    let mut groups = Vec::new();
    for &gid in gids {
        let group = group_of(gid).map_err(|e| format!("looking up group {gid}: {}", crate::error::describe(&e)))?;
        // A gid the host cannot name has no name inside either.
        let Some(group) = group else { continue };
        if let Some(why) = bad_name(&group.name) {
            return Err(format!("the name of group {gid}, {}, {why}", shown(&group.name)));
        }
        let mut line = group.name.clone();
        line.extend_from_slice(format!(":x:{gid}:").as_bytes());
        if gid != pw.gid {
            line.extend_from_slice(&pw.name);
        }
        groups.push((gid, line));
    }
    Ok(Account { uid: pw.uid, passwd, groups })
}

/// Whether a passwd or group database has an entry with id `id` (third field).
fn has_id(db: &[u8], id: u32) -> bool {
    let wanted = id.to_string();
    db.split(|&b| b == b'\n').any(|line| line.split(|&b| b == b':').nth(2) == Some(wanted.as_bytes()))
}

/// `db` followed by those of `lines` whose id it lacks; `None` if it lacks none.
fn with_missing<'a>(db: &[u8], lines: impl IntoIterator<Item = (u32, &'a [u8])>) -> Option<Vec<u8>> {
    let missing: Vec<&[u8]> = lines.into_iter().filter(|(id, _)| !has_id(db, *id)).map(|(_, line)| line).collect();
    if missing.is_empty() {
        return None;
    }
    let mut out = db.to_vec();
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    for line in missing {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    Some(out)
}

/// The tree's passwd and group with the caller's entries added where the tree
/// has none for that id: (passwd, group), each `None` when unchanged.
pub fn merged_databases(passwd: &[u8], group: &[u8], account: &Account) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    (
        with_missing(passwd, [(account.uid, account.passwd.as_slice())]),
        with_missing(group, account.groups.iter().map(|(gid, line)| (*gid, line.as_slice()))),
    )
}

/// The contents of a regular file, at most [`MAX_FILE_BYTES`].
fn read_limited(file: std::fs::File) -> io::Result<Vec<u8>> {
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(io::Error::other("larger than 16 MiB"));
    }
    Ok(bytes)
}

/// Resolves, on the host and before anything is mounted, what the caller sees
/// of themselves and of the host inside `sysroot`. Problems are warnings: the
/// entry goes on with the tree's own view of what could not be resolved.
pub fn prepare(caller: &Caller, sysroot: &Sysroot, defaults: &Defaults) -> Personal {
    let warn = |what: &str| say(Stream::Err, &format!("imageswitch: warning: {}: {what}", sysroot.name));
    let mut gids: Vec<u32> = caller.groups.iter().chain([&caller.gid]).map(|g| g.as_raw()).collect();
    let account = match sys::passwd_by_uid(caller.uid.as_raw()) {
        Ok(Some(pw)) => {
            gids.push(pw.gid);
            gids.sort_unstable();
            gids.dedup();
            account_lines(&pw, &gids, sys::group_by_gid)
        }
        Ok(None) => Err(format!("uid {} has no passwd entry", caller.uid)),
        Err(e) => Err(format!("looking up uid {}: {}", caller.uid, crate::error::describe(&e))),
    };
    let account = account
        .map_err(|why| warn(&format!("cannot show your account inside ({why}); the tree's passwd and group apply")))
        .ok();

    let (uid, gid) = (caller.uid, caller.gid);
    let mut host_files = Vec::new();
    for (i, path) in sysroot.host_files(defaults).iter().enumerate() {
        if sysroot.host_files(defaults)[..i].contains(path) {
            continue;
        }
        // Non-blocking: a FIFO at the end of a link must not hold the entry.
        let open = || std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path);
        let read = mounts::with_fs_identity(true, uid, gid, || open().and_then(read_limited));
        match read {
            Ok(bytes) => host_files.push((path.clone(), bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => warn(&format!("host file {} not shown: {}", path.display(), crate::error::describe(&e))),
        }
    }

    // From the real uid, never the environment; only a directory the caller owns.
    let run_user = PathBuf::from(format!("/run/user/{uid}"));
    let owned = mounts::with_fs_identity(true, uid, gid, || std::fs::symlink_metadata(&run_user));
    let run_user = owned.is_ok_and(|m| m.is_dir() && m.uid() == uid.as_raw()).then_some(run_user);
    Personal { account, host_files, run_user }
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
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
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

fn fd_path(fd: &impl AsRawFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
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

/// Whether `name` (one component) in `dir` is a regular file holding exactly `contents`.
fn tree_file_equals(dir: &OwnedFd, name: &Path, contents: &[u8]) -> bool {
    if name.components().count() != 1 {
        return false;
    }
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
    let Ok(fd) = openat(dir, name, flags, Mode::empty()) else { return false };
    read_limited(std::fs::File::from(fd)).is_ok_and(|bytes| bytes == contents)
}

/// Mounts a read-only overlay on `point` in the tree: `layer` over `lower`
/// (the tree's own directory there, reached before anything covered it).
fn overlay(tree: &OwnedFd, point: &Path, layer: &OwnedFd, lower: &OwnedFd) -> Result<(), Failure> {
    let top = mounts::open_target(tree, point).map_err(failed(format!("opening {} in the tree", point.display())))?;
    let options = format!("lowerdir={}:{}", fd_path(layer), fd_path(lower));
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(Some("overlay"), fd_path(&top).as_str(), Some("overlay"), flags, Some(options.as_str()))
        .map_err(failed(format!("overlay on {}", point.display())))
}

/// Shows `personal` inside the tree at `tree` (whose host path is
/// `tree_path`, for messages). `shared` are the binds already made: those
/// under /etc are carried over onto the overlay. Runs as root in the private
/// namespace, before the chroot; loads nothing from the tree.
pub fn present(
    tree: &OwnedFd,
    tree_path: &Path,
    personal: &Personal,
    shared: &[MountSpec],
    uid: Uid,
    gid: Gid,
) -> Result<(), Failure> {
    let (etc, run) = (Path::new("/etc"), Path::new("/run"));
    // Files for the layer over /etc, relative to it.
    let mut etc_layer: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let lower_etc =
        if personal.account.is_some() || !personal.host_files.is_empty() { Some(open_dir(tree, etc)?) } else { None };
    if let Some(dir) = &lower_etc {
        if let Some(account) = &personal.account {
            let (passwd, group) =
                merged_databases(&read_tree_file(dir, "passwd")?, &read_tree_file(dir, "group")?, account);
            etc_layer.extend(passwd.map(|db| (PathBuf::from("passwd"), db)));
            etc_layer.extend(group.map(|db| (PathBuf::from("group"), db)));
        }
        for (path, contents) in &personal.host_files {
            let relative = path.strip_prefix(etc).unwrap_or(path);
            if !tree_file_equals(dir, relative, contents) {
                etc_layer.push((relative.to_path_buf(), contents.clone()));
            }
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
    // directory to bind it onto (and is not shown in a tree without /run).
    let run_has_point = |path: &Path| {
        mounts::open_target(tree, path)
            .and_then(|fd| fstat(&fd))
            .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
    };
    let run_user = personal.run_user.as_deref().filter(|_| run_has_point(run));
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
                .filter(|spec| spec.target.starts_with(point))
                .filter_map(|spec| Some((spec.target.as_path(), mounts::open_target(tree, &spec.target).ok()?)))
                .collect()
        };
        let carried = if etc_layer.is_empty() { Vec::new() } else { held_under(etc) };
        let carried_run = if lower_run.is_some() { held_under(run) } else { Vec::new() };
        // The layer is a tmpfs mounted on the first directory it goes over,
        // where the overlay then covers it: reachable from nowhere else.
        let size = etc_layer.iter().map(|(_, c)| c.len()).sum::<usize>() + (1 << 20);
        let options = format!("mode=0755,uid=0,gid=0,size={size},nr_inodes=1024");
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        mount(Some("tmpfs"), fd_path(stage).as_str(), Some("tmpfs"), flags, Some(options.as_str()))
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
    if let Some(path) = run_user {
        match mounts::bind(tree, tree_path, &run_user_spec(path), uid, gid) {
            Ok(Outcome::Mounted | Outcome::Missing(_)) => {}
            Err(err) => return Err((err.what, err.why)),
        }
    }
    Ok(())
}

/// Makes the held binds again at their paths, over an overlay that hid them.
fn bind_again(tree: &OwnedFd, held: Vec<(&Path, OwnedFd)>) -> Result<(), Failure> {
    for (target, held) in held {
        let new =
            mounts::open_target(tree, target).map_err(failed(format!("opening {} in the tree", target.display())))?;
        let flags = MsFlags::MS_BIND | MsFlags::MS_REC;
        mount(Some(fd_path(&held).as_str()), fd_path(&new).as_str(), None::<&str>, flags, None::<&str>)
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
fn run_user_spec(source: &Path) -> MountSpec {
    MountSpec {
        source: source.to_path_buf(),
        target: source.to_path_buf(),
        recursive: false,
        attrs: NOSUID | NODEV,
        as_caller: true,
        caller_may_own_target: true,
        kind: Kind::Directory,
        if_missing: IfMissing::Skip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> PasswdEntry {
        PasswdEntry {
            name: b"alice".to_vec(),
            passwd: b"$6$salt$hash".to_vec(),
            uid: 1000,
            gid: 1000,
            gecos: b"Alice A.".to_vec(),
            dir: b"/home/alice".to_vec(),
            shell: b"/bin/bash".to_vec(),
        }
    }

    fn groups(gid: u32) -> io::Result<Option<sys::GroupEntry>> {
        let name: &[u8] = match gid {
            1000 => b"alice",
            500 => b"physics",
            600 => b"caf\xe9",
            700 => b"bad:name",
            800 => return Err(io::Error::from_raw_os_error(libc::ETIMEDOUT)),
            _ => return Ok(None),
        };
        Ok(Some(sys::GroupEntry { name: name.to_vec(), gid }))
    }

    #[test]
    fn lines_are_the_host_entries_without_a_hash() {
        let account = account_lines(&alice(), &[500, 600, 1000, 4242], groups).expect("representable");
        assert_eq!(account.passwd, b"alice:x:1000:1000:Alice A.:/home/alice:/bin/bash");
        // A directory service's "*" (no password here) stays as on the host.
        let ldap = PasswdEntry { passwd: b"*".to_vec(), ..alice() };
        assert!(account_lines(&ldap, &[], groups).expect("ok").passwd.starts_with(b"alice:*:1000:"));
        let lines: Vec<&[u8]> = account.groups.iter().map(|(_, l)| l.as_slice()).collect();
        // 4242 has no name on the host, so none inside; bytes stay as they are.
        assert_eq!(lines, [&b"physics:x:500:alice"[..], b"caf\xe9:x:600:alice", b"alice:x:1000:"]);
    }

    #[test]
    fn entries_that_cannot_be_shown_faithfully_show_nothing() {
        let cases: [(&str, PasswdEntry, &[u32]); 7] = [
            ("gecos with ':'", PasswdEntry { gecos: b"a:b".to_vec(), ..alice() }, &[]),
            ("gecos with a newline", PasswdEntry { gecos: b"a\nroot::0:0::/:/bin/sh".to_vec(), ..alice() }, &[]),
            ("home with ':'", PasswdEntry { dir: b"/home/a:b".to_vec(), ..alice() }, &[]),
            ("compat directive", PasswdEntry { name: b"+alice".to_vec(), ..alice() }, &[]),
            ("empty name", PasswdEntry { name: Vec::new(), ..alice() }, &[]),
            ("group name with ':'", alice(), &[700]),
            ("group lookup timing out", alice(), &[500, 800]),
        ];
        for (case, pw, gids) in cases {
            assert!(account_lines(&pw, gids, groups).is_err(), "{case}");
        }
        let why = account_lines(&alice(), &[800], groups).unwrap_err();
        assert!(why.starts_with("looking up group 800: "), "{why}");
    }

    #[test]
    fn the_trees_own_entries_win_and_others_are_untouched() {
        let account = account_lines(&alice(), &[500, 1000], groups).expect("ok");
        let passwd = b"root:x:0:0::/root:/bin/sh\nbob:x:1001:1001::/home/bob:/bin/sh";
        let group = b"root:x:0:\nscience:x:500:bob\n";
        let (p, g) = merged_databases(passwd, group, &account);
        assert_eq!(
            p.as_deref(),
            Some(&b"root:x:0:0::/root:/bin/sh\nbob:x:1001:1001::/home/bob:/bin/sh\nalice:x:1000:1000:Alice A.:/home/alice:/bin/bash\n"[..])
        );
        assert_eq!(g.as_deref(), Some(&b"root:x:0:\nscience:x:500:bob\nalice:x:1000:\n"[..]));
        // A tree that already has the uid and every gid needs nothing.
        let passwd = b"alice2:x:1000:1000::/h:/bin/sh\n";
        let group = b"a:x:1000:\nb:x:500:\n";
        assert_eq!(merged_databases(passwd, group, &account), (None, None));
        // Ids are compared whole: 10000 is not 1000.
        let (p, _) = merged_databases(b"x:x:10000:1::/:/bin/sh\n", b"", &account);
        assert!(p.is_some());
    }
}
