//! Credentials: a service account's JWT-bearer grant and an OAuth client's refresh token,
//! each renewed mid-run; a refused token ends the run keeping every unsent change; a job
//! another writer left running is waited for.

use std::path::Path;
use std::process::Command;

use rse_connectors::google::ads::{GoogleAdsDestination, SCOPE};
use rse_connectors::saas::{JwtBearerConfig, OAuthRefreshConfig};
use rse_core::testing::unique_id;
use rse_core::*;
use serde_json::json;

use super::common::*;
use crate::google_ads_server::{CUSTOMER_ID, DEVELOPER_TOKEN, GoogleAds, OAuthClient, ServiceAccount, TOKEN};

const SERVICE_ACCOUNT: &str = "rse-sync@rse-project.iam.gserviceaccount.com";

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn a_service_account_signs_in_and_its_token_is_renewed_mid_run() {
    let dir = std::env::temp_dir().join(unique_id("rse_google_ads_sa"));
    std::fs::create_dir_all(&dir).unwrap();
    openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "sa.pem"], &dir);
    openssl(&["rsa", "-in", "sa.pem", "-pubout", "-out", "sa.pub.pem"], &dir);
    let ga = GoogleAds::start().await;
    ga.enable_service_account(ServiceAccount {
        email: SERVICE_ACCOUNT.into(),
        public_key: Some(dir.join("sa.pub.pem")),
    });
    // Each token is good for 8 calls: the run (about 25) outlives several.
    ga.set_uses_per_token(Some(8));
    let key = std::fs::read_to_string(dir.join("sa.pem")).unwrap();
    let auth = JwtBearerConfig::new(ga.token_url(), SERVICE_ACCOUNT, SERVICE_ACCOUNT, key)
        .with_audience(ga.token_url())
        .with_scope(SCOPE);
    let mut config = config(&ga);
    config.auth = auth.into();
    let segment = members(1..=500);
    let world = World::new(&segment, GoogleAdsDestination::new(config).unwrap(), options()).await;
    let report = world.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert!(ga.tokens_issued() >= 2, "the token was renewed after Google refused it");
    assert_eq!(held(&ga), expected(&segment));
    let claims = ga.lock().auth.claims.clone();
    assert!(claims.iter().all(|c| c["scope"] == SCOPE && c["iss"] == SERVICE_ACCOUNT));
    ga.assert_no_violations();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_oauth_client_s_refresh_token_works_through_a_manager_account() {
    let ga = GoogleAds::start().await;
    ga.enable_oauth_client(OAuthClient {
        client_id: "cid".into(),
        client_secret: "cs".into(),
        refresh_token: "rt".into(),
    });
    ga.require_login_customer_id("9876543210");
    let mut config = config(&ga).with_login_customer_id("987-654-3210");
    config.auth = OAuthRefreshConfig::new(ga.token_url(), "cid", "cs", "rt").with_scope(SCOPE).into();
    let segment = members(1..=60);
    let world = World::new(&segment, GoogleAdsDestination::new(config).unwrap(), options()).await;
    let report = world.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(held(&ga), expected(&segment));

    // Without the manager account Google refuses the user: the run ends, naming the setting.
    let world = World::new(&segment, destination(&ga), options()).await;
    let report = world.run().await;
    let RunStatus::Failed { kind: FailureKind::Unauthorized, reason } = &report.status else { panic!("{report}") };
    assert!(reason.contains("USER_PERMISSION_DENIED") && reason.contains("login_customer_id"), "{reason}");
    ga.assert_no_violations();
}

#[tokio::test]
async fn a_refused_static_token_ends_the_run_keeping_every_unsent_change() {
    let ga = GoogleAds::start().await;
    let segment = members(1..=300);
    let world = World::new(&segment, destination(&ga), options()).await;
    ga.expire_token(TOKEN);
    let report = world.run().await;
    let RunStatus::Failed { kind: FailureKind::Unauthorized, reason } = &report.status else { panic!("{report}") };
    assert!(reason.contains("OAUTH_TOKEN_EXPIRED"), "{reason}");
    assert_eq!(report.counts.undelivered, 300, "{report}");
    assert_eq!(report.counts.rejected.total(), 0, "a refused token refuses no member");
    ga.add_token(TOKEN, Default::default());
    let report = world.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(held(&ga), expected(&segment));
    ga.assert_no_violations();
}

#[tokio::test]
async fn a_job_another_writer_left_running_is_waited_for() {
    let ga = GoogleAds::start().await;
    ga.set_ticks_to_finish(5);
    // Another integration's job on the list, running.
    let client = reqwest::Client::new();
    let post = |path: String, body: serde_json::Value| {
        client
            .post(format!("{}{path}", ga.base_url()))
            .bearer_auth(TOKEN)
            .header("developer-token", DEVELOPER_TOKEN)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let created = post(
        format!("/v25/customers/{CUSTOMER_ID}/offlineUserDataJobs:create"),
        json!({"job": {"type": "CUSTOMER_MATCH_USER_LIST", "customerMatchUserListMetadata": {"userList": ga.user_list_resource()}}}),
    )
    .await
    .unwrap();
    let job: serde_json::Value = serde_json::from_slice(&created.bytes().await.unwrap()).unwrap();
    let job = job["resourceName"].as_str().unwrap().to_owned();
    let other = Member::new(9_999);
    let email = format!("email:{}", sha(&other.email.clone().unwrap().trim().to_lowercase()));
    post(
        format!("/v25/{job}:addOperations"),
        json!({"operations": [{"create": {"userIdentifiers": [{"hashedEmail": email.trim_start_matches("email:")}]}}]}),
    )
    .await
    .unwrap();
    assert_eq!(post(format!("/v25/{job}:run"), json!({})).await.unwrap().status(), 200);

    let segment = members(1..=30);
    let world = World::new(&segment, destination(&ga), options()).await;
    let report = world.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    let mut want = expected(&segment);
    want.insert(email);
    assert_eq!(held(&ga), want, "both jobs applied, one after the other");
    ga.assert_no_violations();
}
