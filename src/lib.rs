//! rse, the reverse sync engine: move modeled data out of an analytics store into the
//! operational tools where people act on it, sending only what changed.
//!
//! This facade re-exports [`rse_core`] (always), `rse_sources` and `rse_connectors` (behind
//! the `sources` and `connectors` features).

pub use rse_core::*;

#[cfg(feature = "connectors")]
pub use rse_connectors as connectors;
#[cfg(feature = "sources")]
pub use rse_sources as sources;
