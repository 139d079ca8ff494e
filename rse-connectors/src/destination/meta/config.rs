//! The configuration of a `MetaAudienceDestination`: which audience, which columns hold
//! which identifiers, which Graph API version, how many rows per call, and whether a full
//! refresh replaces the audience.

use rse_core::DestinationError;
use serde::{Deserialize, Serialize};

use crate::audience::AudienceFields;
use crate::destination::Secret;
use crate::saas::SaasClientOptions;

/// Where the Graph API answers.
pub const DEFAULT_BASE_URL: &str = "https://graph.facebook.com";

/// The Graph API version used unless configured (the version Meta's Marketing API pages
/// show at the time of writing).
pub const DEFAULT_GRAPH_API_VERSION: &str = "v25.0";

/// The most rows Meta takes in one `/users` or `/usersreplace` call.
pub const MAX_ROWS_PER_REQUEST: usize = 10_000;

/// The configuration of a [`MetaAudienceDestination`](super::MetaAudienceDestination),
/// built with `with_*` methods from [`new`](Self::new) or read from a configuration file.
///
/// In a file `audience_id`, `access_token` and `fields` are required; every other field
/// takes the default `new` gives it, an unknown field is refused, and the token is inline
/// or by reference (`{"env": "META_ACCESS_TOKEN"}`). `Debug` shows no secret.
///
/// ```
/// use rse_connectors::MetaAudienceConfig;
/// let config: MetaAudienceConfig = serde_json::from_str(r#"{
///     "audience_id": "23850000000000001",
///     "access_token": "EAAG-s3cret",
///     "fields": {"email": "email", "phone": "phone", "country": "country", "consent": "ads_ok"},
///     "graph_api_version": "v25.0",
///     "replace_on_full_resync": true
/// }"#)?;
/// assert!(!format!("{config:?}").contains("s3cret"));
/// let typo = serde_json::from_str::<MetaAudienceConfig>(
///     r#"{"audience_id": "1", "access_token": "t", "fields": {"email": "e"}, "rows_per_requets": 10}"#,
/// );
/// assert!(typo.unwrap_err().to_string().contains("unknown field `rows_per_requets`"));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MetaAudienceConfig {
    /// The customer-list custom audience's id (digits), e.g. `23850000000000001`.
    pub audience_id: String,
    /// A system user's access token with the `ads_management` permission, the system user
    /// an admin of the audience's ad account. Sent as `Authorization: Bearer`.
    pub access_token: Secret,
    /// Which source column holds which identifier, and the consent column.
    pub fields: AudienceFields,
    /// The Graph API version in every path (default [`DEFAULT_GRAPH_API_VERSION`]).
    #[serde(default = "default_version")]
    pub graph_api_version: String,
    /// The Graph API's base URL (default `https://graph.facebook.com`).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Members per call, 1 to 10,000 (the default, Meta's maximum).
    #[serde(default = "default_rows")]
    pub rows_per_request: usize,
    /// Whether a full refresh ([`SyncOptions::full_resync`](rse_core::SyncOptions)) sends
    /// the members through `/usersreplace`, which replaces the audience without resetting
    /// the learning phase of the ad sets using it (default off: a full refresh adds and
    /// removes through `/users` like any run).
    #[serde(default)]
    pub replace_on_full_resync: bool,
    /// Shown in reports; default `meta:<audience_id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Timeouts and limits of the HTTP client.
    #[serde(default)]
    pub client: SaasClientOptions,
}

fn default_version() -> String {
    DEFAULT_GRAPH_API_VERSION.to_owned()
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

fn default_rows() -> usize {
    MAX_ROWS_PER_REQUEST
}

impl MetaAudienceConfig {
    /// Audience `audience_id`, written with `access_token`, its identifiers in `fields`.
    pub fn new(audience_id: impl Into<String>, access_token: impl Into<Secret>, fields: AudienceFields) -> Self {
        Self {
            audience_id: audience_id.into(),
            access_token: access_token.into(),
            fields,
            graph_api_version: default_version(),
            base_url: default_base_url(),
            rows_per_request: default_rows(),
            replace_on_full_resync: false,
            name: None,
            client: SaasClientOptions::default(),
        }
    }

    /// The Graph API version (`v25.0`).
    pub fn with_graph_api_version(mut self, version: impl Into<String>) -> Self {
        self.graph_api_version = version.into();
        self
    }

    /// The Graph API's base URL (a test server, a proxy).
    pub fn with_base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// Members per call (1 to 10,000).
    pub fn with_rows_per_request(mut self, rows: usize) -> Self {
        self.rows_per_request = rows;
        self
    }

    /// Whether a full refresh replaces the audience through `/usersreplace`.
    pub fn with_replace_on_full_resync(mut self, replace: bool) -> Self {
        self.replace_on_full_resync = replace;
        self
    }

    /// The name shown in reports.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Timeouts and limits of the HTTP client.
    pub fn with_client_options(mut self, options: SaasClientOptions) -> Self {
        self.client = options;
        self
    }

    /// The name shown in reports.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| format!("meta:{}", self.audience_id))
    }

    /// Checks the settings without any I/O.
    ///
    /// # Errors
    /// [`DestinationError::Fatal`] naming the setting at fault and what to write instead.
    pub fn validate(&self) -> Result<(), DestinationError> {
        let name = self.display_name();
        let fail = |m: String| Err(DestinationError::fatal(format!("{name}: {m}")));
        if self.audience_id.is_empty() || !self.audience_id.bytes().all(|b| b.is_ascii_digit()) {
            return fail(format!(
                "`audience_id` is `{}`; write the custom audience's numeric id (Audience Manager shows it)",
                self.audience_id
            ));
        }
        let version_ok = self.graph_api_version.strip_prefix('v').is_some_and(|v| {
            let mut parts = v.split('.');
            let digits = |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            digits(parts.next()) && digits(parts.next()) && parts.next().is_none()
        });
        if !version_ok {
            return fail(format!(
                "`graph_api_version` is `{}`; write a version as Meta does, e.g. `{DEFAULT_GRAPH_API_VERSION}`",
                self.graph_api_version
            ));
        }
        if self.rows_per_request == 0 || self.rows_per_request > MAX_ROWS_PER_REQUEST {
            return fail(format!(
                "`rows_per_request` is {}; Meta takes 1 to {MAX_ROWS_PER_REQUEST} members per call",
                self.rows_per_request
            ));
        }
        match reqwest::Url::parse(&self.base_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => Ok(()),
            _ => fail(format!("`base_url` is not an http(s) URL; write e.g. `{DEFAULT_BASE_URL}`")),
        }
    }
}
