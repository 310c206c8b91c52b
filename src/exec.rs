//! Finding and starting the command inside the tree, after the identity
//! switch: every check here runs with the caller's own permissions.
#![forbid(unsafe_code)]

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl, open};
use nix::sys::stat::{Mode, SFlag, fstat, stat};
use nix::unistd::{AccessFlags, access, execve};

use crate::dispatch::Command;
use crate::error::{Error, echo};
use crate::trusted::stat_type;

/// `PATH` inside the tree when the caller has none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Fallback shell when neither the passwd shell nor the sysroot's exists.
pub const LAST_RESORT_SHELL: &str = "/bin/sh";

/// The first of `candidates` that is an executable file inside the tree.
pub fn choose_shell<'a>(candidates: &[&'a Path], executable: impl Fn(&Path) -> bool) -> &'a Path {
    candidates.iter().copied().find(|c| executable(c)).unwrap_or(Path::new(LAST_RESORT_SHELL))
}

pub fn is_executable(path: &Path) -> bool {
    access(path, AccessFlags::X_OK).is_ok() && !path.is_dir()
}

/// Looks `program` up like execvp: a name with a slash is used as is.
pub fn find_program(
    program: &OsStr,
    path_var: Option<&OsStr>,
    executable: impl Fn(&Path) -> bool,
) -> io::Result<PathBuf> {
    if program.is_empty() {
        return Err(io::Error::from(io::ErrorKind::NotFound));
    }
    if program.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(program));
    }
    let search = path_var.map(OsStr::as_bytes).unwrap_or(DEFAULT_PATH.as_bytes());
    let mut denied = false;
    for dir in search.split(|&b| b == b':') {
        let dir = if dir.is_empty() { Path::new(".") } else { Path::new(OsStr::from_bytes(dir)) };
        let candidate = dir.join(program);
        if executable(&candidate) {
            return Ok(candidate);
        }
        denied |= candidate.exists();
    }
    Err(io::Error::from(if denied { io::ErrorKind::PermissionDenied } else { io::ErrorKind::NotFound }))
}

/// The program to execute and its full argv (argv[0] included).
#[derive(Debug, PartialEq, Eq)]
pub struct Launch {
    pub program: PathBuf,
    pub argv: Vec<OsString>,
}

/// Turns a [`Command`] into a [`Launch`], given the shell chosen in the tree.
pub fn launch_for(
    command: &Command,
    shell: &Path,
    path_var: Option<&OsStr>,
    executable: impl Fn(&Path) -> bool,
) -> io::Result<Launch> {
    match command {
        Command::LoginShell => {
            let name = shell.file_name().unwrap_or(shell.as_os_str());
            let mut argv0 = OsString::from("-");
            argv0.push(name);
            Ok(Launch { program: shell.to_path_buf(), argv: vec![argv0] })
        }
        Command::Shell(args) => {
            let mut argv = vec![shell.as_os_str().to_os_string()];
            argv.extend(args.iter().cloned());
            Ok(Launch { program: shell.to_path_buf(), argv })
        }
        Command::LoginProgram { program, args } => {
            let path = Path::new(program);
            let mut argv0 = OsString::from("-");
            argv0.push(path.file_name().unwrap_or(program));
            let mut argv = vec![argv0];
            argv.extend(args.iter().cloned());
            Ok(Launch { program: path.to_path_buf(), argv })
        }
        Command::Program { program, args } => {
            let found = find_program(program, path_var, executable)?;
            let mut argv = vec![program.clone()];
            argv.extend(args.iter().cloned());
            Ok(Launch { program: found, argv })
        }
    }
}

fn c_string(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// The `#!` script that started us, opened as the caller.
pub struct Script {
    /// Its index in the command's arguments.
    pub arg: usize,
    pub path: PathBuf,
    pub fd: OwnedFd,
}

/// Opens a script for reading (call it as the caller): a regular file, or nothing.
pub fn open_script(path: &Path) -> Option<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
    let fd = open(path, flags, Mode::empty()).ok()?;
    let st = fstat(&fd).ok()?;
    (stat_type(&st) == SFlag::S_IFREG).then_some(fd)
}

/// As the caller, inside the tree: `None` when the script's path names the
/// same file there, else the name of its descriptor, `/proc/self/fd/N`, made
/// inheritable so the interpreter can read it.
pub fn script_from_descriptor(script: &Script) -> Option<OsString> {
    let opened = fstat(&script.fd).ok()?;
    if stat(&script.path).is_ok_and(|st| (st.st_dev, st.st_ino) == (opened.st_dev, opened.st_ino)) {
        return None;
    }
    fcntl(&script.fd, FcntlArg::F_SETFD(FdFlag::empty())).ok()?;
    Some(OsString::from(format!("/proc/self/fd/{}", script.fd.as_raw_fd())))
}

/// `command` with argument `arg` replaced by `replacement`.
pub fn with_argument(command: &Command, arg: usize, replacement: OsString) -> Command {
    let mut command = command.clone();
    if let Command::Program { args, .. } | Command::LoginProgram { args, .. } = &mut command {
        if let Some(slot) = args.get_mut(arg) {
            *slot = replacement;
        }
    }
    command
}

/// Why the kernel said "no such file" for a file that exists: what it needed
/// to run it is missing.
#[derive(Debug, PartialEq, Eq)]
pub enum Missing {
    /// The `#!` line's interpreter.
    Interpreter(OsString),
    /// The dynamic loader (ELF interpreter) or a library the kernel needs.
    Loader,
}

/// Most bytes of a `#!` line the kernel reads (BINPRM_BUF_SIZE).
const SHEBANG_MAX: usize = 256;

/// For an exec that failed with ENOENT or EACCES: whether `program` exists
/// and it is its interpreter that is missing or not executable. Looked at
/// as the caller (after the drop), without blocking on a FIFO.
pub fn missing_interpreter(program: &Path) -> Option<Missing> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    if !std::fs::metadata(program).ok()?.is_file() {
        return None;
    }
    let mut head = Vec::with_capacity(SHEBANG_MAX);
    if let Ok(file) = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(program) {
        let _ = file.take(SHEBANG_MAX as u64).read_to_end(&mut head);
    }
    match head.strip_prefix(b"#!") {
        Some(line) => {
            let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
            let interpreter = line.split(|&b| b == b' ' || b == b'\t').find(|word| !word.is_empty())?;
            Some(Missing::Interpreter(OsStr::from_bytes(interpreter).to_os_string()))
        }
        None => Some(Missing::Loader),
    }
}

/// The error for a failed exec of `launch`, naming a missing `#!`
/// interpreter or dynamic loader the way the shell does. Runs as the caller.
pub fn exec_failed(launch: &Launch, why: io::Error) -> Error {
    let command = echo(launch.argv.first().map_or(b"".as_slice(), |a| a.as_bytes()));
    let missing = match why.raw_os_error() {
        Some(libc::ENOENT) => missing_interpreter(&launch.program),
        Some(libc::EACCES) if is_executable(&launch.program) => missing_interpreter(&launch.program),
        _ => None,
    };
    match missing {
        Some(Missing::Interpreter(interpreter)) => {
            Error::BadInterpreter { command, interpreter: echo(interpreter.as_bytes()), why }
        }
        Some(Missing::Loader) if why.kind() == io::ErrorKind::NotFound => Error::RequiredFileNotFound { command },
        _ => Error::Exec { command, why },
    }
}

/// Replaces the process; returns only the error when it could not.
pub fn exec(launch: &Launch, env: &[CString]) -> io::Error {
    let program = match c_string(launch.program.as_os_str()) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let argv: Result<Vec<CString>, _> = launch.argv.iter().map(|a| c_string(a)).collect();
    match argv {
        Ok(argv) => match execve(&program, &argv, env) {
            Err(errno) => io::Error::from(errno),
            Ok(never) => match never {},
        },
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(paths: &'static [&'static str]) -> impl Fn(&Path) -> bool {
        move |p: &Path| paths.iter().any(|x| Path::new(x) == p)
    }

    #[test]
    fn shell_preference_passwd_then_configured_then_sh() {
        let passwd = Path::new("/usr/bin/zsh");
        let configured = Path::new("/bin/bash");
        assert_eq!(choose_shell(&[passwd, configured], only(&["/usr/bin/zsh", "/bin/bash"])), passwd);
        assert_eq!(choose_shell(&[passwd, configured], only(&["/bin/bash"])), configured);
        assert_eq!(choose_shell(&[passwd, configured], only(&[])), Path::new("/bin/sh"));
    }

    #[test]
    fn path_search() {
        let exe = only(&["/usr/bin/ls", "/bin/true"]);
        assert_eq!(find_program(OsStr::new("ls"), None, &exe).expect("found"), PathBuf::from("/usr/bin/ls"));
        assert_eq!(
            find_program(OsStr::new("true"), Some(OsStr::new("/nope:/bin")), &exe).expect("found"),
            PathBuf::from("/bin/true")
        );
        assert_eq!(find_program(OsStr::new("nosuch"), None, &exe).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(find_program(OsStr::new("./x"), None, &exe).expect("as is"), PathBuf::from("./x"));
        assert_eq!(find_program(OsStr::new(""), None, &exe).unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn names_the_missing_interpreter() {
        let dir = std::env::temp_dir().join(format!("imageswitch-interp-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let write = |name: &str, text: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write");
            path
        };
        let interp = |s: &str| Some(Missing::Interpreter(s.into()));
        assert_eq!(missing_interpreter(&write("a", b"#!/no/sh -e\necho\n")), interp("/no/sh"));
        assert_eq!(missing_interpreter(&write("b", b"#! \t/no/perl\n")), interp("/no/perl"));
        assert_eq!(missing_interpreter(&write("c", b"#!\n")), None);
        assert_eq!(missing_interpreter(&write("d", b"\x7fELF...")), Some(Missing::Loader));
        assert_eq!(missing_interpreter(&dir.join("absent")), None);
        assert_eq!(missing_interpreter(&dir), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn launches() {
        let exe = only(&["/usr/bin/env"]);
        let shell = Path::new("/bin/bash");
        assert_eq!(
            launch_for(&Command::LoginShell, shell, None, &exe).expect("ok"),
            Launch { program: shell.into(), argv: vec!["-bash".into()] }
        );
        assert_eq!(
            launch_for(&Command::Shell(vec!["-c".into(), "id".into()]), shell, None, &exe).expect("ok"),
            Launch { program: shell.into(), argv: vec!["/bin/bash".into(), "-c".into(), "id".into()] }
        );
        assert_eq!(
            launch_for(&Command::Program { program: "env".into(), args: vec!["A=1".into()] }, shell, None, &exe)
                .expect("ok"),
            Launch { program: "/usr/bin/env".into(), argv: vec!["env".into(), "A=1".into()] }
        );
    }
}
