//! Signal and ptrace races against the privileged stretch of an entry
//! (THREATS.md rows 16 and 14).

use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::common::*;
use super::{HostState, assert_no_leftovers, serial, user_program};
use test_support::{Removed, Rng, count_from_env, figure, fnv1a};

#[test]
fn row16_signal_races() {
    require_root!();
    let _serial = serial();
    fixture();
    let runs = count_from_env("IMGSW_REL_SIGNAL_RUNS", 500);
    let mut rng = Rng::from_env("row16_signal_races");
    let cwd = user_tmpdir(ALICE, "rel-signal");
    let _cleanup = Removed(cwd.clone());
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
    // Static and non-PIE: its marker variable sits at the same address in
    // every process made from it, and the busybox tree (no libc) can run it.
    let helper = user_program("race", &["-static", "-no-pie"], ALICE);
    let dir = helper.parent().expect("dir").to_path_buf();
    let _cleanup = Removed(dir.clone());
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
