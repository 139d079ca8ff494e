//! Binding a batch: each field as one PostgreSQL array, unnested by the statements.

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};
use rse_core::{DataType, Value};
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::postgres::copy::PG_EPOCH_MICROS;
use crate::postgres::types::list_json;

/// The PostgreSQL array type a field is bound as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bind {
    Bool,
    Int,
    Float,
    Text,
    Bytes,
    Date,
    Timestamp,
}

impl Bind {
    pub(super) fn of(t: &DataType) -> Bind {
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

    pub(super) fn array_type(self) -> &'static str {
        match self {
            Bind::Bool => "bool[]",
            Bind::Int => "int8[]",
            Bind::Timestamp => "timestamptz[]",
            Bind::Float => "float8[]",
            Bind::Text => "text[]",
            Bind::Bytes => "bytea[]",
            Bind::Date => "int4[]",
        }
    }
}

/// The SQL expression turning the unnested column `col` into the field's type.
pub(super) fn convert(col: &str, t: &DataType) -> String {
    match t {
        DataType::Decimal => format!("{col}::numeric"),
        DataType::Json | DataType::List(_) => format!("{col}::jsonb"),
        DataType::Date => format!("('1970-01-01'::date + {col})"),
        _ => col.to_owned(),
    }
}

/// A timestamp in PostgreSQL's binary form: microseconds since 2000-01-01 UTC. Bound as
/// such, not as a number of microseconds turned into a timestamp by SQL: `int8 * interval`
/// goes through a float and loses microseconds beyond about 285 years from 1970.
#[derive(Debug, Clone, Copy)]
pub(super) struct PgTimestamp(i64);

impl PgTimestamp {
    /// The timestamp `micros` since 1970-01-01 UTC, if PostgreSQL's form can hold it.
    fn of(micros: i64) -> Option<Self> {
        micros.checked_sub(PG_EPOCH_MICROS).map(PgTimestamp)
    }
}

impl ToSql for PgTimestamp {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.put_i64(self.0);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::TIMESTAMPTZ | Type::TIMESTAMP)
    }

    to_sql_checked!();
}

/// One column of a batch, as the array bound for it. Text and bytes borrow from the
/// batch's records where they can: a batch is bound without copying its strings.
pub(super) enum Column<'a> {
    Bool(Vec<Option<bool>>),
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Text(Vec<Option<Cow<'a, str>>>),
    Bytes(Vec<Option<Cow<'a, [u8]>>>),
    Date(Vec<Option<i32>>),
    Timestamp(Vec<Option<PgTimestamp>>),
}

impl<'a> Column<'a> {
    pub(super) fn new(bind: Bind, n: usize) -> Column<'a> {
        match bind {
            Bind::Bool => Column::Bool(Vec::with_capacity(n)),
            Bind::Int => Column::Int(Vec::with_capacity(n)),
            Bind::Timestamp => Column::Timestamp(Vec::with_capacity(n)),
            Bind::Float => Column::Float(Vec::with_capacity(n)),
            Bind::Text => Column::Text(Vec::with_capacity(n)),
            Bind::Bytes => Column::Bytes(Vec::with_capacity(n)),
            Bind::Date => Column::Date(Vec::with_capacity(n)),
        }
    }

    /// Appends `value`, borrowing its text; `false` when it does not fit the column's type.
    pub(super) fn push(&mut self, value: &'a Value) -> bool {
        match (self, value) {
            (Column::Text(c), Value::String(s)) => c.push(Some(Cow::Borrowed(s.as_str()))),
            (Column::Text(c), Value::Decimal(d)) => c.push(Some(Cow::Borrowed(d.as_str()))),
            (Column::Bytes(c), Value::Bytes(b)) => c.push(Some(Cow::Borrowed(b.as_ref()))),
            (column, value) => return column.push_owned(value),
        }
        true
    }

    /// Appends `value`, copying its text; `false` when it does not fit the column's type.
    pub(super) fn push_owned(&mut self, value: &Value) -> bool {
        match (self, value) {
            (Column::Bool(c), Value::Null) => c.push(None),
            (Column::Int(c), Value::Null) => c.push(None),
            (Column::Float(c), Value::Null) => c.push(None),
            (Column::Text(c), Value::Null) => c.push(None),
            (Column::Bytes(c), Value::Null) => c.push(None),
            (Column::Date(c), Value::Null) => c.push(None),
            (Column::Timestamp(c), Value::Null) => c.push(None),
            (Column::Bool(c), Value::Bool(b)) => c.push(Some(*b)),
            (Column::Int(c), Value::Int(i)) => c.push(Some(*i)),
            (Column::Timestamp(c), Value::Timestamp(t)) => match PgTimestamp::of(*t) {
                Some(t) => c.push(Some(t)),
                None => return false,
            },
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

    pub(super) fn truncate(&mut self, n: usize) {
        match self {
            Column::Bool(c) => c.truncate(n),
            Column::Int(c) => c.truncate(n),
            Column::Float(c) => c.truncate(n),
            Column::Text(c) => c.truncate(n),
            Column::Bytes(c) => c.truncate(n),
            Column::Date(c) => c.truncate(n),
            Column::Timestamp(c) => c.truncate(n),
        }
    }

    pub(super) fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Column::Bool(c) => c,
            Column::Int(c) => c,
            Column::Float(c) => c,
            Column::Text(c) => c,
            Column::Bytes(c) => c,
            Column::Date(c) => c,
            Column::Timestamp(c) => c,
        }
    }
}

/// The rows in `columns`.
pub(super) fn column_len(columns: &[Column<'_>]) -> usize {
    match columns.first() {
        Some(Column::Bool(c)) => c.len(),
        Some(Column::Int(c)) => c.len(),
        Some(Column::Float(c)) => c.len(),
        Some(Column::Text(c)) => c.len(),
        Some(Column::Bytes(c)) => c.len(),
        Some(Column::Date(c)) => c.len(),
        Some(Column::Timestamp(c)) => c.len(),
        None => 0,
    }
}
