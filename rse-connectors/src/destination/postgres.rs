//! `PostgresDestination`: upserts and deletes by key into a PostgreSQL table, one
//! transaction per batch, optionally exactly-once.
//!
//! # How a batch is written
//! One transaction per batch, with at most three statements, each prepared once per
//! connection:
//!
//! - **Inserts** — changes whose key is new to the sync — go by a binary
//!   `COPY t (…) FROM STDIN (FORMAT binary)` when there are at least [`COPY_MIN_ROWS`] of
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
//! same transaction as the rows**, into a [`PostgresStateStore`] in the same database (the
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
//! | timestamp | `timestamptz` | `int8[]` micros, `'epoch' + n µs` (exact) |
//! | json, list | `jsonb` | `text[]`, cast |
//!
//! Inside a list, a value JSON cannot hold is the text PostgreSQL gives it in its own column
//! type, so `(list->>i)::float8` or `::bytea` gives it back: NaN and ±infinity are the
//! strings `"NaN"`, `"Infinity"`, `"-Infinity"`, bytes `"\\x"` followed by lower-case hex.
//!
//! The COPY writes each value in the binary form of the column type in the second column.

pub(crate) mod copy;

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::PoolError;
use rse_core::{
    Change, ChangeBatch, ChangeOutcome, CommitFor, CommittedWriteError, DataType, Destination, DestinationCapabilities,
    DestinationError, Lease, Op, Schema, StateError, StateStore, TransactionalState, Value, WriteOutcome,
};
use tracing::debug;

use self::copy::{CopyRows, CopyType, column_takes, copy_in};

use crate::postgres::PostgresConnectOptions;
use crate::postgres::connect::{Connection, Unconnected, build_pool};
use crate::state::PostgresStateStore;
use crate::state::postgres::{CommitInError, DATABASE_IDENTITY};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

/// Options of a [`PostgresDestination`].
#[derive(Debug, Clone)]
pub struct PostgresDestinationOptions {
    schema: String,
    table: String,
    create_table: bool,
    version_guard: bool,
    ledger: bool,
    ledger_table: String,
    pool_size: usize,
    max_batch_rows: usize,
    copy_inserts: bool,
    connect: PostgresConnectOptions,
    write_timeout: Duration,
}

/// How long one write may take by default before it fails as
/// [`DestinationError::Transient`].
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(120);

/// A batch's inserts go by COPY when there are at least this many: below it, the COPY's
/// extra statement costs more than the upsert saves.
pub const COPY_MIN_ROWS: usize = 64;

impl PostgresDestinationOptions {
    /// Writes into `table` of schema `public`.
    pub fn new(table: impl Into<String>) -> Self {
        Self {
            schema: "public".into(),
            table: table.into(),
            create_table: false,
            version_guard: false,
            ledger: false,
            ledger_table: "_rse_applied".into(),
            pool_size: 4,
            max_batch_rows: 5_000,
            copy_inserts: true,
            connect: PostgresConnectOptions::new(),
            write_timeout: DEFAULT_WRITE_TIMEOUT,
        }
    }

    /// How to connect: TLS (roots, client certificate, the mode over the URL's
    /// `sslmode`), the connect timeout and the wait for a free connection. See
    /// [`PostgresConnectOptions`] and [`SslMode`](crate::postgres::SslMode).
    pub fn with_connect_options(mut self, options: PostgresConnectOptions) -> Self {
        self.connect = options;
        self
    }

    /// How long one write (a batch's transaction, from taking a connection to the commit)
    /// may take, default [`DEFAULT_WRITE_TIMEOUT`]. A write past it — a server or link that
    /// stopped answering, a lock held elsewhere — fails as [`DestinationError::Transient`]
    /// and the runner retries it; its transaction was not committed, or (if the deadline
    /// fell during the commit) was, which the retry's upsert makes harmless. The pool's idle
    /// connections are then closed, so the retry does not land on a connection still stuck.
    pub fn with_write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// The PostgreSQL schema (namespace) of the table, default `public`.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Creates the table (and the schema) from the batch's schema on first write when it
    /// does not exist: key columns as the primary key, plus `_rse_version` under the guard.
    pub fn with_create_table(mut self, create: bool) -> Self {
        self.create_table = create;
        self
    }

    /// Guards rows with an `_rse_version` column so a late, older change never overwrites
    /// a newer one (default off; see the module docs for why). The table needs the column:
    /// the destination adds it when it creates the table.
    pub fn with_version_guard(mut self, guard: bool) -> Self {
        self.version_guard = guard;
        self
    }

    /// Records each applied change's idempotency key in the same transaction as its row, and
    /// answers a change already recorded without applying it again (see the module docs).
    pub fn with_idempotency_ledger(mut self, ledger: bool) -> Self {
        self.ledger = ledger;
        self
    }

    /// The name of the ledger table (default `_rse_applied`, in the same schema).
    pub fn with_ledger_table(mut self, table: impl Into<String>) -> Self {
        self.ledger_table = table.into();
        self
    }

    /// Connections in the pool, and so writes at once (default 4).
    pub fn with_pool_size(mut self, n: usize) -> Self {
        self.pool_size = n.max(1);
        self
    }

    /// The most changes per write (default 5,000).
    pub fn with_max_batch_rows(mut self, rows: usize) -> Self {
        self.max_batch_rows = rows.max(1);
        self
    }

    /// Writes a batch's inserts (keys new to the sync) by binary COPY when the table allows
    /// it (default on; see the module docs). Off, every row goes by the upsert.
    pub fn with_copy_inserts(mut self, copy: bool) -> Self {
        self.copy_inserts = copy;
        self
    }

    fn guard(&self) -> bool {
        self.version_guard
    }
}

/// The statements for one schema.
#[derive(Debug)]
struct Statements {
    upsert: String,
    delete: String,
    /// Under the version guard: the positions (`$last`, int8) of the changes whose row holds
    /// a newer version than theirs, given their keys and versions as the delete takes them.
    superseded: Option<String>,
    /// The PostgreSQL array type each field is bound as.
    binds: Vec<Bind>,
    key_binds: Vec<(usize, Bind)>,
    /// The COPY of inserts, when the table takes it.
    copy: Option<CopyPlan>,
}

/// The COPY statement for one schema and the type each field is written as.
#[derive(Debug)]
struct CopyPlan {
    sql: String,
    types: Vec<CopyType>,
}

/// What the destination read of its table: whether it is a plain table (no rules), and the
/// type of each column, by name (`format_type`'s spelling).
#[derive(Debug, Default)]
struct TableColumns {
    plain: bool,
    types: Vec<(String, String)>,
}

impl TableColumns {
    fn type_of(&self, column: &str) -> Option<&str> {
        self.types.iter().find(|(name, _)| name == column).map(|(_, t)| t.as_str())
    }
}

/// A batch as it is written: the inserts copied, the columns of the upsert and the delete.
struct Encoded<'a> {
    copied: Option<CopyRows>,
    upsert: Vec<Column<'a>>,
    delete: Vec<Column<'a>>,
}

/// How one attempt at a batch ended.
enum Attempt {
    Written(WriteOutcome),
    /// The server refused the COPY where the upsert would do (a key already in the table,
    /// or a table the COPY cannot write, SQLSTATE given); nothing was committed.
    CopyRefused(String),
    /// The COPY of snapshot rows met a key the snapshot had; nothing was committed.
    StateCopyConflict,
}

/// Which parts of a write may go by COPY.
#[derive(Debug, Clone, Copy)]
struct CopyChoice {
    /// The rows of inserts.
    rows: bool,
    /// Exactly-once: the snapshot rows of inserts.
    state: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bind {
    Bool,
    Int,
    Float,
    Text,
    Bytes,
    Date,
    Timestamp,
}

impl Bind {
    fn of(t: &DataType) -> Bind {
        match t {
            DataType::Bool => Bind::Bool,
            DataType::Int => Bind::Int,
            DataType::Float => Bind::Float,
            DataType::Bytes => Bind::Bytes,
            DataType::Date => Bind::Date,
            DataType::Timestamp => Bind::Timestamp,
            _ => Bind::Text,
        }
    }

    fn array_type(self) -> &'static str {
        match self {
            Bind::Bool => "bool[]",
            Bind::Int | Bind::Timestamp => "int8[]",
            Bind::Float => "float8[]",
            Bind::Text => "text[]",
            Bind::Bytes => "bytea[]",
            Bind::Date => "int4[]",
        }
    }
}

/// The column type the destination creates for a field, spelled as `format_type` prints
/// it, so the COPY's check of an existing table compares like with like.
fn pg_type(t: &DataType) -> &'static str {
    match t {
        DataType::Bool => "boolean",
        DataType::Int => "bigint",
        DataType::Float => "double precision",
        DataType::Decimal => "numeric",
        DataType::String => "text",
        DataType::Bytes => "bytea",
        DataType::Date => "date",
        DataType::Timestamp => "timestamp with time zone",
        _ => "jsonb",
    }
}

/// `"name"` with embedded quotes doubled.
fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// The SQL expression turning the unnested column `col` into the field's type.
fn convert(col: &str, t: &DataType) -> String {
    match t {
        DataType::Decimal => format!("{col}::numeric"),
        DataType::Json | DataType::List(_) => format!("{col}::jsonb"),
        DataType::Date => format!("('1970-01-01'::date + {col})"),
        DataType::Timestamp => format!("('1970-01-01 00:00:00+00'::timestamptz + {col} * interval '1 microsecond')"),
        _ => col.to_owned(),
    }
}

/// One column of a batch, as the array bound for it. Text and bytes borrow from the
/// batch's records where they can: a batch is bound without copying its strings.
enum Column<'a> {
    Bool(Vec<Option<bool>>),
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Text(Vec<Option<Cow<'a, str>>>),
    Bytes(Vec<Option<Cow<'a, [u8]>>>),
    Date(Vec<Option<i32>>),
}

impl<'a> Column<'a> {
    fn new(bind: Bind, n: usize) -> Column<'a> {
        match bind {
            Bind::Bool => Column::Bool(Vec::with_capacity(n)),
            Bind::Int | Bind::Timestamp => Column::Int(Vec::with_capacity(n)),
            Bind::Float => Column::Float(Vec::with_capacity(n)),
            Bind::Text => Column::Text(Vec::with_capacity(n)),
            Bind::Bytes => Column::Bytes(Vec::with_capacity(n)),
            Bind::Date => Column::Date(Vec::with_capacity(n)),
        }
    }

    /// Appends `value`, borrowing its text; `false` when it does not fit the column's type.
    fn push(&mut self, value: &'a Value) -> bool {
        match (self, value) {
            (Column::Text(c), Value::String(s)) => c.push(Some(Cow::Borrowed(s.as_str()))),
            (Column::Text(c), Value::Decimal(d)) => c.push(Some(Cow::Borrowed(d.as_str()))),
            (Column::Bytes(c), Value::Bytes(b)) => c.push(Some(Cow::Borrowed(b.as_ref()))),
            (column, value) => return column.push_owned(value),
        }
        true
    }

    /// Appends `value`, copying its text; `false` when it does not fit the column's type.
    fn push_owned(&mut self, value: &Value) -> bool {
        match (self, value) {
            (Column::Bool(c), Value::Null) => c.push(None),
            (Column::Int(c), Value::Null) => c.push(None),
            (Column::Float(c), Value::Null) => c.push(None),
            (Column::Text(c), Value::Null) => c.push(None),
            (Column::Bytes(c), Value::Null) => c.push(None),
            (Column::Date(c), Value::Null) => c.push(None),
            (Column::Bool(c), Value::Bool(b)) => c.push(Some(*b)),
            (Column::Int(c), Value::Int(i) | Value::Timestamp(i)) => c.push(Some(*i)),
            (Column::Float(c), Value::Float(f)) => c.push(Some(*f)),
            (Column::Text(c), Value::String(s)) => c.push(Some(Cow::Owned(s.clone()))),
            (Column::Text(c), Value::Decimal(d)) => c.push(Some(Cow::Owned(d.as_str().to_owned()))),
            (Column::Text(c), Value::Json(j)) => c.push(Some(Cow::Owned(j.to_string()))),
            (Column::Text(c), Value::List(items)) => c.push(Some(Cow::Owned(list_json(items).to_string()))),
            (Column::Bytes(c), Value::Bytes(b)) => c.push(Some(Cow::Owned(b.to_vec()))),
            (Column::Date(c), Value::Date(d)) => c.push(Some(*d)),
            _ => return false,
        }
        true
    }

    fn truncate(&mut self, n: usize) {
        match self {
            Column::Bool(c) => c.truncate(n),
            Column::Int(c) => c.truncate(n),
            Column::Float(c) => c.truncate(n),
            Column::Text(c) => c.truncate(n),
            Column::Bytes(c) => c.truncate(n),
            Column::Date(c) => c.truncate(n),
        }
    }

    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Column::Bool(c) => c,
            Column::Int(c) => c,
            Column::Float(c) => c,
            Column::Text(c) => c,
            Column::Bytes(c) => c,
            Column::Date(c) => c,
        }
    }
}

/// A list as JSON (lists are stored as `jsonb`). A value JSON cannot hold is written as the
/// text PostgreSQL gives it in its own column type, so `(list->>i)::float8` or `::bytea`
/// gives it back: NaN and ±infinity as `"NaN"`, `"Infinity"`, `"-Infinity"`, bytes as
/// `"\\x"` and lower-case hex. Dates are days since 1970-01-01 and timestamps microseconds
/// since the epoch, as numbers.
fn list_json(items: &[Value]) -> serde_json::Value {
    serde_json::Value::Array(
        items
            .iter()
            .map(|v| match v {
                Value::Null => serde_json::Value::Null,
                Value::Bool(b) => serde_json::Value::Bool(*b),
                Value::Int(i) => serde_json::Value::from(*i),
                Value::Float(f) => serde_json::Number::from_f64(*f).map_or_else(
                    || {
                        let text = if f.is_nan() {
                            "NaN"
                        } else if *f > 0.0 {
                            "Infinity"
                        } else {
                            "-Infinity"
                        };
                        serde_json::Value::String(text.to_owned())
                    },
                    serde_json::Value::Number,
                ),
                Value::String(s) => serde_json::Value::String(s.clone()),
                Value::Decimal(d) => serde_json::Value::String(d.as_str().to_owned()),
                Value::Json(j) => j.clone(),
                Value::List(inner) => list_json(inner),
                Value::Date(d) => serde_json::Value::from(*d),
                Value::Timestamp(t) => serde_json::Value::from(*t),
                Value::Bytes(b) => {
                    let mut text = String::with_capacity(2 + 2 * b.len());
                    text.push_str("\\x");
                    for byte in b.iter() {
                        text.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
                        text.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
                    }
                    serde_json::Value::String(text)
                }
                _ => serde_json::Value::Null,
            })
            .collect(),
    )
}

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
    /// Exactly-once: a COPY of snapshot rows met a key the snapshot already had (a deleted
    /// key's tombstone): their state goes by upsert from then on.
    state_copy_conflicted: AtomicBool,
    /// Exactly-once: the state store committed into with the rows, and whether it was
    /// checked to share the destination's database.
    state: Option<PostgresStateStore>,
    state_checked: tokio::sync::Mutex<bool>,
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
    /// [`PostgresConnectOptions`]. Connects lazily: call [`check`](Destination::check) to
    /// verify the server, its certificate and the credentials.
    ///
    /// # Errors
    /// [`DestinationError::Fatal`] when the URL does not parse, names an unknown `sslmode`,
    /// or a certificate file cannot be read or used (the URL itself is not repeated: it may
    /// hold a password).
    pub fn new(url: &str, options: PostgresDestinationOptions) -> Result<Self, DestinationError> {
        let connection = build_pool(url, &options.connect, options.pool_size).map_err(|e| DestinationError::Fatal {
            message: format!("postgres destination: {}", e.message),
            source: e.source,
        })?;
        let name = format!("postgres:{}.{}", options.schema, options.table);
        Ok(Self {
            name,
            connection,
            options,
            statements: Mutex::new(Vec::new()),
            ready: tokio::sync::Mutex::new(false),
            columns: Mutex::new(TableColumns::default()),
            copy_conflicted: AtomicBool::new(false),
            state_copy_conflicted: AtomicBool::new(false),
            state: None,
            state_checked: tokio::sync::Mutex::new(false),
        })
    }

    /// Exactly-once: commits the sync's state into `store` in the same transaction as each
    /// batch's rows (see the module docs). `store` must be in the destination's database;
    /// the first write checks it. Build the sync with the same store.
    pub fn with_state_store(mut self, store: PostgresStateStore) -> Self {
        self.state = Some(store);
        self
    }

    /// Checks, once, that the state store is in this destination's database.
    async fn check_state_store(&self, store: &PostgresStateStore) -> Result<(), CommittedWriteError> {
        let mut checked = self.state_checked.lock().await;
        if *checked {
            return Ok(());
        }
        let client = self.client().await?;
        let row =
            client.query_one(DATABASE_IDENTITY, &[]).await.map_err(|e| self.classify(e, "identifying the database"))?;
        let ours: String = row.get(0);
        let theirs = store.database_identity().await?;
        if ours != theirs {
            return Err(DestinationError::fatal(format!(
                "{}: exactly-once needs the state store `{}` in the destination's database, but it is on another one; \
                 connect both to the same database",
                self.name,
                store.name()
            ))
            .into());
        }
        *checked = true;
        Ok(())
    }

    fn table(&self) -> String {
        format!("{}.{}", quote(&self.options.schema), quote(&self.options.table))
    }

    fn ledger_table(&self) -> String {
        format!("{}.{}", quote(&self.options.schema), quote(&self.options.ledger_table))
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, DestinationError> {
        self.connection.pool.get().await.map_err(|e| self.pool_error(e))
    }

    fn pool_error(&self, e: PoolError) -> DestinationError {
        match self.connection.unconnected(e) {
            Unconnected::Backend(e) => self.classify(e, "connecting"),
            // Retrying does not change a certificate or the server's TLS setting.
            Unconnected::Tls(message, e) => {
                DestinationError::Fatal { message: format!("{}: {message}", self.name), source: Some(Box::new(e)) }
            }
            Unconnected::Transient(message) => DestinationError::transient(format!("{}: {message}", self.name)),
        }
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

    /// Maps a driver error onto the runner's classes. Only the server's message and code are
    /// kept: its DETAIL line can quote row values.
    fn classify(&self, e: tokio_postgres::Error, doing: &str) -> DestinationError {
        let Some(db) = e.as_db_error() else {
            // I/O, a closed connection, a protocol hiccup: may pass.
            return DestinationError::Transient {
                message: format!("{}: {doing} failed: connection error", self.name),
                source: Some(Box::new(e)),
            };
        };
        let code = db.code().code();
        let message = format!("{}: {doing} failed: {} (SQLSTATE {code})", self.name, db.message());
        let class = &code[..2.min(code.len())];
        if *db.code() == SqlState::UNDEFINED_TABLE {
            return DestinationError::fatal(format!(
                "{message}; create the table, or enable `with_create_table(true)` on the destination"
            ));
        }
        match class {
            "08" | "40" | "53" | "55" | "57" | "58" | "25" => DestinationError::transient(message),
            "28" => DestinationError::Unauthorized { message },
            "22" | "23" => DestinationError::InvalidBatch { message },
            _ => DestinationError::fatal(message),
        }
    }

    /// Creates the schema, table and state table when asked to; once per destination.
    async fn prepare(&self, schema: &Schema) -> Result<(), DestinationError> {
        let mut ready = self.ready.lock().await;
        if *ready {
            return Ok(());
        }
        let client = self.client().await?;
        if self.options.create_table || self.options.ledger {
            client
                .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", quote(&self.options.schema)))
                .await
                .map_err(|e| self.classify(e, "creating the schema"))?;
        }
        if self.options.create_table {
            let mut columns: Vec<String> = schema
                .fields()
                .iter()
                .map(|f| {
                    format!("{} {}{}", quote(&f.name), pg_type(&f.data_type), if f.nullable { "" } else { " NOT NULL" })
                })
                .collect();
            if self.options.guard() {
                columns.push("\"_rse_version\" bigint".into());
            }
            let key: Vec<String> = schema.key_names().map(quote).collect();
            columns.push(format!("PRIMARY KEY ({})", key.join(", ")));
            let sql = format!("CREATE TABLE IF NOT EXISTS {} ({})", self.table(), columns.join(", "));
            client.batch_execute(&sql).await.map_err(|e| self.classify(e, "creating the table"))?;
        }
        if self.options.ledger {
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS {} (sync_id text NOT NULL, key bytea NOT NULL, version bigint NOT NULL, \
                 fingerprint bytea, idempotency_key bytea NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), \
                 PRIMARY KEY (sync_id, key))",
                self.ledger_table()
            );
            client.batch_execute(&sql).await.map_err(|e| self.classify(e, "creating the ledger table"))?;
        }
        if self.options.copy_inserts {
            // A table that does not exist (yet) reads as no columns: no COPY, and the upsert
            // says what is missing.
            let rows = client
                .query(TABLE_COLUMNS, &[&self.table()])
                .await
                .map_err(|e| self.classify(e, "reading the table's columns"))?;
            let mut columns = TableColumns { plain: !rows.is_empty(), types: Vec::with_capacity(rows.len()) };
            for row in rows {
                columns.plain &= row.get::<_, bool>(0);
                columns.types.push((row.get(1), row.get(2)));
            }
            *self.columns.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = columns;
        }
        *ready = true;
        Ok(())
    }

    /// The COPY of inserts for `schema`, when the table is plain and every field's column
    /// reads the binary form the field is written in.
    fn copy_plan(&self, schema: &Schema) -> Option<CopyPlan> {
        let table = self.columns.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !self.options.copy_inserts || !table.plain {
            return None;
        }
        let mut types = Vec::with_capacity(schema.fields().len());
        let mut names = Vec::with_capacity(schema.fields().len() + 1);
        for field in schema.fields() {
            if !column_takes(pg_type(&field.data_type), table.type_of(&field.name)?) {
                return None;
            }
            types.push(CopyType::of(&field.data_type));
            names.push(quote(&field.name));
        }
        if self.options.guard() {
            if !column_takes("bigint", table.type_of("_rse_version")?) {
                return None;
            }
            names.push("\"_rse_version\"".to_owned());
        }
        let sql = format!("COPY {} ({}) FROM STDIN (FORMAT binary)", self.table(), names.join(", "));
        Some(CopyPlan { sql, types })
    }

    fn statements(&self, schema: &Arc<Schema>) -> Arc<Statements> {
        let mut cache = self.statements.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, s)) = cache.iter().find(|(s, _)| Arc::ptr_eq(s, schema) || **s == **schema) {
            return s.clone();
        }
        let built = Arc::new(self.build_statements(schema));
        cache.push((schema.clone(), built.clone()));
        built
    }

    fn build_statements(&self, schema: &Schema) -> Statements {
        let guard = self.options.guard();
        let fields = schema.fields();
        let binds: Vec<Bind> = fields.iter().map(|f| Bind::of(&f.data_type)).collect();
        let mut params: Vec<String> =
            binds.iter().enumerate().map(|(i, b)| format!("${}::{}", i + 1, b.array_type())).collect();
        let mut aliases: Vec<String> = (0..fields.len()).map(|i| format!("c{i}")).collect();
        let mut names: Vec<String> = fields.iter().map(|f| quote(&f.name)).collect();
        let mut exprs: Vec<String> =
            fields.iter().enumerate().map(|(i, f)| convert(&format!("u.c{i}"), &f.data_type)).collect();
        if guard {
            params.push(format!("${}::int8[]", fields.len() + 1));
            aliases.push("v".into());
            names.push("\"_rse_version\"".into());
            exprs.push("u.v".into());
        }
        let key_set: Vec<usize> = schema.key_indices().to_vec();
        let key_names: Vec<String> = key_set.iter().map(|&i| quote(&fields[i].name)).collect();
        let updates: Vec<String> = names
            .iter()
            .enumerate()
            .filter(|(i, _)| !key_set.contains(i))
            .map(|(_, n)| format!("{n} = EXCLUDED.{n}"))
            .collect();
        let table = self.table();
        let conflict = if updates.is_empty() {
            "DO NOTHING".to_owned()
        } else {
            let mut s = format!("DO UPDATE SET {}", updates.join(", "));
            if guard {
                s.push_str(&format!(
                    " WHERE {table}.\"_rse_version\" IS NULL OR {table}.\"_rse_version\" <= EXCLUDED.\"_rse_version\""
                ));
            }
            s
        };
        let upsert = format!(
            "INSERT INTO {table} ({}) SELECT {} FROM unnest({}) AS u({}) ON CONFLICT ({}) {conflict}",
            names.join(", "),
            exprs.join(", "),
            params.join(", "),
            aliases.join(", "),
            key_names.join(", "),
        );
        // Deletes: the key columns, plus the version under the guard.
        let key_binds: Vec<(usize, Bind)> = key_set.iter().map(|&i| (i, binds[i])).collect();
        let mut dparams: Vec<String> =
            key_binds.iter().enumerate().map(|(j, (_, b))| format!("${}::{}", j + 1, b.array_type())).collect();
        let mut daliases: Vec<String> = (0..key_binds.len()).map(|j| format!("k{j}")).collect();
        let mut conds: Vec<String> = key_set
            .iter()
            .enumerate()
            .map(|(j, &i)| {
                format!("t.{} = {}", quote(&fields[i].name), convert(&format!("u.k{j}"), &fields[i].data_type))
            })
            .collect();
        if guard {
            dparams.push(format!("${}::int8[]", key_binds.len() + 1));
            daliases.push("v".into());
            conds.push("(t.\"_rse_version\" IS NULL OR t.\"_rse_version\" <= u.v)".into());
        }
        let delete = format!(
            "DELETE FROM {table} AS t USING unnest({}) AS u({}) WHERE {}",
            dparams.join(", "),
            daliases.join(", "),
            conds.join(" AND ")
        );
        // After the upsert and the delete, in the same transaction (the rows they skipped are
        // locked by them): a guarded row still newer than its change was not written.
        let superseded = guard.then(|| {
            let key_conds = &conds[..key_binds.len()];
            format!(
                "SELECT u.o, t.\"_rse_version\" FROM unnest({}, ${}::int8[]) AS u({}, o) JOIN {table} AS t ON {} \
                 WHERE t.\"_rse_version\" > u.v",
                dparams.join(", "),
                dparams.len() + 1,
                daliases.join(", "),
                key_conds.join(" AND ")
            )
        });
        Statements { upsert, delete, superseded, binds, key_binds, copy: self.copy_plan(schema) }
    }

    /// Encodes the changes at `positions`: the inserts into a COPY when `copy` and there are
    /// enough of them, the rest into the upsert's and the delete's columns. Changes whose
    /// values do not fit their field's type are rejected here, before any SQL.
    fn encode<'a>(
        &self,
        statements: &Statements,
        batch: &'a ChangeBatch,
        outcomes: &mut [Option<ChangeOutcome>],
        positions: &[usize],
        copy: bool,
    ) -> Encoded<'a> {
        let is_insert = |i: &usize| batch.changes[*i].op == Op::Insert && batch.changes[*i].record.is_some();
        let plan = statements
            .copy
            .as_ref()
            .filter(|_| copy && positions.iter().filter(|i| is_insert(i)).count() >= COPY_MIN_ROWS);
        let mut rest = Vec::with_capacity(positions.len());
        let copied = plan.map(|plan| {
            let mut rows = CopyRows::with_capacity(positions.len() * 128);
            let guard = self.options.guard();
            for &i in positions {
                let change = &batch.changes[i];
                let version = guard.then(|| i64::try_from(change.version).unwrap_or(i64::MAX));
                let copied = match (&change.record, change.op) {
                    (Some(record), Op::Insert) => rows.push(&plan.types, record.values.iter(), version),
                    _ => false,
                };
                if !copied {
                    rest.push(i);
                }
            }
            rows
        });
        if copied.is_none() {
            rest.extend_from_slice(positions);
        }
        let changes: Vec<&Change> = rest.iter().map(|&i| &batch.changes[i]).collect();
        let (upsert, delete) = self.columns(statements, &batch.schema, &changes, outcomes, &rest);
        Encoded { copied, upsert, delete }
    }

    /// Builds the bound columns of the upserts and deletes; changes whose values do not fit
    /// their field's type are rejected here, before any SQL.
    fn columns<'a>(
        &self,
        statements: &Statements,
        schema: &Schema,
        changes: &[&'a Change],
        outcomes: &mut [Option<ChangeOutcome>],
        positions: &[usize],
    ) -> (Vec<Column<'a>>, Vec<Column<'a>>) {
        let n = changes.len();
        let mut upsert: Vec<Column<'_>> = statements.binds.iter().map(|b| Column::new(*b, n)).collect();
        let mut upsert_versions = Vec::with_capacity(n);
        let mut delete: Vec<Column<'_>> = statements.key_binds.iter().map(|(_, b)| Column::new(*b, n)).collect();
        let mut delete_versions = Vec::with_capacity(n);
        let mut rows = 0usize;
        let mut dels = 0usize;
        for (change, &pos) in changes.iter().zip(positions) {
            let version = Some(i64::try_from(change.version).unwrap_or(i64::MAX));
            match (&change.record, change.op) {
                (_, Op::Delete) => {
                    let Ok(key) = change.key.decode() else {
                        outcomes[pos] = Some(ChangeOutcome::rejected("key could not be decoded"));
                        continue;
                    };
                    let ok = delete.iter_mut().zip(&key).all(|(c, v)| c.push_owned(v)) && key.len() == delete.len();
                    if ok {
                        dels += 1;
                        delete_versions.push(version);
                    } else {
                        delete.iter_mut().for_each(|c| c.truncate(dels));
                        outcomes[pos] = Some(ChangeOutcome::rejected("key does not fit the table's key columns"));
                    }
                }
                (Some(record), _) => {
                    let mut bad = None;
                    for (i, c) in upsert.iter_mut().enumerate() {
                        if !c.push(record.values.get(i).unwrap_or(&Value::Null)) {
                            bad = Some(i);
                            break;
                        }
                    }
                    match bad {
                        None => {
                            rows += 1;
                            upsert_versions.push(version);
                        }
                        Some(i) => {
                            upsert.iter_mut().for_each(|c| c.truncate(rows));
                            let field =
                                schema.field(i).map(|f| (f.name.as_str(), f.data_type.to_string())).unwrap_or_default();
                            let got = record.values.get(i).map_or("nothing", Value::type_name);
                            outcomes[pos] = Some(ChangeOutcome::rejected(format!(
                                "field `{}` is {} but the record holds a {got}",
                                field.0, field.1
                            )));
                        }
                    }
                }
                (None, op) => outcomes[pos] = Some(ChangeOutcome::rejected(format!("{op} without a record"))),
            }
        }
        if self.options.guard() {
            upsert.push(Column::Int(upsert_versions));
            delete.push(Column::Int(delete_versions));
        }
        (upsert, delete)
    }
}

impl PostgresDestination {
    /// Answers `Superseded` for the changes written in this transaction whose row holds a
    /// newer version than theirs (the version guard skipped them).
    async fn mark_superseded(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        sql: &str,
        statements: &Statements,
        batch: &ChangeBatch,
        outcomes: &mut [Option<ChangeOutcome>],
    ) -> Result<(), DestinationError> {
        let written: Vec<usize> = (0..batch.changes.len()).filter(|&i| outcomes[i].is_none()).collect();
        let n = written.len();
        let mut keys: Vec<Column<'_>> = statements.key_binds.iter().map(|(_, b)| Column::new(*b, n)).collect();
        let mut versions = Vec::with_capacity(n);
        let mut positions = Vec::with_capacity(n);
        for &i in &written {
            let change = &batch.changes[i];
            let Ok(key) = change.key.decode() else { continue };
            let before = column_len(&keys);
            if key.len() == keys.len() && keys.iter_mut().zip(&key).all(|(c, v)| c.push_owned(v)) {
                versions.push(Some(i64::try_from(change.version).unwrap_or(i64::MAX)));
                positions.push(Some(i as i64));
            } else {
                keys.iter_mut().for_each(|c| c.truncate(before));
            }
        }
        keys.push(Column::Int(versions));
        keys.push(Column::Int(positions));
        let params: Vec<&(dyn ToSql + Sync)> = keys.iter().map(Column::as_sql).collect();
        let statement = tx.prepare_cached(sql).await.map_err(|e| self.classify(e, "preparing"))?;
        let rows = tx.query(&statement, &params).await.map_err(|e| self.classify(e, "finding superseded rows"))?;
        for row in rows {
            let (Ok(position), Ok(held)) = (row.try_get::<_, i64>(0), row.try_get::<_, i64>(1)) else { continue };
            let Some(slot) = usize::try_from(position).ok().and_then(|p| outcomes.get_mut(p)) else { continue };
            let version = batch.changes.get(position as usize).map_or(0, |c| c.version);
            *slot = Some(ChangeOutcome::Superseded {
                reason: format!("the table's row holds version {held}, newer than this change's {version}"),
            });
        }
        Ok(())
    }

    /// Upserts the exactly-once record of the changes at `indices` and returns the keys that
    /// were new or held another idempotency key (the changes to apply).
    async fn record(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        batch: &ChangeBatch,
        indices: &[usize],
    ) -> Result<HashSet<Vec<u8>>, DestinationError> {
        if indices.is_empty() {
            return Ok(HashSet::new());
        }
        let changes: Vec<&Change> = indices.iter().map(|&i| &batch.changes[i]).collect();
        let keys: Vec<&[u8]> = changes.iter().map(|c| c.key.as_bytes()).collect();
        let versions: Vec<i64> = changes.iter().map(|c| i64::try_from(c.version).unwrap_or(i64::MAX)).collect();
        let fingerprints: Vec<Option<Vec<u8>>> =
            changes.iter().map(|c| (c.op != Op::Delete).then(|| c.fingerprint.to_bytes().to_vec())).collect();
        let idems: Vec<&[u8]> = changes.iter().map(|c| c.idempotency_key.0.as_slice()).collect();
        let sql = format!(
            "INSERT INTO {} AS s (sync_id, key, version, fingerprint, idempotency_key) \
             SELECT $1, k, v, f, i FROM unnest($2::bytea[], $3::int8[], $4::bytea[], $5::bytea[]) AS u(k, v, f, i) \
             ON CONFLICT (sync_id, key) DO UPDATE SET version = EXCLUDED.version, fingerprint = EXCLUDED.fingerprint, \
             idempotency_key = EXCLUDED.idempotency_key, applied_at = now() \
             WHERE s.idempotency_key IS DISTINCT FROM EXCLUDED.idempotency_key \
             RETURNING key",
            self.ledger_table()
        );
        let rows = tx
            .query(&sql, &[&&*batch.sync_id, &keys, &versions, &fingerprints, &idems])
            .await
            .map_err(|e| self.classify(e, "recording applied changes"))?;
        Ok(rows.into_iter().map(|r| r.get::<_, Vec<u8>>(0)).collect())
    }
}

fn column_len(columns: &[Column<'_>]) -> usize {
    match columns.first() {
        Some(Column::Bool(c)) => c.len(),
        Some(Column::Int(c)) => c.len(),
        Some(Column::Float(c)) => c.len(),
        Some(Column::Text(c)) => c.len(),
        Some(Column::Bytes(c)) => c.len(),
        Some(Column::Date(c)) => c.len(),
        None => 0,
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
        if let Some(store) = &self.state {
            // Exactly-once: the state store must be in this database.
            self.check_state_store(store).await.map_err(|e| match e {
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
        self.state.as_ref().map(|_| self as &dyn TransactionalState)
    }
}

#[async_trait]
impl TransactionalState for PostgresDestination {
    fn state_store_name(&self) -> &str {
        self.state.as_ref().map_or("", |s| s.name())
    }

    fn state_store(&self) -> Option<Arc<dyn StateStore>> {
        self.state.clone().map(|s| Arc::new(s) as Arc<dyn StateStore>)
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

impl PostgresDestination {
    /// Writes a batch in one transaction, with the state commit `commit` builds from the
    /// outcomes when given (exactly-once); again by upsert alone when its COPY met a key
    /// already in the table.
    async fn apply(
        &self,
        batch: &ChangeBatch,
        commit: Option<(&Lease, &CommitFor<'_>)>,
    ) -> Result<WriteOutcome, CommittedWriteError> {
        let mut copy = CopyChoice {
            rows: self.options.copy_inserts && !self.copy_conflicted.load(Ordering::Relaxed),
            state: self.options.copy_inserts && !self.state_copy_conflicted.load(Ordering::Relaxed),
        };
        loop {
            match self.apply_once(batch, commit, copy).await? {
                Attempt::Written(outcome) => return Ok(outcome),
                Attempt::CopyRefused(code) => {
                    debug!(
                        destination = %self.name,
                        sqlstate = %code,
                        "The server refused the COPY of inserts (23505: a key new to the sync is already in the \
                         table); inserts go by upsert from now on."
                    );
                    self.copy_conflicted.store(true, Ordering::Relaxed);
                    copy.rows = false;
                }
                Attempt::StateCopyConflict => {
                    debug!(
                        destination = %self.name,
                        "An inserted key has a snapshot row; its state goes by upsert from now on."
                    );
                    self.state_copy_conflicted.store(true, Ordering::Relaxed);
                    copy.state = false;
                }
            }
        }
    }

    async fn apply_once(
        &self,
        batch: &ChangeBatch,
        commit: Option<(&Lease, &CommitFor<'_>)>,
        copy: CopyChoice,
    ) -> Result<Attempt, CommittedWriteError> {
        let state = match (commit, &self.state) {
            (None, _) => None,
            (Some((lease, commit_for)), Some(store)) => Some((lease, commit_for, store)),
            (Some(_), None) => {
                return Err(DestinationError::fatal(format!("{}: no state store to commit into", self.name)).into());
            }
        };
        if batch.changes.is_empty() && state.is_none() {
            return Ok(Attempt::Written(WriteOutcome::default()));
        }
        if let Some((_, _, store)) = state {
            self.check_state_store(store).await?;
        }
        if !batch.changes.is_empty() {
            self.prepare(&batch.schema).await?;
        }
        let statements = self.statements(&batch.schema);
        let mut outcomes: Vec<Option<ChangeOutcome>> = vec![None; batch.changes.len()];
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.classify(e, "beginning a transaction"))?;

        // Values that do not fit their column are rejected here, before any SQL.
        let all: Vec<usize> = (0..batch.changes.len()).collect();
        let mut encoded = self.encode(&statements, batch, &mut outcomes, &all, copy.rows);

        if self.options.ledger {
            // Record the valid changes first, in one statement that also says which are new:
            // a key whose recorded idempotency key is this change's is left alone and not
            // returned, so the change is answered `Applied` without touching its row.
            let valid: Vec<usize> = all.iter().copied().filter(|&i| outcomes[i].is_none()).collect();
            let fresh = self.record(&tx, batch, &valid).await?;
            if fresh.len() < valid.len() {
                let todo: Vec<usize> =
                    valid.iter().copied().filter(|&i| fresh.contains(batch.changes[i].key.as_bytes())).collect();
                for &i in &valid {
                    if !fresh.contains(batch.changes[i].key.as_bytes()) {
                        outcomes[i] = Some(ChangeOutcome::Applied);
                    }
                }
                encoded = self.encode(&statements, batch, &mut outcomes, &todo, copy.rows);
            }
        }
        if let (Some(rows), Some(plan)) = (encoded.copied.filter(|r| r.len() > 0), &statements.copy) {
            match copy_in(&tx, &plan.sql, rows.finish()).await {
                Ok(()) => {}
                Err(e) if e.code().is_some_and(copy::upsert_would_do) => {
                    return Ok(Attempt::CopyRefused(e.code().map_or("", SqlState::code).to_owned()));
                }
                Err(e) => return Err(self.classify(e, "copying new rows").into()),
            }
        }
        let mut skipped = false;
        let upserts = column_len(&encoded.upsert);
        if upserts > 0 {
            let params: Vec<&(dyn ToSql + Sync)> = encoded.upsert.iter().map(Column::as_sql).collect();
            let statement = tx.prepare_cached(&statements.upsert).await.map_err(|e| self.classify(e, "preparing"))?;
            let written = tx.execute(&statement, &params).await.map_err(|e| self.classify(e, "upserting rows"))?;
            skipped |= written < upserts as u64;
        }
        let deletes = column_len(&encoded.delete);
        if deletes > 0 {
            let params: Vec<&(dyn ToSql + Sync)> = encoded.delete.iter().map(Column::as_sql).collect();
            let statement = tx.prepare_cached(&statements.delete).await.map_err(|e| self.classify(e, "preparing"))?;
            let removed = tx.execute(&statement, &params).await.map_err(|e| self.classify(e, "deleting rows"))?;
            // A delete of a key not in the table removes nothing and is applied all the same.
            skipped |= removed < deletes as u64;
        }
        if skipped && let Some(sql) = &statements.superseded {
            self.mark_superseded(&tx, sql, &statements, batch, &mut outcomes).await?;
        }
        let outcomes: Vec<ChangeOutcome> = outcomes.into_iter().map(|o| o.unwrap_or(ChangeOutcome::Applied)).collect();
        if let Some((lease, commit_for, store)) = state {
            // Keys new to the sync have no snapshot row (but a deleted key's tombstone, which
            // the COPY finds).
            let new_keys: HashSet<&[u8]> = if copy.state {
                batch.changes.iter().filter(|c| c.op == Op::Insert).map(|c| c.key.as_bytes()).collect()
            } else {
                HashSet::new()
            };
            // After the rows: the fence locks the sync's state row until the commit.
            match store.commit_in(&tx, lease, commit_for(&outcomes), &new_keys).await {
                Ok(()) => {}
                Err(CommitInError::SnapshotConflict) => return Ok(Attempt::StateCopyConflict),
                // The connection failed: nothing was committed, and the whole write can be retried.
                Err(CommitInError::State(StateError::Unavailable { message, source })) => {
                    return Err(CommittedWriteError::Destination(DestinationError::Transient { message, source }));
                }
                Err(CommitInError::State(other)) => return Err(CommittedWriteError::State(other)),
            }
        }
        tx.commit().await.map_err(|e| self.classify(e, "committing"))?;
        Ok(Attempt::Written(WriteOutcome { outcomes }))
    }
}

/// Whether a table is plain (an ordinary or partitioned table, without rules, which COPY
/// ignores, or row security, which it refuses), and its columns with their types; no rows
/// when it does not exist.
const TABLE_COLUMNS: &str = "SELECT c.relkind IN ('r', 'p') AND NOT c.relhasrules AND NOT c.relrowsecurity, \
     a.attname::text, \
     format_type(a.atttypid, a.atttypmod) FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid \
     WHERE c.oid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped";
