//! The Google Ads destination (Customer Match through `OfflineUserDataJobService`) against an
//! in-process Google Ads API that checks every request and every answer against the contract
//! (/work/shared/contracts/google/jsonschema/googleads_v25_offline_user_data_job.schema.json)
//! and behaves as saas-contracts.md §3a and Google's documentation say; each test ends with
//! `assert_no_violations()`.
#![cfg(feature = "google")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/contracts.rs"]
mod contracts;
#[path = "support/google_ads_server/mod.rs"]
mod google_ads_server;

/// Credentials, manager accounts, another writer's job.
#[path = "google_ads/auth.rs"]
mod auth;
/// SIGKILL mid-run, repeated: the list equals the segment.
#[cfg(feature = "sqlite")]
#[path = "support/child_run.rs"]
mod child_run;
#[path = "google_ads/common.rs"]
mod common;
/// The destination conformance suite, with the memos the runner would hand back.
#[path = "google_ads/conformance.rs"]
mod conformance;
#[cfg(feature = "sqlite")]
#[path = "google_ads/kill.rs"]
mod kill;
/// The contract server itself, driven with plain HTTP.
#[path = "google_ads/server.rs"]
mod server;
/// Full syncs: exact hash sets, refusals, lost answers, consent, full refresh, quotas.
#[path = "google_ads/sync.rs"]
mod sync;
