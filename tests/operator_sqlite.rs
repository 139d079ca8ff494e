//! Operator controls on real SQLite files: a pause made while a run writes into an app's
//! SQLite table, a consent table in the warehouse driving a sync's suppressions (by key and by
//! hashed e-mail), and a canary widened on the same files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rse::canary::Canary;
use rse::connectors::state::SqliteStateStore;
use rse::connectors::{SqliteDestination, SqliteDestinationOptions};
use rse::sources::Model;
use rse::sources::sqlite::SqliteSource;
use rse::suppression::{IdentifierColumn, SourceSuppressions};
use rse::testing::{FaultyDestination, unique_id};
use rse::{Key, Mode, ProgressEvent, RunStatus, StateStore, SyncJob, SyncOptions, Value};
use rusqlite::Connection;
use sha2::{Digest, Sha256};

/// A fresh directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(unique_id("rse_operator"));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn table(name: &str) -> Model {
    Model::Table { schema: None, name: name.to_owned() }
}

/// A warehouse with `customers` (id, email, score) and the consent system's two tables.
fn warehouse(path: &Path, customers: i64) {
    let mut conn = Connection::open(path).unwrap();
    let conn = conn.transaction().unwrap();
    conn.execute_batch(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT, score REAL);
         CREATE TABLE revoked_ids (id INTEGER PRIMARY KEY);
         CREATE TABLE revoked_emails (email_sha256 TEXT NOT NULL);",
    )
    .unwrap();
    let mut insert = conn.prepare("INSERT INTO customers VALUES (?1, ?2, ?3)").unwrap();
    for id in 1..=customers {
        // Addresses as people type them: mixed case, stray spaces.
        insert.execute(rusqlite::params![id, format!(" User{id}@Example.com"), id as f64 / 10.0]).unwrap();
    }
    drop(insert);
    conn.commit().unwrap();
}

fn sql(path: &Path, statement: &str) {
    Connection::open(path).unwrap().execute_batch(statement).unwrap();
}

/// The ids the app's table holds, and the score of `id`.
fn held(app: &Path) -> BTreeSet<i64> {
    let conn = Connection::open(app).unwrap();
    let mut stmt = conn.prepare("SELECT id FROM customers").unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

fn score(app: &Path, id: i64) -> Option<f64> {
    let conn = Connection::open(app).unwrap();
    conn.query_row("SELECT score FROM customers WHERE id = ?1", [id], |r| r.get(0)).ok()
}

/// The hex SHA-256 of a trimmed, lower-cased e-mail, as a consent tool lists it.
fn email_digest(email: &str) -> String {
    Sha256::digest(email.trim().to_lowercase().as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

async fn sync(dir: &TempDir, mode: Mode, options: SyncOptions) -> SyncJob {
    let wh = dir.file("warehouse.db");
    let revoked_ids = SqliteSource::new(&wh, table("revoked_ids")).with_key(["id"]);
    let revoked_emails = SqliteSource::new(&wh, table("revoked_emails"));
    let destination =
        SqliteDestination::open(dir.file("app.db"), SqliteDestinationOptions::new("customers").with_create_table(true))
            .await
            .unwrap();
    SyncJob::builder("customers-to-app")
        .source(SqliteSource::new(&wh, table("customers")).with_key(["id"]))
        .destination(destination)
        .state(SqliteStateStore::open(dir.file("state.db")).await.unwrap())
        .mode(mode)
        .suppressions(SourceSuppressions::keys(revoked_ids))
        .suppressions(SourceSuppressions::digests(revoked_emails, "email_sha256", IdentifierColumn::email("email")))
        .options(options)
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_table_removes_keys_and_hashed_emails_from_a_sqlite_table_and_lets_them_back() {
    let dir = TempDir::new();
    let (wh, app) = (dir.file("warehouse.db"), dir.file("app.db"));
    warehouse(&wh, 50);
    let sync = sync(&dir, Mode::Upsert, SyncOptions::default()).await;
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(held(&app), (1..=50).collect());

    // Consent withdrawn: two by customer id, one by the hash of an e-mail.
    sql(
        &wh,
        &format!(
            "INSERT INTO revoked_ids VALUES (3), (4); INSERT INTO revoked_emails VALUES ('{}');",
            email_digest("user10@example.com")
        ),
    );
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    let expected: BTreeSet<i64> = (1..=50).filter(|id| ![3, 4, 10].contains(id)).collect();
    assert_eq!(held(&app), expected, "removed although the sync upserts");
    let s = report.suppression.clone().unwrap();
    assert_eq!((s.listed, s.kept_out, s.removed), (3, 3, 3), "{report}");

    // Their rows change in the warehouse: nothing is sent.
    sql(&wh, "UPDATE customers SET score = 99 WHERE id IN (3, 4, 10)");
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.applied.total(), 0, "{report}");
    assert_eq!(held(&app), expected);

    // Consent given again for 3 and for the e-mail: they come back with their current rows.
    sql(&wh, "DELETE FROM revoked_ids WHERE id = 3; DELETE FROM revoked_emails;");
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(report.counts.applied.insert, 2, "{report}");
    assert_eq!(held(&app), (1..=50).filter(|&id| id != 4).collect());
    assert_eq!(score(&app, 3), Some(99.0));
    assert_eq!(score(&app, 4), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_table_with_a_malformed_digest_stops_the_run_before_anything_is_sent() {
    let dir = TempDir::new();
    let (wh, app) = (dir.file("warehouse.db"), dir.file("app.db"));
    warehouse(&wh, 5);
    sql(&wh, "INSERT INTO revoked_emails VALUES ('someone@example.com')");
    let report = sync(&dir, Mode::Upsert, SyncOptions::default()).await.run().await.unwrap();
    let RunStatus::Failed { reason, .. } = &report.status else { panic!("{report}") };
    assert!(reason.contains("row 1") && reason.contains("SHA-256"), "{reason}");
    assert!(!reason.contains("someone"), "the message repeats the listed value: {reason}");
    assert!(held_or_empty(&app).is_empty(), "something was sent");
}

fn held_or_empty(app: &Path) -> BTreeSet<i64> {
    if app.exists() && Connection::open(app).unwrap().prepare("SELECT 1 FROM customers").is_ok() {
        held(app)
    } else {
        BTreeSet::new()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_widens_on_sqlite_files_and_keeps_mirror_deletes_inside_it() {
    let dir = TempDir::new();
    let (wh, app) = (dir.file("warehouse.db"), dir.file("app.db"));
    warehouse(&wh, 2_000);
    let in_fraction = |f: f64, ids: &BTreeSet<i64>| -> BTreeSet<i64> {
        let canary = Canary::new(f).unwrap();
        ids.iter().copied().filter(|&id| canary.contains(&Key::from_values(&[Value::Int(id)]))).collect()
    };
    let all: BTreeSet<i64> = (1..=2_000).collect();
    let mut previous = BTreeSet::new();
    for f in [0.01, 0.1, 1.0] {
        let report = sync(&dir, Mode::Mirror, SyncOptions::default().with_canary(f)).await.run().await.unwrap();
        assert_eq!(report.status, RunStatus::Succeeded, "{report}");
        let now = held(&app);
        assert_eq!(now, in_fraction(f, &all), "at {f}");
        assert!(previous.is_subset(&now), "a key left when the canary widened to {f}");
        previous = now;
    }
    // The model loses every tenth row; at 10 % only those inside go.
    sql(&wh, "DELETE FROM customers WHERE id % 10 = 0");
    let report = sync(&dir, Mode::Mirror, SyncOptions::default().with_canary(0.1)).await.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    let gone: BTreeSet<i64> = all.iter().copied().filter(|id| id % 10 == 0).collect();
    let gone_inside = in_fraction(0.1, &gone);
    assert_eq!(held(&app), all.difference(&gone_inside).copied().collect());
    assert_eq!(report.counts.applied.delete, gone_inside.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_made_by_another_process_stops_a_run_on_sqlite_files_at_a_batch_boundary() {
    let dir = TempDir::new();
    let (wh, app) = (dir.file("warehouse.db"), dir.file("app.db"));
    warehouse(&wh, 200);
    let destination = SqliteDestination::open(&app, SqliteDestinationOptions::new("customers").with_create_table(true))
        .await
        .unwrap();
    // A slow destination: a write takes a moment, so the run is still going when paused.
    let slow = FaultyDestination::new(destination);
    slow.latency(std::time::Duration::from_millis(200));
    let state = SqliteStateStore::open(dir.file("state.db")).await.unwrap();
    let sync = SyncJob::builder("customers-to-app")
        .source(SqliteSource::new(&wh, table("customers")).with_key(["id"]))
        .destination(slow.clone())
        .state(state.clone())
        .mode(Mode::Mirror)
        .options(SyncOptions::default().with_batch_rows(10).with_max_concurrency(2))
        .build()
        .await
        .unwrap();

    // The operator's process has its own handle on the state file.
    let operator = SqliteStateStore::open(dir.file("state.db")).await.unwrap();
    let mut events = sync.subscribe();
    let pausing = tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(ProgressEvent::BatchCommitted { .. }) => break,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("the run ended before a batch was committed: {e}"),
            }
        }
        operator.pause("customers-to-app", &rse::Pause::new("oncall", "app database migration")).await.unwrap();
    });
    let report = sync.run().await.unwrap();
    pausing.await.unwrap();
    assert_eq!(report.status, RunStatus::Paused { by: "oncall".into(), reason: "app database migration".into() });
    let applied = report.counts.applied.insert;
    assert!(applied > 0 && applied < 200, "{report}");
    // The app's table holds exactly the keys the state file committed as applied.
    let committed: BTreeSet<i64> = state
        .scan("customers-to-app", None, 1_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.fingerprint.is_some())
        .map(|e| e.key.decode().unwrap()[0].as_i64().unwrap())
        .collect();
    assert_eq!(held(&app), committed);
    assert_eq!(committed.len() as u64, applied);
    assert_eq!(slow.calls(), report.batches, "a write was sent after the pause was seen");

    sync.resume().await.unwrap();
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(held(&app), (1..=200).collect());
}
