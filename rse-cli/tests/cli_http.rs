//! `rse` against an in-process HTTP receiver and SQLite files: graceful SIGTERM, a second
//! run of a running sync, credentials refused, reset, pause and resume.
#![cfg(all(feature = "sqlite", feature = "http"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "cli_support/mod.rs"]
mod cli_support;

use std::path::Path;
use std::sync::atomic::Ordering;

use cli_support::*;
use serde_json::Value as Json;

/// A SQLite "warehouse" with `rows` scores, and a configuration syncing them to `receiver`
/// in batches of 10, one request at a time.
fn setup(dir: &Path, rows: i64, receiver: &Receiver) {
    let db = rusqlite::Connection::open(dir.join("warehouse.db")).unwrap();
    db.execute_batch("CREATE TABLE scores (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score INTEGER NOT NULL)")
        .unwrap();
    for id in 1..=rows {
        db.execute("INSERT INTO scores VALUES (?1, ?2, ?3)", rusqlite::params![id, format!("name {id}"), id * 7])
            .unwrap();
    }
    let config = format!(
        r#"
[state]
type = "sqlite"
path = "state.db"

[sync.scores]
mode = "mirror"

[sync.scores.source]
type = "sqlite"
path = "warehouse.db"
table = "scores"
key = ["id"]

[sync.scores.destination]
type = "http"
url = "{url}"

[sync.scores.options]
batch_rows = 10
max_concurrency = 1
linger = "10ms"
"#,
        url = receiver.url
    );
    std::fs::write(dir.join("rse.toml"), config).unwrap();
}

/// The receiver holds exactly the warehouse's rows, each key applied exactly once.
fn assert_delivered_once(receiver: &Receiver, rows: i64) {
    let held = receiver.held.lock().unwrap();
    assert_eq!(held.records.len() as i64, rows, "the receiver holds every row");
    for id in 1..=rows {
        let key = serde_json::json!({ "id": id }).to_string();
        let record = &held.records[&key];
        assert_eq!(record["score"], Json::from(id * 7), "key {id}");
        assert_eq!(held.applied[&key].len(), 1, "key {id} was applied {:?}", held.applied[&key]);
    }
}

fn history(dir: &Path) -> Vec<Json> {
    let output = run(dir, &["history", "scores", "--json"]);
    assert_eq!(code(&output), 0, "{}", text(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_a_run_gracefully_and_the_next_run_finishes_without_sending_anything_twice() {
    let dir = fresh_dir("cli_sigterm");
    let receiver = Receiver::start().await;
    receiver.behaviour.delay_ms.store(100, Ordering::SeqCst);
    setup(&dir, 300, &receiver);

    let child = rse(&dir, &["run", "scores"]).spawn().unwrap();
    until("the run's third request", || receiver.requests() >= 3).await;
    signal(child.id(), "TERM");
    let stopped = wait(child).await;
    assert_eq!(code(&stopped), 143, "{}", text(&stopped));
    let sent = receiver.held.lock().unwrap().records.len();
    assert!(sent > 0 && sent < 300, "the run stopped part way ({sent} of 300 sent)");
    let runs = history(&dir);
    assert_eq!(runs[0]["status"], "Cancelled", "{runs:#?}");
    // Everything the receiver acknowledged was committed before the process exited.
    assert_eq!(runs[0]["counts"]["applied"]["insert"], Json::from(sent as u64));

    receiver.behaviour.delay_ms.store(0, Ordering::SeqCst);
    let finished = run_async(&dir, &["run"]).await;
    assert_eq!(code(&finished), 0, "{}", text(&finished));
    assert_delivered_once(&receiver, 300);
    let runs = history(&dir);
    assert_eq!(runs[0]["status"], "Succeeded");
    assert_eq!(runs[0]["counts"]["applied"]["insert"], Json::from(300 - sent as u64));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_run_of_a_running_sync_exits_at_once_with_the_lease_held_code() {
    let dir = fresh_dir("cli_lease");
    let receiver = Receiver::start().await;
    receiver.behaviour.delay_ms.store(100, Ordering::SeqCst);
    setup(&dir, 200, &receiver);

    let mut first = rse(&dir, &["run", "scores"]).spawn().unwrap();
    until("the first run's first request", || receiver.requests() >= 1).await;
    let second = run_async(&dir, &["run", "scores"]).await;
    assert_eq!(code(&second), 6, "{}", text(&second));
    assert!(String::from_utf8_lossy(&second.stderr).contains("is being run by"), "{}", text(&second));
    assert!(first.try_wait().unwrap().is_none(), "the second run waited for the first to finish");

    let first = wait(first).await;
    assert_eq!(code(&first), 0, "{}", text(&first));
    assert_delivered_once(&receiver, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_credentials_exit_with_the_unauthorized_code_and_json_logs_off_a_terminal() {
    let dir = fresh_dir("cli_401");
    let receiver = Receiver::start().await;
    receiver.behaviour.status.store(401, Ordering::SeqCst);
    setup(&dir, 20, &receiver);

    let output = run_async(&dir, &["run"]).await;
    assert_eq!(code(&output), 5, "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<Json> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.iter().any(|l| l["level"] == "ERROR" && l["exit_code"] == 5), "{stderr}");
    assert_eq!(history(&dir)[0]["status"]["Failed"]["kind"], "Unauthorized");
    assert!(receiver.held.lock().unwrap().records.is_empty());

    let text_logs = run_async(&dir, &["run", "--log-format", "text"]).await;
    assert_eq!(code(&text_logs), 5);
    assert!(!String::from_utf8_lossy(&text_logs.stderr).lines().any(|l| l.starts_with('{')), "{}", text(&text_logs));
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_asks_for_confirmation_then_sends_every_record_again() {
    let dir = fresh_dir("cli_reset");
    let receiver = Receiver::start().await;
    setup(&dir, 30, &receiver);
    assert_eq!(code(&run_async(&dir, &["run"]).await), 0);
    assert_delivered_once(&receiver, 30);

    let refused = run_async(&dir, &["reset", "scores"]).await;
    assert_eq!(code(&refused), 2, "{}", text(&refused));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"), "{}", text(&refused));
    assert_eq!(receiver.requests(), 3, "nothing was sent without confirmation");

    let reset = run_async(&dir, &["reset", "scores", "--yes"]).await;
    assert_eq!(code(&reset), 0, "{}", text(&reset));
    let sent_twice = receiver.held.lock().unwrap().applied.values().all(|changes| changes.len() == 2);
    assert!(sent_twice, "every record was sent again");
    assert_eq!(history(&dir)[0]["full_resync"], true);
    // The next ordinary run finds nothing to send.
    let after = run_async(&dir, &["run", "--json"]).await;
    assert_eq!(code(&after), 0);
    let report: Json = serde_json::from_slice(&after.stdout).unwrap();
    assert_eq!(report["counts"]["unchanged"], 30);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_sync_is_skipped_until_resumed() {
    let dir = fresh_dir("cli_pause");
    let receiver = Receiver::start().await;
    setup(&dir, 15, &receiver);

    let paused = run_async(&dir, &["pause", "scores", "--reason", "CRM maintenance", "--by", "oncall"]).await;
    assert_eq!(code(&paused), 0, "{}", text(&paused));
    let status = run_async(&dir, &["status"]).await;
    assert!(
        stdout(&status).contains("paused since") && stdout(&status).contains("CRM maintenance"),
        "{}",
        text(&status)
    );

    let skipped = run_async(&dir, &["run"]).await;
    assert_eq!(code(&skipped), 0, "{}", text(&skipped));
    // Off a terminal the report is a JSON line on stdout.
    let report: Json = serde_json::from_slice(&skipped.stdout).unwrap();
    assert_eq!(report["status"]["Paused"]["reason"], "CRM maintenance", "{}", text(&skipped));
    let on_terminal = run_async(&dir, &["run", "--log-format", "text"]).await;
    assert!(stdout(&on_terminal).contains("is paused by oncall"), "{}", text(&on_terminal));
    assert_eq!(receiver.requests(), 0);

    let resumed = run_async(&dir, &["resume", "scores"]).await;
    assert_eq!(code(&resumed), 0, "{}", text(&resumed));
    assert_eq!(code(&run_async(&dir, &["run"]).await), 0);
    assert_delivered_once(&receiver, 15);
    let status: Json = serde_json::from_slice(&run_async(&dir, &["status", "--json"]).await.stdout).unwrap();
    assert_eq!(status[0]["paused"], Json::Null);
    assert_eq!(status[0]["last_run"]["status"], "Succeeded");
}

#[tokio::test(flavor = "multi_thread")]
async fn partitions_run_in_separate_processes_and_together_send_every_row_once() {
    let dir = fresh_dir("cli_partition");
    let receiver = Receiver::start().await;
    setup(&dir, 300, &receiver);

    // Two processes at once, one per partition: each holds its own lease.
    let first = rse(&dir, &["run", "scores", "--partition", "0/2"]).spawn().unwrap();
    let second = rse(&dir, &["run", "scores", "--partition", "1/2"]).spawn().unwrap();
    let (first, second) = (wait(first).await, wait(second).await);
    assert_eq!(code(&first), 0, "{}", text(&first));
    assert_eq!(code(&second), 0, "{}", text(&second));
    assert_delivered_once(&receiver, 300);
    let inserted = |output: &std::process::Output| -> u64 {
        let report: Json = serde_json::from_str(stdout(output).lines().last().unwrap()).unwrap();
        report["counts"]["applied"]["insert"].as_u64().unwrap()
    };
    let (a, b) = (inserted(&first), inserted(&second));
    assert_eq!(a + b, 300, "each row sent by exactly one partition");
    assert!(a > 0 && b > 0, "both partitions had rows ({a}, {b})");

    // A Kubernetes Indexed Job's pod: the partition from its environment; nothing changed.
    let again = rse(&dir, &["run", "scores"])
        .env("JOB_COMPLETION_INDEX", "1")
        .env("RSE_PARTITION_COUNT", "2")
        .output()
        .unwrap();
    assert_eq!(code(&again), 0, "{}", text(&again));
    assert_eq!(inserted(&again), 0);
    assert_eq!(receiver.held.lock().unwrap().applied.values().map(Vec::len).sum::<usize>(), 300);

    // `status` and `history` show each partition under its own id.
    let status: Json = serde_json::from_slice(&run(&dir, &["status", "--partitions", "2", "--json"]).stdout).unwrap();
    let shown: Vec<(&str, &str)> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["sync"].as_str().unwrap(), s["last_run"]["status"].as_str().unwrap()))
        .collect();
    assert_eq!(shown, [("scores#p0of2", "Succeeded"), ("scores#p1of2", "Succeeded")]);
    let history: Json =
        serde_json::from_slice(&run(&dir, &["history", "scores", "--partitions", "2", "--json"]).stdout).unwrap();
    let mut ids: Vec<&str> = history.as_array().unwrap().iter().map(|r| r["sync_id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["scores#p0of2", "scores#p1of2", "scores#p1of2"], "the second partition ran twice");
    let none = run(&dir, &["status", "--partitions", "0"]);
    assert_eq!(code(&none), 2, "{}", text(&none));
    assert!(text(&none).contains("--partitions 0"), "{}", text(&none));

    // An index out of range is a usage error naming the flag's form.
    let wrong = run(&dir, &["run", "scores", "--partition", "2/2"]);
    assert_eq!(code(&wrong), 2, "{}", text(&wrong));
    assert!(text(&wrong).contains("2/2"), "{}", text(&wrong));
    // Only one of the pair set: the environment is refused, naming the missing variable.
    let half =
        rse(&dir, &["run", "scores"]).env("JOB_COMPLETION_INDEX", "0").env_remove("RSE_PARTITION_COUNT").output();
    let half = half.unwrap();
    assert_eq!(code(&half), 2, "{}", text(&half));
    assert!(text(&half).contains("RSE_PARTITION_COUNT"), "{}", text(&half));
}
