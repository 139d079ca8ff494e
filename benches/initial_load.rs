//! End to end: the initial load of a mirror sync, a PostgreSQL table into a PostgreSQL table.
//!
//! A bench binary (not criterion: each scenario takes seconds and needs fresh tables, so it
//! runs each a few times and prints every figure):
//!
//! - `read`: `PostgresSource` alone, every batch in key order, nothing else: the floor.
//! - `server_copy`: `INSERT INTO t SELECT * FROM model` on the server, into a fresh table
//!   with the same primary key: what the server itself takes to store the rows, no client.
//! - `initial/memory`: the first run of a `Mirror` sync, `PostgresSource` →
//!   `PostgresDestination`, state in memory.
//! - `initial/sqlite`: the same with the state in a `SqliteStateStore` (a fresh file), as a
//!   sync a user runs. Target ≥ 250 k rows/s.
//!
//! Every load writes a fresh table and starts from a checkpoint. Each line gives the wall
//! time, the CPU time of this process (source, runner, destination and state store) and of
//! the server's processes over the same interval (from `/proc`, where it can be read), and
//! with `RSE_BENCH_VERBOSE` the run's report with its stage durations.
//!
//! Run with `cargo bench --bench initial_load --features sqlite,postgres`; needs PostgreSQL
//! at RSE_POSTGRES_URL (default `postgres://postgres@127.0.0.1:5432/test`). Add
//! `--features bench-mimalloc` for mimalloc as the global allocator. `RSE_BENCH_ROWS` sets
//! the table size (default 1,000,000 rows of about 200 bytes), `RSE_BENCH_RUNS` the rounds
//! (default 3), `RSE_BENCH_BATCH` and `RSE_BENCH_WRITERS` the batch size and the writers
//! (default 5,000 and 4).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(feature = "bench-mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use futures::StreamExt;
use rse::connectors::state::SqliteStateStore;
use rse::connectors::{PostgresDestination, PostgresDestinationOptions};
use rse::memory::MemoryStateStore;
use rse::sources::Model;
use rse::sources::postgres::PostgresSource;
use rse::testing::{service_url, unique_id};
use rse::{Mode, ReadRequest, Source, StateStore, SyncJob, SyncOptions};

#[path = "support/cpu.rs"]
mod cpu;
use cpu::cpu;

fn env_usize(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Sample {
    wall: Duration,
    own: f64,
    server: f64,
}

async fn measured<F: std::future::Future>(f: F) -> (F::Output, Sample) {
    let (own, server) = cpu();
    let started = Instant::now();
    let out = f.await;
    let wall = started.elapsed();
    let (own_after, server_after) = cpu();
    (out, Sample { wall, own: own_after - own, server: server_after - server })
}

fn print(label: &str, rows: usize, s: &Sample) {
    println!(
        "{label}: {rows} rows in {:.2?} = {:.0} rows/s; CPU: rse {:.2} s, server {:.2} s",
        s.wall,
        rows as f64 / s.wall.as_secs_f64(),
        s.own,
        s.server
    );
}

fn source(url: &str, schema: &str) -> PostgresSource {
    PostgresSource::from_url(url, Model::qualified(schema, "customers")).unwrap().with_key(["id"])
}

fn options() -> SyncOptions {
    SyncOptions::default()
        .with_batch_rows(env_usize("RSE_BENCH_BATCH", 5_000))
        .with_read_batch_size(env_usize("RSE_BENCH_BATCH", 5_000))
        .with_max_concurrency(env_usize("RSE_BENCH_WRITERS", 4))
        .with_batch_bytes(64 << 20)
}

async fn load(url: &str, schema: &str, table: &str, state: impl StateStore + 'static, rows: usize, label: &str) {
    let destination = PostgresDestination::new(
        url,
        PostgresDestinationOptions::new(table).with_schema(schema).with_create_table(true),
    )
    .unwrap();
    let sync = SyncJob::builder(unique_id("bench_initial"))
        .source(source(url, schema))
        .destination(destination)
        .state(state)
        .mode(Mode::Mirror)
        .options(options())
        .build()
        .await
        .unwrap();
    let (report, sample) = measured(sync.run()).await;
    let report = report.unwrap();
    assert_eq!(report.status, rse::RunStatus::Succeeded, "{report}");
    assert_eq!(report.counts.applied.insert as usize, rows, "{report}");
    print(label, rows, &sample);
    if std::env::var_os("RSE_BENCH_VERBOSE").is_some() {
        println!("  stages: {:?}", report.stages);
    }
}

async fn read_all(url: &str, schema: &str) -> usize {
    let src = source(url, schema);
    let batch = env_usize("RSE_BENCH_BATCH", 5_000);
    let mut stream = src.read(ReadRequest::full().with_batch_size(batch).with_order_by_key(true)).await.unwrap();
    let mut rows = 0;
    while let Some(b) = stream.next().await {
        rows += b.unwrap().len();
    }
    rows
}

fn main() {
    let rows = env_usize("RSE_BENCH_ROWS", 1_000_000);
    let rounds = env_usize("RSE_BENCH_RUNS", 3).max(1);
    let url = service_url("RSE_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (client, connection) = match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
            Ok(c) => c,
            Err(e) => {
                println!("skipped: {url} unreachable: {e}");
                return;
            }
        };
        tokio::spawn(connection);
        let schema = unique_id("rse_bench_initial");
        let started = Instant::now();
        client
            .batch_execute(&format!(
                "CREATE SCHEMA \"{schema}\";
                 CREATE TABLE \"{schema}\".customers (id bigint PRIMARY KEY, email text, name text, address text,
                   plan text, score double precision, lifetime_value double precision, created_at timestamptz,
                   active boolean, visits bigint);
                 INSERT INTO \"{schema}\".customers SELECT g, 'customer.' || lpad(g::text, 8, '0') || '@example-mail.com',
                   'Firstname' || lpad(g::text, 6, '0') || ' Lastname' || lpad((g * 7 % 1000000)::text, 6, '0'),
                   (g % 9999) || ' Long Street Name, Apartment ' || (g % 97) || ', Springfield',
                   (ARRAY['free', 'starter', 'professional', 'enterprise'])[g % 4 + 1], g * 0.37,
                   (g % 10000) * 12.5 + 0.25, to_timestamp(1600000000 + g), g % 3 <> 0, g % 1000
                 FROM generate_series(0, {last}) AS g;",
                last = rows as i64 - 1
            ))
            .await
            .unwrap();
        // Separate calls: VACUUM cannot run in the implicit transaction of a multi-statement call.
        client.batch_execute(&format!("VACUUM ANALYZE \"{schema}\".customers")).await.unwrap();
        client.batch_execute("CHECKPOINT").await.unwrap();
        println!("setup: {rows} rows in {:.2?}", started.elapsed());

        let dir = std::env::temp_dir().join(unique_id("rse_bench_initial"));
        std::fs::create_dir_all(&dir).unwrap();
        let only = std::env::var("RSE_BENCH_ONLY").unwrap_or_default();
        let runs = |name: &str| only.is_empty() || only.split(',').any(|o| o == name);
        for round in 0..rounds {
            if runs("read") {
            let (read, sample) = measured(read_all(&url, &schema)).await;
            assert_eq!(read, rows);
            print("read", rows, &sample);
            }
            if runs("server_copy") {

            let table = format!("server_copy_{round}");
            client
                .batch_execute(&format!(
                    "CREATE TABLE \"{schema}\".\"{table}\" (LIKE \"{schema}\".customers INCLUDING ALL); CHECKPOINT;"
                ))
                .await
                .unwrap();
            let sql = format!("INSERT INTO \"{schema}\".\"{table}\" SELECT * FROM \"{schema}\".customers");
            let (done, sample) = measured(client.execute(&sql, &[])).await;
            assert_eq!(done.unwrap() as usize, rows);
            print("server_copy (INSERT … SELECT on the server, no rse)", rows, &sample);
            client.batch_execute(&format!("DROP TABLE \"{schema}\".\"{table}\"; CHECKPOINT;")).await.unwrap();
            }
            if runs("memory") {

            load(&url, &schema, &format!("memory_{round}"), MemoryStateStore::new(), rows, "initial/memory").await;
            client.batch_execute(&format!("DROP TABLE \"{schema}\".\"memory_{round}\"; CHECKPOINT;")).await.unwrap();
            }
            if runs("sqlite") {

            let state = SqliteStateStore::open(dir.join(format!("state_{round}.db"))).await.unwrap();
            load(&url, &schema, &format!("sqlite_{round}"), state, rows, "initial/sqlite").await;
            client.batch_execute(&format!("DROP TABLE \"{schema}\".\"sqlite_{round}\"; CHECKPOINT;")).await.unwrap();
            let _ = std::fs::remove_dir_all(dir.join(format!("state_{round}.db")));
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(dir.join(format!("state_{round}.db{suffix}")));
            }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        let _ = client.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE")).await;
    });
}
