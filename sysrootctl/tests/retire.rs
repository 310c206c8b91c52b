//! Issue 13 fault 10: a sysroot removed from the declaration left its path
//! link, aliases, host `bin_dir` links, launcher, store and records behind,
//! and nothing reported or removed them. `plan` reports them; `retire`
//! removes exactly what sysrootctl made, refuses while anyone is inside, and
//! a re-run finishes what a `kill -9` interrupted.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// Two busybox sysroots: `keep` stays declared, `old` (two aliases and a host
/// `bin_dir`) is applied and then dropped from the file.
fn dropped_sysroot(test: &str) -> Scratch {
    let s = Scratch::new(test);
    pack(&cached_tree("busybox"), &s.path("bb.tar.gz"));
    let entry = |name: &str, keys: &str| {
        format!(
            "[sysroot.{name}]\npath = \"{root}/roots/{name}\"\n{keys}\n[sysroot.{name}.build]\nmethod = \"tarball\"\nsource = \"{root}/bb.tar.gz\"\nstore = \"{root}/store\"\n",
            root = s.dir.display()
        )
    };
    let keep = entry("keep", "aliases = [\"keepx\"]");
    let old = entry("old", &format!("aliases = [\"oldx\", \"oldy\"]\nbin_dir = \"{}\"", s.path("bin7").display()));
    s.write("sysroots.toml", &(keep.clone() + &old));
    s.expect(&["apply", "-q"], 0);
    assert_eq!((s.live("keep"), s.live("old")), (Some(1), Some(1)));
    s.write("sysroots.toml", &keep);
    s
}

fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

#[test]
fn what_sysrootctl_made_for_a_sysroot_no_longer_declared_is_reported_and_retired() {
    if !root_or_skip("what_sysrootctl_made_for_a_sysroot_no_longer_declared_is_reported_and_retired") {
        return;
    }
    let s = dropped_sysroot("retire");
    // The alias `oldy` became a site's own script: not sysrootctl's to remove.
    fs::remove_file(s.path("alias/oldy")).unwrap();
    s.write("alias/oldy", "#!/bin/sh\n# the site's own\n");
    let made = [
        s.path("roots/old"),
        s.path("alias/oldx"),
        s.path("bin7/sh"),
        s.path("bin7"),
        s.path("apps/sysroot-old.desktop"),
        s.path("store/old"),
        s.path("store/old.aliases"),
        s.path("store/old.host.json"),
    ];
    assert!(made.iter().all(|p| exists(p)), "apply made them all");

    // plan names every leftover; apply has nothing to do, so the status stays 0.
    let out = s.expect(&["plan"], 0);
    assert!(out.contains("old: not declared any more; `sysrootctl retire old` would:"), "{out}");
    for line in [
        format!("remove link {}", s.path("roots/old").display()),
        format!("remove alias link {}", s.path("alias/oldx").display()),
        format!("link(s) to imageswitch in {}", s.path("bin7").display()),
        format!("remove launcher {}", s.path("apps/sysroot-old.desktop").display()),
        format!("remove generation {}", s.path("store/old/1").display()),
        format!("left alone: {}: not a link to imageswitch", s.path("alias/oldy").display()),
    ] {
        assert!(out.contains(&line), "plan lacks {line:?}:\n{out}");
    }
    assert!(out.contains("keep: up to date"), "{out}");
    let v: serde_json::Value = serde_json::from_slice(&s.run(&["plan", "--json"]).stdout).unwrap();
    let old = v.as_array().unwrap().iter().find(|r| r["name"] == "old").expect("old in plan --json");
    let kinds: Vec<&str> =
        old["retire"]["remove"].as_array().unwrap().iter().map(|x| x["kind"].as_str().unwrap()).collect();
    for kind in ["link", "alias", "bin_link", "bin_dir", "launcher", "generation", "store", "record"] {
        assert!(kinds.contains(&kind), "{kind} missing from {old}");
    }

    // Refused: a sysroot still declared, and one somebody is inside.
    let out = s.expect(&["retire", "keep"], 1);
    assert!(out.contains("sysrootctl: keep: still declared in"), "{out}");
    let mut inside = Command::new("chroot").arg(s.path("roots/old")).args(["/bin/sleep", "60"]).spawn().unwrap();
    wait_for("a process inside old", Duration::from_secs(5), || !rooted_in(&s.path("store/old")).is_empty());
    let out = s.expect(&["retire", "old"], 1);
    assert!(out.contains("in use: pid"), "{out}");
    assert!(made.iter().all(|p| exists(p)), "nothing removed while in use");
    inside.kill().unwrap();
    inside.wait().unwrap();
    // Or something is mounted in it (as `sysrootctl mount` does).
    let point = s.path("store/old/1/tmp");
    let mounted = |args: &[&str]| Command::new(args[0]).args(&args[1..]).status().unwrap().success();
    assert!(mounted(&["mount", "-t", "tmpfs", "isw-retire", point.to_str().unwrap()]));
    let out = s.run(&["retire", "old"]);
    assert!(mounted(&["umount", point.to_str().unwrap()]));
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("{} is mounted", point.display())), "{text}");
    assert!(made.iter().all(|p| exists(p)), "nothing removed while mounted");

    let out = s.expect(&["retire", "old"], 0);
    assert!(out.contains("old: retired"), "{out}");
    for path in &made {
        assert!(!exists(path), "{} is still there", path.display());
    }
    assert_eq!(fs::read_to_string(s.path("alias/oldy")).unwrap(), "#!/bin/sh\n# the site's own\n");
    assert_eq!(s.live("keep"), Some(1));
    assert!(exists(&s.path("alias/keepx")) && exists(&s.path("apps/sysroot-keep.desktop")));
    assert!(s.path("store/keep/1/bin/busybox").is_file());
    let out = s.expect(&["plan"], 0);
    assert!(!out.contains("old: not declared"), "{out}");
    let out = s.expect(&["retire", "old"], 0);
    assert!(out.contains("old: nothing to retire"), "{out}");
    s.expect(&["apply", "-q"], 0);
    assert!(!exists(&s.path("roots/old")), "apply never brings it back");
    s.assert_clean();
}

/// `kill -9` of `retire` while it deletes a generation: the next `plan`
/// still reports what is left, and the next `retire` finishes.
#[test]
fn an_interrupted_retire_is_finished_by_the_next() {
    if !root_or_skip("an_interrupted_retire_is_finished_by_the_next") {
        return;
    }
    let s = dropped_sysroot("retire-kill");
    const FILES: usize = 30_000;
    let big = s.path("store/old/1/var/big");
    fs::create_dir_all(&big).unwrap();
    for i in 0..FILES {
        fs::write(big.join(i.to_string()), "").unwrap();
    }
    let mut retire = s.cmd(&["retire", "old"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let moved = s.path("store/old/1.tmp/var/big");
    wait_for("retire to start deleting generation 1", Duration::from_secs(30), || {
        fs::read_dir(&moved).map_or(0, |d| d.count()) < FILES && !s.path("store/old/1").exists()
    });
    retire.kill().unwrap(); // SIGKILL, halfway through the deletion
    retire.wait().unwrap();
    assert!(!exists(&s.path("roots/old")) && !exists(&s.path("alias/oldx")), "host links went first");
    assert!(exists(&s.path("store/old")), "the harmful moment was hit");

    let out = s.expect(&["plan"], 0);
    assert!(out.contains("old: not declared any more"), "{out}");
    assert!(out.contains(&format!("remove {}", s.path("store/old").display())), "{out}");
    let out = s.expect(&["retire", "old"], 0);
    assert!(out.contains("old: retired"), "{out}");
    for rest in ["store/old", "store/old.aliases", "store/old.host.json", "bin7"] {
        assert!(!exists(&s.path(rest)), "{rest} is still there");
    }
    assert_eq!(s.live("keep"), Some(1));
    s.assert_clean();
}
