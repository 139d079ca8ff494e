//! A log filter for the drivers under the connectors, whose debug and trace records carry row values.
//!
//! rse's own logs name fields, counts and hashed keys, never values. The drivers it builds on
//! are not so careful below INFO, and a host that turns on DEBUG for everything gets their
//! records too. Read in their sources (the versions in rse's `Cargo.lock`):
//!
//! - `tokio_postgres` (through the `log` crate): at DEBUG, every statement it executes with
//!   its parameters — the values of every row an upsert writes, and the keys and refused
//!   records a `PostgresStateStore` commits.
//! - `async_nats` (through `tracing`): at TRACE, every message published, with its subject
//!   (where the key values of a subject template go) and its headers.
//! - `reqwest` (through `log`): at TRACE, under `reqwest::connect::verbose`, every byte a
//!   client with `connection_verbose` on sends and receives: request bodies and headers.
//!   rse's own HTTP client leaves it off; the cap costs nothing if yours does too.
//!
//! The others log nothing of a row: `rusqlite` has no logging; `redis` logs only with its
//! `log` feature, which rse does not enable; `deadpool-postgres` warns of broken connections;
//! `hyper-util` and `rustls` log hosts, addresses and handshakes.
//!
//! ```
//! // tracing-subscriber with `env-filter` (or `Targets`, or env_logger's `RUST_LOG`):
//! // the host's own level first, then the cap, which wins for these targets.
//! let directives = format!("debug,{}", rse_connectors::log_filter::DRIVER_DIRECTIVES);
//! # assert!(directives.ends_with("reqwest=info"));
//! ```

/// The log targets (and target prefixes) of drivers that put row values in records below
/// INFO. A record whose target is one of these or starts with one and `::` is one of theirs.
pub const DRIVER_TARGETS: &[&str] = &["tokio_postgres", "async_nats", "reqwest"];

/// Filter directives that cap each of [`DRIVER_TARGETS`] at INFO, in the `target=level`
/// syntax that `tracing_subscriber::EnvFilter`, `tracing_subscriber::filter::Targets` and
/// env_logger's `RUST_LOG` all read. Put it after the host's own directives: each of these
/// reads the most specific target's directive, so the cap holds under a global `debug` or
/// `trace`, and a host can still raise one driver on purpose with a directive of its own for
/// a longer target.
pub const DRIVER_DIRECTIVES: &str = "tokio_postgres=info,async_nats=info,reqwest=info";

/// Whether `target` belongs to one of [`DRIVER_TARGETS`]: for a host filtering records by
/// hand, such a record must be dropped unless it is at INFO or above.
pub fn is_driver_target(target: &str) -> bool {
    DRIVER_TARGETS
        .iter()
        .any(|driver| target.strip_prefix(driver).is_some_and(|rest| rest.is_empty() || rest.starts_with("::")))
}
