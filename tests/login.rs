//! Entering a sysroot feels like logging into it (issue 8): the caller's own
//! account whatever NSS source it comes from, the host's files, the caller's
//! session directory, the default binds and the prompt. As real users (local,
//! created after the tree, LDAP-only through a real slapd and nslcd) against
//! the installed setuid binary. These tests change host state (nsswitch.conf,
//! accounts, time zone, /etc/hosts, resolv.conf), restore it on drop, and run
//! one at a time.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};

use common::*;
use test_support::{Removed, mountinfo};

const DEB11_TREE: &str = "/var/cache/imageswitch-test/bullseye-i386";
const LDAP_DIR: &str = "/var/lib/imageswitch-test/ldap";
/// Exists only in LDAP (tests/support/ldap.sh), with LDAP-only groups.
const LDAP_USER: &str = "imgsw-ldapuser";
const LDAP_UID: u32 = 7001;
/// An LDAP-only group that imgsw-alice (local) is also a member of.
const LDAP_GROUP_GID: u32 = 7002;
/// A local user created by the test, after the trees were built.
const LATE: &str = "imgsw-late";
/// What a login shows of who you are: name, group names, passwd entry, and
/// the owner and group names `ls -l` prints for a file in your home.
const WHO_AM_I: &str = "whoami; id -nG; getent passwd \"$(id -u)\"; touch ~/.imgsw-probe; \
                        ls -l ~/.imgsw-probe | awk '{print $3, $4}'";
/// `stat -f -c %t` of an overlay mount.
const OVERLAYFS_MAGIC: &str = "794c7630";
const PYTHON_WHO: &str = "import os, pwd; print(pwd.getpwuid(os.getuid()))";

fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Puts a host file back as it was (contents and mode, or link target) on drop.
struct Restore {
    path: PathBuf,
    link: Option<PathBuf>,
    contents: Option<(Vec<u8>, u32)>,
}

impl Restore {
    fn new(path: &str) -> Restore {
        let path = PathBuf::from(path);
        let link = fs::read_link(&path).ok();
        let contents = if link.is_some() {
            None
        } else {
            fs::read(&path).ok().map(|bytes| (bytes, fs::metadata(&path).expect("mode").mode() & 0o7777))
        };
        Restore { path, link, contents }
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        if fs::symlink_metadata(&self.path).is_ok_and(|m| m.file_type().is_symlink()) || self.link.is_some() {
            let _ = fs::remove_file(&self.path);
        }
        match (&self.link, &self.contents) {
            (Some(target), _) => {
                let _ = symlink(target, &self.path);
            }
            (None, Some((bytes, mode))) => {
                let _ = fs::write(&self.path, bytes);
                let _ = fs::set_permissions(&self.path, fs::Permissions::from_mode(*mode));
            }
            (None, None) => {
                let _ = fs::remove_file(&self.path);
            }
        }
    }
}

/// slapd and nslcd from tests/support/ldap.sh, stopped and nsswitch.conf
/// restored on drop, whatever happened.
struct Ldap;

fn ldap_script(action: &str) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(format!("{}/tests/support/ldap.sh", env!("CARGO_MANIFEST_DIR"))).args([action, LDAP_DIR]);
    cmd
}

impl Ldap {
    fn start() -> Ldap {
        let guard = Ldap;
        let out = ldap_script("start").output().expect("ldap.sh");
        assert!(out.status.success(), "starting slapd and nslcd: {}", stderr(&out));
        guard
    }

    fn pause(&self) {
        assert!(ldap_script("pause").status().expect("ldap.sh").success());
    }
}

impl Drop for Ldap {
    fn drop(&mut self) {
        let _ = ldap_script("stop").status();
    }
}

/// The host's account databases, put back on drop.
fn save_accounts() -> [Restore; 4] {
    ["/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"].map(Restore::new)
}

/// `imgsw-late`, created now: its gecos holds bytes that are not UTF-8 and
/// an escape sequence, and it is in a group whose name is not UTF-8.
fn create_late_user() -> ([Restore; 4], Removed) {
    if Command::new("id").arg(LATE).stdout(Stdio::null()).stderr(Stdio::null()).status().expect("id").success() {
        sh(&format!("userdel -r {LATE} 2>/dev/null || true"));
    }
    let saved = save_accounts();
    sh(&format!("useradd -m -s /bin/bash {LATE}"));
    let home = Removed(home_of(LATE));
    let passwd = fs::read("/etc/passwd").expect("passwd");
    let odd: Vec<u8> = passwd
        .split_inclusive(|&b| b == b'\n')
        .flat_map(|line| {
            let mut fields: Vec<Vec<u8>> = line.split(|&b| b == b':').map(<[u8]>::to_vec).collect();
            if fields[0] == LATE.as_bytes() {
                fields[4] = b"Late \xff\x1b[7m User".to_vec();
            }
            fields.join(&b':')
        })
        .collect();
    fs::write("/etc/passwd", odd).expect("odd gecos");
    let mut group = fs::read("/etc/group").expect("group");
    group.extend_from_slice(b"imgsw-caf\xe9:x:7100:");
    group.extend_from_slice(LATE.as_bytes());
    group.push(b'\n');
    fs::write("/etc/group", group).expect("non-UTF-8 group");
    (saved, home)
}

/// A busybox tree with the host's Python (its libraries and the standard
/// library's plain modules) and an empty /run, so no /run/user.
fn python_tree() -> Removed {
    let tree = scratch_tree("login-py");
    sh(&format!(
        "t={t}; mkdir -p $t/usr/bin $t/run $t/usr/lib/python3.11/lib-dynload && cp /usr/bin/python3.11 $t/usr/bin/python3 \
         && for l in $(ldd /usr/bin/python3.11 | grep -o '/[^ ]*'); do mkdir -p $t$(dirname $l); cp -L $l $t$l; done \
         && cp -a /usr/lib/python3.11/encodings /usr/lib/python3.11/collections /usr/lib/python3.11/*.py $t/usr/lib/python3.11/",
        t = tree.display()
    ));
    Removed(tree)
}

/// A test configuration: `sysroots` after a `[defaults]` without a log socket.
fn config(defaults: &str, sysroots: &str) -> String {
    format!("[defaults]\nlog_socket = \"\"\n{defaults}\n{sysroots}")
}

fn sysroot(name: &str, path: &Path, extra: &str) -> String {
    format!("[sysroot.{name}]\npath = \"{}\"\n{extra}\n", path.display())
}

/// Runs the installed binary with `argv` as a user (`setpriv` options in
/// `who`), in a private mount namespace whose test configuration is `config`.
fn enter_with(config: &str, who: &[String], cwd: &Path, env: &[(&str, &str)], argv: &[&str]) -> Output {
    let dir = Removed(PathBuf::from(format!("{PREFIX}/login-{}-{}", std::process::id(), unique())));
    fs::create_dir_all(&dir.0).expect("mkdir");
    fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o755)).expect("chmod");
    let conf = dir.0.join("sysroots.toml");
    fs::write(&conf, config).expect("config");
    fs::set_permissions(&conf, fs::Permissions::from_mode(0o644)).expect("chmod");
    // IMAGESWITCH_TEST_PINNED=1 (tests/run's second pass): the entry's
    // namespace has shared mounts, as on a systemd host, so it goes through a
    // pinned namespace (src/pin.rs) and every test here checks that view too.
    // A slave first: nothing mounted here reaches the host, whatever it shares.
    let (propagation, share) = match std::env::var("IMAGESWITCH_TEST_PINNED").as_deref() {
        Ok("1") => ("--propagation=slave", "mount --make-rshared / && "),
        _ => ("--propagation=private", ""),
    };
    let script = format!("{share}mount --bind {} {TEST_CONFIG} && exec setpriv \"$@\"", conf.display());
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", propagation, "--", "sh", "-ec", &script, "sh"])
        .args(who)
        .arg("--")
        .arg(BIN)
        .args(argv)
        .current_dir(cwd);
    cmd.envs(env.iter().copied());
    run(&mut cmd)
}

/// setpriv options for `user` with their passwd gid (an LDAP user's primary
/// group is not named after them) and their groups.
fn login_as(user: &str) -> Vec<String> {
    vec![format!("--reuid={user}"), format!("--regid={}", id_of(user, "-g")), "--init-groups".into()]
}

/// `program` run on the host as `user` would be after logging in.
fn on_host(user: &str, program: &str) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(login_as(user)).arg("--").arg(program).current_dir(home_of(user)).env("HOME", home_of(user));
    cmd
}

fn id_of(user: &str, flag: &str) -> u32 {
    let out = run(Command::new("id").args([flag, user]));
    stdout(&out).trim().parse().expect("numeric id")
}

/// The tree's passwd and group, to show nothing was written.
fn tree_accounts(tree: &Path) -> (Vec<u8>, Vec<u8>) {
    (fs::read(tree.join("etc/passwd")).unwrap_or_default(), fs::read(tree.join("etc/group")).unwrap_or_default())
}

#[test]
fn every_kind_of_nss_user_has_the_same_name_and_groups_inside_as_on_the_host() {
    require_root!();
    let _serial = serial();
    fixture();
    let py = python_tree();
    let deb11 = Path::new(DEB11_TREE);
    let before = (tree_accounts(deb11), tree_accounts(&py.0));
    let _late = create_late_user();
    let _ldap = Ldap::start();
    let ldap_home = Removed(home_of(LDAP_USER));
    sh(&format!("mkdir -p {h} && chown {LDAP_UID}:{LDAP_UID} {h}", h = ldap_home.0.display()));
    let conf = config(
        "binds = [\"/home\", \"/tmp\"]",
        &(sysroot("deb11", deb11, "personality = \"linux32\"") + &sysroot("py", &py.0, "")),
    );

    // Rows: created after the tree (odd gecos bytes, a non-UTF-8 group name),
    // only in LDAP, and local but in an LDAP-only group.
    for user in [LATE, LDAP_USER, ALICE] {
        let host = run(on_host(user, "sh").args(["-c", WHO_AM_I]));
        assert_eq!(host.status.code(), Some(0), "{user} on the host: {}", stderr(&host));
        assert!(stdout(&host).starts_with(&format!("{user}\n")), "{user} on the host: {}", stdout(&host));
        let inside = enter_with(&conf, &login_as(user), &home_of(user), &[], &["deb11", "sh", "-c", WHO_AM_I]);
        assert_eq!(stdout(&inside), stdout(&host), "{user}: {}", stderr(&inside));
        assert_eq!(inside.stdout, host.stdout, "{user}: the bytes differ");
        assert!(inside.stderr.is_empty(), "{user}: {}", stderr(&inside));

        let host = run(on_host(user, "/usr/bin/python3.11").args(["-I", "-S", "-c", PYTHON_WHO]));
        assert_eq!(host.status.code(), Some(0), "{user}: {}", stderr(&host));
        let inside = enter_with(
            &conf,
            &login_as(user),
            &home_of(user),
            &[],
            &["py", "/usr/bin/python3", "-I", "-S", "-c", PYTHON_WHO],
        );
        assert_eq!(stdout(&inside), stdout(&host), "{user}: {}", stderr(&inside));
    }
    assert_eq!((tree_accounts(deb11), tree_accounts(&py.0)), before, "a tree's passwd or group was written");
}

#[test]
fn the_trees_own_entry_for_the_uid_wins_and_other_entries_stay_as_the_tree_has_them() {
    require_root!();
    let _serial = serial();
    fixture();
    let tree = Removed(scratch_tree("login-own"));
    let (uid, gid) = (id_of(ALICE, "-u"), id_of(ALICE, "-g"));
    let passwd = format!("root:x:0:0:root:/root:/bin/sh\ntreename:x:{uid}:{gid}:in the tree:/home/{ALICE}:/bin/sh\n");
    let group = "root:x:0:\nother:x:4242:somebody\n";
    fs::write(tree.0.join("etc/passwd"), &passwd).expect("passwd");
    fs::write(tree.0.join("etc/group"), group).expect("group");
    // A host file the tree has no file for needs the per-entry overlay of
    // /etc; a bind under /etc stays visible over it; a host file the caller
    // cannot read is not shown.
    let bound = Removed(PathBuf::from(format!("/etc/imgsw-login-bind-{}", std::process::id())));
    let secret = Removed(PathBuf::from(format!("/etc/imgsw-login-secret-{}", std::process::id())));
    let only_host = Removed(PathBuf::from(format!("/etc/imgsw-login-only-host-{}", std::process::id())));
    sh(&format!(
        "mkdir -p {b} {t}{b} && echo carried > {b}/f && echo root-only > {s} && chmod 600 {s} && echo host-only > {o}",
        b = bound.0.display(),
        t = tree.0.display(),
        s = secret.0.display(),
        o = only_host.0.display()
    ));
    let conf = config(
        &format!("binds = [\"/home\", \"/tmp\", \"{}\"]", bound.0.display()),
        &sysroot("own", &tree.0, &format!("host_files = [\"{}\", \"{}\"]", secret.0.display(), only_host.0.display())),
    );
    let script = format!(
        "id -un; cat /etc/passwd; echo --; cat /etc/group; (echo x >> /etc/passwd) 2>/dev/null || echo refused; \
         cat {}/f {}; cat {} 2>/dev/null || echo no-secret; stat -f -c %t /etc; stat -c '%u %g %a' /etc/group",
        bound.0.display(),
        only_host.0.display(),
        secret.0.display()
    );
    let out = enter_with(&conf, &login_as(ALICE), &home_of(ALICE), &[], &["own", "sh", "-c", &script]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // alice's primary group and imgsw-physics are appended, by gid; the
    // tree's own lines come first, untouched.
    let physics = stdout(&run(Command::new("getent").args(["group", PHYSICS])));
    let physics_gid: u32 = physics.split(':').nth(2).expect("gid").parse().expect("gid");
    let mut added = [(gid, format!("{ALICE}:x:{gid}:")), (physics_gid, format!("{PHYSICS}:x:{physics_gid}:{ALICE}"))];
    added.sort();
    let added: String = added.iter().map(|(_, line)| format!("{line}\n")).collect();
    assert_eq!(
        stdout(&out),
        format!(
            "treename\n{passwd}--\n{group}{added}refused\ncarried\nhost-only\nno-secret\n{OVERLAYFS_MAGIC}\n0 0 644\n"
        ),
        "{}",
        stderr(&out)
    );
    let warning = format!("imageswitch: warning: own: host file {} not shown: permission denied\n", secret.0.display());
    assert_eq!(stderr(&out), warning);
    assert_eq!(fs::read_to_string(tree.0.join("etc/passwd")).expect("passwd"), passwd);
    assert_eq!(fs::read_to_string(tree.0.join("etc/group")).expect("group"), group);

    // A tree that has every id of the caller, and the same host file: no layer.
    fs::write(tree.0.join("etc/group"), format!("{group}{added}")).expect("group");
    let same = Removed(PathBuf::from(format!("/etc/imgsw-login-same-{}", std::process::id())));
    fs::write(&same.0, "same\n").expect("host file");
    fs::write(tree.0.join(same.0.strip_prefix("/").expect("absolute")), "same\n").expect("tree file");
    let conf = config(
        "binds = [\"/home\", \"/tmp\"]",
        &sysroot("own", &tree.0, &format!("host_files = [\"{}\"]", same.0.display())),
    );
    let out = enter_with(&conf, &login_as(ALICE), &home_of(ALICE), &[], &["own", "stat", "-f", "-c", "%t", "/etc"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_ne!(stdout(&out).trim(), OVERLAYFS_MAGIC);
}

#[test]
fn a_failing_directory_service_stops_cleanly_or_leaves_the_trees_view_whole() {
    require_root!();
    let _serial = serial();
    fixture();
    let deb11 = Path::new(DEB11_TREE);
    let before = tree_accounts(deb11);
    let ldap = Ldap::start();
    let (uid, gid) = (id_of(ALICE, "-u"), id_of(ALICE, "-g"));
    ldap.pause();
    let conf = config("binds = [\"/home\", \"/tmp\"]", &sysroot("deb11", deb11, "personality = \"linux32\""));

    // The caller is only in LDAP, which does not answer: no entry at all.
    let who = [format!("--reuid={LDAP_UID}"), format!("--regid={LDAP_UID}"), "--clear-groups".into()];
    let out = enter_with(&conf, &who, Path::new("/"), &[], &["deb11", "id"]);
    assert_eq!(out.status.code(), Some(125), "{}{}", stdout(&out), stderr(&out));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(
        err,
        format!("imageswitch: cannot resolve the calling user: uid {LDAP_UID}: the name service did not answer\n")
    );

    // A local caller whose LDAP group cannot be looked up: one warning line,
    // and the tree's own passwd and group, whole.
    let who = [format!("--reuid={uid}"), format!("--regid={gid}"), format!("--groups={gid},{LDAP_GROUP_GID}")];
    let out = enter_with(&conf, &who, &home_of(ALICE), &[], &["deb11", "sh", "-c", "cat /etc/passwd; cat /etc/group"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "cannot show your account inside (looking up group {LDAP_GROUP_GID}: the name service did not answer)"
        )) && err.contains("the tree's passwd and group apply"),
        "{err}"
    );
    let (passwd, group) = &before;
    assert_eq!(out.stdout, [passwd.as_slice(), group.as_slice()].concat());
    assert_eq!(tree_accounts(deb11), before, "the tree's passwd or group was written");
}

#[test]
fn host_files_show_the_hosts_names_resolver_and_time_zone_read_only() {
    require_root!();
    let _serial = serial();
    fixture();
    let deb11 = Path::new(DEB11_TREE);
    let tree_files: Vec<Vec<u8>> = ["etc/resolv.conf", "etc/timezone", "etc/localtime"]
        .iter()
        .map(|f| fs::read(deb11.join(f)).unwrap_or_default())
        .collect();
    let _hosts = Restore::new("/etc/hosts");
    let mut hosts = fs::read("/etc/hosts").unwrap_or_default();
    hosts.extend_from_slice(b"192.0.2.7 imgsw-login-test-host\n");
    fs::write("/etc/hosts", hosts).expect("hosts");
    let _localtime = Restore::new("/etc/localtime");
    let _timezone = Restore::new("/etc/timezone");
    let _ = fs::remove_file("/etc/localtime");
    symlink("/usr/share/zoneinfo/America/Havana", "/etc/localtime").expect("zone link");
    fs::write("/etc/timezone", "America/Havana\n").expect("timezone");
    // systemd-resolved's layout: /etc/resolv.conf is a link into /run.
    let _resolv = Restore::new("/etc/resolv.conf");
    let stub = Removed(PathBuf::from("/run/imgsw-login-resolve"));
    fs::create_dir_all(&stub.0).expect("mkdir");
    fs::write(stub.0.join("stub-resolv.conf"), "nameserver 192.0.2.53\nsearch imgsw.test\n").expect("stub");
    let _ = fs::remove_file("/etc/resolv.conf");
    symlink(stub.0.join("stub-resolv.conf"), "/etc/resolv.conf").expect("resolv link");

    let script = "grep imgsw-login-test-host /etc/hosts; cat /etc/resolv.conf /etc/timezone; date '+%Z %z %H'";
    let host = run(as_user(ALICE, "sh").args(["-c", script]));
    assert!(stdout(&host).contains("imgsw-login-test-host") && stdout(&host).contains("America/Havana\nC"));
    let probe = format!("{script}; echo '-- mountinfo'; cat /proc/self/mountinfo");
    let out = run(as_user(ALICE, BIN).args(["deb11", "sh", "-c", &probe]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let (shown, table) = text.split_once("-- mountinfo\n").expect("two parts");
    assert_eq!(shown, stdout(&host), "{}", stderr(&out));
    let table = mountinfo::parse(table);
    let etc = mountinfo::top(&table, "/etc").expect("/etc mounted inside");
    assert!(etc.has_option("ro"), "/etc is not read-only inside: {:?}", etc.options);

    // host_files = [] for a sysroot: the tree's own files.
    let conf = config("binds = [\"/home\", \"/tmp\"]", &sysroot("deb11", deb11, "host_files = []"));
    let out = enter_with(
        &conf,
        &login_as(ALICE),
        &home_of(ALICE),
        &[],
        &["deb11", "sh", "-c", "cat /etc/timezone; date +%Z"],
    );
    assert_eq!(stdout(&out), "Etc/UTC\nUTC\n", "{}", stderr(&out));
    let after: Vec<Vec<u8>> = ["etc/resolv.conf", "etc/timezone", "etc/localtime"]
        .iter()
        .map(|f| fs::read(deb11.join(f)).unwrap_or_default())
        .collect();
    assert_eq!(after, tree_files, "the tree was written");
    assert!(!deb11.join("etc/hosts").exists());
}

#[test]
fn the_callers_own_session_directory_is_there_and_nobody_elses() {
    require_root!();
    let _serial = serial();
    fixture();
    let py = python_tree();
    let (alice, bob) = (id_of(ALICE, "-u"), id_of(BOB, "-u"));
    let mut made = Vec::new();
    for (user, uid) in [(ALICE, alice), (BOB, bob)] {
        let dir = PathBuf::from(format!("/run/user/{uid}"));
        if !dir.exists() {
            sh(&format!("mkdir -p {d} && chown {user}: {d} && chmod 700 {d}", d = dir.display()));
            made.push(Removed(dir));
        }
    }
    let socket = PathBuf::from(format!("/run/user/{alice}/imgsw-login.sock"));
    let _ = fs::remove_file(&socket);
    let _socket = Removed(socket.clone());
    let server = format!(
        "import socket; s = socket.socket(socket.AF_UNIX); s.bind('{}'); s.listen(1); c, _ = s.accept(); \
         c.sendall(b'hello from the host session\\n'); c.close()",
        socket.display()
    );
    let mut server = as_user(ALICE, "/usr/bin/python3.11").args(["-c", &server]).spawn().expect("server");
    for _ in 0..100 {
        if socket.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let client = "import os, socket; s = socket.socket(socket.AF_UNIX); \
                  s.connect(os.environ['XDG_RUNTIME_DIR'] + '/imgsw-login.sock'); print(s.recv(100).decode(), end=''); \
                  print(sorted(os.listdir('/run/user')))";
    let conf = config("binds = [\"/home\", \"/tmp\"]", &sysroot("py", &py.0, ""));
    let runtime = format!("/run/user/{alice}");
    let out = enter_with(
        &conf,
        &login_as(ALICE),
        &home_of(ALICE),
        &[("XDG_RUNTIME_DIR", &runtime)],
        &["py", "/usr/bin/python3", "-I", "-S", "-c", client],
    );
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(stdout(&out), format!("hello from the host session\n['{alice}']\n"), "{}", stderr(&out));
    assert!(!py.0.join("run/user").exists(), "the tree was written");
}

/// A tree with no /run at all (a minimal tarball that sysrootctl did not
/// build) has nowhere to show the caller's session directory without being
/// written: one warning line names the fix, and the command runs.
#[test]
fn a_tree_without_run_says_the_session_directory_is_not_shown_and_is_never_written() {
    require_root!();
    let _serial = serial();
    fixture();
    let alice = id_of(ALICE, "-u");
    let run_user = PathBuf::from(format!("/run/user/{alice}"));
    let _made = (!run_user.exists()).then(|| {
        sh(&format!("mkdir -p {d} && chown {ALICE}: {d} && chmod 700 {d}", d = run_user.display()));
        Removed(run_user.clone())
    });
    let tree = Removed(scratch_tree("login-norun"));
    sh(&format!("rm -rf {t}/run && mkdir -p {t}/home {t}/tmp", t = tree.0.display()));
    let conf = config("binds = [\"/home\", \"/tmp\"]", &sysroot("norun", &tree.0, ""));
    let probe = format!("test -e /run/user/{alice} && echo shown || echo absent");
    let out = enter_with(&conf, &login_as(ALICE), &home_of(ALICE), &[], &["norun", "sh", "-c", &probe]);
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), "absent\n"), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "imageswitch: warning: norun: /run/user/{alice} is not shown: the tree has no /run directory \
             (sysrootctl apply makes one)\n"
        )
    );
    assert!(!tree.0.join("run").exists(), "the tree was written");
}

#[test]
fn var_tmp_is_the_hosts_by_default_and_the_prompt_names_the_sysroot() {
    require_root!();
    let _serial = serial();
    fixture();
    let deb11 = Path::new(DEB11_TREE);
    let name = format!("imgsw-login-{}-{}", std::process::id(), unique());
    let host_file = Removed(PathBuf::from(format!("/var/tmp/{name}")));
    let inner_file = Removed(PathBuf::from(format!("/var/tmp/{name}-inside")));
    run(as_user(ALICE, "touch").arg(&host_file.0));
    let conf = config("", &sysroot("deb11", deb11, "personality = \"linux32\""));
    let script =
        format!("ls /var/tmp/{name} && touch /var/tmp/{name}-inside && echo \"$debian_chroot $IMAGESWITCH_SYSROOT\"");
    let out = enter_with(&conf, &login_as(ALICE), &home_of(ALICE), &[], &["deb11", "sh", "-c", &script]);
    assert_eq!(stdout(&out), format!("/var/tmp/{name}\ndeb11 deb11\n"), "{}", stderr(&out));
    assert!(inner_file.0.exists(), "a file made in /var/tmp inside is on the host");
    assert!(!deb11.join(format!("var/tmp/{name}-inside")).exists(), "the file landed in the tree");
    let out = enter_with(
        &conf,
        &login_as(ALICE),
        &home_of(ALICE),
        &[("debian_chroot", "mine")],
        &["deb11", "sh", "-c", "echo \"$debian_chroot $IMAGESWITCH_SYSROOT\""],
    );
    assert_eq!(stdout(&out), "mine deb11\n", "{}", stderr(&out));
}

#[test]
fn binds_under_a_directory_the_per_entry_view_overlays_stay_visible() {
    require_root!();
    let _serial = serial();
    fixture();
    let py = python_tree();
    let alice = id_of(ALICE, "-u");
    let run_user = PathBuf::from(format!("/run/user/{alice}"));
    let _made = (!run_user.exists()).then(|| {
        sh(&format!("mkdir -p {d} && chown {ALICE}: {d} && chmod 700 {d}", d = run_user.display()));
        Removed(run_user.clone())
    });
    let host = Removed(PathBuf::from(format!("/run/imgsw-login-bind-{}", unique())));
    sh(&format!("mkdir -p {h} && echo HOSTBIND > {h}/file", h = host.0.display()));
    // The tree has a mount point for the site's bind under /run, but no
    // /run/user: the caller's session directory needs an overlay of /run.
    sh(&format!("mkdir -p {t}/home {t}/tmp {t}{h}", t = py.0.display(), h = host.0.display()));
    let binds = format!("binds = [\"/home\", \"/tmp\", \"{}\"]", host.0.display());
    let conf = config(&binds, &sysroot("py", &py.0, ""));
    let script = format!(
        "import os; print(open('{}/file').read(), end=''); print(os.path.isdir('/run/user/{alice}'))",
        host.0.display()
    );
    let out = enter_with(
        &conf,
        &login_as(ALICE),
        &home_of(ALICE),
        &[],
        &["py", "/usr/bin/python3", "-I", "-S", "-c", &script],
    );
    assert_eq!(stdout(&out), "HOSTBIND\nTrue\n", "{}", stderr(&out));
    assert!(!py.0.join("run/user").exists(), "the tree was written");
}

#[test]
fn built_in_binds_a_hand_made_tree_lacks_never_stop_an_entry() {
    require_root!();
    let _serial = serial();
    fixture();
    // No var/tmp in this tree, and no `binds` key: the built-in /var/tmp is
    // bound only where the tree has it; stated, it is required.
    let py = python_tree();
    sh(&format!("mkdir -p {t}/home {t}/tmp", t = py.0.display()));
    let argv = ["py", "/usr/bin/python3", "-I", "-S", "-c", "import os; print(os.path.exists('/var/tmp'))"];
    let out = enter_with(&config("", &sysroot("py", &py.0, "")), &login_as(ALICE), &home_of(ALICE), &[], &argv);
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), "False\n"), "{}", stderr(&out));
    let stated = config("binds = [\"/home\", \"/tmp\", \"/var/tmp\"]", &sysroot("py", &py.0, ""));
    let out = enter_with(&stated, &login_as(ALICE), &home_of(ALICE), &[], &argv);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains("var/tmp"), "{}", stderr(&out));
}

/// A busybox tree with the mount points `sysrootctl apply` makes: passwd and
/// group without the caller, empty host files, resolv.conf a link (as
/// systemd-resolved trees have it), and /home and /tmp.
fn tree_with_mount_points(tag: &str) -> Removed {
    let tree = Removed(scratch_tree(tag));
    sh(&format!(
        "t={t}; mkdir -p $t/home $t/tmp $t/run && printf 'root:x:0:0:root:/root:/bin/sh\\n' > $t/etc/passwd \
         && printf 'root:x:0:\\n' > $t/etc/group && for f in hosts localtime timezone; do : > $t/etc/$f; done \
         && : > $t/run/resolv.conf && ln -s ../run/resolv.conf $t/etc/resolv.conf",
        t = tree.0.display()
    ));
    tree
}

/// The cache's files (name, contents), sorted.
fn cache_files() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(CACHE_DIR)
        .map(|dir| {
            dir.flatten()
                .map(|e| (e.file_name().to_string_lossy().into_owned(), fs::read(e.path()).unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Where the per-entry view's files are kept (imageswitch(8), PER-ENTRY VIEW).
const CACHE_DIR: &str = "/run/imageswitch/view";
/// What a caller unknown to [`tree_with_mount_points`] sees of the shown files:
/// their name, the host's files, and which of them are mounts, with flags.
const BOUND_FILES: &str = "id -un; cat /etc/hosts /etc/resolv.conf; md5sum /etc/localtime | cut -c1-32; \
     echo '-- mountinfo'; cat /proc/self/mountinfo";

#[test]
fn shown_files_are_bound_one_by_one_over_the_trees_mount_points_read_only() {
    require_root!();
    let _serial = serial();
    fixture();
    let tree = tree_with_mount_points("login-bound");
    let before = fs::read_dir(tree.0.join("etc")).expect("etc").flatten().map(|e| e.path()).collect::<Vec<_>>();
    let conf = config("binds = [\"/home\", \"/tmp\"]", &sysroot("bound", &tree.0, ""));
    let out = enter_with(&conf, &login_as(ALICE), &home_of(ALICE), &[], &["bound", "sh", "-c", BOUND_FILES]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let localtime = stdout(&run(Command::new("sh").args(["-c", "md5sum /etc/localtime | cut -c1-32"])));
    let want = format!(
        "{ALICE}\n{}{}{localtime}",
        fs::read_to_string("/etc/hosts").unwrap_or_default(),
        fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
    );
    let text = stdout(&out);
    let (shown, table) = text.split_once("-- mountinfo\n").expect("two parts");
    assert_eq!(shown, want, "{}", stderr(&out));
    // No overlay of /etc: one read-only mount per file that differs (the
    // host may have no /etc/timezone; then the tree's own stays).
    let mut mounts =
        vec!["/etc/group ro", "/etc/hosts ro", "/etc/localtime ro", "/etc/passwd ro", "/etc/resolv.conf ro"];
    if Path::new("/etc/timezone").exists() {
        mounts.push("/etc/timezone ro");
    }
    mounts.sort();
    let mut seen: Vec<String> = mountinfo::parse(table)
        .into_iter()
        .filter(|m| m.point.starts_with("/etc"))
        .map(|m| format!("{} {}", m.point, m.options.split(',').next().unwrap_or_default()))
        .collect();
    seen.sort();
    assert_eq!(seen, mounts, "{table}");
    // The tree is as it was: the same names, passwd and group unchanged, host files still empty.
    let after = fs::read_dir(tree.0.join("etc")).expect("etc").flatten().map(|e| e.path()).collect::<Vec<_>>();
    assert_eq!(after, before);
    assert_eq!(tree_accounts(&tree.0), (b"root:x:0:0:root:/root:/bin/sh\n".to_vec(), b"root:x:0:\n".to_vec()));
    assert_eq!(fs::read(tree.0.join("etc/hosts")).expect("hosts"), b"");
}

/// THREATS row 32: the per-entry view's file cache.
#[test]
fn row32_the_per_entry_file_cache_is_root_only_and_never_trusted_blindly() {
    require_root!();
    let _serial = serial();
    fixture();
    let tree = tree_with_mount_points("login-cache");
    let conf = config("binds = [\"/home\", \"/tmp\"]", &sysroot("cache", &tree.0, ""));
    let who_am_i = ["cache", "sh", "-c", "id -un; grep -c . /etc/passwd"];
    let enter = || enter_with(&conf, &login_as(ALICE), &home_of(ALICE), &[], &who_am_i);
    let right = format!("{ALICE}\n2\n");
    sh(&format!("rm -rf {CACHE_DIR}"));
    let out = enter();
    assert_eq!(stdout(&out), right, "{}", stderr(&out));

    // Root's alone: no user can list, read or add to it.
    let meta = fs::symlink_metadata(CACHE_DIR).expect("cache dir");
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o700));
    let parent = fs::symlink_metadata("/run/imageswitch").expect("parent");
    assert_eq!((parent.uid(), parent.mode() & 0o022), (0, 0));
    let files = cache_files();
    assert!(!files.is_empty());
    for (name, _) in &files {
        let meta = fs::symlink_metadata(Path::new(CACHE_DIR).join(name)).expect("file");
        assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o7777), (0, 0, 0o644), "{name}");
    }
    let attempts = format!("ls {d} || cat {d}/{n} || touch {d}/x || echo all-refused", d = CACHE_DIR, n = files[0].0);
    let out = run(as_user(ALICE, "sh").args(["-c", &attempts]));
    assert_eq!(stdout(&out), "all-refused\n", "{}", stderr(&out));

    // A file under the right name with other contents (only root could put
    // it there) is compared, not trusted: the entry rewrites it.
    for (name, contents) in &files {
        let mut other = contents.clone();
        other.iter_mut().for_each(|b| *b = if *b == b'\n' { b'\n' } else { b'X' });
        fs::write(Path::new(CACHE_DIR).join(name), other).expect("poison");
    }
    let out = enter();
    assert_eq!(stdout(&out), right, "{}", stderr(&out));
    assert!(cache_files() == files, "the poisoned files were not replaced");

    // An entry keeps its files when the cache is emptied under it.
    let (late_conf, late) = (conf.clone(), ["cache", "sh", "-c", "sleep 1; id -un; grep -c . /etc/passwd"]);
    let running = std::thread::spawn(move || enter_with(&late_conf, &login_as(ALICE), &home_of(ALICE), &[], &late));
    std::thread::sleep(std::time::Duration::from_millis(500));
    sh(&format!("rm -rf {CACHE_DIR}"));
    let out = running.join().expect("entry");
    assert_eq!(stdout(&out), right, "{}", stderr(&out));

    // Over its limits (imageswitch(8): 512 files), the cache is emptied
    // before a file is added.
    sh(&format!("mkdir -m 700 {CACHE_DIR}"));
    for i in 0..520 {
        fs::write(Path::new(CACHE_DIR).join(format!("filler-{i}")), "x").expect("filler");
    }
    sh(&format!("cd {CACHE_DIR} && for f in *; do case $f in filler-*) ;; *) rm -f $f;; esac; done"));
    let out = enter();
    assert_eq!(stdout(&out), right, "{}", stderr(&out));
    let left = cache_files();
    assert!(left.len() < 10 && left.iter().all(|(n, _)| !n.starts_with("filler-")), "{left:?}");

    // A kill -9 at any moment never leaves a partial file under a real name
    // (a name ends in its contents' length); at most a temporary one.
    let dir = Removed(PathBuf::from(format!("{PREFIX}/login-kill-{}", unique())));
    fs::create_dir_all(&dir.0).expect("mkdir");
    let kill_conf = dir.0.join("sysroots.toml");
    fs::write(&kill_conf, &conf).expect("config");
    let script = format!("mount --bind {} {TEST_CONFIG} && exec setpriv \"$@\"", kill_conf.display());
    let mut killed = 0;
    for i in 0..40u64 {
        let _ = fs::remove_dir_all(CACHE_DIR);
        let mut entry = Command::new("unshare")
            .args(["--mount", "--propagation=private", "--", "sh", "-ec", &script, "sh"])
            .args(login_as(ALICE))
            .args(["--", BIN, "cache", "true"])
            .current_dir(home_of(ALICE))
            .stderr(Stdio::null())
            .spawn()
            .expect("entry");
        std::thread::sleep(std::time::Duration::from_micros(500 + 150 * i));
        let _ = entry.kill();
        killed += entry.wait().expect("wait").signal().is_some() as usize;
        for (name, contents) in cache_files() {
            let whole = name.rsplit_once('-').and_then(|(_, len)| len.parse::<usize>().ok());
            assert!(name.ends_with(".tmp") || whole == Some(contents.len()), "partial file {name} after kill {i}");
        }
    }
    assert!(killed > 10, "only {killed} of 40 entries were killed before they ended");
    let out = enter();
    assert_eq!(stdout(&out), right, "{}", stderr(&out));

    // No entry waits for another: one stopped (by its own caller) while
    // writing holds nothing; here the directory itself is held locked while
    // an entry must write its files.
    sh(&format!("rm -rf {CACHE_DIR} && mkdir -m 700 {CACHE_DIR}"));
    let mut holder = Command::new("flock").args(["-x", CACHE_DIR, "sleep", "60"]).spawn().expect("flock");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (done, finished) = std::sync::mpsc::channel();
    let held_conf = conf.clone();
    std::thread::spawn(move || {
        let out = enter_with(&held_conf, &login_as(ALICE), &home_of(ALICE), &[], &who_am_i);
        let _ = done.send(out);
    });
    let waited = finished.recv_timeout(std::time::Duration::from_secs(20));
    let _ = holder.kill();
    let _ = holder.wait();
    let out = waited.expect("an entry waited for another holding the cache directory");
    assert_eq!(stdout(&out), right, "{}", stderr(&out));
    assert!(!cache_files().is_empty(), "nothing was written while the directory was locked");

    // A directory that is not root's alone is never used: the view is still
    // right (through the per-entry overlay) and nothing is written there.
    sh(&format!("rm -rf {CACHE_DIR} && mkdir -m 700 {CACHE_DIR} && chown {ALICE} {CACHE_DIR}"));
    let out = enter();
    assert_eq!(stdout(&out), right, "{}", stderr(&out));
    assert!(cache_files().is_empty());
    sh(&format!("rm -rf {CACHE_DIR}"));
}

#[test]
fn host_files_the_kernel_makes_up_or_that_are_not_regular_are_never_shown() {
    require_root!();
    let _serial = serial();
    fixture();
    let tree = tree_with_mount_points("login-procfs");
    let links: Vec<Removed> = ["proc/self/status", "sys/kernel/uevent_seqnum", "dev/zero"]
        .iter()
        .enumerate()
        .map(|(i, target)| {
            let link = PathBuf::from(format!("/etc/imgsw-login-kernel-{i}-{}", std::process::id()));
            symlink(Path::new("/").join(target), &link).expect("link");
            fs::write(tree.0.join(link.strip_prefix("/").expect("absolute")), "tree's\n").expect("mount point");
            Removed(link)
        })
        .collect();
    let list: Vec<String> = links.iter().map(|l| format!("\"{}\"", l.0.display())).collect();
    let conf = config(
        "binds = [\"/home\", \"/tmp\"]",
        &sysroot("kern", &tree.0, &format!("host_files = [{}]", list.join(", "))),
    );
    let script: String = links.iter().map(|l| format!("cat {}; ", l.0.display())).collect();
    let out = enter_with(&conf, &login_as(ALICE), &home_of(ALICE), &[], &["kern", "sh", "-c", &script]);
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), "tree's\ntree's\ntree's\n"), "{}", stderr(&out));
    let warnings: Vec<String> = links
        .iter()
        .zip([
            "a file the kernel makes up (procfs or sysfs)",
            "a file the kernel makes up (procfs or sysfs)",
            "not a regular file",
        ])
        .map(|(l, why)| format!("imageswitch: warning: kern: host file {} not shown: {why}\n", l.0.display()))
        .collect();
    assert_eq!(stderr(&out), warnings.concat());
}
