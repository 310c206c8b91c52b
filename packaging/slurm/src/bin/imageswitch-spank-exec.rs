//! `imageswitch-spank-exec`: the program a `--sysroot` task really starts.
//!
//! The SPANK plugin replaced the task's argv[0] with this helper and put the
//! sysroot, the original argv[0] and the imageswitch path in the environment
//! (see `plan.rs` and `handoff.rs`). slurmstepd has by now run the TaskProlog and applied the
//! user's limits; this helper, running as the user with no privilege, execs
//! `imageswitch --require-cwd NAME ARGV...` with the task's environment minus the
//! hand-over. A batch script is passed as `/proc/self/fd/N`: its spool path
//! does not exist inside the tree, the open file does.
#![forbid(unsafe_code)]

// Shared with the plugin; the plugin-only parts go unused here.
#[path = "../handoff.rs"]
mod handoff;
#[allow(dead_code)]
#[path = "../plan.rs"]
mod plan;

use std::ffi::OsString;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, exit};

use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;

/// imageswitch's own "could not enter" status, so jobs see one convention.
const EXIT_SETUP_FAILED: i32 = 125;

fn fail(message: &str) -> ! {
    eprintln!("imageswitch-spank: {message}");
    exit(EXIT_SETUP_FAILED)
}

/// Opens the script as the user, without close-on-exec: imageswitch keeps the
/// fds its caller passes, so the command inside the tree can read it.
fn open_inheritable(path: &Path) -> i32 {
    match open(path, OFlag::O_RDONLY | OFlag::O_NOCTTY, Mode::empty()) {
        Ok(fd) => {
            let raw = fd.as_raw_fd();
            let _ = fd.into_raw_fd();
            raw
        }
        Err(e) => fail(&format!("cannot open batch script {}: {e}", path.display())),
    }
}

fn main() {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let handoff = match handoff::read_handoff(&argv, std::env::vars_os().collect()) {
        Ok(h) => h,
        Err(e) => fail(&e),
    };
    let script_fd = match (handoff.batch, handoff.task_argv.first()) {
        (true, Some(script)) => Some(open_inheritable(Path::new(script))),
        _ => None,
    };
    let Some(new_argv) = handoff::task_argv(&handoff.imageswitch, &handoff.sysroot, &handoff.task_argv, script_fd)
    else {
        fail("the task has no command")
    };
    let error =
        Command::new(&handoff.imageswitch).arg0(&new_argv[0]).args(&new_argv[1..]).env_clear().envs(handoff.env).exec();
    fail(&format!("cannot execute {}: {error}", handoff.imageswitch.display()))
}
