//! An in-process Meta Graph API for tests: Custom Audiences `/users` (add, remove),
//! `/usersreplace`, the sessions edge and the audience node, answering as Meta documents,
//! with the `custom_audience` Business Use Case rate limit and its usage header.
//!
//! No machine-readable description of these endpoints exists (see
//! /work/shared/contracts/README.md); this server follows Meta's documentation, summarised in
//! /work/shared/contracts/saas-contracts.md §4 (Meta), §8 (the Meta row: what a contract
//! server enforces) and §9 (what stays unverified), and these pages:
//! - Marketing API reference "Custom Audience Users" and "Custom Audience Usersreplace"
//!   (developers.facebook.com/documentation/ads-commerce/marketing-api/reference/custom-audience/users,
//!   …/usersreplace), and "Custom Audience Session" (…/reference/custom-audience-session);
//! - the guide "Customer File Custom Audiences" (…/marketing-api/audiences/guides/custom-audiences):
//!   sessions, multi-key matching, hashing and normalisation, the Replace Users API and its
//!   2650 subcodes;
//! - "Marketing API: Rate limiting" and "Graph API: Rate limiting" (the BUC header);
//! - "Graph API: Handling errors" (the error envelope).
//!
//! Each module says which part it follows and what it chose where Meta is silent. A test
//! ends with [`Meta::assert_no_violations`]: a request that breaks what Meta documents is
//! recorded there (and answered with an error, so it cannot pass unnoticed).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod audience;
pub mod auth;
pub mod limits;
pub mod payload;
#[path = "../server_kit.rs"]
pub mod server_kit;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use audience::{Audience, Edge, InvalidRows, Sent, Session};
pub use auth::Validity;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use tokio::time::Instant;
use wire::Reply;

/// The system-user token every server accepts until told otherwise.
pub const TOKEN: &str = "EAAGrseContractSystemUserToken";
/// The audience every server starts with.
pub const AUDIENCE: &str = "23850000000000001";
/// Its ad account (numeric id, as the usage header keys it).
pub const AD_ACCOUNT: &str = "1000000000001";
/// Graph API versions answered; an older `vNN.0` is refused as deprecated (code 2635).
pub const VERSIONS: [&str; 3] = ["v23.0", "v24.0", "v25.0"];

/// A fault to answer the next admitted audience call with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 500 with a Graph error (code 2, "Service temporarily unavailable"), nothing applied.
    ServerError,
    /// The call is applied, then a proxy answers 502: the acknowledgement is lost.
    LoseAck,
    /// A throttle error with this code (17, 613, 80003, 80004), nothing applied.
    Throttle(u32),
}

enum Route {
    Write(Edge, String),
    Sessions(String),
    Node(String),
}

/// The server's state, shared with the test.
pub struct Inner {
    pub auth: auth::Auth,
    /// The `custom_audience` BUC score of each ad account.
    pub buc: BTreeMap<String, limits::Buc>,
    pub audiences: audience::Audiences,
    pub faults: VecDeque<Fault>,
    /// Added to the real clock: [`Meta::advance`] moves time on without waiting.
    pub skew: Duration,
    pub latency: Duration,
    pub violations: Vec<String>,
    /// Every request, whatever its answer.
    pub requests: u64,
    /// Admitted calls by endpoint (`add`, `remove`, `replace`, `sessions`, `node`).
    pub calls: BTreeMap<&'static str, u64>,
    /// Throttle answers (BUC and injected), by code.
    pub throttles: BTreeMap<u32, u64>,
    pub faults_answered: u64,
}

impl Inner {
    fn now(&self) -> Instant {
        Instant::now() + self.skew
    }

    fn violation(&mut self, what: String) {
        self.violations.push(what);
    }

    fn serve(
        &mut self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        now: Instant,
    ) -> (Reply, Option<String>) {
        let what = format!("{method} {}", uri.path());
        let segs: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
        let Some((version, rest)) = segs.split_first() else {
            return (Reply::error(2500, None, "Unknown path components"), None);
        };
        if !VERSIONS.contains(version) {
            let old = version.strip_prefix('v').and_then(|v| v.split('.').next()?.parse::<u32>().ok());
            return match old {
                Some(n) if n < 23 => (
                    Reply::error(
                        2635,
                        None,
                        "You are calling a deprecated version of the Ads API. Please update to the latest version.",
                    ),
                    None,
                ),
                _ => {
                    self.violation(format!("{what}: no Graph API version `{version}`"));
                    (Reply::error(2500, None, &format!("Unknown path components: /{version}")), None)
                }
            };
        }
        let route = match (method.as_str(), rest) {
            ("POST", [id, "users"]) => Route::Write(Edge::Add, (*id).to_owned()),
            ("DELETE", [id, "users"]) => Route::Write(Edge::Remove, (*id).to_owned()),
            ("POST", [id, "usersreplace"]) => Route::Write(Edge::Replace, (*id).to_owned()),
            ("GET", [id, "sessions"]) => Route::Sessions((*id).to_owned()),
            ("GET", [id]) => Route::Node((*id).to_owned()),
            _ => {
                self.violation(format!("{what}: no such endpoint"));
                return (Reply::error(2500, None, "Unknown path components"), None);
            }
        };
        let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        let query = uri.query().map(wire::parse_form).unwrap_or_default();
        let mut params = match wire::params(uri.query(), content_type, body) {
            Ok(p) => p,
            Err(problem) => {
                self.violation(format!("{what}: {problem}"));
                return (Reply::error(100, None, "Invalid parameter"), None);
            }
        };
        // `method=DELETE` on a POST removes, as the guide allows.
        let route = match route {
            Route::Write(Edge::Add, id) if params.get("method").is_some_and(|m| m.eq_ignore_ascii_case("delete")) => {
                Route::Write(Edge::Remove, id)
            }
            r => r,
        };
        params.remove("method");
        if let Err(reply) = self.auth.check(headers, &query, &params, now) {
            return (reply, None);
        }
        let id = match &route {
            Route::Write(_, id) | Route::Sessions(id) | Route::Node(id) => id.clone(),
        };
        let account = match self.audiences.usable(&id) {
            Ok(a) => a.account.clone(),
            Err(reply) => return (reply, None),
        };
        self.audiences.tick(now);
        let buc = self.buc.entry(account.clone()).or_default();
        let score = if matches!(route, Route::Write(..)) { buc.write_score } else { 1 };
        if let Err(reply) = buc.admit(now, score) {
            *self.throttles.entry(80003).or_default() += 1;
            let header = buc.header(&account, now);
            return (reply, Some(header));
        }
        let fault = if matches!(route, Route::Write(..)) { self.faults.pop_front() } else { None };
        match fault {
            Some(Fault::ServerError) => {
                self.faults_answered += 1;
                let header = self.buc.get_mut(&account).map(|b| b.header(&account, now));
                return (Reply::error_with(500, 2, None, "Service temporarily unavailable", None), header);
            }
            Some(Fault::Throttle(code)) => {
                self.faults_answered += 1;
                *self.throttles.entry(code).or_default() += 1;
                let (sub, message) = match code {
                    17 => (Some(2_446_079), "User request limit reached"),
                    613 => (
                        Some(1_487_742),
                        "There have been too many calls from this ad-account. Please wait a bit and try again.",
                    ),
                    _ => (None, "There have been too many calls to this ad-account. Wait a bit and try again."),
                };
                let header = self.buc.get_mut(&account).map(|b| b.header(&account, now));
                return (Reply::error(code, sub, message), header);
            }
            _ => {}
        }
        let known: &[&str] = match route {
            Route::Write(..) => &["payload", "session", "access_token", "namespace", "appsecret_proof"],
            Route::Sessions(_) => &["session_id", "fields", "limit", "after", "access_token", "appsecret_proof"],
            Route::Node(_) => &["fields", "access_token", "appsecret_proof"],
        };
        for name in params.keys() {
            if !known.contains(&name.as_str()) {
                self.violations.push(format!("{what}: unknown parameter `{name}`"));
            }
        }
        let reply = match route {
            Route::Write(edge, id) => {
                *self
                    .calls
                    .entry(match edge {
                        Edge::Add => "add",
                        Edge::Remove => "remove",
                        Edge::Replace => "replace",
                    })
                    .or_default() += 1;
                let mut violations = Vec::new();
                let reply = self.audiences.write(edge, &id, &params, now, &mut violations);
                self.violations.extend(violations);
                reply
            }
            Route::Sessions(id) => {
                *self.calls.entry("sessions").or_default() += 1;
                self.audiences.read_sessions(&id, &params)
            }
            Route::Node(id) => {
                *self.calls.entry("node").or_default() += 1;
                self.audiences.read_audience(&id, &params)
            }
        };
        let header = self.buc.get_mut(&account).map(|b| b.header(&account, now));
        if fault == Some(Fault::LoseAck) {
            self.faults_answered += 1;
            return (Reply::text(502, "<html><body>502 Bad Gateway</body></html>"), None);
        }
        (reply, header)
    }
}

/// A running server, shared with the test.
#[derive(Clone)]
pub struct Meta {
    pub inner: Arc<Mutex<Inner>>,
    pub addr: SocketAddr,
}

impl Meta {
    /// Starts a server on 127.0.0.1 at a free port, accepting [`TOKEN`], holding the empty
    /// audience [`AUDIENCE`] of ad account [`AD_ACCOUNT`], with the Standard tier's
    /// `custom_audience` floor (190,000 per hour, a write scoring 3).
    pub async fn start() -> Meta {
        let mut auth = auth::Auth::default();
        auth.tokens.insert(TOKEN.to_owned(), Validity::default());
        let inner = Arc::new(Mutex::new(Inner {
            auth,
            buc: BTreeMap::new(),
            audiences: audience::Audiences::default(),
            faults: VecDeque::new(),
            skew: Duration::ZERO,
            latency: Duration::ZERO,
            violations: Vec::new(),
            requests: 0,
            calls: BTreeMap::new(),
            throttles: BTreeMap::new(),
            faults_answered: 0,
        }));
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let addr = server_kit::serve(app).await;
        let meta = Meta { inner, addr };
        meta.add_audience(AUDIENCE, AD_ACCOUNT);
        meta
    }

    /// `http://127.0.0.1:port`, in place of `https://graph.facebook.com`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// Panics listing every breach seen.
    pub fn assert_no_violations(&self) {
        let v = self.violations();
        assert!(v.is_empty(), "{} violation(s) of Meta's documented contract:\n{}", v.len(), v.join("\n"));
    }

    // Settings.

    /// Adds an empty customer-file audience.
    pub fn add_audience(&self, id: &str, account: &str) {
        self.lock().audiences.by_id.insert(
            id.to_owned(),
            Audience {
                id: id.to_owned(),
                name: format!("rse audience {id}"),
                account: account.to_owned(),
                data: None,
                members: BTreeSet::new(),
                restricted: false,
                replacing: None,
                replaced: 0,
            },
        );
    }

    /// Flags the audience (operation_status 471): membership edits answer 100/1713230.
    pub fn restrict(&self, id: &str, restricted: bool) {
        self.lock().audiences.by_id.get_mut(id).unwrap().restricted = restricted;
    }

    /// The caller is no admin of `account`'s audiences (100/33).
    pub fn set_not_admin(&self, account: &str) {
        self.lock().audiences.not_admin.insert(account.to_owned());
    }

    /// Identifiers of people on the platform (`num_matched` counts rows with one).
    pub fn know(&self, ids: impl IntoIterator<Item = (&'static str, String)>) {
        let mut s = self.lock();
        s.audiences.known.extend(ids.into_iter().map(|(k, v)| (k.to_owned(), v)));
    }

    /// Meta will drop rows holding this identifier as invalid.
    pub fn refuse(&self, key: &str, value: &str) {
        self.lock().audiences.refused.insert((key.to_owned(), value.to_owned()));
    }

    pub fn set_invalid_rows(&self, mode: InvalidRows) {
        self.lock().audiences.invalid_rows = mode;
    }

    /// Session reads answering `processing` after a session closed.
    pub fn set_settle_reads(&self, n: u32) {
        self.lock().audiences.settle_reads = n;
    }

    /// The `custom_audience` BUC of `account`: `limit` per `per`, a write scoring `write_score`.
    pub fn set_buc(&self, account: &str, limit: u64, per: Duration, write_score: u64) {
        let mut s = self.lock();
        let b = s.buc.entry(account.to_owned()).or_default();
        b.limit = limit;
        b.per = per;
        b.write_score = write_score;
    }

    pub fn inject(&self, fault: Fault, times: usize) {
        self.lock().faults.extend(std::iter::repeat_n(fault, times));
    }

    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// Moves the server's clock on (token expiry, session windows, BUC windows).
    pub fn advance(&self, by: Duration) {
        let mut s = self.lock();
        s.skew += by;
        let now = s.now();
        s.audiences.tick(now);
    }

    pub fn add_token(&self, token: &str) {
        self.lock().auth.tokens.insert(token.to_owned(), Validity::default());
    }

    /// `token` answers 190/463 from now on.
    pub fn expire_token(&self, token: &str) {
        self.lock().auth.tokens.insert(token.to_owned(), Validity::uses(0));
    }

    /// `token` is accepted for `n` more calls, then expires.
    pub fn token_uses(&self, token: &str, n: u64) {
        self.lock().auth.tokens.insert(token.to_owned(), Validity::uses(n));
    }

    /// Every call answers this permission error (200 or 10); `None` lifts it.
    pub fn set_permission_error(&self, code: Option<u32>) {
        self.lock().auth.permission_error = code;
    }

    // What it holds and saw.

    /// The audience's identifiers as `KEY:value`.
    pub fn audience(&self, id: &str) -> BTreeSet<String> {
        let s = self.lock();
        s.audiences.by_id[id].members.iter().map(|(k, v)| format!("{k}:{v}")).collect()
    }

    /// The audience's values of one key.
    pub fn values(&self, id: &str, key: &str) -> BTreeSet<String> {
        let s = self.lock();
        s.audiences.by_id[id].members.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()).collect()
    }

    pub fn audience_state(&self, id: &str) -> Audience {
        self.lock().audiences.by_id[id].clone()
    }

    /// Every session of the audience, by id.
    pub fn sessions(&self, id: &str) -> BTreeMap<i64, Session> {
        let s = self.lock();
        s.audiences.sessions.values().filter(|x| x.audience == id).map(|x| (x.id, x.clone())).collect()
    }

    /// Every write call as understood.
    pub fn sent(&self) -> Vec<Sent> {
        self.lock().audiences.sent.clone()
    }

    pub fn calls(&self, endpoint: &str) -> u64 {
        self.lock().calls.get(endpoint).copied().unwrap_or(0)
    }

    /// Throttle answers with `code`.
    pub fn throttles(&self, code: u32) -> u64 {
        self.lock().throttles.get(&code).copied().unwrap_or(0)
    }

    /// Rows dropped as invalid, all calls.
    pub fn dropped(&self) -> u64 {
        self.lock().audiences.dropped
    }

    pub fn unauthorized(&self) -> u64 {
        self.lock().auth.unauthorized
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
    let mut s = inner.lock().unwrap();
    let now = s.now();
    s.requests += 1;
    let (reply, usage) = s.serve(&method, &uri, &headers, &body, now);
    let (content_type, bytes) = match (&reply.body, &reply.text) {
        (Some(b), _) => ("application/json; charset=UTF-8", b.to_string()),
        (None, Some(t)) => ("text/html", t.clone()),
        (None, None) => ("", String::new()),
    };
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap();
    let h = response.headers_mut();
    if !content_type.is_empty() {
        h.insert("content-type", HeaderValue::from_static(content_type));
    }
    h.insert("x-fb-trace-id", HeaderValue::from_str(&wire::fbtrace_id()).unwrap());
    if let Some(usage) = usage {
        h.insert("x-business-use-case-usage", HeaderValue::from_str(&usage).unwrap());
    }
    response
}
