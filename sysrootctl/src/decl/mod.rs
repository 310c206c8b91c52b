//! The declaration: `/etc/sysroots.toml` as `imageswitch` reads it, plus the
//! `[sysroot.NAME.build]` table that only `sysrootctl` reads.
//!
//! The build table is walked with the same span-keeping TOML parser the library
//! uses, so every error reads `FILE:LINE:COL: message` like the library's own.
#![forbid(unsafe_code)]

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use imageswitch::config::{self, Config, ConfigError, Sysroot, is_clean_absolute};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

mod build;
use build::{Source, parse_build};

/// Where generations live unless the build table says `store = ...`.
pub const DEFAULT_STORE: &str = "/var/lib/sysrootctl";
/// Generations kept by `gc` unless the build table says `keep = N`.
pub const DEFAULT_KEEP: u32 = 3;
/// Host accounts merged when `users.sync` is on: Debian's UID_MIN..UID_MAX.
pub const DEFAULT_UID_MIN: u32 = 1000;
pub const DEFAULT_UID_MAX: u32 = 59999;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Debootstrap,
    Mmdebstrap,
    Dnf,
    Tarball,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Debootstrap => "debootstrap",
            Method::Mmdebstrap => "mmdebstrap",
            Method::Dnf => "dnf",
            Method::Tarball => "tarball",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSync {
    pub sync: bool,
    pub uid_min: u32,
    pub uid_max: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    /// Host file or directory copied into the tree.
    pub src: PathBuf,
    /// Where inside the tree (absolute, as seen from inside).
    pub dst: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    pub method: Method,
    pub suite: Option<String>,
    pub arch: Option<String>,
    pub mirror: Option<String>,
    /// `tarball`: a tar archive (any compression tar detects) or a directory.
    pub source: Option<PathBuf>,
    pub packages: Vec<String>,
    pub enable: Vec<String>,
    pub disable: Vec<String>,
    pub users: UserSync,
    /// Laid down before packages (an apt source or proxy the install needs).
    pub skeleton: Vec<Overlay>,
    pub files: Vec<Overlay>,
    /// An Ansible playbook run against each new generation (`reconcile::playbook`).
    pub playbook: Option<PathBuf>,
    pub keep: u32,
    pub store: PathBuf,
}

/// One sysroot as `sysrootctl` sees it.
#[derive(Debug, Clone)]
pub struct Declared {
    pub sysroot: Sysroot,
    /// `None`: no build table, so `sysrootctl` does not manage the tree.
    pub build: Option<Build>,
    /// Every host path imageswitch binds into this sysroot.
    pub binds: Vec<PathBuf>,
    /// Every host file imageswitch shows in this sysroot (`host_files`).
    pub host_files: Vec<PathBuf>,
}

/// The whole file: managed and unmanaged sysroots, and the broken ones.
#[derive(Debug)]
pub struct Declaration {
    pub file: PathBuf,
    pub config: Config,
    pub sysroots: Vec<Declared>,
    /// Entries with an error in the library's keys or in the build table.
    pub broken: Vec<(String, ConfigError)>,
}

impl Declaration {
    pub fn get(&self, name: &str) -> Result<&Declared> {
        if let Some(found) = self.sysroots.iter().find(|d| d.sysroot.name == name) {
            return Ok(found);
        }
        if let Some((_, err)) = self.broken.iter().find(|(n, _)| n == name) {
            bail!("{err}");
        }
        bail!("no sysroot \"{name}\" in {}", self.file.display())
    }

    /// The named sysroots, or every managed one when `names` is empty.
    pub fn select(&self, names: &[String]) -> Result<Vec<&Declared>> {
        if names.is_empty() {
            return Ok(self.sysroots.iter().filter(|d| d.build.is_some()).collect());
        }
        names.iter().map(|n| self.get(n)).collect()
    }
}

pub fn load(file: &Path) -> Result<Declaration> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    parse(&file.display().to_string(), &text).map_err(anyhow::Error::from).map(|mut d| {
        d.file = file.to_path_buf();
        d
    })
}

/// Parses the library's keys with the library, then each build table here.
pub fn parse(file: &str, text: &str) -> Result<Declaration, ConfigError> {
    let config = config::parse(file, text)?;
    let src = Source { file, text };
    let document = DeTable::parse(text).map_err(|e| src.error(&e.span().unwrap_or(0..0), "syntax error"))?;
    let mut broken = config.broken.clone();
    let mut sysroots = Vec::new();
    for sysroot in &config.sysroots {
        let build = match build_table(document.get_ref(), &sysroot.name) {
            None => Ok(None),
            Some(value) => parse_build(&src, &sysroot.name, value).map(Some),
        };
        match build {
            Ok(build) => {
                let binds = sysroot.all_binds(&config.defaults).into_iter().map(Path::to_path_buf).collect();
                let host_files = sysroot.host_files(&config.defaults).to_vec();
                sysroots.push(Declared { sysroot: sysroot.clone(), build, binds, host_files })
            }
            Err(err) => broken.push((sysroot.name.clone(), err)),
        }
    }
    let sysroots = across_entries(&src, document.get_ref(), sysroots, &mut broken);
    Ok(Declaration { file: PathBuf::from(file), config, sysroots, broken })
}

/// What no single entry shows: two sysroots with one `path`, or a `path`
/// inside a store (where sysrootctl keeps and removes generations). The later
/// entry is broken, at its `path`, naming the other.
fn across_entries(
    src: &Source<'_>,
    document: &DeTable<'_>,
    sysroots: Vec<Declared>,
    broken: &mut Vec<(String, ConfigError)>,
) -> Vec<Declared> {
    let stores: Vec<(String, PathBuf)> =
        sysroots.iter().filter_map(|d| Some((d.sysroot.name.clone(), d.build.as_ref()?.store.clone()))).collect();
    let mut kept: Vec<Declared> = Vec::new();
    for d in sysroots {
        let path = &d.sysroot.path;
        let why = if let Some(other) = kept.iter().find(|k| k.sysroot.path == *path) {
            Some(format!("\"path\" {} is also the path of sysroot \"{}\"", path.display(), other.sysroot.name))
        } else {
            stores.iter().find(|(_, store)| path.starts_with(store)).map(|(owner, store)| {
                format!(
                    "\"path\" {} is inside the store {} (of sysroot \"{owner}\"), where generations are kept and removed: put it elsewhere",
                    path.display(),
                    store.display()
                )
            })
        };
        match why {
            Some(why) => {
                let span = path_span(document, &d.sysroot.name).unwrap_or(0..0);
                broken.push((d.sysroot.name.clone(), src.error(&span, why)));
            }
            None => kept.push(d),
        }
    }
    kept
}

fn path_span(document: &DeTable<'_>, name: &str) -> Option<Range<usize>> {
    let (_, sysroot) = document.iter().find(|(k, _)| k.get_ref().as_ref() == "sysroot")?;
    let DeValue::Table(sysroots) = sysroot.get_ref() else { return None };
    let (_, entry) = sysroots.iter().find(|(k, _)| k.get_ref().as_ref() == name)?;
    let DeValue::Table(entry) = entry.get_ref() else { return None };
    entry.iter().find(|(k, _)| k.get_ref().as_ref() == "path").map(|(_, v)| v.span())
}

fn build_table<'a, 'i>(document: &'a DeTable<'i>, name: &str) -> Option<&'a Spanned<DeValue<'i>>> {
    let (_, sysroot) = document.iter().find(|(k, _)| k.get_ref().as_ref() == "sysroot")?;
    let DeValue::Table(sysroots) = sysroot.get_ref() else { return None };
    let (_, entry) = sysroots.iter().find(|(k, _)| k.get_ref().as_ref() == name)?;
    let DeValue::Table(entry) = entry.get_ref() else { return None };
    entry.iter().find(|(k, _)| k.get_ref().as_ref() == "build").map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str, name: &str) -> String {
        let d = parse("/etc/sysroots.toml", text).expect("parses");
        d.broken
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, e)| e.to_string())
            .unwrap_or_else(|| panic!("{name} not broken"))
    }

    #[test]
    fn full_build_table() {
        let text = r#"
[sysroot.sl5]
path = "/sysroot/sl5"
bin_dir = "/bin5"

[sysroot.sl5.build]
method = "debootstrap"
suite = "bullseye"
arch = "i386"
packages = ["bash", "lsb-release", "python3", "libc6:i386"]
services = { enable = ["cron"], disable = ["ssh"] }
users = { sync = true, uid_min = 2000 }
skeleton = [{ src = "/etc/sysrootctl/skeleton/sl5", dst = "/" }]
files = [{ src = "/etc/sysrootctl/overlay/sl5", dst = "/" }]
keep = 5
store = "/srv/store"

[sysroot.plain]
path = "/srv/plain"
"#;
        let d = parse("/etc/sysroots.toml", text).expect("parses");
        assert!(d.broken.is_empty(), "{:?}", d.broken);
        let b = d.get("sl5").expect("sl5").build.clone().expect("build");
        assert_eq!(b.method, Method::Debootstrap);
        assert_eq!(b.suite.as_deref(), Some("bullseye"));
        assert_eq!(b.packages.len(), 4);
        assert_eq!(b.enable, vec!["cron"]);
        assert_eq!(b.disable, vec!["ssh"]);
        assert_eq!(b.users, UserSync { sync: true, uid_min: 2000, uid_max: DEFAULT_UID_MAX });
        assert_eq!(b.skeleton, vec![Overlay { src: "/etc/sysrootctl/skeleton/sl5".into(), dst: "/".into() }]);
        assert_eq!(b.files, vec![Overlay { src: "/etc/sysrootctl/overlay/sl5".into(), dst: "/".into() }]);
        assert_eq!(b.keep, 5);
        assert_eq!(b.store, PathBuf::from("/srv/store"));
        assert!(d.get("plain").expect("plain").build.is_none());
        assert_eq!(d.select(&[]).expect("select").len(), 1);
    }

    #[test]
    fn errors_have_positions() {
        let base = "[sysroot.a]\npath = \"/a\"\n[sysroot.a.build]\n";
        assert_eq!(
            err(&format!("{base}method = \"tarbal\"\n"), "a"),
            "/etc/sysroots.toml:4:10: \"method\" must be \"debootstrap\", \"mmdebstrap\", \"dnf\" or \"tarball\", found \"tarbal\""
        );
        assert_eq!(
            err(&format!("{base}method = \"tarball\"\nsorce = \"/x\"\n"), "a"),
            "/etc/sysroots.toml:5:1: unknown key \"sorce\" in [sysroot.a.build]"
        );
        assert!(err(&format!("{base}method = \"tarball\"\n"), "a").contains("method \"tarball\" needs \"source\""));
        assert!(err(&format!("{base}method = \"debootstrap\"\n"), "a").contains("needs \"suite\""));
        assert_eq!(
            err(&format!("{base}method = \"tarball\"\nsource = \"/x\"\npackages = [\"ok\", \"-bad\"]\n"), "a"),
            "/etc/sysroots.toml:6:19: invalid package \"-bad\" (allowed: A-Z a-z 0-9 + - . _ :, not starting with -)"
        );
        assert!(
            err(&format!("{base}method = \"tarball\"\nsource = \"x.tar\"\n"), "a")
                .starts_with("/etc/sysroots.toml:5:10: \"source\" must be an absolute path")
        );
        assert!(
            err(&format!("{base}method = \"tarball\"\nsource = \"/x\"\nkeep = 0\n"), "a")
                .contains("\"keep\" must be between 1 and 999")
        );
        assert!(
            err(&format!("{base}method = \"tarball\"\nsource = \"/x\"\nusers = {{ sync = \"yes\" }}\n"), "a")
                .contains(":6:18: \"sync\" must be true or false")
        );
        assert!(err(&format!("{base}method = \"tarball\"\nsource = \"/x\"\nservices = {{ enable = [\"a\"], disable = [\"a\"] }}\n"), "a").contains("both enabled and disabled"));
        assert!(
            err(&format!("{base}method = \"tarball\"\nsource = \"/x\"\nfiles = [{{ src = \"/a\" }}]\n"), "a")
                .contains("needs both")
        );
        assert_eq!(
            err(
                &format!("{base}method = \"tarball\"\nsource = \"/x\"\nskeleton = [{{ src = \"/a\", dts = \"/\" }}]\n"),
                "a"
            ),
            "/etc/sysroots.toml:6:27: unknown key \"dts\" in skeleton of [sysroot.a.build]"
        );
        assert!(
            err(&format!("{base}method = \"debootstrap\"\nsuite = \"x\"\nmirror = \"ftp://m\"\n"), "a")
                .contains("\"mirror\" must be")
        );
    }

    /// The shipped examples stay valid.
    #[test]
    fn example_configurations_parse() {
        for file in ["sysrootctl-sysroots.toml", "sysroots.toml"] {
            let path = format!("{}/../etc/{file}", env!("CARGO_MANIFEST_DIR"));
            let d = load(Path::new(&path)).expect("example parses");
            assert!(d.broken.is_empty(), "{file}: {:?}", d.broken);
            assert!(d.sysroots.iter().all(|s| s.build.is_some()), "{file}: every example sysroot has a build table");
        }
    }

    /// Every truncation and a byte-flip at every offset of a full example:
    /// errors, never a panic, and every error carries a position.
    #[test]
    fn mangled_input_never_panics() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../etc/sysrootctl-sysroots.toml")).unwrap();
        let check = |t: &str| match parse("/f", t) {
            Ok(d) => d.broken.iter().for_each(|(_, e)| assert!(e.line > 0, "{e}")),
            Err(e) => assert!(e.to_string().starts_with("/f:"), "{e}"),
        };
        for (i, _) in text.char_indices() {
            check(&text[..i]);
            for replacement in ["\"", "]", "\n"] {
                let mut t = text.clone();
                t.replace_range(i..i + text[i..].chars().next().map_or(0, char::len_utf8), replacement);
                check(&t);
            }
        }
    }

    /// Fault 13: entries that are fine alone but not together were accepted
    /// and failed at apply time with advice that also failed.
    #[test]
    fn entries_that_collide_are_broken_at_their_path() {
        let entry = |name: &str, path: &str, build: &str| format!("[sysroot.{name}]\npath = \"{path}\"\n{build}");
        let managed = "[sysroot.a.build]\nmethod = \"tarball\"\nsource = \"/a.tar\"\nstore = \"/srv/store\"\n";
        let rows = [
            (entry("a", "/s/a", managed) + &entry("b", "/s/b", ""), None),
            (
                entry("a", "/s/a", managed) + &entry("b", "/s/a", ""),
                Some(("b", "/f:8:8: \"path\" /s/a is also the path of sysroot \"a\"")),
            ),
            (
                entry("a", "/s/a", managed) + &entry("b", "/srv/store/b", ""),
                Some(("b", "/f:8:8: \"path\" /srv/store/b is inside the store /srv/store (of sysroot \"a\")")),
            ),
            (
                entry("a", "/srv/store/a/1", managed),
                Some(("a", "/f:2:8: \"path\" /srv/store/a/1 is inside the store /srv/store")),
            ),
            (
                entry("a", "/var/lib/sysrootctl/x", &managed.replace("store = \"/srv/store\"\n", "")),
                Some(("a", "/f:2:8: \"path\" /var/lib/sysrootctl/x is inside the store /var/lib/sysrootctl")),
            ),
        ];
        for (text, want) in rows {
            let d = parse("/f", &text).expect("parses");
            match want {
                None => assert!(d.broken.is_empty(), "{text}: {:?}", d.broken),
                Some((name, message)) => {
                    let (broken, err) = d.broken.first().unwrap_or_else(|| panic!("{text}: accepted"));
                    assert_eq!(broken, name, "{text}");
                    assert!(err.to_string().starts_with(message), "{text}: {err}");
                    assert!(d.get(name).is_err());
                }
            }
        }
    }

    #[test]
    fn playbook_key_names_a_playbook_file() {
        let base = "[sysroot.a]\npath = \"/a\"\n[sysroot.a.build]\nmethod = \"tarball\"\nsource = \"/a.tar\"\n";
        let d = parse("/f", &format!("{base}playbook = \"/etc/sysrootctl/a/site.yml\"\n")).expect("parses");
        let build = d.get("a").expect("a").build.clone().expect("build");
        assert_eq!(build.playbook, Some(PathBuf::from("/etc/sysrootctl/a/site.yml")));
        let rows = [
            ("playbook = \"site.yml\"", "/etc/sysroots.toml:6:12: \"playbook\" must be an absolute path"),
            ("playbook = \"/etc/a/../site.yml\"", "/etc/sysroots.toml:6:12: \"playbook\" must be an absolute path"),
            (
                "playbook = \"/etc/sysrootctl/roles/a\"",
                "/etc/sysroots.toml:6:12: \"playbook\" must name a playbook file ending in .yml or .yaml, found \"/etc/sysrootctl/roles/a\"",
            ),
            ("playbook = \"/\"", "/etc/sysroots.toml:6:12: \"playbook\" must name a playbook file"),
            ("playbook = [\"/a.yml\"]", "/etc/sysroots.toml:6:12: \"playbook\" must be a string, found an array"),
        ];
        for (line, want) in rows {
            let got = err(&format!("{base}{line}\n"), "a");
            assert!(got.starts_with(want), "{line}: {got}");
        }
    }

    #[test]
    fn library_errors_and_build_errors_are_per_entry() {
        let text = "[sysroot.a]\npth = \"/a\"\n[sysroot.b]\npath = \"/b\"\n[sysroot.b.build]\nmethod = 1\n[sysroot.c]\npath = \"/c\"\n[sysroot.c.build]\nmethod = \"tarball\"\nsource = \"/c.tar\"\n";
        let d = parse("/f", text).expect("parses");
        assert_eq!(d.broken.len(), 2);
        assert!(d.get("c").is_ok());
        assert!(d.get("a").unwrap_err().to_string().contains("/f:2:1: unknown key \"pth\""));
        assert!(d.get("b").unwrap_err().to_string().contains("/f:6:10: \"method\" must be a string"));
        assert!(d.get("zz").unwrap_err().to_string().contains("no sysroot \"zz\""));
    }
}
