//! The reading side of a run: read, transform, check keys, diff, plan, batch.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use super::deliver::{Outgoing, RunSchema};
use super::outcome::state_failure;
use super::plan::{DeleteCheck, change, delete_of, shape, withheld};
use super::prior::PriorRejections;
use super::pushdown::{PushdownPlan, pushdown_of};
use super::run::PAGE;
use super::suppress::{Suppressor, audit};
use super::telemetry::{RunMetrics, outcome, stage};
use super::{Mode, SyncInner};

mod schema_check;
use crate::canary::{Canary, CanaryReport};
use crate::change::Op;
use crate::diff::{DiffOutput, Differ, Planned};
use crate::drift::{SchemaDrift, SchemaSummary};
use crate::error::SourceError;
use crate::error::unix_secs;
use crate::key::Key;
use crate::metrics::{SENSITIVE_FIELD_BLOCKS_TOTAL, SYNC};
use crate::observe::{ObservedRecord, RecordOutcome};
use crate::partition::PartitionReport;
use crate::pushdown::{PushdownBatch, RowHash};
use crate::record::RowBatch;
use crate::report::{Counts, FailureKind, ProgressEvent, RejectionSample, StageDurations};
use crate::schema::Schema;
use crate::source::ReadRequest;
use crate::state::{Lease, RejectedEntry, RejectionStage, SnapshotEntry, StateCommit};
use crate::suppression::{SuppressionOutcome, SuppressionReport};
use crate::transform::RejectionKind;
use crate::value::Value;

/// What the reading side did.
#[derive(Default)]
pub(super) struct Produced {
    pub(super) counts: Counts,
    pub(super) stages: StageDurations,
    pub(super) samples: Vec<RejectionSample>,
    pub(super) read_error: Option<(FailureKind, String)>,
    /// The read reached the end of the source (no error, not stopped).
    pub(super) complete: bool,
    pub(super) incremental: bool,
    pub(super) max_cursor: Option<Value>,
    pub(super) withheld_reason: Option<String>,
    /// Records that survived transforms and key checks (what the empty-source guard counts).
    pub(super) present: u64,
    /// Rows whose key is unknown: unreadable without a key, refused by a transform before
    /// their key could be read, or null-keyed. `Mirror` deletes nothing while there are any.
    pub(super) unknown_keys: u64,
    pub(super) cleared: Vec<Key>,
    pub(super) state_error: Option<(FailureKind, String)>,
    /// The columns this run's changes were fingerprinted and sent under, once decided.
    pub(super) delivered: Option<SchemaSummary>,
    /// How the read's columns differ from those last delivered.
    pub(super) drift: Option<SchemaDrift>,
    /// Records refused for a key repeated in the source (one entry per key).
    pub(super) key_rejections: Vec<RejectedEntry>,
    /// The canary the run was restricted to, and what it left out.
    pub(super) canary: Option<CanaryReport>,
    /// The partition the run was restricted to, and what it left to the others.
    pub(super) partition: Option<PartitionReport>,
    /// What the suppression list did.
    pub(super) suppression: Option<SuppressionReport>,
    /// In a repair, the keys it planned a change for.
    pub(super) planned_keys: HashSet<Key>,
    /// How the run used the pushdown source, if the sync has one.
    pub(super) pushdown: Option<Arc<PushdownPlan>>,
    /// Rows the pushdown source handed out.
    pub(super) pushdown_rows: u64,
    /// Keys the pushdown source reported gone from the model.
    pub(super) vanished: u64,
}

pub(super) struct Producer<'a> {
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
    /// Send a partial batch as soon as no batch waits for a writer (see `push`).
    eager: bool,
    max_rows: usize,
    max_bytes: usize,
    /// Records refused while reading, told to the observers once their refusal is committed.
    observed: Vec<ObservedRecord>,
    /// Suppressions that send nothing, told to the observers at once (see `tell_suppressed`).
    suppressions_observed: Vec<ObservedRecord>,
    /// Only keys inside it are planned (all without one).
    canary: Option<Canary>,
    /// The run's suppression list, once loaded.
    suppressor: Option<Suppressor>,
    metrics: RunMetrics,
    /// How the run uses the pushdown source, if the sync has one.
    pushdown: Option<Arc<PushdownPlan>>,
    /// The hashes of the current batch's source rows, by key, until each row is decided.
    hashes: HashMap<Key, RowHash>,
    /// The hashes of rows handed out that the transforms left out (absent, as vanished keys).
    absent_hashes: HashMap<Key, RowHash>,
    /// Rows whose delivered state is known without sending (unchanged, or absent at both
    /// ends), to record in the source's delivered table.
    settled: Vec<(Key, Option<RowHash>)>,
}

impl<'a> Producer<'a> {
    /// The reading side of a run that starts from `cursor`, sends its changes under
    /// `run_schema` and compares its read with the columns `expected`.
    pub(super) fn new(
        inner: &'a SyncInner,
        lease: Option<Lease>,
        prior: Arc<PriorRejections>,
        stop: CancellationToken,
        cursor: Option<Value>,
        expected: SchemaSummary,
        run_schema: RunSchema,
    ) -> Self {
        let caps = inner.destination.capabilities();
        let out = Produced {
            canary: inner
                .options
                .canary
                .and_then(Canary::new)
                .map(|c| CanaryReport { fraction: c.fraction(), excluded: 0 }),
            partition: inner.partition.map(|partition| PartitionReport { partition, excluded: 0 }),
            ..Produced::default()
        };
        let canary = inner.key_filter();
        Self {
            inner,
            lease,
            prior,
            stop,
            cursor,
            touched: HashSet::new(),
            read_back: HashSet::new(),
            expected,
            run_schema,
            read_schema: None,
            reorder: None,
            out,
            batch: Vec::new(),
            batch_bytes: 0,
            batch_deadline: None,
            eager: false,
            max_rows: inner.options.batch_rows.min(caps.max_batch_rows).max(1),
            max_bytes: inner.options.batch_bytes.min(caps.max_batch_bytes).max(1),
            observed: Vec::new(),
            suppressions_observed: Vec::new(),
            canary,
            suppressor: None,
            metrics: inner.metrics(),
            pushdown: None,
            hashes: HashMap::new(),
            absent_hashes: HashMap::new(),
            settled: Vec::new(),
        }
    }

    /// Reads through the pushdown source, as `plan` says.
    pub(super) fn with_pushdown(mut self, plan: Option<Arc<PushdownPlan>>) -> Self {
        self.out.pushdown.clone_from(&plan);
        self.pushdown = plan;
        self
    }

    pub(super) async fn run(mut self, mut differ: Box<dyn Differ>, tx: mpsc::Sender<Vec<Outgoing>>) -> Produced {
        let inner = self.inner;
        let options = &inner.options;
        self.out.incremental = inner.cursor_index.is_some() && inner.mode != Mode::Mirror && !options.full_resync;
        let request = ReadRequest::full()
            .with_cursor(if self.out.incremental { self.cursor.clone() } else { None })
            .with_order_by_key(inner.use_merge)
            .with_batch_size(options.read_batch_size);
        if let Some(reason) = self.pushdown.as_ref().and_then(|p| p.error.clone()) {
            self.fail(FailureKind::Source, reason);
            return self.finish_out();
        }
        let lookup = self.pushdown.as_ref().is_some_and(|p| p.changed_only());
        // A pushdown read hands out the changed rows as the warehouse finds them, sparsely:
        // lingering for a full batch would only hold them back, and leave the last batch to
        // be written after the scan ends. Without a rate limit to spare requests for, a
        // partial batch goes as soon as no other batch waits for a writer.
        self.eager = lookup && inner.destination.capabilities().rate_limit.is_none();
        // The lookup diff needs no order, and a warehouse sorting the changed rows would hand
        // out none of them before its whole scan ended.
        let request = if lookup { request.with_order_by_key(false) } else { request };
        // Withdrawn consent first: nothing is read or sent without the list, and the listed
        // keys the destination may hold are removed before anything else goes out.
        match Suppressor::load(inner).await {
            Ok(Some(suppressor)) => {
                let listed = suppressor.listed_keys();
                self.suppressor = Some(suppressor);
                self.remove_suppressed(listed, &tx).await;
            }
            Ok(None) => {}
            Err(reason) => {
                warn!(sync = %inner.id, "The suppression list could not be loaded; nothing is sent.");
                self.fail(FailureKind::Suppression, reason);
                return self.finish_out();
            }
        }
        let t = Instant::now();
        let stream = match &self.pushdown {
            Some(_) => match pushdown_of(inner.source.as_ref()) {
                Ok(source) if lookup => source.read_changed(&inner.id, request).await,
                Ok(source) => source.read_full(&inner.id, request).await,
                Err(reason) => Err(SourceError::Unsupported(reason)),
            },
            None => inner.source.read(request).await.map(|s| s.map(|b| b.map(PushdownBatch::plain)).boxed()),
        };
        self.out.stages.read += t.elapsed();
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                self.fail(FailureKind::Source, format!("source `{}`: {e}", inner.source.name()));
                return self.finish_out();
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
                next = tokio::time::timeout(options.read_timeout, stream.next()) => match next {
                    Ok(next) => next,
                    Err(_) => {
                        warn!(source = inner.source.name(), "The source sent no batch within the read timeout.");
                        self.fail(
                            FailureKind::Source,
                            format!(
                                "source `{}` sent no batch within the read timeout of {:?}; the run stopped \
                                 without deletes (raise SyncOptions::read_timeout for a slow model)",
                                inner.source.name(),
                                options.read_timeout
                            ),
                        );
                        break;
                    }
                },
            };
            self.out.stages.read += t.elapsed();
            let (batch, hashes, vanished) = match next {
                None => {
                    self.out.complete = true;
                    break;
                }
                Some(Err(e)) => {
                    warn!(source = inner.source.name(), "Source failed mid-read; no deletes this run.");
                    self.fail(FailureKind::Source, format!("source `{}`: {e}", inner.source.name()));
                    break;
                }
                Some(Ok(read)) => {
                    let PushdownBatch { rows: mut batch, hashes, vanished } = read;
                    self.metrics.refused(stage::SOURCE, batch.rejected.len() as u64);
                    for rejection in std::mem::take(&mut batch.rejected) {
                        self.out.counts.source_rejected += 1;
                        let reason = format!("{}: {}", rejection.location, rejection.reason);
                        self.sample(rejection.key.as_ref(), RejectionStage::Source, None, &reason);
                        match rejection.key {
                            // The row is there, unreadable: its key must not be deleted.
                            Some(key) => {
                                self.observe(&key, RejectionStage::Source, reason);
                                unreadable.push(key);
                            }
                            None => self.out.unknown_keys += 1,
                        }
                    }
                    (batch, hashes, vanished)
                }
            };
            if !self.check_schema(&batch.schema) {
                break;
            }
            self.out.counts.read += batch.len() as u64;
            self.metrics.read(batch.len() as u64, self.out.counts.read);
            let _ = inner.progress.send(ProgressEvent::Read { records: self.out.counts.read });
            self.track_cursor(&batch);
            if self.pushdown.is_some() && !self.note_hashes(&batch, hashes, vanished.len()) {
                break;
            }
            let Some((batch, mut seen)) = self.transform(batch).await else { break };
            let mut batch = self.reorder(batch);
            seen.append(&mut unreadable);
            let suppressed = self.keep_out_suppressed(&mut batch, &mut seen, &tx).await;
            self.apply_canary(&mut batch, &mut seen);
            self.note_read_back(&batch, &seen);
            self.out.present += (batch.records.len() + suppressed) as u64;
            let decided = self.pushdown_keys(&batch);
            if lookup {
                let absent = self.left_out(&decided, &seen, vanished);
                if let Err(e) = differ.push_absent(absent).await {
                    self.fail(FailureKind::Source, e.to_string());
                    break;
                }
            }
            let t = Instant::now();
            let span = info_span!("diff", records = batch.records.len());
            if let Err(e) = differ.push(&batch.schema, batch.records, seen, &mut diff).instrument(span).await {
                self.fail(FailureKind::Source, e.to_string());
                break;
            }
            self.out.stages.diff += t.elapsed();
            self.take_diff(&mut diff, &tx).await;
            self.settle_unchanged(decided).await;
        }

        if self.out.complete && !self.stop.is_cancelled() {
            if self.out.incremental {
                self.retry_unseen_rejections(differ.as_mut(), &mut diff, &tx).await;
            }
            let t = Instant::now();
            let span = info_span!("diff", finish = true, deletes = tracing::field::Empty);
            let finished = differ.finish(&mut diff).instrument(span.clone()).await;
            span.record("deletes", diff.deletes.len());
            match finished {
                Ok(()) => {
                    self.out.stages.diff += t.elapsed();
                    self.take_diff(&mut diff, &tx).await;
                    for key in std::mem::take(&mut diff.absent_settled) {
                        let hash = self.absent_hashes.remove(&key);
                        self.settled.push((key, hash));
                    }
                    let mut deletes = std::mem::take(&mut diff.deletes);
                    // Suppressed keys are removed by the consent path, past the delete guard.
                    if let Some(suppressor) = &self.suppressor {
                        deletes.retain(|e| !suppressor.holds(&e.key));
                    }
                    self.plan_deletes(deletes, diff.live_total, &tx).await;
                    self.clear_stale_rejections();
                }
                Err(e) => {
                    self.fail(FailureKind::Source, e.to_string());
                    self.out.complete = false;
                }
            }
        }
        tracing::Span::current().record("records", self.out.counts.read);
        if self.stop.is_cancelled() {
            self.out.counts.undelivered += self.batch.len() as u64;
            self.metrics.changes_of(outcome::UNDELIVERED, self.batch.iter().map(|o| o.change.op));
            self.batch.clear();
        } else {
            self.flush(&tx).await;
        }
        self.record_settled().await;
        self.finish_out()
    }

    /// Keeps the hashes of a pushdown batch's rows by key (the transforms never see them);
    /// `false` when the source handed out a hash per record no more.
    fn note_hashes(&mut self, batch: &RowBatch, hashes: Vec<RowHash>, vanished: usize) -> bool {
        if hashes.len() != batch.records.len() {
            let reason = format!(
                "source `{}` handed out {} rows with {} hashes; a pushdown source gives one hash per row",
                self.inner.source.name(),
                batch.records.len(),
                hashes.len()
            );
            self.fail(FailureKind::Source, reason);
            return false;
        }
        self.out.pushdown_rows += batch.records.len() as u64;
        self.out.vanished += vanished as u64;
        self.hashes.clear();
        for (record, hash) in batch.records.iter().zip(hashes) {
            // A repeated key keeps its first row's hash, as the diff keeps its first row.
            if let Ok(key) = record.key(&batch.schema) {
                self.hashes.entry(key).or_insert(hash);
            }
        }
        true
    }

    /// The keys of the records about to be diffed, when the run records hashes.
    fn pushdown_keys(&self, batch: &RowBatch) -> Vec<Key> {
        if self.pushdown.is_none() {
            return Vec::new();
        }
        batch.records.iter().filter_map(|r| r.key(&batch.schema).ok()).collect()
    }

    /// The rows handed out that the transforms left out (filtered: absent from the source,
    /// as a full read's diff treats them), with the keys that vanished from the model.
    fn left_out(&mut self, decided: &[Key], seen: &[Key], vanished: Vec<Key>) -> Vec<Key> {
        let present: HashSet<&Key> = decided.iter().chain(seen).collect();
        let filtered: Vec<Key> = self.hashes.keys().filter(|k| !present.contains(k)).cloned().collect();
        for key in &filtered {
            if let Some(hash) = self.hashes.remove(key) {
                self.absent_hashes.insert(key.clone(), hash);
            }
        }
        let mut absent = vanished;
        absent.extend(filtered);
        absent
    }

    /// After a batch's diff: the rows that went neither out nor into a refusal matched what
    /// the destination acknowledged; their hashes are recorded.
    async fn settle_unchanged(&mut self, decided: Vec<Key>) {
        if self.pushdown.is_none() {
            return;
        }
        for key in decided {
            if let Some(hash) = self.hashes.remove(&key) {
                self.settled.push((key, Some(hash)));
            }
        }
        self.hashes.clear();
        if self.settled.len() >= PAGE {
            self.record_settled().await;
        }
    }

    /// Records the settled rows in the source's delivered table.
    async fn record_settled(&mut self) {
        let Some(plan) = self.pushdown.clone() else { return };
        let settled = std::mem::take(&mut self.settled);
        plan.delivered(self.inner.source.as_ref(), &self.inner.id, &settled).await;
    }

    /// What the reading side did, with the suppression report.
    fn finish_out(mut self) -> Produced {
        if let Some(suppressor) = self.suppressor.take() {
            self.out.suppression = Some(suppressor.finish(self.inner.destination.name()));
        }
        self.out
    }

    /// Takes the records of suppressed keys out of `batch` (their keys join `seen`, so the
    /// diff neither sends nor deletes them) and removes those keys from the destination;
    /// returns how many records it took out.
    async fn keep_out_suppressed(
        &mut self,
        batch: &mut RowBatch,
        seen: &mut Vec<Key>,
        tx: &mpsc::Sender<Vec<Outgoing>>,
    ) -> usize {
        let Some(suppressor) = &mut self.suppressor else { return 0 };
        let keys = suppressor.take_out(batch);
        if keys.is_empty() {
            return 0;
        }
        if !self.inner.options.dry_run {
            for key in &keys {
                audit(
                    &self.inner.id,
                    self.inner.destination.name(),
                    &self.inner.progress,
                    key,
                    SuppressionOutcome::KeptOut,
                );
                self.observe_suppressed(key, SuppressionOutcome::KeptOut);
            }
        }
        self.tell_suppressed();
        let n = keys.len();
        seen.extend(keys.iter().cloned());
        self.remove_suppressed(keys, tx).await;
        n
    }

    /// Deletes the suppressed `keys` the destination may hold (whatever the mode, the
    /// canary or the delete guard), once each per run, and drops their earlier refusals
    /// (which keep their records' values) from the state.
    async fn remove_suppressed(&mut self, keys: Vec<Key>, tx: &mpsc::Sender<Vec<Outgoing>>) {
        let inner = self.inner;
        let Some(suppressor) = &mut self.suppressor else { return };
        let keys = suppressor.not_handled(keys);
        if keys.is_empty() {
            return;
        }
        let deletable = suppressor.deletable;
        let refused: Vec<Key> = keys.iter().filter(|k| self.prior.contains(k)).cloned().collect();
        if !refused.is_empty() {
            self.touched.extend(refused.iter().cloned());
            self.commit(StateCommit { cleared_rejections: refused, ..StateCommit::default() }).await;
        }
        for chunk in keys.chunks(PAGE) {
            let entries = match inner.state.get(&inner.id, chunk).await {
                Ok(entries) => entries,
                Err(error) => {
                    warn!(%error, "Looking up the destination's copies of suppressed keys failed; stopping.");
                    self.fail(
                        FailureKind::Suppression,
                        format!("looking up which suppressed keys the destination may hold failed: {error}"),
                    );
                    self.stop.cancel();
                    return;
                }
            };
            for entry in entries.into_iter().flatten().filter(SnapshotEntry::may_exist) {
                let report = match &mut self.suppressor {
                    Some(suppressor) => &mut suppressor.report,
                    None => return,
                };
                if !deletable {
                    report.not_removable += 1;
                    if !inner.options.dry_run {
                        let destination = inner.destination.name();
                        audit(&inner.id, destination, &inner.progress, &entry.key, SuppressionOutcome::NotRemovable);
                        self.observe_suppressed(&entry.key, SuppressionOutcome::NotRemovable);
                    }
                    continue;
                }
                report.removals_planned += 1;
                self.touch(&entry.key);
                let (fingerprint, version) = delete_of(&entry);
                self.out.counts.planned.add(Op::Delete, 1);
                let change = change(&inner.id, Op::Delete, entry.key, None, fingerprint, version);
                self.push(Outgoing { change, prior: entry.pending, consent: true, hash: None }, tx).await;
            }
            self.tell_suppressed();
        }
    }

    /// Takes the records whose key is outside the canary out of `batch`, and their keys out
    /// of `seen`: the diff never hears of them.
    fn apply_canary(&mut self, batch: &mut RowBatch, seen: &mut Vec<Key>) {
        let Some(canary) = self.canary else { return };
        let schema = batch.schema.clone();
        let before = batch.records.len();
        let mut other_partitions = 0u64;
        // A record without a key is left for the diff to refuse.
        batch.records.retain(|r| {
            r.key(&schema).map_or(true, |k| match canary.excludes(&k) {
                Some(other) => {
                    other_partitions += u64::from(other);
                    false
                }
                None => true,
            })
        });
        seen.retain(|k| canary.contains(k));
        let excluded = (before - batch.records.len()) as u64;
        self.count_excluded(excluded - other_partitions, other_partitions);
    }

    /// Counts records left out: by the canary's fraction, and for being in another partition.
    fn count_excluded(&mut self, by_canary: u64, other_partitions: u64) {
        if let Some(report) = &mut self.out.canary {
            report.excluded += by_canary;
        }
        if let Some(report) = &mut self.out.partition {
            report.excluded += other_partitions;
        }
    }

    /// Whether `key` is inside the run's canary (every key is without one).
    fn in_canary(&self, key: &Key) -> bool {
        self.canary.is_none_or(|c| c.contains(key))
    }

    fn track_cursor(&mut self, batch: &RowBatch) {
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
    async fn transform(&mut self, mut batch: RowBatch) -> Option<(RowBatch, Vec<Key>)> {
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
            let mut blocked = 0u64;
            self.metrics.refused(stage::TRANSFORM, output.rejected.len() as u64);
            for rejection in output.rejected {
                let key = rejection.record.key(&input_schema).ok();
                if let Some(key) = &key
                    && !self.in_canary(key)
                {
                    let other = self.canary.and_then(|c| c.excludes(key)).unwrap_or(false);
                    self.count_excluded(u64::from(!other), u64::from(other));
                    continue;
                }
                self.out.counts.transform_rejected += 1;
                if transform.rejection_kind(&rejection) == RejectionKind::SensitiveField {
                    blocked += 1;
                }
                self.sample(key.as_ref(), RejectionStage::Transform, None, &rejection.reason);
                let Some(key) = key else {
                    self.out.unknown_keys += 1;
                    continue;
                };
                seen.push(key.clone());
                self.observe(&key, RejectionStage::Transform, rejection.reason.clone());
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
            if blocked > 0 {
                warn!(sync = %self.inner.id, transform = transform.name(), records = blocked, "Records kept back: a sensitive field would have reached the destination.");
                metrics::counter!(SENSITIVE_FIELD_BLOCKS_TOTAL, SYNC => self.inner.id.to_string()).increment(blocked);
            }
            batch = output.batch;
        }
        self.out.stages.transform += t.elapsed();
        for key in &seen {
            self.touch(key);
        }
        let mut observed = std::mem::take(&mut self.observed);
        if let Some(restriction) = &self.inner.restrict {
            rejections.retain(|r| restriction.contains(&r.key));
            observed.retain(|o| restriction.contains(&o.key));
        }
        let committed =
            rejections.is_empty() || self.commit(StateCommit { rejected: rejections, ..StateCommit::default() }).await;
        if committed {
            let run_id = self.lease.as_ref().map_or(0, |l| l.token);
            self.inner.observers.outcomes(&self.inner.id, run_id, observed);
        }
        Some((batch, seen))
    }

    /// Notes a suppression that sends nothing (a record kept out, a key the destination
    /// cannot delete), for the observers.
    fn observe_suppressed(&mut self, key: &Key, outcome: SuppressionOutcome) {
        if self.inner.observers.is_empty() || self.lease.is_none() || self.inner.options.dry_run {
            return;
        }
        let record = ObservedRecord::new(key.clone(), None, RecordOutcome::Suppressed { outcome });
        self.suppressions_observed.push(record.with_reason("consent withdrawn"));
    }

    /// Tells the observers the suppressions noted so far: they change no state, so they
    /// wait for no commit.
    fn tell_suppressed(&mut self) {
        let records = std::mem::take(&mut self.suppressions_observed);
        let run_id = self.lease.as_ref().map_or(0, |l| l.token);
        self.inner.observers.outcomes(&self.inner.id, run_id, records);
    }

    /// Notes a record refused before the diff, for the observers once its refusal is
    /// committed (a dry run commits nothing, so tells them nothing).
    fn observe(&mut self, key: &Key, stage: RejectionStage, reason: String) {
        if self.inner.observers.is_empty() || self.lease.is_none() || self.inner.options.dry_run {
            return;
        }
        let outcome = RecordOutcome::Refused { stage };
        self.observed.push(ObservedRecord::new(key.clone(), None, outcome).with_reason(reason));
    }

    fn fail(&mut self, kind: FailureKind, reason: String) {
        self.out.read_error.get_or_insert((kind, reason));
    }

    fn touch(&mut self, key: &Key) {
        if self.prior.contains(key) {
            self.touched.insert(key.clone());
        }
    }

    /// Notes which earlier rejections the read returned: for those the source's current
    /// record decides, and the refused record kept in the state is stale.
    fn note_read_back(&mut self, batch: &RowBatch, refused: &[Key]) {
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

    /// Commits rejections found while reading (not a delivery outcome, so not batched);
    /// returns whether they are committed.
    async fn commit(&mut self, commit: StateCommit) -> bool {
        if self.inner.options.dry_run {
            return false;
        }
        let Some(lease) = &self.lease else { return false };
        let t = Instant::now();
        let span = info_span!("state_commit", kind = "rejections", entries = commit.rejected.len());
        let committed = match self.inner.state.commit(lease, commit).instrument(span).await {
            Ok(()) => true,
            Err(error) => {
                warn!(%error, "Committing refused records failed.");
                self.out.state_error.get_or_insert_with(|| (state_failure(&error), error.to_string()));
                self.stop.cancel();
                false
            }
        };
        self.out.stages.commit += t.elapsed();
        committed
    }

    async fn take_diff(&mut self, diff: &mut DiffOutput, tx: &mpsc::Sender<Vec<Outgoing>>) {
        self.out.counts.unchanged += std::mem::take(&mut diff.unchanged);
        self.metrics.refused(stage::KEY, diff.invalid.len() as u64);
        for invalid in std::mem::take(&mut diff.invalid) {
            self.out.counts.invalid += 1;
            if let Some(key) = &invalid.key {
                self.hashes.remove(key);
            }
            match &invalid.key {
                Some(key) if self.inner.restrict.as_ref().is_some_and(|r| !r.contains(key)) => {}
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
        // A row that goes out gets its hash once acknowledged; one that does not, never.
        let hash = self.hashes.remove(&p.key);
        if let Some(restriction) = &inner.restrict {
            // A repair sends its keys only; the rest waits for the next run.
            if !restriction.contains(&p.key) {
                return None;
            }
        }
        let Some((op, version)) = shape(inner.mode, p.kind, p.fingerprint, p.base_version, p.pending) else {
            self.out.counts.skipped += 1;
            return None;
        };
        if inner.restrict.is_some() {
            self.out.planned_keys.insert(p.key.clone());
        }
        self.out.counts.planned.add(op, 1);
        let change = change(&inner.id, op, p.key, Some(p.record), p.fingerprint, version);
        Some(Outgoing { change, prior: p.pending, consent: false, hash })
    }

    async fn push(&mut self, outgoing: Outgoing, tx: &mpsc::Sender<Vec<Outgoing>>) {
        if self.inner.options.dry_run && !self.inner.options.validate_dry_run {
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
        // Eager: the writers have taken every batch sent (the channel is empty), so one is
        // free or about to be, and this batch would only wait.
        if self.batch.len() >= self.max_rows || (self.eager && tx.capacity() == tx.max_capacity()) {
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
        if let Err(mpsc::error::SendError(batch)) = tx.send(batch).await {
            self.out.counts.undelivered += n;
            self.metrics.changes_of(outcome::UNDELIVERED, batch.iter().map(|o| o.change.op));
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
            let mut suppressed = Vec::new();
            for entry in page {
                let earlier = self.prior.get(&entry.key).is_some_and(|p| p.stage == RejectionStage::Destination);
                if !earlier
                    || entry.stage != RejectionStage::Destination
                    || self.read_back.contains(&entry.key)
                    || self.touched.contains(&entry.key)
                    || !self.in_canary(&entry.key)
                {
                    continue;
                }
                // A refused record of a key whose consent was withdrawn is never sent again.
                if let Some(suppressor) = &self.suppressor
                    && (suppressor.holds(&entry.key)
                        || entry
                            .record
                            .as_ref()
                            .is_some_and(|r| r.values.len() == schema.len() && suppressor.matches(&schema, r)))
                {
                    suppressed.push(entry.key);
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
            if !suppressed.is_empty() {
                self.remove_suppressed(suppressed, tx).await;
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

    async fn plan_deletes(
        &mut self,
        mut deletes: Vec<SnapshotEntry>,
        live_total: u64,
        tx: &mpsc::Sender<Vec<Outgoing>>,
    ) {
        let inner = self.inner;
        let options = &inner.options;
        if let Some(restriction) = &inner.restrict {
            deletes.retain(|e| restriction.contains(&e.key));
        }
        let lookup = self.pushdown.as_ref().is_some_and(|p| p.changed_only());
        if lookup && inner.mode != Mode::Mirror && self.out.read_error.is_none() {
            // Only Mirror deletes: the keys leave the delivered table (a switch to Mirror
            // changes the epoch, and its full re-diff adds back every key delivered).
            for entry in &deletes {
                let hash = self.absent_hashes.remove(&entry.key);
                self.settled.push((entry.key.clone(), hash));
            }
        }
        if inner.mode != Mode::Mirror || options.full_resync || deletes.is_empty() || self.out.read_error.is_some() {
            return;
        }
        let n = deletes.len() as u64;
        let check = DeleteCheck {
            deletes: n,
            live: live_total,
            read: self.out.counts.read,
            // A pushdown read hands out only changed rows: the keys staying are the live ones
            // not deleted (counted as far as the guard needs).
            present: if lookup { live_total.saturating_sub(n) } else { self.out.present },
            unknown_keys: self.out.unknown_keys,
        };
        // A partition holds its share of the sync's guard (see `Partition::max_deletes`).
        let max_deletes = options.max_deletes.map(|m| inner.partition.map_or(m, |p| p.max_deletes(m)));
        if let Some(reason) = withheld(check, max_deletes, options.allow_empty_source) {
            warn!(deletes = n, "Deletes withheld by the delete guard.");
            self.out.counts.withheld += n;
            self.metrics.changes(outcome::WITHHELD, &crate::report::OpCounts { delete: n, ..Default::default() });
            self.out.withheld_reason = Some(reason);
            return;
        }
        for entry in deletes {
            self.touch(&entry.key);
            if inner.restrict.is_some() {
                self.out.planned_keys.insert(entry.key.clone());
            }
            let (fingerprint, version) = delete_of(&entry);
            self.out.counts.planned.add(Op::Delete, 1);
            let hash = if lookup { self.absent_hashes.remove(&entry.key) } else { None };
            let change = change(&inner.id, Op::Delete, entry.key, None, fingerprint, version);
            self.push(Outgoing { change, prior: entry.pending, consent: false, hash }, tx).await;
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
            // A key outside the canary keeps its state as it is.
            .filter(|key| self.in_canary(key))
            // An incremental read does not see every row: only a row it returned (back to
            // what the destination holds) settles an earlier rejection.
            .filter(|key| !incremental || self.read_back.contains(*key))
            .cloned()
            .collect();
        cleared.sort();
        self.out.cleared = cleared;
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
