//! The `rse` command end to end, as a scheduler runs it: start-up time, and a PostgreSQL →
//! PostgreSQL mirror of 1,000,000 rows (the first run, then a re-run with 1 % of the rows
//! changed), each timed with its peak resident memory, with the state in a SQLite file and
//! in PostgreSQL.
//!
//! `cargo bench -p rse-cli --bench cli` (needs PostgreSQL at `RSE_POSTGRES_URL`, default the
//! local server's `test` database). `RSE_BENCH_ROWS` changes the row count. It spawns the
//! release binary `rse` of the same target directory, so build it first:
//! `cargo build --release -p rse-cli`. The figures are printed, one line each.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::NoTls;

/// The release binary beside this bench (`target/release/deps/cli-…` → `target/release/rse`).
fn binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let release = exe.parent().and_then(Path::parent).unwrap();
    let rse = release.join("rse");
    assert!(rse.exists(), "{} is missing: run `cargo build --release -p rse-cli` first", rse.display());
    rse
}

/// Runs `rse args` in `dir` to its end: its wall time, peak RSS in MiB and exit code.
///
/// The peak is the kernel's high-water mark of the process's resident memory (`VmHWM` in
/// `/proc/<pid>/status`), read every 10 ms while it runs: the last read before it exits is
/// its peak up to then.
fn measure(rse: &Path, dir: &Path, args: &[&str]) -> (Duration, f64, i32) {
    let started = Instant::now();
    let mut child = Command::new(rse)
        .args(args)
        .current_dir(dir)
        .env("RSE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if let Ok(text) = std::fs::read_to_string(&status_file)
            && let Some(line) = text.lines().find(|l| l.starts_with("VmHWM:"))
        {
            let kib = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
            peak_kib = peak_kib.max(kib);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (started.elapsed(), peak_kib as f64 / 1024.0, status.code().unwrap_or(-1))
}

/// Runs `rse args` in `dir` to its end: its wall time and exit code (no polling, for the
/// start-up figures).
fn time(rse: &Path, dir: &Path, args: &[&str]) -> (Duration, i32) {
    let started = Instant::now();
    let status = Command::new(rse)
        .args(args)
        .current_dir(dir)
        .env("RSE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .unwrap();
    (started.elapsed(), status.code().unwrap_or(-1))
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn startup(rse: &Path, dir: &Path) {
    let version: Vec<_> = (0..30).map(|_| time(rse, dir, &["--version"]).0).collect();
    println!(
        "rse --version: median {:.1} ms, fastest {:.1} ms (30 runs)",
        median(version.clone()).as_secs_f64() * 1e3,
        version.iter().min().unwrap().as_secs_f64() * 1e3
    );
    // A sync of one row between two SQLite files, already delivered: a run that finds
    // nothing to send (opening the files, the lease, the diff, the run record).
    let db = rusqlite::Connection::open(dir.join("noop.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT); INSERT OR REPLACE INTO t VALUES (1, 'x');",
    )
    .unwrap();
    std::fs::write(
        dir.join("noop.toml"),
        r#"
[state]
type = "sqlite"
path = "noop-state.db"

[sync.noop]
[sync.noop.source]
type = "sqlite"
path = "noop.db"
table = "t"
key = ["id"]

[sync.noop.destination]
type = "sqlite"
path = "noop-out.db"
table = "t"
create_table = true
"#,
    )
    .unwrap();
    assert_eq!(time(rse, dir, &["run", "--config", "noop.toml"]).1, 0);
    let noop: Vec<_> = (0..20).map(|_| time(rse, dir, &["run", "--config", "noop.toml"])).collect();
    assert!(noop.iter().all(|m| m.1 == 0));
    let times: Vec<_> = noop.iter().map(|m| m.0).collect();
    println!(
        "rse run, nothing to send (SQLite → SQLite, one row): median {:.1} ms, fastest {:.1} ms (20 runs)",
        median(times.clone()).as_secs_f64() * 1e3,
        times.iter().min().unwrap().as_secs_f64() * 1e3
    );
}

fn main() {
    let rse = binary();
    let dir = std::env::temp_dir().join(format!("rse_cli_bench_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    startup(&rse, &dir);

    let rows: i64 = std::env::var("RSE_BENCH_ROWS").ok().and_then(|r| r.parse().ok()).unwrap_or(1_000_000);
    let url = std::env::var("RSE_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&url, NoTls).await.expect("PostgreSQL at RSE_POSTGRES_URL");
        tokio::spawn(connection);
        client
    });
    let sql = |text: String| runtime.block_on(client.batch_execute(&text)).unwrap();

    let schema = format!("rse_cli_bench_{}", std::process::id());
    let started = Instant::now();
    // Ten columns, about 200 bytes a row, as the library's destinations bench.
    sql(format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.customers (
             id bigint PRIMARY KEY, name text, email text, city text, plan text, score double precision,
             ltv numeric(12, 2), active boolean, created_at timestamptz, notes text);
         INSERT INTO {schema}.customers
             SELECT i, 'Customer ' || i, 'customer' || i || '@example.com', 'City ' || (i % 1000),
                    (ARRAY['free', 'pro', 'team'])[1 + i % 3], (i % 997) / 7.0, (i % 100000) / 100.0, i % 2 = 0,
                    timestamptz '2024-01-01' + i * interval '1 minute', repeat('n', 60)
             FROM generate_series(1, {rows}) i;
         ANALYZE {schema}.customers;"
    ));
    println!("source table of {rows} rows made in {:.1?}", started.elapsed());

    for (state_name, state) in [
        ("state in a SQLite file", "type = \"sqlite\"\npath = \"state.db\"".to_owned()),
        ("state in PostgreSQL", format!("type = \"postgres\"\nurl = \"{url}\"\nschema = \"{schema}_state\"")),
    ] {
        let table = if state_name.contains("SQLite") { "copy_sqlite_state" } else { "copy_pg_state" };
        let config = format!(
            r#"
[state]
{state}

[sync.customers]
id = "{table}"
mode = "mirror"

[sync.customers.source]
type = "postgres"
url = "{url}"
schema = "{schema}"
table = "customers"
key = ["id"]

[sync.customers.destination]
type = "postgres"
url = "{url}"
schema = "{schema}"
table = "{table}"
create_table = true

[sync.customers.options]
batch_rows = 5000
max_concurrency = 4
"#
        );
        let path = dir.join(format!("{table}.toml"));
        std::fs::write(&path, config).unwrap();
        let config = path.to_str().unwrap();
        sql("CHECKPOINT".into());
        let (first, rss, code) = measure(&rse, &dir, &["run", "--config", config]);
        assert_eq!(code, 0, "the first run failed");
        println!(
            "rse run, PostgreSQL → PostgreSQL mirror, {state_name}, first run of {rows} rows: {:.2} s ({:.0} k rows/s), peak RSS {rss:.0} MiB",
            first.as_secs_f64(),
            rows as f64 / first.as_secs_f64() / 1e3
        );
        sql(format!("UPDATE {schema}.customers SET score = score + 1 WHERE id % 100 = 0"));
        sql("CHECKPOINT".into());
        let (rerun, rss, code) = measure(&rse, &dir, &["run", "--config", config]);
        assert_eq!(code, 0, "the re-run failed");
        println!(
            "rse run, PostgreSQL → PostgreSQL mirror, {state_name}, re-run with 1 % changed: {:.2} s, peak RSS {rss:.0} MiB",
            rerun.as_secs_f64()
        );
    }
    sql(format!("DROP SCHEMA {schema} CASCADE; DROP SCHEMA IF EXISTS {schema}_state CASCADE;"));
    let _ = std::fs::remove_dir_all(&dir);
}
