//! SIGKILL mid-run, repeated: a Mirror sync of a few hundred members into the contract
//! server's list, its source edited between runs (e-mail addresses changed, consent given
//! and withdrawn, members leaving and joining), killed at random moments and restarted on a
//! durable state (SQLite). At the end the list holds exactly the segment's identifiers:
//! nothing of an old e-mail address or of a member who left, even when a kill lost the
//! answer of the job that sent it (the identifiers are recorded with the intent), and a
//! job a kill left running or pending does not block the next run.
//!
//! The server runs in this test's process; the worker is this test binary run again
//! (`kill_worker`, selected by `RSE_GA_KILL_URL`), so each kill is a real process death
//! mid-request. `RSE_KILLS` sets the kills (default 8).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rse_connectors::google::ads::GoogleAdsDestination;
use rse_connectors::state::SqliteStateStore;
use rse_core::memory::MemorySource;
use rse_core::testing::unique_id;
use rse_core::*;

use super::common::*;
use crate::google_ads_server::GoogleAds;

const MEMBERS: i64 = 400;
const LEASE_TTL: Duration = Duration::from_secs(1);

/// The segment at `generation`: twenty more members each time; a tenth of the members with
/// a new e-mail address (and the old one back the generation after); a few without consent,
/// changing each generation; and members leaving for good.
fn segment(generation: u32) -> Vec<Member> {
    let g = i64::from(generation);
    let n = MEMBERS + 20 * g;
    (1..=n)
        .filter(|id| !(id % 17 == 0 && id / 17 <= 2 * g))
        .map(|id| {
            let mut m = Member::new(id);
            if id % 10 == g % 10 {
                m.email = Some(format!("gen{g}.member{id}@example.com"));
            }
            if id % 13 == g % 13 {
                m.consent = Some(false);
            }
            m
        })
        .collect()
}

/// The worker: runs the sync of `RSE_GA_KILL_GEN` to the end, waiting out a killed
/// runner's lease. Run as a normal test it returns at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_worker() {
    let Ok(url) = std::env::var("RSE_GA_KILL_URL") else { return };
    let state = std::env::var("RSE_GA_KILL_STATE").unwrap();
    let generation: u32 = std::env::var("RSE_GA_KILL_GEN").unwrap().parse().unwrap();
    let options =
        options().with_batch_rows(50).with_lease_ttl(LEASE_TTL).with_holder(format!("pid {}", std::process::id()));
    let sync = SyncJob::builder("audience")
        .source(MemorySource::new(schema(), records(&segment(generation))))
        .destination(GoogleAdsDestination::new(config_at(url)).unwrap())
        .state(SqliteStateStore::open(&state).await.unwrap())
        .mode(Mode::Mirror)
        .options(options)
        .build()
        .await
        .unwrap();
    crate::child_run::run_after_the_lease_lapses(&sync).await;
}

fn spawn(url: &str, state: &Path, generation: u32) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "kill::kill_worker", "--nocapture", "--test-threads", "1"])
        .env("RSE_GA_KILL_URL", url)
        .env("RSE_GA_KILL_STATE", state)
        .env("RSE_GA_KILL_GEN", generation.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs the worker to the end; returns how many changes it planned.
fn run_to_end(url: &str, state: &Path, generation: u32) -> u64 {
    let out = spawn(url, state, generation).wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "worker failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout.split("RESULT planned=").nth(1).and_then(|t| t.split_whitespace().next()).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_repeatedly_leaves_the_list_equal_to_the_segment() {
    let ga = GoogleAds::start().await;
    // A call takes a little while, as Google's do: kills land mid-request and mid-job.
    ga.set_latency(Duration::from_millis(10));
    let url = ga.base_url();
    let dir: PathBuf = std::env::temp_dir().join(unique_id("rse_google_ads_kill"));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("state.db");

    let kills_wanted: u32 = std::env::var("RSE_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let (mut kills, mut completed, mut generation) = (0u32, 0u32, 0u32);
    let deadline = Instant::now() + Duration::from_secs(150);
    let mut typical = Duration::from_millis(1_500);
    while kills < kills_wanted && Instant::now() < deadline && generation < 60 {
        generation += 1;
        let spawned = Instant::now();
        let mut child = spawn(&url, &state, generation);
        let delay = Duration::from_millis(fastrand::u64(50..typical.as_millis().max(100) as u64));
        tokio::time::sleep(delay).await;
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
        }
        let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap().unwrap();
        if out.status.code().is_none() {
            kills += 1;
        } else {
            assert!(out.status.success(), "worker failed:\n{}", String::from_utf8_lossy(&out.stderr));
            completed += 1;
            typical = spawned.elapsed();
        }
    }
    assert!(kills >= kills_wanted.min(5), "only {kills} kills in the time allowed ({completed} runs completed)");

    // The kills stop: one run converges, the next has nothing to do.
    let (url2, state2) = (url.clone(), state.clone());
    tokio::task::spawn_blocking(move || run_to_end(&url2, &state2, generation)).await.unwrap();
    let (url2, state2) = (url.clone(), state.clone());
    let planned = tokio::task::spawn_blocking(move || run_to_end(&url2, &state2, generation)).await.unwrap();
    assert_eq!(planned, 0, "a run after convergence planned changes");

    let want = expected(&segment(generation));
    let have = held(&ga);
    let extra: Vec<&String> = have.difference(&want).take(5).collect();
    let missing: Vec<&String> = want.difference(&have).take(5).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "the list is not the segment: extra {extra:?}, missing {missing:?}"
    );
    ga.assert_no_violations();
    let _ = std::fs::remove_dir_all(&dir);
    let jobs = ga.jobs();
    let left = jobs.iter().filter(|j| j.status == crate::google_ads_server::Status::Pending).count();
    println!(
        "{kills} kills, {completed} runs completed before a kill, {generation} generations, {} jobs ({left} left pending by kills), {} identifiers held",
        jobs.len(),
        have.len()
    );
}
