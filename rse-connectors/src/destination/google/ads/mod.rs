//! Google Customer Match through the Google Ads API's `OfflineUserDataJobService`: a sync's
//! rows are the members of one Customer Match list, identified by hashed e-mail addresses,
//! phone numbers and addresses, mobile ids and the advertiser's own ids.
//!
//! **For accounts still on it.** Google refuses Customer Match through this API to
//! developer tokens that had not used it before April 2026
//! (`CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE`, which ends the run and says so); those use
//! the Data Manager API destination.
//!
//! # What is sent
//! Each write plans its batch with the audience module ([`plan_batch`](crate::audience::plan_batch)): identifiers
//! normalised and hashed as the Google Ads API matches them ([`GoogleAdsNormalizer`]), the
//! identifiers a member no longer has (an old e-mail address; all of them for a deleted row
//! or withdrawn consent) to remove, and every current identifier of the rest to add. It
//! then runs up to two jobs, because a job may not mix adding and removing
//! (`CONFLICTING_OPERATION`): the removes' job, to its end, then the adds' job. Each job is
//! `offlineUserDataJobs:create` (type `CUSTOMER_MATCH_USER_LIST`), `:addOperations` (one
//! operation per member, its identifiers and consent in one `UserData`, at most
//! [`identifiers_per_request`](GoogleAdsConfig::identifiers_per_request) identifiers per
//! request, partial failure on), `:run`, then a poll of its status (`GoogleAdsService`
//! search) until `SUCCESS` or `FAILED`, at most [`job_wait`](GoogleAdsConfig::job_wait).
//!
//! # What comes back
//! Google names each refused operation by its index (`partialFailureError`,
//! `GoogleAdsFailure.errors[].location`): that member's change is rejected with Google's
//! code and the field at fault (never a value) and sent again on later runs; the rest of
//! the batch is applied once its jobs SUCCEED, each change with the member's identifiers as
//! its memo (what a later change or delete removes). A member withheld for lack of consent
//! is not sent and is counted. Before a change is sent, the runner records with its intent
//! every identifier the member may be left holding (those last sent and those about to be,
//! [`intent_memo`](rse_core::Destination::intent_memo)), so a write whose answer a crash lost
//! still leaves a memo the member's later removal reads. The match-rate range of the adds' job
//! (`operationMetadata.matchRateRange`) is the report's match rate.
//!
//! # Repeats
//! A job's `externalId` is derived from the sync, the job's kind and the batch's changes,
//! so a batch sent again after a crash or a lost answer finds its job
//! (`EXTERNAL_UPDATE_ID_ALREADY_EXISTS`) and continues it instead of making another (see
//! [`job`]). Adding and removing are set operations: a repeat changes nothing. One job runs
//! per list at a time (Google answers `CONCURRENT_MODIFICATION` otherwise): the destination
//! declares a concurrency of one, and waits for a job another writer left running.
//!
//! # Full refresh
//! With [`replace_on_full_resync`](GoogleAdsConfig::replace_on_full_resync), a full resync's
//! first adds' job starts with `removeAll`, so the list holds exactly the segment at the
//! end. A full refresh that is interrupted leaves the list partial (emptied, then part of
//! the segment) until a full resync runs to its end.
//!
//! # Errors
//! `RESOURCE_TEMPORARILY_EXHAUSTED` waits as a rate limit; the developer token's daily
//! operations allowance (`RESOURCE_EXHAUSTED`, a day's `retryDelay`) ends the run as
//! `QuotaExhausted`, every unsent change kept; `CONCURRENT_MODIFICATION` and internal errors
//! are retried; authentication and authorization errors end the run naming the setting to
//! check ([`classify`]).
//!
//! Follows /work/shared/contracts/saas-contracts.md §3a, the v25 protos of
//! `OfflineUserDataJobService`, and Google's "Customer Match" and "API limits" guides.

pub mod api;
pub mod classify;
pub mod config;
pub mod job;
mod payload;
mod write;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderValue;
use rse_core::{
    Change, ChangeBatch, Destination, DestinationCapabilities, DestinationError, DestinationRunReport, Memo, Op,
    RunEnd, RunInfo, Schema, WriteOutcome,
};

pub use classify::GoogleAdsClassifier;
pub use config::{DEFAULT_BASE_URL, GoogleAdsConfig, MAX_IDENTIFIERS_PER_MEMBER, MAX_IDENTIFIERS_PER_REQUEST, SCOPE};

use self::api::{API_VERSION, Api};
use crate::audience::{BoundAudienceFields, GoogleAdsNormalizer};
use crate::saas::{BaseUrl, PollOptions, SaasClient};

/// The longest pause between polls of a job.
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(30);

/// Customer Match through offline user data jobs; see the [module docs](self).
pub struct GoogleAdsDestination {
    name: String,
    config: GoogleAdsConfig,
    api: Api,
    /// The audience fields bound to the last schema seen.
    bound: Mutex<Option<(Arc<Schema>, Arc<BoundAudienceFields>)>>,
    /// A full refresh's `removeAll` is still to be sent (set by `begin_run`).
    replace_pending: Mutex<bool>,
}

impl std::fmt::Debug for GoogleAdsDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleAdsDestination")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl GoogleAdsDestination {
    /// A destination as `config` describes; nothing is sent until the first check or write.
    ///
    /// # Errors
    /// [`DestinationError::Fatal`] naming the setting at fault (see
    /// [`GoogleAdsConfig::validate`]) or the credentials'.
    pub fn new(config: GoogleAdsConfig) -> Result<Self, DestinationError> {
        config.validate()?;
        let client = SaasClient::new(config.display_name(), &config.auth, config.client.clone())?;
        Self::from_client(config, client)
    }

    /// A destination sending through `client`, which the host already holds; `config.auth`
    /// and `config.client` are not used.
    ///
    /// # Errors
    /// As [`new`](Self::new), for the settings.
    pub fn from_client(config: GoogleAdsConfig, client: SaasClient) -> Result<Self, DestinationError> {
        config.validate()?;
        let name = config.display_name();
        let base = BaseUrl::parse(&name, &config.base_url)?.join(&format!("{API_VERSION}/"))?;
        let mut developer_token = HeaderValue::from_str(config.developer_token.expose().trim()).map_err(|_| {
            DestinationError::fatal(format!("{name}: `developer_token` holds characters a header cannot carry"))
        })?;
        developer_token.set_sensitive(true);
        let login_customer_id = config
            .login_customer()?
            .map(|id| HeaderValue::from_str(&id))
            .transpose()
            .map_err(|_| DestinationError::fatal(format!("{name}: `login_customer_id` is not ten digits")))?;
        let api = Api {
            client,
            base,
            customer_id: config.customer()?,
            user_list: config.user_list_resource()?,
            developer_token,
            login_customer_id,
            job_consent: payload::job_consent(config.consent.as_ref()),
        };
        Ok(Self { name, config, api, bound: Mutex::new(None), replace_pending: Mutex::new(false) })
    }

    /// The configuration.
    pub fn config(&self) -> &GoogleAdsConfig {
        &self.config
    }

    /// The client the calls go through.
    pub fn client(&self) -> &SaasClient {
        &self.api.client
    }

    /// The audience fields bound to `schema`, bound once per schema.
    fn bound(&self, schema: &Schema) -> Result<Arc<BoundAudienceFields>, DestinationError> {
        let mut cached = self.bound.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((known, bound)) = cached.as_ref()
            && (std::ptr::eq(known.as_ref(), schema) || **known == *schema)
        {
            return Ok(Arc::clone(bound));
        }
        let bound = Arc::new(self.bind(schema)?);
        *cached = Some((Arc::new(schema.clone()), Arc::clone(&bound)));
        Ok(bound)
    }

    fn bind(&self, schema: &Schema) -> Result<BoundAudienceFields, DestinationError> {
        self.config.audience.bind(schema)
    }

    fn poll_options(&self) -> PollOptions {
        let min = self.config.poll_interval;
        PollOptions::new(self.config.job_wait).with_intervals(min, MAX_POLL_INTERVAL.max(min))
    }

    fn replace_pending(&self) -> bool {
        *self.replace_pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn replace_done(&self) {
        *self.replace_pending.lock().unwrap_or_else(PoisonError::into_inner) = false;
    }
}

#[async_trait]
impl Destination for GoogleAdsDestination {
    fn name(&self) -> &str {
        &self.name
    }

    /// Inserts, updates and deletes of members; memos (the identifiers sent); one write at
    /// a time, since two jobs may not run on one list at once.
    fn capabilities(&self) -> DestinationCapabilities {
        DestinationCapabilities::new([Op::Insert, Op::Update, Op::Delete])
            .with_max_batch_rows(self.config.max_batch_rows)
            .with_max_concurrency(1)
            .with_memos(true)
    }

    /// Checks that the audience fields name columns of `schema`.
    fn check_schema(&self, schema: &Schema) -> Result<(), DestinationError> {
        self.bind(schema).map(drop)
    }

    /// Reads the list (a search): the credentials, the developer token, the customer and
    /// the list itself are accepted. Writes nothing.
    async fn check(&self) -> Result<(), DestinationError> {
        match self.api.user_list_name().await? {
            Some(_) => Ok(()),
            None => Err(DestinationError::fatal(format!(
                "{}: user list `{}` was not found in account {}; check `user_list` (a Customer Match list) and `customer_id`",
                self.name, self.api.user_list, self.api.customer_id
            ))),
        }
    }

    /// Every identifier the member may be left holding: those last sent and those about to
    /// be.
    fn intent_memo(&self, schema: &Schema, change: &Change) -> Option<Memo> {
        let fields = self.bound(schema).ok()?;
        crate::audience::intent_memo(&fields, &GoogleAdsNormalizer, change)
    }

    async fn begin_run(&self, run: &RunInfo) -> Result<(), DestinationError> {
        *self.replace_pending.lock().unwrap_or_else(PoisonError::into_inner) =
            run.full_resync && self.config.replace_on_full_resync;
        Ok(())
    }

    /// A full refresh whose run sent no member still empties the list, when every change
    /// was delivered.
    async fn finish_run(&self, run: &RunInfo, end: &RunEnd) -> Result<DestinationRunReport, DestinationError> {
        if !self.replace_pending() {
            return Ok(DestinationRunReport::default());
        }
        self.replace_done();
        if !end.delivered_all {
            return Ok(DestinationRunReport::default());
        }
        self.replace_only(run).await
    }

    async fn write(&self, batch: &ChangeBatch) -> Result<WriteOutcome, DestinationError> {
        self.write_batch(batch).await
    }
}
