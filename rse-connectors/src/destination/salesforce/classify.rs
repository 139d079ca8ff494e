//! What Salesforce's answers mean to the runner: a whole request's failure
//! (`SalesforceClassifier`, over the kit's defaults), one record's refusal, a Bulk job's end;
//! the table is in the module docs of `destination::salesforce`.

use std::time::Duration;

use rse_core::DestinationError;
use serde_json::Value as Json;

use crate::saas::classify::looks_like_identifier;
use crate::saas::{Classifier, Failure, ItemResult, quota_exhausted};

/// How long to wait after Salesforce refused a request for too many at once.
pub(super) const CONCURRENCY_RETRY: Duration = Duration::from_secs(2);

/// Per-record codes that may pass when the record is sent again.
const RETRYABLE: [&str; 3] = ["UNABLE_TO_LOCK_ROW", "ALL_OR_NONE_OPERATION_ROLLED_BACK", "SERVER_UNAVAILABLE"];

/// Job failure codes that a retry cannot fix: the job itself was wrong.
const JOB_FATAL: [&str; 4] = ["ClientInputError", "InvalidBatch", "InvalidJob", "InvalidJobState"];

/// Salesforce's word on a failed REST answer, before the kit's defaults.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct SalesforceClassifier;

impl Classifier for SalesforceClassifier {
    fn classify(&self, failure: &Failure<'_>) -> Option<DestinationError> {
        let first = failure.json().and_then(|j| j.as_array()).and_then(|list| list.first());
        let code = first.and_then(|e| e.get("errorCode")).and_then(Json::as_str);
        match (failure.status().as_u16(), code) {
            (403, Some("REQUEST_LIMIT_EXCEEDED")) => {
                let message = first.and_then(|e| e.get("message")).and_then(Json::as_str).unwrap_or_default();
                Some(if message.contains("TotalRequests") {
                    quota_exhausted(
                        format!(
                            "{}: the org's daily API request allowance (TotalRequests) is used up; Salesforce counts a rolling 24 hours, so requests free up as the day goes on",
                            failure.describe()
                        ),
                        None,
                    )
                } else {
                    DestinationError::RateLimited { retry_after: Some(CONCURRENCY_RETRY) }
                })
            }
            (400, Some("JSON_PARSER_ERROR")) => Some(DestinationError::InvalidBatch {
                message: format!(
                    "{}: a value does not fit its field's type (check the mapping's types against the sObject's)",
                    failure.describe()
                ),
            }),
            (400, _) => Some(DestinationError::fatal(format!(
                "{}; Salesforce refused the request as malformed: check `object`, `external_id_field`, the mapped fields and `api_version`",
                failure.describe()
            ))),
            (404, _) => Some(DestinationError::fatal(format!(
                "{}; check that `object`, `external_id_field` and `api_version` name what the org has and the integration user can see",
                failure.describe()
            ))),
            _ => None,
        }
    }
}

/// A rejection for a record Salesforce refused with these codes and fields.
pub(super) fn refused<'a>(
    codes: impl IntoIterator<Item = &'a str>,
    fields: impl IntoIterator<Item = &'a str>,
) -> ItemResult {
    let mut shown: Vec<&str> = Vec::new();
    let mut retryable = false;
    for code in codes {
        if looks_like_identifier(code) && !shown.contains(&code) {
            retryable |= RETRYABLE.contains(&code);
            shown.push(code);
        }
    }
    if shown.is_empty() {
        shown.push("no error code");
    }
    let mut named: Vec<&str> = Vec::new();
    for field in fields {
        if looks_like_identifier(field) && !named.contains(&field) {
            named.push(field);
        }
    }
    let reason = if named.is_empty() {
        format!("Salesforce refused the record ({})", shown.join(", "))
    } else {
        format!("Salesforce refused the record ({}; fields: {})", shown.join(", "), named.join(", "))
    };
    if retryable { ItemResult::retryable(reason) } else { ItemResult::rejected(reason) }
}

/// The refusal an `sf__Error` cell of a Bulk result says: `CODE:message:fields --`. The
/// message may hold values and colons, so only the code before the first `:` is read, and
/// fields only when they are among `columns` (those sent).
pub(super) fn bulk_refused(cell: &str, columns: &[String]) -> ItemResult {
    let text = cell.trim().trim_end_matches("--").trim_end();
    let code = text.split(':').next().unwrap_or_default().trim();
    let fields: Vec<&str> = text
        .rsplit(':')
        .next()
        .filter(|_| text.contains(':'))
        .map(|tail| {
            tail.split(',')
                .map(str::trim)
                .filter_map(|f| columns.iter().find(|c| c.eq_ignore_ascii_case(f)).map(String::as_str))
                .collect()
        })
        .unwrap_or_default();
    refused([code], fields)
}

/// The code a Bulk job's `errorMessage` starts with (`InvalidBatch : Field name not found :
/// X` → `InvalidBatch`), or a placeholder; never the rest, which may name values.
pub(super) fn job_error_code(message: Option<&str>) -> String {
    let code = message.and_then(|m| m.split(':').next()).map(str::trim).unwrap_or_default();
    if looks_like_identifier(code) { code.to_owned() } else { "no error code".to_owned() }
}

/// The error of a Bulk job that ended `state` without processing a record.
pub(super) fn job_failed(destination: &str, job: &str, state: &str, code: &str) -> DestinationError {
    if JOB_FATAL.contains(&code) {
        DestinationError::fatal(format!(
            "{destination}: Bulk job {job} ended {state} ({code}) before processing a record: Salesforce refused the job's data; check the mapped fields against the sObject (`check()` names what is wrong)"
        ))
    } else {
        DestinationError::transient(format!(
            "{destination}: Bulk job {job} ended {state} ({code}) before processing a record; the batch is sent again"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_errors_keep_the_code_and_known_columns_only() {
        let columns = vec!["Rse_Ext_Id__c".to_owned(), "Email".to_owned(), "Score__c".to_owned()];
        let cases = [
            (
                "INVALID_EMAIL_ADDRESS:Email: invalid email address: ada@example.com:Email --",
                "Salesforce refused the record (INVALID_EMAIL_ADDRESS; fields: Email)",
            ),
            (
                "INVALID_TYPE_ON_FIELD_IN_RECORD:Score__c: value not of required type: 12345:Score__c --",
                "Salesforce refused the record (INVALID_TYPE_ON_FIELD_IN_RECORD; fields: Score__c)",
            ),
            (
                "FIELD_CUSTOM_VALIDATION_EXCEPTION:Blocked: 12345 --",
                "Salesforce refused the record (FIELD_CUSTOM_VALIDATION_EXCEPTION)",
            ),
            ("a sentence without a code", "Salesforce refused the record (no error code)"),
        ];
        for (cell, reason) in cases {
            assert_eq!(bulk_refused(cell, &columns), ItemResult::rejected(reason), "{cell}");
        }
        assert!(matches!(
            bulk_refused("UNABLE_TO_LOCK_ROW:unable to obtain exclusive access:--", &columns),
            ItemResult::Rejected { retryable: true, .. }
        ));
    }

    #[test]
    fn job_codes_stop_at_the_first_colon() {
        assert_eq!(job_error_code(Some("InvalidBatch : Field name not found : Secret_Field__c")), "InvalidBatch");
        assert_eq!(job_error_code(Some("the job failed for ada@example.com")), "no error code");
        assert_eq!(job_error_code(None), "no error code");
    }
}
