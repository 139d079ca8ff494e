//! Delivery of one batch: pacing, retries, bisection, and the state commit of its outcomes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use super::lease::LeaseDeadline;
use super::pace::{PauseGate, RateLimiter, SharedPace, WaitClock, backoff};
use super::prior::PriorRejections;
use super::quota::{Gate, QuotaGate};
use super::suppress::audit;
use super::telemetry::{RunMetrics, outcome, stage};
use crate::SyncOptions;
use crate::audience::AudienceReport;
use crate::change::{Change, ChangeBatch, ChangeOutcome, Memo, Op, Receipt, WriteOutcome};
use crate::destination::{CommittedWriteError, Destination, RunInfo};
use crate::error::{DestinationError, StateError, unix_secs};
use crate::fingerprint::FingerprintAlgorithm;
use crate::key::Key;
use crate::observe::{ObservedRecord, Observers, RecordOutcome};
use crate::pushdown::RowHash;
use crate::report::{EffectCounts, FailureKind, OpCounts, ProgressEvent, RejectionSample};
use crate::schema::Schema;
use crate::source::Source;
use crate::state::{Lease, PendingChange, RejectedEntry, RejectionStage, SnapshotEntry, StateCommit, StateStore};
use crate::suppression::SuppressionOutcome;
use crate::value::Value;

use super::pushdown::PushdownPlan;

/// Why a batch's changes were left undelivered.
#[derive(Debug)]
pub(crate) enum BatchFailure {
    /// Retries ran out on transient failures or rate limits.
    Exhausted(String),
    /// The destination refused the credentials or failed for good.
    Fatal(FailureKind, String),
    /// The state store refused the commit (fenced, unavailable).
    Commit(StateError),
    /// The destination asked to wait longer than the sync allows.
    RateLimited(Duration),
    /// A long-period allowance (daily) is spent, or down to the reserve.
    QuotaExhausted { reason: String, resets_in: Option<Duration> },
    /// The lease could not be renewed in time: nothing more is written.
    LeaseLapsed,
}

/// What one batch's delivery did.
#[derive(Debug, Default)]
pub(crate) struct BatchResult {
    pub applied: OpCounts,
    /// What the destination said it did with applied changes.
    pub effects: EffectCounts,
    pub rejected: OpCounts,
    pub undelivered: u64,
    pub superseded: u64,
    pub recovered: u64,
    /// Deletes of keys whose consent was withdrawn that the destination applied.
    pub consent_removed: u64,
    pub retries: u64,
    pub rate_limit_waits: u64,
    /// Writes the destination acknowledged.
    pub writes: u64,
    pub bytes: u64,
    pub samples: Vec<RejectionSample>,
    pub failure: Option<BatchFailure>,
    pub deliver_time: Duration,
    pub commit_time: Duration,
}

enum Final {
    Applied(Receipt),
    Rejected {
        reason: String,
    },
    /// The destination holds a newer version; kept among the rejections with this reason.
    Superseded {
        reason: String,
    },
    Undelivered,
}

enum WriteFailure {
    Invalid(String),
    Exhausted(String),
    Fatal(FailureKind, String),
    /// An exactly-once write's state commit was refused.
    Commit(StateError),
    RateLimited(Duration),
    QuotaExhausted {
        reason: String,
        resets_in: Option<Duration>,
    },
    LeaseLapsed,
    Stopped,
}

/// How a change's delivery ended, for the state: applied (with the memo to keep), or refused.
enum Settled<'a> {
    Applied(Option<&'a Memo>),
    Refused(std::borrow::Cow<'a, str>),
}

/// The schema a run's changes are sent under, shared by the reading and delivering sides.
#[derive(Clone)]
pub(crate) struct RunSchema {
    built: Arc<Schema>,
    read: Arc<std::sync::OnceLock<Arc<Schema>>>,
}

impl RunSchema {
    pub fn new(built: Arc<Schema>) -> Self {
        Self { built, read: Arc::default() }
    }

    /// Fixes the run's schema; only the first call counts.
    pub fn set(&self, schema: Arc<Schema>) {
        let _ = self.read.set(schema);
    }

    pub fn get(&self) -> Arc<Schema> {
        self.read.get().unwrap_or(&self.built).clone()
    }
}

/// The pending change each key of a batch had before it (restored if the destination
/// refuses the batch's change, as a refused change was never applied). Only keys that had
/// one are kept: a key missing here had none, and an initial load's keys all miss.
type Priors = HashMap<Key, Option<PendingChange>>;

/// A change whose delivery ended.
struct Done {
    change: Change,
    outcome: Final,
    /// Whether its outcome was committed with the write (exactly-once).
    committed: bool,
}

impl Done {
    fn undelivered(change: Change) -> Self {
        Done { change, outcome: Final::Undelivered, committed: false }
    }

    /// The change and how it settled for the state; nothing when undelivered.
    fn outcome(&self) -> Option<(&Change, Settled<'_>)> {
        match &self.outcome {
            Final::Applied(receipt) => Some((&self.change, Settled::Applied(receipt.memo.as_ref()))),
            Final::Rejected { reason } | Final::Superseded { reason } => {
                Some((&self.change, Settled::Refused(reason.as_str().into())))
            }
            Final::Undelivered => None,
        }
    }
}

/// A change on its way out, with the key's pending change before it (restored if the
/// destination refuses this one, as a refused change was never applied).
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub change: Change,
    pub prior: Option<PendingChange>,
    /// A delete of a key whose consent was withdrawn (counted and audited when applied).
    pub consent: bool,
    /// In a pushdown sync, the hash of the source row this change delivers, recorded in the
    /// source's delivered table once the change is acknowledged (a delete without one
    /// removes the key from it).
    pub hash: Option<RowHash>,
}

/// Everything the delivery workers share.
pub(crate) struct Deliverer {
    pub sync_id: Arc<str>,
    /// The schema of the run's changes: the read's (after transforms), fixed by the reading
    /// side before it plans the first change; the sync's built schema until then.
    pub schema: RunSchema,
    pub destination: Arc<dyn Destination>,
    pub state: Arc<dyn StateStore>,
    pub lease: Lease,
    pub limiter: Option<RateLimiter>,
    /// The request schedule shared with the sync's other runners, if any.
    pub shared: Option<SharedPace>,
    pub pause: PauseGate,
    pub options: SyncOptions,
    pub algorithm: FingerprintAlgorithm,
    /// Cancelled when the run stops early: waits end, nothing new is written.
    pub stop: CancellationToken,
    /// Rejections from earlier runs, for attempt counts.
    pub prior: Arc<PriorRejections>,
    pub progress: broadcast::Sender<ProgressEvent>,
    /// Until when the run may write (checked before every write).
    pub lease_deadline: Arc<LeaseDeadline>,
    /// The wall time writes waited on rate limits.
    pub waits: Arc<WaitClock>,
    /// Pacing to the quota the destination reports.
    pub quota: QuotaGate,
    /// Whether the destination keeps memos (read from the state before each write).
    pub keeps_memos: bool,
    /// The run, for the destination's run hooks.
    pub run: RunInfo,
    /// Whether the destination's `begin_run` has succeeded (it is called before the first write).
    pub begun: tokio::sync::Mutex<bool>,
    /// The audience figures of the run's writes, summed.
    pub audience: std::sync::Mutex<Option<AudienceReport>>,
    /// Told each batch's outcomes once committed.
    pub observers: Observers,
    /// Whether the destination's memos are its record ids (shown to the observers).
    pub record_ids: bool,
    /// The run's metrics.
    pub metrics: RunMetrics,
    /// The source, for its pushdown interface.
    pub source: Arc<dyn Source>,
    /// How the run uses the pushdown source, if the sync has one.
    pub pushdown: Option<Arc<PushdownPlan>>,
}

impl Deliverer {
    /// Delivers `changes`, then commits their final outcomes in one state commit (or, to an
    /// exactly-once destination, with each write).
    pub(crate) async fn deliver(&self, outgoing: Vec<Outgoing>) -> BatchResult {
        let result = self.deliver_batch(outgoing).await;
        // The batch's span (see `consume`) says how it ended.
        tracing::Span::current().record("outcome", batch_outcome(&result));
        result
    }

    async fn deliver_batch(&self, outgoing: Vec<Outgoing>) -> BatchResult {
        let mut result = BatchResult::default();
        let transactional = self.destination.transactional_state().is_some();
        let mut priors = Priors::new();
        let mut changes = Vec::with_capacity(outgoing.len());
        let mut intents = StateCommit::default();
        let mut outgoing = outgoing;
        if self.keeps_memos
            && let Err(error) = self.fill_memos(&mut outgoing).await
        {
            warn!(sync = %self.sync_id, %error, "Reading the batch's memos failed; not sending it.");
            result.undelivered = outgoing.len() as u64;
            self.metrics.changes_of(outcome::UNDELIVERED, outgoing.iter().map(|o| o.change.op));
            result.failure = Some(BatchFailure::Commit(error));
            return result;
        }
        let schema = self.keeps_memos.then(|| self.schema.get());
        let mut consent = std::collections::HashSet::new();
        // Changes sent again exactly as a send whose outcome never came back (same op,
        // fingerprint and version, so the same idempotency key).
        let mut resent = 0u64;
        let mut hashes: HashMap<Key, Option<RowHash>> = HashMap::new();
        for Outgoing { change, prior, consent: withdrawn, hash } in outgoing {
            if self.pushdown.is_some() {
                hashes.insert(change.key.clone(), hash);
            }
            if withdrawn {
                consent.insert(change.key.clone());
            }
            resent += u64::from(prior.is_some_and(|p| {
                p.op == change.op && p.fingerprint == change.fingerprint && p.version == change.version
            }));
            if !transactional {
                let pending = PendingChange { op: change.op, fingerprint: change.fingerprint, version: change.version };
                intents.intents.push((change.key.clone(), pending));
                if let Some(schema) = &schema
                    && let Some(memo) = self.destination.intent_memo(schema, &change)
                {
                    intents.memos.push((change.key.clone(), memo));
                }
            }
            if prior.is_some() {
                priors.insert(change.key.clone(), prior);
            }
            changes.push(change);
        }
        // The source's delivered table first: a key the destination may hold after this
        // write must have a row there, or a later delete of it would go unnoticed.
        if let Some(plan) = &self.pushdown {
            let keys: Vec<Key> = changes.iter().map(|c| c.key.clone()).collect();
            if let Err(reason) = plan.intents(self.source.as_ref(), &self.sync_id, &keys).await {
                warn!(sync = %self.sync_id, %reason, "Recording the batch's keys in the source failed; not sending it.");
                result.undelivered = changes.len() as u64;
                self.metrics.changes_of(outcome::UNDELIVERED, changes.iter().map(|c| c.op));
                result.failure = Some(BatchFailure::Fatal(FailureKind::Source, reason));
                return result;
            }
        }
        // Record the intent first: if we die after the destination applied the batch but
        // before its acknowledgement is committed, the next run knows these changes are
        // pending. An exactly-once destination commits the outcomes with the rows, so there
        // is no such window and no intent.
        let started = Instant::now();
        let span = info_span!("state_commit", kind = "intents", entries = intents.intents.len());
        if !transactional && let Err(error) = self.state.commit(&self.lease, intents).instrument(span).await {
            warn!(sync = %self.sync_id, %error, "Recording the batch's intent failed; not sending it.");
            result.undelivered = changes.len() as u64;
            self.metrics.changes_of(outcome::UNDELIVERED, changes.iter().map(|c| c.op));
            result.failure = Some(BatchFailure::Commit(error));
            result.commit_time = started.elapsed();
            return result;
        }
        result.commit_time = started.elapsed();
        self.metrics.duplicates(resent);
        let started = Instant::now();
        let finals = self.write_bisecting(changes, &priors, &mut result).await;
        result.deliver_time = started.elapsed();

        let (mut applied, mut rejected) = (0u64, 0u64);
        let (mut superseded, mut undelivered) = (OpCounts::default(), OpCounts::default());
        let change_time = self.options.change_time_field.as_deref().and_then(|f| self.schema.get().index_of(f));
        let mut change_times = Vec::new();
        for done in &finals {
            let change = &done.change;
            match &done.outcome {
                Final::Applied(receipt) => {
                    applied += 1;
                    result.applied.add(change.op, 1);
                    if let Some(effect) = receipt.effect {
                        result.effects.add(effect);
                    }
                    result.bytes += change.estimated_size() as u64;
                    result.recovered += u64::from(self.prior.contains(&change.key));
                    if change.op == Op::Delete && consent.contains(&change.key) {
                        result.consent_removed += 1;
                        let destination = self.destination.name();
                        audit(&self.sync_id, destination, &self.progress, &change.key, SuppressionOutcome::Removed);
                    }
                    if let Some(i) = change_time
                        && let Some(Value::Timestamp(t)) = change.record.as_ref().and_then(|r| r.get(i))
                    {
                        change_times.push(*t);
                    }
                }
                Final::Rejected { reason } | Final::Superseded { reason } => {
                    rejected += 1;
                    if matches!(done.outcome, Final::Superseded { .. }) {
                        result.superseded += 1;
                        superseded.add(change.op, 1);
                    } else {
                        result.rejected.add(change.op, 1);
                    }
                    if result.samples.len() < self.options.rejection_sample {
                        result.samples.push(RejectionSample {
                            key: change.key.redacted(),
                            stage: RejectionStage::Destination,
                            op: Some(change.op),
                            reason: reason.clone(),
                        });
                    }
                }
                Final::Undelivered => {
                    result.undelivered += 1;
                    undelivered.add(change.op, 1);
                }
            }
        }
        self.metrics.changes(outcome::APPLIED, &result.applied);
        self.metrics.changes(outcome::REJECTED, &result.rejected);
        self.metrics.changes(outcome::SUPERSEDED, &superseded);
        self.metrics.changes(outcome::UNDELIVERED, &undelivered);
        self.metrics.refused(stage::DESTINATION, rejected);
        self.metrics.retries(result.retries);
        self.metrics.acknowledged_changes(&change_times, std::time::SystemTime::now());
        let now = unix_secs(std::time::SystemTime::now());
        let commit = self.commit_of(finals.iter().filter(|d| !d.committed).filter_map(Done::outcome), &priors, now);
        let mut committed = true;
        if !commit.applied.is_empty() || !commit.rejected.is_empty() {
            let started = Instant::now();
            let span =
                info_span!("state_commit", kind = "outcomes", entries = commit.applied.len() + commit.rejected.len());
            if let Err(error) = self.state.commit(&self.lease, commit).instrument(span).await {
                warn!(sync = %self.sync_id, applied, rejected, %error, "State commit failed; these changes will be sent again next run.");
                result.failure = Some(BatchFailure::Commit(error));
                committed = false;
            }
            result.commit_time += started.elapsed();
        }
        self.observe(&finals, committed, &consent);
        if let Some(plan) = &self.pushdown {
            let delivered: Vec<(Key, Option<RowHash>)> = finals
                .iter()
                .filter(|done| (done.committed || committed) && matches!(done.outcome, Final::Applied(_)))
                .filter_map(|done| {
                    let hash = hashes.remove(&done.change.key).flatten();
                    match (done.change.op, hash) {
                        (Op::Delete, hash) => Some((done.change.key.clone(), hash)),
                        (_, Some(hash)) => Some((done.change.key.clone(), Some(hash))),
                        (_, None) => None,
                    }
                })
                .collect();
            plan.delivered(self.source.as_ref(), &self.sync_id, &delivered).await;
        }
        if applied + rejected > 0 && !matches!(result.failure, Some(BatchFailure::Commit(_))) {
            debug!(sync = %self.sync_id, applied, rejected, "Committed batch.");
            let _ = self.progress.send(ProgressEvent::BatchCommitted { applied, rejected });
        }
        result
    }

    /// Tells the observers the outcomes the state now holds: those committed with their write
    /// (exactly-once), and the others when the batch's commit (`committed`) succeeded.
    fn observe(&self, finals: &[Done], committed: bool, consent: &std::collections::HashSet<Key>) {
        if self.observers.is_empty() {
            return;
        }
        let record_id = |memo: Option<&Memo>| {
            if self.record_ids { memo.and_then(Memo::as_str).map(str::to_owned) } else { None }
        };
        let records = finals
            .iter()
            .filter(|done| done.committed || committed)
            .filter_map(|Done { change, outcome, .. }| {
                let (key, op) = (change.key.clone(), Some(change.op));
                Some(match outcome {
                    Final::Applied(receipt) => ObservedRecord::new(key, op, RecordOutcome::Applied)
                        .with_effect(receipt.effect)
                        .with_record_id(record_id(receipt.memo.as_ref().or(change.memo.as_ref()))),
                    Final::Rejected { reason } => ObservedRecord::new(key, op, RecordOutcome::Rejected)
                        .with_reason(reason.as_str())
                        .with_record_id(record_id(change.memo.as_ref())),
                    Final::Superseded { reason } => ObservedRecord::new(key, op, RecordOutcome::Superseded)
                        .with_reason(reason.as_str())
                        .with_record_id(record_id(change.memo.as_ref())),
                    Final::Undelivered => return None,
                })
            })
            .collect::<Vec<_>>();
        // A delete made because consent was withdrawn is audited beside its own outcome.
        let removed = finals.iter().filter(|done| done.committed || committed).filter(|done| {
            matches!(done.outcome, Final::Applied(_))
                && done.change.op == Op::Delete
                && consent.contains(&done.change.key)
        });
        let mut records = records;
        records.extend(removed.map(|done| {
            let outcome = RecordOutcome::Suppressed { outcome: SuppressionOutcome::Removed };
            ObservedRecord::new(done.change.key.clone(), Some(Op::Delete), outcome).with_reason("consent withdrawn")
        }));
        self.observers.outcomes(&self.sync_id, self.run.run_id, records);
    }

    /// One write of `batch` (after `begin_run`): through the exactly-once interface when the
    /// destination has one, committing the outcomes with it.
    async fn attempt(
        &self,
        batch: &ChangeBatch,
        round: u32,
        priors: &Priors,
        transactional: Option<&dyn crate::destination::TransactionalState>,
    ) -> Result<WriteOutcome, CommittedWriteError> {
        match transactional {
            None => self.destination.write(batch).await.map_err(CommittedWriteError::Destination),
            Some(transactional) => {
                let now = unix_secs(std::time::SystemTime::now());
                let commit_for = |written: &WriteOutcome| {
                    let finals =
                        batch.changes.iter().zip(&written.outcomes).enumerate().filter_map(|(i, (change, outcome))| {
                            match outcome {
                                ChangeOutcome::Applied => {
                                    Some((change, Settled::Applied(written.receipt(i).and_then(|r| r.memo.as_ref()))))
                                }
                                outcome if self.retry_rejection(outcome, round) => None,
                                ChangeOutcome::Rejected { reason, .. } => {
                                    Some((change, Settled::Refused(reason.as_str().into())))
                                }
                                ChangeOutcome::Superseded { reason } => {
                                    Some((change, Settled::Refused(format!("superseded: {reason}").into())))
                                }
                            }
                        });
                    self.commit_of(finals, priors, now)
                };
                transactional.write_committing(batch, &self.lease, &commit_for).await
            }
        }
    }

    /// Calls the destination's `begin_run` once, before the run's first write; a failure is
    /// tried again before the next write.
    async fn begin_run(&self) -> Result<(), DestinationError> {
        let mut begun = self.begun.lock().await;
        if !*begun {
            self.destination.begin_run(&self.run).await?;
            *begun = true;
        }
        Ok(())
    }

    /// Whether `begin_run` was called with success.
    pub(crate) async fn has_begun(&self) -> bool {
        *self.begun.lock().await
    }

    /// Fills each change's memo from the state, for a destination that keeps memos. A key
    /// never planned before (an insert on version 0 with nothing pending) has none.
    async fn fill_memos(&self, outgoing: &mut [Outgoing]) -> Result<(), StateError> {
        let known: Vec<usize> = (0..outgoing.len())
            .filter(|&i| {
                let o = &outgoing[i];
                o.change.version > 0 || o.prior.is_some() || o.change.op != Op::Insert
            })
            .collect();
        if known.is_empty() {
            return Ok(());
        }
        let keys: Vec<Key> = known.iter().map(|&i| outgoing[i].change.key.clone()).collect();
        let entries = self.state.get(&self.sync_id, &keys).await?;
        for (i, entry) in known.into_iter().zip(entries) {
            outgoing[i].change.memo = entry.and_then(|e| e.memo);
        }
        Ok(())
    }

    /// The state commit recording how changes settled.
    fn commit_of<'c>(
        &self,
        finals: impl IntoIterator<Item = (&'c Change, Settled<'c>)>,
        priors: &Priors,
        now: u64,
    ) -> StateCommit {
        let mut commit = StateCommit { fingerprint_algorithm: Some(self.algorithm), ..StateCommit::default() };
        for (change, settled) in finals {
            match settled {
                Settled::Applied(memo) => {
                    let fingerprint = (change.op != Op::Delete).then_some(change.fingerprint);
                    let (key, version) = (change.key.clone(), change.version + 1);
                    // A new memo replaces the key's; none keeps it; a delete clears it.
                    let memo = match change.op {
                        Op::Delete => memo.cloned(),
                        _ => memo.or(change.memo.as_ref()).cloned(),
                    };
                    commit.applied.push(SnapshotEntry { key, fingerprint, version, pending: None, memo });
                }
                Settled::Refused(reason) => {
                    let (attempts, first_rejected_at) = self.prior.carried(&change.key, now, |p| {
                        p.stage == RejectionStage::Destination
                            && p.fingerprint == Some(change.fingerprint)
                            && p.op == Some(change.op)
                    });
                    commit.settled.push((change.key.clone(), priors.get(&change.key).copied().flatten()));
                    commit.rejected.push(RejectedEntry {
                        key: change.key.clone(),
                        stage: RejectionStage::Destination,
                        op: Some(change.op),
                        fingerprint: Some(change.fingerprint),
                        version: change.version,
                        reason: reason.as_ref().to_owned(),
                        attempts,
                        record: change.record.clone(),
                        first_rejected_at,
                        last_rejected_at: now,
                    });
                }
            }
        }
        commit
    }

    /// Writes `changes`, bisecting on `InvalidBatch` until the refused records stand alone,
    /// and retrying retryable rejections; returns every change with its final outcome.
    fn write_bisecting<'a>(
        &'a self,
        changes: Vec<Change>,
        priors: &'a Priors,
        result: &'a mut BatchResult,
    ) -> BoxFuture<'a, Vec<Done>> {
        Box::pin(async move {
            let mut done = Vec::with_capacity(changes.len());
            let mut pending = changes;
            let mut rejection_rounds = 0;
            while !pending.is_empty() {
                if result.failure.is_some() {
                    done.extend(pending.drain(..).map(Done::undelivered));
                    break;
                }
                rejection_rounds += 1;
                let (changes, written) = self.write_with_retries(pending, rejection_rounds, priors, result).await;
                pending = Vec::new();
                match written {
                    Ok((written, committed)) => {
                        let mut receipts = written.receipts.into_iter();
                        for (change, outcome) in changes.into_iter().zip(written.outcomes) {
                            let receipt = receipts.next().unwrap_or_default();
                            let outcome = match outcome {
                                ChangeOutcome::Applied => Final::Applied(receipt),
                                outcome if self.retry_rejection(&outcome, rejection_rounds) => {
                                    pending.push(change);
                                    continue;
                                }
                                ChangeOutcome::Rejected { reason, .. } => Final::Rejected { reason },
                                ChangeOutcome::Superseded { reason } => {
                                    Final::Superseded { reason: format!("superseded: {reason}") }
                                }
                            };
                            done.push(Done { change, outcome, committed });
                        }
                        if !pending.is_empty() {
                            result.retries += 1;
                            let delay =
                                backoff(rejection_rounds, self.options.initial_backoff, self.options.max_backoff);
                            if !self.sleep(delay).await {
                                done.extend(pending.drain(..).map(Done::undelivered));
                            }
                        }
                    }
                    Err(WriteFailure::Invalid(reason)) if changes.len() == 1 => {
                        done.extend(changes.into_iter().map(|change| Done {
                            change,
                            outcome: Final::Rejected { reason: reason.clone() },
                            committed: false,
                        }));
                    }
                    Err(WriteFailure::Invalid(_)) => {
                        let mut left = changes;
                        let right = left.split_off(left.len() / 2);
                        debug!(sync = %self.sync_id, left = left.len(), right = right.len(), "Bisecting refused batch.");
                        done.extend(self.write_bisecting(left, priors, result).await);
                        done.extend(self.write_bisecting(right, priors, result).await);
                    }
                    Err(WriteFailure::Exhausted(reason)) => {
                        result.failure = Some(BatchFailure::Exhausted(reason));
                        done.extend(changes.into_iter().map(Done::undelivered));
                    }
                    Err(WriteFailure::Fatal(kind, reason)) => {
                        result.failure = Some(BatchFailure::Fatal(kind, reason));
                        done.extend(changes.into_iter().map(Done::undelivered));
                    }
                    Err(WriteFailure::Commit(error)) => {
                        result.failure = Some(BatchFailure::Commit(error));
                        done.extend(changes.into_iter().map(Done::undelivered));
                    }
                    Err(WriteFailure::RateLimited(retry_after)) => {
                        result.failure = Some(BatchFailure::RateLimited(retry_after));
                        done.extend(changes.into_iter().map(Done::undelivered));
                    }
                    Err(WriteFailure::QuotaExhausted { reason, resets_in }) => {
                        result.failure = Some(BatchFailure::QuotaExhausted { reason, resets_in });
                        done.extend(changes.into_iter().map(Done::undelivered));
                    }
                    Err(WriteFailure::LeaseLapsed) => {
                        result.failure = Some(BatchFailure::LeaseLapsed);
                        done.extend(changes.into_iter().map(Done::undelivered));
                    }
                    Err(WriteFailure::Stopped) => {
                        done.extend(changes.into_iter().map(Done::undelivered));
                    }
                }
            }
            done
        })
    }

    /// Whether a refusal in rejection round `round` is retried in this run rather than final.
    fn retry_rejection(&self, outcome: &ChangeOutcome, round: u32) -> bool {
        matches!(outcome, ChangeOutcome::Rejected { retryable: true, .. }) && round < self.options.max_attempts
    }

    /// One write (rejection round `round`), retried on `Transient` and `RateLimited`. Hands
    /// the changes back, with their outcomes and whether the final ones were committed with
    /// the write (an exactly-once destination).
    async fn write_with_retries(
        &self,
        changes: Vec<Change>,
        round: u32,
        priors: &Priors,
        result: &mut BatchResult,
    ) -> (Vec<Change>, Result<(WriteOutcome, bool), WriteFailure>) {
        let batch = ChangeBatch { sync_id: self.sync_id.clone(), schema: self.schema.get(), changes };
        let mut transient = 0u32;
        let mut limited = 0u32;
        let outcome = loop {
            if self.stop.is_cancelled() {
                break Err(WriteFailure::Stopped);
            }
            let waiting = Instant::now();
            tokio::select! {
                _ = self.pause.wait() => {}
                () = self.stop.cancelled() => break Err(WriteFailure::Stopped),
            }
            if let Some(limiter) = &self.limiter {
                tokio::select! {
                    _ = limiter.acquire() => {}
                    () = self.stop.cancelled() => break Err(WriteFailure::Stopped),
                }
            }
            if let Some(shared) = &self.shared {
                let reserved = tokio::select! {
                    reserved = shared.acquire() => reserved,
                    () = self.stop.cancelled() => break Err(WriteFailure::Stopped),
                };
                if let Err(error) = reserved {
                    // Without the shared schedule the write cannot be paced with the other
                    // runners: it waits and tries again, as after a transient failure.
                    transient += 1;
                    let error = format!("reserving a request of the shared quota: {error}");
                    if transient >= self.options.max_attempts {
                        warn!(sync = %self.sync_id, attempts = transient, %error, "Giving up on batch.");
                        break Err(WriteFailure::Exhausted(format!("{error} (after {transient} attempts)")));
                    }
                    let delay = backoff(transient, self.options.initial_backoff, self.options.max_backoff);
                    warn!(sync = %self.sync_id, attempt = transient, delay_ms = delay.as_millis() as u64, %error, "Retrying batch.");
                    result.retries += 1;
                    if !self.sleep(delay).await {
                        break Err(WriteFailure::Stopped);
                    }
                    continue;
                }
            }
            match self.quota.check() {
                Gate::Go => {}
                Gate::WaitUntil(at) => {
                    let wait = at.saturating_duration_since(Instant::now());
                    if wait > self.options.max_rate_limit_wait {
                        break Err(WriteFailure::RateLimited(wait));
                    }
                    debug!(sync = %self.sync_id, wait_ms = wait.as_millis() as u64, "The destination's quota window is spent; waiting for it to reset.");
                    result.rate_limit_waits += 1;
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = self.stop.cancelled() => break Err(WriteFailure::Stopped),
                    }
                    self.metrics.waited(self.waits.record(waiting, Instant::now()));
                    continue;
                }
                Gate::Exhausted { reason, resets_in } => {
                    warn!(sync = %self.sync_id, %reason, "The destination's allowance is spent; ending the run.");
                    break Err(WriteFailure::QuotaExhausted { reason, resets_in });
                }
            }
            self.metrics.waited(self.waits.record(waiting, Instant::now()));
            // Prove the lease by the local clock right before writing (see `lease`).
            if !self.lease_deadline.holds() {
                self.quota.done(None);
                warn!(sync = %self.sync_id, "The lease may have lapsed; not writing.");
                break Err(WriteFailure::LeaseLapsed);
            }
            let transactional = self.destination.transactional_state();
            let timeout = self.options.write_timeout;
            let sent = Instant::now();
            let mut elapsed = false;
            let written = match tokio::time::timeout(timeout, self.begin_run()).await {
                Ok(Err(error)) => Err(CommittedWriteError::Destination(error)),
                Err(_) => {
                    elapsed = true;
                    Err(timed_out(timeout))
                }
                Ok(Ok(())) => {
                    match tokio::time::timeout(timeout, self.attempt(&batch, round, priors, transactional)).await {
                        Ok(written) => written,
                        Err(_) => {
                            elapsed = true;
                            Err(timed_out(timeout))
                        }
                    }
                }
            };
            let answered = request_outcome(&written, elapsed, batch.changes.len());
            self.metrics.request(answered, batch.changes.len(), sent.elapsed());
            let reported = match &written {
                Ok(out) => {
                    if let Some(audience) = &out.audience {
                        let mut sum = self.audience.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        sum.get_or_insert_with(AudienceReport::default).merge((**audience).clone());
                    }
                    out.quota
                }
                Err(_) => None,
            };
            if let Some(quota) = &reported {
                self.metrics.quota(quota);
            }
            self.quota.done(reported);
            let written = match written {
                Ok(out) => Ok(out),
                Err(CommittedWriteError::Destination(error)) => Err(error),
                Err(CommittedWriteError::State(error)) => {
                    warn!(sync = %self.sync_id, %error, "Committing the batch with its state failed.");
                    break Err(WriteFailure::Commit(error));
                }
            };
            match written {
                Ok(out)
                    if out.outcomes.len() == batch.changes.len()
                        && (out.receipts.is_empty() || out.receipts.len() == batch.changes.len()) =>
                {
                    result.writes += 1;
                    break Ok((out, transactional.is_some()));
                }
                Ok(out) => {
                    break Err(WriteFailure::Fatal(
                        FailureKind::Destination,
                        format!(
                            "destination `{}` answered {} outcomes and {} receipts for a batch of {} changes; a destination must answer one per change",
                            self.destination.name(),
                            out.outcomes.len(),
                            out.receipts.len(),
                            batch.changes.len()
                        ),
                    ));
                }
                Err(error @ DestinationError::Transient { .. }) => {
                    transient += 1;
                    if transient >= self.options.max_attempts {
                        warn!(sync = %self.sync_id, attempts = transient, %error, "Giving up on batch.");
                        break Err(WriteFailure::Exhausted(format!("{error} (after {transient} attempts)")));
                    }
                    let delay = backoff(transient, self.options.initial_backoff, self.options.max_backoff);
                    warn!(sync = %self.sync_id, attempt = transient, delay_ms = delay.as_millis() as u64, %error, "Retrying batch.");
                    result.retries += 1;
                    let _ = self.progress.send(ProgressEvent::Retrying { attempt: transient + 1, delay });
                    if !self.sleep(delay).await {
                        break Err(WriteFailure::Stopped);
                    }
                }
                Err(DestinationError::RateLimited { retry_after }) => {
                    limited += 1;
                    result.rate_limit_waits += 1;
                    // A rate limit is the destination working as designed: allow more of them
                    // than transient failures before giving up.
                    if limited >= self.options.max_attempts.saturating_mul(5) {
                        break Err(WriteFailure::Exhausted(format!(
                            "destination rate limit persisted over {limited} attempts"
                        )));
                    }
                    let delay = retry_after
                        .unwrap_or_else(|| backoff(limited, self.options.initial_backoff, self.options.max_backoff));
                    if delay > self.options.max_rate_limit_wait {
                        warn!(
                            sync = %self.sync_id,
                            retry_after_s = delay.as_secs(),
                            "The destination asks to wait longer than the sync allows; ending the run."
                        );
                        break Err(WriteFailure::RateLimited(delay));
                    }
                    debug!(sync = %self.sync_id, attempt = limited, delay_ms = delay.as_millis() as u64, "Rate limited; pausing every worker.");
                    result.retries += 1;
                    self.pause.extend(delay);
                    let _ = self.progress.send(ProgressEvent::Retrying { attempt: limited + 1, delay });
                }
                Err(DestinationError::InvalidBatch { message }) => break Err(WriteFailure::Invalid(message)),
                Err(DestinationError::QuotaExhausted { message, resets_in }) => {
                    warn!(sync = %self.sync_id, reason = %message, "The destination's allowance is spent; ending the run.");
                    break Err(WriteFailure::QuotaExhausted { reason: message, resets_in });
                }
                Err(error) => {
                    warn!(sync = %self.sync_id, %error, "Destination failed for good.");
                    let kind = match error {
                        DestinationError::Unauthorized { .. } => FailureKind::Unauthorized,
                        _ => FailureKind::Destination,
                    };
                    break Err(WriteFailure::Fatal(kind, error.to_string()));
                }
            }
        };
        (batch.changes, outcome)
    }

    /// Sleeps unless the run stops first; returns whether the sleep completed.
    async fn sleep(&self, delay: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = self.stop.cancelled() => false,
        }
    }
}

/// How a batch's delivery ended, for its span: as a write call's outcome (`ok`, `partial`,
/// `transient` when retries ran out, `rate_limited`, `quota_exhausted`, `unauthorized`,
/// `failed`), or `stopped` (the run stopped before all of it was written), `lease_lapsed`,
/// `state_commit_failed`.
fn batch_outcome(result: &BatchResult) -> &'static str {
    match &result.failure {
        None if result.undelivered > 0 => "stopped",
        None if result.rejected.total() + result.superseded > 0 => "partial",
        None => "ok",
        Some(BatchFailure::Exhausted(_)) => "transient",
        Some(BatchFailure::Fatal(FailureKind::Unauthorized, _)) => "unauthorized",
        Some(BatchFailure::Fatal(..)) => "failed",
        Some(BatchFailure::Commit(_)) => "state_commit_failed",
        Some(BatchFailure::RateLimited(_)) => "rate_limited",
        Some(BatchFailure::QuotaExhausted { .. }) => "quota_exhausted",
        Some(BatchFailure::LeaseLapsed) => "lease_lapsed",
    }
}

/// How a write call ended, as the outcome label of
/// [`DESTINATION_REQUESTS_TOTAL`](crate::metrics::DESTINATION_REQUESTS_TOTAL): `ok` (every
/// change applied), `partial` (some refused), `timeout` (no answer within the write
/// timeout), `transient`, `rate_limited`, `quota_exhausted`, `unauthorized`, or `failed` (a
/// refused batch, a fatal error, an answer of the wrong length, or an exactly-once write whose
/// state commit failed).
fn request_outcome(written: &Result<WriteOutcome, CommittedWriteError>, elapsed: bool, changes: usize) -> &'static str {
    match written {
        _ if elapsed => "timeout",
        Ok(out) if out.outcomes.len() != changes || !(out.receipts.is_empty() || out.receipts.len() == changes) => {
            "failed"
        }
        Ok(out) if out.outcomes.iter().all(|o| matches!(o, ChangeOutcome::Applied)) => "ok",
        Ok(_) => "partial",
        Err(CommittedWriteError::Destination(error)) => match error {
            DestinationError::Transient { .. } => "transient",
            DestinationError::RateLimited { .. } => "rate_limited",
            DestinationError::QuotaExhausted { .. } => "quota_exhausted",
            DestinationError::Unauthorized { .. } => "unauthorized",
            DestinationError::InvalidBatch { .. } | DestinationError::Fatal { .. } => "failed",
        },
        Err(CommittedWriteError::State(_)) => "failed",
    }
}

/// A write (or the run's `begin_run`) that did not answer within `timeout`: transient, sent
/// again under the same idempotency keys.
fn timed_out(timeout: Duration) -> CommittedWriteError {
    CommittedWriteError::Destination(DestinationError::Transient {
        message: format!("no answer within the write timeout of {timeout:?}"),
        source: None,
    })
}
