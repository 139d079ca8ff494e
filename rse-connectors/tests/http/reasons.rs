//! Rejection reasons from what a receiver answers: its error codes by default, never the
//! values it echoes back, unless the host asks for excerpts of its answers.

use std::time::Duration;

use rse_connectors::{BodyShape, HttpDestination, HttpDestinationConfig, RecordErrors};
use rse_core::memory::{MemorySource, MemoryStateStore};
use rse_core::testing::conformance_schema;
use rse_core::*;
use serde_json::json;

use super::http_server::Receiver;
use super::{answer, batch_of, row};

/// The refused value a receiver echoes in its answers.
const ECHOED: &str = "ann.secret@example.com";

fn destination(rx: &Receiver, shape: BodyShape, excerpts: bool) -> HttpDestination {
    HttpDestination::new(
        HttpDestinationConfig::new(rx.url())
            .with_shape(shape)
            .with_record_errors(RecordErrors::at("/errors"))
            .with_response_excerpts(excerpts),
    )
    .unwrap()
}

fn rejection(outcome: &WriteOutcome) -> String {
    match &outcome.outcomes[..] {
        [ChangeOutcome::Rejected { reason, .. }] => reason.clone(),
        other => panic!("expected one rejection, got {other:?}"),
    }
}

/// A 4xx whose body echoes the refused value, as JSON with well-known code fields or as
/// plain text, and a 2xx that lists a refused record with the value in its message: by
/// default the reasons carry the status and the codes and field names only; with
/// excerpts on they carry the receiver's words, value and all.
#[tokio::test]
async fn a_receiver_echoing_a_refused_value_never_gets_it_into_a_rejection_reason_by_default() {
    let rx = Receiver::start(None).await;
    let schema = conformance_schema();
    let one = batch_of(&schema, vec![(Op::Insert, row(1, ECHOED))]);
    let two = batch_of(&schema, vec![(Op::Insert, row(1, ECHOED)), (Op::Insert, row(2, "b"))]);
    let json = [("content-type", "application/json")];
    let problem = json!({
        "error": {"code": "invalid_email", "type": "validation_error", "message": format!("{ECHOED} is not valid")},
        "errors": [
            {"field": "email", "code": "format", "message": format!("'{ECHOED}' does not match"), "value": ECHOED},
            // A value in a code's place is not a code: it is dropped too.
            {"field": ECHOED, "code": format!("bad {ECHOED}")}
        ]
    })
    .to_string();
    let plain = format!("rejected: {ECHOED} is not an email");
    let listed = json!({"errors": [{"index": 0, "code": "duplicate", "field": "email",
                                    "message": format!("{ECHOED} already exists")}]})
    .to_string();

    for excerpts in [false, true] {
        let dest = destination(&rx, BodyShape::ObjectPerChange, excerpts);
        rx.lock().script.push_back(answer(422, &json, &problem));
        let json_4xx = rejection(&dest.write(&one).await.unwrap());
        rx.lock().script.push_back(answer(400, &[], &plain));
        let plain_4xx = rejection(&dest.write(&one).await.unwrap());
        rx.lock().script.push_back(answer(200, &json, &listed));
        let listed_2xx = rejection(&dest.write(&one).await.unwrap());
        rx.lock().script.push_back(answer(422, &json, &problem));
        let batch_4xx = match destination(&rx, BodyShape::ArrayPerBatch, excerpts).write(&two).await {
            Err(DestinationError::InvalidBatch { message }) => message,
            other => panic!("a 422 to a batch should be InvalidBatch, got {other:?}"),
        };
        let reasons = [&json_4xx, &plain_4xx, &listed_2xx, &batch_4xx];
        if excerpts {
            for reason in reasons {
                assert!(reason.contains(ECHOED), "with excerpts, the receiver's words are kept: {reason}");
            }
            continue;
        }
        for reason in reasons {
            assert!(!reason.contains("ann.secret"), "the echoed value leaked into a reason: {reason}");
        }
        assert_eq!(
            json_4xx,
            "HTTP 422 Unprocessable Entity (code=invalid_email, type=validation_error, code=format, field=email)"
        );
        assert_eq!(plain_4xx, "HTTP 400 Bad Request");
        assert_eq!(listed_2xx, "refused by the receiver (code=duplicate, field=email)");
        assert!(batch_4xx.contains("422") && batch_4xx.contains("invalid_email"), "{batch_4xx}");
    }
}

/// Through the runner: the reason a run reports for a record the receiver refused (in the
/// body of a 200, naming the value) holds its code, not the value.
#[tokio::test]
async fn a_run_reports_the_receivers_code_for_a_refused_record_not_the_value_it_echoed() {
    let rx = Receiver::start(None).await;
    rx.lock().refuse_name = Some(ECHOED.into());
    let schema = conformance_schema();
    let source = MemorySource::new(schema.clone(), vec![row(1, "a"), row(2, ECHOED), row(3, "c")]);
    let sync = SyncJob::builder("reasons")
        .source(source)
        .destination(destination(&rx, BodyShape::ArrayPerBatch, false))
        .state(MemoryStateStore::new())
        .options(SyncOptions::default().with_linger(Duration::from_millis(5)))
        .build()
        .await
        .unwrap();
    let report = sync.run().await.unwrap();
    assert_eq!((report.counts.applied.insert, report.counts.rejected.insert), (2, 1), "{report}");
    let reasons: Vec<&str> = report.rejections.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(reasons, ["refused by the receiver (code=not_allowed, field=name)"]);
    assert!(!report.to_string().contains("ann.secret"), "{report}");
}

/// The error shapes the reasons read: codes and field names from the usual places, free
/// text from none of them.
#[tokio::test]
async fn common_error_shapes_give_their_codes_and_field_names() {
    let rx = Receiver::start(None).await;
    let one = batch_of(&conformance_schema(), vec![(Op::Insert, row(1, ECHOED))]);
    let dest = destination(&rx, BodyShape::ObjectPerChange, false);
    let json = [("content-type", "application/json")];
    let cases = [
        // OAuth 2.0.
        (
            json!({"error": "invalid_request", "error_description": format!("{ECHOED} is taken")}),
            "error=invalid_request",
        ),
        // JSON:API.
        (
            json!({"errors": [{"status": "422", "code": "blank", "source": {"pointer": "/data/attributes/email"},
                               "detail": format!("{ECHOED} can't be blank")}]}),
            "code=blank, field=/data/attributes/email",
        ),
        // Problem details (RFC 9457).
        (
            json!({"type": "https://example.com/probs/invalid", "title": "Invalid", "detail": ECHOED}),
            "type=https://example.com/probs/invalid",
        ),
        // Stripe-like.
        (
            json!({"error": {"type": "invalid_request_error", "code": "email_invalid", "param": "email",
                             "message": ECHOED}}),
            "code=email_invalid, type=invalid_request_error, field=email",
        ),
        // A bare list, numeric codes.
        (json!([{"errorCode": 1042, "field": "items[0].price"}]), "errorCode=1042, field=items[0].price"),
    ];
    for (body, codes) in cases {
        rx.lock().script.push_back(answer(422, &json, &body.to_string()));
        assert_eq!(rejection(&dest.write(&one).await.unwrap()), format!("HTTP 422 Unprocessable Entity ({codes})"));
    }
    // JSON with nothing code-like: the status alone.
    rx.lock().script.push_back(answer(422, &json, &json!({"message": ECHOED}).to_string()));
    assert_eq!(rejection(&dest.write(&one).await.unwrap()), "HTTP 422 Unprocessable Entity");
}
