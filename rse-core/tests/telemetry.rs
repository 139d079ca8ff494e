//! No row value ever appears in a log line or an error message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rse_core::memory::{MemoryDestination, MemorySource, MemoryStateStore};
use rse_core::testing::FaultyDestination;
use rse_core::*;

/// Distinctive values: none of these may show in logs or errors.
const SECRETS: [&str; 5] = ["zq-secret-7@example.com", "Quetzalcoatl Smith", "4242424242", "0.8765432", "918273645"];

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn schema() -> Arc<Schema> {
    Schema::new(
        vec![
            Field::required("id", DataType::Int),
            Field::new("email", DataType::String),
            Field::new("name", DataType::String),
            Field::new("phone", DataType::String),
            Field::new("score", DataType::Float),
        ],
        &["id"],
    )
    .unwrap()
    .into_arc()
}

fn row(id: i64) -> Record {
    Record::new(vec![
        Value::Int(id),
        Value::from(SECRETS[0]),
        Value::from(SECRETS[1]),
        Value::from(SECRETS[2]),
        Value::Float(0.876_543_2),
    ])
}

#[tokio::test(start_paused = true)]
async fn no_value_appears_in_logs_or_errors() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut rows: Vec<Record> = (918_273_640..918_273_650).map(row).collect();
    rows.push(Record::new(vec![Value::Null, SECRETS[0].into(), SECRETS[1].into(), Value::Null, Value::Null]));
    rows.push(row(918_273_645));
    let source = MemorySource::new(schema(), rows);
    let inner = MemoryDestination::new();
    let faulty = FaultyDestination::new(inner.clone());
    let key = Key::from_values(&[Value::Int(918_273_645)]);
    faulty
        .reject_key(key.clone(), "refused by policy")
        .invalid_batch_key(Key::from_values(&[Value::Int(918_273_641)]))
        .fail_write(1)
        .rate_limit_write(2, Some(Duration::from_secs(1)));
    let state = MemoryStateStore::new();
    let sync = SyncJob::builder("telemetry")
        .source(source.clone())
        .destination(faulty.clone())
        .state(state.clone())
        .mode(Mode::Mirror)
        .options(SyncOptions::default().with_batch_rows(3).with_max_deletes(Some(MaxDeletes::Count(0))))
        .build()
        .await
        .unwrap();
    let report = sync.run().await.unwrap();
    assert!(report.counts.rejected.total() >= 2 && report.counts.invalid == 2, "{report:?}");
    source.set_rows(Vec::new());
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.withheld, 8);

    // Errors a user can meet: each Display checked.
    let mut errors: Vec<String> = Vec::new();
    faulty.fatal_write(faulty.calls() + 1);
    source.set_rows(vec![row(1)]);
    let report = sync.run().await.unwrap();
    if let RunStatus::Failed { reason, .. } = &report.status {
        errors.push(reason.clone());
    }
    let held = state.acquire_lease("telemetry", "other", Duration::from_secs(60)).await.unwrap();
    errors.push(sync.run().await.unwrap_err().to_string());
    state.release_lease(&held).await.unwrap();
    errors.push(Record::new(vec![Value::Null]).key(&schema()).unwrap_err().to_string());
    errors.push(Decimal::parse(SECRETS[2].replace('4', "x").as_str()).unwrap_err().to_string());
    errors.push(Key::from_encoded(SECRETS[0].as_bytes()).unwrap_err().to_string());
    errors.push(format!("{key:?} {key}"));
    errors.push(
        SyncJob::builder("telemetry")
            .source(MemorySource::new(schema(), vec![row(1)]))
            .destination(MemoryDestination::new())
            .state(MemoryStateStore::new())
            .key(["mail"])
            .build()
            .await
            .unwrap_err()
            .to_string(),
    );

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("Sync run finished."), "the capture saw the run: {logs}");
    assert!(logs.contains("Retrying batch."), "{logs}");
    for secret in SECRETS {
        assert!(!logs.contains(secret), "`{secret}` appears in the logs:\n{logs}");
        for e in &errors {
            assert!(!e.contains(secret), "`{secret}` appears in an error: {e}");
        }
    }
    // The report samples rejections by hashed key only.
    assert!(report.rejections.iter().all(|r| !r.reason.contains(SECRETS[0])));
}

/// Lines logged within a run carry its id, and lines within a batch's write carry the
/// batch's sequence number: an operator can follow one run and one batch through the logs.
#[tokio::test(start_paused = true)]
async fn log_lines_carry_the_run_and_the_batch() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let source = MemorySource::new(schema(), (1..=9).map(row).collect());
    let faulty = FaultyDestination::new(MemoryDestination::new());
    // The second batch's first write fails once, and is retried.
    faulty.fail_write(2);
    let state = MemoryStateStore::new();
    let held = state.acquire_lease("spans", "earlier", Duration::from_secs(1)).await.unwrap();
    state.release_lease(&held).await.unwrap();
    let sync = SyncJob::builder("spans")
        .source(source)
        .destination(faulty)
        .state(state)
        .options(SyncOptions::default().with_batch_rows(3).with_max_concurrency(1))
        .build()
        .await
        .unwrap();
    let report = sync.run().await.unwrap();
    assert_eq!((report.run_id, report.retries, report.batches), (2, 1, 3), "{report:?}");

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let retried = logs.lines().find(|l| l.contains("Retrying batch.")).unwrap_or_else(|| panic!("{logs}"));
    assert!(retried.contains("sync_run{sync=spans mode=upsert run=2}"), "{retried}");
    assert!(retried.contains("batch_write{sync=spans run=2 batch=2 changes=3}"), "{retried}");
    let finished = logs.lines().find(|l| l.contains("Sync run finished.")).unwrap_or_else(|| panic!("{logs}"));
    assert!(finished.contains("run=2"), "{finished}");
}
