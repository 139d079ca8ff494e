//! SIGKILL mid-run, repeated: a Mirror sync of a few thousand contacts into the contract
//! server, its source edited between runs, killed at random moments and restarted on a
//! durable state (SQLite). At the end HubSpot holds the model: every contact with its latest
//! values, each created exactly once (a write whose answer was lost is matched by e-mail
//! when sent again), and no contact of a row removed; the state holds each contact's record
//! id.
//!
//! The server runs in this test's process on a TCP port; the worker is this test binary
//! run again (`kill_worker`, selected by `RSE_HS_KILL_URL`), so each kill is a real process
//! death mid-request. Edits change, add and remove rows. The sync writes each key to a key
//! property, so the delete of a key whose creation's answer a kill lost (no record id kept)
//! still finds the record to archive (whether a kill lands so is chance: about one run in
//! four here; sync.rs makes that case happen every time). `RSE_KILLS` sets the kills
//! (default 10).

use std::time::Duration;

use rse_connectors::HubSpotDestination;
use rse_connectors::hubspot::BurstLimit;
use rse_connectors::state::SqliteStateStore;
use rse_core::memory::MemorySource;
use rse_core::*;

use super::common::*;
use crate::child_run::{Handoff, KillLoop, Kills, Worker, converge, fresh_state, kill_repeatedly, kills_wanted};

const ROWS: i64 = 3_000;

/// The source at `generation`: a hundred more rows each time, a tenth of the rows renamed
/// (and renamed back the generation after), and rows removed for good: three more of the
/// first ones, and a third of the rows the generation before added (the last a killed run
/// was creating, whose answers a kill may have lost).
fn rows(generation: u32) -> Vec<Record> {
    let n = ROWS + 100 * i64::from(generation);
    let renamed = i64::from(generation % 10);
    let removed = |id: i64| match id <= ROWS {
        true => id % 31 == 0 && id / 31 <= 3 * i64::from(generation),
        false => id % 3 == 0 && id <= n - 100,
    };
    (1..=n)
        .filter(|&id| !removed(id))
        .map(|id| {
            let name = if id % 10 == renamed { format!("Gen{generation}") } else { format!("Contact{id}") };
            contact_named(id, &name)
        })
        .collect()
}

/// The worker: runs the sync of `RSE_HS_KILL_GEN` to the end, waiting out a killed
/// runner's lease, and prints what it planned. Run as a normal test it returns at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_worker() {
    let Some(handoff) = Handoff::read("RSE_HS_KILL") else { return };
    let (url, generation) = (handoff.url.clone(), handoff.generation);
    // The server has no burst limit here: the kills land in a run, not in a wait.
    let config = config_at(url).with_rate_limit(BurstLimit::per_ten_seconds(100_000)).with_key_property(KEY_PROPERTY);
    let (source, destination) =
        (MemorySource::new(schema(), rows(generation)), HubSpotDestination::new(config).unwrap());
    handoff.run_mirror("customers", source, destination, options().with_max_concurrency(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_loses_nothing_and_creates_each_contact_once() {
    let hs = server().await;
    hs.set_window(None);
    hs.set_daily(None);
    hs.lock().keep_bodies = false;
    // A call takes a little while, as HubSpot's do: kills land mid-request.
    hs.set_latency(Duration::from_millis(15));
    let url = hs.base_url();
    let (dir, state) = fresh_state("rse_hubspot_kill");

    let worker = Worker::handed("kill::kill_worker", "RSE_HS_KILL", &url, &state);
    let bounds = KillLoop { kills: kills_wanted(10), within: Duration::from_secs(120), generations: 100 };
    let Kills { kills, completed, generation } = kill_repeatedly(&worker, bounds).await;
    converge(&worker, generation).await;

    // HubSpot holds the model: every contact with its latest values, each created once, and
    // nothing of the rows removed.
    let expected = rows(generation);
    let creations = hs.creations("contacts");
    for record in &expected {
        assert_holds(&hs, record);
        let Value::Int(id) = record.values[0] else { panic!("an int id") };
        assert!(creations.contains_key(&("email".to_owned(), hubspot_email(id))), "contact {id} was created");
    }
    assert_eq!(hs.live("contacts").len(), expected.len(), "a removed row's contact is left");
    assert!(creations.values().all(|n| *n == 1), "a contact was created twice");

    // The state holds each contact's record id; a removed row's key is kept as deleted, with
    // none.
    let store = SqliteStateStore::open(&state).await.unwrap();
    let mut after: Option<Key> = None;
    let mut seen = 0;
    loop {
        let page = store.scan("customers", after.as_ref(), 1_000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
        for entry in page {
            let id = entry.key.decode().unwrap()[0].as_i64().unwrap();
            let memo = entry.memo.as_ref().and_then(Memo::as_str).map(str::to_owned);
            assert_eq!(memo, held(&hs, id).map(|r| r.id.to_string()), "contact {id}'s record id");
            seen += usize::from(entry.is_live());
        }
    }
    assert_eq!(seen, expected.len());
    hs.assert_no_violations();
    let _ = std::fs::remove_dir_all(&dir);
    let archived = hs.lock().archived.len();
    let reads = hs.calls("read");
    println!(
        "{kills} kills, {completed} runs completed before a kill, {generation} generations, {archived} records archived, {reads} reads for deletes without a record id"
    );
}
