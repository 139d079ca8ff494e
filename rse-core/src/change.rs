//! Changes: what the diff decided to send, and what the destination answered.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::destination::QuotaFeedback;
use crate::error::DestinationError;
use crate::fingerprint::Fingerprint;
use crate::key::Key;
use crate::record::Record;
use crate::schema::Schema;

/// The operation a change asks of the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Op {
    /// Create a record the destination does not have.
    Insert,
    /// Change a record the destination has (or create it: an upsert, where supported).
    Update,
    /// Remove a record this sync delivered.
    Delete,
    /// Record an event: the new or changed row, appended.
    Append,
}

impl Op {
    /// All operations.
    pub const ALL: [Op; 4] = [Op::Insert, Op::Update, Op::Delete, Op::Append];

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Append => "append",
        }
    }

    fn code(self) -> u8 {
        match self {
            Op::Insert => 1,
            Op::Update => 2,
            Op::Delete => 3,
            Op::Append => 4,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A deterministic identifier of one change, sent to destinations that deduplicate on it
/// (HTTP `Idempotency-Key`, NATS `Nats-Msg-Id`, a guard column in SQL).
///
/// It is SHA-256 over (sync id, key, op, fingerprint, version) truncated to 128 bits. The
/// version is the number of changes this sync has applied to the key before (deletes
/// included), so a change re-sent after a crash carries the same idempotency key, while a
/// later change that happens to carry the same data (a value changed and changed back, a
/// row deleted and re-created) gets a new one and is not dropped as a duplicate.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IdempotencyKey(pub [u8; 16]);

impl IdempotencyKey {
    /// The idempotency key of a change.
    pub fn derive(sync_id: &str, key: &Key, op: Op, fingerprint: Fingerprint, version: u64) -> Self {
        let mut h = Sha256::new();
        h.update((sync_id.len() as u64).to_le_bytes());
        h.update(sync_id.as_bytes());
        h.update((key.as_bytes().len() as u64).to_le_bytes());
        h.update(key.as_bytes());
        h.update([op.code()]);
        h.update(fingerprint.to_bytes());
        h.update(version.to_le_bytes());
        let digest = h.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        IdempotencyKey(out)
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({self})")
    }
}

/// A small value a destination keeps per key across runs: the record id a CRM assigned
/// (HubSpot archives and Salesforce deletes by it), the identifiers last sent to an audience
/// (to remove them when they change).
///
/// A destination hands a memo back with an applied change ([`Receipt::with_memo`]); the
/// state keeps it with the key's snapshot entry, under the same commit rules as the
/// fingerprint, and the runner hands it back in [`Change::memo`] with the key's later
/// changes. It is never derived again from the source. At most [`Memo::MAX_LEN`] bytes.
///
/// ```
/// # use rse_core::Memo;
/// let id = Memo::text("0031U00001abcdeQAA").unwrap();
/// assert_eq!(id.as_str(), Some("0031U00001abcdeQAA"));
/// assert!(Memo::new(vec![0u8; Memo::MAX_LEN + 1]).is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Memo(Bytes);

impl Memo {
    /// The most bytes a memo may hold: it is stored with every key's snapshot entry.
    pub const MAX_LEN: usize = 4096;

    /// A memo of these bytes.
    ///
    /// # Errors
    /// [`DestinationError::Fatal`] when longer than [`Memo::MAX_LEN`]: a connector bug.
    pub fn new(bytes: impl Into<Bytes>) -> Result<Self, DestinationError> {
        let bytes = bytes.into();
        if bytes.len() > Self::MAX_LEN {
            return Err(DestinationError::fatal(format!(
                "a memo of {} bytes is longer than the {} bytes the state keeps per key; keep only what a later \
                 change of the key needs (a record id, digests)",
                bytes.len(),
                Self::MAX_LEN
            )));
        }
        Ok(Memo(bytes))
    }

    /// A memo of this text.
    ///
    /// # Errors
    /// As [`Memo::new`].
    pub fn text(text: &str) -> Result<Self, DestinationError> {
        Self::new(Bytes::copy_from_slice(text.as_bytes()))
    }

    /// Its bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Its text, when it is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// A memo read back from a state store, trusted to be within the limit it was written under.
    pub fn from_stored(bytes: impl Into<Bytes>) -> Self {
        Memo(bytes.into())
    }
}

impl fmt::Debug for Memo {
    // A memo holds identifiers (record ids, digests), not row values, but it is still data
    // of the destination's: show its size only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Memo({} bytes)", self.0.len())
    }
}

/// What the destination did with an applied change, where the vendor says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Effect {
    /// The destination created the record.
    Created,
    /// The destination changed a record it held.
    Updated,
    /// The destination held the record as sent already and changed nothing.
    Unchanged,
}

/// What a destination hands back with an applied change: what it did, and a memo for the
/// key's later changes.
///
/// ```
/// # use rse_core::{Effect, Memo, Receipt};
/// let receipt = Receipt::created().with_memo(Memo::text("5101").unwrap());
/// assert_eq!(receipt.effect, Some(Effect::Created));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Receipt {
    /// What the destination did, if it says.
    pub effect: Option<Effect>,
    /// The memo to keep for the key; `None` keeps the key's memo as it was (an applied
    /// delete clears it).
    pub memo: Option<Memo>,
}

impl Receipt {
    /// The record was created.
    pub fn created() -> Self {
        Self { effect: Some(Effect::Created), memo: None }
    }

    /// The record was updated.
    pub fn updated() -> Self {
        Self { effect: Some(Effect::Updated), memo: None }
    }

    /// The record was already as sent.
    pub fn unchanged() -> Self {
        Self { effect: Some(Effect::Unchanged), memo: None }
    }

    /// Keeps `memo` for the key.
    pub fn with_memo(mut self, memo: Memo) -> Self {
        self.memo = Some(memo);
        self
    }
}

/// One change for the destination.
#[derive(Debug, Clone)]
pub struct Change {
    /// What to do.
    pub op: Op,
    /// The record's key.
    pub key: Key,
    /// The record after transforms; `None` for a delete (the key's values are in `key`).
    pub record: Option<Record>,
    /// The fingerprint of `record`; for a delete, of the record last delivered.
    pub fingerprint: Fingerprint,
    /// How many changes this sync has applied to the key before this one.
    pub version: u64,
    /// The change's deterministic idempotency key.
    pub idempotency_key: IdempotencyKey,
    /// The memo the key's last applied change left with the state (the record id a CRM
    /// assigned, the identifiers last sent): `None` for a key never applied, or when the
    /// destination keeps no memos (see [`DestinationCapabilities::keeps_memos`](crate::DestinationCapabilities)).
    ///
    /// A delete (or update) can come without one for a record that exists: the change that
    /// created it was sent, and the process died before its answer was committed. A
    /// destination that can find the record by the key (an external id, a unique property
    /// mapped from the key) does so; one that cannot says so in its documentation.
    pub memo: Option<Memo>,
}

impl Change {
    /// A rough size of the change once serialised, for batching by bytes.
    pub fn estimated_size(&self) -> usize {
        self.key.as_bytes().len() + 48 + self.record.as_ref().map_or(0, Record::estimated_size)
    }
}

/// Changes for one destination write, sharing one schema.
#[derive(Debug, Clone)]
pub struct ChangeBatch {
    /// The sync the changes belong to.
    pub sync_id: Arc<str>,
    /// The schema of every record in the batch.
    pub schema: Arc<Schema>,
    /// The changes; keys are distinct within a batch.
    pub changes: Vec<Change>,
}

impl ChangeBatch {
    /// The number of changes.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// Whether the batch holds no change.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// The destination's answer for one change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ChangeOutcome {
    /// The change is durably applied.
    Applied,
    /// The destination refused this change.
    Rejected {
        /// Why, in the destination's words. Shown in reports, never logged.
        reason: String,
        /// Whether trying the same change again may succeed (e.g. a lock conflict).
        retryable: bool,
    },
    /// Nothing was written because the destination holds a newer version of the record
    /// than this change (a version guard: another writer, or a sync whose state was reset,
    /// got there first). Not applied, so the state does not advance: the change stays
    /// among the sync's rejections with this reason, counted apart from refusals.
    Superseded {
        /// What the destination holds, in its words (versions, never values).
        reason: String,
    },
}

impl ChangeOutcome {
    /// A permanent rejection with this reason.
    pub fn rejected(reason: impl Into<String>) -> Self {
        ChangeOutcome::Rejected { reason: reason.into(), retryable: false }
    }
}

/// The destination's answer for a batch: one outcome per change, in the batch's order.
///
/// Built with [`WriteOutcomes`] (or [`WriteOutcome::all_applied`]), so a new field never
/// breaks a connector.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct WriteOutcome {
    /// One outcome per change of the batch, in order.
    pub outcomes: Vec<ChangeOutcome>,
    /// What the destination handed back with applied changes: empty, or one per change in
    /// order (ignored for a change not applied).
    pub receipts: Vec<Receipt>,
    /// The quota the destination reported with this answer, which the runner paces to.
    pub quota: Option<QuotaFeedback>,
    /// Audience figures of this write (an ad platform's members added and removed), summed
    /// into the run's [`SyncReport::audience`](crate::SyncReport::audience).
    pub audience: Option<Box<crate::audience::AudienceReport>>,
}

impl WriteOutcome {
    /// Every one of `n` changes applied.
    pub fn all_applied(n: usize) -> Self {
        Self::from_outcomes(vec![ChangeOutcome::Applied; n])
    }

    /// These outcomes, with no receipts and no quota.
    pub fn from_outcomes(outcomes: Vec<ChangeOutcome>) -> Self {
        Self { outcomes, receipts: Vec::new(), quota: None, audience: None }
    }

    /// The receipt of change `i`, if the destination gave one.
    pub fn receipt(&self, i: usize) -> Option<&Receipt> {
        self.receipts.get(i)
    }
}

/// Builds a [`WriteOutcome`] slot by slot, and refuses to finish with a slot left unset.
///
/// A destination answers one outcome per change. Filling a vector that defaults to
/// `Applied` makes a forgotten change look delivered, and the runner then never sends it
/// again. With this builder each slot is set on purpose — one by one, or all the rest at
/// once with [`rest_applied`](Self::rest_applied) after the write as a whole was
/// acknowledged — and [`finish`](Self::finish) fails loudly otherwise.
///
/// ```
/// # use rse_core::{ChangeOutcome, WriteOutcomes};
/// let mut outcomes = WriteOutcomes::new(3);
/// outcomes.rejected(1, "field `email`: not an address");
/// // … the write of the other two was acknowledged:
/// outcomes.rest_applied();
/// let written = outcomes.finish("example").unwrap();
/// assert_eq!(written.outcomes[0], ChangeOutcome::Applied);
///
/// let forgotten = WriteOutcomes::new(2);
/// assert!(forgotten.finish("example").is_err());
/// ```
#[derive(Debug, Clone, Default)]
pub struct WriteOutcomes {
    slots: Vec<Option<ChangeOutcome>>,
    receipts: Vec<Receipt>,
    quota: Option<QuotaFeedback>,
    audience: Option<Box<crate::audience::AudienceReport>>,
}

impl WriteOutcomes {
    /// `n` unset slots, one per change of the batch.
    pub fn new(n: usize) -> Self {
        Self { slots: vec![None; n], receipts: Vec::new(), quota: None, audience: None }
    }

    /// The number of slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are no slots.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Sets slot `i` (a position past the end is ignored: `finish` then reports what is unset).
    pub fn set(&mut self, i: usize, outcome: ChangeOutcome) {
        if let Some(slot) = self.slots.get_mut(i) {
            *slot = Some(outcome);
        }
    }

    /// Change `i` was applied.
    pub fn applied(&mut self, i: usize) {
        self.set(i, ChangeOutcome::Applied);
    }

    /// Change `i` was applied, and the destination handed back `receipt` (what it did, a
    /// memo for the key's later changes).
    pub fn applied_with(&mut self, i: usize, receipt: Receipt) {
        if i < self.slots.len() {
            if self.receipts.is_empty() {
                self.receipts = vec![Receipt::default(); self.slots.len()];
            }
            self.receipts[i] = receipt;
        }
        self.set(i, ChangeOutcome::Applied);
    }

    /// Records the quota the destination reported with this answer (the runner paces to it).
    pub fn set_quota(&mut self, quota: QuotaFeedback) {
        self.quota = Some(quota);
    }

    /// Records the write's audience figures (summed into the run's report).
    pub fn set_audience(&mut self, audience: crate::audience::AudienceReport) {
        self.audience = Some(Box::new(audience));
    }

    /// Change `i` was refused for good, for `reason` (the destination's words, never values).
    pub fn rejected(&mut self, i: usize, reason: impl Into<String>) {
        self.set(i, ChangeOutcome::rejected(reason));
    }

    /// Whether slot `i` is set.
    pub fn is_set(&self, i: usize) -> bool {
        self.slots.get(i).is_some_and(Option::is_some)
    }

    /// The positions not set yet.
    pub fn unset(&self) -> impl Iterator<Item = usize> + '_ {
        self.slots.iter().enumerate().filter(|(_, s)| s.is_none()).map(|(i, _)| i)
    }

    /// Sets every slot not set yet to `Applied`: call it once the write of those changes
    /// was acknowledged as a whole (a committed transaction, a 2xx for the request).
    pub fn rest_applied(&mut self) {
        for slot in self.slots.iter_mut().filter(|s| s.is_none()) {
            *slot = Some(ChangeOutcome::Applied);
        }
    }

    /// The outcome of the write.
    ///
    /// # Errors
    /// [`DestinationError::Fatal`] naming the destination and the unset positions: a
    /// connector bug, which must not pass for a delivery.
    pub fn finish(self, destination: &str) -> Result<WriteOutcome, crate::error::DestinationError> {
        let unset: Vec<usize> = self.unset().collect();
        if !unset.is_empty() {
            let shown: Vec<String> = unset.iter().take(10).map(usize::to_string).collect();
            return Err(crate::error::DestinationError::fatal(format!(
                "destination `{destination}` left the outcome of {} of {} changes unset (positions {}{}); \
                 this is a bug in the connector, and nothing of the batch is recorded as delivered",
                unset.len(),
                self.slots.len(),
                shown.join(", "),
                if unset.len() > 10 { ", …" } else { "" }
            )));
        }
        Ok(WriteOutcome {
            outcomes: self.slots.into_iter().flatten().collect(),
            receipts: self.receipts,
            quota: self.quota,
            audience: self.audience,
        })
    }
}
