//! `rediss://` for the Redis destination: the server's CA trusted, another CA or the
//! default roots refused, and no plaintext to a port without TLS.
//!
//! Needs the TLS Redis `.ci/tls-setup` starts (`RSE_REDIS_TLS_URL`, default
//! `rediss://127.0.0.1:6380`) and its CA in `RSE_TEST_TLS_CA` (`other-ca.pem` beside it);
//! without the variable the tests skip, or fail under `CI=true`.
#![cfg(feature = "redis-tls")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use redis::AsyncCommands;
use rse_connectors::{RedisDestination, RedisDestinationOptions};
use rse_core::testing::{service_url, services_required, unique_id};
use rse_core::*;

const GUARD: Duration = Duration::from_secs(60);

fn tls_url() -> String {
    service_url("RSE_REDIS_TLS_URL", "rediss://127.0.0.1:6380")
}

/// The test CA's file, or `None` (after saying why) when it is not set up.
fn ca() -> Option<PathBuf> {
    match std::env::var("RSE_TEST_TLS_CA") {
        Ok(ca) => Some(PathBuf::from(ca)),
        Err(_) if services_required() => {
            panic!("RSE_TEST_TLS_CA is not set and CI=true requires the TLS tests: run .ci/tls-setup")
        }
        Err(_) => {
            eprintln!("skipping: RSE_TEST_TLS_CA is not set (run .ci/tls-setup and export what it prints)");
            None
        }
    }
}

fn batch(prefix: &str) -> ChangeBatch {
    let schema = Schema::new(vec![Field::required("id", DataType::Int), Field::new("name", DataType::String)], &["id"])
        .unwrap()
        .into_arc();
    let record = Record::new(vec![Value::Int(1), Value::from("over tls")]);
    let key = record.key(&schema).unwrap();
    let fingerprint = Fingerprinter::new(FingerprintAlgorithm::default(), &schema).fingerprint(&record);
    let idempotency_key = IdempotencyKey::derive(prefix, &key, Op::Insert, fingerprint, 1);
    let change =
        Change { op: Op::Insert, key, record: Some(record), fingerprint, version: 1, idempotency_key, memo: None };
    ChangeBatch { sync_id: prefix.into(), schema, changes: vec![change] }
}

#[tokio::test]
async fn rediss_with_the_servers_ca_writes_the_hash() {
    let Some(ca) = ca() else { return };
    let prefix = unique_id("rse_tls");
    let options = RedisDestinationOptions::new(format!("{prefix}:{{id}}")).with_root_certificates_file(&ca);
    let dest = tokio::time::timeout(GUARD, RedisDestination::connect(&tls_url(), options))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    dest.check().await.unwrap();
    dest.write(&batch(&prefix)).await.unwrap();

    let certificates = redis::TlsCertificates { client_tls: None, root_cert: Some(std::fs::read(&ca).unwrap()) };
    let client = redis::Client::build_with_tls(tls_url().as_str(), certificates).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let hash: HashMap<String, String> = conn.hgetall(format!("{prefix}:1")).await.unwrap();
    assert_eq!(hash.get("name").map(String::as_str), Some("over tls"));
    let _: () = conn.del(format!("{prefix}:1")).await.unwrap();
}

#[tokio::test]
async fn a_certificate_from_another_ca_or_no_ca_given_is_refused_as_not_trusted() {
    let Some(ca) = ca() else { return };
    let other = ca.with_file_name("other-ca.pem");
    for options in [
        RedisDestinationOptions::new("rse_tls:{id}").with_root_certificates_file(&other),
        // The default roots are the public CAs: verification is on without any option.
        RedisDestinationOptions::new("rse_tls:{id}"),
    ] {
        let error =
            tokio::time::timeout(GUARD, RedisDestination::connect(&tls_url(), options)).await.unwrap().unwrap_err();
        assert!(matches!(error, DestinationError::Fatal { .. }), "{error}");
        let message = error.to_string();
        assert!(message.contains("not trusted") && message.contains("with_root_certificates_file"), "{message}");
    }
}

#[tokio::test]
async fn rediss_to_a_port_without_tls_fails_instead_of_speaking_plaintext() {
    let Some(ca) = ca() else { return };
    let plain = service_url("RSE_REDIS_URL", "redis://127.0.0.1:6379").replacen("redis://", "rediss://", 1);
    let options = RedisDestinationOptions::new("rse_tls:{id}").with_root_certificates_file(&ca);
    let result = tokio::time::timeout(GUARD, RedisDestination::connect(&plain, options)).await.unwrap();
    let error = result.expect_err("a TLS connection to a plaintext port must fail");
    assert!(error.to_string().contains("TLS"), "{error}");
}

#[tokio::test]
async fn certificates_with_a_plain_redis_url_are_a_configuration_error() {
    let Some(ca) = ca() else { return };
    let options = RedisDestinationOptions::new("rse_tls:{id}").with_root_certificates_file(&ca);
    let error = RedisDestination::connect("redis://127.0.0.1:6379", options).await.unwrap_err();
    assert!(matches!(error, DestinationError::Fatal { .. }), "{error}");
    assert!(error.to_string().contains("use `rediss://`"), "{error}");
}
