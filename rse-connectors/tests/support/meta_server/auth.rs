//! Access tokens: the `access_token` parameter (form, query) or an `Authorization: Bearer`
//! header, expiry, missing permissions.
//!
//! Follows Meta's "Graph API: Handling errors" and "Access tokens" (saas-contracts.md §4,
//! ME7/ME15): a missing token is code 104, an unknown one 190, an expired one 190 with
//! subcode 463; a token without `ads_management` is code 200 (or 10). The `Authorization:
//! Bearer` form is accepted as Meta's Graph-hosted APIs document it for other products;
//! the Marketing API pages show only the parameter (saas-contracts.md §9).
use std::collections::{BTreeMap, HashMap};

use axum::http::HeaderMap;
use tokio::time::Instant;

pub use super::server_kit::Validity;
use super::wire::Reply;

#[derive(Default)]
pub struct Auth {
    pub tokens: HashMap<String, Validity>,
    /// Every call answers this permission error code (200 or 10) when set.
    pub permission_error: Option<u32>,
    /// 190 answers.
    pub unauthorized: u64,
    /// Calls that carried the token in the URL query (a token in a URL ends up in logs).
    pub token_in_query: u64,
    /// Calls that carried it as `Authorization: Bearer`.
    pub token_in_header: u64,
}

impl Auth {
    /// Checks the call's token, spending one use of it.
    pub fn check(
        &mut self,
        headers: &HeaderMap,
        query: &BTreeMap<String, String>,
        params: &BTreeMap<String, String>,
        now: Instant,
    ) -> Result<(), Reply> {
        let header = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("OAuth ")))
            .map(str::to_owned);
        if header.is_some() {
            self.token_in_header += 1;
        } else if query.contains_key("access_token") {
            self.token_in_query += 1;
        }
        let Some(token) = header.or_else(|| params.get("access_token").cloned()) else {
            self.unauthorized += 1;
            return Err(Reply::error(104, None, "An access token is required to request this resource."));
        };
        let Some(validity) = self.tokens.get_mut(&token) else {
            self.unauthorized += 1;
            return Err(Reply::error(190, None, "Invalid OAuth access token - Cannot parse access token"));
        };
        if !validity.spend(now) {
            self.unauthorized += 1;
            return Err(Reply::error(
                190,
                Some(463),
                "Error validating access token: Session has expired. The current time is after the token's expiry.",
            ));
        }
        match self.permission_error {
            Some(10) => Err(Reply::error(10, None, "Application does not have permission for this action")),
            Some(code) => Err(Reply::error(code, None, "Permissions error")),
            None => Ok(()),
        }
    }
}
