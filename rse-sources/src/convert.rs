//! Text, date and time conversions shared by the sources that read untyped or loosely typed data.
#![cfg_attr(
    not(all(feature = "files", feature = "parquet", feature = "sqlite", feature = "postgres")),
    allow(dead_code)
)]

use rse_core::{DataType, Decimal, Value};

/// Microseconds in a day.
pub(crate) const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Days since 1970-01-01 of the proleptic Gregorian date `y-m-d` (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The number written by ASCII digits `b`, or `None` when one is not a digit.
fn ascii_number(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |n, &d| d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0')))
}

/// Parses `YYYY-MM-DD` into days since 1970-01-01.
pub(crate) fn parse_date(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (i64::from(ascii_number(&b[..4])?), ascii_number(&b[5..7])?, ascii_number(&b[8..])?);
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    i32::try_from(days_from_civil(y, m, d)).ok()
}

/// Parses an ISO 8601 / SQL timestamp — `YYYY-MM-DD[(T| )HH:MM[:SS[.ffffff]]][Z|±HH[:MM]]` —
/// into microseconds since the epoch. Without an offset the time is taken as UTC.
/// Digits past microseconds are truncated.
pub(crate) fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.len() < 10 || !s.is_char_boundary(10) {
        return None;
    }
    let days = i64::from(parse_date(&s[..10])?);
    let rest = &s[10..];
    if rest.is_empty() {
        return days.checked_mul(MICROS_PER_DAY);
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    // Split off the zone: `Z`, or the last `+`/`-` (the date's dashes are already gone).
    let (time, offset_secs) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, 0i64)
    } else if let Some(at) = rest.rfind(['+', '-']) {
        let (t, zone) = rest.split_at(at);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let zone = &zone[1..];
        let (h, m) = match zone.split_once(':') {
            Some((h, m)) => (h, m),
            None if zone.len() == 4 => zone.split_at(2),
            None => (zone, "00"),
        };
        let (h, m) = (digits(h)?, digits(m)?);
        if h > 23 || m > 59 {
            return None;
        }
        (t, sign * i64::from(h * 3600 + m * 60))
    } else {
        (rest, 0)
    };
    // Fast path for the common `HH:MM:SS[.f…]` layout.
    let tb = time.as_bytes();
    if tb.len() >= 8 && tb[2] == b':' && tb[5] == b':' && (tb.len() == 8 || tb[8] == b'.') {
        let (h, m, sec) = (ascii_number(&tb[..2])?, ascii_number(&tb[3..5])?, ascii_number(&tb[6..8])?);
        let frac = tb.get(9..).unwrap_or_default();
        if h > 23 || m > 59 || sec > 60 || (tb.len() > 8 && frac.is_empty()) {
            return None;
        }
        let mut micros = 0u32;
        for i in 0..6 {
            micros = micros * 10 + frac.get(i).map_or(Some(0), |&d| d.is_ascii_digit().then(|| u32::from(d - b'0')))?;
        }
        if !frac.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let secs = days.checked_mul(86_400)? + i64::from(h * 3600 + m * 60 + sec) - offset_secs;
        return secs.checked_mul(1_000_000)?.checked_add(i64::from(micros));
    }
    let mut parts = time.splitn(3, ':');
    let h = digits(parts.next()?)?;
    let m = digits(parts.next()?)?;
    let (sec, micros) = match parts.next() {
        None => (0, 0),
        Some(sec) => {
            let (whole, frac) = sec.split_once(['.', ',']).unwrap_or((sec, ""));
            if !frac.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let mut micros = 0u32;
            for i in 0..6 {
                micros = micros * 10 + frac.as_bytes().get(i).map_or(0, |b| u32::from(b - b'0'));
            }
            (digits(whole)?, micros)
        }
    };
    if h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let secs = days.checked_mul(86_400)? + i64::from(h * 3600 + m * 60 + sec) - offset_secs;
    secs.checked_mul(1_000_000)?.checked_add(i64::from(micros))
}

/// Parses a boolean written as `true`/`false`, `t`/`f`, `yes`/`no` or `1`/`0` (any case).
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    let s = s.trim();
    let is = |words: &[&str]| words.iter().any(|w| w.eq_ignore_ascii_case(s));
    if is(&["true", "t", "yes", "y", "1"]) {
        Some(true)
    } else if is(&["false", "f", "no", "n", "0"]) {
        Some(false)
    } else {
        None
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
    let expected = |what: &str| format!("expected {what} ({} characters found)", text.len());
    match data_type {
        DataType::String => Ok(Value::String(text.to_owned())),
        DataType::Int => text.trim().parse::<i64>().map(Value::Int).map_err(|_| expected("a 64-bit integer")),
        DataType::Float => text.trim().parse::<f64>().map(Value::Float).map_err(|_| expected("a number")),
        DataType::Decimal => Decimal::parse(text.trim()).map(Value::Decimal).map_err(|_| expected("a decimal number")),
        DataType::Bool => parse_bool(text).map(Value::Bool).ok_or_else(|| expected("true or false")),
        DataType::Bytes => Ok(Value::Bytes(text.as_bytes().to_vec().into())),
        DataType::Date => parse_date(text.trim()).map(Value::Date).ok_or_else(|| expected("a date YYYY-MM-DD")),
        DataType::Timestamp => {
            parse_timestamp(text).map(Value::Timestamp).ok_or_else(|| expected("an ISO 8601 timestamp"))
        }
        DataType::Json => {
            serde_json::from_str(text).map(Value::Json).map_err(|e| format!("invalid JSON: {}", json_error(&e)))
        }
        other => Err(format!("type {other} cannot be read from text")),
    }
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

/// The narrowest type that every non-empty sample fits: int, float, bool, date, timestamp,
/// else string. `None` when every sample was empty.
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
                    DataType::Int => s.trim().parse::<i64>().is_ok(),
                    DataType::Float => s.trim().parse::<f64>().is_ok(),
                    // Only words count as booleans here: `0`/`1` columns are numbers.
                    DataType::Bool => ["true", "false"].iter().any(|w| w.eq_ignore_ascii_case(s.trim())),
                    DataType::Date => parse_date(s.trim()).is_some(),
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
    fn dates_and_timestamps_parse_to_epoch_offsets() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2000-03-01"), Some(11_017));
        assert_eq!(parse_date("1969-12-31"), Some(-1));
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(parse_date("2024-02-29"), Some(19_782));
        assert_eq!(parse_timestamp("1970-01-01T00:00:01Z"), Some(1_000_000));
        assert_eq!(parse_timestamp("1970-01-01 01:00:00+01:00"), Some(0));
        assert_eq!(parse_timestamp("1970-01-01T00:00:00.5"), Some(500_000));
        assert_eq!(parse_timestamp("1969-12-31T23:59:59.999999-00:00"), Some(-1));
        assert_eq!(parse_timestamp("2024-06-01T12:30:00.123456789+0530"), Some(1_717_225_200_123_456));
        assert_eq!(parse_timestamp("2024-06-01T25:00:00"), None);
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
    }
}
