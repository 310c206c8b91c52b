//! Bind destinations: every directory imageswitch binds a host directory onto
//! (`/home`, `/tmp`, the configured binds) exists in the tree, or imageswitch
//! refuses to enter it. Observe which are missing, diff, create them.
#![forbid(unsafe_code)]

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::util::in_tree;

/// How a bind destination looks in the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Directory,
    Missing,
    /// A file or a link: imageswitch never mounts onto one; not ours to replace.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Create(PathBuf),
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Create(dir) => write!(f, "create directory {} (a bind destination)", dir.display()),
        }
    }
}

pub fn observe(tree: &Path, binds: &[PathBuf]) -> Vec<(PathBuf, Seen)> {
    binds
        .iter()
        .map(|bind| {
            let seen = match in_tree(tree, bind, false).map(fs::symlink_metadata) {
                Ok(Ok(m)) if m.is_dir() => Seen::Directory,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Seen::Missing,
                _ => Seen::Other,
            };
            (bind.clone(), seen)
        })
        .collect()
}

pub fn diff(observed: &[(PathBuf, Seen)]) -> Vec<Change> {
    observed.iter().filter(|(_, seen)| *seen == Seen::Missing).map(|(dir, _)| Change::Create(dir.clone())).collect()
}

pub fn act(tree: &Path, changes: &[Change]) -> Result<()> {
    for Change::Create(dir) in changes {
        super::ensure_dir(tree, &dir.to_string_lossy())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_missing_destinations_are_created() {
        type Row<'a> = (&'a [(&'a str, Seen)], &'a [&'a str]);
        let rows: &[Row] = &[
            (&[], &[]),
            (&[("/home", Seen::Directory)], &[]),
            (&[("/home", Seen::Missing)], &["/home"]),
            (&[("/home", Seen::Other), ("/data/x", Seen::Missing), ("/tmp", Seen::Directory)], &["/data/x"]),
        ];
        for (observed, want) in rows {
            let observed: Vec<(PathBuf, Seen)> = observed.iter().map(|(p, s)| (PathBuf::from(p), *s)).collect();
            let want: Vec<Change> = want.iter().map(|p| Change::Create(PathBuf::from(p))).collect();
            assert_eq!(diff(&observed), want, "{observed:?}");
        }
        assert_eq!(Change::Create(PathBuf::from("/home")).to_string(), "create directory /home (a bind destination)");
    }
}
