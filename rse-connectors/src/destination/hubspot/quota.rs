//! HubSpot's quota headers as the runner's [`QuotaFeedback`], and when the daily
//! allowance resets.
//!
//! Follows HubSpot's "API usage guidelines and limits" (saas-contracts.md §1, "Rate
//! limits"): every answer carries `X-HubSpot-RateLimit-Max`, `-Remaining` and
//! `-Interval-Milliseconds` for the rolling (ten-secondly) window, `-Secondly` and
//! `-Secondly-Remaining` where a per-second limit applies, and `-Daily` and
//! `-Daily-Remaining` for a private app's daily allowance. The daily count restarts at
//! midnight in the account's time zone, which no header states: it is configured
//! ([`UtcOffset`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use rse_core::{QuotaFeedback, QuotaWindow};

use super::config::UtcOffset;

const DAY: u64 = 86_400;

/// The rolling window's length when the answer does not say.
pub(super) const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

fn number(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The rolling window's length an answer states (`X-HubSpot-RateLimit-Interval-Milliseconds`).
pub(super) fn interval(headers: &HeaderMap) -> Option<Duration> {
    number(headers, "x-hubspot-ratelimit-interval-milliseconds").filter(|&ms| ms > 0).map(Duration::from_millis)
}

/// The quota an answer reports, `None` when it carries no quota header.
///
/// The window is the one with fewer calls left of the rolling and the per-second windows
/// (the runner waits on the tighter); the daily allowance resets at the next midnight at
/// `offset`, counted from `now`.
pub(super) fn feedback(headers: &HeaderMap, offset: UtcOffset, now: SystemTime) -> Option<QuotaFeedback> {
    let rolling = number(headers, "x-hubspot-ratelimit-remaining").map(|remaining| {
        let limit = number(headers, "x-hubspot-ratelimit-max");
        QuotaWindow::new(remaining, limit, Some(interval(headers).unwrap_or(DEFAULT_INTERVAL)))
    });
    let secondly = number(headers, "x-hubspot-ratelimit-secondly-remaining").map(|remaining| {
        QuotaWindow::new(remaining, number(headers, "x-hubspot-ratelimit-secondly"), Some(Duration::from_secs(1)))
    });
    let window = match (rolling, secondly) {
        (Some(r), Some(s)) if s.remaining < r.remaining => Some(s),
        (Some(r), _) => Some(r),
        (None, s) => s,
    };
    let daily = number(headers, "x-hubspot-ratelimit-daily-remaining").map(|remaining| {
        QuotaWindow::new(remaining, number(headers, "x-hubspot-ratelimit-daily"), Some(until_midnight(offset, now)))
    });
    (window.is_some() || daily.is_some()).then_some(QuotaFeedback { window, daily })
}

/// The time from `now` to the next midnight at `offset` (never zero: at midnight itself,
/// a whole day).
pub(super) fn until_midnight(offset: UtcOffset, now: SystemTime) -> Duration {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let local = since_epoch.as_secs() as i64 + i64::from(offset.minutes()) * 60;
    let into_day = local.rem_euclid(DAY as i64) as u64;
    Duration::from_secs(DAY - into_day).saturating_sub(Duration::from_nanos(u64::from(since_epoch.subsec_nanos())))
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static("")));
        }
        h
    }

    #[test]
    fn midnight_is_the_account_s() {
        // 2026-03-01T23:30:00Z.
        let t = UNIX_EPOCH + Duration::from_secs(1_772_407_800);
        assert_eq!(until_midnight(UtcOffset::UTC, t), Duration::from_secs(1_800));
        let east: UtcOffset = "+01:00".parse().unwrap_or_default();
        assert_eq!(until_midnight(east, t), Duration::from_secs(DAY - 1_800));
        let west: UtcOffset = "-05:00".parse().unwrap_or_default();
        assert_eq!(until_midnight(west, t), Duration::from_secs(1_800 + 5 * 3_600));
        let midnight = UNIX_EPOCH + Duration::from_secs(1_772_409_600);
        assert_eq!(until_midnight(UtcOffset::UTC, midnight), Duration::from_secs(DAY));
    }

    #[test]
    fn the_tighter_window_and_the_day_are_reported() {
        let t = UNIX_EPOCH + Duration::from_secs(1_772_407_800);
        let h = headers(&[
            ("X-HubSpot-RateLimit-Max", "190"),
            ("X-HubSpot-RateLimit-Remaining", "57"),
            ("X-HubSpot-RateLimit-Interval-Milliseconds", "10000"),
            ("X-HubSpot-RateLimit-Daily", "1000000"),
            ("X-HubSpot-RateLimit-Daily-Remaining", "999000"),
        ]);
        let q = feedback(&h, UtcOffset::UTC, t);
        let expected = QuotaFeedback {
            window: Some(QuotaWindow::new(57, Some(190), Some(Duration::from_secs(10)))),
            daily: Some(QuotaWindow::new(999_000, Some(1_000_000), Some(Duration::from_secs(1_800)))),
        };
        assert_eq!(q, Some(expected));
        let mut h = h;
        h.insert("x-hubspot-ratelimit-secondly", HeaderValue::from_static("10"));
        h.insert("x-hubspot-ratelimit-secondly-remaining", HeaderValue::from_static("2"));
        let window = feedback(&h, UtcOffset::UTC, t).and_then(|q| q.window);
        assert_eq!(window, Some(QuotaWindow::new(2, Some(10), Some(Duration::from_secs(1)))));
        assert_eq!(feedback(&headers(&[("X-HubSpot-RateLimit-Remaining", "many")]), UtcOffset::UTC, t), None);
    }
}
