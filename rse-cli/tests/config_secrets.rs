//! Secrets by reference: `${env:NAME}` and `${file:/path}` inside any string, read when a
//! sync is built, and never shown in a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod config_common;

use config_common::{TestDir, create_warehouse, rows};
use rse_cli::config::ConfigErrorKind;
use rse_core::testing::{service_url, unavailable, unique_id};

fn sync(destination_table: &str, extra: &str) -> String {
    format!(
        r#"[state]
type = "sqlite"
path = "state.db"

[sync.s.source]
type = "sqlite"
path = "warehouse.db"
table = "customers"
key = ["id"]
{extra}
[sync.s.destination]
type = "sqlite"
path = "app.db"
table = "{destination_table}"
create_table = true
"#
    )
}

fn tables(dir: &TestDir) -> Vec<Vec<String>> {
    rows(&dir.path("app.db"), "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
}

#[tokio::test]
async fn an_environment_variable_is_read_inside_a_longer_string() {
    let dir = TestDir::new("secret-env");
    create_warehouse(&dir.path("warehouse.db"), 2);
    // Cargo sets CARGO_PKG_NAME for the tests it runs.
    let file = dir.load(&sync("${env:CARGO_PKG_NAME}_customers", "")).unwrap();
    let built = file.require_sync("s").unwrap().build().await.unwrap();
    assert_eq!(built.job.run().await.unwrap().counts.applied.insert, 2);
    assert_eq!(tables(&dir), vec![vec!["rse-cli_customers"]]);
}

#[tokio::test]
async fn a_file_is_read_without_its_trailing_line_break_relative_to_the_configuration() {
    let dir = TestDir::new("secret-file");
    create_warehouse(&dir.path("warehouse.db"), 2);
    std::fs::create_dir_all(dir.path("secrets")).unwrap();
    std::fs::write(dir.path("secrets/table"), "crm_customers\r\n").unwrap();
    let file = dir.load(&sync("${file:secrets/table}", "")).unwrap();
    file.require_sync("s").unwrap().build().await.unwrap().job.run().await.unwrap();
    assert_eq!(tables(&dir), vec![vec!["crm_customers"]]);
}

#[tokio::test]
async fn an_escaped_reference_is_literal_text() {
    let dir = TestDir::new("secret-escape");
    create_warehouse(&dir.path("warehouse.db"), 1);
    let transform = "[[sync.s.transform]]\ntype = \"constant\"\nfield = \"label\"\nvalue = \"price $${amount}\"\n";
    let file = dir.load(&sync("customers", transform)).unwrap();
    file.require_sync("s").unwrap().build().await.unwrap().job.run().await.unwrap();
    assert_eq!(rows(&dir.path("app.db"), "SELECT label FROM customers"), vec![vec!["price ${amount}"]]);
}

#[tokio::test]
async fn references_nested_in_a_postgres_url_connect() {
    let url = service_url("RSE_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test");
    let (client, connection) = match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        Ok(c) => c,
        Err(e) => return unavailable("PostgreSQL", &url, e),
    };
    tokio::spawn(connection);
    let schema = unique_id("rse_cli_secret");
    client
        .batch_execute(&format!(
            "CREATE SCHEMA \"{schema}\"; CREATE TABLE \"{schema}\".t (id int PRIMARY KEY, name text);
             INSERT INTO \"{schema}\".t VALUES (1, 'ada'), (2, 'grace');"
        ))
        .await
        .unwrap();
    let dir = TestDir::new("secret-pg");
    // The server part of the URL from a file, the database from the file as written.
    let (head, database) = url.rsplit_once('/').unwrap();
    std::fs::write(dir.path("pg_server"), format!("{head}\n")).unwrap();
    let text = format!(
        r#"[state]
type = "postgres"
url = "${{file:pg_server}}/{database}"
schema = "{schema}_state"

[sync.s.source]
type = "postgres"
url = "${{file:pg_server}}/{database}"
schema = "{schema}"
table = "t"
key = ["id"]

[sync.s.destination]
type = "sqlite"
path = "app.db"
table = "t"
create_table = true
"#
    );
    let file = dir.load(&text).unwrap();
    let report = file.require_sync("s").unwrap().build().await.unwrap().job.run().await.unwrap();
    assert_eq!(report.counts.applied.insert, 2);
    client
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE; DROP SCHEMA \"{schema}_state\" CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_state_store_alone_needs_only_its_own_secrets() {
    let dir = TestDir::new("secret-state-only");
    create_warehouse(&dir.path("warehouse.db"), 1);
    let file = dir.load(&sync("${env:RSE_TEST_SURELY_UNSET_CRM_TABLE}", "")).unwrap();
    let spec = file.require_sync("s").unwrap();
    let state = spec.state_store().await.unwrap();
    assert!(state.runs("s", 5).await.unwrap().is_empty());
    let e = spec.build().await.unwrap_err();
    assert_eq!(e.kind(), ConfigErrorKind::Secret);
    assert_eq!(e.field_path(), Some("sync.s.destination.table"));
}

#[tokio::test]
async fn a_secret_never_shows_in_a_message() {
    let dir = TestDir::new("secret-redacted");
    create_warehouse(&dir.path("warehouse.db"), 1);
    std::fs::write(dir.path("dir_secret"), "/nonexistent-hunter2-dir").unwrap();
    let text = sync("customers", "").replace("path = \"app.db\"", "path = \"${file:dir_secret}/app.db\"");
    let file = dir.load(&text).unwrap();
    let e = file.require_sync("s").unwrap().build().await.unwrap_err();
    let shown = e.to_string();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("***"), "{shown}");
    assert_eq!(e.field_path(), Some("sync.s.destination.path"));
}
