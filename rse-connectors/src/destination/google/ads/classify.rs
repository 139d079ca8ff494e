//! What the Google Ads API's failures mean to the runner.
//!
//! Google Ads answers an RPC-level failure with Google's REST error body
//! (`{"error": {code, status, details: [GoogleAdsFailure]}}`), whose `GoogleAdsFailure`
//! carries `errors[].errorCode` as `{family: code}` (`quotaError: RESOURCE_EXHAUSTED`). The
//! codes, never the messages (which can repeat a value), make the class; the body is read by
//! [`GoogleError`], as the Data Manager destination reads it:
//!
//! | code | class |
//! |---|---|
//! | `quotaError: RESOURCE_TEMPORARILY_EXHAUSTED`, any 429 | rate limited, for `quotaErrorDetails.retryDelay` |
//! | `quotaError: RESOURCE_EXHAUSTED` waiting an hour or more, or naming the operations allowance | the daily allowance is spent: `QuotaExhausted`, resetting after `retryDelay` |
//! | `databaseError: CONCURRENT_MODIFICATION`, `internalError`, 5xx | transient |
//! | `authenticationError`, `authorizationError`, `headerError` | unauthorized, naming the code and the setting to check |
//! | `notAllowlistedError: CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE` | fatal: use the Data Manager destination |
//! | `offlineUserDataJobError: INVALID_USER_LIST_ID / INVALID_USER_LIST_TYPE` | fatal: check `user_list` |
//! | `requestError: DEVELOPER_TOKEN_PARAMETER_MISSING` | fatal |
//! | anything else | the kit's default by HTTP status |

use std::time::Duration;

use rse_core::DestinationError;
use serde_json::Value as Json;

use crate::destination::google::error::GoogleError;
use crate::saas::{Classifier, Failure, quota_exhausted};

/// Whether the error body `body` carries the Google Ads error `family: code`.
pub(super) fn has_code(body: &Json, family: &str, code: &str) -> bool {
    GoogleError::parse(body).is_some_and(|e| e.ads_codes().any(|(f, c)| f == family && c == code))
}

/// A quota error waiting this long or more is the daily allowance, not a rate.
const DAILY_WAIT: Duration = Duration::from_secs(3600);

/// The Google Ads API's word on its failures; see the [module docs](self).
#[derive(Debug, Clone, Copy, Default)]
pub struct GoogleAdsClassifier;

impl Classifier for GoogleAdsClassifier {
    fn classify(&self, failure: &Failure<'_>) -> Option<DestinationError> {
        let google = GoogleError::parse(failure.json()?).unwrap_or_default();
        let listed = google.ads_codes().map(|(f, c)| format!("{f}={c}")).collect::<Vec<_>>().join(", ");
        let status = failure.status().as_u16();
        let described = if listed.is_empty() {
            format!("{}: {}", failure.destination(), failure.status_text())
        } else {
            format!("{}: {} ({listed})", failure.destination(), failure.status_text())
        };
        let has = |family: &str| google.ads_code(family);
        if let Some(code) = has("quotaError") {
            let quota = google.ads_errors.iter().find(|e| e.family() == Some("quotaError"));
            let delay = quota.and_then(|q| q.quota_retry_delay);
            let name = quota.and_then(|q| q.quota_rate_name.as_deref()).unwrap_or("");
            let daily = code == "RESOURCE_EXHAUSTED"
                && (delay.is_some_and(|d| d >= DAILY_WAIT) || name.to_ascii_lowercase().contains("operations"));
            if daily {
                return Some(quota_exhausted(
                    format!(
                        "{described}: the developer token's daily operations allowance is spent; the run resumes when it resets (Standard access lifts the limit)"
                    ),
                    delay,
                ));
            }
            return Some(DestinationError::RateLimited { retry_after: delay.or_else(|| failure.retry_after()) });
        }
        if status == 429 {
            return Some(DestinationError::RateLimited { retry_after: failure.retry_after() });
        }
        if has("notAllowlistedError").is_some() {
            return Some(DestinationError::fatal(format!(
                "{described}: this Google Ads account or developer token may not use Customer Match through the Google Ads API \
                 (tokens that had not used it before April 2026 are refused); use the Google Data Manager destination \
                 (`GoogleDataManagerDestination`) instead"
            )));
        }
        if has("databaseError") == Some("CONCURRENT_MODIFICATION") || has("internalError").is_some() {
            return Some(DestinationError::transient(described));
        }
        if let Some(code) = has("authenticationError") {
            let what = if code.starts_with("DEVELOPER_TOKEN") || code.starts_with("ORGANIZATION") {
                "check `developer_token`"
            } else if code == "CUSTOMER_NOT_FOUND" || code == "CLIENT_CUSTOMER_ID_INVALID" {
                "check `customer_id`"
            } else {
                "check the credentials (`auth`) and that they carry the scope https://www.googleapis.com/auth/adwords"
            };
            return Some(DestinationError::Unauthorized { message: format!("{described}; {what}") });
        }
        if let Some(code) = has("authorizationError").or(has("headerError")) {
            let what = if code.starts_with("DEVELOPER_TOKEN") {
                "check that `developer_token` is approved for this account".to_owned()
            } else {
                "check `customer_id` and `login_customer_id` (the manager account through which the user reaches the customer), \
                 and the user's access to the account"
                    .to_owned()
            };
            return Some(DestinationError::Unauthorized { message: format!("{described}; {what}") });
        }
        if has("requestError") == Some("DEVELOPER_TOKEN_PARAMETER_MISSING") {
            return Some(DestinationError::fatal(format!("{described}; set `developer_token`")));
        }
        if matches!(has("offlineUserDataJobError"), Some("INVALID_USER_LIST_ID" | "INVALID_USER_LIST_TYPE")) {
            return Some(DestinationError::fatal(format!(
                "{described}; check `user_list`: a Customer Match (CRM-based) list of customer `customer_id`, \
                 as `customers/<customer id>/userLists/<list id>`"
            )));
        }
        if (400..500).contains(&status) && !listed.is_empty() {
            // Codes the default mapping cannot read (they sit in an object, not a string).
            return Some(match crate::saas::default_classification(failure) {
                DestinationError::InvalidBatch { .. } => DestinationError::InvalidBatch { message: described },
                DestinationError::Fatal { .. } => DestinationError::fatal(described),
                other => other,
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;
    use serde_json::json;

    use super::*;

    fn class(status: u16, errors: Json) -> DestinationError {
        let body = json!({"error": {"code": status, "message": "m", "status": "X", "details": [
            {"@type": "type.googleapis.com/google.ads.googleads.v25.errors.GoogleAdsFailure", "errors": errors}
        ]}});
        let headers = HeaderMap::new();
        let bytes = body.to_string();
        let failure = Failure::new(
            "google_ads:1",
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            &headers,
            bytes.as_bytes(),
        );
        crate::saas::classify(&failure, &GoogleAdsClassifier)
    }

    #[test]
    fn codes_decide_the_class() {
        let quota = |code: &str, delay: &str, name: &str| {
            json!([{"errorCode": {"quotaError": code}, "message": "m",
                    "details": {"quotaErrorDetails": {"rateScope": "DEVELOPER", "rateName": name, "retryDelay": delay}}}])
        };
        assert!(matches!(
            class(429, quota("RESOURCE_TEMPORARILY_EXHAUSTED", "30s", "Requests per account")),
            DestinationError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(30)
        ));
        assert!(matches!(
            class(429, quota("RESOURCE_EXHAUSTED", "86400s", "Number of operations for basic access")),
            DestinationError::QuotaExhausted { resets_in: Some(d), .. } if d == Duration::from_secs(86400)
        ));
        assert!(matches!(
            class(429, quota("RESOURCE_EXHAUSTED", "2s", "Requests per account")),
            DestinationError::RateLimited { .. }
        ));
        let one = |family: &str, code: &str| json!([{"errorCode": {family: code}, "message": "ada@example.com"}]);
        assert!(matches!(
            class(409, one("databaseError", "CONCURRENT_MODIFICATION")),
            DestinationError::Transient { .. }
        ));
        assert!(matches!(
            class(401, one("authenticationError", "OAUTH_TOKEN_EXPIRED")),
            DestinationError::Unauthorized { .. }
        ));
        let e = class(403, one("notAllowlistedError", "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE"));
        assert!(matches!(e, DestinationError::Fatal { .. }) && e.to_string().contains("Data Manager"), "{e}");
        let e = class(400, one("offlineUserDataJobError", "INVALID_USER_LIST_ID"));
        assert!(e.to_string().contains("`user_list`") && !e.to_string().contains("ada@"), "{e}");
        let e = class(400, one("fieldError", "INVALID_VALUE"));
        assert!(
            matches!(e, DestinationError::InvalidBatch { .. }) && e.to_string().contains("fieldError=INVALID_VALUE"),
            "{e}"
        );
    }
}
