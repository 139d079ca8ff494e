//! `SalesforceDestination`: records upserted into one sObject by an external id field,
//! through sObject Collections or, for large batches, Bulk API 2.0; deletes by the record
//! ids this sync kept, or found by the external id the key gives.
//!
//! Written from the Salesforce REST API Developer Guide ("Upsert Records Using sObject
//! Collections", "Delete Records Using sObject Collections", "Get Records Using sObject Rows
//! by External ID", "sObject Describe", "Status Codes and Error Responses"), the Bulk API 2.0 Developer Guide ("Create a Job", "Upload Job
//! Data", "Close or Abort a Job", "Get Job Info", "Get All Jobs", the three result
//! resources), "API Request Limits and Allocations" and Salesforce Help ("OAuth 2.0 JWT
//! Bearer Flow for Server-to-Server Integration", "OAuth 2.0 Refresh Token Flow").
//!
//! # Writes
//! | change | request |
//! |---|---|
//! | insert or update, fewer than `bulk.min_records` (2,000) in the batch | `PATCH /services/data/v66.0/composite/sobjects/{object}/{external_id_field}`, 200 records a request, `allOrNone: false` |
//! | insert or update, at least `bulk.min_records` | one Bulk API 2.0 upsert job (several when the CSV passes 100 MB) |
//! | delete, the key's memo holds a record id | `DELETE /services/data/v66.0/composite/sobjects?ids=…`, 200 ids a request |
//! | delete, no memo, the external id is the key | `GET /services/data/v66.0/sobjects/{object}/{external_id_field}/{value}` (four at a time), then the record found is deleted by id with the others |
//! | delete, no memo, the external id from `external_id_source` | none: applied as it is, with a warning (below) |
//!
//! Every upsert goes **by external id**: sending one again finds the record it created, so a
//! retry or a run after a crash never creates a second record for a key. Each applied upsert
//! hands back the record's id as the key's memo (kept by the state with the key) and whether
//! Salesforce created or updated it (the report's `counts.destination`).
//!
//! **Deletes go by the memo, or else by the key's external id.** A `Mirror` sync deletes
//! what it wrote: the record whose id its own upsert received, kept as the key's memo. A
//! key this sync holds no id for is one whose upsert was sent but never acknowledged:
//! Salesforce may have created the record and the process died (or the answer was lost)
//! before the id was committed, and the key then left the model before a run sent the
//! upsert again (or it was delivered before the state kept memos). The runner plans deletes
//! only for keys this sync delivered or sent a change for, so a record holding such a key's
//! external id is one this sync's upsert wrote (created, or took over by external id). When
//! the external id is the key (`external_id_source` unset, or naming the key's single
//! field), the record is read by it, one request per key, and deleted by its id with the
//! batch's other deletes: 404 `NOT_FOUND` (no record holds it; the upsert never landed)
//! answers the delete as applied; 300 (several records hold it, the field not being unique)
//! refuses the delete, as which one this sync wrote is unknown. A value Salesforce cannot
//! take in a URL path (it answers 404 for some that end like a file name, e.g. `.inc`; `.`
//! and `..` are refused here) is not found that way. When the external id comes from
//! `external_id_source`, a delete carries only the key, not the field: the record cannot be
//! found, the delete is answered as applied without a request and a warning is logged (with
//! the key hashed); the record stays in Salesforce. A record already gone
//! (`ENTITY_IS_DELETED`, `INVALID_CROSS_REFERENCE_KEY`) counts as deleted.
//!
//! # Mapping
//! [`SalesforceDestinationConfig::fields`] maps model fields to sObject fields (API names);
//! the external id comes from the key (or `external_id_source`), sent as text (an integer as
//! its digits), as Bulk CSV sends it too. Values are written in the
//! [`ValueStyle::Salesforce`](crate::saas::ValueStyle) style: booleans and numbers as JSON
//! booleans and numbers, decimals as numbers only when exact (else the record is refused,
//! never rounded), dates `2024-03-01`, datetimes `2024-05-01T12:00:00.000Z` (UTC,
//! milliseconds), lists of text as multi-select picklist values `a;b`, and null clears the
//! field. In Bulk CSV the same texts are written, and a null (or an empty text) is `#N/A`,
//! which clears the field (an empty cell would leave it as it is).
//!
//! # Collections or Bulk
//! A batch with at least `bulk.min_records` upserts goes by Bulk API 2.0: one job per
//! 100 MB of CSV, uploaded, closed, polled with the kit's poller (pauses growing from 1 s to
//! 30 s, at most `bulk.poll.max_wait`), its three result files matched back to the changes
//! by external id (their rows come in any order). The runner's batches are 1,000 changes by
//! default: for an initial load raise [`SyncOptions::batch_rows`](rse_core::SyncOptions)
//! (up to [`max_batch_rows`](SalesforceDestinationConfig::max_batch_rows), 10,000 by
//! default), `batch_bytes`, and `write_timeout` above `bulk.poll.max_wait`. A job that ends
//! `Failed` or `Aborted` answers what it processed; its unprocessed rows are sent again;
//! one that processed nothing fails the write (`Transient`, or `Fatal` when Salesforce
//! refused the job's data).
//!
//! # Errors and limits
//! | answer | what the runner does |
//! |---|---|
//! | 401 `INVALID_SESSION_ID` | nothing: the kit's client fetches a new token (one fetch for all writers) and sends once more; refused again, `Unauthorized` ends the run |
//! | 403 `REQUEST_LIMIT_EXCEEDED` "TotalRequests" | `QuotaExhausted`: the org's daily allowance is spent; the run ends cleanly, the rest goes next run |
//! | 403 `REQUEST_LIMIT_EXCEEDED` "ConcurrentRequests" (or another limit) | `RateLimited`: waits two seconds and sends again |
//! | other 403 | `Unauthorized`: the user lacks a permission |
//! | 400 `JSON_PARSER_ERROR` | `InvalidBatch`: a value does not fit its field's type and fails the whole request; the runner bisects the batch down to the record |
//! | other 400 | `Fatal`, naming the error code: a malformed request |
//! | 404 | `Fatal`: the object, the external id field or the API version is wrong |
//! | 500, 502, 503, 504, a timeout | `Transient`: sent again |
//! | a record's `success: false` | that change rejected with its `statusCode`s and `fields` (`UNABLE_TO_LOCK_ROW` retryable) |
//!
//! Salesforce's messages repeat values (`invalid email address: ada@…`, a validation rule's
//! own text, a duplicate external id): no message goes into an error or a rejection reason,
//! only error codes and field names (a Bulk result's fields only when they are columns the
//! job was sent).
//!
//! Every answer's `Sforce-Limit-Info: api-usage=<used>/<limit>` goes to the runner as the
//! daily quota, so a run stops before the allowance is spent when `SyncOptions::quota_reserve`
//! asks it to leave a share to other integrations. Salesforce counts API requests over a
//! rolling 24 hours: nothing resets at one moment, so the quota is reported without a reset
//! time and a run that stops on it says none; the next scheduled run finds out how much has
//! freed. (The runner counts one request per write; a write makes one per 200 records, or
//! five and more for a Bulk job, so a run can go a few requests past the reserve.)
//!
//! # Crash safety
//! A process killed in the middle of a Bulk write can leave its job `Open` (created, perhaps
//! uploaded, never closed): Salesforce never processes it, and the runner sends its rows
//! again, as their changes are still pending. The first Bulk write of the next process
//! therefore lists the org's ingest jobs and aborts each `Open` upsert job created by the
//! same integration user on the same object and external id field. Bulk API 2.0 jobs carry
//! no name or tag to mark them as this destination's: user, object, operation and external
//! id field are what identifies them. Another integration running as the same user on the
//! same object and field could lose a job it is uploading at that moment; it would see it
//! `Aborted` and send again. Set `bulk.abort_stale_jobs` to false to leave open jobs alone.
//! Jobs already closed are left to finish: their upserts are the same ones the runner sends
//! again. Within a process, a write that fails or is abandoned (the runner's
//! `write_timeout`, a cancelled run) aborts the jobs it started, in the background.

pub mod config;

mod api;
mod bulk;
mod bulk_results;
mod check;
mod classify;
mod collections;
mod jobs;
mod limits;
mod lookup;
mod records;
mod write;

use async_trait::async_trait;
use rse_core::{
    ChangeBatch, Destination, DestinationCapabilities, DestinationError, Op, Schema, WriteOutcome, WriteOutcomes,
};

pub use config::{
    DEFAULT_API_VERSION, DEFAULT_BULK_MIN_RECORDS, DEFAULT_MAX_UPLOAD_BYTES, SalesforceBulkOptions,
    SalesforceDestinationConfig,
};

use api::Api;
use jobs::BulkState;
use records::{Plan, Shape};
use write::Write;

use crate::saas::{SaasAuth, SaasClient};

/// Upserts records into a Salesforce sObject by an external id field; see the module docs.
///
/// ```no_run
/// use rse_connectors::saas::JwtBearerConfig;
/// use rse_connectors::{SalesforceDestination, SalesforceDestinationConfig, Secret};
///
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let auth = JwtBearerConfig::new(
///     "https://login.salesforce.com/services/oauth2/token",
///     "3MVG9…consumer key",
///     "integration@example.com",
///     Secret::from_file("/run/secrets/salesforce.pem")?,
/// );
/// let contacts = SalesforceDestination::new(
///     SalesforceDestinationConfig::new(auth, "Contact", "Rse_Ext_Id__c")
///         .with_field("last_name", "LastName")
///         .with_field("email", "Email"),
/// )?;
/// # drop(contacts); Ok(()) }
/// ```
#[derive(Debug)]
pub struct SalesforceDestination {
    name: String,
    api: Api,
    config: SalesforceDestinationConfig,
    bulk_state: BulkState,
}

impl SalesforceDestination {
    /// A destination as `config` says, with its own HTTP client. Nothing is sent until
    /// [`check`](Destination::check) or the first write.
    ///
    /// # Errors
    /// [`DestinationError::Fatal`] naming the setting at fault: a name that is not an API
    /// name, an API version before 46.0, unusable credentials (a private key that is not an
    /// RSA key), an `instance_url` that is not a URL.
    pub fn new(config: SalesforceDestinationConfig) -> Result<Self, DestinationError> {
        let name = Self::name_of(&config);
        let version = config.validate()?;
        let client = SaasClient::new(name.clone(), &config.auth, config.client.clone())?;
        Ok(Self::build(name, version, client, config))
    }

    /// A destination writing through `http`, a client the host already holds (build it
    /// with [`build_http_client`](crate::saas::build_http_client): it must not follow
    /// redirects).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn from_client(http: reqwest::Client, config: SalesforceDestinationConfig) -> Result<Self, DestinationError> {
        let name = Self::name_of(&config);
        let version = config.validate()?;
        let auth = SaasAuth::from_config(&config.auth, &http)?;
        let client = SaasClient::from_parts(name.clone(), http, auth, config.client.clone());
        Ok(Self::build(name, version, client, config))
    }

    fn name_of(config: &SalesforceDestinationConfig) -> String {
        format!("salesforce:{}", config.name.as_deref().unwrap_or(&config.object))
    }

    fn build(name: String, version: String, client: SaasClient, config: SalesforceDestinationConfig) -> Self {
        let api = Api { client, version, fallback_instance: config.instance_url.clone() };
        Self { name, api, config, bulk_state: BulkState::default() }
    }

    /// The configuration.
    pub fn config(&self) -> &SalesforceDestinationConfig {
        &self.config
    }

    /// The client, with its credentials (e.g. to count token fetches).
    pub fn client(&self) -> &SaasClient {
        &self.api.client
    }

    fn shape(&self, schema: &Schema) -> Result<Shape, DestinationError> {
        let config = &self.config;
        Shape::bind(&config.fields, config.external_id_source.as_deref(), &config.external_id_field, schema, &self.name)
    }
}

#[async_trait]
impl Destination for SalesforceDestination {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> DestinationCapabilities {
        DestinationCapabilities::new([Op::Insert, Op::Update, Op::Delete])
            .with_max_batch_rows(self.config.max_batch_rows)
            // Bulk splits a batch into uploads of `bulk.max_upload_bytes`; Collections sends
            // 200 records a request.
            .with_max_batch_bytes(1 << 30)
            .with_max_concurrency(self.config.max_concurrency)
            .with_memos(true)
            .with_record_id_memos(true)
    }

    /// Checks the field map and the external id source against `schema`: every field in
    /// the model, of a type Salesforce takes; the external id text or an integer (and the
    /// key a single field when it is the source); the external id field not mapped as well.
    fn check_schema(&self, schema: &Schema) -> Result<(), DestinationError> {
        self.shape(schema).map(|_| ())
    }

    /// Fetches a token, then reads the sObject's describe: the external id field must be
    /// marked External ID, and every mapped field createable and updateable; all that are
    /// not are named at once.
    async fn check(&self) -> Result<(), DestinationError> {
        let config = &self.config;
        check::check(&self.api, &config.object, &config.external_id_field, &config.fields).await
    }

    async fn write(&self, batch: &ChangeBatch) -> Result<WriteOutcome, DestinationError> {
        let mut outcomes = WriteOutcomes::new(batch.len());
        let shape = self.shape(&batch.schema)?;
        let plan = Plan::of(&shape, batch, &mut outcomes, &self.config.object);
        if plan.deletes.is_empty() && plan.lookups.is_empty() && plan.upserts.is_empty() {
            return outcomes.finish(&self.name);
        }
        let mut write = Write {
            api: &self.api,
            session: self.api.session().await?,
            object: &self.config.object,
            shape: &shape,
            batch,
            bulk: &self.config.bulk,
            bulk_state: &self.bulk_state,
            outcomes,
            usage: Default::default(),
            acknowledged: 0,
        };
        let sent = write.send(plan).await;
        write.finish(sent)
    }
}
