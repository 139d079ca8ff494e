//! Google's REST error body, as every Google API sends it: `{"error": {"code", "message",
//! "status", "details": [...]}}`, a `google.rpc.Status` whose `details` are `Any` messages
//! (`google.rpc.ErrorInfo`, `BadRequest`, `QuotaFailure`, `RetryInfo`; AIP-193).
//!
//! Only what identifies a failure is kept: the status name, `ErrorInfo.reason`, `domain` and
//! `metadata` (quota names), each field violation's path and reason, quota ids and a retry
//! delay. Free text (`message`, `description`) is never read: Google may repeat a refused
//! value in it, and what is kept here ends up in reports.
//!
//! The Google Ads API puts its own detail in the same body: a `GoogleAdsFailure` whose
//! `errors[]` carry an `errorCode` (`{family: code}`), a `location` and, for quota errors,
//! `quotaErrorDetails`; a `partialFailureError` is the same `google.rpc.Status`
//! ([`GoogleError::parse_status`]).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value as Json;

use rse_core::DestinationError;

use crate::saas::classify::looks_like_identifier;
use crate::saas::{Classifier, Failure, quota_exhausted};

const ERROR_INFO: &str = "type.googleapis.com/google.rpc.ErrorInfo";
const BAD_REQUEST: &str = "type.googleapis.com/google.rpc.BadRequest";
const QUOTA_FAILURE: &str = "type.googleapis.com/google.rpc.QuotaFailure";
const RETRY_INFO: &str = "type.googleapis.com/google.rpc.RetryInfo";
/// The end of a `GoogleAdsFailure`'s type URL (its path names the API version).
const ADS_FAILURE: &str = ".errors.GoogleAdsFailure";

/// A Google REST error body, reduced to identifiers (see the [module docs](self)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GoogleError {
    /// `error.code`: the HTTP status.
    pub code: u16,
    /// `error.status`: the `google.rpc.Code` name (`INVALID_ARGUMENT`, `RESOURCE_EXHAUSTED`…).
    pub status: Option<String>,
    /// `ErrorInfo.reason` (`INVALID_SHA256_FORMAT`, `RATE_LIMIT_EXCEEDED`…).
    pub reason: Option<String>,
    /// `ErrorInfo.domain` (`datamanager.googleapis.com`, `googleapis.com`).
    pub domain: Option<String>,
    /// `ErrorInfo.metadata` entries whose values look like identifiers (`quota_limit`…).
    pub metadata: BTreeMap<String, String>,
    /// `BadRequest.fieldViolations`.
    pub field_violations: Vec<FieldViolation>,
    /// `QuotaFailure.violations[].quotaId` (or `quotaMetric`).
    pub quota_ids: Vec<String>,
    /// `RetryInfo.retryDelay`.
    pub retry_delay: Option<Duration>,
    /// The errors of a `GoogleAdsFailure` (Google Ads API only).
    pub ads_errors: Vec<AdsError>,
}

/// One error of a Google Ads API `GoogleAdsFailure`: its code and where it points, never
/// its message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdsError {
    /// `errorCode`, when it reads as identifiers: `(family, code)`, e.g.
    /// `("offlineUserDataJobError", "INVALID_SHA256_FORMAT")`.
    pub code: Option<(String, String)>,
    /// `location.fieldPathElements`: each field's name and index, e.g.
    /// `[("operations", Some(3)), ("create", None), ("userIdentifiers", Some(0))]`.
    pub location: Vec<(String, Option<u64>)>,
    /// `details.quotaErrorDetails.retryDelay`.
    pub quota_retry_delay: Option<Duration>,
    /// `details.quotaErrorDetails.rateName` (`Number of operations for basic access`…).
    pub quota_rate_name: Option<String>,
}

impl AdsError {
    fn parse(error: &Json) -> AdsError {
        let name = |s: &str| s.len() <= 80 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        let code = error.get("errorCode").and_then(Json::as_object).and_then(|codes| codes.iter().next()).and_then(
            |(family, code)| {
                let code = code.as_str()?;
                (name(family) && name(code)).then(|| (family.clone(), code.to_owned()))
            },
        );
        let path = error.pointer("/location/fieldPathElements").and_then(Json::as_array).into_iter().flatten();
        let location = path
            .filter_map(|e| {
                let field = e.get("fieldName")?.as_str()?;
                let field: String = field.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                Some((field, e.get("index").and_then(Json::as_u64)))
            })
            .collect();
        let quota = error.pointer("/details/quotaErrorDetails");
        let quota_text = |key: &str| quota.and_then(|q| q.get(key)).and_then(Json::as_str);
        AdsError {
            code,
            location,
            quota_retry_delay: quota_text("retryDelay").and_then(parse_duration),
            quota_rate_name: quota_text("rateName").map(str::to_owned),
        }
    }

    /// The error's family (`quotaError`…), when its code reads.
    pub fn family(&self) -> Option<&str> {
        self.code.as_ref().map(|(family, _)| family.as_str())
    }
}

/// One `BadRequest.fieldViolations` entry: where and why, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FieldViolation {
    /// The field's path, e.g. `audience_members[3].user_data.user_identifiers[0].email_address`.
    pub field: String,
    /// The violation's reason (an `ErrorReason` name), when given.
    pub reason: Option<String>,
}

impl FieldViolation {
    /// The index `i` of a path that starts with `<list>[i]` (`audience_members[3]…`; the
    /// camelCase spelling too).
    pub fn index_in(&self, list: &str) -> Option<usize> {
        let camel = to_camel(list);
        let rest = self.field.strip_prefix(list).or_else(|| self.field.strip_prefix(camel.as_str()))?;
        let digits = rest.strip_prefix('[')?.split(']').next()?;
        digits.parse().ok()
    }

    /// The path after `<list>[i].`, e.g. `user_data.user_identifiers[0].email_address`.
    pub fn path_within(&self, list: &str) -> Option<&str> {
        self.index_in(list)?;
        let (_, rest) = self.field.split_once(']')?;
        Some(rest.strip_prefix('.').unwrap_or(rest))
    }
}

fn to_camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

impl GoogleError {
    /// The error in `body`, or `None` when `body` is not a Google error body.
    pub fn parse(body: &Json) -> Option<GoogleError> {
        GoogleError::parse_status(body.get("error")?)
    }

    /// A `google.rpc.Status` object (`{code, status, details}`), the `error` of an error body
    /// or a Google Ads `partialFailureError`; `None` when `error` is not an object.
    pub fn parse_status(error: &Json) -> Option<GoogleError> {
        error.as_object()?;
        let text = |v: Option<&Json>| v.and_then(Json::as_str).filter(|s| looks_like_identifier(s)).map(str::to_owned);
        let mut parsed = GoogleError {
            code: error.get("code").and_then(Json::as_u64).and_then(|c| u16::try_from(c).ok()).unwrap_or(0),
            status: text(error.get("status")),
            ..GoogleError::default()
        };
        for detail in error.get("details").and_then(Json::as_array).into_iter().flatten() {
            match detail.get("@type").and_then(Json::as_str) {
                Some(ERROR_INFO) if parsed.reason.is_none() => {
                    parsed.reason = text(detail.get("reason"));
                    parsed.domain = text(detail.get("domain"));
                    for (k, v) in detail.get("metadata").and_then(Json::as_object).into_iter().flatten() {
                        if let Some(v) = v.as_str().filter(|v| looks_like_identifier(v)) {
                            parsed.metadata.insert(k.clone(), v.to_owned());
                        }
                    }
                }
                Some(BAD_REQUEST) => {
                    let violations = detail.get("fieldViolations").and_then(Json::as_array).into_iter().flatten();
                    parsed.field_violations.extend(violations.filter_map(|v| {
                        Some(FieldViolation { field: text(v.get("field"))?, reason: text(v.get("reason")) })
                    }));
                }
                Some(QUOTA_FAILURE) => {
                    let violations = detail.get("violations").and_then(Json::as_array).into_iter().flatten();
                    parsed.quota_ids.extend(
                        violations.filter_map(|v| text(v.get("quotaId")).or_else(|| text(v.get("quotaMetric")))),
                    );
                }
                Some(RETRY_INFO) => {
                    parsed.retry_delay = detail.get("retryDelay").and_then(Json::as_str).and_then(parse_duration);
                }
                Some(t) if t.ends_with(ADS_FAILURE) => {
                    let errors = detail.get("errors").and_then(Json::as_array).into_iter().flatten();
                    parsed.ads_errors.extend(errors.map(AdsError::parse));
                }
                _ => {}
            }
        }
        Some(parsed)
    }

    /// The error in a JSON body, or `None`.
    pub fn from_slice(body: &[u8]) -> Option<GoogleError> {
        serde_json::from_slice::<Json>(body).ok().as_ref().and_then(GoogleError::parse)
    }

    /// The named quota (`metadata.quota_limit`, else a `QuotaFailure` id), e.g.
    /// `IngestRequestsPerDayPerProject`.
    pub fn quota_limit(&self) -> Option<&str> {
        self.metadata.get("quota_limit").or_else(|| self.quota_ids.first()).map(String::as_str)
    }

    /// Whether the quota refused is a daily one (its name says per day): it resets at
    /// midnight Pacific time, not within the minute.
    pub fn is_daily_quota(&self) -> bool {
        self.quota_limit().is_some_and(|q| {
            let q = q.to_ascii_lowercase();
            q.contains("perday") || q.contains("per_day") || q.contains("daily") || q.contains("-day")
        })
    }

    /// The Google Ads API's error codes, `(family, code)`, in order.
    pub fn ads_codes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.ads_errors.iter().filter_map(|e| e.code.as_ref()).map(|(f, c)| (f.as_str(), c.as_str()))
    }

    /// The code of the first Google Ads API error of `family`.
    pub fn ads_code(&self, family: &str) -> Option<&str> {
        self.ads_codes().find(|(f, _)| *f == family).map(|(_, c)| c)
    }

    /// `status=INVALID_ARGUMENT, reason=INVALID_SHA256_FORMAT, quota_limit=…`: identifiers
    /// only, for messages.
    pub fn codes(&self) -> String {
        let mut parts = Vec::new();
        if let Some(s) = &self.status {
            parts.push(format!("status={s}"));
        }
        if let Some(r) = &self.reason {
            parts.push(format!("reason={r}"));
        }
        if let Some(q) = self.quota_limit() {
            parts.push(format!("quota_limit={q}"));
        }
        parts.join(", ")
    }
}

/// How Google's answers map to the runner's classes, where Google says more than the HTTP
/// status: a 429 for a daily quota (`metadata.quota_limit` naming a per-day quota) is an
/// exhausted allowance that resets at midnight Pacific time, any other 429 a rate limit
/// (waiting `RetryInfo.retryDelay` when Google gives one); 401 and 403 name Google's reason
/// and what to check. Everything else is the kit's default.
#[derive(Debug, Clone, Default)]
pub struct GoogleClassifier {
    /// What a 403 asks the user to check (the accounts and lists the destination acts on).
    pub permission_hint: String,
}

impl Classifier for GoogleClassifier {
    fn classify(&self, failure: &Failure<'_>) -> Option<DestinationError> {
        let google = failure.json().and_then(GoogleError::parse).unwrap_or_default();
        let described = match google.codes() {
            codes if codes.is_empty() => format!("{}: {}", failure.destination(), failure.status_text()),
            codes => format!("{}: {} ({codes})", failure.destination(), failure.status_text()),
        };
        match failure.status().as_u16() {
            429 if google.is_daily_quota() => Some(quota_exhausted(
                format!("{described}; the Cloud project's daily quota is used up, and resets at midnight Pacific time"),
                None,
            )),
            429 => Some(DestinationError::RateLimited {
                retry_after: google.retry_delay.or_else(|| failure.retry_after()),
            }),
            401 => Some(DestinationError::Unauthorized {
                message: format!(
                    "{described}; Google refused the credentials: check the service account key (or the refresh token) \
                     and that it is still enabled"
                ),
            }),
            403 => Some(DestinationError::Unauthorized { message: format!("{described}; {}", self.permission_hint) }),
            _ => None,
        }
    }
}

/// A `google.protobuf.Duration` in JSON (`"7s"`, `"0.5s"`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let secs: f64 = text.strip_suffix('s')?.parse().ok()?;
    (0.0..1e9).contains(&secs).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_reasons_fields_and_quotas_never_text() {
        let body = json!({"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "ada@example.com is bad",
            "details": [
                {"@type": ERROR_INFO, "reason": "INVALID_SHA256_FORMAT", "domain": "datamanager.googleapis.com"},
                {"@type": BAD_REQUEST, "fieldViolations": [
                    {"field": "audience_members[12].user_data.user_identifiers[0].email_address",
                     "description": "ada@example.com", "reason": "INVALID_SHA256_FORMAT"},
                    {"field": "audienceMembers[3]"}]}]}});
        let e = GoogleError::parse(&body).unwrap_or_default();
        assert_eq!(e.code, 400);
        assert_eq!(e.codes(), "status=INVALID_ARGUMENT, reason=INVALID_SHA256_FORMAT");
        assert_eq!(e.field_violations[0].index_in("audience_members"), Some(12));
        assert_eq!(
            e.field_violations[0].path_within("audience_members"),
            Some("user_data.user_identifiers[0].email_address")
        );
        assert_eq!(e.field_violations[1].index_in("audience_members"), Some(3));
        assert!(!format!("{e:?}").contains("ada@"));

        let quota = json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "…", "details": [
            {"@type": ERROR_INFO, "reason": "RATE_LIMIT_EXCEEDED", "domain": "googleapis.com",
             "metadata": {"quota_limit": "IngestRequestsPerDayPerProject"}},
            {"@type": RETRY_INFO, "retryDelay": "1.5s"}]}});
        let e = GoogleError::parse(&quota).unwrap_or_default();
        assert!(e.is_daily_quota());
        assert_eq!(e.retry_delay, Some(Duration::from_millis(1500)));
        assert!(GoogleError::parse(&json!({"status": "error"})).is_none());
    }

    #[test]
    fn reads_google_ads_failures_codes_locations_and_quota_details() {
        let body = json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "m", "details": [
            {"@type": "type.googleapis.com/google.ads.googleads.v25.errors.GoogleAdsFailure", "errors": [
                {"errorCode": {"quotaError": "RESOURCE_EXHAUSTED"}, "message": "ada@example.com",
                 "details": {"quotaErrorDetails": {"rateName": "Number of operations", "retryDelay": "86400s"}}},
                {"errorCode": {"offlineUserDataJobError": "INVALID_SHA256_FORMAT"},
                 "location": {"fieldPathElements": [{"fieldName": "operations", "index": 3},
                     {"fieldName": "create"}, {"fieldName": "userIdentifiers", "index": 0}]}},
                {"errorCode": {"fieldError": "ada@example.com"}}]}]}});
        let e = GoogleError::parse(&body).unwrap_or_default();
        assert_eq!(e.ads_code("quotaError"), Some("RESOURCE_EXHAUSTED"));
        assert_eq!(e.ads_errors[0].quota_retry_delay, Some(Duration::from_secs(86400)));
        assert_eq!(e.ads_errors[0].quota_rate_name.as_deref(), Some("Number of operations"));
        let location = &e.ads_errors[1].location;
        assert_eq!(location[0], ("operations".to_owned(), Some(3)));
        assert_eq!(location[2], ("userIdentifiers".to_owned(), Some(0)));
        // A code that is not an identifier is not kept.
        assert_eq!(e.ads_errors[2].code, None);
        assert_eq!(e.ads_codes().count(), 2);
        assert!(!format!("{e:?}").contains("ada@"));
        let partial = json!({"code": 3, "details": body["error"]["details"]});
        assert_eq!(GoogleError::parse_status(&partial).unwrap_or_default().ads_errors.len(), 3);
    }
}
