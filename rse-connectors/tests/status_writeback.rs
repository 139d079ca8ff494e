//! The status write-back against the real PostgreSQL (RSE_POSTGRES_URL) and real SQLite
//! files: the rows an analyst queries after a sync with refusals, the run history against
//! the report, a crash, an unreachable table, a full buffer and retention.
#![cfg(all(feature = "sqlite", feature = "postgres"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use rse_connectors::state::{PostgresStateStore, SqliteStateStore};
use rse_connectors::status::{StatusOptions, StatusWriter};
use rse_connectors::{PostgresDestination, PostgresDestinationOptions, SqliteDestination, SqliteDestinationOptions};
use rse_core::memory::MemorySource;
use rse_core::metrics::{STATUS_WRITEBACK_DROPPED_TOTAL, STATUS_WRITEBACK_FAILURES_TOTAL, SYNC};
use rse_core::observe::{ObservedBatch, ObservedRecord, OutcomeObserver, RecordOutcome};
use rse_core::testing::{FaultyDestination, unique_id};
use rse_core::transform::{PiiDetector, SensitiveFields};
use rse_core::*;
use tokio_postgres::{Client, SimpleQueryMessage};

#[path = "support/pg.rs"]
mod pg;
use pg::url as pg_url;

/// id (int key), email, notes: a customers model whose notes may hold personal data.
fn schema() -> Arc<Schema> {
    Schema::new(
        vec![
            Field::required("id", DataType::Int),
            Field::new("email", DataType::String),
            Field::new("notes", DataType::String),
        ],
        &["id"],
    )
    .unwrap()
    .into_arc()
}

/// Customers 1..=n; customer 3's notes hold a card number (the guard refuses it).
fn customers(n: i64) -> Vec<Record> {
    (1..=n)
        .map(|id| {
            let notes = if id == 3 { "paid by 4111 1111 1111 1111".to_owned() } else { format!("tier {}", id % 3) };
            Record::new(vec![Value::Int(id), format!("hashed-{id}").into(), notes.into()])
        })
        .collect()
}

fn key(id: i64) -> Key {
    Key::from_values(&[Value::Int(id)])
}

fn options() -> SyncOptions {
    SyncOptions::default().with_batch_rows(10).with_linger(Duration::from_millis(5))
}

/// Where the status tables live, and how a test reads them: every column as text.
#[async_trait]
trait Tables: Send + Sync {
    async fn writer(&self, options: StatusOptions) -> StatusWriter;
    /// Runs `sql` with `{records}` and `{runs}` standing for the tables; every value as text.
    async fn query(&self, sql: &str) -> Vec<Vec<Option<String>>>;
    async fn execute(&self, sql: &str);
    /// An SQL expression for the time `days` days ago, in the tables' time type.
    fn days_ago(&self, days: u32) -> String;
}

/// A fresh schema in the real PostgreSQL, dropped at the end.
struct Pg {
    client: Client,
    schema: String,
}

impl Pg {
    async fn new() -> Option<Pg> {
        Some(Pg { client: pg::connect().await?, schema: unique_id("rse_status") })
    }

    fn status_options(&self) -> StatusOptions {
        StatusOptions::new().with_schema(&self.schema)
    }

    /// A PostgreSQL destination table in a schema of its own (`<schema>_data`), where the
    /// sync's state goes too.
    async fn destination(&self) -> PostgresDestination {
        self.client.batch_execute(&format!("CREATE SCHEMA \"{}_data\"", self.schema)).await.unwrap();
        let options = PostgresDestinationOptions::new("customers")
            .with_schema(format!("{}_data", self.schema))
            .with_create_table(true);
        PostgresDestination::connect(&pg_url(), options).await.unwrap()
    }

    fn sql(&self, sql: &str) -> String {
        sql.replace("{records}", &format!("\"{}\".rse_record_status", self.schema))
            .replace("{runs}", &format!("\"{}\".rse_run_history", self.schema))
    }

    async fn drop(self) {
        let _ = self.client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema)).await;
        let _ = self.client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}_data\" CASCADE", self.schema)).await;
    }
}

#[async_trait]
impl Tables for Pg {
    async fn writer(&self, options: StatusOptions) -> StatusWriter {
        StatusWriter::postgres(&pg_url(), options.with_schema(&self.schema)).await.unwrap()
    }

    async fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let messages = self.client.simple_query(&self.sql(sql)).await.unwrap();
        messages
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some((0..row.len()).map(|i| row.get(i).map(str::to_owned)).collect()),
                _ => None,
            })
            .collect()
    }

    async fn execute(&self, sql: &str) {
        self.client.batch_execute(&self.sql(sql)).await.unwrap();
    }

    fn days_ago(&self, days: u32) -> String {
        format!("now() - interval '{days} days'")
    }
}

/// A fresh directory with the application's SQLite file, removed at the end.
struct Lite {
    dir: PathBuf,
}

impl Lite {
    fn new() -> Lite {
        let dir = std::env::temp_dir().join(unique_id("rse_status"));
        std::fs::create_dir_all(&dir).unwrap();
        Lite { dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn sql(sql: &str) -> String {
        sql.replace("{records}", "rse_record_status").replace("{runs}", "rse_run_history")
    }
}

impl Drop for Lite {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[async_trait]
impl Tables for Lite {
    async fn writer(&self, options: StatusOptions) -> StatusWriter {
        StatusWriter::sqlite(self.file("app.db"), options).await.unwrap()
    }

    async fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let conn = rusqlite::Connection::open(self.file("app.db")).unwrap();
        let mut statement = conn.prepare(&Lite::sql(sql)).unwrap();
        let width = statement.column_count();
        let rows = statement
            .query_map([], |row| {
                (0..width)
                    .map(|i| {
                        Ok(match row.get::<_, rusqlite::types::Value>(i)? {
                            rusqlite::types::Value::Null => None,
                            rusqlite::types::Value::Integer(n) => Some(n.to_string()),
                            rusqlite::types::Value::Real(f) => Some(f.to_string()),
                            rusqlite::types::Value::Text(t) => Some(t),
                            rusqlite::types::Value::Blob(_) => Some("<blob>".to_owned()),
                        })
                    })
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .unwrap();
        rows.collect::<rusqlite::Result<Vec<_>>>().unwrap()
    }

    async fn execute(&self, sql: &str) {
        let conn = rusqlite::Connection::open(self.file("app.db")).unwrap();
        conn.execute_batch(&Lite::sql(sql)).unwrap();
    }

    fn days_ago(&self, days: u32) -> String {
        format!("strftime('%Y-%m-%d %H:%M:%f', 'now', '-{days} days')")
    }
}

fn text(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("<null>")
}

fn count(rows: &[Vec<Option<String>>]) -> i64 {
    text(&rows[0][0]).parse().unwrap()
}

/// A sync of `n` customers whose destination refuses customer 7 and holds a newer version
/// of customer 8, and whose guard keeps customer 3 (a card number in the notes) back.
fn guarded(
    sync_id: &str,
    n: i64,
    destination: impl Destination + 'static,
    state: impl StateStore + 'static,
    status: &StatusWriter,
) -> SyncBuilder {
    SyncJob::builder(sync_id)
        .source(MemorySource::new(schema(), customers(n)))
        .transform(SensitiveFields::new(Vec::<String>::new()).with_detectors(PiiDetector::ALL).allow(["email"]))
        .destination(destination)
        .state(state)
        .options(options())
        .observer(status.clone())
}

fn refusing<D: Destination>(inner: D) -> FaultyDestination<D> {
    let faulty = FaultyDestination::new(inner);
    faulty.reject_key(key(7), "field `email`: the domain is blocked by the CRM");
    faulty.supersede_key(key(8));
    faulty
}

/// The rows of a sync with refusals, read back with an analyst's SQL, and the run history
/// against the report.
async fn check_refusals_and_run_history(tables: &dyn Tables, sync_id: &str, sync: SyncJob, status: &StatusWriter) {
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::CompletedWithRejections, "{report}");
    status.flush().await.unwrap();
    let run = report.run_id;

    // One row per record outcome: 27 applied, 7 rejected, 8 superseded, 3 refused.
    let by_outcome = tables
        .query(&format!(
            "SELECT outcome, stage, count(*) FROM {{records}} WHERE sync_id = '{sync_id}' AND run_id = {run} \
             GROUP BY outcome, stage ORDER BY outcome"
        ))
        .await;
    let by_outcome: Vec<(String, String, String)> =
        by_outcome.iter().map(|r| (text(&r[0]).into(), text(&r[1]).into(), text(&r[2]).into())).collect();
    let expect = |o: &str, s: &str, n: &str| (o.to_owned(), s.to_owned(), n.to_owned());
    assert_eq!(
        by_outcome,
        [
            expect("applied", "destination", "27"),
            expect("refused", "transform", "1"),
            expect("rejected", "destination", "1"),
            expect("superseded", "destination", "1"),
        ]
    );
    assert_eq!(
        count(&tables.query(&format!("SELECT count(DISTINCT key) FROM {{records}} WHERE run_id = {run}")).await),
        30
    );

    // An analyst asks: why did customer 7 not reach the CRM?
    let why = tables
        .query(&format!(
            "SELECT outcome, op, reason, run_id FROM {{records}} \
             WHERE sync_id = '{sync_id}' AND key = '7' AND outcome <> 'applied' \
             ORDER BY recorded_at DESC LIMIT 1"
        ))
        .await;
    assert_eq!(why.len(), 1);
    assert_eq!(text(&why[0][0]), "rejected");
    assert_eq!(text(&why[0][1]), "insert");
    assert_eq!(text(&why[0][2]), "field `email`: the domain is blocked by the CRM");
    assert_eq!(text(&why[0][3]), run.to_string());
    // …and customer 3, kept back by the guard: the reason names the field, never the value.
    let guard = tables.query("SELECT op, reason FROM {records} WHERE key = '3'").await;
    assert_eq!(guard.len(), 1);
    assert_eq!(guard[0][0], None, "refused before the diff: no op");
    let reason = text(&guard[0][1]);
    assert!(reason.contains("field `notes`") && reason.contains("payment_card"), "{reason}");
    assert!(!reason.contains("4111"), "{reason}");
    let superseded = tables.query("SELECT reason FROM {records} WHERE key = '8'").await;
    assert!(text(&superseded[0][0]).starts_with("superseded"));
    let applied_with_reason =
        tables.query("SELECT count(*) FROM {records} WHERE outcome = 'applied' AND reason IS NOT NULL").await;
    assert_eq!(count(&applied_with_reason), 0);

    // The run history row matches the report.
    let runs = tables
        .query(&format!(
            "SELECT run_id, status, failure_kind, mode, records_read, applied, rejected, superseded, refused, \
             unchanged, undelivered, batches, duration_ms, report FROM {{runs}} WHERE sync_id = '{sync_id}'"
        ))
        .await;
    assert_eq!(runs.len(), 1);
    let row: Vec<&str> = runs[0].iter().map(text).collect();
    let c = &report.counts;
    assert_eq!(row[0], run.to_string());
    assert_eq!(row[1], "completed_with_rejections");
    assert_eq!(row[2], "<null>");
    assert_eq!(row[3], report.mode.to_string());
    let counts = [
        c.read,
        c.applied.total(),
        c.rejected.total(),
        c.superseded,
        c.transform_rejected,
        c.unchanged,
        c.undelivered,
        report.batches,
    ];
    assert_eq!(row[4..12], counts.map(|n| n.to_string()).iter().map(String::as_str).collect::<Vec<_>>()[..]);
    assert_eq!(row[12], report.stages.total.as_millis().to_string());
    let stored: SyncReport = serde_json::from_str(row[13]).unwrap();
    assert_eq!(stored, report, "the whole report is kept as JSON");

    // A second run sends the refused records again; the latest answer is what the analyst sees.
    let again = sync.run().await.unwrap();
    status.flush().await.unwrap();
    let latest = tables
        .query(&format!(
            "SELECT run_id FROM {{records}} WHERE sync_id = '{sync_id}' AND key = '7' ORDER BY recorded_at DESC, run_id DESC LIMIT 1"
        ))
        .await;
    assert_eq!(text(&latest[0][0]), again.run_id.to_string());
    assert_eq!(count(&tables.query("SELECT count(*) FROM {runs}").await), 2);
    assert_eq!(status.stats().records_dropped, 0);
    assert_eq!(status.stats().failures, 0);
}

#[tokio::test]
async fn postgres_rows_answer_why_a_record_did_not_reach_the_destination() {
    let Some(pg) = Pg::new().await else { return };
    let sync_id = unique_id("status_pg");
    let status = pg.writer(StatusOptions::new()).await;
    let destination = pg.destination().await;
    let state = PostgresStateStore::connect(&pg_url(), format!("{}_data", pg.schema).as_str()).await.unwrap();
    let sync = guarded(&sync_id, 30, refusing(destination), state, &status).build().await.unwrap();
    check_refusals_and_run_history(&pg, &sync_id, sync, &status).await;
    status.shutdown().await.unwrap();
    pg.drop().await;
}

#[tokio::test]
async fn sqlite_rows_answer_why_a_record_did_not_reach_the_destination() {
    let lite = Lite::new();
    let sync_id = unique_id("status_lite");
    let status = lite.writer(StatusOptions::new()).await;
    let destination = SqliteDestination::open(
        lite.file("crm.db"),
        SqliteDestinationOptions::new("customers").with_create_table(true),
    )
    .await
    .unwrap();
    let state = SqliteStateStore::open(lite.file("state.db")).await.unwrap();
    let sync = guarded(&sync_id, 30, refusing(destination), state, &status).build().await.unwrap();
    check_refusals_and_run_history(&lite, &sync_id, sync, &status).await;
    status.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_crash_mid_run_writes_only_outcomes_the_state_committed() {
    let Some(pg) = Pg::new().await else { return };
    let sync_id = unique_id("status_crash");
    let status = pg.writer(StatusOptions::new()).await;
    let destination = pg.destination().await;
    let state = PostgresStateStore::connect(&pg_url(), format!("{}_data", pg.schema).as_str()).await.unwrap();
    let faulty = FaultyDestination::new(Arc::new(destination));
    let sync = SyncJob::builder(&sync_id)
        .source(MemorySource::new(schema(), customers(60)))
        .destination(faulty.clone())
        .state(state.clone())
        .options(options().with_max_concurrency(1))
        .observer(status.clone())
        .build()
        .await
        .unwrap();
    // The destination applies 25 changes, then the process "dies" before the third batch's
    // answer is committed.
    faulty.crash_after_applied(25);
    tokio::select! {
        _ = sync.run() => panic!("the run should have crashed"),
        () = faulty.crashed() => {}
    }
    status.flush().await.unwrap();

    let mut committed = BTreeSet::new();
    for entry in state.scan(&sync_id, None, 1000).await.unwrap() {
        if entry.fingerprint.is_some() {
            committed.insert(entry.key.decode().unwrap()[0].as_i64().unwrap().to_string());
        }
    }
    assert_eq!(committed.len(), 20, "two batches of ten were committed");
    let written: BTreeSet<String> = pg
        .query(&format!("SELECT key FROM {{records}} WHERE sync_id = '{sync_id}'"))
        .await
        .into_iter()
        .map(|r| text(&r[0]).to_owned())
        .collect();
    assert_eq!(written, committed, "no outcome the state does not hold");
    assert_eq!(count(&pg.query("SELECT count(*) FROM {records}").await), 20);
    assert_eq!(count(&pg.query("SELECT count(*) FROM {runs}").await), 0, "a crashed run has no report");
    status.shutdown().await.unwrap();
    pg.drop().await;
}

/// Runs `f` on a current-thread runtime with a recorder local to this thread (the writer's
/// task runs on it too), and returns what `f` returned and the recorder's snapshotter.
fn with_metrics<T>(f: impl std::future::Future<Output = T>) -> (T, Snapshotter) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let out = ::metrics::with_local_recorder(&recorder, || runtime.block_on(f));
    (out, snapshotter)
}

/// A counter's name, labels and value.
type Counted = (String, Vec<(String, String)>, u64);

/// Every counter recorded: its name, its labels and its value (a snapshot is taken once:
/// taking it resets the recorder's counters).
fn counters(snapshotter: &Snapshotter) -> Vec<Counted> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(k, _, _, value)| match value {
            DebugValue::Counter(n) => Some((
                k.key().name().to_owned(),
                k.key().labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect(),
                n,
            )),
            _ => None,
        })
        .collect()
}

/// The counter `name`'s value for `sync`, checking that the sync is its only label.
fn counter(counters: &[Counted], name: &str, sync: &str) -> u64 {
    counters
        .iter()
        .filter(|(n, ..)| n == name)
        .filter_map(|(_, labels, value)| {
            assert_eq!(labels.len(), 1, "{name}: one label, the sync: {labels:?}");
            (labels[0] == (SYNC.to_owned(), sync.to_owned())).then_some(*value)
        })
        .sum()
}

#[test]
fn an_unreachable_status_table_leaves_delivery_untouched_and_counts_failures() {
    let sync_id = unique_id("status_down");
    let (outcome, metrics) = with_metrics(async {
        let pg = Pg::new().await?;
        // A wrong URL fails when the writer is made, saying so.
        let wrong = StatusWriter::postgres("postgres://nobody@127.0.0.1:1/none", pg.status_options()).await;
        let message = wrong.unwrap_err().to_string();
        assert!(message.contains("status write-back"), "{message}");

        // Writes go on flush only, so the test knows which write meets the dropped schema.
        let status = pg.writer(StatusOptions::new().with_flush_interval(Duration::from_secs(3600))).await;
        let lite = Lite::new();
        let destination = SqliteDestination::open(
            lite.file("crm.db"),
            SqliteDestinationOptions::new("customers").with_create_table(true),
        )
        .await
        .unwrap();
        let sync = guarded(&sync_id, 30, refusing(destination), rse_core::memory::MemoryStateStore::new(), &status)
            .build()
            .await
            .unwrap();
        // The status tables go away under the writer.
        pg.client.batch_execute(&format!("DROP SCHEMA \"{}\" CASCADE", pg.schema)).await.unwrap();
        let report = sync.run().await.unwrap();
        assert_eq!(report.status, RunStatus::CompletedWithRejections, "delivery is untouched: {report}");
        assert_eq!(report.counts.applied.total(), 27);
        let flushed = status.flush().await;
        assert!(flushed.is_err(), "the flush says its write failed");
        let stats = status.stats();
        assert!(stats.failures >= 1, "{stats:?}");
        assert_eq!(stats.records_dropped, 30, "every outcome of the run was dropped: {stats:?}");
        assert_eq!(stats.records_written, 0);

        // The next write creates the tables again.
        let again = sync.run().await.unwrap();
        status.flush().await.unwrap();
        let rows = pg.query(&format!("SELECT count(*) FROM {{records}} WHERE run_id = {}", again.run_id)).await;
        assert_eq!(count(&rows), 3, "the refused records sent again are written");
        status.shutdown().await.unwrap();
        pg.drop().await;
        Some(stats)
    });
    let Some(stats) = outcome else { return };
    let counters = counters(&metrics);
    assert_eq!(counter(&counters, STATUS_WRITEBACK_FAILURES_TOTAL, &sync_id), stats.failures);
    assert_eq!(counter(&counters, STATUS_WRITEBACK_DROPPED_TOTAL, &sync_id), 30);
}

fn batch(sync_id: &str, run_id: u64, ids: std::ops::RangeInclusive<i64>) -> Arc<ObservedBatch> {
    let records = ids.map(|id| ObservedRecord::new(key(id), Some(Op::Insert), RecordOutcome::Applied)).collect();
    Arc::new(ObservedBatch::new(sync_id.into(), run_id, records))
}

#[test]
fn a_full_buffer_drops_and_counts_what_it_cannot_hold() {
    let sync_id = unique_id("status_full");
    let lite = Lite::new();
    let ((written, dropped), metrics) = with_metrics(async {
        // Writes go on flush only: a long interval and more rows per write than arrive.
        let options = StatusOptions::new()
            .with_batch_rows(100)
            .with_buffer_records(100)
            .with_flush_interval(Duration::from_secs(3600));
        let status = lite.writer(options).await;
        status.on_outcomes(batch(&sync_id, 1, 1..=60));
        status.on_outcomes(batch(&sync_id, 1, 61..=130)); // 40 fit, 30 dropped
        status.on_outcomes(batch(&sync_id, 1, 131..=140)); // none fit
        status.flush().await.unwrap();
        status.on_outcomes(batch(&sync_id, 2, 141..=150)); // room again
        status.shutdown().await.unwrap();
        status.on_outcomes(batch(&sync_id, 3, 151..=155)); // after shutdown: dropped
        assert!(status.flush().await.is_err(), "a shut-down writer says so");
        let stats = status.stats();
        (stats.records_written, stats.records_dropped)
    });
    assert_eq!((written, dropped), (110, 45));
    assert_eq!(counter(&counters(&metrics), STATUS_WRITEBACK_DROPPED_TOTAL, &sync_id), 45);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let rows = lite.query("SELECT min(key), max(key), count(*) FROM {records} WHERE run_id = 1").await;
        assert_eq!(rows[0].iter().map(text).collect::<Vec<_>>(), ["1", "99", "100"], "the first 100 kept (text order)");
        let later = lite.query("SELECT count(*) FROM {records} WHERE run_id = 2").await;
        assert_eq!(count(&later), 10);
    });
}

/// Old rows (40 days) go at the first write; recent ones (10 days) and this run's stay.
async fn check_retention(tables: &dyn Tables, sync_id: &str, sync: SyncJob, status: &StatusWriter) {
    let (old, recent) = (tables.days_ago(40), tables.days_ago(10));
    let counts = "0, 0, 0, 0, 0, 0, 0, 0, 0, 0";
    tables
        .execute(&format!(
            "INSERT INTO {{records}} (sync_id, run_id, key, key_hash, op, outcome, stage, recorded_at) VALUES \
             ('old', 1, '1', 'h', 'insert', 'applied', 'destination', {old}), \
             ('old', 1, '2', 'h', 'insert', 'applied', 'destination', {recent}); \
             INSERT INTO {{runs}} (sync_id, run_id, status, message, mode, dry_run, full_resync, started_at, \
             finished_at, duration_ms, records_read, applied, rejected, superseded, refused, unchanged, undelivered, \
             withheld, retries, batches, report) VALUES \
             ('old', 1, 'succeeded', 'succeeded', 'upsert', false, false, {old}, {old}, 0, {counts}, '{{}}'), \
             ('old', 2, 'succeeded', 'succeeded', 'upsert', false, false, {recent}, {recent}, 0, {counts}, '{{}}')"
        ))
        .await;
    let report = sync.run().await.unwrap();
    status.flush().await.unwrap();
    let left = tables.query("SELECT key FROM {records} WHERE sync_id = 'old'").await;
    assert_eq!(left, [[Some("2".to_owned())]], "only the record older than the retention is deleted");
    let runs = tables.query("SELECT run_id FROM {runs} WHERE sync_id = 'old'").await;
    assert_eq!(runs, [[Some("2".to_owned())]]);
    let this_run = tables
        .query(&format!("SELECT count(*) FROM {{records}} WHERE sync_id = '{sync_id}' AND run_id = {}", report.run_id))
        .await;
    assert_eq!(count(&this_run), 30);
    assert_eq!(status.stats().rows_purged, 2);
    assert_eq!(status.purge().await.unwrap(), 0, "nothing more is old");
}

#[tokio::test]
async fn retention_deletes_old_rows_only_in_sqlite() {
    let lite = Lite::new();
    let status = lite.writer(StatusOptions::new().with_retention_days(30)).await;
    let destination = SqliteDestination::open(
        lite.file("crm.db"),
        SqliteDestinationOptions::new("customers").with_create_table(true),
    )
    .await
    .unwrap();
    let sync_id = unique_id("status_keep");
    let sync =
        guarded(&sync_id, 30, destination, rse_core::memory::MemoryStateStore::new(), &status).build().await.unwrap();
    check_retention(&lite, &sync_id, sync, &status).await;
    status.shutdown().await.unwrap();
}

#[tokio::test]
async fn retention_deletes_old_rows_only_in_postgres() {
    let Some(pg) = Pg::new().await else { return };
    let status = pg.writer(StatusOptions::new().with_retention_days(30)).await;
    let lite = Lite::new();
    let destination = SqliteDestination::open(
        lite.file("crm.db"),
        SqliteDestinationOptions::new("customers").with_create_table(true),
    )
    .await
    .unwrap();
    let sync_id = unique_id("status_keep");
    let sync =
        guarded(&sync_id, 30, destination, rse_core::memory::MemoryStateStore::new(), &status).build().await.unwrap();
    check_retention(&pg, &sync_id, sync, &status).await;
    status.shutdown().await.unwrap();
    pg.drop().await;
}

#[tokio::test]
async fn options_that_cannot_work_are_refused_naming_the_setting() {
    let lite = Lite::new();
    for (options, setting) in [
        (StatusOptions::new().with_tables("same", "same"), "`records_table` and `runs_table`"),
        (StatusOptions::new().with_retention_days(0), "`retention_days`"),
        (StatusOptions::new().with_flush_interval(Duration::ZERO), "`flush_interval`"),
    ] {
        let message = StatusWriter::sqlite(lite.file("app.db"), options).await.unwrap_err().to_string();
        assert!(message.contains(setting), "{message}");
    }
}
