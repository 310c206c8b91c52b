//! The caller's passwd and group lines, and the tree's databases with them
//! added: the pure part of the per-entry identity (see [`crate::personal`]).
//!
//! Line syntax: passwd(5) and group(5). Names `compat` NSS would read as NIS
//! directives (a leading `+` or `-`, nsswitch.conf(5)) are refused, as are
//! fields that would change the line's shape (`:`, newline, `,` in names).
#![forbid(unsafe_code)]

use std::io;

use crate::sys::{self, PasswdEntry};

/// The caller's entries, as lines ready to append to the tree's databases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub passwd: Vec<u8>,
    /// (gid, line) for the caller's primary and supplementary groups that
    /// have a name on the host.
    pub groups: Vec<(u32, Vec<u8>)>,
}

/// Why a field cannot go into a passwd or group line unchanged.
fn unrepresentable(field: &[u8]) -> Option<&'static str> {
    if field.contains(&b':') {
        Some("contains ':'")
    } else if field.contains(&b'\n') {
        Some("contains a newline")
    } else {
        None
    }
}

/// Why a user or group name cannot be shown: besides the line syntax, names
/// that `compat` NSS reads as NIS directives, and commas (member lists).
fn bad_name(name: &[u8]) -> Option<&'static str> {
    match name.first() {
        None => Some("is empty"),
        Some(b'+' | b'-') => Some("starts with '+' or '-'"),
        _ if name.contains(&b',') => Some("contains ','"),
        _ => unrepresentable(name),
    }
}

fn shown(bytes: &[u8]) -> String {
    crate::escape::escape(bytes)
}

/// The caller's passwd line and group lines from their host entries, or why
/// they cannot be shown. `group_of` looks a gid up on the host.
pub fn account_lines(
    pw: &PasswdEntry,
    gids: &[u32],
    group_of: impl Fn(u32) -> io::Result<Option<sys::GroupEntry>>,
) -> Result<Account, String> {
    if let Some(why) = bad_name(&pw.name) {
        return Err(format!("the user name {} {why}", shown(&pw.name)));
    }
    for (what, field) in [("gecos", &pw.gecos), ("home", &pw.dir), ("shell", &pw.shell)] {
        if let Some(why) = unrepresentable(field) {
            return Err(format!("the {what} field {} {why}", shown(field)));
        }
    }
    // Markers that say "no password here" read the same inside; anything
    // else might be a hash, which never leaves the host.
    let marker: &[u8] = match pw.passwd.as_slice() {
        kept @ (b"x" | b"*" | b"!" | b"!!") => kept,
        _ => b"x",
    };
    let mut passwd = pw.name.clone();
    for field in [marker, pw.uid.to_string().as_bytes(), pw.gid.to_string().as_bytes(), &pw.gecos, &pw.dir, &pw.shell] {
        passwd.push(b':');
        passwd.extend_from_slice(field);
    }
    let mut groups = Vec::new();
    for &gid in gids {
        let group =
            group_of(gid).map_err(|e| format!("looking up group {gid}: {}", crate::error::describe_lookup(&e)))?;
        // A gid the host cannot name has no name inside either.
        let Some(group) = group else { continue };
        if let Some(why) = bad_name(&group.name) {
            return Err(format!("the name of group {gid}, {}, {why}", shown(&group.name)));
        }
        let mut line = group.name.clone();
        line.extend_from_slice(format!(":x:{gid}:").as_bytes());
        if gid != pw.gid {
            line.extend_from_slice(&pw.name);
        }
        groups.push((gid, line));
    }
    Ok(Account { uid: pw.uid, passwd, groups })
}

/// Whether a passwd or group database has an entry with id `id` (third field).
fn has_id(db: &[u8], id: u32) -> bool {
    let wanted = id.to_string();
    db.split(|&b| b == b'\n').any(|line| line.split(|&b| b == b':').nth(2) == Some(wanted.as_bytes()))
}

/// `db` followed by those of `lines` whose id it lacks; `None` if it lacks none.
fn with_missing<'a>(db: &[u8], lines: impl IntoIterator<Item = (u32, &'a [u8])>) -> Option<Vec<u8>> {
    let missing: Vec<&[u8]> = lines.into_iter().filter(|(id, _)| !has_id(db, *id)).map(|(_, line)| line).collect();
    if missing.is_empty() {
        return None;
    }
    let mut out = db.to_vec();
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    for line in missing {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    Some(out)
}

/// Whether the tree's `passwd` has an entry for `uid` and its `group` one
/// for each of `gids`: then nothing of the caller's is added, and nothing
/// needs to be looked up.
pub fn knows(passwd: &[u8], group: &[u8], uid: u32, gids: &[u32]) -> bool {
    has_id(passwd, uid) && gids.iter().all(|gid| has_id(group, *gid))
}

/// The tree's passwd and group with the caller's entries added where the tree
/// has none for that id: (passwd, group), each `None` when unchanged.
pub fn merged_databases(passwd: &[u8], group: &[u8], account: &Account) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    (
        with_missing(passwd, [(account.uid, account.passwd.as_slice())]),
        with_missing(group, account.groups.iter().map(|(gid, line)| (*gid, line.as_slice()))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> PasswdEntry {
        PasswdEntry {
            name: b"alice".to_vec(),
            passwd: b"$6$salt$hash".to_vec(),
            uid: 1000,
            gid: 1000,
            gecos: b"Alice A.".to_vec(),
            dir: b"/home/alice".to_vec(),
            shell: b"/bin/bash".to_vec(),
        }
    }

    fn groups(gid: u32) -> io::Result<Option<sys::GroupEntry>> {
        let name: &[u8] = match gid {
            1000 => b"alice",
            500 => b"physics",
            600 => b"caf\xe9",
            700 => b"bad:name",
            800 => return Err(io::Error::from_raw_os_error(libc::ETIMEDOUT)),
            _ => return Ok(None),
        };
        Ok(Some(sys::GroupEntry { name: name.to_vec(), gid }))
    }

    #[test]
    fn a_tree_that_has_the_uid_and_every_gid_knows_the_caller() {
        let (passwd, group) =
            (b"root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/h:/bin/sh\n", b"alice:x:1000:\nphys:x:500:\n");
        assert!(knows(passwd, group, 1000, &[500, 1000]));
        assert!(!knows(passwd, group, 1000, &[500, 600, 1000]));
        assert!(!knows(passwd, group, 1001, &[1000]));
        // An id in another field is not an entry for it.
        assert!(!knows(b"x:x:1:1000::/:/bin/sh\n", group, 1000, &[1000]));
    }

    #[test]
    fn lines_are_the_host_entries_without_a_hash() {
        let account = account_lines(&alice(), &[500, 600, 1000, 4242], groups).expect("representable");
        assert_eq!(account.passwd, b"alice:x:1000:1000:Alice A.:/home/alice:/bin/bash");
        // A directory service's "*" (no password here) stays as on the host.
        let ldap = PasswdEntry { passwd: b"*".to_vec(), ..alice() };
        assert!(account_lines(&ldap, &[], groups).expect("ok").passwd.starts_with(b"alice:*:1000:"));
        let lines: Vec<&[u8]> = account.groups.iter().map(|(_, l)| l.as_slice()).collect();
        // 4242 has no name on the host, so none inside; bytes stay as they are.
        assert_eq!(lines, [&b"physics:x:500:alice"[..], b"caf\xe9:x:600:alice", b"alice:x:1000:"]);
    }

    #[test]
    fn entries_that_cannot_be_shown_faithfully_show_nothing() {
        let cases: [(&str, PasswdEntry, &[u32]); 7] = [
            ("gecos with ':'", PasswdEntry { gecos: b"a:b".to_vec(), ..alice() }, &[]),
            ("gecos with a newline", PasswdEntry { gecos: b"a\nroot::0:0::/:/bin/sh".to_vec(), ..alice() }, &[]),
            ("home with ':'", PasswdEntry { dir: b"/home/a:b".to_vec(), ..alice() }, &[]),
            ("compat directive", PasswdEntry { name: b"+alice".to_vec(), ..alice() }, &[]),
            ("empty name", PasswdEntry { name: Vec::new(), ..alice() }, &[]),
            ("group name with ':'", alice(), &[700]),
            ("group lookup timing out", alice(), &[500, 800]),
        ];
        for (case, pw, gids) in cases {
            assert!(account_lines(&pw, gids, groups).is_err(), "{case}");
        }
        let why = account_lines(&alice(), &[800], groups).unwrap_err();
        assert!(why.starts_with("looking up group 800: "), "{why}");
    }

    #[test]
    fn the_trees_own_entries_win_and_others_are_untouched() {
        let account = account_lines(&alice(), &[500, 1000], groups).expect("ok");
        let passwd = b"root:x:0:0::/root:/bin/sh\nbob:x:1001:1001::/home/bob:/bin/sh";
        let group = b"root:x:0:\nscience:x:500:bob\n";
        let (p, g) = merged_databases(passwd, group, &account);
        assert_eq!(
            p.as_deref(),
            Some(&b"root:x:0:0::/root:/bin/sh\nbob:x:1001:1001::/home/bob:/bin/sh\nalice:x:1000:1000:Alice A.:/home/alice:/bin/bash\n"[..])
        );
        assert_eq!(g.as_deref(), Some(&b"root:x:0:\nscience:x:500:bob\nalice:x:1000:\n"[..]));
        // A tree that already has the uid and every gid needs nothing.
        let passwd = b"alice2:x:1000:1000::/h:/bin/sh\n";
        let group = b"a:x:1000:\nb:x:500:\n";
        assert_eq!(merged_databases(passwd, group, &account), (None, None));
        // Ids are compared whole: 10000 is not 1000.
        let (p, _) = merged_databases(b"x:x:10000:1::/:/bin/sh\n", b"", &account);
        assert!(p.is_some());
    }
}
