//! Who may call: OAuth access tokens, the `developer-token` header, `login-customer-id`, and
//! Google's token endpoint (refresh-token grant and the service account's JWT-bearer grant).
//!
//! Follows the Google Ads API guides "Authorization and authentication" / "API call
//! structure" (headers `Authorization: Bearer`, `developer-token`, `login-customer-id` as ten
//! digits without hyphens; scope `https://www.googleapis.com/auth/adwords`), Google's "Using
//! OAuth 2.0 for Server to Server Applications" (assertion claims `iss`, `scope`, `aud` =
//! the token URL, `exp` at most an hour after `iat`; answer `{access_token, expires_in,
//! token_type}`; errors `{error, error_description}`) and RFC 6749 §5.2.
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value as Json, json};
use tokio::time::Instant;

pub use super::server_kit::Validity;
use super::server_kit::{bearer, token_form};
use super::wire::Reply;

/// The scope every Google Ads token must carry.
pub const SCOPE: &str = "https://www.googleapis.com/auth/adwords";

/// A service account the JWT-bearer grant accepts.
#[derive(Debug, Clone)]
pub struct ServiceAccount {
    /// `iss`: the service account's email.
    pub email: String,
    /// PEM SubjectPublicKeyInfo of its key; the signature is checked with `openssl` when set.
    pub public_key: Option<PathBuf>,
}

/// An installed-app OAuth client the refresh-token grant accepts.
#[derive(Debug, Clone)]
pub struct OAuthClient {
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
}

pub struct Auth {
    pub tokens: HashMap<String, Validity>,
    /// Developer tokens accepted.
    pub developer_tokens: Vec<String>,
    /// When set, every call must carry this `login-customer-id` (the list is reached through
    /// this manager account).
    pub login_customer_id: Option<String>,
    pub service_account: Option<ServiceAccount>,
    pub oauth_client: Option<OAuthClient>,
    /// The token URL assertions must name as `aud`.
    pub token_url: String,
    /// `expires_in` of issued tokens.
    pub lifetime: Duration,
    /// Each issued token is valid for this many calls.
    pub uses_per_token: Option<u64>,
    /// Access tokens issued.
    pub issued: u64,
    /// 401 answers.
    pub unauthorized: u64,
    /// Claims of every accepted assertion.
    pub claims: Vec<Json>,
}

impl Auth {
    pub fn new(token: &str, developer_token: &str) -> Auth {
        let mut tokens = HashMap::new();
        tokens.insert(token.to_owned(), Validity::default());
        Auth {
            tokens,
            developer_tokens: vec![developer_token.to_owned()],
            login_customer_id: None,
            service_account: None,
            oauth_client: None,
            token_url: String::new(),
            lifetime: Duration::from_secs(3599),
            uses_per_token: None,
            issued: 0,
            unauthorized: 0,
            claims: Vec::new(),
        }
    }

    /// Checks the headers of an API call. `Err((reply, violation))`: the answer, and whether
    /// the client broke the contract (a missing header) rather than holding a bad credential.
    pub fn check(&mut self, headers: &HeaderMap, now: Instant) -> Result<(), (Reply, Option<String>)> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let Some(token) = bearer(headers) else {
            self.unauthorized += 1;
            return Err((
                Reply::one("authenticationError", "OAUTH_TOKEN_HEADER_INVALID", "Oauth token header is not valid."),
                Some("no `Authorization: Bearer` header".into()),
            ));
        };
        let Some(validity) = self.tokens.get_mut(&token) else {
            self.unauthorized += 1;
            return Err((Reply::one("authenticationError", "OAUTH_TOKEN_INVALID", "Oauth token is invalid."), None));
        };
        if !validity.spend(now) {
            self.unauthorized += 1;
            return Err((Reply::one("authenticationError", "OAUTH_TOKEN_EXPIRED", "Oauth token is expired."), None));
        }
        let Some(developer) = header("developer-token") else {
            return Err((
                Reply::one("requestError", "DEVELOPER_TOKEN_PARAMETER_MISSING", "Developer token is missing."),
                Some("no `developer-token` header".into()),
            ));
        };
        if !self.developer_tokens.contains(&developer) {
            return Err((
                Reply::one("authenticationError", "DEVELOPER_TOKEN_INVALID", "The developer token is not valid."),
                None,
            ));
        }
        let login = header("login-customer-id");
        if let Some(login) = &login
            && (login.len() != 10 || !login.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err((
                Reply::one("headerError", "INVALID_LOGIN_CUSTOMER_ID", "The login customer ID could not be validated."),
                Some(format!("`login-customer-id: {login}`: ten digits without hyphens expected")),
            ));
        }
        if let Some(manager) = &self.login_customer_id
            && login.as_ref() != Some(manager)
        {
            return Err((
                Reply::one(
                    "authorizationError",
                    "USER_PERMISSION_DENIED",
                    "User doesn't have permission to access customer. Note: If you're accessing a client customer, \
                     the manager's customer id must be set in the 'login-customer-id' header.",
                ),
                None,
            ));
        }
        Ok(())
    }

    /// `POST /token`, form-encoded.
    pub fn token_endpoint(&mut self, headers: &HeaderMap, body: &[u8], now: Instant) -> Result<Reply, String> {
        let form = token_form(headers, body)?;
        let field = |name: &str| form.get(name).cloned().unwrap_or_default();
        match field("grant_type").as_str() {
            "refresh_token" => {
                let Some(client) = self.oauth_client.clone() else {
                    return Ok(refusal(401, "invalid_client", "The OAuth client was not found."));
                };
                if field("client_id") != client.client_id || field("client_secret") != client.client_secret {
                    return Ok(refusal(401, "invalid_client", "Unauthorized"));
                }
                if field("refresh_token") != client.refresh_token {
                    return Ok(refusal(400, "invalid_grant", "Bad Request"));
                }
            }
            "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
                let Some(account) = self.service_account.clone() else {
                    return Ok(refusal(400, "invalid_grant", "Invalid JWT Signature."));
                };
                match verify_assertion(&field("assertion"), &account, &self.token_url) {
                    Ok(claims) => self.claims.push(claims),
                    Err(problem) => return Ok(refusal(400, "invalid_grant", &problem)),
                }
            }
            other => return Err(format!("token request with grant_type `{other}`")),
        }
        self.issued += 1;
        let access = format!("ya29.rse-{}-{:016x}", self.issued, fastrand::u64(..));
        self.tokens.insert(access.clone(), Validity::issued(now, self.lifetime, self.uses_per_token));
        Ok(Reply::undescribed(
            200,
            json!({"access_token": access, "expires_in": self.lifetime.as_secs(), "scope": SCOPE, "token_type": "Bearer"}),
        ))
    }
}

fn refusal(status: u16, error: &str, description: &str) -> Reply {
    Reply::undescribed(status, json!({"error": error, "error_description": description}))
}

/// Checks the assertion's claims (and signature, when a public key is known).
fn verify_assertion(assertion: &str, account: &ServiceAccount, token_url: &str) -> Result<Json, String> {
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else { return Err("Invalid JWT: not three parts".into()) };
    let decode = |part: &str| -> Result<Json, String> {
        let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|e| format!("Invalid JWT: {e}"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("Invalid JWT: {e}"))
    };
    if decode(header)?["alg"] != "RS256" {
        return Err("Invalid JWT: alg must be RS256".into());
    }
    let claims = decode(claims)?;
    if let Some(key) = &account.public_key {
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|e| format!("Invalid JWT Signature: {e}"))?;
        let dir = key.parent().unwrap();
        let n = fastrand::u64(..);
        let (input, sig) = (dir.join(format!("input-{n}")), dir.join(format!("sig-{n}")));
        std::fs::write(&input, format!("{}.{}", parts[0], parts[1])).unwrap();
        std::fs::write(&sig, signature).unwrap();
        let out = std::process::Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(key)
            .arg("-signature")
            .arg(&sig)
            .arg(&input)
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&input);
        let _ = std::fs::remove_file(&sig);
        if !out.status.success() {
            return Err("Invalid JWT Signature.".into());
        }
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let exp = claims["exp"].as_u64().ok_or("Invalid JWT: no exp")?;
    let iat = claims["iat"].as_u64().ok_or("Invalid JWT: no iat")?;
    if exp <= now || exp > iat + 3600 {
        return Err("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.".into());
    }
    if claims["iss"] != account.email.as_str() {
        return Err("Invalid JWT: iss is not a known service account".into());
    }
    if claims["aud"] != token_url {
        return Err(format!("Invalid JWT: aud must be {token_url}"));
    }
    let scopes = claims["scope"].as_str().unwrap_or("");
    if !scopes.split(' ').any(|s| s == SCOPE) {
        return Err("Invalid JWT: the scope must include https://www.googleapis.com/auth/adwords".into());
    }
    Ok(claims)
}
