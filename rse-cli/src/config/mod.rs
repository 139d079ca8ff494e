//! Syncs described in TOML.
