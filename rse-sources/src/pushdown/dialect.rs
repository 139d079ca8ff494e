//! What differs between the warehouses' SQL: quoting, placeholders, the row hash, types.

use rse_core::SourceError;

use super::{HashColumn, KeyColumn};
use crate::common::Model;

/// The warehouse a [`PushdownSql`](super::PushdownSql) writes for.
///
/// Each variant says what a re-run costs there. In every dialect a re-run reads the model in
/// full (every column feeds the hash) and the hash table in full (keys and hash), once for the
/// changed rows and once more (keys only) for the vanished keys; what leaves the warehouse is
/// only the changed rows and the vanished keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// PostgreSQL 14 or later (for `hash_record_extended`).
    ///
    /// Cost: one sequential (or parallel) scan of the model and of the hash table; the
    /// anti-join is a hash anti-join (the hash table's keys and hashes, ~16 bytes a row plus
    /// overhead, in `work_mem`: ~55 MB for 1 M `int8` keys, else it spills in batches) or a
    /// merge anti-join along both primary keys; the planner chooses. The vanished-keys query
    /// can often be answered from the two primary-key indexes alone (index-only scans). The
    /// one-pass form ([`PushdownSql::diff_rows`](super::PushdownSql::diff_rows), what
    /// `PostgresSource` runs) is a hash full join on one process. Only the rows handed out
    /// are sorted by key, so the sort is small. Writes go through `unnest` of bound arrays:
    /// one statement per batch whatever its size.
    Postgres,
    /// Snowflake.
    ///
    /// Cost: warehouse credits for the time the query runs; both tables are scanned in full
    /// (micro-partition pruning cannot apply: every row is compared), the anti-join is a hash
    /// join, distributed over the warehouse's nodes. A `MERGE` of a batch of keys rewrites the
    /// micro-partitions it touches: batch writes as large as the runner allows. Keys are bound
    /// as one JSON array (`PARSE_JSON(?)`), so the statement text is the same for every batch.
    Snowflake,
    /// BigQuery.
    ///
    /// Cost (on-demand pricing): bytes scanned, that is every column of the model plus the
    /// hash table's key and hash columns for the changed rows, plus the model's key columns and
    /// the hash table's keys for the vanished keys, whatever share of rows changed; under
    /// capacity pricing, slot time. The anti-join is a hash or broadcast join. **Every `MERGE`
    /// scans the whole hash table** (bytes billed per statement, 10 MB minimum): write keys in
    /// the largest batches the runner allows. The hash table is clustered by key, which prunes
    /// those scans somewhat. Rows are bound as an array of structs (`UNNEST(@rows)`).
    BigQuery,
    /// Amazon Redshift.
    ///
    /// Cost: cluster time; columnar scans of the model (all columns) and the hash table. The
    /// hash table is distributed and sorted by its first key column (`DISTKEY`, `SORTKEY`): when
    /// the model is distributed on the same column the anti-join runs on each slice without
    /// redistribution (`DS_DIST_NONE`), else the smaller side is broadcast or redistributed.
    /// The result is gathered on the leader node (small: only changed rows). Writes bind one
    /// placeholder per value (`UNION ALL` of `SELECT`s), so the statement depends on the batch's
    /// size; Redshift does not enforce primary keys, so every write is a `MERGE` on the key.
    Redshift,
}

impl Dialect {
    /// The warehouse's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "PostgreSQL",
            Dialect::Snowflake => "Snowflake",
            Dialect::BigQuery => "BigQuery",
            Dialect::Redshift => "Redshift",
        }
    }

    /// The longest identifier the dialect accepts, in bytes.
    fn max_ident_bytes(self) -> usize {
        match self {
            Dialect::Postgres => 63,
            Dialect::Redshift => 127,
            Dialect::Snowflake => 255,
            Dialect::BigQuery => 300,
        }
    }

    /// Checks one identifier (a column, table or schema name).
    pub(crate) fn check_ident(self, name: &str, role: &str) -> Result<(), SourceError> {
        let invalid = |why: String| SourceError::Other {
            message: format!("{role} name `{}` {why}", name.escape_debug()),
            source: None,
        };
        if name.is_empty() {
            return Err(SourceError::Other { message: format!("a {role} name is empty"), source: None });
        }
        if name.chars().any(char::is_control) {
            return Err(invalid("contains a control character; rename it".to_owned()));
        }
        if name.len() > self.max_ident_bytes() {
            return Err(invalid(format!(
                "is longer than {} allows ({} bytes); choose a shorter one",
                self.name(),
                self.max_ident_bytes()
            )));
        }
        if self == Dialect::BigQuery && (name.contains('`') || name.contains('\\')) {
            return Err(invalid("contains a backtick or backslash, which rse does not quote for BigQuery".to_owned()));
        }
        Ok(())
    }

    /// Checks a schema: one name on PostgreSQL and Redshift, `database.schema` allowed on
    /// Snowflake and `project.dataset` on BigQuery.
    pub(crate) fn check_schema(self, schema: &str) -> Result<(), SourceError> {
        for part in self.schema_parts(schema) {
            self.check_ident(part, "schema")?;
        }
        Ok(())
    }

    fn schema_parts(self, schema: &str) -> Vec<&str> {
        match self {
            Dialect::Snowflake | Dialect::BigQuery => schema.splitn(2, '.').collect(),
            Dialect::Postgres | Dialect::Redshift => vec![schema],
        }
    }

    /// `name` quoted as an identifier.
    pub(crate) fn quote(self, name: &str) -> String {
        match self {
            // Checked beforehand: no backtick or backslash.
            Dialect::BigQuery => format!("`{name}`"),
            _ => format!("\"{}\"", name.replace('"', "\"\"")),
        }
    }

    /// `schema.name`, each part quoted.
    pub(crate) fn qualified(self, schema: &str, name: &str) -> String {
        let mut out: Vec<String> = self.schema_parts(schema).into_iter().map(|p| self.quote(p)).collect();
        out.push(self.quote(name));
        out.join(".")
    }

    /// The model after `FROM`, aliased `m`.
    pub(crate) fn model_from(self, model: &Model) -> String {
        match model {
            Model::Table { schema: Some(s), name } => format!("{} AS m", self.qualified(s, name)),
            Model::Table { schema: None, name } => format!("{} AS m", self.quote(name)),
            Model::Query(sql) => format!("({sql}) AS m"),
        }
    }

    /// The `n`th (1-based) positional placeholder; BigQuery's named ones are written by the
    /// statements themselves.
    pub(crate) fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Snowflake => "?".to_owned(),
            _ => format!("${n}"),
        }
    }

    /// The type of the hash column.
    pub(crate) fn hash_type(self) -> &'static str {
        match self {
            Dialect::Postgres => "bigint",
            Dialect::Snowflake => "NUMBER(19, 0)",
            Dialect::BigQuery => "INT64",
            Dialect::Redshift => "BIGINT",
        }
    }

    /// The type of the syncs table's text columns.
    pub(crate) fn text_type(self) -> &'static str {
        match self {
            Dialect::Postgres => "text",
            Dialect::Snowflake => "VARCHAR",
            Dialect::BigQuery => "STRING",
            Dialect::Redshift => "VARCHAR(1024)",
        }
    }

    /// The 64-bit hash of the row of `columns`, read from alias `m`.
    pub(crate) fn row_hash(self, columns: &[HashColumn]) -> String {
        let col = |c: &HashColumn| format!("m.{}", self.quote(&c.name));
        match self {
            Dialect::Postgres => {
                let items: Vec<String> =
                    columns.iter().map(|c| if c.as_text { format!("{}::text", col(c)) } else { col(c) }).collect();
                format!("hash_record_extended(ROW({}), 0)", items.join(", "))
            }
            Dialect::Snowflake => {
                let items: Vec<String> = columns.iter().map(col).collect();
                format!("HASH({})", items.join(", "))
            }
            Dialect::BigQuery => {
                let items: Vec<String> = columns.iter().map(col).collect();
                format!("FARM_FINGERPRINT(TO_JSON_STRING(STRUCT({})))", items.join(", "))
            }
            Dialect::Redshift => {
                // FNV_HASH(b, FNV_HASH(a)) = FNV_HASH(a || b): hashing each value's length
                // (-1 for NULL) before its text keeps ('ab', 'c') apart from ('a', 'bc') and
                // NULL apart from ''.
                let mut acc: Option<String> = None;
                for c in columns {
                    let text = format!("CAST({} AS VARCHAR(65535))", col(c));
                    let length = format!("COALESCE(OCTET_LENGTH({text}), -1)");
                    let with_length = match acc {
                        None => format!("FNV_HASH({length})"),
                        Some(prev) => format!("FNV_HASH({length}, {prev})"),
                    };
                    acc = Some(format!("FNV_HASH(COALESCE({text}, ''), {with_length})"));
                }
                acc.unwrap_or_else(|| "FNV_HASH(0)".to_owned())
            }
        }
    }

    /// One key column's term in `ORDER BY`, ascending, nulls first, strings by their bytes.
    pub(crate) fn order_term(self, alias: &str, key: &KeyColumn) -> String {
        self.order_expr(&format!("{alias}.{}", self.quote(&key.name)), key.text)
    }

    /// `expr` as an `ORDER BY` term, ascending, nulls first, strings (`text`) by their bytes.
    pub(crate) fn order_expr(self, expr: &str, text: bool) -> String {
        match (self, text) {
            (Dialect::Postgres, true) => format!("{expr} COLLATE \"C\" ASC NULLS FIRST"),
            (Dialect::Snowflake, true) => format!("COLLATE({expr}, 'utf8') ASC NULLS FIRST"),
            _ => format!("{expr} ASC NULLS FIRST"),
        }
    }
}
