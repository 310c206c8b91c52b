//! What the caller had, the command gets (issue 9, and the environment of
//! issue 15): limits, personality flags, environment, invocation paths,
//! sizes, output. Each test is named for a kind of loss and runs its cases
//! as rows, as a real unprivileged user against the installed setuid binary
//! (see tests/common/mod.rs). doc/imageswitch.8.md, "What carries over from
//! the caller", lists what these tests hold it to.

mod common;

use std::fs;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use common::*;
use test_support::Removed;

/// `script` run by `sh -c` as `user` in `cwd` (the user's home by default).
fn sh_as(user: &str, script: &str) -> Command {
    let mut cmd = as_user(user, "sh");
    cmd.args(["-c", script]);
    cmd
}

fn assert_ran(out: &Output, case: &str) -> String {
    assert_eq!(out.status.code(), Some(0), "{case}: stdout: {} stderr: {}", stdout(out), stderr(out));
    stdout(out)
}

/// A root-owned scratch directory under PREFIX (not bound into any tree),
/// removed when dropped.
fn host_only(tag: &str) -> Removed {
    let dir = PathBuf::from(format!("{PREFIX}/hostonly-{tag}-{}-{}", std::process::id(), unique()));
    sh(&format!("mkdir -p {0} && chmod 755 {0}", dir.display()));
    Removed(dir)
}

#[test]
fn rlimits_the_kernel_resets_at_setuid_exec_come_back() {
    require_root!();
    fixture();
    // (limit set by the caller's shell, what `ulimit` prints inside)
    let rows = [
        ("ulimit -s unlimited", "ulimit -s", "unlimited"),
        ("ulimit -S -s 65536", "ulimit -s", "65536"),
        ("ulimit -S -s 8193", "ulimit -s", "8193"),
        ("ulimit -S -s 4096", "ulimit -s", "4096"),
        ("ulimit -S -s 8192", "ulimit -s", "8192"),
        ("ulimit -S -c 1234", "ulimit -c", "1234"),
        ("ulimit -S -n 321", "ulimit -n", "321"),
        ("ulimit -S -f 98765", "ulimit -f", "98765"),
    ];
    for (set, show, expected) in rows {
        for sysroot in ["deb11", "bb"] {
            let out = run(&mut sh_as(ALICE, &format!("{set} && {BIN} {sysroot} sh -c '{show}'")));
            assert_eq!(assert_ran(&out, set).trim(), expected, "{set} -> {sysroot}");
        }
    }
    // Where the value cannot be found: the shell that set it became
    // imageswitch (as `ssh host 'ulimit -s unlimited; imageswitch ...'`), and
    // its parent (here root's) never had it. And 8 MiB set on purpose under
    // a larger limit of the parent cannot be told from a lowered one.
    let rows = [
        (format!("ulimit -s unlimited && exec {BIN} bb sh -c 'ulimit -s'"), "8192"),
        (format!("ulimit -s unlimited && (ulimit -S -s 8192 && exec {BIN} bb sh -c 'ulimit -s'); true"), "unlimited"),
    ];
    for (script, expected) in rows {
        let out = run(&mut sh_as(ALICE, &script));
        assert_eq!(assert_ran(&out, &script).trim(), expected, "{script}");
    }
    // A job script's limit reaches a #!/binN script too.
    let dir = user_tmpdir(ALICE, "rlimit-script");
    let script = dir.join("job.sh");
    fs::write(&script, format!("#!{BIN11}/sh\nulimit -s\n")).expect("script");
    sh(&format!("chown {ALICE} {0} && chmod 755 {0}", script.display()));
    let out = run(&mut sh_as(ALICE, &format!("ulimit -s unlimited && {}", script.display())));
    assert_eq!(assert_ran(&out, "shebang").trim(), "unlimited");
}

#[test]
fn personality_flags_a_setuid_exec_lets_through_are_kept_with_the_configured_domain() {
    require_root!();
    fixture();
    // setarch flags: --uname-2.6 (UNAME26), -3 (ADDR_LIMIT_3GB), -S, -T, -I
    // pass a set-uid exec; -R, -L, -Z, -X are cleared by it and stay cleared.
    let kept = ["--uname-2.6", "-3", "-S", "-T", "-I"];
    let control = run(as_user(ALICE, "setarch").arg("x86_64").args(kept).args(["cat", "/proc/self/personality"]));
    let flags = u32::from_str_radix(assert_ran(&control, "control").trim(), 16).expect("hex");
    assert_ne!(flags, 0, "control: setarch sets flags");
    for (arch, sysroot, domain, machine) in
        [("x86_64", "bb", 0, "x86_64"), ("i686", "bb", 0, "x86_64"), ("x86_64", "deb11", 8, "i686")]
    {
        let out = run(as_user(ALICE, "setarch").arg(arch).args(kept).args(["-R", "-L", "-Z", "-X"]).args([
            BIN,
            sysroot,
            "sh",
            "-c",
            "cat /proc/self/personality; uname -m; uname -r",
        ]));
        let text = assert_ran(&out, arch);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[..2], [format!("{:08x}", flags | domain).as_str(), machine], "{arch} -> {sysroot}");
        assert!(lines[2].starts_with("2.6."), "UNAME26 kept: {text}");
    }
}

#[test]
fn variables_glibc_strips_from_setuid_programs_reach_the_command() {
    require_root!();
    fixture();
    let kept = [
        ("TMPDIR", "/scratch/job 1"),
        ("TZDIR", "/usr/share/zoneinfo"),
        ("LOCPATH", "/x/locale"),
        ("NLSPATH", "/x/%N"),
        ("GETCONF_DIR", "/x/getconf"),
        ("HOSTALIASES", "/x/hosts"),
        ("LOCALDOMAIN", "example.org"),
        ("RES_OPTIONS", "ndots:2"),
        ("RESOLV_HOST_CONF", "/x/host.conf"),
        ("NIS_PATH", "org_dir"),
    ];
    let dropped = ["LD_PRELOAD", "LD_LIBRARY_PATH", "GCONV_PATH", "GLIBC_TUNABLES", "MALLOC_TRACE", "MALLOC_CHECK_"];
    let dir = user_tmpdir(ALICE, "env-script");
    let script = dir.join("job.sh");
    fs::write(&script, format!("#!{BIN11}/sh\nenv\n")).expect("script");
    sh(&format!("chown {ALICE} {0} && chmod 755 {0}", script.display()));
    for (case, program, args) in [
        ("imageswitch", BIN.to_string(), vec!["deb11", "env"]),
        ("alias", alias("imgsw-bb"), vec!["-c", "env"]),
        ("#!/binN script", script.display().to_string(), vec![]),
    ] {
        let mut cmd = as_user(ALICE, &program);
        cmd.args(args);
        for (name, value) in kept {
            cmd.env(name, value);
        }
        for name in dropped {
            cmd.env(name, "/nonexistent/x");
        }
        let text = assert_ran(&run(&mut cmd), case);
        let env: Vec<&str> = text.lines().collect();
        for (name, value) in kept {
            assert!(env.contains(&format!("{name}={value}").as_str()), "{case}: {name} lost: {text}");
        }
        for name in dropped {
            assert!(!env.iter().any(|l| l.starts_with(&format!("{name}="))), "{case}: {name} passed: {text}");
        }
    }
}

#[test]
fn bin_dir_programs_run_in_the_tree_however_they_are_started() {
    require_root!();
    fixture();
    let dir = user_tmpdir(ALICE, "bindir-ways");
    let script = dir.join("job.sh");
    fs::write(&script, format!("#!{BIN11}/sh\nuname -m\n")).expect("script");
    sh(&format!("chown {ALICE} {0} && chmod 755 {0}", script.display()));
    let rows = [
        ("absolute path", format!("{BIN11}/uname -m")),
        ("PATH lookup", format!("PATH={BIN11}:$PATH; uname -m")),
        ("PATH lookup, trailing slash", format!("PATH={BIN11}/:$PATH; uname -m")),
        ("env", format!("PATH={BIN11}:$PATH env uname -m")),
        ("env -i", format!("env -i PATH={BIN11} uname -m")),
        ("login form", format!("exec -a -bash {BIN11}/bash -c 'uname -m'")),
        ("shebang", script.display().to_string()),
        ("exec of a name found in PATH", format!("PATH={BIN11}:$PATH; exec uname -m")),
    ];
    for (case, line) in rows {
        let out = run(as_user(ALICE, "bash").args(["-c", &line]));
        assert_eq!(assert_ran(&out, case), "i686\n", "{case}");
    }
    // argv[0] and the executed file only key into the configuration: a name
    // that differs from the executed entry's is not an entry.
    let out = run(as_user(ALICE, "bash").args(["-c", &format!("exec -a id {BIN11}/uname -m")]));
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains("unknown sysroot name \"id\""), "{}", stderr(&out));
}

#[test]
fn size_limits_are_no_stricter_than_the_kernels() {
    require_root!();
    fixture();
    // `imageswitch deb11 cat *` in a directory of 80,000 files.
    let dir = user_tmpdir(ALICE, "many-files");
    for i in 0..80_000 {
        fs::write(dir.join(format!("f{i:05}")), "").expect("file");
    }
    sh(&format!("chown -R {ALICE} {}", dir.display()));
    let out = sh_as(ALICE, &format!("{BIN} deb11 cat * && echo ok")).current_dir(&dir).output().expect("80,000 files");
    assert_eq!(assert_ran(&out, "80,000 files"), "ok\n");
    let _ = fs::remove_dir_all(&dir);

    // 9,000 small environment variables.
    let mut cmd = as_user(ALICE, BIN);
    cmd.args(["deb11", "sh", "-c", "env | grep -c ^IMGSW_V"]);
    for i in 0..9000 {
        cmd.env(format!("IMGSW_V{i}"), "x");
    }
    assert_eq!(assert_ran(&run(&mut cmd), "9,000 variables").trim(), "9000");

    // At the kernel's own edge: one argument of 128 KiB - 1 (MAX_ARG_STRLEN),
    // and, with an unlimited stack, 5 MiB of arguments (the kernel allows
    // 6 MiB; with the 8 MiB stack a set-uid program gets, only 2 MiB).
    let long = "y".repeat(128 * 1024 - 1);
    let out = run(as_user(ALICE, BIN).args(["bb", "sh", "-c", "echo ${#1}", "sh", &long]));
    assert_eq!(assert_ran(&out, "one 128 KiB argument").trim(), (128 * 1024 - 1).to_string());
    // (Made by the shell: the test itself runs with an 8 MiB stack limit.)
    let script =
        format!("ulimit -s unlimited && z=$(printf %01023d 0) && {BIN} bb sh -c 'echo $#' sh $(yes $z | head -n 5120)");
    let out = run(&mut sh_as(ALICE, &script));
    assert_eq!(assert_ran(&out, "5 MiB of arguments").trim(), (5 * 1024).to_string());
}

/// A pipe whose reading end is already closed: writes get EPIPE (and SIGPIPE).
fn broken_pipe() -> OwnedFd {
    let (read, write) = nix::unistd::pipe().expect("pipe");
    drop(read);
    write
}

#[test]
fn output_errors_never_panic_and_the_command_still_runs() {
    require_root!();
    fixture();
    let hostonly = host_only("output");
    let no_panic = |out: &Output, case: &str| {
        assert!(!stderr(out).contains("panicked"), "{case}: {}", stderr(out));
        assert_ne!(out.status.code(), Some(134), "{case}: aborted");
    };
    // stdout gone: informational output (exit 0 as documented).
    for args in [vec!["--version"], vec!["--help"], vec!["--list"]] {
        let out = as_user(ALICE, BIN).args(&args).stdout(broken_pipe()).output().expect("run");
        no_panic(&out, args[0]);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    }
    // stderr unwritable: an error keeps its status.
    let full = || fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
    let out = as_user(ALICE, BIN).args(["nosuch", "true"]).stderr(full()).output().expect("run");
    no_panic(&out, "error to /dev/full");
    assert_eq!(out.status.code(), Some(125));
    // A warning after the drop that cannot be written: the command runs.
    let stderrs: Vec<(&str, Stdio)> = vec![("/dev/full", full().into()), ("a closed pipe", broken_pipe().into())];
    for (case, err) in stderrs {
        let out = as_user(ALICE, BIN)
            .args(["bb", "sh", "-c", "echo ran; exit 3"])
            .current_dir(&hostonly.0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .output()
            .expect("run");
        no_panic(&out, case);
        assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(3), "ran\n"), "{case}");
    }
    // A file-size limit on the file stderr goes to.
    let log = user_tmpdir(ALICE, "fsize").join("err");
    let out = run(&mut sh_as(
        ALICE,
        &format!("ulimit -f 0; cd {} && {BIN} bb sh -c 'echo ran; exit 3' 2>{}", hostonly.0.display(), log.display()),
    ));
    no_panic(&out, "file-size limit");
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(3), "ran\n"), "file-size limit: {}", stderr(&out));
}

#[test]
fn caller_text_in_messages_is_escaped_and_bounded_by_one_rule() {
    require_root!();
    fixture();
    let one_clean_line = |out: &Output, case: &str| -> String {
        let err = stderr(out);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{case}: one line expected: {err:?}");
        assert!(!lines[0].chars().any(|c| c.is_control() || ('\u{2000}'..='\u{206f}').contains(&c)), "{case}: {err:?}");
        assert!(lines[0].len() < 500, "{case}: {} bytes", lines[0].len());
        lines[0].to_string()
    };
    // The cwd warning: a host-only directory with a newline, an escape
    // sequence and a bidi override in its name, and a very long one.
    let hostonly = host_only("echo");
    for name in ["a\nimageswitch: forged\x1b[2J", "b\u{202e}txt.exe", &"c".repeat(250)] {
        let dir = hostonly.0.join(name);
        fs::create_dir(&dir).expect("mkdir");
        let out = run(as_user(ALICE, BIN).args(["bb", "true"]).current_dir(&dir));
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let line = one_clean_line(&out, name);
        assert!(line.starts_with("imageswitch: warning: "), "{line}");
    }
    // An exec error for a 100 KB command, and for one with control bytes.
    for command in ["d".repeat(100_000), "e\n\x1b]2;title\x07".to_string()] {
        let out = run(as_user(ALICE, BIN).args(["bb", &command]));
        assert_eq!(out.status.code(), Some(127));
        let line = one_clean_line(&out, "exec error");
        assert!(line.ends_with("command not found"), "{line}");
    }
}

#[test]
fn missing_interpreter_is_named_like_the_shell_does() {
    require_root!();
    fixture();
    let dir = user_tmpdir(ALICE, "interp");
    let script = dir.join("job.sh");
    fs::write(&script, "#!/nonexistent/interp -x\necho never\n").expect("script");
    // A host program whose ELF interpreter the busybox tree lacks.
    let elf = dir.join("hosttrue");
    fs::copy("/usr/bin/true", &elf).expect("copy true");
    sh(&format!("chown -R {ALICE} {0} && chmod 755 {0}/*", dir.display()));
    let out = run(as_user(ALICE, BIN).args(["bb"]).arg(&script));
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!("imageswitch: {}: /nonexistent/interp: bad interpreter: no such file or directory\n", script.display())
    );
    let out = run(as_user(ALICE, BIN).args(["bb"]).arg(&elf));
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert_eq!(stderr(&out), format!("imageswitch: {}: cannot execute: required file not found\n", elf.display()));
    // Still: a command that does not exist is "not found".
    let out = run(as_user(ALICE, BIN).args(["bb", "/nonexistent/cmd"]));
    assert_eq!(
        (out.status.code(), stderr(&out)),
        (Some(127), "imageswitch: /nonexistent/cmd: command not found\n".into())
    );
}

#[test]
fn binn_scripts_the_tree_cannot_see_run_through_a_descriptor() {
    require_root!();
    fixture();
    // Like slurmd's spool: a directory no sysroot binds, the script the
    // user's own.
    let spool = host_only("spool");
    let job = spool.0.join("job42");
    sh(&format!("mkdir {0} && chown {ALICE} {0} && chmod 700 {0}", job.display()));
    let script = job.join("slurm_script");
    // `/.imgsw-fixture` exists only at the busybox tree's root.
    fs::write(&script, format!("#!{BINBB}/sh\necho \"args:$*\"\ntest -e /.imgsw-fixture && echo in-tree\n"))
        .expect("script");
    sh(&format!("chown {ALICE} {0} && chmod 700 {0}", script.display()));
    for (case, cwd) in [("from home", home_of(ALICE)), ("from the spool", job.clone())] {
        let out = run(as_user(ALICE, script.to_str().expect("utf8")).args(["a", "b c"]).current_dir(&cwd));
        assert_eq!(assert_ran(&out, case), "args:a b c\nin-tree\n", "{case}");
    }
    // $0 is the descriptor's name; a script the tree sees keeps its path.
    fs::write(&script, format!("#!{BINBB}/sh\necho \"$0\"\n")).expect("script");
    let out = run(&mut as_user(ALICE, script.to_str().expect("utf8")));
    assert!(assert_ran(&out, "$0").starts_with("/proc/self/fd/"), "{}", stdout(&out));
    let seen = user_tmpdir(ALICE, "seen-script").join("s");
    fs::copy(&script, &seen).expect("copy");
    sh(&format!("chown {ALICE} {0} && chmod 700 {0}", seen.display()));
    let out = run(&mut as_user(ALICE, seen.to_str().expect("utf8")));
    assert_eq!(assert_ran(&out, "visible $0"), format!("{}\n", seen.display()));
    // A script the caller cannot read is not run, as on the host; but bash
    // inside fails as for a missing file, where the host's says why.
    let secret = spool.0.join("secret.sh");
    for (interpreter, code, why) in
        [(format!("{BIN11}/bash"), 127, "No such file or directory"), ("/bin/bash".into(), 126, "Permission denied")]
    {
        fs::write(&secret, format!("#!{interpreter}\necho leaked\n")).expect("script");
        sh(&format!("chmod 711 {}", secret.display()));
        let out = run(&mut as_user(ALICE, secret.to_str().expect("utf8")));
        assert_eq!(out.status.code(), Some(code), "{interpreter}: {}", stderr(&out));
        assert!(stderr(&out).contains(why), "{interpreter}: {}", stderr(&out));
        assert!(!stdout(&out).contains("leaked"), "{}", stdout(&out));
    }
}

#[test]
fn the_command_starts_with_what_the_callers_shell_had() {
    require_root!();
    fixture();
    // What a program sees of its limits, umask, signal dispositions and mask,
    // groups, niceness, personality flags and dumpability (/proc/PID of a
    // non-dumpable process is root's): the same on the host and in the tree
    // (trixie: the same execution domain as the host).
    let probe = "umask; grep -E '^(SigIgn|SigBlk|Groups)' /proc/self/status; cat /proc/self/limits; nice; \
                 cat /proc/self/personality; stat -c %u /proc/\\$\\$/status";
    let setups = [
        "true",
        "umask 027; trap '' INT QUIT TSTP HUP",
        "ulimit -S -s unlimited; ulimit -S -n 512; ulimit -S -c 0; ulimit -S -u 3000; ulimit -S -v 8000000",
        "umask 077; trap '' PIPE USR1",
    ];
    for setup in setups {
        for wrapper in ["", "nice -n 7 setarch x86_64 --uname-2.6"] {
            let host = run(&mut sh_as(ALICE, &format!("{setup}; {wrapper} sh -c \"{probe}\"")));
            let inside = run(&mut sh_as(ALICE, &format!("{setup}; {wrapper} {BIN} trixie sh -c \"{probe}\"")));
            let case = format!("{setup} / {wrapper}");
            assert_eq!(assert_ran(&inside, &case), assert_ran(&host, &case), "{case}");
        }
    }
}
