//! The configuration of a `GoogleAdsDestination`: which account and list, which columns
//! hold which identifiers, how big the requests and how long the waits.

use std::time::Duration;

use rse_core::DestinationError;
use serde::{Deserialize, Serialize};

use crate::Secret;
use crate::audience::AudienceFields;
use crate::destination::google::RequestConsent;
use crate::saas::{SaasAuthConfig, SaasClientOptions};

/// Where the Google Ads API answers.
pub const DEFAULT_BASE_URL: &str = "https://googleads.googleapis.com";
/// The OAuth scope the credentials need.
pub const SCOPE: &str = "https://www.googleapis.com/auth/adwords";
/// The most identifiers Google takes in one `addOperations` request.
pub const MAX_IDENTIFIERS_PER_REQUEST: usize = 100_000;
/// The most identifiers of one member (one `UserData`).
pub const MAX_IDENTIFIERS_PER_MEMBER: usize = 20;

/// The configuration of a [`GoogleAdsDestination`](super::GoogleAdsDestination), built
/// with `with_*` methods from [`new`](Self::new) or read from a configuration file.
///
/// `auth`, `developer_token`, `customer_id`, `user_list` and `audience` are required; an
/// unknown field is refused; durations read as `"100s"`; secrets are inline or by reference
/// (`{"env": "GOOGLE_ADS_DEVELOPER_TOKEN"}`, `{"file": "/run/secrets/sa.pem"}`). `Debug`
/// shows no secret. A service account signs in with `{"type": "jwt_bearer", "token_url":
/// "https://oauth2.googleapis.com/token", "audience": "https://oauth2.googleapis.com/token",
/// "scope": "https://www.googleapis.com/auth/adwords", "client_id": <its e-mail>, "username":
/// <its e-mail>, "private_key": {"file": …}}`.
///
/// ```
/// use rse_connectors::google::ads::GoogleAdsConfig;
/// let config: GoogleAdsConfig = serde_json::from_str(r#"{
///     "auth": {"type": "oauth_refresh", "token_url": "https://oauth2.googleapis.com/token",
///              "client_id": "123.apps.googleusercontent.com", "client_secret": "s3cret",
///              "refresh_token": "1//r3fresh", "scope": "https://www.googleapis.com/auth/adwords"},
///     "developer_token": "d3v-t0ken",
///     "customer_id": "123-456-7890",
///     "login_customer_id": "9876543210",
///     "user_list": "customers/1234567890/userLists/7777777777",
///     "audience": {"email": "email", "phone": "phone", "ad_user_data_consent": "consent"},
///     "job_wait": "100s"
/// }"#)?;
/// assert_eq!(config.user_list_resource().ok().as_deref(), Some("customers/1234567890/userLists/7777777777"));
/// let shown = format!("{config:?}");
/// assert!(!shown.contains("s3cret") && !shown.contains("d3v-t0ken") && !shown.contains("r3fresh"));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct GoogleAdsConfig {
    /// The credentials: a service account (`{"type": "jwt_bearer", …}` with `audience` and
    /// `token_url` `https://oauth2.googleapis.com/token` and `scope` [`SCOPE`]) or an OAuth
    /// client's refresh token (`{"type": "oauth_refresh", …}`).
    pub auth: SaasAuthConfig,
    /// The Google Ads API developer token (the `developer-token` header).
    pub developer_token: Secret,
    /// The Google Ads account holding the list: ten digits, hyphens allowed.
    pub customer_id: String,
    /// The manager account through which the credentials reach `customer_id`, when they
    /// do so (the `login-customer-id` header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_customer_id: Option<String>,
    /// The Customer Match list: `customers/<customer id>/userLists/<list id>`, or the list
    /// id alone.
    pub user_list: String,
    /// Which columns hold which identifiers, and the consent columns (each member's
    /// consent, sent with it; a member whose mapped consent is not granted is not sent).
    pub audience: AudienceFields,
    /// Consent stated for every member of the list's jobs
    /// (`customerMatchUserListMetadata.consent`), e.g. `{"ad_user_data": true,
    /// "ad_personalization": true}`; a member's own consent overrides it. Google requires
    /// consent for members in the European Economic Area.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<RequestConsent>,
    /// Identifiers per `addOperations` request (default 10,000, as Google recommends; at
    /// most 100,000).
    #[serde(default = "default_identifiers_per_request")]
    pub identifiers_per_request: usize,
    /// How long a write waits for a job to finish (default 100 s, within the runner's
    /// default `write_timeout` of 120 s; keep it below the sync's `write_timeout`). A job
    /// still running then fails the write as transient; the batch's next attempt finds the
    /// job by its external id and waits again, and a run that ends first leaves it to the
    /// next run. Google can take hours on a large list: raise both for one.
    #[serde(default = "default_job_wait", with = "rse_core::config::duration")]
    pub job_wait: Duration,
    /// The first pause between polls of a job (default 2 s; pauses double up to 30 s).
    #[serde(default = "default_poll_interval", with = "rse_core::config::duration")]
    pub poll_interval: Duration,
    /// On a full resync, empty the list first (`removeAll` as the first job's first
    /// operation), so that it holds exactly the segment afterwards (default off). An
    /// interrupted full refresh leaves the list partial until a full resync runs to the
    /// end.
    #[serde(default)]
    pub replace_on_full_resync: bool,
    /// Ask for the match-rate preview (default on): the report's match rate.
    #[serde(default = "default_true")]
    pub match_rate_preview: bool,
    /// Members per write (default 10,000): each write runs up to two jobs.
    #[serde(default = "default_max_batch_rows")]
    pub max_batch_rows: usize,
    /// The API's base URL (default [`DEFAULT_BASE_URL`]).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Shown in reports; default `google_ads:<list id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Timeouts and limits of the HTTP client.
    #[serde(default)]
    pub client: SaasClientOptions,
}

fn default_identifiers_per_request() -> usize {
    10_000
}
fn default_job_wait() -> Duration {
    Duration::from_secs(100)
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_true() -> bool {
    true
}
fn default_max_batch_rows() -> usize {
    10_000
}
fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

/// Ten digits from `text` without hyphens, or an error naming `setting`.
fn customer(text: &str, setting: &str) -> Result<String, DestinationError> {
    let digits: String = text.chars().filter(|c| *c != '-').collect();
    if digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(digits)
    } else {
        Err(DestinationError::fatal(format!(
            "google_ads: `{setting}` must be a Google Ads customer id of ten digits, e.g. 123-456-7890"
        )))
    }
}

impl GoogleAdsConfig {
    /// List `user_list` of account `customer_id`, signed in with `auth` and
    /// `developer_token`, identified by the columns `audience` names.
    pub fn new(
        auth: impl Into<SaasAuthConfig>,
        developer_token: impl Into<Secret>,
        customer_id: impl Into<String>,
        user_list: impl Into<String>,
        audience: AudienceFields,
    ) -> Self {
        Self {
            auth: auth.into(),
            developer_token: developer_token.into(),
            customer_id: customer_id.into(),
            login_customer_id: None,
            user_list: user_list.into(),
            audience,
            consent: None,
            identifiers_per_request: default_identifiers_per_request(),
            job_wait: default_job_wait(),
            poll_interval: default_poll_interval(),
            replace_on_full_resync: false,
            match_rate_preview: true,
            max_batch_rows: default_max_batch_rows(),
            base_url: default_base_url(),
            name: None,
            client: SaasClientOptions::default(),
        }
    }

    /// Reaches the account through manager account `id`.
    pub fn with_login_customer_id(mut self, id: impl Into<String>) -> Self {
        self.login_customer_id = Some(id.into());
        self
    }

    /// States `consent` for every member of the list's jobs.
    pub fn with_consent(mut self, consent: RequestConsent) -> Self {
        self.consent = Some(consent);
        self
    }

    /// Identifiers per `addOperations` request.
    pub fn with_identifiers_per_request(mut self, n: usize) -> Self {
        self.identifiers_per_request = n;
        self
    }

    /// How long a write waits for a job.
    pub fn with_job_wait(mut self, wait: Duration) -> Self {
        self.job_wait = wait;
        self
    }

    /// The first pause between polls.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Empties the list first on a full resync.
    pub fn with_replace_on_full_resync(mut self, replace: bool) -> Self {
        self.replace_on_full_resync = replace;
        self
    }

    /// Asks for the match-rate preview, or not.
    pub fn with_match_rate_preview(mut self, preview: bool) -> Self {
        self.match_rate_preview = preview;
        self
    }

    /// Members per write.
    pub fn with_max_batch_rows(mut self, rows: usize) -> Self {
        self.max_batch_rows = rows;
        self
    }

    /// The API's base URL (a contract server in tests).
    pub fn with_base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// The name in reports.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The HTTP client's options.
    pub fn with_client(mut self, options: SaasClientOptions) -> Self {
        self.client = options;
        self
    }

    /// `customer_id` without hyphens.
    ///
    /// # Errors
    /// When it is not ten digits.
    pub fn customer(&self) -> Result<String, DestinationError> {
        customer(&self.customer_id, "customer_id")
    }

    /// `login_customer_id` without hyphens.
    ///
    /// # Errors
    /// When it is set and not ten digits.
    pub fn login_customer(&self) -> Result<Option<String>, DestinationError> {
        self.login_customer_id.as_deref().map(|id| customer(id, "login_customer_id")).transpose()
    }

    /// The list's resource name, `customers/<customer>/userLists/<id>`.
    ///
    /// # Errors
    /// When `user_list` is neither a list id nor a resource name of `customer_id`.
    pub fn user_list_resource(&self) -> Result<String, DestinationError> {
        let owner_id = self.customer()?;
        let list = self.user_list.trim();
        let id = match list.strip_prefix("customers/") {
            Some(rest) => {
                let (owner, id) = rest.split_once("/userLists/").unwrap_or(("", ""));
                if customer(owner, "user_list").ok().as_deref() != Some(owner_id.as_str()) {
                    return Err(DestinationError::fatal(
                        "google_ads: `user_list` names another account than `customer_id`; write it as \
                         `customers/<customer_id>/userLists/<list id>` or give the list id alone",
                    ));
                }
                id
            }
            None => list,
        };
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DestinationError::fatal(
                "google_ads: `user_list` must be a list id (digits) or `customers/<customer_id>/userLists/<list id>`",
            ));
        }
        Ok(format!("customers/{owner_id}/userLists/{id}"))
    }

    /// The name in reports.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            let id = self.user_list.rsplit('/').next().unwrap_or(&self.user_list);
            format!("google_ads:{id}")
        })
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// [`DestinationError::Fatal`] naming the setting and what to change.
    pub fn validate(&self) -> Result<(), DestinationError> {
        self.customer()?;
        self.login_customer()?;
        self.user_list_resource()?;
        if self.developer_token.expose().trim().is_empty() {
            return Err(DestinationError::fatal(
                "google_ads: `developer_token` is empty; set the account's developer token",
            ));
        }
        if self.identifiers_per_request < MAX_IDENTIFIERS_PER_MEMBER
            || self.identifiers_per_request > MAX_IDENTIFIERS_PER_REQUEST
        {
            return Err(DestinationError::fatal(format!(
                "google_ads: `identifiers_per_request` is {}; set it from {MAX_IDENTIFIERS_PER_MEMBER} to {MAX_IDENTIFIERS_PER_REQUEST} (Google recommends 10,000)",
                self.identifiers_per_request
            )));
        }
        if self.job_wait.is_zero() {
            return Err(DestinationError::fatal(
                "google_ads: `job_wait` is zero; give jobs time to finish, e.g. \"10m\"",
            ));
        }
        if self.max_batch_rows == 0 {
            return Err(DestinationError::fatal("google_ads: `max_batch_rows` is zero; set at least 1"));
        }
        if reqwest::Url::parse(&self.base_url).map(|u| !matches!(u.scheme(), "http" | "https")).unwrap_or(true) {
            return Err(DestinationError::fatal("google_ads: `base_url` is not an http(s) URL"));
        }
        Ok(())
    }
}
