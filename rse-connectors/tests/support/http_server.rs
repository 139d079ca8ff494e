//! A webhook receiver for tests and benches: verifies signatures, deduplicates on
//! idempotency keys, enforces and measures a quota, and can be told to misbehave.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hmac::{Hmac, Mac};
use serde_json::{Value as Json, json};
use sha2::Sha256;
use tokio::time::Instant;

/// What the server does with one request, overriding normal handling.
#[derive(Debug, Clone)]
pub enum Misbehave {
    /// 429 with this `Retry-After` header value.
    TooMany(String),
    /// This status, without applying anything.
    Status(u16),
    /// Apply the body, then answer 503: the acknowledgement is lost.
    LoseAck,
    /// Apply the body, then wait this long before answering (past the client's timeout).
    Stall(Duration),
    /// 400 with a body naming the problem.
    BadRequest,
    /// This status, these headers and this body, without applying anything.
    Answer { status: u16, headers: Vec<(String, String)>, body: String },
}

/// The receiver's state, shared with the test.
#[derive(Default)]
pub struct Inner {
    pub secret: Option<String>,
    /// Answers for the next requests, in order.
    pub script: VecDeque<Misbehave>,
    /// Misbehave on every n-th request (1-based count of requests), checked in order.
    pub every: Vec<(u64, Misbehave)>,
    /// The quota it enforces: at most `.0` requests in any window of `.1`.
    pub quota: Option<(usize, Duration)>,
    /// Records held, by the JSON text of their key object.
    pub records: HashMap<String, Json>,
    /// How many times each idempotency key was applied (a duplicate is not applied).
    pub applied: HashMap<String, u32>,
    /// Changes dropped because their idempotency key was applied before.
    pub duplicates: u64,
    /// Arrival time of every request.
    pub arrivals: Vec<Instant>,
    pub requests: u64,
    pub bad_signatures: u64,
    pub over_quota: u64,
    /// `Idempotency-Key` headers seen, in order.
    pub header_keys: Vec<String>,
    /// Records whose `name` field equals this are refused in the body of a 200.
    pub refuse_name: Option<String>,
    /// Only count the changes received (`rows`) instead of applying them: for benchmarks.
    pub count_only: bool,
    /// Changes received, counted when `count_only`.
    pub rows: u64,
    /// Bodies received, raw, when `keep_bodies`.
    pub keep_bodies: bool,
    pub bodies: Vec<Json>,
    /// Requests that reached `/login`, where the scripted redirects point.
    pub login_visits: u64,
}

#[derive(Clone)]
pub struct Receiver {
    pub inner: Arc<Mutex<Inner>>,
    pub addr: SocketAddr,
}

impl Receiver {
    /// Starts a receiver on 127.0.0.1 at a free port; it lives as long as the runtime.
    pub async fn start(secret: Option<&str>) -> Receiver {
        let inner = Arc::new(Mutex::new(Inner { secret: secret.map(str::to_owned), ..Inner::default() }));
        let app = Router::new()
            .route("/hook", post(hook))
            .route("/health", get(|| async { "ok" }))
            .route("/login", get(login).post(login))
            .route("/moved", get(|| async { (StatusCode::FOUND, [("location", "/login?token=abc")]).into_response() }))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { inner, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    /// The most requests that arrived within any window of `per`.
    pub fn max_in_window(&self, per: Duration) -> usize {
        let arrivals = self.lock().arrivals.clone();
        let mut max = 0;
        let mut start = 0;
        for (end, t) in arrivals.iter().enumerate() {
            while *t - arrivals[start] >= per {
                start += 1;
            }
            max = max.max(end - start + 1);
        }
        max
    }
}

/// A sign-in page: where a misconfigured webhook URL gets redirected to. It answers 200.
async fn login(State(inner): State<Arc<Mutex<Inner>>>) -> Response {
    inner.lock().unwrap().login_visits += 1;
    ([("content-type", "text/html")], "<html>please sign in</html>").into_response()
}

fn signature_ok(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let (Some(sig), Some(ts)) = (headers.get("x-rse-signature"), headers.get("x-rse-timestamp")) else {
        return false;
    };
    let Some(hex) = sig.to_str().ok().and_then(|s| s.strip_prefix("sha256=")) else { return false };
    let Ok(ts) = ts.to_str() else { return false };
    let Some(expected) = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

async fn hook(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap, body: Bytes) -> Response {
    let now = Instant::now();
    let action = {
        let mut s = inner.lock().unwrap();
        s.arrivals.push(now);
        s.requests += 1;
        if let Some(k) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
            s.header_keys.push(k.to_owned());
        }
        if let Some(secret) = s.secret.clone()
            && !signature_ok(&secret, &headers, &body)
        {
            s.bad_signatures += 1;
            return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
        }
        if let Some((n, per)) = s.quota {
            let recent = s.arrivals.iter().rev().take_while(|t| now - **t < per).count();
            if recent > n {
                s.over_quota += 1;
                return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "over quota").into_response();
            }
        }
        let count = s.requests;
        s.script.pop_front().or_else(|| s.every.iter().find(|(n, _)| count % n == 0).map(|(_, m)| m.clone()))
    };
    match action {
        Some(Misbehave::TooMany(after)) => {
            return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", after)], "slow down").into_response();
        }
        Some(Misbehave::Status(code)) => return StatusCode::from_u16(code).unwrap().into_response(),
        Some(Misbehave::BadRequest) => return (StatusCode::BAD_REQUEST, "field `email` is malformed").into_response(),
        Some(Misbehave::Answer { status, headers, body }) => {
            let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
            for (name, value) in headers {
                let name = axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap();
                response.headers_mut().append(name, axum::http::HeaderValue::from_str(&value).unwrap());
            }
            return response;
        }
        _ => {}
    }
    let Ok(parsed) = serde_json::from_slice::<Json>(&body) else {
        return (StatusCode::BAD_REQUEST, "body is not JSON").into_response();
    };
    let items = match &parsed {
        Json::Array(items) => items.clone(),
        other => vec![other.clone()],
    };
    let mut errors = Vec::new();
    {
        let mut s = inner.lock().unwrap();
        if s.count_only {
            s.rows += items.len() as u64;
            return ([("content-type", "application/json")], r#"{"ok":true,"errors":[]}"#).into_response();
        }
        if s.keep_bodies {
            s.bodies.push(parsed.clone());
        }
        for (index, item) in items.iter().enumerate() {
            let refuse = s.refuse_name.clone();
            if let Some(name) = refuse
                && item.pointer("/record/name").and_then(Json::as_str) == Some(name.as_str())
            {
                // As receivers often do, the message repeats the refused value.
                errors.push(json!({"index": index, "code": "not_allowed", "field": "name",
                                   "message": format!("name {name} is not allowed")}));
                continue;
            }
            let Some(key) = item.get("idempotency_key").and_then(Json::as_str) else { continue };
            if s.applied.contains_key(key) {
                s.duplicates += 1;
                continue;
            }
            *s.applied.entry(key.to_owned()).or_default() += 1;
            let record_key = item.get("key").map(|k| k.to_string()).unwrap_or_default();
            match item.get("op").and_then(Json::as_str) {
                Some("delete") => {
                    s.records.remove(&record_key);
                }
                _ => {
                    s.records.insert(record_key, item.get("record").cloned().unwrap_or(Json::Null));
                }
            }
        }
    }
    match action {
        Some(Misbehave::LoseAck) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Some(Misbehave::Stall(d)) => {
            tokio::time::sleep(d).await;
            StatusCode::OK.into_response()
        }
        _ => ([("content-type", "application/json")], json!({"ok": errors.is_empty(), "errors": errors}).to_string())
            .into_response(),
    }
}

/// What a plain REST API holds and saw, shared with the test.
#[derive(Default)]
pub struct RestStore {
    /// Customers by id, as sent.
    pub customers: std::collections::BTreeMap<String, Json>,
    /// `METHOD raw-path` of every request, in order.
    pub requests: Vec<String>,
    /// A status to answer for an id instead of handling the request.
    pub answers: HashMap<String, u16>,
}

/// A plain REST API that knows nothing of rse: `PUT /customers/{id}` stores the JSON object
/// sent (201 when new, 200 when replaced), `DELETE /customers/{id}` removes it (204, or 404
/// when there is none). It refuses what such an API refuses: a body that is not a JSON
/// object, a body on a delete, an `id` in the body that differs from the one in the path.
#[derive(Clone)]
pub struct RestApi {
    pub store: Arc<Mutex<RestStore>>,
    pub addr: SocketAddr,
}

impl RestApi {
    /// Starts the API on 127.0.0.1 at a free port; it lives as long as the runtime.
    pub async fn start() -> RestApi {
        let store = Arc::new(Mutex::new(RestStore::default()));
        let app = Router::new()
            .route("/customers/{id}", axum::routing::put(rest_put).delete(rest_delete))
            .with_state(store.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        RestApi { store, addr }
    }

    /// The API's base URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, RestStore> {
        self.store.lock().unwrap()
    }
}

type Rest = State<Arc<Mutex<RestStore>>>;

fn rest_seen(store: &Mutex<RestStore>, method: &str, uri: &axum::http::Uri, id: &str) -> Option<u16> {
    let mut s = store.lock().unwrap();
    s.requests.push(format!("{method} {}", uri.path()));
    s.answers.get(id).copied()
}

async fn rest_put(
    State(store): Rest,
    axum::extract::Path(id): axum::extract::Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(code) = rest_seen(&store, "PUT", &uri, &id) {
        return (StatusCode::from_u16(code).unwrap(), "scripted answer").into_response();
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "send application/json").into_response();
    }
    let Ok(Json::Object(customer)) = serde_json::from_slice::<Json>(&body) else {
        return (StatusCode::BAD_REQUEST, "expected one JSON object").into_response();
    };
    if customer.get("id").is_some_and(|v| v.as_str() != Some(id.as_str())) {
        return (StatusCode::UNPROCESSABLE_ENTITY, "`id` differs from the path").into_response();
    }
    let replaced = store.lock().unwrap().customers.insert(id, Json::Object(customer)).is_some();
    if replaced { StatusCode::OK } else { StatusCode::CREATED }.into_response()
}

async fn rest_delete(
    State(store): Rest,
    axum::extract::Path(id): axum::extract::Path<String>,
    uri: axum::http::Uri,
    body: Bytes,
) -> Response {
    if let Some(code) = rest_seen(&store, "DELETE", &uri, &id) {
        return (StatusCode::from_u16(code).unwrap(), "scripted answer").into_response();
    }
    if !body.is_empty() {
        return (StatusCode::BAD_REQUEST, "a delete has no body").into_response();
    }
    match store.lock().unwrap().customers.remove(&id) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => (StatusCode::NOT_FOUND, "no such customer").into_response(),
    }
}
