//! One audit line per switch (and per refusal) to the host's syslog socket,
//! facility authpriv. Written by hand: libc's syslog(3) would consult time
//! zone and locale data while we are privileged.
#![forbid(unsafe_code)]

use std::os::unix::net::UnixDatagram;
use std::path::Path;

/// authpriv (10) * 8 + info (6).
const AUTHPRIV_INFO: u8 = 86;
/// authpriv (10) * 8 + warning (4).
const AUTHPRIV_WARNING: u8 = 84;
const MAX_MESSAGE: usize = 2048;

#[derive(Debug, Clone, Copy)]
pub enum Severity {
    Info,
    Warning,
}

/// Makes caller-controlled text safe for one log line: no control bytes.
pub fn escape(text: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for chunk in text.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
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

/// Sends one record to `socket`. Logging is best effort: a host without a
/// syslog daemon must not stop people from working.
pub fn send(socket: &Path, severity: Severity, message: &str) {
    if let Ok(sock) = UnixDatagram::unbound() {
        let _ = sock.send_to(&format_record(severity, std::process::id(), message), socket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_has_authpriv_priority_and_tag() {
        let rec = format_record(Severity::Info, 42, "user=alice sysroot=sl5");
        assert_eq!(rec, b"<86>imageswitch[42]: user=alice sysroot=sl5");
        assert!(format_record(Severity::Warning, 1, "x").starts_with(b"<84>"));
    }

    #[test]
    fn escape_removes_control_bytes() {
        assert_eq!(escape(b"a\nb\x1b[31m"), "a\\nb\\u{1b}[31m");
        assert_eq!(escape(b"\xffok"), "\\xffok");
    }

    #[test]
    fn records_are_bounded() {
        assert_eq!(format_record(Severity::Info, 1, &"x".repeat(10_000)).len(), MAX_MESSAGE);
    }

    #[test]
    fn reaches_a_real_listener() {
        let dir = std::env::temp_dir().join(format!("imageswitch-syslog-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("log");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).expect("bind");
        send(&path, Severity::Info, "hello");
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).expect("recv");
        assert!(buf[..n].ends_with(b"]: hello"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
