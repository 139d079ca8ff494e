//! One write at a time: what goes to HubSpot, how each version's answers become outcomes,
//! receipts, memos and quota, how refusals are classified, and what `check()` names.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rse_connectors::hubspot::{ApiVersion, UtcOffset};
use rse_connectors::saas::SaasAuthConfig;
use rse_connectors::{HubSpotDestination, HubSpotDestinationConfig};
use rse_core::testing::ChangeBatchBuilder;
use rse_core::*;
use serde_json::Value as Json;

use super::common::*;
use crate::hubspot_server::{Policy, PropertyDef, TOKEN};

fn batch(changes: Vec<(Op, Record)>) -> ChangeBatch {
    changes.into_iter().fold(ChangeBatchBuilder::new(&schema(), "write"), |b, (op, r)| b.change(op, r)).build()
}

fn inserts(records: Vec<Record>) -> ChangeBatch {
    batch(records.into_iter().map(|r| (Op::Insert, r)).collect())
}

fn rejection(outcome: &ChangeOutcome) -> (&str, bool) {
    match outcome {
        ChangeOutcome::Rejected { reason, retryable } => (reason.as_str(), *retryable),
        other => panic!("not a rejection: {other:?}"),
    }
}

#[tokio::test]
async fn each_version_s_partial_failure_refuses_only_its_inputs_and_never_repeats_a_value() {
    for version in VERSIONS {
        let hs = server().await;
        // An account validation rule whose message repeats what it refused.
        hs.set_rule(|input| {
            (input.id == "user2@example.com").then(|| {
                let name = input.properties["firstname"].as_str().unwrap_or_default();
                format!("Contact {} ({name}) is refused by the rule \"no test accounts\"", input.id)
            })
        });
        let destination = destination(&hs, version);
        let sent = inserts(contacts(1..=5));
        let out = destination.write(&sent).await.unwrap();

        let (reason, retryable) = rejection(&out.outcomes[1]);
        assert!(!retryable, "{version}: a validation rule's refusal waits for the next run");
        assert!(
            reason.starts_with("HubSpot refused it (category=VALIDATION_ERROR, code=VALIDATION_RULE): Contact … is refused by the rule …"),
            "{version}: {reason}"
        );
        for value in ["user2", "User2", "Contact2", "example.com"] {
            assert!(!reason.contains(value), "{version}: the reason repeats `{value}`: {reason}");
        }
        for i in [0, 2, 3, 4] {
            assert_eq!(out.outcomes[i], ChangeOutcome::Applied, "{version}");
            let receipt = out.receipt(i).unwrap();
            assert_eq!(receipt.effect, Some(Effect::Created), "{version}");
            let id = held(&hs, i as i64 + 1).unwrap().id.to_string();
            assert_eq!(
                receipt.memo.as_ref().and_then(Memo::as_str),
                Some(id.as_str()),
                "{version}: the record id is the memo"
            );
        }
        assert!(held(&hs, 2).is_none());
        for record in contacts(1..=5).iter().filter(|r| r.values[0] != Value::Int(2)) {
            assert_holds(&hs, record);
        }

        // One input per change, each with its change's idempotency key as its trace id.
        let (path, body) = hs.lock().bodies.last().cloned().unwrap();
        assert!(path.contains(version.as_str()) && path.ends_with("/contacts/batch/upsert"), "{path}");
        let inputs = body["inputs"].as_array().unwrap();
        for (input, change) in inputs.iter().zip(&sent.changes) {
            assert_eq!(input["objectWriteTraceId"], change.idempotency_key.to_string());
            assert_eq!(input["idProperty"], "email");
        }
        assert_eq!(inputs[0]["id"], "user1@example.com", "the e-mail is lower-cased");

        // The quota the answer reported.
        let quota = out.quota.unwrap();
        assert_eq!(quota.window.unwrap().limit, Some(190));
        assert_eq!(quota.window.unwrap().resets_in, Some(Duration::from_secs(10)));
        assert_eq!(quota.daily.unwrap().remaining, 1_000_000 - hs.daily_used());

        // The rule lifted, the same changes again: updates, and the refused one created.
        hs.lift_rule();
        let out = destination.write(&sent).await.unwrap();
        let effects: Vec<_> = (0..5).map(|i| out.receipt(i).and_then(|r| r.effect)).collect();
        let (created, updated) = (Some(Effect::Created), Some(Effect::Updated));
        assert_eq!(effects, vec![updated, created, updated, updated, updated], "{version}");
        assert!(hs.creations("contacts").values().all(|n| *n == 1));
        hs.assert_no_violations();
    }
}

#[tokio::test]
async fn an_answer_that_does_not_echo_trace_ids_is_matched_by_the_id_value() {
    for version in [ApiVersion::V2026_09, ApiVersion::V2026_03] {
        let hs = server().await;
        hs.lock().crm.echo_traces = false;
        hs.set_rule(|input| (input.id == "user3@example.com").then(|| "Refused".to_owned()));
        let destination = destination(&hs, version);
        let out = destination.write(&inserts(contacts(1..=4))).await.unwrap();
        assert!(matches!(out.outcomes[2], ChangeOutcome::Rejected { .. }), "{version}: {:?}", out.outcomes);
        for i in [0, 1, 3] {
            let id = held(&hs, i as i64 + 1).unwrap().id.to_string();
            let memo = out.receipt(i).and_then(|r| r.memo.as_ref()).and_then(Memo::as_str).map(str::to_owned);
            assert_eq!(memo, Some(id), "{version}: contact {} matched by its e-mail", i + 1);
        }
        hs.assert_no_violations();
    }
}

#[tokio::test]
async fn two_rows_for_one_contact_in_a_batch_send_the_first_only() {
    let hs = server().await;
    let destination = destination(&hs, ApiVersion::V2026_03);
    let mut twin = contact(2);
    twin.values[1] = Value::from(" USER1@example.COM ");
    let out = destination.write(&inserts(vec![contact(1), twin, contact(3)])).await.unwrap();
    assert_eq!(out.outcomes[0], ChangeOutcome::Applied);
    let (reason, retryable) = rejection(&out.outcomes[1]);
    assert!(!retryable);
    assert!(reason.contains(&format!("position 0, key {}", key(1).redacted())), "{reason}");
    assert!(reason.contains("same HubSpot `contacts` record by `email`") && !reason.contains("user1"), "{reason}");
    assert_eq!(out.outcomes[2], ChangeOutcome::Applied);
    assert_eq!(hs.live("contacts").len(), 2);
    hs.assert_no_violations();
}

#[tokio::test]
async fn a_refusal_of_the_whole_batch_is_an_invalid_batch_to_bisect() {
    let hs = server().await;
    hs.set_batch_limit(2);
    let destination = destination(&hs, ApiVersion::V2026_03);
    let error = destination.write(&inserts(contacts(1..=3))).await.unwrap_err();
    let DestinationError::InvalidBatch { message } = &error else { panic!("{error:?}") };
    assert!(message.contains("HTTP 400") && message.contains("category=VALIDATION_ERROR"), "{message}");
    // A record that cannot be a property value is refused alone, before anything is sent.
    let mut bad = contact(4);
    bad.values[7] = Value::Float(f64::NAN);
    let out = destination.write(&inserts(vec![contact(1), bad])).await.unwrap();
    let (reason, _) = rejection(&out.outcomes[1]);
    assert!(reason.contains("field `score` (HubSpot property `score`)"), "{reason}");
    let mut empty = contact(5);
    empty.values[1] = Value::Null;
    let out = destination.write(&inserts(vec![empty])).await.unwrap();
    let (reason, _) = rejection(&out.outcomes[0]);
    assert!(reason.contains("field `email` (HubSpot property `email`, which finds the record) is empty"), "{reason}");
    hs.assert_no_violations();
}

#[tokio::test]
async fn deletes_archive_by_the_kept_record_id_and_never_by_a_guess() {
    let hs = server().await;
    let destination = destination(&hs, ApiVersion::V2026_09);
    let out = destination.write(&inserts(contacts(1..=3))).await.unwrap();
    let memo = |i: usize| out.receipt(i).and_then(|r| r.memo.clone()).unwrap();
    let requests = hs.lock().requests;

    // Keys without a record id, which nothing else identifies (the e-mail is not the key, and
    // no key property is configured): applied, and nothing is sent at all.
    let gone = batch(vec![(Op::Delete, contact(1)), (Op::Delete, contact(9))]);
    let out2 = destination.write(&gone).await.unwrap();
    assert!(out2.outcomes.iter().all(|o| *o == ChangeOutcome::Applied));
    assert_eq!(hs.lock().requests, requests, "no call for deletes without a record id");
    assert_eq!(hs.live("contacts").len(), 3);

    // With the ids the writes answered: one archive call, with an update in the same batch.
    let mixed = ChangeBatchBuilder::new(&schema(), "write")
        .change(Op::Delete, contact(1))
        .with_memo(memo(0))
        .change(Op::Update, contact_named(3, "Changed"))
        .with_memo(memo(2))
        .change(Op::Delete, contact(2))
        .with_memo(Memo::text("not a record id").unwrap())
        .build();
    let out3 = destination.write(&mixed).await.unwrap();
    assert_eq!(out3.outcomes[0], ChangeOutcome::Applied);
    assert_eq!(out3.receipt(1).and_then(|r| r.effect), Some(Effect::Updated));
    let (reason, _) = rejection(&out3.outcomes[2]);
    assert!(reason.contains("not a HubSpot record id") && reason.contains("not archiving by a guess"), "{reason}");
    assert_eq!(hs.calls("archive"), 1);
    let archived = hs.lock().archived.clone();
    assert_eq!(archived, vec![("contacts".to_owned(), memo(0).as_str().unwrap().parse::<u64>().unwrap())]);
    assert!(held(&hs, 1).is_none() && held(&hs, 2).is_some());
    assert_eq!(held(&hs, 3).unwrap().properties["firstname"], "Changed");
    // A repeated archive (a lost answer) is no error.
    let again = ChangeBatchBuilder::new(&schema(), "write").change(Op::Delete, contact(1)).with_memo(memo(0)).build();
    assert_eq!(destination.write(&again).await.unwrap().outcomes, vec![ChangeOutcome::Applied]);
    hs.assert_no_violations();
}

#[tokio::test]
async fn a_delete_without_a_memo_finds_the_record_by_the_id_property_mapped_from_the_key() {
    for version in VERSIONS {
        let hs = server().await;
        let destination = HubSpotDestination::new(companies_config(&hs).with_api_version(version)).unwrap();
        destination.write(&inserts(contacts(1..=3))).await.unwrap();
        let first = company(&hs, 1).unwrap().id;

        // Key 1 was created but its record id never kept (the answer was lost); key 9 never
        // reached HubSpot.
        let gone = batch(vec![(Op::Delete, contact(1)), (Op::Delete, contact(9))]);
        let out = destination.write(&gone).await.unwrap();
        assert_eq!(out.outcomes, vec![ChangeOutcome::Applied; 2], "{version}");
        assert_eq!((hs.calls("read"), hs.calls("archive")), (1, 1), "{version}");
        let read = last_body(&hs, "/companies/batch/read");
        assert_eq!(read["idProperty"], "external_id", "{version}");
        assert_eq!(read["inputs"], serde_json::json!([{"id": "1"}, {"id": "9"}]), "{version}");
        assert_eq!(archived(&hs), vec![first], "{version}: the record found, by its id");
        assert!(company(&hs, 1).is_none() && company(&hs, 2).is_some() && company(&hs, 3).is_some(), "{version}");

        // Nothing found (archived already): applied, nothing archived.
        let out = destination.write(&batch(vec![(Op::Delete, contact(1))])).await.unwrap();
        assert_eq!(out.outcomes, vec![ChangeOutcome::Applied], "{version}");
        assert_eq!((hs.calls("read"), hs.calls("archive")), (2, 1), "{version}: no archive call for nothing");
        assert_eq!(hs.live("companies").len(), 2, "{version}");
        assert!(out.quota.is_some(), "{version}: the read's quota headers are reported");
        hs.assert_no_violations();
    }
}

#[tokio::test]
async fn a_delete_without_a_memo_finds_the_record_by_the_key_property() {
    let hs = server().await;
    let destination = HubSpotDestination::new(config(&hs).with_key_property(KEY_PROPERTY)).unwrap();
    destination.check().await.unwrap();
    destination.write(&inserts(contacts(1..=3))).await.unwrap();
    let upsert = last_body(&hs, "/contacts/batch/upsert");
    assert_eq!(upsert["inputs"][1]["properties"][KEY_PROPERTY], "2", "every upsert writes the key");
    for id in 1..=3 {
        assert_eq!(held(&hs, id).unwrap().properties[KEY_PROPERTY], id.to_string());
    }
    let second = held(&hs, 2).unwrap().id;

    let out = destination.write(&batch(vec![(Op::Delete, contact(2)), (Op::Delete, contact(9))])).await.unwrap();
    assert_eq!(out.outcomes, vec![ChangeOutcome::Applied; 2]);
    let read = last_body(&hs, "/contacts/batch/read");
    assert_eq!(read["idProperty"], KEY_PROPERTY);
    assert_eq!(read["inputs"], serde_json::json!([{"id": "2"}, {"id": "9"}]));
    assert_eq!(archived(&hs), vec![second]);
    assert!(held(&hs, 2).is_none() && held(&hs, 1).is_some());

    // Not found: applied, nothing archived.
    let out = destination.write(&batch(vec![(Op::Delete, contact(7))])).await.unwrap();
    assert_eq!(out.outcomes, vec![ChangeOutcome::Applied]);
    assert_eq!((hs.calls("read"), hs.calls("archive")), (2, 1));

    // A row whose e-mail address changes would make a second record holding its key: refused.
    let mut moved = contact(1);
    moved.values[1] = Value::from("Moved@Example.com");
    let out = destination.write(&batch(vec![(Op::Update, moved)])).await.unwrap();
    let (reason, _) = rejection(&out.outcomes[0]);
    assert!(reason.starts_with("HubSpot refused it (category=CONFLICT)"), "{reason}");
    assert!(hs.record("contacts", "email", "moved@example.com").is_none());

    // Without the key property nothing identifies the record: applied without a call, and
    // the record stays.
    let requests = hs.lock().requests;
    let plain = super::common::destination(&hs, ApiVersion::V2026_03);
    assert_eq!(
        plain.write(&batch(vec![(Op::Delete, contact(3))])).await.unwrap().outcomes,
        vec![ChangeOutcome::Applied]
    );
    assert_eq!(hs.lock().requests, requests);
    assert!(held(&hs, 3).is_some());
    hs.assert_no_violations();
}

#[tokio::test]
async fn a_record_an_upsert_of_the_same_batch_wrote_is_not_archived() {
    let hs = server().await;
    let destination = destination(&hs, ApiVersion::V2026_03);
    let out = destination.write(&inserts(vec![contact(1)])).await.unwrap();
    let memo = out.receipt(0).and_then(|r| r.memo.clone()).unwrap();
    // Customer 1 leaves; customer 2 arrives with customer 1's e-mail address: the upsert
    // finds customer 1's contact, which is now customer 2's.
    let mut heir = contact_named(2, "Heir");
    heir.values[1] = Value::String(email(1));
    let both = ChangeBatchBuilder::new(&schema(), "write")
        .change(Op::Delete, contact(1))
        .with_memo(memo.clone())
        .change(Op::Insert, heir)
        .build();
    let out = destination.write(&both).await.unwrap();
    assert_eq!(out.outcomes, vec![ChangeOutcome::Applied; 2]);
    assert_eq!(out.receipt(1).and_then(|r| r.memo.clone()), Some(memo), "the same record");
    assert_eq!(hs.calls("archive"), 0, "the record now holds customer 2");
    assert_eq!(held(&hs, 1).unwrap().properties["firstname"], "Heir");
    hs.assert_no_violations();
}

fn until_midnight(offset_minutes: i64) -> Duration {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64 + offset_minutes * 60;
    Duration::from_secs((86_400 - now.rem_euclid(86_400)) as u64)
}

#[tokio::test]
async fn limits_answered_with_429_are_a_window_to_wait_or_a_spent_day() {
    let hs = server().await;
    let destination = destination(&hs, ApiVersion::V2026_03);
    let one = || inserts(vec![contact(1)]);
    hs.set_window(Some((1, Duration::from_secs(7))));
    destination.write(&one()).await.unwrap();
    let error = destination.write(&one()).await.unwrap_err();
    // HubSpot sends no Retry-After: the window's length from its header.
    assert!(
        matches!(error, DestinationError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(7)),
        "{error:?}"
    );

    hs.set_window(None);
    hs.set_secondly(Some(1));
    let error = destination.write(&one()).await.unwrap_err();
    assert!(
        matches!(error, DestinationError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(1)),
        "{error:?}"
    );
    hs.set_secondly(None);

    let offset: UtcOffset = "-05:00".parse().unwrap();
    let destination = HubSpotDestination::new(config(&hs).with_account_utc_offset(offset)).unwrap();
    hs.set_daily(Some(hs.daily_used()));
    let error = destination.write(&one()).await.unwrap_err();
    let DestinationError::QuotaExhausted { message, resets_in: Some(resets_in) } = &error else { panic!("{error:?}") };
    assert!(message.contains("policyName=DAILY") && message.contains("UTC-05:00"), "{message}");
    let expected = until_midnight(-300);
    assert!(resets_in.abs_diff(expected) < Duration::from_secs(5), "{resets_in:?} vs {expected:?}");
    assert_eq!(hs.refused(Policy::Daily), 1);
    hs.assert_no_violations();
}

#[tokio::test]
async fn check_names_what_is_wrong() {
    let hs = server().await;
    destination(&hs, ApiVersion::V2026_03).check().await.unwrap();
    destination(&hs, ApiVersion::V3).check().await.unwrap();

    let mapped = config(&hs).with_field("plan", "plan_teir").with_field("signed_up", "createdate");
    let error = HubSpotDestination::new(mapped).unwrap().check().await.unwrap_err().to_string();
    assert!(error.contains("no such properties: `plan_teir` (from field `plan`)"), "{error}");
    assert!(error.contains("read-only or calculated properties: `createdate` (from field `signed_up`)"), "{error}");

    let by_name = HubSpotDestinationConfig::new("companies", SaasAuthConfig::Bearer { token: TOKEN.into() })
        .with_base_url(hs.base_url())
        .with_id_property("name")
        .with_field("first_name", "name");
    let error = HubSpotDestination::new(by_name).unwrap().check().await.unwrap_err().to_string();
    assert!(error.contains("the id property `name` does not hold unique values"), "{error}");

    hs.add_property("contacts", PropertyDef { read_only: true, ..PropertyDef::unique("rse_locked") });
    for (key_property, expected) in [
        ("rse_nowhere", "the key property `rse_nowhere` does not exist on `contacts`"),
        ("lastname", "the key property `lastname` does not hold unique values"),
        ("rse_locked", "the key property `rse_locked` is read-only or calculated"),
    ] {
        let config = config(&hs).with_key_property(key_property);
        let error = HubSpotDestination::new(config).unwrap().check().await.unwrap_err().to_string();
        assert!(error.contains(expected), "{error}");
        assert!(error.contains("single-line text property") && error.contains("unique values"), "{error}");
    }

    let mut unknown = config(&hs).with_name("crm").with_id_property("email");
    unknown.object = "2-999".into();
    let error = HubSpotDestination::new(unknown).unwrap().check().await.unwrap_err().to_string();
    assert!(error.contains("crm: HubSpot knows no object type `2-999`"), "{error}");

    let wrong =
        HubSpotDestinationConfig::contacts("pat-na1-wrong").with_base_url(hs.base_url()).with_field("email", "email");
    let error = HubSpotDestination::new(wrong).unwrap().check().await.unwrap_err();
    assert!(matches!(error, DestinationError::Unauthorized { .. }), "{error:?}");
    assert!(!error.to_string().contains("pat-na1-wrong"));

    hs.set_missing_scopes(&["crm.schemas.contacts.read"]);
    let error = destination(&hs, ApiVersion::V2026_03).check().await.unwrap_err();
    let DestinationError::Unauthorized { message } = &error else { panic!("{error:?}") };
    assert!(message.contains("the token lacks the scopes crm.schemas.contacts.read"), "{message}");
    hs.assert_no_violations();
}

fn with_object(mut config: HubSpotDestinationConfig, object: &str) -> HubSpotDestinationConfig {
    config.object = object.to_owned();
    config
}

#[tokio::test]
async fn misconfigurations_are_named_before_anything_is_sent() {
    let hs = server().await;
    let problems = [
        (
            HubSpotDestinationConfig::new("companies", SaasAuthConfig::Bearer { token: TOKEN.into() }),
            "set `id_property`",
        ),
        (
            HubSpotDestinationConfig::contacts(TOKEN).with_field("first_name", "firstname"),
            "no field is mapped to the id property `email`",
        ),
        (config(&hs).with_max_batch_rows(101), "1 to 100 inputs"),
        (config(&hs).with_base_url("api.hubapi.com"), "`base_url` is not an http(s) URL"),
        (with_object(config(&hs), "contacts/../x"), "`object` is `contacts/../x`"),
        (config(&hs).with_key_property("email"), "`key_property` is the id property `email`"),
        (config(&hs).with_key_property("plan_tier"), "`key_property` `plan_tier` is also mapped from field `plan`"),
    ];
    for (config, expected) in problems {
        let error = HubSpotDestination::new(config).unwrap_err().to_string();
        assert!(error.contains(expected), "{error}");
    }
    // The field map against the model, when the sync is built.
    let typo = HubSpotDestination::new(config(&hs).with_field("plann", "tier")).unwrap();
    let built = SyncJob::builder("customers")
        .source(rse_core::memory::MemorySource::new(schema(), vec![]))
        .destination(typo)
        .state(rse_core::memory::MemoryStateStore::new())
        .build()
        .await;
    let Err(error) = built else { panic!("a field the model lacks was accepted") };
    assert!(error.to_string().contains("field `plann` (HubSpot property `tier`) is not in the model"), "{error}");

    // Configuration as data: secrets never shown.
    let config: HubSpotDestinationConfig = serde_json::from_value(serde_json::json!({
        "object": "contacts", "auth": {"type": "bearer", "token": "pat-na1-s3cret"},
        "fields": [{"field": "email", "property": "email"}], "base_url": hs.base_url(),
    }))
    .unwrap();
    let destination = HubSpotDestination::new(config.clone()).unwrap();
    for shown in [format!("{config:?}"), format!("{destination:?}")] {
        assert!(!shown.contains("s3cret"), "{shown}");
    }
    let back: Json = serde_json::to_value(&config).unwrap();
    assert_eq!(back["api_version"], "2026-03");
    assert_eq!(destination.capabilities().max_batch_rows, 100);
    assert!(destination.capabilities().keeps_memos);
}
