//! The Google Ads contract server, driven with plain HTTP: it checks every body against the
//! contract and behaves as Google documents (saas-contracts.md §3a and §8).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use crate::contracts::{SchemaFile, contracts_dir};
use crate::google_ads_server::{
    CUSTOMER_ID, DEVELOPER_TOKEN, Endpoint, Fault, GoogleAds, OAuthClient, Status, TOKEN, USER_LIST_ID,
};

struct Answer {
    status: u16,
    body: Json,
}

fn sha(v: &str) -> String {
    Sha256::digest(v.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

async fn post_with(ga: &GoogleAds, path: &str, body: &Json, headers: &[(&str, &str)]) -> Answer {
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", ga.base_url()))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    Answer { status, body: serde_json::from_slice(&bytes).unwrap_or(Json::Null) }
}

async fn post(ga: &GoogleAds, path: &str, body: &Json) -> Answer {
    post_with(ga, path, body, &[("authorization", &format!("Bearer {TOKEN}")), ("developer-token", DEVELOPER_TOKEN)])
        .await
}

fn create_body(ga: &GoogleAds, external_id: i64) -> Json {
    json!({"job": {"type": "CUSTOMER_MATCH_USER_LIST", "externalId": external_id.to_string(),
                   "customerMatchUserListMetadata": {"userList": ga.user_list_resource()}},
           "enableMatchRateRangePreview": true})
}

async fn create(ga: &GoogleAds, external_id: i64) -> String {
    let a =
        post(ga, &format!("/v25/customers/{CUSTOMER_ID}/offlineUserDataJobs:create"), &create_body(ga, external_id))
            .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["resourceName"].as_str().unwrap().to_owned()
}

async fn add(ga: &GoogleAds, job: &str, operations: Json, partial: bool) -> Answer {
    post(ga, &format!("/v25/{job}:addOperations"), &json!({"operations": operations, "enablePartialFailure": partial}))
        .await
}

async fn run(ga: &GoogleAds, job: &str) -> Answer {
    post(ga, &format!("/v25/{job}:run"), &json!({})).await
}

async fn search(ga: &GoogleAds, query: &str) -> Answer {
    post(ga, &format!("/v25/customers/{CUSTOMER_ID}/googleAds:search"), &json!({ "query": query })).await
}

async fn job_row(ga: &GoogleAds, job: &str) -> Json {
    let a = search(
        ga,
        &format!(
            "SELECT offline_user_data_job.status, offline_user_data_job.external_id, \
             offline_user_data_job.operation_metadata.match_rate_range FROM offline_user_data_job \
             WHERE offline_user_data_job.resource_name = '{job}'"
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["results"][0]["offlineUserDataJob"].clone()
}

fn email_op(kind: &str, email: &str) -> Json {
    json!({ kind: {"userIdentifiers": [{"hashedEmail": sha(email)}]} })
}

fn code(answer: &Answer) -> String {
    let e = &answer.body["error"]["details"][0]["errors"][0]["errorCode"];
    e.as_object().and_then(|o| o.values().next()).and_then(Json::as_str).unwrap_or("").to_owned()
}

#[tokio::test]
async fn contract_examples_validate_and_are_accepted() {
    let schema = SchemaFile::get("google/jsonschema/googleads_v25_offline_user_data_job.schema.json");
    let example = |name: &str| -> Json {
        let path = contracts_dir().join("google/examples").join(name);
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let create_example = example("googleads.create.request.json");
    let add_example = example("googleads.addOperations.request.json");
    let partial = example("googleads.addOperations.partialFailure.response.json");
    assert_eq!(schema.violations("CreateOfflineUserDataJobRequest", &create_example), Vec::<String>::new());
    assert_eq!(schema.violations("AddOfflineUserDataJobOperationsRequest", &add_example), Vec::<String>::new());
    assert_eq!(schema.violations("AddOfflineUserDataJobOperationsResponse", &partial), Vec::<String>::new());

    let ga = GoogleAds::start().await;
    let a = post(&ga, &format!("/v25/customers/{CUSTOMER_ID}/offlineUserDataJobs:create"), &create_example).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let job = a.body["resourceName"].as_str().unwrap().to_owned();
    let a = post(&ga, &format!("/v25/{job}:addOperations"), &add_example).await;
    assert_eq!((a.status, &a.body), (200, &json!({})));
    ga.set_ticks_to_finish(0);
    assert_eq!(run(&ga, &job).await.status, 200);
    assert_eq!(ga.user_list(USER_LIST_ID).len(), 3, "email, phone and address each held");
    ga.assert_no_violations();
}

#[tokio::test]
async fn a_job_runs_then_its_operations_apply_at_success() {
    let ga = GoogleAds::start().await;
    ga.set_known_users([format!("email:{}", sha("ada@example.com"))]);
    let job = create(&ga, 1).await;
    let ops = json!([
        {"create": {"userIdentifiers": [{"hashedEmail": sha("ada@example.com")}, {"hashedPhoneNumber": sha("+14155550100")}]}},
        {"create": {"userIdentifiers": [{"addressInfo": {"hashedFirstName": sha("grace"), "hashedLastName": sha("hopper"),
                                                         "countryCode": "US", "postalCode": "94045"}}]}},
        {"create": {"userIdentifiers": [{"thirdPartyUserId": "crm-17"}, {"mobileId": "6D92078A-8246-4BA4-AE5B-76104861E7DC"}]}}
    ]);
    assert_eq!(add(&ga, &job, ops, true).await.body, json!({}));
    assert_eq!(job_row(&ga, &job).await["status"], "PENDING");
    assert!(ga.user_list(USER_LIST_ID).is_empty(), "nothing applies before run");
    let op = run(&ga, &job).await;
    assert_eq!(op.body["metadata"]["matchRateRange"], "MATCH_RANGE_31_TO_40", "1 of 3 users known: 33%");
    let first = job_row(&ga, &job).await;
    assert_eq!(first["status"], "RUNNING");
    assert!(ga.user_list(USER_LIST_ID).is_empty(), "nothing applies while running");
    let second = job_row(&ga, &job).await;
    assert_eq!(second["status"], "SUCCESS");
    assert_eq!(second["externalId"], "1");
    assert_eq!(second["operationMetadata"]["matchRateRange"], "MATCH_RANGE_31_TO_40");
    let expected: BTreeSet<String> = [
        format!("email:{}", sha("ada@example.com")),
        format!("phone:{}", sha("+14155550100")),
        format!("address:{}:{}:US:94045", sha("grace"), sha("hopper")),
        "user_id:crm-17".to_owned(),
        "mobile:6D92078A-8246-4BA4-AE5B-76104861E7DC".to_owned(),
    ]
    .into();
    assert_eq!(ga.user_list(USER_LIST_ID), expected);

    // A remove job deletes identifiers; a removeAll job clears the list first.
    let job = create(&ga, 2).await;
    add(&ga, &job, json!([email_op("remove", "ada@example.com")]), true).await;
    ga.set_ticks_to_finish(0);
    run(&ga, &job).await;
    assert_eq!(ga.user_list(USER_LIST_ID).len(), 4);
    let job = create(&ga, 3).await;
    add(&ga, &job, json!([{"removeAll": true}, email_op("create", "lin@example.com")]), true).await;
    run(&ga, &job).await;
    assert_eq!(ga.user_list(USER_LIST_ID), BTreeSet::from([format!("email:{}", sha("lin@example.com"))]));
    ga.assert_no_violations();
}

#[tokio::test]
async fn partial_failure_names_operations_by_index() {
    let ga = GoogleAds::start().await;
    ga.set_ticks_to_finish(0);
    let job = create(&ga, 10).await;
    let ops = json!([
        email_op("create", "ada@example.com"),
        {"create": {"userIdentifiers": [{"hashedEmail": "ADA@EXAMPLE.COM"}]}},
        {"create": {"userIdentifiers": [{"mobileId": "not-a-device-id"}]}},
        {"create": {"userIdentifiers": [{"addressInfo": {"hashedFirstName": sha("a"), "hashedLastName": sha("b"), "countryCode": "us", "postalCode": "1"}}]}},
    ]);
    // Without partial failure the whole request fails and nothing is kept.
    let a = add(&ga, &job, ops.clone(), false).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body["error"]["details"][0]["errors"].as_array().unwrap().len(), 3);
    let a = add(&ga, &job, ops, true).await;
    assert_eq!(a.status, 200);
    let errors = a.body["partialFailureError"]["details"][0]["errors"].as_array().unwrap().clone();
    let located: Vec<(u64, String)> = errors
        .iter()
        .map(|e| {
            let index = e["location"]["fieldPathElements"][0]["index"].as_u64().unwrap();
            assert_eq!(e["location"]["fieldPathElements"][0]["fieldName"], "operations");
            (index, e["errorCode"]["offlineUserDataJobError"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(
        located,
        vec![
            (1, "INVALID_SHA256_FORMAT".to_owned()),
            (2, "INVALID_MOBILE_ID_FORMAT".to_owned()),
            (3, "INVALID_COUNTRY_CODE".to_owned())
        ]
    );
    run(&ga, &job).await;
    assert_eq!(ga.user_list(USER_LIST_ID), BTreeSet::from([format!("email:{}", sha("ada@example.com"))]));

    // A rule refuses chosen identifiers the same way.
    let refused = format!("email:{}", sha("bob@example.com"));
    ga.set_rule(move |k| (k == refused).then_some(("offlineUserDataJobError", "INCOMPATIBLE_USER_IDENTIFIER")));
    let job = create(&ga, 11).await;
    let a = add(&ga, &job, json!([email_op("create", "bob@example.com"), email_op("create", "cy@example.com")]), true)
        .await;
    assert_eq!(
        a.body["partialFailureError"]["details"][0]["errors"][0]["location"]["fieldPathElements"][0]["index"],
        0
    );
    assert_eq!(ga.refused_ops()["INCOMPATIBLE_USER_IDENTIFIER"], 1);
    ga.assert_no_violations();
}

#[tokio::test]
async fn job_rules_are_enforced() {
    let ga = GoogleAds::start().await;
    let job = create(&ga, 20).await;
    add(&ga, &job, json!([email_op("create", "a@example.com")]), true).await;
    let a = add(&ga, &job, json!([email_op("remove", "b@example.com")]), true).await;
    assert_eq!(
        a.body["partialFailureError"]["details"][0]["errors"][0]["errorCode"]["offlineUserDataJobError"],
        "CONFLICTING_OPERATION"
    );
    let a = add(&ga, &job, json!([{"removeAll": true}]), true).await;
    assert_eq!(
        a.body["partialFailureError"]["details"][0]["errors"][0]["errorCode"]["offlineUserDataJobError"],
        "INVALID_OPERATION_ORDER"
    );
    // The same external id again is refused, whatever the job's state.
    let again =
        post(&ga, &format!("/v25/customers/{CUSTOMER_ID}/offlineUserDataJobs:create"), &create_body(&ga, 20)).await;
    assert_eq!((again.status, code(&again).as_str()), (400, "EXTERNAL_UPDATE_ID_ALREADY_EXISTS"));
    assert_eq!(run(&ga, &job).await.status, 200);
    let a = add(&ga, &job, json!([email_op("create", "c@example.com")]), true).await;
    assert_eq!(code(&a), "JOB_ALREADY_STARTED");
    assert_eq!(code(&run(&ga, &job).await), "JOB_ALREADY_STARTED");
    // A second job on the list cannot run while the first runs.
    let other = create(&ga, 21).await;
    add(&ga, &other, json!([email_op("create", "d@example.com")]), true).await;
    let a = run(&ga, &other).await;
    assert_eq!((a.status, code(&a).as_str()), (409, "CONCURRENT_MODIFICATION"));
    job_row(&ga, &job).await;
    job_row(&ga, &job).await;
    assert_eq!(run(&ga, &other).await.status, 200, "runs once the first finished");
    // At most `identifiers_per_request` identifiers per call.
    ga.set_identifiers_per_request(2);
    let third = create(&ga, 22).await;
    let three = json!([email_op("create", "a@x.io"), email_op("create", "b@x.io"), email_op("create", "c@x.io")]);
    assert_eq!(code(&add(&ga, &third, three, true).await), "TOO_MANY_USER_IDENTIFIERS");
    // 21 identifiers in one operation break the contract itself.
    let many: Vec<Json> = (0..21).map(|i| json!({"hashedEmail": sha(&format!("{i}@x.io"))})).collect();
    ga.set_identifiers_per_request(100_000);
    let a = add(&ga, &third, json!([{"create": {"userIdentifiers": many}}]), true).await;
    assert_eq!(a.status, 400);
    let v = ga.take_violations();
    for expected in [
        "the other kind",
        "removeAll is not the job's first",
        "after it was run",
        "identifiers (at most 2)",
        "/operations/0/create/userIdentifiers",
    ] {
        assert!(v.iter().any(|x| x.contains(expected)), "{expected} not in {v:#?}");
    }
    assert_eq!(ga.jobs().iter().filter(|j| j.status == Status::Success).count(), 1);
    ga.assert_no_violations();
}

#[tokio::test]
async fn unknown_fields_and_bad_queries_are_violations() {
    let ga = GoogleAds::start().await;
    let mut body = create_body(&ga, 30);
    body["job"]["external_id"] = json!("30");
    let a = post(&ga, &format!("/v25/customers/{CUSTOMER_ID}/offlineUserDataJobs:create"), &body).await;
    assert_eq!(a.status, 400);
    assert!(ga.take_violations().iter().any(|v| v.contains("external_id")));
    let a = search(&ga, "SELECT offline_user_data_job.nonsense FROM offline_user_data_job").await;
    assert_eq!(a.status, 400);
    assert!(ga.take_violations().iter().any(|v| v.contains("unknown field")));
    let a = post(
        &ga,
        &format!("/v25/customers/{CUSTOMER_ID}/googleAds:search"),
        &json!({"query": "SELECT user_list.id FROM user_list", "pageSize": 10}),
    )
    .await;
    assert_eq!(code(&a), "PAGE_SIZE_NOT_SUPPORTED");
    assert_eq!(ga.take_violations().len(), 1);
    let a = search(
        &ga,
        &format!(
            "SELECT user_list.id, user_list.name FROM user_list WHERE user_list.resource_name = '{}'",
            ga.user_list_resource()
        ),
    )
    .await;
    assert_eq!(a.body["results"][0]["userList"]["id"], USER_LIST_ID);
    assert_eq!(a.body["fieldMask"], "userList.id,userList.name");
    let a = search(
        &ga,
        "SELECT offline_user_data_job.id FROM offline_user_data_job WHERE offline_user_data_job.external_id = 99",
    )
    .await;
    assert_eq!(
        a.body,
        json!({"fieldMask": "offlineUserDataJob.id", "queryResourceConsumption": "1"}),
        "no rows: no results field"
    );
    ga.assert_no_violations();
}

#[tokio::test]
async fn credentials_and_headers() {
    let ga = GoogleAds::start().await;
    let path = format!("/v25/customers/{CUSTOMER_ID}/offlineUserDataJobs:create");
    let body = create_body(&ga, 40);
    let a = post_with(&ga, &path, &body, &[("developer-token", DEVELOPER_TOKEN)]).await;
    assert_eq!((a.status, code(&a).as_str()), (401, "OAUTH_TOKEN_HEADER_INVALID"));
    let a =
        post_with(&ga, &path, &body, &[("authorization", "Bearer nope"), ("developer-token", DEVELOPER_TOKEN)]).await;
    assert_eq!((a.status, code(&a).as_str()), (401, "OAUTH_TOKEN_INVALID"));
    let a = post_with(&ga, &path, &body, &[("authorization", &format!("Bearer {TOKEN}"))]).await;
    assert_eq!(code(&a), "DEVELOPER_TOKEN_PARAMETER_MISSING");
    let a =
        post_with(&ga, &path, &body, &[("authorization", &format!("Bearer {TOKEN}")), ("developer-token", "x")]).await;
    assert_eq!((a.status, code(&a).as_str()), (401, "DEVELOPER_TOKEN_INVALID"));
    assert_eq!(ga.take_violations().len(), 2, "the missing headers are the client's fault");
    ga.require_login_customer_id("9876543210");
    assert_eq!(code(&post(&ga, &path, &body).await), "USER_PERMISSION_DENIED");
    let with_login = [
        ("authorization", format!("Bearer {TOKEN}")),
        ("developer-token", DEVELOPER_TOKEN.to_owned()),
        ("login-customer-id", "9876543210".to_owned()),
    ];
    let h: Vec<(&str, &str)> = with_login.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(post_with(&ga, &path, &body, &h).await.status, 200);
    ga.set_not_allowlisted(true);
    let a = post_with(&ga, &path, &create_body(&ga, 41), &h).await;
    assert_eq!((a.status, code(&a).as_str()), (403, "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE"));

    ga.enable_oauth_client(OAuthClient {
        client_id: "cid".into(),
        client_secret: "cs".into(),
        refresh_token: "rt".into(),
    });
    let token = |form: &'static str| {
        let url = ga.token_url();
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, serde_json::from_slice::<Json>(&r.bytes().await.unwrap()).unwrap())
        }
    };
    let (status, answer) = token("grant_type=refresh_token&client_id=cid&client_secret=cs&refresh_token=rt").await;
    assert_eq!(status, 200);
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(
        token("grant_type=refresh_token&client_id=cid&client_secret=cs&refresh_token=old").await.1["error"],
        "invalid_grant"
    );
    ga.assert_no_violations();
}

#[tokio::test]
async fn quotas_answer_resource_exhausted() {
    let ga = GoogleAds::start().await;
    ga.set_daily_operations(Some(2));
    let job = create(&ga, 50).await;
    assert_eq!(
        add(&ga, &job, json!([email_op("create", "a@x.io"), email_op("create", "b@x.io")]), true).await.status,
        200
    );
    let a = add(&ga, &job, json!([email_op("create", "c@x.io")]), true).await;
    assert_eq!((a.status, a.body["error"]["status"].as_str()), (429, Some("RESOURCE_EXHAUSTED")));
    let e = &a.body["error"]["details"][0]["errors"][0];
    assert_eq!(e["errorCode"]["quotaError"], "RESOURCE_EXHAUSTED");
    assert_eq!(e["details"]["quotaErrorDetails"]["rateScope"], "DEVELOPER");
    ga.new_day();
    assert_eq!(add(&ga, &job, json!([email_op("create", "c@x.io")]), true).await.status, 200);
    assert_eq!(ga.operations_used(), 1);

    ga.set_rate(Some((1, Duration::from_secs(3600))), Duration::from_millis(1500));
    assert_eq!(search(&ga, "SELECT user_list.id FROM user_list").await.status, 200);
    let a = search(&ga, "SELECT user_list.id FROM user_list").await;
    assert_eq!(a.status, 429);
    let e = &a.body["error"]["details"][0]["errors"][0];
    assert_eq!(e["errorCode"]["quotaError"], "RESOURCE_TEMPORARILY_EXHAUSTED");
    assert_eq!(e["details"]["quotaErrorDetails"]["retryDelay"], "1.5s");
    assert_eq!(ga.refused(), (1, 1));
    ga.assert_no_violations();
}

#[tokio::test]
async fn faults_lose_answers_fail_calls_and_fail_jobs() {
    let ga = GoogleAds::start().await;
    ga.set_ticks_to_finish(0);
    ga.inject(Endpoint::Create, Fault::LoseAck, 1);
    let a = post(&ga, &format!("/v25/customers/{CUSTOMER_ID}/offlineUserDataJobs:create"), &create_body(&ga, 60)).await;
    assert_eq!(a.status, 502);
    assert_eq!(ga.jobs().len(), 1, "the job was created although its answer was lost");
    let row = search(&ga, "SELECT offline_user_data_job.resource_name, offline_user_data_job.status FROM offline_user_data_job WHERE offline_user_data_job.external_id = 60").await;
    let job = row.body["results"][0]["offlineUserDataJob"]["resourceName"].as_str().unwrap().to_owned();
    assert_eq!(row.body["results"][0]["offlineUserDataJob"]["status"], "PENDING");

    ga.inject(Endpoint::AddOperations, Fault::ServerError, 1);
    ga.inject(Endpoint::AddOperations, Fault::Unavailable, 1);
    assert_eq!(add(&ga, &job, json!([email_op("create", "a@x.io")]), true).await.status, 500);
    assert_eq!(add(&ga, &job, json!([email_op("create", "a@x.io")]), true).await.status, 503);
    assert!(ga.jobs()[0].ops.is_empty(), "a failed call applies nothing");
    add(&ga, &job, json!([email_op("create", "a@x.io")]), true).await;
    ga.fail_next_jobs(1);
    run(&ga, &job).await;
    let row = job_row(&ga, &job).await;
    assert_eq!(row["status"], "FAILED");
    assert!(ga.user_list(USER_LIST_ID).is_empty(), "a failed job applies nothing");
    ga.assert_no_violations();
}
