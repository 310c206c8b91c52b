//! What sysrootctl made on the host for a sysroot, recorded beside its store
//! for `retire`.
#![forbid(unsafe_code)]

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::util;

/// The host paths sysrootctl made for one sysroot, recorded by every run that
/// brings its host links up to date, in `STORE/NAME.host.json` (alias links
/// are listed in `STORE/NAME.aliases`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostRecord {
    pub path: PathBuf,
    pub bin_dir: Option<PathBuf>,
    pub launcher: PathBuf,
    /// The declaration file it was made under (`realpath`).
    pub config: Option<PathBuf>,
    /// The imageswitch its links point at.
    pub imageswitch: Option<PathBuf>,
}

pub fn host_record_path(store: &Path, name: &str) -> PathBuf {
    store.join(format!("{name}.host.json"))
}

pub fn aliases_path(store: &Path, name: &str) -> PathBuf {
    store.join(format!("{name}.aliases"))
}

pub(super) fn read_host(store: &Path, name: &str) -> Option<HostRecord> {
    serde_json::from_slice(&fs::read(host_record_path(store, name)).ok()?).ok()
}

/// Records what a run made on the host (rewritten only when it changed).
pub fn remember(store: &Path, name: &str, record: &HostRecord) -> Result<()> {
    if read_host(store, name).as_ref() == Some(record) {
        return Ok(());
    }
    fs::DirBuilder::new().recursive(true).mode(0o755).create(store)?;
    util::write_atomic(&host_record_path(store, name), &serde_json::to_vec_pretty(record)?, 0o644)
}
