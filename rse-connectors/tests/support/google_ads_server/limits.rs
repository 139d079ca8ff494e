//! Google Ads API quotas: the developer token's daily operations (each `UserData` operation
//! counts; Basic access allows 15,000 a rolling day) and a short-term request rate, both
//! answered 429 `RESOURCE_EXHAUSTED` with a `QuotaError` and `QuotaErrorDetails`.
//!
//! Follows saas-contracts.md §3a "Limits" (GA9, GA10), the Google Ads API guide "API limits
//! and quotas" and "Rate limits" (`RESOURCE_TEMPORARILY_EXHAUSTED` for the short-term rate,
//! `RESOURCE_EXHAUSTED` for the daily operations; `retryDelay` in `quotaErrorDetails`, no
//! `Retry-After` header).
use std::collections::VecDeque;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::wire::Reply;

pub struct Limits {
    /// Operations allowed per day; `None` for Standard access (unlimited).
    pub daily_operations: Option<u64>,
    pub operations_used: u64,
    /// At most `.0` API calls in any window of `.1`.
    pub rate: Option<(u32, Duration)>,
    /// `retryDelay` of a short-term refusal.
    pub retry_delay: Duration,
    recent: VecDeque<Instant>,
    /// 429 answers for the daily operations.
    pub refused_daily: u64,
    /// 429 answers for the short-term rate.
    pub refused_rate: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            daily_operations: None,
            operations_used: 0,
            rate: None,
            retry_delay: Duration::from_secs(1),
            recent: VecDeque::new(),
            refused_daily: 0,
            refused_rate: 0,
        }
    }
}

impl Limits {
    /// Admits an API call at `now`, or answers its refusal.
    pub fn admit(&mut self, now: Instant) -> Result<(), Reply> {
        if let Some((n, per)) = self.rate {
            while self.recent.front().is_some_and(|t| now.duration_since(*t) >= per) {
                self.recent.pop_front();
            }
            if self.recent.len() >= n as usize {
                self.refused_rate += 1;
                return Err(refusal(
                    "RESOURCE_TEMPORARILY_EXHAUSTED",
                    "ACCOUNT",
                    "Requests per account",
                    self.retry_delay,
                ));
            }
            self.recent.push_back(now);
        }
        Ok(())
    }

    /// Spends `n` operations of today's allowance, or answers the refusal (nothing spent).
    pub fn spend(&mut self, n: u64) -> Result<(), Reply> {
        if let Some(daily) = self.daily_operations
            && self.operations_used + n > daily
        {
            self.refused_daily += 1;
            return Err(refusal(
                "RESOURCE_EXHAUSTED",
                "DEVELOPER",
                "Number of operations for basic access",
                Duration::from_secs(86_400),
            ));
        }
        self.operations_used += n;
        Ok(())
    }
}

fn refusal(code: &str, scope: &str, rate_name: &str, delay: Duration) -> Reply {
    let seconds = delay.as_secs_f64();
    let mut error = super::wire::error(
        "quotaError",
        code,
        &format!("Too many requests. Retry in {} seconds.", seconds.ceil() as u64),
    );
    error["details"] = json!({"quotaErrorDetails": {
        "rateScope": scope,
        "rateName": rate_name,
        "retryDelay": format!("{}s", trim(seconds)),
    }});
    Reply::ads(429, "RESOURCE_EXHAUSTED", vec![error])
}

/// A duration in seconds as `google.protobuf.Duration` JSON writes it.
fn trim(seconds: f64) -> String {
    let s = format!("{seconds:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}
