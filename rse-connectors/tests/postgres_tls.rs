//! TLS to PostgreSQL for the destination and the state store: `verify-full` with the
//! server's CA, a CA that did not sign the server's certificate, a host name the
//! certificate does not carry, a client certificate, and no fallback to plaintext.
//!
//! Needs the local server with TLS on, as `.ci/tls-setup` leaves it: `RSE_TEST_TLS_CA`
//! names its CA; beside it are `other-ca.pem` (a CA that signed nothing the servers hold)
//! and `client.pem`/`client.key` (a client certificate from the CA). Without the variable
//! the tests skip, or fail under `CI=true`.
#![cfg(feature = "postgres-tls")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use rse_connectors::state::PostgresStateStore;
use rse_connectors::{PostgresConnectOptions, PostgresDestination, PostgresDestinationOptions, SslMode};
use rse_core::testing::{service_url, services_required, unavailable, unique_id};
use rse_core::{Destination, DestinationError, StateError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_postgres::{Client, NoTls};

const GUARD: Duration = Duration::from_secs(60);

/// The directory of the test CA, or `None` (after saying why) when it is not set up.
fn tls_dir() -> Option<PathBuf> {
    match std::env::var("RSE_TEST_TLS_CA") {
        Ok(ca) => Some(PathBuf::from(ca).parent().expect("RSE_TEST_TLS_CA names a file").to_owned()),
        Err(_) if services_required() => {
            panic!("RSE_TEST_TLS_CA is not set and CI=true requires the TLS tests: run .ci/tls-setup")
        }
        Err(_) => {
            eprintln!("skipping: RSE_TEST_TLS_CA is not set (run .ci/tls-setup and export what it prints)");
            None
        }
    }
}

fn file(dir: &std::path::Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// The port of the local server (`RSE_POSTGRES_TLS_PORT`, default 5432).
fn port() -> u16 {
    service_url("RSE_POSTGRES_TLS_PORT", "5432").parse().unwrap()
}

async fn admin() -> Option<Client> {
    let url = service_url("RSE_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test");
    match tokio_postgres::connect(&url, NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            Some(client)
        }
        Err(e) => {
            unavailable("PostgreSQL", &url, e);
            None
        }
    }
}

/// Whether the session named `application_name` is encrypted, and the client
/// certificate's subject it presented (empty when none).
async fn session(admin: &Client, application_name: &str) -> Option<(bool, String)> {
    let row = admin
        .query_opt(
            "SELECT s.ssl, coalesce(s.client_dn, '') FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = $1 LIMIT 1",
            &[&application_name],
        )
        .await
        .unwrap()?;
    Some((row.get(0), row.get(1)))
}

#[tokio::test]
async fn verify_full_with_the_servers_ca_encrypts_the_destinations_and_the_state_stores_sessions() {
    let Some(dir) = tls_dir() else { return };
    let Some(admin) = admin().await else { return };
    for host in ["localhost", "127.0.0.1"] {
        let app = unique_id("rse_tls");
        let url = format!(
            "postgres://postgres@{host}:{}/test?sslmode=verify-full&sslrootcert={}&application_name={app}",
            port(),
            file(&dir, "ca.pem")
        );
        let dest = PostgresDestination::new(&url, PostgresDestinationOptions::new("t")).unwrap();
        tokio::time::timeout(GUARD, dest.check()).await.unwrap().unwrap_or_else(|e| panic!("{host}: {e}"));
        assert_eq!(session(&admin, &app).await.map(|s| s.0), Some(true), "{host}: the destination's session");

        let schema = unique_id("rse_tls_state");
        let app = unique_id("rse_tls");
        let url = format!("postgres://postgres@{host}:{}/test?sslmode=verify-full&application_name={app}", port());
        let options =
            PostgresConnectOptions::new().with_root_certificates_pem(std::fs::read(dir.join("ca.pem")).unwrap());
        let store =
            PostgresStateStore::connect_with(&url, &schema, options).await.unwrap_or_else(|e| panic!("{host}: {e}"));
        assert_eq!(session(&admin, &app).await.map(|s| s.0), Some(true), "{host}: the state store's session");
        drop(store);
        admin.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE")).await.unwrap();
    }
}

#[tokio::test]
async fn prefer_the_default_encrypts_when_the_server_offers_tls() {
    if tls_dir().is_none() {
        return;
    }
    let Some(admin) = admin().await else { return };
    let app = unique_id("rse_tls");
    // No sslmode: libpq's default, `prefer`.
    let url = format!("postgres://postgres@127.0.0.1:{}/test?application_name={app}", port());
    let dest = PostgresDestination::new(&url, PostgresDestinationOptions::new("t")).unwrap();
    tokio::time::timeout(GUARD, dest.check()).await.unwrap().unwrap();
    assert_eq!(session(&admin, &app).await.map(|s| s.0), Some(true), "the session is plaintext");
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_as_not_trusted_saying_to_give_the_ca() {
    let Some(dir) = tls_dir() else { return };
    let other = file(&dir, "other-ca.pem");
    // `require` checks the chain too; without sslrootcert the roots are the public CAs.
    for query in [
        format!("sslmode=verify-full&sslrootcert={other}"),
        format!("sslmode=verify-ca&sslrootcert={other}"),
        format!("sslmode=require&sslrootcert={other}"),
        "sslmode=require".to_owned(),
    ] {
        let url = format!("postgres://postgres@localhost:{}/test?{query}", port());
        let dest = PostgresDestination::new(&url, PostgresDestinationOptions::new("t")).unwrap();
        let error = tokio::time::timeout(GUARD, dest.check()).await.unwrap().unwrap_err();
        // Retrying does not make a certificate trusted.
        assert!(matches!(error, DestinationError::Fatal { .. }), "{query}: {error}");
        let message = error.to_string();
        assert!(message.contains("not trusted") && message.contains("sslrootcert"), "{query}: {message}");

        let error = PostgresStateStore::connect(&url, "rse_tls_never").await.unwrap_err();
        assert!(matches!(error, StateError::Other { .. }), "{query}: {error}");
        assert!(error.to_string().contains("not trusted"), "{query}: {error}");
    }
}

#[tokio::test]
async fn verify_full_refuses_a_host_name_the_certificate_lacks_and_verify_ca_accepts_it() {
    let Some(dir) = tls_dir() else { return };
    let Some(admin) = admin().await else { return };
    let ca = file(&dir, "ca.pem");
    // Connect to 127.0.0.1 while naming another host, as a DNS name pointing elsewhere would.
    let conn = |mode: &str, app: &str| {
        format!(
            "host=db.invalid hostaddr=127.0.0.1 port={} user=postgres dbname=test sslmode={mode} sslrootcert='{ca}' \
             application_name={app}",
            port()
        )
    };
    let dest = PostgresDestination::new(&conn("verify-full", "x"), PostgresDestinationOptions::new("t")).unwrap();
    let error = tokio::time::timeout(GUARD, dest.check()).await.unwrap().unwrap_err();
    assert!(matches!(error, DestinationError::Fatal { .. }), "{error}");
    assert!(error.to_string().contains("not issued for the host name `db.invalid`"), "{error}");

    let app = unique_id("rse_tls");
    let dest = PostgresDestination::new(&conn("verify-ca", &app), PostgresDestinationOptions::new("t")).unwrap();
    tokio::time::timeout(GUARD, dest.check()).await.unwrap().unwrap();
    assert_eq!(session(&admin, &app).await.map(|s| s.0), Some(true));
}

#[tokio::test]
async fn require_encrypts_without_checking_only_when_the_host_opts_out() {
    let Some(dir) = tls_dir() else { return };
    let Some(admin) = admin().await else { return };
    let app = unique_id("rse_tls");
    let url = format!(
        "postgres://postgres@localhost:{}/test?sslmode=require&sslrootcert={}&application_name={app}",
        port(),
        file(&dir, "other-ca.pem")
    );
    let options = PostgresDestinationOptions::new("t")
        .with_connect_options(PostgresConnectOptions::new().with_danger_accept_invalid_certificates(true));
    let dest = PostgresDestination::new(&url, options).unwrap();
    tokio::time::timeout(GUARD, dest.check()).await.unwrap().unwrap();
    assert_eq!(session(&admin, &app).await.map(|s| s.0), Some(true));

    // verify-full and the opt-out contradict each other: refused before connecting.
    let options = PostgresDestinationOptions::new("t").with_connect_options(
        PostgresConnectOptions::new().with_ssl_mode(SslMode::VerifyFull).with_danger_accept_invalid_certificates(true),
    );
    let error = PostgresDestination::new(&url, options).unwrap_err();
    assert!(error.to_string().contains("drop one of the two"), "{error}");
}

#[tokio::test]
async fn the_client_certificate_in_the_url_is_presented_to_the_server() {
    let Some(dir) = tls_dir() else { return };
    let Some(admin) = admin().await else { return };
    let app = unique_id("rse_tls");
    let url = format!(
        "postgres://postgres@localhost:{}/test?sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}&application_name={app}",
        port(),
        file(&dir, "ca.pem"),
        file(&dir, "client.pem"),
        file(&dir, "client.key")
    );
    let dest = PostgresDestination::new(&url, PostgresDestinationOptions::new("t")).unwrap();
    tokio::time::timeout(GUARD, dest.check()).await.unwrap().unwrap();
    let (ssl, client_dn) = session(&admin, &app).await.unwrap();
    assert!(ssl);
    assert!(client_dn.contains("rse-test-client"), "the server saw {client_dn:?}");
}

/// A server without TLS: answers PostgreSQL's TLS request with `N`, then records what the
/// client sends next.
async fn server_without_tls() -> (u16, tokio::sync::oneshot::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 8];
        socket.read_exact(&mut request).await.unwrap();
        assert_eq!(request, [0, 0, 0, 8, 4, 210, 22, 47], "the client asks for TLS first");
        socket.write_all(b"N").await.unwrap();
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut rest)).await;
        let _ = tx.send(rest);
    });
    (port, rx)
}

#[tokio::test]
async fn require_never_falls_back_to_plaintext_on_a_server_without_tls() {
    for mode in ["require", "verify-full"] {
        let (port, sent) = server_without_tls().await;
        let url = format!("postgres://rse_secret_user@127.0.0.1:{port}/test?sslmode={mode}");
        let dest = PostgresDestination::new(&url, PostgresDestinationOptions::new("t")).unwrap();
        let error = tokio::time::timeout(GUARD, dest.check()).await.unwrap().unwrap_err();
        assert!(matches!(error, DestinationError::Fatal { .. }), "{mode}: {error}");
        assert!(error.to_string().contains("does not offer TLS"), "{mode}: {error}");
        drop(dest);
        let sent = tokio::time::timeout(GUARD, sent).await.unwrap().unwrap();
        assert!(!String::from_utf8_lossy(&sent).contains("rse_secret_user"), "{mode}: the login went out in plaintext");
    }
}
