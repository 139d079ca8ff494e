//! The configuration of a `SalesforceDestination`, as data: which sObject, the external id
//! field, the field mapping, the credentials, the Bulk API settings.

use std::time::Duration;

use rse_core::DestinationError;
use serde::{Deserialize, Serialize};

use crate::saas::{FieldMap, PollOptions, SaasAuthConfig, SaasClientOptions};

/// The REST API version used unless the configuration names another.
pub const DEFAULT_API_VERSION: &str = "v66.0";

/// The oldest API version served: sObject Collections upsert by external id came with 46.0.
const OLDEST_VERSION: (u32, u32) = (46, 0);

/// How many upserts a batch needs before it goes by Bulk API 2.0 (Salesforce suggests Bulk
/// above about 2,000 records).
pub const DEFAULT_BULK_MIN_RECORDS: usize = 2_000;

/// The most bytes of CSV one Bulk upload carries: Salesforce takes 100 MB a job (150 MB
/// once base64-encoded); a decimal 100 MB leaves a margin under both readings.
pub const DEFAULT_MAX_UPLOAD_BYTES: usize = 100_000_000;

fn default_api_version() -> String {
    DEFAULT_API_VERSION.to_owned()
}

fn default_max_batch_rows() -> usize {
    10_000
}

fn default_max_concurrency() -> usize {
    4
}

fn default_upload_timeout() -> Duration {
    Duration::from_secs(600)
}

/// How large batches go by Bulk API 2.0; every field optional in a configuration:
/// `{"min_records": 5000, "poll": {"max_wait": "2h"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SalesforceBulkOptions {
    /// Whether large batches go by Bulk API 2.0 at all (default true); off, every batch goes
    /// by sObject Collections, 200 records a request.
    pub enabled: bool,
    /// A batch with at least this many records to upsert goes by Bulk (default 2,000). The
    /// runner's batches hold [`SyncOptions::batch_rows`](rse_core::SyncOptions) changes (1,000
    /// by default): raise it (and `batch_bytes`) for an initial load.
    pub min_records: usize,
    /// The most bytes of CSV one job's upload carries (default 100,000,000); a batch whose
    /// CSV is larger goes as several jobs.
    pub max_upload_bytes: usize,
    /// The longest one upload may take (default ten minutes).
    #[serde(with = "rse_core::config::duration")]
    pub upload_timeout: Duration,
    /// How a job is waited for (default: pauses from 1 s growing to 30 s, at most one hour
    /// in all). A write waits for its jobs, so
    /// [`SyncOptions::write_timeout`](rse_core::SyncOptions) (120 s by default) must be
    /// longer than `max_wait` for large jobs: the runner abandons a write that takes longer,
    /// its jobs are aborted, and the batch is sent again.
    pub poll: PollOptions,
    /// Whether the first Bulk write of a process aborts the `Open` upsert jobs an earlier
    /// process of this integration user left on the same object and external id field
    /// (default true; see the module docs, "Crash safety").
    pub abort_stale_jobs: bool,
}

impl Default for SalesforceBulkOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            min_records: DEFAULT_BULK_MIN_RECORDS,
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            upload_timeout: default_upload_timeout(),
            poll: PollOptions::default(),
            abort_stale_jobs: true,
        }
    }
}

impl SalesforceBulkOptions {
    /// Bulk for batches of at least `records` upserts.
    pub fn with_min_records(mut self, records: usize) -> Self {
        self.min_records = records;
        self
    }

    /// Turns the Bulk path on or off.
    pub fn with_enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// The most bytes of CSV per job.
    pub fn with_max_upload_bytes(mut self, bytes: usize) -> Self {
        self.max_upload_bytes = bytes;
        self
    }

    /// The longest one upload may take.
    pub fn with_upload_timeout(mut self, timeout: Duration) -> Self {
        self.upload_timeout = timeout;
        self
    }

    /// How jobs are waited for.
    pub fn with_poll(mut self, poll: PollOptions) -> Self {
        self.poll = poll;
        self
    }

    /// Whether stale `Open` jobs are aborted.
    pub fn with_abort_stale_jobs(mut self, abort: bool) -> Self {
        self.abort_stale_jobs = abort;
        self
    }
}

/// The configuration of a [`SalesforceDestination`](super::SalesforceDestination).
///
/// In a file `auth`, `object` and `external_id_field` are required and every other field
/// has a default; an unknown field is refused by name, durations read as `"30s"`, secrets
/// inline or by reference (`{"env": …}`, `{"file": …}`). `Debug` shows no secret.
///
/// ```
/// use rse_connectors::SalesforceDestinationConfig;
/// // In a real configuration the key is a reference: `{"file": "/run/secrets/sf.pem"}`.
/// let config: SalesforceDestinationConfig = serde_json::from_str(r#"{
///     "auth": {
///         "type": "jwt_bearer",
///         "token_url": "https://login.salesforce.com/services/oauth2/token",
///         "client_id": "3MVG9…",
///         "username": "integration@example.com",
///         "private_key": "-----BEGIN PRIVATE KEY-----…"
///     },
///     "object": "Contact",
///     "external_id_field": "Rse_Ext_Id__c",
///     "fields": [{"field": "last_name", "property": "LastName"}, {"field": "email", "property": "Email"}],
///     "bulk": {"min_records": 5000}
/// }"#)?;
/// assert_eq!(config.api_version, "v66.0");
/// assert!(!format!("{config:?}").contains("BEGIN PRIVATE KEY"));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SalesforceDestinationConfig {
    /// Shown in reports as `salesforce:<name>`; by default the sObject's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The credentials: the JWT bearer flow (`jwt_bearer`, server to server) or a refresh
    /// token (`oauth_refresh`); a static `bearer` session id works too, with `instance_url`.
    pub auth: SaasAuthConfig,
    /// The org's API host, e.g. `https://acme.my.salesforce.com`, used only when the token
    /// endpoint does not say it (a static bearer token): an OAuth answer's `instance_url`
    /// is where the org lives now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_url: Option<String>,
    /// The REST API version, `v66.0` (or `66.0`) by default; 46.0 at the oldest.
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// The sObject written, e.g. `Contact`, `Account`, `Subscription__c`.
    pub object: String,
    /// The field records are upserted by: a custom field marked External ID (and, best,
    /// Unique), e.g. `Rse_Ext_Id__c`.
    pub external_id_field: String,
    /// The model field whose value goes into `external_id_field` (text or integer); by
    /// default the sync key, which must then be a single field.
    ///
    /// With a field other than the key, a `Mirror` delete of a key this sync holds no record
    /// id for (its upsert's answer was lost) cannot find the record (a delete carries the key,
    /// not the field): it is answered as applied, with a warning, and the record stays. With
    /// the key, the record is found by its external id and deleted (see the module docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id_source: Option<String>,
    /// The model fields written, each to a field of the sObject (API names).
    #[serde(default)]
    pub fields: FieldMap,
    /// How large batches go by Bulk API 2.0.
    #[serde(default)]
    pub bulk: SalesforceBulkOptions,
    /// The most changes one write takes (default 10,000), which bounds Bulk jobs: the
    /// runner's `batch_rows` is capped by it.
    #[serde(default = "default_max_batch_rows")]
    pub max_batch_rows: usize,
    /// The most writes at once (default 4).
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// Timeouts and read caps of the HTTP client.
    #[serde(default)]
    pub client: SaasClientOptions,
}

impl SalesforceDestinationConfig {
    /// Upserts into `object` by `external_id_field`, signed in with `auth`; the other
    /// settings at their defaults and no field mapped yet.
    pub fn new(
        auth: impl Into<SaasAuthConfig>,
        object: impl Into<String>,
        external_id_field: impl Into<String>,
    ) -> Self {
        Self {
            name: None,
            auth: auth.into(),
            instance_url: None,
            api_version: default_api_version(),
            object: object.into(),
            external_id_field: external_id_field.into(),
            external_id_source: None,
            fields: FieldMap::new(),
            bulk: SalesforceBulkOptions::default(),
            max_batch_rows: default_max_batch_rows(),
            max_concurrency: default_max_concurrency(),
            client: SaasClientOptions::default(),
        }
    }

    /// The name in reports (`salesforce:<name>`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The API host to use when the token endpoint names none.
    pub fn with_instance_url(mut self, url: impl Into<String>) -> Self {
        self.instance_url = Some(url.into());
        self
    }

    /// The REST API version (`v66.0` or `66.0`).
    pub fn with_api_version(mut self, version: impl Into<String>) -> Self {
        self.api_version = version.into();
        self
    }

    /// The model field holding the external id (instead of the key); see
    /// [`external_id_source`](Self::external_id_source) for what it means for deletes.
    pub fn with_external_id_source(mut self, field: impl Into<String>) -> Self {
        self.external_id_source = Some(field.into());
        self
    }

    /// Maps the model's `field` to the sObject field `property`.
    pub fn with_field(mut self, field: impl Into<String>, property: impl Into<String>) -> Self {
        self.fields.push(field, property);
        self
    }

    /// Replaces the field mapping.
    pub fn with_fields(mut self, fields: FieldMap) -> Self {
        self.fields = fields;
        self
    }

    /// The Bulk API settings.
    pub fn with_bulk(mut self, bulk: SalesforceBulkOptions) -> Self {
        self.bulk = bulk;
        self
    }

    /// The most changes one write takes.
    pub fn with_max_batch_rows(mut self, rows: usize) -> Self {
        self.max_batch_rows = rows;
        self
    }

    /// The most writes at once.
    pub fn with_max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n;
        self
    }

    /// The HTTP client's timeouts and caps.
    pub fn with_client_options(mut self, options: SaasClientOptions) -> Self {
        self.client = options;
        self
    }

    /// Checks what can be checked without the org: names, version, bounds. Returns the
    /// version as `vNN.N`.
    pub(super) fn validate(&self) -> Result<String, DestinationError> {
        let fatal = |message: String| Err(DestinationError::fatal(format!("salesforce: {message}")));
        if !api_name(&self.object) {
            return fatal(format!(
                "`object` is `{}`, not an sObject API name (letters, digits and underscores, e.g. `Contact` or `Invoice__c`)",
                self.object
            ));
        }
        if !api_name(&self.external_id_field) {
            return fatal(format!(
                "`external_id_field` is `{}`, not a field API name (e.g. `Rse_Ext_Id__c`)",
                self.external_id_field
            ));
        }
        if let Some(property) = self.fields.iter().map(|m| m.property.as_str()).find(|p| !api_name(p)) {
            return fatal(format!(
                "`fields` maps to `{property}`, not a field API name (letters, digits and underscores)"
            ));
        }
        if self.max_batch_rows == 0 || self.max_concurrency == 0 {
            return fatal("`max_batch_rows` and `max_concurrency` must be at least 1".to_owned());
        }
        if self.bulk.min_records == 0 || self.bulk.max_upload_bytes < 1024 {
            return fatal(
                "`bulk.min_records` must be at least 1 and `bulk.max_upload_bytes` at least 1024 (set `bulk.enabled` to false to turn Bulk off)"
                    .to_owned(),
            );
        }
        if let Some(url) = &self.instance_url {
            match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => return fatal("`instance_url` is not an http or https URL".to_owned()),
            }
        }
        api_version(&self.api_version)
    }
}

/// Whether `name` has the shape of a Salesforce API name.
pub(super) fn api_name(name: &str) -> bool {
    name.len() <= 80
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `66.0` or `v66.0` as `v66.0`, at least 46.0.
fn api_version(text: &str) -> Result<String, DestinationError> {
    let bare = text.strip_prefix('v').unwrap_or(text);
    let parsed = bare.split_once('.').and_then(|(major, minor)| {
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        (digits(major) && digits(minor) && minor.len() == 1)
            .then(|| Some((major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?)))
            .flatten()
    });
    match parsed {
        Some(version) if version >= OLDEST_VERSION => Ok(format!("v{bare}")),
        Some(_) => Err(DestinationError::fatal(format!(
            "salesforce: `api_version` is {text}; sObject Collections upsert needs 46.0 or later (default {DEFAULT_API_VERSION})"
        ))),
        None => Err(DestinationError::fatal(format!(
            "salesforce: `api_version` is `{text}`, not a version such as `v66.0`"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_normalized_and_old_ones_refused() {
        assert_eq!(api_version("66.0").ok().as_deref(), Some("v66.0"));
        assert_eq!(api_version("v46.0").ok().as_deref(), Some("v46.0"));
        for bad in ["v45.0", "66", "v66.00", "latest", "v.0"] {
            assert!(api_version(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn api_names_are_letters_digits_and_underscores() {
        for good in ["Contact", "Rse_Ext_Id__c", "ns__Thing__c"] {
            assert!(api_name(good), "{good}");
        }
        for bad in ["", "1Contact", "Contact/1", "Last Name", "a.b"] {
            assert!(!api_name(bad), "{bad}");
        }
    }
}
