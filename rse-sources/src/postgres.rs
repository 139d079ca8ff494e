//! PostgreSQL source: a table, view or query, streamed through a server-side portal.
//!
//! Each read runs in one `REPEATABLE READ`, read-only transaction (a consistent snapshot)
//! and fetches the rows through a portal `batch_size` at a time, in PostgreSQL's binary
//! format, so a read of any size holds a few batches in memory.
//!
//! # Types
//!
//! | PostgreSQL | rse |
//! |---|---|
//! | `int2`, `int4`, `int8` | int |
//! | `numeric` | decimal, exact (`NaN` and infinities fail, naming the column) |
//! | `float4`, `float8` | float |
//! | `bool` | bool |
//! | `text`, `varchar`, `char(n)` (with its padding), `name` | string |
//! | `uuid` | string, lower-case and hyphenated |
//! | `date` | date (`±infinity` fails, naming the column) |
//! | `timestamptz` | timestamp |
//! | `timestamp` (no zone) | timestamp, **read as UTC** |
//! | `json`, `jsonb` | json |
//! | `bytea` | bytes |
//! | arrays of the above | list (a multi-dimensional array is a list of lists) |
//!
//! Any other type (`interval`, `money`, `point`, a domain or enum, …) fails with
//! [`SourceError::UnsupportedType`] naming the column and its type; cast it in a query
//! model (`SELECT id, amount::numeric AS amount …`).
//!
//! # Order and cursor
//!
//! In key order, rows come `ORDER BY` the key columns ascending, text under
//! `COLLATE "C"` (UTF-8 byte order, as rse's keys), `NULLS FIRST` (the runner reports a
//! null key as invalid). JSON and array key columns cannot be ordered and fail such a read
//! with [`SourceError::Unsupported`]. An incremental read returns the rows whose cursor
//! column is at or after the cursor (`>=`, so rows that tie with the last run's cursor are
//! read again and the runner's diff drops the unchanged ones); rows whose cursor is null are
//! read only by full reads.
//!
//! # Redshift
//!
//! Redshift speaks this protocol but is not PostgreSQL; this source is not tested against
//! it. What differs:
//! - it has no `uuid`, `jsonb` or array types, and its `SUPER`, `GEOMETRY` and `VARBYTE`
//!   columns are not mapped here (cast them to `varchar` in a query model);
//! - it does not know `COLLATE "C"`, so key-ordered reads fail there: read without key
//!   order (the runner's hash diff), or order a `COLLATE CASE_SENSITIVE` column yourself
//!   in a query model only if you have checked that it orders by bytes;
//! - a cursor's whole result is materialised on the leader node (within a size limit), so
//!   streaming bounds memory here but not there; for very large models `UNLOAD` to
//!   Parquet and read it with `ParquetSource` (feature `parquet`);
//! - this source asks for results in PostgreSQL's binary format, which Redshift may refuse
//!   for some types.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rse_core::{
    DataType, Decimal, Field, ReadRequest, Record, RowBatch, RowBatchStream, Schema, Source, SourceCapabilities,
    SourceError, Value,
};
use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, ToSql, Type};
use tokio_postgres::{Client, Config, IsolationLevel, Statement};

use crate::common::{Keys, Model, quote_ident};
use crate::postgres_tls::{self as tls, Mode};
use crate::stream::channel_stream;

/// Microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;

/// A model in PostgreSQL, read as a stream of batches.
///
/// ```no_run
/// use rse_sources::{Model, postgres::PostgresSource};
/// # fn demo() -> Result<(), rse_core::SourceError> {
/// let source = PostgresSource::from_url("postgres://rse@warehouse/analytics", Model::qualified("marts", "customers"))?
///     .with_key(["customer_id"])
///     .with_cursor("updated_at");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresSource {
    config: Config,
    pub(crate) model: Model,
    pub(crate) keys: Keys,
    name: String,
    connect_timeout: Option<Duration>,
    /// The URL's `sslmode`, for messages.
    ssl_mode: Mode,
    #[cfg(feature = "postgres-tls")]
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The schema of the warehouse-side diff's tables, when it is on.
    pub(crate) pushdown_schema: Option<String>,
    /// How many connections read one warehouse-side diff at once, when set.
    pub(crate) pushdown_readers: Option<usize>,
    /// The warehouse-side diff's open sessions, by sync (see [`crate::pushdown`]).
    pub(crate) pushdown_sessions: crate::pushdown::postgres::Sessions,
}

/// How long connecting may take when neither [`PostgresSource::with_connect_timeout`] nor
/// the URL's `connect_timeout` say.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl std::fmt::Debug for PostgresSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config may hold a password: show the model only.
        f.debug_struct("PostgresSource").field("model", &self.model).field("keys", &self.keys).finish_non_exhaustive()
    }
}

impl PostgresSource {
    /// Reads `model` from the database `config` connects to.
    pub fn new(config: Config, model: Model) -> Self {
        let name = format!("postgres:{}", model.label());
        Self {
            config,
            model,
            keys: Keys::default(),
            name,
            connect_timeout: None,
            ssl_mode: Mode::Prefer,
            #[cfg(feature = "postgres-tls")]
            tls: None,
            pushdown_schema: None,
            pushdown_readers: None,
            pushdown_sessions: Default::default(),
        }
    }

    /// Reads `model` from the database at `url` (`postgres://user:password@host:port/db`
    /// or a `key=value` connection string), with TLS as its `sslmode`, `sslrootcert`,
    /// `sslcert` and `sslkey` say (feature `postgres-tls`): `prefer` (the default)
    /// encrypts when the server offers TLS without checking its certificate; `require`
    /// and `verify-ca` check the certificate's chain, `verify-full` also the host name
    /// (use it); the roots are `sslrootcert` (a PEM file, or `system`), else Mozilla's
    /// public CAs. Without the feature `prefer` is plaintext and the others are refused.
    ///
    /// # Errors
    /// [`SourceError::Other`] when the URL does not parse, or its TLS settings cannot work
    /// (the URL is not repeated, as it may hold a password).
    pub fn from_url(url: &str, model: Model) -> Result<Self, SourceError> {
        let invalid = |message: String| SourceError::Other { message, source: None };
        let (rest, url_tls) = tls::split(url).map_err(|m| invalid(format!("the PostgreSQL connection URL: {m}")))?;
        let mut config: Config = rest.parse().map_err(|e| SourceError::Other {
            message: "the PostgreSQL connection URL does not parse; expected postgres://user@host:port/database"
                .to_owned(),
            source: Some(Box::new(e)),
        })?;
        config.ssl_mode(url_tls.mode.driver_mode());
        #[cfg(feature = "postgres-tls")]
        let client_config = tls::client_config(&url_tls).map_err(|m| invalid(format!("PostgreSQL TLS: {m}")))?;
        #[cfg(not(feature = "postgres-tls"))]
        if matches!(url_tls.mode, Mode::Require | Mode::VerifyCa | Mode::VerifyFull)
            || (url_tls.mode != Mode::Disable && (url_tls.root_cert.is_some() || url_tls.cert.is_some()))
        {
            return Err(invalid(format!(
                "sslmode={} (or a root or client certificate) needs TLS, and this build of rse-sources has none: \
                 enable its `postgres-tls` feature",
                url_tls.mode.as_str()
            )));
        }
        let mut source = Self::new(config, model);
        source.ssl_mode = url_tls.mode;
        #[cfg(feature = "postgres-tls")]
        {
            source.tls = client_config.map(Arc::new);
        }
        Ok(source)
    }

    /// Declares the key columns, in key order.
    pub fn with_key<I, S>(mut self, key: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.keys.key = key.into_iter().map(Into::into).collect();
        self
    }

    /// Declares the cursor column for incremental reads (a value that only grows when a
    /// row changes, e.g. `updated_at`).
    pub fn with_cursor(mut self, column: impl Into<String>) -> Self {
        self.keys.cursor = Some(column.into());
        self
    }

    /// Diffs in the warehouse: a sync keeps, in `schema` (which must exist; rse creates its
    /// tables there), the keys it delivered and a hash of each row, and a re-run reads only
    /// the new and changed rows and the vanished keys (see [`crate::pushdown`]). The user
    /// needs `USAGE` and `CREATE` on the schema. Needs PostgreSQL 14 or later and a key.
    ///
    /// A run holds connections of its own while it reads (its writes go through another;
    /// see [`PostgresSource::with_pushdown_readers`]),
    /// turns JIT off for its read, and, over a table whose key columns lead a b-tree index,
    /// hash joins too (a merge join over the index measured faster). A full re-diff ends by
    /// rewriting rse's table of the sync in key order (`CLUSTER`, then `ANALYZE`), which
    /// locks that table, and only it, for the rewrite.
    pub fn with_pushdown_schema(mut self, schema: impl Into<String>) -> Self {
        self.pushdown_schema = Some(schema.into());
        self
    }

    /// How many connections read a warehouse-side diff at once (default: 2, or 1 where the
    /// server's `max_parallel_workers_per_gather` is 0; at least 1). PostgreSQL runs a full join on one process, and hashing every row is most of a
    /// diff's work: with `n` readers the key space is cut into `n` slices at the bounds of
    /// the planner's histogram of rse's table, each read on its own connection, all on one
    /// snapshot. Measured at 1 M rows with nothing changed, on 2 cores shared with the
    /// server: a run took 0.77 s with one reader and 0.49 s with two. Only a table model (or view) whose first key column compares
    /// like the hash table's is cut, only a diff read that needs no key order, and by default
    /// only once rse's table holds 100,000 keys; other reads take one connection. When a
    /// reader's connection cannot be opened (a server or role at its connection limit), one
    /// connection reads the whole diff and a warning says so.
    pub fn with_pushdown_readers(mut self, readers: usize) -> Self {
        self.pushdown_readers = Some(readers.max(1));
        self
    }

    /// How long connecting may take, TCP, TLS and login together (default: the URL's
    /// `connect_timeout`, else [`DEFAULT_CONNECT_TIMEOUT`]). A server that accepts and never
    /// answers then fails the read as [`SourceError::Unavailable`] instead of hanging it.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Connects with TLS, verifying the server under `config` (roots, client
    /// certificates), instead of what the URL's `sslrootcert`, `sslcert` and `sslkey` say;
    /// its `sslmode` still says whether a server without TLS is refused.
    #[cfg(feature = "postgres-tls")]
    pub fn with_tls(mut self, config: rustls::ClientConfig) -> Self {
        self.tls = Some(Arc::new(config));
        self
    }

    pub(crate) async fn connect(&self) -> Result<Client, SourceError> {
        // tokio-postgres's own timeout covers only the TCP connect, not the login after it.
        let timeout =
            self.connect_timeout.or(self.config.get_connect_timeout().copied()).unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        tokio::time::timeout(timeout, self.connect_untimed()).await.unwrap_or_else(|_| {
            Err(SourceError::Unavailable {
                message: format!(
                    "connecting to PostgreSQL for `{}` timed out after {timeout:?} (TCP, TLS and login together); \
                     check the host and port, and that the server answers",
                    self.model.label()
                ),
                source: None,
            })
        })
    }

    async fn connect_untimed(&self) -> Result<Client, SourceError> {
        let failed = |e: tokio_postgres::Error| {
            let label = self.model.label();
            let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
            let mut no_tls = false;
            while let Some(c) = cause {
                no_tls |= c.to_string().contains("server does not support TLS");
                cause = c.source();
            }
            // Retrying does not change the server's TLS setting or a certificate.
            if no_tls {
                return SourceError::Other {
                    message: format!(
                        "connecting to PostgreSQL for `{label}`: the server does not offer TLS, and sslmode={} \
                         refuses plaintext; turn on `ssl` on the server (only on a network you trust, \
                         sslmode=prefer or disable accept plaintext)",
                        self.ssl_mode.as_str()
                    ),
                    source: Some(Box::new(e)),
                };
            }
            #[cfg(feature = "postgres-tls")]
            if let Some(why) = tls::explain(&e, self.ssl_mode) {
                return SourceError::Other {
                    message: format!("connecting to PostgreSQL for `{label}`: {why}"),
                    source: Some(Box::new(e)),
                };
            }
            SourceError::Unavailable {
                message: format!(
                    "connecting to PostgreSQL for `{label}` failed; check the server, URL and credentials"
                ),
                source: Some(Box::new(e)),
            }
        };
        #[cfg(feature = "postgres-tls")]
        if let Some(tls) = &self.tls {
            let connector = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
            let (client, connection) = self.config.connect(connector).await.map_err(failed)?;
            tokio::spawn(drive(connection));
            return Ok(client);
        }
        let (client, connection) = self.config.connect(tokio_postgres::NoTls).await.map_err(failed)?;
        tokio::spawn(drive(connection));
        Ok(client)
    }

    /// The schema and the wire kind of every column of `SELECT * FROM model`.
    pub(crate) async fn describe(&self, client: &Client) -> Result<(Arc<Schema>, Vec<Kind>), SourceError> {
        let sql = format!("SELECT * FROM {}", self.model.sql_from());
        let statement = client.prepare(&sql).await.map_err(|e| self.error(e))?;
        let mut fields = Vec::with_capacity(statement.columns().len());
        let mut kinds = Vec::with_capacity(statement.columns().len());
        for column in statement.columns() {
            let kind = Kind::of(column.type_()).ok_or_else(|| SourceError::UnsupportedType {
                column: column.name().to_owned(),
                native_type: column.type_().name().to_owned(),
                hint: Some(
                    "cast it to a supported type in a query model, e.g. `col::text` or `col::numeric`".to_owned(),
                ),
            })?;
            fields.push(Field::new(column.name(), kind.data_type()));
            kinds.push(kind);
        }
        Ok((self.keys.schema(fields, &self.model.label())?, kinds))
    }

    /// Classifies a driver error: missing things are `NotFound`, connection trouble
    /// `Unavailable`, the rest `Other`.
    pub(crate) fn error(&self, e: tokio_postgres::Error) -> SourceError {
        self.error_while(e, &format!("reading `{}`", self.model.label()))
    }

    /// As [`Self::error`], saying `doing` (e.g. "reading `marts.customers`") where the error
    /// has nothing more specific to say.
    pub(crate) fn error_while(&self, e: tokio_postgres::Error, doing: &str) -> SourceError {
        let label = self.model.label();
        if let Some(db) = e.as_db_error() {
            let code = db.code();
            if *code == SqlState::UNDEFINED_TABLE || *code == SqlState::INVALID_SCHEMA_NAME {
                let what = match &self.model {
                    Model::Query(_) => format!("a relation of the query model ({})", db.message()),
                    _ => format!("table or view `{label}`"),
                };
                return SourceError::NotFound {
                    what,
                    hint: Some("check the schema and name; names are case-sensitive".to_owned()),
                };
            }
            if *code == SqlState::UNDEFINED_COLUMN {
                return SourceError::NotFound { what: format!("a column of `{label}` ({})", db.message()), hint: None };
            }
            if code.code().starts_with("08")
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::TOO_MANY_CONNECTIONS
            {
                return SourceError::Unavailable {
                    message: format!("{doing}: {}", db.message()),
                    source: Some(Box::new(e)),
                };
            }
            return SourceError::Other { message: format!("{doing}: {}", db.message()), source: Some(Box::new(e)) };
        }
        if e.is_closed() || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()) {
            return SourceError::Unavailable {
                message: format!("{doing}: the connection failed"),
                source: Some(Box::new(e)),
            };
        }
        SourceError::Other { message: format!("{doing} failed"), source: Some(Box::new(e)) }
    }

    /// The read's SQL and its parameter.
    fn read_sql(
        &self,
        request: &ReadRequest,
        schema: &Schema,
        kinds: &[Kind],
    ) -> Result<(String, Option<Box<dyn ToSql + Sync + Send>>), SourceError> {
        let mut sql = format!("SELECT * FROM {}", self.model.sql_from());
        let mut param: Option<Box<dyn ToSql + Sync + Send>> = None;
        if let (Some(cursor), Some(column)) = (&request.cursor, &self.keys.cursor) {
            let index = schema.index_of(column).unwrap_or_default();
            let kind = kinds.get(index).cloned().unwrap_or(Kind::Text);
            let col = quote_ident(column);
            let (condition, p): (String, Box<dyn ToSql + Sync + Send>) = match (cursor, &kind) {
                (Value::Int(i), _) => (format!("{col} >= $1::int8"), Box::new(*i)),
                (Value::Float(f), _) => (format!("{col} >= $1::float8"), Box::new(*f)),
                (Value::Decimal(d), _) => (format!("{col} >= $1::text::numeric"), Box::new(d.as_str().to_owned())),
                (Value::Bool(b), _) => (format!("{col} >= $1::bool"), Box::new(*b)),
                (Value::String(s), Kind::Uuid) => (format!("{col} >= $1::text::uuid"), Box::new(s.clone())),
                (Value::String(s), _) => (format!("{col} COLLATE \"C\" >= $1::text"), Box::new(s.clone())),
                (Value::Date(d), _) => (format!("{col} >= '1970-01-01'::date + $1::int4"), Box::new(*d)),
                (Value::Timestamp(t), Kind::Timestamp) => (
                    format!("{col} >= '1970-01-01 00:00:00'::timestamp + $1::int8::float8 * interval '1 microsecond'"),
                    Box::new(*t),
                ),
                (Value::Timestamp(t), _) => (
                    format!(
                        "{col} >= '1970-01-01 00:00:00+00'::timestamptz + $1::int8::float8 * interval '1 microsecond'"
                    ),
                    Box::new(*t),
                ),
                (other, _) => {
                    return Err(SourceError::Unsupported(format!(
                        "cursor column `{column}` of `{}` holds a {} cursor, which PostgreSQL cannot compare; use a number, text, date or timestamp column",
                        self.model.label(),
                        other.type_name()
                    )));
                }
            };
            sql.push_str(" WHERE ");
            sql.push_str(&condition);
            param = Some(p);
        }
        if request.order_by_key {
            let mut order = Vec::new();
            for &i in schema.key_indices() {
                let (Some(field), Some(kind)) = (schema.field(i), kinds.get(i)) else { continue };
                let collate = match kind {
                    Kind::Text => " COLLATE \"C\"",
                    Kind::Json | Kind::Jsonb | Kind::Array(_) => {
                        return Err(SourceError::Unsupported(format!(
                            "key column `{}` of `{}` is {}, which PostgreSQL cannot order as rse does; read without key order",
                            field.name,
                            self.model.label(),
                            field.data_type
                        )));
                    }
                    _ => "",
                };
                order.push(format!("{}{collate} ASC NULLS FIRST", quote_ident(&field.name)));
            }
            if order.is_empty() {
                return Err(SourceError::Unsupported(format!(
                    "`{}` has no key columns to order by; declare them with with_key",
                    self.model.label()
                )));
            }
            sql.push_str(" ORDER BY ");
            sql.push_str(&order.join(", "));
        }
        Ok((sql, param))
    }

    /// Reads on `client` inside one snapshot, sending batches until done or the reader leaves.
    async fn produce(
        &self,
        mut client: Client,
        request: ReadRequest,
        schema: Arc<Schema>,
        kinds: Vec<Kind>,
        tx: &mpsc::Sender<Result<RowBatch, SourceError>>,
    ) -> Result<(), SourceError> {
        let (sql, param) = self.read_sql(&request, &schema, &kinds)?;
        let transaction = snapshot(&mut client).await.map_err(|e| self.error(e))?;
        let statement: Statement = transaction.prepare(&sql).await.map_err(|e| self.error(e))?;
        let params: Vec<&(dyn ToSql + Sync)> = param.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
        if statement.params().len() != params.len() {
            return Err(SourceError::Other {
                message: format!(
                    "query model `{}` takes {} parameters; a query model must not contain `$n` placeholders",
                    self.model.label(),
                    statement.params().len().saturating_sub(params.len())
                ),
                source: None,
            });
        }
        let portal = transaction.bind(&statement, &params).await.map_err(|e| self.error(e))?;
        let batch_size = request.batch_size.clamp(1, i32::MAX as usize);
        let fetch = || async { transaction.query_portal(&portal, batch_size as i32).await.map_err(|e| self.error(e)) };
        // Decodes and sends one fetch's rows; `false` when the reader has left.
        let deliver = |rows: Vec<tokio_postgres::Row>| async {
            if rows.is_empty() {
                return Ok(true);
            }
            let mut records = Vec::with_capacity(rows.len());
            for row in &rows {
                records.push(decode_row(row, &kinds, &schema)?);
            }
            drop(rows);
            Ok::<_, SourceError>(tx.send(Ok(RowBatch::new(schema.clone(), records))).await.is_ok())
        };
        let mut rows = fetch().await?;
        // The next batch is asked for before this one is decoded (`join!` polls the fetch
        // first, which sends it), so the server produces it while this process decodes:
        // the read's two halves overlap instead of taking turns.
        while rows.len() == batch_size {
            let (next, delivered) = tokio::join!(fetch(), deliver(rows));
            if !delivered? {
                return Ok(());
            }
            rows = next?;
        }
        if !deliver(rows).await? {
            return Ok(());
        }
        // Read-only: commit and rollback are the same; commit ends it cleanly.
        transaction.commit().await.map_err(|e| self.error(e))
    }
}

/// A read-only transaction on one snapshot (`REPEATABLE READ`): every row of a read, and a
/// diff's changed rows and vanished keys, as of one moment.
pub(crate) async fn snapshot(client: &mut Client) -> Result<tokio_postgres::Transaction<'_>, tokio_postgres::Error> {
    client.build_transaction().read_only(true).isolation_level(IsolationLevel::RepeatableRead).start().await
}

/// Runs a connection until its client is dropped.
async fn drive<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(error) = connection.await {
        tracing::debug!(%error, "PostgreSQL source connection ended.");
    }
}

/// How a column's binary value is decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Int2,
    Int4,
    Int8,
    Numeric,
    Float4,
    Float8,
    Text,
    Uuid,
    Date,
    Timestamp,
    TimestampTz,
    Json,
    Jsonb,
    Bytea,
    Array(Box<Kind>),
}

impl Kind {
    fn of(ty: &Type) -> Option<Kind> {
        const SCALARS: [(Type, Kind); 17] = [
            (Type::BOOL, Kind::Bool),
            (Type::INT2, Kind::Int2),
            (Type::INT4, Kind::Int4),
            (Type::INT8, Kind::Int8),
            (Type::NUMERIC, Kind::Numeric),
            (Type::FLOAT4, Kind::Float4),
            (Type::FLOAT8, Kind::Float8),
            (Type::TEXT, Kind::Text),
            (Type::VARCHAR, Kind::Text),
            (Type::BPCHAR, Kind::Text),
            (Type::NAME, Kind::Text),
            (Type::UUID, Kind::Uuid),
            (Type::DATE, Kind::Date),
            (Type::TIMESTAMP, Kind::Timestamp),
            (Type::TIMESTAMPTZ, Kind::TimestampTz),
            (Type::JSON, Kind::Json),
            (Type::JSONB, Kind::Jsonb),
        ];
        if let Some((_, kind)) = SCALARS.iter().find(|(t, _)| t == ty) {
            return Some(kind.clone());
        }
        if *ty == Type::BYTEA {
            return Some(Kind::Bytea);
        }
        match ty.kind() {
            tokio_postgres::types::Kind::Array(inner) => match Kind::of(inner)? {
                Kind::Array(_) => None,
                inner => Some(Kind::Array(Box::new(inner))),
            },
            _ => None,
        }
    }

    fn data_type(&self) -> DataType {
        match self {
            Kind::Bool => DataType::Bool,
            Kind::Int2 | Kind::Int4 | Kind::Int8 => DataType::Int,
            Kind::Numeric => DataType::Decimal,
            Kind::Float4 | Kind::Float8 => DataType::Float,
            Kind::Text | Kind::Uuid => DataType::String,
            Kind::Date => DataType::Date,
            Kind::Timestamp | Kind::TimestampTz => DataType::Timestamp,
            Kind::Json | Kind::Jsonb => DataType::Json,
            Kind::Bytea => DataType::Bytes,
            Kind::Array(inner) => DataType::List(Box::new(inner.data_type())),
        }
    }
}

/// The raw binary value of any column, decoded by [`decode`] according to its [`Kind`].
struct Raw<'a>(&'a [u8]);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

pub(crate) fn decode_row(row: &tokio_postgres::Row, kinds: &[Kind], schema: &Schema) -> Result<Record, SourceError> {
    let mut values = Vec::with_capacity(kinds.len());
    for (i, kind) in kinds.iter().enumerate() {
        let column = || schema.field(i).map(|f| f.name.as_str()).unwrap_or_default().to_owned();
        let raw: Option<Raw<'_>> = row.try_get(i).map_err(|e| SourceError::Malformed {
            location: format!("column `{}`", column()),
            reason: format!("the server sent a value rse could not take ({e})"),
        })?;
        let value = match raw {
            None => Value::Null,
            Some(Raw(bytes)) => decode(kind, bytes)
                .map_err(|reason| SourceError::Malformed { location: format!("column `{}`", column()), reason })?,
        };
        values.push(value);
    }
    Ok(Record::new(values))
}

fn fixed<const N: usize>(raw: &[u8]) -> Result<[u8; N], String> {
    raw.try_into().map_err(|_| format!("expected {N} bytes of binary data, got {}", raw.len()))
}

/// Decodes one value in PostgreSQL's binary format.
fn decode(kind: &Kind, raw: &[u8]) -> Result<Value, String> {
    Ok(match kind {
        Kind::Bool => Value::Bool(fixed::<1>(raw)?[0] != 0),
        Kind::Int2 => Value::Int(i16::from_be_bytes(fixed(raw)?).into()),
        Kind::Int4 => Value::Int(i32::from_be_bytes(fixed(raw)?).into()),
        Kind::Int8 => Value::Int(i64::from_be_bytes(fixed(raw)?)),
        Kind::Float4 => Value::Float(f32::from_be_bytes(fixed(raw)?).into()),
        Kind::Float8 => Value::Float(f64::from_be_bytes(fixed(raw)?)),
        Kind::Numeric => Value::Decimal(decode_numeric(raw)?),
        Kind::Text => {
            Value::String(std::str::from_utf8(raw).map_err(|_| "text is not valid UTF-8".to_owned())?.to_owned())
        }
        Kind::Uuid => Value::String(format_uuid(&fixed::<16>(raw)?)),
        Kind::Date => match i32::from_be_bytes(fixed(raw)?) {
            i32::MAX | i32::MIN => {
                return Err(
                    "the date is infinite, which rse cannot represent; filter or cast it in the model".to_owned()
                );
            }
            days => Value::Date(days.checked_add(PG_EPOCH_DAYS).ok_or("the date is out of range")?),
        },
        Kind::Timestamp | Kind::TimestampTz => match i64::from_be_bytes(fixed(raw)?) {
            i64::MAX | i64::MIN => {
                return Err(
                    "the timestamp is infinite, which rse cannot represent; filter or cast it in the model".to_owned()
                );
            }
            micros => Value::Timestamp(micros.checked_add(PG_EPOCH_MICROS).ok_or("the timestamp is out of range")?),
        },
        Kind::Json => Value::Json(serde_json::from_slice(raw).map_err(|_| "the json value does not parse".to_owned())?),
        Kind::Jsonb => match raw.split_first() {
            Some((1, text)) => {
                Value::Json(serde_json::from_slice(text).map_err(|_| "the jsonb value does not parse".to_owned())?)
            }
            _ => return Err("unknown jsonb binary version".to_owned()),
        },
        Kind::Bytea => Value::Bytes(raw.to_vec().into()),
        Kind::Array(inner) => decode_array(inner, raw)?,
    })
}

fn format_uuid(b: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 0xF)] as char);
    }
    out
}

/// `numeric` binary: ndigits, weight, sign, dscale (i16/u16 each), then base-10000 digits.
fn decode_numeric(raw: &[u8]) -> Result<Decimal, String> {
    let short = || "truncated numeric".to_owned();
    let word = |at: usize| raw.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]])).ok_or_else(short);
    let ndigits = word(0)? as usize;
    let weight = i64::from(word(2)? as i16);
    let sign = word(4)?;
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => {
            return Err("the numeric is NaN, which a decimal cannot hold; filter or cast it in the model".to_owned());
        }
        _ => {
            return Err(
                "the numeric is infinite, which a decimal cannot hold; filter or cast it in the model".to_owned()
            );
        }
    }
    if ndigits == 0 {
        return Ok(Decimal::from_scaled(0, 0));
    }
    let negative = sign == 0x4000;
    let mut groups = Vec::with_capacity(ndigits);
    for i in 0..ndigits {
        let digit = word(8 + 2 * i)?;
        if digit > 9999 {
            return Err("invalid numeric digit".to_owned());
        }
        groups.push(i128::from(digit));
    }
    // value = groups as a base-10000 integer × 10^exponent.
    let exponent = (weight - (ndigits as i64 - 1)) * 4;
    if ndigits <= 9 && (-1_000..=0).contains(&exponent) {
        // Up to 36 digits fit an i128: no text round trip.
        let unscaled = groups.iter().fold(0i128, |n, &g| n * 10_000 + g);
        let scale = u32::try_from(-exponent).map_err(|_| "the numeric does not fit a decimal".to_owned())?;
        return Ok(Decimal::from_scaled(if negative { -unscaled } else { unscaled }, scale));
    }
    let mut text = String::with_capacity(ndigits * 4 + 12);
    if negative {
        text.push('-');
    }
    for g in groups {
        let g = g as u16;
        for d in [g / 1000, g / 100 % 10, g / 10 % 10, g % 10] {
            text.push(char::from(b'0' + d as u8));
        }
    }
    text.push('e');
    text.push_str(&exponent.to_string());
    Decimal::parse(&text).map_err(|_| "the numeric does not fit a decimal".to_owned())
}

/// Array binary: ndim, has-null flag, element oid, (length, lower bound) per dimension,
/// then each element as a length (−1 for null) and its bytes.
fn decode_array(inner: &Kind, raw: &[u8]) -> Result<Value, String> {
    let short = || "truncated array".to_owned();
    let int = |at: usize| raw.get(at..at + 4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]])).ok_or_else(short);
    let ndim = usize::try_from(int(0)?).map_err(|_| "invalid array dimensions".to_owned())?;
    if ndim == 0 {
        return Ok(Value::List(Vec::new()));
    }
    if ndim > 6 {
        return Err("array has more dimensions than PostgreSQL allows".to_owned());
    }
    let mut dims = Vec::with_capacity(ndim);
    for d in 0..ndim {
        dims.push(usize::try_from(int(12 + 8 * d)?).map_err(|_| "invalid array length".to_owned())?);
    }
    let mut at = 12 + 8 * ndim;
    let total: usize = dims.iter().product();
    let mut elements = Vec::with_capacity(total.min(raw.len() / 4));
    for _ in 0..total {
        let len = int(at)?;
        at += 4;
        if len < 0 {
            elements.push(Value::Null);
            continue;
        }
        let end = at.checked_add(len as usize).filter(|&e| e <= raw.len()).ok_or_else(short)?;
        elements.push(decode(inner, &raw[at..end])?);
        at = end;
    }
    // Fold the flat elements into nested lists, innermost dimension first.
    for &dim in dims[1..].iter().rev() {
        let mut grouped = Vec::with_capacity(elements.len() / dim.max(1));
        let mut it = elements.into_iter();
        loop {
            let chunk: Vec<Value> = it.by_ref().take(dim).collect();
            if chunk.is_empty() {
                break;
            }
            grouped.push(Value::List(chunk));
        }
        elements = grouped;
    }
    Ok(Value::List(elements))
}

#[async_trait]
impl Source for PostgresSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> SourceCapabilities {
        let mut capabilities = SourceCapabilities::default().with_ordered_by_key(!self.keys.key.is_empty());
        if let Some(cursor) = &self.keys.cursor {
            capabilities = capabilities.with_cursor_field(cursor.clone());
        }
        capabilities.pushdown = true;
        capabilities
    }

    async fn schema(&self) -> Result<Arc<Schema>, SourceError> {
        let client = self.connect().await?;
        Ok(self.describe(&client).await?.0)
    }

    fn pushdown(&self) -> Option<&dyn rse_core::PushdownSource> {
        self.pushdown_schema.as_ref().map(|_| self as &dyn rse_core::PushdownSource)
    }

    async fn read(&self, request: ReadRequest) -> Result<RowBatchStream<'_>, SourceError> {
        let client = self.connect().await?;
        let (schema, kinds) = self.describe(&client).await?;
        // Check the request before streaming, so a bad one fails the call itself.
        self.read_sql(&request, &schema, &kinds)?;
        let (tx, rx) = mpsc::channel(crate::stream::IN_FLIGHT);
        let source = self.clone();
        let handle = tokio::spawn(async move {
            if let Err(e) = source.produce(client, request, schema, kinds, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(channel_stream(self.name.clone(), rx, handle))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numerics_decode_exactly() {
        // 12345678901234567890.125 = digits 1234 5678 9012 3456 7890 1250, weight 4.
        let mut raw = vec![0, 6, 0, 4, 0, 0, 0, 3];
        for d in [1234u16, 5678, 9012, 3456, 7890, 1250] {
            raw.extend_from_slice(&d.to_be_bytes());
        }
        assert_eq!(decode_numeric(&raw).map(|d| d.to_string()), Ok("12345678901234567890.125".to_owned()));
        // -0.0001 = digit 1, weight -1, negative.
        let raw = [0, 1, 0xFF, 0xFF, 0x40, 0, 0, 4, 0, 1];
        assert_eq!(decode_numeric(&raw).map(|d| d.to_string()), Ok("-0.0001".to_owned()));
        assert!(decode_numeric(&[0, 0, 0, 0, 0xC0, 0, 0, 0]).is_err());
        // 100000000 = digit 1, weight 2: a positive exponent takes the text path.
        let raw = [0, 1, 0, 2, 0, 0, 0, 0, 0, 1];
        assert_eq!(decode_numeric(&raw).map(|d| d.to_string()), Ok("100000000".to_owned()));
    }

    #[test]
    fn uuids_format_lower_case_hyphenated() {
        let b = [0xA0, 0xEE, 0xBC, 0x99, 0x9C, 0x0B, 0x4E, 0xF8, 0xBB, 0x6D, 0x6B, 0xB9, 0xBD, 0x38, 0x0A, 0x11];
        assert_eq!(format_uuid(&b), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    }
}
