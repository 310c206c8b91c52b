//! Shared fixture for the end-to-end tests: real trees, a real setuid-root
//! install, real unprivileged users, a real syslog listener.
//!
//! Everything lives under [`PREFIX`] and `/etc/imageswitch-test/`, and is
//! (re)created idempotently, once per test binary. The binary under test must
//! be built with `IMAGESWITCH_CONFIG_PATH=/etc/imageswitch-test/sysroots.toml`
//! (`tests/run` does that); the fixture checks and says so otherwise.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The host's mount table as seen from the test process, as text.
#[allow(unused_imports)]
pub use test_support::mountinfo::{self, own_text as host_mounts};
pub use test_support::{as_user, home_of, is_root, require_root};

pub const TEST_CONFIG: &str = "/etc/imageswitch-test/sysroots.toml";
pub const PREFIX: &str = "/var/lib/imageswitch-test";
pub const CACHE: &str = "/var/cache/imageswitch-test";
pub const BIN: &str = "/var/lib/imageswitch-test/bin/imageswitch";
pub const LOG_SOCKET: &str = "/var/lib/imageswitch-test/log.sock";
/// Host bin_dir of the i386 tree (and the same path inside it).
pub const BIN11: &str = "/imgsw-test-bin11";
pub const BINBB: &str = "/imgsw-test-binbb";

/// Allowed into every sysroot (member of `imgsw-physics`).
pub const ALICE: &str = "imgsw-alice";
/// Not in `imgsw-physics`: refused by `deb11`, allowed elsewhere.
pub const BOB: &str = "imgsw-bob";
pub const PHYSICS: &str = "imgsw-physics";

pub struct Fixture {
    pub deb11: PathBuf,
    pub trixie: PathBuf,
    /// A private busybox tree for tests that change things inside.
    pub bb: PathBuf,
    log: Mutex<Vec<String>>,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

pub fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(setup)
}

pub fn sh(script: &str) {
    let status = Command::new("sh").arg("-ec").arg(script).status().expect("sh");
    assert!(status.success(), "setup step failed: {script}");
}

fn ensure_user(name: &str, groups: &[&str]) {
    if Command::new("id").arg(name).stdout(Stdio::null()).stderr(Stdio::null()).status().expect("id").success() {
        return;
    }
    let mut cmd = Command::new("useradd");
    cmd.args(["-m", "-s", "/bin/bash"]);
    if !groups.is_empty() {
        cmd.arg("-G").arg(groups.join(","));
    }
    assert!(cmd.arg(name).status().expect("useradd").success(), "useradd {name}");
}

const CONFIG: &str = r#"# written by tests/common/mod.rs
[defaults]
binds = ["/tmp"]
log_socket = "/var/lib/imageswitch-test/log.sock"

[sysroot.deb11]
path = "/var/cache/imageswitch-test/bullseye-i386"
personality = "linux32"
aliases = ["imgsw-deb11"]
bin_dir = "/imgsw-test-bin11"
groups = ["imgsw-physics"]
binds = ["/home"]

[sysroot.trixie]
path = "/var/cache/imageswitch-test/trixie-amd64"
aliases = ["imgsw-trixie"]
binds = ["/home"]
shell = "/bin/bash"

[sysroot.bb]
path = "/var/lib/imageswitch-test/trees/bb"
aliases = ["imgsw-bb"]
bin_dir = "/imgsw-test-binbb"
binds = ["/home"]

# Asks for setuid programs to elevate: refused with its position, the
# others unaffected (threats row 23).
[sysroot.bb-setuid]
path = "/var/lib/imageswitch-test/trees/bb"
binds = ["/home"]
setuid = true

# Fails instead of falling back to home when the working directory is missing.
[sysroot.bb-requirecwd]
path = "/var/lib/imageswitch-test/trees/bb"
binds = ["/home"]
require_cwd = true

# No /home bind: the caller's home is bound onto TREE/home/USER directly.
[sysroot.bb-homedirect]
path = "/var/lib/imageswitch-test/trees/bb-homedirect"

# TREE/etc owned by a user: must be refused.
[sysroot.bb-userowned]
path = "/var/lib/imageswitch-test/trees/bb-userowned"
binds = ["/home"]

# path is a symlink owned by a user: must be refused.
[sysroot.bb-userlink]
path = "/var/lib/imageswitch-test/trees/userlink"
binds = ["/home"]

# path is a root-owned symlink (a generation link): allowed.
[sysroot.bb-rootlink]
path = "/var/lib/imageswitch-test/trees/rootlink"
binds = ["/home"]

[sysroot.bb-missing]
path = "/var/lib/imageswitch-test/trees/does-not-exist"

# Only alice: bob is refused.
[sysroot.bb-alice]
path = "/var/lib/imageswitch-test/trees/bb"
users = ["imgsw-alice"]
binds = ["/home"]

[sysroot.bb-broken]
path = "/var/lib/imageswitch-test/trees/bb"
pth = "/typo"

# Root-owned symlink into a directory owned by a user: must be refused.
[sysroot.bb-linkout]
path = "/var/lib/imageswitch-test/trees/linkout"

# A bind whose source only root can reach: must not be bound for a user.
[sysroot.bb-privbind]
path = "/var/lib/imageswitch-test/trees/bb-privbind"
binds = ["/var/lib/imageswitch-test/private/visible"]

# A bind under a root-owned directory only bob's group may enter: bob sees
# it, others are refused. (Under a directory bob owned, bob could remove or
# replace it for everyone: such a sysroot is refused whole.)
[sysroot.bb-bobbind]
path = "/var/lib/imageswitch-test/trees/bb-privbind"
binds = ["/var/lib/imageswitch-test/bob-private/visible"]

# TREE/home is world-writable (1777) and not bound: users can plant entries
# where their home is bound.
[sysroot.bb-sharedhome]
path = "/var/lib/imageswitch-test/trees/bb-sharedhome"
"#;

/// A small busybox tree (copied from the cache) owned by root. Left alone
/// when an identical one is already there: test binaries run by other people
/// at the same time must not see the trees they are in vanish.
fn make_busybox_tree(dest: &Path) {
    let recipe = format!(
        "rm -rf {d}.new && cp -a {CACHE}/busybox {d}.new && mkdir -p {d}.new/home {d}.new/var/log {d}.new{BINBB} \
         && for p in sh true id cat ls pwd env uname logger; do ln -sf /bin/$p {d}.new{BINBB}/$p; done \
         && cp {d}.new/bin/busybox {d}.new/bin/suid-busybox && chmod 4755 {d}.new/bin/suid-busybox",
        d = dest.display()
    );
    let stamp = dest.join(".imgsw-fixture");
    if fs::read_to_string(&stamp).is_ok_and(|s| s == recipe) {
        return;
    }
    sh(&recipe);
    fs::write(format!("{}.new/.imgsw-fixture", dest.display()), &recipe).expect("tree stamp");
    sh(&format!("rm -rf {d} && mv {d}.new {d}", d = dest.display()));
}

/// A private copy of the busybox tree under `PREFIX/scratch`, root-owned,
/// for a test to change (bound over a fixture tree in its own mount namespace).
pub fn scratch_tree(tag: &str) -> PathBuf {
    let dest = PathBuf::from(format!("{PREFIX}/scratch/{tag}-{}-{}", std::process::id(), unique()));
    sh(&format!(
        "cp -a {CACHE}/busybox {d} && rm -f {d}/.complete && cp {d}/bin/busybox {d}/bin/suid-busybox && chmod 4755 {d}/bin/suid-busybox",
        d = dest.display()
    ));
    dest
}

fn setup() -> Fixture {
    assert!(is_root(), "the end-to-end fixture needs root");
    let here = env!("CARGO_MANIFEST_DIR");
    sh(&format!("bash {here}/tests/support/trees.sh busybox bullseye-i386 trixie-amd64"));

    let built = PathBuf::from(env!("CARGO_BIN_EXE_imageswitch"));
    let help = Command::new(&built).arg("--help").output().expect("run imageswitch --help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains(TEST_CONFIG),
        "{} was not built for the tests (its configuration is not {TEST_CONFIG}); run the suite with tests/run, \
         or set IMAGESWITCH_CONFIG_PATH={TEST_CONFIG} when building",
        built.display()
    );

    sh(&format!("getent group {PHYSICS} >/dev/null || groupadd {PHYSICS}"));
    ensure_user(ALICE, &[PHYSICS]);
    ensure_user(BOB, &[]);

    sh(&format!(
        "mkdir -p {PREFIX}/bin {PREFIX}/trees /etc/imageswitch-test && chmod 755 {PREFIX} {PREFIX}/bin {PREFIX}/trees"
    ));
    sh(&format!("install -m 4755 -o root -g root {} {BIN}.new && mv -f {BIN}.new {BIN}", built.display()));
    for alias in ["imgsw-deb11", "imgsw-trixie", "imgsw-bb"] {
        let link = Path::new(PREFIX).join("bin").join(alias);
        let _ = fs::remove_file(&link);
        symlink("imageswitch", &link).expect("alias link");
    }

    // bin_dir on the host (links to the binary) and inside the i386 tree
    // (links to /bin, for scripts that are already inside).
    let deb11 = PathBuf::from(CACHE).join("bullseye-i386");
    sh(&format!(
        "mkdir -p {BIN11} {t}{BIN11} && for p in sh bash true uname id cat; do ln -sfn {BIN} {BIN11}/$p; ln -sfn /bin/$p {t}{BIN11}/$p; done",
        t = deb11.display()
    ));
    sh(&format!(
        "mkdir -p {BINBB} && for p in sh true id cat ls pwd env uname logger; do ln -sfn {BIN} {BINBB}/$p; done"
    ));

    let trees = PathBuf::from(PREFIX).join("trees");
    let bb = trees.join("bb");
    make_busybox_tree(&bb);
    let homedirect = trees.join("bb-homedirect");
    make_busybox_tree(&homedirect);
    sh(&format!(
        "mkdir -p {h}/home/{ALICE} {h}/home/{BOB} && chown {ALICE}: {h}/home/{ALICE} && chown {BOB}: {h}/home/{BOB}",
        h = homedirect.display()
    ));
    let userowned = trees.join("bb-userowned");
    make_busybox_tree(&userowned);
    sh(&format!("chown {ALICE} {}/etc", userowned.display()));
    sh(&format!(
        "cd {t} && rm -f userlink rootlink && ln -s bb rootlink && ln -s bb userlink && chown -h {ALICE} userlink",
        t = trees.display()
    ));

    let sharedhome = trees.join("bb-sharedhome");
    make_busybox_tree(&sharedhome);
    sh(&format!("chmod 1777 {}/home", sharedhome.display()));
    sh(&format!("mkdir -p {PREFIX}/user-area && chown {ALICE}: {PREFIX}/user-area && chmod 755 {PREFIX}/user-area"));
    make_busybox_tree(&PathBuf::from(format!("{PREFIX}/user-area/tree")));
    sh(&format!("cd {t} && rm -f linkout && ln -s {PREFIX}/user-area/tree linkout", t = trees.display()));
    sh(&format!(
        "mkdir -p {p}/visible && chmod 700 {p} && chmod 755 {p}/visible && echo root-only > {p}/visible/secret \
         && chmod 644 {p}/visible/secret",
        p = format!("{PREFIX}/private")
    ));
    // The destination exists in the tree, so only the source check refuses.
    let privbind = trees.join("bb-privbind");
    make_busybox_tree(&privbind);
    sh(&format!("mkdir -p {t}{PREFIX}/private/visible {t}{PREFIX}/bob-private/visible", t = privbind.display()));
    sh(&format!(
        "mkdir -p {p}/visible && echo bob-only > {p}/visible/secret && chown -R root:{BOB} {p} && chmod 750 {p} \
         && chmod 755 {p}/visible",
        p = format!("{PREFIX}/bob-private")
    ));
    sh(&format!("mkdir -p {PREFIX}/scratch && chmod 755 {PREFIX}/scratch"));

    // Replaced in one step, and only when it differs: a binary running
    // concurrently never reads a half-written file.
    if fs::read_to_string(TEST_CONFIG).ok().as_deref() != Some(CONFIG) {
        let new = format!("{TEST_CONFIG}.new");
        fs::write(&new, CONFIG).expect("write config");
        fs::set_permissions(&new, fs::Permissions::from_mode(0o644)).expect("chmod config");
        fs::rename(&new, TEST_CONFIG).expect("install config");
    }
    fs::set_permissions(TEST_CONFIG, fs::Permissions::from_mode(0o644)).expect("chmod config");

    let fixture = Fixture { deb11, trixie: PathBuf::from(CACHE).join("trixie-amd64"), bb, log: Mutex::new(Vec::new()) };
    start_log_listener();
    fixture
}

fn start_log_listener() {
    let _ = fs::remove_file(LOG_SOCKET);
    let sock = UnixDatagram::bind(LOG_SOCKET).expect("bind log socket");
    fs::set_permissions(LOG_SOCKET, fs::Permissions::from_mode(0o666)).expect("chmod log socket");
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 8192];
        while let Ok(n) = sock.recv(&mut buf) {
            let line = String::from_utf8_lossy(&buf[..n]).into_owned();
            if let Some(f) = FIXTURE.get() {
                f.log.lock().expect("log lock").push(line);
            } else {
                PENDING.lock().expect("pending lock").push(line);
            }
        }
    });
}

static PENDING: Mutex<Vec<String>> = Mutex::new(Vec::new());

impl Fixture {
    /// Waits up to 5 s for a syslog record containing `needle`.
    pub fn wait_for_log(&self, needle: &str) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found = {
                let mut pending = PENDING.lock().expect("pending lock");
                let mut log = self.log.lock().expect("log lock");
                log.append(&mut pending);
                log.iter().find(|l| l.contains(needle)).cloned()
            };
            if found.is_some() || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub fn alias(name: &str) -> String {
    format!("{PREFIX}/bin/{name}")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("spawn")
}

/// A fresh directory under /tmp owned by `user`, unique per call.
pub fn user_tmpdir(user: &str, tag: &str) -> PathBuf {
    let dir = PathBuf::from(format!("/tmp/imgsw-{tag}-{}-{}", std::process::id(), unique()));
    fs::create_dir_all(&dir).expect("mkdir");
    sh(&format!("chown {user}: {}", dir.display()));
    dir
}

pub fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
