//! Takes the unwinder std needs (even with `panic = "abort"`) from gcc's
//! static libgcc_eh.a instead of loading libgcc_s.so.1 at every start of the
//! setuid binary (about 90 µs of an entry). std asks the linker for
//! `-lgcc_s`; a `libgcc_s.a` that is libgcc_eh.a, found first, answers it.
//! glibc stays dynamic: its NSS modules cannot be used from a static binary.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let gnu_linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if !gnu_linux {
        return;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let found = Command::new(&cc).arg("-print-file-name=libgcc_eh.a").output().expect("run the C compiler");
    let eh = PathBuf::from(String::from_utf8_lossy(&found.stdout).trim());
    assert!(eh.is_absolute() && eh.exists(), "{cc} knows no libgcc_eh.a (install gcc)");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    std::fs::copy(&eh, out.join("libgcc_s.a")).expect("copy libgcc_eh.a");
    println!("cargo:rustc-link-search=native={}", out.display());
}
