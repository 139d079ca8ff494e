//! Fault injection: a destination wrapper that refuses, fails, throttles, stalls and crashes
//! on command.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::change::{ChangeBatch, ChangeOutcome, WriteOutcome};
use crate::destination::{CommitFor, CommittedWriteError, Destination, DestinationCapabilities, TransactionalState};
use crate::error::DestinationError;
use crate::key::Key;
use crate::state::Lease;

#[derive(Default)]
struct Faults {
    reject: HashMap<Key, String>,
    supersede: HashSet<Key>,
    retryable_reject: HashMap<Key, u32>,
    invalid_batch_keys: HashSet<Key>,
    transient_on: BTreeSet<u64>,
    transient_after_apply_on: BTreeSet<u64>,
    rate_limited_on: BTreeMap<u64, Option<Duration>>,
    fatal_on: BTreeSet<u64>,
    latency: Duration,
    crash_after_applied: Option<u64>,
    calls: u64,
    applied: u64,
    crashed: bool,
}

/// Wraps a destination and injects faults into its writes.
///
/// Write calls are numbered from 1 in the order they reach the wrapper (retries included).
/// A clone shares the same faults, so a test keeps one to steer and to
/// [`lift`](FaultyDestination::lift) the faults while the sync owns another.
#[derive(Clone)]
pub struct FaultyDestination<D> {
    inner: D,
    faults: Arc<Mutex<Faults>>,
    crashed: Arc<Notify>,
}

impl<D> std::fmt::Debug for FaultyDestination<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyDestination").finish_non_exhaustive()
    }
}

impl<D: Destination> FaultyDestination<D> {
    /// Wraps `inner`, with no fault yet.
    pub fn new(inner: D) -> Self {
        Self { inner, faults: Arc::default(), crashed: Arc::new(Notify::new()) }
    }

    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Refuses every change of `key` with `reason` (the rest of its batch is applied).
    pub fn reject_key(&self, key: Key, reason: &str) -> &Self {
        self.faults().reject.insert(key, reason.to_owned());
        self
    }

    /// Answers every change of `key` as superseded: the destination holds a newer version
    /// (what a version guard answers to a late or reset writer).
    pub fn supersede_key(&self, key: Key) -> &Self {
        self.faults().supersede.insert(key);
        self
    }

    /// Refuses the next `times` changes of `key` as retryable.
    pub fn reject_key_retryable(&self, key: Key, times: u32) -> &Self {
        self.faults().retryable_reject.insert(key, times);
        self
    }

    /// Refuses, as `InvalidBatch`, every batch that holds `key` (the runner must bisect).
    pub fn invalid_batch_key(&self, key: Key) -> &Self {
        self.faults().invalid_batch_keys.insert(key);
        self
    }

    /// Fails write call `n` as `Transient` without applying anything.
    pub fn fail_write(&self, n: u64) -> &Self {
        self.faults().transient_on.insert(n);
        self
    }

    /// Applies write call `n`, then reports it as `Transient` (a timeout after sending).
    pub fn fail_write_after_apply(&self, n: u64) -> &Self {
        self.faults().transient_after_apply_on.insert(n);
        self
    }

    /// Answers write call `n` with `RateLimited` (HTTP 429) and this `Retry-After`.
    pub fn rate_limit_write(&self, n: u64, retry_after: Option<Duration>) -> &Self {
        self.faults().rate_limited_on.insert(n, retry_after);
        self
    }

    /// Fails write call `n` as `Fatal`.
    pub fn fatal_write(&self, n: u64) -> &Self {
        self.faults().fatal_on.insert(n);
        self
    }

    /// Delays every write by `latency` (on tokio's clock).
    pub fn latency(&self, latency: Duration) -> &Self {
        self.faults().latency = latency;
        self
    }

    /// After `n` more changes are applied, stops answering: the write that reaches `n`
    /// applies its first changes up to `n` and then never returns, as a process that
    /// dies between the destination's acknowledgement and our state commit. Await
    /// [`crashed`](Self::crashed) and drop the run's future to complete the crash.
    pub fn crash_after_applied(&self, n: u64) -> &Self {
        let mut f = self.faults();
        f.crash_after_applied = Some(f.applied + n);
        self
    }

    /// Resolves once the crash point is reached.
    pub async fn crashed(&self) {
        loop {
            let notified = self.crashed.notified();
            if self.faults().crashed {
                return;
            }
            notified.await;
        }
    }

    /// Removes every fault; later writes pass straight through.
    pub fn lift(&self) {
        let mut f = self.faults();
        let (calls, applied) = (f.calls, f.applied);
        *f = Faults { calls, applied, ..Faults::default() };
    }

    /// Write calls so far.
    pub fn calls(&self) -> u64 {
        self.faults().calls
    }

    /// The wrapped destination.
    pub fn inner(&self) -> &D {
        &self.inner
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<D: Destination> Destination for FaultyDestination<D> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> DestinationCapabilities {
        self.inner.capabilities()
    }

    async fn check(&self) -> Result<(), DestinationError> {
        self.inner.check().await
    }

    async fn write(&self, batch: &ChangeBatch) -> Result<WriteOutcome, DestinationError> {
        let plan = self.plan(batch, true).await?;
        let sub = plan.sub_batch(batch);
        let inner_out = if sub.changes.is_empty() { WriteOutcome::default() } else { self.inner.write(&sub).await? };
        self.answer(plan, inner_out).await
    }

    fn check_schema(&self, schema: &crate::schema::Schema) -> Result<(), DestinationError> {
        self.inner.check_schema(schema)
    }

    async fn validate(&self, batch: &ChangeBatch) -> Result<Option<WriteOutcome>, DestinationError> {
        self.inner.validate(batch).await
    }

    fn intent_memo(
        &self,
        schema: &crate::schema::Schema,
        change: &crate::change::Change,
    ) -> Option<crate::change::Memo> {
        self.inner.intent_memo(schema, change)
    }

    async fn begin_run(&self, run: &crate::destination::RunInfo) -> Result<(), DestinationError> {
        self.inner.begin_run(run).await
    }

    async fn finish_run(
        &self,
        run: &crate::destination::RunInfo,
        end: &crate::destination::RunEnd,
    ) -> Result<crate::destination::DestinationRunReport, DestinationError> {
        self.inner.finish_run(run, end).await
    }

    fn transactional_state(&self) -> Option<&dyn TransactionalState> {
        self.inner.transactional_state().map(|_| self as &dyn TransactionalState)
    }

    /// Reads are not faulted: what the inner destination holds is what it holds.
    fn read_back(&self) -> Option<&dyn crate::destination::ReadBack> {
        self.inner.read_back()
    }
}

/// What the faults decided about one write call.
struct Plan {
    call: u64,
    /// The injected outcomes; `None` for the changes that reach the inner destination.
    outcomes: Vec<Option<ChangeOutcome>>,
    /// The changes that reach the inner destination, by position.
    pass: Vec<usize>,
    crashing: bool,
    after_apply_failure: bool,
}

impl Plan {
    fn sub_batch(&self, batch: &ChangeBatch) -> ChangeBatch {
        ChangeBatch {
            sync_id: batch.sync_id.clone(),
            schema: batch.schema.clone(),
            changes: self.pass.iter().map(|&i| batch.changes[i].clone()).collect(),
        }
    }

    /// The answer for the whole batch, given the inner destination's for the changes it got
    /// (its receipts and quota carried over).
    fn merge(&self, inner: &WriteOutcome) -> WriteOutcome {
        let mut outcomes = self.outcomes.clone();
        for (&i, outcome) in self.pass.iter().zip(&inner.outcomes) {
            outcomes[i] = Some(outcome.clone());
        }
        let mut merged = WriteOutcome::from_outcomes(
            outcomes
                .into_iter()
                .map(|o| o.unwrap_or_else(|| ChangeOutcome::rejected("destination answered no outcome")))
                .collect(),
        );
        if !inner.receipts.is_empty() {
            merged.receipts = vec![crate::change::Receipt::default(); merged.outcomes.len()];
            for (&i, receipt) in self.pass.iter().zip(&inner.receipts) {
                merged.receipts[i] = receipt.clone();
            }
        }
        merged.quota = inner.quota;
        merged
    }
}

impl<D: Destination> FaultyDestination<D> {
    /// Applies latency and decides the call's faults under one lock. `cut_at_crash` stops the
    /// changes passed on at the crash point (a transactional write applies all or none, so
    /// it is not cut).
    async fn plan(&self, batch: &ChangeBatch, cut_at_crash: bool) -> Result<Plan, DestinationError> {
        let (call, latency) = {
            let mut f = self.faults();
            f.calls += 1;
            (f.calls, f.latency)
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let mut outcomes: Vec<Option<ChangeOutcome>> = vec![None; batch.changes.len()];
        let mut f = self.faults();
        if f.transient_on.remove(&call) {
            return Err(DestinationError::transient(format!("injected transient failure on write {call}")));
        }
        if let Some(retry_after) = f.rate_limited_on.remove(&call) {
            return Err(DestinationError::RateLimited { retry_after });
        }
        if f.fatal_on.remove(&call) {
            return Err(DestinationError::fatal(format!("injected fatal failure on write {call}")));
        }
        if batch.changes.iter().any(|c| f.invalid_batch_keys.contains(&c.key)) {
            return Err(DestinationError::InvalidBatch { message: "injected: batch holds a refused record".into() });
        }
        for (slot, change) in outcomes.iter_mut().zip(&batch.changes) {
            if let Some(reason) = f.reject.get(&change.key) {
                *slot = Some(ChangeOutcome::rejected(reason.clone()));
            } else if f.supersede.contains(&change.key) {
                *slot = Some(ChangeOutcome::Superseded { reason: "injected: the destination holds version 9".into() });
            } else if let Some(left) = f.retryable_reject.get_mut(&change.key)
                && *left > 0
            {
                *left -= 1;
                *slot = Some(ChangeOutcome::Rejected { reason: "injected: try again".into(), retryable: true });
            }
        }
        let after_apply_failure = f.transient_after_apply_on.remove(&call);
        let crash_at = f.crash_after_applied.map(|n| n.saturating_sub(f.applied));
        let mut pass: Vec<usize> = (0..batch.changes.len()).filter(|&i| outcomes[i].is_none()).collect();
        let crashing = crash_at.is_some_and(|left| (left as usize) <= pass.len());
        if let Some(left) = crash_at
            && cut_at_crash
        {
            pass.truncate(left as usize);
        }
        Ok(Plan { call, outcomes, pass, crashing, after_apply_failure })
    }

    /// Counts what the inner destination applied, crashes or fails as planned, and answers.
    async fn answer(&self, plan: Plan, inner: WriteOutcome) -> Result<WriteOutcome, DestinationError> {
        let applied = inner.outcomes.iter().filter(|o| **o == ChangeOutcome::Applied).count() as u64;
        {
            let mut f = self.faults();
            f.applied += applied;
            if plan.crashing {
                f.crashed = true;
                f.crash_after_applied = None;
            }
        }
        if plan.crashing {
            self.crashed.notify_waiters();
            // Never answer: the runner sees neither an acknowledgement nor an error.
            std::future::pending::<()>().await;
        }
        if plan.after_apply_failure {
            let call = plan.call;
            return Err(DestinationError::transient(format!("injected timeout after write {call} was applied")));
        }
        Ok(plan.merge(&inner))
    }
}

/// With an exactly-once inner destination the faults apply to its transactional writes: a
/// crash commits the whole write (rows and state) and then never answers, and a timeout
/// after applying commits it and then fails.
#[async_trait]
impl<D: Destination> TransactionalState for FaultyDestination<D> {
    fn state_store_name(&self) -> &str {
        self.inner.transactional_state().map_or("", |t| t.state_store_name())
    }

    fn state_store(&self) -> Option<Arc<dyn crate::state::StateStore>> {
        self.inner.transactional_state().and_then(|t| t.state_store())
    }

    async fn write_committing(
        &self,
        batch: &ChangeBatch,
        lease: &Lease,
        commit_for: &CommitFor<'_>,
    ) -> Result<WriteOutcome, CommittedWriteError> {
        let Some(inner) = self.inner.transactional_state() else {
            return Err(DestinationError::fatal("the wrapped destination is not exactly-once").into());
        };
        let plan = self.plan(batch, false).await?;
        let sub = plan.sub_batch(batch);
        // The runner's commit covers the whole batch: the injected outcomes and the inner's.
        let merged = |inner: &WriteOutcome| commit_for(&plan.merge(inner));
        let inner_out = inner.write_committing(&sub, lease, &merged).await?;
        Ok(self.answer(plan, inner_out).await?)
    }
}
