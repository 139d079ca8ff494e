//! One run: lease, read, transform, diff, plan, deliver, commit, report.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use super::consume::{Consumed, consume};
use super::deliver::{Deliverer, Outgoing, RunSchema};
use super::lease::{LeaseDeadline, keep_lease};
use super::operator::{paused_run, paused_status, watch_pause};
use super::outcome::{decide_status, fill_report, state_failure};
use super::pace::{PauseGate, RateLimiter, SharedPace, WaitClock};
use super::prior::PriorRejections;
use super::produce::{Produced, Producer};
use super::pushdown::{self, PushdownPlan};
use super::quota::QuotaGate;
use super::{Mode, SyncInner};
use crate::audience::AudienceReport;
use crate::change::{ChangeBatch, ChangeOutcome};
use crate::destination::{DestinationRunReport, RunEnd, RunInfo};
use crate::diff::{Differ, HashDiff, LookupDiff, MergeDiff};
use crate::drift::SchemaSummary;
use crate::error::{Error, StateError};
use crate::key::Key;
use crate::observe::{ObservedRecord, RecordOutcome};
use crate::report::{FailureKind, ProgressEvent, RejectionSample, RunStatus, SyncReport};
use crate::state::RejectionStage;
use crate::state::{Lease, RejectedEntry, StateCommit};

/// Rejected entries are read in pages of this many.
pub(super) const PAGE: usize = 10_000;

pub(super) async fn run(inner: &SyncInner, cancel: CancellationToken) -> Result<SyncReport, Error> {
    let metrics = inner.metrics();
    let started = Instant::now();
    let result = resume_and_run(inner, cancel).await;
    match &result {
        Ok(report) => metrics.finished(report, started.elapsed()),
        Err(Error::State(StateError::LeaseHeld { .. })) => metrics.lease_conflict(),
        Err(_) => metrics.failed(started.elapsed()),
    }
    result
}

async fn resume_and_run(inner: &SyncInner, cancel: CancellationToken) -> Result<SyncReport, Error> {
    let span = info_span!(
        "sync_run",
        sync = %inner.id,
        mode = %inner.mode,
        run = tracing::field::Empty,
        read = tracing::field::Empty,
        applied = tracing::field::Empty,
        rejected = tracing::field::Empty,
        unchanged = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    if let Some(report) = paused_run(inner).await? {
        return Ok(report);
    }
    super::layout::check_layout(inner).await?;
    // A full resync that did not complete is resumed: this run sends every record too.
    let resuming;
    let inner = match unfinished_full_resync(inner).await? {
        Some(run_id) => {
            info!(sync = %inner.id, unfinished = run_id, "Run {run_id} was a full resync that did not complete; this run resumes it.");
            resuming = SyncInner { options: inner.options.clone().with_full_resync(true), ..inner.clone() };
            &resuming
        }
        None => inner,
    };
    run_in_span(inner, cancel, span.clone()).instrument(span).await
}

/// The run id of the sync's last run, when it was a full resync that did not complete
/// (crashed, cancelled, stopped by a quota or a failure): what it did not re-send may be
/// missing at a destination that replaces its contents on a full resync (an ad audience).
pub(super) async fn unfinished_full_resync(inner: &SyncInner) -> Result<Option<u64>, Error> {
    if inner.options.full_resync || inner.options.dry_run {
        return Ok(None);
    }
    let last = inner.state.runs(&inner.id, 1).await?;
    Ok(last.first().filter(|r| r.full_resync && !r.dry_run && !r.status.is_complete()).map(|r| r.run_id))
}

pub(super) async fn run_in_span(
    inner: &SyncInner,
    cancel: CancellationToken,
    span: tracing::Span,
) -> Result<SyncReport, Error> {
    let started = Instant::now();
    let options = &inner.options;
    let mut report = SyncReport::new(&inner.id, inner.mode);
    report.dry_run = options.dry_run;
    report.full_resync = options.full_resync;

    let sent = Instant::now();
    let lease = if options.dry_run {
        None
    } else {
        Some(inner.state.acquire_lease(&inner.id, &options.holder, options.lease_ttl).await?)
    };
    let deadline = Arc::new(LeaseDeadline::new(sent, options.lease_ttl));
    let waits = Arc::new(WaitClock::default());
    report.run_id = lease.as_ref().map_or(0, |l| l.token);
    span.record("run", report.run_id);
    let _in_progress = inner.metrics().started(inner.mode.ops());

    // The lease is renewed from now on, through the preparation too: loading a large
    // snapshot can take longer than the lease lives.
    let stop = cancel.child_token();
    let done = CancellationToken::new();
    let keep = async {
        match &lease {
            Some(lease) => {
                let (state, ttl) = (inner.state.clone(), options.lease_ttl);
                keep_lease(state, lease.clone(), ttl, deadline.clone(), stop.clone(), done.clone()).await
            }
            None => None,
        }
    };
    // An operator's pause stops the run as a cancellation does, and names who paused it.
    let watch = async {
        match &lease {
            Some(_) => watch_pause(inner, stop.clone(), done.clone()).await,
            None => None,
        }
    };
    let work = async {
        let out = work(inner, &mut report, lease.as_ref(), &stop, &deadline, &waits).await;
        done.cancel();
        out
    };
    let (worked, lease_lost, paused) = tokio::join!(work, keep, watch);
    let (produced, consumed) = match worked {
        Ok(out) => out,
        Err(e) => {
            if let Some(lease) = &lease {
                let _ = inner.state.release_lease(lease).await;
            }
            return Err(e);
        }
    };

    let mut status = decide_status(&produced, &consumed, lease_lost, cancel.is_cancelled() || paused.is_some());
    if let (RunStatus::Cancelled, Some(pause)) = (&status, &paused) {
        status = paused_status(pause);
    }
    fill_report(&mut report, &produced, &consumed, options.rejection_sample);
    report.rate_limit_wait = waits.total();
    if let Some(delivered) = &produced.delivered {
        report.schema = Some(delivered.clone());
    }
    report.schema_drift = produced.drift.clone();
    report.canary = produced.canary;
    report.partition = produced.partition;
    report.suppression = produced.suppression.clone().map(|mut s| {
        s.removed = consumed.totals.consent_removed;
        s
    });

    if let Some(plan) = &produced.pushdown {
        let pushdown = report.pushdown.get_or_insert_with(Default::default);
        pushdown.rows_read = produced.pushdown_rows;
        pushdown.vanished = produced.vanished;
        pushdown.record_failures = plan.failures.load(std::sync::atomic::Ordering::Relaxed);
        if let Some(reason) = &plan.error {
            pushdown.full_rediff.get_or_insert_with(|| reason.clone());
        }
    }

    if let Some(lease) = &lease {
        if status.is_complete() {
            let mut commit = StateCommit::default();
            // A full re-diff that read the whole model sets the epoch: in the source's table
            // first, then with the state (both must agree before a run reads only changes).
            if let Some(plan) = &produced.pushdown
                && plan.full.is_some()
                && plan.failures.load(std::sync::atomic::Ordering::Relaxed) > 0
            {
                warn!(
                    "Recording delivered rows in the source's table failed during a full re-diff; the next run re-diffs in full again."
                );
            }
            if let Some(plan) = &produced.pushdown
                && plan.completes()
                && produced.complete
            {
                match pushdown::pushdown_of(inner.source.as_ref()) {
                    Ok(source) => match source.complete(&inner.id, &plan.epoch).await {
                        Ok(()) => commit.pushdown_epoch = Some(plan.epoch.to_string()),
                        Err(error) => {
                            warn!(%error, "Completing the full re-diff in the source's table failed; the next run re-diffs in full again.");
                        }
                    },
                    Err(reason) => warn!(%reason, "The full re-diff could not be completed."),
                }
            }
            let completes = commit.pushdown_epoch.is_some();
            if let Some(cursor) = produced.max_cursor.clone()
                && inner.cursor_index.is_some()
                && produced.incremental
                // A canary run leaves the keys outside it for a wider run to read.
                && options.canary.is_none()
            {
                report.cursor_after = Some(cursor.clone());
                commit.cursor = Some(cursor);
            }
            commit.cleared_rejections = produced.cleared.clone();
            let mut repeated = produced.key_rejections.clone();
            repeated.sort_by(|a, b| a.key.cmp(&b.key));
            repeated.dedup_by(|a, b| a.key == b.key);
            let observed = observed_keys(inner, &repeated);
            commit.rejected = repeated;
            if let Some(restriction) = &inner.restrict {
                commit.settled = super::reconcile::unmark(restriction, &produced.planned_keys);
            }
            report.counts.recovered += commit.cleared_rejections.len() as u64;
            // No span for a commit that writes nothing: a trace shows only real commits.
            let committed = if commit.is_empty() {
                Ok(())
            } else {
                let entries = commit.rejected.len() + commit.cleared_rejections.len();
                let span = info_span!("state_commit", kind = "final", entries);
                inner.state.commit(lease, commit).instrument(span).await
            };
            if let Err(error) = committed {
                warn!(%error, "Final state commit failed.");
                status = RunStatus::Failed {
                    reason: format!("final state commit failed: {error}"),
                    kind: state_failure(&error),
                };
                report.cursor_after = report.cursor_before.clone();
            } else {
                if completes && let Some(pushdown) = &mut report.pushdown {
                    pushdown.completed = true;
                }
                inner.observers.outcomes(&inner.id, report.run_id, observed);
            }
        }
        report.status = status;
        report.stages.total = started.elapsed();
        if let Err(error) = inner.state.record_run(lease, &report).await {
            warn!(%error, "Recording the run failed.");
        }
        if let Err(error) = inner.state.release_lease(lease).await {
            warn!(%error, "Releasing the lease failed; it lapses after its TTL.");
        }
    } else {
        report.status = status;
        report.stages.total = started.elapsed();
    }
    if produced.pushdown.is_some()
        && let Ok(source) = pushdown::pushdown_of(inner.source.as_ref())
    {
        source.finish(&inner.id).await;
    }

    // The run's totals on its span too, for a trace to show without its events.
    span.record("read", report.counts.read);
    span.record("applied", report.counts.applied.total());
    span.record("rejected", report.counts.rejected.total());
    span.record("unchanged", report.counts.unchanged);
    span.record("status", report.status.label());
    info!(
        run = report.run_id,
        read = report.counts.read,
        applied = report.counts.applied.total(),
        rejected = report.counts.rejected.total(),
        unchanged = report.counts.unchanged,
        status = ?report.status,
        "Sync run finished."
    );
    let _ = inner.progress.send(ProgressEvent::Finished { status: report.status.clone() });
    inner.observers.run(&report);
    Ok(report)
}

/// The outcomes of records refused for a key repeated in the source, for the observers.
fn observed_keys(inner: &SyncInner, repeated: &[RejectedEntry]) -> Vec<ObservedRecord> {
    if inner.observers.is_empty() {
        return Vec::new();
    }
    let refused = RecordOutcome::Refused { stage: RejectionStage::Key };
    repeated.iter().map(|e| ObservedRecord::new(e.key.clone(), None, refused).with_reason(e.reason.as_str())).collect()
}

/// Prepares the run, then reads and delivers until both sides are done.
async fn work(
    inner: &SyncInner,
    report: &mut SyncReport,
    lease: Option<&Lease>,
    stop: &CancellationToken,
    deadline: &Arc<LeaseDeadline>,
    waits: &Arc<WaitClock>,
) -> Result<(Produced, Consumed), Error> {
    let options = &inner.options;
    let (prior, differ, pushdown) = prepare(inner, report, lease).await?;
    info!(run = report.run_id, strategy = differ.strategy(), "Sync run started.");
    let _ = inner.progress.send(ProgressEvent::Started { run_id: report.run_id });

    let prior = Arc::new(prior);
    let run_schema = RunSchema::new(inner.schema.clone());
    let (tx, rx) = mpsc::channel::<Vec<Outgoing>>(options.max_concurrency.max(1) * 2);
    let expected = report.schema.clone().unwrap_or_else(|| SchemaSummary::of(&inner.schema));
    let producer = Producer::new(
        inner,
        lease.cloned(),
        prior.clone(),
        stop.clone(),
        report.cursor_before.clone(),
        expected,
        run_schema.clone(),
    )
    .with_pushdown(pushdown.clone());
    let read_span = info_span!("read", sync = %inner.id, run = report.run_id, records = tracing::field::Empty);
    let produce = producer.run(differ, tx).instrument(read_span);
    Ok(match lease {
        Some(lease) => {
            let deliverer = Deliverer {
                sync_id: inner.id.clone(),
                schema: run_schema,
                destination: inner.destination.clone(),
                state: inner.state.clone(),
                lease: lease.clone(),
                limiter: RateLimiter::new(inner.destination.capabilities().rate_limit),
                shared: SharedPace::new(inner),
                pause: PauseGate::default(),
                options: inner.options.clone(),
                algorithm: inner.options.fingerprint_algorithm,
                stop: stop.clone(),
                prior,
                progress: inner.progress.clone(),
                lease_deadline: deadline.clone(),
                waits: waits.clone(),
                quota: QuotaGate::new(inner.options.quota_reserve),
                keeps_memos: inner.destination.capabilities().keeps_memos,
                run: RunInfo::new(inner.id.clone(), report.run_id, options.full_resync, report.started_at_ms),
                begun: tokio::sync::Mutex::new(false),
                audience: std::sync::Mutex::new(None),
                observers: inner.observers.clone(),
                record_ids: inner.destination.capabilities().memos_are_record_ids,
                metrics: inner.metrics(),
                source: inner.source.clone(),
                pushdown: pushdown.clone(),
            };
            let (produced, mut consumed) = tokio::join!(produce, consume(&deliverer, rx, inner));
            consumed.quota = deliverer.quota.last();
            consumed.audience = deliverer.audience.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            if deliverer.has_begun().await {
                finish_run(inner, &deliverer.run, &produced, &mut consumed, stop).await;
            }
            (produced, consumed)
        }
        None if options.validate_dry_run => tokio::join!(produce, validate(inner, &run_schema, rx)),
        None => {
            drop(rx);
            (produce.await, Consumed::default())
        }
    })
}

/// A validating dry run's delivery side: each planned batch checked by the destination
/// without being applied; what it would refuse counted and sampled as rejections.
async fn validate(inner: &SyncInner, schema: &RunSchema, mut rx: mpsc::Receiver<Vec<Outgoing>>) -> Consumed {
    let mut out = Consumed::default();
    let keeps_memos = inner.destination.capabilities().keeps_memos;
    let mut checking = true;
    while let Some(outgoing) = rx.recv().await {
        if out.fatal.is_some() || !checking {
            continue; // drain: the producer finishes planning, nothing more is checked
        }
        let mut changes: Vec<_> = outgoing.into_iter().map(|o| o.change).collect();
        if keeps_memos {
            let keys: Vec<Key> = changes.iter().map(|c| c.key.clone()).collect();
            match inner.state.get(&inner.id, &keys).await {
                Ok(entries) => {
                    for (change, entry) in changes.iter_mut().zip(entries) {
                        change.memo = entry.and_then(|e| e.memo);
                    }
                }
                Err(error) => {
                    out.fatal = Some((state_failure(&error), format!("reading the batch's memos failed: {error}")));
                    continue;
                }
            }
        }
        let batch = ChangeBatch { sync_id: inner.id.clone(), schema: schema.get(), changes };
        match inner.destination.validate(&batch).await {
            Ok(Some(checked)) if checked.outcomes.len() == batch.changes.len() => {
                out.totals.writes += 1;
                for (change, outcome) in batch.changes.iter().zip(&checked.outcomes) {
                    let reason = match outcome {
                        ChangeOutcome::Applied => continue,
                        ChangeOutcome::Rejected { reason, .. } => reason.clone(),
                        ChangeOutcome::Superseded { reason } => format!("superseded: {reason}"),
                    };
                    out.totals.rejected.add(change.op, 1);
                    if out.totals.samples.len() < inner.options.rejection_sample {
                        out.totals.samples.push(RejectionSample {
                            key: change.key.redacted(),
                            stage: RejectionStage::Destination,
                            op: Some(change.op),
                            reason,
                        });
                    }
                }
            }
            Ok(Some(_)) => {
                let reason = format!(
                    "destination `{}` checked a batch and answered the wrong number of outcomes",
                    inner.destination.name()
                );
                out.fatal = Some((FailureKind::Destination, reason));
            }
            Ok(None) => {
                warn!(
                    destination = inner.destination.name(),
                    "The destination cannot check batches without applying them; the dry run goes on unchecked."
                );
                checking = false;
            }
            Err(error) => out.fatal = Some((FailureKind::Destination, format!("checking a batch failed: {error}"))),
        }
    }
    out
}

/// Lets the destination close what spans the run (a replace, a status to poll) and merges
/// its report; a failure is noted in the report and leaves the run's status as it is.
async fn finish_run(
    inner: &SyncInner,
    run: &RunInfo,
    produced: &Produced,
    consumed: &mut Consumed,
    stop: &CancellationToken,
) {
    let status = decide_status(produced, consumed, None, stop.is_cancelled());
    let delivered_all =
        matches!(status, RunStatus::Succeeded | RunStatus::CompletedWithRejections | RunStatus::DeletesWithheld { .. });
    let finished = tokio::time::timeout(
        inner.options.write_timeout,
        inner.destination.finish_run(run, &RunEnd::new(delivered_all)),
    )
    .await
    .unwrap_or_else(|_| {
        Err(crate::DestinationError::Transient {
            message: format!("no answer within the write timeout of {:?}", inner.options.write_timeout),
            source: None,
        })
    });
    match finished {
        Ok(DestinationRunReport { audience: Some(audience), .. }) => {
            consumed.audience.get_or_insert_with(AudienceReport::default).merge(audience);
        }
        Ok(_) => {}
        Err(error) => {
            warn!(%error, "The destination's end of run failed.");
            if let Some(audience) = &mut consumed.audience {
                audience.note(format!("finishing the run at the destination failed: {error}"));
            }
        }
    }
}

/// Reads what the run starts from: metadata, the rejected set and the snapshot's differ.
async fn prepare(
    inner: &SyncInner,
    report: &mut SyncReport,
    lease: Option<&Lease>,
) -> Result<(PriorRejections, Box<dyn Differ>, Option<Arc<PushdownPlan>>), Error> {
    let options = &inner.options;
    let meta = inner.state.meta(&inner.id).await?;
    // Nothing acknowledged yet: this run is the sync's initial load.
    let initial = meta.fingerprint_algorithm.is_none();
    if let Some(stored) = meta.fingerprint_algorithm
        && stored != options.fingerprint_algorithm
        && !options.full_resync
    {
        return Err(Error::FingerprintMismatch {
            sync_id: inner.id.to_string(),
            stored: stored.to_string(),
            configured: options.fingerprint_algorithm.to_string(),
        });
    }
    report.cursor_before = meta.cursor.clone();
    report.cursor_after = meta.cursor.clone();
    let earlier = inner.state.runs(&inner.id, 8).await?;
    // The columns the sync last delivered under, carried by every run's report.
    let recorded = earlier.iter().find_map(|r| r.schema.clone());
    report.schema = Some(recorded.unwrap_or_else(|| SchemaSummary::of(&inner.schema)));
    // An initial load or full resync goes on, run after run, until one completes.
    let unfinished = earlier.first().filter(|r| !r.status.is_complete()).and_then(|r| r.backfill_started_at_ms);
    report.backfill_started_at_ms =
        unfinished.or_else(|| (options.full_resync || initial).then_some(report.started_at_ms));
    if let Some(lease) = lease {
        inner.state.record_run(lease, report).await?;
        if let Some(restriction) = &inner.restrict {
            super::reconcile::mark(inner, lease, restriction).await?;
        }
    }

    // Only what the run decides with is kept; the refused records stay in the store.
    let mut prior = PriorRejections::default();
    let mut after: Option<Key> = None;
    loop {
        let page = inner.state.rejected(&inner.id, after.as_ref(), PAGE).await?;
        let full = page.len() == PAGE;
        after = page.last().map(|e| e.key.clone());
        for entry in &page {
            // A repair settles only its own keys' rejections.
            if inner.restrict.as_ref().is_none_or(|r| r.contains(&entry.key)) {
                prior.insert(entry);
            }
        }
        if !full {
            break;
        }
    }

    let algorithm = options.fingerprint_algorithm;
    // A canary run diffs only the keys inside it: the others are neither planned nor deleted.
    // A partition's run likewise diffs only its own keys, so its deletes are its own.
    let canary = inner.key_filter();
    let incremental = inner.cursor_index.is_some() && inner.mode != Mode::Mirror && !options.full_resync;
    // A repair reads as an ordinary run: it sends only its keys, and leaves the delivered
    // table as it is (a repaired key keeps its row, whose hash is re-read if stale).
    let pushdown = match &inner.pushdown_epoch {
        Some(epoch) if inner.restrict.is_none() => Some(Arc::new(pushdown::plan(inner, epoch, &meta, lease).await)),
        _ => None,
    };
    if let Some(plan) = &pushdown {
        report.pushdown = Some(crate::report::PushdownReport { full_rediff: plan.full.clone(), ..Default::default() });
        if plan.changed_only() {
            report.diff_strategy = "pushdown".into();
            let diff = LookupDiff::new(inner.state.clone(), &inner.id, algorithm, PAGE)
                .with_canary(canary)
                .with_max_deletes(options.max_deletes);
            return Ok((prior, Box::new(diff), pushdown));
        }
    }
    let differ: Box<dyn Differ> = if inner.use_merge {
        report.diff_strategy = "merge".into();
        // The merge diff streams the snapshot: the last complete run's read is the estimate.
        if let Some(last) = earlier.iter().find(|r| r.status.is_complete())
            && !incremental
        {
            inner.metrics().expected(last.counts.read);
        }
        let diff = MergeDiff::new(inner.state.clone(), &inner.id, algorithm, PAGE).with_canary(canary);
        Box::new(diff.with_unchanged(options.full_resync))
    } else {
        report.diff_strategy = "hash".into();
        let load = HashDiff::load_within(inner.state.as_ref(), &inner.id, algorithm, PAGE, canary);
        let diff = load.await.map_err(|e| match e {
            crate::diff::DiffError::State(s) => Error::State(s),
            other => Error::State(crate::StateError::Other { message: other.to_string(), source: None }),
        })?;
        if !incremental {
            inner.metrics().expected(diff.live());
        }
        Box::new(diff.with_unchanged(options.full_resync))
    };
    Ok((prior, differ, pushdown))
}
