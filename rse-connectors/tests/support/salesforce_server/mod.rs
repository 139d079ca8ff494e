//! An in-process Salesforce org for tests: OAuth token endpoint, sObject Collections, Bulk API
//! 2.0 ingest, API limits, and knobs to make each of them misbehave.
//!
//! There is no vendor schema for these endpoints (see
//! `../shared/contracts/salesforce/SOURCE.md`); the server follows Salesforce's documentation:
//! - Salesforce REST API Developer Guide: "Upsert Records Using sObject Collections", "Delete
//!   Records Using sObject Collections", "Get Records Using sObject Rows by External ID",
//!   "sObject Describe", "Limits", "Status Codes and Error
//!   Responses", "allOrNone Parameters in Composite and Collections Requests";
//! - Bulk API 2.0 and Bulk API Developer Guide: "Create a Job", "Upload Job Data", "Close or
//!   Abort a Job", "Get Job Info", "Get All Jobs", "Delete a Job", "Get Job Successful Record
//!   Results", "Get Job Failed Record Results", "Get Job Unprocessed Record Results";
//! - Salesforce Help: "OAuth 2.0 JWT Bearer Flow for Server-to-Server Integration", "OAuth 2.0
//!   Refresh Token Flow";
//! - "API Request Limits and Allocations" (the `Sforce-Limit-Info` header, `REQUEST_LIMIT_EXCEEDED`);
//! - `../shared/contracts/saas-contracts.md` §2 and §8 (Salesforce rows).
//!
//! Where the documentation is silent the server picks one plausible answer and says so at the
//! place it does (search for "not documented").
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod auth;
pub mod bulk;
pub mod bulk_results;
pub mod collections;
mod gate;
pub mod ids;
pub mod records;
pub mod rows;
#[path = "../server_kit.rs"]
pub mod server_kit;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use serde_json::{Map, Value as Json, json};

pub use auth::{sign_assertion, test_key};
pub use bulk::{BulkKnobs, FailJob, Job};

/// The type of an sObject field, as `describe` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Id,
    String,
    Email,
    Double,
    Int,
    Boolean,
    DateTime,
}

impl FieldType {
    pub fn describe_name(self) -> &'static str {
        match self {
            FieldType::Id => "id",
            FieldType::String => "string",
            FieldType::Email => "email",
            FieldType::Double => "double",
            FieldType::Int => "int",
            FieldType::Boolean => "boolean",
            FieldType::DateTime => "datetime",
        }
    }
}

/// One field of an sObject.
#[derive(Debug, Clone)]
pub struct FieldDef {
    pub name: String,
    pub kind: FieldType,
    pub createable: bool,
    pub updateable: bool,
    pub external_id: bool,
    /// Must be given when a record is created (`REQUIRED_FIELD_MISSING` otherwise).
    pub required: bool,
}

impl FieldDef {
    /// A createable, updateable, optional field.
    pub fn new(name: &str, kind: FieldType) -> FieldDef {
        FieldDef {
            name: name.to_owned(),
            kind,
            createable: true,
            updateable: true,
            external_id: false,
            required: false,
        }
    }

    /// A unique external id text field.
    pub fn external_id(name: &str) -> FieldDef {
        FieldDef { external_id: true, ..FieldDef::new(name, FieldType::String) }
    }

    /// A field the API may read but never write (formula, audit field).
    pub fn read_only(name: &str, kind: FieldType) -> FieldDef {
        FieldDef { createable: false, updateable: false, ..FieldDef::new(name, kind) }
    }

    pub fn required(mut self) -> FieldDef {
        self.required = true;
        self
    }
}

/// An sObject type the org knows.
#[derive(Debug, Clone)]
pub struct ObjectDef {
    /// The three characters every record id of this type starts with.
    pub key_prefix: String,
    pub fields: Vec<FieldDef>,
}

impl ObjectDef {
    /// An object with `Id` plus these fields.
    pub fn new(key_prefix: &str, fields: Vec<FieldDef>) -> ObjectDef {
        let mut all = vec![FieldDef::read_only("Id", FieldType::Id)];
        all.extend(fields);
        ObjectDef { key_prefix: key_prefix.to_owned(), fields: all }
    }

    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// `Contact` as the tests use it: `LastName` required on create, `Rse_Ext_Id__c` the
    /// external id, `CreatedDate` read-only.
    pub fn contact() -> ObjectDef {
        ObjectDef::new(
            "003",
            vec![
                FieldDef::new("LastName", FieldType::String).required(),
                FieldDef::new("FirstName", FieldType::String),
                FieldDef::new("Email", FieldType::Email),
                FieldDef::new("Phone", FieldType::String),
                FieldDef::new("Score__c", FieldType::Double),
                FieldDef::new("Active__c", FieldType::Boolean),
                FieldDef::external_id("Rse_Ext_Id__c"),
                FieldDef::read_only("CreatedDate", FieldType::DateTime),
            ],
        )
    }
}

/// A record the org holds.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub sobject: String,
    /// Every field set, `Id` included.
    pub fields: Map<String, Json>,
}

/// Whether a validation rule refuses a record (given the fields the request sets).
pub type Refuses = Arc<dyn Fn(&Map<String, Json>) -> bool + Send + Sync>;

/// A validation rule an admin switched on: records it refuses fail with
/// `FIELD_CUSTOM_VALIDATION_EXCEPTION`.
#[derive(Clone)]
pub struct ValidationRule {
    /// The field the error names.
    pub field: String,
    /// The message the admin wrote. Salesforce shows it as is.
    pub message: String,
    /// Whether the rule refuses a record (given the fields the request sets).
    pub refuses: Refuses,
}

/// A fault the REST gate answers with instead of handling a request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// 503 Service Unavailable, nothing applied.
    Unavailable,
    /// 403 `REQUEST_LIMIT_EXCEEDED` "ConcurrentRequests", nothing applied.
    ConcurrentLimit,
    /// Handle the request, then answer 503: the acknowledgement is lost.
    LoseAck,
    /// This status and body, nothing applied.
    Answer { status: u16, body: String },
}

/// A fault waiting for the next request whose `METHOD path` contains `matcher` (any request
/// when `None`), after letting `skip` such requests through.
#[derive(Debug, Clone)]
pub struct Scripted {
    pub matcher: Option<String>,
    pub skip: u32,
    pub fault: Fault,
}

/// Everything the org holds and every knob, shared with the test.
pub struct Org {
    pub base_url: String,
    // -- OAuth --
    /// The connected app's consumer key (`iss` of an assertion, `client_id` of a refresh).
    pub consumer_key: String,
    /// The connected app's consumer secret (signs the token response; checked on refresh when set).
    pub consumer_secret: String,
    /// The integration user (`sub` of an assertion).
    pub username: String,
    /// The `aud` an assertion must carry (the login URL; this server's base URL by default).
    pub audience: String,
    /// The certificate's public key, DER `RSAPublicKey`.
    pub public_key: Vec<u8>,
    /// How far in the future an assertion's `exp` may lie.
    pub max_assertion_lifetime: Duration,
    /// Refresh tokens that are valid.
    pub refresh_tokens: HashSet<String>,
    /// Access tokens that are valid now.
    pub tokens: HashSet<String>,
    /// Token requests, by grant: `jwt-bearer`, `refresh_token`, and any other.
    pub token_requests: u64,
    pub jwt_grants: u64,
    pub refresh_grants: u64,
    /// Revoke every access token once this many more REST requests were authenticated.
    pub expire_after: Option<u64>,
    /// Refuse every grant with this `invalid_grant` description (a revoked app).
    pub refuse_grants: Option<String>,
    pub org_id: String,
    pub user_id: String,
    // -- limits and faults --
    /// The org's daily API allowance and how much of it is used.
    pub daily_limit: u64,
    pub api_used: u64,
    /// At most this many REST requests in flight (403 ConcurrentRequests above it).
    pub concurrency_cap: Option<usize>,
    pub in_flight: usize,
    pub max_in_flight: usize,
    /// Every handled REST request waits this long first (to make requests overlap).
    pub hold: Option<Duration>,
    pub script: VecDeque<Scripted>,
    /// `METHOD path?query` of every REST request, in order.
    pub requests: Vec<String>,
    /// API versions seen in request paths.
    pub versions: BTreeSet<String>,
    // -- data --
    pub objects: BTreeMap<String, ObjectDef>,
    /// Records by id.
    pub records: BTreeMap<String, StoredRecord>,
    /// Ids of records that were deleted.
    pub deleted: HashSet<String>,
    /// `(sObject, external id field, value)` → record id, for every external id field.
    pub ext_index: HashMap<(String, String, String), String>,
    /// Records created through each `(sObject, external id field, value)`.
    pub creations: HashMap<(String, String, String), u32>,
    /// Records read by external id (`GET /sobjects/{SObject}/{field}/{value}`) and handled.
    pub ext_lookups: u64,
    pub validation: Option<ValidationRule>,
    pub(crate) next_id: u64,
    // -- Bulk API 2.0 --
    pub jobs: BTreeMap<String, Job>,
    pub bulk: BulkKnobs,
}

impl Org {
    fn new(base_url: String, public_key: Vec<u8>) -> Org {
        let mut objects = BTreeMap::new();
        objects.insert("Contact".to_owned(), ObjectDef::contact());
        Org {
            audience: base_url.clone(),
            base_url,
            consumer_key: "3MVG9rse.test.consumer.key".to_owned(),
            consumer_secret: "rse-test-consumer-secret".to_owned(),
            username: "integration@rse.example".to_owned(),
            public_key,
            max_assertion_lifetime: Duration::from_secs(300),
            refresh_tokens: HashSet::new(),
            tokens: HashSet::new(),
            token_requests: 0,
            jwt_grants: 0,
            refresh_grants: 0,
            expire_after: None,
            refuse_grants: None,
            org_id: ids::with_checksum("00D5g000004RsE1"),
            user_id: ids::with_checksum("0055g00000IntUs"),
            daily_limit: 100_000,
            api_used: 0,
            concurrency_cap: None,
            in_flight: 0,
            max_in_flight: 0,
            hold: None,
            script: VecDeque::new(),
            requests: Vec::new(),
            versions: BTreeSet::new(),
            objects,
            records: BTreeMap::new(),
            deleted: HashSet::new(),
            ext_index: HashMap::new(),
            creations: HashMap::new(),
            ext_lookups: 0,
            validation: None,
            next_id: 0,
            jobs: BTreeMap::new(),
            bulk: BulkKnobs::default(),
        }
    }

    /// The record upserted through `field = value`, if any.
    pub fn record_by_ext(&self, sobject: &str, field: &str, value: &str) -> Option<&StoredRecord> {
        let id = self.ext_index.get(&(sobject.to_owned(), field.to_owned(), value.to_owned()))?;
        self.records.get(id)
    }

    /// How many records were created through `field = value`.
    pub fn creations_of(&self, sobject: &str, field: &str, value: &str) -> u32 {
        self.creations.get(&(sobject.to_owned(), field.to_owned(), value.to_owned())).copied().unwrap_or(0)
    }

    /// Records of one sObject type.
    pub fn count(&self, sobject: &str) -> usize {
        self.records.values().filter(|r| r.sobject == sobject).count()
    }

    /// The `Sforce-Limit-Info` value.
    pub fn limit_info(&self) -> String {
        format!("api-usage={}/{}", self.api_used, self.daily_limit)
    }
}

/// The org, served on 127.0.0.1 at a free port for as long as the runtime lives.
#[derive(Clone)]
pub struct SalesforceServer {
    pub org: Arc<Mutex<Org>>,
    pub addr: SocketAddr,
}

impl SalesforceServer {
    /// Starts an org that trusts the test key ([`test_key`]) and knows `Contact`.
    pub async fn start() -> SalesforceServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let org = Arc::new(Mutex::new(Org::new(format!("http://{addr}"), test_key().public_der.clone())));
        let rest = Router::new()
            .route("/services/data/{version}/limits", get(collections::limits))
            .route("/services/data/{version}/sobjects/{sobject}/describe", get(collections::describe))
            .route("/services/data/{version}/sobjects/{sobject}/{field}/{value}", get(rows::by_external_id))
            .route("/services/data/{version}/composite/sobjects", delete(collections::delete))
            .route("/services/data/{version}/composite/sobjects/{sobject}/{field}", patch(collections::upsert))
            .route("/services/data/{version}/jobs/ingest", post(bulk::create).get(bulk::list))
            .route("/services/data/{version}/jobs/ingest/{id}", get(bulk::info).patch(bulk::close).delete(bulk::remove))
            .route("/services/data/{version}/jobs/ingest/{id}/batches", put(bulk::upload))
            .route("/services/data/{version}/jobs/ingest/{id}/successfulResults", get(bulk_results::successful))
            .route("/services/data/{version}/jobs/ingest/{id}/successfulResults/", get(bulk_results::successful))
            .route("/services/data/{version}/jobs/ingest/{id}/failedResults", get(bulk_results::failed))
            .route("/services/data/{version}/jobs/ingest/{id}/failedResults/", get(bulk_results::failed))
            .route("/services/data/{version}/jobs/ingest/{id}/unprocessedrecords", get(bulk_results::unprocessed))
            .route("/services/data/{version}/jobs/ingest/{id}/unprocessedrecords/", get(bulk_results::unprocessed))
            .layer(axum::middleware::from_fn_with_state(org.clone(), gate::gate));
        let app = rest
            .route("/services/oauth2/token", post(auth::token))
            .fallback(|| async {
                sf_error(StatusCode::NOT_FOUND, "NOT_FOUND", "The requested resource does not exist")
            })
            // The upload size is the org's own knob (`BulkKnobs::upload_cap`), not axum's 2 MB.
            .layer(DefaultBodyLimit::disable())
            .with_state(org.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        SalesforceServer { org, addr }
    }

    /// The base URL: the login URL, the token audience and the instance URL at once.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn lock(&self) -> MutexGuard<'_, Org> {
        self.org.lock().unwrap()
    }

    /// Defines (or replaces) an sObject type.
    pub fn define(&self, name: &str, object: ObjectDef) {
        self.lock().objects.insert(name.to_owned(), object);
    }

    /// Revokes every access token now: the next REST request answers 401 `INVALID_SESSION_ID`.
    pub fn expire_tokens(&self) {
        self.lock().tokens.clear();
    }

    /// Revokes every access token once `n` more REST requests were authenticated.
    pub fn expire_tokens_after(&self, n: u64) {
        self.lock().expire_after = Some(n);
    }

    /// A refresh token the org accepts.
    pub fn add_refresh_token(&self, token: &str) {
        self.lock().refresh_tokens.insert(token.to_owned());
    }

    /// Answers the next REST request with `fault`.
    pub fn push_fault(&self, fault: Fault) {
        self.lock().script.push_back(Scripted { matcher: None, skip: 0, fault });
    }

    /// Answers the next REST request whose `METHOD path` contains `matcher` with `fault`.
    pub fn fault_on(&self, matcher: &str, fault: Fault) {
        self.fault_on_nth(matcher, 1, fault);
    }

    /// Answers the `n`-th next REST request whose `METHOD path` contains `matcher` with `fault`.
    pub fn fault_on_nth(&self, matcher: &str, n: u32, fault: Fault) {
        let skip = n.saturating_sub(1);
        self.lock().script.push_back(Scripted { matcher: Some(matcher.to_owned()), skip, fault });
    }

    /// Switches a validation rule on (`None` lifts it).
    pub fn set_validation(&self, rule: Option<ValidationRule>) {
        self.lock().validation = rule;
    }

    /// Sets the daily allowance and how much of it is already used.
    pub fn set_daily_allowance(&self, limit: u64, used: u64) {
        let mut org = self.lock();
        org.daily_limit = limit;
        org.api_used = used;
    }

    /// REST requests so far whose `METHOD path?query` contains `needle`.
    pub fn requests_matching(&self, needle: &str) -> usize {
        self.lock().requests.iter().filter(|r| r.contains(needle)).count()
    }
}

/// A REST error in Salesforce's envelope: a JSON array of `{message, errorCode}`.
pub fn sf_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json;charset=UTF-8")],
        json!([{"message": message, "errorCode": code}]).to_string(),
    )
        .into_response()
}

/// A JSON answer with Salesforce's content type.
pub fn json_response(status: StatusCode, body: &Json) -> Response {
    (status, [("content-type", "application/json;charset=UTF-8")], body.to_string()).into_response()
}

/// `vNN.N` → `NN.N`, for path versions Salesforce serves.
pub fn parse_version(v: &str) -> Option<f64> {
    let n = v.strip_prefix('v')?;
    let (major, minor) = n.split_once('.')?;
    if major.is_empty() || minor.len() != 1 || !major.bytes().chain(minor.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}
