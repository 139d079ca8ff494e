//! Bearer tokens, their expiry, missing scopes, and the OAuth refresh-token grant.
//!
//! Follows HubSpot's "Authentication overview" and "OAuth: refresh an access token"
//! (`POST /oauth/v1/token`, form-encoded `grant_type=refresh_token`, `client_id`,
//! `client_secret`, `refresh_token`; answer `{token_type, access_token, refresh_token,
//! expires_in}`), and saas-contracts.md §1 "Endpoint / auth" (HS3, HS4): 401 for a missing,
//! unknown or expired token, 403 with `context.missingScopes`.
use std::collections::HashMap;
use std::time::Duration;

use axum::http::HeaderMap;
use serde_json::json;
use tokio::time::Instant;

pub use super::server_kit::Validity;
use super::server_kit::{bearer, token_form};
use super::wire::{Reply, correlation_id};

/// An OAuth app the token endpoint knows.
#[derive(Debug, Clone)]
pub struct OAuthApp {
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
    /// The `expires_in` of every access token it issues.
    pub lifetime: Duration,
    /// Each issued token is valid for this many requests (to expire one mid-run without waiting).
    pub uses_per_token: Option<u64>,
}

#[derive(Default)]
pub struct Auth {
    pub tokens: HashMap<String, Validity>,
    pub oauth: Option<OAuthApp>,
    /// Scopes the token lacks: every CRM call answers 403 naming them.
    pub missing_scopes: Vec<String>,
    /// Access tokens issued by the token endpoint.
    pub refreshes: u64,
    /// 401 answers.
    pub unauthorized: u64,
    issued: u64,
}

impl Auth {
    /// Checks the `Authorization` header of a CRM call, spending one use of the token.
    pub fn check(&mut self, headers: &HeaderMap, now: Instant) -> Result<(), Reply> {
        let Some(token) = bearer(headers) else {
            self.unauthorized += 1;
            return Err(Reply::error(
                401,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found: send an access token as `Authorization: Bearer <token>`.",
            ));
        };
        let Some(validity) = self.tokens.get_mut(&token) else {
            self.unauthorized += 1;
            return Err(Reply::error(401, "INVALID_AUTHENTICATION", "The access token is not valid for this account."));
        };
        if !validity.spend(now) {
            self.unauthorized += 1;
            return Err(Reply::error(401, "EXPIRED_AUTHENTICATION", "The OAuth token used to make this call expired."));
        }
        if !self.missing_scopes.is_empty() {
            return Err(Reply::error_with(
                403,
                "MISSING_SCOPES",
                "This app has not been granted all the scopes this call requires.",
                vec![json!({"message": "One or more of the following scopes are required.",
                            "context": {"missingScopes": self.missing_scopes}})],
                json!({"missingScopes": self.missing_scopes}),
            ));
        }
        Ok(())
    }

    /// `POST /oauth/v1/token` with a form-encoded body.
    pub fn token_endpoint(&mut self, headers: &HeaderMap, body: &[u8], now: Instant) -> Result<Reply, String> {
        let form = token_form(headers, body)?;
        let field = |name: &str| form.get(name).cloned().unwrap_or_default();
        let Some(app) = self.oauth.clone() else {
            return Ok(bad_grant("BAD_CLIENT_ID", "missing or unknown client id"));
        };
        if field("grant_type") != "refresh_token" {
            return Err(format!("token request with grant_type `{}`", field("grant_type")));
        }
        if field("client_id") != app.client_id || field("client_secret") != app.client_secret {
            return Ok(bad_grant("BAD_CLIENT_ID", "missing or unknown client id or secret"));
        }
        if field("refresh_token") != app.refresh_token {
            return Ok(bad_grant("BAD_REFRESH_TOKEN", "missing or unknown refresh token"));
        }
        self.issued += 1;
        self.refreshes += 1;
        let access = format!("oauth-access-{}-{}", self.issued, fastrand::u64(..));
        self.tokens.insert(access.clone(), Validity::issued(now, app.lifetime, app.uses_per_token));
        Ok(Reply::undescribed(
            200,
            json!({"token_type": "bearer", "access_token": access, "refresh_token": app.refresh_token,
                   "expires_in": app.lifetime.as_secs()}),
        ))
    }
}

fn bad_grant(status: &str, message: &str) -> Reply {
    Reply::undescribed(
        400,
        json!({"status": status, "message": message, "correlationId": correlation_id(), "requestId": correlation_id()}),
    )
}
