//! Both sides of a SIGKILL test: the worker (this test binary run again, one test selected)
//! waits out the lease a killed predecessor left and runs once; the parent starts workers,
//! kills them at random moments, then lets the last ones run to the end.
// Each test binary includes this file and uses its part of it.
#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rse_core::{Error, RunStatus, StateError, SyncJob};

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
    env: Vec<(&'static str, OsString)>,
    generation: Option<&'static str>,
}

impl Worker {
    /// A worker running the test `test` (its full name, e.g. `kill::kill_worker`).
    pub fn new(test: &'static str) -> Self {
        Self { test, env: Vec::new(), generation: None }
    }

    /// Sets `name` to `value` in the worker's environment.
    pub fn env(mut self, name: &'static str, value: impl AsRef<OsStr>) -> Self {
        self.env.push((name, value.as_ref().to_owned()));
        self
    }

    /// Passes the generation of the source the worker syncs in the variable `name`.
    pub fn generation_in(mut self, name: &'static str) -> Self {
        self.generation = Some(name);
        self
    }

    /// Starts the worker on `generation`, its output piped.
    pub fn spawn(&self, generation: u32) -> Child {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command.args(["--exact", self.test, "--nocapture", "--test-threads", "1"]);
        command.envs(self.env.iter().map(|(name, value)| (name, value)));
        if let Some(name) = self.generation {
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
