//! *act* of a retirement: the removals `diff` listed, in their order.
#![forbid(unsafe_code)]

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::{Kind, Retirement};
use crate::store::Store;
use crate::util;

/// Refuses while a process has its root in `STORE/NAME` or anything is
/// mounted there (`sysrootctl mount`); that is checked again before each
/// generation goes.
fn in_use(dir: &Path) -> Result<()> {
    let procs = util::processes_rooted_in(dir);
    if let Some((pid, root)) = procs.first() {
        bail!(
            "in use: pid {pid} has its root in {} ({} process(es)); nothing more removed",
            root.display(),
            procs.len()
        );
    }
    if let Some(point) = util::mounts_below(dir).first() {
        bail!("{} is mounted (umount --recursive {}); nothing more removed", point.display(), point.display());
    }
    Ok(())
}

fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Removes what `diff` listed, under the sysroot's lock (held by the caller).
pub fn act(r: &Retirement) -> Result<()> {
    if let Some(why) = &r.refused {
        bail!("{why}");
    }
    let store = Store::new(&r.store, &r.name, Path::new(""));
    in_use(&store.dir)?;
    if r.remove.iter().any(|x| x.kind == Kind::Store) {
        // From here on no generation of it is listed, published or built on.
        util::write_atomic(&store.retiring_path(), b"", 0o600)?;
    }
    for x in &r.remove {
        match x.kind {
            Kind::Link | Kind::Alias | Kind::BinLink | Kind::Launcher | Kind::Record => remove_file(&x.path)?,
            Kind::BinDir => match fs::remove_dir(&x.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("cannot remove {}", x.path.display()));
                }
                _ => {}
            },
            Kind::Generation => {
                in_use(&store.dir)?;
                let n = x.path.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse().ok());
                if let Some(n) = n.filter(|_| x.path.exists()) {
                    store.retire_generation(n)?;
                }
            }
            Kind::Store => {
                let last = [store.retiring_path(), store.dir.join(".lock")];
                for entry in fs::read_dir(&store.dir).into_iter().flatten().flatten() {
                    if !last.contains(&entry.path()) {
                        util::kill_rooted_in(&entry.path());
                        util::remove_tree(&entry.path())?;
                    }
                }
                for path in &last {
                    remove_file(path)?;
                }
                fs::remove_dir(&store.dir).with_context(|| format!("cannot remove {}", store.dir.display()))?;
            }
        }
    }
    Ok(())
}
