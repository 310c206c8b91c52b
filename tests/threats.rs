//! ../shared/THREATS.md, row by row. Each `rowNN_*` test performs the row's
//! attack *as an unprivileged user* (`common::as_user`, i.e. setpriv) against
//! the installed setuid-root binary and asserts that it fails, with a control
//! where one is needed to show that the attack itself is real (the evil
//! library does load, the setuid file does elevate where allowed, the device
//! node does work on the host). Rows 14 and 16 (500-run races) are in
//! tests/reliability/races.rs.
//!
//! Tests run in parallel. None changes state another one reads: attacks that
//! need a changed configuration or tree run in their own mount namespace
//! (`in_namespace`), where a copy is bound over the original; the fixture
//! sysroots a user may tamper with (bb-linkout, bb-sharedhome) each belong to
//! one test; the tests that change host-wide settings (row 15, core dumps)
//! hold [`HOST_SETTINGS`] and restore them on the way out, even when they fail.
//!
//! Tests once marked `#[ignore = "blocked on fix: ..."]` failed against the
//! binary for the reason given; run them with `-- --ignored`.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use test_support::{Removed, c_program, gid_of as gid, mountinfo, procs, uid_of as uid};

/// Held by tests that change host-wide kernel settings.
static HOST_SETTINGS: Mutex<()> = Mutex::new(());

const TRIXIE: &str = "/var/cache/imageswitch-test/trixie-amd64";
const BB_TREE: &str = "/var/lib/imageswitch-test/trees/bb";
const TREES: &str = "/var/lib/imageswitch-test/trees";

fn imageswitch_as(user: &str, args: &[&str]) -> Output {
    run(as_user(user, BIN).args(args))
}

/// `id -G user` on the host, as a set.
fn host_groups(user: &str) -> BTreeSet<u32> {
    let out = run(Command::new("id").args(["-G", user]));
    stdout(&out).split_whitespace().map(|g| g.parse().expect("gid")).collect()
}

/// A fresh directory under /tmp owned by root with `mode` (/tmp is bound
/// into every sysroot, so the same path works inside).
fn root_dir(tag: &str, mode: u32) -> Removed {
    let dir = PathBuf::from(format!("/tmp/imgsw-threats-{tag}-{}-{}", std::process::id(), unique()));
    fs::create_dir(&dir).expect("mkdir");
    fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).expect("chmod");
    Removed(dir)
}

/// A copy at `dir/name` of `tests/support/PROGRAM.c` built with `flags`
/// (test_support::c_program), for the test to give an owner and a mode.
fn compile(dir: &Path, name: &str, program: &str, flags: &[&str]) -> PathBuf {
    let out = dir.join(name);
    fs::copy(c_program(program, flags), &out).expect("copy the built program");
    out
}

/// Spawns `cmd` with `input` on its standard input (a program that exits
/// without reading it is fine: the write's EPIPE is ignored).
fn run_with_stdin(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let _ = child.stdin.take().expect("stdin").write_all(input.as_bytes());
    child.wait_with_output().expect("wait")
}

/// imageswitch failed by itself: `code`, nothing on stdout (nothing ran),
/// exactly one `imageswitch: ...` line containing `needle`, no panic.
fn assert_clean_failure(out: &Output, code: i32, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stdout: {} stderr: {err}", stdout(out));
    assert!(stdout(out).is_empty(), "nothing may run, but stdout has: {}", stdout(out));
    assert_eq!(err.lines().count(), 1, "one diagnostic line expected: {err:?}");
    assert!(err.starts_with("imageswitch: "), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in {err:?}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
}

fn assert_ok(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "stdout: {} stderr: {}", stdout(out), stderr(out));
    stdout(out)
}

/// A library whose constructor records, in a file of `records` named after
/// its pid, `TAG euid=N ruid=N exe=PATH` for every process that loads it.
fn recorder_library(dir: &Path, name: &str, tag: &str, records: &Path) -> PathBuf {
    compile(
        dir,
        name,
        "recorder",
        &["-shared", "-fPIC", &format!("-DRECORDS=\"{}\"", records.display()), &format!("-DTAG=\"{tag}\"")],
    )
}

/// The records left by [`recorder_library`], sorted.
fn records(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .expect("records dir")
        .map(|e| fs::read_to_string(e.expect("entry").path()).unwrap_or_default().trim_end().to_string())
        .collect();
    out.sort();
    out
}

fn clear_records(dir: &Path) {
    for entry in fs::read_dir(dir).expect("records dir") {
        let _ = fs::remove_file(entry.expect("entry").path());
    }
}

/// One run in a fresh mount namespace: `setup` runs there as root (binding
/// copies over the configuration or a tree), then `argv` runs as `user` in
/// `cwd`. The namespace's mount table is captured just before and after.
struct NsRun {
    out: Output,
    before: String,
    after: String,
}

fn in_namespace(propagation: &str, setup: &str, user: &str, cwd: &Path, argv: &[&str]) -> NsRun {
    let dir = root_dir("ns", 0o755);
    let d = dir.display();
    let script = format!(
        "{setup}\ncat /proc/self/mountinfo > {d}/before\nrc=0\n\
         setpriv --reuid={user} --regid={user} --init-groups -- \"$@\" || rc=$?\n\
         cat /proc/self/mountinfo > {d}/after\nexit $rc\n"
    );
    let out = run(Command::new("unshare")
        .arg("--mount")
        .arg(format!("--propagation={propagation}"))
        .args(["--", "sh", "-ec", &script, "sh"])
        .args(argv)
        .current_dir(cwd));
    let before = fs::read_to_string(dir.join("before"))
        .unwrap_or_else(|_| panic!("namespace setup failed: {}{}", stdout(&out), stderr(&out)));
    let after = fs::read_to_string(dir.join("after")).expect("mount table after");
    NsRun { out, before: mountinfo::without_pins(&before), after: mountinfo::without_pins(&after) }
}

/// A syslog socket of this test's own, bound over the configured one
/// (`LOG_SOCKET`) in a test's mount namespace by [`PrivateLog::setup`]: other
/// test binaries running at the same time re-create the shared listener's
/// socket, which would steal the records this test waits for.
struct PrivateLog {
    sock: std::os::unix::net::UnixDatagram,
    path: PathBuf,
    _dir: Removed,
}

impl PrivateLog {
    fn new(tag: &str) -> PrivateLog {
        let dir = root_dir(tag, 0o755);
        let path = dir.join("log.sock");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).expect("bind private log socket");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).expect("chmod log socket");
        sock.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        PrivateLog { sock, path, _dir: dir }
    }

    /// The namespace setup step that makes this socket the configured one.
    fn setup(&self) -> String {
        format!("mount --bind {} {LOG_SOCKET}", self.path.display())
    }

    /// The first record containing `needle` within 5 s; `from_imageswitch`
    /// says whether it must be imageswitch's own audit record or must not.
    fn wait_for(&self, needle: &str, from_imageswitch: bool) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = vec![0u8; 8192];
        while Instant::now() < deadline {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let record = String::from_utf8_lossy(&buf[..n]).into_owned();
                let ours = record.contains(">imageswitch[");
                if record.contains(needle) && ours == from_imageswitch {
                    return Some(record);
                }
            }
        }
        None
    }
}

// ---------------------------------------------------------------------------
// Row 1: loader, locale and libc variables while euid is 0.

#[test]
fn row01_loader_env_never_seen_as_root() {
    require_root!();
    fixture();
    let alice = uid(ALICE);
    let drop_box = root_dir("row01-records", 0o1777);
    let libs = root_dir("row01-libs", 0o755);
    let preload = recorder_library(&libs, "preload.so", "preload", &drop_box);
    let gconv = libs.join("gconv");
    fs::create_dir(&gconv).expect("mkdir gconv");
    recorder_library(&gconv, "imgswevil.so", "gconv", &drop_box);
    fs::write(
        gconv.join("gconv-modules"),
        "module IMGSWEVIL// INTERNAL imgswevil 1\nmodule INTERNAL IMGSWEVIL// imgswevil 1\n",
    )
    .expect("gconv-modules");
    let preload = preload.to_str().expect("utf8").to_string();
    let gconv = gconv.to_str().expect("utf8").to_string();

    // Controls: both libraries do run code, for the user, on the host.
    assert_ok(&run(as_user(ALICE, "env").args([&format!("LD_PRELOAD={preload}"), "/bin/true"])));
    let _ = run(as_user(ALICE, "env").args([&format!("GCONV_PATH={gconv}"), "iconv", "-f", "IMGSWEVIL", "/dev/null"]));
    let seen = records(&drop_box);
    assert!(seen.iter().any(|r| r.starts_with(&format!("preload euid={alice} "))), "preload control: {seen:?}");
    assert!(seen.iter().any(|r| r.starts_with(&format!("gconv euid={alice} "))), "gconv control: {seen:?}");
    clear_records(&drop_box);

    // The attack: every loader/libc/locale variable at once, pointing at them,
    // plus the CVE-2023-4911 tunable string, into a successful run, a failing
    // command, an unknown name and --list.
    let tunables = format!("GLIBC_TUNABLES=glibc.malloc.mxfast=glibc.malloc.mxfast={}", "A".repeat(4000));
    let hostile: Vec<String> = vec![
        format!("LD_PRELOAD={preload}"),
        format!("LD_AUDIT={preload}"),
        format!("LD_LIBRARY_PATH={libs}", libs = libs.display()),
        "LD_DEBUG=all".into(),
        format!("GCONV_PATH={gconv}"),
        "CHARSET=IMGSWEVIL".into(),
        "LANG=IMGSWEVIL".into(),
        "LC_ALL=IMGSWEVIL".into(),
        format!("LOCPATH={gconv}"),
        format!("NLSPATH={gconv}/%N"),
        format!("TZ=:{gconv}/tz"),
        format!("TZDIR={gconv}"),
        "MALLOC_CHECK_=3".into(),
        "MALLOC_PERTURB_=85".into(),
        "RES_OPTIONS=debug".into(),
        "HOSTALIASES=/etc/shadow".into(),
        "RUST_BACKTRACE=full".into(),
        "RUST_LOG=trace".into(),
        "RUST_MIN_STACK=1".into(),
        tunables,
    ];
    let through = |program: &str, args: &[&str]| {
        let mut cmd = as_user(ALICE, "env");
        cmd.args(&hostile).arg(program).args(args);
        run(&mut cmd)
    };
    let with_env = |args: &[&str]| through(BIN, args);
    let inside =
        with_env(&["trixie", "sh", "-c", "env; iconv -f IMGSWEVIL -t UTF-8 </dev/null 2>/dev/null; echo iconv=$?"]);
    let text = assert_ok(&inside);
    for gone in ["LD_", "GCONV_PATH=", "GLIBC_TUNABLES=", "MALLOC_"] {
        assert!(!text.lines().any(|l| l.starts_with(gone)), "{gone} reached the child:\n{text}");
    }
    // What glibc strips from set-uid programs but only matters to a program
    // running as the caller is theirs again in the child (never used as root:
    // the recorders above saw no euid 0).
    for kept in ["LOCPATH=", "NLSPATH=", "TZDIR=", "RES_OPTIONS=debug", "HOSTALIASES=/etc/shadow"] {
        assert!(text.lines().any(|l| l.starts_with(kept)), "{kept} lost on the way to the child:\n{text}");
    }
    assert!(text.lines().any(|l| l == "LANG=IMGSWEVIL"), "ordinary variables pass through:\n{text}");
    assert!(text.contains("iconv=1"), "GCONV_PATH must not reach iconv inside:\n{text}");
    assert!(stderr(&inside).is_empty(), "LD_DEBUG or RUST_* output: {}", stderr(&inside));
    assert_clean_failure(&with_env(&["trixie", "no-such-command-row01"]), 127, "command not found");
    assert_clean_failure(&with_env(&["no-such-sysroot-row01"]), 125, "unknown sysroot name");
    let list = with_env(&["--list"]);
    assert!(assert_ok(&list).contains("trixie\t"), "{}", stdout(&list));
    // The alias and bin_dir forms filter the same way.
    for out in [through(&alias("imgsw-bb"), &["-c", "env"]), through(&format!("{BINBB}/env"), &[])] {
        let text = assert_ok(&out);
        assert!(!text.lines().any(|l| l.starts_with("LD_") || l.starts_with("GCONV_PATH=")), "{text}");
        assert!(text.lines().any(|l| l == "LANG=IMGSWEVIL"), "{text}");
    }
    let seen = records(&drop_box);
    assert!(seen.is_empty(), "code from the caller's environment ran (as the setuid process or inside): {seen:?}");

    // Control inside: set explicitly *inside* the tree, the same libraries
    // load there — as the user.
    let out = run(as_user(ALICE, BIN).args([
        "trixie",
        "env",
        &format!("LD_PRELOAD={preload}"),
        &format!("GCONV_PATH={gconv}"),
        "iconv",
        "-f",
        "IMGSWEVIL",
        "/dev/null",
    ]));
    let seen = records(&drop_box);
    assert!(seen.iter().any(|r| r.starts_with("preload ")), "inside control: {seen:?} {}", stderr(&out));
    assert!(seen.iter().any(|r| r.starts_with("gconv ")), "inside control: {seen:?} {}", stderr(&out));
    assert!(seen.iter().all(|r| r.contains(&format!(" euid={alice} "))), "{seen:?}");
}

// ---------------------------------------------------------------------------
// Row 2: argc == 0 and hostile argv[0].

#[test]
fn row02_empty_argv_and_hostile_argv0_only_key_into_the_config() {
    require_root!();
    fixture();
    let dir = root_dir("row02", 0o755);
    let execargv = compile(&dir, "execargv", "execargv", &[]).to_str().expect("utf8").to_string();
    let shell_input = "echo imgsw-row02-shell-ran; id -u\n";

    // argc == 0, through the binary, an alias link and a bin_dir link.
    for path in [BIN.to_string(), alias("imgsw-bb"), format!("{BINBB}/sh")] {
        let out = run_with_stdin(as_user(ALICE, &execargv).arg(&path), shell_input);
        assert_eq!(out.status.code(), Some(125), "{path}: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{path}: a shell ran: {}", stdout(&out));
        // Linux >= 5.18 turns an empty argv into {""}; older ones pass argc 0.
        let err = stderr(&out);
        assert!(
            err == "imageswitch: unknown sysroot name \"\" (see imageswitch --list)\n"
                || err.starts_with("imageswitch: refusing to run with an empty argument list"),
            "{path}: {err:?}"
        );
    }

    // argv[0] is a key, never a path: these all name nothing.
    let hostile: &[(&str, &str)] = &[
        ("../../etc/shadow", "unknown sysroot name \"shadow\""),
        ("/etc/shadow", "unknown sysroot name \"shadow\""),
        ("../../../../bin/sh", "unknown sysroot name \"sh\""),
        (&format!("{BINBB}/../../etc/shadow"), "unknown sysroot name \"shadow\""),
        (&format!("{BINBB}/.."), "unknown sysroot name"),
        (&format!("{BINBB}/../{}/sh", &BINBB[1..]), "unknown sysroot name \"sh\""),
        // bin_dir compared by component, not by string prefix.
        (&format!("{BINBB}x/sh"), "unknown sysroot name \"sh\""),
        (&format!("{}/sh", &BINBB[..BINBB.len() - 1]), "unknown sysroot name \"sh\""),
        ("imgsw-bb/../../../etc/passwd", "unknown sysroot name \"passwd\""),
        ("imgsw-bbx", "unknown sysroot name \"imgsw-bbx\""),
        ("", "unknown sysroot name \"\""),
        ("-", "unknown sysroot name \"-\""),
    ];
    for (argv0, needle) in hostile {
        let out = run_with_stdin(as_user(ALICE, &execargv).args([BIN, argv0, "bb"]), shell_input);
        assert_clean_failure(&out, 125, needle);
    }
    // The same through bash's `exec -a`.
    let out = run(as_user(ALICE, "bash").args(["-c", &format!("exec -a ../../etc/shadow {BIN} bb true")]));
    assert_clean_failure(&out, 125, "unknown sysroot name \"shadow\" (see imageswitch --list)");
    // Non-UTF-8 argv[0] through a bin_dir.
    let mut bad = format!("{BINBB}/").into_bytes();
    bad.push(0xff);
    let out = run(as_user(ALICE, &execargv).arg(BIN).arg(OsStr::from_bytes(&bad)).arg("-c").arg("id"));
    assert_clean_failure(&out, 125, "unknown sysroot name");
}

// ---------------------------------------------------------------------------
// Row 3: untrusted configuration or tree.

fn refused_in_namespace(setup: &str, needle: &str) {
    let r = in_namespace("private", setup, ALICE, &home_of(ALICE), &[BIN, "bb", "cat", "/etc/debian_version"]);
    assert_clean_failure(&r.out, 125, needle);
    assert_eq!(r.before, r.after, "mounts changed in the caller's namespace");
}

#[test]
fn row03_untrusted_config_or_tree_is_refused_and_mounts_nothing() {
    require_root!();
    fixture();
    let alice = uid(ALICE);
    let config = fs::read_to_string(TEST_CONFIG).expect("config");
    let dir = Removed(PathBuf::from(format!("{PREFIX}/scratch/row03-{}-{}", std::process::id(), unique())));
    fs::create_dir_all(&dir).expect("mkdir");
    let d = dir.display();
    let copy = |name: &str, mode: u32, owner: &str| {
        let path = dir.join(name);
        fs::write(&path, &config).expect("copy config");
        sh(&format!("chown {owner} {0} && chmod {mode:o} {0}", path.display()));
        path
    };

    // The configuration itself world- or group-writable, or the user's.
    let world = copy("world.toml", 0o646, "root");
    refused_in_namespace(
        &format!("mount --bind {} {TEST_CONFIG}", world.display()),
        &format!("{TEST_CONFIG}: refusing configuration: writable by group or others (mode 0646)"),
    );
    let group = copy("group.toml", 0o664, "root");
    refused_in_namespace(&format!("mount --bind {} {TEST_CONFIG}", group.display()), "(mode 0664)");
    let owned = copy("owned.toml", 0o644, ALICE);
    refused_in_namespace(
        &format!("mount --bind {} {TEST_CONFIG}", owned.display()),
        &format!("refusing configuration: owned by uid {alice}, not root"),
    );
    // Its directory group-writable.
    sh(&format!("mkdir {d}/gw && cp {TEST_CONFIG} {d}/gw/ && chmod 775 {d}/gw"));
    refused_in_namespace(
        &format!("mount --bind {d}/gw /etc/imageswitch-test"),
        "refusing configuration: /etc/imageswitch-test: writable by group or others (mode 0775)",
    );
    // A root-owned symlink in its place, pointing at the user's file.
    sh(&format!("mkdir {d}/ln && ln -s {} {d}/ln/sysroots.toml && chmod 755 {d}/ln", owned.display()));
    refused_in_namespace(&format!("mount --bind {d}/ln /etc/imageswitch-test"), &format!("owned by uid {alice}"));

    // The tree root writable by others; a directory above it the user's.
    let tree = Removed(scratch_tree("row03"));
    sh(&format!("chmod 757 {}", tree.display()));
    refused_in_namespace(
        &format!("mount --bind {} {BB_TREE}", tree.display()),
        &format!("bb: tree {BB_TREE}: writable by group or others (mode 0757)"),
    );
    sh(&format!(
        "chmod 755 {t} && mkdir {d}/trees && mv {t} {d}/trees/bb && chown {ALICE} {d}/trees",
        t = tree.display()
    ));
    refused_in_namespace(
        &format!("mount --bind {d}/trees {TREES}"),
        &format!("{TREES}: owned by uid {alice}, not root"),
    );

    // In the host namespace: a tree entry the user owns (TREE/etc, fixture
    // bb-userowned), and another configuration named by variable or flag.
    let before = host_mounts();
    let out = imageswitch_as(ALICE, &["bb-userowned", "cat", "/etc/debian_version"]);
    assert_clean_failure(
        &out,
        125,
        &format!("bb-userowned: tree {TREES}/bb-userowned/etc: owned by uid {alice}, not root"),
    );
    let evil_dir = Removed(user_tmpdir(ALICE, "row03-evil"));
    let evil = evil_dir.join("evil.toml");
    fs::write(&evil, "[sysroot.imgswevil]\npath = \"/\"\nbinds = [\"/etc\"]\nsetuid = true\n").expect("evil config");
    sh(&format!("chown {ALICE} {}", evil.display()));
    let evil = evil.display().to_string();
    for var in ["IMAGESWITCH_CONFIG", "IMAGESWITCH_CONFIG_PATH", "SYSROOTS_TOML", "SYSROOTS_CONFIG"] {
        let out = run(as_user(ALICE, "env").args([&format!("{var}={evil}"), BIN, "imgswevil", "id", "-u"]));
        assert_clean_failure(&out, 125, "unknown sysroot name \"imgswevil\"");
    }
    let with_equals = format!("--config={evil}");
    let flags: [&[&str]; 4] =
        [&["--config", evil.as_str()], &[with_equals.as_str()], &["-c", evil.as_str()], &["-f", evil.as_str()]];
    for flag in flags {
        let mut args: Vec<&str> = flag.to_vec();
        args.extend(["imgswevil", "id", "-u"]);
        let out = imageswitch_as(ALICE, &args);
        assert_clean_failure(&out, 125, "unknown option");
    }
    assert_eq!(host_mounts(), before);
}

// ---------------------------------------------------------------------------
// Row 4: the tree root behind a symlink the user controls.

#[test]
fn row04_tree_behind_a_user_controlled_symlink_is_refused() {
    require_root!();
    fixture();
    let alice = uid(ALICE);
    let before = host_mounts();
    // path = a symlink the user owns (fixture bb-userlink).
    let out = imageswitch_as(ALICE, &["bb-userlink", "cat", "/etc/debian_version"]);
    assert_clean_failure(&out, 125, &format!("bb-userlink: tree {TREES}/userlink: owned by uid {alice}, not root"));
    // path = a root-owned link into a directory the user owns (bb-linkout):
    // refused as it is, and after the user swaps the tree for a link to /etc.
    let area = format!("{PREFIX}/user-area");
    let out = imageswitch_as(ALICE, &["bb-linkout", "cat", "/etc/debian_version"]);
    assert_clean_failure(&out, 125, &format!("{area}: owned by uid {alice}, not root"));
    let swap = run(as_user(ALICE, "sh").args(["-ec", &format!("cd {area} && mv tree tree.real && ln -s /etc tree")]));
    assert!(swap.status.success(), "{}", stderr(&swap));
    let out = imageswitch_as(ALICE, &["bb-linkout", "cat", "/etc/debian_version"]);
    sh(&format!("cd {area} && if [ -L tree ]; then rm tree && mv tree.real tree; fi"));
    assert_clean_failure(&out, 125, &format!("owned by uid {alice}, not root"));
    assert_eq!(host_mounts(), before);
}

// ---------------------------------------------------------------------------
// Row 5: mounts leaking into the host.

#[test]
fn row05_mounts_never_leak_into_the_callers_namespace() {
    require_root!();
    fixture();
    let before = host_mounts();
    // 1000 runs over every kind of sysroot, refusals included.
    let script = format!(
        "i=0; while [ $i -lt 1000 ]; do i=$((i+1)); \
           case $((i % 50)) in \
             0) {BIN} bb-userowned true 2>/dev/null && exit 9 ;; \
             1|26) {BIN} deb11 true || exit 1 ;; \
             2|27) {BIN} trixie true || exit 2 ;; \
             3|28|13) {BIN} bb-homedirect true || exit 3 ;; \
             4|29) {BIN} bb-setuid true 2>/dev/null && exit 4 ;; \
             *) {BIN} bb true || exit 5 ;; \
           esac; done; exit 0"
    );
    let out = run(as_user(ALICE, "sh").args(["-c", &script]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(host_mounts(), before, "host mount table changed after 1000 runs");

    // During: a child inside sees its binds; the host does not.
    let ready_dir = Removed(user_tmpdir(ALICE, "row05"));
    let ready = ready_dir.join("ready");
    let mut child = as_user(ALICE, BIN)
        .args(["bb", "sh", "-c", &format!("touch {}; exec sleep 30", ready.display())])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(ready.exists(), "child did not start");
    let during = host_mounts();
    let inside = mountinfo::text_of(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(during, before, "host mount table changed while a child runs");
    assert!(
        mountinfo::parse(&inside).iter().any(|m| m.point == "/dev/log"),
        "the child's binds are visible to it:\n{inside}"
    );
    assert!(!inside.contains(" shared:"), "mounts inside must not be shared with any other namespace:\n{inside}");

    // And where the caller's mounts are *shared* (systemd hosts): a missing
    // MS_SLAVE would propagate every bind back into the caller's namespace.
    let ready_dir = Removed(user_tmpdir(ALICE, "row05-shared"));
    let ready = ready_dir.join("ready");
    let script = format!(
        "for i in $(seq 200); do {BIN} bb true || exit 1; done; \
         {BIN} bb sh -c 'touch {r}; exec sleep 30' & \
         for i in $(seq 1000); do [ -e {r} ] && break; sleep 0.01; done; [ -e {r} ] || exit 7; cat /proc/self/mountinfo; kill $!; wait",
        r = ready.display()
    );
    let r = in_namespace("shared", "true", ALICE, &home_of(ALICE), &["sh", "-c", &script]);
    assert_eq!(r.out.status.code(), Some(0), "{}", stderr(&r.out));
    assert!(r.before.contains(" shared:"), "the namespace under test must have shared mounts:\n{}", r.before);
    assert_eq!(r.before, r.after, "binds propagated back into a shared caller namespace");
    assert_eq!(mountinfo::without_pins(&stdout(&r.out)), r.before, "binds propagated back while a child was running");
}

// ---------------------------------------------------------------------------
// Row 6: symlinks on a bind destination.

#[test]
fn row06_home_destination_replaced_by_symlink_is_refused() {
    require_root!();
    fixture();
    // bb-sharedhome: TREE/home is 1777 and not bound, so the user can plant
    // TREE/home/USER herself before the home is bound there.
    let tree = format!("{TREES}/bb-sharedhome");
    let dest = format!("{tree}/home/{ALICE}");
    let marker = format!("imgsw-row06-marker-{}-{}", std::process::id(), unique());
    let host_marker = Removed(home_of(ALICE).join(&marker));
    fs::write(&host_marker, "home\n").expect("marker");
    sh(&format!("chown {ALICE} {}; rm -rf {dest}", host_marker.display()));
    let etc_before = run(Command::new("ls").args(["-la", &format!("{tree}/etc")]));
    let probe = format!("if [ -e /etc/{marker} ]; then echo LEAK; fi; cat /etc/debian_version");
    let before = host_mounts();

    for target in ["/etc", "../etc", "../../../../../etc", "/proc/self/root/etc"] {
        let plant = run(as_user(ALICE, "ln").args(["-sfn", target, &dest]));
        assert!(plant.status.success(), "{}", stderr(&plant));
        let out = imageswitch_as(ALICE, &["bb-sharedhome", "sh", "-c", &probe]);
        assert_clean_failure(&out, 125, &format!("bb-sharedhome: bind destination {dest}"));
        run(as_user(ALICE, "rm").args(["-f", &dest]));
    }

    // bb-homedirect with its user-owned TREE/home/USER replaced by a link to
    // /etc (a scratch copy bound over it in this test's namespace).
    let tree_copy = Removed(scratch_tree("row06"));
    sh(&format!("ln -s /etc {}/home/{ALICE}", tree_copy.display()));
    let r = in_namespace(
        "private",
        &format!("mount --bind {} {TREES}/bb-homedirect", tree_copy.display()),
        ALICE,
        &home_of(ALICE),
        &[BIN, "bb-homedirect", "sh", "-c", &probe],
    );
    assert_clean_failure(&r.out, 125, &format!("bb-homedirect: bind destination {TREES}/bb-homedirect/home/{ALICE}"));
    assert_eq!(r.before, r.after);

    // Racing: the user flips her destination between a directory and a link
    // to /etc while entering. Whatever wins, /etc inside is the tree's.
    let racer_script = format!(
        "while :; do mkdir {dest} 2>/dev/null; rmdir {dest} 2>/dev/null; ln -s /etc {dest} 2>/dev/null; rm -f {dest}; done"
    );
    let mut racer = as_user(ALICE, "sh").args(["-c", &racer_script]).stdin(Stdio::null()).spawn().expect("racer");
    let mut outcomes = [0usize; 2];
    for _ in 0..200 {
        let out = imageswitch_as(ALICE, &["bb-sharedhome", "sh", "-c", &probe]);
        let text = stdout(&out);
        assert!(!text.contains("LEAK"), "the home was bound over the tree's /etc: {text}");
        match out.status.code() {
            Some(0) => {
                assert_eq!(text, "busybox\n", "{}", stderr(&out));
                outcomes[0] += 1;
            }
            Some(125) => {
                assert!(text.is_empty());
                outcomes[1] += 1;
            }
            other => panic!("unexpected status {other:?}: {}", stderr(&out)),
        }
    }
    let _ = racer.kill();
    let _ = racer.wait();
    sh(&format!("rm -rf {dest}"));
    eprintln!("row06 race: {} entered, {} refused", outcomes[0], outcomes[1]);
    let etc_after = run(Command::new("ls").args(["-la", &format!("{tree}/etc")]));
    assert_eq!(stdout(&etc_before), stdout(&etc_after), "the tree's /etc changed");
    assert_eq!(host_mounts(), before);
}

// ---------------------------------------------------------------------------
// Row 7: bind sources chosen through the environment or checked as root.

#[test]
fn row07_bind_sources_come_from_passwd_and_are_checked_as_the_user() {
    require_root!();
    fixture();
    let home = home_of(ALICE).display().to_string();
    // HOME=/etc (and friends): only the passwd home is bound (bb-homedirect
    // has no /home bind, so the home bind is the only one from passwd).
    let out = run(as_user(ALICE, "env").args([
        "HOME=/etc",
        "USER=root",
        "LOGNAME=root",
        BIN,
        "bb-homedirect",
        "sh",
        "-c",
        "echo $HOME; cat /proc/self/mountinfo",
    ]));
    let text = assert_ok(&out);
    let (first, table) = text.split_once('\n').expect("two parts");
    assert_eq!(first, home);
    let mounts = mountinfo::parse(table);
    let home_mount =
        mounts.iter().find(|m| m.point == home).unwrap_or_else(|| panic!("passwd home not bound:\n{table}"));
    assert_eq!(home_mount.root, home, "the home bind's source is the passwd home");
    for m in &mounts {
        assert!(m.root != "/etc" && !m.root.starts_with("/etc/"), "/etc bound from the host: {}", m.line);
        // On /etc only the per-entry layer (imageswitch(8), PER-ENTRY VIEW).
        assert!(
            m.point != "/etc" || matches!(m.fs_type.as_str(), "overlay" | "tmpfs"),
            "something mounted on /etc: {}",
            m.line
        );
    }

    // A configured bind under a directory only root may enter: checked with
    // the user's identity, it is refused instead of shown.
    let denied = run(as_user(ALICE, "ls").arg(format!("{PREFIX}/private/visible")));
    assert!(!denied.status.success(), "control: the user cannot reach it on the host");
    let out = imageswitch_as(ALICE, &["bb-privbind", "cat", &format!("{PREFIX}/private/visible/secret")]);
    assert_clean_failure(&out, 125, &format!("bind source {PREFIX}/private/visible"));
    assert!(stderr(&out).contains("permission denied"), "{}", stderr(&out));

    // A directory only bob's group may enter: bob gets the bind, nobody else.
    let secret = format!("{PREFIX}/bob-private/visible/secret");
    assert_eq!(assert_ok(&imageswitch_as(BOB, &["bb-bobbind", "cat", &secret])), "bob-only\n");
    let out = imageswitch_as(ALICE, &["bb-bobbind", "cat", &secret]);
    assert_clean_failure(&out, 125, &format!("bind source {PREFIX}/bob-private/visible"));
    assert!(stderr(&out).contains("permission denied"), "{}", stderr(&out));
}

// ---------------------------------------------------------------------------
// Row 8: setuid files and device nodes.

#[test]
fn row08_setuid_files_and_device_nodes_on_binds_do_not_work() {
    require_root!();
    fixture();
    let alice = uid(ALICE);
    // A setuid-root euid printer in the tree (a scratch copy of bb, bound
    // over it in this test's namespace) and on a bind (/tmp). Not busybox:
    // it drops a setuid bit by itself for applets such as `id`.
    let dir = root_dir("row08", 0o750);
    sh(&format!("chgrp {} {}", gid(ALICE), dir.display()));
    let euid = compile(&dir, "euid", "euid", &["-static"]);
    fs::set_permissions(&euid, fs::Permissions::from_mode(0o4755)).expect("chmod 4755");
    let host = run(&mut as_user(ALICE, euid.to_str().expect("utf8")));
    assert_eq!(stdout(&host), "0\n", "control: the printer elevates where setuid is allowed");
    let tree = Removed(scratch_tree("row08-suid"));
    sh(&format!("cp -p {} {t}/bin/euid && chmod 4755 {t}/bin/euid", euid.display(), t = tree.display()));
    let e = euid.display();
    let r = in_namespace(
        "private",
        &format!("mount --bind {} {BB_TREE}", tree.display()),
        ALICE,
        &home_of(ALICE),
        &["sh", "-c", &format!("{BIN} bb /bin/euid; {BIN} bb {e}")],
    );
    assert_eq!(stdout(&r.out), format!("{alice}\n{alice}\n"), "tree, bind: {}", stderr(&r.out));

    // A device node (twin of /dev/zero) in the user's home and in /tmp,
    // owned by the user, mode 666: works on the host, EACCES inside.
    let node = Removed(home_of(ALICE).join(format!("imgsw-row08-zero-{}-{}", std::process::id(), unique())));
    let tmp_node = dir.join("zero");
    for n in [&*node, tmp_node.as_path()] {
        sh(&format!("mknod {0} c 1 5 && chown {ALICE} {0} && chmod 666 {0}", n.display()));
    }
    let read4 = |n: &Path| format!("busybox head -c 4 {} | busybox wc -c", n.display());
    let host = run(as_user(ALICE, "sh").args(["-c", &read4(&node)]));
    assert_eq!(stdout(&host).trim(), "4", "control: the node works on the host: {}", stderr(&host));
    for (sysroot, n) in [("bb", &*node), ("bb-homedirect", &*node), ("trixie", &*node), ("bb", tmp_node.as_path())] {
        let script = match sysroot {
            "trixie" => format!("head -c 4 {} | wc -c", n.display()),
            _ => read4(n),
        };
        let out = imageswitch_as(ALICE, &[sysroot, "/bin/sh", "-c", &script]);
        assert_eq!(stdout(&out).trim(), "0", "{sysroot}: device node on a bind readable inside: {}", stderr(&out));
        assert!(stderr(&out).contains("Permission denied"), "{sysroot}: {}", stderr(&out));
    }
}

#[test]
fn row08_device_node_in_the_tree_gives_eacces() {
    require_root!();
    fixture();
    let tree = Removed(scratch_tree("row08-tree"));
    sh(&format!("mknod {0}/root/zero c 1 5 && chmod 666 {0}/root/zero && chmod 755 {0}/root", tree.display()));
    let r = in_namespace(
        "private",
        &format!("mount --bind {} {BB_TREE}", tree.display()),
        ALICE,
        &home_of(ALICE),
        &[BIN, "bb", "sh", "-c", "busybox head -c 4 /root/zero | busybox wc -c"],
    );
    assert_eq!(stdout(&r.out).trim(), "0", "a device node in the tree is readable inside: {}", stderr(&r.out));
    assert!(stderr(&r.out).contains("Permission denied"), "{}", stderr(&r.out));
}

// ---------------------------------------------------------------------------
// Row 9: capabilities and ids left behind.

#[test]
fn row09_no_capability_or_id_is_left_behind() {
    require_root!();
    fixture();
    let dir = root_dir("row09", 0o755);
    let privs = compile(&dir, "privs", "privs", &["-static"]).display().to_string();
    let node_dir = Removed(user_tmpdir(ALICE, "row09"));
    let node = format!("{}/node", node_dir.display());
    for user in [ALICE, BOB] {
        let (u, g) = (uid(user), gid(user));
        for sysroot in ["bb", "trixie"] {
            let out = imageswitch_as(user, &[sysroot, "cat", "/proc/self/status"]);
            let status = assert_ok(&out);
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}:")))
                    .unwrap_or_else(|| panic!("{name} missing:\n{status}"))
                    .trim()
                    .to_string()
            };
            for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
                assert_eq!(field(cap), "0000000000000000", "{user} in {sysroot}: {cap}");
            }
            assert_eq!(field("NoNewPrivs"), "1", "{user} in {sysroot}");
            assert_eq!(field("Uid"), format!("{u}\t{u}\t{u}\t{u}"), "{user} in {sysroot}");
            assert_eq!(field("Gid"), format!("{g}\t{g}\t{g}\t{g}"), "{user} in {sysroot}");
            let groups: BTreeSet<u32> = field("Groups").split_whitespace().map(|x| x.parse().expect("gid")).collect();
            assert_eq!(groups, host_groups(user), "{user} in {sysroot}: Groups vs id -G");
        }
    }
    for sysroot in ["bb", "bb-homedirect"] {
        let out = imageswitch_as(ALICE, &[sysroot, &privs, &node]);
        let text = assert_ok(&out);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 11, "{text}");
        for line in lines {
            let (call, errno) = line.split_once(' ').expect("call errno");
            assert_eq!(errno, libc::EPERM.to_string(), "{sysroot}: {call} must fail with EPERM:\n{text}");
        }
        let out = imageswitch_as(ALICE, &[sysroot, "busybox", "chroot", ".", "/bin/true"]);
        assert_ne!(out.status.code(), Some(0), "{sysroot}: chroot inside worked");
        assert!(stderr(&out).contains("Operation not permitted"), "{sysroot}: {}", stderr(&out));
    }
}

// ---------------------------------------------------------------------------
// Row 10: NSS or any library from the tree loaded while root.

#[test]
fn row10_tree_nss_and_preload_modules_never_run_as_root() {
    require_root!();
    fixture();
    let alice = uid(ALICE);
    let drop_box = root_dir("row10-records", 0o1777);
    let libs = root_dir("row10-libs", 0o755);
    let nss = recorder_library(&libs, "libnss_imgswevil.so.2", "nss", &drop_box);
    let preload = recorder_library(&libs, "libimgswpreload.so", "preload", &drop_box);
    let scratch = Removed(PathBuf::from(format!("{PREFIX}/scratch/row10-{}-{}", std::process::id(), unique())));
    let s = scratch.display();
    // An overlay on the trixie tree, in this test's namespace only: its
    // nsswitch.conf names the evil module first, and ld.so.preload loads
    // the other into every dynamically linked program.
    let setup = format!(
        "mkdir -p {s}/upper {s}/work\n\
         mount -t overlay overlay -o lowerdir={TRIXIE},upperdir={s}/upper,workdir={s}/work {TRIXIE}\n\
         cp {nss} {TRIXIE}/usr/lib/x86_64-linux-gnu/\n\
         cp {preload} {TRIXIE}/usr/lib/x86_64-linux-gnu/\n\
         sed -i 's/^passwd:.*/passwd: imgswevil files/; s/^group:.*/group: imgswevil files/; s/^hosts:.*/hosts: imgswevil files/' {TRIXIE}/etc/nsswitch.conf\n\
         echo /usr/lib/x86_64-linux-gnu/libimgswpreload.so > {TRIXIE}/etc/ld.so.preload\n\
         chmod 644 {TRIXIE}/etc/ld.so.preload {TRIXIE}/etc/nsswitch.conf",
        nss = nss.display(),
        preload = preload.display()
    );
    let r = in_namespace(
        "private",
        &setup,
        ALICE,
        &home_of(ALICE),
        &[BIN, "trixie", "sh", "-c", &format!("id; getent passwd {ALICE}; getent group {PHYSICS}; ls ~ >/dev/null")],
    );
    let text = assert_ok(&r.out);
    assert!(text.starts_with(&format!("uid={alice}")), "{text}");
    let seen = records(&drop_box);
    assert!(seen.iter().any(|r| r.starts_with("nss ")), "control: the tree's NSS module was loaded inside: {seen:?}");
    assert!(seen.iter().any(|r| r.starts_with("preload ")), "control: ld.so.preload took effect inside: {seen:?}");
    for record in &seen {
        assert!(
            record.contains(&format!(" euid={alice} ruid={alice} ")),
            "tree code ran with another identity: {record}"
        );
    }
}

// ---------------------------------------------------------------------------
// Row 11: cwd tricks.

#[test]
fn row11_cwd_tricks_land_inside_the_tree_as_the_user() {
    require_root!();
    fixture();
    let home = home_of(ALICE).display().to_string();
    // A directory only on the host: warning, home, and `..` from there stays
    // in the tree; `/` inside is the tree's root.
    let hostonly = format!("{PREFIX}/row11-hostonly-{}-{}", std::process::id(), unique());
    sh(&format!("mkdir -p {hostonly} && chmod 755 {hostonly}"));
    let _hostonly = Removed(PathBuf::from(&hostonly));
    let out = run(as_user(ALICE, BIN)
        .args(["bb", "sh", "-c", "pwd; cd ../../../../../..; cat etc/debian_version; busybox stat -c '%d %i' /"])
        .current_dir(&hostonly));
    let text = assert_ok(&out);
    let root = fs::metadata(BB_TREE).expect("tree");
    assert_eq!(text, format!("{home}\nbusybox\n{} {}\n", root.dev(), root.ino()));
    assert_eq!(stderr(&out), format!("imageswitch: warning: {hostonly} does not exist in bb; starting in {home}\n"));

    // ~/lnk -> /etc as cwd: resolved inside, so the cwd is the tree's /etc.
    let link = Removed(home_of(ALICE).join(format!("imgsw-row11-lnk-{}-{}", std::process::id(), unique())));
    let made = run(as_user(ALICE, "ln").args(["-s", "/etc"]).arg(&*link));
    assert!(made.status.success(), "{}", stderr(&made));
    let out = run(as_user(ALICE, "sh").args([
        "-c",
        &format!("cd {} && exec {BIN} bb sh -c 'cat debian_version; busybox stat -c \"%d %i\" . /etc'", link.display()),
    ]));
    // The tree's /etc, as shown inside (under the per-entry overlay).
    let text = assert_ok(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!((lines[0], lines[1]), ("busybox", lines[2]), "{text}");
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));

    // ~/dangling -> the host-only directory: the warning names the link and
    // the first part of where it leads that the tree lacks, not the link.
    let dangling = Removed(home_of(ALICE).join(format!("imgsw-row11-dangling-{}-{}", std::process::id(), unique())));
    let made = run(as_user(ALICE, "ln").args(["-s", &hostonly]).arg(&*dangling));
    assert!(made.status.success(), "{}", stderr(&made));
    let lacking = Path::new(&hostonly)
        .ancestors()
        .filter(|p| !Path::new(BB_TREE).join(p.strip_prefix("/").expect("absolute")).exists())
        .last()
        .expect("a missing part");
    let out = run(as_user(ALICE, "sh").args(["-c", &format!("cd {} && exec {BIN} bb true", dangling.display())]));
    assert_ok(&out);
    assert_eq!(
        stderr(&out),
        format!(
            "imageswitch: warning: {} leads to {}, which does not exist in bb; starting in {home}\n",
            dangling.display(),
            lacking.display()
        )
    );

    // A directory that exists in the tree but only root may enter there: the
    // chdir is the user's, so it fails, with a warning, into the home.
    let path = format!("{PREFIX}/row11-rootonly-{}-{}", std::process::id(), unique());
    sh(&format!("mkdir -p {path} && chmod 755 {path}"));
    let _path = Removed(PathBuf::from(&path));
    let tree = Removed(scratch_tree("row11"));
    sh(&format!("mkdir -p {t}{path} && chmod 700 {t}{path} && touch {t}{path}/root-only", t = tree.display()));
    let r = in_namespace(
        "private",
        &format!("mount --bind {} {BB_TREE}", tree.display()),
        ALICE,
        Path::new(&path),
        &[BIN, "bb", "sh", "-c", "pwd; ls"],
    );
    assert_eq!(r.out.status.code(), Some(0), "{}", stderr(&r.out));
    assert!(!stdout(&r.out).contains("root-only"), "listed a root-only directory: {}", stdout(&r.out));
    assert!(stdout(&r.out).starts_with(&format!("{home}\n")), "{}", stdout(&r.out));
    assert_eq!(
        stderr(&r.out),
        format!("imageswitch: warning: cannot enter {path} in bb (permission denied); starting in {home}\n")
    );
}

/// The tree is read-only in every view, so no user plants anything in it
/// through imageswitch; a tree made with another user's files in it (its
/// /run/lock here, as a tree unpacked or written by hand may have) is
/// another matter. A directory reached through another user's directory or
/// link is theirs to choose, so it is never where someone else's command
/// starts — unless it is the very directory the caller was in on the host.
#[test]
fn row11_a_directory_another_user_planted_in_the_tree_is_never_the_start() {
    require_root!();
    fixture();
    let home = home_of(ALICE).display().to_string();
    let tree = Removed(scratch_tree("row11-planted"));
    sh(&format!("mkdir -p {0}/run/lock && chmod 1777 {0}/run/lock", tree.display()));
    // The same paths on the host, alice's own (/run/lock is not bound).
    let tag = format!("imgsw-row11-{}-{}", std::process::id(), unique());
    let (job, link) = (format!("/run/lock/{tag}-job"), format!("/run/lock/{tag}-link"));
    let _host = (Removed(PathBuf::from(&job)), Removed(PathBuf::from(&link)));
    for dir in [&job, &link] {
        let made = run(as_user(ALICE, "mkdir").arg(dir));
        assert!(made.status.success(), "{}", stderr(&made));
    }
    // Bob plants, through imageswitch itself, a directory with a program
    // and a link to one of the tree's root-owned directories.
    let plant = root_dir("row11-plant", 0o755);
    let script = plant.join("plant.sh");
    fs::write(
        &script,
        format!(
            "mkdir {job} && printf '#!/bin/sh\\necho planted by bob\\n' > {job}/run && chmod 755 {job}/run\n\
             ln -s /bin {link}\n"
        ),
    )
    .expect("plant script");
    let setup = format!("mount --bind {} {BB_TREE}", tree.display());
    let planted = in_namespace("private", &setup, BOB, Path::new("/"), &[BIN, "bb", "sh", &script.to_string_lossy()]);
    assert_ne!(planted.out.status.code(), Some(0), "bob planted through imageswitch: {}", stderr(&planted.out));
    assert!(stderr(&planted.out).contains("Read-only file system"), "{}", stderr(&planted.out));
    assert!(!tree.join(job.trim_start_matches('/')).exists(), "bob's directory is in the tree");
    // Planted in the tree itself, with bob's ownership.
    sh(&format!(
        "cd {t} && mkdir .{job} && printf '#!/bin/sh\\necho planted by bob\\n' > .{job}/run && chmod 755 .{job}/run \
         && ln -s /bin .{link} && chown -h {BOB}: .{job} .{job}/run .{link}",
        t = tree.display()
    ));
    // (case, alice's directory, her arguments, status, stdout, stderr)
    let refused = |dir: &str| format!("{dir} in bb is not the directory you are in, and another user owns {dir} there");
    let cases = [
        (
            "bob's directory, --require-cwd",
            &job,
            &["--require-cwd", "bb", "./run"][..],
            125,
            String::new(),
            format!("imageswitch: bb: {}; not starting anywhere else (require_cwd)\n", refused(&job)),
        ),
        (
            "bob's directory",
            &job,
            &["bb", "sh", "-c", "pwd"],
            0,
            format!("{home}\n"),
            format!("imageswitch: warning: {}; starting in {home}\n", refused(&job)),
        ),
        (
            "bob's link to the tree's /bin",
            &link,
            &["bb", "sh", "-c", "pwd"],
            0,
            format!("{home}\n"),
            format!("imageswitch: warning: {}; starting in {home}\n", refused(&link)),
        ),
    ];
    for (case, dir, args, code, out, err) in cases {
        let argv: Vec<&str> = std::iter::once(BIN).chain(args.iter().copied()).collect();
        let r = in_namespace("private", &setup, ALICE, Path::new(dir), &argv);
        assert_eq!((r.out.status.code(), stdout(&r.out), stderr(&r.out)), (Some(code), out, err), "{case}");
    }

    // The directory alice was in, bound from the host, is hers to start in
    // even under a directory of bob's.
    let bobs = Removed(PathBuf::from(format!("/tmp/{tag}-bob")));
    let made = run(as_user(BOB, "sh").args(["-c", &format!("mkdir -m 777 {}", bobs.display())]));
    assert!(made.status.success(), "{}", stderr(&made));
    let sub = bobs.join("alice");
    let made = run(as_user(ALICE, "mkdir").arg(&sub));
    assert!(made.status.success(), "{}", stderr(&made));
    let out = run(as_user(ALICE, BIN).args(["--require-cwd", "bb", "sh", "-c", "pwd"]).current_dir(&sub));
    assert_eq!(assert_ok(&out), format!("{}\n", sub.display()));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

// ---------------------------------------------------------------------------
// Row 12: descriptors leaking host objects.

#[test]
fn row12_child_holds_only_the_callers_descriptors() {
    require_root!();
    fixture();
    for sysroot in ["bb", "trixie", "bb-homedirect"] {
        let script = format!(
            "exec 5</etc/hostname 9>/dev/null; ls /proc/$$/fd; echo ---; {BIN} {sysroot} sh -c 'ls -l /proc/$$/fd'"
        );
        let out = run(as_user(ALICE, "sh").args(["-c", &script]));
        let text = assert_ok(&out);
        let (outer, inner) = text.split_once("---\n").expect("two listings");
        let outer: BTreeSet<u32> = outer.split_whitespace().map(|f| f.parse().expect("fd")).collect();
        let inner_fds: BTreeSet<u32> = inner
            .lines()
            .filter(|l| l.contains(" -> "))
            .filter_map(|l| l.split(" -> ").next()?.split_whitespace().last()?.parse().ok())
            .collect();
        assert!(outer.contains(&5) && outer.contains(&9), "{text}");
        assert_eq!(inner_fds, outer, "{sysroot}: descriptors inside differ from the caller's:\n{inner}");
        for leak in ["sysroots.toml", "socket:", "/trees/", "anon_inode", "mountinfo", "log.sock"] {
            assert!(!inner.contains(leak), "{sysroot}: {leak} leaked:\n{inner}");
        }
    }
}

// ---------------------------------------------------------------------------
// Row 13: closed standard streams.

#[test]
fn row13_closed_stdio_lands_nothing_on_fds_0_to_2() {
    require_root!();
    fixture();
    let snapshot = || {
        let config = fs::metadata(TEST_CONFIG).expect("config");
        let listing = run(Command::new("ls").args(["-laR", "--time-style=full-iso", BB_TREE]));
        let times = (config.mtime(), config.mtime_nsec(), config.ctime(), config.ctime_nsec());
        (fs::read(TEST_CONFIG).expect("config"), config.ino(), times, stdout(&listing))
    };
    let before = snapshot();
    let dir = Removed(user_tmpdir(ALICE, "row13"));
    let fds = dir.join("fds");
    let script = format!(
        "{BIN} bb sh -c 'ls -l /proc/$$/fd > {f}; id -u >> {f}' 0<&- 1>&- 2>&-; echo ok=$?; \
         {BIN} no-such-sysroot-row13 0<&- 1>&- 2>&-; echo unknown=$?; \
         {BIN} bb-userowned true 0<&- 1>&- 2>&-; echo refused=$?",
        f = fds.display()
    );
    let out = run(as_user(ALICE, "sh").args(["-c", &script]));
    assert_eq!(stdout(&out), "ok=0\nunknown=125\nrefused=125\n", "{}", stderr(&out));
    let listing = fs::read_to_string(&fds).expect("child wrote its fds");
    // fd 1 is the redirection to the file; 0 and 2 must be the harmless
    // placeholders imageswitch(8) promises (glibc's secure-mode start-up:
    // /dev/full write-only on 0, /dev/null read-only on 1 and 2), never
    // something imageswitch opened.
    for (fd, mode, placeholder) in [(0, "l-wx", "/dev/full"), (2, "lr-x", "/dev/null")] {
        let line = listing
            .lines()
            .find(|l| l.contains(&format!(" {fd} -> ")))
            .unwrap_or_else(|| panic!("fd {fd} not open in the child:\n{listing}"));
        assert!(line.starts_with(mode) && line.ends_with(&format!("-> {placeholder}")), "fd {fd}: {line}");
    }
    for leak in ["sysroots.toml", "socket:", "/trees/", "anon_inode", "log.sock"] {
        assert!(!listing.contains(leak), "{leak} on a descriptor of the child:\n{listing}");
    }
    assert!(listing.ends_with(&format!("\n{}\n", uid(ALICE))), "{listing}");
    assert!(before == snapshot(), "configuration or tree changed");
}

// ---------------------------------------------------------------------------
// Row 15: core dumps of the privileged process.

/// Restores a /proc/sys value when dropped.
struct Sysctl {
    path: &'static str,
    old: String,
}

impl Sysctl {
    fn set(path: &'static str, value: &str) -> Sysctl {
        let old = fs::read_to_string(path).expect("read sysctl");
        fs::write(path, value).expect("write sysctl");
        Sysctl { path, old }
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = fs::write(self.path, self.old.trim_end());
    }
}

/// Runs the SIGQUIT storm as the user with `suid_dumpable=2` and
/// `core_pattern` set to `pattern` (both restored afterwards); `extra` are
/// more arguments for `imageswitch bb true`. Returns (pid, phase) per run.
fn sigquit_storm(pattern: &str, runs: usize, extra: &[String]) -> Vec<(String, char)> {
    let tools = root_dir("row15-storm", 0o755);
    let storm = compile(&tools, "storm", "storm", &[]).display().to_string();
    let mut cmd = as_user(ALICE, &storm);
    cmd.args([runs.to_string(), uid(ALICE).to_string(), BIN.to_string(), "bb".into(), "true".into()]).args(extra);
    let out = {
        let _dumpable = Sysctl::set("/proc/sys/fs/suid_dumpable", "2");
        let _pattern = Sysctl::set("/proc/sys/kernel/core_pattern", pattern);
        run(&mut cmd)
    };
    drop(tools);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .filter_map(|l| l.strip_prefix("run "))
        .map(|l| {
            let (pid, phase) = l.split_once(' ').expect("pid phase");
            (pid.to_string(), phase.chars().next().expect("phase"))
        })
        .collect()
}

fn hits(runs: &[(String, char)]) -> (usize, usize) {
    (runs.iter().filter(|r| r.1 == 'A').count(), runs.iter().filter(|r| r.1 == 'B').count())
}

#[test]
fn row15_no_root_owned_core_file_under_a_sigquit_storm() {
    require_root!();
    fixture();
    let _host = HOST_SETTINGS.lock().unwrap_or_else(|p| p.into_inner());
    // A file pattern where the caller can see it (/tmp is bound inside). A
    // huge argv widens the last privileged stretch (the caller's core limit
    // is back, exec not yet done).
    let cores = root_dir("row15-cores", 0o1777);
    let many: Vec<String> = std::iter::repeat_n("x".to_string(), 60_000).collect();
    let runs = sigquit_storm(&format!("{}/core.%d.%P.%u.%e", cores.display()), 150, &many);
    let (a, b) = hits(&runs);
    eprintln!("row15 file: {a} runs hit in phase A, {b} in phase B, of {}", runs.len());
    assert!(a + b >= 10, "the storm could not aim at the privileged phase: the test proves nothing");
    let root_cores: Vec<String> = fs::read_dir(&cores)
        .expect("cores")
        .filter_map(|e| {
            let e = e.expect("entry");
            (e.metadata().ok()?.uid() == 0).then(|| e.file_name().to_string_lossy().into_owned())
        })
        .collect();
    let phase_of = |core: &str| {
        let pid = core.split('.').nth(2).unwrap_or("");
        runs.iter().find(|r| r.0 == pid).map_or('?', |r| r.1)
    };
    let (in_a, in_b) = (
        root_cores.iter().filter(|c| phase_of(c) == 'A').count(),
        root_cores.iter().filter(|c| phase_of(c) == 'B').count(),
    );
    assert!(
        root_cores.is_empty(),
        "{} root-owned core files ({in_a} from phase A, {in_b} from phase B): {root_cores:?}",
        root_cores.len()
    );
}

#[test]
fn row15_no_privileged_dump_to_a_core_pipe_under_a_sigquit_storm() {
    require_root!();
    fixture();
    let _host = HOST_SETTINGS.lock().unwrap_or_else(|p| p.into_inner());
    // A pipe handler, as systemd-coredump installs together with
    // suid_dumpable=2: the kernel ignores RLIMIT_CORE for pipes, so only
    // "not dumpable" protects the privileged process. The handler records the
    // dump mode (%d; 2 = a privileged dump, stored as root's) of every dump.
    let dumps = root_dir("row15-dumps", 0o755);
    let handler = dumps.join("handler");
    fs::write(&handler, format!("#!/bin/sh\nprintf '%s\\n' \"$*\" > {}/dump-$2\ncat >/dev/null\n", dumps.display()))
        .expect("handler");
    fs::set_permissions(&handler, fs::Permissions::from_mode(0o755)).expect("chmod handler");
    let runs = sigquit_storm(&format!("|{} %d %P %u %e", handler.display()), 300, &[]);
    std::thread::sleep(Duration::from_millis(500));
    let (a, b) = hits(&runs);
    eprintln!("row15 pipe: {a} runs hit in phase A, {b} in phase B, of {}", runs.len());
    assert!(a + b >= 10, "the storm could not aim at the privileged phase: the test proves nothing");
    let mut privileged = Vec::new();
    for (pid, phase) in &runs {
        let Ok(record) = fs::read_to_string(dumps.join(format!("dump-{pid}"))) else { continue };
        if !record.starts_with("1 ") {
            privileged.push(format!("phase {phase}: {}", record.trim_end()));
        }
    }
    assert!(privileged.is_empty(), "{} privileged dumps (mode pid uid comm): {privileged:?}", privileged.len());
}

// ---------------------------------------------------------------------------
// Row 17: personality.

#[test]
fn row17_personality_domain_is_the_configured_one_and_setuid_cleared_flags_stay_cleared() {
    require_root!();
    fixture();
    // READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE, ADDR_COMPAT_LAYOUT, MMAP_PAGE_ZERO:
    // what the kernel clears at a set-uid exec. Flags it lets through are the
    // caller's to keep (tests/carryover.rs).
    const PER_CLEAR_ON_SETID: u32 = 0x0040_0000 | 0x0004_0000 | 0x0020_0000 | 0x0010_0000;
    let flags = ["-R", "-L", "-B", "-F", "-Z", "-X", "-3", "-S", "-T", "-I", "--uname-2.6"];
    // Control: setarch does set them for an ordinary program.
    let control = run(as_user(ALICE, "setarch").arg("i686").args(flags).args(["cat", "/proc/self/personality"]));
    let set = u32::from_str_radix(assert_ok(&control).trim(), 16).expect("hex");
    assert_ne!(set & PER_CLEAR_ON_SETID, 0, "control: setarch sets flags");
    for (arch, sysroot, domain, machine) in [
        ("x86_64", "bb", 0, "x86_64"),
        ("i686", "bb", 0, "x86_64"),
        ("x86_64", "deb11", 8, "i686"),
        ("i686", "trixie", 0, "x86_64"),
    ] {
        let out = run(as_user(ALICE, "setarch").arg(arch).args(flags).args([
            BIN,
            sysroot,
            "sh",
            "-c",
            "cat /proc/self/personality; uname -m",
        ]));
        let text = assert_ok(&out);
        let lines: Vec<&str> = text.lines().collect();
        let child = u32::from_str_radix(lines[0], 16).expect("hex");
        assert_eq!((child & 0xff, lines[1]), (domain, machine), "{arch} -> {sysroot}: {text}");
        assert_eq!(child & PER_CLEAR_ON_SETID, 0, "{arch} -> {sysroot}: a cleared flag came back: {text}");
    }
}

// ---------------------------------------------------------------------------
// Row 18: /dev/log without a root daemon.

#[test]
fn row18_syslog_reaches_the_host_with_no_root_process_left() {
    require_root!();
    fixture();
    let alice = uid(ALICE);
    let log = PrivateLog::new("row18");
    let marker = format!("imgsw-row18-{}-{}", std::process::id(), unique());
    // Its own process group, in its own namespace with its own log socket:
    // every process of the run is findable afterwards by group.
    let child = Command::new("unshare")
        .args(["--mount", "--propagation=private", "--", "sh", "-ec"])
        .arg(format!(
            "{}; exec setpriv --reuid={ALICE} --regid={ALICE} --init-groups -- {BIN} bb sh -c 'logger -t row18 {marker}; cat /proc/self/mountinfo; sleep 3'",
            log.setup()
        ))
        .current_dir(home_of(ALICE))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn");
    let pgid = child.id();
    // The audit record names the marker too (in the command): wait for
    // logger's own record, sent from inside.
    let line = log.wait_for(&marker, false).expect("logger inside reached the host socket");
    assert!(line.contains("row18"), "{line}");
    let members = procs::group_members(pgid);
    assert!(!members.is_empty());
    for pid in &members {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if status.is_empty() {
            continue;
        }
        let uids = status.lines().find_map(|l| l.strip_prefix("Uid:")).expect("Uid").trim().to_string();
        assert_eq!(uids, format!("{alice}\t{alice}\t{alice}\t{alice}"), "pid {pid} is not the user's:\n{status}");
        assert!(!status.starts_with("Name:\timageswitch"), "imageswitch is still around as pid {pid}");
    }
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(procs::group_members(pgid), Vec::<u32>::new(), "processes left behind");

    let table = stdout(&out);
    let mounts = mountinfo::parse(&table);
    let bind = mounts.iter().find(|m| m.point == "/dev/log").expect("/dev/log bound");
    let opts = &bind.options;
    assert!(opts.contains("nosuid") && opts.contains("nodev") && opts.contains("noexec"), "{}", bind.line);
}

// ---------------------------------------------------------------------------
// Row 19: no user switch.

#[test]
fn row19_no_option_switches_user() {
    require_root!();
    fixture();
    let alice = uid(ALICE);
    for opts in [
        &["-u", "root"][..],
        &["-uroot"],
        &["-u", "0"],
        &["--user", "root"],
        &["--user=root"],
        &["--uid=0"],
        &["-U", "root"],
        &["-g", "root"],
        &["--group=root"],
        &["-s"],
        &["-i"],
    ] {
        let mut args: Vec<&str> = opts.to_vec();
        args.extend(["bb", "id", "-u"]);
        assert_clean_failure(&imageswitch_as(ALICE, &args), 125, "unknown option");
    }
    // After NAME, or through an alias or bin_dir link, options belong to the
    // command; and identity variables change nothing.
    let attempts: Vec<Output> = vec![
        imageswitch_as(ALICE, &["bb", "-u", "root", "id", "-u"]),
        run(as_user(ALICE, &alias("imgsw-bb")).args(["-u", "root", "-c", "id -u"])),
        run(as_user(ALICE, &format!("{BINBB}/id")).args(["-u"])),
        run(as_user(ALICE, "env").args([
            "USER=root",
            "LOGNAME=root",
            "SUDO_UID=0",
            "IMAGESWITCH_USER=root",
            BIN,
            "bb",
            "id",
            "-u",
        ])),
    ];
    for out in attempts {
        assert!(!stdout(&out).lines().any(|l| l.trim() == "0"), "ran as root: {} {}", stdout(&out), stderr(&out));
    }
    let out = run(as_user(ALICE, "env").args(["USER=root", BIN, "bb", "sh", "-c", "id -u; echo $USER"]));
    assert_eq!(assert_ok(&out), format!("{alice}\n{ALICE}\n"));
}

// ---------------------------------------------------------------------------
// Row 20: nested and no_new_privs callers.

#[test]
fn row20_no_new_privs_caller_gets_a_clean_error_and_nesting_works() {
    require_root!();
    fixture();
    let alice = uid(ALICE);
    for args in [vec![BIN, "bb", "id", "-u"], vec![BIN, "deb11", "id", "-u"]] {
        let out = run(as_user(ALICE, "setpriv").arg("--no-new-privs").args(&args));
        assert_clean_failure(&out, 125, "no_new_privs is set for this process");
    }
    let out = run(as_user(ALICE, "setpriv").args(["--no-new-privs", &alias("imgsw-bb"), "-c", "id -u"]));
    assert_clean_failure(&out, 125, "no_new_privs");
    // Nested: a bin_dir link used from inside its own sysroot.
    let out = imageswitch_as(ALICE, &["bb", "sh", "-c", &format!("{BINBB}/sh -c 'id -u; echo $IMAGESWITCH_SYSROOT'")]);
    assert_eq!(assert_ok(&out), format!("{alice}\nbb\n"));
    let out = run(as_user(ALICE, &alias("imgsw-deb11")).args(["-c", &format!("{BIN11}/sh -c true && {BIN11}/id -u")]));
    assert_eq!(assert_ok(&out), format!("{alice}\n"));
}

// ---------------------------------------------------------------------------
// Row 21: names and sizes.

#[test]
fn row21_odd_names_give_clean_errors() {
    require_root!();
    fixture();
    // Sizes: imageswitch has no limit of its own, the kernel's apply
    // (tests/carryover.rs, size_limits_are_no_stricter_than_the_kernels).

    // Odd names: paths, format strings, separators, non-UTF-8, a huge one.
    let token = format!("imgswrow21{}x{}", std::process::id(), unique());
    let long = "a".repeat(10_000);
    let names: Vec<Vec<u8>> = vec![
        b"../../etc".to_vec(),
        b"bb/../bb".to_vec(),
        b"bb/".to_vec(),
        b"/etc/shadow".to_vec(),
        b".".to_vec(),
        b"..".to_vec(),
        b"bb;id".to_vec(),
        b"bb id".to_vec(),
        b"%s%s%s%n".to_vec(),
        vec![0xff, 0xfe],
        long.as_bytes().to_vec(),
        format!("{token}/../../{token}").into_bytes(),
    ];
    for name in &names {
        let out = run(as_user(ALICE, BIN).arg(OsStr::from_bytes(name)).args(["id", "-u"]));
        assert_clean_failure(&out, 125, "unknown sysroot name");
    }
    // Log injection through the command line is escaped in the audit record.
    let log = PrivateLog::new("row21");
    let forged = format!("x\n<0>imageswitch[1]: {token} forged");
    let r = in_namespace("private", &log.setup(), ALICE, &home_of(ALICE), &[BIN, "bb", "true", &forged]);
    assert_ok(&r.out);
    let record = log.wait_for(&format!("{token} forged"), true).expect("audit record");
    assert!(!record.contains('\n') && record.starts_with("<86>imageswitch["), "{record:?}");
    assert!(record.contains("x\\n<0>"), "{record:?}");
    // Nothing named after the input was created anywhere a file could go.
    let found = run(Command::new("find")
        .args(["/tmp", "/var/tmp", "/run", "/dev/shm", PREFIX, "/etc", "-xdev", "-name"])
        .arg(format!("*{token}*")));
    assert_eq!(stdout(&found), "", "files named after user input");
}

#[test]
fn row21_names_with_control_bytes_give_one_clean_line() {
    require_root!();
    fixture();
    // A newline would forge a second diagnostic line, an escape sequence
    // would drive the terminal (or a batch log viewer) that shows the error.
    for name in ["bb\n", "bb\nimageswitch: forged line", "\x1b[2J\x1b[31mred", "bb\r", "\x07bell"] {
        for (args, needle) in [([name, "id"], "unknown sysroot name"), ([&format!("-{name}"), "bb"], "unknown option")]
        {
            let out = imageswitch_as(ALICE, &args);
            assert_clean_failure(&out, 125, needle);
            let err = stderr(&out);
            let line = err.strip_suffix('\n').unwrap_or(&err);
            assert!(!line.chars().any(char::is_control), "control bytes echoed: {err:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// Row 23: `setuid = true` — euid 0 without capabilities is still root to
// every owner check on the host.

#[test]
fn row23_setuid_programs_in_a_tree_never_elevate_whatever_the_config() {
    require_root!();
    fixture();
    let alice = uid(ALICE);
    let dir = root_dir("row23", 0o755);
    let euid = compile(&dir, "euid", "euid", &["-static"]);
    fs::set_permissions(&euid, fs::Permissions::from_mode(0o4755)).expect("chmod 4755");
    let host = run(&mut as_user(ALICE, euid.to_str().expect("utf8")));
    assert_eq!(stdout(&host), "0\n", "control: the probe elevates where setuid is allowed");
    let tree = Removed(scratch_tree("row23"));
    sh(&format!("cp -p {} {t}/bin/euid && chmod 4755 {t}/bin/euid", euid.display(), t = tree.display()));

    // The fixture's bb-setuid asks for `setuid = true` over the same tree.
    let config = fs::read_to_string(TEST_CONFIG).expect("config");
    let line = config.lines().position(|l| l == "setuid = true").expect("bb-setuid's setuid line") + 1;
    let r = in_namespace(
        "private",
        &format!("mount --bind {} {BB_TREE}", tree.display()),
        ALICE,
        &home_of(ALICE),
        &[
            "sh",
            "-c",
            &format!("{BIN} bb /bin/euid; {BIN} bb-setuid /bin/euid; echo status=$?; {BIN} bb-alice /bin/euid"),
        ],
    );
    assert_eq!(stdout(&r.out), format!("{alice}\nstatus=125\n{alice}\n"), "{}", stderr(&r.out));
    assert_eq!(
        stderr(&r.out),
        format!(
            "imageswitch: {TEST_CONFIG}:{line}:1: \"setuid = true\" is no longer supported: setuid programs in a \
             sysroot never elevate (euid 0 without capabilities still passes root's owner checks on the host); \
             remove this line\n"
        )
    );
    assert_eq!(r.before, r.after);
}

// ---------------------------------------------------------------------------
// Row 24: caller paths resolved as root — an existence oracle.

/// The warning alice gets entering bb from `cwd` with `PWD=pwd`.
fn cwd_warning(cwd: &Path, pwd: &str) -> String {
    let out = run(as_user(ALICE, "env").arg(format!("PWD={pwd}")).args([BIN, "bb", "true"]).current_dir(cwd));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    stderr(&out)
}

#[test]
fn row24_caller_paths_are_resolved_with_the_callers_identity_only() {
    require_root!();
    fixture();
    let home = home_of(ALICE).display().to_string();
    // A directory only on the host: entering from it warns, naming it.
    let hostonly = Removed(PathBuf::from(format!("{PREFIX}/row24-hostonly-{}-{}", std::process::id(), unique())));
    sh(&format!("mkdir -p {0} && chmod 755 {0}", hostonly.display()));
    let plain = format!("imageswitch: warning: {} does not exist in bb; starting in {home}\n", hostonly.display());
    let rel = hostonly.strip_prefix("/").expect("absolute").display().to_string();

    // /root/NAME/../../<hostonly> names the cwd only when /root/NAME exists:
    // alice may not look into /root, so she must not learn which.
    let probe = format!("/root/imgsw-row24-{}-{}", std::process::id(), unique());
    let pwd = format!("{probe}/../../{rel}");
    sh(&format!("mkdir -p {probe}"));
    let _probe = Removed(PathBuf::from(&probe));
    let present = cwd_warning(&hostonly, &pwd);
    sh(&format!("rmdir {probe}"));
    let absent = cwd_warning(&hostonly, &pwd);
    assert_eq!(present, absent, "/root/...: the warning depends on what exists in /root");
    assert_eq!(present, plain);

    // Another user's process: /proc/PID/cwd is a magic link only the owner
    // (or ptrace-capable root) may follow.
    let bob_dir = Removed(PathBuf::from(format!("{PREFIX}/row24-bob-{}-{}", std::process::id(), unique())));
    sh(&format!("mkdir -p {0} && chown {BOB}: {0} && chmod 700 {0}", bob_dir.display()));
    let mut bob = as_user(BOB, "sleep").arg("60").current_dir(&*bob_dir).stdin(Stdio::null()).spawn().expect("bob");
    let peek = run(as_user(ALICE, "ls").arg(format!("/proc/{}/cwd/", bob.id())));
    assert!(!peek.status.success(), "control: alice cannot follow bob's cwd link");
    let parent_rel = format!("{}/{}", "..", hostonly.file_name().expect("name").to_string_lossy());
    let pwd = format!("/proc/{}/cwd/sub/../{parent_rel}", bob.id());
    sh(&format!("mkdir {}/sub", bob_dir.display()));
    let present = cwd_warning(&hostonly, &pwd);
    sh(&format!("rmdir {}/sub", bob_dir.display()));
    let absent = cwd_warning(&hostonly, &pwd);
    // The same directory by its own path: another user's 0700 directory.
    let pwd = format!("{}/sub/../{parent_rel}", bob_dir.display());
    sh(&format!("mkdir {}/sub", bob_dir.display()));
    let dac_present = cwd_warning(&hostonly, &pwd);
    sh(&format!("rmdir {}/sub", bob_dir.display()));
    let dac_absent = cwd_warning(&hostonly, &pwd);
    let _ = bob.kill();
    let _ = bob.wait();
    assert_eq!(present, absent, "/proc/PID/cwd: the warning depends on another user's directory");
    assert_eq!(present, plain);
    assert_eq!(dac_present, dac_absent, "a 0700 directory: the warning depends on what is inside");
    assert_eq!(dac_present, plain);
}

// ---------------------------------------------------------------------------
// Row 26: a bind under another bind, squatted through the shared directory.

#[test]
fn row26_binds_under_a_shared_bind_cannot_be_squatted() {
    require_root!();
    fixture();
    let shared = format!("/tmp/imgsw-row26-shared-{}-{}", std::process::id(), unique());
    let _shared = Removed(PathBuf::from(&shared));
    let dir = root_dir("row26", 0o755);
    let config = dir.join("sysroots.toml");
    let text = fs::read_to_string(TEST_CONFIG).expect("config")
        + &format!("\n[sysroot.bb-sharedtmp]\npath = \"{BB_TREE}\"\nbinds = [\"/home\", \"{shared}\"]\n");
    fs::write(&config, text).expect("config copy");
    let setup = format!("mount --bind {} {TEST_CONFIG}", config.display());
    let probe = format!("cat /etc/debian_version; ls -ld {shared} | cut -c1; cat {shared}/note 2>/dev/null; true");
    let alice_enters =
        || in_namespace("private", &setup, ALICE, &home_of(ALICE), &[BIN, "bb-sharedtmp", "sh", "-c", &probe]);

    // Rows: what bob plants at the configured path before alice enters.
    for (plant, shows) in [
        (format!("mkdir {shared} && echo bob > {shared}/note"), "d\nbob\n"),
        (format!("ln -s /etc {shared}"), "l\n"),
        (format!("echo bob > {shared}"), "-\n"),
    ] {
        let planted = run(as_user(BOB, "sh").args(["-c", &plant]));
        assert!(planted.status.success(), "{plant}: {}", stderr(&planted));
        let r = alice_enters();
        assert_eq!(stdout(&r.out), format!("busybox\n{shows}"), "{plant}: {}", stderr(&r.out));
        assert_eq!(stderr(&r.out), "", "{plant}");
        sh(&format!("rm -rf {shared}"));
    }
    // The administrator's own directory is shown as it is on the host.
    sh(&format!("mkdir {shared} && echo admin > {shared}/note && chmod 755 {shared}"));
    let r = alice_enters();
    assert_eq!(stdout(&r.out), "busybox\nd\nadmin\n", "{}", stderr(&r.out));
}

/// (line, column) of the first `needle` in `text`, as configuration errors count them.
fn position_of(text: &str, needle: &str) -> (usize, usize) {
    let before = &text[..text.find(needle).expect("needle in text")];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (before.matches('\n').count() + 1, before[line_start..].chars().count() + 1)
}

#[test]
fn row26_bind_sources_in_shared_directories_cannot_be_squatted() {
    require_root!();
    fixture();
    let tag = format!("{}-{}", std::process::id(), unique());
    // /var/tmp is sticky and world-writable, and not bound here (the test
    // defaults bind only /tmp); "/" is root-only.
    let shared = format!("/var/tmp/imgsw-row26-src-{tag}");
    let root_only = format!("/imgsw-row26-src-{tag}");
    let (_shared, _root_only) = (Removed(PathBuf::from(&shared)), Removed(PathBuf::from(&root_only)));
    let tree = Removed(scratch_tree("row26src"));
    sh(&format!("mkdir -p {t}{shared} {t}{root_only}", t = tree.display()));
    let dir = root_dir("row26src", 0o755);
    let config = dir.join("sysroots.toml");
    let text = fs::read_to_string(TEST_CONFIG).expect("config")
        + &format!(
            "\n[sysroot.bb-sharedsrc]\npath = \"{t}\"\nbinds = [\"/home\", \"{shared}\"]\n\
             \n[sysroot.bb-rootsrc]\npath = \"{t}\"\nbinds = [\"/home\", \"{root_only}\"]\n",
            t = tree.display()
        );
    fs::write(&config, &text).expect("config copy");
    let (line, column) = position_of(&text, &format!("\"{shared}\""));
    let refusal = format!(
        "imageswitch: {TEST_CONFIG}:{line}:{column}: bind source {shared} lies under /var/tmp, writable by group or \
         others (mode 1777): users other than root could block or replace it for everyone; move it under a \
         directory only root can write\n"
    );
    let setup = format!("mount --bind {} {TEST_CONFIG}", config.display());
    let enter = |user: &str, sysroot: &str, dir: &str| {
        let probe = format!("cat /etc/debian_version; cat {dir}/note");
        in_namespace("private", &setup, user, &home_of(user), &[BIN, sysroot, "sh", "-c", &probe]).out
    };

    // Rows: what bob leaves at the configured source before alice enters.
    // Whatever it is, every entry fails the same way: bob can neither stop
    // alice alone nor choose what she sees.
    for plant in [
        "true".to_string(),
        format!("touch {shared}"),
        format!("mkfifo {shared}"),
        format!("mkdir {shared} && echo bob > {shared}/note"),
        format!("ln -s /etc {shared}"),
    ] {
        let planted = run(as_user(BOB, "sh").args(["-c", &plant]));
        assert!(planted.status.success(), "{plant}: {}", stderr(&planted));
        for user in [ALICE, BOB] {
            let out = enter(user, "bb-sharedsrc", &shared);
            assert_clean_failure(&out, 125, "lies under /var/tmp");
            assert_eq!(stderr(&out), refusal, "{plant}, as {user}");
        }
        sh(&format!("rm -rf {shared}"));
    }
    let listed = in_namespace("private", &setup, ALICE, &home_of(ALICE), &[BIN, "--list"]).out;
    assert!(!stdout(&listed).contains("bb-sharedsrc"), "{}", stdout(&listed));
    assert!(
        stderr(&listed).contains(&format!("bb-sharedsrc: not usable: {}", &refusal[13..].trim_end())),
        "{}",
        stderr(&listed)
    );

    // The same bind under a root-only directory is made, whoever owns the
    // source itself: its owner changes what is in it, never what is there.
    sh(&format!(
        "mkdir {root_only} && echo admin > {root_only}/note && chmod 755 {root_only} && chown {BOB} {root_only}"
    ));
    let out = enter(ALICE, "bb-rootsrc", &root_only);
    assert_eq!(assert_ok(&out), "busybox\nadmin\n", "{}", stderr(&out));
}

// ---------------------------------------------------------------------------
// Row 27: learning restricted sysroot names from a configuration only root
// can read.

#[test]
fn row27_sysroots_a_user_may_not_enter_are_indistinguishable_from_unknown_ones() {
    require_root!();
    fixture();
    let dir = root_dir("row27", 0o755);
    let config = dir.join("sysroots.toml");
    let text = fs::read_to_string(TEST_CONFIG).expect("config")
        + "\n[sysroot.bb-secretbroken]\npath = \"/var/lib/imageswitch-test/trees/secret-path\"\nusers = [\"imgsw-alice\"]\npth = 1\n";
    fs::write(&config, text).expect("config copy");
    sh(&format!("chmod 600 {}", config.display()));
    let setup = format!("mount --bind {} {TEST_CONFIG}", config.display());
    let script = format!(
        "for n in deb11 bb-alice bb-secretbroken imgsw-nosuch; do {BIN} $n true; echo \"$n status=$?\" >&2; done; \
         {BIN} --list"
    );
    let as_bob = in_namespace("private", &setup, BOB, &home_of(BOB), &["sh", "-c", &script]);
    let err = stderr(&as_bob.out);
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.len() >= 8, "{err}");
    for (pair, name) in lines[..8].chunks(2).zip(["deb11", "bb-alice", "bb-secretbroken", "imgsw-nosuch"]) {
        assert_eq!(pair[0], format!("imageswitch: unknown sysroot name \"{name}\" (see imageswitch --list)"), "{err}");
        assert_eq!(pair[1], format!("{name} status=125"));
    }
    let listed = stdout(&as_bob.out) + &lines[8..].join("\n");
    for hidden in ["deb11", "bb-alice", "bullseye-i386", "secret"] {
        assert!(!listed.contains(hidden), "{hidden} listed to bob: {listed}");
    }
    assert!(listed.contains("bb-broken: not usable:"), "entries everyone may enter stay listed: {listed}");
    assert!(listed.lines().any(|l| l.starts_with("bb\t")), "{listed}");

    // Alice, whom the broken entry names, is told about it.
    let as_alice = in_namespace("private", &setup, ALICE, &home_of(ALICE), &[BIN, "--list"]);
    assert!(stderr(&as_alice.out).contains("bb-secretbroken: not usable:"), "{}", stderr(&as_alice.out));
    assert!(stdout(&as_alice.out).lines().any(|l| l.starts_with("deb11\t")), "{}", stdout(&as_alice.out));
}

// ---------------------------------------------------------------------------
// Row 28: unprivileged user namespaces.

#[test]
fn row28_a_user_namespace_is_refused_in_one_line() {
    require_root!();
    fixture();
    let userns = run(as_user(ALICE, "unshare").args(["-Ur", "true"]));
    assert!(userns.status.success(), "control: users may create user namespaces here: {}", stderr(&userns));
    for args in [&["--list"][..], &["bb", "id", "-u"], &["deb11"]] {
        for map in ["-Ur", "-U"] {
            let out = run(as_user(ALICE, "unshare").arg(map).arg(BIN).args(args));
            assert_clean_failure(&out, 125, "imageswitch must be run from the initial user namespace");
        }
    }
    // A namespace of alice's own whose map also holds a subordinate range
    // (as newuidmap writes it from /etc/subuid; root writes it here), in
    // which her process's real and effective ids differ (1 and 0): still
    // refused before the configuration is read.
    let helper = c_program("subuid-userns", &[]);
    let (alice, alice_gid) = (uid(ALICE).to_string(), gid(ALICE).to_string());
    let out = run(Command::new(&helper).args([&alice, &alice_gid, BIN, "--list"]).current_dir("/tmp"));
    assert_clean_failure(&out, 125, "imageswitch must be run from the initial user namespace");
    // The link /proc/self/ns/user forged: in a user and mount namespace of
    // her own, alice binds a directory holding a link that names the initial
    // namespace over her /proc/PID/ns, checks it reads so, and execs the
    // binary (the same pid). The kernel's own answer (a pidfd) is not a path.
    let forge = format!(
        r#"d=$(mktemp -d); ln -s "user:[4026531837]" $d/user
        mount --bind $d /proc/$$/ns && [ "$(readlink /proc/$$/ns/user)" = "user:[4026531837]" ] || exit 99
        exec {BIN} --list"#
    );
    let out = run(as_user(ALICE, "unshare").args(["-Urm", "sh", "-c", &forge]).current_dir("/tmp"));
    assert_clean_failure(&out, 125, "imageswitch must be run from the initial user namespace");
    // With no descriptor left for the kernel's answer (fds 0-3 only: the
    // loader's files closed again, the pidfd on 3), the refusal says so
    // rather than blame a user namespace.
    let only_stdio = r#"for fd in $(ls /proc/$$/fd); do [ $fd -gt 2 ] && eval "exec $fd>&-"; done"#;
    let script = format!("{only_stdio}; ulimit -n 4; exec {BIN} bb true");
    let out = run(as_user(ALICE, "bash").args(["-c", &script]).current_dir("/tmp"));
    assert_clean_failure(&out, 125, "cannot tell which user namespace this process is in");
}

// ---------------------------------------------------------------------------
// Row 25: the audit record.

/// `key=value` pairs of a logfmt line; a quoted value keeps its escapes.
fn logfmt(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek().is_none() {
            return out;
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|&c| c != '=' && c != ' ')).collect();
        let mut value = String::new();
        if chars.next_if_eq(&'=').is_some() {
            if chars.next_if_eq(&'"').is_some() {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => value.extend([c].into_iter().chain(chars.next())),
                        c => value.push(c),
                    }
                }
            } else {
                value.extend(std::iter::from_fn(|| chars.next_if(|&c| c != ' ')));
            }
        }
        out.push((key, value));
    }
}

#[test]
fn row25_audit_records_keep_every_field_and_cannot_be_forged() {
    require_root!();
    fixture();
    let alice = uid(ALICE).to_string();
    let log = PrivateLog::new("row25");
    let base = user_tmpdir(ALICE, "row25");
    let long = base.join(vec!["d".repeat(250); 8].join("/"));
    let forged = base.join("x user=root uid=0");
    let unicode = base.join("y\u{2028}uid=0\u{202e}\u{2066}z");
    let link = base.join("link");
    for dir in [&long, &forged, &unicode] {
        fs::create_dir_all(dir).expect("mkdir");
    }
    std::os::unix::fs::symlink(&forged, &link).expect("symlink");
    sh(&format!("chown -R {ALICE} {}", base.display()));
    // (case, directory, $PWD, what the record's cwd must start with)
    let cases = [
        ("2 KB $PWD", &long, long.clone(), format!("{}", base.display())),
        ("forging directory name", &forged, forged.clone(), format!("{}/x user=root uid=0", base.display())),
        ("logical $PWD through a link", &forged, link.clone(), format!("{}/x user=root uid=0", base.display())),
        ("separators and bidi controls", &unicode, unicode.clone(), format!("{}/y\\u{{2028}}uid=0", base.display())),
    ];
    for (case, dir, pwd, cwd_prefix) in cases {
        let token = format!("imgswrow25{}x{}", std::process::id(), unique());
        let pwd = format!("PWD={}", pwd.display());
        let r = in_namespace("private", &log.setup(), ALICE, dir, &["env", &pwd, BIN, "bb", "true", &token]);
        assert_ok(&r.out);
        let record = log.wait_for(&token, true).unwrap_or_else(|| panic!("{case}: no audit record"));
        assert!(record.len() <= 2048, "{case}: {} bytes", record.len());
        assert!(
            !record.chars().any(|c| c.is_control() || ('\u{2000}'..='\u{206f}').contains(&c)),
            "{case}: {record:?}"
        );
        let (_, message) = record.split_once("]: ").expect("tag");
        let fields = logfmt(message);
        let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["user", "uid", "sysroot", "command", "cwd"], "{case}: {record}");
        let value = |key: &str| fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_default();
        assert_eq!((value("user"), value("uid"), value("sysroot")), (ALICE.to_string(), alice.clone(), "bb".into()));
        assert_eq!(value("command"), format!("true {token}"), "{case}");
        assert!(value("cwd").starts_with(&cwd_prefix), "{case}: {record}");
    }
}

// ---------------------------------------------------------------------------
// Row 29: a stalled syslog receiver.

#[test]
fn row29_a_stalled_log_receiver_never_holds_up_an_entry() {
    require_root!();
    fixture();
    let log = PrivateLog::new("row29");
    // Fill its queue; nobody reads it from here on.
    let filler = std::os::unix::net::UnixDatagram::unbound().expect("socket");
    filler.set_nonblocking(true).expect("nonblocking");
    let mut queued = 0;
    while filler.send_to(b"<14>filler: x", &log.path).is_ok() {
        queued += 1;
    }
    assert!(queued > 0, "control: the receiver took records before it filled up");
    // A blocked entry would never finish (every signal held): the watchdog
    // only keeps a failing run from hanging the suite.
    let entries = 15;
    let script = format!(
        "for i in $(seq {entries}); do (timeout -s KILL 60 {BIN} bb sh -c 'echo ran' 2>/dev/null; echo rc=$?) & done; wait"
    );
    let r = in_namespace("private", &log.setup(), ALICE, &home_of(ALICE), &["sh", "-c", &script]);
    let text = stdout(&r.out);
    assert_eq!((text.matches("ran\n").count(), text.matches("rc=0\n").count()), (entries, entries), "{text}");
    // The caller is told their entry is not on record. A refused caller is
    // told exactly what an unknown name tells them: bob, who may not enter
    // bb-alice, cannot confirm its name by filling the queue first.
    let entry = |user: &str, sysroot: &str| {
        let argv = ["timeout", "-s", "KILL", "60", BIN, sysroot, "true"];
        let r = in_namespace("private", &log.setup(), user, &home_of(user), &argv);
        (r.out.status.code(), stderr(&r.out))
    };
    let warning = format!(
        "imageswitch: warning: the log socket {LOG_SOCKET} is not accepting records: audit record written to the kernel log"
    );
    let (code, said) = entry(ALICE, "bb");
    assert!(code == Some(0) && said.contains(&warning), "{said}");
    let (refused, unknown) = (entry(BOB, "bb-alice"), entry(BOB, "bb-nosuch"));
    assert_eq!(refused.0, Some(125), "{}", refused.1);
    assert_eq!(refused, (unknown.0, unknown.1.replace("bb-nosuch", "bb-alice")));
}

/// The kernel log's records from here on, read as root through /dev/kmsg.
struct KernelLog(fs::File);

impl KernelLog {
    fn from_now() -> KernelLog {
        use std::io::{Seek, SeekFrom};
        use std::os::unix::fs::OpenOptionsExt;
        let mut kmsg =
            fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open("/dev/kmsg").expect("open /dev/kmsg");
        kmsg.seek(SeekFrom::End(0)).expect("seek /dev/kmsg");
        KernelLog(kmsg)
    }

    /// Every record written since [`KernelLog::from_now`], one a line.
    fn records(&mut self) -> String {
        use std::io::Read;
        let mut text = String::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match self.0.read(&mut buf) {
                Ok(n) if n > 0 => text.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(err) if err.raw_os_error() == Some(libc::EPIPE) => continue,
                _ => return text,
            }
        }
    }
}

#[test]
fn row29_audit_records_survive_a_full_log_queue() {
    require_root!();
    fixture();
    let log = PrivateLog::new("row29-full");
    // Another user fills the shared queue: each logger waits once it is
    // full, and the watchdog ends the one that waits; nobody reads it.
    let flood = run(as_user(BOB, "sh").args([
        "-c",
        &format!(
            "while timeout -s KILL 2 logger -d -u {} row29-flood; rc=$?; [ $rc = 0 ]; do :; done; exit $rc",
            log.path.display()
        ),
    ]));
    assert_eq!(flood.status.code(), Some(137), "control: the flood filled the queue: {}", stderr(&flood));
    let mut kernel_log = KernelLog::from_now();
    let marker = format!("row29-survives-{}-{}", std::process::id(), unique());
    let r = in_namespace(
        "private",
        &log.setup(),
        ALICE,
        &home_of(ALICE),
        &["timeout", "-s", "KILL", "60", BIN, "bb", "sh", "-c", "echo ran", &marker],
    );
    assert_eq!((r.out.status.code(), stdout(&r.out)), (Some(0), "ran\n".into()), "{}", stderr(&r.out));
    let kernel_records = kernel_log.records();
    let logged = kernel_records.lines().find(|l| l.contains(&marker)).map(str::to_string);
    let record = logged.or_else(|| log.wait_for(&marker, true));
    let record = record.unwrap_or_else(|| panic!("no audit record for {marker}; the caller saw: {}", stderr(&r.out)));
    assert!(record.contains("imageswitch[") && record.contains(&format!("user={ALICE} ")), "{record}");
    assert!(
        stderr(&r.out).contains("is not accepting records: audit record written to the kernel log"),
        "{}",
        stderr(&r.out)
    );
}
