//! The JSON and text forms of rse values that the HTTP, Redis and NATS destinations write.
//!
//! One mapping for every text-based destination, so that a record looks the same in a
//! webhook body, a NATS message and a Redis hash — and in what a host writes itself with
//! these functions (feature `encode`, which pulls no connector):
//!
//! | [`Value`] | [`value_to_json`] | [`value_to_text`] (a Redis hash field) |
//! |---|---|---|
//! | `Null` | `null` | `None`: the field is left out |
//! | `Bool` | `true` / `false` | `true` / `false` |
//! | `Int` | a number | its decimal digits, `-42` |
//! | `Float` | a number, shortest form that reads back to the same float (`1.0`, `1e+21`); NaN, +∞ and −∞, which JSON has no number for, as the strings `"NaN"`, `"inf"`, `"-inf"` | Rust's `Display`: shortest digits that read back to the same float, never an exponent (`1`, `0.1`, `1000000000000000000000`); `NaN`, `inf`, `-inf` |
//! | `Decimal` | a string of the normalised decimal, `"12.5"` (exact: most JSON parsers read numbers as floats) | the normalised decimal, `12.5` |
//! | `String` | a string | the string |
//! | `Bytes` | a string, base64 with the standard alphabet and padding, `"AAH/"` | the same base64 |
//! | `Date` | a string, `"2024-03-01"` (years outside 0–9999 signed: `"+10000-01-01"`) | `2024-03-01` |
//! | `Timestamp` | a string, RFC 3339 in UTC with exactly six fractional digits, `"2024-05-01T12:00:00.000001Z"` | the same |
//! | `Json` | the document itself | its compact JSON text (`serde_json`'s, object keys in the map's order: sorted, unless serde_json's `preserve_order` feature is on in the build) |
//! | `List` | an array of the items' JSON forms | the array's compact JSON text, `[1,null,"a"]` |
//!
//! A decimal, bytes, a date and a timestamp are JSON strings; a reader tells them from a
//! plain string by the field's [`DataType`](rse_core::DataType) in the schema. A value kind
//! added to [`Value`] in a later version of rse is `null` here until this table lists it.
//!
//! ```
//! use rse_connectors::encode::{record_to_json, value_to_json, value_to_text};
//! use rse_core::{DataType, Decimal, Field, Record, Schema, Value};
//!
//! let schema = Schema::new(
//!     vec![Field::required("id", DataType::Int), Field::new("balance", DataType::Decimal)],
//!     &["id"],
//! )?;
//! let record = Record::new(vec![Value::Int(7), Value::Decimal(Decimal::parse("12.50")?)]);
//! let json = serde_json::Value::Object(record_to_json(&schema, &record));
//! assert_eq!(json.to_string(), r#"{"balance":"12.5","id":7}"#);
//!
//! assert_eq!(value_to_json(&Value::Float(f64::NAN)), serde_json::json!("NaN"));
//! assert_eq!(value_to_text(&Value::Bool(true)).as_deref(), Some("true"));
//! assert_eq!(value_to_text(&Value::Null), None);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use base64::Engine as _;
use rse_core::time::{format_date, format_timestamp_micros};
use rse_core::{Record, Schema, Value};
use serde_json::{Map, Value as Json};

/// The JSON form of `value`, as the module's table says.
///
/// ```
/// use rse_connectors::encode::value_to_json;
/// use rse_core::Value;
/// use serde_json::json;
///
/// assert_eq!(value_to_json(&Value::Int(-3)), json!(-3));
/// assert_eq!(value_to_json(&Value::Float(f64::NEG_INFINITY)), json!("-inf"));
/// assert_eq!(value_to_json(&Value::Bytes(vec![0, 1, 255].into())), json!("AAH/"));
/// assert_eq!(value_to_json(&Value::Date(19_783)), json!("2024-03-01"));
/// assert_eq!(value_to_json(&Value::Timestamp(1_714_564_800_000_001)), json!("2024-05-01T12:00:00.000001Z"));
/// assert_eq!(value_to_json(&Value::List(vec![Value::Int(1), Value::Null])), json!([1, null]));
/// ```
pub fn value_to_json(value: &Value) -> Json {
    match value {
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or_else(|| Json::String(float_text(*f)), Json::Number),
        Value::Decimal(d) => Json::String(d.as_str().to_owned()),
        Value::String(s) => Json::String(s.clone()),
        Value::Bytes(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Value::Date(d) => Json::String(format_date(*d)),
        Value::Timestamp(t) => Json::String(format_timestamp_micros(*t)),
        Value::Json(j) => j.clone(),
        Value::List(items) => Json::Array(items.iter().map(value_to_json).collect()),
        // `Null` and any value kind added later.
        _ => Json::Null,
    }
}

/// The text form of `value`, or `None` for null, as the module's table says.
///
/// ```
/// use rse_connectors::encode::value_to_text;
/// use rse_core::Value;
///
/// assert_eq!(value_to_text(&Value::Float(0.1)).as_deref(), Some("0.1"));
/// assert_eq!(value_to_text(&Value::Float(1.0)).as_deref(), Some("1"));
/// assert_eq!(value_to_text(&Value::String("a b".into())).as_deref(), Some("a b"));
/// assert_eq!(value_to_text(&Value::Timestamp(0)).as_deref(), Some("1970-01-01T00:00:00.000000Z"));
/// assert_eq!(value_to_text(&Value::List(vec![Value::Int(1), Value::Null])).as_deref(), Some("[1,null]"));
/// assert_eq!(value_to_text(&Value::Null), None);
/// ```
pub fn value_to_text(value: &Value) -> Option<String> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => float_text(*f),
        Value::Decimal(d) => d.as_str().to_owned(),
        Value::String(s) => s.clone(),
        Value::Json(j) => j.to_string(),
        other => match value_to_json(other) {
            Json::String(s) => s,
            json => json.to_string(),
        },
    })
}

/// A JSON object of the record's fields by name, each in its [`value_to_json`] form.
///
/// Fields are matched to values by position; values beyond the schema's fields are left
/// out, and a field without a value is too. The object's key order is serde_json's map
/// order (sorted by name, unless its `preserve_order` feature is on).
pub fn record_to_json(schema: &Schema, record: &Record) -> Map<String, Json> {
    schema.fields().iter().zip(&record.values).map(|(f, v)| (f.name.clone(), value_to_json(v))).collect()
}

/// A JSON object of the key columns by name, from the key's values in key order (as
/// [`Key::decode`](rse_core::Key::decode) gives them), each in its [`value_to_json`] form.
///
/// ```
/// use rse_connectors::encode::key_to_json;
/// use rse_core::{DataType, Field, Key, Schema, Value};
///
/// let schema = Schema::new(
///     vec![Field::new("name", DataType::String), Field::required("tenant", DataType::String), Field::required("id", DataType::Int)],
///     &["tenant", "id"],
/// )?;
/// let key = Key::from_values(&[Value::from("acme"), Value::Int(7)]);
/// let json = serde_json::Value::Object(key_to_json(&schema, &key.decode()?));
/// assert_eq!(json, serde_json::json!({ "tenant": "acme", "id": 7 }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn key_to_json(schema: &Schema, key_values: &[Value]) -> Map<String, Json> {
    schema.key_names().zip(key_values).map(|(name, v)| (name.to_owned(), value_to_json(v))).collect()
}

/// A float's text: `Display` (the shortest digits that read back to the same float), and
/// `NaN`, `inf`, `-inf` for what has no digits.
fn float_text(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "inf".to_owned() } else { "-inf".to_owned() }
    } else {
        f.to_string()
    }
}

#[cfg(test)]
mod tests {
    use rse_core::{DataType, Decimal, Field};
    use serde_json::json;

    use super::*;

    fn both(value: Value) -> (Json, Option<String>) {
        (value_to_json(&value), value_to_text(&value))
    }

    #[test]
    fn null_is_json_null_and_no_text() {
        assert_eq!(both(Value::Null), (Json::Null, None));
    }

    #[test]
    fn bools_are_true_and_false() {
        assert_eq!(both(Value::Bool(true)), (json!(true), Some("true".into())));
        assert_eq!(both(Value::Bool(false)), (json!(false), Some("false".into())));
    }

    #[test]
    fn ints_are_numbers_and_digits() {
        assert_eq!(both(Value::Int(i64::MIN)), (json!(i64::MIN), Some("-9223372036854775808".into())));
        assert_eq!(both(Value::Int(0)), (json!(0), Some("0".into())));
    }

    #[test]
    fn floats_are_shortest_numbers_and_non_finite_ones_are_words() {
        assert_eq!(both(Value::Float(0.1)), (json!(0.1), Some("0.1".into())));
        assert_eq!(value_to_json(&Value::Float(1.0)).to_string(), "1.0");
        assert_eq!(value_to_text(&Value::Float(1.0)).as_deref(), Some("1"));
        assert_eq!(value_to_json(&Value::Float(1e21)).to_string(), "1e+21");
        assert_eq!(value_to_text(&Value::Float(1e21)).as_deref(), Some("1000000000000000000000"));
        assert_eq!(value_to_text(&Value::Float(-2.5e-7)).as_deref(), Some("-0.00000025"));
        assert_eq!(both(Value::Float(f64::NAN)), (json!("NaN"), Some("NaN".into())));
        assert_eq!(both(Value::Float(f64::INFINITY)), (json!("inf"), Some("inf".into())));
        assert_eq!(both(Value::Float(f64::NEG_INFINITY)), (json!("-inf"), Some("-inf".into())));
        // Every finite float reads back exactly from both forms.
        for f in [0.1, -0.0, 1.0 / 3.0, f64::MAX, f64::MIN_POSITIVE, 5e-324] {
            assert_eq!(value_to_json(&Value::Float(f)).as_f64(), Some(f), "{f}");
            assert_eq!(value_to_text(&Value::Float(f)).and_then(|t| t.parse::<f64>().ok()), Some(f), "{f}");
        }
    }

    #[test]
    fn decimals_are_exact_strings() {
        let d = Decimal::parse("123456789012345678901234567890.120").unwrap();
        assert_eq!(
            both(Value::Decimal(d)),
            (json!("123456789012345678901234567890.12"), Some("123456789012345678901234567890.12".into()))
        );
        assert_eq!(value_to_json(&Value::Decimal(Decimal::parse("-0.0").unwrap())), json!("0"));
    }

    #[test]
    fn strings_are_themselves() {
        assert_eq!(both(Value::from("a \"q\" ü")), (json!("a \"q\" ü"), Some("a \"q\" ü".into())));
        assert_eq!(both(Value::from("")), (json!(""), Some(String::new())));
    }

    #[test]
    fn bytes_are_padded_standard_base64() {
        assert_eq!(both(Value::Bytes(vec![0xfb, 0xff].into())), (json!("+/8="), Some("+/8=".into())));
        assert_eq!(both(Value::Bytes(Vec::new().into())), (json!(""), Some(String::new())));
    }

    #[test]
    fn dates_are_iso_days() {
        assert_eq!(both(Value::Date(0)), (json!("1970-01-01"), Some("1970-01-01".into())));
        assert_eq!(both(Value::Date(19_783)), (json!("2024-03-01"), Some("2024-03-01".into())));
        assert_eq!(value_to_text(&Value::Date(-719_528)).as_deref(), Some("0000-01-01"));
        assert_eq!(value_to_text(&Value::Date(2_932_897)).as_deref(), Some("+10000-01-01"));
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_six_fraction_digits() {
        let t = "2024-05-01T12:00:00.000001Z";
        assert_eq!(both(Value::Timestamp(1_714_564_800_000_001)), (json!(t), Some(t.into())));
        assert_eq!(value_to_text(&Value::Timestamp(0)).as_deref(), Some("1970-01-01T00:00:00.000000Z"));
        assert_eq!(value_to_text(&Value::Timestamp(-1)).as_deref(), Some("1969-12-31T23:59:59.999999Z"));
    }

    #[test]
    fn json_is_the_document_and_its_compact_text() {
        let doc = json!({"b": [1, 2.5], "a": null});
        assert_eq!(both(Value::Json(doc.clone())), (doc, Some(r#"{"a":null,"b":[1,2.5]}"#.into())));
        assert_eq!(both(Value::Json(json!("s"))), (json!("s"), Some(r#""s""#.into())));
    }

    #[test]
    fn lists_are_arrays_of_their_items() {
        let list = Value::List(vec![
            Value::Int(1),
            Value::Null,
            Value::Float(f64::NAN),
            Value::Bytes(vec![1].into()),
            Value::List(vec![Value::Date(0)]),
        ]);
        let expected = json!([1, null, "NaN", "AQ==", ["1970-01-01"]]);
        assert_eq!(both(list), (expected.clone(), Some(expected.to_string())));
        assert_eq!(both(Value::List(Vec::new())), (json!([]), Some("[]".into())));
    }

    #[test]
    fn records_and_keys_are_objects_by_field_name() {
        let schema =
            Schema::new(vec![Field::required("id", DataType::Int), Field::new("seen", DataType::Timestamp)], &["id"])
                .unwrap();
        let record = Record::new(vec![Value::Int(1), Value::Null]);
        assert_eq!(Json::Object(record_to_json(&schema, &record)), json!({"id": 1, "seen": null}));
        assert_eq!(Json::Object(key_to_json(&schema, &[Value::Int(1)])), json!({"id": 1}));
    }
}
