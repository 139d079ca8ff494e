//! What the server sends back: status, JSON body and the contract root it must match.

use serde_json::{Value as Json, json};

/// One answer before headers are added. `root` names the contract entry the body must match;
/// `None` for a body the contract does not describe (properties listing, OAuth, a proxy page).
pub struct Reply {
    pub status: u16,
    pub body: Option<Json>,
    pub root: Option<&'static str>,
    /// A non-JSON body (a proxy's error page).
    pub text: Option<String>,
}

impl Reply {
    pub fn json(status: u16, body: Json, root: &'static str) -> Reply {
        Reply { status, body: Some(body), root: Some(root), text: None }
    }

    /// A body the contract file does not describe.
    pub fn undescribed(status: u16, body: Json) -> Reply {
        Reply { status, body: Some(body), root: None, text: None }
    }

    pub fn empty(status: u16) -> Reply {
        Reply { status, body: None, root: None, text: None }
    }

    pub fn text(status: u16, text: &str) -> Reply {
        Reply { status, body: None, root: None, text: Some(text.to_owned()) }
    }

    /// A HubSpot `Error` body (the "default" answer of every endpoint).
    pub fn error(status: u16, category: &str, message: impl Into<String>) -> Reply {
        Reply::error_with(status, category, message, Vec::new(), json!({}))
    }

    pub fn error_with(
        status: u16,
        category: &str,
        message: impl Into<String>,
        errors: Vec<Json>,
        context: Json,
    ) -> Reply {
        let mut body = json!({
            "status": "error",
            "message": message.into(),
            "correlationId": correlation_id(),
            "category": category,
        });
        if !errors.is_empty() {
            body["errors"] = Json::Array(errors);
        }
        if context.as_object().is_some_and(|c| !c.is_empty()) {
            body["context"] = context;
        }
        Reply::json(status, body, super::contract::ERROR)
    }
}

/// A random UUID (version 4 layout), as HubSpot's `correlationId`.
pub fn correlation_id() -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        fastrand::u32(..),
        fastrand::u16(..),
        fastrand::u16(..0x1000),
        0x8000 | fastrand::u16(..0x4000),
        fastrand::u64(..1 << 48)
    )
}

/// `t` as RFC 3339 UTC with milliseconds, as HubSpot writes timestamps.
pub use super::server_kit::rfc3339;
