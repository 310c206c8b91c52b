//! The SPANK calls the plugin makes and the types they take, declared by
//! hand from Slurm 22.05's `<slurm/spank.h>` (only calls present since long
//! before 22.05 are used), and copies of the C strings Slurm hands over.

use std::ffi::{CStr, CString, OsString, c_char, c_int};
use std::os::unix::ffi::OsStringExt;

/// `spank_t`: an opaque handle owned by Slurm.
#[repr(C)]
pub struct SpankHandle {
    _opaque: [u8; 0],
}

pub(super) type Spank = *mut SpankHandle;
pub(super) type OptionCallback = extern "C" fn(val: c_int, optarg: *const c_char, remote: c_int) -> c_int;

/// `struct spank_option`.
#[repr(C)]
pub(super) struct SpankOption {
    pub(super) name: *const c_char,
    pub(super) arginfo: *const c_char,
    pub(super) usage: *const c_char,
    pub(super) has_arg: c_int,
    pub(super) val: c_int,
    pub(super) cb: Option<OptionCallback>,
}

// `enum spank_context` and `enum spank_item` values, from spank.h.
pub(super) const S_CTX_LOCAL: c_int = 1;
pub(super) const S_CTX_REMOTE: c_int = 2;
pub(super) const S_CTX_ALLOCATOR: c_int = 3;
pub(super) const S_JOB_STEPID: c_int = 3;
pub(super) const S_JOB_ARGV: c_int = 9;
pub(super) const ESPANK_SUCCESS: c_int = 0;
/// From `<slurm/slurm_errno.h>` (`ESPANK_ERROR` is 3000).
pub(super) const ESPANK_ENV_NOEXIST: c_int = 3004;
pub(super) const ESPANK_NOSPACE: c_int = 3005;

unsafe extern "C" {
    pub(super) fn spank_context() -> c_int;
    pub(super) fn spank_option_register(sp: Spank, opt: *const SpankOption) -> c_int;
    pub(super) fn spank_option_getopt(sp: Spank, opt: *const SpankOption, optarg: *mut *mut c_char) -> c_int;
    pub(super) fn spank_get_item(sp: Spank, item: c_int, ...) -> c_int;
    pub(super) fn spank_getenv(sp: Spank, var: *const c_char, buf: *mut c_char, len: c_int) -> c_int;
    pub(super) fn spank_setenv(sp: Spank, var: *const c_char, val: *const c_char, overwrite: c_int) -> c_int;
    pub(super) fn spank_unsetenv(sp: Spank, var: *const c_char) -> c_int;
    pub(super) fn spank_job_control_setenv(
        sp: Spank,
        var: *const c_char,
        val: *const c_char,
        overwrite: c_int,
    ) -> c_int;
    pub(super) fn slurm_error(format: *const c_char, ...);
}

pub(super) struct OptionEntry(pub(super) SpankOption);

// SAFETY: the entry is never mutated and its pointers are to `'static` C
// string literals; Slurm only reads it (some releases keep the pointer,
// others copy the strings), so sharing it between threads is sound.
unsafe impl Sync for OptionEntry {}

/// Reports to Slurm's log (slurmd's, or srun's stderr in the local context).
pub(super) fn log_error(message: &str) {
    let text = CString::new(format!("imageswitch-spank: {message}").replace('\0', "?")).unwrap_or_default();
    // SAFETY: both arguments are valid NUL-terminated strings and the format
    // consumes exactly one `%s`.
    unsafe { slurm_error(c"%s".as_ptr(), text.as_ptr()) };
}

/// Collects a plugstack.conf argv (`ac` NUL-terminated strings).
///
/// # Safety
/// `av` must point to `ac` valid C strings, or `ac` must be 0.
pub(super) unsafe fn plugin_args(ac: c_int, av: *const *const c_char) -> Vec<OsString> {
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

/// A copy of the `argc` strings of an argv array.
///
/// # Safety
/// `argv` must hold `argc` entries, each null or a NUL-terminated string.
pub(super) unsafe fn argv_bytes(argc: c_int, argv: *const *mut c_char) -> Vec<Vec<u8>> {
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
