//! Self-checks at start, and the one-way switch to the caller's identity:
//! capabilities (bounding, ambient), groups, gids, uids, the remaining
//! capability sets, no_new_privs; then a verification that all of it held.
#![forbid(unsafe_code)]

use nix::sys::prctl;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::unistd::{Gid, Uid, geteuid, getgroups, getresgid, getresuid, setgroups, setresgid, setresuid};

use crate::access::Caller;
use crate::error::Error;
use crate::sys;

/// Saved core-dump limit, restored for the child.
pub struct CoreLimit(libc::rlim_t, libc::rlim_t);

/// First steps of main: standard streams, no ptrace or core dumps of the
/// privileged process, and the environment out of libc's reach.
pub fn harden_process() -> Result<CoreLimit, Error> {
    sys::reopen_missing_stdio().map_err(|e| Error::SelfCheck(format!("cannot reopen standard streams: {e}")))?;
    prctl::set_dumpable(false).map_err(|e| Error::SelfCheck(format!("prctl(PR_SET_DUMPABLE): {e}")))?;
    let (soft, hard) = getrlimit(Resource::RLIMIT_CORE).map_err(|e| Error::SelfCheck(format!("getrlimit: {e}")))?;
    setrlimit(Resource::RLIMIT_CORE, 0, hard).map_err(|e| Error::SelfCheck(format!("setrlimit: {e}")))?;
    Ok(CoreLimit(soft, hard))
}

/// Gives the child the caller's own core limit back.
pub fn restore_core_limit(limit: &CoreLimit) {
    let _ = setrlimit(Resource::RLIMIT_CORE, limit.0, limit.1);
}

/// Fails clearly when the binary cannot do its job: not setuid root, or
/// started under no_new_privs (which also means: already inside a sysroot).
pub fn check_setuid_root() -> Result<(), Error> {
    if prctl::get_no_new_privs().unwrap_or(false) {
        return Err(Error::SelfCheck(
            "no_new_privs is set for this process (already inside a sysroot, or in a sandbox that forbids setuid programs)"
                .into(),
        ));
    }
    if !geteuid().is_root() {
        return Err(Error::SelfCheck(
            "not running as root: install the binary setuid root (install -m 4755 -o root) on a filesystem mounted without nosuid"
                .into(),
        ));
    }
    Ok(())
}

/// Drops every privilege for good. Order matters: the bounding set needs
/// CAP_SETPCAP, so it goes first; gids before uids, since after setresuid we
/// could no longer change gids.
pub fn drop_to(caller: &Caller, no_new_privs: bool) -> Result<(), Error> {
    sys::drop_bounding_set().map_err(|e| Error::privilege("capability bounding set", e))?;
    sys::clear_ambient_caps().map_err(|e| Error::privilege("ambient capabilities", e))?;
    setgroups(&caller.groups).map_err(|e| Error::privilege("setgroups", e))?;
    setresgid(caller.gid, caller.gid, caller.gid).map_err(|e| Error::privilege("setresgid", e))?;
    setresuid(caller.uid, caller.uid, caller.uid).map_err(|e| Error::privilege("setresuid", e))?;
    // setresuid away from root empties permitted/effective, but not inheritable,
    // and a root caller keeps them all: clear explicitly.
    sys::clear_capability_sets().map_err(|e| Error::privilege("capset", e))?;
    if no_new_privs {
        prctl::set_no_new_privs().map_err(|e| Error::privilege("no_new_privs", e))?;
    }
    Ok(())
}

/// Checks, from the kernel's own answers, that [`drop_to`] took effect.
pub fn verify_dropped(caller: &Caller, no_new_privs: bool) -> Result<(), Error> {
    let uids = getresuid().map_err(|e| Error::privilege("verify uids", e))?;
    if [uids.real, uids.effective, uids.saved] != [caller.uid; 3] {
        return Err(Error::privilege("verify uids", "a uid is not the caller's"));
    }
    let gids = getresgid().map_err(|e| Error::privilege("verify gids", e))?;
    if [gids.real, gids.effective, gids.saved] != [caller.gid; 3] {
        return Err(Error::privilege("verify gids", "a gid is not the caller's"));
    }
    let mut groups = getgroups().map_err(|e| Error::privilege("verify groups", e))?;
    groups.sort_by_key(|g| g.as_raw());
    groups.dedup();
    if groups != caller.groups {
        return Err(Error::privilege("verify groups", "supplementary groups differ from the caller's"));
    }
    let sets = sys::capability_sets().map_err(|e| Error::privilege("verify capabilities", e))?;
    if sets != (0, 0, 0) {
        return Err(Error::privilege("verify capabilities", format!("capability sets not empty: {sets:x?}")));
    }
    if (0..64).map_while(sys::bounding_set_has).any(|held| held) {
        return Err(Error::privilege("verify capabilities", "bounding set not empty"));
    }
    if no_new_privs && !prctl::get_no_new_privs().unwrap_or(false) {
        return Err(Error::privilege("verify no_new_privs", "not set"));
    }
    // A process that dropped root for good cannot take it back.
    if !caller.uid.is_root() && setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).is_ok() {
        return Err(Error::privilege("verify uids", "setresuid(0) still succeeds"));
    }
    if caller.gid.as_raw() != 0
        && !caller.uid.is_root()
        && setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0)).is_ok()
    {
        return Err(Error::privilege("verify gids", "setresgid(0) still succeeds"));
    }
    Ok(())
}
