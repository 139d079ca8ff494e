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

use std::time::Duration;

use rse_connectors::google::ads::GoogleAdsDestination;
use rse_core::memory::MemorySource;

use super::common::*;
use crate::child_run::{
    Handoff, KillLoop, Kills, Worker, assert_holds_exactly, converge, fresh_state, kill_repeatedly, kills_wanted,
};
use crate::google_ads_server::GoogleAds;

const MEMBERS: i64 = 400;

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
    let Some(handoff) = Handoff::read("RSE_GA_KILL") else { return };
    let (url, generation) = (handoff.url.clone(), handoff.generation);
    let (source, destination) = (
        MemorySource::new(schema(), records(&segment(generation))),
        GoogleAdsDestination::new(config_at(url)).unwrap(),
    );
    handoff.run_mirror("audience", source, destination, options().with_batch_rows(50)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_repeatedly_leaves_the_list_equal_to_the_segment() {
    let ga = GoogleAds::start().await;
    // A call takes a little while, as Google's do: kills land mid-request and mid-job.
    ga.set_latency(Duration::from_millis(10));
    let url = ga.base_url();
    let (dir, state) = fresh_state("rse_google_ads_kill");

    let worker = Worker::handed("kill::kill_worker", "RSE_GA_KILL", &url, &state);
    let bounds = KillLoop { kills: kills_wanted(8), within: Duration::from_secs(150), generations: 60 };
    let Kills { kills, completed, generation } = kill_repeatedly(&worker, bounds).await;
    converge(&worker, generation).await;

    let want = expected(&segment(generation));
    let have = held(&ga);
    assert_holds_exactly(&have, &want);
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
