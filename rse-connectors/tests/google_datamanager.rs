//! Google Customer Match through the Data Manager API, against an in-process Data Manager
//! that checks every request and every answer against the contract
//! (/work/shared/contracts/google/jsonschema/datamanager_v1.schema.json and the protos it was
//! derived from) and behaves as SOURCE.md and saas-contracts.md §3b say; each test ends with
//! `assert_no_violations()`.
#![cfg(feature = "google")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/datamanager_server/mod.rs"]
mod datamanager_server;
#[path = "support/oauth_server.rs"]
mod oauth_server;

/// SIGKILL mid-upload, repeated: the list ends equal to the segment.
#[cfg(feature = "sqlite")]
#[path = "support/child_run.rs"]
mod child_run;
#[path = "google_datamanager/common.rs"]
mod common;
/// The destination conformance suite, with the memos the runner would hand back.
#[path = "google_datamanager/conformance.rs"]
mod conformance;
#[cfg(feature = "sqlite")]
#[path = "google_datamanager/kill.rs"]
mod kill;
/// Addresses, mobile ids, settings refused, the service account's JWT grant.
#[path = "google_datamanager/members.rs"]
mod members;
/// The contract server itself, driven with plain HTTP.
#[path = "google_datamanager/server.rs"]
mod server;
/// Full syncs: identifiers moved, consent, full refresh, quotas, lost answers, tokens,
/// processing figures, check().
#[path = "google_datamanager/sync.rs"]
mod sync;
