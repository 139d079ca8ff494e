//! The warehouse of the metrics examples: a customers model in a SQLite file that changes
//! a little before every run, with a few rows a sync must refuse.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

/// Customers in the model at the start.
const CUSTOMERS: i64 = 200;
const STAGES: [&str; 4] = ["new", "active", "champion", "at_risk"];

/// A directory of its own under the system's temporary directory, removed on drop.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// Creates `<tmp>/<prefix>-<pid>-<nanos>`.
    pub fn new(prefix: &str) -> std::io::Result<Self> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn now_rfc3339() -> String {
    let micros = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0);
    rse::time::format_timestamp_micros(micros)
}

fn email(id: i64) -> String {
    // One customer in fifty has an address the CRM would refuse; validation keeps it back.
    if id % 50 == 7 { format!("customer {id} at example dot com") } else { format!("customer{id}@example.com") }
}

/// Support's notes on a customer: one in forty holds another e-mail address, which must
/// not reach the CRM.
fn notes(id: i64) -> String {
    if id % 40 == 3 {
        format!("asked us to write to billing-{id}@example.org instead")
    } else {
        "prefers phone".to_owned()
    }
}

/// Creates the model: `customer_ref` is the key the CRM knows (two rows share one: a run
/// refuses both as invalid keys), `notes` support's free text, `updated_at` the change time.
pub fn create(path: &Path) -> rusqlite::Result<()> {
    let mut conn = Connection::open(path)?;
    conn.execute_batch(
        "CREATE TABLE customers (
            id INTEGER PRIMARY KEY,
            customer_ref TEXT NOT NULL,
            email TEXT NOT NULL,
            churn_score REAL NOT NULL,
            lifecycle_stage TEXT NOT NULL,
            notes TEXT NOT NULL,
            updated_at TIMESTAMP NOT NULL
        )",
    )?;
    // The consent system's list of customers who withdrew their consent.
    conn.execute_batch(
        "CREATE TABLE consent_withdrawn (customer_ref TEXT PRIMARY KEY, withdrawn_at TIMESTAMP NOT NULL)",
    )?;
    let now = now_rfc3339();
    let tx = conn.transaction()?;
    for id in 1..=CUSTOMERS {
        // Customer 14 was given customer 15's reference by mistake.
        let customer_ref = if id == 14 { "C00015".to_owned() } else { format!("C{id:05}") };
        tx.execute(
            "INSERT INTO customers VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            rusqlite::params![
                id,
                customer_ref,
                email(id),
                (id * 37 % 100) as f64 / 100.0,
                STAGES[id as usize % STAGES.len()],
                notes(id),
                now
            ],
        )?;
    }
    tx.commit()
}

/// The model moves on before run `cycle`: ten scores change, two customers arrive and one
/// leaves.
#[allow(dead_code)] // The push job runs once, on the model as created.
pub fn advance(path: &Path, cycle: u64) -> rusqlite::Result<()> {
    let mut conn = Connection::open(path)?;
    let now = now_rfc3339();
    let tx = conn.transaction()?;
    let next: i64 = tx.query_row("SELECT max(id) + 1 FROM customers", [], |r| r.get(0))?;
    for i in 0..10 {
        let id = 20 + ((cycle as i64 * 10 + i) % (CUSTOMERS - 20));
        tx.execute(
            "UPDATE customers SET churn_score = ?2, updated_at = ?3 WHERE id = ?1",
            rusqlite::params![id, ((cycle as i64 + i) * 13 % 100) as f64 / 100.0, now],
        )?;
    }
    for id in next..next + 2 {
        tx.execute(
            "INSERT INTO customers VALUES (?1, ?2, ?3, 0.5, 'new', ?4, ?5)",
            rusqlite::params![id, format!("C{id:05}"), email(id), notes(id), now],
        )?;
    }
    tx.execute("DELETE FROM customers WHERE id = (SELECT min(id) FROM customers WHERE id > 20 AND id % 50 <> 7)", [])?;
    tx.commit()
}

/// Customer `customer_ref` withdraws consent: the consent system lists them.
#[allow(dead_code)] // The push job runs once, on the model as created.
pub fn withdraw_consent(path: &Path, customer_ref: &str) -> rusqlite::Result<()> {
    let conn = Connection::open(path)?;
    conn.execute(
        "INSERT OR IGNORE INTO consent_withdrawn VALUES (?1, ?2)",
        rusqlite::params![customer_ref, now_rfc3339()],
    )?;
    Ok(())
}
