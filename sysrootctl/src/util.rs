//! Small helpers shared by the reconcile steps: running tools, paths inside a
//! tree, atomic file and link replacement, processes rooted in a tree.
#![forbid(unsafe_code)]

use std::ffi::OsStr;
use std::fs;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// How chatty the run is: `-q` is 0, default 1, each `-v` adds one.
#[derive(Debug, Clone, Copy)]
pub struct Verbosity(pub u8);

impl Verbosity {
    pub fn quiet(self) -> bool {
        self.0 == 0
    }
    /// `-v`: tools' own output passes through.
    pub fn passthrough(self) -> bool {
        self.0 >= 2
    }
}

/// Runs a tool; its output is kept and the tail shown when it fails, or passed
/// through with `-v`.
pub fn run(cmd: &mut Command, verbosity: Verbosity) -> Result<String> {
    let shown = crate::namespace::shown(cmd);
    if verbosity.0 >= 3 {
        eprintln!("sysrootctl: + {shown}");
    }
    if verbosity.passthrough() {
        let status = cmd.status().with_context(|| format!("cannot run {shown}"))?;
        if !status.success() {
            bail!("{shown} failed ({status})");
        }
        return Ok(String::new());
    }
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("cannot run {shown}"))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n  ");
        bail!("{shown} failed ({}):\n  {tail}", out.status);
    }
    Ok(text)
}

/// One line per phase: where it starts and, when it ends, how long it took.
/// On a terminal (and unless the tool's own output passes through) the start
/// line counts the seconds while the phase runs; in a log the lines are plain.
pub struct Phase<'a> {
    name: &'a str,
    what: String,
    start: Instant,
    verbosity: Verbosity,
    ticker: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
}

impl<'a> Phase<'a> {
    pub fn start(name: &'a str, what: impl Into<String>, verbosity: Verbosity) -> Self {
        let what = what.into();
        let start = Instant::now();
        let mut ticker = None;
        if verbosity.0 == 1 && std::io::stderr().is_terminal() {
            let stop = Arc::new(AtomicBool::new(false));
            let line = format!("sysrootctl: {name}: {what} ...");
            let flag = Arc::clone(&stop);
            let handle = std::thread::spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    eprint!("\r{line} {}s", start.elapsed().as_secs());
                    std::thread::sleep(std::time::Duration::from_millis(250));
                }
                eprint!("\r\x1b[K");
            });
            ticker = Some((stop, handle));
        } else if verbosity.0 >= 1 {
            eprintln!("sysrootctl: {name}: {what} ...");
        }
        Phase { name, what, start, verbosity, ticker }
    }

    pub fn done(mut self) {
        self.stop();
        if self.verbosity.0 >= 1 {
            eprintln!("sysrootctl: {}: {} done ({:.1}s)", self.name, self.what, self.start.elapsed().as_secs_f64());
        }
    }

    fn stop(&mut self) {
        if let Some((stop, handle)) = self.ticker.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = handle.join();
        }
    }
}

impl Drop for Phase<'_> {
    /// A failed phase: clear the counting line before the error is printed.
    fn drop(&mut self) {
        self.stop();
    }
}

/// Resolves `inner` (absolute, as seen inside the tree) to a host path, following
/// symlinks the way the kernel would after `chroot(tree)`: absolute targets restart
/// at the tree, `..` stops at it. The last component is followed only if
/// `follow_last`, so a write can replace a symlink instead of writing through it.
pub fn in_tree(tree: &Path, inner: &Path, follow_last: bool) -> Result<PathBuf> {
    let mut pending: Vec<PathBuf> = inner
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(PathBuf::from(p)),
            Component::ParentDir => Some(PathBuf::from("..")),
            _ => None,
        })
        .collect();
    let mut resolved = PathBuf::new();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        if part == Path::new("..") {
            resolved.pop();
            continue;
        }
        let candidate = tree.join(&resolved).join(&part);
        let is_last = pending.is_empty();
        match fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() && (!is_last || follow_last) => {
                hops += 1;
                if hops > 40 {
                    bail!("too many symlinks resolving {} in {}", inner.display(), tree.display());
                }
                let target = fs::read_link(&candidate)?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(p) => pending.push(PathBuf::from(p)),
                        Component::ParentDir => pending.push(PathBuf::from("..")),
                        _ => {}
                    }
                }
            }
            _ => resolved.push(part),
        }
    }
    Ok(tree.join(resolved))
}

/// Writes `data` to `path` through a temporary file and a rename, with `mode`.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let tmp = sibling(path, ".sysrootctl-new");
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.write_all(data)?;
    file.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// Points `link` at `target`, replacing an existing link atomically.
pub fn symlink_atomic(target: &Path, link: &Path) -> Result<()> {
    let tmp = sibling(link, ".sysrootctl-new");
    let _ = fs::remove_file(&tmp);
    symlink(target, &tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    fs::rename(&tmp, link).with_context(|| format!("cannot replace {}", link.display()))?;
    Ok(())
}

pub fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or(OsStr::new("x")).to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// fsyncs a directory so a rename in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Processes whose root directory is `dir` or below it.
pub fn processes_rooted_in(dir: &Path) -> Vec<(u32, PathBuf)> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else { return found };
    let me = std::process::id();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        if let Ok(root) = fs::read_link(entry.path().join("root")) {
            if root.starts_with(dir) {
                found.push((pid, root));
            }
        }
    }
    found
}

/// SIGKILLs every process rooted in `dir` and waits (a little) for them to go.
pub fn kill_rooted_in(dir: &Path) -> usize {
    let mut killed = 0;
    for _ in 0..50 {
        let procs = processes_rooted_in(dir);
        if procs.is_empty() {
            break;
        }
        for (pid, _) in procs {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
            killed += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    killed
}

/// Mount points at or below `dir` in this mount namespace, read with the
/// library's mountinfo parser (escapes and all).
pub fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    imageswitch::mounts::mount_table()
        .map(|table| table.into_iter().map(|m| m.point).filter(|p| p.starts_with(dir)).collect())
        .unwrap_or_default()
}

/// Whether `dir` is on btrfs and the `btrfs` tool is there to make subvolumes.
pub fn on_btrfs(dir: &Path) -> bool {
    let btrfs = nix::sys::statfs::statfs(dir).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::BTRFS_SUPER_MAGIC);
    btrfs && std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("btrfs").is_file()))
}

/// A btrfs subvolume's root directory always has inode number 256.
pub fn is_subvolume(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    on_btrfs(path) && fs::symlink_metadata(path).is_ok_and(|m| m.is_dir() && m.ino() == 256)
}

/// Removes a generation or a half-built one, refusing if anything is mounted in it.
pub fn remove_tree(dir: &Path) -> Result<()> {
    if fs::symlink_metadata(dir).is_err() {
        return Ok(());
    }
    let mounts = mounts_below(dir);
    if let Some(m) = mounts.first() {
        bail!("not removing {}: {} is mounted", dir.display(), m.display());
    }
    let status = if is_subvolume(dir) {
        crate::namespace::tool("btrfs").args(["-q", "subvolume", "delete", "--"]).arg(dir).status()?
    } else {
        crate::namespace::tool("rm").arg("-rf").arg("--one-file-system").arg("--").arg(dir).status()?
    };
    if !status.success() {
        bail!("removing {} failed", dir.display());
    }
    Ok(())
}

/// Entry names of `/bin` inside the tree (following a merged-/usr link).
pub fn tree_bin_names(tree: &Path) -> Result<Vec<String>> {
    let bin = in_tree(tree, Path::new("/bin"), true)?;
    let mut names: Vec<String> = match fs::read_dir(&bin) {
        Ok(entries) => entries.flatten().filter_map(|e| e.file_name().into_string().ok()).collect(),
        Err(_) => Vec::new(),
    };
    names.retain(|n| imageswitch::config::is_valid_name(n));
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_tree_never_leaves_the_tree() {
        let dir = std::env::temp_dir().join(format!("sysrootctl-intree-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("usr/bin")).unwrap();
        fs::create_dir_all(dir.join("etc")).unwrap();
        symlink("usr/bin", dir.join("bin")).unwrap();
        symlink("/etc/passwd", dir.join("etc/abs")).unwrap();
        symlink("../../../../../../etc", dir.join("etc/up")).unwrap();
        assert_eq!(in_tree(&dir, Path::new("/bin/sh"), true).unwrap(), dir.join("usr/bin/sh"));
        assert_eq!(in_tree(&dir, Path::new("/etc/abs"), true).unwrap(), dir.join("etc/passwd"));
        assert_eq!(in_tree(&dir, Path::new("/etc/abs"), false).unwrap(), dir.join("etc/abs"));
        assert_eq!(in_tree(&dir, Path::new("/etc/up/shadow"), true).unwrap(), dir.join("etc/shadow"));
        assert_eq!(in_tree(&dir, Path::new("/../../x"), true).unwrap(), dir.join("x"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
