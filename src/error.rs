//! One error type for the setuid path. `main` prints it once as
//! `imageswitch: <what failed>: <why>` and exits with [`Error::exit_code`].
#![forbid(unsafe_code)]

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::config::ConfigError;

/// imageswitch itself failed (config, access, tree, mount, privileges).
pub const EXIT_FAILURE: i32 = 125;
/// The command was found but could not be executed.
pub const EXIT_NOT_EXECUTABLE: i32 = 126;
/// The command was not found inside the tree.
pub const EXIT_NOT_FOUND: i32 = 127;

#[derive(Debug)]
pub enum Error {
    /// Wrong command line.
    Usage(String),
    /// The binary is not installed or invoked so that it can work.
    SelfCheck(String),
    /// The configuration file could not be opened or trusted.
    ConfigFile { path: PathBuf, why: String },
    /// The configuration file (or one entry) is invalid.
    Config(ConfigError),
    /// argv[0] or NAME matches no sysroot, alias or bin_dir.
    UnknownName(String),
    /// The calling user could not be resolved from passwd.
    Caller(String),
    /// The tree is missing or not trustworthy.
    Tree { sysroot: String, path: PathBuf, why: String },
    /// Building the tree's view failed.
    Mount { sysroot: String, what: String, why: io::Error },
    /// Changing root into the tree failed (`step`: entering it, chroot).
    Chroot { sysroot: String, step: &'static str, why: io::Error },
    /// Setting the configured execution domain failed.
    Personality { sysroot: String, why: io::Error },
    /// `require_cwd`: the caller's working directory cannot be entered in the tree.
    WorkingDirectory { sysroot: String, why: String },
    /// A step of the identity switch failed or did not verify.
    Privilege { step: &'static str, why: String },
    /// The command could not be started.
    Exec { command: String, why: io::Error },
    /// The command's `#!` interpreter is missing or cannot be executed.
    BadInterpreter { command: String, interpreter: String, why: io::Error },
    /// The command exists but what the kernel needs to run it (its dynamic
    /// loader) does not.
    RequiredFileNotFound { command: String },
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Exec { why, .. } if why.kind() == io::ErrorKind::NotFound => EXIT_NOT_FOUND,
            Error::Exec { .. } | Error::BadInterpreter { .. } => EXIT_NOT_EXECUTABLE,
            Error::RequiredFileNotFound { .. } => EXIT_NOT_FOUND,
            _ => EXIT_FAILURE,
        }
    }

    pub fn mount(sysroot: &str, what: impl Into<String>, why: io::Error) -> Self {
        Error::Mount { sysroot: sysroot.to_string(), what: what.into(), why }
    }

    pub fn privilege(step: &'static str, why: impl fmt::Display) -> Self {
        Error::Privilege { step, why: why.to_string() }
    }
}

/// Most characters of caller-supplied text repeated in a message.
pub const MAX_ECHO: usize = 160;

/// Caller-supplied text (a name, a directory, a command, argv[0]) made safe
/// for one bounded line, by the one rule every message uses: escaped as
/// [`crate::escape::escape`] does, and cut at [`MAX_ECHO`] characters.
pub fn echo(text: &[u8]) -> String {
    let safe = crate::escape::escape(text);
    match safe.char_indices().nth(MAX_ECHO) {
        Some((cut, _)) => format!("{}...", &safe[..cut]),
        None => safe,
    }
}

/// Where [`say`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Out,
    Err,
}

/// Writes `text` and a newline, unbuffered, to standard output or error.
/// A message that cannot be written (a closed pipe, a full disk, a file-size
/// limit) is skipped: the exit status stays the documented one and the
/// command still runs. The SIGPIPE or SIGXFSZ such a write raises is blocked
/// while we run and would kill the command at its exec: it is taken off the
/// queue unless it was already pending.
pub fn say(stream: Stream, text: &str) {
    let mut line = Vec::with_capacity(text.len() + 1);
    line.extend_from_slice(text.as_bytes());
    line.push(b'\n');
    let pending_before = [libc::SIGPIPE, libc::SIGXFSZ].map(|signal| (signal, crate::sys::signal_pending(signal)));
    let mut rest = line.as_slice();
    while !rest.is_empty() {
        let written = match stream {
            Stream::Out => nix::unistd::write(io::stdout(), rest),
            Stream::Err => nix::unistd::write(io::stderr(), rest),
        };
        match written {
            Ok(n) if n > 0 => rest = &rest[n..],
            Err(nix::errno::Errno::EINTR) => {}
            _ => {
                for (signal, was_pending) in pending_before {
                    if !was_pending {
                        crate::sys::discard_pending_signal(signal);
                    }
                }
                return;
            }
        }
    }
}

/// `io::Error`'s text without the "(os error N)" suffix, lowercase first letter.
pub fn describe(err: &io::Error) -> String {
    let text = match err.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_string(),
        None => err.to_string(),
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

/// An NSS lookup's error (getpwuid_r(3), getgrgid_r(3)) in the caller's
/// words. Not found is not an error there; ENOENT is how glibc reports a
/// name service that could not be asked (nslcd or sssd not answering in
/// time, a database file missing), which [`describe`] would word "no such
/// file or directory".
pub fn describe_lookup(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(libc::ENOENT) => "the name service did not answer".to_string(),
        _ => describe(err),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(msg) => write!(f, "{msg} (see imageswitch --help)"),
            Error::SelfCheck(msg) => f.write_str(msg),
            Error::ConfigFile { path, why } => write!(f, "{}: {why}", path.display()),
            Error::Config(err) => write!(f, "{err}"),
            Error::UnknownName(name) => {
                write!(f, "unknown sysroot name \"{}\" (see imageswitch --list)", echo(name.as_bytes()))
            }
            Error::Caller(msg) => write!(f, "cannot resolve the calling user: {msg}"),
            Error::Tree { sysroot, path, why } => {
                write!(f, "{sysroot}: tree {}: {why}", path.display())
            }
            Error::Mount { sysroot, what, why } => {
                write!(f, "{sysroot}: {what}: {}", describe(why))
            }
            Error::Chroot { sysroot, step, why } => write!(f, "{sysroot}: {step}: {}", describe(why)),
            Error::Personality { sysroot, why } => write!(f, "{sysroot}: personality: {}", describe(why)),
            Error::WorkingDirectory { sysroot, why } => {
                write!(f, "{sysroot}: {why}; not starting anywhere else (require_cwd)")
            }
            Error::Privilege { step, why } => {
                write!(f, "dropping privileges failed at {step}: {why}")
            }
            Error::Exec { command, why } if why.kind() == io::ErrorKind::NotFound => {
                write!(f, "{command}: command not found")
            }
            Error::Exec { command, why } => write!(f, "{command}: {}", describe(why)),
            Error::BadInterpreter { command, interpreter, why } => {
                write!(f, "{command}: {interpreter}: bad interpreter: {}", describe(why))
            }
            Error::RequiredFileNotFound { command } => write!(f, "{command}: cannot execute: required file not found"),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_text_is_shown_without_control_bytes() {
        let err = Error::UnknownName("x\u{1b}]2;pwned\u{7}\ny".into());
        assert_eq!(err.to_string(), "unknown sysroot name \"x\\u{1b}]2;pwned\\u{7}\\ny\" (see imageswitch --list)");
        let long = Error::UnknownName("n".repeat(100_000)).to_string();
        assert_eq!(long, format!("unknown sysroot name \"{}...\" (see imageswitch --list)", "n".repeat(MAX_ECHO)));
    }

    #[test]
    fn exit_codes_follow_chroot() {
        assert_eq!(Error::UnknownName("x".into()).exit_code(), 125);
        let missing = Error::Exec { command: "x".into(), why: io::Error::from(io::ErrorKind::NotFound) };
        assert_eq!(missing.exit_code(), 127);
        let denied = Error::Exec { command: "x".into(), why: io::Error::from_raw_os_error(libc::EACCES) };
        assert_eq!(denied.exit_code(), 126);
    }

    #[test]
    fn entering_the_tree_and_its_execution_domain_fail_with_their_step() {
        let chroot =
            Error::Chroot { sysroot: "sl5".into(), step: "chroot", why: io::Error::from_raw_os_error(libc::EPERM) };
        assert_eq!(chroot.to_string(), "sl5: chroot: operation not permitted");
        let persona = Error::Personality { sysroot: "sl5".into(), why: io::Error::from_raw_os_error(libc::EINVAL) };
        assert_eq!(persona.to_string(), "sl5: personality: invalid argument");
        assert_eq!((chroot.exit_code(), persona.exit_code()), (EXIT_FAILURE, EXIT_FAILURE));
    }
}
