//! SQLite source: a table, view or query of a SQLite database file, read on a blocking thread.
//!
//! SQLite types values, not columns, so rse maps each column by its **declared type** and
//! checks every value against it:
//!
//! | declared type contains | rse type | values accepted |
//! |---|---|---|
//! | `BOOL` | bool | integers `0`/`1`, text `true`/`false` |
//! | exactly `DATE` | date | text `YYYY-MM-DD` |
//! | `DATETIME`, `TIMESTAMP` | timestamp | ISO 8601 text (no offset = UTC), integers as Unix seconds |
//! | `JSON` | json | JSON text, numbers |
//! | `DECIMAL`, `NUMERIC` | decimal | integers, reals (their shortest exact text), decimal text |
//! | `INT` | int | integers, integer text |
//! | `CHAR`, `CLOB`, `TEXT`, `UUID` | string | text |
//! | `BLOB` | bytes | blobs, text (its UTF-8 bytes) |
//! | `REAL`, `FLOA`, `DOUB` | float | reals, integers |
//!
//! A value that does not fit (a real in an `INTEGER` column, text in a `REAL` one) fails the
//! read with [`SourceError::Malformed`] naming the column and the row number. A column
//! without a declared type (an expression in a query) or with another type (`TIME`) fails
//! with [`SourceError::UnsupportedType`]; declare its type with
//! [`SqliteSource::with_column_type`].
//!
//! Note that a `NUMERIC` column stores `'1.10'` as the real `1.1`: SQLite itself keeps
//! decimals exact only when they are stored as text (declare the column `TEXT` and the rse
//! type with `with_column_type(.., DataType::Decimal)`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use rse_core::time::{parse_date, parse_timestamp};
use rse_core::{
    DataType, Decimal, Field, ReadRequest, Record, RowBatch, RowBatchStream, Schema, Source, SourceCapabilities,
    SourceError, Value,
};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use crate::common::{Keys, Model, quote_ident, retain_from_cursor};
use crate::convert::{json_error, parse_bool};
use crate::stream::blocking_stream;

/// A model in a SQLite database, read in batches on the blocking pool.
///
/// The database is opened read-only for each call. Rows whose key column is null come
/// first in key order (SQLite's default for `ASC`); the runner reports them as invalid.
/// An incremental read returns the rows whose cursor column is at or after the cursor,
/// never those where it is null.
///
/// ```no_run
/// use rse_sources::{Model, sqlite::SqliteSource};
/// let source = SqliteSource::new("warehouse.db", Model::table("customers"))
///     .with_key(["id"])
///     .with_cursor("updated_at");
/// ```
#[derive(Debug, Clone)]
pub struct SqliteSource {
    path: PathBuf,
    model: Model,
    keys: Keys,
    column_types: Vec<(String, DataType)>,
    name: String,
}

impl SqliteSource {
    /// Reads `model` from the database file at `path`.
    pub fn new(path: impl Into<PathBuf>, model: Model) -> Self {
        let path = path.into();
        let name = format!("sqlite:{}", model.label());
        Self { path, model, keys: Keys::default(), column_types: Vec::new(), name }
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

    /// Sets the rse type of `column`, overriding its declared type (or giving one to a
    /// query's expression column, which has none).
    pub fn with_column_type(mut self, column: impl Into<String>, data_type: DataType) -> Self {
        self.column_types.push((column.into(), data_type));
        self
    }

    fn reader(&self) -> Reader {
        Reader {
            path: self.path.clone(),
            model: self.model.clone(),
            keys: self.keys.clone(),
            column_types: self.column_types.clone(),
        }
    }
}

/// What the blocking thread needs, owned.
struct Reader {
    path: PathBuf,
    model: Model,
    keys: Keys,
    column_types: Vec<(String, DataType)>,
}

fn unavailable(path: &Path, e: rusqlite::Error) -> SourceError {
    SourceError::Unavailable {
        message: format!("SQLite database `{}`: {e}", path.display()),
        source: Some(Box::new(e)),
    }
}

impl Reader {
    fn open(&self) -> Result<Connection, SourceError> {
        if !self.path.exists() {
            return Err(SourceError::NotFound {
                what: format!("SQLite database file `{}`", self.path.display()),
                hint: Some("check the path; rse opens the database read-only and never creates it".to_owned()),
            });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        Connection::open_with_flags(&self.path, flags).map_err(|e| unavailable(&self.path, e))
    }

    fn prepare_error(&self, e: rusqlite::Error) -> SourceError {
        let text = e.to_string();
        if text.contains("no such table") || text.contains("no such column") {
            let what = match &self.model {
                Model::Query(_) => format!("a table or column of the query ({text})"),
                model => format!("table or view `{}` in `{}`", model.label(), self.path.display()),
            };
            return SourceError::NotFound {
                what,
                hint: Some("check the model's name and the database path".to_owned()),
            };
        }
        SourceError::Other {
            message: format!("SQLite model `{}`: {text}", self.model.label()),
            source: Some(Box::new(e)),
        }
    }

    /// The schema, from the declared types of `SELECT * FROM model`.
    fn schema(&self, conn: &Connection) -> Result<Arc<Schema>, SourceError> {
        let sql = format!("SELECT * FROM {}", self.model.sql_from());
        let stmt = conn.prepare(&sql).map_err(|e| self.prepare_error(e))?;
        let mut fields = Vec::new();
        for column in stmt.columns() {
            let name = column.name().to_owned();
            let data_type = match self.column_types.iter().find(|(c, _)| *c == name) {
                Some((_, t)) => t.clone(),
                None => map_declared(&name, column.decl_type())?,
            };
            fields.push(Field::new(name, data_type));
        }
        self.keys.schema(fields, &self.model.label())
    }

    fn read(&self, request: &ReadRequest, sender: &crate::stream::BatchSender) -> Result<(), SourceError> {
        let conn = self.open()?;
        let schema = self.schema(&conn)?;
        let mut sql = format!("SELECT * FROM {}", self.model.sql_from());
        let mut cursor_filter = None;
        let mut param: Option<rusqlite::types::Value> = None;
        if let (Some(cursor), Some(column)) = (&request.cursor, &self.keys.cursor) {
            let index = schema.index_of(column).unwrap_or_default();
            cursor_filter = Some((index, cursor.clone()));
            // Push the filter down where SQLite compares like rse; dates and timestamps may
            // be stored in several text forms, so those are filtered after conversion only.
            param = match cursor {
                Value::Int(i) => Some((*i).into()),
                Value::Float(f) => Some((*f).into()),
                Value::Decimal(d) => Some(d.as_str().to_owned().into()),
                Value::String(s) => Some(s.clone().into()),
                _ => None,
            };
            if param.is_some() {
                let collate = if matches!(cursor, Value::String(_)) { " COLLATE BINARY" } else { "" };
                sql.push_str(&format!(" WHERE {}{collate} >= ?1", quote_ident(column)));
            }
        }
        if request.order_by_key {
            let order: Vec<String> = schema
                .key_indices()
                .iter()
                .filter_map(|&i| schema.field(i))
                .map(|f| {
                    let collate = if f.data_type == DataType::String { " COLLATE BINARY" } else { "" };
                    format!("{}{collate} ASC", quote_ident(&f.name))
                })
                .collect();
            if order.is_empty() {
                return Err(SourceError::Unsupported(format!(
                    "`{}` has no key columns to order by; declare them with with_key",
                    self.model.label()
                )));
            }
            sql.push_str(" ORDER BY ");
            sql.push_str(&order.join(", "));
        }
        let mut stmt = conn.prepare(&sql).map_err(|e| self.prepare_error(e))?;
        let params: Vec<&dyn rusqlite::ToSql> = param.iter().map(|p| p as &dyn rusqlite::ToSql).collect();
        let mut rows = stmt.query(params.as_slice()).map_err(|e| self.prepare_error(e))?;
        let types: Vec<DataType> = schema.fields().iter().map(|f| f.data_type.clone()).collect();
        let batch_size = request.batch_size.max(1);
        let mut records = Vec::with_capacity(batch_size);
        let mut row_number = 0u64;
        let label = self.model.label();
        loop {
            let row = match rows.next() {
                Ok(Some(row)) => row,
                Ok(None) => break,
                Err(e) => return Err(unavailable(&self.path, e)),
            };
            row_number += 1;
            let mut values = Vec::with_capacity(types.len());
            for (i, data_type) in types.iter().enumerate() {
                let raw = row.get_ref(i).map_err(|e| unavailable(&self.path, e))?;
                let value = convert(raw, data_type).map_err(|reason| SourceError::Malformed {
                    location: format!("column `{}` of `{label}`, row {row_number}", schema.fields()[i].name),
                    reason,
                })?;
                values.push(value);
            }
            records.push(Record::new(values));
            if records.len() >= batch_size {
                if let Some((index, cursor)) = &cursor_filter {
                    retain_from_cursor(&mut records, *index, cursor);
                }
                let batch = std::mem::replace(&mut records, Vec::with_capacity(batch_size));
                if !batch.is_empty() && !sender.send(RowBatch::new(schema.clone(), batch)) {
                    return Ok(());
                }
            }
        }
        if let Some((index, cursor)) = &cursor_filter {
            retain_from_cursor(&mut records, *index, cursor);
        }
        if !records.is_empty() {
            sender.send(RowBatch::new(schema, records));
        }
        Ok(())
    }
}

/// The rse type of a column declared `declared` (see the module docs).
fn map_declared(column: &str, declared: Option<&str>) -> Result<DataType, SourceError> {
    let Some(declared) = declared.filter(|d| !d.trim().is_empty()) else {
        return Err(SourceError::UnsupportedType {
            column: column.to_owned(),
            native_type: "(no declared type)".to_owned(),
            hint: Some(
                "an expression column has no declared type; give it one with SqliteSource::with_column_type".to_owned(),
            ),
        });
    };
    let upper = declared.to_ascii_uppercase();
    let has = |s: &str| upper.contains(s);
    Ok(if has("BOOL") {
        DataType::Bool
    } else if upper.trim() == "DATE" {
        DataType::Date
    } else if has("DATETIME") || has("TIMESTAMP") {
        DataType::Timestamp
    } else if has("JSON") {
        DataType::Json
    } else if has("DECIMAL") || has("NUMERIC") {
        DataType::Decimal
    } else if has("INT") {
        DataType::Int
    } else if has("CHAR") || has("CLOB") || has("TEXT") || has("UUID") {
        DataType::String
    } else if has("BLOB") {
        DataType::Bytes
    } else if has("REAL") || has("FLOA") || has("DOUB") {
        DataType::Float
    } else {
        return Err(SourceError::UnsupportedType {
            column: column.to_owned(),
            native_type: declared.to_owned(),
            hint: Some("cast it in a query model and declare its type with SqliteSource::with_column_type".to_owned()),
        });
    })
}

fn storage_class(v: &ValueRef<'_>) -> &'static str {
    match v {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "INTEGER",
        ValueRef::Real(_) => "REAL",
        ValueRef::Text(_) => "TEXT",
        ValueRef::Blob(_) => "BLOB",
    }
}

fn text(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|_| "stored text is not valid UTF-8".to_owned())
}

/// Converts one stored value to `data_type`, or says why it does not fit (never showing it).
fn convert(v: ValueRef<'_>, data_type: &DataType) -> Result<Value, String> {
    let misfit = |v: &ValueRef<'_>, what: &str| format!("a stored {} value is not {what}", storage_class(v));
    Ok(match (data_type, v) {
        (_, ValueRef::Null) => Value::Null,
        (DataType::Int, ValueRef::Integer(i)) => Value::Int(i),
        (DataType::Int, ValueRef::Text(t)) => {
            Value::Int(text(t)?.trim().parse().map_err(|_| misfit(&v, "an integer"))?)
        }
        (DataType::Float, ValueRef::Real(f)) => Value::Float(f),
        (DataType::Float, ValueRef::Integer(i)) => Value::Float(i as f64),
        (DataType::Decimal, ValueRef::Integer(i)) => Value::Decimal(Decimal::from_scaled(i.into(), 0)),
        (DataType::Decimal, ValueRef::Real(f)) => {
            if !f.is_finite() {
                return Err(
                    "a stored REAL value is not finite (NaN or infinity), which a decimal cannot hold".to_owned()
                );
            }
            Value::Decimal(Decimal::parse(&f.to_string()).map_err(|_| misfit(&v, "a decimal"))?)
        }
        (DataType::Decimal, ValueRef::Text(t)) => {
            Value::Decimal(Decimal::parse(text(t)?.trim()).map_err(|_| misfit(&v, "a decimal number"))?)
        }
        (DataType::Bool, ValueRef::Integer(i @ (0 | 1))) => Value::Bool(i == 1),
        (DataType::Bool, ValueRef::Text(t)) => {
            Value::Bool(parse_bool(text(t)?).ok_or_else(|| misfit(&v, "true or false"))?)
        }
        (DataType::String, ValueRef::Text(t)) => Value::String(text(t)?.to_owned()),
        (DataType::Bytes, ValueRef::Blob(b) | ValueRef::Text(b)) => Value::Bytes(b.to_vec().into()),
        (DataType::Date, ValueRef::Text(t)) => {
            Value::Date(parse_date(text(t)?).ok_or_else(|| misfit(&v, "a date YYYY-MM-DD"))?)
        }
        (DataType::Timestamp, ValueRef::Text(t)) => {
            Value::Timestamp(parse_timestamp(text(t)?).ok_or_else(|| misfit(&v, "an ISO 8601 timestamp"))?)
        }
        (DataType::Timestamp, ValueRef::Integer(secs)) => {
            Value::Timestamp(secs.checked_mul(1_000_000).ok_or_else(|| misfit(&v, "a timestamp in range"))?)
        }
        (DataType::Json, ValueRef::Text(t)) => Value::Json(
            serde_json::from_str(text(t)?)
                .map_err(|e| format!("stored text is not valid JSON ({})", json_error(&e)))?,
        ),
        (DataType::Json, ValueRef::Integer(i)) => Value::Json(i.into()),
        (DataType::Json, ValueRef::Real(f)) => Value::Json(f.into()),
        (other, v) => return Err(misfit(&v, &format!("of the declared type ({other})"))),
    })
}

#[async_trait]
impl Source for SqliteSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> SourceCapabilities {
        let mut capabilities = SourceCapabilities::default().with_ordered_by_key(!self.keys.key.is_empty());
        if let Some(cursor) = &self.keys.cursor {
            capabilities = capabilities.with_cursor_field(cursor.clone());
        }
        capabilities
    }

    async fn schema(&self) -> Result<Arc<Schema>, SourceError> {
        let reader = self.reader();
        tokio::task::spawn_blocking(move || reader.schema(&reader.open()?)).await.map_err(|e| SourceError::Other {
            message: "SQLite schema reader stopped unexpectedly".to_owned(),
            source: Some(Box::new(e)),
        })?
    }

    async fn read(&self, request: ReadRequest) -> Result<RowBatchStream<'_>, SourceError> {
        let reader = self.reader();
        // Describe first so a missing table or column fails the call itself.
        let schema_reader = self.reader();
        tokio::task::spawn_blocking(move || schema_reader.schema(&schema_reader.open()?).map(drop)).await.map_err(
            |e| SourceError::Other {
                message: "SQLite schema reader stopped unexpectedly".to_owned(),
                source: Some(Box::new(e)),
            },
        )??;
        blocking_stream(self.name.clone(), move |sender| reader.read(&request, sender))
    }
}
