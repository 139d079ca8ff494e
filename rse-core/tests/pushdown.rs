//! The pushdown strategy: only new, changed and vanished rows leave the source, rse's own
//! diff still decides what is sent, and a change of configuration or state re-diffs in full.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use rse_core::memory::{MemoryDestination, MemoryPushdownSource, MemorySource, MemoryStateStore};
use rse_core::transform::{Constant, Filter, FnTransform};
use rse_core::*;

struct World {
    source: MemoryPushdownSource,
    destination: MemoryDestination,
    state: MemoryStateStore,
}

impl World {
    fn new(rows: Vec<Record>) -> Self {
        Self {
            source: MemoryPushdownSource::new(MemorySource::new(customers_schema(), rows)),
            destination: MemoryDestination::new(),
            state: MemoryStateStore::new(),
        }
    }

    fn builder(&self, mode: Mode) -> SyncBuilder {
        SyncJob::builder("customers")
            .source(self.source.clone())
            .destination(self.destination.clone())
            .state(self.state.clone())
            .mode(mode)
            .options(SyncOptions::default().with_diff_strategy(DiffStrategy::Pushdown))
    }

    async fn sync(&self, mode: Mode) -> SyncJob {
        self.builder(mode).build().await.unwrap()
    }

    fn rows(&self) -> Vec<Record> {
        self.source.rows().rows()
    }
}

fn pushdown(report: &SyncReport) -> &PushdownReport {
    report.pushdown.as_ref().expect("a pushdown sync reports what its pushdown did")
}

#[tokio::test]
async fn only_changed_rows_leave_the_source_and_a_change_without_timestamp_is_caught() {
    let w = World::new(customers(100));
    let sync = w.sync(Mode::Mirror).await;

    let first = sync.run().await.unwrap();
    assert_eq!(first.status, RunStatus::Succeeded);
    assert!(pushdown(&first).full_rediff.as_deref().unwrap().contains("no pushdown epoch"), "{first:?}");
    assert!(pushdown(&first).completed);
    assert_eq!(first.counts.applied.insert, 100);
    assert_eq!(w.source.rows_handed_out(), 100);

    let quiet = sync.run().await.unwrap();
    assert_eq!(quiet.diff_strategy, "pushdown");
    assert_eq!(pushdown(&quiet).full_rediff, None);
    assert_eq!((pushdown(&quiet).rows_read, quiet.counts.planned.total()), (0, 0));
    assert_eq!(w.source.rows_handed_out(), 100, "an unchanged model hands out no row");

    // The same updated_at: only the warehouse's hash sees the change.
    w.source.rows().upsert(customer(5, 0.99));
    w.source.rows().remove(&key(7));
    w.source.rows().upsert(customer(101, 0.5));
    let changed = sync.run().await.unwrap();
    assert_eq!(changed.status, RunStatus::Succeeded, "{changed:?}");
    assert_eq!((pushdown(&changed).rows_read, pushdown(&changed).vanished), (2, 1));
    assert_eq!(w.source.rows_handed_out(), 102);
    let applied = changed.counts.applied;
    assert_eq!((applied.insert, applied.update, applied.delete), (1, 1, 1));
    assert_eq!(w.destination.records(), by_key(&w.rows()));

    let after = sync.run().await.unwrap();
    assert_eq!((pushdown(&after).rows_read, pushdown(&after).vanished, after.counts.planned.total()), (0, 0, 0));
}

#[tokio::test]
async fn a_transform_change_re_diffs_in_full_once_then_pushdown_again() {
    let w = World::new(customers(20));
    let gold = w.builder(Mode::Upsert).transform(Constant::new("tier", "gold")).build().await.unwrap();
    gold.run().await.unwrap();
    assert_eq!(pushdown(&gold.run().await.unwrap()).rows_read, 0);

    let platinum = w.builder(Mode::Upsert).transform(Constant::new("tier", "platinum")).build().await.unwrap();
    let changed = platinum.run().await.unwrap();
    assert!(pushdown(&changed).full_rediff.as_deref().unwrap().contains("transforms"), "{changed:?}");
    assert_eq!(changed.counts.applied.update, 20, "every record changed after transforms");
    assert_eq!(pushdown(&changed).rows_read, 20);
    let next = platinum.run().await.unwrap();
    assert_eq!(pushdown(&next).full_rediff, None);
    assert_eq!((pushdown(&next).rows_read, next.counts.planned.total()), (0, 0));
    let held = w.destination.records();
    assert!(held.values().all(|r| r.values[4] == Value::from("platinum")));
}

#[tokio::test]
async fn a_state_reset_or_a_lost_table_forces_a_full_re_diff() {
    let w = World::new(customers(10));
    w.sync(Mode::Mirror).await.run().await.unwrap();

    // A new state store: the state does not know what the table says was delivered.
    let fresh = World { source: w.source.clone(), destination: w.destination.clone(), state: MemoryStateStore::new() };
    let sync = fresh.sync(Mode::Mirror).await;
    let reset = sync.run().await.unwrap();
    assert!(pushdown(&reset).full_rediff.as_deref().unwrap().contains("state"), "{reset:?}");
    assert_eq!(pushdown(&reset).rows_read, 10);
    assert_eq!(pushdown(&sync.run().await.unwrap()).rows_read, 0);

    w.source.drop_tables();
    let lost = sync.run().await.unwrap();
    assert!(pushdown(&lost).full_rediff.as_deref().unwrap().contains("delivered table"), "{lost:?}");
    assert_eq!((pushdown(&lost).rows_read, lost.counts.planned.total()), (10, 0));
    assert_eq!(pushdown(&sync.run().await.unwrap()).rows_read, 0);
}

#[tokio::test]
async fn a_lost_record_of_delivery_re_reads_and_sends_nothing_twice() {
    let w = World::new(customers(30));
    let sync = w.sync(Mode::Mirror).await;
    sync.run().await.unwrap();
    let sent = w.destination.deliveries().len();

    for id in [3, 4, 5] {
        w.source.rows().upsert(customer(id, 0.7));
    }
    w.source.rows().remove(&key(9));
    // As a crash between the acknowledgement and the write to the source's table.
    w.source.fail_delivered(100);
    let delivered = sync.run().await.unwrap();
    assert_eq!(delivered.status, RunStatus::Succeeded, "{delivered:?}");
    assert_eq!(delivered.counts.applied.total(), 4);
    assert_eq!(pushdown(&delivered).record_failures, 4);
    w.source.fail_delivered(0);

    let reread = sync.run().await.unwrap();
    assert_eq!((pushdown(&reread).rows_read, pushdown(&reread).vanished), (3, 1), "{reread:?}");
    assert_eq!(reread.counts.planned.total(), 0, "what the destination holds is not sent again");
    assert_eq!(w.destination.deliveries().len(), sent + 4);
    assert_eq!(w.destination.records(), by_key(&w.rows()));
    let settled = sync.run().await.unwrap();
    assert_eq!((pushdown(&settled).rows_read, pushdown(&settled).vanished), (0, 0));
}

#[tokio::test]
async fn a_full_re_diff_whose_hashes_were_not_recorded_runs_again_and_misses_no_delete() {
    let w = World::new(customers(10));
    let sync = w.sync(Mode::Mirror).await;
    // The first run (a full re-diff) delivers every row, but recording them in the source's
    // table fails: the table does not know the keys the destination now holds.
    w.source.fail_delivered(100);
    let first = sync.run().await.unwrap();
    assert_eq!((first.status.clone(), first.counts.applied.insert), (RunStatus::Succeeded, 10), "{first:?}");
    assert!(pushdown(&first).record_failures > 0);
    assert!(!pushdown(&first).completed, "a full re-diff with hashes missing is not completed");
    w.source.fail_delivered(0);

    // A row leaves the model: the next run re-diffs in full again, and the delete goes out.
    w.source.rows().remove(&key(3));
    let again = sync.run().await.unwrap();
    assert!(pushdown(&again).full_rediff.is_some(), "{again:?}");
    assert!(pushdown(&again).completed);
    assert_eq!((again.counts.applied.delete, again.counts.planned.insert), (1, 0), "{again:?}");
    assert_eq!(w.destination.records(), by_key(&w.rows()));

    // Then only what changes leaves the source, a delete included.
    w.source.rows().remove(&key(4));
    let changed = sync.run().await.unwrap();
    assert!(pushdown(&changed).full_rediff.is_none(), "{changed:?}");
    assert_eq!((pushdown(&changed).rows_read, pushdown(&changed).vanished), (0, 1));
    assert_eq!(w.destination.records(), by_key(&w.rows()));
}

#[tokio::test]
async fn a_failed_intent_keeps_the_batch_from_going_out() {
    let w = World::new(customers(10));
    let sync = w.sync(Mode::Mirror).await;
    sync.run().await.unwrap();
    let sent = w.destination.deliveries().len();

    w.source.rows().upsert(customer(2, 0.9));
    w.source.fail_intents(1);
    let failed = sync.run().await.unwrap();
    assert!(matches!(&failed.status, RunStatus::Failed { kind: FailureKind::Source, .. }), "{failed:?}");
    assert_eq!(w.destination.deliveries().len(), sent, "nothing went out without its intent");

    let retried = sync.run().await.unwrap();
    assert_eq!((retried.status, retried.counts.applied.update), (RunStatus::Succeeded, 1));
    assert_eq!(w.destination.records(), by_key(&w.rows()));
}

#[tokio::test]
async fn rows_a_transform_leaves_out_are_deleted_then_not_read_again() {
    let w = World::new(customers(20));
    let sync = w.builder(Mode::Mirror).transform(Filter::suppress("email", ["user3@example.com"])).build().await;
    let sync = sync.unwrap();
    assert_eq!(sync.run().await.unwrap().counts.applied.insert, 19);

    let mut moved = customer(4, 0.04);
    moved.values[1] = Value::from("user3@example.com");
    w.source.rows().upsert(moved);
    let run = sync.run().await.unwrap();
    // Row 3 (left out, never delivered) and row 4 (changed, now left out).
    assert_eq!(pushdown(&run).rows_read, 2, "{run:?}");
    assert_eq!(run.counts.applied.delete, 1);
    assert!(!w.destination.records().contains_key(&key(4)));
    let quiet = sync.run().await.unwrap();
    assert_eq!((pushdown(&quiet).rows_read, quiet.counts.planned.total()), (0, 0));
}

#[tokio::test]
async fn the_delete_guard_weighs_vanished_keys() {
    let w = World::new(customers(100));
    let sync = w.sync(Mode::Mirror).await;
    sync.run().await.unwrap();

    let kept: Vec<Record> = customers(100).into_iter().filter(|r| r.values[0] != Value::Int(1)).take(39).collect();
    w.source.rows().set_rows(kept.clone());
    let withheld = sync.run().await.unwrap();
    assert!(matches!(withheld.status, RunStatus::DeletesWithheld { .. }), "{withheld:?}");
    assert_eq!((withheld.counts.withheld, withheld.counts.applied.delete), (61, 0));

    w.source.rows().set_rows(Vec::new());
    let empty = sync.run().await.unwrap();
    assert!(matches!(empty.status, RunStatus::DeletesWithheld { .. }), "{empty:?}");
    assert_eq!(w.destination.records().len(), 100);

    let mut most = customers(100);
    most.retain(|r| !matches!(r.values[0], Value::Int(i) if i % 10 == 0));
    w.source.rows().set_rows(most.clone());
    let churn = sync.run().await.unwrap();
    assert_eq!((churn.status.clone(), churn.counts.applied.delete), (RunStatus::Succeeded, 10), "{churn:?}");
    assert_eq!(w.destination.records(), by_key(&most));
}

#[tokio::test]
async fn refused_rows_are_read_again_until_delivered() {
    let w = World::new(customers(10));
    let faulty = rse_core::testing::FaultyDestination::new(w.destination.clone());
    let sync = SyncJob::builder("customers")
        .source(w.source.clone())
        .destination(faulty.clone())
        .state(w.state.clone())
        .mode(Mode::Mirror)
        .options(SyncOptions::default().with_diff_strategy(DiffStrategy::Pushdown))
        .build()
        .await
        .unwrap();
    faulty.reject_key(key(4), "injected refusal");
    let first = sync.run().await.unwrap();
    assert_eq!(first.counts.rejected.total(), 1);
    for _ in 0..2 {
        let again = sync.run().await.unwrap();
        assert_eq!(pushdown(&again).rows_read, 1, "the refused row is read again: {again:?}");
        assert_eq!(again.counts.rejected.total(), 1);
    }
    faulty.lift();
    let delivered = sync.run().await.unwrap();
    assert_eq!(delivered.counts.applied.insert, 1);
    assert_eq!(w.destination.records(), by_key(&w.rows()));
    assert_eq!(pushdown(&sync.run().await.unwrap()).rows_read, 0);
}

#[tokio::test]
async fn pushdown_refuses_what_it_cannot_serve() {
    let w = World::new(customers(3));
    let message = |r: Result<SyncJob, ConfigError>| r.unwrap_err().to_string();

    let plain = SyncJob::builder("customers")
        .source(MemorySource::new(customers_schema(), customers(3)))
        .destination(w.destination.clone())
        .state(w.state.clone())
        .options(SyncOptions::default().with_diff_strategy(DiffStrategy::Pushdown))
        .build()
        .await;
    assert!(message(plain).contains("cannot diff in its store"));

    let cursor = MemoryPushdownSource::new(
        w.source.rows().clone().with_capabilities(SourceCapabilities::default().with_cursor_field("updated_at")),
    );
    let incremental = SyncJob::builder("customers")
        .source(cursor)
        .destination(w.destination.clone())
        .state(w.state.clone())
        .options(SyncOptions::default().with_diff_strategy(DiffStrategy::Pushdown))
        .build()
        .await;
    assert!(message(incremental).contains("cursor"));

    let closure = w.builder(Mode::Upsert).transform(FnTransform::new("tidy", |r, _| Ok(Some(r.clone())))).build().await;
    assert!(message(closure).contains("`tidy` cannot describe its configuration"));

    let partitioned = w.builder(Mode::Upsert).partition(Partition::new(0, 2).unwrap()).build().await;
    assert!(message(partitioned).contains("partitioned"));

    // Auto never picks pushdown: the source's store is not written to.
    let auto = SyncJob::builder("customers")
        .source(w.source.clone())
        .destination(w.destination.clone())
        .state(w.state.clone())
        .build()
        .await
        .unwrap();
    assert_ne!(auto.run().await.unwrap().diff_strategy, "pushdown");
    assert_eq!(w.source.table("customers"), None);
}

#[tokio::test]
async fn a_dry_run_reads_what_changed_and_writes_nothing_to_the_source() {
    let w = World::new(customers(10));
    w.sync(Mode::Mirror).await.run().await.unwrap();
    let table = w.source.table("customers").unwrap();

    w.source.rows().upsert(customer(2, 0.9));
    w.source.rows().remove(&key(3));
    let options = SyncOptions::default().with_diff_strategy(DiffStrategy::Pushdown).with_dry_run(true);
    let dry = w.builder(Mode::Mirror).options(options).build().await.unwrap();
    let report = dry.run().await.unwrap();
    assert_eq!(report.diff_strategy, "pushdown");
    assert_eq!((report.counts.planned.update, report.counts.planned.delete), (1, 1));
    assert_eq!(w.source.table("customers").unwrap(), table, "a dry run leaves the delivered table as it was");

    let real = w.sync(Mode::Mirror).await.run().await.unwrap();
    assert_eq!((real.counts.applied.update, real.counts.applied.delete), (1, 1));
    assert_eq!(w.destination.records(), by_key(&w.rows()));
}

#[tokio::test]
async fn rows_outside_a_canary_are_read_again_once_it_widens() {
    let w = World::new(customers(40));
    w.sync(Mode::Upsert).await.run().await.unwrap();
    for id in 1..=40 {
        w.source.rows().upsert(customer(id, 0.5));
    }
    let narrow = SyncOptions::default().with_diff_strategy(DiffStrategy::Pushdown).with_canary(0.5);
    let canary = w.builder(Mode::Upsert).options(narrow).build().await.unwrap().run().await.unwrap();
    let inside = canary.counts.applied.update;
    assert!(inside > 0 && inside < 40, "{canary:?}");
    assert_eq!(pushdown(&canary).full_rediff, None, "the canary is not part of the epoch");

    let wide = w.sync(Mode::Upsert).await.run().await.unwrap();
    assert_eq!(pushdown(&wide).rows_read, 40 - inside, "only the rows left outside are read again");
    assert_eq!(wide.counts.applied.update, 40 - inside);
    assert_eq!(w.destination.records(), by_key(&w.rows()));
}

/// A pushdown read's changed rows go out while the read goes on: with a linger far longer
/// than the run, the first change is written at once rather than held for a full batch. A
/// destination with a rate limit keeps whole batches (its requests are what it spares).
#[tokio::test]
async fn changed_rows_go_out_without_waiting_for_a_full_batch_unless_requests_are_rationed() {
    for (limit, eager) in [(None, true), (Some(RateLimit::per_second(1_000)), false)] {
        let w = World::new(customers(50));
        let destination = MemoryDestination::new().with_capabilities(
            DestinationCapabilities::new(Op::ALL).with_idempotency_keys(true).with_rate_limit(limit),
        );
        let sync = w
            .builder(Mode::Mirror)
            .destination(destination)
            .options(
                SyncOptions::default()
                    .with_diff_strategy(DiffStrategy::Pushdown)
                    .with_batch_rows(1_000)
                    .with_linger(std::time::Duration::from_secs(3_600))
                    .with_read_batch_size(5),
            )
            .build()
            .await
            .unwrap();
        let first = sync.run().await.unwrap();
        assert_eq!(first.batches, 1, "a full re-diff keeps whole batches: {first:?}");
        for id in 1..=20 {
            w.source.rows().upsert(customer(id, 2.0 + id as f64));
        }
        let changed = sync.run().await.unwrap();
        assert_eq!(changed.status, RunStatus::Succeeded, "{changed:?}");
        assert_eq!(changed.counts.applied.update, 20);
        if eager {
            assert!(changed.batches > 1, "the changes waited for one batch: {changed:?}");
        } else {
            assert_eq!(changed.batches, 1, "{changed:?}");
        }
    }
}
