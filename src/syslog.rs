//! One audit line per switch (and per refusal) to the host's syslog socket,
//! facility authpriv. Written by hand: libc's syslog(3) would consult time
//! zone and locale data while we are privileged.
#![forbid(unsafe_code)]

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::escape::needs_escape;

/// authpriv (10) * 8 + info (6).
const AUTHPRIV_INFO: u8 = 86;
/// authpriv (10) * 8 + warning (4).
const AUTHPRIV_WARNING: u8 = 84;
const MAX_MESSAGE: usize = 2048;

/// Where a record goes when the socket cannot take it at once: the kernel
/// log never refuses a record or waits (it overwrites its oldest), only
/// root writes it, and journald or rsyslog read it.
pub const KERNEL_LOG: &str = "/dev/kmsg";
/// Says whether only root (`CAP_SYSLOG`) may read the kernel log.
const KERNEL_LOG_RESTRICTED: &str = "/proc/sys/kernel/dmesg_restrict";
/// The longest write every kernel takes as one record (`LOG_LINE_MAX`,
/// 1024 less the 48-byte prefix of kernels with the caller id).
const KERNEL_LOG_MAX: usize = 976;

#[derive(Debug, Clone, Copy)]
pub enum Severity {
    Info,
    Warning,
}

/// The datagram for `message`, RFC 3164 style without a timestamp (the
/// daemon adds its own).
pub fn format_record(severity: Severity, pid: u32, message: &str) -> Vec<u8> {
    let priority = match severity {
        Severity::Info => AUTHPRIV_INFO,
        Severity::Warning => AUTHPRIV_WARNING,
    };
    let mut record = format!("<{priority}>imageswitch[{pid}]: {message}").into_bytes();
    record.truncate(MAX_MESSAGE);
    record
}

/// What became of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    /// No daemon listens there: nothing to report (a host without syslog).
    NoReceiver,
    /// A receiver exists but cannot take the record now: its queue is full,
    /// which any user can make it.
    Full,
}

/// Sends one record to `socket`, never waiting: a stalled receiver must not
/// hang an entry (with every signal held, nobody could interrupt it).
pub fn send(socket: &Path, severity: Severity, message: &str) -> Delivery {
    let Ok(sock) = crate::sys::nonblocking_datagram_socket() else { return Delivery::NoReceiver };
    match sock.send_to(&format_record(severity, std::process::id(), message), socket) {
        Ok(_) => Delivery::Sent,
        Err(err) if matches!(err.raw_os_error(), Some(libc::EAGAIN | libc::ENOBUFS)) => Delivery::Full,
        Err(_) => Delivery::NoReceiver,
    }
}

/// Sends one record to `socket`. One the socket cannot take at once (any
/// user can fill its queue) goes to the kernel log, unless users may read
/// that. Returns, for such a record, what became of it, for the caller.
pub fn record(socket: &Path, severity: Severity, message: &str) -> Option<&'static str> {
    if send(socket, severity, message) != Delivery::Full {
        return None;
    }
    Some(if !kernel_log_is_private() {
        "audit record dropped: the kernel log is readable by every user (kernel.dmesg_restrict=0)"
    } else if to_kernel_log(Path::new(KERNEL_LOG), severity, message) {
        "audit record written to the kernel log"
    } else {
        "audit record dropped: the kernel log did not take it either"
    })
}

/// Whether a record in the kernel log stays as private as one in authpriv:
/// only with `kernel.dmesg_restrict` set can users not read it.
pub fn kernel_log_is_private() -> bool {
    std::fs::read(KERNEL_LOG_RESTRICTED).is_ok_and(|v| v.trim_ascii() == b"1")
}

/// Writes one record to `kernel_log` ([`KERNEL_LOG`]) in one write, one
/// kernel log record, without waiting; opened (as every file std opens)
/// close-on-exec. Says whether it was taken.
pub fn to_kernel_log(kernel_log: &Path, severity: Severity, message: &str) -> bool {
    let record = kernel_log_record(&format_record(severity, std::process::id(), message));
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(kernel_log)
        .and_then(|mut log| log.write(&record))
        .is_ok()
}

/// `record` cut to [`KERNEL_LOG_MAX`] at a character boundary, ending `...`
/// when cut (only the end goes: the fields kept read as they were sent),
/// then a newline: without one the kernel holds the record back for a
/// continuation, unseen by readers.
fn kernel_log_record(record: &[u8]) -> Vec<u8> {
    let room = KERNEL_LOG_MAX - 1;
    let mut out = if record.len() <= room {
        record.to_vec()
    } else {
        let mut end = room - 3;
        while record[end] & 0xc0 == 0x80 {
            end -= 1;
        }
        [&record[..end], b"..."].concat()
    };
    out.push(b'\n');
    out
}

/// Most bytes of each field of an audit record; together with the tag they
/// fit [`MAX_MESSAGE`], so no field is ever cut off by another.
pub const FIELD_USER: usize = 96;
pub const FIELD_SYSROOT: usize = 96;
pub const FIELD_COMMAND: usize = 1024;
pub const FIELD_CWD: usize = 640;

/// `key=value` for an audit record. The value is escaped as [`crate::escape::escape`] does,
/// with `"` and `\` also escaped, cut at `max` bytes (ending `...`), and
/// quoted when it holds a space, `=` or `"` or is empty: caller text can
/// never end a field or start another.
pub fn field(key: &str, value: &[u8], max: usize) -> String {
    let mut body = String::new();
    let mut quote = value.is_empty();
    'chunks: for chunk in value.utf8_chunks() {
        let pieces = chunk.valid().chars().map(|c| match c {
            '"' | '\\' => format!("\\{c}"),
            c if needs_escape(c) => c.escape_default().to_string(),
            c => c.to_string(),
        });
        for piece in pieces.chain(chunk.invalid().iter().map(|b| format!("\\x{b:02x}"))) {
            if body.len() + piece.len() > max.saturating_sub(3) {
                body.push_str("...");
                break 'chunks;
            }
            quote |= piece == " " || piece == "=" || piece.starts_with("\\\"");
            body.push_str(&piece);
        }
    }
    if quote { format!("{key}=\"{body}\"") } else { format!("{key}={body}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory for `test`, and a datagram socket listening in it.
    fn listening(test: &str) -> (std::path::PathBuf, std::path::PathBuf, std::os::unix::net::UnixDatagram) {
        let dir = std::env::temp_dir().join(format!("imageswitch-syslog-{test}-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("log");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
        (dir, path, listener)
    }

    #[test]
    fn record_has_authpriv_priority_and_tag() {
        let rec = format_record(Severity::Info, 42, "user=alice sysroot=sl5");
        assert_eq!(rec, b"<86>imageswitch[42]: user=alice sysroot=sl5");
        assert!(format_record(Severity::Warning, 1, "x").starts_with(b"<84>"));
    }

    #[test]
    fn records_are_bounded() {
        assert_eq!(format_record(Severity::Info, 1, &"x".repeat(10_000)).len(), MAX_MESSAGE);
    }

    #[test]
    fn fields_cannot_be_forged_and_always_fit() {
        assert_eq!(field("cwd", b"/home/a", 64), "cwd=/home/a");
        assert_eq!(field("cwd", b"/tmp/x user=root uid=0", 64), "cwd=\"/tmp/x user=root uid=0\"");
        assert_eq!(field("cwd", b"/tmp/a\" uid=0 \"", 64), "cwd=\"/tmp/a\\\" uid=0 \\\"\"");
        assert_eq!(field("cwd", b"a\\", 64), "cwd=a\\\\");
        assert_eq!(field("cwd", b"", 64), "cwd=\"\"");
        assert_eq!(field("cwd", "x\u{2028}uid=0".as_bytes(), 64), "cwd=\"x\\u{2028}uid=0\"");
        let long = field("cwd", "é".repeat(5000).as_bytes(), 640);
        assert!(long.len() <= "cwd=".len() + 640 && long.ends_with("é..."), "{long}");
        let most = "<86>imageswitch[4194304]: ".len() + 4 * "command=\"\" ".len();
        assert!(most + FIELD_USER + FIELD_SYSROOT + FIELD_COMMAND + FIELD_CWD + 20 <= MAX_MESSAGE);
    }

    #[test]
    fn a_full_receiver_refuses_the_record_at_once() {
        let (dir, path, _listener) = listening("full");
        let mut sent = 0;
        while send(&path, Severity::Info, "filling") == Delivery::Sent {
            sent += 1;
        }
        assert!(sent > 0);
        assert_eq!(send(&path, Severity::Info, "one more"), Delivery::Full);
        assert_eq!(send(&dir.join("nobody"), Severity::Info, "x"), Delivery::NoReceiver);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_kernel_log_record_is_one_line_in_one_write() {
        let dir = std::env::temp_dir().join(format!("imageswitch-syslog-kmsg-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let kernel_log = dir.join("kmsg");
        std::fs::write(&kernel_log, b"").expect("kernel log stand-in");
        assert!(to_kernel_log(&kernel_log, Severity::Warning, "refused: user=bob"));
        let expected = format!("<84>imageswitch[{}]: refused: user=bob\n", std::process::id());
        assert_eq!(std::fs::read_to_string(&kernel_log).expect("read"), expected);
        assert!(!to_kernel_log(&dir.join("none"), Severity::Info, "x"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn kernel_log_records_fit_one_write_and_only_lose_their_end() {
        let short = format_record(Severity::Info, 1, "user=alice");
        assert_eq!(kernel_log_record(&short), b"<86>imageswitch[1]: user=alice\n");
        let long = format_record(Severity::Info, 1, &format!("user=alice command={}", "é".repeat(1000)));
        let cut = kernel_log_record(&long);
        assert!(cut.len() <= KERNEL_LOG_MAX && cut.ends_with("é...\n".as_bytes()), "{}", cut.len());
        assert!(long.starts_with(&cut[..cut.len() - 4]));
    }

    #[test]
    fn reaches_a_real_listener() {
        let (dir, path, listener) = listening("test");
        assert_eq!(send(&path, Severity::Info, "hello"), Delivery::Sent);
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).expect("recv");
        assert!(buf[..n].ends_with(b"]: hello"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
