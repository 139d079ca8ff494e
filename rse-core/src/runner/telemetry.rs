//! The runner's metrics: the catalog's figures ([`crate::metrics`]) emitted per batch and
//! per run, never per record (but for the change-time latency a sync asks for).
//!
//! Every call goes through the `metrics` facade, so without a recorder each one is a no-op.
//! A dry run emits nothing: it changes nothing an operator watches, and counting it would
//! move the freshness and success figures of the real runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use metrics::{SharedString, counter, gauge, histogram};

use crate::change::Op;
use crate::destination::{QuotaFeedback, QuotaWindow};
use crate::metrics::*;
use crate::report::{OpCounts, RunStatus, SyncReport};

/// What the metrics of one sync share across its runs: the label values, and the figures
/// that carry over from run to run.
#[derive(Debug)]
pub(crate) struct SyncTelemetry {
    sync: SharedString,
    destination: SharedString,
    /// Nanoseconds of rate-limit wait counted so far; the counter counts whole seconds, so
    /// the part of a second not yet counted carries over to the next wait.
    waited_nanos: AtomicU64,
    /// The newest change time acknowledged so far (microseconds since the Unix epoch).
    newest_change: AtomicI64,
}

impl SyncTelemetry {
    /// The metrics of sync `id`, delivering to the destination named `destination`.
    pub(crate) fn new(id: &Arc<str>, destination: &str) -> Self {
        Self {
            sync: SharedString::from(id.clone()),
            destination: SharedString::from(destination_kind(destination).to_owned()),
            waited_nanos: AtomicU64::new(0),
            newest_change: AtomicI64::new(i64::MIN),
        }
    }
}

/// The change outcome labels of [`RECORDS_TOTAL`].
pub(crate) mod outcome {
    pub(crate) const APPLIED: &str = "applied";
    pub(crate) const REJECTED: &str = "rejected";
    pub(crate) const SUPERSEDED: &str = "superseded";
    pub(crate) const WITHHELD: &str = "withheld";
    pub(crate) const UNDELIVERED: &str = "undelivered";
}

/// The stage labels of [`REJECTIONS_TOTAL`].
pub(crate) mod stage {
    pub(crate) const SOURCE: &str = "source";
    pub(crate) const TRANSFORM: &str = "transform";
    pub(crate) const KEY: &str = "key";
    pub(crate) const DESTINATION: &str = "destination";
}

/// One run's handle on its sync's metrics; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct RunMetrics {
    sync: Arc<SyncTelemetry>,
    on: bool,
}

/// Sets [`RUN_IN_PROGRESS`] back to 0 when the run ends, however it ends (its future
/// dropped included).
pub(crate) struct InProgress(Option<RunMetrics>);

impl Drop for InProgress {
    fn drop(&mut self) {
        if let Some(m) = &self.0 {
            gauge!(RUN_IN_PROGRESS, SYNC => m.sync.sync.clone()).set(0.0);
        }
    }
}

impl RunMetrics {
    /// The metrics of a run of the sync; `dry_run` silences them.
    pub(crate) fn new(sync: Arc<SyncTelemetry>, dry_run: bool) -> Self {
        Self { sync, on: !dry_run }
    }

    fn s(&self) -> SharedString {
        self.sync.sync.clone()
    }

    fn d(&self) -> SharedString {
        self.sync.destination.clone()
    }

    /// The run holds its lease: in progress, nothing read yet, the process's figures.
    /// Registers the change counters of `ops` at zero, so that ratios have both terms from
    /// the first run on.
    pub(crate) fn started(&self, ops: &[Op]) -> InProgress {
        if !self.on {
            return InProgress(None);
        }
        gauge!(RUN_IN_PROGRESS, SYNC => self.s()).set(1.0);
        gauge!(RUN_RECORDS_READ, SYNC => self.s()).set(0.0);
        for op in ops {
            for o in [outcome::APPLIED, outcome::REJECTED] {
                counter!(RECORDS_TOTAL, SYNC => self.s(), DESTINATION => self.d(), OP => op.as_str(), OUTCOME => o)
                    .increment(0);
            }
        }
        counter!(RETRIES_TOTAL, SYNC => self.s(), DESTINATION => self.d()).increment(0);
        process();
        InProgress(Some(self.clone()))
    }

    /// The records the run expects to read.
    pub(crate) fn expected(&self, records: u64) {
        if self.on {
            gauge!(RUN_RECORDS_EXPECTED, SYNC => self.s()).set(records as f64);
        }
    }

    /// A source batch of `n` records was read; `total` so far in the run.
    pub(crate) fn read(&self, n: u64, total: u64) {
        if self.on && n > 0 {
            counter!(RECORDS_READ_TOTAL, SYNC => self.s()).increment(n);
            gauge!(RUN_RECORDS_READ, SYNC => self.s()).set(total as f64);
        }
    }

    /// `n` records refused at `stage` (one of [`stage`]).
    pub(crate) fn refused(&self, stage: &'static str, n: u64) {
        if self.on && n > 0 {
            counter!(REJECTIONS_TOTAL, SYNC => self.s(), STAGE => stage).increment(n);
        }
    }

    /// Changes that ended with `outcome` (one of [`outcome`]), per operation.
    pub(crate) fn changes(&self, outcome: &'static str, counts: &OpCounts) {
        if !self.on {
            return;
        }
        for op in Op::ALL {
            let n = counts.get(op);
            if n > 0 {
                counter!(RECORDS_TOTAL, SYNC => self.s(), DESTINATION => self.d(), OP => op.as_str(), OUTCOME => outcome)
                    .increment(n);
            }
        }
    }

    /// Changes of `ops` that ended with `outcome`.
    pub(crate) fn changes_of(&self, outcome: &'static str, ops: impl IntoIterator<Item = Op>) {
        if self.on {
            let mut counts = OpCounts::default();
            ops.into_iter().for_each(|op| counts.add(op, 1));
            self.changes(outcome, &counts);
        }
    }

    /// A batch's write attempts that were retried.
    pub(crate) fn retries(&self, n: u64) {
        if self.on && n > 0 {
            counter!(RETRIES_TOTAL, SYNC => self.s(), DESTINATION => self.d()).increment(n);
        }
    }

    /// One write call of `changes` changes, which took `took` and ended as `outcome` (one
    /// of [`DESTINATION_REQUESTS_TOTAL`]'s).
    pub(crate) fn request(&self, outcome: &'static str, changes: usize, took: Duration) {
        if !self.on {
            return;
        }
        counter!(DESTINATION_REQUESTS_TOTAL, SYNC => self.s(), DESTINATION => self.d(), OUTCOME => outcome)
            .increment(1);
        histogram!(BATCH_SIZE_RECORDS, SYNC => self.s(), DESTINATION => self.d()).record(changes as f64);
        histogram!(WRITE_DURATION_SECONDS, SYNC => self.s(), DESTINATION => self.d()).record(took.as_secs_f64());
    }

    /// `n` changes sent again under the idempotency key of a send whose outcome was unknown.
    pub(crate) fn duplicates(&self, n: u64) {
        if self.on && n > 0 {
            counter!(DUPLICATE_WRITES_TOTAL, SYNC => self.s(), DESTINATION => self.d()).increment(n);
        }
    }

    /// The circuit breaker opened.
    pub(crate) fn circuit_opened(&self) {
        if self.on {
            counter!(CIRCUIT_BREAKER_OPENS_TOTAL, SYNC => self.s(), DESTINATION => self.d()).increment(1);
        }
    }

    /// Writes waited `d` more (wall time, overlapping waits counted once) on rate limits.
    pub(crate) fn waited(&self, d: Duration) {
        if !self.on || d.is_zero() {
            return;
        }
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let before = self.sync.waited_nanos.fetch_add(nanos, Ordering::Relaxed);
        let after = before.saturating_add(nanos);
        let whole = after / 1_000_000_000 - before / 1_000_000_000;
        if whole > 0 {
            counter!(RATE_LIMIT_WAIT_SECONDS_TOTAL, SYNC => self.s(), DESTINATION => self.d()).increment(whole);
        }
    }

    /// The quota a write's answer reported.
    pub(crate) fn quota(&self, quota: &QuotaFeedback) {
        if !self.on {
            return;
        }
        let windows: [(&'static str, Option<QuotaWindow>); 2] = [("window", quota.window), ("daily", quota.daily)];
        for (window, reported) in windows {
            let Some(w) = reported else { continue };
            gauge!(QUOTA_REMAINING, SYNC => self.s(), DESTINATION => self.d(), WINDOW => window)
                .set(w.remaining as f64);
            if let Some(limit) = w.limit {
                gauge!(QUOTA_LIMIT, SYNC => self.s(), DESTINATION => self.d(), WINDOW => window).set(limit as f64);
            }
        }
    }

    /// The destination acknowledged, at `acked`, changes whose records changed at these
    /// times (microseconds since the Unix epoch).
    pub(crate) fn acknowledged_changes(&self, change_times: &[i64], acked: SystemTime) {
        if !self.on || change_times.is_empty() {
            return;
        }
        let acked = micros(acked);
        let latency = histogram!(RECORD_LATENCY_SECONDS, SYNC => self.s(), DESTINATION => self.d());
        let mut newest = i64::MIN;
        for &t in change_times {
            // A change time ahead of the clock (skew) counts as no latency, not a negative one.
            latency.record(acked.saturating_sub(t).max(0) as f64 / 1e6);
            newest = newest.max(t);
        }
        let before = self.sync.newest_change.fetch_max(newest, Ordering::Relaxed);
        if newest > before {
            gauge!(SOURCE_CHANGE_TIMESTAMP, SYNC => self.s()).set(newest as f64 / 1e6);
        }
    }

    /// Another runner held the sync's lease: the run could not start.
    pub(crate) fn lease_conflict(&self) {
        if self.on {
            counter!(LEASE_CONFLICTS_TOTAL, SYNC => self.s()).increment(1);
        }
    }

    /// The run ended with `report`, after `took`.
    pub(crate) fn finished(&self, report: &SyncReport, took: Duration) {
        if !self.on {
            return;
        }
        self.ended(report.status.label(), took);
        let now = SystemTime::now();
        if report.status.is_complete() {
            gauge!(LAST_SUCCESS_TIMESTAMP, SYNC => self.s()).set(secs(now));
            if let Some(started_ms) = report.backfill_started_at_ms {
                let took =
                    micros(now).saturating_sub(i64::try_from(started_ms).unwrap_or(i64::MAX).saturating_mul(1000));
                gauge!(BACKFILL_COMPLETED_TIMESTAMP, SYNC => self.s()).set(secs(now));
                gauge!(BACKFILL_DURATION_SECONDS, SYNC => self.s()).set(took.max(0) as f64 / 1e6);
            }
        }
        let drift_stop = matches!(report.status, RunStatus::Failed { kind: crate::FailureKind::SchemaDrift, .. });
        if report.schema_drift.is_some() || drift_stop {
            counter!(SCHEMA_DRIFT_TOTAL, SYNC => self.s()).increment(1);
        }
    }

    /// The run ended in an error (the state unreadable, a fingerprint mismatch) after `took`.
    pub(crate) fn failed(&self, took: Duration) {
        if self.on {
            // As `RunStatus::Failed` is labelled: the run did not do its work.
            self.ended("failed", took);
        }
    }

    fn ended(&self, status: &'static str, took: Duration) {
        counter!(RUNS_TOTAL, SYNC => self.s(), STATUS => status).increment(1);
        gauge!(LAST_RUN_TIMESTAMP, SYNC => self.s()).set(secs(SystemTime::now()));
        histogram!(RUN_DURATION_SECONDS, SYNC => self.s()).record(took.as_secs_f64());
        process();
    }
}

fn secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn micros(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Sets the process's resident memory and CPU time, read from `/proc/self` (Linux only;
/// elsewhere nothing is set).
fn process() {
    if let Some((rss, cpu)) = proc_self() {
        gauge!(PROCESS_RESIDENT_MEMORY_BYTES).set(rss as f64);
        gauge!(PROCESS_CPU_SECONDS).set(cpu);
    }
}

#[cfg(target_os = "linux")]
fn proc_self() -> Option<(u64, f64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let rss_kb: u64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
    // utime and stime, fields 14 and 15 of /proc/self/stat (the 12th and 13th after the
    // command's closing parenthesis), in clock ticks: USER_HZ, 100 per second on Linux.
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((rss_kb * 1024, (utime + stime) as f64 / 100.0))
}

#[cfg(not(target_os = "linux"))]
fn proc_self() -> Option<(u64, f64)> {
    None
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn the_process_figures_are_read_from_proc() {
        let Some((rss, cpu)) = super::proc_self() else { panic!("/proc/self is readable on Linux") };
        assert!(rss > 0);
        assert!(cpu >= 0.0);
    }
}
