//! What the command's tests share: the `rse` binary run as a user runs it, a directory of
//! the test's own, the test PostgreSQL, and an in-process HTTP receiver.
#![allow(dead_code)] // each test file uses its part

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use rse_core::testing::unique_id;
use serde_json::Value as Json;

/// The `rse` binary as built for these tests.
pub const RSE: &str = env!("CARGO_BIN_EXE_rse");

/// `rse` with `args`, in `dir`, with no inherited log settings; stdin, stdout and stderr
/// are pipes (so not a terminal: JSON logs, no progress bar).
pub fn rse(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(RSE);
    command
        .args(args)
        .current_dir(dir)
        .env_remove("RSE_LOG")
        .env_remove("RSE_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs `rse` to its end.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    rse(dir, args).output().expect("the rse binary runs")
}

/// Its exit code, failing with its output when it was killed by a signal.
pub fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or_else(|| panic!("rse died by a signal: {}", text(output)))
}

/// Stdout and stderr, for assertion messages.
pub fn text(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Stdout as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A fresh directory under the system's temporary directory.
pub fn fresh_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique_id(prefix));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The test PostgreSQL: its URL (`pg::url`), a client, a schema of the test's own
/// (`pg::fresh_schema`).
#[path = "../../../rse-connectors/tests/support/pg.rs"]
pub mod pg;

/// What the receiver does with a request.
#[derive(Default)]
pub struct Behaviour {
    /// Milliseconds each request waits before it is applied and answered.
    pub delay_ms: AtomicU64,
    /// A status to answer every request with instead of applying it (0: apply).
    pub status: AtomicU16,
}

/// What the receiver applied: per key (its JSON), every change in order as
/// (op, idempotency key).
#[derive(Default)]
pub struct Held {
    /// Requests received, answered or not.
    pub requests: u64,
    /// Changes applied per key.
    pub applied: BTreeMap<String, Vec<(String, String)>>,
    /// The record each key holds now (deleted keys are absent).
    pub records: BTreeMap<String, Json>,
}

/// An HTTP receiver on 127.0.0.1 taking rse's default envelope: a JSON array of
/// `{op, idempotency_key, key, record}`.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub behaviour: Arc<Behaviour>,
    pub held: Arc<Mutex<Held>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let behaviour = Arc::new(Behaviour::default());
        let held = Arc::new(Mutex::new(Held::default()));
        let app = Router::new().route("/changes", post(receive)).with_state((behaviour.clone(), held.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/changes", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, behaviour, held }
    }

    pub fn requests(&self) -> u64 {
        self.held.lock().unwrap().requests
    }
}

type Shared = (Arc<Behaviour>, Arc<Mutex<Held>>);

async fn receive(State((behaviour, held)): State<Shared>, body: Bytes) -> (StatusCode, String) {
    held.lock().unwrap().requests += 1;
    let delay = behaviour.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = behaviour.status.load(Ordering::SeqCst);
    if status != 0 {
        return (StatusCode::from_u16(status).unwrap(), "{\"error\":\"invalid_token\"}".into());
    }
    let changes: Vec<Json> = serde_json::from_slice(&body).unwrap();
    let mut held = held.lock().unwrap();
    for change in changes {
        let key = change["key"].to_string();
        let op = change["op"].as_str().unwrap().to_owned();
        let idempotency_key = change["idempotency_key"].as_str().unwrap().to_owned();
        held.applied.entry(key.clone()).or_default().push((op.clone(), idempotency_key));
        if op == "delete" {
            held.records.remove(&key);
        } else {
            held.records.insert(key, change["record"].clone());
        }
    }
    (StatusCode::OK, String::new())
}

/// Runs `rse` to its end off the async runtime, so that an in-process receiver keeps
/// answering meanwhile.
pub async fn run_async(dir: &Path, args: &[&str]) -> Output {
    let mut command = rse(dir, args);
    tokio::task::spawn_blocking(move || command.output().expect("the rse binary runs")).await.unwrap()
}

/// Waits, off the async runtime, for a child started with [`rse`].
pub async fn wait(child: std::process::Child) -> Output {
    tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap()
}

/// Waits until `done` holds, checking every 20 ms, failing after a minute.
pub async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..3_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("gave up waiting for {what}");
}

/// Sends `signal` (`TERM`, `INT`) to the process `pid`.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().unwrap();
    assert!(status.success(), "kill -{signal} {pid} failed");
}
