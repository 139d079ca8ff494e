//! Reference sources for rse: the analytics stores that modeled rows are read from.
//!
//! Each source lives in its own module behind its own cargo feature, so a host compiles
//! only the drivers it uses. Every source implements [`rse_core::Source`] and passes the
//! source conformance suite in `rse_core::testing`.

pub use rse_core::{Source, SourceError};
