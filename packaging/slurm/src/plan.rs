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
/// Every hand-over variable; the task hook removes those it does not set,
/// so that a copy the caller put in the job's environment never reaches the
/// helper.
pub const HANDOFF_VARS: [&str; 4] = [ENV_SYSROOT, ENV_COMMAND, ENV_IMAGESWITCH, ENV_BATCH];

/// The name the task hook gives the task's process (`/proc/PID/comm`,
/// at most 15 bytes) once it has handed the task over: the proof that
/// `imageswitch-slurm-task-prolog` looks for. Unlike a variable, a caller
/// cannot put it there: only code running in that process (slurmstepd and
/// its plugins, before the TaskProlog) can name it.
pub const TASK_MARK: &str = "isw-spank-task";

/// Where a `--sysroot` request can also arrive: Slurm's own variable for
/// giving a SPANK option through the environment. sbatch and salloc put it in
/// every job they submit, and Slurm keeps it (a `SLURM_` variable) under
/// `--export=NONE` and `--export=VARS`, which drop the variable slurmstepd
/// reads options from; a task that finds it asked for the sysroot.
pub const ENV_OPTION: &str = "SLURM_SPANK__SLURM_SPANK_OPTION_imageswitch_sysroot";

/// The variable srun and sbatch use to hand the option to slurmstepd. A
/// caller can set it too, and then only slurmstepd sees the request: srun
/// and sbatch (with the plugin) copy it to [`ENV_OPTION`], so that it
/// survives on a node without the plugin, whose slurmstepd drops it.
pub const ENV_REMOTE_OPTION: &str = "_SLURM_SPANK_OPTION_imageswitch_sysroot";

/// Every form of the request a task can carry, in the order they are read.
pub const REQUEST_VARS: [&str; 2] = [ENV_OPTION, ENV_REMOTE_OPTION];

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

/// Whether a step's argv may be `srun --multi-prog FILE`'s: slurmstepd then
/// runs each rank's own line of FILE, which srun sent as the whole text in
/// `argv[1]`, so replacing `argv[0]` changes nothing. Decided from the argv
/// alone, because FILE itself need not exist where the task runs (another
/// working directory, or a file only on the login node), and SPANK says
/// nothing else about it: any two-word argv whose second word reads as such
/// a file (its first line that is neither blank nor a comment is
/// `RANKS COMMAND...`, RANKS made of digits, `,`, `-`, `*`, `[` and `]`) is
/// taken for one. A plain command that happens to look like that
/// (`echo '0 x'`) is refused too; that errs on the side of not running.
pub fn is_multi_prog(argv: &[Vec<u8>]) -> bool {
    let [_, text] = argv else { return false };
    let Some(line) = text
        .split(|&b| b == b'\n')
        .map(|line| line.trim_ascii_start())
        .find(|line| !line.is_empty() && line[0] != b'#')
    else {
        return false;
    };
    let ranks_end = line.iter().position(u8::is_ascii_whitespace).unwrap_or(line.len());
    let (ranks, command) = line.split_at(ranks_end);
    !ranks.is_empty()
        && ranks.iter().all(|b| b.is_ascii_digit() || matches!(b, b',' | b'-' | b'*' | b'[' | b']'))
        && !command.trim_ascii().is_empty()
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
    fn multi_prog_steps_are_recognised_from_the_argv_alone() {
        let argv = |v: &[&str]| v.iter().map(|a| a.as_bytes().to_vec()).collect::<Vec<_>>();
        for conf in ["0 uname -m\n1 hostname\n", "0 env\n", "* a.out", "# ranks\n\n  0-3,5\tx\n", "[0-1] x\n"] {
            assert!(is_multi_prog(&argv(&["/nowhere/ranks.conf", conf])), "{conf:?}");
            assert!(is_multi_prog(&argv(&["ranks.conf", conf])), "{conf:?}");
        }
        for not in ["", "-m", "\n# only a comment\n", "0", "0   \n", "a.out 1", "x0 y"] {
            assert!(!is_multi_prog(&argv(&["uname", not])), "{not:?}");
        }
        assert!(!is_multi_prog(&argv(&["uname", "0 x", "y"])));
        assert!(!is_multi_prog(&argv(&["uname"])));
    }

    #[test]
    fn steps() {
        assert_eq!(step_kind(0xffff_fffb), Step::Batch);
        assert_eq!(step_kind(0xffff_fffc), Step::Extern);
        assert_eq!(step_kind(0), Step::Regular);
        assert_eq!(step_kind(7), Step::Regular);
    }
}
