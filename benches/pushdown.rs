//! The warehouse-side diff end to end: a PostgreSQL model of `RSE_BENCH_PUSHDOWN_ROWS` rows
//! (default 1,000,000; 10 columns, ~200 bytes a row) synced into `PostgresDestination`,
//! Mirror mode, state in a `SqliteStateStore`.
//!
//! Printed, per round (the same 1 % of rows change, a few rows go):
//! - `copy_key_hash`: a bare `COPY (SELECT id, <the row hash>) TO STDOUT` of the model, the
//!   least a client-side diff of hashes would move;
//! - `pushdown/unchanged` and `pushdown/rerun_1pct`: a re-run with `DiffStrategy::Pushdown`
//!   (the rows and keys that left the warehouse beside it);
//! - `full_read/rerun_1pct`: the same change synced by today's path (`Auto`: the whole model
//!   read in key order, merge diff), unless `RSE_BENCH_PUSHDOWN_FULL=0`;
//! - the peak RSS of each re-run (`VmHWM`, reset before it through `/proc/self/clear_refs`);
//! - the CPU time each re-run took on the server (every `postgres` process of this machine,
//!   background workers such as autovacuum included) and in this process.
//!
//! The first runs (every row new) happen in a child process, so that this process's memory
//! holds the re-runs alone. `RSE_BENCH_PUSHDOWN_ROWS=10000000 RSE_BENCH_PUSHDOWN_FULL=0` is
//! the 10 M-row run. Needs PostgreSQL at `RSE_POSTGRES_URL`.
//!
//! `RSE_BENCH_PUSHDOWN_KEEP=1` keeps the schemas (and state files) for a look afterwards.
//! `RSE_BENCH_LOG=rse_core=debug` prints the runs' events and spans with their times.
//!
//! `cargo bench --bench pushdown --features postgres,sqlite`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cpu::cpu;
use futures::StreamExt;
use rse::connectors::state::SqliteStateStore;
use rse::connectors::{PostgresDestination, PostgresDestinationOptions};
use rse::sources::Model;
use rse::sources::postgres::PostgresSource;
use rse::testing::{service_url, unique_id};
use rse::{DiffStrategy, Mode, RunStatus, SyncJob, SyncOptions, SyncReport};

#[path = "support/cpu.rs"]
mod cpu;

const CHILD_ENV: &str = "RSE_BENCH_PUSHDOWN_SCHEMA";
const ROUNDS: i64 = 3;

fn rows() -> i64 {
    std::env::var("RSE_BENCH_PUSHDOWN_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

fn compare_full() -> bool {
    std::env::var("RSE_BENCH_PUSHDOWN_FULL").map(|v| v != "0").unwrap_or(true)
}

fn url() -> String {
    service_url("RSE_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
}

fn state_path(schema: &str, name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{schema}_{name}.db"))
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Resets the peak RSS to the current RSS (Linux: `5` into `clear_refs`).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

async fn sync(schema: &str, name: &str, strategy: DiffStrategy) -> SyncJob {
    let url = url();
    let mut source = PostgresSource::from_url(&url, Model::qualified(schema, "model")).unwrap().with_key(["id"]);
    if strategy == DiffStrategy::Pushdown {
        source = source.with_pushdown_schema(format!("{schema}_hashes"));
    }
    let destination = PostgresDestination::new(
        &url,
        PostgresDestinationOptions::new(format!("dest_{name}")).with_schema(schema).with_create_table(true),
    )
    .unwrap();
    SyncJob::builder(format!("bench_{name}"))
        .source(source)
        .destination(destination)
        .state(SqliteStateStore::open(state_path(schema, name)).await.unwrap())
        .mode(Mode::Mirror)
        .options(
            SyncOptions::default()
                .with_diff_strategy(strategy)
                .with_batch_rows(5_000)
                .with_batch_bytes(64 << 20)
                .with_max_concurrency(4)
                .with_read_batch_size(5_000)
                .with_linger(Duration::from_millis(200)),
        )
        .build()
        .await
        .unwrap()
}

async fn timed(label: &str, sync: &SyncJob) -> (SyncReport, Duration, u64) {
    reset_peak();
    let (own_before, server_before) = cpu();
    let started = Instant::now();
    let report = sync.run().await.unwrap();
    let took = started.elapsed();
    let (own_after, server_after) = cpu();
    let peak = status_kb("VmHWM:");
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    let out = report
        .pushdown
        .as_ref()
        .map(|p| format!(", {} rows and {} vanished keys left the warehouse", p.rows_read, p.vanished));
    let stages = &report.stages;
    println!(
        "{label}: {took:.2?} (read {:.2?}, diff {:.2?}, deliver {:.2?}, commit {:.2?}), CPU: server {:.2} s, \
         client {:.2} s, peak RSS {:.0} MB; applied {} inserts, {} updates, {} deletes{}",
        stages.read,
        stages.diff,
        stages.deliver,
        stages.commit,
        server_after - server_before,
        own_after - own_before,
        peak as f64 / 1024.0,
        report.counts.applied.insert,
        report.counts.applied.update,
        report.counts.applied.delete,
        out.unwrap_or_default()
    );
    (report, took, peak)
}

/// The child: the first run of each sync (every row new), then exit.
async fn first_runs(schema: &str) {
    let mut names = vec![("pushdown", DiffStrategy::Pushdown)];
    if compare_full() {
        names.push(("full", DiffStrategy::Auto));
    }
    for (name, strategy) in names {
        let sync = sync(schema, name, strategy).await;
        let started = Instant::now();
        let report = sync.run().await.unwrap();
        assert_eq!(report.status, RunStatus::Succeeded, "{report}");
        println!("{name}/first_run: {} rows in {:.2?}", report.counts.applied.insert, started.elapsed());
    }
}

/// `COPY (SELECT id, hash) TO STDOUT`: what any client-side diff of hashes must move.
async fn copy_key_hash(client: &tokio_postgres::Client, schema: &str) -> Duration {
    let sql = format!(
        "COPY (SELECT m.id, hash_record_extended(ROW(m.id, m.email, m.name, m.address, m.plan, m.score, \
         m.lifetime_value, m.created_at, m.active, m.visits), 0) FROM \"{schema}\".model AS m) TO STDOUT"
    );
    let (own_before, server_before) = cpu();
    let started = Instant::now();
    let stream = client.copy_out(&sql).await.unwrap();
    let bytes = stream.fold(0usize, |n, chunk| async move { n + chunk.unwrap().len() }).await;
    let took = started.elapsed();
    let (own_after, server_after) = cpu();
    println!(
        "copy_key_hash: {took:.2?} ({:.1} MB of text), CPU: server {:.2} s, client {:.2} s",
        bytes as f64 / 1e6,
        server_after - server_before,
        own_after - own_before
    );
    took
}

/// `VACUUM` (its own statement: it cannot run in a transaction) and a checkpoint.
async fn vacuum(client: &tokio_postgres::Client, schema: &str) {
    client.batch_execute(&format!("VACUUM ANALYZE \"{schema}\".model")).await.unwrap();
    client.batch_execute("CHECKPOINT").await.unwrap();
}

fn main() {
    // `RSE_BENCH_LOG=rse_core=debug` prints the runs' events with the time since start.
    if let Ok(filter) = std::env::var("RSE_BENCH_LOG") {
        use tracing_subscriber::prelude::*;
        let targets: tracing_subscriber::filter::Targets = filter.parse().expect("RSE_BENCH_LOG: target=level,…");
        let fmt = tracing_subscriber::fmt::layer()
            .with_timer(tracing_subscriber::fmt::time::uptime())
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE);
        tracing_subscriber::registry().with(fmt).with(targets).init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    if let Ok(schema) = std::env::var(CHILD_ENV) {
        rt.block_on(first_runs(&schema));
        return;
    }
    rt.block_on(bench());
}

async fn bench() {
    let url = url();
    let (client, connection) = match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        Ok(c) => c,
        Err(e) => {
            println!("pushdown: skipped, {url} unreachable: {e}");
            return;
        }
    };
    tokio::spawn(connection);
    let n = rows();
    let schema = unique_id("rse_bench_pd");
    let started = Instant::now();
    client
        .batch_execute(&format!(
            "CREATE SCHEMA \"{schema}\"; CREATE SCHEMA \"{schema}_hashes\";
             CREATE TABLE \"{schema}\".model AS SELECT g::int8 AS id,
               'customer.' || lpad(g::text, 8, '0') || '@example-mail.com' AS email,
               'Firstname' || lpad(g::text, 6, '0') || ' Lastname' || lpad((g * 7 % 1000000)::text, 6, '0') AS name,
               (g % 9999) || ' Long Street Name, Apartment ' || (g % 97) || ', Springfield' AS address,
               (ARRAY['free', 'starter', 'professional', 'enterprise'])[g % 4 + 1] AS plan, g * 0.37::float8 AS score,
               ((g % 10000) * 12.5 + 0.25)::float8 AS lifetime_value, to_timestamp(1600000000 + g) AS created_at,
               g % 3 <> 0 AS active, (g % 1000)::int8 AS visits
             FROM generate_series(0, {n} - 1) AS g;
             ALTER TABLE \"{schema}\".model ADD PRIMARY KEY (id);"
        ))
        .await
        .unwrap();
    vacuum(&client, &schema).await;
    println!("pushdown: {n}-row model created in {:.1?}", started.elapsed());
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--bench")
        .env(CHILD_ENV, &schema)
        .status()
        .unwrap();
    assert!(status.success(), "the first runs failed");

    let pushdown = sync(&schema, "pushdown", DiffStrategy::Pushdown).await;
    let full = if compare_full() { Some(sync(&schema, "full", DiffStrategy::Auto).await) } else { None };
    client.batch_execute("CHECKPOINT").await.unwrap();
    let mut copies = Vec::new();
    let mut unchanged = Vec::new();
    let mut changed = Vec::new();
    let mut full_reads = Vec::new();
    for round in 0..ROUNDS {
        copies.push(copy_key_hash(&client, &schema).await);
        unchanged.push(timed("pushdown/unchanged", &pushdown).await.1);
        // 1 % of the rows change; 0.01 % go.
        client
            .batch_execute(&format!(
                "UPDATE \"{schema}\".model SET visits = visits + 1 WHERE id % 100 = {round};
                 DELETE FROM \"{schema}\".model WHERE id % 10000 = {};",
                50 + round
            ))
            .await
            .unwrap();
        vacuum(&client, &schema).await;
        changed.push(timed("pushdown/rerun_1pct", &pushdown).await.1);
        if let Some(full) = &full {
            full_reads.push(timed("full_read/rerun_1pct", full).await.1);
        }
    }
    let best = |v: &[Duration]| v.iter().min().copied().unwrap_or_default();
    let copy = best(&copies);
    let ratio = |d: Duration| d.as_secs_f64() / copy.as_secs_f64();
    println!(
        "pushdown summary ({n} rows, fastest of {ROUNDS}): COPY key+hash {copy:.2?}; pushdown unchanged {:.2?} ({:.2}×), \
         1 % changed {:.2?} ({:.2}×){}",
        best(&unchanged),
        ratio(best(&unchanged)),
        best(&changed),
        ratio(best(&changed)),
        if full_reads.is_empty() {
            String::new()
        } else {
            format!("; full read 1 % changed {:.2?}", best(&full_reads))
        }
    );
    if std::env::var_os("RSE_BENCH_PUSHDOWN_KEEP").is_some() {
        println!("pushdown: kept schemas {schema} and {schema}_hashes");
        return;
    }
    client
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE; DROP SCHEMA \"{schema}_hashes\" CASCADE"))
        .await
        .unwrap();
    for name in ["pushdown", "full"] {
        let path = state_path(&schema, name);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
