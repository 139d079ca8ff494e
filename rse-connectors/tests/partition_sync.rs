//! A partitioned sync across processes: the four partitions of one sync run at once, each
//! in its own process, from a PostgreSQL source table into a destination that logs every
//! request it receives (on the database's clock) and every change it applies, with one
//! shared `PostgresStateStore` for state and for the shared quota. One partition's process
//! is SIGKILLed mid-run and run again; then the source is edited and the four run again.
//!
//! At the end the destination equals the source, every key was applied exactly as often
//! as it changed (never twice for one change), and no window of a second ever held more
//! requests than the destination allows, although four processes wrote at once.
//!
//! The test re-runs its own binary as a worker (`partition_worker`, selected by
//! `RSE_PARTITION_WORKER`), so each partition is a real process and the kill a real death.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use rse_connectors::state::PostgresStateStore;
use rse_core::partition::Partition;
use rse_core::testing::{service_url, unavailable, unique_id};
use rse_core::*;

const PARTITIONS: u32 = 4;
const ROWS: i64 = 1_200;
/// The sync's pace, shared by the four processes: four requests a second.
const PACE: u32 = 4;
/// What the destination allows: five requests in any second. The pace leaves one request
/// of headroom for a process that sends its request late (scheduled out, a slow answer).
const ALLOWED: usize = 5;
const LEASE_TTL: Duration = Duration::from_secs(1);

fn pg_url() -> String {
    service_url("RSE_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
}

async fn pg() -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

fn schema() -> Arc<Schema> {
    Schema::new(vec![Field::required("id", DataType::Int), Field::new("name", DataType::String)], &["id"])
        .unwrap()
        .into_arc()
}

/// The source: the `src` table of the test's schema.
struct PgTable {
    client: tokio_postgres::Client,
    schema: String,
}

#[async_trait]
impl Source for PgTable {
    fn name(&self) -> &str {
        "postgres:src"
    }

    fn capabilities(&self) -> SourceCapabilities {
        SourceCapabilities::default().with_ordered_by_key(true)
    }

    async fn schema(&self) -> Result<Arc<Schema>, SourceError> {
        Ok(schema())
    }

    async fn read(&self, request: ReadRequest) -> Result<RowBatchStream<'_>, SourceError> {
        let rows = self
            .client
            .query(&format!("SELECT id, name FROM \"{}\".src ORDER BY id", self.schema), &[])
            .await
            .map_err(|e| SourceError::Unavailable { message: e.to_string(), source: None })?;
        let records: Vec<Record> =
            rows.iter().map(|r| Record::new(vec![Value::Int(r.get(0)), Value::String(r.get(1))])).collect();
        let batches: Vec<_> =
            records.chunks(request.batch_size.max(1)).map(|c| Ok(RowBatch::new(schema(), c.to_vec()))).collect();
        Ok(futures::stream::iter(batches).boxed())
    }
}

/// The destination: applies each change once per idempotency key, and logs each request's
/// arrival (the database's clock) and each change with whether it was applied.
struct Receiver {
    client: tokio::sync::Mutex<tokio_postgres::Client>,
    schema: String,
}

#[async_trait]
impl Destination for Receiver {
    fn name(&self) -> &str {
        "receiver"
    }

    fn capabilities(&self) -> DestinationCapabilities {
        DestinationCapabilities::new([Op::Insert, Op::Update, Op::Delete])
            .with_idempotency_keys(true)
            .with_rate_limit(Some(RateLimit::per_second(PACE)))
    }

    async fn check(&self) -> Result<(), DestinationError> {
        Ok(())
    }

    async fn write(&self, batch: &ChangeBatch) -> Result<WriteOutcome, DestinationError> {
        let s = &self.schema;
        let fail = |e: tokio_postgres::Error| DestinationError::Transient { message: e.to_string(), source: None };
        let client = self.client.lock().await;
        // The request's arrival, outside the transaction: a request counts even if it fails.
        client
            .execute(
                &format!("INSERT INTO \"{s}\".requests (at, sync) VALUES (clock_timestamp(), $1)"),
                &[&batch.sync_id.to_string()],
            )
            .await
            .map_err(fail)?;
        let idems: Vec<&[u8]> = batch.changes.iter().map(|c| &c.idempotency_key.0[..]).collect();
        client.batch_execute("BEGIN").await.map_err(fail)?;
        let result = async {
            let new: HashSet<Vec<u8>> = client
                .query(
                    &format!(
                        "INSERT INTO \"{s}\".applied_keys (idem) SELECT unnest($1::bytea[]) ON CONFLICT DO NOTHING \
                         RETURNING idem"
                    ),
                    &[&idems],
                )
                .await?
                .iter()
                .map(|r| r.get::<_, Vec<u8>>(0))
                .collect();
            let (mut ids, mut names, mut deleted, mut log_ids, mut log_applied) =
                (vec![], vec![], vec![], vec![], vec![]);
            for c in &batch.changes {
                let id = c.key.decode().unwrap()[0].as_i64().unwrap();
                let applied = new.contains(&c.idempotency_key.0[..]);
                log_ids.push(id);
                log_applied.push(applied);
                if !applied {
                    continue;
                }
                match (&c.op, &c.record) {
                    (Op::Delete, _) => deleted.push(id),
                    (_, Some(r)) => {
                        ids.push(id);
                        names.push(r.values[1].as_str().unwrap().to_owned());
                    }
                    (op, None) => panic!("{op} without a record"),
                }
            }
            client
                .execute(
                    &format!(
                        "INSERT INTO \"{s}\".dest (id, name) SELECT * FROM unnest($1::bigint[], $2::text[]) \
                         ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name"
                    ),
                    &[&ids, &names],
                )
                .await?;
            client.execute(&format!("DELETE FROM \"{s}\".dest WHERE id = ANY($1)"), &[&deleted]).await?;
            client
                .execute(
                    &format!("INSERT INTO \"{s}\".log (id, applied) SELECT * FROM unnest($1::bigint[], $2::bool[])"),
                    &[&log_ids, &log_applied],
                )
                .await?;
            Ok::<_, tokio_postgres::Error>(())
        }
        .await;
        match result {
            Ok(()) => client.batch_execute("COMMIT").await.map_err(fail)?,
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(fail(e));
            }
        }
        Ok(WriteOutcome::all_applied(batch.changes.len()))
    }
}

/// The worker: runs its partition once to the end (waiting out a killed predecessor's
/// lease). Run as a normal test it returns at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_worker() {
    let Ok(schema_name) = std::env::var("RSE_PARTITION_WORKER") else { return };
    let partition = Partition::parse(&std::env::var("RSE_PARTITION").unwrap()).unwrap();
    let state = PostgresStateStore::connect(&pg_url(), &schema_name).await.unwrap();
    let options = SyncOptions::default()
        .with_batch_rows(40)
        .with_max_concurrency(2)
        .with_linger(Duration::from_millis(20))
        .with_lease_ttl(LEASE_TTL)
        .with_holder(format!("pid {}", std::process::id()));
    let sync = SyncJob::builder("customers")
        .source(PgTable { client: pg().await.unwrap(), schema: schema_name.clone() })
        .destination(Receiver { client: tokio::sync::Mutex::new(pg().await.unwrap()), schema: schema_name })
        .state(state.clone())
        .shared_quota(state)
        .mode(Mode::Mirror)
        .options(options)
        .partition(partition)
        .build()
        .await
        .unwrap();
    let started = Instant::now();
    let report = loop {
        match sync.run().await {
            Ok(report) => break report,
            Err(Error::State(StateError::LeaseHeld { .. })) if started.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("partition {partition}: the run failed: {e}"),
        }
    };
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(report.partition.map(|p| p.partition), Some(partition));
}

fn spawn(schema: &str, index: u32) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "partition_worker", "--nocapture", "--test-threads", "1"])
        .env("RSE_PARTITION_WORKER", schema)
        .env("RSE_PARTITION", format!("{index}/{PARTITIONS}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child, what: &str) {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn count(client: &tokio_postgres::Client, schema: &str, table: &str) -> i64 {
    client.query_one(&format!("SELECT count(*) FROM \"{schema}\".{table}"), &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_share_one_quota_and_a_killed_partition_resumes() {
    let client = match pg().await {
        Ok(client) => client,
        Err(e) => return unavailable("PostgreSQL", &pg_url(), e),
    };
    let s = unique_id("partition_sync");
    client
        .batch_execute(&format!(
            "CREATE SCHEMA \"{s}\";
             CREATE TABLE \"{s}\".src (id bigint PRIMARY KEY, name text NOT NULL);
             CREATE TABLE \"{s}\".dest (id bigint PRIMARY KEY, name text NOT NULL);
             CREATE TABLE \"{s}\".applied_keys (idem bytea PRIMARY KEY);
             CREATE TABLE \"{s}\".log (id bigint NOT NULL, applied bool NOT NULL);
             CREATE TABLE \"{s}\".requests (at timestamptz NOT NULL, sync text NOT NULL);
             INSERT INTO \"{s}\".src SELECT i, 'customer ' || i FROM generate_series(1, {ROWS}) i;"
        ))
        .await
        .unwrap();
    // The state's tables exist before four processes race to create them.
    PostgresStateStore::connect(&pg_url(), &s).await.unwrap();

    // The initial load: four processes at once, the third killed once it has sent some.
    let mut workers: Vec<Child> = (0..PARTITIONS).map(|i| spawn(&s, i)).collect();
    let killed = 2usize;
    let victim = format!("customers#p{killed}of{PARTITIONS}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sent: i64 = client
            .query_one(&format!("SELECT count(*) FROM \"{s}\".requests WHERE sync = $1"), &[&victim])
            .await
            .unwrap()
            .get(0);
        if sent >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "partition {killed} sent nothing within a minute");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(workers[killed].try_wait().unwrap().is_none(), "partition {killed} ended before it could be killed");
    workers[killed].kill().unwrap(); // SIGKILL
    workers[killed].wait().unwrap();
    let before_restart = count(&client, &s, "dest").await;
    assert!(before_restart < ROWS, "the kill came after the whole load");
    workers[killed] = spawn(&s, killed as u32);
    for (i, worker) in workers.into_iter().enumerate() {
        finish(worker, &format!("partition {i}"));
    }
    let applied_once: i64 =
        client.query_one(&format!("SELECT count(*) FROM \"{s}\".log WHERE applied"), &[]).await.unwrap().get(0);
    assert_eq!(applied_once, ROWS, "each row applied exactly once by the initial load");

    // Edits: 90 rows renamed, 60 deleted, 30 new; the four partitions run again together.
    client
        .batch_execute(&format!(
            "UPDATE \"{s}\".src SET name = name || ' (renamed)' WHERE id % 13 = 0;
             DELETE FROM \"{s}\".src WHERE id % 20 = 7;
             INSERT INTO \"{s}\".src SELECT i, 'customer ' || i FROM generate_series({}, {}) i;",
            ROWS + 1,
            ROWS + 30
        ))
        .await
        .unwrap();
    let workers: Vec<Child> = (0..PARTITIONS).map(|i| spawn(&s, i)).collect();
    for (i, worker) in workers.into_iter().enumerate() {
        finish(worker, &format!("partition {i}, second run"));
    }

    // The destination equals the source.
    let table = |t: &'static str| {
        let client = &client;
        let s = &s;
        async move {
            client
                .query(&format!("SELECT id, name FROM \"{s}\".{t} ORDER BY id"), &[])
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1)))
                .collect::<BTreeMap<_, _>>()
        }
    };
    let (source, destination) = (table("src").await, table("dest").await);
    assert_eq!(source.len(), destination.len());
    assert!(source == destination, "the destination differs from the source");

    // Each key applied exactly as often as it changed: once by the load, once more when
    // renamed or deleted; a change re-sent after the kill was never applied again.
    let applied: BTreeMap<i64, i64> = client
        .query(&format!("SELECT id, count(*) FROM \"{s}\".log WHERE applied GROUP BY id"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for id in 1..=ROWS + 30 {
        let changed = u8::from(id <= ROWS && (id % 13 == 0 || id % 20 == 7));
        let expected = 1 + i64::from(changed);
        assert_eq!(applied.get(&id).copied().unwrap_or(0), expected, "key {id}");
    }

    // No second ever held more requests than the destination allows (the database's
    // clock), although the four processes wrote at once.
    let times: Vec<f64> = client
        .query(&format!("SELECT extract(epoch FROM at)::float8 FROM \"{s}\".requests ORDER BY at"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let busiest = (0..times.len()).map(|i| times[i..].iter().take_while(|t| **t < times[i] + 1.0).count()).max();
    let span = times.last().unwrap() - times.first().unwrap();
    let writers: i64 =
        client.query_one(&format!("SELECT count(DISTINCT sync) FROM \"{s}\".requests"), &[]).await.unwrap().get(0);
    assert_eq!(writers, i64::from(PARTITIONS));
    assert!(
        busiest.unwrap_or(0) <= ALLOWED,
        "{busiest:?} requests within one second; the destination allows {ALLOWED} ({} requests over {span:.1} s)",
        times.len()
    );
    println!("{} requests over {span:.1} s, at most {busiest:?} in a second", times.len());
    client.batch_execute(&format!("DROP SCHEMA \"{s}\" CASCADE")).await.unwrap();
}
