//! SIGKILL mid-run, repeated: a Mirror sync of a couple of thousand people into the
//! contract server, its source edited between runs (e-mail addresses changed and changed
//! back, consent withdrawn and given, people leaving and joining), killed at random moments
//! and restarted on a durable state (SQLite). At the end Meta holds exactly the identifiers
//! of the segment's consenting members: nothing a killed run sent is left behind (its
//! identifiers were recorded as the key's memo before the call), nothing is missing.
//!
//! The server runs in this test's process; the worker is this test binary run again
//! (`kill_worker`, selected by `RSE_META_KILL_URL`), so each kill is a real process death
//! mid-request. `RSE_KILLS` sets the kills (default 10).

use std::time::Duration;

use rse_core::memory::MemorySource;
use rse_core::*;

use super::common::*;
use crate::child_run::{
    Handoff, KillLoop, Kills, Worker, assert_holds_exactly, converge, fresh_state, kill_repeatedly, kills_wanted,
};
use crate::meta_server::{AUDIENCE, Meta};

const ROWS: i64 = 2_000;

/// The segment at `generation`: fifty more people each time; a tenth of them with a new
/// e-mail address (changed back the generation after); a seventh without consent, shifting;
/// and people leaving for good (three more of the first ones each time, and a third of
/// those the generation before added).
fn rows(generation: u32) -> Vec<Record> {
    let n = ROWS + 50 * i64::from(generation);
    let g = i64::from(generation);
    let removed = |id: i64| match id <= ROWS {
        true => id % 31 == 0 && id / 31 <= 3 * g,
        false => id % 3 == 0 && id <= n - 50,
    };
    (1..=n)
        .filter(|&id| !removed(id))
        .map(|id| {
            let address = if id % 10 == g % 10 { format!("gen{generation}.user{id}@example.net") } else { email(id) };
            person_with(id, &address, (id + g) % 7 != 0)
        })
        .collect()
}

/// The worker: runs the sync of `RSE_META_KILL_GEN` to the end, waiting out a killed
/// runner's lease, and prints what it planned. Run as a normal test it returns at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_worker() {
    let Some(handoff) = Handoff::read("RSE_META_KILL") else { return };
    let (url, generation) = (handoff.url.clone(), handoff.generation);
    let config =
        rse_connectors::MetaAudienceConfig::new(AUDIENCE, crate::meta_server::TOKEN, fields()).with_base_url(url);
    let (source, destination) =
        (MemorySource::new(schema(), rows(generation)), rse_connectors::MetaAudienceDestination::new(config).unwrap());
    handoff.run_mirror("audience", source, destination, options().with_batch_rows(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_leaves_the_audience_equal_to_the_segment() {
    let meta = Meta::start().await;
    // A call takes a little while, as Meta's do: kills land mid-request.
    meta.set_latency(Duration::from_millis(15));
    let url = meta.base_url();
    let (dir, state) = fresh_state("rse_meta_kill");

    let worker = Worker::handed("kill::kill_worker", "RSE_META_KILL", &url, &state);
    let bounds = KillLoop { kills: kills_wanted(10), within: Duration::from_secs(120), generations: 100 };
    let Kills { kills, completed, generation } = kill_repeatedly(&worker, bounds).await;
    converge(&worker, generation).await;

    let segment = rows(generation);
    let held = meta.audience(AUDIENCE);
    let want = expected(&segment);
    assert_holds_exactly(&held, &want);
    meta.assert_no_violations();
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{kills} kills, {completed} runs completed before a kill, {generation} generations, {} identifiers held, {} add and {} remove calls",
        held.len(),
        meta.calls("add"),
        meta.calls("remove")
    );
}
