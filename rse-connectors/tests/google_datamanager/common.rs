//! What the Data Manager destination tests share: a members model, the identifiers Google
//! must end up holding for it, and syncs over an in-memory source.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rse_connectors::audience::AudienceFields;
use rse_connectors::google::datamanager::ProductAccount;
use rse_connectors::saas::SaasAuthConfig;
use rse_connectors::{GoogleDataManagerConfig, GoogleDataManagerDestination};
use rse_core::memory::{MemorySource, MemoryStateStore};
use rse_core::*;
use sha2::{Digest, Sha256};

use crate::datamanager_server::{DataManager, LIST_ID, OPERATING_ACCOUNT, TOKEN};

/// id (key), email, phone, consent (ad user data).
pub fn schema() -> Arc<Schema> {
    Schema::new(
        vec![
            Field::required("id", DataType::Int),
            Field::new("email", DataType::String),
            Field::new("phone", DataType::String),
            Field::new("consent", DataType::Bool),
        ],
        &["id"],
    )
    .unwrap()
    .into_arc()
}

/// The e-mail address of member `id` in generation `g`, as the warehouse holds it.
pub fn email(id: i64, g: u32) -> String {
    if g == 0 { format!("User{id}@Example.com") } else { format!("User{id}.v{g}@Example.com") }
}

/// A US phone number, national format, for members whose id is a multiple of 3.
pub fn phone(id: i64) -> Option<String> {
    (id % 3 == 0).then(|| format!("(415) 555-{:04}", id % 10_000))
}

/// Member `id`, e-mail generation `g`, consent granted.
pub fn member(id: i64, g: u32) -> Record {
    member_with(id, g, true)
}

pub fn member_with(id: i64, g: u32, consent: bool) -> Record {
    Record::new(vec![
        Value::Int(id),
        Value::String(email(id, g)),
        phone(id).map_or(Value::Null, Value::String),
        Value::Bool(consent),
    ])
}

pub fn members(range: std::ops::RangeInclusive<i64>, g: u32) -> Vec<Record> {
    range.map(|id| member(id, g)).collect()
}

pub fn sha(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The server's key of an e-mail address (Google's normal form: trimmed, lower case).
pub fn email_key(email: &str) -> String {
    format!("email:{}", sha(&email.trim().to_lowercase()))
}

/// The identifiers Google must hold for `rows`: each consenting row's e-mail address and,
/// where it has one, its phone number in E.164.
pub fn expected(rows: &[Record]) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for row in rows {
        if row.values[3] != Value::Bool(true) {
            continue;
        }
        if let Value::String(e) = &row.values[1] {
            keys.insert(email_key(e));
        }
        if let Value::String(p) = &row.values[2] {
            let digits: String = p.chars().filter(char::is_ascii_digit).collect();
            keys.insert(format!("phone:{}", sha(&format!("+1{digits}"))));
        }
    }
    keys
}

pub fn key(id: i64) -> Key {
    Key::from_values(&[Value::Int(id)])
}

/// Members of [`LIST_ID`] of `dm`: e-mail and phone (US numbers), consent from `consent`,
/// Terms of Service accepted, statuses polled every 10 ms for up to 5 s.
pub fn config(dm: &DataManager) -> GoogleDataManagerConfig {
    config_at(dm.base_url())
}

pub fn config_at(base_url: String) -> GoogleDataManagerConfig {
    let fields =
        AudienceFields::new().email("email").phone("phone").default_country("US").ad_user_data_consent("consent");
    GoogleDataManagerConfig::new(
        SaasAuthConfig::Bearer { token: TOKEN.into() },
        ProductAccount::google_ads(OPERATING_ACCOUNT),
        LIST_ID,
        fields,
    )
    .with_base_url(base_url)
    .with_terms_of_service_accepted(true)
    .with_status_wait(Duration::from_secs(5), Duration::from_millis(10))
    .with_refresh_clock_margin(Duration::ZERO)
}

pub fn destination(dm: &DataManager) -> GoogleDataManagerDestination {
    GoogleDataManagerDestination::new(config(dm)).unwrap()
}

pub fn options() -> SyncOptions {
    SyncOptions::default().with_batch_rows(1_000).with_linger(Duration::from_millis(5)).with_max_deletes(None)
}

/// A Mirror sync of `source` into a destination built from `config` for each run, with an
/// in-memory state.
pub struct World {
    pub source: MemorySource,
    pub state: MemoryStateStore,
    pub config: GoogleDataManagerConfig,
}

impl World {
    pub fn new(rows: Vec<Record>, config: GoogleDataManagerConfig) -> World {
        World { source: MemorySource::new(schema(), rows), state: MemoryStateStore::new(), config }
    }

    pub async fn job(&self, options: SyncOptions) -> SyncJob {
        SyncJob::builder("audience")
            .source(self.source.clone())
            .destination(GoogleDataManagerDestination::new(self.config.clone()).unwrap())
            .state(self.state.clone())
            .mode(Mode::Mirror)
            .options(options)
            .build()
            .await
            .unwrap()
    }

    pub async fn run(&self) -> SyncReport {
        self.run_with(options()).await
    }

    pub async fn run_with(&self, options: SyncOptions) -> SyncReport {
        self.job(options).await.run().await.unwrap()
    }
}
