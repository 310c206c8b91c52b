//! sysrootctl: declarative maintenance of the trees `imageswitch` enters.
//!
//! Arguments are parsed and validated first ([`cli`]), the declaration read
//! ([`decl`]), and only then is the system touched ([`commands`]). Trees are
//! built as generations ([`store`]) by a backend ([`backend`]) and reconciled
//! step by step ([`reconcile`]); commands inside a tree run through [`runner`].
#![forbid(unsafe_code)]

pub mod accounts;
pub mod backend;
pub mod check;
pub mod cli;
pub mod commands;
pub mod decl;
pub mod elf;
pub mod exposure;
pub mod hostmount;
pub mod namespace;
pub mod output;
pub mod reconcile;
pub mod runner;
pub mod store;
pub mod transfer;
pub mod util;
