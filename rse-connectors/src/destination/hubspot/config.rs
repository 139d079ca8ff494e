//! The configuration of a `HubSpotDestination`: which object, matched by which unique
//! property, which fields, through which API version, how fast.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rse_core::DestinationError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::saas::{FieldMap, SaasAuthConfig, SaasClientOptions};

/// Where HubSpot's API answers.
pub const DEFAULT_BASE_URL: &str = "https://api.hubapi.com";

/// The most inputs HubSpot takes in one batch call.
pub const MAX_BATCH_INPUTS: usize = 100;

/// A HubSpot API version, written as it appears in the path.
///
/// | version | path | a refused input comes back as |
/// |---|---|---|
/// | `2026-03` (default) | `/crm/objects/2026-03/{object}/batch/upsert` | HTTP 207 with `results` and `errors` |
/// | `2026-09` | `/crm/objects/2026-09/{object}/batch/upsert` | HTTP 200 with `errors` and `numErrors`; account validation rules apply to every write |
/// | `v3` (legacy, supported until September 2027) | `/crm/v3/objects/{object}/batch/upsert` | HTTP 207 |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ApiVersion {
    /// `2026-03`.
    #[default]
    #[serde(rename = "2026-03")]
    V2026_03,
    /// `2026-09`.
    #[serde(rename = "2026-09")]
    V2026_09,
    /// The legacy `v3` paths.
    #[serde(rename = "v3")]
    V3,
}

impl ApiVersion {
    /// The version as written in paths and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V2026_03 => "2026-03",
            ApiVersion::V2026_09 => "2026-09",
            ApiVersion::V3 => "v3",
        }
    }

    /// The path of `object`'s records, without a leading slash.
    pub(super) fn objects_path(self, object: &str) -> String {
        match self {
            ApiVersion::V3 => format!("crm/v3/objects/{object}"),
            dated => format!("crm/objects/{}/{object}", dated.as_str()),
        }
    }

    /// The path of `object`'s property definitions, without a leading slash.
    pub(super) fn properties_path(self, object: &str) -> String {
        match self {
            ApiVersion::V3 => format!("crm/v3/properties/{object}"),
            dated => format!("crm/properties/{}/{object}", dated.as_str()),
        }
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The account's burst limit: at most `requests` calls in any rolling `per` (HubSpot's
/// "ten-secondly" limit). In configuration `{"requests": 190, "per": "10s"}`.
///
/// | app | limit |
/// |---|---|
/// | private app, Free or Starter; public OAuth app | 100 per 10 s (the default) |
/// | private app, Professional or Enterprise | 190 per 10 s |
/// | with the API limit increase | 250 per 10 s |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BurstLimit {
    /// Calls allowed in the window.
    pub requests: u32,
    /// The window's length.
    #[serde(with = "rse_core::config::duration")]
    pub per: Duration,
}

impl Default for BurstLimit {
    fn default() -> Self {
        Self { requests: 100, per: Duration::from_secs(10) }
    }
}

impl BurstLimit {
    /// `requests` per ten seconds.
    pub fn per_ten_seconds(requests: u32) -> Self {
        Self { requests, per: Duration::from_secs(10) }
    }
}

/// The account's time zone as an offset from UTC, which says when its daily allowance
/// resets (midnight there). Written `"+00:00"` (the default), `"-05:00"`, `"+05:30"`, or
/// `"Z"`/`"UTC"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct UtcOffset {
    minutes: i16,
}

impl UtcOffset {
    /// UTC.
    pub const UTC: UtcOffset = UtcOffset { minutes: 0 };

    /// `minutes` east of UTC (negative west of it).
    ///
    /// # Errors
    /// When the offset is beyond ±18 hours.
    pub fn from_minutes(minutes: i32) -> Result<Self, String> {
        if minutes.abs() > 18 * 60 {
            return Err(format!("a UTC offset of {minutes} minutes is beyond ±18 hours"));
        }
        i16::try_from(minutes).map(|minutes| Self { minutes }).map_err(|_| "offset out of range".to_owned())
    }

    /// Minutes east of UTC.
    pub fn minutes(self) -> i32 {
        i32::from(self.minutes)
    }
}

impl fmt::Display for UtcOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.minutes < 0 { '-' } else { '+' };
        let abs = self.minutes.unsigned_abs();
        write!(f, "{sign}{:02}:{:02}", abs / 60, abs % 60)
    }
}

impl FromStr for UtcOffset {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("z") || text.eq_ignore_ascii_case("utc") {
            return Ok(Self::UTC);
        }
        let bad = || format!("`{text}` is not a UTC offset; write it as `+HH:MM` or `-HH:MM`, e.g. `-05:00`");
        let (sign, rest) = match text.as_bytes().first() {
            Some(b'+') => (1, &text[1..]),
            Some(b'-') => (-1, &text[1..]),
            _ => return Err(bad()),
        };
        let (hours, minutes) = rest.split_once(':').ok_or_else(bad)?;
        let digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(hours) || !digits(minutes) {
            return Err(bad());
        }
        let (hours, minutes): (i32, i32) = (hours.parse().map_err(|_| bad())?, minutes.parse().map_err(|_| bad())?);
        if minutes >= 60 {
            return Err(bad());
        }
        Self::from_minutes(sign * (hours * 60 + minutes))
    }
}

impl Serialize for UtcOffset {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for UtcOffset {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The configuration of a [`HubSpotDestination`](super::HubSpotDestination), built with
/// `with_*` methods from [`new`](Self::new) or read from a configuration file.
///
/// In a file `object`, `auth` and `fields` are required; every other field takes the
/// default `new` gives it, an unknown field is refused, durations read as `"30s"`, and the
/// auth's secrets are inline or by reference (`{"env": "HUBSPOT_TOKEN"}`). `Debug` shows
/// no secret.
///
/// ```
/// use rse_connectors::HubSpotDestinationConfig;
/// let config: HubSpotDestinationConfig = serde_json::from_str(r#"{
///     "object": "contacts",
///     "auth": {"type": "bearer", "token": "pat-na1-s3cret"},
///     "fields": [
///         {"field": "email", "property": "email"},
///         {"field": "first_name", "property": "firstname"}
///     ],
///     "api_version": "2026-09",
///     "rate_limit": {"requests": 190, "per": "10s"},
///     "account_utc_offset": "-05:00"
/// }"#)?;
/// assert_eq!(config.id_property(), Some("email"), "contacts are matched by email");
/// assert!(!format!("{config:?}").contains("s3cret"));
///
/// let typo = serde_json::from_str::<HubSpotDestinationConfig>(
///     r#"{"object": "contacts", "auth": {"type": "bearer", "token": "t"}, "fields": [], "api_verison": "v3"}"#,
/// );
/// assert!(typo.unwrap_err().to_string().contains("unknown field `api_verison`"));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HubSpotDestinationConfig {
    /// The object type: `contacts`, `companies`, `deals`, … or a custom object's type id
    /// (`2-123456`).
    pub object: String,
    /// The credentials: a private-app token (`{"type": "bearer", "token": …}`) or an OAuth
    /// app's refresh token (`{"type": "oauth_refresh", "token_url":
    /// "https://api.hubapi.com/oauth/v1/token", …}`).
    pub auth: SaasAuthConfig,
    /// Which record field goes to which HubSpot property (internal names). One of them
    /// must be the `id_property`: its value finds the record.
    pub fields: FieldMap,
    /// The unique property upserts match records by (`idProperty`). Default `email` for
    /// contacts; required for every other object (companies have no unique property until
    /// the account creates one, e.g. `external_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_property: Option<String>,
    /// Whether the id value is trimmed and lower-cased before it is sent. HubSpot matches
    /// it exactly, so `Ada@Example.com` and `ada@example.com` would be two contacts.
    /// Default: on for `email`, off otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lowercase_id: Option<bool>,
    /// A property with unique values that the destination writes with every upsert,
    /// holding the sync key's value as text (`"42"`; a key of several columns as the JSON
    /// array of their texts, `["eu","42"]`). Optional. It lets a Mirror delete find the
    /// record of a key whose write's answer was lost, when no key column is mapped to the
    /// id property; without it such a delete is applied without a call, and may leave the
    /// record behind (see the [module docs](super#deletes-mirror-mode)).
    ///
    /// Create it in HubSpot as a single-line text property with "Require unique values for
    /// this property" on (Settings → Properties → Create property; or `POST
    /// /crm/properties/{version}/{object}` with its `name`, `label`, `groupName` and
    /// `"type": "string", "fieldType": "text", "hasUniqueValue": true`), e.g.
    /// `rse_sync_key`: one per sync writing the object, and not in `fields`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_property: Option<String>,
    /// The API version (default `2026-03`).
    #[serde(default)]
    pub api_version: ApiVersion,
    /// The API's base URL (default `https://api.hubapi.com`).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Shown in reports; default `hubspot:<object>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The account's burst limit (default 100 per 10 s; see [`BurstLimit`]).
    #[serde(default)]
    pub rate_limit: BurstLimit,
    /// The most batch calls in flight at once (default 4).
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// Inputs per batch call, at most 100 (the default).
    #[serde(default = "default_max_batch_rows")]
    pub max_batch_rows: usize,
    /// The account's time zone, for when the daily allowance resets (default UTC).
    #[serde(default)]
    pub account_utc_offset: UtcOffset,
    /// Timeouts and limits of the HTTP client.
    #[serde(default)]
    pub client: SaasClientOptions,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

fn default_max_concurrency() -> usize {
    4
}

fn default_max_batch_rows() -> usize {
    MAX_BATCH_INPUTS
}

impl HubSpotDestinationConfig {
    /// Records of `object` (`contacts`, `companies`, a custom object's type id), signed in
    /// with `auth`, no field mapped yet.
    pub fn new(object: impl Into<String>, auth: impl Into<SaasAuthConfig>) -> Self {
        Self {
            object: object.into(),
            auth: auth.into(),
            fields: FieldMap::new(),
            id_property: None,
            lowercase_id: None,
            key_property: None,
            api_version: ApiVersion::default(),
            base_url: default_base_url(),
            name: None,
            rate_limit: BurstLimit::default(),
            max_concurrency: default_max_concurrency(),
            max_batch_rows: default_max_batch_rows(),
            account_utc_offset: UtcOffset::UTC,
            client: SaasClientOptions::default(),
        }
    }

    /// Contacts (matched by `email`) signed in with a private-app token.
    pub fn contacts(private_app_token: impl Into<crate::Secret>) -> Self {
        Self::new("contacts", SaasAuthConfig::Bearer { token: private_app_token.into() })
    }

    /// Sends `field` as HubSpot property `property`.
    pub fn with_field(mut self, field: impl Into<String>, property: impl Into<String>) -> Self {
        self.fields.push(field, property);
        self
    }

    /// Replaces the field map.
    pub fn with_fields(mut self, fields: FieldMap) -> Self {
        self.fields = fields;
        self
    }

    /// Matches records by the unique property `property`.
    pub fn with_id_property(mut self, property: impl Into<String>) -> Self {
        self.id_property = Some(property.into());
        self
    }

    /// Whether the id value is trimmed and lower-cased.
    pub fn with_lowercase_id(mut self, lowercase: bool) -> Self {
        self.lowercase_id = Some(lowercase);
        self
    }

    /// Writes the sync key's value to the unique property `property` with every upsert, so
    /// that a delete can find the record by it (see [`key_property`](Self::key_property)).
    pub fn with_key_property(mut self, property: impl Into<String>) -> Self {
        self.key_property = Some(property.into());
        self
    }

    /// The API version.
    pub fn with_api_version(mut self, version: ApiVersion) -> Self {
        self.api_version = version;
        self
    }

    /// The API's base URL (a test server, a proxy).
    pub fn with_base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// The name shown in reports.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The account's burst limit.
    pub fn with_rate_limit(mut self, limit: BurstLimit) -> Self {
        self.rate_limit = limit;
        self
    }

    /// The most batch calls in flight at once.
    pub fn with_max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n;
        self
    }

    /// Inputs per batch call (1 to 100).
    pub fn with_max_batch_rows(mut self, n: usize) -> Self {
        self.max_batch_rows = n;
        self
    }

    /// The account's time zone.
    pub fn with_account_utc_offset(mut self, offset: UtcOffset) -> Self {
        self.account_utc_offset = offset;
        self
    }

    /// Timeouts and limits of the HTTP client.
    pub fn with_client_options(mut self, options: SaasClientOptions) -> Self {
        self.client = options;
        self
    }

    /// The unique property records are matched by: the configured one, else `email` for
    /// contacts; `None` when neither applies (a configuration error).
    pub fn id_property(&self) -> Option<&str> {
        match &self.id_property {
            Some(p) => Some(p.as_str()),
            None if is_contacts(&self.object) => Some("email"),
            None => None,
        }
    }

    /// Whether the id value is trimmed and lower-cased.
    pub fn lowercases_id(&self) -> bool {
        self.lowercase_id.unwrap_or_else(|| self.id_property() == Some("email"))
    }

    /// The name shown in reports.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| format!("hubspot:{}", self.object))
    }

    /// Checks the settings without any I/O.
    ///
    /// # Errors
    /// [`DestinationError::Fatal`] naming the setting at fault and what to write instead.
    pub fn validate(&self) -> Result<(), DestinationError> {
        let name = self.display_name();
        let fail = |m: String| Err(DestinationError::fatal(format!("{name}: {m}")));
        let path_safe = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b));
        if !path_safe(&self.object) {
            return fail(format!(
                "`object` is `{}`; write an object type's name (`contacts`, `companies`) or id (`2-123456`)",
                self.object
            ));
        }
        let Some(id_property) = self.id_property() else {
            return fail(format!(
                "set `id_property` to a property of `{}` with unique values: upserts find records by it (only contacts have one by default, `email`)",
                self.object
            ));
        };
        if field_of(&self.fields, id_property).is_none() {
            return fail(format!(
                "no field is mapped to the id property `{id_property}`; map the field holding it, e.g. {{\"field\": \"{id_property}\", \"property\": \"{id_property}\"}}"
            ));
        }
        if let Some(key_property) = &self.key_property {
            if !path_safe(key_property) {
                return fail(format!(
                    "`key_property` is `{key_property}`; write the internal name of a property with unique values, e.g. `rse_sync_key`"
                ));
            }
            if key_property == id_property {
                return fail(format!(
                    "`key_property` is the id property `{id_property}`; name another property with unique values (e.g. `rse_sync_key`), or leave `key_property` unset"
                ));
            }
            if let Some(field) = field_of(&self.fields, key_property) {
                return fail(format!(
                    "`key_property` `{key_property}` is also mapped from field `{field}`; the destination writes the sync key to it, so remove it from `fields`"
                ));
            }
        }
        if self.max_batch_rows == 0 || self.max_batch_rows > MAX_BATCH_INPUTS {
            return fail(format!(
                "`max_batch_rows` is {}; HubSpot takes 1 to {MAX_BATCH_INPUTS} inputs per batch call",
                self.max_batch_rows
            ));
        }
        if self.max_concurrency == 0 {
            return fail("`max_concurrency` is 0; at least one call must be allowed".to_owned());
        }
        if self.rate_limit.requests == 0 || self.rate_limit.per.is_zero() {
            return fail("`rate_limit` allows no call; write the account's burst limit, e.g. {\"requests\": 100, \"per\": \"10s\"}".to_owned());
        }
        match reqwest::Url::parse(&self.base_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => Ok(()),
            _ => fail("`base_url` is not an http(s) URL; write e.g. `https://api.hubapi.com`".to_owned()),
        }
    }
}

/// Whether `object` names the contacts object.
fn is_contacts(object: &str) -> bool {
    object == "contacts" || object == "0-1"
}

/// The field mapped to `property`.
pub(super) fn field_of(fields: &FieldMap, property: &str) -> Option<String> {
    fields.iter().find(|m| m.property == property).map(|m| m.field.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_read_and_write_back() {
        for (text, minutes) in [("+00:00", 0), ("-05:00", -300), ("+05:30", 330), ("Z", 0), ("UTC", 0)] {
            assert_eq!(text.parse::<UtcOffset>().map(UtcOffset::minutes), Ok(minutes), "{text}");
        }
        assert_eq!("+05:30".parse::<UtcOffset>().map(|o| o.to_string()), Ok("+05:30".to_owned()));
        assert_eq!("-00:30".parse::<UtcOffset>().map(|o| o.to_string()), Ok("-00:30".to_owned()));
        for bad in ["5", "+5:00", "+05:60", "+19:00", "EST"] {
            assert!(bad.parse::<UtcOffset>().is_err(), "{bad}");
        }
    }
}
