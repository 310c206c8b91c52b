//! Reliability under abuse (issue 5): signal and ptrace races, concurrent
//! load, a sequential soak against chroot(8), a sweep of bad input, and
//! sysrootctl under kill -9, a full disk and concurrent applies. The
//! imageswitch tests run as a real unprivileged user against the installed
//! setuid-root binary (tests/common/mod.rs). Each prints its figures as
//! `FIGURE ...` lines on stderr (shown even when the test passes);
//! doc/reliability.md lists them with the commands that reproduce them.
//!
//! Counts and the random seed can be set from the environment:
//! `IMGSW_REL_SEED`, `IMGSW_REL_SIGNAL_RUNS` (500), `IMGSW_REL_PTRACE_RUNS`
//! (500), `IMGSW_REL_LOAD` (100), `IMGSW_REL_SOAK_RUNS` (10000),
//! `IMGSW_REL_CTL_KILLS` (20).
//!
//! The tests run one at a time (they share the configuration file, which the
//! bad-input sweep swaps, and they measure rates and host state).

mod common;

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::*;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    let guard = SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    become_subreaper();
    guard
}

/// Printed straight to fd 2, past libtest's capture, so CI logs show it.
/// One write, so lines from concurrently finishing tests do not interleave.
fn figure(text: &str) {
    let _ = std::io::stderr().write_all(format!("FIGURE {text}\n").as_bytes());
}

fn count_from_env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Removed (recursively, on this filesystem only) when dropped, also when
/// the test fails half way.
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = Command::new("rm").arg("-rf").arg("--one-file-system").arg(path).status();
        }
    }
}

/// xorshift64*: reproducible from the printed seed, no extra dependency.
struct Rng(u64);

impl Rng {
    fn from_env(test: &str) -> Rng {
        let seed = std::env::var("IMGSW_REL_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
        });
        figure(&format!("{test}: seed {seed} (IMGSW_REL_SEED={seed} reproduces the delays)"));
        Rng(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Every entry of `root` (not following links) with type, mode, owner, size,
/// mtime, ctime (so even a change undone, like chmod and back, shows) and
/// link target: any change to the tree changes this text.
fn tree_listing(root: &Path) -> String {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<PathBuf> =
            fs::read_dir(dir).expect("read tree dir").map(|e| e.expect("dir entry").path()).collect();
        entries.sort();
        for path in entries {
            let meta = fs::symlink_metadata(&path).expect("lstat");
            let rel = path.strip_prefix(root).expect("under root").display().to_string();
            let mut line = format!(
                "{rel} {:o} {}:{} {} {}.{} {}.{}",
                meta.mode(),
                meta.uid(),
                meta.gid(),
                meta.size(),
                meta.mtime(),
                meta.mtime_nsec(),
                meta.ctime(),
                meta.ctime_nsec()
            );
            if meta.file_type().is_symlink() {
                line.push_str(&format!(" -> {}", fs::read_link(&path).expect("readlink").display()));
            }
            out.push(line);
            if meta.is_dir() {
                walk(&path, root, out);
            }
        }
    }
    let meta = fs::symlink_metadata(root).expect("tree root");
    let mut out = vec![format!(
        ". {:o} {}:{} {}.{} {}.{}",
        meta.mode(),
        meta.uid(),
        meta.gid(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec()
    )];
    walk(root, root, &mut out);
    out.join("\n")
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// (dev, inode) of every tree root the fixture configures.
fn tree_roots() -> Vec<(u64, u64)> {
    let f = fixture();
    let trees = Path::new(PREFIX).join("trees");
    [f.bb.clone(), f.deb11.clone(), f.trixie.clone(), trees.join("bb-homedirect"), trees.join("bb-userowned")]
        .iter()
        .filter_map(|p| fs::metadata(p).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect()
}

/// Every test process is a child subreaper: whatever an entry leaves
/// behind (an orphan, a double-forked daemon) is reparented to us, so
/// [`leftovers`] sees it, and other users of this machine's trees do not count.
fn become_subreaper() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER"));
}

fn stat_fields(pid: &str) -> Option<(char, String)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(") ")?.1;
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    Some((state, fields.next()?.to_string()))
}

fn parent_of(pid: &str) -> Option<String> {
    stat_fields(pid).map(|(_, ppid)| ppid)
}

/// Descendants of this test process (all children it started have been
/// waited for when this is called): `pid comm root`, "IN A TREE" when the
/// root is one of the trees. Orphans that already exited (zombies handed to
/// us as subreaper) are reaped and not listed; ones still dying get up to 2 s.
fn leftovers() -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let found = descendants();
        if found.is_empty() || Instant::now() > deadline {
            return found.into_iter().map(|(_, line)| line).collect();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn descendants() -> Vec<(String, String)> {
    let me = std::process::id().to_string();
    let roots = tree_roots();
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").expect("/proc").flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let Some((state, ppid)) = stat_fields(&pid) else { continue };
        if state == 'Z' && ppid == me {
            if let Ok(raw) = pid.parse() {
                let _ = nix::sys::wait::waitpid(
                    nix::unistd::Pid::from_raw(raw),
                    Some(nix::sys::wait::WaitPidFlag::WNOHANG),
                );
            }
            continue;
        }
        let mut ancestor = Some(ppid);
        let mut depth = 0;
        while let Some(p) = ancestor.filter(|p| p != "0" && depth < 64) {
            if p == me {
                let comm = fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                let root =
                    fs::read_link(entry.path().join("root")).map(|r| r.display().to_string()).unwrap_or_default();
                let in_tree =
                    fs::metadata(entry.path().join("root")).is_ok_and(|m| roots.contains(&(m.dev(), m.ino())));
                let line = format!("{pid} {} [{state}] {root}{}", comm.trim(), if in_tree { " IN A TREE" } else { "" });
                found.push((pid, line));
                break;
            }
            ancestor = parent_of(&p);
            depth += 1;
        }
    }
    found
}

/// Processes anywhere on the machine whose root is one of the trees. Not
/// failed on (others may be using the shared trees meanwhile), reported.
fn processes_in_trees() -> Vec<String> {
    let roots = tree_roots();
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").expect("/proc").flatten() {
        let name = entry.file_name();
        if !name.as_bytes().iter().all(u8::is_ascii_digit) {
            continue;
        }
        let Ok(root) = fs::metadata(entry.path().join("root")) else { continue };
        if roots.contains(&(root.dev(), root.ino())) {
            let comm = fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            found.push(format!("{} {}", name.to_string_lossy(), comm.trim()));
        }
    }
    found
}

/// Asserts nothing this test started is left, and notes others' processes.
fn assert_no_leftovers(context: &str) -> usize {
    let mine = leftovers();
    assert!(mine.is_empty(), "{context}: processes left behind: {mine:?}");
    let others = processes_in_trees();
    if !others.is_empty() {
        figure(&format!(
            "{context}: note: {} processes of others are rooted in the shared trees: {others:?}",
            others.len()
        ));
    }
    others.len()
}

fn meminfo_kib(field: &str) -> u64 {
    fs::read_to_string("/proc/meminfo")
        .expect("meminfo")
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix(" kB")?.parse().ok())
        .unwrap_or(0)
}

fn uid_of(user: &str) -> u32 {
    nix::unistd::User::from_name(user).expect("nss").expect("user exists").uid.as_raw()
}

fn diff_lines(before: &str, after: &str) -> String {
    let b: BTreeSet<&str> = before.lines().collect();
    let a: BTreeSet<&str> = after.lines().collect();
    let gone: Vec<&&str> = b.difference(&a).collect();
    let new: Vec<&&str> = a.difference(&b).collect();
    format!("gone: {gone:#?}\nnew: {new:#?}")
}

/// Whether a mountinfo line's mount point lies where imageswitch could leave
/// a mount: every mount it makes targets a path inside a tree, and the trees
/// live under these two directories.
fn in_our_paths(line: &str) -> bool {
    line.split(' ')
        .nth(4)
        .is_some_and(|point| [PREFIX, CACHE].iter().any(|dir| point == *dir || point.starts_with(&format!("{dir}/"))))
}

/// Host state that no entry, successful or not, may change.
///
/// The mount table is compared byte for byte where imageswitch could leave
/// something (mount points under the trees' directories). Other changes are
/// reported, not failed on: on a shared development machine, benchmarks and
/// package builds mount things meanwhile (in CI nothing else runs, and the
/// reports say "0 unrelated").
struct HostState {
    mounts: String,
    bb: String,
}

impl HostState {
    fn take() -> HostState {
        HostState { mounts: host_mounts(), bb: tree_listing(&fixture().bb) }
    }

    fn ours(table: &str) -> String {
        table.lines().filter(|l| in_our_paths(l)).collect::<Vec<_>>().join("\n")
    }

    /// Asserts, and returns how many unrelated mount lines changed.
    fn assert_unchanged(&self, context: &str) -> usize {
        let mounts = host_mounts();
        let (before, after) = (Self::ours(&self.mounts), Self::ours(&mounts));
        assert!(
            before == after,
            "{context}: host mount table changed under the trees\n{}",
            diff_lines(&before, &after)
        );
        let bb = tree_listing(&fixture().bb);
        assert!(bb == self.bb, "{context}: the bb tree changed\n{}", diff_lines(&self.bb, &bb));
        let b: BTreeSet<&str> = self.mounts.lines().collect();
        let a: BTreeSet<&str> = mounts.lines().collect();
        let unrelated = b.symmetric_difference(&a).count();
        if unrelated > 0 {
            let sample: Vec<&&str> = b.symmetric_difference(&a).take(3).collect();
            figure(&format!(
                "{context}: note: {unrelated} mount lines outside {PREFIX} and {CACHE} changed meanwhile \
                 (another process on this machine, not imageswitch), e.g. {sample:?}"
            ));
        }
        unrelated
    }
}

// A helper in C, built by the tests with gcc, static and non-PIE so the
// marker variable sits at the same address in every process made from it
// and the busybox tree (no libc) can run it.
//
//   helper exec PATH [ARGV0 ARGS...]     execve with exactly that argv (none: argc 0)
//   helper target                        wait for EOF on stdin, exit 0
//   helper race N BIN SYSROOT            the ptrace / /proc/PID/mem race, N entries
const HELPER_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* 0x5eed in a freshly exec'd image; the race driver sets 1 before forking, so
 * memory reading 1 is the forked child before exec, 0x5eed the user's own
 * command after imageswitch, anything else (or nothing) imageswitch itself. */
volatile long phase = 0x5eed;
#define PRE_EXEC 1L
#define COMMAND 0x5eedL

enum { OK_PRE, OK_COMMAND, OK_PRIVILEGED, E_PERM, E_ACCES, E_SRCH, E_OTHER, NCLASS };
static const char *class_name[NCLASS] = {"ok_before_exec", "ok_own_command", "ok_PRIVILEGED",
                                          "eperm", "eacces", "esrch", "other_error"};
static long attach[NCLASS], mem[NCLASS];
static long other_errno_attach, other_errno_mem, exec_traps, other_stops, hung;
static long dropped_attach_denied, dropped_mem_denied;

/* Whether the target is imageswitch after it switched to our uids (before
 * its exec): the window where only PR_SET_DUMPABLE 0 keeps us out. */
static int imageswitch_with_our_uids(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int named = 0, ours = 0;
    long me = (long)getuid();
    while (fgets(line, sizeof line, f)) {
        long r, e, s, fs;
        if (!strncmp(line, "Name:\timageswitch\n", 18)) named = 1;
        if (sscanf(line, "Uid: %ld %ld %ld %ld", &r, &e, &s, &fs) == 4) {
            ours = r == me && e == me && s == me && fs == me;
            break;
        }
    }
    fclose(f);
    return named && ours;
}

static int errno_class(int e) {
    return e == EPERM ? E_PERM : e == EACCES ? E_ACCES : e == ESRCH ? E_SRCH : E_OTHER;
}

static int any_uid_zero(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 1;
    int zero = 1;
    while (fgets(line, sizeof line, f)) {
        long r, e, s, fs;
        if (sscanf(line, "Uid: %ld %ld %ld %ld", &r, &e, &s, &fs) == 4) {
            zero = r == 0 || e == 0 || s == 0 || fs == 0;
            break;
        }
    }
    fclose(f);
    return zero;
}

static int classify(long value, int readable) {
    if (!readable) return OK_PRIVILEGED;
    if (value == PRE_EXEC) return OK_PRE;
    if (value == COMMAND) return OK_COMMAND;
    return OK_PRIVILEGED;
}

/* One PTRACE_ATTACH; on success the target is stopped, so what it is can be
 * read without racing it. Returns 1 when the child was reaped meanwhile. */
static int try_attach(pid_t pid, int *status) {
    if (ptrace(PTRACE_ATTACH, pid, 0, 0) != 0) {
        int c = errno_class(errno);
        if (c == E_OTHER) other_errno_attach = errno;
        attach[c]++;
        return 0;
    }
    /* The stop for our SIGSTOP; any other stop first is recorded and the
     * tracee resumed without its signal (a SIGTRAP here means an execve
     * completed while we were attached). */
    int st;
    for (;;) {
        if (waitpid(pid, &st, __WALL) != pid || !WIFSTOPPED(st)) {
            attach[OK_PRIVILEGED]++; /* attached, then gone: unclassifiable, count against us */
            *status = st;
            return 1;
        }
        if (WSTOPSIG(st) == SIGSTOP) break;
        if (WSTOPSIG(st) == SIGTRAP) exec_traps++;
        else other_stops++;
        ptrace(PTRACE_CONT, pid, 0, 0);
    }
    errno = 0;
    long value = ptrace(PTRACE_PEEKDATA, pid, (void *)&phase, 0);
    int c = classify(value, errno == 0);
    if (any_uid_zero(pid)) c = OK_PRIVILEGED;
    attach[c]++;
    ptrace(PTRACE_DETACH, pid, 0, 0);
    return 0;
}

static void try_mem(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/mem", pid);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int c = errno_class(errno);
        if (c == E_OTHER) other_errno_mem = errno;
        mem[c]++;
        return;
    }
    long value = 0;
    ssize_t n = pread(fd, &value, sizeof value, (off_t)(unsigned long)&phase);
    /* Opened in the last part of an execve (credentials and memory already
     * the new image's, the ELF loader still mapping it): the descriptor holds
     * that memory, so look again once the loader is done. imageswitch's own
     * memory never has anything at this fixed address. */
    for (int retry = 0; n != (ssize_t)sizeof value && retry < 1000; retry++) {
        usleep(100);
        n = pread(fd, &value, sizeof value, (off_t)(unsigned long)&phase);
    }
    mem[classify(value, n == (ssize_t)sizeof value)]++;
    close(fd);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int race(long runs, const char *bin, const char *sysroot, const char *self) {
    long exits[256] = {0}, signaled = 0, entries_reached_command = 0;
    phase = PRE_EXEC;
    for (long i = 0; i < runs; i++) {
        int exec_seen[2], hold[2];
        if (pipe2(exec_seen, O_CLOEXEC) || pipe2(hold, O_CLOEXEC)) { perror("pipe"); return 2; }
        pid_t pid = fork();
        if (pid < 0) { perror("fork"); return 2; }
        if (pid == 0) {
            dup2(hold[0], 0);
            char *argv[] = {"imageswitch", (char *)sysroot, (char *)self, "target", NULL};
            char *envp[] = {"PATH=/usr/bin:/bin", NULL};
            execve(bin, argv, envp);
            _exit(126);
        }
        close(exec_seen[1]);
        close(hold[0]);
        char b;
        /* EOF: the close-on-exec descriptor is gone, the exec is under way. */
        while (read(exec_seen[0], &b, 1) < 0 && errno == EINTR) {}
        close(exec_seen[0]);
        long ok_command_before = attach[OK_COMMAND] + mem[OK_COMMAND];
        int status = 0, reaped = 0;
        double deadline = now() + 10.0;
        for (long k = 0; k < 200000 && now() < deadline; k++) {
            int dropped = imageswitch_with_our_uids(pid);
            long denied_before = attach[E_PERM], mem_denied_before = mem[E_ACCES];
            if (try_attach(pid, &status)) { reaped = 1; break; }
            try_mem(pid);
            if (dropped) {
                dropped_attach_denied += attach[E_PERM] - denied_before;
                dropped_mem_denied += mem[E_ACCES] - mem_denied_before;
            }
            pid_t w = waitpid(pid, &status, WNOHANG | __WALL);
            if (w == pid) { reaped = 1; break; }
            /* Once the user's command has been reached by both means, stop. */
            if (attach[OK_COMMAND] + mem[OK_COMMAND] - ok_command_before >= 2) break;
        }
        close(hold[1]);
        /* The command exits on EOF; a process that does not within 10 s is a
         * defect of this driver (left stopped): counted, killed, reported. */
        for (double end = now() + 10.0; !reaped; ) {
            if (waitpid(pid, &status, WNOHANG | __WALL) == pid) { reaped = 1; break; }
            if (now() > end) { hung++; kill(pid, SIGKILL); waitpid(pid, &status, __WALL); reaped = 1; break; }
            usleep(200);
        }
        if (attach[OK_COMMAND] + mem[OK_COMMAND] > ok_command_before) entries_reached_command++;
        if (WIFEXITED(status)) exits[WEXITSTATUS(status)]++;
        else signaled++;
    }
    printf("entries=%ld\nentries_reached_command=%ld\nsignaled=%ld\n", runs, entries_reached_command, signaled);
    for (int s = 0; s < 256; s++)
        if (exits[s]) printf("exit_%d=%ld\n", s, exits[s]);
    for (int c = 0; c < NCLASS; c++) printf("attach_%s=%ld\n", class_name[c], attach[c]);
    for (int c = 0; c < NCLASS; c++) printf("mem_%s=%ld\n", class_name[c], mem[c]);
    printf("attach_other_errno=%ld\nmem_other_errno=%ld\n", other_errno_attach, other_errno_mem);
    printf("exec_traps=%ld\nother_stops=%ld\nhung=%ld\n", exec_traps, other_stops, hung);
    printf("dropped_attach_denied=%ld\ndropped_mem_denied=%ld\n", dropped_attach_denied, dropped_mem_denied);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "exec")) {
        execve(argv[2], &argv[3], environ);
        perror("execve");
        return 127;
    }
    if (argc == 2 && !strcmp(argv[1], "target")) {
        char buf[64];
        while (read(0, buf, sizeof buf) > 0) {}
        return phase == COMMAND ? 0 : 3;
    }
    if (argc == 5 && !strcmp(argv[1], "race")) return race(atol(argv[2]), argv[3], argv[4], argv[0]);
    fprintf(stderr, "usage: helper exec PATH [ARGV...] | target | race N BIN SYSROOT\n");
    return 2;
}
"#;

/// Builds the helper into a directory of `user`'s under /tmp, which every
/// sysroot binds, so the same path works on the host and inside.
fn build_helper(user: &str) -> PathBuf {
    let dir = user_tmpdir(user, "rel-helper");
    let source = dir.join("helper.c");
    let binary = dir.join("helper");
    fs::write(&source, HELPER_C).expect("write helper.c");
    let out = run(Command::new("gcc").args(["-O2", "-static", "-no-pie", "-Wall", "-o"]).arg(&binary).arg(&source));
    assert!(out.status.success(), "gcc failed:\n{}", stderr(&out));
    sh(&format!("chown {user}: {0} && chmod 755 {0}", binary.display()));
    binary
}

#[test]
fn row16_signal_races() {
    require_root!();
    let _serial = serial();
    fixture();
    let runs = count_from_env("IMGSW_REL_SIGNAL_RUNS", 500);
    let mut rng = Rng::from_env("row16_signal_races");
    let cwd = user_tmpdir(ALICE, "rel-signal");
    let _cleanup = Cleanup(vec![cwd.clone()]);
    let before = HostState::take();
    let bb_hash = fnv1a(&before.bb);
    let mounts_hash = fnv1a(&before.mounts);

    // Pass 1 as specified (uniform 0-50 ms, most kills land in the user's
    // command, as an entry takes a few ms); pass 2 uniform over 0-6 ms, so
    // most land inside setpriv/imageswitch, where a kill could leave state.
    let mut at_kill: std::collections::BTreeMap<(u64, &str), usize> = Default::default();
    let mut exited_first = 0;
    let started = Instant::now();
    for (max_us, n) in [(50_000, runs), (6_000, runs)] {
        for _ in 0..n {
            let delay = Duration::from_micros(rng.below(max_us + 1));
            let mut child = as_user(ALICE, BIN)
                .args(["bb", "sleep", "5"])
                .current_dir(&cwd)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn");
            // The delay is the experiment (where in the sequence the kill lands), not synchronisation.
            std::thread::sleep(delay);
            let comm = fs::read_to_string(format!("/proc/{}/comm", child.id())).unwrap_or_default();
            let phase = match comm.trim() {
                "setpriv" => "setpriv",
                "imageswitch" => "imageswitch",
                "sleep" => "command",
                _ => "fork",
            };
            let _ = child.kill();
            let status = child.wait().expect("wait");
            use std::os::unix::process::ExitStatusExt;
            if status.signal() == Some(libc::SIGKILL) {
                *at_kill.entry((max_us / 1000, phase)).or_default() += 1;
            } else {
                exited_first += 1;
            }
        }
    }
    let elapsed = started.elapsed();

    let unrelated = before.assert_unchanged("after the signal races");
    assert_no_leftovers("after the signal races");
    assert_eq!(exited_first, 0, "sleep 5 cannot finish before a kill at <= 50 ms");
    figure(&format!(
        "row16_signal_races: {runs} entries as {ALICE} SIGKILLed at uniform 0-50 ms and {runs} at 0-6 ms, in {:.1} s; \
         kills by (window ms, process image at the kill): {at_kill:?}; \
         host mountinfo under the trees unchanged (whole table before: fnv1a {mounts_hash:016x}; {unrelated} lines \
         elsewhere changed meanwhile), bb tree listing unchanged ({} entries, fnv1a {bb_hash:016x}), \
         no process left behind (descendants, via a child subreaper)",
        elapsed.as_secs_f64(),
        before.bb.lines().count(),
    ));
}

fn parse_counts(text: &str) -> std::collections::BTreeMap<String, i64> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim().parse().expect("count")))
        .collect()
}

#[test]
fn row14_ptrace_and_proc_mem_race() {
    require_root!();
    let _serial = serial();
    fixture();
    let runs = count_from_env("IMGSW_REL_PTRACE_RUNS", 500);
    let helper = build_helper(ALICE);
    let dir = helper.parent().expect("dir").to_path_buf();
    let _cleanup = Cleanup(vec![dir.clone()]);
    let before = HostState::take();
    let started = Instant::now();
    let out = run(as_user(ALICE, helper.to_str().expect("utf8"))
        .args(["race", &runs.to_string(), BIN, "bb"])
        .current_dir(&dir));
    let elapsed = started.elapsed();
    assert!(out.status.success(), "race driver failed: {}\n{}", stderr(&out), stdout(&out));
    let c = parse_counts(&stdout(&out));
    let get = |k: &str| c.get(k).copied().unwrap_or(0);

    assert_eq!(get("attach_ok_PRIVILEGED"), 0, "PTRACE_ATTACH reached the privileged process: {c:#?}");
    assert_eq!(get("mem_ok_PRIVILEGED"), 0, "/proc/PID/mem of the privileged process opened: {c:#?}");
    assert_eq!(get("attach_ok_before_exec") + get("mem_ok_before_exec"), 0, "the race starts after exec: {c:#?}");
    // While privileged the answer is EPERM (ptrace) and EACCES (mem, from
    // mm_access); ESRCH only once the process is gone. Nothing else.
    assert_eq!(get("attach_other_error") + get("attach_eacces"), 0, "{c:#?}");
    assert_eq!(get("mem_other_error") + get("mem_eperm"), 0, "{c:#?}");
    assert!(get("attach_eperm") >= runs as i64, "the attacker must have raced every entry: {c:#?}");
    // The attacker's method works: it does reach the user's own command.
    assert!(get("attach_ok_own_command") > 0 && get("mem_ok_own_command") > 0, "{c:#?}");
    assert_eq!(get("hung"), 0, "the driver left a process stopped: {c:#?}");
    assert_eq!(get("other_stops"), 0, "{c:#?}");
    assert_eq!(get("exit_0"), runs as i64, "every entry ran its command: {c:#?}\n{}", stderr(&out));
    before.assert_unchanged("after the ptrace race");
    assert_no_leftovers("after the ptrace race");
    figure(&format!(
        "row14_ptrace_and_proc_mem_race: {runs} entries in {:.1} s; while privileged: PTRACE_ATTACH {} x EPERM, \
         /proc/PID/mem {} x EACCES, 0 successes (of these, attach {} / mem {} after imageswitch had already switched to \
         the user's uids, before its exec: kept out by PR_SET_DUMPABLE 0); after exec into the user's command (allowed): attach {} / mem {} \
         successes in {} entries ({} attaches landed in the tail of that execve, after the kernel had committed the \
         user's credentials: SIGTRAP seen, target verified as the user's command); ESRCH attach {} / mem {}",
        elapsed.as_secs_f64(),
        get("attach_eperm"),
        get("mem_eacces"),
        get("dropped_attach_denied"),
        get("dropped_mem_denied"),
        get("attach_ok_own_command"),
        get("mem_ok_own_command"),
        get("entries_reached_command"),
        get("exec_traps"),
        get("attach_esrch"),
        get("mem_esrch"),
    ));
}

#[test]
fn load_concurrent_entries_from_two_users_into_two_sysroots() {
    require_root!();
    let _serial = serial();
    fixture();
    let n = count_from_env("IMGSW_REL_LOAD", 100);
    let before = HostState::take();
    let tag = format!("imgsw-load-{}-{}", std::process::id(), unique());
    let started = Instant::now();
    let children: Vec<_> = (0..n)
        .map(|i| {
            let user = if i % 2 == 0 { ALICE } else { BOB };
            let sysroot = if i % 4 < 2 { "trixie" } else { "bb" };
            let file = format!("{tag}-{i}");
            let script = format!(
                "echo \"{file} $(id -u) $USER $IMAGESWITCH_SYSROOT\" > \"$HOME/{file}\" && cat \"$HOME/{file}\""
            );
            let child = as_user(user, BIN)
                .args([sysroot, "sh", "-c", &script])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn");
            (user, sysroot, file, child)
        })
        .collect();
    let mut failures = Vec::new();
    for (user, sysroot, file, child) in children {
        let out = child.wait_with_output().expect("wait");
        let expected = format!("{file} {} {user} {sysroot}\n", uid_of(user));
        if out.status.code() != Some(0) || stdout(&out) != expected || !stderr(&out).is_empty() {
            failures.push(format!("{user} {sysroot}: {:?} {:?} {:?}", out.status, stdout(&out), stderr(&out)));
            continue;
        }
        let path = home_of(user).join(&file);
        let meta = fs::metadata(&path).expect("file on the host");
        if meta.uid() != uid_of(user) || fs::read_to_string(&path).expect("read") != expected {
            failures.push(format!("{}: owner {} content {:?}", path.display(), meta.uid(), fs::read_to_string(&path)));
        }
        let _ = fs::remove_file(path);
    }
    let elapsed = started.elapsed();
    assert!(failures.is_empty(), "{} of {n} entries failed:\n{}", failures.len(), failures.join("\n"));
    before.assert_unchanged("after the load");
    assert_no_leftovers("after the load");
    figure(&format!(
        "load: {n} concurrent entries ({ALICE}, {BOB} x trixie, bb) each writing and reading a home file: {n}/{n} succeeded, \
         every file owned by its user, host mountinfo unchanged; wall {:.2} s",
        elapsed.as_secs_f64()
    ));
}

/// Runs `runs` times, in a host `sh` loop, either the `#!BIN11/sh` script as
/// ALICE or the same body under the tree's shell via chroot(8) as root.
/// Returns the time taken; panics if any run failed.
fn soak_chunk(script: &Path, body: &str, runs: usize, via_chroot: bool) -> Duration {
    let f = fixture();
    let program = r#"count=$1; shift; n=0; fail=0; while [ $n -lt $count ]; do "$@" >/dev/null || fail=$((fail+1)); n=$((n+1)); done; echo $fail"#;
    let mut cmd = if via_chroot {
        let mut c = Command::new("sh");
        c.args(["-c", program, "sh", &runs.to_string(), "/usr/sbin/chroot"])
            .arg(&f.deb11)
            .args(["/bin/sh", "-c", body]);
        c
    } else {
        let mut c = as_user(ALICE, "/bin/sh");
        c.args(["-c", program, "sh", &runs.to_string()]).arg(script);
        c.current_dir(script.parent().expect("dir"));
        c
    };
    let started = Instant::now();
    let out = run(&mut cmd);
    let elapsed = started.elapsed();
    assert!(out.status.success(), "soak loop: {}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "0",
        "failed runs ({}): {}",
        if via_chroot { "chroot" } else { "imageswitch" },
        stderr(&out)
    );
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    elapsed
}

#[test]
fn soak_sequential_shebang_scripts_against_chroot() {
    require_root!();
    let _serial = serial();
    fixture();
    let runs = count_from_env("IMGSW_REL_SOAK_RUNS", 10_000);
    let chunks = 10.min(runs.max(1));
    let body = "[ -r /etc/debian_version ] && [ \"$IMAGESWITCH_SYSROOT\" = deb11 ] || exit 3";
    let chroot_body = "[ -r /etc/debian_version ] || exit 3";
    let dir = user_tmpdir(ALICE, "rel-soak");
    let _cleanup = Cleanup(vec![dir.clone()]);
    let script = dir.join("job.sh");
    fs::write(&script, format!("#!{BIN11}/sh\n{body}\n")).expect("script");
    sh(&format!("chown {ALICE} {0} && chmod 755 {0}", script.display()));

    let before = HostState::take();
    let mem_before = (meminfo_kib("MemAvailable"), meminfo_kib("Slab"));
    let mut samples = Vec::new();
    let mut imageswitch_time = Duration::ZERO;
    let mut unrelated = 0;
    for chunk in 0..chunks {
        let n = runs / chunks + usize::from(chunk < runs % chunks);
        imageswitch_time += soak_chunk(&script, body, n, false);
        unrelated = unrelated.max(before.assert_unchanged(&format!("soak chunk {chunk}")));
        assert_no_leftovers(&format!("soak chunk {chunk}"));
        samples.push(format!("{}:{}", meminfo_kib("MemAvailable") / 1024, meminfo_kib("Slab") / 1024));
    }
    let chroot_time = soak_chunk(&script, chroot_body, runs, true);
    before.assert_unchanged("after the soak");
    let mem_after = (meminfo_kib("MemAvailable"), meminfo_kib("Slab"));

    let rate = |d: Duration| runs as f64 / d.as_secs_f64();
    figure(&format!(
        "soak: {runs} sequential #!{BIN11}/sh script runs as {ALICE}: {:.0} runs/s ({:.2} ms each); same body via \
         chroot(8) as root: {:.0} runs/s ({:.2} ms each); imageswitch/chroot time ratio {:.2}; all {runs} + {runs} exited 0",
        rate(imageswitch_time),
        imageswitch_time.as_secs_f64() * 1000.0 / runs as f64,
        rate(chroot_time),
        chroot_time.as_secs_f64() * 1000.0 / runs as f64,
        imageswitch_time.as_secs_f64() / chroot_time.as_secs_f64(),
    ));
    figure(&format!(
        "soak: host mountinfo under the trees identical after each of {chunks} chunks ({unrelated} unrelated lines changed \
         elsewhere), no process left behind; MemAvailable:Slab MiB per chunk {samples:?} \
         (before {}:{}, after {}:{})",
        mem_before.0 / 1024,
        mem_before.1 / 1024,
        mem_after.0 / 1024,
        mem_after.1 / 1024
    ));
}

// ---------------------------------------------------------------------------
// Bad input sweep
// ---------------------------------------------------------------------------

const CONFIG_DIR: &str = "/etc/imageswitch-test";

/// Swaps the test configuration and puts the fixture's back when dropped,
/// even if the test fails half way.
struct ConfigSwap {
    original: Vec<u8>,
    extra: Vec<PathBuf>,
}

impl ConfigSwap {
    fn new() -> ConfigSwap {
        ConfigSwap { original: fs::read(TEST_CONFIG).expect("fixture config"), extra: Vec::new() }
    }

    /// Atomically replaces the configuration with `text`, mode `mode`.
    fn install(&mut self, text: &[u8], mode: u32) {
        let tmp = Path::new(CONFIG_DIR).join(".sysroots.toml.rel");
        let _ = fs::remove_file(&tmp);
        fs::write(&tmp, text).expect("write config");
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).expect("chmod");
        fs::rename(&tmp, TEST_CONFIG).expect("rename config");
    }

    /// Makes the configuration path a symbolic link to a file holding `text`.
    fn install_symlink(&mut self, text: &[u8], link_owner: Option<&str>) {
        let target = Path::new(CONFIG_DIR).join("rel-target.toml");
        fs::write(&target, text).expect("write target");
        fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).expect("chmod");
        self.extra.push(target.clone());
        let tmp = Path::new(CONFIG_DIR).join(".sysroots.toml.rel");
        let _ = fs::remove_file(&tmp);
        symlink(&target, &tmp).expect("symlink");
        if let Some(owner) = link_owner {
            sh(&format!("chown -h {owner} {}", tmp.display()));
        }
        fs::rename(&tmp, TEST_CONFIG).expect("rename link");
    }

    fn remove(&mut self) {
        let _ = fs::remove_file(TEST_CONFIG);
    }
}

impl Drop for ConfigSwap {
    fn drop(&mut self) {
        self.install(&self.original.clone(), 0o644);
        for path in &self.extra {
            let _ = fs::remove_file(path);
        }
    }
}

/// The one-line failure contract: status 125, nothing on stdout, exactly one
/// short line on stderr, `imageswitch: ...` containing `expect`, no control
/// characters. Returns the line, or what is wrong.
fn clean_failure(case: &str, out: &Output, expect: &str) -> Result<String, String> {
    let err = &out.stderr;
    let text = String::from_utf8_lossy(err).into_owned();
    let shown: String = text.chars().take(160).collect();
    if out.status.code() != Some(125) {
        return Err(format!("{case}: status {:?}, stderr {shown:?}", out.status));
    }
    if !out.stdout.is_empty() {
        return Err(format!("{case}: stdout {:?}", stdout(out)));
    }
    if !err.ends_with(b"\n") || err.iter().filter(|&&b| b == b'\n').count() != 1 {
        return Err(format!("{case}: not exactly one line: {shown:?}"));
    }
    if !text.starts_with("imageswitch: ") || !text.contains(expect) {
        return Err(format!("{case}: expected \"imageswitch: ...{expect}...\", got {shown:?}"));
    }
    if text.contains("panicked") || text.contains("RUST_BACKTRACE") {
        return Err(format!("{case}: panic: {shown:?}"));
    }
    if let Some(c) = text.trim_end_matches('\n').chars().find(|c| c.is_control()) {
        return Err(format!("{case}: control character {c:?} echoed raw: {shown:?}"));
    }
    if err.len() > 1024 {
        return Err(format!("{case}: a {}-byte message is not a clear line: {shown:?}...", err.len()));
    }
    Ok(text)
}

struct ConfigCase {
    name: &'static str,
    text: String,
    /// The sysroot or alias asked for.
    enter: &'static str,
    expect: &'static str,
}

fn config_cases(userowned: &Path, writable: &Path) -> Vec<ConfigCase> {
    let bb = format!("{PREFIX}/trees/bb");
    let good = format!("[sysroot.bb]\npath = \"{bb}\"\nbinds = [\"/home\"]\n");
    let case = |name, text: String, enter, expect| ConfigCase { name, text, enter, expect };
    vec![
        case("syntax: unclosed table header", format!("[sysroot.bb\npath = \"{bb}\"\n"), "bb", ":1:"),
        case("syntax: unterminated string", format!("[sysroot.bb]\npath = \"{bb}\n"), "bb", "syntax error"),
        case("syntax: bare value", format!("{good}binds\n"), "bb", "no sysroot can be entered until this is fixed"),
        case(
            "type: path is an integer",
            "[sysroot.bb]\npath = 42\n".into(),
            "bb",
            "\"path\" must be a string, found an integer",
        ),
        case("type: setuid is a string", format!("{good}setuid = \"yes\"\n"), "bb", "\"setuid\" must be true or false"),
        case("type: aliases is a string", format!("{good}aliases = \"x\"\n"), "bb", "\"aliases\" must be an array"),
        case(
            "type: binds holds an integer",
            format!("{good}binds = [1]\n").replace("binds = [\"/home\"]\n", ""),
            "bb",
            "\"binds\" must be a string",
        ),
        case("type: sysroot is a string", "sysroot = \"bb\"\n".into(), "bb", "[sysroot] must be a table"),
        case(
            "type: personality value",
            format!("{good}personality = \"sparc\"\n"),
            "bb",
            "\"personality\" must be \"linux\" or \"linux32\"",
        ),
        case("unknown key in a sysroot", format!("{good}pth = \"/x\"\n"), "bb", "unknown key \"pth\" in [sysroot.bb]"),
        case(
            "unknown key in defaults",
            format!("[defaults]\nbindz = []\n{good}"),
            "bb",
            "unknown key \"bindz\" in [defaults]",
        ),
        case(
            "unknown top-level key",
            format!("config = \"/etc/shadow\"\n{good}"),
            "bb",
            "unknown top-level key \"config\"",
        ),
        case("duplicate sysroot name", format!("{good}{good}"), "bb", "syntax error"),
        case(
            "duplicate alias across sysroots",
            format!(
                "[sysroot.bb]\npath = \"{bb}\"\naliases = [\"dup\"]\n[sysroot.bb2]\npath = \"{bb}\"\naliases = [\"dup\"]\n"
            ),
            "bb2",
            "alias \"dup\" of [sysroot.bb2] is already used by [sysroot.bb]",
        ),
        case(
            "relative path",
            "[sysroot.bb]\npath = \"var/lib/imageswitch-test/trees/bb\"\n".into(),
            "bb",
            "must be an absolute path",
        ),
        case(
            "path with ..",
            format!("[sysroot.bb]\npath = \"{PREFIX}/trees/../trees/bb\"\n"),
            "bb",
            "must be an absolute path without",
        ),
        case(
            "bind with ..",
            format!("{good}binds = [\"/home/../etc\"]\n").replace("binds = [\"/home\"]\n", ""),
            "bb",
            "in \"binds\"",
        ),
        case(
            "bind of /",
            format!("[sysroot.bb]\npath = \"{bb}\"\nbinds = [\"/\"]\n"),
            "bb",
            "would cover the whole tree",
        ),
        case("path is /", "[sysroot.bb]\npath = \"/\"\n".into(), "bb", "\"path\" must not be \"/\""),
        case(
            "name with a slash",
            format!("[sysroot.\"b/b\"]\npath = \"{bb}\"\n"),
            "b/b",
            "unknown sysroot name \"b/b\"",
        ),
        case(
            "name with a space",
            format!("[sysroot.\"b b\"]\npath = \"{bb}\"\n"),
            "b b",
            "unknown sysroot name \"b b\"",
        ),
        case(
            "name is the program's",
            format!("[sysroot.imageswitch]\npath = \"{bb}\"\n"),
            "imageswitch",
            "invalid sysroot name \"imageswitch\"",
        ),
        case("alias outside the charset", format!("{good}aliases = [\"a;b\"]\n"), "bb", "invalid name \"a;b\""),
        // Who the entry admits cannot be read: only root is told about it.
        case(
            "user name outside the charset",
            format!("{good}users = [\"root:x\"]\n"),
            "bb",
            "unknown sysroot name \"bb\" (see imageswitch --list)",
        ),
        case(
            "missing tree",
            format!("[sysroot.bb]\npath = \"{PREFIX}/trees/rel-nonexistent\"\n"),
            "bb",
            "no such file or directory",
        ),
        case(
            "missing path key",
            "[sysroot.bb]\naliases = [\"x\"]\n".into(),
            "bb",
            "missing key \"path\" in [sysroot.bb]",
        ),
        case("tree not root-owned", format!("[sysroot.bb]\npath = \"{}\"\n", userowned.display()), "bb", "not root"),
        case(
            "tree writable by others",
            format!("[sysroot.bb]\npath = \"{}\"\n", writable.display()),
            "bb",
            "writable by group or others",
        ),
        case("empty configuration", String::new(), "bb", "unknown sysroot name \"bb\""),
    ]
}

#[test]
fn bad_input_sweep() {
    require_root!();
    let _serial = serial();
    let f = fixture();
    let helper = build_helper(ALICE);
    let cwd = helper.parent().expect("dir").to_path_buf();
    let userowned = Path::new(PREFIX).join("trees/rel-userowned-root");
    let writable = Path::new(PREFIX).join("trees/rel-world-writable");
    let _cleanup = Cleanup(vec![cwd.clone(), userowned.clone(), writable.clone()]);
    sh(&format!(
        "rm -rf {u} {w} && cp -a {bb} {u} && chown {ALICE} {u} && cp -a {bb} {w} && chmod 777 {w}",
        u = userowned.display(),
        w = writable.display(),
        bb = f.bb.display()
    ));
    let cwd_listing = || tree_listing(&cwd);
    let before = HostState::take();
    let cwd_before = cwd_listing();
    let alice = |args: &[&str]| run(as_user(ALICE, BIN).args(args).current_dir(&cwd));
    let fixture_config = fs::read(TEST_CONFIG).expect("fixture config");
    let mut checked = 0;
    let mut broken_contract = Vec::new();
    let mut check = |case: &str, out: &Output, expect: &str| {
        // Host state is a hard failure at once; the message contract is
        // collected so one run reports every case that breaks it.
        before.assert_unchanged(case);
        assert!(leftovers().is_empty(), "{case}: processes left behind: {:?}", leftovers());
        assert_eq!(cwd_listing(), cwd_before, "{case}: something was written in the caller's directory");
        checked += 1;
        if let Err(why) = clean_failure(case, out, expect) {
            broken_contract.push(why);
        }
    };

    // Configurations: each swapped in, entered, and the fixture's restored.
    {
        let mut swap = ConfigSwap::new();
        let original = swap.original.clone();
        for case in config_cases(&userowned, &writable) {
            swap.install(case.text.as_bytes(), 0o644);
            let out = alice(&[case.enter, "true"]);
            check(case.name, &out, case.expect);
            assert_eq!(fs::read(TEST_CONFIG).expect("config"), case.text.as_bytes(), "{}: config changed", case.name);
        }
        type Setup = Box<dyn Fn(&mut ConfigSwap)>;
        let file_cases: Vec<(&str, Setup, &str)> = vec![
            (
                "configuration world-writable",
                Box::new(|s: &mut ConfigSwap| s.install(&s.original.clone(), 0o666)),
                "writable by group or others",
            ),
            (
                "configuration group-writable",
                Box::new(|s: &mut ConfigSwap| s.install(&s.original.clone(), 0o664)),
                "writable by group or others",
            ),
            (
                "configuration owned by a user",
                Box::new(|s: &mut ConfigSwap| {
                    s.install(&s.original.clone(), 0o644);
                    sh(&format!("chown {ALICE} {TEST_CONFIG}"));
                }),
                "not root",
            ),
            (
                "configuration is a user-owned symlink",
                Box::new(|s: &mut ConfigSwap| s.install_symlink(&s.original.clone(), Some(ALICE))),
                "refusing configuration",
            ),
            (
                "configuration is a root-owned symlink to a world-writable file",
                Box::new(|s: &mut ConfigSwap| {
                    s.install_symlink(&s.original.clone(), None);
                    sh(&format!("chmod 666 {CONFIG_DIR}/rel-target.toml"));
                }),
                "writable by group or others",
            ),
            ("configuration missing", Box::new(|s: &mut ConfigSwap| s.remove()), "no such file or directory"),
            (
                "configuration larger than 1 MiB",
                Box::new(|s: &mut ConfigSwap| {
                    let mut big = s.original.clone();
                    big.extend(std::iter::repeat_n(b'#', 1 << 20));
                    s.install(&big, 0o644);
                }),
                "larger than 1 MiB",
            ),
            (
                "configuration not UTF-8",
                Box::new(|s: &mut ConfigSwap| {
                    let mut bad = s.original.clone();
                    bad.extend_from_slice(b"\n# \xff\xfe\n");
                    s.install(&bad, 0o644);
                }),
                "cannot read",
            ),
        ];
        for (name, setup, expect) in &file_cases {
            setup(&mut swap);
            let out = alice(&["bb", "true"]);
            check(name, &out, expect);
        }
        // A root-owned symlink is trusted and followed (src/trusted.rs: links
        // on the way must be root-owned), like a generation link for a tree.
        swap.install_symlink(&original, None);
        let out = alice(&["bb", "true"]);
        assert_eq!(out.status.code(), Some(0), "root-owned config symlink: {}", stderr(&out));
    }
    assert_eq!(fs::read(TEST_CONFIG).expect("config restored"), fixture_config, "fixture configuration restored");
    let restored = alice(&["bb", "true"]);
    assert_eq!(restored.status.code(), Some(0), "fixture configuration restored: {}", stderr(&restored));

    // Hostile argv, with the fixture's configuration.
    let helper_s = helper.to_str().expect("utf8");
    let h = |args: &[&OsStr]| run(as_user(ALICE, helper_s).arg("exec").arg(BIN).args(args).current_dir(&cwd));
    let out = h(&[]);
    check("argc 0", &out, "unknown sysroot name \"\"");
    let out = h(&[OsStr::new("../../etc/shadow"), OsStr::new("-c"), OsStr::new("id")]);
    check("argv[0] ../../etc/shadow", &out, "unknown sysroot name \"shadow\"");
    let out = h(&[OsStr::from_bytes(b"imgsw-\xff\xfe"), OsStr::new("-c"), OsStr::new("id")]);
    check("argv[0] not UTF-8", &out, "unknown sysroot name \"imgsw-\u{fffd}\u{fffd}\"");
    let out = h(&[OsStr::new(&format!("{BINBB}/../../bin/sh")), OsStr::new("-c"), OsStr::new("id")]);
    check("argv[0] bin_dir/../..", &out, "unknown sysroot name \"sh\"");
    let out = alice(&["-u", "root", "bb", "id"]);
    check("user switch option", &out, "unknown option \"-u\"");
    let out = alice(&["--x\nimageswitch: fake", "bb"]);
    check("unknown option with a newline", &out, "unknown option");
    let out = run(as_user(ALICE, BIN).arg(OsStr::from_bytes(b"b\xffb")).arg("true").current_dir(&cwd));
    check("NAME not UTF-8", &out, "unknown sysroot name \"b\u{fffd}b\"");
    let long_name = "n".repeat(100_000);
    let out = alice(&[&long_name, "true"]);
    check("100,000-byte NAME", &out, "unknown sysroot name");
    let out = alice(&["bb\nimageswitch: bb: entered as root", "true"]);
    check("NAME with a newline", &out, "unknown sysroot name");
    let out = alice(&["\x1b[2J\x1b[Hbb", "true"]);
    check("NAME with terminal escapes", &out, "unknown sysroot name");
    let out = h(&[OsStr::new("imgsw-\x1b]0;owned\x07"), OsStr::new("-c"), OsStr::new("id")]);
    check("argv[0] with terminal escapes", &out, "unknown sysroot name");

    assert!(
        broken_contract.is_empty(),
        "{} of {checked} cases broke the one-clear-line contract (host state was unchanged in all):\n{}",
        broken_contract.len(),
        broken_contract.join("\n")
    );

    figure(&format!(
        "bad_input_sweep: {checked} malformed configs / files / argv cases: each exit 125 with exactly one \
         `imageswitch: ...` line, host mountinfo, bb tree and caller's directory unchanged"
    ));
}

#[test]
fn hostile_cwd() {
    require_root!();
    let _serial = serial();
    fixture();
    let before = HostState::take();
    let home = home_of(ALICE).display().to_string();
    let base = user_tmpdir(ALICE, "rel-cwd");
    let _cleanup = Cleanup(vec![base.clone()]);

    // Deleted while we stand in it: getcwd fails; warning, start in home.
    let gone = base.join("gone");
    let out = run(as_user(ALICE, "/bin/sh")
        .args(["-c", &format!("mkdir {0} && cd {0} && rmdir {0} && exec {BIN} bb pwd", gone.display())]));
    assert_eq!(out.status.code(), Some(0), "deleted cwd: {}", stderr(&out));
    assert_eq!(stdout(&out), format!("{home}\n"), "deleted cwd");
    assert_eq!(stderr(&out), format!("imageswitch: warning: the current directory is gone; starting in {home}\n"));

    // Searchable but unreadable: entered as is.
    let unreadable = base.join("unreadable");
    sh(&format!("mkdir {0} && chown {ALICE} {0} && chmod 311 {0}", unreadable.display()));
    let out = run(as_user(ALICE, BIN).args(["bb", "pwd"]).current_dir(&unreadable));
    assert_eq!(out.status.code(), Some(0), "unreadable cwd: {}", stderr(&out));
    assert_eq!(stdout(&out), format!("{}\n", unreadable.display()));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));

    // A directory the user may not enter at all (root's 0700): the chdir
    // inside happens as the user, fails, and falls back to home.
    let closed = base.join("closed");
    sh(&format!("mkdir {0} && chmod 700 {0}", closed.display()));
    let out = run(as_user(ALICE, BIN).args(["bb", "pwd"]).current_dir(&closed));
    assert_eq!(out.status.code(), Some(0), "closed cwd: {}", stderr(&out));
    assert_eq!(stdout(&out), format!("{home}\n"));
    assert_eq!(
        stderr(&out),
        format!(
            "imageswitch: warning: cannot enter {} in bb (permission denied); starting in {home}\n",
            closed.display()
        )
    );

    // A name that is not UTF-8 is kept byte for byte.
    let mut raw = base.clone().into_os_string().into_vec();
    raw.extend_from_slice(b"/d\xff\xfe\x01");
    let odd = PathBuf::from(OsString::from_vec(raw.clone()));
    fs::create_dir(&odd).expect("mkdir odd");
    sh(&format!("chown -R {ALICE} {}", base.display()));
    let out = run(as_user(ALICE, BIN).args(["bb", "pwd"]).current_dir(&odd));
    assert_eq!(out.status.code(), Some(0), "non-UTF-8 cwd: {}", stderr(&out));
    raw.push(b'\n');
    assert_eq!(out.stdout, raw, "non-UTF-8 cwd");
    assert!(out.stderr.is_empty(), "{}", stderr(&out));

    before.assert_unchanged("after the cwd cases");
    assert_no_leftovers("after the cwd cases");
    figure(
        "hostile_cwd: deleted -> warning + home, search-only -> kept, no access -> warning + home, non-UTF-8 -> kept byte for byte; all exit 0, host unchanged",
    );
}

/// Config cases that need no root: the parser alone.
#[test]
fn bad_configs_parse_to_positioned_errors() {
    let cases = config_cases(Path::new("/u"), Path::new("/w"));
    let mut n = 0;
    for case in cases.iter().filter(|c| {
        !matches!(c.name, "missing tree" | "tree not root-owned" | "tree writable by others" | "empty configuration")
    }) {
        let located = match imageswitch::config::parse(TEST_CONFIG, &case.text) {
            Err(err) => err,
            Ok(config) => match config.broken.iter().find(|(name, _)| name == case.enter) {
                Some((_, err)) => err.clone(),
                None => {
                    assert!(config.sysroot(case.enter).is_none(), "{}: accepted", case.name);
                    continue;
                }
            },
        };
        assert!(located.line >= 1 && located.column >= 1, "{}: {located}", case.name);
        assert!(located.to_string().starts_with(&format!("{TEST_CONFIG}:{}:", located.line)), "{}", case.name);
        n += 1;
    }
    figure(&format!("bad_configs_parse_to_positioned_errors: {n} malformed configs, each a FILE:LINE:COL error"));
}

// ---------------------------------------------------------------------------
// sysrootctl under faults
// ---------------------------------------------------------------------------

/// The sysrootctl binary, built on demand (a no-op when `cargo test
/// --workspace` already built it) into this test's own target directory.
fn sysrootctl() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("test executable");
            // TARGET/debug/deps/reliability-HASH
            let profile_dir = exe.parent().and_then(Path::parent).expect("profile dir").to_path_buf();
            let target_dir = profile_dir.parent().expect("target dir");
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let out = run(Command::new(cargo)
                .args(["build", "-q", "-p", "sysrootctl", "--target-dir"])
                .arg(target_dir)
                .current_dir(env!("CARGO_MANIFEST_DIR")));
            assert!(out.status.success(), "cargo build -p sysrootctl:\n{}", stderr(&out));
            let bin = profile_dir.join("sysrootctl");
            assert!(bin.is_file(), "{} was not built", bin.display());
            bin
        })
        .clone()
}

/// A root-owned scratch directory (trees under it must pass imageswitch's
/// ownership checks), with one busybox sysroot declared from a tarball and
/// an overlay whose /etc/marker each test rewrites to force a new generation.
struct Ctl {
    dir: PathBuf,
    bin: PathBuf,
}

impl Ctl {
    fn new(tag: &str, store: &Path) -> Ctl {
        let dir = Path::new(PREFIX).join(format!("rel-ctl-{tag}-{}", std::process::id()));
        sh(&format!("rm -rf --one-file-system {0} && mkdir -p {0}/overlay/etc && chmod 755 {0}", dir.display()));
        sh(&format!("tar -C {CACHE}/busybox --numeric-owner -czf {}/bb.tar.gz .", dir.display()));
        let ctl = Ctl { dir, bin: sysrootctl() };
        let store = if store.as_os_str().is_empty() { ctl.path("store") } else { store.to_path_buf() };
        let config = format!(
            "[sysroot.bb]\npath = \"{d}/roots/bb\"\n\n[sysroot.bb.build]\nmethod = \"tarball\"\nsource = \"{d}/bb.tar.gz\"\n\
             store = \"{s}\"\nkeep = 2\nfiles = [{{ src = \"{d}/overlay\", dst = \"/\" }}]\n",
            d = ctl.dir.display(),
            s = store.display()
        );
        fs::write(ctl.path("sysroots.toml"), config).expect("declaration");
        ctl.mark("0");
        ctl
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn mark(&self, value: &str) {
        fs::write(self.path("overlay/etc/marker"), format!("{value}\n")).expect("marker");
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--config")
            .arg(self.path("sysroots.toml"))
            .arg("--imageswitch")
            .arg(BIN)
            .arg("--alias-dir")
            .arg(self.path("alias"))
            .arg("--applications-dir")
            .arg(self.path("apps"))
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs; returns (status, stdout + stderr).
    fn run(&self, args: &[&str]) -> (Option<i32>, String) {
        let out = self.cmd(args).output().expect("run sysrootctl");
        (out.status.code(), format!("{}{}", stdout(&out), stderr(&out)))
    }

    fn expect(&self, args: &[&str], code: i32) -> String {
        let (status, text) = self.run(args);
        assert_eq!(status, Some(code), "sysrootctl {args:?}:\n{text}");
        text
    }

    /// The published generation's number, from the root-owned symlink.
    fn live(&self) -> Option<u32> {
        fs::read_link(self.path("roots/bb")).ok()?.file_name()?.to_str()?.parse().ok()
    }

    /// Checks the live generation is complete and usable: its record exists,
    /// and its own shell runs in it (chroot(8)) and reads the marker.
    fn assert_live_usable(&self, context: &str) -> (u32, String) {
        let n = self.live().unwrap_or_else(|| panic!("{context}: no live generation"));
        let target = fs::read_link(self.path("roots/bb")).expect("link");
        let store = target.parent().expect("store dir");
        assert!(store.join(format!("{n}.json")).is_file(), "{context}: generation {n} has no record");
        let out =
            run(Command::new("/usr/sbin/chroot").arg(self.path("roots/bb")).args(["/bin/sh", "-c", "cat /etc/marker"]));
        assert_eq!(out.status.code(), Some(0), "{context}: live generation {n} unusable: {}", stderr(&out));
        (n, stdout(&out).trim().to_string())
    }

    /// Nothing mounted under the scratch directory, no process rooted there.
    fn assert_clean(&self, context: &str) {
        let dir = self.dir.display().to_string();
        let mounts: Vec<String> = host_mounts()
            .lines()
            .filter(|l| l.split(' ').nth(4).is_some_and(|p| p.starts_with(&dir) && !p.ends_with("/disk")))
            .map(str::to_string)
            .collect();
        assert!(mounts.is_empty(), "{context}: mounts left under {dir}: {mounts:?}");
        let rooted: Vec<String> = fs::read_dir("/proc")
            .expect("/proc")
            .flatten()
            .filter(|e| e.file_name().as_bytes().iter().all(u8::is_ascii_digit))
            .filter(|e| fs::read_link(e.path().join("root")).is_ok_and(|r| r.starts_with(&self.dir)))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(rooted.is_empty(), "{context}: processes rooted under {dir}: {rooted:?}");
    }
}

impl Drop for Ctl {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.path("disk")).stderr(Stdio::null()).status();
        let _ = Command::new("rm").arg("-rf").arg("--one-file-system").arg(&self.dir).status();
    }
}

#[test]
fn sysrootctl_kill_9_at_random_points_of_apply() {
    require_root!();
    let _serial = serial();
    fixture();
    let runs = count_from_env("IMGSW_REL_CTL_KILLS", 20);
    let mut rng = Rng::from_env("sysrootctl_kill_9_at_random_points_of_apply");
    let ctl = Ctl::new("kill", Path::new(""));
    ctl.expect(&["apply", "-q"], 0);
    // One uninterrupted overlay generation, to scale the kill window.
    ctl.mark("1");
    let started = Instant::now();
    ctl.expect(&["apply", "-q"], 0);
    let full = started.elapsed();
    let (mut live, marker) = ctl.assert_live_usable("before the kills");
    assert_eq!(marker, "1");
    let mut live_listing = tree_listing(&ctl.path("roots/bb/"));

    let (mut interrupted, mut completed, mut unfinished) = (0, 0, 0);
    let partial_builds = || -> Vec<String> {
        fs::read_dir(ctl.path("store/bb"))
            .expect("store")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    };
    for i in 0..runs {
        let value = format!("k{i}");
        ctl.mark(&value);
        let mut child = ctl.cmd(&["apply", "-q"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn");
        // The delay is the experiment (where the kill lands), not synchronisation.
        let window = full.as_micros() as u64 * 5 / 4;
        std::thread::sleep(Duration::from_micros(rng.below(window.max(1000))));
        let _ = child.kill();
        let status = child.wait().expect("wait");
        let context = format!("kill {i} ({status})");
        let (now, marker) = ctl.assert_live_usable(&context);
        if now == live {
            interrupted += 1;
            assert_ne!(marker, value, "{context}: the live generation changed in place");
            assert_eq!(
                tree_listing(&ctl.path("roots/bb/")),
                live_listing,
                "{context}: live generation {live} modified"
            );
        } else {
            completed += 1;
            assert_eq!(marker, value, "{context}: new generation {now} published without its change");
            live = now;
            live_listing = tree_listing(&ctl.path("roots/bb/"));
        }
        assert!(leftovers().is_empty(), "{context}: processes left behind: {:?}", leftovers());
        ctl.assert_clean(&context);
        unfinished += usize::from(!partial_builds().is_empty());
    }
    let out = ctl.expect(&["apply"], 0);
    let (last, marker) = ctl.assert_live_usable("after the converging apply");
    assert_eq!(marker, format!("k{}", runs - 1), "the next apply converges on the declaration:\n{out}");
    assert_eq!(ctl.run(&["plan"]).0, Some(0), "plan shows nothing left to do");
    let partial = partial_builds();
    assert!(partial.is_empty(), "unfinished builds left after a full apply: {partial:?}");
    ctl.assert_clean("after the converging apply");
    figure(&format!(
        "sysrootctl kill -9: {runs} applies killed at random 0-{} ms (one full overlay apply: {} ms): {interrupted} \
         before publishing (live generation byte-for-byte unchanged and usable; {unfinished} left an unfinished N.tmp \
         build for the next apply to remove), {completed} after (new generation complete and usable); next apply converged on generation {last}, plan then exit 0, no unfinished build, \
         mount or process left",
        full.as_millis() * 5 / 4,
        full.as_millis()
    ));
}

#[test]
fn sysrootctl_full_disk_during_apply() {
    require_root!();
    let _serial = serial();
    fixture();
    // Ctl::new("disk") makes PREFIX/rel-ctl-disk-PID; the store goes on the loop filesystem at its disk/.
    let ctl = Ctl::new("disk", &Path::new(PREFIX).join(format!("rel-ctl-disk-{}/disk/store", std::process::id())));
    // The store on its own small filesystem (no root reserve: sysrootctl runs as root).
    let disk = ctl.path("disk");
    sh(&format!(
        "truncate -s 32M {d}.img && mkfs.ext4 -q -F -m 0 {d}.img && mkdir -p {d} && mount -o loop {d}.img {d}",
        d = disk.display()
    ));
    ctl.expect(&["apply", "-q"], 0);
    let (live, marker) = ctl.assert_live_usable("first apply");
    assert_eq!(marker, "0");
    let listing = tree_listing(&ctl.path("roots/bb/"));

    // Fill the filesystem to the last block.
    let filler = disk.join("filler");
    let _ = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", filler.display()))
        .args(["bs=1M", "status=none"])
        .stderr(Stdio::null())
        .status();
    let _ = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", disk.join("filler2").display()))
        .args(["bs=4k", "status=none"])
        .stderr(Stdio::null())
        .status();
    ctl.mark("1");
    let (status, out) = ctl.run(&["apply"]);
    assert_eq!(status, Some(1), "apply on a full disk must fail:\n{out}");
    assert!(out.to_lowercase().contains("no space left on device"), "the error says why:\n{out}");
    let (still, marker) = ctl.assert_live_usable("after the failed apply");
    assert_eq!((still, marker.as_str()), (live, "0"), "the live generation stays published");
    assert_eq!(tree_listing(&ctl.path("roots/bb/")), listing, "the live generation is unchanged");
    ctl.assert_clean("after the failed apply");
    let error_line = out.lines().find(|l| l.to_lowercase().contains("no space")).unwrap_or("").to_string();

    fs::remove_file(&filler).expect("rm filler");
    let _ = fs::remove_file(disk.join("filler2"));
    let out = ctl.expect(&["apply"], 0);
    let (next, marker) = ctl.assert_live_usable("after freeing space");
    assert_eq!(marker, "1", "converged:\n{out}");
    assert!(next > live);
    assert_eq!(ctl.run(&["plan"]).0, Some(0));
    ctl.assert_clean("after freeing space");
    figure(&format!(
        "sysrootctl full disk: store on a full 32 MiB ext4 loop filesystem: apply exit 1 ({error_line:?}), generation \
         {live} stays live, byte-for-byte unchanged and usable; after freeing space the next apply published \
         generation {next}, plan exit 0, nothing left mounted"
    ));
}

#[test]
fn sysrootctl_two_concurrent_applies() {
    require_root!();
    let _serial = serial();
    fixture();
    let ctl = Ctl::new("concurrent", Path::new(""));
    ctl.expect(&["apply", "-q"], 0);
    let (live, _) = ctl.assert_live_usable("first apply");
    ctl.mark("1");
    let children: Vec<_> = (0..2)
        .map(|_| ctl.cmd(&["apply"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn"))
        .collect();
    let outs: Vec<Output> = children.into_iter().map(|c| c.wait_with_output().expect("wait")).collect();
    for out in &outs {
        assert_eq!(out.status.code(), Some(0), "{}{}", stdout(out), stderr(out));
    }
    let all: String = outs.iter().map(|o| format!("{}{}", stdout(o), stderr(o))).collect();
    assert_eq!(all.matches(&format!("generation {live} -> ")).count(), 1, "exactly one builds:\n{all}");
    assert_eq!(all.matches("up to date").count(), 1, "the other waits, then finds nothing to do:\n{all}");
    let (next, marker) = ctl.assert_live_usable("after two concurrent applies");
    assert_eq!((next, marker.as_str()), (live + 1, "1"), "{all}");
    ctl.assert_clean("after two concurrent applies");
    figure(&format!(
        "sysrootctl concurrent: two applies of one change at once: both exit 0, one built generation {next}, the other \
         waited on the lock and found it up to date"
    ));
}
