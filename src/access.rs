//! Who is calling, from the host's passwd and group databases, and whether
//! they may enter a sysroot. Never from `$USER`, `$HOME` or any variable.
#![forbid(unsafe_code)]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::unistd::{Gid, Group, Uid, getgid, getuid};

use crate::config::{Access, Config};
use crate::error::Error;

/// The real user behind this process, resolved on the host before any chroot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: Uid,
    /// The real gid at start (the caller's current group, after any newgrp).
    pub gid: Gid,
    pub name: String,
    pub home: PathBuf,
    pub shell: PathBuf,
    /// Supplementary groups the process had when it started.
    pub groups: Vec<Gid>,
    /// The primary group in the caller's passwd entry.
    pub passwd_gid: Gid,
}

impl Caller {
    /// Resolves the real uid through NSS on the host. The supplementary
    /// groups are the ones the process already has (a setuid exec keeps them):
    /// recomputing them from the group database could hand back a group the
    /// caller's session had dropped (newgrp, a scheduler's cgroup of groups).
    pub fn resolve() -> Result<Caller, Error> {
        let uid = getuid();
        let entry = crate::nss_files::passwd_by_uid(uid.as_raw())
            .map_err(|e| Error::Caller(format!("uid {uid}: {}", crate::error::describe_lookup(&e))))?
            .ok_or_else(|| Error::Caller(format!("uid {uid} has no passwd entry")))?;
        let user = User {
            name: String::from_utf8_lossy(&entry.name).into_owned(),
            dir: PathBuf::from(OsStr::from_bytes(&entry.dir)),
            shell: PathBuf::from(OsStr::from_bytes(&entry.shell)),
            gid: Gid::from_raw(entry.gid),
        };
        let groups = process_groups().map_err(|e| Error::Caller(format!("groups of {}: {e}", user.name)))?;
        let passwd_gid = user.gid;
        Ok(Caller { uid, gid: getgid(), name: user.name, home: user.dir, shell: user.shell, groups, passwd_gid })
    }
}

/// This process's supplementary groups, sorted and without duplicates: as
/// [`Caller::groups`] holds them, and as the identity drop compares them.
pub fn process_groups() -> std::io::Result<Vec<Gid>> {
    let mut groups: Vec<Gid> = crate::sys::supplementary_groups()?.into_iter().map(Gid::from_raw).collect();
    groups.sort_by_key(|g| g.as_raw());
    groups.dedup();
    Ok(groups)
}

/// The fields of the caller's passwd entry kept.
struct User {
    name: String,
    dir: PathBuf,
    shell: PathBuf,
    gid: Gid,
}

/// Whether `caller` may enter a sysroot with `access`: the union of `users`
/// and `groups`; with neither configured, everyone may. `group_gid` looks a
/// group name up.
pub fn may_enter(access: &Access, caller: &Caller, group_gid: impl Fn(&str) -> Option<Gid>) -> bool {
    if access.users.is_none() && access.groups.is_none() {
        return true;
    }
    if access.users.iter().flatten().any(|name| *name == caller.name) {
        return true;
    }
    access
        .groups
        .iter()
        .flatten()
        .filter_map(|name| group_gid(name))
        .any(|gid| gid == caller.gid || caller.groups.contains(&gid))
}

/// Whether `caller` may be told about the broken entry `name` (its error, its
/// very existence): root, and whoever its `users` and `groups` would let in.
/// An entry whose lists cannot be read is root's business alone. `admits`
/// is [`may_enter`] for `caller`.
pub fn may_see_broken(config: &Config, name: &str, caller: &Caller, admits: impl FnOnce(&Access) -> bool) -> bool {
    caller.uid.is_root() || config.broken_access.get(name).is_some_and(admits)
}

/// Looks a group up in the host's group database.
pub fn host_group_gid(name: &str) -> Option<Gid> {
    Group::from_name(name).ok().flatten().map(|g| g.gid)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{Sysroot, parse};

    fn caller(name: &str, gid: u32, groups: &[u32]) -> Caller {
        Caller {
            uid: Uid::from_raw(1000),
            gid: Gid::from_raw(gid),
            name: name.into(),
            home: "/home/x".into(),
            shell: "/bin/sh".into(),
            groups: groups.iter().map(|g| Gid::from_raw(*g)).collect(),
            passwd_gid: Gid::from_raw(gid),
        }
    }

    /// The caller the other modules' tests enter as.
    pub(crate) fn alice() -> Caller {
        Caller { home: "/home/alice".into(), shell: "/bin/zsh".into(), ..caller("alice", 1000, &[1000]) }
    }

    fn sysroot(extra: &str) -> Access {
        let text = format!("[sysroot.a]\npath = \"/a\"\n{extra}\n");
        let s: Sysroot = parse("t", &text).expect("valid").sysroots.remove(0);
        s.access
    }

    fn groups(name: &str) -> Option<Gid> {
        match name {
            "physics" => Some(Gid::from_raw(500)),
            "chem" => Some(Gid::from_raw(600)),
            _ => None,
        }
    }

    #[test]
    fn nobody_listed_means_everyone() {
        assert!(may_enter(&sysroot(""), &caller("bob", 100, &[100]), groups));
    }

    #[test]
    fn listed_user_enters_others_do_not() {
        let s = sysroot("users = [\"alice\"]");
        assert!(may_enter(&s, &caller("alice", 100, &[100]), groups));
        assert!(!may_enter(&s, &caller("bob", 100, &[100]), groups));
    }

    #[test]
    fn empty_lists_admit_nobody() {
        let s = sysroot("users = []");
        assert!(!may_enter(&s, &caller("alice", 100, &[100]), groups));
    }

    #[test]
    fn group_membership_primary_or_supplementary() {
        let s = sysroot("groups = [\"physics\"]");
        assert!(may_enter(&s, &caller("bob", 500, &[500]), groups));
        assert!(may_enter(&s, &caller("bob", 100, &[100, 500]), groups));
        assert!(!may_enter(&s, &caller("bob", 100, &[100, 600]), groups));
    }

    #[test]
    fn users_and_groups_are_a_union() {
        let s = sysroot("users = [\"alice\"]\ngroups = [\"chem\"]");
        assert!(may_enter(&s, &caller("alice", 100, &[100]), groups));
        assert!(may_enter(&s, &caller("carol", 100, &[600]), groups));
        assert!(!may_enter(&s, &caller("dave", 100, &[500]), groups));
    }

    #[test]
    fn broken_entries_are_shown_to_root_and_to_who_they_would_admit() {
        let config = parse("t", "[sysroot.a]\npth = 1\nusers = [\"alice\"]\n[sysroot.b]\nusers = 3\n").expect("valid");
        let sees = |name: &str, who: &Caller| may_see_broken(&config, name, who, |a| may_enter(a, who, groups));
        assert!(sees("a", &caller("alice", 100, &[100])));
        assert!(!sees("a", &caller("bob", 100, &[100])));
        assert!(!sees("b", &caller("bob", 100, &[100])));
        let mut root = caller("root", 0, &[0]);
        root.uid = Uid::from_raw(0);
        assert!(sees("a", &root));
        assert!(sees("b", &root));
    }

    #[test]
    fn unknown_group_admits_nobody() {
        let s = sysroot("groups = [\"nosuchgroup\"]");
        assert!(!may_enter(&s, &caller("bob", 100, &[100]), groups));
    }
}
