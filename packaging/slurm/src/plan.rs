//! What the plugin decides, without touching Slurm or the system: the
//! plugstack.conf arguments, the `--sysroot` value, and what it hands over to
//! the helper. Pure functions, unit-tested in this file; `handoff.rs` is the
//! helper's side.
#![forbid(unsafe_code)]

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Where `imageswitch` lives when plugstack.conf does not say.
pub const DEFAULT_IMAGESWITCH: &str = "/usr/sbin/imageswitch";

/// Where the exec helper (`imageswitch-spank-exec`) lives when plugstack.conf
/// does not say.
pub const DEFAULT_HELPER: &str = "/usr/libexec/imageswitch/imageswitch-spank-exec";

// Slurm 22.05 gives a plugin the task's argv array but no way to make it
// longer, so the plugin replaces only argv[0] (with the helper) and hands the
// rest over in the task's environment. Everything here is the user's own
// business: the helper runs as the user and only ever executes imageswitch.
pub const ENV_SYSROOT: &str = "IMAGESWITCH_SPANK_SYSROOT";
pub const ENV_COMMAND: &str = "IMAGESWITCH_SPANK_COMMAND";
pub const ENV_IMAGESWITCH: &str = "IMAGESWITCH_SPANK_IMAGESWITCH";
pub const ENV_BATCH: &str = "IMAGESWITCH_SPANK_BATCH";

/// Where a `--sysroot` request can also arrive: Slurm's own variable for
/// giving a SPANK option through the environment. sbatch and salloc put it in
/// every job they submit, and Slurm keeps it (a `SLURM_` variable) under
/// `--export=NONE` and `--export=VARS`, which drop the variable slurmstepd
/// reads options from; a task that finds it asked for the sysroot.
pub const ENV_OPTION: &str = "SLURM_SPANK__SLURM_SPANK_OPTION_imageswitch_sysroot";

/// Longest sysroot name accepted; the same bound `imageswitch` applies.
pub const MAX_NAME_LEN: usize = 64;

/// The arguments after the plugin's path on its plugstack.conf line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginArgs {
    pub imageswitch: PathBuf,
    pub helper: PathBuf,
}

/// Parses `imageswitch=/ABS/PATH` and `helper=/ABS/PATH`. Anything else is an
/// error, so a typo in plugstack.conf fails loudly instead of silently using
/// a default.
pub fn parse_plugin_args<S: AsRef<OsStr>>(args: &[S]) -> Result<PluginArgs, String> {
    let mut parsed =
        PluginArgs { imageswitch: PathBuf::from(DEFAULT_IMAGESWITCH), helper: PathBuf::from(DEFAULT_HELPER) };
    for arg in args {
        let arg = arg.as_ref();
        let (key, slot) = if let Some(path) = arg.as_bytes().strip_prefix(b"imageswitch=") {
            (path, &mut parsed.imageswitch)
        } else if let Some(path) = arg.as_bytes().strip_prefix(b"helper=") {
            (path, &mut parsed.helper)
        } else {
            return Err(format!("unknown plugstack.conf argument {:?}", arg));
        };
        let path = Path::new(OsStr::from_bytes(key));
        if !path.is_absolute() {
            return Err(format!("{:?} needs an absolute path", arg));
        }
        *slot = path.to_path_buf();
    }
    Ok(parsed)
}

/// A sysroot name is only ever a key into imageswitch's root-owned config;
/// the same character set imageswitch accepts, and no leading `-` so it can
/// never be read as one of imageswitch's own options.
pub fn validate_sysroot_name(name: &[u8]) -> Result<&str, String> {
    let shown = String::from_utf8_lossy(name);
    if name.is_empty() {
        return Err("--sysroot needs a sysroot name".to_string());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("--sysroot name is longer than {MAX_NAME_LEN} bytes"));
    }
    if name[0] == b'-' {
        return Err(format!("--sysroot name {shown:?} starts with '-'"));
    }
    if !name.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return Err(format!("--sysroot name {shown:?} has characters outside [A-Za-z0-9._-]"));
    }
    std::str::from_utf8(name).map_err(|e| e.to_string())
}

/// Whether a step's argv is `srun --multi-prog FILE`'s: slurmstepd then runs
/// each rank's own line of FILE, which it read from `argv[1]` before any
/// plugin runs, so replacing `argv[0]` changes nothing. srun sends the file's
/// name and its whole text; `read(FILE, LEN)` gives the file's text as the
/// caller sees it when FILE is a regular file of LEN bytes (anything else,
/// `/dev/zero` or a FIFO, is never read), and the two must match.
pub fn is_multi_prog(argv: &[Vec<u8>], read: impl FnOnce(&Path, usize) -> Option<Vec<u8>>) -> bool {
    match argv {
        [file, text] if !file.is_empty() => {
            read(Path::new(OsStr::from_bytes(file)), text.len()).is_some_and(|t| &t == text)
        }
        _ => false,
    }
}

/// Why a `--sysroot` step with `--multi-prog` is refused, and what works.
pub const MULTI_PROG_REFUSED: &str = "--sysroot cannot be used with --multi-prog (Slurm runs each rank's line \
    itself); write \"imageswitch NAME COMMAND...\" on the lines of the --multi-prog file instead";

/// The kind of step a task belongs to, from its step id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The batch script of an `sbatch` job: argv[0] is a script in slurmd's
    /// spool directory, which does not exist inside the tree.
    Batch,
    /// The extern step holds no user command; it is left alone.
    Extern,
    /// An `srun` step.
    Regular,
}

/// `SLURM_BATCH_SCRIPT` and `SLURM_EXTERN_CONT` from slurm.h.
pub fn step_kind(step_id: u32) -> Step {
    match step_id {
        0xffff_fffb => Step::Batch,
        0xffff_fffc => Step::Extern,
        _ => Step::Regular,
    }
}

/// The variables the plugin puts in the task's environment for the helper.
pub fn handoff_env(args: &PluginArgs, sysroot: &str, command: &OsStr, step: Step) -> Vec<(&'static str, OsString)> {
    let mut env = vec![
        (ENV_SYSROOT, OsString::from(sysroot)),
        (ENV_COMMAND, command.to_os_string()),
        (ENV_IMAGESWITCH, args.imageswitch.as_os_str().to_os_string()),
    ];
    if step == Step::Batch {
        env.push((ENV_BATCH, OsString::from("1")));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_args_default_and_override() {
        let none: [&str; 0] = [];
        let defaults = parse_plugin_args(&none).unwrap();
        assert_eq!(defaults.imageswitch, Path::new(DEFAULT_IMAGESWITCH));
        assert_eq!(defaults.helper, Path::new(DEFAULT_HELPER));
        let set = parse_plugin_args(&["imageswitch=/opt/is/bin/imageswitch", "helper=/opt/is/lib/h"]).unwrap();
        assert_eq!(set.imageswitch, Path::new("/opt/is/bin/imageswitch"));
        assert_eq!(set.helper, Path::new("/opt/is/lib/h"));
    }

    #[test]
    fn plugin_args_reject_relative_and_unknown() {
        assert!(parse_plugin_args(&["imageswitch=bin/imageswitch"]).unwrap_err().contains("absolute"));
        assert!(parse_plugin_args(&["helper=h"]).unwrap_err().contains("absolute"));
        assert!(parse_plugin_args(&["imagesw=/x"]).unwrap_err().contains("unknown"));
        assert!(parse_plugin_args(&["imageswitch="]).is_err());
    }

    #[test]
    fn sysroot_names() {
        for good in ["deb11", "sl5", "a.b_c-d", "X9"] {
            assert_eq!(validate_sysroot_name(good.as_bytes()).unwrap(), good);
        }
        for bad in ["", "-l", "--list", "../etc", "a/b", "a b", "a\nb", "é"] {
            assert!(validate_sysroot_name(bad.as_bytes()).is_err(), "{bad:?} accepted");
        }
        assert!(validate_sysroot_name(&[b'a'; MAX_NAME_LEN]).is_ok());
        assert!(validate_sysroot_name(&[b'a'; MAX_NAME_LEN + 1]).is_err());
        assert!(validate_sysroot_name(b"a\xff").is_err());
    }

    #[test]
    fn multi_prog_steps_are_recognised_by_file_and_text() {
        let argv = |v: &[&str]| v.iter().map(|a| a.as_bytes().to_vec()).collect::<Vec<_>>();
        let conf = "0 uname -m\n1 hostname\n";
        let file = |_: &Path, len: usize| Some(conf.as_bytes()[..len.min(conf.len())].to_vec());
        assert!(is_multi_prog(&argv(&["mp.conf", conf]), file));
        assert!(!is_multi_prog(&argv(&["mp.conf", "0 other\n"]), file));
        assert!(!is_multi_prog(&argv(&["mp.conf", conf]), |_, _| None));
        assert!(!is_multi_prog(&argv(&["uname", "-m", "x"]), file));
        assert!(!is_multi_prog(&argv(&["uname"]), file));
        assert!(!is_multi_prog(&argv(&["", conf]), file));
    }

    #[test]
    fn steps() {
        assert_eq!(step_kind(0xffff_fffb), Step::Batch);
        assert_eq!(step_kind(0xffff_fffc), Step::Extern);
        assert_eq!(step_kind(0), Step::Regular);
        assert_eq!(step_kind(7), Step::Regular);
    }
}
