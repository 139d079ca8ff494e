//! Pacing: the destination's quota, a shared `Retry-After` pause, and backoff with jitter.
//!
//! All three run on tokio's clock, so a test with a paused clock exercises real waits
//! instantly and the quota can be checked exactly.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::destination::RateLimit;
use crate::error::StateError;
use crate::shared_quota::SharedQuota;

/// A GCRA limiter: at most `burst` requests at once, then one per `per / requests`.
///
/// A caller reserves its slot before waiting, so concurrent workers are served in order
/// and never exceed the quota together.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    interval: Duration,
    tolerance: Duration,
    next: Mutex<Option<Instant>>,
}

impl RateLimiter {
    pub(crate) fn new(limit: Option<RateLimit>) -> Option<Self> {
        let limit = limit?;
        if limit.requests == 0 {
            return None;
        }
        let interval = limit.per / limit.requests;
        Some(Self { interval, tolerance: interval * limit.burst.saturating_sub(1), next: Mutex::new(None) })
    }

    /// Waits for a slot; returns how long it waited.
    pub(crate) async fn acquire(&self) -> Duration {
        let now = Instant::now();
        let at = {
            let mut next = self.next.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let tat = next.map_or(now, |t| t.max(now));
            *next = Some(tat + self.interval);
            tat.checked_sub(self.tolerance).unwrap_or(now).max(now)
        };
        if at > now {
            tokio::time::sleep_until(at).await;
        }
        at - now
    }
}

/// The sync's slot in a schedule shared with its other runners (its partitions in other
/// processes), paced to the destination's rate limit.
pub(crate) struct SharedPace {
    quota: Arc<dyn SharedQuota>,
    scope: Arc<str>,
    limit: RateLimit,
}

impl SharedPace {
    /// The shared pace of `inner`'s sync: `None` without a shared quota or a rate limit.
    pub(crate) fn new(inner: &super::SyncInner) -> Option<Self> {
        let quota = inner.shared_quota.clone()?;
        let limit = inner.destination.capabilities().rate_limit.filter(|l| l.requests > 0)?;
        Some(Self { quota, scope: inner.base_id.clone(), limit })
    }

    /// Reserves the next shared slot and waits for it; returns how long it waited.
    pub(crate) async fn acquire(&self) -> Result<Duration, StateError> {
        let wait = self.quota.reserve(&self.scope, self.limit).await?;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(wait)
    }
}

/// A pause every worker honours before writing: set by a `Retry-After`.
#[derive(Debug, Default)]
pub(crate) struct PauseGate {
    until: Mutex<Option<Instant>>,
}

impl PauseGate {
    /// Pauses every worker for at least `d` from now (a pause past the clock's range ends
    /// where the clock does).
    pub(crate) fn extend(&self, d: Duration) {
        let now = Instant::now();
        let until = now.checked_add(d).unwrap_or_else(|| far_future(now));
        let mut current = self.until.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *current = Some(current.map_or(until, |c| c.max(until)));
    }

    /// Waits out the pause, if any; returns how long it waited.
    pub(crate) async fn wait(&self) -> Duration {
        let start = Instant::now();
        loop {
            let until = *self.until.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match until {
                Some(u) if u > Instant::now() => tokio::time::sleep_until(u).await,
                _ => return start.elapsed(),
            }
        }
    }
}

/// An instant a year from `now` (or `now` itself if even that does not fit).
fn far_future(now: Instant) -> Instant {
    now.checked_add(Duration::from_secs(365 * 86_400)).unwrap_or(now)
}

/// The wall time during which at least one worker waited: the union of waits, not their
/// sum (four workers paused by one `Retry-After` of 3 s were paused 3 s, not 12).
#[derive(Debug, Default)]
pub(crate) struct WaitClock {
    inner: Mutex<WaitSpan>,
}

#[derive(Debug, Default)]
struct WaitSpan {
    /// The end of the latest wait recorded.
    until: Option<Instant>,
    total: Duration,
}

impl WaitClock {
    /// Records a wait from `start` to `end`; only the part not already covered counts, and
    /// is returned.
    pub(crate) fn record(&self, start: Instant, end: Instant) -> Duration {
        if end <= start {
            return Duration::ZERO;
        }
        let mut span = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let from = span.until.map_or(start, |u| u.max(start));
        if end > from {
            span.total += end - from;
            span.until = Some(end);
            return end - from;
        }
        Duration::ZERO
    }

    /// The wall time waited so far.
    pub(crate) fn total(&self) -> Duration {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).total
    }
}

/// Capped exponential backoff with full jitter: attempt `n` (from 1) waits a uniformly
/// random time in `[0, min(cap, base × 2^(n-1))]`, so retrying workers spread out instead
/// of returning together.
pub(crate) fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exp = base.saturating_mul(1u32.checked_shl(attempt.saturating_sub(1).min(31)).unwrap_or(u32::MAX));
    let ceiling = exp.min(cap);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_its_cap() {
        for attempt in 1..40 {
            let d = backoff(attempt, Duration::from_millis(100), Duration::from_secs(5));
            assert!(d <= Duration::from_secs(5));
            assert!(d <= Duration::from_millis(100) * 2u32.saturating_pow(attempt - 1));
        }
    }

    #[test]
    fn waits_that_overlap_count_once() {
        let clock = WaitClock::default();
        let t0 = Instant::now();
        let s = Duration::from_secs;
        clock.record(t0, t0 + s(3));
        clock.record(t0, t0 + s(3));
        clock.record(t0 + s(1), t0 + s(4));
        clock.record(t0 + s(10), t0 + s(11));
        assert_eq!(clock.total(), s(5));
    }

    #[test]
    fn a_pause_past_the_clock_does_not_panic() {
        let gate = PauseGate::default();
        gate.extend(Duration::MAX);
        gate.extend(Duration::from_secs(u64::MAX));
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_never_exceeds_its_quota() {
        let limiter = RateLimiter::new(Some(RateLimit::per_second(10).with_burst(2)));
        let Some(limiter) = limiter else { panic!("a limit of 10/s builds a limiter") };
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..50 {
            limiter.acquire().await;
            times.push(start.elapsed());
        }
        // Any window of one second holds at most requests + burst - 1 = 11 requests.
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..].iter().filter(|u| **u < *t + Duration::from_secs(1)).count();
            assert!(in_window <= 11, "{in_window} requests within a second from {t:?}");
        }
        // And it is not slower than the quota: 50 requests need about 4.8 s.
        assert!(start.elapsed() <= Duration::from_millis(4_900), "{:?}", start.elapsed());
    }
}
