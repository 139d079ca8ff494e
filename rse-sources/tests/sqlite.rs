//! SqliteSource against real SQLite database files: the conformance suite and type mapping.
#![cfg(feature = "sqlite")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use futures::StreamExt;
use rse_core::testing::{
    check_empty_source, check_missing_column, check_missing_model, check_null_key, check_source, source_fixture,
    unique_id,
};
use rse_core::{DataType, Decimal, ReadRequest, Record, Source, SourceError, Value};
use rse_sources::Model;
use rse_sources::sqlite::SqliteSource;
use rusqlite::Connection;

/// A fresh database file, removed when dropped.
struct Db(PathBuf);

impl Db {
    fn new(setup: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{}.db", unique_id("rse_sqlite_source")));
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(setup).unwrap();
        Db(path)
    }

    fn conn(&self) -> Connection {
        Connection::open(&self.0).unwrap()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn to_sql(v: &Value) -> rusqlite::types::Value {
    match v {
        Value::Null => rusqlite::types::Value::Null,
        Value::Int(i) => (*i).into(),
        Value::Float(f) => (*f).into(),
        Value::String(s) => s.clone().into(),
        other => panic!("fixture value of type {} not expected", other.type_name()),
    }
}

fn fixture_db() -> Db {
    let db = Db::new(
        "CREATE TABLE model (region TEXT, id INTEGER, name TEXT, score REAL, updated_at INTEGER);
         CREATE VIEW model_view AS SELECT * FROM model;",
    );
    let conn = db.conn();
    for r in source_fixture().rows {
        let params: Vec<rusqlite::types::Value> = r.values.iter().map(to_sql).collect();
        conn.execute("INSERT INTO model VALUES (?1, ?2, ?3, ?4, ?5)", rusqlite::params_from_iter(params)).unwrap();
    }
    db
}

async fn read_all(source: &dyn Source, request: ReadRequest) -> Result<Vec<Record>, SourceError> {
    let mut stream = source.read(request).await?;
    let mut out = Vec::new();
    while let Some(batch) = stream.next().await {
        out.extend(batch?.records);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_views_and_queries_pass_the_conformance_suite() {
    let db = fixture_db();
    let fixture = source_fixture();
    for model in [Model::table("model"), Model::table("model_view"), Model::query("SELECT * FROM model WHERE id > 0")] {
        let source = SqliteSource::new(&db.0, model.clone()).with_key(["region", "id"]).with_cursor("updated_at");
        check_source(&source, &fixture).await.unwrap_or_else(|e| panic!("{model:?}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_table_reads_as_no_rows() {
    let db = Db::new("CREATE TABLE empty (id INTEGER, updated_at INTEGER)");
    let source = SqliteSource::new(&db.0, Model::table("empty")).with_key(["id"]).with_cursor("updated_at");
    check_empty_source(&source).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_tables_files_and_columns_are_named() {
    let db = fixture_db();
    let source = SqliteSource::new(&db.0, Model::table("no_such_model")).with_key(["id"]);
    check_missing_model(&source, "no_such_model").await.unwrap();
    let missing_file = std::env::temp_dir().join(format!("{}.db", unique_id("rse_missing")));
    let source = SqliteSource::new(&missing_file, Model::table("model")).with_key(["id"]);
    check_missing_model(&source, &missing_file.display().to_string()).await.unwrap();
    assert!(!missing_file.exists(), "reading must never create the database");
    let source = SqliteSource::new(&db.0, Model::table("model")).with_key(["region", "customer_id"]);
    check_missing_column(&source, "customer_id").await.unwrap();
    let source = SqliteSource::new(&db.0, Model::table("model")).with_key(["id"]).with_cursor("modified");
    check_missing_column(&source, "modified").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_null_key_is_passed_through_first_in_key_order() {
    let db = Db::new(
        "CREATE TABLE t (id INTEGER, name TEXT);
         INSERT INTO t VALUES (3, 'c'), (NULL, 'n'), (1, 'a'), (2, 'b');",
    );
    let source = SqliteSource::new(&db.0, Model::table("t")).with_key(["id"]);
    check_null_key(&source, "id", 4).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_types_map_exactly() {
    let db = Db::new(
        r#"CREATE TABLE typed (
             id INTEGER PRIMARY KEY, flag BOOLEAN, day DATE, at DATETIME, doc JSON,
             price TEXT, amount NUMERIC(10, 2), payload BLOB, ratio DOUBLE PRECISION, label VARCHAR(20));
           INSERT INTO typed VALUES
             (1, 1, '2024-02-29', '2024-06-01T12:30:00.25+02:00', '{"b": [1, 2], "a": null}',
              '12345678901234567890.125', 12, x'00ff10', 0.5, 'x'),
             (2, 0, NULL, 0, '3', '-0.10', 2.5, 'text', 3, NULL);"#,
    );
    let source =
        SqliteSource::new(&db.0, Model::table("typed")).with_key(["id"]).with_column_type("price", DataType::Decimal);
    let schema = source.schema().await.unwrap();
    let types: Vec<_> = schema.fields().iter().map(|f| f.data_type.clone()).collect();
    assert_eq!(
        types,
        [
            DataType::Int,
            DataType::Bool,
            DataType::Date,
            DataType::Timestamp,
            DataType::Json,
            DataType::Decimal,
            DataType::Decimal,
            DataType::Bytes,
            DataType::Float,
            DataType::String
        ]
    );
    let rows = read_all(&source, ReadRequest::full().with_order_by_key(true)).await.unwrap();
    let dec = |s: &str| Value::Decimal(Decimal::parse(s).unwrap());
    assert_eq!(
        rows[0].values,
        vec![
            Value::Int(1),
            Value::Bool(true),
            Value::Date(19_782),
            Value::Timestamp(1_717_237_800_250_000),
            Value::Json(serde_json::json!({"a": null, "b": [1, 2]})),
            dec("12345678901234567890.125"),
            dec("12"),
            Value::Bytes(vec![0, 255, 16].into()),
            Value::Float(0.5),
            Value::from("x"),
        ]
    );
    assert_eq!(
        rows[1].values,
        vec![
            Value::Int(2),
            Value::Bool(false),
            Value::Null,
            Value::Timestamp(0),
            Value::Json(serde_json::json!(3)),
            dec("-0.1"),
            dec("2.5"),
            Value::Bytes(b"text".to_vec().into()),
            Value::Float(3.0),
            Value::Null,
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_that_does_not_fit_its_declared_type_names_column_and_row() {
    let db = Db::new(
        "CREATE TABLE t (id INTEGER, score REAL);
         INSERT INTO t VALUES (1, 1.5), (2, 'secret-value');",
    );
    let source = SqliteSource::new(&db.0, Model::table("t")).with_key(["id"]);
    let err = read_all(&source, ReadRequest::full().with_order_by_key(true)).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, SourceError::Malformed { .. }), "{err:?}");
    assert!(text.contains("`score`") && text.contains("row 2"), "{text}");
    assert!(!text.contains("secret-value"), "errors never show values: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expression_column_needs_a_declared_type() {
    let db = fixture_db();
    let query = Model::query("SELECT id, upper(name) AS shout FROM model");
    let source = SqliteSource::new(&db.0, query.clone()).with_key(["id"]);
    let err = source.schema().await.unwrap_err();
    assert!(matches!(&err, SourceError::UnsupportedType { column, .. } if column == "shout"), "{err:?}");
    let source = SqliteSource::new(&db.0, query).with_key(["id"]).with_column_type("shout", DataType::String);
    let rows = read_all(&source, ReadRequest::full().with_order_by_key(true)).await.unwrap();
    assert_eq!(rows.len(), source_fixture().rows.len());
    assert_eq!(rows[0].values, vec![Value::Int(1), Value::from("ONE")]);
}
