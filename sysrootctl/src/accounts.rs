//! Merging host accounts into a tree's passwd/group/shadow/gshadow.
//!
//! Host entries come from NSS (`getent`), so directory-service users count.
//! The tree's own accounts stay; host entries in the uid/gid range are added or
//! updated; entries merged earlier that have left the host are removed. A name or
//! id that means something else in the tree is an error naming both entries.
//! Password hashes never leave the host: the tree's shadow says `!`.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// One colon-separated line with its 1-based line number in the tree's file
/// (0 for entries that come from the host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub number: usize,
    pub fields: Vec<String>,
}

impl Line {
    fn name(&self) -> &str {
        &self.fields[0]
    }
    fn id(&self) -> Option<u32> {
        self.fields.get(2).and_then(|s| s.parse().ok())
    }
}

pub fn parse(text: &str, min_fields: usize) -> Vec<Line> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|(i, l)| Line { number: i + 1, fields: l.split(':').map(str::to_string).collect() })
        .map(|mut l| {
            while l.fields.len() < min_fields {
                l.fields.push(String::new());
            }
            l
        })
        .collect()
}

pub fn render(lines: &[Line]) -> String {
    lines.iter().map(|l| l.fields.join(":") + "\n").collect()
}

/// An account database, for messages: ("user", "uid", "/etc/passwd").
pub struct Database {
    pub what: &'static str,
    pub id: &'static str,
    pub file: &'static str,
}

pub const USERS: Database = Database { what: "user", id: "uid", file: "/etc/passwd" };
pub const GROUPS: Database = Database { what: "group", id: "gid", file: "/etc/group" };

/// Merges `host` (already filtered to the id range) into `tree`. `managed` are
/// the names a previous run merged. Returns the new lines and the names now managed.
pub fn merge(db: &Database, tree: &[Line], host: &[Line], managed: &[String]) -> Result<(Vec<Line>, Vec<String>)> {
    let host_names: BTreeSet<&str> = host.iter().map(Line::name).collect();
    let mut out: Vec<Line> = tree
        .iter()
        .filter(|l| !managed.iter().any(|m| m == l.name()) || host_names.contains(l.name()))
        .cloned()
        .collect();
    let mut now_managed = Vec::new();
    for entry in host {
        let (name, id) = (entry.name(), entry.id());
        let mut fields = entry.fields.clone();
        // The hash (if NSS gave one) stays on the host; "x" points at shadow.
        fields[1] = "x".to_string();
        let same_name = out.iter().position(|l| l.name() == name);
        let same_id = out.iter().position(|l| l.id() == id && l.name() != name);
        if let Some(i) = same_id {
            let other = &out[i];
            if managed.iter().any(|m| m == other.name()) && !host_names.contains(other.name()) {
                out.remove(i);
            } else {
                bail!(
                    "{} {} of host {} \"{name}\" is already {} \"{}\" in the tree's {}:{}",
                    db.id,
                    id.map_or("?".to_string(), |i| i.to_string()),
                    db.what,
                    db.what,
                    other.name(),
                    db.file,
                    other.number
                );
            }
        }
        let same_name = same_name.and_then(|_| out.iter().position(|l| l.name() == name));
        match same_name {
            Some(i) if out[i].id() == id => out[i].fields = fields,
            Some(i) => bail!(
                "host {} \"{name}\" has {} {} but the tree's {}:{} gives it {} {}",
                db.what,
                db.id,
                id.map_or("?".to_string(), |i| i.to_string()),
                db.file,
                out[i].number,
                db.id,
                out[i].fields[2]
            ),
            None => out.push(Line { number: 0, fields }),
        }
        now_managed.push(name.to_string());
    }
    Ok((out, now_managed))
}

/// The tree's shadow (or gshadow) with `!` for every managed name: present,
/// locked, never a host hash. `width` is the number of fields (9 or 4).
pub fn lock_shadow(
    tree: &[Line],
    names: &[String],
    dropped: &[String],
    width: usize,
    members: &dyn Fn(&str) -> String,
) -> Vec<Line> {
    let mut out: Vec<Line> = tree.iter().filter(|l| !dropped.iter().any(|d| d == &l.fields[0])).cloned().collect();
    for name in names {
        match out.iter_mut().find(|l| &l.fields[0] == name) {
            Some(line) => {
                if !(line.fields[1].starts_with('!') || line.fields[1].starts_with('*')) {
                    line.fields[1] = "!".to_string();
                }
                if width == 4 {
                    line.fields[3] = members(name);
                }
            }
            None => {
                let mut fields = vec![name.clone(), "!".to_string()];
                if width == 4 {
                    fields.push(String::new());
                    fields.push(members(name));
                } else {
                    fields.extend(["", "0", "99999", "7", "", "", ""].map(str::to_string));
                }
                out.push(Line { number: 0, fields });
            }
        }
    }
    out
}

/// Keeps host lines whose id is in `[min, max]`.
pub fn in_range(lines: Vec<Line>, min: u32, max: u32) -> Vec<Line> {
    lines.into_iter().filter(|l| l.id().is_some_and(|id| (min..=max).contains(&id))).collect()
}

/// The homes in `users` (passwd lines) that lie outside every path in
/// `binds`: imageswitch binds each onto the same path in the tree, which needs
/// a mount point there.
pub fn unbound_homes(users: &[Line], binds: &[PathBuf]) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    for user in users {
        let home = PathBuf::from(user.fields.get(5).map_or("", String::as_str));
        let bound = binds.iter().any(|bind| home.starts_with(bind));
        if home.is_absolute() && home != Path::new("/") && !bound && !out.iter().any(|(_, h)| *h == home) {
            out.push((user.name().to_string(), home));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TREE: &str = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\nlocal:x:1500:1500::/home/local:/bin/sh\n";

    fn names(lines: &[Line]) -> Vec<&str> {
        lines.iter().map(Line::name).collect()
    }

    #[test]
    fn adds_updates_and_keeps_system_accounts() {
        let tree = parse(TREE, 7);
        let host = parse("alice:$6$hash:1000:1000:Alice:/home/alice:/bin/zsh\n", 7);
        let (out, managed) = merge(&USERS, &tree, &host, &[]).unwrap();
        assert_eq!(names(&out), ["root", "daemon", "local", "alice"]);
        assert_eq!(out[3].fields.join(":"), "alice:x:1000:1000:Alice:/home/alice:/bin/zsh");
        assert_eq!(managed, ["alice"]);
        // Re-merging the result is a no-op.
        let (again, _) = merge(&USERS, &out, &host, &managed).unwrap();
        assert_eq!(render(&again), render(&out));
    }

    #[test]
    fn removes_users_that_left_the_host_but_only_managed_ones() {
        let tree = parse(&format!("{TREE}gone:x:1001:1001::/home/gone:/bin/sh\n"), 7);
        let (out, managed) = merge(&USERS, &tree, &[], &["gone".into()]).unwrap();
        assert_eq!(names(&out), ["root", "daemon", "local"]);
        assert!(managed.is_empty());
    }

    #[test]
    fn collisions_name_both_entries() {
        let tree = parse(TREE, 7);
        let host = parse("bob:x:1500:1500::/home/bob:/bin/sh\n", 7);
        let err = merge(&USERS, &tree, &host, &[]).unwrap_err().to_string();
        assert_eq!(err, "uid 1500 of host user \"bob\" is already user \"local\" in the tree's /etc/passwd:3");
        let host = parse("local:x:1600:1600::/home/local:/bin/sh\n", 7);
        let err = merge(&USERS, &tree, &host, &[]).unwrap_err().to_string();
        assert_eq!(err, "host user \"local\" has uid 1600 but the tree's /etc/passwd:3 gives it uid 1500");
    }

    #[test]
    fn renamed_managed_user_is_replaced() {
        let tree = parse(&format!("{TREE}old:x:1001:1001::/home/old:/bin/sh\n"), 7);
        let host = parse("new:x:1001:1001::/home/new:/bin/sh\n", 7);
        let (out, _) = merge(&USERS, &tree, &host, &["old".into()]).unwrap();
        assert_eq!(names(&out), ["root", "daemon", "local", "new"]);
    }

    #[test]
    fn shadow_never_gets_a_hash() {
        let shadow = parse("root:*:19000:0:99999:7:::\nalice:$6$copied:1::::::\n", 9);
        let out = lock_shadow(&shadow, &["alice".into(), "bob".into()], &["gone".into()], 9, &|_| String::new());
        let text = render(&out);
        assert_eq!(text, "root:*:19000:0:99999:7:::\nalice:!:1::::::\nbob:!::0:99999:7:::\n");
        let gshadow = lock_shadow(&parse("staff:*::\n", 4), &["physics".into()], &[], 4, &|_| "alice,bob".into());
        assert_eq!(render(&gshadow), "staff:*::\nphysics:!::alice,bob\n");
    }

    #[test]
    fn homes_outside_the_binds_need_a_mount_point() {
        let host = parse(
            "a:x:1000:1000::/home/a:/bin/sh\nb:x:1001:1001::/var/homes/b:/bin/sh\nc:x:1002:1002::/home2/c:/bin/sh\n\
             d:x:1003:1003::/:/bin/sh\ne:x:1004:1004::/var/homes/b:/bin/sh\nf:x:1005:1005::relative:/bin/sh\n",
            7,
        );
        let binds = [PathBuf::from("/home"), PathBuf::from("/tmp")];
        let homes = unbound_homes(&host, &binds);
        // Component-wise: /home2 is not under /home; one entry per home.
        assert_eq!(
            homes,
            [("b".to_string(), PathBuf::from("/var/homes/b")), ("c".to_string(), PathBuf::from("/home2/c"))]
        );
    }

    #[test]
    fn range_filter() {
        let host = parse("root:x:0:0::/:/bin/sh\nalice:x:1000:1000::/:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n", 7);
        assert_eq!(names(&in_range(host, 1000, 59999)), ["alice"]);
    }
}
