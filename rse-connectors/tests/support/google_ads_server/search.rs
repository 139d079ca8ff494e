//! `GoogleAdsService.Search` (`POST /v25/customers/{customer}/googleAds:search`), enough of it
//! to read offline user data jobs and user lists.
//!
//! Not in the contract files: follows Google's reference for `GoogleAdsService.Search`,
//! `SearchGoogleAdsRequest` (`query` required; `pageToken`, `searchSettings`, `validateOnly`
//! optional; `pageSize` is refused with `PAGE_SIZE_NOT_SUPPORTED`) and
//! `SearchGoogleAdsResponse` (`results[]` of `GoogleAdsRow`, `fieldMask`, `nextPageToken`
//! only when another page follows), the Google Ads Query Language grammar ("GAQL grammar":
//! `SELECT fields FROM resource [WHERE condition {AND condition}] [LIMIT n]`, conditions
//! `field = value` or `field IN (values)`, strings in single or double quotes), and the
//! field references of `offline_user_data_job` and `user_list`. Rows carry only the
//! selected fields plus the resource's `resourceName`, in lowerCamelCase, int64 as strings.
use serde_json::{Map, Value as Json, json};

use super::jobs::Jobs;
use super::wire::{Reply, Root, error};

/// The request body's own rules (no contract file describes it).
pub fn request_problems(body: &Json) -> Vec<String> {
    let Some(o) = body.as_object() else { return vec!["the body is not an object".into()] };
    let mut p = Vec::new();
    for (k, v) in o {
        match k.as_str() {
            "query" | "pageToken" if !v.is_string() => p.push(format!("`{k}` is not a string")),
            "validateOnly" if !v.is_boolean() => p.push("`validateOnly` is not a boolean".into()),
            "searchSettings" if !v.is_object() => p.push("`searchSettings` is not an object".into()),
            "query" | "pageToken" | "validateOnly" | "searchSettings" | "pageSize" => {}
            other => p.push(format!("unknown field `{other}`")),
        }
    }
    if !o.contains_key("query") {
        p.push("`query` is required".into());
    }
    p
}

fn query_error(code: &str, message: &str) -> Reply {
    let mut reply = Reply::ads(400, "INVALID_ARGUMENT", vec![error("queryError", code, message)]);
    reply.root = Root::SearchError;
    reply
}

#[derive(Debug, PartialEq)]
enum Value {
    Int(i64),
    Text(String),
}

struct Query {
    fields: Vec<String>,
    resource: String,
    conditions: Vec<(String, Vec<Value>)>,
    limit: Option<usize>,
}

fn tokens(q: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = q.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '\'' || c == '"' {
            chars.next();
            let mut s = String::from("'");
            loop {
                match chars.next() {
                    Some(x) if x == c => break,
                    Some('\\') => s.extend(chars.next()),
                    Some(x) => s.push(x),
                    None => return Err("an unterminated string".into()),
                }
            }
            out.push(s);
        } else if matches!(c, ',' | '(' | ')' | '=') {
            out.push(c.to_string());
            chars.next();
        } else {
            let mut s = String::new();
            while let Some(&x) = chars.peek() {
                if x.is_whitespace() || matches!(x, ',' | '(' | ')' | '=' | '\'' | '"') {
                    break;
                }
                s.push(x);
                chars.next();
            }
            out.push(s);
        }
    }
    Ok(out)
}

fn parse(q: &str) -> Result<Query, String> {
    let t = tokens(q)?;
    let mut i = 0;
    let kw = |i: usize, w: &str| t.get(i).is_some_and(|x| x.eq_ignore_ascii_case(w));
    if !kw(0, "SELECT") {
        return Err("the query starts with SELECT".into());
    }
    i += 1;
    let mut fields = Vec::new();
    loop {
        let f = t.get(i).ok_or("a field after SELECT")?;
        fields.push(f.clone());
        i += 1;
        if t.get(i).map(String::as_str) == Some(",") {
            i += 1;
        } else {
            break;
        }
    }
    if !kw(i, "FROM") {
        return Err("FROM after the fields".into());
    }
    let resource = t.get(i + 1).ok_or("a resource after FROM")?.clone();
    i += 2;
    let mut conditions = Vec::new();
    if kw(i, "WHERE") {
        i += 1;
        loop {
            let field = t.get(i).ok_or("a field in WHERE")?.clone();
            i += 1;
            let value = |s: &String| -> Result<Value, String> {
                if let Some(text) = s.strip_prefix('\'') {
                    Ok(Value::Text(text.to_owned()))
                } else if let Ok(n) = s.parse() {
                    Ok(Value::Int(n))
                } else if s.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                    Ok(Value::Text(s.clone()))
                } else {
                    Err(format!("a value, not `{s}`"))
                }
            };
            if t.get(i).map(String::as_str) == Some("=") {
                conditions.push((field, vec![value(t.get(i + 1).ok_or("a value after =")?)?]));
                i += 2;
            } else if kw(i, "IN") && t.get(i + 1).map(String::as_str) == Some("(") {
                i += 2;
                let mut values = Vec::new();
                loop {
                    values.push(value(t.get(i).ok_or("a value in IN (…)")?)?);
                    i += 1;
                    match t.get(i).map(String::as_str) {
                        Some(",") => i += 1,
                        Some(")") => {
                            i += 1;
                            break;
                        }
                        _ => return Err("`,` or `)` in IN (…)".into()),
                    }
                }
                conditions.push((field, values));
            } else {
                return Err(format!("this server knows `=` and `IN` after {field}"));
            }
            if kw(i, "AND") {
                i += 1;
            } else {
                break;
            }
        }
    }
    let mut limit = None;
    if kw(i, "LIMIT") {
        limit = Some(t.get(i + 1).and_then(|n| n.parse().ok()).ok_or("a number after LIMIT")?);
        i += 2;
    }
    if i != t.len() {
        return Err(format!("unexpected `{}`", t[i]));
    }
    Ok(Query { fields, resource, conditions, limit })
}

type Fields = &'static [(&'static str, &'static [&'static str])];

/// The fields this server serves: GAQL name and JSON path under the resource.
const JOB_FIELDS: Fields = &[
    ("resource_name", &["resourceName"]),
    ("id", &["id"]),
    ("type", &["type"]),
    ("status", &["status"]),
    ("customer_match_user_list_metadata.user_list", &["customerMatchUserListMetadata", "userList"]),
    ("external_id", &["externalId"]),
    ("failure_reason", &["failureReason"]),
    ("operation_metadata.match_rate_range", &["operationMetadata", "matchRateRange"]),
];
const LIST_FIELDS: Fields = &[
    ("resource_name", &["resourceName"]),
    ("id", &["id"]),
    ("name", &["name"]),
    ("type", &["type"]),
    ("membership_status", &["membershipStatus"]),
    ("size_for_search", &["sizeForSearch"]),
];

/// A job's values by GAQL name (absent fields left out, as proto3 JSON does).
fn job_values(jobs: &Jobs, id: u64) -> Vec<(&'static str, Json)> {
    let j = &jobs.jobs[&id];
    let mut f = vec![
        ("resource_name", json!(j.resource_name)),
        ("id", json!(j.id.to_string())),
        ("type", json!("CUSTOMER_MATCH_USER_LIST")),
        ("status", json!(j.status.name())),
        ("customer_match_user_list_metadata.user_list", json!(j.user_list)),
    ];
    if let Some(ext) = j.external_id {
        f.push(("external_id", json!(ext.to_string())));
    }
    if j.status.name() == "FAILED" {
        f.push(("failure_reason", json!("UNKNOWN")));
    }
    if let Some(rate) = j.match_rate {
        f.push(("operation_metadata.match_rate_range", json!(rate)));
    }
    f
}

fn list_values(jobs: &Jobs, id: &str) -> Vec<(&'static str, Json)> {
    let l = &jobs.lists[id];
    vec![
        ("resource_name", json!(jobs.list_resource(id))),
        ("id", json!(l.id)),
        ("name", json!(l.name)),
        ("type", json!("CRM_BASED")),
        ("membership_status", json!("OPEN")),
        ("size_for_search", json!(l.members.len().to_string())),
    ]
}

/// Answers a search of `customer`'s resources. The caller has ticked the jobs.
pub fn search(jobs: &Jobs, customer: &str, body: &Json, violations: &mut Vec<String>) -> Reply {
    if body.get("pageSize").is_some() {
        violations.push("search: pageSize is not supported".into());
        let mut reply = Reply::one("requestError", "PAGE_SIZE_NOT_SUPPORTED", "The page size is not supported.");
        reply.root = Root::SearchError;
        return reply;
    }
    if customer != jobs.customer {
        let mut reply = Reply::one(
            "authorizationError",
            "USER_PERMISSION_DENIED",
            "User doesn't have permission to access customer.",
        );
        reply.root = Root::SearchError;
        return reply;
    }
    let text = body["query"].as_str().unwrap_or("");
    let query = match parse(text) {
        Ok(q) => q,
        Err(problem) => {
            violations.push(format!("search: the query does not parse: {problem}"));
            return query_error("UNEXPECTED_INPUT", &format!("Error in query: {problem}"));
        }
    };
    let (prefix, known): (&str, Fields) = match query.resource.as_str() {
        "offline_user_data_job" => ("offlineUserDataJob", JOB_FIELDS),
        "user_list" => ("userList", LIST_FIELDS),
        other => {
            violations.push(format!("search: FROM {other}; this server serves offline_user_data_job and user_list"));
            return query_error("BAD_RESOURCE_TYPE_IN_FROM_CLAUSE", "The resource is not supported here.");
        }
    };
    let own = |f: &str| f.strip_prefix(&format!("{}.", query.resource)).map(str::to_owned);
    let path_of = |name: &str| known.iter().find(|(n, _)| *n == name).map(|(_, p)| *p);
    let mut selected = Vec::new();
    for f in query.fields.iter().chain(query.conditions.iter().map(|(f, _)| f)) {
        match own(f) {
            Some(name) if path_of(&name).is_some() => selected.push(name),
            _ => {
                violations.push(format!("search: unknown field {f}"));
                return query_error("UNRECOGNIZED_FIELD", &format!("Unrecognized field in the query: '{f}'."));
            }
        }
    }
    selected.truncate(query.fields.len());
    let rows: Vec<Vec<(&'static str, Json)>> = match query.resource.as_str() {
        "offline_user_data_job" => jobs.jobs.keys().map(|id| job_values(jobs, *id)).collect(),
        _ => jobs.lists.keys().map(|id| list_values(jobs, id)).collect(),
    };
    let matches = |row: &Vec<(&'static str, Json)>| {
        query.conditions.iter().all(|(f, values)| {
            let name = own(f).unwrap_or_default();
            let v = row.iter().find(|(n, _)| *n == name).map(|(_, v)| v);
            v.is_some_and(|v| {
                values.iter().any(|want| match want {
                    Value::Int(n) => v.as_str().and_then(|s| s.parse::<i64>().ok()) == Some(*n),
                    Value::Text(t) => v.as_str() == Some(t.as_str()),
                })
            })
        })
    };
    let mut results = Vec::new();
    for row in rows.iter().filter(|r| matches(r)).take(query.limit.unwrap_or(usize::MAX)) {
        let mut resource = Map::new();
        for (name, value) in row {
            if *name != "resource_name" && !selected.iter().any(|s| s == name) {
                continue;
            }
            let path = path_of(name).unwrap();
            let mut at = &mut resource;
            for p in &path[..path.len() - 1] {
                at = at.entry(*p).or_insert_with(|| json!({})).as_object_mut().unwrap();
            }
            at.insert(path[path.len() - 1].to_owned(), value.clone());
        }
        results.push(json!({ prefix: resource }));
    }
    let mask: Vec<String> =
        selected.iter().map(|name| format!("{prefix}.{}", path_of(name).unwrap().join("."))).collect();
    let mut answer = json!({"results": results, "fieldMask": mask.join(","), "queryResourceConsumption": "1"});
    if results_empty(&answer) {
        answer.as_object_mut().unwrap().remove("results");
    }
    Reply { status: 200, body: Some(answer), root: Root::Search, text: None }
}

/// proto3 JSON leaves an empty repeated field out.
fn results_empty(answer: &Json) -> bool {
    answer["results"].as_array().is_some_and(Vec::is_empty)
}
