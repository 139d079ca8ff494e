//! The configuration of an `HttpDestination`: where and how each operation goes, and the bounds of every call.

use std::fmt;
use std::time::Duration;

use reqwest::Method;
use rse_core::{Op, RateLimit};
use serde::{Deserialize, Serialize};

use crate::destination::Secret;

/// How changes are laid out in request bodies by default (see [`HttpBody`] for the choices
/// of one operation). Written `"object_per_change"` or `"array_per_batch"` in configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyShape {
    /// One request per change; the body is one JSON object. The destination declares
    /// batches of one change, so the runner's rate limit counts requests exactly.
    ObjectPerChange,
    /// One request per batch; the body is a JSON array with one object per change.
    #[default]
    ArrayPerBatch,
}

/// Where a 2xx response lists the records it did not accept.
///
/// The JSON pointer (RFC 6901) locates an array of error objects; each names the position
/// of its record in the request (`index_field`, 0-based) and why (`reason_field`). For
/// example `{"errors": [{"index": 3, "code": "invalid", "field": "email", "message":
/// "invalid email"}]}` with pointer `/errors`. With one change per request, an error object
/// without an index refers to the one change sent.
///
/// The rejection reason is `refused by the receiver (code=invalid, field=email)`: the error's
/// codes and field names, as for a 4xx (see the module docs), never its message, which may
/// repeat the refused value. The `reason_field` is read only with
/// [`HttpDestinationConfig::with_response_excerpts`].
///
/// An empty body, a missing pointer or `null` there mean "no errors". A body the
/// destination cannot attribute — not JSON, an index that is not a whole number within the
/// request, no index in a request of several — fails the write as
/// [`DestinationError::Fatal`](rse_core::DestinationError::Fatal) naming the pointer: the
/// records are neither marked applied nor refused on a guess.
///
/// In configuration: `{"pointer": "/errors"}`, with `index_field` (default `"index"`) and
/// `reason_field` (default `"message"`) when the receiver names them otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordErrors {
    /// The JSON pointer to the array of errors, e.g. `/errors`.
    pub pointer: String,
    /// The field of an error holding the record's 0-based index.
    #[serde(default = "default_index_field")]
    pub index_field: String,
    /// The field of an error holding the reason.
    #[serde(default = "default_reason_field")]
    pub reason_field: String,
}

fn default_index_field() -> String {
    "index".into()
}

fn default_reason_field() -> String {
    "message".into()
}

impl RecordErrors {
    /// Errors at `pointer`, with `index` and `message` fields.
    pub fn at(pointer: impl Into<String>) -> Self {
        Self { pointer: pointer.into(), index_field: default_index_field(), reason_field: default_reason_field() }
    }

    /// Sets the names of the index and reason fields.
    pub fn with_fields(mut self, index_field: impl Into<String>, reason_field: impl Into<String>) -> Self {
        self.index_field = index_field.into();
        self.reason_field = reason_field.into();
        self
    }
}

/// What the body of one operation's requests holds.
///
/// The array bodies send one request per batch (to a URL without placeholders); the others
/// send one request per change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HttpBody {
    /// The record's fields as one plain JSON object, as a REST API expects in a `PUT` or
    /// `POST`. For a delete, the key columns.
    #[default]
    Record,
    /// A JSON array of plain record objects, one request per batch.
    RecordArray,
    /// rse's envelope, one object per request:
    /// `{"op", "idempotency_key", "key", "record"}` (`record` is `null` for a delete).
    Envelope,
    /// A JSON array of envelopes, one request per batch.
    EnvelopeArray,
    /// No body and no `Content-Type`, as a `DELETE` of a record by its URL usually is.
    None,
}

impl HttpBody {
    /// Whether one request carries the whole batch.
    pub fn is_array(self) -> bool {
        matches!(self, HttpBody::RecordArray | HttpBody::EnvelopeArray)
    }

    pub(super) fn from_shape(shape: BodyShape, envelope: bool) -> Self {
        match (shape, envelope) {
            (BodyShape::ObjectPerChange, true) => HttpBody::Envelope,
            (BodyShape::ArrayPerBatch, true) => HttpBody::EnvelopeArray,
            (BodyShape::ObjectPerChange, false) => HttpBody::Record,
            (BodyShape::ArrayPerBatch, false) => HttpBody::RecordArray,
        }
    }
}

/// How the requests of one operation are sent: method, URL template, body and extra headers.
///
/// The URL template is resolved against the destination's URL as a link in a page would be
/// (`/customers/{id}` replaces the path, `customers/{id}` is relative to it, an absolute
/// URL stands alone; empty means the destination's URL). Each `{field}` is replaced by that
/// schema field's value in text form, percent-encoded as one path segment, so `a/b c`
/// becomes `a%2Fb%20c`. A delete carries only its key, so its template may name key
/// columns only. Placeholders may stand in the path and the query, not in the host.
///
/// A template with a placeholder sends one request per change. A change whose value would
/// fill a whole path segment with nothing, `.` or `..` (which would address another
/// resource), or whose value is null, is rejected with a reason naming the field.
///
/// In configuration every field is optional (`POST`, the destination's URL, the plain
/// record, no headers) and an unknown one is refused:
/// `{"method": "PUT", "url": "/customers/{id}", "headers": [["X-Api-Key", {"env": "CRM_KEY"}]]}`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct HttpOpRequest {
    /// The HTTP method.
    #[serde(with = "method_text")]
    pub method: Method,
    /// The URL template (see above).
    pub url: String,
    /// What the body holds.
    pub body: HttpBody,
    /// Headers sent with this operation's requests, after the destination's own; values are
    /// kept as [`Secret`]s (in configuration `[name, value]` pairs, a value inline or by
    /// reference).
    pub headers: Vec<(String, Secret)>,
}

impl Default for HttpOpRequest {
    fn default() -> Self {
        Self { method: Method::POST, url: String::new(), body: HttpBody::Record, headers: Vec::new() }
    }
}

impl fmt::Debug for HttpOpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpOpRequest")
            .field("method", &self.method)
            .field("url", &redact_template(&self.url))
            .field("body", &self.body)
            .field("headers", &self.headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>())
            .finish()
    }
}

impl HttpOpRequest {
    /// `method` to `url_template`; the body is the plain record, or none for `DELETE`.
    pub fn new(method: Method, url_template: impl Into<String>) -> Self {
        let body = if method == Method::DELETE { HttpBody::None } else { HttpBody::Record };
        Self { method, url: url_template.into(), body, headers: Vec::new() }
    }

    /// `PUT` of the plain record to `url_template`.
    pub fn put(url_template: impl Into<String>) -> Self {
        Self::new(Method::PUT, url_template)
    }

    /// `POST` of the plain record to `url_template`.
    pub fn post(url_template: impl Into<String>) -> Self {
        Self::new(Method::POST, url_template)
    }

    /// `PATCH` of the plain record to `url_template`.
    pub fn patch(url_template: impl Into<String>) -> Self {
        Self::new(Method::PATCH, url_template)
    }

    /// `DELETE` of `url_template`, without a body.
    pub fn delete(url_template: impl Into<String>) -> Self {
        Self::new(Method::DELETE, url_template)
    }

    /// Sets what the body holds.
    pub fn with_body(mut self, body: HttpBody) -> Self {
        self.body = body;
        self
    }

    /// Adds a header sent with this operation's requests.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Secret>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// How long each part of a call may take, and the longest `Retry-After` taken as asked.
///
/// In configuration durations read as `"10s"`, `"500ms"`, `"1d"` (see
/// [`rse_core::config`]); every field is optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct HttpTimeouts {
    /// Resolving and connecting, TLS included (default 10 s).
    #[serde(with = "rse_core::config::duration")]
    pub connect: Duration,
    /// One whole request, from connecting to the last byte of the answer (default 30 s).
    #[serde(with = "rse_core::config::duration")]
    pub request: Duration,
    /// How long an idle connection stays in the pool (default 90 s).
    #[serde(with = "rse_core::config::duration")]
    pub pool_idle: Duration,
    /// The longest wait a `Retry-After` can ask for (default one day); a longer one, or one
    /// too large to represent, arrives at the runner as this.
    #[serde(with = "rse_core::config::duration")]
    pub max_retry_after: Duration,
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(30),
            pool_idle: Duration::from_secs(90),
            max_retry_after: Duration::from_secs(24 * 3600),
        }
    }
}

/// The configuration of an [`HttpDestination`](super::HttpDestination), built with `with_*`
/// methods from [`new`](Self::new) or read from a configuration file.
///
/// In a file only `url` is required; every other field takes the default `new` gives it,
/// an unknown field is refused, durations read as `"30s"` and secrets (`headers` values,
/// `bearer_token`, `signing_secret`) inline or by reference (see [`Secret`]):
///
/// ```
/// use rse_connectors::{HttpDestination, HttpDestinationConfig};
/// let config: HttpDestinationConfig = serde_json::from_str(
///     r#"{
///         "url": "https://crm.example.com/api/",
///         "name": "crm",
///         "bearer_token": "t0ken",
///         "requests": { "insert": { "method": "PUT", "url": "customers/{id}" } },
///         "timeouts": { "request": "10s" },
///         "rate_limit": { "requests": 90, "per": "10s" }
///     }"#,
/// )?;
/// assert!(!format!("{config:?}").contains("t0ken"));
/// let crm = HttpDestination::new(config)?;
/// # drop(crm);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpDestinationConfig {
    /// Shown in reports as `http:<name>`; `http` without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) name: Option<String>,
    #[serde(default = "default_method", with = "method_text")]
    pub(super) method: Method,
    pub(super) url: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) headers: Vec<(String, Secret)>,
    /// Sent as `Authorization: Bearer <token>` after `headers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) bearer_token: Option<Secret>,
    #[serde(default)]
    pub(super) shape: BodyShape,
    /// `[target, source]` pairs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) fields: Vec<(String, String)>,
    #[serde(default = "yes")]
    pub(super) envelope: bool,
    #[serde(default, with = "op_requests", skip_serializing_if = "op_requests::is_empty")]
    pub(super) requests: [Option<HttpOpRequest>; 4],
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) signing_secret: Option<Secret>,
    #[serde(default)]
    pub(super) timeouts: HttpTimeouts,
    #[serde(default = "default_pool_max_idle_per_host")]
    pub(super) pool_max_idle_per_host: usize,
    #[serde(default, with = "rate_limit", skip_serializing_if = "Option::is_none")]
    pub(super) rate_limit: Option<RateLimit>,
    #[serde(default = "default_max_batch_rows")]
    pub(super) max_batch_rows: usize,
    #[serde(default = "default_max_batch_bytes")]
    pub(super) max_batch_bytes: usize,
    #[serde(default = "default_max_concurrency")]
    pub(super) max_concurrency: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) record_errors: Option<RecordErrors>,
    #[serde(default)]
    pub(super) response_excerpts: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) check_url: Option<String>,
}

fn default_method() -> Method {
    Method::POST
}

fn yes() -> bool {
    true
}

fn default_pool_max_idle_per_host() -> usize {
    32
}

fn default_max_batch_rows() -> usize {
    500
}

fn default_max_batch_bytes() -> usize {
    4 << 20
}

fn default_max_concurrency() -> usize {
    4
}

impl fmt::Debug for HttpDestinationConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values may be credentials and a URL may carry a token: names only.
        f.debug_struct("HttpDestinationConfig")
            .field("name", &self.name)
            .field("method", &self.method)
            .field("url", &redact_url(&self.url))
            .field("headers", &self.headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>())
            .field("bearer_token", &self.bearer_token)
            .field("shape", &self.shape)
            .field("fields", &self.fields)
            .field("envelope", &self.envelope)
            .field("requests", &self.requests)
            .field("signing_secret", &self.signing_secret)
            .field("timeouts", &self.timeouts)
            .field("pool_max_idle_per_host", &self.pool_max_idle_per_host)
            .field("rate_limit", &self.rate_limit)
            .field("max_batch_rows", &self.max_batch_rows)
            .field("max_batch_bytes", &self.max_batch_bytes)
            .field("max_concurrency", &self.max_concurrency)
            .field("record_errors", &self.record_errors)
            .field("response_excerpts", &self.response_excerpts)
            .field("check_url", &self.check_url.as_deref().map(redact_template))
            .finish()
    }
}

/// A URL without its query string and user info, for logs and errors.
pub(super) fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let had_query = u.query().is_some();
            u.set_query(None);
            let _ = u.set_password(None);
            let _ = u.set_username("");
            let mut s = u.to_string();
            if had_query {
                s.push_str("?…");
            }
            s
        }
        Err(_) => "<invalid url>".to_owned(),
    }
}

/// A URL template without its query string (it may carry a token), for logs and errors.
pub(super) fn redact_template(template: &str) -> String {
    if template.contains("://") {
        return redact_url(template);
    }
    match template.split_once('?') {
        Some((path, _)) => format!("{path}?…"),
        None => template.to_owned(),
    }
}

/// The slot of `op` in per-operation arrays.
pub(super) fn op_slot(op: Op) -> usize {
    match op {
        Op::Insert => 0,
        Op::Update => 1,
        Op::Delete => 2,
        Op::Append => 3,
    }
}

impl HttpDestinationConfig {
    /// `POST` of JSON arrays of envelopes to `url`; timeouts as [`HttpTimeouts::default`],
    /// no signature, no rate limit.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            name: None,
            method: default_method(),
            url: url.into(),
            headers: Vec::new(),
            bearer_token: None,
            shape: BodyShape::default(),
            fields: Vec::new(),
            envelope: true,
            requests: [None, None, None, None],
            signing_secret: None,
            timeouts: HttpTimeouts::default(),
            pool_max_idle_per_host: default_pool_max_idle_per_host(),
            rate_limit: None,
            max_batch_rows: default_max_batch_rows(),
            max_batch_bytes: default_max_batch_bytes(),
            max_concurrency: default_max_concurrency(),
            record_errors: None,
            response_excerpts: false,
            check_url: None,
        }
    }

    /// The name shown in reports (`http:<name>`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The destination's name in reports and messages: `http:<name>`, or `http`.
    pub(super) fn display_name(&self) -> String {
        match &self.name {
            Some(name) => format!("http:{name}"),
            None => "http".to_owned(),
        }
    }

    /// The HTTP method of operations without their own request (default `POST`).
    pub fn with_method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// Adds a header sent with every request. Its value is kept as a [`Secret`].
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Secret>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sends `Authorization: Bearer <token>` with every request (after the headers of
    /// [`with_header`](Self::with_header)).
    pub fn with_bearer_token(mut self, token: impl Into<Secret>) -> Self {
        self.bearer_token = Some(token.into());
        self
    }

    /// The body shape of operations without their own request (default
    /// [`BodyShape::ArrayPerBatch`]).
    pub fn with_shape(mut self, shape: BodyShape) -> Self {
        self.shape = shape;
        self
    }

    /// Sends the schema field `source` as `target`. Once any field is mapped, only mapped
    /// fields are sent, in the order mapped.
    pub fn with_field(mut self, target: impl Into<String>, source: impl Into<String>) -> Self {
        self.fields.push((target.into(), source.into()));
        self
    }

    /// Whether operations without their own request wrap each object in the
    /// `op`/`idempotency_key`/`key`/`record` envelope (default `true`). Without it, deletes
    /// need their own request ([`with_request`](Self::with_request)).
    pub fn with_envelope(mut self, envelope: bool) -> Self {
        self.envelope = envelope;
        self
    }

    /// Sends `op`'s changes as `request` says (method, URL template, body, headers) instead
    /// of the destination's default.
    pub fn with_request(mut self, op: Op, request: HttpOpRequest) -> Self {
        self.requests[op_slot(op)] = Some(request);
        self
    }

    /// A plain REST resource at `url_template` (e.g. `/customers/{id}`): inserts and
    /// updates `PUT` the plain record there, deletes `DELETE` it without a body. Appends
    /// keep the destination's default.
    pub fn with_rest_resource(self, url_template: impl Into<String>) -> Self {
        let url = url_template.into();
        self.with_request(Op::Insert, HttpOpRequest::put(url.clone()))
            .with_request(Op::Update, HttpOpRequest::put(url.clone()))
            .with_request(Op::Delete, HttpOpRequest::delete(url))
    }

    /// Signs every body with HMAC-SHA256 under `secret` (see the module docs).
    pub fn with_signing_secret(mut self, secret: impl Into<Secret>) -> Self {
        self.signing_secret = Some(secret.into());
        self
    }

    /// All the time bounds at once.
    pub fn with_timeouts(mut self, timeouts: HttpTimeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// The whole-request timeout (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.request = timeout;
        self
    }

    /// The connect timeout, TLS included (default 10 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.connect = timeout;
        self
    }

    /// How long an idle connection stays in the pool (default 90 s).
    pub fn with_pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.pool_idle = timeout;
        self
    }

    /// How many idle connections per host the pool keeps (default 32).
    pub fn with_pool_max_idle_per_host(mut self, n: usize) -> Self {
        self.pool_max_idle_per_host = n;
        self
    }

    /// The longest wait a `Retry-After` can ask for (default one day).
    pub fn with_max_retry_after(mut self, max: Duration) -> Self {
        self.timeouts.max_retry_after = max;
        self
    }

    /// The receiver's quota, declared to the runner, which paces every request to it.
    ///
    /// Leave a little headroom (declare 97 for a quota of 100 per second): requests leave
    /// at exact intervals but arrive with network jitter, so a receiver that counts a
    /// sliding window can see one more than the quota in some window.
    pub fn with_rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limit = Some(limit);
        self
    }

    /// The most changes per request with an array body (default 500).
    pub fn with_max_batch_rows(mut self, rows: usize) -> Self {
        self.max_batch_rows = rows.max(1);
        self
    }

    /// The most estimated bytes per request (default 4 MiB).
    pub fn with_max_batch_bytes(mut self, bytes: usize) -> Self {
        self.max_batch_bytes = bytes.max(1);
        self
    }

    /// The most requests in flight at once (default 4).
    pub fn with_max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n.max(1);
        self
    }

    /// Where a 2xx response lists refused records.
    pub fn with_record_errors(mut self, errors: RecordErrors) -> Self {
        self.record_errors = Some(errors);
        self
    }

    /// Whether rejection reasons keep the receiver's own words (default `false`).
    ///
    /// Receivers often repeat the value they refuse ("`ann@example.com` is not a valid
    /// email"), and reasons are stored in the state store and shown in reports, where rse
    /// never puts a row's values. So by default a reason holds only the HTTP status and,
    /// from a JSON answer, its error codes and the names of the fields at fault (see the
    /// module docs). With excerpts on, a 4xx reason holds up to 300 characters of the
    /// receiver's answer, and a record refused in a 2xx ([`RecordErrors`]) its
    /// `reason_field`, as the receiver wrote them: turn it on only where the reports may
    /// hold personal data.
    pub fn with_response_excerpts(mut self, excerpts: bool) -> Self {
        self.response_excerpts = excerpts;
        self
    }

    /// A URL that `check()` sends a `GET` to (a health or "whoami" endpoint), absolute or
    /// relative to the destination's URL; without one, `check()` only validates the
    /// configuration.
    pub fn with_check_url(mut self, url: impl Into<String>) -> Self {
        self.check_url = Some(url.into());
        self
    }
}

/// A method as its name, e.g. `"PUT"`.
mod method_text {
    use reqwest::Method;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(super) fn serialize<S: Serializer>(method: &Method, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(method.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Method, D::Error> {
        let text = String::deserialize(d)?;
        Method::from_bytes(text.to_ascii_uppercase().as_bytes())
            .map_err(|_| D::Error::custom(format!("`{text}` is not an HTTP method (e.g. PUT, POST, DELETE)")))
    }
}

/// Operations' own requests as an object by operation: `{"insert": {…}, "delete": {…}}`.
mod op_requests {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::HttpOpRequest;

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ByOp<T> {
        #[serde(default = "none", skip_serializing_if = "Option::is_none")]
        insert: Option<T>,
        #[serde(default = "none", skip_serializing_if = "Option::is_none")]
        update: Option<T>,
        #[serde(default = "none", skip_serializing_if = "Option::is_none")]
        delete: Option<T>,
        #[serde(default = "none", skip_serializing_if = "Option::is_none")]
        append: Option<T>,
    }

    fn none<T>() -> Option<T> {
        None
    }

    // Slots in the order of `op_slot`.
    pub(super) fn is_empty(requests: &[Option<HttpOpRequest>; 4]) -> bool {
        requests.iter().all(Option::is_none)
    }

    pub(super) fn serialize<S: Serializer>(requests: &[Option<HttpOpRequest>; 4], s: S) -> Result<S::Ok, S::Error> {
        let [insert, update, delete, append] = requests.each_ref();
        ByOp { insert: insert.as_ref(), update: update.as_ref(), delete: delete.as_ref(), append: append.as_ref() }
            .serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[Option<HttpOpRequest>; 4], D::Error> {
        let by_op = ByOp::<HttpOpRequest>::deserialize(d)?;
        Ok([by_op.insert, by_op.update, by_op.delete, by_op.append])
    }
}

/// A rate limit as `{"requests": 90, "per": "10s", "burst": 1}` (`per` one second and
/// `burst` one unless given).
mod rate_limit {
    use std::time::Duration;

    use rse_core::RateLimit;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Quota {
        requests: u32,
        #[serde(default = "one_second", with = "rse_core::config::duration")]
        per: Duration,
        #[serde(default = "one")]
        burst: u32,
    }

    fn one_second() -> Duration {
        Duration::from_secs(1)
    }

    fn one() -> u32 {
        1
    }

    pub(super) fn serialize<S: Serializer>(limit: &Option<RateLimit>, s: S) -> Result<S::Ok, S::Error> {
        limit.map(|l| Quota { requests: l.requests, per: l.per, burst: l.burst }).serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RateLimit>, D::Error> {
        Ok(Option::<Quota>::deserialize(d)?.map(|q| RateLimit { requests: q.requests, per: q.per, burst: q.burst }))
    }
}
