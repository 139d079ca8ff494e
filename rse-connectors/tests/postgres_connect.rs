//! How the PostgreSQL destination and state store connect: a server that never answers,
//! a pool with no free connection, a write stuck behind a lock — each ends with an error
//! that says what happened instead of hanging.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use rse_connectors::state::PostgresStateStore;
use rse_connectors::{PostgresConnectOptions, PostgresDestination, PostgresDestinationOptions};
use rse_core::testing::{service_url, unavailable, unique_id};
use rse_core::*;
use tokio::net::TcpListener;
use tokio_postgres::{Client, NoTls};

/// Bounds each test: far above any timeout set here, so only a hang reaches it.
const GUARD: Duration = Duration::from_secs(60);

fn url() -> String {
    service_url("RSE_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
}

/// A server that accepts connections and never says a word; its URL.
async fn silent_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("postgres://postgres@{addr}/test")
}

async fn admin() -> Option<Client> {
    let url = url();
    match tokio_postgres::connect(&url, NoTls).await {
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

fn batch(schema: &Arc<Schema>, id: i64) -> ChangeBatch {
    let record = Record::new(vec![Value::Int(id), Value::from("a")]);
    let key = record.key(schema).unwrap();
    let fingerprint = Fingerprinter::new(FingerprintAlgorithm::default(), schema).fingerprint(&record);
    let idempotency_key = IdempotencyKey::derive("s", &key, Op::Insert, fingerprint, 1);
    let change =
        Change { op: Op::Insert, key, record: Some(record), fingerprint, version: 1, idempotency_key, memo: None };
    ChangeBatch { sync_id: "s".into(), schema: schema.clone(), changes: vec![change] }
}

fn table_schema() -> Arc<Schema> {
    Schema::new(vec![Field::required("id", DataType::Int), Field::new("name", DataType::String)], &["id"])
        .unwrap()
        .into_arc()
}

#[tokio::test]
async fn a_server_that_never_answers_fails_the_check_as_transient_naming_the_connect_timeout() {
    let url = silent_server().await;
    let options = PostgresDestinationOptions::new("t")
        .with_connect_options(PostgresConnectOptions::new().with_connect_timeout(Duration::from_millis(500)));
    let dest = PostgresDestination::new(&url, options).unwrap();
    let error = tokio::time::timeout(GUARD, dest.check()).await.expect("the check hung").unwrap_err();
    assert!(matches!(error, DestinationError::Transient { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("timed out") && message.contains("with_connect_timeout"), "{message}");
}

#[tokio::test]
async fn the_urls_connect_timeout_bounds_the_whole_connection_not_only_tcp() {
    // tokio-postgres's own `connect_timeout` covers the TCP connect, which this server
    // accepts at once; the login that follows would wait forever.
    let url = format!("{}?connect_timeout=1", silent_server().await);
    let dest = PostgresDestination::new(&url, PostgresDestinationOptions::new("t")).unwrap();
    let error = tokio::time::timeout(GUARD, dest.check()).await.expect("the check hung").unwrap_err();
    assert!(matches!(error, DestinationError::Transient { .. }), "{error}");
    assert!(error.to_string().contains("timed out"), "{error}");
}

#[tokio::test]
async fn a_state_store_on_a_server_that_never_answers_is_unavailable_after_the_connect_timeout() {
    let url = silent_server().await;
    let options = PostgresConnectOptions::new().with_connect_timeout(Duration::from_millis(500));
    let error = tokio::time::timeout(GUARD, PostgresStateStore::connect_with(&url, "rse_state", options))
        .await
        .expect("connecting hung")
        .unwrap_err();
    assert!(matches!(error, StateError::Unavailable { .. }), "{error}");
    assert!(error.to_string().contains("timed out"), "{error}");
}

#[tokio::test]
async fn a_write_stuck_behind_a_lock_fails_as_transient_and_the_next_write_lands() {
    let Some(admin) = admin().await else { return };
    let schema = unique_id("rse_timeout");
    admin
        .batch_execute(&format!(
            "CREATE SCHEMA \"{schema}\"; CREATE TABLE \"{schema}\".t (id bigint PRIMARY KEY, name text)"
        ))
        .await
        .unwrap();
    let dest = PostgresDestination::new(
        &url(),
        PostgresDestinationOptions::new("t").with_schema(&schema).with_write_timeout(Duration::from_millis(500)),
    )
    .unwrap();
    let rows = table_schema();
    dest.write(&batch(&rows, 1)).await.unwrap();

    // Another session holds the table.
    let (mut locker, connection) = tokio_postgres::connect(&url(), NoTls).await.unwrap();
    tokio::spawn(connection);
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute(&format!("LOCK TABLE \"{schema}\".t IN ACCESS EXCLUSIVE MODE")).await.unwrap();
    let error = tokio::time::timeout(GUARD, dest.write(&batch(&rows, 2))).await.expect("the write hung").unwrap_err();
    assert!(matches!(error, DestinationError::Transient { .. }), "{error}");
    assert!(error.to_string().contains("with_write_timeout"), "{error}");
    lock.rollback().await.unwrap();

    // The retry lands.
    tokio::time::timeout(GUARD, dest.write(&batch(&rows, 2))).await.expect("the retry hung").unwrap();
    let ids: Vec<i64> = admin
        .query(&format!("SELECT id FROM \"{schema}\".t ORDER BY id"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, [1, 2]);
    admin.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_past_the_pool_wait_for_a_busy_connection_fails_as_transient() {
    let Some(admin) = admin().await else { return };
    let schema = unique_id("rse_pool_wait");
    admin
        .batch_execute(&format!(
            "CREATE SCHEMA \"{schema}\"; CREATE TABLE \"{schema}\".t (id bigint PRIMARY KEY, name text)"
        ))
        .await
        .unwrap();
    let dest = Arc::new(
        PostgresDestination::new(
            &url(),
            PostgresDestinationOptions::new("t")
                .with_schema(&schema)
                .with_pool_size(1)
                .with_connect_options(PostgresConnectOptions::new().with_pool_wait_timeout(Duration::from_millis(300))),
        )
        .unwrap(),
    );
    let rows = table_schema();
    dest.write(&batch(&rows, 1)).await.unwrap();

    // The only connection waits on a lock another session holds.
    let (mut locker, connection) = tokio_postgres::connect(&url(), NoTls).await.unwrap();
    tokio::spawn(connection);
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute(&format!("LOCK TABLE \"{schema}\".t IN ACCESS EXCLUSIVE MODE")).await.unwrap();
    let blocked = tokio::spawn({
        let dest = dest.clone();
        let rows = rows.clone();
        async move { dest.write(&batch(&rows, 2)).await }
    });
    // Until the blocked write's statement is waiting, the check could still get the connection.
    let waiting = format!("%\"{schema}\".%");
    for _ in 0..200 {
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1",
                &[&waiting],
            )
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let error = tokio::time::timeout(GUARD, dest.check()).await.expect("the check hung").unwrap_err();
    assert!(matches!(error, DestinationError::Transient { .. }), "{error}");
    assert!(error.to_string().contains("with_pool_wait_timeout"), "{error}");

    lock.rollback().await.unwrap();
    tokio::time::timeout(GUARD, blocked).await.expect("the blocked write hung").unwrap().unwrap();
    admin.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE")).await.unwrap();
}

/// A host that already owns a `deadpool-postgres` pool hands it to both: a sync runs
/// exactly-once through it, at most as many writes at once as the pool has connections.
#[tokio::test]
async fn a_destination_and_a_state_store_on_the_hosts_own_pool_sync_exactly_once() {
    use rse_connectors::state::PostgresStateStoreOptions;
    use rse_core::memory::MemorySource;
    let Some(admin) = admin().await else { return };
    let schema = unique_id("rse_host_pool");
    let config: tokio_postgres::Config = url().parse().unwrap();
    let manager = deadpool_postgres::Manager::new(config, NoTls);
    let pool = deadpool_postgres::Pool::builder(manager).max_size(2).build().unwrap();

    let store = PostgresStateStore::from_pool(pool.clone(), PostgresStateStoreOptions::new(&schema)).await.unwrap();
    assert!(store.name().ends_with(&format!("/test/{schema}")), "{}", store.name());
    let options = PostgresDestinationOptions::new("people").with_schema(&schema).with_create_table(true);
    let dest = PostgresDestination::from_pool(pool, options).await.unwrap().with_state_store(store.clone());
    assert_eq!(dest.capabilities().max_concurrency, 2);

    let rows: Vec<Record> = (1..=100).map(|i| Record::new(vec![Value::Int(i), Value::from(format!("n{i}"))])).collect();
    let sync_id = unique_id("host_pool");
    let sync = SyncJob::builder(sync_id.clone())
        .source(MemorySource::new(table_schema(), rows))
        .destination(dest)
        .state(store.clone())
        .build()
        .await
        .unwrap();
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.applied.insert, 100, "{report}");
    let count: i64 = admin.query_one(&format!("SELECT count(*) FROM \"{schema}\".people"), &[]).await.unwrap().get(0);
    assert_eq!(count, 100);
    assert_eq!(store.scan(&sync_id, None, 1_000).await.unwrap().len(), 100);
    admin.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE")).await.unwrap();
}

/// `connect` fails at once where `new` would fail only at the first write.
#[tokio::test]
async fn connect_checks_the_server_where_new_waits_for_the_first_write() {
    let Some(_admin) = admin().await else { return };
    let closed = "postgres://postgres@127.0.0.1:1/test";
    assert!(PostgresDestination::new(closed, PostgresDestinationOptions::new("t")).is_ok());
    match PostgresDestination::connect(closed, PostgresDestinationOptions::new("t")).await {
        Err(DestinationError::Transient { .. }) => {}
        other => panic!("connecting to a closed port must fail as transient, got {other:?}"),
    }
    PostgresDestination::connect(&url(), PostgresDestinationOptions::new("t")).await.unwrap();
}

/// The store's options, given whole: the schema and the run retention.
#[tokio::test]
async fn a_state_store_keeps_the_runs_its_options_say() {
    use rse_connectors::state::PostgresStateStoreOptions;
    let Some(admin) = admin().await else { return };
    let schema = unique_id("rse_state_options");
    let options = PostgresStateStoreOptions::new(&schema)
        .with_run_retention(2)
        .with_connect_options(PostgresConnectOptions::new().with_connect_timeout(Duration::from_secs(5)));
    let store = PostgresStateStore::connect(&url(), options).await.unwrap();
    assert_eq!(store.schema(), schema);
    let sync = SyncJob::builder("s")
        .source(rse_core::memory::MemorySource::new(table_schema(), vec![]))
        .destination(rse_core::memory::MemoryDestination::new())
        .state(store.clone())
        .build()
        .await
        .unwrap();
    let mut ran = Vec::new();
    for _ in 0..3 {
        ran.push(sync.run().await.unwrap().run_id);
    }
    let kept: Vec<u64> = store.list_runs("s", 10).await.unwrap().iter().map(|r| r.run_id).collect();
    assert_eq!(kept, vec![ran[2], ran[1]]);
    admin.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE")).await.unwrap();
}
