//! `HttpDestination` against a real in-process HTTP receiver.
#![cfg(feature = "http")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// The configuration as data; the host's own client.
#[path = "http/as_data.rs"]
mod as_data;
#[path = "support/http_server.rs"]
mod http_server;
/// Rejection reasons that never carry what the receiver echoes.
#[path = "http/reasons.rs"]
mod reasons;
/// The destination against a plain REST API.
#[path = "http/rest.rs"]
mod rest;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http_server::{Misbehave, Receiver};
use rse_connectors::{BodyShape, HttpDestination, HttpDestinationConfig, RecordErrors};
use rse_core::memory::{MemorySource, MemoryStateStore};
use rse_core::testing::{DestinationReadback, check_destination, conformance_schema};
use rse_core::*;
use serde_json::{Value as Json, json};

const SECRET: &str = "s3cret-hmac-key";

struct Readback(Receiver);

fn json_to_value(t: &DataType, j: &Json) -> Value {
    match (t, j) {
        (_, Json::Null) => Value::Null,
        (DataType::Int, j) => Value::Int(j.as_i64().unwrap()),
        (DataType::Float, j) => Value::Float(j.as_f64().unwrap()),
        (DataType::Bool, j) => Value::Bool(j.as_bool().unwrap()),
        (DataType::String, j) => Value::String(j.as_str().unwrap().to_owned()),
        (t, j) => panic!("readback of {t} from {j} not needed"),
    }
}

#[async_trait]
impl DestinationReadback for Readback {
    async fn get(&self, schema: &Schema, key: &Key) -> Result<Option<Record>, BoxError> {
        let values = key.decode()?;
        let key_obj: serde_json::Map<String, Json> =
            schema.key_names().zip(&values).map(|(n, v)| (n.to_owned(), json!(v.as_i64()))).collect();
        let held = self.0.lock().records.get(&Json::Object(key_obj).to_string()).cloned();
        Ok(held.map(|r| {
            Record::new(schema.fields().iter().map(|f| json_to_value(&f.data_type, &r[f.name.as_str()])).collect())
        }))
    }
}

fn config(rx: &Receiver) -> HttpDestinationConfig {
    HttpDestinationConfig::new(rx.url()).with_name("test").with_signing_secret(SECRET)
}

fn batch_of(schema: &Arc<Schema>, changes: Vec<(Op, Record)>) -> ChangeBatch {
    let mut fp = Fingerprinter::new(FingerprintAlgorithm::default(), schema);
    let changes = changes
        .into_iter()
        .map(|(op, record)| {
            let key = record.key(schema).unwrap();
            let fingerprint = fp.fingerprint(&record);
            let idempotency_key = IdempotencyKey::derive("t", &key, op, fingerprint, 0);
            Change {
                op,
                key,
                record: (op != Op::Delete).then_some(record),
                fingerprint,
                version: 0,
                idempotency_key,
                memo: None,
            }
        })
        .collect();
    ChangeBatch { sync_id: "t".into(), schema: schema.clone(), changes }
}

fn row(id: i64, name: &str) -> Record {
    Record::new(vec![Value::Int(id), Value::from(name), Value::Float(0.5), Value::Bool(true)])
}

#[tokio::test]
async fn both_body_shapes_pass_the_conformance_suite() {
    for shape in [BodyShape::ArrayPerBatch, BodyShape::ObjectPerChange] {
        let rx = Receiver::start(Some(SECRET)).await;
        let dest =
            HttpDestination::new(config(&rx).with_shape(shape).with_check_url(format!("http://{}/health", rx.addr)))
                .unwrap();
        let readback = Readback(rx.clone());
        check_destination(&dest, Some(&readback)).await.unwrap_or_else(|e| panic!("{shape:?}: {e}"));
        let boxed: Box<dyn Destination> = Box::new(HttpDestination::new(config(&rx).with_shape(shape)).unwrap());
        check_destination(boxed.as_ref(), Some(&readback)).await.unwrap();
        let shared: Arc<dyn Destination> = Arc::new(HttpDestination::new(config(&rx).with_shape(shape)).unwrap());
        check_destination(shared.as_ref(), Some(&readback)).await.unwrap();
        let s = rx.lock();
        assert_eq!(s.bad_signatures, 0, "{shape:?}: every request must carry a valid signature");
        assert!(s.duplicates > 0, "{shape:?}: the suite's repeated batch must reach the receiver as duplicates");
    }
}

#[tokio::test]
async fn answers_are_classified() {
    let rx = Receiver::start(Some(SECRET)).await;
    let dest = HttpDestination::new(config(&rx).with_timeout(Duration::from_millis(300))).unwrap();
    let schema = conformance_schema();
    let two = batch_of(&schema, vec![(Op::Insert, row(1, "a")), (Op::Insert, row(2, "b"))]);

    rx.lock().script.push_back(Misbehave::TooMany("7".into()));
    match dest.write(&two).await {
        Err(DestinationError::RateLimited { retry_after }) => assert_eq!(retry_after, Some(Duration::from_secs(7))),
        other => panic!("429 should be RateLimited, got {other:?}"),
    }
    let date = "Wed, 21 Oct 2015 07:28:00 GMT".to_owned();
    rx.lock().script.push_back(Misbehave::TooMany(date));
    assert!(
        matches!(dest.write(&two).await, Err(DestinationError::RateLimited { retry_after: Some(d) }) if d.is_zero())
    );
    for code in [500, 502, 503, 408] {
        rx.lock().script.push_back(Misbehave::Status(code));
        assert!(
            matches!(dest.write(&two).await, Err(DestinationError::Transient { .. })),
            "{code} should be transient"
        );
    }
    rx.lock().script.push_back(Misbehave::Status(403));
    assert!(matches!(dest.write(&two).await, Err(DestinationError::Unauthorized { .. })));
    rx.lock().script.push_back(Misbehave::BadRequest);
    match dest.write(&two).await {
        Err(DestinationError::InvalidBatch { message }) => {
            assert!(message.starts_with("HTTP 400"), "{message}")
        }
        other => panic!("400 on a batch should be InvalidBatch, got {other:?}"),
    }
    let one = batch_of(&schema, vec![(Op::Insert, row(3, "c"))]);
    rx.lock().script.push_back(Misbehave::BadRequest);
    let out = dest.write(&one).await.unwrap();
    assert!(
        matches!(&out.outcomes[0], ChangeOutcome::Rejected { reason, retryable: false } if reason.starts_with("HTTP 400"))
    );
    rx.lock().script.push_back(Misbehave::Stall(Duration::from_secs(2)));
    assert!(matches!(dest.write(&two).await, Err(DestinationError::Transient { .. })), "a timeout is transient");
    assert_eq!(rx.lock().records.len(), 2, "the stalled request was applied by the receiver");
    // Re-sent after the timeout: the receiver recognises both keys.
    let before = rx.lock().duplicates;
    assert_eq!(dest.write(&two).await.unwrap(), WriteOutcome::all_applied(2));
    assert_eq!(rx.lock().duplicates, before + 2);

    let closed = HttpDestination::new(HttpDestinationConfig::new("http://127.0.0.1:9/hook")).unwrap();
    assert!(
        matches!(closed.write(&two).await, Err(DestinationError::Transient { .. })),
        "connection refused is transient"
    );

    let wrong =
        HttpDestination::new(HttpDestinationConfig::new(rx.url()).with_signing_secret("not-the-secret")).unwrap();
    assert!(matches!(wrong.write(&two).await, Err(DestinationError::Unauthorized { .. })));
    assert_eq!(rx.lock().bad_signatures, 1);
}

#[tokio::test]
async fn records_refused_in_a_200_body_are_rejected_with_the_receivers_code() {
    let rx = Receiver::start(Some(SECRET)).await;
    rx.lock().refuse_name = Some("bad".into());
    let dest = HttpDestination::new(config(&rx).with_record_errors(RecordErrors::at("/errors"))).unwrap();
    let schema = conformance_schema();
    let batch =
        batch_of(&schema, vec![(Op::Insert, row(1, "ok")), (Op::Insert, row(2, "bad")), (Op::Insert, row(3, "ok"))]);
    let out = dest.write(&batch).await.unwrap();
    assert_eq!(out.outcomes[0], ChangeOutcome::Applied);
    assert_eq!(out.outcomes[1], ChangeOutcome::rejected("refused by the receiver (code=not_allowed, field=name)"));
    assert_eq!(out.outcomes[2], ChangeOutcome::Applied);
    assert_eq!(rx.lock().records.len(), 2);

    let single = HttpDestination::new(
        config(&rx).with_shape(BodyShape::ObjectPerChange).with_record_errors(RecordErrors::at("/errors")),
    )
    .unwrap();
    let out = single.write(&batch_of(&schema, vec![(Op::Insert, row(4, "bad"))])).await.unwrap();
    assert_eq!(out.outcomes, vec![ChangeOutcome::rejected("refused by the receiver (code=not_allowed, field=name)")]);
}

#[tokio::test]
async fn bodies_follow_the_field_mapping_and_value_encodings() {
    let rx = Receiver::start(None).await;
    rx.lock().keep_bodies = true;
    let schema = Schema::new(
        vec![
            Field::required("id", DataType::Int),
            Field::new("email", DataType::String),
            Field::new("balance", DataType::Decimal),
            Field::new("avatar", DataType::Bytes),
            Field::new("seen_at", DataType::Timestamp),
            Field::new("born", DataType::Date),
        ],
        &["id"],
    )
    .unwrap()
    .into_arc();
    let record = Record::new(vec![
        Value::Int(7),
        Value::from("a@example.com"),
        Value::Decimal(Decimal::parse("12.50").unwrap()),
        Value::Bytes(bytes_of(b"hi!")),
        Value::Timestamp(1_714_564_800_000_001),
        Value::Date(19_783),
    ]);
    let dest = HttpDestination::new(
        HttpDestinationConfig::new(rx.url())
            .with_field("crm_email", "email")
            .with_field("balance", "balance")
            .with_field("avatar", "avatar")
            .with_field("seen", "seen_at")
            .with_field("born", "born"),
    )
    .unwrap();
    let batch = batch_of(&schema, vec![(Op::Insert, record.clone())]);
    dest.write(&batch).await.unwrap();
    let body = rx.lock().bodies[0].clone();
    assert_eq!(
        body,
        json!([{
            "op": "insert",
            "idempotency_key": batch.changes[0].idempotency_key.to_string(),
            "key": {"id": 7},
            "record": {"crm_email": "a@example.com", "balance": "12.5", "avatar": "aGkh",
                       "seen": "2024-05-01T12:00:00.000001Z", "born": "2024-03-01"}
        }])
    );
    let per_change =
        HttpDestination::new(HttpDestinationConfig::new(rx.url()).with_shape(BodyShape::ObjectPerChange)).unwrap();
    per_change.write(&batch).await.unwrap();
    let s = rx.lock();
    assert_eq!(s.header_keys.last().unwrap(), &batch.changes[0].idempotency_key.to_string());
    assert_eq!(s.bodies[1]["record"]["email"], "a@example.com");
}

fn bytes_of(b: &[u8]) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(b)
}

/// The runner through a storm of 429s, 5xx, lost acknowledgements and stalls, under a quota
/// the receiver enforces: every row arrives once, and no window holds more than the quota.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_failures_under_a_quota_delivers_every_row_once() {
    const QUOTA: u32 = 50;
    let per = Duration::from_secs(1);
    let rx = Receiver::start(Some(SECRET)).await;
    {
        let mut s = rx.lock();
        s.quota = Some((QUOTA as usize, per));
        s.every = vec![
            (29, Misbehave::TooMany("1".into())),
            (7, Misbehave::Status(500)),
            (11, Misbehave::LoseAck),
            (13, Misbehave::Status(502)),
            (17, Misbehave::Stall(Duration::from_millis(600))),
        ];
    }
    let dest = HttpDestination::new(
        config(&rx)
            // Headroom for arrival jitter: sends leave at exact intervals, but two can arrive
            // closer together than they left.
            .with_rate_limit(RateLimit::per_second(QUOTA - 2))
            .with_max_batch_rows(5)
            .with_timeout(Duration::from_millis(400)),
    )
    .unwrap();
    let schema = conformance_schema();
    let rows: Vec<Record> = (1..=400).map(|i| row(i, &format!("name {i}"))).collect();
    let source = MemorySource::new(schema.clone(), rows.clone());
    let sync = SyncJob::builder("storm")
        .source(source)
        .destination(dest)
        .state(MemoryStateStore::new())
        .options(
            SyncOptions::default()
                .with_batch_rows(5)
                .with_linger(Duration::from_millis(5))
                .with_initial_backoff(Duration::from_millis(20))
                .with_max_backoff(Duration::from_millis(200))
                .with_max_attempts(10),
        )
        .build()
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(report.counts.applied.insert, 400);
    assert!(report.retries > 0 && report.rate_limit_waits > 0, "the storm must have hit: {report}");
    let s = rx.lock();
    assert_eq!(s.records.len(), 400, "every row delivered");
    assert_eq!(s.applied.len(), 400, "one idempotency key per row: retries re-sent the same keys");
    assert!(s.applied.values().all(|&n| n == 1));
    assert!(s.duplicates > 0, "lost acknowledgements were re-sent and recognised as duplicates");
    assert_eq!(s.over_quota, 0, "the receiver never had to refuse a request over its quota");
    assert_eq!(s.bad_signatures, 0);
    drop(s);
    let max = rx.max_in_window(per);
    assert!(max <= QUOTA as usize, "{max} requests arrived within one second; quota is {QUOTA}");
    eprintln!("storm: {} requests in {:?}, {} retries", rx.lock().requests, started.elapsed(), report.retries);
}

fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Misbehave {
    Misbehave::Answer {
        status,
        headers: headers.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect(),
        body: body.to_owned(),
    }
}

/// A webhook URL that redirects (to a sign-in page, to a moved host) must not turn the POST
/// into a GET whose 200 marks every change applied.
#[tokio::test]
async fn redirect_on_write_is_a_configuration_error_naming_the_host() {
    let rx = Receiver::start(None).await;
    let schema = conformance_schema();
    let two = batch_of(&schema, vec![(Op::Insert, row(1, "a")), (Op::Insert, row(2, "b"))]);
    // `localhost` rather than the configured 127.0.0.1, so the message shows which host.
    let location = format!("http://localhost:{}/login?next=%2Fhook&token=abc", rx.addr.port());
    for shape in [BodyShape::ArrayPerBatch, BodyShape::ObjectPerChange] {
        let dest = HttpDestination::new(HttpDestinationConfig::new(rx.url()).with_shape(shape)).unwrap();
        for code in [301, 302, 303, 307, 308] {
            rx.lock().script.push_back(answer(code, &[("location", &location)], ""));
            match dest.write(&two).await {
                Err(DestinationError::Fatal { message, .. }) => {
                    assert!(message.contains(&code.to_string()), "{message}");
                    assert!(message.contains("localhost"), "the message names the host: {message}");
                    assert!(message.contains("URL"), "the message says what to change: {message}");
                    for hidden in ["login", "token", "abc", "next"] {
                        assert!(!message.contains(hidden), "`{hidden}` of the Location leaked: {message}");
                    }
                }
                other => panic!("{shape:?}: HTTP {code} should end the run as a configuration error, got {other:?}"),
            }
        }
    }
    let moved = HttpDestination::new(HttpDestinationConfig::new(rx.url()).with_check_url("/moved")).unwrap();
    match moved.check().await {
        Err(DestinationError::Fatal { message, .. }) => {
            assert!(message.contains("127.0.0.1") && !message.contains("token"), "{message}")
        }
        other => panic!("a redirected check should be a configuration error, got {other:?}"),
    }
    let s = rx.lock();
    assert_eq!(s.login_visits, 0, "a redirect must never be followed");
    assert!(s.records.is_empty());
}

/// Whatever a receiver puts in `Retry-After`, the write answers `RateLimited` with a wait
/// the runner can schedule: never a panic, never a wait past the configured bound.
#[tokio::test]
async fn retry_after_of_any_value_is_bounded_and_never_panics() {
    let rx = Receiver::start(None).await;
    let schema = conformance_schema();
    let two = batch_of(&schema, vec![(Op::Insert, row(1, "a")), (Op::Insert, row(2, "b"))]);
    let day = Duration::from_secs(24 * 3600);
    let dest = HttpDestination::new(HttpDestinationConfig::new(rx.url())).unwrap();
    let cases: &[(&str, Option<Duration>)] = &[
        ("1e300", Some(day)),
        ("18446744073709551615", Some(day)),
        ("99999999999999999999999999", Some(day)),
        ("inf", Some(day)),
        ("Fri, 31 Dec 9999 23:59:59 GMT", Some(day)),
        ("2.5", Some(Duration::from_millis(2500))),
        ("120", Some(Duration::from_secs(120))),
        ("0", Some(Duration::ZERO)),
        ("-5", None),
        ("NaN", None),
        ("-inf", None),
        ("soon", None),
        ("", None),
    ];
    for (header, expected) in cases {
        rx.lock().script.push_back(Misbehave::TooMany((*header).to_owned()));
        match dest.write(&two).await {
            Err(DestinationError::RateLimited { retry_after }) => {
                assert_eq!(retry_after, *expected, "Retry-After: {header:?}")
            }
            other => panic!("429 with Retry-After {header:?} should be RateLimited, got {other:?}"),
        }
    }
    // The host chooses the bound.
    let hour = Duration::from_secs(3600);
    let dest = HttpDestination::new(HttpDestinationConfig::new(rx.url()).with_max_retry_after(hour)).unwrap();
    for (header, expected) in [("7200", hour), ("1e300", hour), ("59", Duration::from_secs(59))] {
        rx.lock().script.push_back(Misbehave::TooMany(header.to_owned()));
        assert!(
            matches!(dest.write(&two).await, Err(DestinationError::RateLimited { retry_after: Some(d) }) if d == expected),
            "Retry-After: {header}"
        );
    }
}

/// A 2xx body that lists per-record errors the destination cannot attribute (not JSON,
/// an index past the batch, no index in a batch of many) is an error that says so: it
/// never marks the records applied and never pins a refusal on the wrong record.
#[tokio::test]
async fn unattributable_record_errors_in_a_2xx_are_a_clear_error() {
    let rx = Receiver::start(None).await;
    let schema = conformance_schema();
    let two = batch_of(&schema, vec![(Op::Insert, row(1, "a")), (Op::Insert, row(2, "b"))]);
    let dest =
        HttpDestination::new(HttpDestinationConfig::new(rx.url()).with_record_errors(RecordErrors::at("/errors")))
            .unwrap();
    let json = [("content-type", "application/json")];
    for body in [
        "<html>gateway says hi</html>",
        r#"{"errors": [{"index": 2, "message": "past the end"}]}"#,
        r#"{"errors": [{"index": -1, "message": "negative"}]}"#,
        r#"{"errors": [{"index": 1.5, "message": "fraction"}]}"#,
        r#"{"errors": [{"index": "1", "message": "text"}]}"#,
        r#"{"errors": [{"message": "which one?"}]}"#,
        r#"{"errors": "something failed"}"#,
    ] {
        rx.lock().script.push_back(answer(200, &json, body));
        match dest.write(&two).await {
            Err(DestinationError::Fatal { message, .. }) => {
                assert!(message.contains("/errors"), "the message names the setting: {message}")
            }
            other => panic!("body {body} should be a clear error, got {other:?}"),
        }
    }
    // Bodies that say "no errors" in the usual ways.
    for body in ["", r#"{"errors": []}"#, r#"{"errors": null}"#, r#"{"ok": true}"#] {
        rx.lock().script.push_back(answer(200, &json, body));
        assert_eq!(dest.write(&two).await.unwrap(), WriteOutcome::all_applied(2), "body {body:?}");
    }
    rx.lock().script.push_back(answer(200, &json, r#"{"errors": [{"index": 1, "message": "bad"}]}"#));
    let out = dest.write(&two).await.unwrap();
    assert_eq!(
        out.outcomes,
        vec![ChangeOutcome::Applied, ChangeOutcome::rejected("refused by the receiver (no error code given)")]
    );
}

/// A receiver that accepts the connection and never answers: the write ends as a
/// transient failure (the runner retries it under the same idempotency keys).
#[tokio::test]
async fn a_receiver_that_never_answers_is_a_transient_failure() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let schema = conformance_schema();
    let two = batch_of(&schema, vec![(Op::Insert, row(1, "a")), (Op::Insert, row(2, "b"))]);
    let dest = HttpDestination::new(
        HttpDestinationConfig::new(format!("http://{addr}/hook")).with_timeout(Duration::from_millis(300)),
    )
    .unwrap();
    // The guard only keeps a broken build from hanging the suite; it asserts no speed.
    let written = tokio::time::timeout(Duration::from_secs(60), dest.write(&two)).await.expect("write hung");
    assert!(matches!(written, Err(DestinationError::Transient { .. })), "{written:?}");
}

/// A receiver whose accept queue is full never completes the TCP handshake: the connect
/// timeout ends the write as transient, however long the request timeout is.
#[tokio::test]
async fn a_receiver_that_never_accepts_is_a_transient_failure_after_the_connect_timeout() {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    // Nothing accepts: once the queue holds what the backlog allows, the kernel drops
    // further connection attempts unanswered.
    let mut held = Vec::new();
    let mut full = false;
    for _ in 0..16 {
        match tokio::time::timeout(Duration::from_millis(500), tokio::net::TcpStream::connect(addr)).await {
            Ok(stream) => held.push(stream.unwrap()),
            Err(_) => {
                full = true;
                break;
            }
        }
    }
    assert!(full, "the listener's accept queue never filled");
    let schema = conformance_schema();
    let two = batch_of(&schema, vec![(Op::Insert, row(1, "a")), (Op::Insert, row(2, "b"))]);
    let dest = HttpDestination::new(
        HttpDestinationConfig::new(format!("http://{addr}/hook"))
            .with_connect_timeout(Duration::from_millis(300))
            .with_timeout(Duration::from_secs(3600)),
    )
    .unwrap();
    // Without a connect timeout the kernel would retry the handshake for about two minutes.
    let written = tokio::time::timeout(Duration::from_secs(60), dest.write(&two)).await.expect("write hung");
    assert!(matches!(written, Err(DestinationError::Transient { .. })), "{written:?}");
    drop(held);
}

#[tokio::test]
async fn requests_are_counted_by_the_class_of_their_answer() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use rse_core::metrics::{CLASS, DESTINATION, HTTP_REQUESTS_TOTAL};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // The test's runtime runs on this thread: every request is counted here.
    let _local = ::metrics::set_default_local_recorder(&recorder);

    let rx = Receiver::start(Some(SECRET)).await;
    let dest = HttpDestination::new(config(&rx).with_timeout(Duration::from_millis(300))).unwrap();
    let two = batch_of(&conformance_schema(), vec![(Op::Insert, row(1, "a")), (Op::Insert, row(2, "b"))]);
    for misbehave in [
        Misbehave::TooMany("1".into()),
        Misbehave::Status(503),
        Misbehave::Status(403),
        Misbehave::Stall(Duration::from_secs(2)),
    ] {
        rx.lock().script.push_back(misbehave);
        dest.write(&two).await.unwrap_err();
    }
    dest.write(&two).await.unwrap();
    let closed = HttpDestination::new(HttpDestinationConfig::new("http://127.0.0.1:9/hook")).unwrap();
    closed.write(&two).await.unwrap_err();

    let mut counts = std::collections::HashMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        assert_eq!(key.name(), HTTP_REQUESTS_TOTAL);
        let labels: std::collections::HashMap<&str, &str> = key.labels().map(|l| (l.key(), l.value())).collect();
        assert_eq!((labels.len(), labels[DESTINATION]), (2, "http"), "{labels:?}");
        let DebugValue::Counter(n) = value else { panic!("{value:?}") };
        counts.insert(labels[CLASS].to_owned(), n);
    }
    let expected: std::collections::HashMap<String, u64> =
        [("429", 1), ("5xx", 1), ("4xx", 1), ("2xx", 1), ("error", 2)].map(|(c, n)| (c.to_owned(), n)).into();
    assert_eq!(counts, expected, "a stalled answer and a refused connection are `error`");
}
