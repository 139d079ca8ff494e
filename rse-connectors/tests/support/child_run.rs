//! The run a SIGKILL test's child process makes: wait out the lease a killed predecessor
//! left, then run once and print what it planned for the parent to read.

use std::time::{Duration, Instant};

use rse_core::{Error, RunStatus, StateError, SyncJob};

/// Runs `sync` once, retrying while a killed child's lease has not lapsed yet (up to
/// 20 s), asserts the run succeeded and prints `RESULT planned=N` on stdout.
pub async fn run_after_the_lease_lapses(sync: &SyncJob) {
    let started = Instant::now();
    let report = loop {
        match sync.run().await {
            Ok(report) => break report,
            Err(Error::State(StateError::LeaseHeld { .. })) if started.elapsed() < Duration::from_secs(20) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the run failed: {e}"),
        }
    };
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    println!("RESULT planned={}", report.counts.planned.total());
}
