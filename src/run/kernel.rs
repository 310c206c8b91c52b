//! [`Kernel`]: everything the sequence in [`super::run`] asks of the system,
//! one method per step, so that a recording fake pins the whole order in
//! `run.rs`'s unit tests, and [`super::real::Real`] does it for real.
#![forbid(unsafe_code)]

use std::ffi::{CString, OsString};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::access::Caller;
use crate::config::{Access, Config, Defaults, Personality, Sysroot};
use crate::error::{Error, Stream};
use crate::exec::{Launch, Script};
use crate::mounts::{MountSpec, SharedSource};
use crate::personal::Personal;
use crate::syslog::Severity;
use crate::workdir::{DirId, Whereabouts};

/// The steps of [`super::run`] and [`super::enter`], in the order they are
/// called: first on the host, reading only (as root, or as the caller where
/// the caller's own view counts), then the privileged changes.
pub trait Kernel {
    /// Self-checks: the initial user namespace, setuid root, no no_new_privs.
    fn check_self(&mut self) -> Result<(), Error>;
    /// The caller, from passwd by real uid (never from the environment).
    fn resolve_caller(&mut self) -> Result<Caller, Error>;
    /// The configuration, opened component by component as root-owned.
    fn load_config(&mut self) -> Result<Config, Error>;
    /// The path the kernel executed (`AT_EXECFN`).
    fn exec_path(&mut self) -> Option<OsString>;
    /// Whether `access` admits `caller` (groups looked up on the host).
    fn admits(&mut self, access: &Access, caller: &Caller) -> bool;
    /// The first of `sysroot`'s binds whose source users other than root may
    /// change (see [`crate::mounts::shared_source`]).
    fn shared_source(&mut self, sysroot: &Sysroot, defaults: &Defaults) -> Option<SharedSource>;
    /// As the caller: where they are on the host (and, in the same identity
    /// switch, the sysroot's `host_files` opened for [`Kernel::join_pinned_view`]).
    fn current_directory(
        &mut self,
        caller: &Caller,
        caller_env: &[(OsString, OsString)],
        host_files: &[PathBuf],
    ) -> Result<Whereabouts, Error>;
    /// One audit record to `socket`; never blocks. Returns why the socket
    /// did not take it (and where it went instead), for the caller to be
    /// told, or `None`.
    fn audit(&mut self, socket: &Path, severity: Severity, message: &str) -> Option<String>;
    /// As the caller: opens the `#!BIN_DIR/...` script that started us.
    fn open_script(&mut self, caller: &Caller, path: &Path) -> Result<Option<OwnedFd>, Error>;
    /// What only this caller sees in the tree, resolved on the host.
    fn prepare_personal(&mut self, caller: &Caller, sysroot: &Sysroot, defaults: &Defaults) -> Personal;
    /// One line for the caller: a listing, a warning.
    fn say(&mut self, stream: Stream, line: &str);

    /// Whether everybody may reach `path` on the host (see [`crate::pin::is_public`]).
    fn everybody_may_reach(&mut self, path: &Path) -> bool;

    /// Joins the sysroot's pinned namespace (see [`crate::pin`]), built now
    /// if need be, with what [`Kernel::bind`] and [`Kernel::present_caller`]
    /// will need from the host prepared first; [`View::PerEntry`] when there
    /// is none to use, and nothing has changed.
    fn join_pinned_view(
        &mut self,
        sysroot: &Sysroot,
        shared: &[MountSpec],
        own: &[MountSpec],
        personal: &Personal,
        caller: &Caller,
    ) -> Result<View, Error>;
    /// A private mount namespace, for entering `sysroot` (later messages name
    /// it); in a pinned namespace, a private copy of it.
    fn unshare_mount_namespace(&mut self, sysroot: &Sysroot) -> Result<(), Error>;
    /// Makes every mount a slave, so nothing we mount propagates to the host.
    fn make_mounts_slave(&mut self) -> Result<(), Error>;
    /// Opens the tree (inside the new namespace: binds must target its
    /// mounts) and checks that it is root-owned all the way; in a pinned
    /// namespace, its root, which is the tree.
    fn open_tree(&mut self, sysroot: &Sysroot) -> Result<(), Error>;
    /// Binds the tree over itself nodev and nosuid.
    fn seal_tree(&mut self) -> Result<(), Error>;
    fn bind(&mut self, spec: &MountSpec, caller: &Caller) -> Result<(), Error>;
    /// The caller-specific part of the view, after the shared one
    /// (`shared`, already made): see [`crate::personal`].
    fn present_caller(&mut self, personal: &Personal, shared: &[MountSpec], caller: &Caller) -> Result<(), Error>;
    fn chroot_into_tree(&mut self) -> Result<(), Error>;
    fn set_personality(&mut self, personality: Personality) -> Result<(), Error>;
    fn drop_privileges(&mut self, caller: &Caller) -> Result<(), Error>;
    fn verify_dropped(&mut self, caller: &Caller) -> Result<(), Error>;
    /// What stands for an opened directory (the real kernel's: a descriptor).
    type Directory;
    /// As the caller: opens `dir` inside the tree one component at a time,
    /// following links by hand (see [`crate::trusted::walk`]), noting whose
    /// each component is. Errors say which component failed.
    fn open_directory(&mut self, dir: &Path, caller: &Caller) -> Result<Opened<Self::Directory>, (PathBuf, Errno)>;
    /// As the caller: `fchdir` into a directory [`Kernel::open_directory`] opened.
    fn change_directory(&mut self, dir: &Self::Directory) -> Result<(), Errno>;
    fn is_executable(&self, path: &Path) -> bool;
    /// As the caller: how the interpreter reaches the `#!` script that
    /// started us, when the tree cannot see its path (see [`crate::exec::Script`]).
    fn script_from_descriptor(&mut self, script: &Script) -> Option<OsString>;
    /// Replaces the process; returns only on failure.
    fn exec(&mut self, launch: &Launch, env: &[CString]) -> Error;
}

/// Where [`Kernel::join_pinned_view`] left the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Still in the caller's namespace: the view is made per entry.
    PerEntry,
    /// In the pinned namespace; `private_copy` when something only this
    /// caller sees is still to be made (in a private copy of it).
    Pinned { private_copy: bool },
}

/// A directory opened inside the tree by [`Kernel::open_directory`].
pub struct Opened<D> {
    pub handle: D,
    /// Its device and inode numbers.
    pub id: DirId,
    /// The first component on the way (directory or link, the directory
    /// itself included) owned by neither root nor the caller.
    pub foreign: Option<PathBuf>,
}
