//! Peak resident memory of a `SqliteStateStore` scan: what a no-change re-run of a
//! key-ordered sync costs in memory for its state.
//!
//! A re-run with the merge diff walks the whole snapshot in key order, in pages of 10,000;
//! this process does only that — open the store, scan every key once, as the runner's merge
//! diff does — and prints its peak RSS (`VmHWM` from `/proc/self/status`), with the
//! file-backed and anonymous parts of the resident set after the scan (`RssFile`: pages of
//! the state file mapped into the process; `RssAnon`: heap, SQLite's page caches among it).
//!
//! The state is filled once, in a child process (so the parent's peak holds the scan alone),
//! through the store's own commits of 50,000 applied entries each: the same rows a sync's
//! commits write. The file is kept in the temp directory and reused by later runs of the same
//! size; delete it to build it again.
//!
//! Run with `cargo bench --bench state_rss --features sqlite`; `RSE_BENCH_STATE_KEYS` sets the
//! snapshot size (default 10,000,000: a 10 M-key state takes about 0.4 GB on disk and half a
//! minute to fill) and `RSE_BENCH_STATE_FILE` the file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rse_connectors::state::SqliteStateStore;
use rse_core::state::{SnapshotEntry, StateCommit};
use rse_core::{Fingerprint, Key, StateStore, Value};

const SYNC: &str = "bench";
const PAGE: usize = 10_000;
const FILL_ENV: &str = "RSE_BENCH_STATE_RSS_FILL";

fn keys() -> i64 {
    std::env::var("RSE_BENCH_STATE_KEYS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000)
}

fn path(n: i64) -> PathBuf {
    std::env::var_os("RSE_BENCH_STATE_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("rse_bench_state_rss_{n}.db")))
}

fn entry(i: i64) -> SnapshotEntry {
    let fp = 0x9E37_79B9_7F4A_7C15u128 ^ (i as u128).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    SnapshotEntry {
        key: Key::from_values(&[Value::Int(i)]),
        fingerprint: Some(Fingerprint(fp)),
        version: 1,
        pending: None,
        memo: None,
    }
}

fn status_kb(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

async fn fill(path: &Path, n: i64) {
    let store = SqliteStateStore::open(path).await.unwrap();
    let lease = store.acquire_lease(SYNC, "fill", Duration::from_secs(3_600)).await.unwrap();
    let mut start = 0;
    while start < n {
        let end = (start + 50_000).min(n);
        let commit = StateCommit { applied: (start..end).map(entry).collect(), ..StateCommit::default() };
        store.commit(&lease, commit).await.unwrap();
        start = end;
    }
    store.release_lease(&lease).await.unwrap();
}

/// Walks the snapshot in key order as the merge diff does: a page, and the next one fetched
/// while this one is consumed.
async fn scan(store: &SqliteStateStore) -> usize {
    let mut seen = 0;
    let mut page = store.scan(SYNC, None, PAGE).await.unwrap();
    while let Some(last) = page.last().map(|e| e.key.clone()) {
        let full = page.len() == PAGE;
        let next = full.then(|| {
            let store = store.clone();
            tokio::spawn(async move { store.scan(SYNC, Some(&last), PAGE).await })
        });
        seen += std::hint::black_box(page).len();
        match next {
            Some(next) => page = next.await.unwrap().unwrap(),
            None => break,
        }
    }
    seen
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let n = keys();
    let path = path(n);
    if let Some(fill_path) = std::env::var_os(FILL_ENV) {
        rt.block_on(fill(Path::new(&fill_path), n));
        return;
    }
    if !path.exists() {
        let started = Instant::now();
        let status =
            std::process::Command::new(std::env::current_exe().unwrap()).env(FILL_ENV, &path).status().unwrap();
        assert!(status.success(), "filling {} failed", path.display());
        println!("state_rss: filled {n} keys into {} in {:.1?}", path.display(), started.elapsed());
    }
    let bytes: u64 = ["", "-wal"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", path.display())).ok())
        .map(|m| m.len())
        .sum();
    let store = rt.block_on(SqliteStateStore::open(&path)).unwrap();
    let before = std::fs::read_to_string("/proc/self/status").unwrap();
    let started = Instant::now();
    let seen = rt.block_on(scan(&store));
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(seen as i64, n, "the scan found {seen} of {n} keys; delete {} to build it again", path.display());
    let after = std::fs::read_to_string("/proc/self/status").unwrap();
    println!(
        "state_rss: scanned {n} keys ({:.0} MB on disk) in {secs:.2} s = {:.2} M keys/s; peak RSS {} \
         (RSS {} before the scan; after it RssFile {}, RssAnon {})",
        bytes as f64 / 1e6,
        n as f64 / secs / 1e6,
        mb(status_kb(&after, "VmHWM:")),
        mb(status_kb(&before, "VmRSS:")),
        mb(status_kb(&after, "RssFile:")),
        mb(status_kb(&after, "RssAnon:")),
    );
}
