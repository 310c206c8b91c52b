//! The helper's side of the hand-over (see `plan.rs`): reading what the
//! plugin left in the environment, and the argv imageswitch is run with.
//! Pure functions, unit-tested in this file.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::plan::{ENV_BATCH, ENV_COMMAND, ENV_IMAGESWITCH, ENV_SYSROOT, validate_sysroot_name};

/// Every hand-over variable starts with this; all of them are removed before
/// imageswitch runs, known or not.
const ENV_PREFIX: &str = "IMAGESWITCH_SPANK_";

/// What the helper is to run, read back from its argv and environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handoff {
    pub imageswitch: PathBuf,
    pub sysroot: String,
    /// The task's own argv: the original argv[0], then the helper's arguments.
    pub task_argv: Vec<OsString>,
    /// The batch script is to be passed through an open fd.
    pub batch: bool,
    /// The environment for imageswitch: the helper's, without the hand-over.
    pub env: Vec<(OsString, OsString)>,
}

/// Reads the hand-over. The values are checked again (the helper is an
/// ordinary program the user could start by hand) though only the user's
/// own rights are ever at stake.
pub fn read_handoff(argv: &[OsString], env: Vec<(OsString, OsString)>) -> Result<Handoff, String> {
    let (handed, env): (Vec<_>, Vec<_>) =
        env.into_iter().partition(|(k, _)| k.as_bytes().starts_with(ENV_PREFIX.as_bytes()));
    let get = |name: &str| handed.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let missing = |name: &str| format!("{name} is not set (run by the imageswitch SPANK plugin only)");
    let sysroot = get(ENV_SYSROOT).ok_or_else(|| missing(ENV_SYSROOT))?;
    let sysroot = validate_sysroot_name(sysroot.as_bytes())?.to_owned();
    let command = get(ENV_COMMAND).filter(|c| !c.is_empty()).ok_or_else(|| missing(ENV_COMMAND))?;
    let imageswitch = PathBuf::from(get(ENV_IMAGESWITCH).ok_or_else(|| missing(ENV_IMAGESWITCH))?);
    if !imageswitch.is_absolute() {
        return Err(format!("{ENV_IMAGESWITCH} must be an absolute path, got {:?}", imageswitch));
    }
    let batch = get(ENV_BATCH).is_some_and(|v| v == "1");
    let mut task_argv = vec![command];
    task_argv.extend(argv.iter().skip(1).cloned());
    Ok(Handoff { imageswitch, sysroot, task_argv, batch, env })
}

/// The argv the task is re-executed with:
/// `imageswitch --require-cwd NAME CMD ARGS...`; `None` when the task has no
/// command (slurmstepd reports that itself). `--require-cwd`: a batch task
/// whose working directory does not exist in the tree fails with status 125
/// instead of running in the home directory, where its relative outputs
/// would go to the wrong place.
///
/// For a batch step the script is passed as `/proc/self/fd/FD`, an fd the
/// caller opened on it (as the user) and left open across exec: the spool
/// path is not visible inside the tree, the open file is, and the kernel still
/// reads the script's own `#!` line — now resolved inside the tree.
pub fn task_argv(
    imageswitch: &Path,
    sysroot: &str,
    task_argv: &[OsString],
    batch_script_fd: Option<i32>,
) -> Option<Vec<OsString>> {
    let (command, args) = task_argv.split_first()?;
    let mut out = Vec::with_capacity(task_argv.len() + 3);
    out.push(imageswitch.as_os_str().to_os_string());
    out.push(OsString::from("--require-cwd"));
    out.push(OsString::from(sysroot));
    match batch_script_fd {
        Some(fd) => out.push(OsString::from(format!("/proc/self/fd/{fd}"))),
        None => out.push(command.clone()),
    }
    out.extend(args.iter().cloned());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Step, handoff_env, parse_plugin_args};
    use std::ffi::OsStr;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn osenv(v: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        v.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect()
    }

    #[test]
    fn handoff_round_trip() {
        let args = parse_plugin_args(&["imageswitch=/opt/imageswitch"]).unwrap();
        let env: Vec<(OsString, OsString)> = handoff_env(&args, "deb11", OsStr::new("uname"), Step::Regular)
            .into_iter()
            .map(|(k, v)| (OsString::from(k), v))
            .chain(osenv(&[("PATH", "/usr/bin"), ("SLURM_JOB_ID", "7")]))
            .collect();
        let got = read_handoff(&os(&["/usr/libexec/h", "-m"]), env).unwrap();
        assert_eq!(got.imageswitch, Path::new("/opt/imageswitch"));
        assert_eq!(got.sysroot, "deb11");
        assert_eq!(got.task_argv, os(&["uname", "-m"]));
        assert!(!got.batch);
        assert_eq!(got.env, osenv(&[("PATH", "/usr/bin"), ("SLURM_JOB_ID", "7")]));
    }

    #[test]
    fn every_handover_variable_has_the_prefix() {
        let args = parse_plugin_args::<&str>(&[]).unwrap();
        for (name, _) in handoff_env(&args, "n", OsStr::new("c"), Step::Batch) {
            assert!(name.starts_with(ENV_PREFIX), "{name}");
        }
    }

    #[test]
    fn handoff_marks_batch_steps() {
        let args = parse_plugin_args::<&str>(&[]).unwrap();
        let env = handoff_env(&args, "deb11", OsStr::new("/spool/job1/slurm_script"), Step::Batch);
        assert!(env.contains(&(ENV_BATCH, OsString::from("1"))));
        let env = env.into_iter().map(|(k, v)| (OsString::from(k), v)).collect();
        assert!(read_handoff(&os(&["/h"]), env).unwrap().batch);
    }

    #[test]
    fn handoff_strips_every_handover_variable_and_checks_values() {
        let base = [
            (ENV_SYSROOT, "deb11"),
            (ENV_COMMAND, "true"),
            (ENV_IMAGESWITCH, "/usr/sbin/imageswitch"),
            ("IMAGESWITCH_SPANK_OTHER", "x"),
        ];
        let got = read_handoff(&os(&["/h"]), osenv(&base)).unwrap();
        assert!(got.env.is_empty());
        let with = |key: &str, value: &str| {
            let mut env = osenv(&base);
            env.retain(|(k, _)| k != key);
            if !value.is_empty() {
                env.push((OsString::from(key), OsString::from(value)));
            }
            read_handoff(&os(&["/h"]), env)
        };
        assert!(with(ENV_SYSROOT, "").unwrap_err().contains("not set"));
        assert!(with(ENV_SYSROOT, "--list").is_err());
        assert!(with(ENV_COMMAND, "").is_err());
        assert!(with(ENV_IMAGESWITCH, "imageswitch").unwrap_err().contains("absolute"));
    }

    #[test]
    fn srun_task_keeps_argv_untouched() {
        let argv =
            task_argv(Path::new("/usr/sbin/imageswitch"), "deb11", &os(&["/usr/bin/uname", "-m", ""]), None).unwrap();
        assert_eq!(argv, os(&["/usr/sbin/imageswitch", "--require-cwd", "deb11", "/usr/bin/uname", "-m", ""]));
    }

    #[test]
    fn batch_script_goes_through_its_fd() {
        let argv = task_argv(
            Path::new("/usr/sbin/imageswitch"),
            "deb11",
            &os(&["/var/spool/slurmd/job00042/slurm_script", "a1", "a 2"]),
            Some(5),
        )
        .unwrap();
        assert_eq!(argv, os(&["/usr/sbin/imageswitch", "--require-cwd", "deb11", "/proc/self/fd/5", "a1", "a 2"]));
    }

    #[test]
    fn empty_task_argv_is_left_to_slurmstepd() {
        assert_eq!(task_argv(Path::new("/i"), "n", &[], None), None);
        assert_eq!(task_argv(Path::new("/i"), "n", &[], Some(3)), None);
    }
}
