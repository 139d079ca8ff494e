//! The `rse` command's library: syncs described in a TOML file ([`config`]) and the example
//! that `rse init` writes ([`init`]).
//!
//! The binary `rse` is built on this crate and on the public API of `rse`; tests and benches
//! reach the configuration through it.

pub mod config;
pub mod init;
