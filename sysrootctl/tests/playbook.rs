//! The `playbook` build key: an Ansible playbook run through Ansible's chroot
//! connection against each new generation, and in check mode against a
//! read-only view of the live one for `plan`. Real Ansible (Debian's
//! `ansible` package), real trees.

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use common::*;

/// What the happy path's playbook writes, and checks while it runs: /proc and
/// /dev as for the package tools, service starts blocked.
/// `connection: local` and `delegate_to: localhost` reach the tree all the same.
const PLAYBOOK: &str = r#"- hosts: all
  connection: local
  gather_facts: true
  tasks:
    - name: The tree's /proc, /dev and /sys, and service starts blocked
      ansible.builtin.shell: test -r /proc/self/status && test -c /dev/null && test -d /sys/kernel && { /usr/sbin/policy-rc.d cron start; test $? -eq 101; }
      changed_when: false
    - name: Write the playbook file
      ansible.builtin.copy:
        dest: /etc/isw-playbook
        content: "written by a playbook on {{ ansible_architecture }}\n"
        mode: "0644"
    - name: Write where ansible-playbook ran, delegated to localhost
      ansible.builtin.copy:
        dest: /etc/isw-playbook-delegated
        content: "{{ lookup('pipe', 'pwd') }} {{ lookup('env', 'HOME') }} {{ lookup('env', 'PATH') }}\n"
        mode: "0644"
      delegate_to: localhost
"#;

fn ansible_or_skip(test: &str) -> bool {
    root_or_skip(test) && have_tool(test, "ansible-playbook", "ansible")
}

/// A playbook directory of its own, root's and closed to others (the play runs as root).
fn project(s: &Scratch, text: &str) -> PathBuf {
    let book = s.write("book/site.yml", text);
    fs::set_permissions(s.path("book"), fs::Permissions::from_mode(0o755)).unwrap();
    book
}

fn declare(s: &Scratch, tree: &str, book: &Path) {
    s.config(
        "deb",
        "personality = \"linux32\"",
        &format!(
            "method = \"tarball\"\nsource = \"{}\"\nplaybook = \"{}\"\n",
            cached_tree(tree).display(),
            book.display()
        ),
    );
}

/// Happy path, no-op re-apply, drift found by plan's check, plan never
/// writing the live generation, a failed play publishing nothing.
#[test]
fn playbook_runs_in_the_new_generation_and_plan_checks_it_against_the_live_one() {
    let test = "playbook_runs_in_the_new_generation_and_plan_checks_it_against_the_live_one";
    if !ansible_or_skip(test) {
        return;
    }
    let s = Scratch::public("playbook");
    let book = project(&s, PLAYBOOK);
    declare(&s, "bullseye-i386-python", &book);

    // Files the play may read through a link to a directory, or in a hidden one.
    s.write("ext/vars.yml", "a: 1\n");
    symlink(s.path("ext"), s.path("book/inc")).unwrap();
    s.write("book/.shared/vars.yml", "b: 1\n");
    symlink(".", s.path("book/loop")).unwrap();

    // ansible-playbook from the fixed PATH, never one first on the caller's.
    let decoy = s.write("bin/ansible-playbook", &format!("#!/bin/sh\ntouch {}\n", s.path("decoy-ran").display()));
    fs::set_permissions(&decoy, fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", s.path("bin").display());
    let out = s.cmd(&["apply"]).env("PATH", path).env("HOME", "/nonexistent").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("task \"Write the playbook file\" changed"), "{text}");
    assert!(!s.path("decoy-ran").exists(), "the caller's PATH chose ansible-playbook");
    let tree = s.path("roots/deb");
    assert!(!Path::new("/etc/isw-playbook-delegated").exists() && !Path::new("/etc/isw-playbook").exists());
    let delegated = fs::read_to_string(tree.join("etc/isw-playbook-delegated")).unwrap();
    assert_eq!(
        delegated.trim(),
        format!("{} /root /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", s.path("book").display()),
        "ansible-playbook runs in the playbook's directory, with a fixed environment"
    );
    // linux32: the modules saw the tree's personality.
    assert_eq!(fs::read_to_string(tree.join("etc/isw-playbook")).unwrap(), "written by a playbook on i386\n");
    assert!(!tree.join("usr/sbin/policy-rc.d").exists(), "service starts unblocked after the play");
    assert_eq!(fs::read_dir(tree.join("tmp")).unwrap().count(), 0, "nothing of Ansible left in /tmp");
    assert!(!tree.join("root/.ansible").exists(), "nothing of Ansible left in /root");
    assert_eq!(s.live("deb"), Some(1));

    let out = s.expect(&["apply"], 0);
    assert!(out.contains("up to date, nothing changed (generation 1)"), "{out}");
    assert_eq!(s.live("deb"), Some(1));
    s.expect(&["plan"], 0);

    // The project is the playbook's directory, hidden entries aside.
    s.write("book/.git/HEAD", "ref: refs/heads/main\n");
    s.expect(&["plan"], 0);
    for (file, was) in
        [("book/files/notes.txt", None), ("ext/vars.yml", Some("a: 1\n")), ("book/.shared/vars.yml", Some("b: 1\n"))]
    {
        s.write(file, "changed\n");
        let out = s.expect(&["plan"], 2);
        assert!(out.contains("(new or changed since the live generation was built)"), "{file}: {out}");
        match was {
            Some(text) => drop(s.write(file, text)),
            None => fs::remove_dir_all(s.path(file).parent().unwrap()).unwrap(),
        }
        s.expect(&["plan"], 0);
    }

    // Drift in the live tree: plan's check mode sees it and leaves it.
    fs::write(tree.join("etc/isw-playbook"), "changed by hand\n").unwrap();
    let out = s.expect(&["plan"], 2);
    assert!(out.contains("task \"Write the playbook file\" would change"), "{out}");
    assert_eq!(fs::read_to_string(tree.join("etc/isw-playbook")).unwrap(), "changed by hand\n");
    let out = s.expect(&["apply"], 0);
    assert!(out.contains("generation 1 -> 2"), "{out}");
    assert_eq!(fs::read_to_string(s.path("roots/deb/etc/isw-playbook")).unwrap(), "written by a playbook on i386\n");

    // A changed playbook is pending even where check mode cannot see it (a
    // command is skipped in check mode), and plan never writes the live
    // generation, not even through a task that runs in check mode.
    // Nor the host's /dev through the tree's.
    let shm = format!("/dev/shm/isw-plan-{}", std::process::id());
    let writes = format!(
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: Write the host's /dev/shm\n      ansible.builtin.command: touch {shm}\n      check_mode: false\n      ignore_errors: true\n    - name: Write in check mode too\n      ansible.builtin.command: touch /etc/isw-written\n      check_mode: false\n"
    );
    fs::write(&book, writes).unwrap();
    let out = s.expect(&["plan"], 2);
    assert!(out.contains("(new or changed since the live generation was built)"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(!s.path("roots/deb/etc/isw-written").exists(), "plan wrote into the live generation");
    assert!(!Path::new(&shm).exists(), "plan wrote into the host's /dev/shm");

    // A failed play publishes nothing and leaves nothing behind.
    let fails = "- hosts: deb\n  gather_facts: false\n  tasks:\n    - name: Fails\n      ansible.builtin.command: ls /no/such/file\n";
    fs::write(&book, fails).unwrap();
    let out = s.expect(&["apply"], 1);
    assert!(
        out.contains("building generation 3 failed; generation 2 stays live: playbook")
            && out.contains("failed: task \"Fails\": non-zero return code: ls: cannot access '/no/such/file'"),
        "{out}"
    );
    assert_eq!(s.live("deb"), Some(2));
    assert_eq!(s.generations("deb"), ["1", "1.json", "2", "2.json"]);

    // The tmpfs goes on the tree's own /tmp, never where a link there points.
    let elsewhere = s.write("elsewhere/kept", "kept\n");
    fs::remove_dir_all(tree.join("tmp")).unwrap();
    symlink(s.path("elsewhere"), tree.join("tmp")).unwrap();
    let out = s.expect(&["plan"], 1);
    assert!(out.contains(&format!("{}/tmp is not a directory", s.path("store/deb/2").display())), "{out}");
    assert_eq!(fs::read_to_string(&elsewhere).unwrap(), "kept\n");
    s.assert_clean();
}

/// The chroot connection runs modules with the tree's Python: a tree
/// without it is refused in one line before anything of the play runs, and
/// nothing is published.
#[test]
fn a_tree_without_python_is_refused_before_the_play() {
    let test = "a_tree_without_python_is_refused_before_the_play";
    if !ansible_or_skip(test) {
        return;
    }
    let s = Scratch::public("playbook-nopython");
    let book = project(&s, PLAYBOOK);
    declare(&s, "busybox", &book);
    let out = s.run(&["apply"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| !l.contains(" ...") && !l.contains(" done (")).collect();
    assert_eq!(
        errors,
        [format!(
            "sysrootctl: deb: building generation 1 failed; nothing was published: playbook {}: the tree has no \
             /usr/bin/python3, which Ansible's chroot connection runs the modules with (add \"python3\" to packages)",
            book.display()
        )]
    );
    assert_eq!(s.live("deb"), None);
    assert!(s.generations("deb").is_empty(), "{:?}", s.generations("deb"));

    // A live generation without Python cannot be checked: the play is pending.
    s.config("deb", "", &format!("method = \"tarball\"\nsource = \"{}\"\n", cached_tree("busybox").display()));
    s.expect(&["apply"], 0);
    declare(&s, "busybox", &book);
    let out = s.expect(&["plan"], 2);
    assert!(out.contains("not checked, the live generation has no /usr/bin/python3"), "{out}");

    s.assert_clean();
}

/// The play runs as root: a playbook, its directory, a directory above it,
/// anything in it, or what a link in it points to, that a user could change,
/// is refused before it runs; so is a directory too big to be its project.
#[test]
fn playbooks_others_could_change_never_run() {
    let test = "playbooks_others_could_change_never_run";
    if !ansible_or_skip(test) {
        return;
    }
    let s = Scratch::public("playbook-trust");
    let nobody = nix::unistd::User::from_name("nobody").unwrap().expect("user nobody").uid.as_raw();
    type Setup = fn(&Scratch, u32);
    let rows: [(&str, Setup, &str); 8] = [
        (
            "a directory above it writable by group",
            |s, _| fs::set_permissions(&s.dir, fs::Permissions::from_mode(0o775)).unwrap(),
            "playbook-trust",
        ),
        (
            "directory writable by group",
            |s, _| fs::set_permissions(s.path("book"), fs::Permissions::from_mode(0o775)).unwrap(),
            "book: writable by group or others (mode 0775)",
        ),
        (
            "playbook owned by a user",
            |s, u| std::os::unix::fs::chown(s.path("book/site.yml"), Some(u), None).unwrap(),
            "site.yml: owned by uid",
        ),
        (
            "a role file owned by a user",
            |s, u| {
                s.write("book/roles/r/tasks/main.yml", "- ansible.builtin.debug: {}\n");
                std::os::unix::fs::chown(s.path("book/roles/r/tasks/main.yml"), Some(u), None).unwrap()
            },
            "main.yml: owned by uid",
        ),
        (
            "a link to a file a user owns",
            |s, u| {
                let vars = s.write("elsewhere/vars.yml", "a: 1\n");
                std::os::unix::fs::chown(&vars, Some(u), None).unwrap();
                symlink(&vars, s.path("book/vars.yml")).unwrap();
            },
            "vars.yml: owned by uid",
        ),
        (
            "a file a user owns in a directory a link points to",
            |s, u| {
                let tasks = s.write("elsewhere/tasks.yml", "- ansible.builtin.debug: {}\n");
                std::os::unix::fs::chown(&tasks, Some(u), None).unwrap();
                symlink(s.path("elsewhere"), s.path("book/inc")).unwrap();
            },
            "inc/tasks.yml: owned by uid",
        ),
        (
            "a hidden directory a user owns",
            |s, u| {
                s.write("book/.shared/tasks.yml", "- ansible.builtin.debug: {}\n");
                std::os::unix::fs::chown(s.path("book/.shared"), Some(u), None).unwrap();
                fs::set_permissions(s.path("book/.shared"), fs::Permissions::from_mode(0o777)).unwrap();
            },
            ".shared: owned by uid",
        ),
        (
            "a directory that is not a project of its own",
            |s, _| (0..10_001).for_each(|i| drop(fs::File::create(s.path(&format!("book/f{i}"))).unwrap())),
            "has more than 10000 entries: keep the playbook in a directory of its own",
        ),
    ];
    for (what, setup, want) in rows {
        let _ = fs::remove_dir_all(s.path("book"));
        let _ = fs::remove_dir_all(s.path("elsewhere"));
        let book = project(&s, PLAYBOOK);
        setup(&s, nobody);
        declare(&s, "busybox", &book);
        let out = s.expect(&["apply"], 1);
        fs::set_permissions(&s.dir, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(out.contains(want), "{what}: {out}");
        assert!(out.contains("nothing was published"), "{what}: {out}");
        assert_eq!(s.live("deb"), None, "{what}");
    }
    s.assert_clean();
}

fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

/// sysrootctl ends what it started and nothing else: a user's processes in
/// the live generation, entered the way imageswitch enters it (the tree
/// bound onto itself in a private mount namespace, then chroot) or by a plain
/// chroot into its store path, outlive `plan`, `status`, a no-op `apply` and
/// `shell`; what `shell` left running ends with it.
#[test]
fn processes_sysrootctl_did_not_start_outlive_every_verb() {
    let test = "processes_sysrootctl_did_not_start_outlive_every_verb";
    if !ansible_or_skip(test) {
        return;
    }
    let _accounts = host_accounts();
    let user = HostUser::create("iswplaykeep");
    let uid = nix::unistd::User::from_name(&user.name).unwrap().expect("user").uid.as_raw();
    let s = Scratch::public("playbook-keep");
    let book = project(&s, PLAYBOOK);
    declare(&s, "bullseye-i386-python", &book);
    s.expect(&["apply"], 0);
    let live = s.path("roots/deb");
    let spec = format!("--userspec={uid}:{uid}");
    let entered = format!("mount --bind {t} {t} && cd {t} && exec chroot {spec} . /bin/sleep 600", t = live.display());
    let mut sessions = [
        std::process::Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &entered])
            .spawn()
            .unwrap(),
        std::process::Command::new("chroot")
            .arg(&spec)
            .arg(s.path("store/deb/1"))
            .args(["/bin/sleep", "601"])
            .spawn()
            .unwrap(),
    ];
    let pids: Vec<u32> = sessions.iter().map(|c| c.id()).collect();
    wait_for("the sessions to enter the tree", std::time::Duration::from_secs(30), || {
        pids.iter().all(|&p| fs::read_link(format!("/proc/{p}/root")).is_ok_and(|r| r.starts_with(&s.dir)))
    });

    for (args, code) in [(&["plan"][..], 0), (&["status"], 0), (&["apply"], 0), (&["shell", "deb", "--", "true"], 0)] {
        s.expect(args, code);
        for &pid in &pids {
            assert!(alive(pid), "sysrootctl {args:?} killed {pid}, which it did not start");
        }
    }
    assert_eq!(s.live("deb"), Some(1));

    // What shell started ends with it, left running in the background or not.
    s.expect(&["shell", "deb", "--", "sh", "-c", "/bin/sleep 602 & exit 0"], 0);
    let left: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
    assert_eq!(left, pids);
    let others: Vec<String> = fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| fs::read_to_string(e.path().join("cmdline")).is_ok_and(|c| c == "/bin/sleep\x00602\x00"))
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert!(others.is_empty(), "shell's background job outlived it: {others:?}");

    for session in &mut sessions {
        let _ = session.kill();
        let _ = session.wait();
    }
    s.assert_clean();
}

/// The play runs as root with a fixed environment: a caller's HOME,
/// PYTHONPATH or ANSIBLE_* naming a user's files (sudo -E) never loads their
/// code, on `plan` or `apply`.
#[test]
fn the_callers_environment_never_reaches_the_play() {
    let test = "the_callers_environment_never_reaches_the_play";
    if !ansible_or_skip(test) {
        return;
    }
    let _accounts = host_accounts();
    let user = HostUser::create("iswplayenv");
    let s = Scratch::public("playbook-env");
    let home = PathBuf::from(format!("/home/{}", user.name));
    let pwned = s.path("pwned");
    let code = format!("import os\nopen('{}', 'a').write('uid %d\\n' % os.getuid())\n", pwned.display());
    let plugin = format!(
        "{code}from ansible.plugins.vars import BaseVarsPlugin\nclass VarsModule(BaseVarsPlugin):\n    REQUIRES_ENABLED = False\n    def get_vars(self, loader, path, entities, cache=True):\n        return {{}}\n"
    );
    let files = [
        (".ansible/plugins/vars/home.py", plugin.as_str()),
        ("vars/env.py", plugin.as_str()),
        ("py/sitecustomize.py", code.as_str()),
        ("ansible.cfg", "[defaults]\nvars_plugins = ~/vars\n"),
    ];
    for (rel, text) in files {
        let out = std::process::Command::new("runuser")
            .args(["-u", &user.name, "--", "sh", "-c", "mkdir -p \"$(dirname \"$1\")\" && cat >\"$1\"", "-"])
            .arg(home.join(rel))
            .stdin(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(text.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        assert!(out.status.success(), "{rel}");
    }
    let book = project(&s, PLAYBOOK);
    declare(&s, "bullseye-i386-python", &book);
    let hostile = |cmd: &mut std::process::Command| {
        cmd.env("HOME", &home)
            .env("PYTHONPATH", home.join("py"))
            .env("ANSIBLE_VARS_PLUGINS", home.join("vars"))
            .env("ANSIBLE_CONFIG", home.join("ansible.cfg"));
    };
    for (args, code) in [(&["plan"][..], 2), (&["apply"], 0), (&["plan"], 0)] {
        let mut cmd = s.cmd(args);
        hostile(&mut cmd);
        let out = cmd.output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(code), "{args:?}: {text}");
        assert!(!pwned.exists(), "{args:?}: a user's code ran: {}", fs::read_to_string(&pwned).unwrap_or_default());
    }
    // The same files do run when the play is told to load them: the rows are live.
    let mut probe = std::process::Command::new("ansible-playbook");
    hostile(&mut probe);
    let probe = probe.args(["-i", "localhost,", "-c", "local"]).arg(&book).arg("--syntax-check").output().unwrap();
    assert!(probe.status.success(), "{}", String::from_utf8_lossy(&probe.stderr));
    assert!(pwned.exists(), "the hostile files are not loaded even when asked to");
    s.assert_clean();
}
