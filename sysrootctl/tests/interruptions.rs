//! sysrootctl interrupted by real signals at the harmful moment (issue 13's
//! faults 1, 2 and 7): what it started must die with it, and nothing it was
//! doing may leave a tree that is listed, published or inherited half-done.

mod common;

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use test_support::procs::Process;

/// A busybox tree with an `/etc/passwd` (for `su`), a `/usr/sbin` (for
/// `policy-rc.d`) and a `resolv.conf`, published as generation 1.
fn busybox_with_accounts(test: &str, build: &str) -> Scratch {
    let s = Scratch::new(test);
    pack(&cached_tree("busybox"), &s.path("bb.tar.gz"));
    s.write("overlay/etc/passwd", "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n");
    s.write("overlay/etc/resolv.conf", "nameserver 127.0.0.1\n");
    s.write("overlay/usr/sbin/.keep", "");
    let build = format!(
        "method = \"tarball\"\nsource = \"{}\"\nfiles = [{{ src = \"{}\", dst = \"/\" }}]\n{build}",
        s.path("bb.tar.gz").display(),
        s.path("overlay").display()
    );
    s.config("bb", "", &build);
    s.expect(&["apply", "-q"], 0);
    s
}

fn uid_of(pid: u32) -> Option<u32> {
    Process { pid }.status_field("Uid")?.split_whitespace().next()?.parse().ok()
}

/// `sysrootctl shell bb -- CMD` with CMD running as `nobody` (it changed its
/// credentials, as apt and dpkg do), then `kill -9` of sysrootctl.
fn kill_shell_after_credential_change(s: &Scratch) {
    let mut child = s
        .cmd(&["shell", "bb", "--", "/bin/busybox", "su", "-s", "/bin/sleep", "nobody", "1000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("a process in the tree that changed its credentials", Duration::from_secs(20), || {
        rooted_in(&s.path("store")).into_iter().any(|pid| uid_of(pid) == Some(65534))
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// Fault 1: `kill -9` of `sysrootctl shell NAME -- apt-get install ...` left
/// apt and dpkg running in the live tree (they change their credentials, and
/// the kernel then drops the parent-death signal that was their only tie).
#[test]
fn whatever_sysrootctl_starts_dies_with_it_even_after_changing_credentials() {
    if !root_or_skip("whatever_sysrootctl_starts_dies_with_it_even_after_changing_credentials") {
        return;
    }
    let s = busybox_with_accounts("pdeath", "");
    kill_shell_after_credential_change(&s);
    wait_for("everything started in the tree to die with sysrootctl", Duration::from_secs(10), || {
        rooted_in(&s.dir).is_empty()
    });
    s.assert_clean();
}

/// Fault 7: a `shell` killed while it runs leaves its service-blocking
/// `policy-rc.d` in the live tree. `plan` names it, `apply` builds a generation
/// without it, the next `shell` takes it away, and removing it from inside
/// is no error.
#[test]
fn what_an_interrupted_shell_left_in_the_tree_is_reported_and_undone() {
    if !root_or_skip("what_an_interrupted_shell_left_in_the_tree_is_reported_and_undone") {
        return;
    }
    let s = busybox_with_accounts("policy", "");
    let policy = s.path("roots/bb/usr/sbin/policy-rc.d");
    s.write("roots/bb/usr/sbin/policy-rc.d", "#!/bin/sh\n# the site's own\nexit 0\n");
    kill_shell_after_credential_change(&s);
    wait_for("the tree's processes to end", Duration::from_secs(10), || rooted_in(&s.dir).is_empty());
    assert!(fs::read_to_string(&policy).unwrap().contains("written by sysrootctl"), "the harmful moment was hit");

    let out = s.expect(&["plan"], 2);
    assert!(out.contains("remove /usr/sbin/policy-rc.d (left by an interrupted sysrootctl"), "{out}");
    s.expect(&["apply", "-q"], 0);
    assert_eq!(s.live("bb"), Some(2));
    assert_eq!(fs::read_to_string(&policy).unwrap(), "#!/bin/sh\n# the site's own\nexit 0\n", "the tree's own is back");
    assert!(!s.path("roots/bb/usr/sbin/policy-rc.d.sysrootctl-saved").exists());
    s.expect(&["plan"], 0);

    // Removed from inside while the shell runs: the shell still ends cleanly.
    let out = s.expect(&["shell", "bb", "--", "/bin/rm", "/usr/sbin/policy-rc.d"], 0);
    assert!(out.is_empty(), "{out}");
    assert_eq!(fs::read_to_string(&policy).unwrap(), "#!/bin/sh\n# the site's own\nexit 0\n");
    s.assert_clean();
}

/// Fault 8: the host's `/etc/resolv.conf` was bound read-write into `shell`
/// and into apply's package scripts, so a write inside changed the host's.
#[test]
fn host_files_bound_into_a_tree_are_read_only() {
    if !root_or_skip("host_files_bound_into_a_tree_are_read_only") {
        return;
    }
    if !Path::new("/etc/resolv.conf").is_file() {
        eprintln!("SKIPPED host_files_bound_into_a_tree_are_read_only: the host has no /etc/resolv.conf file");
        return;
    }
    let s = busybox_with_accounts("resolv", "");
    let before = fs::read("/etc/resolv.conf").unwrap();
    let out = s.run(&["shell", "bb", "--", "/bin/sh", "-c", ": >> /etc/resolv.conf"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "the host's resolv.conf was writable from inside: {err}");
    assert!(err.contains("Read-only file system"), "{err}");
    let out = s.expect(&["shell", "bb", "--", "/bin/cat", "/etc/resolv.conf"], 0);
    assert_eq!(out.as_bytes(), before, "name resolution inside is the host's");
    assert_eq!(fs::read("/etc/resolv.conf").unwrap(), before);
    s.assert_clean();
}

/// Fault 2: a `gc` killed while it deleted a generation left it half-deleted,
/// still listed by `status` and published by `rollback --to N` (exit 0).
#[test]
fn a_generation_is_never_listed_or_published_half_removed() {
    if !root_or_skip("a_generation_is_never_listed_or_published_half_removed") {
        return;
    }
    let s = busybox_with_accounts("gc-kill", "keep = 3");
    s.write("overlay/etc/motd", "2\n");
    s.expect(&["apply", "-q"], 0);
    assert_eq!(s.live("bb"), Some(2));
    // Enough in generation 1 that its removal takes a while.
    const FILES: usize = 30_000;
    let big = s.path("store/bb/1/var/big");
    fs::create_dir_all(&big).unwrap();
    for i in 0..FILES {
        fs::write(big.join(i.to_string()), "").unwrap();
    }
    let text = fs::read_to_string(s.path("sysroots.toml")).unwrap().replace("keep = 3", "keep = 1");
    s.write("sysroots.toml", &text);

    let mut gc = s.cmd(&["gc", "bb"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for("gc to start removing generation 1", Duration::from_secs(30), || {
        !s.path("store/bb/1").exists() || fs::read_dir(&big).map_or(0, |d| d.count()) < FILES
    });
    gc.kill().unwrap(); // SIGKILL, halfway through the removal
    gc.wait().unwrap();

    let status = s.run(&["status", "bb", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let listed: Vec<u64> =
        v[0]["generations"].as_array().unwrap().iter().map(|g| g["generation"].as_u64().unwrap()).collect();
    let whole = fs::read_dir(&big).map_or(0, |d| d.count()) == FILES;
    assert!(whole || listed == [2], "a half-removed generation is listed: {listed:?}");
    let out = s.run(&["rollback", "bb", "--to", "1"]);
    assert!(whole || out.status.code() == Some(1), "a half-removed generation was published");
    assert_eq!(s.live("bb"), Some(2));
    let out = s.expect(&["gc", "bb"], 0);
    assert!(out.contains("kept [2]"), "{out}");
    assert_eq!(s.generations("bb"), ["2", "2.json"]);
    s.assert_clean();
}
