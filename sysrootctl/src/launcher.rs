//! The desktop launcher sysrootctl writes for a sysroot (freedesktop.org
//! Desktop Entry Specification 1.5): made by the links step, recognised
//! by retirement, so both depend on this and not on each other.
#![forbid(unsafe_code)]

use std::path::Path;

/// A launcher that opens a terminal with the user's shell in the sysroot.
pub fn desktop_entry(name: &str, imageswitch: &Path) -> String {
    format!(
        "[Desktop Entry]\nType=Application\nName=Sysroot {name}\nComment=Shell inside the {name} sysroot\nExec={} {name}\nIcon=utilities-terminal\nTerminal=true\nCategories=System;\n",
        imageswitch.display()
    )
}
