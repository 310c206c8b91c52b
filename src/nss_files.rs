//! The host's passwd and group entries for one id, read from `/etc/passwd`
//! and `/etc/group` directly when NSS would answer from those files anyway,
//! and through NSS (`getpwuid_r`, `getgrgid_r`) otherwise.
//!
//! A first NSS lookup in a new process costs more than the whole of the rest
//! of an entry's identity work (about 60 µs here: nscd's socket tried twice,
//! `nsswitch.conf` parsed, the "files" service set up), and imageswitch is a
//! new process every time. When `nsswitch.conf` lists `files` first for the
//! database, with no action after it, and the whole file has the plain shape
//! read here exactly as glibc reads it ([`files_first_in`]), NSS returns the first entry of that
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
    *ANSWER.get_or_init(|| read(NSSWITCH).map_or((false, false), |text| files_first_in(&text)))
}

fn read(path: &str) -> Option<Vec<u8>> {
    let file = std::fs::File::open(path).ok()?;
    let bytes = sys::read_all(&file, 8 << 10, MAX_BYTES).ok()?;
    (bytes.len() <= MAX_BYTES).then_some(bytes)
}

/// Whether `passwd` and `group` each list `files` first, with no action
/// after it, in `nsswitch.conf` text: `(false, false)` unless the whole file
/// has the plain shape this reads exactly as glibc does (nss/nss_database.c:
/// a database name, a colon, services that are plain words, each optionally
/// followed by well-formed `[STATUS=ACTION]` items; lines that start with
/// `#` after blanks). glibc reads a `#` inside a line as part of a word, a
/// name may end at a blank instead of a colon, and one malformed line for
/// any database makes it drop the whole file: none of that is guessed at
/// here. A database named twice, or not at all (glibc's built-in default),
/// says no for it.
fn files_first_in(text: &[u8]) -> (bool, bool) {
    let (mut passwd, mut group) = (None, None);
    for line in text.split(|&b| b == b'\n') {
        let Some(start) = line.iter().position(|b| !c_space(b)) else { continue };
        let line = &line[start..];
        if line[0] == b'#' {
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else { return (false, false) };
        let (name, services) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() || !name.iter().all(plain) {
            return (false, false);
        }
        let Some(first_is_files) = first_service_is_plain_files(services) else { return (false, false) };
        let slot = match name {
            b"passwd" => &mut passwd,
            b"group" => &mut group,
            _ => continue,
        };
        if slot.replace(first_is_files).is_some() {
            return (false, false);
        }
    }
    (passwd == Some(true), group == Some(true))
}

/// A byte of a database or service name.
fn plain(b: &u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// Whether a services list (after the colon) starts with `files` and no
/// action item right after it; `None` when the list is not one of plain
/// words and well-formed `[[!]STATUS=ACTION ...]` items (nsswitch.conf(5)).
fn first_service_is_plain_files(services: &[u8]) -> Option<bool> {
    let mut words: Vec<&[u8]> = Vec::new();
    let mut action_after: Vec<bool> = Vec::new();
    let mut rest = services;
    while let Some(start) = rest.iter().position(|b| !c_space(b)) {
        rest = &rest[start..];
        if rest[0] == b'[' {
            let close = rest.iter().position(|&b| b == b']')?;
            let items = &rest[1..close];
            let mut any = false;
            for item in items.split(c_space).filter(|i| !i.is_empty()) {
                let item = item.strip_prefix(b"!").unwrap_or(item);
                let eq = item.iter().position(|&b| b == b'=')?;
                let (status, action) = (&item[..eq], &item[eq + 1..]);
                let known = |word: &[u8], among: &[&str]| among.iter().any(|w| word.eq_ignore_ascii_case(w.as_bytes()));
                if !known(status, &["success", "notfound", "unavail", "tryagain"])
                    || !known(action, &["return", "continue", "merge"])
                {
                    return None;
                }
                any = true;
            }
            if !any || words.is_empty() {
                return None;
            }
            *action_after.last_mut()? = true;
            rest = &rest[close + 1..];
            continue;
        }
        let end = rest.iter().position(c_space).unwrap_or(rest.len());
        let word = &rest[..end];
        if !word.iter().all(plain) {
            return None;
        }
        words.push(word);
        action_after.push(false);
        rest = &rest[end..];
    }
    let first = *words.first()?;
    Some(first == b"files" && !action_after[0])
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

/// A line's `:`-separated fields, or what it is when it has none to read:
/// a comment or empty line, or one with a NUL.
fn fields<T>(line: &[u8]) -> Result<Vec<&[u8]>, Line<T>> {
    if has_nul(line) {
        return Err(Line::Unsure);
    }
    if skipped(line) {
        return Err(Line::Other);
    }
    Ok(line.split(|&b| b == b':').collect())
}

fn plain_name(name: &[u8]) -> bool {
    !name.is_empty() && !matches!(name[0], b'+' | b'-') && !name.iter().any(c_space)
}

fn parse_passwd(line: &[u8], uid: u32) -> Line<PasswdEntry> {
    let fields = match fields(line) {
        Ok(fields) => fields,
        Err(skip) => return skip,
    };
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
    let fields = match fields(line) {
        Ok(fields) => fields,
        Err(skip) => return skip,
    };
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
        let passwd = |text: &[u8]| files_first_in(text).0;
        assert_eq!(files_first_in(b"passwd:         files systemd\ngroup: files\n"), (true, true));
        assert!(passwd(b"# c\n  # indented comment [x\npasswd: files\n"));
        assert!(passwd(b"\x0b passwd:\tfiles\n"));
        assert!(passwd(b"passwd: files\nhosts: files mdns4_minimal [NOTFOUND=return] dns\n"));
        assert!(passwd(b"passwd: files\nhosts: files [!UNAVAIL=return notfound=Continue] dns\n"));
        assert!(!passwd(b"passwd: sss files\n"));
        assert!(!passwd(b"passwd: compat\n"));
        assert!(!passwd(b"passwd: files [SUCCESS=continue] ldap\n"));
        assert!(!passwd(b"passwd: files\npasswd: ldap\n"), "named twice");
        assert!(!passwd(b"group: files\n"), "not named: glibc's default");
        assert!(!passwd(b"#passwd: files\n"));
        assert!(!passwd(b"PASSWD: files\n"));
        // What glibc reads otherwise, or drops the whole file for: not guessed at.
        assert!(!passwd(b"passwd: files # ldap\n"), "a '#' inside a line is part of a word to glibc");
        assert!(!passwd(b"passwd: files#X systemd\n"));
        assert!(!passwd(b"passwd: files\npasswd bogus\n"), "a name ends at a blank too");
        assert!(!passwd(b"passwd: files systemd\nhosts: files [NOTFOUND=bogus]\n"), "one bad line drops the file");
        assert!(!passwd(b"passwd: files\ngroup: files ldap [\n"));
        assert!(!passwd(b"passwd: files\nhosts: files []\n"));
        assert!(files_first_in(b"passwd: files ldap\ngroup:files\n").1);
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
