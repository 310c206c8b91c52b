//! The real [`Kernel`]: each step done for real, as root or (where the step
//! says so) as the caller.
#![forbid(unsafe_code)]

use std::ffi::{CString, OsString};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::unistd::{chroot, fchdir};

use super::kernel::{Kernel, Opened, View};
use crate::access::{Caller, host_group_gid, may_enter};
use crate::carryover;
use crate::config::{self, Access, CONFIG_PATH, Config, Defaults, Personality, Sysroot};
use crate::error::{Error, Stream, say};
use crate::exec::{Launch, Script};
use crate::mounts::{self, IfMissing, MountSpec, Outcome, SharedSource};
use crate::personal::{self, EtcFiles, Personal};
use crate::pin;
use crate::privileges::{self, CallerState};
use crate::sys;
use crate::syslog::{self, Severity};
use crate::trusted::{self, Kind, Stop};
use crate::workdir::{self, Whereabouts};

/// The real kernel, holding the tree's descriptor once it is open.
pub struct Real {
    caller_state: CallerState,
    /// The sysroot being entered, for messages.
    sysroot: String,
    tree: Option<OwnedFd>,
    tree_path: PathBuf,
    /// In the pinned namespace, whose root is the tree.
    pinned: bool,
    /// The caller's passwd and group as [`Kernel::present_caller`] shows
    /// them, when resolved on the host already.
    made: Option<EtcFiles>,
    /// The caller's own bind sources, detached on the host before joining a pin.
    detached: Vec<(PathBuf, std::io::Result<OwnedFd>)>,
    /// Which host directories everybody may reach, as looked at.
    reach: pin::Reach,
    /// The caller's /run/user/UID, looked at as the caller with their
    /// working directory (one identity switch for both).
    run_user: Option<Option<PathBuf>>,
    /// The host files (their paths; opened, and warnings) opened as the
    /// caller with the working directory, for the pin.
    host_files: Option<(Vec<PathBuf>, personal::OpenedHostFiles)>,
}

impl Real {
    /// `caller_state`: what the caller had, given back at the exec.
    pub fn new(caller_state: CallerState) -> Self {
        Real {
            caller_state,
            sysroot: String::new(),
            tree: None,
            tree_path: PathBuf::new(),
            pinned: false,
            made: None,
            detached: Vec::new(),
            reach: pin::Reach::default(),
            run_user: None,
            host_files: None,
        }
    }

    fn tree(&self) -> Result<&OwnedFd, Error> {
        self.tree
            .as_ref()
            .ok_or_else(|| Error::mount(&self.sysroot, "tree", std::io::Error::from_raw_os_error(libc::EBADF)))
    }
}

impl Kernel for Real {
    fn check_self(&mut self) -> Result<(), Error> {
        privileges::check_setuid_root()
    }

    fn resolve_caller(&mut self) -> Result<Caller, Error> {
        Caller::resolve()
    }

    fn load_config(&mut self) -> Result<Config, Error> {
        load_config()
    }

    fn exec_path(&mut self) -> Option<OsString> {
        sys::exec_filename()
    }

    fn admits(&mut self, access: &Access, caller: &Caller) -> bool {
        may_enter(access, caller, host_group_gid)
    }

    fn shared_source(&mut self, sysroot: &Sysroot, defaults: &Defaults) -> Option<SharedSource> {
        mounts::shared_source(sysroot, defaults, trusted::shared_ancestor)
    }

    fn current_directory(
        &mut self,
        caller: &Caller,
        caller_env: &[(OsString, OsString)],
        host_files: &[PathBuf],
    ) -> Result<Whereabouts, Error> {
        let (whereabouts, run_user, opened) = privileges::as_caller(caller, || {
            let opened = personal::host_files_as_caller(host_files);
            (workdir::resolve(caller_env), personal::own_run_user(caller.uid), opened)
        })?;
        self.run_user = Some(run_user);
        self.host_files = Some((host_files.to_vec(), opened));
        Ok(whereabouts)
    }

    fn audit(&mut self, socket: &Path, severity: Severity, message: &str) -> Option<String> {
        syslog::record(socket, severity, message).map(|what| {
            format!("imageswitch: warning: the log socket {} is not accepting records: {what}", socket.display())
        })
    }

    fn open_script(&mut self, caller: &Caller, path: &Path) -> Result<Option<OwnedFd>, Error> {
        privileges::as_caller(caller, || crate::exec::open_script(path))
    }

    fn prepare_personal(&mut self, caller: &Caller, sysroot: &Sysroot, defaults: &Defaults) -> Personal {
        let run_user = self.run_user.take().unwrap_or_else(|| {
            mounts::with_fs_identity(true, caller.uid, caller.gid, || personal::own_run_user(caller.uid))
        });
        personal::prepare(caller, sysroot, defaults, run_user)
    }

    fn say(&mut self, stream: Stream, line: &str) {
        say(stream, line);
    }

    fn everybody_may_reach(&mut self, path: &Path) -> bool {
        self.reach.is_public(path)
    }

    fn join_pinned_view(
        &mut self,
        sysroot: &Sysroot,
        shared: &[MountSpec],
        own: &[MountSpec],
        personal: &Personal,
        caller: &Caller,
    ) -> Result<View, Error> {
        self.sysroot = sysroot.name.clone();
        let (uid, gid) = (caller.uid, caller.gid);
        // Any problem here is left to the per-entry path, which reports it.
        let Ok(tree) = trusted::open_trusted(&sysroot.path, Kind::Directory) else { return Ok(View::PerEntry) };
        if trusted::check_tree_entries(&tree).is_err() {
            return Ok(View::PerEntry);
        }
        let Ok(made) = personal::account_files(&tree, &sysroot.name, personal) else { return Ok(View::PerEntry) };
        // Host files opened here are for the pin only: a mount is copied
        // only from the namespace it is in, so the per-entry path opens its own.
        let (host_files, warnings) = match self.host_files.take() {
            Some((paths, opened)) if paths == personal.host_files => opened,
            _ => personal::host_files(personal, uid, gid),
        };
        // Each host file is one this caller opened themselves, and the key
        // names it (device, inode, size, times): a pin holding it is joined
        // only by callers who opened that very file. Whether everybody may
        // read them decides only whether to build one: callers who see
        // different host files would otherwise replace each other's pins.
        let request = pin::Request { sysroot, tree: &tree, shared, host_files: &host_files, made: &made };
        let reach = &mut self.reach;
        let everybody = || {
            host_files.iter().all(|(path, shown)| {
                shown.host_stat().is_some_and(|st| {
                    st.st_mode & 0o044 == 0o044 && reach.is_public_file(&Path::new("/etc").join(path), st)
                })
            })
        };
        let ns = pin::find_or_build(&request, uid, gid, everybody);
        let prepared = ns.and_then(|ns| {
            let detached: Vec<_> = own.iter().map(|s| (s.target.clone(), mounts::detach_source(s, uid, gid))).collect();
            pin::detached_sources_work(&detached).then_some((ns, detached))
        });
        let Some((ns, detached)) = prepared else {
            self.made = Some(made);
            return Ok(View::PerEntry);
        };
        // A pin with passwd and group lines is checked after joining (its
        // name only finds it): on a mismatch the entry goes back to the
        // caller's namespace and takes the per-entry path.
        let home = if made.is_empty() { None } else { sys::own_namespace(sys::OwnNamespace::Mount) };
        if (!made.is_empty() && home.is_none()) || pin::join(&ns).is_err() {
            self.made = Some(made);
            return Ok(View::PerEntry);
        }
        if let Some(home) = home.filter(|_| pin::check_made(&made).is_err()) {
            pin::join(&home).map_err(|e| Error::mount(&self.sysroot, "leaving a pinned namespace", e))?;
            self.made = Some(made);
            return Ok(View::PerEntry);
        }
        self.pinned = true;
        self.detached = detached;
        personal::warn_all(&sysroot.name, &warnings);
        // The pin holds the host files and the caller's passwd and group.
        self.made = Some(EtcFiles::new());
        self.open_tree(sysroot)?;
        Ok(View::Pinned { private_copy: !own.is_empty() })
    }

    fn unshare_mount_namespace(&mut self, sysroot: &Sysroot) -> Result<(), Error> {
        self.sysroot = sysroot.name.clone();
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
            .map_err(|e| Error::mount(&self.sysroot, "private mount namespace", e.into()))
    }

    fn make_mounts_slave(&mut self) -> Result<(), Error> {
        use nix::mount::{MsFlags, mount};
        mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_SLAVE, None::<&str>)
            .map_err(|e| Error::mount(&self.sysroot, "making mounts slave", e.into()))
    }

    fn open_tree(&mut self, sysroot: &Sysroot) -> Result<(), Error> {
        if self.pinned {
            // The pin's root is the tree, checked before it was joined.
            let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
            let root = nix::fcntl::open("/", flags, Mode::empty())
                .map_err(|e| Error::mount(&self.sysroot, "opening the pinned tree", e.into()))?;
            self.tree = Some(root);
            self.tree_path = sysroot.path.clone();
            return Ok(());
        }
        let tree_error = |path: PathBuf, why: String| Error::Tree { sysroot: sysroot.name.clone(), path, why };
        let tree = trusted::open_trusted(&sysroot.path, Kind::Directory).map_err(|(c, why)| tree_error(c, why))?;
        trusted::check_tree_entries(&tree).map_err(|(entry, why)| tree_error(sysroot.path.join(entry), why))?;
        self.tree = Some(tree);
        self.tree_path = sysroot.path.clone();
        Ok(())
    }

    fn seal_tree(&mut self) -> Result<(), Error> {
        let sealed = mounts::seal_tree(self.tree()?)
            .map_err(|e| Error::mount(&self.sysroot, "binding the tree nodev over itself", e))?;
        self.tree = Some(sealed);
        Ok(())
    }

    fn bind(&mut self, spec: &MountSpec, caller: &Caller) -> Result<(), Error> {
        let detached =
            self.detached.iter().position(|(t, _)| *t == spec.target).map(|i| self.detached.swap_remove(i).1);
        let tree = self.tree()?;
        match mounts::bind_from(tree, &self.tree_path, spec, caller.uid, caller.gid, detached) {
            Ok(Outcome::Mounted) => Ok(()),
            Ok(Outcome::Missing(why)) => {
                if spec.if_missing == IfMissing::Warn {
                    // Only the caller's own home is bound with a warning.
                    let fix = if mounts::open_target(tree, &spec.target).is_err() {
                        " (no mount point for your home in the tree: users.sync and sysrootctl apply create one)"
                    } else {
                        ""
                    };
                    say(Stream::Err, &format!("imageswitch: warning: {}: {why}{fix}", self.sysroot));
                }
                Ok(())
            }
            Err(err) => Err(Error::mount(&self.sysroot, err.what, err.why)),
        }
    }

    fn present_caller(&mut self, personal: &Personal, shared: &[MountSpec], caller: &Caller) -> Result<(), Error> {
        let made = self.made.take();
        let tree = self.tree()?;
        let failed = |(what, why)| Error::mount(&self.sysroot, what, why);
        let mut etc = match made {
            Some(made) => made,
            None => personal::account_files(tree, &self.sysroot, personal).map_err(failed)?,
        };
        let carried: Vec<&Path> = shared.iter().map(|spec| spec.target.as_path()).collect();
        // The pin holds the host files; per entry they are opened here, in
        // the new namespace.
        if !self.pinned {
            let (host_files, warnings) = personal::host_files(personal, caller.uid, caller.gid);
            personal::warn_all(&self.sysroot, &warnings);
            etc.extend(host_files);
        }
        personal::present(tree, &self.sysroot, etc, personal.run_user.as_deref(), &carried).map_err(failed)
    }

    fn chroot_into_tree(&mut self) -> Result<(), Error> {
        let sysroot = &self.sysroot;
        let failed = |step| move |e: Errno| Error::Chroot { sysroot: sysroot.clone(), step, why: e.into() };
        fchdir(self.tree()?).map_err(failed("entering the tree"))?;
        chroot(".").map_err(failed("chroot"))
    }

    fn set_personality(&mut self, personality: Personality) -> Result<(), Error> {
        let failed = |why| Error::Personality { sysroot: self.sysroot.clone(), why };
        let current = sys::current_personality().map_err(failed)?;
        let persona = carryover::personality_for(personality.domain(), current as libc::c_ulong);
        sys::set_personality(persona).map(drop).map_err(failed)
    }

    fn drop_privileges(&mut self, caller: &Caller) -> Result<(), Error> {
        privileges::drop_to(caller)
    }

    fn verify_dropped(&mut self, caller: &Caller) -> Result<(), Error> {
        privileges::verify_dropped(caller)
    }

    type Directory = OwnedFd;

    fn open_directory(&mut self, dir: &Path, caller: &Caller) -> Result<Opened<OwnedFd>, (PathBuf, Errno)> {
        let uid = caller.uid.as_raw();
        let mut foreign = None;
        let handle = trusted::walk(dir, Kind::Directory, |at, st| {
            if st.st_uid != 0 && st.st_uid != uid {
                foreign.get_or_insert_with(|| at.to_path_buf());
            }
            Ok(())
        })
        .map_err(|(at, stop)| match stop {
            Stop::Errno(errno) => (at, errno),
            Stop::Refused(_) => (at, Errno::EACCES),
        })?;
        let st = nix::sys::stat::fstat(&handle).map_err(|errno| (dir.to_path_buf(), errno))?;
        Ok(Opened { handle, id: (st.st_dev, st.st_ino), foreign })
    }

    fn change_directory(&mut self, dir: &OwnedFd) -> Result<(), Errno> {
        fchdir(dir)
    }

    fn is_executable(&self, path: &Path) -> bool {
        crate::exec::is_executable(path)
    }

    fn script_from_descriptor(&mut self, script: &Script) -> Option<OsString> {
        crate::exec::script_from_descriptor(script)
    }

    fn exec(&mut self, launch: &Launch, env: &[CString]) -> Error {
        privileges::restore_caller_state(&self.caller_state);
        crate::exec::exec_failed(launch, crate::exec::exec(launch, env))
    }
}

/// Reads the configuration from its fixed path, trusting it only when it and
/// every directory above it are root-owned and not group/world-writable.
fn load_config() -> Result<Config, Error> {
    let path = Path::new(CONFIG_PATH);
    let refused = |component: PathBuf, why: String| {
        let why = if component == path { why } else { format!("{}: {why}", component.display()) };
        Error::ConfigFile { path: path.to_path_buf(), why: format!("refusing configuration: {why}") }
    };
    let fd = trusted::open_trusted(path, Kind::File).map_err(|(c, why)| refused(c, why))?;
    let file = std::fs::File::from(fd);
    let max = config::MAX_CONFIG_BYTES as usize;
    let bytes = sys::read_all(&file, 8 << 10, max)
        .map_err(|e| Error::ConfigFile { path: path.to_path_buf(), why: format!("cannot read: {e}") })?;
    if bytes.len() > max {
        return Err(Error::ConfigFile { path: path.to_path_buf(), why: "larger than 1 MiB".into() });
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::ConfigFile { path: path.to_path_buf(), why: "cannot read: not valid UTF-8".into() })?;
    config::parse(CONFIG_PATH, &text).map_err(Error::Config)
}
