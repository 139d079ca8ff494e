//! The status tables in PostgreSQL: each write one transaction, its records one multi-row
//! insert of unnested arrays (one statement and one round trip per write, as the
//! destination's upserts and ledger write their batches).

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use rse_core::StateError;
use tokio_postgres::error::SqlState;

use crate::postgres::PostgresConnectOptions;
use crate::postgres::classify::{state_error, state_unconnected};
use crate::postgres::connect::{Connection, build_pool};
use crate::postgres::sql::{qualified, quote_ident};
use crate::status::{RUN_COUNTS, RecordRow, RunRow, StatusOptions, StatusSink, StatusWriter};

impl StatusWriter {
    /// A writer to the PostgreSQL database at `url` (`postgres://user@host:port/db`, its
    /// TLS parameters read as [`SslMode`](crate::postgres::SslMode) says), whose schema and
    /// tables it creates now when missing.
    ///
    /// # Errors
    /// [`StateError::Unavailable`] when the server cannot be reached; [`StateError::Other`]
    /// when the options or the URL cannot work, or the role may not create the schema or
    /// the tables (the message says which privilege to grant).
    pub async fn postgres(url: &str, options: StatusOptions) -> Result<StatusWriter, StateError> {
        Self::postgres_with(url, options, PostgresConnectOptions::new()).await
    }

    /// [`postgres`](Self::postgres) with the TLS roots, client certificate and timeouts of
    /// `connect`.
    ///
    /// # Errors
    /// As [`postgres`](Self::postgres).
    pub async fn postgres_with(
        url: &str,
        options: StatusOptions,
        connect: PostgresConnectOptions,
    ) -> Result<StatusWriter, StateError> {
        let options = options.checked()?;
        let connection = build_pool(url, &connect, options.pool_size).map_err(|e| StateError::Other {
            message: format!("status write-back's PostgreSQL connection: {}", e.message),
            source: e.source,
        })?;
        Self::postgres_on(connection, options).await
    }

    /// A writer on the host's own pool (the options' pool size does not apply).
    ///
    /// # Errors
    /// As [`postgres`](Self::postgres).
    pub async fn postgres_from_pool(
        pool: deadpool_postgres::Pool,
        options: StatusOptions,
    ) -> Result<StatusWriter, StateError> {
        let options = options.checked()?;
        let connection = Connection::adopt(pool)
            .await
            .map_err(|e| state_unconnected("status write-back's PostgreSQL pool", &options.schema, e))?;
        Self::postgres_on(connection, options).await
    }

    async fn postgres_on(connection: Connection, options: StatusOptions) -> Result<StatusWriter, StateError> {
        let name =
            format!("status write-back postgres:{}/{}/{}", connection.hosts, connection.database, options.schema);
        let sink = PostgresStatusSink {
            sql: Arc::new(Statements::new(&options)),
            schema: options.schema.clone(),
            name,
            connection,
        };
        let target = sink.name.clone();
        StatusWriter::start(Arc::new(sink), target, options).await
    }
}

struct PostgresStatusSink {
    connection: Connection,
    name: String,
    schema: String,
    sql: Arc<Statements>,
}

/// The statements, with the schema's and tables' quoted names in them.
struct Statements {
    create: String,
    insert_records: String,
    insert_run: String,
    purge_records: String,
    purge_runs: String,
}

impl Statements {
    fn new(options: &StatusOptions) -> Self {
        let (rt, ht) = (&options.records_table, &options.runs_table);
        let records = qualified(&options.schema, rt);
        let runs = qualified(&options.schema, ht);
        let index = |table: &str, suffix: &str| quote_ident(&format!("{table}_{suffix}"));
        let counts: String = RUN_COUNTS.iter().map(|c| format!("    {c} bigint NOT NULL,\n")).collect();
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {records} (
    sync_id text NOT NULL,
    run_id bigint NOT NULL,
    key text NOT NULL,
    key_hash text NOT NULL,
    op text,
    outcome text NOT NULL,
    stage text NOT NULL,
    effect text,
    reason text,
    record_id text,
    recorded_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS {by_run} ON {records} (sync_id, run_id);
CREATE INDEX IF NOT EXISTS {by_key} ON {records} (sync_id, key, recorded_at);
CREATE INDEX IF NOT EXISTS {by_outcome} ON {records} (sync_id, outcome, recorded_at);
CREATE INDEX IF NOT EXISTS {by_time} ON {records} (recorded_at);
CREATE TABLE IF NOT EXISTS {runs} (
    sync_id text NOT NULL,
    run_id bigint NOT NULL,
    status text NOT NULL,
    failure_kind text,
    message text NOT NULL,
    mode text NOT NULL,
    dry_run boolean NOT NULL,
    full_resync boolean NOT NULL,
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    duration_ms bigint NOT NULL,
{counts}    report jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS {runs_by_run} ON {runs} (sync_id, run_id);
CREATE INDEX IF NOT EXISTS {runs_by_time} ON {runs} (sync_id, finished_at);
CREATE INDEX IF NOT EXISTS {runs_by_status} ON {runs} (status, finished_at);",
            by_run = index(rt, "by_run"),
            by_key = index(rt, "by_key"),
            by_outcome = index(rt, "by_outcome"),
            by_time = index(rt, "by_time"),
            runs_by_run = index(ht, "by_run"),
            runs_by_time = index(ht, "by_time"),
            runs_by_status = index(ht, "by_status"),
        );
        let placeholders: Vec<String> = (1..=11 + RUN_COUNTS.len() + 1).map(|i| format!("${i}")).collect();
        Statements {
            create,
            insert_records: format!(
                "INSERT INTO {records} (sync_id, run_id, key, key_hash, op, outcome, stage, effect, reason, record_id, \
                 recorded_at) SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], \
                 $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::timestamptz[])"
            ),
            insert_run: format!(
                "INSERT INTO {runs} (sync_id, run_id, status, failure_kind, message, mode, dry_run, full_resync, \
                 started_at, finished_at, duration_ms, {}, report) VALUES ({})",
                RUN_COUNTS.join(", "),
                placeholders.join(", ")
            ),
            purge_records: format!("DELETE FROM {records} WHERE recorded_at < $1"),
            purge_runs: format!("DELETE FROM {runs} WHERE finished_at < $1"),
        }
    }
}

impl PostgresStatusSink {
    fn err(&self, doing: &str) -> impl FnOnce(tokio_postgres::Error) -> StateError + '_ {
        let doing = doing.to_owned();
        move |e| {
            if matches!(e.code(), Some(c) if *c == SqlState::UNDEFINED_TABLE || *c == SqlState::INVALID_SCHEMA_NAME) {
                return StateError::Other {
                    message: format!(
                        "{}: {doing} failed: the status tables in schema {} are gone (dropped?); they are created \
                         again at the next write",
                        self.name, self.schema
                    ),
                    source: Some(Box::new(e)),
                };
            }
            state_error(&self.name, &self.schema, &doing, e)
        }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StateError> {
        self.connection
            .pool
            .get()
            .await
            .map_err(|e| state_unconnected(&self.name, &self.schema, self.connection.unconnected(e)))
    }
}

#[async_trait]
impl StatusSink for PostgresStatusSink {
    async fn prepare(&self) -> Result<(), StateError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err("starting to create the status tables"))?;
        // Two processes starting together: the second waits here, then finds the tables.
        tx.execute("SELECT pg_advisory_xact_lock(hashtext('rse-status-tables:' || $1))", &[&self.schema])
            .await
            .map_err(self.err("waiting for the status tables' lock"))?;
        // CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema exists.
        let exists = tx
            .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&self.schema])
            .await
            .map_err(self.err("looking for the schema"))?
            .is_some();
        if !exists {
            tx.batch_execute(&format!("CREATE SCHEMA {}", quote_ident(&self.schema)))
                .await
                .map_err(self.err("creating the schema"))?;
        }
        tx.batch_execute(&self.sql.create).await.map_err(self.err("creating the status tables"))?;
        tx.commit().await.map_err(self.err("committing the status tables"))
    }

    async fn write(&self, records: Vec<RecordRow>, runs: Vec<RunRow>) -> Result<(), StateError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err("starting a write"))?;
        if !records.is_empty() {
            let sync_ids: Vec<&str> = records.iter().map(|r| &*r.sync_id).collect();
            let run_ids: Vec<i64> = records.iter().map(|r| r.run_id).collect();
            let keys: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
            let hashes: Vec<&str> = records.iter().map(|r| r.key_hash.as_str()).collect();
            let ops: Vec<Option<&str>> = records.iter().map(|r| r.op).collect();
            let outcomes: Vec<&str> = records.iter().map(|r| r.outcome).collect();
            let stages: Vec<&str> = records.iter().map(|r| r.stage).collect();
            let effects: Vec<Option<&str>> = records.iter().map(|r| r.effect).collect();
            let reasons: Vec<Option<&str>> = records.iter().map(|r| r.reason.as_deref()).collect();
            let ids: Vec<Option<&str>> = records.iter().map(|r| r.record_id.as_deref()).collect();
            let times: Vec<SystemTime> = records.iter().map(|r| r.at).collect();
            tx.execute(
                &self.sql.insert_records,
                &[&sync_ids, &run_ids, &keys, &hashes, &ops, &outcomes, &stages, &effects, &reasons, &ids, &times],
            )
            .await
            .map_err(self.err("writing record outcomes"))?;
        }
        for r in &runs {
            let mut values: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![
                &r.sync_id,
                &r.run_id,
                &r.status,
                &r.failure_kind,
                &r.message,
                &r.mode,
                &r.dry_run,
                &r.full_resync,
                &r.started_at,
                &r.finished_at,
                &r.duration_ms,
            ];
            values.extend(r.counts.iter().map(|n| n as &(dyn tokio_postgres::types::ToSql + Sync)));
            values.push(&r.report);
            tx.execute(&self.sql.insert_run, &values).await.map_err(self.err("writing a run"))?;
        }
        tx.commit().await.map_err(self.err("committing a write"))
    }

    async fn purge(&self, before: SystemTime) -> Result<u64, StateError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err("starting to delete old rows"))?;
        let records =
            tx.execute(&self.sql.purge_records, &[&before]).await.map_err(self.err("deleting old record outcomes"))?;
        let runs = tx.execute(&self.sql.purge_runs, &[&before]).await.map_err(self.err("deleting old runs"))?;
        tx.commit().await.map_err(self.err("committing the deletion"))?;
        Ok(records + runs)
    }
}
