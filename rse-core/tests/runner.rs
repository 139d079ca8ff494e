//! The runner end to end over the in-memory implementations and injected faults.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use rse_core::memory::{MemoryDestination, MemorySource, MemoryStateStore};
use rse_core::testing::FaultyDestination;
use rse_core::*;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

fn opts() -> SyncOptions {
    SyncOptions::default().with_batch_rows(10).with_linger(Duration::from_millis(5))
}

#[tokio::test]
async fn only_changes_are_sent_and_a_second_run_plans_nothing() {
    let w = World::new(customers(100));
    let sync = w.sync(Mode::Upsert, opts()).await;

    let first = sync.run().await.unwrap();
    assert_eq!(first.status, RunStatus::Succeeded);
    assert_eq!(first.counts.read, 100);
    assert_eq!(first.counts.applied.insert, 100);
    assert_eq!(first.batches, 10);
    assert_eq!(w.destination.records(), by_key(&w.source.rows()));

    let second = sync.run().await.unwrap();
    assert_eq!(second.counts.unchanged, 100);
    assert_eq!(second.counts.planned.total(), 0);
    assert_eq!(second.batches, 0);

    w.source.upsert(customer(7, 0.99));
    w.source.upsert(customer(101, 0.5));
    w.source.remove(&key(3));
    let third = sync.run().await.unwrap();
    assert_eq!((third.counts.applied.insert, third.counts.applied.update), (1, 1));
    assert_eq!(third.counts.applied.delete, 0, "upsert never deletes");
    assert_eq!(third.counts.unchanged, 98);
    assert_eq!(score_of(&w.destination.records()[&key(7)]), 0.99);
    assert!(w.destination.records().contains_key(&key(3)));

    let runs = w.state.runs("customers", 10).await.unwrap();
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[0].run_id, third.run_id);
    assert_eq!(runs[0], third, "the run history holds the final report");
}

#[tokio::test]
async fn both_diff_strategies_deliver_the_same_result() {
    for strategy in [DiffStrategy::Hash, DiffStrategy::Merge] {
        let w = World::new(customers(57));
        let sync = w.sync(Mode::Mirror, opts().with_diff_strategy(strategy)).await;
        let first = sync.run().await.unwrap();
        assert_eq!(first.diff_strategy, if strategy == DiffStrategy::Hash { "hash" } else { "merge" });
        w.source.remove(&key(10));
        w.source.remove(&key(57));
        w.source.upsert(customer(20, 0.0));
        w.source.upsert(customer(99, 0.0));
        let second = sync.run().await.unwrap();
        assert_eq!(second.counts.applied, OpCounts { insert: 1, update: 1, delete: 2, append: 0 }, "{strategy:?}");
        assert_eq!(w.destination.records(), by_key(&w.source.rows()), "{strategy:?}");
    }
}

#[tokio::test]
async fn mirror_deletes_only_what_this_sync_delivered() {
    let w = World::new(customers(5));
    // A record another system put in the destination.
    w.destination.seed(key(1000), customer(1000, 0.0));
    let sync = w.sync(Mode::Mirror, opts()).await;
    sync.run().await.unwrap();
    w.source.remove(&key(2));
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.applied.delete, 1);
    let held = w.destination.records();
    assert!(!held.contains_key(&key(2)));
    assert!(held.contains_key(&key(1000)), "a record this sync never wrote was deleted");

    // A deleted key that comes back is inserted again, under a new idempotency key.
    w.source.upsert(customer(2, 0.02));
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.applied.insert, 1);
    assert!(w.destination.records().contains_key(&key(2)));
    let inserts: Vec<_> =
        w.destination.deliveries().into_iter().filter(|d| d.key == key(2) && d.op == Op::Insert).collect();
    assert_eq!(inserts.len(), 2);
    assert_ne!(inserts[0].idempotency_key, inserts[1].idempotency_key);
    assert!(inserts.iter().all(|d| d.applied), "the re-insert was dropped as a duplicate");
}

#[tokio::test]
async fn a_value_changed_and_changed_back_is_delivered_each_time() {
    let w = World::new(vec![customer(1, 0.1)]);
    let sync = w.sync(Mode::Upsert, opts()).await;
    for score in [0.1, 0.2, 0.1, 0.2] {
        w.source.set_rows(vec![customer(1, score)]);
        sync.run().await.unwrap();
        assert_eq!(score_of(&w.destination.records()[&key(1)]), score);
    }
}

#[tokio::test]
async fn dry_run_plans_and_reports_but_sends_and_commits_nothing() {
    let w = World::new(customers(20));
    let dry = w.sync(Mode::Mirror, opts().with_dry_run(true)).await;
    let report = dry.run().await.unwrap();
    assert!(report.dry_run);
    assert_eq!(report.counts.planned.insert, 20);
    assert_eq!(report.counts.applied.total(), 0);
    assert_eq!(w.destination.writes(), 0);
    assert!(w.state.snapshot("customers").is_empty());
    assert!(w.state.runs("customers", 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_delete_guard_withholds_mass_deletes_and_says_why() {
    let w = World::new(customers(10));
    let sync = w.sync(Mode::Mirror, opts().with_max_deletes(Some(MaxDeletes::Count(2)))).await;
    sync.run().await.unwrap();

    for id in 1..=3 {
        w.source.remove(&key(id));
    }
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.withheld, 3);
    assert_eq!(report.counts.applied.delete, 0);
    assert!(report.withheld_reason.as_deref().unwrap().contains("max_deletes of 2"));
    assert_eq!(w.destination.records().len(), 10);

    // An empty source never wipes the destination, whatever the guard.
    let w = World::new(customers(10));
    let sync = w.sync(Mode::Mirror, opts()).await;
    sync.run().await.unwrap();
    w.source.set_rows(Vec::new());
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.withheld, 10);
    assert!(report.withheld_reason.unwrap().contains("allow_empty_source"));
    assert_eq!(w.destination.records().len(), 10);

    // A fraction guard.
    let w = World::new(customers(10));
    let sync = w.sync(Mode::Mirror, opts().with_max_deletes(Some(MaxDeletes::Fraction(0.5)))).await;
    sync.run().await.unwrap();
    w.source.set_rows(customers(6));
    assert_eq!(sync.run().await.unwrap().counts.applied.delete, 4);
    w.source.set_rows(customers(2));
    assert_eq!(sync.run().await.unwrap().counts.withheld, 4, "4 of 6 is above half");
}

#[tokio::test]
async fn a_refused_record_is_kept_with_its_reason_and_retried_until_it_succeeds() {
    let w = World::new(customers(10));
    let faulty = FaultyDestination::new(w.destination.clone());
    faulty.reject_key(key(4), "email domain is blocked");
    let sync = w.sync_to(faulty.clone(), opts()).await;

    let first = sync.run().await.unwrap();
    assert_eq!(first.status, RunStatus::CompletedWithRejections);
    assert_eq!((first.counts.applied.insert, first.counts.rejected.insert), (9, 1));
    assert_eq!(first.rejections.len(), 1);
    assert_eq!(first.rejections[0].reason, "email domain is blocked");
    assert_eq!(first.rejections[0].key, key(4).redacted());
    let rejected = w.state.rejections("customers");
    assert_eq!(rejected.len(), 1);
    assert_eq!((rejected[0].attempts, rejected[0].reason.as_str()), (1, "email domain is blocked"));
    assert!(rejected[0].record.is_some(), "the refused payload is kept");

    // Unchanged, the refused record is tried again every run.
    let second = sync.run().await.unwrap();
    assert_eq!(second.counts.rejected.insert, 1);
    assert_eq!(second.counts.unchanged, 9);
    assert_eq!(w.state.rejections("customers")[0].attempts, 2);

    faulty.lift();
    let third = sync.run().await.unwrap();
    assert_eq!(third.status, RunStatus::Succeeded);
    assert_eq!(third.counts.applied.insert, 1);
    assert_eq!(third.counts.recovered, 1);
    assert!(w.state.rejections("customers").is_empty());
    assert_eq!(w.destination.records(), by_key(&w.source.rows()));
}

#[tokio::test]
async fn a_refused_record_that_disappears_from_the_source_is_cleared() {
    let w = World::new(customers(3));
    let faulty = FaultyDestination::new(w.destination.clone());
    faulty.reject_key(key(2), "nope");
    let sync = w.sync_to(faulty, opts()).await;
    sync.run().await.unwrap();
    assert_eq!(w.state.rejections("customers").len(), 1);
    w.source.remove(&key(2));
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.recovered, 1);
    assert!(w.state.rejections("customers").is_empty());
}

#[tokio::test(start_paused = true)]
async fn transient_failures_and_rate_limits_are_retried_until_everything_lands() {
    let w = World::new(customers(50));
    let faulty = FaultyDestination::new(w.destination.clone());
    faulty.fail_write(1).fail_write(2).fail_write_after_apply(4).rate_limit_write(6, Some(Duration::from_secs(7)));
    let sync = w.sync_to(faulty.clone(), opts().with_max_concurrency(1)).await;
    let started = Instant::now();
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(report.counts.applied.insert, 50);
    assert_eq!(report.retries, 4);
    assert_eq!(report.rate_limit_waits, 1);
    assert!(report.rate_limit_wait >= Duration::from_secs(7), "{:?}", report.rate_limit_wait);
    assert!(started.elapsed() >= Duration::from_secs(7), "Retry-After was not honoured");
    assert_eq!(w.destination.records(), by_key(&w.source.rows()));
    // The batch applied before its timeout was sent again with the same idempotency keys,
    // and the destination dropped the repeats.
    let deliveries = w.destination.deliveries();
    assert_eq!(deliveries.iter().filter(|d| d.applied).count(), 50);
    assert_eq!(deliveries.iter().filter(|d| !d.applied).count(), 10);
}

#[tokio::test(start_paused = true)]
async fn retry_after_pauses_every_worker() {
    let w = World::new(customers(80));
    let timed = TimedDestination::new(w.destination.clone());
    let faulty = FaultyDestination::new(timed.clone());
    faulty.rate_limit_write(1, Some(Duration::from_secs(30)));
    let sync = w.sync_to(faulty, opts().with_max_concurrency(4)).await;
    let started = Instant::now();
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.applied.insert, 80);
    // Writes 2–4 went out together with write 1; everything after the 429 waited for it.
    let times = timed.times();
    let after_pause = times.iter().filter(|t| **t >= started + Duration::from_secs(30)).count();
    assert!(after_pause >= times.len() - 3, "{times:?}");
}

#[tokio::test(start_paused = true)]
async fn the_destination_rate_limit_is_never_exceeded() {
    let w = World::new(customers(200));
    let dest = MemoryDestination::new().with_capabilities(
        DestinationCapabilities::new(Op::ALL)
            .with_rate_limit(Some(RateLimit::per_second(5)))
            .with_max_batch_rows(5)
            .with_max_concurrency(8),
    );
    let timed = TimedDestination::new(dest.clone());
    let sync = w.sync_to(timed.clone(), opts().with_max_concurrency(8)).await;
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.applied.insert, 200);
    let times = timed.times();
    assert_eq!(times.len(), 40);
    for (i, t) in times.iter().enumerate() {
        let within = times[i..].iter().filter(|u| **u < *t + Duration::from_secs(1)).count();
        assert!(within <= 5, "{within} writes within one second");
    }
    // And the quota is used: 40 writes at 5/s take about 8 s, not much more.
    let span = *times.last().unwrap() - times[0];
    assert!(span <= Duration::from_millis(8_000), "{span:?}");
    assert!(report.rate_limit_wait > Duration::ZERO);
}

#[tokio::test]
async fn an_invalid_batch_is_bisected_down_to_the_bad_records() {
    let w = World::new(customers(100));
    let faulty = FaultyDestination::new(w.destination.clone());
    faulty.invalid_batch_key(key(37)).invalid_batch_key(key(38));
    let sync = w.sync_to(faulty, opts().with_batch_rows(50)).await;
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.applied.insert, 98);
    assert_eq!(report.counts.rejected.insert, 2);
    let rejected: Vec<Key> = w.state.rejections("customers").into_iter().map(|r| r.key).collect();
    assert_eq!(rejected, vec![key(37), key(38)]);
}

#[tokio::test]
async fn retryable_rejections_are_retried_within_the_run() {
    let w = World::new(customers(5));
    let faulty = FaultyDestination::new(w.destination.clone());
    faulty.reject_key_retryable(key(3), 2);
    let sync = w.sync_to(faulty, opts().with_initial_backoff(Duration::from_millis(1))).await;
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(report.counts.applied.insert, 5);
    assert_eq!(report.retries, 2);
}

#[tokio::test(start_paused = true)]
async fn repeated_failure_opens_the_circuit_and_ends_the_run_cleanly() {
    let w = World::new(customers(100));
    let faulty = FaultyDestination::new(w.destination.clone());
    for n in 1..=1_000 {
        faulty.fail_write(n);
    }
    let sync = w.sync_to(faulty.clone(), opts().with_max_attempts(3).with_max_concurrency(1)).await;
    let report = sync.run().await.unwrap();
    assert!(matches!(report.status, RunStatus::CircuitOpen { .. }), "{:?}", report.status);
    assert_eq!(report.counts.applied.total(), 0);
    assert_eq!(report.counts.undelivered, 100);
    assert_eq!(faulty.calls(), 9, "three batches of three attempts, then the circuit opened");
    assert_eq!(live(&w.state), 0, "nothing advanced without an acknowledgement");

    faulty.lift();
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(w.destination.records(), by_key(&w.source.rows()));
}

#[tokio::test]
async fn unauthorized_ends_the_run_at_once() {
    let w = World::new(customers(30));
    let faulty = FaultyDestination::new(w.destination.clone());
    faulty.fatal_write(2);
    let sync = w.sync_to(faulty, opts().with_max_concurrency(1)).await;
    let report = sync.run().await.unwrap();
    assert!(matches!(report.status, RunStatus::Failed { .. }));
    assert_eq!(report.counts.applied.insert, 10);
    assert_eq!(live(&w.state), 10);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_run_commits_what_was_acknowledged() {
    let w = World::new(customers(100));
    let faulty = FaultyDestination::new(w.destination.clone());
    faulty.latency(Duration::from_secs(1));
    let sync = w.sync_to(faulty.clone(), opts().with_max_concurrency(1)).await;
    let cancel = CancellationToken::new();
    let canceller = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(3_500)).await;
        canceller.cancel();
    });
    let report = sync.run_with_cancel(cancel).await.unwrap();
    assert_eq!(report.status, RunStatus::Cancelled);
    let applied = report.counts.applied.insert;
    assert!((30..=40).contains(&applied), "{applied}");
    assert_eq!(live(&w.state), applied as usize);
    assert_eq!(w.destination.records().len() as u64, applied);

    faulty.lift();
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.applied.insert, 100 - applied);
    assert_eq!(w.destination.records(), by_key(&w.source.rows()));
}

#[tokio::test(start_paused = true)]
async fn after_a_crash_the_next_run_sends_exactly_what_was_not_acknowledged() {
    let w = World::new(customers(100));
    let faulty = FaultyDestination::new(w.destination.clone());
    let ttl = Duration::from_secs(60);
    let build = |holder: &str| {
        SyncJob::builder("customers")
            .source(w.source.clone())
            .destination(faulty.clone())
            .state(w.state.clone())
            .options(opts().with_lease_ttl(ttl).with_holder(holder.to_owned()).with_max_concurrency(1))
            .build()
    };
    let first = build("runner-a").await.unwrap();
    faulty.crash_after_applied(35);
    tokio::select! {
        _ = first.run() => panic!("the run should have crashed"),
        () = faulty.crashed() => {}
    }
    // The destination applied 35 changes; the state has only the batches committed before.
    assert_eq!(w.destination.records().len(), 35);
    assert_eq!(live(&w.state), 30);
    // The crashed batch is recorded as pending, so the next run knows it may have landed.
    assert_eq!(w.state.snapshot("customers").iter().filter(|e| e.pending.is_some()).count(), 10);

    // The dead runner still holds its lease: a second runner is refused, naming it.
    let second = build("runner-b").await.unwrap();
    match second.run().await {
        Err(Error::State(StateError::LeaseHeld { holder, .. })) => assert_eq!(holder, "runner-a"),
        other => panic!("expected LeaseHeld, got {other:?}"),
    }
    tokio::time::sleep(ttl).await;
    let report = second.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(report.counts.planned.insert, 70);
    assert_eq!(w.destination.records(), by_key(&w.source.rows()));
    // The five changes applied before the crash went again under the same idempotency keys.
    let deliveries = w.destination.deliveries();
    assert_eq!(deliveries.iter().filter(|d| !d.applied).count(), 5);
    assert_eq!(deliveries.iter().filter(|d| d.applied).count(), 100);
}

#[tokio::test(start_paused = true)]
async fn exactly_once_a_crash_leaves_rows_and_state_together_and_nothing_is_sent_twice() {
    let w = World::exactly_once(customers(100));
    let faulty = FaultyDestination::new(w.destination.clone());
    let ttl = Duration::from_secs(60);
    let sync = SyncJob::builder("customers")
        .source(w.source.clone())
        .destination(faulty.clone())
        .state(w.state.clone())
        .options(opts().with_lease_ttl(ttl).with_max_concurrency(1))
        .build()
        .await
        .unwrap();
    faulty.crash_after_applied(35);
    tokio::select! {
        _ = sync.run() => panic!("the run should have crashed"),
        () = faulty.crashed() => {}
    }
    // The write that crashed committed its rows and their state together: 40 of each, and
    // nothing in doubt.
    assert_eq!(w.destination.records().len(), 40);
    assert_eq!(live(&w.state), 40);
    assert!(w.state.snapshot("customers").iter().all(|e| e.pending.is_none()), "no intents in exactly-once mode");

    tokio::time::sleep(ttl).await;
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(report.counts.planned.insert, 60);
    assert_eq!(w.destination.records(), by_key(&w.source.rows()));
    let deliveries = w.destination.deliveries();
    assert_eq!(deliveries.len(), 100, "a change was sent twice");
    assert!(deliveries.iter().all(|d| d.applied));
}

#[tokio::test]
async fn exactly_once_refusals_bisection_and_retries_commit_with_the_rows() {
    let w = World::exactly_once(customers(100));
    let faulty = FaultyDestination::new(w.destination.clone());
    faulty.reject_key(key(4), "email domain is blocked");
    faulty.invalid_batch_key(key(37));
    faulty.reject_key_retryable(key(60), 2);
    faulty.fail_write_after_apply(3);
    let options = opts().with_batch_rows(50).with_max_concurrency(1).with_initial_backoff(Duration::from_millis(1));
    let sync = w.sync_to(faulty.clone(), options).await;
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::CompletedWithRejections);
    assert_eq!((report.counts.applied.insert, report.counts.rejected.insert), (98, 2));
    let rejected: Vec<Key> = w.state.rejections("customers").into_iter().map(|r| r.key).collect();
    assert_eq!(rejected, vec![key(4), key(37)]);
    assert_eq!(live(&w.state), 98);
    assert_eq!(w.destination.records().len(), 98);
    assert!(w.state.snapshot("customers").iter().all(|e| e.pending.is_none()));

    faulty.lift();
    let report = sync.run().await.unwrap();
    assert_eq!((report.counts.applied.insert, report.counts.recovered), (2, 2));
    assert!(w.state.rejections("customers").is_empty());
    assert_eq!(w.destination.records(), by_key(&w.source.rows()));
    // The write whose answer was lost went again and was dropped by its idempotency keys;
    // nothing else was delivered twice.
    let applied = w.destination.deliveries().iter().filter(|d| d.applied).count();
    assert_eq!(applied, 100);
}

#[tokio::test(start_paused = true)]
async fn exactly_once_a_lost_lease_refuses_the_write_and_keeps_neither_rows_nor_state() {
    let w = World::exactly_once(customers(30));
    let faulty = FaultyDestination::new(w.destination.clone());
    faulty.latency(Duration::from_millis(200));
    let sync = w.sync_to(faulty, opts().with_max_concurrency(1)).await;
    let store = w.state.clone();
    let thief = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Another runner takes the sync over (as after the lease lapsed): the run's lease,
        // the store's first, is released behind its back and taken.
        let held = store.acquire_lease("customers", "other", Duration::from_secs(60)).await;
        assert!(held.is_err(), "the lease is still held");
        let now = std::time::SystemTime::now();
        let first =
            Lease { sync_id: "customers".into(), holder: String::new(), token: 1, acquired_at: now, expires_at: now };
        store.release_lease(&first).await.unwrap();
        store.acquire_lease("customers", "other", Duration::from_secs(60)).await.unwrap()
    });
    let report = sync.run().await;
    thief.await.unwrap();
    assert!(
        matches!(&report, Err(Error::State(StateError::Fenced { .. })))
            || matches!(&report, Ok(r) if matches!(r.status, RunStatus::Failed { .. })),
        "{report:?}"
    );
    // The first write (200 ms) landed with its state; the second, under the lease lost at
    // 300 ms, left neither rows nor state.
    assert_eq!(live(&w.state), 10);
    assert_eq!(w.destination.records().len(), 10);
}

#[tokio::test(start_paused = true)]
async fn the_lease_is_renewed_while_a_run_goes_on() {
    let w = World::new(customers(40));
    let faulty = FaultyDestination::new(w.destination.clone());
    faulty.latency(Duration::from_secs(100));
    let slow = SyncJob::builder("customers")
        .source(w.source.clone())
        .destination(faulty.clone())
        .state(w.state.clone())
        // Renewal every 30 s would keep the lease; make the store lose it instead.
        .options(opts().with_lease_ttl(Duration::from_secs(90)).with_holder("slow".into()).with_max_concurrency(1))
        .build()
        .await
        .unwrap();
    let state = w.state.clone();
    let taker = tokio::spawn(async move {
        // Let the slow runner start, then steal the sync by force: expire its lease.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let lease = state.acquire_lease("customers", "x", Duration::from_secs(1)).await;
        lease.is_err()
    });
    let report = slow.run().await.unwrap();
    assert!(taker.await.unwrap(), "the lease was held while the run was alive");
    assert!(matches!(report.status, RunStatus::Succeeded), "{:?}", report.status);
}

#[tokio::test]
async fn update_insert_and_append_modes_shape_the_changes() {
    // Update: a key the destination does not have comes back rejected.
    let w = World::new(customers(3));
    w.destination.seed(key(1), customer(1, 0.0));
    w.destination.seed(key(2), customer(2, 0.0));
    let report = w.sync(Mode::Update, opts()).await.run().await.unwrap();
    assert_eq!((report.counts.applied.update, report.counts.rejected.update), (2, 1));
    assert_eq!(report.rejections[0].reason, "record not found");

    // Insert: changed records are skipped.
    let w = World::new(customers(3));
    let sync = w.sync(Mode::Insert, opts()).await;
    sync.run().await.unwrap();
    w.source.upsert(customer(1, 0.9));
    w.source.upsert(customer(4, 0.9));
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.applied.insert, 1);
    assert_eq!(report.counts.skipped, 1);
    assert_eq!(score_of(&w.destination.records()[&key(1)]), 0.01);

    // Append: every new or changed record is an event.
    let w = World::new(customers(3));
    let sync = w.sync(Mode::Append, opts()).await;
    sync.run().await.unwrap();
    w.source.upsert(customer(2, 0.5));
    sync.run().await.unwrap();
    let events = w.destination.events();
    assert_eq!(events.len(), 4);
    assert_eq!(events[3].0, key(2));
}

#[tokio::test]
async fn full_resync_sends_everything_again_past_idempotency() {
    let w = World::new(customers(10));
    w.sync(Mode::Mirror, opts()).await.run().await.unwrap();
    // Someone edited the destination behind our back.
    w.destination.seed(key(5), customer(5, 42.0));
    let report = w.sync(Mode::Mirror, opts().with_full_resync(true)).await.run().await.unwrap();
    assert_eq!(report.counts.applied.update, 10);
    assert_eq!(w.destination.records(), by_key(&w.source.rows()));
    let report = w.sync(Mode::Mirror, opts()).await.run().await.unwrap();
    assert_eq!(report.counts.unchanged, 10);
}

#[tokio::test]
async fn a_changed_fingerprint_algorithm_is_refused_not_silently_resent() {
    let w = World::new(customers(4));
    w.sync(Mode::Upsert, opts()).await.run().await.unwrap();
    let sha = opts().with_fingerprint_algorithm(FingerprintAlgorithm::Sha256);
    let err = w.sync(Mode::Upsert, sha.clone()).await.run().await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("xxh3-128/v1") && msg.contains("sha256-128/v1") && msg.contains("full_resync"), "{msg}");
    let report = w.sync(Mode::Upsert, sha.clone().with_full_resync(true)).await.run().await.unwrap();
    assert_eq!(report.counts.applied.update, 4);
    assert_eq!(w.sync(Mode::Upsert, sha).await.run().await.unwrap().counts.unchanged, 4);
}

#[tokio::test]
async fn incremental_reads_advance_the_cursor_only_past_final_outcomes() {
    let rows: Vec<Record> = (1..=6).map(|i| customer_at(i, 0.1, 100 + i / 2)).collect();
    let w = World::new(rows);
    let source = w.source.clone().with_capabilities(SourceCapabilities::default().with_cursor_field("updated_at"));
    let faulty = FaultyDestination::new(w.destination.clone());
    faulty.reject_key(key(2), "refused");
    let sync = SyncJob::builder("customers")
        .source(source.clone())
        .destination(faulty.clone())
        .state(w.state.clone())
        .options(opts())
        .build()
        .await
        .unwrap();
    let first = sync.run().await.unwrap();
    assert_eq!(first.cursor_before, None);
    assert_eq!(first.cursor_after, Some(Value::Timestamp(103)));
    assert_eq!(first.counts.applied.insert, 5);

    // A row updated at the boundary timestamp (a tie) is read again and delivered once.
    source.upsert(customer_at(5, 0.7, 103));
    faulty.lift();
    let second = sync.run().await.unwrap();
    assert_eq!(second.counts.read, 2, "rows at or after the cursor: 5 and 6");
    assert_eq!(second.counts.applied.update, 1);
    // Row 2 was before the cursor and not re-read, but its rejection was retried from the
    // kept payload.
    assert_eq!(second.counts.applied.insert, 1);
    assert_eq!(second.counts.recovered, 1);
    assert_eq!(w.destination.records(), by_key(&source.rows()));

    // A run whose changes are not all final leaves the cursor where it was.
    source.upsert(customer_at(7, 0.1, 200));
    faulty.fatal_write(faulty.calls() + 1);
    let third = sync.run().await.unwrap();
    assert!(matches!(third.status, RunStatus::Failed { .. }));
    assert_eq!(third.cursor_after, Some(Value::Timestamp(103)));
    assert_eq!(w.state.meta("customers").await.unwrap().cursor, Some(Value::Timestamp(103)));
    let fourth = sync.run().await.unwrap();
    assert_eq!(fourth.cursor_after, Some(Value::Timestamp(200)));
    assert_eq!(w.destination.records(), by_key(&source.rows()));
}

#[tokio::test]
async fn null_and_repeated_keys_are_invalid_records_with_a_reason() {
    let mut rows = customers(4);
    rows.push(Record::new(vec![Value::Null, "x@example.com".into(), 0.5.into(), Value::Timestamp(1)]));
    rows.push(customer(2, 0.77));
    for strategy in [DiffStrategy::Hash, DiffStrategy::Merge] {
        let w = World::new(rows.clone());
        let report = w.sync(Mode::Upsert, opts().with_diff_strategy(strategy)).await.run().await.unwrap();
        assert_eq!(report.counts.invalid, 2, "{strategy:?}");
        assert_eq!(report.counts.applied.insert, 4, "{strategy:?}");
        assert_eq!(report.status, RunStatus::CompletedWithRejections);
        let reasons: Vec<&str> = report.rejections.iter().map(|r| r.reason.as_str()).collect();
        assert!(reasons.iter().any(|r| r.contains("key column `id` is null")), "{reasons:?}");
        assert!(reasons.iter().any(|r| r.contains("repeated")), "{reasons:?}");
    }
}

#[tokio::test]
async fn bad_configuration_fails_at_build_naming_the_setting() {
    let schema = customers_schema();
    let keyless = Schema::clone(&schema).with_key::<&str>(&[]).unwrap().into_arc();
    let build = |source: MemorySource, dest: MemoryDestination, mode: Mode, options: SyncOptions| {
        SyncJob::builder("s")
            .source(source)
            .destination(dest)
            .state(MemoryStateStore::new())
            .mode(mode)
            .options(options)
            .build()
    };
    let err = build(MemorySource::new(keyless.clone(), vec![]), MemoryDestination::new(), Mode::Upsert, opts())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no key columns"), "{err}");

    let no_delete = MemoryDestination::new().with_capabilities(DestinationCapabilities::new([Op::Insert, Op::Update]));
    let err = build(MemorySource::new(schema.clone(), vec![]), no_delete, Mode::Mirror, opts()).await.unwrap_err();
    assert!(err.to_string().contains("mode mirror needs the `delete` operation"), "{err}");

    let err = build(
        MemorySource::new(schema.clone(), vec![]),
        MemoryDestination::new(),
        Mode::Upsert,
        opts().with_batch_rows(0),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("`batch_rows` must be greater than zero"), "{err}");

    let err = SyncJob::builder("s")
        .source(MemorySource::new(schema.clone(), vec![]))
        .destination(MemoryDestination::new())
        .state(MemoryStateStore::new())
        .key(["customer_id"])
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("`customer_id`") && err.to_string().contains("id, email"), "{err}");

    let unordered = MemorySource::new(schema.clone(), vec![]).with_capabilities(SourceCapabilities::default());
    let err = build(unordered, MemoryDestination::new(), Mode::Upsert, opts().with_diff_strategy(DiffStrategy::Merge))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("diff_strategy"), "{err}");

    let err = SyncJob::builder("s")
        .source(MemorySource::new(schema.clone(), vec![]))
        .transform(rse_core::transform::Rename::new([("mail", "email_address")]))
        .destination(MemoryDestination::new())
        .state(MemoryStateStore::new())
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("`mail`") && err.to_string().contains("rename"), "{err}");

    // An exactly-once destination must be given the store it commits into.
    let store = MemoryStateStore::new();
    let err = SyncJob::builder("s")
        .source(MemorySource::new(schema.clone(), vec![]))
        .destination(MemoryDestination::new().with_state_store(store.clone()))
        .state(MemoryStateStore::new())
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, ConfigError::StateStoreMismatch { .. }), "{err}");
    assert!(err.to_string().contains(store.name()) && err.to_string().contains("pass that same store"), "{err}");

    let err = SyncJob::builder("s").source(MemorySource::new(schema, vec![])).build().await.unwrap_err();
    assert!(err.to_string().contains("no destination given"), "{err}");
}

#[tokio::test]
async fn progress_events_stream_while_a_run_goes_on() {
    let w = World::new(customers(30));
    let sync = w.sync(Mode::Upsert, opts()).await;
    let mut events = sync.subscribe();
    sync.run().await.unwrap();
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    assert!(matches!(seen.first(), Some(ProgressEvent::Started { .. })));
    assert!(matches!(seen.last(), Some(ProgressEvent::Finished { status: RunStatus::Succeeded })));
    let committed: u64 = seen
        .iter()
        .map(|e| match e {
            ProgressEvent::BatchCommitted { applied, .. } => *applied,
            _ => 0,
        })
        .sum();
    assert_eq!(committed, 30);
}

/// Snapshot entries the destination acknowledged.
fn live(state: &MemoryStateStore) -> usize {
    state.snapshot("customers").iter().filter(|e| e.is_live()).count()
}

/// Records when each write arrives (on tokio's clock), then passes it on.
#[derive(Clone)]
struct TimedDestination {
    inner: MemoryDestination,
    times: Arc<std::sync::Mutex<Vec<Instant>>>,
}

impl TimedDestination {
    fn new(inner: MemoryDestination) -> Self {
        Self { inner, times: Arc::default() }
    }

    fn times(&self) -> Vec<Instant> {
        self.times.lock().unwrap().clone()
    }
}

#[async_trait]
impl Destination for TimedDestination {
    fn name(&self) -> &str {
        "timed"
    }
    fn capabilities(&self) -> DestinationCapabilities {
        self.inner.capabilities()
    }
    async fn check(&self) -> Result<(), DestinationError> {
        Ok(())
    }
    async fn write(&self, batch: &ChangeBatch) -> Result<WriteOutcome, DestinationError> {
        self.times.lock().unwrap().push(Instant::now());
        self.inner.write(batch).await
    }
}

#[tokio::test]
async fn a_built_sync_hands_out_its_parts_for_checks_and_status() {
    let w = World::new(customers(3));
    let sync = w.sync(Mode::Mirror, opts()).await;
    assert_eq!(sync.mode(), Mode::Mirror);
    assert_eq!(sync.source().name(), w.source.name());
    assert_eq!(sync.destination().name(), w.destination.name());
    sync.destination().check().await.unwrap();
    sync.run().await.unwrap();
    // The store handed out is the one the runs recorded into.
    let runs = sync.state().runs("customers", 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].counts.applied.insert, 3);
}
