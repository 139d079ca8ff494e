//! Each class of configuration error, its exact message kept as a snapshot under
//! `tests/snapshots/` (`RSE_BLESS=1` rewrites them): the file, the line and column, the
//! field, and what is expected.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod config_common;

use config_common::{TestDir, create_warehouse, snapshot};
use rse_cli::config::{ConfigErrorKind, ConfigFile};

/// A valid sync from the warehouse into the app's database; `{source}`, `{transform}`,
/// `{destination}` and `{options}` are replaced by each case.
const BASE: &str = r#"[state]
type = "sqlite"
path = "state.db"

[sync.customers]
mode = "mirror"

[sync.customers.source]
{source}

{transform}

[sync.customers.destination]
{destination}

[sync.customers.options]
{options}
"#;

const SOURCE: &str = "type = \"sqlite\"\npath = \"warehouse.db\"\ntable = \"customers\"\nkey = [\"id\"]";
const DESTINATION: &str = "type = \"sqlite\"\npath = \"app.db\"\ntable = \"customers\"\ncreate_table = true";

fn config(source: &str, transform: &str, destination: &str, options: &str) -> String {
    BASE.replace("{source}", source)
        .replace("{transform}", transform)
        .replace("{destination}", destination)
        .replace("{options}", options)
}

/// The error loading `text` fails with, as shown.
fn load_error(dir: &TestDir, text: &str) -> (ConfigErrorKind, String) {
    match dir.load(text) {
        Ok(_) => panic!("the configuration loaded:\n{text}"),
        Err(e) => (e.kind(), dir.shown(&e)),
    }
}

/// The error building the sync `customers` of `text` fails with, as shown.
async fn build_error(dir: &TestDir, text: &str) -> (ConfigErrorKind, String) {
    let file = dir.load(text).unwrap_or_else(|e| panic!("the configuration did not load: {e}"));
    match file.require_sync("customers").unwrap().build().await {
        Ok(_) => panic!("the sync built:\n{text}"),
        Err(e) => (e.kind(), dir.shown(&e)),
    }
}

#[tokio::test]
async fn the_base_configuration_builds() {
    let dir = TestDir::new("errors-base");
    create_warehouse(&dir.path("warehouse.db"), 3);
    let file = dir.load(&config(SOURCE, "", DESTINATION, "")).unwrap();
    let built = file.require_sync("customers").unwrap().build().await.unwrap();
    assert_eq!(built.job.run().await.unwrap().counts.applied.insert, 3);
}

#[test]
fn an_unknown_field_is_refused_with_the_fields_there_are() {
    let dir = TestDir::new("errors-unknown-field");
    let text = config(SOURCE, "", "type = \"sqlite\"\npath = \"app.db\"\ntabel = \"customers\"", "");
    let (kind, shown) = load_error(&dir, &text);
    assert_eq!(kind, ConfigErrorKind::Invalid);
    snapshot("config_errors/unknown_field", &shown);

    let text = config(SOURCE, "", DESTINATION, "").replace("mode = \"mirror\"", "mode = \"mirror\"\nschedule = \"5m\"");
    snapshot("config_errors/unknown_sync_field", &load_error(&dir, &text).1);

    let text = config(SOURCE, "", DESTINATION, "bacth_rows = 10");
    snapshot("config_errors/unknown_option", &load_error(&dir, &text).1);
}

#[test]
fn a_value_of_the_wrong_type_is_refused_naming_the_expected_type() {
    let dir = TestDir::new("errors-wrong-type");
    let text = config(SOURCE, "", DESTINATION, "batch_rows = \"500\"");
    let (kind, shown) = load_error(&dir, &text);
    assert_eq!(kind, ConfigErrorKind::Invalid);
    snapshot("config_errors/wrong_type", &shown);

    let text = config(&SOURCE.replace("key = [\"id\"]", "key = \"id\""), "", DESTINATION, "");
    snapshot("config_errors/wrong_type_key", &load_error(&dir, &text).1);

    let text = config(SOURCE, "", DESTINATION, "linger = \"soon\"");
    snapshot("config_errors/wrong_duration", &load_error(&dir, &text).1);
}

#[tokio::test]
async fn a_secret_in_an_unset_variable_fails_the_build_naming_the_variable() {
    let dir = TestDir::new("errors-secret-env");
    create_warehouse(&dir.path("warehouse.db"), 1);
    let destination = DESTINATION.replace("table = \"customers\"", "table = \"${env:RSE_TEST_SURELY_UNSET_TABLE}\"");
    let text = config(SOURCE, "", &destination, "");
    let (kind, shown) = build_error(&dir, &text).await;
    assert_eq!(kind, ConfigErrorKind::Secret);
    snapshot("config_errors/missing_secret_env", &shown);
}

#[tokio::test]
async fn a_secret_file_that_is_missing_fails_the_build_naming_the_file() {
    let dir = TestDir::new("errors-secret-file");
    create_warehouse(&dir.path("warehouse.db"), 1);
    let destination = DESTINATION.replace("table = \"customers\"", "table = \"${file:secrets/table}\"");
    let (kind, shown) = build_error(&dir, &config(SOURCE, "", &destination, "")).await;
    assert_eq!(kind, ConfigErrorKind::Secret);
    snapshot("config_errors/missing_secret_file", &shown);
}

#[test]
fn a_malformed_reference_is_refused_at_load() {
    let dir = TestDir::new("errors-secret-syntax");
    let destination = DESTINATION.replace("table = \"customers\"", "table = \"${vault:crm/table}\"");
    let (kind, shown) = load_error(&dir, &config(SOURCE, "", &destination, ""));
    assert_eq!(kind, ConfigErrorKind::Secret);
    snapshot("config_errors/malformed_reference", &shown);
}

#[tokio::test]
async fn an_unparsable_postgres_url_is_named() {
    let dir = TestDir::new("errors-pg-url");
    let source = "type = \"postgres\"\nurl = \"postgres://rse@localhost:notaport/analytics\"\ntable = \"customers\"\nkey = [\"id\"]";
    let (kind, shown) = build_error(&dir, &config(source, "", DESTINATION, "")).await;
    assert_eq!(kind, ConfigErrorKind::Build);
    snapshot("config_errors/bad_postgres_url", &shown);
}

#[test]
fn an_http_url_without_a_scheme_is_refused() {
    let dir = TestDir::new("errors-http-url");
    let destination = "type = \"http\"\nurl = \"crm.example.com/hooks/customers\"";
    let (kind, shown) = load_error(&dir, &config(SOURCE, "", destination, ""));
    assert_eq!(kind, ConfigErrorKind::Invalid);
    snapshot("config_errors/http_url_without_scheme", &shown);
}

#[test]
fn an_unknown_transform_lists_the_transforms_there_are() {
    let dir = TestDir::new("errors-transform");
    let transform = "[[sync.customers.transform]]\ntype = \"uppercase\"\nfields = [\"email\"]";
    let (kind, shown) = load_error(&dir, &config(SOURCE, transform, DESTINATION, ""));
    assert_eq!(kind, ConfigErrorKind::Invalid);
    snapshot("config_errors/unknown_transform", &shown);

    let transform = "[[sync.customers.transform]]\ntype = \"mask\"\nfield = \"email\"\nkeep_first = 2";
    snapshot("config_errors/transform_unknown_field", &load_error(&dir, &config(SOURCE, transform, DESTINATION, "")).1);
}

#[tokio::test]
async fn a_key_column_the_source_lacks_is_named() {
    let dir = TestDir::new("errors-key");
    create_warehouse(&dir.path("warehouse.db"), 1);
    let source = SOURCE.replace("key = [\"id\"]", "key = [\"customer_id\"]");
    let (kind, shown) = build_error(&dir, &config(&source, "", DESTINATION, "")).await;
    assert_eq!(kind, ConfigErrorKind::Build);
    snapshot("config_errors/missing_key_column", &shown);
}

#[tokio::test]
async fn a_transform_on_a_field_that_is_not_there_is_placed_at_that_transform() {
    let dir = TestDir::new("errors-transform-field");
    create_warehouse(&dir.path("warehouse.db"), 1);
    let transform = "[[sync.customers.transform]]\ntype = \"drop\"\nfields = [\"notes\"]\n\n\
                     [[sync.customers.transform]]\ntype = \"mask\"\nfield = \"phone\"";
    let (kind, shown) = build_error(&dir, &config(SOURCE, transform, DESTINATION, "")).await;
    assert_eq!(kind, ConfigErrorKind::Build);
    snapshot("config_errors/transform_missing_field", &shown);
}

#[tokio::test]
async fn an_option_out_of_range_is_placed_at_the_option() {
    let dir = TestDir::new("errors-option");
    create_warehouse(&dir.path("warehouse.db"), 1);
    let (kind, shown) = build_error(&dir, &config(SOURCE, "", DESTINATION, "batch_rows = 0")).await;
    assert_eq!(kind, ConfigErrorKind::Build);
    snapshot("config_errors/option_out_of_range", &shown);
}

#[test]
fn a_sync_name_that_does_not_exist_lists_the_names() {
    let dir = TestDir::new("errors-sync-name");
    let file = dir.load(&config(SOURCE, "", DESTINATION, "")).unwrap();
    assert!(file.sync("custmers").is_none());
    let e = file.require_sync("custmers").unwrap_err();
    assert_eq!(e.kind(), ConfigErrorKind::UnknownSync);
    snapshot("config_errors/unknown_sync", &dir.shown(&e));
}

#[test]
fn structural_mistakes_say_what_the_place_takes() {
    let dir = TestDir::new("errors-structure");
    // No destination.
    let text = config(SOURCE, "", DESTINATION, "").replace("[sync.customers.destination]", "[sync.customers.dest]");
    snapshot("config_errors/unknown_part", &load_error(&dir, &text).1);
    // An unknown source type.
    let text = config(&SOURCE.replace("\"sqlite\"", "\"snowflake\""), "", DESTINATION, "");
    snapshot("config_errors/unknown_source_type", &load_error(&dir, &text).1);
    // A source without a type.
    let text = config("path = \"warehouse.db\"\ntable = \"customers\"", "", DESTINATION, "");
    snapshot("config_errors/source_without_type", &load_error(&dir, &text).1);
    // No state store anywhere.
    let text = config(SOURCE, "", DESTINATION, "").replace("[state]\ntype = \"sqlite\"\npath = \"state.db\"\n", "");
    snapshot("config_errors/no_state_store", &load_error(&dir, &text).1);
    // Not TOML.
    let (kind, shown) = load_error(&dir, "[sync.customers\nmode = \"mirror\"\n");
    assert_eq!(kind, ConfigErrorKind::Syntax);
    snapshot("config_errors/not_toml", &shown);
}

#[test]
fn a_missing_file_is_named() {
    let e = ConfigFile::load(std::path::Path::new("/nonexistent/rse.toml")).unwrap_err();
    assert_eq!(e.kind(), ConfigErrorKind::Io);
    assert!(e.to_string().starts_with("/nonexistent/rse.toml: cannot read the configuration file"), "{e}");
}
