//! What one member becomes on the wire: addresses (all four parts, or none), mobile ids in
//! requests of their own, an address that changes leaving as a whole; the settings a
//! Customer Match list cannot take; and the service account's JWT grant.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use rse_connectors::audience::AudienceFields;
use rse_connectors::google::datamanager::SCOPE;
use rse_connectors::saas::{JwtBearerConfig, SaasAuthConfig};
use rse_connectors::{GoogleDataManagerConfig, GoogleDataManagerDestination, Secret};
use rse_core::memory::{MemorySource, MemoryStateStore};
use rse_core::*;
use serde_json::Value as Json;

use super::common::{config, options, sha};
use crate::datamanager_server::{DataManager, LIST_ID};
use crate::oauth_server::{JwtCheck, OAuthServer};

fn schema() -> Arc<Schema> {
    Schema::new(
        vec![
            Field::required("id", DataType::Int),
            Field::new("first", DataType::String),
            Field::new("last", DataType::String),
            Field::new("zip", DataType::String),
            Field::new("device", DataType::String),
        ],
        &["id"],
    )
    .unwrap()
    .into_arc()
}

fn row(id: i64, last: &str, zip: &str, device: Option<&str>) -> Record {
    Record::new(vec![
        Value::Int(id),
        Value::String(format!("Ada{id}")),
        Value::String(last.to_owned()),
        Value::String(zip.to_owned()),
        device.map_or(Value::Null, Value::from),
    ])
}

fn address_key(id: i64, last: &str, zip: &str) -> String {
    format!("address:{}:{}:US:{zip}", sha(&format!("ada{id}")), sha(&last.to_lowercase()))
}

fn address_config(dm: &DataManager) -> GoogleDataManagerConfig {
    let mut config = config(dm);
    config.audience = AudienceFields::new()
        .first_name("first")
        .last_name("last")
        .postal_code("zip")
        .default_country("US")
        .mobile_id("device");
    config
}

async fn run(dm: &DataManager, source: &MemorySource, state: &MemoryStateStore) -> SyncReport {
    SyncJob::builder("addresses")
        .source(source.clone())
        .destination(GoogleDataManagerDestination::new(address_config(dm)).unwrap())
        .state(state.clone())
        .mode(Mode::Mirror)
        .options(options())
        .build()
        .await
        .unwrap()
        .run()
        .await
        .unwrap()
}

#[tokio::test]
async fn addresses_and_mobile_ids_go_in_requests_of_their_own_and_a_changed_address_leaves_whole() {
    let dm = DataManager::start().await;
    let source = MemorySource::new(
        schema(),
        vec![row(1, "Lovelace", "94045", Some("idfa-1")), row(2, "Byron", "10001", None), row(3, "King", "", None)],
    );
    let state = MemoryStateStore::new();
    let report = run(&dm, &source, &state).await;
    // Row 3 has no postal code: no address, and nothing else to send.
    assert_eq!(report.counts.rejected.total(), 1, "{report}");
    assert!(report.rejections[0].reason.contains("an address needs"), "{}", report.rejections[0].reason);
    let want = |keys: &[String]| keys.iter().cloned().collect::<std::collections::BTreeSet<_>>();
    assert_eq!(
        dm.audience(LIST_ID),
        want(&[address_key(1, "Lovelace", "94045"), address_key(2, "Byron", "10001"), "mobile:idfa-1".to_owned()])
    );
    let ingests = dm.bodies("ingest");
    assert_eq!(ingests.len(), 2, "user data and mobile data apart");
    let kinds = |body: &Json| -> Vec<String> {
        body["audienceMembers"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|m| m.as_object().unwrap().keys().cloned())
            .collect()
    };
    assert!(kinds(&ingests[0]).iter().all(|k| k == "userData" || k == "consent"), "{}", ingests[0]);
    assert!(kinds(&ingests[1]).iter().all(|k| k == "mobileData" || k == "consent"), "{}", ingests[1]);
    assert_eq!(ingests[1].get("encoding"), None, "no encoding for mobile ids");

    // Member 1 moves: only the postal code changed, and the old address leaves whole.
    source.upsert(row(1, "Lovelace", "94046", Some("idfa-1")));
    source.remove(&Key::from_values(&[Value::Int(2)]));
    let report = run(&dm, &source, &state).await;
    assert_eq!(report.status, RunStatus::CompletedWithRejections, "{report}");
    assert_eq!(dm.audience(LIST_ID), want(&[address_key(1, "Lovelace", "94046"), "mobile:idfa-1".to_owned()]));
    dm.assert_no_violations();
}

#[tokio::test]
async fn settings_a_customer_match_list_cannot_take_are_refused_by_name() {
    let dm = DataManager::start().await;
    let mut config = config(&dm);
    config.audience = AudienceFields::new().email("email").external_id("id");
    let error = GoogleDataManagerDestination::new(config).unwrap_err().to_string();
    assert!(error.contains("`external_id`") && error.contains("remove"), "{error}");

    let mut config = super::common::config(&dm);
    config.audience = AudienceFields::new().first_name("first").last_name("last");
    let error = GoogleDataManagerDestination::new(config).unwrap_err().to_string();
    assert!(error.contains("postal_code") && error.contains("country"), "{error}");

    let error = GoogleDataManagerDestination::new(super::common::config(&dm).with_max_members_per_request(10_001))
        .unwrap_err()
        .to_string();
    assert!(error.contains("max_members_per_request"), "{error}");

    let mut config = super::common::config(&dm);
    config.user_list_id = "list-1".into();
    let error = GoogleDataManagerDestination::new(config).unwrap_err().to_string();
    assert!(error.contains("user_list_id"), "{error}");

    // A column the rows lack is named when the sync is built.
    let mut config = super::common::config(&dm);
    config.audience = AudienceFields::new().email("mail");
    let destination = GoogleDataManagerDestination::new(config).unwrap();
    let error = destination.check_schema(&super::common::schema()).unwrap_err().to_string();
    assert!(error.contains("`mail`") && error.contains("email"), "{error}");
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn a_service_account_signs_in_with_the_jwt_grant_and_the_datamanager_scope() {
    let dir = std::env::temp_dir().join(rse_core::testing::unique_id("rse_gdm_jwt"));
    std::fs::create_dir_all(&dir).unwrap();
    let keys = dir.clone();
    tokio::task::spawn_blocking(move || {
        openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "sa.pem"], &keys);
        openssl(&["rsa", "-in", "sa.pem", "-pubout", "-out", "sa.pub.pem"], &keys);
    })
    .await
    .unwrap();
    let oauth = OAuthServer::start().await;
    let email = "rse-sync@project.iam.gserviceaccount.com";
    oauth.lock().jwt = Some(JwtCheck {
        public_key: dir.join("sa.pub.pem"),
        client_id: email.to_owned(),
        username: email.to_owned(),
        audience: oauth.token_url(),
    });
    let dm = DataManager::start().await;
    let tokens = oauth.inner.clone();
    dm.trust(move |token| tokens.lock().unwrap().tokens.contains_key(token));

    // What `GoogleDataManagerConfig::service_account` builds, at this token endpoint.
    let grant = JwtBearerConfig::new(oauth.token_url(), email, email, Secret::from_file(dir.join("sa.pem")).unwrap())
        .with_audience(oauth.token_url())
        .with_scope(SCOPE);
    let mut config = config(&dm);
    config.auth = SaasAuthConfig::from(grant);
    let destination = GoogleDataManagerDestination::new(config).unwrap();
    destination.check().await.unwrap();
    let claims = oauth.lock().claims.clone();
    assert_eq!(claims[0]["scope"], SCOPE);
    assert_eq!(claims[0]["iss"], email);

    let built = GoogleDataManagerConfig::service_account(email, "-----BEGIN PRIVATE KEY-----");
    let SaasAuthConfig::JwtBearer(grant) = built else { panic!("a JWT grant") };
    assert_eq!(grant.token_url, "https://oauth2.googleapis.com/token");
    assert_eq!(
        (grant.audience.as_deref(), grant.scope.as_deref()),
        (Some("https://oauth2.googleapis.com/token"), Some(SCOPE))
    );
    dm.assert_no_violations();
    let _ = std::fs::remove_dir_all(&dir);
}
