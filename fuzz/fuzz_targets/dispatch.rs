//! Bytes → argv (NUL-separated, argv[0] first, any bytes; with a leading
//! 0x01 byte the first element is the executed path, AT_EXECFN) → `dispatch`
//! against a fixed configuration. No panic; a sysroot is entered only by an
//! exact configured name, alias or bin_dir (by argv[0]'s directory, or for a
//! bare argv[0] by the executed path), and a bin_dir entry only ever becomes
//! `/bin/NAME` with a valid NAME.
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path};
use std::sync::OnceLock;

use imageswitch::config::{self, Config, is_valid_name};
use imageswitch::dispatch::{Command, Invocation, dispatch, informational};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"
[sysroot.sl5]
path = "/sysroot/sl5"
personality = "linux32"
aliases = ["sl5", "old-sl5"]
bin_dir = "/bin5"

[sysroot.deb11]
path = "/var/cache/imageswitch-test/bullseye-i386"
aliases = ["imgsw-deb11"]
bin_dir = "/imgsw-test-bin11"

[sysroot.plain]
path = "/srv/plain"

[sysroot.broken]
pth = "/typo"
aliases = ["broken-alias"]
"#;

fn config() -> &'static Config {
    static CONFIG_ONCE: OnceLock<Config> = OnceLock::new();
    CONFIG_ONCE.get_or_init(|| config::parse("fuzz", CONFIG).expect("the fuzz configuration is valid"))
}

fuzz_target!(|data: &[u8]| {
    let (exec_path, data) = match data.split_first() {
        Some((1, rest)) => {
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            (Some(OsString::from_vec(rest[..end].to_vec())), rest.get(end + 1..).unwrap_or(&[]))
        }
        _ => (None, data),
    };
    let argv: Vec<OsString> = if data.is_empty() {
        Vec::new()
    } else {
        data.split(|&b| b == 0).map(|a| OsString::from_vec(a.to_vec())).collect()
    };
    let config = config();
    let _ = informational(&argv);
    let Ok(invocation) = dispatch(&argv, exec_path.as_deref(), config) else { return };
    let Invocation::Enter { sysroot, command, .. } = invocation else { return };
    let entered = config.sysroot(&sysroot).expect("entered sysroot is configured and valid");
    let argv0 = Path::new(&argv[0]);
    let base = argv0.file_name().map(|b| b.as_bytes()).unwrap_or(b"");
    let via_program = base == b"imageswitch";
    let via_bin_dir = entered.bin_dir.as_deref().is_some_and(|d| argv0.parent() == Some(d));
    let alias = base.strip_prefix(b"-").unwrap_or(base);
    let via_alias = entered.aliases.iter().any(|a| a.as_bytes() == alias);
    // `uname` found through PATH, `-bash` run as /binN/bash: argv[0] has no
    // directory and the executed path is a bin_dir entry of that name.
    let executed_entry = |name: Option<&[u8]>| {
        exec_path.as_deref().map(Path::new).is_some_and(|p| {
            entered.bin_dir.as_deref().is_some_and(|d| p.parent() == Some(d))
                && argv[0].as_bytes() == base
                && p.file_name().map(|n| n.as_bytes()) == name
        })
    };
    let via_login_bin_dir = executed_entry(base.strip_prefix(b"-"));
    let via_path_bin_dir = executed_entry(Some(base));
    assert!(
        via_program || via_bin_dir || via_alias || via_login_bin_dir || via_path_bin_dir,
        "{argv:?} ({exec_path:?}) entered {sysroot} by no configured name"
    );
    if via_program {
        // imageswitch [--require-cwd] [--] NAME [CMD...]
        let mut rest = &argv[1..];
        if rest[0].as_bytes() == b"--require-cwd" {
            rest = &rest[1..];
        }
        let named = if rest[0].as_bytes() == b"--" { &rest[1] } else { &rest[0] };
        let named = named.to_str().expect("names are UTF-8");
        assert!(entered.name == named || entered.aliases.iter().any(|a| a == named), "{argv:?} → {sysroot}");
    } else if via_bin_dir || (via_path_bin_dir && matches!(command, Command::Program { .. })) {
        let Command::Program { program, args } = &command else { panic!("bin_dir gives a program: {command:?}") };
        let program = Path::new(program);
        let parts: Vec<Component<'_>> = program.components().collect();
        assert_eq!(parts.len(), 3, "{program:?}");
        assert!(program.starts_with("/bin"), "{program:?}");
        let name = program.file_name().and_then(|n| n.to_str()).expect("UTF-8 name");
        assert!(is_valid_name(name), "{program:?}");
        assert_eq!(args.as_slice(), &argv[1..], "arguments passed untouched");
    } else {
        match &command {
            Command::LoginShell => assert_eq!(argv.len(), 1),
            Command::Shell(args) => assert_eq!(args.as_slice(), &argv[1..], "arguments passed untouched"),
            Command::LoginProgram { program, args } => {
                assert!(via_login_bin_dir, "{argv:?} → {command:?}");
                let name = Path::new(program).file_name().and_then(|n| n.to_str()).expect("UTF-8 name");
                assert!(is_valid_name(name) && Path::new(program).parent() == Some(Path::new("/bin")), "{program:?}");
                assert_eq!(args.as_slice(), &argv[1..], "arguments passed untouched");
            }
            Command::Program { .. } => panic!("an alias runs the shell: {command:?}"),
        }
    }
});
