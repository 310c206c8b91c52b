//! `sysrootctl mount` / `umount`: the tree's binds in the host namespace, for
//! tools that chroot on their own (Torque's `qsub -D`), made and removed
//! idempotently, with imageswitch's flags.

mod common;

use std::fs;
use std::process::Command;
use std::sync::Mutex;

use common::*;

/// Both tests compare the whole host mount table: one at a time.
static HOST_MOUNTS: Mutex<()> = Mutex::new(());

/// Pass or fail, nothing stays mounted under a test's scratch directory.
struct UnmountBelow(std::path::PathBuf);

impl Drop for UnmountBelow {
    fn drop(&mut self) {
        let dir = self.0.display().to_string();
        for (point, _) in mount_table().into_iter().rev().filter(|(p, _)| p.starts_with(&dir)) {
            let _ = Command::new("umount").arg("-l").arg(&point).status();
        }
    }
}

/// (mount point, options) of each line of the host's mount table.
fn mount_table() -> Vec<(String, String)> {
    test_support::mountinfo::own().into_iter().map(|m| (m.point, m.options)).collect()
}

#[test]
fn mount_and_umount_are_idempotent_and_carry_imageswitchs_flags() {
    if !root_or_skip("mount_and_umount_are_idempotent_and_carry_imageswitchs_flags") {
        return;
    }
    let _serial = HOST_MOUNTS.lock().unwrap_or_else(|p| p.into_inner());
    let s = Scratch::public("hostmount");
    let tree = s.path("tree");
    let status = Command::new("cp").arg("-a").arg(cached_tree("busybox")).arg(&tree).status().expect("cp");
    assert!(status.success());
    s.write(
        "sysroots.toml",
        &format!(
            "[defaults]\nbinds = [\"/home\", \"/tmp\"]\nlog_socket = \"\"\n[sysroot.bb]\npath = \"{}\"\n",
            tree.display()
        ),
    );
    let before = mount_table();

    let first = s.expect(&["mount", "bb"], 0);
    assert!(first.contains("bb: 5 bind(s) made"), "{first}");
    let mounted = mount_table();
    let again = s.expect(&["mount", "bb"], 0);
    assert!(again.contains("bb: 0 bind(s) made"), "{again}");
    assert_eq!(mount_table(), mounted, "a second mount changes nothing");

    let inside = |point: &str| -> String {
        let target = tree.join(point).display().to_string();
        mounted.iter().rev().find(|(p, _)| *p == target).map(|(_, o)| o.clone()).unwrap_or_default()
    };
    for (point, flags) in [
        ("proc", "nosuid,nodev,noexec"),
        ("sys", "nosuid,nodev,noexec"),
        ("home", "nosuid,nodev"),
        ("tmp", "nosuid,nodev"),
    ] {
        let options = inside(point);
        for flag in flags.split(',') {
            assert!(options.split(',').any(|o| o == flag), "{point}: {flag} missing in {options:?}");
        }
    }
    assert!(inside("dev").contains("nosuid") && !inside("dev").contains("nodev"));

    // What Torque's `qsub -D` does: chroot as root, then become the user.
    let out = Command::new("chroot")
        .arg("--userspec=65534:65534")
        .arg(&tree)
        .args([
            "/bin/sh",
            "-c",
            "grep ^Uid: /proc/self/status; echo x > /dev/null && echo dev-ok; test -d /home && echo home-ok",
        ])
        .output()
        .expect("chroot");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with("Uid:\t65534\t65534\t65534\t65534\n"), "{text}");
    assert!(text.contains("dev-ok\n") && text.contains("home-ok\n"), "{text}");

    let down = s.expect(&["umount", "bb"], 0);
    assert!(down.contains("bb: 5 mount(s) removed"), "{down}");
    assert_eq!(mount_table(), before, "umount restores the host's mount table");
    let again = s.expect(&["umount", "bb"], 0);
    assert!(again.contains("bb: 0 mount(s) removed"), "{again}");
    assert_eq!(mount_table(), before);
}

#[test]
fn mount_refuses_an_untrusted_tree_and_mounts_nothing() {
    if !root_or_skip("mount_refuses_an_untrusted_tree_and_mounts_nothing") {
        return;
    }
    let _serial = HOST_MOUNTS.lock().unwrap_or_else(|p| p.into_inner());
    let s = Scratch::public("hostmount-untrusted");
    let tree = s.path("tree");
    let status = Command::new("cp").arg("-a").arg(cached_tree("busybox")).arg(&tree).status().expect("cp");
    assert!(status.success());
    let status = Command::new("chown").arg("65534").arg(tree.join("etc")).status().expect("chown");
    assert!(status.success());
    s.write("sysroots.toml", &format!("[sysroot.bb]\npath = \"{}\"\n", tree.display()));
    let before = mount_table();
    let out = s.expect(&["mount", "bb"], 1);
    assert!(out.contains("sysrootctl: bb: tree entry etc: owned by uid 65534, not root"), "{out}");
    assert_eq!(mount_table(), before);
}

/// Fault 6: after `sysrootctl mount`, `apply` copied `/proc`, `/sys`, `/dev`
/// and bound homes into the new generation, its gc then failed on the mounted
/// old generation (exit 1 after publishing, host links skipped), and `umount`
/// after the link moved found "0 mounts" to remove. Copies never cross into
/// other mounts, a mounted generation is kept, and `umount` removes every
/// bind it made wherever `path` points now.
#[test]
fn copies_and_unmounts_never_cross_into_other_mounts() {
    if !root_or_skip("copies_and_unmounts_never_cross_into_other_mounts") {
        return;
    }
    let _serial = HOST_MOUNTS.lock().unwrap_or_else(|p| p.into_inner());
    let s = Scratch::public("mount-apply");
    let _unmount = UnmountBelow(s.dir.clone());
    pack(&cached_tree("busybox"), &s.path("bb.tar.gz"));
    s.write("overlay/etc/motd", "1\n");
    s.write(
        "sysroots.toml",
        &format!(
            "[defaults]\nbinds = [\"/home\"]\nlog_socket = \"\"\n[sysroot.bb]\npath = \"{root}/roots/bb\"\n\
             [sysroot.bb.build]\nmethod = \"tarball\"\nsource = \"{root}/bb.tar.gz\"\nstore = \"{root}/store\"\nkeep = 1\n\
             files = [{{ src = \"{root}/overlay\", dst = \"/\" }}]\n",
            root = s.dir.display()
        ),
    );
    let before = mount_table();
    s.expect(&["apply", "-q"], 0);
    s.expect(&["mount", "bb"], 0);
    s.write("overlay/etc/motd", "2\n");
    let out = s.expect(&["apply"], 0);
    assert!(out.contains("generation 1 -> 2"), "{out}");
    assert!(out.contains("kept generation 1:") && out.contains("is mounted (sysrootctl umount bb)"), "{out}");
    assert!(s.path("apps/sysroot-bb.desktop").exists(), "the host links were made");
    for point in ["proc", "sys", "dev", "home"] {
        let copied = fs::read_dir(s.path("store/bb/2").join(point)).map(|d| d.count()).unwrap_or(0);
        assert_eq!(copied, 0, "/{point} of the mounted generation was copied");
    }
    let down = s.expect(&["umount", "bb"], 0);
    assert!(down.contains("bb: 4 mount(s) removed"), "{down}");
    assert_eq!(mount_table(), before, "umount removed every bind it made");
    let out = s.expect(&["gc", "bb"], 0);
    assert!(out.contains("removed generations [1]"), "{out}");
    s.assert_clean();
}
