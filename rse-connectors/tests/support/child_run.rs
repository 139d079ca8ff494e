//! Both sides of a SIGKILL test: the worker (this test binary run again, one test selected)
//! waits out the lease a killed predecessor left and runs once; the parent starts workers,
//! kills them at random moments, then lets the last ones run to the end.
// Each test binary includes this file and uses its part of it.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rse_connectors::state::SqliteStateStore;
use rse_core::{Destination, Error, Mode, RunStatus, Source, StateError, SyncJob, SyncOptions};

/// Runs `sync` once, retrying while a killed child's lease has not lapsed yet (up to
/// 20 s), asserts the run succeeded and prints `RESULT planned=N` on stdout.
pub async fn run_after_the_lease_lapses(sync: &SyncJob) {
    let started = Instant::now();
    let report = loop {
        match sync.run().await {
            Ok(report) => break report,
            Err(Error::State(StateError::LeaseHeld { .. })) if started.elapsed() < Duration::from_secs(20) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the run failed: {e}"),
        }
    };
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    println!("RESULT planned={}", report.counts.planned.total());
}

/// How the parent starts a worker: the test of this binary to run, the environment that
/// selects it and says what to sync, and the variable that carries the generation.
#[derive(Clone)]
pub struct Worker {
    test: &'static str,
    env: Vec<(String, OsString)>,
    generation: Option<String>,
}

impl Worker {
    /// A worker running the test `test` (its full name, e.g. `kill::kill_worker`).
    pub fn new(test: &'static str) -> Self {
        Self { test, env: Vec::new(), generation: None }
    }

    /// Sets `name` to `value` in the worker's environment.
    pub fn env(mut self, name: impl Into<String>, value: impl AsRef<OsStr>) -> Self {
        self.env.push((name.into(), value.as_ref().to_owned()));
        self
    }

    /// Passes the generation of the source the worker syncs in the variable `name`.
    pub fn generation_in(mut self, name: impl Into<String>) -> Self {
        self.generation = Some(name.into());
        self
    }

    /// A worker of `test` handed the contract server's `url`, the `state` file and each
    /// run's generation under `prefix` (see [`Handoff`]).
    pub fn handed(test: &'static str, prefix: &str, url: &str, state: &Path) -> Self {
        Self::new(test)
            .env(format!("{prefix}_URL"), url)
            .env(format!("{prefix}_STATE"), state)
            .generation_in(format!("{prefix}_GEN"))
    }

    /// Starts the worker on `generation`, its output piped.
    pub fn spawn(&self, generation: u32) -> Child {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command.args(["--exact", self.test, "--nocapture", "--test-threads", "1"]);
        command.envs(self.env.iter().map(|(name, value)| (name, value)));
        if let Some(name) = &self.generation {
            command.env(name, generation.to_string());
        }
        command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }

    /// Runs the worker on `generation` to the end; returns how many changes it planned.
    pub fn run_to_end(&self, generation: u32) -> u64 {
        planned(&self.spawn(generation).wait_with_output().unwrap())
    }
}

/// Asserts that a worker run to the end succeeded; returns how many changes it planned
/// (the `RESULT planned=N` line `run_after_the_lease_lapses` prints).
pub fn planned(out: &Output) -> u64 {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "worker failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout.split("RESULT planned=").nth(1).and_then(|t| t.split_whitespace().next()).unwrap().parse().unwrap()
}

/// Whether a signal ended the worker; a worker that exited on its own must have succeeded.
pub fn killed(out: &Output) -> bool {
    if out.status.code().is_some() {
        assert!(out.status.success(), "worker failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.code().is_none()
}

/// How many kills a test makes: `RSE_KILLS`, else `default`.
pub fn kills_wanted(default: u32) -> u32 {
    std::env::var("RSE_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// When a kill loop stops: after `kills` kills, after `within`, or after `generations`
/// generations, whichever comes first.
pub struct KillLoop {
    pub kills: u32,
    pub within: Duration,
    pub generations: u32,
}

/// What a kill loop did.
pub struct Kills {
    pub kills: u32,
    /// Runs that finished before their kill.
    pub completed: u32,
    /// The last generation a worker ran on.
    pub generation: u32,
}

/// Runs workers on generation 1, 2, …, each killed (SIGKILL) after a random delay between
/// 50 ms and the time the last completed run took (1.5 s until one completes), until the
/// loop's bound. Asserts that at least five kills (or all wanted, if fewer) landed.
pub async fn kill_repeatedly(worker: &Worker, bounds: KillLoop) -> Kills {
    let (mut kills, mut completed, mut generation) = (0u32, 0u32, 0u32);
    let deadline = Instant::now() + bounds.within;
    let mut typical = Duration::from_millis(1_500);
    while kills < bounds.kills && Instant::now() < deadline && generation < bounds.generations {
        generation += 1;
        let spawned = Instant::now();
        let mut child = worker.spawn(generation);
        let delay = Duration::from_millis(fastrand::u64(50..typical.as_millis().max(100) as u64));
        tokio::time::sleep(delay).await;
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
        }
        let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap().unwrap();
        if killed(&out) {
            kills += 1;
        } else {
            completed += 1;
            typical = spawned.elapsed();
        }
    }
    assert!(kills >= bounds.kills.min(5), "only {kills} kills in the time allowed ({completed} runs completed)");
    Kills { kills, completed, generation }
}

/// The kills stop: one run on `generation` converges, the next has nothing to do.
pub async fn converge(worker: &Worker, generation: u32) {
    let first = worker.clone();
    tokio::task::spawn_blocking(move || first.run_to_end(generation)).await.unwrap();
    let second = worker.clone();
    let planned = tokio::task::spawn_blocking(move || second.run_to_end(generation)).await.unwrap();
    assert_eq!(planned, 0, "a run after convergence planned changes");
}

/// What a parent hands a worker ([`Worker::handed`]), in `{prefix}_URL`, `{prefix}_STATE`
/// and `{prefix}_GEN`.
pub struct Handoff {
    /// The contract server's base URL.
    pub url: String,
    /// The state file.
    pub state: PathBuf,
    /// The generation of the source to sync.
    pub generation: u32,
}

impl Handoff {
    /// In a worker, what the parent handed over under `prefix`; `None` when the worker test
    /// runs on its own, as a normal test (it then returns at once).
    pub fn read(prefix: &str) -> Option<Handoff> {
        let url = std::env::var(format!("{prefix}_URL")).ok()?;
        let state = PathBuf::from(std::env::var_os(format!("{prefix}_STATE")).unwrap());
        let generation = std::env::var(format!("{prefix}_GEN")).unwrap().parse().unwrap();
        Some(Handoff { url, state, generation })
    }

    /// The worker's run: a `Mirror` sync `sync_id` of `source` into `destination`, its state
    /// in the handed SQLite file, under a one-second lease held by this process (so a killed
    /// worker's lease lapses fast), run once the lease a killed predecessor left has lapsed.
    pub async fn run_mirror(
        &self,
        sync_id: &str,
        source: impl Source + 'static,
        destination: impl Destination + 'static,
        options: SyncOptions,
    ) {
        let options = options.with_lease_ttl(Duration::from_secs(1)).with_holder(format!("pid {}", std::process::id()));
        let sync = SyncJob::builder(sync_id)
            .source(source)
            .destination(destination)
            .state(SqliteStateStore::open(&self.state).await.unwrap())
            .mode(Mode::Mirror)
            .options(options)
            .build()
            .await
            .unwrap();
        run_after_the_lease_lapses(&sync).await;
    }
}

/// A fresh directory under the temporary one for a SIGKILL test, and its state file.
pub fn fresh_state(name: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(rse_core::testing::unique_id(name));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("state.db");
    (dir, state)
}

/// Asserts that the destination holds exactly `want`, naming up to five identifiers left
/// behind and five missing.
pub fn assert_holds_exactly(held: &BTreeSet<String>, want: &BTreeSet<String>) {
    let extra: Vec<&String> = held.difference(want).take(5).collect();
    let missing: Vec<&String> = want.difference(held).take(5).collect();
    assert!(extra.is_empty() && missing.is_empty(), "left behind: {extra:?}; missing: {missing:?}");
}
