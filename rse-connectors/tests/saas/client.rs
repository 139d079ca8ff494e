//! The kit's HTTP client against the in-process API.

use std::collections::HashMap;
use std::time::Duration;

use rse_connectors::DestinationError;
use rse_connectors::saas::{
    Classifier, DefaultClassifier, Failure, SaasAuthConfig, SaasClient, SaasClientOptions, SaasRequest, USER_AGENT,
    quota_exhausted,
};
use serde_json::Value as Json;

use crate::oauth_server::OAuthServer;

fn client(options: SaasClientOptions) -> SaasClient {
    SaasClient::new("vendor:test", &SaasAuthConfig::Bearer { token: "pat-0000".into() }, options).unwrap()
}

#[tokio::test]
async fn requests_say_who_sends_them_and_take_gzip() {
    let server = OAuthServer::start().await;
    let client = client(SaasClientOptions::default());
    let answer = client.send(&SaasRequest::get(server.url("/api/whoami"))).await.unwrap();
    assert_eq!(answer.status().as_u16(), 401);
    {
        let s = server.lock();
        assert_eq!(s.user_agents, [USER_AGENT]);
        assert_eq!(USER_AGENT, concat!("rse/", env!("CARGO_PKG_VERSION")));
        assert!(s.accept_encodings[0].contains("gzip"), "{:?}", s.accept_encodings);
    }
    let answer = client.send(&SaasRequest::get(server.url("/api/gzip"))).await.unwrap();
    let body: Json = answer.json("the gzip answer").unwrap();
    assert_eq!(body, serde_json::json!({"compressed": true}));
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let server = OAuthServer::start().await;
    let answer = client(SaasClientOptions::default()).send(&SaasRequest::get(server.url("/api/moved"))).await.unwrap();
    assert_eq!(answer.status().as_u16(), 302);
    let error = answer.error(&DefaultClassifier);
    let message = error.to_string();
    assert!(matches!(error, DestinationError::Fatal { .. }), "{error:?}");
    assert!(message.contains("vendor:test: HTTP 302 Found"), "{message}");
    assert!(!message.contains("session"), "{message}");
}

#[tokio::test]
async fn answers_are_read_up_to_the_cap_and_parsed_without_repeating_values() {
    let server = OAuthServer::start().await;
    let client = client(SaasClientOptions::default().with_max_body_bytes(1000));
    let big = client.send(&SaasRequest::get(server.url("/api/big"))).await.unwrap();
    assert!(!big.is_complete() && big.body().len() == 1000);
    let error = big.json::<Vec<u64>>("the big answer").unwrap_err().to_string();
    assert!(error.contains("the big answer is larger than 1000 bytes; raise `max_body_bytes`"), "{error}");
    let whole = client.send(&SaasRequest::get(server.url("/api/big")).with_max_body_bytes(1 << 20)).await.unwrap();
    assert_eq!(whole.json::<Vec<u64>>("the big answer").unwrap().len(), 5001);

    // A 401 body whose message repeats an address, read as the wrong shape.
    let refused = client.send(&SaasRequest::get(server.url("/api/whoami"))).await.unwrap();
    let error = refused.json::<Vec<HashMap<String, u64>>>("the whoami answer").unwrap_err().to_string();
    assert!(error.contains("the whoami answer is not the JSON expected (HTTP 401, at line 1, column"), "{error}");
    assert!(!error.contains("ada@") && !error.contains("Session"), "{error}");
}

#[tokio::test]
async fn no_answer_is_transient_and_names_the_host_only() {
    let server = OAuthServer::start().await;
    let client = client(SaasClientOptions::default().with_request_timeout(Duration::from_millis(200)));
    let error = client.send(&SaasRequest::get(server.url("/api/slow?email=ada%40example.com"))).await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, DestinationError::Transient { .. }), "{error:?}");
    assert!(message.contains(&format!("vendor:test: no answer from {} in time", server.base())), "{message}");
    assert!(!message.contains("slow") && !message.contains("ada"), "{message}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let url = reqwest::Url::parse(&format!("http://{addr}/api")).unwrap();
    let error = client.send(&SaasRequest::get(url)).await.unwrap_err();
    assert!(matches!(error, DestinationError::Transient { .. }), "{error:?}");
    assert!(error.to_string().contains("could not connect"), "{error}");
}

/// HubSpot's 429s (saas-contracts §1): `policyName` `DAILY` is the day's allowance,
/// `TEN_SECONDLY_ROLLING` a window.
struct HubSpotLike;

impl Classifier for HubSpotLike {
    fn classify(&self, failure: &Failure<'_>) -> Option<DestinationError> {
        let daily = failure.status().as_u16() == 429 && failure.json()?.get("policyName")?.as_str()? == "DAILY";
        daily.then(|| quota_exhausted(format!("{}: the daily API allowance is used up", failure.describe()), None))
    }
}

#[tokio::test]
async fn a_vendor_classifier_overrides_the_default_for_what_it_knows() {
    let server = OAuthServer::start().await;
    let body = |policy: &str| {
        format!(
            r#"{{"status":"error","message":"You have reached your {policy} limit.","errorType":"RATE_LIMIT","policyName":"{policy}"}}"#
        )
    };
    {
        let mut s = server.lock();
        s.script.push_back((429, vec![], body("DAILY")));
        s.script.push_back((429, vec![("retry-after", "3".to_owned())], body("TEN_SECONDLY_ROLLING")));
        s.script.push_back((503, vec![], String::new()));
    }
    let client = client(SaasClientOptions::default());
    let mut errors = Vec::new();
    for _ in 0..3 {
        let answer = client.send(&SaasRequest::get(server.url("/api/scripted"))).await.unwrap();
        errors.push(answer.success_or(&HubSpotLike).unwrap_err());
    }
    assert!(
        matches!(&errors[0], DestinationError::QuotaExhausted { message, resets_in: None }
        if message.contains("HTTP 429 Too Many Requests (errorType=RATE_LIMIT, policyName=DAILY)")),
        "{:?}",
        errors[0]
    );
    assert!(matches!(errors[1], DestinationError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(3)));
    assert!(matches!(errors[2], DestinationError::Transient { .. }));
}

#[test]
fn options_are_data() {
    let options: SaasClientOptions =
        serde_json::from_str(r#"{"request_timeout": "2m", "max_body_bytes": 1048576}"#).unwrap();
    assert_eq!(options.request_timeout, Duration::from_secs(120));
    assert_eq!(options.connect_timeout, Duration::from_secs(10));
    let unknown = serde_json::from_str::<SaasClientOptions>(r#"{"request_timout": "2m"}"#).unwrap_err();
    assert!(unknown.to_string().contains("unknown field `request_timout`"), "{unknown}");
}

#[tokio::test]
async fn requests_are_counted_by_the_class_of_their_answer() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use rse_core::metrics::{CLASS, DESTINATION, HTTP_REQUESTS_TOTAL};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // The test's runtime runs on this thread: every request is counted here.
    let _local = metrics::set_default_local_recorder(&recorder);

    let server = OAuthServer::start().await;
    {
        let mut s = server.lock();
        s.script.push_back((429, vec![("retry-after", "1".to_owned())], String::new()));
        s.script.push_back((503, vec![], String::new()));
        s.script.push_back((202, vec![], String::new()));
    }
    let client = client(SaasClientOptions::default().with_request_timeout(Duration::from_millis(200)));
    for path in ["/api/scripted", "/api/scripted", "/api/scripted", "/api/gzip", "/api/moved", "/api/whoami"] {
        client.send(&SaasRequest::get(server.url(path))).await.unwrap();
    }
    // The script is spent: 404.
    client.send(&SaasRequest::get(server.url("/api/scripted"))).await.unwrap();
    client.send(&SaasRequest::get(server.url("/api/slow"))).await.unwrap_err();

    let mut counts = HashMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        assert_eq!(key.name(), HTTP_REQUESTS_TOTAL);
        let labels: HashMap<&str, &str> = key.labels().map(|l| (l.key(), l.value())).collect();
        assert_eq!(labels.len(), 2, "{labels:?}");
        assert_eq!(labels[DESTINATION], "vendor", "the destination's kind, not its whole name");
        let DebugValue::Counter(n) = value else { panic!("{value:?}") };
        counts.insert(labels[CLASS].to_owned(), n);
    }
    let expected: HashMap<String, u64> = [("429", 1), ("5xx", 1), ("2xx", 2), ("3xx", 1), ("4xx", 2), ("error", 1)]
        .map(|(c, n)| (c.to_owned(), n))
        .into();
    assert_eq!(counts, expected);
}
