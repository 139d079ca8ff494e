//! Values of every variant through a real state store: refused records and cursors must read
//! back bit for bit (NaN payloads and signs, infinities, `-0.0`, floats inside JSON, nesting).

use std::time::Duration;

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};
use rse_core::state::{RejectedEntry, StateCommit, StateStore};
use rse_core::testing::{identical, identical_records};
use rse_core::{Decimal, Fingerprint, Key, Op, Record, RejectionStage, Value};
use serde_json::Value as J;

/// Floats of every class: any bit pattern (NaNs of any payload and sign), signed zeros,
/// infinities, extremes and subnormals, and plain numbers.
fn arb_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => any::<u64>().prop_map(f64::from_bits),
        3 => select(vec![
            0.0,
            -0.0,
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            f64::from_bits(1),
            0.1,
            1.0 / 3.0,
        ]),
        1 => (any::<bool>(), 1u64..(1 << 52))
            .prop_map(|(sign, payload)| f64::from_bits((u64::from(sign) << 63) | 0x7FF0_0000_0000_0000 | payload)),
        1 => (-1000i32..1000).prop_map(|i| f64::from(i) / 16.0),
    ]
}

fn arb_text() -> impl Strategy<Value = String> {
    vec(
        prop_oneof![
            3 => select(vec!['\0', 'a', '"', '\\', '\u{7f}', 'é', '€', '\u{ffff}', '😀', '\u{10ffff}']),
            1 => any::<char>(),
        ],
        0..8,
    )
    .prop_map(String::from_iter)
}

fn arb_decimal() -> impl Strategy<Value = Decimal> {
    (any::<bool>(), "[0-9]{1,30}", proptest::option::of("[0-9]{1,20}")).prop_filter_map(
        "not a decimal",
        |(negative, int, frac)| {
            let text = format!(
                "{}{int}{}",
                if negative { "-" } else { "" },
                frac.map(|f| format!(".{f}")).unwrap_or_default()
            );
            Decimal::parse(&text).ok()
        },
    )
}

/// JSON documents whose numbers are integers of both signs, `u64`s beyond `i64`, and every
/// finite float (`-0.0` included), nested in arrays and objects.
fn arb_json() -> impl Strategy<Value = J> {
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        any::<i64>().prop_map(J::from),
        any::<u64>().prop_map(J::from),
        arb_f64().prop_filter_map("not finite", |f| serde_json::Number::from_f64(f).map(J::Number)),
        arb_text().prop_map(J::String),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(J::Array),
            vec((arb_text(), inner), 0..4).prop_map(|entries| J::Object(entries.into_iter().collect())),
        ]
    })
}

fn arb_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => any::<i64>().prop_map(Value::Int),
        3 => arb_f64().prop_map(Value::Float),
        1 => arb_decimal().prop_map(Value::Decimal),
        1 => arb_text().prop_map(Value::String),
        1 => vec(any::<u8>(), 0..8).prop_map(|b| Value::Bytes(Bytes::from(b))),
        1 => any::<i32>().prop_map(Value::Date),
        1 => any::<i64>().prop_map(Value::Timestamp),
        1 => arb_json().prop_map(Value::Json),
    ]
}

/// A value of any variant; lists (of any values, lists included) nest up to four deep.
pub fn arb_value() -> impl Strategy<Value = Value> {
    arb_scalar().prop_recursive(4, 32, 5, |inner| vec(inner, 0..5).prop_map(Value::List))
}

/// The runner: proptest's defaults (so `PROPTEST_CASES` applies), failures saved under the
/// crate's `proptest-regressions/`.
fn runner(name: &'static str) -> TestRunner {
    TestRunner::new(Config {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(name))),
        ..Config::default()
    })
}

/// Commits a refused record and a cursor of arbitrary values into `store`, reads both back
/// and requires them bit for bit; panics with the shrunk counterexample otherwise.
pub fn check_values_round_trip(rt: &tokio::runtime::Runtime, store: &dyn StateStore, regressions: &'static str) {
    let lease = rt.block_on(store.acquire_lease("values", "proptest", Duration::from_secs(600))).unwrap();
    let mut runner = runner(regressions);
    let result = runner.run(&(vec(arb_value(), 0..8), arb_value()), |(values, cursor)| {
        let record = Record::new(values);
        let refusal = RejectedEntry {
            key: Key::from_values(&[Value::Int(1)]),
            stage: RejectionStage::Destination,
            op: Some(Op::Insert),
            fingerprint: Some(Fingerprint(u128::MAX)),
            version: 0,
            reason: "refused".into(),
            attempts: 1,
            record: Some(record.clone()),
            first_rejected_at: 1,
            last_rejected_at: 2,
        };
        let commit = StateCommit { rejected: vec![refusal], cursor: Some(cursor.clone()), ..StateCommit::default() };
        rt.block_on(store.commit(&lease, commit)).map_err(|e| TestCaseError::fail(format!("commit: {e}")))?;
        let listed = rt
            .block_on(store.rejected("values", None, 10))
            .map_err(|e| TestCaseError::fail(format!("reading the rejection: {e}")))?;
        prop_assert_eq!(listed.len(), 1);
        let got = listed[0].record.as_ref().ok_or_else(|| TestCaseError::fail("the record was lost"))?;
        prop_assert!(identical_records(got, &record), "the record came back as {:?}", got);
        let meta =
            rt.block_on(store.meta("values")).map_err(|e| TestCaseError::fail(format!("reading the cursor: {e}")))?;
        let got = meta.cursor.ok_or_else(|| TestCaseError::fail("the cursor was lost"))?;
        prop_assert!(identical(&got, &cursor), "the cursor came back as {:?}", got);
        Ok(())
    });
    rt.block_on(store.release_lease(&lease)).unwrap();
    if let Err(e) = result {
        panic!("{e}\n{runner}");
    }
}
