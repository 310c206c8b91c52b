//! The boundary with Slurm: the symbols its plugin loader looks up, the few
//! SPANK calls the plugin makes (declared by hand from Slurm 22.05's
//! `<slurm/spank.h>`; only calls present since long before 22.05 are used),
//! and the rewrite of the task's argv[0]. Every `unsafe` block of the crate
//! is in this file; the helper binary has none.
//!
//! Nothing here runs with privilege on purpose: options are registered in
//! srun/sbatch/salloc and slurmstepd, and the only action happens in
//! `slurm_spank_task_init`, which slurmstepd calls in the task after it has
//! switched to the job's user. There are no prolog/epilog hooks, so nothing
//! the user puts in the job's environment is ever acted on as root.

use std::ffi::{CStr, CString, OsString, c_char, c_int};
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::plan::{self, Step};

include!(concat!(env!("OUT_DIR"), "/slurm_version.rs"));

// The loader's symbols, as `SPANK_PLUGIN(imageswitch, 1)` defines them in C.
// `plugin_name` also names the option in the job's environment
// (`_SLURM_SPANK_OPTION_imageswitch_sysroot`).
#[allow(non_upper_case_globals)]
#[unsafe(no_mangle)]
pub static plugin_name: [u8; 12] = *b"imageswitch\0";
#[allow(non_upper_case_globals)]
#[unsafe(no_mangle)]
pub static plugin_type: [u8; 6] = *b"spank\0";
/// Slurm loads a SPANK plugin only when this matches its own major.minor.
#[allow(non_upper_case_globals)]
#[unsafe(no_mangle)]
pub static plugin_version: u32 = SLURM_VERSION_NUMBER;
#[allow(non_upper_case_globals)]
#[unsafe(no_mangle)]
pub static spank_plugin_version: u32 = 1;

/// `spank_t`: an opaque handle owned by Slurm.
#[repr(C)]
pub struct SpankHandle {
    _opaque: [u8; 0],
}

type Spank = *mut SpankHandle;
type OptionCallback = extern "C" fn(val: c_int, optarg: *const c_char, remote: c_int) -> c_int;

/// `struct spank_option`.
#[repr(C)]
struct SpankOption {
    name: *const c_char,
    arginfo: *const c_char,
    usage: *const c_char,
    has_arg: c_int,
    val: c_int,
    cb: Option<OptionCallback>,
}

// `enum spank_context` and `enum spank_item` values, from spank.h.
const S_CTX_LOCAL: c_int = 1;
const S_CTX_REMOTE: c_int = 2;
const S_CTX_ALLOCATOR: c_int = 3;
const S_JOB_STEPID: c_int = 3;
const S_JOB_ARGV: c_int = 9;
const ESPANK_SUCCESS: c_int = 0;

/// The status of a task whose sysroot could not be entered: imageswitch's own
/// "imageswitch failed" status, so scripts see one convention.
const EXIT_SETUP_FAILED: c_int = 125;

unsafe extern "C" {
    fn spank_context() -> c_int;
    fn spank_option_register(sp: Spank, opt: *const SpankOption) -> c_int;
    fn spank_option_getopt(sp: Spank, opt: *const SpankOption, optarg: *mut *mut c_char) -> c_int;
    fn spank_get_item(sp: Spank, item: c_int, ...) -> c_int;
    fn spank_setenv(sp: Spank, var: *const c_char, val: *const c_char, overwrite: c_int) -> c_int;
    fn slurm_error(format: *const c_char, ...);
}

struct OptionEntry(SpankOption);

// SAFETY: the entry is never mutated and its pointers are to `'static` C
// string literals; Slurm only reads it (some releases keep the pointer,
// others copy the strings), so sharing it between threads is sound.
unsafe impl Sync for OptionEntry {}

static SYSROOT_OPTION: OptionEntry = OptionEntry(SpankOption {
    name: c"sysroot".as_ptr(),
    arginfo: c"NAME".as_ptr(),
    usage: c"Run each task inside sysroot NAME through imageswitch (see imageswitch --list).".as_ptr(),
    has_arg: 1,
    val: 0,
    cb: Some(sysroot_option_cb),
});

/// Reports to Slurm's log (slurmd's, or srun's stderr in the local context).
fn log_error(message: &str) {
    let text = CString::new(format!("imageswitch-spank: {message}").replace('\0', "?")).unwrap_or_default();
    // SAFETY: both arguments are valid NUL-terminated strings and the format
    // consumes exactly one `%s`.
    unsafe { slurm_error(c"%s".as_ptr(), text.as_ptr()) };
}

/// Collects a plugstack.conf argv (`ac` NUL-terminated strings).
///
/// # Safety
/// `av` must point to `ac` valid C strings, or `ac` must be 0.
unsafe fn plugin_args(ac: c_int, av: *const *const c_char) -> Vec<OsString> {
    let count = usize::try_from(ac).unwrap_or(0);
    if av.is_null() || count == 0 {
        return Vec::new();
    }
    // SAFETY: the caller guarantees `av` holds `count` entries.
    let entries = unsafe { std::slice::from_raw_parts(av, count) };
    entries
        .iter()
        .filter(|p| !p.is_null())
        // SAFETY: each non-null entry is a NUL-terminated string owned by Slurm.
        .map(|&p| OsString::from_vec(unsafe { CStr::from_ptr(p) }.to_bytes().to_vec()))
        .collect()
}

/// Checks the name where the user types it, so `srun --sysroot='../x'` fails
/// at submission; the value is checked again in the task.
extern "C" fn sysroot_option_cb(_val: c_int, optarg: *const c_char, _remote: c_int) -> c_int {
    if optarg.is_null() {
        log_error("--sysroot needs a sysroot name");
        return -1;
    }
    // SAFETY: Slurm passes the option's argument as a NUL-terminated string.
    let name = unsafe { CStr::from_ptr(optarg) };
    match plan::validate_sysroot_name(name.to_bytes()) {
        Ok(_) => 0,
        Err(e) => {
            log_error(&e);
            -1
        }
    }
}

/// Registers `--sysroot` wherever a user can give it (srun, sbatch, salloc)
/// and in slurmstepd, which receives it with the job.
///
/// # Safety
/// Called by Slurm with its handle and the plugstack.conf arguments.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slurm_spank_init(sp: Spank, ac: c_int, av: *const *const c_char) -> c_int {
    // SAFETY: no arguments; valid in every context.
    let context = unsafe { spank_context() };
    if !matches!(context, S_CTX_LOCAL | S_CTX_REMOTE | S_CTX_ALLOCATOR) {
        return 0;
    }
    // SAFETY: `sp` is Slurm's live handle; the option entry is 'static.
    let rc = unsafe { spank_option_register(sp, &SYSROOT_OPTION.0) };
    if rc != ESPANK_SUCCESS {
        log_error(&format!("cannot register --sysroot (spank error {rc})"));
        return -1;
    }
    // Checked after registering: under an `optional` line Slurm keeps going,
    // and the option must still be known in the task so that the task can
    // fail instead of quietly running on the host.
    // SAFETY: Slurm passes `ac` strings in `av`.
    if let Err(e) = plan::parse_plugin_args(&unsafe { plugin_args(ac, av) }) {
        log_error(&e);
        return -1;
    }
    0
}

/// Runs in each task, as the job's user, just before slurmstepd runs the
/// site's TaskProlog, sets the user's limits and execs the task. When
/// `--sysroot` was given, the task's argv[0] becomes the helper
/// (`imageswitch-spank-exec`), and the sysroot, the original argv[0] and the
/// imageswitch path go into the task's environment; slurmstepd then does all
/// its usual steps and execs the helper, which runs
/// `imageswitch NAME ARGV...`. Exec'ing imageswitch here instead would skip
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
    let mut optarg: *mut c_char = std::ptr::null_mut();
    // SAFETY: `sp` is Slurm's live handle and `optarg` a valid out-pointer.
    let rc = unsafe { spank_option_getopt(sp, &SYSROOT_OPTION.0, &mut optarg) };
    if rc != ESPANK_SUCCESS || optarg.is_null() {
        return 0;
    }
    // SAFETY: on success Slurm stores a NUL-terminated string it owns.
    let requested = unsafe { CStr::from_ptr(optarg) }.to_bytes().to_vec();

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

    if !is_executable(&args.helper) {
        fail(&format!("cannot execute the helper {}", args.helper.display()));
    }
    for (name, value) in plan::handoff_env(&args, &sysroot, &command, step) {
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
    0
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
