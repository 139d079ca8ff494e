//! The ingestion quotas of a Cloud project: requests per minute and per day, answered with
//! 429 `RESOURCE_EXHAUSTED`.
//!
//! Follows saas-contracts.md §3b "Limits" (Data Manager docs GA13b/GA21: IngestionService
//! 300 requests per minute and 100,000 per day per project, reads and writes counted apart)
//! and the contract's example `datamanager.error.resource_exhausted.json`: `ErrorInfo` reason
//! `RATE_LIMIT_EXCEEDED`, domain `googleapis.com`, `metadata.quota_limit` naming the quota
//! (`IngestRequestsPerMinutePerProject` or `IngestRequestsPerDayPerProject`), plus a
//! `QuotaFailure` as Google's quota errors carry. Google is not known to send `RetryInfo` with
//! these, so this server adds one only when a test asks for it. `requestStatus:retrieve` is a
//! read and is not counted here.
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::wire::{QUOTA_FAILURE, RETRY_INFO, Reply, error_info};

/// The quota a request ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum QuotaKind {
    PerMinute,
    PerDay,
}

impl QuotaKind {
    /// The `metadata.quota_limit` value for requests of `what` (`Ingest`, `Read`).
    pub fn limit_name(self, what: &str) -> String {
        match self {
            QuotaKind::PerMinute => format!("{what}RequestsPerMinutePerProject"),
            QuotaKind::PerDay => format!("{what}RequestsPerDayPerProject"),
        }
    }
}

pub struct Quota {
    /// What the quota counts: `Ingest` (ingest, remove, removeAll) or `Read`
    /// (`requestStatus:retrieve`; the name is this server's, Google's is not documented).
    pub what: &'static str,
    /// Requests admitted in any rolling window (a minute); `None` for no limit.
    pub per_minute: Option<u32>,
    /// Requests admitted per day; `None` for no limit.
    pub per_day: Option<u64>,
    /// Requests counted today.
    pub day_used: u64,
    /// Send `RetryInfo.retryDelay` with per-minute refusals (Google is not known to).
    pub retry_info: Option<Duration>,
    /// The rolling window's length (a minute; tests may shorten it).
    pub window: Duration,
    recent: VecDeque<Instant>,
    /// Arrival of every admitted request.
    pub admitted: Vec<Instant>,
    /// 429 answers by quota.
    pub refused: BTreeMap<QuotaKind, u64>,
}

impl Default for Quota {
    fn default() -> Self {
        Quota {
            what: "Ingest",
            per_minute: Some(300),
            per_day: Some(100_000),
            day_used: 0,
            retry_info: None,
            window: Duration::from_secs(60),
            recent: VecDeque::new(),
            admitted: Vec::new(),
            refused: BTreeMap::new(),
        }
    }
}

impl Quota {
    /// A quota of `what` (`Read`) with no limit set.
    pub fn unlimited(what: &'static str) -> Quota {
        Quota { what, per_minute: None, per_day: None, ..Quota::default() }
    }

    /// Admits an ingestion request (counting it), or names the quota it ran into.
    pub fn admit(&mut self, now: Instant) -> Result<(), QuotaKind> {
        while self.recent.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
            self.recent.pop_front();
        }
        let refused = if self.per_day.is_some_and(|d| self.day_used >= d) {
            Some(QuotaKind::PerDay)
        } else if self.per_minute.is_some_and(|n| self.recent.len() >= n as usize) {
            Some(QuotaKind::PerMinute)
        } else {
            None
        };
        if let Some(kind) = refused {
            *self.refused.entry(kind).or_default() += 1;
            return Err(kind);
        }
        self.recent.push_back(now);
        self.admitted.push(now);
        self.day_used += 1;
        Ok(())
    }

    /// The 429 answer for `kind`.
    pub fn refusal(&self, kind: QuotaKind) -> Reply {
        let (limit, per) = match kind {
            QuotaKind::PerMinute => (self.per_minute.map_or(0, u64::from), "minute"),
            QuotaKind::PerDay => (self.per_day.unwrap_or(0), "day"),
        };
        let mut details = vec![
            error_info(
                "RATE_LIMIT_EXCEEDED",
                "googleapis.com",
                json!({
                    "service": "datamanager.googleapis.com",
                    "quota_metric": "datamanager.googleapis.com/ingestion_requests",
                    "quota_limit": kind.limit_name(self.what),
                    "quota_limit_value": limit.to_string(),
                    "quota_location": "global",
                }),
            ),
            json!({"@type": QUOTA_FAILURE, "violations": [{
                "subject": "project:rse-contract-tests",
                "description": format!("Ingestion requests per {per} per project"),
                "apiService": "datamanager.googleapis.com",
                "quotaMetric": "datamanager.googleapis.com/ingestion_requests",
                "quotaId": kind.limit_name(self.what),
                "quotaValue": limit.to_string(),
            }]}),
        ];
        if kind == QuotaKind::PerMinute
            && let Some(delay) = self.retry_info
        {
            details.push(json!({"@type": RETRY_INFO, "retryDelay": format!("{}s", delay.as_secs_f64())}));
        }
        Reply::error(
            429,
            "RESOURCE_EXHAUSTED",
            format!(
                "Quota exceeded for quota metric '{} requests' and limit '{} requests per {per} per project' of \
                 service 'datamanager.googleapis.com'.",
                self.what, self.what
            ),
            details,
        )
    }

    /// The most requests admitted within any span of `per`.
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
