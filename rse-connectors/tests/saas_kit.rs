//! The SaaS kit (`rse_connectors::saas`) against an in-process OAuth server and API.
#![cfg(feature = "saas")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/oauth_server.rs"]
mod oauth_server;

/// Refresh-token grant: one refresh for all writers, before expiry and after a 401.
#[path = "saas/auth.rs"]
mod auth;
/// The client: user agent, gzip, no redirects, bounded reads, errors without values.
#[path = "saas/client.rs"]
mod client;
/// JWT-bearer grant: assertions verified with the public key by `openssl`.
#[path = "saas/jwt.rs"]
mod jwt;
/// Value styles: golden properties per vendor.
#[path = "saas/mapping.rs"]
mod mapping;
/// Partial failures, dedupe and the job poller.
#[path = "saas/outcomes.rs"]
mod outcomes;
