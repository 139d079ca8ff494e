//! An in-process Google Data Manager API for tests and benches: Customer Match
//! `audienceMembers:ingest`, `:remove`, `:removeAll` and `requestStatus:retrieve`, answering
//! as Google documents, with every request body and every answer checked against the
//! contract.
//!
//! Follows /work/shared/contracts/google/jsonschema/datamanager_v1.schema.json (its `x-roots`:
//! the three request and response bodies, `RetrieveRequestStatusResponse`, and the `$defs`
//! `GoogleRestErrorResponse`, `google.rpc.ErrorInfo`, `BadRequest`, `QuotaFailure`), the protos
//! it was derived from (google/ads/datamanager/v1: ingestion_service.proto, audience.proto,
//! user_data.proto, request_status_per_destination.proto, error.proto, match_rate.proto,
//! consent.proto, terms_of_service.proto, processing_errors.proto), SOURCE.md beside them
//! ("Data Manager API v1: endpoint facts" and "Not in the protos"), and saas-contracts.md §3b
//! and §8. The rules the protos leave to prose are coded by hand in [`audience`] (digests,
//! Terms of Service, limits, one data type per request), the quotas in [`quota`], the tokens
//! in [`auth`].
//!
//! A test ends with [`DataManager::assert_no_violations`]: a request that breaks the schema,
//! or a rule only a faulty client breaks (a digest that is not 64 lowercase hex characters,
//! mixed data types, more than 10,000 members…), is recorded there and answered 400, and so
//! is an answer of this server that does not match the contract.
//!
//! Lean mode (for the 1,000,000-member bench): request bodies are not checked against the
//! JSON Schema (the hand-coded rules still run; answers are still checked) and lists keep
//! 64-bit fingerprints of their identifiers instead of the identifiers and their times, so
//! the server's own memory stays small beside the process it measures. `removeAsOfTime` is
//! not honoured there (a `removeAll` clears the list).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod audience;
pub mod auth;
#[path = "../contracts.rs"]
pub mod contracts;
pub mod quota;
#[path = "../server_kit.rs"]
pub mod server_kit;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

pub use audience::{Account, Submitted, UserList};
pub use auth::Validity;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use contracts::SchemaFile;
pub use quota::QuotaKind;
use serde_json::{Value as Json, json};
use tokio::time::Instant;
pub use wire::Violation;
use wire::{Reply, error_info};

/// The contract file, relative to the contracts directory.
pub const SCHEMA: &str = "google/jsonschema/datamanager_v1.schema.json";
/// The access token every server accepts until told otherwise.
pub const TOKEN: &str = "ya29.rse-contract-token";
/// The Google Ads account that owns [`LIST_ID`].
pub const OPERATING_ACCOUNT: &str = "1234567890";
/// A manager account allowed to act for [`OPERATING_ACCOUNT`].
pub const LOGIN_ACCOUNT: &str = "9876543210";
/// The Customer Match user list every server starts with.
pub const LIST_ID: &str = "7777777777";

/// Reasons only a faulty client provokes: a request refused for one of them is also
/// recorded as a violation. Data a client cannot check (a postal code Google refuses, a
/// list it may not use) is answered without being recorded.
const CLIENT_FAULTS: [&str; 10] = [
    "REQUIRED_FIELD_MISSING",
    "INVALID_HEX_ENCODING",
    "INVALID_BASE64_ENCODING",
    "INVALID_SHA256_FORMAT",
    "TOO_MANY_AUDIENCE_MEMBERS",
    "TOO_MANY_USER_IDENTIFIERS",
    "TOO_MANY_DESTINATIONS",
    "MULTIPLE_DATA_TYPES_NOT_ALLOWED",
    "TERMS_AND_CONDITIONS_NOT_SIGNED",
    "INVALID_AUDIENCE_MEMBER",
];

/// A fault to answer the next admitted ingestion call with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 503 `UNAVAILABLE`, nothing applied.
    Unavailable,
    /// 500 `INTERNAL`, nothing applied.
    Internal,
    /// The call is applied, then a proxy answers 502: the acknowledgement is lost.
    LoseAck,
    /// 400 `INVALID_ARGUMENT` naming no field (Google's answer to a fault it does not
    /// locate), nothing applied.
    Unlocated,
}

/// One request, whatever its answer.
#[derive(Debug, Clone)]
pub struct Logged {
    /// `ingest`, `remove`, `removeAll`, `retrieve`.
    pub endpoint: &'static str,
    pub status: u16,
    pub members: usize,
    pub identifiers: u64,
    pub validate_only: bool,
    /// The id answered (also for `validateOnly`, which cannot be retrieved).
    pub request_id: Option<String>,
    /// The `ErrorInfo.reason` of a refusal.
    pub reason: Option<String>,
}

/// The server's state, shared with the test.
pub struct Inner {
    pub auth: auth::Auth,
    pub quota: quota::Quota,
    /// The quota of `requestStatus:retrieve` (none unless a test sets one).
    pub reads: quota::Quota,
    /// Customer Match lists by `productDestinationId`.
    pub lists: BTreeMap<String, UserList>,
    /// Identifier keys Google can match to its users (the match rate's numerator).
    pub known_users: HashSet<String>,
    /// Identifier keys refused at ingest with the given `ErrorReason` (a value Google finds
    /// invalid although its format is right).
    pub refused: HashMap<String, &'static str>,
    /// Identifier keys whose member processing drops (`PROCESSING_ERROR_REASON_INVALID_FORMAT`).
    pub fail_processing: HashSet<String>,
    /// `PROCESSING` answers of `requestStatus:retrieve` before the outcome.
    pub processing_polls: u32,
    /// Accepted requests by id.
    pub submitted: HashMap<String, Submitted>,
    pub faults: VecDeque<Fault>,
    pub faults_answered: u64,
    /// Added before every answer.
    pub latency: Duration,
    pub lean: bool,
    /// The bodies of ingestion calls, by endpoint, when set (the default).
    pub keep_bodies: bool,
    pub bodies: Vec<(&'static str, Json)>,
    /// Contract breaches, by the client or by this server.
    pub violations: Vec<String>,
    pub log: Vec<Logged>,
    /// Members received whose `adUserData` consent was `CONSENT_DENIED`.
    pub denied_consent: u64,
}

impl Inner {
    fn violation(&mut self, what: String) {
        self.violations.push(what);
    }

    fn list(&self, id: &str) -> Option<&UserList> {
        self.lists.get(id)
    }

    fn schema_check(&mut self, root: &'static str, body: &Json, what: &str) -> Vec<String> {
        if self.lean {
            return Vec::new();
        }
        let problems = SchemaFile::get(SCHEMA).violations(root, body);
        for p in &problems {
            self.violation(format!("{what}: request breaks {p}"));
        }
        problems
    }

    /// Checks the destinations: limits, known lists, the accounts the caller may act as.
    fn check_destinations(&mut self, body: &Json) -> Result<Vec<audience::Target>, Reply> {
        let targets = audience::targets(body);
        if targets.len() > audience::MAX_DESTINATIONS {
            return Err(Reply::invalid(&[Violation::new(
                "destinations",
                "TOO_MANY_DESTINATIONS",
                "Maximum number of destinations allowed per request is 10.",
            )]));
        }
        let mut unknown = Vec::new();
        for (k, t) in targets.iter().enumerate() {
            let Some(list) = self.list(&t.list) else {
                unknown.push(Violation::new(
                    format!("destinations[{k}].product_destination_id"),
                    "INVALID_USER_LIST_ID",
                    "User list is not valid.",
                ));
                continue;
            };
            let owner_ok = list.owner.is_none() || list.owner == t.operating;
            let login_ok =
                t.login.as_ref().is_none_or(|l| Some(l) == t.operating.as_ref() || list.managers.contains(l));
            if !owner_ok || !login_ok {
                return Err(Reply::error(
                    403,
                    "PERMISSION_DENIED",
                    "The caller does not have permission.",
                    vec![error_info("PERMISSION_DENIED", wire::DOMAIN, json!({}))],
                ));
            }
        }
        if !unknown.is_empty() {
            return Err(Reply::invalid(&unknown));
        }
        Ok(targets)
    }

    fn serve(&mut self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8], log: &mut Logged) -> Reply {
        let path = uri.path();
        let endpoint = match (method.as_str(), path) {
            ("POST", "/v1/audienceMembers:ingest") => "ingest",
            ("POST", "/v1/audienceMembers:remove") => "remove",
            ("POST", "/v1/audienceMembers:removeAll") => "removeAll",
            ("GET", "/v1/requestStatus:retrieve") => "retrieve",
            _ => {
                self.violation(format!("{method} {path}: no such endpoint"));
                return Reply::error(404, "NOT_FOUND", format!("The requested URL {path} was not found."), vec![]);
            }
        };
        log.endpoint = endpoint;
        let rpc = format!("google.ads.datamanager.v1.IngestionService.{endpoint}");
        if let Err(reply) = self.auth.check(headers, &rpc) {
            return reply;
        }
        if endpoint == "retrieve" {
            if let Err(kind) = self.reads.admit(Instant::now()) {
                return self.reads.refusal(kind);
            }
            return self.retrieve(uri, body);
        }
        if let Err(kind) = self.quota.admit(Instant::now()) {
            return self.quota.refusal(kind);
        }
        let fault = self.faults.pop_front();
        match fault {
            Some(Fault::Unavailable) => {
                self.faults_answered += 1;
                return Reply::error(503, "UNAVAILABLE", "The service is currently unavailable.", vec![]);
            }
            Some(Fault::Internal) => {
                self.faults_answered += 1;
                return Reply::error(500, "INTERNAL", "Internal error encountered.", vec![]);
            }
            Some(Fault::Unlocated) => {
                self.faults_answered += 1;
                return Reply::invalid_request("INVALID_ARGUMENT", "Request contains an invalid argument.");
            }
            _ => {}
        }
        let what = format!("POST {path}");
        if let Some(query) = uri.query() {
            self.violation(format!("{what}: query `{query}`; the method takes its arguments in the body"));
        }
        let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        if !content_type.starts_with("application/json") {
            self.violation(format!("{what}: content-type `{content_type}`, not application/json"));
        }
        let body: Json = match serde_json::from_slice(body) {
            Ok(b) => b,
            Err(e) => {
                self.violation(format!("{what}: body is not JSON ({e})"));
                return Reply::invalid_request("INVALID_ARGUMENT", "Invalid JSON payload received.");
            }
        };
        let root = match endpoint {
            "ingest" => "IngestAudienceMembersRequest",
            "remove" => "RemoveAudienceMembersRequest",
            _ => "RemoveAllAudienceMembersRequest",
        };
        let schema_problems = self.schema_check(root, &body, &what);
        log.validate_only = body.get("validateOnly").and_then(Json::as_bool).unwrap_or(false);
        let reply = self.write(endpoint, &body, &schema_problems, log);
        if reply.status == 400
            && let Some(reason) = reply_reason(&reply)
            && CLIENT_FAULTS.contains(&reason.as_str())
        {
            self.violation(format!("{what}: refused with {reason}, which only a faulty client provokes"));
        }
        if self.keep_bodies {
            self.bodies.push((endpoint, body));
        }
        if fault == Some(Fault::LoseAck) && reply.status == 200 {
            self.faults_answered += 1;
            return Reply::text(502, "<html><body><h1>502 Bad Gateway</h1></body></html>");
        }
        reply
    }

    fn write(&mut self, endpoint: &'static str, body: &Json, schema_problems: &[String], log: &mut Logged) -> Reply {
        let targets = match self.check_destinations(body) {
            Ok(t) => t,
            Err(reply) => return reply,
        };
        let now = SystemTime::now();
        let (parsed, as_of) = if endpoint == "removeAll" {
            let as_of = match body.get("removeAsOfTime").and_then(Json::as_str) {
                None => None,
                Some(text) => match wire::parse_rfc3339(text) {
                    None => {
                        return Reply::invalid(&[Violation::new(
                            "remove_as_of_time",
                            "INVALID_FORMAT",
                            "Format is invalid: an RFC 3339 timestamp is expected.",
                        )]);
                    }
                    Some(t) if t > now => {
                        return Reply::invalid(&[Violation::new(
                            "remove_as_of_time",
                            "INVALID_REMOVE_AS_OF_TIME",
                            "The remove as of time must be in the past or present.",
                        )]);
                    }
                    Some(t) => Some(t),
                },
            };
            (None, as_of)
        } else {
            match audience::parse_members(body, endpoint == "ingest", &self.refused) {
                Ok(p) => (Some(p), None),
                Err(violations) => return Reply::invalid(&violations),
            }
        };
        if let Some(first) = schema_problems.first() {
            return Reply::invalid_request("INVALID_ARGUMENT", format!("Invalid request: {first}"));
        }
        if let Some(p) = &parsed {
            log.members = p.members.len();
            log.identifiers = p.identifiers;
        }
        let request_id = wire::request_id();
        log.request_id = Some(request_id.clone());
        // Proto3 JSON leaves out an empty `fieldWarnings`.
        let answer = json!({ "requestId": request_id });
        let answer_root = match endpoint {
            "ingest" => "IngestAudienceMembersResponse",
            "remove" => "RemoveAudienceMembersResponse",
            _ => "RemoveAllAudienceMembersResponse",
        };
        if log.validate_only {
            return Reply::json(200, answer, answer_root);
        }
        let mut submitted = Submitted {
            endpoint,
            destinations: targets.iter().map(|t| t.json.clone()).collect(),
            kind: parsed.as_ref().and_then(|p| p.kind),
            records: parsed.as_ref().map_or(0, |p| p.members.len() as u64),
            identifiers: parsed.as_ref().map_or(0, |p| p.identifiers),
            matched: 0,
            errors: BTreeMap::new(),
            polls_left: self.processing_polls,
        };
        let lean = self.lean;
        for t in &targets {
            let list = self.lists.get_mut(&t.list).expect("checked above");
            match (endpoint, &parsed) {
                ("ingest", Some(p)) => {
                    for m in &p.members {
                        if m.ad_user_data.as_deref() == Some("CONSENT_DENIED") {
                            continue;
                        }
                        if m.ids.iter().any(|k| self.fail_processing.contains(k)) {
                            continue;
                        }
                        for key in &m.ids {
                            if lean {
                                list.fingerprints.insert(audience::fingerprint(key));
                            } else {
                                list.members.insert(key.clone(), now);
                            }
                        }
                    }
                }
                ("remove", Some(p)) => {
                    for key in p.members.iter().flat_map(|m| &m.ids) {
                        if lean {
                            list.fingerprints.remove(&audience::fingerprint(key));
                        } else {
                            list.members.remove(key);
                        }
                    }
                }
                _ => match as_of {
                    Some(as_of) if !lean => list.members.retain(|_, added| *added >= as_of),
                    _ => {
                        list.members.clear();
                        list.fingerprints.clear();
                    }
                },
            }
        }
        if let (Some(p), "ingest") = (&parsed, endpoint) {
            for m in &p.members {
                if m.ad_user_data.as_deref() == Some("CONSENT_DENIED") {
                    self.denied_consent += 1;
                    *submitted.errors.entry("PROCESSING_ERROR_REASON_DENIED_CONSENT").or_default() += 1;
                } else if m.ids.iter().any(|k| self.fail_processing.contains(k)) {
                    *submitted.errors.entry("PROCESSING_ERROR_REASON_INVALID_FORMAT").or_default() += 1;
                } else if m.ids.iter().any(|k| self.known_users.contains(k)) {
                    submitted.matched += 1;
                }
            }
        }
        self.submitted.insert(request_id, submitted);
        Reply::json(200, answer, answer_root)
    }

    fn retrieve(&mut self, uri: &Uri, body: &[u8]) -> Reply {
        if !body.is_empty() {
            self.violation("GET /v1/requestStatus:retrieve: a GET carries no body".into());
        }
        let query = uri.query().unwrap_or("");
        let id = query.split('&').find_map(|pair| pair.strip_prefix("requestId="));
        let Some(id) = id.filter(|id| !id.is_empty()) else {
            self.violation(format!("GET /v1/requestStatus:retrieve: no requestId in `{query}`"));
            return Reply::invalid(&[Violation::new(
                "request_id",
                "REQUIRED_FIELD_MISSING",
                "Required field is missing.",
            )]);
        };
        let Some(submitted) = self.submitted.get_mut(id) else {
            return Reply::invalid(&[Violation::new(
                "request_id",
                "INVALID_REQUEST_ID",
                "The request ID used to retrieve the status of a request is not valid.",
            )]);
        };
        let status = submitted.status();
        submitted.polls_left = submitted.polls_left.saturating_sub(1);
        Reply::json(200, status, "RetrieveRequestStatusResponse")
    }
}

/// The `ErrorInfo.reason` of an error answer.
fn reply_reason(reply: &Reply) -> Option<String> {
    reply.body.as_ref()?["error"]["details"]
        .as_array()?
        .iter()
        .find(|d| d["@type"] == wire::ERROR_INFO)
        .and_then(|d| d["reason"].as_str())
        .map(str::to_owned)
}

/// A running contract server, shared with the test.
#[derive(Clone)]
pub struct DataManager {
    pub inner: Arc<Mutex<Inner>>,
    pub addr: SocketAddr,
}

impl DataManager {
    /// Starts a server on 127.0.0.1 at a free port, accepting [`TOKEN`], holding the empty
    /// list [`LIST_ID`] of the Google Ads account [`OPERATING_ACCOUNT`] (managed by
    /// [`LOGIN_ACCOUNT`]), with Google's quotas (300 per minute, 100,000 per day) and one
    /// `PROCESSING` answer per request before its outcome.
    pub async fn start() -> DataManager {
        let mut auth = auth::Auth::default();
        auth.tokens.insert(TOKEN.to_owned(), Validity::default());
        let mut lists = BTreeMap::new();
        lists.insert(
            LIST_ID.to_owned(),
            UserList {
                owner: Some(Account::google_ads(OPERATING_ACCOUNT)),
                managers: vec![Account::google_ads(LOGIN_ACCOUNT)],
                ..UserList::default()
            },
        );
        let inner = Arc::new(Mutex::new(Inner {
            auth,
            quota: quota::Quota::default(),
            reads: quota::Quota::unlimited("Read"),
            lists,
            known_users: HashSet::new(),
            refused: HashMap::new(),
            fail_processing: HashSet::new(),
            processing_polls: 1,
            submitted: HashMap::new(),
            faults: VecDeque::new(),
            faults_answered: 0,
            latency: Duration::ZERO,
            lean: false,
            keep_bodies: true,
            bodies: Vec::new(),
            violations: Vec::new(),
            log: Vec::new(),
            denied_consent: 0,
        }));
        // Compile the contract before the first request.
        let _ = SchemaFile::get(SCHEMA).validator("IngestAudienceMembersRequest");
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let addr = server_kit::serve(app).await;
        DataManager { inner, addr }
    }

    /// `http://127.0.0.1:port`, in place of `https://datamanager.googleapis.com`.
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

    /// Adds list `id` owned by the Google Ads account `owner`.
    pub fn add_list(&self, id: &str, owner: &str) {
        let list = UserList { owner: Some(Account::google_ads(owner)), ..UserList::default() };
        self.lock().lists.insert(id.to_owned(), list);
    }

    pub fn set_per_minute(&self, n: Option<u32>) {
        self.lock().quota.per_minute = n;
    }

    /// The per-minute quota's window (a minute unless a test shortens it).
    pub fn set_quota_window(&self, window: Duration) {
        self.lock().quota.window = window;
    }

    pub fn set_per_day(&self, n: Option<u64>) {
        self.lock().quota.per_day = n;
    }

    /// Midnight Pacific time: the daily quota starts again.
    pub fn new_day(&self) {
        self.lock().quota.day_used = 0;
    }

    /// Status reads allowed per `window`, with `RetryInfo.retryDelay = delay` when refused.
    pub fn set_read_quota(&self, per_window: Option<u32>, window: Duration, delay: Option<Duration>) {
        let mut s = self.lock();
        s.reads.per_minute = per_window;
        s.reads.window = window;
        s.reads.retry_info = delay;
    }

    /// Per-minute refusals carry `RetryInfo.retryDelay = delay`.
    pub fn set_retry_info(&self, delay: Option<Duration>) {
        self.lock().quota.retry_info = delay;
    }

    pub fn set_processing_polls(&self, n: u32) {
        self.lock().processing_polls = n;
    }

    /// Identifier keys (see [`audience`]) Google can match to its users.
    pub fn add_known_users(&self, keys: impl IntoIterator<Item = String>) {
        self.lock().known_users.extend(keys);
    }

    /// Ingests carrying `key` are refused with `reason` naming its field.
    pub fn refuse_identifier(&self, key: &str, reason: &'static str) {
        self.lock().refused.insert(key.to_owned(), reason);
    }

    /// Members carrying `key` are accepted, then dropped by processing.
    pub fn fail_in_processing(&self, key: &str) {
        self.lock().fail_processing.insert(key.to_owned());
    }

    pub fn inject(&self, fault: Fault, times: usize) {
        self.lock().faults.extend(std::iter::repeat_n(fault, times));
    }

    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// Lean mode (module docs): for the bench.
    pub fn set_lean(&self, lean: bool) {
        let mut s = self.lock();
        s.lean = lean;
        s.keep_bodies = !lean;
    }

    pub fn add_token(&self, token: &str, validity: Validity) {
        self.lock().auth.tokens.insert(token.to_owned(), validity);
    }

    /// `token` answers 401 from now on.
    pub fn expire_token(&self, token: &str) {
        self.lock().auth.tokens.insert(token.to_owned(), Validity::uses(0));
    }

    /// `token` is accepted for `n` more calls, then answers 401.
    pub fn token_uses(&self, token: &str, n: u64) {
        self.lock().auth.tokens.insert(token.to_owned(), Validity::uses(n));
    }

    /// Also accept the tokens `verify` says are valid (those an authorization server issued).
    pub fn trust(&self, verify: impl Fn(&str) -> bool + Send + Sync + 'static) {
        self.lock().auth.trusted = Some(Arc::new(verify));
    }

    /// Every token lacks the Data Manager scope (403).
    pub fn set_scope_missing(&self, missing: bool) {
        self.lock().auth.scope_missing = missing;
    }

    // What it holds and saw.

    /// The identifier keys list `id` holds (`email:<hex>`, `phone:<hex>`,
    /// `address:<given>:<family>:<region>:<postal>`, `mobile:<id>`).
    pub fn audience(&self, id: &str) -> BTreeSet<String> {
        self.lock().lists.get(id).map(|l| l.members.keys().cloned().collect()).unwrap_or_default()
    }

    /// How many identifiers list `id` holds (lean mode too).
    pub fn audience_len(&self, id: &str) -> usize {
        self.lock().lists.get(id).map_or(0, |l| l.members.len() + l.fingerprints.len())
    }

    pub fn log(&self) -> Vec<Logged> {
        self.lock().log.clone()
    }

    /// Requests to `endpoint` (`ingest`, `remove`, `removeAll`, `retrieve`), any answer.
    pub fn calls(&self, endpoint: &str) -> usize {
        self.lock().log.iter().filter(|l| l.endpoint == endpoint).count()
    }

    /// Requests to `endpoint` answered 200 (validate-only ones included).
    pub fn accepted(&self, endpoint: &str) -> usize {
        self.lock().log.iter().filter(|l| l.endpoint == endpoint && l.status == 200).count()
    }

    pub fn refused(&self, kind: QuotaKind) -> u64 {
        self.lock().quota.refused.get(&kind).copied().unwrap_or(0)
    }

    pub fn denied_consent(&self) -> u64 {
        self.lock().denied_consent
    }

    /// The most ingestion calls admitted within any span of `per`.
    pub fn max_in_window(&self, per: Duration) -> usize {
        self.lock().quota.max_in_window(per)
    }

    /// The bodies sent to `endpoint`, in order.
    pub fn bodies(&self, endpoint: &str) -> Vec<Json> {
        self.lock().bodies.iter().filter(|(e, _)| *e == endpoint).map(|(_, b)| b.clone()).collect()
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
    let mut log = Logged {
        endpoint: "unknown",
        status: 0,
        members: 0,
        identifiers: 0,
        validate_only: false,
        request_id: None,
        reason: None,
    };
    let reply = s.serve(&method, &uri, &headers, &body, &mut log);
    log.status = reply.status;
    log.reason = reply_reason(&reply);
    if reply.status != 200 {
        log.request_id = None;
    }
    s.log.push(log);
    respond(&mut s, reply)
}

fn respond(s: &mut Inner, reply: Reply) -> Response {
    if let (Some(body), Some(root)) = (&reply.body, reply.root) {
        let file = SchemaFile::get(SCHEMA);
        let mut problems = file.violations(root, body);
        for detail in body["error"]["details"].as_array().into_iter().flatten() {
            let name = match detail["@type"].as_str() {
                Some(wire::ERROR_INFO) => "google.rpc.ErrorInfo",
                Some(wire::BAD_REQUEST) => "google.rpc.BadRequest",
                Some(wire::QUOTA_FAILURE) => "google.rpc.QuotaFailure",
                _ => continue,
            };
            let mut inner = detail.clone();
            inner.as_object_mut().unwrap().remove("@type");
            problems.extend(file.violations(name, &inner));
        }
        if let Some(reason) = reply_reason(&reply)
            && reply.status != 401
            && reply.status != 403
            && reply.status != 429
        {
            problems.extend(file.violations("ErrorReason", &json!(reason)));
        }
        for p in problems {
            s.violation(format!("this server's {} answer breaks {p}", reply.status));
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
