//! A segment of a SQLite warehouse kept as two ad audiences: Google Customer Match (through
//! the Data Manager API) and a Meta Custom Audience, run against the in-process contract
//! servers the tests use (they answer as the vendors document, and the Google one checks
//! every request against Google's published schema), so it runs without any ad account:
//!
//! ```sh
//! cargo run --example audiences --features google,meta,sqlite
//! ```
//!
//! The warehouse's model is customers with a lifetime value and an advertising consent
//! flag; the segment is those worth at least 1,000. The first run uploads the segment;
//! then one customer changes address, one falls out of the segment, one withdraws consent
//! and one joins, and the second run sends exactly that. Each report shows the members
//! added and removed, those withheld for consent and the platform's match rate.
//!
//! Against real accounts, drop the servers and `with_base_url`, and give the credentials
//! by reference: a service account's key for Google
//! (`GoogleDataManagerConfig::service_account`), a system user's token for Meta.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Each contract server carries the test support kit it is built on; both are included here.
#![allow(clippy::duplicate_mod)]

#[path = "../rse-connectors/tests/support/datamanager_server/mod.rs"]
mod datamanager_server;
#[path = "../rse-connectors/tests/support/meta_server/mod.rs"]
mod meta_server;

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rse::connectors::audience::{
    AudienceFields, GoogleDataManagerNormalizer, IdentifierKind, MetaNormalizer, Normalizer, RowContext,
};
use rse::connectors::google::datamanager::ProductAccount;
use rse::connectors::saas::SaasAuthConfig;
use rse::connectors::state::SqliteStateStore;
use rse::connectors::{
    GoogleDataManagerConfig, GoogleDataManagerDestination, MetaAudienceConfig, MetaAudienceDestination,
};
use rse::sources::Model;
use rse::sources::sqlite::SqliteSource;
use rse::{Destination, Mode, SyncJob, SyncOptions};
use rusqlite::Connection;

/// A customer: email, phone, first name, last name, country, postal code, lifetime value,
/// consent to advertising.
type Customer = (&'static str, &'static str, &'static str, &'static str, &'static str, &'static str, i64, bool);

const CUSTOMERS: [Customer; 12] = [
    ("Ada.Lovelace@Gmail.com", "+44 20 7946 0018", "Ada", "Lovelace", "GB", "SW1A 1AA", 4_200, true),
    ("grace@example.org", "(415) 555-0134", "Grace", "Hopper", "US", "94105", 2_800, true),
    ("Linus@Example.fi", "040 123 4567", "Linus", "Torvalds", "FI", "00100", 1_350, true),
    ("barbara@example.com", "(212) 555-0100", "Barbara", "Liskov", "US", "10001", 900, true),
    ("ken@example.com", "(408) 555-0199", "Ken", "Thompson", "US", "95014", 1_900, true),
    ("margaret@example.com", "(617) 555-0170", "Margaret", "Hamilton", "US", "02139", 3_100, false),
    ("dennis@example.com", "", "Dennis", "Ritchie", "US", "07974", 1_200, true),
    ("frances@example.ca", "(416) 555-0111", "Frances", "Allen", "CA", "M5V 2T6", 650, true),
    ("Edsger@Example.nl", "020 555 0142", "Edsger", "Dijkstra", "NL", "1012 JS", 2_050, true),
    ("radia@example.com", "(206) 555-0123", "Radia", "Perlman", "US", "98101", 1_750, true),
    ("alan@example.co.uk", "07700 900123", "Alan", "Turing", "GB", "CB2 1TN", 5_000, true),
    ("katherine@example.com", "(757) 555-0190", "Katherine", "Johnson", "US", "23666", 1_100, true),
];

const SEGMENT: &str = "SELECT id, email, phone, first_name, last_name, country, postal_code, consent_ads \
                       FROM customers WHERE lifetime_value >= 1000";

fn create_warehouse(path: &Path) -> rusqlite::Result<()> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(&file);
    }
    let mut conn = Connection::open(path)?;
    conn.execute_batch(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT, phone TEXT, first_name TEXT, last_name TEXT,
            country TEXT, postal_code TEXT, lifetime_value INTEGER, consent_ads BOOLEAN)",
    )?;
    let tx = conn.transaction()?;
    for (i, (email, phone, first, last, country, postal, ltv, consent)) in CUSTOMERS.iter().enumerate() {
        tx.execute(
            "INSERT INTO customers VALUES (?1, ?2, NULLIF(?3, ''), ?4, ?5, ?6, ?7, ?8, ?9)",
            rusqlite::params![i as i64 + 1, email, phone, first, last, country, postal, ltv, consent],
        )?;
    }
    tx.commit()
}

/// Grace has a new address, Linus's value drops out of the segment, Radia withdraws
/// consent, Barbara's value rises into it.
fn change_warehouse(path: &Path) -> rusqlite::Result<()> {
    Connection::open(path)?.execute_batch(
        "UPDATE customers SET email = 'grace.hopper@example.org' WHERE id = 2;
         UPDATE customers SET lifetime_value = 400 WHERE id = 3;
         UPDATE customers SET consent_ads = 0 WHERE id = 10;
         UPDATE customers SET lifetime_value = 1500 WHERE id = 4;",
    )
}

/// Which columns hold which identifiers, and the consent flag.
fn fields() -> AudienceFields {
    AudienceFields::new()
        .email("email")
        .phone("phone")
        .first_name("first_name")
        .last_name("last_name")
        .country("country")
        .postal_code("postal_code")
        .consent("consent_ads")
}

/// The platforms know most of these people: their e-mail digests, as each platform
/// normalises them (the servers compute match rates from them).
fn known_digests(normalizer: &dyn Normalizer) -> Vec<String> {
    CUSTOMERS
        .iter()
        .take(9)
        .filter_map(|c| normalizer.normalize(IdentifierKind::Email, c.0, &RowContext::default()).ok().flatten())
        .map(|id| id.hex())
        .collect()
}

async fn sync(
    id: &str,
    warehouse: &Path,
    state: &Path,
    destination: impl Destination + 'static,
) -> Result<SyncJob, Box<dyn Error>> {
    Ok(SyncJob::builder(id)
        .source(SqliteSource::new(warehouse, Model::Query(SEGMENT.into())).with_key(["id"]))
        .destination(destination)
        .state(SqliteStateStore::open(state).await?)
        .mode(Mode::Mirror) // a customer who leaves the segment leaves the audience
        .options(SyncOptions::default())
        .build()
        .await?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let dir = std::env::var_os("RSE_AUDIENCES_DIR").map_or_else(|| PathBuf::from("audiences-data"), PathBuf::from);
    std::fs::create_dir_all(&dir)?;
    let (warehouse, state) = (dir.join("warehouse.db"), dir.join("state.db"));
    create_warehouse(&warehouse)?;
    let _ = std::fs::remove_file(&state);

    // Stand-ins for datamanager.googleapis.com and graph.facebook.com.
    let google = datamanager_server::DataManager::start().await;
    google.add_known_users(known_digests(&GoogleDataManagerNormalizer).into_iter().map(|d| format!("email:{d}")));
    let meta = meta_server::Meta::start().await;
    meta.know(known_digests(&MetaNormalizer).into_iter().map(|d| ("EMAIL", d)));

    let customer_match = GoogleDataManagerDestination::new(
        GoogleDataManagerConfig::new(
            SaasAuthConfig::Bearer { token: datamanager_server::TOKEN.into() },
            ProductAccount::google_ads(datamanager_server::OPERATING_ACCOUNT),
            datamanager_server::LIST_ID,
            fields(),
        )
        .with_terms_of_service_accepted(true)
        .with_base_url(google.base_url())
        .with_status_wait(Duration::from_secs(10), Duration::from_millis(50)),
    )?;
    customer_match.check().await?; // the token, the list, the Terms of Service (validateOnly)
    let custom_audience = MetaAudienceDestination::new(
        MetaAudienceConfig::new(meta_server::AUDIENCE, meta_server::TOKEN, fields()).with_base_url(meta.base_url()),
    )?;
    custom_audience.check().await?;

    let to_google = sync("high-value-to-google", &warehouse, &state, customer_match).await?;
    let to_meta = sync("high-value-to-meta", &warehouse, &state, custom_audience).await?;

    println!("== first run: the segment uploaded\n");
    println!("{}\n\n{}\n", to_google.run().await?, to_meta.run().await?);

    change_warehouse(&warehouse)?;
    println!("== second run: one new address, one out of the segment, one consent withdrawn, one new\n");
    println!("{}\n\n{}\n", to_google.run().await?, to_meta.run().await?);

    println!(
        "Google's list holds {} identifiers, Meta's audience {}; every request passed Google's schema: {}.",
        google.audience(datamanager_server::LIST_ID).len(),
        meta.audience(meta_server::AUDIENCE).len(),
        google.violations().is_empty()
    );
    Ok(())
}
