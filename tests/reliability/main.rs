//! Reliability under abuse (issue 5), one test binary by subject:
//! `races` (signal and ptrace races), `load` (concurrent load, a sequential
//! soak against chroot(8)) and `bad_input` (a sweep of bad configurations,
//! files and argv, hostile working directories). sysrootctl under kill -9, a
//! full disk and concurrent applies is in sysrootctl/tests/faults.rs. The
//! tests run as a real unprivileged user against the installed setuid-root
//! binary (tests/common/mod.rs). Each prints its figures as `FIGURE ...`
//! lines on stderr (shown even when the test passes); doc/reliability.md
//! lists them with the commands that reproduce them.
//!
//! Counts and the random seed can be set from the environment:
//! `IMGSW_REL_SEED`, `IMGSW_REL_SIGNAL_RUNS` (500), `IMGSW_REL_PTRACE_RUNS`
//! (500), `IMGSW_REL_LOAD` (100), `IMGSW_REL_SOAK_RUNS` (10000).
//!
//! The tests run one at a time (they share the configuration file, which the
//! bad-input sweep swaps, and they measure rates and host state).

#[path = "../common/mod.rs"]
mod common;

mod bad_input;
mod load;
mod races;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use common::*;
use test_support::mountinfo;
use test_support::procs::{self, Process};
use test_support::{diff_lines, figure, tree_listing};

static SERIAL: Mutex<()> = Mutex::new(());

/// Held by every test; makes the test process a child subreaper
/// (procs::become_subreaper) so [`leftovers`] sees what an entry leaves.
fn serial() -> MutexGuard<'static, ()> {
    let guard = SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    procs::become_subreaper();
    guard
}

/// (dev, inode) of every tree root the fixture configures.
fn tree_roots() -> Vec<(u64, u64)> {
    let f = fixture();
    let trees = Path::new(PREFIX).join("trees");
    procs::ids_of(&[&f.bb, &f.deb11, &f.trixie, &trees.join("bb-homedirect"), &trees.join("bb-userowned")])
}

/// Descendants of this test process left behind (procs::leftovers), "IN A
/// TREE" when rooted in one of the fixture's trees.
fn leftovers() -> Vec<String> {
    procs::leftovers(&tree_roots())
}

/// Asserts nothing this test started is left, and notes others' processes
/// rooted in the shared trees (not failed on: others may be using them).
fn assert_no_leftovers(context: &str) -> usize {
    let mine = leftovers();
    assert!(mine.is_empty(), "{context}: processes left behind: {mine:?}");
    let others: Vec<String> =
        procs::rooted_at(&tree_roots()).iter().map(|p: &Process| format!("{} {}", p.pid, p.comm())).collect();
    if !others.is_empty() {
        figure(&format!(
            "{context}: note: {} processes of others are rooted in the shared trees: {others:?}",
            others.len()
        ));
    }
    others.len()
}

/// A copy of the C helper `program` (test_support::c_program) in a fresh
/// directory of `user`'s under /tmp, which every sysroot binds, so the same
/// path works on the host and inside.
fn user_program(program: &str, flags: &[&str], user: &str) -> PathBuf {
    let binary = user_tmpdir(user, "rel-helper").join(program);
    fs::copy(test_support::c_program(program, flags), &binary).expect("copy helper");
    sh(&format!("chown {user}: {0} && chmod 755 {0}", binary.display()));
    binary
}

/// Host state that no entry, successful or not, may change.
///
/// The mount table is compared byte for byte where imageswitch could leave
/// something (mount points under the trees' directories). Other changes are
/// reported, not failed on: on a shared development machine, benchmarks and
/// package builds mount things meanwhile (in CI nothing else runs, and the
/// reports say "0 unrelated").
struct HostState {
    mounts: String,
    bb: String,
}

impl HostState {
    fn take() -> HostState {
        HostState { mounts: host_mounts(), bb: tree_listing(&fixture().bb) }
    }

    /// The lines whose mount point lies where imageswitch could leave a
    /// mount: every mount it makes targets a path inside a tree, and the
    /// trees live under these two directories.
    fn ours(table: &str) -> String {
        let ours = mountinfo::parse(table).into_iter().filter(|m| [PREFIX, CACHE].iter().any(|dir| m.is_under(dir)));
        ours.map(|m| m.line).collect::<Vec<_>>().join("\n")
    }

    /// Asserts, and returns how many unrelated mount lines changed.
    fn assert_unchanged(&self, context: &str) -> usize {
        let mounts = host_mounts();
        let (before, after) = (Self::ours(&self.mounts), Self::ours(&mounts));
        assert!(
            before == after,
            "{context}: host mount table changed under the trees\n{}",
            diff_lines(&before, &after)
        );
        let bb = tree_listing(&fixture().bb);
        assert!(bb == self.bb, "{context}: the bb tree changed\n{}", diff_lines(&self.bb, &bb));
        let b: BTreeSet<&str> = self.mounts.lines().collect();
        let a: BTreeSet<&str> = mounts.lines().collect();
        let unrelated = b.symmetric_difference(&a).count();
        if unrelated > 0 {
            let sample: Vec<&&str> = b.symmetric_difference(&a).take(3).collect();
            figure(&format!(
                "{context}: note: {unrelated} mount lines outside {PREFIX} and {CACHE} changed meanwhile \
                 (another process on this machine, not imageswitch), e.g. {sample:?}"
            ));
        }
        unrelated
    }
}
