//! Meta (Facebook) Custom Audiences: a sync's rows are the members of one customer-list
//! custom audience, added and removed through the Marketing API's `/{audience_id}/users`
//! edge, or replaced through `/usersreplace` on a full refresh.
//!
//! # What is sent
//! Each member is one row of a multi-key `payload` (`{"schema": ["EXTERN_ID", "EMAIL",
//! "PHONE", …], "data": [[…], …]}`): every identifier the
//! [`AudienceFields`](crate::audience::AudienceFields) map from the row, normalised the way
//! Meta matches it ([`crate::audience::MetaNormalizer`]: e-mail trimmed and
//! lower-cased, phone digits only with the country code and no `+`, names and cities
//! lower-case letters, a date of birth as `DOBY`, `DOBM`, `DOBD`) and SHA-256 hashed, except
//! `MADID` and `EXTERN_ID`, which Meta takes in clear. The schema of a call holds the keys its
//! members have; a key a member lacks is left blank, as Meta asks. At most
//! [`rows_per_request`](MetaAudienceConfig::rows_per_request) members go per call (Meta's
//! maximum is 10,000), form-encoded, the token in an `Authorization: Bearer` header.
//!
//! A changed member is removed under the identifiers it no longer has and added under its
//! current ones (`DELETE` before `POST`), so an e-mail change leaves the audience holding
//! the new hash and not the old one. A member whose consent column is not `true` is not
//! sent (and removed if it was); one without any usable identifier is refused with a
//! reason naming the columns. The identifiers each member was sent with are kept as its
//! memo, recorded before the call too ([`Destination::intent_memo`]), so a member whose
//! call's answer was lost can still be removed under everything Meta may hold for it.
//!
//! # Sessions
//! A run's additions go in one upload session (`session_id` derived from the sync, the run
//! and the audience: a new run gets a new one; `batch_seq` from 1, grown when a batch is
//! acknowledged; rotated after an hour, since Meta ends a session 90 minutes after its first
//! batch). At the run's end the last row is sent again with `last_batch_flag` (adding a
//! member twice changes nothing) and the sessions edge read: `num_matched` /
//! `num_received` becomes the report's match rate, settled once the session's stage says
//! Meta finished matching.
//!
//! # What comes back
//! Meta drops rows it finds invalid and answers 200 with `num_invalid_entries` and up to 100
//! `invalid_entry_samples`, **without saying which rows**: a call's changes are all applied,
//! the dropped rows are counted in the report (`platform_invalid`, and Meta's reasons in
//! `platform_reasons`; the samples are hashes of personal data and are never kept), and the
//! run's report says that the rows cannot be named.
//!
//! # Full refresh
//! With [`replace_on_full_resync`](MetaAudienceConfig::replace_on_full_resync), a full
//! resync sends its members to `/usersreplace` in one replace session; whoever is not
//! uploaded leaves the audience when the session ends, without resetting the learning
//! phase of the ad sets using it. Removals planned once the session started need no call.
//! The run's end marks the last batch (`last_batch_flag`): Meta then replaces the audience
//! ([`AudienceReport::replaced`](rse_core::AudienceReport) when every change was delivered).
//! Meta's guide says a replace session it is not told the end of stops 90 minutes after its
//! first batch, and the audience then holds what the session uploaded; while it runs,
//! `/users` calls are refused (code 2650, subcode 1870145), which this destination waits out.
//! So a refresh cut short (a crash) leaves the audience holding the members uploaded so
//! far, and the changes not acknowledged go with a later run.
//!
//! # Rate limits and errors
//! Meta throttles with HTTP 400 and codes 17, 613, 80003 or 80004 (not 429): the runner waits
//! `estimated_time_to_regain_access` from the `X-Business-Use-Case-Usage` header, and a wait
//! longer than the sync allows ends the run as rate limited with every unsent change kept.
//! The header's percentage of the hourly `custom_audience` score goes back to the runner
//! as quota feedback. See [`classify`] for every code.
//!
//! Follows /work/shared/contracts/saas-contracts.md §4 and Meta's Marketing API references
//! "Custom Audience Users", "Custom Audience Usersreplace" and "Custom Audience Session",
//! the guide "Customer File Custom Audiences", "Marketing API: Rate limiting" and "Graph
//! API: Handling errors".
//!
//! # Example
//! ```no_run
//! use rse_connectors::{MetaAudienceConfig, MetaAudienceDestination, Secret};
//! use rse_connectors::audience::AudienceFields;
//!
//! let fields = AudienceFields::new().email("email").phone("phone").country("country").consent("ads_consent");
//! let config = MetaAudienceConfig::new("23850000000000001", Secret::from_env("META_ACCESS_TOKEN")?, fields)
//!     .with_replace_on_full_resync(true);
//! let audience = MetaAudienceDestination::new(config)?;
//! # drop(audience);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod classify;
pub mod config;
mod run;
mod wire;
mod write;

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use reqwest::Url;
use rse_core::{
    Change, ChangeBatch, Destination, DestinationCapabilities, DestinationError, DestinationRunReport, Memo, Op,
    RunEnd, RunInfo, Schema, WriteOutcome,
};
use serde_json::Value as Json;

pub use config::{DEFAULT_BASE_URL, DEFAULT_GRAPH_API_VERSION, MAX_ROWS_PER_REQUEST, MetaAudienceConfig};

use self::classify::{MetaClassifier, RESTRICTED};
use self::run::RunState;
use self::wire::Cells;
use crate::audience::{self, BoundAudienceFields, IdentifierKind, MemberIds, MetaNormalizer};
use crate::saas::{BaseUrl, SaasAuth, SaasClient, SaasRequest, build_http_client};

/// Which way a `/users` call goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edge {
    Add,
    Remove,
}

/// Where the calls go.
#[derive(Debug, Clone)]
struct Urls {
    node: Url,
    users: Url,
    replace: Url,
    sessions: Url,
}

/// A Meta customer-list custom audience; see the [module docs](self).
pub struct MetaAudienceDestination {
    name: String,
    config: MetaAudienceConfig,
    client: SaasClient,
    urls: Urls,
    classifier: MetaClassifier,
    normalizer: MetaNormalizer,
    /// The fields bound to the last schema seen.
    bound: Mutex<Option<(Arc<Schema>, Arc<BoundAudienceFields>)>>,
    /// The run in progress; held across a write's calls, so writes go one at a time.
    run: tokio::sync::Mutex<Option<RunState>>,
}

impl std::fmt::Debug for MetaAudienceDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaAudienceDestination")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl MetaAudienceDestination {
    /// A destination as `config` describes; nothing is sent until the first check or write.
    ///
    /// # Errors
    /// [`DestinationError::Fatal`] naming the setting at fault (see
    /// [`MetaAudienceConfig::validate`]), or a TLS setup failure.
    pub fn new(config: MetaAudienceConfig) -> Result<Self, DestinationError> {
        config.validate()?;
        let http = build_http_client(&config.client)?;
        let auth = SaasAuth::bearer(config.access_token.clone())?;
        let client = SaasClient::from_parts(config.display_name(), http, auth, config.client.clone());
        Self::from_client(config, client)
    }

    /// A destination sending through `client`, which the host already holds;
    /// `config.access_token` and `config.client` are not used.
    ///
    /// # Errors
    /// As [`new`](Self::new), for the settings.
    pub fn from_client(config: MetaAudienceConfig, client: SaasClient) -> Result<Self, DestinationError> {
        config.validate()?;
        let name = config.display_name();
        let base = BaseUrl::parse(&name, &config.base_url)?;
        let node = format!("{}/{}", config.graph_api_version, config.audience_id);
        let join = |path: &str| base.join(path);
        let urls = Urls {
            node: join(&node)?,
            users: join(&format!("{node}/users"))?,
            replace: join(&format!("{node}/usersreplace"))?,
            sessions: join(&format!("{node}/sessions"))?,
        };
        Ok(Self {
            classifier: MetaClassifier { audience_id: config.audience_id.clone() },
            normalizer: MetaNormalizer,
            name,
            client,
            urls,
            config,
            bound: Mutex::new(None),
            run: tokio::sync::Mutex::new(None),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &MetaAudienceConfig {
        &self.config
    }

    /// The fields bound to `schema`, bound once per schema.
    fn bound(&self, schema: &Arc<Schema>) -> Result<Arc<BoundAudienceFields>, DestinationError> {
        let mut cached = self.bound.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((known, bound)) = cached.as_ref()
            && (Arc::ptr_eq(known, schema) || **known == **schema)
        {
            return Ok(Arc::clone(bound));
        }
        let bound = Arc::new(self.config.fields.bind(schema)?);
        *cached = Some((Arc::clone(schema), Arc::clone(&bound)));
        Ok(bound)
    }
}

/// The keys that name a person on their own; the others (names, places, birth dates,
/// gender) only narrow a match.
const IDENTIFYING_KEYS: [&str; 4] = ["EMAIL", "PHONE", "MADID", "EXTERN_ID"];

/// Meta's multi-key schema key for `kind`; `None` for the date of birth itself, which
/// Meta takes as three keys (the normaliser makes them).
fn meta_key(kind: IdentifierKind) -> Option<&'static str> {
    Some(match kind {
        IdentifierKind::Email => "EMAIL",
        IdentifierKind::Phone => "PHONE",
        IdentifierKind::FirstName => "FN",
        IdentifierKind::LastName => "LN",
        IdentifierKind::City => "CT",
        IdentifierKind::Region => "ST",
        IdentifierKind::PostalCode => "ZIP",
        IdentifierKind::Country => "COUNTRY",
        IdentifierKind::Gender => "GEN",
        IdentifierKind::MobileId => "MADID",
        IdentifierKind::ExternalId => "EXTERN_ID",
        IdentifierKind::BirthYear => "DOBY",
        IdentifierKind::BirthMonth => "DOBM",
        IdentifierKind::BirthDay => "DOBD",
        _ => return None,
    })
}

/// A member's identifiers as rows of Meta's keys and values: one row, or more when the
/// member holds several values of a key (a removal of an old and an older e-mail address),
/// the n-th row holding the n-th value of each key.
fn rows_of(ids: &MemberIds) -> Vec<Cells> {
    let mut rows: Vec<Cells> = Vec::new();
    let mut seen: Vec<(&'static str, usize)> = Vec::new();
    for (kind, value) in ids.iter() {
        let Some(key) = meta_key(kind) else { continue };
        let n = match seen.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                seen.push((key, 0));
                0
            }
        };
        if rows.len() <= n {
            rows.push(Vec::new());
        }
        rows[n].push((key, value.hex()));
    }
    rows
}

#[async_trait]
impl Destination for MetaAudienceDestination {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> DestinationCapabilities {
        DestinationCapabilities::new([Op::Insert, Op::Update, Op::Delete])
            .with_max_batch_rows(self.config.rows_per_request)
            .with_max_concurrency(1)
            .with_memos(true)
    }

    /// Checks the fields against `schema`: every mapped column exists.
    fn check_schema(&self, schema: &Schema) -> Result<(), DestinationError> {
        self.config.fields.bind(schema).map(drop)
    }

    /// Reads the audience (no write): the token is accepted, the audience exists and the
    /// system user may use it, and it is not restricted.
    async fn check(&self) -> Result<(), DestinationError> {
        let mut url = self.urls.node.clone();
        url.query_pairs_mut().append_pair("fields", "id,name,operation_status");
        let answer = self.client.send(&SaasRequest::get(url)).await?.success_or(&self.classifier)?;
        let json: Json = answer.json("the audience")?;
        let status =
            json.pointer("/operation_status/code").and_then(|c| c.as_u64().or_else(|| c.as_str()?.parse().ok()));
        if status == Some(471) {
            return Err(DestinationError::fatal(format!(
                "{}: audience {} is restricted (operation_status 471; Meta answers membership changes with code 100, subcode {RESTRICTED}): someone must resolve the restriction in Audience Manager, or create a new audience",
                self.name, self.config.audience_id
            )));
        }
        Ok(())
    }

    fn intent_memo(&self, schema: &Schema, change: &Change) -> Option<Memo> {
        let bound = self.config.fields.bind(schema).ok()?;
        audience::intent_memo(&bound, &self.normalizer, change)
    }

    async fn begin_run(&self, run: &RunInfo) -> Result<(), DestinationError> {
        self.open_run(run).await;
        Ok(())
    }

    async fn write(&self, batch: &ChangeBatch) -> Result<WriteOutcome, DestinationError> {
        self.write_batch(batch).await
    }

    async fn finish_run(&self, _run: &RunInfo, end: &RunEnd) -> Result<DestinationRunReport, DestinationError> {
        self.close_run(end).await
    }
}
