//! `[sync.<name>.destination]`: where a sync writes, with each destination's own options
//! (the library's serde forms).

use std::ops::Range;
#[cfg(feature = "sqlite")]
use std::path::PathBuf;

use rse::SyncBuilder;
use toml::de::DeTable;
#[cfg(feature = "http")]
use toml::de::DeValue;

use super::error::{ConfigError, ConfigErrorKind};
use super::tree::{Doc, join};

/// The destination types a file may name, in this build.
pub(crate) const TYPES: &[&str] = &[
    #[cfg(feature = "sqlite")]
    "sqlite",
    #[cfg(feature = "postgres")]
    "postgres",
    #[cfg(feature = "http")]
    "http",
    #[cfg(feature = "redis")]
    "redis",
    #[cfg(feature = "nats")]
    "nats",
    #[cfg(feature = "hubspot")]
    "hubspot",
    #[cfg(feature = "salesforce")]
    "salesforce",
    #[cfg(feature = "google")]
    "google_ads",
    #[cfg(feature = "google")]
    "google_data_manager",
    #[cfg(feature = "meta")]
    "meta",
];

#[derive(Debug)]
enum Kind {
    #[cfg(feature = "sqlite")]
    Sqlite(PathBuf, rse::connectors::SqliteDestinationOptions),
    #[cfg(feature = "postgres")]
    Postgres(String, rse::connectors::PostgresDestinationOptions),
    #[cfg(feature = "http")]
    Http(Box<rse::connectors::HttpDestinationConfig>),
    #[cfg(feature = "redis")]
    Redis(String, rse::connectors::RedisDestinationOptions),
    #[cfg(feature = "nats")]
    Nats(String, rse::connectors::NatsDestinationOptions),
    #[cfg(feature = "hubspot")]
    HubSpot(Box<rse::connectors::HubSpotDestinationConfig>),
    #[cfg(feature = "salesforce")]
    Salesforce(Box<rse::connectors::SalesforceDestinationConfig>),
    #[cfg(feature = "google")]
    GoogleAds(Box<rse::connectors::GoogleAdsConfig>),
    #[cfg(feature = "google")]
    GoogleDataManager(Box<rse::connectors::GoogleDataManagerConfig>),
    #[cfg(feature = "meta")]
    Meta(Box<rse::connectors::MetaAudienceConfig>),
}

/// A destination as the file describes it.
#[derive(Debug)]
pub(crate) struct DestinationSpec {
    kind: Kind,
    path: String,
    span: Range<usize>,
    /// Where its `url` (or `path`) is written.
    address_span: Option<Range<usize>>,
}

impl DestinationSpec {
    /// Reads the destination table at `path`.
    pub(crate) fn parse(
        doc: &Doc,
        path: &str,
        span: Range<usize>,
        mut table: DeTable<'_>,
    ) -> Result<Self, ConfigError> {
        let (kind, _) = doc.take_type(path, span.clone(), &mut table, "destination", TYPES)?;
        let address_span = table.get("url").or_else(|| table.get("path")).map(|n| n.span());
        let s = span.clone();
        let kind = match kind.as_str() {
            #[cfg(feature = "sqlite")]
            "sqlite" => {
                let (file, _): (PathBuf, _) =
                    doc.take_required(path, s.clone(), &mut table, "path", "the SQLite file to write")?;
                Kind::Sqlite(doc.resolve_path(&file), doc.read_table(path, s, table, &["type", "path"])?)
            }
            #[cfg(feature = "postgres")]
            "postgres" => {
                let (url, _) =
                    doc.take_required(path, s.clone(), &mut table, "url", "the PostgreSQL connection URL")?;
                Kind::Postgres(url, doc.read_table(path, s, table, &["type", "url"])?)
            }
            #[cfg(feature = "http")]
            "http" => {
                if let Some(url) = table.get("url") {
                    check_http_url(doc, &join(path, "url"), url.span(), url.get_ref())?;
                }
                Kind::Http(Box::new(doc.read_table(path, s, table, &["type"])?))
            }
            #[cfg(feature = "redis")]
            "redis" => {
                let (url, _) =
                    doc.take_required(path, s.clone(), &mut table, "url", "the Redis URL (redis://host:6379)")?;
                Kind::Redis(url, doc.read_table(path, s, table, &["type", "url"])?)
            }
            #[cfg(feature = "nats")]
            "nats" => {
                let (url, _) =
                    doc.take_required(path, s.clone(), &mut table, "url", "the NATS server URL (nats://host:4222)")?;
                Kind::Nats(url, doc.read_table(path, s, table, &["type", "url"])?)
            }
            #[cfg(feature = "hubspot")]
            "hubspot" => Kind::HubSpot(Box::new(doc.read_table(path, s, table, &["type"])?)),
            #[cfg(feature = "salesforce")]
            "salesforce" => Kind::Salesforce(Box::new(doc.read_table(path, s, table, &["type"])?)),
            #[cfg(feature = "google")]
            "google_ads" => Kind::GoogleAds(Box::new(doc.read_table(path, s, table, &["type"])?)),
            #[cfg(feature = "google")]
            "google_data_manager" => Kind::GoogleDataManager(Box::new(doc.read_table(path, s, table, &["type"])?)),
            #[cfg(feature = "meta")]
            "meta" => Kind::Meta(Box::new(doc.read_table(path, s, table, &["type"])?)),
            other => {
                return Err(doc.invalid(span, path, format!("destination type `{other}` is not in this build")));
            }
        };
        Ok(Self { kind, path: path.to_owned(), span, address_span })
    }

    /// The file path of the destination table and its span.
    pub(crate) fn place(&self) -> (&str, Range<usize>) {
        (&self.path, self.span.clone())
    }

    /// An error building the destination: at its `url` (or `path`) when the message is
    /// about the address, else at the table.
    #[cfg(any(
        feature = "postgres",
        feature = "http",
        feature = "hubspot",
        feature = "salesforce",
        feature = "google",
        feature = "meta"
    ))]
    fn error(&self, doc: &Doc, kind: ConfigErrorKind, message: String) -> ConfigError {
        let about_address = ["URL", "url", "sslmode", "file", "database"].iter().any(|w| message.contains(w));
        if about_address {
            self.at_address(doc, kind, message)
        } else {
            doc.error(kind, self.span.clone(), &self.path, message)
        }
    }

    /// An error at the destination's `url` (or `path`).
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    fn at_address(&self, doc: &Doc, kind: ConfigErrorKind, message: String) -> ConfigError {
        match &self.address_span {
            Some(span) => {
                let key = if doc.text.get(span.clone()).is_some_and(|t| t.contains("://")) { "url" } else { "path" };
                doc.error(kind, span.clone(), &join(&self.path, key), message)
            }
            None => doc.error(kind, self.span.clone(), &self.path, message),
        }
    }

    /// Opens the destination and puts it on `builder`.
    pub(crate) async fn apply(self, doc: &Doc, builder: SyncBuilder) -> Result<SyncBuilder, ConfigError> {
        let _ = (&builder, doc);
        match &self.kind {
            #[cfg(feature = "sqlite")]
            Kind::Sqlite(file, options) => {
                let d = rse::connectors::SqliteDestination::open(file, options.clone())
                    .await
                    .map_err(|e| self.at_address(doc, ConfigErrorKind::Unavailable, e.to_string()))?;
                Ok(builder.destination(d))
            }
            #[cfg(feature = "postgres")]
            Kind::Postgres(url, options) => {
                let d = rse::connectors::PostgresDestination::new(url, options.clone())
                    .map_err(|e| self.error(doc, ConfigErrorKind::Build, e.to_string()))?;
                Ok(builder.destination(d))
            }
            #[cfg(feature = "http")]
            Kind::Http(config) => {
                let d = rse::connectors::HttpDestination::new((**config).clone())
                    .map_err(|e| self.error(doc, ConfigErrorKind::Build, e.to_string()))?;
                Ok(builder.destination(d))
            }
            #[cfg(feature = "redis")]
            Kind::Redis(url, options) => {
                let d = rse::connectors::RedisDestination::connect(url, options.clone())
                    .await
                    .map_err(|e| self.at_address(doc, ConfigErrorKind::Unavailable, e.to_string()))?;
                Ok(builder.destination(d))
            }
            #[cfg(feature = "nats")]
            Kind::Nats(url, options) => {
                let d = rse::connectors::NatsDestination::connect(url, options.clone())
                    .await
                    .map_err(|e| self.at_address(doc, ConfigErrorKind::Unavailable, e.to_string()))?;
                Ok(builder.destination(d))
            }
            #[cfg(feature = "hubspot")]
            Kind::HubSpot(config) => {
                let d = rse::connectors::HubSpotDestination::new((**config).clone())
                    .map_err(|e| self.error(doc, ConfigErrorKind::Build, e.to_string()))?;
                Ok(builder.destination(d))
            }
            #[cfg(feature = "salesforce")]
            Kind::Salesforce(config) => {
                let d = rse::connectors::SalesforceDestination::new((**config).clone())
                    .map_err(|e| self.error(doc, ConfigErrorKind::Build, e.to_string()))?;
                Ok(builder.destination(d))
            }
            #[cfg(feature = "google")]
            Kind::GoogleAds(config) => {
                let d = rse::connectors::GoogleAdsDestination::new((**config).clone())
                    .map_err(|e| self.error(doc, ConfigErrorKind::Build, e.to_string()))?;
                Ok(builder.destination(d))
            }
            #[cfg(feature = "google")]
            Kind::GoogleDataManager(config) => {
                let d = rse::connectors::GoogleDataManagerDestination::new((**config).clone())
                    .map_err(|e| self.error(doc, ConfigErrorKind::Build, e.to_string()))?;
                Ok(builder.destination(d))
            }
            #[cfg(feature = "meta")]
            Kind::Meta(config) => {
                let d = rse::connectors::MetaAudienceDestination::new((**config).clone())
                    .map_err(|e| self.error(doc, ConfigErrorKind::Build, e.to_string()))?;
                Ok(builder.destination(d))
            }
        }
    }
}

/// An HTTP destination's URL must be absolute, with its scheme.
#[cfg(feature = "http")]
fn check_http_url(doc: &Doc, path: &str, span: Range<usize>, value: &DeValue<'_>) -> Result<(), ConfigError> {
    let Some(url) = value.as_str() else { return Ok(()) };
    // A reference is checked once resolved.
    if url.starts_with("${") {
        return Ok(());
    }
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(());
    }
    let hint = match url.split_once("://") {
        Some((scheme, _)) => format!("its scheme `{scheme}` is not http or https"),
        None => "it has no scheme".to_owned(),
    };
    Err(doc.invalid(
        span,
        path,
        format!("expected an absolute http:// or https:// URL (e.g. \"https://crm.example.com/hooks\"), but {hint}"),
    ))
}
