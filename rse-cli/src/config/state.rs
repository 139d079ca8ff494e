//! `[state]` and `[sync.<name>.state]`: where a sync keeps its snapshot, leases, runs and
//! pauses.

use std::ops::Range;
#[cfg(feature = "sqlite")]
use std::path::PathBuf;
use std::sync::Arc;

use rse::{StateStore, SyncBuilder};
use toml::de::DeTable;

use super::error::{ConfigError, ConfigErrorKind};
use super::tree::{Doc, join};

/// The state store types a file may name, in this build.
pub(crate) const TYPES: &[&str] = &[
    #[cfg(feature = "sqlite")]
    "sqlite",
    #[cfg(feature = "postgres")]
    "postgres",
];

#[derive(Debug, Clone)]
enum Kind {
    #[cfg(feature = "sqlite")]
    Sqlite(PathBuf, rse::connectors::state::SqliteStateStoreOptions),
    #[cfg(feature = "postgres")]
    Postgres(String, rse::connectors::state::PostgresStateStoreOptions),
}

/// A state store as the file describes it.
#[derive(Debug, Clone)]
pub(crate) struct StateSpec {
    kind: Kind,
    path: String,
    address_span: Range<usize>,
}

/// An opened state store, to put on a sync or to read alone.
pub(crate) enum OpenedState {
    #[cfg(feature = "sqlite")]
    Sqlite(rse::connectors::state::SqliteStateStore),
    #[cfg(feature = "postgres")]
    Postgres(rse::connectors::state::PostgresStateStore),
}

impl OpenedState {
    /// Puts the store on `builder`.
    pub(crate) fn apply(self, builder: SyncBuilder) -> SyncBuilder {
        match self {
            #[cfg(feature = "sqlite")]
            OpenedState::Sqlite(s) => builder.state(s),
            #[cfg(feature = "postgres")]
            OpenedState::Postgres(s) => builder.state(s),
        }
    }

    /// Has `builder` pace its writes through the store's schedule shared with the sync's
    /// other partitions (in processes on one host with a SQLite file, on any hosts with
    /// PostgreSQL).
    pub(crate) fn share_quota(&self, builder: SyncBuilder) -> SyncBuilder {
        match self {
            #[cfg(feature = "sqlite")]
            OpenedState::Sqlite(s) => builder.shared_quota(s.clone()),
            #[cfg(feature = "postgres")]
            OpenedState::Postgres(s) => builder.shared_quota(s.clone()),
        }
    }

    /// The store alone.
    pub(crate) fn into_arc(self) -> Arc<dyn StateStore> {
        match self {
            #[cfg(feature = "sqlite")]
            OpenedState::Sqlite(s) => Arc::new(s),
            #[cfg(feature = "postgres")]
            OpenedState::Postgres(s) => Arc::new(s),
        }
    }
}

impl StateSpec {
    /// Reads the state table at `path`.
    pub(crate) fn parse(
        doc: &Doc,
        path: &str,
        span: Range<usize>,
        mut table: DeTable<'_>,
    ) -> Result<Self, ConfigError> {
        let (kind, _) = doc.take_type(path, span.clone(), &mut table, "state store", TYPES)?;
        let s = span.clone();
        let (kind, address_span) = match kind.as_str() {
            #[cfg(feature = "sqlite")]
            "sqlite" => {
                let (file, at): (PathBuf, _) =
                    doc.take_required(path, s.clone(), &mut table, "path", "the SQLite file that keeps the state")?;
                (Kind::Sqlite(doc.resolve_path(&file), doc.read_table(path, s, table, &["type", "path"])?), at)
            }
            #[cfg(feature = "postgres")]
            "postgres" => {
                let (url, at) =
                    doc.take_required(path, s.clone(), &mut table, "url", "the PostgreSQL connection URL")?;
                (Kind::Postgres(url, doc.read_table(path, s, table, &["type", "url"])?), at)
            }
            other => return Err(doc.invalid(span, path, format!("state store type `{other}` is not in this build"))),
        };
        Ok(Self { kind, path: path.to_owned(), address_span })
    }

    /// Opens (or connects to) the store, creating its tables when missing.
    pub(crate) async fn open(&self, doc: &Doc) -> Result<OpenedState, ConfigError> {
        let fail = |key: &str, e: rse::StateError| {
            let kind = match e {
                rse::StateError::Unavailable { .. } => ConfigErrorKind::Unavailable,
                _ => ConfigErrorKind::Build,
            };
            doc.error(kind, self.address_span.clone(), &join(&self.path, key), format!("the state store: {e}"))
        };
        match &self.kind {
            #[cfg(feature = "sqlite")]
            Kind::Sqlite(file, options) => {
                let store = rse::connectors::state::SqliteStateStore::open_with(file, options.clone())
                    .await
                    .map_err(|e| fail("path", e))?;
                Ok(OpenedState::Sqlite(store))
            }
            #[cfg(feature = "postgres")]
            Kind::Postgres(url, options) => {
                let store = rse::connectors::state::PostgresStateStore::connect(url, options.clone())
                    .await
                    .map_err(|e| fail("url", e))?;
                Ok(OpenedState::Postgres(store))
            }
        }
    }
}
