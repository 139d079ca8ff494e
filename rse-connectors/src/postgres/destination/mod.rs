//! `PostgresDestination`: upserts and deletes by key into a PostgreSQL table, one
//! transaction per batch, optionally exactly-once.
//!
//! # How a batch is written
//! One transaction per batch, with at most three statements, each prepared once per
//! connection:
//!
//! - **Inserts** — changes whose key is new to the sync — go by a binary
//!   `COPY t (…) FROM STDIN (FORMAT binary)` when there are at least [`COPY_MIN_ROWS`](crate::postgres::COPY_MIN_ROWS) of
//!   them: the server's bulk insert, about twice the rows per second of the upsert. A key new
//!   to the sync can still be in the table (a row this sync did not write): the COPY then
//!   fails with a unique violation, the transaction is rolled back, the batch is written
//!   again by the upsert alone, and this destination sends its inserts by upsert from then
//!   on (as after any refusal the upsert would not meet). The COPY is used only for a plain
//!   table (no rules, no row security) whose columns have exactly the types in the table
//!   below, as the destination creates them; turn it off with
//!   [`PostgresDestinationOptions::with_copy_inserts`].
//! - **Updates** (and inserts not copied) are one statement,
//!   `INSERT INTO t (…) SELECT … FROM unnest($1::bigint[], $2::text[], …) ON CONFLICT (key)
//!   DO UPDATE SET …`, with one array parameter per column, so a batch of 5,000 rows is one
//!   round trip.
//! - **Deletes** are one `DELETE … USING unnest(…)`.
//!
//! Identifiers are always quoted; values are always bound.
//!
//! COPY into a temporary table followed by a merge was measured on a million rows and is
//! slower than the upsert: the COPY took 2.8 s and the `INSERT … SELECT … ON CONFLICT` merge
//! 8.8 s, against 8.65 s for a whole sync through `unnest` (the array binding is binary
//! already, and the merge is the same upsert). See the README's figures.
//!
//! # Re-sent changes
//! An upsert of the same change again writes the same values, so a retried batch is
//! harmless. With the version guard ([`PostgresDestinationOptions::with_version_guard`])
//! each row also carries `_rse_version`, the change's version, and an upsert or delete only
//! touches a row whose stored version is not newer: a change re-sent late — by a runner
//! that lost its lease, after a newer change already landed — cannot roll a row back.
//! Versions count per sync and per state store, so the guard is off by default: a sync
//! whose state was reset (or a second sync writing the same table) starts again at version
//! 0 and would be held back by it. Turn it on for a table one sync owns.
//!
//! # Exactly-once mode
//! With [`PostgresDestination::with_state_store`] the destination commits the sync's state
//! — the fingerprints and versions of the changes it applied, and the refusals — **in the
//! same transaction as the rows**, into a [`PostgresStateStore`](crate::postgres::PostgresStateStore) in the same database (the
//! first write checks that it is; the sync must be built with that store). A crash can then
//! never leave rows without their state or state without its rows, so nothing is sent
//! twice and the runner records no intents before a batch (see
//! [`TransactionalState`]). The lease is checked inside the
//! transaction: a runner that lost its lease cannot write rows either. The snapshot rows of
//! inserts go by COPY too, as the rows do: a key new to the sync has no snapshot row, but
//! for a deleted key that comes back (its tombstone is one), where the COPY fails and the
//! batch is committed again with its state upserted, as it is from then on.
//!
//! # Idempotency ledger
//! When the state lives elsewhere (a SQLite file, another server),
//! [`PostgresDestinationOptions::with_idempotency_ledger`] keeps, in the destination's
//! database, a table (default `_rse_applied`) of `(sync_id, key) → version, fingerprint,
//! idempotency key`, updated in the same transaction as the rows. A change whose idempotency
//! key is already recorded for its key is answered `Applied` without touching the row: after
//! a lost acknowledgement, the re-sent batch is recognised and not applied twice, even when
//! someone changed the row in between. (Only the idempotency key is compared, not the
//! version: a sync whose state was reset sends versions from 0 again, and must not be
//! mistaken for a stale writer.)
//!
//! # Types
//! | rse | PostgreSQL | bound as |
//! |---|---|---|
//! | bool | `boolean` | `bool[]` |
//! | int | `bigint` | `int8[]` |
//! | float | `double precision` | `float8[]` |
//! | decimal | `numeric` | `text[]`, cast |
//! | string | `text` | `text[]` |
//! | bytes | `bytea` | `bytea[]` |
//! | date | `date` | `int4[]` days, `'1970-01-01'::date + n` |
//! | timestamp | `timestamptz` | `timestamptz[]` in the binary form (exact to the microsecond at any date) |
//! | json, list | `jsonb` | `text[]`, cast |
//!
//! Inside a list, a value JSON cannot hold is the text PostgreSQL gives it in its own column
//! type, so `(list->>i)::float8` or `::bytea` gives it back: NaN and ±infinity are the
//! strings `"NaN"`, `"Infinity"`, `"-Infinity"`, bytes `"\\x"` followed by lower-case hex.
//!
//! The COPY writes each value in the binary form of the column type in the second column.
//!
//! # Reading back
//! The destination reads its table back for reconciliation
//! ([`Destination::read_back`], used by `SyncJob::verify`): every type of the table above
//! reads back as the exact value written, so it fingerprints as it did when sent. See
//! `read_back.rs` for how each column is read and the order keys are listed in.

mod bind;
mod encode;
mod ledger;
mod options;
mod plan;
mod read_back;
mod superseded;
mod write;

use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rse_core::{
    ChangeBatch, CommitFor, CommittedWriteError, Destination, DestinationCapabilities, DestinationError, Lease, Op,
    ReadBack, Schema, StateStore, TransactionalState, WriteOutcome,
};

pub use options::{DEFAULT_WRITE_TIMEOUT, PostgresDestinationOptions};
pub(crate) use write::{CommitWithRows, WithRows};

use self::plan::{Statements, TableColumns};
use crate::postgres::classify::{destination_error, destination_unconnected};
use crate::postgres::connect::{Connection, build_pool};
use crate::postgres::sql::{DATABASE_IDENTITY, qualified};

/// Upserts and deletes by key into one PostgreSQL table; see the module docs.
pub struct PostgresDestination {
    name: String,
    connection: Connection,
    options: PostgresDestinationOptions,
    /// Statements per schema, built (and the table created) on first use of the schema.
    statements: Mutex<Vec<(Arc<Schema>, Arc<Statements>)>>,
    ready: tokio::sync::Mutex<bool>,
    /// The table's columns, read when it is first prepared.
    columns: Mutex<TableColumns>,
    /// A COPY met a key already in the table: inserts go by upsert from then on.
    copy_conflicted: AtomicBool,
    /// Exactly-once: what each batch's transaction commits with its rows (the sync's state).
    with_rows: Option<Box<dyn CommitWithRows>>,
}

impl fmt::Debug for PostgresDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresDestination")
            .field("name", &self.name)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl PostgresDestination {
    /// A destination writing through a pool of connections to `url`
    /// (`postgres://user:password@host:port/database?sslmode=verify-full`, or a
    /// `key=value` string), under the URL's TLS parameters (`sslmode`, `sslrootcert`,
    /// `sslcert`, `sslkey`; see [`SslMode`](crate::postgres::SslMode)) and the options'
    /// [`PostgresConnectOptions`](crate::postgres::PostgresConnectOptions). Connects lazily: call [`check`](Destination::check) to
    /// verify the server, its certificate and the credentials.
    ///
    /// # Errors
    /// [`DestinationError::Fatal`] when the options name no table, the URL does not parse,
    /// names an unknown `sslmode`, or a certificate file cannot be read or used (the URL
    /// itself is not repeated: it may hold a password).
    pub fn new(url: &str, options: PostgresDestinationOptions) -> Result<Self, DestinationError> {
        let options = options.checked().map_err(|e| DestinationError::fatal(format!("postgres destination: {e}")))?;
        let connection = build_pool(url, &options.connect, options.pool_size).map_err(|e| DestinationError::Fatal {
            message: format!("postgres destination: {}", e.message),
            source: e.source,
        })?;
        let name = format!("postgres:{}.{}", options.schema, options.table);
        Ok(Self::assemble(name, connection, options))
    }

    /// [`new`](Self::new), then [`check`](Destination::check): connects now, so a wrong
    /// host, certificate or password fails here rather than at the first write.
    ///
    /// # Errors
    /// As [`new`](Self::new) and [`check`](Destination::check).
    pub async fn connect(url: &str, options: PostgresDestinationOptions) -> Result<Self, DestinationError> {
        let destination = Self::new(url, options)?;
        destination.check().await?;
        Ok(destination)
    }

    /// A destination writing through the host's own pool (`deadpool-postgres` 0.14). The
    /// pool has its own connection settings, so the options' connect options do not apply,
    /// and at most the pool's size (and the options' pool size) of writes run at once. It
    /// connects once, to learn the server's address for messages. A write past its timeout
    /// closes the pool's idle connections, as with a pool of its own.
    ///
    /// # Errors
    /// [`DestinationError::Fatal`] when the options name no table; otherwise as
    /// [`check`](Destination::check).
    pub async fn from_pool(
        pool: deadpool_postgres::Pool,
        options: PostgresDestinationOptions,
    ) -> Result<Self, DestinationError> {
        let mut options =
            options.checked().map_err(|e| DestinationError::fatal(format!("postgres destination: {e}")))?;
        options.pool_size = options.pool_size.min(pool.status().max_size).max(1);
        let name = format!("postgres:{}.{}", options.schema, options.table);
        let connection = Connection::adopt(pool).await.map_err(|e| destination_unconnected(&name, e))?;
        Ok(Self::assemble(name, connection, options))
    }

    fn assemble(name: String, connection: Connection, options: PostgresDestinationOptions) -> Self {
        Self {
            name,
            connection,
            options,
            statements: Mutex::new(Vec::new()),
            ready: tokio::sync::Mutex::new(false),
            columns: Mutex::new(TableColumns::default()),
            copy_conflicted: AtomicBool::new(false),
            with_rows: None,
        }
    }

    /// Commits `with` in each batch's transaction, after the rows (exactly-once).
    pub(crate) fn committing_with_rows(mut self, with: Box<dyn CommitWithRows>) -> Self {
        self.with_rows = Some(with);
        self
    }

    /// Whether the options let inserts go by COPY.
    pub(crate) fn copies_inserts(&self) -> bool {
        self.options.copy_inserts
    }

    /// Identifies the database this destination writes to — its name, the server's port
    /// and the time the server started.
    pub(crate) async fn database_identity(&self) -> Result<String, DestinationError> {
        let client = self.client().await?;
        let row =
            client.query_one(DATABASE_IDENTITY, &[]).await.map_err(|e| self.classify(e, "identifying the database"))?;
        Ok(row.get(0))
    }

    fn table(&self) -> String {
        qualified(&self.options.schema, &self.options.table)
    }

    fn ledger_table(&self) -> String {
        qualified(&self.options.schema, &self.options.ledger_table)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, DestinationError> {
        self.connection
            .pool
            .get()
            .await
            .map_err(|e| destination_unconnected(&self.name, self.connection.unconnected(e)))
    }

    /// Runs one write under the write timeout. Past it the write fails as `Transient`, and
    /// the idle connections are closed: the one the write held went back to the pool when
    /// the write was dropped, mid-transaction, perhaps on a socket that no longer answers.
    async fn within_write_timeout<T>(
        &self,
        write: impl std::future::Future<Output = Result<T, CommittedWriteError>>,
    ) -> Result<T, CommittedWriteError> {
        match tokio::time::timeout(self.options.write_timeout, write).await {
            Ok(result) => result,
            Err(_) => {
                self.connection.pool.retain(|_, _| false);
                Err(DestinationError::transient(format!(
                    "{}: the write did not finish within {:?} (the server or the network stopped answering, or a \
                     lock held elsewhere); it will be retried. Raise `with_write_timeout` if batches are slow",
                    self.name, self.options.write_timeout
                ))
                .into())
            }
        }
    }

    /// Maps a driver error onto the runner's classes (see `classify.rs`).
    fn classify(&self, e: tokio_postgres::Error, doing: &str) -> DestinationError {
        destination_error(&self.name, doing, e)
    }
}

#[async_trait]
impl Destination for PostgresDestination {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> DestinationCapabilities {
        DestinationCapabilities::new([Op::Insert, Op::Update, Op::Delete])
            .with_max_batch_rows(self.options.max_batch_rows)
            .with_max_batch_bytes(64 << 20)
            .with_max_concurrency(self.options.pool_size)
            .with_idempotency_keys(self.options.ledger)
            .with_transactional(true)
    }

    async fn check(&self) -> Result<(), DestinationError> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await.map_err(|e| self.classify(e, "checking the connection"))?;
        drop(client);
        if let Some(with) = &self.with_rows {
            // Exactly-once: the state store must be in this database.
            with.check(self).await.map_err(|e| match e {
                CommittedWriteError::Destination(e) => e,
                other => DestinationError::fatal(format!("{}: {other}", self.name)),
            })?;
        }
        Ok(())
    }

    async fn write(&self, batch: &ChangeBatch) -> Result<WriteOutcome, DestinationError> {
        self.within_write_timeout(self.apply(batch, None)).await.map_err(|e| match e {
            CommittedWriteError::Destination(e) => e,
            other => DestinationError::fatal(other.to_string()),
        })
    }

    fn transactional_state(&self) -> Option<&dyn TransactionalState> {
        self.with_rows.as_ref().map(|_| self as &dyn TransactionalState)
    }

    fn read_back(&self) -> Option<&dyn ReadBack> {
        Some(self)
    }
}

/// Offered when something commits with the rows (exactly-once, see
/// [`with_state_store`](PostgresDestination::with_state_store)).
#[async_trait]
impl TransactionalState for PostgresDestination {
    fn state_store_name(&self) -> &str {
        self.with_rows.as_ref().map_or("", |w| w.store_name())
    }

    fn state_store(&self) -> Option<Arc<dyn StateStore>> {
        self.with_rows.as_ref().map(|w| w.store())
    }

    async fn write_committing(
        &self,
        batch: &ChangeBatch,
        lease: &Lease,
        commit_for: &CommitFor<'_>,
    ) -> Result<WriteOutcome, CommittedWriteError> {
        self.within_write_timeout(self.apply(batch, Some((lease, commit_for)))).await
    }
}
