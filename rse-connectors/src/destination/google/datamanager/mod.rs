//! Google Customer Match through the Data Manager API: a sync's rows are the members of one
//! Customer Match user list, identified by hashed e-mail addresses, phone numbers and
//! addresses, and by mobile advertising ids.
//!
//! # What is sent
//! Each batch is planned by the [audience module](crate::audience) with the
//! [`GoogleDataManagerNormalizer`] (Google's normalisation, SHA-256, lowercase hex): the
//! identifiers a member no longer has (read from its key's memo: all of them for a deleted
//! row or withdrawn consent), then every identifier it has now. Removals go first, in
//! `POST /v1/audienceMembers:remove`, then additions in `POST /v1/audienceMembers:ingest`,
//! each with `encoding: HEX`, the user list as the one destination (operating account,
//! optional login account, `productDestinationId`), the Terms of Service acceptance and the
//! configured request-level consent (ingest). A request carries one data type: user data
//! (e-mail addresses, phone numbers, and an address when its given name, family name,
//! country and postal code are all known) or mobile ids, so a member with both is sent
//! twice, once in each; and at most 10,000 members. A member's consent columns, when mapped,
//! go with it as its `consent`; a member without the consent they require is not sent (and
//! loses what it had), counted in the report as withheld.
//!
//! Adding an identifier the list holds, or removing one it lacks, changes nothing, so a
//! batch sent again (after a timeout, a lost answer, a crash) is harmless; the runner
//! records each member's identifiers before the write ([`intent_memo`]: old ∪ new), so an
//! identifier whose upload's answer was lost is still removed later.
//!
//! # What comes back
//! Google answers each request with a `requestId` only: processing is asynchronous, and
//! its results are counts per request (`requestStatus:retrieve`), never per member. A
//! request refused synchronously (HTTP 400 `INVALID_ARGUMENT`) names its faulty members in
//! `BadRequest.fieldViolations` (`audience_members[3].user_data.user_identifiers[0]`):
//! those members' changes are rejected with the reason code and the field (never a value),
//! and the request is sent again without them. A 400 that names no member is a setting
//! Google refuses (Terms of Service, user list, account) and ends the run naming it, or,
//! without a known reason, a batch the runner bisects.
//!
//! At the end of a run ([`finish_run`](Destination::finish_run)) the run's requests are
//! polled for up to [`status_wait`](GoogleDataManagerConfig::status_wait): the upload match
//! rate (Google's ranges, weighted by the members of each upload) and the members Google
//! did not process (counted by reason) go into the run's
//! [`AudienceReport`](rse_core::AudienceReport); members dropped in processing cannot be
//! named, and the report says so.
//!
//! # Full refresh
//! With [`replace_on_full_resync`](GoogleDataManagerConfig::replace_on_full_resync), a
//! `full_resync` run sends every member again, and once every change of the run is
//! delivered, `audienceMembers:removeAll` with `removeAsOfTime` = the run's start (less
//! [`refresh_clock_margin`](GoogleDataManagerConfig::refresh_clock_margin)) removes every
//! member not sent since: the list holds exactly the segment. A run that stops midway
//! removes nothing (nothing is lost; the next full refresh completes the replacement).
//!
//! # Quota and errors
//! Requests are paced to [`requests_per_minute`](GoogleDataManagerConfig::requests_per_minute)
//! (300, Google's default per Cloud project) by the destination itself, since one batch may
//! take several requests; it writes one batch at a time, so that a batch's removals and
//! additions reach Google in order. A 429 for the per-minute quota is a rate limit (the
//! batch is sent again after the wait); a 429 for the daily quota ends the run as
//! `QuotaExhausted`, every unsent change kept for the next run. 401 and 403 end the run
//! (`Unauthorized`), naming Google's reason.
//!
//! # Authentication
//! A service account's JWT grant with the scope `https://www.googleapis.com/auth/datamanager`
//! ([`GoogleDataManagerConfig::service_account`]), or an OAuth refresh token with that scope;
//! tokens are refreshed before they expire and once after a 401 ([`crate::saas::auth`]).
//!
//! # Limits
//! Google keeps a set of identifiers per list, not members: an identifier two keys share
//! (two rows with one e-mail address) leaves the list when either key loses it, unless the
//! other is sent again (a full refresh restores it).
//!
//! Follows /work/shared/contracts/google (the Data Manager v1 protos and the JSON Schema
//! derived from them) and saas-contracts.md §3b.

mod config;
mod status;
mod wire;
mod write;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, Url};
use rse_core::{
    Change, ChangeBatch, Destination, DestinationCapabilities, DestinationError, DestinationRunReport, Memo, Op,
    RunEnd, RunInfo, Schema, WriteOutcome,
};
use tokio::time::Instant;

pub use self::config::{
    AccountType, DEFAULT_BASE_URL, DEFAULT_REQUESTS_PER_MINUTE, GoogleDataManagerConfig, MAX_MEMBERS_PER_REQUEST,
    ProductAccount, SCOPE, TOKEN_URL,
};
use self::wire::{Account, Destination as WireDestination};
use super::error::{GoogleClassifier, GoogleError};
use crate::audience::{BoundAudienceFields, GoogleDataManagerNormalizer, IdentifierKind, Normalizer, intent_memo};
use crate::saas::{BaseUrl, SaasClient, SaasRequest};

/// The endpoints.
#[derive(Debug, Clone)]
struct Urls {
    ingest: Url,
    remove: Url,
    remove_all: Url,
    status: Url,
}

/// What a request did: ingest, remove or removeAll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ingest,
    Remove,
    RemoveAll,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Ingest => "ingest",
            Kind::Remove => "remove",
            Kind::RemoveAll => "removeAll",
        }
    }
}

/// Paces requests: at most one per interval, whichever write sends it.
#[derive(Debug)]
struct Pacer {
    interval: Duration,
    next: tokio::sync::Mutex<Option<Instant>>,
}

impl Pacer {
    fn per_minute(n: u32) -> Self {
        Self { interval: Duration::from_secs(60) / n.max(1), next: tokio::sync::Mutex::new(None) }
    }

    async fn wait(&self) {
        let at = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let at = next.map_or(now, |n| n.max(now));
            *next = Some(at + self.interval);
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// Google Customer Match through the Data Manager API; see the [module docs](self).
pub struct GoogleDataManagerDestination {
    name: String,
    config: GoogleDataManagerConfig,
    client: SaasClient,
    urls: Urls,
    classifier: GoogleClassifier,
    pacer: Pacer,
    /// The fields bound to the last schema seen.
    bound: Mutex<Option<(Arc<Schema>, Arc<BoundAudienceFields>)>>,
    /// The requests of the current run that Google accepted, for its status at the end.
    requests: Mutex<Vec<(String, Kind)>>,
}

impl std::fmt::Debug for GoogleDataManagerDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleDataManagerDestination")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl GoogleDataManagerDestination {
    /// A destination as `config` describes; nothing is sent until the first check or
    /// write.
    ///
    /// # Errors
    /// [`DestinationError::Fatal`] naming the setting at fault (see
    /// [`GoogleDataManagerConfig::validate`]: the Terms of Service not accepted, an id that
    /// is not digits…) or the credentials' (see [`SaasClient::new`]).
    pub fn new(config: GoogleDataManagerConfig) -> Result<Self, DestinationError> {
        config.validate()?;
        let client = SaasClient::new(config.display_name(), &config.auth, config.client.clone())?;
        Self::from_client(config, client)
    }

    /// A destination sending through `client`, which the host already holds;
    /// `config.auth` and `config.client` are not used.
    ///
    /// # Errors
    /// As [`new`](Self::new), for the settings.
    pub fn from_client(config: GoogleDataManagerConfig, client: SaasClient) -> Result<Self, DestinationError> {
        config.validate()?;
        validate_identifiers(&config)?;
        let name = config.display_name();
        let base = BaseUrl::parse(&name, &config.base_url)?;
        let join = |path: &str| base.join(path);
        let urls = Urls {
            ingest: join("v1/audienceMembers:ingest")?,
            remove: join("v1/audienceMembers:remove")?,
            remove_all: join("v1/audienceMembers:removeAll")?,
            status: join("v1/requestStatus:retrieve")?,
        };
        let classifier = GoogleClassifier {
            permission_hint: format!(
                "Google refused the request: check that the credentials may act on {} account {}{} and its user list {}, \
                 and carry the scope {SCOPE}",
                config.operating_account.account_type,
                config.operating_account.account_id,
                config
                    .login_account
                    .as_ref()
                    .map(|l| format!(" (through {} account {})", l.account_type, l.account_id))
                    .unwrap_or_default(),
                config.user_list_id
            ),
        };
        Ok(Self {
            pacer: Pacer::per_minute(config.requests_per_minute),
            name,
            client,
            urls,
            classifier,
            config,
            bound: Mutex::new(None),
            requests: Mutex::new(Vec::new()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &GoogleDataManagerConfig {
        &self.config
    }

    /// The client the requests go through.
    pub fn client(&self) -> &SaasClient {
        &self.client
    }

    /// The audience fields bound to `schema`, bound once per schema.
    fn bound(&self, schema: &Schema) -> Result<Arc<BoundAudienceFields>, DestinationError> {
        let mut cached = self.bound.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((known, bound)) = cached.as_ref()
            && (std::ptr::eq(Arc::as_ptr(known), schema) || **known == *schema)
        {
            return Ok(Arc::clone(bound));
        }
        let bound = Arc::new(self.config.audience.bind(schema).map_err(|e| self.named(e))?);
        *cached = Some((Arc::new(schema.clone()), Arc::clone(&bound)));
        Ok(bound)
    }

    /// `e` with this destination's name in front.
    fn named(&self, e: DestinationError) -> DestinationError {
        match e {
            DestinationError::Fatal { message, source } => {
                DestinationError::Fatal { message: format!("{}: {message}", self.name), source }
            }
            other => other,
        }
    }

    /// The request's one destination: the user list.
    fn destination(&self) -> WireDestination<'_> {
        WireDestination {
            operating_account: Account::of(&self.config.operating_account),
            login_account: self.config.login_account.as_ref().map(Account::of),
            product_destination_id: &self.config.user_list_id,
        }
    }

    fn remember(&self, id: String, kind: Kind) {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner).push((id, kind));
    }

    /// Sends `body` to `url` after the pacer's wait: Google's request id, or its refusal
    /// (HTTP 400), or the error class of any other failure.
    async fn post<B: serde::Serialize>(&self, url: &Url, body: &B) -> Result<Sent, DestinationError> {
        let request = SaasRequest::json(Method::POST, url.clone(), body)?;
        self.pacer.wait().await;
        let answer = self.client.send(&request).await?;
        if answer.is_success() {
            let accepted: wire::Accepted = answer.json("the answer")?;
            return Ok(Sent::Accepted(accepted.request_id));
        }
        if answer.status().as_u16() == 400
            && let Some(error) = GoogleError::from_slice(answer.body())
        {
            return Ok(Sent::Refused(error));
        }
        Err(answer.error(&self.classifier))
    }

    /// The error for a refusal that names no member.
    fn refusal(&self, kind: Kind, error: &GoogleError) -> DestinationError {
        let described =
            format!("{}: audienceMembers:{} answered HTTP 400 ({})", self.name, kind.as_str(), error.codes());
        let reason = error.reason.as_deref().unwrap_or("");
        let hint = match reason {
            "TERMS_AND_CONDITIONS_NOT_SIGNED" => Some(
                "Google says the Customer Match Terms of Service are not accepted for this account: have its owner \
                 accept them in Google Ads (Tools → Audience manager → Customer Match), then run again"
                    .to_owned(),
            ),
            "INVALID_USER_LIST_ID"
            | "INVALID_USER_LIST_TYPE"
            | "USER_LIST_MUTATION_NOT_SUPPORTED"
            | "INVALID_DESTINATION" => Some(format!(
                "check `user_list_id` ({}): it must be a Customer Match contact list of {} account {}",
                self.config.user_list_id,
                self.config.operating_account.account_type,
                self.config.operating_account.account_id
            )),
            "EU_POLITICAL_ADVERTISING_DECLARATION_REQUIRED" => Some(
                "the Google Ads account must declare whether it runs EU political advertising (Google Ads → Admin → \
                 Account settings) before Customer Match uploads are accepted"
                    .to_owned(),
            ),
            "NOT_ALLOWLISTED" => Some("the account is not allowlisted for this Data Manager feature".to_owned()),
            "OPERATING_ACCOUNT_LOGIN_ACCOUNT_MISMATCH"
            | "DESTINATION_ACCOUNT_TYPE_MISMATCH"
            | "MISMATCHED_ACCOUNT_TYPE"
            | "DIFFERENT_LOGIN_ACCOUNTS_NOT_ALLOWED_FOR_DATA_PARTNER"
            | "PERMISSION_DENIED" => Some("check `operating_account` and `login_account`".to_owned()),
            "INVALID_REMOVE_AS_OF_TIME" => {
                Some("this machine's clock is ahead of Google's: raise `refresh_clock_margin`".to_owned())
            }
            _ => None,
        };
        if let Some(hint) = hint {
            return DestinationError::fatal(format!("{described}; {hint}"));
        }
        if !error.field_violations.is_empty() {
            let fields: Vec<&str> = error.field_violations.iter().map(|v| v.field.as_str()).take(5).collect();
            return DestinationError::fatal(format!(
                "{described}: Google refused the request's fields {}; this is a bug in the connector, please report it",
                fields.join(", ")
            ));
        }
        DestinationError::InvalidBatch { message: described }
    }
}

/// What Google said to a request it answered.
enum Sent {
    /// Accepted, with the request's id.
    Accepted(Option<String>),
    /// Refused as invalid (HTTP 400).
    Refused(GoogleError),
}

/// Refuses audience columns Customer Match contact lists do not take, and requires one it
/// does.
fn validate_identifiers(config: &GoogleDataManagerConfig) -> Result<(), DestinationError> {
    let name = config.display_name();
    let fields = &config.audience;
    for kind in [
        IdentifierKind::City,
        IdentifierKind::Region,
        IdentifierKind::DateOfBirth,
        IdentifierKind::Gender,
        IdentifierKind::ExternalId,
    ] {
        if fields.column(kind).is_some() {
            return Err(DestinationError::fatal(format!(
                "{name}: audience field `{kind}` is mapped, but Customer Match contact lists take e-mail addresses, \
                 phone numbers, addresses (`first_name`, `last_name`, `country` or `default_country`, `postal_code`) \
                 and mobile ids only: remove `{kind}`"
            )));
        }
    }
    let address = [IdentifierKind::FirstName, IdentifierKind::LastName, IdentifierKind::PostalCode];
    let mapped = address.iter().filter(|k| fields.column(**k).is_some()).count();
    let country = fields.column(IdentifierKind::Country).is_some() || fields.default_country.is_some();
    if mapped > 0 && (mapped < address.len() || !country) {
        return Err(DestinationError::fatal(format!(
            "{name}: an address needs all of `first_name`, `last_name`, `postal_code` and `country` (or \
             `default_country`); map the missing ones, or none of them"
        )));
    }
    let direct = [IdentifierKind::Email, IdentifierKind::Phone, IdentifierKind::MobileId];
    if mapped == 0 && !direct.iter().any(|k| fields.column(*k).is_some()) {
        return Err(DestinationError::fatal(format!(
            "{name}: the audience names no identifier Customer Match takes: map `email`, `phone`, `mobile_id`, or an \
             address (`first_name`, `last_name`, `postal_code`, `country`)"
        )));
    }
    Ok(())
}

#[async_trait]
impl Destination for GoogleDataManagerDestination {
    fn name(&self) -> &str {
        &self.name
    }

    /// Inserts, updates and deletes of up to `max_members_per_request` rows per batch, one
    /// batch at a time, keeping each key's identifiers as its memo. Requests are paced by
    /// the destination itself (see the module docs), so no rate is declared to the runner.
    fn capabilities(&self) -> DestinationCapabilities {
        DestinationCapabilities::new([Op::Insert, Op::Update, Op::Delete])
            .with_max_batch_rows(self.config.max_members_per_request)
            .with_max_concurrency(1)
            .with_memos(true)
    }

    /// Binds the audience fields to `schema`: every column named exists.
    fn check_schema(&self, schema: &Schema) -> Result<(), DestinationError> {
        self.bound(schema).map(drop)
    }

    /// Gets a token, then sends one synthetic member (the digest of a fixed address under
    /// `example.invalid`, which no person has) with `validateOnly`: Google checks the
    /// account, the user list, the Terms of Service and the consent without adding it.
    async fn check(&self) -> Result<(), DestinationError> {
        self.check_access().await
    }

    async fn write(&self, batch: &ChangeBatch) -> Result<WriteOutcome, DestinationError> {
        self.write_batch(batch, false).await
    }

    /// The batch's requests with `validateOnly`: Google checks them (members, Terms of
    /// Service, the list, the account) and applies none; the members it names are the
    /// changes it would refuse.
    async fn validate(&self, batch: &ChangeBatch) -> Result<Option<WriteOutcome>, DestinationError> {
        self.write_batch(batch, true).await.map(Some)
    }

    /// The member's identifiers before and after the change: recorded before the write, so
    /// that the identifiers of an upload whose answer is lost are removed later.
    fn intent_memo(&self, schema: &Schema, change: &Change) -> Option<Memo> {
        let fields = self.bound(schema).ok()?;
        intent_memo(&fields, &GoogleDataManagerNormalizer, change)
    }

    async fn begin_run(&self, _run: &RunInfo) -> Result<(), DestinationError> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner).clear();
        Ok(())
    }

    /// Completes a full refresh (see the module docs) and reports Google's processing of
    /// the run's requests: match rate, members not processed.
    async fn finish_run(&self, run: &RunInfo, end: &RunEnd) -> Result<DestinationRunReport, DestinationError> {
        self.finish(run, end).await
    }
}

/// The digest check() sends.
fn check_member() -> Option<crate::audience::Normalized> {
    GoogleDataManagerNormalizer
        .normalize(IdentifierKind::Email, "rse-connection-check@example.invalid", &Default::default())
        .ok()
        .flatten()
}
