//! The diff bench's table: customers of 10 columns (an int key, strings, floats, a decimal, a
//! timestamp, a bool), about 200 canonical bytes a record; the metrics bench runs the same.

use rse::{DataType, Decimal, Field, Record, Schema, Value};

/// The table's schema, keyed by `id`.
pub fn schema() -> Schema {
    let fields = vec![
        Field::required("id", DataType::Int),
        Field::new("email", DataType::String),
        Field::new("name", DataType::String),
        Field::new("address", DataType::String),
        Field::new("plan", DataType::String),
        Field::new("score", DataType::Float),
        Field::new("lifetime_value", DataType::Float),
        Field::new("created_at", DataType::Timestamp),
        Field::new("active", DataType::Bool),
        Field::new("balance", DataType::Decimal),
    ];
    Schema::new(fields, &["id"]).expect("valid schema")
}

/// Record `i`.
pub fn record(i: usize) -> Record {
    let n = i as i64;
    Record::new(vec![
        Value::Int(n),
        Value::String(format!("customer.{i:08}@example-mail.com")),
        Value::String(format!("Firstname{i:06} Lastname{:06}", i * 7 % 1_000_000)),
        Value::String(format!("{} Long Street Name, Apartment {}, Springfield", i % 9999, i % 97)),
        Value::from(["free", "starter", "professional", "enterprise"][i % 4]),
        Value::Float(i as f64 * 0.37),
        Value::Float((i % 10_000) as f64 * 12.5 + 0.25),
        Value::Timestamp(1_600_000_000_000_000 + n * 1_000_003),
        Value::Bool(i % 3 != 2),
        Value::Decimal(Decimal::from_scaled(i128::from(n) * 37 % 100_000_000, 2)),
    ])
}
