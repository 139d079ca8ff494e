//! What is checked before a record is sent: the configuration when the destination is built,
//! the field map against the sync's schema (`check_schema`, when the sync is built), and the
//! org's describe of the sObject (`check`).
//!
//! Follows the REST API Developer Guide, "sObject Describe" (`createable`, `updateable`,
//! `externalId`), and Salesforce Help, "OAuth 2.0 JWT Bearer Flow for Server-to-Server
//! Integration"; saas-contracts.md §2.

use rse_connectors::saas::SaasAuthConfig;
use rse_connectors::{Destination, DestinationError, SalesforceDestination, SalesforceDestinationConfig};
use rse_core::{DataType, Field, Schema};

use crate::salesforce_server::{FieldDef, FieldType, ObjectDef, SalesforceServer, test_key};
use crate::world::{EXT, config, schema};

fn fatal(result: Result<impl std::fmt::Debug, DestinationError>) -> String {
    match result {
        Err(error @ DestinationError::Fatal { .. }) => error.to_string(),
        other => panic!("expected a fatal error, got {other:?}"),
    }
}

#[tokio::test]
async fn check_passes_a_writable_mapping_and_names_every_field_the_org_cannot_take() {
    let server = SalesforceServer::start().await;
    SalesforceDestination::new(config(&server)).unwrap().check().await.unwrap();

    let mut contact = ObjectDef::contact();
    contact.fields.push(FieldDef {
        createable: true,
        updateable: false,
        ..FieldDef::new("Source__c", FieldType::String)
    });
    server.define("Contact", contact);
    let wrong = SalesforceDestinationConfig::new(crate::world::jwt(&server), "Contact", "Email")
        .with_field("name", "LastName")
        .with_field("created", "CreatedDate")
        .with_field("source", "Source__c")
        .with_field("tier", "Tier__c");
    let message = fatal(SalesforceDestination::new(wrong).unwrap().check().await);
    for named in [
        "`Email` (`external_id_field`) is not marked External ID",
        "`CreatedDate` is not createable nor updateable",
        "`Source__c` is not updateable",
        "`Tier__c` (from field `tier`) is not a field of Contact",
    ] {
        assert!(message.contains(named), "{named} in {message}");
    }
    assert!(!message.contains("LastName"), "{message}");

    let missing = SalesforceDestinationConfig::new(crate::world::jwt(&server), "Invoice__c", EXT);
    let message = fatal(SalesforceDestination::new(missing).unwrap().check().await);
    assert!(message.contains("HTTP 404") && message.contains("`object`"), "{message}");
}

#[tokio::test]
async fn check_reports_refused_credentials_as_unauthorized() {
    let server = SalesforceServer::start().await;
    server.lock().refuse_grants = Some("user hasn't approved this consumer".into());
    let error = SalesforceDestination::new(config(&server)).unwrap().check().await.unwrap_err();
    assert!(matches!(error, DestinationError::Unauthorized { .. }), "{error}");
    assert!(!error.to_string().contains("approved"), "the endpoint's description is not repeated: {error}");
}

#[tokio::test]
async fn check_schema_names_the_field_and_what_to_change() {
    let server = SalesforceServer::start().await;
    let dest = SalesforceDestination::new(config(&server)).unwrap();
    dest.check_schema(&schema()).unwrap();

    let typo = SalesforceDestination::new(config(&server).with_field("emial", "Phone")).unwrap();
    assert!(
        fatal(typo.check_schema(&schema()).map(|_| ()))
            .contains("field `emial` (Salesforce property `Phone`) is not in the model")
    );

    let twice = SalesforceDestination::new(config(&server).with_field("name", EXT)).unwrap();
    assert!(fatal(twice.check_schema(&schema())).contains("remove it from `fields`"));

    let composite = Schema::new(
        vec![
            Field::required("region", DataType::String),
            Field::required("id", DataType::Int),
            Field::new("name", DataType::String),
        ],
        &["region", "id"],
    )
    .unwrap();
    let dest =
        SalesforceDestination::new(config(&server).with_fields(Default::default()).with_field("name", "LastName"))
            .unwrap();
    assert!(
        fatal(dest.check_schema(&composite))
            .contains("the sync key has 2 fields (region, id); set `external_id_source`")
    );

    let by_score = SalesforceDestination::new(config(&server).with_external_id_source("score")).unwrap();
    assert!(
        fatal(by_score.check_schema(&schema())).contains("field `score` (the external id, `Rse_Ext_Id__c`) is of type")
    );
}

#[tokio::test]
async fn a_wrong_setting_is_named_when_the_destination_is_built() {
    let server = SalesforceServer::start().await;
    let cases: [(SalesforceDestinationConfig, &str); 5] = [
        (config(&server).with_api_version("v45.0"), "needs 46.0 or later"),
        (config(&server).with_api_version("latest"), "`api_version` is `latest`"),
        (SalesforceDestinationConfig::new(crate::world::jwt(&server), "Contact/x", EXT), "`object` is `Contact/x`"),
        (config(&server).with_field("name", "Last Name"), "maps to `Last Name`"),
        (config(&server).with_instance_url("acme.my.salesforce.com"), "`instance_url` is not an http or https URL"),
    ];
    for (config, expected) in cases {
        let message = fatal(SalesforceDestination::new(config));
        assert!(message.contains(expected), "{expected} in {message}");
    }
    let mut no_key = config(&server);
    no_key.auth = crate::world::jwt(&server).into();
    if let SaasAuthConfig::JwtBearer(jwt) = &mut no_key.auth {
        jwt.private_key = "not a key".into();
    }
    assert!(fatal(SalesforceDestination::new(no_key)).contains("`private_key` is not PEM text"));
}

#[test]
fn the_configuration_is_data_and_shows_no_secret() {
    let text = serde_json::json!({
        "auth": {
            "type": "jwt_bearer",
            "token_url": "https://login.salesforce.com/services/oauth2/token",
            "client_id": "3MVG9.app",
            "username": "integration@example.com",
            "private_key": test_key().private_pem,
        },
        "object": "Contact",
        "external_id_field": EXT,
        "fields": [{"field": "name", "property": "LastName"}],
        "bulk": {"min_records": 5000, "poll": {"max_wait": "2h"}},
        "max_batch_rows": 20000,
    });
    let config: SalesforceDestinationConfig = serde_json::from_value(text.clone()).unwrap();
    assert_eq!((config.bulk.min_records, config.bulk.poll.max_wait.as_secs()), (5_000, 7_200));
    assert_eq!((config.api_version.as_str(), config.max_batch_rows, config.max_concurrency), ("v66.0", 20_000, 4));
    let shown = format!("{config:?}");
    assert!(!shown.contains("PRIVATE KEY") && shown.contains("Rse_Ext_Id__c"), "{shown}");
    let again: SalesforceDestinationConfig = serde_json::from_value(serde_json::to_value(&config).unwrap()).unwrap();
    assert_eq!(again.fields, config.fields);

    let mut typo = text;
    typo["bulk"]["min_record"] = 1.into();
    let error = serde_json::from_value::<SalesforceDestinationConfig>(typo).unwrap_err().to_string();
    assert!(error.contains("unknown field `min_record`"), "{error}");
}
