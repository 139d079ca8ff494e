//! The warehouse-side diff: SQL that lets the warehouse find the rows that changed.
//!
//! A sync that diffs in the warehouse keeps, next to the model, a table of the keys rse
//! delivered and a 64-bit hash of each row as delivered (the *hash table*, one per sync, in a
//! schema the user names). A re-run then asks the warehouse for one anti-join: the model's rows
//! whose key has no row in the hash table with the same hash. New keys, changed rows and keys
//! whose hash is unknown (`NULL`: an intent recorded before a change went out, or a hash
//! forgotten by a full re-diff) leave the warehouse; unchanged rows never do. A second
//! anti-join finds the keys in the hash table that the model no longer has (vanished keys);
//! [`PushdownSql::diff_rows`] answers both in one full outer join, each table read once.
//!
//! [`PushdownSql`] writes every statement this needs for four dialects ([`Dialect`]); it runs
//! nothing. Values are never spliced into the SQL: each [`Statement`] says what its
//! placeholders bind. Identifiers are quoted per dialect and validated first
//! ([`PushdownSql::check`]).
//!
//! # The hash
//!
//! Each dialect hashes the row with a built-in function, to 64 bits:
//!
//! | dialect | per-row hash | input |
//! |---|---|---|
//! | PostgreSQL (14+) | `hash_record_extended(ROW(…), 0)` | each column's binary value, hashed by its type's hash function (no text conversion) |
//! | Snowflake | `HASH(…)` | every column, any type; never `NULL` |
//! | BigQuery | `FARM_FINGERPRINT(TO_JSON_STRING(STRUCT(…)))` | the row as JSON text |
//! | Redshift | `FNV_HASH` chained column by column | each column as text, preceded by its length (`-1` for `NULL`) |
//!
//! Why 64 bits is enough: a hash is only ever compared with the hash *of the same key* from the
//! last delivery, never across keys, so the birthday bound does not apply. A change goes
//! unnoticed only if the changed row's hash equals the old one: probability 2⁻⁶⁴ per changed
//! row (one miss in ~10¹⁰ years at a billion changes a day). A wider digest (MD5, SHA-256)
//! buys nothing at that scale and costs: on the PostgreSQL development server, hashing 1 M rows
//! of ~200 bytes took 1.2 s with `hash_record_extended`, 3.4 s with
//! `hashtextextended(row::text, 0)` and 5.4 s with `md5(row::text)` (most of the text forms'
//! time is the text conversion itself). An 8-byte hash also keeps the hash table small: 1 M
//! keys with an `int8` key take ~45 MB with the index.
//!
//! What the hashes do not see (each errs on the side of sending a row again, except where
//! said):
//! - PostgreSQL hashes `numeric` by value, so a change of scale alone (`1.0` to `1.00`) is not
//!   a change; `json` (no hash function) is hashed as its text.
//! - A hash function that changes between warehouse versions (PostgreSQL keeps these stable,
//!   as hash partitioning depends on them) makes every row look changed once: one full
//!   re-send, nothing lost.
//!
//! # The tables
//!
//! - `<schema>.rse_pushdown_syncs (sync_id, hash_table, epoch)`: one row per sync; `epoch` is
//!   the epoch its last complete full re-diff ran under, `NULL` while one is in progress.
//! - `<schema>.<HashTable::for_sync>`: the key columns, typed like the model's, and
//!   `rse_hash` (a 64-bit integer, `NULL` = unknown). Invariant: every key the destination may
//!   hold has a row.

use rse_core::SourceError;

use crate::common::Model;

mod dialect;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
mod sql;

pub use dialect::Dialect;

/// The name of the table holding one row per sync (its epoch), in the hash tables' schema.
pub const SYNCS_TABLE: &str = "rse_pushdown_syncs";
/// The hash table's hash column: a 64-bit integer, `NULL` when unknown.
pub const HASH_COLUMN: &str = "rse_hash";

/// One SQL statement and what its placeholders bind, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The SQL text, with the dialect's placeholders (`$1` on PostgreSQL and Redshift, `?` on
    /// Snowflake, `@name` on BigQuery).
    pub sql: String,
    /// What each placeholder binds, in order (one entry per placeholder; on BigQuery one per
    /// named parameter), e.g. `sync_id: text`.
    pub params: Vec<String>,
}

impl Statement {
    fn new(sql: String, params: impl IntoIterator<Item = String>) -> Self {
        Self { sql, params: params.into_iter().collect() }
    }
}

/// Where a sync's hash table lives: a schema (a BigQuery dataset, optionally `project.dataset`)
/// and a table name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashTable {
    /// The schema the user named for rse's tables; it must exist.
    pub schema: String,
    /// The table's name.
    pub name: String,
}

impl HashTable {
    /// A hash table with an explicit name.
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        Self { schema: schema.into(), name: name.into() }
    }

    /// The hash table of `sync_id` in `schema`: `rse_hashes_<slug>_<hash>`, where the slug is
    /// the sync id's letters, digits and underscores (lower-cased, at most 32) and the hash
    /// 8 hex digits of the whole id, so that ids differing only in other characters get their
    /// own tables. Stays within every dialect's identifier length (PostgreSQL's 63 bytes).
    pub fn for_sync(schema: impl Into<String>, sync_id: &str) -> Self {
        let slug: String = sync_id
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
            .take(32)
            .collect();
        // FNV-1a, 32 bits: stable across builds and platforms (names must not move).
        let hash = sync_id.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
        Self::new(schema, format!("rse_hashes_{slug}_{hash:08x}"))
    }
}

/// One slice of the key space, by the first key column (see [`PushdownSql::with_key_range`]).
/// Bounds bind as text in the first key column's text form (`lower`, then `upper`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyRange {
    /// Every key.
    #[default]
    All,
    /// Keys whose first column is below the bound (`upper`, exclusive).
    Below,
    /// Keys whose first column is at least the first bound (`lower`) and below the second
    /// (`upper`).
    Between,
    /// Keys whose first column is at least the bound (`lower`).
    From,
    /// Keys whose first column is `NULL`: the model's rows no other slice reads (the hash
    /// table holds none). Binds nothing.
    Null,
}

/// A key column of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyColumn {
    /// The column's name, exactly as in the model.
    pub name: String,
    /// Its type in the dialect's SQL (e.g. `bigint`, `character varying(20)`), when known:
    /// needed by the statements that write keys (PostgreSQL, Snowflake and Redshift cast the
    /// bound keys to it) and by Redshift's `CREATE TABLE`. Without it the hash table is created
    /// from the model (`CREATE TABLE … AS SELECT … WITH NO DATA`), which copies the exact type.
    pub sql_type: Option<String>,
    /// A string column: ordered by its bytes (`COLLATE "C"` on PostgreSQL), as rse orders
    /// keys, whatever the column's collation.
    pub text: bool,
}

impl KeyColumn {
    /// A key column whose type is not known yet.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), sql_type: None, text: false }
    }

    /// Its type in the dialect's SQL.
    pub fn with_type(mut self, sql_type: impl Into<String>) -> Self {
        self.sql_type = Some(sql_type.into());
        self
    }

    /// Marks it a string column, ordered by bytes.
    pub fn with_text(mut self, text: bool) -> Self {
        self.text = text;
        self
    }
}

/// A column of the model, as the row hash takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashColumn {
    /// The column's name, exactly as in the model.
    pub name: String,
    /// Hash its text instead of its value: for types without a hash function
    /// (PostgreSQL's `json`, arrays of it). Ignored where the dialect hashes text anyway.
    pub as_text: bool,
}

impl HashColumn {
    /// A column hashed by value.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), as_text: false }
    }

    /// A column hashed as its text.
    pub fn as_text(name: impl Into<String>) -> Self {
        Self { name: name.into(), as_text: true }
    }
}

/// The statements of one sync's warehouse-side diff, for one dialect.
///
/// ```
/// use rse_sources::Model;
/// use rse_sources::pushdown::{Dialect, HashColumn, HashTable, KeyColumn, PushdownSql};
///
/// let sql = PushdownSql::new(Dialect::Postgres, Model::qualified("marts", "customers"), HashTable::for_sync("rse", "crm"))
///     .with_columns([HashColumn::new("id"), HashColumn::new("email")])
///     .with_key([KeyColumn::new("id").with_type("bigint")]);
/// let changed = sql.changed_rows()?;
/// assert!(changed.sql.contains("NOT EXISTS"));
/// # Ok::<(), rse_core::SourceError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushdownSql {
    dialect: Dialect,
    model: Model,
    columns: Vec<HashColumn>,
    key: Vec<KeyColumn>,
    table: HashTable,
    key_order: bool,
    range: KeyRange,
}

impl PushdownSql {
    /// The diff of `model` against `table`, in `dialect`. Declare the model's columns and its
    /// key before asking for statements.
    pub fn new(dialect: Dialect, model: Model, table: HashTable) -> Self {
        Self { dialect, model, columns: Vec::new(), key: Vec::new(), table, key_order: true, range: KeyRange::All }
    }

    /// Whether the reads hand out their rows in key order (the default). Without it the
    /// warehouse streams the rows as its join finds them: a diff by key lookups needs no
    /// order, and an `ORDER BY` over a full join's merged key makes the warehouse sort the
    /// result, so no row leaves before the whole scan ends.
    pub fn with_key_order(mut self, ordered: bool) -> Self {
        self.key_order = ordered;
        self
    }

    /// Restricts the reads to one slice of the key space (default: every key), so that
    /// several connections can each read one slice of the same diff at once. The model and
    /// the hash table are cut by the same condition on the first key column, so the slices of
    /// one set of bounds ([`KeyRange::Below`] up to the first bound, [`KeyRange::Between`]
    /// two neighbouring bounds, [`KeyRange::From`] from the last, [`KeyRange::Null`] for keys
    /// whose first column is `NULL`) together read each key exactly once, provided the hash
    /// table's first key column compares like the model's (the same type and collation, as
    /// when the hash table was created from the model). Needs the first key column's type
    /// ([`KeyColumn::with_type`]): each bound binds as text, cast to it.
    pub fn with_key_range(mut self, range: KeyRange) -> Self {
        self.range = range;
        self
    }

    /// The model's columns, in the model's order: what the row hash covers.
    pub fn with_columns(mut self, columns: impl IntoIterator<Item = HashColumn>) -> Self {
        self.columns = columns.into_iter().collect();
        self
    }

    /// The key columns, in key order.
    pub fn with_key(mut self, key: impl IntoIterator<Item = KeyColumn>) -> Self {
        self.key = key.into_iter().collect();
        self
    }

    /// The dialect.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The hash table.
    pub fn table(&self) -> &HashTable {
        &self.table
    }

    /// The key columns.
    pub fn key(&self) -> &[KeyColumn] {
        &self.key
    }

    /// Checks every name before any SQL is written.
    ///
    /// # Errors
    /// [`SourceError::Other`] naming the offending name and what to change: an empty name, a
    /// control character, a name longer than the dialect allows, a character the dialect cannot
    /// quote (a backtick on BigQuery), a key column that is not among the columns or is called
    /// `rse_hash`, a type that is not a plain type name, no columns or no key.
    pub fn check(&self) -> Result<(), SourceError> {
        let d = self.dialect;
        let invalid = |message: String| SourceError::Other { message, source: None };
        if self.columns.is_empty() {
            return Err(invalid("the warehouse-side diff needs the model's columns; none were given".to_owned()));
        }
        if self.key.is_empty() {
            return Err(invalid(
                "the warehouse-side diff needs the model's key columns; declare them with with_key".to_owned(),
            ));
        }
        d.check_schema(&self.table.schema)?;
        d.check_ident(&self.table.name, "hash table")?;
        if let Model::Table { schema, name } = &self.model {
            if let Some(schema) = schema {
                d.check_schema(schema)?;
            }
            d.check_ident(name, "model table")?;
        }
        for c in &self.columns {
            d.check_ident(&c.name, "column")?;
        }
        for k in &self.key {
            d.check_ident(&k.name, "key column")?;
            if k.name == HASH_COLUMN {
                return Err(invalid(format!(
                    "key column `{HASH_COLUMN}` has the name of the hash table's hash column; rename it in a query model"
                )));
            }
            if !self.columns.iter().any(|c| c.name == k.name) {
                let names: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
                return Err(invalid(format!(
                    "key column `{}` is not a column of the model (columns: {})",
                    k.name,
                    names.join(", ")
                )));
            }
            if let Some(t) = &k.sql_type {
                check_type(t, &k.name)?;
            }
        }
        Ok(())
    }

    /// The key types, or an error saying that `what` needs them.
    fn key_types(&self, what: &str) -> Result<Vec<&str>, SourceError> {
        self.key
            .iter()
            .map(|k| {
                k.sql_type.as_deref().ok_or_else(|| {
                    SourceError::Unsupported(format!(
                        "{what} on {} needs the type of key column `{}`; give it with KeyColumn::with_type",
                        self.dialect.name(),
                        k.name
                    ))
                })
            })
            .collect()
    }
}

/// A type name: letters, digits, spaces, `_`, `.`, `,`, `(`, `)`, `[`, `]` and `"` only, so that
/// it cannot end the statement or open a comment or a string.
fn check_type(sql_type: &str, column: &str) -> Result<(), SourceError> {
    let plain = !sql_type.trim().is_empty()
        && sql_type.chars().all(|c| c.is_ascii_alphanumeric() || " _.,()[]\"".contains(c))
        && sql_type.matches('"').count().is_multiple_of(2);
    if plain {
        return Ok(());
    }
    Err(SourceError::Other {
        message: format!(
            "the type given for key column `{column}` is not a plain type name \
             (letters, digits, spaces and `_.,()[]\"` only)"
        ),
        source: None,
    })
}
