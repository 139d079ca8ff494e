//! Syncs described in a TOML file: the reference of every key.
//!
//! One file holds any number of syncs, each a `[sync.<name>]` table with a source, an
//! optional chain of transforms, a destination, a state store, a mode and options. The
//! name is how commands address the sync (`rse run customers`) and, unless `id` says
//! otherwise, the id its state is kept under.
//!
//! ```toml
//! # Shared by every sync that names no state store of its own.
//! [state]
//! type = "sqlite"
//! path = "state.db"
//!
//! [sync.customers]
//! mode = "mirror"
//!
//! [sync.customers.source]
//! type = "postgres"
//! url = "postgres://rse@warehouse:5432/analytics?password=${env:WAREHOUSE_PASSWORD}"
//! table = "customers"
//! schema = "marts"
//! key = ["id"]
//!
//! [[sync.customers.transform]]
//! type = "hash_pii"
//! field = "email"
//! pii = "email"
//! output_field = "email_sha256"
//!
//! [sync.customers.destination]
//! type = "http"
//! url = "https://crm.example.com/api/customers"
//! bearer_token = "${file:/run/secrets/crm_token}"
//!
//! [sync.customers.options]
//! batch_rows = 500
//! max_deletes = { fraction = 0.1 }
//! ```
//!
//! # General rules
//!
//! - **Unknown keys are refused** everywhere, with the list of keys the place takes.
//! - **Errors name the place**: `rse.toml:14:1: sync.customers.source.key: …` — the file,
//!   the line and column, the field as a dotted path, and what is expected.
//! - **Relative paths** (SQLite files, CSV files, secret files) are relative to the
//!   directory of the configuration file, not to the working directory, so a CronJob or a
//!   timer reads the same files wherever it starts.
//! - **Durations** are written `"200ms"`, `"30s"`, `"5m"`, `"2h"`, `"1d"` or as a number of
//!   seconds.
//! - **Data types** are written `bool`, `int`, `float`, `decimal`, `string`, `bytes`,
//!   `date`, `timestamp`, `json` or `list<TYPE>`.
//!
//! # Secrets
//!
//! Any string may hold references that are replaced by a secret when a sync is built (by
//! `rse run`, `rse check`; the state store's own when it is opened): `${env:NAME}` is the
//! environment variable `NAME`, `${file:/path}` the contents of the file without one
//! trailing line break (as a mounted Kubernetes secret ends). A reference may stand inside
//! a longer string (`"postgres://rse:${env:PGPASSWORD}@db/x"`); `$${` writes a literal
//! `${`. A reference that is not well formed is refused when the file is loaded; an unset
//! variable or an unreadable file when the sync is built, naming the field. Commands that
//! need only the state store (status, history, pause) read only the state store's
//! secrets. Write credentials in files by reference only; messages never show a secret.
//! References stand for values (URLs, tokens, paths, names), not for the words a key
//! chooses among (`type`, `mode`).
//!
//! Several destinations also accept the library's own secret form where their options
//! hold a credential (`bearer_token = { env = "CRM_TOKEN" }`); both work.
//!
//! # Top level
//!
//! | key | |
//! |---|---|
//! | `state` | the default state store of every sync that names none (a table, below) |
//! | `sync.<name>` | one sync per table; names are any TOML key |
//!
//! # `[sync.<name>]`
//!
//! | key | default | |
//! |---|---|---|
//! | `id` | the name | the id the state is kept under (two syncs with one id share a snapshot) |
//! | `mode` | `"upsert"` | `upsert`, `insert`, `update`, `mirror` (deletes what left the model) or `append` |
//! | `source` | required | a table, below |
//! | `transform` | none | an array of tables (`[[sync.<name>.transform]]`), applied in order |
//! | `destination` | required | a table, below |
//! | `state` | the top-level `state` | a table, below |
//! | `options` | defaults | `rse::SyncOptions`, below |
//!
//! # Sources: `[sync.<name>.source]`
//!
//! Every source takes `type`, `key` (the key columns, in order; needed unless the source
//! declares them itself) and `cursor` (a column that only grows when a row changes, for
//! incremental reads).
//!
//! | `type` | keys |
//! |---|---|
//! | `sqlite` | `path` (the file), `table` (and `schema`, an attached database) or `query` (one `SELECT`), `column_types` (a table of column = type, for columns SQLite's declared types do not say, e.g. `{ ltv = "decimal" }`) |
//! | `postgres` | `url` (`postgres://user@host:5432/db?sslmode=verify-full`, its TLS parameters as the library reads them), `table` and `schema`, or `query`; `connect_timeout`; `pushdown_schema` (an existing schema for rse's tables of the warehouse-side diff, which `diff_strategy = "pushdown"` needs) and `pushdown_readers` (connections reading one diff, default 2) |
//! | `csv` | `path`, `schema` (declared fields: an array of `{ name, type, nullable = true }`; inferred otherwise), `infer_rows` (default 1000), `delimiter` (one character, default `,`), `quote` (default `"`), `header` (default true), `sorted_by_key`, `on_malformed` (`fail`, the default, or `reject`) |
//! | `jsonl` | `path`, `schema`, `infer_rows`, `sorted_by_key`, `on_malformed` |
//! | `parquet` | `path` (a file, or a directory of them), `columns` (read only these), `sorted_by_key` |
//!
//! # Transforms: `[[sync.<name>.transform]]`
//!
//! Every built-in transform of `rse::transform`, by `type`:
//!
//! | `type` | keys | |
//! |---|---|---|
//! | `rename` | `fields = { from = "to" }` | renames fields |
//! | `select` | `fields = ["a", "b"]` | keeps only these fields |
//! | `drop` | `fields = ["notes"]` | removes these fields |
//! | `cast` | `fields = { ltv = "decimal" }` | converts fields to types |
//! | `constant` | `field`, `value` (a string, number, boolean or array), `data_type` (optional; a decimal or JSON constant is written as text) | adds a field holding one value |
//! | `hash_pii` | `field`, `pii` (`email`, `phone` or `text`), `output_field`, `keep_original`, `gmail_dot_removal`, `default_country_code`, `plus_prefix` | normalises and SHA-256-hashes personal data |
//! | `mask` | `field`, `keep_last` (absent: redact the whole value), `text` (the redaction text), `null` (redact to null), `mask_char` | hides a string field |
//! | `filter` | `field` and either `consent = true` (keep records whose bool field is true) or `suppress = ["a@example.com"]` | leaves records out on purpose |
//! | `validate` | `rules`: an array of `{ field, required, pattern, min_length, max_length, min, max, one_of }` | rejects records that break rules |
//! | `sensitive_fields` | `fields` (marked sensitive), `detectors` (`email`, `payment_card`, `us_ssn`), `allow` | rejects records that would send personal data |
//!
//! Closure transforms (`rse::transform::FnTransform`) are code, not configuration: a host
//! program that needs one builds its sync with the library.
//!
//! # Destinations: `[sync.<name>.destination]`
//!
//! Each takes its library options' keys (the serde form of the type named), plus the
//! address where noted:
//!
//! | `type` | keys |
//! |---|---|
//! | `sqlite` | `path`, and `SqliteDestinationOptions`: `table`, `kind` (`keyed` or `events`), `create_table`, `busy_timeout`, `max_batch_rows` |
//! | `postgres` | `url`, and `PostgresDestinationOptions`: `table`, `schema`, `create_table`, `version_guard`, `idempotency_ledger`, `ledger_table`, `pool_size`, `max_batch_rows`, `copy_inserts`, `write_timeout`, `connect` (`PostgresConnectOptions`: `ssl_mode`, `root_certificates`, `client_certificate`, `connect_timeout`, `pool_wait_timeout`) |
//! | `http` | `HttpDestinationConfig`: `url` (absolute, `http://` or `https://`), `name`, `method`, `headers`, `bearer_token`, `shape`, `fields`, `envelope`, `requests`, `signing_secret`, `timeouts`, `rate_limit`, `max_batch_rows`, `max_batch_bytes`, `max_concurrency`, `record_errors`, `response_excerpts`, `check_url` |
//! | `redis` | `url`, and `RedisDestinationOptions`: `key_template`, `ttl`, `atomic`, `max_batch_rows`, `max_concurrency`, `root_certificates`, `client_certificate` |
//! | `nats` | `url`, and `NatsDestinationOptions`: `subject_template`, `max_batch_rows`, `max_concurrency`, `ack_timeout`, `root_certificates`, `client_certificate`, `require_tls` |
//! | `hubspot` | `HubSpotDestinationConfig` (feature `hubspot`) |
//! | `salesforce` | `SalesforceDestinationConfig` (feature `salesforce`) |
//! | `google_ads`, `google_data_manager` | `GoogleAdsConfig`, `GoogleDataManagerConfig` (feature `google`) |
//! | `meta` | `MetaAudienceConfig` (feature `meta`) |
//!
//! The rustdoc of each named type in `rse::connectors` describes its keys and defaults.
//!
//! # State stores: `[state]`, `[sync.<name>.state]`
//!
//! | `type` | keys |
//! |---|---|
//! | `sqlite` | `path`, `run_retention` (default 100), `busy_timeout` (default `"10s"`) |
//! | `postgres` | `url`, `schema` (default `rse_state`), `run_retention`, `pool_size`, `connect` (as for the destination) |
//!
//! # Options: `[sync.<name>.options]`
//!
//! The serde form of `rse::SyncOptions` (its rustdoc gives each default): `full_resync`,
//! `dry_run`, `validate_dry_run`, `max_deletes` (`{ count = 100 }`, `{ fraction = 0.1 }`,
//! `{ fraction_above = { fraction = 0.5, floor = 10 } }`; TOML has no null, so a sync that
//! may delete any number writes `{ fraction = 1.0 }`),
//! `allow_empty_source`, `batch_rows`, `batch_bytes`, `linger`, `max_concurrency`,
//! `max_attempts`, `initial_backoff`, `max_backoff`, `circuit_breaker_threshold`,
//! `diff_strategy` (`auto`, `hash`, `merge`, `pushdown`), `fingerprint_algorithm`, `rejection_sample`,
//! `lease_ttl`, `holder`, `read_batch_size`, `schema_drift`, `max_rate_limit_wait`,
//! `write_timeout`, `read_timeout`, `quota_reserve`, `canary`, `change_time_field`.

mod destination;
mod error;
mod secret;
mod source;
mod state;
mod transform;
mod tree;
mod types;

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use rse::partition::Partition;
use rse::{Mode, StateStore, SyncJob, SyncOptions};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

pub use error::{ConfigError, ConfigErrorKind, Position};

use destination::DestinationSpec;
use source::SourceSpec;
use state::StateSpec;
use transform::TransformSpec;
use tree::{Doc, join};

/// The keys a `[sync.<name>]` table takes.
const SYNC_KEYS: &[&str] = &["id", "mode", "source", "transform", "destination", "state", "options"];

/// A configuration file, loaded and checked: every sync's shape is valid (known keys,
/// right types, known kinds of source, transform and destination) and every secret
/// reference is well formed. Secrets are read, and connections opened, only when a sync
/// is built.
#[derive(Debug)]
pub struct ConfigFile {
    doc: Arc<Doc>,
    syncs: Vec<SyncSpec>,
}

/// One sync of a [`ConfigFile`], ready to be built.
#[derive(Debug)]
pub struct SyncSpec {
    doc: Arc<Doc>,
    name: String,
    id: String,
    mode: Mode,
    source: String,
    destination: String,
    transforms: usize,
}

/// A sync built from its description: the job to run, its state store, and what
/// [`check`](Self::check) looks at.
pub struct BuiltSync {
    /// The sync, ready to run.
    pub job: SyncJob,
    /// Its state store (status, history, pause and resume, rejections).
    pub state: Arc<dyn StateStore>,
    /// The id its state is kept under: the sync's own, or its partition's
    /// (`crm#p2of4`, see [`Partition::sync_id`]).
    pub id: String,
}

/// The outcome of checking one part of a sync ([`BuiltSync::check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    /// `source`, `destination` or `state`.
    pub part: &'static str,
    /// The part's name as reports show it (`sqlite:customers`, `http:crm`).
    pub name: String,
    /// `Ok` when the part answered as it should, else what failed.
    pub result: Result<(), String>,
}

impl ConfigFile {
    /// Reads and checks the configuration at `path`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, line, column and field: the file cannot be read
    /// or is not TOML, a key is unknown or its value of the wrong type, a required key is
    /// missing, a type of source, transform, destination or state store is unknown, a
    /// secret reference is not well formed.
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(ConfigErrorKind::Io, path, format!("cannot read the configuration file: {e}"))
        })?;
        Self::parse(path, text)
    }

    /// Checks `text` as the configuration found at `path` (relative paths in it are
    /// relative to `path`'s directory).
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn parse(path: &Path, text: String) -> Result<ConfigFile, ConfigError> {
        let doc = Arc::new(Doc::new(path, text));
        let root = doc.parse()?;
        let root_node = Spanned::new(root.span(), DeValue::Table(root.get_ref().clone()));
        secret::check(&doc, "", &root_node)?;
        let parts = Parts::split(&doc, root)?;
        let mut syncs = Vec::with_capacity(parts.syncs.len());
        for (name, span, table) in parts.syncs {
            let sync = parse_sync(&doc, &name, span, table, parts.state.as_ref())?;
            syncs.push(SyncSpec {
                doc: Arc::clone(&doc),
                id: sync.id,
                mode: sync.mode,
                source: sync.source.kind().to_owned(),
                destination: sync.destination_type,
                transforms: sync.transforms.len(),
                name,
            });
        }
        Ok(ConfigFile { doc, syncs })
    }

    /// The configuration file's path.
    pub fn path(&self) -> &Path {
        &self.doc.path
    }

    /// The names of the syncs, in the file's order.
    pub fn sync_names(&self) -> Vec<&str> {
        self.syncs.iter().map(|s| s.name.as_str()).collect()
    }

    /// Every sync, in the file's order.
    pub fn syncs(&self) -> &[SyncSpec] {
        &self.syncs
    }

    /// The sync called `name`.
    pub fn sync(&self, name: &str) -> Option<&SyncSpec> {
        self.syncs.iter().find(|s| s.name == name)
    }

    /// The sync called `name`, or an error listing the names there are.
    ///
    /// # Errors
    /// [`ConfigErrorKind::UnknownSync`] when the file has no such sync.
    pub fn require_sync(&self, name: &str) -> Result<&SyncSpec, ConfigError> {
        self.sync(name).ok_or_else(|| {
            let names = self.sync_names();
            let known = if names.is_empty() {
                "it defines none; add a `[sync.<name>]` table".to_owned()
            } else {
                format!("its syncs are: {}", names.join(", "))
            };
            ConfigError::new(ConfigErrorKind::UnknownSync, &self.doc.path, format!("no sync named `{name}`; {known}"))
        })
    }
}

impl SyncSpec {
    /// The sync's name in the file (`[sync.<name>]`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The id its state is kept under (`id`, else the name).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The source's `type` (`sqlite`, `postgres`, `csv`, `jsonl`, `parquet`).
    pub fn source_type(&self) -> &str {
        &self.source
    }

    /// The destination's `type`.
    pub fn destination_type(&self) -> &str {
        &self.destination
    }

    /// How many transforms the sync applies.
    pub fn transform_count(&self) -> usize {
        self.transforms
    }

    /// Reads the sync's secrets, opens its state store, source and destination, and
    /// builds the sync (reading the source's schema).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field at fault: a secret that cannot be read, a URL
    /// that does not parse, a key column the source does not have, a transform that does
    /// not fit its input, a mode the destination cannot do, an option out of range; or a
    /// part that cannot be opened ([`ConfigErrorKind::Unavailable`]).
    pub async fn build(&self) -> Result<BuiltSync, ConfigError> {
        self.build_with(|_| {}).await
    }

    /// [`build`](Self::build), with the options from the file changed by `adjust` first
    /// (a command's `--dry-run` or `--full-resync`).
    ///
    /// # Errors
    /// As [`build`](Self::build).
    pub async fn build_with(&self, adjust: impl FnOnce(&mut SyncOptions)) -> Result<BuiltSync, ConfigError> {
        self.build_partition(None, adjust).await
    }

    /// [`build_with`](Self::build_with) for one partition of the sync (`rse run
    /// --partition i/N`; see [`rse::partition`]): the job's state, lease and history live
    /// under the partition's id, which [`BuiltSync::id`] is. Every partition paces its
    /// writes through the state store's shared schedule, so the partitions together stay
    /// inside the destination's rate limit (across hosts with a PostgreSQL store, among the
    /// processes of one host with a SQLite file).
    ///
    /// # Errors
    /// As [`build`](Self::build).
    pub async fn build_partition(
        &self,
        partition: Option<Partition>,
        adjust: impl FnOnce(&mut SyncOptions),
    ) -> Result<BuiltSync, ConfigError> {
        let doc = &*self.doc;
        let mut read = Vec::new();
        let sync = self.resolved(&mut read, true)?;
        let redact = |e: ConfigError| redact_error(e, &read);
        let state = sync.state.open(doc).await.map_err(redact)?;
        let place = Places::of(&sync);
        let mut builder = SyncJob::builder(sync.id.clone()).mode(sync.mode);
        builder = sync.source.apply(doc, builder).map_err(redact)?;
        for t in sync.transforms {
            builder = t.apply(doc, builder).map_err(redact)?;
        }
        builder = sync.destination.apply(doc, builder).await.map_err(redact)?;
        if partition.is_some() {
            builder = state.share_quota(builder);
        }
        builder = state.apply(builder).partition(partition);
        let mut options = sync.options;
        adjust(&mut options);
        let job = builder.options(options).build().await.map_err(|e| redact(place.error(doc, e)))?;
        Ok(BuiltSync { state: Arc::clone(job.state()), id: job.id().to_owned(), job })
    }

    /// Reads only the state store's secrets and opens the state store: what status,
    /// history, pause, resume, rejections and reset need, without a source or destination.
    ///
    /// # Errors
    /// A [`ConfigError`]: a secret that cannot be read, a URL that does not parse, a store
    /// that cannot be opened ([`ConfigErrorKind::Unavailable`]).
    pub async fn state_store(&self) -> Result<Arc<dyn StateStore>, ConfigError> {
        let mut read = Vec::new();
        let sync = self.resolved(&mut read, false)?;
        let store = sync.state.open(&self.doc).await.map_err(|e| redact_error(e, &read))?;
        Ok(store.into_arc())
    }

    /// The sync parsed again with its secrets resolved: all of them (`whole`) or the state
    /// store's only.
    fn resolved(&self, read: &mut Vec<String>, whole: bool) -> Result<ParsedSync, ConfigError> {
        let doc = &*self.doc;
        let root = doc.parse()?;
        let mut parts = Parts::split(doc, root)?;
        let Some((name, span, mut table)) = parts.syncs.into_iter().find(|(n, _, _)| *n == self.name) else {
            return Err(ConfigError::new(
                ConfigErrorKind::UnknownSync,
                &doc.path,
                format!("no sync named `{}`", self.name),
            ));
        };
        let path = join("sync", &name);
        if whole {
            for (key, node) in table.iter_mut() {
                let key = key.get_ref().to_string();
                secret::resolve(doc, &join(&path, &key), node, read)?;
            }
        } else if let Some(node) = table.get_mut("state") {
            secret::resolve(doc, &join(&path, "state"), node, read)?;
        }
        if !table.contains_key("state")
            && let Some(node) = parts.state_node.as_mut()
        {
            secret::resolve(doc, "state", node, read)?;
            parts.state = Some(read_state(doc, node.clone())?);
        }
        // Without `whole`, the other parts are read with their references unresolved, as
        // `load` read them: only their shape matters.
        parse_sync(doc, &name, span, table, parts.state.as_ref()).map_err(|e| redact_error(e, read))
    }
}

impl std::fmt::Debug for BuiltSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltSync").field("id", &self.id).field("job", &self.job).finish_non_exhaustive()
    }
}

impl BuiltSync {
    /// Checks every part without writing: the source's schema is read again, the
    /// destination checks its reachability and credentials, the state store reads the
    /// sync's metadata.
    pub async fn check(&self) -> Vec<CheckOutcome> {
        let source = self.job.source();
        let destination = self.job.destination();
        vec![
            CheckOutcome {
                part: "source",
                name: source.name().to_owned(),
                result: source.schema().await.map(drop).map_err(|e| e.to_string()),
            },
            CheckOutcome {
                part: "destination",
                name: destination.name().to_owned(),
                result: destination.check().await.map_err(|e| e.to_string()),
            },
            CheckOutcome {
                part: "state",
                name: self.state.name().to_owned(),
                result: self.state.meta(&self.id).await.map(drop).map_err(|e| e.to_string()),
            },
        ]
    }
}

/// The top level split: the default state store and each sync's table.
struct Parts<'i> {
    state: Option<StateSpec>,
    state_node: Option<tree::Node<'i>>,
    syncs: Vec<(String, Range<usize>, DeTable<'i>)>,
}

impl<'i> Parts<'i> {
    fn split(doc: &Doc, root: Spanned<DeTable<'i>>) -> Result<Self, ConfigError> {
        let mut state = None;
        let mut state_node = None;
        let mut syncs = Vec::new();
        for (key, node) in root.into_inner() {
            let key_name = key.get_ref().to_string();
            match key_name.as_str() {
                "state" => {
                    state = Some(read_state(doc, node.clone())?);
                    state_node = Some(node);
                }
                "sync" => {
                    let span = node.span();
                    let DeValue::Table(table) = node.into_inner() else {
                        return Err(doc.invalid(
                            span,
                            "sync",
                            "expected a table of syncs: `[sync.<name>]` tables (an array `[[sync]]` is not this format)",
                        ));
                    };
                    for (name, node) in table {
                        let name = name.into_inner().to_string();
                        let span = node.span();
                        let DeValue::Table(t) = node.into_inner() else {
                            return Err(doc.invalid(span, &join("sync", &name), "expected a table: `[sync.<name>]`"));
                        };
                        syncs.push((name, span, t));
                    }
                }
                other => {
                    return Err(doc.invalid(
                        key.span(),
                        other,
                        format!("unknown top-level key `{other}`, expected one of `state`, `sync`"),
                    ));
                }
            }
        }
        Ok(Self { state, state_node, syncs })
    }
}

fn read_state(doc: &Doc, node: tree::Node<'_>) -> Result<StateSpec, ConfigError> {
    let span = node.span();
    match node.into_inner() {
        DeValue::Table(t) => StateSpec::parse(doc, "state", span, t),
        _ => Err(doc.invalid(span, "state", "expected a table: `[state]` with `type` and `path` or `url`")),
    }
}

/// A sync read from its table, each part checked.
struct ParsedSync {
    id: String,
    mode: Mode,
    mode_span: Option<Range<usize>>,
    path: String,
    span: Range<usize>,
    source: SourceSpec,
    key_span: Option<Range<usize>>,
    transforms: Vec<TransformSpec>,
    transform_types: Vec<String>,
    destination: DestinationSpec,
    destination_type: String,
    state: StateSpec,
    options: SyncOptions,
    /// Each option's span, by name.
    option_spans: HashMap<String, Range<usize>>,
    options_span: Option<Range<usize>>,
}

/// Reads the sync `name`'s table.
fn parse_sync(
    doc: &Doc,
    name: &str,
    span: Range<usize>,
    mut table: DeTable<'_>,
    default_state: Option<&StateSpec>,
) -> Result<ParsedSync, ConfigError> {
    let path = join("sync", name);
    check_sync_keys(doc, &path, &table)?;
    let (id, mode, mode_span) = head(doc, &path, &mut table, name)?;
    let state = sync_state(doc, &path, span.clone(), &mut table, default_state)?;

    let (source_node, source_span) = take_table(doc, &path, span.clone(), &mut table, "source", "what the sync reads")?;
    let source_path = join(&path, "source");
    let key_span = source_node.get("key").map(|n| n.span());
    let source = SourceSpec::parse(doc, &source_path, source_span, source_node)?;

    let mut transforms = Vec::new();
    let mut transform_types = Vec::new();
    if let Some(node) = table.remove("transform") {
        let tspan = node.span();
        let items = match node.into_inner() {
            DeValue::Array(items) => items,
            _ => {
                return Err(doc.invalid(
                    tspan,
                    &join(&path, "transform"),
                    "expected an array of tables: one `[[sync.<name>.transform]]` per transform",
                ));
            }
        };
        for (i, item) in items.into_iter().enumerate() {
            let ipath = format!("{}[{i}]", join(&path, "transform"));
            let ispan = item.span();
            let DeValue::Table(t) = item.into_inner() else {
                return Err(doc.invalid(ispan, &ipath, "expected a table with a `type`"));
            };
            transform_types.push(t.get("type").and_then(|n| n.get_ref().as_str()).unwrap_or_default().to_owned());
            transforms.push(TransformSpec::parse(doc, &ipath, ispan, t)?);
        }
    }

    let (dest_node, dest_span) =
        take_table(doc, &path, span.clone(), &mut table, "destination", "where the sync writes")?;
    let destination_type = dest_node.get("type").and_then(|n| n.get_ref().as_str()).unwrap_or_default().to_owned();
    let destination = DestinationSpec::parse(doc, &join(&path, "destination"), dest_span, dest_node)?;

    let mut option_spans = HashMap::new();
    let mut options_span = None;
    let options = match table.remove("options") {
        Some(node) => {
            options_span = Some(node.span());
            if let Some(t) = node.get_ref().as_table() {
                for (k, v) in t.iter() {
                    option_spans.insert(k.get_ref().to_string(), v.span());
                }
            }
            doc.read(&join(&path, "options"), node, &[])?
        }
        None => SyncOptions::default(),
    };
    Ok(ParsedSync {
        id,
        mode,
        mode_span,
        path,
        span,
        source,
        key_span,
        transforms,
        transform_types,
        destination,
        destination_type,
        state,
        options,
        option_spans,
        options_span,
    })
}

fn check_sync_keys(doc: &Doc, path: &str, table: &DeTable<'_>) -> Result<(), ConfigError> {
    for (key, _) in table.iter() {
        if !SYNC_KEYS.contains(&key.get_ref().as_ref()) {
            let k = key.get_ref().to_string();
            return Err(doc.invalid(
                key.span(),
                &join(path, &k),
                format!("unknown field `{k}`, expected one of {}", tree::list(SYNC_KEYS)),
            ));
        }
    }
    Ok(())
}

/// The sync's `id` (default its name) and `mode`.
fn head(
    doc: &Doc,
    path: &str,
    table: &mut DeTable<'_>,
    name: &str,
) -> Result<(String, Mode, Option<Range<usize>>), ConfigError> {
    let id = match doc.take::<String>(path, table, "id")? {
        Some((id, at)) if id.trim().is_empty() => return Err(doc.invalid(at, &join(path, "id"), "must not be empty")),
        Some((id, _)) => id,
        None => name.to_owned(),
    };
    let (mode, mode_span) = match doc.take::<Mode>(path, table, "mode")? {
        Some((mode, at)) => (mode, Some(at)),
        None => (Mode::default(), None),
    };
    Ok((id, mode, mode_span))
}

/// The sync's own state store, else the file's default.
fn sync_state(
    doc: &Doc,
    path: &str,
    span: Range<usize>,
    table: &mut DeTable<'_>,
    default_state: Option<&StateSpec>,
) -> Result<StateSpec, ConfigError> {
    match table.remove("state") {
        Some(node) => {
            let at = node.span();
            match node.into_inner() {
                DeValue::Table(t) => StateSpec::parse(doc, &join(path, "state"), at, t),
                _ => Err(doc.invalid(at, &join(path, "state"), "expected a table with `type` and `path` or `url`")),
            }
        }
        None => default_state.cloned().ok_or_else(|| {
            doc.invalid(
                span,
                path,
                "no state store: add a `[state]` table for every sync (or `[sync.<name>.state]`), e.g. type = \"sqlite\", \
                 path = \"state.db\"",
            )
        }),
    }
}

/// Takes the required table `key` out of the sync's table.
fn take_table<'i>(
    doc: &Doc,
    path: &str,
    span: Range<usize>,
    table: &mut DeTable<'i>,
    key: &str,
    what: &str,
) -> Result<(DeTable<'i>, Range<usize>), ConfigError> {
    let Some(node) = table.remove(key) else {
        return Err(doc.invalid(span, path, format!("missing field `{key}`: a `[{path}.{key}]` table saying {what}")));
    };
    let at = node.span();
    match node.into_inner() {
        DeValue::Table(t) => Ok((t, at)),
        _ => Err(doc.invalid(at, &join(path, key), format!("expected a table saying {what}, with a `type`"))),
    }
}

/// Where each of the library's build errors is reported in the file.
struct Places {
    sync: (String, Range<usize>),
    mode: Option<Range<usize>>,
    source: (String, Range<usize>),
    key: Option<Range<usize>>,
    transforms: Vec<(String, String, Range<usize>)>,
    destination: (String, Range<usize>),
    options: (String, Option<Range<usize>>, HashMap<String, Range<usize>>),
}

impl Places {
    fn of(sync: &ParsedSync) -> Self {
        let (dest_path, dest_span) = sync.destination.place();
        Self {
            sync: (sync.path.clone(), sync.span.clone()),
            mode: sync.mode_span.clone(),
            source: (join(&sync.path, "source"), sync.source.span()),
            key: sync.key_span.clone(),
            transforms: sync
                .transforms
                .iter()
                .zip(&sync.transform_types)
                .map(|(t, ty)| {
                    let (p, s) = t.place();
                    (ty.clone(), p.to_owned(), s)
                })
                .collect(),
            destination: (dest_path.to_owned(), dest_span),
            options: (join(&sync.path, "options"), sync.options_span.clone(), sync.option_spans.clone()),
        }
    }

    /// The library's build error, placed at the field it is about.
    fn error(&self, doc: &Doc, e: rse::ConfigError) -> ConfigError {
        use rse::ConfigError as E;
        let build = ConfigErrorKind::Build;
        let source_key = || match &self.key {
            Some(span) => (join(&self.source.0, "key"), span.clone()),
            None => self.source.clone(),
        };
        let (field, span, message) = match &e {
            E::NoKey { available, .. } => {
                let (f, s) = source_key();
                (f, s, format!("the model has no key columns; list them in the source's `key` (fields: {available})"))
            }
            E::Schema { source, .. } => {
                let (f, s) = source_key();
                (f, s, source.to_string())
            }
            E::Source { source, .. } => {
                let (f, s) = if source.to_string().contains("key") { source_key() } else { self.source.clone() };
                let kind = if matches!(source, rse::SourceError::Unavailable { .. }) {
                    ConfigErrorKind::Unavailable
                } else {
                    build
                };
                return doc.error(kind, s, &f, format!("reading the source's schema failed: {source}"));
            }
            E::Transform { source, .. } => {
                let name = match source {
                    rse::TransformError::Config { transform, .. } | rse::TransformError::Failed { transform, .. } => {
                        transform.clone()
                    }
                    _ => String::new(),
                };
                let (f, s) = self
                    .transforms
                    .iter()
                    .find(|(ty, _, _)| *ty == name)
                    .or(self.transforms.first())
                    .map_or_else(|| self.sync.clone(), |(_, p, s)| (p.clone(), s.clone()));
                (f, s, source.to_string())
            }
            E::UnsupportedMode { mode, op, destination, supported, .. } => (
                join(&self.sync.0, "mode"),
                self.mode.clone().unwrap_or(self.sync.1.clone()),
                format!(
                    "mode {mode} needs the `{op}` operation, which destination `{destination}` does not support (it \
                     supports: {supported}); choose another mode"
                ),
            ),
            E::InvalidOption { option, message, .. } => {
                let (path, span, spans) = &self.options;
                match spans.get(*option) {
                    Some(s) => (join(path, option), s.clone(), message.clone()),
                    None => {
                        (path.clone(), span.clone().unwrap_or(self.sync.1.clone()), format!("`{option}` {message}"))
                    }
                }
            }
            E::Destination { source, .. } => {
                (self.destination.0.clone(), self.destination.1.clone(), format!("cannot take these records: {source}"))
            }
            other => (self.sync.0.clone(), self.sync.1.clone(), other.to_string()),
        };
        doc.error(build, span, &field, message)
    }
}

/// `e` with every secret in `read` hidden.
fn redact_error(e: ConfigError, read: &[String]) -> ConfigError {
    if read.is_empty() {
        return e;
    }
    let message = secret::redact(e.message(), read);
    let mut out = ConfigError::new(e.kind(), e.file(), message);
    if let Some(p) = e.position() {
        out = out.at(p);
    }
    if let Some(f) = e.field_path() {
        out = out.field(f);
    }
    out
}
