//! The binary COPY encoder: rows in PostgreSQL's `COPY … FROM STDIN (FORMAT binary)` form.
//!
//! The destination writes a batch's inserts (keys new to the sync) by COPY instead of the
//! upsert: the server stores the rows with its bulk insert and no speculative insertion per
//! row, about twice the rows per second of `INSERT … ON CONFLICT` on the same table. The
//! state store writes the snapshot rows of those keys the same way under exactly-once. A key
//! new to the sync may still be in the table (a row someone else wrote); the COPY then fails
//! with a unique violation, the transaction is rolled back and the batch is written again by
//! the upsert.
//!
//! The binary format must match each column's type exactly, so the destination uses the COPY
//! only for a plain table (no rules) whose columns have the types it creates (see
//! [`column_takes`]); any other table is written by the upsert alone.

use bytes::{BufMut, BytesMut};
use rse_core::{DataType, Value};

use super::types::list_json;

/// A batch's inserts (and, under exactly-once, their snapshot rows) go by COPY when there
/// are at least this many: below it, the COPY's extra statement costs more than the upsert
/// saves.
pub const COPY_MIN_ROWS: usize = 64;

/// The signature, flags and header extension length that open a binary COPY stream.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Days from 1970-01-01 (rse's dates) to 2000-01-01 (PostgreSQL's).
pub(crate) const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
pub(crate) const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// The PostgreSQL type a field is written as in the binary COPY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CopyType {
    Bool,
    Int8,
    Float8,
    Text,
    Bytea,
    Date,
    Timestamptz,
    Numeric,
    Jsonb,
}

impl CopyType {
    /// The type a field of `t` is written as: the column type the destination creates.
    pub(crate) fn of(t: &DataType) -> CopyType {
        match t {
            DataType::Bool => CopyType::Bool,
            DataType::Int => CopyType::Int8,
            DataType::Float => CopyType::Float8,
            DataType::Decimal => CopyType::Numeric,
            DataType::String => CopyType::Text,
            DataType::Bytes => CopyType::Bytea,
            DataType::Date => CopyType::Date,
            DataType::Timestamp => CopyType::Timestamptz,
            _ => CopyType::Jsonb,
        }
    }
}

/// Whether a column of `column_type` (as `format_type` names it) reads the binary form of
/// `created`, the type the destination creates for the field (`pg_type`). A type modifier is
/// fine where the server applies it on receipt (`varchar(n)`, `numeric(p, s)`).
pub(crate) fn column_takes(created: &str, column_type: &str) -> bool {
    column_type == created
        || (created == "text" && column_type.starts_with("character varying"))
        || (created == "numeric" && column_type.starts_with("numeric("))
}

/// Rows of one binary COPY, encoded as they are added.
#[derive(Debug)]
pub(crate) struct CopyRows {
    buf: BytesMut,
    rows: usize,
}

impl CopyRows {
    /// An empty stream, with room for about `bytes`.
    pub(crate) fn with_capacity(bytes: usize) -> Self {
        let mut buf = BytesMut::with_capacity(HEADER.len() + bytes + 2);
        buf.put_slice(HEADER);
        Self { buf, rows: 0 }
    }

    /// The rows added.
    pub(crate) fn len(&self) -> usize {
        self.rows
    }

    /// Appends a row of `values` (one per type, `Null` where a record is short) and, under
    /// the version guard, the version. `false`, with nothing appended, when a value does not
    /// have its field's type or is outside what the binary form holds: the row then goes by
    /// the upsert, which rejects it with its reason or lets the server judge it.
    pub(crate) fn push<'v>(
        &mut self,
        types: &[CopyType],
        values: impl Iterator<Item = &'v Value>,
        version: Option<i64>,
    ) -> bool {
        let start = self.buf.len();
        let Ok(fields) = i16::try_from(types.len() + usize::from(version.is_some())) else {
            return false;
        };
        self.buf.put_i16(fields);
        let mut values = values.fuse();
        for &ty in types {
            if !field(&mut self.buf, ty, values.next().unwrap_or(&Value::Null)) {
                self.buf.truncate(start);
                return false;
            }
        }
        if let Some(version) = version {
            self.buf.put_i32(8);
            self.buf.put_i64(version);
        }
        self.rows += 1;
        true
    }

    /// Starts a row of `fields` fields, to be written with the methods below in order.
    pub(crate) fn row(&mut self, fields: i16) {
        self.buf.put_i16(fields);
        self.rows += 1;
    }

    /// A `bigint` field.
    pub(crate) fn int8(&mut self, value: i64) {
        self.buf.put_i32(8);
        self.buf.put_i64(value);
    }

    /// A `smallint` field.
    pub(crate) fn int2(&mut self, value: i16) {
        self.buf.put_i32(2);
        self.buf.put_i16(value);
    }

    /// A `bytea` field. `false`, with nothing written, for more than 2 GiB.
    pub(crate) fn bytea(&mut self, value: &[u8]) -> bool {
        bytes_field(&mut self.buf, value)
    }

    /// A null field.
    pub(crate) fn null(&mut self) {
        self.buf.put_i32(-1);
    }

    /// The stream, closed with its trailer.
    pub(crate) fn finish(mut self) -> bytes::Bytes {
        self.buf.put_i16(-1);
        self.buf.freeze()
    }
}

/// Writes one field (its length, then its value); `false` when `value` does not fit `ty`.
fn field(buf: &mut BytesMut, ty: CopyType, value: &Value) -> bool {
    match (ty, value) {
        (_, Value::Null) => buf.put_i32(-1),
        (CopyType::Bool, Value::Bool(b)) => {
            buf.put_i32(1);
            buf.put_u8(u8::from(*b));
        }
        (CopyType::Int8, Value::Int(i)) => {
            buf.put_i32(8);
            buf.put_i64(*i);
        }
        (CopyType::Float8, Value::Float(f)) => {
            buf.put_i32(8);
            buf.put_f64(*f);
        }
        (CopyType::Text, Value::String(s)) => return bytes_field(buf, s.as_bytes()),
        (CopyType::Bytea, Value::Bytes(b)) => return bytes_field(buf, b),
        (CopyType::Date, Value::Date(d)) => {
            let Some(days) = d.checked_sub(PG_EPOCH_DAYS) else { return false };
            buf.put_i32(4);
            buf.put_i32(days);
        }
        (CopyType::Timestamptz, Value::Timestamp(t)) => {
            let Some(micros) = t.checked_sub(PG_EPOCH_MICROS) else { return false };
            buf.put_i32(8);
            buf.put_i64(micros);
        }
        (CopyType::Numeric, Value::Decimal(d)) => return numeric(buf, d.as_str()),
        (CopyType::Jsonb, Value::Json(j)) => return jsonb(buf, j),
        (CopyType::Jsonb, Value::List(items)) => return jsonb(buf, &list_json(items)),
        _ => return false,
    }
    true
}

fn bytes_field(buf: &mut BytesMut, bytes: &[u8]) -> bool {
    let Ok(len) = i32::try_from(bytes.len()) else { return false };
    buf.put_i32(len);
    buf.put_slice(bytes);
    true
}

/// `jsonb`'s binary form: a version byte (1), then the JSON text.
fn jsonb(buf: &mut BytesMut, json: &serde_json::Value) -> bool {
    let at = buf.len();
    buf.put_i32(0);
    buf.put_u8(1);
    if serde_json::to_writer((&mut *buf).writer(), json).is_err() {
        buf.truncate(at);
        return false;
    }
    let Ok(len) = i32::try_from(buf.len() - at - 4) else {
        buf.truncate(at);
        return false;
    };
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
    true
}

/// `numeric`'s binary form from a normalised decimal (`-12.5`, `0.001`, `300`): the digits
/// in base 10,000, the weight of the first, the sign and the display scale.
fn numeric(buf: &mut BytesMut, text: &str) -> bool {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let int = if int == "0" { "" } else { int };
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return false;
    }
    // The digits, padded with zeros to whole groups of four on both sides of the point.
    let lead = (4 - int.len() % 4) % 4;
    let int_groups = (lead + int.len()) / 4;
    let groups = int_groups + frac.len().div_ceil(4);
    let digit = |i: usize| -> i16 {
        let b = if i < lead {
            b'0'
        } else if i < lead + int.len() {
            int.as_bytes()[i - lead]
        } else {
            frac.as_bytes().get(i - lead - int.len()).copied().unwrap_or(b'0')
        };
        i16::from(b - b'0')
    };
    let group = |g: usize| (0..4).fold(0i16, |n, i| n * 10 + digit(g * 4 + i));
    let first = (0..groups).find(|&g| group(g) != 0);
    let last = (0..groups).rev().find(|&g| group(g) != 0);
    let Ok(dscale) = i16::try_from(frac.len()) else { return false };
    let (first, ndigits, weight) = match (first, last) {
        (Some(f), Some(l)) => (f, l - f + 1, int_groups as i64 - 1 - f as i64),
        _ => (0, 0, 0),
    };
    let (Ok(weight), Ok(count)) = (i16::try_from(weight), i16::try_from(ndigits)) else { return false };
    let Ok(len) = i32::try_from(8 + 2 * ndigits) else { return false };
    buf.put_i32(len);
    buf.put_i16(count);
    buf.put_i16(weight);
    buf.put_u16(if negative && ndigits > 0 { 0x4000 } else { 0 });
    buf.put_i16(dscale);
    for g in first..first + ndigits {
        buf.put_i16(group(g));
    }
    true
}

/// Sends `rows`, a whole binary COPY stream, by the COPY statement `sql` (prepared once per
/// connection).
pub(crate) async fn copy_in(
    tx: &deadpool_postgres::Transaction<'_>,
    sql: &str,
    rows: bytes::Bytes,
) -> Result<(), tokio_postgres::Error> {
    use futures::SinkExt;
    let statement = tx.prepare_cached(sql).await?;
    let sink = tx.copy_in::<_, bytes::Bytes>(&statement).await?;
    let mut sink = std::pin::pin!(sink);
    sink.send(rows).await?;
    sink.as_mut().finish().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (ndigits, weight, sign, dscale, digits) of `text`'s binary form.
    fn decode(text: &str) -> (i16, i16, u16, i16, Vec<i16>) {
        let mut buf = BytesMut::new();
        assert!(numeric(&mut buf, text), "{text}");
        let b = &buf[..];
        let len = i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        assert_eq!(len, b.len() - 4);
        let word = |at: usize| i16::from_be_bytes([b[4 + at], b[5 + at]]);
        let n = word(0);
        let digits = (0..n as usize).map(|i| word(8 + 2 * i)).collect();
        (n, word(2), word(4) as u16, word(6), digits)
    }

    #[test]
    fn numerics_in_base_ten_thousand() {
        assert_eq!(decode("0"), (0, 0, 0, 0, vec![]));
        assert_eq!(decode("0.5"), (1, -1, 0, 1, vec![5000]));
        assert_eq!(decode("12345.678"), (3, 1, 0, 3, vec![1, 2345, 6780]));
        assert_eq!(decode("-7"), (1, 0, 0x4000, 0, vec![7]));
        assert_eq!(decode("100000000"), (1, 2, 0, 0, vec![1]));
        assert_eq!(decode("0.00000001"), (1, -2, 0, 8, vec![1]));
        assert_eq!(decode("10000.0001"), (3, 1, 0, 4, vec![1, 0, 1]));
        assert_eq!(decode("-0.0012"), (1, -1, 0x4000, 4, vec![12]));
    }

    #[test]
    fn values_that_do_not_fit_are_refused_whole() {
        let mut rows = CopyRows::with_capacity(0);
        let types = [CopyType::Int8, CopyType::Text];
        assert!(!rows.push(&types, [Value::Int(1), Value::Int(2)].iter(), None));
        assert!(!rows.push(&types, [Value::String("x".into())].iter(), None));
        assert!(!rows.push(&[CopyType::Date], [Value::Date(i32::MIN)].iter(), None));
        assert_eq!(rows.len(), 0);
        assert_eq!(&rows.finish()[..], &[HEADER, &[0xff, 0xff][..]].concat()[..]);
        let mut rows = CopyRows::with_capacity(0);
        assert!(rows.push(&types, [Value::Int(1)].iter(), Some(3)));
        assert_eq!(rows.len(), 1);
        let body = rows.finish();
        // Three fields: the int, a null for the missing text, the version.
        assert_eq!(
            &body[HEADER.len()..],
            &[
                0, 3, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1, 255, 255, 255, 255, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 3, 255,
                255
            ][..]
        );
    }
}
