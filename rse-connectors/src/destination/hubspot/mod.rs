//! HubSpot CRM objects: contacts, companies and custom objects, upserted in batches by a
//! unique property, archived by record id.
//!
//! # What is sent
//! Inserts and updates of a batch go in one `POST /crm/objects/{version}/{object}/batch/upsert`
//! (at most 100 inputs): `{"idProperty": "email", "id": "ada@example.com", "properties":
//! {…}, "objectWriteTraceId": "<idempotency key>"}`. `id` is the value of the id property
//! (the configured [`id_property`](HubSpotDestinationConfig::id_property), `email` for
//! contacts), taken from the field mapped to it, trimmed and lower-cased for `email`
//! (HubSpot matches it exactly: `Ada@Example.com` would be another contact). Properties
//! are written as [`ValueStyle::HubSpot`] says: every value a string, a null clears the
//! property (`""`), dates `YYYY-MM-DD`, timestamps `2024-05-01T12:00:00.000Z`, booleans
//! `true`/`false`, lists of strings `a;b;c`.
//!
//! Two changes of a batch that resolve to one record (two rows with one e-mail address)
//! are refused but the first ([`BatchIdentities`](crate::saas::BatchIdentities)): HubSpot
//! refuses such a batch whole.
//!
//! # What comes back
//! Each input carries its own `objectWriteTraceId` (the change's idempotency key), which
//! makes HubSpot answer per input: HTTP 207 with `results` and `errors` (`v3`, `2026-03`),
//! or HTTP 200 with `errors` and `numErrors` (`2026-09`). A result is an applied change:
//! `new` says created or updated ([`Receipt`](rse_core::Receipt), counted in the report),
//! and its record `id` is kept as the key's memo. An error is that change's rejection,
//! with HubSpot's category, codes and property names and its message without values
//! ([`classify`]); the rest of the batch is applied, and a rejected change is sent again
//! on each later run until HubSpot takes it (a validation rule lifted, the data fixed). A
//! whole-batch 400 is an invalid batch the runner bisects down to the changes HubSpot
//! refuses.
//!
//! # Deletes (Mirror mode)
//! A delete archives the record by the id kept in its key's memo, in one `batch/archive`
//! call per batch.
//!
//! A key can have no memo while its record exists: its write landed, the process died (or
//! the answer was lost) before the acknowledgement carrying the record id was committed,
//! and the key left the model before a run sent its row again. The runner plans deletes
//! only for keys this sync delivered or sent a change for, so a record found under the
//! key's own identity was written (created, or overwritten by an upsert) by this sync. Such
//! deletes find their records in one `POST …/batch/read` call per batch, then go with the
//! batch's other archives:
//! 1. by the id property, when a key column is mapped to it (a unique `customer_id` mapped
//!    from the key column `customer_id`; contacts keyed by their e-mail address);
//! 2. else by the [`key_property`](HubSpotDestinationConfig::key_property), when one is
//!    configured: a unique text property the destination writes with every upsert,
//!    holding the key's value;
//! 3. else nothing identifies the record from the key: the delete is applied without a
//!    call, with a warning naming the key's hash. **This is the one case where a Mirror
//!    sync may leave a record behind** (say contacts matched by e-mail, keyed by a customer
//!    id): configure a `key_property` to close it.
//!
//! A value no record holds is nothing to archive. Nothing is archived by a guess (an
//! e-mail address that is not the key, a search), which could remove a record someone
//! else created; nor is a record an upsert of the same batch wrote, which belongs to that
//! upsert's key now. Finding records needs the object's read scope (e.g.
//! `crm.objects.contacts.read`) besides its write scope.
//!
//! With a key property, a row whose id property's value changes (a new e-mail address) is
//! refused by HubSpot: upserting by the new value would create a second record holding the
//! key, which the record of the old value holds. (Without one, the new value makes a new
//! record, and the old one stays behind.)
//!
//! # Quota
//! The runner paces calls to the account's burst limit ([`BurstLimit`], e.g. 190 per 10 s):
//! its limiter lets through a little less than the limit (the limit less the calls that may
//! be in flight), so that no rolling window of the limit's length ever holds more calls than
//! allowed. Every answer's `X-HubSpot-RateLimit-*` headers go back to the runner as
//! [`QuotaFeedback`](rse_core::QuotaFeedback) (the rolling window; the daily allowance,
//! resetting at midnight in the account's time zone, [`UtcOffset`]): it waits when the
//! window is spent and ends the run as `QuotaExhausted` when the day's allowance is (less
//! [`quota_reserve`](rse_core::SyncOptions::quota_reserve)). A 429 for the rolling window
//! waits for the window; a 429 `DAILY` ends the run cleanly, every unsent change kept.
//! A batch holding both upserts and deletes makes two or three calls (upserts, then the
//! records of deletes without a record id read, then archives); when a later one fails,
//! the whole batch is sent again, which every call is safe to repeat.
//!
//! # Authentication
//! A private-app token (`{"type": "bearer", "token": {"env": "HUBSPOT_TOKEN"}}`) or an
//! OAuth app's refresh token (`{"type": "oauth_refresh", "token_url":
//! "https://api.hubapi.com/oauth/v1/token", …}`), refreshed before its `expires_in` runs
//! out and once after a 401 ([`saas::auth`](crate::saas::auth)). A static token that is
//! refused ends the run as `Unauthorized`, every unsent change kept.
//!
//! # Example
//! ```no_run
//! use rse_connectors::{HubSpotDestination, HubSpotDestinationConfig};
//! use rse_connectors::hubspot::BurstLimit;
//!
//! let config = HubSpotDestinationConfig::contacts(rse_connectors::Secret::from_env("HUBSPOT_TOKEN")?)
//!     .with_field("email", "email")
//!     .with_field("first_name", "firstname")
//!     .with_field("plan", "plan_tier")
//!     .with_rate_limit(BurstLimit::per_ten_seconds(190));
//! let contacts = HubSpotDestination::new(config)?;
//! # drop(contacts);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Follows /work/shared/contracts/saas-contracts.md §1 and HubSpot's "CRM objects" (batch
//! upsert, batch read by unique property value, batch archive), "Properties", "API usage guidelines and limits" and "OAuth"
//! documentation.

mod check;
pub mod classify;
pub mod config;
mod quota;
mod resolve;
mod write;

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use reqwest::Url;
use rse_core::{
    ChangeBatch, Destination, DestinationCapabilities, DestinationError, Op, RateLimit, Schema, WriteOutcome,
};

pub use config::{ApiVersion, BurstLimit, DEFAULT_BASE_URL, HubSpotDestinationConfig, MAX_BATCH_INPUTS, UtcOffset};

use self::classify::HubSpotClassifier;
use crate::saas::{BaseUrl, BoundFieldMap, SaasClient, ValueStyle};

/// Calls the runner's limiter lets go at once after a quiet spell.
const BURST: u32 = 2;

/// Where the calls go.
#[derive(Debug, Clone)]
struct Urls {
    upsert: Url,
    read: Url,
    archive: Url,
    properties: Url,
}

/// HubSpot CRM records of one object type; see the [module docs](self).
pub struct HubSpotDestination {
    name: String,
    config: HubSpotDestinationConfig,
    id_property: String,
    id_field: String,
    lowercase_id: bool,
    client: SaasClient,
    urls: Urls,
    classifier: HubSpotClassifier,
    /// The field map bound to the last schema seen.
    bound: Mutex<Option<(Arc<Schema>, Arc<BoundFieldMap>)>>,
}

impl std::fmt::Debug for HubSpotDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubSpotDestination")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl HubSpotDestination {
    /// A destination as `config` describes; nothing is sent until the first check or
    /// write.
    ///
    /// # Errors
    /// [`DestinationError::Fatal`] naming the setting at fault (see
    /// [`HubSpotDestinationConfig::validate`]) or the credentials' (see
    /// [`SaasClient::new`]).
    pub fn new(config: HubSpotDestinationConfig) -> Result<Self, DestinationError> {
        config.validate()?;
        let client = SaasClient::new(config.display_name(), &config.auth, config.client.clone())?;
        Self::from_client(config, client)
    }

    /// A destination sending through `client`, which the host already holds (its
    /// credentials shared with other destinations); `config.auth` and `config.client` are
    /// not used.
    ///
    /// # Errors
    /// As [`new`](Self::new), for the settings.
    pub fn from_client(config: HubSpotDestinationConfig, client: SaasClient) -> Result<Self, DestinationError> {
        config.validate()?;
        let name = config.display_name();
        let base = BaseUrl::parse(&name, &config.base_url)?;
        let objects = config.api_version.objects_path(&config.object);
        let join = |path: &str| base.join(path);
        let urls = Urls {
            upsert: join(&format!("{objects}/batch/upsert"))?,
            read: join(&format!("{objects}/batch/read"))?,
            archive: join(&format!("{objects}/batch/archive"))?,
            properties: join(&config.api_version.properties_path(&config.object))?,
        };
        let id_property = config.id_property().unwrap_or_default().to_owned();
        let id_field = config::field_of(&config.fields, &id_property).unwrap_or_default();
        Ok(Self {
            lowercase_id: config.lowercases_id(),
            classifier: HubSpotClassifier { offset: config.account_utc_offset },
            name,
            id_property,
            id_field,
            client,
            urls,
            config,
            bound: Mutex::new(None),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &HubSpotDestinationConfig {
        &self.config
    }

    /// The client the calls go through.
    pub fn client(&self) -> &SaasClient {
        &self.client
    }

    /// The field map bound to `schema`, bound once per schema.
    fn bound(&self, schema: &Arc<Schema>) -> Result<Arc<BoundFieldMap>, DestinationError> {
        let mut cached = self.bound.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((known, bound)) = cached.as_ref()
            && (Arc::ptr_eq(known, schema) || **known == **schema)
        {
            return Ok(Arc::clone(bound));
        }
        let bound = Arc::new(self.config.fields.bind(schema, ValueStyle::HubSpot, &self.name)?);
        *cached = Some((Arc::clone(schema), Arc::clone(&bound)));
        Ok(bound)
    }
}

/// The runner's pacing for `limit` with up to `concurrency` calls in flight: a GCRA whose
/// busiest rolling window of `limit.per` holds at most `limit.requests - concurrency` calls
/// (its rate plus its burst less one), so the calls in flight when an answer reports the
/// window never find it spent.
pub fn pacing(limit: BurstLimit, concurrency: usize) -> RateLimit {
    let concurrency = u32::try_from(concurrency).unwrap_or(u32::MAX);
    let requests = limit.requests.saturating_sub(concurrency.saturating_add(BURST - 1)).max(1);
    RateLimit { requests, per: limit.per, burst: BURST }
}

#[async_trait]
impl Destination for HubSpotDestination {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> DestinationCapabilities {
        DestinationCapabilities::new([Op::Insert, Op::Update, Op::Delete])
            .with_max_batch_rows(self.config.max_batch_rows)
            .with_max_concurrency(self.config.max_concurrency)
            .with_rate_limit(Some(pacing(self.config.rate_limit, self.config.max_concurrency)))
            .with_memos(true)
            .with_record_id_memos(true)
    }

    /// Checks the field map against `schema`: every field exists and has a type a HubSpot
    /// property holds.
    fn check_schema(&self, schema: &Schema) -> Result<(), DestinationError> {
        self.config.fields.bind(schema, ValueStyle::HubSpot, &self.name).map(drop)
    }

    /// Reads the object's property definitions: the token is accepted (a missing scope is
    /// named), the id property exists and holds unique values, the key property (when one
    /// is configured) exists, takes writes and holds unique values, and every mapped
    /// property exists and takes writes (those that do not are named). A missing write or
    /// read scope shows at the first call that needs it, which names it.
    async fn check(&self) -> Result<(), DestinationError> {
        self.check_properties().await
    }

    async fn write(&self, batch: &ChangeBatch) -> Result<WriteOutcome, DestinationError> {
        self.write_batch(batch).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn pacing_leaves_room_for_the_calls_in_flight() {
        for (limit, concurrency) in [(190, 4), (100, 4), (250, 8), (10, 1)] {
            let rate = pacing(BurstLimit::per_ten_seconds(limit), concurrency);
            // A GCRA's busiest window of its period holds its rate plus its burst less one.
            let busiest = rate.requests + rate.burst - 1;
            assert_eq!(busiest as usize, limit as usize - concurrency, "{limit}/{concurrency}");
            assert_eq!(rate.per, Duration::from_secs(10));
        }
        assert_eq!(pacing(BurstLimit::per_ten_seconds(3), 4).requests, 1);
    }
}
