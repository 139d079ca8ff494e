//! The delivering side of a run: batches written with bounded concurrency, and the circuit.

use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tracing::{Instrument, warn};

use super::SyncInner;
use super::deliver::{BatchFailure, BatchResult, Deliverer, Outgoing};
use super::outcome::state_failure;
use super::telemetry::outcome;
use crate::change::Op;
use crate::report::FailureKind;

/// What the delivery side did.
#[derive(Default)]
pub(super) struct Consumed {
    pub(super) totals: BatchResult,
    pub(super) circuit_open: Option<String>,
    pub(super) fatal: Option<(FailureKind, String)>,
    /// The longest wait a destination asked for beyond the sync's limit.
    pub(super) rate_limited: Option<Duration>,
    /// A long-period allowance was spent: why, and when it resets.
    pub(super) quota_exhausted: Option<(String, Option<Duration>)>,
    /// The quota the destination last reported.
    pub(super) quota: Option<crate::destination::QuotaFeedback>,
    /// The audience figures of the run's writes and of the destination's end of run.
    pub(super) audience: Option<crate::audience::AudienceReport>,
}

/// Delivers batches with bounded concurrency; opens the circuit after repeated failure.
pub(super) async fn consume(
    deliverer: &Deliverer,
    mut rx: mpsc::Receiver<Vec<Outgoing>>,
    inner: &SyncInner,
) -> Consumed {
    let concurrency = inner.options.max_concurrency.min(inner.destination.capabilities().max_concurrency).max(1);
    let mut inflight = FuturesUnordered::new();
    let mut out = Consumed::default();
    let mut consecutive_failures = 0u32;
    let mut closed = false;
    let mut batch_no = 0u64;
    loop {
        if closed && inflight.is_empty() {
            break;
        }
        tokio::select! {
            Some(result) = inflight.next(), if !inflight.is_empty() => {
                let result: BatchResult = result;
                match &result.failure {
                    None => consecutive_failures = 0,
                    Some(BatchFailure::Exhausted(reason)) => {
                        consecutive_failures += 1;
                        if consecutive_failures >= inner.options.circuit_breaker_threshold && out.circuit_open.is_none() {
                            warn!(failures = consecutive_failures, "Opening the circuit.");
                            out.circuit_open = Some(format!("{consecutive_failures} consecutive batches failed; last: {reason}"));
                            deliverer.metrics.circuit_opened();
                            deliverer.stop.cancel();
                        }
                    }
                    Some(BatchFailure::Fatal(kind, reason)) => {
                        out.fatal.get_or_insert_with(|| (*kind, reason.clone()));
                        deliverer.stop.cancel();
                    }
                    Some(BatchFailure::RateLimited(retry_after)) => {
                        let longest = out.rate_limited.map_or(*retry_after, |d| d.max(*retry_after));
                        out.rate_limited = Some(longest);
                        deliverer.stop.cancel();
                    }
                    Some(BatchFailure::QuotaExhausted { reason, resets_in }) => {
                        out.quota_exhausted.get_or_insert_with(|| (reason.clone(), *resets_in));
                        deliverer.stop.cancel();
                    }
                    Some(BatchFailure::LeaseLapsed) => {
                        out.fatal.get_or_insert_with(|| {
                            (
                                FailureKind::LeaseLost,
                                "the lease could not be renewed before it lapsed; no write was sent after that".into(),
                            )
                        });
                        deliverer.stop.cancel();
                    }
                    Some(BatchFailure::Commit(error)) => {
                        out.fatal.get_or_insert_with(|| (state_failure(error), format!("state commit failed: {error}")));
                        deliverer.stop.cancel();
                    }
                }
                merge_batch(&mut out.totals, result);
            }
            changes = rx.recv(), if !closed && inflight.len() < concurrency => match changes {
                Some(changes) if deliverer.stop.is_cancelled() => {
                    out.totals.undelivered += changes.len() as u64;
                    deliverer.metrics.changes_of(outcome::UNDELIVERED, changes.iter().map(|o| o.change.op));
                }
                Some(changes) => {
                    batch_no += 1;
                    let span = tracing::info_span!(
                        "batch_write",
                        sync = %inner.id,
                        run = deliverer.run.run_id,
                        batch = batch_no,
                        changes = changes.len(),
                        outcome = tracing::field::Empty,
                    );
                    inflight.push(deliverer.deliver(changes).instrument(span));
                }
                None => closed = true,
            },
        }
    }
    out
}

fn merge_batch(totals: &mut BatchResult, b: BatchResult) {
    for op in Op::ALL {
        totals.applied.add(op, b.applied.get(op));
        totals.rejected.add(op, b.rejected.get(op));
    }
    totals.effects.merge(b.effects);
    totals.undelivered += b.undelivered;
    totals.superseded += b.superseded;
    totals.recovered += b.recovered;
    totals.consent_removed += b.consent_removed;
    totals.retries += b.retries;
    totals.rate_limit_waits += b.rate_limit_waits;
    totals.writes += b.writes;
    totals.bytes += b.bytes;
    totals.deliver_time += b.deliver_time;
    totals.commit_time += b.commit_time;
    totals.samples.extend(b.samples);
}
