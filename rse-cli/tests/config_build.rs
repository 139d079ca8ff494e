//! Every kind of source, transform, destination and state store parses from a file and
//! builds against real SQLite files, files on disk and the local servers; the syncs run
//! and the rows land.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod config_common;

use config_common::{TestDir, create_warehouse, rows};
use rse::{RunStatus, SyncReport};
use rse_cli::config::ConfigFile;
use rse_core::testing::{service_url, unavailable, unique_id};

const STATE: &str = "[state]\ntype = \"sqlite\"\npath = \"state.db\"\n";

/// Builds and runs the sync `name` once.
async fn run_once(file: &ConfigFile, name: &str) -> SyncReport {
    let built = file.require_sync(name).unwrap().build().await.unwrap_or_else(|e| panic!("{e}"));
    built.job.run().await.unwrap()
}

/// Builds and runs the sync `name` once; the run must succeed.
async fn run(file: &ConfigFile, name: &str) -> SyncReport {
    let report = run_once(file, name).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    report
}

#[tokio::test]
async fn every_built_in_transform_applies_in_order() {
    let dir = TestDir::new("build-transforms");
    create_warehouse(&dir.path("warehouse.db"), 12);
    let text = format!(
        r#"{STATE}
[sync.all]
mode = "mirror"

[sync.all.source]
type = "sqlite"
path = "warehouse.db"
table = "customers"
key = ["id"]
column_types = {{ ltv = "decimal" }}

[[sync.all.transform]]
type = "rename"
fields = {{ id = "external_id" }}

[[sync.all.transform]]
type = "filter"
field = "lifecycle_stage"
suppress = ["AT_RISK"]

[[sync.all.transform]]
type = "hash_pii"
field = "email"
pii = "email"
output_field = "email_sha256"

[[sync.all.transform]]
type = "mask"
field = "notes"
keep_last = 4

[[sync.all.transform]]
type = "cast"
fields = {{ ltv = "string" }}

[[sync.all.transform]]
type = "constant"
field = "origin"
value = "warehouse"

[[sync.all.transform]]
type = "constant"
field = "weight"
value = "1.50"
data_type = "decimal"

[[sync.all.transform]]
type = "validate"
rules = [
    {{ field = "churn_score", required = true, min = 0, max = 0.5 }},
    {{ field = "lifecycle_stage", one_of = ["new", "active", "champion"] }},
]

[[sync.all.transform]]
type = "drop"
fields = ["updated_at"]

[[sync.all.transform]]
type = "select"
fields = ["external_id", "email_sha256", "churn_score", "lifecycle_stage", "ltv", "notes", "origin", "weight"]

[[sync.all.transform]]
type = "sensitive_fields"
fields = ["email"]
detectors = ["email", "payment_card", "us_ssn"]

[sync.all.destination]
type = "sqlite"
path = "app.db"
table = "customers"
create_table = true
"#
    );
    let file = dir.load(&text).unwrap();
    assert_eq!(file.require_sync("all").unwrap().transform_count(), 11);
    let report = run_once(&file, "all").await;
    assert_eq!(report.status, RunStatus::CompletedWithRejections, "{report}");
    // 12 customers: ids 3, 7, 11 are at_risk (filtered); of the others, those scoring
    // above 0.5 are rejected by the validation.
    let expected: Vec<i64> = (1..=12).filter(|id| id % 4 != 3 && (id * 37 % 100) as f64 / 100.0 <= 0.5).collect();
    assert_eq!(report.counts.filtered, 3);
    assert_eq!(report.counts.applied.insert as usize, expected.len());
    assert_eq!(report.counts.transform_rejected as usize, 12 - 3 - expected.len());

    let got = rows(
        &dir.path("app.db"),
        "SELECT external_id, length(email_sha256), notes, ltv, origin, weight FROM customers ORDER BY external_id",
    );
    let ids: Vec<i64> = got.iter().map(|r| r[0].parse().unwrap()).collect();
    assert_eq!(ids, expected);
    let first = &got[0];
    assert_eq!(first[1], "64", "the email is replaced by its SHA-256");
    assert!(first[2].ends_with("1001") && first[2].starts_with("****"), "notes masked: {}", first[2]);
    assert_eq!(first[3], "143.07", "the decimal was cast to text");
    assert_eq!((first[4].as_str(), first[5].as_str()), ("warehouse", "1.5"));
    let columns = rows(&dir.path("app.db"), "SELECT name FROM pragma_table_info('customers') ORDER BY cid");
    assert!(!columns.iter().any(|c| c[0] == "email" || c[0] == "updated_at"), "{columns:?}");
}

#[tokio::test]
async fn a_consent_filter_and_a_redacting_mask_build_and_apply() {
    let dir = TestDir::new("build-consent");
    let db = dir.path("warehouse.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TABLE people (id INTEGER PRIMARY KEY, opted_in BOOLEAN NOT NULL, phone TEXT);
         INSERT INTO people VALUES (1, 1, '+44 20 7946 0000'), (2, 0, '+1 555 0100'), (3, 1, NULL);",
    )
    .unwrap();
    let text = format!(
        r#"{STATE}
[sync.people.source]
type = "sqlite"
path = "warehouse.db"
table = "people"
key = ["id"]
column_types = {{ opted_in = "bool" }}

[[sync.people.transform]]
type = "filter"
field = "opted_in"
consent = true

[[sync.people.transform]]
type = "mask"
field = "phone"
text = "hidden"

[sync.people.destination]
type = "sqlite"
path = "app.db"
table = "people"
create_table = true
"#
    );
    let report = run(&dir.load(&text).unwrap(), "people").await;
    assert_eq!((report.counts.applied.insert, report.counts.filtered), (2, 1));
    assert_eq!(
        rows(&dir.path("app.db"), "SELECT id, phone FROM people ORDER BY id"),
        vec![vec!["1".to_owned(), "hidden".to_owned()], vec!["3".to_owned(), "NULL".to_owned()]]
    );
}

/// A sync from `source` (a TOML table body) into a fresh SQLite table.
fn file_sync(source: &str) -> String {
    format!(
        "{STATE}\n[sync.s]\nmode = \"mirror\"\n\n[sync.s.source]\n{source}\n\n[sync.s.destination]\ntype = \"sqlite\"\n\
         path = \"app.db\"\ntable = \"t\"\ncreate_table = true\n"
    )
}

#[tokio::test]
async fn csv_and_json_lines_sources_read_their_files() {
    let dir = TestDir::new("build-files");
    std::fs::write(dir.path("people.csv"), "id;name;score\n1;ada;0.5\n2;grace;0.75\n3;linus;\n").unwrap();
    let csv = file_sync(
        "type = \"csv\"\npath = \"people.csv\"\nkey = [\"id\"]\ndelimiter = \";\"\n\
         schema = [{ name = \"id\", type = \"int\", nullable = false }, { name = \"name\", type = \"string\" }, \
         { name = \"score\", type = \"float\" }]",
    );
    let report = run(&dir.load(&csv).unwrap(), "s").await;
    assert_eq!(report.counts.applied.insert, 3);
    assert_eq!(rows(&dir.path("app.db"), "SELECT id, name FROM t ORDER BY id")[1], vec!["2", "grace"]);

    let dir = TestDir::new("build-jsonl");
    std::fs::write(
        dir.path("people.jsonl"),
        "{\"id\": 1, \"name\": \"ada\"}\nnot json\n{\"id\": 2, \"name\": \"grace\"}\n",
    )
    .unwrap();
    let jsonl = file_sync("type = \"jsonl\"\npath = \"people.jsonl\"\nkey = [\"id\"]\non_malformed = \"reject\"");
    let report = run_once(&dir.load(&jsonl).unwrap(), "s").await;
    assert_eq!((report.status, report.counts.source_rejected), (RunStatus::CompletedWithRejections, 1));
    assert_eq!(report.counts.applied.insert, 2, "the malformed line is left out");
    assert_eq!(rows(&dir.path("app.db"), "SELECT count(*) FROM t"), vec![vec!["2"]]);
}

#[tokio::test]
async fn a_parquet_source_reads_its_file() {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    let dir = TestDir::new("build-parquet");
    let batch = RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from(vec![1, 2, 3, 4])) as ArrayRef),
        ("name", Arc::new(StringArray::from(vec!["ada", "grace", "linus", "ken"])) as ArrayRef),
        ("secret", Arc::new(StringArray::from(vec!["a", "b", "c", "d"])) as ArrayRef),
    ])
    .unwrap();
    let file = std::fs::File::create(dir.path("people.parquet")).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();

    let text = file_sync(
        "type = \"parquet\"\npath = \"people.parquet\"\nkey = [\"id\"]\ncolumns = [\"id\", \"name\"]\nsorted_by_key = true",
    );
    let report = run(&dir.load(&text).unwrap(), "s").await;
    assert_eq!(report.counts.applied.insert, 4);
    let columns = rows(&dir.path("app.db"), "SELECT name FROM pragma_table_info('t') ORDER BY cid");
    assert_eq!(columns, vec![vec!["id"], vec!["name"]], "only the columns asked for are read");
}

#[tokio::test]
async fn postgres_source_destination_and_state_store_build_and_sync() {
    let url = service_url("RSE_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test");
    let (client, connection) = match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        Ok(c) => c,
        Err(e) => return unavailable("PostgreSQL", &url, e),
    };
    tokio::spawn(connection);
    let schema = unique_id("rse_cli_pg");
    client
        .batch_execute(&format!(
            "CREATE SCHEMA \"{schema}\";
             CREATE TABLE \"{schema}\".customers (id bigint PRIMARY KEY, email text NOT NULL, ltv numeric);
             INSERT INTO \"{schema}\".customers SELECT i, 'user' || i || '@example.com', i * 1.25 FROM generate_series(1, 40) i;"
        ))
        .await
        .unwrap();
    let dir = TestDir::new("build-postgres");
    let text = format!(
        r#"[sync.pg]
mode = "mirror"

[sync.pg.source]
type = "postgres"
url = "{url}"
schema = "{schema}"
table = "customers"
key = ["id"]
connect_timeout = "5s"

[sync.pg.destination]
type = "postgres"
url = "{url}"
schema = "{schema}"
table = "crm_customers"
create_table = true
write_timeout = "30s"
connect = {{ connect_timeout = "5s" }}

[sync.pg.state]
type = "postgres"
url = "{url}"
schema = "{schema}_state"
run_retention = 5

[sync.pg_query]
[sync.pg_query.source]
type = "postgres"
url = "{url}"
query = "SELECT id, email FROM \"{schema}\".customers WHERE id <= 10"
key = ["id"]

[sync.pg_query.destination]
type = "sqlite"
path = "app.db"
table = "first_ten"
create_table = true

[sync.pg_query.state]
type = "sqlite"
path = "state.db"
"#
    );
    let file = dir.load(&text).unwrap();
    let report = run(&file, "pg").await;
    assert_eq!(report.counts.applied.insert, 40);
    let n: i64 = client
        .query_one(&format!("SELECT count(*) FROM \"{schema}\".crm_customers WHERE ltv IS NOT NULL"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 40);
    let state = file.require_sync("pg").unwrap().state_store().await.unwrap();
    assert_eq!(state.runs("pg", 10).await.unwrap().len(), 1, "the run is recorded in the PostgreSQL state store");

    assert_eq!(run(&file, "pg_query").await.counts.applied.insert, 10);
    assert_eq!(rows(&dir.path("app.db"), "SELECT count(*) FROM first_ten"), vec![vec!["10"]]);
    client
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE; DROP SCHEMA \"{schema}_state\" CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn http_redis_and_nats_destinations_build_from_their_options() {
    let dir = TestDir::new("build-remote");
    create_warehouse(&dir.path("warehouse.db"), 5);
    let redis = service_url("RSE_REDIS_URL", "redis://127.0.0.1:6379");
    let nats = service_url("RSE_NATS_URL", "nats://127.0.0.1:4222");
    let prefix = unique_id("rse_cli");
    let source = "type = \"sqlite\"\npath = \"warehouse.db\"\ntable = \"customers\"\nkey = [\"id\"]";
    let text = format!(
        r#"{STATE}
[sync.hook.source]
{source}
[sync.hook.destination]
type = "http"
url = "http://127.0.0.1:9/hooks/customers"
check_url = "http://127.0.0.1:9/health"
name = "crm"
bearer_token = "t0ken"
headers = [["X-Api-Key", {{ env = "CARGO_PKG_NAME" }}]]
timeouts = {{ request = "2s", connect = "1s" }}
max_batch_rows = 50

[sync.cache.source]
{source}
[sync.cache.destination]
type = "redis"
url = "{redis}"
key_template = "{prefix}:{{id}}"
ttl = "10m"

[sync.events.source]
{source}
[sync.events.destination]
type = "nats"
url = "{nats}"
subject_template = "{prefix}.customers.{{id}}"
ack_timeout = "5s"
"#
    );
    let file = dir.load(&text).unwrap();
    assert_eq!(file.sync_names(), ["hook", "cache", "events"], "syncs keep the file's order");

    let hook = file.require_sync("hook").unwrap().build().await.unwrap();
    assert_eq!(hook.job.destination().name(), "http:crm");
    let checks = hook.check().await;
    assert_eq!(checks.iter().map(|c| c.part).collect::<Vec<_>>(), ["source", "destination", "state"]);
    assert!(checks[0].result.is_ok() && checks[2].result.is_ok(), "{checks:?}");
    assert!(checks[1].result.is_err(), "nothing listens on port 9: {checks:?}");

    match file.require_sync("cache").unwrap().build().await {
        Ok(cache) => {
            let report = cache.job.run().await.unwrap();
            assert_eq!(report.counts.applied.insert, 5, "{report}");
        }
        Err(e) => unavailable("Redis", &redis, e),
    }
    match file.require_sync("events").unwrap().build().await {
        Ok(events) => assert!(events.job.destination().name().starts_with("nats")),
        Err(e) => unavailable("NATS", &nats, e),
    }
}

#[tokio::test]
async fn check_reports_every_part_of_a_working_sync_as_ok() {
    let dir = TestDir::new("build-check");
    create_warehouse(&dir.path("warehouse.db"), 2);
    let text = file_sync("type = \"sqlite\"\npath = \"warehouse.db\"\ntable = \"customers\"\nkey = [\"id\"]");
    let built = dir.load(&text).unwrap().require_sync("s").unwrap().build().await.unwrap();
    let checks = built.check().await;
    assert!(checks.iter().all(|c| c.result.is_ok()), "{checks:?}");
    assert!(checks[1].name.starts_with("sqlite:") && checks[1].name.ends_with(":t"), "{checks:?}");
    assert!(std::fs::metadata(dir.path("app.db")).is_ok());
    assert_eq!(
        rows(&dir.path("app.db"), "SELECT count(*) FROM sqlite_master WHERE name = 't'"),
        vec![vec!["0"]],
        "check writes nothing"
    );
}

#[tokio::test]
async fn several_syncs_share_the_default_state_store_or_name_their_own() {
    let dir = TestDir::new("build-several");
    create_warehouse(&dir.path("warehouse.db"), 4);
    let source = "type = \"sqlite\"\npath = \"warehouse.db\"\ntable = \"customers\"\nkey = [\"id\"]";
    let text = format!(
        r#"{STATE}
[sync.to_app]
[sync.to_app.source]
{source}
[sync.to_app.destination]
type = "sqlite"
path = "app.db"
table = "customers"
create_table = true

[sync.to_audit]
id = "audit-log"
mode = "append"
[sync.to_audit.source]
{source}
[sync.to_audit.destination]
type = "sqlite"
path = "audit.db"
table = "changes"
kind = "events"
create_table = true
[sync.to_audit.state]
type = "sqlite"
path = "audit-state.db"
run_retention = 3
[sync.to_audit.options]
dry_run = false
batch_rows = 2
"#
    );
    let file = dir.load(&text).unwrap();
    assert_eq!(file.sync_names(), ["to_app", "to_audit"]);
    let audit = file.require_sync("to_audit").unwrap();
    assert_eq!((audit.id(), audit.mode(), audit.destination_type()), ("audit-log", rse::Mode::Append, "sqlite"));
    assert_eq!(run(&file, "to_app").await.counts.applied.insert, 4);
    assert_eq!(run(&file, "to_audit").await.counts.applied.append, 4);
    assert_eq!(rows(&dir.path("audit.db"), "SELECT count(*) FROM changes"), vec![vec!["4"]]);
    // Each sync's runs went to its own store.
    let shared = file.require_sync("to_app").unwrap().state_store().await.unwrap();
    let own = audit.state_store().await.unwrap();
    assert_eq!(shared.runs("to_app", 10).await.unwrap().len(), 1);
    assert!(shared.runs("audit-log", 10).await.unwrap().is_empty());
    assert_eq!(own.runs("audit-log", 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn build_with_changes_the_options_from_the_file() {
    let dir = TestDir::new("build-with");
    create_warehouse(&dir.path("warehouse.db"), 3);
    let text = file_sync("type = \"sqlite\"\npath = \"warehouse.db\"\ntable = \"customers\"\nkey = [\"id\"]");
    let spec_file = dir.load(&text).unwrap();
    let spec = spec_file.require_sync("s").unwrap();
    let built = spec.build_with(|o| o.dry_run = true).await.unwrap();
    let report = built.job.run().await.unwrap();
    assert_eq!(report.counts.planned.insert, 3);
    assert_eq!(
        rows(&dir.path("app.db"), "SELECT count(*) FROM sqlite_master WHERE name = 't'"),
        vec![vec!["0"]],
        "a dry run writes nothing"
    );
}
