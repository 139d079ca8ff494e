//! The destination conformance suite (`rse_core::testing::check_destination`) against the
//! contract server, through [`KeepMemos`] (the runner's part: each key's identifiers kept
//! and handed back), with the audience read back from the server.
//!
//! The suite's rows become members by their `name` (the advertiser's id, `EXTERN_ID`): after
//! its inserts, update, delete and its batch of 1,000 rows all named `bulk`, Meta must hold
//! exactly `EXTERN_ID:bulk`; every earlier name was removed under the memo of its key.

use std::sync::Arc;

use rse_connectors::audience::AudienceFields;
use rse_connectors::{MetaAudienceConfig, MetaAudienceDestination};
use rse_core::Destination;
use rse_core::testing::{KeepMemos, check_destination};

use crate::meta_server::{AUDIENCE, Meta, TOKEN};

fn destination(meta: &Meta) -> MetaAudienceDestination {
    let fields = AudienceFields::new().external_id("name");
    MetaAudienceDestination::new(MetaAudienceConfig::new(AUDIENCE, TOKEN, fields).with_base_url(meta.base_url()))
        .unwrap()
}

#[tokio::test]
async fn the_destination_passes_the_conformance_suite() {
    let meta = Meta::start().await;
    let destination = KeepMemos::new(destination(&meta));
    check_destination(&destination, None).await.unwrap();
    assert_eq!(meta.audience(AUDIENCE), ["EXTERN_ID:bulk".to_owned()].into_iter().collect());
    assert!(meta.calls("remove") >= 2, "renamed and deleted members were removed");
    meta.assert_no_violations();
}

#[tokio::test]
async fn through_box_and_arc_dyn_too() {
    let meta = Meta::start().await;
    let boxed: Box<dyn Destination> = Box::new(KeepMemos::new(destination(&meta)));
    check_destination(boxed.as_ref(), None).await.unwrap();
    let meta2 = Meta::start().await;
    let shared: Arc<dyn Destination> = Arc::new(KeepMemos::new(destination(&meta2)));
    check_destination(shared.as_ref(), None).await.unwrap();
    assert_eq!(meta.audience(AUDIENCE), meta2.audience(AUDIENCE));
    meta.assert_no_violations();
    meta2.assert_no_violations();
}
