//! The child's environment: the caller's, minus what steers the dynamic
//! loader or libc, plus who and where the user is. A pure function.
#![forbid(unsafe_code)]

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Variables that load code or steer the tree's dynamic loader and malloc:
/// host paths and settings that would break (or subvert) the tree's own
/// libraries. Prefixes end in `*`.
///
/// glibc's loader also strips the rest of its `UNSECURE_ENVVARS` from a
/// set-uid program (`TMPDIR`, `TZDIR`, `LOCPATH`, `NLSPATH`, `GETCONF_DIR`,
/// `HOSTALIASES`, `LOCALDOMAIN`, `RES_OPTIONS`, `RESOLV_HOST_CONF`,
/// `NIS_PATH`). Those are the caller's own settings and matter only to a
/// program running as the caller: the command gets them back (see
/// [`crate::carryover::caller_environment`]); imageswitch never reads them.
const REMOVED: &[&str] = &["LD_*", "MALLOC_*", "GCONV_PATH", "GLIBC_TUNABLES"];

/// Variables we set ourselves; any caller-supplied copy is dropped.
const SET_BY_US: &[&str] = &["HOME", "USER", "LOGNAME", "SHELL", "IMAGESWITCH_SYSROOT", "PWD"];

pub fn is_removed(name: &[u8]) -> bool {
    REMOVED.iter().any(|pattern| match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix.as_bytes()),
        None => name == pattern.as_bytes(),
    }) || SET_BY_US.iter().any(|ours| name == ours.as_bytes())
}

pub struct Identity<'a> {
    pub user: &'a str,
    pub home: &'a Path,
    pub shell: &'a Path,
    pub sysroot: &'a str,
    /// Where the command starts (`PWD`); `None` when not even `/` could be
    /// entered, and then no `PWD` at all rather than a wrong one.
    pub cwd: Option<&'a Path>,
}

fn entry(name: &[u8], value: &[u8]) -> Option<CString> {
    let mut bytes = Vec::with_capacity(name.len() + value.len() + 1);
    bytes.extend_from_slice(name);
    bytes.push(b'=');
    bytes.extend_from_slice(value);
    CString::new(bytes).ok()
}

/// Builds `NAME=value` strings for execve. Entries with an empty or `=`-bearing
/// name, or a NUL, are dropped.
pub fn child_environment(caller_env: &[(OsString, OsString)], who: &Identity<'_>) -> Vec<CString> {
    let mut out: Vec<CString> = caller_env
        .iter()
        .filter(|(name, _)| {
            let name = name.as_bytes();
            !name.is_empty() && !name.contains(&b'=') && !is_removed(name)
        })
        .filter_map(|(name, value)| entry(name.as_bytes(), value.as_bytes()))
        .collect();
    let ours: [(&str, &OsStr); 5] = [
        ("HOME", who.home.as_os_str()),
        ("USER", OsStr::new(who.user)),
        ("LOGNAME", OsStr::new(who.user)),
        ("SHELL", who.shell.as_os_str()),
        ("IMAGESWITCH_SYSROOT", OsStr::new(who.sysroot)),
    ];
    out.extend(ours.iter().filter_map(|(name, value)| entry(name.as_bytes(), value.as_bytes())));
    out.extend(who.cwd.and_then(|cwd| entry(b"PWD", cwd.as_os_str().as_bytes())));
    // Debian's and Ubuntu's default prompts show `(NAME)` when it is set, as
    // under schroot; a value the caller chose is theirs to keep.
    if lookup(caller_env, "debian_chroot").is_none() {
        out.extend(entry(b"debian_chroot", who.sysroot.as_bytes()));
    }
    out
}

/// The value of `name` in the caller's environment.
pub fn lookup<'a>(caller_env: &'a [(OsString, OsString)], name: &str) -> Option<&'a OsStr> {
    caller_env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_os_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs.iter().map(|(n, v)| (OsString::from(n), OsString::from(v))).collect()
    }

    fn build(pairs: &[(&str, &str)]) -> Vec<String> {
        let who = Identity {
            user: "alice",
            home: Path::new("/home/alice"),
            shell: Path::new("/bin/bash"),
            sysroot: "sl5",
            cwd: Some(Path::new("/home/alice")),
        };
        child_environment(&env(pairs), &who).into_iter().map(|c| c.into_string().expect("utf8")).collect()
    }

    #[test]
    fn passes_ordinary_variables_through_in_order() {
        let out = build(&[("PATH", "/usr/bin:/bin"), ("TERM", "xterm"), ("TMPDIR", "/scratch"), ("DISPLAY", ":0")]);
        assert_eq!(&out[..4], ["PATH=/usr/bin:/bin", "TERM=xterm", "TMPDIR=/scratch", "DISPLAY=:0"]);
    }

    #[test]
    fn removes_loader_and_libc_variables() {
        let out = build(&[
            ("LD_PRELOAD", "/tmp/evil.so"),
            ("LD_LIBRARY_PATH", "/x"),
            ("LD_AUDIT", "/x"),
            ("GCONV_PATH", "/tmp"),
            ("GLIBC_TUNABLES", "glibc.malloc.mxfast=1"),
            ("MALLOC_CHECK_", "3"),
            ("KEEP", "1"),
        ]);
        assert_eq!(out[0], "KEEP=1");
        assert!(!out.iter().any(|e| e.starts_with("LD_")
            || e.starts_with("GCONV")
            || e.starts_with("GLIBC")
            || e.starts_with("MALLOC")));
    }

    #[test]
    fn variables_the_loader_strips_from_setuid_programs_reach_the_command() {
        let kept = [
            ("TMPDIR", "/scratch/job1"),
            ("TZDIR", "/x"),
            ("LOCPATH", "/x"),
            ("NLSPATH", "/x"),
            ("GETCONF_DIR", "/x"),
            ("HOSTALIASES", "/x"),
            ("LOCALDOMAIN", "x"),
            ("RES_OPTIONS", "x"),
            ("RESOLV_HOST_CONF", "/x"),
            ("NIS_PATH", "x"),
        ];
        let out = build(&kept);
        let expected: Vec<String> = kept.iter().map(|(n, v)| format!("{n}={v}")).collect();
        assert_eq!(out[..kept.len()], expected[..]);
        let dropped =
            build(&[("MALLOC_TRACE", "/x"), ("LD_DEBUG", "all"), ("GLIBC_TUNABLES", "x"), ("GCONV_PATH", "/x")]);
        assert_eq!(dropped.len(), 7, "only ours: {dropped:?}");
    }

    #[test]
    fn identity_comes_from_passwd_not_the_caller() {
        let out = build(&[("HOME", "/etc"), ("USER", "root"), ("IMAGESWITCH_SYSROOT", "other"), ("PWD", "/gone")]);
        assert_eq!(
            out,
            [
                "HOME=/home/alice",
                "USER=alice",
                "LOGNAME=alice",
                "SHELL=/bin/bash",
                "IMAGESWITCH_SYSROOT=sl5",
                "PWD=/home/alice",
                "debian_chroot=sl5"
            ]
        );
    }

    #[test]
    fn debian_chroot_names_the_sysroot_unless_the_caller_set_it() {
        assert!(build(&[]).contains(&"debian_chroot=sl5".to_string()));
        let out = build(&[("debian_chroot", "mine")]);
        assert_eq!(out.iter().filter(|e| e.starts_with("debian_chroot=")).collect::<Vec<_>>(), ["debian_chroot=mine"]);
    }

    #[test]
    fn malformed_names_are_dropped() {
        let out = build(&[("", "x"), ("A=B", "c"), ("OK", "fine")]);
        assert_eq!(out[0], "OK=fine");
        assert_eq!(out.len(), 8);
    }
}
