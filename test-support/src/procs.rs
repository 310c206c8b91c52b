//! Processes, from `/proc`: which are rooted in a directory or a tree, which
//! a test left behind, which are in a process group.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A process seen in `/proc` (it may be gone by the time a field is read).
#[derive(Debug, Clone)]
pub struct Process {
    pub pid: u32,
}

/// Fields 3 to 5 of `/proc/PID/stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub state: char,
    pub ppid: u32,
    pub pgrp: u32,
}

impl Process {
    /// Every process on the machine.
    pub fn all() -> Vec<Process> {
        fs::read_dir("/proc")
            .expect("/proc")
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .map(|pid| Process { pid })
            .collect()
    }

    fn path(&self, file: &str) -> PathBuf {
        Path::new("/proc").join(self.pid.to_string()).join(file)
    }

    pub fn comm(&self) -> String {
        fs::read_to_string(self.path("comm")).unwrap_or_default().trim().to_string()
    }

    /// Its root directory, as the kernel names it.
    pub fn root(&self) -> Option<PathBuf> {
        fs::read_link(self.path("root")).ok()
    }

    /// (device, inode) of its root directory.
    pub fn root_id(&self) -> Option<(u64, u64)> {
        fs::metadata(self.path("root")).ok().map(|m| (m.dev(), m.ino()))
    }

    pub fn stat(&self) -> Option<Stat> {
        parse_stat(&fs::read_to_string(self.path("stat")).ok()?)
    }

    /// A `Name:\tvalue` field of `/proc/PID/status`.
    pub fn status_field(&self, name: &str) -> Option<String> {
        let status = fs::read_to_string(self.path("status")).ok()?;
        status.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(|v| v.trim().to_string())
    }
}

fn parse_stat(stat: &str) -> Option<Stat> {
    // The command name (field 2) may hold spaces and parentheses: the fields
    // after it start past its last ')'.
    let mut fields = stat.rsplit_once(") ")?.1.split(' ');
    let state = fields.next()?.chars().next()?;
    Some(Stat { state, ppid: fields.next()?.parse().ok()?, pgrp: fields.next()?.parse().ok()? })
}

/// Pids of the processes whose root directory is `dir` or lies below it.
pub fn rooted_in(dir: &Path) -> Vec<u32> {
    Process::all().into_iter().filter(|p| p.root().is_some_and(|r| r.starts_with(dir))).map(|p| p.pid).collect()
}

/// The processes whose root directory is one of `trees` ((device, inode)
/// pairs: a tree bound elsewhere or reached through a link is still found).
pub fn rooted_at(trees: &[(u64, u64)]) -> Vec<Process> {
    Process::all().into_iter().filter(|p| p.root_id().is_some_and(|id| trees.contains(&id))).collect()
}

/// (device, inode) of each path that exists.
pub fn ids_of(paths: &[&Path]) -> Vec<(u64, u64)> {
    paths.iter().filter_map(|p| fs::metadata(p).ok()).map(|m| (m.dev(), m.ino())).collect()
}

/// Pids of the processes in process group `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    Process::all().into_iter().filter(|p| p.stat().is_some_and(|s| s.pgrp == pgid)).map(|p| p.pid).collect()
}

/// Makes this test process a child subreaper: whatever an entry leaves
/// behind (an orphan, a double-forked daemon) is reparented to it, so
/// [`leftovers`] sees it, and other users of the machine do not count.
pub fn become_subreaper() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER"));
}

/// Descendants of this test process (all children it started have been
/// waited for when this is called): `pid comm [state] root`, with "IN A
/// TREE" when the root is one of `trees`. Orphans that already exited
/// (zombies handed to us as subreaper) are reaped and not listed; ones still
/// dying get up to 2 s.
pub fn leftovers(trees: &[(u64, u64)]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let found = descendants(trees);
        if found.is_empty() || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn descendants(trees: &[(u64, u64)]) -> Vec<String> {
    let me = std::process::id();
    let mut found = Vec::new();
    for process in Process::all().into_iter().filter(|p| p.pid != me) {
        let Some(stat) = process.stat() else { continue };
        if stat.state == 'Z' && stat.ppid == me {
            let _ = nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(process.pid as i32),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
            continue;
        }
        let mut ancestor = Some(stat.ppid);
        let mut depth = 0;
        while let Some(p) = ancestor.filter(|p| *p != 0 && depth < 64) {
            if p == me {
                let root = process.root().map(|r| r.display().to_string()).unwrap_or_default();
                let in_tree = process.root_id().is_some_and(|id| trees.contains(&id));
                found.push(format!(
                    "{} {} [{}] {root}{}",
                    process.pid,
                    process.comm(),
                    stat.state,
                    if in_tree { " IN A TREE" } else { "" }
                ));
                break;
            }
            ancestor = Process { pid: p }.stat().map(|s| s.ppid);
            depth += 1;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_found_past_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (a) b (c) ) S 17 4242 4242 0 -1 4194560 113 0 0 0";
        assert_eq!(parse_stat(stat), Some(Stat { state: 'S', ppid: 17, pgrp: 4242 }));
        assert_eq!(parse_stat("1 (init"), None);
    }

    #[test]
    fn this_process_is_seen_with_its_parent_group_and_root() {
        let me = Process { pid: std::process::id() };
        let stat = me.stat().expect("own stat");
        assert_eq!(stat.ppid, nix::unistd::getppid().as_raw() as u32);
        assert_eq!(stat.pgrp, nix::unistd::getpgrp().as_raw() as u32);
        assert!(group_members(stat.pgrp).contains(&me.pid));
        assert_eq!(me.root(), Some(PathBuf::from("/")));
        assert!(rooted_at(&ids_of(&[Path::new("/")])).iter().any(|p| p.pid == me.pid));
        assert!(rooted_in(Path::new("/")).contains(&me.pid));
        assert!(!rooted_in(Path::new("/nonexistent-imgsw")).contains(&me.pid));
        assert_eq!(me.status_field("Pid").as_deref(), Some(me.pid.to_string().as_str()));
    }

    #[test]
    fn a_child_not_yet_waited_for_is_a_leftover_and_gone_once_it_is() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("sleep");
        let listed = descendants(&[]);
        assert!(listed.iter().any(|l| l.starts_with(&format!("{} sleep ", child.id()))), "{listed:?}");
        child.kill().expect("kill");
        child.wait().expect("wait");
        assert!(!descendants(&[]).iter().any(|l| l.starts_with(&format!("{} ", child.id()))));
    }
}
