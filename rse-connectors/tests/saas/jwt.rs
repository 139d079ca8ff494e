//! The JWT-bearer grant (RFC 7523; Salesforce "OAuth 2.0 JWT Bearer Flow for
//! Server-to-Server Integration"; /work/shared/contracts/saas-contracts.md §2): the server
//! verifies each assertion's RS256 signature with the public key, through `openssl`, and
//! its claims. Keys are generated per test into a temporary directory and deleted after.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use rse_connectors::saas::{JwtBearerConfig, SaasAuthConfig, SaasClient, SaasClientOptions, SaasRequest};
use rse_connectors::{DestinationError, Secret};
use serde_json::Value as Json;

use crate::oauth_server::{JwtCheck, OAuthServer};

/// A fresh directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
        let dir =
            std::env::temp_dir().join(format!("rse-saas-jwt-{}-{nanos}-{}", std::process::id(), fastrand::u32(..)));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A throw-away 2048-bit RSA key: `name.pem` (PKCS#8), `name.rsa.pem` (PKCS#1) and
/// `name.pub.pem` (SubjectPublicKeyInfo).
fn keypair(dir: &Path, name: &str) {
    openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", &format!("{name}.pem")], dir);
    openssl(&["rsa", "-in", &format!("{name}.pem"), "-traditional", "-out", &format!("{name}.rsa.pem")], dir);
    openssl(&["rsa", "-in", &format!("{name}.pem"), "-pubout", "-out", &format!("{name}.pub.pem")], dir);
}

async fn server_for(dir: &Path) -> OAuthServer {
    let server = OAuthServer::start().await;
    {
        let mut s = server.lock();
        s.expires_in = None;
        s.instance_url = Some("https://acme.my.salesforce.example".to_owned());
        s.jwt = Some(JwtCheck {
            public_key: dir.join("app.pub.pem"),
            client_id: "3MVG9-consumer-key".to_owned(),
            username: "integration@acme.example".to_owned(),
            audience: server.base(),
        });
    }
    server
}

fn config(server: &OAuthServer, key: &Path) -> JwtBearerConfig {
    let key = Secret::from_file(key).unwrap();
    JwtBearerConfig::new(server.token_url(), "3MVG9-consumer-key", "integration@acme.example", key)
}

#[tokio::test]
async fn assertions_verify_with_the_public_key_and_claim_what_salesforce_needs() {
    let dir = TempDir::new();
    tokio::task::spawn_blocking({
        let dir = dir.0.clone();
        move || keypair(&dir, "app")
    })
    .await
    .unwrap();
    let server = server_for(&dir.0).await;

    for key in ["app.pem", "app.rsa.pem"] {
        let auth = SaasAuthConfig::from(config(&server, &dir.0.join(key)));
        let client = SaasClient::new("salesforce:test", &auth, SaasClientOptions::default()).unwrap();
        let token = client.auth().current_token().await.unwrap().unwrap();
        assert_eq!(token.instance_url(), Some("https://acme.my.salesforce.example"), "{key}");
        assert_eq!(token.lifetime(), None);
        let answer = client.send(&SaasRequest::get(server.url("/api/whoami"))).await.unwrap();
        assert!(answer.is_success(), "{key}: {answer:?}");
    }

    let s = server.lock();
    assert_eq!(s.claims.len(), 2, "both keys' assertions verified");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    for claims in &s.claims {
        assert_eq!(claims["iss"], "3MVG9-consumer-key");
        assert_eq!(claims["sub"], "integration@acme.example");
        assert_eq!(claims["aud"], Json::String(server.base()), "the default audience is the token URL's origin");
        let exp = claims["exp"].as_u64().unwrap();
        assert!(exp > now && exp <= now + 180, "exp within three minutes: {exp} vs {now}");
    }
    assert!(s.forms.iter().all(|f| f["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"));
}

#[tokio::test]
async fn another_key_is_refused_and_named_as_what_to_check() {
    let dir = TempDir::new();
    tokio::task::spawn_blocking({
        let dir = dir.0.clone();
        move || {
            keypair(&dir, "app");
            keypair(&dir, "other");
        }
    })
    .await
    .unwrap();
    let server = server_for(&dir.0).await;
    let other = std::fs::read_to_string(dir.0.join("other.pem")).unwrap();
    let auth = SaasAuthConfig::from(config(&server, &dir.0.join("other.pem")));
    let client = SaasClient::new("salesforce:test", &auth, SaasClientOptions::default()).unwrap();
    let error = client.auth().credential().await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, DestinationError::Unauthorized { .. }), "{error:?}");
    assert!(message.contains("`invalid_grant`") && message.contains("certificate matches `private_key`"), "{message}");
    let body: String = other.lines().filter(|l| !l.starts_with("-----")).collect();
    for text in [message, format!("{error:?}"), format!("{client:?}"), format!("{auth:?}")] {
        assert!(!text.contains(&body[..40]), "{text} shows the key");
    }
}

#[tokio::test]
async fn a_configuration_names_the_key_file() {
    let dir = TempDir::new();
    tokio::task::spawn_blocking({
        let dir = dir.0.clone();
        move || keypair(&dir, "app")
    })
    .await
    .unwrap();
    let server = server_for(&dir.0).await;
    let key = dir.0.join("app.pem");
    let text = format!(
        r#"{{"type": "jwt_bearer", "token_url": "{}", "client_id": "3MVG9-consumer-key",
            "username": "integration@acme.example", "private_key": {{"file": "{}"}}, "assertion_lifetime": "2m"}}"#,
        server.token_url(),
        key.display()
    );
    let auth: SaasAuthConfig = serde_json::from_str(&text).unwrap();
    assert_eq!(format!("{auth:?}").matches("***").count(), 1, "{auth:?}");
    // Written back, the key is the same reference, not its contents.
    assert!(
        serde_json::to_string(&auth).unwrap().contains(&format!(r#""private_key":{{"file":"{}"}}"#, key.display()))
    );
    let client = SaasClient::new("salesforce:test", &auth, SaasClientOptions::default()).unwrap();
    assert!(client.auth().credential().await.is_ok());
    let claims = &server.lock().claims[0];
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 120);
}

#[tokio::test]
async fn a_key_in_an_environment_style_single_line_is_read() {
    let dir = TempDir::new();
    tokio::task::spawn_blocking({
        let dir = dir.0.clone();
        move || keypair(&dir, "app")
    })
    .await
    .unwrap();
    let server = server_for(&dir.0).await;
    // As a PEM often sits in an environment variable: its line breaks written as `\n`.
    let escaped = std::fs::read_to_string(dir.0.join("app.pem")).unwrap().trim_end().replace('\n', "\\n");
    let config = JwtBearerConfig::new(server.token_url(), "3MVG9-consumer-key", "integration@acme.example", escaped);
    let client = SaasClient::new("salesforce:test", &config.into(), SaasClientOptions::default()).unwrap();
    assert!(client.auth().credential().await.is_ok());
}
