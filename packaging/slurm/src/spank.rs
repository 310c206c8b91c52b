//! The boundary with Slurm: the symbols its plugin loader looks up, the few
//! SPANK calls the plugin makes (declared by hand from Slurm 22.05's
//! `<slurm/spank.h>`; only calls present since long before 22.05 are used),
//! and the rewrite of the task's argv[0]. Every `unsafe` block of the crate
//! is in this file; the helper binary has none.
//!
//! Nothing here runs with privilege on purpose: options are registered in
//! srun/sbatch/salloc and slurmstepd, and the only actions happen in
//! `slurm_spank_local_user_init`, in srun as the submitting user, and in
//! `slurm_spank_task_init`, which slurmstepd calls in the task after it has
//! switched to the job's user. There are no prolog/epilog hooks, so nothing
//! the user puts in the job's environment is ever acted on as root.
//!
//! Fail closed: once a task has asked for a sysroot, by any route, it runs
//! through imageswitch or ends with status 125 and one line in its output.

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
/// From `<slurm/slurm_errno.h>` (`ESPANK_ERROR` is 3000).
const ESPANK_ENV_NOEXIST: c_int = 3004;
const ESPANK_NOSPACE: c_int = 3005;

/// The status of a task whose sysroot could not be entered: imageswitch's own
/// "imageswitch failed" status, so scripts see one convention.
const EXIT_SETUP_FAILED: c_int = 125;

unsafe extern "C" {
    fn spank_context() -> c_int;
    fn spank_option_register(sp: Spank, opt: *const SpankOption) -> c_int;
    fn spank_option_getopt(sp: Spank, opt: *const SpankOption, optarg: *mut *mut c_char) -> c_int;
    fn spank_get_item(sp: Spank, item: c_int, ...) -> c_int;
    fn spank_getenv(sp: Spank, var: *const c_char, buf: *mut c_char, len: c_int) -> c_int;
    fn spank_setenv(sp: Spank, var: *const c_char, val: *const c_char, overwrite: c_int) -> c_int;
    fn spank_unsetenv(sp: Spank, var: *const c_char) -> c_int;
    fn spank_job_control_setenv(sp: Spank, var: *const c_char, val: *const c_char, overwrite: c_int) -> c_int;
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
/// at submission. On the node (`remote`) every value is taken as given: a
/// refusal here would make Slurm drop the option with only a log line and run
/// the task on the host, so the task checks the name and fails instead.
extern "C" fn sysroot_option_cb(_val: c_int, optarg: *const c_char, remote: c_int) -> c_int {
    if remote != 0 {
        return 0;
    }
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

/// Runs in srun, after the allocation and before the launch, when
/// `--sysroot` was given (on the command line, or inherited from salloc) or
/// the caller set `_SLURM_SPANK_OPTION_imageswitch_sysroot`, which srun
/// itself passes on without reading. A `--multi-prog` step is refused here,
/// with the reason on srun's stderr (the task checks again).
/// Otherwise the request is put in srun's environment in Slurm's own
/// environment form (`SLURM_SPANK__SLURM_SPANK_OPTION_imageswitch_sysroot`, as
/// sbatch and salloc already do), which Slurm passes to every task even under
/// `--export=NONE`: a node whose slurmstepd lacks the plugin cannot act on the
/// option, but the site's TaskProlog (`imageswitch-slurm-task-prolog`) sees
/// the request there and ends the task.
///
/// # Safety
/// Called by Slurm with its handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slurm_spank_local_user_init(sp: Spank, _ac: c_int, _av: *const *const c_char) -> c_int {
    // SAFETY: `sp` is Slurm's live handle.
    let Some(requested) = (unsafe { submitted_sysroot(sp) }) else {
        return 0;
    };
    let mut argc: c_int = 0;
    let mut argv: *mut *mut c_char = std::ptr::null_mut();
    // SAFETY: S_JOB_ARGV takes an `int *` and a `char ***`; in srun it yields
    // the step's argv as srun will send it.
    let rc = unsafe { spank_get_item(sp, S_JOB_ARGV, &mut argc as *mut c_int, &mut argv as *mut _) };
    if rc == ESPANK_SUCCESS && !argv.is_null() {
        // SAFETY: on success `argv` holds `argc` entries.
        let step_argv = unsafe { argv_bytes(argc, argv) };
        if plan::is_multi_prog(&step_argv) {
            log_error(plan::MULTI_PROG_REFUSED);
            return -1;
        }
    }
    let name = CString::new(plan::ENV_OPTION).expect("no NUL in a constant");
    // SAFETY: both are NUL-terminated strings. srun sets its SPANK option
    // variables with setenv(3) in the same way, from its main thread, before
    // the launch.
    if unsafe { libc::setenv(name.as_ptr(), requested.as_ptr(), 1) } != 0 {
        log_error(&format!("cannot set {} for the tasks", plan::ENV_OPTION));
        return -1;
    }
    0
}

/// Runs in sbatch and salloc once the options are read. A request the
/// caller made only through `_SLURM_SPANK_OPTION_imageswitch_sysroot` goes
/// into the job the way a `--sysroot` option does (Slurm's job control
/// environment, which every task receives as
/// `SLURM_SPANK__SLURM_SPANK_OPTION_imageswitch_sysroot`), so that a node
/// without the plugin sees it too.
///
/// # Safety
/// Called by Slurm with its handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slurm_spank_init_post_opt(sp: Spank, _ac: c_int, _av: *const *const c_char) -> c_int {
    // SAFETY: no arguments; valid in every context.
    if unsafe { spank_context() } != S_CTX_ALLOCATOR {
        return 0;
    }
    let mut optarg: *mut c_char = std::ptr::null_mut();
    // SAFETY: `sp` is Slurm's live handle and `optarg` a valid out-pointer.
    if unsafe { spank_option_getopt(sp, &SYSROOT_OPTION.0, &mut optarg) } == ESPANK_SUCCESS {
        return 0;
    }
    let Some(requested) = remote_option_from_environ() else {
        return 0;
    };
    let name = CString::new(plan::ENV_REMOTE_OPTION).expect("no NUL in a constant");
    // SAFETY: `sp` is Slurm's live handle; both strings are NUL-terminated.
    if unsafe { spank_job_control_setenv(sp, name.as_ptr(), requested.as_ptr(), 1) } != ESPANK_SUCCESS {
        log_error(&format!("cannot pass {} on to the job", plan::ENV_REMOTE_OPTION));
        return -1;
    }
    0
}

/// `_SLURM_SPANK_OPTION_imageswitch_sysroot` from the submitting process's
/// own environment.
fn remote_option_from_environ() -> Option<CString> {
    std::env::var_os(plan::ENV_REMOTE_OPTION).map(|v| CString::new(v.into_vec()).unwrap_or_default())
}

/// The sysroot asked for at submission: the option, else
/// `_SLURM_SPANK_OPTION_imageswitch_sysroot` in the environment.
///
/// # Safety
/// `sp` must be Slurm's live handle.
unsafe fn submitted_sysroot(sp: Spank) -> Option<CString> {
    let mut optarg: *mut c_char = std::ptr::null_mut();
    // SAFETY: `sp` is Slurm's live handle and `optarg` a valid out-pointer.
    if unsafe { spank_option_getopt(sp, &SYSROOT_OPTION.0, &mut optarg) } == ESPANK_SUCCESS && !optarg.is_null() {
        // SAFETY: on success Slurm stores a NUL-terminated string it owns.
        return Some(unsafe { CStr::from_ptr(optarg) }.to_owned());
    }
    remote_option_from_environ()
}

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

/// A copy of the `argc` strings of an argv array.
///
/// # Safety
/// `argv` must hold `argc` entries, each null or a NUL-terminated string.
unsafe fn argv_bytes(argc: c_int, argv: *const *mut c_char) -> Vec<Vec<u8>> {
    let count = usize::try_from(argc).unwrap_or(0);
    // SAFETY: the caller guarantees `argv` holds `count` entries.
    let entries = unsafe { std::slice::from_raw_parts(argv, count) };
    entries
        .iter()
        .filter(|p| !p.is_null())
        // SAFETY: each non-null entry is a NUL-terminated string owned by Slurm.
        .map(|&p| unsafe { CStr::from_ptr(p) }.to_bytes().to_vec())
        .collect()
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
