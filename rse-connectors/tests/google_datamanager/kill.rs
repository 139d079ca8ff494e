//! SIGKILL mid-upload, repeated: a Mirror sync of a few thousand members into the contract
//! server, its source edited between runs (addresses changed, rows added and removed),
//! killed at random moments and restarted on a durable state (SQLite). At the end the list
//! holds exactly the segment's identifiers: nothing of a removed row, no old address of a
//! member whose address changed (the identifiers a killed run sent are in the state before
//! the upload: `intent_memo`), nothing missing.
//!
//! The worker is this test binary run again (`kill_worker`, selected by `RSE_DM_KILL_URL`),
//! so each kill is a real process death mid-request. `RSE_KILLS` sets the kills (default 10).

use std::time::Duration;

use rse_connectors::GoogleDataManagerDestination;
use rse_core::memory::MemorySource;
use rse_core::*;

use super::common::*;
use crate::child_run::{
    Handoff, KillLoop, Kills, Worker, assert_holds_exactly, converge, fresh_state, kill_repeatedly, kills_wanted,
};
use crate::datamanager_server::LIST_ID;

const ROWS: i64 = 3_000;

/// The source at `generation`: a hundred more rows each time, a tenth of the rows with a
/// new address (another tenth each generation), rows removed for good (every 31st of the
/// first ones, progressively, and a third of each generation's new rows).
fn rows(generation: u32) -> Vec<Record> {
    let n = ROWS + 100 * i64::from(generation);
    let changed = i64::from(generation % 10);
    let removed = |id: i64| match id <= ROWS {
        true => id % 31 == 0 && id / 31 <= 3 * i64::from(generation),
        false => id % 3 == 0 && id <= n - 100,
    };
    (1..=n).filter(|&id| !removed(id)).map(|id| member(id, if id % 10 == changed { generation } else { 0 })).collect()
}

/// The worker: runs the sync of `RSE_DM_KILL_GEN` to the end, waiting out a killed
/// runner's lease. Run as a normal test it returns at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_worker() {
    let Some(handoff) = Handoff::read("RSE_DM_KILL") else { return };
    let (url, generation) = (handoff.url.clone(), handoff.generation);
    let config = config_at(url).with_max_members_per_request(250).with_requests_per_minute(60_000);
    let (source, destination) =
        (MemorySource::new(schema(), rows(generation)), GoogleDataManagerDestination::new(config).unwrap());
    handoff.run_mirror("audience", source, destination, options().with_batch_rows(250)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_upload_repeated_leaves_the_list_equal_to_the_segment() {
    let dm = crate::datamanager_server::DataManager::start().await;
    dm.set_per_minute(None);
    dm.set_per_day(None);
    dm.lock().keep_bodies = false;
    // A request takes a little while, as Google's do: kills land mid-request.
    dm.set_latency(Duration::from_millis(15));
    let url = dm.base_url();
    let (dir, state) = fresh_state("rse_gdm_kill");

    let worker = Worker::handed("kill::kill_worker", "RSE_DM_KILL", &url, &state);
    let bounds = KillLoop { kills: kills_wanted(10), within: Duration::from_secs(120), generations: 100 };
    let Kills { kills, completed, generation } = kill_repeatedly(&worker, bounds).await;
    converge(&worker, generation).await;

    let held = dm.audience(LIST_ID);
    let want = expected(&rows(generation));
    assert_holds_exactly(&held, &want);
    dm.assert_no_violations();
    let _ = std::fs::remove_dir_all(&dir);
    println!("{kills} kills, {completed} runs completed before a kill, {generation} generations");
}
