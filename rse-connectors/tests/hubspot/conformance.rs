//! The destination conformance suite (`rse_core::testing::check_destination`) against the
//! contract server, for each API version, with the data read back from the server.
//!
//! The suite writes changes without memos, as a first run would. A CRM archives by the
//! record id a key's earlier write answered, which the runner keeps and hands back
//! (`Change::memo`); so the suite runs through [`KeepMemos`](rse_core::testing::KeepMemos), which keeps memos as the
//! runner does. Without it (the second test) the suite's deletes find no record id, and
//! find their records by `external_id` instead, which is mapped from the key.

use std::sync::Arc;

use async_trait::async_trait;
use rse_connectors::hubspot::ApiVersion;
use rse_connectors::{HubSpotDestination, HubSpotDestinationConfig};
use rse_core::testing::{DestinationReadback, KeepMemos, check_destination};
use rse_core::*;

use super::common::VERSIONS;
use crate::hubspot_server::{HubSpot, PropertyDef, TOKEN};

/// The conformance records as companies (`id` → the unique `external_id`).
struct Companies(HubSpot);

#[async_trait]
impl DestinationReadback for Companies {
    async fn get(&self, _: &Schema, key: &Key) -> Result<Option<Record>, rse_core::BoxError> {
        let id = key.decode()?[0].as_i64().ok_or("an int key")?;
        let Some(held) = self.0.record("companies", "external_id", &id.to_string()) else { return Ok(None) };
        let p = |name: &str| held.properties.get(name).cloned();
        Ok(Some(Record::new(vec![
            Value::Int(id),
            p("name").map_or(Value::Null, Value::String),
            p("score").map_or(Ok(Value::Null), |s| s.parse::<f64>().map(Value::Float))?,
            p("active").map_or(Value::Null, |b| Value::Bool(b == "true")),
        ])))
    }
}

async fn companies(version: ApiVersion) -> (HubSpot, HubSpotDestination) {
    let hs = HubSpot::start().await;
    hs.add_property("companies", PropertyDef::number("score"));
    hs.add_property("companies", PropertyDef::boolean("active"));
    let config = HubSpotDestinationConfig::new(
        "companies",
        rse_connectors::saas::SaasAuthConfig::Bearer { token: TOKEN.into() },
    )
    .with_base_url(hs.base_url())
    .with_api_version(version)
    .with_id_property("external_id")
    .with_field("id", "external_id")
    .with_field("name", "name")
    .with_field("score", "score")
    .with_field("active", "active");
    (hs, HubSpotDestination::new(config).unwrap())
}

#[tokio::test]
async fn the_destination_passes_the_conformance_suite_in_every_version() {
    for version in VERSIONS {
        let (hs, destination) = companies(version).await;
        let destination = KeepMemos::new(destination);
        let readback = Companies(hs.clone());
        check_destination(&destination, Some(&readback)).await.unwrap_or_else(|e| panic!("{version}: {e}"));
        // Deletes archived by the record ids the writes answered, never by a guess.
        let archived = hs.lock().archived.clone();
        assert_eq!(archived.len(), 1, "{version}: the one record deleted was archived once: {archived:?}");
        // A repeated write created nothing; the record archived came back as a new one.
        let creations = hs.creations("companies");
        for ((_, id), n) in creations {
            assert_eq!(n, if id == "1" { 2 } else { 1 }, "{version}: records created for external_id {id}");
        }
        hs.assert_no_violations();
    }
}

#[tokio::test]
async fn through_box_and_arc_dyn_too() {
    let (hs, destination) = companies(ApiVersion::V2026_03).await;
    let boxed: Box<dyn Destination> = Box::new(KeepMemos::new(destination));
    check_destination(boxed.as_ref(), None).await.unwrap();
    let (hs2, destination) = companies(ApiVersion::V3).await;
    let shared: Arc<dyn Destination> = Arc::new(destination);
    // Without the runner's memos: every delete is of a key with no record id, whose record
    // is found by `external_id` (mapped from the key) and archived.
    check_destination(shared.as_ref(), Some(&Companies(hs2.clone()))).await.unwrap();
    assert!(hs2.calls("read") >= 1);
    assert_eq!(hs2.lock().archived.len(), 1, "the one record deleted, found by its key");
    hs.assert_no_violations();
    hs2.assert_no_violations();
}
