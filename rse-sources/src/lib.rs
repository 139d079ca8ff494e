//! Reference sources for rse: the analytics stores that modeled rows are read from.
//!
//! Each source lives in its own module behind its own cargo feature, so a host compiles
//! only the drivers it uses. Every source implements [`rse_core::Source`] and passes the
//! source conformance suite in `rse_core::testing`.
//!
//! | feature | source | reads |
//! |---|---|---|
//! | `postgres` | `postgres::PostgresSource` | PostgreSQL (and Redshift) tables, views, queries; `postgres-tls` adds rustls |
//! | `sqlite` | `sqlite::SqliteSource` | SQLite tables, views, queries |
//! | `files` | `files::CsvSource`, `files::JsonLinesSource` | CSV and JSON Lines files |
//! | `parquet` | `parquet::ParquetSource` | Parquet files and directories of them (snappy; `parquet-zstd` adds zstd) |
//!
//! [`pushdown`] writes the SQL of the warehouse-side diff (PostgreSQL, Snowflake, BigQuery,
//! Redshift), with which a warehouse sends only the rows that changed.
//!
//! Every source streams: it holds a few batches at a time whatever the model's size.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use rse_core::{Source, SourceError};

mod common;
pub use common::Model;

#[cfg(any(feature = "sqlite", feature = "files", feature = "parquet"))]
mod convert;
#[cfg(any(feature = "sqlite", feature = "files", feature = "parquet", feature = "postgres"))]
mod stream;

#[cfg(feature = "files")]
pub mod files;
#[cfg(feature = "parquet")]
pub mod parquet;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "postgres")]
mod postgres_tls;
pub mod pushdown;
#[cfg(feature = "files")]
mod split;
#[cfg(feature = "sqlite")]
pub mod sqlite;
