//! The setuid entry point. `no_main`: the Rust runtime's start-up would set
//! SIGPIPE to "ignore" — inherited by every command run inside, which then
//! sees EPIPE instead of dying quietly in a pipe — and read /proc/self/maps
//! while privileged. We want neither; argv and the environment still reach
//! `std::env` through glibc's init hooks.
#![no_main]

// SAFETY: `main` is the C entry point glibc's start-up calls once; no other
// symbol of that name exists in this binary.
#[unsafe(no_mangle)]
pub extern "C" fn main(_argc: std::ffi::c_int, _argv: *const *const std::ffi::c_char) -> std::ffi::c_int {
    imageswitch::run::main()
}
