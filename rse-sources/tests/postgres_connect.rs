//! Connecting the PostgreSQL source: a server that accepts and never answers ends the read
//! with an error instead of hanging it.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use futures::StreamExt;
use rse_core::{ReadRequest, Source, SourceError};
use rse_sources::Model;
use rse_sources::postgres::PostgresSource;
use tokio::net::TcpListener;

/// Far above the timeout set here, so only a hang reaches it.
const GUARD: Duration = Duration::from_secs(60);

/// A server that accepts connections and never says a word; its URL.
async fn silent_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("postgres://postgres@{addr}/test")
}

#[tokio::test]
async fn a_server_that_never_answers_fails_the_read_as_unavailable_after_the_connect_timeout() {
    // tokio-postgres's `connect_timeout` bounds the TCP connect, which this server accepts
    // at once; the login after it would wait forever.
    let url = format!("{}?connect_timeout=1", silent_server().await);
    let source = PostgresSource::from_url(&url, Model::table("t")).unwrap().with_key(["id"]);
    let read = async {
        let mut stream = source.read(ReadRequest::full()).await?;
        while let Some(batch) = stream.next().await {
            batch?;
        }
        Ok::<_, SourceError>(())
    };
    let error = tokio::time::timeout(GUARD, read).await.expect("the read hung").unwrap_err();
    assert!(matches!(error, SourceError::Unavailable { .. }), "{error}");
    assert!(error.to_string().contains("timed out"), "{error}");
}
