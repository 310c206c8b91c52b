//! imageswitch: run a user's command inside another installed Linux tree.
//!
//! The setuid binary is a thin `main` over [`run::main`]; every privileged
//! step is in [`run::enter`], in order, top to bottom.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod config;
