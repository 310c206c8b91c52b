//! The boundary with Slurm: the symbols its plugin loader looks up, the
//! option and the submission-side hooks here, the few SPANK calls the plugin
//! makes in `ffi`, and the rewrite of the task's argv[0] in `task`. Every
//! `unsafe` block of the crate is in this module; the helper binary has none.
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

use std::ffi::{CStr, CString, c_char, c_int};
use std::os::unix::ffi::OsStringExt;

mod ffi;
mod task;

use crate::plan;
use ffi::*;

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

static SYSROOT_OPTION: OptionEntry = OptionEntry(SpankOption {
    name: c"sysroot".as_ptr(),
    arginfo: c"NAME".as_ptr(),
    usage: c"Run each task inside sysroot NAME through imageswitch (see imageswitch --list).".as_ptr(),
    has_arg: 1,
    val: 0,
    cb: Some(sysroot_option_cb),
});

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
