//! Value encodings the destinations share: JSON, flat text, RFC 3339 instants.
//!
//! One mapping for every text-based destination, so a record looks the same in a webhook
//! body, a Redis hash and a NATS message:
//!
//! | value | JSON | text (Redis hash field) |
//! |---|---|---|
//! | null | `null` | field left out |
//! | bool | `true` / `false` | `true` / `false` |
//! | int | number | decimal digits |
//! | float | number; NaN and ±inf as the strings `"NaN"`, `"inf"`, `"-inf"` | shortest round-trip form |
//! | decimal | string (exact: JSON numbers lose precision in most parsers) | the decimal |
//! | string | string | the string |
//! | bytes | base64 string (standard alphabet, padded) | base64 |
//! | date | `"YYYY-MM-DD"` | `YYYY-MM-DD` |
//! | timestamp | RFC 3339 in UTC with microseconds, `"2024-05-01T12:00:00.000001Z"` | the same |
//! | json | the document | its canonical text |
//! | list | array | its JSON text |

//!
//! Lists in a SQL destination's JSON column differ where a SQL column has its own text for
//! a value ([`sql_float_json`], [`sql_bytes_text`]): NaN and ±inf are `"NaN"`, `"Infinity"`,
//! `"-Infinity"` and bytes `"\\x"` with lower-case hex.

// Each destination uses a part of this module; with only some features on, the rest is unused.
#![cfg_attr(not(all(feature = "http", feature = "redis", feature = "nats", feature = "sqlite")), allow(dead_code))]

use base64::Engine as _;
use rse_core::{Schema, Value};
use serde_json::{Map, Value as Json};

/// The JSON form of `value` (see the module table).
pub(crate) fn to_json(value: &Value) -> Json {
    match value {
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or_else(|| Json::String(float_text(*f)), Json::Number),
        Value::Decimal(d) => Json::String(d.as_str().to_owned()),
        Value::String(s) => Json::String(s.clone()),
        Value::Bytes(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Value::Date(d) => Json::String(format_date(*d)),
        Value::Timestamp(t) => Json::String(format_timestamp(*t)),
        Value::Json(j) => j.clone(),
        Value::List(items) => Json::Array(items.iter().map(to_json).collect()),
        // `Null` and any value type added later.
        _ => Json::Null,
    }
}

/// The text form of `value`, or `None` for null (see the module table).
pub(crate) fn to_text(value: &Value) -> Option<String> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => float_text(*f),
        Value::Decimal(d) => d.as_str().to_owned(),
        Value::String(s) => s.clone(),
        Value::Json(j) => j.to_string(),
        other => match to_json(other) {
            Json::String(s) => s,
            json => json.to_string(),
        },
    })
}

fn float_text(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "inf".to_owned() } else { "-inf".to_owned() }
    } else {
        // `Display` of f64 is the shortest text that parses back to the same float.
        f.to_string()
    }
}

/// A float inside a list, as a SQL destination's JSON column holds it: a number, or for
/// NaN and ±infinity, which JSON has no number for, PostgreSQL's text for them (`"NaN"`,
/// `"Infinity"`, `"-Infinity"`; `::float8` reads it back).
pub(crate) fn sql_float_json(f: f64) -> Json {
    serde_json::Number::from_f64(f).map_or_else(
        || {
            let text = if f.is_nan() {
                "NaN"
            } else if f > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            };
            Json::String(text.to_owned())
        },
        Json::Number,
    )
}

/// Bytes inside a list, as a SQL destination's JSON column holds them: `\x` and lower-case
/// hex, PostgreSQL's `bytea` text (`::bytea` reads it back; SQLite `unhex(substr(v, 3))`).
pub(crate) fn sql_bytes_text(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(2 + 2 * bytes.len());
    text.push_str("\\x");
    for byte in bytes {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    text
}

/// A JSON object of the record's fields by name.
pub(crate) fn record_object(schema: &Schema, values: &[Value]) -> Map<String, Json> {
    schema.fields().iter().zip(values).map(|(f, v)| (f.name.clone(), to_json(v))).collect()
}

/// A JSON object of the key columns by name, from a change's key values.
pub(crate) fn key_object(schema: &Schema, key_values: &[Value]) -> Map<String, Json> {
    schema.key_names().zip(key_values).map(|(name, v)| (name.to_owned(), to_json(v))).collect()
}

/// Dates as `YYYY-MM-DD`, timestamps as RFC 3339 UTC with six fractional digits.
pub(crate) use rse_core::time::{format_date, format_timestamp_micros as format_timestamp};

/// Replaces `{column}` placeholders in `template` with the key's values (text form) and
/// `{sync_id}` with `sync_id` as given; `sanitize` maps each key value (e.g. to keep a NATS
/// subject token valid, or a Redis key unambiguous).
pub(crate) fn fill_template(
    template: &[TemplatePart],
    sync_id: &str,
    key_values: &[Value],
    sanitize: impl Fn(&str) -> String,
) -> String {
    let mut out = String::new();
    for part in template {
        match part {
            TemplatePart::Literal(s) => out.push_str(s),
            TemplatePart::SyncId => out.push_str(sync_id),
            TemplatePart::KeyColumn(i) => {
                let text = key_values.get(*i).and_then(to_text).unwrap_or_default();
                out.push_str(&sanitize(&text));
            }
        }
    }
    out
}

/// One piece of a parsed key template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TemplatePart {
    Literal(String),
    SyncId,
    /// The key column at this position of the key.
    KeyColumn(usize),
}

/// Parses `template` against `schema`'s key columns.
///
/// # Errors
/// A message naming a placeholder that is not a key column (with the key columns there are),
/// or an unclosed brace.
pub(crate) fn parse_template(template: &str, schema: &Schema) -> Result<Vec<TemplatePart>, String> {
    let key_names: Vec<&str> = schema.key_names().collect();
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(TemplatePart::Literal(rest[..open].to_owned()));
        }
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| format!("key template `{template}` has an unclosed `{{`"))?;
        let name = &after[..close];
        if name == "sync_id" {
            parts.push(TemplatePart::SyncId);
        } else {
            let i = key_names.iter().position(|k| *k == name).ok_or_else(|| {
                format!(
                    "key template `{template}` names `{{{name}}}`, which is not a key column (key columns: {}; or `{{sync_id}}`)",
                    key_names.join(", ")
                )
            })?;
            parts.push(TemplatePart::KeyColumn(i));
        }
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Literal(rest.to_owned()));
    }
    if !parts.iter().any(|p| matches!(p, TemplatePart::KeyColumn(_))) && !key_names.is_empty() {
        return Err(format!(
            "key template `{template}` names no key column, so every record would share one key; add one of: {}",
            key_names.iter().map(|k| format!("{{{k}}}")).collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_format_as_rfc3339() {
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(format_timestamp(1_714_564_800_000_001), "2024-05-01T12:00:00.000001Z");
        assert_eq!(format_timestamp(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(format_date(19_783), "2024-03-01");
        assert_eq!(format_date(-719_528), "0000-01-01");
    }
}
