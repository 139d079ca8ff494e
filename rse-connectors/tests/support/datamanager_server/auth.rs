//! Bearer tokens: static tokens with an expiry, tokens a trusted authorization server issued
//! (the tests' `oauth_server`, for the service-account JWT grant and the refresh-token
//! grant), and the 401 / 403 answers Google's front end gives.
//!
//! Follows Google's "Authorization errors" of the API design guide (AIP-193 `ErrorInfo` with
//! `domain: googleapis.com`): a missing token → 401 `UNAUTHENTICATED` reason
//! `CREDENTIALS_MISSING`; an expired or unknown one → 401 `ACCESS_TOKEN_EXPIRED`; a token
//! without the `https://www.googleapis.com/auth/datamanager` scope → 403 `PERMISSION_DENIED`
//! reason `ACCESS_TOKEN_SCOPE_INSUFFICIENT`.
use std::collections::HashMap;
use std::sync::Arc;

use axum::http::HeaderMap;
use serde_json::json;
use tokio::time::Instant;

pub use super::server_kit::Validity;
use super::server_kit::bearer;
use super::wire::{Reply, error_info};

/// The scope the Data Manager API requires.
pub const SCOPE: &str = "https://www.googleapis.com/auth/datamanager";

/// Decides whether a token an external authorization server issued is valid now.
pub type Verifier = Arc<dyn Fn(&str) -> bool + Send + Sync>;

#[derive(Default)]
pub struct Auth {
    pub tokens: HashMap<String, Validity>,
    /// Tokens of a trusted authorization server.
    pub trusted: Option<Verifier>,
    /// Every valid token lacks the Data Manager scope: 403.
    pub scope_missing: bool,
    /// 401 answers.
    pub unauthorized: u64,
    /// 403 answers for the scope.
    pub forbidden: u64,
}

impl Auth {
    /// Checks the `Authorization` header, spending one use of a static token.
    pub fn check(&mut self, headers: &HeaderMap, method: &str) -> Result<(), Reply> {
        let Some(token) = bearer(headers) else {
            self.unauthorized += 1;
            return Err(unauthenticated("CREDENTIALS_MISSING", method));
        };
        let now = Instant::now();
        let valid = match self.tokens.get_mut(&token) {
            Some(validity) => validity.spend(now),
            None => self.trusted.as_ref().is_some_and(|verify| verify(&token)),
        };
        if !valid {
            self.unauthorized += 1;
            return Err(unauthenticated("ACCESS_TOKEN_EXPIRED", method));
        }
        if self.scope_missing {
            self.forbidden += 1;
            return Err(Reply::error(
                403,
                "PERMISSION_DENIED",
                "Request had insufficient authentication scopes.",
                vec![error_info(
                    "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                    "googleapis.com",
                    json!({"service": "datamanager.googleapis.com", "method": method}),
                )],
            ));
        }
        Ok(())
    }
}

fn unauthenticated(reason: &str, method: &str) -> Reply {
    Reply::error(
        401,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or \
         other valid authentication credential.",
        vec![error_info(reason, "googleapis.com", json!({"service": "datamanager.googleapis.com", "method": method}))],
    )
}
