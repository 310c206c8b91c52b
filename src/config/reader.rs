//! The span-keeping reader: TOML values with the position each was written
//! at, and the [`ConfigError`] that names it as `FILE:LINE:COL`. Shared
//! with sysrootctl's `build` tables, so both report positions alike.
#![forbid(unsafe_code)]

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

use toml::Spanned;
use toml::de::DeValue;

use super::{Positions, is_clean_absolute};

/// A configuration problem with its position: `FILE:LINE:COL: MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Turns byte offsets into `file:line:col` errors.
pub(super) struct Source<'a> {
    pub(super) file: &'a str,
    pub(super) text: &'a str,
}

impl Source<'_> {
    pub(super) fn error(&self, span: &Range<usize>, message: impl Into<String>) -> ConfigError {
        error_at(self.file, self.text, span, message)
    }
}

/// A [`ConfigError`] at the start of `span` in `text` (line and column count
/// from 1; columns in characters). Shared with sysrootctl's `build` tables.
pub fn error_at(file: &str, text: &str, span: &Range<usize>, message: impl Into<String>) -> ConfigError {
    let offset = span.start.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
    ConfigError { file: file.to_string(), line, column, message: message.into() }
}

/// "a string", "an integer", ...: for messages about a value of the wrong type.
pub fn type_name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

pub(super) type Entry<'i> = (&'i Spanned<toml::de::DeString<'i>>, &'i Spanned<DeValue<'i>>);

pub(super) fn expect_str<'a>(
    src: &Source<'_>,
    key: &str,
    value: &'a Spanned<DeValue<'_>>,
) -> Result<&'a str, ConfigError> {
    match value.get_ref() {
        DeValue::String(s) => Ok(s.as_ref()),
        other => Err(src.error(&value.span(), format!("\"{key}\" must be a string, found {}", type_name(other)))),
    }
}

pub(super) fn expect_bool(src: &Source<'_>, key: &str, value: &Spanned<DeValue<'_>>) -> Result<bool, ConfigError> {
    match value.get_ref() {
        DeValue::Boolean(b) => Ok(*b),
        other => Err(src.error(&value.span(), format!("\"{key}\" must be true or false, found {}", type_name(other)))),
    }
}

pub(super) fn expect_path(src: &Source<'_>, key: &str, value: &Spanned<DeValue<'_>>) -> Result<PathBuf, ConfigError> {
    let text = expect_str(src, key, value)?;
    if !is_clean_absolute(text) {
        return Err(src.error(
            &value.span(),
            format!("\"{key}\" must be an absolute path without \".\", \"..\" or repeated slashes, found \"{text}\""),
        ));
    }
    Ok(PathBuf::from(text))
}

/// An array of strings, each checked by `check` (which says what is wrong).
pub(super) fn expect_list<T>(
    src: &Source<'_>,
    key: &str,
    value: &Spanned<DeValue<'_>>,
    check: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, ConfigError> {
    let DeValue::Array(items) = value.get_ref() else {
        return Err(
            src.error(&value.span(), format!("\"{key}\" must be an array, found {}", type_name(value.get_ref())))
        );
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items.iter() {
        let text = expect_str(src, key, item)?;
        out.push(check(text).map_err(|why| src.error(&item.span(), format!("in \"{key}\": {why}")))?);
    }
    Ok(out)
}

/// Where each string of a list that [`expect_list`] accepted was written
/// (the first time, for one written twice).
pub(super) fn positions(src: &Source<'_>, value: &Spanned<DeValue<'_>>) -> Positions {
    let mut out = Positions::new();
    if let DeValue::Array(items) = value.get_ref() {
        for item in items.iter() {
            if let DeValue::String(text) = item.get_ref() {
                let at = src.error(&item.span(), "");
                out.entry(PathBuf::from(text.as_ref())).or_insert((at.line, at.column));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters_from_one() {
        let text = "a = 1\n# é\nb = \"x\"\n";
        let at = |offset: usize| {
            let err = error_at("f", text, &(offset..offset + 1), "m");
            (err.line, err.column)
        };
        assert_eq!(at(0), (1, 1));
        assert_eq!(at(4), (1, 5));
        assert_eq!(at(6), (2, 1));
        // After "# é" (4 bytes, 3 characters) the column counts characters.
        assert_eq!(at(10), (2, 4));
        assert_eq!(at(11), (3, 1));
        // A span past the end (an error at end of input) stays on the last line.
        assert_eq!(at(10_000), (4, 1));
    }

    #[test]
    fn an_error_without_a_position_names_only_the_file() {
        let placed = error_at("/etc/sysroots.toml", "x = 1\n", &(4..5), "bad");
        assert_eq!(placed.to_string(), "/etc/sysroots.toml:1:5: bad");
        let unplaced = ConfigError { line: 0, column: 0, ..placed };
        assert_eq!(unplaced.to_string(), "/etc/sysroots.toml: bad");
    }
}
