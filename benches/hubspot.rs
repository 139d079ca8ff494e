//! 100,000 contacts into the in-process HubSpot contract server at a Professional private
//! app's burst limit, 190 calls per rolling 10 s.
//!
//! A bench binary (not criterion: the run takes about a minute, paced by the quota, and is
//! run once). It prints:
//!
//! - quota use: calls sent / calls the limit allows over the run's wall time (190 per 10 s,
//!   pro rata), target ≥ 95 %; and over the span from the first call to the last;
//! - 429s answered (target 0) and the most calls any rolling 10 s held;
//! - rse's CPU time per 1,000 contacts: the process's user + system time (from
//!   `/proc/self/stat`) less the server thread's (`/proc/self/task/<tid>/stat`). The server
//!   runs on a runtime of its own on one thread, so its share (HTTP, checking every body
//!   against the contract's JSON Schema, the CRM store) is apart; what is left is the runner,
//!   the in-memory source and state, the destination's mapping and JSON, reqwest and tokio;
//! - the runner's own share: the CPU time of the same rows into `MemoryDestination`.
//!
//! Every answer waits `RSE_BENCH_HS_LATENCY_MS` (default 120 ms), as HubSpot's batch calls
//! take a while: the calls in flight are then several, as they are against the real API.
//! `RSE_BENCH_HS_CONTACTS` sets the contacts (default 100,000).
//!
//! Run with `cargo bench --bench hubspot --features hubspot`; the README's HubSpot section
//! has the figures measured on the development machine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../rse-connectors/tests/support/hubspot_server/mod.rs"]
mod hubspot_server;

use std::time::{Duration, Instant};

use hubspot_server::{HubSpot, PropertyDef, TOKEN};
use rse::connectors::hubspot::BurstLimit;
use rse::connectors::{HubSpotDestination, HubSpotDestinationConfig};
use rse::memory::{MemoryDestination, MemorySource, MemoryStateStore};
use rse::{DataType, Field, Mode, Record, RunStatus, Schema, SyncJob, SyncOptions, Value};

/// Clock ticks per second in `/proc` (`USER_HZ`, 100 on Linux whatever the kernel's HZ).
const TICKS: f64 = 100.0;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// utime + stime of a `/proc/.../stat` file, in seconds.
fn cpu_seconds(stat: &str) -> f64 {
    let text = std::fs::read_to_string(stat).unwrap();
    // The command may hold spaces: the fields start after its closing parenthesis.
    let fields: Vec<&str> = text[text.rfind(')').unwrap() + 2..].split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command.
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / TICKS
}

/// Starts the server on a thread and runtime of its own; returns it and that thread's
/// `/proc` stat path.
fn start_server() -> (HubSpot, String) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("hubspot-server".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let hs = HubSpot::start().await;
                let thread = std::fs::read_link("/proc/thread-self").unwrap();
                let tid = thread.file_name().unwrap().to_string_lossy().into_owned();
                tx.send((hs, format!("/proc/self/task/{tid}/stat"))).unwrap();
                std::future::pending::<()>().await;
            });
        })
        .unwrap();
    rx.recv().unwrap()
}

fn schema() -> Schema {
    Schema::new(
        vec![
            Field::required("id", DataType::Int),
            Field::new("email", DataType::String),
            Field::new("first_name", DataType::String),
            Field::new("last_name", DataType::String),
            Field::new("plan", DataType::String),
            Field::new("lifetime_value", DataType::Float),
            Field::new("churn_risk", DataType::Float),
            Field::new("signed_up", DataType::Date),
            Field::new("last_seen", DataType::Timestamp),
            Field::new("vip", DataType::Bool),
        ],
        &["id"],
    )
    .unwrap()
}

fn contact(id: i64) -> Record {
    Record::new(vec![
        Value::Int(id),
        Value::String(format!("Customer.{id}@Example.com")),
        Value::String(format!("First{id}")),
        Value::String(format!("Last{}", id % 997)),
        Value::from(["free", "starter", "pro", "enterprise"][id as usize % 4]),
        Value::Float(id as f64 * 1.25),
        Value::Float((id % 100) as f64 / 100.0),
        Value::Date(18_000 + (id % 2_000) as i32),
        Value::Timestamp(1_700_000_000_000_000 + id * 1_000_000),
        Value::Bool(id % 7 == 0),
    ])
}

fn main() {
    let contacts: i64 = env_or("RSE_BENCH_HS_CONTACTS", 100_000);
    let latency = Duration::from_millis(env_or("RSE_BENCH_HS_LATENCY_MS", 120));
    let (hs, server_stat) = start_server();
    for def in ["plan_tier", "ltv", "churn_risk", "signup_date", "last_seen", "vip"] {
        hs.add_property("contacts", PropertyDef::text(def));
    }
    hs.set_latency(latency);
    hs.lock().keep_bodies = false;
    let (limit, per) = (190u32, Duration::from_secs(10));
    hs.set_window(Some((limit, per)));

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let rows: Vec<Record> = (1..=contacts).map(contact).collect();
    let config = HubSpotDestinationConfig::contacts(TOKEN)
        .with_base_url(hs.base_url())
        .with_rate_limit(BurstLimit { requests: limit, per })
        .with_field("email", "email")
        .with_field("first_name", "firstname")
        .with_field("last_name", "lastname")
        .with_field("plan", "plan_tier")
        .with_field("lifetime_value", "ltv")
        .with_field("churn_risk", "churn_risk")
        .with_field("signed_up", "signup_date")
        .with_field("last_seen", "last_seen")
        .with_field("vip", "vip");
    let options = SyncOptions::default().with_batch_rows(100).with_linger(Duration::from_millis(5));
    let (report, took, cpu_total, cpu_server) = runtime.block_on(async {
        let sync = SyncJob::builder("contacts")
            .source(MemorySource::new(schema().into_arc(), rows))
            .destination(HubSpotDestination::new(config).unwrap())
            .state(MemoryStateStore::new())
            .mode(Mode::Upsert)
            .options(options)
            .build()
            .await
            .unwrap();
        let (cpu0, server0) = (cpu_seconds("/proc/self/stat"), cpu_seconds(&server_stat));
        let started = Instant::now();
        let report = sync.run().await.unwrap();
        let took = started.elapsed();
        let (cpu1, server1) = (cpu_seconds("/proc/self/stat"), cpu_seconds(&server_stat));
        (report, took, cpu1 - cpu0, server1 - server0)
    });
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(hs.live("contacts").len() as i64, contacts);

    // The runner alone: the same rows into `MemoryDestination`, unpaced.
    let floor_cpu = runtime.block_on(async {
        let sync = SyncJob::builder("contacts")
            .source(MemorySource::new(schema().into_arc(), (1..=contacts).map(contact).collect()))
            .destination(MemoryDestination::new())
            .state(MemoryStateStore::new())
            .options(SyncOptions::default().with_batch_rows(100).with_linger(Duration::from_millis(5)))
            .build()
            .await
            .unwrap();
        let cpu0 = cpu_seconds("/proc/self/stat");
        assert_eq!(sync.run().await.unwrap().status, RunStatus::Succeeded);
        cpu_seconds("/proc/self/stat") - cpu0
    });

    let calls = hs.calls("upsert") as f64;
    let allowed = |d: Duration| f64::from(limit) * d.as_secs_f64() / per.as_secs_f64();
    let span = {
        let s = hs.lock();
        match (s.limits.admitted.first(), s.limits.admitted.last()) {
            (Some(first), Some(last)) => last.duration_since(*first),
            _ => Duration::ZERO,
        }
    };
    let rse_cpu = cpu_total - cpu_server;
    println!(
        "hubspot/quota: {contacts} contacts, {calls} calls in {:.1} s ({latency:?} per answer)",
        took.as_secs_f64()
    );
    println!("  quota use over the run:          {:.1} % of {limit} per {per:?}", 100.0 * calls / allowed(took));
    println!("  quota use first call to last:    {:.1} %", 100.0 * (calls - 1.0) / allowed(span));
    println!("  429s: {}; most calls in a rolling 10 s: {}", hs.too_many(), hs.max_in_window(per));
    println!("  rate-limit waits in the report: {}", report.rate_limit_waits);
    println!(
        "  CPU: process {cpu_total:.2} s, server thread {cpu_server:.2} s, rse {rse_cpu:.2} s = {:.1} ms per 1,000 contacts",
        1_000.0 * rse_cpu / (contacts as f64 / 1_000.0)
    );
    println!(
        "  the runner alone (the same rows into MemoryDestination): {floor_cpu:.2} s = {:.1} ms per 1,000 contacts",
        1_000.0 * floor_cpu / (contacts as f64 / 1_000.0)
    );
    if std::env::var("RSE_BENCH_VERBOSE").is_ok() {
        println!("{report}");
    }
}
