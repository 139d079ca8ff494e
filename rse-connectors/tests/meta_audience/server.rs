//! The Meta contract server, driven with plain HTTP: what `/users`, `/usersreplace`, the
//! sessions edge and the BUC rate limit do, as Meta documents them.

use std::time::Duration;

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value as Json, json};

use crate::meta_server::{AD_ACCOUNT, AUDIENCE, Fault, Meta, TOKEN};

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Json,
}

impl Answer {
    fn code(&self) -> (i64, Option<i64>) {
        (self.body["error"]["code"].as_i64().unwrap_or(0), self.body["error"]["error_subcode"].as_i64())
    }
}

async fn call(meta: &Meta, method: Method, path: &str, form: &[(&str, String)]) -> Answer {
    let client = reqwest::Client::new();
    let url = format!("{}/v25.0/{path}", meta.base_url());
    let req = if method == Method::GET { client.get(url).query(form) } else { client.request(method, url).form(form) };
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    Answer { status, headers, body: serde_json::from_slice(&bytes).unwrap_or(Json::Null) }
}

/// A write of `payload` (and `session`) with the server's token.
async fn write(meta: &Meta, method: Method, edge: &str, payload: Json, session: Option<Json>) -> Answer {
    let mut form = vec![("access_token", TOKEN.to_owned()), ("payload", payload.to_string())];
    if let Some(s) = session {
        form.push(("session", s.to_string()));
    }
    call(meta, method, &format!("{AUDIENCE}/{edge}"), &form).await
}

/// A stand-in SHA-256 digest: 64 lowercase hex digits derived from `seed`.
fn h(seed: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(seed.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn rows(schema: &[&str], data: Vec<Vec<String>>) -> Json {
    json!({ "schema": schema, "data": data })
}

fn session(id: i64, seq: i64, last: bool) -> Json {
    json!({ "session_id": id, "batch_seq": seq, "last_batch_flag": last, "estimated_num_total": 10 })
}

#[tokio::test]
async fn add_and_remove_work_on_identifiers_and_report_usage() {
    let meta = Meta::start().await;
    let schema = ["EMAIL", "PHONE", "FN", "EXTERN_ID"];
    let data = vec![
        vec![h("ada@example.com"), h("4915112345678"), h("ada"), "cust-1".into()],
        vec![h("bob@example.com"), String::new(), String::new(), String::new()],
    ];
    let a = write(&meta, Method::POST, "users", rows(&schema, data), None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["audience_id"], AUDIENCE);
    assert_eq!(a.body["num_received"], 2);
    assert_eq!(a.body["num_invalid_entries"], 0);
    assert!(a.body["session_id"].as_str().unwrap().parse::<i64>().is_ok(), "a numeric string");
    assert_eq!(meta.audience(AUDIENCE).len(), 5, "each non-empty cell is an identifier");
    assert!(meta.values(AUDIENCE, "EXTERN_ID").contains("cust-1"));

    let usage: Json = serde_json::from_str(a.headers["x-business-use-case-usage"].to_str().unwrap()).unwrap();
    let entry = &usage[AD_ACCOUNT][0];
    assert_eq!(entry["type"], "custom_audience");
    for field in ["call_count", "total_cputime", "total_time", "estimated_time_to_regain_access"] {
        assert!(entry[field].is_u64(), "{field} in {usage}");
    }

    // A removal names identifiers; the others of the person stay.
    let a = write(&meta, Method::DELETE, "users", rows(&["EMAIL"], vec![vec![h("ada@example.com")]]), None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let held = meta.audience(AUDIENCE);
    assert!(!held.contains(&format!("EMAIL:{}", h("ada@example.com"))));
    assert!(held.contains(&format!("PHONE:{}", h("4915112345678"))));
    // `method=DELETE` on a POST removes too.
    let form = vec![
        ("access_token", TOKEN.to_owned()),
        ("method", "DELETE".to_owned()),
        ("payload", json!({"schema": "EMAIL_SHA256", "data": [h("bob@example.com")]}).to_string()),
    ];
    // The audience holds multi-key data: a single-key upload is refused with 2650.
    let a = call(&meta, Method::POST, &format!("{AUDIENCE}/users"), &form).await;
    assert_eq!(a.code().0, 2650, "{}", a.body);
    assert!(meta.values(AUDIENCE, "EMAIL").contains(&h("bob@example.com")));
    meta.assert_no_violations();
}

#[tokio::test]
async fn invalid_rows_are_dropped_and_counted_without_an_index() {
    let meta = Meta::start().await;
    meta.refuse("EMAIL", &h("refused@example.com"));
    let data = vec![
        vec![h("ok@example.com"), h("1")],
        vec![h("refused@example.com"), String::new()],
        vec!["NOT-A-HASH".into(), String::new()],
        vec![String::new(), String::new()],
    ];
    let a = write(&meta, Method::POST, "users", rows(&["EMAIL", "PHONE"], data), None).await;
    assert_eq!(a.status, 200, "invalid rows do not fail the call: {}", a.body);
    assert_eq!(a.body["num_received"], 4);
    assert_eq!(a.body["num_invalid_entries"], 3);
    let samples = a.body["invalid_entry_samples"].as_object().unwrap();
    assert_eq!(samples.len(), 3, "{samples:?}");
    assert!(samples.contains_key(&h("refused@example.com")), "samples are the values themselves");
    assert_eq!(meta.audience(AUDIENCE).len(), 2, "only the valid row is applied");
    assert_eq!(meta.dropped(), 3);
    let v = meta.violations();
    assert_eq!(v.len(), 1, "a malformed hash is a client bug: {v:#?}");
    assert!(v[0].contains("malformed EMAIL") && !v[0].contains("NOT-A-HASH"), "{v:#?}");
}

#[tokio::test]
async fn whole_call_errors_as_documented() {
    let meta = Meta::start().await;
    let one = || rows(&["EMAIL"], vec![vec![h("x")]]);
    let too_many = rows(&["EMAIL"], (0..10_001).map(|i| vec![h(&i.to_string())]).collect());
    let a = write(&meta, Method::POST, "users", too_many, None).await;
    assert_eq!((a.status, a.code()), (400, (100, None)), "{}", a.body);
    let a = write(&meta, Method::POST, "users", json!({"schema": ["EMAIL", "FN"], "data": [[h("x")]]}), None).await;
    assert_eq!(a.code().0, 100, "row width must match the schema");
    let a =
        write(&meta, Method::POST, "users", json!({"schema": ["EMAIL", "SHOE_SIZE"], "data": [[h("x"), "9"]]}), None)
            .await;
    assert_eq!(a.code().0, 100);
    assert_eq!(meta.violations().len(), 3, "{:#?}", meta.violations());
    meta.lock().violations.clear();

    // Tokens and permissions.
    let form = |token: Option<&str>| {
        let mut f = vec![("payload", one().to_string())];
        if let Some(t) = token {
            f.push(("access_token", t.to_owned()));
        }
        f
    };
    let path = format!("{AUDIENCE}/users");
    assert_eq!(call(&meta, Method::POST, &path, &form(None)).await.code(), (104, None));
    assert_eq!(call(&meta, Method::POST, &path, &form(Some("nope"))).await.code(), (190, None));
    meta.expire_token(TOKEN);
    assert_eq!(call(&meta, Method::POST, &path, &form(Some(TOKEN))).await.code(), (190, Some(463)));
    meta.add_token(TOKEN);
    let bearer = reqwest::Client::new()
        .post(format!("{}/v25.0/{path}", meta.base_url()))
        .bearer_auth(TOKEN)
        .form(&[("payload", one().to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200, "a bearer header is accepted");
    meta.set_permission_error(Some(200));
    assert_eq!(call(&meta, Method::POST, &path, &form(Some(TOKEN))).await.code(), (200, None));
    meta.set_permission_error(None);
    meta.set_not_admin(AD_ACCOUNT);
    assert_eq!(call(&meta, Method::POST, &path, &form(Some(TOKEN))).await.code(), (100, Some(33)));
    meta.lock().audiences.not_admin.clear();
    meta.restrict(AUDIENCE, true);
    let a = call(&meta, Method::POST, &path, &form(Some(TOKEN))).await;
    assert_eq!(a.code(), (100, Some(1_713_230)));
    assert_eq!(a.body["error"]["error_user_title"], "Audience Upload Blocked");
    meta.restrict(AUDIENCE, false);
    let old = reqwest::Client::new()
        .post(format!("{}/v19.0/{path}", meta.base_url()))
        .form(&form(Some(TOKEN)))
        .send()
        .await
        .unwrap();
    let body: Json = serde_json::from_slice(&old.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], 2635);
    assert!(body["error"]["fbtrace_id"].is_string() && body["error"]["type"].is_string(), "{body}");
    meta.assert_no_violations();
}

#[tokio::test]
async fn sessions_count_received_and_matched_and_finish_on_the_last_batch() {
    let meta = Meta::start().await;
    meta.know([("EMAIL", h("known@example.com"))]);
    let s = 4_611_686_018_427_387_903_i64;
    let a = write(
        &meta,
        Method::POST,
        "users",
        rows(&["EMAIL"], vec![vec![h("known@example.com")]]),
        Some(session(s, 1, false)),
    )
    .await;
    assert_eq!(a.body["session_id"], s.to_string());
    let read = |meta: Meta| async move {
        call(
            &meta,
            Method::GET,
            &format!("{AUDIENCE}/sessions"),
            &[("access_token", TOKEN.to_owned()), ("session_id", s.to_string())],
        )
        .await
    };
    let r = read(meta.clone()).await;
    assert_eq!(r.body["data"][0]["stage"], "uploading", "{}", r.body);
    let a = write(
        &meta,
        Method::POST,
        "users",
        rows(&["EMAIL"], vec![vec![h("stranger@example.com")], vec![h("other@example.com")]]),
        Some(session(s, 2, true)),
    )
    .await;
    assert_eq!(a.body["num_received"], 3, "the session's total so far");
    meta.set_settle_reads(1);
    let r = read(meta.clone()).await;
    assert_eq!(r.body["data"][0]["stage"], "processing");
    let r = read(meta.clone()).await;
    let entry = &r.body["data"][0];
    assert_eq!(entry["stage"], "finished");
    assert_eq!(entry["num_received"], "3", "numbers are numeric strings");
    assert_eq!(entry["num_matched"], "1");
    assert!(entry["end_time"].is_string());
    meta.assert_no_violations();
}

#[tokio::test]
async fn usersreplace_replaces_when_the_last_batch_lands() {
    let meta = Meta::start().await;
    let schema = ["EMAIL"];
    write(&meta, Method::POST, "users", rows(&schema, vec![vec![h("a")], vec![h("b")]]), None).await;
    let s = 77;
    let a =
        write(&meta, Method::POST, "usersreplace", rows(&schema, vec![vec![h("c")]]), Some(session(s, 1, false))).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(meta.values(AUDIENCE, "EMAIL").len(), 2, "unchanged while the replace runs");
    let a = write(&meta, Method::POST, "users", rows(&schema, vec![vec![h("x")]]), None).await;
    assert_eq!(a.code(), (2650, Some(1_870_145)), "no /users during a replace");
    let a = write(&meta, Method::POST, "usersreplace", rows(&schema, vec![vec![h("d")]]), Some(session(99, 1, false)))
        .await;
    assert_eq!(a.code(), (2650, Some(1_870_145)), "one replace at a time");
    let a =
        write(&meta, Method::POST, "usersreplace", rows(&schema, vec![vec![h("d")]]), Some(session(s, 2, true))).await;
    assert_eq!(a.status, 200);
    assert_eq!(meta.values(AUDIENCE, "EMAIL"), [h("c"), h("d")].into_iter().collect());
    let a =
        write(&meta, Method::POST, "usersreplace", rows(&schema, vec![vec![h("e")]]), Some(session(s, 3, true))).await;
    assert_eq!(a.code(), (2650, Some(1_870_159)), "finished");
    let a =
        write(&meta, Method::POST, "usersreplace", rows(&schema, vec![vec![h("e")]]), Some(session(5, 2, false))).await;
    assert_eq!(a.code(), (2650, Some(1_870_147)), "a replace starts at batch_seq 1");
    let a = write(&meta, Method::POST, "usersreplace", rows(&schema, vec![vec![h("e")]]), None).await;
    assert_eq!(a.code().0, 100, "usersreplace needs a session");
    assert_eq!(meta.violations().len(), 1, "{:#?}", meta.violations());
}

#[tokio::test]
async fn an_unfinished_replace_ends_after_90_minutes_with_what_was_uploaded() {
    let meta = Meta::start().await;
    write(&meta, Method::POST, "users", rows(&["EMAIL"], vec![vec![h("a")], vec![h("b")]]), None).await;
    write(&meta, Method::POST, "usersreplace", rows(&["EMAIL"], vec![vec![h("c")]]), Some(session(8, 1, false))).await;
    meta.advance(Duration::from_secs(89 * 60));
    assert_eq!(meta.values(AUDIENCE, "EMAIL").len(), 2);
    meta.advance(Duration::from_secs(2 * 60));
    assert_eq!(meta.values(AUDIENCE, "EMAIL"), [h("c")].into_iter().collect(), "replaced with what was uploaded");
    let a = write(&meta, Method::POST, "usersreplace", rows(&["EMAIL"], vec![vec![h("d")]]), Some(session(8, 2, true)))
        .await;
    assert_eq!(a.code(), (2650, Some(1_870_158)));
    let a = write(&meta, Method::POST, "users", rows(&["EMAIL"], vec![vec![h("d")]]), None).await;
    assert_eq!(a.status, 200, "/users works again");
    meta.assert_no_violations();
}

#[tokio::test]
async fn the_custom_audience_buc_throttles_with_80003_and_says_when_to_come_back() {
    let meta = Meta::start().await;
    meta.set_buc(AD_ACCOUNT, 6, Duration::from_secs(3600), 3);
    let one = |i: u32| rows(&["EMAIL"], vec![vec![h(&i.to_string())]]);
    for i in 0..2 {
        assert_eq!(write(&meta, Method::POST, "users", one(i), None).await.status, 200);
    }
    let a = write(&meta, Method::POST, "users", one(2), None).await;
    assert_eq!((a.status, a.code().0), (400, 80003), "throttled with HTTP 400, not 429: {}", a.body);
    assert_eq!(a.body["error"]["is_transient"], true);
    let usage: Json = serde_json::from_str(a.headers["x-business-use-case-usage"].to_str().unwrap()).unwrap();
    assert_eq!(usage[AD_ACCOUNT][0]["call_count"], 100);
    let regain = usage[AD_ACCOUNT][0]["estimated_time_to_regain_access"].as_u64().unwrap();
    assert!((59..=60).contains(&regain), "minutes until the first call leaves the hour: {regain}");
    assert_eq!(meta.audience(AUDIENCE).len(), 2, "a throttled call applies nothing");
    meta.advance(Duration::from_secs(3600));
    assert_eq!(write(&meta, Method::POST, "users", one(2), None).await.status, 200);

    meta.inject(Fault::Throttle(613), 1);
    let a = write(&meta, Method::POST, "users", one(3), None).await;
    assert_eq!(a.code(), (613, Some(1_487_742)));
    assert_eq!(meta.throttles(80003), 1);
    assert_eq!(meta.throttles(613), 1);
    meta.assert_no_violations();
}

#[tokio::test]
async fn a_lost_acknowledgement_is_applied_and_a_server_error_is_not() {
    let meta = Meta::start().await;
    meta.inject(Fault::LoseAck, 1);
    let a = write(&meta, Method::POST, "users", rows(&["EMAIL"], vec![vec![h("a")]]), None).await;
    assert_eq!(a.status, 502);
    meta.inject(Fault::ServerError, 1);
    let a = write(&meta, Method::POST, "users", rows(&["EMAIL"], vec![vec![h("b")]]), None).await;
    assert_eq!((a.status, a.code().0), (500, 2));
    assert_eq!(meta.values(AUDIENCE, "EMAIL"), [h("a")].into_iter().collect());
    let a = call(
        &meta,
        Method::GET,
        AUDIENCE,
        &[("access_token", TOKEN.to_owned()), ("fields", "id,name,operation_status".into())],
    )
    .await;
    assert_eq!(a.body["operation_status"]["code"], 200, "{}", a.body);
    meta.assert_no_violations();
}
