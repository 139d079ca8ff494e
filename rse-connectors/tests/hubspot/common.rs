//! What the HubSpot destination tests share: a contract server with the properties they
//! write, a contacts model, and syncs over an in-memory source.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use rse_connectors::hubspot::{ApiVersion, BurstLimit};
use rse_connectors::saas::SaasAuthConfig;
use rse_connectors::{HubSpotDestination, HubSpotDestinationConfig};
use rse_core::memory::{MemorySource, MemoryStateStore};
use rse_core::*;

use crate::hubspot_server::{HubSpot, PropertyDef, StoredRecord, TOKEN};

/// The unique property the destination writes the sync key to, when configured.
pub const KEY_PROPERTY: &str = "rse_sync_key";

/// A contract server whose contacts also have `plan_tier`, `signup_date`, `last_seen`,
/// `vip`, `score` and the unique [`KEY_PROPERTY`].
pub async fn server() -> HubSpot {
    let hs = HubSpot::start().await;
    for def in [
        PropertyDef::text("plan_tier"),
        PropertyDef::text("signup_date"),
        PropertyDef::text("last_seen"),
        PropertyDef::boolean("vip"),
        PropertyDef::number("score"),
        PropertyDef::unique(KEY_PROPERTY),
    ] {
        hs.add_property("contacts", def);
    }
    hs
}

/// id (key), email, first_name, plan, signed_up (date), last_seen (timestamp), vip, score.
pub fn schema() -> Arc<Schema> {
    Schema::new(
        vec![
            Field::required("id", DataType::Int),
            Field::new("email", DataType::String),
            Field::new("first_name", DataType::String),
            Field::new("plan", DataType::String),
            Field::new("signed_up", DataType::Date),
            Field::new("last_seen", DataType::Timestamp),
            Field::new("vip", DataType::Bool),
            Field::new("score", DataType::Float),
        ],
        &["id"],
    )
    .unwrap()
    .into_arc()
}

/// The e-mail address of contact `id` as the warehouse holds it (mixed case).
pub fn email(id: i64) -> String {
    format!("User{id}@Example.com")
}

/// As HubSpot must hold it.
pub fn hubspot_email(id: i64) -> String {
    email(id).to_lowercase()
}

/// Contact `id`, its first name `first_name`.
pub fn contact_named(id: i64, first_name: &str) -> Record {
    Record::new(vec![
        Value::Int(id),
        Value::String(email(id)),
        Value::String(first_name.to_owned()),
        if id % 3 == 0 { Value::Null } else { Value::from("gold") },
        Value::Date(19_800 + id as i32 % 100),
        Value::Timestamp(1_714_564_800_123_456 + id * 1_000_000),
        Value::Bool(id % 2 == 0),
        Value::Float(id as f64 / 4.0),
    ])
}

pub fn contact(id: i64) -> Record {
    contact_named(id, &format!("Contact{id}"))
}

pub fn contacts(range: std::ops::RangeInclusive<i64>) -> Vec<Record> {
    range.map(contact).collect()
}

pub fn key(id: i64) -> Key {
    Key::from_values(&[Value::Int(id)])
}

/// Contacts into `hs` with a private-app token, every field mapped, the server's burst limit.
pub fn config(hs: &HubSpot) -> HubSpotDestinationConfig {
    config_at(hs.base_url())
}

/// [`config`] for a server at `base_url`.
pub fn config_at(base_url: String) -> HubSpotDestinationConfig {
    HubSpotDestinationConfig::contacts(TOKEN)
        .with_base_url(base_url)
        .with_field("email", "email")
        .with_field("first_name", "firstname")
        .with_field("plan", "plan_tier")
        .with_field("signed_up", "signup_date")
        .with_field("last_seen", "last_seen")
        .with_field("vip", "vip")
        .with_field("score", "score")
        .with_rate_limit(BurstLimit::per_ten_seconds(190))
}

/// The model's rows as companies of `hs`, matched by `external_id`, which is mapped from
/// the key column `id`.
pub fn companies_config(hs: &HubSpot) -> HubSpotDestinationConfig {
    HubSpotDestinationConfig::new("companies", SaasAuthConfig::Bearer { token: TOKEN.into() })
        .with_base_url(hs.base_url())
        .with_id_property("external_id")
        .with_field("id", "external_id")
        .with_field("first_name", "name")
        .with_rate_limit(BurstLimit::per_ten_seconds(190))
}

/// The company of key `id`.
pub fn company(hs: &HubSpot, id: i64) -> Option<StoredRecord> {
    hs.record("companies", "external_id", &id.to_string())
}

/// The record ids archived, in order.
pub fn archived(hs: &HubSpot) -> Vec<u64> {
    hs.lock().archived.iter().map(|(_, id)| *id).collect()
}

/// The last body sent to an endpoint whose path ends with `suffix`.
pub fn last_body(hs: &HubSpot, suffix: &str) -> serde_json::Value {
    let bodies = hs.lock().bodies.clone();
    bodies.into_iter().rev().find(|(path, _)| path.ends_with(suffix)).map(|(_, body)| body).unwrap()
}

pub fn destination(hs: &HubSpot, version: ApiVersion) -> HubSpotDestination {
    HubSpotDestination::new(config(hs).with_api_version(version)).unwrap()
}

pub const VERSIONS: [ApiVersion; 3] = [ApiVersion::V2026_03, ApiVersion::V2026_09, ApiVersion::V3];

pub fn options() -> SyncOptions {
    SyncOptions::default().with_batch_rows(100).with_linger(Duration::from_millis(5)).with_max_deletes(None)
}

/// A sync of `source` into `destination` with an in-memory state.
pub struct World {
    pub source: MemorySource,
    pub state: MemoryStateStore,
    pub job: SyncJob,
}

impl World {
    pub async fn new(rows: Vec<Record>, destination: HubSpotDestination, mode: Mode, options: SyncOptions) -> World {
        let source = MemorySource::new(schema(), rows);
        let state = MemoryStateStore::new();
        let job = SyncJob::builder("customers")
            .source(source.clone())
            .destination(destination)
            .state(state.clone())
            .mode(mode)
            .options(options)
            .build()
            .await
            .unwrap();
        World { source, state, job }
    }

    pub async fn run(&self) -> SyncReport {
        self.job.run().await.unwrap()
    }

    /// The record id kept for `id`'s key.
    pub fn memo(&self, id: i64) -> Option<String> {
        let entry = self.state.snapshot("customers").into_iter().find(|e| e.key == key(id))?;
        entry.memo.and_then(|m| m.as_str().map(str::to_owned))
    }
}

/// HubSpot's `firstname` of contact `id`.
pub fn held(hs: &HubSpot, id: i64) -> Option<StoredRecord> {
    hs.record("contacts", "email", &hubspot_email(id))
}

/// Asserts that HubSpot holds `record` as the destination writes it.
pub fn assert_holds(hs: &HubSpot, record: &Record) {
    let Value::Int(id) = record.values[0] else { panic!("an int id") };
    let held = held(hs, id).unwrap_or_else(|| panic!("contact {id} is in HubSpot"));
    let text = |i: usize| match &record.values[i] {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => panic!("{other:?}"),
    };
    let p = &held.properties;
    assert_eq!(p.get("email").cloned(), Some(hubspot_email(id)), "contact {id}: the e-mail lower-cased");
    assert_eq!(p.get("firstname").cloned(), text(2), "contact {id}");
    assert_eq!(p.get("plan_tier").cloned(), text(3), "contact {id}: a null clears the property");
    let Value::Date(days) = record.values[4] else { panic!() };
    assert_eq!(p.get("signup_date").map(String::as_str), Some(rse_core::time::format_date(days).as_str()));
    let last_seen = p.get("last_seen").unwrap();
    assert!(last_seen.ends_with(".123Z") && last_seen.starts_with("2024-05-"), "{last_seen}");
    assert_eq!(p.get("vip").map(String::as_str), Some(if id % 2 == 0 { "true" } else { "false" }));
    assert_eq!(p.get("score").map(|s| s.parse::<f64>().unwrap()), Some(id as f64 / 4.0));
}
