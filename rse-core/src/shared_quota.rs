//! A destination's request rate shared by several runners: the partitions of one sync in
//! different processes or hosts together stay under the destination's limit.
//!
//! Each runner paces its own writes to the destination's
//! [`RateLimit`]; `N` partitions would send `N` times that. With a
//! [`SharedQuota`] ([`SyncBuilder::shared_quota`](crate::SyncBuilder::shared_quota)) every
//! write first reserves the next request slot of one shared schedule, then waits until its
//! slot: the runners together send at most the limit, in the order they asked.
//!
//! # The schedule
//! A generic cell rate algorithm (GCRA): one "theoretical arrival time" `tat` per scope.
//! A reservation at time `now` gets the slot `max(tat, now)`, moves `tat` one interval
//! (`per / requests`) past it, and waits until the slot less the burst's tolerance
//! (`(burst − 1)` intervals). Any window of `per` then holds at most `requests + burst − 1`
//! slots. An implementation shared across hosts keeps `tat` where they all read it and
//! computes on one clock (PostgreSQL's `clock_timestamp()`), never on the hosts' clocks:
//! hosts whose clocks disagree still share one schedule. What a host receives is a wait, a
//! duration, which it measures on its own monotonic clock.
//!
//! # What it cannot remove
//! A write leaves when its wait ends, plus the time the answer took to come back and the
//! host's scheduling delay; a runner delayed more than one interval can send its request
//! close to the next runner's. Leave that headroom in the configured limit (a limit a little
//! under the vendor's), as one would for any client-side limiter.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::destination::RateLimit;
use crate::error::StateError;

/// A request schedule shared by every runner that names the same scope.
///
/// It has no `name` of its own: a state store that implements it (PostgreSQL's) is named
/// by [`StateStore::name`](crate::StateStore::name), and a second `name` would make every
/// call on such a store ambiguous. Its errors name what failed.
///
/// # Contract
/// - [`reserve`](Self::reserve) is atomic per scope: concurrent callers, in any number of
///   processes, get distinct slots one interval (`limit.per / limit.requests`) apart, and
///   any window of `limit.per` holds at most `limit.requests + limit.burst − 1` of them.
/// - The wait returned is measured from the moment the reservation was made, on the
///   implementation's one clock; it is never negative.
/// - A reservation is spent whether or not the caller sends: a caller that gives up
///   leaves a gap, never a burst.
#[async_trait]
pub trait SharedQuota: Send + Sync {
    /// Reserves the next request slot of `scope` under `limit`; returns how long the caller
    /// waits before sending.
    ///
    /// # Errors
    /// [`StateError::Unavailable`] when the shared schedule cannot be reached (the runner
    /// retries the write as it retries a transient failure).
    async fn reserve(&self, scope: &str, limit: RateLimit) -> Result<Duration, StateError>;
}

/// The interval between slots and the burst's tolerance of `limit`, or `None` for a limit
/// that allows nothing to be paced (zero requests).
pub fn gcra(limit: RateLimit) -> Option<(Duration, Duration)> {
    if limit.requests == 0 {
        return None;
    }
    let interval = limit.per / limit.requests;
    Some((interval, interval.saturating_mul(limit.burst.max(1) - 1)))
}

/// A [`SharedQuota`] within one process: the runners of several syncs (or partitions) in
/// one host sharing a destination's limit, and tests.
#[derive(Debug, Default)]
pub struct MemorySharedQuota {
    tat: Mutex<HashMap<String, Instant>>,
}

impl MemorySharedQuota {
    /// An empty schedule.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl SharedQuota for MemorySharedQuota {
    async fn reserve(&self, scope: &str, limit: RateLimit) -> Result<Duration, StateError> {
        let Some((interval, tolerance)) = gcra(limit) else { return Ok(Duration::ZERO) };
        let now = Instant::now();
        let mut tat = self.tat.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = tat.get(scope).map_or(now, |t| (*t).max(now));
        tat.insert(scope.to_owned(), slot + interval);
        Ok(slot.saturating_duration_since(now).saturating_sub(tolerance))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn runners_sharing_a_scope_share_one_schedule() {
        let quota = std::sync::Arc::new(MemorySharedQuota::new());
        let limit = RateLimit::per_second(10).with_burst(2);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let quota = quota.clone();
            tasks.push(tokio::spawn(async move {
                let mut sent = Vec::new();
                for _ in 0..10 {
                    let wait = quota.reserve("crm", limit).await.unwrap();
                    tokio::time::sleep(wait).await;
                    sent.push(start.elapsed());
                }
                sent
            }));
        }
        let mut times = Vec::new();
        for task in tasks {
            times.extend(task.await.unwrap());
        }
        times.sort();
        for (i, t) in times.iter().enumerate() {
            let within = times[i..].iter().filter(|u| **u < *t + Duration::from_secs(1)).count();
            assert!(within <= 11, "{within} requests within a second from {t:?}");
        }
        // Another scope is not held up by this one.
        assert_eq!(quota.reserve("other", limit).await.unwrap(), Duration::ZERO);
        assert_eq!(gcra(RateLimit::per_second(0)), None);
    }
}
