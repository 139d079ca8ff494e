//! Outcome observers: each record's committed outcome, and each run's report, handed to the host.
//!
//! A host that wants to know, per record, what reached the destination and why a record did
//! not — to write it to an audit table, to feed a dashboard, to notify the owner of a refused
//! row — attaches an [`OutcomeObserver`] to the sync with
//! [`SyncBuilder::observer`](crate::SyncBuilder::observer). The runner hands it the outcomes
//! of every batch once they are committed, and the report of every run once it is recorded.
//!
//! # The contract
//! - **Committed facts only.** A batch's outcomes reach the observer after the state commit
//!   that records them has succeeded: a destination's answers after the batch's commit (or,
//!   for an exactly-once destination, after the write that committed them), a transform's
//!   refusals after the commit that keeps them, repeated keys after the run's final commit.
//!   A run that crashes, or whose commit fails, never shows the observer an outcome the
//!   state does not hold; the next run sends those changes again and reports them then.
//!   Refusals by the source (an unreadable row with a known key) are kept nowhere, and are
//!   reported as the reading side meets them.
//! - **Keys, never values.** A record is named by its [`Key`]; no column value passes
//!   through the hook. The reason is the refuser's text, which names fields and rules, never
//!   values.
//! - **Off the delivery path.** The methods are called on the runner's tasks and must
//!   return at once: hand the batch to a queue (the [`Arc`] makes that cheap) and do any
//!   I/O elsewhere. An observer that blocks slows delivery down; one that panics is caught,
//!   logged and skipped, and delivery goes on.
//! - **What is not reported.** Changes left undelivered (a run that stopped early sends them
//!   next run), unchanged records, dry runs' planned or checked changes (only their
//!   report), and records refused before their key could be read (counted in the report).
//!
//! # Example
//! An observer that counts refusals, attached to a sync:
//! ```
//! # use std::sync::{Arc, Mutex};
//! # use rse_core::{*, memory::*};
//! use rse_core::observe::{ObservedBatch, OutcomeObserver, RecordOutcome};
//!
//! #[derive(Default)]
//! struct Refusals(Mutex<Vec<(Key, String)>>);
//!
//! impl OutcomeObserver for Refusals {
//!     fn on_outcomes(&self, batch: Arc<ObservedBatch>) {
//!         // Quick and non-blocking: a real observer would push the batch onto a queue.
//!         let mut seen = self.0.lock().unwrap();
//!         for record in batch.records.iter().filter(|r| r.outcome != RecordOutcome::Applied) {
//!             seen.push((record.key.clone(), record.reason.clone().unwrap_or_default()));
//!         }
//!     }
//!     fn on_run(&self, report: &SyncReport) {
//!         assert!(report.status.is_complete());
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let schema = Schema::new(vec![Field::required("id", DataType::Int)], &["id"])?.into_arc();
//! let rows = (1..=3).map(|i| Record::new(vec![Value::Int(i)])).collect();
//! let refusals = Arc::new(Refusals::default());
//! let sync = SyncJob::builder("observed")
//!     .source(MemorySource::new(schema, rows))
//!     .destination(MemoryDestination::new())
//!     .state(MemoryStateStore::new())
//!     .observer(refusals.clone())
//!     .build()
//!     .await?;
//! sync.run().await?;
//! assert!(refusals.0.lock().unwrap().is_empty());
//! # Ok(()) }
//! ```

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::SystemTime;

use tracing::warn;

use crate::change::{Effect, Op};
use crate::key::Key;
use crate::report::SyncReport;
use crate::state::RejectionStage;
use crate::suppression::SuppressionOutcome;

/// How a record's part in a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecordOutcome {
    /// The destination applied the change.
    Applied,
    /// The destination refused the change.
    Rejected,
    /// The destination holds a newer version of the record; nothing was written.
    Superseded,
    /// The record was refused before it reached the destination: by the source (an
    /// unreadable row), a transform (validation, a sensitive field) or its key (repeated).
    Refused {
        /// Where it was refused: never [`RejectionStage::Destination`].
        stage: RejectionStage,
    },
    /// Consent for the key was withdrawn (see [`suppression`](crate::suppression)): the
    /// record was kept out, the key removed from the destination (beside the applied delete's
    /// own outcome), or left there by a destination that cannot delete.
    Suppressed {
        /// What the run did about it.
        outcome: SuppressionOutcome,
    },
}

impl RecordOutcome {
    /// `applied`, `rejected`, `superseded`, `refused` or `suppressed`.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordOutcome::Applied => "applied",
            RecordOutcome::Rejected => "rejected",
            RecordOutcome::Superseded => "superseded",
            RecordOutcome::Refused { .. } => "refused",
            RecordOutcome::Suppressed { .. } => "suppressed",
        }
    }

    /// Where the record's part ended: the destination, or the stage that refused it.
    pub fn stage(self) -> RejectionStage {
        match self {
            RecordOutcome::Refused { stage } => stage,
            _ => RejectionStage::Destination,
        }
    }

    /// The [stage](Self::stage)'s name: `destination`, `source`, `transform` or `key`; and
    /// `consent` for a suppression.
    pub fn stage_str(self) -> &'static str {
        if let RecordOutcome::Suppressed { .. } = self {
            return "consent";
        }
        match self.stage() {
            RejectionStage::Source => "source",
            RejectionStage::Transform => "transform",
            RejectionStage::Key => "key",
            _ => "destination",
        }
    }
}

impl std::fmt::Display for RecordOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One record's committed outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObservedRecord {
    /// The record's key.
    pub key: Key,
    /// The change's operation; `None` for a record refused before the diff planned one.
    pub op: Option<Op>,
    /// How it ended.
    pub outcome: RecordOutcome,
    /// Why it was not applied, in the refuser's words (fields and rules, never values);
    /// `None` when applied.
    pub reason: Option<String>,
    /// The destination's own id of the record, where the destination keeps one as its memo
    /// and says so ([`DestinationCapabilities::memos_are_record_ids`](crate::DestinationCapabilities)):
    /// a CRM's record id, from this answer or from the key's earlier changes. `None`
    /// otherwise (an ad audience's memo is identifiers, not an id, and is never shown).
    pub record_id: Option<String>,
    /// What the destination said it did with an applied change, where it says.
    pub effect: Option<Effect>,
}

impl ObservedRecord {
    /// A record's outcome with no reason, record id or effect.
    pub fn new(key: Key, op: Option<Op>, outcome: RecordOutcome) -> Self {
        Self { key, op, outcome, reason: None, record_id: None, effect: None }
    }

    /// With the refuser's reason.
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// With the destination's record id.
    pub fn with_record_id(mut self, id: Option<String>) -> Self {
        self.record_id = id;
        self
    }

    /// With the destination's effect.
    pub fn with_effect(mut self, effect: Option<Effect>) -> Self {
        self.effect = effect;
        self
    }
}

/// The outcomes one commit made final: of one delivered batch, of one read batch's
/// refusals, or of the run's repeated keys.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObservedBatch {
    /// The sync.
    pub sync_id: Arc<str>,
    /// The run (the lease's fencing token, as in [`SyncReport::run_id`]).
    pub run_id: u64,
    /// When the outcomes were committed.
    pub at: SystemTime,
    /// One entry per record, in no particular order; a key appears at most once.
    pub records: Vec<ObservedRecord>,
}

impl ObservedBatch {
    /// The outcomes of `records` in run `run_id` of `sync_id`, committed now.
    pub fn new(sync_id: Arc<str>, run_id: u64, records: Vec<ObservedRecord>) -> Self {
        Self { sync_id, run_id, at: SystemTime::now(), records }
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// Receives each batch's committed per-record outcomes and each run's final report.
///
/// See the [module documentation](self) for the contract: committed facts only, keys and
/// never values, and methods that return at once.
pub trait OutcomeObserver: Send + Sync {
    /// The outcomes of one commit, called after that commit succeeded.
    ///
    /// Must return at once (queue the batch, write it elsewhere); must not block.
    fn on_outcomes(&self, batch: Arc<ObservedBatch>);

    /// The run's final report, called once per run that returned one (dry runs included),
    /// after it was recorded in the state store.
    ///
    /// Must return at once.
    fn on_run(&self, report: &SyncReport);
}

impl<T: OutcomeObserver + ?Sized> OutcomeObserver for Arc<T> {
    fn on_outcomes(&self, batch: Arc<ObservedBatch>) {
        (**self).on_outcomes(batch);
    }

    fn on_run(&self, report: &SyncReport) {
        (**self).on_run(report);
    }
}

impl<T: OutcomeObserver + ?Sized> OutcomeObserver for Box<T> {
    fn on_outcomes(&self, batch: Arc<ObservedBatch>) {
        (**self).on_outcomes(batch);
    }

    fn on_run(&self, report: &SyncReport) {
        (**self).on_run(report);
    }
}

/// The observers of a sync; calling them costs nothing when there are none.
#[derive(Clone, Default)]
pub(crate) struct Observers(Arc<[Arc<dyn OutcomeObserver>]>);

impl Observers {
    pub(crate) fn new(observers: Vec<Arc<dyn OutcomeObserver>>) -> Self {
        Self(observers.into())
    }

    /// Whether no observer is attached (the runner then builds no outcome).
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Hands `records` of run `run_id` to every observer; nothing when there are none.
    pub(crate) fn outcomes(&self, sync_id: &Arc<str>, run_id: u64, records: Vec<ObservedRecord>) {
        if self.0.is_empty() || records.is_empty() {
            return;
        }
        let batch = Arc::new(ObservedBatch::new(sync_id.clone(), run_id, records));
        for observer in self.0.iter() {
            if catch_unwind(AssertUnwindSafe(|| observer.on_outcomes(batch.clone()))).is_err() {
                warn!(sync = %sync_id, run = run_id, "An outcome observer panicked; its outcomes were skipped.");
            }
        }
    }

    /// Hands the run's report to every observer.
    pub(crate) fn run(&self, report: &SyncReport) {
        for observer in self.0.iter() {
            if catch_unwind(AssertUnwindSafe(|| observer.on_run(report))).is_err() {
                warn!(sync = %report.sync_id, run = report.run_id, "An outcome observer panicked on the run's report.");
            }
        }
    }
}
