//! What the Meta destination tests share: people as rows, the identifiers Meta must hold
//! for them (hashed here independently of the destination), and syncs over an in-memory
//! source.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rse_connectors::audience::AudienceFields;
use rse_connectors::{MetaAudienceConfig, MetaAudienceDestination};
use rse_core::memory::{MemorySource, MemoryStateStore};
use rse_core::*;
use sha2::{Digest, Sha256};

use crate::meta_server::{AUDIENCE, Meta, TOKEN};

/// id (key), email, phone, customer (the advertiser's id), consent.
pub fn schema() -> Arc<Schema> {
    Schema::new(
        vec![
            Field::required("id", DataType::Int),
            Field::new("email", DataType::String),
            Field::new("phone", DataType::String),
            Field::new("customer", DataType::String),
            Field::new("consent", DataType::Bool),
        ],
        &["id"],
    )
    .unwrap()
    .into_arc()
}

/// Person `id` with e-mail address `email` (as the warehouse holds it: mixed case, spaces).
pub fn person_with(id: i64, email: &str, consent: bool) -> Record {
    Record::new(vec![
        Value::Int(id),
        Value::String(email.to_owned()),
        Value::String(format!("+1 (555) 010-{id:04}")),
        Value::String(format!("C-{id}")),
        Value::Bool(consent),
    ])
}

pub fn email(id: i64) -> String {
    format!(" User{id}@Example.com")
}

pub fn person(id: i64) -> Record {
    person_with(id, &email(id), true)
}

pub fn people(range: std::ops::RangeInclusive<i64>) -> Vec<Record> {
    range.map(person).collect()
}

pub fn sha(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// What Meta must hold for `record` (nothing without consent), as `KEY:value`: the e-mail
/// trimmed and lower-cased, the phone as digits with its country code and no `+`, both
/// hashed; the customer id in clear.
pub fn identifiers(record: &Record) -> BTreeSet<String> {
    let text = |i: usize| match &record.values[i] {
        Value::String(s) => s.clone(),
        other => panic!("{other:?}"),
    };
    if record.values[4] != Value::Bool(true) {
        return BTreeSet::new();
    }
    let digits: String = text(2).chars().filter(char::is_ascii_digit).collect();
    [
        format!("EMAIL:{}", sha(&text(1).trim().to_lowercase())),
        format!("PHONE:{}", sha(&digits)),
        format!("EXTERN_ID:{}", text(3)),
    ]
    .into_iter()
    .collect()
}

/// What Meta must hold for a segment of `records`.
pub fn expected(records: &[Record]) -> BTreeSet<String> {
    records.iter().flat_map(identifiers).collect()
}

pub fn fields() -> AudienceFields {
    AudienceFields::new().email("email").phone("phone").external_id("customer").default_country("US").consent("consent")
}

pub fn config(meta: &Meta) -> MetaAudienceConfig {
    MetaAudienceConfig::new(AUDIENCE, TOKEN, fields()).with_base_url(meta.base_url())
}

pub fn destination(meta: &Meta) -> MetaAudienceDestination {
    MetaAudienceDestination::new(config(meta)).unwrap()
}

pub fn options() -> SyncOptions {
    SyncOptions::default()
        .with_batch_rows(25)
        .with_linger(Duration::from_millis(5))
        .with_max_deletes(None)
        .with_initial_backoff(Duration::from_millis(20))
        .with_max_backoff(Duration::from_millis(200))
}

/// A Mirror sync of `rows` into `destination` with an in-memory state.
pub struct World {
    pub source: MemorySource,
    pub state: MemoryStateStore,
    pub job: SyncJob,
}

impl World {
    pub async fn new(rows: Vec<Record>, destination: MetaAudienceDestination, options: SyncOptions) -> World {
        let source = MemorySource::new(schema(), rows);
        let state = MemoryStateStore::new();
        let job = SyncJob::builder("audience")
            .source(source.clone())
            .destination(destination)
            .state(state.clone())
            .mode(Mode::Mirror)
            .options(options)
            .build()
            .await
            .unwrap();
        World { source, state, job }
    }

    pub async fn run(&self) -> SyncReport {
        self.job.run().await.unwrap()
    }

    /// The audience figures of a run.
    pub fn figures(report: &SyncReport) -> AudienceReport {
        report.audience.clone().unwrap_or_else(|| panic!("no audience figures in {report}"))
    }
}
