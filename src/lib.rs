#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc = include_str!("../README.md")]
//!
//! ## This crate
//!
//! The facade: re-exports [`rse_core`] (always), `rse_sources` and `rse_connectors` (behind
//! the `sources` and `connectors` features).

pub use rse_core::*;

#[cfg(feature = "connectors")]
pub use rse_connectors as connectors;
#[cfg(feature = "sources")]
pub use rse_sources as sources;
