//! What the integration tests of both crates share (`tests/` of imageswitch,
//! `sysrootctl/tests`): one root gate, one `as_user`, one mount-table reader,
//! one scan of `/proc`, one builder for the C helpers in `tests/support/`,
//! and the figures, listings and clean-ups the reliability tests report with.
//!
//! A dev-dependency only: it never enters the setuid binary's dependency tree.
#![forbid(unsafe_code)]

pub mod mountinfo;
pub mod procs;
pub mod programs;
pub mod report;

pub use programs::{c_program, imageswitch_built_for};
pub use report::{Removed, Rng, Unmounted, build_id, count_from_env, diff_lines, figure, fnv1a, tree_listing};

use std::ffi::OsStr;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Root-needing tests call this first: false (after saying so, past the
/// harness's output capture) when not root, a panic under `CI=true`, where a
/// skip would hide missing coverage.
pub fn root_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test} needs root and CI=true: refusing to skip");
    }
    let _ = std::io::stderr().write_all(format!("SKIPPED {test}: needs root\n").as_bytes());
    false
}

/// `root_or_skip` for the current test module, returning from the test.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::root_or_skip(module_path!()) {
            return;
        }
    };
}

/// A command run as `user` (real uid, gid and groups from passwd), via
/// setpriv, in the user's home directory ([`home_of`]).
pub fn as_user(user: &str, program: &(impl AsRef<OsStr> + ?Sized)) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={user}")).arg(format!("--regid={user}")).arg("--init-groups").arg("--").arg(program);
    cmd.current_dir(home_of(user));
    cmd
}

/// The home directory `useradd -m` gives the tests' users: `/home/USER`
/// (no lookup: it names the directory also before the user exists or after
/// it is gone).
pub fn home_of(user: &str) -> PathBuf {
    PathBuf::from("/home").join(user)
}

pub fn uid_of(user: &str) -> u32 {
    nix::unistd::User::from_name(user).expect("nss").unwrap_or_else(|| panic!("no user {user}")).uid.as_raw()
}

pub fn gid_of(user: &str) -> u32 {
    nix::unistd::User::from_name(user).expect("nss").unwrap_or_else(|| panic!("no user {user}")).gid.as_raw()
}
