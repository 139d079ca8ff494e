//! A long-running service that runs syncs on a schedule and serves their metrics to
//! Prometheus on `/metrics`.
//!
//! It installs `metrics-exporter-prometheus` with an HTTP listener, gives the `_seconds`
//! and `_records` histograms buckets (so `histogram_quantile` gives P95 and P99), registers
//! the help text of every rse metric, and then, every `--interval` seconds, moves a SQLite
//! "warehouse" on a little and runs three syncs from it: `customers-to-crm` (Mirror, with
//! validation) and `scores-to-app` (Upsert) into an app's SQLite database, and
//! `churn-webhook` to an HTTP receiver the service runs itself.
//!
//! With `--faults`, `customers-to-crm`'s destination misbehaves on a schedule, so that every
//! panel of the dashboards in `deploy/grafana/` has something to show: it refuses two
//! customers for good, fails writes (retried), answers 429, fails after applying (re-sent
//! under the same idempotency keys), fails often enough to open the circuit, reports a
//! daily API allowance as a SaaS API would, and a second runner tries to take the lease
//! while a run holds it. The model's columns change every six runs (schema drift). The
//! webhook receiver answers some requests 429 and some 503, and the status tables' database
//! is locked for a while now and then, so the status write-back drops what it cannot write.
//!
//! Every run's record outcomes and report go to status tables (`status.db`), and
//! `customers-to-crm` keeps back the customers whose support notes hold an e-mail address
//! (the sensitive-field guard) and those in the consent system's `consent_withdrawn` table,
//! in either mode. Under `--faults` a customer withdraws consent at the third round, and an
//! operator pauses `customers-to-crm` for one round in nine. After each round
//! `scores-to-app` is verified against the app's table (and repaired where it differs);
//! under `--faults` that table is edited by hand now and then, so verify finds mismatches.
//!
//! ```text
//! cargo run --example metrics_service -- [--listen 127.0.0.1:9464] [--interval 10] [--runs N] [--faults]
//! ```
//!
//! `--listen` defaults to `$RSE_METRICS_LISTEN`, else `127.0.0.1:9464`. The service stops
//! after `--runs` rounds, or at SIGTERM or Ctrl-C (a run in flight commits what the
//! destination acknowledged, then the service exits).

#[path = "support/warehouse.rs"]
mod warehouse;

use std::error::Error;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use rse::connectors::state::SqliteStateStore;
use rse::connectors::status::{StatusOptions, StatusWriter};
use rse::connectors::{HttpDestination, HttpDestinationConfig, SqliteDestination, SqliteDestinationOptions};
use rse::sources::Model;
use rse::sources::sqlite::SqliteSource;
use rse::suppression::SourceSuppressions;
use rse::testing::FaultyDestination;
use rse::transform::{DropFields, PiiDetector, Select, SensitiveFields, Validate};
use rse::{
    Change, ChangeBatch, Destination, DestinationCapabilities, DestinationError, DestinationRunReport, Key, Memo, Mode,
    ProgressEvent, QuotaFeedback, QuotaWindow, ReadBack, RunEnd, RunInfo, Schema, SchemaDriftPolicy, SyncJob,
    SyncOptions, TransactionalState, Value, VerifyOptions, WriteOutcome,
};
use tokio_util::sync::CancellationToken;

/// Buckets of the `_seconds` histograms: run and write durations, per-record latency.
const SECONDS_BUCKETS: &[f64] =
    &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0];
/// Buckets of the `_records` histograms: changes per write call.
const RECORDS_BUCKETS: &[f64] =
    &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0];

struct Args {
    listen: SocketAddr,
    interval: Duration,
    runs: Option<u64>,
    faults: bool,
}

fn usage() -> String {
    "usage: metrics_service [--listen ADDR] [--interval SECONDS] [--runs N] [--faults]".to_owned()
}

fn parse_args() -> Result<Args, String> {
    let default_listen = std::env::var("RSE_METRICS_LISTEN").unwrap_or_else(|_| "127.0.0.1:9464".to_owned());
    let mut args = Args {
        listen: default_listen.parse().map_err(|e| format!("RSE_METRICS_LISTEN `{default_listen}`: {e}"))?,
        interval: Duration::from_secs(10),
        runs: None,
        faults: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value; {}", usage()));
        match arg.as_str() {
            "--listen" => {
                let v = value("--listen")?;
                args.listen = v.parse().map_err(|e| format!("--listen `{v}`: {e} (e.g. 127.0.0.1:9464)"))?;
            }
            "--interval" => {
                let v = value("--interval")?;
                let secs: f64 = v.parse().map_err(|e| format!("--interval `{v}`: {e} (seconds, e.g. 0.5)"))?;
                args.interval = Duration::try_from_secs_f64(secs).map_err(|e| format!("--interval `{v}`: {e}"))?;
            }
            "--runs" => {
                let v = value("--runs")?;
                args.runs = Some(v.parse().map_err(|e| format!("--runs `{v}`: {e}"))?);
            }
            "--faults" => args.faults = true,
            "-h" | "--help" => return Err(usage()),
            other => return Err(format!("unknown argument `{other}`; {}", usage())),
        }
    }
    Ok(args)
}

/// Wraps a destination and reports, with every answer, a daily allowance of API calls and
/// a ten-second window, as SaaS APIs do in their headers: the runner paces to them and the
/// quota gauges show them.
struct Metered<D> {
    inner: D,
    daily_limit: u64,
    window_limit: u64,
    calls: AtomicU64,
    window: std::sync::Mutex<(Instant, u64)>,
}

impl<D> Metered<D> {
    fn new(inner: D, daily_limit: u64, window_limit: u64) -> Self {
        Self {
            inner,
            daily_limit,
            window_limit,
            calls: AtomicU64::new(0),
            window: std::sync::Mutex::new((Instant::now(), 0)),
        }
    }

    fn quota(&self) -> QuotaFeedback {
        const WINDOW: Duration = Duration::from_secs(10);
        let calls = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let mut window = self.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if window.0.elapsed() >= WINDOW {
            *window = (Instant::now(), 0);
        }
        window.1 += 1;
        QuotaFeedback {
            window: Some(QuotaWindow::new(
                self.window_limit.saturating_sub(window.1),
                Some(self.window_limit),
                Some(WINDOW.saturating_sub(window.0.elapsed())),
            )),
            daily: Some(QuotaWindow::new(self.daily_limit.saturating_sub(calls), Some(self.daily_limit), None)),
        }
    }
}

#[rse::async_trait]
#[deny(clippy::missing_trait_methods)]
impl<D: Destination> Destination for Metered<D> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> DestinationCapabilities {
        self.inner.capabilities()
    }
    fn check_schema(&self, schema: &Schema) -> Result<(), DestinationError> {
        self.inner.check_schema(schema)
    }
    async fn check(&self) -> Result<(), DestinationError> {
        self.inner.check().await
    }
    async fn write(&self, batch: &ChangeBatch) -> Result<WriteOutcome, DestinationError> {
        let quota = self.quota();
        let mut outcome = self.inner.write(batch).await?;
        outcome.quota = Some(quota);
        Ok(outcome)
    }
    fn transactional_state(&self) -> Option<&dyn TransactionalState> {
        self.inner.transactional_state()
    }
    fn read_back(&self) -> Option<&dyn ReadBack> {
        self.inner.read_back()
    }
    async fn validate(&self, batch: &ChangeBatch) -> Result<Option<WriteOutcome>, DestinationError> {
        self.inner.validate(batch).await
    }
    fn intent_memo(&self, schema: &Schema, change: &Change) -> Option<Memo> {
        self.inner.intent_memo(schema, change)
    }
    async fn begin_run(&self, run: &RunInfo) -> Result<(), DestinationError> {
        self.inner.begin_run(run).await
    }
    async fn finish_run(&self, run: &RunInfo, end: &RunEnd) -> Result<DestinationRunReport, DestinationError> {
        self.inner.finish_run(run, end).await
    }
}

/// The syncs of the service and what steers their faults.
struct Syncs {
    /// `customers-to-crm` as configured, and with one column less (its model changed).
    crm: SyncJob,
    crm_drifted: SyncJob,
    /// A second runner of `customers-to-crm` (another holder), for the lease.
    crm_standby: SyncJob,
    scores: SyncJob,
    churn: SyncJob,
    /// Writes every record's outcome and every run's report to `status.db`.
    status: StatusWriter,
    status_db: std::path::PathBuf,
    /// The app's database, which `scores-to-app` writes to.
    app_db: std::path::PathBuf,
    /// Steers `customers-to-crm`'s destination faults (`--faults`).
    faults: Option<FaultyDestination<SqliteDestination>>,
}

/// The app's webhook receiver, in this process: with `faults`, one request in eleven is
/// answered 429 (retry after 0.2 s) and one in seventeen 503, as a busy receiver does.
async fn start_webhook(faults: bool) -> Result<SocketAddr, Box<dyn Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let requests = Arc::new(AtomicU64::new(0));
    let receive = move |_body: axum::body::Bytes| {
        let n = requests.fetch_add(1, Ordering::Relaxed) + 1;
        async move {
            let response: Response = if faults && n.is_multiple_of(11) {
                (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "0.2")]).into_response()
            } else if faults && n.is_multiple_of(17) {
                StatusCode::SERVICE_UNAVAILABLE.into_response()
            } else {
                StatusCode::NO_CONTENT.into_response()
            };
            response
        }
    };
    let app = axum::Router::new().route("/hooks/churn", axum::routing::post(receive));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("the webhook receiver stopped: {e}");
        }
    });
    Ok(addr)
}

async fn build_syncs(dir: &Path, warehouse: &Path, faults: bool) -> Result<Syncs, Box<dyn Error>> {
    let app = &dir.join("app.db");
    let state = Arc::new(SqliteStateStore::open(dir.join("state.db")).await?);
    let status = StatusWriter::sqlite(dir.join("status.db"), StatusOptions::new()).await?;
    let customers = || SqliteSource::new(warehouse, Model::table("customers"));
    let crm_table =
        SqliteDestination::open(app, SqliteDestinationOptions::new("crm_contacts").with_create_table(true)).await?;
    let (crm_destination, faults): (Arc<dyn Destination>, _) = if faults {
        let faulty = FaultyDestination::new(crm_table);
        (Arc::new(Metered::new(faulty.clone(), 50_000, 500)), Some(faulty))
    } else {
        (Arc::new(crm_table), None)
    };
    let crm_options = SyncOptions::default()
        .with_batch_rows(5)
        .with_max_attempts(2)
        .with_initial_backoff(Duration::from_millis(20))
        .with_max_backoff(Duration::from_millis(200))
        .with_circuit_breaker_threshold(2)
        .with_schema_drift(SchemaDriftPolicy::Proceed)
        // `updated_at` says when a customer changed: latency per record, and the freshest
        // change the CRM holds.
        .with_change_time_field(Some("updated_at".into()));
    let crm = |drifted: bool, holder: Option<&str>| {
        let mut builder = SyncJob::builder("customers-to-crm")
            .source(customers().with_key(["customer_ref"]))
            // A CRM refuses an address that is not one: keep such rows back, with a reason.
            .transform(Validate::new().pattern("email", r"^[^@\s]+@[^@\s]+\.[a-z]+$"))
            // The contact's own address is meant for the CRM; one in support's notes is not.
            .transform(SensitiveFields::new(Vec::<String>::new()).with_detectors([PiiDetector::Email]).allow(["email"]))
            // Customers who withdrew consent are removed from the CRM and never sent again.
            .suppressions(SourceSuppressions::keys(
                SqliteSource::new(warehouse, Model::table("consent_withdrawn")).with_key(["customer_ref"]),
            ));
        if drifted {
            builder = builder.transform(DropFields::new(["lifecycle_stage"]));
        }
        let options = match holder {
            Some(holder) => crm_options.clone().with_holder(holder.to_owned()),
            None => crm_options.clone(),
        };
        builder
            .destination(Arc::clone(&crm_destination))
            .state(Arc::clone(&state))
            .observer(status.clone())
            .mode(Mode::Mirror)
            .options(options)
    };
    let scores = SyncJob::builder("scores-to-app")
        .source(customers().with_key(["id"]))
        .transform(Select::new(["id", "churn_score", "updated_at"]))
        .destination(
            SqliteDestination::open(app, SqliteDestinationOptions::new("scores").with_create_table(true)).await?,
        )
        .state(Arc::clone(&state))
        .observer(status.clone())
        .mode(Mode::Upsert)
        .options(SyncOptions::default().with_change_time_field(Some("updated_at".into())));
    let webhook = start_webhook(faults.is_some()).await?;
    let churn = SyncJob::builder("churn-webhook")
        .source(customers().with_key(["id"]))
        .transform(Select::new(["id", "churn_score", "lifecycle_stage", "updated_at"]))
        .destination(HttpDestination::new(
            HttpDestinationConfig::new(format!("http://{webhook}/hooks/churn")).with_name("webhook"),
        )?)
        .state(Arc::clone(&state))
        .observer(status.clone())
        .mode(Mode::Upsert)
        .options(
            SyncOptions::default()
                .with_batch_rows(20)
                .with_initial_backoff(Duration::from_millis(20))
                .with_change_time_field(Some("updated_at".into())),
        );
    Ok(Syncs {
        crm: crm(false, None).build().await?,
        crm_drifted: crm(true, None).build().await?,
        crm_standby: crm(false, Some("standby-runner")).build().await?,
        scores: scores.build().await?,
        churn: churn.build().await?,
        status,
        status_db: dir.join("status.db"),
        app_db: app.clone(),
        faults,
    })
}

/// Plans `customers-to-crm`'s faults for round `round`, counting write calls from those
/// the destination has seen so far.
fn plan_faults(faults: &FaultyDestination<SqliteDestination>, round: u64) {
    faults.lift();
    // Two customers the CRM refuses for good: their rejection is retried every run.
    for customer in ["C00031", "C00042"] {
        faults.reject_key(Key::from_values([&Value::String(customer.into())]), "contact is archived in the CRM");
    }
    let next = faults.calls() + 1;
    if round.is_multiple_of(7) {
        // Every write of the round fails: attempts run out and the circuit opens.
        for n in next..next + 40 {
            faults.fail_write(n);
        }
        return;
    }
    if round.is_multiple_of(2) {
        faults.fail_write(next);
    }
    if round.is_multiple_of(3) {
        faults.rate_limit_write(next + 1, Some(Duration::from_millis(150)));
    }
    if round % 4 == 2 {
        faults.fail_write_after_apply(next + 2);
    }
    if round.is_multiple_of(5) {
        // Slow writes keep the lease held while the standby runner tries to take it.
        faults.latency(Duration::from_millis(100));
    }
}

/// Runs `primary`; once it has started, `standby` tries to run the same sync.
async fn run_against_standby(
    primary: &SyncJob,
    standby: &SyncJob,
    cancel: &CancellationToken,
) -> Result<(), Box<dyn Error>> {
    let mut events = primary.subscribe();
    let second = async {
        while let Ok(event) = events.recv().await {
            if matches!(event, ProgressEvent::Started { .. }) {
                return Some(standby.run().await);
            }
        }
        None
    };
    let (first, second) = tokio::join!(primary.run_with_cancel(cancel.clone()), second);
    report(first?);
    match second {
        Some(Err(e)) => println!("  a second runner of `{}` was turned away: {e}", standby.id()),
        Some(Ok(r)) => report(r),
        None => {}
    }
    Ok(())
}

fn report(report: rse::SyncReport) {
    println!("{}", report.to_string().lines().next().unwrap_or_default());
}

/// Holds the status database's write lock for longer than the status writer waits (10 s),
/// as a long transaction in the warehouse would: its writes in the meantime fail and their
/// rows are dropped, while delivery goes on.
fn lock_status_tables(path: &Path) {
    let path = path.to_owned();
    std::thread::spawn(move || {
        let locked = rusqlite::Connection::open(&path).and_then(|conn| {
            conn.execute_batch("BEGIN EXCLUSIVE")?;
            std::thread::sleep(Duration::from_secs(12));
            conn.execute_batch("COMMIT")
        });
        if let Err(e) = locked {
            eprintln!("could not lock {}: {e}", path.display());
        }
    });
}

async fn run_round(syncs: &Syncs, round: u64, cancel: &CancellationToken) -> Result<(), Box<dyn Error>> {
    let crm = if (round / 6) % 2 == 1 { &syncs.crm_drifted } else { &syncs.crm };
    match &syncs.faults {
        Some(faults) => {
            if round % 40 == 3 {
                lock_status_tables(&syncs.status_db);
            }
            plan_faults(faults, round);
            if round % 9 == 4 {
                // An operator pauses the sync for a round: its run returns at once.
                crm.pause("oncall@example.com", "checking the CRM's archived contacts").await?;
                report(crm.run_with_cancel(cancel.clone()).await?);
                crm.resume().await?;
            } else if round.is_multiple_of(5) {
                run_against_standby(crm, &syncs.crm_standby, cancel).await?;
            } else {
                report(crm.run_with_cancel(cancel.clone()).await?);
            }
        }
        None => report(crm.run_with_cancel(cancel.clone()).await?),
    }
    report(syncs.scores.run_with_cancel(cancel.clone()).await?);
    if syncs.faults.is_some() && round % 8 == 2 {
        // Someone edits the app's table by hand: one row gone, one score changed.
        let app = rusqlite::Connection::open(&syncs.app_db)?;
        app.execute_batch(
            "DELETE FROM scores WHERE id = (SELECT min(id) FROM scores);
             UPDATE scores SET churn_score = churn_score + 1 WHERE id = (SELECT max(id) FROM scores);",
        )?;
    }
    // Reconciliation after each run: read the app's table back and compare it with what the
    // sync delivered; send again exactly what differs.
    let found = syncs.scores.verify(&VerifyOptions::default()).await?;
    if !found.is_clean() {
        println!(
            "  verify `{}`: {} of {} records differ ({} missing, {} stale, {} extra); repairing",
            found.sync_id,
            found.mismatched(),
            found.checked,
            found.missing,
            found.stale,
            found.extra
        );
        report(syncs.scores.repair(&found).await?);
    }
    report(syncs.churn.run_with_cancel(cancel.clone()).await?);
    Ok(())
}

/// Cancels `cancel` at SIGTERM or Ctrl-C.
async fn stop_on_signal(cancel: CancellationToken) {
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    cancel.cancel();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };

    PrometheusBuilder::new()
        .with_http_listener(args.listen)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)?
        .set_buckets_for_metric(Matcher::Suffix("_records".into()), RECORDS_BUCKETS)?
        .install()
        .map_err(|e| format!("serving metrics on {}: {e}", args.listen))?;
    rse::metrics::describe();
    println!("metrics on http://{}/metrics", args.listen);

    let dir = warehouse::ScratchDir::new("rse-metrics-service")?;
    let warehouse_db = dir.path().join("warehouse.db");
    warehouse::create(&warehouse_db)?;
    let syncs = build_syncs(dir.path(), &warehouse_db, args.faults).await?;

    let cancel = CancellationToken::new();
    tokio::spawn(stop_on_signal(cancel.clone()));
    let mut round = 0;
    while !cancel.is_cancelled() && args.runs.is_none_or(|runs| round < runs) {
        round += 1;
        if round > 1 {
            warehouse::advance(&warehouse_db, round)?;
        }
        if args.faults && round == 3 {
            // A customer the CRM holds withdraws consent: the next run deletes them there.
            warehouse::withdraw_consent(&warehouse_db, "C00077")?;
        }
        run_round(&syncs, round, &cancel).await?;
        if args.runs.is_some_and(|runs| round >= runs) {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(args.interval) => {}
            _ = cancel.cancelled() => {}
        }
    }
    // Everything the status tables wait for is written before the process exits.
    if let Err(e) = syncs.status.shutdown().await {
        eprintln!("the status write-back could not write everything: {e}");
    }
    println!("stopped after {round} rounds");
    Ok(())
}
