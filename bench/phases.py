#!/usr/bin/env python3
"""Marks each step of one entry in a scratch copy of imageswitch's source.

bench/phases.sh copies src/ to a scratch directory and runs this on it: a
`phase::mark("NAME")` call goes after each step of the entry sequence, and
`phase::dump()` just before the exec writes one `phase NAME MICROSECONDS`
line per step to standard error (the time since the mark before, from the
monotonic clock; nothing at all unless built with ISW_PHASES set). The
checkout is never changed. Every anchor is an exact line of the source: when
one is gone, this stops and says which, rather than measure something else.
"""
import sys
from pathlib import Path

SRC = Path(sys.argv[1])

PHASE_RS = '''//! Step timing for bench/phases.sh (a scratch build only; never shipped).
use std::sync::Mutex;
use std::time::Instant;
static MARKS: Mutex<Vec<(&'static str, Instant)>> = Mutex::new(Vec::new());
pub fn mark(step: &'static str) {
    if option_env!("ISW_PHASES").is_some() {
        if let Ok(mut marks) = MARKS.lock() {
            marks.push((step, Instant::now()));
        }
    }
}
pub fn dump() {
    if let Ok(marks) = MARKS.lock() {
        for pair in marks.windows(2) {
            eprintln!("phase {} {:.1}", pair[1].0, (pair[1].1 - pair[0].1).as_secs_f64() * 1e6);
        }
    }
}
'''


def edit(path, anchor, new):
    file = SRC / path
    text = file.read_text()
    if anchor not in text:
        sys.exit(f"bench/phases.py: {path}: anchor not found: {anchor.strip()[:70]}")
    file.write_text(text.replace(anchor, new, 1))


def after(path, anchor, step, indent="    "):
    edit(path, anchor, f'{anchor}\n{indent}crate::phase::mark("{step}");')


def before(path, anchor, step, indent="    "):
    edit(path, anchor, f'{indent}crate::phase::mark("{step}");\n{anchor}')


(SRC / "phase.rs").write_text(PHASE_RS)
edit("lib.rs", "pub mod access;", "pub mod phase;\npub mod access;")
edit("run.rs", "pub fn main() -> i32 {\n", 'pub fn main() -> i32 {\n    crate::phase::mark("start");\n')
before("run.rs", "        let argv: Vec<OsString> = std::env::args_os().collect();", "harden", "        ")
after("run.rs", "        let caller_env = carryover::caller_environment(&argv);", "environment", "        ")
for anchor, step in [
    ("kernel.check_self()?;", "self-check"),
    ("let caller = kernel.resolve_caller()?;", "caller (NSS)"),
    ("let config = kernel.load_config()?;", "configuration"),
    ("let sysroot = config.sysroot(&name).ok_or_else(|| Error::UnknownName(name.clone()))?;", "dispatch, access"),
    ("let cwd = kernel.current_directory(&caller, caller_env, &personal::host_file_paths(sysroot, &config.defaults))?;",
     "working directory, host files (as caller)"),
    ("let personal = kernel.prepare_personal(&caller, sysroot, &config.defaults);", "script, personal view"),
    ("own_mounts.extend(personal.run_user.as_deref().map(personal::run_user_spec));", "split shared/own binds"),
    ("kernel.chroot_into_tree()?;", "private copy, own binds, chroot"),
    ("kernel.set_personality(plan.sysroot.personality)?;", "personality"),
    ("kernel.drop_privileges(plan.caller)?;", "identity drop"),
    ("kernel.verify_dropped(plan.caller)?;", "verification"),
    ("let cwd = enter_directory(kernel, plan)?;", "directory in the tree"),
    ("let env = child_environment(plan.caller_env, &who);", "environment for the command"),
]:
    after("run.rs", anchor, step)
edit("run.rs",
     "        kernel.audit(socket, Severity::Info, &audit::entry(&caller, &sysroot.name, &command, &cwd.physical));\n    }",
     "        kernel.audit(socket, Severity::Info, &audit::entry(&caller, &sysroot.name, &command, &cwd.physical));\n    }\n"
     '    crate::phase::mark("audit record");')
before("run.rs", "    match view {\n        View::PerEntry", "pinned view joined (rest)")
edit("run.rs", "    Err(kernel.exec(&launch, &env))",
     '    crate::phase::mark("command found");\n    crate::phase::dump();\n    Err(kernel.exec(&launch, &env))')
real = "run/real.rs"
for anchor, step in [
    ("let Ok(tree) = trusted::open_trusted(&sysroot.path, Kind::Directory) else { return Ok(View::PerEntry) };",
     "pin: tree opened"),
    ("        if trusted::check_tree_entries(&tree).is_err() {\n            return Ok(View::PerEntry);\n        }",
     "pin: tree's entries checked"),
    ("let Ok(made) = personal::account_files(&tree, &sysroot.name, personal) else { return Ok(View::PerEntry) };",
     "pin: tree's passwd, group (and caller's lines)"),
    ("            _ => personal::host_files(personal, uid, gid),\n        };", "pin: host files taken"),
    ("        let ns = pin::find_or_build(&request, uid, gid, everybody);", "pin: found"),
    ("        if (!made.is_empty() && home.is_none()) || pin::join(&ns).is_err() {\n"
     "            self.made = Some(made);\n            return Ok(View::PerEntry);\n        }", "pin: joined (setns)"),
]:
    after(real, anchor, step, "        ")
after("pin.rs", "    let dir = open_pin_dir()?;", "pin: directory opened")
after("pin.rs", "    let name = key(req, uid)?;", "pin: key")
