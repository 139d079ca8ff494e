//! Shared fixtures for the integration tests: a customers model and sync builders.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod audience;
pub mod checks;

use std::sync::Arc;

use rse_core::memory::{MemoryDestination, MemorySource, MemoryStateStore};
use rse_core::{DataType, Destination, Field, Key, Mode, Record, Schema, SyncBuilder, SyncJob, SyncOptions, Value};

/// id (int key), email, churn_score, updated_at (timestamp micros).
pub fn customers_schema() -> Arc<Schema> {
    Schema::new(
        vec![
            Field::required("id", DataType::Int),
            Field::new("email", DataType::String),
            Field::new("churn_score", DataType::Float),
            Field::new("updated_at", DataType::Timestamp),
        ],
        &["id"],
    )
    .unwrap()
    .into_arc()
}

pub fn customer(id: i64, score: f64) -> Record {
    customer_at(id, score, 1_000)
}

pub fn customer_at(id: i64, score: f64, updated_at: i64) -> Record {
    Record::new(vec![
        Value::Int(id),
        Value::String(format!("user{id}@example.com")),
        Value::Float(score),
        Value::Timestamp(updated_at),
    ])
}

pub fn customers(n: i64) -> Vec<Record> {
    (1..=n).map(|i| customer(i, i as f64 / 100.0)).collect()
}

pub fn key(id: i64) -> Key {
    Key::from_values(&[Value::Int(id)])
}

pub fn score_of(r: &Record) -> f64 {
    match r.values[2] {
        Value::Float(f) => f,
        _ => panic!("score is a float"),
    }
}

pub struct World {
    pub source: MemorySource,
    pub destination: MemoryDestination,
    pub state: MemoryStateStore,
}

impl World {
    pub fn new(rows: Vec<Record>) -> Self {
        Self {
            source: MemorySource::new(customers_schema(), rows),
            destination: MemoryDestination::new(),
            state: MemoryStateStore::new(),
        }
    }

    /// A world whose destination commits the state with its rows (exactly-once).
    pub fn exactly_once(rows: Vec<Record>) -> Self {
        let state = MemoryStateStore::new();
        Self {
            source: MemorySource::new(customers_schema(), rows),
            destination: MemoryDestination::new().with_state_store(state.clone()),
            state,
        }
    }

    pub async fn sync(&self, mode: Mode, options: SyncOptions) -> SyncJob {
        self.builder(self.destination.clone(), options).mode(mode).build().await.unwrap()
    }

    /// An upsert sync of this world's source and state into `destination`.
    pub async fn sync_to(&self, destination: impl Destination + 'static, options: SyncOptions) -> SyncJob {
        self.builder(destination, options).build().await.unwrap()
    }

    /// A sync of this world's source and state into `destination`, in `mode`.
    pub async fn sync_mode_to(
        &self,
        destination: impl Destination + 'static,
        mode: Mode,
        options: SyncOptions,
    ) -> SyncJob {
        self.builder(destination, options).mode(mode).build().await.unwrap()
    }

    fn builder(&self, destination: impl Destination + 'static, options: SyncOptions) -> SyncBuilder {
        SyncJob::builder("customers")
            .source(self.source.clone())
            .destination(destination)
            .state(self.state.clone())
            .options(options)
    }
}

/// The source's rows keyed as the destination keys them.
pub fn by_key(rows: &[Record]) -> std::collections::BTreeMap<Key, Record> {
    let schema = customers_schema();
    rows.iter().map(|r| (r.key(&schema).unwrap(), r.clone())).collect()
}
