//! The runner's bounds: on rate-limit waits, on a write that never answers, on writing
//! after the lease may have lapsed, and what the report says of the time waited.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use async_trait::async_trait;
use common::*;
use rse_core::memory::MemoryStateStore;
use rse_core::testing::FaultyDestination;
use rse_core::*;
use tokio::time::Instant;

fn opts() -> SyncOptions {
    SyncOptions::default().with_batch_rows(10).with_linger(Duration::from_millis(5))
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_beyond_the_limit_ends_the_run_as_rate_limited_keeping_every_change() {
    for retry_after in [Duration::from_secs(86_400), Duration::MAX] {
        let w = World::new(customers(50));
        let faulty = FaultyDestination::new(w.destination.clone());
        faulty.rate_limit_write(2, Some(retry_after));
        let sync = w.sync_to(faulty.clone(), opts().with_max_concurrency(1)).await;
        let started = Instant::now();
        let report = sync.run().await.unwrap();
        let RunStatus::RateLimited { retry_after: asked, .. } = report.status else { panic!("{report}") };
        assert_eq!(asked, retry_after);
        assert!(started.elapsed() < Duration::from_secs(300), "the run did not wait out {retry_after:?}");
        assert_eq!(report.counts.applied.insert, 10, "{report}");
        assert_eq!(report.counts.undelivered, 40, "{report}");

        faulty.lift();
        let report = sync.run().await.unwrap();
        assert_eq!(report.status, RunStatus::Succeeded, "{report}");
        assert_eq!(w.destination.records(), by_key(&w.source.rows()));
    }
}

#[tokio::test(start_paused = true)]
async fn a_write_that_never_answers_times_out_and_the_next_run_delivers() {
    let w = World::new(customers(30));
    let faulty = FaultyDestination::new(w.destination.clone());
    // Far longer than any run may take: a socket that hangs.
    faulty.latency(Duration::from_secs(365 * 86_400));
    let options = opts().with_write_timeout(Duration::from_secs(5)).with_max_attempts(2).with_max_concurrency(1);
    let sync = w.sync_to(faulty.clone(), options).await;
    let started = Instant::now();
    let report = sync.run().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(600), "the run ended in bounded time");
    assert!(!report.status.is_complete(), "{report}");
    assert_eq!(report.counts.applied.total(), 0);
    assert!(report.retries > 0, "a timed-out write is retried: {report}");

    faulty.lift();
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(w.destination.records(), by_key(&w.source.rows()));
}

/// A state store whose lease renewals never answer (a partitioned store, a stalled host),
/// or whose metadata takes long to read (a large state loading).
#[derive(Clone)]
struct StuckRenewals(MemoryStateStore, Option<Duration>);

#[async_trait]
impl StateStore for StuckRenewals {
    fn name(&self) -> &str {
        self.0.name()
    }
    async fn acquire_lease(&self, sync_id: &str, holder: &str, ttl: Duration) -> Result<Lease, StateError> {
        self.0.acquire_lease(sync_id, holder, ttl).await
    }
    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StateError> {
        match self.1 {
            None => std::future::pending().await,
            Some(_) => self.0.renew_lease(lease, ttl).await,
        }
    }
    async fn release_lease(&self, lease: &Lease) -> Result<(), StateError> {
        self.0.release_lease(lease).await
    }
    async fn meta(&self, sync_id: &str) -> Result<SyncMeta, StateError> {
        if let Some(slow) = self.1 {
            tokio::time::sleep(slow).await;
        }
        self.0.meta(sync_id).await
    }
    async fn scan(&self, sync_id: &str, after: Option<&Key>, limit: usize) -> Result<Vec<SnapshotEntry>, StateError> {
        self.0.scan(sync_id, after, limit).await
    }
    async fn get(&self, sync_id: &str, keys: &[Key]) -> Result<Vec<Option<SnapshotEntry>>, StateError> {
        self.0.get(sync_id, keys).await
    }
    async fn rejected(
        &self,
        sync_id: &str,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<RejectedEntry>, StateError> {
        self.0.rejected(sync_id, after, limit).await
    }
    async fn commit(&self, lease: &Lease, commit: StateCommit) -> Result<(), StateError> {
        self.0.commit(lease, commit).await
    }
    async fn record_run(&self, lease: &Lease, report: &SyncReport) -> Result<(), StateError> {
        self.0.record_run(lease, report).await
    }
    async fn runs(&self, sync_id: &str, limit: usize) -> Result<Vec<SyncReport>, StateError> {
        self.0.runs(sync_id, limit).await
    }
    async fn pause(&self, sync_id: &str, pause: &Pause) -> Result<Pause, StateError> {
        self.0.pause(sync_id, pause).await
    }
    async fn resume(&self, sync_id: &str) -> Result<Option<Pause>, StateError> {
        self.0.resume(sync_id).await
    }
    async fn paused(&self, sync_id: &str) -> Result<Option<Pause>, StateError> {
        self.0.paused(sync_id).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_runner_that_cannot_renew_its_lease_sends_no_write_after_it_may_have_lapsed() {
    let w = World::new(customers(100));
    let faulty = FaultyDestination::new(w.destination.clone());
    faulty.latency(Duration::from_secs(10));
    let sync = SyncJob::builder("customers")
        .source(w.source.clone())
        .destination(faulty.clone())
        .state(StuckRenewals(w.state.clone(), None))
        // Trusted for 24 s after it was taken: writes start at 0, 10 and 20 s.
        .options(opts().with_lease_ttl(Duration::from_secs(30)).with_max_concurrency(1))
        .build()
        .await
        .unwrap();
    let report = sync.run().await.unwrap();
    assert!(matches!(report.status, RunStatus::Failed { kind: FailureKind::LeaseLost, .. }), "{report}");
    assert_eq!(faulty.calls(), 3, "no write after the lease may have lapsed");
    assert_eq!(w.destination.records().len(), 30);
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_wait_reported_is_the_wall_time_paused_not_the_sum_over_workers() {
    let w = World::new(customers(80));
    let faulty = FaultyDestination::new(w.destination.clone());
    faulty.rate_limit_write(1, Some(Duration::from_secs(30)));
    let sync = w.sync_to(faulty, opts().with_max_concurrency(4)).await;
    let started = Instant::now();
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.applied.insert, 80);
    let wall = started.elapsed();
    assert!(report.rate_limit_wait >= Duration::from_secs(29), "{:?}", report.rate_limit_wait);
    assert!(report.rate_limit_wait <= wall, "{:?} waited in a run of {wall:?}", report.rate_limit_wait);
}

#[tokio::test(start_paused = true)]
async fn the_lease_is_renewed_while_a_run_prepares_so_a_slow_start_still_writes() {
    let w = World::new(customers(30));
    let sync = SyncJob::builder("customers")
        .source(w.source.clone())
        .destination(w.destination.clone())
        // Preparing takes two lease lifetimes (a large snapshot loading).
        .state(StuckRenewals(w.state.clone(), Some(Duration::from_secs(60))))
        .options(opts().with_lease_ttl(Duration::from_secs(30)))
        .build()
        .await
        .unwrap();
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(w.destination.records().len(), 30);
}

/// A source whose read never sends a batch (a query stuck on a dead connection).
struct HungSource(std::sync::Arc<Schema>);

#[async_trait]
impl Source for HungSource {
    fn name(&self) -> &str {
        "hung"
    }
    fn capabilities(&self) -> SourceCapabilities {
        SourceCapabilities::default()
    }
    async fn schema(&self) -> Result<std::sync::Arc<Schema>, SourceError> {
        Ok(self.0.clone())
    }
    async fn read(&self, _request: ReadRequest) -> Result<RowBatchStream<'_>, SourceError> {
        Ok(Box::pin(futures::stream::pending()))
    }
}

#[tokio::test(start_paused = true)]
async fn a_source_that_never_answers_ends_the_run_in_bounded_time_without_deletes() {
    let w = World::new(customers(5));
    w.sync(Mode::Mirror, opts()).await.run().await.unwrap();
    let sync = SyncJob::builder("customers")
        .source(HungSource(customers_schema()))
        .destination(w.destination.clone())
        .state(w.state.clone())
        .mode(Mode::Mirror)
        .options(opts().with_read_timeout(Duration::from_secs(30)).with_max_deletes(None))
        .build()
        .await
        .unwrap();
    let started = Instant::now();
    let report = sync.run().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(600));
    let RunStatus::Failed { reason, kind: FailureKind::Source } = &report.status else { panic!("{report}") };
    assert!(reason.contains("read timeout"), "{reason}");
    assert_eq!(w.destination.records().len(), 5, "nothing deleted");
}
