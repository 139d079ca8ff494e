//! Partitioned syncs over the in-memory implementations: every key delivered once by its
//! own partition, deletes and the delete guard per partition, pauses of the whole sync, and
//! a change of the partition count refused until the earlier layout is forgotten.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rse_core::memory::{MemoryDestination, MemorySource, MemoryStateStore};
use rse_core::partition::{Partition, forget_snapshot};
use rse_core::shared_quota::SharedQuota;
use rse_core::*;

fn schema() -> Arc<Schema> {
    Schema::new(vec![Field::required("id", DataType::Int), Field::new("name", DataType::String)], &["id"])
        .unwrap()
        .into_arc()
}

fn rows(ids: impl IntoIterator<Item = i64>, tag: &str) -> Vec<Record> {
    ids.into_iter().map(|i| Record::new(vec![i.into(), format!("{tag}{i}").into()])).collect()
}

fn key(i: i64) -> Key {
    Key::from_values(&[Value::Int(i)])
}

fn opts(strategy: DiffStrategy) -> SyncOptions {
    SyncOptions::default().with_batch_rows(7).with_linger(Duration::from_millis(2)).with_diff_strategy(strategy)
}

async fn partition(
    id: &str,
    source: &MemorySource,
    destination: &MemoryDestination,
    state: &MemoryStateStore,
    options: SyncOptions,
    p: Option<Partition>,
) -> Result<SyncJob, ConfigError> {
    SyncJob::builder(id)
        .source(source.clone())
        .destination(destination.clone())
        .state(state.clone())
        .mode(Mode::Mirror)
        .options(options)
        .partition(p)
        .build()
        .await
}

async fn all(
    source: &MemorySource,
    destination: &MemoryDestination,
    state: &MemoryStateStore,
    options: SyncOptions,
    count: u32,
) -> Vec<SyncJob> {
    let mut jobs = Vec::new();
    for i in 0..count {
        let p = Partition::new(i, count).unwrap();
        jobs.push(partition("crm", source, destination, state, options.clone(), Some(p)).await.unwrap());
    }
    jobs
}

fn applied_per_key(destination: &MemoryDestination) -> BTreeMap<(Key, Op), usize> {
    let mut n = BTreeMap::new();
    for d in destination.deliveries().into_iter().filter(|d| d.applied) {
        *n.entry((d.key, d.op)).or_default() += 1;
    }
    n
}

#[tokio::test]
async fn partitions_deliver_each_key_once_and_delete_only_their_own() {
    for strategy in [DiffStrategy::Hash, DiffStrategy::Merge] {
        let (source, destination, state) =
            (MemorySource::new(schema(), rows(0..200, "a")), MemoryDestination::new(), MemoryStateStore::new());
        let jobs = all(&source, &destination, &state, opts(strategy), 4).await;
        let mut excluded = 0;
        for job in &jobs {
            let report = job.run().await.unwrap();
            assert_eq!(report.status, RunStatus::Succeeded, "{strategy:?}");
            assert_eq!(report.counts.read, 200, "each partition reads the whole source");
            let p = report.partition.expect("a partition's report names it");
            assert_eq!(Some(p.partition), job.partition());
            excluded += p.excluded;
            // The partition's state holds exactly its keys.
            let snapshot = state.snapshot(job.id());
            assert!(snapshot.iter().all(|e| p.partition.contains(&e.key)), "{strategy:?}");
            assert_eq!(snapshot.len() as u64, 200 - p.excluded);
        }
        assert_eq!(excluded, 3 * 200, "each record is left out by the three partitions it is not in");
        // Each partition verifies its own keys: its siblings' are not foreign to it.
        let mut checked = 0;
        for job in &jobs {
            let found = job.verify(&VerifyOptions::default()).await.unwrap();
            assert!(found.is_clean() && found.foreign == 0 && found.unsent == 0, "{found:?}");
            checked += found.checked;
        }
        assert_eq!(checked, 200);
        assert_eq!(destination.records().len(), 200);
        assert!(applied_per_key(&destination).values().all(|n| *n == 1), "{strategy:?}: a key applied twice");

        // Forty keys go; partition 0 alone runs: only its own keys are deleted.
        source.set_rows(rows(40..200, "a"));
        let first = Partition::new(0, 4).unwrap();
        let report = jobs[0].run().await.unwrap();
        let own = (0..40).filter(|i| first.contains(&key(*i))).count() as u64;
        assert!(own > 0 && own < 40, "the test wants the keys spread: {own}");
        assert_eq!(report.counts.applied.delete, own);
        let held = destination.records();
        for i in 0..40 {
            assert_eq!(held.contains_key(&key(i)), !first.contains(&key(i)), "key {i}");
        }
        for job in &jobs[1..] {
            job.run().await.unwrap();
        }
        assert_eq!(destination.records().len(), 160);
        assert!(applied_per_key(&destination).values().all(|n| *n == 1));
    }
}

#[tokio::test]
async fn a_delete_count_is_split_so_the_partitions_together_stay_within_it() {
    let (source, destination, state) =
        (MemorySource::new(schema(), rows(0..400, "a")), MemoryDestination::new(), MemoryStateStore::new());
    let options = opts(DiffStrategy::Hash).with_max_deletes(Some(MaxDeletes::Count(40)));
    let jobs = all(&source, &destination, &state, options, 4).await;
    for job in &jobs {
        job.run().await.unwrap();
    }
    // 60 deletes overall: about 15 per partition, above each one's share of 10.
    source.set_rows(rows(60..400, "a"));
    let mut deleted = 0;
    for job in &jobs {
        let report = job.run().await.unwrap();
        deleted += report.counts.applied.delete;
        if report.counts.withheld > 10 {
            let reason = report.withheld_reason.clone().unwrap_or_default();
            assert!(reason.contains("max_deletes of 10"), "{reason}");
        }
    }
    assert!(deleted <= 40, "the sync's limit of 40 deletes holds across its partitions: {deleted}");
    // 38 deletes overall: within the sync's limit, and each partition's share is 10.
    source.set_rows(rows(0..400, "b"));
    for job in &jobs {
        job.run().await.unwrap();
    }
    source.set_rows(rows(0..362, "b"));
    let counts: Vec<u64> = {
        let mut counts = Vec::new();
        for job in &jobs {
            counts.push(job.run().await.unwrap().counts.applied.delete);
        }
        counts
    };
    let sizes: Vec<usize> =
        (0..4).map(|i| (362..400).filter(|k| Partition::new(i, 4).unwrap().contains(&key(*k))).count()).collect();
    for (got, size) in counts.iter().zip(&sizes) {
        let expected = if *size <= 10 { *size as u64 } else { 0 };
        assert_eq!(*got, expected, "deletes per partition {counts:?} for {sizes:?}");
    }
}

#[tokio::test]
async fn a_pause_of_the_sync_stops_every_partition_and_a_partitions_own_pause_only_it() {
    let (source, destination, state) =
        (MemorySource::new(schema(), rows(0..50, "a")), MemoryDestination::new(), MemoryStateStore::new());
    let jobs = all(&source, &destination, &state, opts(DiffStrategy::Hash), 2).await;
    let whole = partition("crm", &source, &destination, &state, opts(DiffStrategy::Hash), None).await.unwrap();
    whole.pause("oncall", "CRM outage").await.unwrap();
    for job in &jobs {
        let report = job.run().await.unwrap();
        assert!(matches!(report.status, RunStatus::Paused { ref by, .. } if by == "oncall"), "{:?}", report.status);
        assert!(job.paused().await.unwrap().is_some());
    }
    assert!(destination.records().is_empty());
    whole.resume().await.unwrap();
    jobs[1].pause("oncall", "partition 1 only").await.unwrap();
    assert_eq!(jobs[0].run().await.unwrap().status, RunStatus::Succeeded);
    assert!(matches!(jobs[1].run().await.unwrap().status, RunStatus::Paused { .. }));
    assert_eq!(whole.paused().await.unwrap(), None, "a partition's pause is its own");
}

#[tokio::test]
async fn a_new_partition_count_is_refused_until_the_earlier_layout_is_forgotten() {
    let (source, destination, state) =
        (MemorySource::new(schema(), rows(0..100, "a")), MemoryDestination::new(), MemoryStateStore::new());
    for job in all(&source, &destination, &state, opts(DiffStrategy::Hash), 2).await {
        job.run().await.unwrap();
    }
    let wider = all(&source, &destination, &state, opts(DiffStrategy::Hash), 4).await;
    for job in &wider {
        let error = job.run().await.unwrap_err().to_string();
        assert!(error.contains("split into 2 partitions") && error.contains("forget_snapshot"), "{error}");
    }
    let whole = partition("crm", &source, &destination, &state, opts(DiffStrategy::Hash), None).await.unwrap();
    let error = whole.run().await.unwrap_err().to_string();
    assert!(error.contains("runs unpartitioned"), "{error}");
    let single = Partition::new(0, 1).unwrap();
    let one = partition("crm", &source, &destination, &state, opts(DiffStrategy::Hash), Some(single)).await.unwrap();
    let error = one.run().await.unwrap_err().to_string();
    assert!(error.contains("partition 0/1"), "{error}");

    // Re-partitioned: the earlier layout forgotten, each new partition resyncs in full.
    let mut forgotten = 0;
    for i in 0..2 {
        forgotten += forget_snapshot(&state, &Partition::new(i, 2).unwrap().sync_id("crm"), "ops").await.unwrap();
    }
    assert_eq!(forgotten, 100);
    source.set_rows(rows(0..100, "b"));
    let resync = all(&source, &destination, &state, opts(DiffStrategy::Hash).with_full_resync(true), 4).await;
    for job in &resync {
        assert!(job.run().await.unwrap().status.is_complete());
    }
    assert_eq!(destination.records(), source.rows().into_iter().map(|r| (r.key(&schema()).unwrap(), r)).collect());
    // And the new layout runs on as usual.
    source.set_rows(rows(0..90, "b"));
    let deleted: u64 = {
        let mut n = 0;
        for job in &wider {
            n += job.run().await.unwrap().counts.applied.delete;
        }
        n
    };
    assert_eq!(deleted, 10);
}

#[tokio::test]
async fn ids_that_look_like_a_partitions_are_refused() {
    let (source, destination, state) =
        (MemorySource::new(schema(), rows(0..1, "a")), MemoryDestination::new(), MemoryStateStore::new());
    let refused = partition("crm#p1of4", &source, &destination, &state, opts(DiffStrategy::Hash), None).await;
    assert!(refused.unwrap_err().to_string().contains("ends like the id of a partition"));
    let fine = partition("crm#eu", &source, &destination, &state, opts(DiffStrategy::Hash), None).await.unwrap();
    assert_eq!(fine.id(), "crm#eu");
}

/// A shared quota that cannot be reached for its first `failures` reservations.
struct Flaky {
    failures: std::sync::atomic::AtomicU32,
    inner: rse_core::shared_quota::MemorySharedQuota,
}

#[async_trait::async_trait]
impl SharedQuota for Flaky {
    async fn reserve(&self, scope: &str, limit: RateLimit) -> Result<Duration, StateError> {
        let left = self.failures.load(std::sync::atomic::Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, std::sync::atomic::Ordering::SeqCst);
            return Err(StateError::Unavailable { message: "connection refused".into(), source: None });
        }
        self.inner.reserve(scope, limit).await
    }
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_shared_quota_is_retried_then_leaves_the_changes_for_the_next_run() {
    let limited = DestinationCapabilities::new(Op::ALL)
        .with_idempotency_keys(true)
        .with_rate_limit(Some(RateLimit::per_second(100)));
    let (source, destination, state) = (
        MemorySource::new(schema(), rows(0..30, "a")),
        MemoryDestination::new().with_capabilities(limited),
        MemoryStateStore::new(),
    );
    let build = |failures: u32| {
        let (source, destination, state) = (source.clone(), destination.clone(), state.clone());
        async move {
            SyncJob::builder("crm")
                .source(source)
                .destination(destination)
                .state(state)
                .options(opts(DiffStrategy::Hash).with_max_attempts(3).with_max_concurrency(1))
                .partition(Partition::new(0, 1).unwrap())
                .shared_quota(Flaky {
                    failures: failures.into(),
                    inner: rse_core::shared_quota::MemorySharedQuota::new(),
                })
                .build()
                .await
                .unwrap()
        }
    };
    // Two failed reservations: retried with backoff, and the run delivers everything.
    let report = build(2).await.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(report.counts.applied.insert, 30);
    assert!(report.retries >= 2);

    // Never reachable: nothing is sent unpaced; the changes wait for the next run.
    source.set_rows(rows(0..30, "b"));
    let report = build(u32::MAX).await.run().await.unwrap();
    assert!(!report.status.is_complete(), "{:?}", report.status);
    assert_eq!(report.counts.applied.total(), 0);
    assert!(destination.records().values().all(|r| r.values[1] != Value::from("b0")));
    let report = build(0).await.run().await.unwrap();
    assert_eq!(report.counts.applied.update, 30, "{report}");
}

#[tokio::test]
async fn a_canary_of_a_partitioned_sync_covers_the_same_keys_as_unpartitioned() {
    let (source, destination, state) =
        (MemorySource::new(schema(), rows(0..400, "a")), MemoryDestination::new(), MemoryStateStore::new());
    let canary = opts(DiffStrategy::Hash).with_canary(0.3);
    let mut left_to_others = 0;
    for job in all(&source, &destination, &state, canary, 3).await {
        let report = job.run().await.unwrap();
        left_to_others += report.partition.unwrap().excluded;
        let in_partition = 400 - report.partition.unwrap().excluded;
        // The canary counts what it left out of the partition's own share only.
        assert_eq!(report.canary.unwrap().excluded, in_partition - report.counts.applied.insert);
    }
    assert_eq!(left_to_others, 2 * 400);
    let expected: Vec<Key> = (0..400).map(key).filter(|k| canary::Canary::new(0.3).unwrap().contains(k)).collect();
    assert_eq!(destination.records().into_keys().collect::<Vec<_>>(), {
        let mut e = expected;
        e.sort();
        e
    });
}

#[tokio::test]
async fn partitioning_a_sync_that_ran_unpartitioned_is_refused_until_its_snapshot_is_forgotten() {
    let (source, destination, state) =
        (MemorySource::new(schema(), rows(0..60, "a")), MemoryDestination::new(), MemoryStateStore::new());
    let whole = partition("crm", &source, &destination, &state, opts(DiffStrategy::Hash), None).await.unwrap();
    whole.run().await.unwrap();
    let parts = all(&source, &destination, &state, opts(DiffStrategy::Hash), 3).await;
    let error = parts[1].run().await.unwrap_err().to_string();
    assert!(error.contains("unpartitioned (state `crm`)"), "{error}");
    // A run holding the sync's lease keeps its snapshot from being forgotten under it.
    let lease = state.acquire_lease("crm", "a run", Duration::from_secs(60)).await.unwrap();
    assert!(matches!(forget_snapshot(&state, "crm", "ops").await, Err(StateError::LeaseHeld { .. })));
    state.release_lease(&lease).await.unwrap();
    assert_eq!(forget_snapshot(&state, "crm", "ops").await.unwrap(), 60);
    for job in &parts {
        assert_eq!(job.run().await.unwrap().status, RunStatus::Succeeded);
    }
}
