//! How rse's types are stored in PostgreSQL: the column type of each, and lists as `jsonb`.

use rse_core::{DataType, Value};

/// The column type the destination creates for a field, spelled as `format_type` prints
/// it, so the COPY's check of an existing table compares like with like.
pub(crate) fn pg_type(t: &DataType) -> &'static str {
    match t {
        DataType::Bool => "boolean",
        DataType::Int => "bigint",
        DataType::Float => "double precision",
        DataType::Decimal => "numeric",
        DataType::String => "text",
        DataType::Bytes => "bytea",
        DataType::Date => "date",
        DataType::Timestamp => "timestamp with time zone",
        _ => "jsonb",
    }
}

/// A list as JSON (lists are stored as `jsonb`). A value JSON cannot hold is written as the
/// text PostgreSQL gives it in its own column type, so `(list->>i)::float8` or `::bytea`
/// gives it back: NaN and ±infinity as `"NaN"`, `"Infinity"`, `"-Infinity"`, bytes as
/// `"\\x"` and lower-case hex. Dates are days since 1970-01-01 and timestamps microseconds
/// since the epoch, as numbers.
pub(crate) fn list_json(items: &[Value]) -> serde_json::Value {
    serde_json::Value::Array(
        items
            .iter()
            .map(|v| match v {
                Value::Null => serde_json::Value::Null,
                Value::Bool(b) => serde_json::Value::Bool(*b),
                Value::Int(i) => serde_json::Value::from(*i),
                Value::Float(f) => serde_json::Number::from_f64(*f).map_or_else(
                    || {
                        let text = if f.is_nan() {
                            "NaN"
                        } else if *f > 0.0 {
                            "Infinity"
                        } else {
                            "-Infinity"
                        };
                        serde_json::Value::String(text.to_owned())
                    },
                    serde_json::Value::Number,
                ),
                Value::String(s) => serde_json::Value::String(s.clone()),
                Value::Decimal(d) => serde_json::Value::String(d.as_str().to_owned()),
                Value::Json(j) => j.clone(),
                Value::List(inner) => list_json(inner),
                Value::Date(d) => serde_json::Value::from(*d),
                Value::Timestamp(t) => serde_json::Value::from(*t),
                Value::Bytes(b) => {
                    let mut text = String::with_capacity(2 + 2 * b.len());
                    text.push_str("\\x");
                    for byte in b.iter() {
                        text.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
                        text.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
                    }
                    serde_json::Value::String(text)
                }
                _ => serde_json::Value::Null,
            })
            .collect(),
    )
}
