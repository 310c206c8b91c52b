//! The host's passwd and group entries for one id, read from `/etc/passwd`
//! and `/etc/group` directly when NSS would answer from those files anyway,
//! and through NSS (`getpwuid_r`, `getgrgid_r`) otherwise.
//!
//! A first NSS lookup in a new process costs more than the whole of the rest
//! of an entry's identity work (about 60 µs here: nscd's socket tried twice,
//! `nsswitch.conf` parsed, the "files" service set up), and imageswitch is a
//! new process every time. When `nsswitch.conf` lists `files` first for the
//! database, with no action after it, NSS returns the first entry of that
//! file with the id whenever there is one (nsswitch.conf(5): services are
//! asked in order, and the default action for SUCCESS is `return`). This
//! module gives that answer itself, and only when every line up to the one
//! it returns has the plain shape of passwd(5) or group(5): anything it
//! would have to read the way glibc's parser does (a name starting with `+`
//! or `-`, a number with a sign or spaces, a leading blank, a NUL, a line of
//! another shape) sends the
//! lookup through NSS, which then decides, as it does for ids not in the file
//! and for every other `nsswitch.conf`.
#![forbid(unsafe_code)]

use std::io;
use std::sync::OnceLock;

use crate::sys::{self, GroupEntry, PasswdEntry};

const NSSWITCH: &str = "/etc/nsswitch.conf";
const PASSWD: &str = "/etc/passwd";
const GROUP: &str = "/etc/group";

/// Largest `nsswitch.conf`, passwd or group file read here; a larger one is
/// left to NSS.
const MAX_BYTES: usize = 4 << 20;

/// `getpwuid(3)`'s answer for `uid`.
pub fn passwd_by_uid(uid: u32) -> io::Result<Option<PasswdEntry>> {
    static FILE: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    let file = || FILE.get_or_init(|| read(PASSWD)).as_deref();
    match files_first().0.then(|| in_file(file(), |line| parse_passwd(line, uid))).flatten() {
        Some(entry) => Ok(Some(entry)),
        None => sys::passwd_by_uid(uid),
    }
}

/// `getgrgid(3)`'s answer for `gid` (name and id).
pub fn group_by_gid(gid: u32) -> io::Result<Option<GroupEntry>> {
    static FILE: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    let file = || FILE.get_or_init(|| read(GROUP)).as_deref();
    match files_first().1.then(|| in_file(file(), |line| parse_group(line, gid))).flatten() {
        Some(entry) => Ok(Some(entry)),
        None => sys::group_by_gid(gid),
    }
}

/// Whether `passwd` and `group` each start with a plain `files` service.
fn files_first() -> (bool, bool) {
    static ANSWER: OnceLock<(bool, bool)> = OnceLock::new();
    *ANSWER.get_or_init(|| match read(NSSWITCH) {
        Some(text) => (starts_with_files(&text, b"passwd"), starts_with_files(&text, b"group")),
        None => (false, false),
    })
}

fn read(path: &str) -> Option<Vec<u8>> {
    let file = std::fs::File::open(path).ok()?;
    let bytes = sys::read_all(&file, 8 << 10, MAX_BYTES).ok()?;
    (bytes.len() <= MAX_BYTES).then_some(bytes)
}

/// Whether the one line for `database` in `nsswitch.conf` text lists
/// `files` first with no `[...]` action after it. Lines are read as glibc
/// reads them (nss/nss_database.c `process_line`): a comment from `#`,
/// leading blanks skipped, the database name ending at a blank or a colon.
/// Two lines for it (glibc keeps the last), or none (glibc's built-in
/// default then applies), say no.
fn starts_with_files(text: &[u8], database: &[u8]) -> bool {
    let mut found = None;
    for line in text.split(|&b| b == b'\n') {
        let line = line.split(|&b| b == b'#').next().unwrap_or_default();
        let Some(start) = line.iter().position(|b| !c_space(b)) else { continue };
        let line = &line[start..];
        let end = line.iter().position(|b| c_space(b) || *b == b':').unwrap_or(line.len());
        if &line[..end] != database {
            continue;
        }
        if found.is_some() {
            return false;
        }
        let rest = line.get(end + 1..).unwrap_or_default();
        let mut services = rest.split(c_space).filter(|w| !w.is_empty());
        let first = services.next() == Some(b"files".as_slice());
        let plain = services.next().is_none_or(|next| !next.starts_with(b"["));
        found = Some(first && plain);
    }
    found.unwrap_or(false)
}

/// What a line says about the id looked up.
#[derive(Debug, PartialEq, Eq)]
enum Line<T> {
    /// The entry with the id.
    Match(T),
    /// A plain entry for another id, or a comment or empty line (which glibc
    /// skips).
    Other,
    /// A line this module does not read exactly as glibc does.
    Unsure,
}

/// The first entry of `bytes` (a file's, read once per process: an entry
/// lasts about a millisecond) `parse` matches, or `None` when there is none
/// or a line before it (or it) is one `parse` is unsure of.
fn in_file<T>(bytes: Option<&[u8]>, parse: impl Fn(&[u8]) -> Line<T>) -> Option<T> {
    for line in bytes?.split(|&b| b == b'\n') {
        match parse(line) {
            Line::Match(entry) => return Some(entry),
            Line::Other => {}
            Line::Unsure => return None,
        }
    }
    None
}

/// A decimal id as passwd(5) and group(5) write it: digits only, no sign,
/// no spaces, within 32 bits, and not `u32::MAX` ((uid_t) -1).
fn plain_id(field: &[u8]) -> Option<u32> {
    if field.is_empty() || field.len() > 10 || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(field).ok()?.parse::<u32>().ok().filter(|&id| id != u32::MAX)
}

/// C's `isspace` in the C locale, which glibc skips at the start of a line:
/// unlike `u8::is_ascii_whitespace`, it includes the vertical tab.
fn c_space(b: &u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Comments and empty lines, as glibc's "files" service skips them (after
/// leading blanks).
fn skipped(line: &[u8]) -> bool {
    matches!(line.iter().find(|b| !c_space(b)), None | Some(b'#'))
}

/// A line glibc reads as C strings: a NUL ends it there, and the rest of
/// the line is not what this module would read.
fn has_nul(line: &[u8]) -> bool {
    line.contains(&0)
}

fn plain_name(name: &[u8]) -> bool {
    !name.is_empty() && !matches!(name[0], b'+' | b'-') && !name.iter().any(c_space)
}

fn parse_passwd(line: &[u8], uid: u32) -> Line<PasswdEntry> {
    if has_nul(line) {
        return Line::Unsure;
    }
    if skipped(line) {
        return Line::Other;
    }
    let fields: Vec<&[u8]> = line.split(|&b| b == b':').collect();
    let [name, passwd, uid_field, gid_field, gecos, dir, shell] = fields[..] else { return Line::Unsure };
    let (Some(found), Some(gid)) = (plain_id(uid_field), plain_id(gid_field)) else { return Line::Unsure };
    if !plain_name(name) {
        return Line::Unsure;
    }
    if found != uid {
        return Line::Other;
    }
    Line::Match(PasswdEntry {
        name: name.to_vec(),
        passwd: passwd.to_vec(),
        uid,
        gid,
        gecos: gecos.to_vec(),
        dir: dir.to_vec(),
        shell: shell.to_vec(),
    })
}

fn parse_group(line: &[u8], gid: u32) -> Line<GroupEntry> {
    if has_nul(line) {
        return Line::Unsure;
    }
    if skipped(line) {
        return Line::Other;
    }
    let fields: Vec<&[u8]> = line.split(|&b| b == b':').collect();
    let [name, _passwd, gid_field, _members] = fields[..] else { return Line::Unsure };
    let Some(found) = plain_id(gid_field) else { return Line::Unsure };
    if !plain_name(name) {
        return Line::Unsure;
    }
    if found != gid {
        return Line::Other;
    }
    Line::Match(GroupEntry { name: name.to_vec(), gid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_files_first_line_counts() {
        assert!(starts_with_files(b"passwd:         files systemd\ngroup: files\n", b"passwd"));
        assert!(starts_with_files(b"# c\npasswd: files\n", b"passwd"));
        assert!(starts_with_files(b"passwd: files # ldap\n", b"passwd"));
        assert!(!starts_with_files(b"passwd: sss files\n", b"passwd"));
        assert!(!starts_with_files(b"passwd: compat\n", b"passwd"));
        assert!(!starts_with_files(b"passwd: files [SUCCESS=continue] ldap\n", b"passwd"));
        assert!(!starts_with_files(b"passwd: files\npasswd: ldap\n", b"passwd"));
        assert!(!starts_with_files(b"group: files\n", b"passwd"));
        assert!(!starts_with_files(b"#passwd: files\n", b"passwd"));
        assert!(starts_with_files(b"passwd: files ldap\ngroup:files\n", b"group"));
        // glibc ends the name at a blank too: this line is passwd's, not a comment.
        assert!(!starts_with_files(b"passwd: files\npasswd bogus\n", b"passwd"));
        assert!(!starts_with_files(b"passwd bogus\n", b"passwd"));
        assert!(starts_with_files(b"\x0b passwd:\tfiles\n", b"passwd"));
        assert!(!starts_with_files(b"PASSWD: files\n", b"passwd"));
    }

    #[test]
    fn passwd_lines_match_by_uid_and_odd_ones_defer_to_nss() {
        let alice = parse_passwd(b"alice:x:1001:1001:Alice,,,:/home/alice:/bin/bash", 1001);
        let Line::Match(pw) = alice else { panic!("no match: {alice:?}") };
        assert_eq!((pw.name.as_slice(), pw.gid, pw.dir.as_slice()), (&b"alice"[..], 1001, &b"/home/alice"[..]));
        assert_eq!(parse_passwd(b"bob:x:1002:1002::/home/bob:/bin/sh", 1001), Line::Other);
        assert_eq!(parse_passwd(b"  # comment", 1001), Line::Other);
        assert_eq!(parse_passwd(b"", 1001), Line::Other);
        for odd in [
            &b"+alice:x:1001:1001::/home/alice:/bin/sh"[..],
            b"+",
            b"alice:x: 1001:1001::/home/alice:/bin/sh",
            b"alice:x:+1001:1001::/home/alice:/bin/sh",
            b"alice:x:1001:1001::/home/alice:/bin/sh:extra",
            b"alice:x:1001:1001::/home/alice",
            b"alice:x:4294967295:1001::/:/bin/sh",
            b"alice:x:99999999999:1001::/:/bin/sh",
            b" alice:x:1001:1001::/home/alice:/bin/sh",
            // glibc's isspace skips a vertical tab (the name would be "alice").
            b"\x0balice:x:1001:1001::/home/alice:/bin/sh",
            // glibc stops at a NUL (the home and shell would be empty).
            b"alice:x:1001:1001:a\0b:/home/alice:/bin/sh",
            b"# comment\0alice",
        ] {
            assert_eq!(parse_passwd(odd, 1001), Line::Unsure, "{}", String::from_utf8_lossy(odd));
        }
    }

    /// Against glibc on this host: for every id in its files, the answer
    /// given here (files first, or NSS) is NSS's own.
    #[test]
    fn every_answer_for_this_hosts_accounts_is_nss_own() {
        let ids = |path: &str, field: usize| -> Vec<u32> {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            text.lines().filter_map(|l| l.split(':').nth(field)?.parse().ok()).collect()
        };
        let uids = ids(PASSWD, 2);
        assert!(uids.contains(&0), "no root in {PASSWD}");
        for uid in uids.into_iter().chain([65_000, 4_000_000]) {
            assert_eq!(passwd_by_uid(uid).ok(), sys::passwd_by_uid(uid).ok(), "uid {uid}");
        }
        for gid in ids(GROUP, 2).into_iter().chain([65_000]) {
            assert_eq!(group_by_gid(gid).ok(), sys::group_by_gid(gid).ok(), "gid {gid}");
        }
    }

    #[test]
    fn group_lines_match_by_gid() {
        assert_eq!(
            parse_group(b"staff:x:50:alice,bob", 50),
            Line::Match(GroupEntry { name: b"staff".to_vec(), gid: 50 })
        );
        assert_eq!(parse_group(b"users:x:100:", 50), Line::Other);
        assert_eq!(parse_group(b"+:::", 50), Line::Unsure);
        assert_eq!(parse_group(b"users:x:100", 50), Line::Unsure);
        assert_eq!(parse_group(b"\x0bstaff:x:50:", 50), Line::Unsure);
        assert_eq!(parse_group(b"staff:x:50:a\0b", 50), Line::Unsure);
        assert_eq!(parse_group(b"\x0b# comment", 50), Line::Other);
    }
}
