//! The per-platform normalisers.
