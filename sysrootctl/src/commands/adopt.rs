//! `apply --adopt`: a hand-built tree at `path` taken over as a generation.
#![forbid(unsafe_code)]

use super::*;

pub(super) fn adopted_path(store: &Store) -> PathBuf {
    crate::util::sibling(&store.link, ".pre-sysrootctl")
}

/// Takes over a hand-built tree: copies it as the next generation, then swaps
/// it for the link in one `renameat2(RENAME_EXCHANGE)`, so `path` always names
/// a complete tree. Processes inside keep the old directory, which stays at
/// `PATH.pre-sysrootctl`.
pub(super) fn adopt(d: &Declared, store: &Store, opts: &Opts) -> Result<u32> {
    let old = adopted_path(store);
    if fs::symlink_metadata(&old).is_ok() {
        bail!("{} exists from an earlier adoption; remove it first", old.display());
    }
    let next = store.next();
    let phase =
        Phase::start(&d.sysroot.name, format!("adopt {} as generation {next}", store.link.display()), opts.verbosity);
    backend::copy_generation(&store.link, &store.partial(next), opts.verbosity)?;
    let record = Record {
        generation: next,
        id: crate::transfer::new_id()?,
        created: store::now(),
        method: "adopted".to_string(),
        baseline: reconcile::installed_packages(&store.partial(next)),
        changes: vec![format!("adopt {}", store.link.display())],
        ..Record::default()
    };
    store.finish(next, &record)?;
    let new_link = crate::util::sibling(&store.link, ".sysrootctl-new");
    let _ = fs::remove_file(&new_link);
    std::os::unix::fs::symlink(store.tree(next), &new_link)?;
    nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        &new_link,
        nix::fcntl::AT_FDCWD,
        &store.link,
        nix::fcntl::RenameFlags::RENAME_EXCHANGE,
    )
    .with_context(|| format!("cannot swap {} for a link to generation {next}", store.link.display()))?;
    fs::rename(&new_link, &old)?;
    phase.done();
    Ok(next)
}
