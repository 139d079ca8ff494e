//! Shared by the state store tests: keys, entries and a real sync run that records a report.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use rse_core::memory::{MemoryDestination, MemorySource};
use rse_core::state::{RejectedEntry, SnapshotEntry};
use rse_core::testing::conformance_schema;
use rse_core::*;

pub mod values;

pub fn key(i: i64) -> Key {
    Key::from_values(&[Value::Int(i)])
}

pub fn entry(i: i64, version: u64) -> SnapshotEntry {
    SnapshotEntry {
        key: key(i),
        fingerprint: Some(Fingerprint(u128::from(version) << 64 | i as u128)),
        version,
        pending: None,
        memo: None,
    }
}

/// Runs a three-row Mirror sync against `state` and returns its report (which the runner
/// recorded in `state` under the run's lease).
pub async fn run_once(state: impl StateStore + 'static, sync_id: &str, rows: i64) -> SyncReport {
    let records = (0..rows)
        .map(|i| Record::new(vec![Value::Int(i), Value::from("n"), Value::Float(i as f64), Value::Bool(true)]))
        .collect();
    let sync = SyncJob::builder(sync_id)
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

/// A refused record of key `i` holding `values`.
pub fn refusal(i: i64, values: Vec<Value>) -> RejectedEntry {
    RejectedEntry {
        key: key(i),
        stage: RejectionStage::Destination,
        op: Some(Op::Insert),
        fingerprint: Some(Fingerprint(11)),
        version: 0,
        reason: "refused".into(),
        attempts: 3,
        record: Some(Record::new(values)),
        first_rejected_at: 1_700_000_000,
        last_rejected_at: 1_700_000_100,
    }
}

/// What an rse before the exact value form stored in `entry` and `cursor`: serde JSON, where
/// a NaN or an infinite float becomes `null`.
pub fn old_format(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap()
}

/// Checks what a store that was written in the old format reads back: sync `kept` holds a
/// rejection of ordinary values and a timestamp cursor, both exact; sync `lost` holds a
/// rejection (key 2) and a cursor that were NaN, read without the record and without the
/// cursor instead of failing.
pub async fn check_old_format_read(store: &dyn StateStore) {
    let kept = store.rejected("kept", None, 10).await.unwrap();
    assert_eq!(kept, vec![refusal(1, old_values())], "an old-format rejection did not read back as written");
    assert_eq!(store.meta("kept").await.unwrap().cursor, Some(Value::Timestamp(1_700_000_000_000_000)));
    let lost = store.rejected("lost", None, 10).await.unwrap();
    assert_eq!(
        lost,
        vec![RejectedEntry { record: None, ..refusal(2, Vec::new()) }],
        "an old-format rejection whose record held a NaN was not kept without its record"
    );
    let meta = store.meta("lost").await.unwrap();
    assert_eq!(meta.cursor, None, "an old-format NaN cursor was not read as no cursor");
    assert_eq!(meta.fingerprint_algorithm, Some(FingerprintAlgorithm::Xxh3_128));
}

/// Values an old-format row holds exactly (JSON can carry them).
pub fn old_values() -> Vec<Value> {
    vec![
        Value::Int(1),
        Value::Float(-0.0),
        Value::Float(0.1),
        Value::from("text"),
        Value::Json(serde_json::json!({"a": [1.5, -2]})),
        Value::List(vec![Value::Date(19_000), Value::Null]),
    ]
}

/// The old-format rows `check_old_format_read` expects, as (sync, key, entry JSON, cursor
/// JSON).
pub fn old_rows() -> Vec<(&'static str, Key, String, String)> {
    let nan = vec![Value::Int(2), Value::List(vec![Value::Float(f64::NAN)]), Value::Float(f64::INFINITY)];
    vec![
        ("kept", key(1), old_format(&refusal(1, old_values())), old_format(&Value::Timestamp(1_700_000_000_000_000))),
        ("lost", key(2), old_format(&refusal(2, nan)), old_format(&Value::Float(f64::NAN))),
    ]
}
