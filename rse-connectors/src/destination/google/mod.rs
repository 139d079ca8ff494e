//! Google Customer Match: audiences of Google Ads, Display & Video 360 and partners, filled
//! with hashed contact data.
//!
//! - [`datamanager`]: the Data Manager API (`audienceMembers:ingest`, `:remove`,
//!   `:removeAll`), the one Google points new integrations to.
//! - [`ads`]: the Google Ads API's offline user data jobs, for accounts still on it.
//! - [`error`]: Google's REST error body, shared by Google's APIs.
//!
//! Google's APIs spell consent differently: the Data Manager API `CONSENT_GRANTED` /
//! `CONSENT_DENIED`, the Google Ads API `GRANTED` / `DENIED` ([`ConsentSpelling`]).

pub mod ads;
pub mod datamanager;
pub mod error;

use serde::{Deserialize, Serialize};

pub use ads::{GoogleAdsConfig, GoogleAdsDestination};
pub use datamanager::{GoogleDataManagerConfig, GoogleDataManagerDestination};
pub use error::GoogleError;

/// Consent the advertiser states for every member of a request (EU user consent policy):
/// `{"ad_user_data": true, "ad_personalization": true}`; a field left out is not stated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RequestConsent {
    /// Consent to use the members' data for advertising.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ad_user_data: Option<bool>,
    /// Consent to personalised advertising.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ad_personalization: Option<bool>,
}

impl RequestConsent {
    /// Both consents granted.
    pub fn granted() -> Self {
        Self { ad_user_data: Some(true), ad_personalization: Some(true) }
    }

    /// These consents.
    pub fn new(ad_user_data: Option<bool>, ad_personalization: Option<bool>) -> Self {
        Self { ad_user_data, ad_personalization }
    }
}

/// How one of Google's APIs spells a consent status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsentSpelling {
    /// `CONSENT_GRANTED` / `CONSENT_DENIED` (Data Manager API, `ConsentStatus`).
    DataManager,
    /// `GRANTED` / `DENIED` (Google Ads API, `ConsentStatusEnum`).
    GoogleAds,
}

impl ConsentSpelling {
    /// The status for `granted`.
    pub fn status(self, granted: bool) -> &'static str {
        match (self, granted) {
            (ConsentSpelling::DataManager, true) => "CONSENT_GRANTED",
            (ConsentSpelling::DataManager, false) => "CONSENT_DENIED",
            (ConsentSpelling::GoogleAds, true) => "GRANTED",
            (ConsentSpelling::GoogleAds, false) => "DENIED",
        }
    }
}
