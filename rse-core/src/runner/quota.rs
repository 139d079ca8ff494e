//! Pacing to the quota a destination reports: no write into a window known to be spent, and
//! a clean stop when the daily allowance is (less the share reserved for other integrations).
//!
//! A vendor's headers say what is left *as of the answer*; writes in flight when it was
//! counted are not in it. So the gate counts every write it lets go against what was last
//! reported, and re-bases on each answer less the writes still in flight.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::destination::{QuotaFeedback, QuotaWindow};

/// What a write may do now.
#[derive(Debug, PartialEq)]
pub(crate) enum Gate {
    /// Go (counted against the known windows).
    Go,
    /// The short window is spent: wait until it resets.
    WaitUntil(Instant),
    /// The daily allowance is spent (or down to the reserve): stop.
    Exhausted { reason: String, resets_in: Option<Duration> },
}

#[derive(Debug, Default)]
struct Known {
    /// Writes still allowed, as far as we know, after the reserve; `None` when unknown.
    left: Option<i64>,
    /// When the window resets (a rolling window: its length after the answer).
    resets_at: Option<Instant>,
    /// What was last reported, for the reason of a stop.
    reported: Option<QuotaWindow>,
}

#[derive(Debug, Default)]
struct State {
    window: Known,
    daily: Known,
    in_flight: i64,
    last: Option<QuotaFeedback>,
}

/// The quota gate every worker passes before a write.
#[derive(Debug)]
pub(crate) struct QuotaGate {
    reserve: f64,
    state: Mutex<State>,
}

impl QuotaGate {
    /// A gate leaving `reserve` (0 ≤ reserve < 1) of each reported allowance unused.
    pub(crate) fn new(reserve: f64) -> Self {
        Self { reserve, state: Mutex::new(State::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Asks to write; a `Go` counts the write as in flight until [`done`](Self::done).
    pub(crate) fn check(&self) -> Gate {
        let now = Instant::now();
        let mut s = self.lock();
        let State { window, daily, .. } = &mut *s;
        for known in [window, daily] {
            if known.resets_at.is_some_and(|at| at <= now) {
                *known = Known::default();
            }
        }
        if s.daily.left.is_some_and(|left| left <= 0) {
            let reported = s.daily.reported;
            return Gate::Exhausted {
                reason: self.reason("the daily allowance", reported),
                resets_in: s.daily.resets_at.map(|at| at.saturating_duration_since(now)),
            };
        }
        if s.window.left.is_some_and(|left| left <= 0) {
            // A spent window whose reset is unknown: wait a second and ask again (the next
            // answer re-bases the count).
            let at = s.window.resets_at.unwrap_or(now + Duration::from_secs(1));
            if s.window.resets_at.is_none() {
                s.window = Known::default();
            }
            return Gate::WaitUntil(at);
        }
        let State { window, daily, .. } = &mut *s;
        for known in [window, daily] {
            if let Some(left) = &mut known.left {
                *left -= 1;
            }
        }
        s.in_flight += 1;
        Gate::Go
    }

    /// A write let go by [`check`](Self::check) ended; `reported` is the quota its answer
    /// carried, if any.
    pub(crate) fn done(&self, reported: Option<QuotaFeedback>) {
        let now = Instant::now();
        let mut s = self.lock();
        s.in_flight = (s.in_flight - 1).max(0);
        let Some(q) = reported else { return };
        let others = s.in_flight;
        if let Some(w) = q.window {
            s.window = self.known(w, others, now);
        }
        if let Some(d) = q.daily {
            s.daily = self.known(d, others, now);
        }
        s.last = Some(q);
    }

    /// The quota last reported.
    pub(crate) fn last(&self) -> Option<QuotaFeedback> {
        self.lock().last
    }

    fn known(&self, w: QuotaWindow, in_flight: i64, now: Instant) -> Known {
        let reserved = self.reserved(w.limit);
        let left = i64::try_from(w.remaining).unwrap_or(i64::MAX).saturating_sub(reserved).saturating_sub(in_flight);
        Known { left: Some(left), resets_at: w.resets_in.and_then(|d| now.checked_add(d)), reported: Some(w) }
    }

    fn reserved(&self, limit: Option<u64>) -> i64 {
        limit.map_or(0, |l| (self.reserve * l as f64).ceil() as i64)
    }

    fn reason(&self, what: &str, reported: Option<QuotaWindow>) -> String {
        match reported {
            Some(QuotaWindow { remaining, limit: Some(limit), .. }) if self.reserve > 0.0 => format!(
                "{what} is down to {remaining} of {limit} requests, and {} are left for other integrations (quota_reserve {})",
                self.reserved(Some(limit)),
                self.reserve
            ),
            Some(QuotaWindow { remaining, limit: Some(limit), .. }) => {
                format!("{what} is spent ({remaining} of {limit} requests left)")
            }
            _ => format!("{what} is spent"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(remaining: u64, limit: u64, secs: u64) -> QuotaFeedback {
        QuotaFeedback {
            window: Some(QuotaWindow::new(remaining, Some(limit), Some(Duration::from_secs(secs)))),
            daily: None,
        }
    }

    fn daily(remaining: u64, limit: u64) -> QuotaFeedback {
        QuotaFeedback {
            window: None,
            daily: Some(QuotaWindow::new(remaining, Some(limit), Some(Duration::from_secs(3600)))),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_window_waits_for_its_reset_then_goes() {
        let gate = QuotaGate::new(0.0);
        assert_eq!(gate.check(), Gate::Go);
        gate.done(Some(window(2, 10, 10)));
        assert_eq!(gate.check(), Gate::Go);
        assert_eq!(gate.check(), Gate::Go);
        let Gate::WaitUntil(at) = gate.check() else { panic!("a spent window must wait") };
        assert_eq!(at - Instant::now(), Duration::from_secs(10));
        tokio::time::sleep_until(at).await;
        assert_eq!(gate.check(), Gate::Go, "the window reset");
    }

    #[tokio::test(start_paused = true)]
    async fn writes_in_flight_count_against_what_an_answer_reports() {
        let gate = QuotaGate::new(0.0);
        for _ in 0..3 {
            assert_eq!(gate.check(), Gate::Go);
        }
        // The first answer says 3 left; two writes are still out, so one more may go.
        gate.done(Some(window(3, 10, 10)));
        assert_eq!(gate.check(), Gate::Go);
        assert!(matches!(gate.check(), Gate::WaitUntil(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_reserve_is_left_and_the_daily_allowance_stops_the_run() {
        let gate = QuotaGate::new(0.2);
        assert_eq!(gate.check(), Gate::Go);
        gate.done(Some(daily(21, 100)));
        assert_eq!(gate.check(), Gate::Go);
        let Gate::Exhausted { reason, resets_in } = gate.check() else { panic!("the reserve is reached") };
        assert!(reason.contains("20 are left for other integrations"), "{reason}");
        assert_eq!(resets_in, Some(Duration::from_secs(3600)));
    }

    #[tokio::test(start_paused = true)]
    async fn no_feedback_never_holds_a_write() {
        let gate = QuotaGate::new(0.5);
        for _ in 0..1000 {
            assert_eq!(gate.check(), Gate::Go);
            gate.done(None);
        }
        assert_eq!(gate.last(), None);
    }
}
