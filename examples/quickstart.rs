//! The quickstart: a customers model synced to a destination, changed, and synced again.
//!
//! The second run sends only what changed. Run with `cargo run --example quickstart`.

use std::error::Error;

use rse::memory::{MemoryDestination, MemorySource, MemoryStateStore};
use rse::transform::{DropFields, HashPii, Rename};
use rse::{DataType, Field, Mode, Record, Schema, Sync, SyncOptions, Value};

fn customer(id: i64, email: &str, churn: f64, stage: &str) -> Record {
    Record::new(vec![Value::Int(id), email.into(), churn.into(), stage.into(), Value::from("internal note")])
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    // The model, as the warehouse computes it.
    let schema = Schema::new(
        vec![
            Field::required("customer_id", DataType::Int),
            Field::new("email", DataType::String),
            Field::new("churn_risk", DataType::Float),
            Field::new("lifecycle_stage", DataType::String),
            Field::new("notes", DataType::String),
        ],
        &["customer_id"],
    )?;
    let warehouse = MemorySource::new(
        schema.into_arc(),
        vec![
            customer(1, "Ada@Example.com", 0.12, "active"),
            customer(2, "grace@example.com", 0.81, "at_risk"),
            customer(3, "linus@example.com", 0.45, "active"),
            customer(4, "barbara@example.com", 0.07, "champion"),
        ],
    );
    let audience = MemoryDestination::new();
    let state = MemoryStateStore::new();

    let sync = Sync::builder("customers-to-audience")
        .source(warehouse.clone())
        // Ad platforms want a normalised, SHA-256-hashed email and nothing they do not need.
        .transform(Rename::new([("customer_id", "external_id")]))
        .transform(HashPii::email("email").with_output_field("email_sha256"))
        .transform(DropFields::new(["notes"]))
        .destination(audience.clone())
        .state(state)
        .mode(Mode::Mirror)
        .options(SyncOptions::default())
        .build()
        .await?;

    let first = sync.run().await?;
    println!("{first}\n");

    // The model changes: one score moves, one customer leaves, one arrives.
    warehouse.upsert(customer(2, "grace@example.com", 0.93, "at_risk"));
    warehouse.remove(&rse::Key::from_values(&[Value::Int(3)]));
    warehouse.upsert(customer(5, "ken@example.com", 0.30, "new"));

    let second = sync.run().await?;
    println!("{second}\n");

    println!("The destination now holds {} records:", audience.records().len());
    for record in audience.records().values() {
        println!("  {:?}", record.values);
    }
    Ok(())
}
