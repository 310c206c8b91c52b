//! The caller's working directory: where they are on the host (resolved as
//! them), and why a directory cannot be where the command starts inside the
//! tree, in the words the caller reads.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::env::lookup;
use crate::error::{describe, echo};

/// A directory's device and inode numbers.
pub type DirId = (u64, u64);

/// Where the caller is on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Whereabouts {
    /// Most faithful first: `$PWD` when it names the same directory (keeps
    /// symlinked paths such as /home -> /export/home), then the physical path.
    pub paths: Vec<PathBuf>,
    /// That directory's device and inode numbers, as the caller saw them.
    pub id: Option<DirId>,
    /// The physical path as root sees it, for the audit record: a logical
    /// `$PWD` is the caller's to choose. `?` when it cannot be had.
    pub physical: Vec<u8>,
}

/// [`Whereabouts`], from the caller's `$PWD` and this process's directory.
/// All of it comes from the caller: call it as the caller, so that a `$PWD`
/// through `/root` or another user's `/proc/PID/cwd` tells them nothing.
/// The physical path is the same for root (getcwd(3) checks no permission).
pub fn resolve(caller_env: &[(OsString, OsString)]) -> Whereabouts {
    let mut out = Vec::new();
    let here = std::fs::metadata(".").ok();
    let physical = nix::unistd::getcwd().ok();
    if let (Some(pwd), Some(here)) = (lookup(caller_env, "PWD"), here.as_ref()) {
        let pwd = Path::new(pwd);
        // The physical path itself needs no second look (it is pushed below).
        if pwd.is_absolute() && physical.as_deref() != Some(pwd) {
            if let Ok(meta) = std::fs::metadata(pwd) {
                if meta.dev() == here.dev() && meta.ino() == here.ino() {
                    out.push(pwd.to_path_buf());
                }
            }
        }
    }
    if let Some(physical) = &physical {
        if !out.contains(physical) {
            out.push(physical.clone());
        }
    }
    Whereabouts {
        paths: out,
        id: here.map(|here| (here.dev(), here.ino())),
        physical: physical.map_or_else(|| b"?".to_vec(), |c| c.into_os_string().into_vec()),
    }
}

/// Why a directory cannot be where the command starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unenterable<'a> {
    /// No path to try: the caller's directory no longer exists.
    Gone,
    Missing {
        dir: &'a Path,
    },
    /// A link on the way leads to `at`, which does not exist in the tree.
    Dangling {
        dir: &'a Path,
        at: PathBuf,
    },
    Refused {
        dir: &'a Path,
        errno: Errno,
    },
    /// Another user owns `at` on the way, and `dir` is not the directory
    /// the caller is in: someone else may have chosen it for them.
    Foreign {
        dir: &'a Path,
        at: PathBuf,
    },
}

impl<'a> Unenterable<'a> {
    /// Why opening `dir` stopped at `at` with `errno`.
    pub fn from_walk(dir: &'a Path, at: PathBuf, errno: Errno) -> Self {
        match errno {
            Errno::ENOENT if dir.starts_with(&at) => Unenterable::Missing { dir },
            Errno::ENOENT => Unenterable::Dangling { dir, at },
            errno => Unenterable::Refused { dir, errno },
        }
    }

    /// In the caller's words, naming the sysroot; an errno as every message
    /// words one ([`describe`]).
    pub fn describe(&self, sysroot: &str) -> String {
        match self {
            Unenterable::Gone => "the current directory is gone".to_string(),
            Unenterable::Missing { dir } => format!("{} does not exist in {sysroot}", shown(dir)),
            Unenterable::Dangling { dir, at } => {
                format!("{} leads to {}, which does not exist in {sysroot}", shown(dir), shown(at))
            }
            Unenterable::Refused { dir, errno } => {
                format!("cannot enter {} in {sysroot} ({})", shown(dir), describe(&(*errno).into()))
            }
            Unenterable::Foreign { dir, at } => format!(
                "{} in {sysroot} is not the directory you are in, and another user owns {} there",
                shown(dir),
                shown(at)
            ),
        }
    }
}

/// The warning when the command starts elsewhere than asked: in `landed`
/// (the caller's home, else `/`), or nowhere known.
pub fn fallback_warning(problem: &str, landed: Option<&Path>) -> String {
    let landed = landed.map_or_else(|| "an unknown directory".to_string(), shown);
    format!("imageswitch: warning: {problem}; starting in {landed}")
}

fn shown(dir: &Path) -> String {
    echo(dir.as_os_str().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn why_a_directory_cannot_be_entered_names_what_was_tried() {
        let dir = Path::new("/home/alice/lnk");
        let said = |at: &str, errno| Unenterable::from_walk(dir, PathBuf::from(at), errno).describe("sl5");
        assert_eq!(said("/home/alice/lnk", Errno::ENOENT), "/home/alice/lnk does not exist in sl5");
        assert_eq!(said("/home", Errno::ENOENT), "/home/alice/lnk does not exist in sl5");
        assert_eq!(said("/hostonly", Errno::ENOENT), "/home/alice/lnk leads to /hostonly, which does not exist in sl5");
        assert_eq!(said("/home", Errno::EACCES), "cannot enter /home/alice/lnk in sl5 (permission denied)");
        let planted = Unenterable::Foreign { dir: Path::new("/var/tmp/job1"), at: "/var/tmp/job1".into() };
        assert_eq!(
            planted.describe("sl5"),
            "/var/tmp/job1 in sl5 is not the directory you are in, and another user owns /var/tmp/job1 there"
        );
        assert_eq!(Unenterable::Gone.describe("sl5"), "the current directory is gone");
    }

    #[test]
    fn caller_paths_in_the_wording_are_escaped() {
        let dir = PathBuf::from("/tmp/x\n\u{1b}[31m");
        let said = Unenterable::Missing { dir: &dir }.describe("sl5");
        assert_eq!(said, "/tmp/x\\n\\u{1b}[31m does not exist in sl5");
        let warning = fallback_warning(&said, Some(&dir));
        assert!(!warning.contains('\n') && warning.ends_with("; starting in /tmp/x\\n\\u{1b}[31m"), "{warning}");
        assert_eq!(fallback_warning("p", None), "imageswitch: warning: p; starting in an unknown directory");
    }

    #[test]
    fn pwd_comes_first_only_when_it_names_this_very_directory() {
        let here = nix::unistd::getcwd().expect("cwd");
        let env = |pwd: &Path| vec![(OsString::from("PWD"), pwd.as_os_str().to_owned())];
        let whereabouts = resolve(&env(Path::new("/")));
        assert_eq!(whereabouts.paths, std::slice::from_ref(&here), "a $PWD naming another directory is ignored");
        let meta = std::fs::metadata(".").expect("cwd");
        assert_eq!(whereabouts.id, Some((meta.dev(), meta.ino())));
        assert_eq!(whereabouts.physical, here.as_os_str().as_bytes(), "the physical path, for the audit record");
        assert_eq!(resolve(&env(Path::new("relative"))).paths, std::slice::from_ref(&here));
        // A logical path through a link (/home -> /export/home) is kept, first.
        let link = std::env::temp_dir().join(format!("imageswitch-pwd-link-{}", std::process::id()));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&here, &link).expect("link");
        assert_eq!(resolve(&env(&link)).paths, [link.clone(), here]);
        let _ = std::fs::remove_file(&link);
    }
}
