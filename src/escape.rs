//! Caller text made safe for one line, of a message or a log record: the
//! one escaper every message, audit record and warning uses.
#![forbid(unsafe_code)]

/// Unicode format characters (general category Cf): bidirectional controls,
/// zero-width characters, tags. Invisible, or reordering what follows.
const FORMAT: &[(char, char)] = &[
    ('\u{ad}', '\u{ad}'),
    ('\u{600}', '\u{605}'),
    ('\u{61c}', '\u{61c}'),
    ('\u{6dd}', '\u{6dd}'),
    ('\u{70f}', '\u{70f}'),
    ('\u{890}', '\u{891}'),
    ('\u{8e2}', '\u{8e2}'),
    ('\u{180e}', '\u{180e}'),
    ('\u{200b}', '\u{200f}'),
    ('\u{202a}', '\u{202e}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206f}'),
    ('\u{feff}', '\u{feff}'),
    ('\u{fff9}', '\u{fffb}'),
    ('\u{110bd}', '\u{110bd}'),
    ('\u{110cd}', '\u{110cd}'),
    ('\u{13430}', '\u{1343f}'),
    ('\u{1bca0}', '\u{1bca3}'),
    ('\u{1d173}', '\u{1d17a}'),
    ('\u{e0001}', '\u{e0001}'),
    ('\u{e0020}', '\u{e007f}'),
];

/// Characters escaped in caller text: controls, Unicode format characters,
/// and every separator or space except the ASCII space (line and paragraph
/// separators, no-break and wide spaces).
pub(crate) fn needs_escape(c: char) -> bool {
    c.is_control() || (!c.is_ascii() && (c.is_whitespace() || FORMAT.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))))
}

/// Makes caller-controlled text safe for one line, of a message or a log
/// record: controls, Unicode format characters and separators shown as
/// escapes (`\n`, `\u{202e}`), bytes that are not UTF-8 as `\xNN`.
pub fn escape(text: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for chunk in text.utf8_chunks() {
        for c in chunk.valid().chars() {
            if needs_escape(c) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_removes_control_bytes() {
        assert_eq!(escape(b"a\nb\x1b[31m"), "a\\nb\\u{1b}[31m");
        assert_eq!(escape(b"\xffok"), "\\xffok");
    }

    #[test]
    fn escape_shows_unicode_separators_and_bidi_controls() {
        let text = "a\u{2028}b\u{2029}c\u{202e}d\u{2066}e\u{200b}f\u{85}g\u{a0}h\u{feff}i\u{e0041}j k é";
        assert_eq!(
            escape(text.as_bytes()),
            "a\\u{2028}b\\u{2029}c\\u{202e}d\\u{2066}e\\u{200b}f\\u{85}g\\u{a0}h\\u{feff}i\\u{e0041}j k é"
        );
    }
}
