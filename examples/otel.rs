//! rse's traces in OpenTelemetry: a host that exports every run's spans (the run, its read,
//! diff, batch writes and state commits) by OTLP/HTTP to a collector, syncs a SQLite
//! "warehouse" into an app's SQLite database twice, and flushes the last spans before it exits.
//!
//! Start a collector that accepts OTLP/HTTP (an OpenTelemetry Collector, Jaeger, Grafana
//! Tempo...) and run
//!
//! ```sh
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 cargo run --example otel
//! ```
//!
//! With no collector listening, the syncs run all the same and the spans are dropped: the
//! example says so on stderr when it shuts the exporter down.
//!
//! The recipe itself is `examples/support/otel.rs`, which `tests/otel.rs` runs against an
//! in-process OTLP receiver.

use std::error::Error;
use std::path::{Path, PathBuf};

use rse::connectors::state::SqliteStateStore;
use rse::connectors::{SqliteDestination, SqliteDestinationOptions};
use rse::sources::Model;
use rse::sources::sqlite::SqliteSource;
use rse::{Mode, SyncJob, SyncOptions};
use rusqlite::Connection;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

#[path = "support/otel.rs"]
mod otel;

/// A fresh directory for the example's three databases.
fn fresh_dir() -> Result<PathBuf, Box<dyn Error>> {
    let dir =
        std::env::var_os("RSE_OTEL_DIR").map_or_else(|| std::env::temp_dir().join("rse-otel-example"), PathBuf::from);
    for db in ["warehouse.db", "app.db", "state.db"] {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            match std::fs::remove_file(dir.join(format!("{db}{suffix}"))) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn create_warehouse(path: &Path) -> rusqlite::Result<()> {
    let conn = Connection::open(path)?;
    conn.execute_batch(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT NOT NULL, churn_score REAL, stage TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 250)
         INSERT INTO customers SELECT i, 'customer' || i || '@example.com', (i * 37 % 100) / 100.0,
             CASE i % 3 WHEN 0 THEN 'new' WHEN 1 THEN 'active' ELSE 'at_risk' END FROM n;",
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let url = otel::traces_url_from_env();
    let traces = otel::OtlpTraces::new(&url, "rse-otel-example")?;
    // Logs to stderr as usual (WARN, drivers capped), and the spans to the collector.
    let logs: Targets = format!("warn,{}", rse::connectors::log_filter::DRIVER_DIRECTIVES).parse()?;
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(logs))
        .with(traces.layer())
        .try_init()?;

    let dir = fresh_dir()?;
    let warehouse = dir.join("warehouse.db");
    create_warehouse(&warehouse)?;
    let sync = SyncJob::builder("customers-to-app")
        .source(SqliteSource::new(&warehouse, Model::table("customers")).with_key(["id"]))
        .destination(
            SqliteDestination::open(
                dir.join("app.db"),
                SqliteDestinationOptions::new("customers").with_create_table(true),
            )
            .await?,
        )
        .state(SqliteStateStore::open(dir.join("state.db")).await?)
        .mode(Mode::Mirror)
        .options(SyncOptions::default().with_batch_rows(100))
        .build()
        .await?;

    let first = sync.run().await?;
    println!("{first}\n");
    Connection::open(&warehouse)?.execute_batch(
        "UPDATE customers SET churn_score = 0.99 WHERE id % 50 = 0; DELETE FROM customers WHERE id = 7;",
    )?;
    let second = sync.run().await?;
    println!("{second}\n");

    // The last run's spans are still queued: export them before the process ends. A failed
    // export is worth a line on stderr, not a failed job: the syncs did their work.
    match traces.shutdown().await {
        Ok(()) => println!("Spans exported to {url}."),
        Err(error) => eprintln!("Exporting spans: {error}"),
    }
    Ok(())
}
