//! The one helper through which sysrootctl starts every program (a host tool
//! such as `debootstrap`, or a command inside a tree), and its lifetime.
//!
//! Nothing started may outlive sysrootctl, whatever it does: `apt` and `dpkg`
//! change their credentials, and the kernel then forgets their parent-death
//! signal. So the program never holds the tie itself. sysrootctl re-executes
//! itself as a hidden helper (no `fork`, so no `unsafe`) in three stages:
//!
//! 1. `__ns 1`: dies with sysrootctl (`PR_SET_PDEATHSIG`), unshares the mount
//!    and PID namespaces, makes every mount private and, for a tree, binds
//!    `/dev`, `/sys` and the host's `resolv.conf` (read-only) into it.
//! 2. `__ns 2`: PID 1 of the new PID namespace, dying with stage 1. It never
//!    changes its credentials, so its tie holds; when it dies the kernel kills
//!    every process in the namespace. For a tree it mounts a fresh `/proc`.
//!    It starts the program (or stage 3) and reaps until that ends.
//! 3. `__ns 3` (trees only): chroots, sets the personality, execs the command.
//!
//! A tool that enters the tree itself (Ansible's chroot connection) gets the
//! same tree, prepared by stages 1 and 2, and runs on the host in place of
//! stage 3 ([`around_tree`]).
//!
//! Mounts die with the namespace when its last process does.
#![forbid(unsafe_code)]

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::Signal;
use nix::sys::statvfs::FsFlags;
use nix::sys::wait::{WaitStatus, waitpid};

/// The hidden verb, dispatched before the command line is parsed.
pub const HELPER: &str = "__ns";
/// The placeholder for "no directory".
const NONE: &str = "-";
/// The mode of a host tool (trees say their personality, `linux` or `linux32`).
const HOST: &str = "host";
/// Words the helper puts before the program: `EXE __ns STAGE PARENT DIR MODE`.
const PREFIX_WORDS: usize = 6;

/// A host tool (`debootstrap`, `rm`, ...) run through the helper.
pub fn tool(program: &str) -> Command {
    helper(NONE, HOST, program)
}

/// A host tool that sees nothing mounted at or below `dir` (in its private
/// mount namespace; the host's mounts stay): a copy of a tree never crosses
/// into what `sysrootctl mount` bound there, same filesystem or not.
pub fn tool_without_mounts_below(program: &str, dir: &Path) -> Command {
    helper(&dir.to_string_lossy(), HOST, program)
}

/// `argv` inside `tree`, as root, with what a package manager needs.
pub fn in_tree(tree: &Path, linux32: bool, argv: &[&str]) -> Command {
    let mode = TreeMode { linux32, around: false, read_only: false };
    let mut cmd = helper(&tree.to_string_lossy(), &mode.to_string(), argv[0]);
    cmd.args(&argv[1..]);
    cmd
}

/// `program` on the host (in the private namespaces), with `tree` prepared
/// as for [`in_tree`] and an empty tmpfs on its `/tmp`; the personality is the
/// tree's, so what `program` starts in the tree sees it too. `read_only`: the
/// tree is seen read-only, and so are the host's `/dev` and `/sys` in it, so
/// nothing `program` does can change the tree or create files through them.
pub fn around_tree(tree: &Path, linux32: bool, read_only: bool, program: &Path) -> Command {
    let mode = TreeMode { linux32, around: true, read_only };
    helper(&tree.to_string_lossy(), &mode.to_string(), &program.to_string_lossy())
}

/// How a tree is prepared and entered: the MODE word of a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TreeMode {
    linux32: bool,
    /// The program runs on the host around the tree, not chrooted into it.
    around: bool,
    read_only: bool,
}

impl std::fmt::Display for TreeMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.linux32 { "linux32" } else { "linux" })?;
        if self.around {
            f.write_str("+around")?;
        }
        if self.read_only {
            f.write_str("+ro")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for TreeMode {
    type Err = anyhow::Error;
    fn from_str(word: &str) -> Result<TreeMode> {
        let mut parts = word.split('+');
        let linux32 = match parts.next() {
            Some("linux") => false,
            Some("linux32") => true,
            _ => bail!("bad helper mode {word}"),
        };
        let mut mode = TreeMode { linux32, around: false, read_only: false };
        for part in parts {
            match part {
                "around" => mode.around = true,
                "ro" => mode.read_only = true,
                _ => bail!("bad helper mode {word}"),
            }
        }
        Ok(mode)
    }
}

fn helper(dir: &str, mode: &str, program: &str) -> Command {
    // Our own executable, opened by the kernel: never a path from the environment.
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg(HELPER).arg("1").arg(std::process::id().to_string()).arg(dir).arg(mode).arg(program);
    cmd
}

/// The command as the user would type it (without the helper's words).
pub fn shown(cmd: &Command) -> String {
    let mut words: Vec<String> =
        std::iter::once(cmd.get_program()).chain(cmd.get_args()).map(|w| w.to_string_lossy().to_string()).collect();
    if words.get(1).map(String::as_str) == Some(HELPER) {
        words.drain(..PREFIX_WORDS.min(words.len()));
    }
    words.join(" ")
}

/// `__ns STAGE PARENT DIR MODE PROGRAM ARGS...`
pub fn helper_main(args: &[String]) -> ! {
    let code = match stage(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("sysrootctl: {err:#}");
            125
        }
    };
    std::process::exit(code)
}

fn stage(args: &[String]) -> Result<i32> {
    let [stage, parent, dir, mode, program, rest @ ..] = args else { bail!("bad helper arguments") };
    let dir = (dir != NONE).then(|| PathBuf::from(dir));
    let tree = dir.as_ref().filter(|_| mode != HOST);
    let tree_mode: Option<TreeMode> = tree.map(|_| mode.parse()).transpose()?;
    match stage.as_str() {
        "1" => {
            tie_to(parent, false)?;
            unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID)
                .with_context(|| format!("cannot isolate {program} in its own namespaces"))?;
            mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
                .context("making mounts private")?;
            match (tree.zip(tree_mode), &dir) {
                (Some((tree, mode)), _) => {
                    if mode.read_only {
                        seal_read_only(tree)?;
                    }
                    bind_host_into(tree)?;
                    if mode.read_only {
                        seal_host_binds(tree)?;
                    }
                    if mode.around {
                        let tmp = tree.join("tmp");
                        require_dir(&tmp)?;
                        mount(Some("tmpfs"), &tmp, Some("tmpfs"), MsFlags::MS_NOSUID, Some("mode=1777"))
                            .context("mounting a tmpfs on the tree's /tmp")?;
                    }
                }
                (None, Some(dir)) => hide_mounts_below(dir)?,
                (None, None) => {}
            }
            let status = Command::new("/proc/self/exe")
                .arg(HELPER)
                .arg("2")
                .arg(std::process::id().to_string())
                .args(&args[2..])
                .status()
                .context("starting PID 1 of the namespace")?;
            Ok(code_of(status))
        }
        "2" => {
            // Our parent is outside this PID namespace; the host's /proc (still
            // mounted here) names it by its outer pid.
            tie_to(parent, true)?;
            let child = match tree.zip(tree_mode) {
                Some((tree, mode)) => {
                    let proc_dir = tree.join("proc");
                    require_dir(&proc_dir)?;
                    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
                    mount(Some("proc"), &proc_dir, Some("proc"), flags, None::<&str>).context("mounting /proc")?;
                    if mode.around {
                        set_personality(mode)?;
                        Command::new(program).args(rest).spawn()
                    } else {
                        Command::new("/proc/self/exe").arg(HELPER).arg("3").args(&args[1..]).spawn()
                    }
                }
                None => Command::new(program).args(rest).spawn(),
            }
            .with_context(|| format!("cannot run {program}"))?;
            reap_until(child.id())
        }
        "3" => {
            let tree = tree.context("no tree")?;
            nix::unistd::chroot(tree.as_path()).with_context(|| format!("chroot {}", tree.display()))?;
            std::env::set_current_dir("/")?;
            set_personality(tree_mode.context("no tree")?)?;
            let err = Command::new(program).args(rest).exec();
            bail!("cannot run {program}: {err}")
        }
        _ => bail!("bad helper stage"),
    }
}

fn set_personality(mode: TreeMode) -> Result<()> {
    if mode.linux32 {
        let linux32 = imageswitch::config::Personality::Linux32.domain() as nix::libc::c_int;
        nix::sys::personality::set(nix::sys::personality::Persona::from_bits_retain(linux32))?;
    }
    Ok(())
}

/// The tree as a read-only bind onto itself (in this private mount
/// namespace), without what was mounted in it (`sysrootctl mount`'s binds of
/// host directories): what is mounted into it afterwards may still be written.
fn seal_read_only(tree: &Path) -> Result<()> {
    hide_mounts_below(tree)?;
    mount(Some(tree), tree, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .with_context(|| format!("binding {} onto itself", tree.display()))?;
    let read_only = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    mount(None::<&str>, tree, None::<&str>, read_only, None::<&str>)
        .with_context(|| format!("making {} read-only", tree.display()))
}

/// The host's `/dev` and `/sys` as the read-only view binds them: read-only
/// too, every mount below them (`/dev/shm`, `/dev/pts`, ...) included, so a
/// check run cannot create files on the host through them. Device nodes stay
/// usable (`/dev/null` takes writes on a read-only mount).
fn seal_host_binds(tree: &Path) -> Result<()> {
    let table = imageswitch::mounts::mount_table().context("reading /proc/self/mountinfo")?;
    let (dev, sys) = (tree.join("dev"), tree.join("sys"));
    for point in table.iter().map(|m| &m.point).filter(|p| p.starts_with(&dev) || p.starts_with(&sys)) {
        let kept = nix::sys::statvfs::statvfs(point).map(|s| s.flags()).unwrap_or(FsFlags::empty());
        let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        for (has, flag) in [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        ] {
            if kept.contains(has) {
                flags |= flag;
            }
        }
        mount(None::<&str>, point, None::<&str>, flags, None::<&str>)
            .with_context(|| format!("making {} read-only", point.display()))?;
    }
    Ok(())
}

/// Dies with the parent; fails if the parent already went before the tie held.
fn tie_to(parent: &str, outer_proc: bool) -> Result<()> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    let ppid = if outer_proc {
        let stat = fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
        // `PID (COMM) STATE PPID ...`: COMM may hold spaces and parentheses.
        stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)).unwrap_or("").to_string()
    } else {
        nix::unistd::getppid().as_raw().to_string()
    };
    if ppid != parent {
        bail!("sysrootctl went away");
    }
    Ok(())
}

/// PID 1's duty: reap whatever is orphaned to it until `child` ends.
fn reap_until(child: u32) -> Result<i32> {
    loop {
        match waitpid(None, None).context("waiting for the program")? {
            WaitStatus::Exited(pid, code) if pid.as_raw() as u32 == child => return Ok(code),
            WaitStatus::Signaled(pid, signal, _) if pid.as_raw() as u32 == child => return Ok(128 + signal as i32),
            _ => {}
        }
    }
}

fn code_of(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(9))
}

/// Detaches every mount at or below `dir`, deepest first, in this private
/// mount namespace.
fn hide_mounts_below(dir: &Path) -> Result<()> {
    let table = imageswitch::mounts::mount_table().context("reading /proc/self/mountinfo")?;
    for point in table.iter().rev().map(|m| &m.point).filter(|p| p.starts_with(dir)) {
        match nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(e).with_context(|| format!("hiding the mount on {}", point.display())),
        }
    }
    Ok(())
}

/// What a package manager needs from the host: its devices, `/sys`, and name
/// resolution. The host's `resolv.conf` is bound read-only, so nothing run
/// inside can change the host's file through it.
fn bind_host_into(tree: &Path) -> Result<()> {
    bind(Path::new("/dev"), &tree.join("dev"))?;
    bind(Path::new("/sys"), &tree.join("sys"))?;
    let resolv = tree.join("etc/resolv.conf");
    if Path::new("/etc/resolv.conf").is_file() && fs::symlink_metadata(&resolv).is_ok_and(|m| m.is_file()) {
        mount(Some("/etc/resolv.conf"), &resolv, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .context("binding resolv.conf")?;
        let read_only = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        mount(None::<&str>, &resolv, None::<&str>, read_only, None::<&str>)
            .context("making the resolv.conf bind read-only")?;
    }
    Ok(())
}

/// Binds `src` recursively onto `dst`, which must be a real directory in the tree
/// (never a symlink: an imported tree could point it anywhere).
fn bind(src: &Path, dst: &Path) -> Result<()> {
    require_dir(dst)?;
    mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .with_context(|| format!("binding {} onto {}", src.display(), dst.display()))
}

fn require_dir(dir: &Path) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => bail!("{} is not a directory", dir.display()),
        Err(_) => fs::create_dir(dir).with_context(|| format!("creating {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_hides_the_helper_words() {
        assert_eq!(shown(tool("rm").args(["-rf", "/x"])), "rm -rf /x");
        assert_eq!(shown(&in_tree(Path::new("/t"), true, &["apt-get", "install", "cron"])), "apt-get install cron");
        assert_eq!(shown(Command::new("getent").arg("passwd")), "getent passwd");
        let mut play = around_tree(Path::new("/t"), false, true, Path::new("/usr/bin/ansible-playbook"));
        assert_eq!(shown(play.arg("site.yml")), "/usr/bin/ansible-playbook site.yml");
    }

    #[test]
    fn tree_modes_round_trip() {
        for linux32 in [false, true] {
            for around in [false, true] {
                for read_only in [false, true] {
                    let mode = TreeMode { linux32, around, read_only };
                    assert_eq!(mode.to_string().parse::<TreeMode>().unwrap(), mode);
                }
            }
        }
        assert_eq!(TreeMode { linux32: true, around: false, read_only: false }.to_string(), "linux32");
        for bad in ["host", "linux+rw", "", "linux32+around+"] {
            assert!(bad.parse::<TreeMode>().is_err(), "{bad}");
        }
    }
}
