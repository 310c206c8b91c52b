//! The task's side: in slurmstepd, as the job's user, a task that asked for
//! a sysroot gets the helper as its argv[0], or ends with status 125.

use std::ffi::{CStr, CString, OsString, c_char, c_int};
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::SYSROOT_OPTION;
use super::ffi::*;
use crate::plan::{self, Step};

/// The status of a task whose sysroot could not be entered: imageswitch's own
/// "imageswitch failed" status, so scripts see one convention.
const EXIT_SETUP_FAILED: c_int = 125;

/// Runs in each task, as the job's user, just before slurmstepd runs the
/// site's TaskProlog, sets the user's limits and execs the task. When
/// `--sysroot` was given, the task's argv[0] becomes the helper
/// (`imageswitch-spank-exec`), and the sysroot, the original argv[0] and the
/// imageswitch path go into the task's environment; slurmstepd then does all
/// its usual steps and execs the helper, which runs
/// `imageswitch --require-cwd NAME ARGV...`. Exec'ing imageswitch here instead would skip
/// those steps (the submitter's limits among them).
///
/// On any error the task ends with status 125 at once, so a job that asked
/// for a sysroot never runs on the host, even under an `optional` line.
///
/// # Safety
/// Called by Slurm with its handle and the plugstack.conf arguments.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slurm_spank_task_init(sp: Spank, ac: c_int, av: *const *const c_char) -> c_int {
    // SAFETY: no arguments; valid in every context.
    if unsafe { spank_context() } != S_CTX_REMOTE {
        return 0;
    }
    // SAFETY: `sp` is Slurm's live handle.
    let Some(requested) = (unsafe { requested_sysroot(sp) }) else {
        return 0;
    };

    let mut step_id: u32 = 0;
    // SAFETY: S_JOB_STEPID takes one `uint32_t *`.
    if unsafe { spank_get_item(sp, S_JOB_STEPID, &mut step_id as *mut u32) } != ESPANK_SUCCESS {
        fail("cannot read the step id");
    }
    let step = plan::step_kind(step_id);
    if step == Step::Extern {
        return 0;
    }
    let sysroot = match plan::validate_sysroot_name(&requested) {
        Ok(name) => name.to_owned(),
        Err(e) => fail(&e),
    };
    // SAFETY: Slurm passes `ac` strings in `av`.
    let args = match plan::parse_plugin_args(&unsafe { plugin_args(ac, av) }) {
        Ok(args) => args,
        Err(e) => fail(&e),
    };

    let mut argc: c_int = 0;
    let mut argv: *mut *mut c_char = std::ptr::null_mut();
    // SAFETY: S_JOB_ARGV takes an `int *` and a `char ***`; in a task it
    // yields that task's own argv array.
    let rc = unsafe { spank_get_item(sp, S_JOB_ARGV, &mut argc as *mut c_int, &mut argv as *mut _) };
    if rc != ESPANK_SUCCESS {
        fail("cannot read the task's argv");
    }
    if argc < 1 || argv.is_null() {
        return 0;
    }
    // SAFETY: `argv` holds `argc` >= 1 entries.
    let first = unsafe { *argv };
    if first.is_null() {
        return 0;
    }
    // SAFETY: argv entries are NUL-terminated strings owned by Slurm.
    let command = OsString::from_vec(unsafe { CStr::from_ptr(first) }.to_bytes().to_vec());
    // SAFETY: `argv` holds `argc` entries.
    if plan::is_multi_prog(&unsafe { argv_bytes(argc, argv) }) {
        fail(plan::MULTI_PROG_REFUSED);
    }

    if !is_executable(&args.helper) {
        fail(&format!("cannot execute the helper {}", args.helper.display()));
    }
    let handoff = plan::handoff_env(&args, &sysroot, &command, step);
    for name in plan::HANDOFF_VARS.iter().filter(|&&name| !handoff.iter().any(|(set, _)| *set == name)) {
        let c_name = CString::new(*name).expect("no NUL in a constant");
        // SAFETY: `sp` is Slurm's live handle; the name is NUL-terminated.
        if unsafe { spank_unsetenv(sp, c_name.as_ptr()) } != ESPANK_SUCCESS {
            fail(&format!("cannot remove {name} from the task's environment"));
        }
    }
    for (name, value) in handoff {
        let (Ok(c_name), Ok(c_value)) = (CString::new(name), CString::new(value.into_vec())) else {
            fail("an argument contains a NUL byte");
        };
        // SAFETY: `sp` is Slurm's live handle; both strings are NUL-terminated.
        if unsafe { spank_setenv(sp, c_name.as_ptr(), c_value.as_ptr(), 1) } != ESPANK_SUCCESS {
            fail(&format!("cannot set {name} in the task's environment"));
        }
    }
    let Ok(helper) = CString::new(args.helper.as_os_str().as_bytes()) else {
        fail("the helper path contains a NUL byte");
    };
    // SAFETY: this is the task's own process (forked by slurmstepd), which
    // only execs or exits after this hook; argv[0] is a valid slot. The string
    // is leaked on purpose: slurmstepd's execve in this process reads it.
    unsafe { *argv = helper.into_raw() };
    let mark = CString::new(plan::TASK_MARK).expect("no NUL in a constant");
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of which it keeps at
    // most 15 bytes; it names only this task's process.
    if unsafe { libc::prctl(libc::PR_SET_NAME, mark.as_ptr()) } != 0 {
        fail("cannot name the task's process");
    }
    0
}

/// The sysroot this task asked for, by any route: the option as slurmstepd
/// received it (command line, directive, `_SLURM_SPANK_OPTION_*`), else one
/// of the request variables in the task's environment (`--export=NONE` and
/// `--export=VARS` keep only Slurm's environment form). A value too long to
/// read is still a request, and fails the name check; if a variable cannot
/// be read at all, the task ends (status 125).
///
/// # Safety
/// `sp` must be Slurm's live handle in the remote context.
unsafe fn requested_sysroot(sp: Spank) -> Option<Vec<u8>> {
    let mut optarg: *mut c_char = std::ptr::null_mut();
    // SAFETY: `sp` is Slurm's live handle and `optarg` a valid out-pointer.
    let rc = unsafe { spank_option_getopt(sp, &SYSROOT_OPTION.0, &mut optarg) };
    if rc == ESPANK_SUCCESS && !optarg.is_null() {
        // SAFETY: on success Slurm stores a NUL-terminated string it owns.
        return Some(unsafe { CStr::from_ptr(optarg) }.to_bytes().to_vec());
    }
    plan::REQUEST_VARS.iter().find_map(|var| {
        let name = CString::new(*var).expect("no NUL in a constant");
        let mut buf = [0 as c_char; 2 * plan::MAX_NAME_LEN + 2];
        // SAFETY: `buf` is writable for its whole length, which is what we pass.
        let rc = unsafe { spank_getenv(sp, name.as_ptr(), buf.as_mut_ptr(), buf.len() as c_int) };
        match rc {
            ESPANK_ENV_NOEXIST => None,
            // SAFETY: on success Slurm wrote a NUL-terminated string into `buf`.
            ESPANK_SUCCESS => Some(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_bytes().to_vec()),
            ESPANK_NOSPACE => Some(vec![b'?'; plan::MAX_NAME_LEN + 1]),
            rc => fail(&format!("cannot read {var} (spank error {rc})")),
        }
    })
}

/// The helper must be there before slurmstepd commits to exec'ing it, so a
/// missing one gives our message and status rather than an execve error.
fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Says why on the task's stderr (the job's output) and in Slurm's log, then
/// ends the task process without returning to slurmstepd.
fn fail(message: &str) -> ! {
    let _ = writeln!(std::io::stderr(), "imageswitch-spank: {message}");
    log_error(message);
    // SAFETY: `_exit` ends only this task process, a child slurmstepd forked
    // for the task, without running its atexit handlers.
    unsafe { libc::_exit(EXIT_SETUP_FAILED) }
}
