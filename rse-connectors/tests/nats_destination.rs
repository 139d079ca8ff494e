//! `NatsDestination` against the real NATS JetStream server (RSE_NATS_URL).
#![cfg(feature = "nats")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, Context, stream};
use async_trait::async_trait;
use rse_connectors::{NatsDestination, NatsDestinationOptions};
use rse_core::memory::{MemorySource, MemoryStateStore};
use rse_core::testing::{
    DestinationReadback, change_batch, check_destination, conformance_schema, service_url, unavailable, unique_id,
};
use rse_core::*;
use serde_json::Value as Json;

fn url() -> String {
    service_url("RSE_NATS_URL", "nats://127.0.0.1:4222")
}

/// A fresh stream capturing `<name>.>`, deleted at the end of the test.
struct World {
    js: Context,
    name: String,
    stream: stream::Stream,
}

impl World {
    async fn new() -> Option<World> {
        World::with_max_msg_size(0).await
    }

    /// A world whose stream refuses messages larger than `max_msg_size` bytes (0: no limit).
    async fn with_max_msg_size(max_msg_size: i32) -> Option<World> {
        let url = url();
        let client =
            match async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(5)).connect(&url).await {
                Ok(c) => c,
                Err(e) => {
                    unavailable("NATS", &url, e);
                    return None;
                }
            };
        let js = jetstream::new(client);
        let name = unique_id("rse_nats");
        let config = stream::Config {
            name: name.clone(),
            subjects: vec![format!("{name}.>")],
            duplicate_window: Duration::from_secs(120),
            max_message_size: max_msg_size,
            ..Default::default()
        };
        let stream = js.create_stream(config).await.unwrap();
        Some(World { js, name, stream })
    }

    fn options(&self) -> NatsDestinationOptions {
        NatsDestinationOptions::new(format!("{}.{{id}}", self.name))
    }

    async fn messages(&mut self) -> u64 {
        self.stream.info().await.unwrap().state.messages
    }

    async fn drop(self) {
        let _ = self.js.delete_stream(&self.name).await;
    }
}

/// The record a key's last message says the destination holds.
struct Readback {
    stream: stream::Stream,
    name: String,
}

fn json_to_value(t: &DataType, j: &Json) -> Value {
    match (t, j) {
        (_, Json::Null) => Value::Null,
        (DataType::Int, j) => Value::Int(j.as_i64().unwrap()),
        (DataType::Float, j) => Value::Float(j.as_f64().unwrap()),
        (DataType::Bool, j) => Value::Bool(j.as_bool().unwrap()),
        (_, j) => Value::from(j.as_str().unwrap()),
    }
}

#[async_trait]
impl DestinationReadback for Readback {
    async fn get(&self, schema: &Schema, key: &Key) -> Result<Option<Record>, BoxError> {
        let id = key.decode()?[0].as_i64().ok_or("int key")?;
        let Ok(message) = self.stream.get_last_raw_message_by_subject(&format!("{}.{id}", self.name)).await else {
            return Ok(None);
        };
        let op = message.headers.get("Rse-Operation").map(|v| v.as_str().to_owned());
        if op.as_deref() == Some("delete") {
            return Ok(None);
        }
        let body: Json = serde_json::from_slice(&message.payload)?;
        Ok(Some(Record::new(
            schema.fields().iter().map(|f| json_to_value(&f.data_type, &body[f.name.as_str()])).collect(),
        )))
    }
}

fn changes(schema: &Arc<Schema>, items: Vec<(Op, Record)>) -> ChangeBatch {
    change_batch(schema, "n", items)
}

fn row(id: i64, name: &str) -> Record {
    Record::new(vec![Value::Int(id), Value::from(name), Value::Float(1.5), Value::Bool(true)])
}

#[tokio::test]
async fn passes_the_conformance_suite() {
    let Some(world) = World::new().await else { return };
    let readback = Readback { stream: world.stream.clone(), name: world.name.clone() };
    let dest = NatsDestination::connect(&url(), world.options()).await.unwrap();
    check_destination(&dest, Some(&readback)).await.unwrap();
    let boxed: Box<dyn Destination> = Box::new(NatsDestination::connect(&url(), world.options()).await.unwrap());
    check_destination(boxed.as_ref(), Some(&readback)).await.unwrap();
    let shared: Arc<dyn Destination> = Arc::new(NatsDestination::connect(&url(), world.options()).await.unwrap());
    check_destination(shared.as_ref(), Some(&readback)).await.unwrap();
    world.drop().await;
}

#[tokio::test]
async fn a_resent_batch_is_dropped_by_the_stream_and_deletes_are_marked() {
    let Some(mut world) = World::new().await else { return };
    let dest = NatsDestination::connect(&url(), world.options()).await.unwrap();
    let schema = conformance_schema();
    let batch = changes(&schema, vec![(Op::Insert, row(1, "a")), (Op::Insert, row(2, "b")), (Op::Delete, row(3, ""))]);
    assert_eq!(dest.write(&batch).await.unwrap(), WriteOutcome::all_applied(3));
    assert_eq!(world.messages().await, 3);
    // The acknowledgement was lost; the runner sends the same batch again.
    assert_eq!(dest.write(&batch).await.unwrap(), WriteOutcome::all_applied(3));
    assert_eq!(world.messages().await, 3, "the stream kept duplicates of acknowledged changes");

    let delete = world.stream.get_last_raw_message_by_subject(&format!("{}.3", world.name)).await.unwrap();
    assert_eq!(delete.headers.get("Rse-Operation").map(|v| v.as_str()), Some("delete"));
    assert!(delete.payload.is_empty());
    let insert = world.stream.get_last_raw_message_by_subject(&format!("{}.1", world.name)).await.unwrap();
    assert_eq!(
        insert.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_owned()),
        Some(batch.changes[0].idempotency_key.to_string())
    );
    assert_eq!(insert.headers.get("Rse-Key").map(|v| v.as_str()), Some(r#"{"id":1}"#));
    world.drop().await;
}

#[tokio::test]
async fn key_values_become_valid_subject_tokens() {
    let Some(mut world) = World::new().await else { return };
    let schema =
        Schema::new(vec![Field::required("email", DataType::String), Field::new("n", DataType::Int)], &["email"])
            .unwrap()
            .into_arc();
    let dest = NatsDestination::connect(&url(), NatsDestinationOptions::new(format!("{}.{{email}}", world.name)))
        .await
        .unwrap();
    let record = Record::new(vec![Value::from("a.b*c> d%@x.com"), Value::Int(1)]);
    assert_eq!(dest.write(&changes(&schema, vec![(Op::Insert, record)])).await.unwrap(), WriteOutcome::all_applied(1));
    let subject = format!("{}.a%2Eb%2Ac%3E%20d%25@x%2Ecom", world.name);
    let message = world.stream.get_last_raw_message_by_subject(&subject).await.unwrap();
    assert_eq!(serde_json::from_slice::<Json>(&message.payload).unwrap()["email"], "a.b*c> d%@x.com");
    assert_eq!(world.messages().await, 1);
    world.drop().await;
}

#[tokio::test]
async fn a_subject_no_stream_captures_is_fatal_and_says_so() {
    let Some(world) = World::new().await else { return };
    let dest = NatsDestination::connect(&url(), NatsDestinationOptions::new(format!("{}_nowhere.{{id}}", world.name)))
        .await
        .unwrap();
    dest.check().await.unwrap();
    match dest.write(&changes(&conformance_schema(), vec![(Op::Insert, row(1, "a"))])).await {
        Err(DestinationError::Fatal { message, .. }) => assert!(message.contains("no JetStream stream"), "{message}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    world.drop().await;
}

#[tokio::test]
async fn the_runner_publishes_each_change_once() {
    let Some(mut world) = World::new().await else { return };
    let schema = conformance_schema();
    let source = MemorySource::new(schema.clone(), (1..=250).map(|i| row(i, "v1")).collect());
    let dest = NatsDestination::connect(&url(), world.options()).await.unwrap();
    let sync = SyncJob::builder(unique_id("nats"))
        .source(source.clone())
        .destination(dest)
        .state(MemoryStateStore::new())
        .mode(Mode::Mirror)
        .options(SyncOptions::default().with_batch_rows(100).with_linger(Duration::from_millis(5)))
        .build()
        .await
        .unwrap();
    assert_eq!(sync.run().await.unwrap().counts.applied.insert, 250);
    assert_eq!(world.messages().await, 250);
    source.upsert(row(7, "v2"));
    source.remove(&Key::from_values(&[Value::Int(8)]));
    let report = sync.run().await.unwrap();
    assert_eq!((report.counts.applied.update, report.counts.applied.delete), (1, 1), "{report}");
    assert_eq!(world.messages().await, 252);
    world.drop().await;
}

/// The server's `max_payload`, as a client connecting to it is told.
async fn server_max_payload() -> usize {
    async_nats::connect(url()).await.unwrap().server_info().max_payload
}

fn rejected_reason(outcome: &ChangeOutcome) -> &str {
    match outcome {
        ChangeOutcome::Rejected { reason, retryable: false } => reason,
        other => panic!("expected a final rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn an_oversized_record_is_rejected_alone_and_the_rest_are_delivered_once() {
    let Some(mut world) = World::new().await else { return };
    let max_payload = server_max_payload().await;
    let dest = NatsDestination::connect(&url(), world.options()).await.unwrap();
    let schema = conformance_schema();
    let huge = "Q".repeat(max_payload + 1);
    let batch = changes(
        &schema,
        vec![
            (Op::Insert, row(1, "a")),
            (Op::Insert, row(2, "b")),
            (Op::Insert, row(3, &huge)),
            (Op::Insert, row(4, "d")),
        ],
    );
    let out = dest.write(&batch).await.unwrap();
    assert_eq!(out.outcomes[0], ChangeOutcome::Applied);
    assert_eq!(out.outcomes[1], ChangeOutcome::Applied);
    assert_eq!(out.outcomes[3], ChangeOutcome::Applied);
    let reason = rejected_reason(&out.outcomes[2]);
    assert!(reason.contains(&max_payload.to_string()) && reason.contains("max_payload"), "{reason}");
    assert!(!reason.contains("QQQQ"), "the reason holds the record's values: {reason}");
    assert_eq!(world.messages().await, 3);

    // The next run sends the same batch again (the rejected record is retried): the stream
    // still holds each delivered change once.
    let again = dest.write(&batch).await.unwrap();
    assert_eq!(again, out);
    assert_eq!(world.messages().await, 3, "the stream kept duplicates of delivered changes");
    world.drop().await;
}

#[tokio::test]
async fn a_record_over_the_streams_max_message_size_is_rejected_alone() {
    let Some(mut world) = World::with_max_msg_size(2_048).await else { return };
    let dest = NatsDestination::connect(&url(), world.options()).await.unwrap();
    let schema = conformance_schema();
    let large = "Q".repeat(4_096);
    let batch =
        changes(&schema, vec![(Op::Insert, row(1, "a")), (Op::Insert, row(2, &large)), (Op::Insert, row(3, "c"))]);
    let out = dest.write(&batch).await.unwrap();
    assert_eq!(out.outcomes[0], ChangeOutcome::Applied);
    assert_eq!(out.outcomes[2], ChangeOutcome::Applied);
    let reason = rejected_reason(&out.outcomes[1]);
    assert!(reason.contains("maximum message size"), "{reason}");
    assert!(!reason.contains("QQQQ"), "the reason holds the record's values: {reason}");
    assert_eq!(world.messages().await, 2);
    world.drop().await;
}

#[tokio::test]
async fn a_missing_stream_error_names_the_template_not_the_key_values() {
    let Some(world) = World::new().await else { return };
    let schema =
        Schema::new(vec![Field::required("email", DataType::String), Field::new("n", DataType::Int)], &["email"])
            .unwrap()
            .into_arc();
    let template = format!("{}_nowhere.{{email}}", world.name);
    let dest = NatsDestination::connect(&url(), NatsDestinationOptions::new(template.clone())).await.unwrap();
    let secret = "zqx-private-4711@example.org";
    let record = Record::new(vec![Value::from(secret), Value::Int(1)]);
    let error = dest.write(&changes(&schema, vec![(Op::Insert, record)])).await.unwrap_err();
    let (display, debug) = (error.to_string(), format!("{error:?}"));
    // The subject token is percent-encoded; neither form of the value may appear.
    for text in [&display, &debug] {
        assert!(!text.contains("zqx-private-4711"), "the error holds a key value: {text}");
    }
    assert!(matches!(error, DestinationError::Fatal { .. }), "{debug}");
    assert!(display.contains(&template), "the error should name the subject template: {display}");
    world.drop().await;
}

/// Options are data a host keeps in its configuration files.
#[test]
fn options_round_trip_through_json_and_refuse_unknown_fields() {
    let options = NatsDestinationOptions::new("crm.contacts.{id}")
        .with_ack_timeout(Duration::from_millis(2_500))
        .with_max_batch_rows(100)
        .with_max_concurrency(1)
        .with_root_certificates("/etc/rse/ca.pem")
        .with_client_certificate("/etc/rse/client.pem", "/etc/rse/client.key")
        .with_require_tls(true);
    let json = serde_json::to_value(&options).unwrap();
    assert_eq!(json["ack_timeout"], "2500ms", "{json}");
    assert_eq!(
        json["client_certificate"],
        serde_json::json!({"chain": "/etc/rse/client.pem", "key": "/etc/rse/client.key"})
    );
    assert_eq!(serde_json::from_value::<NatsDestinationOptions>(json.clone()).unwrap(), options, "{json}");

    let minimal: NatsDestinationOptions = serde_json::from_str(r#"{"subject_template": "a.{id}"}"#).unwrap();
    assert_eq!(minimal, NatsDestinationOptions::new("a.{id}"));
    for (text, unknown) in [
        (r#"{"subject_template": "a.{id}", "ack_timout": "1s"}"#, "ack_timout"),
        (
            r#"{"subject_template": "a.{id}", "client_certificate": {"chain": "/c", "key": "/k", "password": "x"}}"#,
            "password",
        ),
    ] {
        let error = serde_json::from_str::<NatsDestinationOptions>(text).unwrap_err().to_string();
        assert!(error.contains(&format!("unknown field `{unknown}`")), "{text}: {error}");
    }
    let error = serde_json::from_str::<NatsDestinationOptions>("{}").unwrap_err().to_string();
    assert!(error.contains("missing field `subject_template`"), "{error}");
}

/// A host that already holds a NATS connection publishes through it.
#[tokio::test]
async fn a_hosts_own_client_passes_the_conformance_suite() {
    let Some(world) = World::new().await else { return };
    let client =
        async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(5)).connect(url()).await.unwrap();
    let readback = Readback { stream: world.stream.clone(), name: world.name.clone() };
    let dest = NatsDestination::from_client(client, world.options());
    check_destination(&dest, Some(&readback)).await.unwrap();
    world.drop().await;
}
