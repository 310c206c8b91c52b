//! `check`: the invariants `imageswitch` relies on, verified on the machine as
//! it is, plus the traps a user would otherwise find first.
#![forbid(unsafe_code)]

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Result;
use imageswitch::mounts::shared_source;
use imageswitch::trusted::{Kind, check_tree_entries, open_trusted, shared_ancestor};
use serde::Serialize;

use crate::accounts;
use crate::commands::{Opts, store_of};
use crate::decl::{Declaration, Declared};
use crate::elf;
use crate::exposure;
use crate::reconcile::bind_targets::Seen;
use crate::reconcile::{self, Ctx};
use crate::util::in_tree;

#[derive(Debug, Serialize)]
pub struct Finding {
    /// The sysroot concerned, or none for the host-wide checks.
    pub sysroot: Option<String>,
    pub message: String,
}

/// Directory trees not worth walking for world-writable directories.
const SKIP: &[&str] = &["proc", "sys", "dev", "run"];
/// At most this many world-writable directories are named per tree.
const MAX_LISTED: usize = 5;

/// What imageswitch itself says about `path`: the library code it opens
/// configuration and trees with (every component root-owned, not writable by
/// group or others, links root-owned and followed by hand), so `check` and
/// imageswitch can never disagree.
fn as_imageswitch_sees(path: &Path, kind: Kind) -> Result<OwnedFd, String> {
    open_trusted(path, kind).map_err(|(component, why)| {
        format!("imageswitch would refuse {}: {}: {why}", path.display(), component.display())
    })
}

fn world_writable(tree: &Path) -> (Vec<PathBuf>, usize) {
    let Ok(root) = fs::metadata(tree) else { return (Vec::new(), 0) };
    let (dev, mut listed, mut count) = (root.dev(), Vec::new(), 0);
    let mut stack = vec![tree.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let Ok(meta) = e.path().symlink_metadata() else { continue };
            if !meta.is_dir() || meta.dev() != dev {
                continue;
            }
            if dir == tree && SKIP.iter().any(|s| e.file_name() == *s) {
                continue;
            }
            let mode = meta.mode();
            if mode & 0o002 != 0 && mode & 0o1000 == 0 {
                count += 1;
                if listed.len() < MAX_LISTED {
                    listed.push(e.path());
                }
            }
            stack.push(e.path());
        }
    }
    (listed, count)
}

/// The tree's C library, found where distributions put it.
fn find_libc(tree: &Path) -> Option<(String, PathBuf)> {
    let mut candidates: Vec<String> =
        ["/lib64/libc.so.6", "/lib/libc.so.6", "/usr/lib64/libc.so.6"].map(String::from).to_vec();
    for base in ["/lib", "/usr/lib"] {
        if let Ok(dir) = in_tree(tree, Path::new(base), true) {
            if let Ok(entries) = fs::read_dir(dir) {
                for e in entries.flatten() {
                    let n = e.file_name().to_string_lossy().to_string();
                    if n.contains("-linux-gnu") {
                        candidates.push(format!("{base}/{n}/libc.so.6"));
                    }
                }
            }
        }
    }
    candidates.into_iter().find_map(|c| {
        let host = in_tree(tree, Path::new(&c), true).ok()?;
        host.is_file().then_some((c, host))
    })
}

pub fn kernel_too_old(tree: &Path, running: &str) -> Option<String> {
    let (inner, host) = find_libc(tree)?;
    let needed = elf::abi_tag(&fs::read(host).ok()?)?;
    let have = elf::parse_release(running)?;
    (needed > have).then(|| {
        format!(
            "the tree's C library ({inner}) needs Linux {}.{}.{} or newer but this kernel is {running}: every program inside will die with \"FATAL: kernel too old\"",
            needed.0, needed.1, needed.2
        )
    })
}

/// Synced accounts whose home imageswitch binds on its own (outside the
/// bound paths) but which has no mount point in the tree: they would start in `/`.
fn homes_without_mount_point(d: &Declared, tree: &Path) -> Vec<String> {
    let Some(sync) = d.build.as_ref().map(|b| &b.users).filter(|u| u.sync) else { return Vec::new() };
    let Ok(users) = reconcile::getent("passwd") else { return Vec::new() };
    accounts::unbound_homes(&accounts::in_range(users, sync.uid_min, sync.uid_max), &d.binds)
        .into_iter()
        .filter(|(_, home)| !in_tree(tree, home, true).is_ok_and(|p| p.is_dir()))
        .map(|(name, home)| {
            format!("account {name}: home {} has no mount point in the tree (run sysrootctl apply)", home.display())
        })
        .collect()
}

/// A tree sysrootctl did not build (unmanaged, or left by `--adopt`) whose
/// hazards every user can reach on the host, with the exact fix.
fn hand_made_exposure(tree: &Path, fix: &str) -> Option<String> {
    let found = exposure::scan(tree);
    (!found.is_empty()).then(|| {
        format!(
            "{} can be reached by every user outside imageswitch: {}: fix: {fix}",
            tree.display(),
            found.describe(),
        )
    })
}

/// Host directories whose links users follow (aliases, `bin_dir`, launchers):
/// one they cannot pass (a 0700 made under root's umask 077) breaks every
/// alias and `#!BIN_DIR/sh` script with "Permission denied".
fn link_dirs_users_cannot_enter(d: &Declared, opts: &Opts) -> Vec<String> {
    let s = &d.sysroot;
    let dirs = [
        (!s.aliases.is_empty()).then(|| ("alias links", opts.host.alias_dir.clone())),
        s.bin_dir.clone().map(|dir| ("bin_dir links", dir)),
        Some(("launchers", opts.host.applications_dir.clone())),
    ];
    dirs.into_iter()
        .flatten()
        .filter(|(_, dir)| dir.exists())
        .filter_map(|(what, dir)| {
            let (at, mode) = exposure::blocked(&dir)?;
            Some(format!(
                "users cannot reach the {what} in {}: {} is mode {mode:04o} (fix: chmod o+rx {})",
                dir.display(),
                at.display(),
                at.display()
            ))
        })
        .collect()
}

/// Bind destinations imageswitch needs in the tree, and a live generation
/// whose removal (by an older sysrootctl) stopped halfway.
fn refused_binds(d: &Declared, tree: &Path) -> Vec<String> {
    let s = &d.sysroot;
    let mut out: Vec<String> = reconcile::bind_targets::observe(tree, &d.binds, &[])
        .into_iter()
        .filter_map(|(bind, _, seen)| {
            let why = match seen {
                Seen::Directory => return None,
                Seen::File => "is not a directory".to_string(),
                Seen::Missing if d.build.is_some() => "is missing (run sysrootctl apply)".to_string(),
                Seen::Missing => format!("is missing (fix: mkdir -m 0755 {}{})", tree.display(), bind.display()),
                Seen::Other => "is not a directory".to_string(),
            };
            Some(format!("imageswitch would refuse {}: bind destination {} {why}", s.path.display(), bind.display()))
        })
        .collect();
    if let Some(build) = &d.build {
        let store = store_of(d, build);
        if let Ok(Some(n)) = store.live() {
            if !store.is_complete(n) {
                out.push(format!(
                    "the live generation {n} is incomplete (half removed): fix: sysrootctl rollback {}",
                    s.name
                ));
            }
        }
    }
    out
}

fn check_sysroot(d: &Declared, opts: &Opts, running: &str) -> Vec<String> {
    let mut out = Vec::new();
    let s = &d.sysroot;
    let tree = match fs::symlink_metadata(&s.path) {
        Err(_) => {
            out.push(format!(
                "{} does not exist{}",
                s.path.display(),
                if d.build.is_some() { " (run sysrootctl apply)" } else { "" }
            ));
            return out;
        }
        Ok(_) => match fs::canonicalize(&s.path) {
            Ok(t) => t,
            Err(e) => {
                out.push(format!("{}: {e}", s.path.display()));
                return out;
            }
        },
    };
    match as_imageswitch_sees(&s.path, Kind::Directory) {
        Ok(fd) => {
            if let Err((entry, why)) = check_tree_entries(&fd) {
                out.push(format!("imageswitch would refuse {}: {entry} in the tree: {why}", s.path.display()));
            }
        }
        Err(why) => out.push(why),
    }
    for secret in ["/etc/shadow", "/etc/gshadow"] {
        if let Some(meta) = in_tree(&tree, Path::new(secret), true).ok().and_then(|p| fs::metadata(p).ok()) {
            if meta.mode() & 0o027 != 0 || meta.uid() != 0 {
                out.push(format!(
                    "{secret} in the tree is mode {:04o} owner {}: it must be 0640 or stricter, owned by root",
                    meta.mode() & 0o7777,
                    meta.uid()
                ));
            }
        }
    }
    let (listed, count) = world_writable(&tree);
    if count > 0 {
        let names: Vec<String> =
            listed.iter().map(|p| format!("/{}", p.strip_prefix(&tree).unwrap_or(p).display())).collect();
        out.push(format!(
            "{count} world-writable director{} without the sticky bit in the tree: {}",
            if count == 1 { "y" } else { "ies" },
            names.join(" ")
        ));
    }
    if let Some(msg) = kernel_too_old(&tree, running) {
        out.push(msg);
    }
    out.extend(homes_without_mount_point(d, &tree));
    out.extend(refused_binds(d, &tree));
    // Links: whatever apply would still change, on the host or in the tree, is wrong now.
    match &d.build {
        Some(build) => {
            out.extend(link_dirs_users_cannot_enter(d, opts));
            let mut c = Ctx::new(d, build, &tree, false, opts.verbosity, &opts.host);
            let links = reconcile::host_links(&c).and_then(|mut l| {
                l.extend(reconcile::tree_links(&mut c)?);
                Ok(l)
            });
            match links {
                Ok(changes) => {
                    out.extend(changes.into_iter().map(|c| format!("links out of date (run sysrootctl apply): {c}")))
                }
                Err(e) => out.push(format!("{e:#}")),
            }
            // Whoever can write an overlay or an import source can write the tree.
            let sources = build.skeleton.iter().chain(&build.files).map(|f| f.src.clone()).chain(build.source.clone());
            for src in sources {
                let kind = if src.is_dir() { Kind::Directory } else { Kind::File };
                if let Err((component, why)) = open_trusted(&src, kind) {
                    out.push(format!(
                        "{} is not safe to copy into the tree: {}: {why}",
                        src.display(),
                        component.display()
                    ));
                }
            }
            if let Some(why) = store_of(d, build).exposed() {
                let held = exposure::scan(&tree);
                let held =
                    if held.is_empty() { String::new() } else { format!("; the live one holds {}", held.describe()) };
                out.push(format!(
                    "generations are reachable by users outside imageswitch ({why}){held}: fix: sysrootctl apply {} (nothing is rebuilt)",
                    s.name
                ));
            }
            let adopted = crate::util::sibling(&s.path, ".pre-sysrootctl");
            let remove = format!("rm -rf --one-file-system {} once no process uses it", adopted.display());
            out.extend(hand_made_exposure(&adopted, &remove));
            if !fs::symlink_metadata(&s.path).is_ok_and(|m| m.file_type().is_symlink()) {
                out.extend(hand_made_exposure(&tree, &format!("sysrootctl apply --adopt {}", s.name)));
            }
        }
        None => {
            out.extend(hand_made_exposure(&tree, &exposure::fix_for(&tree)));
            for alias in &s.aliases {
                let link = opts.host.alias_dir.join(alias);
                if fs::read_link(&link).ok().as_deref() != Some(opts.host.imageswitch.as_path()) {
                    out.push(format!("{} is not a link to {}", link.display(), opts.host.imageswitch.display()));
                }
            }
        }
    }
    out
}

pub fn check(decl: &Declaration, names: &[String], opts: &Opts) -> Result<i32> {
    let mut findings = Vec::new();
    let host = |message: String| Finding { sysroot: None, message };
    if let Err(why) = as_imageswitch_sees(&decl.file, Kind::File) {
        findings.push(host(why));
    }
    let exe = &opts.host.imageswitch;
    match fs::metadata(exe) {
        Ok(meta) => {
            if meta.uid() != 0 || meta.mode() & 0o4000 == 0 {
                findings.push(host(format!(
                    "{} must be setuid root (install -m 4755 -o root): it is mode {:04o} owner {}",
                    exe.display(),
                    meta.mode() & 0o7777,
                    meta.uid()
                )));
            }
            if meta.mode() & 0o022 != 0 {
                findings.push(host(format!("{} is group/world-writable", exe.display())));
            }
        }
        Err(e) => findings
            .push(host(format!("{}: {e} (pass --imageswitch PATH if it is installed elsewhere)", exe.display()))),
    }
    for (name, err) in &decl.broken {
        if names.is_empty() || names.contains(name) {
            findings.push(Finding { sysroot: Some(name.clone()), message: err.to_string() });
        }
    }
    let running = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let selected: Vec<&Declared> = if names.is_empty() {
        decl.sysroots.iter().collect()
    } else {
        names.iter().filter_map(|n| decl.sysroots.iter().find(|d| &d.sysroot.name == n)).collect()
    };
    for d in selected {
        if let Some(shared) = shared_source(&d.sysroot, &decl.config.defaults, shared_ancestor) {
            findings.push(Finding {
                sysroot: Some(d.sysroot.name.clone()),
                message: format!("imageswitch would refuse {}: {shared}", d.sysroot.name),
            });
        }
        for message in check_sysroot(d, opts, &running) {
            findings.push(Finding { sysroot: Some(d.sysroot.name.clone()), message });
        }
    }
    if opts.json {
        crate::outln!("{}", serde_json::to_string_pretty(&findings)?);
    } else {
        for f in &findings {
            crate::outln!("{}: {}", f.sysroot.as_deref().unwrap_or("host"), f.message);
        }
        if findings.is_empty() && !opts.verbosity.quiet() {
            crate::outln!("no problems found");
        }
    }
    Ok(if findings.is_empty() { 0 } else { 2 })
}
