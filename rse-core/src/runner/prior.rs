//! Rejections from earlier runs, as the run needs them: what was refused, without the records.
//!
//! A sync in `Update` mode against a tool that lacks most keys can hold millions of refused
//! records. The run keeps only what it decides with (stage, op, fingerprint, attempts, about
//! 80 bytes a key); the refused records themselves stay in the state store and are paged
//! in only when an incremental run retries the ones its read did not return.

use std::collections::HashMap;

use crate::change::Op;
use crate::fingerprint::Fingerprint;
use crate::key::Key;
use crate::state::{RejectedEntry, RejectionStage};

/// What the run knows of one earlier rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PriorRejection {
    pub stage: RejectionStage,
    pub op: Option<Op>,
    pub fingerprint: Option<Fingerprint>,
    pub attempts: u32,
    pub first_rejected_at: u64,
    /// Whether the refused record is kept with it (so it can be retried unread).
    pub has_record: bool,
}

impl From<&RejectedEntry> for PriorRejection {
    fn from(e: &RejectedEntry) -> Self {
        Self {
            stage: e.stage,
            op: e.op,
            fingerprint: e.fingerprint,
            attempts: e.attempts,
            first_rejected_at: e.first_rejected_at,
            has_record: e.record.is_some(),
        }
    }
}

/// The sync's rejections when the run started, by key.
#[derive(Debug, Default)]
pub(crate) struct PriorRejections {
    by_key: HashMap<Key, PriorRejection>,
}

impl PriorRejections {
    pub fn insert(&mut self, entry: &RejectedEntry) {
        self.by_key.insert(entry.key.clone(), PriorRejection::from(entry));
    }

    pub fn get(&self, key: &Key) -> Option<&PriorRejection> {
        self.by_key.get(key)
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.by_key.contains_key(key)
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Key, &PriorRejection)> {
        self.by_key.iter()
    }

    /// The attempt count and first refusal time for a new refusal of `key` at `stage`:
    /// one more than the earlier one's when `same` says it is the same refusal.
    pub fn carried(&self, key: &Key, now: u64, same: impl FnOnce(&PriorRejection) -> bool) -> (u32, u64) {
        match self.by_key.get(key).filter(|p| same(p)) {
            Some(p) => (p.attempts.saturating_add(1), p.first_rejected_at),
            None => (1, now),
        }
    }
}
