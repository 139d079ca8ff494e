//! Diff throughput over a million 10-column records (about 200 canonical bytes each).
//!
//! - `diff/hash/1pct_changed`: `HashDiff::from_entries` over the snapshot, every batch of
//!   1024 pushed, then `finish`; 1 % of the records differ from the snapshot.
//! - `diff/merge/1pct_changed`: the same through `MergeDiff` over a `MemoryStateStore`
//!   filled once, outside the timed loop.
//! - `diff/lookup/1pct_changed`: the pushdown strategy's `LookupDiff` over the same store,
//!   pushed only the 1 % of records that changed (what a pushdown source hands out), each
//!   batch looked up with `StateStore::get`. Throughput counts the whole model's rows, as
//!   the other two, so the figures compare the same re-run.
//! - `diff/hash/unchanged`: the hash diff's unchanged path alone (0 % changed), whose target
//!   is 2,000,000 rows/s per core. The whole table is cloned before the timed pass, so every
//!   record is out of cache when the diff reads and frees it.
//! - `diff/hash/unchanged_streaming`: the same path as a run sees it: each batch is cloned
//!   (untimed) right before the diff consumes it, as a source hands over a batch it has just
//!   built, so only the diff's own work is timed.
//! - `diff/hash/unchanged_shuffled`: the unchanged path with the source in a random order
//!   unrelated to the snapshot's key order (the snapshot's slots are then read at random,
//!   not streamed), measured like `unchanged_streaming`.
//!
//! The records are built once; each iteration gets a fresh clone (untimed) because `push`
//! consumes them. Run with `cargo bench --bench diff`; set `RSE_BENCH_ROWS` to bench a
//! smaller table, and add `--features bench-mimalloc` to measure with mimalloc as the global
//! allocator (freeing each record's strings is a large part of the unchanged path).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use rse_core::diff::{DiffOutput, Differ, HashDiff, LookupDiff, MergeDiff};
use rse_core::memory::MemoryStateStore;
use rse_core::{
    Fingerprint, FingerprintAlgorithm, Fingerprinter, Key, Record, Schema, SnapshotEntry, StateCommit, StateStore,
    Value,
};

#[path = "support/customers.rs"]
mod customers;
use customers::{record, schema};

#[cfg(feature = "bench-mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 1024;
/// The page size the runner reads the snapshot with.
const PAGE: usize = 10_000;
const SYNC: &str = "bench";
const ALGORITHM: FingerprintAlgorithm = FingerprintAlgorithm::Xxh3_128;

fn rows() -> usize {
    std::env::var("RSE_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

/// The same record as the snapshot last saw it: an older score.
fn older(record: &Record) -> Record {
    let mut old = record.clone();
    old.values[5] = Value::Float(-1.0);
    old
}

fn entry(key: Key, fingerprint: Fingerprint) -> SnapshotEntry {
    SnapshotEntry { key, fingerprint: Some(fingerprint), version: 1, pending: None, memo: None }
}

struct Table {
    schema: Schema,
    /// The source table in key order, in batches of 1024.
    batches: Vec<Vec<Record>>,
    /// The same records in a random order, in batches of 1024.
    shuffled: Vec<Vec<Record>>,
    /// The snapshot of the same table.
    unchanged: Vec<SnapshotEntry>,
    /// The snapshot of the table before every 100th record changed.
    changed: Vec<SnapshotEntry>,
}

fn table(rows: usize) -> Table {
    let schema = schema();
    let mut fingerprinter = Fingerprinter::new(ALGORITHM, &schema);
    let records: Vec<Record> = (0..rows).map(record).collect();
    let mut unchanged = Vec::with_capacity(rows);
    let mut changed = Vec::with_capacity(rows);
    for (i, r) in records.iter().enumerate() {
        let key = r.key(&schema).expect("id is never null");
        let now = fingerprinter.fingerprint(r);
        let before = if i % 100 == 0 { fingerprinter.fingerprint(&older(r)) } else { now };
        unchanged.push(entry(key.clone(), now));
        changed.push(entry(key, before));
    }
    let batches = records.chunks(BATCH).map(<[Record]>::to_vec).collect();
    // Fisher–Yates with a fixed xorshift generator: the same order every run.
    let mut order: Vec<usize> = (0..rows).collect();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..rows).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        order.swap(i, (state % (i as u64 + 1)) as usize);
    }
    let shuffled_records: Vec<Record> = order.iter().map(|&i| records[i].clone()).collect();
    let shuffled = shuffled_records.chunks(BATCH).map(<[Record]>::to_vec).collect();
    Table { schema, batches, shuffled, unchanged, changed }
}

async fn run(differ: &mut dyn Differ, schema: &Schema, batches: Vec<Vec<Record>>) -> DiffOutput {
    let mut out = DiffOutput::default();
    for batch in batches {
        differ.push(schema, batch, Vec::new(), &mut out).await.expect("diff");
    }
    differ.finish(&mut out).await.expect("finish");
    out
}

async fn store_with(entries: Vec<SnapshotEntry>) -> Arc<MemoryStateStore> {
    let store = MemoryStateStore::new();
    let lease = store.acquire_lease(SYNC, "bench", Duration::from_secs(3600)).await.expect("lease");
    store.commit(&lease, StateCommit { applied: entries, ..StateCommit::default() }).await.expect("commit");
    store.release_lease(&lease).await.expect("release");
    Arc::new(store)
}

fn bench_diff(c: &mut Criterion) {
    let rows = rows();
    let t = table(rows);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let store = rt.block_on(store_with(t.changed.clone()));
    let expected_updates = rows.div_ceil(100);

    let mut group = c.benchmark_group("diff");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(rows as u64));

    group.bench_function("hash/1pct_changed", |b| {
        b.iter_batched(
            || (t.changed.clone(), t.batches.clone()),
            |(entries, batches)| {
                let mut differ = HashDiff::from_entries(entries, ALGORITHM);
                let out = rt.block_on(run(&mut differ, &t.schema, batches));
                assert_eq!(out.planned.len(), expected_updates);
                // Returned, so that freeing the map and the plan is not timed.
                (differ, out)
            },
            BatchSize::LargeInput,
        );
    });

    group.bench_function("merge/1pct_changed", |b| {
        b.iter_batched(
            || t.batches.clone(),
            |batches| {
                let mut differ = MergeDiff::new(store.clone(), SYNC, ALGORITHM, PAGE);
                let out = rt.block_on(run(&mut differ, &t.schema, batches));
                assert_eq!(out.planned.len(), expected_updates);
                (differ, out)
            },
            BatchSize::LargeInput,
        );
    });

    let changed: Vec<Vec<Record>> = t
        .batches
        .iter()
        .flatten()
        .enumerate()
        .filter(|(i, _)| i % 100 == 0)
        .map(|(_, r)| r.clone())
        .collect::<Vec<_>>()
        .chunks(BATCH)
        .map(<[Record]>::to_vec)
        .collect();
    group.bench_function("lookup/1pct_changed", |b| {
        b.iter_batched(
            || changed.clone(),
            |batches| {
                let mut differ = LookupDiff::new(store.clone(), SYNC, ALGORITHM, PAGE);
                let out = rt.block_on(run(&mut differ, &t.schema, batches));
                assert_eq!(out.planned.len(), expected_updates);
                (differ, out)
            },
            BatchSize::LargeInput,
        );
    });

    group.bench_function("hash/unchanged", |b| {
        b.iter_batched(
            || (HashDiff::from_entries(t.unchanged.clone(), ALGORITHM), t.batches.clone()),
            |(mut differ, batches)| {
                let out = rt.block_on(run(&mut differ, &t.schema, batches));
                assert_eq!(out.unchanged, rows as u64);
                (differ, out)
            },
            BatchSize::LargeInput,
        );
    });
    for (name, batches) in [("hash/unchanged_streaming", &t.batches), ("hash/unchanged_shuffled", &t.shuffled)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let mut differ = HashDiff::from_entries(t.unchanged.clone(), ALGORITHM);
                    let mut out = DiffOutput::default();
                    for batch in batches {
                        let batch = batch.clone();
                        let started = std::time::Instant::now();
                        rt.block_on(differ.push(&t.schema, batch, Vec::new(), &mut out)).expect("diff");
                        timed += started.elapsed();
                    }
                    let started = std::time::Instant::now();
                    rt.block_on(differ.finish(&mut out)).expect("finish");
                    timed += started.elapsed();
                    assert_eq!(out.unchanged, rows as u64);
                    black_box((differ, out));
                }
                timed
            });
        });
    }
    group.finish();
    black_box(&store);
}

criterion_group!(benches, bench_diff);
criterion_main!(benches);
