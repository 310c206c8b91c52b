//! What the audit records say: who entered which sysroot, with which command,
//! from where; who was refused. Every field is bounded and escaped (see
//! [`syslog::field`]), so caller text can neither forge nor push out another;
//! [`crate::syslog`] sends them.
#![forbid(unsafe_code)]

use std::os::unix::ffi::OsStrExt;

use crate::access::Caller;
use crate::dispatch::Command;
use crate::syslog::{self, field};

/// The record of an entry: `user= uid= sysroot= command= cwd=`.
pub fn entry(caller: &Caller, sysroot: &str, command: &Command, cwd: &[u8]) -> String {
    format!("{} {} {}", who(caller, sysroot), command_field(command), field("cwd", cwd, syslog::FIELD_CWD))
}

/// The record of a refusal: the caller may not enter `sysroot`.
pub fn refusal(caller: &Caller, sysroot: &str) -> String {
    format!("refused: {}", who(caller, sysroot))
}

/// `user= uid= sysroot=`, each bounded.
fn who(caller: &Caller, sysroot: &str) -> String {
    format!(
        "{} uid={} {}",
        field("user", caller.name.as_bytes(), syslog::FIELD_USER),
        caller.uid,
        field("sysroot", sysroot.as_bytes(), syslog::FIELD_SYSROOT)
    )
}

/// The command as one field: its words, space-separated, bounded; only the
/// first [`syslog::FIELD_COMMAND`] bytes' worth is looked at.
fn command_field(command: &Command) -> String {
    let words: Vec<&[u8]> = match command {
        Command::LoginShell => vec![b"<login shell>"],
        Command::Shell(args) => {
            std::iter::once(b"<shell>".as_slice()).chain(args.iter().map(|a| a.as_bytes())).collect()
        }
        Command::Program { program, args } | Command::LoginProgram { program, args } => {
            std::iter::once(program).chain(args.iter()).map(|a| a.as_bytes()).collect()
        }
    };
    let mut text = Vec::new();
    for word in words {
        if text.len() > syslog::FIELD_COMMAND {
            break;
        }
        if !text.is_empty() {
            text.push(b' ');
        }
        text.extend_from_slice(word);
    }
    field("command", &text, syslog::FIELD_COMMAND)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::tests::alice;
    use std::ffi::OsString;

    #[test]
    fn an_entry_record_names_who_what_and_where() {
        let program = Command::Program { program: "ls".into(), args: vec!["-l".into(), "a b".into()] };
        assert_eq!(
            entry(&alice(), "sl5", &program, b"/work/run 1"),
            "user=alice uid=1000 sysroot=sl5 command=\"ls -l a b\" cwd=\"/work/run 1\""
        );
        assert_eq!(
            entry(&alice(), "sl5", &Command::LoginShell, b"/w"),
            "user=alice uid=1000 sysroot=sl5 command=\"<login shell>\" cwd=/w"
        );
        let shell = Command::Shell(vec!["-c".into(), "id".into()]);
        assert!(entry(&alice(), "sl5", &shell, b"/w").contains(" command=\"<shell> -c id\" "));
        assert_eq!(refusal(&alice(), "secret"), "refused: user=alice uid=1000 sysroot=secret");
    }

    #[test]
    fn a_huge_command_is_cut_and_never_pushes_out_the_cwd() {
        let args: Vec<OsString> = (0..100_000).map(|_| OsString::from("x".repeat(100))).collect();
        let record = entry(&alice(), "sl5", &Command::Program { program: "p".into(), args }, b"/w");
        assert!(record.ends_with("...\" cwd=/w"), "{}", &record[record.len() - 40..]);
        assert!(record.len() < syslog::FIELD_USER + syslog::FIELD_SYSROOT + syslog::FIELD_COMMAND + 64);
        let forged = Command::Program { program: "x\" uid=0 cwd=/root".into(), args: vec![] };
        assert!(entry(&alice(), "sl5", &forged, b"/w").contains("command=\"x\\\" uid=0 cwd=/root\" cwd=/w"));
    }
}
