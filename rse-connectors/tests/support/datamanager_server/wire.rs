//! What the server sends back: status, JSON body and the contract entry it must match, and
//! Google's REST error body (`{"error": {code, message, status, details[]}}`, the
//! `google.rpc.Status` of AIP-193 with `status` as the `google.rpc.Code` name).
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value as Json, json};

/// `t` as RFC 3339 UTC with milliseconds (for the tests; the benches and examples that
/// include this server do not use it).
#[allow(unused_imports)]
pub use super::server_kit::rfc3339;

/// The `domain` of this API's own `ErrorInfo` (the example bodies' value; illustrative).
pub const DOMAIN: &str = "datamanager.googleapis.com";

/// `x-roots` or `$defs` name of the error body.
pub const ERROR_ROOT: &str = "GoogleRestErrorResponse";

/// One answer before it is sent. `root` names the contract entry the body must match; `None`
/// for a body the contract does not describe (a proxy's page).
pub struct Reply {
    pub status: u16,
    pub body: Option<Json>,
    pub root: Option<&'static str>,
    /// A non-JSON body (a proxy's error page).
    pub text: Option<String>,
}

/// One `BadRequest.fieldViolations` entry: the field path (proto snake_case names, as Google
/// writes them), the `ErrorReason` and a description that never holds a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub reason: &'static str,
    pub description: String,
}

impl Violation {
    pub fn new(field: impl Into<String>, reason: &'static str, description: impl Into<String>) -> Violation {
        Violation { field: field.into(), reason, description: description.into() }
    }
}

impl Reply {
    pub fn json(status: u16, body: Json, root: &'static str) -> Reply {
        Reply { status, body: Some(body), root: Some(root), text: None }
    }

    pub fn text(status: u16, text: &str) -> Reply {
        Reply { status, body: None, root: None, text: Some(text.to_owned()) }
    }

    /// A Google REST error: `code`, `status` (the `google.rpc.Code` name), `message`, and
    /// `details` (each an `Any` with its `@type`).
    pub fn error(code: u16, status: &str, message: impl Into<String>, details: Vec<Json>) -> Reply {
        let mut error = json!({"code": code, "message": message.into(), "status": status});
        if !details.is_empty() {
            error["details"] = Json::Array(details);
        }
        Reply::json(code, json!({ "error": error }), ERROR_ROOT)
    }

    /// 400 `INVALID_ARGUMENT` with an `ErrorInfo` naming the first violation's reason and a
    /// `BadRequest` listing every violation.
    pub fn invalid(violations: &[Violation]) -> Reply {
        let reason = violations.first().map_or("INVALID_ARGUMENT", |v| v.reason);
        let fields: Vec<Json> = violations
            .iter()
            .map(|v| json!({"field": v.field, "description": v.description, "reason": v.reason}))
            .collect();
        Reply::error(
            400,
            "INVALID_ARGUMENT",
            "Request contains an invalid argument.",
            vec![error_info(reason, DOMAIN, json!({})), json!({"@type": BAD_REQUEST, "fieldViolations": fields})],
        )
    }

    /// 400 `INVALID_ARGUMENT` with only an `ErrorInfo` (no field to name).
    pub fn invalid_request(reason: &'static str, message: impl Into<String>) -> Reply {
        Reply::error(400, "INVALID_ARGUMENT", message, vec![error_info(reason, DOMAIN, json!({}))])
    }
}

pub const ERROR_INFO: &str = "type.googleapis.com/google.rpc.ErrorInfo";
pub const BAD_REQUEST: &str = "type.googleapis.com/google.rpc.BadRequest";
pub const QUOTA_FAILURE: &str = "type.googleapis.com/google.rpc.QuotaFailure";
pub const RETRY_INFO: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// An `ErrorInfo` detail.
pub fn error_info(reason: &str, domain: &str, metadata: Json) -> Json {
    let mut info = json!({"@type": ERROR_INFO, "reason": reason, "domain": domain});
    if metadata.as_object().is_some_and(|m| !m.is_empty()) {
        info["metadata"] = metadata;
    }
    info
}

/// A request id in the shape Google returns (a UUID).
pub fn request_id() -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        fastrand::u32(..),
        fastrand::u16(..),
        fastrand::u16(..0x1000),
        0x8000 | fastrand::u16(..0x4000),
        fastrand::u64(..1 << 48)
    )
}

/// Parses an RFC 3339 timestamp (`google.protobuf.Timestamp` in JSON: `Z` or an offset,
/// optional fraction).
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(range)?;
        s.bytes().all(|c| c.is_ascii_digit()).then(|| s.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos: u64 = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = frac[..digits].parse::<u64>().ok()? * 10u64.pow(9 - digits as u32);
        rest = &frac[digits..];
    }
    let offset_secs: i64 = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o[1..3].parse::<i64>().ok()? * 3600 + o[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_nanos(nanos))
}
