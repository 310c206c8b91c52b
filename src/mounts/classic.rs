//! Kernels before 5.12 (no open_tree/mount_setattr): a recursive bind with
//! mount(2) onto the destination's descriptor, then a bind remount of each new
//! mount — found by comparing mount ids in mountinfo before and after, and
//! reached again by descriptor — adding nosuid/nodev/noexec to the flags each
//! already has.
#![forbid(unsafe_code)]

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, openat};
use nix::mount::{MsFlags, mount};
use nix::sys::stat::{Mode, fstat};
use nix::sys::statvfs::{FsFlags, fstatvfs};
use nix::unistd::{Gid, Uid};

use super::attach::{fd_path, open_target, with_fs_identity};
use super::{MountSpec, NODEV, NOEXEC, NOSUID, Outcome, RDONLY, mount_table};

fn ms_flags(attrs: u64) -> MsFlags {
    let mut flags = MsFlags::empty();
    flags.set(MsFlags::MS_NOSUID, attrs & NOSUID != 0);
    flags.set(MsFlags::MS_NODEV, attrs & NODEV != 0);
    flags.set(MsFlags::MS_NOEXEC, attrs & NOEXEC != 0);
    flags.set(MsFlags::MS_RDONLY, attrs & RDONLY != 0);
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
    Ok(mount_table()?.into_iter().map(|m| m.id).collect())
}

/// Adds `attrs` to every mount that is not in `before` and lies at or
/// under `target` (a path inside the tree), reaching each one by walking
/// from `tree`, whose own path in this namespace is `tree_real`. A host
/// mount stacked under another at the same point (the host's /dev/pts
/// often is) stays covered: unreachable by path, and so unusable.
fn flag_new_mounts(tree: &OwnedFd, tree_real: &Path, target: &Path, before: &[u64], attrs: u64) -> io::Result<()> {
    let target_real = tree_real.join(target.strip_prefix("/").unwrap_or(target));
    for point in mount_table()?.into_iter().filter(|m| !before.contains(&m.id)).map(|m| m.point) {
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
    flag_new_mounts(tree, &tree_real, &spec.target, &before, spec.attrs).map_err(context("setting mount flags on"))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mount_attribute_becomes_its_remount_flag() {
        assert_eq!(ms_flags(0), MsFlags::empty());
        assert_eq!(ms_flags(NOSUID), MsFlags::MS_NOSUID);
        assert_eq!(ms_flags(NOSUID | NODEV | NOEXEC), MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
        assert_eq!(ms_flags(NODEV | RDONLY), MsFlags::MS_NODEV | MsFlags::MS_RDONLY);
    }
}
