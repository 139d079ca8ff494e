//! Salesforce against an in-process org.
//!
//! No vendor schema exists for these endpoints (`../shared/contracts/salesforce/SOURCE.md`): the
//! org follows Salesforce's documentation — REST API Developer Guide ("Upsert Records Using
//! sObject Collections", "Delete Records Using sObject Collections", "Composite" / "allOrNone
//! Parameters in Composite and Collections Requests", "sObject Describe", "Limits", "Status
//! Codes and Error Responses"); Bulk API 2.0 and Bulk API Developer Guide ("Create a Job",
//! "Upload Job Data", "Close or Abort a Job", "Get Job Info", "Get All Jobs", "Get Job
//! Successful / Failed / Unprocessed Record Results"); Salesforce Help ("OAuth 2.0 JWT Bearer
//! Flow for Server-to-Server Integration", "OAuth 2.0 Refresh Token Flow"); "API Request Limits
//! and Allocations" (`Sforce-Limit-Info`); `../shared/contracts/saas-contracts.md` §2 and §8.
#![cfg(feature = "salesforce")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/salesforce_server/mod.rs"]
mod salesforce_server;
/// The contacts model, the destination and a sync into the org, shared by the tests below.
#[path = "salesforce/world.rs"]
mod world;

/// Large batches through Bulk API 2.0 jobs.
#[path = "salesforce/bulk.rs"]
mod bulk;
/// The configuration, the schema and the org's describe, checked before sending.
#[path = "salesforce/checks.rs"]
mod checks;
/// SIGKILL at random moments, with the state in SQLite.
#[cfg(feature = "sqlite")]
#[path = "support/child_run.rs"]
mod child_run;
/// The destination conformance suite, by Collections and by Bulk.
#[path = "salesforce/conformance.rs"]
mod conformance;
#[cfg(feature = "sqlite")]
#[path = "salesforce/kill.rs"]
mod kill;
/// Its Bulk API 2.0 jobs, driven with plain HTTP.
#[path = "salesforce/server_bulk.rs"]
mod server_bulk;
/// The org itself, driven with plain HTTP: what it accepts, refuses and reports.
#[path = "salesforce/server_smoke.rs"]
mod server_smoke;
/// Whole syncs through the runner.
#[path = "salesforce/sync.rs"]
mod sync;
/// One write at a time: Collections, deletes by memo, classification, the allowance.
#[path = "salesforce/writes.rs"]
mod writes;
