//! What the server reads and sends back: Graph API parameters (form, query or JSON body),
//! answers, and the Graph API error envelope.
//!
//! Follows Meta's "Graph API: Handling errors" (`{"error": {"message", "type", "code",
//! "error_subcode", "error_user_title", "error_user_msg", "fbtrace_id"}}`; saas-contracts.md
//! §4 ME15, `is_transient` as clients see it ME16). Graph API errors are answered with HTTP
//! 400 whatever their code, throttling included (saas-contracts.md §4, §9: the status of
//! throttle errors is unverified, 400 is what clients report).
use std::collections::BTreeMap;

use serde_json::{Value as Json, json};

use super::server_kit::form_pairs;

/// One answer before headers are added.
pub struct Reply {
    pub status: u16,
    pub body: Option<Json>,
    /// A non-JSON body (a proxy's error page).
    pub text: Option<String>,
}

impl Reply {
    pub fn json(status: u16, body: Json) -> Reply {
        Reply { status, body: Some(body), text: None }
    }

    pub fn text(status: u16, text: &str) -> Reply {
        Reply { status, body: None, text: Some(text.to_owned()) }
    }

    /// A Graph API error: `code`, optional `error_subcode`, the `(#code) message` text Graph
    /// writes, and `is_transient`.
    pub fn error(code: u32, subcode: Option<u32>, message: &str) -> Reply {
        Reply::error_with(400, code, subcode, message, None)
    }

    pub fn error_with(
        status: u16,
        code: u32,
        subcode: Option<u32>,
        message: &str,
        user: Option<(&str, &str)>,
    ) -> Reply {
        let kind = match code {
            102 | 104 | 190 | 10 | 200..=299 | 4 | 17 | 613 | 80000..=80014 => "OAuthException",
            _ => "FacebookApiException",
        };
        let transient = matches!(code, 1 | 2 | 4 | 17 | 341 | 613 | 80000..=80014);
        let mut error = json!({
            "message": format!("(#{code}) {message}"),
            "type": kind,
            "code": code,
            "is_transient": transient,
            "fbtrace_id": fbtrace_id(),
        });
        if let Some(sub) = subcode {
            error["error_subcode"] = json!(sub);
        }
        if let Some((title, msg)) = user {
            error["error_user_title"] = json!(title);
            error["error_user_msg"] = json!(msg);
        }
        Reply::json(status, json!({ "error": error }))
    }
}

/// A random trace id shaped like Graph's (`A` + 22 url-safe characters).
pub fn fbtrace_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut id = String::from("A");
    for _ in 0..22 {
        id.push(ALPHABET[fastrand::usize(..ALPHABET.len())] as char);
    }
    id
}

/// The request's parameters: query string, then a form or JSON body (a body parameter wins).
/// `Err` names what could not be read.
pub fn params(query: Option<&str>, content_type: &str, body: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let mut out = query.map(parse_form).unwrap_or_default();
    if body.is_empty() {
        return Ok(out);
    }
    if content_type.starts_with("application/x-www-form-urlencoded") {
        out.extend(parse_form(&String::from_utf8_lossy(body)));
    } else if content_type.starts_with("application/json") {
        let Ok(Json::Object(map)) = serde_json::from_slice::<Json>(body) else {
            return Err("the JSON body is not an object".into());
        };
        for (k, v) in map {
            out.insert(k, if let Json::String(s) = v { s } else { v.to_string() });
        }
    } else {
        return Err(format!("a body with content-type `{content_type}`; Graph takes a form or JSON"));
    }
    Ok(out)
}

pub fn parse_form(s: &str) -> BTreeMap<String, String> {
    form_pairs(s).collect()
}
