//! The example configuration that `rse init` writes.

/// The file name `rse init` writes when given no path, and the one commands read by
/// default.
pub const DEFAULT_FILE: &str = "rse.toml";

/// A commented configuration describing the quickstart's sync (`cargo run --example
/// quickstart`): the `customers` table of the SQLite "warehouse" in `quickstart-data/`
/// (next to the configuration file) synced into the app's SQLite database, with the
/// state in a third file, under the quickstart's sync id — so the command takes the sync
/// over where the quickstart left it, and sends only what changed since.
///
/// It parses and builds as is; [`crate::config`] documents every key.
pub fn example() -> &'static str {
    EXAMPLE
}

const EXAMPLE: &str = r#"# rse configuration: syncs described as data.
# Every key is documented in the rustdoc of `rse_cli::config`.
#
# Relative paths are relative to this file's directory. Secrets are never written here:
# reference them inside any string as ${env:NAME} or ${file:/run/secrets/name}, e.g.
#   url = "postgres://rse:${env:WAREHOUSE_PASSWORD}@warehouse:5432/analytics"

# The state store every sync below uses unless it names its own: the snapshot of what
# each destination acknowledged, leases, run history and pauses.
[state]
type = "sqlite"
path = "quickstart-data/state.db"
# type = "postgres"
# url = "postgres://rse@db:5432/app?sslmode=verify-full&password=${env:RSE_STATE_PASSWORD}"
# schema = "rse_state"

# One sync per [sync.<name>] table; `rse run customers` runs this one.
[sync.customers]
# The id the state is kept under (default: the name). This is the quickstart's, so
# the command carries on from the quickstart's last run.
id = "customers-to-app"
# mirror: inserts, updates, and deletes what left the model. Also: upsert, insert,
# update, append.
mode = "mirror"

# What to read: a table (or `query = "SELECT ..."`) of the SQLite "warehouse".
# Other sources: postgres (url), csv, jsonl, parquet (path).
[sync.customers.source]
type = "sqlite"
path = "quickstart-data/warehouse.db"
table = "customers"
key = ["id"]
# SQLite keeps the lifetime value as text; read it as an exact decimal.
column_types = { ltv = "decimal" }
# For incremental reads in upsert mode, a column that grows when a row changes:
# cursor = "updated_at"

# Transforms run in order. The app wants our id under its own name...
[[sync.customers.transform]]
type = "rename"
fields = { id = "external_id" }

# ...a normalised SHA-256 of the email instead of the address (for ad audiences)...
[[sync.customers.transform]]
type = "hash_pii"
field = "email"
pii = "email"
output_field = "email_sha256"

# ...and nothing it does not need: support notes never leave the warehouse.
[[sync.customers.transform]]
type = "drop"
fields = ["notes"]

# Where to write: a table of the app's SQLite database, created on the first run.
# Other destinations: postgres, http, redis, nats (and, when built with them, hubspot,
# salesforce, google_ads, google_data_manager, meta).
[sync.customers.destination]
type = "sqlite"
path = "quickstart-data/app.db"
table = "customers"
create_table = true

# Run options (rse::SyncOptions); everything has a default.
[sync.customers.options]
# Refuse a run that would delete more than half of the destination's rows (past 10).
max_deletes = { fraction_above = { fraction = 0.5, floor = 10 } }
batch_rows = 500
# dry_run = true   # plan and report, write nothing
"#;
