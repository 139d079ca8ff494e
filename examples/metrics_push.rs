//! A batch job (a Kubernetes CronJob's case) that runs a sync once and, at the end, pushes
//! its metrics to a Prometheus Pushgateway: a process that lives for one run is gone
//! before Prometheus would scrape it.
//!
//! The metrics are recorded by `metrics-exporter-prometheus` without a listener, rendered
//! in Prometheus' text format and PUT to `<gateway>/metrics/job/<job>/sync/<sync id>`, so
//! each sync keeps its own group and a push replaces that group's previous push. The job
//! exits non-zero when the run does not complete or the push fails.
//!
//! ```text
//! cargo run --example metrics_push -- [--gateway http://127.0.0.1:9091] [--job rse-batch]
//! ```
//!
//! `--gateway` defaults to `$RSE_PUSHGATEWAY_URL`, else `http://127.0.0.1:9091`. Scrape the
//! Pushgateway with `honor_labels: true` so the pushed `job` and `sync` labels are kept.

#[path = "support/warehouse.rs"]
mod warehouse;

use std::error::Error;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use rse::connectors::state::SqliteStateStore;
use rse::connectors::{SqliteDestination, SqliteDestinationOptions};
use rse::sources::Model;
use rse::sources::sqlite::SqliteSource;
use rse::transform::{PiiDetector, SensitiveFields, Validate};
use rse::{Mode, SyncJob};

/// Buckets of the `_seconds` histograms: run and write durations, per-record latency.
const SECONDS_BUCKETS: &[f64] =
    &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0];
/// Buckets of the `_records` histograms: changes per write call.
const RECORDS_BUCKETS: &[f64] =
    &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0];

const SYNC_ID: &str = "customers-to-crm";

struct Args {
    gateway: String,
    job: String,
}

fn parse_args() -> Result<Args, String> {
    let usage = "usage: metrics_push [--gateway URL] [--job NAME]";
    let mut args = Args {
        gateway: std::env::var("RSE_PUSHGATEWAY_URL").unwrap_or_else(|_| "http://127.0.0.1:9091".to_owned()),
        job: "rse-batch".to_owned(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value; {usage}"));
        match arg.as_str() {
            "--gateway" => args.gateway = value("--gateway")?,
            "--job" => args.job = value("--job")?,
            "-h" | "--help" => return Err(usage.to_owned()),
            other => return Err(format!("unknown argument `{other}`; {usage}")),
        }
    }
    Ok(args)
}

/// A path segment of the Pushgateway's URL: anything but unreserved characters
/// percent-encoded (a job or sync name may hold `/`).
fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// PUTs `body` as the group `job`/`sync`, replacing what an earlier push left there.
async fn push(gateway: &str, job: &str, sync: &str, body: String) -> Result<(), Box<dyn Error>> {
    let url = format!("{}/metrics/job/{}/sync/{}", gateway.trim_end_matches('/'), segment(job), segment(sync));
    let answer = reqwest::Client::new()
        .put(&url)
        .header(reqwest::header::CONTENT_TYPE, "text/plain; version=0.0.4")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("pushing metrics to {url}: {e}"))?;
    let status = answer.status();
    if !status.is_success() {
        let text = answer.text().await.unwrap_or_default();
        return Err(format!("the Pushgateway at {url} answered {status}: {}", text.trim()).into());
    }
    println!("pushed metrics to {url}");
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let metrics = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)?
        .set_buckets_for_metric(Matcher::Suffix("_records".into()), RECORDS_BUCKETS)?
        .install_recorder()?;
    rse::metrics::describe();

    let dir = warehouse::ScratchDir::new("rse-metrics-push")?;
    let (warehouse_db, app_db, state_db) =
        (dir.path().join("warehouse.db"), dir.path().join("app.db"), dir.path().join("state.db"));
    warehouse::create(&warehouse_db)?;
    let sync = SyncJob::builder(SYNC_ID)
        .source(SqliteSource::new(&warehouse_db, Model::table("customers")).with_key(["customer_ref"]))
        .transform(Validate::new().pattern("email", r"^[^@\s]+@[^@\s]+\.[a-z]+$"))
        .transform(SensitiveFields::new(Vec::<String>::new()).with_detectors([PiiDetector::Email]).allow(["email"]))
        .destination(
            SqliteDestination::open(&app_db, SqliteDestinationOptions::new("crm_contacts").with_create_table(true))
                .await?,
        )
        .state(SqliteStateStore::open(&state_db).await?)
        .mode(Mode::Mirror)
        .build()
        .await?;
    let run = sync.run().await;

    // Push whatever happened, a failed run included: that is what an alert needs to see.
    let pushed = push(&args.gateway, &args.job, SYNC_ID, metrics.render()).await;
    let report = run?;
    println!("{}", report.to_string().lines().next().unwrap_or_default());
    pushed?;
    if !report.status.is_complete() {
        return Err(format!("the run did not complete: {}", report.status).into());
    }
    Ok(())
}
