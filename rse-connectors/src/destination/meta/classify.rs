//! What Meta's answers mean to the runner: Graph API error codes, and the
//! `X-Business-Use-Case-Usage` header as quota feedback.
//!
//! | Graph error | class |
//! |---|---|
//! | 4, 17, 32, 341, 613, 80000–80014 (throttling, answered with HTTP 400, not 429) | [`DestinationError::RateLimited`], waiting `estimated_time_to_regain_access` when the usage header gives it |
//! | 2650 subcode 1870145 (the audience is being replaced or updated) | [`DestinationError::RateLimited`] for five minutes: Meta ends a replace within 90 minutes |
//! | 1, 2, 5xx | [`DestinationError::Transient`] |
//! | 102, 104, 190 (token missing, invalid or expired) | [`DestinationError::Unauthorized`] |
//! | 10, 200–299 (permission), 100 subcode 33 (audience not found, or the system user is no admin of its ad account) | [`DestinationError::Unauthorized`] |
//! | 100 subcode 1713230 (audience restricted, `operation_status` 471) | [`DestinationError::Fatal`]: a person must resolve it in Audience Manager |
//! | 2635 (deprecated API version) | [`DestinationError::Fatal`] |
//! | 2650 otherwise (the audience refuses this kind of data) | [`DestinationError::Fatal`] |
//! | 100 otherwise (invalid parameter) | [`DestinationError::InvalidBatch`]: the runner bisects down to the refused members |
//!
//! Messages carry the codes, never Meta's text (which may repeat what was sent).
//! Follows Meta's "Graph API: Handling errors", "Marketing API: Rate limiting", the error
//! tables of the "Custom Audience Users" and "Usersreplace" references and the Replace
//! Users API's 2650 subcodes (saas-contracts.md §4).

use std::time::Duration;

use rse_core::{DestinationError, QuotaFeedback, QuotaWindow};
use serde_json::Value as Json;

use crate::saas::{Classifier, Failure};

/// Subcode of 2650: a replace (or another update) of the audience is in progress.
pub const REPLACE_IN_PROGRESS: u64 = 1_870_145;
/// Subcode of 2650: the first batch (`batch_seq` 1) of a replace session was not seen.
pub const REPLACE_FIRST_BATCH_MISSING: u64 = 1_870_147;
/// Subcode of 2650: the replace session ran past its 90 minutes; the audience was
/// replaced with what it had uploaded.
pub const REPLACE_TIMED_OUT: u64 = 1_870_158;
/// Subcode of 2650: the replace session already ended with its last batch.
pub const REPLACE_FINISHED: u64 = 1_870_159;
/// Subcode of 100: the audience is restricted (`operation_status` 471).
pub const RESTRICTED: u64 = 1_713_230;

/// How long to wait for a replace in progress to end before trying again.
const REPLACE_WAIT: Duration = Duration::from_secs(300);

/// A Graph API error's `code` and `error_subcode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphError {
    /// `code`.
    pub code: u64,
    /// `error_subcode`, when given.
    pub subcode: Option<u64>,
}

impl GraphError {
    /// The error in a Graph API answer's body, if it holds one.
    pub fn read(json: &Json) -> Option<Self> {
        let error = json.get("error")?;
        let number = |v: &Json| v.as_u64().or_else(|| v.as_str()?.parse().ok());
        Some(Self { code: error.get("code").and_then(number)?, subcode: error.get("error_subcode").and_then(number) })
    }

    /// `code=100, error_subcode=1713230`.
    pub fn describe(&self) -> String {
        match self.subcode {
            Some(sub) => format!("code={}, error_subcode={sub}", self.code),
            None => format!("code={}", self.code),
        }
    }

    /// Whether Meta is throttling the caller.
    pub fn is_throttle(&self) -> bool {
        matches!(self.code, 4 | 17 | 32 | 341 | 613 | 80_000..=80_014)
    }
}

/// The usage Meta reports for the `custom_audience` use case (or, when no entry says so,
/// the busiest entry): percent used, and minutes until access returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// The largest of `call_count`, `total_cputime` and `total_time`, 0 to 100.
    pub percent: u64,
    /// `estimated_time_to_regain_access`, in minutes.
    pub regain_minutes: u64,
}

impl Usage {
    /// Reads an `X-Business-Use-Case-Usage` value: `{"<business id>": [{"type":
    /// "custom_audience", "call_count": 12, "total_cputime": 3, "total_time": 4,
    /// "estimated_time_to_regain_access": 0}]}`. `None` when it is not that shape.
    pub fn parse(header: &str) -> Option<Self> {
        let json: Json = serde_json::from_str(header).ok()?;
        let entries: Vec<&Json> = json.as_object()?.values().filter_map(Json::as_array).flatten().collect();
        let number = |e: &Json, k: &str| e.get(k).and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)));
        let usage = |e: &Json| Usage {
            percent: ["call_count", "total_cputime", "total_time"]
                .iter()
                .filter_map(|k| number(e, k))
                .max()
                .unwrap_or(0)
                .min(100),
            regain_minutes: number(e, "estimated_time_to_regain_access").unwrap_or(0),
        };
        let audience: Vec<Usage> = entries
            .iter()
            .filter(|e| e.get("type").and_then(Json::as_str) == Some("custom_audience"))
            .map(|e| usage(e))
            .collect();
        let pool = if audience.is_empty() { entries.iter().map(|e| usage(e)).collect() } else { audience };
        pool.into_iter().max_by_key(|u| (u.regain_minutes, u.percent))
    }

    /// The wait Meta asks for, if any.
    pub fn regain(&self) -> Option<Duration> {
        (self.regain_minutes > 0).then(|| Duration::from_secs(self.regain_minutes.saturating_mul(60)))
    }

    /// As the runner's quota feedback: the hour's score in percent, `remaining` the percent
    /// left (Meta reports shares, not calls, so the runner counts each percent as one call:
    /// it slows down early rather than late), resetting when Meta says access returns.
    pub fn feedback(&self) -> QuotaFeedback {
        QuotaFeedback {
            window: Some(QuotaWindow::new(100 - self.percent.min(100), Some(100), self.regain())),
            daily: None,
        }
    }
}

/// Meta's classification of failed answers; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct MetaClassifier {
    /// The audience, named in messages.
    pub audience_id: String,
}

impl Classifier for MetaClassifier {
    fn classify(&self, failure: &Failure<'_>) -> Option<DestinationError> {
        let error = failure.json().and_then(GraphError::read)?;
        let at = format!("{}: HTTP {} ({})", failure.destination(), failure.status().as_u16(), error.describe());
        let audience = &self.audience_id;
        if error.is_throttle() {
            let usage = failure.header("x-business-use-case-usage").and_then(Usage::parse);
            return Some(DestinationError::RateLimited { retry_after: usage.and_then(|u| u.regain()) });
        }
        Some(match (error.code, error.subcode) {
            (1 | 2, _) => DestinationError::transient(format!("{at}; a temporary Meta error")),
            (102 | 104 | 190, _) => DestinationError::Unauthorized {
                message: format!(
                    "{at}; the access token is missing, invalid or expired: generate a new system-user token with the ads_management permission"
                ),
            },
            (10 | 200..=299, _) => DestinationError::Unauthorized {
                message: format!(
                    "{at}; the token lacks a permission: it needs ads_management, and its user access to the ad account of audience {audience}"
                ),
            },
            (100, Some(33)) => DestinationError::Unauthorized {
                message: format!(
                    "{at}; audience {audience} does not exist or cannot be used: check `audience_id`, and that the system user is an admin of the audience's ad account"
                ),
            },
            (100, Some(RESTRICTED)) => DestinationError::fatal(format!(
                "{at}; audience {audience} is restricted (operation_status 471) and Meta refuses membership changes: someone must resolve the restriction in Audience Manager (or create a new audience); every unsent change is kept"
            )),
            (2635, _) => DestinationError::fatal(format!(
                "{at}; Meta no longer serves this Graph API version: set `graph_api_version` to a current one"
            )),
            (2650, Some(REPLACE_IN_PROGRESS)) => DestinationError::RateLimited { retry_after: Some(REPLACE_WAIT) },
            (2650, _) => DestinationError::fatal(format!(
                "{at}; audience {audience} refuses this upload: it must be a customer-list audience filled with multi-key data (this destination always sends a schema of several keys)"
            )),
            (100, _) => {
                DestinationError::InvalidBatch { message: format!("{at}; Meta refused a parameter of the call") }
            }
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;
    use reqwest::header::{HeaderMap, HeaderValue};

    use super::*;
    use crate::saas::classify;

    fn class(body: &str, usage: Option<&'static str>) -> DestinationError {
        let mut headers = HeaderMap::new();
        if let Some(u) = usage {
            headers.insert("x-business-use-case-usage", HeaderValue::from_static(u));
        }
        let failure = Failure::new("meta:1", StatusCode::BAD_REQUEST, &headers, body.as_bytes());
        classify(&failure, &MetaClassifier { audience_id: "1".into() })
    }

    fn error(code: u64, sub: Option<u64>) -> String {
        let mut e =
            serde_json::json!({"error": {"message": "(#1) ada@example.com", "type": "OAuthException", "code": code}});
        if let Some(s) = sub {
            e["error"]["error_subcode"] = s.into();
        }
        e.to_string()
    }

    #[test]
    fn throttling_waits_as_long_as_meta_says() {
        let usage = r#"{"1":[{"type":"custom_audience","call_count":100,"total_cputime":5,"total_time":5,"estimated_time_to_regain_access":7}]}"#;
        for code in [17, 613, 80_003, 80_004, 4] {
            assert!(
                matches!(class(&error(code, None), Some(usage)), DestinationError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(420)),
                "{code}"
            );
        }
        assert!(matches!(class(&error(80_003, None), None), DestinationError::RateLimited { retry_after: None }));
    }

    #[test]
    fn codes_map_to_what_the_runner_does() {
        assert!(matches!(class(&error(190, Some(463)), None), DestinationError::Unauthorized { .. }));
        assert!(matches!(class(&error(200, None), None), DestinationError::Unauthorized { .. }));
        assert!(matches!(class(&error(100, Some(33)), None), DestinationError::Unauthorized { .. }));
        assert!(matches!(class(&error(100, None), None), DestinationError::InvalidBatch { .. }));
        assert!(matches!(class(&error(2, None), None), DestinationError::Transient { .. }));
        assert!(matches!(class(&error(2650, Some(REPLACE_IN_PROGRESS)), None), DestinationError::RateLimited { .. }));
        let restricted = class(&error(100, Some(RESTRICTED)), None).to_string();
        assert!(
            restricted.contains("Audience Manager") && restricted.contains("error_subcode=1713230"),
            "{restricted}"
        );
        assert!(!restricted.contains("ada@"), "no vendor text: {restricted}");
    }

    #[test]
    fn usage_prefers_the_custom_audience_entry() {
        let u = Usage::parse(
            r#"{"9":[{"type":"ads_management","call_count":90,"total_cputime":1,"total_time":1,"estimated_time_to_regain_access":0},
                      {"type":"custom_audience","call_count":12,"total_cputime":30,"total_time":4,"estimated_time_to_regain_access":0}]}"#,
        );
        assert_eq!(u, Some(Usage { percent: 30, regain_minutes: 0 }));
        let q = u.map(|u| u.feedback()).and_then(|f| f.window);
        assert_eq!(q, Some(QuotaWindow::new(70, Some(100), None)));
        assert_eq!(Usage::parse("not json"), None);
        assert_eq!(Usage::parse("[1]"), None);
    }
}
