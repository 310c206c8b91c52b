//! `shell`: a root shell in the live tree, for what the declaration does not cover.
#![forbid(unsafe_code)]

use super::*;

/// A root shell in the live tree: package-manager mounts, service starts blocked,
/// the lock held so no apply copies the tree while it changes.
pub fn shell(decl: &Declaration, name: &str, cmd: &[String], opts: &Opts) -> Result<i32> {
    let d = decl.get(name)?;
    let linux32 = d.sysroot.personality == imageswitch::config::Personality::Linux32;
    // The lock first: the live generation is read while no apply or rollback can change it.
    let lock = match &d.build {
        Some(build) => Some(store_of(d, build).lock(opts.no_wait, opts.verbosity.quiet())?),
        None => None,
    };
    let tree = match &d.build {
        Some(build) => {
            let store = store_of(d, build);
            let live = store
                .live()?
                .with_context(|| format!("{name} has no published generation; run sysrootctl apply {name}"))?;
            store.tree(live)
        }
        None => d.sysroot.path.clone(),
    };
    let argv: Vec<String> = if cmd.is_empty() {
        let bash = crate::util::in_tree(&tree, Path::new("/bin/bash"), true)?;
        vec![if bash.exists() { "/bin/bash" } else { "/bin/sh" }.to_string(), "-l".to_string()]
    } else {
        cmd.to_vec()
    };
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let code = crate::runner::with_services_blocked(&tree, || crate::runner::interactive(&tree, linux32, &argv))?;
    drop(lock);
    Ok(code)
}
