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
use std::time::{Duration, Instant};

use reqwest::Url;
use rse_core::DestinationError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use tracing::debug;

use super::classify::origin;
use super::token_endpoint::{Endpoint, Grant};
use crate::destination::Secret;

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

/// A failed fetch, kept to hand to the writers that waited for it.
#[derive(Clone)]
enum Failed {
    Unauthorized(String),
    RateLimited(Option<Duration>),
    Quota(String, Option<Duration>),
    Transient(String),
    Fatal(String),
}

impl Failed {
    fn of(error: &DestinationError) -> Self {
        match error {
            DestinationError::Unauthorized { message } => Failed::Unauthorized(message.clone()),
            DestinationError::RateLimited { retry_after } => Failed::RateLimited(*retry_after),
            DestinationError::QuotaExhausted { message, resets_in } => Failed::Quota(message.clone(), *resets_in),
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
            Failed::Quota(message, resets_in) => DestinationError::QuotaExhausted { message, resets_in },
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
        let endpoint = Endpoint { grant: &self.grant, url: &self.token_url, http: &self.http };
        let fetched = endpoint.request(flight.refresh_token.as_ref()).await;
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
}
