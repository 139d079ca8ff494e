//! The pushdown convergence property on the real PostgreSQL: random models (a table keyed by
//! an integer, with a text and an integer column, some NULLs), random edits made with SQL
//! between runs (upserts, one column changed, deletes, deleted keys inserted again, rows
//! reverted to a version they held earlier), and random faults in each Mirror run of a
//! `PostgresSource` with the warehouse-side diff into a `MemoryDestination`: refused rows,
//! invalid batches, transient failures (before and after the write landed), rate limits
//! (without `Retry-After`: the clock is real), a crash at a random point, and failing writes
//! to rse's tables in the pushdown schema. Half the cases deliver exactly-once (the state
//! committed with the rows, and then equal to the destination after every run), half keep
//! the destination's record ids as memos.
//!
//! Once the faults stop, the destination equals the model (read with SQL), nothing was
//! applied twice, every refused row was delivered, and the state never held a fingerprint
//! the destination did not receive. After every run, crashed or not, the hash table of the
//! sync keeps a row for every key the destination holds, and a non-NULL hash only where it
//! is `hash_record_extended` of the row the destination holds (the source's own hash of the
//! model row once they agree). After convergence a run reads no row, and the run after it
//! nothing at all (the first may settle deletes acknowledged by a crashed run once).
//!
//! How the faults are made:
//! - A crash: `FaultyDestination` stops answering mid-write and the run's future is dropped,
//!   as `rse-core/tests/convergence.rs` does. Each run builds its job and source anew, as
//!   a new process would; after a crash the test waits until the server has closed every
//!   connection of the crashed run (so the hash table is what the killed process left) and
//!   until its lease lapsed (a run that may crash takes a short lease; the clock is real,
//!   as the driver's I/O needs).
//! - Failing writes to the hash table and the syncs table: a statement trigger, installed
//!   by the test once the tables exist (so not in the first run), counts every write
//!   statement on them with a sequence and raises on the ordinals the run's faults name.
//!   No code of the source is replaced; the server refuses the statements.
//!
//! Needs PostgreSQL 14 or later at `RSE_POSTGRES_URL` (default the local server); skipped
//! when it is unreachable, failed then under `CI=true`. Runs 24 cases; set
//! `RSE_PG_CONVERGENCE_CASES` for more.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
use rse::memory::{MemoryDestination, MemoryStateStore};
use rse::sources::Model;
use rse::sources::postgres::PostgresSource;
use rse::testing::{FaultyDestination, service_url, unavailable, unique_id};
use rse::{
    DestinationCapabilities, DiffStrategy, Key, Mode, Op, Record, RunStatus, SyncJob, SyncOptions, SyncReport, Value,
};
use tokio_postgres::{Client, NoTls};

#[path = "../rse-core/tests/common/checks.rs"]
mod checks;
use checks::*;

/// The sync's id (each case has its own state store and schemas).
const SYNC: &str = "customers";
/// Keys of the model: a few more than the largest table, so inserts find new keys.
const KEYS: std::ops::Range<i64> = 0..48;
const NAMES: [&str; 3] = ["ada", "bob", "cy"];
/// The lease of a run that cannot crash.
const TTL: Duration = Duration::from_secs(60);
/// The lease of a run that may crash: the next run waits for it to lapse.
const CRASH_TTL: Duration = Duration::from_millis(500);

/// What the faulted runs went through, over all cases: runs, crashed runs, runs that
/// failed or ended otherwise than succeeded, and failed writes to the hash table counted by
/// the runs' reports.
static RUNS: AtomicU64 = AtomicU64::new(0);
static CRASHED: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);
static RECORD_FAILURES: AtomicU64 = AtomicU64::new(0);

/// A model row's columns after the key: `name text`, `visits int8`.
type Row = (Option<String>, Option<i64>);

#[derive(Debug, Clone)]
enum Edit {
    /// `INSERT … ON CONFLICT (id) DO UPDATE` of the whole row.
    Upsert(i64, Row),
    /// `UPDATE` of one column (nothing when the key is absent).
    SetName(i64, Option<String>),
    SetVisits(i64, Option<i64>),
    Delete(i64),
    /// A key deleted earlier (picked by index among the absent keys that once were present)
    /// inserted again with the row it had.
    Reinsert(usize),
    /// A key (picked by index among those ever present) back to a row it held earlier,
    /// inserted again if it is absent.
    Revert(usize, usize),
}

#[derive(Debug, Clone, Default)]
struct Faults {
    reject: Vec<i64>,
    invalid: Option<i64>,
    transient: Vec<u64>,
    after_apply: Vec<u64>,
    rate_limited: Vec<u64>,
    crash_after: Option<u64>,
    /// Write statements to rse's tables in the pushdown schema that fail, numbered from 1
    /// in this run (an `INSERT … ON CONFLICT DO UPDATE` counts twice: its insert and its
    /// update statement triggers both fire).
    table_writes: Vec<u64>,
}

impl Faults {
    fn none(&self) -> bool {
        self.reject.is_empty()
            && self.invalid.is_none()
            && self.transient.is_empty()
            && self.after_apply.is_empty()
            && self.rate_limited.is_empty()
            && self.crash_after.is_none()
            && self.table_writes.is_empty()
    }
}

#[derive(Debug, Clone)]
struct Case {
    initial: BTreeMap<i64, Row>,
    runs: Vec<(Vec<Edit>, Faults)>,
    batch_rows: usize,
    concurrency: usize,
    /// The destination commits the state with its rows (exactly-once).
    exactly_once: bool,
    /// The destination assigns record ids and deletes by them, as a CRM does (memos).
    memos: bool,
    /// How many connections read each diff (`with_pushdown_readers`): from 2, each reads a
    /// slice of the keys cut at the hash table's histogram, once a run has analyzed it.
    readers: usize,
}

fn name() -> impl Strategy<Value = Option<String>> {
    prop::option::weighted(0.8, 0..NAMES.len()).prop_map(|n| n.map(|i| NAMES[i].to_owned()))
}

fn visits() -> impl Strategy<Value = Option<i64>> {
    prop::option::weighted(0.8, 0i64..3)
}

fn row() -> impl Strategy<Value = Row> {
    (name(), visits())
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (KEYS, row()).prop_map(|(k, r)| Edit::Upsert(k, r)),
        2 => (KEYS, name()).prop_map(|(k, n)| Edit::SetName(k, n)),
        2 => (KEYS, visits()).prop_map(|(k, v)| Edit::SetVisits(k, v)),
        2 => KEYS.prop_map(Edit::Delete),
        1 => any::<usize>().prop_map(Edit::Reinsert),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(k, v)| Edit::Revert(k, v)),
    ]
}

fn faults() -> impl Strategy<Value = Faults> {
    (
        prop::collection::vec(KEYS, 0..3),
        prop::option::weighted(0.15, KEYS),
        prop::collection::vec(1u64..12, 0..3),
        prop::collection::vec(1u64..12, 0..2),
        prop::collection::vec(1u64..12, 0..2),
        prop::option::weighted(0.4, 0u64..16),
        prop::collection::vec(1u64..16, 0..3),
    )
        .prop_map(|(reject, invalid, transient, after_apply, rate_limited, crash_after, table_writes)| Faults {
            reject,
            invalid,
            transient,
            after_apply,
            rate_limited,
            crash_after,
            table_writes,
        })
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::sample::subsequence(KEYS.collect::<Vec<_>>(), 0..=40),
        prop::collection::vec(row(), 40),
        prop::collection::vec((prop::collection::vec(edit(), 0..12), faults()), 2..=5),
        1usize..8,
        1usize..4,
        any::<bool>(),
        any::<bool>(),
        1usize..=3,
    )
        .prop_map(|(keys, rows, runs, batch_rows, concurrency, exactly_once, memos, readers)| Case {
            initial: keys.into_iter().zip(rows).collect(),
            runs,
            batch_rows,
            concurrency,
            exactly_once,
            memos,
            readers,
        })
}

fn cases() -> u32 {
    std::env::var("RSE_PG_CONVERGENCE_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24)
}

fn key(id: i64) -> Key {
    Key::from_values(&[Value::Int(id)])
}

/// A destination record as a model row (`id`, `name`, `visits`).
fn row_of(record: &Record) -> (i64, Row) {
    let int = |v: &Value| match v {
        Value::Int(i) => Some(*i),
        Value::Null => None,
        other => panic!("an int8 column holds {other:?}"),
    };
    let name = match &record.values[1] {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => panic!("the text column holds {other:?}"),
    };
    (int(&record.values[0]).expect("a key"), (name, int(&record.values[2])))
}

/// What the destination holds, as model rows.
fn held(dest: &MemoryDestination) -> BTreeMap<i64, Row> {
    dest.records().values().map(row_of).collect()
}

/// The model: the rows, and every row each key ever held (for reverts).
#[derive(Debug, Default)]
struct Table {
    rows: BTreeMap<i64, Row>,
    history: BTreeMap<i64, Vec<Row>>,
}

impl Table {
    fn set(&mut self, id: i64, row: Row) {
        self.history.entry(id).or_default().push(row.clone());
        self.rows.insert(id, row);
    }
}

/// The schemas of one case, dropped when it ends, passed or failed: the connections of
/// its runs (named by `application_name`) are ended first, so that none holds a lock.
struct Schemas {
    url: String,
    schema: String,
    hashes: String,
}

impl Drop for Schemas {
    fn drop(&mut self) {
        let (url, schema, hashes) = (self.url.clone(), self.schema.clone(), self.hashes.clone());
        // A runtime of its own: this may run while the case's runtime unwinds.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let Ok((client, connection)) = tokio_postgres::connect(&url, NoTls).await else { return };
                tokio::spawn(connection);
                let _ = client
                    .batch_execute(&format!(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{schema}';
                         SET lock_timeout = '5s';
                         DROP SCHEMA IF EXISTS \"{schema}\" CASCADE; DROP SCHEMA IF EXISTS \"{hashes}\" CASCADE;"
                    ))
                    .await;
            });
        })
        .join();
        if dropped.is_err() {
            eprintln!("could not drop schemas {} and {}", self.schema, self.hashes);
        }
    }
}

/// One case on the server: its schemas, its model table and the test's fault trigger.
struct World {
    client: Client,
    schemas: Schemas,
    /// The source's URL: the test server's, with the case's `application_name`.
    source_url: String,
    /// Whether the fault trigger is on rse's tables yet.
    trigger: bool,
}

impl World {
    async fn new(url: &str, client: Client, initial: &BTreeMap<i64, Row>) -> Self {
        let schema = unique_id("rse_pdc");
        let hashes = format!("{schema}_hashes");
        let schemas = Schemas { url: url.to_owned(), schema: schema.clone(), hashes: hashes.clone() };
        client
            .batch_execute(&format!(
                "CREATE SCHEMA \"{schema}\"; CREATE SCHEMA \"{hashes}\";
                 CREATE TABLE \"{schema}\".model (id int8 PRIMARY KEY, name text, visits int8);
                 CREATE SEQUENCE \"{schema}\".table_writes;
                 CREATE TABLE \"{schema}\".failing_writes (n int8 PRIMARY KEY);
                 CREATE FUNCTION \"{schema}\".fail_table_write() RETURNS trigger LANGUAGE plpgsql AS $f$
                 DECLARE ordinal int8 := nextval('\"{schema}\".table_writes');
                 BEGIN
                   IF EXISTS (SELECT 1 FROM \"{schema}\".failing_writes w WHERE w.n = ordinal) THEN
                     RAISE EXCEPTION 'injected failure of write % to %', ordinal, TG_TABLE_NAME;
                   END IF;
                   RETURN NULL;
                 END $f$;"
            ))
            .await
            .unwrap();
        for (&id, (name, visits)) in initial {
            client
                .execute(&format!("INSERT INTO \"{schema}\".model VALUES ($1, $2, $3)"), &[&id, name, visits])
                .await
                .unwrap();
        }
        let separator = if url.contains('?') { '&' } else { '?' };
        let source_url = format!("{url}{separator}application_name={schema}");
        Self { client, schemas, source_url, trigger: false }
    }

    fn model(&self) -> String {
        format!("\"{}\".model", self.schemas.schema)
    }

    /// Inserts or replaces the row of `id` with SQL.
    async fn upsert(&self, id: i64, row: &Row) {
        let sql = format!(
            "INSERT INTO {} VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, visits = EXCLUDED.visits",
            self.model()
        );
        self.client.execute(&sql, &[&id, &row.0, &row.1]).await.unwrap();
    }

    /// Applies `edit` to the model table with SQL, and to `table`.
    async fn apply(&self, table: &mut Table, edit: &Edit) {
        let model = self.model();
        match edit {
            Edit::Upsert(id, row) => {
                self.upsert(*id, row).await;
                table.set(*id, row.clone());
            }
            Edit::SetName(id, name) => {
                self.client.execute(&format!("UPDATE {model} SET name = $2 WHERE id = $1"), &[id, name]).await.unwrap();
                if let Some((_, visits)) = table.rows.get(id).cloned() {
                    table.set(*id, (name.clone(), visits));
                }
            }
            Edit::SetVisits(id, visits) => {
                self.client
                    .execute(&format!("UPDATE {model} SET visits = $2 WHERE id = $1"), &[id, visits])
                    .await
                    .unwrap();
                if let Some((name, _)) = table.rows.get(id).cloned() {
                    table.set(*id, (name, *visits));
                }
            }
            Edit::Delete(id) => {
                self.client.execute(&format!("DELETE FROM {model} WHERE id = $1"), &[id]).await.unwrap();
                table.rows.remove(id);
            }
            Edit::Reinsert(i) => {
                let gone: Vec<i64> = table.history.keys().copied().filter(|k| !table.rows.contains_key(k)).collect();
                if let Some(&id) = gone.get(i % gone.len().max(1)) {
                    let last = table.history[&id].last().cloned().unwrap();
                    self.upsert(id, &last).await;
                    table.set(id, last);
                }
            }
            Edit::Revert(k, v) => {
                let ever: Vec<i64> = table.history.keys().copied().collect();
                let Some(&id) = ever.get(k % ever.len().max(1)) else { return };
                let versions = &table.history[&id];
                // An earlier row than the current one (any row it held, when it is absent).
                let earlier = if table.rows.contains_key(&id) { &versions[..versions.len() - 1] } else { versions };
                if let Some(row) = earlier.get(v % earlier.len().max(1)).cloned() {
                    self.upsert(id, &row).await;
                    table.set(id, row);
                }
            }
        }
    }

    /// The model table, read with SQL.
    async fn rows(&self) -> BTreeMap<i64, Row> {
        self.client
            .query(&format!("SELECT id, name, visits FROM {} ORDER BY id", self.model()), &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect()
    }

    /// The sync's hash table (`<pushdown schema>.rse_pushdown_syncs.hash_table`), once a
    /// run created it.
    async fn hash_table(&self) -> Option<String> {
        let hashes = &self.schemas.hashes;
        let exists: bool = self
            .client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = 'rse_pushdown_syncs')",
                &[hashes],
            )
            .await
            .unwrap()
            .get(0);
        if !exists {
            return None;
        }
        let name: Option<String> = self
            .client
            .query_opt(&format!("SELECT hash_table FROM \"{hashes}\".rse_pushdown_syncs WHERE sync_id = $1"), &[&SYNC])
            .await
            .unwrap()
            .map(|r| r.get(0));
        Some(format!("\"{hashes}\".\"{}\"", name?))
    }

    /// Puts the fault trigger on the syncs table and the hash table once they exist.
    async fn install_trigger(&mut self) {
        if self.trigger {
            return;
        }
        let Some(table) = self.hash_table().await else { return };
        let (schema, hashes) = (&self.schemas.schema, &self.schemas.hashes);
        let trigger = |on: &str| {
            format!(
                "CREATE TRIGGER rse_test_fault BEFORE INSERT OR UPDATE OR DELETE ON {on} \
                 FOR EACH STATEMENT EXECUTE FUNCTION \"{schema}\".fail_table_write();"
            )
        };
        let syncs = format!("\"{hashes}\".rse_pushdown_syncs");
        self.client.batch_execute(&format!("{}{}", trigger(&syncs), trigger(&table))).await.unwrap();
        self.trigger = true;
    }

    /// The writes to rse's tables numbered `at` in the next run fail; the others pass.
    async fn fail_table_writes(&self, at: &[u64]) {
        let schema = &self.schemas.schema;
        let base: i64 = self
            .client
            .query_one(
                &format!("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM \"{schema}\".table_writes"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let at: Vec<i64> = at.iter().map(|&n| base + n as i64).collect();
        self.client.execute(&format!("DELETE FROM \"{schema}\".failing_writes"), &[]).await.unwrap();
        self.client
            .execute(&format!("INSERT INTO \"{schema}\".failing_writes SELECT DISTINCT unnest($1::int8[])"), &[&at])
            .await
            .unwrap();
    }

    /// Waits until the server holds no connection of the case's source: a crashed run's
    /// statements are done, and what they left is what the test reads.
    async fn connections_closed(&self) {
        let started = Instant::now();
        loop {
            let open: i64 = self
                .client
                .query_one("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", &[&self.schemas.schema])
                .await
                .unwrap()
                .get(0);
            if open == 0 {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "{open} connections of a crashed run stay open");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Each key's hash in the sync's table (none before a run created it).
    /// The epoch rse's table of the sync was completed under, if any.
    async fn epoch(&self) -> Option<String> {
        // No table yet: nothing was delivered through it.
        self.hash_table().await?;
        let sql = format!("SELECT epoch FROM \"{}\".rse_pushdown_syncs WHERE sync_id = $1", self.schemas.hashes);
        self.client.query_opt(&sql, &[&SYNC]).await.unwrap().and_then(|r| r.get(0))
    }

    async fn stored_hashes(&self) -> BTreeMap<i64, Option<i64>> {
        let Some(table) = self.hash_table().await else { return BTreeMap::new() };
        self.client
            .query(&format!("SELECT id, rse_hash FROM {table}"), &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }

    /// Each model row's hash, by the expression the source diffs with.
    async fn model_hashes(&self) -> BTreeMap<i64, i64> {
        self.client
            .query(
                &format!(
                    "SELECT m.\"id\", hash_record_extended(ROW(m.\"id\", m.\"name\", m.\"visits\"), 0) FROM {} AS m",
                    self.model()
                ),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }

    /// The same hash of each row the destination holds (columns of the model's types).
    async fn hashes_of(&self, rows: &BTreeMap<i64, Row>) -> BTreeMap<i64, i64> {
        let ids: Vec<i64> = rows.keys().copied().collect();
        let names: Vec<Option<String>> = rows.values().map(|r| r.0.clone()).collect();
        let visits: Vec<Option<i64>> = rows.values().map(|r| r.1).collect();
        self.client
            .query(
                "SELECT d.id, hash_record_extended(ROW(d.id, d.name, d.visits), 0) \
                 FROM unnest($1::int8[], $2::text[], $3::int8[]) AS d(id, name, visits)",
                &[&ids, &names, &visits],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }

    /// The invariant of the delivered table: a hash only for a key the destination holds,
    /// and only the hash of the row it holds — which, where that row equals the model's, is
    /// the source's hash of the model row; and, once the table is completed (its epoch set,
    /// so that runs read only what it says changed), a row for every key the destination
    /// holds. A full re-diff in progress or cut short records no intents: its table is not
    /// read until it completes.
    async fn hash_table_covers_the_destination(&self, dest: &MemoryDestination) {
        let completed = self.epoch().await.is_some();
        let stored = self.stored_hashes().await;
        let held = held(dest);
        let held_hashes = self.hashes_of(&held).await;
        let model = self.rows().await;
        let model_hashes = self.model_hashes().await;
        for (id, row) in &held {
            match stored.get(id) {
                None if !completed => {}
                None => panic!("the destination holds {id}, which the completed hash table lacks"),
                Some(Some(hash)) => assert_eq!(*hash, held_hashes[id], "the hash of {id} is not the held row's"),
                Some(None) => {}
            }
            if model.get(id) == Some(row) {
                // The test's hash of the held row is the source's hash of the model row.
                assert_eq!(held_hashes[id], model_hashes[id], "hashes of the same row of {id} differ");
            }
        }
        for (id, hash) in &stored {
            assert!(hash.is_none() || held.contains_key(id), "a hash of {id}, which the destination lacks");
        }
    }

    async fn drop_schemas(self) {
        let World { client, schemas, .. } = self;
        drop(client);
        drop(schemas);
    }
}

/// A job for one run, as a new process builds it: a new source on the case's model.
async fn job(
    case: &Case,
    world: &World,
    state: &MemoryStateStore,
    faulty: &FaultyDestination<MemoryDestination>,
    ttl: Duration,
) -> SyncJob {
    let source = PostgresSource::from_url(&world.source_url, Model::qualified(&world.schemas.schema, "model"))
        .unwrap()
        .with_key(["id"])
        .with_pushdown_schema(&world.schemas.hashes)
        .with_pushdown_readers(case.readers);
    let options = SyncOptions::default()
        .with_batch_rows(case.batch_rows)
        .with_max_concurrency(case.concurrency)
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(1))
        .with_max_backoff(Duration::from_millis(5))
        .with_linger(Duration::from_millis(1))
        .with_lease_ttl(ttl)
        .with_allow_empty_source(true)
        .with_diff_strategy(DiffStrategy::Pushdown);
    SyncJob::builder(SYNC)
        .source(source)
        .destination(faulty.clone())
        .state(state.clone())
        .mode(Mode::Mirror)
        .options(options)
        .build()
        .await
        .unwrap()
}

/// A run without faults, which must succeed.
async fn clean_run(
    case: &Case,
    world: &World,
    state: &MemoryStateStore,
    faulty: &FaultyDestination<MemoryDestination>,
) -> SyncReport {
    let report = job(case, world, state, faulty, TTL).await.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    report
}

async fn converge(url: &str, client: Client, case: Case) {
    let mut world = World::new(url, client, &case.initial).await;
    let mut table = Table::default();
    for (&id, row) in &case.initial {
        table.set(id, row.clone());
    }
    let state = MemoryStateStore::new();
    let dest = if case.memos {
        MemoryDestination::new()
            .with_capabilities(DestinationCapabilities::new(Op::ALL).with_idempotency_keys(true).with_memos(true))
    } else {
        MemoryDestination::new()
    };
    let dest = if case.exactly_once { dest.with_state_store(state.clone()) } else { dest };
    let faulty = FaultyDestination::new(dest.clone());
    let mut refused = BTreeSet::new();

    for (edits, f) in &case.runs {
        for e in edits {
            world.apply(&mut table, e).await;
        }
        assert_eq!(world.rows().await, table.rows, "the model table and the test's copy differ");
        faulty.lift();
        world.install_trigger().await;
        world.fail_table_writes(&f.table_writes).await;
        let base = faulty.calls();
        for &k in &f.reject {
            faulty.reject_key(key(k), "injected refusal");
            refused.insert(k);
        }
        if let Some(k) = f.invalid {
            faulty.invalid_batch_key(key(k));
            refused.insert(k);
        }
        for &n in &f.transient {
            faulty.fail_write(base + n);
        }
        for &n in &f.after_apply {
            faulty.fail_write_after_apply(base + n);
        }
        for &n in &f.rate_limited {
            faulty.rate_limit_write(base + n, None);
        }
        if let Some(n) = f.crash_after {
            faulty.crash_after_applied(n);
        }
        let ttl = if f.crash_after.is_some() { CRASH_TTL } else { TTL };
        let sync = job(&case, &world, &state, &faulty, ttl).await;
        let crashed = tokio::select! {
            report = sync.run() => {
                match report {
                    // A faulted run may fail (a write to rse's tables refused, the short
                    // lease of a run that may crash lost on a loaded machine); one without
                    // faults must not.
                    Ok(report) => {
                        assert!(!matches!(report.status, RunStatus::Running));
                        assert!(!f.none() || report.status == RunStatus::Succeeded, "{report:?}");
                        if report.status != RunStatus::Succeeded {
                            FAILED.fetch_add(1, Ordering::Relaxed);
                        }
                        let failures = report.pushdown.map_or(0, |p| p.record_failures);
                        RECORD_FAILURES.fetch_add(failures, Ordering::Relaxed);
                    }
                    Err(e) => {
                        assert!(!f.none(), "a run without faults failed: {e}");
                        FAILED.fetch_add(1, Ordering::Relaxed);
                    }
                }
                false
            }
            () = faulty.crashed() => true,
        };
        // The process is gone: its job, source and connections with it.
        drop(sync);
        RUNS.fetch_add(1, Ordering::Relaxed);
        if crashed {
            CRASHED.fetch_add(1, Ordering::Relaxed);
            world.connections_closed().await;
            // Its lease lapses before anyone runs the sync again.
            tokio::time::sleep(CRASH_TTL + Duration::from_millis(50)).await;
        }
        world.fail_table_writes(&[]).await;
        state_only_holds_what_the_destination_received(SYNC, &state, &dest);
        if case.exactly_once {
            state_equals_the_destination(SYNC, &state, &dest);
        }
        world.hash_table_covers_the_destination(&dest).await;
    }

    faulty.lift();
    clean_run(&case, &world, &state, &faulty).await;

    let model = world.rows().await;
    assert_eq!(model, table.rows, "the model table and the test's copy differ");
    assert_eq!(held(&dest), model, "the destination does not equal the model");
    assert!(state.rejections(SYNC).is_empty(), "refused rows left after the faults stopped");
    for id in refused.iter().filter(|id| model.contains_key(id)) {
        assert_eq!(held(&dest).get(id), model.get(id), "refused row {id} was not delivered");
    }
    state_only_holds_what_the_destination_received(SYNC, &state, &dest);
    let ambiguous =
        !case.exactly_once && case.runs.iter().any(|(_, f)| f.crash_after.is_some() || !f.after_apply.is_empty());
    nothing_was_applied_twice(&dest, ambiguous);
    if case.memos {
        every_record_id_is_in_the_state(SYNC, &state, &dest);
    }
    world.hash_table_covers_the_destination(&dest).await;
    // Converged: every hash left is the source's hash of the model row.
    let model_hashes = world.model_hashes().await;
    for (id, hash) in world.stored_hashes().await {
        if let Some(hash) = hash {
            assert_eq!(Some(&hash), model_hashes.get(&id), "the hash of {id} is not the model row's");
        }
    }

    let again = clean_run(&case, &world, &state, &faulty).await;
    assert_eq!(again.counts.planned.total(), 0, "a run after convergence planned changes");
    let pushdown = again.pushdown.clone().expect("a pushdown report");
    assert_eq!((pushdown.full_rediff, pushdown.rows_read), (None, 0), "{again:?}");
    // A full re-diff reads the model, not the hash table: a key whose delete the destination
    // acknowledged in a run that crashed before recording it stays in the table until the
    // next pushdown run hands it out as vanished and settles it.
    let third = clean_run(&case, &world, &state, &faulty).await;
    let pushdown = third.pushdown.clone().expect("a pushdown report");
    assert_eq!((pushdown.full_rediff, pushdown.rows_read, pushdown.vanished), (None, 0, 0), "{third:?}");
    assert_eq!(third.counts.planned.total(), 0);
    world.hash_table_covers_the_destination(&dest).await;
    assert_eq!(world.stored_hashes().await.keys().copied().collect::<BTreeSet<_>>(), model.keys().copied().collect());
    world.drop_schemas().await;
}

#[test]
fn pushdown_mirror_runs_on_postgres_converge_under_faults_and_crashes() {
    let url = service_url("RSE_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test");
    let runtime = || tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let reachable = runtime().block_on(async { tokio_postgres::connect(&url, NoTls).await.map(|_| ()) });
    if let Err(e) = reachable {
        return unavailable("PostgreSQL", &url, e);
    }
    let config = Config {
        cases: cases(),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/pushdown_convergence.proptest-regressions",
        ))),
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let started = Instant::now();
    let result = runner.run(&case(), |case| {
        runtime().block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
            tokio::spawn(connection);
            converge(&url, client, case).await;
        });
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!(
        "{} cases in {:.1} s: {} faulted runs, {} crashed, {} failed, {} rows whose hash could not be recorded",
        cases(),
        started.elapsed().as_secs_f64(),
        RUNS.load(Ordering::Relaxed),
        CRASHED.load(Ordering::Relaxed),
        FAILED.load(Ordering::Relaxed),
        RECORD_FAILURES.load(Ordering::Relaxed)
    );
}
