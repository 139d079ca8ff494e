//! The OAuth 2.0 token endpoint: the JWT bearer grant (an RS256 assertion signed with the
//! connected app's certificate key) and the refresh token grant.
//!
//! Follows Salesforce Help: "OAuth 2.0 JWT Bearer Flow for Server-to-Server Integration" (claims
//! `iss` = consumer key, `sub` = username, `aud` = login URL, `exp`; RS256) and "OAuth 2.0
//! Refresh Token Flow"; the answer carries `access_token`, `instance_url`, `id`, `token_type`,
//! `issued_at` and `signature` (HMAC-SHA256 of `id` + `issued_at` under the consumer secret).
//! Errors are `{"error", "error_description"}` with 400.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde_json::{Value as Json, json};
use sha2::Sha256;

use super::{Org, json_response};

/// A throw-away RSA key pair, made by `openssl` the first time a test asks for it and never
/// written anywhere but a temporary directory that is removed at once.
pub struct TestKey {
    /// The private key, PKCS#8 PEM (what a user pastes into a configuration).
    pub private_pem: String,
    /// The same key, PKCS#8 DER.
    pub private_der: Vec<u8>,
    /// The public key, DER `RSAPublicKey` (what `ring` verifies with).
    pub public_der: Vec<u8>,
}

/// The key pair of this test process.
pub fn test_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(generate_key)
}

fn openssl(args: &[&str]) {
    let out = Command::new("/usr/bin/openssl").args(args).output().expect("run /usr/bin/openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn generate_key() -> TestKey {
    let dir: PathBuf = std::env::temp_dir().join(format!("rse-sf-key-{}-{}", std::process::id(), fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", &path("key.pem")]);
    openssl(&["pkcs8", "-topk8", "-nocrypt", "-in", &path("key.pem"), "-outform", "DER", "-out", &path("key.der")]);
    // `-pubout` would give SubjectPublicKeyInfo; ring's RSA verifier takes the bare RSAPublicKey.
    openssl(&["rsa", "-in", &path("key.pem"), "-RSAPublicKey_out", "-outform", "DER", "-out", &path("pub.der")]);
    let key = TestKey {
        private_pem: std::fs::read_to_string(path("key.pem")).unwrap(),
        private_der: std::fs::read(path("key.der")).unwrap(),
        public_der: std::fs::read(path("pub.der")).unwrap(),
    };
    std::fs::remove_dir_all(&dir).unwrap();
    key
}

/// A signed assertion for these claims, as a client of the JWT bearer flow builds it.
pub fn sign_assertion(key: &TestKey, claims: &Json) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{body}");
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&key.private_der).unwrap();
    let mut signature = vec![0; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signing_input.as_bytes(),
        &mut signature,
    )
    .unwrap();
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs()
}

/// `application/x-www-form-urlencoded` → pairs (`+` is a space, `%XX` a byte).
pub fn parse_form(body: &str) -> Vec<(String, String)> {
    super::server_kit::form_pairs(body).collect()
}

fn oauth_error(error: &str, description: &str) -> Response {
    json_response(StatusCode::BAD_REQUEST, &json!({"error": error, "error_description": description}))
}

/// `POST /services/oauth2/token`.
pub async fn token(State(org): State<Arc<Mutex<Org>>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut s = org.lock().unwrap();
    s.token_requests += 1;
    let form_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !form_type.starts_with("application/x-www-form-urlencoded") {
        return oauth_error("invalid_request", "the token request must be application/x-www-form-urlencoded");
    }
    let form = parse_form(&String::from_utf8_lossy(&body));
    let param = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if let Some(description) = s.refuse_grants.clone() {
        return oauth_error("invalid_grant", &description);
    }
    match param("grant_type") {
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
            s.jwt_grants += 1;
            let Some(assertion) = param("assertion") else {
                return oauth_error("invalid_request", "assertion is missing");
            };
            if let Err((error, description)) = check_assertion(&s, assertion) {
                return oauth_error(error, description);
            }
        }
        Some("refresh_token") => {
            s.refresh_grants += 1;
            if param("client_id") != Some(s.consumer_key.as_str()) {
                return oauth_error("invalid_client_id", "client identifier invalid");
            }
            if let Some(secret) = param("client_secret")
                && secret != s.consumer_secret
            {
                return oauth_error("invalid_client", "invalid client credentials");
            }
            if !param("refresh_token").is_some_and(|t| s.refresh_tokens.contains(t)) {
                return oauth_error("invalid_grant", "expired access/refresh token");
            }
        }
        _ => return oauth_error("unsupported_grant_type", "grant type not supported"),
    }
    let access_token = format!("{}!AQ4AQ{:016x}", &s.org_id[..15], fastrand::u64(..));
    s.tokens.insert(access_token.clone());
    let id = format!("{}/id/{}/{}", s.base_url, s.org_id, s.user_id);
    let issued_at = (SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_millis()).to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(s.consumer_secret.as_bytes()).unwrap();
    mac.update(id.as_bytes());
    mac.update(issued_at.as_bytes());
    let signature = STANDARD.encode(mac.finalize().into_bytes());
    json_response(
        StatusCode::OK,
        &json!({
            "access_token": access_token,
            "scope": "api",
            "instance_url": s.base_url,
            "id": id,
            "token_type": "Bearer",
            "issued_at": issued_at,
            "signature": signature,
        }),
    )
}

/// Checks an assertion: three base64url parts, `alg` RS256, the signature under the org's
/// public key, then `iss`, `sub`, `aud` and `exp`.
fn check_assertion(org: &Org, assertion: &str) -> Result<(), (&'static str, &'static str)> {
    const INVALID: (&str, &str) = ("invalid_grant", "invalid assertion");
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, signature] = parts[..] else { return Err(INVALID) };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).map_err(|_| INVALID);
    let header: Json = serde_json::from_slice(&decode(header)?).map_err(|_| INVALID)?;
    if header.get("alg").and_then(Json::as_str) != Some("RS256") {
        return Err(("invalid_grant", "invalid assertion: alg must be RS256"));
    }
    let signing_input = &assertion[..assertion.rfind('.').ok_or(INVALID)?];
    ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, &org.public_key)
        .verify(signing_input.as_bytes(), &decode(signature)?)
        .map_err(|_| ("invalid_grant", "invalid assertion: signature does not verify"))?;
    let claims: Json = serde_json::from_slice(&decode(claims)?).map_err(|_| INVALID)?;
    let text = |name: &str| claims.get(name).and_then(Json::as_str);
    if text("iss") != Some(org.consumer_key.as_str()) {
        return Err(("invalid_client_id", "client identifier invalid"));
    }
    if text("sub") != Some(org.username.as_str()) {
        return Err(("invalid_grant", "user hasn't approved this consumer"));
    }
    if text("aud").map(|a| a.trim_end_matches('/')) != Some(org.audience.trim_end_matches('/')) {
        return Err(("invalid_grant", "audience is invalid"));
    }
    // The documentation's own example writes `exp` as a string of digits.
    let exp = match claims.get("exp") {
        Some(Json::Number(n)) => n.as_u64(),
        Some(Json::String(s)) => s.parse().ok(),
        _ => None,
    };
    let now = now_secs();
    match exp {
        Some(exp) if exp <= now => Err(("invalid_grant", "expired assertion")),
        Some(exp) if exp > now + org.max_assertion_lifetime.as_secs() => {
            Err(("invalid_grant", "assertion expiry is too far in the future"))
        }
        Some(_) => Ok(()),
        None => Err(("invalid_grant", "invalid assertion: exp is missing")),
    }
}
