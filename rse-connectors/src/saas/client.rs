//! The HTTP client of SaaS destinations: one reqwest setup, requests that carry the
//! destination's credentials and retry once after a 401, and answers read with a size cap.
//!
//! Every client built here
//! - speaks TLS through rustls (ring, Mozilla's roots compiled in, as the HTTP destination);
//! - bounds connecting (10 s by default) and each whole request (60 s), so a stalled
//!   vendor is a [`DestinationError::Transient`], never a hung run;
//! - asks for gzip and decodes it (`Accept-Encoding: gzip`): CRM answers echo every
//!   property written and shrink five to ten times;
//! - never follows a redirect: a followed `POST` can come back as a body-less `GET`, and
//!   the 200 of the page it lands on would pass for the write's answer;
//! - says who it is: `User-Agent: rse/<version>`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use rse_core::DestinationError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::debug;

use super::auth::{SaasAuth, SaasAuthConfig};
use super::classify::{Classifier, DEFAULT_MAX_RETRY_AFTER, Failure, classify, origin, transport_error};
use crate::destination::http::{count_request, read_capped};

/// `User-Agent` of every request: `rse/<version>`.
pub const USER_AGENT: &str = concat!("rse/", env!("CARGO_PKG_VERSION"));

/// The most of a failure's body that is read (for its error codes).
const MAX_FAILURE_BODY: usize = 64 << 10;

/// How the client connects and how much it reads: `{"connect_timeout": "10s",
/// "request_timeout": "60s", …}`, each optional.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SaasClientOptions {
    /// Connecting, TLS included (default 10 s).
    #[serde(with = "rse_core::config::duration")]
    pub connect_timeout: Duration,
    /// A whole request, up to the last byte of the answer (default 60 s: a batch of 100 to
    /// 200 CRM records with workflows behind it can take tens of seconds).
    #[serde(with = "rse_core::config::duration")]
    pub request_timeout: Duration,
    /// How long an idle connection stays pooled (default 90 s).
    #[serde(with = "rse_core::config::duration")]
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per host (default 16).
    pub pool_max_idle_per_host: usize,
    /// The longest wait a `Retry-After` may ask for (default one day).
    #[serde(with = "rse_core::config::duration")]
    pub max_retry_after: Duration,
    /// The most bytes of a successful answer read (default 16 MiB).
    pub max_body_bytes: usize,
}

impl Default for SaasClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 16,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
            max_body_bytes: 16 << 20,
        }
    }
}

impl SaasClientOptions {
    /// The connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The whole-request timeout.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long an idle connection stays pooled.
    pub fn with_pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool_idle_timeout = timeout;
        self
    }

    /// Idle connections kept per host.
    pub fn with_pool_max_idle_per_host(mut self, n: usize) -> Self {
        self.pool_max_idle_per_host = n;
        self
    }

    /// The longest `Retry-After` honoured.
    pub fn with_max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// The most bytes of a successful answer read.
    pub fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes.max(1);
        self
    }
}

/// A reqwest client set up as the module docs say.
///
/// # Errors
/// [`DestinationError::Fatal`] when the TLS setup fails.
pub fn build_http_client(options: &SaasClientOptions) -> Result<reqwest::Client, DestinationError> {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(options.connect_timeout)
        .timeout(options.request_timeout)
        .pool_idle_timeout(options.pool_idle_timeout)
        .pool_max_idle_per_host(options.pool_max_idle_per_host)
        .redirect(reqwest::redirect::Policy::none())
        .gzip(true)
        .build()
        .map_err(|e| DestinationError::Fatal {
            message: "building the HTTP client failed".to_owned(),
            source: Some(Box::new(e)),
        })
}

/// A destination's `base_url`, as the base its endpoints' paths are joined to: a trailing
/// `/` is added, so that a path the user gave (a proxy's `https://proxy.example/hubspot`)
/// is kept rather than replaced by the first join.
#[derive(Debug, Clone)]
pub(crate) struct BaseUrl {
    name: String,
    base: Url,
}

impl BaseUrl {
    /// The `base_url` setting of destination `name`.
    ///
    /// # Errors
    /// [`DestinationError::Fatal`] naming `base_url` when it is not a URL.
    pub(crate) fn parse(name: &str, base_url: &str) -> Result<Self, DestinationError> {
        let mut base = base_url.to_owned();
        if !base.ends_with('/') {
            base.push('/');
        }
        let base = Url::parse(&base).map_err(|_| bad_base_url(name))?;
        Ok(Self { name: name.to_owned(), base })
    }

    /// `path` below the base.
    ///
    /// # Errors
    /// [`DestinationError::Fatal`] naming `base_url` when the two do not join.
    pub(crate) fn join(&self, path: &str) -> Result<Url, DestinationError> {
        self.base.join(path).map_err(|_| bad_base_url(&self.name))
    }
}

fn bad_base_url(name: &str) -> DestinationError {
    DestinationError::fatal(format!("{name}: `base_url` is not an http(s) URL"))
}

/// One request as data, so that it can be sent again after a token refresh.
#[derive(Clone)]
pub struct SaasRequest {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<Bytes>,
    timeout: Option<Duration>,
    max_body_bytes: Option<usize>,
}

impl fmt::Debug for SaasRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The path and body may hold keys and values: where it goes and how much it sends.
        f.debug_struct("SaasRequest")
            .field("method", &self.method)
            .field("to", &origin(&self.url))
            .field("body_len", &self.body.as_ref().map(Bytes::len))
            .finish_non_exhaustive()
    }
}

impl SaasRequest {
    /// A request without a body.
    pub fn new(method: Method, url: Url) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        Self { method, url, headers, body: None, timeout: None, max_body_bytes: None }
    }

    /// `GET url`.
    pub fn get(url: Url) -> Self {
        Self::new(Method::GET, url)
    }

    /// `method url` with `body` as JSON (`Content-Type: application/json`).
    ///
    /// # Errors
    /// [`DestinationError::Fatal`] when `body` cannot be serialized (a map with non-text
    /// keys): a bug in the connector.
    pub fn json<B: Serialize + ?Sized>(method: Method, url: Url, body: &B) -> Result<Self, DestinationError> {
        let bytes = serde_json::to_vec(body).map_err(|e| {
            DestinationError::fatal(format!("a request body could not be serialized as JSON ({})", e.classify() as u8))
        })?;
        Ok(Self::new(method, url).with_body("application/json", bytes))
    }

    /// Sets the body and its `Content-Type` (e.g. `text/csv` for a Salesforce Bulk upload).
    pub fn with_body(mut self, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        self.headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        self.body = Some(body.into());
        self
    }

    /// Adds a header (replacing one of the same name).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Its own whole-request timeout instead of the client's.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Its own cap on the answer's size instead of the client's.
    pub fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = Some(bytes.max(1));
        self
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The URL.
    pub fn url(&self) -> &Url {
        &self.url
    }
}

/// An answer, read (up to a cap) before it is handed over.
pub struct SaasResponse {
    destination: Arc<str>,
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    complete: bool,
    cap: usize,
    max_retry_after: Duration,
}

impl fmt::Debug for SaasResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaasResponse")
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .field("complete", &self.complete)
            .finish_non_exhaustive()
    }
}

impl SaasResponse {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// The headers (quota headers: `X-HubSpot-RateLimit-*`, `Sforce-Limit-Info`).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// A header's value when it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as read: the whole of it when [`is_complete`](Self::is_complete).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Whether the body was read whole (it was not larger than the cap).
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// The body parsed as `T`.
    ///
    /// # Errors
    /// [`DestinationError::Fatal`] when the body is larger than the cap, or is not the
    /// JSON `T` reads: the message says where parsing stopped and what kind of problem it
    /// is, never the text there (it may be a value). `what` names the answer, e.g.
    /// `"the batch upsert answer"`.
    pub fn json<T: DeserializeOwned>(&self, what: &str) -> Result<T, DestinationError> {
        if !self.complete {
            return Err(DestinationError::fatal(format!(
                "{}: {what} is larger than {} bytes; raise `max_body_bytes`",
                self.destination, self.cap
            )));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            let kind = match e.classify() {
                serde_json::error::Category::Io => "cannot be read",
                serde_json::error::Category::Syntax => "is not JSON",
                serde_json::error::Category::Data => "is not the JSON expected",
                serde_json::error::Category::Eof => "ends early",
            };
            DestinationError::fatal(format!(
                "{}: {what} {kind} (HTTP {}, at line {}, column {}); check that the API version is one this connector supports",
                self.destination,
                self.status.as_u16(),
                e.line(),
                e.column()
            ))
        })
    }

    /// The answer as a [`Failure`] for classification.
    pub fn failure(&self) -> Failure<'_> {
        Failure::new(&self.destination, self.status, &self.headers, &self.body)
            .with_max_retry_after(self.max_retry_after)
    }

    /// The error this (non-2xx) answer means: `vendor`'s class, else the default.
    pub fn error(&self, vendor: &dyn Classifier) -> DestinationError {
        classify(&self.failure(), vendor)
    }

    /// `self` when 2xx, else its error as [`error`](Self::error) classifies it.
    ///
    /// # Errors
    /// The classified failure.
    pub fn success_or(self, vendor: &dyn Classifier) -> Result<Self, DestinationError> {
        if self.is_success() { Ok(self) } else { Err(self.error(vendor)) }
    }
}

/// A destination's client: the HTTP client, its credentials and its limits, shared by all
/// its writers (clone it freely).
#[derive(Clone)]
pub struct SaasClient {
    name: Arc<str>,
    http: reqwest::Client,
    auth: SaasAuth,
    options: Arc<SaasClientOptions>,
}

impl fmt::Debug for SaasClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaasClient")
            .field("name", &self.name)
            .field("auth", &self.auth)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl SaasClient {
    /// A client named `name` (the destination's name in reports, e.g. `hubspot:contacts`)
    /// with the credentials `auth` describes.
    ///
    /// # Errors
    /// [`DestinationError::Fatal`] naming the setting at fault (see
    /// [`SaasAuth::from_config`]), or a TLS setup failure.
    pub fn new(
        name: impl Into<String>,
        auth: &SaasAuthConfig,
        options: SaasClientOptions,
    ) -> Result<Self, DestinationError> {
        let name = name.into();
        let http = build_http_client(&options)?;
        let auth = SaasAuth::from_config(auth, &http).map_err(|e| prefix(&name, e))?;
        Ok(Self::from_parts(name, http, auth, options))
    }

    /// A client from parts the host already holds (its reqwest client, a shared auth).
    pub fn from_parts(
        name: impl Into<String>,
        http: reqwest::Client,
        auth: SaasAuth,
        options: SaasClientOptions,
    ) -> Self {
        Self { name: name.into().into(), http, auth, options: Arc::new(options) }
    }

    /// The destination's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The reqwest client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The credentials.
    pub fn auth(&self) -> &SaasAuth {
        &self.auth
    }

    /// The options.
    pub fn options(&self) -> &SaasClientOptions {
        &self.options
    }

    /// Sends `request` with the destination's credentials and reads the answer (up to the
    /// cap). When the vendor answers 401 and the credentials can be refreshed, the token is
    /// replaced once (or the one another writer fetched meanwhile is taken) and the request
    /// sent once more.
    ///
    /// Any HTTP answer but that comes back as `Ok`: classify a non-2xx with
    /// [`SaasResponse::error`] or [`SaasResponse::success_or`].
    ///
    /// # Errors
    /// [`DestinationError::Transient`] when no answer came (timeout, connection) or the
    /// body was cut off; the token endpoint's classified failure; and
    /// [`DestinationError::Unauthorized`] when the vendor refuses a freshly fetched token
    /// too.
    pub async fn send(&self, request: &SaasRequest) -> Result<SaasResponse, DestinationError> {
        let credential = self.auth.credential().await.map_err(|e| prefix(&self.name, e))?;
        let response = self.attempt(request, &credential).await?;
        if response.status != StatusCode::UNAUTHORIZED || !self.auth.is_refreshable() {
            return Ok(response);
        }
        debug!(destination = %self.name, "The vendor refused the access token; refreshing it once.");
        let credential = self.auth.refresh_after_unauthorized(&credential).await.map_err(|e| prefix(&self.name, e))?;
        let response = self.attempt(request, &credential).await?;
        if response.status == StatusCode::UNAUTHORIZED {
            let failure = response.failure();
            return Err(DestinationError::Unauthorized {
                message: format!(
                    "{}; the vendor refused a freshly fetched access token too: check that the user and app still have access (scopes, profile, installed app)",
                    failure.describe()
                ),
            });
        }
        Ok(response)
    }

    /// `request` sent once with `credential`, its answer read.
    async fn attempt(
        &self,
        request: &SaasRequest,
        credential: &super::auth::Credential,
    ) -> Result<SaasResponse, DestinationError> {
        let mut builder =
            self.http.request(request.method.clone(), request.url.clone()).headers(request.headers.clone());
        builder = credential.apply(builder);
        if let Some(timeout) = request.timeout {
            builder = builder.timeout(timeout);
        }
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        let started = Instant::now();
        let response = builder.send().await;
        count_request(&self.name, response.as_ref().ok().map(reqwest::Response::status));
        let mut response = response.map_err(|e| transport_error(&self.name, &request.url, e))?;
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let cap = if status.is_success() {
            request.max_body_bytes.unwrap_or(self.options.max_body_bytes)
        } else {
            MAX_FAILURE_BODY
        };
        let (body, complete) =
            read_capped(response, cap).await.map_err(|e| transport_error(&self.name, &request.url, e))?;
        debug!(
            destination = %self.name,
            method = %request.method,
            to = %origin(&request.url),
            status = status.as_u16(),
            bytes = body.len(),
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "Vendor answered."
        );
        Ok(SaasResponse {
            destination: Arc::clone(&self.name),
            status,
            headers,
            body: body.into(),
            complete,
            cap,
            max_retry_after: self.options.max_retry_after,
        })
    }
}

/// `error` with its message prefixed by the destination's name.
fn prefix(name: &str, error: DestinationError) -> DestinationError {
    match error {
        DestinationError::Unauthorized { message } => {
            DestinationError::Unauthorized { message: format!("{name}: {message}") }
        }
        DestinationError::Transient { message, source } => {
            DestinationError::Transient { message: format!("{name}: {message}"), source }
        }
        DestinationError::Fatal { message, source } => {
            DestinationError::Fatal { message: format!("{name}: {message}"), source }
        }
        other => other,
    }
}
