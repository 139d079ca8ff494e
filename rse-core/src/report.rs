//! What a run reports: counts, retries, timings, cursor movement and sampled rejections.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::change::Op;
use crate::drift::{SchemaDrift, SchemaSummary};
use crate::key::KeyHash;
use crate::runner::Mode;
use crate::state::RejectionStage;
use crate::value::Value;

/// Counts of changes per operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpCounts {
    /// Inserts.
    pub insert: u64,
    /// Updates.
    pub update: u64,
    /// Deletes.
    pub delete: u64,
    /// Appended events.
    pub append: u64,
}

impl OpCounts {
    /// Adds `n` to `op`'s count.
    pub fn add(&mut self, op: Op, n: u64) {
        match op {
            Op::Insert => self.insert += n,
            Op::Update => self.update += n,
            Op::Delete => self.delete += n,
            Op::Append => self.append += n,
        }
    }

    /// The count of `op`.
    pub fn get(&self, op: Op) -> u64 {
        match op {
            Op::Insert => self.insert,
            Op::Update => self.update,
            Op::Delete => self.delete,
            Op::Append => self.append,
        }
    }

    /// All operations together.
    pub fn total(&self) -> u64 {
        self.insert + self.update + self.delete + self.append
    }
}

/// What the destination said it did with applied changes, where it says (a CRM's
/// created-or-updated flag); changes it said nothing about are in none of these.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectCounts {
    /// Records the destination created.
    pub created: u64,
    /// Records the destination changed.
    pub updated: u64,
    /// Records the destination already held as sent.
    pub unchanged: u64,
}

impl EffectCounts {
    /// Counts one `effect`.
    pub fn add(&mut self, effect: crate::change::Effect) {
        match effect {
            crate::change::Effect::Created => self.created += 1,
            crate::change::Effect::Updated => self.updated += 1,
            crate::change::Effect::Unchanged => self.unchanged += 1,
        }
    }

    /// Adds another set of counts.
    pub fn merge(&mut self, other: EffectCounts) {
        self.created += other.created;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
    }
}

/// What happened to the records and changes of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Records read from the source.
    pub read: u64,
    /// Rows the source could not read as records (malformed lines), left out at the host's
    /// choice.
    #[serde(default)]
    pub source_rejected: u64,
    /// Records a transform filtered out on purpose (suppression, consent).
    pub filtered: u64,
    /// Records refused by a transform, with a reason.
    pub transform_rejected: u64,
    /// Records with an invalid key (null, or seen twice in the run).
    pub invalid: u64,
    /// Records whose fingerprint matches what the destination acknowledged.
    pub unchanged: u64,
    /// Changed records the mode does not send (an update under `Insert` mode).
    pub skipped: u64,
    /// Changes planned, per operation.
    pub planned: OpCounts,
    /// Changes the destination acknowledged as applied.
    pub applied: OpCounts,
    /// Changes the destination refused.
    pub rejected: OpCounts,
    /// Changes not written because the destination holds a newer version of the record
    /// (a version guard); kept among the rejections, not counted as applied.
    #[serde(default)]
    pub superseded: u64,
    /// Deletes withheld by the delete guard.
    pub withheld: u64,
    /// Planned changes that were not delivered (run ended early); they go next run.
    pub undelivered: u64,
    /// Rejections from earlier runs that this run delivered or cleared.
    pub recovered: u64,
    /// Of the applied changes, what the destination said it did (created, updated,
    /// unchanged), where it says.
    #[serde(default)]
    pub destination: EffectCounts,
}

/// Time spent per stage. Stages overlap (reading goes on while batches are delivered).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageDurations {
    /// Waiting on the source.
    pub read: Duration,
    /// In transforms.
    pub transform: Duration,
    /// Fingerprinting and comparing.
    pub diff: Duration,
    /// In destination writes, retries and waits included.
    pub deliver: Duration,
    /// In state commits.
    pub commit: Duration,
    /// The whole run.
    pub total: Duration,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RunStatus {
    /// Every planned change was applied.
    Succeeded,
    /// Every planned change has a final outcome, and some were rejected.
    CompletedWithRejections,
    /// Every planned change has a final outcome, but the delete guard withheld this run's
    /// deletes (too many, an empty source, or rows whose keys are unknown); the report's
    /// `withheld_reason` says why. Other records may have been rejected too (see the counts).
    DeletesWithheld {
        /// Why.
        reason: String,
    },
    /// Repeated failures opened the circuit; what was acknowledged is committed.
    CircuitOpen {
        /// Why.
        reason: String,
    },
    /// The host cancelled the run; what was acknowledged is committed.
    Cancelled,
    /// The destination asked to wait longer than the sync allows
    /// ([`SyncOptions::max_rate_limit_wait`](crate::SyncOptions)); what was acknowledged
    /// is committed and every unsent change goes next run.
    RateLimited {
        /// How long the destination asked to wait.
        retry_after: std::time::Duration,
        /// When it may be tried again (milliseconds since the Unix epoch).
        retry_at_ms: u64,
    },
    /// An allowance the destination counts over a long period (a daily API quota) is spent,
    /// or down to the share [`SyncOptions::quota_reserve`](crate::SyncOptions) leaves for
    /// other integrations; what was acknowledged is committed and every unsent change goes
    /// next run.
    QuotaExhausted {
        /// Which allowance, in the destination's words.
        reason: String,
        /// When it resets (milliseconds since the Unix epoch), if the destination says.
        resets_at_ms: Option<u64>,
    },
    /// The run failed; what was acknowledged is committed.
    Failed {
        /// Why, in words.
        reason: String,
        /// Why, as a kind a host can match on (and a command map to an exit code).
        #[serde(default)]
        kind: FailureKind,
    },
    /// The run is still going (the status recorded when a run starts).
    Running,
    /// An operator paused the sync ([`SyncJob::pause`](crate::SyncJob::pause)).
    ///
    /// A run of a paused sync returns this at once, without taking the lease, reading or
    /// sending anything, and is **not** recorded in the run history: a scheduler that keeps
    /// starting a paused sync would otherwise push the runs that explain the pause (the
    /// failed ones before it) out of the retained history, and the last recorded run stays
    /// the one that tells whether a full resync must be resumed. Its report has run id 0.
    ///
    /// A run in flight when the pause is made stops at its next batch boundary: it sends
    /// nothing more, waits for the writes in flight, commits what they acknowledged and ends
    /// with this status. That run did work, so it is recorded like any other; everything it
    /// did not send goes with the first run after [`SyncJob::resume`](crate::SyncJob::resume).
    Paused {
        /// Who paused it.
        by: String,
        /// Why.
        reason: String,
    },
}

impl RunStatus {
    /// Whether every planned change reached a final outcome.
    pub fn is_complete(&self) -> bool {
        matches!(self, RunStatus::Succeeded | RunStatus::CompletedWithRejections | RunStatus::DeletesWithheld { .. })
    }

    /// The status as the value of a metric's [`STATUS`](crate::metrics::STATUS) label: one
    /// fixed word per status, never its reason. `succeeded`, `completed_with_rejections`,
    /// `deletes_withheld`, `circuit_open`, `cancelled`, `rate_limited`, `quota_exhausted`,
    /// `lease_lost` (a failure because the run lost its lease to another runner), `failed`
    /// (any other failure) and `running` (never a final status).
    ///
    /// ```
    /// # use rse_core::{FailureKind, RunStatus};
    /// assert_eq!(RunStatus::CompletedWithRejections.label(), "completed_with_rejections");
    /// let lost = RunStatus::Failed { reason: "taken over".into(), kind: FailureKind::LeaseLost };
    /// assert_eq!(lost.label(), "lease_lost");
    /// ```
    pub fn label(&self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::CompletedWithRejections => "completed_with_rejections",
            RunStatus::DeletesWithheld { .. } => "deletes_withheld",
            RunStatus::CircuitOpen { .. } => "circuit_open",
            RunStatus::Cancelled => "cancelled",
            RunStatus::RateLimited { .. } => "rate_limited",
            RunStatus::QuotaExhausted { .. } => "quota_exhausted",
            RunStatus::Failed { kind: FailureKind::LeaseLost, .. } => "lease_lost",
            RunStatus::Failed { .. } => "failed",
            RunStatus::Paused { .. } => "paused",
            RunStatus::Running => "running",
        }
    }
}

/// Why a run failed, for a host to act on without parsing the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum FailureKind {
    /// Not classified (also what a run recorded by an older version reads back as).
    #[default]
    Other,
    /// The source could not be read.
    Source,
    /// A transform failed for a whole batch.
    Transform,
    /// The columns read differ from those last delivered, and the policy is to stop
    /// (see the report's `schema_drift`).
    SchemaDrift,
    /// The destination refused the credentials.
    Unauthorized,
    /// The destination failed for good (a configuration error, a refused request).
    Destination,
    /// Changes were left undelivered (retries ran out); they go next run.
    Undelivered,
    /// The state could not be written.
    StateCommit,
    /// Another runner took the sync's lease.
    LeaseLost,
    /// The sync's suppression list (withdrawn consent) could not be loaded or applied, so
    /// nothing was read or sent: sending without it could reach people who withdrew.
    Suppression,
}

/// One sampled rejection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectionSample {
    /// A hash of the key (the key itself may be personal data).
    pub key: KeyHash,
    /// Where it was refused.
    pub stage: RejectionStage,
    /// The operation, for destination rejections.
    pub op: Option<Op>,
    /// Why.
    pub reason: String,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SyncReport {
    /// The sync.
    pub sync_id: String,
    /// The run (the lease's fencing token; 0 for a dry run).
    pub run_id: u64,
    /// The mode.
    pub mode: Mode,
    /// Whether this was a dry run (nothing sent, nothing committed).
    pub dry_run: bool,
    /// Whether every record was sent regardless of its fingerprint.
    pub full_resync: bool,
    /// The diff strategy used: `hash` or `merge`.
    pub diff_strategy: String,
    /// How the run ended.
    pub status: RunStatus,
    /// When it started (milliseconds since the Unix epoch).
    pub started_at_ms: u64,
    /// Counts of records and changes.
    pub counts: Counts,
    /// Writes retried after a transient failure or rate limit.
    pub retries: u64,
    /// Times the destination asked us to slow down.
    pub rate_limit_waits: u64,
    /// Wall time during which writes waited on the destination's rate limit (its
    /// `Retry-After` and the quota): overlapping waits of several workers count once.
    pub rate_limit_wait: Duration,
    /// Destination writes that were acknowledged.
    pub batches: u64,
    /// Estimated bytes of the changes delivered.
    pub bytes: u64,
    /// Time per stage.
    pub stages: StageDurations,
    /// The cursor the run started from.
    pub cursor_before: Option<Value>,
    /// The cursor committed at the end of the run.
    pub cursor_after: Option<Value>,
    /// Up to [`SyncOptions::rejection_sample`](crate::SyncOptions) rejections with reasons.
    pub rejections: Vec<RejectionSample>,
    /// Why deletes were withheld, when they were.
    pub withheld_reason: Option<String>,
    /// The columns (after transforms) the run's changes were fingerprinted and sent under;
    /// the next run compares its read with them. `None` in reports of older versions.
    #[serde(default)]
    pub schema: Option<SchemaSummary>,
    /// How the columns read differed from those last delivered, when they did.
    #[serde(default)]
    pub schema_drift: Option<SchemaDrift>,
    /// The quota the destination last reported in the run, if it reports one.
    #[serde(default)]
    pub quota: Option<crate::destination::QuotaFeedback>,
    /// What an audience destination reported (members added and removed, consent, what the
    /// platform refused, the match rate); `None` for other destinations.
    #[serde(default)]
    pub audience: Option<crate::audience::AudienceReport>,
    /// The canary the run was restricted to and how many records it left out; `None`
    /// without one ([`SyncOptions::canary`](crate::SyncOptions::canary)).
    #[serde(default)]
    pub canary: Option<crate::canary::CanaryReport>,
    /// The partition the run covered and how many records it left to the other
    /// partitions; `None` for an unpartitioned sync
    /// ([`SyncBuilder::partition`](crate::SyncBuilder::partition)).
    #[serde(default)]
    pub partition: Option<crate::partition::PartitionReport>,
    /// What the sync's suppression list (withdrawn consent) did in the run; `None` for a
    /// sync without one.
    #[serde(default)]
    pub suppression: Option<crate::suppression::SuppressionReport>,
    /// When the initial load or full resync this run belongs to started (milliseconds since
    /// the Unix epoch): set on a run that starts with nothing acknowledged yet, on a full
    /// resync, and on every run after one of those that did not complete, until a run
    /// completes. `None` for an ordinary run.
    #[serde(default)]
    pub backfill_started_at_ms: Option<u64>,
    /// What the pushdown strategy did ([`DiffStrategy::Pushdown`](crate::DiffStrategy::Pushdown));
    /// `None` for the other strategies.
    #[serde(default)]
    pub pushdown: Option<PushdownReport>,
}

/// What a run of a sync with the pushdown strategy did (see [`crate::pushdown`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PushdownReport {
    /// Why this run re-diffed the whole model rather than reading only what changed
    /// (`None` when it read only what changed): e.g. "the transforms, source columns, mode
    /// or fingerprint algorithm changed", "the state holds no pushdown epoch".
    pub full_rediff: Option<String>,
    /// Whether a full re-diff completed and set the epoch (the next run reads only what changed).
    pub completed: bool,
    /// Rows that left the source's store (the changed rows, or every row in a full re-diff).
    pub rows_read: u64,
    /// Keys the source reported gone from the model.
    pub vanished: u64,
    /// Writes to the source's delivered table that failed after delivery; their rows keep an
    /// older or no hash and are read again next run (nothing is lost).
    pub record_failures: u64,
}

impl SyncReport {
    pub(crate) fn new(sync_id: &str, mode: Mode) -> Self {
        Self {
            sync_id: sync_id.to_owned(),
            run_id: 0,
            mode,
            dry_run: false,
            full_resync: false,
            diff_strategy: String::new(),
            status: RunStatus::Running,
            started_at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            counts: Counts::default(),
            retries: 0,
            rate_limit_waits: 0,
            rate_limit_wait: Duration::ZERO,
            batches: 0,
            bytes: 0,
            stages: StageDurations::default(),
            cursor_before: None,
            cursor_after: None,
            rejections: Vec::new(),
            withheld_reason: None,
            schema: None,
            schema_drift: None,
            quota: None,
            audience: None,
            canary: None,
            partition: None,
            suppression: None,
            backfill_started_at_ms: None,
            pushdown: None,
        }
    }
}

/// A progress event, for a host to render while a run goes on.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ProgressEvent {
    /// The run took its lease and started reading.
    Started {
        /// The run.
        run_id: u64,
    },
    /// Records were read from the source (running total).
    Read {
        /// Records read so far.
        records: u64,
    },
    /// A batch was acknowledged and committed.
    BatchCommitted {
        /// Changes applied in it.
        applied: u64,
        /// Changes rejected in it.
        rejected: u64,
    },
    /// A write is retried.
    Retrying {
        /// Which attempt comes next.
        attempt: u32,
        /// The wait before it.
        delay: Duration,
    },
    /// A key was kept out of or removed from the destination because its consent was
    /// withdrawn (see [`crate::suppression`]): the audit trail of suppressions, one event
    /// per key and outcome.
    Suppressed {
        /// The key's hash.
        key: KeyHash,
        /// What was done.
        outcome: crate::suppression::SuppressionOutcome,
    },
    /// The run ended.
    Finished {
        /// How.
        status: RunStatus,
    },
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunStatus::Succeeded => f.write_str("succeeded"),
            RunStatus::CompletedWithRejections => f.write_str("completed with rejections"),
            RunStatus::DeletesWithheld { reason } => write!(f, "completed, deletes withheld: {reason}"),
            RunStatus::CircuitOpen { reason } => write!(f, "circuit open: {reason}"),
            RunStatus::Cancelled => f.write_str("cancelled"),
            RunStatus::RateLimited { retry_after, .. } => {
                write!(f, "rate limited: the destination asked to wait {retry_after:?}; unsent changes go next run")
            }
            RunStatus::QuotaExhausted { reason, resets_at_ms } => {
                write!(f, "quota exhausted: {reason}")?;
                if let Some(at) = resets_at_ms {
                    let micros = i64::try_from(*at).unwrap_or(i64::MAX / 1000).saturating_mul(1000);
                    write!(f, "; it resets at {}", crate::time::format_timestamp(micros))?;
                }
                f.write_str("; unsent changes go next run")
            }
            RunStatus::Failed { reason, .. } => write!(f, "failed: {reason}"),
            RunStatus::Running => f.write_str("running"),
            RunStatus::Paused { by, reason } => write!(f, "paused by {by}: {reason}; resume the sync to go on"),
        }
    }
}

/// A short human summary of a run, a few lines long; keys appear hashed, values never.
impl std::fmt::Display for SyncReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.counts;
        writeln!(
            f,
            "sync `{}` run {} ({}{}, {} diff): {} in {:.1?}",
            self.sync_id,
            self.run_id,
            self.mode,
            if self.dry_run { ", dry run" } else { "" },
            self.diff_strategy,
            self.status,
            self.stages.total
        )?;
        writeln!(
            f,
            "  read {}, unchanged {}, filtered {}, unreadable {}, refused by transforms {}, invalid keys {}",
            c.read, c.unchanged, c.filtered, c.source_rejected, c.transform_rejected, c.invalid
        )?;
        let ops = |o: &OpCounts| {
            format!("{} insert, {} update, {} delete, {} append", o.insert, o.update, o.delete, o.append)
        };
        writeln!(f, "  planned  {}", ops(&c.planned))?;
        writeln!(f, "  applied  {}", ops(&c.applied))?;
        writeln!(f, "  rejected {}", ops(&c.rejected))?;
        write!(
            f,
            "  {} writes, {} bytes, {} retries, {} rate-limit waits ({:.1?})",
            self.batches, self.bytes, self.retries, self.rate_limit_waits, self.rate_limit_wait
        )?;
        if c.withheld > 0 {
            write!(f, "\n  {} deletes withheld: {}", c.withheld, self.withheld_reason.as_deref().unwrap_or(""))?;
        }
        if c.undelivered > 0 {
            write!(f, "\n  {} changes not delivered (sent next run)", c.undelivered)?;
        }
        let d = &c.destination;
        if d.created + d.updated + d.unchanged > 0 {
            write!(f, "\n  destination: {} created, {} updated, {} unchanged", d.created, d.updated, d.unchanged)?;
        }
        if let Some(audience) = &self.audience {
            write!(f, "\n  audience: {audience}")?;
            for note in &audience.notes {
                write!(f, "\n    {note}")?;
            }
        }
        if let Some(canary) = &self.canary {
            write!(
                f,
                "\n  canary: {:.2}% of keys, {} records outside it left alone",
                100.0 * canary.fraction,
                canary.excluded
            )?;
        }
        if let Some(p) = &self.partition {
            write!(f, "\n  partition {}: {} records of other partitions left to them", p.partition, p.excluded)?;
        }
        if let Some(suppression) = &self.suppression {
            write!(f, "\n  suppression: {suppression}")?;
        }
        if c.superseded > 0 {
            write!(f, "\n  {} changes superseded by a newer version at the destination", c.superseded)?;
        }
        if let Some(drift) = &self.schema_drift {
            write!(f, "\n  schema drift: {drift}")?;
        }
        for r in &self.rejections {
            write!(f, "\n  rejected key {}: {}", r.key, r.reason)?;
        }
        Ok(())
    }
}
