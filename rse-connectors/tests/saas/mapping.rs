//! Golden properties for each vendor's value style.
//!
//! HubSpot follows the CRM "Properties" guide (property types: `bool` as `"true"`/`"false"`,
//! `date` as `YYYY-MM-DD`, `datetime` as ISO 8601, `enumeration` checkboxes joined by `;`,
//! numbers as strings) and /work/shared/contracts/saas-contracts.md §1 (an empty string
//! clears a property). Salesforce follows the REST API Developer Guide, "Valid Date and
//! DateTime Formats" (`yyyy-MM-dd`, `yyyy-MM-ddTHH:mm:ss.SSSZ`) and the sObject field
//! types (JSON numbers and booleans, multi-select picklists joined by `;`, `null` to clear;
//! saas-contracts §2).

use rse_connectors::DestinationError;
use rse_connectors::saas::{FieldMap, ValueStyle};
use rse_core::{DataType, Decimal, Field, Record, Schema, Value};
use serde_json::Value as Json;

fn schema() -> Schema {
    Schema::new(
        vec![
            Field::required("id", DataType::Int),
            Field::new("vip", DataType::Bool),
            Field::new("orders", DataType::Int),
            Field::new("score", DataType::Float),
            Field::new("big_score", DataType::Float),
            Field::new("balance", DataType::Decimal),
            Field::new("tier", DataType::String),
            Field::new("signup", DataType::Date),
            Field::new("seen_at", DataType::Timestamp),
            Field::new("interests", DataType::List(Box::new(DataType::String))),
            Field::new("churn_risk", DataType::String),
            Field::new("avatar", DataType::Bytes),
        ],
        &["id"],
    )
    .unwrap()
}

fn map() -> FieldMap {
    serde_json::from_value(serde_json::json!([
        {"field": "vip", "property": "is_vip"},
        {"field": "orders", "property": "order_count"},
        {"field": "score", "property": "score"},
        {"field": "big_score", "property": "big_score"},
        {"field": "balance", "property": "balance"},
        {"field": "tier", "property": "plan_tier"},
        {"field": "signup", "property": "signup_date"},
        {"field": "seen_at", "property": "last_seen"},
        {"field": "interests", "property": "interests"},
        {"field": "churn_risk", "property": "churn_risk"},
    ]))
    .unwrap()
}

fn record() -> Record {
    Record::new(vec![
        Value::Int(7),
        Value::Bool(true),
        Value::Int(-42),
        Value::Float(0.1),
        Value::Float(1e21),
        Value::Decimal(Decimal::parse("1250.50").unwrap()),
        Value::String("gold".into()),
        Value::Date(19_783),
        // 2024-05-01T12:00:00.123456Z: the microseconds past the millisecond are dropped.
        Value::Timestamp(1_714_564_800_123_456),
        Value::List(vec![Value::String("ski".into()), Value::String("golf".into())]),
        Value::Null,
        Value::Bytes(vec![1, 2].into()),
    ])
}

fn golden(style: ValueStyle) -> String {
    let bound = map().bind(&schema(), style, "vendor:test").unwrap();
    Json::Object(bound.properties(&record()).unwrap()).to_string()
}

#[test]
fn hubspot_gets_every_value_as_a_string() {
    assert_eq!(
        golden(ValueStyle::HubSpot),
        r#"{"balance":"1250.5","big_score":"1000000000000000000000","churn_risk":"","interests":"ski;golf","is_vip":"true","last_seen":"2024-05-01T12:00:00.123Z","order_count":"-42","plan_tier":"gold","score":"0.1","signup_date":"2024-03-01"}"#
    );
}

#[test]
fn salesforce_gets_json_natives_and_null_to_clear() {
    assert_eq!(
        golden(ValueStyle::Salesforce),
        r#"{"balance":1250.5,"big_score":1e+21,"churn_risk":null,"interests":"ski;golf","is_vip":true,"last_seen":"2024-05-01T12:00:00.123Z","order_count":-42,"plan_tier":"gold","score":0.1,"signup_date":"2024-03-01"}"#
    );
}

#[test]
fn the_map_is_checked_against_the_schema_naming_field_and_property() {
    let fatal = |map: FieldMap, style| match map.bind(&schema(), style, "hubspot:contacts") {
        Err(DestinationError::Fatal { message, .. }) => message,
        other => panic!("{other:?}"),
    };
    let missing = fatal(FieldMap::new().with("emial", "email"), ValueStyle::HubSpot);
    assert_eq!(
        missing,
        "hubspot:contacts: field `emial` (HubSpot property `email`) is not in the model (fields: id, vip, orders, score, big_score, balance, tier, signup, seen_at, interests, churn_risk, avatar)"
    );
    let bytes = fatal(FieldMap::new().with("avatar", "photo"), ValueStyle::Salesforce);
    assert!(bytes.contains("field `avatar` (Salesforce property `photo`) is of type bytes"), "{bytes}");
    let twice = fatal(FieldMap::new().with("tier", "plan").with("vip", "plan"), ValueStyle::HubSpot);
    assert!(twice.contains("property `plan` is mapped twice"), "{twice}");
    let typo = serde_json::from_str::<FieldMap>(r#"[{"field": "tier", "propery": "plan"}]"#).unwrap_err();
    assert!(typo.to_string().contains("unknown field `propery`"), "{typo}");
}

#[test]
fn unsendable_values_are_refused_per_record_without_the_value() {
    let bound = map().bind(&schema(), ValueStyle::Salesforce, "salesforce:contacts").unwrap();
    let mut nan = record();
    nan.values[3] = Value::Float(f64::NAN);
    let reason = bound.properties(&nan).unwrap_err();
    assert_eq!(reason, "field `score` (Salesforce property `score`): a NaN or infinite float has no number form");

    let mut precise = record();
    precise.values[5] = Value::Decimal(Decimal::parse("98765432109876543.21").unwrap());
    let reason = bound.properties(&precise).unwrap_err();
    assert!(
        reason.starts_with("field `balance` (Salesforce property `balance`): a decimal of 19 significant digits"),
        "{reason}"
    );
    assert!(!reason.contains("98765"), "{reason}");

    let mut semicolon = record();
    semicolon.values[9] = Value::List(vec![Value::String("a;b".into())]);
    let reason = bound.properties(&semicolon).unwrap_err();
    assert!(reason.contains("field `interests`") && reason.contains("holds `;`"), "{reason}");

    let mut far = record();
    far.values[7] = Value::Date(3_000_000);
    let hubspot = map().bind(&schema(), ValueStyle::HubSpot, "hubspot:contacts").unwrap();
    let reason = hubspot.properties(&far).unwrap_err();
    assert_eq!(reason, "field `signup` (HubSpot property `signup_date`): a date outside the years 0001 to 9999");
}
