//! Outcome observers and the sensitive-field guard, through the runner: what an observer is
//! told and when (only what the state committed), and the guard's blocks counted per sync.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use rse_core::memory::{MemoryDestination, MemorySource, MemoryStateStore};
use rse_core::metrics::{SENSITIVE_FIELD_BLOCKS_TOTAL, SYNC};
use rse_core::state::{Lease, Pause, RejectedEntry, SnapshotEntry, StateCommit, SyncMeta};
use rse_core::testing::FaultyDestination;
use rse_core::transform::{FnTransform, HashPii, PiiDetector, SensitiveFields};
use rse_core::*;

fn opts() -> SyncOptions {
    SyncOptions::default().with_batch_rows(10).with_linger(Duration::from_millis(5))
}

/// Everything an observer was told.
#[derive(Default)]
struct Recorder {
    batches: Mutex<Vec<Arc<ObservedBatch>>>,
    reports: Mutex<Vec<SyncReport>>,
}

impl OutcomeObserver for Recorder {
    fn on_outcomes(&self, batch: Arc<ObservedBatch>) {
        self.batches.lock().unwrap().push(batch);
    }
    fn on_run(&self, report: &SyncReport) {
        self.reports.lock().unwrap().push(report.clone());
    }
}

impl Recorder {
    fn records(&self) -> Vec<(u64, ObservedRecord)> {
        let batches = self.batches.lock().unwrap();
        batches.iter().flat_map(|b| b.records.iter().map(|r| (b.run_id, r.clone()))).collect()
    }

    fn of_run(&self, run_id: u64) -> Vec<ObservedRecord> {
        self.records().into_iter().filter(|(run, _)| *run == run_id).map(|(_, r)| r).collect()
    }

    fn keys(&self, run_id: u64, outcome: RecordOutcome) -> BTreeSet<Key> {
        self.of_run(run_id).into_iter().filter(|r| r.outcome == outcome).map(|r| r.key).collect()
    }
}

fn live(state: &MemoryStateStore) -> BTreeSet<Key> {
    state.snapshot("customers").into_iter().filter(|e| e.fingerprint.is_some()).map(|e| e.key).collect()
}

#[tokio::test]
async fn every_committed_outcome_reaches_the_observer_once_with_its_reason() {
    let mut rows = customers(30);
    rows.push(customer(12, 0.5)); // a key repeated in the source
    let w = World::new(rows);
    let faulty = FaultyDestination::new(w.destination.clone());
    faulty.reject_key(key(4), "email domain is blocked");
    faulty.supersede_key(key(5));
    let recorder = Arc::new(Recorder::default());
    let refuse_nine = FnTransform::new("no_nine", |r: &Record, _s: &Schema| {
        if r.values[0] == Value::Int(9) { Err("field `id`: nine is refused".to_owned()) } else { Ok(Some(r.clone())) }
    });
    let sync = SyncJob::builder("customers")
        .source(w.source.clone())
        .transform(refuse_nine)
        .destination(faulty.clone())
        .state(w.state.clone())
        .options(opts())
        .observer(recorder.clone())
        .build()
        .await
        .unwrap();
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::CompletedWithRejections, "{report}");

    let seen = recorder.of_run(report.run_id);
    assert_eq!(recorder.records().len(), seen.len(), "every batch carries the run's id");
    let applied = recorder.keys(report.run_id, RecordOutcome::Applied);
    assert_eq!(applied.len() as u64, report.counts.applied.total());
    assert_eq!(applied, live(&w.state), "applied is exactly what the state holds as delivered");
    let only = |outcome: RecordOutcome| {
        let found: Vec<_> = seen.iter().filter(|r| r.outcome == outcome).collect();
        assert_eq!(found.len(), 1, "{outcome:?}: {found:?}");
        found[0].clone()
    };
    let rejected = only(RecordOutcome::Rejected);
    assert_eq!((rejected.key, rejected.op), (key(4), Some(Op::Insert)));
    assert_eq!(rejected.reason.as_deref(), Some("email domain is blocked"));
    let superseded = only(RecordOutcome::Superseded);
    assert_eq!(superseded.key, key(5));
    assert!(superseded.reason.unwrap().starts_with("superseded"));
    let transform = only(RecordOutcome::Refused { stage: RejectionStage::Transform });
    assert_eq!((transform.key, transform.op), (key(9), None));
    assert_eq!(transform.reason.as_deref(), Some("field `id`: nine is refused"));
    let repeated = only(RecordOutcome::Refused { stage: RejectionStage::Key });
    assert_eq!(repeated.key, key(12));
    assert_eq!(seen.len(), applied.len() + 4);
    assert!(seen.iter().all(|r| r.record_id.is_none()), "the memory destination keeps no ids here");

    let reports = recorder.reports.lock().unwrap().clone();
    assert_eq!(reports, vec![report]);
}

#[tokio::test(start_paused = true)]
async fn a_crash_never_shows_an_outcome_the_state_does_not_hold() {
    let w = World::new(customers(100));
    let faulty = FaultyDestination::new(w.destination.clone());
    let recorder = Arc::new(Recorder::default());
    let ttl = Duration::from_secs(60);
    let sync = SyncJob::builder("customers")
        .source(w.source.clone())
        .destination(faulty.clone())
        .state(w.state.clone())
        .options(opts().with_lease_ttl(ttl).with_max_concurrency(1))
        .observer(recorder.clone())
        .build()
        .await
        .unwrap();
    faulty.crash_after_applied(35);
    tokio::select! {
        _ = sync.run() => panic!("the run should have crashed"),
        () = faulty.crashed() => {}
    }
    // 35 landed; the state holds the 30 whose batches were committed, and so does the observer.
    assert_eq!(w.destination.records().len(), 35);
    let observed: BTreeSet<Key> = recorder.records().into_iter().map(|(_, r)| r.key).collect();
    assert_eq!(observed.len(), 30);
    assert_eq!(observed, live(&w.state));
    assert!(recorder.reports.lock().unwrap().is_empty(), "a crashed run has no report");

    tokio::time::sleep(ttl).await;
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(recorder.keys(report.run_id, RecordOutcome::Applied).len(), 70);
    let all: BTreeSet<Key> = recorder.records().into_iter().map(|(_, r)| r.key).collect();
    assert_eq!(all, live(&w.state));
    assert_eq!(all.len(), 100);
}

/// A state store that refuses every commit of outcomes once told to (intents still pass).
#[derive(Clone)]
struct RefusingOutcomes(MemoryStateStore, Arc<AtomicBool>);

#[async_trait]
impl StateStore for RefusingOutcomes {
    fn name(&self) -> &str {
        self.0.name()
    }
    async fn acquire_lease(&self, sync_id: &str, holder: &str, ttl: Duration) -> Result<Lease, StateError> {
        self.0.acquire_lease(sync_id, holder, ttl).await
    }
    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StateError> {
        self.0.renew_lease(lease, ttl).await
    }
    async fn release_lease(&self, lease: &Lease) -> Result<(), StateError> {
        self.0.release_lease(lease).await
    }
    async fn meta(&self, sync_id: &str) -> Result<SyncMeta, StateError> {
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
    ) -> Result<Vec<RejectedEntry>, StateError> {
        self.0.rejected(sync_id, after, limit).await
    }
    async fn commit(&self, lease: &Lease, commit: StateCommit) -> Result<(), StateError> {
        if self.1.load(Ordering::SeqCst) && (!commit.applied.is_empty() || !commit.rejected.is_empty()) {
            return Err(StateError::Unavailable { message: "the state database is down".into(), source: None });
        }
        self.0.commit(lease, commit).await
    }
    async fn record_run(&self, lease: &Lease, report: &SyncReport) -> Result<(), StateError> {
        self.0.record_run(lease, report).await
    }
    async fn runs(&self, sync_id: &str, limit: usize) -> Result<Vec<SyncReport>, StateError> {
        self.0.runs(sync_id, limit).await
    }
    async fn pause(&self, sync_id: &str, pause: &Pause) -> Result<Pause, StateError> {
        self.0.pause(sync_id, pause).await
    }
    async fn resume(&self, sync_id: &str) -> Result<Option<Pause>, StateError> {
        self.0.resume(sync_id).await
    }
    async fn paused(&self, sync_id: &str) -> Result<Option<Pause>, StateError> {
        self.0.paused(sync_id).await
    }
}

#[tokio::test]
async fn a_failed_state_commit_shows_the_observer_nothing_of_its_batch() {
    let w = World::new(customers(30));
    let refusing = Arc::new(AtomicBool::new(true));
    let recorder = Arc::new(Recorder::default());
    let sync = SyncJob::builder("customers")
        .source(w.source.clone())
        .destination(w.destination.clone())
        .state(RefusingOutcomes(w.state.clone(), refusing.clone()))
        .options(opts().with_max_concurrency(1))
        .observer(recorder.clone())
        .build()
        .await
        .unwrap();
    let report = sync.run().await.unwrap();
    assert!(matches!(report.status, RunStatus::Failed { kind: FailureKind::StateCommit, .. }), "{report}");
    assert!(!w.destination.records().is_empty(), "the destination applied the first batch");
    assert!(recorder.records().is_empty(), "but its outcomes were never committed");
    assert_eq!(recorder.reports.lock().unwrap().len(), 1, "the failed run's report is told");

    refusing.store(false, Ordering::SeqCst);
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(recorder.keys(report.run_id, RecordOutcome::Applied), live(&w.state));
}

#[tokio::test]
async fn record_ids_are_shown_only_where_the_destination_says_its_memos_are_ids() {
    for ids in [true, false] {
        let w = World::new(customers(12));
        let capabilities = DestinationCapabilities::new([Op::Insert, Op::Update, Op::Delete])
            .with_memos(true)
            .with_record_id_memos(ids);
        let destination = MemoryDestination::new().with_capabilities(capabilities);
        let recorder = Arc::new(Recorder::default());
        let sync = SyncJob::builder("customers")
            .source(w.source.clone())
            .destination(destination.clone())
            .state(w.state.clone())
            .options(opts())
            .observer(recorder.clone())
            .build()
            .await
            .unwrap();
        let report = sync.run().await.unwrap();
        let observed: BTreeMap<Key, Option<String>> =
            recorder.of_run(report.run_id).into_iter().map(|r| (r.key, r.record_id)).collect();
        let expected: BTreeMap<Key, Option<String>> =
            destination.record_ids().into_iter().map(|(k, id)| (k, if ids { Some(id) } else { None })).collect();
        assert_eq!(observed.len(), 12);
        assert_eq!(observed, expected);

        // A later update of a record keeps showing its id, from the memo kept in the state.
        w.source.upsert(customer(3, 0.99));
        let report = sync.run().await.unwrap();
        let updated = recorder.of_run(report.run_id);
        assert_eq!(updated.len(), 1);
        assert_eq!(updated[0].op, Some(Op::Update));
        assert_eq!(updated[0].record_id, expected[&key(3)]);
    }
}

#[tokio::test]
async fn exactly_once_outcomes_are_told_after_the_write_that_committed_them() {
    let w = World::exactly_once(customers(40));
    let faulty = FaultyDestination::new(w.destination.clone());
    faulty.reject_key(key(4), "email domain is blocked");
    let recorder = Arc::new(Recorder::default());
    let sync = SyncJob::builder("customers")
        .source(w.source.clone())
        .destination(faulty)
        .state(w.state.clone())
        .options(opts())
        .observer(recorder.clone())
        .build()
        .await
        .unwrap();
    let report = sync.run().await.unwrap();
    assert_eq!(recorder.keys(report.run_id, RecordOutcome::Applied), live(&w.state));
    assert_eq!(recorder.keys(report.run_id, RecordOutcome::Rejected), BTreeSet::from([key(4)]));
}

struct Panicking;

impl OutcomeObserver for Panicking {
    fn on_outcomes(&self, _batch: Arc<ObservedBatch>) {
        panic!("an observer's bug");
    }
    fn on_run(&self, _report: &SyncReport) {
        panic!("an observer's bug");
    }
}

#[tokio::test]
async fn a_panicking_observer_neither_stops_delivery_nor_the_other_observers() {
    let w = World::new(customers(25));
    let recorder = Arc::new(Recorder::default());
    let sync = SyncJob::builder("customers")
        .source(w.source.clone())
        .destination(w.destination.clone())
        .state(w.state.clone())
        .options(opts())
        .observer(Panicking)
        .observer(recorder.clone())
        .build()
        .await
        .unwrap();
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(w.destination.records(), by_key(&w.source.rows()));
    assert_eq!(recorder.keys(report.run_id, RecordOutcome::Applied).len(), 25);
    assert_eq!(recorder.reports.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_dry_run_tells_only_its_report() {
    let w = World::new(customers(10));
    let recorder = Arc::new(Recorder::default());
    let refuse_all = FnTransform::new("refuse", |_r: &Record, _s: &Schema| Err("refused".to_owned()));
    let sync = SyncJob::builder("customers")
        .source(w.source.clone())
        .transform(refuse_all)
        .destination(w.destination.clone())
        .state(w.state.clone())
        .options(opts().with_dry_run(true))
        .observer(recorder.clone())
        .build()
        .await
        .unwrap();
    let report = sync.run().await.unwrap();
    assert!(report.dry_run);
    assert!(recorder.records().is_empty());
    assert_eq!(recorder.reports.lock().unwrap().clone(), vec![report]);
}

/// A customers model with a free-text notes column and a social security number.
fn crm_rows() -> (Arc<Schema>, Vec<Record>) {
    let schema = Schema::new(
        vec![
            Field::required("id", DataType::Int),
            Field::new("email", DataType::String),
            Field::new("ssn", DataType::String),
            Field::new("notes", DataType::String),
        ],
        &["id"],
    )
    .unwrap()
    .into_arc();
    let row = |id: i64, ssn: Value, notes: &str| {
        Record::new(vec![Value::Int(id), format!("user{id}@example.com").into(), ssn, notes.into()])
    };
    let rows = vec![
        row(1, Value::Null, "prefers phone"),
        row(2, "078-05-1120".into(), ""),
        row(3, Value::Null, "paid by 4111 1111 1111 1111"),
        row(4, Value::Null, "cc: jane.doe@example.com"),
        row(5, Value::Null, ""),
    ];
    (schema, rows)
}

#[test]
fn sensitive_field_blocks_are_refused_without_values_and_counted_per_sync() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let (schema, rows) = crm_rows();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (report, destination, observed) = ::metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let destination = MemoryDestination::new();
            let observer = Arc::new(Recorder::default());
            let sync = SyncJob::builder("crm-guarded")
                .source(MemorySource::new(schema, rows))
                // The email is hashed in place; the guard passes its digest.
                .transform(HashPii::email("email"))
                .transform(SensitiveFields::new(["email", "ssn"]).with_detectors(PiiDetector::ALL))
                .destination(destination.clone())
                .state(MemoryStateStore::new())
                .options(opts())
                .observer(observer.clone())
                .build()
                .await
                .unwrap();
            (sync.run().await.unwrap(), destination, observer.records())
        })
    });
    assert_eq!(report.status, RunStatus::CompletedWithRejections, "{report}");
    assert_eq!(report.counts.transform_rejected, 3);
    let delivered: BTreeSet<Key> = destination.records().into_keys().collect();
    assert_eq!(delivered, BTreeSet::from([key(1), key(5)]), "clean rows, hashed email included, pass");
    for sample in &report.rejections {
        for value in ["078-05", "4111", "jane"] {
            assert!(!sample.reason.contains(value), "{}", sample.reason);
        }
        assert!(sample.reason.contains("field `"), "{}", sample.reason);
    }
    let refused: BTreeMap<Key, String> =
        observed.into_iter().filter(|(_, r)| r.op.is_none()).map(|(_, r)| (r.key, r.reason.unwrap())).collect();
    assert_eq!(refused.keys().cloned().collect::<Vec<_>>(), [key(2), key(3), key(4)]);
    assert!(refused[&key(2)].contains("field `ssn` is marked sensitive"));
    assert!(refused[&key(3)].contains("detector `payment_card`"));
    assert!(refused[&key(4)].contains("detector `email`"));

    let blocks: Vec<u64> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(k, ..)| k.key().name() == SENSITIVE_FIELD_BLOCKS_TOTAL)
        .map(|(k, _, _, value)| {
            let labels: Vec<(String, String)> =
                k.key().labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
            assert_eq!(labels, [(SYNC.to_owned(), "crm-guarded".to_owned())], "one label, the sync");
            match value {
                metrics_util::debugging::DebugValue::Counter(n) => n,
                other => panic!("not a counter: {other:?}"),
            }
        })
        .collect();
    assert_eq!(blocks, [3]);
}

#[tokio::test]
async fn withdrawn_consent_is_audited_to_the_observer_once_committed() {
    use rse_core::suppression::{MemorySuppressions, SuppressionOutcome};
    let w = World::new(customers(20));
    let recorder = Arc::new(Recorder::default());
    let revoked = MemorySuppressions::new();
    let sync = SyncJob::builder("customers")
        .source(w.source.clone())
        .destination(w.destination.clone())
        .state(w.state.clone())
        .mode(Mode::Upsert)
        .options(opts())
        .suppressions(revoked.clone())
        .observer(recorder.clone())
        .build()
        .await
        .unwrap();
    assert_eq!(sync.run().await.unwrap().status, RunStatus::Succeeded);

    // Consent for key 3 is withdrawn after it was delivered: the run deletes it and keeps it
    // out; both are on the audit trail, beside the applied delete itself.
    revoked.suppress_key(key(3));
    let report = sync.run().await.unwrap();
    assert!(!w.destination.records().contains_key(&key(3)));
    let suppressed = |outcome| RecordOutcome::Suppressed { outcome };
    let kept_out = recorder.keys(report.run_id, suppressed(SuppressionOutcome::KeptOut));
    let removed = recorder.keys(report.run_id, suppressed(SuppressionOutcome::Removed));
    assert_eq!(kept_out, BTreeSet::from([key(3)]));
    assert_eq!(removed, BTreeSet::from([key(3)]));
    assert_eq!(recorder.keys(report.run_id, RecordOutcome::Applied), BTreeSet::from([key(3)]));
    let audit = recorder.of_run(report.run_id);
    assert!(audit.iter().filter(|r| matches!(r.outcome, RecordOutcome::Suppressed { .. })).all(|r| {
        r.outcome.as_str() == "suppressed"
            && r.outcome.stage_str() == "consent"
            && r.reason.as_deref() == Some("consent withdrawn")
    }));

    // The next run still keeps it out, and says so again.
    let report = sync.run().await.unwrap();
    assert_eq!(recorder.keys(report.run_id, suppressed(SuppressionOutcome::KeptOut)), BTreeSet::from([key(3)]));
    assert!(recorder.keys(report.run_id, suppressed(SuppressionOutcome::Removed)).is_empty());
}
