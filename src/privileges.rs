//! Self-checks at start, and the one-way switch to the caller's identity:
//! capabilities (bounding, ambient), groups, gids, uids, the remaining
//! capability sets, no_new_privs; then a verification that all of it held.
#![forbid(unsafe_code)]

use nix::sys::prctl;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
use nix::unistd::{Gid, Uid, geteuid, getresgid, getresuid, setgroups, setresgid, setresuid};

use crate::access::{Caller, process_groups};
use crate::error::Error;
use crate::sys;

/// What the caller had and the child gets back: the core-dump limit, the
/// stack limit and the signal mask.
pub struct CallerState {
    core_soft: libc::rlim_t,
    core_hard: libc::rlim_t,
    stack_soft: libc::rlim_t,
    stack_hard: libc::rlim_t,
    secure_exec: bool,
    parent: nix::unistd::Pid,
    signal_mask: SigSet,
}

/// The kernel's `_STK_LIM`: at a set-uid exec it lowers a larger soft stack
/// limit to this, and keeps no record of the old value.
pub const STACK_CLAMP: libc::rlim_t = 8 << 20;

/// First steps of main: standard streams; no ptrace or core dumps of the
/// privileged process; every blockable signal held until just before exec, so
/// the caller (who may signal us: the real uid is theirs) cannot interrupt or
/// dump a half-switched process — a pending signal is delivered at the end,
/// when nothing privileged is left.
pub fn harden_process() -> Result<CallerState, Error> {
    // Under AT_SECURE (a set-uid exec) the dynamic loader has already done
    // this, or aborted: glibc's __libc_check_standard_fds (csu/check_fds.c).
    let secure_exec = sys::secure_exec();
    if !secure_exec {
        sys::reopen_missing_stdio().map_err(|e| Error::SelfCheck(format!("cannot reopen standard streams: {e}")))?;
    }
    let mut signal_mask = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&SigSet::all()), Some(&mut signal_mask))
        .map_err(|e| Error::SelfCheck(format!("sigprocmask: {e}")))?;
    stay_undumpable().map_err(|e| Error::SelfCheck(format!("prctl(PR_SET_DUMPABLE): {e}")))?;
    let (core_soft, core_hard) =
        getrlimit(Resource::RLIMIT_CORE).map_err(|e| Error::SelfCheck(format!("getrlimit: {e}")))?;
    setrlimit(Resource::RLIMIT_CORE, 0, core_hard).map_err(|e| Error::SelfCheck(format!("setrlimit: {e}")))?;
    let (stack_soft, stack_hard) =
        getrlimit(Resource::RLIMIT_STACK).map_err(|e| Error::SelfCheck(format!("getrlimit: {e}")))?;
    Ok(CallerState {
        core_soft,
        core_hard,
        stack_soft,
        stack_hard,
        secure_exec,
        parent: nix::unistd::getppid(),
        signal_mask,
    })
}

/// The kernel makes a process dumpable again (per `fs.suid_dumpable`) on
/// every uid or fsuid change; each such change is followed by this.
pub fn stay_undumpable() -> nix::Result<()> {
    prctl::set_dumpable(false)
}

/// Gives the caller's core limit, stack limit and signal mask back, for the
/// exec. Runs as the caller, after the identity drop.
pub fn restore_caller_state(state: &CallerState) {
    let _ = setrlimit(Resource::RLIMIT_CORE, state.core_soft, state.core_hard);
    if let Some(soft) = caller_stack_limit(state) {
        let _ = setrlimit(Resource::RLIMIT_STACK, soft, state.stack_hard);
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&state.signal_mask), None);
}

/// The caller's soft stack limit when the set-uid exec lowered it. The
/// kernel only ever lowers it to exactly [`STACK_CLAMP`]; then the caller's
/// value is taken from the parent process (a shell's `ulimit -s`, a job
/// script's), when the caller may read that process's limits themselves
/// (the kernel checks: this runs as the caller) and it is still our parent.
fn caller_stack_limit(state: &CallerState) -> Option<libc::rlim_t> {
    if !state.secure_exec || state.stack_soft != STACK_CLAMP {
        return None;
    }
    let (parent_soft, _) = sys::process_rlimit(state.parent.as_raw(), libc::RLIMIT_STACK).ok()?;
    let still_parent = nix::unistd::getppid() == state.parent;
    (still_parent && parent_soft > STACK_CLAMP).then(|| parent_soft.min(state.stack_hard))
}

/// Whether this process is in the initial user namespace, whose nsfs inode
/// is `PROC_USER_INIT_INO` (0xEFFFFFFD, include/linux/proc_ns.h; fixed since
/// Linux 3.8). Asked of the kernel through a pidfd
/// ([`sys::namespace_inode`]), which no mount can stand in for;
/// before Linux 6.11, from the link /proc/self/ns/user, which a user can
/// mount over in a mount namespace of their own (and then meets the kernel's
/// own refusal: it ignores the set-uid bit there). In any other namespace, a
/// setuid-root file's owner is unmapped and the kernel ignores the bit, or
/// "euid 0" is the namespace's own root: nothing imageswitch can work with.
/// Errors: the kernel's, when it cannot be asked (`EMFILE` with no
/// descriptor left, say).
fn in_initial_user_namespace() -> std::io::Result<bool> {
    const PROC_USER_INIT_INO: u64 = 0xEFFF_FFFD;
    sys::namespace_inode(sys::OwnNamespace::User).map(|ino| ino == PROC_USER_INIT_INO)
}

/// Fails clearly when the binary cannot do its job: inside a user namespace,
/// not setuid root, or started under no_new_privs (which also means: already
/// inside a sysroot).
pub fn check_setuid_root() -> Result<(), Error> {
    let initial = in_initial_user_namespace().map_err(|e| {
        Error::SelfCheck(format!("cannot tell which user namespace this process is in: {}", crate::error::describe(&e)))
    })?;
    if !initial {
        return Err(Error::SelfCheck(
            "imageswitch must be run from the initial user namespace (this process is in a user namespace, \
             where a setuid program cannot work)"
                .into(),
        ));
    }
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

/// Runs `f` as the caller: effective uid and gid theirs, so every path it
/// resolves is checked with their identity, and — the effective uid no longer
/// 0 — no effective capability either (no DAC override, no ptrace access
/// through /proc magic links). Root stays in the saved uid and comes back
/// afterwards; the caller cannot ptrace or signal-dump us meanwhile (the saved
/// uid is not theirs, and the process stays undumpable).
pub fn as_caller<T>(caller: &Caller, f: impl FnOnce() -> T) -> Result<T, Error> {
    let uids = getresuid().map_err(|e| Error::privilege("getresuid", e))?;
    let gids = getresgid().map_err(|e| Error::privilege("getresgid", e))?;
    setresgid(gids.real, caller.gid, gids.saved).map_err(|e| Error::privilege("setresgid to the caller", e))?;
    setresuid(uids.real, caller.uid, uids.saved).map_err(|e| Error::privilege("setresuid to the caller", e))?;
    let _ = stay_undumpable();
    let result = f();
    setresuid(uids.real, uids.effective, uids.saved).map_err(|e| Error::privilege("setresuid back", e))?;
    setresgid(gids.real, gids.effective, gids.saved).map_err(|e| Error::privilege("setresgid back", e))?;
    stay_undumpable().map_err(|e| Error::privilege("PR_SET_DUMPABLE", e))?;
    Ok(result)
}

/// Drops every privilege for good. Order matters: the bounding set needs
/// CAP_SETPCAP, so it goes first; gids before uids, since after setresuid we
/// could no longer change gids. no_new_privs always: no configuration lets a
/// setuid program in a tree elevate (an euid of 0 without capabilities still
/// passes root's owner checks on every host object it can reach).
pub fn drop_to(caller: &Caller) -> Result<(), Error> {
    // Verified as it is done: see sys::drop_bounding_set.
    sys::drop_bounding_set().map_err(|e| Error::privilege("capability bounding set", e))?;
    sys::clear_ambient_caps().map_err(|e| Error::privilege("ambient capabilities", e))?;
    // The set-uid exec kept the caller's supplementary groups, which is what
    // caller.groups was read from: set them only when they differ now (each
    // setgroups commits new credentials). verify_dropped checks them after.
    if process_groups().map_err(|e| Error::privilege("getgroups", e))? != caller.groups {
        setgroups(&caller.groups).map_err(|e| Error::privilege("setgroups", e))?;
    }
    setresgid(caller.gid, caller.gid, caller.gid).map_err(|e| Error::privilege("setresgid", e))?;
    setresuid(caller.uid, caller.uid, caller.uid).map_err(|e| Error::privilege("setresuid", e))?;
    // setresuid away from root empties permitted/effective, but not inheritable,
    // and a root caller keeps them all: clear explicitly.
    sys::clear_capability_sets().map_err(|e| Error::privilege("capset", e))?;
    prctl::set_no_new_privs().map_err(|e| Error::privilege("no_new_privs", e))?;
    stay_undumpable().map_err(|e| Error::privilege("PR_SET_DUMPABLE", e))
}

/// Checks, from the kernel's own answers, that [`drop_to`] took effect: ids,
/// groups, the capability sets, dumpable, no_new_privs, and that root
/// cannot be taken back. The bounding set is checked as it is dropped.
pub fn verify_dropped(caller: &Caller) -> Result<(), Error> {
    let uids = getresuid().map_err(|e| Error::privilege("verify uids", e))?;
    if [uids.real, uids.effective, uids.saved] != [caller.uid; 3] {
        return Err(Error::privilege("verify uids", "a uid is not the caller's"));
    }
    let gids = getresgid().map_err(|e| Error::privilege("verify gids", e))?;
    if [gids.real, gids.effective, gids.saved] != [caller.gid; 3] {
        return Err(Error::privilege("verify gids", "a gid is not the caller's"));
    }
    if process_groups().map_err(|e| Error::privilege("verify groups", e))? != caller.groups {
        return Err(Error::privilege("verify groups", "supplementary groups differ from the caller's"));
    }
    let sets = sys::capability_sets().map_err(|e| Error::privilege("verify capabilities", e))?;
    if sets != (0, 0, 0) {
        return Err(Error::privilege("verify capabilities", format!("capability sets not empty: {sets:x?}")));
    }
    // The bounding set was verified by dropping it (drop_to): the kernel
    // answered each PR_CAPBSET_DROP only after the capability was gone.
    if prctl::get_dumpable().unwrap_or(true) {
        return Err(Error::privilege("verify dumpable", "the process is dumpable before exec"));
    }
    if !prctl::get_no_new_privs().unwrap_or(false) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn this_test_runs_in_the_initial_user_namespace_and_a_new_one_is_not() {
        assert!(in_initial_user_namespace().expect("the kernel answers"));
        // The answer (a pidfd's where the kernel has one) is the initial one's inode, as stat sees it.
        let link = std::fs::metadata("/proc/self/ns/user").expect("/proc/self/ns/user");
        assert_eq!(sys::namespace_inode(sys::OwnNamespace::User).ok(), Some(link.ino()));
        assert_eq!(link.ino(), 0xEFFF_FFFD);
        // The same link read in a user namespace of its own, by unshare(1).
        let out = std::process::Command::new("unshare")
            .args(["--user", "readlink", "/proc/self/ns/user"])
            .output()
            .expect("unshare");
        if out.status.success() {
            assert_ne!(String::from_utf8_lossy(&out.stdout).trim(), "user:[4026531837]");
        }
    }
}
