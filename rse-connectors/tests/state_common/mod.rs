//! Shared by the state store tests: keys, entries and a real sync run that records a report.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use rse_core::memory::{MemoryDestination, MemorySource};
use rse_core::state::SnapshotEntry;
use rse_core::testing::conformance_schema;
use rse_core::*;

pub fn key(i: i64) -> Key {
    Key::from_values(&[Value::Int(i)])
}

pub fn entry(i: i64, version: u64) -> SnapshotEntry {
    SnapshotEntry {
        key: key(i),
        fingerprint: Some(Fingerprint(u128::from(version) << 64 | i as u128)),
        version,
        pending: None,
    }
}

/// Runs a three-row Mirror sync against `state` and returns its report (which the runner
/// recorded in `state` under the run's lease).
pub async fn run_once(state: impl StateStore + 'static, sync_id: &str, rows: i64) -> SyncReport {
    let records = (0..rows)
        .map(|i| Record::new(vec![Value::Int(i), Value::from("n"), Value::Float(i as f64), Value::Bool(true)]))
        .collect();
    let sync = Sync::builder(sync_id)
        .source(MemorySource::new(conformance_schema(), records))
        .destination(MemoryDestination::new())
        .state(state)
        .mode(Mode::Mirror)
        .options(SyncOptions::default().with_lease_ttl(Duration::from_secs(30)))
        .build()
        .await
        .unwrap();
    sync.run().await.unwrap()
}

/// Runs the `StateStore` conformance suite against `store`.
pub async fn check_conformance<S: StateStore>(store: &S) {
    rse_core::testing::check_state_store(store).await.unwrap();
}
