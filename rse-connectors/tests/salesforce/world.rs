//! What the destination tests share: a contacts model, the destination signed in to the
//! in-process org with the JWT bearer flow, and a sync of the model into it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rse_connectors::saas::{JwtBearerConfig, PollOptions};
use rse_connectors::{SalesforceBulkOptions, SalesforceDestination, SalesforceDestinationConfig};
use rse_core::memory::{MemorySource, MemoryStateStore};
use rse_core::testing::unique_id;
use rse_core::*;
use serde_json::{Map, Value as Json};

use crate::salesforce_server::{SalesforceServer, test_key};

/// The external id field of `Contact` in the org.
pub const EXT: &str = "Rse_Ext_Id__c";

/// `id` (int, the key), `name`, `email`, `score`, `active`.
pub fn schema() -> Arc<Schema> {
    Schema::new(
        vec![
            Field::required("id", DataType::Int),
            Field::new("name", DataType::String),
            Field::new("email", DataType::String),
            Field::new("score", DataType::Float),
            Field::new("active", DataType::Bool),
        ],
        &["id"],
    )
    .unwrap()
    .into_arc()
}

pub fn contact(id: i64, score: f64) -> Record {
    Record::new(vec![
        Value::Int(id),
        Value::String(format!("Person {id}")),
        Value::String(format!("p{id}@example.com")),
        Value::Float(score),
        Value::Bool(id % 2 == 0),
    ])
}

pub fn contacts(ids: std::ops::RangeInclusive<i64>) -> Vec<Record> {
    ids.map(|i| contact(i, 1.0)).collect()
}

pub fn key(id: i64) -> Key {
    Key::from_values(&[Value::Int(id)])
}

/// Polls a job every few milliseconds, for at most 20 s.
pub fn fast_poll() -> PollOptions {
    PollOptions::new(Duration::from_secs(20)).with_intervals(Duration::from_millis(2), Duration::from_millis(20))
}

/// The JWT bearer grant the org trusts.
pub fn jwt(server: &SalesforceServer) -> JwtBearerConfig {
    let org = server.lock();
    let token_url = format!("{}/services/oauth2/token", server.url());
    JwtBearerConfig::new(token_url, org.consumer_key.clone(), org.username.clone(), test_key().private_pem.clone())
}

/// Contacts by `Rse_Ext_Id__c`: name, email, score, active mapped; Bulk from 2,000 records.
pub fn config(server: &SalesforceServer) -> SalesforceDestinationConfig {
    SalesforceDestinationConfig::new(jwt(server), "Contact", EXT)
        .with_field("name", "LastName")
        .with_field("email", "Email")
        .with_field("score", "Score__c")
        .with_field("active", "Active__c")
        .with_bulk(SalesforceBulkOptions::default().with_poll(fast_poll()))
}

/// Runner options for the tests: small batches, short waits.
pub fn options() -> SyncOptions {
    SyncOptions::default()
        .with_batch_rows(100)
        .with_linger(Duration::from_millis(2))
        .with_initial_backoff(Duration::from_millis(5))
        .with_max_backoff(Duration::from_millis(50))
}

/// An org, a model of contacts, a state and the destination.
pub struct World {
    pub server: SalesforceServer,
    pub source: MemorySource,
    pub state: MemoryStateStore,
    pub destination: Arc<SalesforceDestination>,
    pub sync_id: String,
}

impl World {
    pub async fn new(rows: Vec<Record>) -> World {
        World::with(rows, |c| c).await
    }

    /// With the configuration `change` makes of [`config`].
    pub async fn with(
        rows: Vec<Record>,
        change: impl FnOnce(SalesforceDestinationConfig) -> SalesforceDestinationConfig,
    ) -> World {
        let server = SalesforceServer::start().await;
        let destination = Arc::new(SalesforceDestination::new(change(config(&server))).unwrap());
        World {
            server,
            source: MemorySource::new(schema(), rows),
            state: MemoryStateStore::new(),
            destination,
            sync_id: unique_id("sf"),
        }
    }

    pub async fn sync(&self, mode: Mode, options: SyncOptions) -> SyncJob {
        SyncJob::builder(self.sync_id.clone())
            .source(self.source.clone())
            .destination(self.destination.clone())
            .state(self.state.clone())
            .mode(mode)
            .options(options)
            .build()
            .await
            .unwrap()
    }

    /// The org's contacts that carry an external id, by it.
    pub fn held(&self) -> BTreeMap<String, Map<String, Json>> {
        let org = self.server.lock();
        org.records
            .values()
            .filter(|r| r.sobject == "Contact")
            .filter_map(|r| Some((ext_text(r.fields.get(EXT)?)?, r.fields.clone())))
            .collect()
    }

    /// Asserts that the org holds exactly the model's rows, each created once.
    pub fn assert_org_equals_source(&self) {
        let held = self.held();
        let rows = self.source.rows();
        assert_eq!(held.len(), rows.len(), "the org holds {} contacts, the model {} rows", held.len(), rows.len());
        let org = self.server.lock();
        for row in rows {
            let id = row.values[0].as_i64().unwrap().to_string();
            let fields = held.get(&id).unwrap_or_else(|| panic!("contact {id} missing"));
            assert_eq!(fields["LastName"], Json::from(row.values[1].as_str().unwrap()), "{id}");
            match &row.values[2] {
                Value::String(email) => assert_eq!(fields["Email"], Json::from(email.as_str()), "{id}"),
                _ => assert_eq!(fields.get("Email"), Some(&Json::Null), "{id}"),
            }
            let Value::Float(score) = row.values[3] else { panic!("score") };
            assert_eq!(fields["Score__c"].as_f64(), Some(score), "{id}");
            assert_eq!(org.creations_of("Contact", EXT, &id), 1, "contact {id} was created more than once");
        }
    }

    /// The memo the state keeps for key `id`.
    pub fn memo(&self, id: i64) -> Option<String> {
        let entry = self.state.snapshot(&self.sync_id).into_iter().find(|e| e.key == key(id))?;
        entry.memo.and_then(|m| m.as_str().map(str::to_owned))
    }

    /// The org's record id of the contact with external id `id`.
    pub fn record_id(&self, id: i64) -> Option<String> {
        let org = self.server.lock();
        org.record_by_ext("Contact", EXT, &id.to_string()).and_then(|r| r.fields["Id"].as_str().map(str::to_owned))
    }
}

/// An external id as the org matches it.
pub fn ext_text(value: &Json) -> Option<String> {
    match value {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
