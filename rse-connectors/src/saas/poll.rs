//! Waiting for a vendor's asynchronous job (a Salesforce Bulk API 2.0 ingest job, a Google
//! offline user data job): poll until it ends, with growing, jittered pauses, a bound on
//! the whole wait, and cancellation.
//!
//! ```
//! use std::time::Duration;
//! use rse_connectors::saas::{PollOptions, PollOutcome, Probe, poll_until};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), rse_connectors::DestinationError> {
//! let options = PollOptions::new(Duration::from_secs(5))
//!     .with_intervals(Duration::from_millis(1), Duration::from_millis(4));
//! let mut polls = 0;
//! let outcome = poll_until(&options, std::future::pending(), || {
//!     polls += 1;
//!     let state = if polls < 3 { "InProgress" } else { "JobComplete" };
//!     async move {
//!         Ok(match state {
//!             "JobComplete" => Probe::Done(polls),
//!             "Failed" => Probe::Failed("the job failed".to_owned()),
//!             other => Probe::Pending(other),
//!         })
//!     }
//! })
//! .await?;
//! assert!(matches!(outcome, PollOutcome::Done(3)));
//! # Ok(()) }
//! ```

use std::future::Future;
use std::time::Duration;

use rse_core::DestinationError;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// How a poll paces itself; as configuration data
/// `{"min_interval": "1s", "max_interval": "30s", "max_wait": "2h"}`, each optional.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PollOptions {
    /// The first pause (default 1 s).
    #[serde(with = "rse_core::config::duration")]
    pub min_interval: Duration,
    /// The longest pause (default 30 s).
    #[serde(with = "rse_core::config::duration")]
    pub max_interval: Duration,
    /// Each pause is the previous one times this (default 2), up to `max_interval`.
    pub multiplier: f64,
    /// Each pause is shortened by a random share of up to this much (default 0.2), so
    /// that jobs started together do not poll together.
    pub jitter: f64,
    /// The longest the whole wait may take (default one hour); then the poll ends as
    /// [`PollOutcome::TimedOut`].
    #[serde(with = "rse_core::config::duration")]
    pub max_wait: Duration,
    /// How many transient probe failures in a row are waited out (default 3); one more
    /// is returned.
    pub max_transient_failures: u32,
}

impl Default for PollOptions {
    fn default() -> Self {
        Self::new(Duration::from_secs(3600))
    }
}

impl PollOptions {
    /// Waits at most `max_wait`; the other settings at their defaults.
    pub fn new(max_wait: Duration) -> Self {
        Self {
            min_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.2,
            max_wait,
            max_transient_failures: 3,
        }
    }

    /// The first and the longest pause.
    pub fn with_intervals(mut self, min: Duration, max: Duration) -> Self {
        self.min_interval = min;
        self.max_interval = max.max(min);
        self
    }

    /// How much each pause grows.
    pub fn with_multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// The random share a pause may be shortened by (0 to 1).
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// How many transient probe failures in a row are waited out.
    pub fn with_max_transient_failures(mut self, n: u32) -> Self {
        self.max_transient_failures = n;
        self
    }

    /// The pause after `pause`, before jitter.
    fn grow(&self, pause: Duration) -> Duration {
        let multiplier = if self.multiplier.is_finite() && self.multiplier >= 1.0 { self.multiplier } else { 1.0 };
        Duration::try_from_secs_f64(pause.as_secs_f64() * multiplier)
            .unwrap_or(self.max_interval)
            .clamp(self.min_interval, self.max_interval)
    }

    /// `pause` shortened by a random share of up to `jitter`, never below the minimum.
    fn jittered(&self, pause: Duration) -> Duration {
        let jitter = if self.jitter.is_finite() { self.jitter.clamp(0.0, 1.0) } else { 0.0 };
        let factor = 1.0 - jitter * fastrand::f64();
        Duration::try_from_secs_f64(pause.as_secs_f64() * factor).unwrap_or(pause).max(self.min_interval.min(pause))
    }
}

/// What one look at the job saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe<S, T> {
    /// Still running, in this state.
    Pending(S),
    /// Finished well, with this result.
    Done(T),
    /// Finished badly, for this reason (the vendor's codes, never values).
    Failed(String),
}

/// How the wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollOutcome<S, T> {
    /// The job finished well.
    Done(T),
    /// The job finished badly.
    Failed(String),
    /// `max_wait` passed first; `last` is the last state seen (`None` when no look ended).
    TimedOut {
        /// The last state seen.
        last: Option<S>,
        /// How long it waited.
        waited: Duration,
    },
    /// The cancellation future completed first.
    Cancelled {
        /// The last state seen.
        last: Option<S>,
    },
}

/// Calls `probe` until it says the job is done or failed, pausing between calls (growing
/// from `min_interval` to `max_interval`, jittered), for at most `max_wait` in all, or
/// until `cancel` completes (pass `token.cancelled()` of a
/// `tokio_util::sync::CancellationToken`, or any future). A look in flight when the time
/// is up or the wait is cancelled is dropped.
///
/// # Errors
/// The probe's error, at once unless it is transient ([`DestinationError::Transient`],
/// or [`DestinationError::RateLimited`], whose wait is honoured within `max_wait`): those
/// are waited out up to `max_transient_failures` in a row.
pub async fn poll_until<S, T, F, Fut>(
    options: &PollOptions,
    cancel: impl Future<Output = ()>,
    mut probe: F,
) -> Result<PollOutcome<S, T>, DestinationError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Probe<S, T>, DestinationError>>,
{
    let started = Instant::now();
    let deadline = started + options.max_wait;
    let mut cancel = std::pin::pin!(cancel);
    let mut last: Option<S> = None;
    let mut pause = options.min_interval;
    let mut failures = 0u32;
    loop {
        let looked = tokio::select! {
            biased;
            () = &mut cancel => return Ok(PollOutcome::Cancelled { last }),
            () = tokio::time::sleep_until(deadline) => {
                return Ok(PollOutcome::TimedOut { last, waited: started.elapsed() });
            }
            looked = probe() => looked,
        };
        let mut wait = options.jittered(pause);
        match looked {
            Ok(Probe::Done(result)) => return Ok(PollOutcome::Done(result)),
            Ok(Probe::Failed(reason)) => return Ok(PollOutcome::Failed(reason)),
            Ok(Probe::Pending(state)) => {
                failures = 0;
                last = Some(state);
                pause = options.grow(pause);
            }
            Err(error @ (DestinationError::Transient { .. } | DestinationError::RateLimited { .. })) => {
                failures += 1;
                if failures > options.max_transient_failures {
                    return Err(error);
                }
                if let DestinationError::RateLimited { retry_after: Some(after) } = error {
                    wait = wait.max(after);
                }
            }
            Err(error) => return Err(error),
        }
        tokio::select! {
            biased;
            () = &mut cancel => return Ok(PollOutcome::Cancelled { last }),
            () = tokio::time::sleep_until(deadline) => {
                return Ok(PollOutcome::TimedOut { last, waited: started.elapsed() });
            }
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_to_the_maximum_and_jitter_only_shortens() {
        let options =
            PollOptions::new(Duration::from_secs(60)).with_intervals(Duration::from_secs(1), Duration::from_secs(8));
        let mut pause = options.min_interval;
        let mut seen = vec![pause];
        for _ in 0..5 {
            pause = options.grow(pause);
            seen.push(pause);
        }
        assert_eq!(seen.iter().map(Duration::as_secs).collect::<Vec<_>>(), [1, 2, 4, 8, 8, 8]);
        for _ in 0..100 {
            let jittered = options.jittered(Duration::from_secs(8));
            assert!(jittered <= Duration::from_secs(8) && jittered >= Duration::from_millis(6400), "{jittered:?}");
        }
    }

    #[tokio::test]
    async fn transient_failures_are_waited_out_up_to_the_limit() {
        let options = PollOptions::new(Duration::from_secs(600))
            .with_intervals(Duration::from_millis(1), Duration::from_millis(2))
            .with_max_transient_failures(2);
        let mut calls = 0;
        let outcome: Result<PollOutcome<(), ()>, _> = poll_until(&options, std::future::pending(), || {
            calls += 1;
            async { Err(DestinationError::transient("503")) }
        })
        .await;
        assert!(matches!(outcome, Err(DestinationError::Transient { .. })));
        assert_eq!(calls, 3);

        let mut calls = 0;
        let outcome = poll_until(&options, std::future::pending(), || {
            calls += 1;
            let n = calls;
            async move {
                match n {
                    1 | 2 => Err(DestinationError::transient("503")),
                    3 => Ok(Probe::Pending("InProgress")),
                    4 => Err(DestinationError::transient("503")),
                    _ => Ok(Probe::Done(n)),
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(outcome, PollOutcome::Done(5));
    }
}
