//! A million Customer Match members into the in-process Google Data Manager contract server:
//! an initial upload's wall time and the process's peak resident memory.
//!
//! The model (id, email, phone for every third row) is generated in key order as it is read;
//! the state is a `SqliteStateStore` in a temporary file (a million memos of hashed
//! identifiers do not belong in memory). The runner sends batches of 10,000 rows, each one
//! `audienceMembers:ingest` of 10,000 members (Google's cap), paced to the Cloud project's
//! quota: 300 requests a minute by default, so the hundred requests take at least 20 s of
//! the wall time whatever the machine. At the end of the run the destination polls each
//! request's processing status (one `PROCESSING` answer each, then the outcome with its
//! match rate).
//!
//! The server is this bench binary run again as a child process (selected by
//! `RSE_BENCH_DM_SERVER`), so that the peak resident memory measured (`VmHWM` from
//! `/proc/self/status`) is rse's alone: a Google that parses 10,000-member bodies into JSON
//! trees and keeps a million identifiers is no part of what rse costs. The server's own peak
//! is printed beside it. It runs in its lean mode: request bodies are parsed and checked by
//! the hand-coded rules but not against the JSON Schema (answers still are), and the list
//! keeps a 64-bit fingerprint per identifier.
//!
//! Run with `cargo bench --bench google_datamanager --features google,sqlite`;
//! `RSE_BENCH_DM_MEMBERS` sets the members (default 1,000,000), `RSE_BENCH_DM_RPM` the
//! requests per minute (default 300). The README's Google section has the figures measured
//! on the development machine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../rse-connectors/tests/support/datamanager_server/mod.rs"]
mod datamanager_server;
#[path = "support/generated.rs"]
mod generated;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use datamanager_server::{DataManager, LIST_ID, OPERATING_ACCOUNT, TOKEN};
use generated::{Generated, cpu_seconds, env_number, status_kb};

const SERVER_ENV: &str = "RSE_BENCH_DM_SERVER";
use rse::connectors::audience::AudienceFields;
use rse::connectors::google::datamanager::ProductAccount;
use rse::connectors::saas::SaasAuthConfig;
use rse::connectors::state::SqliteStateStore;
use rse::connectors::{GoogleDataManagerConfig, GoogleDataManagerDestination};
use rse::{DataType, Field, Mode, Record, RunStatus, Schema, SyncJob, SyncOptions, Value};

fn member(id: i64) -> Record {
    Record::new(vec![
        Value::Int(id),
        Value::String(format!("Customer.{id:08}@Example-Mail.com")),
        if id % 3 == 0 {
            Value::String(format!("+1 415 {:03} {:04}", id / 10_000 % 1_000, id % 10_000))
        } else {
            Value::Null
        },
    ])
}

/// The child: serves until told `stats` on stdin, then prints what the list holds, the
/// requests it accepted, its violations and its own peak memory, and exits.
fn serve(per_minute: u32) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    runtime.block_on(async {
        let dm = DataManager::start().await;
        dm.set_lean(true);
        dm.set_per_minute(Some(per_minute));
        dm.set_per_day(None);
        println!("ADDR {}", dm.base_url());
        std::io::stdout().flush().unwrap();
        let command = tokio::task::spawn_blocking(|| std::io::stdin().lines().next()).await.unwrap();
        assert!(matches!(command, Some(Ok(c)) if c == "stats"));
        let violations = dm.violations();
        for v in violations.iter().take(5) {
            eprintln!("violation: {v}");
        }
        println!(
            "STATS {} {} {} {}",
            dm.audience_len(LIST_ID),
            dm.accepted("ingest"),
            violations.len(),
            status_kb("VmHWM:")
        );
    });
}

async fn run(base_url: String, members: i64, per_minute: u32) -> (f64, f64, u64) {
    let fields = AudienceFields::new().email("email").phone("phone").default_country("US");
    let config = GoogleDataManagerConfig::new(
        SaasAuthConfig::Bearer { token: TOKEN.into() },
        ProductAccount::google_ads(OPERATING_ACCOUNT),
        LIST_ID,
        fields,
    )
    .with_base_url(base_url)
    .with_terms_of_service_accepted(true)
    .with_requests_per_minute(per_minute)
    .with_status_wait(Duration::from_secs(30), Duration::from_millis(100));
    let dir = std::env::temp_dir().join(format!("rse-bench-gdm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let schema = Schema::new(
        vec![
            Field::required("id", DataType::Int),
            Field::new("email", DataType::String),
            Field::new("phone", DataType::String),
        ],
        &["id"],
    )
    .unwrap()
    .into_arc();
    let sync = SyncJob::builder("bench_google_datamanager")
        .source(Generated { name: "generated:members", n: members, schema, row: member })
        .destination(GoogleDataManagerDestination::new(config).unwrap())
        .state(SqliteStateStore::open(dir.join("state.db")).await.unwrap())
        .mode(Mode::Mirror)
        .options(
            SyncOptions::default()
                .with_batch_rows(10_000)
                .with_batch_bytes(256 << 20)
                .with_read_batch_size(10_000)
                .with_write_timeout(Duration::from_secs(300)),
        )
        .build()
        .await
        .unwrap();
    let before_kb = status_kb("VmHWM:");
    let (cpu, started) = (cpu_seconds(), Instant::now());
    let report = sync.run().await.unwrap();
    let (took, cpu) = (started.elapsed(), cpu_seconds() - cpu);
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    let _ = std::fs::remove_dir_all(&dir);
    println!("  report: {}", report.audience.clone().unwrap_or_default());
    (took.as_secs_f64(), cpu, before_kb)
}

fn main() {
    let members = env_number("RSE_BENCH_DM_MEMBERS", 1_000_000) as i64;
    let per_minute = u32::try_from(env_number("RSE_BENCH_DM_RPM", 300)).unwrap();
    if std::env::var_os(SERVER_ENV).is_some() {
        return serve(per_minute);
    }
    let mut server = Command::new(std::env::current_exe().unwrap())
        .env(SERVER_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let addr = lines.next().unwrap().unwrap();
    let base_url = addr.strip_prefix("ADDR ").unwrap().to_owned();

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let (took, cpu, before_kb) = runtime.block_on(run(base_url, members, per_minute));
    let peak_kb = status_kb("VmHWM:");

    writeln!(server.stdin.as_mut().unwrap(), "stats").unwrap();
    let stats = lines.next().unwrap().unwrap();
    let numbers: Vec<u64> = stats.split_whitespace().skip(1).map(|n| n.parse().unwrap()).collect();
    let [held, requests, violations, server_kb] = numbers[..] else { panic!("{stats}") };
    assert!(server.wait().unwrap().success());
    // Every member has an e-mail address; ids 0, 3, 6… a phone number too.
    let identifiers = members as u64 + (members as u64).div_ceil(3);
    assert_eq!(held, identifiers, "every identifier is in the list");
    assert_eq!(violations, 0, "the server saw contract violations (its stderr lists them)");
    println!(
        "google_datamanager/initial: {members} members ({identifiers} identifiers) in {took:.2} s = {:.0} members/s; \
         {requests} ingest requests at {per_minute} a minute (pacing alone: {:.1} s); rse {cpu:.1} s CPU",
        members as f64 / took,
        (requests.saturating_sub(1)) as f64 * 60.0 / f64::from(per_minute),
    );
    println!(
        "  rse's peak RSS {:.1} MB (before the run {:.1} MB); the contract server's (its own process) {:.1} MB",
        peak_kb as f64 / 1024.0,
        before_kb as f64 / 1024.0,
        server_kb as f64 / 1024.0
    );
}
