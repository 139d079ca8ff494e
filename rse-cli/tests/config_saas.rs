//! The SaaS destinations (features `hubspot`, `salesforce`, `google`, `meta`) read their
//! library configuration from a file, credentials by reference, and build.
#![cfg(any(feature = "hubspot", feature = "salesforce", feature = "google", feature = "meta"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod config_common;

use config_common::{TestDir, create_warehouse};

/// A sync from the quickstart's warehouse into `destination` (a TOML table body).
fn sync(destination: &str) -> String {
    format!(
        "[state]\ntype = \"sqlite\"\npath = \"state.db\"\n\n[sync.s.source]\ntype = \"sqlite\"\npath = \"warehouse.db\"\n\
         table = \"customers\"\nkey = [\"id\"]\n\n[sync.s.destination]\n{destination}\n"
    )
}

/// Loads and builds the sync; the destination's name as reports show it.
async fn built_name(dir: &TestDir, destination: &str) -> String {
    create_warehouse(&dir.path("warehouse.db"), 2);
    std::fs::write(dir.path("token"), "s3cret-token\n").unwrap();
    let file = dir.load(&sync(destination)).unwrap_or_else(|e| panic!("{e}"));
    let built = file.require_sync("s").unwrap().build().await.unwrap_or_else(|e| panic!("{e}"));
    built.job.destination().name().to_owned()
}

#[cfg(feature = "hubspot")]
#[tokio::test]
async fn hubspot_contacts() {
    let dir = TestDir::new("saas-hubspot");
    let name = built_name(
        &dir,
        r#"type = "hubspot"
object = "contacts"
auth = { type = "bearer", token = "${file:token}" }
fields = [{ field = "email", property = "email" }, { field = "lifecycle_stage", property = "lifecyclestage" }]
rate_limit = { requests = 90, per = "10s" }"#,
    )
    .await;
    assert!(name.starts_with("hubspot"), "{name}");
}

#[cfg(feature = "salesforce")]
#[tokio::test]
async fn salesforce_contacts() {
    let dir = TestDir::new("saas-salesforce");
    const SF: &str = r#"type = "salesforce"
object = "Contact"
external_id_field = "Rse_Ext_Id__c"
fields = [{ field = "email", property = "Email" }]
auth = { type = "oauth_refresh", token_url = "https://login.salesforce.com/services/oauth2/token", client_id = "c", client_secret = "${file:token}", refresh_token = "${file:token}" }
bulk = { min_records = 5000 }"#;
    let name = built_name(&dir, SF).await;
    assert!(name.starts_with("salesforce"), "{name}");
}

#[cfg(feature = "google")]
#[tokio::test]
async fn google_ads_and_data_manager() {
    let dir = TestDir::new("saas-google");
    const ADS: &str = r#"type = "google_ads"
developer_token = "${file:token}"
customer_id = "123-456-7890"
user_list = "customers/1234567890/userLists/7777777777"
audience = { email = "email" }
auth = { type = "oauth_refresh", token_url = "https://oauth2.googleapis.com/token", client_id = "c", client_secret = "${file:token}", refresh_token = "${file:token}", scope = "https://www.googleapis.com/auth/adwords" }"#;
    assert!(built_name(&dir, ADS).await.starts_with("google"));
    let dir = TestDir::new("saas-google-dm");
    const DM: &str = r#"type = "google_data_manager"
operating_account = { account_type = "GOOGLE_ADS", account_id = "1234567890" }
user_list_id = "7777777777"
audience = { email = "email" }
terms_of_service_accepted = true
auth = { type = "oauth_refresh", token_url = "https://oauth2.googleapis.com/token", client_id = "c", client_secret = "${file:token}", refresh_token = "${file:token}", scope = "https://www.googleapis.com/auth/datamanager" }"#;
    assert!(built_name(&dir, DM).await.starts_with("google"));
}

#[cfg(feature = "meta")]
#[tokio::test]
async fn meta_custom_audience() {
    let dir = TestDir::new("saas-meta");
    const META: &str = r#"type = "meta"
audience_id = "23850000000000001"
access_token = "${file:token}"
fields = { email = "email" }"#;
    let name = built_name(&dir, META).await;
    assert!(name.starts_with("meta"), "{name}");
}
