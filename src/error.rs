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
    /// `require_cwd`: the caller's working directory cannot be entered in the tree.
    WorkingDirectory { sysroot: String, why: String },
    /// A step of the identity switch failed or did not verify.
    Privilege { step: &'static str, why: String },
    /// The command could not be started.
    Exec { command: String, why: io::Error },
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Exec { why, .. } if why.kind() == io::ErrorKind::NotFound => EXIT_NOT_FOUND,
            Error::Exec { .. } => EXIT_NOT_EXECUTABLE,
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

/// Most characters of caller-supplied text repeated in an error line.
const MAX_ECHO: usize = 64;

/// Caller-supplied text made safe for one bounded line: control bytes
/// escaped, and cut at [`MAX_ECHO`] characters.
pub fn echo(text: &str) -> String {
    let safe = crate::syslog::escape(text.as_bytes());
    match safe.char_indices().nth(MAX_ECHO) {
        Some((cut, _)) => format!("{}...", &safe[..cut]),
        None => safe,
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

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(msg) => write!(f, "{msg} (see imageswitch --help)"),
            Error::SelfCheck(msg) => f.write_str(msg),
            Error::ConfigFile { path, why } => write!(f, "{}: {why}", path.display()),
            Error::Config(err) => write!(f, "{err}"),
            Error::UnknownName(name) => {
                write!(f, "unknown sysroot name \"{}\" (see imageswitch --list)", echo(name))
            }
            Error::Caller(msg) => write!(f, "cannot resolve the calling user: {msg}"),
            Error::Tree { sysroot, path, why } => {
                write!(f, "{sysroot}: tree {}: {why}", path.display())
            }
            Error::Mount { sysroot, what, why } => {
                write!(f, "{sysroot}: {what}: {}", describe(why))
            }
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
        assert_eq!(long, format!("unknown sysroot name \"{}...\" (see imageswitch --list)", "n".repeat(64)));
    }

    #[test]
    fn exit_codes_follow_chroot() {
        assert_eq!(Error::UnknownName("x".into()).exit_code(), 125);
        let missing = Error::Exec { command: "x".into(), why: io::Error::from(io::ErrorKind::NotFound) };
        assert_eq!(missing.exit_code(), 127);
        let denied = Error::Exec { command: "x".into(), why: io::Error::from_raw_os_error(libc::EACCES) };
        assert_eq!(denied.exit_code(), 126);
    }
}
