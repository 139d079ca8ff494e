//! Reconciliation against the real PostgreSQL (RSE_POSTGRES_URL), a real SQLite file and the
//! real Redis (RSE_REDIS_URL): every value type reads back fingerprint-equal; a sync, then
//! rows deleted, edited and inserted behind its back, are found exactly (kinds, counts, a
//! deterministic sample), repaired exactly (nothing else rewritten), and no key or value
//! reaches the report's text or rse's logs.
#![cfg(any(feature = "postgres", feature = "sqlite", feature = "redis"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use rse_core::memory::MemorySource;
use rse_core::testing::unique_id;
use rse_core::*;
use serde_json::json;

// ---------------------------------------------------------------------------------------
// What every backend shares: the model, the tampering story, the checks.

/// Every key and value of the tampering tests starts with this, so the logs and the report
/// text can be searched for any of them.
const SECRET: &str = "zq-rc";

fn email(i: i64) -> String {
    if i == 0 {
        // A key with the characters a Redis key escapes.
        format!("{SECRET}-00:%{{odd}}@example.com")
    } else {
        format!("{SECRET}-{i:04}@example.com")
    }
}

fn key(i: i64) -> Key {
    Key::from_values(&[Value::String(email(i))])
}

fn people_schema() -> Arc<Schema> {
    Schema::new(
        vec![
            Field::required("email", DataType::String),
            Field::new("plan", DataType::String),
            Field::new("score", DataType::Float),
            Field::new("seen", DataType::Timestamp),
        ],
        &["email"],
    )
    .unwrap()
    .into_arc()
}

fn person(i: i64, plan: &str) -> Record {
    Record::new(vec![
        Value::String(email(i)),
        Value::String(format!("{SECRET}-{plan}")),
        Value::Float(i as f64 / 3.0),
        Value::Timestamp(1_714_564_800_000_001 + i),
    ])
}

/// Keys 0–20 in `Mirror` mode; then key 20 leaves the source and its row is deleted.
async fn synced(sync: &SyncJob, source: &MemorySource) {
    let first = sync.run().await.unwrap();
    assert_eq!(first.counts.applied.insert, 21, "{first}");
    source.remove(&key(20));
    let second = sync.run().await.unwrap();
    assert_eq!(second.counts.applied.delete, 1, "{second}");
    // The source moves on for key 3: the next run's work, which a repair must not send.
    source.upsert(person(3, "platinum"));
}

fn people() -> Vec<Record> {
    (0..=20).map(|i| person(i, "gold")).collect()
}

fn kinds(report: &ReconcileReport) -> Vec<(Key, MismatchKind)> {
    report.mismatches.iter().map(|m| (m.key.clone(), m.kind)).collect()
}

/// What the tampering left: key 1 deleted, key 2 edited, key 20 (deleted by the sync, gone
/// from the source) written again, key 1000 written by someone else.
fn assert_found(report: &ReconcileReport) {
    let mut expected =
        vec![(key(1), MismatchKind::Missing), (key(2), MismatchKind::Stale), (key(20), MismatchKind::Extra)];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(kinds(report), expected, "{report}");
    assert_eq!(report.checked, 21, "20 live keys and a tombstone: {report}");
    assert_eq!((report.missing, report.stale, report.extra), (1, 1, 1));
    assert_eq!(report.matched, 18);
    assert_eq!(report.foreign, 1);
    assert_eq!(report.unsent, 1, "key 3 changed in the source");
    assert_eq!(report.in_doubt, 0);
    assert!((report.mismatch_ratio() - 3.0 / 21.0).abs() < 1e-12);
}

/// A sample checks the same keys every time: two verifies at 50% agree, and find exactly
/// the full verify's mismatches whose keys are in the sample.
async fn assert_sample_repeats(sync: &SyncJob, full: &ReconcileReport) {
    let half = VerifyOptions::default().with_sample(0.5).with_read_batch(4).with_page_size(3);
    let first = sync.verify(&half).await.unwrap();
    let second = sync.verify(&half).await.unwrap();
    assert_eq!(kinds(&first), kinds(&second));
    assert_eq!((first.checked, first.matched, first.foreign), (second.checked, second.matched, second.foreign));
    let in_sample: Vec<_> = kinds(full).into_iter().filter(|(k, _)| half.in_sample(k)).collect();
    assert_eq!(kinds(&first), in_sample);
    let live_or_deleted = (0..=20).filter(|&i| half.in_sample(&key(i))).count() as u64;
    assert_eq!(first.checked, live_or_deleted);
}

/// After the repair: the mismatched keys hold the source's records again, the deleted one
/// is gone, the foreign one is there, and a second verify is clean.
async fn assert_repaired(sync: &SyncJob, repaired: &SyncReport) {
    assert_eq!(repaired.status, RunStatus::Succeeded, "{repaired}");
    assert_eq!(repaired.counts.applied.total(), 3, "{repaired}");
    assert_eq!(repaired.counts.applied.delete, 1, "{repaired}");
    let again = sync.verify(&VerifyOptions::default()).await.unwrap();
    assert!(again.is_clean(), "{again}");
    assert_eq!((again.checked, again.matched, again.foreign, again.unsent), (21, 21, 1, 1), "{again}");
}

/// The report's text and rse's logs hold no key and no value.
fn assert_no_secrets(texts: &[String]) {
    let logs = logs();
    for text in texts.iter().chain([&logs]) {
        assert!(!text.contains(SECRET), "a key or value in: {text}");
        assert!(!text.contains("by hand"), "a value in: {text}");
    }
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line rse itself writes in this test binary, at every level (the drivers' own
/// DEBUG lines are capped as `rse_connectors::log_filter` says, and not searched here).
fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        use tracing_subscriber::layer::SubscriberExt;
        let capture = Capture::default();
        let writer = capture.clone();
        let targets = tracing_subscriber::filter::Targets::new()
            .with_target("rse_core", tracing::Level::TRACE)
            .with_target("rse_connectors", tracing::Level::TRACE);
        let layer = tracing_subscriber::fmt::layer().with_writer(move || writer.clone()).with_ansi(false);
        let subscriber = tracing_subscriber::registry().with(tracing_subscriber::Layer::with_filter(layer, targets));
        tracing::subscriber::set_global_default(subscriber).unwrap();
        capture
    })
}

fn logs() -> String {
    String::from_utf8(capture().0.lock().unwrap().clone()).unwrap()
}

/// A model with every type, and records with the values that are hard to keep exactly.
fn all_types_schema(floats_with_nan: bool) -> (Arc<Schema>, Vec<Record>) {
    let list = |t| DataType::List(Box::new(t));
    let schema = Schema::new(
        vec![
            Field::required("id", DataType::Int),
            Field::new("b", DataType::Bool),
            Field::new("i", DataType::Int),
            Field::new("f", DataType::Float),
            Field::new("d", DataType::Decimal),
            Field::new("s", DataType::String),
            Field::new("by", DataType::Bytes),
            Field::new("da", DataType::Date),
            Field::new("ts", DataType::Timestamp),
            Field::new("j", DataType::Json),
            Field::new("li", list(DataType::Int)),
            Field::new("lf", list(DataType::Float)),
            Field::new("ls", list(DataType::String)),
            Field::new("lb", list(DataType::Bool)),
            Field::new("ld", list(DataType::Decimal)),
            Field::new("lby", list(DataType::Bytes)),
            Field::new("lda", list(DataType::Date)),
            Field::new("lts", list(DataType::Timestamp)),
            Field::new("lj", list(DataType::Json)),
            Field::new("lli", list(list(DataType::Int))),
        ],
        &["id"],
    )
    .unwrap()
    .into_arc();
    let dec = |s: &str| Value::Decimal(Decimal::parse(s).unwrap());
    let floats = [0.1, 1e300, 5e-324, -2.5, f64::INFINITY, f64::NEG_INFINITY, f64::MIN_POSITIVE, -0.0, 1e21];
    let mut rows = Vec::new();
    for (n, f) in floats.iter().enumerate() {
        let n = n as i64;
        rows.push(Record::new(vec![
            Value::Int(n),
            Value::Bool(n % 2 == 0),
            Value::Int([i64::MIN, i64::MAX, 0, -1][n as usize % 4]),
            Value::Float(*f),
            dec(["123456789012345678901234567890.120", "-0.5", "0", "1e-20", "42"][n as usize % 5]),
            Value::String(["", "ü ✓ \"q\" %:{x}\\ \t\n", "plain", "€"][n as usize % 4].to_owned()),
            Value::Bytes(if n == 0 {
                (0..=255u8).collect::<Vec<_>>().into()
            } else {
                vec![n as u8; n as usize].into()
            }),
            Value::Date([0, -719_528, 2_932_896, 19_783, -1][n as usize % 5]),
            Value::Timestamp(
                [0, -1, 1_714_564_800_000_001, 253_402_300_799_999_999, -62_135_596_800_000_000][n as usize % 5],
            ),
            Value::Json(
                json!({"b": [1, 2.5, {"c": null}], "a": "ü", "n": n, "big": 12_345_678_901_234_567_u64, "f": 0.1}),
            ),
            Value::List(vec![Value::Int(1), Value::Null, Value::Int(i64::MAX)]),
            Value::List(vec![
                Value::Float(1.5),
                Value::Float(if floats_with_nan { f64::NAN } else { 2.0 }),
                Value::Float(f64::INFINITY),
                Value::Float(f64::NEG_INFINITY),
                Value::Float(0.1),
            ]),
            Value::List(vec![Value::from(""), Value::from("a,b"), Value::from("ü")]),
            Value::List(vec![Value::Bool(true), Value::Bool(false)]),
            Value::List(vec![dec("1.50"), dec("-3")]),
            Value::List(vec![Value::Bytes(vec![0, 255].into()), Value::Bytes(Vec::new().into())]),
            Value::List(vec![Value::Date(0), Value::Date(2_932_896)]),
            Value::List(vec![Value::Timestamp(-1), Value::Timestamp(1_714_564_800_000_001)]),
            Value::List(vec![Value::Json(json!({"a": 1})), Value::Json(json!([1, 2])), Value::Json(json!("s"))]),
            Value::List(vec![Value::List(vec![Value::Int(1), Value::Int(2)]), Value::List(Vec::new())]),
        ]));
    }
    if floats_with_nan {
        let mut nan = rows[0].clone();
        nan.values[0] = Value::Int(100);
        nan.values[3] = Value::Float(f64::NAN);
        rows.push(nan);
    }
    // Every field null but the key.
    let mut nulls = vec![Value::Null; schema.len()];
    nulls[0] = Value::Int(200);
    rows.push(Record::new(nulls));
    (schema, rows)
}

/// Syncs `rows`, then checks that each reads back fingerprint-equal and that verify is
/// clean over all of them.
async fn assert_round_trip(sync: &SyncJob, destination: &dyn Destination, schema: &Arc<Schema>, rows: &[Record]) {
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.applied.total(), rows.len() as u64, "{report}");
    let read_back = destination.read_back().expect("the destination reads back");
    let keys: Vec<Key> = rows.iter().map(|r| r.key(schema).unwrap()).collect();
    let held = read_back.read(sync.id(), sync.schema(), &keys).await.unwrap();
    let mut fingerprinter = Fingerprinter::new(FingerprintAlgorithm::default(), sync.schema());
    for (row, held) in rows.iter().zip(held) {
        let Held::Record(got) = held else { panic!("row {:?} read back as {held:?}", row.values[0]) };
        for (i, (a, b)) in row.values.iter().zip(&got.values).enumerate() {
            assert_eq!(a, b, "row {:?}, field `{}`", row.values[0], schema.fields()[i].name);
        }
        assert_eq!(fingerprinter.fingerprint(&got), fingerprinter.fingerprint(row));
    }
    let verified = sync.verify(&VerifyOptions::default()).await.unwrap();
    assert!(verified.is_clean(), "{verified}");
    assert_eq!(verified.checked, rows.len() as u64);
    let mut listed = Vec::new();
    loop {
        let page = read_back.keys(sync.id(), sync.schema(), listed.last(), 3).await.unwrap();
        listed.extend(page.iter().cloned());
        if page.len() < 3 {
            break;
        }
    }
    let mut expected = keys.clone();
    expected.sort();
    assert_eq!(listed, expected, "every key once, in key order");
}

/// A sync of `source` into `destination`, its state in a SQLite file of `dir`.
async fn build(
    id: &str,
    source: &MemorySource,
    destination: impl Destination + 'static,
    state_file: &std::path::Path,
) -> SyncJob {
    SyncJob::builder(id)
        .source(source.clone())
        .destination(destination)
        .state(rse_connectors::state::SqliteStateStore::open(state_file).await.unwrap())
        .mode(Mode::Mirror)
        .build()
        .await
        .unwrap()
}

/// A fresh directory, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(unique_id("rse_reconcile"));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------
#[cfg(all(feature = "postgres", feature = "sqlite"))]
#[path = "support/pg.rs"]
mod pg;

#[cfg(all(feature = "postgres", feature = "sqlite"))]
mod postgres {
    use std::collections::BTreeMap;

    use rse_connectors::state::PostgresStateStore;
    use rse_connectors::{PostgresDestination, PostgresDestinationOptions};
    use tokio_postgres::Client;

    use super::*;

    use super::pg;
    use pg::url;

    /// A connection and a fresh schema, dropped at the end of the test.
    struct Db {
        client: Client,
        schema: String,
    }

    impl Db {
        async fn new() -> Option<Db> {
            let (client, schema) = pg::fresh_schema("rse_reconcile").await?;
            Some(Db { client, schema })
        }

        fn destination(&self, table: &str) -> PostgresDestination {
            let options = PostgresDestinationOptions::new(table).with_schema(&self.schema).with_create_table(true);
            PostgresDestination::new(&url(), options).unwrap()
        }

        fn table(&self, table: &str) -> String {
            format!("\"{}\".\"{table}\"", self.schema)
        }

        /// Each row's `xmin`: the transaction that last wrote it.
        async fn xmins(&self, table: &str) -> BTreeMap<String, String> {
            let sql = format!("SELECT email, xmin::text FROM {}", self.table(table));
            self.client.query(&sql, &[]).await.unwrap().iter().map(|r| (r.get(0), r.get(1))).collect()
        }

        async fn drop(self) {
            let _ = self.client.batch_execute(&format!("DROP SCHEMA \"{}\" CASCADE", self.schema)).await;
        }
    }

    #[tokio::test]
    async fn every_type_reads_back_from_postgres_as_written() {
        let Some(db) = Db::new().await else { return };
        let dir = TempDir::new();
        let (schema, rows) = all_types_schema(true);
        // A few rows go by the upsert; as many as a COPY takes go by the COPY.
        let copied: Vec<Record> = (0..copy_rows())
            .map(|n| {
                let mut row = rows[n % rows.len()].clone();
                row.values[0] = Value::Int(1_000 + n as i64);
                row
            })
            .collect();
        for (table, rows) in [("upserted", rows), ("copied", copied)] {
            let source = MemorySource::new(schema.clone(), rows.clone());
            let destination = Arc::new(db.destination(table));
            let sync = SyncJob::builder(unique_id(table))
                .source(source)
                .destination(destination.clone())
                .state(rse_connectors::state::SqliteStateStore::open(dir.file(&format!("{table}.db"))).await.unwrap())
                .build()
                .await
                .unwrap();
            assert_round_trip(&sync, destination.as_ref(), &schema, &rows).await;
        }
        db.drop().await;
    }

    fn copy_rows() -> usize {
        rse_connectors::postgres::COPY_MIN_ROWS + 3
    }

    #[tokio::test]
    async fn postgres_tampering_is_found_and_repaired_exactly() {
        capture();
        let Some(db) = Db::new().await else { return };
        let source = MemorySource::new(people_schema(), people());
        let state = PostgresStateStore::connect(&url(), &db.schema).await.unwrap();
        let sync = SyncJob::builder(unique_id("people"))
            .source(source.clone())
            .destination(db.destination("people"))
            .state(state)
            .mode(Mode::Mirror)
            .build()
            .await
            .unwrap();
        synced(&sync, &source).await;

        let t = db.table("people");
        let c = &db.client;
        c.execute(&format!("DELETE FROM {t} WHERE email = $1"), &[&email(1)]).await.unwrap();
        c.execute(&format!("UPDATE {t} SET plan = 'edited by hand' WHERE email = $1"), &[&email(2)]).await.unwrap();
        let insert = format!("INSERT INTO {t} (email, plan) VALUES ($1, 'restored by hand')");
        c.execute(&insert, &[&email(20)]).await.unwrap();
        c.execute(&insert, &[&email(1000)]).await.unwrap();

        let report = sync.verify(&VerifyOptions::default().with_read_batch(5).with_page_size(4)).await.unwrap();
        assert_found(&report);
        assert_sample_repeats(&sync, &report).await;

        let before = db.xmins("people").await;
        let repaired = sync.repair(&report).await.unwrap();
        let after = db.xmins("people").await;
        let rewritten: BTreeSet<&String> =
            after.iter().filter(|(email, xmin)| before.get(*email) != Some(*xmin)).map(|(e, _)| e).collect();
        assert_eq!(rewritten, BTreeSet::from([&email(1), &email(2)]), "only the repaired rows were written");
        assert!(!after.contains_key(&email(20)));
        assert_eq!(after.get(&email(1000)), before.get(&email(1000)), "the foreign row is untouched");
        assert_repaired(&sync, &repaired).await;
        let plan: String =
            c.query_one(&format!("SELECT plan FROM {t} WHERE email = $1"), &[&email(3)]).await.unwrap().get(0);
        assert!(plan.ends_with("gold"), "the source's other change waits for the next run");

        assert_no_secrets(&[format!("{report}"), format!("{report:?}"), format!("{repaired}")]);
        db.drop().await;
    }

    #[tokio::test]
    async fn an_exactly_once_postgres_destination_is_repaired_with_its_state() {
        let Some(db) = Db::new().await else { return };
        let source = MemorySource::new(people_schema(), people());
        let state = PostgresStateStore::connect(&url(), &db.schema).await.unwrap();
        let destination = db.destination("people").with_state_store(state);
        let sync = SyncJob::builder(unique_id("people"))
            .source(source.clone())
            .destination(destination)
            .mode(Mode::Mirror)
            .build()
            .await
            .unwrap();
        synced(&sync, &source).await;
        let t = db.table("people");
        db.client.execute(&format!("DELETE FROM {t} WHERE email = $1"), &[&email(5)]).await.unwrap();
        let report = sync.verify(&VerifyOptions::default()).await.unwrap();
        assert_eq!(kinds(&report), vec![(key(5), MismatchKind::Missing)]);
        let repaired = sync.repair(&report).await.unwrap();
        assert_eq!(repaired.counts.applied.total(), 1, "{repaired}");
        assert!(sync.verify(&VerifyOptions::default()).await.unwrap().is_clean());
        db.drop().await;
    }
}

// ---------------------------------------------------------------------------------------
#[cfg(feature = "sqlite")]
mod sqlite {
    use rse_connectors::{SqliteDestination, SqliteDestinationOptions};
    use rusqlite::Connection;

    use super::*;

    async fn destination(path: &std::path::Path, table: &str) -> SqliteDestination {
        SqliteDestination::open(path, SqliteDestinationOptions::new(table).with_create_table(true)).await.unwrap()
    }

    #[tokio::test]
    async fn every_type_reads_back_from_sqlite_as_written() {
        let dir = TempDir::new();
        // SQLite stores a NaN float as NULL: the one value it cannot hold (inside a list it can).
        let (schema, rows) = all_types_schema(false);
        let destination = destination(&dir.file("app.db"), "types").await;
        let source = MemorySource::new(schema.clone(), rows.clone());
        let sync = build(&unique_id("types"), &source, destination.clone(), &dir.file("state.db")).await;
        assert_round_trip(&sync, &destination, &schema, &rows).await;
    }

    #[tokio::test]
    async fn an_events_table_does_not_read_back() {
        let dir = TempDir::new();
        let events =
            SqliteDestination::open(dir.file("app.db"), SqliteDestinationOptions::events("events")).await.unwrap();
        assert!(events.read_back().is_none());
    }

    #[tokio::test]
    async fn sqlite_tampering_is_found_and_repaired_exactly() {
        capture();
        let dir = TempDir::new();
        let file = dir.file("app.db");
        let source = MemorySource::new(people_schema(), people());
        let sync =
            build(&unique_id("people"), &source, destination(&file, "people").await, &dir.file("state.db")).await;
        synced(&sync, &source).await;

        let conn = Connection::open(&file).unwrap();
        conn.execute("DELETE FROM people WHERE email = ?1", [email(1)]).unwrap();
        conn.execute("UPDATE people SET plan = 'edited by hand' WHERE email = ?1", [email(2)]).unwrap();
        let insert = "INSERT INTO people (email, plan) VALUES (?1, 'restored by hand')";
        conn.execute(insert, [email(20)]).unwrap();
        conn.execute(insert, [email(1000)]).unwrap();
        // Every write from here on, by row.
        conn.execute_batch(
            "CREATE TABLE writes (email TEXT, op TEXT);
             CREATE TRIGGER w_insert AFTER INSERT ON people BEGIN INSERT INTO writes VALUES (new.email, 'insert'); END;
             CREATE TRIGGER w_update AFTER UPDATE ON people BEGIN INSERT INTO writes VALUES (new.email, 'update'); END;
             CREATE TRIGGER w_delete AFTER DELETE ON people BEGIN INSERT INTO writes VALUES (old.email, 'delete'); END;",
        )
        .unwrap();

        let report = sync.verify(&VerifyOptions::default().with_read_batch(5).with_page_size(4)).await.unwrap();
        assert_found(&report);
        assert_sample_repeats(&sync, &report).await;
        let repaired = sync.repair(&report).await.unwrap();

        let mut statement = conn.prepare("SELECT email, op FROM writes ORDER BY email, op").unwrap();
        let writes: Vec<(String, String)> =
            statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
        let mut expected =
            vec![(email(1), "insert".to_owned()), (email(2), "update".to_owned()), (email(20), "delete".to_owned())];
        expected.sort();
        assert_eq!(writes, expected, "only the repaired rows were written");
        let foreign: String =
            conn.query_row("SELECT plan FROM people WHERE email = ?1", [email(1000)], |r| r.get(0)).unwrap();
        assert_eq!(foreign, "restored by hand", "the foreign row is untouched");
        assert_repaired(&sync, &repaired).await;

        assert_no_secrets(&[format!("{report}"), format!("{report:?}"), format!("{repaired}")]);
    }
}

// ---------------------------------------------------------------------------------------
#[cfg(all(feature = "redis", feature = "sqlite"))]
mod redis_hashes {
    use std::time::Duration;

    use redis::AsyncCommands;
    use redis::aio::ConnectionManager;
    use rse_connectors::{RedisDestination, RedisDestinationOptions};
    use rse_core::testing::{service_url, unavailable};

    use super::*;

    fn url() -> String {
        service_url("RSE_REDIS_URL", "redis://127.0.0.1:6379")
    }

    /// A connection and a fresh key prefix, whose keys are deleted at the end of the test.
    struct Keys {
        conn: ConnectionManager,
        prefix: String,
    }

    impl Keys {
        async fn new() -> Option<Keys> {
            let url = url();
            let client = redis::Client::open(url.as_str()).unwrap();
            match tokio::time::timeout(Duration::from_secs(5), ConnectionManager::new(client)).await {
                Ok(Ok(conn)) => Some(Keys { conn, prefix: unique_id("rse_reconcile") }),
                Ok(Err(e)) => {
                    unavailable("Redis", &url, e);
                    None
                }
                Err(e) => {
                    unavailable("Redis", &url, e);
                    None
                }
            }
        }

        async fn destination(&self, template: &str, ttl: Option<Duration>) -> RedisDestination {
            let mut options = RedisDestinationOptions::new(format!("{}:{template}", self.prefix));
            if let Some(ttl) = ttl {
                options = options.with_ttl(ttl);
            }
            RedisDestination::connect(&url(), options).await.unwrap()
        }

        async fn all(&self) -> Vec<String> {
            let mut conn = self.conn.clone();
            conn.keys(format!("{}:*", self.prefix)).await.unwrap()
        }

        async fn clean(self) {
            let keys = self.all().await;
            if !keys.is_empty() {
                let mut conn = self.conn.clone();
                let _: () = conn.del(keys).await.unwrap();
            }
        }
    }

    /// The Redis key of `i` as the destination writes it (`:`, `%`, braces escaped).
    fn redis_key(prefix: &str, i: i64) -> String {
        let escaped: String = email(i)
            .chars()
            .map(|c| if matches!(c, '%' | ':' | '{' | '}') { format!("%{:02X}", c as u32) } else { c.to_string() })
            .collect();
        format!("{prefix}:people:{escaped}")
    }

    #[tokio::test]
    async fn every_type_reads_back_from_redis_as_written() {
        let Some(keys) = Keys::new().await else { return };
        let dir = TempDir::new();
        let (schema, rows) = all_types_schema(true);
        let destination = Arc::new(keys.destination("types:{sync_id}:{id}", None).await);
        let source = MemorySource::new(schema.clone(), rows.clone());
        let sync = build(&unique_id("types"), &source, destination.clone(), &dir.file("state.db")).await;
        assert_round_trip(&sync, destination.as_ref(), &schema, &rows).await;
        keys.clean().await;
    }

    #[tokio::test]
    async fn redis_tampering_is_found_and_repaired_exactly() {
        capture();
        let Some(keys) = Keys::new().await else { return };
        let dir = TempDir::new();
        let prefix = keys.prefix.clone();
        let source = MemorySource::new(people_schema(), people());
        // A TTL, set again by every write: what tells a rewritten hash from an untouched one.
        let day = Duration::from_secs(86_400);
        let destination = keys.destination("people:{email}", Some(day)).await;
        let sync = build(&unique_id("people"), &source, destination, &dir.file("state.db")).await;
        synced(&sync, &source).await;

        let mut conn = keys.conn.clone();
        let _: () = conn.del(redis_key(&prefix, 1)).await.unwrap();
        let _: () = conn.hset(redis_key(&prefix, 2), "plan", "edited by hand").await.unwrap();
        for i in [20, 1000] {
            let fields = [("email", email(i)), ("plan", "restored by hand".to_owned())];
            let _: () = conn.hset_multiple(redis_key(&prefix, i), &fields).await.unwrap();
        }
        // Every hash the sync wrote expires sooner than a day from now: a rewrite resets it.
        for i in 0..20 {
            let _: () = conn.expire(redis_key(&prefix, i), 10_000).await.unwrap();
        }

        let report = sync.verify(&VerifyOptions::default().with_read_batch(5).with_page_size(4)).await.unwrap();
        assert_found(&report);
        assert_sample_repeats(&sync, &report).await;
        let repaired = sync.repair(&report).await.unwrap();

        let mut rewritten = BTreeSet::new();
        for i in (0..=20).chain([1000]) {
            let ttl: i64 = conn.ttl(redis_key(&prefix, i)).await.unwrap();
            if ttl > 10_000 {
                rewritten.insert(i);
            }
        }
        assert_eq!(rewritten, BTreeSet::from([1, 2]), "only the repaired hashes were written");
        let exists: bool = conn.exists(redis_key(&prefix, 20)).await.unwrap();
        assert!(!exists, "the extra hash is deleted");
        let foreign: String = conn.hget(redis_key(&prefix, 1000), "plan").await.unwrap();
        assert_eq!(foreign, "restored by hand", "the foreign hash is untouched");
        let plan: String = conn.hget(redis_key(&prefix, 2), "plan").await.unwrap();
        assert_eq!(plan, format!("{SECRET}-gold"));
        assert_repaired(&sync, &repaired).await;

        assert_no_secrets(&[format!("{report}"), format!("{report:?}"), format!("{repaired}")]);
        keys.clean().await;
    }
}
