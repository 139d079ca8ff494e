//! The example `rse init` writes parses, builds, and syncs the quickstart's files: all of
//! them the first time, then only what changed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod config_common;

use config_common::{TestDir, change_warehouse, create_warehouse, rows};
use rse::{Mode, RunStatus};
use rse_cli::config::ConfigFile;

#[tokio::test]
async fn the_example_syncs_the_quickstart_files_then_only_the_changes() {
    let dir = TestDir::new("init");
    let config = dir.path(rse_cli::init::DEFAULT_FILE);
    std::fs::write(&config, rse_cli::init::example()).unwrap();
    std::fs::create_dir_all(dir.path("quickstart-data")).unwrap();
    let warehouse = dir.path("quickstart-data/warehouse.db");
    create_warehouse(&warehouse, 20);

    let file = ConfigFile::load(&config).unwrap();
    assert_eq!(file.sync_names(), ["customers"]);
    let spec = file.require_sync("customers").unwrap();
    assert_eq!((spec.id(), spec.mode(), spec.source_type()), ("customers-to-app", Mode::Mirror, "sqlite"));

    let first = spec.build().await.unwrap().job.run().await.unwrap();
    assert_eq!((&first.status, first.counts.applied.insert), (&RunStatus::Succeeded, 20), "{first}");
    let app = dir.path("quickstart-data/app.db");
    let columns = rows(&app, "SELECT name FROM pragma_table_info('customers') ORDER BY cid");
    let columns: Vec<&str> = columns.iter().map(|c| c[0].as_str()).collect();
    assert_eq!(columns, ["external_id", "email_sha256", "churn_score", "lifecycle_stage", "ltv", "updated_at"]);

    change_warehouse(&warehouse);
    // A later invocation of the command: the file loaded and the sync built anew.
    let file = ConfigFile::load(&config).unwrap();
    let second = file.require_sync("customers").unwrap().build().await.unwrap().job.run().await.unwrap();
    let applied = &second.counts.applied;
    assert_eq!((applied.insert, applied.update, applied.delete), (1, 2, 1), "{second}");
    assert_eq!(second.counts.unchanged, 17);
    assert_eq!(rows(&app, "SELECT count(*) FROM customers"), vec![vec!["20"]]);
}

#[test]
fn the_example_holds_no_inline_secret() {
    let text = rse_cli::init::example();
    for line in text.lines().filter(|l| l.contains("password") || l.contains("token")) {
        assert!(line.contains("${env:") || line.contains("${file:"), "a credential is written inline: {line}");
    }
}
