//! A million records into Salesforce by Bulk API 2.0, against the in-process contract server:
//! rse's side of an initial load, in rows per second and peak resident memory.
//!
//! The model is generated in key order (id, name, email, score, active: about 60 bytes of
//! CSV a row), the state is a `SqliteStateStore` in a temporary file (a million snapshot
//! entries with their record ids do not belong in memory), the runner sends batches of 10,000
//! (the destination's default cap), four at a time, each as one Bulk job, polled every 20 to
//! 100 ms. Everything runs in this process, the org included, on the same cores.
//!
//! The org runs in its lean mode: it counts each row and answers it as created under a made-up
//! id, keeps no record, drops a job's rows once processed and its results once read. Its
//! share of the memory is then the jobs in flight; it reports the most bytes of row data it
//! held at once, printed beside the process's peak (`VmHWM` from `/proc/self/status`, read
//! before the run, after the org started and the RSA key was made, and after it).
//!
//! Run with `cargo bench --bench salesforce --features salesforce,sqlite`;
//! `RSE_BENCH_SF_ROWS` sets the rows (default 1,000,000), `RSE_BENCH_SF_BATCH` the batch (and
//! job) size. Add `--features bench-mimalloc` for mimalloc. The README's performance section
//! has the figures measured on the development machine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(feature = "bench-mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/generated.rs"]
mod generated;
#[path = "../rse-connectors/tests/support/salesforce_server/mod.rs"]
mod salesforce_server;

use std::time::{Duration, Instant};

use generated::{Generated, cpu_seconds, env_number, status_kb};
use rse::connectors::saas::{JwtBearerConfig, PollOptions};
use rse::connectors::state::SqliteStateStore;
use rse::connectors::{SalesforceBulkOptions, SalesforceDestination, SalesforceDestinationConfig};
use rse::{DataType, Field, Mode, Record, RunStatus, Schema, SyncJob, SyncOptions, Value};
use salesforce_server::{SalesforceServer, test_key};

fn contact(id: i64) -> Record {
    Record::new(vec![
        Value::Int(id),
        Value::String(format!("Lastname{:07}", id * 7 % 10_000_000)),
        Value::String(format!("customer.{id:08}@example-mail.com")),
        Value::Float((id % 10_000) as f64 * 0.25),
        Value::Bool(id % 3 != 0),
    ])
}

async fn run(rows: i64, batch: usize, concurrency: usize) {
    let server = SalesforceServer::start().await;
    server.lock().bulk.lean = true;
    let auth = {
        let org = server.lock();
        JwtBearerConfig::new(
            format!("{}/services/oauth2/token", server.url()),
            org.consumer_key.clone(),
            org.username.clone(),
            test_key().private_pem.clone(),
        )
    };
    let poll = PollOptions::new(Duration::from_secs(600))
        .with_intervals(Duration::from_millis(20), Duration::from_millis(100));
    let config = SalesforceDestinationConfig::new(auth, "Contact", "Rse_Ext_Id__c")
        .with_field("name", "LastName")
        .with_field("email", "Email")
        .with_field("score", "Score__c")
        .with_field("active", "Active__c")
        .with_max_batch_rows(batch)
        .with_bulk(SalesforceBulkOptions::default().with_poll(poll));
    let dir = std::env::temp_dir().join(format!("rse-bench-sf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let schema = Schema::new(
        vec![
            Field::required("id", DataType::Int),
            Field::new("name", DataType::String),
            Field::new("email", DataType::String),
            Field::new("score", DataType::Float),
            Field::new("active", DataType::Bool),
        ],
        &["id"],
    )
    .unwrap()
    .into_arc();
    let sync = SyncJob::builder("bench_salesforce")
        .source(Generated { name: "generated:contacts", n: rows, schema, row: contact })
        .destination(SalesforceDestination::new(config).unwrap())
        .state(SqliteStateStore::open(dir.join("state.db")).await.unwrap())
        .mode(Mode::Upsert)
        .options(
            SyncOptions::default()
                .with_batch_rows(batch)
                .with_batch_bytes(256 << 20)
                .with_read_batch_size(batch)
                .with_max_concurrency(concurrency)
                .with_write_timeout(Duration::from_secs(900)),
        )
        .build()
        .await
        .unwrap();
    let before_kb = status_kb("VmHWM:");
    let (cpu, started) = (cpu_seconds(), Instant::now());
    let sampler = std::env::var_os("RSE_BENCH_VERBOSE").map(|_| {
        let server = server.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let (rows, jobs) = {
                    let org = server.lock();
                    (org.bulk.lean_rows, org.jobs.len())
                };
                println!("  {rows} rows processed, {jobs} jobs, RSS {:.1} MB", status_kb("VmRSS:") as f64 / 1024.0);
            }
        })
    });
    let report = sync.run().await.unwrap();
    if let Some(sampler) = sampler {
        sampler.abort();
    }
    let (took, cpu) = (started.elapsed(), cpu_seconds() - cpu);
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(report.counts.destination.created, rows as u64, "{report}");
    let org = server.lock();
    assert_eq!(org.bulk.lean_rows, rows as u64);
    let jobs = org.jobs.len();
    let org_peak = org.bulk.lean_peak_bytes;
    let org_busy = org.bulk.lean_busy;
    drop(org);
    let peak_kb = status_kb("VmHWM:");
    println!(
        "salesforce/bulk_initial: {rows} rows in {took:.2?} = {:.0} rows/s ({jobs} jobs of {batch}, {concurrency} at a time, {:.1} s CPU in all, org included)",
        rows as f64 / took.as_secs_f64(),
        cpu
    );
    println!(
        "  the org's own work (parsing uploads, processing, writing result files) {:.1} s; rse's side \
         {:.1} s CPU = {:.0} rows per CPU second",
        org_busy.as_secs_f64(),
        cpu - org_busy.as_secs_f64(),
        rows as f64 / (cpu - org_busy.as_secs_f64())
    );
    println!(
        "  peak RSS {:.1} MB (before the run {:.1} MB); the org held at most {:.1} MB of row data at once",
        peak_kb as f64 / 1024.0,
        before_kb as f64 / 1024.0,
        org_peak as f64 / (1024.0 * 1024.0)
    );
    if std::env::var_os("RSE_BENCH_VERBOSE").is_some() {
        println!("{report}\n  stages: {:?}", report.stages);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let rows = env_number("RSE_BENCH_SF_ROWS", 1_000_000) as i64;
    let batch = env_number("RSE_BENCH_SF_BATCH", 10_000) as usize;
    let concurrency = env_number("RSE_BENCH_SF_CONCURRENCY", 2) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(run(rows, batch, concurrency));
}
