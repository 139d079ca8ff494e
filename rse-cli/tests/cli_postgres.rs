//! `rse` on a PostgreSQL → PostgreSQL mirror described in TOML: runs, status, history,
//! rejections, plan (which changes nothing) and the delete guard, against the real server.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "cli_support/mod.rs"]
mod cli_support;

use std::collections::BTreeMap;
use std::path::Path;

use cli_support::*;
use rse_core::{Key, Value};
use serde_json::Value as Json;
use tokio_postgres::Client;

/// A row's score that must never appear in what the command prints.
const SECRET_SCORE: i32 = 424_242;

async fn rows(client: &Client, table: &str) -> BTreeMap<i32, (Option<String>, i32)> {
    client
        .query(&format!("SELECT id::int, email, score::int FROM {table}"), &[])
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect()
}

fn history(dir: &Path) -> Vec<Json> {
    let output = run(dir, &["history", "people", "--json"]);
    assert_eq!(code(&output), 0, "{}", text(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

async fn run_people(dir: &Path) -> (i32, Json) {
    let output = run_async(dir, &["run", "people"]).await;
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&output)));
    (code(&output), report)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_mirror_from_toml_runs_reports_plans_and_guards_deletes() {
    let Some((client, schema)) = pg::fresh_schema("cli_pg").await else { return };
    let src = format!("\"{schema}\".people");
    let dst = format!("\"{schema}\".people_copy");
    client
        .batch_execute(&format!(
            "CREATE TABLE {src} (id int PRIMARY KEY, email text, score int NOT NULL);
             INSERT INTO {src} SELECT i, 'user' || i || '@example.com', i * 3 FROM generate_series(1, 100) i;
             UPDATE {src} SET email = NULL, score = {SECRET_SCORE} WHERE id = 50;"
        ))
        .await
        .unwrap();
    let dir = fresh_dir("cli_pg");
    let url = pg::url();
    std::fs::write(
        dir.join("rse.toml"),
        format!(
            r#"
[state]
type = "postgres"
url = "{url}"
schema = "{schema}_state"

[sync.people]
mode = "mirror"

[sync.people.source]
type = "postgres"
url = "{url}"
schema = "{schema}"
table = "people"
key = ["id"]

[[sync.people.transform]]
type = "validate"
rules = [{{ field = "email", required = true }}]

[sync.people.destination]
type = "postgres"
url = "{url}"
schema = "{schema}"
table = "people_copy"
create_table = true
"#
        ),
    )
    .unwrap();

    // First run: every row but the one without an email, which is refused.
    let (exit, report) = run_people(&dir).await;
    assert_eq!(exit, 3, "{report:#}");
    assert_eq!(report["counts"]["applied"]["insert"], 99);
    let mut expected = rows(&client, &src).await;
    expected.remove(&50);
    assert_eq!(rows(&client, &dst).await, expected);

    let refused = run(&dir, &["rejections", "people"]);
    assert_eq!(code(&refused), 0, "{}", text(&refused));
    let hash = Key::from_values(&[Value::Int(50)]).redacted().to_string();
    let shown = stdout(&refused);
    assert!(shown.contains(&hash) && shown.contains("email"), "{shown}");
    assert!(!shown.contains(&SECRET_SCORE.to_string()), "a refused row's value was printed: {shown}");
    let refused: Json = serde_json::from_slice(&run(&dir, &["rejections", "people", "--json"]).stdout).unwrap();
    assert_eq!(refused.as_array().unwrap().len(), 1);
    assert_eq!((refused[0]["key"].as_str(), refused[0]["stage"].as_str()), (Some(hash.as_str()), Some("Transform")));
    assert!(!refused.to_string().contains(&SECRET_SCORE.to_string()));

    // The model changes: five updates, three deletes, two new rows, the refused row fixed.
    client
        .batch_execute(&format!(
            "UPDATE {src} SET score = score + 1 WHERE id <= 5;
             DELETE FROM {src} WHERE id IN (6, 7, 8);
             INSERT INTO {src} VALUES (101, 'new1@example.com', 1), (102, 'new2@example.com', 2);
             UPDATE {src} SET email = 'fixed@example.com' WHERE id = 50;"
        ))
        .await
        .unwrap();
    let (exit, report) = run_people(&dir).await;
    assert_eq!(exit, 0, "{report:#}");
    let applied = &report["counts"]["applied"];
    assert_eq!(
        (applied["insert"].as_u64(), applied["update"].as_u64(), applied["delete"].as_u64()),
        (Some(3), Some(5), Some(3))
    );
    assert_eq!(rows(&client, &dst).await, rows(&client, &src).await);
    let empty: Json = serde_json::from_slice(&run(&dir, &["rejections", "people", "--json"]).stdout).unwrap();
    assert_eq!(empty, Json::Array(vec![]));

    let runs = history(&dir);
    assert_eq!(runs.len(), 2);
    assert_eq!(
        (runs[0]["status"].as_str(), runs[1]["status"].as_str()),
        (Some("Succeeded"), Some("CompletedWithRejections"))
    );
    assert!(runs[0]["run_id"].as_u64() > runs[1]["run_id"].as_u64(), "newest first");
    let table = stdout(&run(&dir, &["history", "people", "--limit", "1"]));
    assert_eq!(table.lines().count(), 2, "a header and one run: {table}");
    assert!(table.contains("succeeded"), "{table}");
    let status = stdout(&run(&dir, &["status"]));
    assert!(status.contains("people") && status.contains("active") && status.contains("succeeded"), "{status}");
    let status: Json = serde_json::from_slice(&run(&dir, &["status", "--json"]).stdout).unwrap();
    assert_eq!(status[0]["last_run"]["run_id"], runs[0]["run_id"]);

    // A plan says what a run would send and changes nothing.
    client
        .batch_execute(&format!("UPDATE {src} SET score = -1 WHERE id = 10; DELETE FROM {src} WHERE id = 11;"))
        .await
        .unwrap();
    let before = rows(&client, &dst).await;
    let plan = run_async(&dir, &["plan", "people", "--log-format", "text"]).await;
    assert_eq!(code(&plan), 0, "{}", text(&plan));
    assert!(stdout(&plan).contains("would insert 0, update 1, delete 1"), "{}", text(&plan));
    assert_eq!(rows(&client, &dst).await, before, "the plan wrote to the destination");
    assert_eq!(history(&dir).len(), 2, "the plan recorded a run");
    let (exit, report) = run_people(&dir).await;
    assert_eq!(exit, 0, "{report:#}");
    assert_eq!(report["counts"]["applied"]["update"], 1, "the plan committed nothing, so the run sends it");
    assert_eq!(rows(&client, &dst).await, rows(&client, &src).await);

    // A model that lost most of its rows: the plan shows the guard withholding the deletes
    // and exits 8 as the run will, and the run keeps them back and exits 8.
    client.batch_execute(&format!("DELETE FROM {src} WHERE id > 20")).await.unwrap();
    let plan = run_async(&dir, &["plan", "--log-format", "text"]).await;
    assert_eq!(code(&plan), 8, "{}", text(&plan));
    assert!(stdout(&plan).contains("the delete guard would withhold"), "{}", text(&plan));
    let (exit, report) = run_people(&dir).await;
    assert_eq!(exit, 8, "{report:#}");
    assert_eq!(report["counts"]["applied"]["delete"], 0);
    assert_eq!(rows(&client, &dst).await.len(), before.len() - 1, "no row was deleted");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_mirror_from_toml_diffs_in_the_warehouse() {
    let Some((client, schema)) = pg::fresh_schema("cli_pd").await else { return };
    let src = format!("\"{schema}\".people");
    let dst = format!("\"{schema}\".people_copy");
    client
        .batch_execute(&format!(
            "CREATE TABLE {src} (id int PRIMARY KEY, email text, score int NOT NULL);
             INSERT INTO {src} SELECT i, 'user' || i || '@example.com', i FROM generate_series(1, 300) i;
             CREATE SCHEMA \"{schema}_rse\";"
        ))
        .await
        .unwrap();
    let dir = fresh_dir("cli_pd");
    let url = pg::url();
    std::fs::write(
        dir.join("rse.toml"),
        format!(
            r#"
[state]
type = "sqlite"
path = "state.db"

[sync.people]
mode = "mirror"

[sync.people.source]
type = "postgres"
url = "{url}"
schema = "{schema}"
table = "people"
key = ["id"]
pushdown_schema = "{schema}_rse"
pushdown_readers = 2

[sync.people.destination]
type = "postgres"
url = "{url}"
schema = "{schema}"
table = "people_copy"
create_table = true

[sync.people.options]
diff_strategy = "pushdown"
"#
        ),
    )
    .unwrap();

    // The first run reads the whole model and records what it delivered in the schema.
    let (exit, report) = run_people(&dir).await;
    assert_eq!(exit, 0, "{report:#}");
    assert_eq!(report["counts"]["applied"]["insert"], 300);
    assert!(report["pushdown"]["full_rediff"].is_string(), "a first run re-diffs in full: {report:#}");
    assert_eq!(report["pushdown"]["completed"], true);
    assert_eq!(rows(&client, &dst).await, rows(&client, &src).await);
    let recorded: i64 = client
        .query_one(&format!("SELECT count(*) FROM \"{schema}_rse\".rse_pushdown_syncs"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, 1, "the sync's row in the schema the file names");

    // No column says when a row changed; rows go. Only those leave the warehouse.
    client
        .batch_execute(&format!(
            "UPDATE {src} SET score = -score WHERE id IN (1, 150, 300);
             DELETE FROM {src} WHERE id IN (7, 200);
             INSERT INTO {src} VALUES (301, 'new@example.com', 1);"
        ))
        .await
        .unwrap();
    let (exit, report) = run_people(&dir).await;
    assert_eq!(exit, 0, "{report:#}");
    let applied = &report["counts"]["applied"];
    assert_eq!(
        (applied["insert"].as_u64(), applied["update"].as_u64(), applied["delete"].as_u64()),
        (Some(1), Some(3), Some(2))
    );
    let pushdown = &report["pushdown"];
    assert!(pushdown["full_rediff"].is_null(), "{report:#}");
    assert_eq!(pushdown["rows_read"], 4, "only the changed and new rows left the warehouse");
    assert_eq!(pushdown["vanished"], 2);
    assert_eq!(rows(&client, &dst).await, rows(&client, &src).await);
}
