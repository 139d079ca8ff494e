//! How a SaaS destination authenticates: one [`SaasAuth`] per destination, shared by all
//! its writers, built from a [`SaasAuthConfig`].
//!
//! | `type` | sends | refreshes |
//! |---|---|---|
//! | `bearer` | `Authorization: Bearer <token>` (a HubSpot private-app token) | never |
//! | `api_key` | `<header>: <key>` | never |
//! | `oauth_refresh` | `Authorization: Bearer <access token>` | before expiry, and once after a 401 ([`super::oauth`]) |
//! | `jwt_bearer` | `Authorization: Bearer <access token>` | likewise, with a new signed assertion ([`super::jwt`]) |
//!
//! Tokens, keys and secrets are [`Secret`]s: `Debug`, `Display` and every error show
//! `***` or nothing, and a configuration may name them by reference
//! (`{"env": "HUBSPOT_TOKEN"}`, `{"file": "/run/secrets/sf.pem"}`).
//!
//! ```
//! use rse_connectors::saas::SaasAuthConfig;
//! // In a real configuration the secrets are references: `{"env": "HUBSPOT_CLIENT_SECRET"}`.
//! let config: SaasAuthConfig = serde_json::from_str(r#"{
//!     "type": "oauth_refresh",
//!     "token_url": "https://api.hubapi.com/oauth/v1/token",
//!     "client_id": "app-1",
//!     "client_secret": "s3cret",
//!     "refresh_token": "r3fresh"
//! }"#)?;
//! let shown = format!("{config:?}");
//! assert!(!shown.contains("s3cret") && !shown.contains("r3fresh"));
//!
//! let typo = serde_json::from_str::<SaasAuthConfig>(r#"{"type": "bearer", "token": "t", "tokne": "t"}"#);
//! assert!(typo.unwrap_err().to_string().contains("unknown field `tokne`"));
//! # Ok::<(), serde_json::Error>(())
//! ```

use std::fmt;
use std::sync::Arc;

use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use rse_core::DestinationError;
use serde::{Deserialize, Serialize};

use super::classify::origin;
use super::jwt::{JwtBearerConfig, JwtSigner};
use super::oauth::{AccessToken, OAuthRefreshConfig, TokenSource, token_url};
use super::token_endpoint::Grant;
use crate::destination::Secret;

/// A SaaS destination's credentials as configuration data; see the module docs.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum SaasAuthConfig {
    /// `Authorization: Bearer <token>`: a private-app or other long-lived token.
    Bearer {
        /// The token.
        token: Secret,
    },
    /// The key in a header of its own, e.g. `{"header": "X-Api-Key", "key": {"env": …}}`.
    ApiKey {
        /// The header's name.
        header: String,
        /// The key.
        key: Secret,
    },
    /// The OAuth 2.0 refresh-token grant.
    OauthRefresh(OAuthRefreshConfig),
    /// The OAuth 2.0 JWT-bearer grant (RFC 7523), RS256.
    JwtBearer(JwtBearerConfig),
}

impl From<OAuthRefreshConfig> for SaasAuthConfig {
    fn from(config: OAuthRefreshConfig) -> Self {
        SaasAuthConfig::OauthRefresh(config)
    }
}

impl From<JwtBearerConfig> for SaasAuthConfig {
    fn from(config: JwtBearerConfig) -> Self {
        SaasAuthConfig::JwtBearer(config)
    }
}

/// What a request carries to authenticate: a header and, for OAuth, the token it holds.
///
/// `Debug` shows the header's name only.
#[derive(Clone)]
pub struct Credential {
    name: HeaderName,
    value: HeaderValue,
    token: Option<Arc<AccessToken>>,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("header", &self.name.as_str())
            .field("generation", &self.token.as_ref().map(|t| t.generation()))
            .finish_non_exhaustive()
    }
}

impl Credential {
    fn header(name: HeaderName, value: &str, what: &str) -> Result<Self, DestinationError> {
        let mut value = HeaderValue::from_str(value).map_err(|_| {
            DestinationError::fatal(format!(
                "{what} holds characters a header cannot carry (a line break or a control character)"
            ))
        })?;
        value.set_sensitive(true);
        Ok(Self { name, value, token: None })
    }

    fn bearer(token: Arc<AccessToken>) -> Result<Self, DestinationError> {
        let mut credential =
            Self::header(AUTHORIZATION, &format!("Bearer {}", token.secret().expose()), "the access token")?;
        credential.token = Some(token);
        Ok(credential)
    }

    /// The header's name (`authorization`, or an API key's header).
    pub fn header_name(&self) -> &HeaderName {
        &self.name
    }

    /// The header's value, marked sensitive (HTTP/2 never indexes it, `Debug` hides it).
    pub fn header_value(&self) -> &HeaderValue {
        &self.value
    }

    /// Adds the header to `request`.
    pub fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request.header(self.name.clone(), self.value.clone())
    }

    /// The OAuth token sent, with what the token endpoint said (Salesforce's
    /// `instance_url`); `None` for a static token or key.
    pub fn token(&self) -> Option<&Arc<AccessToken>> {
        self.token.as_ref()
    }
}

enum Inner {
    Static(Credential),
    OAuth(Box<TokenSource>),
}

/// A destination's authentication, shared by all its writers: clone it freely (an `Arc`).
///
/// A vendor module asks [`credential`](Self::credential) before each request (the
/// [`SaasClient`](super::SaasClient) does) and, when the vendor answers 401,
/// [`refresh_after_unauthorized`](Self::refresh_after_unauthorized) once.
#[derive(Clone)]
pub struct SaasAuth {
    inner: Arc<Inner>,
}

impl fmt::Debug for SaasAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.inner {
            Inner::Static(credential) => f.debug_tuple("SaasAuth").field(&credential.name.as_str()).finish(),
            Inner::OAuth(source) => f.debug_tuple("SaasAuth").field(source).finish(),
        }
    }
}

impl SaasAuth {
    /// `Authorization: Bearer <token>` on every request.
    ///
    /// # Errors
    /// [`DestinationError::Fatal`] when the token cannot be a header value.
    pub fn bearer(token: impl Into<Secret>) -> Result<Self, DestinationError> {
        let token = token.into();
        let credential = Credential::header(AUTHORIZATION, &format!("Bearer {}", token.expose()), "the bearer token")?;
        Ok(Self { inner: Arc::new(Inner::Static(credential)) })
    }

    /// `<header>: <key>` on every request.
    ///
    /// # Errors
    /// [`DestinationError::Fatal`] naming the header when its name or the key cannot be
    /// sent.
    pub fn api_key(header: &str, key: impl Into<Secret>) -> Result<Self, DestinationError> {
        let name = HeaderName::from_bytes(header.as_bytes())
            .map_err(|_| DestinationError::fatal(format!("api_key: `{header}` is not a valid header name")))?;
        let credential = Credential::header(name, key.into().expose(), &format!("the key for header `{header}`"))?;
        Ok(Self { inner: Arc::new(Inner::Static(credential)) })
    }

    /// The refresh-token grant, fetching tokens through `http` (build it with
    /// [`build_http_client`](super::build_http_client)). Nothing is sent until the first
    /// credential is asked for.
    ///
    /// # Errors
    /// [`DestinationError::Fatal`] for a token URL that is not http(s) or an empty setting.
    pub fn oauth_refresh(config: &OAuthRefreshConfig, http: reqwest::Client) -> Result<Self, DestinationError> {
        Ok(Self { inner: Arc::new(Inner::OAuth(Box::new(TokenSource::refresh(config, http)?))) })
    }

    /// The JWT-bearer grant, fetching tokens through `http`. The private key is parsed
    /// now; nothing is sent until the first credential is asked for.
    ///
    /// # Errors
    /// [`DestinationError::Fatal`] naming the setting at fault: the token URL, the key
    /// (not PEM, encrypted, not RSA), the assertion lifetime.
    pub fn jwt_bearer(config: &JwtBearerConfig, http: reqwest::Client) -> Result<Self, DestinationError> {
        let url = token_url("jwt_bearer", &config.token_url)?;
        let signer = JwtSigner::new(config, origin(&url))?;
        let source = TokenSource::new(url, Grant::Jwt(Box::new(signer)), http, config.refresh_margin, None);
        Ok(Self { inner: Arc::new(Inner::OAuth(Box::new(source))) })
    }

    /// The authentication `config` describes; OAuth grants fetch through `http`.
    ///
    /// # Errors
    /// As the constructor of its kind.
    pub fn from_config(config: &SaasAuthConfig, http: &reqwest::Client) -> Result<Self, DestinationError> {
        match config {
            SaasAuthConfig::Bearer { token } => Self::bearer(token.clone()),
            SaasAuthConfig::ApiKey { header, key } => Self::api_key(header, key.clone()),
            SaasAuthConfig::OauthRefresh(config) => Self::oauth_refresh(config, http.clone()),
            SaasAuthConfig::JwtBearer(config) => Self::jwt_bearer(config, http.clone()),
        }
    }

    /// Whether a 401 can be answered by fetching a new token (OAuth grants).
    pub fn is_refreshable(&self) -> bool {
        matches!(&*self.inner, Inner::OAuth(_))
    }

    /// What the next request carries: a static header, or the current access token,
    /// fetched first when there is none or it nears expiry (one fetch for all writers).
    ///
    /// # Errors
    /// The token endpoint's refusal or failure, classified (see [`super::oauth`]).
    pub async fn credential(&self) -> Result<Credential, DestinationError> {
        match &*self.inner {
            Inner::Static(credential) => Ok(credential.clone()),
            Inner::OAuth(source) => Credential::bearer(source.token().await?),
        }
    }

    /// A credential to retry with after the vendor answered 401 to `refused`: the token
    /// another writer fetched since `refused` was issued, or a new one. Ask once per
    /// request: a second 401 means the credentials themselves are refused.
    ///
    /// # Errors
    /// [`DestinationError::Unauthorized`] for a static token or key (nothing to refresh),
    /// or the token endpoint's refusal or failure.
    pub async fn refresh_after_unauthorized(&self, refused: &Credential) -> Result<Credential, DestinationError> {
        match (&*self.inner, &refused.token) {
            (Inner::OAuth(source), Some(token)) => Credential::bearer(source.replace(token).await?),
            (Inner::OAuth(source), None) => Credential::bearer(source.token().await?),
            (Inner::Static(credential), _) => Err(DestinationError::Unauthorized {
                message: format!(
                    "the `{}` credential was refused; a static token or key cannot be refreshed: check it, its scopes and that the app is still installed",
                    credential.name
                ),
            }),
        }
    }

    /// The current OAuth token (fetched first if needed), with what the token endpoint
    /// said: Salesforce's `instance_url` is the host every API call goes to. `None` for a
    /// static token or key.
    ///
    /// # Errors
    /// As [`credential`](Self::credential).
    pub async fn current_token(&self) -> Result<Option<Arc<AccessToken>>, DestinationError> {
        match &*self.inner {
            Inner::Static(_) => Ok(None),
            Inner::OAuth(source) => source.token().await.map(Some),
        }
    }

    /// How many token fetches have ended, well or not (0 for a static token or key).
    pub fn token_fetches(&self) -> u64 {
        match &*self.inner {
            Inner::Static(_) => 0,
            Inner::OAuth(source) => source.fetches(),
        }
    }
}
