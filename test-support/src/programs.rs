//! Programs the tests build: the C helpers in `tests/support/` and an
//! imageswitch for a configuration path of a test's own.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::report::fnv1a;

/// The workspace's root directory.
fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace")
}

/// The build profile's directory (`target/debug`) of the running test binary
/// (`target/debug/deps/NAME-HASH`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    exe.parent().and_then(Path::parent).expect("profile directory").to_path_buf()
}

/// Builds `tests/support/NAME.c` with `cc -Wall -Werror -O2 FLAGS` (`$CC` if
/// set) and returns the result, kept in `target/` and built again only when
/// the source or the flags change. Shared by every test: callers copy it
/// where they need it (a user's directory, a tree) before changing its
/// owner or mode.
pub fn c_program(name: &str, flags: &[&str]) -> PathBuf {
    let source = workspace().join("tests/support").join(format!("{name}.c"));
    let text = fs::read_to_string(&source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
    let key = fnv1a(format!("{text}\0{}", flags.join("\0")));
    let dir = profile_dir().join("test-support-c");
    let program = dir.join(format!("{name}-{key:016x}"));
    if program.is_file() {
        return program;
    }
    fs::create_dir_all(&dir).expect("mkdir target/…/test-support-c");
    // Built under a name of this process's, then renamed: test binaries and
    // threads building the same program at once never see half a file.
    static SEQUENCE: Mutex<u64> = Mutex::new(0);
    let n = {
        let mut next = SEQUENCE.lock().unwrap_or_else(|e| e.into_inner());
        *next += 1;
        *next
    };
    let partial = dir.join(format!(".{name}-{key:016x}-{}-{n}", std::process::id()));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let out = Command::new(&cc)
        .args(["-Wall", "-Werror", "-O2"])
        .args(flags)
        .arg("-o")
        .arg(&partial)
        .arg(&source)
        .output()
        .unwrap_or_else(|e| panic!("run {cc}: {e}"));
    assert!(out.status.success(), "{cc} {name}.c: {}", String::from_utf8_lossy(&out.stderr));
    fs::rename(&partial, &program).expect("rename the built program");
    program
}

/// The imageswitch binary built with `config` as its fixed configuration
/// path, once per test binary, into a target directory of its own under
/// `target/tmp` (the workspace's own build keeps its configuration path).
/// For tests that must share no state with the main end-to-end suite's
/// installation.
pub fn imageswitch_built_for(config: &str) -> PathBuf {
    static BUILT: OnceLock<(String, PathBuf)> = OnceLock::new();
    let (built_for, built) = BUILT.get_or_init(|| {
        let target = profile_dir()
            .parent()
            .expect("target directory")
            .join("tmp")
            .join(format!("imageswitch-config-{:016x}", fnv1a(config)));
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let out = Command::new(cargo)
            .args(["build", "-q", "-p", "imageswitch", "--bin", "imageswitch", "--target-dir"])
            .arg(&target)
            .env("IMAGESWITCH_CONFIG_PATH", config)
            .current_dir(workspace())
            .output()
            .expect("run cargo");
        assert!(out.status.success(), "building imageswitch: {}", String::from_utf8_lossy(&out.stderr));
        let built = target.join("debug/imageswitch");
        let help = Command::new(&built).arg("--help").output().expect("imageswitch --help");
        assert!(String::from_utf8_lossy(&help.stdout).contains(config), "imageswitch was not built for {config}");
        (config.to_string(), built)
    });
    assert_eq!(built_for, config, "one test binary builds imageswitch for one configuration path");
    built.clone()
}
