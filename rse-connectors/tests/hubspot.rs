//! The HubSpot destination against an in-process HubSpot that checks every request and
//! every answer against the contract (/work/shared/contracts/hubspot/crm-batch-upsert.schema.json)
//! and behaves as saas-contracts.md §1 and HubSpot's documentation say; each test ends with
//! `assert_no_violations()`.
#![cfg(feature = "hubspot")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/hubspot_server/mod.rs"]
mod hubspot_server;

/// SIGKILL mid-run, repeated: nothing lost, one record created per key.
#[cfg(feature = "sqlite")]
#[path = "support/child_run.rs"]
mod child_run;
#[path = "hubspot/common.rs"]
mod common;
/// The destination conformance suite, with the memos the runner would hand back.
#[path = "hubspot/conformance.rs"]
mod conformance;
#[cfg(feature = "sqlite")]
#[path = "hubspot/kill.rs"]
mod kill;
/// The contract server itself, driven with plain HTTP.
#[path = "hubspot/server.rs"]
mod server;
/// Full syncs: refusals kept and retried, Mirror deletes, tokens, the daily allowance, pacing.
#[path = "hubspot/sync.rs"]
mod sync;
/// One write at a time: what is sent, how each version's answers map to outcomes, check().
#[path = "hubspot/write.rs"]
mod write;
