//! Pieces every source shares: the model a SQL source reads, key and cursor resolution.
#![cfg_attr(
    not(all(feature = "files", feature = "parquet", feature = "sqlite", feature = "postgres")),
    allow(dead_code)
)]

use std::sync::Arc;

use rse_core::{Field, Key, Record, Schema, SourceError, Value};

/// What a SQL source reads: a table or view, or a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Model {
    /// A table or view, optionally in a schema.
    Table {
        /// The schema (PostgreSQL) or attached database (SQLite) holding it.
        schema: Option<String>,
        /// The table's or view's name, exactly as created (quoted, so case matters).
        name: String,
    },
    /// A `SELECT` whose result is the model.
    Query(String),
}

impl Model {
    /// A table or view by name, in the default schema.
    pub fn table(name: impl Into<String>) -> Self {
        Model::Table { schema: None, name: name.into() }
    }

    /// A table or view in a schema.
    pub fn qualified(schema: impl Into<String>, name: impl Into<String>) -> Self {
        Model::Table { schema: Some(schema.into()), name: name.into() }
    }

    /// A query; its columns are the model's. It is read as a subquery, so it must be one
    /// `SELECT` (no trailing `;`).
    pub fn query(sql: impl Into<String>) -> Self {
        Model::Query(sql.into())
    }

    /// The model as SQL that can follow `FROM`.
    pub(crate) fn sql_from(&self) -> String {
        match self {
            Model::Table { schema: Some(s), name } => format!("{}.{}", quote_ident(s), quote_ident(name)),
            Model::Table { schema: None, name } => quote_ident(name),
            Model::Query(sql) => format!("({sql}) AS rse_model"),
        }
    }

    /// How errors name the model.
    pub(crate) fn label(&self) -> String {
        match self {
            Model::Table { schema: Some(s), name } => format!("{s}.{name}"),
            Model::Table { schema: None, name } => name.clone(),
            Model::Query(_) => "query".to_owned(),
        }
    }
}

/// `name` as a quoted SQL identifier (PostgreSQL and SQLite both double embedded quotes).
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The key and cursor columns a host declares for a model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Keys {
    pub(crate) key: Vec<String>,
    pub(crate) cursor: Option<String>,
}

impl Keys {
    /// The schema of `fields` keyed by the declared key, after checking that the key and
    /// cursor columns exist.
    ///
    /// # Errors
    /// [`SourceError::NotFound`] naming the missing column, the model and its columns.
    pub(crate) fn schema(&self, fields: Vec<Field>, model: &str) -> Result<Arc<Schema>, SourceError> {
        let names = || fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ");
        let role_columns = self.key.iter().map(|k| ("key", k)).chain(self.cursor.iter().map(|c| ("cursor", c)));
        for (role, column) in role_columns {
            if !fields.iter().any(|f| &f.name == column) {
                return Err(SourceError::NotFound {
                    what: format!("{role} column `{column}` in `{model}` (columns: {})", names()),
                    hint: Some("column names are case-sensitive; check the model's columns".to_owned()),
                });
            }
        }
        Schema::new(fields, &self.key)
            .map(Arc::new)
            .map_err(|e| SourceError::Other { message: format!("`{model}`: {e}"), source: None })
    }
}

/// Keeps the records whose cursor column is at or after `cursor` (never those where it is null).
pub(crate) fn retain_from_cursor(records: &mut Vec<Record>, index: usize, cursor: &Value) {
    records.retain(|r| r.get(index).is_some_and(|v| !v.is_null() && v.total_cmp(cursor).is_ge()));
}

/// Checks that records come in ascending key order, for sources the host declared sorted.
#[derive(Debug, Default)]
pub(crate) struct OrderCheck {
    last: Option<Key>,
}

impl OrderCheck {
    /// Checks the records of one batch after those already seen. Null keys are allowed only
    /// before any non-null key (rse puts them first).
    ///
    /// # Errors
    /// [`SourceError::Malformed`] at `location` when a key is not above the one before.
    pub(crate) fn check(&mut self, records: &[Record], schema: &Schema, location: &str) -> Result<(), SourceError> {
        for r in records {
            let Ok(key) = r.key(schema) else {
                if self.last.is_some() {
                    return Err(out_of_order(location, "a null key after non-null keys"));
                }
                continue;
            };
            if self.last.as_ref().is_some_and(|last| *last >= key) {
                return Err(out_of_order(location, &format!("key {key} is not above the key before it")));
            }
            self.last = Some(key);
        }
        Ok(())
    }
}

fn out_of_order(location: &str, what: &str) -> SourceError {
    SourceError::Malformed {
        location: location.to_owned(),
        reason: format!("{what}, but the source was declared sorted by key; sort it or read without key order"),
    }
}
