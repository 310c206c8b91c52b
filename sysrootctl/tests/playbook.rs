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
        content: "{{ lookup('pipe', 'pwd') }}\n"
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

    // The first ansible-playbook on PATH runs the play.
    let wrapper = s.write(
        "bin/ansible-playbook",
        &format!(
            "#!/bin/sh\n{{ echo \"$@\"; env | grep -E '^(ANSIBLE_|LC_ALL=)' | sort; }} >>{}\nexec /usr/bin/ansible-playbook \"$@\"\n",
            s.path("used").display()
        ),
    );
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", s.path("bin").display(), std::env::var("PATH").unwrap_or_default());
    let out = s.cmd(&["apply"]).env("PATH", path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("task \"Write the playbook file\" changed"), "{text}");
    let used = fs::read_to_string(s.path("used")).unwrap();
    for want in [
        "-c community.general.chroot",
        "ANSIBLE_STDOUT_CALLBACK=ansible.posix.json",
        "ANSIBLE_PIPELINING=true",
        "ANSIBLE_REMOTE_TMP=/tmp",
        "LC_ALL=C.UTF-8",
    ] {
        assert!(used.contains(want), "{want} not in:\n{used}");
    }
    let tree = s.path("roots/deb");
    assert!(!Path::new("/etc/isw-playbook-delegated").exists() && !Path::new("/etc/isw-playbook").exists());
    let cwd = fs::read_to_string(tree.join("etc/isw-playbook-delegated")).unwrap();
    assert_eq!(cwd.trim(), s.path("book").to_str().unwrap(), "ansible-playbook runs in the playbook's directory");
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
    s.write("book/files/notes.txt", "not used by the play\n");
    let out = s.expect(&["plan"], 2);
    assert!(out.contains("(new or changed since the live generation was built)"), "{out}");
    fs::remove_dir_all(s.path("book/files")).unwrap();
    s.expect(&["plan"], 0);

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
    let writes = "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: Write in check mode too\n      ansible.builtin.command: touch /etc/isw-written\n      check_mode: false\n";
    fs::write(&book, writes).unwrap();
    let out = s.expect(&["plan"], 2);
    assert!(out.contains("(new or changed since the live generation was built)"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(!s.path("roots/deb/etc/isw-written").exists(), "plan wrote into the live generation");

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

    // The host needs ansible-playbook on PATH.
    let out = s.cmd(&["plan"]).env("PATH", "/usr/sbin:/sbin").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no ansible-playbook on PATH: the playbook key needs Ansible with the community.general and ansible.posix collections (Debian's package \"ansible\""), "{stderr}");
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
    let rows: [(&str, Setup, &str); 6] = [
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
