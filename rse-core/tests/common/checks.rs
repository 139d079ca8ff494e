//! The checks the convergence properties make after each run: of the state against what
//! the destination received. Shared by `rse-core/tests/convergence.rs` (in-memory source)
//! and the root crate's `tests/pushdown_convergence.rs` (PostgreSQL source), which includes
//! this file by path.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};

use rse_core::memory::{MemoryDestination, MemoryStateStore};
use rse_core::{Fingerprint, IdempotencyKey, Key, Op};

/// Every live or tombstoned entry of the state matches a change the destination received.
pub fn state_only_holds_what_the_destination_received(sync: &str, state: &MemoryStateStore, dest: &MemoryDestination) {
    let deliveries = dest.deliveries();
    // An entry that was never acknowledged (only an intent to send) holds no fingerprint.
    for entry in state.snapshot(sync).into_iter().filter(|e| e.version > 0) {
        let received = deliveries.iter().any(|d| {
            d.key == entry.key
                && d.version + 1 == entry.version
                && match entry.fingerprint {
                    Some(fp) => d.op != Op::Delete && d.fingerprint == fp,
                    None => d.op == Op::Delete,
                }
        });
        assert!(received, "state holds {entry:?}, which the destination never received");
    }
}

/// No change was applied twice: the destination applied each (key, op, fingerprint,
/// version) — the inputs of an idempotency key — at most once, so every retry and every
/// re-send after a crash reused its idempotency key.
///
/// Without ambiguity (no crash, no timeout after a write landed) it must hold more strictly:
/// between two applications of the same (op, fingerprint) to a key, something else was
/// applied to it. With ambiguity the runner may have to re-send what the destination
/// already holds, because the change sent after it might have landed.
pub fn nothing_was_applied_twice(dest: &MemoryDestination, ambiguous: bool) {
    let mut applied: HashMap<(Key, Op, Fingerprint, u64), IdempotencyKey> = HashMap::new();
    let mut last: HashMap<Key, (Op, Fingerprint, IdempotencyKey)> = HashMap::new();
    for d in dest.deliveries().into_iter().filter(|d| d.applied) {
        let change = (d.key.clone(), d.op, d.fingerprint, d.version);
        if let Some(first) = applied.insert(change, d.idempotency_key) {
            panic!("{:?} {} v{} applied twice, under {first} and {}", d.key, d.op, d.version, d.idempotency_key);
        }
        if let Some((op, fp, idem)) = last.get(&d.key) {
            assert!(
                ambiguous || !(*op == d.op && *fp == d.fingerprint),
                "{:?} {} applied twice in a row, under {idem} and {}",
                d.key,
                d.op,
                d.idempotency_key
            );
        }
        last.insert(d.key.clone(), (d.op, d.fingerprint, d.idempotency_key));
    }
}

/// Exactly-once: the state's live entries are exactly the destination's rows, with their
/// fingerprints, and no change is ever pending — after every run, crashed or not.
pub fn state_equals_the_destination(sync: &str, state: &MemoryStateStore, dest: &MemoryDestination) {
    let snapshot = state.snapshot(sync);
    assert!(snapshot.iter().all(|e| e.pending.is_none()), "an exactly-once run left a pending change");
    let live: BTreeMap<Key, Fingerprint> =
        snapshot.into_iter().filter_map(|e| e.fingerprint.map(|f| (e.key, f))).collect();
    assert_eq!(live, dest.fingerprints(), "the state and the destination's rows disagree");
}

/// With memos: every key the destination holds has its record id as the state's memo, and
/// no other key has one.
pub fn every_record_id_is_in_the_state(sync: &str, state: &MemoryStateStore, dest: &MemoryDestination) {
    let memos: BTreeMap<Key, String> =
        state.snapshot(sync).into_iter().filter_map(|e| Some((e.key, e.memo?.as_str()?.to_owned()))).collect();
    assert_eq!(memos, dest.record_ids(), "the state's memos and the destination's record ids disagree");
}
