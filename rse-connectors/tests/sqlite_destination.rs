//! `SqliteDestination`: the conformance suite, every value type as stored in the file, a
//! mirror sync with a SQLite state store, a refused row, and errors that say what to do.
#![cfg(feature = "sqlite")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rse_connectors::state::SqliteStateStore;
use rse_connectors::{SqliteDestination, SqliteDestinationOptions};
use rse_core::memory::MemorySource;
use rse_core::testing::{DestinationReadback, check_destination, conformance_schema, unique_id};
use rse_core::*;
use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;

/// A fresh directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(unique_id("rse_sqlite_dest"));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn options(table: &str) -> SqliteDestinationOptions {
    SqliteDestinationOptions::new(table).with_create_table(true)
}

fn count(path: &Path, table: &str) -> i64 {
    let conn = Connection::open(path).unwrap();
    let sql = format!("SELECT count(*) FROM \"{}\"", table.replace('"', "\"\""));
    conn.query_row(&sql, [], |r| r.get(0)).unwrap()
}

/// Reads a conformance-schema row back from the file.
struct Readback {
    path: PathBuf,
    table: String,
}

#[async_trait]
impl DestinationReadback for Readback {
    async fn get(&self, _schema: &Schema, key: &Key) -> Result<Option<Record>, BoxError> {
        let id = key.decode()?[0].as_i64().ok_or("int key")?;
        let conn = Connection::open(&self.path)?;
        let sql = format!("SELECT id, name, score, active FROM \"{}\" WHERE id = ?1", self.table);
        let mut stmt = conn.prepare(&sql)?;
        let mut rows = stmt.query([id])?;
        let Some(r) = rows.next()? else { return Ok(None) };
        Ok(Some(Record::new(vec![
            Value::Int(r.get(0)?),
            Value::from(r.get::<_, Option<String>>(1)?),
            Value::from(r.get::<_, Option<f64>>(2)?),
            Value::from(r.get::<_, Option<bool>>(3)?),
        ])))
    }
}

fn changes(schema: &Arc<Schema>, sync_id: &str, items: Vec<(Op, Record, u64)>) -> ChangeBatch {
    let mut fp = Fingerprinter::new(FingerprintAlgorithm::default(), schema);
    let changes = items
        .into_iter()
        .map(|(op, record, version)| {
            let key = record.key(schema).unwrap();
            let fingerprint = fp.fingerprint(&record);
            let idempotency_key = IdempotencyKey::derive(sync_id, &key, op, fingerprint, version);
            Change {
                op,
                key,
                record: (op != Op::Delete).then_some(record),
                fingerprint,
                version,
                idempotency_key,
                memo: None,
            }
        })
        .collect();
    ChangeBatch { sync_id: sync_id.into(), schema: schema.clone(), changes }
}

fn row(id: i64, name: &str, score: f64) -> Record {
    Record::new(vec![Value::Int(id), Value::from(name), Value::Float(score), Value::Bool(id % 2 == 0)])
}

/// Every row of the conformance-schema table, by id.
fn table_rows(path: &Path, table: &str) -> Vec<Record> {
    let conn = Connection::open(path).unwrap();
    let mut stmt = conn.prepare(&format!("SELECT id, name, score, active FROM \"{table}\" ORDER BY id")).unwrap();
    stmt.query_map([], |r| {
        Ok(Record::new(vec![
            Value::Int(r.get(0)?),
            Value::from(r.get::<_, Option<String>>(1)?),
            Value::from(r.get::<_, Option<f64>>(2)?),
            Value::from(r.get::<_, Option<bool>>(3)?),
        ]))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_conformance_suite_directly_and_through_box_and_arc() {
    let dir = TempDir::new();
    let path = dir.file("app.db");
    let readback = Readback { path: path.clone(), table: "customers".into() };
    let dest = SqliteDestination::open(&path, options("customers")).await.unwrap();
    check_destination(&dest, Some(&readback)).await.unwrap();
    let boxed: Box<dyn Destination> = Box::new(SqliteDestination::open(&path, options("customers")).await.unwrap());
    check_destination(boxed.as_ref(), Some(&readback)).await.unwrap();
    let shared: Arc<dyn Destination> = Arc::new(SqliteDestination::open(&path, options("customers")).await.unwrap());
    check_destination(shared.as_ref(), Some(&readback)).await.unwrap();
    // The suite's last write is a full batch of ids 1..=1000.
    assert_eq!(count(&path, "customers"), 1000);
    let caps = dest.capabilities();
    assert_eq!(caps.max_concurrency, 1);
    assert!(caps.transactional);
    assert!(Op::ALL.iter().all(|op| caps.supports(*op)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_events_table_appends_each_change_once() {
    let dir = TempDir::new();
    let path = dir.file("events.db");
    let dest = SqliteDestination::open(&path, SqliteDestinationOptions::events("events").with_create_table(true))
        .await
        .unwrap();
    check_destination(&dest, None).await.unwrap();
    let before = count(&path, "events");
    assert!(before > 0);

    let schema = conformance_schema();
    let batch = changes(
        &schema,
        "ev",
        vec![(Op::Append, row(1, "a", 1.0), 0), (Op::Update, row(2, "b", 2.0), 3), (Op::Delete, row(3, "", 0.0), 1)],
    );
    assert_eq!(dest.write(&batch).await.unwrap(), WriteOutcome::all_applied(3));
    // The batch again (its acknowledgement was lost): recognised by idempotency key.
    assert_eq!(dest.write(&batch).await.unwrap(), WriteOutcome::all_applied(3));
    assert_eq!(count(&path, "events"), before + 3);

    let conn = Connection::open(&path).unwrap();
    let mut stmt = conn
        .prepare("SELECT _rse_op, id, name FROM events WHERE _rse_id > (SELECT max(_rse_id) - 3 FROM events) ORDER BY _rse_id")
        .unwrap();
    let got: Vec<(String, i64, Option<String>)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
    assert_eq!(
        got,
        vec![
            ("append".into(), 1, Some("a".into())),
            ("update".into(), 2, Some("b".into())),
            ("delete".into(), 3, None)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_value_type_lands_in_its_stored_form() {
    let dir = TempDir::new();
    let path = dir.file("types.db");
    // Awkward identifiers: a reserved word, a quote, mixed case and a space.
    let schema = Schema::new(
        vec![
            Field::required("select", DataType::String),
            Field::new("Mixed \"Case\"", DataType::Int),
            Field::new("price", DataType::Decimal),
            Field::new("blob", DataType::Bytes),
            Field::new("day", DataType::Date),
            Field::new("at", DataType::Timestamp),
            Field::new("doc", DataType::Json),
            Field::new("tags", DataType::List(Box::new(DataType::String))),
            Field::new("ok", DataType::Bool),
            Field::new("ratio", DataType::Float),
            Field::new("missing", DataType::String),
        ],
        &["select"],
    )
    .unwrap()
    .into_arc();
    let record = Record::new(vec![
        Value::from("k'; DROP TABLE x; --"),
        Value::Int(-42),
        Value::Decimal(Decimal::parse("12345678901234567890.123456789").unwrap()),
        Value::Bytes(bytes::Bytes::from_static(b"\x00\x01\xff")),
        Value::Date(19_783),
        Value::Timestamp(1_714_564_800_000_001),
        Value::Json(serde_json::json!({"b": [1, 2.0], "a": null})),
        Value::List(vec![Value::from("x"), Value::from("y")]),
        Value::Bool(true),
        Value::Float(0.1),
        Value::Null,
    ]);
    let table = "odd \"table\"";
    let dest = SqliteDestination::open(&path, options(table)).await.unwrap();
    let out = dest.write(&changes(&schema, "types", vec![(Op::Insert, record, 0)])).await.unwrap();
    assert_eq!(out, WriteOutcome::all_applied(1));

    let conn = Connection::open(&path).unwrap();
    let got: Vec<SqlValue> = conn
        .query_row("SELECT * FROM \"odd \"\"table\"\"\"", [], |r| (0..11).map(|i| r.get::<_, SqlValue>(i)).collect())
        .unwrap();
    assert_eq!(
        got,
        vec![
            SqlValue::Text("k'; DROP TABLE x; --".into()),
            SqlValue::Integer(-42),
            SqlValue::Text("12345678901234567890.123456789".into()),
            SqlValue::Blob(vec![0, 1, 255]),
            SqlValue::Text("2024-03-01".into()),
            SqlValue::Text("2024-05-01T12:00:00.000001Z".into()),
            SqlValue::Text(r#"{"a":null,"b":[1,2]}"#.into()),
            SqlValue::Text(r#"["x","y"]"#.into()),
            SqlValue::Integer(1),
            SqlValue::Real(0.1),
            SqlValue::Null,
        ]
    );
    // Declared types that keep values exact and read back with their rse type.
    let declared: Vec<String> = conn
        .prepare("SELECT type FROM pragma_table_info(?1) ORDER BY cid")
        .unwrap()
        .query_map([table], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        declared,
        [
            "TEXT",
            "INTEGER",
            "DECIMAL TEXT",
            "BLOB",
            "DATE",
            "TIMESTAMP TEXT",
            "JSON TEXT",
            "JSON TEXT",
            "BOOLEAN",
            "REAL",
            "TEXT"
        ]
    );

    // A value of the wrong type is rejected before any SQL; the rest of the batch lands.
    let mut bad = vec![Value::Null; 11];
    bad[0] = Value::from("bad");
    bad[1] = Value::from("not an int");
    let mut good = vec![Value::Null; 11];
    good[0] = Value::from("good");
    let out = dest
        .write(&changes(&schema, "types", vec![(Op::Insert, Record::new(bad), 0), (Op::Insert, Record::new(good), 0)]))
        .await
        .unwrap();
    assert!(
        matches!(&out.outcomes[0], ChangeOutcome::Rejected { reason, .. } if reason.contains("Mixed") && reason.contains("string") && !reason.contains("not an int")),
        "{out:?}"
    );
    assert_eq!(out.outcomes[1], ChangeOutcome::Applied);
    assert_eq!(count(&path, table), 2);

    // A delete by a key of every awkward kind finds its row.
    let delete = changes(&schema, "types", vec![(Op::Delete, Record::new(vec![Value::from("good"); 11]), 1)]);
    assert_eq!(dest.write(&delete).await.unwrap(), WriteOutcome::all_applied(1));
    assert_eq!(count(&path, table), 1);
}

/// NaN, ±infinity and bytes inside a list keep their values: the same texts as the
/// PostgreSQL destination's lists, which SQLite's own functions turn back into values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_finite_floats_and_bytes_in_lists_keep_their_values() {
    let dir = TempDir::new();
    let path = dir.file("lists.db");
    let schema = Schema::new(
        vec![
            Field::required("id", DataType::Int),
            Field::new("ratios", DataType::List(Box::new(DataType::Float))),
            Field::new("blobs", DataType::List(Box::new(DataType::Bytes))),
            Field::new("nested", DataType::List(Box::new(DataType::List(Box::new(DataType::Float))))),
        ],
        &["id"],
    )
    .unwrap()
    .into_arc();
    let record = Record::new(vec![
        Value::Int(1),
        Value::List(vec![
            Value::Float(f64::NAN),
            Value::Float(f64::INFINITY),
            Value::Float(f64::NEG_INFINITY),
            Value::Float(1.5),
            Value::Null,
        ]),
        Value::List(vec![Value::Bytes(bytes::Bytes::from_static(b"\x00\x01\xff")), Value::Bytes(bytes::Bytes::new())]),
        Value::List(vec![Value::List(vec![Value::Float(f64::NEG_INFINITY)])]),
    ]);
    let dest = SqliteDestination::open(&path, options("lists")).await.unwrap();
    let out = dest.write(&changes(&schema, "lists", vec![(Op::Insert, record, 0)])).await.unwrap();
    assert_eq!(out, WriteOutcome::all_applied(1));

    let conn = Connection::open(&path).unwrap();
    let stored: (String, String, String) = conn
        .query_row("SELECT ratios, blobs, nested FROM lists", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap();
    assert_eq!(
        stored,
        (
            r#"["NaN","Infinity","-Infinity",1.5,null]"#.to_owned(),
            r#"["\\x0001ff","\\x"]"#.to_owned(),
            r#"[["-Infinity"]]"#.to_owned()
        )
    );
    // SQLite gives the bytes back with `unhex`.
    let blob: Vec<u8> = conn.query_row("SELECT unhex(substr(blobs ->> 0, 3)) FROM lists", [], |r| r.get(0)).unwrap();
    assert_eq!(blob, [0, 1, 255]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_sync_with_sqlite_state_sends_only_changes() {
    let dir = TempDir::new();
    let app = dir.file("app.db");
    let schema = conformance_schema();
    let source = MemorySource::new(schema.clone(), (1..=300).map(|i| row(i, &format!("n{i}"), i as f64)).collect());
    let sync_id = unique_id("mirror");
    let build = || async {
        SyncJob::builder(sync_id.clone())
            .source(source.clone())
            .destination(SqliteDestination::open(&app, options("customers")).await.unwrap())
            .state(SqliteStateStore::open(dir.file("state.db")).await.unwrap())
            .mode(Mode::Mirror)
            .options(SyncOptions::default().with_batch_rows(100).with_linger(Duration::from_millis(5)))
            .build()
            .await
            .unwrap()
    };
    let first = build().await.run().await.unwrap();
    assert_eq!(first.status, RunStatus::Succeeded, "{first}");
    assert_eq!(first.counts.applied.insert, 300, "{first}");
    assert_eq!(table_rows(&app, "customers"), source.rows());

    source.upsert(row(7, "changed", 0.5));
    source.upsert(row(8, "changed too", 0.25));
    source.remove(&Key::from_values(&[Value::Int(9)]));
    source.upsert(row(301, "new", 1.0));
    // A new process: the destination and the state store are opened again.
    let second = build().await.run().await.unwrap();
    assert_eq!(second.status, RunStatus::Succeeded, "{second}");
    assert_eq!(
        (second.counts.applied.insert, second.counts.applied.update, second.counts.applied.delete),
        (1, 2, 1),
        "{second}"
    );
    let mut want = source.rows();
    want.sort_by(|a, b| a.values[0].total_cmp(&b.values[0]));
    assert_eq!(table_rows(&app, "customers"), want);

    let third = build().await.run().await.unwrap();
    assert_eq!(third.counts.applied.insert + third.counts.applied.update + third.counts.applied.delete, 0, "{third}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_constraint_refuses_one_row_and_the_rest_is_applied() {
    let dir = TempDir::new();
    let app = dir.file("app.db");
    Connection::open(&app)
        .unwrap()
        .execute_batch(
            "CREATE TABLE scores (id INTEGER PRIMARY KEY, name TEXT, score REAL CONSTRAINT score_positive CHECK (score >= 0), active BOOLEAN)",
        )
        .unwrap();
    let schema = conformance_schema();
    let mut rows: Vec<Record> = (1..=50).map(|i| row(i, &format!("n{i}"), i as f64)).collect();
    rows[16] = row(17, "negative", -1.0);
    let source = MemorySource::new(schema.clone(), rows);
    let dest = SqliteDestination::open(&app, SqliteDestinationOptions::new("scores")).await.unwrap();
    let sync = SyncJob::builder(unique_id("check"))
        .source(source.clone())
        .destination(dest)
        .state(SqliteStateStore::open(dir.file("state.db")).await.unwrap())
        .mode(Mode::Mirror)
        .build()
        .await
        .unwrap();
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.applied.insert, 49, "{report}");
    assert_eq!(report.counts.rejected.insert, 1, "{report}");
    assert!(report.rejections[0].reason.contains("score_positive"), "{report}");
    assert_eq!(count(&app, "scores"), 49);
    assert!(table_rows(&app, "scores").iter().all(|r| r.values[0] != Value::Int(17)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_classified_and_say_what_to_do() {
    let dir = TempDir::new();
    let schema = conformance_schema();
    let one = || changes(&schema, "x", vec![(Op::Insert, row(1, "a", 1.0), 0)]);

    // No table, and not asked to create it.
    let plain = SqliteDestination::open(dir.file("app.db"), SqliteDestinationOptions::new("nowhere")).await.unwrap();
    plain.check().await.unwrap();
    match plain.write(&one()).await {
        Err(DestinationError::Fatal { message, .. }) => assert!(message.contains("with_create_table"), "{message}"),
        other => panic!("a missing table is fatal with a hint, got {other:?}"),
    }

    // Another connection holds the write lock: transient, retried by the runner.
    let locked = dir.file("locked.db");
    let dest =
        SqliteDestination::open(&locked, options("t").with_busy_timeout(Duration::from_millis(50))).await.unwrap();
    dest.write(&one()).await.unwrap();
    let holder = Connection::open(&locked).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE; INSERT INTO t (id) VALUES (100);").unwrap();
    assert!(matches!(dest.write(&one()).await, Err(DestinationError::Transient { .. })));
    holder.execute_batch("COMMIT").unwrap();
    assert_eq!(dest.write(&one()).await.unwrap(), WriteOutcome::all_applied(1));

    // A file that is not a database.
    let garbage = dir.file("garbage.db");
    std::fs::write(&garbage, vec![b'x'; 4096]).unwrap();
    match SqliteDestination::open(&garbage, options("t")).await {
        Err(DestinationError::Fatal { message, .. }) => {
            assert!(message.contains("not a SQLite database") && message.contains("backup"), "{message}")
        }
        other => panic!("a corrupt file is fatal with a hint, got {other:?}"),
    }

    // A directory that does not exist.
    match SqliteDestination::open(dir.file("no/such/dir/app.db"), options("t")).await {
        Err(DestinationError::Fatal { message, .. }) => assert!(message.contains("directory"), "{message}"),
        other => panic!("a missing directory is fatal with a hint, got {other:?}"),
    }

    // A file opened read-only (permissions do not stop root, so use SQLite's read-only open
    // through a URI on a file the destination did not create).
    let ro = dir.file("ro.db");
    Connection::open(&ro).unwrap().execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY)").unwrap();
    let uri = format!("file:{}?mode=ro", ro.display());
    let failed = match SqliteDestination::open(&uri, SqliteDestinationOptions::new("t")).await {
        Ok(dest) => dest.check().await.err(),
        Err(e) => Some(e),
    };
    match failed {
        Some(DestinationError::Fatal { message, .. }) => {
            assert!(message.contains("read-only") && message.contains("writable"), "{message}")
        }
        other => panic!("a read-only file is fatal with a hint, got {other:?}"),
    }
}

/// The options are data: read from configuration, they open the table they describe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_read_from_configuration_write_the_table_they_describe() {
    let text =
        r#"{"table": "log", "kind": "events", "create_table": true, "busy_timeout": "2s", "max_batch_rows": 100}"#;
    let options: SqliteDestinationOptions = serde_json::from_str(text).unwrap();
    let expected = SqliteDestinationOptions::events("log")
        .with_create_table(true)
        .with_busy_timeout(Duration::from_secs(2))
        .with_max_batch_rows(100);
    assert_eq!(options, expected);
    let json = serde_json::to_value(&options).unwrap();
    assert_eq!(json["busy_timeout"], "2s", "{json}");
    assert_eq!(serde_json::from_value::<SqliteDestinationOptions>(json).unwrap(), options);
    let minimal: SqliteDestinationOptions = serde_json::from_str(r#"{"table": "t"}"#).unwrap();
    assert_eq!(minimal, SqliteDestinationOptions::new("t"));
    for (text, refused) in [
        (r#"{"table": "t", "create": true}"#, "unknown field `create`"),
        (r#"{"table": "t", "kind": "ledger"}"#, "unknown variant `ledger`"),
        (r#"{"kind": "events"}"#, "missing field `table`"),
    ] {
        let error = serde_json::from_str::<SqliteDestinationOptions>(text).unwrap_err().to_string();
        assert!(error.contains(refused), "{text}: {error}");
    }

    let dir = TempDir::new();
    let path = dir.file("app.db");
    let dest = SqliteDestination::open(&path, options).await.unwrap();
    let schema = conformance_schema();
    let batch = changes(&schema, "cfg", vec![(Op::Insert, row(1, "a", 1.0), 0), (Op::Insert, row(1, "b", 2.0), 1)]);
    assert_eq!(dest.write(&batch).await.unwrap(), WriteOutcome::all_applied(2));
    assert_eq!(count(&path, "log"), 2, "an events table keeps both changes of one key");
}
