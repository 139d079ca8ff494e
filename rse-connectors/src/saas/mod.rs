//! The SaaS kit: what every CRM and marketing destination shares, so that a vendor module
//! holds only its mapping, its I/O and its error classification.
//!
//! | need | here |
//! |---|---|
//! | credentials: a static token, an API key header, OAuth 2.0 refresh-token and JWT-bearer grants, refreshed once for all writers | [`SaasAuthConfig`], [`SaasAuth`] ([`auth`], [`oauth`], [`jwt`]) |
//! | an HTTP client: rustls, timeouts, gzip, no redirects, `User-Agent: rse/<version>`; requests that retry once after a 401 with a refreshed token; answers read with a size cap | [`SaasClient`], [`SaasRequest`], [`SaasResponse`] ([`client`]) |
//! | what a failed answer means to the runner, with a hook for the vendor | [`Classifier`], [`Failure`], [`default_classification`] ([`classify`](mod@classify)) |
//! | per-item answers to outcomes, by position or by key, refusing what cannot be attributed | [`SentItems`], [`KeyedItems`], [`ItemResult`] ([`partial`]) |
//! | waiting for an asynchronous job | [`poll_until`], [`PollOptions`] ([`poll`]) |
//! | fields to vendor properties, values in the vendor's style | [`FieldMap`], [`ValueStyle`] ([`mapping`]) |
//! | one vendor record per batch | [`BatchIdentities`] ([`dedupe`]) |
//!
//! # A vendor module's write, in outline
//! ```no_run
//! use rse_connectors::saas::*;
//! use rse_core::{ChangeBatch, DestinationError, WriteOutcome, WriteOutcomes};
//!
//! struct Vendor; // its own overrides, e.g. a daily-quota 429
//! impl Classifier for Vendor {
//!     fn classify(&self, _: &Failure<'_>) -> Option<DestinationError> { None }
//! }
//!
//! async fn write(client: &SaasClient, fields: &BoundFieldMap, url: reqwest::Url, batch: &ChangeBatch)
//!     -> Result<WriteOutcome, DestinationError>
//! {
//!     let mut outcomes = WriteOutcomes::new(batch.len());
//!     let mut seen = BatchIdentities::new("Vendor record", "email");
//!     let (mut inputs, mut sent) = (Vec::new(), SentItems::new());
//!     for (i, change) in batch.changes.iter().enumerate() {
//!         let Some(record) = &change.record else { continue };
//!         let properties = match fields.properties(record) {
//!             Ok(p) => p,
//!             Err(reason) => { outcomes.rejected(i, reason); continue }
//!         };
//!         let email = properties.get("email").and_then(|e| e.as_str()).unwrap_or("").to_lowercase();
//!         if seen.claim_or_reject(&mut outcomes, i, &change.key, &email) {
//!             inputs.push(serde_json::json!({ "id": email, "properties": properties }));
//!             sent.push(i);
//!         }
//!     }
//!     let request = SaasRequest::json(reqwest::Method::POST, url, &serde_json::json!({ "inputs": inputs }))?;
//!     let answer = client.send(&request).await?.success_or(&Vendor)?;
//!     let results: Vec<serde_json::Value> = answer.json("the batch answer")?;
//!     sent.record_by_position(client.name(), &mut outcomes, &results, |_| ItemResult::Applied)?;
//!     outcomes.finish(client.name())
//! }
//! ```
//!
//! Nothing here retries, waits for a rate limit or paces requests: the runner does, from
//! the error classes. The one retry is the request sent again after a 401 with a fresh
//! token, since that is the credentials' business, not the batch's.

pub mod auth;
pub mod classify;
pub mod client;
pub mod dedupe;
pub mod jwt;
pub mod mapping;
pub mod oauth;
pub mod partial;
pub mod poll;
mod token_endpoint;

pub use auth::{Credential, SaasAuth, SaasAuthConfig};
pub use classify::{
    Classifier, DEFAULT_MAX_RETRY_AFTER, DefaultClassifier, Failure, classify, default_classification, error_codes,
    origin, quota_exhausted, transport_error,
};
pub(crate) use client::BaseUrl;
pub use client::{SaasClient, SaasClientOptions, SaasRequest, SaasResponse, USER_AGENT, build_http_client};
pub use dedupe::{BatchIdentities, Duplicate};
pub use jwt::{JwtBearerConfig, MAX_ASSERTION_LIFETIME};
pub use mapping::{BoundFieldMap, FieldMap, FieldMapping, ValueStyle};
pub use oauth::{AccessToken, OAuthRefreshConfig};
pub use partial::{ItemResult, KeyedItems, SentItems};
pub use poll::{PollOptions, PollOutcome, Probe, poll_until};
