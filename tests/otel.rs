//! The OpenTelemetry recipe, received: an in-process OTLP/HTTP receiver gets the spans of a
//! faulted run as one tree under the run's span, with the ids, counts and the destination's
//! answers as attributes and no row value anywhere; and a collector that is not there costs
//! the run nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use rse::memory::{MemoryDestination, MemorySource, MemoryStateStore};
use rse::testing::FaultyDestination;
use rse::*;
use tracing_subscriber::prelude::*;

// The example reads its collector from the environment; the test names its own receiver.
#[allow(dead_code)]
#[path = "../examples/support/otel.rs"]
mod otel;

/// The row values of the faulted run, and its keys: none may appear in a span.
const TEXTS: [&str; 3] = ["zq-otel-7@example.com", "Quetzalcoatl Otelsmith", "4242424242"];
const SCORE: f64 = 0.876_543_2;
const KEYS: std::ops::Range<i64> = 918_273_640..918_273_650;
/// In the third batch: the second one never reaches the destination.
const REFUSED: i64 = 918_273_648;

/// The spans the run's tree holds below the run itself, each at least once.
const BELOW_RUN: [&str; 4] = ["read", "diff", "batch_write", "state_commit"];

/// What the receiver was sent, request by request.
type Received = Arc<Mutex<Vec<ExportTraceServiceRequest>>>;

/// An OTLP/HTTP receiver on a free loopback port: POST /v1/traces with a protobuf body.
async fn receiver() -> (String, Received) {
    let received = Received::default();
    let app = Router::new().route("/v1/traces", post(receive)).with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, received)
}

async fn receive(State(received): State<Received>, headers: HeaderMap, body: Bytes) -> Response {
    if headers.get(header::CONTENT_TYPE).is_none_or(|t| t != "application/x-protobuf") {
        return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
    }
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    received.lock().unwrap().push(request);
    let answer = ExportTraceServiceResponse::default().encode_to_vec();
    ([(header::CONTENT_TYPE, "application/x-protobuf")], answer).into_response()
}

fn schema() -> std::sync::Arc<Schema> {
    Schema::new(
        vec![
            Field::required("id", DataType::Int),
            Field::new("email", DataType::String),
            Field::new("name", DataType::String),
            Field::new("phone", DataType::String),
            Field::new("score", DataType::Float),
        ],
        &["id"],
    )
    .unwrap()
    .into_arc()
}

fn rows() -> Vec<Record> {
    KEYS.map(|id| {
        Record::new(vec![Value::Int(id), TEXTS[0].into(), TEXTS[1].into(), TEXTS[2].into(), Value::Float(SCORE)])
    })
    .collect()
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn int(span: &Span, key: &str) -> Option<i64> {
    match attribute(&span.attributes, key)? {
        any_value::Value::IntValue(n) => Some(*n),
        any_value::Value::StringValue(s) => s.parse().ok(),
        _ => None,
    }
}

fn text<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    match attribute(&span.attributes, key)? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

/// Every value inside `value`, flattened (arrays and key-value lists opened).
fn leaves<'a>(value: &'a AnyValue, out: &mut Vec<&'a any_value::Value>) {
    match value.value.as_ref() {
        Some(any_value::Value::ArrayValue(a)) => a.values.iter().for_each(|v| leaves(v, out)),
        Some(any_value::Value::KvlistValue(l)) => {
            l.values.iter().filter_map(|kv| kv.value.as_ref()).for_each(|v| leaves(v, out))
        }
        Some(v) => out.push(v),
        None => {}
    }
}

/// Fails if any string of `what` (attribute keys and values, names) holds a row's value or
/// key, or a number equals one.
fn assert_no_row_value(what: &str, names: &[&str], attributes: &[KeyValue]) {
    let keys: Vec<String> = KEYS.map(|k| k.to_string()).collect();
    let forbidden: Vec<&str> =
        TEXTS.iter().copied().chain(keys.iter().map(String::as_str)).chain(["0.8765432"]).collect();
    let mut strings: Vec<&str> = names.to_vec();
    let mut values = Vec::new();
    for kv in attributes {
        strings.push(&kv.key);
        if let Some(v) = &kv.value {
            leaves(v, &mut values);
        }
    }
    for value in values {
        match value {
            any_value::Value::StringValue(s) => strings.push(s),
            any_value::Value::IntValue(n) => assert!(!KEYS.contains(n), "{what}: an attribute is the key {n}"),
            any_value::Value::DoubleValue(x) => assert!(*x != SCORE, "{what}: an attribute is the score {x}"),
            any_value::Value::BytesValue(b) => {
                let b = String::from_utf8_lossy(b);
                assert!(forbidden.iter().all(|f| !b.contains(f)), "{what}: bytes attribute `{b}` holds a row value");
            }
            _ => {}
        }
    }
    for s in strings {
        for f in &forbidden {
            assert!(!s.contains(f), "{what}: `{s}` holds the row value or key `{f}`");
        }
    }
}

#[tokio::test]
async fn a_faulted_runs_spans_reach_the_collector_as_one_tree_without_row_values() {
    let (base, received) = receiver().await;
    let traces = otel::OtlpTraces::new(&otel::traces_url(&base), "rse-otel-test").unwrap();
    let guard = tracing_subscriber::registry().with(traces.layer()).set_default();

    // One write at a time, two attempts each: write 1 fails and its retry lands; the next
    // batch fails twice and is left for the next run; a later batch has a refused record.
    let faulty = FaultyDestination::new(MemoryDestination::new());
    faulty
        .reject_key(Key::from_values(&[Value::Int(REFUSED)]), "refused by policy")
        .fail_write(1)
        .fail_write(3)
        .fail_write(4);
    let sync = SyncJob::builder("otel-faulted")
        .source(MemorySource::new(schema(), rows()))
        .destination(faulty.clone())
        .state(MemoryStateStore::new())
        .mode(Mode::Mirror)
        .options(
            SyncOptions::default()
                .with_batch_rows(3)
                .with_max_concurrency(1)
                .with_max_attempts(2)
                .with_initial_backoff(Duration::from_millis(5)),
        )
        .build()
        .await
        .unwrap();
    let report = sync.run().await.unwrap();
    drop(guard);
    traces.shutdown().await.unwrap();

    let counts = &report.counts;
    assert_eq!(
        (counts.read, counts.applied.total(), counts.rejected.total(), counts.undelivered),
        (10, 6, 1, 3),
        "{report:?}"
    );

    let requests = received.lock().unwrap().clone();
    assert!(!requests.is_empty(), "the receiver got no export");
    for request in &requests {
        for resource in &request.resource_spans {
            let attributes = resource.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or_default();
            assert_no_row_value("the resource", &[], attributes);
        }
    }
    let spans: Vec<Span> =
        requests.into_iter().flat_map(|r| r.resource_spans).flat_map(|r| r.scope_spans).flat_map(|s| s.spans).collect();
    let names = || spans.iter().map(|s| s.name.as_str()).collect::<Vec<_>>();

    // The run: one root span, with the sync's id, the run's id, its mode and its totals.
    let runs: Vec<&Span> = spans.iter().filter(|s| s.name == "sync_run").collect();
    assert_eq!(runs.len(), 1, "one run span: {:?}", names());
    let run = runs[0];
    assert!(run.parent_span_id.is_empty(), "the run span is a root");
    assert_eq!(text(run, "sync"), Some("otel-faulted"));
    assert_eq!(int(run, "run"), Some(report.run_id as i64));
    assert_eq!(text(run, "mode"), Some("mirror"));
    assert_eq!(int(run, "read"), Some(10));
    assert_eq!(int(run, "applied"), Some(6));
    assert_eq!(int(run, "rejected"), Some(1));
    assert_eq!(int(run, "unchanged"), Some(0));
    assert_eq!(text(run, "status"), Some(report.status.label()));

    // The tree: every span received is the run or below it, in the run's trace.
    let by_id: HashMap<&[u8], &Span> = spans.iter().map(|s| (s.span_id.as_slice(), s)).collect();
    let parent = |span: &Span| by_id.get(span.parent_span_id.as_slice()).map(|p| p.name.as_str());
    for span in &spans {
        assert_eq!(span.trace_id, run.trace_id, "`{}` is in the run's trace", span.name);
        let mut at = span;
        let mut path = vec![at.name.as_str()];
        while at.span_id != run.span_id {
            at = by_id
                .get(at.parent_span_id.as_slice())
                .unwrap_or_else(|| panic!("{path:?} does not lead to the run span"));
            path.push(&at.name);
        }
    }
    for name in BELOW_RUN {
        assert!(spans.iter().any(|s| s.name == name), "no `{name}` span: {:?}", names());
    }
    for span in &spans {
        let expected: &[&str] = match span.name.as_str() {
            "sync_run" => continue,
            "read" | "batch_write" => &["sync_run"],
            "diff" => &["read"],
            // A batch's outcomes under its write; refused records under the read; the last
            // one under the run.
            "state_commit" => &["batch_write", "read", "sync_run"],
            other => panic!("an unexpected span `{other}` under `{:?}`", parent(span)),
        };
        assert!(expected.contains(&parent(span).unwrap_or_default()), "`{}` under {:?}", span.name, parent(span));
    }
    let read = spans.iter().find(|s| s.name == "read").unwrap();
    assert_eq!(
        (text(read, "sync"), int(read, "run"), int(read, "records")),
        (Some("otel-faulted"), Some(report.run_id as i64), Some(10))
    );
    for commit in spans.iter().filter(|s| s.name == "state_commit") {
        assert!(text(commit, "kind").is_some() && int(commit, "entries").is_some(), "{commit:?}");
        assert!(int(commit, "entries") > Some(0), "a commit span for a commit that wrote nothing: {commit:?}");
    }
    let outcomes_below =
        |batch: &Span| spans.iter().filter(|s| s.name == "state_commit" && s.parent_span_id == batch.span_id).count();

    // Each batch write: its sync, run, sequence number and size, and how the destination's
    // answers classified it.
    let batches: Vec<&Span> = spans.iter().filter(|s| s.name == "batch_write").collect();
    assert_eq!(batches.len(), 4, "10 changes in batches of 3: {batches:?}");
    let mut outcomes = Vec::new();
    for batch in &batches {
        assert_eq!(text(batch, "sync"), Some("otel-faulted"));
        assert_eq!(int(batch, "run"), Some(report.run_id as i64));
        assert!(
            int(batch, "batch").is_some() && int(batch, "changes").is_some_and(|n| (1..=3).contains(&n)),
            "{batch:?}"
        );
        let outcome = text(batch, "outcome").unwrap_or_else(|| panic!("a batch without its outcome: {batch:?}"));
        let retried = batch.events.iter().any(|e| e.name == "Retrying batch.");
        outcomes.push((outcome, retried));
        // A batch that reached the destination commits its outcomes below its span.
        if outcome != "transient" {
            assert!(outcomes_below(batch) >= 1, "no state commit below {batch:?}");
        }
    }
    outcomes.sort();
    assert_eq!(outcomes, [("ok", false), ("ok", true), ("partial", false), ("transient", true)], "{batches:?}");

    // No row value and no key anywhere: names, attributes, events, statuses.
    for span in &spans {
        let what = format!("span `{}`", span.name);
        let status = span.status.as_ref().map_or("", |s| s.message.as_str());
        assert_no_row_value(&what, &[&span.name, status], &span.attributes);
        for event in &span.events {
            assert_no_row_value(&format!("an event of {what}"), &[&event.name], &event.attributes);
        }
    }
}

/// The host's log lines, as a test's `fmt` layer writes them.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_collector_that_is_not_there_costs_the_run_nothing() {
    // A port that was free a moment ago: connecting to it is refused.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let traces = otel::OtlpTraces::new(&otel::traces_url(&base), "rse-otel-test").unwrap();
    let logs = Logs::default();
    let writer = logs.clone();
    let _guard = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_ansi(false).with_writer(move || writer.clone()))
        .with(traces.layer())
        .set_default();

    let destination = MemoryDestination::new();
    let sync = SyncJob::builder("otel-no-collector")
        .source(MemorySource::new(schema(), rows()))
        .destination(destination.clone())
        .state(MemoryStateStore::new())
        .mode(Mode::Mirror)
        .options(SyncOptions::default().with_batch_rows(3))
        .build()
        .await
        .unwrap();
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    assert_eq!(report.counts.applied.total(), 10, "{report:?}");
    assert_eq!(destination.records().len(), 10);

    // The spans could not be delivered: shutting down says so, and the host's log said once
    // that spans were being dropped.
    let shutdown = traces.shutdown().await.unwrap_err().to_string();
    assert!(shutdown.contains("failed") && shutdown.contains(&base), "{shutdown}");
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert_eq!(logs.matches("Exporting spans failed").count(), 1, "{logs}");
    assert!(logs.contains(&base), "the warning names the collector's address: {logs}");
}
