//! The destination conformance suite (`rse_core::testing::check_destination`) against the
//! contract server. The suite's rows are members identified by their `id` (sent as the
//! advertiser's own id, `thirdPartyUserId`); the list cannot be read back as rows, so the
//! members it holds are checked after the suite.
//!
//! A delete removes the identifiers a key's earlier write was answered with (its memo),
//! which the runner keeps and hands back; the suite runs through
//! [`KeepMemos`](rse_core::testing::KeepMemos), which keeps memos as the runner does.

use std::collections::BTreeSet;
use std::sync::Arc;

use rse_connectors::audience::AudienceFields;
use rse_connectors::google::ads::{GoogleAdsConfig, GoogleAdsDestination};
use rse_connectors::saas::SaasAuthConfig;
use rse_core::testing::{KeepMemos, check_destination};
use rse_core::*;

use crate::google_ads_server::{CUSTOMER_ID, DEVELOPER_TOKEN, GoogleAds, TOKEN, USER_LIST_ID};

async fn members() -> (GoogleAds, GoogleAdsDestination) {
    let ga = GoogleAds::start().await;
    let config = GoogleAdsConfig::new(
        SaasAuthConfig::Bearer { token: TOKEN.into() },
        DEVELOPER_TOKEN,
        CUSTOMER_ID,
        USER_LIST_ID,
        AudienceFields::new().external_id("id"),
    )
    .with_base_url(ga.base_url())
    .with_poll_interval(std::time::Duration::from_millis(1));
    (ga, GoogleAdsDestination::new(config).unwrap())
}

/// Members 1 to 1,000: the suite's last write, a batch of 1,000, adds every one back.
fn all_ids() -> BTreeSet<String> {
    (1..=1_000).map(|i| format!("user_id:{i}")).collect()
}

#[tokio::test]
async fn the_destination_passes_the_conformance_suite() {
    let (ga, destination) = members().await;
    let destination = KeepMemos::new(destination);
    check_destination(&destination, None).await.unwrap();
    assert_eq!(ga.user_list(USER_LIST_ID), all_ids());
    // The delete of member 1 went in a remove job of its own: no job mixed the kinds.
    let jobs = ga.jobs();
    assert!(jobs.iter().any(|j| j.ops.iter().any(|op| matches!(op, crate::google_ads_server::Op::Remove { .. }))));
    for job in &jobs {
        let creates = job.ops.iter().filter(|op| matches!(op, crate::google_ads_server::Op::Create { .. })).count();
        assert!(creates == 0 || creates == job.ops.len(), "a job mixed create and remove");
    }
    ga.assert_no_violations();
}

#[tokio::test]
async fn through_box_and_arc_dyn_too() {
    let (ga, destination) = members().await;
    let boxed: Box<dyn Destination> = Box::new(KeepMemos::new(destination));
    check_destination(boxed.as_ref(), None).await.unwrap();
    assert_eq!(ga.user_list(USER_LIST_ID), all_ids());
    let (ga2, destination) = members().await;
    let shared: Arc<dyn Destination> = Arc::new(KeepMemos::new(destination));
    check_destination(shared.as_ref(), None).await.unwrap();
    assert_eq!(ga2.user_list(USER_LIST_ID), all_ids());
    ga.assert_no_violations();
    ga2.assert_no_violations();
}
