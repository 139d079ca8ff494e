//! The status tables in a SQLite file: one transaction per write, off the async runtime.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rse_core::StateError;
use rse_core::time::format_timestamp_micros;
use rusqlite::{Connection, ErrorCode, params};

use super::{RUN_COUNTS, RecordRow, RunRow, StatusOptions, StatusSink, StatusWriter};

/// How long a write waits for another connection's lock on the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

impl StatusWriter {
    /// A writer to the SQLite file at `path` (created when missing), whose tables it
    /// creates now. [`StatusOptions::schema`] does not apply.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), rse_core::StateError> {
    /// use rse_connectors::status::{StatusOptions, StatusWriter};
    /// let status = StatusWriter::sqlite("app.db", StatusOptions::new().with_retention_days(30)).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`StateError::Other`] when the options cannot work, the file cannot be opened or the
    /// tables cannot be created (the message names the file and what to do);
    /// [`StateError::Unavailable`] when another connection holds the file's lock too long.
    pub async fn sqlite(path: impl AsRef<Path>, options: StatusOptions) -> Result<StatusWriter, StateError> {
        let options = options.checked()?;
        let path = path.as_ref().to_path_buf();
        let sink = SqliteStatusSink::open(path.clone(), &options).await?;
        StatusWriter::start(Arc::new(sink), format!("sqlite:{}", path.display()), options).await
    }
}

struct SqliteStatusSink {
    path: PathBuf,
    connection: Arc<Mutex<Connection>>,
    sql: Arc<Statements>,
}

/// The statements, with the tables' quoted names in them.
struct Statements {
    create: String,
    insert_record: String,
    insert_run: String,
    purge_records: String,
    purge_runs: String,
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Statements {
    fn new(options: &StatusOptions) -> Self {
        let (rt, ht) = (&options.records_table, &options.runs_table);
        let (records, runs) = (quote(rt), quote(ht));
        let index = |table: &str, suffix: &str| quote(&format!("{table}_{suffix}"));
        let counts: String = RUN_COUNTS.iter().map(|c| format!("    {c} INTEGER NOT NULL,\n")).collect();
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {records} (
    sync_id TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    op TEXT,
    outcome TEXT NOT NULL,
    stage TEXT NOT NULL,
    effect TEXT,
    reason TEXT,
    record_id TEXT,
    recorded_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS {by_run} ON {records} (sync_id, run_id);
CREATE INDEX IF NOT EXISTS {by_key} ON {records} (sync_id, key, recorded_at);
CREATE INDEX IF NOT EXISTS {by_outcome} ON {records} (sync_id, outcome, recorded_at);
CREATE INDEX IF NOT EXISTS {by_time} ON {records} (recorded_at);
CREATE TABLE IF NOT EXISTS {runs} (
    sync_id TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    status TEXT NOT NULL,
    failure_kind TEXT,
    message TEXT NOT NULL,
    mode TEXT NOT NULL,
    dry_run INTEGER NOT NULL,
    full_resync INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
{counts}    report TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS {runs_by_run} ON {runs} (sync_id, run_id);
CREATE INDEX IF NOT EXISTS {runs_by_time} ON {runs} (sync_id, finished_at);
CREATE INDEX IF NOT EXISTS {runs_by_status} ON {runs} (status, finished_at);",
            by_run = index(rt, "by_run"),
            by_key = index(rt, "by_key"),
            by_outcome = index(rt, "by_outcome"),
            by_time = index(rt, "by_time"),
            runs_by_run = index(ht, "by_run"),
            runs_by_time = index(ht, "by_time"),
            runs_by_status = index(ht, "by_status"),
        );
        let placeholders: Vec<String> = (1..=11 + RUN_COUNTS.len() + 1).map(|i| format!("?{i}")).collect();
        Statements {
            create,
            insert_record: format!(
                "INSERT INTO {records} (sync_id, run_id, key, key_hash, op, outcome, stage, effect, reason, record_id, \
                 recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
            ),
            insert_run: format!(
                "INSERT INTO {runs} (sync_id, run_id, status, failure_kind, message, mode, dry_run, full_resync, \
                 started_at, finished_at, duration_ms, {}, report) VALUES ({})",
                RUN_COUNTS.join(", "),
                placeholders.join(", ")
            ),
            purge_records: format!("DELETE FROM {records} WHERE recorded_at < ?1"),
            purge_runs: format!("DELETE FROM {runs} WHERE finished_at < ?1"),
        }
    }
}

/// A time as SQLite's date functions write it, in UTC: `2024-05-01 12:00:00.123`.
fn sqlite_time(at: SystemTime) -> String {
    let micros = at.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    // `2024-05-01T12:00:00.000001Z`: the date, a space, the time to the millisecond.
    let text = format_timestamp_micros(micros);
    match (text.get(..10), text.get(11..23)) {
        (Some(date), Some(time)) => format!("{date} {time}"),
        _ => text,
    }
}

impl SqliteStatusSink {
    async fn open(path: PathBuf, options: &StatusOptions) -> Result<Self, StateError> {
        let sql = Arc::new(Statements::new(options));
        let shown = path.clone();
        let connection = blocking(&path, "opening the file", move || {
            let connection = Connection::open(&shown)?;
            connection.busy_timeout(BUSY_TIMEOUT)?;
            Ok(connection)
        })
        .await?;
        Ok(Self { path, connection: Arc::new(Mutex::new(connection)), sql })
    }

    /// Runs `f` on the connection on tokio's blocking pool.
    async fn with<T: Send + 'static>(
        &self,
        doing: &'static str,
        f: impl FnOnce(&mut Connection, &Statements) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StateError> {
        let (connection, sql) = (self.connection.clone(), self.sql.clone());
        blocking(&self.path, doing, move || {
            let mut connection = connection.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut connection, &sql)
        })
        .await
    }
}

async fn blocking<T: Send + 'static>(
    path: &Path,
    doing: &'static str,
    f: impl FnOnce() -> rusqlite::Result<T> + Send + 'static,
) -> Result<T, StateError> {
    let shown = path.display().to_string();
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(error(&shown, doing, e)),
        Err(e) => Err(StateError::Other {
            message: format!("status write-back to {shown}: {doing} was interrupted: {e}"),
            source: None,
        }),
    }
}

fn error(path: &str, doing: &str, e: rusqlite::Error) -> StateError {
    let busy = matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked));
    if busy {
        return StateError::Unavailable {
            message: format!(
                "status write-back to {path}: {doing} waited {BUSY_TIMEOUT:?} for another connection's lock on the file"
            ),
            source: Some(Box::new(e)),
        };
    }
    StateError::Other {
        message: format!(
            "status write-back to {path}: {doing} failed: {e}; check that the file is writable and its tables are \
             rse's (missing ones are created again at the next write)"
        ),
        source: Some(Box::new(e)),
    }
}

#[async_trait]
impl StatusSink for SqliteStatusSink {
    async fn prepare(&self) -> Result<(), StateError> {
        self.with("creating the status tables", |c, sql| c.execute_batch(&sql.create)).await
    }

    async fn write(&self, records: Vec<RecordRow>, runs: Vec<RunRow>) -> Result<(), StateError> {
        self.with("writing outcomes", move |c, sql| {
            let tx = c.transaction()?;
            {
                let mut insert = tx.prepare_cached(&sql.insert_record)?;
                for r in &records {
                    insert.execute(params![
                        &*r.sync_id,
                        r.run_id,
                        r.key,
                        r.key_hash,
                        r.op,
                        r.outcome,
                        r.stage,
                        r.effect,
                        r.reason,
                        r.record_id,
                        sqlite_time(r.at),
                    ])?;
                }
                let mut insert = tx.prepare_cached(&sql.insert_run)?;
                for r in &runs {
                    let mut values: Vec<Box<dyn rusqlite::ToSql>> = vec![
                        Box::new(r.sync_id.clone()),
                        Box::new(r.run_id),
                        Box::new(r.status),
                        Box::new(r.failure_kind),
                        Box::new(r.message.clone()),
                        Box::new(r.mode.clone()),
                        Box::new(r.dry_run),
                        Box::new(r.full_resync),
                        Box::new(sqlite_time(r.started_at)),
                        Box::new(sqlite_time(r.finished_at)),
                        Box::new(r.duration_ms),
                    ];
                    values.extend(r.counts.iter().map(|n| Box::new(*n) as Box<dyn rusqlite::ToSql>));
                    values.push(Box::new(r.report.to_string()));
                    insert.execute(rusqlite::params_from_iter(values.iter()))?;
                }
            }
            tx.commit()
        })
        .await
    }

    async fn purge(&self, before: SystemTime) -> Result<u64, StateError> {
        let before = sqlite_time(before);
        self.with("deleting old status rows", move |c, sql| {
            let tx = c.transaction()?;
            let n = tx.execute(&sql.purge_records, [&before])? + tx.execute(&sql.purge_runs, [&before])?;
            tx.commit()?;
            Ok(n as u64)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_sqlite_writes_them() {
        let at = UNIX_EPOCH + Duration::from_micros(1_714_564_800_123_456);
        assert_eq!(sqlite_time(at), "2024-05-01 12:00:00.123");
    }
}
