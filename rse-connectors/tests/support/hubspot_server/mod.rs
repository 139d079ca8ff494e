//! An in-process HubSpot for tests and benches: CRM objects batch upsert, read and archive,
//! the properties listing and the OAuth token endpoint, answering as HubSpot documents, with
//! every request body and every response body checked against the contract.
//!
//! Follows /work/shared/contracts/hubspot/crm-batch-upsert.schema.json (its `x-roots`) and
//! SOURCE.md beside it; /work/shared/contracts/saas-contracts.md §1 (HubSpot) and §8 (what a
//! contract server enforces). Where the schema says nothing (archive, batch read, properties,
//! OAuth, rate limits) each module names the HubSpot documentation it follows, and the bodies
//! of archive and batch read are checked by this server's own rules ([`contract`]).
//!
//! A test ends with [`HubSpot::assert_no_violations`]: a request that breaks the contract is
//! recorded there (and answered 400, so it cannot pass unnoticed), and so is an answer of
//! this server that does not match the contract.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod auth;
pub mod contract;
pub mod crm;
pub mod limits;
pub mod read;
#[path = "../server_kit.rs"]
pub mod server_kit;
pub mod wire;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use auth::{OAuthApp, Validity};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use contract::Contract;
pub use crm::{ObjectType, PropertyDef, RuleInput, StoredRecord, Version};
use limits::Limits;
pub use limits::Policy;
use serde_json::{Value as Json, json};
use tokio::time::Instant;
use wire::Reply;

/// The private-app token every server accepts until told otherwise.
pub const TOKEN: &str = "pat-na1-rse-contract-token";

/// A fault to answer the next admitted CRM call with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 500 with an `Error` body, nothing applied (HubSpot emits these under load).
    ServerError,
    /// The call is applied, then a proxy answers 502: the acknowledgement is lost.
    LoseAck,
}

enum Route {
    Upsert(Version, String),
    Archive(Version, String),
    Read(Version, String),
    Properties(String),
    Token,
}

fn route(method: &Method, path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let dated = |v: &str| match v {
        "2026-03" => Some(Version::V2026_03),
        "2026-09" => Some(Version::V2026_09),
        _ => None,
    };
    let write = |version: Version, object: &str, op: &str| match op {
        "upsert" => Some(Route::Upsert(version, object.to_owned())),
        "archive" => Some(Route::Archive(version, object.to_owned())),
        "read" => Some(Route::Read(version, object.to_owned())),
        _ => None,
    };
    match (method.as_str(), segs.as_slice()) {
        ("POST", ["crm", "v3", "objects", object, "batch", op]) => write(Version::V3, object, op),
        ("POST", ["crm", "objects", v, object, "batch", op]) => write(dated(v)?, object, op),
        ("GET", ["crm", "v3", "properties", object]) => Some(Route::Properties((*object).to_owned())),
        ("GET", ["crm", "properties", v, object]) => dated(v).map(|_| Route::Properties((*object).to_owned())),
        ("POST", ["oauth", "v1", "token"]) => Some(Route::Token),
        _ => None,
    }
}

/// The server's state, shared with the test.
pub struct Inner {
    pub auth: auth::Auth,
    pub limits: Limits,
    pub crm: crm::Crm,
    /// Inputs allowed per batch call (100 is the figure HubSpot's docs cite).
    pub batch_limit: usize,
    /// Faults for the next admitted CRM calls, in order.
    pub faults: VecDeque<Fault>,
    /// Added before every answer.
    pub latency: Duration,
    /// Contract breaches, by the client or by this server.
    pub violations: Vec<String>,
    /// Every request, whatever its answer.
    pub requests: u64,
    /// Admitted CRM calls by endpoint (`upsert`, `read`, `archive`, `properties`), and `token`.
    pub calls: BTreeMap<&'static str, u64>,
    /// The bodies of upsert, read and archive calls, with their paths, when `keep_bodies`.
    pub keep_bodies: bool,
    pub bodies: Vec<(String, Json)>,
    /// Records archived, by object type name.
    pub archived: Vec<(String, u64)>,
    /// Faults answered.
    pub faults_answered: u64,
}

impl Inner {
    fn violation(&mut self, what: String) {
        self.violations.push(what);
    }

    fn json_body(&mut self, headers: &HeaderMap, body: &[u8], what: &str) -> Result<Json, Reply> {
        let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        if !content_type.starts_with("application/json") {
            self.violation(format!("{what}: content-type `{content_type}`, not application/json"));
            return Err(Reply::error(415, "VALIDATION_ERROR", "Content-Type must be application/json"));
        }
        serde_json::from_slice(body).map_err(|e| {
            self.violation(format!("{what}: body is not JSON ({e})"));
            Reply::error(400, "VALIDATION_ERROR", "Invalid input JSON: the body could not be parsed")
        })
    }

    fn checked(&mut self, root: &str, body: &Json, what: &str) -> Result<(), Reply> {
        let problems = Contract::get().check(root, body);
        if problems.is_empty() {
            return Ok(());
        }
        let first = problems[0].clone();
        for p in problems {
            self.violation(format!("{what}: request breaks {root}: {p}"));
        }
        Err(Reply::error(400, "VALIDATION_ERROR", format!("Invalid input JSON: {first}")))
    }

    fn serve(&mut self, route: Route, uri: &Uri, headers: &HeaderMap, body: &[u8], now: Instant) -> (Reply, bool) {
        if let Route::Token = route {
            *self.calls.entry("token").or_default() += 1;
            return match self.auth.token_endpoint(headers, body, now) {
                Ok(reply) => (reply, false),
                Err(problem) => {
                    self.violation(format!("POST /oauth/v1/token: {problem}"));
                    (Reply::undescribed(400, json!({"status": "BAD_GRANT_TYPE", "message": problem})), false)
                }
            };
        }
        if let Err(reply) = self.auth.check(headers, now) {
            return (reply, false);
        }
        if let Err(policy) = self.limits.admit(now) {
            return (Limits::refusal(policy), true);
        }
        let fault = self.faults.pop_front();
        if fault == Some(Fault::ServerError) {
            self.faults_answered += 1;
            return (Reply::error(500, "INTERNAL_ERROR", "An internal error occurred."), true);
        }
        let what = format!("{} {}", if matches!(route, Route::Properties(_)) { "GET" } else { "POST" }, uri.path());
        if let Some(query) = uri.query() {
            self.violation(format!("{what}: query `{query}`; this endpoint takes none (idProperty is a body field)"));
        }
        let reply = match route {
            Route::Upsert(version, object) => {
                *self.calls.entry("upsert").or_default() += 1;
                match self
                    .json_body(headers, body, &what)
                    .and_then(|b| self.checked(contract::REQUEST, &b, &what).map(|()| b))
                {
                    Err(reply) => reply,
                    Ok(b) => {
                        let reply = self.crm.upsert(version, &object, &b, self.batch_limit);
                        if self.keep_bodies {
                            self.bodies.push((uri.path().to_owned(), b));
                        }
                        reply
                    }
                }
            }
            Route::Archive(_, object) => {
                *self.calls.entry("archive").or_default() += 1;
                match self
                    .json_body(headers, body, &what)
                    .and_then(|b| self.checked(contract::ARCHIVE_REQUEST, &b, &what).map(|()| b))
                {
                    Err(reply) => reply,
                    Ok(b) => {
                        let (reply, archived) = self.crm.archive(&object, &b, self.batch_limit);
                        self.archived.extend(archived.into_iter().map(|id| (object.clone(), id)));
                        if self.keep_bodies {
                            self.bodies.push((uri.path().to_owned(), b));
                        }
                        reply
                    }
                }
            }
            Route::Read(version, object) => {
                *self.calls.entry("read").or_default() += 1;
                // The contract file covers upsert only: a read body is checked by this
                // server's rules, written from HubSpot's batch read reference (read.rs).
                match self
                    .json_body(headers, body, &what)
                    .and_then(|b| self.checked(contract::READ_REQUEST, &b, &what).map(|()| b))
                {
                    Err(reply) => reply,
                    Ok(b) => {
                        let reply = self.crm.read(version, &object, &b, self.batch_limit);
                        if self.keep_bodies {
                            self.bodies.push((uri.path().to_owned(), b));
                        }
                        reply
                    }
                }
            }
            Route::Properties(object) => {
                *self.calls.entry("properties").or_default() += 1;
                match self.crm.object(&object) {
                    Some(o) => Reply::undescribed(200, o.listing()),
                    None => {
                        Reply::error(404, "OBJECT_NOT_FOUND", format!("Unable to infer object type from: {object}"))
                    }
                }
            }
            Route::Token => unreachable!("answered above"),
        };
        if fault == Some(Fault::LoseAck) {
            self.faults_answered += 1;
            return (Reply::text(502, "<html><body>502 Bad Gateway</body></html>"), false);
        }
        (reply, true)
    }
}

/// A running contract server, shared with the test.
#[derive(Clone)]
pub struct HubSpot {
    pub inner: Arc<Mutex<Inner>>,
    pub addr: SocketAddr,
}

impl HubSpot {
    /// Starts a server on 127.0.0.1 at a free port, accepting [`TOKEN`], with HubSpot's
    /// Professional private-app limits (190 per 10 s, 1,000,000 a day) and `contacts`
    /// (unique `email`) and `companies` (unique `external_id`).
    pub async fn start() -> HubSpot {
        let mut auth = auth::Auth::default();
        auth.tokens.insert(TOKEN.to_owned(), Validity::default());
        let inner = Arc::new(Mutex::new(Inner {
            auth,
            limits: Limits::default(),
            crm: crm::Crm::default(),
            batch_limit: 100,
            faults: VecDeque::new(),
            latency: Duration::ZERO,
            violations: Vec::new(),
            requests: 0,
            calls: BTreeMap::new(),
            keep_bodies: true,
            bodies: Vec::new(),
            archived: Vec::new(),
            faults_answered: 0,
        }));
        let _ = Contract::get();
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let addr = server_kit::serve(app).await;
        HubSpot { inner, addr }
    }

    /// `http://127.0.0.1:port`, in place of `https://api.hubapi.com`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// Panics listing every contract breach seen.
    pub fn assert_no_violations(&self) {
        let v = self.violations();
        assert!(v.is_empty(), "{} contract violation(s):\n{}", v.len(), v.join("\n"));
    }

    // Settings.

    pub fn set_batch_limit(&self, n: usize) {
        self.lock().batch_limit = n;
    }

    /// An account validation rule: inputs it answers `Some(message)` for are refused.
    pub fn set_rule(&self, rule: impl Fn(&RuleInput<'_>) -> Option<String> + Send + Sync + 'static) {
        self.lock().crm.rule = Some(Arc::new(rule));
    }

    pub fn lift_rule(&self) {
        self.lock().crm.rule = None;
    }

    /// The rolling window: at most `n` per `per`; `None` for none.
    pub fn set_window(&self, window: Option<(u32, Duration)>) {
        self.lock().limits.window = window;
    }

    pub fn set_secondly(&self, n: Option<u32>) {
        self.lock().limits.secondly = n;
    }

    /// The daily allowance; `None` for an app without one.
    pub fn set_daily(&self, allowance: Option<u64>) {
        self.lock().limits.daily = allowance;
    }

    /// Midnight in the account's time zone: the daily count starts again.
    pub fn new_day(&self) {
        self.lock().limits.daily_used = 0;
    }

    pub fn inject(&self, fault: Fault, times: usize) {
        self.lock().faults.extend(std::iter::repeat_n(fault, times));
    }

    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// Adds an accepted access token.
    pub fn add_token(&self, token: &str, validity: Validity) {
        self.lock().auth.tokens.insert(token.to_owned(), validity);
    }

    /// `token` answers 401 `EXPIRED_AUTHENTICATION` from now on.
    pub fn expire_token(&self, token: &str) {
        self.lock().auth.tokens.insert(token.to_owned(), Validity::uses(0));
    }

    /// `token` is accepted for `n` more CRM calls, then answers 401.
    pub fn token_uses(&self, token: &str, n: u64) {
        self.lock().auth.tokens.insert(token.to_owned(), Validity::uses(n));
    }

    pub fn set_missing_scopes(&self, scopes: &[&str]) {
        self.lock().auth.missing_scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
    }

    /// Enables the OAuth token endpoint for `app`.
    pub fn enable_oauth(&self, app: OAuthApp) {
        self.lock().auth.oauth = Some(app);
    }

    pub fn add_object_type(&self, object: ObjectType) {
        self.lock().crm.types.push(object);
    }

    pub fn add_property(&self, object: &str, def: PropertyDef) {
        let mut s = self.lock();
        let o = s.crm.object_mut(object).expect("a known object type");
        o.properties.insert(def.name.clone(), def);
    }

    // What it holds and saw.

    /// The live record of `object` whose unique `property` is `value`.
    pub fn record(&self, object: &str, property: &str, value: &str) -> Option<StoredRecord> {
        self.lock().crm.object(object)?.find(property, value).cloned()
    }

    /// Every live record of `object`.
    pub fn live(&self, object: &str) -> Vec<StoredRecord> {
        let s = self.lock();
        s.crm.object(object).map(|o| o.records.values().filter(|r| !r.archived).cloned().collect()).unwrap_or_default()
    }

    /// Records created per (idProperty, id) of `object`.
    pub fn creations(&self, object: &str) -> HashMap<(String, String), u32> {
        self.lock().crm.object(object).map(|o| o.creations.clone()).unwrap_or_default()
    }

    /// 429 answers, all policies.
    pub fn too_many(&self) -> u64 {
        self.lock().limits.refused.values().sum()
    }

    pub fn refused(&self, policy: Policy) -> u64 {
        self.lock().limits.refused.get(&policy).copied().unwrap_or(0)
    }

    pub fn calls(&self, endpoint: &str) -> u64 {
        self.lock().calls.get(endpoint).copied().unwrap_or(0)
    }

    /// The most CRM calls admitted within any window of `per`.
    pub fn max_in_window(&self, per: Duration) -> usize {
        self.lock().limits.max_in_window(per)
    }

    pub fn daily_used(&self) -> u64 {
        self.lock().limits.daily_used
    }
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let latency = inner.lock().unwrap().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let now = Instant::now();
    let mut s = inner.lock().unwrap();
    s.requests += 1;
    let Some(r) = route(&method, uri.path()) else {
        s.violation(format!("{method} {}: no such endpoint", uri.path()));
        return respond(&mut s, Reply::error(404, "OBJECT_NOT_FOUND", "No such endpoint"), now, false);
    };
    let (reply, rate_headers) = s.serve(r, &uri, &headers, &body, now);
    respond(&mut s, reply, now, rate_headers)
}

fn respond(s: &mut Inner, reply: Reply, now: Instant, rate_headers: bool) -> Response {
    if let (Some(body), Some(root)) = (&reply.body, reply.root) {
        for p in Contract::get().check(root, body) {
            s.violation(format!("this server's {} answer breaks {root}: {p}", reply.status));
        }
    }
    let (content_type, bytes) = match (&reply.body, &reply.text) {
        (Some(b), _) => ("application/json;charset=utf-8", b.to_string()),
        (None, Some(t)) => ("text/html", t.clone()),
        (None, None) => ("", String::new()),
    };
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap();
    let h = response.headers_mut();
    if !content_type.is_empty() {
        h.insert("content-type", HeaderValue::from_static(content_type));
    }
    if rate_headers {
        for (name, value) in s.limits.headers(now) {
            h.insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(&value).unwrap());
        }
    }
    response
}
