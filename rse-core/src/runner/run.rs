//! One run: lease, read, transform, diff, plan, deliver, commit, report.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::deliver::{BatchFailure, BatchResult, Deliverer, Outgoing, RunSchema};
use super::lease::{LeaseDeadline, keep_lease};
use super::pace::WaitClock;
use super::pace::{PauseGate, RateLimiter};
use super::prior::PriorRejections;
use super::{MaxDeletes, Mode, SyncInner};
use crate::change::{Change, IdempotencyKey, Op};
use crate::diff::{DiffOutput, Differ, HashDiff, MergeDiff, PlanKind, Planned};
use crate::drift::{SchemaDrift, SchemaDriftPolicy, SchemaSummary, reordered_to};
use crate::error::StateError;
use crate::error::{Error, unix_secs};
use crate::key::Key;
use crate::record::{Record, RecordBatch};
use crate::report::{Counts, FailureKind, ProgressEvent, RejectionSample, RunStatus, StageDurations, SyncReport};
use crate::schema::Schema;
use crate::source::ReadRequest;
use crate::state::{Lease, RejectedEntry, RejectionStage, SnapshotEntry, StateCommit};
use crate::value::Value;

/// Rejected entries are read in pages of this many.
const PAGE: usize = 10_000;

pub(super) async fn run(inner: &SyncInner, cancel: CancellationToken) -> Result<SyncReport, Error> {
    let span = info_span!("sync_run", sync = %inner.id, mode = %inner.mode, run = tracing::field::Empty);
    run_in_span(inner, cancel, span.clone()).instrument(span).await
}

async fn run_in_span(inner: &SyncInner, cancel: CancellationToken, span: tracing::Span) -> Result<SyncReport, Error> {
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

    let prepared = prepare(inner, &mut report, lease.as_ref()).await;
    let (prior, differ) = match prepared {
        Ok(p) => p,
        Err(e) => {
            if let Some(lease) = &lease {
                let _ = inner.state.release_lease(lease).await;
            }
            return Err(e);
        }
    };
    info!(run = report.run_id, strategy = differ.strategy(), "Sync run started.");
    let _ = inner.progress.send(ProgressEvent::Started { run_id: report.run_id });

    let stop = cancel.child_token();
    let prior = Arc::new(prior);
    let run_schema = RunSchema::new(inner.schema.clone());
    let (tx, rx) = mpsc::channel::<Vec<Outgoing>>(options.max_concurrency.max(1) * 2);
    let mut producer = Producer::new(inner, lease.clone(), prior.clone(), stop.clone(), report.cursor_before.clone());
    producer.expected = report.schema.clone().unwrap_or_else(|| SchemaSummary::of(&inner.schema));
    producer.run_schema = run_schema.clone();
    let produce = producer.run(differ, tx);

    let (consumed, produced, lease_lost) = match &lease {
        Some(lease) => {
            let done = CancellationToken::new();
            let deliverer = Deliverer {
                lease_deadline: deadline.clone(),
                waits: waits.clone(),
                ..deliverer(inner, lease.clone(), stop.clone(), prior.clone(), run_schema.clone())
            };
            let consume = consume(&deliverer, rx, inner);
            let keep = keep_lease(
                inner.state.clone(),
                lease.clone(),
                options.lease_ttl,
                deadline.clone(),
                stop.clone(),
                done.clone(),
            );
            let ((produced, consumed), lease_lost) = tokio::join!(
                async {
                    let out = tokio::join!(produce, consume);
                    done.cancel();
                    out
                },
                keep
            );
            (consumed, produced, lease_lost)
        }
        None => {
            drop(rx);
            (Consumed::default(), produce.await, None)
        }
    };

    let mut status = decide_status(&produced, &consumed, lease_lost, cancel.is_cancelled());
    fill_report(&mut report, &produced, &consumed, options.rejection_sample);
    report.rate_limit_wait = waits.total();
    if let Some(delivered) = &produced.delivered {
        report.schema = Some(delivered.clone());
    }
    report.schema_drift = produced.drift.clone();

    if let Some(lease) = &lease {
        if status.is_complete() {
            let mut commit = StateCommit::default();
            if let Some(cursor) = produced.max_cursor.clone()
                && inner.cursor_index.is_some()
                && produced.incremental
            {
                report.cursor_after = Some(cursor.clone());
                commit.cursor = Some(cursor);
            }
            commit.cleared_rejections = produced.cleared.clone();
            let mut repeated = produced.key_rejections.clone();
            repeated.sort_by(|a, b| a.key.cmp(&b.key));
            repeated.dedup_by(|a, b| a.key == b.key);
            commit.rejected = repeated;
            report.counts.recovered += commit.cleared_rejections.len() as u64;
            if !commit.is_empty()
                && let Err(error) = inner.state.commit(lease, commit).await
            {
                warn!(%error, "Final state commit failed.");
                status = RunStatus::Failed {
                    reason: format!("final state commit failed: {error}"),
                    kind: state_failure(&error),
                };
                report.cursor_after = report.cursor_before.clone();
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
    Ok(report)
}

/// Reads what the run starts from: metadata, the rejected set and the snapshot's differ.
async fn prepare(
    inner: &SyncInner,
    report: &mut SyncReport,
    lease: Option<&Lease>,
) -> Result<(PriorRejections, Box<dyn Differ>), Error> {
    let options = &inner.options;
    let meta = inner.state.meta(&inner.id).await?;
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
    report.cursor_after = meta.cursor;
    // The columns the sync last delivered under, carried by every run's report.
    let recorded = inner.state.runs(&inner.id, 8).await?.into_iter().find_map(|r| r.schema);
    report.schema = Some(recorded.unwrap_or_else(|| SchemaSummary::of(&inner.schema)));
    if let Some(lease) = lease {
        inner.state.record_run(lease, report).await?;
    }

    // Only what the run decides with is kept; the refused records stay in the store.
    let mut prior = PriorRejections::default();
    let mut after: Option<Key> = None;
    loop {
        let page = inner.state.rejected(&inner.id, after.as_ref(), PAGE).await?;
        let full = page.len() == PAGE;
        after = page.last().map(|e| e.key.clone());
        for entry in &page {
            prior.insert(entry);
        }
        if !full {
            break;
        }
    }

    let algorithm = options.fingerprint_algorithm;
    let differ: Box<dyn Differ> = if inner.use_merge {
        report.diff_strategy = "merge".into();
        Box::new(MergeDiff::new(inner.state.clone(), &inner.id, algorithm, PAGE).with_unchanged(options.full_resync))
    } else {
        report.diff_strategy = "hash".into();
        let diff = HashDiff::load(inner.state.as_ref(), &inner.id, algorithm, PAGE).await.map_err(|e| match e {
            crate::diff::DiffError::State(s) => Error::State(s),
            other => Error::State(crate::StateError::Other { message: other.to_string(), source: None }),
        })?;
        Box::new(diff.with_unchanged(options.full_resync))
    };
    Ok((prior, differ))
}

fn deliverer(
    inner: &SyncInner,
    lease: Lease,
    stop: CancellationToken,
    prior: Arc<PriorRejections>,
    schema: RunSchema,
) -> Deliverer {
    Deliverer {
        sync_id: inner.id.clone(),
        schema,
        destination: inner.destination.clone(),
        state: inner.state.clone(),
        lease,
        limiter: RateLimiter::new(inner.destination.capabilities().rate_limit),
        pause: PauseGate::default(),
        options: inner.options.clone(),
        algorithm: inner.options.fingerprint_algorithm,
        stop,
        prior,
        progress: inner.progress.clone(),
        lease_deadline: Arc::new(LeaseDeadline::new(Instant::now(), inner.options.lease_ttl)),
        waits: Arc::default(),
    }
}

/// What the delivery side did.
#[derive(Default)]
struct Consumed {
    totals: BatchResult,
    circuit_open: Option<String>,
    fatal: Option<(FailureKind, String)>,
    /// The longest wait a destination asked for beyond the sync's limit.
    rate_limited: Option<Duration>,
}

/// Delivers batches with bounded concurrency; opens the circuit after repeated failure.
async fn consume(deliverer: &Deliverer, mut rx: mpsc::Receiver<Vec<Outgoing>>, inner: &SyncInner) -> Consumed {
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
                Some(changes) if deliverer.stop.is_cancelled() => out.totals.undelivered += changes.len() as u64,
                Some(changes) => {
                    batch_no += 1;
                    let span = tracing::debug_span!("batch", batch = batch_no, rows = changes.len());
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
    totals.undelivered += b.undelivered;
    totals.superseded += b.superseded;
    totals.recovered += b.recovered;
    totals.retries += b.retries;
    totals.rate_limit_waits += b.rate_limit_waits;
    totals.writes += b.writes;
    totals.bytes += b.bytes;
    totals.deliver_time += b.deliver_time;
    totals.commit_time += b.commit_time;
    totals.samples.extend(b.samples);
}

/// What the reading side did.
#[derive(Default)]
struct Produced {
    counts: Counts,
    stages: StageDurations,
    samples: Vec<RejectionSample>,
    read_error: Option<(FailureKind, String)>,
    /// The read reached the end of the source (no error, not stopped).
    complete: bool,
    incremental: bool,
    max_cursor: Option<Value>,
    withheld_reason: Option<String>,
    /// Records that survived transforms and key checks (what the empty-source guard counts).
    present: u64,
    /// Rows whose key is unknown: unreadable without a key, refused by a transform before
    /// their key could be read, or null-keyed. `Mirror` deletes nothing while there are any.
    unknown_keys: u64,
    cleared: Vec<Key>,
    state_error: Option<(FailureKind, String)>,
    /// The columns this run's changes were fingerprinted and sent under, once decided.
    delivered: Option<SchemaSummary>,
    /// How the read's columns differ from those last delivered.
    drift: Option<SchemaDrift>,
    /// Records refused for a key repeated in the source (one entry per key).
    key_rejections: Vec<RejectedEntry>,
}

struct Producer<'a> {
    inner: &'a SyncInner,
    /// The run's lease, under which refused records are committed (`None` in a dry run).
    lease: Option<Lease>,
    prior: Arc<PriorRejections>,
    stop: CancellationToken,
    cursor: Option<Value>,
    /// Keys of earlier rejections that this run planned, refused, or keeps as they were.
    touched: HashSet<Key>,
    /// Keys of earlier rejections that this run's read returned (the source's current
    /// record of the key is what this run decided on, not the refused one kept in the state).
    read_back: HashSet<Key>,
    /// The columns the sync last delivered under.
    expected: SchemaSummary,
    /// The schema of this run's changes, shared with the delivering side.
    run_schema: RunSchema,
    /// The source schema of the read's first batch.
    read_schema: Option<Arc<Schema>>,
    /// For a drift that only reordered the columns: the delivered order, and where each of
    /// its columns is in the read.
    reorder: Option<(Arc<Schema>, Vec<usize>)>,
    out: Produced,
    batch: Vec<Outgoing>,
    batch_bytes: usize,
    batch_deadline: Option<Instant>,
    max_rows: usize,
    max_bytes: usize,
}

impl<'a> Producer<'a> {
    fn new(
        inner: &'a SyncInner,
        lease: Option<Lease>,
        prior: Arc<PriorRejections>,
        stop: CancellationToken,
        cursor: Option<Value>,
    ) -> Self {
        let caps = inner.destination.capabilities();
        Self {
            inner,
            lease,
            prior,
            stop,
            cursor,
            touched: HashSet::new(),
            read_back: HashSet::new(),
            expected: SchemaSummary::of(&inner.schema),
            run_schema: RunSchema::new(inner.schema.clone()),
            read_schema: None,
            reorder: None,
            out: Produced::default(),
            batch: Vec::new(),
            batch_bytes: 0,
            batch_deadline: None,
            max_rows: inner.options.batch_rows.min(caps.max_batch_rows).max(1),
            max_bytes: inner.options.batch_bytes.min(caps.max_batch_bytes).max(1),
        }
    }

    async fn run(mut self, mut differ: Box<dyn Differ>, tx: mpsc::Sender<Vec<Outgoing>>) -> Produced {
        let inner = self.inner;
        let options = &inner.options;
        self.out.incremental = inner.cursor_index.is_some() && inner.mode != Mode::Mirror && !options.full_resync;
        let request = ReadRequest::full()
            .with_cursor(if self.out.incremental { self.cursor.clone() } else { None })
            .with_order_by_key(inner.use_merge)
            .with_batch_size(options.read_batch_size);
        let t = Instant::now();
        let stream = inner.source.read(request).await;
        self.out.stages.read += t.elapsed();
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                self.fail(FailureKind::Source, format!("source `{}`: {e}", inner.source.name()));
                return self.out;
            }
        };
        let mut diff = DiffOutput::default();
        let mut unreadable = Vec::new();
        loop {
            let t = Instant::now();
            let next = tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                () = sleep_until_opt(self.batch_deadline) => {
                    self.flush(&tx).await;
                    continue;
                }
                next = stream.next() => next,
            };
            self.out.stages.read += t.elapsed();
            let batch = match next {
                None => {
                    self.out.complete = true;
                    break;
                }
                Some(Err(e)) => {
                    warn!(source = inner.source.name(), "Source failed mid-read; no deletes this run.");
                    self.fail(FailureKind::Source, format!("source `{}`: {e}", inner.source.name()));
                    break;
                }
                Some(Ok(mut batch)) => {
                    for rejection in std::mem::take(&mut batch.rejected) {
                        self.out.counts.source_rejected += 1;
                        let reason = format!("{}: {}", rejection.location, rejection.reason);
                        self.sample(rejection.key.as_ref(), RejectionStage::Source, None, &reason);
                        match rejection.key {
                            // The row is there, unreadable: its key must not be deleted.
                            Some(key) => unreadable.push(key),
                            None => self.out.unknown_keys += 1,
                        }
                    }
                    batch
                }
            };
            if !self.check_schema(&batch.schema) {
                break;
            }
            self.out.counts.read += batch.len() as u64;
            let _ = inner.progress.send(ProgressEvent::Read { records: self.out.counts.read });
            self.track_cursor(&batch);
            let Some((batch, mut seen)) = self.transform(batch).await else { break };
            let batch = self.reorder(batch);
            seen.append(&mut unreadable);
            self.note_read_back(&batch, &seen);
            self.out.present += batch.records.len() as u64;
            let t = Instant::now();
            if let Err(e) = differ.push(&batch.schema, batch.records, seen, &mut diff).await {
                self.fail(FailureKind::Source, e.to_string());
                break;
            }
            self.out.stages.diff += t.elapsed();
            self.take_diff(&mut diff, &tx).await;
        }

        if self.out.complete && !self.stop.is_cancelled() {
            if self.out.incremental {
                self.retry_unseen_rejections(differ.as_mut(), &mut diff, &tx).await;
            }
            let t = Instant::now();
            match differ.finish(&mut diff).await {
                Ok(()) => {
                    self.out.stages.diff += t.elapsed();
                    self.take_diff(&mut diff, &tx).await;
                    self.plan_deletes(std::mem::take(&mut diff.deletes), diff.live_total, &tx).await;
                    self.clear_stale_rejections();
                }
                Err(e) => {
                    self.fail(FailureKind::Source, e.to_string());
                    self.out.complete = false;
                }
            }
        }
        if self.stop.is_cancelled() {
            self.out.counts.undelivered += self.batch.len() as u64;
            self.batch.clear();
        } else {
            self.flush(&tx).await;
        }
        self.out
    }

    fn track_cursor(&mut self, batch: &RecordBatch) {
        let Some(i) = self.inner.cursor_index else { return };
        for record in &batch.records {
            if let Some(v) = record.get(i).filter(|v| !v.is_null())
                && self.out.max_cursor.as_ref().is_none_or(|m| v.total_cmp(m).is_gt())
            {
                self.out.max_cursor = Some(v.clone());
            }
        }
    }

    /// Runs the transform chain; returns the batch for the diff and the keys of records
    /// refused on the way (they count as present). `None` when a transform failed.
    async fn transform(&mut self, mut batch: RecordBatch) -> Option<(RecordBatch, Vec<Key>)> {
        let t = Instant::now();
        let mut seen = Vec::new();
        let mut rejections = Vec::new();
        let now = unix_secs(std::time::SystemTime::now());
        for transform in &self.inner.transforms {
            let input_schema = batch.schema.clone();
            let output = match transform.apply(batch).await {
                Ok(o) => o,
                Err(e) => {
                    self.fail(FailureKind::Transform, e.to_string());
                    return None;
                }
            };
            self.out.counts.filtered += output.filtered as u64;
            for rejection in output.rejected {
                self.out.counts.transform_rejected += 1;
                let key = rejection.record.key(&input_schema).ok();
                self.sample(key.as_ref(), RejectionStage::Transform, None, &rejection.reason);
                let Some(key) = key else {
                    self.out.unknown_keys += 1;
                    continue;
                };
                seen.push(key.clone());
                let (attempts, first_rejected_at) =
                    self.prior.carried(&key, now, |p| p.stage == RejectionStage::Transform);
                rejections.push(RejectedEntry {
                    key,
                    stage: RejectionStage::Transform,
                    op: None,
                    fingerprint: None,
                    version: 0,
                    reason: rejection.reason,
                    attempts,
                    record: None,
                    first_rejected_at,
                    last_rejected_at: now,
                });
            }
            batch = output.batch;
        }
        self.out.stages.transform += t.elapsed();
        for key in &seen {
            self.touch(key);
        }
        if !rejections.is_empty() {
            self.commit(StateCommit { rejected: rejections, ..StateCommit::default() }).await;
        }
        Some((batch, seen))
    }

    fn fail(&mut self, kind: FailureKind, reason: String) {
        self.out.read_error.get_or_insert((kind, reason));
    }

    /// Compares a batch's source schema with the columns the sync last delivered (on the
    /// read's first batch) or with the first batch's (later); says whether to go on. Runs
    /// before anything of the batch is transformed, committed or sent.
    fn check_schema(&mut self, source_schema: &Arc<Schema>) -> bool {
        let inner = self.inner;
        if let Some(first) = &self.read_schema {
            if Arc::ptr_eq(first, source_schema) || first == source_schema {
                return true;
            }
            let drift = SchemaDrift::between(&SchemaSummary::of(first), &SchemaSummary::of(source_schema));
            self.fail(
                FailureKind::SchemaDrift,
                format!(
                    "the source's columns changed during the read ({}); what was read after the change was not \
                     sent: run again",
                    drift.map(|d| d.to_string()).unwrap_or_default()
                ),
            );
            return false;
        }
        self.read_schema = Some(source_schema.clone());
        let mut output = source_schema.clone();
        for t in &inner.transforms {
            output = match t.output_schema(&output) {
                Ok(schema) => schema,
                Err(e) => {
                    self.fail(FailureKind::Transform, e.to_string());
                    return false;
                }
            };
        }
        let now = SchemaSummary::of(&output);
        let Some(drift) = SchemaDrift::between(&self.expected, &now) else {
            self.run_schema.set(output);
            self.out.delivered = Some(now);
            return true;
        };
        warn!(drift = %drift, "The model's columns differ from those last delivered.");
        self.out.drift = Some(drift.clone());
        let options = &inner.options;
        if drift.key_changed.is_some() && !options.full_resync {
            self.fail(
                FailureKind::SchemaDrift,
                format!(
                    "schema drift: {drift}; the state's keys no longer name the destination's records, so nothing \
                     was sent: restore the key, or deliver under a new sync id (or once with full_resync)"
                ),
            );
            return false;
        }
        if options.schema_drift == SchemaDriftPolicy::Fail && !options.full_resync {
            self.fail(
                FailureKind::SchemaDrift,
                format!(
                    "schema drift since the columns last delivered: {drift}; nothing was sent. Restore the model's \
                     columns, or set the sync's schema drift policy to Proceed to deliver under the new ones"
                ),
            );
            return false;
        }
        if drift.is_reorder_only()
            && let Some((schema, from)) = reordered_to(&self.expected, &output)
        {
            // Values are matched by name: in the delivered order nothing changed.
            let schema = Arc::new(schema);
            self.run_schema.set(schema.clone());
            self.reorder = Some((schema, from));
            self.out.delivered = Some(self.expected.clone());
            return true;
        }
        self.run_schema.set(output);
        self.out.delivered = Some(now);
        true
    }

    /// Puts a transformed batch's values in the delivered column order, when the read only
    /// reordered the columns.
    fn reorder(&self, batch: RecordBatch) -> RecordBatch {
        let Some((schema, from)) = &self.reorder else { return batch };
        let records = batch
            .records
            .into_iter()
            .map(|mut r| {
                let mut take =
                    |i: usize| r.values.get_mut(i).map_or(Value::Null, |v| std::mem::replace(v, Value::Null));
                Record::new(from.iter().map(|&i| take(i)).collect())
            })
            .collect();
        RecordBatch::new(schema.clone(), records)
    }

    fn touch(&mut self, key: &Key) {
        if self.prior.contains(key) {
            self.touched.insert(key.clone());
        }
    }

    /// Notes which earlier rejections the read returned: for those the source's current
    /// record decides, and the refused record kept in the state is stale.
    fn note_read_back(&mut self, batch: &RecordBatch, refused: &[Key]) {
        if self.prior.is_empty() {
            return;
        }
        for key in refused.iter().filter(|k| self.prior.contains(k)) {
            self.read_back.insert(key.clone());
        }
        for record in &batch.records {
            if let Ok(key) = record.key(&batch.schema)
                && self.prior.contains(&key)
            {
                self.read_back.insert(key);
            }
        }
    }

    fn sample(&mut self, key: Option<&Key>, stage: RejectionStage, op: Option<Op>, reason: &str) {
        if self.out.samples.len() < self.inner.options.rejection_sample {
            let key = key.map_or(crate::KeyHash(0), Key::redacted);
            self.out.samples.push(RejectionSample { key, stage, op, reason: reason.to_owned() });
        }
    }

    /// Commits rejections found while reading (not a delivery outcome, so not batched).
    async fn commit(&mut self, commit: StateCommit) {
        if self.inner.options.dry_run {
            return;
        }
        let Some(lease) = &self.lease else { return };
        let t = Instant::now();
        if let Err(error) = self.inner.state.commit(lease, commit).await {
            warn!(%error, "Committing refused records failed.");
            self.out.state_error.get_or_insert_with(|| (state_failure(&error), error.to_string()));
            self.stop.cancel();
        }
        self.out.stages.commit += t.elapsed();
    }

    async fn take_diff(&mut self, diff: &mut DiffOutput, tx: &mpsc::Sender<Vec<Outgoing>>) {
        self.out.counts.unchanged += std::mem::take(&mut diff.unchanged);
        for invalid in std::mem::take(&mut diff.invalid) {
            self.out.counts.invalid += 1;
            match &invalid.key {
                Some(key) => {
                    self.touch(key);
                    // Kept with the sync's rejections (committed at the end of the run, after
                    // the first occurrence's own outcome), so a host sees it among them.
                    let now = unix_secs(std::time::SystemTime::now());
                    let (attempts, first_rejected_at) =
                        self.prior.carried(key, now, |p| p.stage == RejectionStage::Key);
                    self.out.key_rejections.push(RejectedEntry {
                        key: key.clone(),
                        stage: RejectionStage::Key,
                        op: None,
                        fingerprint: None,
                        version: 0,
                        reason: invalid.reason.clone(),
                        attempts,
                        record: None,
                        first_rejected_at,
                        last_rejected_at: now,
                    });
                }
                None => {
                    self.out.present = self.out.present.saturating_sub(1);
                    self.out.unknown_keys += 1;
                }
            }
            self.sample(invalid.key.as_ref(), RejectionStage::Key, None, &invalid.reason);
        }
        for planned in std::mem::take(&mut diff.planned) {
            self.touch(&planned.key);
            if let Some(change) = self.plan(planned) {
                self.push(change, tx).await;
            }
        }
    }

    /// Shapes a diff result by the sync's mode into a change, or skips it.
    fn plan(&mut self, p: Planned) -> Option<Outgoing> {
        let inner = self.inner;
        let mode_op = match (inner.mode, p.kind) {
            (Mode::Upsert | Mode::Mirror, PlanKind::Insert) => Op::Insert,
            (Mode::Upsert | Mode::Mirror | Mode::Update, _) => Op::Update,
            (Mode::Insert, PlanKind::Insert) => Op::Insert,
            (Mode::Insert, PlanKind::Unchanged) => Op::Insert,
            (Mode::Insert, PlanKind::Update) => {
                self.out.counts.skipped += 1;
                return None;
            }
            (Mode::Append, _) => Op::Append,
        };
        let (op, version) = match p.pending {
            // The record is what was sent before: the very same change again, so a
            // destination that honours idempotency keys drops it if it did land.
            Some(pc) if pc.fingerprint == p.fingerprint && inner.mode.ops().contains(&pc.op) && pc.op != Op::Delete => {
                (pc.op, pc.version)
            }
            // Something else was sent and may have landed: a new change on a new version.
            Some(pc) => (mode_op, pc.version + 1),
            None => (mode_op, p.base_version),
        };
        self.out.counts.planned.add(op, 1);
        let change = change(&inner.id, op, p.key, Some(p.record), p.fingerprint, version);
        Some(Outgoing { change, prior: p.pending })
    }

    async fn push(&mut self, outgoing: Outgoing, tx: &mpsc::Sender<Vec<Outgoing>>) {
        if self.inner.options.dry_run {
            return;
        }
        let size = outgoing.change.estimated_size();
        if !self.batch.is_empty() && self.batch_bytes + size > self.max_bytes {
            self.flush(tx).await;
        }
        if self.batch.is_empty() {
            self.batch_deadline = Some(Instant::now() + self.inner.options.linger);
        }
        self.batch_bytes += size;
        self.batch.push(outgoing);
        if self.batch.len() >= self.max_rows {
            self.flush(tx).await;
        }
    }

    async fn flush(&mut self, tx: &mpsc::Sender<Vec<Outgoing>>) {
        self.batch_deadline = None;
        self.batch_bytes = 0;
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        let n = batch.len() as u64;
        if tx.send(batch).await.is_err() {
            self.out.counts.undelivered += n;
        }
    }

    /// Incremental reads do not return rows before the cursor: retry earlier destination
    /// rejections that this read did not return, from the records kept with them, paged
    /// from the state store. A kept record that no longer fits the schema stays refused
    /// (never dropped, never sent under the wrong names) until the source returns its row.
    async fn retry_unseen_rejections(
        &mut self,
        differ: &mut dyn Differ,
        diff: &mut DiffOutput,
        tx: &mpsc::Sender<Vec<Outgoing>>,
    ) {
        let inner = self.inner;
        let schema = self.run_schema.get();
        let drifted = self.out.drift.is_some();
        let mut after: Option<Key> = None;
        let mut retried = 0usize;
        loop {
            let page = match inner.state.rejected(&inner.id, after.as_ref(), PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    self.fail(FailureKind::StateCommit, format!("reading earlier rejections: {e}"));
                    return;
                }
            };
            let full = page.len() == PAGE;
            after = page.last().map(|e| e.key.clone());
            let mut records = Vec::new();
            let mut unfit = Vec::new();
            for entry in page {
                let earlier = self.prior.get(&entry.key).is_some_and(|p| p.stage == RejectionStage::Destination);
                if !earlier
                    || entry.stage != RejectionStage::Destination
                    || self.read_back.contains(&entry.key)
                    || self.touched.contains(&entry.key)
                {
                    continue;
                }
                match entry.record {
                    Some(_) if drifted => {
                        // Kept under the columns delivered before: it would be read under the
                        // wrong names. It stays refused, without the record, until the
                        // source returns the row.
                        self.touched.insert(entry.key.clone());
                        unfit.push(RejectedEntry { record: None, ..entry });
                    }
                    Some(record) if record.values.len() == schema.len() => records.push(record),
                    _ => {
                        self.touched.insert(entry.key);
                    }
                }
            }
            if !unfit.is_empty() {
                self.commit(StateCommit { rejected: unfit, ..StateCommit::default() }).await;
            }
            if !records.is_empty() {
                retried += records.len();
                if let Err(e) = differ.push(&schema, records, Vec::new(), diff).await {
                    self.fail(FailureKind::Source, e.to_string());
                    return;
                }
                self.take_diff(diff, tx).await;
            }
            if !full || self.stop.is_cancelled() {
                break;
            }
        }
        if retried > 0 {
            debug!(records = retried, "Retried earlier rejections the incremental read did not return.");
        }
    }

    async fn plan_deletes(&mut self, deletes: Vec<SnapshotEntry>, live_total: u64, tx: &mpsc::Sender<Vec<Outgoing>>) {
        let inner = self.inner;
        let options = &inner.options;
        if inner.mode != Mode::Mirror || options.full_resync || deletes.is_empty() || self.out.read_error.is_some() {
            return;
        }
        let n = deletes.len() as u64;
        let unknown = self.out.unknown_keys;
        let withheld = if unknown > 0 {
            Some(format!(
                "{unknown} source rows could not be read or keyed, so their keys are unknown; none of the {n} deletes \
                 is sent this run (fix those rows, or have the source report their keys)"
            ))
        } else if self.out.present == 0 && !options.allow_empty_source {
            Some(format!(
                "no source record survived transforms and key checks ({} read); refusing to delete all {n} keys this \
                 sync delivered (set allow_empty_source to allow)",
                self.out.counts.read
            ))
        } else {
            match options.max_deletes {
                Some(MaxDeletes::Count(max)) if n > max => Some(format!("{n} deletes exceed max_deletes of {max}")),
                Some(MaxDeletes::Fraction(f)) if n as f64 > f * live_total as f64 => Some(format!(
                    "{n} deletes are {:.1}% of the {live_total} keys delivered, above max_deletes of {:.1}%",
                    100.0 * n as f64 / live_total.max(1) as f64,
                    100.0 * f
                )),
                _ => None,
            }
        };
        if let Some(reason) = withheld {
            warn!(deletes = n, "Deletes withheld by the delete guard.");
            self.out.counts.withheld += n;
            self.out.withheld_reason = Some(reason);
            return;
        }
        for entry in deletes {
            self.touch(&entry.key);
            // A pending delete goes again as it was; otherwise the key may hold what was
            // acknowledged or what is pending, and a delete of a missing key is applied anyway.
            let (fingerprint, version) = match entry.pending {
                Some(pc) if pc.op == Op::Delete => (pc.fingerprint, pc.version),
                Some(pc) => (entry.fingerprint.unwrap_or(pc.fingerprint), entry.next_version()),
                None => (entry.fingerprint.unwrap_or(crate::Fingerprint(0)), entry.version),
            };
            self.out.counts.planned.add(Op::Delete, 1);
            let change = change(&inner.id, Op::Delete, entry.key, None, fingerprint, version);
            self.push(Outgoing { change, prior: entry.pending }, tx).await;
        }
    }

    /// After a complete read, earlier rejections whose key this run did not plan, refuse
    /// or keep are stale: the record is gone or back to what the destination holds.
    fn clear_stale_rejections(&mut self) {
        let incremental = self.out.incremental;
        let mut cleared: Vec<Key> = self
            .prior
            .iter()
            .map(|(key, _)| key)
            .filter(|key| !self.touched.contains(*key))
            // An incremental read does not see every row: only a row it returned (back to
            // what the destination holds) settles an earlier rejection.
            .filter(|key| !incremental || self.read_back.contains(*key))
            .cloned()
            .collect();
        cleared.sort();
        self.out.cleared = cleared;
    }
}

fn change(
    sync_id: &str,
    op: Op,
    key: Key,
    record: Option<Record>,
    fingerprint: crate::Fingerprint,
    version: u64,
) -> Change {
    let idempotency_key = IdempotencyKey::derive(sync_id, &key, op, fingerprint, version);
    Change { op, key, record, fingerprint, version, idempotency_key }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn decide_status(p: &Produced, c: &Consumed, lease_lost: Option<String>, cancelled: bool) -> RunStatus {
    if let Some(reason) = lease_lost {
        return RunStatus::Failed { reason: format!("lease lost: {reason}"), kind: FailureKind::LeaseLost };
    }
    if let Some((kind, reason)) = &c.fatal {
        return RunStatus::Failed { reason: reason.clone(), kind: *kind };
    }
    if let Some((kind, reason)) = &p.state_error {
        return RunStatus::Failed { reason: format!("state commit failed: {reason}"), kind: *kind };
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
fn state_failure(error: &StateError) -> FailureKind {
    match error {
        StateError::Fenced { .. } | StateError::LeaseHeld { .. } => FailureKind::LeaseLost,
        _ => FailureKind::StateCommit,
    }
}

fn fill_report(report: &mut SyncReport, p: &Produced, c: &Consumed, sample_limit: usize) {
    report.counts = Counts {
        applied: c.totals.applied,
        rejected: c.totals.rejected,
        undelivered: p.counts.undelivered + c.totals.undelivered,
        recovered: c.totals.recovered,
        superseded: c.totals.superseded,
        ..p.counts.clone()
    };
    report.retries = c.totals.retries;
    report.rate_limit_waits = c.totals.rate_limit_waits;
    report.batches = c.totals.writes;
    report.bytes = c.totals.bytes;
    report.stages =
        StageDurations { deliver: c.totals.deliver_time, commit: p.stages.commit + c.totals.commit_time, ..p.stages };
    report.withheld_reason = p.withheld_reason.clone();
    report.rejections = p.samples.iter().chain(&c.totals.samples).take(sample_limit).cloned().collect();
}
