//! The tree's view: which host paths appear where inside, with which mount
//! flags ([`plan`], caller-independent and pure), and attaching them in a
//! private mount namespace: with the new mount API (`attach`), or with
//! mount(2) on kernels before 5.12 (`classic`).
#![forbid(unsafe_code)]

mod attach;
mod classic;
mod mountinfo;

use std::path::{Path, PathBuf};

use crate::config::{Defaults, Sysroot};

pub use attach::{MountError, Outcome, bind, bind_from, detach_source, seal_tree};
pub(crate) use attach::{fd_path, open_target, with_fs_identity};
pub use mountinfo::{MountEntry, mount_table, parse_mountinfo};

pub const NOSUID: u64 = libc::MOUNT_ATTR_NOSUID;
pub const NODEV: u64 = libc::MOUNT_ATTR_NODEV;
pub const NOEXEC: u64 = libc::MOUNT_ATTR_NOEXEC;
pub const RDONLY: u64 = libc::MOUNT_ATTR_RDONLY;

/// What a bind joins: the source and the destination must both be one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BindKind {
    Directory,
    Socket,
}

/// What to do when the source or the destination does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IfMissing {
    Fail,
    Warn,
    Skip,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MountSpec {
    /// Host path.
    pub source: PathBuf,
    /// Absolute path inside the tree.
    pub target: PathBuf,
    pub recursive: bool,
    /// `MOUNT_ATTR_*` flags set on the bind (and its submounts).
    pub attrs: u64,
    /// Resolve the source with the caller's filesystem identity, so a bind
    /// never shows what the caller could not reach (root_squash, 0700 homes).
    pub as_caller: bool,
    /// The destination may also be owned by the caller (their home in the tree).
    pub caller_may_own_target: bool,
    pub kind: BindKind,
    pub if_missing: IfMissing,
}

/// Host paths every tree shows at the same path, before any configured bind.
const SYSTEM_BINDS: [&str; 3] = ["/proc", "/sys", "/dev"];

/// Whether `path` is already shown under a system bind or another of `binds`.
fn shown_by_another(binds: &[&Path], path: &Path) -> bool {
    SYSTEM_BINDS
        .iter()
        .map(Path::new)
        .chain(binds.iter().copied())
        .any(|other| other != path && path.starts_with(other))
}

/// The configured binds that get a mount of their own. Every bind shows its
/// host path at the same path, recursively: one under another (/tmp/data
/// under /tmp, anything under /dev) is already there, and a mount of its own
/// would resolve its destination through the other bind — through a
/// directory any user may write to, and squat.
pub fn own_binds<'a>(sysroot: &'a Sysroot, defaults: &'a Defaults) -> Vec<&'a Path> {
    let binds = sysroot.all_binds(defaults);
    binds.iter().copied().filter(|bind| !shown_by_another(&binds, bind)).collect()
}

/// A bind whose source lies where a user other than root may remove,
/// replace or plant it: under `ancestor`, for `why`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedSource {
    pub bind: PathBuf,
    pub ancestor: PathBuf,
    pub why: String,
}

impl std::fmt::Display for SharedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "bind source {} lies under {}, {}: users other than root could block or replace it for everyone; \
             move it under a directory only root can write",
            self.bind.display(),
            self.ancestor.display(),
            self.why
        )
    }
}

/// The first of `sysroot`'s own binds whose source `shared_ancestor` (see
/// [`crate::trusted::shared_ancestor`]) places under a directory someone
/// other than root may change. Such a sysroot is refused whole: a bind made
/// or skipped by what a user left there would let them stop others' entries
/// or choose what they see.
pub fn shared_source(
    sysroot: &Sysroot,
    defaults: &Defaults,
    shared_ancestor: impl Fn(&Path) -> Option<(PathBuf, String)>,
) -> Option<SharedSource> {
    own_binds(sysroot, defaults).into_iter().find_map(|bind| {
        shared_ancestor(bind).map(|(ancestor, why)| SharedSource { bind: bind.to_path_buf(), ancestor, why })
    })
}

/// The binds for `sysroot`, in the order they are made. `home` is the
/// caller's home directory, bound on its own when no other bind shows it;
/// `None` (a scheduler's host mounts, for no one in particular) binds no home.
/// A home of `/` or a relative one (a passwd entry's) gets no bind either.
pub fn plan(sysroot: &Sysroot, defaults: &Defaults, home: Option<&Path>) -> Vec<MountSpec> {
    let system = |path: &str, attrs: u64| MountSpec {
        source: PathBuf::from(path),
        target: PathBuf::from(path),
        recursive: true,
        attrs,
        as_caller: false,
        caller_may_own_target: false,
        kind: BindKind::Directory,
        if_missing: IfMissing::Fail,
    };
    let mut specs = vec![
        system("/proc", NOSUID | NODEV | NOEXEC),
        system("/sys", NOSUID | NODEV | NOEXEC),
        // Device nodes are what /dev is for: nodev would break /dev/null.
        system("/dev", NOSUID),
    ];
    for bind in own_binds(sysroot, defaults) {
        let optional = defaults.binds_if_present.iter().any(|b| b == bind) && !sysroot.binds.iter().any(|b| b == bind);
        specs.push(MountSpec {
            source: bind.to_path_buf(),
            target: bind.to_path_buf(),
            recursive: true,
            attrs: NOSUID | NODEV,
            as_caller: true,
            caller_may_own_target: false,
            kind: BindKind::Directory,
            if_missing: if optional { IfMissing::Skip } else { IfMissing::Fail },
        });
    }
    let binds = sysroot.all_binds(defaults);
    let own_home = home.filter(|home| {
        home.is_absolute() && *home != Path::new("/") && !shown_by_another(&binds, home) && !binds.contains(home)
    });
    if let Some(home) = own_home {
        specs.push(MountSpec {
            source: home.to_path_buf(),
            target: home.to_path_buf(),
            recursive: true,
            attrs: NOSUID | NODEV,
            as_caller: true,
            caller_may_own_target: true,
            kind: BindKind::Directory,
            if_missing: IfMissing::Warn,
        });
    }
    if let Some(socket) = &defaults.log_socket {
        specs.push(MountSpec {
            source: socket.clone(),
            target: PathBuf::from("/dev/log"),
            recursive: false,
            attrs: NOSUID | NODEV | NOEXEC,
            as_caller: false,
            caller_may_own_target: false,
            kind: BindKind::Socket,
            if_missing: IfMissing::Skip,
        });
    }
    specs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn plan_for(text: &str, home: &str) -> Vec<MountSpec> {
        let config = parse("t", text).expect("valid");
        plan(&config.sysroots[0], &config.defaults, Some(Path::new(home)))
    }

    fn targets(specs: &[MountSpec]) -> Vec<String> {
        specs.iter().map(|s| s.target.display().to_string()).collect()
    }

    #[test]
    fn default_plan_order_and_flags() {
        let specs = plan_for("[sysroot.a]\npath = \"/a\"\nbinds = [\"/data\"]\n", "/home/alice");
        assert_eq!(targets(&specs), ["/proc", "/sys", "/dev", "/home", "/tmp", "/var/tmp", "/data", "/dev/log"]);
        assert_eq!(specs[0].attrs, NOSUID | NODEV | NOEXEC);
        assert_eq!(specs[2].attrs, NOSUID);
        for bind in &specs[3..7] {
            assert_eq!(bind.attrs, NOSUID | NODEV);
            assert!(bind.as_caller && bind.recursive);
            // The built-in /var/tmp only where the tree has it (trees made by
            // hand may lack it); every other bind is required.
            let expected = if bind.target == Path::new("/var/tmp") { IfMissing::Skip } else { IfMissing::Fail };
            assert_eq!(bind.if_missing, expected, "{}", bind.target.display());
        }
        assert_eq!(specs[7].kind, BindKind::Socket);
        assert_eq!(specs[7].if_missing, IfMissing::Skip);
        // Stated in the configuration, /var/tmp is required like any bind.
        for stated in [
            "[defaults]\nbinds = [\"/var/tmp\"]\n[sysroot.a]\npath = \"/a\"\n",
            "[sysroot.a]\npath = \"/a\"\nbinds = [\"/var/tmp\"]\n",
        ] {
            let specs = plan_for(stated, "/home/alice");
            let var_tmp = specs.iter().find(|s| s.target == Path::new("/var/tmp")).expect("/var/tmp bind");
            assert_eq!(var_tmp.if_missing, IfMissing::Fail, "{stated}");
        }
    }

    #[test]
    fn home_outside_binds_gets_its_own_bind() {
        let specs = plan_for("[defaults]\nbinds = [\"/tmp\"]\n[sysroot.a]\npath = \"/a\"\n", "/users/alice");
        let home = specs.iter().find(|s| s.target == Path::new("/users/alice")).expect("home bind");
        assert!(home.as_caller && home.caller_may_own_target);
        assert_eq!(home.if_missing, IfMissing::Warn);
        // Component-wise: /home2/x is not under /home.
        let specs = plan_for("[sysroot.a]\npath = \"/a\"\n", "/home2/alice");
        assert!(specs.iter().any(|s| s.target == Path::new("/home2/alice")));
    }

    #[test]
    fn no_home_or_a_home_of_slash_or_relative_gets_no_bind_of_its_own() {
        let config = parse("t", "[defaults]\nbinds = [\"/tmp\"]\n[sysroot.a]\npath = \"/a\"\n").expect("valid");
        let without = targets(&plan(&config.sysroots[0], &config.defaults, None));
        assert_eq!(without, ["/proc", "/sys", "/dev", "/tmp", "/dev/log"]);
        for home in ["/", "home/alice", ""] {
            assert_eq!(
                targets(&plan_for("[defaults]\nbinds = [\"/tmp\"]\n[sysroot.a]\npath = \"/a\"\n", home)),
                without
            );
        }
    }

    #[test]
    fn a_bind_another_bind_already_shows_gets_no_mount_of_its_own() {
        let specs = plan_for(
            "[defaults]\nbinds = [\"/tmp/shared-data\", \"/home\"]\n\
             [sysroot.a]\npath = \"/a\"\nbinds = [\"/tmp\", \"/dev/shm\", \"/tmp2\", \"/home/x/y\"]\n",
            "/tmp/alice",
        );
        assert_eq!(targets(&specs), ["/proc", "/sys", "/dev", "/home", "/tmp", "/tmp2", "/dev/log"]);
        let specs = plan_for("[defaults]\nbinds = [\"/home/alice\"]\n[sysroot.a]\npath = \"/a\"\n", "/home/alice");
        assert_eq!(targets(&specs), ["/proc", "/sys", "/dev", "/home/alice", "/dev/log"]);
    }

    #[test]
    fn a_bind_source_under_a_directory_others_may_change_refuses_the_sysroot() {
        let config = crate::config::parse(
            "/etc/sysroots.toml",
            "[defaults]\nbinds = [\"/tmp\", \"/home\"]\n[sysroot.a]\npath = \"/a\"\n\
             binds = [\"/tmp/under-a-bind\", \"/srv/data\", \"/var/tmp/r10-src\", \"/scratch/x\"]\n",
        )
        .expect("config");
        let sysroot = &config.sysroots[0];
        let probed = std::cell::RefCell::new(Vec::new());
        // The real rule on this machine: /var/tmp is shared, / and /var are root-only.
        let found = shared_source(sysroot, &config.defaults, |bind| {
            probed.borrow_mut().push(bind.to_path_buf());
            crate::trusted::shared_ancestor(bind)
        });
        let found = found.expect("/var/tmp/r10-src is refused");
        assert_eq!(
            (found.bind.as_path(), found.ancestor.as_path()),
            (Path::new("/var/tmp/r10-src"), Path::new("/var/tmp"))
        );
        assert_eq!(
            found.to_string(),
            "bind source /var/tmp/r10-src lies under /var/tmp, writable by group or others (mode 1777): users other \
             than root could block or replace it for everyone; move it under a directory only root can write"
        );
        // A bind another bind shows is never resolved on its own, so not judged.
        assert_eq!(probed.into_inner(), ["/tmp", "/home", "/srv/data", "/var/tmp/r10-src"].map(PathBuf::from));
        // Under the default binds (/var/tmp among them) it needs no mount of its own.
        let defaults = crate::config::Defaults::default();
        assert_eq!(shared_source(sysroot, &defaults, crate::trusted::shared_ancestor), None);
        // The default binds themselves lie under root-only directories.
        for fine in ["/home", "/tmp", "/var/tmp", "/srv/missing/x"] {
            assert_eq!(crate::trusted::shared_ancestor(Path::new(fine)), None, "{fine}");
        }
    }

    #[test]
    fn no_log_socket_when_disabled() {
        let specs = plan_for("[defaults]\nlog_socket = \"\"\n[sysroot.a]\npath = \"/a\"\n", "/home/a");
        assert!(!specs.iter().any(|s| s.kind == BindKind::Socket));
    }
}
