//! Fixtures of the operator-control tests.

pub mod recorder;
