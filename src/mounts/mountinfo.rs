//! The mount table of this namespace, from /proc/self/mountinfo.
#![forbid(unsafe_code)]

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// One line of /proc/PID/mountinfo (proc_pid_mountinfo(5)): what this
/// crate reads of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Field 1, the mount id.
    pub id: u64,
    /// Field 5, the mount point, unescaped.
    pub point: PathBuf,
    /// Whether an optional field says `shared:N`: mounts and unmounts under
    /// it propagate to its peers and slaves.
    pub shared: bool,
}

/// The mounts listed in `text`, a mountinfo file's contents, in order;
/// malformed lines are left out. The kernel escapes only space, tab,
/// newline and backslash in a path (`\ooo`); any other byte, UTF-8 or not,
/// is the path's own, so the text is read as bytes.
pub fn parse_mountinfo(text: &[u8]) -> Vec<MountEntry> {
    text.split(|b| *b == b'\n')
        .filter_map(|line| {
            let fields: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
            let id = std::str::from_utf8(fields.first()?).ok()?.parse().ok()?;
            let point = PathBuf::from(OsStr::from_bytes(&unescape_mountinfo(fields.get(4)?)));
            let shared = fields.get(6..)?.iter().take_while(|f| **f != b"-").any(|f| f.starts_with(b"shared:"));
            Some(MountEntry { id, point, shared })
        })
        .collect()
}

/// Every mount in this namespace, from /proc/self/mountinfo.
pub fn mount_table() -> io::Result<Vec<MountEntry>> {
    Ok(parse_mountinfo(&std::fs::read("/proc/self/mountinfo")?))
}

/// mountinfo's octal escapes (`\040` for a space, ...).
fn unescape_mountinfo(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        match (bytes[i], octal) {
            (b'\\', Some(value)) => {
                out.push(value);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_unescaped_and_know_whether_they_are_shared() {
        let text = b"30 20 0:1 / /run/a\\040b rw shared:5 - ext4 x rw\n31 20 0:1 / /x rw master:2 - ext4 x rw\nbad\n";
        let entry = |id, point: &str, shared| MountEntry { id, point: point.into(), shared };
        assert_eq!(parse_mountinfo(text), [entry(30, "/run/a b", true), entry(31, "/x", false)]);
    }

    #[test]
    fn a_mount_point_that_is_not_utf8_is_read_as_its_bytes() {
        let text = b"30 20 0:1 / /mnt/caf\xe9 rw shared:5 - ext4 x rw\n31 20 0:1 / /x rw - ext4 x rw\n";
        let table = parse_mountinfo(text);
        assert_eq!(table.len(), 2);
        assert_eq!(table[0].point.as_os_str().as_bytes(), b"/mnt/caf\xe9");
        assert!(table[0].shared);
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(b"/a\\040b\\011c"), b"/a b\tc");
        assert_eq!(unescape_mountinfo(b"/plain"), b"/plain");
        assert_eq!(unescape_mountinfo(b"/odd\\04"), b"/odd\\04");
    }
}
