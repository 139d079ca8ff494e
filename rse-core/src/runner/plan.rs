//! Planning, as pure functions: how a mode shapes a diff result into a change, and when the
//! delete guard withholds a run's deletes.

use super::{MaxDeletes, Mode};
use crate::change::{Change, IdempotencyKey, Op};
use crate::diff::PlanKind;
use crate::fingerprint::Fingerprint;
use crate::key::Key;
use crate::record::Record;
use crate::state::{PendingChange, SnapshotEntry};

/// The operation and version a diff result goes out as under `mode`, or `None` when the
/// mode does not send it (a changed record under `Insert`).
pub(super) fn shape(
    mode: Mode,
    kind: PlanKind,
    fingerprint: Fingerprint,
    base_version: u64,
    pending: Option<PendingChange>,
) -> Option<(Op, u64)> {
    let mode_op = match (mode, kind) {
        (Mode::Upsert | Mode::Mirror, PlanKind::Insert) => Op::Insert,
        (Mode::Upsert | Mode::Mirror | Mode::Update, _) => Op::Update,
        (Mode::Insert, PlanKind::Insert | PlanKind::Unchanged) => Op::Insert,
        (Mode::Insert, PlanKind::Update) => return None,
        (Mode::Append, _) => Op::Append,
    };
    Some(match pending {
        // The record is what was sent before: the very same change again, so a destination
        // that honours idempotency keys drops it if it did land.
        Some(pc) if pc.fingerprint == fingerprint && mode.ops().contains(&pc.op) && pc.op != Op::Delete => {
            (pc.op, pc.version)
        }
        // Something else was sent and may have landed: a new change on a new version.
        Some(pc) => (mode_op, pc.version + 1),
        None => (mode_op, base_version),
    })
}

/// The fingerprint and version a delete of a snapshot entry goes out with: a pending delete
/// goes again as it was; otherwise the key may hold what was acknowledged or what is
/// pending, and a delete of a missing key is applied anyway.
pub(super) fn delete_of(entry: &SnapshotEntry) -> (Fingerprint, u64) {
    match entry.pending {
        Some(pc) if pc.op == Op::Delete => (pc.fingerprint, pc.version),
        Some(pc) => (entry.fingerprint.unwrap_or(pc.fingerprint), entry.next_version()),
        None => (entry.fingerprint.unwrap_or(Fingerprint(0)), entry.version),
    }
}

/// What the delete guard weighs.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct DeleteCheck {
    /// Deletes the diff found.
    pub deletes: u64,
    /// Keys the sync has delivered (live in the snapshot).
    pub live: u64,
    /// Records read.
    pub read: u64,
    /// Records that survived transforms and key checks.
    pub present: u64,
    /// Rows whose key is unknown (unreadable, refused before keying, null-keyed).
    pub unknown_keys: u64,
}

/// Why a run's deletes are withheld, or `None` when they may go.
pub(super) fn withheld(
    check: DeleteCheck,
    max_deletes: Option<MaxDeletes>,
    allow_empty_source: bool,
) -> Option<String> {
    let DeleteCheck { deletes: n, live, read, present, unknown_keys } = check;
    if unknown_keys > 0 {
        return Some(format!(
            "{unknown_keys} source rows could not be read or keyed, so their keys are unknown; none of the {n} \
             deletes is sent this run (fix those rows, or have the source report their keys)"
        ));
    }
    if present == 0 && !allow_empty_source {
        return Some(format!(
            "no source record survived transforms and key checks ({read} read); refusing to delete all {n} keys \
             this sync delivered (set allow_empty_source to allow)"
        ));
    }
    match max_deletes {
        Some(MaxDeletes::Count(max)) if n > max => Some(format!("{n} deletes exceed max_deletes of {max}")),
        Some(MaxDeletes::Fraction(f)) if n as f64 > f * live as f64 => Some(above_fraction(n, live, f)),
        Some(MaxDeletes::FractionAbove { fraction, floor }) if n > floor && n as f64 > fraction * live as f64 => {
            Some(above_fraction(n, live, fraction))
        }
        _ => None,
    }
}

fn above_fraction(n: u64, live: u64, fraction: f64) -> String {
    format!(
        "{n} deletes are {:.1}% of the {live} keys delivered, above max_deletes of {:.1}%",
        100.0 * n as f64 / live.max(1) as f64,
        100.0 * fraction
    )
}

/// A change with its deterministic idempotency key.
pub(super) fn change(
    sync_id: &str,
    op: Op,
    key: Key,
    record: Option<Record>,
    fingerprint: Fingerprint,
    version: u64,
) -> Change {
    let idempotency_key = IdempotencyKey::derive(sync_id, &key, op, fingerprint, version);
    Change { op, key, record, fingerprint, version, idempotency_key, memo: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: Fingerprint = Fingerprint(7);

    #[test]
    fn modes_shape_diff_results() {
        assert_eq!(shape(Mode::Upsert, PlanKind::Insert, F, 0, None), Some((Op::Insert, 0)));
        assert_eq!(shape(Mode::Mirror, PlanKind::Update, F, 3, None), Some((Op::Update, 3)));
        assert_eq!(shape(Mode::Update, PlanKind::Insert, F, 0, None), Some((Op::Update, 0)));
        assert_eq!(shape(Mode::Insert, PlanKind::Update, F, 2, None), None);
        assert_eq!(shape(Mode::Insert, PlanKind::Unchanged, F, 2, None), Some((Op::Insert, 2)));
        assert_eq!(shape(Mode::Append, PlanKind::Update, F, 2, None), Some((Op::Append, 2)));
    }

    #[test]
    fn a_pending_change_is_resent_as_it_was_or_superseded_on_a_new_version() {
        let pending = PendingChange { op: Op::Insert, fingerprint: F, version: 4 };
        // The same record: the very same change, same version (and idempotency key).
        assert_eq!(shape(Mode::Upsert, PlanKind::Insert, F, 4, Some(pending)), Some((Op::Insert, 4)));
        // Another record: a new change on the next version.
        assert_eq!(shape(Mode::Upsert, PlanKind::Insert, Fingerprint(8), 4, Some(pending)), Some((Op::Insert, 5)));
        // A pending delete is never resent as an upsert.
        let delete = PendingChange { op: Op::Delete, fingerprint: F, version: 4 };
        assert_eq!(shape(Mode::Mirror, PlanKind::Insert, F, 4, Some(delete)), Some((Op::Insert, 5)));
    }

    #[test]
    fn deletes_go_with_the_version_they_may_have_been_sent_on() {
        let key = Key::from_values(&[crate::Value::Int(1)]);
        let live = SnapshotEntry { key: key.clone(), fingerprint: Some(F), version: 3, pending: None, memo: None };
        assert_eq!(delete_of(&live), (F, 3));
        let pending_delete = PendingChange { op: Op::Delete, fingerprint: F, version: 3 };
        assert_eq!(delete_of(&SnapshotEntry { pending: Some(pending_delete), ..live.clone() }), (F, 3));
        let pending_update = PendingChange { op: Op::Update, fingerprint: Fingerprint(9), version: 3 };
        assert_eq!(delete_of(&SnapshotEntry { pending: Some(pending_update), ..live }), (F, 4));
    }

    #[test]
    fn the_delete_guard_withholds_for_unknown_keys_an_empty_model_and_above_the_limit() {
        let ok = DeleteCheck { deletes: 2, live: 10, read: 8, present: 8, unknown_keys: 0 };
        assert_eq!(withheld(ok, Some(MaxDeletes::Fraction(0.5)), false), None);
        let unknown = withheld(DeleteCheck { unknown_keys: 1, ..ok }, None, true);
        assert!(unknown.is_some_and(|r| r.contains("could not be read or keyed")));
        let empty = withheld(DeleteCheck { deletes: 10, present: 0, read: 10, ..ok }, None, false);
        assert!(empty.is_some_and(|r| r.contains("no source record survived")));
        assert_eq!(withheld(DeleteCheck { deletes: 10, present: 0, ..ok }, None, true), None);
        assert!(withheld(DeleteCheck { deletes: 6, ..ok }, Some(MaxDeletes::Fraction(0.5)), false).is_some());
        assert!(withheld(ok, Some(MaxDeletes::Count(1)), false).is_some_and(|r| r.contains("max_deletes of 1")));
        // The default spares small runs: one delete of the only key is not a mass delete.
        let one = DeleteCheck { deletes: 1, live: 1, read: 3, present: 3, unknown_keys: 0 };
        assert_eq!(withheld(one, Some(crate::DEFAULT_MAX_DELETES), false), None);
        let many = DeleteCheck { deletes: 30, live: 40, read: 10, present: 10, unknown_keys: 0 };
        assert!(withheld(many, Some(crate::DEFAULT_MAX_DELETES), false).is_some());
    }
}
