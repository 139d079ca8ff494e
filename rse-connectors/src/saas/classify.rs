//! What a vendor's failed answer means to the runner: the default mapping of an HTTP status
//! and headers to a [`DestinationError`], and the hook a vendor module overrides.
//!
//! | answer | default class |
//! |---|---|
//! | 429 | [`DestinationError::RateLimited`] with `Retry-After` (seconds or an HTTP date), bounded |
//! | 408, 500, 502, 503, 504 and other 5xx but 501 and 505 | [`DestinationError::Transient`] |
//! | 401, 403 | [`DestinationError::Unauthorized`] |
//! | 400, 409, 413, 414, 422 | [`DestinationError::InvalidBatch`]: the runner bisects the batch down to the records the vendor refuses, and a batch of one becomes that change's rejection |
//! | 3xx | [`DestinationError::Fatal`]: redirects are never followed (a redirected write can lose its method and body) |
//! | 404, 405, 406, 410, 411, 415, 501, 505, other 4xx | [`DestinationError::Fatal`]: the request itself is wrong (an API path, version or object name), retrying or bisecting cannot fix it |
//! | a timeout, a refused or dropped connection | [`DestinationError::Transient`] ([`transport_error`]) |
//!
//! A vendor module changes what it knows better with a [`Classifier`]: HubSpot's `DAILY`
//! 429 is an exhausted allowance ([`quota_exhausted`]), not a window to wait out;
//! Salesforce's 403 `REQUEST_LIMIT_EXCEEDED` is a limit, not a credential problem.
//!
//! Messages name the destination, the status and the vendor's error codes
//! ([`Failure::codes`]), never the vendor's free text: vendors repeat the refused value in
//! their messages, and messages are stored and shown in reports where values never go.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, RETRY_AFTER};
use rse_core::DestinationError;
use serde_json::Value as Json;

use crate::destination::http::parse_retry_after;

/// The longest `Retry-After` honoured unless a client says otherwise: one day.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// A vendor's answer that is not a success, as a [`Classifier`] reads it.
///
/// The body is parsed as JSON once, when it is JSON; [`codes`](Self::codes) reads the
/// vendor's error codes out of it without ever keeping free text.
pub struct Failure<'a> {
    destination: &'a str,
    status: StatusCode,
    headers: &'a HeaderMap,
    body: &'a [u8],
    json: Option<Json>,
    max_retry_after: Duration,
}

impl std::fmt::Debug for Failure<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The body may repeat values: its length and codes only.
        f.debug_struct("Failure")
            .field("destination", &self.destination)
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .field("codes", &self.codes())
            .finish_non_exhaustive()
    }
}

impl<'a> Failure<'a> {
    /// The answer `status`, `headers` and (possibly truncated) `body` that `destination`
    /// (its name in reports, e.g. `hubspot:contacts`) received.
    pub fn new(destination: &'a str, status: StatusCode, headers: &'a HeaderMap, body: &'a [u8]) -> Self {
        let json = serde_json::from_slice(body).ok();
        Self { destination, status, headers, body, json, max_retry_after: DEFAULT_MAX_RETRY_AFTER }
    }

    /// Caps the wait a `Retry-After` may ask for (default [`DEFAULT_MAX_RETRY_AFTER`]).
    pub fn with_max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// The destination's name, for messages.
    pub fn destination(&self) -> &str {
        self.destination
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The answer's headers.
    pub fn headers(&self) -> &HeaderMap {
        self.headers
    }

    /// A header's value when it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The raw body, as read (a client reads at most 64 KiB of a failure). It may repeat
    /// values: never put it in a message.
    pub fn body(&self) -> &[u8] {
        self.body
    }

    /// The body as JSON, when it is JSON.
    pub fn json(&self) -> Option<&Json> {
        self.json.as_ref()
    }

    /// `Retry-After` in seconds or as an HTTP date, at most the cap; `None` when absent or
    /// unreadable.
    pub fn retry_after(&self) -> Option<Duration> {
        self.headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, self.max_retry_after))
    }

    /// `HTTP 429 Too Many Requests`.
    pub fn status_text(&self) -> String {
        format!("HTTP {} {}", self.status.as_u16(), self.status.canonical_reason().unwrap_or("")).trim_end().to_owned()
    }

    /// The vendor's error codes and field names in the body, as `errorCode=X, field=Y`
    /// (empty when there are none): see [`error_codes`].
    pub fn codes(&self) -> String {
        self.json.as_ref().map(error_codes).unwrap_or_default()
    }

    /// `<destination>: HTTP 400 Bad Request (category=VALIDATION_ERROR)`: what a message
    /// about this answer starts with.
    pub fn describe(&self) -> String {
        match self.codes() {
            codes if codes.is_empty() => format!("{}: {}", self.destination, self.status_text()),
            codes => format!("{}: {} ({codes})", self.destination, self.status_text()),
        }
    }
}

/// A vendor's word on its own failures, consulted before the default mapping.
///
/// Return `Some` for what the vendor knows better, `None` to leave it to
/// [`default_classification`]:
///
/// ```
/// use rse_connectors::saas::{Classifier, Failure, quota_exhausted};
/// use rse_connectors::DestinationError;
///
/// /// A vendor whose 429 with `policyName: DAILY` means the day's allowance is spent.
/// struct Vendor;
///
/// impl Classifier for Vendor {
///     fn classify(&self, failure: &Failure<'_>) -> Option<DestinationError> {
///         let daily = failure.json()?.get("policyName")?.as_str()? == "DAILY";
///         (failure.status().as_u16() == 429 && daily)
///             .then(|| quota_exhausted(format!("{}: the daily API allowance is used up", failure.describe()), None))
///     }
/// }
/// ```
pub trait Classifier: Send + Sync {
    /// The class of `failure`, or `None` for the default.
    fn classify(&self, failure: &Failure<'_>) -> Option<DestinationError>;
}

/// The default mapping alone (no vendor overrides).
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultClassifier;

impl Classifier for DefaultClassifier {
    fn classify(&self, _: &Failure<'_>) -> Option<DestinationError> {
        None
    }
}

/// The vendor's class of `failure`, else the default one.
pub fn classify(failure: &Failure<'_>, vendor: &dyn Classifier) -> DestinationError {
    vendor.classify(failure).unwrap_or_else(|| default_classification(failure))
}

/// The default class of a failed answer (see the module docs' table).
pub fn default_classification(failure: &Failure<'_>) -> DestinationError {
    let code = failure.status.as_u16();
    let described = failure.describe();
    match code {
        429 => DestinationError::RateLimited { retry_after: failure.retry_after() },
        408 => DestinationError::transient(described),
        501 | 505 => DestinationError::fatal(format!(
            "{described}; the vendor does not support this request: check the API base URL and version"
        )),
        500..=599 => DestinationError::transient(described),
        401 => DestinationError::Unauthorized {
            message: format!(
                "{described}; the credentials were refused: check the token or API key, or that the app is still authorized"
            ),
        },
        403 => DestinationError::Unauthorized {
            message: format!(
                "{described}; the credentials lack a permission for this request: check the token's scopes and the user's access to the object"
            ),
        },
        400 | 409 | 413 | 414 | 422 => DestinationError::InvalidBatch { message: described },
        300..=399 => {
            let to = failure
                .header(LOCATION.as_str())
                .and_then(|l| reqwest::Url::parse(l).ok())
                .map_or_else(|| " (no absolute Location)".to_owned(), |u| format!(" to `{}`", origin(&u)));
            DestinationError::fatal(format!(
                "{described}{to}; redirects are not followed (a redirected write can lose its method and body): set the base URL to the final address"
            ))
        }
        400..=499 => DestinationError::fatal(format!(
            "{described}; the request itself is wrong: check the API base URL, version and object names"
        )),
        _ => DestinationError::fatal(format!(
            "{described}, which is not a failure status; this is a bug in the connector"
        )),
    }
}

/// [`DestinationError::QuotaExhausted`]: an allowance (a daily API quota) is used up; the
/// run ends cleanly as `RunStatus::QuotaExhausted` and every unsent change waits for the
/// next run. `resets_in` is when the allowance resets, when the vendor says.
///
/// A window that resets within seconds or minutes is a rate limit instead
/// ([`DestinationError::RateLimited`]): the runner waits it out.
pub fn quota_exhausted(message: impl Into<String>, resets_in: Option<Duration>) -> DestinationError {
    DestinationError::QuotaExhausted { message: message.into(), resets_in }
}

/// A request that got no answer: a timeout, a refused or dropped connection, a body cut
/// off. [`DestinationError::Transient`]: the runner sends the batch again, which is safe
/// for keyed upserts (the SaaS writes this kit serves); a connector whose write is not
/// idempotent must not use it for a request that may have arrived.
///
/// The message names the destination and `scheme://host` only: paths can hold keys.
pub fn transport_error(destination: &str, url: &reqwest::Url, error: reqwest::Error) -> DestinationError {
    let at = origin(url);
    let what = if error.is_connect() && error.is_timeout() {
        format!("{destination}: could not connect to {at} in time")
    } else if error.is_timeout() {
        format!("{destination}: no answer from {at} in time")
    } else if error.is_connect() {
        format!("{destination}: could not connect to {at}")
    } else if error.is_body() || error.is_decode() {
        format!("{destination}: the answer from {at} was cut off")
    } else {
        format!("{destination}: the request to {at} failed")
    };
    DestinationError::Transient { message: what, source: Some(Box::new(error.without_url())) }
}

/// `scheme://host[:port]` of `url`: where it goes, without the path and query that may
/// carry keys or tokens.
pub fn origin(url: &reqwest::Url) -> String {
    crate::destination::http::origin(url)
}

/// Keys whose values are vendor error codes or categories, as they appear in HubSpot,
/// Salesforce, OAuth 2.0 and common REST answers.
const CODE_KEYS: [&str; 10] = [
    "code",
    "error_code",
    "errorCode",
    "statusCode",
    "category",
    "subCategory",
    "errorType",
    "policyName",
    "type",
    "error",
];
/// Keys whose values name the field at fault (a string or a list of strings).
const FIELD_KEYS: [&str; 4] = ["field", "fields", "param", "path"];

/// The error codes and field names in a vendor's error body, as `errorCode=X, field=Y`;
/// empty when it has none.
///
/// Read from the body, from an `error` object in it, and from the objects of an `errors`
/// array (or of the body when it is an array, as Salesforce answers): the values of
/// `code`, `error_code`, `errorCode`, `statusCode`, `category`, `subCategory`, `errorType`,
/// `policyName`, `type` and a string `error` (OAuth 2.0), and the field names in `field`,
/// `fields`, `param` and `path`. A value is kept only when it looks like an identifier —
/// at most 100 characters of ASCII letters, digits and `_ - . : / # [ ]` — so a sentence or
/// an e-mail address there is dropped too; at most 10 are kept. Free text (`message`,
/// `error_description`) is never read.
///
/// ```
/// use rse_connectors::saas::error_codes;
/// use serde_json::json;
///
/// let salesforce = json!([{"message": "ada@example.com is taken", "errorCode": "DUPLICATE_VALUE", "fields": ["Email"]}]);
/// assert_eq!(error_codes(&salesforce), "errorCode=DUPLICATE_VALUE, field=Email");
/// let hubspot = json!({"status": "error", "message": "…", "category": "VALIDATION_ERROR"});
/// assert_eq!(error_codes(&hubspot), "category=VALIDATION_ERROR");
/// ```
pub fn error_codes(json: &Json) -> String {
    crate::destination::http::error_codes_in(json, &CODE_KEYS, &FIELD_KEYS)
}

pub(crate) use crate::destination::http::looks_like_identifier;

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;
    use serde_json::json;

    use super::*;

    fn class(status: u16, headers: &HeaderMap, body: &str) -> DestinationError {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT);
        classify(&Failure::new("vendor:x", status, headers, body.as_bytes()), &DefaultClassifier)
    }

    #[test]
    fn statuses_map_to_what_the_runner_does() {
        let none = HeaderMap::new();
        let mut later = HeaderMap::new();
        later.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert!(
            matches!(class(429, &later, ""), DestinationError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(7))
        );
        assert!(matches!(class(429, &none, ""), DestinationError::RateLimited { retry_after: None }));
        for transient in [408, 500, 502, 503, 504, 599] {
            assert!(matches!(class(transient, &none, ""), DestinationError::Transient { .. }), "{transient}");
        }
        for unauthorized in [401, 403] {
            assert!(matches!(class(unauthorized, &none, ""), DestinationError::Unauthorized { .. }), "{unauthorized}");
        }
        for invalid in [400, 409, 413, 414, 422] {
            assert!(matches!(class(invalid, &none, ""), DestinationError::InvalidBatch { .. }), "{invalid}");
        }
        for fatal in [301, 404, 405, 410, 415, 501] {
            assert!(matches!(class(fatal, &none, ""), DestinationError::Fatal { .. }), "{fatal}");
        }
    }

    #[test]
    fn messages_keep_codes_and_drop_what_the_vendor_repeats() {
        let body = r#"{"status":"error","message":"ada@example.com is not valid","category":"VALIDATION_ERROR",
                       "errors":[{"message":"Property values were not valid","code":"INVALID_EMAIL","context":{"email":["ada@example.com"]}}]}"#;
        let error = class(400, &HeaderMap::new(), body).to_string();
        assert!(
            error.contains("vendor:x: HTTP 400 Bad Request (category=VALIDATION_ERROR, code=INVALID_EMAIL)"),
            "{error}"
        );
        assert!(!error.contains("ada@"), "{error}");
        let mut to = HeaderMap::new();
        to.insert(LOCATION, HeaderValue::from_static("https://login.example.com/sso?session=abc"));
        let error = class(302, &to, "").to_string();
        assert!(error.contains("to `https://login.example.com`") && !error.contains("session"), "{error}");
        assert_eq!(
            error_codes(&json!({"error": "invalid_grant", "error_description": "expired for ada"})),
            "error=invalid_grant"
        );
    }

    #[test]
    fn a_vendor_overrides_only_what_it_knows() {
        struct Daily;
        impl Classifier for Daily {
            fn classify(&self, failure: &Failure<'_>) -> Option<DestinationError> {
                (failure.json()?.get("policyName")?.as_str()? == "DAILY")
                    .then(|| quota_exhausted("daily", Some(Duration::from_secs(3600))))
            }
        }
        let none = HeaderMap::new();
        let daily = Failure::new("v", StatusCode::TOO_MANY_REQUESTS, &none, br#"{"policyName":"DAILY"}"#);
        let secondly = Failure::new("v", StatusCode::TOO_MANY_REQUESTS, &none, br#"{"policyName":"SECONDLY"}"#);
        assert!(matches!(
            classify(&daily, &Daily),
            DestinationError::QuotaExhausted { resets_in: Some(d), .. } if d == Duration::from_secs(3600)
        ));
        assert!(matches!(classify(&secondly, &Daily), DestinationError::RateLimited { retry_after: None }));
    }
}
