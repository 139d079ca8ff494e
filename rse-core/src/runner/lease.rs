//! The run's lease: renewed in the background, and proved locally before every write.
//!
//! A runner can be paused past its lease (a long stall, a suspended VM) and wake up to
//! send a write after another runner took the sync over. The state store fences such a
//! runner's commits, but a non-transactional destination would still apply its write.
//! So before each write the runner checks, on the monotonic clock, that it is still
//! inside its lease as it last knew it: the instant the last successful renewal was
//! *sent*, plus the TTL, minus a safety margin of a fifth of the TTL. It never writes
//! otherwise.
//!
//! What this cannot close: a stall *between* that check and the write's arrival at the
//! destination (a pause of more than the margin in those few instructions, or a request
//! held in a network queue). Destinations close that window themselves where they can:
//! the PostgreSQL destination's version guard refuses an older change over a newer one,
//! and an exactly-once destination (`Destination::transactional_state`) checks the
//! lease inside the transaction that writes the rows.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::state::{Lease, StateStore};

/// Until when, on this process's monotonic clock, the run may write.
#[derive(Debug)]
pub(crate) struct LeaseDeadline {
    ttl: Duration,
    until: Mutex<Instant>,
}

impl LeaseDeadline {
    /// A lease whose acquisition was sent at `sent`.
    pub fn new(sent: Instant, ttl: Duration) -> Self {
        Self { ttl, until: Mutex::new(sent + valid_for(ttl)) }
    }

    /// A renewal sent at `sent` succeeded.
    fn renewed(&self, sent: Instant) {
        let mut until = self.until.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *until = (*until).max(sent + valid_for(self.ttl));
    }

    /// Whether the run still holds its lease as far as it knows.
    pub fn holds(&self) -> bool {
        Instant::now() < *self.until.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How long a lease is trusted after the request that took or renewed it was sent.
fn valid_for(ttl: Duration) -> Duration {
    ttl - ttl / 5
}

/// Renews the lease at a third of its TTL until `done`; a lost lease, or one that could
/// not be renewed before it lapsed, stops the run.
pub(crate) async fn keep_lease(
    state: Arc<dyn StateStore>,
    mut lease: Lease,
    ttl: Duration,
    deadline: Arc<LeaseDeadline>,
    stop: CancellationToken,
    done: CancellationToken,
) -> Option<String> {
    let every = ttl / 3;
    loop {
        tokio::select! {
            () = done.cancelled() => return None,
            () = tokio::time::sleep(every) => {}
        }
        let sent = Instant::now();
        match tokio::time::timeout(every, state.renew_lease(&lease, ttl)).await {
            Ok(Ok(renewed)) => {
                lease = renewed;
                deadline.renewed(sent);
            }
            Ok(Err(error)) => {
                warn!(%error, "Lost the lease; stopping.");
                stop.cancel();
                return Some(error.to_string());
            }
            Err(_) if deadline.holds() => warn!("Renewing the lease timed out; trying again."),
            Err(_) => {
                warn!("The lease could not be renewed before it lapsed; stopping.");
                stop.cancel();
                return Some("the lease could not be renewed before it lapsed; no write was sent after that".into());
            }
        }
    }
}
