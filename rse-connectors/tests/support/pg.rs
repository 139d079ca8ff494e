//! The test PostgreSQL: its URL, a client, and a schema of the test's own.
#![allow(dead_code)] // each test file uses its part

use rse_core::testing::{service_url, unavailable, unique_id};
use tokio_postgres::{Client, NoTls};

/// The test server's URL: `RSE_POSTGRES_URL`, else the local server's `test` database.
pub fn url() -> String {
    service_url("RSE_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
}

/// A client of the test server, its connection driven in the background; `None` when the
/// server cannot be reached (after `unavailable` said so, or failed the test under `CI=true`).
pub async fn connect() -> Option<Client> {
    let url = url();
    let (client, connection) = match tokio_postgres::connect(&url, NoTls).await {
        Ok(c) => c,
        Err(e) => {
            unavailable("PostgreSQL", &url, e);
            return None;
        }
    };
    tokio::spawn(connection);
    Some(client)
}

/// A client and a schema created for the test, named from `prefix`.
pub async fn fresh_schema(prefix: &str) -> Option<(Client, String)> {
    let client = connect().await?;
    let schema = unique_id(prefix);
    client.batch_execute(&format!("CREATE SCHEMA \"{schema}\"")).await.unwrap();
    Some((client, schema))
}
