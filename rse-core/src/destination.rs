//! The `Destination` trait: the operational tool that changes are delivered to.

use std::time::Duration;

use async_trait::async_trait;

use crate::change::{ChangeBatch, Op, WriteOutcome};
use crate::error::DestinationError;

/// A request quota: at most `requests` writes per `per`, with bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per period.
    pub requests: u32,
    /// The period.
    pub per: Duration,
    /// How many requests may go at once after a quiet spell (at least 1).
    pub burst: u32,
}

impl RateLimit {
    /// `requests` per second, bursts of one request.
    pub fn per_second(requests: u32) -> Self {
        Self { requests, per: Duration::from_secs(1), burst: 1 }
    }

    /// Sets the burst.
    pub fn with_burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }
}

/// What a destination accepts; the runner shapes batches, concurrency and pacing to fit.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DestinationCapabilities {
    /// The operations it supports. `Update` on a destination that upserts means "insert or
    /// update".
    pub ops: Vec<Op>,
    /// The most changes one write may carry.
    pub max_batch_rows: usize,
    /// The most bytes (estimated) one write may carry.
    pub max_batch_bytes: usize,
    /// Its request quota, if any.
    pub rate_limit: Option<RateLimit>,
    /// The most writes it accepts at once.
    pub max_concurrency: usize,
    /// Whether it drops a change whose idempotency key it has already applied.
    pub honours_idempotency_keys: bool,
    /// Whether a write is applied all-or-nothing.
    pub transactional: bool,
}

impl DestinationCapabilities {
    /// A destination that supports `ops`, with generous defaults for everything else.
    pub fn new(ops: impl IntoIterator<Item = Op>) -> Self {
        Self {
            ops: ops.into_iter().collect(),
            max_batch_rows: 10_000,
            max_batch_bytes: 16 << 20,
            rate_limit: None,
            max_concurrency: 4,
            honours_idempotency_keys: false,
            transactional: false,
        }
    }

    /// Whether `op` is supported.
    pub fn supports(&self, op: Op) -> bool {
        self.ops.contains(&op)
    }

    /// Sets the most changes per write.
    pub fn with_max_batch_rows(mut self, rows: usize) -> Self {
        self.max_batch_rows = rows;
        self
    }

    /// Sets the most bytes per write.
    pub fn with_max_batch_bytes(mut self, bytes: usize) -> Self {
        self.max_batch_bytes = bytes;
        self
    }

    /// Sets the request quota.
    pub fn with_rate_limit(mut self, limit: Option<RateLimit>) -> Self {
        self.rate_limit = limit;
        self
    }

    /// Sets the most writes at once.
    pub fn with_max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n;
        self
    }

    /// Declares that idempotency keys are honoured.
    pub fn with_idempotency_keys(mut self, honoured: bool) -> Self {
        self.honours_idempotency_keys = honoured;
        self
    }

    /// Declares that writes are all-or-nothing.
    pub fn with_transactional(mut self, transactional: bool) -> Self {
        self.transactional = transactional;
        self
    }
}

/// An operational tool that changes are delivered to: a CRM, an ad platform, a cache, a
/// database, a webhook.
///
/// A destination does only its I/O and classifies its errors. Batching, retries, rate
/// limiting, concurrency and state all live in the runner.
///
/// # Contract
/// - [`write`](Destination::write) returns exactly one outcome per change, in order.
///   `Applied` means durably applied: the runner records it in the state and will not send
///   that change again.
/// - `Insert` of a key the destination already holds must succeed (overwrite, or accept it
///   as applied): after a lost acknowledgement the runner re-sends the insert, under the
///   same idempotency key. `Delete` of a key it does not hold must succeed too.
/// - A refused change is `Rejected` with the destination's reason, not an error; the rest of
///   the batch is still applied.
/// - An `Err` means the batch as a whole failed, and its variant says what the runner does:
///   `Transient` and `RateLimited` are retried (so a write must be safe to repeat: use the
///   change's idempotency key or an upsert), `InvalidBatch` is bisected, `Unauthorized` and
///   `Fatal` end the run.
/// - Values never appear in error messages.
#[async_trait]
pub trait Destination: Send + Sync {
    /// A short name for reports and errors, e.g. `http:crm-webhook`.
    fn name(&self) -> &str;

    /// What it accepts.
    fn capabilities(&self) -> DestinationCapabilities;

    /// Checks connectivity and credentials without writing.
    ///
    /// # Errors
    /// `Unauthorized` for bad credentials, `Transient` when unreachable, `Fatal` otherwise.
    async fn check(&self) -> Result<(), DestinationError>;

    /// Applies a batch of changes.
    ///
    /// # Errors
    /// A [`DestinationError`] when the batch as a whole failed; its variant is the
    /// classification the runner acts on.
    async fn write(&self, batch: &ChangeBatch) -> Result<WriteOutcome, DestinationError>;
}
