//! HubSpot's request limits: a rolling ten-second window (190 per 10 s for a Professional
//! private app), an optional per-second limit, and a daily allowance, with the
//! `X-HubSpot-RateLimit-*` headers and the 429 body seen in the wild.
//!
//! Follows saas-contracts.md §1 "Rate limits" (HubSpot's "API usage guidelines and limits",
//! HS9/HS10; headers HS23/HS24; the 429 body HS25). HubSpot is not known to send
//! `Retry-After`, so this server does not.
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::contract;
use super::wire::{Reply, correlation_id};

/// The limit a request ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Policy {
    TenSecondlyRolling,
    Secondly,
    Daily,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::TenSecondlyRolling => "TEN_SECONDLY_ROLLING",
            Policy::Secondly => "SECONDLY",
            Policy::Daily => "DAILY",
        }
    }
}

pub struct Limits {
    /// At most `.0` requests in any rolling window of `.1`; `None` for no window.
    pub window: Option<(u32, Duration)>,
    /// At most this many requests in any rolling second (`X-HubSpot-RateLimit-Secondly`).
    pub secondly: Option<u32>,
    /// Requests allowed per day; `None` for an app without a daily cap (public OAuth apps).
    pub daily: Option<u64>,
    /// Requests counted against today's allowance.
    pub daily_used: u64,
    /// Arrival of every admitted request (the windows and `max_in_window` read it).
    pub admitted: Vec<Instant>,
    recent: VecDeque<Instant>,
    /// 429 answers, by policy.
    pub refused: BTreeMap<Policy, u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            window: Some((190, Duration::from_secs(10))),
            secondly: None,
            daily: Some(1_000_000),
            daily_used: 0,
            admitted: Vec::new(),
            recent: VecDeque::new(),
            refused: BTreeMap::new(),
        }
    }
}

impl Limits {
    fn horizon(&self) -> Duration {
        let window = self.window.map_or(Duration::ZERO, |(_, per)| per);
        window.max(Duration::from_secs(1))
    }

    fn in_last(&self, now: Instant, per: Duration) -> u32 {
        self.recent.iter().rev().take_while(|t| now.duration_since(**t) < per).count() as u32
    }

    /// Admits a request at `now` (counting it in every window and the day), or names the
    /// limit it ran into (not counted).
    pub fn admit(&mut self, now: Instant) -> Result<(), Policy> {
        let horizon = self.horizon();
        while self.recent.front().is_some_and(|t| now.duration_since(*t) >= horizon) {
            self.recent.pop_front();
        }
        let refused = if self.daily.is_some_and(|d| self.daily_used >= d) {
            Some(Policy::Daily)
        } else if self.secondly.is_some_and(|n| self.in_last(now, Duration::from_secs(1)) >= n) {
            Some(Policy::Secondly)
        } else if self.window.is_some_and(|(n, per)| self.in_last(now, per) >= n) {
            Some(Policy::TenSecondlyRolling)
        } else {
            None
        };
        if let Some(policy) = refused {
            *self.refused.entry(policy).or_default() += 1;
            return Err(policy);
        }
        self.recent.push_back(now);
        self.admitted.push(now);
        self.daily_used += 1;
        Ok(())
    }

    /// The `X-HubSpot-RateLimit-*` headers as of `now`.
    pub fn headers(&self, now: Instant) -> Vec<(String, String)> {
        let mut h = Vec::new();
        if let Some(daily) = self.daily {
            h.push(("X-HubSpot-RateLimit-Daily".into(), daily.to_string()));
            h.push(("X-HubSpot-RateLimit-Daily-Remaining".into(), daily.saturating_sub(self.daily_used).to_string()));
        }
        if let Some((n, per)) = self.window {
            h.push(("X-HubSpot-RateLimit-Interval-Milliseconds".into(), per.as_millis().to_string()));
            h.push(("X-HubSpot-RateLimit-Max".into(), n.to_string()));
            h.push(("X-HubSpot-RateLimit-Remaining".into(), n.saturating_sub(self.in_last(now, per)).to_string()));
        }
        if let Some(n) = self.secondly {
            h.push(("X-HubSpot-RateLimit-Secondly".into(), n.to_string()));
            h.push((
                "X-HubSpot-RateLimit-Secondly-Remaining".into(),
                n.saturating_sub(self.in_last(now, Duration::from_secs(1))).to_string(),
            ));
        }
        h
    }

    /// The 429 answer for `policy`.
    pub fn refusal(policy: Policy) -> Reply {
        let message = match policy {
            Policy::TenSecondlyRolling => "You have reached your ten_secondly_rolling limit.",
            Policy::Secondly => "You have reached your secondly limit.",
            Policy::Daily => "You have reached your daily limit.",
        };
        Reply::json(
            429,
            json!({
                "status": "error",
                "message": message,
                "errorType": "RATE_LIMIT",
                "correlationId": correlation_id(),
                "policyName": policy.name(),
                "groupName": "api-calls:private-app",
            }),
            contract::RATE_LIMIT,
        )
    }

    /// The most requests admitted within any window of `per`.
    pub fn max_in_window(&self, per: Duration) -> usize {
        let mut max = 0;
        let mut start = 0;
        for (end, t) in self.admitted.iter().enumerate() {
            while t.duration_since(self.admitted[start]) >= per {
                start += 1;
            }
            max = max.max(end - start + 1);
        }
        max
    }
}
