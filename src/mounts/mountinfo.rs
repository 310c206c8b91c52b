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
/// malformed lines are left out.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let id = fields.first()?.parse().ok()?;
            let point = PathBuf::from(OsStr::from_bytes(&unescape_mountinfo(fields.get(4)?)));
            let shared = fields.get(6..)?.iter().take_while(|f| **f != "-").any(|f| f.starts_with("shared:"));
            Some(MountEntry { id, point, shared })
        })
        .collect()
}

/// Every mount in this namespace, from /proc/self/mountinfo.
pub fn mount_table() -> io::Result<Vec<MountEntry>> {
    Ok(parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo")?))
}

/// mountinfo's octal escapes (`\040` for a space, ...).
fn unescape_mountinfo(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
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
        let text = "30 20 0:1 / /run/a\\040b rw shared:5 - ext4 x rw\n31 20 0:1 / /x rw master:2 - ext4 x rw\nbad\n";
        let entry = |id, point: &str, shared| MountEntry { id, point: point.into(), shared };
        assert_eq!(parse_mountinfo(text), [entry(30, "/run/a b", true), entry(31, "/x", false)]);
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/a\\040b\\011c"), b"/a b\tc");
        assert_eq!(unescape_mountinfo("/plain"), b"/plain");
        assert_eq!(unescape_mountinfo("/odd\\04"), b"/odd\\04");
    }
}
