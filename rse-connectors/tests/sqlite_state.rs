//! `SqliteStateStore`: the conformance suite, and what a durable store adds — reopening,
//! all-or-nothing commits under SIGKILL, key-ordered scans, large batches, leases between
//! processes, run retention, and errors that say what to do.
#![cfg(feature = "sqlite")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod state_common;

use rse_connectors::state::{SqliteStateStore, SqliteStateStoreOptions};
use rse_core::state::{Lease, PendingChange, RejectedEntry, SnapshotEntry, StateCommit};
use rse_core::testing::unique_id;
use rse_core::*;
use state_common::{check_conformance, entry, key, refusal, run_once};

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique_id("rse_sqlite_state"));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn cleanup(path: &Path) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

const TTL: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_state_store_conformance_suite() {
    let path = temp_path("state.db");
    let store = SqliteStateStore::open(&path).await.unwrap();
    check_conformance(&store).await;
    cleanup(&path);
}

#[test]
fn refused_records_and_cursors_of_any_values_read_back_bit_for_bit() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let path = temp_path("state.db");
    let store = rt.block_on(SqliteStateStore::open(&path)).unwrap();
    state_common::values::check_values_round_trip(&rt, &store, "proptest-regressions/sqlite_state_values.txt");
    cleanup(&path);
}

/// A state file as an rse of schema version 1 left it: no exact-value columns, refused
/// records and cursors as JSON, two of them NaN (stored as `null`).
fn write_version_1_file(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "ALTER TABLE rse_rejected DROP COLUMN record; ALTER TABLE rse_syncs DROP COLUMN cursor_value;
         ALTER TABLE rse_snapshot DROP COLUMN memo; DROP TABLE rse_pauses;
         ALTER TABLE rse_syncs DROP COLUMN pushdown_epoch; PRAGMA user_version = 1;",
    )
    .unwrap();
    for (sync, key, entry, cursor) in state_common::old_rows() {
        conn.execute(
            "INSERT INTO rse_syncs (sync_id, cursor, fingerprint_algorithm) VALUES (?1, ?2, 'xxh3-128/v1')",
            rusqlite::params![sync, cursor],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO rse_rejected (sync, key, stage, reason, attempts, last_rejected_at, entry)
             VALUES ((SELECT id FROM rse_syncs WHERE sync_id = ?1), ?2, 'destination', 'refused', 3, 1700000100, ?3)",
            rusqlite::params![sync, key.as_bytes(), entry],
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_file_of_schema_version_1_is_migrated_and_its_refused_records_and_cursors_read() {
    let path = temp_path("state.db");
    drop(SqliteStateStore::open(&path).await.unwrap());
    write_version_1_file(&path);
    let store = SqliteStateStore::open(&path).await.unwrap();
    state_common::check_old_format_read(&store).await;
    // New writes go in the exact form, over the old rows.
    let lease = store.acquire_lease("lost", "a", TTL).await.unwrap();
    let nan = state_common::refusal(2, vec![Value::Float(f64::NAN)]);
    let commit = StateCommit { rejected: vec![nan], cursor: Some(Value::Float(-0.0)), ..StateCommit::default() };
    store.commit(&lease, commit).await.unwrap();
    let got = store.rejected("lost", None, 10).await.unwrap();
    assert!(matches!(got[0].record.as_ref().map(|r| &r.values[..]), Some([Value::Float(f)]) if f.is_nan()));
    let cursor = store.meta("lost").await.unwrap().cursor;
    assert!(matches!(cursor, Some(Value::Float(f)) if f.to_bits() == (-0.0f64).to_bits()), "{cursor:?}");
    cleanup(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_file_of_schema_version_2_is_migrated_and_its_entries_read_without_memos() {
    let path = temp_path("state.db");
    let store = SqliteStateStore::open(&path).await.unwrap();
    let lease = store.acquire_lease("crm", "a", TTL).await.unwrap();
    let entries: Vec<_> = (1..=3).map(|i| state_common::entry(i, 1)).collect();
    store.commit(&lease, StateCommit { applied: entries.clone(), ..StateCommit::default() }).await.unwrap();
    store.release_lease(&lease).await.unwrap();
    drop(store);
    // The file as an rse of schema version 2 left it: no memo column, no pauses.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "ALTER TABLE rse_snapshot DROP COLUMN memo; DROP TABLE rse_pauses;
         ALTER TABLE rse_syncs DROP COLUMN pushdown_epoch; PRAGMA user_version = 2;",
    )
    .unwrap();
    drop(conn);
    let store = SqliteStateStore::open(&path).await.unwrap();
    assert_eq!(store.scan("crm", None, 10).await.unwrap(), entries);
    let lease = store.acquire_lease("crm", "b", TTL).await.unwrap();
    let with_memo = SnapshotEntry { memo: Some(Memo::text("5101").unwrap()), ..state_common::entry(2, 2) };
    store.commit(&lease, StateCommit { applied: vec![with_memo.clone()], ..StateCommit::default() }).await.unwrap();
    assert_eq!(store.get("crm", std::slice::from_ref(&with_memo.key)).await.unwrap(), vec![Some(with_memo)]);
    cleanup(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_file_of_schema_version_3_is_migrated_keeping_its_state_and_takes_pauses() {
    let path = temp_path("state.db");
    let store = SqliteStateStore::open(&path).await.unwrap();
    let lease = store.acquire_lease("crm", "a", TTL).await.unwrap();
    let with_memo = SnapshotEntry { memo: Some(Memo::text("5101").unwrap()), ..state_common::entry(1, 1) };
    let entries = vec![with_memo, state_common::entry(2, 1)];
    let commit = StateCommit {
        applied: entries.clone(),
        rejected: vec![state_common::refusal(3, vec![Value::Int(3)])],
        cursor: Some(Value::Int(9)),
        ..StateCommit::default()
    };
    store.commit(&lease, commit).await.unwrap();
    store.release_lease(&lease).await.unwrap();
    drop(store);
    // The file as an rse of schema version 3 left it: no pauses table.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP TABLE rse_pauses; ALTER TABLE rse_syncs DROP COLUMN pushdown_epoch; PRAGMA user_version = 3;",
    )
    .unwrap();
    drop(conn);

    let store = SqliteStateStore::open(&path).await.unwrap();
    assert_eq!(store.scan("crm", None, 10).await.unwrap(), entries);
    assert_eq!(store.rejected("crm", None, 10).await.unwrap().len(), 1);
    assert_eq!(store.meta("crm").await.unwrap().cursor, Some(Value::Int(9)));
    assert_eq!(store.paused("crm").await.unwrap(), None);
    let pause = Pause::new("oncall", "incident 7");
    store.pause("crm", &pause).await.unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, 5);
    drop(conn);
    // A pause outlives the process that made it.
    let store = SqliteStateStore::open(&path).await.unwrap();
    assert_eq!(store.paused("crm").await.unwrap(), Some(pause));
    cleanup(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_file_of_schema_version_4_is_migrated_and_keeps_a_pushdown_epoch() {
    let path = temp_path("state.db");
    let store = SqliteStateStore::open(&path).await.unwrap();
    let lease = store.acquire_lease("crm", "a", TTL).await.unwrap();
    let commit =
        StateCommit { applied: vec![state_common::entry(1, 1)], cursor: Some(Value::Int(4)), ..StateCommit::default() };
    store.commit(&lease, commit).await.unwrap();
    store.release_lease(&lease).await.unwrap();
    drop(store);
    // The file as an rse of schema version 4 left it: no pushdown epoch.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("ALTER TABLE rse_syncs DROP COLUMN pushdown_epoch; PRAGMA user_version = 4;").unwrap();
    drop(conn);

    let store = SqliteStateStore::open(&path).await.unwrap();
    let meta = store.meta("crm").await.unwrap();
    assert_eq!((meta.cursor, meta.pushdown_epoch), (Some(Value::Int(4)), None));
    let lease = store.acquire_lease("crm", "b", TTL).await.unwrap();
    let commit = StateCommit { pushdown_epoch: Some("3f2a".into()), ..StateCommit::default() };
    store.commit(&lease, commit).await.unwrap();
    store.release_lease(&lease).await.unwrap();
    drop(store);
    let store = SqliteStateStore::open(&path).await.unwrap();
    assert_eq!(store.meta("crm").await.unwrap().pushdown_epoch.as_deref(), Some("3f2a"));
    assert_eq!(store.scan("crm", None, 10).await.unwrap(), vec![state_common::entry(1, 1)]);
    cleanup(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_from_another_process_reaches_a_runner_while_it_holds_the_lease() {
    let path = temp_path("state.db");
    let runner = SqliteStateStore::open(&path).await.unwrap();
    let operator = SqliteStateStore::open(&path).await.unwrap();
    let lease = runner.acquire_lease("crm", "runner", TTL).await.unwrap();
    operator.pause("crm", &Pause::new("oncall", "quota")).await.unwrap();
    assert_eq!(runner.paused("crm").await.unwrap().map(|p| p.by), Some("oncall".to_owned()));
    runner.commit(&lease, StateCommit { applied: vec![entry(1, 1)], ..StateCommit::default() }).await.unwrap();
    assert!(operator.resume("crm").await.unwrap().is_some());
    assert_eq!(runner.paused("crm").await.unwrap(), None);
    cleanup(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_stored_record_or_cursor_is_refused_as_not_understood() {
    let path = temp_path("state.db");
    let store = SqliteStateStore::open(&path).await.unwrap();
    let lease = store.acquire_lease("s", "a", TTL).await.unwrap();
    let record = vec![Value::List(vec![Value::from("text"), Value::Float(1.5)]), Value::Int(7)];
    let commit = StateCommit {
        rejected: vec![state_common::refusal(1, record)],
        cursor: Some(Value::from("cursor")),
        ..StateCommit::default()
    };
    store.commit(&lease, commit).await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let damage = |good: Vec<u8>| {
        let mut damaged: Vec<Vec<u8>> = (0..good.len()).map(|cut| good[..cut].to_vec()).collect();
        damaged.push([&good[..], &[0]].concat());
        damaged.push([&[2], &good[1..]].concat());
        damaged
    };
    let mut records = damage(conn.query_row("SELECT record FROM rse_rejected", [], |r| r.get(0)).unwrap());
    // A count far beyond the bytes; nesting far beyond any record.
    records.push(vec![1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]);
    records.push([vec![1, 1], [0x0B, 1].repeat(100_000)].concat());
    for bytes in &records {
        conn.execute("UPDATE rse_rejected SET record = ?1", [bytes]).unwrap();
        let error = store.rejected("s", None, 10).await.unwrap_err();
        assert!(matches!(error, StateError::Incompatible { .. }), "{error:?}");
        assert!(error.to_string().contains("a refused record"), "{error}");
    }
    for bytes in damage(conn.query_row("SELECT cursor_value FROM rse_syncs", [], |r| r.get(0)).unwrap()) {
        conn.execute("UPDATE rse_syncs SET cursor_value = ?1", [bytes]).unwrap();
        let error = store.meta("s").await.unwrap_err();
        assert!(matches!(error, StateError::Incompatible { .. }), "{error:?}");
        assert!(error.to_string().contains("the cursor"), "{error}");
    }
    cleanup(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_finds_everything() {
    let path = temp_path("state.db");
    let pending = PendingChange { op: Op::Update, fingerprint: Fingerprint(7), version: 3 };
    let rejection = RejectedEntry {
        key: key(9),
        stage: RejectionStage::Destination,
        op: Some(Op::Insert),
        fingerprint: Some(Fingerprint(5)),
        version: 0,
        reason: "email is invalid".into(),
        attempts: 2,
        record: Some(Record::new(vec![Value::Int(9), Value::from("x")])),
        first_rejected_at: 1_700_000_000,
        last_rejected_at: 1_700_000_100,
    };
    let (snapshot, run) = {
        let store = SqliteStateStore::open(&path).await.unwrap();
        let run = run_once(store.clone(), "orders", 3).await;
        assert_eq!(run.status, RunStatus::Succeeded);
        let lease = store.acquire_lease("orders", "runner-a", TTL).await.unwrap();
        let commit = StateCommit {
            applied: (0..100).map(|i| entry(i, 1)).collect(),
            rejected: vec![rejection.clone()],
            cursor: Some(Value::Timestamp(1_700_000_000_000_000)),
            fingerprint_algorithm: Some(FingerprintAlgorithm::Sha256),
            ..StateCommit::default()
        };
        store.commit(&lease, commit).await.unwrap();
        let intents = StateCommit { intents: vec![(key(500), pending), (key(3), pending)], ..StateCommit::default() };
        store.commit(&lease, intents).await.unwrap();
        store.release_lease(&lease).await.unwrap();
        (store.scan("orders", None, 1_000).await.unwrap(), run)
    };
    assert_eq!(snapshot.len(), 101, "100 applied entries and one intent of a new key");

    let store = SqliteStateStore::open(&path).await.unwrap();
    assert_eq!(store.scan("orders", None, 1_000).await.unwrap(), snapshot, "the snapshot changed across reopening");
    assert_eq!(
        store.get("orders", &[key(3), key(500)]).await.unwrap(),
        vec![
            Some(SnapshotEntry { pending: Some(pending), ..entry(3, 1) }),
            Some(SnapshotEntry { key: key(500), fingerprint: None, version: 0, pending: Some(pending), memo: None })
        ]
    );
    assert_eq!(store.rejected("orders", None, 10).await.unwrap(), vec![rejection]);
    let meta = store.meta("orders").await.unwrap();
    assert_eq!(meta.cursor, Some(Value::Timestamp(1_700_000_000_000_000)));
    assert_eq!(meta.fingerprint_algorithm, Some(FingerprintAlgorithm::Sha256));
    let runs = store.list_runs("orders", 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].report, run, "the run report did not survive reopening");
    assert_eq!(store.runs("orders", 10).await.unwrap(), vec![run.clone()]);
    let syncs = store.list_syncs().await.unwrap();
    assert_eq!(syncs.len(), 1);
    assert_eq!((syncs[0].sync_id.as_str(), syncs[0].entries, syncs[0].rejected), ("orders", 101, 1));
    assert!(syncs[0].lease.is_none(), "a released lease is listed as held");
    // The token keeps growing across reopening.
    let lease = store.acquire_lease("orders", "runner-b", TTL).await.unwrap();
    assert!(lease.token > run.run_id + 1);
    cleanup(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_applied_changes_commit_in_one_transaction() {
    let path = temp_path("state.db");
    let store = SqliteStateStore::open(&path).await.unwrap();
    let lease = store.acquire_lease("big", "a", TTL).await.unwrap();
    let commit = StateCommit {
        intents: (0..10_000)
            .map(|i| (key(i), PendingChange { op: Op::Insert, fingerprint: Fingerprint(1), version: 0 }))
            .collect(),
        ..StateCommit::default()
    };
    store.commit(&lease, commit).await.unwrap();
    let commit = StateCommit { applied: (0..10_000).map(|i| entry(i, 1)).collect(), ..StateCommit::default() };
    store.commit(&lease, commit).await.unwrap();
    let all = store.scan("big", None, 20_000).await.unwrap();
    assert_eq!(all.len(), 10_000);
    assert!(
        all.iter().all(|e| e.pending.is_none() && e.version == 1),
        "the applied entries did not replace the intents"
    );
    cleanup(&path);
}

/// Commits of many keys go by statements of many rows: each key must still get exactly its
/// own columns, an intent on a known key must keep its acknowledged fingerprint, and an
/// applied key must clear its refusal whether or not others had one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_commits_write_each_keys_own_columns_and_clear_its_refusal() {
    let path = temp_path("state.db");
    let store = SqliteStateStore::open(&path).await.unwrap();
    let lease = store.acquire_lease("many", "a", TTL).await.unwrap();
    let known = StateCommit { applied: (0..100).map(|i| entry(i, 1)).collect(), ..StateCommit::default() };
    store.commit(&lease, known).await.unwrap();
    let refused = StateCommit { rejected: vec![refusal(150, vec![Value::Int(150)])], ..StateCommit::default() };
    store.commit(&lease, refused).await.unwrap();

    // Intents on 300 keys: the first 100 known (applied at version 1), the rest new.
    let pending = |i: i64| PendingChange { op: Op::Update, fingerprint: Fingerprint(1_000 + i as u128), version: 1 };
    let intents = StateCommit { intents: (0..300).map(|i| (key(i), pending(i))).collect(), ..StateCommit::default() };
    store.commit(&lease, intents).await.unwrap();
    let all = store.scan("many", None, 1_000).await.unwrap();
    assert_eq!(all.len(), 300);
    for (i, e) in (0..300).zip(&all) {
        assert_eq!(e.key, key(i));
        assert_eq!(e.pending, Some(pending(i)), "key {i}");
        let (fingerprint, version) = if i < 100 { (entry(i, 1).fingerprint, 1) } else { (None, 0) };
        assert_eq!((e.fingerprint, e.version), (fingerprint, version), "key {i}");
    }

    // Their acknowledgements, 201 of them (a remainder past whole statements), clear key 150's refusal.
    let applied = StateCommit { applied: (0..201).map(|i| entry(i, 2)).collect(), ..StateCommit::default() };
    store.commit(&lease, applied).await.unwrap();
    let all = store.scan("many", None, 1_000).await.unwrap();
    for (i, e) in (0..300).zip(&all) {
        let expected = match i {
            0..201 => entry(i, 2),
            _ => SnapshotEntry { fingerprint: None, pending: Some(pending(i)), ..entry(i, 0) },
        };
        assert_eq!(e, &expected, "key {i}");
    }
    assert!(store.rejected("many", None, 10).await.unwrap().is_empty(), "the refusal of key 150 was not cleared");
    cleanup(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_history_keeps_the_last_n_runs() {
    let path = temp_path("state.db");
    let store = SqliteStateStore::open(&path).await.unwrap().with_run_retention(3);
    let mut ids = Vec::new();
    for rows in 1..=5 {
        ids.push(run_once(store.clone(), "hist", rows).await.run_id);
    }
    let runs = store.runs("hist", 10).await.unwrap();
    assert_eq!(runs.iter().map(|r| r.run_id).collect::<Vec<_>>(), vec![ids[4], ids[3], ids[2]]);
    assert_eq!(runs[0].counts.read, 5, "the newest run's report is not the last one recorded");
    assert_eq!(store.runs("hist", 2).await.unwrap().len(), 2);
    cleanup(&path);
}

/// The store's options are data: read from configuration, they shape the store it opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_read_from_configuration_set_the_run_retention() {
    let options: SqliteStateStoreOptions =
        serde_json::from_str(r#"{"run_retention": 2, "busy_timeout": "250ms"}"#).unwrap();
    let json = serde_json::to_value(&options).unwrap();
    assert_eq!(json, serde_json::json!({"run_retention": 2, "busy_timeout": "250ms"}));
    assert_eq!(serde_json::from_value::<SqliteStateStoreOptions>(json).unwrap(), options);
    let error = serde_json::from_str::<SqliteStateStoreOptions>(r#"{"run_retension": 2}"#).unwrap_err().to_string();
    assert!(error.contains("unknown field `run_retension`"), "{error}");

    let path = temp_path("state.db");
    let store = SqliteStateStore::open_with(&path, options).await.unwrap();
    for rows in 1..=3 {
        run_once(store.clone(), "kept", rows).await;
    }
    assert_eq!(store.runs("kept", 10).await.unwrap().len(), 2);
    cleanup(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_holder_cannot_overwrite_the_new_holders_state() {
    let path = temp_path("state.db");
    // Two handles on one file: two runners.
    let a = SqliteStateStore::open(&path).await.unwrap();
    let b = SqliteStateStore::open(&path).await.unwrap();
    let old = a.acquire_lease("s", "runner-a", Duration::from_millis(300)).await.unwrap();
    match b.acquire_lease("s", "runner-b", TTL).await {
        Err(StateError::LeaseHeld { holder, .. }) => assert_eq!(holder, "runner-a"),
        other => panic!("expected LeaseHeld, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let new = b.acquire_lease("s", "runner-b", TTL).await.unwrap();
    assert!(new.token > old.token);
    b.commit(&new, StateCommit { applied: vec![entry(1, 2)], ..StateCommit::default() }).await.unwrap();
    let late = a.commit(&old, StateCommit { applied: vec![entry(1, 9), entry(2, 9)], ..StateCommit::default() }).await;
    assert!(matches!(late, Err(StateError::Fenced { .. })), "{late:?}");
    assert_eq!(b.scan("s", None, 10).await.unwrap(), vec![entry(1, 2)]);
    cleanup(&path);
}

/// The child side of the process tests: does what `RSE_SQLITE_WORKER` says, then exits.
/// Run as a normal test it returns at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker() {
    let Ok(job) = std::env::var("RSE_SQLITE_WORKER") else { return };
    let path = PathBuf::from(std::env::var("RSE_SQLITE_PATH").unwrap());
    let store = SqliteStateStore::open(&path).await.unwrap();
    match job.as_str() {
        // Commits batches of 10,000 entries, each batch at the next version, until killed.
        "commit-forever" => {
            let lease = loop {
                match store.acquire_lease("atomic", "worker", Duration::from_millis(500)).await {
                    Ok(lease) => break lease,
                    Err(StateError::LeaseHeld { .. }) => tokio::time::sleep(Duration::from_millis(50)).await,
                    Err(e) => panic!("{e}"),
                }
            };
            let start = store.scan("atomic", None, 1).await.unwrap().first().map_or(0, |e| e.version);
            // Bounded, so that a worker whose test died does not outlive it for long.
            let until = Instant::now() + Duration::from_secs(60);
            for version in (start + 1..).take_while(|_| Instant::now() < until) {
                let commit =
                    StateCommit { applied: (0..10_000).map(|i| entry(i, version)).collect(), ..StateCommit::default() };
                store.commit(&lease, commit).await.unwrap();
                println!("committed {version}");
            }
        }
        // Holds the lease for the parent to find, renewing it, until killed.
        "hold-lease" => {
            let mut lease = store.acquire_lease("held", "worker-process", Duration::from_secs(1)).await.unwrap();
            println!("holding {}", lease.token);
            let until = Instant::now() + Duration::from_secs(60);
            while Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(200)).await;
                lease = store.renew_lease(&lease, Duration::from_secs(1)).await.unwrap();
            }
        }
        // Reserves 10 requests of the shared quota `QUOTA`, waits for each slot and prints
        // the wall-clock microsecond it "sent" at.
        "reserve" => {
            use rse_core::shared_quota::SharedQuota;
            for _ in 0..10 {
                let wait = store.reserve("crm", QUOTA).await.unwrap();
                tokio::time::sleep(wait).await;
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
                println!("sent {}", now.as_micros());
            }
        }
        // Opening is all: `SqliteStateStore::open` above did it or panicked.
        "open" => println!("opened"),
        other => panic!("unknown worker job {other}"),
    }
}

/// 20 requests a second, no burst: 50 ms between slots.
const QUOTA: RateLimit = RateLimit { requests: 20, per: Duration::from_secs(1), burst: 1 };

/// Three processes pacing through one file's schedule send together at the limit, not three
/// times it: 30 requests take at least 29 intervals, and no second holds more than the limit
/// (one more for a process woken late: a send is never early, only late).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_sharing_a_file_share_one_quota() {
    let path = temp_path("state.db");
    drop(SqliteStateStore::open(&path).await.unwrap());
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros();
    let children: Vec<_> = (0..3).map(|_| spawn_worker("reserve", &path)).collect();
    let mut sent = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let stdout = String::from_utf8(out.stdout).unwrap();
        // The harness may print on the same line (`test worker ... sent 1…`).
        let digits = |t: &str| t.chars().take_while(char::is_ascii_digit).collect::<String>();
        sent.extend(stdout.split("sent ").skip(1).map(|t| digits(t).parse::<u128>().unwrap()));
    }
    assert_eq!(sent.len(), 30, "every process sent its 10 requests");
    sent.sort_unstable();
    let interval = QUOTA.per.as_micros() / u128::from(QUOTA.requests);
    assert!(sent[29] - started >= 29 * interval, "30 requests took {} µs", sent[29] - started);
    let busiest = (0..sent.len()).map(|i| sent[i..].iter().take_while(|t| **t < sent[i] + 1_000_000).count()).max();
    assert!(busiest.unwrap() <= QUOTA.requests as usize + 1, "{busiest:?} requests in one second");
    cleanup(&path);
}

fn spawn_worker(job: &str, path: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "worker", "--nocapture", "--test-threads", "1"])
        .env("RSE_SQLITE_WORKER", job)
        .env("RSE_SQLITE_PATH", path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Kills a process committing 10,000-entry batches at random instants: every reopen finds
/// one whole batch (all entries at one version), never a mix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_killed_midway_is_all_or_nothing() {
    let path = temp_path("state.db");
    drop(SqliteStateStore::open(&path).await.unwrap());
    let mut versions_seen = Vec::new();
    for _ in 0..8 {
        let mut child = spawn_worker("commit-forever", &path);
        tokio::time::sleep(Duration::from_millis(fastrand::u64(600..1_500))).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let store = SqliteStateStore::open(&path).await.unwrap();
        let all = store.scan("atomic", None, 20_000).await.unwrap();
        if all.is_empty() {
            versions_seen.push(0);
            continue;
        }
        assert_eq!(all.len(), 10_000, "a killed commit left a partial batch");
        let version = all[0].version;
        assert!(
            all.iter().all(|e| *e == entry(e.key.decode().unwrap()[0].as_i64().unwrap(), version)),
            "a killed commit left a mix of versions"
        );
        versions_seen.push(version);
    }
    assert!(versions_seen.windows(2).all(|w| w[0] <= w[1]), "state went back in time: {versions_seen:?}");
    assert!(*versions_seen.last().unwrap() > 0, "no commit landed in 8 runs: {versions_seen:?}");
    cleanup(&path);
}

/// Two real runners: a second process's lease attempt fails at once naming the holder; once
/// the holder is killed its lease lapses after the TTL and the other takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_holders_lease_lapses_and_another_process_takes_over() {
    use std::io::BufRead;
    let path = temp_path("state.db");
    drop(SqliteStateStore::open(&path).await.unwrap());
    let mut child = spawn_worker("hold-lease", &path);
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let held: u64 = lines
        .find_map(|l| l.unwrap().split("holding ").nth(1).map(|t| t.trim().parse().unwrap()))
        .expect("the worker took no lease");

    let store = SqliteStateStore::open(&path).await.unwrap();
    let started = Instant::now();
    match store.acquire_lease("held", "test", TTL).await {
        Err(e @ StateError::LeaseHeld { .. }) => {
            assert!(e.to_string().contains("worker-process"), "the error does not name the holder: {e}");
            assert!(e.to_string().contains("lease taken"), "the error does not say since when: {e}");
        }
        other => panic!("expected LeaseHeld, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2), "the second runner did not fail at once");
    // The holder renews every 200 ms: it keeps the lease past its 1 s TTL while alive.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(matches!(store.acquire_lease("held", "test", TTL).await, Err(StateError::LeaseHeld { .. })));

    child.kill().unwrap();
    child.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let lease: Lease = store.acquire_lease("held", "test", TTL).await.unwrap();
    assert!(lease.token > held);
    cleanup(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_from_a_newer_rse_is_refused_and_left_alone() {
    let path = temp_path("state.db");
    drop(SqliteStateStore::open(&path).await.unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA user_version = 99; CREATE TABLE from_the_future (x);").unwrap();
    }
    let error = SqliteStateStore::open(&path).await.unwrap_err();
    assert!(matches!(error, StateError::Incompatible { .. }), "{error:?}");
    assert!(error.to_string().contains("newer rse"), "{error}");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, 99, "refusing the file changed it");
    cleanup(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_not_a_state_file_is_refused() {
    let path = temp_path("state.db");
    std::fs::write(&path, vec![b'x'; 8_192]).unwrap();
    let error = SqliteStateStore::open(&path).await.unwrap_err();
    assert!(matches!(error, StateError::Incompatible { .. }), "{error:?}");
    assert!(error.to_string().contains("not a readable rse state file"), "{error}");
    assert_eq!(std::fs::read(&path).unwrap(), vec![b'x'; 8_192], "refusing the file changed it");
    cleanup(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_directory_says_what_to_do() {
    let path = temp_path("state.db").with_file_name("no/such/dir/state.db");
    let error = SqliteStateStore::open(&path).await.unwrap_err();
    assert!(error.to_string().contains("check that its directory exists"), "{error}");
    cleanup(&temp_path("x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_file_fails_with_a_retryable_error_and_leaves_the_state() {
    let path = temp_path("state.db");
    let store = SqliteStateStore::open(&path).await.unwrap().with_busy_timeout(Duration::from_millis(200));
    let lease = store.acquire_lease("locked", "a", TTL).await.unwrap();
    store.commit(&lease, StateCommit { applied: vec![entry(1, 1)], ..StateCommit::default() }).await.unwrap();

    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let error = store
        .commit(&lease, StateCommit { applied: vec![entry(1, 2), entry(2, 1)], ..StateCommit::default() })
        .await
        .unwrap_err();
    assert!(matches!(error, StateError::Unavailable { .. }), "{error:?}");
    assert!(error.to_string().contains("locked by another process"), "{error}");
    other.execute_batch("ROLLBACK").unwrap();
    drop(other);
    assert_eq!(store.scan("locked", None, 10).await.unwrap(), vec![entry(1, 1)]);
    cleanup(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_file_says_what_to_do_and_is_left_alone() {
    let path = temp_path("state.db");
    let store = SqliteStateStore::open(&path).await.unwrap();
    let lease = store.acquire_lease("ro", "a", Duration::from_millis(1)).await.unwrap();
    store.commit(&lease, StateCommit { applied: vec![entry(1, 1)], ..StateCommit::default() }).await.unwrap();
    drop(store);
    // Opened read-only (a SQLite URI; file modes would not stop root, which CI runs as).
    let read_only = format!("file:{}?mode=ro", path.display());
    let store = SqliteStateStore::open(&read_only).await.unwrap();
    assert_eq!(store.scan("ro", None, 10).await.unwrap(), vec![entry(1, 1)], "a read-only store cannot be read");
    let error = store.acquire_lease("ro", "b", TTL).await.unwrap_err();
    assert!(error.to_string().contains("is read-only") && error.to_string().contains("writable"), "{error}");
    drop(store);
    let store = SqliteStateStore::open(&path).await.unwrap();
    assert_eq!(store.scan("ro", None, 10).await.unwrap(), vec![entry(1, 1)]);
    let lease = store.acquire_lease("ro", "c", TTL).await.unwrap();
    assert_eq!(lease.token, 2, "the refused lease was written");
    cleanup(&path);
}

/// Processes starting at once on a new file (the partitions of a sync, say) all open it: the
/// switch to WAL mode, which SQLite does not wait for, is tried again until the busy timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_openers_of_a_new_file_all_open_it() {
    for _ in 0..20 {
        let path = temp_path("state.db");
        // Threads race more tightly than processes; each store has its own connections, as a
        // process would.
        let opens: Vec<_> = (0..8).map(|_| tokio::spawn(SqliteStateStore::open(path.clone()))).collect();
        for open in opens {
            open.await.unwrap().unwrap();
        }
        let children: Vec<_> = (0..4).map(|_| spawn_worker("open", &path)).collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        }
        let store = SqliteStateStore::open(&path).await.unwrap();
        assert!(store.list_syncs().await.unwrap().is_empty());
        cleanup(&path);
    }
}
