//! Many entries at once from two users, and a long sequential soak against
//! chroot(8).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::common::*;
use super::{HostState, assert_no_leftovers, serial};
use test_support::{Removed, count_from_env, figure, uid_of};

fn meminfo_kib(field: &str) -> u64 {
    fs::read_to_string("/proc/meminfo")
        .expect("meminfo")
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix(" kB")?.parse().ok())
        .unwrap_or(0)
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
    let _cleanup = Removed(dir.clone());
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
