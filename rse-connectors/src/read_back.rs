//! Values read back from the text and JSON forms the destinations write, for reconciliation
//! ([`rse_core::ReadBack`]): each the exact inverse of its writer, so that a value written
//! and read back fingerprints as it did when it was sent.
//!
//! One reader for the three destinations' list styles, told apart by the JSON kind of each
//! element: a float is a number or the text of NaN and ±infinity (`"NaN"`, `"inf"`,
//! `"Infinity"`, …); bytes are `"\\x"` and hex (PostgreSQL, SQLite) or base64 (Redis); a
//! date or a timestamp is a number of days or microseconds (PostgreSQL) or its text (SQLite,
//! Redis). A JSON `null` in a list reads as a null element (the writers write a null element
//! and a JSON document `null` alike).

use rse_core::time::{parse_date, parse_timestamp};
use rse_core::{DataType, Decimal, Value};
use serde_json::Value as Json;

/// Days in 400 Gregorian years: dates repeat their weekday and leap pattern with this period.
const DAYS_PER_400_YEARS: i64 = 146_097;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The value of a field of type `t` from its text form (a Redis hash field, a SQLite text
/// column: [`value_to_text`](crate::encode)'s forms and the SQLite destination's), or
/// `None` when the text is not a value of that type.
#[cfg(any(feature = "sqlite", feature = "redis"))]
pub(crate) fn from_text(text: &str, t: &DataType) -> Option<Value> {
    Some(match t {
        DataType::Bool => match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return None,
        },
        DataType::Int => Value::Int(text.parse().ok()?),
        DataType::Float => Value::Float(float_from_text(text)?),
        DataType::Decimal => Value::Decimal(Decimal::parse(text).ok()?),
        DataType::String => Value::String(text.to_owned()),
        DataType::Bytes => Value::Bytes(bytes_from_text(text)?.into()),
        DataType::Date => Value::Date(date_from_text(text)?),
        DataType::Timestamp => Value::Timestamp(timestamp_from_text(text)?),
        DataType::Json => Value::Json(serde_json::from_str(text).ok()?),
        DataType::List(inner) => list_from_json(&serde_json::from_str(text).ok()?, inner)?,
        // A type added to rse later: not read until this reader knows it.
        _ => return None,
    })
}

/// A list of `inner` elements from its JSON array, in any of the destinations' styles.
pub(crate) fn list_from_json(json: &Json, inner: &DataType) -> Option<Value> {
    let Json::Array(items) = json else { return None };
    items.iter().map(|item| item_from_json(item, inner)).collect::<Option<Vec<_>>>().map(Value::List)
}

/// One list element of type `t`.
fn item_from_json(json: &Json, t: &DataType) -> Option<Value> {
    if json.is_null() {
        return Some(Value::Null);
    }
    Some(match (t, json) {
        (DataType::Bool, Json::Bool(b)) => Value::Bool(*b),
        (DataType::Int, Json::Number(n)) => Value::Int(n.as_i64()?),
        (DataType::Float, Json::Number(n)) => Value::Float(n.as_f64()?),
        (DataType::Float, Json::String(s)) => Value::Float(float_from_text(s).filter(|f| !f.is_finite())?),
        (DataType::Decimal, Json::String(s)) => Value::Decimal(Decimal::parse(s).ok()?),
        (DataType::Decimal, Json::Number(n)) => Value::Decimal(Decimal::parse(&n.to_string()).ok()?),
        (DataType::String, Json::String(s)) => Value::String(s.clone()),
        (DataType::Bytes, Json::String(s)) => Value::Bytes(bytes_from_text(s)?.into()),
        (DataType::Date, Json::Number(n)) => Value::Date(i32::try_from(n.as_i64()?).ok()?),
        (DataType::Date, Json::String(s)) => Value::Date(date_from_text(s)?),
        (DataType::Timestamp, Json::Number(n)) => Value::Timestamp(n.as_i64()?),
        (DataType::Timestamp, Json::String(s)) => Value::Timestamp(timestamp_from_text(s)?),
        (DataType::Json, json) => Value::Json(json.clone()),
        (DataType::List(inner), json) => list_from_json(json, inner)?,
        _ => return None,
    })
}

/// A float's text: digits, or NaN and ±infinity as any writer spells them.
pub(crate) fn float_from_text(text: &str) -> Option<f64> {
    // Rust reads `NaN`, `inf`, `-inf` and `Infinity` (any case) besides digits.
    text.parse().ok()
}

/// Bytes from `\x` and hex (PostgreSQL's `bytea` text, in lists) or from padded base64 (the
/// text form the Redis destination writes).
pub(crate) fn bytes_from_text(text: &str) -> Option<Vec<u8>> {
    if let Some(hex) = text.strip_prefix("\\x") {
        if hex.len() % 2 != 0 {
            return None;
        }
        return (0..hex.len())
            .step_by(2)
            .map(|i| hex.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect();
    }
    base64_decode(text)
}

#[cfg(feature = "encode")]
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

#[cfg(not(feature = "encode"))]
fn base64_decode(_text: &str) -> Option<Vec<u8>> {
    None
}

/// A date's text, `YYYY-MM-DD`, or with a signed year of any length as
/// [`format_date`](rse_core::time::format_date) writes years outside 0–9999
/// (`+10000-01-01`).
pub(crate) fn date_from_text(text: &str) -> Option<i32> {
    let (shift, text) = four_digit_year(text)?;
    let days = i64::from(parse_date(&text)?) + shift;
    i32::try_from(days).ok()
}

/// A timestamp's text (RFC 3339, as the destinations write it), with a signed year of any
/// length too.
pub(crate) fn timestamp_from_text(text: &str) -> Option<i64> {
    let (shift, text) = four_digit_year(text)?;
    parse_timestamp(&text)?.checked_add(shift.checked_mul(MICROS_PER_DAY)?)
}

/// `text` with its year moved into 2000–2399 by whole 400-year periods, and the days those
/// periods hold (to add back); a plain four-digit year is left as it is.
fn four_digit_year(text: &str) -> Option<(i64, std::borrow::Cow<'_, str>)> {
    let text = text.trim();
    let (sign, digits) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return Some((0, text.into())),
    };
    let end = digits.find(|c: char| !c.is_ascii_digit())?;
    let year = sign * digits[..end].parse::<i64>().ok()?;
    let periods = (year - 2000).div_euclid(400);
    let shifted = year - 400 * periods;
    Some((periods.checked_mul(DAYS_PER_400_YEARS)?, format!("{shifted:04}{}", &digits[end..]).into()))
}

#[cfg(test)]
mod tests {
    use rse_core::time::{format_date, format_timestamp_micros};

    use super::*;

    #[test]
    fn dates_and_timestamps_read_back_in_any_year() {
        for days in [i32::MIN, -719_529, -719_528, -1, 0, 19_783, 2_932_896, 2_932_897, i32::MAX] {
            assert_eq!(date_from_text(&format_date(days)), Some(days), "{}", format_date(days));
        }
        for micros in [i64::MIN / 2, -62_167_219_200_000_001, -1, 0, 1_714_564_800_000_001, 253_402_300_800_000_000] {
            let text = format_timestamp_micros(micros);
            assert_eq!(timestamp_from_text(&text), Some(micros), "{text}");
        }
    }

    #[test]
    fn bytes_read_from_hex_and_base64() {
        assert_eq!(bytes_from_text("\\x00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(bytes_from_text("\\x0"), None);
        #[cfg(feature = "encode")]
        assert_eq!(bytes_from_text("+/8="), Some(vec![0xfb, 0xff]));
    }

    #[test]
    fn list_elements_read_in_every_style() {
        let floats = serde_json::json!([1.5, "NaN", "Infinity", "-inf", null]);
        let Some(Value::List(items)) = list_from_json(&floats, &DataType::Float) else { panic!() };
        assert_eq!(items[0], Value::Float(1.5));
        assert!(matches!(items[1], Value::Float(f) if f.is_nan()));
        assert_eq!(items[2], Value::Float(f64::INFINITY));
        assert_eq!(items[3], Value::Float(f64::NEG_INFINITY));
        assert_eq!(items[4], Value::Null);
        assert_eq!(
            list_from_json(&serde_json::json!([0, "1970-01-02"]), &DataType::Date),
            Some(Value::List(vec![Value::Date(0), Value::Date(1)]))
        );
        assert_eq!(list_from_json(&serde_json::json!(["x"]), &DataType::Int), None);
    }
}
