//! What the contract servers do alike, whatever the vendor: listen on a free local port,
//! keep access tokens valid for a time or a number of calls, read the bearer token and
//! form-encoded bodies. What each vendor answers (status codes, error bodies) stays in its
//! own server.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::http::HeaderMap;
use tokio::time::Instant;

/// Serves `app` on 127.0.0.1 at a free port, in the background; returns the address.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

/// How long one access token stays valid.
#[derive(Debug, Clone, Copy, Default)]
pub struct Validity {
    /// Invalid from this instant (server clock).
    pub expires_at: Option<Instant>,
    /// Invalid after this many more authenticated calls.
    pub uses_left: Option<u64>,
}

impl Validity {
    /// Valid for `n` more calls (none: expired from now).
    pub fn uses(n: u64) -> Validity {
        Validity { expires_at: None, uses_left: Some(n) }
    }

    /// A token issued at `now` for `lifetime` and, when set, `uses` calls.
    pub fn issued(now: Instant, lifetime: Duration, uses: Option<u64>) -> Validity {
        Validity { expires_at: Some(now + lifetime), uses_left: uses }
    }

    /// Whether the token is still valid at `now`; a valid one spends one of its calls.
    pub fn spend(&mut self, now: Instant) -> bool {
        if self.expires_at.is_some_and(|at| now >= at) || self.uses_left == Some(0) {
            return false;
        }
        if let Some(n) = self.uses_left.as_mut() {
            *n -= 1;
        }
        true
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("authorization")?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(str::to_owned)
}

/// The fields of a token request, whose body must be form-encoded (RFC 6749 §4.1.3, §6);
/// `Err` names the content type it had instead (a breach of the contract by the client).
pub fn token_form(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, String> {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(format!("token request with content-type `{content_type}`, not a form"));
    }
    Ok(form_pairs(&String::from_utf8_lossy(body)).collect())
}

/// The pairs of an `application/x-www-form-urlencoded` body or query string (`+` is a
/// space, `%XX` a byte; a `%` not followed by two hex digits stays as it is).
pub fn form_pairs(body: &str) -> impl Iterator<Item = (String, String)> + '_ {
    body.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k), percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `t` as RFC 3339 UTC with milliseconds, as the vendors write timestamps.
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}
