//! `PostgresStateStore`: sync state in PostgreSQL tables of a configurable schema.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use rse_core::state::{Lease, RejectedEntry, SnapshotEntry, StateCommit, StateStore, SyncMeta};
use rse_core::{Key, StateError, SyncReport};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use crate::destination::postgres::COPY_MIN_ROWS;
use crate::destination::postgres::copy::{CopyRows, copy_in};
use crate::postgres::PostgresConnectOptions;
use crate::postgres::connect::{Connection, Unconnected, build_pool};

use super::{
    DEFAULT_RUN_RETENTION, RunRecord, SyncSummary, cursor_bytes, entry_from, from_i64, from_json, last_per_key,
    meta_from, pending_columns, rejected_columns, rejected_from, stage_name, time_from_ms, to_i64, to_json, ttl_ms,
};

/// Versioned migrations, each run once per schema in order; `{s}` is the quoted schema.
const MIGRATIONS: &[&str] = &[
    // 1: syncs (metadata and lease), snapshot, rejected set, run history.
    "CREATE TABLE {s}.rse_syncs (
        id bigserial PRIMARY KEY,
        sync_id text NOT NULL UNIQUE,
        fingerprint_algorithm text,
        cursor text,
        last_token bigint NOT NULL DEFAULT 0,
        lease_holder text,
        lease_token bigint,
        lease_acquired_ms bigint,
        lease_expires_ms bigint
    );
    CREATE TABLE {s}.rse_snapshot (
        sync bigint NOT NULL,
        key bytea NOT NULL,
        fingerprint bytea,
        version bigint NOT NULL,
        pending_op smallint,
        pending_fingerprint bytea,
        pending_version bigint,
        PRIMARY KEY (sync, key)
    );
    CREATE TABLE {s}.rse_rejected (
        sync bigint NOT NULL,
        key bytea NOT NULL,
        stage text NOT NULL,
        reason text NOT NULL,
        attempts integer NOT NULL,
        last_rejected_at bigint NOT NULL,
        entry text NOT NULL,
        PRIMARY KEY (sync, key)
    );
    CREATE TABLE {s}.rse_runs (
        sync bigint NOT NULL,
        run_id bigint NOT NULL,
        started_at_ms bigint NOT NULL,
        status text NOT NULL,
        report text NOT NULL,
        PRIMARY KEY (sync, run_id)
    );",
    // 2: room in each page of the snapshot, so that a batch's intent and then its
    // acknowledgement update rows in place (HOT updates: no index entry, and the old
    // versions are pruned as pages are read) instead of leaving dead rows that every later
    // scan wades through until a vacuum.
    "ALTER TABLE {s}.rse_snapshot SET (fillfactor = 70);",
    // 3: refused records and cursors in the exact binary form (`codec.rs`), which keeps NaN
    // and infinities that JSON cannot. Rows written before keep the record inside `entry`
    // and the cursor in `cursor`, and are read from there; new writes fill these columns.
    "ALTER TABLE {s}.rse_rejected ADD COLUMN record bytea;
    ALTER TABLE {s}.rse_syncs ADD COLUMN cursor_value bytea;",
];

/// The database a connection is on: its name, the server's port and the time the server
/// started (the same for every connection to one database of one server, and practically
/// never for two).
pub(crate) const DATABASE_IDENTITY: &str = "SELECT current_database() || ':' || coalesce(inet_server_port(), 0)::text \
     || ':' || pg_postmaster_start_time()::text";

/// The wall clock of the server, in milliseconds: every runner compares lease expiry on
/// the same clock, whatever its own host's says.
const NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// The state of any number of syncs in the tables of one PostgreSQL schema.
///
/// The store creates the schema (when missing) and its tables, and applies its own
/// versioned migrations when it connects; two processes connecting together migrate once
/// (an advisory lock serialises them). A commit is one transaction; leases compare expiry
/// on the server's clock.
///
/// ```no_run
/// # async fn demo() -> Result<(), rse_core::StateError> {
/// use rse_connectors::state::PostgresStateStore;
/// let state = PostgresStateStore::connect("postgres://rse@db/warehouse", "rse_state").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStateStore {
    connection: Connection,
    name: String,
    schema: String,
    sql: std::sync::Arc<Sql>,
    run_retention: usize,
}

impl std::fmt::Debug for PostgresStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStateStore").field("name", &self.name).finish_non_exhaustive()
    }
}

/// The statements, with the schema name quoted in.
struct Sql {
    fence: String,
    ensure_sync: String,
    lock_sync: String,
    take_lease: String,
    renew: String,
    release: String,
    meta: String,
    scan_first: String,
    scan_after: String,
    get: String,
    rejected_first: String,
    rejected_after: String,
    intents: String,
    settle: String,
    settle_remove: String,
    clear_by_keys: String,
    apply: String,
    copy_snapshot: String,
    reject: String,
    forget: String,
    cursor: String,
    algorithm: String,
    run: String,
    prune_runs: String,
    runs: String,
    syncs: String,
}

/// `"name"` with inner quotes doubled: an identifier cannot be a bound parameter.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Sql {
    fn new(s: &str) -> Self {
        let cols = "key, fingerprint, version, pending_op, pending_fingerprint, pending_version";
        let sync_of = format!("(SELECT id FROM {s}.rse_syncs WHERE sync_id = $1)");
        Self {
            fence: format!("SELECT id, lease_token, last_token FROM {s}.rse_syncs WHERE sync_id = $1 FOR UPDATE"),
            ensure_sync: format!("INSERT INTO {s}.rse_syncs (sync_id) VALUES ($1) ON CONFLICT (sync_id) DO NOTHING"),
            lock_sync: format!(
                "SELECT last_token, lease_holder, lease_acquired_ms, lease_expires_ms, {NOW_MS} FROM {s}.rse_syncs
                 WHERE sync_id = $1 FOR UPDATE"
            ),
            take_lease: format!(
                "UPDATE {s}.rse_syncs SET last_token = $2, lease_holder = $3, lease_token = $2, lease_acquired_ms = $4,
                 lease_expires_ms = $5 WHERE sync_id = $1"
            ),
            renew: format!("UPDATE {s}.rse_syncs SET lease_expires_ms = {NOW_MS} + $2 WHERE id = $1 RETURNING lease_expires_ms"),
            release: format!(
                "UPDATE {s}.rse_syncs SET lease_holder = NULL, lease_token = NULL, lease_acquired_ms = NULL,
                 lease_expires_ms = NULL WHERE sync_id = $1 AND lease_token = $2"
            ),
            meta: format!("SELECT fingerprint_algorithm, cursor_value, cursor FROM {s}.rse_syncs WHERE sync_id = $1"),
            scan_first: format!("SELECT {cols} FROM {s}.rse_snapshot WHERE sync = {sync_of} ORDER BY key LIMIT $2"),
            scan_after: format!(
                "SELECT {cols} FROM {s}.rse_snapshot WHERE sync = {sync_of} AND key > $3 ORDER BY key LIMIT $2"
            ),
            get: format!("SELECT {cols} FROM {s}.rse_snapshot WHERE sync = {sync_of} AND key = ANY($2)"),
            rejected_first: format!(
                "SELECT entry, record FROM {s}.rse_rejected WHERE sync = {sync_of} ORDER BY key LIMIT $2"
            ),
            rejected_after: format!(
                "SELECT entry, record FROM {s}.rse_rejected WHERE sync = {sync_of} AND key > $3 ORDER BY key LIMIT $2"
            ),
            intents: format!(
                "INSERT INTO {s}.rse_snapshot AS t ({cols}, sync)
                 SELECT k, NULL, 0, o, f, v, $1 FROM unnest($2::bytea[], $3::smallint[], $4::bytea[], $5::bigint[]) AS u(k, o, f, v)
                 ON CONFLICT (sync, key) DO UPDATE SET pending_op = EXCLUDED.pending_op,
                    pending_fingerprint = EXCLUDED.pending_fingerprint, pending_version = EXCLUDED.pending_version"
            ),
            settle: format!(
                "UPDATE {s}.rse_snapshot AS t SET pending_op = u.o, pending_fingerprint = u.f, pending_version = u.v
                 FROM unnest($2::bytea[], $3::smallint[], $4::bytea[], $5::bigint[]) AS u(k, o, f, v)
                 WHERE t.sync = $1 AND t.key = u.k"
            ),
            settle_remove: format!(
                "DELETE FROM {s}.rse_snapshot WHERE sync = $1 AND key = ANY($2)
                 AND fingerprint IS NULL AND version = 0 AND pending_op IS NULL"
            ),
            clear_by_keys: format!("DELETE FROM {s}.rse_rejected WHERE sync = $1 AND key = ANY($2)"),
            apply: format!(
                "INSERT INTO {s}.rse_snapshot AS t ({cols}, sync)
                 SELECT k, fp, ver, o, f, v, $1
                 FROM unnest($2::bytea[], $3::bytea[], $4::bigint[], $5::smallint[], $6::bytea[], $7::bigint[]) AS u(k, fp, ver, o, f, v)
                 ON CONFLICT (sync, key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, version = EXCLUDED.version,
                    pending_op = EXCLUDED.pending_op, pending_fingerprint = EXCLUDED.pending_fingerprint,
                    pending_version = EXCLUDED.pending_version"
            ),
            copy_snapshot: format!("COPY {s}.rse_snapshot (sync, {cols}) FROM STDIN (FORMAT binary)"),
            reject: format!(
                "INSERT INTO {s}.rse_rejected (sync, key, stage, reason, attempts, last_rejected_at, entry, record)
                 SELECT $1, k, st, r, a, l, e, rec
                 FROM unnest($2::bytea[], $3::text[], $4::text[], $5::integer[], $6::bigint[], $7::text[], $8::bytea[])
                    AS u(k, st, r, a, l, e, rec)
                 ON CONFLICT (sync, key) DO UPDATE SET stage = EXCLUDED.stage, reason = EXCLUDED.reason,
                    attempts = EXCLUDED.attempts, last_rejected_at = EXCLUDED.last_rejected_at, entry = EXCLUDED.entry,
                    record = EXCLUDED.record"
            ),
            forget: format!("DELETE FROM {s}.rse_snapshot WHERE sync = $1 AND key = ANY($2)"),
            cursor: format!("UPDATE {s}.rse_syncs SET cursor_value = $2, cursor = NULL WHERE id = $1"),
            algorithm: format!("UPDATE {s}.rse_syncs SET fingerprint_algorithm = $2 WHERE id = $1"),
            run: format!(
                "INSERT INTO {s}.rse_runs (sync, run_id, started_at_ms, status, report) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (sync, run_id) DO UPDATE SET started_at_ms = EXCLUDED.started_at_ms,
                    status = EXCLUDED.status, report = EXCLUDED.report"
            ),
            prune_runs: format!(
                "DELETE FROM {s}.rse_runs WHERE sync = $1 AND run_id NOT IN
                 (SELECT run_id FROM {s}.rse_runs WHERE sync = $1 ORDER BY run_id DESC LIMIT $2)"
            ),
            runs: format!(
                "SELECT r.run_id, r.started_at_ms, r.report FROM {s}.rse_runs r WHERE r.sync = {sync_of}
                 ORDER BY r.run_id DESC LIMIT $2"
            ),
            syncs: format!(
                "SELECT s.sync_id,
                    (SELECT count(*) FROM {s}.rse_snapshot WHERE sync = s.id),
                    (SELECT count(*) FROM {s}.rse_rejected WHERE sync = s.id),
                    s.lease_holder, s.lease_expires_ms, {NOW_MS}
                 FROM {s}.rse_syncs s ORDER BY s.sync_id"
            ),
        }
    }
}

/// Explains a PostgreSQL failure: what went wrong and what to do.
fn pg_error(store: &str, schema: &str, doing: &str, e: tokio_postgres::Error) -> StateError {
    let detail = e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_owned());
    let code = e.code().cloned();
    let unavailable =
        |message: String, e: tokio_postgres::Error| StateError::Unavailable { message, source: Some(Box::new(e)) };
    match code {
        None => unavailable(
            format!(
                "lost the connection to {store} while {doing} ({detail}); check that the server is up and reachable: the call can be retried"
            ),
            e,
        ),
        Some(c)
            if c.code().starts_with("08")
                || c == SqlState::ADMIN_SHUTDOWN
                || c == SqlState::CRASH_SHUTDOWN
                || c == SqlState::CANNOT_CONNECT_NOW =>
        {
            unavailable(
                format!("{store} is unreachable or restarting while {doing} ({detail}); the call can be retried"),
                e,
            )
        }
        Some(c)
            if c == SqlState::T_R_SERIALIZATION_FAILURE
                || c == SqlState::T_R_DEADLOCK_DETECTED
                || c == SqlState::LOCK_NOT_AVAILABLE
                || c == SqlState::QUERY_CANCELED =>
        {
            unavailable(
                format!("{store}: {doing} conflicted with another session ({detail}); the call can be retried"),
                e,
            )
        }
        Some(c) if c == SqlState::INSUFFICIENT_PRIVILEGE => StateError::Other {
            message: format!(
                "{store}: permission denied while {doing} ({detail}); grant the role USAGE and CREATE on schema {schema} \
                 (and CREATE on the database if the schema does not exist yet), or choose a schema the role owns"
            ),
            source: Some(Box::new(e)),
        },
        Some(c) if c == SqlState::READ_ONLY_SQL_TRANSACTION => StateError::Other {
            message: format!("{store} is read-only while {doing} ({detail}); point the store at the primary server"),
            source: Some(Box::new(e)),
        },
        Some(c)
            if c == SqlState::UNDEFINED_TABLE
                || c == SqlState::UNDEFINED_COLUMN
                || c == SqlState::INVALID_SCHEMA_NAME =>
        {
            StateError::Incompatible {
                message: format!(
                    "{store}: the state tables in schema {schema} are missing or altered ({detail}); restore them, or point the store at a new schema"
                ),
            }
        }
        Some(c) if c == SqlState::DISK_FULL || c == SqlState::TOO_MANY_CONNECTIONS || c == SqlState::OUT_OF_MEMORY => {
            unavailable(format!("{store} is out of resources while {doing} ({detail}); the call can be retried"), e)
        }
        Some(_) => {
            StateError::Other { message: format!("{store}: {doing} failed: {detail}"), source: Some(Box::new(e)) }
        }
    }
}

fn entry_of(row: &Row) -> Result<SnapshotEntry, StateError> {
    let key: &[u8] = row.get(0);
    let fingerprint: Option<&[u8]> = row.get(1);
    let version: i64 = row.get(2);
    let op: Option<i16> = row.get(3);
    let pending_fp: Option<&[u8]> = row.get(4);
    let pending_version: Option<i64> = row.get(5);
    entry_from(key, fingerprint, version, (op.map(i64::from), pending_fp, pending_version))
}

type Client = deadpool_postgres::Object;

/// The outcome of a fence check: the sync's row id, or why the write is refused.
type Fence = Result<i64, StateError>;

impl PostgresStateStore {
    /// Connects to `url` (`postgres://user@host:port/db?sslmode=verify-full`), creates
    /// `schema` and the state tables when missing, and applies the migrations this rse
    /// knows. The URL's TLS parameters are read as [`SslMode`](crate::postgres::SslMode)
    /// says; [`connect_with`](Self::connect_with) takes TLS and timeout options besides.
    ///
    /// # Errors
    /// [`StateError::Unavailable`] when the server cannot be reached or does not answer
    /// within the connect timeout;
    /// [`StateError::Other`] when the URL or its TLS settings cannot work, or the server's
    /// certificate is not trusted (the message says what to change), or the role lacks a
    /// privilege (the message says which to grant); [`StateError::Incompatible`] when the
    /// schema was migrated by a newer rse.
    pub async fn connect(url: &str, schema: &str) -> Result<Self, StateError> {
        Self::connect_with(url, schema, PostgresConnectOptions::new()).await
    }

    /// [`connect`](Self::connect) under `options`: TLS roots and client certificate, the
    /// TLS mode over the URL's `sslmode`, the connect timeout and the wait for a free
    /// connection (of 8).
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn connect_with(url: &str, schema: &str, options: PostgresConnectOptions) -> Result<Self, StateError> {
        let connection = build_pool(url, &options, 8).map_err(|e| StateError::Other {
            message: format!("the state store's PostgreSQL connection: {}", e.message),
            source: e.source,
        })?;
        let name = format!("postgres:{}/{}/{schema}", connection.hosts, connection.database);
        let quoted = quote_ident(schema);
        let store = Self {
            connection,
            sql: std::sync::Arc::new(Sql::new(&quoted)),
            schema: schema.to_owned(),
            name,
            run_retention: DEFAULT_RUN_RETENTION,
        };
        store.migrate(&quoted).await?;
        Ok(store)
    }

    /// Keeps only the last `n` runs of each sync (default 100; at least 1).
    pub fn with_run_retention(mut self, n: usize) -> Self {
        self.run_retention = n.max(1);
        self
    }

    /// The schema holding the state tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    fn err(&self, doing: &str) -> impl FnOnce(tokio_postgres::Error) -> StateError + '_ {
        let doing = doing.to_owned();
        move |e| pg_error(&self.name, &self.schema, &doing, e)
    }

    async fn client(&self) -> Result<Client, StateError> {
        self.connection.pool.get().await.map_err(|e| match self.connection.unconnected(e) {
            Unconnected::Backend(e) => pg_error(&self.name, &self.schema, "connecting", e),
            // Retrying does not change a certificate or the server's TLS setting.
            Unconnected::Tls(message, e) => {
                StateError::Other { message: format!("{}: {message}", self.name), source: Some(Box::new(e)) }
            }
            Unconnected::Transient(message) => StateError::Unavailable {
                message: format!("{}: {message}; the call can be retried", self.name),
                source: None,
            },
        })
    }

    /// One page of a key-ordered listing: `first` without a lower bound, `after` with one
    /// (both take the sync id and the limit; `after` also the key bytes).
    async fn page(
        &self,
        first: &str,
        after_sql: &str,
        sync_id: &str,
        after: Option<&Key>,
        limit: usize,
        doing: &str,
    ) -> Result<Vec<tokio_postgres::Row>, StateError> {
        let mut client = self.client().await?;
        let limit = to_i64(limit as u64);
        let sql = if after.is_some() { after_sql } else { first };
        // A page must walk the primary key. Without statistics (a table just filled, before
        // autovacuum analyzes it) the planner misjudges how many rows follow `after` and
        // fetches them all, then sorts: 250 ms a page instead of 4 ms on a million keys.
        let tx = client.transaction().await.map_err(self.err(doing))?;
        tx.batch_execute("SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off")
            .await
            .map_err(self.err(doing))?;
        let statement = tx.prepare_cached(sql).await.map_err(self.err("preparing a statement"))?;
        let rows = match after {
            None => tx.query(&statement, &[&sync_id, &limit]).await,
            Some(after) => tx.query(&statement, &[&sync_id, &limit, &after.as_bytes()]).await,
        };
        let rows = rows.map_err(self.err(doing))?;
        tx.commit().await.map_err(self.err(doing))?;
        Ok(rows)
    }

    async fn migrate(&self, quoted: &str) -> Result<(), StateError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err("starting the migration"))?;
        // Two processes starting together: the second waits here, then finds nothing to do.
        tx.execute("SELECT pg_advisory_xact_lock(hashtext('rse-state-migrations:' || $1))", &[&self.schema])
            .await
            .map_err(self.err("waiting for the migration lock"))?;
        // CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema
        // exists; a role granted only the schema must not need it.
        let exists = tx
            .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&self.schema])
            .await
            .map_err(self.err("looking for the schema"))?
            .is_some();
        if !exists {
            tx.batch_execute(&format!("CREATE SCHEMA {quoted}")).await.map_err(self.err("creating the schema"))?;
        }
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {quoted}.rse_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        ))
        .await
        .map_err(self.err("creating the migrations table"))?;
        let current: i32 = tx
            .query_one(&format!("SELECT coalesce(max(version), 0) FROM {quoted}.rse_migrations"), &[])
            .await
            .map_err(self.err("reading the schema version"))?
            .get(0);
        let known = i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX);
        if current > known {
            return Err(StateError::Incompatible {
                message: format!(
                    "{}: the state in schema {} was written by a newer rse (schema version {current}; this rse knows up to {known}); upgrade rse, or point the store at another schema",
                    self.name, self.schema
                ),
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(current).unwrap_or(0)) {
            let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
            tx.batch_execute(&sql.replace("{s}", quoted))
                .await
                .map_err(self.err(&format!("applying migration {version}")))?;
            tx.execute(&format!("INSERT INTO {quoted}.rse_migrations (version) VALUES ($1)"), &[&version])
                .await
                .map_err(self.err("recording the migration"))?;
        }
        tx.commit().await.map_err(self.err("committing the migration"))
    }

    /// Locks the sync's row and checks the lease's token against the current one.
    async fn fence(&self, tx: &deadpool_postgres::Transaction<'_>, lease: &Lease) -> Result<Fence, StateError> {
        let row = tx
            .query_opt(
                &tx.prepare_cached(&self.sql.fence).await.map_err(self.err("preparing a statement"))?,
                &[&lease.sync_id],
            )
            .await
            .map_err(self.err("checking the lease"))?;
        Ok(match row {
            Some(row) => {
                let (id, token, last): (i64, Option<i64>, i64) = (row.get(0), row.get(1), row.get(2));
                match token {
                    Some(t) if from_i64(t) == lease.token => Ok(id),
                    _ => Err(StateError::Fenced {
                        sync_id: lease.sync_id.clone(),
                        token: lease.token,
                        current: from_i64(token.unwrap_or(last)),
                    }),
                }
            }
            None => Err(StateError::Fenced { sync_id: lease.sync_id.clone(), token: lease.token, current: 0 }),
        })
    }

    /// Applies `commit` inside `tx`, a transaction on this store's database, after locking
    /// the sync's row and checking the lease: [`StateStore::commit`] without its own
    /// transaction, so a destination in the same database commits rows and state together.
    /// Nothing is committed here; the caller commits or rolls back `tx`.
    ///
    /// Applied entries of the keys in `new_keys` — keys the caller knows to have no snapshot
    /// row — are written by binary COPY when there are at least [`COPY_MIN_ROWS`] of them. If
    /// one has a row after all, the COPY fails and so does the transaction:
    /// [`CommitInError::SnapshotConflict`] says to roll back and commit again without it.
    pub(crate) async fn commit_in(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        lease: &Lease,
        commit: StateCommit,
        new_keys: &HashSet<&[u8]>,
    ) -> Result<(), CommitInError> {
        // Encode first, so that a value that cannot be encoded writes nothing.
        let mut rejected = last_per_key(commit.rejected, |r| &r.key);
        let (rejected_json, records): (Vec<String>, Vec<Option<Vec<u8>>>) =
            rejected.iter_mut().map(rejected_columns).collect::<Result<Vec<_>, _>>()?.into_iter().unzip();
        let cursor = commit.cursor.as_ref().map(cursor_bytes).transpose()?;
        let intents = last_per_key(commit.intents, |(k, _)| k);
        let settled = last_per_key(commit.settled, |(k, _)| k);
        let applied = last_per_key(commit.applied, |e| &e.key);
        let id = self.fence(tx, lease).await??;
        let run = |sql: &'static str| self.err(sql);

        if !intents.is_empty() {
            let keys: Vec<&[u8]> = intents.iter().map(|(k, _)| k.as_bytes()).collect();
            let cols: Vec<_> = intents.iter().map(|(_, p)| pending_columns(Some(p))).collect();
            let (ops, fps, versions) = split(&cols);
            tx.execute(
                &tx.prepare_cached(&self.sql.intents).await.map_err(self.err("preparing a statement"))?,
                &[&id, &keys, &ops, &fps, &versions],
            )
            .await
            .map_err(run("recording intents"))?;
        }
        if !settled.is_empty() {
            let keys: Vec<&[u8]> = settled.iter().map(|(k, _)| k.as_bytes()).collect();
            let cols: Vec<_> = settled.iter().map(|(_, p)| pending_columns(p.as_ref())).collect();
            let (ops, fps, versions) = split(&cols);
            tx.execute(
                &tx.prepare_cached(&self.sql.settle).await.map_err(self.err("preparing a statement"))?,
                &[&id, &keys, &ops, &fps, &versions],
            )
            .await
            .map_err(run("settling intents"))?;
            tx.execute(
                &tx.prepare_cached(&self.sql.settle_remove).await.map_err(self.err("preparing a statement"))?,
                &[&id, &keys],
            )
            .await
            .map_err(run("settling intents"))?;
        }
        if !applied.is_empty() {
            tx.execute(
                &tx.prepare_cached(&self.sql.clear_by_keys).await.map_err(self.err("preparing a statement"))?,
                &[&id, &applied.iter().map(|e| e.key.as_bytes()).collect::<Vec<_>>()],
            )
            .await
            .map_err(run("clearing rejections"))?;
        }
        let (copied, applied): (Vec<SnapshotEntry>, Vec<SnapshotEntry>) =
            if applied.iter().filter(|e| new_keys.contains(e.key.as_bytes())).count() >= COPY_MIN_ROWS {
                applied.into_iter().partition(|e| new_keys.contains(e.key.as_bytes()))
            } else {
                (Vec::new(), applied)
            };
        if !copied.is_empty() {
            let rows = snapshot_copy(id, &copied).ok_or_else(|| StateError::Other {
                message: format!("{}: a snapshot key is too long for PostgreSQL", self.name),
                source: None,
            })?;
            match copy_in(tx, &self.sql.copy_snapshot, rows).await {
                Ok(()) => {}
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => return Err(CommitInError::SnapshotConflict),
                Err(e) => return Err(self.err("writing applied entries")(e).into()),
            }
        }
        if !applied.is_empty() {
            let keys: Vec<&[u8]> = applied.iter().map(|e| e.key.as_bytes()).collect();
            let fingerprints: Vec<Option<[u8; 16]>> =
                applied.iter().map(|e| e.fingerprint.map(|f| f.to_bytes())).collect();
            let fingerprints: Vec<Option<&[u8]>> = fingerprints.iter().map(|f| f.as_ref().map(|b| &b[..])).collect();
            let versions: Vec<i64> = applied.iter().map(|e| to_i64(e.version)).collect();
            let cols: Vec<_> = applied.iter().map(|e| pending_columns(e.pending.as_ref())).collect();
            let (ops, fps, pending_versions) = split(&cols);
            let params: [&(dyn ToSql + Sync); 7] =
                [&id, &keys, &fingerprints, &versions, &ops, &fps, &pending_versions];
            tx.execute(&tx.prepare_cached(&self.sql.apply).await.map_err(self.err("preparing a statement"))?, &params)
                .await
                .map_err(run("writing applied entries"))?;
        }
        if !rejected.is_empty() {
            let keys: Vec<&[u8]> = rejected.iter().map(|r| r.key.as_bytes()).collect();
            let stages: Vec<&str> = rejected.iter().map(|r| stage_name(r.stage)).collect();
            let reasons: Vec<&str> = rejected.iter().map(|r| r.reason.as_str()).collect();
            let attempts: Vec<i32> = rejected.iter().map(|r| i32::try_from(r.attempts).unwrap_or(i32::MAX)).collect();
            let last: Vec<i64> = rejected.iter().map(|r| to_i64(r.last_rejected_at)).collect();
            let params: [&(dyn ToSql + Sync); 8] =
                [&id, &keys, &stages, &reasons, &attempts, &last, &rejected_json, &records];
            tx.execute(&tx.prepare_cached(&self.sql.reject).await.map_err(self.err("preparing a statement"))?, &params)
                .await
                .map_err(run("writing rejections"))?;
        }
        if !commit.cleared_rejections.is_empty() {
            tx.execute(
                &tx.prepare_cached(&self.sql.clear_by_keys).await.map_err(self.err("preparing a statement"))?,
                &[&id, &key_bytes(&commit.cleared_rejections)],
            )
            .await
            .map_err(run("clearing rejections"))?;
        }
        if !commit.forgotten.is_empty() {
            tx.execute(
                &tx.prepare_cached(&self.sql.forget).await.map_err(self.err("preparing a statement"))?,
                &[&id, &key_bytes(&commit.forgotten)],
            )
            .await
            .map_err(run("forgetting keys"))?;
        }
        if let Some(cursor) = &cursor {
            tx.execute(
                &tx.prepare_cached(&self.sql.cursor).await.map_err(self.err("preparing a statement"))?,
                &[&id, cursor],
            )
            .await
            .map_err(run("moving the cursor"))?;
        }
        if let Some(algorithm) = commit.fingerprint_algorithm {
            tx.execute(
                &tx.prepare_cached(&self.sql.algorithm).await.map_err(self.err("preparing a statement"))?,
                &[&id, &algorithm.name()],
            )
            .await
            .map_err(run("recording the algorithm"))?;
        }
        Ok(())
    }

    /// Identifies the database this store writes to — its name, the server's port and the
    /// time the server started — so a destination can prove it shares it.
    pub(crate) async fn database_identity(&self) -> Result<String, StateError> {
        let client = self.client().await?;
        let row = client.query_one(DATABASE_IDENTITY, &[]).await.map_err(self.err("identifying the database"))?;
        Ok(row.get(0))
    }

    /// Every sync the schema holds, with its counts and current lease, by sync id.
    ///
    /// # Errors
    /// As [`StateStore::scan`].
    pub async fn list_syncs(&self) -> Result<Vec<SyncSummary>, StateError> {
        let client = self.client().await?;
        let rows = client
            .query(&client.prepare_cached(&self.sql.syncs).await.map_err(self.err("preparing a statement"))?, &[])
            .await
            .map_err(self.err("listing syncs"))?;
        Ok(rows
            .iter()
            .map(|r| {
                let holder: Option<String> = r.get(3);
                let expires: Option<i64> = r.get(4);
                let now: i64 = r.get(5);
                SyncSummary {
                    sync_id: r.get(0),
                    entries: from_i64(r.get(1)),
                    rejected: from_i64(r.get(2)),
                    lease: holder.zip(expires).filter(|(_, e)| *e > now).map(|(h, e)| (h, time_from_ms(e))),
                }
            })
            .collect())
    }

    /// The latest `limit` runs of a sync with their ids and start times, newest first.
    ///
    /// # Errors
    /// As [`StateStore::runs`].
    pub async fn list_runs(&self, sync_id: &str, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        let client = self.client().await?;
        let limit = to_i64(limit as u64);
        let rows = client
            .query(
                &client.prepare_cached(&self.sql.runs).await.map_err(self.err("preparing a statement"))?,
                &[&sync_id, &limit],
            )
            .await
            .map_err(self.err("listing runs"))?;
        rows.iter()
            .map(|r| {
                let report: String = r.get(2);
                Ok(RunRecord {
                    sync_id: sync_id.to_owned(),
                    run_id: from_i64(r.get(0)),
                    started_at_ms: from_i64(r.get(1)),
                    report: from_json("a run report", &report)?,
                })
            })
            .collect()
    }
}

fn key_bytes(keys: &[Key]) -> Vec<&[u8]> {
    keys.iter().map(Key::as_bytes).collect()
}

#[async_trait]
impl StateStore for PostgresStateStore {
    fn name(&self) -> &str {
        &self.name
    }

    async fn acquire_lease(&self, sync_id: &str, holder: &str, ttl: Duration) -> Result<Lease, StateError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err("taking the lease"))?;
        tx.execute(
            &tx.prepare_cached(&self.sql.ensure_sync).await.map_err(self.err("preparing a statement"))?,
            &[&sync_id],
        )
        .await
        .map_err(self.err("registering the sync"))?;
        let row = tx
            .query_one(
                &tx.prepare_cached(&self.sql.lock_sync).await.map_err(self.err("preparing a statement"))?,
                &[&sync_id],
            )
            .await
            .map_err(self.err("taking the lease"))?;
        let (last, current, acquired, expires, now): (i64, Option<String>, Option<i64>, Option<i64>, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        if let (Some(current), Some(acquired), Some(expires)) = (current, acquired, expires)
            && expires > now
        {
            // Dropping the transaction rolls it back.
            return Err(StateError::LeaseHeld {
                sync_id: sync_id.to_owned(),
                holder: current,
                since_secs: from_i64(now - acquired) / 1000,
                expires_in_secs: from_i64(expires - now) / 1000,
            });
        }
        let token = last + 1;
        let expires = now.saturating_add(ttl_ms(ttl));
        tx.execute(
            &tx.prepare_cached(&self.sql.take_lease).await.map_err(self.err("preparing a statement"))?,
            &[&sync_id, &token, &holder, &now, &expires],
        )
        .await
        .map_err(self.err("taking the lease"))?;
        tx.commit().await.map_err(self.err("taking the lease"))?;
        Ok(Lease {
            sync_id: sync_id.to_owned(),
            holder: holder.to_owned(),
            token: from_i64(token),
            acquired_at: time_from_ms(now),
            expires_at: time_from_ms(expires),
        })
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StateError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err("renewing the lease"))?;
        let id = self.fence(&tx, lease).await??;
        let row = tx
            .query_one(
                &tx.prepare_cached(&self.sql.renew).await.map_err(self.err("preparing a statement"))?,
                &[&id, &ttl_ms(ttl)],
            )
            .await
            .map_err(self.err("renewing the lease"))?;
        let expires: i64 = row.get(0);
        tx.commit().await.map_err(self.err("renewing the lease"))?;
        Ok(Lease { expires_at: time_from_ms(expires), ..lease.clone() })
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StateError> {
        let client = self.client().await?;
        client
            .execute(&self.sql.release, &[&lease.sync_id, &to_i64(lease.token)])
            .await
            .map_err(self.err("releasing the lease"))?;
        Ok(())
    }

    async fn meta(&self, sync_id: &str) -> Result<SyncMeta, StateError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &client.prepare_cached(&self.sql.meta).await.map_err(self.err("preparing a statement"))?,
                &[&sync_id],
            )
            .await
            .map_err(self.err("reading the sync's metadata"))?;
        match row {
            Some(row) => meta_from(
                sync_id,
                row.get::<_, Option<&str>>(0),
                row.get::<_, Option<&[u8]>>(1),
                row.get::<_, Option<&str>>(2),
            ),
            None => Ok(SyncMeta::default()),
        }
    }

    async fn scan(&self, sync_id: &str, after: Option<&Key>, limit: usize) -> Result<Vec<SnapshotEntry>, StateError> {
        let (first, next) = (&self.sql.scan_first, &self.sql.scan_after);
        let rows = self.page(first, next, sync_id, after, limit, "scanning the snapshot").await?;
        rows.iter().map(entry_of).collect()
    }

    async fn get(&self, sync_id: &str, keys: &[Key]) -> Result<Vec<Option<SnapshotEntry>>, StateError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &client.prepare_cached(&self.sql.get).await.map_err(self.err("preparing a statement"))?,
                &[&sync_id, &key_bytes(keys)],
            )
            .await
            .map_err(self.err("looking up keys"))?;
        let mut found: HashMap<Key, SnapshotEntry> = HashMap::with_capacity(rows.len());
        for row in &rows {
            let entry = entry_of(row)?;
            found.insert(entry.key.clone(), entry);
        }
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }

    async fn rejected(
        &self,
        sync_id: &str,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<RejectedEntry>, StateError> {
        let (first, next) = (&self.sql.rejected_first, &self.sql.rejected_after);
        let rows = self.page(first, next, sync_id, after, limit, "listing rejected keys").await?;
        rows.iter().map(|r| rejected_from(sync_id, r.get(0), r.get(1))).collect()
    }

    async fn commit(&self, lease: &Lease, commit: StateCommit) -> Result<(), StateError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err("committing state"))?;
        match self.commit_in(&tx, lease, commit, &HashSet::new()).await {
            Ok(()) => {}
            Err(CommitInError::State(e)) => return Err(e),
            Err(CommitInError::SnapshotConflict) => {
                return Err(StateError::Other { message: "a snapshot copy without copied keys".into(), source: None });
            }
        }
        tx.commit().await.map_err(self.err("committing state"))
    }

    async fn record_run(&self, lease: &Lease, report: &SyncReport) -> Result<(), StateError> {
        let text = to_json("a run report", report)?;
        let status = to_json("a run status", &report.status)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err("recording a run"))?;
        let id = self.fence(&tx, lease).await??;
        let (run_id, started) = (to_i64(report.run_id), to_i64(report.started_at_ms));
        tx.execute(
            &tx.prepare_cached(&self.sql.run).await.map_err(self.err("preparing a statement"))?,
            &[&id, &run_id, &started, &status, &text],
        )
        .await
        .map_err(self.err("recording a run"))?;
        tx.execute(
            &tx.prepare_cached(&self.sql.prune_runs).await.map_err(self.err("preparing a statement"))?,
            &[&id, &to_i64(self.run_retention as u64)],
        )
        .await
        .map_err(self.err("pruning old runs"))?;
        tx.commit().await.map_err(self.err("recording a run"))
    }

    async fn runs(&self, sync_id: &str, limit: usize) -> Result<Vec<SyncReport>, StateError> {
        Ok(self.list_runs(sync_id, limit).await?.into_iter().map(|r| r.report).collect())
    }
}

/// Operation codes, fingerprints and versions of pending changes, as bound arrays.
type PendingArrays<'a> = (Vec<Option<i16>>, Vec<Option<&'a [u8]>>, Vec<Option<i64>>);

/// Splits pending-change columns into the three arrays a statement binds.
/// Why [`PostgresStateStore::commit_in`] failed; either way the transaction must be rolled
/// back.
#[derive(Debug)]
pub(crate) enum CommitInError {
    /// The state could not be committed.
    State(StateError),
    /// A key given as new has a snapshot row: commit again without copying.
    SnapshotConflict,
}

impl From<StateError> for CommitInError {
    fn from(e: StateError) -> Self {
        CommitInError::State(e)
    }
}

/// The binary COPY stream of `entries` as snapshot rows of sync `id`, in the column order of
/// `copy_snapshot`; `None` when a key or fingerprint is beyond what a field holds.
fn snapshot_copy(id: i64, entries: &[SnapshotEntry]) -> Option<bytes::Bytes> {
    let mut rows = CopyRows::with_capacity(entries.len() * 96);
    for e in entries {
        rows.row(7);
        rows.int8(id);
        if !rows.bytea(e.key.as_bytes()) {
            return None;
        }
        match e.fingerprint {
            Some(f) => {
                rows.bytea(&f.to_bytes());
            }
            None => rows.null(),
        }
        rows.int8(to_i64(e.version));
        let (op, fingerprint, version) = pending_columns(e.pending.as_ref());
        match op {
            Some(op) => rows.int2(op),
            None => rows.null(),
        }
        match fingerprint {
            Some(f) => {
                rows.bytea(&f);
            }
            None => rows.null(),
        }
        match version {
            Some(v) => rows.int8(v),
            None => rows.null(),
        }
    }
    Some(rows.finish())
}

fn split(cols: &[super::PendingColumns]) -> PendingArrays<'_> {
    let ops = cols.iter().map(|c| c.0).collect();
    let fps = cols.iter().map(|c| c.1.as_ref().map(|b| &b[..])).collect();
    let versions = cols.iter().map(|c| c.2).collect();
    (ops, fps, versions)
}
