//! The warehouse-side diff on PostgreSQL: [`PushdownSource`] for [`PostgresSource`].
//!
//! The hash table of each sync lives in the schema named by
//! [`PostgresSource::with_pushdown_schema`], created as `CREATE TABLE … AS SELECT <key> …
//! WITH NO DATA` from the model so that its key columns have exactly the model's types
//! (length, precision, collation), with a unique index on the key. The diff runs in
//! `REPEATABLE READ`, read-only transactions on one snapshot, so the changed rows and the
//! vanished keys come from the same moment, and streams without a row limit. A diff read
//! that needs no key order is cut into slices of the key space at the bounds of the
//! planner's histogram of the hash table, each read by a connection of its own
//! ([`PostgresSource::with_pushdown_readers`]); the first exports its snapshot
//! (`pg_export_snapshot`) and the others import it before any of them reads. Keys are
//! written as `text[]` arrays cast to the key columns' types (read back from the catalog),
//! one statement per batch.
//!
//! A run holds one *session* per sync, opened by [`PushdownSource::epoch`] (the first call
//! of every run) and closed by [`PushdownSource::finish`]: one connection for the writes,
//! the model described once, the tables checked once and the write statements prepared
//! once. The diff read streams on connections of its own, because its read-only
//! transactions stay open while the writes go on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use rse_core::{
    Key, PushdownBatch, PushdownSource, PushdownStream, ReadRequest, RowBatch, RowHash, Schema, SourceError, Value,
};
use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use super::{Dialect, HASH_COLUMN, HashColumn, HashTable, KeyColumn, KeyRange, PushdownSql};
use crate::common::{Model, quote_ident};
use crate::postgres::{Kind, PostgresSource, decode_row, snapshot};

/// How long a diff read waits for more rows before it hands out a smaller batch.
const LINGER: std::time::Duration = std::time::Duration::from_millis(50);

/// How many connections read a diff unless [`PostgresSource::with_pushdown_readers`] says.
const DEFAULT_READERS: usize = 2;

/// The fewest keys in rse's table for which a diff is read by several connections: below,
/// a connection's setup costs more than its share of the scan saves.
const MIN_KEYS_TO_SPLIT: f64 = 100_000.0;

/// How a diff read may be cut into slices of the key space (see `Session::split`).
#[derive(Debug)]
struct Split {
    /// How many connections read at once.
    readers: usize,
    /// The model's first key column may be `NULL`: those rows are read as a slice of their own.
    nullable: bool,
    /// The first key column's type, to which the histogram's bounds are cast.
    key_type: String,
}

/// One connection's share of a diff read: the key slices it reads in turn, each with its
/// bounds (as the first key column's text).
#[derive(Debug)]
struct Slice {
    reads: Vec<(KeyRange, Vec<String>)>,
}

impl Slice {
    fn of(range: KeyRange, bounds: Vec<String>) -> Self {
        Self { reads: vec![(range, bounds)] }
    }
}

/// The slices of a read by `bounds.len() + 1` connections: below the first bound (and the
/// `NULL` keys, when the key may be `NULL`), between neighbouring bounds, from the last on.
fn slices_at(bounds: &[String], nullable: bool) -> Vec<Slice> {
    let (Some(first), Some(last)) = (bounds.first(), bounds.last()) else {
        return vec![Slice::of(KeyRange::All, Vec::new())];
    };
    let mut below = Slice::of(KeyRange::Below, vec![first.clone()]);
    if nullable {
        below.reads.push((KeyRange::Null, Vec::new()));
    }
    let mut out = vec![below];
    out.extend(bounds.windows(2).map(|w| Slice::of(KeyRange::Between, w.to_vec())));
    out.push(Slice::of(KeyRange::From, vec![last.clone()]));
    out
}

/// `readers - 1` bounds that cut the histogram's `values` (ascending, equal-frequency bucket
/// bounds) into `readers` parts of about as many keys each; fewer where values repeat.
fn cut(values: &[String], readers: usize) -> Vec<String> {
    if values.len() < 3 || readers < 2 {
        return Vec::new();
    }
    let last = values.len() - 1;
    let mut bounds: Vec<String> = (1..readers).map(|i| values[i * last / readers].clone()).collect();
    bounds.dedup();
    bounds
}

/// What a diff read reads: the model's description and statements, and which rows.
struct Diff<'a> {
    schema: Arc<Schema>,
    kinds: &'a [Kind],
    sql: &'a PushdownSql,
    read: Read,
    key_indexed: bool,
}

/// Which rows a diff read hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    Changed,
    Full,
}

impl PostgresSource {
    fn pushdown_schema(&self) -> Result<&str, SourceError> {
        self.pushdown_schema.as_deref().ok_or_else(|| {
            SourceError::Unsupported(
                "the warehouse-side diff is off for this source; turn it on with with_pushdown_schema".to_owned(),
            )
        })
    }

    /// The statements for `sync_id`, for a model of `schema`/`kinds`, keys untyped.
    fn pushdown_sql(&self, sync_id: &str, schema: &Schema, kinds: &[Kind]) -> Result<PushdownSql, SourceError> {
        let table = HashTable::for_sync(self.pushdown_schema()?, sync_id);
        let columns = schema.fields().iter().zip(kinds).map(|(f, kind)| match kind {
            // `json` has no hash function; its text is what the source reads anyway.
            Kind::Json => HashColumn::as_text(&f.name),
            Kind::Array(inner) if **inner == Kind::Json => HashColumn::as_text(&f.name),
            _ => HashColumn::new(&f.name),
        });
        if self.keys.key.is_empty() {
            return Err(SourceError::Unsupported(format!(
                "the warehouse-side diff of `{}` needs the key columns; declare them with with_key",
                self.model.label()
            )));
        }
        let key = self.keys.key.iter().map(|name| {
            let text = schema.index_of(name).and_then(|i| kinds.get(i)).is_some_and(|k| *k == Kind::Text);
            KeyColumn::new(name).with_text(text)
        });
        let sql = PushdownSql::new(Dialect::Postgres, self.model.clone(), table).with_columns(columns).with_key(key);
        sql.check()?;
        Ok(sql)
    }

    /// The open session of `sync_id`, or a new one when there is none or its connection
    /// closed.
    async fn session(&self, sync_id: &str) -> Result<Arc<Session>, SourceError> {
        let open = self.pushdown_sessions.lock().ok().and_then(|s| s.get(sync_id).cloned());
        match open {
            Some(session) if !session.client.is_closed() => Ok(session),
            _ => self.open_session(sync_id).await,
        }
    }

    /// Connects, describes the model, creates the tables when missing and prepares the
    /// statements; the session replaces any earlier one of `sync_id`.
    async fn open_session(&self, sync_id: &str) -> Result<Arc<Session>, SourceError> {
        let client = self.connect().await?;
        let (schema, kinds) = self.describe(&client).await?;
        let sql = self.pushdown_sql(sync_id, &schema, &kinds)?;
        let table = sql.table();
        let existed: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2)",
                &[&table.schema, &table.name],
            )
            .await
            .map_err(|e| self.pushdown_error(e, &sql))?
            .get(0);
        self.ensure_tables(&client, sync_id, &sql).await?;
        let sql = self.typed(&client, &sql).await?;
        let failed = |e| self.pushdown_error(e, &sql);
        if !existed {
            // A hash table created now holds none of the keys the destination may hold (it
            // was dropped, or this is a first run): no epoch, so the run re-diffs in full and
            // adds them back, and a later delete of one is not missed.
            client.execute(&sql.write_epoch()?.sql, &[&sync_id, &None::<String>]).await.map_err(failed)?;
        }
        let intents = client.prepare(&sql.record_intents(0)?.sql).await.map_err(failed)?;
        let delivered = sql.record_delivered(1, 1)?;
        let delete = client.prepare(&delivered[0].sql).await.map_err(failed)?;
        let upsert = client.prepare(&delivered[1].sql).await.map_err(failed)?;
        let key_indexed = self.key_indexed(&client).await?;
        let split = self.split(&client, &sql).await?;
        let session = Arc::new(Session { client, schema, kinds, sql, key_indexed, split, intents, delete, upsert });
        if let Ok(mut sessions) = self.pushdown_sessions.lock() {
            sessions.insert(sync_id.to_owned(), session.clone());
        }
        Ok(session)
    }

    /// Whether the model is a table with a plain b-tree index whose leading columns are the
    /// key columns (in any order): the index hands the model out in key order.
    async fn key_indexed(&self, client: &Client) -> Result<bool, SourceError> {
        if matches!(self.model, Model::Query(_)) {
            return Ok(false);
        }
        let row = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid \
                 JOIN pg_am am ON am.oid = x.relam \
                 WHERE i.indrelid = to_regclass($1) AND am.amname = 'btree' AND i.indpred IS NULL \
                 AND i.indexprs IS NULL AND i.indnkeyatts >= cardinality($2::text[]) \
                 AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text) FROM pg_attribute a \
                      WHERE a.attrelid = i.indrelid \
                      AND a.attnum = ANY ((i.indkey::int2[])[0:cardinality($2::text[]) - 1])) \
                   = (SELECT array_agg(k ORDER BY k) FROM unnest($2::text[]) AS k))",
                &[&self.model.sql_from(), &self.keys.key],
            )
            .await
            .map_err(|e| self.error(e))?;
        Ok(row.get(0))
    }

    /// Whether and how a diff read may be cut among connections: more than one reader
    /// (asked, or by default where the server runs parallel queries), a
    /// table model whose first key column compares like the hash table's (the same type and,
    /// for a collatable type, the same collation), and the key's type known.
    async fn split(&self, client: &Client, sql: &PushdownSql) -> Result<Option<Split>, SourceError> {
        let failed = |e| self.pushdown_error(e, sql);
        let readers = match self.pushdown_readers {
            Some(n) => n,
            None => {
                let row = client
                    .query_one("SELECT current_setting('max_parallel_workers_per_gather')::int", &[])
                    .await
                    .map_err(failed)?;
                if row.get::<_, i32>(0) == 0 { 1 } else { DEFAULT_READERS }
            }
        };
        if readers < 2 {
            return Ok(None);
        }
        let (Some(first), Model::Table { .. }) = (sql.key().first(), &self.model) else { return Ok(None) };
        let Some(key_type) = first.sql_type.clone() else { return Ok(None) };
        let table = sql.table();
        let hash_table = Dialect::Postgres.qualified(&table.schema, &table.name);
        let row = client
            .query_opt(
                "SELECT h.atttypid = m.atttypid AND (t.typcollation = 0 OR h.attcollation = m.attcollation), \
                 NOT m.attnotnull FROM pg_attribute h JOIN pg_type t ON t.oid = h.atttypid \
                 JOIN pg_attribute m ON m.attrelid = to_regclass($3) AND m.attname = $2 \
                 AND m.attnum > 0 AND NOT m.attisdropped \
                 WHERE h.attrelid = to_regclass($1) AND h.attname = $2 AND h.attnum > 0 AND NOT h.attisdropped",
                &[&hash_table, &first.name, &self.model.sql_from()],
            )
            .await
            .map_err(failed)?;
        Ok(match row {
            Some(row) if row.get::<_, bool>(0) => Some(Split { readers, nullable: row.get(1), key_type }),
            _ => None,
        })
    }

    /// The slices of this run's unordered diff read: cut at the bounds of the planner's
    /// histogram of rse's table (its key distribution as of the last `ANALYZE`), or one slice
    /// of every key when the table is small, has no histogram yet, or the cut fails.
    async fn slices(&self, session: &Session, split: &Split) -> Vec<Slice> {
        let table = session.sql.table();
        let Some(first) = session.sql.key().first() else { return slices_at(&[], false) };
        let name = Dialect::Postgres.qualified(&table.schema, &table.name);
        // The bounds leave as text, cast to the key's type and back, so that they compare
        // as keys and bind as the statements' text bounds.
        let sql = format!(
            "SELECT c.reltuples::float8, ARRAY(SELECT b::text FROM unnest(( \
             SELECT s.histogram_bounds::text FROM pg_stats s \
             WHERE s.schemaname = $1 AND s.tablename = $2 AND s.attname = $3)::{}[]) WITH ORDINALITY AS u(b, i) \
             ORDER BY i) FROM pg_class c WHERE c.oid = to_regclass($4)",
            split.key_type
        );
        let row = session.client.query_opt(&sql, &[&table.schema, &table.name, &first.name, &name]).await;
        // Readers asked for cut any table; by default only a large one is worth the connections.
        let min_keys = if self.pushdown_readers.is_some() { 0.0 } else { MIN_KEYS_TO_SPLIT };
        let values = match row {
            Ok(Some(row)) if row.get::<_, f64>(0) >= min_keys => row.get::<_, Vec<String>>(1),
            Ok(_) => Vec::new(),
            Err(error) => {
                tracing::debug!(
                    %error,
                    table = %table.name,
                    "No histogram of rse's hash table; the diff is read on one connection."
                );
                Vec::new()
            }
        };
        slices_at(&cut(&values, split.readers), split.nullable)
    }

    /// Forgets the session of `sync_id` when a write on it failed for the connection, so the
    /// next call connects again.
    fn drop_session(&self, sync_id: &str, session: &Arc<Session>) {
        if let Ok(mut sessions) = self.pushdown_sessions.lock()
            && sessions.get(sync_id).is_some_and(|s| Arc::ptr_eq(s, session))
        {
            sessions.remove(sync_id);
        }
    }

    /// A write on `session` failed: the error, and the session dropped when its connection
    /// is gone.
    fn write_failed(&self, sync_id: &str, session: &Arc<Session>, e: tokio_postgres::Error) -> SourceError {
        if session.client.is_closed() || e.is_closed() {
            self.drop_session(sync_id, session);
        }
        let table = session.sql.table();
        let doing = format!("writing rse's hash table `{}.{}` for `{}`", table.schema, table.name, self.model.label());
        self.pushdown_error_while(e, &session.sql, &doing)
    }

    /// Creates the syncs table, the sync's row and its hash table when missing.
    async fn ensure_tables(&self, client: &Client, sync_id: &str, sql: &PushdownSql) -> Result<(), SourceError> {
        let mut statements = vec![sql.create_syncs_table()?];
        statements.extend(sql.create_hash_table()?);
        for s in statements {
            client.batch_execute(&s.sql).await.map_err(|e| self.pushdown_error(e, sql))?;
        }
        let register = sql.register_sync()?;
        client.execute(&register.sql, &[&sync_id, &sql.table().name]).await.map_err(|e| self.pushdown_error(e, sql))?;
        Ok(())
    }

    /// The statements again, with each key column's exact type read from the hash table.
    async fn typed(&self, client: &Client, sql: &PushdownSql) -> Result<PushdownSql, SourceError> {
        let table = sql.table();
        let rows = client
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
                 JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
                &[&table.schema, &table.name],
            )
            .await
            .map_err(|e| self.pushdown_error(e, sql))?;
        if rows.is_empty() {
            return Err(SourceError::NotFound {
                what: format!("rse's hash table `{}.{}`", table.schema, table.name),
                hint: Some(
                    "it is created when a run starts (PushdownSource::epoch); was it dropped meanwhile?".to_owned(),
                ),
            });
        }
        let mut key = Vec::with_capacity(sql.key().len());
        for k in sql.key() {
            let ty: Option<String> = rows.iter().find(|r| r.get::<_, String>(0) == k.name).map(|r| r.get(1));
            let ty = ty.ok_or_else(|| SourceError::NotFound {
                what: format!("key column `{}` in rse's hash table `{}.{}`", k.name, table.schema, table.name),
                hint: Some(
                    "the table was created for other key columns; drop it (the next run re-diffs in full)".to_owned(),
                ),
            })?;
            key.push(k.clone().with_type(ty));
        }
        Ok(sql.clone().with_key(key))
    }

    /// A driver error of the pushdown's statements, saying what to fix.
    fn pushdown_error(&self, e: tokio_postgres::Error, sql: &PushdownSql) -> SourceError {
        self.pushdown_error_while(e, sql, &format!("reading `{}`", self.model.label()))
    }

    /// As [`Self::pushdown_error`], saying `doing` where nothing more specific applies.
    fn pushdown_error_while(&self, e: tokio_postgres::Error, sql: &PushdownSql, doing: &str) -> SourceError {
        let schema = &sql.table().schema;
        if let Some(db) = e.as_db_error() {
            let code = db.code();
            if *code == SqlState::INVALID_SCHEMA_NAME && db.message().contains(schema.as_str()) {
                return SourceError::NotFound {
                    what: format!("schema `{schema}` for rse's pushdown tables"),
                    hint: Some(format!(
                        "create it (CREATE SCHEMA \"{schema}\") or name an existing one with with_pushdown_schema"
                    )),
                };
            }
            if *code == SqlState::INSUFFICIENT_PRIVILEGE {
                return SourceError::Other {
                    message: format!(
                        "no permission for rse's pushdown tables in schema `{schema}` ({}); grant it: \
                         GRANT USAGE, CREATE ON SCHEMA \"{schema}\" TO <the source's user>",
                        db.message()
                    ),
                    source: Some(Box::new(e)),
                };
            }
            if *code == SqlState::UNDEFINED_FUNCTION && db.message().contains("hash_record_extended") {
                return SourceError::Unsupported(
                    "the warehouse-side diff needs PostgreSQL 14 or later (hash_record_extended); \
                     read without it on this server"
                        .to_owned(),
                );
            }
            if *code == SqlState::UNDEFINED_FUNCTION && db.message().contains("hash") {
                return SourceError::Unsupported(format!(
                    "a column of `{}` has a type PostgreSQL cannot hash ({}); cast it to text in a query model",
                    self.model.label(),
                    db.message()
                ));
            }
        }
        self.error_while(e, doing)
    }

    /// Streams the diff read on its own task: on one connection, or, for an unordered read
    /// of the changed rows where the session may split it, on one per slice of the keys.
    async fn read_diff(
        &self,
        sync_id: &str,
        request: ReadRequest,
        read: Read,
    ) -> Result<PushdownStream<'_>, SourceError> {
        if request.cursor.is_some() {
            return Err(SourceError::Unsupported(
                "a warehouse-side diff reads no cursor; incremental reads and pushdown exclude each other".to_owned(),
            ));
        }
        let session = self.session(sync_id).await?;
        let mut slices = match &session.split {
            Some(split) if read == Read::Changed && !request.order_by_key => self.slices(&session, split).await,
            _ => slices_at(&[], false),
        };
        // The read's transactions stay open while the run writes through the session.
        let mut clients = vec![self.connect().await?];
        if slices.len() > 1 {
            match futures::future::try_join_all(slices[1..].iter().map(|_| self.connect())).await {
                Ok(more) => clients.extend(more),
                Err(error) => {
                    // Say, a server at its connection limit: the one connection reads it all.
                    tracing::warn!(
                        %error,
                        model = %self.model.label(),
                        "A connection for a slice of the diff read failed; one connection reads the whole diff."
                    );
                    slices = slices_at(&[], false);
                }
            }
        }
        let (tx, rx) = mpsc::channel(crate::stream::IN_FLIGHT);
        let source = self.clone();
        let handle = tokio::spawn(async move {
            let (schema, kinds, sql) = (session.schema.clone(), &session.kinds, &session.sql);
            let diff = Diff { schema, kinds, sql, read, key_indexed: session.key_indexed };
            if let Err(e) = source.produce_diff(clients, slices, &request, &diff, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        let what = self.model.label();
        Ok(futures::stream::unfold((rx, Some(handle), what), |(mut rx, handle, what)| async move {
            if let Some(item) = rx.recv().await {
                return Some((item, (rx, handle, what)));
            }
            match handle?.await {
                Ok(()) => None,
                Err(e) => Some((
                    Err(SourceError::Other {
                        message: format!("the warehouse-side diff of `{what}` stopped unexpectedly"),
                        source: Some(Box::new(e)),
                    }),
                    (rx, None, what),
                )),
            }
        })
        .boxed())
    }

    /// Reads each slice on its client, all on one snapshot: the first client's transaction
    /// exports it and the others import it before any reads.
    async fn produce_diff(
        &self,
        mut clients: Vec<Client>,
        slices: Vec<Slice>,
        request: &ReadRequest,
        diff: &Diff<'_>,
        tx: &mpsc::Sender<Result<PushdownBatch, SourceError>>,
    ) -> Result<(), SourceError> {
        let failed = |e| self.pushdown_error(e, diff.sql);
        let mut transactions = Vec::with_capacity(clients.len());
        let mut exported: Option<String> = None;
        for client in &mut clients {
            let transaction = snapshot(client).await.map_err(failed)?;
            match &exported {
                Some(id) => {
                    transaction.batch_execute(&format!("SET TRANSACTION SNAPSHOT '{id}'")).await.map_err(failed)?;
                }
                None if slices.len() > 1 => {
                    let row = transaction.query_one("SELECT pg_export_snapshot()", &[]).await.map_err(failed)?;
                    exported = Some(row.get(0));
                }
                None => {}
            }
            // The read is one scan that hashes each row: nothing JIT compilation would speed
            // up by more than it costs, and the first JIT use in a connection loads LLVM (0.3 s
            // measured on PostgreSQL 15), which every run would pay on its new connection.
            transaction.batch_execute("SET LOCAL jit = off").await.map_err(failed)?;
            if diff.key_indexed && !request.order_by_key {
                // Unordered, the planner prefers a hash full join; over a model read in key
                // order from its index, a merge full join streams its rows as it goes and
                // measured faster (1 M rows: 0.90 s against 1.06 s with the default 4 MB of
                // work_mem and 1.31 s with 128 MB, where a bare COPY of key and hash took
                // 0.64 s).
                transaction.batch_execute("SET LOCAL enable_hashjoin = off").await.map_err(failed)?;
            }
            transactions.push(transaction);
        }
        let reads = transactions.iter().zip(&slices).map(|(t, slice)| self.read_slice(t, slice, request, diff, tx));
        if !futures::future::try_join_all(reads).await?.into_iter().all(|open| open) {
            return Ok(());
        }
        for transaction in transactions {
            transaction.commit().await.map_err(failed)?;
        }
        Ok(())
    }

    /// Reads `slice` in `transaction`, handing out its rows in batches; `false` when the
    /// receiver is gone.
    async fn read_slice(
        &self,
        transaction: &tokio_postgres::Transaction<'_>,
        slice: &Slice,
        request: &ReadRequest,
        diff: &Diff<'_>,
        tx: &mpsc::Sender<Result<PushdownBatch, SourceError>>,
    ) -> Result<bool, SourceError> {
        let failed = |e| self.pushdown_error(e, diff.sql);
        for (range, bounds) in &slice.reads {
            // The changed rows and the vanished keys come from one full join (see `diff_rows`).
            let sql = diff.sql.clone().with_key_order(request.order_by_key).with_key_range(*range);
            let rows_sql = match diff.read {
                Read::Changed => sql.diff_rows()?,
                Read::Full => sql.all_rows()?,
            };
            let statement = transaction.prepare(&rows_sql.sql).await.map_err(failed)?;
            if statement.params().len() != bounds.len() {
                return Err(SourceError::Other {
                    message: format!(
                        "query model `{}` takes parameters; a query model must not contain `$n` placeholders",
                        self.model.label()
                    ),
                    source: None,
                });
            }
            // Streamed without a row limit, so the server scans on while this process decodes
            // and the run delivers: the changed rows of a pushdown read are sparse, and a fetch
            // of `batch_size` rows at a time would leave the server idle between fetches.
            let rows = transaction.query_raw(&statement, bounds).await.map_err(failed)?;
            if !self.send_rows(rows, request.batch_size.max(1), diff, tx).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Hands out `rows` in batches of what arrived within LINGER of a batch's first row, up
    /// to `batch_size`; `false` when the receiver is gone.
    async fn send_rows(
        &self,
        rows: tokio_postgres::RowStream,
        batch_size: usize,
        diff: &Diff<'_>,
        tx: &mpsc::Sender<Result<PushdownBatch, SourceError>>,
    ) -> Result<bool, SourceError> {
        let failed = |e| self.pushdown_error(e, diff.sql);
        futures::pin_mut!(rows);
        let hash_at = diff.kinds.len();
        let mut pending = Vec::new();
        let mut done = false;
        while !done {
            match rows.next().await {
                Some(row) => pending.push(row.map_err(failed)?),
                None => break,
            }
            let deadline = tokio::time::Instant::now() + LINGER;
            while pending.len() < batch_size {
                let next = match rows.next().now_or_never() {
                    Some(next) => next,
                    None => match tokio::time::timeout_at(deadline, rows.next()).await {
                        Ok(next) => next,
                        Err(_) => break,
                    },
                };
                match next {
                    Some(row) => pending.push(row.map_err(failed)?),
                    None => {
                        done = true;
                        break;
                    }
                }
            }
            let mut records = Vec::with_capacity(pending.len());
            let mut hashes = Vec::with_capacity(pending.len());
            let mut vanished = Vec::new();
            for row in pending.drain(..) {
                let record = decode_row(&row, diff.kinds, &diff.schema)?;
                let hash: Option<i64> = row.try_get(hash_at).map_err(|e| SourceError::Malformed {
                    location: format!("column `{HASH_COLUMN}`"),
                    reason: format!("the server sent a row hash rse could not take ({e})"),
                })?;
                match hash {
                    Some(hash) => {
                        records.push(record);
                        hashes.push(row_hash(hash));
                    }
                    // Only a key the model no longer has comes without a hash.
                    None => vanished.push(record.key(&diff.schema).map_err(|e| SourceError::Malformed {
                        location: format!("a key of rse's hash table for `{}`", self.model.label()),
                        reason: e.to_string(),
                    })?),
                }
            }
            let mut batch = PushdownBatch::rows(RowBatch::new(diff.schema.clone(), records), hashes)?;
            batch.vanished = vanished;
            if tx.send(Ok(batch)).await.is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// PostgreSQL's 64-bit row hash as rse's opaque hash bytes.
fn row_hash(hash: i64) -> RowHash {
    RowHash::new(hash.to_be_bytes().to_vec())
}

/// Each key's values as the text input of the key columns' types, one array per column.
fn key_arrays(keys: &[Key], columns: usize) -> Result<Vec<Vec<Option<String>>>, SourceError> {
    let mut arrays = vec![Vec::with_capacity(keys.len()); columns];
    for key in keys {
        let values = key.decode().map_err(|e| SourceError::Malformed {
            location: "a key handed to the warehouse-side diff".to_owned(),
            reason: e.to_string(),
        })?;
        if values.len() != columns {
            return Err(SourceError::Malformed {
                location: "a key handed to the warehouse-side diff".to_owned(),
                reason: format!("it has {} values and the model {columns} key columns", values.len()),
            });
        }
        for (array, value) in arrays.iter_mut().zip(&values) {
            array.push(key_text(value)?);
        }
    }
    Ok(arrays)
}

/// One key value as PostgreSQL's text input for its column's type.
fn key_text(value: &Value) -> Result<Option<String>, SourceError> {
    Ok(Some(match value {
        Value::Null => return Ok(None),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Decimal(d) => d.as_str().to_owned(),
        Value::String(s) => s.clone(),
        Value::Date(days) => rse_core::time::format_date(*days),
        Value::Timestamp(micros) => rse_core::time::format_timestamp_micros(*micros),
        Value::Bytes(b) => {
            let mut text = String::with_capacity(2 + b.len() * 2);
            text.push_str("\\x");
            for byte in b.iter() {
                text.push_str(&format!("{byte:02x}"));
            }
            text
        }
        other => {
            return Err(SourceError::Unsupported(format!(
                "a {} key cannot be written to rse's hash table; key the model by scalar columns",
                other.type_name()
            )));
        }
    }))
}

/// The 64-bit hash back from rse's opaque bytes.
fn hash_value(hash: &RowHash) -> Result<i64, SourceError> {
    let bytes: [u8; 8] = hash.as_bytes().try_into().map_err(|_| SourceError::Malformed {
        location: "a row hash handed to the warehouse-side diff".to_owned(),
        reason: format!("it has {} bytes; PostgreSQL's row hashes have 8", hash.as_bytes().len()),
    })?;
    Ok(i64::from_be_bytes(bytes))
}

fn params<'a>(arrays: &'a [Vec<Option<String>>], hashes: Option<&'a Vec<i64>>) -> Vec<&'a (dyn ToSql + Sync)> {
    let mut out: Vec<&(dyn ToSql + Sync)> = arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
    if let Some(h) = hashes {
        out.push(h);
    }
    out
}

/// What one sync's run keeps between the pushdown's calls (see the module's rustdoc).
pub(crate) struct Session {
    /// The connection for the writes, shared by concurrent calls (their statements pipeline).
    client: Client,
    /// The model's schema and column kinds, described when the session opened.
    schema: Arc<Schema>,
    kinds: Vec<Kind>,
    /// The statements, with the key columns' types read from the hash table.
    sql: PushdownSql,
    /// The model is a table with a plain b-tree index on its key columns (see `produce_diff`).
    key_indexed: bool,
    /// How an unordered diff read may be cut among connections; `None` reads it on one.
    split: Option<Split>,
    /// `record_intents`, the deletions and the upserts of `record_delivered`, prepared.
    intents: Statement,
    delete: Statement,
    upsert: Statement,
}

/// The open sessions of a source, by sync id (shared by the source's clones).
pub(crate) type Sessions = Arc<Mutex<HashMap<String, Arc<Session>>>>;

/// `keys` without repeats, each once (a statement may not touch a row twice).
fn distinct(keys: &[Key]) -> Vec<Key> {
    let mut keys = keys.to_vec();
    keys.sort_unstable();
    keys.dedup();
    keys
}

#[async_trait]
impl PushdownSource for PostgresSource {
    async fn epoch(&self, sync_id: &str) -> Result<Option<String>, SourceError> {
        // The first call of every run: a new session, so that a model or table changed
        // since the last run is described again.
        let session = self.open_session(sync_id).await?;
        let read = session.sql.read_epoch()?;
        let row = session.client.query_opt(&read.sql, &[&sync_id]).await.map_err(|e| {
            let doing = format!("reading the epoch of `{sync_id}` in rse's schema `{}`", session.sql.table().schema);
            self.pushdown_error_while(e, &session.sql, &doing)
        })?;
        Ok(row.and_then(|r| r.get::<_, Option<String>>(0)))
    }

    async fn begin_full(&self, sync_id: &str) -> Result<(), SourceError> {
        let session = self.session(sync_id).await?;
        let sql = &session.sql;
        // One statement each, in order: the epoch is cleared before any hash is forgotten.
        let clear = sql.write_epoch()?;
        let failed = |e| self.write_failed(sync_id, &session, e);
        session.client.execute(&clear.sql, &[&sync_id, &None::<String>]).await.map_err(failed)?;
        session.client.batch_execute(&sql.forget_hashes()?.sql).await.map_err(failed)
    }

    async fn read_changed(&self, sync_id: &str, request: ReadRequest) -> Result<PushdownStream<'_>, SourceError> {
        self.read_diff(sync_id, request, Read::Changed).await
    }

    async fn read_full(&self, sync_id: &str, request: ReadRequest) -> Result<PushdownStream<'_>, SourceError> {
        self.read_diff(sync_id, request, Read::Full).await
    }

    async fn record_intents(&self, sync_id: &str, keys: &[Key]) -> Result<(), SourceError> {
        if keys.is_empty() {
            return Ok(());
        }
        let session = self.session(sync_id).await?;
        let arrays = key_arrays(&distinct(keys), session.sql.key().len())?;
        session
            .client
            .execute(&session.intents, &params(&arrays, None))
            .await
            .map_err(|e| self.write_failed(sync_id, &session, e))?;
        Ok(())
    }

    async fn record_delivered(&self, sync_id: &str, delivered: &[(Key, Option<RowHash>)]) -> Result<(), SourceError> {
        if delivered.is_empty() {
            return Ok(());
        }
        // In key order, so that the rows' new versions lie in key order in the table, as the
        // diff's merge join reads them (in a random order every row read was a page read:
        // 1.01 s against 0.80 s at 1 M rows). Each key once, its last outcome counting: a
        // statement may not touch a row twice.
        let mut sorted: Vec<&(Key, Option<RowHash>)> = delivered.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let last =
            sorted.iter().enumerate().filter(|(i, (key, _))| sorted.get(i + 1).is_none_or(|next| next.0 != *key));
        let mut upserted = Vec::new();
        let mut hashes = Vec::new();
        let mut deleted = Vec::new();
        for (_, (key, hash)) in last {
            match hash {
                Some(h) => {
                    upserted.push(key.clone());
                    hashes.push(hash_value(h)?);
                }
                None => deleted.push(key.clone()),
            }
        }
        let session = self.session(sync_id).await?;
        let columns = session.sql.key().len();
        let deleted = key_arrays(&deleted, columns)?;
        let upserted = key_arrays(&upserted, columns)?;
        let failed = |e| self.write_failed(sync_id, &session, e);
        // Two statements, pipelined on the one connection. Each is valid alone: a crash
        // between them leaves rows with an older or unknown hash, which are read again.
        let delete = async {
            if deleted.first().is_some_and(|column| !column.is_empty()) {
                session.client.execute(&session.delete, &params(&deleted, None)).await?;
            }
            Ok(())
        };
        let upsert = async {
            if !hashes.is_empty() {
                session.client.execute(&session.upsert, &params(&upserted, Some(&hashes))).await?;
            }
            Ok(())
        };
        futures::try_join!(delete, upsert).map_err(failed)?;
        Ok(())
    }

    async fn complete(&self, sync_id: &str, epoch: &str) -> Result<(), SourceError> {
        let session = self.session(sync_id).await?;
        let write = session.sql.write_epoch()?;
        session
            .client
            .execute(&write.sql, &[&sync_id, &Some(epoch)])
            .await
            .map_err(|e| self.write_failed(sync_id, &session, e))?;
        // A full re-diff wrote every row at least twice (its intent, then its hash), from
        // several writers at once: the table and its index are twice their size and out of
        // key order, which made the next diff's merge join of them 1.7× slower when measured.
        // Rewrite them in key order and gather the planner's statistics now, rather than
        // leave a bloated table to autovacuum.
        let table = session.sql.table();
        let name = Dialect::Postgres.qualified(&table.schema, &table.name);
        let compacted = async {
            // The key's unique index, by its name in the catalog (PostgreSQL may have cut it).
            let index: String = session
                .client
                .query_one(
                    "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
                     WHERE i.indrelid = to_regclass($1) AND i.indisunique ORDER BY c.relname LIMIT 1",
                    &[&name],
                )
                .await?
                .get(0);
            let index = quote_ident(&index);
            session.client.batch_execute(&format!("CLUSTER {name} USING {index}; ANALYZE {name}")).await
        };
        if let Err(error) = compacted.await {
            tracing::warn!(%error, table = %table.name, "Compacting rse's hash table after a full re-diff failed; autovacuum will tidy it.");
        }
        Ok(())
    }

    async fn finish(&self, sync_id: &str) {
        if let Ok(mut sessions) = self.pushdown_sessions.lock() {
            sessions.remove(sync_id);
        }
    }
}
