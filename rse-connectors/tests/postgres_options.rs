//! PostgreSQL options as data: read from a configuration (JSON here), written back the same,
//! an unknown field refused by name, and no secret in their `Debug`. No server needed.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use rse_connectors::{PostgresConnectOptions, PostgresDestination, PostgresDestinationOptions, SslMode};
use rse_core::DestinationError;
use serde_json::json;

/// A client key, as a host might hold it in memory.
const KEY: &str =
    "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIKeyBytesThatMustNeverBeLogged\n-----END PRIVATE KEY-----\n";
const CHAIN: &str = "-----BEGIN CERTIFICATE-----\nMIIBChainBytesOfTheClient\n-----END CERTIFICATE-----\n";

#[test]
fn destination_options_read_from_json_are_the_builders_and_write_back_the_same() {
    let text = json!({
        "table": "customers",
        "schema": "crm",
        "create_table": true,
        "version_guard": true,
        "idempotency_ledger": true,
        "ledger_table": "applied",
        "pool_size": 8,
        "max_batch_rows": 1000,
        "copy_inserts": false,
        "write_timeout": "30s",
        "connect": {
            "connect_timeout": "5s",
            "pool_wait_timeout": "1m",
            "ssl_mode": "verify-full",
            "root_certificates": {"file": "/etc/rse/db-ca.pem"},
            "client_certificate": {"chain": {"pem": CHAIN}, "key": {"pem": KEY}},
            "danger_accept_invalid_certificates": false
        }
    });
    let read: PostgresDestinationOptions = serde_json::from_value(text.clone()).unwrap();
    let built = PostgresDestinationOptions::new("customers")
        .with_schema("crm")
        .with_create_table(true)
        .with_version_guard(true)
        .with_idempotency_ledger(true)
        .with_ledger_table("applied")
        .with_pool_size(8)
        .with_max_batch_rows(1000)
        .with_copy_inserts(false)
        .with_write_timeout(Duration::from_secs(30))
        .with_connect_options(
            PostgresConnectOptions::new()
                .with_connect_timeout(Duration::from_secs(5))
                .with_pool_wait_timeout(Duration::from_secs(60))
                .with_ssl_mode(SslMode::VerifyFull)
                .with_root_certificates_file("/etc/rse/db-ca.pem")
                .with_client_certificate_pem(CHAIN, KEY),
        );
    assert_eq!(serde_json::to_value(&read).unwrap(), text);
    assert_eq!(serde_json::to_value(&built).unwrap(), text);
    let again: PostgresDestinationOptions = serde_json::from_str(&serde_json::to_string(&read).unwrap()).unwrap();
    assert_eq!(serde_json::to_value(&again).unwrap(), text);
}

#[test]
fn options_left_out_of_a_configuration_take_their_defaults() {
    let read: PostgresDestinationOptions = serde_json::from_value(json!({"table": "customers"})).unwrap();
    assert_eq!(
        serde_json::to_value(&read).unwrap(),
        serde_json::to_value(PostgresDestinationOptions::new("customers")).unwrap()
    );
    let connect: PostgresConnectOptions = serde_json::from_value(json!({})).unwrap();
    assert_eq!(serde_json::to_value(&connect).unwrap(), serde_json::to_value(PostgresConnectOptions::new()).unwrap());
}

#[test]
fn an_unknown_or_misspelt_option_is_refused_by_name() {
    let error = serde_json::from_value::<PostgresDestinationOptions>(json!({"table": "t", "tabel": "u"})).unwrap_err();
    assert!(error.to_string().contains("`tabel`"), "{error}");
    let error =
        serde_json::from_value::<PostgresDestinationOptions>(json!({"table": "t", "connect": {"sslmode": "require"}}))
            .unwrap_err();
    assert!(error.to_string().contains("`sslmode`"), "{error}");
    let error = serde_json::from_value::<PostgresConnectOptions>(json!({"ssl_mode": "allow"})).unwrap_err();
    assert!(error.to_string().contains("sslmode=allow is not supported"), "{error}");
    let error = serde_json::from_value::<PostgresConnectOptions>(json!({"connect_timeout": "soon"})).unwrap_err();
    assert!(error.to_string().contains("`soon` is not a duration"), "{error}");
    let error = serde_json::from_value::<PostgresConnectOptions>(json!({"root_certificates": {"path": "/ca.pem"}}))
        .unwrap_err();
    assert!(error.to_string().contains("`path`"), "{error}");
}

#[test]
fn a_configuration_without_a_table_is_refused_naming_the_field() {
    let options: PostgresDestinationOptions = serde_json::from_value(json!({"schema": "crm"})).unwrap();
    match PostgresDestination::new("postgres://rse@127.0.0.1:1/db", options) {
        Err(DestinationError::Fatal { message, .. }) => assert!(message.contains("`table`"), "{message}"),
        other => panic!("a destination without a table must be refused, got {other:?}"),
    }
}

#[test]
fn debug_shows_no_password_key_or_certificate() {
    let connect =
        PostgresConnectOptions::new().with_client_certificate_pem(CHAIN, KEY).with_root_certificates_pem(CHAIN);
    let options = PostgresDestinationOptions::new("customers").with_connect_options(connect.clone());
    for shown in [format!("{connect:?}"), format!("{options:?}"), format!("{options:#?}")] {
        assert!(!shown.contains("KeyBytes") && !shown.contains("ChainBytes"), "{shown}");
    }
    for url in ["postgres://rse:hunter2@127.0.0.1:1/db", "host=127.0.0.1 port=1 user=rse password=hunter2 dbname=db"] {
        let destination = PostgresDestination::new(url, PostgresDestinationOptions::new("customers")).unwrap();
        let shown = format!("{destination:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("customers"), "{shown}");
    }
}

#[test]
fn state_store_options_read_from_json_and_a_schema_name_alone_is_options() {
    use rse_connectors::state::PostgresStateStoreOptions;
    let text = json!({"schema": "crm_sync", "run_retention": 30, "pool_size": 2, "connect": {"ssl_mode": "require"}});
    let read: PostgresStateStoreOptions = serde_json::from_value(text).unwrap();
    let built = PostgresStateStoreOptions::new("crm_sync")
        .with_run_retention(30)
        .with_pool_size(2)
        .with_connect_options(PostgresConnectOptions::new().with_ssl_mode(SslMode::Require));
    let written = serde_json::to_value(&read).unwrap();
    assert_eq!(written, serde_json::to_value(&built).unwrap());
    let again: PostgresStateStoreOptions = serde_json::from_value(written.clone()).unwrap();
    assert_eq!(serde_json::to_value(&again).unwrap(), written);
    let named: PostgresStateStoreOptions = "crm_sync".into();
    assert_eq!(serde_json::to_value(named).unwrap()["schema"], "crm_sync");
    let defaults: PostgresStateStoreOptions = serde_json::from_value(json!({})).unwrap();
    assert_eq!(serde_json::to_value(defaults).unwrap()["schema"], "rse_state");
    let error = serde_json::from_value::<PostgresStateStoreOptions>(json!({"retention": 3})).unwrap_err();
    assert!(error.to_string().contains("`retention`"), "{error}");
}
