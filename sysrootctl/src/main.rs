#![forbid(unsafe_code)]

fn main() {
    std::process::exit(sysrootctl::cli::main());
}
