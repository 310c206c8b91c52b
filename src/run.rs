//! The whole switch, top to bottom, read as the sequence: [`main`] hardens
//! the process and takes argv and the environment; [`run`] is every step
//! after that, in order, on the host; [`enter`] is the privileged half. Both
//! are written against [`Kernel`], so a recording fake pins the whole order
//! in unit tests (from the self-check to the exec), and `Real` does it;
//! the effect is tested for real as root (see `tests/`).
#![forbid(unsafe_code)]

mod kernel;
mod real;

use std::convert::Infallible;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::access::{Caller, may_see_broken};
use crate::audit;
use crate::carryover;
use crate::config::{self, CONFIG_PATH, Config, Sysroot};
use crate::dispatch::{self, Command, Info, Invocation, dispatch, informational};
use crate::env::{Identity, child_environment, lookup};
use crate::error::{Error, Stream, echo, say};
use crate::escape::escape;
use crate::exec::{Script, choose_shell, launch_for, with_argument};
use crate::mounts::{self, MountSpec};
use crate::personal::{self, Personal};
use crate::pin;
use crate::privileges;
use crate::sys;
use crate::syslog::Severity;
use crate::workdir::{DirId, Unenterable, fallback_warning};

pub use kernel::{Kernel, Opened, View};
use real::Real;

/// The setuid binary's entry point; returns the exit status.
pub fn main() -> i32 {
    let result = privileges::harden_process().and_then(|caller_state| {
        // No size limits of our own: the kernel accepted these for our
        // execve, and bounds them (a quarter of the stack limit, at most 6 MiB).
        let argv: Vec<OsString> = std::env::args_os().collect();
        let caller_env = carryover::caller_environment(&argv);
        sys::clear_environment().map_err(|e| Error::SelfCheck(format!("cannot clear the environment: {e}")))?;
        run(&mut Real::new(caller_state), &argv, &caller_env)
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            say(Stream::Err, &format!("imageswitch: {err}"));
            err.exit_code()
        }
    }
}

/// Everything after the process is hardened, in order: `--help`/`--version`
/// (no privilege used, no configuration read); self-checks; the caller; the
/// configuration; what was asked for and whether the caller may have it;
/// where they are; the audit record; what only they see; then [`enter`].
/// Returns the exit status of an answer (`--list`, `--help`); an entry
/// returns only its error.
pub fn run(kernel: &mut impl Kernel, argv: &[OsString], caller_env: &[(OsString, OsString)]) -> Result<i32, Error> {
    if argv.is_empty() {
        return Err(Error::Usage("refusing to run with an empty argument list".into()));
    }
    if let Some(info) = informational(argv) {
        kernel.say(Stream::Out, &answer(info));
        return Ok(0);
    }
    kernel.check_self()?;
    let caller = kernel.resolve_caller()?;
    let config = kernel.load_config()?;
    let exec_path = kernel.exec_path();
    let (name, command, require_cwd) = match dispatch_for(kernel, &caller, argv, exec_path.as_deref(), &config)? {
        Invocation::List => {
            list(kernel, &config, &caller);
            return Ok(0);
        }
        Invocation::Enter { sysroot, command, require_cwd } => (sysroot, command, require_cwd),
    };
    let sysroot = config.sysroot(&name).ok_or_else(|| Error::UnknownName(name.clone()))?;
    if let Some(err) = shared_bind_source(kernel, sysroot, &config) {
        return Err(Error::Config(err));
    }

    let cwd = kernel.current_directory(&caller, caller_env, &personal::host_file_paths(sysroot, &config.defaults))?;
    if let Some(socket) = &config.defaults.log_socket {
        if let Some(warning) =
            kernel.audit(socket, Severity::Info, &audit::entry(&caller, &sysroot.name, &command, &cwd.physical))
        {
            kernel.say(Stream::Err, &warning);
        }
    }

    let script = match dispatch::script_argument(argv, exec_path.as_deref(), sysroot.bin_dir.as_deref()) {
        Some(arg) => {
            let path = PathBuf::from(&argv[arg + 1]);
            kernel.open_script(&caller, &path)?.map(|fd| Script { arg, path, fd })
        }
        None => None,
    };
    let personal = kernel.prepare_personal(&caller, sysroot, &config.defaults);
    let (shared_mounts, mut own_mounts) =
        pin::split(mounts::plan(sysroot, &config.defaults, Some(&caller.home)), |p| kernel.everybody_may_reach(p));
    own_mounts.extend(personal.run_user.as_deref().map(personal::run_user_spec));
    let plan = EntryPlan {
        sysroot,
        caller: &caller,
        shared_mounts,
        own_mounts,
        personal,
        cwd: cwd.paths,
        cwd_id: cwd.id,
        require_cwd: require_cwd || sysroot.require_cwd,
        command,
        script,
        caller_env,
    };
    Err(enter(kernel, &plan))
}

/// Everything [`enter`] needs, resolved on the host beforehand.
pub struct EntryPlan<'a> {
    pub sysroot: &'a Sysroot,
    pub caller: &'a Caller,
    /// The binds every caller gets alike (in the pinned namespace, when
    /// there is one).
    pub shared_mounts: Vec<MountSpec>,
    /// The binds only this caller gets, made per entry after
    /// [`EntryPlan::personal`]: a home outside the binds, a bind not
    /// everybody may reach, their /run/user/UID (last).
    pub own_mounts: Vec<MountSpec>,
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

/// The privileged sequence: the shared view (the pinned namespace joined, or
/// made in a private one), what only the caller sees (in a private copy of
/// a pin), chroot, personality, identity drop and its verification, then —
/// as the caller — directory and exec.
pub fn enter(kernel: &mut impl Kernel, plan: &EntryPlan<'_>) -> Error {
    match enter_steps(kernel, plan) {
        Ok(never) => match never {},
        Err(err) => err,
    }
}

fn enter_steps(kernel: &mut impl Kernel, plan: &EntryPlan<'_>) -> Result<Infallible, Error> {
    let view =
        kernel.join_pinned_view(plan.sysroot, &plan.shared_mounts, &plan.own_mounts, &plan.personal, plan.caller)?;
    match view {
        View::PerEntry => {
            kernel.unshare_mount_namespace(plan.sysroot)?;
            kernel.make_mounts_slave()?;
            kernel.open_tree(plan.sysroot)?;
            kernel.seal_tree()?;
            for spec in &plan.shared_mounts {
                kernel.bind(spec, plan.caller)?;
            }
        }
        // No mount in a pin is shared (checked when it is built; a mount
        // propagated into a slave is a slave too): its private copy needs
        // no making slave.
        View::Pinned { private_copy: true } => {
            kernel.unshare_mount_namespace(plan.sysroot)?;
            kernel.open_tree(plan.sysroot)?;
        }
        View::Pinned { private_copy: false } => {}
    }
    if view != (View::Pinned { private_copy: false }) {
        kernel.present_caller(&plan.personal, &plan.shared_mounts, plan.caller)?;
        for spec in &plan.own_mounts {
            kernel.bind(spec, plan.caller)?;
        }
    }
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
    let problem = first_problem.unwrap_or(Unenterable::Gone).describe(&plan.sysroot.name);
    if plan.require_cwd {
        return Err(Error::WorkingDirectory { sysroot: plan.sysroot.name.clone(), why: problem });
    }
    let fallbacks = [plan.caller.home.as_path(), Path::new("/")];
    let landed = fallbacks.into_iter().find(|dir| try_directory(kernel, plan, dir).is_ok());
    kernel.say(Stream::Err, &fallback_warning(&problem, landed));
    Ok(landed.map(Path::to_path_buf))
}

/// As the caller: enters `dir` inside the tree, unless it is missing, out of
/// reach, or another user chose it: a directory or link on the way that is
/// neither root's nor the caller's (a world-writable directory of the tree's
/// own, such as its /var/tmp, lets anyone make /var/tmp/job1 there). The
/// very directory the caller was in on the host (a bind) is theirs wherever
/// it is reached from.
fn try_directory<'a, K: Kernel>(kernel: &mut K, plan: &EntryPlan<'_>, dir: &'a Path) -> Result<(), Unenterable<'a>> {
    let opened =
        kernel.open_directory(dir, plan.caller).map_err(|(at, errno)| Unenterable::from_walk(dir, at, errno))?;
    match opened.foreign {
        Some(at) if plan.cwd_id != Some(opened.id) => Err(Unenterable::Foreign { dir, at }),
        _ => kernel.change_directory(&opened.handle).map_err(|errno| Unenterable::Refused { dir, errno }),
    }
}

fn command_name(command: &Command, shell: &Path) -> String {
    match command {
        Command::Program { program, .. } | Command::LoginProgram { program, .. } => echo(program.as_encoded_bytes()),
        _ => echo(shell.as_os_str().as_encoded_bytes()),
    }
}

/// [`dispatch`] as the caller may see it: a sysroot they may not enter, or a
/// broken entry they may not be told about, fails exactly as if it were not
/// in the file (a refusal is still audited), so that nobody learns the names
/// in a configuration only root can read.
fn dispatch_for(
    kernel: &mut impl Kernel,
    caller: &Caller,
    argv: &[OsString],
    exec_path: Option<&OsStr>,
    config: &Config,
) -> Result<Invocation, Error> {
    let hidden = match dispatch(argv, exec_path, config) {
        Ok(Invocation::Enter { sysroot, .. })
            if config.sysroot(&sysroot).is_some_and(|s| !kernel.admits(&s.access, caller)) =>
        {
            // Whether the record was taken is not said: a refused caller
            // must be told exactly what an unknown name tells them, and any
            // user can fill the socket's queue (src/syslog.rs).
            if let Some(socket) = &config.defaults.log_socket {
                let _ = kernel.audit(socket, Severity::Warning, &audit::refusal(caller, &sysroot));
            }
            sysroot
        }
        Err(Error::Config(err)) => match config.broken.iter().find(|(_, e)| *e == err) {
            Some((name, _)) if !may_see_broken(config, name, caller, |a| kernel.admits(a, caller)) => name.clone(),
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
fn shared_bind_source(kernel: &mut impl Kernel, sysroot: &Sysroot, config: &Config) -> Option<config::ConfigError> {
    let shared = kernel.shared_source(sysroot, &config.defaults)?;
    let (line, column) = sysroot.bind_position(&config.defaults, &shared.bind).unwrap_or((0, 0));
    Some(config::ConfigError { file: CONFIG_PATH.to_string(), line, column, message: shared.to_string() })
}

/// `--list`: the sysroots the caller may enter, one a line on standard
/// output; those they may enter but cannot use, and broken ones they may be
/// told about, with why, on standard error.
fn list(kernel: &mut impl Kernel, config: &Config, caller: &Caller) {
    for sysroot in &config.sysroots {
        if !kernel.admits(&sysroot.access, caller) {
            continue;
        }
        if let Some(err) = shared_bind_source(kernel, sysroot, config) {
            not_usable(kernel, &sysroot.name, &err);
            continue;
        }
        let mut line = format!("{}\t{}", sysroot.name, sysroot.path.display());
        if !sysroot.aliases.is_empty() {
            line.push_str(&format!("\taliases: {}", sysroot.aliases.join(",")));
        }
        if let Some(dir) = &sysroot.bin_dir {
            line.push_str(&format!("\tbin_dir: {}", dir.display()));
        }
        kernel.say(Stream::Out, &line);
    }
    for (name, err) in &config.broken {
        if may_see_broken(config, name, caller, |a| kernel.admits(a, caller)) {
            not_usable(kernel, name, err);
        }
    }
}

fn not_usable(kernel: &mut impl Kernel, name: &str, err: &config::ConfigError) {
    let line = format!("imageswitch: {}: not usable: {}", escape(name.as_bytes()), escape(err.to_string().as_bytes()));
    kernel.say(Stream::Err, &line);
}

const HELP: &str = "\
usage: imageswitch NAME [COMMAND [ARGS...]]   run COMMAND (default: your login shell) inside sysroot NAME
       imageswitch --require-cwd NAME ...      the same, but fail if your directory cannot be entered inside
       imageswitch --list                      sysroots you may enter
       ALIAS [SHELL-ARGS...]                   (a link named after an alias) your shell inside the sysroot
       BIN_DIR/PROGRAM [ARGS...]               (a link in a sysroot's bin_dir) /bin/PROGRAM inside it

Configuration: ";

/// The text of `--help` or `--version`.
fn answer(info: Info) -> String {
    match info {
        Info::Version => format!("imageswitch {}", env!("CARGO_PKG_VERSION")),
        Info::Help => format!("{HELP}{CONFIG_PATH}"),
    }
}

#[cfg(test)]
mod tests {
    // The recording fake and the order tests: every step of `run` and
    // `enter`, from the self-check to the exec, as the fake saw it.
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    use nix::errno::Errno;
    use nix::unistd::Gid;

    use super::*;
    use crate::access::may_enter;
    use crate::access::tests::alice as caller;
    use crate::config::{Access, Defaults, Personality, parse};
    use crate::exec::Launch;
    use crate::mounts::SharedSource;
    use crate::workdir::Whereabouts;

    /// Records each step instead of making it.
    #[derive(Default)]
    struct Recorder {
        steps: Vec<String>,
        /// Lines said to the caller, `out: ...` or `err: ...`.
        said: Vec<String>,
        fail_at: Option<&'static str>,
        /// What the configuration file holds.
        config_text: String,
        /// The path the kernel executed (`AT_EXECFN`).
        exec_path: Option<OsString>,
        /// Host directories users other than root may change.
        shared_dirs: Vec<PathBuf>,
        /// The caller's directory on the host.
        cwd: Vec<PathBuf>,
        /// Directories in the tree; each one's id is `(1, its index)`.
        existing_dirs: Vec<PathBuf>,
        /// (directory, the component on the way another user owns)
        foreign: Vec<(PathBuf, PathBuf)>,
        /// (directory, the missing target of a link on the way)
        dangling: Vec<(PathBuf, PathBuf)>,
        executables: Vec<PathBuf>,
        /// A pinned namespace is there to join.
        pin: bool,
        /// Host paths not everybody may reach.
        private_paths: Vec<PathBuf>,
        /// Why the log socket does not take records (its queue is full, say).
        audit_refused: Option<String>,
    }

    impl Recorder {
        fn step(&mut self, name: String) -> Result<(), Error> {
            let failing = self.fail_at.is_some_and(|f| name.starts_with(f));
            self.steps.push(name);
            if failing { Err(Error::privilege("fake", "injected failure")) } else { Ok(()) }
        }
    }

    /// The host's group database, as the fake knows it: alice is in physics.
    fn host_groups(name: &str) -> Option<Gid> {
        (name == "physics").then(|| Gid::from_raw(1000))
    }

    impl Kernel for Recorder {
        fn check_self(&mut self) -> Result<(), Error> {
            self.step("self-check".into())
        }
        fn resolve_caller(&mut self) -> Result<Caller, Error> {
            self.step("caller".into()).map(|()| caller())
        }
        fn load_config(&mut self) -> Result<Config, Error> {
            self.step("config".into())?;
            parse(CONFIG_PATH, &self.config_text).map_err(Error::Config)
        }
        fn exec_path(&mut self) -> Option<OsString> {
            self.exec_path.clone()
        }
        fn admits(&mut self, access: &Access, caller: &Caller) -> bool {
            let admitted = may_enter(access, caller, host_groups);
            self.steps.push(format!("access {}", if admitted { "granted" } else { "denied" }));
            admitted
        }
        fn shared_source(&mut self, sysroot: &Sysroot, defaults: &Defaults) -> Option<SharedSource> {
            self.steps.push(format!("bind sources of {}", sysroot.name));
            mounts::shared_source(sysroot, defaults, |bind| {
                let dir = self.shared_dirs.iter().find(|dir| bind.starts_with(dir))?;
                Some((dir.clone(), "writable by group or others (mode 1777)".into()))
            })
        }
        fn current_directory(
            &mut self,
            _caller: &Caller,
            _env: &[(OsString, OsString)],
            _host_files: &[PathBuf],
        ) -> Result<Whereabouts, Error> {
            self.step("cwd".into())?;
            let physical = self.cwd.last().map(|p| p.as_os_str().as_bytes().to_vec()).unwrap_or_default();
            Ok(Whereabouts { paths: self.cwd.clone(), id: None, physical })
        }
        fn audit(&mut self, socket: &Path, severity: Severity, message: &str) -> Option<String> {
            self.steps.push(format!("audit {} {severity:?} {message}", socket.display()));
            self.audit_refused.clone()
        }
        fn open_script(&mut self, _caller: &Caller, path: &Path) -> Result<Option<std::os::fd::OwnedFd>, Error> {
            self.step(format!("open script {}", path.display()))?;
            Ok(Some(std::fs::File::open("/dev/null").expect("/dev/null").into()))
        }
        fn prepare_personal(&mut self, _caller: &Caller, sysroot: &Sysroot, defaults: &Defaults) -> Personal {
            self.steps.push("prepare personal".into());
            let host_files = sysroot.host_files(defaults).to_vec();
            Personal { host_files, ..Personal::default() }
        }
        fn say(&mut self, stream: Stream, line: &str) {
            let to = if stream == Stream::Out { "out" } else { "err" };
            self.said.push(format!("{to}: {line}"));
        }
        fn everybody_may_reach(&mut self, path: &Path) -> bool {
            !self.private_paths.iter().any(|p| p == path)
        }
        fn join_pinned_view(
            &mut self,
            _sysroot: &Sysroot,
            _shared: &[MountSpec],
            own: &[MountSpec],
            _personal: &Personal,
            _caller: &Caller,
        ) -> Result<View, Error> {
            if !self.pin {
                self.step("no pin".into())?;
                return Ok(View::PerEntry);
            }
            let detached: Vec<String> = own.iter().map(|s| s.target.display().to_string()).collect();
            self.step(format!("join pin, detached {detached:?}"))?;
            Ok(View::Pinned { private_copy: !own.is_empty() })
        }
        fn unshare_mount_namespace(&mut self, _sysroot: &Sysroot) -> Result<(), Error> {
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
        fn bind(&mut self, spec: &MountSpec, _caller: &Caller) -> Result<(), Error> {
            self.step(format!("bind {}", spec.target.display()))
        }
        fn present_caller(
            &mut self,
            personal: &Personal,
            _shared: &[MountSpec],
            _caller: &Caller,
        ) -> Result<(), Error> {
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
        fn open_directory(&mut self, dir: &Path, _caller: &Caller) -> Result<Opened<PathBuf>, (PathBuf, Errno)> {
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
        run_plan_as(sysroot, recorder, cwd, cwd_id, command, caller())
    }

    /// [`run_plan_from`] for `caller`.
    fn run_plan_as(
        sysroot: &Sysroot,
        recorder: &mut Recorder,
        cwd: &[&str],
        cwd_id: Option<DirId>,
        command: Command,
        caller: Caller,
    ) -> Error {
        let env = vec![
            (OsString::from("PATH"), OsString::from("/usr/bin:/bin")),
            (OsString::from("PWD"), OsString::from("/from/the/caller")),
        ];
        let private = recorder.private_paths.clone();
        let (shared_mounts, own_mounts) =
            pin::split(mounts::plan(sysroot, &crate::config::Defaults::default(), Some(&caller.home)), |p| {
                !private.iter().any(|x| x == p)
            });
        let plan = EntryPlan {
            sysroot,
            caller: &caller,
            shared_mounts,
            own_mounts,
            personal: Personal { host_files: vec!["/etc/hosts".into()], ..Personal::default() },
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
            match dispatch_for(&mut Recorder::default(), &alice, &argv, exec.map(OsStr::new), &config) {
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
            shared_mounts: vec![],
            own_mounts: vec![],
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
    fn a_pinned_view_replaces_the_shared_steps_and_what_only_the_caller_sees_gets_a_private_copy() {
        let s = sysroot("");
        let tail = ["chroot", "personality Linux32", "drop uid=1000", "verify", "open /w", "chdir /w"];
        let pinned = |private: &[&str]| Recorder {
            pin: true,
            existing_dirs: vec!["/w".into()],
            private_paths: private.iter().map(PathBuf::from).collect(),
            ..Default::default()
        };
        let mut rec = pinned(&[]);
        run_plan(&s, &mut rec, &["/w"], Command::LoginShell);
        assert_eq!(rec.steps[..7], [&["join pin, detached []"][..], &tail[..]].concat());

        // A home outside the binds and a bind not everybody may reach.
        let mut outside = caller();
        outside.home = "/users/alice".into();
        let mut rec = pinned(&["/data"]);
        run_plan_as(&s, &mut rec, &["/w"], None, Command::LoginShell, outside.clone());
        let head = [
            "join pin, detached [\"/data\", \"/users/alice\"]",
            "unshare",
            "open_tree /srv/sl5",
            "present 1 host files",
            "bind /data",
            "bind /users/alice",
        ];
        assert_eq!(rec.steps[..12], [&head[..], &tail[..]].concat());

        // Without a pin: the shared view first, what only the caller sees after it.
        let mut rec = Recorder { pin: false, ..pinned(&["/data"]) };
        run_plan_as(&s, &mut rec, &["/w"], None, Command::LoginShell, outside);
        assert_eq!(rec.steps[..5], ["no pin", "unshare", "slave", "open_tree /srv/sl5", "seal"]);
        let after_seal: Vec<&str> = rec.steps[5..].iter().take_while(|s| *s != "chroot").map(String::as_str).collect();
        assert_eq!(
            after_seal,
            [
                "bind /proc",
                "bind /sys",
                "bind /dev",
                "bind /home",
                "bind /tmp",
                "bind /var/tmp",
                "bind /dev/log",
                "present 1 host files",
                "bind /data",
                "bind /users/alice"
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
        assert_eq!(rec.said, ["err: imageswitch: warning: /hostonly does not exist in sl5; starting in /home/alice"]);
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

    const CONFIG: &str = "[sysroot.sl5]\npath = \"/srv/sl5\"\npersonality = \"linux32\"\nbin_dir = \"/bin5\"\n\
                          binds = [\"/data\"]\nhost_files = [\"/etc/hosts\"]\n";

    /// A recorder whose configuration file holds `text`, in `/work/run1`.
    fn host(text: &str) -> Recorder {
        Recorder {
            config_text: text.to_string(),
            cwd: vec!["/work/run1".into()],
            existing_dirs: vec!["/work/run1".into(), "/home/alice".into()],
            executables: vec!["/bin/bash".into(), "/bin/sh".into(), "/usr/bin/id".into()],
            ..Default::default()
        }
    }

    fn run_argv(rec: &mut Recorder, argv: &[&str]) -> Result<i32, Error> {
        let argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
        let env = vec![(OsString::from("PATH"), OsString::from("/usr/bin:/bin"))];
        run(rec, &argv, &env)
    }

    #[test]
    fn the_whole_entry_happens_in_order_from_the_self_check_to_the_exec() {
        let mut rec = host(CONFIG);
        let err = run_argv(&mut rec, &["imageswitch", "sl5", "id", "-u"]).expect_err("an entry returns only its error");
        assert_eq!(err.to_string(), "dropping privileges failed at fake: exec recorded");
        assert_eq!(
            rec.steps,
            [
                "self-check",
                "caller",
                "config",
                "access granted",
                "bind sources of sl5",
                "cwd",
                "audit /dev/log Info user=alice uid=1000 sysroot=sl5 command=\"id -u\" cwd=/work/run1",
                "prepare personal",
                "no pin",
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
                "exec /usr/bin/id [\"id\", \"-u\"] env_ok=true PWD=/work/run1",
            ]
        );
        assert!(rec.said.is_empty(), "{:?}", rec.said);
    }

    #[test]
    fn a_binn_script_is_opened_as_the_caller_after_the_audit_and_read_by_descriptor_after_the_drop() {
        let mut rec = Recorder { exec_path: Some("/spool/job7".into()), ..host(CONFIG) };
        run_argv(&mut rec, &["/bin5/sh", "/spool/job7", "x"]).expect_err("entered");
        let at = |step: &str| rec.steps.iter().position(|s| s.starts_with(step)).unwrap_or_else(|| panic!("{step}"));
        assert!(at("audit") < at("open script /spool/job7"));
        assert!(at("open script /spool/job7") < at("prepare personal"));
        assert!(at("verify") < at("script /spool/job7") && at("script /spool/job7") < at("exec"));
        assert_eq!(
            rec.steps.last().map(String::as_str),
            Some("exec /bin/sh [\"/bin/sh\", \"/proc/self/fd/9\", \"x\"] env_ok=true PWD=/work/run1")
        );
    }

    #[test]
    fn help_and_version_are_answered_before_any_privileged_step() {
        for (argv, answer) in [
            (&["imageswitch", "--help"][..], "out: usage: imageswitch NAME"),
            (&["/usr/bin/imageswitch"], "out: usage: imageswitch NAME"),
            (&["imageswitch", "-V"], "out: imageswitch "),
        ] {
            let mut rec = Recorder { fail_at: Some(""), ..host("this is not a configuration") };
            assert_eq!(run_argv(&mut rec, argv).map_err(|e| e.to_string()), Ok(0), "{argv:?}");
            assert!(rec.steps.is_empty(), "{argv:?}: {:?}", rec.steps);
            assert_eq!(rec.said.len(), 1);
            assert!(rec.said[0].starts_with(answer), "{argv:?}: {:?}", rec.said);
        }
        let mut rec = host(CONFIG);
        let err = run_argv(&mut rec, &[]).expect_err("empty argv");
        assert_eq!(err.to_string(), "refusing to run with an empty argument list (see imageswitch --help)");
        assert!(rec.steps.is_empty());
    }

    #[test]
    fn each_host_step_that_fails_stops_the_entry_there() {
        for step in ["self-check", "caller", "config", "cwd"] {
            let mut rec = Recorder { fail_at: Some(step), ..host(CONFIG) };
            let err = run_argv(&mut rec, &["imageswitch", "sl5"]).expect_err(step);
            assert!(err.to_string().contains("injected failure"), "{step}: {err}");
            assert_eq!(rec.steps.last().map(String::as_str), Some(step));
            assert!(!rec.steps.iter().any(|s| s.starts_with("audit") || s == "unshare"), "{step}: {:?}", rec.steps);
        }
        let mut rec = host("[sysroot.sl5]\npath = \"/a\"\n[sysroot.sl5]\n");
        let err = run_argv(&mut rec, &["imageswitch", "sl5"]).expect_err("syntax error");
        assert!(err.to_string().contains("no sysroot can be entered"), "{err}");
        assert_eq!(rec.steps, ["self-check", "caller", "config"]);
    }

    #[test]
    fn a_refused_entry_is_audited_and_fails_like_an_unknown_name_before_the_kernel_half() {
        let text = format!("{CONFIG}users = [\"bob\"]\ngroups = [\"nosuch\"]\n");
        let mut rec = host(&text);
        let err = run_argv(&mut rec, &["imageswitch", "sl5", "id"]).expect_err("refused");
        assert_eq!(err.to_string(), "unknown sysroot name \"sl5\" (see imageswitch --list)");
        assert_eq!(
            rec.steps,
            [
                "self-check",
                "caller",
                "config",
                "access denied",
                "audit /dev/log Warning refused: user=alice uid=1000 sysroot=sl5"
            ]
        );
        // Admitted through a group, the same entry goes ahead.
        let mut rec = host(&format!("{CONFIG}groups = [\"physics\"]\n"));
        run_argv(&mut rec, &["imageswitch", "sl5", "id"]).expect_err("entered");
        assert!(rec.steps.iter().any(|s| s.starts_with("exec ")), "{:?}", rec.steps);
    }

    /// Any user can fill the log socket's queue: a refused entry must not
    /// say so where an unknown name would say nothing (that would confirm a
    /// hidden sysroot's name); an entry that goes ahead does.
    #[test]
    fn an_undelivered_audit_record_is_said_only_on_entries_that_go_ahead() {
        let full = Some("audit record written to the kernel log".to_string());
        let text = format!("{CONFIG}users = [\"bob\"]\n");
        let mut refused = Recorder { audit_refused: full.clone(), ..host(&text) };
        let err = run_argv(&mut refused, &["imageswitch", "sl5", "id"]).expect_err("refused");
        let mut unknown = Recorder { audit_refused: full.clone(), ..host(&text) };
        let unknown_err = run_argv(&mut unknown, &["imageswitch", "nosuch", "id"]).expect_err("unknown");
        assert_eq!(err.to_string(), unknown_err.to_string().replace("nosuch", "sl5"));
        assert_eq!((refused.said.as_slice(), unknown.said.as_slice()), (&[][..], &[][..]));
        let mut admitted = Recorder { audit_refused: full, ..host(CONFIG) };
        run_argv(&mut admitted, &["imageswitch", "sl5", "id"]).expect_err("entered");
        assert_eq!(admitted.said, ["err: audit record written to the kernel log"]);
    }

    #[test]
    fn without_a_log_socket_there_is_no_audit_step() {
        let mut rec = host(&format!("[defaults]\nlog_socket = \"\"\n{CONFIG}"));
        run_argv(&mut rec, &["imageswitch", "sl5", "id"]).expect_err("entered");
        assert!(!rec.steps.iter().any(|s| s.starts_with("audit")), "{:?}", rec.steps);
        assert!(!rec.steps.iter().any(|s| s == "bind /dev/log"), "{:?}", rec.steps);
    }

    #[test]
    fn a_bind_source_others_may_change_refuses_the_sysroot_before_the_audit() {
        let mut rec = Recorder { shared_dirs: vec!["/data".into()], ..host(CONFIG) };
        let err = run_argv(&mut rec, &["imageswitch", "sl5"]).expect_err("refused");
        assert_eq!(
            err.to_string(),
            format!(
                "{CONFIG_PATH}:5:10: bind source /data lies under /data, writable by group or others (mode 1777): \
                 users other than root could block or replace it for everyone; move it under a directory only root \
                 can write"
            )
        );
        assert_eq!(rec.steps.last().map(String::as_str), Some("bind sources of sl5"));
        assert!(!rec.steps.iter().any(|s| s.starts_with("audit") || s == "cwd"), "{:?}", rec.steps);
    }

    #[test]
    fn list_shows_each_caller_only_what_they_may_enter_or_be_told_about() {
        let text = "[sysroot.open]\npath = \"/o\"\naliases = [\"op\"]\nbin_dir = \"/bino\"\n\
                    [sysroot.secret]\npath = \"/s\"\nusers = [\"bob\"]\n\
                    [sysroot.physics]\npath = \"/p\"\ngroups = [\"physics\"]\n\
                    [sysroot.shared]\npath = \"/sh\"\nbinds = [\"/scratch/x\"]\n\
                    [sysroot.mine]\npth = 1\nusers = [\"alice\"]\n\
                    [sysroot.bobs]\npth = 1\nusers = [\"bob\"]\n";
        let mut rec = Recorder { shared_dirs: vec!["/scratch".into()], ..host(text) };
        assert_eq!(run_argv(&mut rec, &["imageswitch", "--list"]).map_err(|e| e.to_string()), Ok(0));
        assert_eq!(
            rec.said,
            [
                "out: open\t/o\taliases: op\tbin_dir: /bino".to_string(),
                "out: physics\t/p".to_string(),
                format!(
                    "err: imageswitch: shared: not usable: {CONFIG_PATH}:13:10: bind source /scratch/x lies under \
                     /scratch, writable by group or others (mode 1777): users other than root could block or replace \
                     it for everyone; move it under a directory only root can write"
                ),
                format!(
                    "err: imageswitch: mine: not usable: {CONFIG_PATH}:15:1: unknown key \"pth\" in [sysroot.mine]"
                ),
            ]
        );
        assert!(!rec.steps.iter().any(|s| s == "cwd" || s.starts_with("audit")), "{:?}", rec.steps);
    }
}
