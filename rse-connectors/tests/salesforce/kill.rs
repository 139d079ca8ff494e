//! SIGKILL, repeated: a sync of a contacts model into the org (which runs in this test
//! process, on a TCP port), run by worker processes killed at random moments (after their
//! first request reached the org) and restarted, with the state in a SQLite file. The
//! initial load and the large edits of the first phase go by Bulk jobs (batches of 500, Bulk
//! from 400 records), so kills land between a job's creation, upload, close and results; the
//! rest (new rows, smaller batches, then deletes) goes by Collections. At the end the org holds
//! exactly the model's rows with their latest values, no record of a row that left the model,
//! and every external id was created once at most.
//!
//! Rows leave the model in both phases. In the first, among them are rows added a cycle or
//! two before, whose creation's acknowledgement a kill may have lost before a run sent their
//! upsert again: the state holds no record id for them, and the destination finds their
//! records by the external id the key gives (see the module docs of
//! `rse_connectors::destination::salesforce`). In the second, rows present when the first
//! phase converged.
//!
//! The worker is this binary again (`kill::worker`, selected by `RSE_SF_KILL_WORKER`).
//! `RSE_SF_KILLS` sets the kills per phase (default 8). Follows the same documentation as the
//! rest of these tests (REST API Developer Guide, Bulk API 2.0 Developer Guide; saas-contracts.md §2).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rse_connectors::saas::JwtBearerConfig;
use rse_connectors::state::SqliteStateStore;
use rse_connectors::{SalesforceBulkOptions, SalesforceDestination, SalesforceDestinationConfig, Secret};
use rse_core::memory::MemorySource;
use rse_core::testing::unique_id;
use rse_core::{Mode, Record, SyncJob, SyncOptions, Value};
use serde_json::Value as Json;

use crate::salesforce_server::{SalesforceServer, test_key};
use crate::world::{EXT, fast_poll, schema};

const LEASE_TTL: Duration = Duration::from_secs(1);

/// A row of the model: id, name, score (email and active follow from the id).
type Row = (i64, String, f64);

fn record((id, name, score): &Row) -> Record {
    Record::new(vec![
        Value::Int(*id),
        Value::String(name.clone()),
        Value::String(format!("p{id}@example.com")),
        Value::Float(*score),
        Value::Bool(id % 2 == 0),
    ])
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap()
}

/// The worker: runs the sync once to the end (waiting out a killed runner's lease).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker() {
    if std::env::var("RSE_SF_KILL_WORKER").is_err() {
        return;
    }
    let rows: Vec<Row> = serde_json::from_slice(&std::fs::read(env("RSE_SF_SOURCE")).unwrap()).unwrap();
    let auth = JwtBearerConfig::new(
        format!("{}/services/oauth2/token", env("RSE_SF_URL")),
        env("RSE_SF_CLIENT_ID"),
        env("RSE_SF_USER"),
        Secret::from_env("RSE_SF_KEY").unwrap(),
    );
    let config = SalesforceDestinationConfig::new(auth, "Contact", EXT)
        .with_field("name", "LastName")
        .with_field("email", "Email")
        .with_field("score", "Score__c")
        .with_field("active", "Active__c")
        .with_bulk(SalesforceBulkOptions::default().with_min_records(400).with_poll(fast_poll()));
    let options = SyncOptions::default()
        .with_batch_rows(500)
        .with_max_concurrency(2)
        .with_lease_ttl(LEASE_TTL)
        .with_max_deletes(None)
        .with_linger(Duration::from_millis(2))
        .with_holder(format!("pid {}", std::process::id()));
    let sync = SyncJob::builder("contacts")
        .source(MemorySource::new(schema(), rows.iter().map(record).collect()))
        .destination(SalesforceDestination::new(config).unwrap())
        .state(SqliteStateStore::open(env("RSE_SF_STATE")).await.unwrap())
        .mode(Mode::Mirror)
        .options(options)
        .build()
        .await
        .unwrap();
    crate::child_run::run_after_the_lease_lapses(&sync).await;
}

struct Parent {
    server: SalesforceServer,
    dir: PathBuf,
    rows: BTreeMap<i64, Row>,
}

impl Parent {
    fn source(&self) -> PathBuf {
        self.dir.join("source.json")
    }

    fn write_source(&self) {
        let rows: Vec<&Row> = self.rows.values().collect();
        std::fs::write(self.source(), serde_json::to_vec(&rows).unwrap()).unwrap();
    }

    fn spawn(&self) -> tokio::process::Child {
        let org = self.server.lock();
        tokio::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "kill::worker", "--nocapture", "--test-threads", "1"])
            .env("RSE_SF_KILL_WORKER", "1")
            .env("RSE_SF_URL", self.server.url())
            .env("RSE_SF_CLIENT_ID", &org.consumer_key)
            .env("RSE_SF_USER", &org.username)
            .env("RSE_SF_KEY", &test_key().private_pem)
            .env("RSE_SF_SOURCE", self.source())
            .env("RSE_SF_STATE", self.dir.join("state.db"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    /// Runs a worker to the end; returns how many changes it planned.
    async fn run_to_end(&self) -> u64 {
        crate::child_run::planned(&self.spawn().wait_with_output().await.unwrap())
    }

    /// Runs workers, editing the model with `edit` before each, until `kills` were killed.
    /// Each is killed at a random moment after its first request reached the org, within
    /// the time the last complete run spent talking to it.
    async fn kill_cycles(&mut self, kills: u32, mut edit: impl FnMut(&mut BTreeMap<i64, Row>, u32)) -> (u32, u32) {
        let (mut killed, mut completed) = (0, 0);
        let mut typical = Duration::from_millis(500);
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut cycle = 0;
        while killed < kills && Instant::now() < deadline {
            cycle += 1;
            edit(&mut self.rows, cycle);
            self.write_source();
            let before = self.server.lock().requests.len();
            let mut child = self.spawn();
            // Wait for the worker to reach the org (it may also finish or fail first).
            while self.server.lock().requests.len() == before && child.try_wait().unwrap().is_none() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let talking = Instant::now();
            let delay = Duration::from_millis(fastrand::u64(0..typical.as_millis().max(10) as u64));
            if tokio::time::timeout(delay, child.wait()).await.is_err() {
                child.start_kill().unwrap(); // SIGKILL
            }
            let out = child.wait_with_output().await.unwrap();
            if std::env::var("RSE_SF_KILL_VERBOSE").is_ok() {
                let org = self.server.lock();
                eprintln!("cycle {cycle}: {:?} after {delay:?}: {:?}", out.status.code(), &org.requests[before..]);
            }
            if crate::child_run::killed(&out) {
                killed += 1;
            } else {
                completed += 1;
                typical = talking.elapsed();
            }
        }
        (killed, completed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_sigkill_loses_nothing_and_creates_one_record_per_external_id() {
    let kills: u32 = std::env::var("RSE_SF_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let server = SalesforceServer::start().await;
    // Each request takes a little time, so that kills land between requests of a run.
    server.lock().hold = Some(Duration::from_millis(2));
    let dir = std::env::temp_dir().join(unique_id("rse_sf_kill"));
    std::fs::create_dir_all(&dir).unwrap();
    let rows = (1..=3_000).map(|i| (i, (i, format!("Person {i}"), 0.0))).collect();
    let mut parent = Parent { server, dir, rows };

    // Phase 1: the initial load by Bulk, then updates, new rows and rows leaving the model.
    let mut next_id = 3_001;
    let first = parent
        .kill_cycles(kills, |rows, cycle| {
            if cycle > 1 {
                // Enough updates that a batch of 500 holds 400 upserts: Bulk again.
                for _ in 0..1_200 {
                    let id = fastrand::i64(1..next_id);
                    if let Some(row) = rows.get_mut(&id) {
                        row.2 = f64::from(cycle);
                    }
                }
                // Half the rows the cycle before added: a kill may have left their creation
                // unacknowledged.
                for id in (next_id - 50..next_id).filter(|id| id % 2 == 0) {
                    rows.remove(&id);
                }
                for _ in 0..50 {
                    rows.insert(next_id, (next_id, format!("Person {next_id}"), f64::from(cycle)));
                    next_id += 1;
                }
            }
        })
        .await;
    parent.run_to_end().await;

    // Phase 2: updates and deletes of rows every one of which the org has acknowledged.
    let second = parent
        .kill_cycles(kills, |rows, cycle| {
            let ids: Vec<i64> = rows.keys().copied().collect();
            for _ in 0..30 {
                rows.remove(&ids[fastrand::usize(..ids.len())]);
            }
            for _ in 0..100 {
                if let Some(row) = rows.get_mut(&ids[fastrand::usize(..ids.len())]) {
                    row.1 = format!("Person renamed {cycle}");
                }
            }
        })
        .await;
    assert!(first.0 + second.0 >= kills.min(4), "only {} kills landed", first.0 + second.0);
    parent.run_to_end().await;
    assert_eq!(parent.run_to_end().await, 0, "a run after convergence planned changes");

    let org = parent.server.lock();
    let held: BTreeMap<String, (Json, Json)> = org
        .records
        .values()
        .filter_map(|r| {
            Some((
                crate::world::ext_text(r.fields.get(EXT)?)?,
                (r.fields["LastName"].clone(), r.fields["Score__c"].clone()),
            ))
        })
        .collect();
    let want: BTreeMap<String, (Json, Json)> = parent
        .rows
        .values()
        .map(|(id, name, score)| (id.to_string(), (Json::from(name.as_str()), Json::from(*score))))
        .collect();
    let stayed: Vec<&String> = held.keys().filter(|id| !want.contains_key(*id)).collect();
    assert!(stayed.is_empty(), "contacts {stayed:?} left the model but stay in Salesforce");
    assert_eq!(held.len(), want.len(), "the org holds {} contacts, the model {} rows", held.len(), want.len());
    for (id, (name, score)) in &want {
        let (held_name, held_score) = &held[id];
        assert_eq!((held_name, held_score.as_f64()), (name, score.as_f64()), "contact {id}");
    }
    // A row that left the model before a run sent it was never created.
    let ever: BTreeSet<String> = (1..next_id).map(|i| i.to_string()).collect();
    for id in &ever {
        let created = org.creations_of("Contact", EXT, id);
        let want_created = if want.contains_key(id) { 1..=1 } else { 0..=1 };
        assert!(want_created.contains(&created), "contact {id} was created {created} times");
    }
    eprintln!(
        "salesforce: {} + {} kills, {} + {} runs completed, {} Bulk jobs, {} REST requests, {} lookups by external id",
        first.0,
        second.0,
        first.1,
        second.1,
        org.jobs.len(),
        org.requests.len(),
        org.ext_lookups
    );
    drop(org);
    let _ = std::fs::remove_dir_all(&parent.dir);
}
