use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value as Json, json};

use crate::salesforce_server::auth::now_secs;
use crate::salesforce_server::{Fault, SalesforceServer, ValidationRule, sign_assertion, test_key};

const V: &str = "v66.0";

/// A plain HTTP client holding a session.
pub struct Session {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

pub struct Answer {
    pub status: u16,
    pub limit_info: Option<String>,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> Json {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// The `errorCode` of a REST error envelope.
    pub fn error_code(&self) -> String {
        self.json()[0]["errorCode"].as_str().unwrap_or_default().to_owned()
    }
}

pub fn claims(server: &SalesforceServer) -> Json {
    let org = server.lock();
    json!({"iss": org.consumer_key, "sub": org.username, "aud": org.audience, "exp": now_secs() + 120})
}

pub async fn token_request(server: &SalesforceServer, form: &[(&str, &str)]) -> Answer {
    let response =
        reqwest::Client::new().post(format!("{}/services/oauth2/token", server.url())).form(form).send().await.unwrap();
    answer(response).await
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let limit_info = response.headers().get("sforce-limit-info").map(|v| v.to_str().unwrap().to_owned());
    Answer { status, limit_info, text: response.text().await.unwrap() }
}

/// Signs in with the JWT bearer flow.
pub async fn login(server: &SalesforceServer) -> Session {
    let assertion = sign_assertion(test_key(), &claims(server));
    let answer = token_request(
        server,
        &[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", &assertion)],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let body = answer.json();
    Session {
        http: reqwest::Client::new(),
        base: body["instance_url"].as_str().unwrap().to_owned(),
        token: body["access_token"].as_str().unwrap().to_owned(),
    }
}

impl Session {
    pub async fn send(&self, method: reqwest::Method, path: &str, content_type: &str, body: Vec<u8>) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if !content_type.is_empty() {
            request = request.header("content-type", content_type).body(body);
        }
        answer(request.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(reqwest::Method::GET, path, "", Vec::new()).await
    }

    pub async fn json(&self, method: reqwest::Method, path: &str, body: &Json) -> Answer {
        self.send(method, path, "application/json", body.to_string().into_bytes()).await
    }

    /// Upserts Contacts by `Rse_Ext_Id__c`.
    pub async fn upsert(&self, records: Vec<Json>, all_or_none: bool) -> Answer {
        let path = format!("/services/data/{V}/composite/sobjects/Contact/Rse_Ext_Id__c");
        self.json(reqwest::Method::PATCH, &path, &json!({"allOrNone": all_or_none, "records": records})).await
    }

    pub async fn delete(&self, ids: &[&str], all_or_none: bool) -> Answer {
        let path = format!("/services/data/{V}/composite/sobjects?ids={}&allOrNone={all_or_none}", ids.join(","));
        self.send(reqwest::Method::DELETE, &path, "", Vec::new()).await
    }
}

pub fn contact(ext: &str, last_name: &str) -> Json {
    json!({"attributes": {"type": "Contact"}, "Rse_Ext_Id__c": ext, "LastName": last_name})
}

#[tokio::test]
async fn the_jwt_bearer_grant_checks_signature_and_claims() {
    let server = SalesforceServer::start().await;
    let grant = "urn:ietf:params:oauth:grant-type:jwt-bearer";
    let good = claims(&server);
    let answer =
        token_request(&server, &[("grant_type", grant), ("assertion", &sign_assertion(test_key(), &good))]).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let body = answer.json();
    assert_eq!(body["instance_url"], json!(server.url()));
    assert_eq!(body["token_type"], json!("Bearer"));
    for field in ["access_token", "id", "issued_at", "signature"] {
        assert!(body[field].as_str().is_some_and(|v| !v.is_empty()), "{field} in {body}");
    }

    // A signature over other claims does not verify.
    let assertion = sign_assertion(test_key(), &good);
    let mut parts: Vec<&str> = assertion.split('.').collect();
    let other = sign_assertion(test_key(), &json!({"iss": "someone else"}));
    parts[1] = other.split('.').nth(1).unwrap();
    let forged = parts.join(".");
    let refused: Vec<(Json, &str)> = vec![
        (json!({"exp": now_secs() - 5}), "invalid_grant"),
        (json!({"exp": now_secs() + 3_600}), "invalid_grant"),
        (json!({"aud": "https://login.salesforce.com"}), "invalid_grant"),
        (json!({"sub": "nobody@example.com"}), "invalid_grant"),
        (json!({"iss": "another-app"}), "invalid_client_id"),
    ];
    for (change, error) in refused {
        let mut claims = good.clone();
        claims.as_object_mut().unwrap().extend(change.as_object().unwrap().clone());
        let answer =
            token_request(&server, &[("grant_type", grant), ("assertion", &sign_assertion(test_key(), &claims))]).await;
        assert_eq!(answer.status, 400, "{claims}");
        assert_eq!(answer.json()["error"], json!(error), "{claims}");
    }
    let answer = token_request(&server, &[("grant_type", grant), ("assertion", &forged)]).await;
    assert_eq!((answer.status, answer.json()["error"].clone()), (400, json!("invalid_grant")));
    assert_eq!(server.lock().token_requests, 7);
    assert_eq!(server.lock().tokens.len(), 1, "only the good assertion earned a token");
}

#[tokio::test]
async fn the_refresh_token_grant_needs_a_known_token_and_client() {
    let server = SalesforceServer::start().await;
    server.add_refresh_token("5Aep861-refresh");
    let key = server.lock().consumer_key.clone();
    let ok = token_request(
        &server,
        &[("grant_type", "refresh_token"), ("client_id", &key), ("refresh_token", "5Aep861-refresh")],
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.json()["instance_url"], json!(server.url()));
    let stale =
        token_request(&server, &[("grant_type", "refresh_token"), ("client_id", &key), ("refresh_token", "old")]).await;
    assert_eq!((stale.status, stale.json()["error"].clone()), (400, json!("invalid_grant")));
    let stranger = token_request(
        &server,
        &[("grant_type", "refresh_token"), ("client_id", "x"), ("refresh_token", "5Aep861-refresh")],
    )
    .await;
    assert_eq!(stranger.json()["error"], json!("invalid_client_id"));
    assert_eq!(server.lock().refresh_grants, 3);
}

#[tokio::test]
async fn an_expired_session_answers_401_until_a_new_token_is_fetched() {
    let server = SalesforceServer::start().await;
    let session = login(&server).await;
    server.expire_tokens_after(1);
    assert_eq!(session.upsert(vec![contact("e-1", "Lovelace")], false).await.status, 200);
    let expired = session.upsert(vec![contact("e-2", "Hopper")], false).await;
    assert_eq!(expired.status, 401);
    assert_eq!(expired.json(), json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]));
    assert!(server.lock().record_by_ext("Contact", "Rse_Ext_Id__c", "e-2").is_none());
    let fresh = login(&server).await;
    assert_eq!(fresh.upsert(vec![contact("e-2", "Hopper")], false).await.status, 200);
    assert_eq!(session.get(&format!("/services/data/{V}/limits")).await.status, 401, "the old token stays dead");
}

#[tokio::test]
async fn upsert_creates_then_updates_by_external_id_and_answers_in_order() {
    let server = SalesforceServer::start().await;
    let session = login(&server).await;
    let first = session.upsert(vec![contact("u-1", "Lovelace"), contact("u-2", "Hopper")], false).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.limit_info.as_deref(), Some("api-usage=1/100000"));
    let first = first.json();
    let id1 = first[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(id1.len(), 18);
    assert!(id1.starts_with("003"), "Contact ids start with 003: {id1}");
    assert_eq!(first[0]["created"], json!(true));
    assert_eq!(first[0]["success"], json!(true));
    assert_eq!(first[0]["errors"], json!([]));

    let mut update = contact("u-1", "Byron");
    update["Score__c"] = json!(9.5);
    let second = session.upsert(vec![contact("u-3", "Turing"), update], false).await;
    assert_eq!(second.limit_info.as_deref(), Some("api-usage=2/100000"));
    let second = second.json();
    assert_eq!(second[0]["created"], json!(true), "results come in input order");
    assert_eq!((second[1]["id"].as_str(), second[1]["created"].clone()), (Some(id1.as_str()), json!(false)));

    let org = server.lock();
    assert_eq!(org.count("Contact"), 3);
    let held = org.record_by_ext("Contact", "Rse_Ext_Id__c", "u-1").unwrap();
    assert_eq!((held.fields["LastName"].clone(), held.fields["Score__c"].clone()), (json!("Byron"), json!(9.5)));
    assert_eq!(org.creations_of("Contact", "Rse_Ext_Id__c", "u-1"), 1);
    assert_eq!(org.versions.iter().cloned().collect::<Vec<_>>(), vec![V.to_owned()]);
}

#[tokio::test]
async fn upsert_refuses_malformed_requests_as_a_whole() {
    let server = SalesforceServer::start().await;
    let session = login(&server).await;
    let too_many: Vec<Json> = (0..201).map(|i| contact(&format!("m-{i}"), "X")).collect();
    let mut with_id = contact("m-1", "X");
    with_id["Id"] = json!("003000000000001AAA");
    let mut other_type = contact("m-1", "X");
    other_type["attributes"]["type"] = json!("Account");
    let mut untyped = contact("m-1", "X");
    untyped.as_object_mut().unwrap().remove("attributes");
    let mut wrong_json_type = contact("m-1", "X");
    wrong_json_type["Score__c"] = json!("high");
    let cases = [
        (too_many, "EXCEEDED_ID_LIMIT"),
        (vec![with_id], "INVALID_FIELD"),
        (vec![other_type], "INVALID_TYPE"),
        (vec![untyped], "INVALID_TYPE"),
        (vec![wrong_json_type], "JSON_PARSER_ERROR"),
    ];
    for (records, code) in cases {
        let answer = session.upsert(records, false).await;
        assert_eq!((answer.status, answer.error_code()), (400, code.to_owned()), "{}", answer.text);
    }
    let not_json = session
        .send(
            reqwest::Method::PATCH,
            &format!("/services/data/{V}/composite/sobjects/Contact/Rse_Ext_Id__c"),
            "application/json",
            b"{records:".to_vec(),
        )
        .await;
    assert_eq!((not_json.status, not_json.error_code()), (400, "JSON_PARSER_ERROR".to_owned()));
    let not_external = session
        .json(
            reqwest::Method::PATCH,
            &format!("/services/data/{V}/composite/sobjects/Contact/Email"),
            &json!({"records": []}),
        )
        .await;
    assert_eq!(not_external.status, 404);
    let old_version = session
        .json(
            reqwest::Method::PATCH,
            "/services/data/v45.0/composite/sobjects/Contact/Rse_Ext_Id__c",
            &json!({"records": []}),
        )
        .await;
    assert_eq!(old_version.status, 404, "upsert by external id needs API 46.0");
    assert_eq!(server.lock().count("Contact"), 0);
}

#[tokio::test]
async fn upsert_reports_per_record_errors_and_honours_all_or_none() {
    let server = SalesforceServer::start().await;
    server.set_validation(Some(ValidationRule {
        field: "Email".to_owned(),
        message: "Email must be a company address".to_owned(),
        refuses: Arc::new(|r| r.get("Email").and_then(Json::as_str).is_some_and(|e| e.ends_with("@gmail.com"))),
    }));
    let session = login(&server).await;
    let mut refused = contact("r-3", "Curie");
    refused["Email"] = json!("marie@gmail.com");
    let mut unknown = contact("r-4", "Noether");
    unknown["Shoe_Size__c"] = json!(38);
    let nameless = json!({"attributes": {"type": "Contact"}, "Rse_Ext_Id__c": "r-5"});
    let mut read_only = contact("r-6", "Franklin");
    read_only["CreatedDate"] = json!("2020-01-01T00:00:00Z");
    let records = vec![
        contact("r-1", "Lovelace"),
        contact("r-2", "A"),
        contact("r-2", "B"),
        refused,
        unknown,
        nameless,
        read_only,
    ];

    let rolled_back = session.upsert(records.clone(), true).await.json();
    assert_eq!(rolled_back[0]["errors"][0]["statusCode"], json!("ALL_OR_NONE_OPERATION_ROLLED_BACK"));
    assert_eq!(server.lock().count("Contact"), 0, "allOrNone: nothing is written");

    let results = session.upsert(records, false).await.json();
    let codes: Vec<&str> =
        results.as_array().unwrap().iter().map(|r| r["errors"][0]["statusCode"].as_str().unwrap_or("ok")).collect();
    assert_eq!(
        codes,
        [
            "ok",
            "DUPLICATE_EXTERNAL_ID",
            "DUPLICATE_EXTERNAL_ID",
            "FIELD_CUSTOM_VALIDATION_EXCEPTION",
            "INVALID_FIELD",
            "REQUIRED_FIELD_MISSING",
            "INVALID_FIELD_FOR_INSERT_UPDATE"
        ]
    );
    assert_eq!(results[3]["errors"][0]["fields"], json!(["Email"]));
    assert_eq!(results[3]["errors"][0]["message"], json!("Email must be a company address"));
    assert_eq!(results[3]["success"], json!(false));
    assert_eq!(server.lock().count("Contact"), 1);

    server.set_validation(None);
    let mut lifted = contact("r-3", "Curie");
    lifted["Email"] = json!("marie@gmail.com");
    assert_eq!(session.upsert(vec![lifted], false).await.json()[0]["created"], json!(true));
}

#[tokio::test]
async fn delete_reports_each_id_in_order() {
    let server = SalesforceServer::start().await;
    let session = login(&server).await;
    let made = session.upsert(vec![contact("d-1", "A"), contact("d-2", "B")], false).await.json();
    let (id1, id2) = (made[0]["id"].as_str().unwrap(), made[1]["id"].as_str().unwrap());
    let first = session.delete(&[id1], false).await.json();
    assert_eq!(first, json!([{"id": id1, "success": true, "errors": []}]));
    let unknown = "003000000000000AAA";
    let answer = session.delete(&[id1, "nonsense", unknown, id2], false).await.json();
    let codes: Vec<&str> =
        answer.as_array().unwrap().iter().map(|r| r["errors"][0]["statusCode"].as_str().unwrap_or("ok")).collect();
    assert_eq!(codes, ["ENTITY_IS_DELETED", "MALFORMED_ID", "INVALID_CROSS_REFERENCE_KEY", "ok"]);
    assert_eq!(server.lock().count("Contact"), 0);
    let too_many: Vec<String> = (0..201).map(|_| id1.to_owned()).collect();
    let refs: Vec<&str> = too_many.iter().map(String::as_str).collect();
    assert_eq!(session.delete(&refs, false).await.status, 400);
}

#[tokio::test]
async fn a_record_is_read_by_its_external_id() {
    let server = SalesforceServer::start().await;
    let session = login(&server).await;
    let made = session.upsert(vec![contact("r-1", "Ada"), contact("r-2", "Bob")], false).await.json();
    let (id1, id2) = (made[0]["id"].as_str().unwrap(), made[1]["id"].as_str().unwrap());
    let path = |field: &str, value: &str| format!("/services/data/{V}/sobjects/Contact/{field}/{value}");
    let found = session.get(&path("Rse_Ext_Id__c", "r-1")).await;
    assert_eq!(found.status, 200, "{}", found.text);
    let body = found.json();
    assert_eq!(
        body["attributes"],
        json!({"type": "Contact", "url": format!("/services/data/{V}/sobjects/Contact/{id1}")})
    );
    assert_eq!((&body["Id"], &body["LastName"], &body["Rse_Ext_Id__c"]), (&json!(id1), &json!("Ada"), &json!("r-1")));

    let none = json!([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]);
    let unknown = session.get(&path("Rse_Ext_Id__c", "r-3")).await;
    assert_eq!((unknown.status, unknown.json()), (404, none.clone()));
    session.delete(&[id1], false).await;
    let deleted = session.get(&path("Rse_Ext_Id__c", "r-1")).await;
    assert_eq!((deleted.status, deleted.json()), (404, none));
    let not_external = session.get(&path("Email", "r-2")).await;
    assert_eq!((not_external.status, not_external.error_code()), (404, "NOT_FOUND".to_owned()));

    // Two records holding one value: 300 and the records' URLs.
    let copy = server.lock().duplicate(id2);
    let several = session.get(&path("Rse_Ext_Id__c", "r-2")).await;
    assert_eq!(several.status, 300, "{}", several.text);
    let mut urls: Vec<String> =
        several.json().as_array().unwrap().iter().map(|u| u.as_str().unwrap().to_owned()).collect();
    urls.sort();
    let mut want: Vec<String> =
        [id2, copy.as_str()].iter().map(|id| format!("/services/data/{V}/sobjects/Contact/{id}")).collect();
    want.sort();
    assert_eq!(urls, want);
    assert_eq!(server.lock().ext_lookups, 5);
}

#[tokio::test]
async fn describe_names_the_fields_a_connector_checks() {
    let server = SalesforceServer::start().await;
    let session = login(&server).await;
    let described = session.get(&format!("/services/data/{V}/sobjects/Contact/describe")).await.json();
    let field = |name: &str| described["fields"].as_array().unwrap().iter().find(|f| f["name"] == json!(name)).cloned();
    assert_eq!(field("Rse_Ext_Id__c").unwrap()["externalId"], json!(true));
    assert_eq!(field("CreatedDate").unwrap()["createable"], json!(false));
    assert_eq!(field("Score__c").unwrap()["type"], json!("double"));
    assert!(field("Shoe_Size__c").is_none());
    assert_eq!(session.get(&format!("/services/data/{V}/sobjects/Widget__c/describe")).await.status, 404);
}

#[tokio::test]
async fn limits_faults_and_the_daily_allowance() {
    let server = SalesforceServer::start().await;
    let session = login(&server).await;
    server.set_daily_allowance(10, 8);
    server.push_fault(Fault::Unavailable);
    let unavailable = session.upsert(vec![contact("l-1", "A")], false).await;
    assert_eq!((unavailable.status, unavailable.limit_info.as_deref()), (503, Some("api-usage=8/10")));
    assert_eq!(session.upsert(vec![contact("l-1", "A")], false).await.limit_info.as_deref(), Some("api-usage=9/10"));
    assert_eq!(session.upsert(vec![contact("l-2", "B")], false).await.status, 200);
    let spent = session.upsert(vec![contact("l-3", "C")], false).await;
    assert_eq!(spent.status, 403);
    assert_eq!(
        spent.json(),
        json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    );
    assert_eq!(spent.limit_info.as_deref(), Some("api-usage=10/10"));
    assert!(server.lock().record_by_ext("Contact", "Rse_Ext_Id__c", "l-3").is_none());

    server.set_daily_allowance(1_000, 0);
    server.fault_on("PATCH", Fault::LoseAck);
    let lost = session.upsert(vec![contact("l-4", "D")], false).await;
    assert_eq!(lost.status, 503);
    assert!(server.lock().record_by_ext("Contact", "Rse_Ext_Id__c", "l-4").is_some(), "applied, answer lost");

    {
        let mut org = server.lock();
        org.concurrency_cap = Some(1);
        org.hold = Some(Duration::from_millis(300));
    }
    let (a, b) = tokio::join!(session.upsert(vec![contact("l-5", "E")], false), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        session.upsert(vec![contact("l-6", "F")], false).await
    });
    assert_eq!(a.status, 200);
    assert_eq!(b.status, 403);
    assert_eq!(b.error_code(), "REQUEST_LIMIT_EXCEEDED");
    assert!(b.json()[0]["message"].as_str().unwrap().starts_with("ConcurrentRequests"));
}
