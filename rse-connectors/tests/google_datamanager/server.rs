//! The Data Manager contract server, driven with plain HTTP: it checks every body against
//! the contract and behaves as the protos and Google's documentation say (SOURCE.md,
//! saas-contracts.md §3b and §8).

use std::time::{Duration, SystemTime};

use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use crate::datamanager_server::contracts::{SchemaFile, contracts_dir};
use crate::datamanager_server::{
    DataManager, Fault, LIST_ID, LOGIN_ACCOUNT, OPERATING_ACCOUNT, QuotaKind, SCHEMA, TOKEN, Validity, wire,
};

struct Answer {
    status: u16,
    body: Json,
}

async fn send(
    dm: &DataManager,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Json>,
) -> Answer {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", dm.base_url()));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Json::Null);
    Answer { status, body }
}

async fn post(dm: &DataManager, method: &str, body: Json) -> Answer {
    send(dm, reqwest::Method::POST, &format!("/v1/audienceMembers:{method}"), Some(TOKEN), Some(body)).await
}

async fn status(dm: &DataManager, request_id: &str) -> Answer {
    let path = format!("/v1/requestStatus:retrieve?requestId={request_id}");
    send(dm, reqwest::Method::GET, &path, Some(TOKEN), None).await
}

fn sha(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn destination() -> Json {
    json!({"operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": OPERATING_ACCOUNT},
           "loginAccount": {"accountType": "GOOGLE_ADS", "accountId": LOGIN_ACCOUNT},
           "productDestinationId": LIST_ID})
}

fn email_member(email: &str) -> Json {
    json!({"userData": {"userIdentifiers": [{"emailAddress": sha(email)}]}})
}

fn ingest_body(members: Vec<Json>) -> Json {
    json!({"destinations": [destination()], "audienceMembers": members, "encoding": "HEX",
           "termsOfService": {"customerMatchTermsOfServiceStatus": "ACCEPTED"},
           "consent": {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"}})
}

fn remove_body(members: Vec<Json>) -> Json {
    json!({"destinations": [destination()], "audienceMembers": members, "encoding": "HEX"})
}

fn key(email: &str) -> String {
    format!("email:{}", sha(email))
}

fn reason(a: &Answer) -> String {
    let details = a.body["error"]["details"].as_array().cloned().unwrap_or_default();
    details.iter().find(|d| d["@type"] == wire::ERROR_INFO).map(|d| d["reason"].as_str().unwrap().to_owned()).unwrap()
}

fn field_violations(a: &Answer) -> Vec<(String, String)> {
    let details = a.body["error"]["details"].as_array().cloned().unwrap_or_default();
    let bad = details.iter().find(|d| d["@type"] == wire::BAD_REQUEST).cloned().unwrap_or(Json::Null);
    bad["fieldViolations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| (v["field"].as_str().unwrap().to_owned(), v["reason"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn the_contract_examples_validate_and_the_example_ingest_is_accepted() {
    let file = SchemaFile::get(SCHEMA);
    let example = |name: &str| -> Json {
        let path = contracts_dir().join("google/examples").join(name);
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    for (name, root) in [
        ("datamanager.ingest.request.json", "IngestAudienceMembersRequest"),
        ("datamanager.ingest.response.json", "IngestAudienceMembersResponse"),
        ("datamanager.requestStatus.response.json", "RetrieveRequestStatusResponse"),
        ("datamanager.error.invalid_argument.json", "GoogleRestErrorResponse"),
        ("datamanager.error.resource_exhausted.json", "GoogleRestErrorResponse"),
    ] {
        assert_eq!(file.violations(root, &example(name)), Vec::<String>::new(), "{name}");
    }
    // What the validator refuses: a snake_case name, a member without data.
    let mut bad = example("datamanager.ingest.request.json");
    bad["validate_only"] = json!(true);
    assert!(!file.violations("IngestAudienceMembersRequest", &bad).is_empty());

    let dm = DataManager::start().await;
    let a = post(&dm, "ingest", example("datamanager.ingest.request.json")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let held = dm.audience(LIST_ID);
    assert_eq!(held.len(), 3, "{held:?}");
    assert!(held.contains("email:b5fc85e55755f9e0d030a10ab4429b6b2944855f9a0d60077fe832becbc41d72"));
    assert!(held.iter().any(|k| k.starts_with("address:") && k.ends_with(":US:94045")), "{held:?}");
    dm.assert_no_violations();
}

#[tokio::test]
async fn ingest_remove_and_the_request_status_with_its_match_rate() {
    let dm = DataManager::start().await;
    dm.set_processing_polls(2);
    // 3 of 4 members are Google users: 75 % → 71–80.
    dm.add_known_users(["a@example.com", "b@example.com", "c@example.com"].map(key));
    let members: Vec<Json> = ["a", "b", "c", "d"].iter().map(|n| email_member(&format!("{n}@example.com"))).collect();
    let a = post(&dm, "ingest", ingest_body(members)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let id = a.body["requestId"].as_str().unwrap().to_owned();
    assert_eq!(dm.audience(LIST_ID).len(), 4);

    for _ in 0..2 {
        let s = status(&dm, &id).await;
        assert_eq!(s.body["requestStatusPerDestination"][0]["requestStatus"], "PROCESSING");
        assert!(s.body["requestStatusPerDestination"][0].get("errorInfo").is_none());
    }
    let s = status(&dm, &id).await;
    let per = &s.body["requestStatusPerDestination"][0];
    assert_eq!(per["requestStatus"], "SUCCESS", "{}", s.body);
    assert_eq!(per["destination"]["productDestinationId"], LIST_ID);
    let ingested = &per["audienceMembersIngestionStatus"]["userDataIngestionStatus"];
    assert_eq!(ingested["recordCount"], "4");
    assert_eq!(ingested["userIdentifierCount"], "4");
    assert_eq!(ingested["uploadMatchRateRange"], "MATCH_RATE_RANGE_71_TO_80");

    let a = post(&dm, "remove", remove_body(vec![email_member("a@example.com"), email_member("z@example.com")])).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(!dm.audience(LIST_ID).contains(&key("a@example.com")));
    assert_eq!(dm.audience(LIST_ID).len(), 3, "removing an identifier the list lacks changes nothing");
    let id = a.body["requestId"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        status(&dm, &id).await;
    }
    let s = status(&dm, &id).await;
    let removed = &s.body["requestStatusPerDestination"][0]["audienceMembersRemovalStatus"]["userDataRemovalStatus"];
    assert_eq!(removed["recordCount"], "2", "{}", s.body);

    // validateOnly: checked, not applied, and its id cannot be retrieved.
    let mut body = ingest_body(vec![email_member("v@example.com")]);
    body["validateOnly"] = json!(true);
    let a = post(&dm, "ingest", body).await;
    assert_eq!(a.status, 200);
    assert!(!dm.audience(LIST_ID).contains(&key("v@example.com")));
    let s = status(&dm, a.body["requestId"].as_str().unwrap()).await;
    assert_eq!((s.status, reason(&s)), (400, "INVALID_REQUEST_ID".to_owned()));
    dm.assert_no_violations();
}

#[tokio::test]
async fn digests_are_checked_and_the_refusal_names_each_member() {
    let dm = DataManager::start().await;
    let mut members: Vec<Json> = (0..4).map(|i| email_member(&format!("m{i}@example.com"))).collect();
    members[1] = json!({"userData": {"userIdentifiers": [{"emailAddress": "not-hex!"}]}});
    members[3] = json!({"userData": {"userIdentifiers": [
        {"emailAddress": sha("x@example.com")}, {"phoneNumber": sha("+15551234567").to_uppercase()}]}});
    let a = post(&dm, "ingest", ingest_body(members)).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(reason(&a), "INVALID_HEX_ENCODING");
    assert_eq!(
        field_violations(&a),
        vec![
            ("audience_members[1].user_data.user_identifiers[0].email_address".into(), "INVALID_HEX_ENCODING".into()),
            ("audience_members[3].user_data.user_identifiers[1].phone_number".into(), "INVALID_SHA256_FORMAT".into()),
        ]
    );
    assert!(dm.audience(LIST_ID).is_empty(), "a refused request applies nothing");
    let v = dm.violations();
    assert_eq!(v.len(), 1, "{v:#?}");
    assert!(v[0].contains("INVALID_HEX_ENCODING"), "{v:#?}");
}

#[tokio::test]
async fn the_rules_of_the_protos_prose() {
    let dm = DataManager::start().await;
    // Terms of Service not accepted.
    let mut body = ingest_body(vec![email_member("a@example.com")]);
    body["termsOfService"]["customerMatchTermsOfServiceStatus"] = json!("REJECTED");
    assert_eq!(reason(&post(&dm, "ingest", body).await), "TERMS_AND_CONDITIONS_NOT_SIGNED");
    // No encoding (the schema requires it for UserData too).
    let mut body = ingest_body(vec![email_member("a@example.com")]);
    body.as_object_mut().unwrap().remove("encoding");
    assert_eq!(reason(&post(&dm, "ingest", body).await), "REQUIRED_FIELD_MISSING");
    // Two data types in one request.
    let body = ingest_body(vec![email_member("a@example.com"), json!({"mobileData": {"mobileIds": ["idfa-1"]}})]);
    assert_eq!(reason(&post(&dm, "ingest", body).await), "MULTIPLE_DATA_TYPES_NOT_ALLOWED");
    // Eleven identifiers in one member.
    let ids: Vec<Json> = (0..11).map(|i| json!({"emailAddress": sha(&format!("{i}@example.com"))})).collect();
    let body = ingest_body(vec![json!({"userData": {"userIdentifiers": ids}})]);
    assert_eq!(reason(&post(&dm, "ingest", body).await), "TOO_MANY_USER_IDENTIFIERS");
    // 10,001 members.
    let many: Vec<Json> = (0..10_001).map(|i| email_member(&format!("{i}@example.com"))).collect();
    assert_eq!(reason(&post(&dm, "ingest", ingest_body(many)).await), "TOO_MANY_AUDIENCE_MEMBERS");
    assert!(dm.audience(LIST_ID).is_empty());
    let v = dm.violations();
    for expected in [
        "TERMS_AND_CONDITIONS_NOT_SIGNED",
        "REQUIRED_FIELD_MISSING",
        "MULTIPLE_DATA_TYPES_NOT_ALLOWED",
        "TOO_MANY_USER_IDENTIFIERS",
        "TOO_MANY_AUDIENCE_MEMBERS",
    ] {
        assert!(v.iter().any(|v| v.contains(expected)), "{expected} is recorded: {v:#?}");
    }
    dm.lock().violations.clear();

    // What a correct client may still be refused for is not recorded as its fault.
    let address = |postal: &str| {
        json!({"userData": {"userIdentifiers": [{"address": {"givenName": sha("ada"), "familyName": sha("lovelace"),
                                                              "regionCode": "US", "postalCode": postal}}]}})
    };
    let a = post(&dm, "ingest", ingest_body(vec![address("94045"), address("9404")])).await;
    assert_eq!(reason(&a), "INVALID_POSTAL_CODE");
    assert_eq!(field_violations(&a)[0].0, "audience_members[1].user_data.user_identifiers[0].address.postal_code");
    let mut body = ingest_body(vec![email_member("a@example.com")]);
    body["destinations"][0]["productDestinationId"] = json!("404");
    let a = post(&dm, "ingest", body).await;
    assert_eq!(
        (reason(&a), field_violations(&a)[0].0.as_str()),
        ("INVALID_USER_LIST_ID".into(), "destinations[0].product_destination_id")
    );
    let mut body = ingest_body(vec![email_member("a@example.com")]);
    body["destinations"][0]["operatingAccount"]["accountId"] = json!("5555555555");
    let a = post(&dm, "ingest", body).await;
    assert_eq!((a.status, a.body["error"]["status"].as_str()), (403, Some("PERMISSION_DENIED")));
    dm.refuse_identifier(&key("refused@example.com"), "INVALID_FORMAT");
    let a = post(&dm, "ingest", ingest_body(vec![email_member("ok@example.com"), email_member("refused@example.com")]))
        .await;
    assert_eq!(
        field_violations(&a),
        vec![("audience_members[1].user_data.user_identifiers[0]".into(), "INVALID_FORMAT".into())]
    );
    assert!(dm.audience(LIST_ID).is_empty());
    dm.assert_no_violations();
}

#[tokio::test]
async fn a_body_that_breaks_the_schema_is_refused_and_recorded() {
    let dm = DataManager::start().await;
    let mut body = ingest_body(vec![email_member("a@example.com")]);
    body["audience_members"] = body["audienceMembers"].take();
    body.as_object_mut().unwrap().remove("audienceMembers");
    let a = post(&dm, "ingest", body).await;
    assert_eq!((a.status, a.body["error"]["status"].as_str()), (400, Some("INVALID_ARGUMENT")));
    // An address without its postal code.
    let body = ingest_body(vec![json!({"userData": {"userIdentifiers": [{"address": {
        "givenName": sha("ada"), "familyName": sha("lovelace"), "regionCode": "US"}}]}})]);
    let a = post(&dm, "ingest", body).await;
    assert_eq!(reason(&a), "REQUIRED_FIELD_MISSING");
    let a = send(&dm, reqwest::Method::POST, "/v1/audienceMembers:upsert", Some(TOKEN), Some(json!({}))).await;
    assert_eq!(a.status, 404);
    let v = dm.violations();
    assert!(v.iter().any(|v| v.contains("audience_members")), "{v:#?}");
    assert!(v.iter().any(|v| v.contains("postalCode")), "{v:#?}");
    assert!(v.iter().any(|v| v.contains("no such endpoint")), "{v:#?}");
    assert!(dm.audience(LIST_ID).is_empty());
}

#[tokio::test]
async fn consent_denied_members_are_received_but_not_added() {
    let dm = DataManager::start().await;
    dm.set_processing_polls(0);
    let mut denied = email_member("denied@example.com");
    denied["consent"] = json!({"adUserData": "CONSENT_DENIED"});
    let a = post(&dm, "ingest", ingest_body(vec![email_member("ok@example.com"), denied])).await;
    assert_eq!(a.status, 200);
    assert_eq!(dm.audience(LIST_ID).into_iter().collect::<Vec<_>>(), vec![key("ok@example.com")]);
    assert_eq!(dm.denied_consent(), 1);
    let s = status(&dm, a.body["requestId"].as_str().unwrap()).await;
    let per = &s.body["requestStatusPerDestination"][0];
    assert_eq!(per["requestStatus"], "PARTIAL_SUCCESS");
    assert_eq!(
        per["errorInfo"]["errorCounts"][0],
        json!({"recordCount": "1", "reason": "PROCESSING_ERROR_REASON_DENIED_CONSENT"})
    );
    dm.assert_no_violations();
}

#[tokio::test]
async fn remove_all_as_of_a_time_keeps_what_was_added_since() {
    let dm = DataManager::start().await;
    post(&dm, "ingest", ingest_body(vec![email_member("old@example.com"), email_member("again@example.com")])).await;
    std::thread::sleep(Duration::from_millis(5));
    let as_of = SystemTime::now();
    std::thread::sleep(Duration::from_millis(5));
    post(&dm, "ingest", ingest_body(vec![email_member("new@example.com"), email_member("again@example.com")])).await;
    let a =
        post(&dm, "removeAll", json!({"destinations": [destination()], "removeAsOfTime": wire::rfc3339(as_of)})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        dm.audience(LIST_ID).into_iter().collect::<Vec<_>>(),
        {
            let mut v = vec![key("new@example.com"), key("again@example.com")];
            v.sort();
            v
        },
        "members last added before the time go; one added again since stays"
    );
    let future = wire::rfc3339(SystemTime::now() + Duration::from_secs(3600));
    let a = post(&dm, "removeAll", json!({"destinations": [destination()], "removeAsOfTime": future})).await;
    assert_eq!(reason(&a), "INVALID_REMOVE_AS_OF_TIME");
    let a = post(&dm, "removeAll", json!({"destinations": [destination()]})).await;
    assert_eq!(a.status, 200);
    assert!(dm.audience(LIST_ID).is_empty());
    let s = status(&dm, a.body["requestId"].as_str().unwrap()).await;
    status(&dm, a.body["requestId"].as_str().unwrap()).await;
    assert_eq!(s.body["requestStatusPerDestination"][0]["requestStatus"], "PROCESSING");
    dm.assert_no_violations();
}

#[tokio::test]
async fn mobile_ids_and_base64_digests() {
    let dm = DataManager::start().await;
    dm.set_processing_polls(0);
    let a = post(&dm, "ingest", ingest_body(vec![json!({"mobileData": {"mobileIds": ["idfa-1", "aaid-2"]}})])).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let s = status(&dm, a.body["requestId"].as_str().unwrap()).await;
    let mobile =
        &s.body["requestStatusPerDestination"][0]["audienceMembersIngestionStatus"]["mobileDataIngestionStatus"];
    assert_eq!(mobile["mobileIdCount"], "2");
    let digest = Sha256::digest(b"b64@example.com");
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, digest);
    let mut body = ingest_body(vec![json!({"userData": {"userIdentifiers": [{"emailAddress": b64}]}})]);
    body["encoding"] = json!("BASE64");
    assert_eq!(post(&dm, "ingest", body).await.status, 200);
    let held = dm.audience(LIST_ID);
    assert!(held.contains("mobile:idfa-1") && held.contains(&key("b64@example.com")), "{held:?}");
    dm.assert_no_violations();
}

#[tokio::test]
async fn tokens_scopes_and_accounts() {
    let dm = DataManager::start().await;
    let body = ingest_body(vec![email_member("a@example.com")]);
    let path = "/v1/audienceMembers:ingest";
    let a = send(&dm, reqwest::Method::POST, path, None, Some(body.clone())).await;
    assert_eq!((a.status, reason(&a)), (401, "CREDENTIALS_MISSING".to_owned()));
    assert_eq!(a.body["error"]["status"], "UNAUTHENTICATED");
    dm.token_uses("short-lived", 1);
    assert_eq!(send(&dm, reqwest::Method::POST, path, Some("short-lived"), Some(body.clone())).await.status, 200);
    let a = send(&dm, reqwest::Method::POST, path, Some("short-lived"), Some(body.clone())).await;
    assert_eq!((a.status, reason(&a)), (401, "ACCESS_TOKEN_EXPIRED".to_owned()));
    dm.trust(|token| token.starts_with("issued-"));
    assert_eq!(send(&dm, reqwest::Method::POST, path, Some("issued-1"), Some(body.clone())).await.status, 200);
    dm.add_token("later", Validity::default());
    dm.set_scope_missing(true);
    let a = send(&dm, reqwest::Method::POST, path, Some("later"), Some(body)).await;
    assert_eq!((a.status, reason(&a)), (403, "ACCESS_TOKEN_SCOPE_INSUFFICIENT".to_owned()));
    dm.assert_no_violations();
}

#[tokio::test]
async fn quotas_per_minute_and_per_day() {
    let dm = DataManager::start().await;
    dm.set_per_minute(Some(2));
    dm.set_retry_info(Some(Duration::from_secs(7)));
    for _ in 0..2 {
        assert_eq!(post(&dm, "ingest", ingest_body(vec![email_member("a@example.com")])).await.status, 200);
    }
    let a = post(&dm, "ingest", ingest_body(vec![email_member("b@example.com")])).await;
    assert_eq!((a.status, a.body["error"]["status"].as_str()), (429, Some("RESOURCE_EXHAUSTED")));
    let info = &a.body["error"]["details"][0];
    assert_eq!(info["metadata"]["quota_limit"], "IngestRequestsPerMinutePerProject");
    assert!(a.body["error"]["details"].as_array().unwrap().iter().any(|d| d["retryDelay"] == "7s"));
    assert_eq!(dm.refused(QuotaKind::PerMinute), 1);
    // Status reads are not ingestion requests.
    let id = dm.log()[0].request_id.clone().unwrap();
    assert_eq!(status(&dm, &id).await.status, 200);

    dm.set_per_minute(None);
    dm.set_per_day(Some(3));
    assert_eq!(post(&dm, "ingest", ingest_body(vec![email_member("c@example.com")])).await.status, 200);
    let a = post(&dm, "ingest", ingest_body(vec![email_member("d@example.com")])).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.body["error"]["details"][0]["metadata"]["quota_limit"], "IngestRequestsPerDayPerProject");
    assert!(!dm.audience(LIST_ID).contains(&key("d@example.com")));
    dm.new_day();
    assert_eq!(post(&dm, "ingest", ingest_body(vec![email_member("d@example.com")])).await.status, 200);
    dm.assert_no_violations();
}

#[tokio::test]
async fn faults_unavailable_and_a_lost_acknowledgement() {
    let dm = DataManager::start().await;
    dm.inject(Fault::Unavailable, 1);
    let a = post(&dm, "ingest", ingest_body(vec![email_member("a@example.com")])).await;
    assert_eq!((a.status, a.body["error"]["status"].as_str()), (503, Some("UNAVAILABLE")));
    assert!(dm.audience(LIST_ID).is_empty());
    dm.inject(Fault::LoseAck, 1);
    let a = post(&dm, "ingest", ingest_body(vec![email_member("a@example.com")])).await;
    assert_eq!(a.status, 502);
    assert!(dm.audience(LIST_ID).contains(&key("a@example.com")), "applied although the answer was lost");
    dm.assert_no_violations();
}

#[tokio::test]
async fn lean_mode_counts_without_keeping_identifiers() {
    let dm = DataManager::start().await;
    dm.set_lean(true);
    let members: Vec<Json> = (0..10_000).map(|i| email_member(&format!("{i}@example.com"))).collect();
    assert_eq!(post(&dm, "ingest", ingest_body(members)).await.status, 200);
    assert_eq!(dm.audience_len(LIST_ID), 10_000);
    assert!(dm.audience(LIST_ID).is_empty());
    post(&dm, "remove", remove_body(vec![email_member("7@example.com")])).await;
    assert_eq!(dm.audience_len(LIST_ID), 9_999);
    dm.assert_no_violations();
}
