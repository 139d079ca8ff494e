//! Values and data types: what every source maps its native types onto.

use std::cmp::Ordering;
use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::ValueError;

/// The logical type of a [`Field`](crate::Field).
///
/// Every source maps its native column types onto one of these, and names the column and
/// its native type in the error when it cannot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DataType {
    /// `true` or `false`.
    Bool,
    /// A signed 64-bit integer.
    Int,
    /// A 64-bit IEEE float.
    Float,
    /// An exact decimal number of any precision.
    Decimal,
    /// UTF-8 text.
    String,
    /// Raw bytes.
    Bytes,
    /// A calendar date, as days since 1970-01-01.
    Date,
    /// An instant, as microseconds since 1970-01-01T00:00:00Z.
    Timestamp,
    /// A JSON document.
    Json,
    /// A list whose elements all have the given type.
    List(Box<DataType>),
}

impl DataType {
    /// Whether `value` is acceptable for a field of this type (`Null` is accepted by every
    /// type; nullability is the field's concern).
    pub fn accepts(&self, value: &Value) -> bool {
        match (self, value) {
            (_, Value::Null) => true,
            (DataType::Bool, Value::Bool(_))
            | (DataType::Int, Value::Int(_))
            | (DataType::Float, Value::Float(_))
            | (DataType::Decimal, Value::Decimal(_))
            | (DataType::String, Value::String(_))
            | (DataType::Bytes, Value::Bytes(_))
            | (DataType::Date, Value::Date(_))
            | (DataType::Timestamp, Value::Timestamp(_))
            | (DataType::Json, Value::Json(_)) => true,
            (DataType::List(inner), Value::List(items)) => items.iter().all(|v| inner.accepts(v)),
            _ => false,
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataType::Bool => f.write_str("bool"),
            DataType::Int => f.write_str("int"),
            DataType::Float => f.write_str("float"),
            DataType::Decimal => f.write_str("decimal"),
            DataType::String => f.write_str("string"),
            DataType::Bytes => f.write_str("bytes"),
            DataType::Date => f.write_str("date"),
            DataType::Timestamp => f.write_str("timestamp"),
            DataType::Json => f.write_str("json"),
            DataType::List(inner) => write!(f, "list<{inner}>"),
        }
    }
}

/// One value of a record.
///
/// `Debug` prints values, so a `Value` must never be formatted into a log line or an
/// error message; rse's own logs and errors name fields and (hashed) keys only.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Value {
    /// SQL `NULL`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer.
    Int(i64),
    /// A 64-bit float. `-0.0` equals `0.0` and every NaN equals every other NaN.
    Float(f64),
    /// An exact decimal.
    Decimal(Decimal),
    /// UTF-8 text.
    String(String),
    /// Raw bytes.
    Bytes(Bytes),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since 1970-01-01T00:00:00Z.
    Timestamp(i64),
    /// A JSON document.
    Json(serde_json::Value),
    /// A list of values.
    List(Vec<Value>),
}

impl Value {
    /// Whether this is [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The text if this is a [`Value::String`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The integer if this is a [`Value::Int`].
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The name of this value's type, for error messages that must not show the value.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Decimal(_) => "decimal",
            Value::String(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::Date(_) => "date",
            Value::Timestamp(_) => "timestamp",
            Value::Json(_) => "json",
            Value::List(_) => "list",
        }
    }

    /// A rough size in bytes of this value once serialised, used for batching by bytes.
    pub fn estimated_size(&self) -> usize {
        match self {
            Value::Null | Value::Bool(_) => 4,
            Value::Int(_) | Value::Float(_) | Value::Date(_) | Value::Timestamp(_) => 8,
            Value::Decimal(d) => d.as_str().len(),
            Value::String(s) => s.len() + 2,
            Value::Bytes(b) => b.len() * 4 / 3 + 2,
            Value::Json(j) => json_size(j),
            Value::List(items) => 2 + items.iter().map(|v| v.estimated_size() + 1).sum::<usize>(),
        }
    }

    /// The rank of this value's type in rse's total order (and the tag byte of its key
    /// encoding): values of different types order by this rank.
    pub(crate) fn rank(&self) -> u8 {
        match self {
            Value::Null => 0x01,
            Value::Bool(_) => 0x02,
            Value::Int(_) => 0x03,
            Value::Float(_) => 0x04,
            Value::Decimal(d) => match d.sign() {
                Ordering::Less => 0x05,
                Ordering::Equal => 0x06,
                Ordering::Greater => 0x07,
            },
            Value::String(_) => 0x08,
            Value::Bytes(_) => 0x09,
            Value::Date(_) => 0x0A,
            Value::Timestamp(_) => 0x0B,
            Value::Json(_) => 0x0C,
            Value::List(_) => 0x0D,
        }
    }

    /// rse's total order over values: the order of their key encoding.
    ///
    /// Values of one type order naturally (strings by UTF-8 bytes, as `COLLATE "C"` does;
    /// floats with `-0.0 == 0.0` and NaN above everything; decimals numerically; JSON by
    /// its canonical text; lists lexicographically); values of different types order by
    /// type, `Null` first.
    pub fn total_cmp(&self, other: &Value) -> Ordering {
        match (self, other) {
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::Int(a), Value::Int(b)) => a.cmp(b),
            (Value::Float(a), Value::Float(b)) => canonical_f64_bits_ordered(*a).cmp(&canonical_f64_bits_ordered(*b)),
            (Value::Decimal(a), Value::Decimal(b)) => a.cmp(b),
            (Value::String(a), Value::String(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Value::Bytes(a), Value::Bytes(b)) => a.cmp(b),
            (Value::Date(a), Value::Date(b)) => a.cmp(b),
            (Value::Timestamp(a), Value::Timestamp(b)) => a.cmp(b),
            (Value::Json(a), Value::Json(b)) => canonical_json(a).cmp(&canonical_json(b)),
            (Value::List(a), Value::List(b)) => {
                for (x, y) in a.iter().zip(b) {
                    match x.total_cmp(y) {
                        Ordering::Equal => {}
                        other => return other,
                    }
                }
                a.len().cmp(&b.len())
            }
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialEq for Value {
    /// Equality under rse's canonical form: the same as `total_cmp(..) == Equal`.
    fn eq(&self, other: &Value) -> bool {
        self.total_cmp(other) == Ordering::Equal
    }
}

impl Eq for Value {}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int(v.into())
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::String(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::String(v)
    }
}
impl From<Decimal> for Value {
    fn from(v: Decimal) -> Self {
        Value::Decimal(v)
    }
}
impl From<serde_json::Value> for Value {
    fn from(v: serde_json::Value) -> Self {
        Value::Json(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// The bits of `f` after canonicalisation (`-0.0` → `0.0`, every NaN → one quiet NaN),
/// transformed so that unsigned comparison of the result orders the floats numerically.
pub(crate) fn canonical_f64_bits_ordered(f: f64) -> u64 {
    let bits = canonical_f64(f).to_bits();
    if bits & (1 << 63) != 0 { !bits } else { bits | (1 << 63) }
}

/// `f` with `-0.0` replaced by `0.0` and every NaN by the one canonical quiet NaN.
pub(crate) fn canonical_f64(f: f64) -> f64 {
    if f.is_nan() {
        f64::NAN
    } else if f == 0.0 {
        0.0
    } else {
        f
    }
}

/// Canonical JSON text: object keys sorted, numbers normalised (`-0.0` → `0`, integral
/// floats written as integers), no whitespace. Used for ordering, fingerprints and keys.
pub fn canonical_json(value: &serde_json::Value) -> String {
    let mut out = String::new();
    write_canonical_json(value, &mut out);
    out
}

pub(crate) fn write_canonical_json(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value as J;
    match value {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else if let Some(u) = n.as_u64() {
                out.push_str(&u.to_string());
            } else if let Some(f) = n.as_f64() {
                let f = canonical_f64(f);
                // JSON numbers carry no int/float distinction: 1.0 and 1 are the same number.
                if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 {
                    #[allow(clippy::cast_possible_truncation)]
                    out.push_str(&(f as i64).to_string());
                } else {
                    out.push_str(&format!("{f:?}"));
                }
            } else {
                out.push_str(&n.to_string());
            }
        }
        J::String(s) => out.push_str(&serde_json::Value::String(s.clone()).to_string()),
        J::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical_json(item, out);
            }
            out.push(']');
        }
        J::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical_json(v, out);
            }
            out.push('}');
        }
    }
}

fn json_size(value: &serde_json::Value) -> usize {
    use serde_json::Value as J;
    match value {
        J::Null | J::Bool(_) => 5,
        J::Number(_) => 12,
        J::String(s) => s.len() + 2,
        J::Array(items) => 2 + items.iter().map(|v| json_size(v) + 1).sum::<usize>(),
        J::Object(map) => 2 + map.iter().map(|(k, v)| k.len() + 4 + json_size(v)).sum::<usize>(),
    }
}

/// An exact decimal number of any precision, kept in a normalised text form.
///
/// Normalised means: no leading zeros in the integer part, no trailing zeros in the
/// fraction, no exponent, and zero is `0` (never `-0`). So `1.50` and `1.5` are the same
/// decimal, as they are the same number.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Decimal(Box<str>);

impl Decimal {
    /// Parses a decimal from text such as `-12.340`, `+7`, `.5` or `1.2e-3`.
    ///
    /// # Errors
    /// [`ValueError::InvalidDecimal`] when the text is not a finite decimal number (`NaN`
    /// and infinities are not decimals). The error does not repeat the text.
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        let invalid = || ValueError::InvalidDecimal { len: text.len() };
        let s = text.trim();
        let (negative, s) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let (mantissa, exponent) = match s.find(['e', 'E']) {
            Some(at) => {
                let exp: i64 = s[at + 1..].parse().map_err(|_| invalid())?;
                (&s[..at], exp)
            }
            None => (s, 0),
        };
        let (int_part, frac_part) = match mantissa.find('.') {
            Some(at) => (&mantissa[..at], &mantissa[at + 1..]),
            None => (mantissa, ""),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        if !int_part.bytes().chain(frac_part.bytes()).all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        if exponent.unsigned_abs() > 1_000_000 {
            return Err(invalid());
        }
        // digits d1..dn with the decimal point after `point` digits.
        let digits: Vec<u8> = int_part.bytes().chain(frac_part.bytes()).collect();
        let point = int_part.len() as i64 + exponent;
        Ok(Self::from_digits(negative, &digits, point))
    }

    /// Builds the normalised form from ASCII digits with the decimal point placed after
    /// `point` of them (`point` may be negative or beyond the digits).
    fn from_digits(negative: bool, digits: &[u8], point: i64) -> Self {
        let first = digits.iter().position(|&d| d != b'0');
        let Some(first) = first else {
            return Decimal("0".into());
        };
        let last = digits.iter().rposition(|&d| d != b'0').unwrap_or(first);
        let sig = &digits[first..=last];
        // value = 0.sig × 10^(point - first)
        let exp = point - first as i64;
        let mut out = String::with_capacity(sig.len() + 4);
        if negative {
            out.push('-');
        }
        let sig_str = std::str::from_utf8(sig).unwrap_or("0");
        if exp <= 0 {
            out.push_str("0.");
            for _ in 0..(-exp) {
                out.push('0');
            }
            out.push_str(sig_str);
        } else if exp as usize >= sig.len() {
            out.push_str(sig_str);
            for _ in 0..(exp as usize - sig.len()) {
                out.push('0');
            }
        } else {
            out.push_str(&sig_str[..exp as usize]);
            out.push('.');
            out.push_str(&sig_str[exp as usize..]);
        }
        Decimal(out.into())
    }

    /// The decimal `unscaled × 10^-scale`, e.g. `(12345, 2)` is `123.45`.
    pub fn from_scaled(unscaled: i128, scale: u32) -> Self {
        let digits = unscaled.unsigned_abs().to_string();
        let point = digits.len() as i64 - i64::from(scale);
        Self::from_digits(unscaled < 0, digits.as_bytes(), point)
    }

    /// The normalised text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The sign: `Less` for negative, `Equal` for zero, `Greater` for positive.
    pub fn sign(&self) -> Ordering {
        if &*self.0 == "0" {
            Ordering::Equal
        } else if self.0.starts_with('-') {
            Ordering::Less
        } else {
            Ordering::Greater
        }
    }

    /// The decimal as `(negative, significant digits, exponent)` such that the value is
    /// `±0.d1d2… × 10^exponent`. Zero has no digits.
    pub(crate) fn parts(&self) -> (bool, Vec<u8>, i64) {
        let s = &*self.0;
        let (negative, s) = s.strip_prefix('-').map_or((false, s), |rest| (true, rest));
        let (int_part, frac_part) = s.split_once('.').unwrap_or((s, ""));
        let digits: Vec<u8> = int_part.bytes().chain(frac_part.bytes()).collect();
        let Some(first) = digits.iter().position(|&d| d != b'0') else {
            return (false, Vec::new(), 0);
        };
        let last = digits.iter().rposition(|&d| d != b'0').unwrap_or(first);
        let exp = int_part.len() as i64 - first as i64;
        (negative, digits[first..=last].to_vec(), exp)
    }

    /// Rebuilds a decimal from [`parts`](Self::parts).
    pub(crate) fn from_parts(negative: bool, digits: &[u8], exp: i64) -> Self {
        Self::from_digits(negative, digits, exp)
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        let (an, ad, ae) = self.parts();
        let (bn, bd, be) = other.parts();
        match self.sign().cmp(&other.sign()) {
            Ordering::Equal => {}
            other => return other,
        }
        let magnitude = if ad.is_empty() { Ordering::Equal } else { ae.cmp(&be).then_with(|| ad.cmp(&bd)) };
        debug_assert_eq!(an, bn);
        if an { magnitude.reverse() } else { magnitude }
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Decimal({})", self.0)
    }
}

impl std::str::FromStr for Decimal {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Decimal::parse(s)
    }
}

impl TryFrom<String> for Decimal {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Decimal::parse(&s)
    }
}

impl From<Decimal> for String {
    fn from(d: Decimal) -> String {
        d.0.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_normalise_to_one_form() {
        for (input, want) in [
            ("1.50", "1.5"),
            ("-0.000", "0"),
            ("+007", "7"),
            (".5", "0.5"),
            ("1.2e-3", "0.0012"),
            ("12e2", "1200"),
            ("-123.4500", "-123.45"),
            ("0.0001000", "0.0001"),
        ] {
            assert_eq!(Decimal::parse(input).map(|d| d.to_string()).ok().as_deref(), Some(want), "{input}");
        }
        for bad in ["", "-", "1.2.3", "abc", "NaN", "1e", "--1", "1e99999999"] {
            assert!(Decimal::parse(bad).is_err(), "{bad} should not parse");
        }
        assert_eq!(Decimal::from_scaled(-12345, 2).as_str(), "-123.45");
        assert_eq!(Decimal::from_scaled(5, 0).as_str(), "5");
        assert_eq!(Decimal::from_scaled(0, 3).as_str(), "0");
    }

    #[test]
    fn decimals_order_numerically() {
        let sorted = ["-100", "-99.9", "-1", "-0.5", "0", "0.001", "0.01", "1", "1.5", "10", "99"];
        for w in sorted.windows(2) {
            let (a, b) = (Decimal::parse(w[0]), Decimal::parse(w[1]));
            assert_eq!(a.ok().cmp(&b.ok()), Ordering::Less, "{} < {}", w[0], w[1]);
        }
    }
}
