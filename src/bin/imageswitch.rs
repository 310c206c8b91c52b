fn main() {
    std::process::exit(imageswitch::run::main());
}
