//! The `rse` command's library: syncs described in a TOML file ([`config`]) and the example
//! that `rse init` writes ([`init`]).
//!
//! The binary `rse` is built on this crate and on the public API of `rse`; tests and benches
//! reach the configuration through it.

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!("rse-cli needs a state store: enable its `sqlite` or `postgres` feature (or both)");

pub mod config;
pub mod init;
