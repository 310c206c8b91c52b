//! Creating a tree from nothing: import, debootstrap, mmdebstrap, dnf.
//!
//! Each backend fills a directory that does not exist yet (`STORE/NAME/N.tmp`);
//! only after the reconcile steps and verification is it renamed and published.
#![forbid(unsafe_code)]

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::decl::{Build, Method};
use crate::util::{self, Verbosity};

/// One line describing what the bootstrap will do, for `plan`.
pub fn describe(build: &Build) -> String {
    match build.method {
        Method::Tarball => {
            format!("import {}", build.source.as_ref().map(|s| s.display().to_string()).unwrap_or_default())
        }
        Method::Dnf => format!(
            "bootstrap release {} with dnf: {}",
            build.suite.as_deref().unwrap_or("?"),
            build.packages.join(" ")
        ),
        method => format!(
            "bootstrap {} {} ({})",
            build.suite.as_deref().unwrap_or("?"),
            build.arch.clone().unwrap_or_else(host_arch),
            method.as_str()
        ),
    }
}

pub fn host_arch() -> String {
    Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "amd64".to_string())
}

/// The first Debian mirror in the host's own apt sources: the project never
/// names one itself.
pub fn host_mirror() -> Result<String> {
    if let Ok(text) = fs::read_to_string("/etc/apt/sources.list.d/debian.sources") {
        if let Some(uri) = text.lines().find_map(|l| l.strip_prefix("URIs:")).and_then(|r| r.split_whitespace().next())
        {
            return Ok(uri.to_string());
        }
    }
    let mut lists = vec![std::path::PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        lists.extend(entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "list")));
    }
    for list in lists {
        let Ok(text) = fs::read_to_string(&list) else { continue };
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.first() == Some(&"deb") && !line.contains("security") {
                if let Some(uri) = words.iter().skip(1).find(|w| !w.starts_with('[')) {
                    return Ok(uri.to_string());
                }
            }
        }
    }
    bail!("no mirror in the host's apt sources; set \"mirror\" in the build table")
}

/// Fills `dest` (which must not exist) with a new tree.
pub fn bootstrap(build: &Build, dest: &Path, verbosity: Verbosity) -> Result<()> {
    new_tree_dir(dest, verbosity)?;
    match build.method {
        Method::Tarball => import(build.source.as_deref().context("no source")?, dest, verbosity),
        Method::Debootstrap | Method::Mmdebstrap => {
            let suite = build.suite.as_deref().context("no suite")?;
            let arch = build.arch.clone().unwrap_or_else(host_arch);
            let mirror = match &build.mirror {
                Some(m) => m.clone(),
                None => host_mirror()?,
            };
            let mut cmd;
            if build.method == Method::Debootstrap {
                cmd = crate::namespace::tool("debootstrap");
                cmd.arg("--variant=minbase").arg(format!("--arch={arch}"));
            } else {
                cmd = crate::namespace::tool("mmdebstrap");
                cmd.arg("--variant=minbase").arg(format!("--architectures={arch}"));
            }
            if !build.packages.is_empty() {
                cmd.arg(format!("--include={}", build.packages.join(",")));
            }
            cmd.arg(suite).arg(dest).arg(mirror);
            util::run(&mut cmd, verbosity)?;
            Ok(())
        }
        Method::Dnf => {
            let packages: Vec<&str> = build.packages.iter().map(String::as_str).collect();
            dnf_install(build, dest, &packages, verbosity)
        }
    }
}

/// A directory is copied; anything else is a tar archive (compression detected by tar).
fn import(source: &Path, dest: &Path, verbosity: Verbosity) -> Result<()> {
    let meta = fs::metadata(source).with_context(|| format!("import source {}", source.display()))?;
    if meta.is_dir() {
        copy_into(source, dest, verbosity)?;
    } else {
        util::run(
            crate::namespace::tool("tar")
                // Every extended attribute (file capabilities such as ping's
                // cap_net_raw live in security.capability) and ACLs.
                .args([
                    "-x",
                    "--numeric-owner",
                    "--preserve-permissions",
                    "--xattrs",
                    "--xattrs-include=*",
                    "--acls",
                    "-f",
                ])
                .arg(source)
                .arg("-C")
                .arg(dest),
            verbosity,
        )?;
    }
    // Build markers of the test cache or an image tool mean nothing in a tree.
    let _ = fs::remove_file(dest.join(".complete"));
    Ok(())
}

/// Where an rpm database lives inside a tree, newest layout first; a new tree
/// gets `/var/lib/rpm`, which every EL release's own rpm reads.
pub fn rpm_dbpath(tree: &Path) -> &'static str {
    ["/usr/lib/sysimage/rpm", "/var/lib/rpm"]
        .into_iter()
        .find(|d| {
            crate::util::in_tree(tree, Path::new(d), true)
                .is_ok_and(|p| p.join("rpmdb.sqlite").exists() || p.join("Packages").exists())
        })
        .unwrap_or("/var/lib/rpm")
}

/// `dnf --installroot` from the host. The host's rpm may keep its database
/// somewhere else (Debian's rpm uses ~/.rpmdb), so dnf runs with a private HOME
/// whose `.rpmmacros` pins the tree's own database path. With `mirror` set, that
/// repository is the only one used.
pub fn dnf_install(build: &Build, tree: &Path, packages: &[&str], verbosity: Verbosity) -> Result<()> {
    let home = tree.with_extension("rpm-home");
    let _ = fs::remove_dir_all(&home);
    fs::create_dir(&home).with_context(|| format!("cannot create {}", home.display()))?;
    fs::write(home.join(".rpmmacros"), format!("%_dbpath {}\n", rpm_dbpath(tree)))?;
    let mut cmd = crate::namespace::tool("dnf");
    cmd.env("HOME", &home)
        .arg("-y")
        .arg(format!("--installroot={}", tree.display()))
        .arg(format!("--releasever={}", build.suite.as_deref().unwrap_or("")))
        .arg("--setopt=install_weak_deps=False")
        .arg("--setopt=keepcache=False");
    if let Some(mirror) = &build.mirror {
        cmd.arg("--disablerepo=*")
            .arg(format!("--repofrompath=sysrootctl,{mirror}"))
            .arg("--enablerepo=sysrootctl")
            .arg("--nogpgcheck");
    }
    cmd.arg("install").args(packages);
    let result = util::run(&mut cmd, verbosity);
    let _ = fs::remove_dir_all(&home);
    result.map(|_| ())
}

/// An empty directory for a new tree: a btrfs subvolume where the store is on
/// btrfs (so the next generation can be a snapshot of it), else a plain one.
fn new_tree_dir(dest: &Path, verbosity: Verbosity) -> Result<()> {
    if dest.parent().is_some_and(util::on_btrfs) {
        util::run(crate::namespace::tool("btrfs").args(["-q", "subvolume", "create"]).arg(dest), verbosity)?;
    } else {
        fs::create_dir(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    }
    fs::set_permissions(dest, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    Ok(())
}

/// Copies a tree's contents (and its root's owner and mode) into `dest`,
/// never crossing into another mount: what `sysrootctl mount` bound there
/// (`/proc`, `/sys`, `/dev`, homes) is an empty directory in the copy.
fn copy_into(from: &Path, dest: &Path, verbosity: Verbosity) -> Result<()> {
    util::run(
        crate::namespace::tool_without_mounts_below("cp", from)
            .args(["-a", "--reflink=auto", "--"])
            .arg(from.join("."))
            .arg(dest),
        verbosity,
    )?;
    Ok(())
}

/// Starts the next generation from `from`: a btrfs snapshot when it is a
/// subvolume, else a copy (reflinks where the filesystem offers them).
pub fn copy_generation(from: &Path, to: &Path, verbosity: Verbosity) -> Result<()> {
    if util::is_subvolume(from) && to.parent().is_some_and(util::on_btrfs) {
        util::run(
            crate::namespace::tool("btrfs").args(["-q", "subvolume", "snapshot", "--"]).arg(from).arg(to),
            verbosity,
        )?;
        return Ok(());
    }
    new_tree_dir(to, verbosity)?;
    copy_into(from, to, verbosity)
}
