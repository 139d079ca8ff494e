//! `HttpDestination`: changes delivered to a webhook as JSON, signed, with idempotency keys.
//!
//! # The request
//! - Body: [`BodyShape::ObjectPerChange`] sends one request per change whose body is one
//!   JSON object; [`BodyShape::ArrayPerBatch`] sends one request per batch whose body is a
//!   JSON array of such objects.
//! - Each object is, with the envelope on (the default):
//!   `{"op": "insert", "idempotency_key": "<32 hex>", "key": {<key columns>}, "record": {<fields>}}`
//!   (`record` is `null` for a delete); with the envelope off it is just the record's fields
//!   and deletes are not supported. Fields are all of the schema's by name, or only those
//!   mapped with [`HttpDestinationConfig::with_field`]. Values follow the table in the
//!   `encode` module: decimals as strings, bytes as base64, timestamps as RFC 3339.
//! - `Idempotency-Key`: the change's idempotency key (one object per request), or for an
//!   array the SHA-256 (first 128 bits, hex) of its changes' keys in order — the very same
//!   batch re-sent carries the same header, and each object carries its own key anyway.
//! - Signature (with [`HttpDestinationConfig::with_signing_secret`]): the header
//!   `X-Rse-Timestamp` holds the Unix time in seconds and `X-Rse-Signature` holds
//!   `sha256=<hex>` of HMAC-SHA256(secret, `"{timestamp}.{body}"`). A receiver recomputes it
//!   over the raw body, compares in constant time and refuses old timestamps to stop replays.
//!
//! # The response
//! | answer | outcome |
//! |---|---|
//! | 2xx | applied, except the records the body lists as failed (see [`RecordErrors`]) |
//! | 429 | [`DestinationError::RateLimited`] with `Retry-After` (seconds or an HTTP date) |
//! | 408, 5xx, timeout, connection failure | [`DestinationError::Transient`] |
//! | 401, 403 | [`DestinationError::Unauthorized`] |
//! | other 4xx | rejected: the change, or for an array [`DestinationError::InvalidBatch`] so the runner bisects down to the refused records |
//!
//! A timeout after the request was sent is retried like any transient failure: the
//! receiver sees the same idempotency keys again and can drop the duplicates.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use rse_core::{
    Change, ChangeBatch, ChangeOutcome, Destination, DestinationCapabilities, DestinationError, Op, RateLimit, Schema,
    WriteOutcome,
};
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};

use super::Secret;
use super::encode::{key_object, to_json};

pub use reqwest::Method;

/// How changes are laid out in request bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
/// example `{"errors": [{"index": 3, "message": "invalid email"}]}` with pointer `/errors`.
/// With [`BodyShape::ObjectPerChange`], an error object without an index refers to the one
/// change sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordErrors {
    /// The JSON pointer to the array of errors, e.g. `/errors`.
    pub pointer: String,
    /// The field of an error holding the record's 0-based index.
    pub index_field: String,
    /// The field of an error holding the reason.
    pub reason_field: String,
}

impl RecordErrors {
    /// Errors at `pointer`, with `index` and `message` fields.
    pub fn at(pointer: impl Into<String>) -> Self {
        Self { pointer: pointer.into(), index_field: "index".into(), reason_field: "message".into() }
    }

    /// Sets the names of the index and reason fields.
    pub fn with_fields(mut self, index_field: impl Into<String>, reason_field: impl Into<String>) -> Self {
        self.index_field = index_field.into();
        self.reason_field = reason_field.into();
        self
    }
}

/// The configuration of an [`HttpDestination`].
#[derive(Clone)]
pub struct HttpDestinationConfig {
    name: String,
    method: Method,
    url: String,
    headers: Vec<(String, Secret)>,
    shape: BodyShape,
    fields: Vec<(String, String)>,
    envelope: bool,
    signing_secret: Option<Secret>,
    timeout: Duration,
    connect_timeout: Duration,
    rate_limit: Option<RateLimit>,
    max_batch_rows: usize,
    max_batch_bytes: usize,
    max_concurrency: usize,
    record_errors: Option<RecordErrors>,
    check_url: Option<String>,
}

impl fmt::Debug for HttpDestinationConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values may be credentials and the URL may carry a token: names only.
        f.debug_struct("HttpDestinationConfig")
            .field("name", &self.name)
            .field("method", &self.method)
            .field("url", &redact_url(&self.url))
            .field("headers", &self.headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>())
            .field("shape", &self.shape)
            .field("fields", &self.fields)
            .field("envelope", &self.envelope)
            .field("signing_secret", &self.signing_secret)
            .field("timeout", &self.timeout)
            .field("rate_limit", &self.rate_limit)
            .field("max_batch_rows", &self.max_batch_rows)
            .field("max_concurrency", &self.max_concurrency)
            .field("record_errors", &self.record_errors)
            .finish_non_exhaustive()
    }
}

/// A URL without its query string and user info, for logs and errors.
fn redact_url(url: &str) -> String {
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

impl HttpDestinationConfig {
    /// `POST` of JSON arrays to `url`, 30 s timeout, no signature, no rate limit.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            name: "http".into(),
            method: Method::POST,
            url: url.into(),
            headers: Vec::new(),
            shape: BodyShape::default(),
            fields: Vec::new(),
            envelope: true,
            signing_secret: None,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            rate_limit: None,
            max_batch_rows: 500,
            max_batch_bytes: 4 << 20,
            max_concurrency: 4,
            record_errors: None,
            check_url: None,
        }
    }

    /// The name shown in reports (`http:<name>`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = format!("http:{}", name.into());
        self
    }

    /// The HTTP method (default `POST`).
    pub fn with_method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// Adds a header sent with every request. Its value is kept as a [`Secret`].
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Secret>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds `Authorization: Bearer <token>`.
    pub fn with_bearer_token(self, token: impl Into<Secret>) -> Self {
        let token = token.into();
        self.with_header("Authorization", Secret::new(format!("Bearer {}", token.expose())))
    }

    /// The body shape (default [`BodyShape::ArrayPerBatch`]).
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

    /// Whether each object is wrapped in the `op`/`idempotency_key`/`key`/`record` envelope
    /// (default `true`). Without it, deletes are not supported.
    pub fn with_envelope(mut self, envelope: bool) -> Self {
        self.envelope = envelope;
        self
    }

    /// Signs every body with HMAC-SHA256 under `secret` (see the module docs).
    pub fn with_signing_secret(mut self, secret: impl Into<Secret>) -> Self {
        self.signing_secret = Some(secret.into());
        self
    }

    /// The whole-request timeout (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
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

    /// The most changes per request with [`BodyShape::ArrayPerBatch`] (default 500).
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

    /// A URL that `check()` sends a `GET` to (a health or "whoami" endpoint); without
    /// one, `check()` only validates the configuration.
    pub fn with_check_url(mut self, url: impl Into<String>) -> Self {
        self.check_url = Some(url.into());
        self
    }
}

/// Delivers changes to a webhook; see the module docs for the request and the response.
pub struct HttpDestination {
    config: HttpDestinationConfig,
    client: reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
}

impl fmt::Debug for HttpDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpDestination").field("config", &self.config).finish_non_exhaustive()
    }
}

fn config_error(message: String) -> DestinationError {
    DestinationError::Fatal { message, source: None }
}

impl HttpDestination {
    /// Builds the client.
    ///
    /// # Errors
    /// [`DestinationError::Fatal`] naming the setting at fault: an invalid URL, header
    /// name or value, or a TLS setup failure.
    pub fn new(config: HttpDestinationConfig) -> Result<Self, DestinationError> {
        let url = reqwest::Url::parse(&config.url)
            .map_err(|e| config_error(format!("{}: URL `{}` is invalid: {e}", config.name, redact_url(&config.url))))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| config_error(format!("{}: `{name}` is not a valid header name", config.name)))?;
            let mut value = HeaderValue::from_str(value.expose()).map_err(|_| {
                config_error(format!("{}: the value of header `{name}` is not valid header text", config.name))
            })?;
            value.set_sensitive(true);
            headers.append(header, value);
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| DestinationError::Fatal {
                message: format!("{}: building the HTTP client failed", config.name),
                source: Some(Box::new(e)),
            })?;
        Ok(Self { config, client, url, headers })
    }

    fn object(&self, schema: &Schema, change: &Change) -> Result<Json, String> {
        let record = match &change.record {
            Some(r) => {
                let mut obj = Map::new();
                if self.config.fields.is_empty() {
                    for (f, v) in schema.fields().iter().zip(&r.values) {
                        obj.insert(f.name.clone(), to_json(v));
                    }
                } else {
                    for (target, source) in &self.config.fields {
                        let i = schema.index_of(source).ok_or_else(|| {
                            format!(
                                "field mapping names `{source}`, which the schema lacks (fields: {})",
                                schema.field_names()
                            )
                        })?;
                        obj.insert(target.clone(), r.values.get(i).map_or(Json::Null, to_json));
                    }
                }
                Json::Object(obj)
            }
            None => Json::Null,
        };
        if !self.config.envelope {
            return Ok(record);
        }
        let key = change.key.decode().map_err(|e| format!("key could not be decoded: {e}"))?;
        let mut obj = Map::new();
        obj.insert("op".into(), Json::String(change.op.as_str().to_owned()));
        obj.insert("idempotency_key".into(), Json::String(change.idempotency_key.to_string()));
        obj.insert("key".into(), Json::Object(key_object(schema, &key)));
        obj.insert("record".into(), record);
        Ok(Json::Object(obj))
    }

    /// Sends one body; `n` is the number of changes in it.
    async fn send(
        &self,
        body: Vec<u8>,
        idempotency_key: String,
        n: usize,
    ) -> Result<Vec<ChangeOutcome>, DestinationError> {
        let mut request = self
            .client
            .request(self.config.method.clone(), self.url.clone())
            .headers(self.headers.clone())
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", idempotency_key);
        if let Some(secret) = &self.config.signing_secret {
            let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0).to_string();
            request =
                request.header("X-Rse-Signature", sign(secret, &timestamp, &body)).header("X-Rse-Timestamp", timestamp);
        }
        let response = request.body(body).send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status();
        if status.is_success() {
            // Read the body even when it is not needed, so the connection can be reused; a
            // failure to read it after a 2xx changes nothing: the receiver accepted the batch.
            let body = response.bytes().await;
            let Some(errors) = &self.config.record_errors else {
                return Ok(vec![ChangeOutcome::Applied; n]);
            };
            let body = body.map_err(|e| self.transport_error(e))?;
            return Ok(self.record_outcomes(errors, &body, n));
        }
        let code = status.as_u16();
        if code == 429 {
            let retry_after =
                response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
            return Err(DestinationError::RateLimited { retry_after });
        }
        let reason = status.canonical_reason().unwrap_or("");
        if code == 408 || status.is_server_error() {
            return Err(DestinationError::transient(format!("{}: HTTP {code} {reason}", self.config.name)));
        }
        if code == 401 || code == 403 {
            return Err(DestinationError::Unauthorized {
                message: format!("{}: HTTP {code} {reason}; check the token or signing secret", self.config.name),
            });
        }
        // Another 4xx: the receiver refused what we sent. Its body says why, in its own
        // words; it becomes the rejection reason (reports show it, logs never do).
        let body = response.bytes().await.unwrap_or_default();
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        let message =
            if text.is_empty() { format!("HTTP {code} {reason}") } else { format!("HTTP {code} {reason}: {text}") };
        if n == 1 {
            Ok(vec![ChangeOutcome::rejected(message)])
        } else {
            Err(DestinationError::InvalidBatch { message })
        }
    }

    fn record_outcomes(&self, errors: &RecordErrors, body: &[u8], n: usize) -> Vec<ChangeOutcome> {
        let mut outcomes = vec![ChangeOutcome::Applied; n];
        let Ok(json) = serde_json::from_slice::<Json>(body) else { return outcomes };
        let list = match json.pointer(&errors.pointer) {
            Some(Json::Array(list)) => list.clone(),
            Some(Json::Null) | None => return outcomes,
            Some(single) => vec![single.clone()],
        };
        for error in list {
            let index = match error.get(&errors.index_field).and_then(Json::as_u64) {
                Some(i) => usize::try_from(i).unwrap_or(usize::MAX),
                None if n == 1 => 0,
                None => continue,
            };
            let reason = match error.get(&errors.reason_field) {
                Some(Json::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None if error.is_string() => error.as_str().unwrap_or_default().to_owned(),
                None => "refused by the receiver (no reason given)".to_owned(),
            };
            if let Some(slot) = outcomes.get_mut(index) {
                *slot = ChangeOutcome::rejected(reason);
            }
        }
        outcomes
    }

    fn transport_error(&self, e: reqwest::Error) -> DestinationError {
        let what = if e.is_timeout() {
            format!("{}: no answer within {:?}", self.config.name, self.config.timeout)
        } else if e.is_connect() {
            format!("{}: could not connect to {}", self.config.name, redact_url(self.url.as_str()))
        } else {
            format!("{}: request failed", self.config.name)
        };
        // Every transport failure may pass; the request is safe to repeat under its keys.
        DestinationError::Transient { message: what, source: Some(Box::new(e.without_url())) }
    }
}

/// `sha256=<hex>` of HMAC-SHA256(secret, `"{timestamp}.{body}"`).
pub fn sign(secret: &Secret, timestamp: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `Retry-After` as delta-seconds or an HTTP date; a date in the past means now.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Some(Duration::from_secs_f64(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

#[async_trait]
impl Destination for HttpDestination {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn capabilities(&self) -> DestinationCapabilities {
        let ops: &[Op] = if self.config.envelope { &Op::ALL } else { &[Op::Insert, Op::Update, Op::Append] };
        let rows = match self.config.shape {
            BodyShape::ObjectPerChange => 1,
            BodyShape::ArrayPerBatch => self.config.max_batch_rows,
        };
        DestinationCapabilities::new(ops.iter().copied())
            .with_max_batch_rows(rows)
            .with_max_batch_bytes(self.config.max_batch_bytes)
            .with_max_concurrency(self.config.max_concurrency)
            .with_idempotency_keys(true)
            .with_rate_limit(self.config.rate_limit)
    }

    async fn check(&self) -> Result<(), DestinationError> {
        let Some(url) = &self.config.check_url else { return Ok(()) };
        let response =
            self.client.get(url).headers(self.headers.clone()).send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status();
        match status.as_u16() {
            200..=299 => Ok(()),
            401 | 403 => Err(DestinationError::Unauthorized {
                message: format!("{}: check answered HTTP {status}; check the token", self.config.name),
            }),
            429 => Err(DestinationError::RateLimited { retry_after: None }),
            408 | 500..=599 => {
                Err(DestinationError::transient(format!("{}: check answered HTTP {status}", self.config.name)))
            }
            _ => Err(DestinationError::fatal(format!("{}: check answered HTTP {status}", self.config.name))),
        }
    }

    async fn write(&self, batch: &ChangeBatch) -> Result<WriteOutcome, DestinationError> {
        if batch.changes.is_empty() {
            return Ok(WriteOutcome::default());
        }
        // A change the configuration cannot express is rejected; the others still go.
        let mut outcomes: Vec<Option<ChangeOutcome>> = vec![None; batch.changes.len()];
        let mut objects = Vec::with_capacity(batch.changes.len());
        let mut sent = Vec::with_capacity(batch.changes.len());
        for (i, change) in batch.changes.iter().enumerate() {
            if change.op == Op::Delete && !self.config.envelope {
                outcomes[i] = Some(ChangeOutcome::rejected("deletes need the envelope (`with_envelope(true)`)"));
                continue;
            }
            match self.object(&batch.schema, change) {
                Ok(obj) => {
                    objects.push(obj);
                    sent.push(i);
                }
                Err(reason) => outcomes[i] = Some(ChangeOutcome::rejected(reason)),
            }
        }
        match self.config.shape {
            BodyShape::ObjectPerChange => {
                for (obj, &i) in objects.iter().zip(&sent) {
                    let body = serde_json::to_vec(obj)
                        .map_err(|e| config_error(format!("{}: encoding JSON: {e}", self.config.name)))?;
                    let mut answer = self.send(body, batch.changes[i].idempotency_key.to_string(), 1).await?;
                    outcomes[i] = answer.pop();
                }
            }
            BodyShape::ArrayPerBatch if !objects.is_empty() => {
                let mut h = Sha256::new();
                for &i in &sent {
                    h.update(batch.changes[i].idempotency_key.0);
                }
                let key = hex(&h.finalize()[..16]);
                let body = serde_json::to_vec(&objects)
                    .map_err(|e| config_error(format!("{}: encoding JSON: {e}", self.config.name)))?;
                let answers = self.send(body, key, sent.len()).await?;
                for (&i, outcome) in sent.iter().zip(answers) {
                    outcomes[i] = Some(outcome);
                }
            }
            BodyShape::ArrayPerBatch => {}
        }
        Ok(WriteOutcome { outcomes: outcomes.into_iter().map(|o| o.unwrap_or(ChangeOutcome::Applied)).collect() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let d = parse_retry_after(&later).unwrap_or_default();
        assert!(d > Duration::from_secs(100) && d <= Duration::from_secs(120), "{d:?}");
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let config = HttpDestinationConfig::new("https://user:pw@example.com/hook?token=abc")
            .with_bearer_token("tok-123")
            .with_signing_secret("hmac-456");
        let shown = format!("{config:?}");
        for secret in ["tok-123", "hmac-456", "pw", "token=abc"] {
            assert!(!shown.contains(secret), "{secret} leaked into {shown}");
        }
    }
}
