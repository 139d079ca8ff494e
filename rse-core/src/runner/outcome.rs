//! How a run ended: its status from what both sides did, and the report's figures.

use super::consume::Consumed;
use super::produce::Produced;
use crate::error::StateError;
use crate::report::{Counts, FailureKind, RunStatus, StageDurations, SyncReport};

pub(super) fn decide_status(p: &Produced, c: &Consumed, lease_lost: Option<String>, cancelled: bool) -> RunStatus {
    if let Some(reason) = lease_lost {
        return RunStatus::Failed { reason: format!("lease lost: {reason}"), kind: FailureKind::LeaseLost };
    }
    if let Some((kind, reason)) = &c.fatal {
        return RunStatus::Failed { reason: reason.clone(), kind: *kind };
    }
    if let Some((kind, reason)) = &p.state_error {
        return RunStatus::Failed { reason: format!("state commit failed: {reason}"), kind: *kind };
    }
    if let Some((reason, resets_in)) = &c.quota_exhausted {
        let resets_at_ms = resets_in.and_then(|d| std::time::SystemTime::now().checked_add(d)).map(|at| {
            at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        });
        return RunStatus::QuotaExhausted { reason: reason.clone(), resets_at_ms };
    }
    if let Some(retry_after) = c.rate_limited {
        let at = std::time::SystemTime::now().checked_add(retry_after).unwrap_or(std::time::SystemTime::now());
        let retry_at_ms = at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        return RunStatus::RateLimited { retry_after, retry_at_ms };
    }
    if let Some(reason) = &c.circuit_open {
        return RunStatus::CircuitOpen { reason: reason.clone() };
    }
    if let Some((kind, reason)) = &p.read_error {
        return RunStatus::Failed { reason: reason.clone(), kind: *kind };
    }
    if cancelled || !p.complete {
        return RunStatus::Cancelled;
    }
    if c.totals.undelivered > 0 || p.counts.undelivered > 0 {
        return RunStatus::Failed {
            reason: "some changes were not delivered; they go next run".into(),
            kind: FailureKind::Undelivered,
        };
    }
    if let Some(reason) = &p.withheld_reason {
        return RunStatus::DeletesWithheld { reason: reason.clone() };
    }
    let refused = c.totals.rejected.total()
        + c.totals.superseded
        + p.counts.source_rejected
        + p.counts.transform_rejected
        + p.counts.invalid;
    if refused > 0 { RunStatus::CompletedWithRejections } else { RunStatus::Succeeded }
}

/// The failure kind of a state error: a lost lease, or the state could not be written.
pub(super) fn state_failure(error: &StateError) -> FailureKind {
    match error {
        StateError::Fenced { .. } | StateError::LeaseHeld { .. } => FailureKind::LeaseLost,
        _ => FailureKind::StateCommit,
    }
}

pub(super) fn fill_report(report: &mut SyncReport, p: &Produced, c: &Consumed, sample_limit: usize) {
    report.counts = Counts {
        applied: c.totals.applied,
        rejected: c.totals.rejected,
        undelivered: p.counts.undelivered + c.totals.undelivered,
        recovered: c.totals.recovered,
        superseded: c.totals.superseded,
        destination: c.totals.effects,
        ..p.counts.clone()
    };
    report.retries = c.totals.retries;
    report.quota = c.quota;
    report.audience = c.audience.clone();
    report.rate_limit_waits = c.totals.rate_limit_waits;
    report.batches = c.totals.writes;
    report.bytes = c.totals.bytes;
    report.stages =
        StageDurations { deliver: c.totals.deliver_time, commit: p.stages.commit + c.totals.commit_time, ..p.stages };
    report.withheld_reason = p.withheld_reason.clone();
    report.rejections = p.samples.iter().chain(&c.totals.samples).take(sample_limit).cloned().collect();
}
