//! What HubSpot's refusals mean: the 429 policies, missing scopes, and a refused input's
//! reason without the values it may repeat.
//!
//! | answer | error |
//! |---|---|
//! | 429 `policyName: DAILY` | [`DestinationError::QuotaExhausted`], resetting at the next midnight in the account's time zone: the run ends cleanly and the next one goes on |
//! | 429 `TEN_SECONDLY_ROLLING` (or another policy) | [`DestinationError::RateLimited`] after `Retry-After`, else the window's length (`X-HubSpot-RateLimit-Interval-Milliseconds`, else 10 s) |
//! | 429 `SECONDLY` | [`DestinationError::RateLimited`] after `Retry-After`, else one second |
//! | 403 with `context.missingScopes` | [`DestinationError::Unauthorized`] naming the scopes to grant |
//! | anything else | the kit's default ([`default_classification`](crate::saas::default_classification)): 400 is an invalid batch the runner bisects, 401 refused credentials, 5xx transient |
//!
//! Follows saas-contracts.md §1 ("Rate limits", "Partial failures", "Error classes") and
//! HubSpot's "API usage guidelines and limits" and "Error handling" pages.
//!
//! # Reasons without values
//! HubSpot's messages repeat what was sent ("Email address ada@example.com is invalid"),
//! and an account's validation rule says what its author wrote. A refused input's reason
//! holds the error's category, sub-category, codes and property names, then the message
//! with every word that could be a value taken out: a word holding a digit, an `@` or
//! `://`, anything between quotes or brackets, and any word of a value this input sent.

use std::time::{Duration, SystemTime};

use rse_core::DestinationError;
use serde_json::Value as Json;

use super::config::UtcOffset;
use super::quota::{DEFAULT_INTERVAL, interval, until_midnight};
use crate::saas::{Classifier, Failure, quota_exhausted};

/// The longest message kept in a reason, in characters.
const MAX_MESSAGE: usize = 200;

/// HubSpot's word on its own failures.
#[derive(Debug, Clone, Copy)]
pub(super) struct HubSpotClassifier {
    pub(super) offset: UtcOffset,
}

impl Classifier for HubSpotClassifier {
    fn classify(&self, failure: &Failure<'_>) -> Option<DestinationError> {
        match failure.status().as_u16() {
            429 => {
                let policy = failure.json().and_then(|j| j.get("policyName")).and_then(Json::as_str);
                Some(match policy {
                    Some("DAILY") => quota_exhausted(
                        format!(
                            "{}: the account's daily API allowance is used up; it resets at midnight in the account's time zone (UTC{}), and the next run after that goes on",
                            failure.describe(),
                            self.offset
                        ),
                        Some(until_midnight(self.offset, SystemTime::now())),
                    ),
                    Some("SECONDLY") => DestinationError::RateLimited {
                        retry_after: failure.retry_after().or(Some(Duration::from_secs(1))),
                    },
                    _ => DestinationError::RateLimited {
                        retry_after: failure
                            .retry_after()
                            .or_else(|| interval(failure.headers()))
                            .or(Some(DEFAULT_INTERVAL)),
                    },
                })
            }
            403 => {
                let scopes = missing_scopes(failure.json()?);
                (!scopes.is_empty()).then(|| DestinationError::Unauthorized {
                    message: format!(
                        "{}; the token lacks the scopes {}: grant them to the private app (or the OAuth app, and authorize it again)",
                        failure.describe(),
                        scopes.join(", ")
                    ),
                })
            }
            _ => None,
        }
    }
}

/// The scopes a 403 names, in `context.missingScopes` or its errors' contexts.
fn missing_scopes(body: &Json) -> Vec<String> {
    let mut scopes: Vec<String> = Vec::new();
    let contexts = std::iter::once(body.get("context"))
        .chain(body.get("errors").and_then(Json::as_array).into_iter().flatten().map(|e| e.get("context")));
    for context in contexts.flatten() {
        let listed = context.get("missingScopes").and_then(Json::as_array).into_iter().flatten();
        for scope in listed.filter_map(Json::as_str).filter(|s| is_identifier(s)) {
            if !scopes.iter().any(|s| s == scope) {
                scopes.push(scope.to_owned());
            }
        }
    }
    scopes
}

/// Whether `text` is a code, a property or a scope name rather than a value.
fn is_identifier(text: &str) -> bool {
    !text.is_empty() && text.len() <= 100 && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:/".contains(&b))
}

/// Why HubSpot refused one input (a `StandardError` of a 207 or a 2026-09 answer), and
/// whether sending it again in this run may succeed. `sent` are the values the input
/// carried: none of them, nor any other value, appears in the reason.
pub(super) fn input_reason(error: &Json, sent: &[&str]) -> (String, bool) {
    let mut codes: Vec<String> = Vec::new();
    let mut add = |key: &str, value: Option<&str>| {
        if let Some(value) = value.filter(|v| is_identifier(v)) {
            let entry = format!("{key}={value}");
            if !codes.contains(&entry) && codes.len() < 12 {
                codes.push(entry);
            }
        }
    };
    add("category", text(error.get("category")));
    // `subCategory` is free-form: a string, or an object that may name itself.
    let sub = error.get("subCategory");
    add("subCategory", text(sub).or_else(|| text(sub.and_then(|s| s.get("name")))));
    for detail in error.get("errors").and_then(Json::as_array).into_iter().flatten() {
        add("code", text(detail.get("code")));
        add("subCategory", text(detail.get("subCategory")));
        add("property", text(detail.get("in")));
        let names = detail.get("context").and_then(|c| c.get("propertyName")).and_then(Json::as_array);
        for name in names.into_iter().flatten() {
            add("property", name.as_str());
        }
    }
    let status = text(error.get("status")).and_then(|s| s.parse::<u16>().ok());
    let category = text(error.get("category")).unwrap_or("");
    let retryable = status.is_some_and(|s| s == 429 || s >= 500)
        || matches!(category, "RATE_LIMITS" | "INTERNAL_ERROR" | "LOCKED" | "TIMEOUT");
    let message = text(error.get("message")).map(|m| without_values(m, sent)).unwrap_or_default();
    let mut reason = String::from("HubSpot refused it");
    if !codes.is_empty() {
        reason.push_str(&format!(" ({})", codes.join(", ")));
    }
    if !message.is_empty() {
        reason.push_str(": ");
        reason.push_str(&message);
    }
    (reason, retryable)
}

/// `message` with every word that could be a value replaced by `…` (see the module docs),
/// at most [`MAX_MESSAGE`] characters.
pub(super) fn without_values(message: &str, sent: &[&str]) -> String {
    let sent_words: Vec<String> =
        sent.iter().flat_map(|v| v.split_whitespace()).map(|w| trim_punctuation(w).to_lowercase()).collect();
    let mut out: Vec<&str> = Vec::new();
    let mut depth = 0usize;
    let mut quoted = false;
    for word in message.split_whitespace() {
        // Anything between quotes or brackets is taken out whole: HubSpot quotes values and
        // embeds JSON of the refused input.
        let mut hidden = quoted || depth > 0;
        for c in word.chars() {
            match c {
                '"' | '`' | '\u{201c}' | '\u{201d}' => {
                    quoted = !quoted;
                    hidden = true;
                }
                '[' | '{' | '(' | '<' => {
                    depth += 1;
                    hidden = true;
                }
                ']' | '}' | ')' | '>' => {
                    depth = depth.saturating_sub(1);
                    hidden = true;
                }
                _ => {}
            }
        }
        let bare = trim_punctuation(word);
        let value_like = bare.chars().any(|c| c.is_ascii_digit() || c == '@')
            || bare.contains("://")
            || sent_words.iter().any(|s| !s.is_empty() && s.eq_ignore_ascii_case(bare));
        let shown = if hidden || value_like { "…" } else { word };
        if !(shown == "…" && out.last() == Some(&"…")) {
            out.push(shown);
        }
    }
    let joined = out.join(" ");
    match joined.char_indices().nth(MAX_MESSAGE) {
        Some((cut, _)) => format!("{}…", &joined[..cut]),
        None => joined,
    }
}

fn text(value: Option<&Json>) -> Option<&str> {
    value.and_then(Json::as_str)
}

fn trim_punctuation(word: &str) -> &str {
    word.trim_matches(|c: char| c.is_ascii_punctuation() && c != '@')
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_are_taken_out_of_messages() {
        let sent = ["ada@example.com", "Ada Lovelace", "gold"];
        let cases = [
            ("Email address ada@example.com is invalid", "Email address … is invalid"),
            ("Contact Ada Lovelace is blocked by a rule.", "Contact … is blocked by a rule."),
            (
                r#"Property values were not valid: [{"isValid":false,"message":"x","name":"plan"}]"#,
                "Property values were not valid: …",
            ),
            ("Tier gold is not allowed, got \"gold tier\" instead", "Tier … is not allowed, got … instead"),
            ("A record already has this value. Existing ID: 5101", "A record already has this value. Existing ID: …"),
            ("Email domain is blocked by a rule", "Email domain is blocked by a rule"),
        ];
        for (message, expected) in cases {
            assert_eq!(without_values(message, &sent), expected, "{message}");
        }
        let long = "word ".repeat(100);
        assert!(without_values(&long, &[]).chars().count() <= MAX_MESSAGE + 1);
    }

    #[test]
    fn an_input_s_reason_names_codes_and_properties() {
        let error = json!({"status": "error", "category": "VALIDATION_ERROR", "message": "Property values were not valid",
            "errors": [{"message": "ada@example.com is not a number", "code": "INVALID_DECIMAL", "in": "score",
                        "context": {"propertyName": ["score"]}}],
            "context": {"ids": ["ada@example.com"]}, "links": {}});
        let (reason, retryable) = input_reason(&error, &["ada@example.com"]);
        assert_eq!(
            reason,
            "HubSpot refused it (category=VALIDATION_ERROR, code=INVALID_DECIMAL, property=score): Property values were not valid"
        );
        assert!(!retryable);
        let (_, retryable) = input_reason(&json!({"status": "500", "category": "INTERNAL_ERROR"}), &[]);
        assert!(retryable);
    }
}
