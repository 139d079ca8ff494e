//! The OAuth 2.0 JWT-bearer grant (RFC 7523) as Salesforce's server-to-server flow uses it:
//! an RS256 assertion signed with the connected app's private key.
//!
//! The assertion's claims are `iss` = the client id (the connected app's consumer key),
//! `sub` = the user to act as, `aud` = the authorization server (Salesforce:
//! `https://login.salesforce.com`, `https://test.salesforce.com` or the My Domain / Experience
//! Cloud URL), `iat` = now and `exp` = now + at most three minutes (Salesforce refuses a
//! later `exp`). The key is a PEM PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1
//! (`BEGIN RSA PRIVATE KEY`) RSA key of 2048 to 8192 bits, given as a [`Secret`] (so by
//! `{"file": "/run/secrets/sf.pem"}` in a configuration); it is parsed when the auth is
//! built, so a wrong key fails before the first write.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rse_core::DestinationError;
use serde::{Deserialize, Serialize};

use crate::destination::Secret;

/// The longest assertion lifetime Salesforce accepts.
pub const MAX_ASSERTION_LIFETIME: Duration = Duration::from_secs(180);

/// The JWT-bearer grant's configuration: `{"type": "jwt_bearer", "token_url": …,
/// "client_id": …, "username": …, "private_key": {"file": …}}` as a
/// [`SaasAuthConfig`](super::SaasAuthConfig).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct JwtBearerConfig {
    /// The token endpoint, e.g. `https://login.salesforce.com/services/oauth2/token`.
    pub token_url: String,
    /// `iss`: the connected app's client id (consumer key).
    pub client_id: String,
    /// `sub`: the user the integration acts as.
    pub username: String,
    /// `aud`; by default the token URL's `scheme://host` (what Salesforce expects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// A `scope` claim, for servers that take one (Google); Salesforce takes the connected
    /// app's scopes and needs none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The RSA private key, PEM (PKCS#8 or PKCS#1).
    pub private_key: Secret,
    /// How long each assertion is valid (default 150 s; at most three minutes).
    #[serde(default = "default_lifetime", with = "rse_core::config::duration")]
    pub assertion_lifetime: Duration,
    /// How long before a token's announced expiry it is replaced (default 60 s; at most
    /// half its lifetime). Salesforce announces none: its token is used until it is refused.
    #[serde(default = "super::oauth::default_margin", with = "rse_core::config::duration")]
    pub refresh_margin: Duration,
}

fn default_lifetime() -> Duration {
    Duration::from_secs(150)
}

impl JwtBearerConfig {
    /// A grant at `token_url` for `client_id` acting as `username`, signed with
    /// `private_key`; the other settings at their defaults.
    pub fn new(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        username: impl Into<String>,
        private_key: impl Into<Secret>,
    ) -> Self {
        Self {
            token_url: token_url.into(),
            client_id: client_id.into(),
            username: username.into(),
            audience: None,
            scope: None,
            private_key: private_key.into(),
            assertion_lifetime: default_lifetime(),
            refresh_margin: super::oauth::default_margin(),
        }
    }

    /// Sets `aud` (default: the token URL's `scheme://host`).
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Adds a `scope` claim.
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// How long each assertion is valid (at most three minutes).
    pub fn with_assertion_lifetime(mut self, lifetime: Duration) -> Self {
        self.assertion_lifetime = lifetime;
        self
    }

    /// How long before a token's announced expiry it is replaced.
    pub fn with_refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }
}

/// Signs assertions for one configuration; holds the parsed key.
pub(super) struct JwtSigner {
    key: RsaKeyPair,
    rng: SystemRandom,
    client_id: String,
    username: String,
    audience: String,
    scope: Option<String>,
    lifetime: Duration,
}

impl fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSigner")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("audience", &self.audience)
            .field("key", &"***")
            .finish_non_exhaustive()
    }
}

fn config_error(message: String) -> DestinationError {
    DestinationError::fatal(message)
}

impl JwtSigner {
    /// Parses the key and checks the settings; `audience` is the default `aud`.
    pub(super) fn new(config: &JwtBearerConfig, audience: String) -> Result<Self, DestinationError> {
        if config.assertion_lifetime.is_zero() || config.assertion_lifetime > MAX_ASSERTION_LIFETIME {
            return Err(config_error(format!(
                "jwt_bearer: `assertion_lifetime` is {:?}; set it from 1s to 3m (Salesforce refuses an assertion valid longer than three minutes)",
                config.assertion_lifetime
            )));
        }
        for (name, value) in [("client_id", &config.client_id), ("username", &config.username)] {
            if value.trim().is_empty() {
                return Err(config_error(format!("jwt_bearer: `{name}` is empty")));
            }
        }
        let key = parse_rsa_key(config.private_key.expose())
            .map_err(|problem| config_error(format!("jwt_bearer: `private_key` {problem}")))?;
        Ok(Self {
            key,
            rng: SystemRandom::new(),
            client_id: config.client_id.clone(),
            username: config.username.clone(),
            audience: config.audience.clone().unwrap_or(audience),
            scope: config.scope.clone(),
            lifetime: config.assertion_lifetime,
        })
    }

    /// A signed assertion issued at `now`: `base64url(header).base64url(claims).base64url(sig)`.
    pub(super) fn assertion(&self, now: SystemTime) -> Result<Secret, DestinationError> {
        let iat = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut claims = serde_json::Map::new();
        claims.insert("iss".into(), self.client_id.clone().into());
        claims.insert("sub".into(), self.username.clone().into());
        claims.insert("aud".into(), self.audience.clone().into());
        claims.insert("iat".into(), iat.into());
        claims.insert("exp".into(), (iat + self.lifetime.as_secs()).into());
        if let Some(scope) = &self.scope {
            claims.insert("scope".into(), scope.clone().into());
        }
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(serde_json::Value::Object(claims).to_string());
        let signing_input = format!("{header}.{claims}");
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &self.rng, signing_input.as_bytes(), &mut signature)
            .map_err(|_| DestinationError::fatal("jwt_bearer: signing the assertion failed"))?;
        Ok(Secret::new(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))))
    }
}

/// An RSA key pair from PEM text (PKCS#8 or PKCS#1); the error says what is wrong, never
/// what the text holds.
fn parse_rsa_key(text: &str) -> Result<RsaKeyPair, String> {
    // A PEM kept in an environment variable often has its line breaks written as `\n`.
    let unescaped;
    let text = if !text.contains('\n') && text.contains("\\n") {
        unescaped = text.replace("\\n", "\n");
        unescaped.as_str()
    } else {
        text
    };
    let (label, der) = pem_block(text)?;
    let parsed = match label.as_str() {
        "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
        "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
        "ENCRYPTED PRIVATE KEY" => {
            return Err("is encrypted; give it unencrypted (`openssl pkcs8 -topk8 -nocrypt -in key.pem`), kept as a secret file".to_owned());
        }
        other => {
            return Err(format!(
                "holds a `{other}` block; give the RSA private key (`BEGIN PRIVATE KEY` or `BEGIN RSA PRIVATE KEY`)"
            ));
        }
    };
    parsed.map_err(|e| format!("is not a usable RSA private key of 2048 to 8192 bits ({e})"))
}

/// The label and bytes of the first PEM block of `text`.
fn pem_block(text: &str) -> Result<(String, Vec<u8>), String> {
    const NOT_PEM: &str =
        "is not PEM text; give the key file's contents, from `-----BEGIN PRIVATE KEY-----` to its `-----END` line";
    let mut lines = text.lines().map(str::trim);
    let label = lines
        .by_ref()
        .find_map(|line| line.strip_prefix("-----BEGIN ").and_then(|rest| rest.strip_suffix("-----")))
        .ok_or_else(|| NOT_PEM.to_owned())?
        .to_owned();
    let end = format!("-----END {label}-----");
    let mut body = String::new();
    let mut ended = false;
    for line in lines {
        if line == end {
            ended = true;
            break;
        }
        if line.contains(':') {
            // RFC 1421 headers: only an encrypted key has them.
            if line.starts_with("Proc-Type") && line.contains("ENCRYPTED") {
                return Err(
                    "is encrypted; give it unencrypted (`openssl rsa -in key.pem`), kept as a secret file".to_owned()
                );
            }
            continue;
        }
        body.push_str(line);
    }
    if !ended {
        return Err(format!("has no `{end}` line; give the whole key file"));
    }
    let der = STANDARD.decode(body.as_bytes()).map_err(|_| "has a PEM body that is not base64".to_owned())?;
    Ok((label, der))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_problems_are_named_without_the_key() {
        let cases = [
            ("not a key at all", "is not PEM text"),
            ("-----BEGIN PRIVATE KEY-----\nMIIB\n", "has no `-----END PRIVATE KEY-----` line"),
            ("-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n", "not base64"),
            ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not a usable RSA private key"),
            ("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----", "is encrypted"),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----",
                "is encrypted",
            ),
            ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----", "holds a `CERTIFICATE` block"),
        ];
        for (text, expected) in cases {
            let config = JwtBearerConfig::new("https://login.example.com/token", "app", "user", text);
            let error = JwtSigner::new(&config, "https://login.example.com".into()).map(|_| ()).unwrap_err();
            let message = error.to_string();
            assert!(message.contains(expected), "{message}");
            assert!(!message.contains("AAAA"), "{message}");
        }
    }

    #[test]
    fn lifetimes_past_three_minutes_are_refused() {
        let config = JwtBearerConfig::new("https://login.example.com/token", "app", "user", "x")
            .with_assertion_lifetime(Duration::from_secs(181));
        let error = JwtSigner::new(&config, String::new()).map(|_| ()).unwrap_err().to_string();
        assert!(error.contains("`assertion_lifetime`"), "{error}");
    }
}
