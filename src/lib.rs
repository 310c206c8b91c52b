//! imageswitch: run a user's command inside another installed Linux tree.
//!
//! The setuid binary is a thin `main` over [`run::main`]; every step after
//! it is in [`run::run`] and, from the mount namespace on, [`run::enter`], in
//! order, top to bottom. `unsafe` lives only in
//! [`sys`]; every other module is `#![forbid(unsafe_code)]`. (The binary's
//! one `#[unsafe(no_mangle)]` names its C entry point; see src/bin.)
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod access;
pub mod accounts;
pub mod audit;
pub mod carryover;
pub mod config;
pub mod dispatch;
pub mod env;
pub mod error;
pub mod escape;
pub mod exec;
pub mod filecache;
pub mod mounts;
pub mod nss_files;
pub mod personal;
pub mod pin;
pub mod privileges;
pub mod run;
pub mod sys;
pub mod syslog;
pub mod trusted;
pub mod workdir;
