//! The json_logs example's subscriber over a faulted run: every line is one JSON object,
//! every line logged within the run carries its id, every line within a batch write carries
//! the batch's number, and no line carries a value of the source.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../examples/json_logs.rs"]
#[allow(dead_code)]
mod example;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rse::memory::{MemoryDestination, MemorySource, MemoryStateStore};
use rse::testing::FaultyDestination;
use rse::{DataType, Field, Key, MaxDeletes, Mode, Record, Schema, SyncJob, SyncOptions, Value};
use serde_json::Value as Json;
use tracing_subscriber::Layer;
use tracing_subscriber::prelude::*;

/// Distinctive values of the source: none may show in a line.
const VALUES: [&str; 4] = ["xq-json-4471@example.org", "Zebulon Quartermaine", "0.61803398", "77177"];

/// The lines written, shared with the subscriber's writer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn row(id: i64) -> Record {
    Record::new(vec![Value::Int(id), Value::from(VALUES[0]), Value::from(VALUES[1]), Value::Float(0.618_033_98)])
}

/// The span of `line` named `name`, from its list of enclosing spans.
fn span<'a>(line: &'a Json, name: &str) -> Option<&'a Json> {
    line["spans"].as_array()?.iter().find(|s| s["name"] == name)
}

#[tokio::test]
async fn every_line_of_a_run_carries_its_id_and_every_line_of_a_batch_its_number() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::registry()
        .with(example::json_layer(move || writer.clone()).with_filter(example::filter("debug").unwrap()));
    let _guard = tracing::subscriber::set_default(subscriber);

    let schema = Schema::new(
        vec![
            Field::required("id", DataType::Int),
            Field::new("email", DataType::String),
            Field::new("name", DataType::String),
            Field::new("score", DataType::Float),
        ],
        &["id"],
    )
    .unwrap()
    .into_arc();
    let source = MemorySource::new(schema, (77_170..77_180).map(row).collect());
    let destination = FaultyDestination::new(MemoryDestination::new());
    destination
        .reject_key(Key::from_values(&[Value::Int(77_177)]), "refused by the destination's policy")
        .fail_write(2)
        .rate_limit_write(3, Some(Duration::from_millis(10)));
    let sync = SyncJob::builder("json-logs")
        .source(source.clone())
        .destination(destination)
        .state(MemoryStateStore::new())
        .mode(Mode::Mirror)
        .options(
            SyncOptions::default()
                .with_batch_rows(3)
                .with_max_concurrency(1)
                .with_initial_backoff(Duration::from_millis(1))
                .with_max_deletes(Some(MaxDeletes::Count(0))),
        )
        .build()
        .await
        .unwrap();
    let first = sync.run().await.unwrap();
    assert_eq!(first.counts.rejected.total(), 1, "{first:?}");
    assert!(first.retries >= 2, "{first:?}");
    // Every row gone: the delete guard withholds the deletes and says so.
    source.set_rows(Vec::new());
    let second = sync.run().await.unwrap();
    assert_eq!(second.counts.withheld, 9, "{second:?}");

    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let (mut in_runs, mut in_batches) = (0, 0);
    for raw in text.lines() {
        let line: Json = serde_json::from_str(raw).unwrap_or_else(|e| panic!("not one JSON object ({e}): {raw}"));
        for value in VALUES {
            assert!(!raw.contains(value), "`{value}` appears in a line: {raw}");
        }
        let Some(run) = span(&line, "sync_run") else { continue };
        in_runs += 1;
        let id = run["run"].as_u64().unwrap_or_else(|| panic!("a line within a run without its id: {raw}"));
        assert!([first.run_id, second.run_id].contains(&id), "{raw}");
        let Some(batch) = span(&line, "batch_write") else { continue };
        in_batches += 1;
        assert!(batch["batch"].as_u64().is_some_and(|b| b >= 1), "a line within a batch without its number: {raw}");
        assert_eq!(batch["run"].as_u64(), Some(id), "{raw}");
        assert_eq!(line["span"]["batch"], batch["batch"], "the innermost span is the batch's: {raw}");
    }
    assert!(text.contains("Retrying batch.") && text.contains("Deletes withheld by the delete guard."), "{text}");
    assert!(in_runs >= 6 && in_batches >= 3, "{in_runs} lines within runs, {in_batches} within batches:\n{text}");
}
