//! The quickstart: a customers model in a SQLite "warehouse" synced into an app's SQLite
//! database, changed, and synced again.
//!
//! The second run sends only what changed. Everything is a file in one directory
//! (`./quickstart-data/`, or `$RSE_QUICKSTART_DIR`): no server is needed. Each run starts
//! from a fresh warehouse, so it prints the same two reports every time.
//!
//! Run with `cargo run --example quickstart`.

use std::error::Error;
use std::path::{Path, PathBuf};

use rse::connectors::state::SqliteStateStore;
use rse::connectors::{SqliteDestination, SqliteDestinationOptions};
use rse::sources::Model;
use rse::sources::sqlite::SqliteSource;
use rse::transform::{DropFields, HashPii, Rename};
use rse::{DataType, Mode, SyncJob, SyncOptions};
use rusqlite::Connection;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

const FIRST_NAMES: [&str; 20] = [
    "ada",
    "grace",
    "linus",
    "barbara",
    "ken",
    "margaret",
    "dennis",
    "frances",
    "edsger",
    "radia",
    "alan",
    "katherine",
    "john",
    "hedy",
    "donald",
    "lynn",
    "niklaus",
    "adele",
    "tim",
    "sophie",
];
const STAGES: [&str; 4] = ["new", "active", "champion", "at_risk"];

/// The files of the quickstart, removed at the start of each run (and nothing else: the
/// directory may be one the user chose).
fn fresh_files(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf), Box<dyn Error>> {
    std::fs::create_dir_all(dir)?;
    let files = (dir.join("warehouse.db"), dir.join("app.db"), dir.join("state.db"));
    for db in [&files.0, &files.1, &files.2] {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut path = db.clone().into_os_string();
            path.push(suffix);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
    }
    Ok(files)
}

/// The warehouse's model: ~20 customers with a score, a stage, a lifetime value and notes.
fn create_warehouse(path: &Path) -> rusqlite::Result<()> {
    let mut conn = Connection::open(path)?;
    conn.execute_batch(
        "CREATE TABLE customers (
            id INTEGER PRIMARY KEY,
            email TEXT NOT NULL,
            churn_score REAL,
            lifecycle_stage TEXT,
            ltv TEXT,          -- an exact decimal, kept as text
            notes TEXT,        -- free text from support: never leaves the warehouse
            updated_at TIMESTAMP
        )",
    )?;
    let tx = conn.transaction()?;
    for (i, name) in FIRST_NAMES.iter().enumerate() {
        let id = i as i64 + 1;
        tx.execute(
            "INSERT INTO customers VALUES (?1, ?2, ?3, ?4, ?5, ?6, '2026-01-05T09:00:00Z')",
            rusqlite::params![
                id,
                format!("{}@Example.com", name.to_uppercase()),
                (id * 37 % 100) as f64 / 100.0,
                STAGES[i % STAGES.len()],
                format!("{}.{:02}", id * 143, id * 7 % 100),
                format!("called support about invoice #{}", 1000 + id),
            ],
        )?;
    }
    tx.commit()
}

/// The model changes: two scores move, one customer leaves, one arrives.
fn change_warehouse(path: &Path) -> rusqlite::Result<()> {
    let conn = Connection::open(path)?;
    conn.execute_batch(
        "UPDATE customers SET churn_score = 0.93, lifecycle_stage = 'at_risk', updated_at = '2026-01-06T09:00:00Z'
            WHERE id = 2;
         UPDATE customers SET churn_score = 0.05, updated_at = '2026-01-06T09:00:00Z' WHERE id = 7;
         DELETE FROM customers WHERE id = 3;
         INSERT INTO customers VALUES (21, 'Ken.T@example.com', 0.30, 'new', '0.00', 'signed up today',
            '2026-01-06T09:00:00Z');",
    )
}

/// Logs to stderr at the level `RUST_LOG` asks for (default `warn`; e.g. `RUST_LOG=debug`),
/// with the drivers' value-bearing targets capped at INFO whatever it says: rse's own logs
/// carry no row values, and the cap keeps the drivers' from carrying them (tokio-postgres
/// logs every statement's parameters at DEBUG).
fn init_logging() -> Result<(), Box<dyn Error>> {
    let wanted = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    let filter: Targets = format!("{wanted},{}", rse::connectors::log_filter::DRIVER_DIRECTIVES).parse()?;
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(filter))
        .try_init()?;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    init_logging()?;
    let dir = std::env::var_os("RSE_QUICKSTART_DIR").map_or_else(|| PathBuf::from("quickstart-data"), PathBuf::from);
    let (warehouse, app, state) = fresh_files(&dir)?;
    create_warehouse(&warehouse)?;

    let sync = SyncJob::builder("customers-to-app")
        .source(
            SqliteSource::new(&warehouse, Model::table("customers"))
                .with_key(["id"])
                .with_column_type("ltv", DataType::Decimal),
        )
        // The app wants our id under its own name, a normalised SHA-256 of the email (for
        // ad audiences), and nothing it does not need.
        .transform(Rename::new([("id", "external_id")]))
        .transform(HashPii::email("email").with_output_field("email_sha256"))
        .transform(DropFields::new(["notes"]))
        .destination(
            SqliteDestination::open(&app, SqliteDestinationOptions::new("customers").with_create_table(true)).await?,
        )
        .state(SqliteStateStore::open(&state).await?)
        .mode(Mode::Mirror)
        .options(SyncOptions::default())
        .build()
        .await?;

    let first = sync.run().await?;
    println!("{first}\n");

    change_warehouse(&warehouse)?;

    let second = sync.run().await?;
    println!("{second}\n");

    let conn = Connection::open(&app)?;
    let rows: i64 = conn.query_row("SELECT count(*) FROM customers", [], |r| r.get(0))?;
    println!("{} now holds {rows} customers (state in {}).", app.display(), state.display());
    Ok(())
}
