//! The HubSpot contract server, driven with plain HTTP: it checks every body against the
//! contract and behaves as HubSpot documents (saas-contracts.md §1 and §8).

use std::time::Duration;

use crate::hubspot_server::{self, Fault, HubSpot, OAuthApp, Policy, PropertyDef, TOKEN};
use reqwest::header::HeaderMap;
use serde_json::{Value as Json, json};

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Json,
}

async fn send(hs: &HubSpot, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Json>) -> Answer {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", hs.base_url()));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    let body = if bytes.is_empty() { Json::Null } else { serde_json::from_slice(&bytes).unwrap_or(Json::Null) };
    Answer { status, headers, body }
}

async fn upsert(hs: &HubSpot, version: &str, object: &str, inputs: Json) -> Answer {
    let path = match version {
        "v3" => format!("/crm/v3/objects/{object}/batch/upsert"),
        v => format!("/crm/objects/{v}/{object}/batch/upsert"),
    };
    send(hs, reqwest::Method::POST, &path, Some(TOKEN), Some(json!({ "inputs": inputs }))).await
}

fn contact(email: &str, first: &str, trace: Option<&str>) -> Json {
    let mut input = json!({"idProperty": "email", "id": email, "properties": {"email": email, "firstname": first}});
    if let Some(t) = trace {
        input["objectWriteTraceId"] = json!(t);
    }
    input
}

#[tokio::test]
async fn upsert_creates_once_then_updates_and_clears() {
    let hs = HubSpot::start().await;
    for version in ["2026-03", "2026-09", "v3"] {
        let a = upsert(&hs, version, "contacts", json!([contact("ada@example.com", "Ada", None)])).await;
        assert_eq!(a.status, 200, "{version}: {}", a.body);
        assert_eq!(a.body["status"], "COMPLETE");
        assert_eq!(a.body["results"][0]["new"], version == "2026-03", "{version}: created only the first time");
    }
    let id = hs.record("contacts", "email", "ada@example.com").unwrap().id;
    let a = upsert(
        &hs,
        "2026-03",
        "contacts",
        json!([{"idProperty": "email", "id": "ada@example.com",
                                                        "properties": {"firstname": "", "lastname": "Lovelace"}}]),
    )
    .await;
    assert_eq!(a.body["results"][0]["id"], id.to_string(), "the record id is stable across upserts");
    let held = hs.record("contacts", "email", "ada@example.com").unwrap();
    assert_eq!(held.properties.get("firstname"), None, "\"\" clears a property");
    assert_eq!(held.properties["lastname"], "Lovelace");
    assert_eq!(hs.creations("contacts")[&("email".to_owned(), "ada@example.com".to_owned())], 1);

    // Matching is exact: another case is another contact (clients lowercase emails).
    let a = upsert(&hs, "2026-03", "contacts", json!([contact("Ada@Example.com", "Ada", None)])).await;
    assert_eq!(a.body["results"][0]["new"], true);
    assert_eq!(hs.live("contacts").len(), 2);
    for h in [
        "X-HubSpot-RateLimit-Daily",
        "X-HubSpot-RateLimit-Daily-Remaining",
        "X-HubSpot-RateLimit-Max",
        "X-HubSpot-RateLimit-Remaining",
        "X-HubSpot-RateLimit-Interval-Milliseconds",
    ] {
        assert!(a.headers.contains_key(h), "{h} is sent");
    }
    assert_eq!(a.headers["X-HubSpot-RateLimit-Daily-Remaining"], (1_000_000 - hs.daily_used()).to_string());
    hs.assert_no_violations();
}

#[tokio::test]
async fn a_body_that_breaks_the_contract_is_refused_and_recorded() {
    let hs = HubSpot::start().await;
    // `properties` values must be strings; `idProperty` is a body field, never a query.
    let a = upsert(
        &hs,
        "2026-03",
        "contacts",
        json!([{"idProperty": "email", "id": "a@example.com", "properties": {"firstname": 7}}]),
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body["category"], "VALIDATION_ERROR");
    let a = upsert(&hs, "2026-03", "contacts", json!([{"idProperty": "email", "id": "a@example.com"}])).await;
    assert_eq!(a.status, 400, "properties is required");
    let path = "/crm/objects/2026-03/contacts/batch/upsert?idProperty=email";
    send(&hs, reqwest::Method::POST, path, Some(TOKEN), Some(json!({"inputs": []}))).await;
    let a = send(&hs, reqwest::Method::POST, "/crm/v4/objects/contacts/batch/upsert", Some(TOKEN), None).await;
    assert_eq!(a.status, 404);
    let v = hs.violations();
    assert_eq!(v.len(), 4, "{v:#?}");
    assert!(v[0].contains("/inputs/0/properties/firstname") && v[1].contains("properties"), "{v:#?}");
    assert!(v[2].contains("query") && v[3].contains("no such endpoint"), "{v:#?}");
    assert!(hs.live("contacts").is_empty(), "nothing of a refused body is applied");
}

#[tokio::test]
async fn semantic_errors_whole_batch_without_trace_ids() {
    let hs = HubSpot::start().await;
    let cases = [
        (json!([{"id": "a@example.com", "properties": {}}]), "idProperty is required"),
        (json!([{"idProperty": "firstname", "id": "Ada", "properties": {}}]), "non-unique 0-1 property firstname"),
        (json!([{"idProperty": "hs_object_id", "id": "1", "properties": {}}]), "non-unique"),
        (json!([{"idProperty": "email", "id": "a@example.com", "properties": {"nope": "x"}}]), "not valid"),
        (json!([{"idProperty": "email", "id": "a@example.com", "properties": {"createdate": "x"}}]), "not valid"),
        (
            json!([contact("a@example.com", "A", Some("t1")), contact("a@example.com", "B", Some("t2"))]),
            "Duplicate IDs",
        ),
    ];
    for (inputs, message) in cases {
        let a = upsert(&hs, "2026-03", "contacts", inputs.clone()).await;
        assert_eq!(a.status, 400, "{inputs}");
        assert!(a.body["message"].as_str().unwrap().contains(message), "{inputs}: {}", a.body);
    }
    let a = upsert(
        &hs,
        "2026-03",
        "contacts",
        json!([{"idProperty": "email", "id": "a@example.com",
                                                        "properties": {"createdate": "x"}}]),
    )
    .await;
    assert_eq!(a.body["errors"][0]["code"], "READ_ONLY_VALUE");
    hs.set_batch_limit(2);
    let three: Vec<Json> = (0..3).map(|i| contact(&format!("{i}@example.com"), "x", None)).collect();
    let a = upsert(&hs, "2026-03", "contacts", Json::Array(three)).await;
    assert_eq!(a.status, 400);
    assert!(hs.live("contacts").is_empty());
    hs.assert_no_violations();
}

#[tokio::test]
async fn partial_failures_take_each_version_s_form_and_the_rule_can_be_lifted() {
    let hs = HubSpot::start().await;
    hs.set_rule(|input| (input.id == "bad@example.com").then(|| "Email domain is blocked by a rule".to_owned()));
    let inputs = |traced: bool| {
        let t = |s: &str| traced.then(|| s.to_owned());
        json!([
            contact("good@example.com", "G", t("t-good").as_deref()),
            contact("bad@example.com", "B", t("t-bad").as_deref())
        ])
    };
    // Without trace ids, v3 and 2026-03 refuse the whole batch.
    for version in ["v3", "2026-03"] {
        let a = upsert(&hs, version, "contacts", inputs(false)).await;
        assert_eq!(a.status, 400, "{version}");
        assert!(hs.live("contacts").is_empty(), "{version}: nothing applied");
    }
    for (version, status) in [("v3", 207), ("2026-03", 207), ("2026-09", 200)] {
        let a = upsert(&hs, version, "contacts", inputs(version != "2026-09")).await;
        assert_eq!(a.status, status, "{version}: {}", a.body);
        assert_eq!(a.body["numErrors"], 1);
        let e = &a.body["errors"][0];
        assert_eq!(e["category"], "VALIDATION_ERROR");
        assert_eq!(e["message"], "Email domain is blocked by a rule");
        if version != "2026-09" {
            assert_eq!(e["context"]["objectWriteTraceId"], json!(["t-bad"]));
            assert_eq!(a.body["results"][0]["objectWriteTraceId"], "t-good");
        }
        assert_eq!(a.body["results"].as_array().unwrap().len(), 1);
    }
    assert!(hs.record("contacts", "email", "bad@example.com").is_none());
    hs.lift_rule();
    let a = upsert(&hs, "2026-03", "contacts", inputs(true)).await;
    assert_eq!(a.status, 200);
    assert!(hs.record("contacts", "email", "bad@example.com").is_some());
    let creations = hs.creations("contacts");
    assert!(creations.values().all(|n| *n == 1), "{creations:?}");
    hs.assert_no_violations();
}

#[tokio::test]
async fn tokens_scopes_and_oauth_refresh() {
    let hs = HubSpot::start().await;
    let path = "/crm/objects/2026-03/contacts/batch/upsert";
    let body = json!({"inputs": [contact("a@example.com", "A", None)]});
    let a = send(&hs, reqwest::Method::POST, path, None, Some(body.clone())).await;
    assert_eq!((a.status, a.body["category"].as_str()), (401, Some("INVALID_AUTHENTICATION")));
    hs.token_uses(TOKEN, 1);
    assert_eq!(send(&hs, reqwest::Method::POST, path, Some(TOKEN), Some(body.clone())).await.status, 200);
    let a = send(&hs, reqwest::Method::POST, path, Some(TOKEN), Some(body.clone())).await;
    assert_eq!((a.status, a.body["category"].as_str()), (401, Some("EXPIRED_AUTHENTICATION")));

    hs.enable_oauth(OAuthApp {
        client_id: "cid".into(),
        client_secret: "secret".into(),
        refresh_token: "refresh-1".into(),
        lifetime: Duration::from_secs(1800),
        uses_per_token: None,
    });
    let token = reqwest::Client::new()
        .post(format!("{}/oauth/v1/token", hs.base_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=refresh_token&client_id=cid&client_secret=secret&refresh_token=refresh-1")
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 200);
    let token: Json = serde_json::from_slice(&token.bytes().await.unwrap()).unwrap();
    assert_eq!(token["expires_in"], 1800);
    let access = token["access_token"].as_str().unwrap();
    assert_eq!(send(&hs, reqwest::Method::POST, path, Some(access), Some(body.clone())).await.status, 200);

    hs.set_missing_scopes(&["crm.objects.contacts.write"]);
    let a = send(&hs, reqwest::Method::POST, path, Some(access), Some(body)).await;
    assert_eq!(a.status, 403);
    assert_eq!(a.body["context"]["missingScopes"], json!(["crm.objects.contacts.write"]));
    hs.assert_no_violations();
}

#[tokio::test]
async fn rolling_window_and_daily_allowance_answer_429_with_their_policy() {
    let hs = HubSpot::start().await;
    hs.set_window(Some((3, Duration::from_millis(400))));
    hs.set_daily(Some(5));
    let one = || json!([contact("a@example.com", "A", None)]);
    for _ in 0..3 {
        assert_eq!(upsert(&hs, "2026-03", "contacts", one()).await.status, 200);
    }
    let a = upsert(&hs, "2026-03", "contacts", one()).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.body["policyName"], "TEN_SECONDLY_ROLLING");
    assert_eq!(a.body["errorType"], "RATE_LIMIT");
    assert_eq!(a.headers["X-HubSpot-RateLimit-Remaining"], "0");
    assert!(!a.headers.contains_key("retry-after"), "HubSpot is not known to send Retry-After");
    tokio::time::sleep(Duration::from_millis(450)).await;
    for _ in 0..2 {
        assert_eq!(upsert(&hs, "2026-03", "contacts", one()).await.status, 200);
    }
    let a = upsert(&hs, "2026-03", "contacts", one()).await;
    assert_eq!((a.status, a.body["policyName"].as_str()), (429, Some("DAILY")));
    assert_eq!(a.headers["X-HubSpot-RateLimit-Daily-Remaining"], "0");
    assert_eq!((hs.refused(Policy::TenSecondlyRolling), hs.refused(Policy::Daily), hs.too_many()), (1, 1, 2));
    assert_eq!(hs.max_in_window(Duration::from_millis(400)), 3);
    hs.new_day();
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(upsert(&hs, "2026-03", "contacts", one()).await.status, 200);
    hs.assert_no_violations();
}

#[tokio::test]
async fn archive_by_record_id_then_upsert_creates_again() {
    let hs = HubSpot::start().await;
    let a = upsert(&hs, "2026-03", "contacts", json!([contact("a@example.com", "A", None)])).await;
    let id = a.body["results"][0]["id"].as_str().unwrap().to_owned();
    let path = "/crm/objects/2026-03/contacts/batch/archive";
    let body = json!({"inputs": [{"id": id}, {"id": "999999"}]});
    let a = send(&hs, reqwest::Method::POST, path, Some(TOKEN), Some(body.clone())).await;
    assert_eq!((a.status, a.body.clone()), (204, Json::Null), "an unknown id is no error");
    assert!(hs.live("contacts").is_empty());
    assert_eq!(send(&hs, reqwest::Method::POST, path, Some(TOKEN), Some(body)).await.status, 204);
    assert_eq!(hs.lock().archived.len(), 1, "archived once");
    let a = upsert(&hs, "2026-03", "contacts", json!([contact("a@example.com", "A", None)])).await;
    assert_eq!(a.body["results"][0]["new"], true);
    assert_eq!(hs.creations("contacts")[&("email".to_owned(), "a@example.com".to_owned())], 2);
    let bad = json!({"inputs": [{"id": 5}]});
    assert_eq!(send(&hs, reqwest::Method::POST, path, Some(TOKEN), Some(bad)).await.status, 400);
    assert_eq!(hs.violations().len(), 1, "an archive body breaking the documented shape is recorded");
}

async fn read(hs: &HubSpot, version: &str, object: &str, body: Json) -> Answer {
    let path = match version {
        "v3" => format!("/crm/v3/objects/{object}/batch/read"),
        v => format!("/crm/objects/{v}/{object}/batch/read"),
    };
    send(hs, reqwest::Method::POST, &path, Some(TOKEN), Some(body)).await
}

#[tokio::test]
async fn batch_read_finds_records_by_id_or_unique_value_and_names_the_missing_by_version() {
    let hs = HubSpot::start().await;
    let a = upsert(
        &hs,
        "2026-03",
        "contacts",
        json!([contact("a@example.com", "A", None), contact("b@example.com", "B", None)]),
    )
    .await;
    let (a_id, b_id) = (a.body["results"][0]["id"].clone(), a.body["results"][1]["id"].clone());
    let by_email = json!({"idProperty": "email", "inputs": [{"id": "a@example.com"}, {"id": "nobody@example.com"}],
                          "properties": ["email", "firstname"], "propertiesWithHistory": []});
    for version in ["2026-03", "v3", "2026-09"] {
        let a = read(&hs, version, "contacts", by_email.clone()).await;
        let results = a.body["results"].as_array().unwrap();
        assert_eq!(results.len(), 1, "{version}: {}", a.body);
        assert_eq!(results[0]["id"], a_id);
        assert_eq!(results[0]["archived"], false);
        assert_eq!(results[0]["properties"]["firstname"], "A");
        assert_eq!(results[0]["properties"]["hs_object_id"], a_id, "{version}: returned unasked");
        if version == "2026-09" {
            assert_eq!(a.status, 200, "{version}: the value not found is simply absent");
            assert!(a.body.get("errors").is_none());
        } else {
            assert_eq!(a.status, 207, "{version}");
            assert_eq!(a.body["numErrors"], 1);
            assert_eq!(a.body["errors"][0]["category"], "OBJECT_NOT_FOUND");
            assert_eq!(a.body["errors"][0]["context"]["ids"], json!(["nobody@example.com"]));
        }
    }
    assert_eq!(hs.calls("read"), 3);

    // Without idProperty the ids are record ids; an archived record is not read.
    let archive = "/crm/objects/2026-03/contacts/batch/archive";
    let gone = json!({"inputs": [{"id": b_id}]});
    assert_eq!(send(&hs, reqwest::Method::POST, archive, Some(TOKEN), Some(gone)).await.status, 204);
    let by_id = json!({"inputs": [{"id": a_id}, {"id": b_id}], "properties": [], "propertiesWithHistory": []});
    let a = read(&hs, "2026-09", "contacts", by_id).await;
    assert_eq!(a.body["results"].as_array().unwrap().len(), 1, "{}", a.body);
    assert_eq!(a.body["results"][0]["id"], a_id);
    let by_b = json!({"idProperty": "email", "inputs": [{"id": "b@example.com"}], "properties": [], "propertiesWithHistory": []});
    assert_eq!(read(&hs, "2026-09", "contacts", by_b).await.body["results"], json!([]));

    // Reading by a property without unique values is refused; so is a body the docs do not allow.
    let by_name =
        json!({"idProperty": "firstname", "inputs": [{"id": "A"}], "properties": [], "propertiesWithHistory": []});
    let a = read(&hs, "2026-03", "contacts", by_name).await;
    assert_eq!((a.status, a.body["category"].as_str()), (400, Some("VALIDATION_ERROR")));
    assert!(hs.violations().is_empty(), "a refusal HubSpot would answer is no violation");
    let a = read(&hs, "2026-03", "contacts", json!({"idProperty": "email", "inputs": [{"id": "a@example.com"}]})).await;
    assert_eq!(a.status, 400);
    let violations = hs.violations();
    assert_eq!(violations.len(), 2, "{violations:?}");
    assert!(violations.iter().all(|v| v.contains("BatchReadRequest")), "{violations:?}");
}

#[tokio::test]
async fn properties_listing_custom_objects_and_faults() {
    let hs = HubSpot::start().await;
    hs.add_object_type(hubspot_server::ObjectType::new(
        "2-123",
        "2-123",
        [PropertyDef::unique("external_id"), PropertyDef::number("score")],
    ));
    for path in ["/crm/properties/2026-03/contacts", "/crm/v3/properties/contacts"] {
        let a = send(&hs, reqwest::Method::GET, path, Some(TOKEN), None).await;
        let props = a.body["results"].as_array().unwrap();
        let email = props.iter().find(|p| p["name"] == "email").unwrap();
        assert_eq!(email["hasUniqueValue"], true);
        let created = props.iter().find(|p| p["name"] == "createdate").unwrap();
        assert_eq!(created["modificationMetadata"]["readOnlyValue"], true);
    }
    let custom = json!([{"idProperty": "external_id", "id": "x-1", "properties": {"score": "nan?"}}]);
    assert_eq!(upsert(&hs, "2026-09", "2-123", custom).await.body["errors"][0]["errors"][0]["code"], "INVALID_DECIMAL");

    hs.inject(Fault::ServerError, 2);
    hs.inject(Fault::LoseAck, 1);
    let one = json!([{"idProperty": "external_id", "id": "x-1", "properties": {"score": "1.5"}}]);
    for _ in 0..2 {
        let a = upsert(&hs, "2026-03", "2-123", one.clone()).await;
        assert_eq!((a.status, a.body["category"].as_str()), (500, Some("INTERNAL_ERROR")));
    }
    assert!(hs.live("2-123").is_empty(), "a 500 applies nothing");
    assert_eq!(upsert(&hs, "2026-03", "2-123", one.clone()).await.status, 502);
    assert_eq!(hs.live("2-123").len(), 1, "a lost acknowledgement was applied");
    assert_eq!(upsert(&hs, "2026-03", "2-123", one).await.body["results"][0]["new"], false);
    hs.assert_no_violations();
}

#[test]
fn the_contract_catches_answers_hubspot_would_not_send() {
    use hubspot_server::contract::{Contract, RATE_LIMIT, RESPONSE_200, RESPONSE_WITH_ERRORS};
    let c = Contract::get();
    let result = json!({"id": "1", "new": true, "properties": {}, "createdAt": "2026-01-01T00:00:00.000Z",
                        "updatedAt": "2026-01-01T00:00:00.000Z"});
    let ok = json!({"status": "COMPLETE", "startedAt": "2026-01-01T00:00:00Z", "completedAt": "2026-01-01T00:00:01Z",
                    "results": [result]});
    assert!(c.check(RESPONSE_200, &ok).is_empty());
    let mut bad = ok.clone();
    bad["status"] = json!("DONE");
    bad["results"][0]["createdAt"] = json!("yesterday");
    assert_eq!(c.check(RESPONSE_200, &bad).len(), 2, "the status enum and date-time formats are enforced");
    let mut with_errors = ok.clone();
    with_errors["errors"] = json!([{"status": "error", "category": "VALIDATION_ERROR", "message": "m"}]);
    assert!(!c.check(RESPONSE_200, &with_errors).is_empty(), "errors[] needs the with-errors root");
    assert!(!c.check(RESPONSE_WITH_ERRORS, &with_errors).is_empty(), "a StandardError needs context, errors, links");
    assert!(!c.check(RATE_LIMIT, &json!({"status": "error", "message": "m", "correlationId": "c"})).is_empty());

    use hubspot_server::contract::READ_RESPONSE;
    let record = json!({"id": "1", "properties": {"email": "a@example.com"}, "archived": false,
                        "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-01T00:00:00.000Z"});
    let mut read = ok.clone();
    read["results"] = json!([record]);
    assert!(c.check(READ_RESPONSE, &read).is_empty());
    let mut bad = read.clone();
    bad["results"][0].as_object_mut().unwrap().remove("archived");
    bad["errors"] = json!([{"status": "error", "category": "OBJECT_NOT_FOUND", "message": "m"}]);
    let problems = c.check(READ_RESPONSE, &bad);
    assert_eq!(
        problems.len(),
        5,
        "`archived`, `numErrors`, and the StandardError's `context`, `errors`, `links`: {problems:?}"
    );
}
