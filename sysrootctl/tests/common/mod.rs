//! Helpers for the integration tests: a scratch directory per test, the real
//! binary, cached real trees, and root gating.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use test_support::mountinfo;
pub use test_support::procs::rooted_in;
#[allow(unused_imports)]
pub use test_support::{as_user, root_or_skip};

pub const BIN: &str = env!("CARGO_BIN_EXE_sysrootctl");

/// A tool a test needs from the host, installed from Debian's packages when
/// missing (as tests/run does for the suite's own needs). Still missing: a
/// skip locally, a failure under CI=true.
pub fn have_tool(test: &str, tool: &str, package: &str) -> bool {
    static APT: Mutex<()> = Mutex::new(());
    let found = || std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    if !found() && test_support::is_root() {
        let _serial = APT.lock().unwrap_or_else(|e| e.into_inner());
        if !found() {
            let install = || {
                Command::new("apt-get")
                    .args(["install", "-y", "-q", "--no-install-recommends", package])
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            };
            if !install() {
                let _ = Command::new("apt-get").args(["update", "-q"]).stdout(Stdio::null()).status();
                install();
            }
        }
    }
    if !found() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{test} needs {tool} (Debian package {package}) and CI=true: refusing to skip");
        }
        eprintln!("SKIPPED {test}: {tool} is not installed (Debian package {package})");
        return false;
    }
    true
}

/// A cached, read-only real tree (bootstrapped once by tests/support/trees.sh).
pub fn cached_tree(name: &str) -> PathBuf {
    let cache = std::env::var("IMAGESWITCH_TEST_CACHE").unwrap_or_else(|_| "/var/cache/imageswitch-test".into());
    let tree = Path::new(&cache).join(name);
    if !tree.join(".complete").exists() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/support/trees.sh");
        let status = Command::new("bash").arg(script).arg(name).status().expect("run trees.sh");
        assert!(status.success(), "trees.sh {name} failed");
    }
    tree
}

pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    /// A fresh root-owned 0755 directory under cargo's target tmpdir (never
    /// under a world-writable /tmp: the trees must pass imageswitch's checks).
    pub fn new(test: &str) -> Scratch {
        Scratch::at(Path::new(env!("CARGO_TARGET_TMPDIR")), test)
    }

    /// A scratch directory every user can traverse, under a root-owned 0755
    /// base outside the checkout (which may sit under a private home): for
    /// tests that run things as other users or that imageswitch enters.
    pub fn public(test: &str) -> Scratch {
        let base = Path::new("/var/lib/sysrootctl-test");
        fs::create_dir_all(base).expect("mkdir base");
        fs::set_permissions(base, fs::Permissions::from_mode(0o755)).expect("chmod base");
        Scratch::at(base, test)
    }

    /// A scratch directory under `base` (which must be root-owned and not
    /// writable by others when imageswitch is to enter trees inside it).
    pub fn at(base: &Path, test: &str) -> Scratch {
        let dir = base.join(format!("ctl-{test}-{}", std::process::id()));
        remove(&dir);
        fs::create_dir_all(&dir).expect("mkdir scratch");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod scratch");
        Scratch { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(&path, text).expect("write");
        path
    }

    /// `[sysroot.NAME]` + build table with this scratch's paths; `extra` goes
    /// into the build table.
    pub fn config(&self, name: &str, sysroot_keys: &str, build: &str) -> PathBuf {
        let text = format!(
            "[sysroot.{name}]\npath = \"{root}/roots/{name}\"\n{sysroot_keys}\n[sysroot.{name}.build]\nstore = \"{root}/store\"\n{build}\n",
            root = self.dir.display()
        );
        self.write("sysroots.toml", &text)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_under(&self.path("sysroots.toml"), args)
    }

    /// [`Scratch::cmd`] on the declaration `file` instead of the scratch's own.
    pub fn cmd_under(&self, file: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(file)
            .arg("--imageswitch")
            .arg(self.path("imageswitch"))
            .arg("--alias-dir")
            .arg(self.path("alias"))
            .arg("--applications-dir")
            .arg(self.path("apps"))
            .args(args);
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run sysrootctl")
    }

    /// Runs and asserts the exit status; returns stdout + stderr.
    pub fn expect(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(code), "sysrootctl {args:?}:\n{text}");
        text
    }

    pub fn live(&self, name: &str) -> Option<u32> {
        let target = fs::read_link(self.path(&format!("roots/{name}"))).ok()?;
        target.file_name()?.to_str()?.parse().ok()
    }

    pub fn generations(&self, name: &str) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.path(&format!("store/{name}")))
            .map(|e| e.flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect())
            .unwrap_or_default();
        v.retain(|n| n != ".lock");
        v.sort();
        v
    }

    /// Nothing mounted and no process rooted anywhere under the scratch dir.
    pub fn assert_clean(&self) {
        self.assert_clean_but("", None);
    }

    /// [`Scratch::assert_clean`], but for a mount at `kept` the test made
    /// itself; `context` says when, for the failure message.
    pub fn assert_clean_but(&self, context: &str, kept: Option<&Path>) {
        let dir = self.dir.to_string_lossy();
        let kept = kept.map(|k| k.to_string_lossy().into_owned());
        let left: Vec<String> = mountinfo::own()
            .into_iter()
            .filter(|m| m.line.contains(dir.as_ref()) && kept.as_ref() != Some(&m.point))
            .map(|m| m.line)
            .collect();
        assert!(left.is_empty(), "{context}: mounts left under {dir}:\n{}", left.join("\n"));
        assert!(
            rooted_in(&self.dir).is_empty(),
            "{context}: processes left with their root under {dir}: {:?}",
            rooted_in(&self.dir)
        );
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for pid in rooted_in(&self.dir) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(50));
        remove(&self.dir);
    }
}

fn remove(dir: &Path) {
    if dir.exists() {
        let _ = Command::new("rm").arg("-rf").arg("--one-file-system").arg(dir).status();
    }
}

pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Tests that create host users, or merge all of them into a tree, hold this:
/// a user one test creates must not turn up in another's merge.
pub fn host_accounts() -> std::sync::MutexGuard<'static, ()> {
    static ACCOUNTS: Mutex<()> = Mutex::new(());
    ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// A host user for the merge tests, deleted again on drop.
pub struct HostUser {
    pub name: String,
}

impl HostUser {
    pub fn create(name: &str) -> HostUser {
        let _ = Command::new("userdel").arg(name).output();
        let out = Command::new("useradd")
            .args(["-m", "-s", "/bin/bash", "-c", "sysrootctl test"])
            .arg(name)
            .output()
            .expect("useradd");
        assert!(out.status.success(), "useradd {name}: {}", String::from_utf8_lossy(&out.stderr));
        HostUser { name: name.to_string() }
    }

    pub fn passwd_line(&self) -> String {
        let out = Command::new("getent").args(["passwd", &self.name]).output().expect("getent");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn delete(&self) {
        let out = Command::new("userdel").args(["-r", &self.name]).output().expect("userdel");
        assert!(out.status.success(), "userdel {}: {}", self.name, String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for HostUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").args(["-r", &self.name]).output();
    }
}

/// Replaces a file for the duration of a test and puts the old content back.
pub struct Swap {
    path: PathBuf,
    old: Option<Vec<u8>>,
}

impl Swap {
    pub fn new(path: &Path, text: &str) -> Swap {
        let old = fs::read(path).ok();
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, text).expect("write");
        fs::set_permissions(path, fs::Permissions::from_mode(0o644)).expect("chmod");
        Swap { path: path.to_path_buf(), old }
    }
}

impl Drop for Swap {
    fn drop(&mut self) {
        match &self.old {
            Some(old) => {
                let _ = fs::write(&self.path, old);
            }
            None => {
                let _ = fs::remove_file(&self.path);
            }
        }
    }
}

/// Packs a tree into a gzip tarball, as an admin would to import it.
pub fn pack(tree: &Path, tarball: &Path) {
    let status = Command::new("tar")
        .arg("-C")
        .arg(tree)
        .args(["--numeric-owner", "-czf"])
        .arg(tarball)
        .arg(".")
        .status()
        .expect("tar");
    assert!(status.success());
}
