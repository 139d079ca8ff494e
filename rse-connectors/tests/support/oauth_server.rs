//! An OAuth 2.0 authorization server and a protected API, in process, for the SaaS kit's
//! tests: counts token requests, issues expiring tokens, verifies JWT-bearer assertions
//! with `openssl`, and can be told to refuse.
//!
//! Follows RFC 6749 §5 (token responses and `error` codes), RFC 7523 §2.1/§3 (JWT-bearer
//! grant and claims), and Salesforce's "OAuth 2.0 JWT Bearer Flow for Server-to-Server
//! Integration" (the `instance_url` in the answer, `exp` within three minutes;
//! /work/shared/contracts/saas-contracts.md §2).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value as Json, json};
use tokio::time::Instant;

/// What a JWT assertion must claim.
#[derive(Debug, Clone)]
pub struct JwtCheck {
    /// PEM SubjectPublicKeyInfo file (`openssl rsa -pubout`).
    pub public_key: PathBuf,
    pub client_id: String,
    pub username: String,
    pub audience: String,
}

/// A scripted answer: status, headers, body.
pub type Scripted = (u16, Vec<(&'static str, String)>, String);

/// The server's state, shared with the test.
#[derive(Default)]
pub struct Inner {
    pub client_id: String,
    pub client_secret: String,
    /// The refresh token accepted now.
    pub refresh_token: String,
    /// Issue a new refresh token with each access token, accepting only the newest.
    pub rotate: bool,
    /// `expires_in` of issued tokens; `None` leaves it out (Salesforce).
    pub expires_in: Option<f64>,
    /// How long the token endpoint takes to answer.
    pub delay: Duration,
    /// The token endpoint's next answers instead of a token: status and body.
    pub refuse: Vec<(u16, String)>,
    /// Refuse every token request so (when set).
    pub refuse_always: Option<(u16, String)>,
    pub jwt: Option<JwtCheck>,
    /// `instance_url` in token answers.
    pub instance_url: Option<String>,
    pub token_requests: u64,
    /// The form of every token request.
    pub forms: Vec<HashMap<String, String>>,
    /// Claims of every verified assertion.
    pub claims: Vec<Json>,
    /// Access tokens issued: token → (generation, expiry).
    pub tokens: HashMap<String, (u64, Option<Instant>)>,
    pub issued: u64,
    /// Answer 401 to every API call.
    pub api_refuses_all: bool,
    pub api_calls: u64,
    pub api_unauthorized: u64,
    /// The next answers of `/api/scripted`: status, headers, body.
    pub script: VecDeque<Scripted>,
    /// `User-Agent` and `Accept-Encoding` of API calls.
    pub user_agents: Vec<String>,
    pub accept_encodings: Vec<String>,
}

#[derive(Clone)]
pub struct OAuthServer {
    pub inner: Arc<Mutex<Inner>>,
    pub addr: SocketAddr,
}

pub const CLIENT_ID: &str = "rse-test-app";
pub const CLIENT_SECRET: &str = "client-secret-7f3a9e";
pub const REFRESH_TOKEN: &str = "refresh-token-c41d2b";

impl OAuthServer {
    /// Starts on 127.0.0.1 at a free port, with the test app's credentials.
    pub async fn start() -> OAuthServer {
        let inner = Arc::new(Mutex::new(Inner {
            client_id: CLIENT_ID.to_owned(),
            client_secret: CLIENT_SECRET.to_owned(),
            refresh_token: REFRESH_TOKEN.to_owned(),
            expires_in: Some(1800.0),
            ..Inner::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/oauth/token", post(token))
            .route("/api/whoami", get(api).post(api))
            .route("/api/gzip", get(gzipped))
            .route("/api/scripted", get(scripted).post(scripted))
            .route(
                "/api/moved",
                get(|| async { (StatusCode::FOUND, [("location", "/login?session=s3")]).into_response() }),
            )
            .route(
                "/api/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .route(
                "/api/big",
                get(|| async { ([("content-type", "application/json")], format!("[{}0]", "0,".repeat(5000))) }),
            )
            .with_state(Arc::clone(&inner));
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        OAuthServer { inner, addr }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn token_url(&self) -> String {
        format!("{}/oauth/token", self.base())
    }

    pub fn url(&self, path: &str) -> reqwest::Url {
        reqwest::Url::parse(&format!("{}{path}", self.base())).unwrap()
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    /// Forgets every access token issued: the API refuses them from now on.
    pub fn revoke_access_tokens(&self) {
        self.lock().tokens.clear();
    }
}

fn json_response(status: StatusCode, body: &Json) -> Response {
    (status, [("content-type", "application/json")], body.to_string()).into_response()
}

fn oauth_error(status: u16, code: &str) -> (u16, String) {
    (status, json!({"error": code, "error_description": "refused for ada@example.com"}).to_string())
}

/// `application/x-www-form-urlencoded` into a map.
fn form(body: &[u8]) -> HashMap<String, String> {
    fn decode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    }
    std::str::from_utf8(body)
        .unwrap()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

async fn token(State(inner): State<Arc<Mutex<Inner>>>, body: Bytes) -> Response {
    let form = form(&body);
    let (delay, jwt) = {
        let mut s = inner.lock().unwrap();
        s.token_requests += 1;
        s.forms.push(form.clone());
        (s.delay, s.jwt.clone())
    };
    tokio::time::sleep(delay).await;
    let refusal = {
        let mut s = inner.lock().unwrap();
        if s.refuse.is_empty() { s.refuse_always.clone() } else { Some(s.refuse.remove(0)) }
    };
    if let Some((status, body)) = refusal {
        return (StatusCode::from_u16(status).unwrap(), [("content-type", "application/json")], body).into_response();
    }
    let grant = form.get("grant_type").map(String::as_str).unwrap_or("");
    let refused = match grant {
        "refresh_token" => {
            let s = inner.lock().unwrap();
            if form.get("client_id") != Some(&s.client_id) || form.get("client_secret") != Some(&s.client_secret) {
                Some(oauth_error(401, "invalid_client"))
            } else if form.get("refresh_token") != Some(&s.refresh_token) {
                Some(oauth_error(400, "invalid_grant"))
            } else {
                None
            }
        }
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
            let Some(check) = jwt else {
                return json_response(StatusCode::BAD_REQUEST, &json!({"error": "unsupported_grant_type"}));
            };
            let assertion = form.get("assertion").cloned().unwrap_or_default();
            match tokio::task::spawn_blocking(move || verify_assertion(&assertion, &check)).await.unwrap() {
                Ok(claims) => {
                    inner.lock().unwrap().claims.push(claims);
                    None
                }
                Err(_) => Some(oauth_error(400, "invalid_grant")),
            }
        }
        _ => Some(oauth_error(400, "unsupported_grant_type")),
    };
    if let Some((status, body)) = refused {
        return (StatusCode::from_u16(status).unwrap(), [("content-type", "application/json")], body).into_response();
    }
    let mut s = inner.lock().unwrap();
    s.issued += 1;
    let generation = s.issued;
    let access = format!("access-{generation}-{:08x}", fastrand::u32(..));
    let expiry = s.expires_in.map(|secs| Instant::now() + Duration::from_secs_f64(secs));
    s.tokens.insert(access.clone(), (generation, expiry));
    let mut answer = json!({"access_token": access, "token_type": "Bearer", "scope": "crm.objects.contacts.write",
                            "id_token": "header.payload.sig", "issued_at": "1700000000000", "signature": "sig=="});
    if let Some(secs) = s.expires_in {
        answer["expires_in"] = json!(secs);
    }
    if let Some(url) = &s.instance_url {
        answer["instance_url"] = json!(url);
    }
    if s.rotate {
        let next = format!("refresh-{generation}-{:08x}", fastrand::u32(..));
        s.refresh_token = next.clone();
        answer["refresh_token"] = json!(next);
    }
    json_response(StatusCode::OK, &answer)
}

/// Checks the assertion's signature with `openssl` and its claims; returns the claims.
fn verify_assertion(assertion: &str, check: &JwtCheck) -> Result<Json, String> {
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else { return Err("not three parts".into()) };
    let header: Json = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).map_err(|e| e.to_string())?).unwrap();
    if header["alg"] != "RS256" {
        return Err("alg".into());
    }
    let claims_json: Json =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).map_err(|e| e.to_string())?).unwrap();
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|e| e.to_string())?;
    let dir = check.public_key.parent().unwrap();
    let n = fastrand::u64(..);
    let (input_path, sig_path) = (dir.join(format!("input-{n}")), dir.join(format!("sig-{n}")));
    std::fs::write(&input_path, format!("{}.{}", parts[0], parts[1])).unwrap();
    std::fs::write(&sig_path, signature).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(&check.public_key)
        .arg("-signature")
        .arg(&sig_path)
        .arg(&input_path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&input_path);
    let _ = std::fs::remove_file(&sig_path);
    if !out.status.success() {
        return Err("signature".into());
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let exp = claims_json["exp"].as_u64().ok_or("exp")?;
    if exp <= now || exp > now + 180 {
        return Err("exp must be within three minutes".into());
    }
    if claims_json["iss"] != check.client_id.as_str() || claims_json["sub"] != check.username.as_str() {
        return Err("iss/sub".into());
    }
    if claims_json["aud"] != check.audience.as_str() {
        return Err("aud".into());
    }
    Ok(claims_json)
}

/// The protected API: 200 with the token's generation, or Salesforce's 401 envelope.
async fn api(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap) -> Response {
    let mut s = inner.lock().unwrap();
    s.api_calls += 1;
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    s.user_agents.push(text("user-agent"));
    s.accept_encodings.push(text("accept-encoding"));
    let bearer = text("authorization");
    let token = bearer.strip_prefix("Bearer ").unwrap_or("");
    let valid = s.tokens.get(token).filter(|(_, expiry)| expiry.is_none_or(|e| Instant::now() < e)).map(|(g, _)| *g);
    match valid {
        Some(generation) if !s.api_refuses_all => json_response(StatusCode::OK, &json!({"generation": generation})),
        _ => {
            s.api_unauthorized += 1;
            json_response(
                StatusCode::UNAUTHORIZED,
                &json!([{"message": "Session expired or invalid for ada@example.com", "errorCode": "INVALID_SESSION_ID"}]),
            )
        }
    }
}

/// The next scripted answer (404 when none is left).
async fn scripted(State(inner): State<Arc<Mutex<Inner>>>) -> Response {
    let Some((status, headers, body)) = inner.lock().unwrap().script.pop_front() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
    for (name, value) in headers {
        response.headers_mut().insert(name, axum::http::HeaderValue::from_str(&value).unwrap());
    }
    response
}

/// A gzip-encoded JSON answer (one stored deflate block, RFC 1951 §3.2.4; RFC 1952).
async fn gzipped() -> Response {
    let body = br#"{"compressed":true}"#;
    let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 0x01];
    let len = u16::try_from(body.len()).unwrap();
    gz.extend_from_slice(&len.to_le_bytes());
    gz.extend_from_slice(&(!len).to_le_bytes());
    gz.extend_from_slice(body);
    gz.extend_from_slice(&crc32(body).to_le_bytes());
    gz.extend_from_slice(&u32::try_from(body.len()).unwrap().to_le_bytes());
    ([("content-type", "application/json"), ("content-encoding", "gzip")], gz).into_response()
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}
