//! What the runner does for SaaS destinations: the per-key memo kept across runs, crashes
//! and the exactly-once path; the destination's created/updated counts; pacing to the quota
//! a destination reports, the daily allowance and the share reserved for other integrations.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use rse_core::memory::{MemoryDestination, MemoryStateStore};
use rse_core::testing::FaultyDestination;
use rse_core::*;
use tokio::time::Instant;

fn opts() -> SyncOptions {
    SyncOptions::default().with_batch_rows(10).with_linger(Duration::from_millis(5))
}

/// A CRM-like destination: record ids as memos.
fn crm() -> MemoryDestination {
    MemoryDestination::new()
        .with_capabilities(DestinationCapabilities::new(Op::ALL).with_idempotency_keys(true).with_memos(true))
}

fn crm_world(rows: Vec<Record>) -> World {
    World { destination: crm(), ..World::new(rows) }
}

fn memo_of(state: &MemoryStateStore, id: i64) -> Option<String> {
    let entry = state.snapshot("customers").into_iter().find(|e| e.key == key(id))?;
    entry.memo.and_then(|m| m.as_str().map(str::to_owned))
}

#[tokio::test(start_paused = true)]
async fn record_ids_are_kept_as_memos_and_handed_back_on_updates_and_deletes() {
    let w = crm_world(customers(30));
    let sync = w.sync(Mode::Mirror, opts()).await;
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(report.counts.destination, EffectCounts { created: 30, updated: 0, unchanged: 0 });
    let ids = w.destination.record_ids();
    for i in 1..=30 {
        assert_eq!(memo_of(&w.state, i).as_deref(), Some(ids[&key(i)].as_str()), "key {i}");
    }

    // Updates carry the id the destination assigned; deletes remove by it.
    for i in 1..=5 {
        w.source.upsert(customer(i, 9.0));
    }
    for i in 26..=30 {
        w.source.remove(&key(i));
    }
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(report.counts.destination, EffectCounts { created: 0, updated: 5, unchanged: 0 }, "{report}");
    assert_eq!(report.counts.applied.delete, 5);
    let sent: Vec<_> = w.destination.deliveries().into_iter().skip(30).collect();
    assert_eq!(sent.len(), 10);
    for d in &sent {
        let id = ids[&d.key].as_str();
        assert_eq!(d.memo.as_ref().and_then(|m| m.as_str()), Some(id), "{:?} of {} carried its record id", d.op, d.key);
    }
    assert_eq!(w.destination.records(), by_key(&w.source.rows()));
    // A deleted key's memo goes with it; the others are unchanged.
    assert_eq!(memo_of(&w.state, 30), None);
    assert_eq!(memo_of(&w.state, 1).as_deref(), Some(ids[&key(1)].as_str()));

    // A key that comes back is a new record with a new id.
    w.source.upsert(customer(30, 1.0));
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.destination.created, 1, "{report}");
    assert_ne!(w.destination.record_ids()[&key(30)], ids[&key(30)]);
}

#[tokio::test(start_paused = true)]
async fn after_a_crash_the_ids_of_records_created_before_it_reach_the_state_and_deletes_find_them() {
    let w = crm_world(customers(40));
    let faulty = FaultyDestination::new(w.destination.clone());
    let ttl = Duration::from_secs(60);
    let options = opts().with_lease_ttl(ttl).with_max_concurrency(1);
    let sync = SyncJob::builder("customers")
        .source(w.source.clone())
        .destination(faulty.clone())
        .state(w.state.clone())
        .mode(Mode::Mirror)
        .options(options)
        .build()
        .await
        .unwrap();
    faulty.crash_after_applied(25);
    tokio::select! {
        _ = sync.run() => panic!("the run should have crashed"),
        () = faulty.crashed() => {}
    }
    // Five records were created whose ids the state never heard of.
    assert_eq!(w.destination.records().len(), 25);
    assert_eq!((21..=25).filter(|&i| memo_of(&w.state, i).is_some()).count(), 0);
    tokio::time::sleep(ttl).await;
    faulty.lift();
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    let ids = w.destination.record_ids();
    assert_eq!(ids.len(), 40, "exactly one record per key");
    for i in 1..=40 {
        assert_eq!(memo_of(&w.state, i).as_deref(), Some(ids[&key(i)].as_str()), "key {i}");
    }
    // Every key deleted at the source is deleted at the destination, by its id.
    for i in 16..=30 {
        w.source.remove(&key(i));
    }
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(w.destination.records(), by_key(&w.source.rows()));
}

#[tokio::test(start_paused = true)]
async fn exactly_once_memos_are_committed_with_the_rows() {
    let state = MemoryStateStore::new();
    let destination = crm().with_state_store(state.clone());
    let w = World { destination, state, ..World::new(customers(20)) };
    let sync = w.sync(Mode::Mirror, opts()).await;
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    let ids = w.destination.record_ids();
    for i in 1..=20 {
        assert_eq!(memo_of(&w.state, i).as_deref(), Some(ids[&key(i)].as_str()));
    }
    w.source.remove(&key(3));
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.applied.delete, 1, "{report}");
    assert!(!w.destination.records().contains_key(&key(3)));
}

/// A destination with a quota it reports on every answer: `window` writes per `period` and
/// `daily` writes in all. A write beyond either is answered as the vendor would (429 for the
/// window; an exhausted allowance for the day) and counted as a violation.
#[derive(Clone)]
struct Quota {
    inner: MemoryDestination,
    window: u64,
    period: Duration,
    state: Arc<Mutex<QuotaState>>,
}

#[derive(Default)]
struct QuotaState {
    sent: Vec<Instant>,
    daily_left: u64,
    violations: u64,
}

impl Quota {
    fn new(inner: MemoryDestination, window: u64, period: Duration, daily: u64) -> Self {
        let state = QuotaState { daily_left: daily, ..QuotaState::default() };
        Self { inner, window, period, state: Arc::new(Mutex::new(state)) }
    }

    fn violations(&self) -> u64 {
        self.state.lock().unwrap().violations
    }

    fn grant_daily(&self, n: u64) {
        self.state.lock().unwrap().daily_left = n;
    }

    fn writes(&self) -> usize {
        self.state.lock().unwrap().sent.len()
    }
}

#[async_trait]
impl Destination for Quota {
    fn name(&self) -> &str {
        "quota"
    }
    fn capabilities(&self) -> DestinationCapabilities {
        self.inner.capabilities()
    }
    async fn check(&self) -> Result<(), DestinationError> {
        Ok(())
    }
    async fn write(&self, batch: &ChangeBatch) -> Result<WriteOutcome, DestinationError> {
        let feedback = {
            let mut s = self.state.lock().unwrap();
            let now = Instant::now();
            let in_window = s.sent.iter().filter(|t| now.duration_since(**t) < self.period).count() as u64;
            if s.daily_left == 0 {
                s.violations += 1;
                return Err(DestinationError::QuotaExhausted {
                    message: "daily allowance".into(),
                    resets_in: Some(Duration::from_secs(3_600)),
                });
            }
            if in_window >= self.window {
                s.violations += 1;
                return Err(DestinationError::RateLimited { retry_after: Some(Duration::from_secs(1)) });
            }
            s.sent.push(now);
            s.daily_left -= 1;
            let oldest = s.sent.iter().rev().nth(in_window as usize).copied().unwrap_or(now);
            QuotaFeedback {
                window: Some(QuotaWindow::new(
                    self.window - in_window - 1,
                    Some(self.window),
                    Some(self.period.saturating_sub(now.duration_since(oldest))),
                )),
                daily: Some(QuotaWindow::new(s.daily_left, Some(100), Some(Duration::from_secs(3_600)))),
            }
        };
        let inner = self.inner.write(batch).await?;
        let mut outcomes = WriteOutcomes::new(batch.len());
        outcomes.rest_applied();
        outcomes.set_quota(feedback);
        assert!(inner.outcomes.iter().all(|o| *o == ChangeOutcome::Applied));
        outcomes.finish("quota")
    }
}

#[tokio::test(start_paused = true)]
async fn writes_pace_to_the_reported_window_without_a_single_refusal() {
    let w = World::new(customers(200));
    let quota = Quota::new(w.destination.clone(), 5, Duration::from_secs(10), 1_000);
    let sync = w.sync_to(quota.clone(), opts().with_max_concurrency(4)).await;
    let started = Instant::now();
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(quota.violations(), 0, "the runner sent into a window it knew was spent");
    assert_eq!(quota.writes(), 20);
    // 20 writes at 5 per 10 s need three waits for the window: at least 30 s, and not
    // much more (the quota is used, not wasted).
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(30) && took < Duration::from_secs(45), "{took:?}");
    assert!(report.rate_limit_waits >= 3, "{report}");
    assert_eq!(report.quota.and_then(|q| q.daily).map(|d| d.remaining), Some(1_000 - 20));
}

#[tokio::test(start_paused = true)]
async fn a_spent_daily_allowance_ends_the_run_cleanly_and_the_next_run_finishes() {
    let w = World::new(customers(100));
    let quota = Quota::new(w.destination.clone(), 1_000, Duration::from_secs(10), 4);
    let sync = w.sync_to(quota.clone(), opts().with_max_concurrency(1)).await;
    let report = sync.run().await.unwrap();
    let RunStatus::QuotaExhausted { reason, resets_at_ms } = &report.status else { panic!("{report}") };
    assert!(reason.contains("daily allowance"), "{reason}");
    assert!(resets_at_ms.is_some());
    assert_eq!(quota.violations(), 0, "the runner stopped on the reported allowance, before a refusal");
    assert_eq!(report.counts.applied.insert, 40, "{report}");
    assert_eq!(report.counts.undelivered, 60, "{report}");
    assert!(report.to_string().contains("quota exhausted"), "{report}");

    quota.grant_daily(100);
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(report.counts.applied.insert, 60);
    assert_eq!(w.destination.records(), by_key(&w.source.rows()));
}

#[tokio::test(start_paused = true)]
async fn a_share_of_the_allowance_is_left_for_other_integrations() {
    let w = World::new(customers(200));
    // 30 of the day's 100 calls left; a fifth of 100 is reserved, so 10 writes may go.
    let quota = Quota::new(w.destination.clone(), 1_000, Duration::from_secs(10), 30);
    let sync = w.sync_to(quota.clone(), opts().with_max_concurrency(1).with_quota_reserve(0.2)).await;
    let report = sync.run().await.unwrap();
    let RunStatus::QuotaExhausted { reason, .. } = &report.status else { panic!("{report}") };
    assert!(reason.contains("left for other integrations"), "{reason}");
    // The first answer tells the runner what is left; from then on it counts down.
    assert_eq!(quota.writes(), 10);
    assert_eq!(report.counts.undelivered, 100, "{report}");
    assert_eq!(report.quota.and_then(|q| q.daily).map(|d| d.remaining), Some(20));
}

#[tokio::test(start_paused = true)]
async fn an_allowance_refused_without_warning_ends_the_run_keeping_every_change() {
    let w = World::new(customers(50));
    // The destination reports nothing before refusing: the refusal itself ends the run.
    let quota = Quota::new(w.destination.clone(), 1_000, Duration::from_secs(10), 2);
    let faulty = FaultyDestination::new(quota.clone());
    let sync = w.sync_to(faulty, opts().with_max_concurrency(1)).await;
    let report = sync.run().await.unwrap();
    assert!(matches!(report.status, RunStatus::QuotaExhausted { .. }), "{report}");
    assert_eq!(report.counts.applied.insert + report.counts.undelivered, 50, "{report}");
    quota.grant_daily(100);
    assert_eq!(sync.run().await.unwrap().status, RunStatus::Succeeded);
    assert_eq!(w.destination.records(), by_key(&w.source.rows()));
}

#[tokio::test]
async fn a_reserve_outside_its_range_is_refused_naming_the_option() {
    let w = World::new(customers(1));
    for reserve in [1.0, -0.1, f64::NAN] {
        let built = SyncJob::builder("customers")
            .source(w.source.clone())
            .destination(w.destination.clone())
            .state(w.state.clone())
            .options(opts().with_quota_reserve(reserve))
            .build()
            .await;
        let Err(error) = built else { panic!("a reserve of {reserve} was accepted") };
        let error = error.to_string();
        assert!(error.contains("quota_reserve"), "{error}");
    }
}
