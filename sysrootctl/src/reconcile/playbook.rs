//! The `playbook` key: an Ansible playbook run against each new generation,
//! last of the tree steps (after packages, services, users, overlays and
//! links), before the generation is verified and published.
//!
//! Ansible runs the play itself, through its `chroot` connection
//! (community.general.chroot): `ansible-playbook`, found on a fixed PATH and
//! run with a cleared environment (HOME=/root), runs on the host inside the namespace helper ([`crate::namespace::around_tree`]),
//! which prepares the tree as for the package tools (devices, `/sys`, a fresh
//! `/proc`, the personality) and puts an empty tmpfs on its `/tmp`; service
//! starts are blocked as for packages. The modules run with the tree's own
//! Python.
//!
//! Idempotence: a generation's record keeps the digest of the playbook's
//! project (its directory: the playbook, roles, templates, vars). `plan` runs
//! the play in check mode against a read-only view of the live generation;
//! nothing is pending when the digest is the live generation's and the check
//! reports no task that would change. `apply` runs it in full on every new
//! generation.
#![forbid(unsafe_code)]

use std::os::unix::ffi::OsStrExt;

use anyhow::anyhow;
use imageswitch::trusted::{self, Kind};
use serde_json::Value;

use super::*;

/// The interpreter the modules run with, inside the tree.
const PYTHON: &str = "/usr/bin/python3";
/// More entries than this in a playbook's directory: not a project of its own.
const MAX_PROJECT_ENTRIES: usize = 10_000;
const CONNECTION: &str = "community.general.chroot";

/// How a run of the play ended.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// It ran to the end: the tasks that changed (in check mode: would).
    Done(Vec<String>),
    /// A task failed: which, and why.
    Failed(String),
}

pub(super) fn playbook(ctx: &mut Ctx<'_>) -> Result<Vec<Change>> {
    let Some(book) = ctx.build.playbook.clone() else { return Ok(Vec::new()) };
    let shown = book.display().to_string();
    let exe = ansible_playbook()?;
    let digest = project_digest(&book).with_context(|| format!("playbook {shown}"))?;
    let has_python = in_tree(&ctx.tree, Path::new(PYTHON), true)?.is_file();
    if !ctx.apply {
        let check = if has_python { Some(run(ctx, &exe, &book, true)?) } else { None };
        return Ok(pending(&book, ctx.prev.playbook != digest, check.as_ref()));
    }
    if !has_python {
        bail!(
            "playbook {shown}: the tree has no {PYTHON}, which Ansible's chroot connection runs the modules with (add \"python3\" to packages)"
        );
    }
    let phase = Phase::start(ctx.name(), format!("run playbook {shown}"), ctx.verbosity);
    let outcome = runner::with_services_blocked(&ctx.tree, || run(ctx, &exe, &book, false))?;
    let tasks = match outcome {
        Outcome::Done(tasks) => tasks,
        Outcome::Failed(why) => bail!("playbook {shown} failed: {why}"),
    };
    phase.done();
    ctx.record.playbook = digest;
    let mut changes =
        vec![Change::new("run_playbook", format!("run playbook {shown}: {} task(s) changed", tasks.len())).path(&book)];
    changes.extend(tasks.iter().map(|t| task(&book, t, "changed")));
    Ok(changes)
}

/// What is pending, from what plan saw of the live generation: whether the
/// project changed since it was built, and the check run (`None`: the tree
/// has no Python to run it with).
fn pending(book: &Path, changed: bool, check: Option<&Outcome>) -> Vec<Change> {
    let shown = book.display();
    let run = |reason, text: String| Change::new("run_playbook", text).path(book).reason(reason);
    let mut changes = Vec::new();
    if changed {
        changes.push(run(
            "playbook_changed",
            format!("run playbook {shown} (new or changed since the live generation was built)"),
        ));
    }
    match check {
        None => changes
            .push(run("not_checked", format!("playbook {shown}: not checked, the live generation has no {PYTHON}"))),
        Some(Outcome::Done(tasks)) => changes.extend(tasks.iter().map(|t| task(book, t, "would change"))),
        Some(Outcome::Failed(why)) => changes.push(run(
            "check_failed",
            format!("playbook {shown}: its check against the live generation failed: {why}"),
        )),
    }
    changes
}

/// A task of the play that changed (or would): its name in `names`.
fn task(book: &Path, name: &str, what: &str) -> Change {
    Change::new("playbook_task", format!("playbook {}: task \"{name}\" {what}", book.display()))
        .path(book)
        .names(&[name.to_string()])
}

/// The first `ansible-playbook` on the fixed PATH sysrootctl runs it with
/// (never the caller's: the play runs as root).
fn ansible_playbook() -> Result<PathBuf> {
    find_on(runner::PATH, "ansible-playbook").with_context(|| {
        format!(
            "no ansible-playbook on {}: the playbook key needs Ansible with the community.general and ansible.posix \
             collections (Debian's package \"ansible\", or PyPI's \"ansible\"; ansible-core alone lacks them)",
            runner::PATH
        )
    })
}

fn find_on(path: &str, program: &str) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0))
}

/// Runs the play against the tree; `check`: in check mode, against a
/// read-only view of it.
fn run(ctx: &Ctx<'_>, exe: &Path, book: &Path, check: bool) -> Result<Outcome> {
    let target = serde_json::json!({
        "ansible_connection": CONNECTION,
        "ansible_host": ctx.tree,
        "ansible_python_interpreter": PYTHON,
    });
    let mut cmd = crate::namespace::around_tree(&ctx.tree, ctx.linux32(), check, exe);
    cmd.arg("-i").arg(format!("{},", ctx.name())).args(["-c", CONNECTION, "-e"]).arg(target.to_string());
    if check {
        cmd.args(["--check", "--diff"]);
    }
    // Nothing of the caller's environment: a HOME, ANSIBLE_* or PYTHONPATH
    // naming a user's files would load their plugins into the play as root.
    cmd.arg(book)
        .current_dir(book.parent().unwrap_or(Path::new("/")))
        .env_clear()
        .env("PATH", runner::PATH)
        .env("HOME", "/root")
        .env("LANG", "C.UTF-8")
        .env("ANSIBLE_STDOUT_CALLBACK", "ansible.posix.json")
        .env("ANSIBLE_PIPELINING", "true")
        .env("ANSIBLE_REMOTE_TMP", "/tmp")
        .env("ANSIBLE_RETRY_FILES_ENABLED", "false")
        .env("ANSIBLE_NOCOLOR", "true")
        .env("LC_ALL", "C.UTF-8")
        .stdin(std::process::Stdio::null());
    if ctx.verbosity.0 >= 3 {
        eprintln!("sysrootctl: + {}", crate::namespace::shown(&cmd));
    }
    let out = cmd.output().with_context(|| format!("cannot run {}", exe.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if ctx.verbosity.passthrough() {
        eprint!("{stderr}");
    }
    let report: Option<Value> = serde_json::from_slice(&out.stdout).ok();
    match report.as_ref().map(|r| outcome(r, ctx.name())) {
        Some(Ok(outcome)) if out.status.success() || matches!(outcome, Outcome::Failed(_)) => {
            if ctx.verbosity.passthrough() {
                if let Outcome::Done(tasks) = &outcome {
                    tasks.iter().for_each(|t| eprintln!("sysrootctl: {}: playbook task \"{t}\" changed", ctx.name()));
                }
            }
            Ok(outcome)
        }
        Some(Err(err)) => Err(err),
        _ => {
            let errors: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).take(3).collect();
            bail!("ansible-playbook failed ({}): {}", out.status, errors.join(" "))
        }
    }
}

/// What the `ansible.posix.json` callback's report says of the one host:
/// the tasks that changed, or the task that failed. A tree Ansible could not
/// reach is an error, not a failed play (the connection plugin is missing,
/// say).
fn outcome(report: &Value, host: &str) -> Result<Outcome> {
    let mut changed = Vec::new();
    let mut failed = None;
    let tasks =
        report["plays"].as_array().into_iter().flatten().flat_map(|p| p["tasks"].as_array().into_iter().flatten());
    for task in tasks {
        let name = task["task"]["name"].as_str().unwrap_or("(unnamed)");
        let result = &task["hosts"][host];
        if result["unreachable"] == true {
            bail!("Ansible cannot reach the tree: {}", message(result));
        }
        if result["failed"] == true {
            failed = Some(format!("task \"{name}\": {}", message(result)));
        } else if result["changed"] == true {
            changed.push(name.to_string());
        }
    }
    let stats = &report["stats"][host];
    if stats["unreachable"].as_u64().unwrap_or(0) > 0 {
        bail!("Ansible cannot reach the tree");
    }
    if stats["failures"].as_u64().unwrap_or(0) > 0 {
        return Ok(Outcome::Failed(failed.unwrap_or_else(|| "a task failed".to_string())));
    }
    Ok(Outcome::Done(changed))
}

/// A task result's message on one line: `msg`, and the last line of the
/// command's stderr when there is one.
fn message(result: &Value) -> String {
    let msg = result["msg"].as_str().unwrap_or("").lines().next().unwrap_or("").trim();
    let stderr = result["stderr"].as_str().unwrap_or("").lines().last().unwrap_or("").trim();
    let mut text = match (msg.is_empty(), stderr.is_empty()) {
        (_, true) => msg.to_string(),
        (true, false) => stderr.to_string(),
        (false, false) => format!("{msg}: {stderr}"),
    };
    if text.chars().count() > 300 {
        text = text.chars().take(300).collect::<String>() + "...";
    }
    text
}

fn fnv(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The digest of the playbook's project: every entry of its directory, hidden
/// ones too, and of every directory a link in it points to (names, contents,
/// link targets), but for `.git` directories (Git's own records, which a play
/// never reads). The play runs as root, so the playbook, its directory, every
/// directory above it and every entry in it must be root's and not writable
/// by group or others, and what a link in it points to is checked the same
/// way, and walked into when it is a directory.
fn project_digest(book: &Path) -> Result<String> {
    let untrusted = |(at, why): (PathBuf, String)| anyhow!("{}: {why} (a playbook runs as root)", at.display());
    trusted::open_trusted(book, Kind::File).map_err(untrusted)?;
    let dir = book.parent().context("no directory")?;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut seen = 0;
    let mut walked = std::collections::HashSet::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let here = dir.join(&rel);
        let meta = fs::metadata(&here).with_context(|| format!("cannot read {}", here.display()))?;
        if !walked.insert((meta.dev(), meta.ino())) {
            continue;
        }
        let mut names: Vec<_> = fs::read_dir(&here)
            .with_context(|| format!("cannot read {}", here.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        for name in names {
            seen += 1;
            if seen > MAX_PROJECT_ENTRIES {
                bail!(
                    "{} has more than {MAX_PROJECT_ENTRIES} entries: keep the playbook in a directory of its own",
                    dir.display()
                );
            }
            let rel = rel.join(name);
            let path = dir.join(&rel);
            let meta = fs::symlink_metadata(&path)?;
            if meta.is_dir() && rel.file_name() == Some(std::ffi::OsStr::new(".git")) {
                continue;
            }
            let st = nix::sys::stat::lstat(&path)?;
            if let Some(why) = trusted::untrusted_reason(&st) {
                return Err(untrusted((path, why)));
            }
            hash = fnv(fnv(hash, rel.as_os_str().as_bytes()), b"\0");
            if meta.file_type().is_symlink() {
                let kind = if path.is_dir() { Kind::Directory } else { Kind::File };
                trusted::open_trusted(&path, kind).map_err(untrusted)?;
                hash = fnv(hash, fs::read_link(&path)?.as_os_str().as_bytes());
                if kind == Kind::File {
                    hash = fnv(hash, &fs::read(&path)?);
                } else {
                    pending.push(rel);
                }
            } else if meta.is_dir() {
                pending.push(rel);
            } else {
                hash = fnv(hash, &fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?);
            }
            hash = fnv(hash, b"\0");
        }
    }
    Ok(format!("{hash:016x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(tasks: Value, stats: Value) -> Value {
        serde_json::json!({ "plays": [{ "play": { "name": "p" }, "tasks": tasks }], "stats": { "deb": stats } })
    }

    fn task(name: &str, result: Value) -> Value {
        serde_json::json!({ "task": { "name": name }, "hosts": { "deb": result } })
    }

    #[test]
    fn the_json_report_says_what_changed_or_which_task_failed() {
        let ok = serde_json::json!({ "changed": 0, "failures": 0, "unreachable": 0 });
        let rows = [
            (report(serde_json::json!([]), ok.clone()), Outcome::Done(vec![])),
            (
                report(
                    serde_json::json!([
                        task("Gathering Facts", serde_json::json!({ "changed": false })),
                        task("Write the release file", serde_json::json!({ "changed": true })),
                        task("A command", serde_json::json!({ "changed": false, "skipped": true })),
                    ]),
                    serde_json::json!({ "changed": 1, "failures": 0, "unreachable": 0 }),
                ),
                Outcome::Done(vec!["Write the release file".to_string()]),
            ),
            (
                report(
                    serde_json::json!([
                        task("Ignored", serde_json::json!({ "failed": true, "msg": "ignored" })),
                        task(
                            "Fails",
                            serde_json::json!({ "failed": true, "changed": true, "msg": "non-zero return code", "stderr": "a\nno such file" })
                        ),
                    ]),
                    serde_json::json!({ "changed": 0, "failures": 1, "unreachable": 0 }),
                ),
                Outcome::Failed("task \"Fails\": non-zero return code: no such file".to_string()),
            ),
            (
                report(
                    serde_json::json!([task("Ignored", serde_json::json!({ "failed": true, "msg": "ignored" }))]),
                    serde_json::json!({ "changed": 0, "failures": 0, "ignored": 1, "unreachable": 0 }),
                ),
                Outcome::Done(vec![]),
            ),
        ];
        for (report, want) in rows {
            assert_eq!(outcome(&report, "deb").unwrap(), want, "{report}");
        }
        let unreachable = report(
            serde_json::json!([task(
                "Gathering Facts",
                serde_json::json!({ "unreachable": true, "msg": "the connection plugin 'community.general.chroot' was not found" })
            )]),
            serde_json::json!({ "changed": 0, "failures": 0, "unreachable": 1 }),
        );
        let err = outcome(&unreachable, "deb").unwrap_err().to_string();
        assert_eq!(
            err,
            "Ansible cannot reach the tree: the connection plugin 'community.general.chroot' was not found"
        );
    }

    #[test]
    fn pending_is_a_changed_project_or_what_the_check_saw() {
        let done = |tasks: &[&str]| Outcome::Done(tasks.iter().map(|t| t.to_string()).collect());
        let rows: [(bool, Option<Outcome>, &[&str]); 6] = [
            (false, Some(done(&[])), &[]),
            (true, Some(done(&[])), &["run playbook p (new or changed since the live generation was built)"]),
            (false, Some(done(&["Write"])), &["playbook p: task \"Write\" would change"]),
            (false, None, &["playbook p: not checked, the live generation has no /usr/bin/python3"]),
            (
                true,
                None,
                &[
                    "run playbook p (new or changed since the live generation was built)",
                    "playbook p: not checked, the live generation has no /usr/bin/python3",
                ],
            ),
            (
                false,
                Some(Outcome::Failed("task \"X\": boom".to_string())),
                &["playbook p: its check against the live generation failed: task \"X\": boom"],
            ),
        ];
        for (changed, check, want) in rows {
            let got: Vec<String> =
                pending(Path::new("p"), changed, check.as_ref()).iter().map(|c| c.text.clone()).collect();
            assert_eq!(got, want, "{changed} {check:?}");
        }
        let typed = pending(Path::new("/b/site.yml"), true, Some(&done(&["Write"])));
        assert_eq!(
            (typed[0].kind, typed[0].reason, typed[0].path.as_deref()),
            ("run_playbook", Some("playbook_changed"), Some("/b/site.yml"))
        );
        assert_eq!((typed[1].kind, typed[1].names.clone()), ("playbook_task", vec!["Write".to_string()]));
    }

    #[test]
    fn ansible_playbook_is_found_on_the_fixed_path_only() {
        assert_eq!(find_on("/nonexistent:/usr/sbin", "ansible-playbook"), None);
        assert_eq!(find_on("/nonexistent:/bin", "sh"), Some(PathBuf::from("/bin/sh")));
        assert_eq!(find_on("/", "etc"), None, "a directory is no program");
        assert!(runner::PATH.split(':').all(|d| d.starts_with('/')));
    }

    #[test]
    fn long_messages_are_one_bounded_line() {
        let long = "x".repeat(1000);
        let text = message(&serde_json::json!({ "msg": format!("{long}\nsecond line") }));
        assert_eq!(text.chars().count(), 303);
        assert!(!text.contains('\n'));
    }
}
