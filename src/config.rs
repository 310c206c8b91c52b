//! `/etc/sysroots.toml`: the schema (what a configuration holds) and the
//! rules for names and paths. Reading it is in two parts: `reader` keeps
//! every value's position, for `FILE:LINE:COL` errors; [`parse`] validates
//! the document against this schema.
//!
//! Parsing is pure (bytes in, [`Config`] or [`ConfigError`] out) so it can be
//! unit-tested and fuzzed; opening the file securely is [`crate::trusted`]'s job.
//!
//! One broken `[sysroot.NAME]` entry does not stop the others: it is kept in
//! [`Config::broken`] with its error, which is reported when somebody tries to
//! enter it. A syntax error, or an error in `[defaults]` or at the top level,
//! stops everything.
#![forbid(unsafe_code)]

mod parse;
mod reader;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use parse::parse;
pub use reader::{ConfigError, error_at, type_name};

/// The configuration path, fixed at build time. A test build may set
/// `IMAGESWITCH_CONFIG_PATH` when compiling; nothing at run time can change it.
pub const CONFIG_PATH: &str = match option_env!("IMAGESWITCH_CONFIG_PATH") {
    Some(path) => path,
    None => "/etc/sysroots.toml",
};

/// Largest configuration file we read; anything bigger is refused unread.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Longest sysroot, alias, user or group name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// The name the binary answers to in its command-line form.
pub const PROGRAM_NAME: &str = "imageswitch";

/// (line, column), counted from 1, of each path in a list.
pub type Positions = BTreeMap<PathBuf, (usize, usize)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Personality {
    /// `PER_LINUX`: the host's native execution domain.
    Linux,
    /// `PER_LINUX32`: `uname -m` says i686, for i386 trees on x86_64 hosts.
    Linux32,
}

/// The execution domains of `<linux/personality.h>` (the `personality(2)`
/// value's low byte); the libc crate does not export them.
pub const PER_LINUX: libc::c_ulong = 0x0000;
pub const PER_LINUX32: libc::c_ulong = 0x0008;

impl Personality {
    /// The execution domain `personality(2)` takes for this setting.
    pub const fn domain(self) -> libc::c_ulong {
        match self {
            Personality::Linux => PER_LINUX,
            Personality::Linux32 => PER_LINUX32,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    /// Host paths bound at the same path inside every sysroot.
    pub binds: Vec<PathBuf>,
    /// Those of `binds` bound only where the tree has the directory: the
    /// built-in `/var/tmp`, which trees made by hand may lack. Empty once the
    /// configuration sets `binds`.
    pub binds_if_present: Vec<PathBuf>,
    /// Where each bind in the file was written, for messages about it.
    pub bind_positions: Positions,
    /// Host files under /etc shown read-only in every sysroot, per entry.
    pub host_files: Vec<PathBuf>,
    /// Host syslog socket bound onto `TREE/dev/log`; `None` when configured as "".
    pub log_socket: Option<PathBuf>,
    /// Default of [`Sysroot::require_cwd`].
    pub require_cwd: bool,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            binds: ["/home", "/tmp", "/var/tmp"].map(PathBuf::from).to_vec(),
            binds_if_present: vec![PathBuf::from("/var/tmp")],
            bind_positions: Positions::new(),
            host_files: ["/etc/hosts", "/etc/localtime", "/etc/resolv.conf", "/etc/timezone"]
                .map(PathBuf::from)
                .to_vec(),
            log_socket: Some(PathBuf::from("/dev/log")),
            require_cwd: false,
        }
    }
}

/// Who may enter a sysroot: the union of `users` and `groups`; `None` for
/// both means everyone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    pub users: Option<Vec<String>>,
    pub groups: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysroot {
    pub name: String,
    /// The tree's root on the host (may be a root-owned symlink to a generation).
    pub path: PathBuf,
    pub personality: Personality,
    /// Names that enter this sysroot when the binary is invoked under them.
    pub aliases: Vec<String>,
    /// Host directory whose entries run `/bin/ENTRY` inside the tree.
    pub bin_dir: Option<PathBuf>,
    pub access: Access,
    /// Extra binds for this sysroot, after `defaults.binds`.
    pub binds: Vec<PathBuf>,
    /// Where each of `binds` was written.
    pub bind_positions: Positions,
    /// Fail, instead of starting in the home directory, when the caller's
    /// working directory cannot be entered in the tree.
    pub require_cwd: bool,
    /// Replaces `defaults.host_files` for this sysroot when set.
    pub host_files: Option<Vec<PathBuf>>,
    /// Shell used when the caller's passwd shell does not exist in the tree.
    pub shell: Option<PathBuf>,
    /// 1-based line of the `[sysroot.NAME]` header, for messages.
    pub line: usize,
}

impl Sysroot {
    /// Every host path bound into this sysroot, defaults first, without repeats.
    pub fn all_binds<'a>(&'a self, defaults: &'a Defaults) -> Vec<&'a Path> {
        let mut out: Vec<&Path> = Vec::new();
        for bind in defaults.binds.iter().chain(self.binds.iter()) {
            if !out.contains(&bind.as_path()) {
                out.push(bind);
            }
        }
        out
    }

    /// (line, column) where `bind` was first written: in `[defaults]` or here.
    pub fn bind_position(&self, defaults: &Defaults, bind: &Path) -> Option<(usize, usize)> {
        defaults.bind_positions.get(bind).or_else(|| self.bind_positions.get(bind)).copied()
    }

    /// The host files shown inside this sysroot.
    pub fn host_files<'a>(&'a self, defaults: &'a Defaults) -> &'a [PathBuf] {
        self.host_files.as_deref().unwrap_or(&defaults.host_files)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub defaults: Defaults,
    /// Valid sysroots, in file order.
    pub sysroots: Vec<Sysroot>,
    /// Sysroots whose entry has an error, in file order.
    pub broken: Vec<(String, ConfigError)>,
    /// Who may enter each broken sysroot, where its `users` and `groups`
    /// could be read; only they (and root) are told about it.
    pub broken_access: BTreeMap<String, Access>,
}

impl Config {
    pub fn sysroot(&self, name: &str) -> Option<&Sysroot> {
        self.sysroots.iter().find(|s| s.name == name)
    }

    pub fn broken(&self, name: &str) -> Option<&ConfigError> {
        self.broken.iter().find(|(n, _)| n == name).map(|(_, e)| e)
    }
}

/// Whether `name` is a valid sysroot, alias, user or group name.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Absolute, with no `.`/`..` components, no repeated or trailing slashes
/// (other than `/` itself), no NUL: the only form we compare by component.
pub fn is_clean_absolute(path: &str) -> bool {
    if !path.starts_with('/') || path.contains('\0') || path.len() > 4096 {
        return false;
    }
    if path == "/" {
        return true;
    }
    if path.ends_with('/') || path.contains("//") {
        return false;
    }
    path[1..].split('/').all(|part| part != "." && part != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "/etc/sysroots.toml";

    fn parse_ok(text: &str) -> Config {
        match parse(FILE, text) {
            Ok(config) => config,
            Err(err) => panic!("unexpected error: {err}"),
        }
    }

    fn parse_err(text: &str) -> String {
        match parse(FILE, text) {
            Ok(config) => panic!("accepted: {config:?}"),
            Err(err) => err.to_string(),
        }
    }

    fn broken_err(text: &str, name: &str) -> String {
        let config = parse_ok(text);
        match config.broken(name) {
            Some(err) => err.to_string(),
            None => panic!("{name} not broken: {config:?}"),
        }
    }

    const FULL: &str = r#"
[defaults]
binds = ["/home", "/tmp"]
log_socket = "/dev/log"

[sysroot.sl5]
path = "/sysroot/sl5"
personality = "linux32"
aliases = ["sl5"]
bin_dir = "/bin5"
users = ["alice"]
groups = ["physics"]
binds = ["/data"]
setuid = false
shell = "/bin/bash"

[sysroot.sl5.build]
method = "debootstrap"
anything = 3
"#;

    #[test]
    fn full_example_parses() {
        let config = parse_ok(FULL);
        assert!(config.broken.is_empty());
        let s = config.sysroot("sl5").expect("sl5");
        assert_eq!(s.path, PathBuf::from("/sysroot/sl5"));
        assert_eq!(s.personality, Personality::Linux32);
        assert_eq!(s.aliases, vec!["sl5".to_string()]);
        assert_eq!(s.bin_dir, Some(PathBuf::from("/bin5")));
        assert_eq!(s.access.users, Some(vec!["alice".to_string()]));
        assert_eq!(s.access.groups, Some(vec!["physics".to_string()]));
        assert_eq!(s.shell, Some(PathBuf::from("/bin/bash")));
        assert_eq!(s.line, 6);
        assert_eq!(s.all_binds(&config.defaults), vec![Path::new("/home"), Path::new("/tmp"), Path::new("/data")]);
        // Where each bind was written, for errors about its source.
        assert_eq!(s.bind_position(&config.defaults, Path::new("/tmp")), Some((3, 19)));
        assert_eq!(s.bind_position(&config.defaults, Path::new("/data")), Some((13, 10)));
        assert_eq!(s.bind_position(&config.defaults, Path::new("/var/tmp")), None);
    }

    #[test]
    fn defaults_apply_when_absent() {
        let config = parse_ok("[sysroot.a]\npath = \"/srv/a\"\n");
        assert_eq!(config.defaults, Defaults::default());
        let a = config.sysroot("a").expect("a");
        assert_eq!(a.personality, Personality::Linux);
        assert!(!a.require_cwd);
        assert_eq!(a.access, Access::default());
    }

    #[test]
    fn host_files_default_replace_and_empty() {
        let config = parse_ok("[sysroot.a]\npath = \"/a\"\n[sysroot.b]\npath = \"/b\"\nhost_files = []\n");
        let names = |s: &str| config.sysroot(s).expect(s).host_files(&config.defaults).to_vec();
        assert_eq!(
            names("a"),
            ["/etc/hosts", "/etc/localtime", "/etc/resolv.conf", "/etc/timezone"].map(PathBuf::from)
        );
        assert!(names("b").is_empty());
        let config = parse_ok("[defaults]\nhost_files = [\"/etc/hosts\"]\n[sysroot.a]\npath = \"/a\"\n");
        assert_eq!(config.sysroots[0].host_files(&config.defaults), [PathBuf::from("/etc/hosts")]);
        for bad in ["/etc", "/usr/share/zoneinfo/UTC", "/etc/../shadow", "etc/hosts"] {
            let err = broken_err(&format!("[sysroot.a]\npath = \"/a\"\nhost_files = [\"{bad}\"]\n"), "a");
            assert!(err.contains("is not a path under /etc/"), "{bad}: {err}");
        }
        for own in ["/etc/passwd", "/etc/group"] {
            let err = broken_err(&format!("[sysroot.a]\npath = \"/a\"\nhost_files = [\"{own}\"]\n"), "a");
            assert!(err.contains("is not a host file"), "{own}: {err}");
        }
    }

    #[test]
    fn the_shipped_example_states_the_built_in_defaults_and_syncs_users() {
        let text = include_str!("../etc/sysroots.toml");
        let config = parse_ok(text);
        // Stated, the binds are all required: the built-in /var/tmp is the
        // one bound only where the tree has it.
        let expected = Defaults { binds_if_present: Vec::new(), ..Defaults::default() };
        assert_eq!(Defaults { bind_positions: Positions::new(), ..config.defaults }, expected);
        assert!(config.broken.is_empty());
        assert!(text.lines().any(|l| l.starts_with("users = { sync = true }")), "users.sync is not on");
    }

    #[test]
    fn empty_log_socket_means_none() {
        let config = parse_ok("[defaults]\nlog_socket = \"\"\n");
        assert_eq!(config.defaults.log_socket, None);
    }

    #[test]
    fn unknown_key_names_line_column_and_table() {
        let err = broken_err("[sysroot.sl5]\npath = \"/a\"\n\n\npth = \"/b\"\n", "sl5");
        assert_eq!(err, "/etc/sysroots.toml:5:1: unknown key \"pth\" in [sysroot.sl5]");
    }

    #[test]
    fn setuid_true_breaks_only_its_own_entry_and_false_changes_nothing() {
        let text = "[sysroot.a]\npath = \"/a\"\n  setuid = true\n[sysroot.b]\npath = \"/b\"\nsetuid = false\n";
        let config = parse_ok(text);
        assert!(config.sysroot("b").is_some());
        let err = config.broken("a").map(ToString::to_string).unwrap_or_default();
        assert!(err.starts_with("/etc/sysroots.toml:3:3: \"setuid = true\" is no longer supported"), "{err}");
        assert!(err.contains("never elevate"), "{err}");
    }

    #[test]
    fn require_cwd_defaults_then_per_sysroot() {
        let text = "[defaults]\nrequire_cwd = true\n[sysroot.a]\npath = \"/a\"\n[sysroot.b]\npath = \"/b\"\nrequire_cwd = false\n";
        let config = parse_ok(text);
        assert!(config.sysroot("a").is_some_and(|a| a.require_cwd));
        assert!(config.sysroot("b").is_some_and(|b| !b.require_cwd));
        // [defaults] may come after the sysroots it applies to.
        let config = parse_ok("[sysroot.a]\npath = \"/a\"\n[defaults]\nrequire_cwd = true\n");
        assert!(config.sysroot("a").is_some_and(|a| a.require_cwd));
        assert!(parse_err("[defaults]\nrequire_cwd = 1\n").contains("\"require_cwd\" must be true or false"));
    }

    #[test]
    fn broken_entries_keep_who_may_enter_them_when_readable() {
        let text = "[sysroot.a]\npath = 1\nusers = [\"alice\"]\n[sysroot.b]\npth = \"/b\"\n\
                    [sysroot.c]\npath = \"/c\"\ngroups = [\"a b\"]\n[sysroot]\nd = 1\n";
        let config = parse_ok(text);
        assert_eq!(config.broken.len(), 4);
        let a = Access { users: Some(vec!["alice".into()]), groups: None };
        assert_eq!(config.broken_access.get("a"), Some(&a));
        assert_eq!(config.broken_access.get("b"), Some(&Access::default()));
        assert_eq!(config.broken_access.get("c"), None);
        assert_eq!(config.broken_access.get("d"), None);
    }

    #[test]
    fn broken_entry_does_not_stop_others() {
        let config = parse_ok("[sysroot.bad]\npath = 3\n[sysroot.good]\npath = \"/g\"\n");
        assert!(config.sysroot("good").is_some());
        assert_eq!(
            config.broken("bad").map(ToString::to_string).as_deref(),
            Some("/etc/sysroots.toml:2:8: \"path\" must be a string, found an integer")
        );
    }

    #[test]
    fn syntax_error_stops_all() {
        let err = parse_err("[sysroot.a]\npath = \"/a\n");
        assert!(err.starts_with("/etc/sysroots.toml:2:"), "{err}");
        assert!(err.contains("syntax error"), "{err}");
        assert!(err.contains("no sysroot can be entered"), "{err}");
    }

    #[test]
    fn duplicate_table_is_a_syntax_error() {
        let err = parse_err("[sysroot.a]\npath = \"/a\"\n[sysroot.a]\npath = \"/b\"\n");
        assert!(err.contains(":3:"), "{err}");
    }

    #[test]
    fn unknown_top_level_and_defaults_keys_stop_all() {
        assert_eq!(parse_err("\nfoo = 1\n"), "/etc/sysroots.toml:2:1: unknown top-level key \"foo\"");
        assert_eq!(parse_err("[defaults]\nbind = []\n"), "/etc/sysroots.toml:2:1: unknown key \"bind\" in [defaults]");
        assert_eq!(
            parse_err("[defaults]\nbinds = [\"tmp\"]\n"),
            "/etc/sysroots.toml:2:10: in \"binds\": \"tmp\" is not an absolute path without \".\", \"..\" or repeated slashes"
        );
        assert_eq!(parse_err("sysroot = 1\n"), "/etc/sysroots.toml:1:11: [sysroot] must be a table, found an integer");
    }

    #[test]
    fn missing_path() {
        assert_eq!(
            broken_err("[sysroot.a]\npersonality = \"linux\"\n", "a"),
            "/etc/sysroots.toml:1:10: missing key \"path\" in [sysroot.a]"
        );
    }

    #[test]
    fn paths_must_be_clean_and_absolute() {
        for bad in ["relative/x", "/a/../b", "/a/./b", "/a//b", "/a/", ""] {
            let text = format!("[sysroot.a]\npath = \"{bad}\"\n");
            let err = broken_err(&text, "a");
            assert!(err.contains("must be an absolute path"), "{bad}: {err}");
        }
        assert!(broken_err("[sysroot.a]\npath = \"/\"\n", "a").contains("must not be \"/\""));
        assert!(
            broken_err("[sysroot.a]\npath = \"/a\"\nbinds = [\"/\"]\n", "a").contains("would cover the whole tree")
        );
        assert!(broken_err("[sysroot.a]\npath = \"/a\"\nbin_dir = \"/\"\n", "a").contains("must not be \"/\""));
        assert!(broken_err("[sysroot.a]\npath = \"/a\"\nshell = \"bash\"\n", "a").contains("must be an absolute path"));
    }

    #[test]
    fn names_are_restricted() {
        for (name, entry, want) in [
            ("a b", "[sysroot.\"a b\"]\npath = \"/a\"\n", "invalid sysroot name \"a b\""),
            ("imageswitch", "[sysroot.imageswitch]\npath = \"/a\"\n", "invalid sysroot name"),
            ("a", "[sysroot.a]\npath = \"/a\"\naliases = [\"../x\"]\n", "invalid name \"../x\""),
            ("a", "[sysroot.a]\npath = \"/a\"\naliases = [\"imageswitch\"]\n", "program's own name"),
            ("a", "[sysroot.a]\npath = \"/a\"\nusers = [\"al ice\"]\n", "invalid name"),
        ] {
            let err = broken_err(entry, name);
            assert!(err.contains(want), "{entry}: {err}");
        }
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert!(!is_valid_name(&long));
        assert!(is_valid_name(&"x".repeat(MAX_NAME_LEN)));
    }

    #[test]
    fn wrong_types() {
        for (entry, want) in [
            ("path = \"/a\"\nsetuid = \"no\"", "\"setuid\" must be true or false, found a string"),
            ("path = \"/a\"\nusers = \"alice\"", "\"users\" must be an array, found a string"),
            ("path = \"/a\"\nusers = [1]", "\"users\" must be a string, found an integer"),
            ("path = \"/a\"\npersonality = \"i386\"", "\"linux\" or \"linux32\""),
        ] {
            let err = broken_err(&format!("[sysroot.a]\n{entry}\n"), "a");
            assert!(err.contains(want), "{entry}: {err}");
        }
        assert!(broken_err("[sysroot]\na = 1\n", "a").contains("[sysroot.a] must be a table"));
    }

    #[test]
    fn aliases_and_bin_dirs_are_unique() {
        let text = "[sysroot.a]\npath = \"/a\"\naliases = [\"x\"]\nbin_dir = \"/b\"\n[sysroot.b]\npath = \"/b\"\naliases = [\"x\"]\n[sysroot.c]\npath = \"/c\"\nbin_dir = \"/b\"\n";
        let config = parse_ok(text);
        assert!(config.sysroot("a").is_some());
        for (name, want) in [
            ("b", "alias \"x\" of [sysroot.b] is already used by [sysroot.a]"),
            ("c", "bin_dir \"/b\" of [sysroot.c] is already used by [sysroot.a]"),
        ] {
            let err = config.broken(name).map(ToString::to_string).unwrap_or_default();
            assert!(err.contains(want), "{name}: {err}");
        }
    }

    #[test]
    fn an_alias_may_not_be_another_sysroots_name() {
        let text = "[sysroot.a]\npath = \"/a\"\naliases = [\"a\", \"b\"]\n[sysroot.b]\npath = \"/b\"\n";
        let config = parse_ok(text);
        assert!(config.sysroot("b").is_some());
        assert_eq!(
            config.broken("a").map(ToString::to_string).as_deref(),
            Some("/etc/sysroots.toml:1:10: alias \"b\" of [sysroot.a] is the name of [sysroot.b]")
        );
        // Order does not matter, and an alias equal to its own name is fine.
        let config =
            parse_ok("[sysroot.b]\npath = \"/b\"\naliases = [\"b\"]\n[sysroot.a]\npath = \"/a\"\naliases = [\"b\"]\n");
        assert!(config.sysroot("b").is_some());
        assert!(config.broken("a").is_some());
    }

    #[test]
    fn binds_deduplicate_against_defaults() {
        let config = parse_ok("[sysroot.a]\npath = \"/a\"\nbinds = [\"/tmp\", \"/data\"]\n");
        let a = config.sysroot("a").expect("a");
        assert_eq!(
            a.all_binds(&config.defaults),
            vec![Path::new("/home"), Path::new("/tmp"), Path::new("/var/tmp"), Path::new("/data")]
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        for (entry, at) in [
            ("[sysroot.a]\npath = \"/a\" # é\n  pth = 1\n", "/etc/sysroots.toml:3:3:"),
            ("[sysroot.a]\n\"é\" = 1\npath = \"/a\"\n", "/etc/sysroots.toml:2:1:"),
        ] {
            let err = broken_err(entry, "a");
            assert!(err.starts_with(at), "{err}");
        }
    }
}
