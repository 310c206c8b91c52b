//! Issue 13 fault 10: a sysroot removed from the declaration left its path
//! link, aliases, host `bin_dir` links, launcher, store and records behind,
//! and nothing reported or removed them. `plan` reports them; `retire`
//! removes exactly what sysrootctl made, refuses while anyone is inside, and
//! a re-run finishes what a `kill -9` interrupted.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
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
    let old =
        entry("old", &format!("aliases = [\"oldx\", \"oldy\", \"oldz\"]\nbin_dir = \"{}\"", s.path("bin7").display()));
    s.write("sysroots.toml", &(keep.clone() + &old));
    s.write("both.toml", &(keep.clone() + &old));
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
    // `oldz` now points at another program named imageswitch (a copy of /bin/true).
    fs::create_dir_all(s.path("elsewhere")).unwrap();
    fs::copy("/bin/true", s.path("elsewhere/imageswitch")).unwrap();
    fs::remove_file(s.path("alias/oldz")).unwrap();
    std::os::unix::fs::symlink(s.path("elsewhere/imageswitch"), s.path("alias/oldz")).unwrap();
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
        format!("left alone: {}: not a link to imageswitch", s.path("alias/oldz").display()),
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

    // Not a sysroot name: rejected, not "nothing to retire".
    let out = s.expect(&["retire", "../old"], 1);
    assert!(out.contains("sysrootctl: ../old: not a valid sysroot name"), "{out}");

    let out = s.run(&["retire", "old", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let records = v[0]["records"].as_array().unwrap();
    for (path, host) in [
        (s.path("roots/old"), true),
        (s.path("alias/oldx"), true),
        (s.path("bin7/sh"), true),
        (s.path("apps/sysroot-old.desktop"), true),
        (s.path("store/old/1"), false),
        (s.path("store/old.host.json"), false),
    ] {
        let path = path.to_str().unwrap();
        let rec = records.iter().find(|r| r["path"] == path).unwrap_or_else(|| panic!("no record for {path}: {v}"));
        assert_eq!((rec["kind"].as_str(), rec["host"].as_bool()), (Some("retire"), Some(host)), "{rec}");
    }
    for path in &made {
        assert!(!exists(path), "{} is still there", path.display());
    }
    assert_eq!(fs::read_to_string(s.path("alias/oldy")).unwrap(), "#!/bin/sh\n# the site's own\n");
    assert_eq!(fs::read_link(s.path("alias/oldz")).unwrap(), s.path("elsewhere/imageswitch"));
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

/// `kill -9` of `retire old` while it deletes generation 1 (of a big tree).
fn kill_retire_halfway(s: &Scratch) {
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
}

/// `kill -9` of `retire` while it deletes a generation: the next `plan`
/// still reports what is left, and the next `retire` finishes.
#[test]
fn an_interrupted_retire_is_finished_by_the_next() {
    if !root_or_skip("an_interrupted_retire_is_finished_by_the_next") {
        return;
    }
    let s = dropped_sysroot("retire-kill");
    kill_retire_halfway(&s);

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

/// sysrootctl run on `file` instead of the scratch's own declaration.
fn under(s: &Scratch, file: &Path, args: &[&str]) -> (i32, String) {
    let out = s.cmd_under(file, args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// The review's case: under a file A, `retire rv13victim` removed a sysroot
/// another file B declares in a store both use, and `plan` under A listed
/// sysroots of the default store that A never names.
#[test]
fn leftovers_another_declaration_file_made_are_never_retired() {
    if !root_or_skip("leftovers_another_declaration_file_made_are_never_retired") {
        return;
    }
    let s = dropped_sysroot("retire-other-file");
    let other = s.write(
        "other.toml",
        &format!(
            "[sysroot.rv13victim]\npath = \"{root}/roots/rv13victim\"\n[sysroot.rv13victim.build]\nmethod = \"tarball\"\nsource = \"{root}/bb.tar.gz\"\nstore = \"{root}/store\"\n",
            root = s.dir.display()
        ),
    );
    assert_eq!(under(&s, &other, &["apply", "-q"]).0, 0);
    assert_eq!(s.live("rv13victim"), Some(1));

    let v: serde_json::Value = serde_json::from_slice(&s.run(&["plan", "--json"]).stdout).unwrap();
    let names: Vec<&str> = v.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["keep", "old"], "only this file's sysroots and its own leftovers, from its own store");
    let out = s.expect(&["retire", "rv13victim"], 1);
    let want = format!(
        "sysrootctl: rv13victim: made under {}, not {}: retire it with --config {}",
        other.display(),
        s.path("sysroots.toml").display(),
        other.display()
    );
    assert!(out.contains(&want), "{out}");
    assert_eq!(s.live("rv13victim"), Some(1));
    assert!(s.path("store/rv13victim/1/bin/busybox").is_file() && exists(&s.path("store/rv13victim.host.json")));
    assert_eq!(under(&s, &other, &["plan"]).0, 0, "its own file still finds it up to date");

    // A record from before the file was recorded: reported, retired only by name.
    let record = s.path("store/rv13victim.host.json");
    let mut host: serde_json::Value = serde_json::from_slice(&fs::read(&record).unwrap()).unwrap();
    host.as_object_mut().unwrap().remove("config");
    fs::write(&record, serde_json::to_vec(&host).unwrap()).unwrap();
    let out = s.expect(&["plan"], 0);
    assert!(out.contains("rv13victim: not declared any more"), "{out}");
    assert!(out.contains("no record of the declaration file it was made under"), "{out}");
    s.assert_clean();
}

/// The review's case: STORE/NAME moved elsewhere and symlinked back; retire
/// worked on the target (chmod 0700, a `.lock` in it, generations renamed).
#[test]
fn a_store_entry_that_is_not_a_directory_is_never_retired() {
    if !root_or_skip("a_store_entry_that_is_not_a_directory_is_never_retired") {
        return;
    }
    let s = dropped_sysroot("retire-symlinked");
    fs::create_dir_all(s.path("moved")).unwrap();
    fs::rename(s.path("store/old"), s.path("moved/old")).unwrap();
    fs::set_permissions(s.path("moved/old"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::remove_file(s.path("moved/old/.lock")).unwrap();
    std::os::unix::fs::symlink(s.path("moved/old"), s.path("store/old")).unwrap();
    let why = format!(
        "{} is a symlink, which sysrootctl never makes: move the tree back or remove it yourself",
        s.path("store/old").display()
    );
    let out = s.expect(&["plan"], 0);
    assert!(out.contains(&format!("old: not declared any more; `sysrootctl retire old` refuses: {why}")), "{out}");
    let out = s.expect(&["retire", "old"], 1);
    assert!(out.contains(&format!("sysrootctl: old: {why}")), "{out}");
    assert_eq!(fs::metadata(s.path("moved/old")).unwrap().permissions().mode() & 0o7777, 0o755);
    assert!(!exists(&s.path("moved/old/.lock")) && s.path("moved/old/1/bin/busybox").is_file());
    assert!(exists(&s.path("roots/old")) && exists(&s.path("alias/oldx")), "nothing on the host removed either");
    s.assert_clean();
}

/// The review's case: keep's bin_dir "$S/bl/bin7" ($S/bl -> $S) is old's
/// recorded "$S/bin7"; `retire old` removed keep's links and the directory.
#[test]
fn host_paths_a_declared_sysroot_uses_under_another_spelling_are_kept() {
    if !root_or_skip("host_paths_a_declared_sysroot_uses_under_another_spelling_are_kept") {
        return;
    }
    let s = dropped_sysroot("retire-spelling");
    std::os::unix::fs::symlink(&s.dir, s.path("bl")).unwrap();
    let text = fs::read_to_string(s.path("sysroots.toml")).unwrap();
    let keep = text.replace(
        "aliases = [\"keepx\"]",
        &format!("aliases = [\"keepx\"]\nbin_dir = \"{}\"", s.path("bl/bin7").display()),
    );
    s.write("sysroots.toml", &keep);
    s.expect(&["apply", "-q"], 0);
    let out = s.expect(&["retire", "old"], 0);
    assert!(out.contains(&format!("left alone: {}: sysroot \"keep\" uses it", s.path("bin7").display())), "{out}");
    assert!(exists(&s.path("bin7/sh")), "keep's links stay");
    assert!(!exists(&s.path("roots/old")) && !exists(&s.path("store/old")));
    s.assert_clean();
}

/// The review's case: `kill -9` of `retire big` while generation 1 goes
/// left a complete generation 2; with the name declared again, `status`
/// listed it, plan and apply said nothing, and `rollback --to 2` published it.
#[test]
fn generations_of_a_half_retired_sysroot_are_never_listed_or_published() {
    if !root_or_skip("generations_of_a_half_retired_sysroot_are_never_listed_or_published") {
        return;
    }
    let s = dropped_sysroot("retire-half");
    let cp = |from: &str, to: &str| {
        assert!(Command::new("cp").arg("-a").arg(s.path(from)).arg(s.path(to)).status().unwrap().success());
    };
    cp("store/old/1", "store/old/2");
    cp("store/old/1.json", "store/old/2.json");
    kill_retire_halfway(&s);
    assert!(s.path("store/old/2/bin/busybox").is_file() && s.path("store/old/2.json").is_file());
    fs::copy(s.path("both.toml"), s.path("sysroots.toml")).unwrap();

    let retiring = format!("{} is being retired", s.path("store/old").display());
    let out = s.run(&["status", "old", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let status = v.as_array().map_or(&v, |a| &a[0]);
    assert_eq!(status["generations"].as_array().map(Vec::len), Some(0), "{status}");
    assert!(status["error"].as_str().unwrap_or_default().contains(&retiring), "{status}");
    for verb in [&["rollback", "old", "--to", "2"][..], &["plan", "old"], &["apply", "old"]] {
        let out = s.expect(verb, 1);
        assert!(out.contains(&retiring), "{verb:?}: {out}");
        assert!(!exists(&s.path("roots/old")), "{verb:?} published nothing");
    }

    // Dropped again, the next retire finishes; declared anew, it is built afresh.
    let keep = fs::read_to_string(s.path("both.toml")).unwrap();
    s.write("sysroots.toml", &keep[..keep.find("[sysroot.old]").unwrap()]);
    s.expect(&["retire", "old"], 0);
    fs::copy(s.path("both.toml"), s.path("sysroots.toml")).unwrap();
    s.expect(&["apply", "-q"], 0);
    assert_eq!(s.live("old"), Some(1));
    s.assert_clean();
}
