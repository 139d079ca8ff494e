//! TLS for the NATS destination: the server's CA given, the CA missing, and TLS required
//! of a server without it.
//!
//! Needs the TLS NATS server `.ci/tls-setup` starts (`RSE_NATS_TLS_URL`, default
//! `tls://127.0.0.1:4223`) and its CA in `RSE_TEST_TLS_CA`; without the variable the tests
//! skip, or fail under `CI=true`.
#![cfg(feature = "nats")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use rse_connectors::{NatsDestination, NatsDestinationOptions};
use rse_core::testing::{service_url, services_required};
use rse_core::{Destination, DestinationError};

const GUARD: Duration = Duration::from_secs(60);

fn tls_url() -> String {
    service_url("RSE_NATS_TLS_URL", "tls://127.0.0.1:4223")
}

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

#[tokio::test]
async fn tls_with_the_servers_ca_reaches_jetstream() {
    let Some(ca) = ca() else { return };
    let options = NatsDestinationOptions::new("rse.tls.{id}").with_root_certificates(ca);
    let dest = tokio::time::timeout(GUARD, NatsDestination::connect(&tls_url(), options))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    dest.check().await.unwrap();
}

#[tokio::test]
async fn a_server_certificate_from_an_unknown_ca_is_refused_saying_to_give_the_ca() {
    if ca().is_none() {
        return;
    }
    let options = NatsDestinationOptions::new("rse.tls.{id}");
    let error = tokio::time::timeout(GUARD, NatsDestination::connect(&tls_url(), options)).await.unwrap().unwrap_err();
    assert!(matches!(error, DestinationError::Fatal { .. }), "{error}");
    assert!(error.to_string().contains("with_root_certificates"), "{error}");
}

#[tokio::test]
async fn requiring_tls_of_a_server_without_it_fails() {
    let Some(ca) = ca() else { return };
    let plain = service_url("RSE_NATS_URL", "nats://127.0.0.1:4222");
    let options = NatsDestinationOptions::new("rse.tls.{id}").with_root_certificates(ca).with_require_tls(true);
    let result = tokio::time::timeout(GUARD, NatsDestination::connect(&plain, options)).await.unwrap();
    assert!(result.is_err(), "connected in plaintext although TLS was required");
}
