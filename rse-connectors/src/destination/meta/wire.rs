//! What goes over the wire: the multi-key schema and rows, the form body, session
//! parameters, deterministic session ids, and Meta's answer.

use std::collections::BTreeMap;

use rse_core::DestinationError;
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

/// One member as a row: the Meta key of each identifier and its value (a lowercase hex
/// digest, or a plain value for `MADID` and `EXTERN_ID`).
pub(super) type Cells = Vec<(&'static str, String)>;

/// The order of Meta's multi-key schema keys in every request.
pub(super) const KEY_ORDER: [&str; 15] = [
    "EXTERN_ID",
    "EMAIL",
    "PHONE",
    "FN",
    "LN",
    "FI",
    "GEN",
    "DOBY",
    "DOBM",
    "DOBD",
    "CT",
    "ST",
    "ZIP",
    "COUNTRY",
    "MADID",
];

/// The schema of a request carrying `members`: every key any of them has, in
/// [`KEY_ORDER`]. Meta takes the keys a member lacks as blanks.
pub(super) fn schema_of<'a>(members: impl IntoIterator<Item = &'a Cells>) -> Vec<&'static str> {
    let mut present = [false; KEY_ORDER.len()];
    for cells in members {
        for (key, _) in cells {
            if let Some(i) = KEY_ORDER.iter().position(|k| k == key) {
                present[i] = true;
            }
        }
    }
    KEY_ORDER.iter().zip(present).filter(|(_, p)| *p).map(|(k, _)| *k).collect()
}

/// `cells` aligned to `schema`, blanks where the member has no such identifier.
pub(super) fn row(schema: &[&'static str], cells: &Cells) -> Vec<String> {
    schema.iter().map(|key| cells.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_default()).collect()
}

/// The `session` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SessionParam {
    pub id: i64,
    pub batch_seq: i64,
    pub last: bool,
}

/// A session id for `parts` (sync, run, audience, role): the first 63 bits of their SHA-256,
/// never 0. The same run asks for the same id again after a restart of the process; another
/// run gets another (Meta wants ids unique within the ad account).
pub(super) fn session_id(parts: &[&str]) -> i64 {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let digest = hasher.finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    let id = i64::from_be_bytes(bytes) & i64::MAX;
    id.max(1)
}

/// The form body: `payload` (and `session`), percent-encoded.
pub(super) fn form(schema: &[&'static str], rows: &[Vec<String>], session: Option<SessionParam>) -> String {
    let payload = json!({ "schema": schema, "data": rows });
    let mut body = format!("payload={}", encode(&payload.to_string()));
    if let Some(s) = session {
        let session = json!({ "session_id": s.id, "batch_seq": s.batch_seq, "last_batch_flag": s.last });
        body.push_str("&session=");
        body.push_str(&encode(&session.to_string()));
    }
    body
}

fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Meta's answer to a `/users` or `/usersreplace` call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Answer {
    /// Rows Meta dropped as invalid (`num_invalid_entries`).
    pub invalid: u64,
    /// Meta's reasons for the sampled invalid rows, counted; the samples themselves (hashes
    /// of personal data) are never kept. Rows beyond the samples count as `not sampled`.
    pub reasons: BTreeMap<String, u64>,
}

/// The reason recorded for invalid rows Meta did not sample.
pub(super) const NOT_SAMPLED: &str = "not sampled";

impl Answer {
    /// Reads the answer body, checking it is one.
    pub(super) fn read(json: &Json, what: &str) -> Result<Self, DestinationError> {
        let number = |v: &Json| v.as_u64().or_else(|| v.as_str()?.parse().ok());
        if json.get("num_received").and_then(number).is_none() {
            return Err(DestinationError::transient(format!(
                "{what}: Meta's answer has no `num_received`, so it is not an upload's acknowledgement; the call will be sent again"
            )));
        }
        let invalid = json.get("num_invalid_entries").and_then(number).unwrap_or(0);
        let mut reasons = BTreeMap::new();
        let mut sampled = 0;
        match json.get("invalid_entry_samples") {
            Some(Json::Object(samples)) => {
                for reason in samples.values() {
                    let reason = reason.as_str().map(reason_text).unwrap_or_else(|| "unspecified".to_owned());
                    *reasons.entry(reason).or_default() += 1;
                    sampled += 1;
                }
            }
            Some(Json::Array(samples)) => {
                *reasons.entry("unspecified".to_owned()).or_default() += samples.len() as u64;
                sampled += samples.len() as u64;
            }
            _ => {}
        }
        let unsampled = invalid.saturating_sub(sampled);
        if unsampled > 0 {
            *reasons.entry(NOT_SAMPLED.to_owned()).or_default() += unsampled;
        }
        Ok(Self { invalid, reasons })
    }
}

/// Meta's reason text, kept only when it holds no value: at most 80 characters, and no
/// run of digits or hex long enough to be an identifier (or a digest), nor an `@`.
fn reason_text(reason: &str) -> String {
    let long_token = reason.split(|c: char| !c.is_ascii_alphanumeric()).any(|t| {
        t.len() >= 16 && t.bytes().all(|b| b.is_ascii_hexdigit())
            || t.len() >= 7 && t.bytes().all(|b| b.is_ascii_digit())
    });
    if reason.is_empty() || reason.len() > 80 || reason.contains('@') || long_token {
        "unspecified".to_owned()
    } else {
        reason.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_align_to_the_schema_with_blanks() {
        let a: Cells = vec![("EMAIL", "e".into()), ("PHONE", "p".into())];
        let b: Cells = vec![("EXTERN_ID", "x".into()), ("EMAIL", "f".into())];
        let schema = schema_of([&a, &b]);
        assert_eq!(schema, ["EXTERN_ID", "EMAIL", "PHONE"]);
        assert_eq!(row(&schema, &a), ["", "e", "p"]);
        assert_eq!(row(&schema, &b), ["x", "f", ""]);
    }

    #[test]
    fn session_ids_are_stable_positive_and_distinct() {
        let a = session_id(&["sync", "7", "1", "add"]);
        assert_eq!(a, session_id(&["sync", "7", "1", "add"]));
        assert!(a > 0);
        assert_ne!(a, session_id(&["sync", "8", "1", "add"]));
        assert_ne!(session_id(&["ab", "c"]), session_id(&["a", "bc"]));
    }

    #[test]
    fn answers_keep_reasons_and_never_samples() {
        let body = json!({"audience_id": "1", "session_id": "2", "num_received": 5, "num_invalid_entries": 4,
                          "invalid_entry_samples": {"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08": "Invalid hash",
                                                     "ada@example.com": "Bad value ada@example.com"}});
        let a = Answer::read(&body, "x").unwrap_or_default();
        assert_eq!(a.invalid, 4);
        assert_eq!(a.reasons.get("Invalid hash"), Some(&1));
        assert_eq!(a.reasons.get("unspecified"), Some(&1));
        assert_eq!(a.reasons.get(NOT_SAMPLED), Some(&2));
        assert!(!format!("{a:?}").contains("9f86d") && !format!("{a:?}").contains("ada@"));
        assert!(Answer::read(&json!({"error": {}}), "x").is_err());
    }

    #[test]
    fn the_form_is_percent_encoded() {
        let body = form(&["EMAIL"], &[vec!["a b".into()]], Some(SessionParam { id: 3, batch_seq: 1, last: true }));
        assert!(body.starts_with("payload=%7B%22") && body.contains("%22schema%22%3A%5B%22EMAIL%22%5D"), "{body}");
        assert!(body.contains("a%20b") && body.contains("&session=%7B"), "{body}");
    }
}
