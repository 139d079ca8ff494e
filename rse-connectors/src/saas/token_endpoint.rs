//! One exchange with an OAuth 2.0 token endpoint: the grant's form, and what the answer
//! means (the table in [`super::oauth`]).

use std::time::{Duration, SystemTime};

use reqwest::Url;
use reqwest::header::{ACCEPT, HeaderValue};
use rse_core::DestinationError;
use serde_json::{Map, Value as Json};

use super::classify::{Failure, looks_like_identifier, origin, transport_error};
use super::jwt::JwtSigner;
use crate::destination::Secret;

/// The most of a token endpoint's answer that is read.
const MAX_TOKEN_BODY: usize = 64 << 10;

/// How the next token is obtained.
pub(super) enum Grant {
    Refresh { client_id: String, client_secret: Secret, scope: Option<String> },
    Jwt(Box<JwtSigner>),
}

impl Grant {
    /// The grant's `type` in a configuration, for messages.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Grant::Refresh { .. } => "oauth_refresh",
            Grant::Jwt(_) => "jwt_bearer",
        }
    }
}

/// A token endpoint's successful answer.
pub(super) struct Answer {
    pub(super) token: Secret,
    pub(super) lifetime: Option<Duration>,
    pub(super) refresh_token: Option<Secret>,
    pub(super) instance_url: Option<String>,
    pub(super) scope: Option<String>,
    pub(super) extra: Map<String, Json>,
}

/// A token endpoint and the grant it is asked with.
pub(super) struct Endpoint<'a> {
    pub(super) grant: &'a Grant,
    pub(super) url: &'a Url,
    pub(super) http: &'a reqwest::Client,
}

impl Endpoint<'_> {
    /// Asks the token endpoint for a token, sending `refresh_token` for the refresh grant.
    pub(super) async fn request(&self, refresh_token: Option<&Secret>) -> Result<Answer, DestinationError> {
        let mut form: Vec<(&str, &str)> = Vec::with_capacity(5);
        let assertion;
        match &self.grant {
            Grant::Refresh { client_id, client_secret, scope } => {
                form.push(("grant_type", "refresh_token"));
                if let Some(refresh_token) = refresh_token {
                    form.push(("refresh_token", refresh_token.expose()));
                }
                form.push(("client_id", client_id));
                form.push(("client_secret", client_secret.expose()));
                if let Some(scope) = scope {
                    form.push(("scope", scope));
                }
            }
            Grant::Jwt(signer) => {
                assertion = signer.assertion(SystemTime::now())?;
                form.push(("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"));
                form.push(("assertion", assertion.expose()));
            }
        }
        let grant = self.grant.name();
        let request =
            self.http.post(self.url.clone()).header(ACCEPT, HeaderValue::from_static("application/json")).form(&form);
        let mut response =
            request.send().await.map_err(|e| transport_error(&format!("{grant} token endpoint"), self.url, e))?;
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let (body, complete) = crate::destination::http::read_capped(response, MAX_TOKEN_BODY)
            .await
            .map_err(|e| transport_error(&format!("{grant} token endpoint"), self.url, e))?;
        if status.is_success() {
            if !complete {
                return Err(self.not_a_token("is larger than 64 KiB"));
            }
            return self.answer(&body);
        }
        Err(self.refused(&Failure::new(grant, status, &headers, &body)))
    }

    fn not_a_token(&self, problem: &str) -> DestinationError {
        DestinationError::fatal(format!(
            "{}: the answer of the token endpoint {} {problem}; check `token_url`",
            self.grant.name(),
            origin(self.url)
        ))
    }

    fn answer(&self, body: &[u8]) -> Result<Answer, DestinationError> {
        let Ok(Json::Object(mut fields)) = serde_json::from_slice::<Json>(body) else {
            return Err(self.not_a_token("is not a JSON object"));
        };
        let token = match fields.remove("access_token") {
            Some(Json::String(token)) if !token.is_empty() => Secret::new(token),
            _ => return Err(self.not_a_token("has no `access_token`")),
        };
        if let Some(kind) = fields.get("token_type").and_then(Json::as_str)
            && !kind.eq_ignore_ascii_case("bearer")
        {
            let kind = if looks_like_identifier(kind) { kind } else { "?" };
            return Err(self.not_a_token(&format!("holds a `{kind}` token, not a bearer token")));
        }
        let lifetime = match fields.get("expires_in") {
            Some(Json::Number(n)) => n.as_f64(),
            Some(Json::String(s)) => s.trim().parse::<f64>().ok(),
            _ => None,
        }
        .filter(|secs| secs.is_finite() && *secs > 0.0)
        .map(|secs| Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX));
        let refresh_token = match fields.remove("refresh_token") {
            Some(Json::String(t)) if !t.is_empty() => Some(Secret::new(t)),
            _ => None,
        };
        // A credential of its own; nothing here needs it.
        fields.remove("id_token");
        let text = |fields: &mut Map<String, Json>, name: &str| match fields.remove(name) {
            Some(Json::String(s)) => Some(s),
            _ => None,
        };
        let instance_url = text(&mut fields, "instance_url");
        let scope = text(&mut fields, "scope");
        Ok(Answer { token, lifetime, refresh_token, instance_url, scope, extra: fields })
    }

    /// What a token endpoint's refusal means (see the module docs).
    fn refused(&self, failure: &Failure<'_>) -> DestinationError {
        let grant = self.grant.name();
        let at = origin(self.url);
        let status = failure.status();
        let code = failure
            .json()
            .and_then(|j| j.get("error"))
            .and_then(Json::as_str)
            .filter(|c| looks_like_identifier(c))
            .unwrap_or("");
        let said = if code.is_empty() {
            format!("{grant}: the token endpoint {at} answered {}", failure.status_text())
        } else {
            format!("{grant}: the token endpoint {at} answered {} `{code}`", failure.status_text())
        };
        let unauthorized = |what: &str| DestinationError::Unauthorized { message: format!("{said}; {what}") };
        let jwt = matches!(self.grant, Grant::Jwt(_));
        match (status.as_u16(), code) {
            (400 | 401, "invalid_grant") if jwt => unauthorized(
                "the assertion was refused: check `username`, that the user is pre-authorized for the connected app, that the app's certificate matches `private_key`, and `audience` (the login URL)",
            ),
            (400 | 401, "invalid_grant") => unauthorized(
                "the refresh token is expired, revoked or of another app: authorize the app again and set `refresh_token`",
            ),
            (400 | 401, "invalid_client" | "unauthorized_client") if jwt => {
                unauthorized("check `client_id` (the connected app's consumer key) and that the app allows this flow")
            }
            (400 | 401, "invalid_client" | "unauthorized_client") | (401 | 403, _) => {
                unauthorized("check `client_id` and `client_secret`")
            }
            (429, _) => DestinationError::RateLimited { retry_after: failure.retry_after() },
            (408 | 500..=599, _) => DestinationError::transient(said),
            (400..=499, _) => DestinationError::fatal(format!("{said}; check the grant's settings and `token_url`")),
            (300..=399, _) => DestinationError::fatal(format!(
                "{said}; redirects are not followed: set `token_url` to the final address"
            )),
            _ => DestinationError::fatal(format!("{said}; check `token_url`")),
        }
    }
}
