//! Customers into HubSpot contacts, in Mirror mode, against the in-process HubSpot contract
//! server that the tests use (it answers as HubSpot's API does and checks every request
//! against the contract), so it runs without a HubSpot account:
//!
//! ```sh
//! cargo run --example hubspot --features hubspot
//! ```
//!
//! Against a real account, drop the server, leave `base_url` out (it defaults to
//! `https://api.hubapi.com`) and give the private app's token by reference:
//! `"token": {"env": "HUBSPOT_TOKEN"}`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../rse-connectors/tests/support/hubspot_server/mod.rs"]
mod hubspot_server;

use rse::connectors::state::SqliteStateStore;
use rse::connectors::{HubSpotDestination, HubSpotDestinationConfig};
use rse::memory::MemorySource;
use rse::{DataType, Destination, Field, Mode, Record, Schema, SyncJob, SyncOptions, Value};

fn customer(id: i64) -> Record {
    Record::new(vec![
        Value::Int(id),
        Value::String(format!("Customer{id}@Example.com")), // sent lower-cased: HubSpot matches exactly
        Value::String(format!("Customer {id}")),
        if id % 5 == 0 { Value::Null } else { Value::from("pro") }, // null clears the property
        Value::Date(19_700 + id as i32),                            // "2023-12-08"
        Value::Bool(id % 2 == 0),                                   // "true" / "false"
    ])
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The stand-in for api.hubapi.com, with the account's custom properties and a
    // validation rule that refuses one contact.
    let hubspot = hubspot_server::HubSpot::start().await;
    for property in ["plan_tier", "signup_date", "vip"] {
        hubspot.add_property("contacts", hubspot_server::PropertyDef::text(property));
    }
    // A unique text property the sync writes its key to (see the README's "Mirror deletes").
    hubspot.add_property("contacts", hubspot_server::PropertyDef::unique("rse_sync_key"));
    hubspot.set_rule(|input| (input.id == "customer7@example.com").then(|| "Blocked by a rule".to_owned()));

    let config: HubSpotDestinationConfig = serde_json::from_value(serde_json::json!({
        "object": "contacts",
        "auth": {"type": "bearer", "token": hubspot_server::TOKEN},
        "base_url": hubspot.base_url(),
        "fields": [
            {"field": "email", "property": "email"},
            {"field": "name", "property": "firstname"},
            {"field": "plan", "property": "plan_tier"},
            {"field": "signed_up", "property": "signup_date"},
            {"field": "vip", "property": "vip"}
        ],
        "key_property": "rse_sync_key",
        "rate_limit": {"requests": 190, "per": "10s"}
    }))?;
    let contacts = HubSpotDestination::new(config)?;
    contacts.check().await?; // the token, and every property exists and takes writes

    let schema = Schema::new(
        vec![
            Field::required("id", DataType::Int),
            Field::new("email", DataType::String),
            Field::new("name", DataType::String),
            Field::new("plan", DataType::String),
            Field::new("signed_up", DataType::Date),
            Field::new("vip", DataType::Bool),
        ],
        &["id"],
    )?;
    let source = MemorySource::new(schema.into_arc(), (1..=1_000).map(customer).collect());
    let dir = std::path::Path::new("hubspot-example-data");
    std::fs::create_dir_all(dir)?;
    let _ = std::fs::remove_file(dir.join("state.db"));
    let sync = SyncJob::builder("customers-to-hubspot")
        .source(source.clone())
        .destination(contacts)
        .state(SqliteStateStore::open(dir.join("state.db")).await?) // keeps each contact's record id
        .mode(Mode::Mirror)
        .options(SyncOptions::default())
        .build()
        .await?;

    let report = sync.run().await?;
    println!("first run: {report}");
    println!("  created {}, refused {}", report.counts.destination.created, report.counts.rejected.total());

    // Ten customers leave, the rule is lifted: their contacts are archived by record id,
    // and the refused contact goes through.
    for id in 991..=1_000 {
        source.remove(&rse::Key::from_values(&[Value::Int(id)]));
    }
    hubspot.lift_rule();
    let report = sync.run().await?;
    println!("second run: {report}");
    println!(
        "  archived {}, recovered {}; HubSpot holds {} contacts",
        report.counts.applied.delete,
        report.counts.recovered,
        hubspot.live("contacts").len()
    );
    hubspot.assert_no_violations();
    Ok(())
}
