//! A customers model in a SQLite "warehouse" synced into Salesforce Contacts by an external id,
//! with the state in a second SQLite file.
//!
//! It signs in with the OAuth 2.0 JWT bearer flow of a connected app (Salesforce Help, "OAuth
//! 2.0 JWT Bearer Flow for Server-to-Server Integration") and needs, in the environment:
//! `SF_CLIENT_ID` (the connected app's consumer key), `SF_USERNAME` (the integration user),
//! `SF_PRIVATE_KEY_FILE` (the PEM key whose certificate the app holds), and optionally
//! `SF_LOGIN_URL` (`https://test.salesforce.com` for a sandbox). The Contact object needs a
//! text field `Rse_Ext_Id__c` marked External ID and Unique, and `Churn_Score__c` (number).
//! `RSE_WAREHOUSE` names the SQLite file holding a `customers` table (`id`, `first_name`,
//! `last_name`, `email`, `churn_score`), `RSE_STATE` the state file.
//!
//! Run with `cargo run --example salesforce --features salesforce`.

use std::error::Error;
use std::time::Duration;

use rse::connectors::saas::JwtBearerConfig;
use rse::connectors::state::SqliteStateStore;
use rse::connectors::{SalesforceBulkOptions, SalesforceDestination, SalesforceDestinationConfig, Secret};
use rse::sources::Model;
use rse::sources::sqlite::SqliteSource;
use rse::{Destination, MaxDeletes, Mode, SyncJob, SyncOptions};

fn env(name: &str) -> Result<String, Box<dyn Error>> {
    std::env::var(name).map_err(|_| format!("set {name} (see the example's docs)").into())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let login = std::env::var("SF_LOGIN_URL").unwrap_or_else(|_| "https://login.salesforce.com".to_owned());
    let auth = JwtBearerConfig::new(
        format!("{login}/services/oauth2/token"),
        env("SF_CLIENT_ID")?,
        env("SF_USERNAME")?,
        // Read now, shown nowhere: `Debug` of the configuration prints `***`.
        Secret::from_file(env("SF_PRIVATE_KEY_FILE")?)?,
    );
    let config = SalesforceDestinationConfig::new(auth, "Contact", "Rse_Ext_Id__c")
        // The external id comes from the sync key, `id`; the other fields by name.
        .with_field("first_name", "FirstName")
        .with_field("last_name", "LastName")
        .with_field("email", "Email")
        .with_field("churn_score", "Churn_Score__c")
        // Batches of 2,000 upserts and more go by Bulk API 2.0, waited for up to 30 minutes.
        .with_bulk(
            SalesforceBulkOptions::default()
                .with_poll(rse::connectors::saas::PollOptions::new(Duration::from_secs(1_800))),
        );
    let contacts = SalesforceDestination::new(config)?;
    // Fails here, naming every field the integration user cannot write, rather than at the
    // first record.
    contacts.check().await?;

    let warehouse = std::env::var("RSE_WAREHOUSE").unwrap_or_else(|_| "warehouse.db".to_owned());
    let state = std::env::var("RSE_STATE").unwrap_or_else(|_| "rse-state.db".to_owned());
    let sync = SyncJob::builder("customers-to-salesforce")
        .source(SqliteSource::new(&warehouse, Model::table("customers")).with_key(["id"]))
        .destination(contacts)
        .state(SqliteStateStore::open(&state).await?)
        // Upsert, and delete the contacts this sync created whose rows left the model.
        .mode(Mode::Mirror)
        .options(
            SyncOptions::default()
                // Large batches for an initial load (they go by Bulk), two at a time.
                .with_batch_rows(10_000)
                .with_batch_bytes(64 << 20)
                .with_max_concurrency(2)
                // A write waits for its Bulk job: longer than the poll's 30 minutes.
                .with_write_timeout(Duration::from_secs(2_100))
                // Leave a fifth of the org's daily API allowance to other integrations.
                .with_quota_reserve(0.2)
                .with_max_deletes(Some(MaxDeletes::Fraction(0.05))),
        )
        .build()
        .await?;
    let report = sync.run().await?;
    println!("{report}");
    Ok(())
}
