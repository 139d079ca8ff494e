//! `PostgresDestination` against the real PostgreSQL server (RSE_POSTGRES_URL).
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rse_connectors::state::PostgresStateStore;
use rse_connectors::{PostgresDestination, PostgresDestinationOptions};
use rse_core::memory::{MemorySource, MemoryStateStore};
use rse_core::testing::{
    ChangeBatchBuilder, DestinationReadback, check_destination, check_transactional_state, conformance_schema,
    unique_id,
};
use rse_core::*;
use tokio_postgres::{Client, NoTls};

#[path = "support/pg.rs"]
mod pg;
use pg::url;

/// A connection and a fresh schema, dropped at the end of the test.
struct Db {
    client: Client,
    schema: String,
}

impl Db {
    async fn new() -> Option<Db> {
        let (client, schema) = pg::fresh_schema("rse_dest").await?;
        Some(Db { client, schema })
    }

    fn options(&self, table: &str) -> PostgresDestinationOptions {
        PostgresDestinationOptions::new(table).with_schema(&self.schema).with_create_table(true)
    }

    fn dest(&self, options: PostgresDestinationOptions) -> PostgresDestination {
        PostgresDestination::new(&url(), options).unwrap()
    }

    async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM \"{}\".\"{}\"", self.schema, table.replace('"', "\"\""));
        self.client.query_one(&sql, &[]).await.unwrap().get(0)
    }

    async fn drop(self) {
        let _ = self.client.batch_execute(&format!("DROP SCHEMA \"{}\" CASCADE", self.schema)).await;
    }
}

/// Reads a conformance-schema row back.
struct Readback<'a> {
    db: &'a Db,
    table: &'a str,
}

#[async_trait]
impl DestinationReadback for Readback<'_> {
    async fn get(&self, _schema: &Schema, key: &Key) -> Result<Option<Record>, BoxError> {
        let id = key.decode()?[0].as_i64().ok_or("int key")?;
        let sql =
            format!("SELECT id, name, score, active FROM \"{}\".\"{}\" WHERE id = $1", self.db.schema, self.table);
        let row = self.db.client.query_opt(&sql, &[&id]).await?;
        Ok(row.map(|r| {
            Record::new(vec![
                Value::Int(r.get(0)),
                Value::from(r.get::<_, Option<String>>(1)),
                Value::from(r.get::<_, Option<f64>>(2)),
                Value::from(r.get::<_, Option<bool>>(3)),
            ])
        }))
    }
}

fn changes(schema: &Arc<Schema>, sync_id: &str, items: Vec<(Op, Record, u64)>) -> ChangeBatch {
    items
        .into_iter()
        .fold(ChangeBatchBuilder::new(schema, sync_id), |b, (op, record, version)| b.versioned(op, record, version))
        .build()
}

fn row(id: i64, name: &str, score: f64) -> Record {
    Record::new(vec![Value::Int(id), Value::from(name), Value::Float(score), Value::Bool(true)])
}

async fn name_of(db: &Db, table: &str, id: i64) -> Option<String> {
    let sql = format!("SELECT name FROM \"{}\".\"{table}\" WHERE id = $1", db.schema);
    db.client.query_opt(&sql, &[&id]).await.unwrap().map(|r| r.get(0))
}

#[tokio::test]
async fn passes_the_conformance_suite_plain_and_with_the_ledger() {
    let Some(db) = Db::new().await else { return };
    for (table, ledger) in [("plain", false), ("ledger", true)] {
        let dest = db.dest(db.options(table).with_idempotency_ledger(ledger));
        let readback = Readback { db: &db, table };
        check_destination(&dest, Some(&readback)).await.unwrap_or_else(|e| panic!("{table}: {e}"));
        let boxed: Box<dyn Destination> = Box::new(db.dest(db.options(table).with_idempotency_ledger(ledger)));
        check_destination(boxed.as_ref(), Some(&readback)).await.unwrap();
        let shared: Arc<dyn Destination> = Arc::new(db.dest(db.options(table).with_idempotency_ledger(ledger)));
        check_destination(shared.as_ref(), Some(&readback)).await.unwrap();
        assert!(db.count(table).await > 0);
    }
    db.drop().await;
}

#[tokio::test]
async fn every_value_type_lands_in_its_postgres_type() {
    let Some(db) = Db::new().await else { return };
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
        Value::Json(serde_json::json!({"b": [1, 2], "a": null})),
        Value::List(vec![Value::from("x"), Value::from("y")]),
        Value::Null,
        Value::Float(0.1),
    ]);
    let table = "odd \"table\"";
    let dest = db.dest(db.options(table));
    let out = dest.write(&changes(&schema, "types", vec![(Op::Insert, record, 0)])).await.unwrap();
    assert_eq!(out, WriteOutcome::all_applied(1));
    let sql = format!(
        "SELECT \"select\", \"Mixed \"\"Case\"\"\", price::text, blob, day::text, \
         (at AT TIME ZONE 'UTC')::text, doc::text, tags::text, ok, ratio FROM \"{}\".\"odd \"\"table\"\"\"",
        db.schema
    );
    let r = db.client.query_one(&sql, &[]).await.unwrap();
    assert_eq!(r.get::<_, String>(0), "k'; DROP TABLE x; --");
    assert_eq!(r.get::<_, i64>(1), -42);
    assert_eq!(r.get::<_, String>(2), "12345678901234567890.123456789");
    assert_eq!(r.get::<_, Vec<u8>>(3), vec![0, 1, 255]);
    assert_eq!(r.get::<_, String>(4), "2024-03-01");
    assert_eq!(r.get::<_, String>(5), "2024-05-01 12:00:00.000001");
    assert_eq!(r.get::<_, String>(6), r#"{"a": null, "b": [1, 2]}"#);
    assert_eq!(r.get::<_, String>(7), r#"["x", "y"]"#);
    assert_eq!(r.get::<_, Option<bool>>(8), None);
    assert_eq!(r.get::<_, f64>(9), 0.1);

    // A value of the wrong type is rejected before any SQL; the rest of the batch lands.
    let bad = Record::new(vec![
        Value::from("bad"),
        Value::from("not an int"),
        Value::Null,
        Value::Null,
        Value::Null,
        Value::Null,
        Value::Null,
        Value::Null,
        Value::Null,
        Value::Null,
    ]);
    let good = Record::new(vec![
        Value::from("good"),
        Value::Int(1),
        Value::Null,
        Value::Null,
        Value::Null,
        Value::Null,
        Value::Null,
        Value::Null,
        Value::Null,
        Value::Null,
    ]);
    let out = dest.write(&changes(&schema, "types", vec![(Op::Insert, bad, 0), (Op::Insert, good, 0)])).await.unwrap();
    assert!(
        matches!(&out.outcomes[0], ChangeOutcome::Rejected { reason, .. } if reason.contains("Mixed") && reason.contains("string"))
    );
    assert_eq!(out.outcomes[1], ChangeOutcome::Applied);
    assert_eq!(db.count(table).await, 2);
    db.drop().await;
}

#[tokio::test]
async fn the_version_guard_never_lets_an_older_change_roll_a_row_back() {
    let Some(db) = Db::new().await else { return };
    let schema = conformance_schema();
    let dest = db.dest(db.options("guarded").with_version_guard(true));
    dest.write(&changes(&schema, "g", vec![(Op::Update, row(1, "v5", 1.0), 5), (Op::Update, row(2, "v5", 1.0), 5)]))
        .await
        .unwrap();
    // A late retry of older changes, from a runner that lost its lease: reported as
    // superseded, not as applied; the new row and the delete of a missing key beside them
    // are applied.
    let late = changes(
        &schema,
        "g",
        vec![
            (Op::Update, row(1, "v3", 1.0), 3),
            (Op::Delete, row(2, "", 0.0), 4),
            (Op::Update, row(3, "v0", 1.0), 0),
            (Op::Delete, row(9, "", 0.0), 0),
        ],
    );
    let outcomes = dest.write(&late).await.unwrap().outcomes;
    assert!(matches!(&outcomes[0], ChangeOutcome::Superseded { reason } if reason.contains('5')), "{outcomes:?}");
    assert!(matches!(&outcomes[1], ChangeOutcome::Superseded { .. }), "{outcomes:?}");
    assert_eq!(outcomes[2..], [ChangeOutcome::Applied, ChangeOutcome::Applied]);
    assert_eq!(name_of(&db, "guarded", 1).await.as_deref(), Some("v5"));
    assert_eq!(name_of(&db, "guarded", 2).await.as_deref(), Some("v5"), "an older delete removed a newer row");
    // Newer changes still apply.
    dest.write(&changes(&schema, "g", vec![(Op::Update, row(1, "v6", 1.0), 6), (Op::Delete, row(2, "", 0.0), 6)]))
        .await
        .unwrap();
    assert_eq!(name_of(&db, "guarded", 1).await.as_deref(), Some("v6"));
    assert_eq!(name_of(&db, "guarded", 2).await, None);
    db.drop().await;
}

#[tokio::test]
async fn the_ledger_recognises_a_resent_batch_and_commits_rows_and_record_together() {
    let Some(db) = Db::new().await else { return };
    let schema = conformance_schema();
    let dest = db.dest(db.options("eo").with_idempotency_ledger(true));
    let batch =
        changes(&schema, "eo-sync", vec![(Op::Insert, row(1, "first", 1.0), 0), (Op::Insert, row(2, "first", 1.0), 0)]);
    assert_eq!(dest.write(&batch).await.unwrap(), WriteOutcome::all_applied(2));
    // Someone edits a row by hand; then the batch arrives again (its acknowledgement was lost).
    let edit = format!("UPDATE \"{}\".eo SET name = 'edited' WHERE id = 1", db.schema);
    db.client.batch_execute(&edit).await.unwrap();
    assert_eq!(dest.write(&batch).await.unwrap(), WriteOutcome::all_applied(2));
    assert_eq!(name_of(&db, "eo", 1).await.as_deref(), Some("edited"), "the re-sent change was applied a second time");
    // The same re-send without the ledger overwrites the edit: the ledger is what prevents it.
    let plain = db.dest(db.options("eo"));
    plain.write(&batch).await.unwrap();
    assert_eq!(name_of(&db, "eo", 1).await.as_deref(), Some("first"));

    let sql = format!("SELECT count(*) FROM \"{}\"._rse_applied WHERE sync_id = 'eo-sync'", db.schema);
    assert_eq!(db.client.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0), 2);

    // A batch that fails inside the transaction leaves neither rows nor records.
    let check = format!("ALTER TABLE \"{}\".eo ADD CONSTRAINT score_positive CHECK (score >= 0)", db.schema);
    db.client.batch_execute(&check).await.unwrap();
    let failing = changes(
        &schema,
        "eo-sync",
        vec![(Op::Insert, row(10, "ok", 1.0), 0), (Op::Insert, row(11, "negative", -1.0), 0)],
    );
    match dest.write(&failing).await {
        Err(DestinationError::InvalidBatch { message }) => assert!(message.contains("score_positive"), "{message}"),
        other => panic!("a CHECK violation should be InvalidBatch, got {other:?}"),
    }
    assert_eq!(name_of(&db, "eo", 10).await, None, "rows of a failed batch were committed");
    assert_eq!(
        db.client.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0),
        2,
        "records of a failed batch were committed"
    );
    db.drop().await;
}

#[tokio::test]
async fn the_runner_mirrors_a_model_and_bisects_to_the_refused_row() {
    let Some(db) = Db::new().await else { return };
    let schema = conformance_schema();
    let dest = db.dest(db.options("mirror").with_idempotency_ledger(true));
    dest.check().await.unwrap();
    let rows: Vec<Record> = (1..=200).map(|i| row(i, &format!("n{i}"), i as f64)).collect();
    let source = MemorySource::new(schema.clone(), rows);
    let state = MemoryStateStore::new();
    let sync = SyncJob::builder(unique_id("mirror"))
        .source(source.clone())
        .destination(dest)
        .state(state.clone())
        .mode(Mode::Mirror)
        .options(SyncOptions::default().with_batch_rows(50).with_linger(Duration::from_millis(5)))
        .build()
        .await
        .unwrap();
    let first = sync.run().await.unwrap();
    assert_eq!(first.counts.applied.insert, 200, "{first}");
    assert_eq!(db.count("mirror").await, 200);

    let check = format!("ALTER TABLE \"{}\".mirror ADD CONSTRAINT not_77 CHECK (name <> 'changed 77')", db.schema);
    db.client.batch_execute(&check).await.unwrap();
    source.upsert(row(77, "changed 77", 1.0));
    source.upsert(row(5, "changed 5", 1.0));
    source.remove(&Key::from_values(&[Value::Int(9)]));
    let second = sync.run().await.unwrap();
    assert_eq!(second.counts.applied.update, 1, "{second}");
    assert_eq!(second.counts.applied.delete, 1, "{second}");
    assert_eq!(second.counts.rejected.update, 1, "{second}");
    assert!(second.rejections[0].reason.contains("not_77"), "{second}");
    assert_eq!(name_of(&db, "mirror", 5).await.as_deref(), Some("changed 5"));
    assert_eq!(name_of(&db, "mirror", 9).await, None);
    assert_eq!(name_of(&db, "mirror", 77).await.as_deref(), Some("n77"));
    db.drop().await;
}

#[tokio::test]
async fn failures_are_classified() {
    let Some(db) = Db::new().await else { return };
    let missing = db.dest(PostgresDestinationOptions::new("nowhere").with_schema(&db.schema));
    let schema = conformance_schema();
    match missing.write(&changes(&schema, "x", vec![(Op::Insert, row(1, "a", 1.0), 0)])).await {
        Err(DestinationError::Fatal { message, .. }) => assert!(message.contains("with_create_table"), "{message}"),
        other => panic!("a missing table is fatal with a hint, got {other:?}"),
    }
    let closed =
        PostgresDestination::new("postgres://postgres@127.0.0.1:1/test", PostgresDestinationOptions::new("t")).unwrap();
    assert!(matches!(closed.check().await, Err(DestinationError::Transient { .. })));
    assert!(matches!(
        PostgresDestination::new("postgres://[::nonsense", PostgresDestinationOptions::new("t")),
        Err(DestinationError::Fatal { .. })
    ));
    db.drop().await;
}

#[tokio::test]
async fn exactly_once_passes_both_conformance_suites_and_refuses_a_store_elsewhere() {
    let Some(db) = Db::new().await else { return };
    let store = PostgresStateStore::connect(&url(), &db.schema).await.unwrap();
    let dest = db.dest(db.options("eo_state")).with_state_store(store.clone());
    let readback = Readback { db: &db, table: "eo_state" };
    check_destination(&dest, Some(&readback)).await.unwrap();
    check_transactional_state(&dest, &store, Some(&readback)).await.unwrap();
    let shared: Arc<dyn Destination> = Arc::new(db.dest(db.options("eo_state")).with_state_store(store.clone()));
    check_transactional_state(shared.as_ref(), &store, Some(&readback)).await.unwrap();

    // A store in another database: the first write says so and writes nothing.
    let elsewhere_url = url().replacen("/test", "/postgres", 1);
    let elsewhere = PostgresStateStore::connect(&elsewhere_url, &db.schema).await.unwrap();
    let dest = db.dest(db.options("eo_elsewhere")).with_state_store(elsewhere.clone());
    match dest.check().await {
        Err(DestinationError::Fatal { message, .. }) => assert!(message.contains("same database"), "{message}"),
        other => panic!("check() must refuse a state store in another database, got {other:?}"),
    }
    let dest = db.dest(db.options("eo_elsewhere")).with_state_store(elsewhere.clone());
    let lease = elsewhere.acquire_lease("x", "test", Duration::from_secs(5)).await.unwrap();
    let batch = changes(&conformance_schema(), "x", vec![(Op::Insert, row(1, "a", 1.0), 0)]);
    let commit_for = |_: &WriteOutcome| StateCommit::default();
    match dest.write_committing(&batch, &lease, &commit_for).await {
        Err(CommittedWriteError::Destination(DestinationError::Fatal { message, .. })) => {
            assert!(message.contains("same database"), "{message}")
        }
        other => panic!("a state store in another database must be refused, got {other:?}"),
    }
    elsewhere.release_lease(&lease).await.unwrap();
    let (other, connection) = tokio_postgres::connect(&elsewhere_url, NoTls).await.unwrap();
    tokio::spawn(connection);
    other.batch_execute(&format!("DROP SCHEMA \"{}\" CASCADE", db.schema)).await.unwrap();
    // The sync must be built with the store the destination commits into.
    let err = SyncJob::builder("s")
        .source(MemorySource::new(conformance_schema(), vec![]))
        .destination(db.dest(db.options("eo_state")).with_state_store(store.clone()))
        .state(MemoryStateStore::new())
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, ConfigError::StateStoreMismatch { .. }), "{err}");
    db.drop().await;
}

#[tokio::test]
async fn an_exactly_once_mirror_sync_keeps_table_and_state_equal() {
    let Some(db) = Db::new().await else { return };
    let schema = conformance_schema();
    let store = PostgresStateStore::connect(&url(), &db.schema).await.unwrap();
    let dest = db.dest(db.options("eo_mirror")).with_state_store(store.clone());
    dest.check().await.unwrap();
    let source = MemorySource::new(schema.clone(), (1..=200).map(|i| row(i, &format!("n{i}"), i as f64)).collect());
    let sync_id = unique_id("eo_mirror");
    let sync = SyncJob::builder(sync_id.clone())
        .source(source.clone())
        .destination(dest)
        .state(store.clone())
        .mode(Mode::Mirror)
        .options(SyncOptions::default().with_batch_rows(40).with_linger(Duration::from_millis(5)))
        .build()
        .await
        .unwrap();
    let first = sync.run().await.unwrap();
    assert_eq!(first.counts.applied.insert, 200, "{first}");

    for i in [5, 6, 7] {
        source.upsert(row(i, "changed", 0.5));
    }
    for i in [10, 11] {
        source.remove(&Key::from_values(&[Value::Int(i)]));
    }
    source.upsert(row(500, "new", 5.0));
    let second = sync.run().await.unwrap();
    assert_eq!(second.counts.applied, OpCounts { insert: 1, update: 3, delete: 2, append: 0 }, "{second}");
    assert_eq!(db.count("eo_mirror").await, 199);
    assert_eq!(name_of(&db, "eo_mirror", 6).await.as_deref(), Some("changed"));
    assert_eq!(name_of(&db, "eo_mirror", 10).await, None);

    // The state holds exactly the table's keys, nothing pending, the deleted keys as tombstones.
    let entries = store.scan(&sync_id, None, 1_000).await.unwrap();
    assert!(entries.iter().all(|e| e.pending.is_none()), "exactly-once left a change pending");
    let live: Vec<i64> = entries
        .iter()
        .filter(|e| e.fingerprint.is_some())
        .map(|e| e.key.decode().unwrap()[0].as_i64().unwrap())
        .collect();
    let sql = format!("SELECT id FROM \"{}\".eo_mirror ORDER BY id", db.schema);
    let table: Vec<i64> = db.client.query(&sql, &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(live, table);
    assert_eq!(entries.iter().filter(|e| e.fingerprint.is_none()).count(), 2, "two tombstones");
    let third = sync.run().await.unwrap();
    assert_eq!(third.counts.planned.total(), 0, "{third}");
    db.drop().await;
}

/// Lost acknowledgements and a crash between the destination's commit and the state commit,
/// for three ways of writing:
/// - exactly-once (state committed with the rows): the crash leaves the state equal to the
///   table and nothing is re-sent; only the writes whose answers were lost go again (their
///   rows are rewritten with the same values);
/// - the idempotency ledger: every row is written once, lost answers included;
/// - plain: the changes applied before the crash are written again.
///
/// A trigger counts every row write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_and_lost_acks_with_exactly_once_the_ledger_and_plain_upserts() {
    use rse_core::testing::FaultyDestination;
    let Some(db) = Db::new().await else { return };
    let schema = conformance_schema();
    let rows: Vec<Record> = (1..=200).map(|i| row(i, &format!("n{i}"), i as f64)).collect();
    let mut repeated = Vec::new();
    for table in ["crash_state", "crash_state_lost_acks", "crash_ledger", "crash_plain"] {
        let s = &db.schema;
        db.client
            .batch_execute(&format!(
                "CREATE TABLE \"{s}\".{table} (id bigint PRIMARY KEY, name text, score double precision, active boolean);
                 CREATE TABLE \"{s}\".{table}_writes (id bigint);
                 CREATE FUNCTION \"{s}\".{table}_count() RETURNS trigger LANGUAGE plpgsql AS
                   $$ BEGIN INSERT INTO \"{s}\".{table}_writes VALUES (NEW.id); RETURN NEW; END $$;
                 CREATE TRIGGER counted AFTER INSERT OR UPDATE ON \"{s}\".{table}
                   FOR EACH ROW EXECUTE FUNCTION \"{s}\".{table}_count();"
            ))
            .await
            .unwrap();
        let options = PostgresDestinationOptions::new(table)
            .with_schema(&db.schema)
            .with_idempotency_ledger(table == "crash_ledger");
        let pg_state = table.starts_with("crash_state");
        let state_schema = unique_id("rse_eo");
        let store: Arc<dyn StateStore> = if pg_state {
            Arc::new(PostgresStateStore::connect(&url(), &state_schema).await.unwrap())
        } else {
            Arc::new(MemoryStateStore::new())
        };
        let dest = if pg_state {
            let pg = PostgresStateStore::connect(&url(), &state_schema).await.unwrap();
            db.dest(options).with_state_store(pg)
        } else {
            db.dest(options)
        };
        let faulty = FaultyDestination::new(Arc::new(dest));
        let sync_id = unique_id("crash");
        let build = |holder: &str| {
            SyncJob::builder(sync_id.clone())
                .source(MemorySource::new(schema.clone(), rows.clone()))
                .destination(faulty.clone())
                .state(store.clone())
                .options(
                    SyncOptions::default()
                        .with_batch_rows(20)
                        .with_max_concurrency(1)
                        .with_linger(Duration::from_millis(5))
                        .with_initial_backoff(Duration::from_millis(5))
                        .with_lease_ttl(Duration::from_millis(600))
                        .with_holder(holder.to_owned()),
                )
                .build()
        };
        let first = build("a").await.unwrap();
        if table != "crash_state" {
            faulty.fail_write_after_apply(2).fail_write_after_apply(4);
        }
        faulty.crash_after_applied(130);
        tokio::select! {
            _ = first.run() => panic!("the run should have crashed"),
            () = faulty.crashed() => {}
        }
        drop(first);
        if pg_state {
            // The crashed write committed its rows with their state: the two agree.
            let mut live = 0;
            let mut after: Option<Key> = None;
            loop {
                let page = store.scan(&sync_id, after.as_ref(), 1_000).await.unwrap();
                let Some(last) = page.last() else { break };
                after = Some(last.key.clone());
                assert!(page.iter().all(|e| e.pending.is_none()), "{table}: a change was left pending");
                live += page.iter().filter(|e| e.fingerprint.is_some()).count() as i64;
            }
            assert_eq!(live, db.count(table).await, "{table}: the state and the table disagree after the crash");
        }
        faulty.lift();
        tokio::time::sleep(Duration::from_millis(700)).await;
        let report = build("b").await.unwrap().run().await.unwrap();
        assert_eq!(report.status, RunStatus::Succeeded, "{report}");
        assert_eq!(db.count(table).await, 200);
        let sql = format!(
            "SELECT count(*) FROM (SELECT id FROM \"{}\".{table}_writes GROUP BY id HAVING count(*) > 1) AS d",
            db.schema
        );
        repeated.push(db.client.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0));
        if pg_state {
            let _ = db.client.batch_execute(&format!("DROP SCHEMA \"{state_schema}\" CASCADE")).await;
        }
    }
    assert_eq!(repeated[0], 0, "exactly-once re-sent rows after a crash");
    assert_eq!(repeated[1], 40, "exactly-once rewrites exactly the two writes whose answers were lost");
    assert_eq!(repeated[2], 0, "the ledger wrote some rows twice");
    assert!(repeated[3] > 0, "without exactly-once the re-sent changes should have been written again");
    db.drop().await;
}

/// A table of `columns`, with a statement trigger that logs the first word of each
/// statement that inserts into it (`COPY` or `INSERT`).
async fn logged_table(db: &Db, table: &str, columns: &str) {
    db.client.batch_execute(&format!("CREATE TABLE \"{}\".\"{table}\" ({columns})", db.schema)).await.unwrap();
    log_inserts(db, table).await;
}

/// Logs the first word of each statement that inserts into `table` (of the test's schema).
async fn log_inserts(db: &Db, table: &str) {
    let s = &db.schema;
    db.client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS \"{s}\".statements (tbl text, verb text);
             CREATE OR REPLACE FUNCTION \"{s}\".log_statement() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN INSERT INTO \"{s}\".statements VALUES (TG_TABLE_NAME, upper(split_part(ltrim(current_query()), ' ', 1)));
               RETURN NULL; END $$;
             CREATE TRIGGER log AFTER INSERT ON \"{s}\".\"{table}\" FOR EACH STATEMENT EXECUTE FUNCTION \"{s}\".log_statement();"
        ))
        .await
        .unwrap();
}

/// The statements that inserted into `table`, in order.
async fn verbs(db: &Db, table: &str) -> Vec<String> {
    let sql = format!("SELECT verb FROM \"{}\".statements WHERE tbl = $1 ORDER BY ctid", db.schema);
    db.client.query(&sql, &[&table]).await.unwrap().iter().map(|r| r.get(0)).collect()
}

/// Every row of `table` as JSON text, by key.
async fn rows_as_json(db: &Db, table: &str, key: &str) -> Vec<String> {
    let sql = format!("SELECT row_to_json(t)::text FROM \"{}\".\"{table}\" AS t ORDER BY \"{key}\"", db.schema);
    db.client.query(&sql, &[]).await.unwrap().iter().map(|r| r.get(0)).collect()
}

fn all_types_schema() -> Arc<Schema> {
    Schema::new(
        vec![
            Field::required("id", DataType::Int),
            Field::new("name", DataType::String),
            Field::new("price", DataType::Decimal),
            Field::new("blob", DataType::Bytes),
            Field::new("day", DataType::Date),
            Field::new("at", DataType::Timestamp),
            Field::new("doc", DataType::Json),
            Field::new("tags", DataType::List(Box::new(DataType::Int))),
            Field::new("ok", DataType::Bool),
            Field::new("ratio", DataType::Float),
        ],
        &["id"],
    )
    .unwrap()
    .into_arc()
}

const ALL_TYPES_COLUMNS: &str = "id bigint PRIMARY KEY, name text, price numeric, blob bytea, day date, \
     at timestamptz, doc jsonb, tags jsonb, ok boolean, ratio double precision";

/// Row `i` of a table exercising every type and its edges: decimals of every shape, dates
/// and times before 1970 and 2000, floats that are not numbers, text in several scripts.
fn all_types_row(i: i64) -> Record {
    let decimals = [
        "0",
        "1",
        "-1",
        "0.5",
        "-0.0001",
        "12345.678",
        "10000.0001",
        "100000000",
        "0.00000001",
        "9999.9999",
        "123456789012345678901234567890.123456789012345678901234567890",
        "-98765.4321",
    ];
    let floats = [0.0, -0.0, 0.1, -1.5e300, 5e-324, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 42.0];
    let texts = ["", "plain", "Grüße, 世界", "tab\tand\nnewline", "quote ' \" \\ backslash", "🦀"];
    let n = usize::try_from(i).unwrap();
    let null_at = n % 11;
    let values = vec![
        Value::Int(i),
        Value::from(format!("{} #{i}", texts[n % texts.len()])),
        Value::Decimal(Decimal::parse(decimals[n % decimals.len()]).unwrap()),
        Value::Bytes(bytes::Bytes::from(vec![0u8, 255, (n % 256) as u8])),
        Value::Date(i32::try_from(-800_000 + (i * 7_919) % 1_600_000).unwrap()),
        Value::Timestamp(-2_000_000_000_000_000 + i * 123_456_789_012),
        Value::Json(serde_json::json!({"n": i, "nested": {"list": [1, "two", null, 3.5]}, "s": "ü"})),
        Value::List((0..(n % 4) as i64).map(Value::Int).collect()),
        Value::Bool(n % 2 == 0),
        Value::Float(floats[n % floats.len()]),
    ];
    // A null in a different field of each row, never the key.
    Record::new(
        values.into_iter().enumerate().map(|(f, v)| if f == null_at && f > 0 { Value::Null } else { v }).collect(),
    )
}

#[tokio::test]
async fn inserts_by_copy_land_exactly_as_by_upsert() {
    let Some(db) = Db::new().await else { return };
    let schema = all_types_schema();
    logged_table(&db, "copied", ALL_TYPES_COLUMNS).await;
    logged_table(&db, "upserted", ALL_TYPES_COLUMNS).await;
    let copied = db.dest(db.options("copied"));
    let upserted = db.dest(db.options("upserted").with_copy_inserts(false));
    let mut items: Vec<(Op, Record, u64)> = (0..300).map(|i| (Op::Insert, all_types_row(i), 0)).collect();
    // A value of the wrong type in the middle of the COPY is rejected, as by the upsert.
    let mut bad = all_types_row(1_000);
    bad.values[4] = Value::from("not a date");
    items.insert(150, (Op::Insert, bad, 0));
    let batch = changes(&schema, "copy", items);
    let by_copy = copied.write(&batch).await.unwrap();
    let by_upsert = upserted.write(&batch).await.unwrap();
    assert_eq!(by_copy, by_upsert);
    assert!(
        matches!(&by_copy.outcomes[150], ChangeOutcome::Rejected { reason, .. } if reason.contains("`day`")),
        "{:?}",
        by_copy.outcomes[150]
    );
    assert_eq!(by_copy.outcomes.iter().filter(|o| **o == ChangeOutcome::Applied).count(), 300);
    assert_eq!(verbs(&db, "copied").await, ["COPY"]);
    assert_eq!(verbs(&db, "upserted").await, ["INSERT"]);
    let (a, b) = (rows_as_json(&db, "copied", "id").await, rows_as_json(&db, "upserted", "id").await);
    assert_eq!(a.len(), 300);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y);
    }
    // Spot checks against the server's own text forms.
    let sql = format!(
        "SELECT price::text, (at AT TIME ZONE 'UTC')::text, ratio::text, (SELECT day::text FROM \"{0}\".copied WHERE id = 20) \
         FROM \"{0}\".copied WHERE id = 10",
        db.schema
    );
    let r = db.client.query_one(&sql, &[]).await.unwrap();
    assert_eq!(r.get::<_, String>(0), "123456789012345678901234567890.12345678901234567890123456789");
    assert_eq!(r.get::<_, String>(1), "1906-08-31 03:22:47.89012");
    assert_eq!(r.get::<_, String>(2), "-0");
    assert_eq!(r.get::<_, String>(3), "0213-04-22");

    // A batch of fewer inserts than the COPY's minimum, and updates, go by upsert.
    let few: Vec<(Op, Record, u64)> = (300..310).map(|i| (Op::Insert, all_types_row(i), 0)).collect();
    assert_eq!(copied.write(&changes(&schema, "copy", few)).await.unwrap(), WriteOutcome::all_applied(10));
    let updates: Vec<(Op, Record, u64)> = (0..100).map(|i| (Op::Update, all_types_row(i + 1), 1)).collect();
    assert_eq!(copied.write(&changes(&schema, "copy", updates)).await.unwrap(), WriteOutcome::all_applied(100));
    assert_eq!(verbs(&db, "copied").await, ["COPY", "INSERT", "INSERT"]);
    db.drop().await;
}

#[tokio::test]
async fn a_copy_that_meets_a_row_already_there_is_written_again_by_upsert() {
    let Some(db) = Db::new().await else { return };
    let schema = conformance_schema();
    let columns = "id bigint PRIMARY KEY, name text, score double precision, active boolean";
    logged_table(&db, "taken", columns).await;
    // A row this sync never wrote, under a key the sync sees as new.
    db.client
        .batch_execute(&format!("INSERT INTO \"{}\".taken VALUES (42, 'theirs', 0, false)", db.schema))
        .await
        .unwrap();
    let dest = db.dest(db.options("taken"));
    let first: Vec<(Op, Record, u64)> = (0..100).map(|i| (Op::Insert, row(i, &format!("n{i}"), 1.0), 0)).collect();
    assert_eq!(dest.write(&changes(&schema, "taken", first)).await.unwrap(), WriteOutcome::all_applied(100));
    assert_eq!(db.count("taken").await, 100);
    assert_eq!(name_of(&db, "taken", 42).await.as_deref(), Some("n42"), "an insert upserts, as without the COPY");
    // The rolled-back COPY left no trace; this destination's inserts go by upsert from now on.
    let second: Vec<(Op, Record, u64)> = (100..200).map(|i| (Op::Insert, row(i, "m", 1.0), 0)).collect();
    assert_eq!(dest.write(&changes(&schema, "taken", second)).await.unwrap(), WriteOutcome::all_applied(100));
    assert_eq!(verbs(&db, "taken").await, ["INSERT", "INSERT", "INSERT"]);

    // A table whose columns are not the types rse writes (an `integer` key, `real` score)
    // is written by upsert alone, with the server's casts.
    logged_table(&db, "narrow", "id integer PRIMARY KEY, name varchar(20), score real, active boolean").await;
    let narrow = db.dest(db.options("narrow"));
    let rows: Vec<(Op, Record, u64)> = (0..100).map(|i| (Op::Insert, row(i, "x", 0.5), 0)).collect();
    assert_eq!(narrow.write(&changes(&schema, "narrow", rows)).await.unwrap(), WriteOutcome::all_applied(100));
    assert_eq!(verbs(&db, "narrow").await, ["INSERT"]);
    assert_eq!(db.count("narrow").await, 100);
    // Nor a table under row security, whose policies COPY does not apply.
    logged_table(&db, "guarded_rows", "id bigint PRIMARY KEY, name text, score double precision, active boolean").await;
    let rls = format!("ALTER TABLE \"{}\".guarded_rows ENABLE ROW LEVEL SECURITY", db.schema);
    db.client.batch_execute(&rls).await.unwrap();
    let rows: Vec<(Op, Record, u64)> = (0..100).map(|i| (Op::Insert, row(i, "x", 0.5), 0)).collect();
    let guarded = db.dest(db.options("guarded_rows"));
    assert_eq!(guarded.write(&changes(&schema, "rls", rows)).await.unwrap(), WriteOutcome::all_applied(100));
    assert_eq!(verbs(&db, "guarded_rows").await, ["INSERT"]);
    db.drop().await;
}

#[tokio::test]
async fn copied_rows_carry_their_version_and_fail_whole_when_the_server_refuses_one() {
    let Some(db) = Db::new().await else { return };
    let schema = conformance_schema();
    let dest = db.dest(db.options("versioned").with_version_guard(true));
    let rows: Vec<(Op, Record, u64)> = (0..100).map(|i| (Op::Insert, row(i, "v", 1.0), 7)).collect();
    assert_eq!(dest.write(&changes(&schema, "v", rows)).await.unwrap(), WriteOutcome::all_applied(100));
    let sql = format!("SELECT count(*) FROM \"{}\".versioned WHERE \"_rse_version\" = 7", db.schema);
    assert_eq!(db.client.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0), 100);
    // An older change cannot roll a copied row back.
    let late = changes(&schema, "v", vec![(Op::Update, row(3, "older", 1.0), 6)]);
    dest.write(&late).await.unwrap();
    assert_eq!(name_of(&db, "versioned", 3).await.as_deref(), Some("v"));

    // A CHECK the server enforces refuses the whole COPY: an invalid batch, for the runner
    // to bisect, and nothing of it committed.
    let check = format!("ALTER TABLE \"{}\".versioned ADD CONSTRAINT positive CHECK (score >= 0)", db.schema);
    db.client.batch_execute(&check).await.unwrap();
    let mut rows: Vec<(Op, Record, u64)> = (100..200).map(|i| (Op::Insert, row(i, "w", 1.0), 0)).collect();
    rows[50].1 = row(150, "negative", -1.0);
    match dest.write(&changes(&schema, "v", rows)).await {
        Err(DestinationError::InvalidBatch { message }) => assert!(message.contains("positive"), "{message}"),
        other => panic!("a CHECK violation in a COPY should be InvalidBatch, got {other:?}"),
    }
    assert_eq!(db.count("versioned").await, 100);
    db.drop().await;
}

#[tokio::test]
async fn exactly_once_copies_new_rows_and_their_state_and_upserts_a_deleted_key_that_returns() {
    let Some(db) = Db::new().await else { return };
    let schema = conformance_schema();
    // The state in the test's schema, beside the table; both log how rows are inserted.
    let store = PostgresStateStore::connect(&url(), &db.schema).await.unwrap();
    logged_table(&db, "eo_copy", "id bigint PRIMARY KEY, name text, score double precision, active boolean").await;
    log_inserts(&db, "rse_snapshot").await;
    let dest = db.dest(db.options("eo_copy")).with_state_store(store.clone());
    let source = MemorySource::new(schema.clone(), (1..=300).map(|i| row(i, &format!("n{i}"), 1.0)).collect());
    let sync_id = unique_id("eo_copy");
    let sync = SyncJob::builder(sync_id.clone())
        .source(source.clone())
        .destination(dest)
        .state(store.clone())
        .mode(Mode::Mirror)
        .options(
            SyncOptions::default()
                .with_batch_rows(100)
                .with_max_concurrency(1)
                .with_max_deletes(None)
                .with_linger(Duration::from_millis(5)),
        )
        .build()
        .await
        .unwrap();
    // The state holds exactly the table's keys and nothing pending.
    let state_matches_table = || async {
        let entries = store.scan(&sync_id, None, 10_000).await.unwrap();
        assert!(entries.iter().all(|e| e.pending.is_none()), "exactly-once left a change pending");
        let live: Vec<i64> = entries
            .iter()
            .filter(|e| e.fingerprint.is_some())
            .map(|e| e.key.decode().unwrap()[0].as_i64().unwrap())
            .collect();
        let sql = format!("SELECT id FROM \"{}\".eo_copy ORDER BY id", db.schema);
        let table: Vec<i64> = db.client.query(&sql, &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
        assert_eq!(live, table);
        entries.len()
    };

    let first = sync.run().await.unwrap();
    assert_eq!(first.counts.applied.insert, 300, "{first}");
    assert_eq!(state_matches_table().await, 300);
    assert_eq!(verbs(&db, "eo_copy").await, ["COPY"; 3]);
    assert_eq!(verbs(&db, "rse_snapshot").await, ["COPY"; 3]);

    // 100 keys go (their state keeps tombstones), then come back: inserts whose snapshot
    // rows exist. The rows are copied; the state's COPY meets the tombstones, and the batch
    // is committed again with the state upserted, once.
    for i in 1..=100 {
        source.remove(&Key::from_values(&[Value::Int(i)]));
    }
    let second = sync.run().await.unwrap();
    assert_eq!(second.counts.applied.delete, 100, "{second}");
    assert_eq!(db.count("eo_copy").await, 200);
    for i in 1..=100 {
        source.upsert(row(i, "back", 2.0));
    }
    let third = sync.run().await.unwrap();
    assert_eq!(third.counts.applied.insert, 100, "{third}");
    assert_eq!(third.retries, 0, "{third}");
    assert_eq!(name_of(&db, "eo_copy", 50).await.as_deref(), Some("back"));
    assert_eq!(state_matches_table().await, 300);
    // New keys after that: rows still by COPY, state by upsert from then on.
    for i in 301..=400 {
        source.upsert(row(i, "new", 3.0));
    }
    let fourth = sync.run().await.unwrap();
    assert_eq!(fourth.counts.applied.insert, 100, "{fourth}");
    assert_eq!(state_matches_table().await, 400);
    assert_eq!(verbs(&db, "eo_copy").await, ["COPY"; 5]);
    assert_eq!(verbs(&db, "rse_snapshot").await, ["COPY", "COPY", "COPY", "INSERT", "INSERT", "INSERT"]);
    assert_eq!(sync.run().await.unwrap().counts.planned.total(), 0);
    db.drop().await;
}

#[tokio::test]
async fn non_finite_floats_and_bytes_in_lists_keep_their_values_in_jsonb() {
    let Some(db) = Db::new().await else { return };
    let schema = Schema::new(
        vec![
            Field::required("id", DataType::Int),
            Field::new("ratios", DataType::List(Box::new(DataType::Float))),
            Field::new("blobs", DataType::List(Box::new(DataType::Bytes))),
        ],
        &["id"],
    )
    .unwrap()
    .into_arc();
    let row = |id: i64| {
        Record::new(vec![
            Value::Int(id),
            Value::List(vec![
                Value::Float(f64::NAN),
                Value::Float(f64::INFINITY),
                Value::Float(f64::NEG_INFINITY),
                Value::Float(1.5),
                Value::Null,
            ]),
            Value::List(vec![
                Value::Bytes(bytes::Bytes::from_static(b"\x00\x01\xff")),
                Value::Bytes(bytes::Bytes::new()),
            ]),
        ])
    };
    // One row goes by upsert; a batch of many inserts by COPY: both write the same text.
    let dest = db.dest(db.options("lists"));
    assert_eq!(
        dest.write(&changes(&schema, "lists", vec![(Op::Insert, row(0), 0)])).await.unwrap(),
        WriteOutcome::all_applied(1)
    );
    let many: Vec<(Op, Record, u64)> = (1..=100).map(|i| (Op::Insert, row(i), 0)).collect();
    assert_eq!(dest.write(&changes(&schema, "lists", many)).await.unwrap(), WriteOutcome::all_applied(100));
    let sql = format!(
        "SELECT DISTINCT ratios::text, blobs::text, (ratios->>0)::float8::text, (ratios->>1)::float8::text, \
         (ratios->>2)::float8::text, encode((blobs->>0)::bytea, 'hex') FROM \"{}\".lists",
        db.schema
    );
    let rows = db.client.query(&sql, &[]).await.unwrap();
    assert_eq!(rows.len(), 1, "rows by COPY and by upsert differ");
    let r = &rows[0];
    assert_eq!(r.get::<_, String>(0), r#"["NaN", "Infinity", "-Infinity", 1.5, null]"#);
    assert_eq!(r.get::<_, String>(1), r#"["\\x0001ff", "\\x"]"#);
    // Each is PostgreSQL's own text for the value: a cast gives the value back.
    assert_eq!(
        (r.get::<_, String>(2), r.get::<_, String>(3), r.get::<_, String>(4), r.get::<_, String>(5)),
        ("NaN".to_owned(), "Infinity".to_owned(), "-Infinity".to_owned(), "0001ff".to_owned())
    );
    assert_eq!(db.count("lists").await, 101);
    db.drop().await;
}
