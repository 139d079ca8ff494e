//! Reading answers into outcomes and error classes, trusting nothing the receiver sends.

use std::time::{Duration, SystemTime};

use reqwest::header::{LOCATION, RETRY_AFTER};
use reqwest::{Response, Url};
use rse_core::DestinationError;
use serde_json::Value as Json;

use super::config::{HttpTimeouts, RecordErrors};

/// The most of a 2xx body read for per-record errors.
const MAX_ERRORS_BODY: usize = 8 << 20;
/// The most of a 4xx body read for a rejection reason.
const MAX_REASON_BODY: usize = 4 << 10;
/// The most of an unneeded body read so the connection can be reused.
const MAX_DRAINED_BODY: usize = 64 << 10;
/// The most characters of a receiver's reason kept in a rejection.
const MAX_REASON_CHARS: usize = 300;

/// What the answer to one request is read against.
pub(super) struct Reading<'a> {
    pub name: &'a str,
    pub timeouts: &'a HttpTimeouts,
    pub record_errors: Option<&'a RecordErrors>,
    /// Whether reasons keep the receiver's own words (they may repeat a refused value).
    pub excerpts: bool,
}

/// What the receiver said of the changes of one request it answered.
///
/// An answer never stands for a change by default: the writer sets each change's outcome
/// from it, and a change it does not cover stays unset (and fails the write loudly).
#[derive(Debug)]
pub(super) enum Answer {
    /// It took the request (a 2xx, or a 404 to a delete by URL): every change of it is
    /// applied except those listed, by position in the request, with the reason.
    Taken {
        /// The refused changes' positions in the request, each once, and why.
        refused: Vec<(usize, String)>,
    },
    /// It refused the request's one change (a 4xx other than 401, 403, 408 and 429).
    Refused(String),
}

/// One request: where it went, how many changes it carried, and whether it deleted a
/// record named by its URL (so that a 404 means the record is already gone).
pub(super) struct Sent<'a> {
    pub url: &'a Url,
    pub changes: usize,
    pub delete_by_url: bool,
}

impl Reading<'_> {
    /// What the answer says of the changes sent, or the class of the whole request's failure.
    pub(super) async fn classify(&self, response: Response, sent: &Sent<'_>) -> Result<Answer, DestinationError> {
        if let Some(followed) = self.followed_redirect(&response, sent.url) {
            return Err(followed);
        }
        let status = response.status();
        let code = status.as_u16();
        let reason = status.canonical_reason().unwrap_or("");
        let n = sent.changes;
        if status.is_success() {
            let Some(errors) = self.record_errors else {
                // Read the body so the connection can be reused; failing to read it after a 2xx
                // changes nothing: the receiver accepted the request.
                let _ = read_capped(response, MAX_DRAINED_BODY).await;
                return Ok(Answer::Taken { refused: Vec::new() });
            };
            let (body, whole) =
                read_capped(response, MAX_ERRORS_BODY).await.map_err(|e| self.transport(sent.url, e))?;
            let refused = if whole {
                refused_records(errors, &body, n, self.excerpts)
            } else {
                Err(format!("the answer is larger than {} MiB", MAX_ERRORS_BODY >> 20))
            };
            return refused.map(|refused| Answer::Taken { refused }).map_err(|problem| {
                DestinationError::fatal(format!(
                    "{}: HTTP {code} {reason}, but its per-record errors at `{}` cannot be read: {problem}; check `with_record_errors` against what the receiver answers",
                    self.name, errors.pointer
                ))
            });
        }
        if status.is_redirection() {
            return Err(self.redirect(&response, sent.url));
        }
        if code == 404 && sent.delete_by_url {
            return Ok(Answer::Taken { refused: Vec::new() });
        }
        if code == 429 {
            return Err(DestinationError::RateLimited { retry_after: self.retry_after(&response) });
        }
        if code == 408 || status.is_server_error() {
            return Err(DestinationError::transient(format!("{}: HTTP {code} {reason}", self.name)));
        }
        if code == 401 || code == 403 {
            return Err(DestinationError::Unauthorized {
                message: format!("{}: HTTP {code} {reason}; check the token or signing secret", self.name),
            });
        }
        if !status.is_client_error() {
            return Err(DestinationError::fatal(format!(
                "{}: HTTP {code}, which is not a final HTTP status; check that the URL points at an HTTP API",
                self.name
            )));
        }
        // Another 4xx: the receiver refused what we sent. Its body says why, in words that
        // may repeat the refused value: only its codes become the reason, unless the host
        // asked for excerpts.
        let body = read_capped(response, MAX_REASON_BODY).await.map(|(b, _)| b).unwrap_or_default();
        let status_text = format!("HTTP {code} {reason}");
        let message = if self.excerpts {
            let text = truncate(String::from_utf8_lossy(&body).trim());
            if text.is_empty() { status_text } else { format!("{status_text}: {text}") }
        } else {
            match serde_json::from_slice::<Json>(&body).ok().map(|json| error_codes(&json)) {
                Some(codes) if !codes.is_empty() => truncate(&format!("{status_text} ({codes})")),
                _ => status_text,
            }
        };
        if n == 1 { Ok(Answer::Refused(message)) } else { Err(DestinationError::InvalidBatch { message }) }
    }

    /// A 3xx: a configuration error naming where it points (scheme and host only: its
    /// path and query may carry data).
    pub(super) fn redirect(&self, response: &Response, url: &Url) -> DestinationError {
        let status = response.status();
        let to = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|location| url.join(location).ok())
            .map_or_else(|| " without a usable Location".to_owned(), |target| format!(" to `{}`", origin(&target)));
        DestinationError::fatal(format!(
            "{}: HTTP {}{to}; redirects are not followed (a redirected write can lose its method and body, and the page it lands on says nothing about the changes): set the URL to the final address",
            self.name, status
        ))
    }

    /// A configuration error when the answer comes from another URL than `url`: a client
    /// that follows redirects (a host's, given to `from_client`) answers from where it
    /// landed, and that answer says nothing about the changes. Names the scheme and host only.
    pub(super) fn followed_redirect(&self, response: &Response, url: &Url) -> Option<DestinationError> {
        (response.url() != url).then(|| {
            DestinationError::fatal(format!(
                "{}: the HTTP client followed a redirect to `{}`; redirects are not taken for a delivery (a redirected \
                 write can lose its method and body, and the page it lands on says nothing about the changes): set \
                 the URL to the final address, and build the client given to `HttpDestination::from_client` with \
                 `redirect::Policy::none()`",
                self.name,
                origin(response.url())
            ))
        })
    }

    /// The wait a 429 asks for, read defensively and bounded.
    pub(super) fn retry_after(&self, response: &Response) -> Option<Duration> {
        response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, self.timeouts.max_retry_after))
    }

    /// A failure before an answer: transient, since the request is safe to repeat under
    /// its idempotency keys. The message names the host only: a record's URL holds its key.
    pub(super) fn transport(&self, url: &Url, e: reqwest::Error) -> DestinationError {
        let at = origin(url);
        let what = if e.is_connect() && e.is_timeout() {
            format!("{}: could not connect to {at} within {:?}", self.name, self.timeouts.connect)
        } else if e.is_timeout() {
            format!("{}: no answer from {at} within {:?}", self.name, self.timeouts.request)
        } else if e.is_connect() {
            format!("{}: could not connect to {at}", self.name)
        } else {
            format!("{}: the request to {at} failed", self.name)
        };
        DestinationError::Transient { message: what, source: Some(Box::new(e.without_url())) }
    }
}

/// Counts one request that destination `name` sent, by its answer's class
/// ([`HTTP_REQUESTS_TOTAL`](rse_core::metrics::HTTP_REQUESTS_TOTAL), labelled with the
/// destination's kind): `2xx`, `3xx`, `4xx`, `429` apart from the other `4xx`, `5xx`, or
/// `error` when no answer came (`status` is `None`: a timeout, a refused connection).
pub(crate) fn count_request(name: &str, status: Option<reqwest::StatusCode>) {
    let class = match status.map(|s| s.as_u16()) {
        Some(429) => "429",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        // No answer, or a status outside HTTP's classes.
        _ => "error",
    };
    let kind = rse_core::metrics::destination_kind(name).to_owned();
    metrics::counter!(
        rse_core::metrics::HTTP_REQUESTS_TOTAL,
        rse_core::metrics::DESTINATION => kind,
        rse_core::metrics::CLASS => class
    )
    .increment(1);
}

/// `scheme://host[:port]` of `url`: where it goes, without the path and query that may
/// carry data.
pub(crate) fn origin(url: &Url) -> String {
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{}://{}{port}", url.scheme(), url.host_str().unwrap_or(""))
}

/// Reads at most `cap` bytes of the body; the flag says whether that was all of it.
pub(crate) async fn read_capped(mut response: Response, cap: usize) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = cap.saturating_sub(body.len());
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, false));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, true))
}

/// Keys whose values are error codes.
const CODE_KEYS: [&str; 4] = ["code", "error_code", "errorCode", "type"];
/// Keys whose values name the field at fault.
const FIELD_KEYS: [&str; 3] = ["field", "param", "path"];
/// The most codes and field names kept in one reason.
const MAX_CODES: usize = 10;

/// The error codes and field names in an error body, as `code=x, field=y`; empty when it
/// has none. Read from the object itself, its `error` object, and the objects of an
/// `errors` array in either (see the module docs); free text is never read.
fn error_codes(json: &Json) -> String {
    error_codes_in(json, &CODE_KEYS, &FIELD_KEYS)
}

/// [`error_codes`] with the keys that hold codes and field names (a field key may hold one
/// name or a list of them): the SaaS kit reads a wider set of vendors' keys the same way.
pub(crate) fn error_codes_in(json: &Json, code_keys: &[&'static str], field_keys: &[&'static str]) -> String {
    let mut found: Vec<(&str, String)> = Vec::new();
    let mut add = |key: &'static str, value: &Json| {
        let text = match value {
            Json::String(s) => s.clone(),
            Json::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
            _ => return,
        };
        if found.len() < MAX_CODES
            && looks_like_identifier(&text)
            && !found.iter().any(|(k, v)| *k == key && *v == text)
        {
            found.push((key, text));
        }
    };
    let mut read = |error: &Json| {
        for &key in code_keys {
            if let Some(value) = error.get(key) {
                add(key, value);
            }
        }
        for &key in field_keys {
            match error.get(key) {
                Some(Json::Array(names)) => names.iter().for_each(|name| add("field", name)),
                Some(value) => add("field", value),
                None => {}
            }
        }
        if let Some(pointer) = error.pointer("/source/pointer") {
            add("field", pointer);
        }
        // OAuth 2.0 and many APIs name the error's code in `error` itself.
        if let Some(code @ Json::String(_)) = error.get("error") {
            add("error", code);
        }
    };
    // The most general first: the body, its `error` object, then their lists' entries.
    let (tops, listed): (Vec<&Json>, &[Json]) = match json {
        Json::Array(list) => (Vec::new(), list.as_slice()),
        _ => (std::iter::once(json).chain(json.get("error").filter(|e| e.is_object())).collect(), &[]),
    };
    tops.iter().for_each(|error| read(error));
    let lists = tops.iter().filter_map(|error| error.get("errors").and_then(Json::as_array));
    for error in listed.iter().chain(lists.flatten()).take(MAX_CODES) {
        read(error);
    }
    found.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}

/// Whether `text` looks like a code or a field name rather than a sentence or a value: at
/// most 100 characters of ASCII letters, digits and `_ - . : / # [ ]`.
pub(crate) fn looks_like_identifier(text: &str) -> bool {
    !text.is_empty() && text.len() <= 100 && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:/#[]".contains(&b))
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_REASON_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// `Retry-After` as delta-seconds (a whole or decimal number) or an HTTP date, at most
/// `max`.
///
/// A wait past `max`, or too large to represent (`1e300`, twenty digits, `inf`), is `max`;
/// a date in the past is zero; a negative number, NaN or text that is neither form is
/// `None`, leaving the wait to the runner's backoff. Never panics.
pub fn parse_retry_after(value: &str, max: Duration) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // Digits beyond u64 are still just "a very long time".
        return Some(value.parse::<u64>().map_or(max, Duration::from_secs).min(max));
    }
    if let Ok(secs) = value.parse::<f64>() {
        if secs.is_nan() || secs < 0.0 {
            return None;
        }
        return Some(Duration::try_from_secs_f64(secs).map_or(max, |d| d.min(max)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO).min(max))
}

/// The records a 2xx body lists as refused: their positions in the request (each once,
/// in order) and why.
///
/// # Errors
/// What makes the body unattributable: not JSON, an error whose index is not a whole
/// number below `n`, or an error without an index in a request of several records.
fn refused_records(
    errors: &RecordErrors,
    body: &[u8],
    n: usize,
    excerpts: bool,
) -> Result<Vec<(usize, String)>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let json: Json = serde_json::from_slice(body).map_err(|e| {
        format!("the body ({} bytes) is not JSON (line {}, column {})", body.len(), e.line(), e.column())
    })?;
    let list = match json.pointer(&errors.pointer) {
        Some(Json::Array(list)) => list.as_slice(),
        Some(Json::Null) | None => return Ok(Vec::new()),
        Some(single) => std::slice::from_ref(single),
    };
    // One reason per refused record; several errors for one record are joined.
    let mut reasons: Vec<Option<String>> = vec![None; n];
    for (position, error) in list.iter().enumerate() {
        let index = match error.get(&errors.index_field) {
            Some(value) => match value.as_u64().and_then(|i| usize::try_from(i).ok()) {
                Some(i) if i < n => i,
                _ => {
                    return Err(format!(
                        "error {position} has a `{}` that is not a whole number from 0 to {} (the request held {n} records, counted from 0)",
                        errors.index_field,
                        n.saturating_sub(1)
                    ));
                }
            },
            None if n == 1 => 0,
            None => {
                return Err(format!(
                    "error {position} has no `{}`, and the request held {n} records: which one it refuses is unknown",
                    errors.index_field
                ));
            }
        };
        let reason = if excerpts {
            match error.get(&errors.reason_field) {
                Some(Json::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => match error.as_str() {
                    Some(s) => s.to_owned(),
                    None => "refused by the receiver (no reason given)".to_owned(),
                },
            }
        } else {
            // The message may repeat the refused value: only the codes are kept.
            match error_codes(error) {
                codes if codes.is_empty() => "refused by the receiver (no error code given)".to_owned(),
                codes => format!("refused by the receiver ({codes})"),
            }
        };
        let reason = truncate(&reason);
        if let Some(slot) = reasons.get_mut(index) {
            *slot = Some(match slot.take() {
                Some(first) => truncate(&format!("{first}; {reason}")),
                None => reason,
            });
        }
    }
    Ok(reasons.into_iter().enumerate().filter_map(|(i, reason)| Some((i, reason?))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let max = Duration::from_secs(3600);
        assert_eq!(parse_retry_after("3", max), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", max), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let d = parse_retry_after(&later, max).unwrap_or_default();
        assert!(d > Duration::from_secs(100) && d <= Duration::from_secs(120), "{d:?}");
        assert_eq!(parse_retry_after("soon", max), None);
        assert_eq!(parse_retry_after("1e300", max), Some(max));
        assert_eq!(parse_retry_after("-1", max), None);
    }
}
