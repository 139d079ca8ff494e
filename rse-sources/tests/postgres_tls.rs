//! TLS as the connection URL asks for it: `sslmode`, `sslrootcert`, `sslcert`, `sslkey`.
//!
//! Needs the local server with TLS on, as `.ci/tls-setup` leaves it: `RSE_TEST_TLS_CA`
//! names its CA, with `other-ca.pem` (a CA that signed nothing the server holds) and
//! `client.pem`/`client.key` beside it. Without the variable the tests skip, or fail under
//! `CI=true`.
#![cfg(feature = "postgres-tls")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use rse_core::testing::services_required;
use rse_core::{ReadRequest, Record, Source, SourceError, Value};
use rse_sources::Model;
use rse_sources::postgres::PostgresSource;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const GUARD: Duration = Duration::from_secs(60);

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

/// The read's session: whether it is encrypted, and the client certificate's subject.
fn session_model() -> Model {
    Model::query(
        "SELECT 1 AS id, ssl, coalesce(client_dn, '') AS client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
}

async fn read(url: &str) -> Result<Vec<Record>, SourceError> {
    let source = PostgresSource::from_url(url, session_model())?.with_key(["id"]);
    let read = async {
        let mut stream = source.read(ReadRequest::full()).await?;
        let mut rows = Vec::new();
        while let Some(batch) = stream.next().await {
            rows.extend(batch?.records);
        }
        Ok(rows)
    };
    tokio::time::timeout(GUARD, read).await.expect("the read hung")
}

#[tokio::test]
async fn verify_full_with_the_servers_ca_and_a_client_certificate_reads_over_tls() {
    let Some(dir) = tls_dir() else { return };
    for host in ["localhost", "127.0.0.1"] {
        let url = format!(
            "postgres://postgres@{host}:5432/test?sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
            file(&dir, "ca.pem"),
            file(&dir, "client.pem"),
            file(&dir, "client.key")
        );
        let rows = read(&url).await.unwrap_or_else(|e| panic!("{host}: {e}"));
        assert_eq!(rows[0].values[1], Value::Bool(true), "{host}: the session is encrypted");
        let Value::String(dn) = &rows[0].values[2] else { panic!("{:?}", rows[0]) };
        assert!(dn.contains("rse-test-client"), "{host}: the server saw {dn:?}");
    }
}

#[tokio::test]
async fn prefer_the_default_encrypts_when_the_server_offers_tls() {
    if tls_dir().is_none() {
        return;
    }
    let rows = read("postgres://postgres@127.0.0.1:5432/test").await.unwrap();
    assert_eq!(rows[0].values[1], Value::Bool(true), "the session is plaintext");
}

#[tokio::test]
async fn a_certificate_from_another_ca_fails_the_read_saying_it_is_not_trusted() {
    let Some(dir) = tls_dir() else { return };
    let other = file(&dir, "other-ca.pem");
    for query in [format!("sslmode=verify-full&sslrootcert={other}"), "sslmode=require".to_owned()] {
        let error = read(&format!("postgres://postgres@localhost:5432/test?{query}")).await.unwrap_err();
        let message = error.to_string();
        assert!(message.contains("not trusted") && message.contains("sslrootcert"), "{query}: {message}");
    }
}

#[tokio::test]
async fn require_never_falls_back_to_plaintext_on_a_server_without_tls() {
    if tls_dir().is_none() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 8];
        socket.read_exact(&mut request).await.unwrap();
        socket.write_all(b"N").await.unwrap();
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut rest)).await;
        rest
    });
    let error =
        read(&format!("postgres://rse_secret_user@127.0.0.1:{port}/test?sslmode=verify-full")).await.unwrap_err();
    assert!(error.to_string().contains("does not offer TLS"), "{error}");
    let sent = tokio::time::timeout(GUARD, server).await.unwrap().unwrap();
    assert!(!String::from_utf8_lossy(&sent).contains("rse_secret_user"), "the login went out in plaintext");
}
