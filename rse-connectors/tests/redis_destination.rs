//! `RedisDestination` against the real Redis server (RSE_REDIS_URL).
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use rse_connectors::{RedisDestination, RedisDestinationOptions};
use rse_core::memory::{MemorySource, MemoryStateStore};
use rse_core::testing::{
    DestinationReadback, check_destination, conformance_schema, service_url, unavailable, unique_id,
};
use rse_core::*;

fn url() -> String {
    service_url("RSE_REDIS_URL", "redis://127.0.0.1:6379")
}

async fn connect() -> Option<ConnectionManager> {
    let url = url();
    let client = redis::Client::open(url.as_str()).unwrap();
    match tokio::time::timeout(Duration::from_secs(5), ConnectionManager::new(client)).await {
        Ok(Ok(c)) => Some(c),
        Ok(Err(e)) => {
            unavailable("Redis", &url, e);
            None
        }
        Err(e) => {
            unavailable("Redis", &url, e);
            None
        }
    }
}

/// Deletes every key under `prefix`.
async fn clean(conn: &mut ConnectionManager, prefix: &str) {
    let keys: Vec<String> = conn.keys(format!("{prefix}:*")).await.unwrap();
    if !keys.is_empty() {
        let _: () = conn.del(keys).await.unwrap();
    }
}

/// Reads a hash back as a record of the schema (fields parsed by type; missing = null).
struct Readback {
    conn: ConnectionManager,
    prefix: String,
}

#[async_trait]
impl DestinationReadback for Readback {
    async fn get(&self, schema: &Schema, key: &Key) -> Result<Option<Record>, BoxError> {
        let id = key.decode()?[0].as_i64().ok_or("int key")?;
        let mut conn = self.conn.clone();
        let hash: HashMap<String, String> = conn.hgetall(format!("{}:{id}", self.prefix)).await?;
        if hash.is_empty() {
            return Ok(None);
        }
        let values = schema
            .fields()
            .iter()
            .map(|f| match (hash.get(&f.name), &f.data_type) {
                (None, _) => Value::Null,
                (Some(s), DataType::Int) => Value::Int(s.parse().unwrap()),
                (Some(s), DataType::Float) => Value::Float(s.parse().unwrap()),
                (Some(s), DataType::Bool) => Value::Bool(s == "true"),
                (Some(s), _) => Value::from(s.as_str()),
            })
            .collect();
        Ok(Some(Record::new(values)))
    }
}

fn changes(schema: &Arc<Schema>, items: Vec<(Op, Record)>) -> ChangeBatch {
    let mut fp = Fingerprinter::new(FingerprintAlgorithm::default(), schema);
    let changes = items
        .into_iter()
        .map(|(op, record)| {
            let key = record.key(schema).unwrap();
            let fingerprint = fp.fingerprint(&record);
            let idempotency_key = IdempotencyKey::derive("r", &key, op, fingerprint, 0);
            Change {
                op,
                key,
                record: (op != Op::Delete).then_some(record),
                fingerprint,
                version: 0,
                idempotency_key,
                memo: None,
            }
        })
        .collect();
    ChangeBatch { sync_id: "r".into(), schema: schema.clone(), changes }
}

/// The hash's field names, sorted, without the list of fields rse keeps in it.
fn field_names(hash: &HashMap<String, String>) -> Vec<&str> {
    let mut names: Vec<&str> = hash.keys().map(String::as_str).filter(|n| *n != RSE_FIELDS).collect();
    names.sort_unstable();
    names
}

/// The hash field in which rse lists the fields it wrote (see the module docs).
const RSE_FIELDS: &str = "_rse_fields";

fn row(id: i64, name: Option<&str>) -> Record {
    Record::new(vec![Value::Int(id), name.into(), Value::Float(0.25), Value::Bool(false)])
}

#[tokio::test]
async fn passes_the_conformance_suite_atomic_and_per_key() {
    let Some(mut conn) = connect().await else { return };
    for atomic in [true, false] {
        let prefix = unique_id("rse_conf");
        let options = RedisDestinationOptions::new(format!("{prefix}:{{id}}")).with_atomic(atomic);
        let readback = Readback { conn: conn.clone(), prefix: prefix.clone() };
        let dest = RedisDestination::connect(&url(), options.clone()).await.unwrap();
        check_destination(&dest, Some(&readback)).await.unwrap_or_else(|e| panic!("atomic={atomic}: {e}"));
        let boxed: Box<dyn Destination> = Box::new(RedisDestination::connect(&url(), options.clone()).await.unwrap());
        check_destination(boxed.as_ref(), Some(&readback)).await.unwrap();
        let shared: Arc<dyn Destination> = Arc::new(RedisDestination::connect(&url(), options).await.unwrap());
        check_destination(shared.as_ref(), Some(&readback)).await.unwrap();
        clean(&mut conn, &prefix).await;
    }
}

#[tokio::test]
async fn hashes_drop_null_fields_expire_and_go_on_delete() {
    let Some(mut conn) = connect().await else { return };
    let prefix = unique_id("rse_ttl");
    let dest = RedisDestination::connect(
        &url(),
        RedisDestinationOptions::new(format!("{prefix}:{{id}}")).with_ttl(Duration::from_secs(300)),
    )
    .await
    .unwrap();
    let schema = conformance_schema();
    dest.write(&changes(&schema, vec![(Op::Insert, row(1, Some("ann"))), (Op::Insert, row(2, Some("bob")))]))
        .await
        .unwrap();
    let hash: HashMap<String, String> = conn.hgetall(format!("{prefix}:1")).await.unwrap();
    assert_eq!(hash.get("name").map(String::as_str), Some("ann"));
    assert_eq!(hash.get("score").map(String::as_str), Some("0.25"));
    let ttl: i64 = conn.ttl(format!("{prefix}:1")).await.unwrap();
    assert!(ttl > 200 && ttl <= 300, "ttl {ttl}");

    // A field that became null leaves the hash; a field another writer added stays (rse
    // never deletes what it did not write). The TTL is set again.
    let _: () = conn.hset(format!("{prefix}:1"), "foreign", "kept").await.unwrap();
    let _: () = conn.persist(format!("{prefix}:1")).await.unwrap();
    dest.write(&changes(&schema, vec![(Op::Update, row(1, None))])).await.unwrap();
    let hash: HashMap<String, String> = conn.hgetall(format!("{prefix}:1")).await.unwrap();
    assert_eq!(field_names(&hash), ["active", "foreign", "id", "score"]);
    assert_eq!(hash.get("foreign").map(String::as_str), Some("kept"));
    let ttl: i64 = conn.ttl(format!("{prefix}:1")).await.unwrap();
    assert!(ttl > 200 && ttl <= 300, "ttl {ttl}");

    dest.write(&changes(&schema, vec![(Op::Delete, row(2, None))])).await.unwrap();
    let exists: bool = conn.exists(format!("{prefix}:2")).await.unwrap();
    assert!(!exists);
    clean(&mut conn, &prefix).await;
}

#[tokio::test]
async fn per_key_mode_reports_failures_per_key_and_atomic_mode_fails_the_batch() {
    let Some(mut conn) = connect().await else { return };
    let prefix = unique_id("rse_perkey");
    // Key 2 holds a string, so HSET on it fails with WRONGTYPE.
    let _: () = conn.set(format!("{prefix}:2"), "not a hash").await.unwrap();
    let schema = conformance_schema();
    let batch = changes(
        &schema,
        vec![(Op::Insert, row(1, Some("a"))), (Op::Insert, row(2, Some("b"))), (Op::Insert, row(3, Some("c")))],
    );

    let atomic =
        RedisDestination::connect(&url(), RedisDestinationOptions::new(format!("{prefix}:{{id}}"))).await.unwrap();
    assert!(atomic.write(&batch).await.is_err(), "a failing command fails an atomic batch");

    let per_key =
        RedisDestination::connect(&url(), RedisDestinationOptions::new(format!("{prefix}:{{id}}")).with_atomic(false))
            .await
            .unwrap();
    let out = per_key.write(&batch).await.unwrap();
    assert_eq!(out.outcomes[0], ChangeOutcome::Applied);
    assert!(
        matches!(&out.outcomes[1], ChangeOutcome::Rejected { reason, .. } if reason.contains("WRONGTYPE")),
        "{:?}",
        out.outcomes[1]
    );
    assert_eq!(out.outcomes[2], ChangeOutcome::Applied);
    let exists: bool = conn.exists(format!("{prefix}:3")).await.unwrap();
    assert!(exists);
    clean(&mut conn, &prefix).await;
}

#[tokio::test]
async fn a_template_naming_no_key_column_is_refused_with_the_key_columns() {
    if connect().await.is_none() {
        return;
    }
    let dest = RedisDestination::connect(&url(), RedisDestinationOptions::new("cache:{user}")).await.unwrap();
    match dest.write(&changes(&conformance_schema(), vec![(Op::Insert, row(1, Some("a")))])).await {
        Err(DestinationError::Fatal { message, .. }) => {
            assert!(message.contains("{user}") && message.contains("id"), "{message}")
        }
        other => panic!("expected a fatal configuration error, got {other:?}"),
    }
    assert!(matches!(
        RedisDestination::connect("redis://127.0.0.1:1", RedisDestinationOptions::new("x:{id}")).await,
        Err(DestinationError::Transient { .. })
    ));
}

#[tokio::test]
async fn the_runner_keeps_a_feature_cache_in_step_with_the_model() {
    let Some(mut conn) = connect().await else { return };
    let prefix = unique_id("rse_sync");
    let schema = conformance_schema();
    let source = MemorySource::new(schema.clone(), (1..=300).map(|i| row(i, Some("v1"))).collect());
    let dest =
        RedisDestination::connect(&url(), RedisDestinationOptions::new(format!("{prefix}:{{id}}"))).await.unwrap();
    let sync = SyncJob::builder(unique_id("redis"))
        .source(source.clone())
        .destination(dest)
        .state(MemoryStateStore::new())
        .mode(Mode::Mirror)
        .options(SyncOptions::default().with_batch_rows(64).with_linger(Duration::from_millis(5)))
        .build()
        .await
        .unwrap();
    assert_eq!(sync.run().await.unwrap().counts.applied.insert, 300);
    source.upsert(row(10, Some("v2")));
    source.remove(&Key::from_values(&[Value::Int(11)]));
    let report = sync.run().await.unwrap();
    assert_eq!((report.counts.applied.update, report.counts.applied.delete), (1, 1), "{report}");
    let name: String = conn.hget(format!("{prefix}:10"), "name").await.unwrap();
    assert_eq!(name, "v2");
    let keys: Vec<String> = conn.keys(format!("{prefix}:*")).await.unwrap();
    assert_eq!(keys.len(), 299);
    clean(&mut conn, &prefix).await;
}

fn composite_changes(schema: &Arc<Schema>, rows: &[(&str, &str, &str)]) -> ChangeBatch {
    changes(
        schema,
        rows.iter().map(|(a, b, v)| (Op::Insert, Record::new(vec![(*a).into(), (*b).into(), (*v).into()]))).collect(),
    )
}

#[tokio::test]
async fn composite_keys_holding_the_delimiter_get_distinct_hashes() {
    let Some(mut conn) = connect().await else { return };
    let prefix = unique_id("rse_composite");
    let schema = Schema::new(
        vec![
            Field::required("k1", DataType::String),
            Field::required("k2", DataType::String),
            Field::new("v", DataType::String),
        ],
        &["k1", "k2"],
    )
    .unwrap()
    .into_arc();
    let dest = RedisDestination::connect(&url(), RedisDestinationOptions::new(format!("{prefix}:{{k1}}:{{k2}}")))
        .await
        .unwrap();
    let batch =
        composite_changes(&schema, &[("a:b", "c", "first"), ("a", "b:c", "second"), ("plain-1", "x_y.z@w", "simple")]);
    assert_eq!(dest.write(&batch).await.unwrap(), WriteOutcome::all_applied(3));

    let mut keys: Vec<String> = conn.keys(format!("{prefix}:*")).await.unwrap();
    keys.sort();
    assert_eq!(keys.len(), 3, "two records share a Redis key: {keys:?}");
    let mut held = Vec::new();
    for key in &keys {
        let hash: HashMap<String, String> = conn.hgetall(key).await.unwrap();
        held.push((hash["k1"].clone(), hash["k2"].clone(), hash["v"].clone()));
    }
    held.sort();
    assert_eq!(
        held,
        [
            ("a".into(), "b:c".into(), "second".into()),
            ("a:b".into(), "c".into(), "first".into()),
            ("plain-1".into(), "x_y.z@w".into(), "simple".into())
        ]
    );
    // The documented escaping; a key without `%`, `:` or braces keeps the key it always had.
    let v: String = conn.hget(format!("{prefix}:a%3Ab:c"), "v").await.unwrap();
    assert_eq!(v, "first");
    let v: String = conn.hget(format!("{prefix}:a:b%3Ac"), "v").await.unwrap();
    assert_eq!(v, "second");
    let v: String = conn.hget(format!("{prefix}:plain-1:x_y.z@w"), "v").await.unwrap();
    assert_eq!(v, "simple");
    clean(&mut conn, &prefix).await;
}

#[tokio::test]
async fn a_field_dropped_from_the_mapping_leaves_the_hash_on_the_next_write() {
    let Some(mut conn) = connect().await else { return };
    let prefix = unique_id("rse_dropped");
    let dest = RedisDestination::connect(
        &url(),
        RedisDestinationOptions::new(format!("{prefix}:{{id}}")).with_ttl(Duration::from_secs(300)),
    )
    .await
    .unwrap();
    let before = Schema::new(
        vec![
            Field::required("id", DataType::Int),
            Field::new("email", DataType::String),
            Field::new("tier", DataType::String),
        ],
        &["id"],
    )
    .unwrap()
    .into_arc();
    let record = Record::new(vec![Value::Int(1), Value::from("ann@example.com"), Value::from("gold")]);
    dest.write(&changes(&before, vec![(Op::Insert, record)])).await.unwrap();
    let hash: HashMap<String, String> = conn.hgetall(format!("{prefix}:1")).await.unwrap();
    assert_eq!(hash.get("email").map(String::as_str), Some("ann@example.com"));

    // The mapping no longer selects `email`.
    let after = Schema::new(vec![Field::required("id", DataType::Int), Field::new("tier", DataType::String)], &["id"])
        .unwrap()
        .into_arc();
    let record = Record::new(vec![Value::Int(1), Value::from("silver")]);
    assert_eq!(dest.write(&changes(&after, vec![(Op::Update, record)])).await.unwrap(), WriteOutcome::all_applied(1));
    let hash: HashMap<String, String> = conn.hgetall(format!("{prefix}:1")).await.unwrap();
    assert_eq!(
        hash,
        HashMap::from([
            ("id".to_owned(), "1".to_owned()),
            ("tier".to_owned(), "silver".to_owned()),
            (RSE_FIELDS.to_owned(), r#"["id","tier"]"#.to_owned())
        ]),
        "the hash keeps a field the record no longer has"
    );
    let ttl: i64 = conn.ttl(format!("{prefix}:1")).await.unwrap();
    assert!(ttl > 200 && ttl <= 300, "the rewritten hash lost its TTL: {ttl}");
    clean(&mut conn, &prefix).await;
}

#[tokio::test]
async fn a_template_separator_is_escaped_and_a_template_without_one_is_refused() {
    let Some(mut conn) = connect().await else { return };
    let prefix = unique_id("rse_separator");
    let schema = Schema::new(
        vec![
            Field::required("k1", DataType::String),
            Field::required("k2", DataType::String),
            Field::new("v", DataType::String),
        ],
        &["k1", "k2"],
    )
    .unwrap()
    .into_arc();
    let batch = composite_changes(&schema, &[("a-b", "c", "first"), ("a", "b-c", "second")]);
    let dest = RedisDestination::connect(&url(), RedisDestinationOptions::new(format!("{prefix}:{{k1}}-{{k2}}")))
        .await
        .unwrap();
    assert_eq!(dest.write(&batch).await.unwrap(), WriteOutcome::all_applied(2));
    let v: String = conn.hget(format!("{prefix}:a%2Db-c"), "v").await.unwrap();
    assert_eq!(v, "first");
    let v: String = conn.hget(format!("{prefix}:a-b%2Dc"), "v").await.unwrap();
    assert_eq!(v, "second");

    for template in [format!("{prefix}:{{k1}}{{k2}}"), format!("{prefix}:{{k1}}x{{k2}}")] {
        let dest = RedisDestination::connect(&url(), RedisDestinationOptions::new(template.clone())).await.unwrap();
        match dest.write(&batch).await {
            Err(DestinationError::Fatal { message, .. }) => {
                assert!(message.contains(&template) && message.contains("separator"), "{message}")
            }
            other => panic!("expected a configuration error for `{template}`, got {other:?}"),
        }
    }
    let keys: Vec<String> = conn.keys(format!("{prefix}:*")).await.unwrap();
    assert_eq!(keys.len(), 2);
    clean(&mut conn, &prefix).await;
}

/// A hash rse shares with other writers: each write removes exactly the fields rse wrote
/// before and no longer writes (dropped from the mapping, or now null), whatever their
/// names, and leaves every other writer's field alone.
#[tokio::test]
async fn only_fields_rse_wrote_and_no_longer_writes_leave_a_shared_hash() {
    let Some(mut conn) = connect().await else { return };
    let prefix = unique_id("rse_shared");
    let key = format!("{prefix}:1");
    let dest =
        RedisDestination::connect(&url(), RedisDestinationOptions::new(format!("{prefix}:{{id}}"))).await.unwrap();
    // A field name with every character an encoding of the list could trip on.
    let odd = "we\"ird, [name]\\ ü";
    let schema = |fields: &[&str]| {
        let mut all = vec![Field::required("id", DataType::Int)];
        all.extend(fields.iter().map(|f| Field::new(*f, DataType::String)));
        Schema::new(all, &["id"]).unwrap().into_arc()
    };
    let wide = schema(&["email", "tier", odd]);
    let record = Record::new(vec![Value::Int(1), "ann@example.com".into(), "gold".into(), "x".into()]);
    assert_eq!(dest.write(&changes(&wide, vec![(Op::Insert, record)])).await.unwrap(), WriteOutcome::all_applied(1));
    // Another writer adds its own fields to the same hash.
    let _: () = conn.hset(&key, "clicks", "7").await.unwrap();
    let _: () = conn.hset(&key, "email_hint", "a…").await.unwrap();

    // `email` becomes null: it leaves; the other writer's fields stay.
    let record = Record::new(vec![Value::Int(1), Value::Null, "gold".into(), "x".into()]);
    assert_eq!(dest.write(&changes(&wide, vec![(Op::Update, record)])).await.unwrap(), WriteOutcome::all_applied(1));
    let hash: HashMap<String, String> = conn.hgetall(&key).await.unwrap();
    assert_eq!(field_names(&hash), ["clicks", "email_hint", "id", "tier", odd]);

    // The mapping drops `tier` and the odd field: they leave; the other writer's fields stay.
    let narrow = schema(&["email"]);
    let record = Record::new(vec![Value::Int(1), "ann@example.org".into()]);
    assert_eq!(dest.write(&changes(&narrow, vec![(Op::Update, record)])).await.unwrap(), WriteOutcome::all_applied(1));
    let hash: HashMap<String, String> = conn.hgetall(&key).await.unwrap();
    assert_eq!(field_names(&hash), ["clicks", "email", "email_hint", "id"]);
    assert_eq!(hash.get("clicks").map(String::as_str), Some("7"));

    // The other writer now sets a field named like one rse no longer writes: it is theirs.
    let _: () = conn.hset(&key, "tier", "theirs").await.unwrap();
    let record = Record::new(vec![Value::Int(1), "ann@example.org".into()]);
    dest.write(&changes(&narrow, vec![(Op::Update, record)])).await.unwrap();
    let tier: Option<String> = conn.hget(&key, "tier").await.unwrap();
    assert_eq!(tier.as_deref(), Some("theirs"));

    // A delete removes the key, as it always did.
    dest.write(&changes(&narrow, vec![(Op::Delete, Record::new(vec![Value::Int(1), Value::Null]))])).await.unwrap();
    let exists: bool = conn.exists(&key).await.unwrap();
    assert!(!exists);
    clean(&mut conn, &prefix).await;
}

/// A hash written before rse listed its fields (or whose list another writer spoiled): rse
/// cannot tell its own old fields from other writers', so it removes only the fields of
/// the current schema that are null — as earlier versions did — and from then on keeps
/// its list.
#[tokio::test]
async fn a_hash_without_rse_s_list_loses_only_the_schema_s_null_fields() {
    let Some(mut conn) = connect().await else { return };
    let prefix = unique_id("rse_legacy");
    let dest =
        RedisDestination::connect(&url(), RedisDestinationOptions::new(format!("{prefix}:{{id}}"))).await.unwrap();
    let schema = conformance_schema();
    // Key 1 has no list; keys 3 to 5 have lists spoiled by another writer.
    let spoiled = [(3, Some("not json [")), (4, Some(r#"{"name": true}"#)), (5, Some("7"))];
    let keys: Vec<i64> = [1].into_iter().chain(spoiled.iter().map(|(k, _)| *k)).collect();
    for (key, list) in [(1, None)].into_iter().chain(spoiled) {
        let key = format!("{prefix}:{key}");
        let mut fields = vec![("id", "1"), ("name", "old"), ("dropped", "old"), ("foreign", "kept")];
        if let Some(list) = list {
            fields.push((RSE_FIELDS, list));
        }
        let _: () = conn.hset_multiple(&key, &fields).await.unwrap();
    }
    let out = dest.write(&changes(&schema, keys.iter().map(|k| (Op::Update, row(*k, None))).collect())).await.unwrap();
    assert_eq!(out, WriteOutcome::all_applied(keys.len()));
    for key in keys.iter().map(|k| format!("{prefix}:{k}")) {
        let hash: HashMap<String, String> = conn.hgetall(&key).await.unwrap();
        assert_eq!(field_names(&hash), ["active", "dropped", "foreign", "id", "score"], "{key}");
        assert_eq!(hash.get(RSE_FIELDS).map(String::as_str), Some(r#"["id","score","active"]"#), "{key}");
    }
    clean(&mut conn, &prefix).await;
}

#[tokio::test]
async fn a_schema_field_named_like_rse_s_list_is_refused() {
    if connect().await.is_none() {
        return;
    }
    let prefix = unique_id("rse_reserved");
    let dest =
        RedisDestination::connect(&url(), RedisDestinationOptions::new(format!("{prefix}:{{id}}"))).await.unwrap();
    let schema =
        Schema::new(vec![Field::required("id", DataType::Int), Field::new(RSE_FIELDS, DataType::String)], &["id"])
            .unwrap()
            .into_arc();
    match dest.write(&changes(&schema, vec![(Op::Insert, Record::new(vec![Value::Int(1), "x".into()]))])).await {
        Err(DestinationError::Fatal { message, .. }) => assert!(message.contains(RSE_FIELDS), "{message}"),
        other => panic!("expected a configuration error naming `{RSE_FIELDS}`, got {other:?}"),
    }
}

/// Options are data a host keeps in its configuration files.
#[test]
fn options_round_trip_through_json_and_refuse_unknown_fields() {
    let options = RedisDestinationOptions::new("features:{user_id}")
        .with_ttl(Duration::from_secs(3_600))
        .with_atomic(false)
        .with_max_batch_rows(250)
        .with_max_concurrency(2)
        .with_root_certificates_file("/etc/rse/ca.pem")
        .with_client_certificate_pem("-----BEGIN CERTIFICATE-----\n", "-----BEGIN PRIVATE KEY-----\nkey-999\n");
    let json = serde_json::to_value(&options).unwrap();
    assert_eq!(json["ttl"], "1h", "{json}");
    assert_eq!(json["root_certificates"], serde_json::json!({"file": "/etc/rse/ca.pem"}));
    assert_eq!(serde_json::from_value::<RedisDestinationOptions>(json.clone()).unwrap(), options, "{json}");

    let minimal: RedisDestinationOptions = serde_json::from_str(r#"{"key_template": "f:{id}"}"#).unwrap();
    assert_eq!(minimal, RedisDestinationOptions::new("f:{id}"));
    for (text, unknown) in [
        (r#"{"key_template": "f:{id}", "tll": "1h"}"#, "tll"),
        (r#"{"key_template": "f:{id}", "root_certificates": {"path": "/ca.pem"}}"#, "path"),
        (
            r#"{"key_template": "f:{id}", "client_certificate": {"chain": {"file": "/c"}, "key": {"file": "/k"}, "pass": "x"}}"#,
            "pass",
        ),
    ] {
        let error = serde_json::from_str::<RedisDestinationOptions>(text).unwrap_err().to_string();
        assert!(
            error.contains(&format!("unknown field `{unknown}`"))
                || error.contains(&format!("unknown variant `{unknown}`")),
            "{text}: {error}"
        );
    }
    let error = serde_json::from_str::<RedisDestinationOptions>(r#"{"ttl": "1h"}"#).unwrap_err().to_string();
    assert!(error.contains("missing field `key_template`"), "{error}");
}

#[test]
fn debug_of_options_shows_no_client_key() {
    let options = RedisDestinationOptions::new("f:{id}")
        .with_root_certificates_pem("-----BEGIN CERTIFICATE-----\nca-111\n")
        .with_client_certificate_pem(
            "-----BEGIN CERTIFICATE-----\ncert-222\n",
            "-----BEGIN PRIVATE KEY-----\nkey-333\n",
        );
    let shown = format!("{options:?}");
    for secret in ["ca-111", "cert-222", "key-333", "PRIVATE KEY"] {
        assert!(!shown.contains(secret), "`{secret}` leaked into {shown}");
    }
}

/// A host that already holds a Redis client or connection manager writes through it.
#[tokio::test]
async fn a_hosts_own_client_or_connection_manager_passes_the_conformance_suite() {
    let Some(mut conn) = connect().await else { return };
    let prefix = unique_id("rse_from_client");
    let options = RedisDestinationOptions::new(format!("{prefix}:{{id}}"));
    let readback = Readback { conn: conn.clone(), prefix: prefix.clone() };
    let client = redis::Client::open(url().as_str()).unwrap();
    let dest = RedisDestination::from_client(client, options.clone()).await.unwrap();
    check_destination(&dest, Some(&readback)).await.unwrap();
    let shared = RedisDestination::from_connection_manager(conn.clone(), options);
    check_destination(&shared, Some(&readback)).await.unwrap();
    clean(&mut conn, &prefix).await;
}
