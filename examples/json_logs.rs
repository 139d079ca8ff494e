//! JSON logs for a log pipeline (ELK, Datadog, Loki): one JSON object per line, each carrying
//! the fields of the spans it was logged in, so every line of a run can be found by its run
//! id and every line of a batch write by its batch number.
//!
//! rse logs through `tracing` inside these spans:
//!
//! | span | fields |
//! |---|---|
//! | `sync_run` | `sync`, `mode`, `run` (the run id, once the lease is taken) |
//! | `read` | `sync`, `run`, `records` (read, at the end) |
//! | `diff` | `records` (of the source batch), or `finish` and `deletes` |
//! | `batch_write` | `sync`, `run`, `batch` (its number in the run), `changes`, `outcome` (once written) |
//! | `state_commit` | `kind` (`intents`, `outcomes`, `rejections`, `final`), `entries` |
//!
//! No span or line carries a key or a value of a record. With [`json_layer`] below each line
//! looks like
//!
//! ```text
//! {"timestamp":"…","level":"WARN","message":"Retrying batch.","attempt":1,"delay_ms":61,
//!  "error":"transient destination failure: …","target":"rse_core::runner::deliver",
//!  "span":{"batch":2,"changes":2,"name":"batch_write","run":1,"sync":"scores"},
//!  "spans":[{"mode":"upsert","name":"sync_run","run":1,"sync":"scores"},{"batch":2,…}]}
//! ```
//!
//! `span` is the innermost span, `spans` every span from the run down: a pipeline's parser
//! lifts `spans[0].run` (or `span.run`) and `span.batch` into indexed attributes.
//!
//! This example syncs a small model into the in-memory destination, whose second write fails
//! once, so that the log shows a retry inside its batch. Run with
//! `cargo run --example json_logs` (`RUST_LOG=debug` for a line per committed batch too).
//! Needs `tracing-subscriber` with its `json` feature.

use std::error::Error;

use rse::memory::{MemoryDestination, MemorySource, MemoryStateStore};
use rse::testing::FaultyDestination;
use rse::{DataType, Field, Record, Schema, SyncJob, SyncOptions, Value};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

/// A `tracing-subscriber` layer writing one JSON object per line to `writer`: the event's
/// fields at the top level (`message`, `error`, …), the innermost span's fields under `span`,
/// and every enclosing span's under `spans`.
pub fn json_layer<S, W>(writer: W) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(true)
        .with_writer(writer)
}

/// The host's level (`RUST_LOG`, default `info`), with the drivers' value-bearing targets
/// capped at INFO whatever it says (see `rse::connectors::log_filter`).
pub fn filter(wanted: &str) -> Result<Targets, Box<dyn Error>> {
    Ok(format!("{wanted},{}", rse::connectors::log_filter::DRIVER_DIRECTIVES).parse()?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let wanted = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::registry().with(json_layer(std::io::stdout).with_filter(filter(&wanted)?)).try_init()?;

    let schema = Schema::new(
        vec![
            Field::required("id", DataType::Int),
            Field::new("email", DataType::String),
            Field::new("score", DataType::Float),
        ],
        &["id"],
    )?;
    let rows = (1..=6)
        .map(|i| {
            Record::new(vec![Value::Int(i), Value::from(format!("user{i}@example.com")), Value::Float(0.1 * i as f64)])
        })
        .collect();
    let destination = FaultyDestination::new(MemoryDestination::new());
    destination.fail_write(2);
    let sync = SyncJob::builder("scores")
        .source(MemorySource::new(schema.into_arc(), rows))
        .destination(destination)
        .state(MemoryStateStore::new())
        .options(SyncOptions::default().with_batch_rows(2).with_max_concurrency(1))
        .build()
        .await?;
    let report = sync.run().await?;
    eprintln!("{report}");
    Ok(())
}
