//! What the caller asked for, from argv alone. argv[0] only *keys into* the
//! root-owned configuration by exact match; it never builds a path.
#![forbid(unsafe_code)]

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::config::{Config, PROGRAM_NAME, is_valid_name};
use crate::error::Error;

/// What to run inside the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// The user's shell as an interactive login shell.
    LoginShell,
    /// The user's shell with these arguments, untouched.
    Shell(Vec<OsString>),
    /// A program (a path, or a name looked up in `PATH` inside) with arguments.
    Program { program: OsString, args: Vec<OsString> },
    /// A program by absolute path, started as a login shell (`argv[0]` is
    /// `-NAME`): a bin_dir shell a batch system starts as a job shell.
    LoginProgram { program: OsString, args: Vec<OsString> },
}

/// What `imageswitch --help` and `--version` ask for: answered first, with
/// no privilege used and no configuration read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Info {
    Help,
    Version,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    List,
    /// `require_cwd`: asked for on the command line (`--require-cwd`).
    Enter {
        sysroot: String,
        command: Command,
        require_cwd: bool,
    },
}

fn basename(argv0: &OsStr) -> &OsStr {
    Path::new(argv0).file_name().unwrap_or(argv0)
}

/// `--help`/`--version` (and the program's name alone) are answered without
/// privilege or configuration: the only place they are recognised.
pub fn informational(argv: &[OsString]) -> Option<Info> {
    let argv0 = argv.first()?;
    if basename(argv0) != PROGRAM_NAME {
        return None;
    }
    match argv.get(1).map(|a| a.as_bytes()) {
        Some(b"--help") | Some(b"-h") | None => Some(Info::Help),
        Some(b"--version") | Some(b"-V") => Some(Info::Version),
        _ => None,
    }
}

/// The sysroot whose bin_dir is the directory of `path`, and the entry name.
fn bin_dir_entry<'a>(path: &'a Path, config: &'a Config) -> Option<(&'a str, &'a str)> {
    let parent = path.parent().filter(|p| p.is_absolute())?;
    let sysroot = config.sysroots.iter().find(|s| s.bin_dir.as_deref() == Some(parent))?;
    Some((sysroot.name.as_str(), path.file_name()?.to_str()?))
}

/// Maps argv onto an [`Invocation`] using the configuration's names.
/// `exec_path` is the kernel's record of the path that was executed
/// (`AT_EXECFN`); it is consulted only for an `argv[0]` without a directory:
/// a program in a bin_dir found through `PATH` (`uname` for `/bin5/uname`,
/// also through `env`), or started as a login shell (`-bash`, how Torque's
/// pbs_mom starts `qsub -S /bin5/bash`). Both only key into the configuration.
pub fn dispatch(argv: &[OsString], exec_path: Option<&OsStr>, config: &Config) -> Result<Invocation, Error> {
    let argv0 = argv.first().ok_or_else(|| Error::Usage("empty argument list".into()))?;
    let rest = &argv[1..];
    let base = basename(argv0);

    if base == PROGRAM_NAME {
        return dispatch_program(rest, config);
    }

    let (login, bare) = match argv0.as_bytes().strip_prefix(b"-") {
        Some(name) => (true, name),
        None => (false, argv0.as_bytes()),
    };
    if let (false, Some(path)) = (bare.contains(&b'/'), exec_path) {
        if let Some((sysroot, entry)) = bin_dir_entry(Path::new(path), config) {
            if entry.as_bytes() == bare && is_valid_name(entry) {
                let program = Path::new("/bin").join(entry).into_os_string();
                let args = rest.to_vec();
                let command =
                    if login { Command::LoginProgram { program, args } } else { Command::Program { program, args } };
                return Ok(Invocation::Enter { sysroot: sysroot.to_string(), command, require_cwd: false });
            }
        }
    }

    // `/bin5/bash`: the directory is a configured bin_dir, compared by path
    // component; the entry must be a plain name.
    if let Some((sysroot, entry)) = bin_dir_entry(Path::new(argv0), config) {
        if !is_valid_name(entry) {
            return Err(Error::UnknownName(String::from_utf8_lossy(argv0.as_bytes()).into_owned()));
        }
        let program = Path::new("/bin").join(entry).into_os_string();
        return Ok(Invocation::Enter {
            sysroot: sysroot.to_string(),
            command: Command::Program { program, args: rest.to_vec() },
            require_cwd: false,
        });
    }
    if Path::new(argv0)
        .parent()
        .filter(|p| p.is_absolute())
        .is_some_and(|dir| config.sysroots.iter().any(|s| s.bin_dir.as_deref() == Some(dir)))
    {
        return Err(Error::UnknownName(String::from_utf8_lossy(argv0.as_bytes()).into_owned()));
    }

    // `sl5`: an alias behaves like a shell. `-sl5` is how login(1) starts a
    // login shell named in passwd.
    let alias = base.as_bytes().strip_prefix(b"-").map_or(base, OsStr::from_bytes);
    let alias = alias.to_str().unwrap_or("");
    if is_valid_name(alias) {
        if let Some(sysroot) = config.sysroots.iter().find(|s| s.aliases.iter().any(|a| a == alias)) {
            let command = if rest.is_empty() { Command::LoginShell } else { Command::Shell(rest.to_vec()) };
            return Ok(Invocation::Enter { sysroot: sysroot.name.clone(), command, require_cwd: false });
        }
        if let Some(err) = config.broken(alias) {
            return Err(Error::Config(err.clone()));
        }
    }
    Err(Error::UnknownName(String::from_utf8_lossy(base.as_bytes()).into_owned()))
}

/// When a `#!BIN_DIR/PROGRAM` script started us, the index (in the
/// command's arguments) of the script's path: the kernel runs the
/// interpreter named on the `#!` line as `argv[0]`, then its optional
/// argument, then the path it executed (`exec_path`, AT_EXECFN). The script
/// is then read through a descriptor opened as the caller, so it runs even
/// where the tree cannot see its path.
pub fn script_argument(argv: &[OsString], exec_path: Option<&OsStr>, bin_dir: Option<&Path>) -> Option<usize> {
    let (argv0, exec_path) = (argv.first()?, exec_path?);
    if bin_dir.is_none() || Path::new(argv0).parent() != bin_dir || argv0 == exec_path {
        return None;
    }
    argv.iter().skip(1).take(2).position(|arg| arg == exec_path)
}

fn dispatch_program(rest: &[OsString], config: &Config) -> Result<Invocation, Error> {
    let mut args = rest.iter();
    let mut first = args.next();
    let require_cwd = first.is_some_and(|a| a == "--require-cwd");
    if require_cwd {
        first = args.next();
    }
    match first.map(|a| a.as_bytes()) {
        Some(b"--list") | Some(b"-l") if !require_cwd => {
            if args.next().is_some() {
                return Err(Error::Usage("--list takes no arguments".into()));
            }
            return Ok(Invocation::List);
        }
        Some(b"--") => first = args.next(),
        Some(opt) if opt.starts_with(b"-") => {
            return Err(Error::Usage(format!("unknown option \"{}\"", crate::error::echo(opt))));
        }
        _ => {}
    }
    let name_os = first.ok_or_else(|| Error::Usage("missing sysroot NAME".into()))?;
    let name = name_os.to_str().unwrap_or("");
    if !is_valid_name(name) {
        return Err(Error::UnknownName(String::from_utf8_lossy(name_os.as_bytes()).into_owned()));
    }
    let sysroot = config
        .sysroots
        .iter()
        .find(|s| s.name == name)
        .or_else(|| config.sysroots.iter().find(|s| s.aliases.iter().any(|a| a == name)));
    let Some(sysroot) = sysroot else {
        if let Some(err) = config.broken(name) {
            return Err(Error::Config(err.clone()));
        }
        return Err(Error::UnknownName(name.to_string()));
    };
    let command = match args.next() {
        None => Command::LoginShell,
        Some(program) => Command::Program { program: program.clone(), args: args.cloned().collect() },
    };
    Ok(Invocation::Enter { sysroot: sysroot.name.clone(), command, require_cwd })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn config() -> Config {
        parse(
            "t",
            "[sysroot.sl5]\npath = \"/s\"\naliases = [\"sl5\", \"old\"]\nbin_dir = \"/bin5\"\n\
             [sysroot.deb]\npath = \"/d\"\n[sysroot.bad]\npth = \"/x\"\naliases = [\"b\"]\n",
        )
        .expect("valid")
    }

    fn argv(items: &[&str]) -> Vec<OsString> {
        items.iter().map(OsString::from).collect()
    }

    fn enter(sysroot: &str, command: Command) -> Invocation {
        Invocation::Enter { sysroot: sysroot.into(), command, require_cwd: false }
    }

    fn run(items: &[&str]) -> Result<Invocation, String> {
        dispatch(&argv(items), None, &config()).map_err(|e| e.to_string())
    }

    #[test]
    fn program_form() {
        assert_eq!(run(&["imageswitch", "deb"]), Ok(enter("deb", Command::LoginShell)));
        assert_eq!(
            run(&["/usr/sbin/imageswitch", "deb", "ls", "-l"]),
            Ok(enter("deb", Command::Program { program: "ls".into(), args: argv(&["-l"]) }))
        );
        assert_eq!(
            run(&["imageswitch", "--", "old", "--weird"]),
            Ok(enter("sl5", Command::Program { program: "--weird".into(), args: vec![] }))
        );
        assert_eq!(run(&["imageswitch", "--list"]), Ok(Invocation::List));
        // `--help`, `--version` and the name alone never get here (see `informational`).
        assert!(run(&["imageswitch"]).unwrap_err().contains("missing sysroot NAME"));
        assert!(run(&["imageswitch", "--help"]).unwrap_err().contains("unknown option \"--help\""));
        assert!(run(&["imageswitch", "-u", "root", "deb"]).unwrap_err().contains("unknown option \"-u\""));
        assert!(run(&["imageswitch", "nosuch"]).unwrap_err().contains("unknown sysroot name \"nosuch\""));
        assert!(run(&["imageswitch", "../etc"]).unwrap_err().contains("unknown sysroot name"));
    }

    #[test]
    fn require_cwd_flag_comes_before_the_name() {
        let want = |command| Ok(Invocation::Enter { sysroot: "deb".into(), command, require_cwd: true });
        assert_eq!(run(&["imageswitch", "--require-cwd", "deb"]), want(Command::LoginShell));
        assert_eq!(
            run(&["imageswitch", "--require-cwd", "--", "deb", "--require-cwd"]),
            want(Command::Program { program: "--require-cwd".into(), args: vec![] })
        );
        assert!(run(&["imageswitch", "--require-cwd"]).unwrap_err().contains("missing sysroot NAME"));
        assert!(run(&["imageswitch", "--require-cwd", "--list"]).unwrap_err().contains("unknown option \"--list\""));
        // After NAME it is the command, untouched.
        assert_eq!(
            run(&["imageswitch", "deb", "--require-cwd"]),
            Ok(enter("deb", Command::Program { program: "--require-cwd".into(), args: vec![] }))
        );
    }

    #[test]
    fn alias_behaves_like_a_shell() {
        assert_eq!(run(&["sl5"]), Ok(enter("sl5", Command::LoginShell)));
        assert_eq!(run(&["/usr/local/bin/old"]), Ok(enter("sl5", Command::LoginShell)));
        assert_eq!(run(&["-sl5"]), Ok(enter("sl5", Command::LoginShell)));
        assert_eq!(run(&["sl5", "-c", "echo hi"]), Ok(enter("sl5", Command::Shell(argv(&["-c", "echo hi"])))));
        assert_eq!(run(&["sl5", "script.sh", "a"]), Ok(enter("sl5", Command::Shell(argv(&["script.sh", "a"])))));
    }

    #[test]
    fn bin_dir_runs_bin_entry() {
        assert_eq!(
            run(&["/bin5/sh", "/home/u/job.sh", "x"]),
            Ok(enter("sl5", Command::Program { program: "/bin/sh".into(), args: argv(&["/home/u/job.sh", "x"]) }))
        );
        // Relative or differently spelled directories do not match.
        assert!(run(&["bin5/sh"]).is_err());
        assert!(run(&["/bin5/../etc/sh"]).is_err());
        assert!(run(&["/bin6/sh"]).is_err());
    }

    #[test]
    fn hostile_argv0_is_only_a_key() {
        assert!(run(&["../../etc/shadow"]).unwrap_err().contains("unknown sysroot name \"shadow\""));
        assert!(run(&[""]).is_err());
        let non_utf8 = vec![OsString::from(OsStr::from_bytes(b"/bin5/\xff"))];
        assert!(dispatch(&non_utf8, None, &config()).is_err());
        assert!(dispatch(&[], None, &config()).is_err());
    }

    #[test]
    fn bin_dir_entry_found_through_the_executed_path_login_and_path_forms() {
        // pbs_mom: execv("/bin5/bash", ["-bash"]).
        let got = dispatch(&argv(&["-bash"]), Some(OsStr::new("/bin5/bash")), &config());
        assert_eq!(
            got.map_err(|e| e.to_string()),
            Ok(enter("sl5", Command::LoginProgram { program: "/bin/bash".into(), args: vec![] }))
        );
        // The executed file must be that very name in a bin_dir.
        assert!(dispatch(&argv(&["-bash"]), Some(OsStr::new("/bin5/sh")), &config()).is_err());
        assert!(dispatch(&argv(&["-bash"]), Some(OsStr::new("/usr/bin/bash")), &config()).is_err());
        assert!(dispatch(&argv(&["-bash"]), None, &config()).is_err());
        // Found through PATH (or `env`): argv[0] is the bare name.
        assert_eq!(
            dispatch(&argv(&["uname", "-m"]), Some(OsStr::new("/bin5/uname")), &config()).map_err(|e| e.to_string()),
            Ok(enter("sl5", Command::Program { program: "/bin/uname".into(), args: argv(&["-m"]) }))
        );
        assert_eq!(
            dispatch(&argv(&["uname"]), Some(OsStr::new("/bin5//uname")), &config()).map_err(|e| e.to_string()),
            Ok(enter("sl5", Command::Program { program: "/bin/uname".into(), args: vec![] }))
        );
        // A name other than the executed file's, or a relative path, keys nothing.
        assert!(dispatch(&argv(&["uname"]), Some(OsStr::new("/bin5/id")), &config()).is_err());
        assert!(dispatch(&argv(&["uname"]), Some(OsStr::new("bin5/uname")), &config()).is_err());
        // An alias login shell still wins by name.
        assert_eq!(
            dispatch(&argv(&["-sl5"]), Some(OsStr::new("/usr/local/bin/sl5")), &config()).map_err(|e| e.to_string()),
            Ok(enter("sl5", Command::LoginShell))
        );
    }

    #[test]
    fn a_binn_script_is_found_by_the_path_the_kernel_executed() {
        let bin5 = Some(Path::new("/bin5"));
        let spool = OsStr::new("/var/spool/slurmd/job7/slurm_script");
        let script = |items: &[&str], exec: Option<&OsStr>| script_argument(&argv(items), exec, bin5);
        assert_eq!(script(&["/bin5/bash", "/var/spool/slurmd/job7/slurm_script", "x"], Some(spool)), Some(0));
        assert_eq!(script(&["/bin5/bash", "-e", "/var/spool/slurmd/job7/slurm_script"], Some(spool)), Some(1));
        // Run directly, not through a script: nothing to open.
        assert_eq!(script(&["/bin5/bash", "/etc/shadow"], Some(OsStr::new("/bin5/bash"))), None);
        assert_eq!(script(&["/bin5/bash", "x", "y", "/s"], Some(OsStr::new("/s"))), None);
        assert_eq!(script(&["/usr/bin/imageswitch", "sl5", "/s"], Some(OsStr::new("/s"))), None);
        assert_eq!(script_argument(&argv(&["/bin5/sh", "/s"]), Some(OsStr::new("/s")), None), None);
    }

    #[test]
    fn broken_sysroot_reports_its_config_error() {
        let err = run(&["imageswitch", "bad"]).unwrap_err();
        assert!(err.contains("unknown key \"pth\" in [sysroot.bad]"), "{err}");
    }

    #[test]
    fn informational_needs_no_config() {
        assert_eq!(informational(&argv(&["imageswitch", "--version"])), Some(Info::Version));
        assert_eq!(informational(&argv(&["/usr/bin/imageswitch", "-V", "x"])), Some(Info::Version));
        assert_eq!(informational(&argv(&["imageswitch", "-h"])), Some(Info::Help));
        assert_eq!(informational(&argv(&["imageswitch"])), Some(Info::Help));
        assert_eq!(informational(&argv(&["imageswitch", "--require-cwd", "--help"])), None);
        assert_eq!(informational(&argv(&[])), None);
        assert_eq!(informational(&argv(&["sl5", "--help"])), None);
        assert_eq!(informational(&argv(&["imageswitch", "deb"])), None);
    }
}
