//! Operator controls against the in-memory stores: pausing (before a run and mid-run, from
//! another task) and resuming, canary fractions widened and narrowed, and consent
//! withdrawal — what reaches the destination, what the state keeps, what is reported,
//! emitted and audited.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod ops;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use rse_core::canary::{Canary, CanaryReport};
use rse_core::memory::{MemoryDestination, MemorySource, MemoryStateStore};
use rse_core::metrics::{DESTINATION, OUTCOME, PAUSED, SUPPRESSED_TOTAL, SYNC};
use rse_core::suppression::{IdentifierColumn, MemorySuppressions, SuppressionOutcome};
use rse_core::testing::{FaultyDestination, unique_id};
use rse_core::*;
use tokio::sync::broadcast::error::RecvError;

fn opts() -> SyncOptions {
    SyncOptions::default().with_batch_rows(10).with_linger(Duration::from_millis(5))
}

fn keys_of(map: &BTreeMap<Key, Record>) -> BTreeSet<Key> {
    map.keys().cloned().collect()
}

/// The rows of `rows` whose key is inside a canary of `fraction`.
fn in_fraction(fraction: f64, rows: &[Record]) -> BTreeMap<Key, Record> {
    let canary = Canary::new(fraction).unwrap();
    by_key(rows).into_iter().filter(|(k, _)| canary.contains(k)).collect()
}

// ---------------------------------------------------------------------------------------
// Pause and resume.

#[tokio::test]
async fn a_paused_sync_runs_nothing_records_no_run_and_takes_no_lease_until_resumed() {
    let w = World::new(customers(20));
    let sync = w.sync(Mode::Mirror, opts()).await;
    let pause = sync.pause("  oncall@example.com ", "CRM answers 401; rotating the token").await.unwrap();
    assert_eq!(pause.by, "oncall@example.com");
    assert_eq!(sync.paused().await.unwrap(), Some(pause.clone()));

    let report = sync.run().await.unwrap();
    assert_eq!(
        report.status,
        RunStatus::Paused { by: "oncall@example.com".into(), reason: "CRM answers 401; rotating the token".into() }
    );
    assert_eq!(report.run_id, 0, "a paused run takes no lease");
    assert!(report.to_string().contains("paused by oncall@example.com"), "{report}");
    assert!(w.destination.records().is_empty(), "a paused sync sent something");
    assert!(w.state.runs("customers", 10).await.unwrap().is_empty(), "a paused run was recorded in the history");
    // No lease was left behind: another runner can take it at once.
    let lease = w.state.acquire_lease("customers", "other", Duration::from_secs(5)).await.unwrap();
    w.state.release_lease(&lease).await.unwrap();

    // A second pause keeps the first one's who and why.
    let again = sync.pause("scheduler", "nightly freeze").await.unwrap();
    assert_eq!(again, pause);

    // A dry run still plans while paused.
    let dry = w.sync(Mode::Mirror, opts().with_dry_run(true)).await;
    let planned = dry.run().await.unwrap();
    assert_eq!(planned.status, RunStatus::Succeeded, "{planned}");
    assert_eq!(planned.counts.planned.insert, 20);

    assert_eq!(sync.resume().await.unwrap(), Some(pause));
    assert_eq!(sync.resume().await.unwrap(), None);
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(w.destination.records(), by_key(&w.source.rows()));
}

#[tokio::test]
async fn pausing_without_saying_who_is_refused_and_changes_nothing() {
    let w = World::new(customers(3));
    let sync = w.sync(Mode::Upsert, opts()).await;
    let error = sync.pause(" ", "because").await.unwrap_err();
    assert!(
        error.to_string().contains("option `pause.by` is blank") && error.to_string().contains("who pauses"),
        "{error}"
    );
    assert_eq!(sync.paused().await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn a_pause_mid_run_stops_at_a_batch_boundary_keeping_exactly_what_was_committed() {
    let w = World::new(customers(300));
    let faulty = FaultyDestination::new(w.destination.clone());
    faulty.latency(Duration::from_secs(3));
    let sync = w.sync_mode_to(faulty.clone(), Mode::Mirror, opts().with_max_concurrency(2)).await;

    // An operator in another task pauses the sync once its first batch is acknowledged.
    let mut events = sync.subscribe();
    let operator = sync.clone();
    let pausing = tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(ProgressEvent::BatchCommitted { .. }) => break,
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => panic!("the run ended before a batch was committed"),
            }
        }
        operator.pause("oncall", "the CRM is degraded").await.unwrap()
    });
    let report = sync.run().await.unwrap();
    pausing.await.unwrap();

    assert_eq!(report.status, RunStatus::Paused { by: "oncall".into(), reason: "the CRM is degraded".into() });
    let applied = report.counts.applied.insert;
    assert!(applied > 0 && applied < 300, "the run stopped part way: {report}");
    // The destination holds exactly what the state committed as applied.
    let committed: BTreeMap<Key, Fingerprint> =
        w.state.snapshot("customers").into_iter().filter_map(|e| Some((e.key, e.fingerprint?))).collect();
    assert_eq!(w.destination.fingerprints(), committed);
    assert_eq!(w.destination.records().len() as u64, applied);
    // No write was sent after the pause was seen: every call reached the destination.
    assert_eq!(faulty.calls(), report.batches, "{report}");
    // It did work, so it is in the history with its status.
    let runs = w.state.runs("customers", 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert!(matches!(runs[0].status, RunStatus::Paused { .. }));

    // Still paused: the next run does nothing.
    let calls = faulty.calls();
    assert!(matches!(sync.run().await.unwrap().status, RunStatus::Paused { .. }));
    assert_eq!(faulty.calls(), calls);

    sync.resume().await.unwrap();
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(report.counts.applied.insert, 300 - applied, "only what the paused run left: {report}");
    assert_eq!(w.destination.records(), by_key(&w.source.rows()));
}

#[tokio::test]
async fn the_paused_gauge_follows_pause_and_resume() {
    let kept = ops::recorder::kept();
    let id = unique_id("paused_gauge");
    let w = World::new(customers(2));
    let sync = SyncJob::builder(id.as_str())
        .source(w.source.clone())
        .destination(w.destination.clone())
        .state(w.state.clone())
        .build()
        .await
        .unwrap();
    let labels = [(SYNC, id.as_str())];
    sync.pause("oncall", "incident 42").await.unwrap();
    assert_eq!(kept.gauge(PAUSED, &labels), Some(1.0));
    sync.resume().await.unwrap();
    assert_eq!(kept.gauge(PAUSED, &labels), Some(0.0));
    // Paused by another process sharing the store: the run finds it and says so.
    w.state.pause(&id, &Pause::new("other-host", "maintenance")).await.unwrap();
    assert!(matches!(sync.run().await.unwrap().status, RunStatus::Paused { .. }));
    assert_eq!(kept.gauge(PAUSED, &labels), Some(1.0));
}

// ---------------------------------------------------------------------------------------
// Canary.

#[tokio::test]
async fn a_canary_widened_from_1_to_10_to_100_percent_delivers_exactly_its_keys_and_narrowing_leaves_what_was_sent() {
    for strategy in [DiffStrategy::Merge, DiffStrategy::Hash] {
        let w = World::new(customers(3_000));
        let at = |fraction: f64| opts().with_batch_rows(500).with_canary(fraction).with_diff_strategy(strategy);
        let rows = w.source.rows();

        let one = in_fraction(0.01, &rows);
        let report = w.sync(Mode::Mirror, at(0.01)).await.run().await.unwrap();
        assert_eq!(report.status, RunStatus::Succeeded, "{report}");
        assert_eq!(w.destination.records(), one, "{strategy:?} at 1 %");
        assert!((10..=60).contains(&one.len()), "about 1 % of 3,000: {}", one.len());
        assert_eq!(report.canary, Some(CanaryReport { fraction: 0.01, excluded: 3_000 - one.len() as u64 }));

        let ten = in_fraction(0.10, &rows);
        let report = w.sync(Mode::Mirror, at(0.10)).await.run().await.unwrap();
        assert_eq!(w.destination.records(), ten, "{strategy:?} at 10 %");
        assert!(keys_of(&one).is_subset(&keys_of(&ten)), "the 1 % is not inside the 10 %");
        assert_eq!(report.counts.applied.insert, (ten.len() - one.len()) as u64, "only the newly included keys");
        assert_eq!(report.counts.unchanged, one.len() as u64);

        let report = w.sync(Mode::Mirror, at(1.0)).await.run().await.unwrap();
        assert_eq!(report.status, RunStatus::Succeeded, "{report}");
        assert_eq!(w.destination.records(), by_key(&rows), "{strategy:?} at 100 %");

        // The model changes across the whole key range while the canary is narrowed to 10 %:
        // only the keys inside it are updated or deleted.
        let before = w.destination.records();
        for id in (1..=3_000).step_by(10) {
            w.source.remove(&key(id));
        }
        for id in (5..=3_000).step_by(10) {
            w.source.upsert(customer(id, 0.999));
        }
        let now = by_key(&w.source.rows());
        let canary = Canary::new(0.10).unwrap();
        let mut expected = before.clone();
        for k in before.keys().filter(|k| canary.contains(k)) {
            match now.get(k) {
                Some(record) => expected.insert(k.clone(), record.clone()),
                None => expected.remove(k),
            };
        }
        let deleted_inside = before.keys().filter(|k| canary.contains(k) && !now.contains_key(*k)).count();
        let report = w.sync(Mode::Mirror, at(0.10)).await.run().await.unwrap();
        assert_eq!(report.status, RunStatus::Succeeded, "{report}");
        assert_eq!(w.destination.records(), expected, "{strategy:?}: narrowed to 10 %");
        assert_eq!(report.counts.applied.delete, deleted_inside as u64, "{report}");
        assert_eq!(report.counts.withheld, 0, "{report}");
        assert!(
            w.destination.records().keys().any(|k| !canary.contains(k) && !now.contains_key(k)),
            "a key outside the canary that the model dropped was deleted"
        );
        // Keys outside the canary kept their state: a later full run still deletes them.
        let report = w.sync(Mode::Mirror, at(1.0).with_max_deletes(None)).await.run().await.unwrap();
        assert_eq!(report.status, RunStatus::Succeeded, "{report}");
        let full = by_key(&w.source.rows());
        assert_eq!(w.destination.records(), full, "{strategy:?}: back to 100 %");
    }
}

#[tokio::test]
async fn an_incremental_canary_leaves_the_cursor_so_widening_reads_the_keys_it_left_out() {
    let rows: Vec<Record> = (1..=400).map(|i| customer_at(i, 0.5, 1_000 + i)).collect();
    let w = World::new(Vec::new());
    let source = MemorySource::new(customers_schema(), rows.clone())
        .with_capabilities(SourceCapabilities::default().with_cursor_field("updated_at"));
    let build = |canary: Option<f64>| {
        SyncJob::builder("customers")
            .source(source.clone())
            .destination(w.destination.clone())
            .state(w.state.clone())
            .options(opts().with_canary(canary))
            .build()
    };
    let report = build(Some(0.05)).await.unwrap().run().await.unwrap();
    assert_eq!(w.destination.records(), in_fraction(0.05, &rows));
    assert_eq!(report.cursor_after, None, "a canary run moved the cursor");
    let report = build(None).await.unwrap().run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(w.destination.records(), by_key(&rows));
    assert_eq!(report.cursor_after, Some(Value::Timestamp(1_400)));
}

#[tokio::test]
async fn a_canary_outside_0_to_1_is_refused_naming_the_option() {
    for fraction in [0.0, -0.1, 1.5, f64::NAN] {
        let w = World::new(customers(1));
        let error = SyncJob::builder("customers")
            .source(w.source.clone())
            .destination(w.destination.clone())
            .state(w.state.clone())
            .options(opts().with_canary(fraction))
            .build()
            .await
            .unwrap_err();
        let text = error.to_string();
        assert!(text.contains("option `canary`") && text.contains("at most 1"), "{text}");
    }
}

// ---------------------------------------------------------------------------------------
// Consent withdrawal.

fn email_of(id: i64) -> Value {
    Value::String(format!("user{id}@example.com"))
}

#[tokio::test]
async fn withdrawn_keys_and_emails_are_removed_in_upsert_mode_never_resent_and_come_back_when_lifted() {
    let kept = ops::recorder::kept();
    let id = unique_id("consent");
    let w = World::new(customers(100));
    let revoked = MemorySuppressions::new();
    let sync = SyncJob::builder(id.as_str())
        .source(w.source.clone())
        .destination(w.destination.clone())
        .state(w.state.clone())
        .suppressions(revoked.clone())
        .options(opts())
        .build()
        .await
        .unwrap();
    // Listed before the first run: never sent.
    revoked.suppress_key(key(5));
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert!(!w.destination.records().contains_key(&key(5)));
    let s = report.suppression.clone().unwrap();
    assert_eq!((s.listed, s.kept_out, s.removals_planned, s.removed), (1, 1, 0, 0), "{report}");

    // Withdrawn after delivery, one by key and one by hashed e-mail (as the consent tool
    // lists it: trimmed, lower-cased, SHA-256): both deleted although the mode is Upsert.
    let email = IdentifierColumn::email("email");
    revoked.suppress_key(key(7));
    let digest = email.digest(&Value::from(" USER8@example.com ")).unwrap();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    revoked.suppress_digest(&email, &hex).unwrap();
    let mut events = sync.subscribe();
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    for gone in [5, 7, 8] {
        assert!(!w.destination.records().contains_key(&key(gone)), "key {gone} is still at the destination");
    }
    assert_eq!(w.destination.records().len(), 97);
    let s = report.suppression.clone().unwrap();
    assert_eq!((s.listed, s.kept_out, s.removals_planned, s.removed), (3, 3, 2, 2), "{report}");
    assert_eq!(report.counts.applied.delete, 2, "{report}");
    let mut audited = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let ProgressEvent::Suppressed { key, outcome } = event {
            audited.push((key, outcome));
        }
    }
    assert!(audited.contains(&(key(8).redacted(), SuppressionOutcome::Removed)), "{audited:?}");
    assert!(audited.contains(&(key(7).redacted(), SuppressionOutcome::KeptOut)), "{audited:?}");
    let labels = |outcome: &'static str| [(SYNC, id.as_str()), (DESTINATION, "memory"), (OUTCOME, outcome)];
    assert_eq!(kept.counter(SUPPRESSED_TOTAL, &labels("removed")), 2);
    assert_eq!(kept.counter(SUPPRESSED_TOTAL, &labels("kept_out")), 1 + 3);

    // Their rows change: still never sent.
    for changed in [5, 7, 8] {
        w.source.upsert(customer(changed, 0.42));
    }
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.applied.total(), 0, "{report}");
    assert_eq!(w.destination.records().len(), 97);
    let s = report.suppression.unwrap();
    assert_eq!((s.kept_out, s.removals_planned), (3, 0), "a key already removed is not deleted again");

    // Off the list: back at the next run.
    revoked.lift_key(&key(5));
    revoked.lift_key(&key(7));
    assert!(revoked.lift_digest(&email, &hex));
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.applied.insert, 3, "{report}");
    assert_eq!(w.destination.records(), by_key(&w.source.rows()));
}

#[tokio::test]
async fn consent_deletions_pass_the_delete_guard_and_apply_outside_the_canary() {
    let w = World::new(customers(200));
    let all = w.sync(Mode::Mirror, opts()).await;
    all.run().await.unwrap();
    // A key far outside a 1 % canary.
    let outside = (1..=200).find(|&i| !Canary::new(0.01).unwrap().contains(&key(i))).unwrap();
    let revoked = MemorySuppressions::new();
    revoked.suppress_key(key(outside));
    let guarded = SyncJob::builder("customers")
        .source(w.source.clone())
        .destination(w.destination.clone())
        .state(w.state.clone())
        .mode(Mode::Mirror)
        .suppressions(revoked)
        .options(opts().with_max_deletes(Some(MaxDeletes::Count(0))).with_canary(0.01))
        .build()
        .await
        .unwrap();
    let report = guarded.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "a consent deletion is not withheld: {report}");
    assert!(!w.destination.records().contains_key(&key(outside)));
    assert_eq!(report.counts.withheld, 0);
    assert_eq!(report.suppression.unwrap().removed, 1);
}

#[tokio::test]
async fn a_destination_that_cannot_delete_is_named_in_the_report_and_the_key_is_never_resent() {
    let w = World::new(customers(10));
    let no_delete = MemoryDestination::new().with_capabilities(DestinationCapabilities::new([Op::Insert, Op::Update]));
    let revoked = MemorySuppressions::new();
    let sync = SyncJob::builder("customers")
        .source(w.source.clone())
        .destination(no_delete.clone())
        .state(w.state.clone())
        .suppressions(revoked.clone())
        .options(opts())
        .build()
        .await
        .unwrap();
    sync.run().await.unwrap();
    revoked.suppress_key(key(3));
    w.source.upsert(customer(3, 0.77));
    let report = sync.run().await.unwrap();
    let s = report.suppression.clone().unwrap();
    assert_eq!((s.kept_out, s.not_removable, s.removals_planned), (1, 1, 0), "{report}");
    let note = s.note.unwrap();
    assert!(note.contains("cannot delete") && note.contains("remove them by hand"), "{note}");
    assert!(report.to_string().contains("not removable"), "{report}");
    assert_eq!(no_delete.records()[&key(3)], customer(3, 0.03), "the old record stays; the change was not sent");
}

#[tokio::test]
async fn a_suppression_list_that_cannot_be_applied_fails_the_run_before_anything_is_sent() {
    let w = World::new(customers(10));
    let revoked = MemorySuppressions::new();
    revoked.suppress_identifier(&IdentifierColumn::email("mail"), &email_of(1));
    let sync = SyncJob::builder("customers")
        .source(w.source.clone())
        .destination(w.destination.clone())
        .state(w.state.clone())
        .suppressions(revoked)
        .build()
        .await
        .unwrap();
    let report = sync.run().await.unwrap();
    let RunStatus::Failed { kind, reason } = &report.status else { panic!("{report}") };
    assert_eq!(*kind, FailureKind::Suppression);
    assert!(reason.contains("`mail`") && reason.contains("nothing was read or sent"), "{reason}");
    assert!(w.destination.records().is_empty());
    assert_eq!(report.counts.read, 0);
}

#[tokio::test]
async fn a_refused_record_of_a_withdrawn_key_is_dropped_from_the_state_and_never_retried() {
    let w = World::new(customers(10));
    let faulty = FaultyDestination::new(w.destination.clone());
    faulty.reject_key(key(4), "invalid email");
    let revoked = MemorySuppressions::new();
    let sync = SyncJob::builder("customers")
        .source(w.source.clone())
        .destination(faulty.clone())
        .state(w.state.clone())
        .suppressions(revoked.clone())
        .options(opts())
        .build()
        .await
        .unwrap();
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::CompletedWithRejections, "{report}");
    assert_eq!(w.state.rejections("customers").len(), 1);
    faulty.lift();
    revoked.suppress_identifier(&IdentifierColumn::email("email"), &email_of(4));
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert!(w.state.rejections("customers").is_empty(), "the refused record (with its values) is still kept");
    assert!(!w.destination.records().contains_key(&key(4)));
}

#[tokio::test]
async fn several_lists_add_up() {
    let w = World::new(customers(6));
    let (a, b) = (MemorySuppressions::new(), MemorySuppressions::new());
    a.suppress_key(key(1));
    b.suppress_key(key(2));
    let sync = SyncJob::builder("customers")
        .source(w.source.clone())
        .destination(w.destination.clone())
        .state(MemoryStateStore::new())
        .suppressions(a)
        .suppressions(std::sync::Arc::new(b))
        .build()
        .await
        .unwrap();
    let report = sync.run().await.unwrap();
    assert_eq!(report.suppression.unwrap().kept_out, 2);
    assert_eq!(w.destination.records().len(), 4);
}

/// Log lines written to memory.
#[derive(Clone, Default)]
struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn each_suppression_is_logged_with_the_keys_hash_never_the_key() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // Keyed by the e-mail itself, the case where a key is personal data.
    let schema =
        Schema::new(vec![Field::required("email", DataType::String), Field::new("plan", DataType::String)], &["email"])
            .unwrap()
            .into_arc();
    let row = |email: &str| Record::new(vec![Value::from(email), Value::from("gold")]);
    let rows = vec![row("zq-withdrawn-7@example.com"), row("kept@example.com")];
    let withdrawn = Key::from_values(&[Value::from("zq-withdrawn-7@example.com")]);
    let destination = MemoryDestination::new();
    let revoked = MemorySuppressions::new();
    let sync = SyncJob::builder("logged")
        .source(MemorySource::new(schema, rows))
        .destination(destination.clone())
        .state(MemoryStateStore::new())
        .suppressions(revoked.clone())
        .build()
        .await
        .unwrap();
    sync.run().await.unwrap();
    revoked.suppress_key(withdrawn.clone());
    let report = sync.run().await.unwrap();
    assert_eq!(report.suppression.unwrap().removed, 1);

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let hash = withdrawn.redacted().to_string();
    let audited: Vec<&str> = logs.lines().filter(|l| l.contains("Consent withdrawn")).collect();
    assert!(audited.iter().any(|l| l.contains(&hash) && l.contains("outcome=\"removed\"")), "{logs}");
    assert!(audited.iter().any(|l| l.contains(&hash) && l.contains("outcome=\"kept_out\"")), "{logs}");
    assert!(!logs.contains("zq-withdrawn-7"), "a log line shows the withdrawn key: {logs}");
}
