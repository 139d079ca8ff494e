//! Reading the table back, for reconciliation: the rows of given keys in the sync's schema,
//! and the keys the table holds, in key order.
//!
//! Each column is read as the type it was written as (the table in the module docs), and
//! turned back into the exact value that was bound: `numeric`, `text` and `jsonb` as their
//! text (a decimal normalised, JSON parsed), `date` and `timestamptz` from their binary
//! form (days, and microseconds to the microsecond, with no float on the way), lists from
//! their JSON with the conventions the writer used. A column of another type than the
//! destination creates is read as what it holds (an `int4` as an int, a `float4` widened,
//! a `timestamp` without time zone as UTC); one that cannot be read as its field's type
//! makes the record [`Held::Unreadable`].
//!
//! Keys are listed in ascending order of their encoding ([`Key`] order): text key columns
//! compare under `COLLATE "C"` (byte order), numbers, dates and timestamps by value. A key
//! column of JSON or list type is listed in PostgreSQL's `jsonb` order instead.

use async_trait::async_trait;
use rse_core::{DataType, Decimal, DestinationError, Held, Key, ReadBack, Record, Schema, Value};
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, ToSql, Type};

use super::PostgresDestination;
use super::bind::{Bind, Column, convert};
use crate::postgres::copy::{PG_EPOCH_DAYS, PG_EPOCH_MICROS};
use crate::postgres::sql::quote_ident;
use crate::read_back::list_from_json;

/// One column as the server sent it.
#[derive(Debug)]
enum Cell {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since 1970-01-01 UTC.
    Micros(i64),
    /// A type rse does not read.
    Other,
}

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(match *ty {
            Type::BOOL => Cell::Bool(bool::from_sql(ty, raw)?),
            Type::INT2 => Cell::Int(i16::from_sql(ty, raw)?.into()),
            Type::INT4 => Cell::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT8 => Cell::Int(i64::from_sql(ty, raw)?),
            Type::FLOAT4 => Cell::Float(f32::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => Cell::Float(f64::from_sql(ty, raw)?),
            Type::BYTEA => Cell::Bytes(Vec::<u8>::from_sql(ty, raw)?),
            // The binary forms: days and microseconds since 2000-01-01 (±infinity saturate).
            Type::DATE => Cell::Date(i32::from_be_bytes(<[u8; 4]>::try_from(raw)?).saturating_add(PG_EPOCH_DAYS)),
            Type::TIMESTAMP | Type::TIMESTAMPTZ => {
                Cell::Micros(i64::from_be_bytes(<[u8; 8]>::try_from(raw)?).saturating_add(PG_EPOCH_MICROS))
            }
            _ if <String as FromSql>::accepts(ty) => Cell::Text(String::from_sql(ty, raw)?),
            _ => Cell::Other,
        })
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// The value of a field of type `t` from its column, or `None` when it does not read as one.
fn value(cell: Option<Cell>, t: &DataType) -> Option<Value> {
    let Some(cell) = cell else { return Some(Value::Null) };
    Some(match (t, cell) {
        (DataType::Bool, Cell::Bool(b)) => Value::Bool(b),
        (DataType::Int, Cell::Int(i)) => Value::Int(i),
        (DataType::Float, Cell::Float(f)) => Value::Float(f),
        (DataType::Decimal, Cell::Text(s)) => Value::Decimal(Decimal::parse(&s).ok()?),
        (DataType::String, Cell::Text(s)) => Value::String(s),
        (DataType::Bytes, Cell::Bytes(b)) => Value::Bytes(b.into()),
        (DataType::Date, Cell::Date(d)) => Value::Date(d),
        (DataType::Timestamp, Cell::Micros(t)) => Value::Timestamp(t),
        (DataType::Json, Cell::Text(s)) => Value::Json(serde_json::from_str(&s).ok()?),
        (DataType::List(inner), Cell::Text(s)) => list_from_json(&serde_json::from_str(&s).ok()?, inner)?,
        _ => return None,
    })
}

/// The select-list expression reading field `name` of type `t` from `t.`: text for what is
/// bound as text (decimals, JSON), the column itself otherwise.
fn read_expr(name: &str, t: &DataType) -> String {
    match t {
        DataType::Decimal | DataType::String | DataType::Json | DataType::List(_) => {
            format!("t.{}::text", quote_ident(name))
        }
        _ => format!("t.{}", quote_ident(name)),
    }
}

/// The ordering expression of key column `name`: byte order for text.
fn order_expr(name: &str, t: &DataType) -> String {
    match t {
        DataType::String => format!("t.{} COLLATE \"C\"", quote_ident(name)),
        _ => format!("t.{}", quote_ident(name)),
    }
}

impl PostgresDestination {
    /// The record in `row` from column `first` on, one column per field of `schema`.
    fn record_of(schema: &Schema, row: &Row, first: usize) -> Held {
        let mut values = Vec::with_capacity(schema.len());
        for (i, field) in schema.fields().iter().enumerate() {
            let read = row.try_get::<_, Option<Cell>>(first + i).ok().and_then(|cell| value(cell, &field.data_type));
            match read {
                Some(v) => values.push(v),
                None => {
                    return Held::Unreadable(format!(
                        "column `{}` does not read back as {}",
                        field.name, field.data_type
                    ));
                }
            }
        }
        Held::Record(Record::new(values))
    }

    /// The key columns bound as arrays, one element per key, for `unnest`; `None` for a key
    /// that does not decode into values of the key columns' types.
    fn bind_keys<'k>(schema: &Schema, keys: &'k [Vec<Value>]) -> (Vec<Column<'k>>, Vec<Bind>) {
        let binds: Vec<Bind> =
            schema.key_indices().iter().filter_map(|&i| schema.field(i).map(|f| Bind::of(&f.data_type))).collect();
        let mut columns: Vec<Column<'k>> = binds.iter().map(|&b| Column::new(b, keys.len())).collect();
        for values in keys {
            for (column, value) in columns.iter_mut().zip(values) {
                column.push(value);
            }
        }
        (columns, binds)
    }
}

#[async_trait]
impl ReadBack for PostgresDestination {
    async fn read(&self, _sync_id: &str, schema: &Schema, keys: &[Key]) -> Result<Vec<Held>, DestinationError> {
        let mut held = vec![Held::Absent; keys.len()];
        // Keys that do not decode into the key columns' types are not in the table.
        let key_types: Vec<&DataType> =
            schema.key_indices().iter().filter_map(|&i| schema.field(i)).map(|f| &f.data_type).collect();
        let mut positions = Vec::with_capacity(keys.len());
        let mut decoded = Vec::with_capacity(keys.len());
        for (at, key) in keys.iter().enumerate() {
            if let Ok(values) = key.decode()
                && values.len() == key_types.len()
                && values.iter().zip(&key_types).all(|(v, t)| !v.is_null() && t.accepts(v))
            {
                positions.push(at);
                decoded.push(values);
            }
        }
        if decoded.is_empty() {
            return Ok(held);
        }
        let (columns, binds) = Self::bind_keys(schema, &decoded);
        let fields = schema.fields();
        let key_names: Vec<&str> = schema.key_names().collect();
        let select: Vec<String> = fields.iter().map(|f| read_expr(&f.name, &f.data_type)).collect();
        let params: Vec<String> =
            binds.iter().enumerate().map(|(j, b)| format!("${}::{}", j + 1, b.array_type())).collect();
        let aliases: Vec<String> = (0..binds.len()).map(|j| format!("k{j}")).collect();
        let on: Vec<String> = key_names
            .iter()
            .zip(&key_types)
            .enumerate()
            .map(|(j, (name, t))| format!("t.{} = {}", quote_ident(name), convert(&format!("u.k{j}"), t)))
            .collect();
        let sql = format!(
            "SELECT u.o, {} FROM {} AS t JOIN unnest({}) WITH ORDINALITY AS u({}, o) ON {}",
            select.join(", "),
            self.table(),
            params.join(", "),
            aliases.join(", "),
            on.join(" AND ")
        );
        let args: Vec<&(dyn ToSql + Sync)> = columns.iter().map(Column::as_sql).collect();
        let client = self.client().await?;
        let rows = client.query(&sql, &args).await.map_err(|e| self.classify(e, "reading rows back"))?;
        for row in rows {
            let o: i64 = row.try_get(0).map_err(|e| self.classify(e, "reading rows back"))?;
            let Some(&at) = usize::try_from(o - 1).ok().and_then(|i| positions.get(i)) else { continue };
            held[at] = Self::record_of(schema, &row, 1);
        }
        Ok(held)
    }

    async fn keys(
        &self,
        _sync_id: &str,
        schema: &Schema,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<Key>, DestinationError> {
        let key_fields: Vec<_> = schema.key_indices().iter().filter_map(|&i| schema.field(i)).collect();
        let select: Vec<String> = key_fields.iter().map(|f| read_expr(&f.name, &f.data_type)).collect();
        let order: Vec<String> = key_fields.iter().map(|f| order_expr(&f.name, &f.data_type)).collect();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let after_values = match after.map(Key::decode) {
            Some(Ok(values)) => Some(values),
            Some(Err(e)) => {
                return Err(DestinationError::fatal(format!(
                    "{}: the key to list after does not decode: {e}",
                    self.name
                )));
            }
            None => None,
        };
        let client = self.client().await?;
        let rows = match &after_values {
            None => {
                let sql = format!(
                    "SELECT {} FROM {} AS t ORDER BY {} LIMIT $1",
                    select.join(", "),
                    self.table(),
                    order.join(", ")
                );
                client.query(&sql, &[&limit]).await
            }
            Some(values) => {
                let one = [values.clone()];
                let (columns, binds) = Self::bind_keys(schema, &one);
                let params: Vec<String> =
                    binds.iter().enumerate().map(|(j, b)| format!("${}::{}", j + 2, b.array_type())).collect();
                let aliases: Vec<String> = (0..binds.len()).map(|j| format!("k{j}")).collect();
                let bound: Vec<String> = key_fields
                    .iter()
                    .enumerate()
                    .map(|(j, f)| {
                        let expr = convert(&format!("u.k{j}"), &f.data_type);
                        if f.data_type == DataType::String { format!("{expr} COLLATE \"C\"") } else { expr }
                    })
                    .collect();
                let sql = format!(
                    "SELECT {} FROM {} AS t WHERE ({}) > (SELECT {} FROM unnest({}) AS u({})) ORDER BY {} LIMIT $1",
                    select.join(", "),
                    self.table(),
                    order.join(", "),
                    bound.join(", "),
                    params.join(", "),
                    aliases.join(", "),
                    order.join(", ")
                );
                let mut args: Vec<&(dyn ToSql + Sync)> = vec![&limit];
                args.extend(columns.iter().map(Column::as_sql));
                client.query(&sql, &args).await
            }
        }
        .map_err(|e| self.classify(e, "listing the keys held"))?;
        let mut keys = Vec::with_capacity(rows.len());
        for row in rows {
            let mut values = Vec::with_capacity(key_fields.len());
            for (i, field) in key_fields.iter().enumerate() {
                let cell = row.try_get::<_, Option<Cell>>(i).map_err(|e| self.classify(e, "listing the keys held"))?;
                match value(cell, &field.data_type) {
                    Some(v) => values.push(v),
                    None => {
                        return Err(DestinationError::fatal(format!(
                            "{}: key column `{}` does not read back as {}; the table's column has another type than \
                             the sync's field",
                            self.name, field.name, field.data_type
                        )));
                    }
                }
            }
            keys.push(Key::from_values(&values));
        }
        Ok(keys)
    }
}
