//! Text, date and time conversions shared by the sources that read untyped or loosely typed data.
#![cfg_attr(
    not(all(feature = "files", feature = "parquet", feature = "sqlite", feature = "postgres")),
    allow(dead_code)
)]

use rse_core::time::{parse_date, parse_timestamp};
use rse_core::{DataType, Decimal, Value};

/// `text` without surrounding whitespace, as [`str::trim`] gives it; text that starts and
/// ends with a printable ASCII character (the common case) is returned as it is, unscanned.
pub(crate) fn trimmed(text: &str) -> &str {
    match (text.as_bytes().first(), text.as_bytes().last()) {
        (Some(first), Some(last)) if first.is_ascii_graphic() && last.is_ascii_graphic() => text,
        _ => text.trim(),
    }
}

/// Parses a 64-bit integer as `str::parse::<i64>` does after trimming: an optional sign,
/// then decimal digits.
pub(crate) fn parse_int(text: &str) -> Option<i64> {
    let text = trimmed(text);
    let (negative, digits) = match text.as_bytes() {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        digits => (false, digits),
    };
    // Up to 18 digits cannot overflow; longer numbers take the standard path.
    if digits.is_empty() || digits.len() > 18 {
        return text.parse().ok();
    }
    let mut n = 0i64;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + i64::from(d - b'0');
    }
    Some(if negative { -n } else { n })
}

/// Parses a boolean written as `true`/`false`, `t`/`f`, `yes`/`no`, `y`/`n` or `1`/`0`
/// (any case, surrounding whitespace allowed).
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    let s = trimmed(s);
    let is = |word: &str| s.eq_ignore_ascii_case(word);
    match s.len() {
        1 if is("t") || is("y") || s == "1" => Some(true),
        1 if is("f") || is("n") || s == "0" => Some(false),
        2 if is("no") => Some(false),
        3 if is("yes") => Some(true),
        4 if is("true") => Some(true),
        5 if is("false") => Some(false),
        _ => None,
    }
}

/// A short description of a JSON parse error that does not quote the input.
pub(crate) fn json_error(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Eof => "unexpected end",
    }
}

/// Converts text to a value of `data_type`, or says why it does not fit (without the text).
pub(crate) fn value_from_text(text: &str, data_type: &DataType) -> Result<Value, String> {
    let mut value = Vec::with_capacity(1);
    push_value_from_text(&mut value, text, data_type)?;
    value.pop().ok_or_else(|| misfit(text, data_type))
}

/// Converts text to a value of `data_type` at the end of `values`, or says why it does not
/// fit (without the text).
#[inline(always)]
pub(crate) fn push_value_from_text(values: &mut Vec<Value>, text: &str, data_type: &DataType) -> Result<(), String> {
    let fits = match data_type {
        DataType::String => {
            push::string(values, text);
            true
        }
        DataType::Int => parse_int(text).map(|v| push::int(values, v)).is_some(),
        DataType::Float => trimmed(text).parse::<f64>().map(|v| push::float(values, v)).is_ok(),
        // `Decimal::parse` trims.
        DataType::Decimal => Decimal::parse(text).map(|v| push::decimal(values, v)).is_ok(),
        DataType::Bool => parse_bool(text).map(|v| push::bool(values, v)).is_some(),
        DataType::Date => parse_date(text).map(|v| push::date(values, v)).is_some(),
        DataType::Timestamp => parse_timestamp(text).map(|v| push::timestamp(values, v)).is_some(),
        _ => {
            values.push(other_from_text(text, data_type)?);
            true
        }
    };
    if fits { Ok(()) } else { Err(misfit(text, data_type)) }
}

/// One function per variant that pushes it, each built where it is written: pushes that
/// share one call site make the compiler build every variant in one stack slot and copy it
/// over, and copying a value just written in pieces stalls the processor on every field.
mod push {
    use rse_core::{Decimal, Value};

    #[inline(never)]
    pub(super) fn string(values: &mut Vec<Value>, text: &str) {
        values.push(Value::String(text.to_owned()));
    }

    #[inline(never)]
    pub(super) fn int(values: &mut Vec<Value>, v: i64) {
        values.push(Value::Int(v));
    }

    #[inline(never)]
    pub(super) fn float(values: &mut Vec<Value>, v: f64) {
        values.push(Value::Float(v));
    }

    #[inline(never)]
    pub(super) fn decimal(values: &mut Vec<Value>, v: Decimal) {
        values.push(Value::Decimal(v));
    }

    #[inline(never)]
    pub(super) fn bool(values: &mut Vec<Value>, v: bool) {
        values.push(Value::Bool(v));
    }

    #[inline(never)]
    pub(super) fn date(values: &mut Vec<Value>, v: i32) {
        values.push(Value::Date(v));
    }

    #[inline(never)]
    pub(super) fn timestamp(values: &mut Vec<Value>, v: i64) {
        values.push(Value::Timestamp(v));
    }
}

/// [`value_from_text`] for the types rarely read from text: bytes, JSON, and those that
/// cannot be.
#[inline(never)]
fn other_from_text(text: &str, data_type: &DataType) -> Result<Value, String> {
    match data_type {
        DataType::Bytes => Ok(Value::Bytes(text.as_bytes().to_vec().into())),
        DataType::Json => {
            serde_json::from_str(text).map(Value::Json).map_err(|e| format!("invalid JSON: {}", json_error(&e)))
        }
        other => Err(format!("type {other} cannot be read from text")),
    }
}

/// Why `text` is not a value of `data_type`: what was expected and the text's length.
#[cold]
fn misfit(text: &str, data_type: &DataType) -> String {
    let expected = match data_type {
        DataType::Int => "a 64-bit integer",
        DataType::Float => "a number",
        DataType::Decimal => "a decimal number",
        DataType::Bool => "true or false",
        DataType::Date => "a date YYYY-MM-DD",
        _ => "an ISO 8601 timestamp",
    };
    format!("expected {expected} ({} characters found)", text.len())
}

/// Converts a JSON value to a value of `data_type`, or says why it does not fit.
pub(crate) fn value_from_json(json: serde_json::Value, data_type: &DataType) -> Result<Value, String> {
    use serde_json::Value as J;
    let found = |j: &J| {
        match j {
            J::Null => "null",
            J::Bool(_) => "a boolean",
            J::Number(_) => "a number",
            J::String(_) => "a string",
            J::Array(_) => "an array",
            J::Object(_) => "an object",
        }
        .to_owned()
    };
    match (data_type, json) {
        (_, J::Null) => Ok(Value::Null),
        (DataType::Json, j) => Ok(Value::Json(j)),
        (DataType::Bool, J::Bool(b)) => Ok(Value::Bool(b)),
        (DataType::Int, J::Number(n)) => {
            n.as_i64().map(Value::Int).ok_or_else(|| "expected a 64-bit integer".to_owned())
        }
        (DataType::Float, J::Number(n)) => n.as_f64().map(Value::Float).ok_or_else(|| "expected a number".to_owned()),
        (DataType::Decimal, J::Number(n)) => {
            Decimal::parse(&n.to_string()).map(Value::Decimal).map_err(|_| "expected a finite number".to_owned())
        }
        (DataType::List(inner), J::Array(items)) => {
            items.into_iter().map(|item| value_from_json(item, inner)).collect::<Result<Vec<_>, _>>().map(Value::List)
        }
        (DataType::List(_), j) => Err(format!("expected an array, found {}", found(&j))),
        (DataType::String, J::String(s)) => Ok(Value::String(s)),
        (
            DataType::Bytes
            | DataType::Date
            | DataType::Timestamp
            | DataType::Decimal
            | DataType::Int
            | DataType::Float
            | DataType::Bool,
            J::String(s),
        ) => value_from_text(&s, data_type),
        (other, j) => Err(format!("expected {other}, found {}", found(&j))),
    }
}

/// Whether `text` is a number written with a leading zero (`007`, `-007`, `00`, `00.5`),
/// which is a code rather than a number: read as one, `007` and `7` would become the same
/// value. `0`, `-0`, `0.5` and `0e3` have no leading zero.
fn has_leading_zero(text: &str) -> bool {
    let digits = trimmed(text).trim_start_matches(['-', '+']).as_bytes();
    matches!(digits, [b'0', next, ..] if next.is_ascii_digit())
}

/// The narrowest type that every non-empty sample fits: int, float, bool, date, timestamp,
/// else string. A number with a leading zero (`007`) fits neither int nor float, so a
/// column of codes stays text. `None` when every sample was empty.
pub(crate) fn infer_text_type<'a>(samples: impl IntoIterator<Item = &'a str>) -> Option<DataType> {
    let candidates = [DataType::Int, DataType::Float, DataType::Bool, DataType::Date, DataType::Timestamp];
    let mut fits = [true; 5];
    let mut any = false;
    for s in samples {
        if s.is_empty() {
            continue;
        }
        any = true;
        for (fit, candidate) in fits.iter_mut().zip(&candidates) {
            if *fit {
                *fit = match candidate {
                    DataType::Int => parse_int(s).is_some() && !has_leading_zero(s),
                    DataType::Float => trimmed(s).parse::<f64>().is_ok() && !has_leading_zero(s),
                    // Only words count as booleans here: `0`/`1` columns are numbers.
                    DataType::Bool => ["true", "false"].iter().any(|w| w.eq_ignore_ascii_case(s.trim())),
                    DataType::Date => parse_date(s).is_some(),
                    _ => parse_timestamp(s).is_some(),
                };
            }
        }
    }
    if !any {
        return None;
    }
    Some(candidates.iter().zip(fits).find(|(_, fit)| *fit).map_or(DataType::String, |(c, _)| c.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_parse_as_the_standard_parser_does() {
        for text in [
            "0",
            "7",
            "-7",
            "+7",
            " 42 ",
            "\t-42\n",
            "007",
            "-0",
            "123456789012345678",
            "-123456789012345678",
            "1234567890123456789",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            "-9223372036854775809",
            "000000000000000000000000001",
            "",
            " ",
            "-",
            "+",
            "--1",
            "+-1",
            "1-",
            "1.0",
            "1e3",
            "0x10",
            "1 2",
            "١",
            "\u{a0}5\u{a0}",
        ] {
            assert_eq!(parse_int(text), text.trim().parse::<i64>().ok(), "{text:?}");
        }
    }

    #[test]
    fn trimming_matches_the_standard_trim() {
        for text in ["", "a", " a", "a ", "\u{a0}a", "a\u{3000}", "\u{1c}a", "é", " é ", "ab", "-1"] {
            assert_eq!(trimmed(text), text.trim(), "{text:?}");
        }
    }

    #[test]
    fn booleans_take_words_letters_and_digits() {
        for (text, expected) in [
            ("true", Some(true)),
            ("TRUE", Some(true)),
            (" t ", Some(true)),
            ("Yes", Some(true)),
            ("y", Some(true)),
            ("1", Some(true)),
            ("false", Some(false)),
            ("F", Some(false)),
            ("no", Some(false)),
            ("N", Some(false)),
            ("0", Some(false)),
            ("", None),
            ("2", None),
            ("ye", None),
            ("tru", None),
            ("yes!", None),
            ("falsey", None),
        ] {
            assert_eq!(parse_bool(text), expected, "{text:?}");
        }
    }

    #[test]
    fn text_converts_to_each_type_or_says_what_was_expected() {
        assert_eq!(value_from_text(" 12 ", &DataType::Int), Ok(Value::Int(12)));
        assert_eq!(value_from_text(" 2.5", &DataType::Float), Ok(Value::Float(2.5)));
        assert_eq!(value_from_text("1.50", &DataType::Decimal), Ok(Value::Decimal(Decimal::from_scaled(15, 1))));
        assert_eq!(value_from_text("2024-02-29 ", &DataType::Date), Ok(Value::Date(19_782)));
        assert_eq!(value_from_text("1970-01-01 00:00:01,5", &DataType::Timestamp), Ok(Value::Timestamp(1_500_000)));
        assert_eq!(value_from_text(" x ", &DataType::String), Ok(Value::String(" x ".to_owned())));
        assert_eq!(
            value_from_text("1.5", &DataType::Int),
            Err("expected a 64-bit integer (3 characters found)".into())
        );
        assert_eq!(value_from_text("x", &DataType::Float), Err("expected a number (1 characters found)".into()));
        assert_eq!(
            value_from_text("1,5", &DataType::Decimal),
            Err("expected a decimal number (3 characters found)".into())
        );
        assert_eq!(
            value_from_text("maybe", &DataType::Bool),
            Err("expected true or false (5 characters found)".into())
        );
        assert_eq!(
            value_from_text("2024-1-1", &DataType::Date),
            Err("expected a date YYYY-MM-DD (8 characters found)".into())
        );
        assert_eq!(
            value_from_text("yesterday", &DataType::Timestamp),
            Err("expected an ISO 8601 timestamp (9 characters found)".into())
        );
    }

    #[test]
    fn inference_picks_the_narrowest_type() {
        assert_eq!(infer_text_type(["1", "", "-3"]), Some(DataType::Int));
        assert_eq!(infer_text_type(["1", "2.5"]), Some(DataType::Float));
        assert_eq!(infer_text_type(["true", "FALSE"]), Some(DataType::Bool));
        assert_eq!(infer_text_type(["2024-01-01"]), Some(DataType::Date));
        assert_eq!(infer_text_type(["2024-01-01T10:00:00Z", "2024-01-01"]), Some(DataType::Timestamp));
        assert_eq!(infer_text_type(["x", "1"]), Some(DataType::String));
        assert_eq!(infer_text_type(["", ""]), None);
        assert_eq!(infer_text_type(["0", "-0", "+0", "0.5", "0e3"]), Some(DataType::Float));
        assert_eq!(infer_text_type(["0", "-0", "10"]), Some(DataType::Int));
        for padded in ["007", "-007", "+01", "00", " 07", "00.5", "007.5"] {
            assert_eq!(infer_text_type(["1", padded]), Some(DataType::String), "{padded}");
        }
    }
}
