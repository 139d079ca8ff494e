//! OAuth 2.0 access tokens: the refresh-token grant, the token cache every writer shares,
//! and what a token endpoint's answers mean.
//!
//! # One refresh for all writers
//! The runner writes several batches at once, and each asks for the token. A token is
//! fetched once and shared; when it nears its expiry (its `expires_in` less
//! [`refresh_margin`](OAuthRefreshConfig::refresh_margin), at most half its lifetime) the
//! first writer to notice fetches the next one while the others wait for it, so sixteen
//! writers cause one request to the token endpoint, not sixteen. A writer whose request the
//! vendor answered 401 asks again ([`SaasAuth::refresh_after_unauthorized`](super::SaasAuth::refresh_after_unauthorized)),
//! naming the token that was refused: if another writer has replaced it meanwhile, it gets
//! that one without a new request. A failed fetch is shared the same way: the writers that
//! waited for it get its error, and the next write tries again.
//!
//! A token without `expires_in` (Salesforce announces none: its session lasts as the org's
//! session settings say) is used until the vendor refuses it.
//!
//! # What a token endpoint's answers mean
//! | answer | error |
//! |---|---|
//! | 400 or 401 `invalid_grant` | [`DestinationError::Unauthorized`]: the refresh token is expired or revoked (authorize again), or the JWT assertion was refused (user, certificate, audience) |
//! | 400 or 401 `invalid_client`, `unauthorized_client`; other 401, 403 | [`DestinationError::Unauthorized`]: check the client id and secret |
//! | 400 with another code (`invalid_request`, `invalid_scope`, `unsupported_grant_type`) | [`DestinationError::Fatal`] naming the code |
//! | 429 | [`DestinationError::RateLimited`] |
//! | 408, 5xx, a timeout or connection failure | [`DestinationError::Transient`] |
//! | 3xx, a 2xx without an `access_token`, another status | [`DestinationError::Fatal`]: check `token_url` |
//!
//! Messages hold the endpoint's `scheme://host` and the OAuth error code, never
//! `error_description` nor any token.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use reqwest::Url;
use reqwest::header::{ACCEPT, HeaderValue};
use rse_core::DestinationError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use tracing::debug;

use super::classify::{Failure, looks_like_identifier, origin, transport_error};
use super::jwt::JwtSigner;
use crate::destination::Secret;

/// The most of a token endpoint's answer that is read.
const MAX_TOKEN_BODY: usize = 64 << 10;

pub(super) fn default_margin() -> Duration {
    Duration::from_secs(60)
}

/// The refresh-token grant's configuration: `{"type": "oauth_refresh", "token_url": …,
/// "client_id": …, "client_secret": {"env": …}, "refresh_token": {"env": …}}` as a
/// [`SaasAuthConfig`](super::SaasAuthConfig).
///
/// The client credentials go in the form body (RFC 6749 §2.3.1), as HubSpot and
/// Salesforce take them. A refresh token the endpoint rotates (answers a new one with the
/// access token) is used for the next refresh of this process; the configuration keeps the
/// one it was given.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct OAuthRefreshConfig {
    /// The token endpoint, e.g. `https://api.hubapi.com/oauth/v1/token`.
    pub token_url: String,
    /// The app's client id.
    pub client_id: String,
    /// The app's client secret.
    pub client_secret: Secret,
    /// The refresh token the app's authorization gave.
    pub refresh_token: Secret,
    /// A `scope` to ask for; most endpoints keep the authorized scopes without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// How long before a token's announced expiry it is replaced (default 60 s; at most
    /// half its lifetime).
    #[serde(default = "default_margin", with = "rse_core::config::duration")]
    pub refresh_margin: Duration,
}

impl OAuthRefreshConfig {
    /// A grant at `token_url` with the app's credentials and a refresh token.
    pub fn new(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
        refresh_token: impl Into<Secret>,
    ) -> Self {
        Self {
            token_url: token_url.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            refresh_token: refresh_token.into(),
            scope: None,
            refresh_margin: default_margin(),
        }
    }

    /// Asks for `scope`.
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// How long before a token's announced expiry it is replaced.
    pub fn with_refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }
}

/// An access token and what the token endpoint said with it.
///
/// `Debug` shows neither the token nor the values of the answer's other fields.
pub struct AccessToken {
    token: Secret,
    generation: u64,
    /// The number of the fetch that produced it, counted as fetches end.
    attempt: u64,
    received: Instant,
    lifetime: Option<Duration>,
    instance_url: Option<String>,
    scope: Option<String>,
    extra: Map<String, Json>,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &self.token)
            .field("generation", &self.generation)
            .field("lifetime", &self.lifetime)
            .field("instance_url", &self.instance_url)
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl AccessToken {
    /// The token, for the one place that sends it.
    pub fn secret(&self) -> &Secret {
        &self.token
    }

    /// Which token this is: 1 for the first fetched, one more for each replacement.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// `instance_url` of the answer: the Salesforce org's own API host, which every
    /// request but the token's goes to.
    pub fn instance_url(&self) -> Option<&str> {
        self.instance_url.as_deref()
    }

    /// `scope` of the answer: the scopes granted.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// Another field of the answer (Salesforce's `id`, `issued_at`, `signature`; HubSpot's
    /// `hub_id`). `refresh_token` and `id_token` are never kept.
    pub fn extra(&self, name: &str) -> Option<&Json> {
        self.extra.get(name)
    }

    /// Its lifetime as announced by `expires_in`; `None` when the endpoint gave none.
    pub fn lifetime(&self) -> Option<Duration> {
        self.lifetime
    }

    /// How long it stays valid from now, by `expires_in`; `None` when not announced.
    pub fn expires_in(&self) -> Option<Duration> {
        self.lifetime.map(|l| l.saturating_sub(self.received.elapsed()))
    }

    /// Whether it may still be used: not within `margin` (at most half its lifetime) of
    /// its expiry.
    fn fresh(&self, margin: Duration) -> bool {
        match self.lifetime {
            None => true,
            Some(lifetime) => self.received.elapsed() + margin.min(lifetime / 2) < lifetime,
        }
    }
}

/// How the next token is obtained.
pub(super) enum Grant {
    Refresh { client_id: String, client_secret: Secret, scope: Option<String> },
    Jwt(Box<JwtSigner>),
}

impl Grant {
    fn name(&self) -> &'static str {
        match self {
            Grant::Refresh { .. } => "oauth_refresh",
            Grant::Jwt(_) => "jwt_bearer",
        }
    }
}

/// A failed fetch, kept to hand to the writers that waited for it.
#[derive(Clone)]
enum Failed {
    Unauthorized(String),
    RateLimited(Option<Duration>),
    Transient(String),
    Fatal(String),
}

impl Failed {
    fn of(error: &DestinationError) -> Self {
        match error {
            DestinationError::Unauthorized { message } => Failed::Unauthorized(message.clone()),
            DestinationError::RateLimited { retry_after } => Failed::RateLimited(*retry_after),
            DestinationError::Transient { message, .. } => Failed::Transient(message.clone()),
            other => Failed::Fatal(match other {
                DestinationError::Fatal { message, .. } | DestinationError::InvalidBatch { message } => message.clone(),
                _ => other.to_string(),
            }),
        }
    }

    fn error(&self) -> DestinationError {
        match self.clone() {
            Failed::Unauthorized(message) => DestinationError::Unauthorized { message },
            Failed::RateLimited(retry_after) => DestinationError::RateLimited { retry_after },
            Failed::Transient(message) => DestinationError::transient(message),
            Failed::Fatal(message) => DestinationError::fatal(message),
        }
    }
}

/// What only the writer fetching a token touches.
struct Flight {
    generation: u64,
    /// The refresh token to send next (the endpoint may rotate it).
    refresh_token: Option<Secret>,
    last_failure: Option<(u64, Failed)>,
}

/// The token cache shared by every writer of one destination.
pub(super) struct TokenSource {
    token_url: Url,
    grant: Grant,
    http: reqwest::Client,
    margin: Duration,
    current: RwLock<Option<Arc<AccessToken>>>,
    flight: tokio::sync::Mutex<Flight>,
    /// Fetches ended; read without the lock to tell a failure that ended while a writer
    /// waited (it shares it) from one that ended before it asked (it tries again).
    attempts: AtomicU64,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("grant", &self.grant.name())
            .field("token_url", &origin(&self.token_url))
            .field("fetches", &self.attempts.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The token URL, checked.
pub(super) fn token_url(grant: &str, text: &str) -> Result<Url, DestinationError> {
    let url =
        Url::parse(text).map_err(|e| DestinationError::fatal(format!("{grant}: `token_url` is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(DestinationError::fatal(format!("{grant}: `token_url` is not an http or https URL")));
    }
    Ok(url)
}

impl TokenSource {
    pub(super) fn refresh(config: &OAuthRefreshConfig, http: reqwest::Client) -> Result<Self, DestinationError> {
        let url = token_url("oauth_refresh", &config.token_url)?;
        for (name, value) in [
            ("client_id", config.client_id.as_str()),
            ("client_secret", config.client_secret.expose()),
            ("refresh_token", config.refresh_token.expose()),
        ] {
            if value.trim().is_empty() {
                return Err(DestinationError::fatal(format!("oauth_refresh: `{name}` is empty")));
            }
        }
        let grant = Grant::Refresh {
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            scope: config.scope.clone(),
        };
        Ok(Self::new(url, grant, http, config.refresh_margin, Some(config.refresh_token.clone())))
    }

    pub(super) fn new(
        token_url: Url,
        grant: Grant,
        http: reqwest::Client,
        margin: Duration,
        refresh_token: Option<Secret>,
    ) -> Self {
        Self {
            token_url,
            grant,
            http,
            margin,
            current: RwLock::new(None),
            flight: tokio::sync::Mutex::new(Flight { generation: 0, refresh_token, last_failure: None }),
            attempts: AtomicU64::new(0),
        }
    }

    /// How many times the token endpoint answered (or failed to).
    pub(super) fn fetches(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    fn cached(&self) -> Option<Arc<AccessToken>> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn fresh(&self) -> Option<Arc<AccessToken>> {
        self.cached().filter(|t| t.fresh(self.margin))
    }

    /// The current token, fetching the next one when there is none or it nears expiry.
    pub(super) async fn token(&self) -> Result<Arc<AccessToken>, DestinationError> {
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let ended_before = self.attempts.load(Ordering::Acquire);
        let mut flight = self.flight.lock().await;
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        if let Some((attempt, failed)) = &flight.last_failure
            && *attempt > ended_before
        {
            return Err(failed.error());
        }
        self.fetch(&mut flight).await
    }

    /// A token to use instead of `refused`, which the vendor answered 401 to: the one
    /// another writer fetched since, or a new one.
    pub(super) async fn replace(&self, refused: &AccessToken) -> Result<Arc<AccessToken>, DestinationError> {
        let mut flight = self.flight.lock().await;
        if let Some(token) = self.cached()
            && token.generation > refused.generation
        {
            return Ok(token);
        }
        if let Some((attempt, failed)) = &flight.last_failure
            && *attempt > refused.attempt
        {
            return Err(failed.error());
        }
        self.fetch(&mut flight).await
    }

    async fn fetch(&self, flight: &mut Flight) -> Result<Arc<AccessToken>, DestinationError> {
        let started = Instant::now();
        let fetched = self.request(flight).await;
        let attempt = self.attempts.fetch_add(1, Ordering::AcqRel) + 1;
        let grant = self.grant.name();
        match fetched {
            Ok(answer) => {
                flight.generation += 1;
                if let Some(rotated) = answer.refresh_token {
                    flight.refresh_token = Some(rotated);
                }
                let token = Arc::new(AccessToken {
                    token: answer.token,
                    generation: flight.generation,
                    attempt,
                    received: started,
                    lifetime: answer.lifetime,
                    instance_url: answer.instance_url,
                    scope: answer.scope,
                    extra: answer.extra,
                });
                flight.last_failure = None;
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&token));
                debug!(
                    grant,
                    generation = token.generation,
                    lifetime_s = token.lifetime.map(|l| l.as_secs()),
                    "Fetched an access token."
                );
                Ok(token)
            }
            Err(error) => {
                debug!(grant, %error, "Fetching an access token failed.");
                flight.last_failure = Some((attempt, Failed::of(&error)));
                Err(error)
            }
        }
    }

    async fn request(&self, flight: &Flight) -> Result<Answer, DestinationError> {
        let mut form: Vec<(&str, &str)> = Vec::with_capacity(5);
        let assertion;
        match &self.grant {
            Grant::Refresh { client_id, client_secret, scope } => {
                form.push(("grant_type", "refresh_token"));
                if let Some(refresh_token) = &flight.refresh_token {
                    form.push(("refresh_token", refresh_token.expose()));
                }
                form.push(("client_id", client_id));
                form.push(("client_secret", client_secret.expose()));
                if let Some(scope) = scope {
                    form.push(("scope", scope));
                }
            }
            Grant::Jwt(signer) => {
                assertion = signer.assertion(SystemTime::now())?;
                form.push(("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"));
                form.push(("assertion", assertion.expose()));
            }
        }
        let grant = self.grant.name();
        let request = self
            .http
            .post(self.token_url.clone())
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .form(&form);
        let mut response = request
            .send()
            .await
            .map_err(|e| transport_error(&format!("{grant} token endpoint"), &self.token_url, e))?;
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let (body, complete) = super::client::read_capped(response, MAX_TOKEN_BODY)
            .await
            .map_err(|e| transport_error(&format!("{grant} token endpoint"), &self.token_url, e))?;
        if status.is_success() {
            if !complete {
                return Err(self.not_a_token("is larger than 64 KiB"));
            }
            return self.answer(&body);
        }
        Err(self.refused(&Failure::new(grant, status, &headers, &body)))
    }

    fn not_a_token(&self, problem: &str) -> DestinationError {
        DestinationError::fatal(format!(
            "{}: the answer of the token endpoint {} {problem}; check `token_url`",
            self.grant.name(),
            origin(&self.token_url)
        ))
    }

    fn answer(&self, body: &[u8]) -> Result<Answer, DestinationError> {
        let Ok(Json::Object(mut fields)) = serde_json::from_slice::<Json>(body) else {
            return Err(self.not_a_token("is not a JSON object"));
        };
        let token = match fields.remove("access_token") {
            Some(Json::String(token)) if !token.is_empty() => Secret::new(token),
            _ => return Err(self.not_a_token("has no `access_token`")),
        };
        if let Some(kind) = fields.get("token_type").and_then(Json::as_str)
            && !kind.eq_ignore_ascii_case("bearer")
        {
            let kind = if looks_like_identifier(kind) { kind } else { "?" };
            return Err(self.not_a_token(&format!("holds a `{kind}` token, not a bearer token")));
        }
        let lifetime = match fields.get("expires_in") {
            Some(Json::Number(n)) => n.as_f64(),
            Some(Json::String(s)) => s.trim().parse::<f64>().ok(),
            _ => None,
        }
        .filter(|secs| secs.is_finite() && *secs > 0.0)
        .map(|secs| Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX));
        let refresh_token = match fields.remove("refresh_token") {
            Some(Json::String(t)) if !t.is_empty() => Some(Secret::new(t)),
            _ => None,
        };
        // A credential of its own; nothing here needs it.
        fields.remove("id_token");
        let text = |fields: &mut Map<String, Json>, name: &str| match fields.remove(name) {
            Some(Json::String(s)) => Some(s),
            _ => None,
        };
        let instance_url = text(&mut fields, "instance_url");
        let scope = text(&mut fields, "scope");
        Ok(Answer { token, lifetime, refresh_token, instance_url, scope, extra: fields })
    }

    /// What a token endpoint's refusal means (see the module docs).
    fn refused(&self, failure: &Failure<'_>) -> DestinationError {
        let grant = self.grant.name();
        let at = origin(&self.token_url);
        let status = failure.status();
        let code = failure
            .json()
            .and_then(|j| j.get("error"))
            .and_then(Json::as_str)
            .filter(|c| looks_like_identifier(c))
            .unwrap_or("");
        let said = if code.is_empty() {
            format!("{grant}: the token endpoint {at} answered {}", failure.status_text())
        } else {
            format!("{grant}: the token endpoint {at} answered {} `{code}`", failure.status_text())
        };
        let unauthorized = |what: &str| DestinationError::Unauthorized { message: format!("{said}; {what}") };
        let jwt = matches!(self.grant, Grant::Jwt(_));
        match (status.as_u16(), code) {
            (400 | 401, "invalid_grant") if jwt => unauthorized(
                "the assertion was refused: check `username`, that the user is pre-authorized for the connected app, that the app's certificate matches `private_key`, and `audience` (the login URL)",
            ),
            (400 | 401, "invalid_grant") => unauthorized(
                "the refresh token is expired, revoked or of another app: authorize the app again and set `refresh_token`",
            ),
            (400 | 401, "invalid_client" | "unauthorized_client") if jwt => {
                unauthorized("check `client_id` (the connected app's consumer key) and that the app allows this flow")
            }
            (400 | 401, "invalid_client" | "unauthorized_client") | (401 | 403, _) => {
                unauthorized("check `client_id` and `client_secret`")
            }
            (429, _) => DestinationError::RateLimited { retry_after: failure.retry_after() },
            (408 | 500..=599, _) => DestinationError::transient(said),
            (400..=499, _) => DestinationError::fatal(format!("{said}; check the grant's settings and `token_url`")),
            (300..=399, _) => DestinationError::fatal(format!(
                "{said}; redirects are not followed: set `token_url` to the final address"
            )),
            _ => DestinationError::fatal(format!("{said}; check `token_url`")),
        }
    }
}

/// A token endpoint's successful answer.
struct Answer {
    token: Secret,
    lifetime: Option<Duration>,
    refresh_token: Option<Secret>,
    instance_url: Option<String>,
    scope: Option<String>,
    extra: Map<String, Json>,
}
