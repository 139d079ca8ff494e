//! Status write-back: every record's outcome and every run's report, written to tables in
//! PostgreSQL or SQLite, so that an analyst asks in SQL what reached the destination and why
//! a row did not.
//!
//! A [`StatusWriter`] is an [`OutcomeObserver`]: attach it to each sync with
//! [`SyncBuilder::observer`](rse_core::SyncBuilder::observer). The runner hands it only
//! committed outcomes (see [`rse_core::observe`]); the writer keeps them in a bounded buffer
//! and a task of its own writes them in batches, so delivery never waits on the status
//! tables:
//!
//! - **Batched**: a write holds at most [`StatusOptions::batch_rows`] records — one transaction
//!   in SQLite, one multi-row insert (arrays unnested) in a transaction in PostgreSQL — and
//!   goes when that many wait, or every [`StatusOptions::flush_interval`].
//! - **Bounded**: at most [`StatusOptions::buffer_records`] outcomes wait. When the buffer is
//!   full the newest are dropped, counted in
//!   [`STATUS_WRITEBACK_DROPPED_TOTAL`]
//!   (by sync) and logged once per episode: the status table is an audit aid, and a sync
//!   must not stall because its warehouse is slow.
//! - **Its own failures**: a write that fails (the database down, the table dropped) is
//!   logged, counted in
//!   [`STATUS_WRITEBACK_FAILURES_TOTAL`],
//!   and its rows dropped and counted; the next write creates missing tables again. Delivery
//!   is never failed by it.
//! - **Retention**: with [`StatusOptions::with_retention_days`], rows older than that are
//!   deleted with the first write and then at most once per
//!   [`StatusOptions::retention_interval`] (or on [`StatusWriter::purge`]).
//! - **Draining**: [`StatusWriter::flush`] writes everything waiting and says whether it
//!   all landed; [`StatusWriter::shutdown`] does so and stops the task. A host awaits one of
//!   them before it exits.
//!
//! # The tables
//! Created when missing (with their indexes), in the schema and under the names
//! [`StatusOptions`] gives (default [`DEFAULT_RECORDS_TABLE`] and [`DEFAULT_RUNS_TABLE`]):
//!
//! | `rse_record_status` | |
//! |---|---|
//! | `sync_id`, `run_id` | the sync and the run (the run history's) |
//! | `key` | the key as text: a one-column key's value (`7`), a composite key as a JSON array (`["acme",7]`) |
//! | `key_hash` | the key's hash as logs and reports show it |
//! | `op` | `insert`, `update`, `delete`, `append`; null when refused before the diff |
//! | `outcome` | `applied`, `rejected`, `superseded`, `refused` |
//! | `stage` | `destination`, or where the record was refused: `source`, `transform`, `key` |
//! | `effect` | what the destination did with an applied change (`created`, `updated`, `unchanged`), where it says |
//! | `reason` | why it was not applied, in the refuser's words (fields and rules, never values) |
//! | `record_id` | the destination's id of the record (a CRM's), where known |
//! | `recorded_at` | when the outcome was committed |
//!
//! Indexed by `(sync_id, run_id)`, `(sync_id, key, recorded_at)`, `(sync_id, outcome,
//! recorded_at)` and `(recorded_at)`.
//!
//! `rse_run_history` holds one row per run: `sync_id`, `run_id`, `status` (`succeeded`,
//! `completed_with_rejections`, `failed`, …), `failure_kind`, `message` (the status in
//! words), `mode`, `dry_run`, `full_resync`, `started_at`, `finished_at`, `duration_ms`, the
//! counts `records_read`, `applied`, `rejected`, `superseded`, `refused` (by the source, a
//! transform or the key), `unchanged`, `undelivered`, `withheld`, `retries`, `batches`, and
//! `report`, the whole [`SyncReport`] as JSON (`jsonb` in PostgreSQL). Indexed by `(sync_id,
//! run_id)`, `(sync_id, finished_at)` and `(status, finished_at)`.
//!
//! In PostgreSQL times are `timestamptz`; in SQLite they are UTC text
//! (`2024-05-01 12:00:00.000`), which SQLite's date functions read and compare.
//!
//! # Example
//! ```no_run
//! # #[cfg(feature = "postgres")]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use rse_connectors::status::{StatusOptions, StatusWriter};
//! # let (source, destination, state) = (
//! #     rse_core::memory::MemorySource::new(rse_core::Schema::new(vec![rse_core::Field::required("id", rse_core::DataType::Int)], &["id"])?.into_arc(), vec![]),
//! #     rse_core::memory::MemoryDestination::new(), rse_core::memory::MemoryStateStore::new());
//! let status = StatusWriter::postgres(
//!     "postgres://rse@warehouse/analytics",
//!     StatusOptions::new().with_schema("rse_audit").with_retention_days(90),
//! )
//! .await?;
//! let sync = rse_core::SyncJob::builder("customers-to-crm")
//!     .source(source)
//!     .destination(destination)
//!     .state(state)
//!     .observer(status.clone())
//!     .build()
//!     .await?;
//! sync.run().await?;
//! status.shutdown().await?; // everything waiting is written before the process exits
//! # Ok(()) }
//! ```

mod rows;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use rse_core::StateError;
use rse_core::metrics::{STATUS_WRITEBACK_DROPPED_TOTAL, STATUS_WRITEBACK_FAILURES_TOTAL, SYNC};
use rse_core::observe::{ObservedBatch, OutcomeObserver};
use rse_core::report::SyncReport;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};

pub(crate) use rows::{RUN_COUNTS, RecordRow, RunRow};

/// The records table's name unless told otherwise.
pub const DEFAULT_RECORDS_TABLE: &str = "rse_record_status";
/// The run history table's name unless told otherwise.
pub const DEFAULT_RUNS_TABLE: &str = "rse_run_history";
/// The PostgreSQL schema of the tables unless told otherwise.
pub const DEFAULT_STATUS_SCHEMA: &str = "public";

/// Runs' reports wait in a queue of their own, this long at most (one per run: it fills only
/// when the tables have been unreachable for many runs).
const MAX_WAITING_RUNS: usize = 1024;

/// Where and how a [`StatusWriter`] writes. Read from a configuration file, every field is
/// optional and an unknown one is refused; durations read as `"5s"`.
///
/// ```
/// use rse_connectors::status::StatusOptions;
/// let options: StatusOptions =
///     serde_json::from_str(r#"{ "schema": "audit", "retention_days": 30, "flush_interval": "2s" }"#)?;
/// assert_eq!(options, StatusOptions::new().with_schema("audit").with_retention_days(30).with_flush_interval(std::time::Duration::from_secs(2)));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct StatusOptions {
    /// The PostgreSQL schema of the tables, created when missing (default `public`);
    /// SQLite has none and ignores it.
    pub schema: String,
    /// The per-record outcomes table (default [`DEFAULT_RECORDS_TABLE`]).
    pub records_table: String,
    /// The run history table (default [`DEFAULT_RUNS_TABLE`]).
    pub runs_table: String,
    /// The most records one write holds; a write goes as soon as this many wait (default
    /// 1000; at least 1).
    pub batch_rows: usize,
    /// How long outcomes wait at most before they are written (default 1 s).
    #[serde(with = "rse_core::config::duration")]
    pub flush_interval: Duration,
    /// The most outcomes waiting in memory; more are dropped and counted (default 100 000;
    /// at least [`batch_rows`](Self::batch_rows)).
    pub buffer_records: usize,
    /// Rows older than this many days are deleted; `None` keeps them (the default).
    pub retention_days: Option<u32>,
    /// How often at most old rows are deleted (default 1 h).
    #[serde(with = "rse_core::config::duration")]
    pub retention_interval: Duration,
    /// Connections in the PostgreSQL pool (default 2; at least 1).
    pub pool_size: usize,
}

impl Default for StatusOptions {
    fn default() -> Self {
        Self {
            schema: DEFAULT_STATUS_SCHEMA.to_owned(),
            records_table: DEFAULT_RECORDS_TABLE.to_owned(),
            runs_table: DEFAULT_RUNS_TABLE.to_owned(),
            batch_rows: 1000,
            flush_interval: Duration::from_secs(1),
            buffer_records: 100_000,
            retention_days: None,
            retention_interval: Duration::from_secs(3600),
            pool_size: 2,
        }
    }
}

impl StatusOptions {
    /// The defaults: tables `rse_record_status` and `rse_run_history` in `public`.
    pub fn new() -> Self {
        Self::default()
    }

    /// The PostgreSQL schema of the tables.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The two tables' names.
    pub fn with_tables(mut self, records: impl Into<String>, runs: impl Into<String>) -> Self {
        self.records_table = records.into();
        self.runs_table = runs.into();
        self
    }

    /// The most records per write.
    pub fn with_batch_rows(mut self, rows: usize) -> Self {
        self.batch_rows = rows;
        self
    }

    /// How long outcomes wait at most before they are written.
    pub fn with_flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    /// The most outcomes waiting in memory.
    pub fn with_buffer_records(mut self, records: usize) -> Self {
        self.buffer_records = records;
        self
    }

    /// Deletes rows older than `days` days.
    pub fn with_retention_days(mut self, days: u32) -> Self {
        self.retention_days = Some(days);
        self
    }

    /// How often at most old rows are deleted.
    pub fn with_retention_interval(mut self, interval: Duration) -> Self {
        self.retention_interval = interval;
        self
    }

    /// Connections in the PostgreSQL pool.
    pub fn with_pool_size(mut self, n: usize) -> Self {
        self.pool_size = n;
        self
    }

    /// The options as the writer uses them, or what to change.
    pub(crate) fn checked(mut self) -> Result<Self, StateError> {
        let other =
            |message: String| StateError::Other { message: format!("status write-back: {message}"), source: None };
        for (name, value) in [("records_table", &self.records_table), ("runs_table", &self.runs_table)] {
            if value.is_empty() {
                return Err(other(format!("`{name}` is empty: name the table (or leave the default)")));
            }
        }
        if self.records_table == self.runs_table {
            return Err(other(format!(
                "`records_table` and `runs_table` are both `{}`: the two tables need two names",
                self.records_table
            )));
        }
        if self.schema.is_empty() {
            return Err(other(format!("`schema` is empty: name one (default `{DEFAULT_STATUS_SCHEMA}`)")));
        }
        if self.flush_interval.is_zero() || self.retention_interval.is_zero() {
            return Err(other("`flush_interval` and `retention_interval` must be longer than zero".to_owned()));
        }
        if self.retention_days == Some(0) {
            return Err(other(
                "`retention_days` is 0, which would delete every row as soon as it is written: keep at least a day, \
                 or unset it to keep rows"
                    .to_owned(),
            ));
        }
        self.batch_rows = self.batch_rows.max(1);
        self.buffer_records = self.buffer_records.max(self.batch_rows);
        self.pool_size = self.pool_size.max(1);
        Ok(self)
    }

    fn retention(&self) -> Option<Duration> {
        self.retention_days.map(|d| Duration::from_secs(u64::from(d) * 86_400))
    }
}

/// Where the rows go: one implementation per database.
#[async_trait]
pub(crate) trait StatusSink: Send + Sync + 'static {
    /// Creates the tables and their indexes when missing.
    async fn prepare(&self) -> Result<(), StateError>;
    /// Writes `records` and `runs` in one transaction.
    async fn write(&self, records: Vec<RecordRow>, runs: Vec<RunRow>) -> Result<(), StateError>;
    /// Deletes the rows recorded before `before`; returns how many.
    async fn purge(&self, before: SystemTime) -> Result<u64, StateError>;
}

/// What the writer has done since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatusStats {
    /// Record outcomes written.
    pub records_written: u64,
    /// Runs written.
    pub runs_written: u64,
    /// Record outcomes dropped: the buffer was full, the writer shut down, or their write failed.
    pub records_dropped: u64,
    /// Writes (and deletions of old rows) that failed.
    pub failures: u64,
    /// Rows deleted as older than the retention.
    pub rows_purged: u64,
}

/// Writes every record outcome and run report it is told (as an [`OutcomeObserver`]) to the
/// status tables, batched, off the delivery path. See the [module](self) for the tables and
/// the guarantees.
///
/// Clones share one buffer and one writing task; the task ends with
/// [`shutdown`](Self::shutdown), or once every clone is dropped (writing what waits first).
#[derive(Clone)]
pub struct StatusWriter {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for StatusWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusWriter").field("target", &self.handle.shared.target).finish_non_exhaustive()
    }
}

struct Handle {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
}

enum Command {
    Flush(oneshot::Sender<Result<(), StateError>>),
    Purge(oneshot::Sender<Result<u64, StateError>>),
    Shutdown(oneshot::Sender<Result<(), StateError>>),
}

struct Shared {
    /// Where the rows go, for messages.
    target: String,
    options: StatusOptions,
    queue: Mutex<Queue>,
    /// Woken when a full write's worth of records waits.
    wake: Notify,
    closed: AtomicBool,
    records_written: AtomicU64,
    runs_written: AtomicU64,
    records_dropped: AtomicU64,
    failures: AtomicU64,
    rows_purged: AtomicU64,
}

#[derive(Default)]
struct Queue {
    /// Batches waiting, each with the range of its records still to write (the first
    /// records of a batch only, when the buffer had room for no more).
    batches: VecDeque<(Arc<ObservedBatch>, std::ops::Range<usize>)>,
    records: usize,
    runs: VecDeque<SyncReport>,
    /// Dropped since the buffer last had room (logged when it has room again).
    dropping: u64,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn dropped(&self, sync_id: &str, n: u64) {
        self.records_dropped.fetch_add(n, Ordering::Relaxed);
        metrics::counter!(STATUS_WRITEBACK_DROPPED_TOTAL, SYNC => sync_id.to_owned()).increment(n);
    }
}

impl StatusWriter {
    /// A writer to `sink`, whose tables it creates now.
    pub(crate) async fn start(
        sink: Arc<dyn StatusSink>,
        target: String,
        options: StatusOptions,
    ) -> Result<StatusWriter, StateError> {
        sink.prepare().await?;
        let shared = Arc::new(Shared {
            target,
            options,
            queue: Mutex::default(),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            records_written: AtomicU64::new(0),
            runs_written: AtomicU64::new(0),
            records_dropped: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            rows_purged: AtomicU64::new(0),
        });
        let (commands, received) = mpsc::unbounded_channel();
        tokio::spawn(Worker { shared: shared.clone(), sink, prepared: true, last_purge: None }.run(received));
        Ok(StatusWriter { handle: Arc::new(Handle { shared, commands }) })
    }

    /// Writes everything waiting now.
    ///
    /// # Errors
    /// The last error of the writes this flush made (their rows are dropped and counted, and
    /// the writer goes on), or [`StateError::Other`] when the writer was shut down.
    pub async fn flush(&self) -> Result<(), StateError> {
        self.ask(Command::Flush).await?
    }

    /// Writes everything waiting, then stops the writing task. Outcomes told afterwards are
    /// dropped and counted.
    ///
    /// # Errors
    /// As [`flush`](Self::flush).
    pub async fn shutdown(&self) -> Result<(), StateError> {
        self.ask(Command::Shutdown).await?
    }

    /// Deletes the rows older than the retention now (see
    /// [`StatusOptions::with_retention_days`]); returns how many. Nothing without a retention.
    ///
    /// # Errors
    /// The database's error (counted as a failure), or [`StateError::Other`] when the writer
    /// was shut down.
    pub async fn purge(&self) -> Result<u64, StateError> {
        self.ask(Command::Purge).await?
    }

    /// What the writer has done since it started.
    pub fn stats(&self) -> StatusStats {
        let s = &self.handle.shared;
        StatusStats {
            records_written: s.records_written.load(Ordering::Relaxed),
            runs_written: s.runs_written.load(Ordering::Relaxed),
            records_dropped: s.records_dropped.load(Ordering::Relaxed),
            failures: s.failures.load(Ordering::Relaxed),
            rows_purged: s.rows_purged.load(Ordering::Relaxed),
        }
    }

    async fn ask<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, StateError> {
        let (tx, rx) = oneshot::channel();
        let gone = || StateError::Other {
            message: format!("the status writer to {} was shut down; create a new one", self.handle.shared.target),
            source: None,
        };
        self.handle.commands.send(command(tx)).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }
}

impl OutcomeObserver for StatusWriter {
    fn on_outcomes(&self, batch: Arc<ObservedBatch>) {
        let shared = &self.handle.shared;
        let n = batch.records.len();
        if shared.closed.load(Ordering::Relaxed) {
            shared.dropped(&batch.sync_id, n as u64);
            return;
        }
        let (taken, full) = {
            let mut queue = shared.queue();
            let room = shared.options.buffer_records.saturating_sub(queue.records);
            let taken = room.min(n);
            if taken < n {
                if queue.dropping == 0 {
                    warn!(
                        sync = %batch.sync_id,
                        target = %shared.target,
                        capacity = shared.options.buffer_records,
                        "The status write-back buffer is full; outcomes are dropped until it has room."
                    );
                }
                queue.dropping += (n - taken) as u64;
            } else if queue.dropping > 0 {
                info!(target = %shared.target, dropped = queue.dropping, "The status write-back buffer has room again.");
                queue.dropping = 0;
            }
            if taken > 0 {
                queue.records += taken;
                queue.batches.push_back((batch.clone(), 0..taken));
            }
            (taken, queue.records >= shared.options.batch_rows)
        };
        if taken < n {
            shared.dropped(&batch.sync_id, (n - taken) as u64);
        }
        if full {
            shared.wake.notify_one();
        }
    }

    fn on_run(&self, report: &SyncReport) {
        let shared = &self.handle.shared;
        if shared.closed.load(Ordering::Relaxed) {
            warn!(sync = %report.sync_id, run = report.run_id, "The status writer is shut down; the run is not written.");
            return;
        }
        let mut queue = shared.queue();
        if queue.runs.len() >= MAX_WAITING_RUNS {
            warn!(sync = %report.sync_id, run = report.run_id, target = %shared.target, "Too many runs wait for the status tables; this run is not written.");
            return;
        }
        queue.runs.push_back(report.clone());
    }
}

/// The writing task.
struct Worker {
    shared: Arc<Shared>,
    sink: Arc<dyn StatusSink>,
    /// Whether the tables are known to exist (after a failed write they are created again).
    prepared: bool,
    last_purge: Option<Instant>,
}

impl Worker {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut tick = tokio::time::interval(self.shared.options.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let command = tokio::select! {
                _ = tick.tick() => None,
                () = self.shared.wake.notified() => None,
                command = commands.recv() => Some(command),
            };
            match command {
                None => {
                    let _ = self.drain().await;
                }
                Some(Some(Command::Flush(reply))) => {
                    let _ = reply.send(self.drain().await);
                }
                Some(Some(Command::Purge(reply))) => {
                    let _ = reply.send(self.purge().await);
                }
                Some(Some(Command::Shutdown(reply))) => {
                    self.shared.closed.store(true, Ordering::Relaxed);
                    let _ = reply.send(self.drain().await);
                    return;
                }
                // Every handle is gone: write what waits and end.
                Some(None) => {
                    self.shared.closed.store(true, Ordering::Relaxed);
                    let _ = self.drain().await;
                    return;
                }
            }
        }
    }

    /// Writes what waits, a write at a time, until nothing does; the last error, if any.
    async fn drain(&mut self) -> Result<(), StateError> {
        let mut result = Ok(());
        let mut wrote = false;
        while let Some((records, runs)) = self.take() {
            wrote = true;
            if let Err(error) = self.write(records, runs).await {
                result = Err(error);
            }
        }
        if wrote && self.purge_due() {
            match self.purge().await {
                Err(error) if result.is_ok() => result = Err(error),
                _ => {}
            }
        }
        result
    }

    /// Up to a write's worth of records (and, once no record waits, the runs).
    fn take(&self) -> Option<(Vec<RecordRow>, Vec<RunRow>)> {
        let limit = self.shared.options.batch_rows;
        let (batches, reports) = {
            let mut queue = self.shared.queue();
            let mut batches = Vec::new();
            let mut taken = 0;
            while taken < limit {
                let Some((batch, range)) = queue.batches.pop_front() else { break };
                let end = range.end.min(range.start + (limit - taken));
                taken += end - range.start;
                if end < range.end {
                    queue.batches.push_front((batch.clone(), end..range.end));
                }
                batches.push((batch, range.start..end));
            }
            queue.records -= taken;
            // A run's report follows the outcomes told before it.
            let reports: Vec<SyncReport> =
                if queue.batches.is_empty() { queue.runs.drain(..).collect() } else { Vec::new() };
            (batches, reports)
        };
        if batches.is_empty() && reports.is_empty() {
            return None;
        }
        let mut records = Vec::with_capacity(batches.iter().map(|(_, range)| range.len()).sum());
        for (batch, range) in &batches {
            RecordRow::of(batch, range.clone(), &mut records);
        }
        Some((records, reports.iter().map(RunRow::of).collect()))
    }

    async fn write(&mut self, records: Vec<RecordRow>, runs: Vec<RunRow>) -> Result<(), StateError> {
        let (n_records, n_runs) = (records.len() as u64, runs.len() as u64);
        let mut per_sync: BTreeMap<Arc<str>, u64> = BTreeMap::new();
        for r in &records {
            *per_sync.entry(r.sync_id.clone()).or_default() += 1;
        }
        let run_syncs: Vec<String> = runs.iter().map(|r| r.sync_id.clone()).collect();
        let written = async {
            if !self.prepared {
                self.sink.prepare().await?;
                self.prepared = true;
            }
            self.sink.write(records, runs).await
        }
        .await;
        match written {
            Ok(()) => {
                self.shared.records_written.fetch_add(n_records, Ordering::Relaxed);
                self.shared.runs_written.fetch_add(n_runs, Ordering::Relaxed);
                debug!(target = %self.shared.target, records = n_records, runs = n_runs, "Wrote outcomes to the status tables.");
                Ok(())
            }
            Err(error) => {
                self.prepared = false;
                self.shared.failures.fetch_add(1, Ordering::Relaxed);
                warn!(
                    target = %self.shared.target,
                    records = n_records,
                    runs = n_runs,
                    %error,
                    "Writing to the status tables failed; these outcomes are dropped (delivery is not affected)."
                );
                let mut syncs: Vec<&str> = per_sync.keys().map(|s| &**s).collect();
                syncs.extend(run_syncs.iter().map(String::as_str));
                syncs.sort_unstable();
                syncs.dedup();
                for sync in syncs {
                    metrics::counter!(STATUS_WRITEBACK_FAILURES_TOTAL, SYNC => sync.to_owned()).increment(1);
                }
                for (sync, n) in &per_sync {
                    self.shared.dropped(sync, *n);
                }
                Err(error)
            }
        }
    }

    fn purge_due(&self) -> bool {
        self.shared.options.retention_days.is_some()
            && self.last_purge.is_none_or(|at| at.elapsed() >= self.shared.options.retention_interval)
    }

    async fn purge(&mut self) -> Result<u64, StateError> {
        let Some(retention) = self.shared.options.retention() else { return Ok(0) };
        self.last_purge = Some(Instant::now());
        let before = SystemTime::now().checked_sub(retention).unwrap_or(SystemTime::UNIX_EPOCH);
        match self.sink.purge(before).await {
            Ok(n) => {
                self.shared.rows_purged.fetch_add(n, Ordering::Relaxed);
                debug!(target = %self.shared.target, rows = n, "Deleted status rows older than the retention.");
                Ok(n)
            }
            Err(error) => {
                self.shared.failures.fetch_add(1, Ordering::Relaxed);
                warn!(target = %self.shared.target, %error, "Deleting old status rows failed; tried again later.");
                Err(error)
            }
        }
    }
}
