//! Slurm refuses a SPANK plugin whose `plugin_version` names another
//! major.minor release, so the number comes from the headers of the Slurm the
//! plugin is built for (`libslurm-dev` on Debian, `slurm-devel` on RPM systems).
//! `SLURM_INCLUDE_DIR` points at another install (default `/usr/include`).

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=SLURM_INCLUDE_DIR");
    let include = env::var_os("SLURM_INCLUDE_DIR").map_or_else(|| PathBuf::from("/usr/include"), PathBuf::from);
    let header = include.join("slurm/slurm_version.h");
    println!("cargo:rerun-if-changed={}", header.display());
    let text = fs::read_to_string(&header).unwrap_or_else(|e| {
        panic!("cannot read {}: {e} (install libslurm-dev, or set SLURM_INCLUDE_DIR)", header.display())
    });
    let number = text
        .lines()
        .filter_map(|line| line.strip_prefix("#define SLURM_VERSION_NUMBER"))
        .map(str::trim)
        .find_map(|v| u32::from_str_radix(v.trim_start_matches("0x"), 16).ok())
        .unwrap_or_else(|| panic!("no SLURM_VERSION_NUMBER in {}", header.display()));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("slurm_version.rs");
    fs::write(
        &out,
        format!("/// `SLURM_VERSION_NUMBER` of the headers this plugin was built against.\npub const SLURM_VERSION_NUMBER: u32 = {number:#x};\n"),
    )
    .unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}
