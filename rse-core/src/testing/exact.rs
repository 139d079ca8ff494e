//! Bit-for-bit equality of values, for tests of anything that stores and reads them back.
//!
//! `Value`'s own `==` is rse's canonical equality (`-0.0 == 0.0`, every NaN equal), right
//! for the diff but too lenient to prove that a store kept a value exactly: these compare
//! floats by their bits, inside lists and JSON documents too.

use crate::record::Record;
use crate::value::Value;

/// Whether `a` and `b` are the same value of the same variant, floats compared by their bits
/// (so a NaN's sign and payload and the sign of zero count), recursively through lists and
/// JSON documents.
pub fn identical(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        (Value::List(x), Value::List(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| identical(x, y)),
        (Value::Json(x), Value::Json(y)) => identical_json(x, y),
        // Every other variant's `==` is exact (decimals are kept normalised).
        _ => a.type_name() == b.type_name() && a == b,
    }
}

/// Whether two records hold [`identical`] values, field by field.
pub fn identical_records(a: &Record, b: &Record) -> bool {
    a.values.len() == b.values.len() && a.values.iter().zip(&b.values).all(|(x, y)| identical(x, y))
}

/// Whether two JSON documents are the same, their floating-point numbers compared by bits and
/// integers kept apart from floats.
pub fn identical_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (a, b) {
        (J::Number(x), J::Number(y)) => match (x.as_i64(), x.as_u64(), y.as_i64(), y.as_u64()) {
            (None, None, None, None) => x.as_f64().map(f64::to_bits) == y.as_f64().map(f64::to_bits),
            _ => x.is_f64() == y.is_f64() && x == y,
        },
        (J::Array(x), J::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| identical_json(x, y)),
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|((kx, vx), (ky, vy))| kx == ky && identical_json(vx, vy))
        }
        _ => a == b,
    }
}
