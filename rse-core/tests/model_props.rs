//! Property tests of the data model: key encoding, fingerprints and both diff strategies.
//!
//! Every property runs `PROPTEST_CASES` cases (proptest's default, 256, when unset).
//! Failures are saved under `proptest-regressions/` and replayed first on later runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proptest::collection::{btree_map, btree_set, vec};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{FileFailurePersistence, TestCaseError};
use rse_core::diff::{DiffOutput, Differ, HashDiff, MergeDiff, PlanKind};
use rse_core::memory::MemoryStateStore;
use rse_core::{
    DataType, Decimal, Field, Fingerprint, FingerprintAlgorithm, Fingerprinter, Key, Record, Schema, SnapshotEntry,
    StateCommit, StateStore, Value,
};
use serde_json::{Map, Value as J, json};

const ALGORITHMS: [FingerprintAlgorithm; 2] = [FingerprintAlgorithm::Xxh3_128, FingerprintAlgorithm::Sha256];

/// proptest's default configuration (so `PROPTEST_CASES` applies), saving failures where
/// an integration test's can be found: `rse-core/proptest-regressions/model_props.txt`.
fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("proptest-regressions/model_props.txt"))),
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

fn arb_i64() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => any::<i64>(),
        2 => -3i64..3,
        1 => select(vec![i64::MIN, i64::MIN + 1, i64::MAX, i64::MAX - 1, -256, 255, 256]),
    ]
}

fn arb_i32() -> impl Strategy<Value = i32> {
    prop_oneof![3 => any::<i32>(), 2 => -3i32..3, 1 => select(vec![i32::MIN, i32::MIN + 1, i32::MAX, i32::MAX - 1])]
}

/// Floats of every class: any bit pattern (so NaNs with random payloads and either sign),
/// signed zeros, infinities, extremes, subnormals, and small integers that collide often.
fn arb_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => any::<u64>().prop_map(f64::from_bits),
        2 => select(vec![
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            -f64::MIN_POSITIVE,
            f64::EPSILON,
            f64::NAN,
        ]),
        1 => (any::<bool>(), 1u64..(1 << 52))
            .prop_map(|(negative, mantissa)| f64::from_bits((u64::from(negative) << 63) | mantissa)),
        1 => arb_nan(),
        2 => (-4i32..4).prop_map(f64::from),
        1 => (-40i32..40).prop_map(|i| f64::from(i) / 8.0),
    ]
}

/// A NaN with a random, non-zero payload and a random sign.
fn arb_nan() -> impl Strategy<Value = f64> {
    (any::<bool>(), 1u64..(1 << 52))
        .prop_map(|(negative, payload)| f64::from_bits((u64::from(negative) << 63) | 0x7FF0_0000_0000_0000 | payload))
}

fn arb_digits(max: usize) -> impl Strategy<Value = String> {
    vec(prop_oneof![2 => Just(b'0'), 3 => b'0'..=b'9'], 0..max).prop_map(|d| String::from_utf8(d).unwrap_or_default())
}

/// Decimal text as a user might write it: optional sign, leading and trailing zeros,
/// optional point, optional exponent in either case with either sign.
fn arb_decimal_text() -> impl Strategy<Value = String> {
    (
        select(vec!["", "-", "+"]),
        arb_digits(10),
        proptest::option::of(arb_digits(10)),
        proptest::option::of((select(vec!["e", "E"]), select(vec!["", "-", "+"]), 0u32..25)),
    )
        .prop_map(|(sign, int, frac, exp)| {
            let mut text = format!("{sign}{int}");
            if let Some(frac) = frac {
                text.push('.');
                text.push_str(&frac);
            }
            if let Some((e, exp_sign, exp)) = exp {
                text.push_str(&format!("{e}{exp_sign}{exp}"));
            }
            text
        })
}

fn arb_decimal() -> impl Strategy<Value = Decimal> {
    arb_decimal_text().prop_filter_map("not a decimal", |t| Decimal::parse(&t).ok())
}

/// Characters that stress the encodings: NUL, ASCII, the edges of each UTF-8 length.
fn arb_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => select(vec!['\0', 'a', 'b', '\u{1}', '\u{7f}', '\u{80}', 'é', '€', '\u{ffff}', '😀', '\u{10ffff}']),
        1 => any::<char>(),
    ]
}

fn arb_string() -> impl Strategy<Value = String> {
    vec(arb_char(), 0..6).prop_map(String::from_iter)
}

fn arb_byte_vec() -> impl Strategy<Value = Vec<u8>> {
    vec(prop_oneof![2 => select(vec![0x00u8, 0x01, 0xFE, 0xFF]), 1 => any::<u8>()], 0..6)
}

fn arb_json() -> impl Strategy<Value = J> {
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        arb_i64().prop_map(J::from),
        any::<u64>().prop_map(J::from),
        arb_f64().prop_filter_map("not finite", |f| serde_json::Number::from_f64(f).map(J::Number)),
        arb_string().prop_map(J::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(J::Array),
            vec((arb_string(), inner), 0..4).prop_map(|entries| J::Object(entries.into_iter().collect())),
        ]
    })
}

/// One value of any variant except `List`.
fn arb_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        arb_i64().prop_map(Value::Int),
        arb_f64().prop_map(Value::Float),
        arb_decimal().prop_map(Value::Decimal),
        arb_string().prop_map(Value::String),
        arb_byte_vec().prop_map(|b| Value::Bytes(Bytes::from(b))),
        arb_i32().prop_map(Value::Date),
        arb_i64().prop_map(Value::Timestamp),
        arb_json().prop_map(Value::Json),
    ]
}

/// A value of any variant, lists nested at most three deep.
fn arb_value() -> impl Strategy<Value = Value> {
    arb_scalar().prop_recursive(3, 16, 4, |inner| vec(inner, 0..4).prop_map(Value::List))
}

/// Two values of the same scalar variant, built to hit the interesting orderings within it.
fn arb_scalar_pair() -> impl Strategy<Value = (Value, Value)> {
    prop_oneof![
        (any::<bool>(), any::<bool>()).prop_map(|(a, b)| (Value::Bool(a), Value::Bool(b))),
        (arb_i64(), arb_i64()).prop_map(|(a, b)| (Value::Int(a), Value::Int(b))),
        (arb_f64(), arb_f64()).prop_map(|(a, b)| (Value::Float(a), Value::Float(b))),
        (arb_decimal(), arb_decimal()).prop_map(|(a, b)| (Value::Decimal(a), Value::Decimal(b))),
        (arb_string(), arb_string(), arb_string())
            .prop_map(|(p, a, b)| (Value::String(p.clone() + &a), Value::String(p + &b))),
        (arb_byte_vec(), arb_byte_vec(), arb_byte_vec()).prop_map(|(p, a, b)| {
            (Value::Bytes([p.clone(), a].concat().into()), Value::Bytes([p, b].concat().into()))
        }),
        (arb_i32(), arb_i32()).prop_map(|(a, b)| (Value::Date(a), Value::Date(b))),
        (arb_i64(), arb_i64()).prop_map(|(a, b)| (Value::Timestamp(a), Value::Timestamp(b))),
        (arb_json(), arb_json()).prop_map(|(a, b)| (Value::Json(a), Value::Json(b))),
        arb_scalar().prop_map(|v| (v.clone(), v)),
    ]
}

/// Two values of the same variant, lists included: lists that are prefixes of each other,
/// lists that agree element-wise in type, and arbitrary lists.
fn arb_same_type_pair() -> impl Strategy<Value = (Value, Value)> {
    prop_oneof![
        4 => arb_scalar_pair(),
        1 => (vec(arb_value(), 0..4), any::<Index>(), any::<bool>()).prop_map(|(items, cut, swap)| {
            let prefix = items[..cut.index(items.len() + 1)].to_vec();
            let (a, b) = (Value::List(prefix), Value::List(items));
            if swap { (b, a) } else { (a, b) }
        }),
        1 => vec(arb_scalar_pair(), 0..4).prop_map(|pairs| {
            let (a, b): (Vec<Value>, Vec<Value>) = pairs.into_iter().unzip();
            (Value::List(a), Value::List(b))
        }),
        1 => (vec(arb_value(), 0..3), vec(arb_value(), 0..3)).prop_map(|(a, b)| (Value::List(a), Value::List(b))),
    ]
}

/// Two composite keys of equal length (1–3 columns): per column the values are either equal
/// (so the comparison moves on to the next column), of the same type, or of random types.
fn arb_key_pair() -> impl Strategy<Value = (Vec<Value>, Vec<Value>)> {
    vec(prop_oneof![arb_value().prop_map(|v| (v.clone(), v)), arb_same_type_pair(), (arb_value(), arb_value()),], 1..=3)
        .prop_map(|columns| columns.into_iter().unzip())
}

/// Bytes to decode: random, drawn from the tag and escape bytes, or a valid encoding with a
/// few bytes replaced, inserted or removed.
fn arb_key_bytes() -> impl Strategy<Value = Vec<u8>> {
    let special = select(vec![
        0x00u8, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x7F, 0x80, 0xFE, 0xFF,
    ]);
    prop_oneof![
        vec(any::<u8>(), 0..48),
        vec(special, 0..48),
        (vec(arb_value(), 0..3), vec((any::<Index>(), any::<u8>(), 0u8..4), 0..3)).prop_map(|(values, edits)| {
            let mut bytes = Key::from_values(&values).as_bytes().to_vec();
            for (at, byte, op) in edits {
                let i = at.index(bytes.len() + 1);
                match op {
                    0 if i < bytes.len() => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    2 if i < bytes.len() => {
                        bytes.remove(i);
                    }
                    _ => bytes.truncate(i),
                }
            }
            bytes
        }),
    ]
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn lexicographic(a: &[Value], b: &[Value]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        match x.total_cmp(y) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    a.len().cmp(&b.len())
}

fn data_type_of(value: &Value) -> DataType {
    match value {
        Value::Bool(_) => DataType::Bool,
        Value::Int(_) => DataType::Int,
        Value::Float(_) => DataType::Float,
        Value::Decimal(_) => DataType::Decimal,
        Value::Bytes(_) => DataType::Bytes,
        Value::Date(_) => DataType::Date,
        Value::Timestamp(_) => DataType::Timestamp,
        Value::Json(_) => DataType::Json,
        Value::List(items) => {
            DataType::List(Box::new(items.iter().find(|v| !v.is_null()).map_or(DataType::String, data_type_of)))
        }
        _ => DataType::String,
    }
}

/// A schema with one field `f<i>` per value, typed after the value.
fn schema_for(values: &[Value]) -> Schema {
    let fields = values.iter().enumerate().map(|(i, v)| Field::new(format!("f{i}"), data_type_of(v))).collect();
    Schema::new(fields, &["f0"]).expect("field names are unique")
}

fn fingerprint(algorithm: FingerprintAlgorithm, schema: &Schema, values: &[Value]) -> Fingerprint {
    Fingerprinter::new(algorithm, schema).fingerprint(&Record::new(values.to_vec()))
}

/// The same JSON document with every object rebuilt by inserting its keys in reverse order.
fn reverse_objects(json: &J) -> J {
    match json {
        J::Array(items) => J::Array(items.iter().map(reverse_objects).collect()),
        J::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map.iter().rev() {
                out.insert(k.clone(), reverse_objects(v));
            }
            J::Object(out)
        }
        other => other.clone(),
    }
}

/// The same JSON document written differently: objects in reverse key order, integral
/// floats as integers and small integers as floats, `-0.0` for zero.
fn json_twin(json: &J) -> J {
    match json {
        J::Number(n) => {
            if let Some(i) = n.as_i64().filter(|i| i.unsigned_abs() < (1 << 53)) {
                if i == 0 { json!(-0.0) } else { json!(i as f64) }
            } else if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15) {
                json!(f as i64)
            } else {
                json.clone()
            }
        }
        J::Array(items) => J::Array(items.iter().map(json_twin).collect()),
        J::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map.iter().rev() {
                out.insert(k.clone(), json_twin(v));
            }
            J::Object(out)
        }
        other => other.clone(),
    }
}

/// Texts of the same number as `d` in other forms: trailing zeros, leading zeros and a `+`,
/// and scientific notation with the point removed (`-123.45` → `-12345e-2`).
fn decimal_spellings(d: &Decimal) -> Vec<String> {
    let s = d.as_str();
    let (sign, magnitude) = s.strip_prefix('-').map_or(("", s), |m| ("-", m));
    let padded = if magnitude.contains('.') { format!("{s}000") } else { format!("{s}.000") };
    let leading = format!("{}00{magnitude}", if sign.is_empty() { "+" } else { sign });
    let (int, frac) = magnitude.split_once('.').unwrap_or((magnitude, ""));
    let scientific = format!("{sign}{int}{frac}e-{}", frac.len());
    let upper = format!("{sign}0{int}{frac}0E{}", 1 - frac.len() as i64 - 2);
    vec![padded, leading, scientific, upper, format!("  {s} ")]
}

/// A value canonically equal to `value` but written differently wherever rse's canonical
/// form allows: the other zero, another NaN, another spelling of a decimal, JSON objects in
/// another key order and numbers in another form.
fn canonical_twin(value: &Value, salt: u64) -> Value {
    match value {
        Value::Float(f) if f.is_nan() => {
            Value::Float(f64::from_bits(0xFFF0_0000_0000_0000 | ((salt | 1) & ((1 << 52) - 1))))
        }
        Value::Float(f) if *f == 0.0 => Value::Float(if f.is_sign_negative() { 0.0 } else { -0.0 }),
        Value::Decimal(d) => {
            let spellings = decimal_spellings(d);
            let text = &spellings[(salt % spellings.len() as u64) as usize];
            Value::Decimal(Decimal::parse(text).expect("a spelling of a decimal parses"))
        }
        Value::Json(j) => Value::Json(json_twin(j)),
        Value::List(items) => Value::List(
            items.iter().enumerate().map(|(i, v)| canonical_twin(v, salt.rotate_left(i as u32 + 1))).collect(),
        ),
        other => other.clone(),
    }
}

// ---------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    /// Decoding a key gives back its values, and re-encoding those gives the same bytes.
    #[test]
    fn key_round_trips(values in vec(arb_value(), 0..4)) {
        let key = Key::from_values(&values);
        let decoded = key.decode();
        prop_assert_eq!(decoded.as_ref(), Ok(&values));
        let decoded = decoded.unwrap_or_default();
        let again = Key::from_values(&decoded);
        prop_assert_eq!(again.as_bytes(), key.as_bytes());
        prop_assert_eq!(Key::from_encoded(key.as_bytes()), Ok(key.clone()));
    }

    /// Composite keys compare byte-wise exactly as their values compare column by column.
    #[test]
    fn composite_key_order_is_value_order((a, b) in arb_key_pair()) {
        let (ka, kb) = (Key::from_values(&a), Key::from_values(&b));
        prop_assert_eq!(ka.cmp(&kb), lexicographic(&a, &b));
        prop_assert_eq!(kb.cmp(&ka), lexicographic(&b, &a));
        prop_assert_eq!(ka == kb, a == b);
    }

    /// Single values of one type compare byte-wise exactly as `total_cmp` orders them.
    #[test]
    fn single_key_order_is_value_order((a, b) in arb_same_type_pair()) {
        let (ka, kb) = (Key::from_values([&a]), Key::from_values([&b]));
        prop_assert_eq!(ka.cmp(&kb), a.total_cmp(&b));
        prop_assert_eq!(kb.cmp(&ka), b.total_cmp(&a));
        prop_assert_eq!(ka == kb, a == b);
    }

    /// `total_cmp` agrees with an independent order for each type: integers, IEEE total
    /// order after canonicalising zero and NaN, exact decimal arithmetic, bytes.
    #[test]
    fn value_order_is_natural_order(case in prop_oneof![
        (arb_i64(), arb_i64()).prop_map(|(a, b)| (Value::Int(a), Value::Int(b), a.cmp(&b))),
        (arb_f64(), arb_f64()).prop_map(|(a, b)| {
            let canon = |f: f64| if f.is_nan() { f64::NAN } else if f == 0.0 { 0.0 } else { f };
            (Value::Float(a), Value::Float(b), canon(a).total_cmp(&canon(b)))
        }),
        (any::<i64>(), 0u32..8, any::<i64>(), 0u32..8).prop_map(|(a, sa, b, sb)| {
            // a·10^-sa vs b·10^-sb  ⇔  a·10^sb vs b·10^sa, exact in i128.
            let order = (i128::from(a) * 10i128.pow(sb)).cmp(&(i128::from(b) * 10i128.pow(sa)));
            (Value::Decimal(Decimal::from_scaled(a.into(), sa)), Value::Decimal(Decimal::from_scaled(b.into(), sb)), order)
        }),
        (arb_string(), arb_string()).prop_map(|(a, b)| {
            let order = a.as_bytes().cmp(b.as_bytes());
            (Value::String(a), Value::String(b), order)
        }),
        (arb_byte_vec(), arb_byte_vec()).prop_map(|(a, b)| {
            let order = a.cmp(&b);
            (Value::Bytes(a.into()), Value::Bytes(b.into()), order)
        }),
        (arb_i32(), arb_i32()).prop_map(|(a, b)| (Value::Date(a), Value::Date(b), a.cmp(&b))),
        (arb_i64(), arb_i64()).prop_map(|(a, b)| (Value::Timestamp(a), Value::Timestamp(b), a.cmp(&b))),
    ]) {
        let (a, b, expected) = case;
        prop_assert_eq!(a.total_cmp(&b), expected);
        prop_assert_eq!(Key::from_values([&a]).cmp(&Key::from_values([&b])), expected);
    }

    /// Decoding arbitrary bytes never panics; bytes it accepts are exactly the encoding of
    /// the values it returns.
    #[test]
    fn key_from_encoded_accepts_only_canonical_encodings(bytes in arb_key_bytes()) {
        if let Ok(key) = Key::from_encoded(&bytes) {
            prop_assert_eq!(key.as_bytes(), bytes.as_slice());
            let values = key.decode();
            prop_assert!(values.is_ok(), "a validated key must decode");
            let values = values.unwrap_or_default();
            let again = Key::from_values(&values);
            prop_assert_eq!(again.as_bytes(), bytes.as_slice());
        }
    }

    /// Decimals print in a form that parses back to the same decimal, and every spelling of
    /// one number parses to one decimal.
    #[test]
    fn decimal_text_round_trips(text in arb_decimal_text()) {
        if let Ok(d) = Decimal::parse(&text) {
            prop_assert_eq!(Decimal::parse(&d.to_string()), Ok(d.clone()));
            prop_assert_eq!(d.to_string(), d.as_str());
            for spelling in decimal_spellings(&d) {
                prop_assert_eq!(Decimal::parse(&spelling), Ok(d.clone()), "{}", spelling);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Fingerprints
// ---------------------------------------------------------------------------------------

#[test]
fn fingerprint_ignores_json_key_order_literal() {
    let built = json!({"b": 1, "a": [1, {"y": 2.5, "x": -0.0, "z": null}], "c": {"k": "v", "j": 1.0}});
    let mut inner = Map::new();
    inner.insert("z".into(), J::Null);
    inner.insert("x".into(), json!(0));
    inner.insert("y".into(), json!(2.5));
    let mut c = Map::new();
    c.insert("j".into(), json!(1));
    c.insert("k".into(), json!("v"));
    let mut reversed = Map::new();
    reversed.insert("c".into(), J::Object(c));
    reversed.insert("a".into(), json!([1, J::Object(inner)]));
    reversed.insert("b".into(), json!(1.0));
    let parsed: J = serde_json::from_str(r#"{"c":{"j":1,"k":"v"},"a":[1.0,{"z":null,"y":2.5,"x":0}],"b":1}"#).unwrap();
    for algorithm in ALGORITHMS {
        let a = [Value::Int(1), Value::Json(built.clone())];
        let schema = schema_for(&a);
        let want = fingerprint(algorithm, &schema, &a);
        for other in [J::Object(reversed.clone()), parsed.clone()] {
            assert_eq!(fingerprint(algorithm, &schema, &[Value::Int(1), Value::Json(other)]), want, "{algorithm}");
        }
        let different = json!({"b": 1, "a": [1, {"y": 2.5, "x": 1, "z": null}], "c": {"k": "v", "j": 1.0}});
        assert_ne!(fingerprint(algorithm, &schema, &[Value::Int(1), Value::Json(different)]), want, "{algorithm}");
    }
}

proptest! {
    #![proptest_config(config())]

    /// JSON objects built with their keys inserted in another order fingerprint the same.
    #[test]
    fn fingerprint_ignores_json_key_order(
        values in vec(arb_value(), 1..4),
        json in arb_json(),
        at in any::<Index>(),
    ) {
        let at = at.index(values.len());
        let (mut a, mut b) = (values.clone(), values);
        a[at] = Value::Json(json.clone());
        b[at] = Value::Json(reverse_objects(&json));
        let text: J = serde_json::from_str(&reverse_objects(&json).to_string()).unwrap();
        let mut c = a.clone();
        c[at] = Value::Json(text);
        let schema = schema_for(&a);
        for algorithm in ALGORITHMS {
            let want = fingerprint(algorithm, &schema, &a);
            prop_assert_eq!(fingerprint(algorithm, &schema, &b), want);
            prop_assert_eq!(fingerprint(algorithm, &schema, &c), want);
        }
    }

    /// `-0.0` and `0.0` fingerprint the same, as a field, in a list and in JSON.
    #[test]
    fn fingerprint_ignores_sign_of_zero(values in vec(arb_value(), 1..4), at in any::<Index>(), wrap in 0u8..3) {
        let at = at.index(values.len());
        let wrapped = |f: f64| match wrap {
            0 => Value::Float(f),
            1 => Value::List(vec![Value::Int(1), Value::Float(f)]),
            _ => Value::Json(json!({"n": f})),
        };
        let (mut a, mut b) = (values.clone(), values);
        a[at] = wrapped(0.0);
        b[at] = wrapped(-0.0);
        prop_assert_eq!(&a, &b);
        let schema = schema_for(&a);
        for algorithm in ALGORITHMS {
            prop_assert_eq!(fingerprint(algorithm, &schema, &a), fingerprint(algorithm, &schema, &b));
        }
    }

    /// NaNs with different payloads and signs fingerprint the same.
    #[test]
    fn fingerprint_ignores_nan_payload(
        values in vec(arb_value(), 1..4),
        at in any::<Index>(),
        x in arb_nan(),
        y in arb_nan(),
        in_list in any::<bool>(),
    ) {
        let at = at.index(values.len());
        let wrapped = |f: f64| if in_list { Value::List(vec![Value::Float(f)]) } else { Value::Float(f) };
        let (mut a, mut b) = (values.clone(), values);
        a[at] = wrapped(x);
        b[at] = wrapped(y);
        let schema = schema_for(&a);
        for algorithm in ALGORITHMS {
            prop_assert_eq!(fingerprint(algorithm, &schema, &a), fingerprint(algorithm, &schema, &b));
        }
    }

    /// Spellings of one decimal (`1.50`, `1.5`, `+01.5`, `15e-1`) fingerprint the same.
    #[test]
    fn fingerprint_ignores_decimal_spelling(values in vec(arb_value(), 1..4), at in any::<Index>(), d in arb_decimal()) {
        let at = at.index(values.len());
        let mut a = values;
        a[at] = Value::Decimal(d.clone());
        let schema = schema_for(&a);
        for spelling in decimal_spellings(&d) {
            let mut b = a.clone();
            b[at] = Value::Decimal(Decimal::parse(&spelling).map_err(|e| TestCaseError::fail(format!("{spelling}: {e}")))?);
            for algorithm in ALGORITHMS {
                prop_assert_eq!(fingerprint(algorithm, &schema, &a), fingerprint(algorithm, &schema, &b), "{}", spelling);
            }
        }
    }

    /// Any record and its canonical twin (every value rewritten in another form of the same
    /// canonical value) are equal and fingerprint the same.
    #[test]
    fn fingerprint_is_canonical(values in vec(arb_value(), 1..5), salt in any::<u64>()) {
        let twin: Vec<Value> = values.iter().enumerate().map(|(i, v)| canonical_twin(v, salt ^ i as u64)).collect();
        prop_assert_eq!(&twin, &values);
        let schema = schema_for(&values);
        for algorithm in ALGORITHMS {
            prop_assert_eq!(fingerprint(algorithm, &schema, &values), fingerprint(algorithm, &schema, &twin));
        }
    }

    /// Changing any one field to a value that is not canonically equal changes the fingerprint.
    #[test]
    fn fingerprint_changes_with_any_value(
        values in vec(arb_value(), 1..6),
        at in any::<Index>(),
        replacement in prop_oneof![arb_value(), arb_same_type_pair().prop_map(|(a, _)| a)],
    ) {
        let at = at.index(values.len());
        prop_assume!(replacement != values[at]);
        let mut changed = values.clone();
        changed[at] = replacement;
        let schema = schema_for(&values);
        for algorithm in ALGORITHMS {
            prop_assert_ne!(fingerprint(algorithm, &schema, &values), fingerprint(algorithm, &schema, &changed), "{}", algorithm);
        }
    }

    /// Renaming or retyping any one field of the schema changes the fingerprint.
    #[test]
    fn fingerprint_changes_with_schema(values in vec(arb_value(), 1..6), at in any::<Index>(), name in "g[a-z0-9_]{0,6}") {
        let at = at.index(values.len());
        let schema = schema_for(&values);
        let mut renamed: Vec<Field> = schema.fields().to_vec();
        renamed[at].name = name;
        let renamed = Schema::new(renamed, &[] as &[&str]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut retyped: Vec<Field> = schema.fields().to_vec();
        retyped[at].data_type = if retyped[at].data_type == DataType::Bytes { DataType::String } else { DataType::Bytes };
        let retyped = Schema::new(retyped, &["f0"]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for algorithm in ALGORITHMS {
            let want = fingerprint(algorithm, &schema, &values);
            prop_assert_ne!(fingerprint(algorithm, &renamed, &values), want, "renamed, {}", algorithm);
            prop_assert_ne!(fingerprint(algorithm, &retyped, &values), want, "retyped, {}", algorithm);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Diffs
// ---------------------------------------------------------------------------------------

/// Keys come from a small domain so that old and new tables overlap and keys repeat.
const KEYS: i64 = 24;
const SYNC: &str = "model_props";

/// The non-key columns of a row: a small domain, so unchanged rows are frequent.
type Row = (Value, Value);

fn arb_row() -> impl Strategy<Value = Row> {
    (prop_oneof![Just(Value::Null), (0i64..3).prop_map(Value::Int)], select(vec!["x", "y"]).prop_map(Value::from))
}

#[derive(Debug, Clone)]
struct DiffCase {
    algorithm: FingerprintAlgorithm,
    /// The live snapshot: the old table's rows and their versions.
    old: BTreeMap<i64, (Row, u64)>,
    /// Keys deleted by an earlier run, with their versions.
    tombstones: BTreeMap<i64, u64>,
    /// The new table in source order, with null keys and repeated keys.
    new: Vec<(Option<i64>, Row)>,
    /// Keys read but refused before the diff (never in `new`).
    seen: BTreeSet<i64>,
    batch_size: usize,
    page_size: usize,
}

fn arb_diff_case() -> impl Strategy<Value = DiffCase> {
    (
        select(ALGORITHMS.to_vec()),
        btree_map(0..KEYS, (arb_row(), 1u64..5), 0..16),
        btree_map(0..KEYS, 1u64..5, 0..5),
        vec((prop_oneof![9 => (0..KEYS).prop_map(Some), 1 => Just(None)], arb_row()), 0..28).prop_shuffle(),
        btree_set(0..KEYS, 0..4),
        (1usize..7, 1usize..7),
    )
        .prop_map(|(algorithm, old, tombstones, new, seen, (batch_size, page_size))| {
            let tombstones = tombstones.into_iter().filter(|(k, _)| !old.contains_key(k)).collect();
            let seen = seen.into_iter().filter(|k| !new.iter().any(|(n, _)| *n == Some(*k))).collect();
            DiffCase { algorithm, old, tombstones, new, seen, batch_size, page_size }
        })
}

fn diff_schema() -> Schema {
    let fields =
        vec![Field::required("id", DataType::Int), Field::new("a", DataType::Int), Field::new("b", DataType::String)];
    Schema::new(fields, &["id"]).expect("valid schema")
}

/// A snapshot entry with nothing pending: the one place the test builds a `SnapshotEntry`.
fn entry(key: Key, fingerprint: Option<Fingerprint>, version: u64) -> SnapshotEntry {
    SnapshotEntry { key, fingerprint, version, pending: None, memo: None }
}

fn int_key(k: i64) -> Key {
    Key::from_values([&Value::Int(k)])
}

fn row_record(key: Option<i64>, row: &Row) -> Record {
    Record::new(vec![key.map_or(Value::Null, Value::Int), row.0.clone(), row.1.clone()])
}

/// One `push`: records and keys seen but refused upstream.
type Batch = (Vec<Record>, Vec<Key>);

impl DiffCase {
    fn fingerprinter(&self) -> Fingerprinter {
        Fingerprinter::new(self.algorithm, &diff_schema())
    }

    /// The snapshot the diff runs against, in key order, tombstones included.
    fn snapshot(&self) -> Vec<SnapshotEntry> {
        let mut fp = self.fingerprinter();
        let live = self
            .old
            .iter()
            .map(|(&k, (row, version))| entry(int_key(k), Some(fp.fingerprint(&row_record(Some(k), row))), *version));
        let dead = self.tombstones.iter().map(|(&k, &version)| entry(int_key(k), None, version));
        let mut entries: Vec<SnapshotEntry> = live.chain(dead).collect();
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        entries
    }

    fn records(&self) -> Vec<Record> {
        self.new.iter().map(|(k, row)| row_record(*k, row)).collect()
    }

    /// Records in source order, in batches; seen keys spread over the batches.
    fn hash_feed(&self) -> Vec<Batch> {
        let mut batches: Vec<Batch> =
            self.records().chunks(self.batch_size).map(|c| (c.to_vec(), Vec::new())).collect();
        if batches.is_empty() {
            batches.push((Vec::new(), Vec::new()));
        }
        let n = batches.len();
        for (i, &k) in self.seen.iter().enumerate() {
            batches[(i * 7) % n].1.push(int_key(k));
        }
        batches
    }

    /// Records and seen keys in ascending key order (null keys first, as a source sorts
    /// them), repeated keys in source order, in batches.
    fn merge_feed(&self) -> Vec<Batch> {
        let schema = diff_schema();
        let mut items: Vec<(Option<Key>, Option<Record>)> =
            self.records().into_iter().map(|r| (r.key(&schema).ok(), Some(r))).collect();
        items.extend(self.seen.iter().map(|&k| (Some(int_key(k)), None)));
        items.sort_by(|a, b| a.0.cmp(&b.0));
        items
            .chunks(self.batch_size)
            .map(|chunk| {
                let mut batch: Batch = (Vec::new(), Vec::new());
                for (key, record) in chunk {
                    match (record, key) {
                        (Some(record), _) => batch.0.push(record.clone()),
                        (None, Some(key)) => batch.1.push(key.clone()),
                        (None, None) => {}
                    }
                }
                batch
            })
            .collect()
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, TestCaseError> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| TestCaseError::fail(e.to_string()))
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

async fn run_diff(differ: &mut dyn Differ, feed: &[Batch]) -> Result<DiffOutput, TestCaseError> {
    let schema = diff_schema();
    let mut out = DiffOutput::default();
    for (records, seen) in feed {
        differ.push(&schema, records.clone(), seen.clone(), &mut out).await.map_err(fail)?;
    }
    differ.finish(&mut out).await.map_err(fail)?;
    Ok(out)
}

async fn store_with(entries: Vec<SnapshotEntry>) -> Result<Arc<MemoryStateStore>, TestCaseError> {
    let store = MemoryStateStore::new();
    let lease = store.acquire_lease(SYNC, "model_props", Duration::from_secs(600)).await.map_err(fail)?;
    store.commit(&lease, StateCommit { applied: entries, ..StateCommit::default() }).await.map_err(fail)?;
    store.release_lease(&lease).await.map_err(fail)?;
    Ok(Arc::new(store))
}

/// Checks one diff of `case` fed in `feed` order against a model of the tables, and returns
/// the snapshot after applying it: key → fingerprint.
fn check_diff(case: &DiffCase, feed: &[Batch], out: &DiffOutput) -> Result<BTreeMap<Key, Fingerprint>, TestCaseError> {
    let schema = diff_schema();
    let mut fp = case.fingerprinter();
    let snapshot: BTreeMap<Key, SnapshotEntry> = case.snapshot().into_iter().map(|e| (e.key.clone(), e)).collect();
    let seen: BTreeSet<Key> = case.seen.iter().map(|&k| int_key(k)).collect();

    // The model: the first record of each key in feed order is diffed; later ones and
    // null keys are invalid.
    let mut kept: BTreeMap<Key, Fingerprint> = BTreeMap::new();
    let mut repeated: Vec<(Key, Fingerprint)> = Vec::new();
    let mut null_keys = 0;
    for record in feed.iter().flat_map(|(records, _)| records) {
        match record.key(&schema) {
            Err(_) => null_keys += 1,
            Ok(key) if kept.contains_key(&key) => repeated.push((key, fp.fingerprint(record))),
            Ok(key) => {
                kept.insert(key, fp.fingerprint(record));
            }
        }
    }

    // Invalid: every null key and every repeat, each with a reason.
    prop_assert_eq!(out.invalid.len(), null_keys + repeated.len());
    prop_assert!(out.invalid.iter().all(|i| !i.reason.is_empty()), "an invalid record without a reason");
    prop_assert_eq!(out.invalid.iter().filter(|i| i.key.is_none()).count(), null_keys);
    prop_assert!(out.invalid.iter().filter(|i| i.key.is_none()).all(|i| i.record.values[0].is_null()));
    let mut got_repeats: Vec<(Key, Fingerprint)> =
        out.invalid.iter().filter_map(|i| i.key.clone().map(|k| (k, fp.fingerprint(&i.record)))).collect();
    got_repeats.sort();
    repeated.sort();
    prop_assert_eq!(got_repeats, repeated);

    // Planned: each kept key at most once, with the right kind, fingerprint and base.
    let mut planned_keys = HashSet::new();
    for p in &out.planned {
        prop_assert!(planned_keys.insert(p.key.clone()), "key {} planned twice", p.key);
        prop_assert_eq!(Some(&p.fingerprint), kept.get(&p.key), "planned fingerprint is not the kept record's");
        prop_assert_eq!(fp.fingerprint(&p.record), p.fingerprint);
        prop_assert_eq!(p.record.key(&schema), Ok(p.key.clone()));
        let base = snapshot.get(&p.key);
        prop_assert_eq!(p.base_fingerprint, base.and_then(|b| b.fingerprint));
        prop_assert_eq!(p.base_version, base.map_or(0, |b| b.version));
        match base.and_then(|b| b.fingerprint) {
            Some(old) => {
                prop_assert_eq!(p.kind, PlanKind::Update);
                prop_assert_ne!(old, p.fingerprint, "an unchanged record was planned");
            }
            None => prop_assert_eq!(p.kind, PlanKind::Insert),
        }
    }
    let unchanged = kept.iter().filter(|(k, f)| snapshot.get(*k).is_some_and(|e| e.fingerprint == Some(**f))).count();
    prop_assert_eq!(out.unchanged, unchanged as u64);
    prop_assert_eq!(out.planned.len() + unchanged, kept.len());

    // Deletes: exactly the live keys neither read nor seen, as the snapshot had them.
    let want_deletes: Vec<(&Key, Option<Fingerprint>, u64)> = snapshot
        .values()
        .filter(|e| e.is_live() && !kept.contains_key(&e.key) && !seen.contains(&e.key))
        .map(|e| (&e.key, e.fingerprint, e.version))
        .collect();
    let mut got_deletes: Vec<(&Key, Option<Fingerprint>, u64)> =
        out.deletes.iter().map(|e| (&e.key, e.fingerprint, e.version)).collect();
    got_deletes.sort();
    prop_assert_eq!(got_deletes, want_deletes);
    prop_assert_eq!(out.live_total, case.old.len() as u64);

    // Applying the diff to the old snapshot gives the new table (plus the seen keys, which
    // keep what the destination has).
    let mut after: BTreeMap<Key, Fingerprint> =
        snapshot.values().filter_map(|e| e.fingerprint.map(|f| (e.key.clone(), f))).collect();
    for p in &out.planned {
        after.insert(p.key.clone(), p.fingerprint);
    }
    for d in &out.deletes {
        prop_assert!(after.remove(&d.key).is_some(), "deleted key {} was not live", d.key);
    }
    let mut want_after = kept.clone();
    for key in &seen {
        if let Some(f) = snapshot.get(key).and_then(|e| e.fingerprint) {
            want_after.insert(key.clone(), f);
        }
    }
    prop_assert_eq!(&after, &want_after);
    Ok(after)
}

/// The snapshot once `after` is committed: live entries one version up, tombstones for the rest.
fn next_snapshot(case: &DiffCase, after: &BTreeMap<Key, Fingerprint>) -> Vec<SnapshotEntry> {
    let mut entries: BTreeMap<Key, SnapshotEntry> =
        case.snapshot().into_iter().map(|e| (e.key.clone(), entry(e.key, None, e.version + 1))).collect();
    for (key, f) in after {
        let version = entries.get(key).map_or(1, |e| e.version);
        entries.insert(key.clone(), entry(key.clone(), Some(*f), version));
    }
    entries.into_values().collect()
}

/// Diffing the same feed against the snapshot it produced plans nothing.
fn check_quiet(first: &DiffOutput, out: &DiffOutput) -> Result<(), TestCaseError> {
    prop_assert_eq!(out.planned.len(), 0, "a second diff of the same table planned changes");
    prop_assert_eq!(out.deletes.len(), 0, "a second diff of the same table planned deletes");
    prop_assert_eq!(out.unchanged, (first.planned.len() as u64) + first.unchanged);
    prop_assert_eq!(out.invalid.len(), first.invalid.len());
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// The hash diff, from entries and loaded from a store page by page, over source rows
    /// in any order.
    #[test]
    fn hash_diff_models_the_tables(case in arb_diff_case()) {
        let feed = case.hash_feed();
        runtime()?.block_on(async {
            let mut differ = HashDiff::from_entries(case.snapshot(), case.algorithm);
            let out = run_diff(&mut differ, &feed).await?;
            let after = check_diff(&case, &feed, &out)?;
            let mut again = HashDiff::from_entries(next_snapshot(&case, &after), case.algorithm);
            check_quiet(&out, &run_diff(&mut again, &feed).await?)?;

            let store = store_with(case.snapshot()).await?;
            let mut loaded = HashDiff::load(store.as_ref(), SYNC, case.algorithm, case.page_size).await.map_err(fail)?;
            let out = run_diff(&mut loaded, &feed).await?;
            let after = check_diff(&case, &feed, &out)?;
            let store = store_with(next_snapshot(&case, &after)).await?;
            let mut again = HashDiff::load(store.as_ref(), SYNC, case.algorithm, case.page_size).await.map_err(fail)?;
            check_quiet(&out, &run_diff(&mut again, &feed).await?)
        })?;
    }

    /// The merge diff over a store read page by page, beside source rows in key order.
    #[test]
    fn merge_diff_models_the_tables(case in arb_diff_case()) {
        let feed = case.merge_feed();
        runtime()?.block_on(async {
            let store: Arc<dyn StateStore> = store_with(case.snapshot()).await?;
            let mut differ = MergeDiff::new(store, SYNC, case.algorithm, case.page_size);
            let out = run_diff(&mut differ, &feed).await?;
            let after = check_diff(&case, &feed, &out)?;
            let store: Arc<dyn StateStore> = store_with(next_snapshot(&case, &after)).await?;
            let mut again = MergeDiff::new(store, SYNC, case.algorithm, case.page_size);
            check_quiet(&out, &run_diff(&mut again, &feed).await?)
        })?;
    }
}
