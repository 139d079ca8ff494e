//! `HttpDestination` against a plain REST API that knows nothing of rse.

use std::sync::Arc;
use std::time::Duration;

use rse_connectors::{HttpBody, HttpDestination, HttpDestinationConfig, HttpOpRequest, HttpTimeouts};
use rse_core::memory::{MemorySource, MemoryStateStore};
use rse_core::*;
use serde_json::{Value as Json, json};

use super::batch_of;
use super::http_server::RestApi;

fn customer_schema() -> Arc<Schema> {
    Schema::new(
        vec![
            Field::required("id", DataType::String),
            Field::new("name", DataType::String),
            Field::new("score", DataType::Int),
        ],
        &["id"],
    )
    .unwrap()
    .into_arc()
}

fn customer(id: &str, name: &str, score: i64) -> Record {
    Record::new(vec![Value::from(id), Value::from(name), Value::Int(score)])
}

/// What the API should hold for these source rows: one plain object per row, by id.
fn as_held(rows: &[Record]) -> std::collections::BTreeMap<String, Json> {
    rows.iter()
        .map(|r| {
            let id = r.values[0].as_str().unwrap().to_owned();
            let score = match r.values[2] {
                Value::Int(i) => i,
                _ => unreachable!(),
            };
            (id.clone(), json!({"id": id, "name": r.values[1].as_str().unwrap(), "score": score}))
        })
        .collect()
}

/// A new user's first sync against an ordinary REST API: `PUT` and `DELETE` of
/// `/customers/{id}` with plain JSON objects. Mirror keeps it equal to the source.
#[tokio::test]
async fn a_mirror_sync_keeps_a_plain_rest_api_equal_to_the_source() {
    let api = RestApi::start().await;
    let schema = customer_schema();
    let source = MemorySource::new(
        schema.clone(),
        vec![customer("a/b c", "Ann", 1), customer("plain", "Bob", 2), customer("gone?#", "Cy", 3)],
    );
    let dest = HttpDestination::new(
        HttpDestinationConfig::new(api.url()).with_name("crm").with_rest_resource("/customers/{id}"),
    )
    .unwrap();
    let sync = SyncJob::builder("rest-mirror")
        .source(source.clone())
        .destination(dest)
        .state(MemoryStateStore::new())
        .mode(Mode::Mirror)
        .build()
        .await
        .unwrap();

    let first = sync.run().await.unwrap();
    assert_eq!(first.status, RunStatus::Succeeded, "{first}");
    assert_eq!(first.counts.applied.insert, 3, "{first}");
    assert_eq!(api.lock().customers, as_held(&source.rows()));
    assert!(
        api.lock().requests.contains(&"PUT /customers/a%2Fb%20c".to_owned()),
        "the key is one percent-encoded path segment: {:?}",
        api.lock().requests
    );

    source.remove(&customer("gone?#", "", 0).key(&schema).unwrap());
    source.upsert(customer("a/b c", "Ann B.", 5));
    let second = sync.run().await.unwrap();
    assert_eq!(second.status, RunStatus::Succeeded, "{second}");
    assert_eq!(second.counts.applied.update, 1, "{second}");
    assert_eq!(second.counts.applied.delete, 1, "{second}");
    assert_eq!(second.counts.applied.insert, 0, "{second}");
    assert_eq!(api.lock().customers, as_held(&source.rows()));
    assert!(api.lock().requests.contains(&"DELETE /customers/gone%3F%23".to_owned()));
}

/// With one request per record, each answer decides its own change: 404 to a delete is
/// already done, another 4xx refuses that change only, and a value that would address
/// another resource never leaves.
#[tokio::test]
async fn per_record_rest_answers_are_classified_per_change() {
    let api = RestApi::start().await;
    let schema = customer_schema();
    let dest =
        HttpDestination::new(HttpDestinationConfig::new(api.url()).with_rest_resource("/customers/{id}")).unwrap();
    assert_eq!(dest.capabilities().max_batch_rows, 1, "one request per change, so the runner paces requests");
    api.lock().answers.insert("refused".into(), 422);
    let batch = batch_of(
        &schema,
        vec![
            (Op::Insert, customer("ok", "Ann", 1)),
            (Op::Delete, customer("never-there", "", 0)),
            (Op::Insert, customer("refused", "Bob", 2)),
            (Op::Insert, customer("", "Empty", 3)),
            (Op::Update, customer("..", "Dots", 4)),
        ],
    );
    let out = dest.write(&batch).await.unwrap();
    assert_eq!(out.outcomes[0], ChangeOutcome::Applied);
    assert_eq!(out.outcomes[1], ChangeOutcome::Applied, "404 to a delete: already gone");
    assert!(
        matches!(&out.outcomes[2], ChangeOutcome::Rejected { reason, retryable: false } if reason.starts_with("HTTP 422")),
        "{:?}",
        out.outcomes[2]
    );
    for refused in &out.outcomes[3..] {
        assert!(
            matches!(refused, ChangeOutcome::Rejected { reason, .. } if reason.contains("`id`") && reason.contains("path segment")),
            "{refused:?}"
        );
    }
    {
        let s = api.lock();
        assert_eq!(s.requests.len(), 3, "the empty and `..` keys never left: {:?}", s.requests);
        assert_eq!(s.customers.keys().collect::<Vec<_>>(), ["ok"]);
    }

    for (code, class) in [(503, "transient"), (429, "rate limited"), (401, "unauthorized")] {
        api.lock().answers.insert("busy".into(), code);
        let one = batch_of(&schema, vec![(Op::Update, customer("busy", "Cy", 1))]);
        let written = dest.write(&one).await;
        let ok = match code {
            503 => matches!(written, Err(DestinationError::Transient { .. })),
            429 => matches!(written, Err(DestinationError::RateLimited { .. })),
            _ => matches!(written, Err(DestinationError::Unauthorized { .. })),
        };
        assert!(ok, "HTTP {code} should be {class}: {written:?}");
    }
}

/// A URL template that cannot be filled from the sync's records is a configuration error
/// naming the field, before anything is sent.
#[tokio::test]
async fn a_url_template_naming_a_missing_field_is_refused_naming_it() {
    let api = RestApi::start().await;
    let schema = customer_schema();
    let batch = batch_of(&schema, vec![(Op::Insert, customer("x", "X", 1))]);
    let cases = [
        (HttpOpRequest::put("/customers/{customer_id}"), Op::Insert, "customer_id"),
        (HttpOpRequest::delete("/customers/{name}"), Op::Delete, "name"),
    ];
    for (request, op, field) in cases {
        let dest = HttpDestination::new(HttpDestinationConfig::new(api.url()).with_request(op, request)).unwrap();
        for refused in [dest.check_schema(&schema), dest.write(&batch).await.map(drop)] {
            match refused {
                Err(DestinationError::Fatal { message, .. }) => {
                    assert!(message.contains(&format!("`{{{field}}}`")), "{message}")
                }
                other => panic!("a template naming `{field}` should be refused, got {other:?}"),
            }
        }
    }
    assert!(api.lock().requests.is_empty());
    // Building the sync already refuses it, before any run.
    let dest = HttpDestination::new(
        HttpDestinationConfig::new(api.url()).with_request(Op::Insert, HttpOpRequest::put("/customers/{customer_id}")),
    )
    .unwrap();
    let built = SyncJob::builder("rest-misnamed")
        .source(MemorySource::new(schema.clone(), vec![customer("x", "X", 1)]))
        .destination(dest)
        .state(MemoryStateStore::new())
        .build()
        .await;
    let err = built.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("customer_id"), "{err}");
    for (template, body) in [("/customers/{id", HttpBody::Record), ("/customers/{id}", HttpBody::RecordArray)] {
        let config = HttpDestinationConfig::new(api.url())
            .with_request(Op::Insert, HttpOpRequest::put(template).with_body(body));
        assert!(
            matches!(HttpDestination::new(config), Err(DestinationError::Fatal { .. })),
            "{template} with {body:?} should not build"
        );
    }
}

/// Per-operation requests are data a host can keep in its own configuration files.
#[test]
fn per_operation_requests_read_from_configuration_data() {
    let request: HttpOpRequest = serde_json::from_value(json!({"method": "put", "url": "/customers/{id}"})).unwrap();
    assert_eq!(request, HttpOpRequest::put("/customers/{id}"));
    let request = HttpOpRequest::delete("/customers/{id}").with_header("X-Api-Key", "k-1");
    let text = serde_json::to_value(&request).unwrap();
    assert_eq!(
        text,
        json!({"method": "DELETE", "url": "/customers/{id}", "body": "none", "headers": [["X-Api-Key", "k-1"]]})
    );
    assert_eq!(serde_json::from_value::<HttpOpRequest>(text).unwrap(), request);
    assert!(!format!("{request:?}").contains("k-1"), "the header value stays out of Debug");
    let timeouts: HttpTimeouts = serde_json::from_value(json!({"connect": "2s"})).unwrap();
    assert_eq!(timeouts.connect, Duration::from_secs(2));
    assert_eq!(timeouts.request, HttpTimeouts::default().request);
}
