//! `SqliteStateStore`: a sync's state in one SQLite file, in WAL mode, off the async runtime.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use rse_core::shared_quota::{SharedQuota, gcra};
use rse_core::state::{Lease, Pause, RejectedEntry, SnapshotEntry, StateCommit, StateStore, SyncMeta};
use rse_core::{Key, RateLimit, StateError, SyncReport};
use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use super::{
    DEFAULT_RUN_RETENTION, RunRecord, SyncSummary, cursor_bytes, entry_from, from_i64, from_json, last_per_key,
    meta_from, now_ms, pending_columns, rejected_columns, rejected_from, stage_name, time_from_ms, to_i64, to_json,
    ttl_ms,
};

/// The schema version this rse writes; kept in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 5;

/// Versioned migrations: entry `i` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: syncs (metadata and lease), snapshot, rejected set, run history.
    "CREATE TABLE rse_syncs (
        id INTEGER PRIMARY KEY,
        sync_id TEXT NOT NULL UNIQUE,
        fingerprint_algorithm TEXT,
        cursor TEXT,
        last_token INTEGER NOT NULL DEFAULT 0,
        lease_holder TEXT,
        lease_token INTEGER,
        lease_acquired_ms INTEGER,
        lease_expires_ms INTEGER
    );
    CREATE TABLE rse_snapshot (
        sync INTEGER NOT NULL,
        key BLOB NOT NULL,
        fingerprint BLOB,
        version INTEGER NOT NULL,
        pending_op INTEGER,
        pending_fingerprint BLOB,
        pending_version INTEGER,
        PRIMARY KEY (sync, key)
    ) WITHOUT ROWID;
    CREATE TABLE rse_rejected (
        sync INTEGER NOT NULL,
        key BLOB NOT NULL,
        stage TEXT NOT NULL,
        reason TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        last_rejected_at INTEGER NOT NULL,
        entry TEXT NOT NULL,
        PRIMARY KEY (sync, key)
    ) WITHOUT ROWID;
    CREATE TABLE rse_runs (
        sync INTEGER NOT NULL,
        run_id INTEGER NOT NULL,
        started_at_ms INTEGER NOT NULL,
        status TEXT NOT NULL,
        report TEXT NOT NULL,
        PRIMARY KEY (sync, run_id)
    ) WITHOUT ROWID;",
    // 2: refused records and cursors in the exact binary form (`codec.rs`), which keeps NaN
    // and infinities that JSON cannot. Rows written before keep the record inside `entry`
    // and the cursor in `cursor`, and are read from there; new writes fill these columns.
    "ALTER TABLE rse_rejected ADD COLUMN record BLOB;
    ALTER TABLE rse_syncs ADD COLUMN cursor_value BLOB;",
    // 3: the memo a destination keeps per key (a CRM's record id); none for entries written before.
    "ALTER TABLE rse_snapshot ADD COLUMN memo BLOB;",
    // 4: operators' pauses, one row per paused sync (by sync id: a sync never run can be
    // paused); resuming deletes the row.
    "CREATE TABLE IF NOT EXISTS rse_pauses (
        sync_id TEXT PRIMARY KEY,
        paused_by TEXT NOT NULL,
        reason TEXT NOT NULL,
        paused_at_ms INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // 5: the epoch of a pushdown sync's last complete full re-diff; none for syncs before.
    "ALTER TABLE rse_syncs ADD COLUMN pushdown_epoch TEXT;",
];

/// Options of a [`SqliteStateStore`], for [`SqliteStateStore::open_with`]; read from a
/// configuration file, every field is optional, an unknown one is refused and
/// `busy_timeout` reads as `"10s"`.
///
/// ```
/// use rse_connectors::state::SqliteStateStoreOptions;
/// let options: SqliteStateStoreOptions = serde_json::from_str(r#"{ "run_retention": 20 }"#)?;
/// assert_eq!(options, SqliteStateStoreOptions::default().with_run_retention(20));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SqliteStateStoreOptions {
    /// How many runs of each sync the history keeps (default 100; at least 1).
    pub run_retention: usize,
    /// How long a call waits for another process's write lock before failing with
    /// [`StateError::Unavailable`] (default 10 s).
    #[serde(with = "rse_core::config::duration")]
    pub busy_timeout: Duration,
}

impl Default for SqliteStateStoreOptions {
    fn default() -> Self {
        Self { run_retention: DEFAULT_RUN_RETENTION, busy_timeout: Duration::from_secs(10) }
    }
}

impl SqliteStateStoreOptions {
    /// Keeps only the last `n` runs of each sync.
    pub fn with_run_retention(mut self, n: usize) -> Self {
        self.run_retention = n;
        self
    }

    /// How long a call waits for another process's write lock.
    pub fn with_busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }
}

fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Inner {
    path: PathBuf,
    name: String,
    /// Commits, leases and run records; SQLite has one writer at a time anyway.
    writer: Mutex<Connection>,
    /// Scans and lookups, which in WAL mode never wait for the writer.
    reader: Mutex<Connection>,
}

/// The state of any number of syncs in one SQLite file (bundled SQLite, WAL mode).
///
/// The embedded default: no server, one file to back up. Every call runs on tokio's
/// blocking pool, never on the async runtime's threads. A commit is one SQLite
/// transaction, so a process killed at any instant leaves either all of it or none.
/// In WAL mode with `synchronous = NORMAL`, a committed transaction survives the death of
/// the process; a power loss may roll back the last commits, never leaving a partial one.
///
/// Several processes may share the file: SQLite serialises their writes, and the per-sync
/// lease keeps two runners of the same sync apart.
///
/// ```no_run
/// # async fn demo() -> Result<(), rse_core::StateError> {
/// use rse_connectors::state::SqliteStateStore;
/// let state = SqliteStateStore::open("state.db").await?.with_run_retention(50);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteStateStore {
    inner: Arc<Inner>,
    run_retention: usize,
}

impl std::fmt::Debug for SqliteStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStateStore").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

/// Explains a SQLite failure on the state file: what went wrong and what to do.
fn sqlite_error(path: &Path, doing: &str, e: rusqlite::Error) -> StateError {
    let p = path.display();
    let code = e.sqlite_error_code();
    let (message, retry) = match code {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => (
            format!(
                "state file {p} is locked by another process ({doing} gave up waiting); wait for it to finish, or make sure no other program holds the file open in a transaction"
            ),
            true,
        ),
        Some(ErrorCode::ReadOnly) => (
            format!(
                "state file {p} is read-only ({doing}): make it and its directory writable, or point the store elsewhere"
            ),
            false,
        ),
        Some(ErrorCode::CannotOpen) => {
            (format!("cannot open state file {p} ({doing}): check that its directory exists and is writable"), false)
        }
        Some(ErrorCode::PermissionDenied) => (
            format!("no permission to use state file {p} ({doing}): fix its permissions or point the store elsewhere"),
            false,
        ),
        Some(ErrorCode::DiskFull) => {
            (format!("disk full writing state file {p} ({doing}): free space and run again"), true)
        }
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            return StateError::Incompatible {
                message: format!(
                    "{p} is not a readable rse state file ({doing}: {e}); restore it from a backup or point the store elsewhere"
                ),
            };
        }
        Some(ErrorCode::SystemIoFailure) => (format!("I/O error on state file {p} ({doing}): check the disk"), true),
        _ => (format!("state file {p}: {doing} failed: {e}"), false),
    };
    if retry {
        StateError::Unavailable { message, source: Some(Box::new(e)) }
    } else {
        StateError::Other { message, source: Some(Box::new(e)) }
    }
}

/// The fencing check: the lease's token must be the sync's current one. Returns the sync's
/// row id.
fn check_fence(conn: &Connection, lease: &Lease) -> Result<Result<i64, StateError>, rusqlite::Error> {
    let row: Option<(i64, Option<i64>, i64)> = conn
        .prepare_cached("SELECT id, lease_token, last_token FROM rse_syncs WHERE sync_id = ?1")?
        .query_row([&lease.sync_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    Ok(match row {
        Some((id, Some(token), _)) if from_i64(token) == lease.token => Ok(id),
        Some((_, token, last)) => Err(StateError::Fenced {
            sync_id: lease.sync_id.clone(),
            token: lease.token,
            current: from_i64(token.unwrap_or(last)),
        }),
        None => Err(StateError::Fenced { sync_id: lease.sync_id.clone(), token: lease.token, current: 0 }),
    })
}

type Row = (Vec<u8>, Option<Vec<u8>>, i64, Option<i64>, Option<Vec<u8>>, Option<i64>, Option<Vec<u8>>);

/// Rows per statement when a commit writes many snapshot rows: one statement of many rows
/// saves SQLite a statement's start, step and reset per row (an initial load's batch of
/// 5,000 keys writes each key twice, its intent and its acknowledgement).
const ROWS_PER_STATEMENT: usize = 64;

/// Inserts `rows` by `INSERT … {columns} VALUES (…), (…) … {tail}`, up to
/// [`ROWS_PER_STATEMENT`] rows a statement, each row's values given by `bind` (its row and
/// the index of its first parameter; the statement binds `width` parameters a row). The
/// statement of one row does the rest.
fn insert_rows<R>(
    tx: &rusqlite::Transaction<'_>,
    columns: &str,
    width: usize,
    tail: &str,
    rows: &[R],
    bind: impl Fn(&mut rusqlite::Statement<'_>, usize, &R) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let row = format!("({})", vec!["?"; width].join(", "));
    let sql = |n: usize| format!("INSERT {columns} VALUES {} {tail}", vec![row.as_str(); n].join(", "));
    let mut chunks = rows.chunks_exact(ROWS_PER_STATEMENT);
    if rows.len() >= ROWS_PER_STATEMENT {
        let mut many = tx.prepare_cached(&sql(ROWS_PER_STATEMENT))?;
        for chunk in chunks.by_ref() {
            for (i, r) in chunk.iter().enumerate() {
                bind(&mut many, 1 + i * width, r)?;
            }
            many.raw_execute()?;
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut one = tx.prepare_cached(&sql(1))?;
        for r in rest {
            bind(&mut one, 1, r)?;
            one.raw_execute()?;
        }
    }
    Ok(())
}

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
}

fn to_entry(row: &Row) -> Result<SnapshotEntry, StateError> {
    entry_from(&row.0, row.1.as_deref(), row.2, (row.3, row.4.as_deref(), row.5), row.6.as_deref())
}

impl SqliteStateStore {
    /// Opens (creating if needed) the state file at `path`, switches it to WAL mode and
    /// applies any migration it lacks.
    ///
    /// # Errors
    /// [`StateError::Incompatible`] when the file was written by a newer rse or is not a
    /// state file; [`StateError::Other`] when it cannot be opened or written (read-only,
    /// missing directory), [`StateError::Unavailable`] when another process keeps it locked.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StateError> {
        Self::open_with(path, SqliteStateStoreOptions::default()).await
    }

    /// Opens the state file at `path` as [`open`](Self::open) does, with `options`.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub async fn open_with(path: impl AsRef<Path>, options: SqliteStateStoreOptions) -> Result<Self, StateError> {
        let path = path.as_ref().to_path_buf();
        let busy_timeout = options.busy_timeout;
        let inner =
            tokio::task::spawn_blocking(move || Self::open_blocking(path, busy_timeout)).await.map_err(|e| {
                StateError::Other { message: format!("opening the state file panicked: {e}"), source: None }
            })??;
        Ok(Self { inner: Arc::new(inner), run_retention: options.run_retention.max(1) })
    }

    fn open_blocking(path: PathBuf, busy_timeout: Duration) -> Result<Inner, StateError> {
        let connect = |doing: &str| -> Result<Connection, StateError> {
            let conn = Connection::open(&path).map_err(|e| sqlite_error(&path, doing, e))?;
            conn.busy_timeout(busy_timeout).map_err(|e| sqlite_error(&path, doing, e))?;
            Ok(conn)
        };
        let mut writer = connect("opening")?;
        let version: i64 = writer
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| sqlite_error(&path, "reading the schema version", e))?;
        if version > SCHEMA_VERSION {
            return Err(newer(&path, version));
        }
        if version < SCHEMA_VERSION {
            // WAL mode is a property of the file; set it once, before the first migration.
            // SQLite does not wait for the switch when another connection is switching too
            // (waiting could deadlock): processes opening a new file at once — the partitions
            // of a sync — try again until the busy timeout.
            let started = std::time::Instant::now();
            loop {
                match writer.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)) {
                    Ok(_) => break,
                    Err(e)
                        if matches!(
                            e.sqlite_error_code(),
                            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                        ) && started.elapsed() < busy_timeout =>
                    {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => return Err(sqlite_error(&path, "switching to WAL mode", e)),
                }
            }
            Self::migrate(&path, &mut writer)?;
        }
        // Memory. A re-run's merge diff scans the whole snapshot, and every page of the file
        // it touches stays resident while it is mapped or cached: with a 1 GiB map and 64 MiB
        // caches, a scan of a 10 M-key state (414 MB) peaked at 408 MB resident. So the reader
        // maps only the first 64 MiB — a state up to about 1.5 M keys is still read from
        // memory, a lookup a B-tree walk without a read call per page — and reads past it
        // through a 16 MiB page cache (the OS's file cache serves those reads; the 10 M-key
        // scan takes the same 3.6–4.8 s either way, now peaking at 90 MB). The writer
        // descends only to the keys a commit touches: a 16 MiB cache and no map. That bounds
        // the state's share of resident memory near 64 + 2 × 16 MiB, whatever its size
        // (`cargo bench --bench state_rss --features sqlite` measures it).
        writer
            .execute_batch("PRAGMA synchronous = NORMAL; PRAGMA mmap_size = 0; PRAGMA cache_size = -16384;")
            .map_err(|e| sqlite_error(&path, "configuring", e))?;
        // Every statement the writer runs stays prepared (rusqlite keeps 16 by default).
        writer.set_prepared_statement_cache_capacity(64);
        let reader = connect("opening a reader")?;
        reader
            .execute_batch("PRAGMA query_only = ON; PRAGMA mmap_size = 67108864; PRAGMA cache_size = -16384;")
            .map_err(|e| sqlite_error(&path, "configuring a reader", e))?;
        Ok(Inner {
            name: format!("sqlite:{}", path.display()),
            path,
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
        })
    }

    /// Applies the missing migrations in one immediate transaction, so that two processes
    /// opening a new file together migrate it once.
    fn migrate(path: &Path, conn: &mut Connection) -> Result<(), StateError> {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| sqlite_error(path, "starting the migration", e))?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| sqlite_error(path, "reading the schema version", e))?;
        if version > SCHEMA_VERSION {
            return Err(newer(path, version));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(version).unwrap_or(0)) {
            tx.execute_batch(sql).map_err(|e| sqlite_error(path, &format!("applying migration {}", i + 1), e))?;
        }
        // PRAGMA takes no bound parameters; SCHEMA_VERSION is a constant.
        tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
            .map_err(|e| sqlite_error(path, "recording the schema version", e))?;
        tx.commit().map_err(|e| sqlite_error(path, "committing the migration", e))
    }

    /// Keeps only the last `n` runs of each sync (default 100; at least 1).
    pub fn with_run_retention(mut self, n: usize) -> Self {
        self.run_retention = n.max(1);
        self
    }

    /// How long a call waits for another process's write lock before failing with
    /// [`StateError::Unavailable`] (default 10 s).
    pub fn with_busy_timeout(self, timeout: Duration) -> Self {
        for conn in [&self.inner.writer, &self.inner.reader] {
            if let Err(error) = lock(conn).busy_timeout(timeout) {
                tracing::warn!(%error, "Could not set the SQLite busy timeout.");
            }
        }
        self
    }

    /// The file this store writes.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    async fn with_reader<T: Send + 'static>(
        &self,
        doing: &'static str,
        f: impl FnOnce(&Connection) -> Result<Result<T, StateError>, rusqlite::Error> + Send + 'static,
    ) -> Result<T, StateError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = lock(&inner.reader);
            f(&conn).map_err(|e| sqlite_error(&inner.path, doing, e))?
        })
        .await
        .map_err(|e| StateError::Other { message: format!("{doing} panicked: {e}"), source: None })?
    }

    /// Runs `f` in an immediate write transaction, committed only when `f` returns `Ok(Ok)`.
    async fn with_writer<T: Send + 'static>(
        &self,
        doing: &'static str,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<Result<T, StateError>, rusqlite::Error> + Send + 'static,
    ) -> Result<T, StateError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = lock(&inner.writer);
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| sqlite_error(&inner.path, doing, e))?;
            match f(&tx) {
                Ok(Ok(value)) => {
                    tx.commit().map_err(|e| sqlite_error(&inner.path, doing, e))?;
                    Ok(value)
                }
                // Dropping the transaction rolls it back: the state stays as it was.
                Ok(Err(refused)) => Err(refused),
                Err(e) => Err(sqlite_error(&inner.path, doing, e)),
            }
        })
        .await
        .map_err(|e| StateError::Other { message: format!("{doing} panicked: {e}"), source: None })?
    }

    /// Every sync the file holds, with its counts and current lease, by sync id.
    ///
    /// # Errors
    /// As [`StateStore::scan`].
    pub async fn list_syncs(&self) -> Result<Vec<SyncSummary>, StateError> {
        self.with_reader("listing syncs", |conn| {
            let now = now_ms();
            let mut stmt = conn.prepare(
                "SELECT s.sync_id,
                        (SELECT count(*) FROM rse_snapshot WHERE sync = s.id),
                        (SELECT count(*) FROM rse_rejected WHERE sync = s.id),
                        s.lease_holder, s.lease_expires_ms
                 FROM rse_syncs s ORDER BY s.sync_id",
            )?;
            let rows = stmt.query_map([], |r| {
                let holder: Option<String> = r.get(3)?;
                let expires: Option<i64> = r.get(4)?;
                Ok(SyncSummary {
                    sync_id: r.get(0)?,
                    entries: from_i64(r.get(1)?),
                    rejected: from_i64(r.get(2)?),
                    lease: holder.zip(expires).filter(|(_, e)| *e > now).map(|(h, e)| (h, time_from_ms(e))),
                })
            })?;
            Ok(Ok(rows.collect::<Result<Vec<_>, _>>()?))
        })
        .await
    }

    /// The latest `limit` runs of a sync with their ids and start times, newest first.
    ///
    /// # Errors
    /// As [`StateStore::runs`].
    pub async fn list_runs(&self, sync_id: &str, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        let sync_id = sync_id.to_owned();
        let limit = to_i64(limit as u64);
        self.with_reader("listing runs", move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT r.run_id, r.started_at_ms, r.report FROM rse_runs r JOIN rse_syncs s ON s.id = r.sync
                 WHERE s.sync_id = ?1 ORDER BY r.run_id DESC LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(params![sync_id, limit], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows
                .into_iter()
                .map(|(run_id, started, report)| {
                    Ok(RunRecord {
                        sync_id: sync_id.clone(),
                        run_id: from_i64(run_id),
                        started_at_ms: from_i64(started),
                        report: from_json("a run report", &report)?,
                    })
                })
                .collect())
        })
        .await
    }
}

fn newer(path: &Path, version: i64) -> StateError {
    StateError::Incompatible {
        message: format!(
            "state file {} was written by a newer rse (schema version {version}; this rse knows up to {SCHEMA_VERSION}); upgrade rse, or point the store elsewhere",
            path.display()
        ),
    }
}

/// The shared quota's table: one schedule per scope (see [`rse_core::shared_quota`]).
/// Created on the first reservation rather than by a migration: it holds nothing a run's
/// state depends on, and an older rse opening the file ignores it.
const QUOTA_TABLE: &str = "CREATE TABLE IF NOT EXISTS rse_quota_schedule (
    scope TEXT PRIMARY KEY,
    tat_us INTEGER NOT NULL
) WITHOUT ROWID";

/// The shared quota of the runners using this file: every partition of a sync run by
/// processes of one host that keep their state in the same file shares its destination's
/// limit (processes on several hosts need the `PostgresStateStore`: SQLite's locks do not
/// hold across a network file system).
///
/// A reservation is one immediate write transaction: SQLite's write lock orders the
/// reservations of every process, and the host's clock, read once the lock is held, dates
/// each one. A step of that clock moves the schedule with it: a step back delays the next
/// slots by the step, a step forward lets at most the burst's tolerance go at once.
#[async_trait]
impl SharedQuota for SqliteStateStore {
    async fn reserve(&self, scope: &str, limit: RateLimit) -> Result<Duration, StateError> {
        let Some((interval, tolerance)) = gcra(limit) else { return Ok(Duration::ZERO) };
        let scope = scope.to_owned();
        let micros = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        let (interval, tolerance) = (micros(interval), micros(tolerance));
        let wait_us = self
            .with_writer("reserving a request of the shared quota", move |tx| {
                tx.execute_batch(QUOTA_TABLE)?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
                let tat: Option<i64> = tx
                    .query_row("SELECT tat_us FROM rse_quota_schedule WHERE scope = ?1", params![scope], |r| r.get(0))
                    .optional()?;
                let slot = tat.unwrap_or(now).max(now);
                tx.execute(
                    "INSERT INTO rse_quota_schedule (scope, tat_us) VALUES (?1, ?2) \
                     ON CONFLICT (scope) DO UPDATE SET tat_us = excluded.tat_us",
                    params![scope, slot.saturating_add(interval)],
                )?;
                Ok(Ok(slot.saturating_sub(tolerance).saturating_sub(now).max(0)))
            })
            .await?;
        Ok(Duration::from_micros(u64::try_from(wait_us).unwrap_or(0)))
    }
}

#[async_trait]
impl StateStore for SqliteStateStore {
    fn name(&self) -> &str {
        &self.inner.name
    }

    async fn acquire_lease(&self, sync_id: &str, holder: &str, ttl: Duration) -> Result<Lease, StateError> {
        let (sync_id, holder) = (sync_id.to_owned(), holder.to_owned());
        self.with_writer("taking the lease", move |tx| {
            tx.prepare_cached("INSERT INTO rse_syncs (sync_id) VALUES (?1) ON CONFLICT (sync_id) DO NOTHING")?
                .execute([&sync_id])?;
            let (last, current_holder, acquired, expires): (i64, Option<String>, Option<i64>, Option<i64>) = tx
                .prepare_cached(
                    "SELECT last_token, lease_holder, lease_acquired_ms, lease_expires_ms FROM rse_syncs WHERE sync_id = ?1",
                )?
                .query_row([&sync_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            let now = now_ms();
            if let (Some(current), Some(acquired), Some(expires)) = (current_holder, acquired, expires)
                && expires > now
            {
                return Ok(Err(StateError::LeaseHeld {
                    sync_id,
                    holder: current,
                    since_secs: from_i64(now - acquired) / 1000,
                    expires_in_secs: from_i64(expires - now) / 1000,
                }));
            }
            let token = last + 1;
            let expires = now.saturating_add(ttl_ms(ttl));
            tx.prepare_cached(
                "UPDATE rse_syncs SET last_token = ?2, lease_holder = ?3, lease_token = ?2, lease_acquired_ms = ?4,
                 lease_expires_ms = ?5 WHERE sync_id = ?1",
            )?
            .execute(params![sync_id, token, holder, now, expires])?;
            Ok(Ok(Lease { sync_id, holder, token: from_i64(token), acquired_at: time_from_ms(now), expires_at: time_from_ms(expires) }))
        })
        .await
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StateError> {
        let lease = lease.clone();
        self.with_writer("renewing the lease", move |tx| {
            let id = match check_fence(tx, &lease)? {
                Ok(id) => id,
                Err(fenced) => return Ok(Err(fenced)),
            };
            let expires = now_ms().saturating_add(ttl_ms(ttl));
            tx.prepare_cached("UPDATE rse_syncs SET lease_expires_ms = ?2 WHERE id = ?1")?
                .execute(params![id, expires])?;
            Ok(Ok(Lease { expires_at: time_from_ms(expires), ..lease }))
        })
        .await
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StateError> {
        let lease = lease.clone();
        self.with_writer("releasing the lease", move |tx| {
            tx.prepare_cached(
                "UPDATE rse_syncs SET lease_holder = NULL, lease_token = NULL, lease_acquired_ms = NULL, lease_expires_ms = NULL
                 WHERE sync_id = ?1 AND lease_token = ?2",
            )?
            .execute(params![lease.sync_id, to_i64(lease.token)])?;
            Ok(Ok(()))
        })
        .await
    }

    async fn meta(&self, sync_id: &str) -> Result<SyncMeta, StateError> {
        let sync_id = sync_id.to_owned();
        self.with_reader("reading the sync's metadata", move |conn| {
            type Row = (Option<String>, Option<Vec<u8>>, Option<String>, Option<String>);
            let row: Option<Row> = conn
                .prepare_cached(
                    "SELECT fingerprint_algorithm, cursor_value, cursor, pushdown_epoch FROM rse_syncs WHERE sync_id = ?1",
                )?
                .query_row([&sync_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .optional()?;
            Ok(match row {
                Some((algorithm, cursor, old, pushdown_epoch)) => {
                    meta_from(&sync_id, algorithm.as_deref(), cursor.as_deref(), old.as_deref())
                        .map(|meta| SyncMeta { pushdown_epoch, ..meta })
                }
                None => Ok(SyncMeta::default()),
            })
        })
        .await
    }

    async fn scan(&self, sync_id: &str, after: Option<&Key>, limit: usize) -> Result<Vec<SnapshotEntry>, StateError> {
        let sync_id = sync_id.to_owned();
        let after = after.map(|k| k.as_bytes().to_vec());
        let limit = to_i64(limit as u64);
        self.with_reader("scanning the snapshot", move |conn| {
            // Two statements: `?2 IS NULL OR key > ?2` would keep SQLite from seeking the
            // index to `after`, and every page would walk the snapshot from its start.
            let cols =
                "SELECT key, fingerprint, version, pending_op, pending_fingerprint, pending_version, memo FROM rse_snapshot";
            let sync = "sync = (SELECT id FROM rse_syncs WHERE sync_id = ?1)";
            let (mut stmt, after) = match after {
                Some(after) => (
                    conn.prepare_cached(&format!("{cols} WHERE {sync} AND key > ?3 ORDER BY key LIMIT ?2"))?,
                    Some(after),
                ),
                None => (conn.prepare_cached(&format!("{cols} WHERE {sync} ORDER BY key LIMIT ?2"))?, None),
            };
            let mut rows = match &after {
                Some(after) => stmt.query(params![sync_id, limit, after])?,
                None => stmt.query(params![sync_id, limit])?,
            };
            let mut out = Vec::with_capacity(usize::try_from(limit).unwrap_or(0).min(100_000));
            while let Some(r) = rows.next()? {
                let key = r.get_ref(0)?.as_blob()?;
                let fp = r.get_ref(1)?.as_blob_or_null()?;
                let pending_fp = r.get_ref(4)?.as_blob_or_null()?;
                let memo = r.get_ref(6)?.as_blob_or_null()?;
                match entry_from(key, fp, r.get(2)?, (r.get(3)?, pending_fp, r.get(5)?), memo) {
                    Ok(entry) => out.push(entry),
                    Err(e) => return Ok(Err(e)),
                }
            }
            Ok(Ok(out))
        })
        .await
    }

    async fn get(&self, sync_id: &str, keys: &[Key]) -> Result<Vec<Option<SnapshotEntry>>, StateError> {
        let sync_id = sync_id.to_owned();
        let keys = keys.to_vec();
        self.with_reader("looking up keys", move |conn| {
            let id: Option<i64> = conn
                .prepare_cached("SELECT id FROM rse_syncs WHERE sync_id = ?1")?
                .query_row([&sync_id], |r| r.get(0))
                .optional()?;
            let Some(id) = id else { return Ok(Ok(vec![None; keys.len()])) };
            let mut stmt = conn.prepare_cached(
                "SELECT key, fingerprint, version, pending_op, pending_fingerprint, pending_version, memo FROM rse_snapshot
                 WHERE sync = ?1 AND key = ?2",
            )?;
            let mut out = Vec::with_capacity(keys.len());
            for key in &keys {
                let row = stmt.query_row(params![id, key.as_bytes()], read_row).optional()?;
                match row.as_ref().map(to_entry).transpose() {
                    Ok(entry) => out.push(entry),
                    Err(e) => return Ok(Err(e)),
                }
            }
            Ok(Ok(out))
        })
        .await
    }

    async fn rejected(
        &self,
        sync_id: &str,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<RejectedEntry>, StateError> {
        let sync_id = sync_id.to_owned();
        let after = after.map(|k| k.as_bytes().to_vec());
        let limit = to_i64(limit as u64);
        self.with_reader("listing rejected keys", move |conn| {
            let sync =
                "SELECT entry, record FROM rse_rejected WHERE sync = (SELECT id FROM rse_syncs WHERE sync_id = ?1)";
            let columns = |r: &rusqlite::Row<'_>| Ok((r.get::<_, String>(0)?, r.get::<_, Option<Vec<u8>>>(1)?));
            let rows = match after {
                Some(after) => conn
                    .prepare_cached(&format!("{sync} AND key > ?3 ORDER BY key LIMIT ?2"))?
                    .query_map(params![sync_id, limit, after], columns)?
                    .collect::<Result<Vec<_>, _>>()?,
                None => conn
                    .prepare_cached(&format!("{sync} ORDER BY key LIMIT ?2"))?
                    .query_map(params![sync_id, limit], columns)?
                    .collect::<Result<Vec<_>, _>>()?,
            };
            Ok(rows.iter().map(|(entry, record)| rejected_from(&sync_id, entry, record.as_deref())).collect())
        })
        .await
    }

    async fn commit(&self, lease: &Lease, commit: StateCommit) -> Result<(), StateError> {
        let lease = lease.clone();
        // Encode outside the transaction, so a value that cannot be encoded writes nothing.
        let rejected = last_per_key(commit.rejected, |r| &r.key)
            .into_iter()
            .map(|mut r| {
                let (entry, record) = rejected_columns(&mut r)?;
                Ok((
                    r.key.as_bytes().to_vec(),
                    stage_name(r.stage),
                    r.reason.clone(),
                    r.attempts,
                    r.last_rejected_at,
                    entry,
                    record,
                ))
            })
            .collect::<Result<Vec<_>, StateError>>()?;
        let cursor = commit.cursor.as_ref().map(cursor_bytes).transpose()?;
        let algorithm = commit.fingerprint_algorithm.map(|a| a.name());
        let pushdown_epoch = commit.pushdown_epoch.clone();
        let StateCommit { intents, memos, settled, applied, cleared_rejections, forgotten, .. } = commit;
        self.with_writer("committing state", move |tx| {
            let id = match check_fence(tx, &lease)? {
                Ok(id) => id,
                Err(fenced) => return Ok(Err(fenced)),
            };
            // An intent's columns: sync, key, then the pending change (the fingerprint is
            // NULL and the version 0 until an acknowledgement).
            insert_rows(
                tx,
                "INTO rse_snapshot (sync, key, pending_op, pending_fingerprint, pending_version, fingerprint, version)",
                7,
                "ON CONFLICT (sync, key) DO UPDATE SET pending_op = excluded.pending_op,
                    pending_fingerprint = excluded.pending_fingerprint, pending_version = excluded.pending_version",
                &intents,
                |stmt, at, (key, pending)| {
                    let (op, fp, version) = pending_columns(Some(pending));
                    stmt.raw_bind_parameter(at, id)?;
                    stmt.raw_bind_parameter(at + 1, key.as_bytes())?;
                    stmt.raw_bind_parameter(at + 2, op)?;
                    stmt.raw_bind_parameter(at + 3, fp)?;
                    stmt.raw_bind_parameter(at + 4, version)?;
                    stmt.raw_bind_parameter(at + 5, rusqlite::types::Null)?;
                    stmt.raw_bind_parameter(at + 6, 0)
                },
            )?;
            if !memos.is_empty() {
                let mut stmt = tx.prepare_cached("UPDATE rse_snapshot SET memo = ?3 WHERE sync = ?1 AND key = ?2")?;
                for (key, memo) in &memos {
                    stmt.execute(params![id, key.as_bytes(), memo.as_bytes()])?;
                }
            }
            if !settled.is_empty() {
                let mut update = tx.prepare_cached(
                    "UPDATE rse_snapshot SET pending_op = ?3, pending_fingerprint = ?4, pending_version = ?5
                     WHERE sync = ?1 AND key = ?2",
                )?;
                let mut remove = tx.prepare_cached(
                    "DELETE FROM rse_snapshot WHERE sync = ?1 AND key = ?2
                     AND fingerprint IS NULL AND version = 0 AND pending_op IS NULL",
                )?;
                for (key, pending) in &settled {
                    let (op, fp, version) = pending_columns(pending.as_ref());
                    update.execute(params![id, key.as_bytes(), op, fp, version])?;
                    remove.execute(params![id, key.as_bytes()])?;
                }
            }
            // An applied entry clears its key's rejection. Most commits meet a sync with no
            // rejection at all (an initial load always does): one look first saves a
            // search of the rejected set per key.
            let rejections = !applied.is_empty()
                && tx
                    .prepare_cached("SELECT EXISTS (SELECT 1 FROM rse_rejected WHERE sync = ?1)")?
                    .query_row([id], |r| r.get::<_, bool>(0))?;
            if rejections {
                let mut clear = tx.prepare_cached("DELETE FROM rse_rejected WHERE sync = ?1 AND key = ?2")?;
                for entry in &applied {
                    clear.execute(params![id, entry.key.as_bytes()])?;
                }
            }
            insert_rows(
                tx,
                "OR REPLACE INTO rse_snapshot
                 (sync, key, fingerprint, version, pending_op, pending_fingerprint, pending_version, memo)",
                8,
                "",
                &applied,
                |stmt, at, entry| {
                    let (op, fp, version) = pending_columns(entry.pending.as_ref());
                    stmt.raw_bind_parameter(at, id)?;
                    stmt.raw_bind_parameter(at + 1, entry.key.as_bytes())?;
                    stmt.raw_bind_parameter(at + 2, entry.fingerprint.map(|f| f.to_bytes()))?;
                    stmt.raw_bind_parameter(at + 3, to_i64(entry.version))?;
                    stmt.raw_bind_parameter(at + 4, op)?;
                    stmt.raw_bind_parameter(at + 5, fp)?;
                    stmt.raw_bind_parameter(at + 6, version)?;
                    stmt.raw_bind_parameter(at + 7, entry.memo.as_ref().map(|m| m.as_bytes()))
                },
            )?;
            if !rejected.is_empty() {
                let mut stmt = tx.prepare_cached(
                    "INSERT OR REPLACE INTO rse_rejected (sync, key, stage, reason, attempts, last_rejected_at, entry, record)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                for (key, stage, reason, attempts, last, entry, record) in &rejected {
                    stmt.execute(params![id, key, stage, reason, attempts, to_i64(*last), entry, record])?;
                }
            }
            if !cleared_rejections.is_empty() {
                let mut stmt = tx.prepare_cached("DELETE FROM rse_rejected WHERE sync = ?1 AND key = ?2")?;
                for key in &cleared_rejections {
                    stmt.execute(params![id, key.as_bytes()])?;
                }
            }
            if !forgotten.is_empty() {
                let mut stmt = tx.prepare_cached("DELETE FROM rse_snapshot WHERE sync = ?1 AND key = ?2")?;
                for key in &forgotten {
                    stmt.execute(params![id, key.as_bytes()])?;
                }
            }
            if let Some(cursor) = &cursor {
                tx.prepare_cached("UPDATE rse_syncs SET cursor_value = ?2, cursor = NULL WHERE id = ?1")?
                    .execute(params![id, cursor])?;
            }
            if let Some(algorithm) = algorithm {
                tx.prepare_cached("UPDATE rse_syncs SET fingerprint_algorithm = ?2 WHERE id = ?1")?
                    .execute(params![id, algorithm])?;
            }
            if let Some(epoch) = &pushdown_epoch {
                tx.prepare_cached("UPDATE rse_syncs SET pushdown_epoch = ?2 WHERE id = ?1")?
                    .execute(params![id, epoch])?;
            }
            Ok(Ok(()))
        })
        .await
    }

    async fn record_run(&self, lease: &Lease, report: &SyncReport) -> Result<(), StateError> {
        let lease = lease.clone();
        let text = to_json("a run report", report)?;
        let status = to_json("a run status", &report.status)?;
        let (run_id, started) = (to_i64(report.run_id), to_i64(report.started_at_ms));
        let retention = to_i64(self.run_retention as u64);
        self.with_writer("recording a run", move |tx| {
            let id = match check_fence(tx, &lease)? {
                Ok(id) => id,
                Err(fenced) => return Ok(Err(fenced)),
            };
            tx.prepare_cached(
                "INSERT OR REPLACE INTO rse_runs (sync, run_id, started_at_ms, status, report) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![id, run_id, started, status, text])?;
            tx.prepare_cached(
                "DELETE FROM rse_runs WHERE sync = ?1 AND run_id NOT IN
                 (SELECT run_id FROM rse_runs WHERE sync = ?1 ORDER BY run_id DESC LIMIT ?2)",
            )?
            .execute(params![id, retention])?;
            Ok(Ok(()))
        })
        .await
    }

    async fn runs(&self, sync_id: &str, limit: usize) -> Result<Vec<SyncReport>, StateError> {
        Ok(self.list_runs(sync_id, limit).await?.into_iter().map(|r| r.report).collect())
    }

    async fn pause(&self, sync_id: &str, pause: &Pause) -> Result<Pause, StateError> {
        let sync_id = sync_id.to_owned();
        let pause = pause.clone();
        self.with_writer("pausing a sync", move |tx| {
            tx.prepare_cached(
                "INSERT INTO rse_pauses (sync_id, paused_by, reason, paused_at_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (sync_id) DO NOTHING",
            )?
            .execute(params![sync_id, pause.by, pause.reason, to_i64(pause.at_ms)])?;
            let in_force = tx
                .prepare_cached("SELECT paused_by, reason, paused_at_ms FROM rse_pauses WHERE sync_id = ?1")?
                .query_row([&sync_id], read_pause)?;
            Ok(Ok(in_force))
        })
        .await
    }

    async fn resume(&self, sync_id: &str) -> Result<Option<Pause>, StateError> {
        let sync_id = sync_id.to_owned();
        self.with_writer("resuming a sync", move |tx| {
            let lifted = tx
                .prepare_cached("DELETE FROM rse_pauses WHERE sync_id = ?1 RETURNING paused_by, reason, paused_at_ms")?
                .query_row([&sync_id], read_pause)
                .optional()?;
            Ok(Ok(lifted))
        })
        .await
    }

    async fn paused(&self, sync_id: &str) -> Result<Option<Pause>, StateError> {
        let sync_id = sync_id.to_owned();
        self.with_reader("reading a sync's pause", move |conn| {
            let pause = conn
                .prepare_cached("SELECT paused_by, reason, paused_at_ms FROM rse_pauses WHERE sync_id = ?1")?
                .query_row([&sync_id], read_pause)
                .optional()?;
            Ok(Ok(pause))
        })
        .await
    }
}

fn read_pause(r: &rusqlite::Row<'_>) -> rusqlite::Result<Pause> {
    Ok(Pause { by: r.get(0)?, reason: r.get(1)?, at_ms: from_i64(r.get(2)?) })
}
