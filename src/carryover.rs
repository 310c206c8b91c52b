//! What the caller had that the kernel or glibc's loader took away when
//! the set-uid binary started, and the command gets back: the environment
//! glibc's loader strips, the personality flags a set-uid exec lets through.
//! (The stack limit and the signal mask are in [`crate::privileges`].)
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

/// The execution domain's byte of a personality value.
const PER_MASK: libc::c_ulong = 0xff;

/// Flags the kernel clears at a set-uid exec (`PER_CLEAR_ON_SETID`:
/// READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE, ADDR_COMPAT_LAYOUT, MMAP_PAGE_ZERO).
/// They stay cleared, whoever the caller is.
pub const PER_CLEAR_ON_SETID: libc::c_ulong = 0x0040_0000 | 0x0004_0000 | 0x0020_0000 | 0x0010_0000;

/// The personality for the command: the configured execution domain with
/// the caller's flags that survived the set-uid exec.
pub fn personality_for(domain: libc::c_ulong, current: libc::c_ulong) -> libc::c_ulong {
    (domain & PER_MASK) | (current & !PER_MASK & !PER_CLEAR_ON_SETID)
}

/// The caller's environment as the kernel handed it over. For a set-uid
/// program glibc's loader removes variables (`TMPDIR`, `TZDIR`, `LOCPATH`...,
/// its `UNSECURE_ENVVARS`) from `environ` before `main`, but their strings
/// stay where the kernel put them: read there in memory
/// ([`crate::sys::exec_environment_block`], `args` being this process's
/// arguments), else as /proc/self/environ shows them. Without /proc, glibc's
/// (shorter) view is all there is.
pub fn caller_environment(args: &[OsString]) -> Vec<(OsString, OsString)> {
    if let Some(block) = crate::sys::exec_environment_block(args) {
        return parse_environ(block);
    }
    // Most environments fit in 16 KiB: one read, not one per doubling.
    match crate::sys::read_generated("/proc/self/environ", 16 << 10) {
        Ok(block) => parse_environ(&block),
        Err(_) => std::env::vars_os().collect(),
    }
}

/// `NAME=value` strings separated by NUL; an entry without `=` (or with an
/// empty name) is skipped, as glibc's `environ` readers do.
pub fn parse_environ(block: &[u8]) -> Vec<(OsString, OsString)> {
    block
        .split(|&b| b == 0)
        .filter_map(|entry| {
            let eq = entry.iter().position(|&b| b == b'=').filter(|&i| i > 0)?;
            Some((OsString::from_vec(entry[..eq].to_vec()), OsString::from_vec(entry[eq + 1..].to_vec())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PER_LINUX, PER_LINUX32};

    #[test]
    fn personality_keeps_the_callers_flags_and_sets_the_domain() {
        const UNAME26: libc::c_ulong = 0x0002_0000;
        const ADDR_LIMIT_3GB: libc::c_ulong = 0x0800_0000;
        const ADDR_NO_RANDOMIZE: libc::c_ulong = 0x0004_0000;
        // linux32 caller, UNAME26 and 3GB: the configured domain wins, the flags stay.
        assert_eq!(personality_for(PER_LINUX, PER_LINUX32 | UNAME26 | ADDR_LIMIT_3GB), UNAME26 | ADDR_LIMIT_3GB);
        assert_eq!(personality_for(PER_LINUX32, UNAME26), PER_LINUX32 | UNAME26);
        // What a set-uid exec clears stays cleared.
        assert_eq!(personality_for(PER_LINUX32, ADDR_NO_RANDOMIZE | PER_CLEAR_ON_SETID), PER_LINUX32);
    }

    #[test]
    fn environ_block_parses_like_glibc() {
        let env = parse_environ(b"TMPDIR=/scratch\0A=b=c\0noequals\0=x\0EMPTY=\0");
        let pairs: Vec<(&str, &str)> =
            env.iter().map(|(n, v)| (n.to_str().expect("utf8"), v.to_str().expect("utf8"))).collect();
        assert_eq!(pairs, [("TMPDIR", "/scratch"), ("A", "b=c"), ("EMPTY", "")]);
    }
}
