//! End to end, as a real unprivileged user, against the installed setuid-root
//! binary and real debootstrapped trees (see tests/common/mod.rs).

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use common::*;
use test_support::mountinfo;

fn imageswitch_as(user: &str, args: &[&str]) -> std::process::Output {
    run(as_user(user, BIN).args(args))
}

#[test]
fn i386_tree_reports_i686_and_its_own_release() {
    require_root!();
    let f = fixture();
    let out = imageswitch_as(ALICE, &["deb11", "sh", "-c", "uname -m; cat /etc/debian_version"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let expected = fs::read_to_string(f.deb11.join("etc/debian_version")).expect("release");
    assert_eq!(stdout(&out), format!("i686\n{expected}"));
    assert!(expected.starts_with("11."), "bullseye tree expected, got {expected}");
}

#[test]
fn amd64_tree_reports_x86_64_and_its_own_release() {
    require_root!();
    let f = fixture();
    let out = imageswitch_as(BOB, &["trixie", "sh", "-c", "uname -m; cat /etc/debian_version"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let expected = fs::read_to_string(f.trixie.join("etc/debian_version")).expect("release");
    assert_eq!(stdout(&out), format!("x86_64\n{expected}"));
    assert_ne!(expected, fs::read_to_string("/etc/debian_version").unwrap_or_default());
}

#[test]
fn keeps_the_callers_directory() {
    require_root!();
    fixture();
    let dir = user_tmpdir(ALICE, "cwd");
    let out = run(as_user(ALICE, BIN).args(["deb11", "pwd"]).current_dir(&dir));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim_end(), dir.display().to_string());
    assert!(stderr(&out).is_empty(), "no warning expected: {}", stderr(&out));
}

#[test]
fn directory_only_on_the_host_warns_and_starts_in_home() {
    require_root!();
    fixture();
    let dir = format!("{PREFIX}/hostonly-{}", std::process::id());
    sh(&format!("mkdir -p {dir} && chmod 755 {dir}"));
    let out = run(as_user(ALICE, BIN).args(["deb11", "pwd"]).current_dir(&dir));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim_end(), home_of(ALICE).display().to_string());
    assert!(stderr(&out).contains(&format!("warning: {dir} does not exist in deb11")), "{}", stderr(&out));
    let _ = fs::remove_dir(&dir);
}

#[test]
fn working_directory_missing_from_the_tree_fails_when_required() {
    require_root!();
    fixture();
    let dir = format!("{PREFIX}/hostonly-required-{}", std::process::id());
    sh(&format!("mkdir -p {dir} && chmod 755 {dir}"));
    let line = format!("imageswitch: bb: {dir} does not exist in bb; not starting anywhere else (require_cwd)\n");
    // By flag (what the SPANK plugin passes), and by the sysroot's setting.
    let by_flag = run(as_user(ALICE, BIN).args(["--require-cwd", "bb", "sh", "-c", "echo ran"]).current_dir(&dir));
    let by_config = run(as_user(ALICE, BIN).args(["bb-requirecwd", "sh", "-c", "echo ran"]).current_dir(&dir));
    let interactive = run(as_user(ALICE, BIN).args(["bb", "sh", "-c", "echo ran"]).current_dir(&dir));
    let _ = fs::remove_dir(&dir);
    assert_eq!(by_flag.status.code(), Some(125), "{}", stderr(&by_flag));
    assert_eq!((stdout(&by_flag), stderr(&by_flag)), (String::new(), line.clone()));
    assert_eq!(by_config.status.code(), Some(125), "{}", stderr(&by_config));
    assert_eq!(
        (stdout(&by_config), stderr(&by_config)),
        (String::new(), line.replace("in bb;", "in bb-requirecwd;").replace(": bb:", ": bb-requirecwd:"))
    );
    // Without it, today's warning and fallback to home.
    assert_eq!(interactive.status.code(), Some(0));
    assert_eq!(stdout(&interactive), "ran\n");
    assert!(stderr(&interactive).contains("warning"), "{}", stderr(&interactive));
    // Where the directory exists in the tree, both just start there.
    let here = user_tmpdir(ALICE, "required");
    for args in [&["--require-cwd", "bb", "pwd"][..], &["bb-requirecwd", "pwd"]] {
        let out = run(as_user(ALICE, BIN).args(args).current_dir(&here));
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), format!("{}\n", here.display()));
    }
    let _ = fs::remove_dir(&here);
}

#[test]
fn pwd_names_the_directory_the_command_starts_in() {
    require_root!();
    fixture();
    let home = home_of(ALICE).display().to_string();
    // `env`, not a shell: a shell quietly replaces a PWD that does not match.
    let started = |out: &std::process::Output| {
        assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
        let text = stdout(out);
        let pwd = text.lines().find_map(|l| l.strip_prefix("PWD=")).map(str::to_string);
        (pwd.unwrap_or_default(), text.lines().last().unwrap_or_default().to_string())
    };
    let show = ["sh", "-c", "env; exec pwd"];
    let show_inside = "sh -c 'env; exec pwd'";
    // Falling back to home.
    let hostonly = format!("{PREFIX}/hostonly-pwd-{}", std::process::id());
    sh(&format!("mkdir -p {hostonly} && chmod 755 {hostonly}"));
    let out = run(as_user(ALICE, "env")
        .arg(format!("PWD={hostonly}"))
        .arg(BIN)
        .arg("bb")
        .args(["env"])
        .current_dir(&hostonly));
    assert_eq!(stdout(&out).lines().find_map(|l| l.strip_prefix("PWD=")), Some(home.as_str()), "{}", stderr(&out));
    let out = run(as_user(ALICE, BIN).arg("bb").args(show).current_dir(&hostonly));
    assert_eq!(started(&out), (home.clone(), home.clone()));
    // A logical path that exists only on the host: the physical one, bound
    // from the host's /tmp, is where it starts.
    let physical = user_tmpdir(ALICE, "pwd-physical");
    let p = physical.display().to_string();
    let logical = format!("{PREFIX}/pwd-link-{}", std::process::id());
    sh(&format!("ln -sfn {p} {logical}"));
    let out = run(as_user(ALICE, "sh").args(["-c", &format!("cd {logical} && exec {BIN} bb {show_inside}")]));
    assert_eq!(started(&out), (p.clone(), p.clone()));
    // The logical path where it does exist inside: kept.
    let inside = format!("{home}/imgsw-pwd-link-{}", std::process::id());
    run(as_user(ALICE, "ln").args(["-sfn", &p, &inside]));
    let out = run(as_user(ALICE, "sh").args(["-c", &format!("cd {inside} && exec {BIN} bb {show_inside}")]));
    assert_eq!(started(&out), (inside.clone(), p.clone()));
    let _ = fs::remove_file(&inside);
    let _ = fs::remove_file(&logical);
    let _ = fs::remove_dir(&physical);
    let _ = fs::remove_dir(&hostonly);
}

#[test]
fn home_files_are_visible_and_writable() {
    require_root!();
    fixture();
    let name = format!("e2e-home-{}-{}", std::process::id(), unique());
    let host_file = home_of(ALICE).join(&name);
    let out = imageswitch_as(ALICE, &["trixie", "sh", "-c", &format!("echo inside > ~/{name} && cat ~/{name}")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "inside\n");
    let meta = fs::metadata(&host_file).expect("file written through the bind exists on the host");
    let alice_uid = nix::unistd::User::from_name(ALICE).expect("nss").expect("alice").uid.as_raw();
    assert_eq!(meta.uid(), alice_uid);
    assert_eq!(fs::read_to_string(&host_file).expect("read"), "inside\n");
    let _ = fs::remove_file(host_file);
}

#[test]
fn logger_inside_reaches_the_configured_socket_and_switch_is_audited() {
    require_root!();
    let f = fixture();
    let marker = format!("e2e-logger-{}-{}", std::process::id(), unique());
    let out = imageswitch_as(ALICE, &["deb11", "logger", "-t", "e2e", &marker]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let line = f.wait_for_log(&marker).expect("logger's record reached the listener bound on /dev/log");
    assert!(line.contains("e2e"), "{line}");
    let audit = f.wait_for_log(&format!("command=\"logger -t e2e {marker}\"")).expect("audit record");
    assert!(audit.starts_with("<86>imageswitch["), "{audit}");
    assert!(audit.contains(&format!("user={ALICE}")) && audit.contains("sysroot=deb11"), "{audit}");
}

#[test]
fn shebang_script_runs_under_the_trees_shell() {
    require_root!();
    fixture();
    let dir = user_tmpdir(ALICE, "shebang");
    let script = dir.join("job.sh");
    fs::write(&script, format!("#!{BIN11}/sh\nuname -m\ncat /etc/debian_version\necho \"args:$*\"\n")).expect("script");
    sh(&format!("chown {ALICE} {0} && chmod 755 {0}", script.display()));
    let out = run(as_user(ALICE, script.to_str().expect("utf8")).args(["a", "b c"]).current_dir(&dir));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0], "i686");
    assert!(lines[1].starts_with("11."), "the i386 tree is bullseye: {text}");
    assert_eq!(lines[2], "args:a b c");
}

#[test]
fn nested_bin_dir_script_inside_the_same_sysroot() {
    require_root!();
    fixture();
    let out = run(as_user(ALICE, &alias("imgsw-deb11")).args(["-c", &format!("{BIN11}/sh -c 'uname -m'")]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "i686\n");
}

#[test]
fn alias_behaves_like_a_shell() {
    require_root!();
    fixture();
    let out = run(as_user(ALICE, &alias("imgsw-deb11")).args(["-c", "echo $0 $IMAGESWITCH_SYSROOT; exit 3"]));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(stdout(&out), "/bin/bash deb11\n");
}

#[test]
fn no_command_starts_a_login_shell() {
    require_root!();
    fixture();
    let out = as_user(ALICE, BIN)
        .args(["trixie"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(b"echo \"$0\"; shopt -q login_shell && echo login\n")?;
            child.wait_with_output()
        })
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "-bash\nlogin\n");
}

#[test]
fn exit_statuses_follow_the_chroot_convention() {
    require_root!();
    fixture();
    let own = imageswitch_as(ALICE, &["trixie", "sh", "-c", "exit 42"]);
    assert_eq!(own.status.code(), Some(42));

    let missing = imageswitch_as(ALICE, &["trixie", "no-such-command-xyz"]);
    assert_eq!(missing.status.code(), Some(127));
    assert_eq!(stderr(&missing), "imageswitch: no-such-command-xyz: command not found\n");

    let not_exec = imageswitch_as(ALICE, &["trixie", "/etc/debian_version"]);
    assert_eq!(not_exec.status.code(), Some(126));
    assert_eq!(stderr(&not_exec), "imageswitch: /etc/debian_version: permission denied\n");

    let unknown = imageswitch_as(ALICE, &["no-such-sysroot"]);
    assert_eq!(unknown.status.code(), Some(125));
    assert_eq!(stderr(&unknown), "imageswitch: unknown sysroot name \"no-such-sysroot\" (see imageswitch --list)\n");
}

#[test]
fn user_outside_users_and_groups_is_refused() {
    require_root!();
    let f = fixture();
    let before = host_mounts();
    let out = imageswitch_as(BOB, &["deb11", "true"]);
    assert_eq!(out.status.code(), Some(125));
    // Word for word what an unknown name gets: the name tells bob nothing.
    assert_eq!(stderr(&out), "imageswitch: unknown sysroot name \"deb11\" (see imageswitch --list)\n");
    assert!(stdout(&out).is_empty());
    assert_eq!(host_mounts(), before);
    f.wait_for_log(&format!("refused: user={BOB}")).expect("refusal audited");
    // Refused by name through the alias too, and bb-alice lets only alice in.
    assert_eq!(run(as_user(BOB, &alias("imgsw-deb11")).args(["-c", "true"])).status.code(), Some(125));
    assert_eq!(imageswitch_as(BOB, &["bb-alice", "true"]).status.code(), Some(125));
    assert_eq!(imageswitch_as(ALICE, &["bb-alice", "true"]).status.code(), Some(0));
}

#[test]
fn list_shows_only_what_the_user_may_enter() {
    require_root!();
    fixture();
    let alice = stdout(&imageswitch_as(ALICE, &["--list"]));
    let bob = stdout(&imageswitch_as(BOB, &["--list"]));
    assert!(alice.lines().any(|l| l.starts_with("deb11\t")), "{alice}");
    assert!(!bob.lines().any(|l| l.starts_with("deb11\t")), "{bob}");
    assert!(bob.lines().any(|l| l.starts_with("trixie\t")), "{bob}");
    assert!(!alice.lines().any(|l| l.starts_with("bb-broken")), "{alice}");
}

#[test]
fn broken_entry_is_reported_with_its_position_and_others_still_work() {
    require_root!();
    fixture();
    let out = imageswitch_as(ALICE, &["bb-broken", "true"]);
    assert_eq!(out.status.code(), Some(125));
    let err = stderr(&out);
    assert!(err.starts_with(&format!("imageswitch: {TEST_CONFIG}:")), "{err}");
    assert!(err.contains(": unknown key \"pth\" in [sysroot.bb-broken]"), "{err}");
    assert_eq!(imageswitch_as(ALICE, &["bb", "true"]).status.code(), Some(0));
}

#[test]
fn missing_tree_is_a_clear_error_and_mounts_nothing() {
    require_root!();
    fixture();
    let before = host_mounts();
    let out = imageswitch_as(ALICE, &["bb-missing", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        stderr(&out),
        format!("imageswitch: bb-missing: tree {PREFIX}/trees/does-not-exist: no such file or directory\n")
    );
    assert_eq!(host_mounts(), before);
}

#[test]
fn root_owned_generation_symlink_is_followed() {
    require_root!();
    fixture();
    let out = imageswitch_as(ALICE, &["bb-rootlink", "cat", "/etc/debian_version"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "busybox\n");
}

#[test]
fn host_mount_table_is_unchanged_after_entries() {
    require_root!();
    fixture();
    let before = host_mounts();
    for sysroot in ["deb11", "trixie", "bb"] {
        let out = imageswitch_as(ALICE, &[sysroot, "sh", "-c", "test -e /proc/self/mountinfo"]);
        assert_eq!(out.status.code(), Some(0), "{sysroot}: {}", stderr(&out));
    }
    assert_eq!(host_mounts(), before);
}

#[test]
fn binds_are_nosuid_nodev_and_proc_noexec_inside() {
    require_root!();
    fixture();
    let out = imageswitch_as(ALICE, &["trixie", "cat", "/proc/self/mountinfo"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let table = stdout(&out);
    let mounts = mountinfo::parse(&table);
    let options = |mountpoint: &str| -> String {
        mounts
            .iter()
            .find(|m| m.point == mountpoint)
            .map(|m| m.options.clone())
            .unwrap_or_else(|| panic!("{mountpoint} not mounted inside:\n{table}"))
    };
    for bind in ["/home", "/tmp"] {
        let o = options(bind);
        assert!(o.contains("nosuid") && o.contains("nodev"), "{bind}: {o}");
    }
    let proc_opts = options("/proc");
    assert!(proc_opts.contains("nosuid") && proc_opts.contains("nodev") && proc_opts.contains("noexec"), "{proc_opts}");
    assert!(options("/dev").contains("nosuid"));
    assert!(!options("/dev").contains("nodev"), "/dev must keep device access");
}

#[test]
fn help_and_version_need_no_privilege() {
    require_root!();
    fixture();
    let dir = std::env::temp_dir().join(format!("imageswitch-plain-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("mkdir");
    let plain = dir.join("imageswitch");
    // Copied by a child process: a write descriptor held in this
    // multi-threaded process could leak into a concurrent fork (ETXTBSY).
    sh(&format!("install -m 755 {BIN} {}", plain.display()));
    let out = run(Command::new(&plain).arg("--version"));
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).starts_with("imageswitch "));
    // Without the setuid bit it says so, instead of half-working.
    let out = run(as_user(ALICE, plain.to_str().expect("utf8")).args(["bb", "true"]));
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("not running as root: install the binary setuid root"), "{}", stderr(&out));
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn sigpipe_disposition_is_the_callers() {
    require_root!();
    fixture();
    // With SIGPIPE at its default, `yes` dies of it (141); had imageswitch left
    // it ignored, `yes` would see EPIPE and exit 1.
    let out = imageswitch_as(ALICE, &["trixie", "bash", "-c", "yes | head -n1 >/dev/null; echo ${PIPESTATUS[0]}"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "141\n");
}

/// tests/support/oldkernel.c: runs a program as a user under a seccomp
/// filter answering ENOSYS for open_tree, move_mount, mount_setattr, openat2.
fn oldkernel() -> String {
    let out = format!("{PREFIX}/bin/oldkernel");
    fs::copy(test_support::c_program("oldkernel", &[]), format!("{out}.new")).expect("copy oldkernel");
    fs::rename(format!("{out}.new"), &out).expect("install oldkernel");
    out
}

#[test]
fn kernels_without_the_new_mount_api_get_the_same_view() {
    require_root!();
    fixture();
    let helper = oldkernel();
    let before = host_mounts();
    let dir = user_tmpdir(ALICE, "oldkernel");
    let name = format!("old-{}", unique());
    let script = format!(
        "uname -m; pwd; echo x > ~/{name} && rm ~/{name} && echo home-writable; \
         cat /proc/self/mountinfo"
    );
    let out = run(Command::new(&helper).args([ALICE, BIN, "deb11", "sh", "-c", &script]).current_dir(&dir));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("i686"));
    assert_eq!(lines.next(), Some(dir.to_str().expect("utf8")));
    assert_eq!(lines.next(), Some("home-writable"));
    let table = mountinfo::parse(&lines.collect::<Vec<_>>().join("\n"));
    let top = |point: &str| mountinfo::top(&table, point).map(|m| m.options.as_str()).unwrap_or_default();
    for (point, wanted) in [
        ("/proc", &["nosuid", "nodev", "noexec"][..]),
        ("/sys", &["nosuid", "nodev", "noexec"]),
        ("/dev", &["nosuid"]),
        ("/dev/pts", &["nosuid"]),
        ("/home", &["nosuid", "nodev"]),
        ("/tmp", &["nosuid", "nodev"]),
    ] {
        let options = top(point);
        for flag in wanted {
            assert!(options.split(',').any(|o| o == *flag), "{point} lacks {flag}: {options:?}\n{text}");
        }
    }
    assert!(!top("/dev").split(',').any(|o| o == "nodev"), "/dev keeps device access");
    assert_eq!(host_mounts(), before);
}

#[test]
fn torque_style_login_job_shell_from_a_bin_dir() {
    require_root!();
    fixture();
    // pbs_mom runs `qsub -S /binN/bash` as execv("/binN/bash", ["-bash"]) with
    // the job script on standard input.
    let out = as_user(ALICE, "/bin/bash")
        .args(["-c", &format!("exec -a -bash {BIN11}/bash")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(b"uname -m; shopt -q login_shell && echo login; echo $0\n")?;
            child.wait_with_output()
        })
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "i686\nlogin\n-bash\n");
}
