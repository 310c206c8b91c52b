//! Mount points: every directory imageswitch binds a host directory onto
//! (`/home`, `/tmp`, the configured binds) exists in the tree, or imageswitch
//! refuses to enter it; `/run`, where it shows each caller's /run/user/UID,
//! exists, or it warns and shows none; every host file it shows (`host_files`: `/etc/hosts`
//! ...) has a file or link to be bound over, or imageswitch has to lay an
//! overlay over the tree's whole `/etc` on each entry instead, which costs a
//! new filesystem per entry (imageswitch(8), PER-ENTRY VIEW). Observe which
//! are missing, diff, create them: directories 0755, files empty and 0644,
//! root's.
#![forbid(unsafe_code)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::util::in_tree;

/// What imageswitch mounts onto the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// A host directory (binds).
    Directory,
    /// A file (host files).
    File,
}

/// How a mount point looks in the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Directory,
    /// A regular file or a link (imageswitch binds a host file over a link itself).
    File,
    Missing,
    /// Anything else, or a file where a directory is wanted: not ours to replace.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Create(PathBuf),
    CreateFile(PathBuf),
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Create(dir) => write!(f, "create directory {} (a bind destination)", dir.display()),
            Change::CreateFile(file) => write!(f, "create empty file {} (where the host's is shown)", file.display()),
        }
    }
}

/// Each of `binds` (wanted directories) and `files` (wanted files), as the tree has it.
pub fn observe(tree: &Path, binds: &[PathBuf], files: &[PathBuf]) -> Vec<(PathBuf, Want, Seen)> {
    let wanted = binds.iter().map(|p| (p, Want::Directory)).chain(files.iter().map(|p| (p, Want::File)));
    wanted
        .map(|(path, want)| {
            let seen = match in_tree(tree, path, false).map(fs::symlink_metadata) {
                Ok(Ok(m)) if m.is_dir() => Seen::Directory,
                Ok(Ok(m)) if m.is_file() || m.file_type().is_symlink() => Seen::File,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Seen::Missing,
                _ => Seen::Other,
            };
            (path.clone(), want, seen)
        })
        .collect()
}

pub fn diff(observed: &[(PathBuf, Want, Seen)]) -> Vec<Change> {
    observed
        .iter()
        .filter(|(_, _, seen)| *seen == Seen::Missing)
        .map(|(path, want, _)| match want {
            Want::Directory => Change::Create(path.clone()),
            Want::File => Change::CreateFile(path.clone()),
        })
        .collect()
}

pub fn act(tree: &Path, changes: &[Change]) -> Result<()> {
    for change in changes {
        match change {
            Change::Create(dir) => super::ensure_dir(tree, &dir.to_string_lossy())?,
            Change::CreateFile(file) => {
                if let Some(parent) = file.parent() {
                    super::ensure_dir(tree, &parent.to_string_lossy())?;
                }
                let path = in_tree(tree, file, false)?;
                let made = fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(&path);
                match made {
                    // Mode set again: root's umask must not narrow it.
                    Ok(mut f) => {
                        f.flush()?;
                        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))?
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_missing_mount_points_are_created_as_what_is_mounted_there() {
        type Row<'a> = (&'a [(&'a str, Want, Seen)], &'a [Change]);
        let (d, f) = (Want::Directory, Want::File);
        let p = PathBuf::from;
        let rows: &[Row] = &[
            (&[], &[]),
            (&[("/home", d, Seen::Directory)], &[]),
            (&[("/home", d, Seen::Missing)], &[Change::Create(p("/home"))]),
            (
                &[("/home", d, Seen::Other), ("/data/x", d, Seen::Missing), ("/tmp", d, Seen::Directory)],
                &[Change::Create(p("/data/x"))],
            ),
            (
                &[("/etc/localtime", f, Seen::File), ("/etc/hosts", f, Seen::Missing)],
                &[Change::CreateFile(p("/etc/hosts"))],
            ),
            // A directory where a host file goes is left alone (imageswitch overlays /etc then).
            (&[("/etc/hosts", f, Seen::Directory), ("/etc/timezone", f, Seen::Other)], &[]),
        ];
        for (observed, want) in rows {
            let observed: Vec<(PathBuf, Want, Seen)> =
                observed.iter().map(|(p, w, s)| (PathBuf::from(p), *w, *s)).collect();
            assert_eq!(diff(&observed), *want, "{observed:?}");
        }
        assert_eq!(Change::Create(p("/home")).to_string(), "create directory /home (a bind destination)");
        assert_eq!(
            Change::CreateFile(p("/etc/hosts")).to_string(),
            "create empty file /etc/hosts (where the host's is shown)"
        );
    }
}
