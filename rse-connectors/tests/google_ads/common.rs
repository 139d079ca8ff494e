//! What the Google Ads destination tests share: a members model, the identifier keys the
//! contract server's list must hold for it, and syncs over an in-memory source.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rse_connectors::audience::AudienceFields;
use rse_connectors::google::ads::{GoogleAdsConfig, GoogleAdsDestination};
use rse_connectors::saas::SaasAuthConfig;
use rse_core::memory::{MemorySource, MemoryStateStore};
use rse_core::*;
use sha2::{Digest, Sha256};

use crate::google_ads_server::{CUSTOMER_ID, DEVELOPER_TOKEN, GoogleAds, TOKEN, USER_LIST_ID};

pub fn sha(v: &str) -> String {
    Sha256::digest(v.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// id (key), email, phone, first_name, last_name, country, zip, mobile_id, consent.
pub fn schema() -> Arc<Schema> {
    Schema::new(
        vec![
            Field::required("id", DataType::Int),
            Field::new("email", DataType::String),
            Field::new("phone", DataType::String),
            Field::new("first_name", DataType::String),
            Field::new("last_name", DataType::String),
            Field::new("country", DataType::String),
            Field::new("zip", DataType::String),
            Field::new("mobile_id", DataType::String),
            Field::new("consent", DataType::Bool),
        ],
        &["id"],
    )
    .unwrap()
    .into_arc()
}

/// A member as the warehouse holds it.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: i64,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// (first, last, country, zip)
    pub address: Option<(String, String, String, String)>,
    pub mobile_id: Option<String>,
    pub consent: Option<bool>,
}

impl Member {
    /// Member `id`: an e-mail address (mixed case, as typed), a phone number for even ids,
    /// an address for ids divisible by 3, consent granted.
    pub fn new(id: i64) -> Member {
        Member {
            id,
            email: Some(format!(" Member{id}@Example.com")),
            phone: (id % 2 == 0).then(|| format!("+1 415 555 {:04}", id % 10_000)),
            address: (id % 3 == 0)
                .then(|| (format!("First{id}"), "Lovelace".to_owned(), "us".to_owned(), "94045".to_owned())),
            mobile_id: None,
            consent: Some(true),
        }
    }

    pub fn with_email(mut self, email: &str) -> Member {
        self.email = Some(email.to_owned());
        self
    }

    pub fn record(&self) -> Record {
        let s = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
        let a = |f: fn(&(String, String, String, String)) -> &String| {
            self.address.as_ref().map_or(Value::Null, |a| Value::String(f(a).clone()))
        };
        Record::new(vec![
            Value::Int(self.id),
            s(&self.email),
            s(&self.phone),
            a(|a| &a.0),
            a(|a| &a.1),
            a(|a| &a.2),
            a(|a| &a.3),
            s(&self.mobile_id),
            self.consent.map_or(Value::Null, Value::Bool),
        ])
    }

    /// The identifier keys the list holds for this member (none without consent).
    pub fn keys(&self) -> BTreeSet<String> {
        let mut keys = BTreeSet::new();
        if self.consent == Some(false) {
            return keys;
        }
        if let Some(e) = &self.email {
            keys.insert(format!("email:{}", sha(&e.trim().to_lowercase())));
        }
        if let Some(p) = &self.phone {
            keys.insert(format!("phone:{}", sha(&p.replace(' ', ""))));
        }
        if let Some((first, last, country, zip)) = &self.address {
            keys.insert(format!(
                "address:{}:{}:{}:{zip}",
                sha(&first.to_lowercase()),
                sha(&last.to_lowercase()),
                country.to_uppercase()
            ));
        }
        if let Some(m) = &self.mobile_id {
            keys.insert(format!("mobile:{m}"));
        }
        keys
    }
}

pub fn records(members: &[Member]) -> Vec<Record> {
    members.iter().map(Member::record).collect()
}

/// Every key the list must hold for `members`.
pub fn expected(members: &[Member]) -> BTreeSet<String> {
    members.iter().flat_map(Member::keys).collect()
}

pub fn members(range: std::ops::RangeInclusive<i64>) -> Vec<Member> {
    range.map(Member::new).collect()
}

pub fn key(id: i64) -> Key {
    Key::from_values(&[Value::Int(id)])
}

pub fn audience() -> AudienceFields {
    AudienceFields::new()
        .email("email")
        .phone("phone")
        .first_name("first_name")
        .last_name("last_name")
        .country("country")
        .postal_code("zip")
        .mobile_id("mobile_id")
        .ad_user_data_consent("consent")
}

/// The list of `ga` with the server's static token, polling fast.
pub fn config_at(base_url: String) -> GoogleAdsConfig {
    GoogleAdsConfig::new(
        SaasAuthConfig::Bearer { token: TOKEN.into() },
        DEVELOPER_TOKEN,
        CUSTOMER_ID,
        USER_LIST_ID,
        audience(),
    )
    .with_base_url(base_url)
    .with_poll_interval(Duration::from_millis(2))
    .with_job_wait(Duration::from_secs(20))
}

pub fn config(ga: &GoogleAds) -> GoogleAdsConfig {
    config_at(ga.base_url())
}

pub fn destination(ga: &GoogleAds) -> GoogleAdsDestination {
    GoogleAdsDestination::new(config(ga)).unwrap()
}

pub fn options() -> SyncOptions {
    SyncOptions::default().with_batch_rows(100).with_linger(Duration::from_millis(5)).with_max_deletes(None)
}

/// The list's identifier keys.
pub fn held(ga: &GoogleAds) -> BTreeSet<String> {
    ga.user_list(USER_LIST_ID)
}

/// A sync of `members` into `destination` with an in-memory state.
pub struct World {
    pub source: MemorySource,
    pub state: MemoryStateStore,
    pub job: SyncJob,
}

impl World {
    pub async fn new(members: &[Member], destination: GoogleAdsDestination, options: SyncOptions) -> World {
        let source = MemorySource::new(schema(), records(members));
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

    pub fn set(&self, members: &[Member]) {
        self.source.set_rows(records(members));
    }
}
