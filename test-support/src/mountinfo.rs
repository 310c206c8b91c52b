//! The mount table, from `/proc/PID/mountinfo` (proc(5)).

use std::fs;
use std::path::Path;

/// One line of a mountinfo table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The directory of the source filesystem that is mounted (field 4), decoded.
    pub root: String,
    /// The mount point (field 5), octal escapes (`\040` for a space) decoded.
    pub point: String,
    /// The per-mount options (field 6), e.g. `rw,nosuid,nodev`.
    pub options: String,
    pub fs_type: String,
    pub source: String,
    /// The whole line, as the kernel wrote it.
    pub line: String,
}

impl Mount {
    pub fn has_option(&self, option: &str) -> bool {
        self.options.split(',').any(|o| o == option)
    }

    /// Whether the mount point is `dir` or lies below it.
    pub fn is_under(&self, dir: &str) -> bool {
        let dir = dir.trim_end_matches('/');
        self.point == dir || self.point.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
    }
}

/// A mountinfo table's text, parsed; lines that are not mountinfo lines are skipped.
pub fn parse(table: &str) -> Vec<Mount> {
    table.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mount> {
    let fields: Vec<&str> = line.split(' ').collect();
    let separator = fields.iter().position(|f| *f == "-")?;
    if separator < 6 {
        return None;
    }
    Some(Mount {
        root: unescape(fields[3]),
        point: unescape(fields[4]),
        options: fields[5].to_string(),
        fs_type: fields.get(separator + 1)?.to_string(),
        source: unescape(fields.get(separator + 2)?),
        line: line.to_string(),
    })
}

fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) if bytes[i] == b'\\' => {
                out.push(d.iter().fold(0u8, |n, b| n.wrapping_mul(8) + (b - b'0')));
                i += 4;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The test process's own mount table, as text (for comparing before and
/// after), without the pins imageswitch publishes on purpose (see
/// [`without_pins`]).
pub fn own_text() -> String {
    without_pins(&fs::read_to_string("/proc/self/mountinfo").expect("/proc/self/mountinfo"))
}

/// Where imageswitch keeps its pinned namespaces and markers, mounts it makes
/// in the caller's namespace on purpose (imageswitch(8), PINNED NAMESPACES).
pub const PIN_DIR: &str = "/run/imageswitch/pins";

/// `table` (mountinfo text) without the lines of [`PIN_DIR`] and what is
/// mounted in it: the only mounts an entry leaves in the caller's namespace,
/// root's alone, checked by tests/pin.rs.
pub fn without_pins(table: &str) -> String {
    table
        .lines()
        .filter(|line| line.split(' ').nth(4).is_none_or(|point| !Path::new(point).starts_with(PIN_DIR)))
        .map(|line| format!("{line}\n"))
        .collect()
}

/// The test process's own mount table.
pub fn own() -> Vec<Mount> {
    parse(&own_text())
}

/// Another process's mount table (its mount namespace's), as text.
pub fn text_of(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("/proc/PID/mountinfo")
}

/// Another process's mount table (its mount namespace's).
pub fn of(pid: u32) -> Vec<Mount> {
    parse(&text_of(pid))
}

/// The mount on top at `point` (the last one mounted there), if any.
pub fn top<'a>(table: &'a [Mount], point: &str) -> Option<&'a Mount> {
    table.iter().rev().find(|m| m.point == point)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
25 22 0:5 / /dev rw,nosuid,relatime shared:2 - devtmpfs udev rw,size=10k
61 22 0:45 / /srv/with\\040space rw,nosuid,nodev - tmpfs my\\134src rw
62 22 0:46 / /tmp rw,nosuid,nodev master:3 propagate_from:1 - tmpfs tmpfs rw
63 22 0:47 / /tmp ro,nosuid,nodev,noexec - tmpfs tmpfs ro
";

    #[test]
    fn fields_are_read_whatever_the_optional_fields() {
        let table = parse(TABLE);
        assert_eq!(table.len(), 5);
        assert_eq!((table[1].root.as_str(), table[1].point.as_str()), ("/", "/dev"));
        assert_eq!(table[1].options, "rw,nosuid,relatime");
        assert_eq!((table[1].fs_type.as_str(), table[1].source.as_str()), ("devtmpfs", "udev"));
        assert_eq!(table[3].fs_type, "tmpfs", "two optional fields before the separator");
        assert_eq!(table[0].line, TABLE.lines().next().unwrap());
    }

    #[test]
    fn escaped_spaces_and_backslashes_are_decoded() {
        let table = parse(TABLE);
        assert_eq!(table[2].point, "/srv/with space");
        assert_eq!(table[2].source, "my\\src");
        assert_eq!(unescape("\\0"), "\\0", "too short to be an escape");
        assert_eq!(unescape("a\\x41"), "a\\x41");
    }

    #[test]
    fn options_match_whole_words_only() {
        let dev = &parse(TABLE)[1];
        assert!(dev.has_option("nosuid"));
        assert!(!dev.has_option("nodev"));
        assert!(!dev.has_option("suid"));
    }

    #[test]
    fn under_means_the_directory_or_below_it_never_a_sibling_with_the_same_prefix() {
        let tmp = &parse(TABLE)[3];
        assert!(tmp.is_under("/tmp") && tmp.is_under("/tmp/") && tmp.is_under("/"));
        assert!(!tmp.is_under("/tm"));
        assert!(!tmp.is_under("/tmp/sub"));
    }

    #[test]
    fn the_top_mount_is_the_last_one_at_a_point() {
        let table = parse(TABLE);
        assert_eq!(top(&table, "/tmp").map(|m| m.options.as_str()), Some("ro,nosuid,nodev,noexec"));
        assert!(top(&table, "/home").is_none());
    }

    #[test]
    fn lines_that_are_not_mountinfo_are_skipped() {
        assert!(parse("garbage\n1 2 3 4 5 - x\n\n").is_empty());
    }
}
