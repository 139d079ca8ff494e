//! The lookup strategy: diffs only the rows a pushdown read handed out, by point lookups.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;

use super::{DiffError, DiffOutput, Differ, FingerprinterCache, InvalidRecord, PlanKind, Planned, duplicate_reason};
use crate::canary::Canary;
use crate::fingerprint::FingerprintAlgorithm;
use crate::key::Key;
use crate::record::Record;
use crate::runner::MaxDeletes;
use crate::schema::Schema;
use crate::state::{SnapshotEntry, StateStore};

/// The lookup strategy, for a pushdown read (see [`crate::pushdown`]): the source hands out
/// only new and changed rows and the keys it no longer has, so each batch is diffed against
/// [`StateStore::get`] of its own keys, never the whole snapshot. Memory grows with the rows
/// handed out, not with the model.
///
/// Keys the source no longer has come through [`Differ::push_absent`]; [`Differ::finish`]
/// turns those the destination may hold into deletes, and the others into
/// [`DiffOutput::absent_settled`]. The snapshot's live keys are counted only as far as the
/// delete guard needs to weigh the deletes found (`live_total` is exact when the guard
/// withholds them, a lower bound otherwise).
pub struct LookupDiff {
    state: Arc<dyn StateStore>,
    sync_id: String,
    fingerprinters: FingerprinterCache,
    /// Keys diffed or seen in this run (a repeat is invalid; a seen key is never deleted).
    seen: HashSet<Key>,
    absent: Vec<Key>,
    canary: Option<Canary>,
    max_deletes: Option<MaxDeletes>,
    page_size: usize,
}

impl std::fmt::Debug for LookupDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LookupDiff").field("seen", &self.seen.len()).field("absent", &self.absent.len()).finish()
    }
}

impl LookupDiff {
    /// A diff against the snapshot of `sync_id` in `state`, looked up in pages of `page_size`.
    pub fn new(state: Arc<dyn StateStore>, sync_id: &str, algorithm: FingerprintAlgorithm, page_size: usize) -> Self {
        Self {
            state,
            sync_id: sync_id.to_owned(),
            fingerprinters: FingerprinterCache::new(algorithm),
            seen: HashSet::new(),
            absent: Vec::new(),
            canary: None,
            max_deletes: None,
            page_size: page_size.max(1),
        }
    }

    /// Diffs only keys inside `canary`: the others are neither planned nor deleted.
    pub fn with_canary(mut self, canary: Option<Canary>) -> Self {
        self.canary = canary;
        self
    }

    /// The delete guard the deletes will be weighed by: how far live keys are counted.
    pub fn with_max_deletes(mut self, max_deletes: Option<MaxDeletes>) -> Self {
        self.max_deletes = max_deletes;
        self
    }

    /// The snapshot's entries of `keys`, in their order.
    async fn entries(&self, keys: &[Key]) -> Result<Vec<Option<SnapshotEntry>>, DiffError> {
        let mut entries = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(self.page_size) {
            entries.extend(self.state.get(&self.sync_id, chunk).await?);
        }
        Ok(entries)
    }

    /// The live keys inside the canary, counted up to `cap`.
    async fn live_up_to(&self, cap: u64) -> Result<u64, DiffError> {
        let mut live = 0u64;
        let mut after: Option<Key> = None;
        loop {
            let page = self.state.scan(&self.sync_id, after.as_ref(), self.page_size).await?;
            let done = page.len() < self.page_size;
            after = page.last().map(|e| e.key.clone());
            live +=
                page.iter().filter(|e| e.is_live() && self.canary.is_none_or(|c| c.contains(&e.key))).count() as u64;
            if done || after.is_none() || live >= cap {
                return Ok(live);
            }
        }
    }
}

/// How many live keys the guard must know of to weigh `n` deletes: one more than `n` (all
/// of them would go: the empty-source check), and enough for a fraction to allow them.
fn live_needed(n: u64, max_deletes: Option<MaxDeletes>) -> u64 {
    let fraction = match max_deletes {
        Some(MaxDeletes::Fraction(f)) => Some(f),
        Some(MaxDeletes::FractionAbove { fraction, floor }) if n > floor => Some(fraction),
        _ => None,
    };
    let for_fraction = match fraction {
        Some(f) if f > 0.0 => (n as f64 / f).ceil().min(u64::MAX as f64) as u64,
        _ => 0,
    };
    n.max(for_fraction).saturating_add(1)
}

#[async_trait]
impl Differ for LookupDiff {
    fn strategy(&self) -> &'static str {
        "pushdown"
    }

    async fn push(
        &mut self,
        schema: &Schema,
        records: Vec<Record>,
        seen: Vec<Key>,
        out: &mut DiffOutput,
    ) -> Result<(), DiffError> {
        self.seen.extend(seen);
        let mut fingerprinter = self.fingerprinters.take(schema);
        let mut keyed = Vec::with_capacity(records.len());
        for record in records {
            let key = match record.key(schema) {
                Ok(key) => key,
                Err(e) => {
                    out.invalid.push(InvalidRecord { key: None, record, reason: e.to_string() });
                    continue;
                }
            };
            if !self.seen.insert(key.clone()) {
                out.invalid.push(InvalidRecord { key: Some(key), record, reason: duplicate_reason(schema) });
                continue;
            }
            let fingerprint = fingerprinter.fingerprint(&record);
            keyed.push((key, record, fingerprint));
        }
        self.fingerprinters.put_back(schema, fingerprinter);
        let keys: Vec<Key> = keyed.iter().map(|(k, _, _)| k.clone()).collect();
        let entries = self.entries(&keys).await?;
        for ((key, record, fingerprint), entry) in keyed.into_iter().zip(entries) {
            let (kind, base_fingerprint, base_version, pending) = match entry {
                None => (PlanKind::Insert, None, 0, None),
                Some(e) => {
                    let kind = match e.fingerprint {
                        _ if e.pending.is_some() => PlanKind::Insert,
                        Some(f) if f == fingerprint => PlanKind::Unchanged,
                        Some(_) => PlanKind::Update,
                        None => PlanKind::Insert,
                    };
                    (kind, e.fingerprint, e.version, e.pending)
                }
            };
            if kind == PlanKind::Unchanged {
                out.unchanged += 1;
                continue;
            }
            out.planned.push(Planned { kind, key, record, fingerprint, base_fingerprint, base_version, pending });
        }
        Ok(())
    }

    async fn push_absent(&mut self, keys: Vec<Key>) -> Result<(), DiffError> {
        self.absent.extend(keys);
        Ok(())
    }

    async fn finish(&mut self, out: &mut DiffOutput) -> Result<(), DiffError> {
        let mut absent = std::mem::take(&mut self.absent);
        absent.retain(|k| !self.seen.contains(k) && self.canary.is_none_or(|c| c.contains(k)));
        absent.sort();
        absent.dedup();
        let entries = self.entries(&absent).await?;
        let mut deletes = Vec::new();
        for (key, entry) in absent.into_iter().zip(entries) {
            match entry {
                Some(entry) if entry.may_exist() => deletes.push(entry),
                _ => out.absent_settled.push(key),
            }
        }
        out.live_total = if deletes.is_empty() {
            0
        } else {
            self.live_up_to(live_needed(deletes.len() as u64, self.max_deletes)).await?
        };
        out.deletes.extend(deletes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_needed_covers_the_guard() {
        // Counting stops once the deletes cannot be all of the keys.
        assert_eq!(live_needed(3, None), 4);
        assert_eq!(live_needed(3, Some(MaxDeletes::Count(1))), 4);
        // Half of the keys at most: 20 deletes need at least 40 live keys.
        assert_eq!(live_needed(20, Some(MaxDeletes::Fraction(0.5))), 41);
        // Under the floor, the fraction does not apply.
        assert_eq!(live_needed(5, Some(MaxDeletes::FractionAbove { fraction: 0.5, floor: 10 })), 6);
        assert_eq!(live_needed(11, Some(MaxDeletes::FractionAbove { fraction: 0.5, floor: 10 })), 23);
    }
}
