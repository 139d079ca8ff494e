//! `SqliteDestination`: a sync's changes written into a table of a SQLite file, no server.
//!
//! The destination for a product database or an embedded app: upserts and deletes by key
//! into a keyed table, or every change appended to an events table.
//!
//! # How a batch is written
//! One immediate transaction per batch, on tokio's blocking pool (never on the runtime's
//! threads). Each change runs inside its own `SAVEPOINT`: a change the table refuses (a
//! `CHECK`, `NOT NULL`, `UNIQUE` or foreign-key constraint, a type a `STRICT` table does not
//! take) is rolled back alone and answered `Rejected` with SQLite's reason, and the rest of
//! the batch commits. Identifiers are always quoted; values are always bound.
//!
//! - [`SqliteTableKind::Keyed`] (the default): `Insert`, `Update` and `Append` are
//!   `INSERT … ON CONFLICT (key columns) DO UPDATE`, so an insert of a key the table holds
//!   overwrites it; `Delete` is `DELETE … WHERE` the key columns, and succeeds for a key the
//!   table does not hold.
//! - [`SqliteTableKind::Events`]: every change is a new row, `_rse_id` (autoincrement),
//!   `_rse_op` (`insert`, `update`, `delete`, `append`), `_rse_idempotency_key` (unique: a
//!   batch re-sent after a lost acknowledgement adds nothing), then the record's fields (a
//!   delete carries only its key columns).
//!
//! # Types
//! | rse | column declared as (with `with_create_table`) | value stored |
//! |---|---|---|
//! | bool | `BOOLEAN` | integer `0` / `1` |
//! | int | `INTEGER` | integer |
//! | float | `REAL` | real (SQLite stores NaN as `NULL`) |
//! | decimal | `DECIMAL TEXT` (text affinity: exact) | text, e.g. `12.50` → `12.5` |
//! | string | `TEXT` | text |
//! | bytes | `BLOB` | blob |
//! | date | `DATE` | text `YYYY-MM-DD` |
//! | timestamp | `TIMESTAMP TEXT` | text, RFC 3339 in UTC with microseconds |
//! | json | `JSON TEXT` | text, canonical JSON (keys sorted, no whitespace) |
//! | list | `JSON TEXT` | text, a canonical JSON array: booleans, numbers and strings as JSON; decimals, dates and timestamps as the texts above; NaN and ±inf as `"NaN"`, `"Infinity"`, `"-Infinity"`; bytes as `"\\x"` and lower-case hex (`unhex(substr(v, 3))` gives the blob back) |
//!
//! The declared types read back with their rse type through `rse_sources`' `SqliteSource`.
//!
//! # Reading back
//! A keyed table reads back for reconciliation ([`Destination::read_back`], used by
//! `SyncJob::verify`): every type above reads back as the exact value written, except a NaN
//! float, which SQLite stores as `NULL` (a record holding one reads as a mismatch).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use rse_core::time::{format_date, format_timestamp_micros as format_timestamp};
use rse_core::value::canonical_json;
use rse_core::{
    ChangeBatch, DataType, Destination, DestinationCapabilities, DestinationError, Op, ReadBack, Schema, Value,
    WriteOutcome, WriteOutcomes,
};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, DropBehavior, ErrorCode, TransactionBehavior, params_from_iter};
use serde::{Deserialize, Serialize};

mod read_back;

/// What kind of table a [`SqliteDestination`] writes; `"keyed"` or `"events"` in
/// configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SqliteTableKind {
    /// One row per key: upserts and deletes by the schema's key columns.
    #[default]
    Keyed,
    /// One row per change: an autoincrement id, the operation and the record.
    Events,
}

/// Options of a [`SqliteDestination`], built with `with_*` methods from [`new`](Self::new)
/// or [`events`](Self::events), or read from a configuration file.
///
/// In a file only `table` is required; every other field takes the default `new` gives
/// it, an unknown field is refused, and `busy_timeout` reads as `"5s"`.
///
/// ```
/// use rse_connectors::{SqliteDestinationOptions, SqliteTableKind};
/// let options: SqliteDestinationOptions =
///     serde_json::from_str(r#"{ "table": "events", "kind": "events", "create_table": true }"#)?;
/// assert_eq!(options, SqliteDestinationOptions::events("events").with_create_table(true));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteDestinationOptions {
    table: String,
    #[serde(default)]
    kind: SqliteTableKind,
    #[serde(default)]
    create_table: bool,
    #[serde(default = "default_busy_timeout", with = "rse_core::config::duration")]
    busy_timeout: Duration,
    #[serde(default = "default_max_batch_rows")]
    max_batch_rows: usize,
}

fn default_busy_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_max_batch_rows() -> usize {
    5_000
}

impl SqliteDestinationOptions {
    /// Upserts and deletes by key into `table`.
    pub fn new(table: impl Into<String>) -> Self {
        Self {
            table: table.into(),
            kind: SqliteTableKind::Keyed,
            create_table: false,
            busy_timeout: default_busy_timeout(),
            max_batch_rows: default_max_batch_rows(),
        }
    }

    /// Appends every change to `table`, an events table (see the module docs).
    pub fn events(table: impl Into<String>) -> Self {
        Self { kind: SqliteTableKind::Events, ..Self::new(table) }
    }

    /// Creates the table from the batch's schema on first write when it does not exist:
    /// column types as in the module docs, the key columns as the primary key (default off:
    /// the table must exist).
    pub fn with_create_table(mut self, create: bool) -> Self {
        self.create_table = create;
        self
    }

    /// How long a write waits for another connection's write lock before failing with
    /// [`DestinationError::Transient`] (default 5 s).
    pub fn with_busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// The most changes per write, and so per transaction (default 5,000).
    pub fn with_max_batch_rows(mut self, rows: usize) -> Self {
        self.max_batch_rows = rows.max(1);
        self
    }
}

/// The connection and the schemas whose table is known to be ready.
struct Conn {
    conn: Connection,
    ready: Vec<Arc<Schema>>,
}

struct Inner {
    path: PathBuf,
    name: String,
    options: SqliteDestinationOptions,
    conn: Mutex<Conn>,
}

/// Writes a sync's changes into one table of a SQLite file (bundled SQLite, WAL mode); see
/// the module docs.
///
/// SQLite has one writer at a time, so the destination declares a concurrency of one.
///
/// ```no_run
/// # async fn demo() -> Result<(), rse_core::DestinationError> {
/// use rse_connectors::{SqliteDestination, SqliteDestinationOptions};
/// let dest = SqliteDestination::open("app.db", SqliteDestinationOptions::new("customers").with_create_table(true))
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteDestination {
    inner: Arc<Inner>,
}

impl fmt::Debug for SqliteDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteDestination")
            .field("path", &self.inner.path)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

fn lock(m: &Mutex<Conn>) -> MutexGuard<'_, Conn> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `"name"` with embedded quotes doubled.
fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn declared_type(t: &DataType) -> &'static str {
    match t {
        DataType::Bool => "BOOLEAN",
        DataType::Int => "INTEGER",
        DataType::Float => "REAL",
        DataType::Decimal => "DECIMAL TEXT",
        DataType::String => "TEXT",
        DataType::Bytes => "BLOB",
        DataType::Date => "DATE",
        DataType::Timestamp => "TIMESTAMP TEXT",
        _ => "JSON TEXT",
    }
}

/// A failure classified by what the runner should do; `Row` is a refusal of one change.
enum Failure {
    Row(String),
    Batch(DestinationError),
}

impl Inner {
    /// Explains a SQLite failure on the destination file: what went wrong and what to do.
    fn classify(&self, doing: &str, e: rusqlite::Error) -> DestinationError {
        let p = self.path.display();
        let fatal =
            |message: String, e: rusqlite::Error| DestinationError::Fatal { message, source: Some(Box::new(e)) };
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => DestinationError::Transient {
                message: format!(
                    "{}: {doing}: the file is locked by another connection; the write is retried (raise `with_busy_timeout` if this repeats)",
                    self.name
                ),
                source: Some(Box::new(e)),
            },
            Some(ErrorCode::DiskFull) => DestinationError::Transient {
                message: format!("{}: {doing}: the disk is full; free space", self.name),
                source: Some(Box::new(e)),
            },
            Some(ErrorCode::SystemIoFailure) => DestinationError::Transient {
                message: format!("{}: {doing}: I/O error; check the disk", self.name),
                source: Some(Box::new(e)),
            },
            Some(ErrorCode::ReadOnly) => fatal(
                format!(
                    "{}: {doing}: {p} is read-only; make the file and its directory writable, or point the destination at another file",
                    self.name
                ),
                e,
            ),
            Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => fatal(
                format!(
                    "{}: {doing}: cannot open {p} for writing; check that its directory exists and that the file and directory are writable",
                    self.name
                ),
                e,
            ),
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => fatal(
                format!(
                    "{}: {doing}: {p} is not a SQLite database or is corrupt ({e}); restore it from a backup or point the destination at another file",
                    self.name
                ),
                e,
            ),
            Some(ErrorCode::ConstraintViolation) => {
                DestinationError::InvalidBatch { message: format!("{}: {doing}: {e}", self.name) }
            }
            _ => {
                let text = e.to_string();
                let hint = if text.contains("no such table") {
                    "; create the table, or enable `with_create_table(true)` on the destination"
                } else if text.contains("has no column") || text.contains("no such column") {
                    "; add the column to the table, or drop the field with a transform"
                } else if text.contains("ON CONFLICT") {
                    "; the table needs a PRIMARY KEY or UNIQUE index on the schema's key columns"
                } else {
                    ""
                };
                fatal(format!("{}: {doing} failed: {text}{hint}", self.name), e)
            }
        }
    }

    /// Creates the table for `schema` when asked to, or checks that it exists.
    fn ensure_table(&self, conn: &Connection, schema: &Schema) -> Result<(), DestinationError> {
        let exists: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type IN ('table', 'view') AND name = ?1)",
                [&self.options.table],
                |r| r.get(0),
            )
            .map_err(|e| self.classify("looking up the table", e))?;
        if exists {
            return Ok(());
        }
        if !self.options.create_table {
            return Err(DestinationError::fatal(format!(
                "{}: table {} does not exist; create it, or enable `with_create_table(true)` on the destination",
                self.name,
                quote(&self.options.table)
            )));
        }
        let table = quote(&self.options.table);
        let sql = match self.options.kind {
            SqliteTableKind::Keyed => {
                let mut columns: Vec<String> = schema
                    .fields()
                    .iter()
                    .map(|f| {
                        let not_null = if f.nullable { "" } else { " NOT NULL" };
                        format!("{} {}{not_null}", quote(&f.name), declared_type(&f.data_type))
                    })
                    .collect();
                let key: Vec<String> = schema.key_names().map(quote).collect();
                columns.push(format!("PRIMARY KEY ({})", key.join(", ")));
                format!("CREATE TABLE IF NOT EXISTS {table} ({})", columns.join(", "))
            }
            SqliteTableKind::Events => {
                let mut columns = vec![
                    "\"_rse_id\" INTEGER PRIMARY KEY AUTOINCREMENT".to_owned(),
                    "\"_rse_op\" TEXT NOT NULL".to_owned(),
                    "\"_rse_idempotency_key\" TEXT NOT NULL UNIQUE".to_owned(),
                ];
                // Every field nullable: a delete event carries only the key.
                columns.extend(
                    schema.fields().iter().map(|f| format!("{} {}", quote(&f.name), declared_type(&f.data_type))),
                );
                format!("CREATE TABLE IF NOT EXISTS {table} ({})", columns.join(", "))
            }
        };
        conn.execute_batch(&sql).map_err(|e| self.classify("creating the table", e))
    }
}

/// The statements for one schema.
struct Statements {
    upsert: String,
    delete: String,
    event: String,
}

impl Statements {
    fn new(table: &str, schema: &Schema) -> Statements {
        let table = quote(table);
        let names: Vec<String> = schema.fields().iter().map(|f| quote(&f.name)).collect();
        let marks = |n: usize| (1..=n).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
        let keys: Vec<String> = schema.key_names().map(quote).collect();
        let updates: Vec<String> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(i, _)| !schema.key_indices().contains(i))
            .map(|(_, f)| format!("{0} = excluded.{0}", quote(&f.name)))
            .collect();
        let on_conflict =
            if updates.is_empty() { "DO NOTHING".to_owned() } else { format!("DO UPDATE SET {}", updates.join(", ")) };
        let upsert = format!(
            "INSERT INTO {table} ({}) VALUES ({}) ON CONFLICT ({}) {on_conflict}",
            names.join(", "),
            marks(names.len()),
            keys.join(", ")
        );
        let delete = format!(
            "DELETE FROM {table} WHERE {}",
            keys.iter().enumerate().map(|(i, k)| format!("{k} = ?{}", i + 1)).collect::<Vec<_>>().join(" AND ")
        );
        let event = format!(
            "INSERT INTO {table} (\"_rse_op\", \"_rse_idempotency_key\", {}) VALUES ({}) \
             ON CONFLICT (\"_rse_idempotency_key\") DO NOTHING",
            names.join(", "),
            marks(names.len() + 2)
        );
        Statements { upsert, delete, event }
    }
}

/// One change, ready to bind.
enum Row {
    Upsert(Vec<SqlValue>),
    Delete(Vec<SqlValue>),
    /// `_rse_op`, `_rse_idempotency_key`, then every field.
    Event(Vec<SqlValue>),
    Refused(String),
}

/// The stored form of `value` (see the module docs); `None` when it does not fit `t`.
fn to_sql(value: &Value, t: &DataType) -> Option<SqlValue> {
    if !t.accepts(value) {
        return None;
    }
    Some(match value {
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Int(i) => SqlValue::Integer(*i),
        Value::Float(f) => SqlValue::Real(*f),
        Value::Decimal(d) => SqlValue::Text(d.as_str().to_owned()),
        Value::String(s) => SqlValue::Text(s.clone()),
        Value::Bytes(b) => SqlValue::Blob(b.to_vec()),
        Value::Date(d) => SqlValue::Text(format_date(*d)),
        Value::Timestamp(t) => SqlValue::Text(format_timestamp(*t)),
        Value::Json(j) => SqlValue::Text(canonical_json(j)),
        Value::List(items) => SqlValue::Text(canonical_json(&list_json(items))),
        // `Null` and any value type added later.
        _ => SqlValue::Null,
    })
}

/// A list as JSON, losing nothing: NaN, ±infinity and bytes as the PostgreSQL destination
/// writes them inside lists (see the module docs), dates and timestamps as this
/// destination's columns hold them.
fn list_json(items: &[Value]) -> serde_json::Value {
    use serde_json::Value as J;
    J::Array(
        items
            .iter()
            .map(|v| match v {
                Value::Bool(b) => J::Bool(*b),
                Value::Int(i) => J::from(*i),
                Value::Float(f) => sql_float_json(*f),
                Value::Decimal(d) => J::String(d.as_str().to_owned()),
                Value::String(s) => J::String(s.clone()),
                Value::Bytes(b) => J::String(sql_bytes_text(b)),
                Value::Date(d) => J::String(format_date(*d)),
                Value::Timestamp(t) => J::String(format_timestamp(*t)),
                Value::Json(j) => j.clone(),
                Value::List(inner) => list_json(inner),
                // `Null` and any value type added later.
                _ => J::Null,
            })
            .collect(),
    )
}

/// A float inside a list: a number, or for NaN and ±infinity, which JSON has no number
/// for, PostgreSQL's text for them (`"NaN"`, `"Infinity"`, `"-Infinity"`; `::float8` reads
/// it back).
fn sql_float_json(f: f64) -> serde_json::Value {
    use serde_json::Value as Json;
    serde_json::Number::from_f64(f).map_or_else(
        || {
            let text = if f.is_nan() {
                "NaN"
            } else if f > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            };
            Json::String(text.to_owned())
        },
        Json::Number,
    )
}

/// Bytes inside a list: `\x` and lower-case hex, PostgreSQL's `bytea` text (`::bytea` reads it back; SQLite `unhex(substr(v, 3))`).
fn sql_bytes_text(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(2 + 2 * bytes.len());
    text.push_str("\\x");
    for byte in bytes {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    text
}

/// The bindable rows of a batch; a value of the wrong type refuses its change before any SQL.
fn rows(kind: SqliteTableKind, batch: &ChangeBatch) -> Vec<Row> {
    let schema = &batch.schema;
    let convert = |values: &mut Vec<SqlValue>, value: &Value, field: usize| -> Result<(), String> {
        let Some(f) = schema.field(field) else {
            return Err(format!("the record has more values than the schema has fields ({})", schema.len()));
        };
        match to_sql(value, &f.data_type) {
            Some(v) => {
                values.push(v);
                Ok(())
            }
            None => Err(format!("field `{}` is declared {} but holds a {}", f.name, f.data_type, value.type_name())),
        }
    };
    batch
        .changes
        .iter()
        .map(|change| {
            let built: Result<Row, String> = (|| {
                let mut values = Vec::with_capacity(schema.len() + 2);
                if kind == SqliteTableKind::Events {
                    values.push(SqlValue::Text(change.op.as_str().to_owned()));
                    values.push(SqlValue::Text(change.idempotency_key.to_string()));
                }
                match (&change.record, change.op) {
                    (Some(record), op) if op != Op::Delete => {
                        if record.values.len() != schema.len() {
                            return Err(format!(
                                "the record has {} values for the schema's {} fields",
                                record.values.len(),
                                schema.len()
                            ));
                        }
                        for (i, v) in record.values.iter().enumerate() {
                            convert(&mut values, v, i)?;
                        }
                    }
                    _ => {
                        let key = change.key.decode().map_err(|e| format!("the change's key does not decode: {e}"))?;
                        if kind == SqliteTableKind::Keyed {
                            for (v, &i) in key.iter().zip(schema.key_indices()) {
                                convert(&mut values, v, i)?;
                            }
                            return Ok(Row::Delete(values));
                        }
                        let mut fields = vec![SqlValue::Null; schema.len()];
                        for (v, &i) in key.iter().zip(schema.key_indices()) {
                            let mut one = Vec::with_capacity(1);
                            convert(&mut one, v, i)?;
                            if let (Some(slot), Some(v)) = (fields.get_mut(i), one.pop()) {
                                *slot = v;
                            }
                        }
                        values.extend(fields);
                    }
                }
                Ok(match kind {
                    SqliteTableKind::Keyed => Row::Upsert(values),
                    SqliteTableKind::Events => Row::Event(values),
                })
            })();
            built.unwrap_or_else(Row::Refused)
        })
        .collect()
}

/// Whether a failure of one statement is a refusal of that change alone.
fn refuses_the_row(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(ErrorCode::ConstraintViolation | ErrorCode::TypeMismatch | ErrorCode::TooBig))
}

impl SqliteDestination {
    /// Opens (creating if needed) the SQLite file at `path` and switches it to WAL mode, so
    /// that readers of the app never wait for a write. The table is created (or checked) on
    /// the first write, when the schema is known.
    ///
    /// # Errors
    /// [`DestinationError::Fatal`] when the file cannot be opened or written (missing
    /// directory, read-only, not a database), [`DestinationError::Transient`] when another
    /// connection keeps it locked.
    pub async fn open(path: impl AsRef<Path>, options: SqliteDestinationOptions) -> Result<Self, DestinationError> {
        let path = path.as_ref().to_path_buf();
        let inner = tokio::task::spawn_blocking(move || Self::open_blocking(path, options))
            .await
            .map_err(|e| DestinationError::fatal(format!("sqlite destination: opening the file panicked: {e}")))??;
        Ok(Self { inner: Arc::new(inner) })
    }

    fn open_blocking(path: PathBuf, options: SqliteDestinationOptions) -> Result<Inner, DestinationError> {
        let name = format!("sqlite:{}:{}", path.display(), options.table);
        let conn = match Connection::open(&path) {
            Ok(conn) => conn,
            Err(e) => {
                let message = format!(
                    "{name}: cannot open {} ({e}); check that its directory exists and is writable",
                    path.display()
                );
                return Err(DestinationError::Fatal { message, source: Some(Box::new(e)) });
            }
        };
        let inner = Inner { path, name, options, conn: Mutex::new(Conn { conn, ready: Vec::new() }) };
        {
            let guard = lock(&inner.conn);
            let conn = &guard.conn;
            conn.busy_timeout(inner.options.busy_timeout).map_err(|e| inner.classify("configuring", e))?;
            let mode: String = conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                .map_err(|e| inner.classify("switching to WAL mode", e))?;
            if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
                tracing::warn!(destination = %inner.name, mode, "SQLite kept its journal mode; readers may wait for writes.");
            }
            // FULL: a change answered `Applied` survives a power loss, as the contract asks.
            conn.execute_batch("PRAGMA synchronous = FULL").map_err(|e| inner.classify("configuring", e))?;
        }
        Ok(inner)
    }

    /// The file this destination writes.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    async fn blocking<T: Send + 'static>(
        &self,
        doing: &'static str,
        f: impl FnOnce(&Inner, &mut Conn) -> Result<T, DestinationError> + Send + 'static,
    ) -> Result<T, DestinationError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = lock(&inner.conn);
            f(&inner, &mut conn)
        })
        .await
        .map_err(|e| DestinationError::fatal(format!("{}: {doing} panicked: {e}", self.inner.name)))?
    }
}

fn apply(
    inner: &Inner,
    conn: &mut Conn,
    schema: &Arc<Schema>,
    rows: Vec<Row>,
) -> Result<WriteOutcome, DestinationError> {
    if !conn.ready.iter().any(|s| Arc::ptr_eq(s, schema) || **s == **schema) {
        inner.ensure_table(&conn.conn, schema)?;
        conn.ready.push(schema.clone());
    }
    let statements = Statements::new(&inner.options.table, schema);
    let mut tx = conn
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| inner.classify("starting the transaction", e))?;
    let mut outcomes = WriteOutcomes::new(rows.len());
    for (i, row) in rows.into_iter().enumerate() {
        let (sql, values) = match row {
            Row::Refused(reason) => {
                outcomes.rejected(i, reason);
                continue;
            }
            Row::Upsert(v) => (&statements.upsert, v),
            Row::Delete(v) => (&statements.delete, v),
            Row::Event(v) => (&statements.event, v),
        };
        let mut sp = tx.savepoint().map_err(|e| inner.classify("starting a savepoint", e))?;
        let done = sp.prepare_cached(sql).and_then(|mut stmt| stmt.execute(params_from_iter(values))).map_err(|e| {
            if refuses_the_row(&e) {
                Failure::Row(e.to_string())
            } else {
                Failure::Batch(inner.classify("writing a change", e))
            }
        });
        match done {
            // Applied once the transaction commits below; nothing is answered before that.
            Ok(_) => {
                sp.commit().map_err(|e| inner.classify("releasing a savepoint", e))?;
                outcomes.applied(i);
            }
            Err(Failure::Row(reason)) => {
                sp.set_drop_behavior(DropBehavior::Rollback);
                sp.finish().map_err(|e| inner.classify("rolling back a refused change", e))?;
                outcomes.rejected(i, format!("table {}: {reason}", quote(&inner.options.table)));
            }
            // Dropping the savepoint and the transaction rolls the whole batch back.
            Err(Failure::Batch(e)) => return Err(e),
        }
    }
    tx.commit().map_err(|e| inner.classify("committing", e))?;
    outcomes.finish(&inner.name)
}

#[async_trait]
impl Destination for SqliteDestination {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn capabilities(&self) -> DestinationCapabilities {
        DestinationCapabilities::new(Op::ALL)
            .with_max_batch_rows(self.inner.options.max_batch_rows.max(1))
            .with_max_concurrency(1)
            .with_transactional(true)
            .with_idempotency_keys(self.inner.options.kind == SqliteTableKind::Events)
    }

    async fn check(&self) -> Result<(), DestinationError> {
        self.blocking("checking the file", |inner, conn| {
            conn.conn
                .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get::<_, i64>(0))
                .map_err(|e| inner.classify("reading the schema", e))?;
            if conn.conn.is_readonly(rusqlite::MAIN_DB).map_err(|e| inner.classify("checking access", e))? {
                return Err(DestinationError::fatal(format!(
                    "{}: {} is open read-only; make the file and its directory writable, or point the destination at another file",
                    inner.name,
                    inner.path.display()
                )));
            }
            Ok(())
        })
        .await
    }

    async fn write(&self, batch: &ChangeBatch) -> Result<WriteOutcome, DestinationError> {
        if batch.is_empty() {
            return Ok(WriteOutcome::default());
        }
        let rows = rows(self.inner.options.kind, batch);
        let schema = batch.schema.clone();
        self.blocking("writing a batch", move |inner, conn| apply(inner, conn, &schema, rows)).await
    }

    /// A keyed table reads back (see `read_back.rs`); an events table does not.
    fn read_back(&self) -> Option<&dyn ReadBack> {
        self.reads_back()
    }
}
