//! The gate every REST request passes: API version in the path, session, scripted faults, the
//! daily allowance and the concurrency cap ("API Request Limits and Allocations"; "Status Codes
//! and Error Responses": 401 `INVALID_SESSION_ID`, 403 `REQUEST_LIMIT_EXCEEDED`, 503). Every
//! answer carries `Sforce-Limit-Info: api-usage=<used>/<limit>`.

use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{Fault, Org, parse_version, sf_error};

fn bearer(req: &Request) -> Option<String> {
    let value = req.headers().get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme == "OAuth").then(|| token.trim().to_owned())
}

/// Decrements `in_flight` however the request ends.
struct InFlight(Arc<Mutex<Org>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut org) = self.0.lock() {
            org.in_flight -= 1;
        }
    }
}

/// What the gate decided about a request.
enum Admission {
    /// Handle it; answer 503 afterwards when the acknowledgement is to be lost.
    Handle { lose_ack: bool },
    /// Answer this without handling it.
    Refuse(Response),
}

/// What every REST request goes through: API version, session, scripted faults, the daily
/// allowance, the concurrency cap; and every answer carries `Sforce-Limit-Info`.
pub async fn gate(State(org): State<Arc<Mutex<Org>>>, req: Request, next: Next) -> Response {
    let (admission, hold) = {
        let mut s = org.lock().unwrap();
        let line = match req.uri().query() {
            Some(q) => format!("{} {}?{q}", req.method(), req.uri().path()),
            None => format!("{} {}", req.method(), req.uri().path()),
        };
        s.requests.push(line.clone());
        let version = req.uri().path().split('/').nth(3).unwrap_or_default().to_owned();
        let admission = if parse_version(&version).is_none() {
            Admission::Refuse(sf_error(StatusCode::NOT_FOUND, "NOT_FOUND", "The requested resource does not exist"))
        } else {
            s.versions.insert(version);
            admit(&mut s, &req, &line)
        };
        if let Admission::Handle { .. } = admission {
            s.api_used += 1;
            s.in_flight += 1;
            s.max_in_flight = s.max_in_flight.max(s.in_flight);
        }
        (admission, s.hold)
    };
    let mut response = match admission {
        Admission::Refuse(r) => r,
        Admission::Handle { lose_ack } => {
            let _guard = InFlight(org.clone());
            if let Some(hold) = hold {
                tokio::time::sleep(hold).await;
            }
            let handled = next.run(req).await;
            if lose_ack {
                sf_error(StatusCode::SERVICE_UNAVAILABLE, "SERVER_UNAVAILABLE", "Service Unavailable")
            } else {
                handled
            }
        }
    };
    let info = org.lock().unwrap().limit_info();
    response.headers_mut().insert("sforce-limit-info", HeaderValue::from_str(&info).unwrap());
    response
}

/// The checks before a request is handled, in the order Salesforce makes them: session first.
fn admit(s: &mut Org, req: &Request, line: &str) -> Admission {
    let session =
        || Admission::Refuse(sf_error(StatusCode::UNAUTHORIZED, "INVALID_SESSION_ID", "Session expired or invalid"));
    let Some(token) = bearer(req) else { return session() };
    if !s.tokens.contains(&token) {
        return session();
    }
    match s.expire_after {
        Some(0) => {
            s.tokens.clear();
            s.expire_after = None;
            return session();
        }
        Some(n) => s.expire_after = Some(n - 1),
        None => {}
    }
    let at = s.script.iter().position(|f| f.matcher.as_deref().is_none_or(|m| line.contains(m)));
    let due = match at {
        Some(i) if s.script[i].skip > 0 => {
            s.script[i].skip -= 1;
            None
        }
        other => other,
    };
    if let Some(fault) = due.and_then(|i| s.script.remove(i)) {
        return match fault.fault {
            Fault::Unavailable => Admission::Refuse(sf_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "SERVER_UNAVAILABLE",
                "Service Unavailable",
            )),
            Fault::ConcurrentLimit => Admission::Refuse(concurrent_limit()),
            Fault::LoseAck => Admission::Handle { lose_ack: true },
            Fault::Answer { status, body } => Admission::Refuse(
                (StatusCode::from_u16(status).unwrap(), [("content-type", "application/json;charset=UTF-8")], body)
                    .into_response(),
            ),
        };
    }
    if s.api_used >= s.daily_limit {
        return Admission::Refuse(sf_error(
            StatusCode::FORBIDDEN,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
        ));
    }
    if s.concurrency_cap.is_some_and(|cap| s.in_flight >= cap) {
        return Admission::Refuse(concurrent_limit());
    }
    Admission::Handle { lose_ack: false }
}

fn concurrent_limit() -> Response {
    sf_error(
        StatusCode::FORBIDDEN,
        "REQUEST_LIMIT_EXCEEDED",
        "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
    )
}
