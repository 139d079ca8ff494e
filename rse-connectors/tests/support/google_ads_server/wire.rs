//! What the server sends back, Google's error bodies, and the check of every answer against
//! the contract file.
//!
//! Errors follow Google's REST error format (`{"error": {code, message, status, details[]}}`,
//! the contract's `GoogleRestErrorResponse`) with one `GoogleAdsFailure` in `details`, as the
//! Google Ads API's REST interface answers ("REST interface: errors" in the Google Ads API
//! guides; saas-contracts.md §3a).
use serde_json::{Value as Json, json};

use crate::contracts::SchemaFile;

/// The contract file, relative to the contracts directory.
pub const SCHEMA: &str = "google/jsonschema/googleads_v25_offline_user_data_job.schema.json";
/// `@type` of a `GoogleAdsFailure` in `details`.
pub const FAILURE_TYPE: &str = "type.googleapis.com/google.ads.googleads.v25.errors.GoogleAdsFailure";
/// `@type` of the `metadata` of the operation `:run` answers.
pub const METADATA_TYPE: &str = "type.googleapis.com/google.ads.googleads.v25.resources.OfflineUserDataJobMetadata";

/// The contract file, compiled once per test binary.
pub fn schema() -> &'static SchemaFile {
    SchemaFile::get(SCHEMA)
}

/// How an answer's body is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// An `x-roots` entry or `$defs` name of the contract file, with the embedded messages
    /// (`GoogleAdsFailure` details, `OfflineUserDataJobMetadata`) checked too.
    Contract(&'static str),
    /// A `GoogleAdsService.Search` answer: not in the contract file (see `search.rs`); each
    /// row's `offlineUserDataJob` is checked against the contract's `OfflineUserDataJob`.
    Search,
    /// An error of the search endpoint: its wrapper is the contract's
    /// `GoogleRestErrorResponse`; its `queryError` codes are outside the contract's cut-down
    /// `ErrorCode`, so the failure inside is not checked.
    SearchError,
    /// A body the contract does not describe (the OAuth token endpoint).
    Undescribed,
}

/// One answer before headers are added.
pub struct Reply {
    pub status: u16,
    pub body: Option<Json>,
    pub root: Root,
    /// A non-JSON body (a proxy's error page).
    pub text: Option<String>,
}

impl Reply {
    pub fn json(status: u16, body: Json, root: &'static str) -> Reply {
        Reply { status, body: Some(body), root: Root::Contract(root), text: None }
    }

    pub fn undescribed(status: u16, body: Json) -> Reply {
        Reply { status, body: Some(body), root: Root::Undescribed, text: None }
    }

    pub fn text(status: u16, text: &str) -> Reply {
        Reply { status, body: None, root: Root::Undescribed, text: Some(text.to_owned()) }
    }

    /// A Google Ads error answer: `http` status, `google.rpc.Code` name `status`, and one
    /// `GoogleAdsFailure` holding `errors`.
    pub fn ads(http: u16, status: &str, errors: Vec<Json>) -> Reply {
        let message = match status {
            "INVALID_ARGUMENT" => "Request contains an invalid argument.",
            "UNAUTHENTICATED" => {
                "Request is missing required authentication credential. Expected OAuth 2 access token."
            }
            "PERMISSION_DENIED" => "The caller does not have permission",
            "RESOURCE_EXHAUSTED" => "Resource has been exhausted (e.g. check quota).",
            "ABORTED" => "The operation was aborted.",
            "NOT_FOUND" => "Requested entity was not found.",
            "UNAVAILABLE" => "The service is currently unavailable.",
            _ => "Internal error encountered.",
        };
        let body = json!({"error": {
            "code": http,
            "message": message,
            "status": status,
            "details": [{"@type": FAILURE_TYPE, "errors": errors, "requestId": request_id()}],
        }});
        Reply::json(http, body, "GoogleRestErrorResponse")
    }

    /// One error: 400 `INVALID_ARGUMENT` unless the family says otherwise.
    pub fn one(family: &str, code: &str, message: &str) -> Reply {
        let (http, status) = match family {
            "authenticationError" => (401, "UNAUTHENTICATED"),
            "authorizationError" | "notAllowlistedError" => (403, "PERMISSION_DENIED"),
            "quotaError" => (429, "RESOURCE_EXHAUSTED"),
            "databaseError" => (409, "ABORTED"),
            "internalError" => (500, "INTERNAL"),
            _ => (400, "INVALID_ARGUMENT"),
        };
        Reply::ads(http, status, vec![error(family, code, message)])
    }
}

/// A `GoogleAdsError` without a location.
pub fn error(family: &str, code: &str, message: &str) -> Json {
    json!({"errorCode": {family: code}, "message": message})
}

/// A `GoogleAdsError` located at `path` (`(fieldName, index)` pairs).
pub fn error_at(family: &str, code: &str, message: &str, path: &[(&str, Option<usize>)]) -> Json {
    let elements: Vec<Json> = path
        .iter()
        .map(|(name, index)| match index {
            Some(i) => json!({"fieldName": name, "index": i}),
            None => json!({"fieldName": name}),
        })
        .collect();
    let mut e = error(family, code, message);
    e["location"] = json!({"fieldPathElements": elements});
    e
}

/// A request id as Google Ads writes them (22 URL-safe characters).
pub fn request_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..22).map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char).collect()
}

/// The `GoogleAdsFailure` messages inside a `details` array, without their `@type`.
fn failures(details: &Json) -> Vec<Json> {
    let mut out = Vec::new();
    for d in details.as_array().into_iter().flatten() {
        if d["@type"] == FAILURE_TYPE {
            let mut inner = d.clone();
            inner.as_object_mut().map(|o| o.remove("@type"));
            out.push(inner);
        }
    }
    out
}

/// Every way `body` breaks the contract entry `root` it claims to be, including the
/// messages embedded as `google.protobuf.Any`.
pub fn answer_violations(root: Root, body: &Json) -> Vec<String> {
    let s = schema();
    let mut v = Vec::new();
    match root {
        Root::Undescribed => {}
        Root::Contract(name) => {
            v.extend(s.violations(name, body));
            let details = match name {
                "GoogleRestErrorResponse" => Some(&body["error"]["details"]),
                "AddOfflineUserDataJobOperationsResponse" => Some(&body["partialFailureError"]["details"]),
                _ => None,
            };
            if let Some(details) = details {
                for f in failures(details) {
                    v.extend(s.violations("GoogleAdsFailure", &f));
                }
            }
            if name == "google.longrunning.Operation" {
                let mut meta = body["metadata"].clone();
                if meta["@type"] != METADATA_TYPE {
                    v.push(format!("operation metadata @type {}", meta["@type"]));
                }
                meta.as_object_mut().map(|o| o.remove("@type"));
                v.extend(s.violations("OfflineUserDataJobMetadata", &meta));
            }
        }
        Root::Search => {
            for row in body["results"].as_array().into_iter().flatten() {
                if let Some(job) = row.get("offlineUserDataJob") {
                    v.extend(s.violations("OfflineUserDataJob", job));
                }
            }
        }
        Root::SearchError => v.extend(s.violations("GoogleRestErrorResponse", body)),
    }
    v
}
