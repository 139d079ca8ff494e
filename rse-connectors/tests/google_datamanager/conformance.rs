//! The destination conformance suite (`rse_core::testing::check_destination`) against the
//! contract server.
//!
//! The suite's rows (`id`, `name`, `score`, `active`) carry no e-mail address: their `name`
//! is mapped to the mobile id, which Google takes in clear. An audience cannot give a row
//! back (Google keeps identifiers, not records), so the suite runs without read-back, and
//! what the list holds is checked here. A delete removes the identifiers the key's memo
//! holds, which the runner keeps; so the suite runs through
//! [`KeepMemos`](rse_core::testing::KeepMemos), as the HubSpot suite does.

use std::sync::Arc;

use rse_connectors::GoogleDataManagerDestination;
use rse_connectors::audience::AudienceFields;
use rse_core::testing::{KeepMemos, check_destination};
use rse_core::*;

use super::common::config;
use crate::datamanager_server::{DataManager, LIST_ID};

fn destination(dm: &DataManager) -> GoogleDataManagerDestination {
    let mut config = config(dm);
    config.audience = AudienceFields::new().mobile_id("name");
    GoogleDataManagerDestination::new(config).unwrap()
}

#[tokio::test]
async fn the_destination_passes_the_conformance_suite() {
    let dm = DataManager::start().await;
    let destination = KeepMemos::new(destination(&dm));
    check_destination(&destination, None).await.unwrap();
    // What the suite's last writes leave: the big batch's one shared name.
    let held = dm.audience(LIST_ID);
    assert!(held.contains("mobile:bulk"), "{held:?}");
    assert!(dm.accepted("ingest") >= 3 && dm.accepted("remove") >= 1, "{:?}", dm.log());
    dm.assert_no_violations();
}

#[tokio::test]
async fn through_box_and_arc_dyn_too() {
    let dm = DataManager::start().await;
    let boxed: Box<dyn Destination> = Box::new(KeepMemos::new(destination(&dm)));
    check_destination(boxed.as_ref(), None).await.unwrap();
    let shared: Arc<dyn Destination> = Arc::new(KeepMemos::new(destination(&dm)));
    check_destination(shared.as_ref(), None).await.unwrap();
    dm.assert_no_violations();
}
