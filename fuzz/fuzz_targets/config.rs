//! Bytes → `config::parse` → a validated `Config` or a positioned error.
//! No panic, and nothing accepted that breaks a validation rule.
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use imageswitch::config::{self, Config, PROGRAM_NAME, is_clean_absolute, is_valid_name};
use libfuzzer_sys::fuzz_target;

const FILE: &str = "/etc/sysroots.toml";

fn clean(path: &Path) -> bool {
    path.to_str().is_some_and(is_clean_absolute)
}

fn check(config: &Config) {
    let defaults = &config.defaults;
    for bind in &defaults.binds {
        assert!(clean(bind) && bind != Path::new("/"), "defaults bind {bind:?}");
    }
    if let Some(socket) = &defaults.log_socket {
        assert!(clean(socket), "log_socket {socket:?}");
    }
    let mut alias_owner: BTreeMap<&str, &str> = BTreeMap::new();
    let mut dir_owner: BTreeMap<&Path, &str> = BTreeMap::new();
    let mut names: Vec<&str> = Vec::new();
    let all_names: Vec<&str> = config.sysroots.iter().map(|s| s.name.as_str()).collect();
    for s in &config.sysroots {
        for alias in &s.aliases {
            assert!(
                alias == &s.name || !all_names.contains(&alias.as_str()),
                "alias {alias:?} of {} names another sysroot",
                s.name
            );
        }
        assert!(is_valid_name(&s.name) && s.name != PROGRAM_NAME, "sysroot name {:?}", s.name);
        assert!(!names.contains(&s.name.as_str()), "sysroot {:?} twice", s.name);
        names.push(&s.name);
        assert!(clean(&s.path) && s.path != Path::new("/"), "{}: path {:?}", s.name, s.path);
        for alias in &s.aliases {
            assert!(is_valid_name(alias) && alias != PROGRAM_NAME, "{}: alias {alias:?}", s.name);
            if let Some(owner) = alias_owner.insert(alias, &s.name) {
                assert_eq!(owner, s.name, "alias {alias:?} in both [sysroot.{owner}] and [sysroot.{}]", s.name);
            }
        }
        if let Some(dir) = &s.bin_dir {
            assert!(clean(dir) && dir != Path::new("/"), "{}: bin_dir {dir:?}", s.name);
            assert!(dir_owner.insert(dir, &s.name).is_none(), "bin_dir {dir:?} in two sysroots");
        }
        for list in [&s.access.users, &s.access.groups].into_iter().flatten() {
            assert!(list.iter().all(|n| is_valid_name(n)), "{}: users/groups {list:?}", s.name);
        }
        for bind in &s.binds {
            assert!(clean(bind) && bind != Path::new("/"), "{}: bind {bind:?}", s.name);
        }
        if let Some(shell) = &s.shell {
            assert!(clean(shell), "{}: shell {shell:?}", s.name);
        }
        assert!(config.broken(&s.name).is_none(), "{} both valid and broken", s.name);
    }
    for (name, err) in &config.broken {
        assert_eq!(err.file, FILE);
        assert!(err.line >= 1 && err.column >= 1, "broken {name}: {err}");
    }
}

fuzz_target!(|data: &[u8]| {
    // The loader refuses files that are not UTF-8 before parsing.
    let Ok(text) = std::str::from_utf8(data) else { return };
    match config::parse(FILE, text) {
        Ok(config) => check(&config),
        Err(err) => {
            assert_eq!(err.file, FILE);
            assert!(err.line >= 1 && err.column >= 1, "error without a position: {err}");
        }
    }
});
