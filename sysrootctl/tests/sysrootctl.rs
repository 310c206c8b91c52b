//! End-to-end tests of the real `sysrootctl` binary against real trees, as root.
//! Each test works in its own scratch directory and store; the cached trees
//! are only ever read (imported by copy or from a tarball the test packs).

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A busybox tree packed into a tarball: the fast case for generation logic.
fn busybox_scratch(test: &str, sysroot_keys: &str, build: &str) -> Scratch {
    busybox_in(Scratch::new(test), sysroot_keys, build)
}

fn busybox_in(s: Scratch, sysroot_keys: &str, build: &str) -> Scratch {
    pack(&cached_tree("busybox"), &s.path("bb.tar.gz"));
    let build = format!("method = \"tarball\"\nsource = \"{}\"\n{build}", s.path("bb.tar.gz").display());
    s.config("bb", sysroot_keys, &build);
    s
}

#[test]
fn declaration_errors_name_file_line_and_column() {
    let s = Scratch::new("decl-errors");
    s.config("bad", "", "method = \"tarball\"\nsource = \"relative.tar\"\n");
    let out = s.expect(&["plan", "bad"], 1);
    let file = s.path("sysroots.toml");
    assert!(
        out.contains(&format!("sysrootctl: {}:7:10: \"source\" must be an absolute path", file.display())),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1, "one line per error: {out}");
    s.write(
        "sysroots.toml",
        "[sysroot.x]\npath = \"/x\"\n[sysroot.x.build]\nmethod = \"tarball\"\nsource = \"/x.tar\"\nsorce = 1\n",
    );
    let out = s.expect(&["plan", "x"], 1);
    assert!(out.contains(":6:1: unknown key \"sorce\" in [sysroot.x.build]"), "{out}");
    s.write("sysroots.toml", "[sysroot.x\n");
    let out = s.expect(&["list"], 1);
    assert!(out.starts_with(&format!("sysrootctl: {}:1:", file.display())) && out.contains("syntax error"), "{out}");
    s.config("ok", "", "method = \"tarball\"\nsource = \"/x.tar\"\n");
    let out = s.expect(&["plan", "nosuch"], 1);
    assert!(out.contains("no sysroot \"nosuch\""), "{out}");
    let out = s.expect(&["frobnicate"], 1);
    assert!(out.contains("unrecognized subcommand"), "{out}");
}

/// Fault 3: a typo in one sysroot's build table (`kepp = 2`) was skipped in
/// silence: `plan` and `apply` without names exited 0, `list` (the Ansible
/// role's validation) exited 0, `--json` left it out. A declaration that
/// cannot be evaluated fails the run and is named; the others still run.
#[test]
fn a_declaration_that_cannot_be_evaluated_fails_the_run_and_is_named() {
    let s = Scratch::new("broken-table");
    let text = format!(
        "[sysroot.good]\npath = \"{root}/roots/good\"\n[sysroot.good.build]\nmethod = \"tarball\"\nsource = \"{root}/nosuch.tar\"\nstore = \"{root}/store\"\n\
         [sysroot.typo]\npath = \"{root}/roots/typo\"\n[sysroot.typo.build]\nmethod = \"tarball\"\nsource = \"/x.tar\"\nkepp = 2\n",
        root = s.dir.display()
    );
    s.write("sysroots.toml", &text);
    let named = ":12:1: unknown key \"kepp\" in [sysroot.typo.build]";
    let mut verbs: Vec<&[&str]> = vec![&["plan"], &["list"], &["status"]];
    if test_support::is_root() {
        verbs.extend([&["apply"][..], &["gc"]]);
    }
    for verb in verbs {
        let out = s.expect(verb, 1);
        assert!(out.contains("typo") && out.contains(named), "{verb:?}: {out}");
        assert!(out.contains("good"), "{verb:?} still covers the others: {out}");
        let json = [verb, &["--json"]].concat();
        let out = s.run(&json);
        assert_eq!(out.status.code(), Some(1), "{json:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let typo = v.as_array().unwrap().iter().find(|r| r["name"] == "typo").expect("the broken entry is in --json");
        assert!(typo["error"].as_str().unwrap().contains(named), "{json:?}: {typo}");
    }
}

/// Fault 14: `sysrootctl status | head -1` panicked with a backtrace when its
/// reader went away. Output to a closed pipe is dropped; the exit status is
/// the verb's own.
#[test]
fn output_to_a_closed_pipe_never_panics() {
    let s = Scratch::new("broken-pipe");
    s.config("bb", "", "method = \"tarball\"\nsource = \"/x.tar\"\n");
    for (verb, code) in [(&["status"][..], 0), (&["list", "--json"], 0), (&["plan"], 2), (&["completions", "bash"], 0)]
    {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = s.cmd(verb).stdout(writer).stderr(Stdio::piped()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{verb:?}: {err}");
        assert_eq!(out.status.code(), Some(code), "{verb:?}: {err}");
    }
}

#[test]
fn tarball_import_noop_overlay_drift_rollback_and_gc() {
    if !root_or_skip("tarball_import_noop_overlay_drift_rollback_and_gc") {
        return;
    }
    let s = busybox_scratch(
        "import",
        &format!("aliases = [\"bbx\"]\nbin_dir = \"{}\"", Path::new("/opt/ctl-test-bin9").display()),
        "keep = 2",
    );
    // bin_dir must be the same path on the host and in the tree; keep it in scratch.
    let bin_dir = s.path("bin9");
    let text =
        fs::read_to_string(s.path("sysroots.toml")).unwrap().replace("/opt/ctl-test-bin9", &bin_dir.to_string_lossy());
    s.write("sysroots.toml", &text);

    assert_eq!(s.run(&["plan"]).status.code(), Some(2), "plan before the first apply shows changes");
    assert!(!s.path("store").exists() && !s.path("alias").exists(), "plan changes nothing");
    let out = s.expect(&["apply"], 0);
    assert!(out.contains("bb: generation none -> 1"), "{out}");
    assert_eq!(s.live("bb"), Some(1));
    let tree = s.path("store/bb/1");
    assert!(tree.join("bin/busybox").is_file());
    assert!(!tree.join(".complete").exists(), "cache marker must not be imported");
    // In-tree bin_dir -> /bin/NAME; host bin_dir and alias -> imageswitch.
    let inner = tree.join(bin_dir.strip_prefix("/").unwrap());
    assert_eq!(fs::read_link(inner.join("sh")).unwrap(), Path::new("/bin/sh"));
    assert_eq!(fs::read_link(bin_dir.join("sh")).unwrap(), s.path("imageswitch"));
    assert_eq!(fs::read_link(s.path("alias/bbx")).unwrap(), s.path("imageswitch"));
    let link_meta = fs::symlink_metadata(s.path("roots/bb")).unwrap();
    assert!(link_meta.file_type().is_symlink() && link_meta.uid() == 0, "path is a root-owned symlink");
    let desktop = s.path("apps/sysroot-bb.desktop");
    assert!(fs::read_to_string(&desktop).unwrap().contains("Exec="));
    if have_tool("desktop launcher validation", "desktop-file-validate", "desktop-file-utils") {
        let out = Command::new("desktop-file-validate").arg(&desktop).output().unwrap();
        assert!(out.status.success() && out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    }

    // No-op: nothing changes, it says so, plan exits 0.
    let before = s.generations("bb");
    let out = s.expect(&["apply"], 0);
    assert!(out.contains("bb: up to date, nothing changed (generation 1)"), "{out}");
    assert_eq!(s.generations("bb"), before);
    assert_eq!(s.run(&["plan"]).status.code(), Some(0));

    // Overlay: plan says 2, apply builds generation 2 beside 1.
    s.write("overlay/etc/motd", "managed by sysrootctl\n");
    fs::create_dir_all(s.path("overlay/etc/app")).unwrap();
    s.write("overlay/etc/app/conf", "x=1\n");
    let text = fs::read_to_string(s.path("sysroots.toml")).unwrap()
        + &format!("files = [{{ src = \"{}\", dst = \"/\" }}]\n", s.path("overlay").display());
    s.write("sysroots.toml", &text);
    let out = s.expect(&["plan"], 2);
    assert!(out.contains("write /etc/motd") && out.contains("write /etc/app/conf"), "{out}");
    s.expect(&["apply"], 0);
    assert_eq!(s.live("bb"), Some(2));
    assert_eq!(fs::read_to_string(s.path("roots/bb/etc/motd")).unwrap(), "managed by sysrootctl\n");
    assert!(!s.path("store/bb/1/etc/motd").exists(), "generation 1 untouched");

    // Drift in the live tree is reported and restored in a new generation.
    fs::write(s.path("roots/bb/etc/motd"), "edited by hand\n").unwrap();
    let out = s.expect(&["plan"], 2);
    assert!(out.contains("restore /etc/motd (changed in the tree)"), "{out}");
    let out = s.expect(&["status", "bb"], 0);
    assert!(out.contains("1 change(s) pending") && out.contains("restore /etc/motd"), "{out}");
    s.expect(&["apply"], 0);
    assert_eq!(s.live("bb"), Some(3));
    assert_eq!(fs::read_to_string(s.path("roots/bb/etc/motd")).unwrap(), "managed by sysrootctl\n");
    // keep = 2: generation 1 went.
    assert_eq!(s.generations("bb"), ["2", "2.json", "3", "3.json"]);

    // A process inside generation 2 keeps it alive through gc.
    let mut inside = Command::new("chroot").arg(s.path("store/bb/2")).args(["/bin/sleep", "60"]).spawn().unwrap();
    wait_for("the sleeper to enter generation 2", Duration::from_secs(5), || {
        !rooted_in(&s.path("store/bb/2")).is_empty()
    });
    fs::write(s.path("overlay/etc/motd"), "v4\n").unwrap();
    let out = s.expect(&["apply"], 0);
    assert!(out.contains("kept generation 2: in use by pid"), "{out}");
    assert!(out.contains("update /etc/motd (the overlay changed)"), "{out}");
    assert_eq!(s.live("bb"), Some(4));
    let out = s.expect(&["gc", "bb"], 0);
    assert!(out.contains("kept generation 2: in use by pid"), "{out}");
    assert!(s.path("store/bb/2").is_dir());
    inside.kill().unwrap();
    inside.wait().unwrap();
    let out = s.expect(&["gc", "bb"], 0);
    assert!(out.contains("removed generations [2]"), "{out}");
    assert_eq!(s.generations("bb"), ["3", "3.json", "4", "4.json"]);

    // A dropped alias's link goes; a renamed one appears. No new generation.
    let text = fs::read_to_string(s.path("sysroots.toml")).unwrap().replace("[\"bbx\"]", "[\"bby\"]");
    s.write("sysroots.toml", &text);
    let out = s.expect(&["plan"], 2);
    assert!(
        out.contains(&format!("remove alias link {} (no longer declared)", s.path("alias/bbx").display())),
        "{out}"
    );
    s.expect(&["apply"], 0);
    assert!(fs::symlink_metadata(s.path("alias/bbx")).is_err());
    assert_eq!(fs::read_link(s.path("alias/bby")).unwrap(), s.path("imageswitch"));
    assert_eq!(s.live("bb"), Some(4));

    // Rollback to the previous generation, then forward again with --to.
    let out = s.expect(&["rollback", "bb"], 0);
    assert!(out.contains("rolled back from generation 4 to 3"), "{out}");
    assert_eq!(s.live("bb"), Some(3));
    assert_eq!(fs::read_to_string(s.path("roots/bb/etc/motd")).unwrap(), "managed by sysrootctl\n");
    s.expect(&["rollback", "bb", "--to", "4"], 0);
    assert_eq!(fs::read_to_string(s.path("roots/bb/etc/motd")).unwrap(), "v4\n");
    let out = s.expect(&["rollback", "bb", "--to", "1"], 1);
    assert!(out.contains("has no generation 1"), "{out}");

    // A daemon started from `shell` ends with it: nothing keeps running in the tree.
    let out = s.cmd(&["shell", "bb", "--", "/bin/sh", "-c", "sleep 300 & echo started $!"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).split(' ').next(), Some("started"));
    assert!(rooted_in(&s.dir).is_empty(), "the background sleep outlived the shell");

    // JSON views parse and agree.
    let out = s.run(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["live"], 4);
    let out = s.run(&["plan", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["changes"].as_array().unwrap().len(), 0);
    s.assert_clean();
}

#[test]
fn commands_that_work_on_system_trees_refuse_without_root() {
    if !root_or_skip("commands_that_work_on_system_trees_refuse_without_root") {
        return;
    }
    let s = Scratch::public("nonroot");
    s.config("bb", "", "method = \"tarball\"\nsource = \"/nonexistent.tar\"\n");
    // A copy every user can execute, wherever the checkout is.
    let bin = s.path("sysrootctl");
    fs::copy(BIN, &bin).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    for verb in [
        &["plan"][..],
        &["plan", "--diff"],
        &["plan", "--json"],
        &["apply"],
        &["gc"],
        &["rollback", "bb"],
        &["shell", "bb"],
        &["retire", "old"],
    ] {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&bin)
            .arg("--config")
            .arg(s.path("sysroots.toml"))
            .args(verb);
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{verb:?}: {err}");
        assert_eq!(err, "sysrootctl: this command works on system trees and needs root\n", "{verb:?}");
    }
    assert!(!s.path("store").exists(), "nothing was created");
}

#[test]
fn concurrent_applies_serialize_on_the_lock() {
    if !root_or_skip("concurrent_applies_serialize_on_the_lock") {
        return;
    }
    let s = busybox_scratch("concurrent", "", "");
    let children: Vec<_> =
        (0..3).map(|_| s.cmd(&["apply"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()).collect();
    let outputs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    for out in &outputs {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let all: String = outputs.iter().map(|o| String::from_utf8_lossy(&o.stdout).to_string()).collect();
    assert_eq!(all.matches("generation none -> 1").count(), 1, "{all}");
    assert_eq!(all.matches("up to date").count(), 2, "{all}");
    assert_eq!(s.generations("bb"), ["1", "1.json"]);
    // --no-wait fails clearly while the lock is held.
    let lock = fs::OpenOptions::new().write(true).open(s.path("store/bb/.lock")).unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let out = s.expect(&["apply", "--no-wait"], 1);
    assert!(out.contains("another sysrootctl is working on bb"), "{out}");
    drop(held);
    s.assert_clean();
}

/// Runs `script` with `sh -c` as `nobody`, a real unprivileged user.
fn as_nobody(script: &str) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--", "sh", "-c", script])
        .output()
        .unwrap()
}

/// Issue 10 item 1 (THREATS rows 22 and 30): a generation's device nodes and
/// setuid programs were reachable by every user under the store path, and
/// anyone could hold the lock and stall every run. On a store laid out the
/// old way `check` reports it; the next `apply` (no rebuild, even a no-op
/// one) migrates it; then no user reaches either, and a user holding every
/// file it can open under the store stops nothing. A hand-made tree that
/// exposes them is reported with the exact fix, which works.
#[test]
fn trees_are_reachable_by_users_only_through_imageswitch() {
    if !root_or_skip("trees_are_reachable_by_users_only_through_imageswitch") {
        return;
    }
    let s = Scratch::public("exposure");
    // What a debootstrapped tree has: a 0666 console and a setuid-root program.
    let src = s.path("hand");
    assert!(Command::new("cp").arg("-a").arg(cached_tree("busybox")).arg(&src).status().unwrap().success());
    let console = src.join("dev/console");
    assert!(Command::new("mknod").args(["-m", "0666"]).arg(&console).args(["c", "5", "1"]).status().unwrap().success());
    fs::copy(src.join("bin/busybox"), src.join("bin/suid")).unwrap();
    fs::set_permissions(src.join("bin/suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    s.config("bb", "", &format!("method = \"tarball\"\nsource = \"{}\"\n", src.display()));
    s.expect(&["apply", "-q"], 0);

    // The store as sysrootctl laid it out before.
    let store = s.path("store/bb");
    fs::set_permissions(&store, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(s.path("store/bb.lock"), "").unwrap();
    let old_console = store.join("1/dev/console");
    assert!(as_nobody(&format!("[ -w {} ]", old_console.display())).status.success(), "the exposure is real");
    let out = s.run(&["check", "bb"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("generations are reachable by users outside imageswitch")
            && text.contains("1 device node (/dev/console)")
            && text.contains("1 setuid/setgid/capability program (/bin/suid)")
            && text.contains("fix: sysrootctl apply bb"),
        "{text}"
    );

    // A user holds every file it can open under the store meanwhile.
    let holder = format!(
        "for f in {0}/* {0}/*/* {0}/*/.lock; do [ -f \"$f\" ] && flock -n \"$f\" sleep 1000 & done; wait",
        s.path("store").display()
    );
    let mut holders = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--", "sh", "-c", &holder])
        .spawn()
        .unwrap();
    wait_for("the user to hold a lock", Duration::from_secs(5), || {
        Command::new("pgrep").args(["-u", "65534", "-f", "sleep 1000"]).output().is_ok_and(|o| o.status.success())
    });
    let out = s.expect(&["apply", "--no-wait"], 0);
    assert!(out.contains("up to date, nothing changed (generation 1)"), "no rebuild: {out}");
    let _ = Command::new("pkill").args(["-u", "65534", "-f", "sleep 1000"]).status();
    holders.wait().unwrap();

    assert_eq!(fs::metadata(&store).unwrap().permissions().mode() & 0o7777, 0o700);
    let out = as_nobody(&format!("exec 3<> {}", s.path("roots/bb/dev/console").display()));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"), "{out:?}");
    let out = as_nobody(&format!("{}/1/bin/suid id -u", store.display()));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"), "{out:?}");
    let out = as_nobody(&format!("find {} -perm /6000 -type f 2>/dev/null", s.dir.display()));
    let reachable: Vec<&str> =
        std::str::from_utf8(&out.stdout).unwrap().lines().filter(|l| !l.starts_with(&*src.to_string_lossy())).collect();
    assert!(reachable.is_empty(), "setuid files reachable: {reachable:?}");
    let text = String::from_utf8_lossy(&s.run(&["check", "bb"]).stdout).to_string();
    assert!(!text.contains("reachable"), "{text}");

    // A hand-made tree: reported with the exact fix, and the fix works.
    let text = fs::read_to_string(s.path("sysroots.toml")).unwrap()
        + &format!("[sysroot.hand]\npath = \"{}\"\n", src.display());
    s.write("sysroots.toml", &text);
    let text = String::from_utf8_lossy(&s.run(&["check", "hand"]).stdout).to_string();
    let finding = text
        .lines()
        .find(|l| l.contains("can be reached by every user outside imageswitch"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(finding.contains("1 device node (/dev/console)") && finding.contains("(/bin/suid)"), "{finding}");
    let fix = finding.split_once("fix: ").unwrap().1;
    assert!(Command::new("sh").args(["-c", fix]).status().unwrap().success(), "{fix}");
    let text = String::from_utf8_lossy(&s.run(&["check", "hand"]).stdout).to_string();
    assert!(!text.contains("reachable"), "{text}");
    assert!(!as_nobody(&format!("[ -e {}/dev/console ]", src.display())).status.success());
    s.assert_clean();
}

/// Fault 5: with root's umask 077 the host `bin_dir`, the alias directory and
/// the store came out 0700, so users got "Permission denied" for aliases and
/// `#!/binN` scripts, and `check` said nothing. Modes are sysrootctl's own,
/// whatever the umask, and `check` verifies them.
#[test]
fn directories_sysrootctl_makes_have_their_modes_whatever_the_umask() {
    if !root_or_skip("directories_sysrootctl_makes_have_their_modes_whatever_the_umask") {
        return;
    }
    let s = busybox_in(Scratch::public("umask"), "aliases = [\"bbu\"]\nbin_dir = \"/opt/ctl-umask-bin\"", "");
    let bin_dir = s.path("hostbin/bin7");
    let text =
        fs::read_to_string(s.path("sysroots.toml")).unwrap().replace("/opt/ctl-umask-bin", &bin_dir.to_string_lossy());
    s.write("sysroots.toml", &text);
    let mut apply = Command::new("sh");
    apply.args(["-c", "umask 077; exec \"$0\" \"$@\""]).arg(BIN).args(s.cmd(&["apply", "-q"]).get_args());
    let out = apply.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    for (dir, want) in [
        (s.path("alias"), 0o755),
        (s.path("hostbin"), 0o755),
        (bin_dir.clone(), 0o755),
        (s.path("apps"), 0o755),
        (s.path("roots"), 0o755),
        (s.path("store"), 0o755),
        (s.path("store/bb"), 0o700),
        (s.path("store/bb/1"), 0o755),
        (s.path("store/bb/1").join(bin_dir.strip_prefix("/").unwrap()), 0o755),
    ] {
        assert_eq!(mode(&dir), want, "{}", dir.display());
    }
    assert_eq!(mode(&s.path("apps/sysroot-bb.desktop")), 0o644);
    fs::copy("/bin/true", s.path("imageswitch")).unwrap();
    fs::set_permissions(s.path("imageswitch"), fs::Permissions::from_mode(0o4755)).unwrap();
    let text = String::from_utf8_lossy(&s.run(&["check", "bb"]).stdout).to_string();
    assert!(!text.contains("users cannot reach"), "{text}");
    fs::set_permissions(s.path("alias"), fs::Permissions::from_mode(0o700)).unwrap();
    let text = String::from_utf8_lossy(&s.run(&["check", "bb"]).stdout).to_string();
    let want = format!(
        "users cannot reach the alias links in {0}: {0} is mode 0700 (fix: chmod o+rx {0})",
        s.path("alias").display()
    );
    assert!(text.contains(&want), "{text}");
}

/// Fault 12: `check` said "no problems found" for trees imageswitch refuses:
/// a missing bind destination (`/home`, or here a configured `/data`), a
/// half-removed live tree (and 0700 link directories: see the umask test).
/// `apply` creates missing bind destinations.
#[test]
fn check_names_every_tree_imageswitch_would_refuse() {
    if !root_or_skip("check_names_every_tree_imageswitch_would_refuse") {
        return;
    }
    let s = busybox_in(Scratch::public("refuse"), "", "");
    s.expect(&["apply", "-q"], 0);
    fs::copy("/bin/true", s.path("imageswitch")).unwrap();
    fs::set_permissions(s.path("imageswitch"), fs::Permissions::from_mode(0o4755)).unwrap();
    let text = fs::read_to_string(s.path("sysroots.toml")).unwrap().replacen("\n\n", "\nbinds = [\"/data\"]\n\n", 1);
    s.write("sysroots.toml", &text);
    let out = s.expect(&["check", "bb"], 2);
    let roots = s.path("roots/bb");
    assert!(
        out.contains(&format!(
            "imageswitch would refuse {}: bind destination /data is missing (run sysrootctl apply)",
            roots.display()
        )),
        "{out}"
    );
    let out = s.expect(&["plan", "bb"], 2);
    assert!(out.contains("create directory /data (a bind destination)"), "{out}");
    s.expect(&["apply", "-q"], 0);
    assert!(s.path("roots/bb/data").is_dir());
    // And /run, where imageswitch shows each caller's /run/user/UID: the
    // busybox tree has none.
    let run = fs::symlink_metadata(s.path("roots/bb/run")).unwrap();
    assert_eq!((run.is_dir(), run.uid(), run.mode() & 0o7777), (true, 0, 0o755));
    // The default host files get mount points too: empty, root's, 0644.
    for file in ["hosts", "localtime", "resolv.conf", "timezone"] {
        let m = fs::symlink_metadata(s.path("roots/bb/etc").join(file)).unwrap();
        assert_eq!((m.is_file(), m.len(), m.uid(), m.mode() & 0o7777), (true, 0, 0, 0o644), "{file}");
    }
    let out = s.expect(&["check", "bb"], 0);
    assert!(out.contains("no problems found"), "{out}");

    fs::remove_dir_all(s.path("store/bb/2/etc")).unwrap();
    let out = s.expect(&["check", "bb"], 2);
    assert!(out.contains("the live generation 2 is incomplete (half removed): fix: sysrootctl rollback bb"), "{out}");
    s.expect(&["rollback", "bb"], 0);
    assert_eq!(s.live("bb"), Some(1));

    // A bind source under a directory other users may write (not bound itself).
    let shared = Scratch::public("refuse-shared");
    let source = shared.path("src");
    let dir = source.parent().unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o1777)).unwrap();
    s.write("sysroots.toml", &text.replacen("\"/data\"", &format!("\"/data\", \"{}\"", source.display()), 1));
    let out = s.expect(&["check", "bb"], 2);
    let want = format!(
        "bb: imageswitch would refuse bb: bind source {} lies under {}, writable by group or others (mode 1777)",
        source.display(),
        dir.display()
    );
    assert!(out.contains(&want), "{out}");
}

/// Fault 4: after imageswitch moved (from `/usr/local/sbin` to the
/// package's `/usr/sbin`) every apply refused "not a link sysrootctl made"
/// for the links it had made. They are re-pointed; a foreign file still stops it.
#[test]
fn links_sysrootctl_made_are_its_own_wherever_imageswitch_was() {
    if !root_or_skip("links_sysrootctl_made_are_its_own_wherever_imageswitch_was") {
        return;
    }
    let s = busybox_in(Scratch::new("moved"), "aliases = [\"bbm\"]\nbin_dir = \"/opt/ctl-moved-bin\"", "");
    let bin_dir = s.path("bin8");
    let text =
        fs::read_to_string(s.path("sysroots.toml")).unwrap().replace("/opt/ctl-moved-bin", &bin_dir.to_string_lossy());
    s.write("sysroots.toml", &text);
    s.expect(&["apply", "-q"], 0);
    assert_eq!(fs::read_link(s.path("alias/bbm")).unwrap(), s.path("imageswitch"));
    let moved = s.path("usr/sbin/imageswitch");
    let apply_moved = || {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config").arg(s.path("sysroots.toml")).arg("--imageswitch").arg(&moved);
        cmd.arg("--alias-dir").arg(s.path("alias")).arg("--applications-dir").arg(s.path("apps")).arg("apply");
        cmd.output().unwrap()
    };
    let out = apply_moved();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs::read_link(s.path("alias/bbm")).unwrap(), moved);
    assert_eq!(fs::read_link(bin_dir.join("sh")).unwrap(), moved);
    fs::remove_file(s.path("alias/bbm")).unwrap();
    s.write("alias/bbm", "a site's own script\n");
    let out = apply_moved();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("refusing to replace")
            || String::from_utf8_lossy(&out.stderr).contains("refusing to replace")
    );
}

/// Fault 9: a tarball import dropped file capabilities (ping's `cap_net_raw`)
/// and ACLs, though extended attributes were promised. They survive the
/// import and every later generation's copy.
#[test]
fn imports_keep_file_capabilities_and_acls() {
    if !root_or_skip("imports_keep_file_capabilities_and_acls")
        || !have_tool("imports_keep_file_capabilities_and_acls", "setcap", "libcap2-bin")
        || !have_tool("imports_keep_file_capabilities_and_acls", "setfacl", "acl")
    {
        return;
    }
    let s = Scratch::new("xattrs");
    let src = s.path("src");
    let run = |cmd: &mut Command| assert!(cmd.status().unwrap().success(), "{cmd:?}");
    run(Command::new("cp").arg("-a").arg(cached_tree("busybox")).arg(&src));
    fs::copy(src.join("bin/busybox"), src.join("bin/ping")).unwrap();
    run(Command::new("setcap").arg("cap_net_raw+ep").arg(src.join("bin/ping")));
    fs::write(src.join("etc/shared"), "x\n").unwrap();
    run(Command::new("setfacl").args(["-m", "u:65534:r"]).arg(src.join("etc/shared")));
    run(Command::new("tar")
        .arg("-C")
        .arg(&src)
        .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls", "-czf"])
        .arg(s.path("bb.tar.gz"))
        .arg("."));
    s.config("bb", "", &format!("method = \"tarball\"\nsource = \"{}\"\n", s.path("bb.tar.gz").display()));
    s.expect(&["apply", "-q"], 0);
    s.write("overlay/etc/motd", "2\n");
    let text = fs::read_to_string(s.path("sysroots.toml")).unwrap()
        + &format!("files = [{{ src = \"{}\", dst = \"/\" }}]\n", s.path("overlay").display());
    s.write("sysroots.toml", &text);
    s.expect(&["apply", "-q"], 0);
    for generation in ["1", "2"] {
        let tree = s.path("store/bb").join(generation);
        let caps = Command::new("getcap").arg(tree.join("bin/ping")).output().unwrap();
        assert!(String::from_utf8_lossy(&caps.stdout).contains("cap_net_raw"), "generation {generation}: {caps:?}");
        let acl = Command::new("getfacl").args(["-n", "-p"]).arg(tree.join("etc/shared")).output().unwrap();
        assert!(String::from_utf8_lossy(&acl.stdout).contains("user:65534:r--"), "generation {generation}: {acl:?}");
    }
}

#[test]
fn check_reports_setuid_world_writable_and_kernel_too_old() {
    if !root_or_skip("check_reports_setuid_world_writable_and_kernel_too_old") {
        return;
    }
    // Under a base whose parents pass check, wherever the checkout is.
    let s = busybox_in(Scratch::public("check"), "aliases = [\"bbc\"]", "");
    s.expect(&["apply"], 0);
    fs::copy("/bin/true", s.path("imageswitch")).unwrap();
    fs::set_permissions(s.path("imageswitch"), fs::Permissions::from_mode(0o755)).unwrap();
    let out = s.expect(&["check", "bb"], 2);
    assert!(out.contains("must be setuid root"), "{out}");
    fs::set_permissions(s.path("imageswitch"), fs::Permissions::from_mode(0o4755)).unwrap();
    let out = s.run(&["check", "bb"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("setuid"), "{text}");
    assert!(!text.contains("world-writable"), "{text}");
    assert!(!text.contains("kernel too old"), "{text}");

    let tree = s.path("roots/bb");
    fs::create_dir(tree.join("srv/drop")).unwrap_or_else(|_| {
        fs::create_dir_all(tree.join("srv/drop")).unwrap();
    });
    fs::set_permissions(tree.join("srv/drop"), fs::Permissions::from_mode(0o777)).unwrap();
    // A libc whose ABI note asks for Linux 99: the "FATAL: kernel too old" trap.
    let libc = fs::read(host_libc()).unwrap();
    let patched = require_kernel(&libc, 99);
    fs::create_dir_all(tree.join("lib/x86_64-linux-gnu")).unwrap();
    fs::write(tree.join("lib/x86_64-linux-gnu/libc.so.6"), patched).unwrap();
    fs::remove_file(s.path("alias/bbc")).unwrap();
    // A critical entry writable by a group: exactly what imageswitch refuses.
    fs::set_permissions(tree.join("etc"), fs::Permissions::from_mode(0o775)).unwrap();
    let out = s.expect(&["check", "bb"], 2);
    assert!(out.contains("1 world-writable directory without the sticky bit in the tree: /srv/drop"), "{out}");
    assert!(
        out.contains(&format!(
            "imageswitch would refuse {}: etc in the tree: writable by group or others",
            tree.display()
        )),
        "{out}"
    );
    assert!(out.contains("needs Linux 99.") && out.contains("FATAL: kernel too old"), "{out}");
    assert!(out.contains("links out of date") && out.contains("alias"), "{out}");
    let json = s.run(&["check", "bb", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(v.as_array().unwrap().len() >= 3);
    s.assert_clean();
}

fn host_libc() -> &'static str {
    ["/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("host libc")
}

/// Rewrites the NT_GNU_ABI_TAG note's major kernel version.
fn require_kernel(elf: &[u8], major: u32) -> Vec<u8> {
    let mut out = elf.to_vec();
    let needle: [u8; 16] = [4, 0, 0, 0, 16, 0, 0, 0, 1, 0, 0, 0, b'G', b'N', b'U', 0];
    let at = out.windows(16).position(|w| w == needle).expect("ABI tag note");
    out[at + 20..at + 24].copy_from_slice(&major.to_le_bytes());
    out
}

/// bullseye i386 imported from the cached directory, with packages, a service,
/// and host users merged.
#[test]
fn debian_tree_packages_services_and_user_merge() {
    if !root_or_skip("debian_tree_packages_services_and_user_merge") {
        return;
    }
    let _accounts = host_accounts();
    let s = Scratch::new("debian");
    let user = HostUser::create(&format!("ctlt{}", std::process::id() % 100000));
    // The host has a real hash for the user; it must never reach the tree.
    let status = Command::new("usermod").args(["-p", "$6$sysrootctltest$notarealhash", &user.name]).status().unwrap();
    assert!(status.success());
    let build = |services: &str| {
        format!(
            "method = \"tarball\"\nsource = \"{}\"\npackages = [\"cron\"]\nservices = {{ {services} }}\nusers = {{ sync = true }}\n",
            cached_tree("bullseye-i386").display()
        )
    };
    s.config("deb", "personality = \"linux32\"", &build("disable = [\"cron\"]"));
    let out = s.expect(&["apply"], 0);
    assert!(out.contains("install packages: cron") && out.contains("disable service cron"), "{out}");
    let tree = s.path("roots/deb");
    assert!(tree.join("usr/sbin/cron").exists());
    assert!(!tree.join("usr/sbin/policy-rc.d").exists(), "policy-rc.d removed after the install");
    assert!(fs::read_dir(tree.join("etc/rc2.d")).unwrap().flatten().any(|e| e.file_name() == "K01cron"));
    assert!(rooted_in(&s.dir).is_empty(), "no process (cron) left in the tree");

    // User merge: same uid, no hash, shadow still 0640 or stricter.
    let host_line = user.passwd_line();
    let tree_passwd = fs::read_to_string(tree.join("etc/passwd")).unwrap();
    assert!(tree_passwd.lines().any(|l| l == host_line), "{host_line} not in tree passwd");
    assert!(tree_passwd.starts_with("root:x:0:0:"), "tree system accounts kept");
    let shadow = fs::read_to_string(tree.join("etc/shadow")).unwrap();
    assert!(shadow.lines().any(|l| l.starts_with(&format!("{}:!:", user.name))), "{shadow}");
    assert!(!shadow.contains("notarealhash"));
    let meta = fs::metadata(tree.join("etc/shadow")).unwrap();
    assert_eq!(meta.mode() & 0o027, 0, "shadow mode {:o}", meta.mode());
    assert!(
        fs::read_to_string(tree.join("etc/group"))
            .unwrap()
            .lines()
            .any(|l| l.starts_with(&format!("{}:x:", user.name)))
    );

    // No-op re-apply: fast, and says so.
    let start = Instant::now();
    let out = s.expect(&["apply"], 0);
    let elapsed = start.elapsed();
    assert!(out.contains("up to date, nothing changed"), "{out}");
    eprintln!("no-op apply of a Debian tree took {elapsed:?}");

    // Enable the service: links made, nothing started.
    s.config("deb", "personality = \"linux32\"", &build("enable = [\"cron\"]"));
    let out = s.expect(&["plan"], 2);
    assert!(out.contains("enable service cron (not started)"), "{out}");
    s.expect(&["apply"], 0);
    assert_eq!(s.live("deb"), Some(2));
    assert!(fs::read_dir(s.path("roots/deb/etc/rc2.d")).unwrap().flatten().any(|e| e.file_name() == "S01cron"));
    assert!(rooted_in(&s.dir).is_empty(), "enabling must not start cron");

    // A host uid colliding with a tree account is an error naming both.
    fs::write(s.path("roots/deb/etc/passwd"), tree_passwd.replace(&format!("{}:x:", user.name), "squatter:x:"))
        .unwrap();
    let out = s.expect(&["apply"], 1);
    assert!(
        out.contains(&format!(
            "of host user \"{}\" is already user \"squatter\" in the tree's /etc/passwd:",
            user.name
        )),
        "{out}"
    );
    assert_eq!(s.live("deb"), Some(2), "a failed apply publishes nothing");
    fs::write(s.path("roots/deb/etc/passwd"), &tree_passwd).unwrap();

    // The user leaves the host: the merged entry leaves the tree.
    user.delete();
    let out = s.expect(&["apply"], 0);
    assert!(out.contains(&format!("removed: {}", user.name)), "{out}");
    assert!(!fs::read_to_string(s.path("roots/deb/etc/passwd")).unwrap().contains(&user.name));
    assert!(!fs::read_to_string(s.path("roots/deb/etc/shadow")).unwrap().contains(&user.name));
    s.assert_clean();
}

/// kill -9 in the middle of a package install: the live generation is intact,
/// nothing is left running in the half-built one, and the next apply finishes.
#[test]
fn kill_9_during_apply_then_apply_finishes() {
    if !root_or_skip("kill_9_during_apply_then_apply_finishes") {
        return;
    }
    let s = Scratch::new("kill9");
    let base = format!("method = \"tarball\"\nsource = \"{}\"\n", cached_tree("bullseye-i386").display());
    s.config("deb", "", &base);
    s.expect(&["apply", "-q"], 0);
    let live_before = fs::read_to_string(s.path("roots/deb/var/lib/dpkg/status")).unwrap();

    s.config("deb", "", &format!("{base}packages = [\"cron\"]\n"));
    let mut child = s.cmd(&["apply"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let partial = s.path("store/deb/2.tmp");
    // Wait until apt-get is running inside the half-built generation.
    wait_for("a process inside the new generation", Duration::from_secs(120), || !rooted_in(&partial).is_empty());
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    wait_for("the tree's processes to die with sysrootctl", Duration::from_secs(5), || rooted_in(&s.dir).is_empty());

    assert_eq!(s.live("deb"), Some(1), "the live generation stays published");
    assert_eq!(fs::read_to_string(s.path("roots/deb/var/lib/dpkg/status")).unwrap(), live_before);
    assert!(!s.path("roots/deb/usr/sbin/cron").exists());

    let out = s.expect(&["apply"], 0);
    assert!(out.contains("removed an unfinished build"), "{out}");
    assert!(out.contains("install packages: cron"), "{out}");
    assert_eq!(s.live("deb"), Some(2));
    assert!(s.path("roots/deb/usr/sbin/cron").exists());
    assert!(!partial.exists());
    s.assert_clean();
}

/// A real bootstrap from the host's mirror, first killed (-9) while debootstrap
/// runs dpkg inside the target with /proc mounted there: no mount or process
/// may survive it, and the next apply bootstraps from scratch.
#[test]
fn debootstrap_killed_then_builds_a_tree() {
    let test = "debootstrap_killed_then_builds_a_tree";
    if !root_or_skip(test) || !have_tool(test, "debootstrap", "debootstrap") {
        return;
    }
    let s = Scratch::new("debootstrap");
    // bin_dir must be the same absolute path on the host and inside: keep it in scratch.
    let keys = format!("bin_dir = \"{}\"", s.path("binx").display());
    s.config("tx", &keys, "method = \"debootstrap\"\nsuite = \"trixie\"\narch = \"amd64\"\n");

    let mut child = s.cmd(&["apply"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let partial = s.path("store/tx/1.tmp");
    wait_for("debootstrap's second stage in the target", Duration::from_secs(300), || !rooted_in(&partial).is_empty());
    child.kill().unwrap();
    child.wait().unwrap();
    wait_for("debootstrap's processes to die with sysrootctl", Duration::from_secs(10), || {
        rooted_in(&s.dir).is_empty()
    });
    s.assert_clean();
    assert_eq!(s.live("tx"), None, "nothing was published");

    let out = s.expect(&["apply"], 0);
    assert!(out.contains("removed an unfinished build"), "{out}");
    assert!(out.contains("bootstrap trixie amd64 (debootstrap)"), "{out}");
    let version = fs::read_to_string(s.path("roots/tx/etc/debian_version")).unwrap();
    assert!(version.starts_with("13") || version.starts_with("trixie"), "{version}");
    let shell = s.cmd(&["shell", "tx", "--", "/bin/sh", "-c", "grep -c trixie /etc/os-release"]).output().unwrap();
    let text = String::from_utf8_lossy(&shell.stdout);
    assert!(shell.status.success(), "{text}");
    assert!(text.trim().parse::<u32>().unwrap_or(0) > 0, "{text}");
    let inner = s.path("roots/tx").join(s.path("binx").strip_prefix("/").unwrap());
    assert_eq!(fs::read_link(inner.join("sh")).unwrap(), Path::new("/bin/sh"));
    let out = s.expect(&["apply"], 0);
    assert!(out.contains("up to date"), "{out}");
    s.assert_clean();
}

/// mmdebstrap: an i386 tree with a package at bootstrap time, entered with the
/// linux32 personality by `shell`.
#[test]
fn mmdebstrap_builds_an_i386_tree() {
    if !root_or_skip("mmdebstrap_builds_an_i386_tree")
        || !have_tool("mmdebstrap_builds_an_i386_tree", "mmdebstrap", "mmdebstrap")
    {
        return;
    }
    let s = Scratch::new("mmdebstrap");
    s.config(
        "mm",
        "personality = \"linux32\"",
        "method = \"mmdebstrap\"\nsuite = \"bullseye\"\narch = \"i386\"\npackages = [\"cron\"]\nservices = { enable = [\"cron\"] }\n",
    );
    let out = s.expect(&["apply"], 0);
    assert!(out.contains("bootstrap bullseye i386 (mmdebstrap)"), "{out}");
    assert!(s.path("roots/mm/usr/sbin/cron").exists());
    let shell = s.cmd(&["shell", "mm", "--", "/bin/sh", "-c", "uname -m; dpkg --print-architecture"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&shell.stdout), "i686\ni386\n");
    assert!(rooted_in(&s.dir).is_empty(), "cron must not be running");
    assert!(s.expect(&["apply"], 0).contains("up to date"));
    s.assert_clean();
}

/// A package the mirror does not have: apply fails with apt's own error and the
/// live generation stays as it was.
#[test]
fn failing_package_install_keeps_the_live_generation() {
    if !root_or_skip("failing_package_install_keeps_the_live_generation") {
        return;
    }
    let s = Scratch::new("badpkg");
    let base = format!("method = \"tarball\"\nsource = \"{}\"\n", cached_tree("trixie-amd64").display());
    s.config("tx", "", &base);
    s.expect(&["apply", "-q"], 0);
    s.config("tx", "", &format!("{base}packages = [\"sysrootctl-no-such-package\"]\n"));
    let out = s.expect(&["apply"], 1);
    assert!(out.contains("Unable to locate package sysrootctl-no-such-package"), "{out}");
    assert!(out.contains("generation 1 stays live") || out.contains("apt-get"), "{out}");
    assert_eq!(s.live("tx"), Some(1));
    assert_eq!(s.generations("tx"), ["1", "1.json"], "the half-built generation is gone or never finished");
    s.assert_clean();
}

/// dnf --installroot against a repository the test builds with rpmbuild and
/// createrepo_c: bootstrap, then a package added by reconcile.
#[test]
fn dnf_bootstraps_from_a_local_repository() {
    let test = "dnf_bootstraps_from_a_local_repository";
    if !root_or_skip(test)
        || !have_tool(test, "dnf", "dnf")
        || !have_tool(test, "rpmbuild", "rpm")
        || !have_tool(test, "createrepo_c", "createrepo-c")
    {
        return;
    }
    let s = Scratch::new("dnf");
    let spec = |name: &str, install: &str, files: &str| {
        format!(
            "%define debug_package %{{nil}}\n%define __os_install_post %{{nil}}\n%define _binaries_in_noarch_packages_terminate_build 0\n\
             Name: {name}\nVersion: 1\nRelease: 1\nSummary: sysrootctl test package\nLicense: MIT\nBuildArch: noarch\n\
             %description\nsysrootctl test package.\n%install\n{install}\n%files\n{files}\n"
        )
    };
    s.write(
        "base.spec",
        &spec(
            "sysroot-base",
            "mkdir -p %{buildroot}/bin %{buildroot}/etc\ncp /bin/busybox %{buildroot}/bin/busybox\nln -s busybox %{buildroot}/bin/sh\n\
             echo root:x:0:0:root:/root:/bin/sh > %{buildroot}/etc/passwd",
            "/bin/busybox\n/bin/sh\n/etc/passwd",
        ),
    );
    s.write(
        "hello.spec",
        &spec(
            "sysroot-hello",
            "mkdir -p %{buildroot}/bin\nprintf '#!/bin/sh\\necho hello from rpm\\n' > %{buildroot}/bin/hello\nchmod 755 %{buildroot}/bin/hello",
            "/bin/hello",
        ),
    );
    for spec in ["base.spec", "hello.spec"] {
        let out = Command::new("rpmbuild")
            .arg("-bb")
            .arg("--define")
            .arg(format!("_topdir {}", s.path("rpmbuild").display()))
            .arg(s.path(spec))
            .output()
            .unwrap();
        assert!(out.status.success(), "rpmbuild: {}", String::from_utf8_lossy(&out.stderr));
    }
    fs::create_dir(s.path("repo")).unwrap();
    for rpm in fs::read_dir(s.path("rpmbuild/RPMS/noarch")).unwrap().flatten() {
        fs::copy(rpm.path(), s.path("repo").join(rpm.file_name())).unwrap();
    }
    assert!(Command::new("createrepo_c").arg("-q").arg(s.path("repo")).status().unwrap().success());

    let build = |packages: &str| {
        format!(
            "method = \"dnf\"\nsuite = \"1\"\nmirror = \"file://{}\"\npackages = [{packages}]\n",
            s.path("repo").display()
        )
    };
    s.config("el", "bin_dir = \"/opt/el-bin\"", &build("\"sysroot-base\""));
    let text =
        fs::read_to_string(s.path("sysroots.toml")).unwrap().replace("/opt/el-bin", &s.path("elbin").to_string_lossy());
    s.write("sysroots.toml", &text);
    let out = s.expect(&["apply"], 0);
    assert!(out.contains("bootstrap release 1 with dnf: sysroot-base"), "{out}");
    assert!(s.path("roots/el/bin/busybox").is_file());
    assert!(s.path("roots/el/var/lib/rpm").is_dir(), "the tree's rpm database is where its own rpm looks");
    assert!(s.expect(&["apply"], 0).contains("up to date"));

    let text = fs::read_to_string(s.path("sysroots.toml"))
        .unwrap()
        .replace("[\"sysroot-base\"]", "[\"sysroot-base\", \"sysroot-hello\"]");
    s.write("sysroots.toml", &text);
    let out = s.expect(&["plan"], 2);
    assert!(out.contains("install packages: sysroot-hello"), "{out}");
    let out = s.expect(&["apply"], 0);
    assert!(out.contains("generation 1 -> 2"), "{out}");
    let inner = s.path("roots/el").join(s.path("elbin").strip_prefix("/").unwrap());
    assert_eq!(fs::read_link(inner.join("hello")).unwrap(), Path::new("/bin/hello"));
    let shell = s.cmd(&["shell", "el", "--", "/bin/hello"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&shell.stdout), "hello from rpm\n");
    s.assert_clean();
}

/// The result is what imageswitch enters: an unprivileged user goes in through
/// the alias link sysrootctl made, and a `#!BIN_DIR/sh` script runs inside.
#[test]
fn imageswitch_enters_the_published_generation_as_a_user() {
    if !root_or_skip("imageswitch_enters_the_published_generation_as_a_user") {
        return;
    }
    // Built with its own fixed configuration path, so the test shares no
    // state with the main end-to-end suite's installation.
    let config_path = "/etc/sysrootctl-test/sysroots.toml";
    let built = test_support::imageswitch_built_for(config_path);
    // Trees imageswitch enters must have only root-owned, non-writable parents.
    let _accounts = host_accounts();
    let s = Scratch::public("enter");
    let user = HostUser::create(&format!("ctle{}", std::process::id() % 100000));
    pack(&cached_tree("busybox"), &s.path("bb.tar.gz"));
    let alias = format!("ctl-bbe{}", std::process::id() % 100000);
    let text = format!(
        "[defaults]\nbinds = [\"/home\"]\nlog_socket = \"\"\n\n[sysroot.bbe]\npath = \"{root}/roots/bbe\"\naliases = [\"{alias}\"]\n\
         bin_dir = \"{root}/binbe\"\n\n[sysroot.bbe.build]\nmethod = \"tarball\"\nsource = \"{root}/bb.tar.gz\"\nstore = \"{root}/store\"\n\
         users = {{ sync = true }}\n",
        root = s.dir.display()
    );
    s.write("sysroots.toml", &text);
    let status = Command::new("install")
        .args(["-m", "4755", "-o", "root", "-g", "root"])
        .arg(&built)
        .arg(s.path("imageswitch"))
        .status();
    assert!(status.unwrap().success());
    s.expect(&["apply"], 0);
    let out = s.run(&["check", "bbe"]);
    let found = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!found.contains("bbe:"), "check finds problems with the published tree:\n{found}");
    let _config = Swap::new(Path::new(config_path), &text);

    let home = PathBuf::from(user.passwd_line().split(':').nth(5).unwrap());
    let out = as_user(&user.name, &s.path("alias").join(&alias))
        .args(["-c", "id -u; cat /etc/debian_version; pwd"])
        .current_dir(&home)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let uid = user.passwd_line().split(':').nth(2).unwrap().to_string();
    assert_eq!(text, format!("{uid}\nbusybox\n{}\n", home.display()), "{}", String::from_utf8_lossy(&out.stderr));

    // #!BIN_DIR/sh from the host: through the host bin_dir link into the tree.
    let script = home.join("inside.sh");
    fs::write(
        &script,
        format!("#!{}/sh\necho \"in $(cat /etc/debian_version) as $(id -u)\"\n", s.path("binbe").display()),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    nix::unistd::chown(&script, Some(nix::unistd::Uid::from_raw(uid.parse().unwrap())), None).unwrap();
    let out = as_user(&user.name, &script).current_dir(&home).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("in busybox as {uid}\n"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.assert_clean();
}

/// A tree built by hand is a plain directory at `path`: apply refuses it and
/// says how to take it over; `apply --adopt` swaps it for a generation link in
/// one step, and a process already inside keeps the old directory.
#[test]
fn adopt_takes_over_a_hand_built_tree() {
    if !root_or_skip("adopt_takes_over_a_hand_built_tree") {
        return;
    }
    let s = busybox_scratch("adopt", "", "");
    let path = s.path("roots/bb");
    fs::create_dir_all(s.path("roots")).unwrap();
    assert!(Command::new("cp").arg("-a").arg(cached_tree("busybox")).arg(&path).status().unwrap().success());
    fs::write(path.join("etc/hand-made"), "yes\n").unwrap();
    // Every default mount point is there (bind destinations and host files),
    // so adoption is all that changes.
    fs::create_dir_all(path.join("var/tmp")).unwrap();
    fs::create_dir_all(path.join("run")).unwrap();
    for file in ["hosts", "localtime", "resolv.conf", "timezone"] {
        fs::write(path.join("etc").join(file), "").unwrap();
    }
    let mut inside = Command::new("chroot").arg(&path).args(["/bin/sleep", "60"]).spawn().unwrap();
    wait_for("the sleeper to enter the hand-built tree", Duration::from_secs(5), || !rooted_in(&path).is_empty());

    let out = s.expect(&["apply"], 1);
    assert!(out.contains("is not a symlink to a generation") && out.contains("apply --adopt bb"), "{out}");
    let out = s.expect(&["apply", "--adopt"], 0);
    assert!(out.contains("adopted") && out.contains("bb.pre-sysrootctl"), "{out}");
    assert!(fs::symlink_metadata(&path).unwrap().file_type().is_symlink());
    assert_eq!(s.live("bb"), Some(1));
    assert_eq!(fs::read_to_string(path.join("etc/hand-made")).unwrap(), "yes\n");
    let old = s.path("roots/bb.pre-sysrootctl");
    let root = fs::read_link(format!("/proc/{}/root", inside.id())).unwrap();
    assert_eq!(root, old, "the running process keeps the tree it entered");
    inside.kill().unwrap();
    inside.wait().unwrap();
    assert!(s.expect(&["apply"], 0).contains("up to date"));
    s.assert_clean();
}

/// On btrfs every generation is a subvolume and the next one a snapshot of the
/// live one (not a copy); gc deletes subvolumes.
#[test]
fn btrfs_store_uses_snapshots() {
    let test = "btrfs_store_uses_snapshots";
    if !root_or_skip(test) || !have_tool(test, "mkfs.btrfs", "btrfs-progs") {
        return;
    }
    let s = Scratch::new("btrfs");
    let image = s.path("fs.img");
    fs::File::create(&image).unwrap().set_len(512 << 20).unwrap();
    let out = Command::new("mkfs.btrfs").arg("-q").arg(&image).output().unwrap();
    assert!(out.status.success(), "mkfs.btrfs: {}", String::from_utf8_lossy(&out.stderr));
    let mnt = s.path("mnt");
    fs::create_dir(&mnt).unwrap();
    let out = Command::new("mount").args(["-o", "loop"]).arg(&image).arg(&mnt).output().unwrap();
    if !out.status.success() {
        // Some sandboxes have no loop devices; that is the machine, not sysrootctl.
        let why = format!("cannot loop-mount a btrfs image: {}", String::from_utf8_lossy(&out.stderr));
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{test}: {why}");
        }
        eprintln!("SKIPPED {test}: {why}");
        return;
    }
    let _mounted = test_support::Unmounted(mnt.clone());
    pack(&cached_tree("busybox"), &s.path("bb.tar.gz"));
    let build = |extra: &str| {
        format!(
            "method = \"tarball\"\nsource = \"{}\"\nstore = \"{}\"\nkeep = 1\n{extra}",
            s.path("bb.tar.gz").display(),
            mnt.join("store").display()
        )
    };
    s.write(
        "sysroots.toml",
        &format!("[sysroot.bb]\npath = \"{}\"\n[sysroot.bb.build]\n{}", s.path("roots/bb").display(), build("")),
    );
    s.expect(&["apply"], 0);
    let gen1 = mnt.join("store/bb/1");
    assert_eq!(fs::metadata(&gen1).unwrap().ino(), 256, "generation 1 is a subvolume");
    let show = |generation: &Path| {
        let out = Command::new("btrfs").args(["subvolume", "show"]).arg(generation).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let field = |text: &str, key: &str| {
        text.lines().find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_string())).unwrap()
    };
    let uuid1 = field(&show(&gen1), "UUID:");

    s.write("overlay/etc/motd", "snapshot\n");
    s.write(
        "sysroots.toml",
        &format!(
            "[sysroot.bb]\npath = \"{}\"\n[sysroot.bb.build]\n{}",
            s.path("roots/bb").display(),
            build(&format!("files = [{{ src = \"{}\", dst = \"/\" }}]\n", s.path("overlay").display()))
        ),
    );
    let out = s.expect(&["apply"], 0);
    assert!(out.contains("generation 1 -> 2"), "{out}");
    let gen2 = mnt.join("store/bb/2");
    assert_eq!(field(&show(&gen2), "Parent UUID:"), uuid1, "generation 2 is a snapshot of 1");
    assert_eq!(fs::read_to_string(gen2.join("etc/motd")).unwrap(), "snapshot\n");
    // keep = 1: generation 1's subvolume is gone.
    assert!(!gen1.exists());
    let list = Command::new("btrfs").args(["subvolume", "list"]).arg(&mnt).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(!list.contains("store/bb/1\n") && list.contains("store/bb/2"), "{list}");
    drop(_mounted);
    s.assert_clean();
}

/// A synced account whose home lies outside every bound path (here
/// `/var/lib/sysrootctl-test/.../homes/NAME`, not under `/home`): check names
/// it, imageswitch's warning names the fix, apply creates a root-owned mount
/// point, and the user then starts in their home.
#[test]
fn homes_outside_the_bound_paths_get_a_mount_point_from_users_sync() {
    if !root_or_skip("homes_outside_the_bound_paths_get_a_mount_point_from_users_sync") {
        return;
    }
    // Built with its own fixed configuration path, so the test shares no
    // state with the main end-to-end suite's installation.
    let config_path = "/etc/sysrootctl-test/sysroots.toml";
    let built = test_support::imageswitch_built_for(config_path);
    let _accounts = host_accounts();
    let s = Scratch::public("homes");
    pack(&cached_tree("busybox"), &s.path("bb.tar.gz"));
    let alias = format!("ctl-bbh{}", std::process::id() % 100000);
    let text = format!(
        "[defaults]\nbinds = [\"/home\"]\nlog_socket = \"\"\n\n[sysroot.bbh]\npath = \"{root}/roots/bbh\"\naliases = [\"{alias}\"]\n\n\
         [sysroot.bbh.build]\nmethod = \"tarball\"\nsource = \"{root}/bb.tar.gz\"\nstore = \"{root}/store\"\nusers = {{ sync = true }}\n",
        root = s.dir.display()
    );
    s.write("sysroots.toml", &text);
    assert!(
        Command::new("install")
            .args(["-m", "4755", "-o", "root"])
            .arg(&built)
            .arg(s.path("imageswitch"))
            .status()
            .unwrap()
            .success()
    );
    s.expect(&["apply"], 0);

    let name = format!("ctlh{}", std::process::id() % 100000);
    let home = s.path(&format!("homes/{name}"));
    fs::create_dir_all(home.parent().unwrap()).unwrap();
    let out = Command::new("useradd").args(["-m", "-s", "/bin/sh", "-d"]).arg(&home).arg(&name).output().unwrap();
    assert!(out.status.success(), "useradd: {}", String::from_utf8_lossy(&out.stderr));
    let user = HostUser { name: name.clone() };
    let _config = Swap::new(Path::new(config_path), &text);
    let enter =
        || as_user(&user.name, &s.path("alias").join(&alias)).args(["-c", "pwd"]).current_dir(&home).output().unwrap();

    let finding =
        format!("bbh: account {name}: home {} has no mount point in the tree (run sysrootctl apply)", home.display());
    assert!(s.expect(&["check", "bbh"], 2).contains(&finding), "check does not name the account");
    let out = enter();
    // One line names the fix (the next says where the shell starts instead).
    let warnings = String::from_utf8_lossy(&out.stderr);
    let fix: Vec<&str> =
        warnings.lines().filter(|l| l.contains("users.sync and sysrootctl apply create one")).collect();
    assert_eq!(fix.len(), 1, "{warnings}");
    assert!(fix[0].starts_with("imageswitch: warning: bbh: bind destination "), "{warnings}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "/\n");

    assert!(s.expect(&["apply"], 0).contains(&format!("create mount point {}", home.display())));
    let point = s.path("roots/bbh").join(home.strip_prefix("/").unwrap());
    let meta = fs::metadata(&point).unwrap();
    assert_eq!((meta.is_dir(), meta.uid(), meta.mode() & 0o7777), (true, 0, 0o755));
    assert!(!String::from_utf8_lossy(&s.run(&["check", "bbh"]).stdout).contains(&name));
    let out = enter();
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{}\n", home.display()));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    drop(user);
    s.assert_clean();
}

/// Fault 11: overlays came after packages, so an apt source (or proxy) an
/// overlay adds could not serve packages in the same apply. `skeleton` files
/// are laid down before packages (here a site's own repository and the
/// `sources.list` that names it, the only place the package exists); a file
/// `files` also lays down is the `files` one, and the plan converges.
#[test]
fn files_the_package_install_needs_are_laid_down_before_it() {
    if !root_or_skip("files_the_package_install_needs_are_laid_down_before_it")
        || !have_tool("files_the_package_install_needs_are_laid_down_before_it", "dpkg-scanpackages", "dpkg-dev")
    {
        return;
    }
    let s = Scratch::new("skeleton");
    let base = format!("method = \"tarball\"\nsource = \"{}\"\n", cached_tree("bullseye-i386").display());
    s.config("deb", "", &base);
    s.expect(&["apply", "-q"], 0);

    s.write(
        "pkg/DEBIAN/control",
        "Package: isw-skeleton-probe\nVersion: 1\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: probe\n",
    );
    s.write("pkg/usr/share/isw-skeleton-probe/ok", "ok\n");
    let repo = s.path("skel/srv/isw-repo");
    fs::create_dir_all(&repo).unwrap();
    let built = Command::new("dpkg-deb")
        .arg("--root-owner-group")
        .arg("--build")
        .arg(s.path("pkg"))
        .arg(repo.join("probe.deb"))
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let index = Command::new("dpkg-scanpackages").arg(".").current_dir(&repo).output().unwrap();
    assert!(index.status.success());
    fs::write(repo.join("Packages"), index.stdout).unwrap();
    s.write("skel/etc/apt/sources.list", "deb [trusted=yes] file:/srv/isw-repo ./\n");
    s.write("skel/etc/motd", "from the skeleton\n");
    s.write("files/etc/motd", "from files\n");
    let overlay = |key: &str, dir: &str| format!("{key} = [{{ src = \"{}\", dst = \"/\" }}]\n", s.path(dir).display());
    s.config(
        "deb",
        "",
        &format!(
            "{base}packages = [\"isw-skeleton-probe\"]\n{}{}",
            overlay("skeleton", "skel"),
            overlay("files", "files")
        ),
    );

    let out = s.expect(&["plan"], 2);
    let at = |line: &str| out.find(line).unwrap_or_else(|| panic!("plan lacks {line:?}:\n{out}"));
    assert!(at("write /etc/apt/sources.list") < at("install packages: isw-skeleton-probe"), "{out}");
    assert!(at("install packages: isw-skeleton-probe") < at("write /etc/motd"), "{out}");
    assert_eq!(out.matches("write /etc/motd").count(), 1, "{out}");
    s.expect(&["apply", "-q"], 0);
    assert_eq!(s.live("deb"), Some(2));
    assert_eq!(fs::read_to_string(s.path("roots/deb/usr/share/isw-skeleton-probe/ok")).unwrap(), "ok\n");
    assert_eq!(fs::read_to_string(s.path("roots/deb/etc/motd")).unwrap(), "from files\n");
    s.expect(&["plan"], 0);
    // Whoever can write a skeleton can write the tree: check says so.
    fs::set_permissions(s.path("skel"), fs::Permissions::from_mode(0o775)).unwrap();
    let out = s.expect(&["check", "deb"], 2);
    assert!(out.contains(&format!("{} is not safe to copy into the tree", s.path("skel").display())), "{out}");
    s.assert_clean();
}

/// `plan --diff` shows how the contents of overlay and account files would
/// change (a unified diff, the tree's side first), and never shows password
/// data.
#[test]
fn plan_diff_shows_content_changes_of_overlays_and_account_files() {
    if !root_or_skip("plan_diff_shows_content_changes_of_overlays_and_account_files") {
        return;
    }
    let _accounts = host_accounts();
    let s = Scratch::new("plan-diff");
    s.write("overlay/etc/motd", "one\ntwo\n");
    std::os::unix::fs::symlink("/etc/motd", s.path("overlay/etc/l")).unwrap();
    let build = format!(
        "files = [{{ src = \"{}\", dst = \"/\" }}]\nusers = {{ sync = true, uid_min = 1, uid_max = 99 }}\n",
        s.path("overlay").display()
    );
    let s = busybox_in(s, "", &build);
    s.expect(&["apply", "-q"], 0);
    let out = s.expect(&["plan", "--diff"], 0);
    assert!(!out.contains("+++"), "{out}");

    s.write("overlay/etc/motd", "one\nthree\n");
    fs::remove_file(s.path("overlay/etc/l")).unwrap();
    std::os::unix::fs::symlink("/etc/hosts", s.path("overlay/etc/l")).unwrap();
    let passwd = s.path("roots/bb/etc/passwd");
    let text = fs::read_to_string(&passwd).unwrap();
    let bin = text.lines().find(|l| l.starts_with("bin:")).expect("host account bin merged").to_string();
    fs::write(&passwd, text.replace(&format!("{bin}\n"), "")).unwrap();
    let shadow = s.path("roots/bb/etc/shadow");
    fs::set_permissions(&shadow, fs::Permissions::from_mode(0o644)).unwrap();
    let out = s.expect(&["plan", "--diff"], 2);
    for part in [
        "--- /etc/motd (in the tree)\n+++ /etc/motd (declared)\n",
        " one\n-two\n+three\n",
        "--- /etc/passwd (in the tree)\n+++ /etc/passwd (declared)\n",
        &format!("+{bin}\n"),
        "/etc/shadow: contents not shown (password data)\n",
        "/etc/l: a link to /etc/hosts (in the tree: a link to /etc/motd)\n",
    ] {
        assert!(out.contains(part), "plan --diff lacks {part:?}:\n{out}");
    }
    let secret = fs::read_to_string(&shadow).unwrap();
    assert!(secret.lines().all(|l| !out.contains(l)), "shadow lines shown:\n{out}");
    assert!(!s.expect(&["plan"], 2).contains("+++"), "only with --diff");
    let v: serde_json::Value = serde_json::from_slice(&s.run(&["plan", "--json", "--diff"]).stdout).unwrap();
    let diffs = v[0]["diffs"].as_array().unwrap();
    assert!(diffs.iter().any(|d| d["path"] == "/etc/motd" && d["diff"].as_str().unwrap().contains("+three")), "{v}");
    s.assert_clean();
}

/// The review's case: a `files` overlay with etc/shadow (0600) printed its
/// hashes, and etc/site-secret (0600) was printed in full, in `--json` too.
#[test]
fn plan_diff_never_shows_contents_not_every_user_can_read() {
    if !root_or_skip("plan_diff_never_shows_contents_not_every_user_can_read") {
        return;
    }
    let s = Scratch::new("plan-diff-secret");
    let secret = |s: &Scratch, rel: &str, text: &str| {
        let path = s.write(rel, text);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    };
    secret(&s, "overlay/etc/shadow", "root:$6$old$oldhash:1:0:99999:7:::\n");
    secret(&s, "overlay/etc/site-secret", "token-old\n");
    secret(&s, "overlay/etc/apt/auth.conf.d/site.conf", "password old\n");
    let build = format!("files = [{{ src = \"{}\", dst = \"/\" }}]\n", s.path("overlay").display());
    let s = busybox_in(s, "", &build);
    s.expect(&["apply", "-q"], 0);
    secret(&s, "overlay/etc/shadow", "root:$6$new$newhash:1:0:99999:7:::\n");
    secret(&s, "overlay/etc/site-secret", "token-new\n");
    secret(&s, "overlay/etc/apt/auth.conf.d/site.conf", "password new\n");
    let out = s.expect(&["plan", "--diff"], 2);
    for part in [
        "/etc/shadow: contents not shown (password data)\n",
        "/etc/site-secret: contents not shown (mode 0600)\n",
        "/etc/apt/auth.conf.d/site.conf: contents not shown (mode 0600)\n",
    ] {
        assert!(out.contains(part), "plan --diff lacks {part:?}:\n{out}");
    }
    let json = String::from_utf8(s.run(&["plan", "--json", "--diff"]).stdout).unwrap();
    for shown in ["hash", "token", "password old", "password new"] {
        assert!(!out.contains(shown) && !json.contains(shown), "{shown} shown:\n{out}\n{json}");
    }
    s.assert_clean();
}

/// `--json` of plan, apply, rollback and retire: one record per sysroot with
/// `schema` 1, the printed lines in `changes`, and each change typed in
/// `records` (kind, path or names, reason, whether on the host).
#[test]
fn json_changes_are_typed_records_with_a_schema_version() {
    if !root_or_skip("json_changes_are_typed_records_with_a_schema_version") {
        return;
    }
    let s = Scratch::new("json-schema");
    s.write("overlay/etc/motd", "one\n");
    let files = format!("files = [{{ src = \"{}\", dst = \"/\" }}]\n", s.path("overlay").display());
    let s = busybox_in(s, "aliases = [\"bbj\"]", &files);
    let json = |args: &[&str]| -> serde_json::Value { serde_json::from_slice(&s.run(args).stdout).unwrap() };
    let kinds = |v: &serde_json::Value| -> Vec<String> {
        v[0]["records"].as_array().unwrap().iter().map(|r| r["kind"].as_str().unwrap().to_string()).collect()
    };
    let v = json(&["plan", "bb", "--json"]);
    assert_eq!(v[0]["schema"], 1, "{v}");
    assert_eq!(kinds(&v), ["bootstrap", "reconcile"], "{v}");
    let v = json(&["apply", "bb", "--json"]);
    assert_eq!(v[0]["schema"], 1, "{v}");
    let records = v[0]["records"].as_array().unwrap();
    assert_eq!(records.len(), v[0]["changes"].as_array().unwrap().len());
    assert!(records.iter().zip(v[0]["changes"].as_array().unwrap()).all(|(r, c)| r["text"] == *c), "{v}");
    assert!(
        records.iter().any(|r| r["kind"] == "write_file" && r["path"] == "/etc/motd" && r["reason"] == "new"),
        "{v}"
    );

    s.write("overlay/etc/motd", "two\n");
    fs::remove_file(s.path("alias/bbj")).unwrap();
    let v = json(&["plan", "bb", "--json"]);
    let records = v[0]["records"].as_array().unwrap();
    let motd = serde_json::json!({"kind": "write_file", "path": "/etc/motd", "reason": "overlay_changed", "host": false, "text": "update /etc/motd (the overlay changed)"});
    assert!(records.contains(&motd), "{v}");
    let alias = s.path("alias").display().to_string();
    assert!(records.iter().any(|r| r["kind"] == "link" && r["path"] == alias.as_str() && r["host"] == true), "{v}");
    s.assert_clean();
}
