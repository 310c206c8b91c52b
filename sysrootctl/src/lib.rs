//! sysrootctl: declarative maintenance of the trees `imageswitch` enters.
//!
//! Arguments are parsed and validated first ([`cli`]), the declaration read
//! ([`decl`]), and only then is the system touched ([`commands`]). Trees are
//! built as generations ([`store`]) by a backend ([`backend`]) and reconciled
//! step by step ([`reconcile`], one file per step); commands inside a tree run
//! through [`runner`], and everything sysrootctl starts through the one
//! namespace helper ([`namespace`]) that ties its lifetime to sysrootctl's.
//! [`exposure`] judges what of a tree users could reach outside imageswitch;
//! [`output`] is standard output that a closed reader never turns into a panic.
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
pub mod launcher;
pub mod namespace;
pub mod output;
pub mod reconcile;
pub mod runner;
pub mod store;
pub mod transfer;
pub mod util;
