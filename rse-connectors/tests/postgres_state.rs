//! `PostgresStateStore` against a real server: the conformance suite, reopening, ordered
//! scans, large commits, migrations racing, fencing between runners, run retention, and
//! errors that say what to do. Each test uses its own schema and drops it.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod state_common;

use std::time::Duration;

use rse_connectors::state::PostgresStateStore;
use rse_core::state::{PendingChange, RejectedEntry, SnapshotEntry, StateCommit};
use rse_core::testing::{service_url, unavailable, unique_id};
use rse_core::*;
use state_common::{check_conformance, entry, key, run_once};

const TTL: Duration = Duration::from_secs(30);

fn url() -> String {
    service_url("RSE_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
}

/// An admin connection, or `None` (after reporting) when the server is unreachable.
async fn admin() -> Option<tokio_postgres::Client> {
    let url = url();
    match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            Some(client)
        }
        Err(e) => {
            unavailable("PostgreSQL", &url, e);
            None
        }
    }
}

/// A fresh schema name; `drop_schema` removes it.
fn schema() -> String {
    unique_id("rse_state_test")
}

async fn drop_schema(admin: &tokio_postgres::Client, schema: &str) {
    admin.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_state_store_conformance_suite() {
    let Some(admin) = admin().await else { return };
    let schema = schema();
    let store = PostgresStateStore::connect(&url(), &schema).await.unwrap();
    check_conformance(&store).await;
    drop_schema(&admin, &schema).await;
}

#[test]
fn refused_records_and_cursors_of_any_values_read_back_bit_for_bit() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let Some(admin) = rt.block_on(admin()) else { return };
    let schema = schema();
    let store = rt.block_on(PostgresStateStore::connect(&url(), &schema)).unwrap();
    state_common::values::check_values_round_trip(&rt, &store, "proptest-regressions/postgres_state_values.txt");
    rt.block_on(drop_schema(&admin, &schema));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_of_version_2_is_migrated_and_its_refused_records_and_cursors_read() {
    let Some(admin) = admin().await else { return };
    let schema = schema();
    drop(PostgresStateStore::connect(&url(), &schema).await.unwrap());
    // The schema as an rse of version 2 left it: refused records and cursors as JSON, two of
    // them NaN (stored as `null`).
    admin
        .batch_execute(&format!(
            "ALTER TABLE \"{schema}\".rse_rejected DROP COLUMN record;
             ALTER TABLE \"{schema}\".rse_syncs DROP COLUMN cursor_value;
             ALTER TABLE \"{schema}\".rse_snapshot DROP COLUMN memo;
             DROP TABLE \"{schema}\".rse_pauses;
             ALTER TABLE \"{schema}\".rse_syncs DROP COLUMN pushdown_epoch;
             DELETE FROM \"{schema}\".rse_migrations WHERE version >= 3;"
        ))
        .await
        .unwrap();
    for (sync, key, entry, cursor) in state_common::old_rows() {
        admin
            .execute(
                &format!(
                    "INSERT INTO \"{schema}\".rse_syncs (sync_id, cursor, fingerprint_algorithm) VALUES ($1, $2, 'xxh3-128/v1')"
                ),
                &[&sync, &cursor],
            )
            .await
            .unwrap();
        admin
            .execute(
                &format!(
                    "INSERT INTO \"{schema}\".rse_rejected (sync, key, stage, reason, attempts, last_rejected_at, entry)
                     VALUES ((SELECT id FROM \"{schema}\".rse_syncs WHERE sync_id = $1), $2, 'destination', 'refused', 3,
                     1700000100, $3)"
                ),
                &[&sync, &key.as_bytes(), &entry],
            )
            .await
            .unwrap();
    }
    let store = PostgresStateStore::connect(&url(), &schema).await.unwrap();
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
    drop_schema(&admin, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_of_version_3_is_migrated_and_its_entries_read_without_memos() {
    let Some(admin) = admin().await else { return };
    let schema = schema();
    let store = PostgresStateStore::connect(&url(), &schema).await.unwrap();
    let lease = store.acquire_lease("crm", "a", TTL).await.unwrap();
    let entries: Vec<_> = (1..=3).map(|i| state_common::entry(i, 1)).collect();
    store.commit(&lease, StateCommit { applied: entries.clone(), ..StateCommit::default() }).await.unwrap();
    store.release_lease(&lease).await.unwrap();
    drop(store);
    // The schema as an rse of version 3 left it: no memo column, no pauses.
    admin
        .batch_execute(&format!(
            "ALTER TABLE \"{schema}\".rse_snapshot DROP COLUMN memo;
             DROP TABLE \"{schema}\".rse_pauses;
             ALTER TABLE \"{schema}\".rse_syncs DROP COLUMN pushdown_epoch;
             DELETE FROM \"{schema}\".rse_migrations WHERE version >= 4;"
        ))
        .await
        .unwrap();
    let store = PostgresStateStore::connect(&url(), &schema).await.unwrap();
    assert_eq!(store.scan("crm", None, 10).await.unwrap(), entries);
    let lease = store.acquire_lease("crm", "b", TTL).await.unwrap();
    let with_memo = SnapshotEntry { memo: Some(Memo::text("5101").unwrap()), ..state_common::entry(2, 2) };
    store.commit(&lease, StateCommit { applied: vec![with_memo.clone()], ..StateCommit::default() }).await.unwrap();
    assert_eq!(store.get("crm", std::slice::from_ref(&with_memo.key)).await.unwrap(), vec![Some(with_memo)]);
    drop_schema(&admin, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_of_version_4_is_migrated_keeping_its_state_and_takes_pauses() {
    let Some(admin) = admin().await else { return };
    let schema = schema();
    let store = PostgresStateStore::connect(&url(), &schema).await.unwrap();
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
    // The schema as an rse of version 4 left it: no pauses table.
    admin
        .batch_execute(&format!(
            "DROP TABLE \"{schema}\".rse_pauses; ALTER TABLE \"{schema}\".rse_syncs DROP COLUMN pushdown_epoch;
             DELETE FROM \"{schema}\".rse_migrations WHERE version >= 5;"
        ))
        .await
        .unwrap();

    let store = PostgresStateStore::connect(&url(), &schema).await.unwrap();
    assert_eq!(store.scan("crm", None, 10).await.unwrap(), entries);
    assert_eq!(store.rejected("crm", None, 10).await.unwrap().len(), 1);
    assert_eq!(store.meta("crm").await.unwrap().cursor, Some(Value::Int(9)));
    assert_eq!(store.paused("crm").await.unwrap(), None);
    let version: i32 =
        admin.query_one(&format!("SELECT max(version) FROM \"{schema}\".rse_migrations"), &[]).await.unwrap().get(0);
    assert_eq!(version, 6);
    assert_eq!(store.meta("crm").await.unwrap().pushdown_epoch, None);
    let lease = store.acquire_lease("crm", "b", TTL).await.unwrap();
    let commit = StateCommit { pushdown_epoch: Some("3f2a".into()), ..StateCommit::default() };
    store.commit(&lease, commit).await.unwrap();
    store.release_lease(&lease).await.unwrap();
    assert_eq!(store.meta("crm").await.unwrap().pushdown_epoch.as_deref(), Some("3f2a"));
    // A pause made through one connection is seen through another, and survives it.
    let pause = Pause::new("oncall", "incident 7");
    store.pause("crm", &pause).await.unwrap();
    drop(store);
    let store = PostgresStateStore::connect(&url(), &schema).await.unwrap();
    assert_eq!(store.paused("crm").await.unwrap(), Some(pause));
    drop_schema(&admin, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_finds_everything() {
    let Some(admin) = admin().await else { return };
    let schema = schema();
    let pending = PendingChange { op: Op::Delete, fingerprint: Fingerprint(7), version: 3 };
    let rejection = RejectedEntry {
        key: key(9),
        stage: RejectionStage::Transform,
        op: None,
        fingerprint: None,
        version: 0,
        reason: "email is invalid".into(),
        attempts: 4,
        record: Some(Record::new(vec![Value::Int(9), Value::Float(0.1)])),
        first_rejected_at: 1_700_000_000,
        last_rejected_at: 1_700_000_100,
    };
    let (snapshot, run) = {
        let store = PostgresStateStore::connect(&url(), &schema).await.unwrap();
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
    assert_eq!(snapshot.len(), 101);

    let store = PostgresStateStore::connect(&url(), &schema).await.unwrap();
    assert_eq!(store.scan("orders", None, 1_000).await.unwrap(), snapshot);
    assert_eq!(
        store.get("orders", &[key(500), key(3), key(10_000)]).await.unwrap(),
        vec![
            Some(SnapshotEntry { key: key(500), fingerprint: None, version: 0, pending: Some(pending), memo: None }),
            Some(SnapshotEntry { pending: Some(pending), ..entry(3, 1) }),
            None
        ]
    );
    assert_eq!(store.rejected("orders", None, 10).await.unwrap(), vec![rejection]);
    let meta = store.meta("orders").await.unwrap();
    assert_eq!(meta.cursor, Some(Value::Timestamp(1_700_000_000_000_000)));
    assert_eq!(meta.fingerprint_algorithm, Some(FingerprintAlgorithm::Sha256));
    assert_eq!(store.runs("orders", 10).await.unwrap(), vec![run.clone()], "the run report did not survive");
    let runs = store.list_runs("orders", 10).await.unwrap();
    assert_eq!((runs[0].run_id, runs[0].started_at_ms), (run.run_id, run.started_at_ms));
    let syncs = store.list_syncs().await.unwrap();
    assert_eq!(syncs.len(), 1);
    assert_eq!((syncs[0].sync_id.as_str(), syncs[0].entries, syncs[0].rejected), ("orders", 101, 1));
    // Rejected keys are queryable with plain SQL too, with their reason and attempts.
    let row =
        admin.query_one(&format!("SELECT reason, attempts, stage FROM \"{schema}\".rse_rejected"), &[]).await.unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, i32>(1), row.get::<_, String>(2)),
        ("email is invalid".into(), 4, "transform".into())
    );
    drop_schema(&admin, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_applied_changes_commit_in_one_transaction() {
    let Some(admin) = admin().await else { return };
    let schema = schema();
    let store = PostgresStateStore::connect(&url(), &schema).await.unwrap();
    let lease = store.acquire_lease("big", "a", TTL).await.unwrap();
    let pending = PendingChange { op: Op::Insert, fingerprint: Fingerprint(1), version: 0 };
    store
        .commit(
            &lease,
            StateCommit { intents: (0..10_000).map(|i| (key(i), pending)).collect(), ..StateCommit::default() },
        )
        .await
        .unwrap();
    store
        .commit(&lease, StateCommit { applied: (0..10_000).map(|i| entry(i, 1)).collect(), ..StateCommit::default() })
        .await
        .unwrap();
    let all = store.scan("big", None, 20_000).await.unwrap();
    assert_eq!(all, (0..10_000).map(|i| entry(i, 1)).collect::<Vec<_>>());
    drop_schema(&admin, &schema).await;
}

/// A commit whose connection dies before it commits leaves nothing: the server rolls the
/// whole transaction back (the process-kill test shows the same across SIGKILL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_cut_off_midway_leaves_nothing_and_says_to_retry() {
    let Some(admin) = admin().await else { return };
    let schema = schema();
    let app = unique_id("rse_cut");
    let store = PostgresStateStore::connect(&format!("{}?application_name={app}", url()), &schema).await.unwrap();
    let lease = store.acquire_lease("cut", "a", TTL).await.unwrap();
    store.commit(&lease, StateCommit { applied: vec![entry(1, 1)], ..StateCommit::default() }).await.unwrap();

    // Hold the sync's row, so the next commit waits inside its transaction; then kill it.
    let mut blocker = tokio_postgres::connect(&url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(blocker.1);
    let tx = blocker.0.transaction().await.unwrap();
    tx.execute(&format!("SELECT 1 FROM \"{schema}\".rse_syncs WHERE sync_id = 'cut' FOR UPDATE"), &[]).await.unwrap();
    let committing = {
        let store = store.clone();
        let lease = lease.clone();
        tokio::spawn(async move {
            store
                .commit(
                    &lease,
                    StateCommit { applied: (0..1_000).map(|i| entry(i, 2)).collect(), ..StateCommit::default() },
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    admin
        .execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", &[&app])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let error = committing.await.unwrap().unwrap_err();
    assert!(matches!(error, StateError::Unavailable { .. }), "{error:?}");
    assert!(error.to_string().contains("retried"), "{error}");
    // The pool reconnects; the state is as it was before the cut commit.
    let mut after = Err(StateError::Unavailable { message: String::new(), source: None });
    for _ in 0..5 {
        after = store.scan("cut", None, 10_000).await;
        if after.is_ok() {
            break;
        }
    }
    assert_eq!(after.unwrap(), vec![entry(1, 1)]);
    drop_schema(&admin, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_starting_together_migrate_once() {
    let Some(admin) = admin().await else { return };
    let schema = schema();
    let u = url();
    let (a, b, c) = tokio::join!(
        PostgresStateStore::connect(&u, &schema),
        PostgresStateStore::connect(&u, &schema),
        PostgresStateStore::connect(&u, &schema)
    );
    let (a, _b, _c) = (a.unwrap(), b.unwrap(), c.unwrap());
    let sql = format!("SELECT count(*), count(DISTINCT version) FROM \"{schema}\".rse_migrations");
    let row = admin.query_one(&sql, &[]).await.unwrap();
    let (n, distinct): (i64, i64) = (row.get(0), row.get(1));
    assert!(n >= 1, "no migration was recorded");
    assert_eq!(n, distinct, "a migration was applied more than once");
    let lease = a.acquire_lease("m", "a", TTL).await.unwrap();
    a.commit(&lease, StateCommit { applied: vec![entry(1, 1)], ..StateCommit::default() }).await.unwrap();
    drop_schema(&admin, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_from_a_newer_rse_is_refused_and_left_alone() {
    let Some(admin) = admin().await else { return };
    let schema = schema();
    drop(PostgresStateStore::connect(&url(), &schema).await.unwrap());
    let count = format!("SELECT count(*) FROM \"{schema}\".rse_migrations");
    let known: i64 = admin.query_one(&count, &[]).await.unwrap().get(0);
    admin.execute(&format!("INSERT INTO \"{schema}\".rse_migrations (version) VALUES (99)"), &[]).await.unwrap();
    let error = PostgresStateStore::connect(&url(), &schema).await.unwrap_err();
    assert!(matches!(error, StateError::Incompatible { .. }), "{error:?}");
    assert!(error.to_string().contains("newer rse"), "{error}");
    let n: i64 = admin.query_one(&count, &[]).await.unwrap().get(0);
    assert_eq!(n, known + 1, "refusing the schema changed it");
    drop_schema(&admin, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_without_privilege_on_the_schema_is_told_what_to_grant() {
    let Some(admin) = admin().await else { return };
    let schema = schema();
    let role = unique_id("rse_role");
    admin.batch_execute(&format!("CREATE ROLE \"{role}\" LOGIN; CREATE SCHEMA \"{schema}\"")).await.unwrap();
    let mut config: tokio_postgres::Config = url().parse().unwrap();
    config.user(&role);
    let role_url = {
        let host = match &config.get_hosts()[0] {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        };
        format!(
            "postgres://{role}@{host}:{}/{}",
            config.get_ports().first().copied().unwrap_or(5432),
            config.get_dbname().unwrap_or("postgres")
        )
    };
    let error = PostgresStateStore::connect(&role_url, &schema).await.unwrap_err();
    assert!(error.to_string().contains("permission denied"), "{error}");
    assert!(error.to_string().contains("grant the role USAGE and CREATE on schema"), "{error}");
    let tables: i64 =
        admin.query_one("SELECT count(*) FROM pg_tables WHERE schemaname = $1", &[&schema]).await.unwrap().get(0);
    assert_eq!(tables, 0, "a refused migration left tables behind");
    drop_schema(&admin, &schema).await;
    admin.batch_execute(&format!("DROP ROLE \"{role}\"")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_says_so() {
    let error = PostgresStateStore::connect("postgres://postgres@127.0.0.1:1/test", "x").await.unwrap_err();
    assert!(matches!(error, StateError::Unavailable { .. }), "{error:?}");
    assert!(error.to_string().contains("127.0.0.1"), "the error does not name the server: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_exclude_a_second_runner_and_fence_a_late_one() {
    let Some(admin) = admin().await else { return };
    let schema = schema();
    let a = PostgresStateStore::connect(&url(), &schema).await.unwrap();
    let b = PostgresStateStore::connect(&url(), &schema).await.unwrap();
    let old = a.acquire_lease("s", "runner-a", Duration::from_millis(500)).await.unwrap();
    match b.acquire_lease("s", "runner-b", TTL).await {
        Err(e @ StateError::LeaseHeld { .. }) => assert!(e.to_string().contains("runner-a"), "{e}"),
        other => panic!("expected LeaseHeld, got {other:?}"),
    }
    // Two runners racing for a free lease: exactly one wins.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (x, y) = tokio::join!(a.acquire_lease("s", "runner-a2", TTL), b.acquire_lease("s", "runner-b", TTL));
    assert!(x.is_ok() != y.is_ok(), "both or neither runner took the lease: {x:?} {y:?}");
    let new = x.or(y).unwrap();
    assert!(new.token > old.token);
    b.commit(&new, StateCommit { applied: vec![entry(1, 2)], ..StateCommit::default() }).await.unwrap();
    let late = a.commit(&old, StateCommit { applied: vec![entry(1, 9), entry(2, 9)], ..StateCommit::default() }).await;
    assert!(matches!(late, Err(StateError::Fenced { .. })), "{late:?}");
    assert_eq!(b.scan("s", None, 10).await.unwrap(), vec![entry(1, 2)]);
    drop_schema(&admin, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_history_keeps_the_last_n_runs() {
    let Some(admin) = admin().await else { return };
    let schema = schema();
    let store = PostgresStateStore::connect(&url(), &schema).await.unwrap().with_run_retention(3);
    let mut ids = Vec::new();
    for rows in 1..=5 {
        ids.push(run_once(store.clone(), "hist", rows).await.run_id);
    }
    let runs = store.runs("hist", 10).await.unwrap();
    assert_eq!(runs.iter().map(|r| r.run_id).collect::<Vec<_>>(), vec![ids[4], ids[3], ids[2]]);
    assert_eq!(runs[0].counts.read, 5);
    drop_schema(&admin, &schema).await;
}
