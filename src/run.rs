//! The whole switch, top to bottom. [`main`] does the unprivileged-safe
//! preparation on the host; [`enter`] is the privileged sequence itself,
//! written against [`Kernel`] so its order is unit-tested with a recording
//! fake, and its effect tested for real as root (see `tests/`).
#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::ffi::{CString, OsString};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::{chroot, fchdir};

use crate::access::{Caller, host_group_gid, may_enter, may_see_broken};
use crate::carryover;
use crate::config::{self, CONFIG_PATH, Config, Personality, Sysroot};
use crate::dispatch::{self, Command, Invocation, dispatch, informational};
use crate::env::{Identity, child_environment, lookup};
use crate::error::{EXIT_FAILURE, Error, Stream, echo, say};
use crate::escape::escape;
use crate::exec::{Launch, Script, choose_shell, launch_for, open_script, with_argument};
use crate::mounts::{self, IfMissing, MountSpec, Outcome};
use crate::personal::{self, Personal};
use crate::privileges::{self, CallerState};
use crate::sys;
use crate::syslog::{self, Delivery, Severity, field};
use crate::trusted::{self, Kind, Stop};

/// The privileged operations of [`enter`], in the order it calls them.
pub trait Kernel {
    fn unshare_mount_namespace(&mut self) -> Result<(), Error>;
    /// Makes every mount a slave, so nothing we mount propagates to the host.
    fn make_mounts_slave(&mut self) -> Result<(), Error>;
    /// Opens the tree (inside the new namespace: binds must target its
    /// mounts) and checks that it is root-owned all the way.
    fn open_tree(&mut self, sysroot: &Sysroot) -> Result<(), Error>;
    /// Binds the tree over itself nodev and nosuid.
    fn seal_tree(&mut self) -> Result<(), Error>;
    fn bind(&mut self, spec: &MountSpec) -> Result<(), Error>;
    /// The caller-specific part of the view, after the shared one
    /// (`shared`, already made): see [`crate::personal`].
    fn present_caller(&mut self, personal: &Personal, shared: &[MountSpec]) -> Result<(), Error>;
    fn chroot_into_tree(&mut self) -> Result<(), Error>;
    fn set_personality(&mut self, personality: Personality) -> Result<(), Error>;
    fn drop_privileges(&mut self, caller: &Caller) -> Result<(), Error>;
    fn verify_dropped(&mut self, caller: &Caller) -> Result<(), Error>;
    /// What stands for an opened directory (the real kernel's: a descriptor).
    type Directory;
    /// As the caller: opens `dir` inside the tree one component at a time,
    /// following links by hand (see [`trusted::walk`]), noting whose each
    /// component is. Errors say which component failed.
    fn open_directory(&mut self, dir: &Path) -> Result<Opened<Self::Directory>, (PathBuf, Errno)>;
    /// As the caller: `fchdir` into a directory [`Kernel::open_directory`] opened.
    fn change_directory(&mut self, dir: &Self::Directory) -> Result<(), Errno>;
    fn is_executable(&self, path: &Path) -> bool;
    /// As the caller: how the interpreter reaches the `#!` script that
    /// started us, when the tree cannot see its path (see [`crate::exec::Script`]).
    fn script_from_descriptor(&mut self, script: &Script) -> Option<OsString>;
    /// Replaces the process; returns only on failure.
    fn exec(&mut self, launch: &Launch, env: &[CString]) -> Error;
}

/// A directory's device and inode numbers.
pub type DirId = (u64, u64);

/// A directory opened inside the tree by [`Kernel::open_directory`].
pub struct Opened<D> {
    pub handle: D,
    /// Its device and inode numbers.
    pub id: DirId,
    /// The first component on the way (directory or link, the directory
    /// itself included) owned by neither root nor the caller.
    pub foreign: Option<PathBuf>,
}

/// Everything [`enter`] needs, resolved on the host beforehand.
pub struct EntryPlan<'a> {
    pub sysroot: &'a Sysroot,
    pub caller: &'a Caller,
    pub mounts: Vec<MountSpec>,
    /// What only this caller sees, resolved on the host.
    pub personal: Personal,
    /// Where the caller was, most faithful first (logical `$PWD`, physical).
    pub cwd: Vec<PathBuf>,
    /// That directory's device and inode numbers on the host, as the caller saw them.
    pub cwd_id: Option<DirId>,
    /// Fail rather than fall back to home when no `cwd` can be entered.
    pub require_cwd: bool,
    pub command: Command,
    /// The `#!BIN_DIR/...` script that started us, opened as the caller.
    pub script: Option<Script>,
    pub caller_env: &'a [(OsString, OsString)],
}

/// The privileged sequence: namespace, binds, chroot, personality, identity
/// drop and its verification, then — as the caller — directory and exec.
pub fn enter(kernel: &mut impl Kernel, plan: &EntryPlan<'_>) -> Error {
    match enter_steps(kernel, plan) {
        Ok(never) => match never {},
        Err(err) => err,
    }
}

fn enter_steps(kernel: &mut impl Kernel, plan: &EntryPlan<'_>) -> Result<Infallible, Error> {
    kernel.unshare_mount_namespace()?;
    kernel.make_mounts_slave()?;
    kernel.open_tree(plan.sysroot)?;
    kernel.seal_tree()?;
    for spec in &plan.mounts {
        kernel.bind(spec)?;
    }
    kernel.present_caller(&plan.personal, &plan.mounts)?;
    kernel.chroot_into_tree()?;
    kernel.set_personality(plan.sysroot.personality)?;
    kernel.drop_privileges(plan.caller)?;
    kernel.verify_dropped(plan.caller)?;

    // From here on we are the caller: every check below is theirs.
    let cwd = enter_directory(kernel, plan)?;

    let mut shells: Vec<&Path> = vec![plan.caller.shell.as_path()];
    shells.extend(plan.sysroot.shell.as_deref());
    let shell = choose_shell(&shells, |p| kernel.is_executable(p));
    let who = Identity {
        user: &plan.caller.name,
        home: &plan.caller.home,
        shell,
        sysroot: &plan.sysroot.name,
        cwd: cwd.as_deref(),
    };
    let env = child_environment(plan.caller_env, &who);
    let path_var = lookup(plan.caller_env, "PATH");
    let command = match plan.script.as_ref().map(|s| (s.arg, kernel.script_from_descriptor(s))) {
        Some((arg, Some(fd_path))) => with_argument(&plan.command, arg, fd_path),
        _ => plan.command.clone(),
    };
    let launch = launch_for(&command, shell, path_var, |p| kernel.is_executable(p))
        .map_err(|why| Error::Exec { command: command_name(&command, shell), why })?;
    Err(kernel.exec(&launch, &env))
}

/// As the caller: `chdir` to where they were, most faithful path first. When
/// none of those can be entered (see [`try_directory`]), fail (`require_cwd`),
/// or warn and start in their home, else `/`. Returns where the command
/// starts, for its `PWD`.
fn enter_directory<K: Kernel>(kernel: &mut K, plan: &EntryPlan<'_>) -> Result<Option<PathBuf>, Error> {
    let mut first_problem = None;
    for dir in &plan.cwd {
        match try_directory(kernel, plan, dir) {
            Ok(()) => return Ok(Some(dir.clone())),
            Err(problem) => {
                first_problem.get_or_insert(problem);
            }
        }
    }
    let problem = first_problem.unwrap_or_else(|| "the current directory is gone".to_string());
    if plan.require_cwd {
        return Err(Error::WorkingDirectory { sysroot: plan.sysroot.name.clone(), why: problem });
    }
    let fallbacks = [plan.caller.home.as_path(), Path::new("/")];
    let landed = fallbacks.into_iter().find(|dir| try_directory(kernel, plan, dir).is_ok());
    let landed_shown = landed.map_or_else(|| "an unknown directory".to_string(), shown);
    say(Stream::Err, &format!("imageswitch: warning: {problem}; starting in {landed_shown}"));
    Ok(landed.map(Path::to_path_buf))
}

/// As the caller: enters `dir` inside the tree, unless it is missing, out of
/// reach, or another user chose it: a directory or link on the way that is
/// neither root's nor the caller's (a world-writable directory of the tree's
/// own, such as its /var/tmp, lets anyone make /var/tmp/job1 there). The
/// very directory the caller was in on the host (a bind) is theirs wherever
/// it is reached from. Otherwise says why, naming what was tried.
fn try_directory<K: Kernel>(kernel: &mut K, plan: &EntryPlan<'_>, dir: &Path) -> Result<(), String> {
    let name = &plan.sysroot.name;
    let cannot_enter =
        |errno: Errno| format!("cannot enter {} in {name} ({})", shown(dir), errno.desc().to_lowercase());
    let opened = kernel.open_directory(dir).map_err(|(at, errno)| match errno {
        Errno::ENOENT if dir.starts_with(&at) => format!("{} does not exist in {name}", shown(dir)),
        Errno::ENOENT => format!("{} leads to {}, which does not exist in {name}", shown(dir), shown(&at)),
        errno => cannot_enter(errno),
    })?;
    match &opened.foreign {
        Some(at) if plan.cwd_id != Some(opened.id) => Err(format!(
            "{} in {name} is not the directory you are in, and another user owns {} there",
            shown(dir),
            shown(at)
        )),
        _ => kernel.change_directory(&opened.handle).map_err(cannot_enter),
    }
}

fn shown(dir: &Path) -> String {
    echo(dir.as_os_str().as_bytes())
}

fn command_name(command: &Command, shell: &Path) -> String {
    match command {
        Command::Program { program, .. } | Command::LoginProgram { program, .. } => echo(program.as_encoded_bytes()),
        _ => echo(shell.as_os_str().as_bytes()),
    }
}

/// The real kernel, holding the tree's descriptor.
struct Real {
    tree: Option<OwnedFd>,
    tree_path: PathBuf,
    sysroot: String,
    caller: Caller,
    caller_state: CallerState,
}

impl Real {
    fn tree(&self) -> Result<&OwnedFd, Error> {
        self.tree
            .as_ref()
            .ok_or_else(|| Error::mount(&self.sysroot, "tree", std::io::Error::from_raw_os_error(libc::EBADF)))
    }
}

impl Kernel for Real {
    fn unshare_mount_namespace(&mut self) -> Result<(), Error> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
            .map_err(|e| Error::mount(&self.sysroot, "private mount namespace", e.into()))
    }

    fn make_mounts_slave(&mut self) -> Result<(), Error> {
        use nix::mount::{MsFlags, mount};
        mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_SLAVE, None::<&str>)
            .map_err(|e| Error::mount(&self.sysroot, "making mounts slave", e.into()))
    }

    fn open_tree(&mut self, sysroot: &Sysroot) -> Result<(), Error> {
        let tree_error = |path: PathBuf, why: String| Error::Tree { sysroot: sysroot.name.clone(), path, why };
        let tree = trusted::open_trusted(&sysroot.path, Kind::Directory).map_err(|(c, why)| tree_error(c, why))?;
        trusted::check_tree_entries(&tree).map_err(|(entry, why)| tree_error(sysroot.path.join(entry), why))?;
        self.tree = Some(tree);
        Ok(())
    }

    fn seal_tree(&mut self) -> Result<(), Error> {
        let sealed = mounts::seal_tree(self.tree()?)
            .map_err(|e| Error::mount(&self.sysroot, "binding the tree nodev over itself", e))?;
        self.tree = Some(sealed);
        Ok(())
    }

    fn bind(&mut self, spec: &MountSpec) -> Result<(), Error> {
        let tree = self.tree()?;
        match mounts::bind(tree, &self.tree_path, spec, self.caller.uid, self.caller.gid) {
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

    fn present_caller(&mut self, personal: &Personal, shared: &[MountSpec]) -> Result<(), Error> {
        let tree = self.tree()?;
        personal::present(tree, &self.tree_path, personal, shared, self.caller.uid, self.caller.gid)
            .map_err(|(what, why)| Error::mount(&self.sysroot, what, why))
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

    fn open_directory(&mut self, dir: &Path) -> Result<Opened<OwnedFd>, (PathBuf, Errno)> {
        let uid = self.caller.uid.as_raw();
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
pub fn load_config() -> Result<Config, Error> {
    let path = Path::new(CONFIG_PATH);
    let refused = |component: PathBuf, why: String| {
        let why = if component == path { why } else { format!("{}: {why}", component.display()) };
        Error::ConfigFile { path: path.to_path_buf(), why: format!("refusing configuration: {why}") }
    };
    let fd = trusted::open_trusted(path, Kind::File).map_err(|(c, why)| refused(c, why))?;
    let mut text = String::new();
    std::fs::File::from(fd)
        .take(config::MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| Error::ConfigFile { path: path.to_path_buf(), why: format!("cannot read: {e}") })?;
    if text.len() as u64 > config::MAX_CONFIG_BYTES {
        return Err(Error::ConfigFile { path: path.to_path_buf(), why: "larger than 1 MiB".into() });
    }
    config::parse(CONFIG_PATH, &text).map_err(Error::Config)
}

/// The caller's directory: `$PWD` when it names the same directory (keeps
/// symlinked paths such as /home -> /export/home), then the physical path;
/// and its device and inode numbers. All come from the caller, so they are
/// resolved as the caller: a `$PWD` through `/root` or another user's
/// `/proc/PID/cwd` tells them nothing.
fn current_directory(
    caller: &Caller,
    caller_env: &[(OsString, OsString)],
) -> Result<(Vec<PathBuf>, Option<DirId>), Error> {
    privileges::as_caller(caller, || resolve_current_directory(caller_env))
}

fn resolve_current_directory(caller_env: &[(OsString, OsString)]) -> (Vec<PathBuf>, Option<DirId>) {
    let mut out = Vec::new();
    let here = std::fs::metadata(".").ok();
    if let (Some(pwd), Some(here)) = (lookup(caller_env, "PWD"), here.as_ref()) {
        let pwd = Path::new(pwd);
        if pwd.is_absolute() {
            if let Ok(meta) = std::fs::metadata(pwd) {
                if meta.dev() == here.dev() && meta.ino() == here.ino() {
                    out.push(pwd.to_path_buf());
                }
            }
        }
    }
    if let Ok(physical) = nix::unistd::getcwd() {
        if !out.contains(&physical) {
            out.push(physical);
        }
    }
    (out, here.map(|here| (here.dev(), here.ino())))
}

/// Sends the audit record. One the socket cannot take at once (any user can
/// fill its queue) goes to the kernel log, unless users may read that; the
/// caller is told where it went, or that their entry is not on record.
fn audit(config: &Config, severity: Severity, message: &str) {
    let Some(socket) = &config.defaults.log_socket else { return };
    if syslog::send(socket, severity, message) != Delivery::Full {
        return;
    }
    let what = if !syslog::kernel_log_is_private() {
        "audit record dropped: the kernel log is readable by every user (kernel.dmesg_restrict=0)"
    } else if syslog::to_kernel_log(Path::new(syslog::KERNEL_LOG), severity, message) {
        "audit record written to the kernel log"
    } else {
        "audit record dropped: the kernel log did not take it either"
    };
    say(
        Stream::Err,
        &format!("imageswitch: warning: the log socket {} is not accepting records: {what}", socket.display()),
    );
}

/// `user= uid= sysroot=`, each bounded (see [`syslog::field`]).
fn who_fields(caller: &Caller, sysroot: &str) -> String {
    format!(
        "{} uid={} {}",
        field("user", caller.name.as_bytes(), syslog::FIELD_USER),
        caller.uid,
        field("sysroot", sysroot.as_bytes(), syslog::FIELD_SYSROOT)
    )
}

/// The command as one record field: its words, space-separated, bounded;
/// only the first [`syslog::FIELD_COMMAND`] bytes' worth is looked at.
fn describe_command(command: &Command) -> String {
    let words: Vec<&[u8]> = match command {
        Command::LoginShell => vec![b"<login shell>"],
        Command::Shell(args) => {
            std::iter::once(b"<shell>".as_slice()).chain(args.iter().map(|a| a.as_bytes())).collect()
        }
        Command::Program { program, args } | Command::LoginProgram { program, args } => {
            std::iter::once(program).chain(args.iter()).map(|a| a.as_bytes()).collect()
        }
    };
    let mut text = Vec::new();
    for word in words {
        if text.len() > syslog::FIELD_COMMAND {
            break;
        }
        if !text.is_empty() {
            text.push(b' ');
        }
        text.extend_from_slice(word);
    }
    field("command", &text, syslog::FIELD_COMMAND)
}

/// [`dispatch`] as the caller may see it: a sysroot they may not enter, or a
/// broken entry they may not be told about, fails exactly as if it were not
/// in the file (a refusal is still audited), so that nobody learns the names
/// in a configuration only root can read.
fn dispatch_for(
    caller: &Caller,
    argv: &[OsString],
    exec_path: Option<&std::ffi::OsStr>,
    config: &Config,
) -> Result<Invocation, Error> {
    let hidden = match dispatch(argv, exec_path, config) {
        Ok(Invocation::Enter { sysroot, .. })
            if config.sysroot(&sysroot).is_some_and(|s| !may_enter(&s.access, caller, host_group_gid)) =>
        {
            audit(config, Severity::Warning, &format!("refused: {}", who_fields(caller, &sysroot)));
            sysroot
        }
        Err(Error::Config(err)) => match config.broken.iter().find(|(_, e)| *e == err) {
            Some((name, _)) if !may_see_broken(config, name, caller, host_group_gid) => name.clone(),
            _ => return Err(Error::Config(err)),
        },
        other => return other,
    };
    let mut without = config.clone();
    without.sysroots.retain(|s| s.name != hidden);
    without.broken.retain(|(name, _)| *name != hidden);
    match dispatch(argv, exec_path, &without) {
        Err(err) => Err(err),
        // A login-style bin_dir entry that is also another sysroot's alias:
        // never a different sysroot than the one asked for.
        Ok(_) => Err(Error::UnknownName(String::from_utf8_lossy(argv[0].as_encoded_bytes()).into_owned())),
    }
}

/// The configuration error of a sysroot with a bind whose source users
/// other than root could remove or replace (see [`mounts::shared_source`]),
/// at the position of that bind. Decided by root-owned directories alone.
fn shared_bind_source(sysroot: &Sysroot, config: &Config) -> Option<config::ConfigError> {
    let shared = mounts::shared_source(sysroot, &config.defaults, trusted::shared_ancestor)?;
    let (line, column) = sysroot.bind_position(&config.defaults, &shared.bind).unwrap_or((0, 0));
    Some(config::ConfigError { file: CONFIG_PATH.to_string(), line, column, message: shared.to_string() })
}

fn list(config: &Config, caller: &Caller) {
    for sysroot in &config.sysroots {
        if may_enter(&sysroot.access, caller, host_group_gid) {
            if let Some(err) = shared_bind_source(sysroot, config) {
                say(
                    Stream::Err,
                    &format!("imageswitch: {}: not usable: {}", sysroot.name, escape(err.to_string().as_bytes())),
                );
                continue;
            }
            let mut line = format!("{}\t{}", sysroot.name, sysroot.path.display());
            if !sysroot.aliases.is_empty() {
                line.push_str(&format!("\taliases: {}", sysroot.aliases.join(",")));
            }
            if let Some(dir) = &sysroot.bin_dir {
                line.push_str(&format!("\tbin_dir: {}", dir.display()));
            }
            say(Stream::Out, &line);
        }
    }
    for (name, err) in config.broken.iter().filter(|(name, _)| may_see_broken(config, name, caller, host_group_gid)) {
        say(
            Stream::Err,
            &format!("imageswitch: {}: not usable: {}", escape(name.as_bytes()), escape(err.to_string().as_bytes())),
        );
    }
}

const HELP: &str = "\
usage: imageswitch NAME [COMMAND [ARGS...]]   run COMMAND (default: your login shell) inside sysroot NAME
       imageswitch --require-cwd NAME ...      the same, but fail if your directory cannot be entered inside
       imageswitch --list                      sysroots you may enter
       ALIAS [SHELL-ARGS...]                   (a link named after an alias) your shell inside the sysroot
       BIN_DIR/PROGRAM [ARGS...]               (a link in a sysroot's bin_dir) /bin/PROGRAM inside it

Configuration: ";

fn run(argv: &[OsString], caller_env: &[(OsString, OsString)], caller_state: CallerState) -> Result<i32, Error> {
    privileges::check_setuid_root()?;
    let caller = Caller::resolve()?;
    let config = load_config()?;
    let exec_path = sys::exec_filename();
    let invocation = dispatch_for(&caller, argv, exec_path.as_deref(), &config)?;
    let (name, command, require_cwd) = match invocation.clone() {
        Invocation::Help | Invocation::Version => {
            informational_output(&invocation);
            return Ok(0);
        }
        Invocation::List => {
            list(&config, &caller);
            return Ok(0);
        }
        Invocation::Enter { sysroot, command, require_cwd } => (sysroot, command, require_cwd),
    };
    let sysroot = config.sysroot(&name).ok_or_else(|| Error::UnknownName(name.clone()))?;
    if let Some(err) = shared_bind_source(sysroot, &config) {
        return Err(Error::Config(err));
    }

    let (cwd, cwd_id) = current_directory(&caller, caller_env)?;
    // The physical directory: a logical $PWD is the caller's to choose.
    let physical = nix::unistd::getcwd().map_or_else(|_| b"?".to_vec(), |c| c.into_os_string().into_vec());
    audit(
        &config,
        Severity::Info,
        &format!(
            "{} {} {}",
            who_fields(&caller, &sysroot.name),
            describe_command(&command),
            field("cwd", &physical, syslog::FIELD_CWD)
        ),
    );

    let script = match dispatch::script_argument(argv, exec_path.as_deref(), sysroot.bin_dir.as_deref()) {
        Some(arg) => {
            let path = PathBuf::from(&argv[arg + 1]);
            privileges::as_caller(&caller, || open_script(&path))?.map(|fd| Script { arg, path, fd })
        }
        None => None,
    };
    let plan = EntryPlan {
        sysroot,
        caller: &caller,
        mounts: mounts::plan(sysroot, &config.defaults, Some(&caller.home)),
        personal: personal::prepare(&caller, sysroot, &config.defaults),
        cwd,
        cwd_id,
        require_cwd: require_cwd || sysroot.require_cwd,
        command,
        script,
        caller_env,
    };
    let mut kernel = Real {
        tree: None,
        tree_path: sysroot.path.clone(),
        sysroot: sysroot.name.clone(),
        caller: caller.clone(),
        caller_state,
    };
    Err(enter(&mut kernel, &plan))
}

/// `--help` and `--version`.
fn informational_output(invocation: &Invocation) {
    match invocation {
        Invocation::Version => say(Stream::Out, &format!("imageswitch {}", env!("CARGO_PKG_VERSION"))),
        _ => say(Stream::Out, &format!("{HELP}{CONFIG_PATH}")),
    }
}

/// The setuid binary's entry point; returns the exit status.
pub fn main() -> i32 {
    let caller_state = match privileges::harden_process() {
        Ok(state) => state,
        Err(err) => {
            say(Stream::Err, &format!("imageswitch: {err}"));
            return EXIT_FAILURE;
        }
    };
    // No size limits of our own: the kernel accepted these for our execve,
    // and bounds them (a quarter of the stack limit, at most 6 MiB).
    let argv: Vec<OsString> = std::env::args_os().collect();
    let caller_env = carryover::caller_environment();
    if let Err(e) = sys::clear_environment() {
        say(Stream::Err, &format!("imageswitch: cannot clear the environment: {e}"));
        return EXIT_FAILURE;
    }
    let result = if argv.is_empty() {
        Err(Error::Usage("refusing to run with an empty argument list".into()))
    } else if let Some(info) = informational(&argv) {
        informational_output(&info);
        Ok(0)
    } else {
        run(&argv, &caller_env, caller_state)
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            say(Stream::Err, &format!("imageswitch: {err}"));
            err.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use nix::unistd::{Gid, Uid};

    /// Records each privileged step instead of making it.
    #[derive(Default)]
    struct Recorder {
        steps: Vec<String>,
        fail_at: Option<&'static str>,
        /// Directories in the tree; each one's id is `(1, its index)`.
        existing_dirs: Vec<PathBuf>,
        /// (directory, the component on the way another user owns)
        foreign: Vec<(PathBuf, PathBuf)>,
        /// (directory, the missing target of a link on the way)
        dangling: Vec<(PathBuf, PathBuf)>,
        executables: Vec<PathBuf>,
    }

    impl Recorder {
        fn step(&mut self, name: String) -> Result<(), Error> {
            let failing = self.fail_at.is_some_and(|f| name.starts_with(f));
            self.steps.push(name);
            if failing { Err(Error::privilege("fake", "injected failure")) } else { Ok(()) }
        }
    }

    impl Kernel for Recorder {
        fn unshare_mount_namespace(&mut self) -> Result<(), Error> {
            self.step("unshare".into())
        }
        fn make_mounts_slave(&mut self) -> Result<(), Error> {
            self.step("slave".into())
        }
        fn open_tree(&mut self, sysroot: &Sysroot) -> Result<(), Error> {
            self.step(format!("open_tree {}", sysroot.path.display()))
        }
        fn seal_tree(&mut self) -> Result<(), Error> {
            self.step("seal".into())
        }
        fn bind(&mut self, spec: &MountSpec) -> Result<(), Error> {
            self.step(format!("bind {}", spec.target.display()))
        }
        fn present_caller(&mut self, personal: &Personal, _shared: &[MountSpec]) -> Result<(), Error> {
            self.step(format!("present {} host files", personal.host_files.len()))
        }
        fn chroot_into_tree(&mut self) -> Result<(), Error> {
            self.step("chroot".into())
        }
        fn set_personality(&mut self, personality: Personality) -> Result<(), Error> {
            self.step(format!("personality {personality:?}"))
        }
        fn drop_privileges(&mut self, caller: &Caller) -> Result<(), Error> {
            self.step(format!("drop uid={}", caller.uid))
        }
        fn verify_dropped(&mut self, _caller: &Caller) -> Result<(), Error> {
            self.step("verify".into())
        }
        type Directory = PathBuf;
        fn open_directory(&mut self, dir: &Path) -> Result<Opened<PathBuf>, (PathBuf, Errno)> {
            self.steps.push(format!("open {}", dir.display()));
            let listed = |list: &[(PathBuf, PathBuf)]| list.iter().find(|(d, _)| d == dir).map(|(_, at)| at.clone());
            let Some(index) = self.existing_dirs.iter().position(|d| d == dir) else {
                return Err((listed(&self.dangling).unwrap_or_else(|| dir.to_path_buf()), Errno::ENOENT));
            };
            Ok(Opened { handle: dir.to_path_buf(), id: (1, index as u64), foreign: listed(&self.foreign) })
        }
        fn change_directory(&mut self, dir: &PathBuf) -> Result<(), Errno> {
            self.steps.push(format!("chdir {}", dir.display()));
            Ok(())
        }
        fn is_executable(&self, path: &Path) -> bool {
            self.executables.iter().any(|p| p == path)
        }
        fn script_from_descriptor(&mut self, script: &Script) -> Option<OsString> {
            self.steps.push(format!("script {}", script.path.display()));
            Some("/proc/self/fd/9".into())
        }
        fn exec(&mut self, launch: &Launch, env: &[CString]) -> Error {
            let sysroot_var = env.iter().any(|e| e.as_bytes() == b"IMAGESWITCH_SYSROOT=sl5");
            let pwd = env.iter().find_map(|e| e.to_str().ok()?.strip_prefix("PWD=")).unwrap_or("-");
            self.steps.push(format!(
                "exec {} {:?} env_ok={sysroot_var} PWD={pwd}",
                launch.program.display(),
                launch.argv
            ));
            Error::privilege("fake", "exec recorded")
        }
    }

    fn sysroot(extra: &str) -> Sysroot {
        let text =
            format!("[sysroot.sl5]\npath = \"/srv/sl5\"\npersonality = \"linux32\"\nbinds = [\"/data\"]\n{extra}");
        parse("t", &text).expect("valid").sysroots.remove(0)
    }

    fn caller() -> Caller {
        Caller {
            uid: Uid::from_raw(1000),
            gid: Gid::from_raw(1000),
            name: "alice".into(),
            home: "/home/alice".into(),
            shell: "/bin/zsh".into(),
            groups: vec![Gid::from_raw(1000)],
        }
    }

    fn run_plan(sysroot: &Sysroot, recorder: &mut Recorder, cwd: &[&str], command: Command) -> Error {
        run_plan_from(sysroot, recorder, cwd, None, command)
    }

    /// [`run_plan`] from a host directory with the id `cwd_id`.
    fn run_plan_from(
        sysroot: &Sysroot,
        recorder: &mut Recorder,
        cwd: &[&str],
        cwd_id: Option<DirId>,
        command: Command,
    ) -> Error {
        let caller = caller();
        let env = vec![
            (OsString::from("PATH"), OsString::from("/usr/bin:/bin")),
            (OsString::from("PWD"), OsString::from("/from/the/caller")),
        ];
        let plan = EntryPlan {
            sysroot,
            caller: &caller,
            mounts: mounts::plan(sysroot, &crate::config::Defaults::default(), Some(&caller.home)),
            personal: Personal { host_files: vec![("/etc/hosts".into(), b"".to_vec())], ..Personal::default() },
            cwd: cwd.iter().map(PathBuf::from).collect(),
            cwd_id,
            require_cwd: sysroot.require_cwd,
            command,
            script: None,
            caller_env: &env,
        };
        enter(recorder, &plan)
    }

    #[test]
    fn a_sysroot_the_caller_may_not_enter_fails_word_for_word_like_an_unknown_one() {
        let config = parse(
            "t",
            "[defaults]\nlog_socket = \"\"\n\
             [sysroot.secret]\npath = \"/s\"\naliases = [\"sec\"]\nbin_dir = \"/bins\"\nusers = [\"bob\"]\n\
             [sysroot.brokensecret]\npth = 1\nusers = [\"bob\"]\n\
             [sysroot.brokenopen]\npth = 1\n\
             [sysroot.open]\npath = \"/o\"\n",
        )
        .expect("valid");
        let alice = caller();
        let outcome = |items: &[&str], exec: Option<&str>| {
            let argv: Vec<OsString> = items.iter().map(OsString::from).collect();
            match dispatch_for(&alice, &argv, exec.map(std::ffi::OsStr::new), &config) {
                Ok(invocation) => format!("{invocation:?}"),
                Err(err) => err.to_string(),
            }
        };
        for (hidden, unknown) in [
            (outcome(&["imageswitch", "secret"], None), outcome(&["imageswitch", "nosuch"], None)),
            (outcome(&["imageswitch", "sec"], None), outcome(&["imageswitch", "nos"], None)),
            (outcome(&["imageswitch", "brokensecret"], None), outcome(&["imageswitch", "nosuchxxxxxx"], None)),
            (outcome(&["/usr/bin/sec"], None), outcome(&["/usr/bin/nos"], None)),
            (outcome(&["/bins/sh"], None), outcome(&["/nope/sh"], None)),
            (outcome(&["-sh"], Some("/bins/sh")), outcome(&["-sh"], Some("/nope/sh"))),
        ] {
            assert!(hidden.starts_with("unknown sysroot name"), "{hidden}");
            let shape =
                |text: &str| text.split('"').enumerate().map(|(i, p)| if i == 1 { "N" } else { p }).collect::<String>();
            assert_eq!(shape(&hidden), shape(&unknown));
        }
        assert!(outcome(&["imageswitch", "brokenopen"], None).contains("unknown key \"pth\""));
        assert!(outcome(&["imageswitch", "open"], None).starts_with("Enter"));
    }

    #[test]
    fn privileged_steps_happen_in_order() {
        let s = sysroot("");
        let mut rec = Recorder {
            existing_dirs: vec!["/work/run1".into()],
            executables: vec!["/bin/bash".into(), "/usr/bin/id".into()],
            ..Default::default()
        };
        run_plan(&s, &mut rec, &["/work/run1"], Command::Program { program: "id".into(), args: vec![] });
        assert_eq!(
            rec.steps,
            [
                "unshare",
                "slave",
                "open_tree /srv/sl5",
                "seal",
                "bind /proc",
                "bind /sys",
                "bind /dev",
                "bind /home",
                "bind /tmp",
                "bind /var/tmp",
                "bind /data",
                "bind /dev/log",
                "present 1 host files",
                "chroot",
                "personality Linux32",
                "drop uid=1000",
                "verify",
                "open /work/run1",
                "chdir /work/run1",
                "exec /usr/bin/id [\"id\"] env_ok=true PWD=/work/run1",
            ]
        );
    }

    #[test]
    fn a_binn_script_is_reached_as_the_caller_after_the_drop() {
        let s = sysroot("");
        let mut rec = Recorder {
            existing_dirs: vec!["/work".into()],
            executables: vec!["/bin/bash".into(), "/bin/sh".into()],
            ..Default::default()
        };
        let caller = caller();
        let env = vec![];
        let fd = std::fs::File::open("/dev/null").expect("/dev/null").into();
        let plan = EntryPlan {
            sysroot: &s,
            caller: &caller,
            mounts: vec![],
            cwd: vec!["/work".into()],
            cwd_id: None,
            require_cwd: false,
            command: Command::Program { program: "/bin/sh".into(), args: vec!["/spool/job".into(), "x".into()] },
            script: Some(Script { arg: 0, path: "/spool/job".into(), fd }),
            caller_env: &env,
            personal: Personal::default(),
        };
        enter(&mut rec, &plan);
        let tail: Vec<&str> = rec.steps.iter().rev().take(5).rev().map(String::as_str).collect();
        assert_eq!(
            tail,
            [
                "verify",
                "open /work",
                "chdir /work",
                "script /spool/job",
                "exec /bin/sh [\"/bin/sh\", \"/proc/self/fd/9\", \"x\"] env_ok=true PWD=/work"
            ]
        );
    }

    #[test]
    fn a_failed_bind_stops_before_chroot_and_exec() {
        let s = sysroot("");
        let mut rec = Recorder { fail_at: Some("bind /tmp"), ..Default::default() };
        let err = run_plan(&s, &mut rec, &["/x"], Command::LoginShell);
        assert!(err.to_string().contains("injected failure"));
        assert_eq!(rec.steps.last().map(String::as_str), Some("bind /tmp"));
        assert!(!rec.steps.iter().any(|s| s == "chroot" || s.starts_with("drop") || s.starts_with("exec")));
    }

    #[test]
    fn a_failed_drop_never_reaches_exec() {
        let s = sysroot("");
        let mut rec = Recorder { fail_at: Some("verify"), ..Default::default() };
        run_plan(&s, &mut rec, &["/x"], Command::LoginShell);
        assert_eq!(rec.steps.last().map(String::as_str), Some("verify"));
    }

    #[test]
    fn require_cwd_fails_as_the_caller_instead_of_falling_back() {
        let s = sysroot("require_cwd = true");
        let mut rec = Recorder { existing_dirs: vec!["/home/alice".into(), "/".into()], ..Default::default() };
        let err = run_plan(&s, &mut rec, &["/hostonly", "/physical"], Command::LoginShell);
        assert_eq!(err.to_string(), "sl5: /hostonly does not exist in sl5; not starting anywhere else (require_cwd)");
        assert_eq!(err.exit_code(), 125);
        let tail: Vec<&str> = rec.steps.iter().rev().take(3).rev().map(String::as_str).collect();
        assert_eq!(tail, ["verify", "open /hostonly", "open /physical"]);
        let mut rec = Recorder::default();
        let err = run_plan(&s, &mut rec, &[], Command::LoginShell);
        assert!(err.to_string().contains("the current directory is gone"), "{err}");
    }

    #[test]
    fn pwd_names_the_directory_the_command_starts_in() {
        let s = sysroot("");
        for (cwd, existing, want) in [
            (&["/logical", "/physical"][..], &["/logical", "/physical"][..], "/logical"),
            (&["/logical", "/physical"], &["/physical"], "/physical"),
            (&["/hostonly"], &["/home/alice", "/"], "/home/alice"),
            (&["/hostonly"], &["/"], "/"),
            (&["/hostonly"], &[], "-"),
        ] {
            let mut rec = Recorder {
                existing_dirs: existing.iter().map(PathBuf::from).collect(),
                executables: vec!["/bin/zsh".into()],
                ..Default::default()
            };
            run_plan(&s, &mut rec, cwd, Command::LoginShell);
            let exec = rec.steps.last().map(String::as_str).unwrap_or_default();
            assert!(exec.ends_with(&format!(" PWD={want}")), "{cwd:?} with {existing:?}: {exec}");
        }
    }

    #[test]
    fn cwd_falls_back_to_home_then_root_and_shell_to_configured() {
        let s = sysroot("shell = \"/bin/bash\"");
        let mut rec = Recorder {
            existing_dirs: vec!["/home/alice".into()],
            executables: vec!["/bin/bash".into()],
            ..Default::default()
        };
        run_plan(&s, &mut rec, &["/hostonly"], Command::LoginShell);
        let tail: Vec<&str> = rec.steps.iter().rev().take(4).rev().map(String::as_str).collect();
        assert_eq!(
            tail,
            [
                "open /hostonly",
                "open /home/alice",
                "chdir /home/alice",
                "exec /bin/bash [\"-bash\"] env_ok=true PWD=/home/alice"
            ]
        );
    }

    #[test]
    fn a_directory_another_user_chose_is_never_the_start() {
        let (job, home) = ("/var/tmp/job1", "/home/alice");
        let foreign = |dirs: &[&str]| dirs.iter().map(|d| (PathBuf::from(d), PathBuf::from(job))).collect();
        // (case, candidates, foreign ones, host id, require_cwd, the chdirs, the outcome: PWD or error)
        type Case<'a> = (&'a str, &'a [&'a str], &'a [&'a str], Option<DirId>, bool, &'a [&'a str], &'a str);
        let cases: [Case; 6] = [
            ("planted in the tree's /var/tmp", &[job], &[job], None, false, &[home], "PWD=/home/alice"),
            ("the same directory, bound", &[job], &[job], Some((1, 0)), false, &[job], "PWD=/var/tmp/job1"),
            ("another directory of that id", &[job], &[job], Some((1, 1)), false, &[home], "PWD=/home/alice"),
            ("the physical path is fine", &[job, "/srv/job1"], &[job], None, false, &["/srv/job1"], "PWD=/srv/job1"),
            ("home planted too", &[job], &[job, home], None, false, &["/"], "PWD=/"),
            ("require_cwd", &[job], &[job], None, true, &[], "125"),
        ];
        for (case, cwd, foreign_dirs, cwd_id, require_cwd, chdirs, outcome) in cases {
            let s = sysroot(if require_cwd { "require_cwd = true" } else { "" });
            let mut rec = Recorder {
                existing_dirs: [job, home, "/", "/srv/job1"].into_iter().map(PathBuf::from).collect(),
                foreign: foreign(foreign_dirs),
                executables: vec!["/bin/zsh".into()],
                ..Default::default()
            };
            let err = run_plan_from(&s, &mut rec, cwd, cwd_id, Command::LoginShell);
            let entered: Vec<&str> = rec.steps.iter().filter_map(|s| s.strip_prefix("chdir ")).collect();
            assert_eq!(entered, chdirs, "{case}");
            let exec = rec.steps.last().map(String::as_str).unwrap_or_default();
            if require_cwd {
                assert_eq!(err.exit_code(), 125, "{case}");
                assert_eq!(
                    err.to_string(),
                    "sl5: /var/tmp/job1 in sl5 is not the directory you are in, and another user owns \
                     /var/tmp/job1 there; not starting anywhere else (require_cwd)"
                );
                assert!(!exec.starts_with("exec"), "{case}: {exec}");
            } else {
                assert!(exec.ends_with(outcome), "{case}: {exec}");
            }
        }
    }

    #[test]
    fn a_missing_link_target_is_named_not_the_link() {
        let s = sysroot("require_cwd = true");
        let mut rec = Recorder { dangling: vec![("/home/alice/lnk".into(), "/hostonly".into())], ..Default::default() };
        let err = run_plan(&s, &mut rec, &["/home/alice/lnk", "/hostonly"], Command::LoginShell);
        assert_eq!(
            err.to_string(),
            "sl5: /home/alice/lnk leads to /hostonly, which does not exist in sl5; not starting anywhere else \
             (require_cwd)"
        );
    }
}
