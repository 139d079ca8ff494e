//! What the configuration tests share: a directory of their own, the quickstart's
//! warehouse, snapshots of messages.
#![allow(dead_code)] // each test file uses its part

use std::path::{Path, PathBuf};

use rse_cli::config::{ConfigError, ConfigFile};
use rusqlite::Connection;

/// A fresh directory for one test, removed when dropped.
pub struct TestDir(pub PathBuf);

impl TestDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(rse_core::testing::unique_id(&format!("rse-cli-{name}")));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `rse.toml` holding `text` and loads it.
    pub fn load(&self, text: &str) -> Result<ConfigFile, ConfigError> {
        let path = self.path("rse.toml");
        std::fs::write(&path, text).unwrap();
        ConfigFile::load(&path)
    }

    /// An error's text with this directory written `<dir>`.
    pub fn shown(&self, error: &ConfigError) -> String {
        error.to_string().replace(&self.0.display().to_string(), "<dir>")
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The quickstart's warehouse model: `customers` with an id, an email, a churn score, a
/// lifecycle stage, a lifetime value kept as text, support notes and a change time.
pub fn create_warehouse(path: &Path, rows: i64) {
    let mut conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE customers (
            id INTEGER PRIMARY KEY,
            email TEXT NOT NULL,
            churn_score REAL,
            lifecycle_stage TEXT,
            ltv TEXT,
            notes TEXT,
            updated_at TIMESTAMP
        )",
    )
    .unwrap();
    let tx = conn.transaction().unwrap();
    for id in 1..=rows {
        tx.execute(
            "INSERT INTO customers VALUES (?1, ?2, ?3, ?4, ?5, ?6, '2026-01-05T09:00:00Z')",
            rusqlite::params![
                id,
                format!("User{id}@Example.com"),
                (id * 37 % 100) as f64 / 100.0,
                ["new", "active", "champion", "at_risk"][(id % 4) as usize],
                format!("{}.{:02}", id * 143, id * 7 % 100),
                format!("called support about invoice #{}", 1000 + id),
            ],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// The quickstart's change: two scores move, one customer leaves, one arrives.
pub fn change_warehouse(path: &Path) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "UPDATE customers SET churn_score = 0.93, lifecycle_stage = 'at_risk' WHERE id = 2;
         UPDATE customers SET churn_score = 0.05 WHERE id = 7;
         DELETE FROM customers WHERE id = 3;
         INSERT INTO customers VALUES (21, 'Ken.T@example.com', 0.30, 'new', '0.00', 'signed up today',
            '2026-01-06T09:00:00Z');",
    )
    .unwrap();
}

/// Rows of `table` in the SQLite file at `path`, each as its columns' text, ordered by
/// the first column.
pub fn rows(path: &Path, sql: &str) -> Vec<Vec<String>> {
    let conn = Connection::open(path).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |row| {
        Ok((0..n)
            .map(|i| match row.get_ref(i).unwrap() {
                rusqlite::types::ValueRef::Null => "NULL".to_owned(),
                rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                rusqlite::types::ValueRef::Real(v) => v.to_string(),
                rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                rusqlite::types::ValueRef::Blob(b) => format!("<{} bytes>", b.len()),
            })
            .collect())
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// Compares `actual` with the snapshot `tests/snapshots/<name>.txt`; with `RSE_BLESS=1`
/// writes it instead.
pub fn snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(format!("{name}.txt"));
    let actual = format!("{}\n", actual.trim_end());
    if std::env::var("RSE_BLESS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("no snapshot {} ({e}); run with RSE_BLESS=1 to write it", path.display()));
    assert_eq!(actual, expected, "snapshot {name} differs; run with RSE_BLESS=1 to accept the new text");
}
