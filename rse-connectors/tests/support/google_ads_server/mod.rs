//! An in-process Google Ads API for tests: Customer Match through `OfflineUserDataJobService`
//! (create, addOperations, run), `GoogleAdsService.Search` to read jobs and user lists, and
//! Google's OAuth token endpoint, answering as Google documents, with every request body and
//! every answer checked against the contract.
//!
//! Follows /work/shared/contracts/google/jsonschema/googleads_v25_offline_user_data_job.schema.json
//! (its `x-roots`, and `GoogleRestErrorResponse`), SOURCE.md beside it, and
//! saas-contracts.md §3a and §8 (OUDJ row). The search endpoint and the token endpoint are not
//! in the contract files: `search.rs` and `auth.rs` name the Google documentation they follow.
//!
//! A test ends with [`GoogleAds::assert_no_violations`]: a request that breaks the contract
//! is recorded there (and answered 400, so it cannot pass unnoticed), and so is an answer of
//! this server that does not match the contract.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod auth;
pub mod identifiers;
pub mod jobs;
pub mod limits;
pub mod search;
#[path = "../server_kit.rs"]
pub mod server_kit;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

pub use auth::{OAuthClient, ServiceAccount, Validity};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
pub use jobs::{Job, Op, Status, UserList};
use serde_json::{Value as Json, json};
use tokio::time::Instant;
use wire::{Reply, Root};

/// The access token every server accepts until told otherwise.
pub const TOKEN: &str = "ya29.rse-contract-token";
/// The developer token every server accepts.
pub const DEVELOPER_TOKEN: &str = "rse-dev-token-0123456789";
/// The customer (Google Ads account) the server holds.
pub const CUSTOMER_ID: &str = "1234567890";
/// The user list every server starts with.
pub const USER_LIST_ID: &str = "7777777777";

/// An endpoint, to aim a fault at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Endpoint {
    Create,
    AddOperations,
    Run,
    Search,
}

impl Endpoint {
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Create => "create",
            Endpoint::AddOperations => "addOperations",
            Endpoint::Run => "run",
            Endpoint::Search => "search",
        }
    }
}

/// A fault to answer the next admitted call of an endpoint with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 500 `INTERNAL` with `internalError: INTERNAL_ERROR`, nothing applied.
    ServerError,
    /// 503 `UNAVAILABLE` with `internalError: TRANSIENT_ERROR`, nothing applied.
    Unavailable,
    /// The call is applied, then a proxy answers 502: the acknowledgement is lost.
    LoseAck,
}

enum Route {
    Create(String),
    AddOperations(String, String),
    Run(String, String),
    Search(String),
    Token,
}

fn route(method: &Method, path: &str) -> Option<Route> {
    if method != Method::POST {
        return None;
    }
    if path == "/token" {
        return Some(Route::Token);
    }
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segs.as_slice() {
        ["v25", "customers", customer, "offlineUserDataJobs:create"] => Some(Route::Create((*customer).to_owned())),
        ["v25", "customers", customer, "googleAds:search"] => Some(Route::Search((*customer).to_owned())),
        ["v25", "customers", customer, "offlineUserDataJobs", job] => {
            let (id, verb) = job.split_once(':')?;
            match verb {
                "addOperations" => Some(Route::AddOperations((*customer).to_owned(), id.to_owned())),
                "run" => Some(Route::Run((*customer).to_owned(), id.to_owned())),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The server's state, shared with the test.
pub struct Inner {
    pub auth: auth::Auth,
    pub limits: limits::Limits,
    pub jobs: jobs::Jobs,
    /// Faults for the next admitted calls of each endpoint, in order.
    pub faults: BTreeMap<Endpoint, VecDeque<Fault>>,
    /// Contract breaches, by the client or by this server.
    pub violations: Vec<String>,
    /// Every request, whatever its answer.
    pub requests: u64,
    /// Admitted calls by endpoint name, and `token`.
    pub calls: BTreeMap<&'static str, u64>,
    /// The bodies of create, addOperations and run calls, with their paths.
    pub bodies: Vec<(String, Json)>,
    /// Faults answered.
    pub faults_answered: u64,
    /// Added before every answer.
    pub latency: std::time::Duration,
}

impl Inner {
    fn json_body(&mut self, headers: &HeaderMap, body: &[u8], what: &str) -> Result<Json, Reply> {
        let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        if !content_type.starts_with("application/json") {
            self.violations.push(format!("{what}: content-type `{content_type}`, not application/json"));
            return Err(Reply::one("requestError", "UNKNOWN", "Content-Type must be application/json"));
        }
        serde_json::from_slice(body).map_err(|e| {
            self.violations.push(format!("{what}: body is not JSON ({e})"));
            Reply::one("requestError", "UNKNOWN", "Invalid JSON payload received.")
        })
    }

    /// The body, checked against the contract entry `root`.
    fn checked(&mut self, headers: &HeaderMap, body: &[u8], root: &str, what: &str) -> Result<Json, Reply> {
        let body = self.json_body(headers, body, what)?;
        let problems = wire::schema().violations(root, &body);
        if problems.is_empty() {
            return Ok(body);
        }
        let first = problems[0].clone();
        for p in problems {
            self.violations.push(format!("{what}: request breaks {p}"));
        }
        Err(Reply::ads(
            400,
            "INVALID_ARGUMENT",
            vec![wire::error("requestError", "UNKNOWN", &format!("Invalid JSON payload received. {first}"))],
        ))
    }

    fn serve(&mut self, route: Route, uri: &Uri, headers: &HeaderMap, body: &[u8], now: Instant) -> Reply {
        let what = format!("POST {}", uri.path());
        if let Route::Token = route {
            *self.calls.entry("token").or_default() += 1;
            return match self.auth.token_endpoint(headers, body, now) {
                Ok(reply) => reply,
                Err(problem) => {
                    self.violations.push(format!("{what}: {problem}"));
                    Reply::undescribed(400, json!({"error": "unsupported_grant_type", "error_description": problem}))
                }
            };
        }
        if let Err((reply, violation)) = self.auth.check(headers, now) {
            if let Some(v) = violation {
                self.violations.push(format!("{what}: {v}"));
            }
            return reply;
        }
        if let Err(reply) = self.limits.admit(now) {
            return reply;
        }
        if let Some(query) = uri.query() {
            self.violations.push(format!("{what}: query `{query}`; these methods take their fields in the body"));
        }
        let endpoint = match route {
            Route::Create(_) => Endpoint::Create,
            Route::AddOperations(..) => Endpoint::AddOperations,
            Route::Run(..) => Endpoint::Run,
            Route::Search(_) => Endpoint::Search,
            Route::Token => unreachable!("answered above"),
        };
        *self.calls.entry(endpoint.name()).or_default() += 1;
        let fault = self.faults.get_mut(&endpoint).and_then(VecDeque::pop_front);
        match fault {
            Some(Fault::ServerError) => {
                self.faults_answered += 1;
                return Reply::ads(
                    500,
                    "INTERNAL",
                    vec![wire::error("internalError", "INTERNAL_ERROR", "An internal error has occurred.")],
                );
            }
            Some(Fault::Unavailable) => {
                self.faults_answered += 1;
                return Reply::ads(
                    503,
                    "UNAVAILABLE",
                    vec![wire::error(
                        "internalError",
                        "TRANSIENT_ERROR",
                        "The service is currently unavailable. Retry the request.",
                    )],
                );
            }
            _ => {}
        }
        let mut violations = Vec::new();
        let reply = match route {
            Route::Create(customer) => match self.checked(headers, body, "CreateOfflineUserDataJobRequest", &what) {
                Err(reply) => reply,
                Ok(b) => {
                    let reply = self.jobs.create(&customer, &b, &mut violations);
                    self.bodies.push((uri.path().to_owned(), b));
                    reply
                }
            },
            Route::AddOperations(customer, id) => {
                match self.checked(headers, body, "AddOfflineUserDataJobOperationsRequest", &what) {
                    Err(reply) => reply,
                    Ok(b) => {
                        let reply = self.jobs.add_operations(&customer, &id, &b, &mut self.limits, &mut violations);
                        self.bodies.push((uri.path().to_owned(), b));
                        reply
                    }
                }
            }
            Route::Run(customer, id) => match self.checked(headers, body, "RunOfflineUserDataJobRequest", &what) {
                Err(reply) => reply,
                Ok(b) => {
                    let reply = self.jobs.run(&customer, &id, &b);
                    self.bodies.push((uri.path().to_owned(), b));
                    reply
                }
            },
            Route::Search(customer) => match self.json_body(headers, body, &what) {
                Err(reply) => reply,
                Ok(b) => {
                    let problems = search::request_problems(&b);
                    if problems.is_empty() {
                        self.jobs.tick();
                        search::search(&self.jobs, &customer, &b, &mut violations)
                    } else {
                        for p in &problems {
                            violations.push(format!("search request: {p}"));
                        }
                        let mut reply = Reply::one(
                            "requestError",
                            "UNKNOWN",
                            &format!("Invalid JSON payload received. {}", problems[0]),
                        );
                        reply.root = Root::SearchError;
                        reply
                    }
                }
            },
            Route::Token => unreachable!("answered above"),
        };
        self.violations.extend(violations.into_iter().map(|v| format!("{what}: {v}")));
        if fault == Some(Fault::LoseAck) {
            self.faults_answered += 1;
            return Reply::text(502, "<html><body><h1>502 Bad Gateway</h1></body></html>");
        }
        reply
    }
}

/// A running contract server, shared with the test.
#[derive(Clone)]
pub struct GoogleAds {
    pub inner: Arc<Mutex<Inner>>,
    pub addr: SocketAddr,
}

impl GoogleAds {
    /// Starts a server on 127.0.0.1 at a free port: customer [`CUSTOMER_ID`] with the
    /// Customer Match list [`USER_LIST_ID`], accepting [`TOKEN`] and [`DEVELOPER_TOKEN`],
    /// jobs finishing on the second poll after run, no quota.
    pub async fn start() -> GoogleAds {
        let mut jobs = jobs::Jobs::new(CUSTOMER_ID);
        jobs.lists.insert(
            USER_LIST_ID.to_owned(),
            UserList { id: USER_LIST_ID.to_owned(), name: "rse customers".to_owned(), members: BTreeSet::new() },
        );
        let inner = Arc::new(Mutex::new(Inner {
            auth: auth::Auth::new(TOKEN, DEVELOPER_TOKEN),
            limits: limits::Limits::default(),
            jobs,
            faults: BTreeMap::new(),
            violations: Vec::new(),
            requests: 0,
            calls: BTreeMap::new(),
            bodies: Vec::new(),
            faults_answered: 0,
            latency: std::time::Duration::ZERO,
        }));
        let _ = wire::schema();
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let addr = server_kit::serve(app).await;
        inner.lock().unwrap().auth.token_url = format!("http://{addr}/token");
        GoogleAds { inner, addr }
    }

    /// `http://127.0.0.1:port`, in place of `https://googleads.googleapis.com`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The token endpoint, in place of `https://oauth2.googleapis.com/token`.
    pub fn token_url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// `customers/{CUSTOMER_ID}/userLists/{USER_LIST_ID}`.
    pub fn user_list_resource(&self) -> String {
        self.lock().jobs.list_resource(USER_LIST_ID)
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// The violations so far, forgotten (for tests that break the contract on purpose).
    pub fn take_violations(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().violations)
    }

    /// Panics listing every contract breach seen.
    pub fn assert_no_violations(&self) {
        let v = self.violations();
        assert!(v.is_empty(), "{} contract violation(s):\n{}", v.len(), v.join("\n"));
    }

    // Settings.

    pub fn add_user_list(&self, id: &str, name: &str) {
        self.lock()
            .jobs
            .lists
            .insert(id.to_owned(), UserList { id: id.to_owned(), name: name.to_owned(), members: BTreeSet::new() });
    }

    /// Polls (search calls) a run job stays RUNNING; 0 finishes it at run.
    pub fn set_ticks_to_finish(&self, n: u32) {
        self.lock().jobs.ticks_to_finish = n;
    }

    /// The next `n` jobs to finish end FAILED, nothing applied.
    pub fn fail_next_jobs(&self, n: u32) {
        self.lock().jobs.fail_next += n;
    }

    /// Identifier keys (see [`identifiers::key`]) that count as matched Google users.
    pub fn set_known_users(&self, keys: impl IntoIterator<Item = String>) {
        self.lock().jobs.known = keys.into_iter().collect();
    }

    pub fn set_identifiers_per_request(&self, n: usize) {
        self.lock().jobs.identifiers_per_request = n;
    }

    /// Refuses every operation holding an identifier `rule` answers `Some((family, code))` for.
    pub fn set_rule(&self, rule: impl Fn(&str) -> Option<(&'static str, &'static str)> + Send + Sync + 'static) {
        self.lock().jobs.rule = Some(Arc::new(rule));
    }

    pub fn lift_rule(&self) {
        self.lock().jobs.rule = None;
    }

    pub fn set_not_allowlisted(&self, yes: bool) {
        self.lock().jobs.not_allowlisted = yes;
    }

    /// Operations allowed per day; `None` for unlimited.
    pub fn set_daily_operations(&self, n: Option<u64>) {
        self.lock().limits.daily_operations = n;
    }

    /// A new day: the daily operations count starts again.
    pub fn new_day(&self) {
        self.lock().limits.operations_used = 0;
    }

    /// At most `n` calls per `per`, refused with `retryDelay` = `retry_delay`.
    pub fn set_rate(&self, rate: Option<(u32, std::time::Duration)>, retry_delay: std::time::Duration) {
        let mut s = self.lock();
        s.limits.rate = rate;
        s.limits.retry_delay = retry_delay;
    }

    /// Each answer takes at least `latency` (so a kill can land mid-request).
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.lock().latency = latency;
    }

    pub fn inject(&self, endpoint: Endpoint, fault: Fault, times: usize) {
        self.lock().faults.entry(endpoint).or_default().extend(std::iter::repeat_n(fault, times));
    }

    pub fn add_token(&self, token: &str, validity: Validity) {
        self.lock().auth.tokens.insert(token.to_owned(), validity);
    }

    /// `token` answers 401 `OAUTH_TOKEN_EXPIRED` from now on.
    pub fn expire_token(&self, token: &str) {
        self.lock().auth.tokens.insert(token.to_owned(), Validity::uses(0));
    }

    /// Every call must carry `login-customer-id: id`.
    pub fn require_login_customer_id(&self, id: &str) {
        self.lock().auth.login_customer_id = Some(id.to_owned());
    }

    pub fn enable_service_account(&self, account: ServiceAccount) {
        self.lock().auth.service_account = Some(account);
    }

    pub fn enable_oauth_client(&self, client: OAuthClient) {
        self.lock().auth.oauth_client = Some(client);
    }

    /// Each token the token endpoint issues is valid for `n` calls.
    pub fn set_uses_per_token(&self, n: Option<u64>) {
        self.lock().auth.uses_per_token = n;
    }

    // What it holds and saw.

    /// The identifier keys user list `id` holds.
    pub fn user_list(&self, id: &str) -> BTreeSet<String> {
        self.lock().jobs.lists.get(id).map(|l| l.members.clone()).unwrap_or_default()
    }

    /// Every job, in creation order.
    pub fn jobs(&self) -> Vec<Job> {
        self.lock().jobs.jobs.values().cloned().collect()
    }

    pub fn calls(&self, endpoint: &str) -> u64 {
        self.lock().calls.get(endpoint).copied().unwrap_or(0)
    }

    /// Create operations not applied because `adUserData` was DENIED.
    pub fn consent_denied(&self) -> u64 {
        self.lock().jobs.consent_denied
    }

    /// Operations addOperations refused, by error code.
    pub fn refused_ops(&self) -> BTreeMap<String, u64> {
        self.lock().jobs.refused_ops.clone()
    }

    pub fn operations_used(&self) -> u64 {
        self.lock().limits.operations_used
    }

    /// 429 answers: (daily operations, short-term rate).
    pub fn refused(&self) -> (u64, u64) {
        let s = self.lock();
        (s.limits.refused_daily, s.limits.refused_rate)
    }

    pub fn tokens_issued(&self) -> u64 {
        self.lock().auth.issued
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
    let reply = match route(&method, uri.path()) {
        Some(r) => s.serve(r, &uri, &headers, &body, now),
        None => {
            s.violations.push(format!("{method} {}: no such endpoint", uri.path()));
            Reply::ads(404, "NOT_FOUND", vec![wire::error("requestError", "UNKNOWN", "No such method.")])
        }
    };
    respond(&mut s, reply)
}

fn respond(s: &mut Inner, reply: Reply) -> Response {
    if let Some(body) = &reply.body {
        for p in wire::answer_violations(reply.root, body) {
            s.violations.push(format!("this server's {} answer breaks the contract: {p}", reply.status));
        }
    }
    let (content_type, bytes) = match (&reply.body, &reply.text) {
        (Some(b), _) => ("application/json; charset=UTF-8", b.to_string()),
        (None, Some(t)) => ("text/html", t.clone()),
        (None, None) => ("", String::new()),
    };
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap();
    if !content_type.is_empty() {
        response.headers_mut().insert("content-type", HeaderValue::from_static(content_type));
    }
    response
}
