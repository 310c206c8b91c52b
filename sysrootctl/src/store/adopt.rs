//! Adoption: a hand-built tree at `path` taken over as a generation, with
//! `path` naming a complete tree at every moment.
#![forbid(unsafe_code)]

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::{Record, Store};
use crate::util;

impl Store {
    /// Where the hand-built tree stays after adoption, for the administrator.
    pub fn adopted_path(&self) -> PathBuf {
        util::sibling(&self.link, ".pre-sysrootctl")
    }

    /// `copy(path, N.tmp)` copies the hand-built tree as the next generation
    /// and says what to record; it becomes generation N and is swapped for
    /// the directory at `path` in one `renameat2(RENAME_EXCHANGE)`. Processes
    /// inside keep the old directory, which is then renamed to
    /// `PATH.pre-sysrootctl`.
    pub fn adopt(&self, copy: impl FnOnce(&Path, &Path) -> Result<Record>) -> Result<u32> {
        let old = self.adopted_path();
        if fs::symlink_metadata(&old).is_ok() {
            bail!("{} exists from an earlier adoption; remove it first", old.display());
        }
        let next = self.next();
        let record = Record { generation: next, ..copy(&self.link, &self.partial(next))? };
        self.finish(next, &record)?;
        let new_link = util::sibling(&self.link, ".sysrootctl-new");
        let _ = fs::remove_file(&new_link);
        std::os::unix::fs::symlink(self.tree(next), &new_link)?;
        nix::fcntl::renameat2(
            nix::fcntl::AT_FDCWD,
            &new_link,
            nix::fcntl::AT_FDCWD,
            &self.link,
            nix::fcntl::RenameFlags::RENAME_EXCHANGE,
        )
        .with_context(|| format!("cannot swap {} for a link to generation {next}", self.link.display()))?;
        fs::rename(&new_link, &old)?;
        Ok(next)
    }
}
