//! The `[sysroot.NAME.build]` table, read with the span-keeping TOML parser the
//! library uses, so every error reads `FILE:LINE:COL: message`.
#![forbid(unsafe_code)]

use super::*;

pub(super) struct Source<'a> {
    pub(super) file: &'a str,
    pub(super) text: &'a str,
}

impl Source<'_> {
    pub(super) fn error(&self, span: &Range<usize>, message: impl Into<String>) -> ConfigError {
        imageswitch::config::error_at(self.file, self.text, span, message)
    }
}

fn string(src: &Source<'_>, key: &str, value: &Spanned<DeValue<'_>>) -> Result<String, ConfigError> {
    match value.get_ref() {
        DeValue::String(s) => Ok(s.to_string()),
        other => Err(src.error(
            &value.span(),
            format!("\"{key}\" must be a string, found {}", imageswitch::config::type_name(other)),
        )),
    }
}

fn word(src: &Source<'_>, key: &str, value: &Spanned<DeValue<'_>>, extra: &[u8]) -> Result<String, ConfigError> {
    let text = string(src, key, value)?;
    let ok = !text.is_empty()
        && text.len() <= 128
        && !text.starts_with('-')
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || extra.contains(&b));
    if ok {
        Ok(text)
    } else {
        let allowed: String = extra.iter().map(|&b| format!(" {}", b as char)).collect();
        Err(src.error(
            &value.span(),
            format!("invalid {key} \"{text}\" (allowed: A-Z a-z 0-9{allowed}, not starting with -)"),
        ))
    }
}

fn path(src: &Source<'_>, key: &str, value: &Spanned<DeValue<'_>>) -> Result<PathBuf, ConfigError> {
    let text = string(src, key, value)?;
    if !is_clean_absolute(&text) {
        return Err(src.error(
            &value.span(),
            format!("\"{key}\" must be an absolute path without \".\", \"..\" or repeated slashes, found \"{text}\""),
        ));
    }
    Ok(PathBuf::from(text))
}

fn integer(src: &Source<'_>, key: &str, value: &Spanned<DeValue<'_>>, range: Range<u64>) -> Result<u32, ConfigError> {
    let DeValue::Integer(int) = value.get_ref() else {
        return Err(src.error(
            &value.span(),
            format!("\"{key}\" must be an integer, found {}", imageswitch::config::type_name(value.get_ref())),
        ));
    };
    let digits: String = int.as_str().chars().filter(|&c| c != '_').collect();
    match u64::from_str_radix(&digits, int.radix()) {
        Ok(n) if range.contains(&n) => Ok(n as u32),
        _ => Err(src.error(
            &value.span(),
            format!("\"{key}\" must be between {} and {}, found {}", range.start, range.end - 1, int.as_str()),
        )),
    }
}

fn boolean(src: &Source<'_>, key: &str, value: &Spanned<DeValue<'_>>) -> Result<bool, ConfigError> {
    match value.get_ref() {
        DeValue::Boolean(b) => Ok(*b),
        other => Err(src.error(
            &value.span(),
            format!("\"{key}\" must be true or false, found {}", imageswitch::config::type_name(other)),
        )),
    }
}

fn array<'a, 'i>(
    src: &Source<'_>,
    key: &str,
    value: &'a Spanned<DeValue<'i>>,
) -> Result<Vec<&'a Spanned<DeValue<'i>>>, ConfigError> {
    match value.get_ref() {
        DeValue::Array(items) => Ok(items.iter().collect()),
        other => Err(src.error(
            &value.span(),
            format!("\"{key}\" must be an array, found {}", imageswitch::config::type_name(other)),
        )),
    }
}

fn table<'a, 'i>(src: &Source<'_>, key: &str, value: &'a Spanned<DeValue<'i>>) -> Result<&'a DeTable<'i>, ConfigError> {
    match value.get_ref() {
        DeValue::Table(t) => Ok(t),
        other => Err(src.error(
            &value.span(),
            format!("\"{key}\" must be a table, found {}", imageswitch::config::type_name(other)),
        )),
    }
}

/// `files` and `skeleton`: `[{ src = PATH, dst = PATH }, ...]`.
fn overlays(
    src: &Source<'_>,
    key: &str,
    value: &Spanned<DeValue<'_>>,
    where_: &str,
) -> Result<Vec<Overlay>, ConfigError> {
    let mut out = Vec::new();
    for item in array(src, key, value)? {
        let (mut from, mut to) = (None, None);
        for (k, v) in sorted(table(src, key, item)?) {
            match k.get_ref().as_ref() {
                "src" => from = Some(path(src, "src", v)?),
                "dst" => to = Some(path(src, "dst", v)?),
                other => return Err(src.error(&k.span(), format!("unknown key \"{other}\" in {key} of {where_}"))),
            }
        }
        match (from, to) {
            (Some(src), Some(dst)) => out.push(Overlay { src, dst }),
            _ => return Err(src.error(&item.span(), format!("each of \"{key}\" needs both \"src\" and \"dst\""))),
        }
    }
    Ok(out)
}

/// A playbook file: named like one, so a directory (a role) is refused here.
fn playbook(src: &Source<'_>, value: &Spanned<DeValue<'_>>) -> Result<PathBuf, ConfigError> {
    let file = path(src, "playbook", value)?;
    if !file.extension().is_some_and(|e| e == "yml" || e == "yaml") {
        return Err(src.error(
            &value.span(),
            format!("\"playbook\" must name a playbook file ending in .yml or .yaml, found \"{}\"", file.display()),
        ));
    }
    Ok(file)
}

/// Debian package names, RPM names and `name:arch`.
const PACKAGE_CHARS: &[u8] = b"+-._:";
/// systemd unit and SysV script names (`getty@tty1`, `ssh.service`).
const SERVICE_CHARS: &[u8] = b"@-._:";

fn sorted<'a, 'i>(t: &'a DeTable<'i>) -> Vec<(&'a Spanned<toml::de::DeString<'i>>, &'a Spanned<DeValue<'i>>)> {
    let mut entries: Vec<_> = t.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    entries
}

pub(super) fn parse_build(src: &Source<'_>, name: &str, value: &Spanned<DeValue<'_>>) -> Result<Build, ConfigError> {
    let where_ = format!("[sysroot.{name}.build]");
    let t = table(src, &format!("sysroot.{name}.build"), value)?;
    let mut method = None;
    let mut build = Build {
        method: Method::Tarball,
        suite: None,
        arch: None,
        mirror: None,
        source: None,
        packages: Vec::new(),
        enable: Vec::new(),
        disable: Vec::new(),
        users: UserSync { sync: false, uid_min: DEFAULT_UID_MIN, uid_max: DEFAULT_UID_MAX },
        skeleton: Vec::new(),
        files: Vec::new(),
        playbook: None,
        keep: DEFAULT_KEEP,
        store: PathBuf::from(DEFAULT_STORE),
    };
    for (key, value) in sorted(t) {
        match key.get_ref().as_ref() {
            "method" => {
                method = Some(match string(src, "method", value)?.as_str() {
                    "debootstrap" => Method::Debootstrap,
                    "mmdebstrap" => Method::Mmdebstrap,
                    "dnf" => Method::Dnf,
                    "tarball" => Method::Tarball,
                    other => {
                        return Err(src.error(
                            &value.span(),
                            format!("\"method\" must be \"debootstrap\", \"mmdebstrap\", \"dnf\" or \"tarball\", found \"{other}\""),
                        ));
                    }
                })
            }
            "suite" => build.suite = Some(word(src, "suite", value, b"-._")?),
            "arch" => build.arch = Some(word(src, "arch", value, b"-_")?),
            "mirror" => {
                let text = string(src, "mirror", value)?;
                if !(text.starts_with("http://") || text.starts_with("https://") || text.starts_with("file:/"))
                    || text.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(src.error(
                        &value.span(),
                        format!("\"mirror\" must be an http://, https:// or file:/ URL, found \"{text}\""),
                    ));
                }
                build.mirror = Some(text);
            }
            "source" => build.source = Some(path(src, "source", value)?),
            "packages" => {
                build.packages = array(src, "packages", value)?
                    .into_iter()
                    .map(|v| word(src, "package", v, PACKAGE_CHARS))
                    .collect::<Result<_, _>>()?
            }
            "services" => {
                for (k, v) in sorted(table(src, "services", value)?) {
                    let list = array(src, k.get_ref().as_ref(), v)?
                        .into_iter()
                        .map(|v| word(src, "service", v, SERVICE_CHARS))
                        .collect::<Result<Vec<_>, _>>()?;
                    match k.get_ref().as_ref() {
                        "enable" => build.enable = list,
                        "disable" => build.disable = list,
                        other => {
                            return Err(
                                src.error(&k.span(), format!("unknown key \"{other}\" in services of {where_}"))
                            );
                        }
                    }
                }
                if let Some(both) = build.enable.iter().find(|s| build.disable.contains(s)) {
                    return Err(src.error(&value.span(), format!("service \"{both}\" is both enabled and disabled")));
                }
            }
            "users" => {
                for (k, v) in sorted(table(src, "users", value)?) {
                    match k.get_ref().as_ref() {
                        "sync" => build.users.sync = boolean(src, "sync", v)?,
                        "uid_min" => build.users.uid_min = integer(src, "uid_min", v, 1..65534)?,
                        "uid_max" => build.users.uid_max = integer(src, "uid_max", v, 1..65534)?,
                        other => {
                            return Err(src.error(&k.span(), format!("unknown key \"{other}\" in users of {where_}")));
                        }
                    }
                }
                if build.users.uid_min > build.users.uid_max {
                    return Err(src.error(&value.span(), "users.uid_min is greater than users.uid_max"));
                }
            }
            "files" => build.files = overlays(src, "files", value, &where_)?,
            "skeleton" => build.skeleton = overlays(src, "skeleton", value, &where_)?,
            "playbook" => build.playbook = Some(playbook(src, value)?),
            "keep" => build.keep = integer(src, "keep", value, 1..1000)?,
            "store" => {
                build.store = path(src, "store", value)?;
                if build.store == Path::new("/") {
                    return Err(src.error(&value.span(), "\"store\" must not be \"/\""));
                }
            }
            other => return Err(src.error(&key.span(), format!("unknown key \"{other}\" in {where_}"))),
        }
    }
    let Some(method) = method else {
        return Err(src.error(&value.span(), format!("missing key \"method\" in {where_}")));
    };
    build.method = method;
    let needs = |what: bool, key: &str| -> Result<(), ConfigError> {
        if what {
            Ok(())
        } else {
            Err(src.error(&value.span(), format!("method \"{}\" needs \"{key}\" in {where_}", method.as_str())))
        }
    };
    match method {
        Method::Debootstrap | Method::Mmdebstrap => needs(build.suite.is_some(), "suite")?,
        // dnf installs exactly what is declared: there is no "minimal base" to assume.
        Method::Dnf => {
            needs(build.suite.is_some(), "suite")?;
            needs(!build.packages.is_empty(), "packages")?;
        }
        Method::Tarball => needs(build.source.is_some(), "source")?,
    }
    Ok(build)
}
