//! `sysrootctl mount NAME` / `umount NAME`: the tree's binds made in the host
//! namespace, for sites whose own tools chroot into the tree (Torque's
//! `qsub -D`, other schedulers) instead of going through imageswitch.
//!
//! The binds are exactly imageswitch's (`imageswitch::mounts::plan`, without
//! a per-user home: homes come through the configured binds), made with the
//! same code, so they carry the same nosuid/nodev/noexec flags. Each is made a
//! slave once attached: host mounts appear inside, nothing propagates back.
//! Both verbs are idempotent: a bind already in place is left alone, and
//! `umount` of a tree with no binds does nothing.
#![forbid(unsafe_code)]

use std::fs;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::unistd::{Gid, Uid};

use imageswitch::mounts::{self, MountSpec, Outcome};
use imageswitch::trusted::{self, Kind};

use crate::decl::Declaration;
use crate::util::Verbosity;

fn mount_points() -> Result<Vec<PathBuf>> {
    Ok(mounts::mount_table().context("reading /proc/self/mountinfo")?.into_iter().map(|m| m.point).collect())
}

struct Tree {
    fd: OwnedFd,
    /// The tree's real path (a generation link resolved).
    real: PathBuf,
    specs: Vec<MountSpec>,
}

fn open(decl: &Declaration, name: &str) -> Result<Tree> {
    let d = decl.get(name)?;
    let sysroot = &d.sysroot;
    let fd = trusted::open_trusted(&sysroot.path, Kind::Directory)
        .map_err(|(part, why)| anyhow!("{name}: tree {}: {}: {why}", sysroot.path.display(), part.display()))?;
    trusted::check_tree_entries(&fd).map_err(|(entry, why)| anyhow!("{name}: tree entry {entry}: {why}"))?;
    let real =
        fs::canonicalize(&sysroot.path).with_context(|| format!("{name}: resolving {}", sysroot.path.display()))?;
    // Homes arrive through the configured binds: no one's own home bind.
    let specs = mounts::plan(sysroot, &decl.config.defaults, None);
    Ok(Tree { fd, real, specs })
}

fn inside(tree: &Tree, spec: &MountSpec) -> PathBuf {
    tree.real.join(spec.target.strip_prefix("/").unwrap_or(&spec.target))
}

pub fn mount_tree(decl: &Declaration, name: &str, verbosity: Verbosity) -> Result<i32> {
    let tree = open(decl, name)?;
    let mut made = 0;
    for spec in &tree.specs {
        let target = inside(&tree, spec);
        if mount_points()?.contains(&target) {
            continue;
        }
        match mounts::bind(&tree.fd, &tree.real, spec, Uid::from_raw(0), Gid::from_raw(0)) {
            Ok(Outcome::Mounted) => {}
            Ok(Outcome::Missing(_)) => continue,
            Err(err) => {
                let failed = anyhow!("{name}: {}: {}", err.what, imageswitch::error::describe(&err.why));
                // Leave nothing half-done behind.
                let _ = umount_tree(decl, name, Verbosity(0));
                return Err(failed);
            }
        }
        if mount_points()?.contains(&target) {
            mount(None::<&str>, &target, None::<&str>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&str>)
                .with_context(|| format!("{name}: making {} a slave", target.display()))?;
            made += 1;
            if verbosity.passthrough() {
                crate::outln!("{name}: bound {} on {}", spec.source.display(), target.display());
            }
        }
    }
    if !verbosity.quiet() {
        crate::outln!("{name}: {made} bind(s) made");
    }
    Ok(0)
}

/// Every tree `mount` may have bound into: the live one, and for a managed
/// sysroot every generation (a rollback or apply since may have moved `path`).
fn bound_roots(decl: &Declaration, name: &str, tree: &Tree) -> Vec<PathBuf> {
    let mut roots = vec![tree.real.clone()];
    if let Ok(d) = decl.get(name) {
        if let Some(build) = &d.build {
            let store = crate::commands::store_of(d, build);
            roots.extend(store.generations().into_iter().map(|n| store.tree(n)).filter(|t| *t != tree.real));
        }
    }
    roots
}

pub fn umount_tree(decl: &Declaration, name: &str, verbosity: Verbosity) -> Result<i32> {
    let tree = open(decl, name)?;
    let mut removed = 0;
    // Last made first; MNT_DETACH takes each bind's submounts with it. Only
    // what `mount` makes is touched, never other mounts under the tree.
    for root in bound_roots(decl, name, &tree) {
        for spec in tree.specs.iter().rev() {
            let target = root.join(spec.target.strip_prefix("/").unwrap_or(&spec.target));
            while mount_points()?.contains(&target) {
                umount2(&target, MntFlags::MNT_DETACH)
                    .with_context(|| format!("{name}: unmounting {}", target.display()))?;
                removed += 1;
            }
        }
    }
    if !verbosity.quiet() {
        crate::outln!("{name}: {removed} mount(s) removed");
    }
    Ok(0)
}
