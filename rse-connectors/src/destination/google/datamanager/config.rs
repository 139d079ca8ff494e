//! The configuration of a `GoogleDataManagerDestination`: which account and user list,
//! which columns hold which identifiers, consent, Terms of Service, and how fast.

use std::fmt;
use std::time::Duration;

use rse_core::DestinationError;
use serde::{Deserialize, Serialize};

use crate::audience::AudienceFields;
use crate::destination::google::RequestConsent;
use crate::saas::{JwtBearerConfig, SaasAuthConfig, SaasClientOptions};

/// Where the Data Manager API answers.
pub const DEFAULT_BASE_URL: &str = "https://datamanager.googleapis.com";

/// The OAuth 2.0 scope the Data Manager API requires.
pub const SCOPE: &str = "https://www.googleapis.com/auth/datamanager";

/// Google's token endpoint, the `aud` of a service account's JWT assertion.
pub const TOKEN_URL: &str = "https://oauth2.googleapis.com/token";

/// The most audience members one request carries (`TOO_MANY_AUDIENCE_MEMBERS`).
pub const MAX_MEMBERS_PER_REQUEST: usize = 10_000;

/// Ingestion requests a Cloud project may send per minute (Google's default quota).
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 300;

/// The kind of a Google account (`ProductAccount.AccountType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum AccountType {
    /// A Google Ads customer (the default).
    #[default]
    GoogleAds,
    /// A Display & Video 360 partner.
    DisplayVideoPartner,
    /// A Display & Video 360 advertiser.
    DisplayVideoAdvertiser,
    /// A data partner.
    DataPartner,
}

impl AccountType {
    /// The name the API takes (`GOOGLE_ADS`…).
    pub fn as_str(self) -> &'static str {
        match self {
            AccountType::GoogleAds => "GOOGLE_ADS",
            AccountType::DisplayVideoPartner => "DISPLAY_VIDEO_PARTNER",
            AccountType::DisplayVideoAdvertiser => "DISPLAY_VIDEO_ADVERTISER",
            AccountType::DataPartner => "DATA_PARTNER",
        }
    }
}

impl fmt::Display for AccountType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Google account: `{"account_type": "GOOGLE_ADS", "account_id": "1234567890"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ProductAccount {
    /// The kind of account (default `GOOGLE_ADS`).
    #[serde(default)]
    pub account_type: AccountType,
    /// Its id, digits only (a Google Ads customer id without dashes).
    pub account_id: String,
}

impl ProductAccount {
    /// The Google Ads customer `id` (digits, no dashes).
    pub fn google_ads(id: impl Into<String>) -> Self {
        Self { account_type: AccountType::GoogleAds, account_id: id.into() }
    }

    /// An account of `account_type`.
    pub fn new(account_type: AccountType, id: impl Into<String>) -> Self {
        Self { account_type, account_id: id.into() }
    }
}

/// Google Customer Match through the Data Manager API, as configuration.
///
/// ```
/// use rse_connectors::google::GoogleDataManagerConfig;
///
/// let config: GoogleDataManagerConfig = serde_json::from_str(r#"{
///     "auth": {"type": "jwt_bearer", "token_url": "https://oauth2.googleapis.com/token",
///              "client_id": "rse@project.iam.gserviceaccount.com", "username": "rse@project.iam.gserviceaccount.com",
///              "audience": "https://oauth2.googleapis.com/token",
///              "scope": "https://www.googleapis.com/auth/datamanager",
///              "private_key": "-----BEGIN PRIVATE KEY-----\n…"},
///     "operating_account": {"account_type": "GOOGLE_ADS", "account_id": "1234567890"},
///     "user_list_id": "7777777777",
///     "audience": {"email": "email", "phone": "phone", "default_country": "US"},
///     "terms_of_service_accepted": true
/// }"#)?;
/// assert_eq!(config.max_members_per_request, 10_000);
/// assert!(!format!("{config:?}").contains("BEGIN PRIVATE KEY"), "secrets stay out of Debug");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct GoogleDataManagerConfig {
    /// The credentials: a service account's JWT grant (`{"type": "jwt_bearer", …}` with
    /// `scope` [`SCOPE`]; see [`service_account`](Self::service_account)) or an OAuth
    /// refresh token (`{"type": "oauth_refresh", …}` with the same scope).
    pub auth: SaasAuthConfig,
    /// The account that owns the user list (`operatingAccount`).
    pub operating_account: ProductAccount,
    /// The account the credentials act as, when it is not the operating account (a manager
    /// account: `loginAccount`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_account: Option<ProductAccount>,
    /// The Customer Match user list's id (`productDestinationId`), digits.
    pub user_list_id: String,
    /// Which columns hold which identifiers, and the consent columns.
    pub audience: AudienceFields,
    /// Whether the advertiser accepted Google's Customer Match Terms of Service
    /// (<https://support.google.com/adspolicy/answer/6299717>). Google refuses Customer
    /// Match uploads without it; the destination refuses to start unless it is `true`.
    #[serde(default)]
    pub terms_of_service_accepted: bool,
    /// Consent for every member of a request (`consent`); a member's own consent columns
    /// override it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<RequestConsent>,
    /// The API's base URL (default `https://datamanager.googleapis.com`).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Shown in reports; default `google_data_manager:<user list id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Members per request, at most 10,000 (the default).
    #[serde(default = "default_max_members")]
    pub max_members_per_request: usize,
    /// Ingestion requests sent per minute, at most (default 300, Google's default quota
    /// per Cloud project; lower it when other integrations share the project).
    #[serde(default = "default_requests_per_minute")]
    pub requests_per_minute: u32,
    /// Whether a `full_resync` run replaces the list's membership: once every change of
    /// the run is delivered, members not sent again by the run are removed (`removeAll`
    /// with `removeAsOfTime` = the run's start). Default `false`.
    #[serde(default)]
    pub replace_on_full_resync: bool,
    /// How far before the run's start `removeAsOfTime` is set, for clocks that disagree:
    /// a member Google stamped before our clock's start of the run would otherwise be
    /// removed although the run sent it. Default 2 minutes; a member a previous run added
    /// within it stays until the next refresh.
    #[serde(default = "default_clock_margin", with = "rse_core::config::duration")]
    pub refresh_clock_margin: Duration,
    /// How long the end of a run waits for Google to finish processing the run's requests
    /// (`requestStatus:retrieve`) for the match rate and error counts; default 60 s.
    /// `0s` skips it.
    #[serde(default = "default_status_wait", with = "rse_core::config::duration")]
    pub status_wait: Duration,
    /// The pause between two rounds of status requests (default 5 s).
    #[serde(default = "default_status_poll_interval", with = "rse_core::config::duration")]
    pub status_poll_interval: Duration,
    /// Timeouts and limits of the HTTP client.
    #[serde(default)]
    pub client: SaasClientOptions,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

fn default_max_members() -> usize {
    MAX_MEMBERS_PER_REQUEST
}

fn default_requests_per_minute() -> u32 {
    DEFAULT_REQUESTS_PER_MINUTE
}

fn default_clock_margin() -> Duration {
    Duration::from_secs(120)
}

fn default_status_wait() -> Duration {
    Duration::from_secs(60)
}

fn default_status_poll_interval() -> Duration {
    Duration::from_secs(5)
}

impl GoogleDataManagerConfig {
    /// Members of user list `user_list_id` owned by `operating_account`, signed in with
    /// `auth`, identified by the columns of `audience`; Terms of Service not yet accepted.
    pub fn new(
        auth: impl Into<SaasAuthConfig>,
        operating_account: ProductAccount,
        user_list_id: impl Into<String>,
        audience: AudienceFields,
    ) -> Self {
        Self {
            auth: auth.into(),
            operating_account,
            login_account: None,
            user_list_id: user_list_id.into(),
            audience,
            terms_of_service_accepted: false,
            consent: None,
            base_url: default_base_url(),
            name: None,
            max_members_per_request: MAX_MEMBERS_PER_REQUEST,
            requests_per_minute: DEFAULT_REQUESTS_PER_MINUTE,
            replace_on_full_resync: false,
            refresh_clock_margin: default_clock_margin(),
            status_wait: default_status_wait(),
            status_poll_interval: default_status_poll_interval(),
            client: SaasClientOptions::default(),
        }
    }

    /// A service account's JWT grant at Google's token endpoint, with the Data Manager
    /// scope: `client_email` and `private_key` are the fields of its JSON key file.
    pub fn service_account(client_email: &str, private_key: impl Into<crate::Secret>) -> SaasAuthConfig {
        SaasAuthConfig::JwtBearer(
            JwtBearerConfig::new(TOKEN_URL, client_email, client_email, private_key)
                .with_audience(TOKEN_URL)
                .with_scope(SCOPE),
        )
    }

    /// Sets the login account (a manager account the credentials act as).
    pub fn with_login_account(mut self, account: ProductAccount) -> Self {
        self.login_account = Some(account);
        self
    }

    /// Records that the advertiser accepted the Customer Match Terms of Service.
    pub fn with_terms_of_service_accepted(mut self, accepted: bool) -> Self {
        self.terms_of_service_accepted = accepted;
        self
    }

    /// Sets the request-level consent.
    pub fn with_consent(mut self, consent: RequestConsent) -> Self {
        self.consent = Some(consent);
        self
    }

    /// Sets the API's base URL.
    pub fn with_base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// Sets the name shown in reports.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the members per request (1 to 10,000).
    pub fn with_max_members_per_request(mut self, n: usize) -> Self {
        self.max_members_per_request = n;
        self
    }

    /// Sets the ingestion requests sent per minute.
    pub fn with_requests_per_minute(mut self, n: u32) -> Self {
        self.requests_per_minute = n;
        self
    }

    /// Sets whether a `full_resync` run replaces the list's membership.
    pub fn with_replace_on_full_resync(mut self, replace: bool) -> Self {
        self.replace_on_full_resync = replace;
        self
    }

    /// Sets how far before the run's start a full refresh's `removeAsOfTime` is set.
    pub fn with_refresh_clock_margin(mut self, margin: Duration) -> Self {
        self.refresh_clock_margin = margin;
        self
    }

    /// Sets how long the end of a run waits for Google's processing status, and the pause
    /// between status requests.
    pub fn with_status_wait(mut self, wait: Duration, poll_interval: Duration) -> Self {
        self.status_wait = wait;
        self.status_poll_interval = poll_interval;
        self
    }

    /// Sets the HTTP client's timeouts and limits.
    pub fn with_client_options(mut self, options: SaasClientOptions) -> Self {
        self.client = options;
        self
    }

    /// The name shown in reports.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| format!("google_data_manager:{}", self.user_list_id))
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`DestinationError::Fatal`] naming the setting at fault and what to write instead.
    pub fn validate(&self) -> Result<(), DestinationError> {
        let name = self.display_name();
        let fail = |m: String| Err(DestinationError::fatal(format!("{name}: {m}")));
        let digits = |s: &str| !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_digit());
        if !self.terms_of_service_accepted {
            return fail(
                "`terms_of_service_accepted` is false; Google refuses Customer Match uploads unless the advertiser \
                 accepted the Customer Match Terms of Service (https://support.google.com/adspolicy/answer/6299717): \
                 have the account's owner accept them, then set `terms_of_service_accepted: true`"
                    .to_owned(),
            );
        }
        if !digits(&self.user_list_id) {
            return fail(format!(
                "`user_list_id` is `{}`; write the Customer Match list's numeric id (Google Ads: Tools → Audience manager)",
                self.user_list_id
            ));
        }
        for (setting, account) in std::iter::once(("operating_account", &self.operating_account))
            .chain(self.login_account.as_ref().map(|a| ("login_account", a)))
        {
            if !digits(&account.account_id) {
                return fail(format!(
                    "`{setting}.account_id` is `{}`; write the account's id in digits only (a Google Ads customer id without dashes, e.g. 1234567890)",
                    account.account_id
                ));
            }
        }
        if self.max_members_per_request == 0 || self.max_members_per_request > MAX_MEMBERS_PER_REQUEST {
            return fail(format!(
                "`max_members_per_request` is {}; Google takes 1 to {MAX_MEMBERS_PER_REQUEST} members per request",
                self.max_members_per_request
            ));
        }
        if self.requests_per_minute == 0 {
            return fail(
                "`requests_per_minute` is 0; allow at least one request (Google's default quota is 300)".to_owned(),
            );
        }
        if self.status_poll_interval.is_zero() && !self.status_wait.is_zero() {
            return fail("`status_poll_interval` is 0s; write a pause between status requests, e.g. 5s".to_owned());
        }
        match reqwest::Url::parse(&self.base_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => Ok(()),
            _ => fail("`base_url` is not an http(s) URL; write e.g. `https://datamanager.googleapis.com`".to_owned()),
        }
    }
}
