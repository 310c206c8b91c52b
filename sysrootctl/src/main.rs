fn main() {
    eprintln!("sysrootctl: not built yet");
    std::process::exit(1);
}
