//! The configuration as data, and the destination built on a client the host owns.

use std::time::Duration;

use rse_connectors::{
    BodyShape, HttpBody, HttpDestination, HttpDestinationConfig, HttpOpRequest, HttpTimeouts, RecordErrors,
};
use rse_core::testing::{check_destination, conformance_schema, unique_id};
use rse_core::*;
use serde_json::json;

use super::http_server::Receiver;
use super::{Readback, SECRET, answer, batch_of, config, row};

/// Every setting there is, secrets inline.
fn everything() -> HttpDestinationConfig {
    let mut timeouts = HttpTimeouts::default();
    timeouts.request = Duration::from_millis(1500);
    timeouts.max_retry_after = Duration::from_secs(600);
    HttpDestinationConfig::new("https://user:pw-111@crm.example.com/api/?token=tok-222")
        .with_name("crm")
        .with_method(rse_connectors::destination::http::Method::PUT)
        .with_header("X-Api-Key", "key-333")
        .with_bearer_token("bearer-444")
        .with_shape(BodyShape::ObjectPerChange)
        .with_field("email_address", "email")
        .with_envelope(false)
        .with_request(Op::Delete, HttpOpRequest::delete("/customers/{id}?sig=sig-555").with_header("X-Del", "del-666"))
        .with_request(Op::Append, HttpOpRequest::post("/events").with_body(HttpBody::EnvelopeArray))
        .with_signing_secret("hmac-777")
        .with_timeouts(timeouts)
        .with_connect_timeout(Duration::from_secs(3))
        .with_pool_max_idle_per_host(8)
        .with_rate_limit(RateLimit { requests: 90, per: Duration::from_secs(10), burst: 5 })
        .with_max_batch_rows(50)
        .with_max_batch_bytes(1 << 20)
        .with_max_concurrency(2)
        .with_record_errors(RecordErrors::at("/errors").with_fields("i", "code"))
        .with_response_excerpts(true)
        .with_check_url("/whoami?token=chk-888")
}

const SECRETS: [&str; 9] =
    ["pw-111", "tok-222", "key-333", "bearer-444", "sig-555", "del-666", "hmac-777", "chk-888", "token="];

#[test]
fn config_round_trips_through_json() {
    let config = everything();
    let json = serde_json::to_value(&config).unwrap();
    assert_eq!(json["timeouts"]["request"], json!("1500ms"), "durations are written as people write them: {json}");
    assert_eq!(json["rate_limit"], json!({"requests": 90, "per": "10s", "burst": 5}));
    assert_eq!(json["requests"]["delete"]["method"], json!("DELETE"));
    let back: HttpDestinationConfig = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, config, "{json}");

    // Only the URL is required; the rest is what `new` gives.
    let minimal: HttpDestinationConfig = serde_json::from_str(r#"{"url": "https://example.com/hook"}"#).unwrap();
    assert_eq!(minimal, HttpDestinationConfig::new("https://example.com/hook"));
    let mut timeouts = HttpTimeouts::default();
    timeouts.connect = Duration::from_secs(2);
    let partial: HttpDestinationConfig =
        serde_json::from_str(r#"{"url": "https://example.com/hook", "timeouts": {"connect": "2s"}}"#).unwrap();
    assert_eq!(partial, HttpDestinationConfig::new("https://example.com/hook").with_timeouts(timeouts));
}

#[test]
fn an_unknown_config_field_is_refused_naming_it() {
    for (text, unknown) in [
        (r#"{"url": "https://example.com", "signing_secrt": "x"}"#, "signing_secrt"),
        (r#"{"url": "https://example.com", "timeouts": {"requets": "1s"}}"#, "requets"),
        (r#"{"url": "https://example.com", "requests": {"upsert": {}}}"#, "upsert"),
        (r#"{"url": "https://example.com", "requests": {"insert": {"verb": "PUT"}}}"#, "verb"),
        (r#"{"url": "https://example.com", "rate_limit": {"requests": 1, "window": "1s"}}"#, "window"),
        (r#"{"url": "https://example.com", "record_errors": {"pointer": "/e", "idx": "i"}}"#, "idx"),
    ] {
        let error = serde_json::from_str::<HttpDestinationConfig>(text).unwrap_err().to_string();
        assert!(error.contains(&format!("unknown field `{unknown}`")), "{text}: {error}");
    }
    let error = serde_json::from_str::<HttpDestinationConfig>(r#"{"name": "crm"}"#).unwrap_err().to_string();
    assert!(error.contains("missing field `url`"), "{error}");
    let error = serde_json::from_str::<HttpDestinationConfig>(
        r#"{"url": "https://example.com", "timeouts": {"request": "soon"}}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("`soon` is not a duration"), "{error}");
}

#[test]
fn debug_of_a_config_shows_no_secret() {
    let shown = format!("{:?}", everything());
    for secret in SECRETS {
        assert!(!shown.contains(secret), "`{secret}` leaked into {shown}");
    }
    assert!(shown.contains("X-Api-Key") && shown.contains("crm.example.com"), "names stay visible: {shown}");
    let destination = HttpDestination::new(everything()).unwrap();
    let shown = format!("{destination:?}");
    for secret in SECRETS {
        assert!(!shown.contains(secret), "`{secret}` leaked into {shown}");
    }
}

/// A signing secret kept in a file (a mounted secret) signs the requests, and the
/// configuration written back names the file, not the secret.
#[tokio::test]
async fn a_secret_given_by_file_signs_and_is_written_back_as_the_reference() {
    let rx = Receiver::start(Some(SECRET)).await;
    let path = std::env::temp_dir().join(unique_id("rse_hook_secret"));
    std::fs::write(&path, format!("{SECRET}\n")).unwrap();
    let text = json!({"url": rx.url(), "signing_secret": {"file": path}}).to_string();
    let config: HttpDestinationConfig = serde_json::from_str(&text).unwrap();
    let written = serde_json::to_string(&config).unwrap();
    assert!(written.contains(r#""signing_secret":{"file":"#) && !written.contains(SECRET), "{written}");
    assert!(!format!("{config:?}").contains(SECRET));

    let dest = HttpDestination::new(config).unwrap();
    let schema = conformance_schema();
    let outcome = dest.write(&batch_of(&schema, vec![(Op::Insert, row(1, "a"))])).await.unwrap();
    assert_eq!(outcome.outcomes, vec![ChangeOutcome::Applied]);
    let s = rx.lock();
    assert_eq!((s.bad_signatures, s.records.len()), (0, 1));
    drop(s);
    std::fs::remove_file(&path).unwrap();

    let missing = json!({"url": rx.url(), "signing_secret": {"file": path}}).to_string();
    let error = serde_json::from_str::<HttpDestinationConfig>(&missing).unwrap_err().to_string();
    assert!(error.contains("cannot read the secret file") && error.contains(&path.display().to_string()), "{error}");
    let unset = json!({"url": rx.url(), "bearer_token": {"env": "RSE_TEST_NO_SUCH_VARIABLE"}}).to_string();
    let error = serde_json::from_str::<HttpDestinationConfig>(&unset).unwrap_err().to_string();
    assert!(error.contains("`RSE_TEST_NO_SUCH_VARIABLE`, which holds a secret, is not set"), "{error}");
}

#[tokio::test]
async fn the_hosts_own_client_passes_the_conformance_suite() {
    let rx = Receiver::start(Some(SECRET)).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let dest = HttpDestination::from_client(client, config(&rx)).unwrap();
    check_destination(&dest, Some(&Readback(rx.clone()))).await.unwrap();
    assert_eq!(rx.lock().bad_signatures, 0);
}

/// A host's client that follows redirects has sent the write on before rse sees the
/// answer; that answer, from another address, must not mark any change delivered.
#[tokio::test]
async fn a_write_a_hosts_client_redirected_is_never_counted_delivered() {
    let rx = Receiver::start(None).await;
    let follows = reqwest::Client::new();
    let schema = conformance_schema();
    let two = batch_of(&schema, vec![(Op::Insert, row(1, "a")), (Op::Insert, row(2, "b"))]);
    let location = format!("http://localhost:{}/login?token=abc", rx.addr.port());
    for shape in [BodyShape::ArrayPerBatch, BodyShape::ObjectPerChange] {
        let config = HttpDestinationConfig::new(rx.url()).with_shape(shape);
        let dest = HttpDestination::from_client(follows.clone(), config).unwrap();
        rx.lock().script.push_back(answer(307, &[("location", &location)], ""));
        match dest.write(&two).await {
            Err(DestinationError::Fatal { message, .. }) => {
                assert!(message.contains("redirect") && message.contains("localhost"), "{message}");
                assert!(message.contains("Policy::none()"), "the message says what to change: {message}");
                assert!(!message.contains("token"), "the Location's query leaked: {message}");
            }
            other => panic!("{shape:?}: a followed redirect should end the run, got {other:?}"),
        }
    }
    let redirected = rx.lock().login_visits;
    assert!(redirected > 0, "the host's client did follow: the guard is what kept the changes undelivered");
    assert!(rx.lock().records.is_empty());
}
