//! Canonical forms on arbitrary bytes: a JSON document fingerprints (and keys) the same once
//! written out and read back, and a decimal's text parses back to the same decimal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rse_core::{DataType, Decimal, Field, FingerprintAlgorithm, Fingerprinter, Key, Record, Schema, Value};

fuzz_target!(|data: &[u8]| {
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) {
        let text = serde_json::to_string(&json).expect("a parsed document serialises");
        let reparsed: serde_json::Value = serde_json::from_str(&text).expect("serde_json reads what it writes");
        let schema =
            Schema::new(vec![Field::required("id", DataType::Int), Field::new("doc", DataType::Json)], &["id"])
                .expect("valid schema");
        let original = Record::new(vec![Value::Int(1), Value::Json(json.clone())]);
        let round_tripped = Record::new(vec![Value::Int(1), Value::Json(reparsed)]);
        for algorithm in [FingerprintAlgorithm::Xxh3_128, FingerprintAlgorithm::Sha256] {
            let mut fingerprinter = Fingerprinter::new(algorithm, &schema);
            let want = fingerprinter.fingerprint(&original);
            assert_eq!(
                fingerprinter.fingerprint(&round_tripped),
                want,
                "{algorithm}: re-serialised JSON fingerprints differently"
            );
        }
        // A key holding the document decodes back to it.
        let value = Value::Json(json);
        let key = Key::from_values([&value]);
        assert_eq!(key.decode().expect("a key rse built decodes"), vec![value]);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(decimal) = Decimal::parse(text)
    {
        let again = Decimal::parse(&decimal.to_string()).expect("a decimal's own text parses");
        assert_eq!(again, decimal);
    }
});
