//! The destination conformance suite (`rse_core::testing::check_destination`) against the
//! in-process org, by sObject Collections and by Bulk API 2.0, with the records read back
//! from the org.
//!
//! The suite builds its batches itself, without the runner, so its deletes carry no memo: a
//! Salesforce delete then looks the record up by the external id the key gives. The runner
//! hands a key's memo (the record id) back with its later changes, and deletes go by it; so
//! the suite runs through `KeepMemos` as well, which keeps each key's memo from the write's
//! receipts and hands it back with the key's next change, as the runner does with the state.
//! Inserts of keys already held, a batch written twice, updates, deletes of missing keys, a
//! full batch hold as for any destination. The records are read back by external id.
//!
//! Follows the REST API Developer Guide ("Upsert Records Using sObject Collections", "Delete
//! Records Using sObject Collections") and the Bulk API 2.0 Developer Guide; saas-contracts.md §2.

use async_trait::async_trait;
use rse_connectors::{Destination, SalesforceBulkOptions, SalesforceDestination};
use rse_core::error::BoxError;
use rse_core::testing::{DestinationReadback, KeepMemos, check_destination};
use rse_core::{Key, Record, Schema, Value};
use serde_json::Value as Json;

use crate::salesforce_server::SalesforceServer;
use crate::world::{EXT, fast_poll, jwt};

/// The contact with the key's external id, as a record of the conformance schema.
struct Readback(SalesforceServer);

#[async_trait]
impl DestinationReadback for Readback {
    async fn get(&self, _: &Schema, key: &Key) -> Result<Option<Record>, BoxError> {
        let id = key.decode()?[0].as_i64().ok_or("the conformance key is an integer")?;
        let org = self.0.lock();
        let Some(held) = org.record_by_ext("Contact", EXT, &id.to_string()) else { return Ok(None) };
        let field = |name: &str| held.fields.get(name).cloned().unwrap_or(Json::Null);
        Ok(Some(Record::new(vec![
            Value::Int(id),
            field("LastName").as_str().map_or(Value::Null, Value::from),
            field("Score__c").as_f64().map_or(Value::Null, Value::Float),
            field("Active__c").as_bool().map_or(Value::Null, Value::Bool),
        ])))
    }
}

async fn suite(bulk: SalesforceBulkOptions, memos: bool) -> SalesforceServer {
    let server = SalesforceServer::start().await;
    let config = rse_connectors::SalesforceDestinationConfig::new(jwt(&server), "Contact", EXT)
        .with_field("name", "LastName")
        .with_field("score", "Score__c")
        .with_field("active", "Active__c")
        .with_bulk(bulk.with_poll(fast_poll()));
    let dest: Box<dyn Destination> = Box::new(SalesforceDestination::new(config).unwrap());
    if memos {
        let dest = KeepMemos::new(dest);
        check_destination(&dest, Some(&Readback(server.clone()))).await.unwrap();
    } else {
        check_destination(&dest, Some(&Readback(server.clone()))).await.unwrap();
    }
    server
}

#[tokio::test]
async fn the_destination_suite_holds_through_collections() {
    let server = suite(SalesforceBulkOptions::default(), true).await;
    assert_eq!(server.requests_matching("/jobs/ingest"), 0, "no batch of the suite reaches 2,000 upserts");
    assert!(server.requests_matching("DELETE /services/data/v66.0/composite/sobjects") >= 1);
}

#[tokio::test]
async fn the_destination_suite_holds_with_deletes_looked_up_by_external_id() {
    let server = suite(SalesforceBulkOptions::default(), false).await;
    assert!(server.lock().ext_lookups >= 1);
    assert!(server.requests_matching("DELETE /services/data/v66.0/composite/sobjects") >= 1);
}

#[tokio::test]
async fn the_destination_suite_holds_through_bulk() {
    let server = suite(SalesforceBulkOptions::default().with_min_records(1), true).await;
    assert!(server.requests_matching("POST /services/data/v66.0/jobs/ingest") >= 4, "every upsert by Bulk");
    assert_eq!(server.requests_matching("PATCH /services/data/v66.0/composite"), 0);
}
