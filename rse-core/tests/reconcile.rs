//! Reconciliation against the memory destination: verify finds exactly what was tampered
//! with, repair sends exactly those keys, and no key or value reaches the text or the logs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, Mutex};

use rse_core::memory::{MemoryDestination, MemorySource, MemoryStateStore};
use rse_core::testing::FaultyDestination;
use rse_core::*;

/// Keys and values distinctive enough to search the logs for.
fn email(i: i64) -> String {
    format!("zq-reconcile-{i}@example.com")
}

fn schema() -> Arc<Schema> {
    Schema::new(
        vec![
            Field::required("email", DataType::String),
            Field::new("plan", DataType::String),
            Field::new("score", DataType::Float),
        ],
        &["email"],
    )
    .unwrap()
    .into_arc()
}

fn row(i: i64, plan: &str) -> Record {
    Record::new(vec![Value::String(email(i)), Value::from(plan), Value::Float(i as f64 / 8.0)])
}

fn key(i: i64) -> Key {
    Key::from_values(&[Value::String(email(i))])
}

struct World {
    source: MemorySource,
    destination: MemoryDestination,
    state: MemoryStateStore,
    sync: SyncJob,
}

async fn world(mode: Mode, n: i64) -> World {
    let source = MemorySource::new(schema(), (1..=n).map(|i| row(i, "gold")).collect());
    let destination = MemoryDestination::new();
    let state = MemoryStateStore::new();
    let sync = SyncJob::builder("reconcile")
        .source(source.clone())
        .destination(destination.clone())
        .state(state.clone())
        .mode(mode)
        .build()
        .await
        .unwrap();
    World { source, destination, state, sync }
}

/// Keys 1–10 synced in `Mirror` mode, 10 then deleted by the sync (a tombstone); then,
/// behind the sync's back: 1 lost, 2 edited, 10 written again, 99 written by another
/// writer; and the source changed 3 (the next run's work, not a mismatch).
async fn tampered() -> World {
    let w = world(Mode::Mirror, 10).await;
    w.sync.run().await.unwrap();
    w.source.remove(&key(10));
    assert_eq!(w.sync.run().await.unwrap().counts.applied.delete, 1);
    w.destination.remove(&key(1));
    w.destination.seed(key(2), row(2, "edited by hand"));
    w.destination.seed(key(10), row(10, "restored from a backup"));
    w.destination.seed(key(99), row(99, "another writer's"));
    w.source.upsert(row(3, "platinum"));
    w
}

fn kinds(report: &ReconcileReport) -> Vec<(Key, MismatchKind)> {
    report.mismatches.iter().map(|m| (m.key.clone(), m.kind)).collect()
}

fn sorted(mut v: Vec<(Key, MismatchKind)>) -> Vec<(Key, MismatchKind)> {
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[tokio::test]
async fn verify_finds_exactly_the_missing_stale_extra_and_foreign_keys() {
    let w = tampered().await;
    let writes = w.destination.writes();
    let report = w.sync.verify(&VerifyOptions::default()).await.unwrap();
    assert_eq!(report.checked, 10, "9 live keys and 1 tombstone: {report}");
    assert_eq!((report.missing, report.stale, report.extra), (1, 1, 1), "{report}");
    assert_eq!(report.matched, 7);
    assert_eq!(report.foreign, 1);
    assert_eq!(report.unsent, 1, "key 3 changed in the source");
    assert_eq!(report.in_doubt, 0);
    assert!((report.mismatch_ratio() - 0.3).abs() < 1e-9);
    assert_eq!(
        kinds(&report),
        sorted(vec![(key(1), MismatchKind::Missing), (key(2), MismatchKind::Stale), (key(10), MismatchKind::Extra)])
    );
    assert_eq!(report.samples.len(), 3);
    // Verify writes nothing, to the destination or the state, and takes no lease.
    assert_eq!(w.destination.writes(), writes);
    assert!(w.state.snapshot("reconcile").iter().all(|e| e.pending.is_none()));
    w.sync.run().await.unwrap(); // no lease left behind
}

#[tokio::test]
async fn repair_sends_exactly_the_mismatched_keys_and_a_second_verify_is_clean() {
    let w = tampered().await;
    let report = w.sync.verify(&VerifyOptions::default()).await.unwrap();
    let before = w.destination.deliveries().len();
    let repaired = w.sync.repair(&report).await.unwrap();
    assert_eq!(repaired.status, RunStatus::Succeeded, "{repaired}");
    assert_eq!(repaired.counts.applied.total(), 3, "{repaired}");
    assert_eq!(repaired.counts.applied.delete, 1);

    let sent: Vec<_> = w.destination.deliveries()[before..].to_vec();
    let sent_keys: BTreeSet<Key> = sent.iter().map(|d| d.key.clone()).collect();
    assert_eq!(sent_keys, BTreeSet::from([key(1), key(2), key(10)]), "nothing but the mismatched keys");
    assert!(sent.iter().all(|d| d.applied), "each under a new idempotency key, so none is dropped as a repeat");
    let records = w.destination.records();
    assert_eq!(records[&key(1)], row(1, "gold"));
    assert_eq!(records[&key(2)], row(2, "gold"));
    assert!(!records.contains_key(&key(10)));
    assert_eq!(records[&key(99)], row(99, "another writer's"), "a foreign key is never touched");
    assert_eq!(records[&key(3)], row(3, "gold"), "the source's other changes wait for the next run");

    let again = w.sync.verify(&VerifyOptions::default()).await.unwrap();
    assert!(again.is_clean(), "{again}");
    assert_eq!((again.checked, again.foreign, again.unsent, again.in_doubt), (10, 1, 1, 0));
    assert!(w.state.snapshot("reconcile").iter().all(|e| e.pending.is_none()), "no marker is left behind");

    // The run history keeps the repair; the next run sends the rest as usual.
    assert_eq!(w.state.runs("reconcile", 1).await.unwrap()[0].run_id, repaired.run_id);
    let next = w.sync.run().await.unwrap();
    assert_eq!((next.counts.applied.total(), next.counts.applied.update), (1, 1), "{next}");
    assert_eq!(w.destination.records()[&key(3)], row(3, "platinum"));
}

#[tokio::test]
async fn a_sample_checks_the_same_keys_every_time() {
    let w = tampered().await;
    let half = VerifyOptions::default().with_sample(0.5);
    let first = w.sync.verify(&half).await.unwrap();
    let second = w.sync.verify(&half).await.unwrap();
    assert_eq!(kinds(&first), kinds(&second));
    assert_eq!((first.checked, first.matched, first.foreign), (second.checked, second.matched, second.foreign));
    let expected_checked = (1..=10).filter(|&i| half.in_sample(&key(i))).count() as u64;
    assert_eq!(first.checked, expected_checked);
    let full = w.sync.verify(&VerifyOptions::default()).await.unwrap();
    let in_half: Vec<_> = kinds(&full).into_iter().filter(|(k, _)| half.in_sample(k)).collect();
    assert_eq!(kinds(&first), in_half);
    assert_eq!(first.sample, 0.5);
}

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

#[tokio::test]
async fn no_key_or_value_appears_in_the_report_text_or_the_logs() {
    // The whole binary's logs, every test's: a subscriber set for one thread only misses
    // lines whose call sites another test's thread registered first.
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let w = tampered().await;
    let report = w.sync.verify(&VerifyOptions::default()).await.unwrap();
    let repaired = w.sync.repair(&report).await.unwrap();
    let text = format!("{report}\n{report:?}\n{repaired}\n{repaired:?}");
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("Reconciliation finished."), "the verify logs its counts: {logs}");
    assert!(text.contains(&key(1).redacted().to_string()), "samples are shown hashed: {text}");
    for secret in ["zq-reconcile", "edited by hand", "restored from a backup", "another writer", "gold"] {
        assert!(!text.contains(secret), "`{secret}` in the report: {text}");
        assert!(!logs.contains(secret), "`{secret}` in the logs");
    }
}

#[tokio::test]
async fn upsert_mode_repairs_what_it_can_send_and_leaves_no_marker() {
    let w = world(Mode::Upsert, 4).await;
    w.sync.run().await.unwrap();
    w.destination.remove(&key(1)); // missing, still in the source: re-sent
    w.destination.remove(&key(2)); // missing, and gone from the source: nothing to send
    w.source.remove(&key(2));
    let report = w.sync.verify(&VerifyOptions::default()).await.unwrap();
    assert_eq!(kinds(&report), sorted(vec![(key(1), MismatchKind::Missing), (key(2), MismatchKind::Missing)]));
    assert_eq!(report.unsent, 0, "outside Mirror a key gone from the source is not deleted");

    let repaired = w.sync.repair(&report).await.unwrap();
    assert_eq!((repaired.counts.applied.total(), repaired.counts.applied.delete), (1, 0), "{repaired}");
    assert_eq!(w.destination.records()[&key(1)], row(1, "gold"));
    assert!(w.state.snapshot("reconcile").iter().all(|e| e.pending.is_none()));
    let again = w.sync.verify(&VerifyOptions::default()).await.unwrap();
    assert_eq!(kinds(&again), vec![(key(2), MismatchKind::Missing)], "what the source lacks stays as it was");
}

#[tokio::test]
async fn insert_mode_re_inserts_missing_keys_and_never_rewrites_a_stale_one() {
    let w = world(Mode::Insert, 3).await;
    w.sync.run().await.unwrap();
    w.destination.remove(&key(1));
    w.destination.seed(key(2), row(2, "edited by hand"));
    let report = w.sync.verify(&VerifyOptions::default()).await.unwrap();
    assert_eq!((report.missing, report.stale), (1, 1));
    let repaired = w.sync.repair(&report).await.unwrap();
    assert_eq!((repaired.counts.applied.insert, repaired.counts.applied.total()), (1, 1), "{repaired}");
    assert_eq!(w.destination.records()[&key(2)], row(2, "edited by hand"));
    let again = w.sync.verify(&VerifyOptions::default()).await.unwrap();
    assert_eq!(kinds(&again), vec![(key(2), MismatchKind::Stale)]);
}

#[tokio::test]
async fn a_repair_that_fails_is_finished_by_the_next_run() {
    let source = MemorySource::new(schema(), (1..=5).map(|i| row(i, "gold")).collect());
    let inner = MemoryDestination::new();
    let destination = FaultyDestination::new(inner.clone());
    let state = MemoryStateStore::new();
    let sync = SyncJob::builder("reconcile")
        .source(source)
        .destination(destination.clone())
        .state(state.clone())
        .mode(Mode::Mirror)
        .options(SyncOptions::default().with_max_attempts(1))
        .build()
        .await
        .unwrap();
    sync.run().await.unwrap();
    inner.remove(&key(4));
    inner.seed(key(5), row(5, "edited by hand"));
    let report = sync.verify(&VerifyOptions::default()).await.unwrap();
    assert_eq!(report.mismatched(), 2);

    destination.fatal_write(destination.calls() + 1);
    let failed = sync.repair(&report).await.unwrap();
    assert!(!failed.status.is_complete(), "{failed}");
    // The marks stay: the keys are in doubt, and the next ordinary run sends them again.
    let doubt = sync.verify(&VerifyOptions::default()).await.unwrap();
    assert_eq!((doubt.in_doubt, doubt.mismatched()), (2, 0), "{doubt}");
    destination.lift();
    let next = sync.run().await.unwrap();
    assert_eq!(next.counts.applied.total(), 2, "{next}");
    let clean = sync.verify(&VerifyOptions::default()).await.unwrap();
    assert!(clean.is_clean() && clean.in_doubt == 0, "{clean}");
}

#[tokio::test]
async fn an_exactly_once_destination_is_repaired_under_its_own_store() {
    let state = MemoryStateStore::new();
    let destination = MemoryDestination::new().with_state_store(state.clone());
    let source = MemorySource::new(schema(), (1..=3).map(|i| row(i, "gold")).collect());
    let sync = SyncJob::builder("reconcile")
        .source(source)
        .destination(destination.clone())
        .mode(Mode::Mirror)
        .build()
        .await
        .unwrap();
    sync.run().await.unwrap();
    destination.remove(&key(3));
    let report = sync.verify(&VerifyOptions::default()).await.unwrap();
    assert_eq!(kinds(&report), vec![(key(3), MismatchKind::Missing)]);
    let repaired = sync.repair(&report).await.unwrap();
    assert_eq!(repaired.counts.applied.total(), 1, "{repaired}");
    assert!(sync.verify(&VerifyOptions::default()).await.unwrap().is_clean());
}

#[tokio::test]
async fn an_incremental_sync_is_verified_in_full_and_repair_keeps_its_cursor() {
    let source = MemorySource::new(schema(), (1..=4).map(|i| row(i, "gold")).collect())
        .with_capabilities(SourceCapabilities::default().with_cursor_field("score"));
    let destination = MemoryDestination::new();
    let state = MemoryStateStore::new();
    let sync = SyncJob::builder("reconcile")
        .source(source)
        .destination(destination.clone())
        .state(state.clone())
        .build()
        .await
        .unwrap();
    sync.run().await.unwrap();
    let cursor = state.meta("reconcile").await.unwrap().cursor;
    assert!(cursor.is_some());
    destination.remove(&key(1)); // before the cursor: an incremental read would not return it
    let report = sync.verify(&VerifyOptions::default()).await.unwrap();
    assert_eq!(kinds(&report), vec![(key(1), MismatchKind::Missing)]);
    let repaired = sync.repair(&report).await.unwrap();
    assert_eq!(repaired.counts.applied.total(), 1, "{repaired}");
    assert_eq!(state.meta("reconcile").await.unwrap().cursor, cursor);
    assert!(sync.verify(&VerifyOptions::default()).await.unwrap().is_clean());
}

#[tokio::test]
async fn verify_refuses_what_it_cannot_compare() {
    let w = world(Mode::Append, 2).await;
    let e = w.sync.verify(&VerifyOptions::default()).await.unwrap_err();
    assert!(e.to_string().contains("append"), "{e}");

    let w = world(Mode::Upsert, 2).await;
    let e = w.sync.verify(&VerifyOptions::default().with_sample(0.0)).await.unwrap_err();
    assert!(e.to_string().contains("sample"), "{e}");

    // A report of another sync is refused by repair.
    let other = world(Mode::Upsert, 2).await;
    let report = other.sync.verify(&VerifyOptions::default()).await.unwrap();
    let renamed = SyncJob::builder("another")
        .source(MemorySource::new(schema(), Vec::new()))
        .destination(MemoryDestination::new())
        .state(MemoryStateStore::new())
        .build()
        .await
        .unwrap();
    let e = renamed.repair(&report).await.unwrap_err();
    assert!(e.to_string().contains("report is of sync `reconcile`"), "{e}");
}

/// Records every gauge set, as `name{label=value,…}` (labels sorted).
#[derive(Clone, Default)]
struct Gauges(Arc<Mutex<std::collections::BTreeMap<String, f64>>>);

struct GaugeSlot {
    name: String,
    gauges: Gauges,
}

impl ::metrics::GaugeFn for GaugeSlot {
    fn increment(&self, value: f64) {
        *self.gauges.0.lock().unwrap().entry(self.name.clone()).or_default() += value;
    }
    fn decrement(&self, value: f64) {
        self.increment(-value);
    }
    fn set(&self, value: f64) {
        self.gauges.0.lock().unwrap().insert(self.name.clone(), value);
    }
}

impl ::metrics::Recorder for Gauges {
    fn describe_counter(&self, _: ::metrics::KeyName, _: Option<::metrics::Unit>, _: ::metrics::SharedString) {}
    fn describe_gauge(&self, _: ::metrics::KeyName, _: Option<::metrics::Unit>, _: ::metrics::SharedString) {}
    fn describe_histogram(&self, _: ::metrics::KeyName, _: Option<::metrics::Unit>, _: ::metrics::SharedString) {}
    fn register_counter(&self, _: &::metrics::Key, _: &::metrics::Metadata<'_>) -> ::metrics::Counter {
        ::metrics::Counter::noop()
    }
    fn register_gauge(&self, key: &::metrics::Key, _: &::metrics::Metadata<'_>) -> ::metrics::Gauge {
        let mut labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        ::metrics::Gauge::from_arc(Arc::new(GaugeSlot { name, gauges: self.clone() }))
    }
    fn register_histogram(&self, _: &::metrics::Key, _: &::metrics::Metadata<'_>) -> ::metrics::Histogram {
        ::metrics::Histogram::noop()
    }
}

#[test]
fn verify_sets_the_reconcile_gauges_by_sync_and_kind() {
    let gauges = Gauges::default();
    ::metrics::with_local_recorder(&gauges, || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let w = tampered().await;
            w.sync.verify(&VerifyOptions::default()).await.unwrap();
        });
    });
    // Runs set gauges of their own (freshness, pause): only the reconciliation's are compared.
    let mut got = gauges.0.lock().unwrap().clone();
    got.retain(|name, _| name.starts_with("rse_reconcile_"));
    let expected: std::collections::BTreeMap<String, f64> = [
        ("rse_reconcile_checked_records{sync=reconcile}", 10.0),
        ("rse_reconcile_mismatch_ratio{sync=reconcile}", 0.3),
        ("rse_reconcile_mismatches{kind=extra,sync=reconcile}", 1.0),
        ("rse_reconcile_mismatches{kind=missing,sync=reconcile}", 1.0),
        ("rse_reconcile_mismatches{kind=stale,sync=reconcile}", 1.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn the_source_is_read_through_the_transforms_as_a_run_reads_it() {
    use rse_core::transform::{Cast, Constant, DropFields, HashPii, Rename};
    let source = MemorySource::new(schema(), (1..=5).map(|i| row(i, "gold")).collect());
    let destination = MemoryDestination::new();
    let sync = SyncJob::builder("reconcile")
        .source(source.clone())
        .transform(HashPii::email("email")) // the key itself is rewritten
        .transform(Rename::new([("plan", "tier")]))
        .transform(Cast::new("score", DataType::String))
        .transform(Constant::new("origin", "warehouse"))
        .transform(DropFields::new(["tier"]))
        .destination(destination.clone())
        .state(MemoryStateStore::new())
        .mode(Mode::Mirror)
        .build()
        .await
        .unwrap();
    sync.run().await.unwrap();
    let clean = sync.verify(&VerifyOptions::default()).await.unwrap();
    assert!(clean.is_clean() && clean.checked == 5 && clean.unsent == 0, "{clean}");
    // The destination's keys are the transformed ones: remove one as it holds it.
    let held = destination.records().keys().next().cloned().unwrap();
    destination.remove(&held);
    source.upsert(row(2, "silver")); // the plan is dropped by the transforms: nothing to send
    source.upsert(Record::new(vec![Value::String(email(3)), Value::from("gold"), Value::Float(9.0)]));
    let report = sync.verify(&VerifyOptions::default()).await.unwrap();
    assert_eq!(kinds(&report), vec![(held, MismatchKind::Missing)]);
    assert_eq!(report.unsent, 1, "only the changed score reaches the destination");
}
