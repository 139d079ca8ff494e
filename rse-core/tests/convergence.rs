//! The convergence property: random tables, random edits between runs, random fault
//! schedules including a crash at a random point, repeated Mirror runs. Once the faults
//! stop, the destination equals the source, nothing was applied twice, every refused record
//! was delivered, and the state never held a fingerprint the destination did not receive.
//! Half the cases use an exactly-once destination (state committed with the rows), where
//! the state must equal the destination after every run, crashed or not. A quarter of the
//! cases deliver to an ad audience instead, which must end holding exactly the identifiers
//! of the source's rows. A share of the cases uses the pushdown strategy, with failures of
//! the source's delivered-table writes too; the table must keep a row for every key the
//! destination holds, and a hash only for the version the destination holds.
//!
//! CI runs 2,000 cases; set `RSE_CONVERGENCE_CASES` for longer local runs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::audience::{Audience, email_and_score, ids_in};
use common::checks::*;
use common::*;
use proptest::prelude::*;
use rse_core::memory::{MemoryDestination, MemoryPushdownSource, MemorySource, MemoryStateStore};
use rse_core::testing::FaultyDestination;
use rse_core::*;

#[derive(Debug, Clone)]
enum Edit {
    Upsert(i64, u8),
    Delete(i64),
}

#[derive(Debug, Clone)]
struct Faults {
    reject: Vec<i64>,
    invalid: Option<i64>,
    transient: Vec<u64>,
    after_apply: Vec<u64>,
    rate_limited: Vec<(u64, u64)>,
    crash_after: Option<u64>,
    /// Pushdown only: calls of `record_delivered` that fail, and whether `record_intents` fails once.
    delivered_failures: u64,
    intents_fail: bool,
}

#[derive(Debug, Clone)]
struct Case {
    initial: BTreeMap<i64, u8>,
    runs: Vec<(Vec<Edit>, Faults)>,
    batch_rows: usize,
    concurrency: usize,
    merge: bool,
    /// The destination commits the state with its rows (exactly-once).
    exactly_once: bool,
    /// The destination assigns record ids and deletes by them, as a CRM does (memos).
    memos: bool,
    /// The destination is an ad audience instead: a set of identifiers, two per record (one
    /// stable, one that changes with the record), removed by the identifiers kept as memos
    /// and recorded with each change's intent.
    audience: bool,
    /// The pushdown strategy over the source's delivered table.
    pushdown: bool,
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![3 => (0i64..40, 0u8..4).prop_map(|(k, v)| Edit::Upsert(k, v)), 1 => (0i64..40).prop_map(Edit::Delete)]
}

fn faults() -> impl Strategy<Value = Faults> {
    (
        prop::collection::vec(0i64..40, 0..3),
        prop::option::weighted(0.2, 0i64..40),
        prop::collection::vec(1u64..12, 0..4),
        prop::collection::vec(1u64..12, 0..2),
        prop::collection::vec((1u64..12, 0u64..5), 0..2),
        prop::option::weighted(0.5, 0u64..40),
        (0u64..3, prop::bool::weighted(0.15)),
    )
        .prop_map(
            |(
                reject,
                invalid,
                transient,
                after_apply,
                rate_limited,
                crash_after,
                (delivered_failures, intents_fail),
            )| {
                Faults {
                    reject,
                    invalid,
                    transient,
                    after_apply,
                    rate_limited,
                    crash_after,
                    delivered_failures,
                    intents_fail,
                }
            },
        )
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::btree_map(0i64..40, 0u8..4, 0..30),
        prop::collection::vec((prop::collection::vec(edit(), 0..12), faults()), 1..6),
        1usize..8,
        1usize..4,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.25),
        prop::bool::weighted(0.35),
    )
        .prop_map(|(initial, runs, batch_rows, concurrency, merge, exactly_once, memos, audience, pushdown)| {
            Case { initial, runs, batch_rows, concurrency, merge, exactly_once, memos, audience, pushdown }
        })
}

fn rows(table: &BTreeMap<i64, u8>) -> Vec<Record> {
    table.iter().map(|(&k, &v)| customer(k, f64::from(v))).collect()
}

fn cases() -> u32 {
    std::env::var("RSE_CONVERGENCE_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000)
}

/// The sync of `case` into `faulty`, with the faults of each run injected before it.
async fn sync_of<D: Destination + Clone + 'static>(
    case: &Case,
    source: &MemoryPushdownSource,
    state: &MemoryStateStore,
    faulty: &FaultyDestination<D>,
) -> SyncJob {
    let options = SyncOptions::default()
        .with_batch_rows(case.batch_rows)
        .with_max_concurrency(case.concurrency)
        .with_max_attempts(3)
        .with_linger(Duration::from_millis(1))
        .with_lease_ttl(TTL)
        .with_allow_empty_source(true)
        .with_diff_strategy(match (case.pushdown, case.merge) {
            (true, _) => DiffStrategy::Pushdown,
            (false, true) => DiffStrategy::Merge,
            (false, false) => DiffStrategy::Hash,
        });
    let builder = SyncJob::builder("customers");
    let builder = if case.pushdown { builder.source(source.clone()) } else { builder.source(source.rows().clone()) };
    builder.destination(faulty.clone()).state(state.clone()).mode(Mode::Mirror).options(options).build().await.unwrap()
}

const TTL: Duration = Duration::from_secs(60);

/// Runs the case's runs, each after its edits and with its faults, checking `after_each`
/// after every run; then a last run without faults, which must succeed. Returns the table.
async fn run_case<D: Destination + Clone + 'static>(
    case: &Case,
    source: &MemoryPushdownSource,
    faulty: &FaultyDestination<D>,
    sync: &SyncJob,
    after_each: impl Fn(),
) -> BTreeMap<i64, u8> {
    let mut table = case.initial.clone();
    for (edits, f) in &case.runs {
        for e in edits {
            match *e {
                Edit::Upsert(k, v) => table.insert(k, v),
                Edit::Delete(k) => table.remove(&k),
            };
        }
        source.rows().set_rows(rows(&table));
        faulty.lift();
        source.fail_delivered(f.delivered_failures);
        source.fail_intents(u64::from(f.intents_fail));
        let base = faulty.calls();
        for &k in &f.reject {
            faulty.reject_key(key(k), "injected refusal");
        }
        if let Some(k) = f.invalid {
            faulty.invalid_batch_key(key(k));
        }
        for &n in &f.transient {
            faulty.fail_write(base + n);
        }
        for &n in &f.after_apply {
            faulty.fail_write_after_apply(base + n);
        }
        for &(n, secs) in &f.rate_limited {
            faulty.rate_limit_write(base + n, (secs > 0).then(|| Duration::from_secs(secs)));
        }
        if let Some(n) = f.crash_after {
            faulty.crash_after_applied(n);
        }
        tokio::select! {
            report = sync.run() => {
                let report = report.unwrap();
                assert!(!matches!(report.status, RunStatus::Running));
            }
            () = faulty.crashed() => {
                // The process died: its lease lapses before anyone runs the sync again.
                tokio::time::sleep(TTL).await;
            }
        }
        after_each();
    }
    faulty.lift();
    source.fail_delivered(0);
    source.fail_intents(0);
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    table
}

/// The delivered table of a pushdown sync keeps a hash only where it is the hash of the row
/// the destination holds, and, once completed (its epoch set, so that runs read only what it
/// says changed), a row for every key the destination holds. A full re-diff in progress or
/// cut short records no intents: its table is not read until it completes.
fn delivered_table_covers_the_destination(source: &MemoryPushdownSource, dest: &MemoryDestination) {
    let table = source.table("customers").unwrap_or_default();
    for (key, record) in dest.records() {
        match table.rows.get(&key) {
            None if table.epoch.is_none() => {}
            None => panic!("the destination holds {key:?}, which the completed delivered table lacks"),
            Some(Some(hash)) => {
                assert_eq!(*hash, MemoryPushdownSource::hash_of(&record), "stale hash of {key:?}")
            }
            Some(None) => {}
        }
    }
    for (key, hash) in &table.rows {
        assert!(hash.is_none() || dest.records().contains_key(key), "a hash of {key:?}, which the destination lacks");
    }
}

async fn converge(case: Case) {
    if case.audience {
        return converge_audience(case).await;
    }
    let source = MemoryPushdownSource::new(MemorySource::new(customers_schema(), rows(&case.initial)));
    let state = MemoryStateStore::new();
    let dest = if case.memos {
        MemoryDestination::new()
            .with_capabilities(DestinationCapabilities::new(Op::ALL).with_idempotency_keys(true).with_memos(true))
    } else {
        MemoryDestination::new()
    };
    let dest = if case.exactly_once { dest.with_state_store(state.clone()) } else { dest };
    let faulty = FaultyDestination::new(dest.clone());
    let sync = sync_of(&case, &source, &state, &faulty).await;
    let table = run_case(&case, &source, &faulty, &sync, || {
        state_only_holds_what_the_destination_received("customers", &state, &dest);
        if case.exactly_once {
            state_equals_the_destination("customers", &state, &dest);
        }
        if case.pushdown {
            delivered_table_covers_the_destination(&source, &dest);
        }
    })
    .await;

    let want: BTreeMap<Key, Record> =
        rows(&table).into_iter().map(|r| (r.key(&customers_schema()).unwrap(), r)).collect();
    assert_eq!(dest.records(), want, "the destination does not equal the source");
    assert!(state.rejections("customers").is_empty(), "refused records left after the faults stopped");
    state_only_holds_what_the_destination_received("customers", &state, &dest);
    // Exactly-once leaves nothing in doubt: a crash or a lost acknowledgement never makes
    // the runner re-send what the destination holds.
    let ambiguous =
        !case.exactly_once && case.runs.iter().any(|(_, f)| f.crash_after.is_some() || !f.after_apply.is_empty());
    nothing_was_applied_twice(&dest, ambiguous);
    if case.memos {
        every_record_id_is_in_the_state("customers", &state, &dest);
    }
    let again = sync.run().await.unwrap();
    assert_eq!(again.counts.planned.total(), 0, "a run after convergence planned changes");
    if case.pushdown {
        delivered_table_covers_the_destination(&source, &dest);
        let pushdown = again.pushdown.unwrap();
        assert_eq!((pushdown.full_rediff, pushdown.rows_read), (None, 0), "{case:?}");
        // A full re-diff reads the model, not the delivered table: a key whose delete the
        // destination acknowledged in a run that crashed before recording it stays in the
        // table until the next pushdown run hands it out as vanished and settles it.
        let third = sync.run().await.unwrap();
        let pushdown = third.pushdown.unwrap();
        assert_eq!((pushdown.full_rediff, pushdown.rows_read, pushdown.vanished), (None, 0, 0), "{case:?}");
        assert_eq!(third.counts.planned.total(), 0);
    }
}

/// An audience converges to exactly the identifiers of the source's rows: no member lost,
/// none left behind, whatever crashed and whichever answers were lost on the way.
async fn converge_audience(case: Case) {
    let source = MemoryPushdownSource::new(MemorySource::new(customers_schema(), rows(&case.initial)));
    let state = MemoryStateStore::new();
    let dest = Audience::new(true, email_and_score);
    let faulty = FaultyDestination::new(dest.clone());
    let sync = sync_of(&case, &source, &state, &faulty).await;
    let table = run_case(&case, &source, &faulty, &sync, || {}).await;
    assert_eq!(dest.members(), dest.expected(&rows(&table)), "the audience does not equal the segment");
    assert!(state.rejections("customers").is_empty(), "refused records left after the faults stopped");
    // Every key's memo covers the identifiers its member holds (it may name more: those of
    // a change that was sent with its intent and then refused, which the platform may hold).
    for entry in state.snapshot("customers").into_iter().filter(|e| e.fingerprint.is_some()) {
        let record = rows(&table).into_iter().find(|r| r.key(&customers_schema()).unwrap() == entry.key).unwrap();
        let memo = ids_in(entry.memo.as_ref());
        assert!(email_and_score(&record).is_subset(&memo), "memo of {:?}: {memo:?}", entry.key);
    }
    let again = sync.run().await.unwrap();
    assert_eq!(again.counts.planned.total(), 0, "a run after convergence planned changes");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn mirror_runs_converge_under_faults_and_crashes(case in case()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        runtime.block_on(converge(case));
    }
}

/// A case the property found: a pushdown run whose record_intents failed, then a run that
/// crashed after applying changes (exactly-once), then a clean run.
#[test]
fn pushdown_after_failed_intents_and_a_crash_converges_and_reads_nothing_more() {
    let faults = |f: Faults| f;
    let none = Faults {
        reject: vec![],
        invalid: None,
        transient: vec![],
        after_apply: vec![],
        rate_limited: vec![],
        crash_after: None,
        delivered_failures: 0,
        intents_fail: false,
    };
    let case = Case {
        initial: [(2, 0), (7, 1), (12, 0), (21, 1), (22, 2), (26, 3), (29, 1), (30, 2), (31, 0), (34, 1), (35, 2)]
            .into_iter()
            .collect(),
        runs: vec![
            (
                vec![Edit::Upsert(2, 2), Edit::Upsert(13, 1), Edit::Upsert(9, 0), Edit::Upsert(36, 3)],
                faults(Faults {
                    rate_limited: vec![(2, 0)],
                    delivered_failures: 1,
                    intents_fail: true,
                    ..none.clone()
                }),
            ),
            (
                vec![
                    Edit::Upsert(26, 3),
                    Edit::Delete(31),
                    Edit::Upsert(0, 0),
                    Edit::Upsert(27, 3),
                    Edit::Upsert(9, 1),
                    Edit::Upsert(13, 1),
                    Edit::Upsert(16, 0),
                    Edit::Upsert(1, 2),
                    Edit::Delete(26),
                ],
                Faults { after_apply: vec![3], crash_after: Some(8), delivered_failures: 1, ..none.clone() },
            ),
        ],
        batch_rows: 6,
        concurrency: 2,
        merge: true,
        exactly_once: true,
        memos: false,
        audience: false,
        pushdown: true,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    runtime.block_on(converge(case));
}
