//! sysrootctl under faults (issue 5): kill -9 at random points of an apply,
//! a full disk under the store, two applies at once. Each prints its figures
//! as `FIGURE ...` lines on stderr; doc/reliability.md lists them with the
//! commands that reproduce them. `IMGSW_REL_SEED` and `IMGSW_REL_CTL_KILLS`
//! (20) set the random seed and the number of kills.
//!
//! The tests run one at a time: each checks that it left no process behind.

mod common;

use std::fs;
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::*;
use test_support::procs::{self, leftovers};
use test_support::{Rng, Unmounted, count_from_env, figure, tree_listing};

static SERIAL: Mutex<()> = Mutex::new(());

/// Held by every test; makes the test process a child subreaper
/// (procs::become_subreaper) so `leftovers` sees what sysrootctl leaves.
fn serial() -> MutexGuard<'static, ()> {
    let guard = SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    procs::become_subreaper();
    guard
}

/// One busybox sysroot declared from a tarball, with its store at `store`
/// (relative to the scratch directory), and an overlay whose
/// /etc/marker each test rewrites to force a new generation.
fn busybox_with_marker(test: &str, store: &str) -> Scratch {
    let s = Scratch::new(test);
    pack(&cached_tree("busybox"), &s.path("bb.tar.gz"));
    let store = s.path(store);
    let config = format!(
        "[sysroot.bb]\npath = \"{d}/roots/bb\"\n\n[sysroot.bb.build]\nmethod = \"tarball\"\nsource = \"{d}/bb.tar.gz\"\n\
         store = \"{s}\"\nkeep = 2\nfiles = [{{ src = \"{d}/overlay\", dst = \"/\" }}]\n",
        d = s.dir.display(),
        s = store.display()
    );
    s.write("sysroots.toml", &config);
    mark(&s, "0");
    s
}

fn mark(s: &Scratch, value: &str) {
    s.write("overlay/etc/marker", &format!("{value}\n"));
}

/// Runs; returns (status, stdout + stderr).
fn run(s: &Scratch, args: &[&str]) -> (Option<i32>, String) {
    let out = s.cmd(args).stdin(Stdio::null()).output().expect("run sysrootctl");
    (out.status.code(), text(&out))
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Checks the live generation is complete and usable: its record exists,
/// and its own shell runs in it (chroot(8)) and reads the marker.
fn assert_live_usable(s: &Scratch, context: &str) -> (u32, String) {
    let n = s.live("bb").unwrap_or_else(|| panic!("{context}: no live generation"));
    let target = fs::read_link(s.path("roots/bb")).expect("link");
    let store = target.parent().expect("store dir");
    assert!(store.join(format!("{n}.json")).is_file(), "{context}: generation {n} has no record");
    let out = Command::new("/usr/sbin/chroot")
        .arg(s.path("roots/bb"))
        .args(["/bin/sh", "-c", "cat /etc/marker"])
        .output()
        .expect("chroot");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{context}: live generation {n} unusable: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (n, String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn sysrootctl_kill_9_at_random_points_of_apply() {
    if !root_or_skip("sysrootctl_kill_9_at_random_points_of_apply") {
        return;
    }
    let _serial = serial();
    let runs = count_from_env("IMGSW_REL_CTL_KILLS", 20);
    let mut rng = Rng::from_env("sysrootctl_kill_9_at_random_points_of_apply");
    let ctl = busybox_with_marker("kill", "store");
    ctl.expect(&["apply", "-q"], 0);
    // One uninterrupted overlay generation, to scale the kill window.
    mark(&ctl, "1");
    let started = Instant::now();
    ctl.expect(&["apply", "-q"], 0);
    let full = started.elapsed();
    let (mut live, marker) = assert_live_usable(&ctl, "before the kills");
    assert_eq!(marker, "1");
    let mut live_listing = tree_listing(&ctl.path("roots/bb/"));

    let (mut interrupted, mut completed, mut unfinished) = (0, 0, 0);
    let partial_builds = || -> Vec<String> {
        fs::read_dir(ctl.path("store/bb"))
            .expect("store")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    };
    for i in 0..runs {
        let value = format!("k{i}");
        mark(&ctl, &value);
        let mut child = ctl
            .cmd(&["apply", "-q"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        // The delay is the experiment (where the kill lands), not synchronisation.
        let window = full.as_micros() as u64 * 5 / 4;
        std::thread::sleep(Duration::from_micros(rng.below(window.max(1000))));
        let _ = child.kill();
        let status = child.wait().expect("wait");
        let context = format!("kill {i} ({status})");
        let (now, marker) = assert_live_usable(&ctl, &context);
        if now == live {
            interrupted += 1;
            assert_ne!(marker, value, "{context}: the live generation changed in place");
            assert_eq!(
                tree_listing(&ctl.path("roots/bb/")),
                live_listing,
                "{context}: live generation {live} modified"
            );
        } else {
            completed += 1;
            assert_eq!(marker, value, "{context}: new generation {now} published without its change");
            live = now;
            live_listing = tree_listing(&ctl.path("roots/bb/"));
        }
        assert!(leftovers(&[]).is_empty(), "{context}: processes left behind: {:?}", leftovers(&[]));
        ctl.assert_clean_but(&context, None);
        unfinished += usize::from(!partial_builds().is_empty());
    }
    let out = ctl.expect(&["apply"], 0);
    let (last, marker) = assert_live_usable(&ctl, "after the converging apply");
    assert_eq!(marker, format!("k{}", runs - 1), "the next apply converges on the declaration:\n{out}");
    assert_eq!(run(&ctl, &["plan"]).0, Some(0), "plan shows nothing left to do");
    let partial = partial_builds();
    assert!(partial.is_empty(), "unfinished builds left after a full apply: {partial:?}");
    ctl.assert_clean_but("after the converging apply", None);
    figure(&format!(
        "sysrootctl kill -9: {runs} applies killed at random 0-{} ms (one full overlay apply: {} ms): {interrupted} \
         before publishing (live generation byte-for-byte unchanged and usable; {unfinished} left an unfinished N.tmp \
         build for the next apply to remove), {completed} after (new generation complete and usable); next apply converged on generation {last}, plan then exit 0, no unfinished build, \
         mount or process left",
        full.as_millis() * 5 / 4,
        full.as_millis()
    ));
}

#[test]
fn sysrootctl_full_disk_during_apply() {
    if !root_or_skip("sysrootctl_full_disk_during_apply") {
        return;
    }
    let _serial = serial();
    // The store goes on the loop filesystem at the scratch directory's disk/.
    let ctl = busybox_with_marker("disk", "disk/store");
    // The store on its own small filesystem (no root reserve: sysrootctl runs as root).
    let disk = ctl.path("disk");
    let status = Command::new("sh")
        .arg("-ec")
        .arg(format!(
            "truncate -s 32M {d}.img && mkfs.ext4 -q -F -m 0 {d}.img && mkdir -p {d} && mount -o loop {d}.img {d}",
            d = disk.display()
        ))
        .status()
        .expect("sh");
    // Dropped before the scratch directory (declared earlier) is removed.
    let _unmount = Unmounted(disk.clone());
    assert!(status.success(), "a 32 MiB ext4 loop filesystem at {}", disk.display());
    ctl.expect(&["apply", "-q"], 0);
    let (live, marker) = assert_live_usable(&ctl, "first apply");
    assert_eq!(marker, "0");
    let listing = tree_listing(&ctl.path("roots/bb/"));

    // Fill the filesystem to the last block.
    let filler = disk.join("filler");
    let _ = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", filler.display()))
        .args(["bs=1M", "status=none"])
        .stderr(Stdio::null())
        .status();
    let _ = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", disk.join("filler2").display()))
        .args(["bs=4k", "status=none"])
        .stderr(Stdio::null())
        .status();
    mark(&ctl, "1");
    let (status, out) = run(&ctl, &["apply"]);
    assert_eq!(status, Some(1), "apply on a full disk must fail:\n{out}");
    assert!(out.to_lowercase().contains("no space left on device"), "the error says why:\n{out}");
    let (still, marker) = assert_live_usable(&ctl, "after the failed apply");
    assert_eq!((still, marker.as_str()), (live, "0"), "the live generation stays published");
    assert_eq!(tree_listing(&ctl.path("roots/bb/")), listing, "the live generation is unchanged");
    ctl.assert_clean_but("after the failed apply", Some(&disk));
    let error_line = out.lines().find(|l| l.to_lowercase().contains("no space")).unwrap_or("").to_string();

    fs::remove_file(&filler).expect("rm filler");
    let _ = fs::remove_file(disk.join("filler2"));
    let out = ctl.expect(&["apply"], 0);
    let (next, marker) = assert_live_usable(&ctl, "after freeing space");
    assert_eq!(marker, "1", "converged:\n{out}");
    assert!(next > live);
    assert_eq!(run(&ctl, &["plan"]).0, Some(0));
    ctl.assert_clean_but("after freeing space", Some(&disk));
    figure(&format!(
        "sysrootctl full disk: store on a full 32 MiB ext4 loop filesystem: apply exit 1 ({error_line:?}), generation \
         {live} stays live, byte-for-byte unchanged and usable; after freeing space the next apply published \
         generation {next}, plan exit 0, nothing left mounted"
    ));
}

#[test]
fn sysrootctl_two_concurrent_applies() {
    if !root_or_skip("sysrootctl_two_concurrent_applies") {
        return;
    }
    let _serial = serial();
    let ctl = busybox_with_marker("concurrent", "store");
    ctl.expect(&["apply", "-q"], 0);
    let (live, _) = assert_live_usable(&ctl, "first apply");
    mark(&ctl, "1");
    let children: Vec<_> = (0..2)
        .map(|_| {
            ctl.cmd(&["apply"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let outs: Vec<Output> = children.into_iter().map(|c| c.wait_with_output().expect("wait")).collect();
    for out in &outs {
        assert_eq!(out.status.code(), Some(0), "{}", text(out));
    }
    let all: String = outs.iter().map(text).collect();
    assert_eq!(all.matches(&format!("generation {live} -> ")).count(), 1, "exactly one builds:\n{all}");
    assert_eq!(all.matches("up to date").count(), 1, "the other waits, then finds nothing to do:\n{all}");
    let (next, marker) = assert_live_usable(&ctl, "after two concurrent applies");
    assert_eq!((next, marker.as_str()), (live + 1, "1"), "{all}");
    ctl.assert_clean_but("after two concurrent applies", None);
    figure(&format!(
        "sysrootctl concurrent: two applies of one change at once: both exit 0, one built generation {next}, the other \
         waited on the lock and found it up to date"
    ));
}
