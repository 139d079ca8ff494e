//! The drivers' own logs: `tokio_postgres` logs every statement's parameters at DEBUG, so a
//! host logging everything at TRACE sees row values; with `log_filter::DRIVER_DIRECTIVES`
//! applied it sees none. One test in its own binary: the `log` logger is process-wide.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Mutex;
use std::time::Duration;

use rse_connectors::log_filter::{DRIVER_DIRECTIVES, DRIVER_TARGETS, is_driver_target};
use rse_connectors::state::PostgresStateStore;
use rse_connectors::{PostgresDestination, PostgresDestinationOptions};
use rse_core::memory::MemorySource;
use rse_core::testing::{conformance_schema, service_url, unavailable, unique_id};
use rse_core::*;
use tracing_subscriber::filter::Targets;

/// Every record the `log` facade passes, formatted as a logger would write it, under the
/// filter in force (`None`: everything down to TRACE).
struct Capture {
    lines: Mutex<Vec<String>>,
    filter: Mutex<Option<Targets>>,
}

static CAPTURE: Capture = Capture { lines: Mutex::new(Vec::new()), filter: Mutex::new(None) };

fn tracing_level(level: log::Level) -> tracing::Level {
    match level {
        log::Level::Error => tracing::Level::ERROR,
        log::Level::Warn => tracing::Level::WARN,
        log::Level::Info => tracing::Level::INFO,
        log::Level::Debug => tracing::Level::DEBUG,
        log::Level::Trace => tracing::Level::TRACE,
    }
}

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        match &*self.filter.lock().unwrap() {
            Some(targets) => targets.would_enable(metadata.target(), &tracing_level(metadata.level())),
            None => true,
        }
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = format!("{} {}: {}", record.level(), record.target(), record.args());
            self.lines.lock().unwrap().push(line);
        }
    }

    fn flush(&self) {}
}

fn url() -> String {
    service_url("RSE_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
}

/// Syncs three rows whose `name` is `secret` into a fresh table, with the state in
/// PostgreSQL too, and returns the log lines captured meanwhile.
async fn write_and_capture(schema: &str, secret: &str) -> Vec<String> {
    CAPTURE.lines.lock().unwrap().clear();
    let rows = (1..=3)
        .map(|i| Record::new(vec![Value::Int(i), Value::from(secret), Value::Float(0.5), Value::Bool(true)]))
        .collect();
    let options = PostgresDestinationOptions::new(unique_id("logged")).with_schema(schema).with_create_table(true);
    let sync = SyncJob::builder(unique_id("logs"))
        .source(MemorySource::new(conformance_schema(), rows))
        .destination(PostgresDestination::new(&url(), options).unwrap())
        .state(PostgresStateStore::connect(&url(), schema).await.unwrap())
        .options(SyncOptions::default().with_lease_ttl(Duration::from_secs(30)))
        .build()
        .await
        .unwrap();
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.applied.insert, 3, "{report}");
    std::mem::take(&mut *CAPTURE.lines.lock().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_driver_filter_no_row_value_reaches_the_log_even_at_trace() {
    let (admin, connection) = match tokio_postgres::connect(&url(), tokio_postgres::NoTls).await {
        Ok(c) => c,
        Err(e) => return unavailable("PostgreSQL", &url(), e),
    };
    tokio::spawn(connection);
    log::set_logger(&CAPTURE).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    let schema = unique_id("rse_driver_logs");
    admin.batch_execute(&format!("CREATE SCHEMA \"{schema}\"")).await.unwrap();

    // Without the filter the driver logs the row's values: what the filter is for.
    let unfiltered = write_and_capture(&schema, "zq-unfiltered-secret-4711").await;
    assert!(
        unfiltered.iter().any(|l| l.starts_with("DEBUG tokio_postgres") && l.contains("zq-unfiltered-secret-4711")),
        "tokio_postgres no longer logs parameters at DEBUG; revisit log_filter's list:\n{}",
        unfiltered.join("\n")
    );

    // A host logging everything at TRACE, with the driver cap after its own directive.
    let targets: Targets = format!("trace,{DRIVER_DIRECTIVES}").parse().unwrap();
    *CAPTURE.filter.lock().unwrap() = Some(targets);
    let filtered = write_and_capture(&schema, "zq-filtered-secret-4712").await;
    let leaks: Vec<&String> = filtered.iter().filter(|l| l.contains("zq-filtered-secret-4712")).collect();
    assert!(leaks.is_empty(), "row values in the log under the driver filter:\n{leaks:#?}");
    assert!(
        filtered.iter().all(|l| !l.starts_with("DEBUG tokio_postgres") && !l.starts_with("TRACE tokio_postgres")),
        "{filtered:#?}"
    );

    // The constants agree with each other.
    for driver in DRIVER_TARGETS {
        assert!(DRIVER_DIRECTIVES.split(',').any(|d| d == format!("{driver}=info")), "{driver} is not capped");
        assert!(is_driver_target(driver) && is_driver_target(&format!("{driver}::query")));
    }
    assert!(!is_driver_target("tokio_postgresql") && !is_driver_target("rse_core::runner"));
    admin.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE")).await.unwrap();
}
