//! Reading a keyed table back, for reconciliation: the rows of given keys in the sync's
//! schema, and the keys the table holds.
//!
//! Each column is read in the form the destination stores it (the table in the module
//! docs) and turned back into the exact value written: integers, reals and blobs as they
//! are, decimals, dates, timestamps, JSON and lists from their text. Two limits of SQLite
//! show as mismatches rather than being hidden: a NaN float was stored as `NULL` and reads
//! back null, and a value of another storage class than the destination writes (an app
//! that stored text in an integer column) makes its record [`Held::Unreadable`].
//!
//! Keys are listed in the table's order (`ORDER BY` the key columns, `BINARY` collation),
//! which is key order for integer, real, text, blob, date and timestamp keys (dates and
//! timestamps are fixed-width text for years 0–9999); decimal keys are stored as text and
//! listed in text order.

use async_trait::async_trait;
use rse_core::{DataType, Decimal, DestinationError, Held, Key, ReadBack, Record, Schema, Value};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, params_from_iter};

use super::{Inner, SqliteDestination, SqliteTableKind, quote, to_sql};
use crate::read_back::from_text;

/// The value of a field of type `t` from its stored form, or `None` when it does not read
/// as one.
fn value(stored: ValueRef<'_>, t: &DataType) -> Option<Value> {
    Some(match (t, stored) {
        (_, ValueRef::Null) => Value::Null,
        (DataType::Bool, ValueRef::Integer(0)) => Value::Bool(false),
        (DataType::Bool, ValueRef::Integer(1)) => Value::Bool(true),
        (DataType::Int, ValueRef::Integer(i)) => Value::Int(i),
        (DataType::Float, ValueRef::Real(f)) => Value::Float(f),
        // A column without REAL affinity may keep an integral real as an integer.
        (DataType::Float, ValueRef::Integer(i)) => Value::Float(i as f64),
        (DataType::Decimal, ValueRef::Integer(i)) => Value::Decimal(Decimal::parse(&i.to_string()).ok()?),
        (DataType::String, ValueRef::Text(text)) => Value::String(std::str::from_utf8(text).ok()?.to_owned()),
        (DataType::Bytes, ValueRef::Blob(bytes)) => Value::Bytes(bytes.to_vec().into()),
        (
            DataType::Decimal | DataType::Date | DataType::Timestamp | DataType::Json | DataType::List(_),
            ValueRef::Text(text),
        ) => from_text(std::str::from_utf8(text).ok()?, t)?,
        _ => return None,
    })
}

/// The stored forms of a key's values, or `None` for a key that does not fit the key
/// columns' types (not a key of this table).
fn key_params(schema: &Schema, key: &Key) -> Option<Vec<rusqlite::types::Value>> {
    let values = key.decode().ok()?;
    let indices = schema.key_indices();
    if values.len() != indices.len() {
        return None;
    }
    values.iter().zip(indices).map(|(v, &i)| to_sql(v, &schema.field(i)?.data_type)).collect()
}

fn read_rows(inner: &Inner, conn: &Connection, schema: &Schema, keys: &[Key]) -> Result<Vec<Held>, DestinationError> {
    let columns: Vec<String> = schema.fields().iter().map(|f| quote(&f.name)).collect();
    let condition: Vec<String> =
        schema.key_names().enumerate().map(|(i, name)| format!("{} = ?{}", quote(name), i + 1)).collect();
    let sql =
        format!("SELECT {} FROM {} WHERE {}", columns.join(", "), quote(&inner.options.table), condition.join(" AND "));
    let mut statement = conn.prepare_cached(&sql).map_err(|e| inner.classify("reading rows back", e))?;
    let mut held = Vec::with_capacity(keys.len());
    for key in keys {
        let Some(params) = key_params(schema, key) else {
            held.push(Held::Absent);
            continue;
        };
        let row = statement
            .query_row(params_from_iter(params), |row| {
                let mut values = Vec::with_capacity(schema.len());
                for (i, field) in schema.fields().iter().enumerate() {
                    match value(row.get_ref(i)?, &field.data_type) {
                        Some(v) => values.push(v),
                        None => {
                            return Ok(Held::Unreadable(format!(
                                "column `{}` does not read back as {}",
                                field.name, field.data_type
                            )));
                        }
                    }
                }
                Ok(Held::Record(Record::new(values)))
            })
            .optional()
            .map_err(|e| inner.classify("reading rows back", e))?;
        held.push(row.unwrap_or(Held::Absent));
    }
    Ok(held)
}

fn list_keys(
    inner: &Inner,
    conn: &Connection,
    schema: &Schema,
    after: Option<&Key>,
    limit: usize,
) -> Result<Vec<Key>, DestinationError> {
    let names: Vec<String> = schema.key_names().map(quote).collect();
    let table = quote(&inner.options.table);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut params = match after {
        Some(key) => key_params(schema, key).ok_or_else(|| {
            DestinationError::fatal(format!("{}: the key to list after does not fit the key columns", inner.name))
        })?,
        None => Vec::new(),
    };
    let sql = if params.is_empty() {
        format!("SELECT {0} FROM {table} ORDER BY {0} LIMIT ?1", names.join(", "))
    } else {
        let marks: Vec<String> = (1..=params.len()).map(|i| format!("?{i}")).collect();
        format!(
            "SELECT {0} FROM {table} WHERE ({0}) > ({1}) ORDER BY {0} LIMIT ?{2}",
            names.join(", "),
            marks.join(", "),
            params.len() + 1
        )
    };
    params.push(rusqlite::types::Value::Integer(limit));
    let key_types: Vec<&DataType> =
        schema.key_indices().iter().filter_map(|&i| schema.field(i)).map(|f| &f.data_type).collect();
    let mut statement = conn.prepare_cached(&sql).map_err(|e| inner.classify("listing the keys held", e))?;
    let rows = statement
        .query_map(params_from_iter(params), |row| {
            let mut values = Vec::with_capacity(key_types.len());
            for (i, t) in key_types.iter().enumerate() {
                values.push(value(row.get_ref(i)?, t));
            }
            Ok(values.into_iter().collect::<Option<Vec<Value>>>())
        })
        .map_err(|e| inner.classify("listing the keys held", e))?;
    let mut keys = Vec::new();
    for row in rows {
        let values = row.map_err(|e| inner.classify("listing the keys held", e))?.ok_or_else(|| {
            DestinationError::fatal(format!(
                "{}: a key column holds a value of another type than the sync's key field; the table's keys cannot \
                 be listed",
                inner.name
            ))
        })?;
        keys.push(Key::from_values(&values));
    }
    Ok(keys)
}

impl SqliteDestination {
    /// The read-back interface, for a keyed table (an events table holds changes, not records).
    pub(super) fn reads_back(&self) -> Option<&dyn ReadBack> {
        (self.inner.options.kind == SqliteTableKind::Keyed).then_some(self as &dyn ReadBack)
    }
}

#[async_trait]
impl ReadBack for SqliteDestination {
    async fn read(&self, _sync_id: &str, schema: &Schema, keys: &[Key]) -> Result<Vec<Held>, DestinationError> {
        let (schema, keys) = (schema.clone(), keys.to_vec());
        self.blocking("reading rows back", move |inner, conn| read_rows(inner, &conn.conn, &schema, &keys)).await
    }

    async fn keys(
        &self,
        _sync_id: &str,
        schema: &Schema,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<Key>, DestinationError> {
        let (schema, after) = (schema.clone(), after.cloned());
        self.blocking("listing the keys held", move |inner, conn| {
            list_keys(inner, &conn.conn, &schema, after.as_ref(), limit)
        })
        .await
    }
}
