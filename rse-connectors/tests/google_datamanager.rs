//! Google Customer Match through the Data Manager API, against an in-process Data Manager
//! that checks every request and every answer against the contract
//! (/work/shared/contracts/google/jsonschema/datamanager_v1.schema.json and the protos it was
//! derived from) and behaves as SOURCE.md and saas-contracts.md §3b say; each test ends with
//! `assert_no_violations()`.
#![cfg(feature = "google")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/datamanager_server/mod.rs"]
mod datamanager_server;

/// The contract server itself, driven with plain HTTP.
#[path = "google_datamanager/server.rs"]
mod server;
