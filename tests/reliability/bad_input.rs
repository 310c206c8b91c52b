//! Bad input: malformed configurations, configuration files and argv, and
//! hostile working directories. Each either fails with one clear line and
//! nothing changed, or (the working directories) is handled as documented.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Output;

use super::common::*;
use super::{HostState, assert_no_leftovers, leftovers, serial, user_program};
use test_support::{Removed, figure, tree_listing};

const CONFIG_DIR: &str = "/etc/imageswitch-test";

/// Swaps the test configuration and puts the fixture's back when dropped,
/// even if the test fails half way.
struct ConfigSwap {
    original: Vec<u8>,
    extra: Vec<PathBuf>,
}

impl ConfigSwap {
    fn new() -> ConfigSwap {
        ConfigSwap { original: fs::read(TEST_CONFIG).expect("fixture config"), extra: Vec::new() }
    }

    /// Atomically replaces the configuration with `text`, mode `mode`.
    fn install(&mut self, text: &[u8], mode: u32) {
        let tmp = Path::new(CONFIG_DIR).join(".sysroots.toml.rel");
        let _ = fs::remove_file(&tmp);
        fs::write(&tmp, text).expect("write config");
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).expect("chmod");
        fs::rename(&tmp, TEST_CONFIG).expect("rename config");
    }

    /// Makes the configuration path a symbolic link to a file holding `text`.
    fn install_symlink(&mut self, text: &[u8], link_owner: Option<&str>) {
        let target = Path::new(CONFIG_DIR).join("rel-target.toml");
        fs::write(&target, text).expect("write target");
        fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).expect("chmod");
        self.extra.push(target.clone());
        let tmp = Path::new(CONFIG_DIR).join(".sysroots.toml.rel");
        let _ = fs::remove_file(&tmp);
        symlink(&target, &tmp).expect("symlink");
        if let Some(owner) = link_owner {
            sh(&format!("chown -h {owner} {}", tmp.display()));
        }
        fs::rename(&tmp, TEST_CONFIG).expect("rename link");
    }

    fn remove(&mut self) {
        let _ = fs::remove_file(TEST_CONFIG);
    }
}

impl Drop for ConfigSwap {
    fn drop(&mut self) {
        self.install(&self.original.clone(), 0o644);
        for path in &self.extra {
            let _ = fs::remove_file(path);
        }
    }
}

/// The one-line failure contract: status 125, nothing on stdout, exactly one
/// short line on stderr, `imageswitch: ...` containing `expect`, no control
/// characters. Returns the line, or what is wrong.
fn clean_failure(case: &str, out: &Output, expect: &str) -> Result<String, String> {
    let err = &out.stderr;
    let text = String::from_utf8_lossy(err).into_owned();
    let shown: String = text.chars().take(160).collect();
    if out.status.code() != Some(125) {
        return Err(format!("{case}: status {:?}, stderr {shown:?}", out.status));
    }
    if !out.stdout.is_empty() {
        return Err(format!("{case}: stdout {:?}", stdout(out)));
    }
    if !err.ends_with(b"\n") || err.iter().filter(|&&b| b == b'\n').count() != 1 {
        return Err(format!("{case}: not exactly one line: {shown:?}"));
    }
    if !text.starts_with("imageswitch: ") || !text.contains(expect) {
        return Err(format!("{case}: expected \"imageswitch: ...{expect}...\", got {shown:?}"));
    }
    if text.contains("panicked") || text.contains("RUST_BACKTRACE") {
        return Err(format!("{case}: panic: {shown:?}"));
    }
    if let Some(c) = text.trim_end_matches('\n').chars().find(|c| c.is_control()) {
        return Err(format!("{case}: control character {c:?} echoed raw: {shown:?}"));
    }
    if err.len() > 1024 {
        return Err(format!("{case}: a {}-byte message is not a clear line: {shown:?}...", err.len()));
    }
    Ok(text)
}

struct ConfigCase {
    name: &'static str,
    text: String,
    /// The sysroot or alias asked for.
    enter: &'static str,
    expect: &'static str,
}

fn config_cases(userowned: &Path, writable: &Path) -> Vec<ConfigCase> {
    let bb = format!("{PREFIX}/trees/bb");
    let good = format!("[sysroot.bb]\npath = \"{bb}\"\nbinds = [\"/home\"]\n");
    let case = |name, text: String, enter, expect| ConfigCase { name, text, enter, expect };
    vec![
        case("syntax: unclosed table header", format!("[sysroot.bb\npath = \"{bb}\"\n"), "bb", ":1:"),
        case("syntax: unterminated string", format!("[sysroot.bb]\npath = \"{bb}\n"), "bb", "syntax error"),
        case("syntax: bare value", format!("{good}binds\n"), "bb", "no sysroot can be entered until this is fixed"),
        case(
            "type: path is an integer",
            "[sysroot.bb]\npath = 42\n".into(),
            "bb",
            "\"path\" must be a string, found an integer",
        ),
        case("type: setuid is a string", format!("{good}setuid = \"yes\"\n"), "bb", "\"setuid\" must be true or false"),
        case("type: aliases is a string", format!("{good}aliases = \"x\"\n"), "bb", "\"aliases\" must be an array"),
        case(
            "type: binds holds an integer",
            format!("{good}binds = [1]\n").replace("binds = [\"/home\"]\n", ""),
            "bb",
            "\"binds\" must be a string",
        ),
        case("type: sysroot is a string", "sysroot = \"bb\"\n".into(), "bb", "[sysroot] must be a table"),
        case(
            "type: personality value",
            format!("{good}personality = \"sparc\"\n"),
            "bb",
            "\"personality\" must be \"linux\" or \"linux32\"",
        ),
        case("unknown key in a sysroot", format!("{good}pth = \"/x\"\n"), "bb", "unknown key \"pth\" in [sysroot.bb]"),
        case(
            "unknown key in defaults",
            format!("[defaults]\nbindz = []\n{good}"),
            "bb",
            "unknown key \"bindz\" in [defaults]",
        ),
        case(
            "unknown top-level key",
            format!("config = \"/etc/shadow\"\n{good}"),
            "bb",
            "unknown top-level key \"config\"",
        ),
        case("duplicate sysroot name", format!("{good}{good}"), "bb", "syntax error"),
        case(
            "duplicate alias across sysroots",
            format!(
                "[sysroot.bb]\npath = \"{bb}\"\naliases = [\"dup\"]\n[sysroot.bb2]\npath = \"{bb}\"\naliases = [\"dup\"]\n"
            ),
            "bb2",
            "alias \"dup\" of [sysroot.bb2] is already used by [sysroot.bb]",
        ),
        case(
            "relative path",
            "[sysroot.bb]\npath = \"var/lib/imageswitch-test/trees/bb\"\n".into(),
            "bb",
            "must be an absolute path",
        ),
        case(
            "path with ..",
            format!("[sysroot.bb]\npath = \"{PREFIX}/trees/../trees/bb\"\n"),
            "bb",
            "must be an absolute path without",
        ),
        case(
            "bind with ..",
            format!("{good}binds = [\"/home/../etc\"]\n").replace("binds = [\"/home\"]\n", ""),
            "bb",
            "in \"binds\"",
        ),
        case(
            "bind of /",
            format!("[sysroot.bb]\npath = \"{bb}\"\nbinds = [\"/\"]\n"),
            "bb",
            "would cover the whole tree",
        ),
        case("path is /", "[sysroot.bb]\npath = \"/\"\n".into(), "bb", "\"path\" must not be \"/\""),
        case(
            "name with a slash",
            format!("[sysroot.\"b/b\"]\npath = \"{bb}\"\n"),
            "b/b",
            "unknown sysroot name \"b/b\"",
        ),
        case(
            "name with a space",
            format!("[sysroot.\"b b\"]\npath = \"{bb}\"\n"),
            "b b",
            "unknown sysroot name \"b b\"",
        ),
        case(
            "name is the program's",
            format!("[sysroot.imageswitch]\npath = \"{bb}\"\n"),
            "imageswitch",
            "invalid sysroot name \"imageswitch\"",
        ),
        case("alias outside the charset", format!("{good}aliases = [\"a;b\"]\n"), "bb", "invalid name \"a;b\""),
        // Who the entry admits cannot be read: only root is told about it.
        case(
            "user name outside the charset",
            format!("{good}users = [\"root:x\"]\n"),
            "bb",
            "unknown sysroot name \"bb\" (see imageswitch --list)",
        ),
        case(
            "missing tree",
            format!("[sysroot.bb]\npath = \"{PREFIX}/trees/rel-nonexistent\"\n"),
            "bb",
            "no such file or directory",
        ),
        case(
            "missing path key",
            "[sysroot.bb]\naliases = [\"x\"]\n".into(),
            "bb",
            "missing key \"path\" in [sysroot.bb]",
        ),
        case("tree not root-owned", format!("[sysroot.bb]\npath = \"{}\"\n", userowned.display()), "bb", "not root"),
        case(
            "tree writable by others",
            format!("[sysroot.bb]\npath = \"{}\"\n", writable.display()),
            "bb",
            "writable by group or others",
        ),
        case("empty configuration", String::new(), "bb", "unknown sysroot name \"bb\""),
    ]
}

#[test]
fn bad_input_sweep() {
    require_root!();
    let _serial = serial();
    let f = fixture();
    let execargv = user_program("execargv", &[], ALICE);
    let cwd = execargv.parent().expect("dir").to_path_buf();
    let userowned = Path::new(PREFIX).join("trees/rel-userowned-root");
    let writable = Path::new(PREFIX).join("trees/rel-world-writable");
    let _cleanup = [Removed(cwd.clone()), Removed(userowned.clone()), Removed(writable.clone())];
    sh(&format!(
        "rm -rf {u} {w} && cp -a {bb} {u} && chown {ALICE} {u} && cp -a {bb} {w} && chmod 777 {w}",
        u = userowned.display(),
        w = writable.display(),
        bb = f.bb.display()
    ));
    let cwd_listing = || tree_listing(&cwd);
    let before = HostState::take();
    let cwd_before = cwd_listing();
    let alice = |args: &[&str]| run(as_user(ALICE, BIN).args(args).current_dir(&cwd));
    let fixture_config = fs::read(TEST_CONFIG).expect("fixture config");
    let mut checked = 0;
    let mut broken_contract = Vec::new();
    let mut check = |case: &str, out: &Output, expect: &str| {
        // Host state is a hard failure at once; the message contract is
        // collected so one run reports every case that breaks it.
        before.assert_unchanged(case);
        assert!(leftovers().is_empty(), "{case}: processes left behind: {:?}", leftovers());
        assert_eq!(cwd_listing(), cwd_before, "{case}: something was written in the caller's directory");
        checked += 1;
        if let Err(why) = clean_failure(case, out, expect) {
            broken_contract.push(why);
        }
    };

    // Configurations: each swapped in, entered, and the fixture's restored.
    {
        let mut swap = ConfigSwap::new();
        let original = swap.original.clone();
        for case in config_cases(&userowned, &writable) {
            swap.install(case.text.as_bytes(), 0o644);
            let out = alice(&[case.enter, "true"]);
            check(case.name, &out, case.expect);
            assert_eq!(fs::read(TEST_CONFIG).expect("config"), case.text.as_bytes(), "{}: config changed", case.name);
        }
        type Setup = Box<dyn Fn(&mut ConfigSwap)>;
        let file_cases: Vec<(&str, Setup, &str)> = vec![
            (
                "configuration world-writable",
                Box::new(|s: &mut ConfigSwap| s.install(&s.original.clone(), 0o666)),
                "writable by group or others",
            ),
            (
                "configuration group-writable",
                Box::new(|s: &mut ConfigSwap| s.install(&s.original.clone(), 0o664)),
                "writable by group or others",
            ),
            (
                "configuration owned by a user",
                Box::new(|s: &mut ConfigSwap| {
                    s.install(&s.original.clone(), 0o644);
                    sh(&format!("chown {ALICE} {TEST_CONFIG}"));
                }),
                "not root",
            ),
            (
                "configuration is a user-owned symlink",
                Box::new(|s: &mut ConfigSwap| s.install_symlink(&s.original.clone(), Some(ALICE))),
                "refusing configuration",
            ),
            (
                "configuration is a root-owned symlink to a world-writable file",
                Box::new(|s: &mut ConfigSwap| {
                    s.install_symlink(&s.original.clone(), None);
                    sh(&format!("chmod 666 {CONFIG_DIR}/rel-target.toml"));
                }),
                "writable by group or others",
            ),
            ("configuration missing", Box::new(|s: &mut ConfigSwap| s.remove()), "no such file or directory"),
            (
                "configuration larger than 1 MiB",
                Box::new(|s: &mut ConfigSwap| {
                    let mut big = s.original.clone();
                    big.extend(std::iter::repeat_n(b'#', 1 << 20));
                    s.install(&big, 0o644);
                }),
                "larger than 1 MiB",
            ),
            (
                "configuration not UTF-8",
                Box::new(|s: &mut ConfigSwap| {
                    let mut bad = s.original.clone();
                    bad.extend_from_slice(b"\n# \xff\xfe\n");
                    s.install(&bad, 0o644);
                }),
                "cannot read",
            ),
        ];
        for (name, setup, expect) in &file_cases {
            setup(&mut swap);
            let out = alice(&["bb", "true"]);
            check(name, &out, expect);
        }
        // A root-owned symlink is trusted and followed (src/trusted.rs: links
        // on the way must be root-owned), like a generation link for a tree.
        swap.install_symlink(&original, None);
        let out = alice(&["bb", "true"]);
        assert_eq!(out.status.code(), Some(0), "root-owned config symlink: {}", stderr(&out));
    }
    assert_eq!(fs::read(TEST_CONFIG).expect("config restored"), fixture_config, "fixture configuration restored");
    let restored = alice(&["bb", "true"]);
    assert_eq!(restored.status.code(), Some(0), "fixture configuration restored: {}", stderr(&restored));

    // Hostile argv, with the fixture's configuration.
    let h = |args: &[&OsStr]| run(as_user(ALICE, &execargv).arg(BIN).args(args).current_dir(&cwd));
    let out = h(&[]);
    check("argc 0", &out, "unknown sysroot name \"\"");
    let out = h(&[OsStr::new("../../etc/shadow"), OsStr::new("-c"), OsStr::new("id")]);
    check("argv[0] ../../etc/shadow", &out, "unknown sysroot name \"shadow\"");
    let out = h(&[OsStr::from_bytes(b"imgsw-\xff\xfe"), OsStr::new("-c"), OsStr::new("id")]);
    check("argv[0] not UTF-8", &out, "unknown sysroot name \"imgsw-\u{fffd}\u{fffd}\"");
    let out = h(&[OsStr::new(&format!("{BINBB}/../../bin/sh")), OsStr::new("-c"), OsStr::new("id")]);
    check("argv[0] bin_dir/../..", &out, "unknown sysroot name \"sh\"");
    let out = alice(&["-u", "root", "bb", "id"]);
    check("user switch option", &out, "unknown option \"-u\"");
    let out = alice(&["--x\nimageswitch: fake", "bb"]);
    check("unknown option with a newline", &out, "unknown option");
    let out = run(as_user(ALICE, BIN).arg(OsStr::from_bytes(b"b\xffb")).arg("true").current_dir(&cwd));
    check("NAME not UTF-8", &out, "unknown sysroot name \"b\u{fffd}b\"");
    let long_name = "n".repeat(100_000);
    let out = alice(&[&long_name, "true"]);
    check("100,000-byte NAME", &out, "unknown sysroot name");
    let out = alice(&["bb\nimageswitch: bb: entered as root", "true"]);
    check("NAME with a newline", &out, "unknown sysroot name");
    let out = alice(&["\x1b[2J\x1b[Hbb", "true"]);
    check("NAME with terminal escapes", &out, "unknown sysroot name");
    let out = h(&[OsStr::new("imgsw-\x1b]0;owned\x07"), OsStr::new("-c"), OsStr::new("id")]);
    check("argv[0] with terminal escapes", &out, "unknown sysroot name");

    assert!(
        broken_contract.is_empty(),
        "{} of {checked} cases broke the one-clear-line contract (host state was unchanged in all):\n{}",
        broken_contract.len(),
        broken_contract.join("\n")
    );

    figure(&format!(
        "bad_input_sweep: {checked} malformed configs / files / argv cases: each exit 125 with exactly one \
         `imageswitch: ...` line, host mountinfo, bb tree and caller's directory unchanged"
    ));
}

#[test]
fn hostile_cwd() {
    require_root!();
    let _serial = serial();
    fixture();
    let before = HostState::take();
    let home = home_of(ALICE).display().to_string();
    let base = user_tmpdir(ALICE, "rel-cwd");
    let _cleanup = Removed(base.clone());

    // Deleted while we stand in it: getcwd fails; warning, start in home.
    let gone = base.join("gone");
    let out = run(as_user(ALICE, "/bin/sh")
        .args(["-c", &format!("mkdir {0} && cd {0} && rmdir {0} && exec {BIN} bb pwd", gone.display())]));
    assert_eq!(out.status.code(), Some(0), "deleted cwd: {}", stderr(&out));
    assert_eq!(stdout(&out), format!("{home}\n"), "deleted cwd");
    assert_eq!(stderr(&out), format!("imageswitch: warning: the current directory is gone; starting in {home}\n"));

    // Searchable but unreadable: entered as is.
    let unreadable = base.join("unreadable");
    sh(&format!("mkdir {0} && chown {ALICE} {0} && chmod 311 {0}", unreadable.display()));
    let out = run(as_user(ALICE, BIN).args(["bb", "pwd"]).current_dir(&unreadable));
    assert_eq!(out.status.code(), Some(0), "unreadable cwd: {}", stderr(&out));
    assert_eq!(stdout(&out), format!("{}\n", unreadable.display()));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));

    // A directory the user may not enter at all (root's 0700): the chdir
    // inside happens as the user, fails, and falls back to home.
    let closed = base.join("closed");
    sh(&format!("mkdir {0} && chmod 700 {0}", closed.display()));
    let out = run(as_user(ALICE, BIN).args(["bb", "pwd"]).current_dir(&closed));
    assert_eq!(out.status.code(), Some(0), "closed cwd: {}", stderr(&out));
    assert_eq!(stdout(&out), format!("{home}\n"));
    assert_eq!(
        stderr(&out),
        format!(
            "imageswitch: warning: cannot enter {} in bb (permission denied); starting in {home}\n",
            closed.display()
        )
    );

    // A name that is not UTF-8 is kept byte for byte.
    let mut raw = base.clone().into_os_string().into_vec();
    raw.extend_from_slice(b"/d\xff\xfe\x01");
    let odd = PathBuf::from(OsString::from_vec(raw.clone()));
    fs::create_dir(&odd).expect("mkdir odd");
    sh(&format!("chown -R {ALICE} {}", base.display()));
    let out = run(as_user(ALICE, BIN).args(["bb", "pwd"]).current_dir(&odd));
    assert_eq!(out.status.code(), Some(0), "non-UTF-8 cwd: {}", stderr(&out));
    raw.push(b'\n');
    assert_eq!(out.stdout, raw, "non-UTF-8 cwd");
    assert!(out.stderr.is_empty(), "{}", stderr(&out));

    before.assert_unchanged("after the cwd cases");
    assert_no_leftovers("after the cwd cases");
    figure(
        "hostile_cwd: deleted -> warning + home, search-only -> kept, no access -> warning + home, non-UTF-8 -> kept byte for byte; all exit 0, host unchanged",
    );
}

/// Config cases that need no root: the parser alone.
#[test]
fn bad_configs_parse_to_positioned_errors() {
    let cases = config_cases(Path::new("/u"), Path::new("/w"));
    let mut n = 0;
    for case in cases.iter().filter(|c| {
        !matches!(c.name, "missing tree" | "tree not root-owned" | "tree writable by others" | "empty configuration")
    }) {
        let located = match imageswitch::config::parse(TEST_CONFIG, &case.text) {
            Err(err) => err,
            Ok(config) => match config.broken.iter().find(|(name, _)| name == case.enter) {
                Some((_, err)) => err.clone(),
                None => {
                    assert!(config.sysroot(case.enter).is_none(), "{}: accepted", case.name);
                    continue;
                }
            },
        };
        assert!(located.line >= 1 && located.column >= 1, "{}: {located}", case.name);
        assert!(located.to_string().starts_with(&format!("{TEST_CONFIG}:{}:", located.line)), "{}", case.name);
        n += 1;
    }
    figure(&format!("bad_configs_parse_to_positioned_errors: {n} malformed configs, each a FILE:LINE:COL error"));
}

// ---------------------------------------------------------------------------
