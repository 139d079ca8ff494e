//! The testing kit: in-memory fakes, fault injection and the conformance suites.
//!
//! Enabled by the `testing` feature. Connector authors run the conformance suites against
//! their implementations; the fault-injecting [`FaultyDestination`] drives the runner
//! through refusals, outages, rate limits and crashes.

mod batch;
mod conformance;
mod exact;
mod faults;
mod memos;
mod source_suite;
pub use source_suite::*;

pub use batch::{ChangeBatchBuilder, change_batch};
pub use conformance::{
    ConformanceError, DestinationReadback, check_destination, check_state_store, check_transactional_state,
    conformance_schema, unique_id,
};
pub use exact::{identical, identical_json, identical_records};
pub use faults::FaultyDestination;
pub use memos::KeepMemos;

pub use crate::memory::{Delivery, MemoryDestination, MemorySource, MemoryStateStore};

/// The URL of a test service: the environment variable `var` if set, else `default`.
pub fn service_url(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

/// Whether a test whose service is unreachable must fail rather than skip: when the
/// `CI` environment variable is `true` (or `1`).
pub fn services_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Reports that `service` could not be reached: fails the test under CI, otherwise prints
/// why the test is skipped and returns, so the caller can `return` early.
///
/// ```no_run
/// # async fn connect(_: &str) -> Result<(), String> { Ok(()) }
/// # async fn demo() {
/// let url = rse_core::testing::service_url("RSE_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test");
/// let Ok(client) = connect(&url).await.map_err(|e| rse_core::testing::unavailable("PostgreSQL", &url, e)) else {
///     return;
/// };
/// # }
/// ```
#[allow(clippy::panic)]
pub fn unavailable(service: &str, url: &str, error: impl std::fmt::Display) {
    if services_required() {
        panic!("{service} at {url} is unreachable and CI=true requires it: {error}");
    }
    eprintln!("skipping: {service} at {url} is unreachable ({error}); set CI=true to make this a failure");
}
