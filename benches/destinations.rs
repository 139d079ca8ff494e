//! End to end: a million rows from SQLite into PostgreSQL and into a rate-limited webhook.
//!
//! A bench binary (not criterion: each scenario takes seconds and must run on fresh tables,
//! so it runs each once and prints its figures):
//!
//! - `read`: the time to just read the SQLite table (every batch, nothing else): the floor.
//! - `postgres/server_floor`: the server's own upsert of the same rows generated in SQL, in
//!   transactions of 5,000 from one connection: the rate the server itself manages here.
//! - `postgres/initial`: the first run, SQLite → `PostgresDestination` (every row is new to
//!   the sync, so each batch goes by binary COPY; batches of 5,000, 4 connections), state in
//!   memory. Target ≥ 200 k rows/s.
//! - `postgres/initial_upsert`: the same with the COPY turned off, every batch by the
//!   `unnest` upsert.
//! - `postgres/rerun_1pct`: 1 % of the rows changed in SQLite, run again. Target ≤ 1.5× the
//!   time of reading the changed table. Three rounds (`RSE_BENCH_RERUNS`) of change, read,
//!   re-run every sync; the fastest re-run of each is compared with the fastest read.
//! - `postgres/initial_exactly_once`: the first run again, exactly-once: the state in a
//!   `PostgresStateStore` of the same database, committed with each batch's rows.
//! - `postgres/initial_ledger`: the first run again with the idempotency ledger (state in
//!   memory).
//! - `postgres/initial_state_in_postgres`: plain upserts with the state in a
//!   `PostgresStateStore` (committed after each batch, not with it): what a durable store
//!   costs, apart from exactly-once.
//! - `memory/initial`, `memory/rerun_unchanged`: the runner alone into `MemoryDestination`,
//!   the part of every figure that is not the destination's.
//! - `http/quota`: rows of the same table into the in-process receiver (signature verified
//!   on every request) at a quota of 100 requests/s, 250 rows per request; quota use =
//!   requests per second / 100, target ≥ 95 % with no second holding more than 100 requests.
//!
//! Run with `cargo bench --bench destinations --features sqlite,postgres,http`; needs
//! PostgreSQL at RSE_POSTGRES_URL (default `postgres://postgres@127.0.0.1:5432/test`).
//! `RSE_BENCH_VERBOSE` prints each run's report (stage times). Add `--features bench-mimalloc`
//! to run with mimalloc as the global allocator, as a service embedding rse may.
//! `RSE_BENCH_ROWS` sets the table size (default 1,000,000); `RSE_BENCH_HTTP_ROWS` the rows
//! sent to the webhook (default 250,000, i.e. 1,000 requests, 10 s at the quota: at 100
//! requests/s a million rows would need 10,000-row requests or 100 s).
//!
//! The README's performance section has the figures measured on the development machine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(feature = "bench-mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../rse-connectors/tests/support/http_server.rs"]
mod http_server;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rse::connectors::state::PostgresStateStore;
use rse::connectors::{
    BodyShape, HttpDestination, HttpDestinationConfig, PostgresDestination, PostgresDestinationOptions,
};
use rse::memory::MemoryStateStore;
use rse::sources::Model;
use rse::sources::sqlite::SqliteSource;
use rse::testing::{service_url, unique_id};
use rse::{RateLimit, ReadRequest, Source, SyncJob, SyncOptions};

fn env_rows(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A 10-column customers table of `n` rows (about 200 bytes each).
fn make_sqlite(path: &Path, n: usize) {
    let _ = std::fs::remove_file(path);
    let mut db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
         CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT, name TEXT, address TEXT, plan TEXT,
           score REAL, lifetime_value REAL, created_at DATETIME, active BOOLEAN, visits INTEGER);",
    )
    .unwrap();
    let tx = db.transaction().unwrap();
    {
        let mut insert = tx.prepare("INSERT INTO customers VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)").unwrap();
        for i in 0..n {
            insert
                .execute(rusqlite::params![
                    i as i64,
                    format!("customer.{i:08}@example-mail.com"),
                    format!("Firstname{i:06} Lastname{:06}", i * 7 % 1_000_000),
                    format!("{} Long Street Name, Apartment {}, Springfield", i % 9999, i % 97),
                    ["free", "starter", "professional", "enterprise"][i % 4],
                    i as f64 * 0.37,
                    (i % 10_000) as f64 * 12.5 + 0.25,
                    1_600_000_000 + i as i64,
                    i % 3 != 0,
                    (i % 1000) as i64,
                ])
                .unwrap();
        }
    }
    tx.commit().unwrap();
}

fn source(path: &Path) -> SqliteSource {
    SqliteSource::new(path, Model::table("customers")).with_key(["id"])
}

fn options() -> SyncOptions {
    SyncOptions::default()
        .with_batch_rows(5_000)
        .with_batch_bytes(64 << 20)
        .with_max_concurrency(4)
        .with_read_batch_size(5_000)
        .with_linger(Duration::from_millis(200))
}

async fn read_all(path: &Path) -> (usize, Duration) {
    let src = source(path);
    let started = Instant::now();
    // Read as the runner does: in key order when the source can (then it diffs by merge).
    let ordered = src.capabilities().ordered_by_key;
    let mut stream = src.read(ReadRequest::full().with_batch_size(5_000).with_order_by_key(ordered)).await.unwrap();
    let mut rows = 0;
    while let Some(batch) = stream.next().await {
        rows += batch.unwrap().len();
    }
    (rows, started.elapsed())
}

fn per_sec(rows: u64, d: Duration) -> f64 {
    rows as f64 / d.as_secs_f64()
}

/// Runs `sync` once, prints its figure, returns the report and the time.
async fn timed(label: &str, sync: &SyncJob, rows: usize) -> (rse::SyncReport, Duration) {
    let started = Instant::now();
    let report = sync.run().await.unwrap();
    let took = started.elapsed();
    assert_eq!(report.status, rse::RunStatus::Succeeded, "{report}");
    println!("{label}: {rows} rows in {took:.2?} = {:.0} rows/s", per_sec(rows as u64, took));
    if std::env::var_os("RSE_BENCH_VERBOSE").is_some() {
        println!("{report}\n  stages: {:?}", report.stages);
    }
    (report, took)
}

async fn sync_into(path: &Path, destination: impl rse::Destination + 'static) -> SyncJob {
    sync_with_state(path, destination, MemoryStateStore::new()).await
}

async fn sync_with_state(
    path: &Path,
    destination: impl rse::Destination + 'static,
    state: impl rse::StateStore + 'static,
) -> SyncJob {
    SyncJob::builder(unique_id("bench"))
        .source(source(path))
        .destination(destination)
        .state(state)
        .options(options())
        .build()
        .await
        .unwrap()
}

/// First runs into memory and PostgreSQL (plain and exactly-once), then 1 % of the rows
/// change and each runs again, compared with reading the changed table.
async fn initial_and_rerun(path: &Path, rows: usize) {
    let url = service_url("RSE_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test");
    let (client, connection) = match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        Ok(c) => c,
        Err(e) => {
            println!("postgres: skipped, {url} unreachable: {e}");
            return;
        }
    };
    tokio::spawn(connection);
    let schema = unique_id("rse_bench");
    let pg = |table: &str, ledger: bool| {
        PostgresDestination::new(
            &url,
            PostgresDestinationOptions::new(table)
                .with_schema(&schema)
                .with_create_table(true)
                .with_idempotency_ledger(ledger),
        )
        .unwrap()
    };
    let memory = sync_into(path, rse::memory::MemoryDestination::new()).await;
    let plain = sync_into(path, pg("customers", false)).await;
    let upsert_only = sync_into(
        path,
        PostgresDestination::new(
            &url,
            PostgresDestinationOptions::new("customers_upsert")
                .with_schema(&schema)
                .with_create_table(true)
                .with_copy_inserts(false),
        )
        .unwrap(),
    )
    .await;
    let store = PostgresStateStore::connect(&url, &format!("{schema}_state")).await.unwrap();
    let exactly_once =
        sync_with_state(path, pg("customers_eo", false).with_state_store(store.clone()), store.clone()).await;
    let ledger = sync_into(path, pg("customers_ledger", true)).await;
    let durable_store = PostgresStateStore::connect(&url, &format!("{schema}_durable")).await.unwrap();
    let durable = sync_with_state(path, pg("customers_durable", false), durable_store).await;

    // The runner alone: the part of every figure that is not the destination's.
    timed("memory/initial (the runner alone)", &memory, rows).await;
    let (report, _) = timed("memory/rerun_unchanged", &memory, rows).await;
    assert_eq!(report.counts.unchanged as usize, rows);
    server_floor(&client, &schema, rows).await;
    timed("postgres/initial", &plain, rows).await;
    // Each load starts from a checkpoint, so none pays for flushing the one before.
    for (label, sync) in [
        ("postgres/initial_upsert (COPY off)", &upsert_only),
        ("postgres/initial_exactly_once", &exactly_once),
        ("postgres/initial_ledger", &ledger),
        ("postgres/initial_state_in_postgres", &durable),
    ] {
        client.batch_execute("CHECKPOINT").await.unwrap();
        timed(label, sync, rows).await;
    }

    let started = Instant::now();
    let (mut after, mut scanned) = (None, 0usize);
    loop {
        let page = rse::StateStore::scan(&store, exactly_once.id(), after.as_ref(), 10_000).await.unwrap();
        scanned += page.len();
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
    }
    println!("scan of the exactly-once state: {scanned} entries in {:.2?}", started.elapsed());

    // Rounds of: 1 % of the rows change, the table is read once, every sync runs again. The
    // ratio compares the fastest re-run of each sync with the fastest read, so that neither
    // side is a single sample against the other's best.
    let reruns = [
        ("memory/rerun_1pct", &memory),
        ("postgres/rerun_1pct", &plain),
        ("postgres/rerun_1pct_exactly_once", &exactly_once),
        ("postgres/rerun_1pct_ledger", &ledger),
        ("postgres/rerun_1pct_state_in_postgres", &durable),
    ];
    let rounds = env_rows("RSE_BENCH_RERUNS", 3).max(1);
    let mut read = Duration::MAX;
    let mut fastest = vec![Duration::MAX; reruns.len()];
    for _ in 0..rounds {
        let changed = {
            let db = rusqlite::Connection::open(path).unwrap();
            db.execute("UPDATE customers SET score = score + 1 WHERE id % 100 = 0", []).unwrap()
        };
        // Let PostgreSQL flush what the last runs wrote, as it would have long before a real
        // re-run; otherwise the checkpoint competes with the measured run.
        client.batch_execute("CHECKPOINT").await.unwrap();
        let took = read_all(path).await.1;
        println!("read (after the change): {rows} rows in {took:.2?}");
        read = read.min(took);
        for ((label, sync), best) in reruns.iter().zip(&mut fastest) {
            let (report, took) = timed(label, sync, rows).await;
            assert_eq!(report.counts.applied.update as usize, changed, "{report}");
            *best = (*best).min(took);
        }
    }
    println!("read, fastest of {rounds}: {read:.2?}");
    for ((label, _), best) in reruns.iter().zip(&fastest) {
        println!(
            "{label}, fastest of {rounds}: {best:.2?} = {:.2}x the fastest read",
            best.as_secs_f64() / read.as_secs_f64()
        );
    }
    let _ = client.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE")).await;
    let _ = client.batch_execute(&format!("DROP SCHEMA \"{schema}_state\" CASCADE")).await;
    let _ = client.batch_execute(&format!("DROP SCHEMA \"{schema}_durable\" CASCADE")).await;
}

/// The server's own rate for the same work, without rse: an upsert of the same rows,
/// generated in SQL, in transactions of 5,000 rows from one connection (after a checkpoint,
/// like each measured run). What the initial load cannot beat on this machine.
async fn server_floor(client: &tokio_postgres::Client, schema: &str, rows: usize) {
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
             CREATE TABLE \"{schema}\".floor (id bigint PRIMARY KEY, email text, name text, address text, plan text,
               score double precision, lifetime_value double precision, created_at timestamptz, active boolean,
               visits bigint);
             CHECKPOINT;"
        ))
        .await
        .unwrap();
    let sql = format!(
        "INSERT INTO \"{schema}\".floor SELECT g, 'customer.' || lpad(g::text, 8, '0') || '@example-mail.com',
           'Firstname' || lpad(g::text, 6, '0') || ' Lastname' || lpad((g * 7 % 1000000)::text, 6, '0'),
           (g % 9999) || ' Long Street Name, Apartment ' || (g % 97) || ', Springfield',
           (ARRAY['free', 'starter', 'professional', 'enterprise'])[g % 4 + 1], g * 0.37, (g % 10000) * 12.5 + 0.25,
           to_timestamp(1600000000 + g), g % 3 <> 0, g % 1000
         FROM generate_series($1::bigint, $2::bigint) AS g
         ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email, name = EXCLUDED.name, address = EXCLUDED.address,
           plan = EXCLUDED.plan, score = EXCLUDED.score, lifetime_value = EXCLUDED.lifetime_value,
           created_at = EXCLUDED.created_at, active = EXCLUDED.active, visits = EXCLUDED.visits"
    );
    let started = Instant::now();
    for start in (0..rows as i64).step_by(5_000) {
        let end = (start + 4_999).min(rows as i64 - 1);
        client.execute(&sql, &[&start, &end]).await.unwrap();
    }
    let took = started.elapsed();
    println!(
        "postgres/server_floor (the server's own upsert of the same rows, no rse): {rows} rows in {took:.2?} = {:.0} rows/s",
        per_sec(rows as u64, took)
    );
    client.batch_execute("CHECKPOINT").await.unwrap();
}

async fn http(path: &Path, rows: usize) {
    const QUOTA: u32 = 100;
    let rx = http_server::Receiver::start(Some("bench-secret")).await;
    {
        let mut s = rx.lock();
        s.count_only = true;
        s.quota = Some((QUOTA as usize, Duration::from_secs(1)));
    }
    let dest = HttpDestination::new(
        HttpDestinationConfig::new(rx.url())
            .with_signing_secret("bench-secret")
            .with_shape(BodyShape::ArrayPerBatch)
            .with_max_batch_rows(250)
            .with_max_batch_bytes(64 << 20)
            // 3 % headroom: requests leave at exact 10 ms intervals but arrive with jitter,
            // and a receiver counting a sliding window would see 101 in some second.
            .with_rate_limit(RateLimit::per_second(QUOTA * 97 / 100)),
    )
    .unwrap();
    // The first `rows` rows of the table, through a query model.
    let src =
        SqliteSource::new(path, Model::query(format!("SELECT * FROM customers WHERE id < {rows}"))).with_key(["id"]);
    let sync = SyncJob::builder(unique_id("bench_http"))
        .source(src)
        .destination(dest)
        .state(MemoryStateStore::new())
        .options(options().with_batch_rows(250))
        .build()
        .await
        .unwrap();
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.applied.insert as usize, rows, "{report}");
    let s = rx.lock();
    let (first, last) = (s.arrivals[0], *s.arrivals.last().unwrap());
    let requests = s.requests;
    // n requests at the quota take (n - 1) intervals.
    let span = last - first;
    let rate = (requests - 1) as f64 / span.as_secs_f64();
    let (over, received, bad) = (s.over_quota, s.rows, s.bad_signatures);
    drop(s);
    let max = rx.max_in_window(Duration::from_secs(1));
    println!(
        "http/quota: {received} rows in {requests} requests over {span:.2?} = {rate:.1} req/s, quota use {:.1} %, \
         busiest second {max} requests, {over} refused over quota, {bad} bad signatures",
        rate / f64::from(QUOTA) * 100.0
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let rows = env_rows("RSE_BENCH_ROWS", 1_000_000);
    let http_rows = env_rows("RSE_BENCH_HTTP_ROWS", 250_000).min(rows);
    let path: PathBuf = std::env::temp_dir().join(format!("rse-bench-{}.db", std::process::id()));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let started = Instant::now();
    make_sqlite(&path, rows);
    println!("setup: {rows} rows written to SQLite in {:.2?}", started.elapsed());
    runtime.block_on(async {
        let (read_rows, read) = read_all(&path).await;
        assert_eq!(read_rows, rows);
        println!("read: {rows} rows in {read:.2?} = {:.0} rows/s", per_sec(rows as u64, read));
        initial_and_rerun(&path, rows).await;
        http(&path, http_rows).await;
    });
    let _ = std::fs::remove_file(&path);
}
