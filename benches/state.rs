//! Durable state stores: `SqliteStateStore` (a temporary file) and `PostgresStateStore`
//! (a fresh schema on `RSE_POSTGRES_URL`, default the local server).
//!
//! - `state/<store>/commit_10k`: one commit of 10,000 applied changes (every key at a new
//!   version), in one transaction.
//! - `state/<store>/initial_5k`: what an initial load commits per batch of 5,000 keys new
//!   to the sync: their intents, then their acknowledgements, two transactions.
//! - `state/<store>/scan_1m`: an ordered scan of the whole snapshot (1,000,000 keys by
//!   default) in pages of 10,000, as the merge diff reads it.
//! - `state/<store>/get_10k_random`: one lookup of 10,000 random keys.
//!
//! After filling, each store's size on disk is printed (the SQLite file with its WAL after
//! a checkpoint; the PostgreSQL tables with their indexes). Run with
//! `cargo bench --bench state --features sqlite,postgres`; `RSE_BENCH_STATE_KEYS` sets the
//! snapshot size, `RSE_BENCH_STATE_STORES` (`sqlite,postgres`) which stores run. PostgreSQL
//! is skipped when unreachable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use rse_connectors::state::{PostgresStateStore, SqliteStateStore};
use rse_core::state::{Lease, PendingChange, SnapshotEntry, StateCommit};
use rse_core::{Fingerprint, Key, Op, StateStore, Value};

const SYNC: &str = "bench";
const PAGE: usize = 10_000;
const COMMIT: i64 = 10_000;
const INITIAL: i64 = 5_000;

fn keys() -> i64 {
    std::env::var("RSE_BENCH_STATE_KEYS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

fn key(i: i64) -> Key {
    Key::from_values(&[Value::Int(i)])
}

fn entry(i: i64, version: u64) -> SnapshotEntry {
    let fp = u128::from(version).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i as u128).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    SnapshotEntry { key: key(i), fingerprint: Some(Fingerprint(fp)), version, pending: None, memo: None }
}

fn pending(i: i64) -> PendingChange {
    PendingChange { op: Op::Insert, fingerprint: entry(i, 1).fingerprint.unwrap(), version: 0 }
}

async fn fill(store: &dyn StateStore, lease: &Lease, n: i64) {
    let mut start = 0;
    while start < n {
        let end = (start + 50_000).min(n);
        let commit = StateCommit { applied: (start..end).map(|i| entry(i, 1)).collect(), ..StateCommit::default() };
        store.commit(lease, commit).await.unwrap();
        start = end;
    }
}

/// Fills `store` with `n` keys, prints its size on disk (`size`), then benches it.
fn bench_store(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    label: &str,
    store: &dyn StateStore,
    n: i64,
    size: impl Fn() -> u64,
) {
    let lease = rt.block_on(store.acquire_lease(SYNC, "bench", Duration::from_secs(3_600))).unwrap();
    let started = std::time::Instant::now();
    rt.block_on(fill(store, &lease, n));
    let filled = started.elapsed();
    let bytes = size();
    println!(
        "state/{label}: filled {n} keys in {filled:.1?}; they take {bytes} bytes on disk ({:.1} bytes/key)",
        bytes as f64 / n as f64
    );

    let mut group = c.benchmark_group(format!("state/{label}"));
    group.sample_size(10).sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(10));

    group.throughput(Throughput::Elements(COMMIT as u64));
    let mut version = 1;
    group.bench_function("commit_10k", |b| {
        b.iter(|| {
            version += 1;
            let offset = (version as i64 * COMMIT) % n.max(COMMIT);
            let commit = StateCommit {
                applied: (offset..offset + COMMIT).map(|i| entry(i % n.max(COMMIT), version)).collect(),
                ..StateCommit::default()
            };
            rt.block_on(store.commit(&lease, commit)).unwrap();
        });
    });

    // Keys above the snapshot's, new to it, as an initial load's batches bring them.
    group.throughput(Throughput::Elements(INITIAL as u64));
    let mut next = n;
    group.bench_function("initial_5k", |b| {
        b.iter(|| {
            let keys = next..next + INITIAL;
            next += INITIAL;
            let intents =
                StateCommit { intents: keys.clone().map(|i| (key(i), pending(i))).collect(), ..StateCommit::default() };
            rt.block_on(store.commit(&lease, intents)).unwrap();
            let applied = StateCommit { applied: keys.map(|i| entry(i, 1)).collect(), ..StateCommit::default() };
            rt.block_on(store.commit(&lease, applied)).unwrap();
        });
    });
    let forgotten = StateCommit { forgotten: (n..next).map(key).collect(), ..StateCommit::default() };
    rt.block_on(store.commit(&lease, forgotten)).unwrap();

    group.throughput(Throughput::Elements(n as u64));
    group.bench_function(format!("scan_{}k", n / 1_000), |b| {
        b.iter(|| {
            let mut after: Option<Key> = None;
            let mut seen = 0usize;
            loop {
                let page = rt.block_on(store.scan(SYNC, after.as_ref(), PAGE)).unwrap();
                let Some(last) = page.last() else { break };
                seen += page.len();
                after = Some(last.key.clone());
            }
            assert_eq!(seen as i64, n);
            black_box(seen)
        });
    });

    group.throughput(Throughput::Elements(COMMIT as u64));
    group.bench_function("get_10k_random", |b| {
        b.iter(|| {
            let keys: Vec<Key> = (0..COMMIT).map(|_| key(fastrand::i64(0..n))).collect();
            let got = rt.block_on(store.get(SYNC, &keys)).unwrap();
            assert!(got.iter().all(Option::is_some));
            black_box(got)
        });
    });
    group.finish();
}

fn state(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let n = keys();
    let stores = std::env::var("RSE_BENCH_STATE_STORES").unwrap_or_else(|_| "sqlite,postgres".into());

    if stores.contains("sqlite") {
        bench_sqlite(c, &rt, n);
    }
    if stores.contains("postgres") {
        bench_postgres(c, &rt, n);
    }
}

fn bench_sqlite(c: &mut Criterion, rt: &tokio::runtime::Runtime, n: i64) {
    let dir = std::env::temp_dir().join(format!("rse_bench_state_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state.db");
    let sqlite = rt.block_on(SqliteStateStore::open(&path)).unwrap();
    let size = || {
        // Fold the WAL into the file, so the size is the state's, not a log's.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum()
    };
    bench_store(c, rt, "sqlite", &sqlite, n, size);
    drop(sqlite);
    let _ = std::fs::remove_dir_all(&dir);
}

fn bench_postgres(c: &mut Criterion, rt: &tokio::runtime::Runtime, n: i64) {
    let url = std::env::var("RSE_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("rse_bench_state_{}", std::process::id());
    let admin = match rt.block_on(tokio_postgres::connect(&url, tokio_postgres::NoTls)) {
        Ok((client, conn)) => {
            rt.spawn(conn);
            client
        }
        Err(e) => return eprintln!("skipping state/postgres: {e}"),
    };
    let pg = rt.block_on(PostgresStateStore::connect(&url, &schema)).unwrap();
    let size = || {
        rt.block_on(async {
            admin.batch_execute("CHECKPOINT").await.unwrap();
            let row = admin
                .query_one(
                    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
                     JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'",
                    &[&schema],
                )
                .await
                .unwrap();
            row.get::<_, i64>(0) as u64
        })
    };
    bench_store(c, rt, "postgres", &pg, n, size);
    rt.block_on(admin.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))).unwrap();
}

criterion_group!(benches, state);
criterion_main!(benches);
