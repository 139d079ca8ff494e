//! The Marketing API's Business Use Case (BUC) rate limit of type `custom_audience`, per ad
//! account: a score over a rolling window, the `X-Business-Use-Case-Usage` header, and the
//! throttle error once the score is spent.
//!
//! Follows Meta's "Marketing API: Rate limiting" (custom_audience: per ad account per hour,
//! between 190,000 and 700,000 on the Standard tier, 5,000 on the Dev tier, plus 40 per active
//! custom audience; ME11) and "Graph API: Rate limiting" (the header is JSON keyed by the
//! business object id, each entry `{type, call_count, total_cputime, total_time,
//! estimated_time_to_regain_access}`, percentages and minutes; ME12, ME13). The throttle
//! answer is code 80003, the code the `/users` and `/usersreplace` references list ("There
//! have been too many calls to this ad-account"), with HTTP 400. `estimated_time_to_regain_access`
//! is rounded down to whole minutes (how Meta rounds is not documented): a block shorter than
//! a minute reports 0.
use std::collections::VecDeque;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::wire::Reply;

pub struct Buc {
    /// Score allowed per window; each write scores [`Buc::write_score`], a read 1.
    pub limit: u64,
    pub per: Duration,
    pub write_score: u64,
    /// Scored calls in the window: (arrival, score).
    pub recent: VecDeque<(Instant, u64)>,
    /// 80003 answers.
    pub throttled: u64,
}

impl Default for Buc {
    fn default() -> Self {
        // The Standard tier's floor.
        Buc { limit: 190_000, per: Duration::from_secs(3600), write_score: 3, recent: VecDeque::new(), throttled: 0 }
    }
}

impl Buc {
    fn expire(&mut self, now: Instant) {
        while self.recent.front().is_some_and(|(t, _)| now.duration_since(*t) >= self.per) {
            self.recent.pop_front();
        }
    }

    fn used(&self) -> u64 {
        self.recent.iter().map(|(_, s)| s).sum()
    }

    /// When the window has room again for a call scoring `score`.
    fn regain(&self, now: Instant, score: u64) -> Duration {
        let mut used = self.used();
        for (t, s) in &self.recent {
            if used + score <= self.limit {
                break;
            }
            used -= s;
            let frees_at = *t + self.per;
            if used + score <= self.limit {
                return frees_at.saturating_duration_since(now);
            }
        }
        Duration::ZERO
    }

    /// Admits a call scoring `score` at `now`, or answers 80003.
    pub fn admit(&mut self, now: Instant, score: u64) -> Result<(), Reply> {
        self.expire(now);
        if self.used() + score > self.limit {
            self.throttled += 1;
            return Err(Reply::error(
                80003,
                None,
                "There have been too many calls to this ad-account. Wait a bit and try again. For more info, please \
                 refer to https://developers.facebook.com/docs/graph-api/overview/rate-limiting#custom-audience.",
            ));
        }
        self.recent.push_back((now, score));
        Ok(())
    }

    /// The `X-Business-Use-Case-Usage` value for `account` as of `now`.
    pub fn header(&mut self, account: &str, now: Instant) -> String {
        self.expire(now);
        let percent = (self.used() * 100).div_ceil(self.limit.max(1)).min(100);
        let regain = if self.used() + self.write_score > self.limit {
            self.regain(now, self.write_score)
        } else {
            Duration::ZERO
        };
        json!({ account: [{
            "type": "custom_audience",
            "call_count": percent,
            "total_cputime": percent / 2,
            "total_time": percent / 2,
            "estimated_time_to_regain_access": regain.as_secs() / 60,
        }]})
        .to_string()
    }
}
