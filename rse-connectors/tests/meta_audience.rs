//! The Meta Custom Audiences destination against an in-process Graph API that follows Meta's
//! documentation (no machine-readable description of these endpoints exists): the Marketing
//! API references "Custom Audience Users", "Custom Audience Usersreplace" and "Custom
//! Audience Session", the guide "Customer File Custom Audiences" (sessions, multi-key
//! matching, hashing and normalisation, the Replace Users API), "Marketing API: Rate
//! limiting", "Graph API: Rate limiting" and "Graph API: Handling errors", as summarised in
//! /work/shared/contracts/saas-contracts.md §4, §8 and §9. Each test ends with
//! `assert_no_violations()`.
#![cfg(feature = "meta")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/meta_server/mod.rs"]
mod meta_server;

/// SIGKILL mid-run, repeated: the audience equals the segment at the end.
#[cfg(feature = "sqlite")]
#[path = "support/child_run.rs"]
mod child_run;
#[path = "meta_audience/common.rs"]
mod common;
/// The destination conformance suite, with the memos the runner would hand back.
#[path = "meta_audience/conformance.rs"]
mod conformance;
#[cfg(feature = "sqlite")]
#[path = "meta_audience/kill.rs"]
mod kill;
/// The contract server itself, driven with plain HTTP.
#[path = "meta_audience/server.rs"]
mod server;
/// Syncs: identifier changes, consent, Meta's invalid rows, throttling, quota, tokens, the
/// full refresh's replace, the match rate.
#[path = "meta_audience/sync.rs"]
mod sync;
/// One write at a time: whole-call refusals bisected, the replace session's end.
#[path = "meta_audience/write.rs"]
mod write;
