//! Validation: the document the span-keeping reader read, checked against the
//! schema, entry by entry.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::reader::{Entry, Source, expect_bool, expect_list, expect_path, expect_str, positions};
use super::{
    Access, Config, ConfigError, Defaults, MAX_NAME_LEN, PROGRAM_NAME, Personality, Positions, Sysroot, error_at,
    is_clean_absolute, is_valid_name, type_name,
};

fn name_item(text: &str) -> Result<String, String> {
    if is_valid_name(text) {
        Ok(text.to_string())
    } else {
        Err(format!("invalid name \"{text}\" (allowed: A-Z a-z 0-9 . _ -, at most {MAX_NAME_LEN})"))
    }
}

fn bind_item(text: &str) -> Result<PathBuf, String> {
    if !is_clean_absolute(text) {
        return Err(format!("\"{text}\" is not an absolute path without \".\", \"..\" or repeated slashes"));
    }
    if text == "/" {
        return Err("binding \"/\" would cover the whole tree".to_string());
    }
    Ok(PathBuf::from(text))
}

/// A file directly or deeper under /etc: the only directory shown per entry.
fn host_file_item(text: &str) -> Result<PathBuf, String> {
    if !is_clean_absolute(text) || !text.starts_with("/etc/") {
        return Err(format!("\"{text}\" is not a path under /etc/ without \".\", \"..\" or repeated slashes"));
    }
    // The caller's own entries are shown in these (see the per-entry view);
    // the host's whole files would show every account and replace the tree's.
    if ["/etc/passwd", "/etc/group"].contains(&text) {
        return Err(format!("\"{text}\" is not a host file: the caller's own entries are added to the tree's"));
    }
    Ok(PathBuf::from(text))
}

fn parse_defaults(src: &Source<'_>, table: &DeTable<'_>) -> Result<Defaults, ConfigError> {
    let mut defaults = Defaults::default();
    for (key, value) in table.iter() {
        match key.get_ref().as_ref() {
            "binds" => {
                defaults.binds = expect_list(src, "binds", value, bind_item)?;
                defaults.binds_if_present.clear();
                defaults.bind_positions = positions(src, value);
            }
            "host_files" => defaults.host_files = expect_list(src, "host_files", value, host_file_item)?,
            "require_cwd" => defaults.require_cwd = expect_bool(src, "require_cwd", value)?,
            "log_socket" => {
                let text = expect_str(src, "log_socket", value)?;
                defaults.log_socket = if text.is_empty() { None } else { Some(expect_path(src, "log_socket", value)?) };
            }
            other => {
                return Err(src.error(&key.span(), format!("unknown key \"{other}\" in [defaults]")));
            }
        }
    }
    Ok(defaults)
}

/// Why `setuid = true` is refused rather than honoured.
const SETUID_REMOVED: &str = "\"setuid = true\" is no longer supported: setuid programs in a sysroot never elevate \
     (euid 0 without capabilities still passes root's owner checks on the host); remove this line";

fn parse_sysroot(
    src: &Source<'_>,
    name: &str,
    header: &Range<usize>,
    table: &DeTable<'_>,
    defaults: &Defaults,
) -> Result<Sysroot, ConfigError> {
    let line = error_at(src.file, src.text, header, "").line;
    let mut sysroot = Sysroot {
        name: name.to_string(),
        path: PathBuf::new(),
        personality: Personality::Linux,
        aliases: Vec::new(),
        bin_dir: None,
        access: Access::default(),
        binds: Vec::new(),
        bind_positions: Positions::new(),
        host_files: None,
        require_cwd: defaults.require_cwd,
        shell: None,
        line,
    };
    let mut have_path = false;
    let mut entries: Vec<Entry<'_>> = table.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    for (key, value) in entries {
        match key.get_ref().as_ref() {
            "path" => {
                sysroot.path = expect_path(src, "path", value)?;
                if sysroot.path == Path::new("/") {
                    return Err(src.error(&value.span(), "\"path\" must not be \"/\""));
                }
                have_path = true;
            }
            "personality" => {
                sysroot.personality = match expect_str(src, "personality", value)? {
                    "linux" => Personality::Linux,
                    "linux32" => Personality::Linux32,
                    other => {
                        return Err(src.error(
                            &value.span(),
                            format!("\"personality\" must be \"linux\" or \"linux32\", found \"{other}\""),
                        ));
                    }
                }
            }
            "aliases" => {
                sysroot.aliases = expect_list(src, "aliases", value, |text| {
                    let alias = name_item(text)?;
                    if alias == PROGRAM_NAME {
                        return Err(format!("\"{PROGRAM_NAME}\" is the program's own name"));
                    }
                    Ok(alias)
                })?
            }
            "bin_dir" => {
                let dir = expect_path(src, "bin_dir", value)?;
                if dir == Path::new("/") {
                    return Err(src.error(&value.span(), "\"bin_dir\" must not be \"/\""));
                }
                sysroot.bin_dir = Some(dir);
            }
            "users" => sysroot.access.users = Some(expect_list(src, "users", value, name_item)?),
            "groups" => sysroot.access.groups = Some(expect_list(src, "groups", value, name_item)?),
            "binds" => {
                sysroot.binds = expect_list(src, "binds", value, bind_item)?;
                sysroot.bind_positions = positions(src, value);
            }
            "host_files" => sysroot.host_files = Some(expect_list(src, "host_files", value, host_file_item)?),
            "require_cwd" => sysroot.require_cwd = expect_bool(src, "require_cwd", value)?,
            // Accepted for old files: false is the only behaviour there is.
            "setuid" => {
                if expect_bool(src, "setuid", value)? {
                    return Err(src.error(&key.span(), SETUID_REMOVED));
                }
            }
            "shell" => sysroot.shell = Some(expect_path(src, "shell", value)?),
            // Belongs to sysrootctl; its contents are not ours to judge.
            "build" => {}
            other => {
                return Err(src.error(&key.span(), format!("unknown key \"{other}\" in [sysroot.{name}]")));
            }
        }
    }
    if !have_path {
        return Err(src.error(header, format!("missing key \"path\" in [sysroot.{name}]")));
    }
    Ok(sysroot)
}

/// The `users` and `groups` of an entry that is otherwise broken, when both
/// are valid (or absent): who would have been let in.
fn readable_access(src: &Source<'_>, value: &Spanned<DeValue<'_>>) -> Option<Access> {
    let DeValue::Table(table) = value.get_ref() else { return None };
    let list = |key: &str| table.get(key).map(|v| expect_list(src, key, v, name_item)).transpose().ok();
    Some(Access { users: list("users")?, groups: list("groups")? })
}

/// Parses and validates the configuration text. `file` is used only in messages.
pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
    let src = Source { file, text };
    let document = DeTable::parse(text).map_err(|err| {
        let span = err.span().unwrap_or(0..0);
        let message = err.message().lines().next().unwrap_or("invalid TOML").trim().to_string();
        let mut error = src.error(&span, format!("syntax error: {message}"));
        error.message.push_str(" (no sysroot can be entered until this is fixed)");
        error
    })?;
    let document = document.get_ref();

    let mut defaults = Defaults::default();
    let mut sysroot_table = None;
    for (key, value) in document.iter() {
        match key.get_ref().as_ref() {
            "defaults" => match value.get_ref() {
                DeValue::Table(table) => defaults = parse_defaults(&src, table)?,
                other => {
                    return Err(
                        src.error(&value.span(), format!("[defaults] must be a table, found {}", type_name(other)))
                    );
                }
            },
            "sysroot" => match value.get_ref() {
                DeValue::Table(table) => sysroot_table = Some(table),
                other => {
                    return Err(
                        src.error(&value.span(), format!("[sysroot] must be a table, found {}", type_name(other)))
                    );
                }
            },
            other => {
                return Err(src.error(&key.span(), format!("unknown top-level key \"{other}\"")));
            }
        }
    }

    let mut config = Config { defaults, sysroots: Vec::new(), broken: Vec::new(), broken_access: BTreeMap::new() };
    let Some(table) = sysroot_table else {
        return Ok(config);
    };

    let mut entries: Vec<Entry<'_>> = table.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    // Names that dispatch must map to exactly one sysroot: name, alias, bin_dir.
    let mut claimed_names: BTreeMap<String, String> = BTreeMap::new();
    let mut claimed_dirs: BTreeMap<PathBuf, String> = BTreeMap::new();
    // `imageswitch NAME` takes a sysroot name or an alias: an alias may not be
    // another sysroot's name, whichever comes first in the file.
    let sysroot_names: Vec<&str> = entries.iter().map(|(key, _)| key.get_ref().as_ref()).collect();
    for (key, value) in entries {
        let name = key.get_ref().as_ref();
        let result = if !is_valid_name(name) || name == PROGRAM_NAME {
            Err(src.error(
                &key.span(),
                format!("invalid sysroot name \"{name}\" (allowed: A-Z a-z 0-9 . _ -, at most {MAX_NAME_LEN}, not \"{PROGRAM_NAME}\")"),
            ))
        } else {
            match value.get_ref() {
                DeValue::Table(entry) => parse_sysroot(&src, name, &key.span(), entry, &config.defaults),
                other => {
                    Err(src
                        .error(&value.span(), format!("[sysroot.{name}] must be a table, found {}", type_name(other))))
                }
            }
        };
        let result = result.and_then(|sysroot| {
            for alias in &sysroot.aliases {
                if alias != name && sysroot_names.contains(&alias.as_str()) {
                    return Err(src.error(
                        &key.span(),
                        format!("alias \"{alias}\" of [sysroot.{name}] is the name of [sysroot.{alias}]"),
                    ));
                }
                if let Some(owner) = claimed_names.get(alias) {
                    return Err(src.error(
                        &key.span(),
                        format!("alias \"{alias}\" of [sysroot.{name}] is already used by [sysroot.{owner}]"),
                    ));
                }
            }
            if let Some(dir) = &sysroot.bin_dir {
                if let Some(owner) = claimed_dirs.get(dir) {
                    return Err(src.error(
                        &key.span(),
                        format!(
                            "bin_dir \"{}\" of [sysroot.{name}] is already used by [sysroot.{owner}]",
                            dir.display()
                        ),
                    ));
                }
            }
            Ok(sysroot)
        });
        match result {
            Ok(sysroot) => {
                for alias in &sysroot.aliases {
                    claimed_names.insert(alias.clone(), sysroot.name.clone());
                }
                if let Some(dir) = &sysroot.bin_dir {
                    claimed_dirs.insert(dir.clone(), sysroot.name.clone());
                }
                config.sysroots.push(sysroot);
            }
            Err(error) => {
                if let Some(access) = readable_access(&src, value) {
                    config.broken_access.insert(name.to_string(), access);
                }
                config.broken.push((name.to_string(), error));
            }
        }
    }
    Ok(config)
}
