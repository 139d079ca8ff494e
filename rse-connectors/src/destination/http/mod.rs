//! `HttpDestination`: changes delivered over HTTP, to a webhook in rse's signed envelope or to a plain REST API.
//!
//! # The request
//! By default every operation is a `POST` to the destination's URL (see
//! [`HttpDestinationConfig::with_method`] and [`with_shape`](HttpDestinationConfig::with_shape)):
//! - Body: [`BodyShape::ObjectPerChange`] sends one request per change whose body is one
//!   JSON object; [`BodyShape::ArrayPerBatch`] sends one request per batch whose body is a
//!   JSON array of such objects.
//! - Each object is, with the envelope on (the default):
//!   `{"op": "insert", "idempotency_key": "<32 hex>", "key": {<key columns>}, "record": {<fields>}}`
//!   (`record` is `null` for a delete); with the envelope off it is just the record's fields
//!   and deletes need their own request. Fields are all of the schema's by name, or only
//!   those mapped with [`HttpDestinationConfig::with_field`]. Values follow the table of
//!   [`rse_connectors::encode`](crate::encode): decimals as strings, bytes as base64,
//!   timestamps as RFC 3339.
//!
//! Any operation can instead have its own [`HttpOpRequest`]
//! ([`with_request`](HttpDestinationConfig::with_request)): a method, a URL template such as
//! `/customers/{id}` whose placeholders are filled from the change's fields and
//! percent-encoded, a body ([`HttpBody`]: the plain record, an array of them, the envelope
//! or nothing) and extra headers. [`with_rest_resource`](HttpDestinationConfig::with_rest_resource)
//! sets the usual REST trio: `PUT` of the plain record to insert and update, `DELETE` without
//! a body to delete. A URL with a placeholder sends one request per change; an array body one
//! request per batch. When any operation sends one request per change, the destination
//! declares batches of one change, so the runner's rate limit and concurrency count requests.
//!
//! ```
//! use rse_connectors::{HttpDestination, HttpDestinationConfig};
//! # fn main() -> Result<(), rse_connectors::DestinationError> {
//! // `PUT https://crm.example.com/api/customers/a%2Fb` for the key `a/b`, `DELETE` likewise.
//! let crm = HttpDestination::new(
//!     HttpDestinationConfig::new("https://crm.example.com/api/")
//!         .with_name("crm")
//!         .with_bearer_token("token")
//!         .with_rest_resource("customers/{id}"),
//! )?;
//! # drop(crm);
//! # Ok(()) }
//! ```
//!
//! Every request carries:
//! - `Idempotency-Key`: the change's idempotency key (one change per request), or for an
//!   array the SHA-256 (first 128 bits, hex) of its changes' keys in order — the very same
//!   batch re-sent carries the same header, and each envelope carries its own key anyway.
//! - With [`HttpDestinationConfig::with_signing_secret`], a signature: the header
//!   `X-Rse-Timestamp` holds the Unix time in seconds and `X-Rse-Signature` holds
//!   `sha256=<hex>` of HMAC-SHA256(secret, `"{timestamp}.{body}"`) (an empty body for a
//!   request without one). A receiver recomputes it over the raw body, compares in constant
//!   time and refuses old timestamps to stop replays.
//!
//! # The response
//! | answer | outcome |
//! |---|---|
//! | 2xx | applied, except the records the body lists as failed (see [`RecordErrors`]) |
//! | 404 to a delete whose URL names the record | applied: the record is already gone |
//! | 3xx | [`DestinationError::Fatal`]: redirects are never followed (below) |
//! | 429 | [`DestinationError::RateLimited`] with `Retry-After` (seconds or an HTTP date), bounded |
//! | 408, 5xx, timeout, connection failure | [`DestinationError::Transient`] |
//! | 401, 403 | [`DestinationError::Unauthorized`] |
//! | other 4xx | rejected with the status and the receiver's error codes (below): the change, or for an array [`DestinationError::InvalidBatch`] so the runner bisects down to the refused records |
//!
//! # Rejection reasons hold codes, not the receiver's words
//! Receivers often repeat the value they refuse in their answer, and reasons are stored in
//! the state store and shown in reports, where a row's values never go. So a 4xx reason is
//! the status, plus, when the body is JSON, the error codes and field names it holds:
//! `HTTP 422 Unprocessable Entity (code=invalid_email, field=email)`. They are read from the
//! body's top level, from an `error` object in it, and from each object of an `errors` array
//! in either: the values of `code`, `error_code`, `errorCode` and `type` (a string or whole
//! number) and of `error` when it is a string (`{"error": "invalid_request"}`), and the
//! field names in `field`, `param`, `path` and JSON:API's `source.pointer`. A value is kept
//! only when it looks like an identifier — at most 100 characters of letters, digits and
//! `_ - . : / # [ ]` — so a sentence or an e-mail address in one of those places is dropped
//! too; at most 10 are kept. Free text (`message`, `detail`, a plain-text body) is never
//! kept. A record refused in a 2xx body is reasoned the same way from its error object (see
//! [`RecordErrors`]). [`HttpDestinationConfig::with_response_excerpts`] keeps the
//! receiver's words instead, for hosts that accept personal data in their reports.
//!
//! # What is guaranteed, whatever the receiver does
//! - **No redirects.** A 3xx is not followed — a followed `POST` can become a body-less
//!   `GET`, and the 200 of the sign-in page it lands on would mark every change applied. It
//!   ends the run as a configuration error naming the scheme and host it points to (never
//!   its path or query, which may carry data) and asking to set the URL to the final address.
//!   `check()` does not follow them either. A host's client given to
//!   [`HttpDestination::from_client`] may follow them; an answer that comes from another URL
//!   than the request went to fails the write the same way, and no change counts as
//!   delivered.
//! - **Timeouts on every call** ([`HttpTimeouts`]): connecting, TLS included (10 s), a whole
//!   request up to the last byte of the answer (30 s), idle pooled connections (90 s). A
//!   timeout is transient: the runner retries under the same idempotency keys, so a receiver
//!   that applied the request before its answer was lost sees duplicates it can drop.
//! - **A bounded `Retry-After`.** Delta-seconds (whole or decimal) or an HTTP date; a wait
//!   longer than [`HttpTimeouts::max_retry_after`] (one day by default), or too large to
//!   represent, arrives at the runner as that maximum; a negative, NaN or unreadable value
//!   as none (the runner's backoff applies). Nothing a receiver sends can panic the run.
//! - **Bounded reads.** At most 8 MiB of a 2xx body is read for per-record errors, 4 KiB of
//!   a 4xx body for its reason, 300 characters of which are kept (codes or excerpt).
//!   Per-record errors that cannot be attributed fail the write (see [`RecordErrors`])
//!   instead of being guessed.
//! - Error messages name the host, never a record's URL (it holds the key) or a value.

mod config;
mod request;
mod response;

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use rse_core::{
    Change, ChangeBatch, Destination, DestinationCapabilities, DestinationError, Op, Schema, WriteOutcome,
    WriteOutcomes,
};

pub use config::{BodyShape, HttpBody, HttpDestinationConfig, HttpOpRequest, HttpTimeouts, RecordErrors};
use config::{op_slot, redact_url};
pub use request::sign;
use request::{Slot, UrlTemplate, batch_idempotency_key, change_object};
pub use reqwest::Method;
pub use response::parse_retry_after;
use response::{Answer, Reading, Sent};
pub(crate) use response::{count_request, origin};
// The SaaS kit reads answers as the HTTP destination does.
#[cfg(feature = "saas")]
pub(crate) use response::{error_codes_in, looks_like_identifier, read_capped};

use crate::destination::Secret;

/// How one operation's changes are sent, resolved when the destination is built.
#[derive(Debug, Clone)]
struct Plan {
    method: Method,
    /// The URL template, when it names a record (has a placeholder).
    template: Option<UrlTemplate>,
    /// The URL, when it names no record.
    url: Url,
    body: HttpBody,
    headers: HeaderMap,
    /// Changes of operations in one group share an array request: the operations without
    /// their own request form one group, each with its own request another.
    group: usize,
}

impl Plan {
    fn per_change(&self) -> bool {
        self.template.is_some() || !self.body.is_array()
    }
}

/// Delivers changes over HTTP; see the module docs for the request and the response.
pub struct HttpDestination {
    /// `http:<name>`, as reports show it.
    name: String,
    config: HttpDestinationConfig,
    client: reqwest::Client,
    url: Url,
    headers: HeaderMap,
    /// One per operation, by [`op_slot`]; `None` when the configuration cannot express it.
    plans: [Option<Plan>; 4],
    check_url: Option<Url>,
}

impl fmt::Debug for HttpDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpDestination").field("config", &self.config).finish_non_exhaustive()
    }
}

fn config_error(message: String) -> DestinationError {
    DestinationError::Fatal { message, source: None }
}

fn header_map(name: &str, headers: &[(String, Secret)]) -> Result<HeaderMap, DestinationError> {
    let mut map = HeaderMap::new();
    for (header, value) in headers {
        let key = HeaderName::from_bytes(header.as_bytes())
            .map_err(|_| config_error(format!("{name}: `{header}` is not a valid header name")))?;
        let mut value = HeaderValue::from_str(value.expose())
            .map_err(|_| config_error(format!("{name}: the value of header `{header}` is not valid header text")))?;
        value.set_sensitive(true);
        map.append(key, value);
    }
    Ok(map)
}

fn http_url(name: &str, what: &str, text: &str) -> Result<Url, DestinationError> {
    let url =
        Url::parse(text).map_err(|e| config_error(format!("{name}: {what} `{}` is invalid: {e}", redact_url(text))))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(config_error(format!("{name}: {what} `{}` is not an http or https URL", redact_url(text))));
    }
    Ok(url)
}

impl HttpDestination {
    /// Builds the client from the configuration's timeouts and pool settings, and resolves
    /// each operation's request. Nothing is sent until the first `check` or `write`.
    ///
    /// # Errors
    /// [`DestinationError::Fatal`] naming the setting at fault: an invalid URL or URL
    /// template, a header name or value, an array body sent to a URL that names a record,
    /// or a TLS setup failure.
    pub fn new(config: HttpDestinationConfig) -> Result<Self, DestinationError> {
        let t = &config.timeouts;
        let client = reqwest::Client::builder()
            .timeout(t.request)
            .connect_timeout(t.connect)
            .pool_idle_timeout(t.pool_idle)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            // See the module docs: a followed redirect can turn a write into a GET.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| DestinationError::Fatal {
                message: format!("{}: building the HTTP client failed", config.display_name()),
                source: Some(Box::new(e)),
            })?;
        Self::from_client(client, config)
    }

    /// Sends through `client`, one the host already holds (its connection pool, proxy, TLS
    /// roots or client certificate), and resolves each operation's request.
    ///
    /// The client's own settings replace the configuration's connect timeout, pool
    /// settings and redirect policy; the request timeout
    /// ([`HttpTimeouts::request`]) is still set on every request. Redirects are still never
    /// taken for a delivery: build the client with `redirect::Policy::none()`, since a
    /// client that follows one has already sent the request on, but a write whose answer
    /// comes from another URL than it was sent to fails as [`DestinationError::Fatal`]
    /// (as a 3xx does), and none of its changes counts as delivered.
    ///
    /// # Errors
    /// As [`new`](Self::new), but for building a client.
    pub fn from_client(client: reqwest::Client, config: HttpDestinationConfig) -> Result<Self, DestinationError> {
        let name = config.display_name();
        let name = name.as_str();
        let url = http_url(name, "URL", &config.url)?;
        let bearer = config.bearer_token.as_ref().map(|token| Secret::new(format!("Bearer {}", token.expose())));
        let all = config.headers.iter().cloned().chain(bearer.map(|b| ("Authorization".to_owned(), b)));
        let headers = header_map(name, &all.collect::<Vec<_>>())?;
        let check_url = match config.check_url.as_deref() {
            // Relative to the destination's URL, like a request's URL template.
            Some(check) => {
                let joined = url.join(check).map_or_else(|_| check.to_owned(), String::from);
                Some(http_url(name, "check URL", &joined)?)
            }
            None => None,
        };
        let mut plans: [Option<Plan>; 4] = [None, None, None, None];
        for op in Op::ALL {
            let slot = op_slot(op);
            plans[slot] = match &config.requests[slot] {
                Some(request) => Some(Self::plan(name, &url, op, request, slot)?),
                None if op == Op::Delete && !config.envelope => None,
                None => Some(Plan {
                    method: config.method.clone(),
                    template: None,
                    url: url.clone(),
                    body: HttpBody::from_shape(config.shape, config.envelope),
                    headers: HeaderMap::new(),
                    group: Op::ALL.len(),
                }),
            };
        }
        Ok(Self { name: name.to_owned(), config, client, url, headers, plans, check_url })
    }

    fn plan(
        name: &str,
        base: &Url,
        op: Op,
        request: &config::HttpOpRequest,
        group: usize,
    ) -> Result<Plan, DestinationError> {
        let template =
            UrlTemplate::parse(&request.url).map_err(|m| config_error(format!("{name}: {op} request: {m}")))?;
        let shown = template.shown();
        let unresolvable = |e| {
            config_error(format!("{name}: the {op} URL `{shown}` does not resolve against the destination's URL: {e}"))
        };
        let url = base.join(&template.sample("x")).map_err(unresolvable)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(config_error(format!("{name}: the {op} URL `{shown}` is not an http or https URL")));
        }
        let template = if template.has_placeholders() {
            if request.body.is_array() {
                return Err(config_error(format!(
                    "{name}: the {op} request sends an array per batch, but its URL `{shown}` names a record; use a URL without placeholders or a body of one record"
                )));
            }
            Some(template)
        } else {
            None
        };
        Ok(Plan {
            method: request.method.clone(),
            template,
            url,
            body: request.body,
            headers: header_map(name, &request.headers)?,
            group,
        })
    }

    /// Checks that every URL template names fields `schema` has (a delete's, key columns
    /// only). Every write does this before sending anything; a host can call it when it
    /// builds a sync, to fail before the first run.
    ///
    /// # Errors
    /// [`DestinationError::Fatal`] naming the template and the missing field.
    pub fn check_schema(&self, schema: &Schema) -> Result<(), DestinationError> {
        self.bind(schema).map(drop)
    }

    fn bind(&self, schema: &Schema) -> Result<[Option<Vec<Slot>>; 4], DestinationError> {
        let mut slots: [Option<Vec<Slot>>; 4] = [None, None, None, None];
        for op in Op::ALL {
            if let Some(template) = self.plans[op_slot(op)].as_ref().and_then(|p| p.template.as_ref()) {
                let bound = template.bind(schema, op).map_err(|m| config_error(format!("{}: {m}", self.name)))?;
                slots[op_slot(op)] = Some(bound);
            }
        }
        Ok(slots)
    }

    fn reading(&self) -> Reading<'_> {
        Reading {
            name: &self.name,
            timeouts: &self.config.timeouts,
            record_errors: self.config.record_errors.as_ref(),
            excerpts: self.config.response_excerpts,
        }
    }

    /// The URL and body of one change's own request.
    ///
    /// # Errors
    /// A rejection reason naming the field at fault.
    fn one_request(
        &self,
        plan: &Plan,
        slots: &[Slot],
        schema: &Schema,
        change: &Change,
    ) -> Result<(Url, Option<Vec<u8>>), String> {
        let url = match &plan.template {
            Some(template) => {
                let key = change.key.decode().map_err(|e| format!("key could not be decoded: {e}"))?;
                let filled = template.fill(slots, change, &key)?;
                self.url.join(&filled).map_err(|e| format!("the URL from `{}` is invalid: {e}", template.shown()))?
            }
            None => plan.url.clone(),
        };
        let body = change_object(plan.body, schema, &self.config.fields, change)?
            .map(|json| serde_json::to_vec(&json).map_err(|e| format!("encoding JSON: {e}")))
            .transpose()?;
        Ok((url, body))
    }

    /// Sends one request; `sent.changes` is the number of changes in it.
    async fn send(
        &self,
        plan: &Plan,
        body: Option<Vec<u8>>,
        idempotency_key: String,
        sent: &Sent<'_>,
    ) -> Result<Answer, DestinationError> {
        let mut request = self
            .client
            .request(plan.method.clone(), sent.url.clone())
            // Also set on the client `new` builds; a host's client may have none.
            .timeout(self.config.timeouts.request)
            .headers(self.headers.clone())
            .headers(plan.headers.clone())
            .header("Idempotency-Key", idempotency_key);
        if let Some(secret) = &self.config.signing_secret {
            let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0).to_string();
            let signature = sign(secret, &timestamp, body.as_deref().unwrap_or_default());
            request = request.header("X-Rse-Signature", signature).header("X-Rse-Timestamp", timestamp);
        }
        if let Some(body) = body {
            request = request.header("Content-Type", "application/json").body(body);
        }
        let reading = self.reading();
        let response = request.send().await;
        count_request(&self.name, response.as_ref().ok().map(reqwest::Response::status));
        let response = response.map_err(|e| reading.transport(sent.url, e))?;
        reading.classify(response, sent).await
    }
}

#[async_trait]
impl Destination for HttpDestination {
    fn name(&self) -> &str {
        &self.name
    }

    fn check_schema(&self, schema: &Schema) -> Result<(), DestinationError> {
        HttpDestination::check_schema(self, schema)
    }

    fn capabilities(&self) -> DestinationCapabilities {
        let ops = Op::ALL.into_iter().filter(|op| self.plans[op_slot(*op)].is_some());
        let per_change = self.plans.iter().flatten().any(Plan::per_change);
        let rows = if per_change { 1 } else { self.config.max_batch_rows.max(1) };
        DestinationCapabilities::new(ops)
            .with_max_batch_rows(rows)
            .with_max_batch_bytes(self.config.max_batch_bytes.max(1))
            .with_max_concurrency(self.config.max_concurrency.max(1))
            .with_idempotency_keys(true)
            .with_rate_limit(self.config.rate_limit)
    }

    async fn check(&self) -> Result<(), DestinationError> {
        let Some(url) = &self.check_url else { return Ok(()) };
        let reading = self.reading();
        let response = self
            .client
            .get(url.clone())
            .timeout(self.config.timeouts.request)
            .headers(self.headers.clone())
            .send()
            .await;
        count_request(&self.name, response.as_ref().ok().map(reqwest::Response::status));
        let response = response.map_err(|e| reading.transport(url, e))?;
        if let Some(followed) = reading.followed_redirect(&response, url) {
            return Err(followed);
        }
        let status = response.status();
        let name = &self.name;
        let at = origin(url);
        match status.as_u16() {
            200..=299 => Ok(()),
            300..=399 => Err(reading.redirect(&response, url)),
            401 | 403 => Err(DestinationError::Unauthorized {
                message: format!("{name}: check at {at} answered HTTP {status}; check the token"),
            }),
            429 => Err(DestinationError::RateLimited { retry_after: reading.retry_after(&response) }),
            408 | 500..=599 => {
                Err(DestinationError::transient(format!("{name}: check at {at} answered HTTP {status}")))
            }
            _ => Err(DestinationError::fatal(format!("{name}: check at {at} answered HTTP {status}"))),
        }
    }

    async fn write(&self, batch: &ChangeBatch) -> Result<WriteOutcome, DestinationError> {
        if batch.changes.is_empty() {
            return Ok(WriteOutcome::default());
        }
        // A template naming a field the schema lacks fails before anything is sent.
        let slots = self.bind(&batch.schema)?;
        // A change the configuration cannot express is rejected; the others still go.
        let mut outcomes = WriteOutcomes::new(batch.changes.len());
        // Array requests, by group: the plan and the (position, object) of each change.
        let mut arrays: Vec<(&Plan, Vec<(usize, serde_json::Value)>)> = Vec::new();
        for (i, change) in batch.changes.iter().enumerate() {
            let slot = op_slot(change.op);
            let Some(plan) = &self.plans[slot] else {
                outcomes.rejected(
                    i,
                    "deletes need the envelope (`with_envelope(true)`) or a request of their own (`with_request(Op::Delete, …)`)",
                );
                continue;
            };
            if plan.per_change() {
                match self.one_request(plan, slots[slot].as_deref().unwrap_or_default(), &batch.schema, change) {
                    Ok((url, body)) => {
                        let delete_by_url = change.op == Op::Delete && plan.template.is_some();
                        let sent = Sent { url: &url, changes: 1, delete_by_url };
                        let answer = self.send(plan, body, change.idempotency_key.to_string(), &sent).await?;
                        record(&mut outcomes, &[i], answer);
                    }
                    Err(reason) => outcomes.rejected(i, reason),
                }
                continue;
            }
            match change_object(plan.body, &batch.schema, &self.config.fields, change) {
                Ok(object) => {
                    let object = object.unwrap_or_default();
                    match arrays.iter_mut().find(|(p, _)| p.group == plan.group) {
                        Some((_, members)) => members.push((i, object)),
                        None => arrays.push((plan, vec![(i, object)])),
                    }
                }
                Err(reason) => outcomes.rejected(i, reason),
            }
        }
        for (plan, members) in arrays {
            let key = batch_idempotency_key(members.iter().map(|(i, _)| &batch.changes[*i].idempotency_key));
            let objects: Vec<&serde_json::Value> = members.iter().map(|(_, o)| o).collect();
            let body =
                serde_json::to_vec(&objects).map_err(|e| config_error(format!("{}: encoding JSON: {e}", self.name)))?;
            let sent = Sent { url: &plan.url, changes: members.len(), delete_by_url: false };
            let answer = self.send(plan, Some(body), key, &sent).await?;
            let positions: Vec<usize> = members.iter().map(|(i, _)| *i).collect();
            record(&mut outcomes, &positions, answer);
        }
        outcomes.finish(&self.name)
    }
}

/// Sets the outcomes of the changes one request carried (`positions`: theirs in the batch,
/// in the request's order) from the receiver's answer.
fn record(outcomes: &mut WriteOutcomes, positions: &[usize], answer: Answer) {
    match answer {
        Answer::Refused(reason) => {
            for &i in positions {
                outcomes.rejected(i, reason.clone());
            }
        }
        Answer::Taken { refused } => {
            for (at, reason) in refused {
                if let Some(&i) = positions.get(at) {
                    outcomes.rejected(i, reason);
                }
            }
            // The receiver took this request: the changes it did not refuse are applied.
            // Only this request's: another one of the batch may still fail.
            for &i in positions {
                if !outcomes.is_set(i) {
                    outcomes.applied(i);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug() {
        let config = HttpDestinationConfig::new("https://user:pw@example.com/hook?token=abc")
            .with_bearer_token("tok-123")
            .with_signing_secret("hmac-456")
            .with_request(
                Op::Delete,
                HttpOpRequest::delete("/customers/{id}?api_key=key-789").with_header("X-Api-Key", "hdr-000"),
            );
        let shown = format!("{config:?}");
        for secret in ["tok-123", "hmac-456", "pw", "token=abc", "key-789", "hdr-000"] {
            assert!(!shown.contains(secret), "{secret} leaked into {shown}");
        }
    }
}
