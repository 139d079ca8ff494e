//! `PostgresStateStore`: sync state in PostgreSQL tables of a configurable schema.
//!
//! Split by role: the tables and their migrations (`schema.rs`), the statements
//! (`statements.rs`), the lease and its fence (`lease.rs`), reads of the snapshot and the
//! rejected set (`read.rs`), commits (`commit.rs`, including [`PostgresStateStore::commit_in`]
//! for a destination's transaction), the run history (`runs.rs`), operators' pauses
//! (`pause.rs`) and the request schedule shared by a partitioned sync's runners
//! (`quota.rs`, [`SharedQuota`](rse_core::SharedQuota)).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rse_core::state::{Lease, Pause, RejectedEntry, SnapshotEntry, StateCommit, StateStore, SyncMeta};
use rse_core::{Key, StateError, SyncReport};

use crate::postgres::PostgresConnectOptions;
use crate::postgres::classify::{state_error, state_unconnected};
use crate::postgres::connect::{Connection, build_pool};
use crate::postgres::sql::DATABASE_IDENTITY;

mod commit;
mod lease;
mod options;
mod pause;
mod quota;
mod read;
mod runs;
mod schema;
mod statements;

pub(crate) use commit::CommitInError;
pub use options::{DEFAULT_STATE_SCHEMA, PostgresStateStoreOptions};
use statements::Sql;

/// The state of any number of syncs in the tables of one PostgreSQL schema.
///
/// The store creates the schema (when missing) and its tables, and applies its own
/// versioned migrations when it connects; two processes connecting together migrate once
/// (an advisory lock serialises them). A commit is one transaction; leases compare expiry
/// on the server's clock.
///
/// ```no_run
/// # async fn demo() -> Result<(), rse_core::StateError> {
/// use rse_connectors::state::{PostgresStateStore, PostgresStateStoreOptions};
/// let state = PostgresStateStore::connect("postgres://rse@db/warehouse", "rse_state").await?;
/// let kept_short = PostgresStateStore::connect(
///     "postgres://rse@db/warehouse",
///     PostgresStateStoreOptions::new("rse_state").with_run_retention(10),
/// )
/// .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStateStore {
    connection: Connection,
    name: String,
    schema: String,
    sql: Arc<Sql>,
    run_retention: usize,
}

impl std::fmt::Debug for PostgresStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStateStore").field("name", &self.name).finish_non_exhaustive()
    }
}

type Client = deadpool_postgres::Object;

impl PostgresStateStore {
    /// Connects to `url` (`postgres://user@host:port/db?sslmode=verify-full`), creates the
    /// options' schema and the state tables when missing, and applies the migrations this
    /// rse knows. The URL's TLS parameters are read as [`SslMode`](crate::postgres::SslMode)
    /// says. `options` may be a schema name alone (`"rse_state"`), or
    /// [`PostgresStateStoreOptions`] with the run retention, the pool size and the
    /// [`PostgresConnectOptions`] (TLS and timeouts).
    ///
    /// # Errors
    /// [`StateError::Unavailable`] when the server cannot be reached or does not answer
    /// within the connect timeout;
    /// [`StateError::Other`] when the URL or its TLS settings cannot work, or the server's
    /// certificate is not trusted (the message says what to change), or the role lacks a
    /// privilege (the message says which to grant); [`StateError::Incompatible`] when the
    /// schema was migrated by a newer rse.
    pub async fn connect(url: &str, options: impl Into<PostgresStateStoreOptions>) -> Result<Self, StateError> {
        let options = Self::checked(options.into())?;
        let connection = build_pool(url, &options.connect, options.pool_size).map_err(|e| StateError::Other {
            message: format!("the state store's PostgreSQL connection: {}", e.message),
            source: e.source,
        })?;
        Self::open(connection, options).await
    }

    /// [`connect`](Self::connect) with the tables in `schema`, under `options`.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn connect_with(url: &str, schema: &str, options: PostgresConnectOptions) -> Result<Self, StateError> {
        Self::connect(url, PostgresStateStoreOptions::new(schema).with_connect_options(options)).await
    }

    /// A store on the host's own pool: [`connect`](Self::connect) without building a pool.
    /// The options' pool size and connect options do not apply (the pool has its own); it
    /// connects once to learn the server's address for messages, then migrates.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn from_pool(
        pool: deadpool_postgres::Pool,
        options: impl Into<PostgresStateStoreOptions>,
    ) -> Result<Self, StateError> {
        let options = Self::checked(options.into())?;
        let connection = Connection::adopt(pool)
            .await
            .map_err(|e| state_unconnected("the state store's PostgreSQL connection pool", &options.schema, e))?;
        Self::open(connection, options).await
    }

    fn checked(options: PostgresStateStoreOptions) -> Result<PostgresStateStoreOptions, StateError> {
        options
            .checked()
            .map_err(|e| StateError::Other { message: format!("the PostgreSQL state store: {e}"), source: None })
    }

    /// The store on `connection`, its schema migrated.
    async fn open(connection: Connection, options: PostgresStateStoreOptions) -> Result<Self, StateError> {
        let schema = options.schema;
        let name = format!("postgres:{}/{}/{schema}", connection.hosts, connection.database);
        let store =
            Self { connection, sql: Arc::new(Sql::new(&schema)), schema, name, run_retention: options.run_retention };
        store.migrate().await?;
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

    /// Identifies the database this store writes to — its name, the server's port and the
    /// time the server started — so a destination can prove it shares it.
    pub(crate) async fn database_identity(&self) -> Result<String, StateError> {
        let client = self.client().await?;
        let row = client.query_one(DATABASE_IDENTITY, &[]).await.map_err(self.err("identifying the database"))?;
        Ok(row.get(0))
    }

    fn err(&self, doing: &str) -> impl FnOnce(tokio_postgres::Error) -> StateError + '_ {
        let doing = doing.to_owned();
        move |e| state_error(&self.name, &self.schema, &doing, e)
    }

    async fn client(&self) -> Result<Client, StateError> {
        self.connection
            .pool
            .get()
            .await
            .map_err(|e| state_unconnected(&self.name, &self.schema, self.connection.unconnected(e)))
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
        self.take_lease(sync_id, holder, ttl).await
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StateError> {
        self.renew(lease, ttl).await
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StateError> {
        self.release(lease).await
    }

    async fn meta(&self, sync_id: &str) -> Result<SyncMeta, StateError> {
        self.read_meta(sync_id).await
    }

    async fn scan(&self, sync_id: &str, after: Option<&Key>, limit: usize) -> Result<Vec<SnapshotEntry>, StateError> {
        self.scan_page(sync_id, after, limit).await
    }

    async fn get(&self, sync_id: &str, keys: &[Key]) -> Result<Vec<Option<SnapshotEntry>>, StateError> {
        self.get_entries(sync_id, keys).await
    }

    async fn rejected(
        &self,
        sync_id: &str,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<RejectedEntry>, StateError> {
        self.rejected_page(sync_id, after, limit).await
    }

    async fn commit(&self, lease: &Lease, commit: StateCommit) -> Result<(), StateError> {
        self.commit_own(lease, commit).await
    }

    async fn record_run(&self, lease: &Lease, report: &SyncReport) -> Result<(), StateError> {
        self.record(lease, report).await
    }

    async fn runs(&self, sync_id: &str, limit: usize) -> Result<Vec<SyncReport>, StateError> {
        Ok(self.list_runs(sync_id, limit).await?.into_iter().map(|r| r.report).collect())
    }

    async fn pause(&self, sync_id: &str, pause: &Pause) -> Result<Pause, StateError> {
        self.put_pause(sync_id, pause).await
    }

    async fn resume(&self, sync_id: &str) -> Result<Option<Pause>, StateError> {
        self.lift_pause(sync_id).await
    }

    async fn paused(&self, sync_id: &str) -> Result<Option<Pause>, StateError> {
        self.read_pause(sync_id).await
    }
}
