//! The metrics a run emits, read back from a recorder: names, kinds and labels as the catalog
//! says and never a key or a value; counts that agree with the report; freshness that moves
//! only when a run delivered everything; every metric the runner owns emitted by a faulted
//! series of runs; and the change-time option's checks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use metrics_util::MetricKind as Kind;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use rse_core::memory::{MemoryDestination, MemoryStateStore};
use rse_core::metrics::{self as m, CATALOG};
use rse_core::testing::FaultyDestination;
use rse_core::transform::Validate;
use rse_core::*;

const SYNC_ID: &str = "metrics-faults";
/// The destination's name; its kind, the label's value, is the part before the `:`.
const DESTINATION_NAME: &str = "quoted:crm.contacts";
const FIRST: i64 = 918_273_601;
const ROWS: i64 = 40;

/// The metrics this suite does not see a run emit: each is emitted by another part of rse.
const OWNED_ELSEWHERE: [&str; 9] = [
    // Reconciliation (`verify`) sets these.
    m::RECONCILE_MISMATCHES,
    m::RECONCILE_CHECKED,
    m::RECONCILE_MISMATCH_RATIO,
    // Pause and consent revocation.
    m::PAUSED,
    m::SUPPRESSED_TOTAL,
    // The status write-back.
    m::STATUS_WRITEBACK_DROPPED_TOTAL,
    m::STATUS_WRITEBACK_FAILURES_TOTAL,
    // The sensitive-field guard.
    m::SENSITIVE_FIELD_BLOCKS_TOTAL,
    // rse-connectors' HTTP client (tested there, against real HTTP servers).
    m::HTTP_REQUESTS_TOTAL,
];

// ---------------------------------------------------------------------------------------
// The model: a source whose columns and unreadable rows can change between runs.

fn schema(drifted: bool) -> Arc<Schema> {
    let mut fields = vec![
        Field::required("id", DataType::Int),
        Field::new("email", DataType::String),
        Field::new("name", DataType::String),
        Field::new("score", DataType::Float),
        Field::new("changed_at", DataType::Timestamp),
    ];
    if drifted {
        fields.push(Field::new("tier", DataType::String));
    }
    Schema::new(fields, &["id"]).unwrap().into_arc()
}

/// The columns, the rows, and the rows the source cannot read.
type Table = (Arc<Schema>, Vec<Record>, Vec<SourceRejection>);

#[derive(Clone)]
struct Model(Arc<Mutex<Table>>);

impl Model {
    fn set(&self, schema: Arc<Schema>, rows: Vec<Record>, unreadable: Vec<SourceRejection>) {
        *self.0.lock().unwrap() = (schema, rows, unreadable);
    }
}

#[async_trait]
impl Source for Model {
    fn name(&self) -> &str {
        "model"
    }

    fn capabilities(&self) -> SourceCapabilities {
        SourceCapabilities::default()
    }

    async fn schema(&self) -> Result<Arc<Schema>, SourceError> {
        Ok(self.0.lock().unwrap().0.clone())
    }

    async fn read(&self, _request: ReadRequest) -> Result<RowBatchStream<'_>, SourceError> {
        let (schema, rows, unreadable) = self.0.lock().unwrap().clone();
        let mut batches: Vec<Result<RowBatch, SourceError>> =
            rows.chunks(8).map(|chunk| Ok(RowBatch::new(schema.clone(), chunk.to_vec()))).collect();
        if let Some(Ok(first)) = batches.first_mut() {
            first.rejected = unreadable;
        }
        Ok(futures::stream::iter(batches).boxed())
    }
}

/// A destination that reports its quota with every answer, as a CRM's headers do.
#[derive(Clone)]
struct Quoted {
    inner: MemoryDestination,
    writes: Arc<AtomicU64>,
}

#[async_trait]
impl Destination for Quoted {
    fn name(&self) -> &str {
        DESTINATION_NAME
    }

    fn capabilities(&self) -> DestinationCapabilities {
        self.inner.capabilities()
    }

    async fn check(&self) -> Result<(), DestinationError> {
        Ok(())
    }

    async fn write(&self, batch: &ChangeBatch) -> Result<WriteOutcome, DestinationError> {
        let mut out = self.inner.write(batch).await?;
        let n = self.writes.fetch_add(1, Ordering::Relaxed) + 1;
        out.quota = Some(QuotaFeedback {
            window: Some(QuotaWindow::new(1_000 - n, Some(1_000), Some(Duration::from_secs(10)))),
            daily: Some(QuotaWindow::new(250_000 - n, Some(250_000), None)),
        });
        Ok(out)
    }
}

/// When the rows changed: a minute and a half ago, less a second per id's last digit.
fn changed_at(id: i64, base: i64) -> i64 {
    base - (id % 10) * 1_000_000
}

fn person(id: i64, version: i64, base: i64) -> Record {
    Record::new(vec![
        Value::Int(id),
        Value::String(format!("zq{id}.v{version}@secret-example.org")),
        Value::String(format!("Quetzalcoatl{id} Smith")),
        Value::Float(id as f64 / 7.0 + version as f64),
        Value::Timestamp(changed_at(id, base)),
    ])
}

fn key(id: i64) -> Key {
    Key::from_values(&[Value::Int(id)])
}

// ---------------------------------------------------------------------------------------
// Reading the recorder.

#[derive(Debug, Clone, PartialEq)]
enum Reading {
    Counter(u64),
    Gauge(f64),
    Histogram(Vec<f64>),
}

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    kind: Kind,
    labels: BTreeMap<String, String>,
    value: Reading,
}

/// What was recorded since the last call: the debugging recorder hands counters and
/// histograms out as deltas, and a gauge not set since reads 0.
fn take(snapshotter: &Snapshotter) -> Vec<Sample> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| Sample {
            name: key.key().name().to_owned(),
            kind: key.kind(),
            labels: key.key().labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect(),
            value: match value {
                DebugValue::Counter(n) => Reading::Counter(n),
                DebugValue::Gauge(g) => Reading::Gauge(g.into_inner()),
                DebugValue::Histogram(h) => Reading::Histogram(h.into_iter().map(|v| v.into_inner()).collect()),
            },
        })
        .collect()
}

fn matches(s: &Sample, name: &str, labels: &[(&str, &str)]) -> bool {
    s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
}

/// The sum of counter `name` over the series whose labels include `labels`.
fn count(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> u64 {
    samples
        .iter()
        .filter(|s| matches(s, name, labels))
        .map(|s| match s.value {
            Reading::Counter(n) => n,
            ref other => panic!("{name} is not a counter: {other:?}"),
        })
        .sum()
}

/// Gauge `name`'s value if it was set (to anything but 0) since the last reading.
fn gauge(samples: &[Sample], name: &str) -> Option<f64> {
    samples.iter().filter(|s| s.name == name).find_map(|s| match s.value {
        Reading::Gauge(g) if g != 0.0 => Some(g),
        _ => None,
    })
}

fn observations(samples: &[Sample], name: &str) -> Vec<f64> {
    samples
        .iter()
        .filter(|s| s.name == name)
        .flat_map(|s| match &s.value {
            Reading::Histogram(h) => h.clone(),
            other => panic!("{name} is not a histogram: {other:?}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The faulted series of runs.

/// One run of the series and what was recorded during it.
struct Step {
    what: &'static str,
    result: Option<Result<SyncReport, Error>>,
    samples: Vec<Sample>,
    /// Write calls that reached the destination during the run.
    writes: u64,
}

struct Series {
    steps: Vec<Step>,
    /// Every value (keys included) the source held, as text.
    values: BTreeSet<String>,
    /// The newest change time of the first run's rows (microseconds).
    newest_change: i64,
    /// Pending changes in the state before the run after the crash.
    pending_after_crash: u64,
}

impl Series {
    fn step(&self, what: &str) -> &Step {
        self.steps.iter().find(|s| s.what == what).unwrap_or_else(|| panic!("no step {what}"))
    }

    fn all(&self) -> Vec<Sample> {
        self.steps.iter().flat_map(|s| s.samples.clone()).collect()
    }
}

fn text_of(value: &Value) -> String {
    match value {
        Value::Int(i) | Value::Timestamp(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        other => panic!("not in the model: {other:?}"),
    }
}

/// A series of runs of one sync through every fault the testing kit injects: refused,
/// superseded and retried changes, a 429, a crash and the re-run, a lease held by the dead
/// runner, a dry run, an open circuit, withheld deletes, a rate limit past the sync's
/// patience and a schema drift. `snapshotter` reads the recorder installed on this thread.
async fn faulted_series(snapshotter: &Snapshotter) -> Series {
    let base = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros()).unwrap() - 90_000_000;
    let rows = |version: i64| (FIRST..FIRST + ROWS).map(|id| person(id, version, base)).collect::<Vec<_>>();
    let model = Model(Arc::new(Mutex::new((schema(false), Vec::new(), Vec::new()))));
    let quoted = Quoted { inner: MemoryDestination::new(), writes: Arc::default() };
    let faulty = FaultyDestination::new(quoted);
    let state = MemoryStateStore::new();
    let ttl = Duration::from_secs(30);
    let options = SyncOptions::default()
        .with_batch_rows(4)
        .with_max_concurrency(1)
        .with_lease_ttl(ttl)
        .with_initial_backoff(Duration::from_millis(10))
        .with_change_time_field(Some("changed_at".into()));
    let build = |options: SyncOptions| {
        SyncJob::builder(SYNC_ID)
            .source(model.clone())
            .transform(Validate::new().pattern("email", "@"))
            .destination(faulty.clone())
            .state(state.clone())
            .mode(Mode::Mirror)
            .options(options)
            .build()
    };
    let sync = build(options.clone()).await.unwrap();
    let mut steps = Vec::new();
    let mut values = BTreeSet::new();
    let run = |what: &'static str, sync: SyncJob| {
        let calls = faulty.calls();
        let faulty = faulty.clone();
        async move {
            let result = sync.run().await;
            Step { what, result: Some(result), samples: take(snapshotter), writes: faulty.calls() - calls }
        }
    };

    // The initial load: an unreadable row, one refused by validation, a repeated key and a
    // null key; at the destination a refusal, a superseded change, a transient failure and a
    // 429 asking for two seconds.
    let mut first = rows(1);
    first.push(Record::new(vec![
        Value::Int(FIRST + 50),
        Value::String("not an address".into()),
        Value::Null,
        Value::Null,
        Value::Null,
    ]));
    first.push(person(FIRST + 4, 9, base));
    first.push(Record::new(vec![
        Value::Null,
        Value::String("zq-null@secret-example.org".into()),
        Value::Null,
        Value::Null,
        Value::Null,
    ]));
    for r in &first {
        values.extend(r.values.iter().map(text_of));
    }
    values.insert((FIRST + 60).to_string());
    let unreadable = vec![SourceRejection::new("row 61", "column `score` is not a number").with_key(key(FIRST + 60))];
    model.set(schema(false), first.clone(), unreadable);
    faulty
        .reject_key(key(FIRST), "refused by the destination's policy")
        .supersede_key(key(FIRST + 1))
        .fail_write(2)
        .rate_limit_write(4, Some(Duration::from_secs(2)));
    let newest_change = first[..ROWS as usize].iter().map(|r| changed_at(r.values[0].as_i64().unwrap(), base)).max();
    steps.push(run("initial load", sync.clone()).await);

    // Ten updates; the destination dies after applying six changes, before answering.
    let mut second = rows(1);
    for r in &mut second[10..20] {
        let id = r.values[0].as_i64().unwrap();
        *r = person(id, 2, base);
        values.extend(r.values.iter().map(text_of));
    }
    model.set(schema(false), second.clone(), Vec::new());
    faulty.crash_after_applied(6);
    let calls = faulty.calls();
    tokio::select! {
        _ = sync.run() => panic!("the run should have crashed"),
        () = faulty.crashed() => {}
    }
    steps.push(Step { what: "crash", result: None, samples: take(snapshotter), writes: faulty.calls() - calls });

    // The dead runner still holds the lease.
    steps.push(run("lease held", sync.clone()).await);
    tokio::time::sleep(ttl).await;
    let pending_after_crash = state.snapshot(SYNC_ID).iter().filter(|e| e.pending.is_some()).count() as u64;
    steps.push(run("after the crash", sync.clone()).await);

    // A dry run changes nothing, and emits nothing.
    second[20] = person(FIRST + 20, 3, base);
    model.set(schema(false), second.clone(), Vec::new());
    steps.push(run("dry run", build(options.clone().with_dry_run(true)).await.unwrap()).await);

    // One write that fails with no retry left opens a circuit that opens at the first.
    faulty.fail_write(faulty.calls() + 1);
    let impatient = options.clone().with_max_attempts(1).with_circuit_breaker_threshold(1);
    steps.push(run("circuit open", build(impatient).await.unwrap()).await);

    // Most rows gone: the delete guard withholds the deletes.
    model.set(schema(false), second[..5].to_vec(), Vec::new());
    steps.push(run("deletes withheld", sync.clone()).await);

    // The destination asks to wait an hour, longer than the sync allows.
    model.set(schema(false), second.clone(), Vec::new());
    faulty.rate_limit_write(faulty.calls() + 1, Some(Duration::from_secs(3_600)));
    steps.push(run("rate limited", sync.clone()).await);

    // A column appears: the drift policy stops the run.
    let drifted = second
        .iter()
        .map(|r| {
            let mut values = r.values.clone();
            values.push(Value::String("gold".into()));
            Record::new(values)
        })
        .collect::<Vec<_>>();
    values.insert("gold".into());
    model.set(schema(true), drifted, Vec::new());
    steps.push(run("schema drift", sync.clone()).await);

    // Back to normal, every fault lifted.
    model.set(schema(false), second, Vec::new());
    faulty.lift();
    steps.push(run("recovered", sync.clone()).await);

    Series { steps, values, newest_change: newest_change.unwrap(), pending_after_crash }
}

fn report(step: &Step) -> &SyncReport {
    match &step.result {
        Some(Ok(report)) => report,
        other => panic!("{}: {other:?}", step.what),
    }
}

/// The values each fixed-set label may take, per metric where it differs.
fn allowed(metric: &str, label: &str) -> &'static [&'static str] {
    match (metric, label) {
        (_, m::OP) => &["insert", "update", "delete", "append"],
        (m::RECORDS_TOTAL, m::OUTCOME) => &["applied", "rejected", "superseded", "withheld", "undelivered"],
        (m::DESTINATION_REQUESTS_TOTAL, m::OUTCOME) => {
            &["ok", "partial", "rate_limited", "transient", "timeout", "unauthorized", "quota_exhausted", "failed"]
        }
        (_, m::STATUS) => &[
            "succeeded",
            "completed_with_rejections",
            "deletes_withheld",
            "circuit_open",
            "cancelled",
            "rate_limited",
            "quota_exhausted",
            "lease_lost",
            "paused",
            "failed",
        ],
        (_, m::STAGE) => &["source", "transform", "key", "destination"],
        (_, m::WINDOW) => &["window", "daily"],
        (_, m::CLASS) => &["2xx", "3xx", "4xx", "429", "5xx", "error"],
        (_, m::KIND) => &["missing", "stale", "extra"],
        (metric, label) => panic!("{metric}: no fixed set for label `{label}`"),
    }
}

// ---------------------------------------------------------------------------------------
// The tests.

#[tokio::test(start_paused = true)]
async fn every_metric_is_in_the_catalog_with_its_kind_and_labels_and_no_label_carries_a_key_or_value() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = ::metrics::set_default_local_recorder(&recorder);
    let series = faulted_series(&snapshotter).await;

    let all = series.all();
    assert!(!all.is_empty());
    for sample in &all {
        let doc = CATALOG
            .iter()
            .find(|d| d.name == sample.name)
            .unwrap_or_else(|| panic!("`{}` is not in the catalog", sample.name));
        let kind = match doc.kind {
            m::MetricKind::Counter => Kind::Counter,
            m::MetricKind::Gauge => Kind::Gauge,
            m::MetricKind::Histogram => Kind::Histogram,
            other => panic!("{other:?}"),
        };
        assert_eq!(sample.kind, kind, "{}", sample.name);
        let keys: BTreeSet<&str> = sample.labels.keys().map(String::as_str).collect();
        assert_eq!(keys, doc.labels.iter().copied().collect(), "{}: label keys", sample.name);
        assert_eq!(keys.len(), doc.labels.len(), "{}", sample.name);
        for (label, value) in &sample.labels {
            match label.as_str() {
                m::SYNC => assert_eq!(value, SYNC_ID),
                m::DESTINATION => assert_eq!(value, "quoted", "the destination's kind"),
                other => assert!(
                    allowed(&sample.name, other).contains(&value.as_str()),
                    "{}: `{other}` = `{value}` is not in its fixed set",
                    sample.name
                ),
            }
            for v in &series.values {
                assert!(value != v, "{}: label `{label}` carries the source's value `{v}`", sample.name);
                assert!(v.len() < 8 || !value.contains(v.as_str()), "{}: label `{label}` holds `{v}`", sample.name);
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn counters_agree_with_the_reports_and_freshness_moves_only_when_a_run_delivered_everything() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = ::metrics::set_default_local_recorder(&recorder);
    let series = faulted_series(&snapshotter).await;

    let mut statuses = BTreeSet::new();
    for step in &series.steps {
        let (what, s) = (step.what, &step.samples);
        let Some(Ok(report)) = &step.result else { continue };
        if report.dry_run {
            let silent = |x: &Sample| match &x.value {
                Reading::Counter(n) => *n == 0,
                Reading::Gauge(g) => *g == 0.0,
                Reading::Histogram(h) => h.is_empty(),
            };
            assert!(s.iter().all(silent), "{what}: a dry run emits nothing: {s:?}");
            continue;
        }
        statuses.insert(report.status.label());
        let c = &report.counts;
        for op in Op::ALL {
            let of = |outcome| count(s, m::RECORDS_TOTAL, &[(m::OP, op.as_str()), (m::OUTCOME, outcome)]);
            assert_eq!(of("applied"), c.applied.get(op), "{what}: applied {op}");
            assert_eq!(of("rejected"), c.rejected.get(op), "{what}: rejected {op}");
        }
        let outcome = |o| count(s, m::RECORDS_TOTAL, &[(m::OUTCOME, o)]);
        assert_eq!(outcome("superseded"), c.superseded, "{what}");
        assert_eq!(outcome("withheld"), c.withheld, "{what}");
        assert_eq!(outcome("undelivered"), c.undelivered, "{what}");
        assert_eq!(count(s, m::RECORDS_READ_TOTAL, &[]), c.read, "{what}");
        let stage = |st| count(s, m::REJECTIONS_TOTAL, &[(m::STAGE, st)]);
        assert_eq!(stage("source"), c.source_rejected, "{what}");
        assert_eq!(stage("transform"), c.transform_rejected, "{what}");
        assert_eq!(stage("key"), c.invalid, "{what}");
        assert_eq!(stage("destination"), c.rejected.total() + c.superseded, "{what}");
        assert_eq!(count(s, m::RETRIES_TOTAL, &[]), report.retries, "{what}");
        assert_eq!(count(s, m::RUNS_TOTAL, &[]), 1, "{what}");
        assert_eq!(count(s, m::RUNS_TOTAL, &[(m::STATUS, report.status.label())]), 1, "{what}");
        // One request per write call that reached the destination; the acknowledged ones
        // are the report's batches.
        assert_eq!(count(s, m::DESTINATION_REQUESTS_TOTAL, &[]), step.writes, "{what}");
        let answered = count(s, m::DESTINATION_REQUESTS_TOTAL, &[(m::OUTCOME, "ok")])
            + count(s, m::DESTINATION_REQUESTS_TOTAL, &[(m::OUTCOME, "partial")]);
        assert_eq!(answered, report.batches, "{what}");
        assert_eq!(observations(s, m::BATCH_SIZE_RECORDS).len() as u64, step.writes, "{what}");
        assert_eq!(observations(s, m::RUN_DURATION_SECONDS).len(), 1, "{what}");
        assert_eq!(gauge(s, m::RUN_RECORDS_READ), (c.read > 0).then_some(c.read as f64), "{what}");
        // Freshness: every run ended; only complete ones delivered everything.
        assert!(gauge(s, m::LAST_RUN_TIMESTAMP).is_some(), "{what}");
        assert_eq!(gauge(s, m::LAST_SUCCESS_TIMESTAMP).is_some(), report.status.is_complete(), "{what}");
        let schema_drift = count(s, m::SCHEMA_DRIFT_TOTAL, &[]);
        assert_eq!(schema_drift, u64::from(what == "schema drift"), "{what}");
    }
    assert_eq!(
        statuses,
        ["completed_with_rejections", "circuit_open", "deletes_withheld", "rate_limited", "failed", "succeeded"].into(),
    );

    // The initial load: its refusals, its faults, the 429's two seconds, and the load done.
    let load = series.step("initial load");
    let (s, r) = (&load.samples, report(load));
    assert_eq!((r.counts.source_rejected, r.counts.transform_rejected, r.counts.invalid), (1, 1, 2), "{r:?}");
    assert_eq!((r.counts.rejected.insert, r.counts.superseded), (1, 1), "{r:?}");
    let request = |o| count(s, m::DESTINATION_REQUESTS_TOTAL, &[(m::OUTCOME, o)]);
    assert_eq!((request("transient"), request("rate_limited")), (1, 1));
    assert!(request("partial") >= 1 && request("ok") >= 1);
    assert_eq!(count(s, m::RATE_LIMIT_WAIT_SECONDS_TOTAL, &[]), r.rate_limit_wait.as_secs());
    assert_eq!(r.rate_limit_wait.as_secs(), 2, "{r:?}");
    assert!(r.backfill_started_at_ms.is_some());
    assert!(gauge(s, m::BACKFILL_COMPLETED_TIMESTAMP).is_some());
    let windows: BTreeSet<&str> =
        s.iter().filter(|x| x.name == m::QUOTA_REMAINING).map(|x| x.labels[m::WINDOW].as_str()).collect();
    assert_eq!(windows, ["daily", "window"].into());
    let limits: BTreeSet<u64> = s
        .iter()
        .filter(|x| x.name == m::QUOTA_LIMIT)
        .map(|x| gauge(std::slice::from_ref(x), m::QUOTA_LIMIT).unwrap() as u64)
        .collect();
    assert_eq!(limits, [1_000, 250_000].into());

    // The crash: the run's future was dropped, so it is no longer in progress, and it did
    // not end as a run.
    let crash = &series.step("crash").samples;
    assert!(crash.iter().any(|x| x.name == m::RUN_IN_PROGRESS && x.value == Reading::Gauge(0.0)));
    assert_eq!(count(crash, m::RUNS_TOTAL, &[]), 0);

    // The dead runner's lease: a conflict, not a run.
    let held = series.step("lease held");
    assert!(matches!(&held.result, Some(Err(Error::State(StateError::LeaseHeld { .. })))), "{:?}", held.result);
    assert_eq!(count(&held.samples, m::LEASE_CONFLICTS_TOTAL, &[]), 1);
    assert_eq!(count(&held.samples, m::RUNS_TOTAL, &[]), 0);
    assert!(gauge(&held.samples, m::LAST_RUN_TIMESTAMP).is_none());

    // After it, the changes pending when the runner died went again under their keys.
    let after = &series.step("after the crash").samples;
    assert!(series.pending_after_crash > 0);
    assert_eq!(count(after, m::DUPLICATE_WRITES_TOTAL, &[]), series.pending_after_crash);

    let circuit = &series.step("circuit open").samples;
    assert_eq!(count(circuit, m::CIRCUIT_BREAKER_OPENS_TOTAL, &[]), 1);
}

#[tokio::test(start_paused = true)]
async fn the_change_time_column_gives_each_applied_change_its_latency_and_the_freshest_change() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = ::metrics::set_default_local_recorder(&recorder);
    let series = faulted_series(&snapshotter).await;

    let load = series.step("initial load");
    let r = report(load);
    let latencies = observations(&load.samples, m::RECORD_LATENCY_SECONDS);
    // One per applied insert whose change time is set (the refused and superseded keys'
    // changes were not applied).
    assert_eq!(latencies.len() as u64, r.counts.applied.insert);
    // The rows changed 90 to 99 seconds before the run.
    assert!(latencies.iter().all(|l| (90.0..3_600.0).contains(l)), "{latencies:?}");
    let newest = gauge(&load.samples, m::SOURCE_CHANGE_TIMESTAMP).unwrap();
    assert_eq!(newest, series.newest_change as f64 / 1e6);

    // Only changes applied later count, and the newest change time never goes back.
    let after = series.step("after the crash");
    assert!(!observations(&after.samples, m::RECORD_LATENCY_SECONDS).is_empty());
    assert_eq!(gauge(&after.samples, m::SOURCE_CHANGE_TIMESTAMP), None, "no fresher change was acknowledged");
}

#[tokio::test(start_paused = true)]
async fn every_metric_the_runner_owns_is_emitted_by_a_faulted_series_of_runs() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = ::metrics::set_default_local_recorder(&recorder);
    let series = faulted_series(&snapshotter).await;
    let all = series.all();

    let mut missing = Vec::new();
    for doc in CATALOG.iter().filter(|d| !OWNED_ELSEWHERE.contains(&d.name)) {
        if cfg!(not(target_os = "linux"))
            && [m::PROCESS_RESIDENT_MEMORY_BYTES, m::PROCESS_CPU_SECONDS].contains(&doc.name)
        {
            continue;
        }
        // A gauge is only registered by being set (to 0 too: a run no longer in progress).
        let emitted = all.iter().filter(|s| s.name == doc.name).any(|s| match &s.value {
            Reading::Counter(n) => *n > 0,
            Reading::Gauge(_) => true,
            Reading::Histogram(h) => !h.is_empty(),
        });
        if !emitted {
            missing.push(doc.name);
        }
    }
    assert!(missing.is_empty(), "never emitted: {missing:?}");
}

// ---------------------------------------------------------------------------------------
// The change-time option.

async fn build_with_change_time(field: &str) -> Result<SyncJob, ConfigError> {
    SyncJob::builder("change-time-check")
        .source(Model(Arc::new(Mutex::new((schema(false), Vec::new(), Vec::new())))))
        .transform(rse_core::transform::Rename::new([("changed_at", "updated_at")]))
        .destination(MemoryDestination::new())
        .state(MemoryStateStore::new())
        .options(SyncOptions::default().with_change_time_field(Some(field.to_owned())))
        .build()
        .await
}

#[tokio::test]
async fn the_change_time_column_must_be_a_timestamp_column_after_transforms() {
    assert!(build_with_change_time("updated_at").await.is_ok());

    let before_rename = build_with_change_time("changed_at").await.unwrap_err().to_string();
    assert!(before_rename.contains("option `change_time_field` names `changed_at`"), "{before_rename}");
    assert!(before_rename.contains("(columns: id, email, name, score, updated_at)"), "{before_rename}");

    let text = build_with_change_time("email").await.unwrap_err().to_string();
    assert!(text.contains("`email`, a string column; it must name a timestamp column"), "{text}");
}

#[test]
fn the_change_time_column_is_read_from_configuration() {
    let options: SyncOptions = serde_json::from_str(r#"{ "change_time_field": "changed_at" }"#).unwrap();
    assert_eq!(options.change_time_field.as_deref(), Some("changed_at"));
    assert_eq!(SyncOptions::default().change_time_field, None);
}
