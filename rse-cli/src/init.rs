//! The example configuration that `rse init` writes.

/// The commented example configuration `rse init` writes.
pub fn example() -> &'static str {
    ""
}
