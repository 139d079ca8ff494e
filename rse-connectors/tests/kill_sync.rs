//! The process-kill test: a real sync — a SQLite source table of 20,000 rows edited between
//! runs, a durable state store, and a destination writing a PostgreSQL table that logs every
//! idempotency key it receives — killed with SIGKILL at random moments and restarted, for
//! each store. At the end the destination equals the source, nothing was applied twice, no
//! change went out under two idempotency keys, and the state holds nothing the destination
//! did not receive.
//!
//! The test re-runs its own binary as the worker (`kill_worker`, selected by
//! `RSE_KILL_WORKER`), so each kill is a real process death: an open SQLite transaction,
//! a PostgreSQL transaction cut off, a lease left to lapse. `RSE_KILLS` sets the kills per
//! store (default 25); `RSE_KILL_NEVER` runs eight edit-and-run cycles without killing, as
//! a control when this test fails.
//!
//! A third variant runs exactly-once: the real `PostgresDestination` committing the state
//! into a `PostgresStateStore` of the same database with each batch's rows. There, after
//! every kill, the state must equal the table (every row's fingerprint, nothing pending),
//! and a trigger that logs every row write must never see the same values written to a row
//! twice in a row.
#![cfg(all(feature = "sqlite", feature = "postgres"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/child_run.rs"]
mod child_run;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use rse_connectors::state::{PostgresStateStore, SqliteStateStore};
use rse_connectors::{PostgresDestination, PostgresDestinationOptions};
use rse_core::state::SnapshotEntry;
use rse_core::testing::{service_url, unavailable, unique_id};
use rse_core::*;

const ROWS: i64 = 20_000;
// A second: short enough that a killed worker's lease lapses quickly, long enough that a
// renewal delayed by a loaded machine does not fence a live one.
const LEASE_TTL: Duration = Duration::from_secs(1);

fn pg_url() -> String {
    service_url("RSE_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
}

fn schema() -> Arc<Schema> {
    Schema::new(
        vec![
            Field::required("id", DataType::Int),
            Field::new("name", DataType::String),
            Field::new("score", DataType::Float),
        ],
        &["id"],
    )
    .unwrap()
    .into_arc()
}

async fn pg() -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// A source reading the `customers` table of a SQLite file, in key order.
struct SqliteTable {
    path: PathBuf,
    schema: Arc<Schema>,
}

#[async_trait]
impl Source for SqliteTable {
    fn name(&self) -> &str {
        "sqlite:customers"
    }

    fn capabilities(&self) -> SourceCapabilities {
        SourceCapabilities::default().with_ordered_by_key(true)
    }

    async fn schema(&self) -> Result<Arc<Schema>, SourceError> {
        Ok(self.schema.clone())
    }

    async fn read(&self, request: ReadRequest) -> Result<RowBatchStream<'_>, SourceError> {
        let path = self.path.clone();
        let rows = tokio::task::spawn_blocking(move || -> rusqlite::Result<Vec<Record>> {
            let conn = rusqlite::Connection::open(path)?;
            let mut stmt = conn.prepare("SELECT id, name, score FROM customers ORDER BY id")?;
            let rows = stmt.query_map([], |r| {
                Ok(Record::new(vec![Value::Int(r.get(0)?), Value::String(r.get(1)?), Value::Float(r.get(2)?)]))
            })?;
            rows.collect()
        })
        .await
        .unwrap()
        .map_err(|e| SourceError::Unavailable { message: e.to_string(), source: None })?;
        let schema = self.schema.clone();
        let batches: Vec<_> =
            rows.chunks(request.batch_size.max(1)).map(|c| Ok(RowBatch::new(schema.clone(), c.to_vec()))).collect();
        Ok(futures::stream::iter(batches).boxed())
    }
}

/// A destination writing `dest` in PostgreSQL, honouring idempotency keys, and logging
/// every change it receives — with whether it applied it — in the same transaction.
struct LoggingPostgres {
    /// One connection, one transaction at a time: concurrent writes take turns.
    client: tokio::sync::Mutex<tokio_postgres::Client>,
    schema: String,
}

#[async_trait]
impl Destination for LoggingPostgres {
    fn name(&self) -> &str {
        "postgres:dest"
    }

    fn capabilities(&self) -> DestinationCapabilities {
        DestinationCapabilities::new([Op::Insert, Op::Update, Op::Delete]).with_idempotency_keys(true)
    }

    async fn check(&self) -> Result<(), DestinationError> {
        Ok(())
    }

    async fn write(&self, batch: &ChangeBatch) -> Result<WriteOutcome, DestinationError> {
        let s = &self.schema;
        let fail = |e: tokio_postgres::Error| DestinationError::Transient { message: e.to_string(), source: None };
        let idems: Vec<&[u8]> = batch.changes.iter().map(|c| &c.idempotency_key.0[..]).collect();
        let client = self.client.lock().await;
        client.batch_execute("BEGIN").await.map_err(fail)?;
        let result = async {
            let new: HashSet<Vec<u8>> = client
                .query(
                    &format!("INSERT INTO \"{s}\".applied_keys (idem) SELECT unnest($1::bytea[]) ON CONFLICT DO NOTHING RETURNING idem"),
                    &[&idems],
                )
                .await?
                .iter()
                .map(|r| r.get::<_, Vec<u8>>(0))
                .collect();
            let (mut up_ids, mut up_names, mut up_scores, mut del_ids) = (vec![], vec![], vec![], vec![]);
            for c in batch.changes.iter().filter(|c| new.contains(&c.idempotency_key.0[..])) {
                let id = c.key.decode().unwrap()[0].as_i64().unwrap();
                match (c.op, &c.record) {
                    (Op::Delete, _) => del_ids.push(id),
                    (_, Some(r)) => {
                        up_ids.push(id);
                        up_names.push(r.values[1].as_str().unwrap().to_owned());
                        up_scores.push(match r.values[2] {
                            Value::Float(f) => f,
                            _ => panic!("score is a float"),
                        });
                    }
                    (op, None) => panic!("{op} without a record"),
                }
            }
            client
                .execute(
                    &format!(
                        "INSERT INTO \"{s}\".dest (id, name, score) SELECT * FROM unnest($1::bigint[], $2::text[], $3::float8[])
                         ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, score = EXCLUDED.score"
                    ),
                    &[&up_ids, &up_names, &up_scores],
                )
                .await?;
            client.execute(&format!("DELETE FROM \"{s}\".dest WHERE id = ANY($1)"), &[&del_ids]).await?;
            let keys: Vec<&[u8]> = batch.changes.iter().map(|c| c.key.as_bytes()).collect();
            let ops: Vec<String> = batch.changes.iter().map(|c| c.op.to_string()).collect();
            let fps: Vec<Vec<u8>> = batch.changes.iter().map(|c| c.fingerprint.to_bytes().to_vec()).collect();
            let versions: Vec<i64> = batch.changes.iter().map(|c| c.version as i64).collect();
            let applied: Vec<bool> = batch.changes.iter().map(|c| new.contains(&c.idempotency_key.0[..])).collect();
            client
                .execute(
                    &format!(
                        "INSERT INTO \"{s}\".log (idem, key, op, fp, version, applied)
                         SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::text[], $4::bytea[], $5::bigint[], $6::bool[])"
                    ),
                    &[&idems, &keys, &ops, &fps, &versions, &applied],
                )
                .await?;
            Ok::<_, tokio_postgres::Error>(())
        }
        .await;
        match result {
            Ok(()) => client.batch_execute("COMMIT").await.map_err(fail)?,
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(fail(e));
            }
        }
        Ok(WriteOutcome::all_applied(batch.changes.len()))
    }
}

/// The worker: runs the sync once to the end (waiting out a dead runner's lease), then
/// prints what it planned. Run as a normal test it returns at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_worker() {
    let Ok(store_kind) = std::env::var("RSE_KILL_WORKER") else { return };
    let source = PathBuf::from(std::env::var("RSE_KILL_SOURCE").unwrap());
    let dest_schema = std::env::var("RSE_KILL_DEST_SCHEMA").unwrap();
    let state_at = std::env::var("RSE_KILL_STATE").unwrap();
    let options = SyncOptions::default()
        .with_batch_rows(500)
        .with_max_concurrency(2)
        .with_lease_ttl(LEASE_TTL)
        .with_max_deletes(None)
        .with_holder(format!("pid {}", std::process::id()))
        .with_diff_strategy(if store_kind == "sqlite" { DiffStrategy::Merge } else { DiffStrategy::Hash });
    let builder = SyncJob::builder("customers")
        .source(SqliteTable { path: source, schema: schema() })
        .mode(Mode::Mirror)
        .options(options);
    let logging = LoggingPostgres { client: tokio::sync::Mutex::new(pg().await.unwrap()), schema: dest_schema.clone() };
    let builder = match store_kind.as_str() {
        "sqlite" => builder.destination(logging).state(SqliteStateStore::open(&state_at).await.unwrap()),
        "postgres" => {
            builder.destination(logging).state(PostgresStateStore::connect(&pg_url(), &state_at).await.unwrap())
        }
        _ => {
            let store = PostgresStateStore::connect(&pg_url(), &state_at).await.unwrap();
            let options = PostgresDestinationOptions::new("dest").with_schema(&dest_schema);
            let destination = PostgresDestination::new(&pg_url(), options).unwrap().with_state_store(store.clone());
            builder.destination(destination).state(store)
        }
    };
    let sync = builder.build().await.unwrap();
    crate::child_run::run_after_the_lease_lapses(&sync).await;
}

fn create_source(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL NOT NULL); BEGIN;",
    )
    .unwrap();
    {
        let mut insert = conn.prepare("INSERT INTO customers VALUES (?1, ?2, ?3)").unwrap();
        for id in 1..=ROWS {
            insert.execute(rusqlite::params![id, format!("customer {id}"), (id % 4) as f64]).unwrap();
        }
    }
    conn.execute_batch("COMMIT").unwrap();
}

/// Random edits: scores flip among four values (so a row often changes and changes back),
/// rows are deleted, and deleted or new ids come (back) in.
fn edit_source(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("BEGIN").unwrap();
    for _ in 0..300 {
        let id = fastrand::i64(1..=ROWS + 500);
        conn.execute(
            "INSERT INTO customers VALUES (?1, ?2, ?3) ON CONFLICT (id) DO UPDATE SET score = excluded.score",
            rusqlite::params![id, format!("customer {id}"), fastrand::u8(0..4) as f64],
        )
        .unwrap();
    }
    for _ in 0..60 {
        conn.execute("DELETE FROM customers WHERE id = ?1", [fastrand::i64(1..=ROWS + 500)]).unwrap();
    }
    conn.execute_batch("COMMIT").unwrap();
}

fn source_rows(path: &Path) -> BTreeMap<i64, (String, f64)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn.prepare("SELECT id, name, score FROM customers").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?)))).unwrap().map(Result::unwrap).collect()
}

struct World {
    dir: PathBuf,
    source: PathBuf,
    schema: String,
    store_kind: &'static str,
}

impl World {
    fn state_at(&self) -> String {
        match self.store_kind {
            "sqlite" => self.dir.join("state.db").display().to_string(),
            _ => self.schema.clone(),
        }
    }

    fn spawn(&self) -> std::process::Child {
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "kill_worker", "--nocapture", "--test-threads", "1"])
            .env("RSE_KILL_WORKER", self.store_kind)
            .env("RSE_KILL_SOURCE", &self.source)
            .env("RSE_KILL_DEST_SCHEMA", &self.schema)
            .env("RSE_KILL_STATE", self.state_at())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Runs the worker to the end; returns how many changes it planned.
    fn run_to_end(&self) -> u64 {
        let out = self.spawn().wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "worker failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        stdout.split("RESULT planned=").nth(1).and_then(|t| t.split_whitespace().next()).unwrap().parse().unwrap()
    }

    async fn state(&self) -> Vec<SnapshotEntry> {
        let store: Box<dyn StateStore> = match self.store_kind {
            "sqlite" => Box::new(SqliteStateStore::open(self.state_at()).await.unwrap()),
            _ => Box::new(PostgresStateStore::connect(&pg_url(), &self.schema).await.unwrap()),
        };
        let mut all = Vec::new();
        let mut after: Option<Key> = None;
        loop {
            let page = store.scan("customers", after.as_ref(), 10_000).await.unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.key.clone());
            all.extend(page);
        }
        all
    }
}

/// One logged delivery: (idempotency key, key, op, fingerprint, version, applied).
type Logged = (Vec<u8>, Vec<u8>, String, Vec<u8>, i64, bool);

/// What identifies a change: (key, op, fingerprint, version).
type ChangeId<'a> = (&'a [u8], &'a str, &'a [u8], i64);

async fn survives_sigkill(store_kind: &'static str) {
    let admin = match pg().await {
        Ok(c) => c,
        Err(e) => return unavailable("PostgreSQL", &pg_url(), e),
    };
    let dir = std::env::temp_dir().join(unique_id("rse_kill"));
    std::fs::create_dir_all(&dir).unwrap();
    let world = World { source: dir.join("source.db"), dir, schema: unique_id("rse_kill"), store_kind };
    let s = &world.schema;
    admin
        .batch_execute(&format!(
            "CREATE SCHEMA \"{s}\";
             CREATE TABLE \"{s}\".dest (id bigint PRIMARY KEY, name text NOT NULL, score float8 NOT NULL);
             CREATE TABLE \"{s}\".applied_keys (idem bytea PRIMARY KEY);
             CREATE TABLE \"{s}\".log (seq bigserial PRIMARY KEY, idem bytea NOT NULL, key bytea NOT NULL, op text NOT NULL,
                                       fp bytea NOT NULL, version bigint NOT NULL, applied bool NOT NULL);
             CREATE TABLE \"{s}\".writes (seq bigserial PRIMARY KEY, id bigint NOT NULL, op text NOT NULL, name text,
                                          score float8);
             CREATE FUNCTION \"{s}\".log_write() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
               IF TG_OP = 'DELETE' THEN INSERT INTO \"{s}\".writes (id, op) VALUES (OLD.id, TG_OP); RETURN OLD; END IF;
               INSERT INTO \"{s}\".writes (id, op, name, score) VALUES (NEW.id, TG_OP, NEW.name, NEW.score); RETURN NEW;
             END $$;"
        ))
        .await
        .unwrap();
    let exactly_once = store_kind == "exactly_once";
    if exactly_once {
        admin
            .batch_execute(&format!(
                "CREATE TRIGGER logged AFTER INSERT OR UPDATE OR DELETE ON \"{s}\".dest
                 FOR EACH ROW EXECUTE FUNCTION \"{s}\".log_write();"
            ))
            .await
            .unwrap();
    }
    create_source(&world.source);

    let kills_wanted: u32 = std::env::var("RSE_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(25);
    let (mut kills, mut completed) = (0u32, 0u32);
    let deadline = Instant::now() + Duration::from_secs(150);
    let never = std::env::var("RSE_KILL_NEVER").is_ok();
    let mut cycles = 0;
    let mut typical = Duration::from_millis(1_500);
    while kills < kills_wanted && Instant::now() < deadline && cycles < if never { 8 } else { 200 } {
        cycles += 1;
        let spawned = Instant::now();
        let mut child = world.spawn();
        // Early kills land in the first full load; later ones anywhere in a run as long as
        // the last run that finished.
        let delay = Duration::from_millis(fastrand::u64(20..typical.as_millis().max(50) as u64));
        tokio::time::sleep(delay).await;
        let signalled = std::env::var("RSE_KILL_NEVER").is_err() && child.try_wait().unwrap().is_none();
        if signalled {
            child.kill().unwrap(); // SIGKILL
        }
        let out = child.wait_with_output().unwrap();
        if out.status.code().is_none() {
            kills += 1;
        } else {
            // It finished before the kill: it must have succeeded.
            assert!(out.status.success(), "worker failed:\n{}", String::from_utf8_lossy(&out.stderr));
            completed += 1;
            typical = spawned.elapsed();
        }
        if exactly_once {
            state_equals_table(&world, &admin).await;
        }
        edit_source(&world.source);
    }
    assert!(
        never || kills >= kills_wanted.min(10),
        "only {kills} kills in the time allowed ({completed} runs completed)"
    );

    // Faults stop: one run converges, the next has nothing to do.
    world.run_to_end();
    assert_eq!(world.run_to_end(), 0, "a run after convergence planned changes");

    // The destination equals the source.
    let want = source_rows(&world.source);
    let got: BTreeMap<i64, (String, f64)> = admin
        .query(&format!("SELECT id, name, score FROM \"{s}\".dest"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    assert_eq!(got.len(), want.len(), "the destination holds {} rows, the source {}", got.len(), want.len());
    assert!(got == want, "the destination does not equal the source");

    if exactly_once {
        state_equals_table(&world, &admin).await;
        same_values_never_written_twice(&world, &admin).await;
        eprintln!("{store_kind}: {kills} kills, {completed} runs completed");
        admin.batch_execute(&format!("DROP SCHEMA \"{s}\" CASCADE")).await.unwrap();
        let _ = std::fs::remove_dir_all(&world.dir);
        return;
    }

    let log: Vec<Logged> = admin
        .query(&format!("SELECT idem, key, op, fp, version, applied FROM \"{s}\".log ORDER BY seq"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect();
    // A change — (key, op, fingerprint, version) — only ever went out under one idempotency
    // key, and the destination applied it at most once.
    let mut idem_of: HashMap<ChangeId<'_>, &[u8]> = HashMap::new();
    let mut applied: HashSet<ChangeId<'_>> = HashSet::new();
    for (idem, key, op, fp, version, was_applied) in &log {
        let change = (&key[..], op.as_str(), &fp[..], *version);
        let first = idem_of.entry(change).or_insert(&idem[..]);
        assert_eq!(*first, &idem[..], "a change went out under two idempotency keys");
        if *was_applied {
            assert!(applied.insert(change), "a change (version {version}) was applied twice");
        }
    }
    let resent = log.iter().filter(|l| !l.5).count();
    // Every live or tombstoned entry of the state matches a change the destination received.
    let state = world.state().await;
    for entry in state.iter().filter(|e| e.version > 0) {
        let received = log.iter().any(|(_, key, op, fp, version, _)| {
            key[..] == *entry.key.as_bytes()
                && *version as u64 + 1 == entry.version
                && match entry.fingerprint {
                    Some(f) => op != "DELETE" && op != "delete" && fp[..] == f.to_bytes(),
                    None => op == "DELETE" || op == "delete",
                }
        });
        assert!(received, "state holds {entry:?}, which the destination never received");
    }
    assert!(state.iter().all(|e| e.pending.is_none()), "intents left pending after convergence");
    eprintln!(
        "{store_kind}: {kills} kills, {completed} runs completed, {} deliveries logged, {resent} re-sent duplicates dropped",
        log.len()
    );
    admin.batch_execute(&format!("DROP SCHEMA \"{s}\" CASCADE")).await.unwrap();
    let _ = std::fs::remove_dir_all(&world.dir);
}

/// Exactly-once: the state's live entries are exactly the table's rows with their
/// fingerprints, and nothing is pending.
async fn state_equals_table(world: &World, admin: &tokio_postgres::Client) {
    let s = &world.schema;
    // A COMMIT the killed worker sent just before the kill may still be landing on the
    // server. Each exactly-once commit holds the sync's state row locked until it ends, so
    // taking that lock waits for any such commit; after it, nothing more can land. A worker
    // killed before the state store's tables were first created committed nothing (an
    // exactly-once commit needs them), so there is no lock to take.
    let exists: bool =
        admin.query_one("SELECT to_regclass($1) IS NOT NULL", &[&format!("\"{s}\".rse_syncs")]).await.unwrap().get(0);
    if exists {
        admin
            .batch_execute(&format!(
                "BEGIN; SELECT 1 FROM \"{s}\".rse_syncs WHERE sync_id = 'customers' FOR UPDATE; COMMIT;"
            ))
            .await
            .unwrap();
    }
    let mut fingerprinter = Fingerprinter::new(FingerprintAlgorithm::default(), &schema());
    let table: BTreeMap<Key, Fingerprint> = admin
        .query(&format!("SELECT id, name, score FROM \"{s}\".dest"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let record = Record::new(vec![Value::Int(r.get(0)), Value::String(r.get(1)), Value::Float(r.get(2))]);
            (record.key(&schema()).unwrap(), fingerprinter.fingerprint(&record))
        })
        .collect();
    let state = world.state().await;
    assert!(state.iter().all(|e| e.pending.is_none()), "an exactly-once run left a change pending");
    let live: BTreeMap<Key, Fingerprint> =
        state.into_iter().filter_map(|e| e.fingerprint.map(|f| (e.key, f))).collect();
    assert_eq!(live.len(), table.len(), "the state holds {} live keys, the table {} rows", live.len(), table.len());
    assert!(live == table, "the state and the table disagree");
}

/// Exactly-once: no row was ever written the same values twice in a row (a change applied
/// again after a crash would be).
async fn same_values_never_written_twice(world: &World, admin: &tokio_postgres::Client) {
    let s = &world.schema;
    let writes =
        admin.query(&format!("SELECT id, op, name, score FROM \"{s}\".writes ORDER BY seq"), &[]).await.unwrap();
    assert!(!writes.is_empty(), "the trigger logged no write");
    let mut last: HashMap<i64, (String, Option<String>, Option<f64>)> = HashMap::new();
    for w in &writes {
        let (id, write): (i64, (String, Option<String>, Option<f64>)) = (w.get(0), (w.get(1), w.get(2), w.get(3)));
        let deleted_twice = write.0 == "DELETE" && last.get(&id).is_some_and(|l| l.0 == "DELETE");
        let same =
            write.0 != "DELETE" && last.get(&id).is_some_and(|l| l.0 != "DELETE" && l.1 == write.1 && l.2 == write.2);
        assert!(!deleted_twice && !same, "row {id} was written the same change twice");
        last.insert(id, write);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_survives_sigkill_with_state_and_rows_equal_after_every_kill() {
    survives_sigkill("exactly_once").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_state_survives_sigkill_at_random_moments() {
    survives_sigkill("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_state_survives_sigkill_at_random_moments() {
    survives_sigkill("postgres").await;
}
