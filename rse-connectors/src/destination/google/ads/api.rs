//! The calls: `OfflineUserDataJobService` (create, addOperations, run) and
//! `GoogleAdsService.Search` (a job by its external id or resource name, the running jobs
//! of the list, the list itself), each with the `developer-token` and `login-customer-id`
//! headers, and their answers read into what the job flow needs.

use std::collections::BTreeMap;

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, Url};
use rse_core::DestinationError;
use serde_json::{Value as Json, json};

use super::classify::{GoogleAdsClassifier, has_code};
use crate::destination::google::error::GoogleError;
use crate::saas::{SaasClient, SaasRequest, SaasResponse};

/// The API version of every path.
pub const API_VERSION: &str = "v25";

/// A job's status as `offline_user_data_job.status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum JobStatus {
    Pending,
    Running,
    Success,
    Failed,
    /// `UNSPECIFIED`, `UNKNOWN` or a value newer than this connector.
    Other(String),
}

/// What a search says of one job.
#[derive(Debug, Clone)]
pub(super) struct JobState {
    pub resource_name: String,
    pub status: JobStatus,
    /// `operation_metadata.match_rate_range`, e.g. `MATCH_RANGE_20_TO_30`.
    pub match_rate: Option<String>,
}

/// How a create ended.
#[derive(Debug)]
pub(super) enum Created {
    /// A new job, by resource name.
    Job(String),
    /// `EXTERNAL_UPDATE_ID_ALREADY_EXISTS`: a job with this external id exists (an earlier
    /// attempt whose answer was lost).
    Exists,
}

/// Operations Google refused in one addOperations call, by operation index within it.
#[derive(Debug, Default)]
pub(super) struct Refusals {
    /// `(code, reason)` per refused operation; a reason names the code and the field, never
    /// a value.
    pub by_op: BTreeMap<usize, (String, String)>,
    /// Errors without an operation index (codes only).
    pub unlocated: Vec<String>,
}

/// How a run ended.
#[derive(Debug)]
pub(super) enum RunStart {
    /// The job runs; the match-rate preview when Google gave one.
    Started(Option<String>),
    /// `JOB_ALREADY_STARTED`: an earlier attempt ran it.
    AlreadyStarted,
    /// `CONCURRENT_MODIFICATION`: another job of the list is running.
    Busy,
}

/// The client of one customer's one list.
#[derive(Debug, Clone)]
pub(super) struct Api {
    pub client: SaasClient,
    /// `https://googleads.googleapis.com/v25/` (ends with `/`).
    pub base: Url,
    pub customer_id: String,
    pub user_list: String,
    pub developer_token: HeaderValue,
    pub login_customer_id: Option<HeaderValue>,
    /// `customerMatchUserListMetadata.consent` of every job.
    pub job_consent: Option<Json>,
}

fn string_field(value: &Json) -> Option<String> {
    match value {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Api {
    fn url(&self, path: &str) -> Result<Url, DestinationError> {
        self.base.join(path).map_err(|_| {
            DestinationError::fatal(format!(
                "{}: a request path could not be built; check `customer_id`",
                self.client.name()
            ))
        })
    }

    async fn call(&self, path: &str, body: &Json) -> Result<(SaasResponse, Json), DestinationError> {
        let mut request = SaasRequest::json(Method::POST, self.url(path)?, body)?
            .with_header(HeaderName::from_static("developer-token"), self.developer_token.clone());
        if let Some(login) = &self.login_customer_id {
            request = request.with_header(HeaderName::from_static("login-customer-id"), login.clone());
        }
        let response = self.client.send(&request).await?;
        let json = if response.is_success() {
            response.json::<Json>("the answer")?
        } else {
            serde_json::from_slice(response.body()).unwrap_or(Json::Null)
        };
        Ok((response, json))
    }

    fn fail(response: &SaasResponse) -> DestinationError {
        response.error(&GoogleAdsClassifier)
    }

    /// Creates a Customer Match job with `external_id`.
    pub async fn create(&self, external_id: i64, preview: bool) -> Result<Created, DestinationError> {
        let mut body = json!({
            "job": {
                "type": "CUSTOMER_MATCH_USER_LIST",
                "externalId": external_id.to_string(),
                "customerMatchUserListMetadata": {"userList": self.user_list},
            },
            "enableMatchRateRangePreview": preview,
        });
        if let Some(consent) = &self.job_consent {
            body["job"]["customerMatchUserListMetadata"]["consent"] = consent.clone();
        }
        let path = format!("customers/{}/offlineUserDataJobs:create", self.customer_id);
        let (response, json) = self.call(&path, &body).await?;
        if response.is_success() {
            return json["resourceName"].as_str().map(|r| Created::Job(r.to_owned())).ok_or_else(|| {
                DestinationError::fatal(format!("{}: the create answer names no job", self.client.name()))
            });
        }
        if has_code(&json, "offlineUserDataJobError", "EXTERNAL_UPDATE_ID_ALREADY_EXISTS") {
            return Ok(Created::Exists);
        }
        Err(Self::fail(&response))
    }

    /// Adds `operations` to `job` with partial failure on.
    ///
    /// `Ok(None)` when the job already runs (`JOB_ALREADY_STARTED`).
    pub async fn add(&self, job: &str, operations: &[Json]) -> Result<Option<Refusals>, DestinationError> {
        let body = json!({"operations": operations, "enablePartialFailure": true});
        let (response, json) = self.call(&format!("{job}:addOperations"), &body).await?;
        if !response.is_success() {
            if has_code(&json, "offlineUserDataJobError", "JOB_ALREADY_STARTED") {
                return Ok(None);
            }
            return Err(Self::fail(&response));
        }
        let mut refusals = Refusals::default();
        let partial = json.get("partialFailureError").and_then(GoogleError::parse_status).unwrap_or_default();
        for error in partial.ads_errors {
            let code = error.code.map_or_else(|| "UNKNOWN".to_owned(), |(_, c)| c);
            let index = error
                .location
                .first()
                .filter(|(name, _)| name == "operations")
                .and_then(|(_, i)| *i)
                .and_then(|i| usize::try_from(i).ok())
                .filter(|i| *i < operations.len());
            let Some(index) = index else {
                refusals.unlocated.push(code);
                continue;
            };
            let field = error
                .location
                .iter()
                .skip(1)
                .map(|(name, i)| match i {
                    Some(i) => format!("{name}[{i}]"),
                    None => name.clone(),
                })
                .collect::<Vec<_>>()
                .join(".");
            let reason = if field.is_empty() {
                format!("Google Ads refused the member ({code})")
            } else {
                format!("Google Ads refused the member: {code} at {field}")
            };
            // An operation refused for several identifiers keeps its first reason.
            refusals.by_op.entry(index).or_insert((code, reason));
        }
        Ok(Some(refusals))
    }

    /// Runs `job`.
    pub async fn run(&self, job: &str) -> Result<RunStart, DestinationError> {
        let (response, json) = self.call(&format!("{job}:run"), &json!({})).await?;
        if response.is_success() {
            return Ok(RunStart::Started(json["metadata"]["matchRateRange"].as_str().map(str::to_owned)));
        }
        if has_code(&json, "offlineUserDataJobError", "JOB_ALREADY_STARTED") {
            return Ok(RunStart::AlreadyStarted);
        }
        if has_code(&json, "databaseError", "CONCURRENT_MODIFICATION") {
            return Ok(RunStart::Busy);
        }
        Err(Self::fail(&response))
    }

    async fn search(&self, query: &str) -> Result<Vec<Json>, DestinationError> {
        let path = format!("customers/{}/googleAds:search", self.customer_id);
        let (response, json) = self.call(&path, &json!({ "query": query })).await?;
        if !response.is_success() {
            return Err(Self::fail(&response));
        }
        Ok(json["results"].as_array().cloned().unwrap_or_default())
    }

    async fn jobs_where(&self, condition: &str) -> Result<Vec<JobState>, DestinationError> {
        let query = format!(
            "SELECT offline_user_data_job.resource_name, offline_user_data_job.status, \
             offline_user_data_job.operation_metadata.match_rate_range FROM offline_user_data_job WHERE {condition}"
        );
        let rows = self.search(&query).await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let job = &row["offlineUserDataJob"];
                let status = match job["status"].as_str().unwrap_or("") {
                    "PENDING" => JobStatus::Pending,
                    "RUNNING" => JobStatus::Running,
                    "SUCCESS" => JobStatus::Success,
                    "FAILED" => JobStatus::Failed,
                    other => {
                        JobStatus::Other(other.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect())
                    }
                };
                Some(JobState {
                    resource_name: string_field(&job["resourceName"])?,
                    status,
                    match_rate: job["operationMetadata"]["matchRateRange"].as_str().map(str::to_owned),
                })
            })
            .collect())
    }

    /// The job holding `external_id`, if any.
    pub async fn find(&self, external_id: i64) -> Result<Option<JobState>, DestinationError> {
        Ok(self.jobs_where(&format!("offline_user_data_job.external_id = {external_id}")).await?.into_iter().next())
    }

    /// `job`'s state now.
    pub async fn state(&self, job: &str) -> Result<Option<JobState>, DestinationError> {
        let quoted = job.replace(['\'', '\\'], "");
        Ok(self.jobs_where(&format!("offline_user_data_job.resource_name = '{quoted}'")).await?.into_iter().next())
    }

    /// Whether a job of the list runs now.
    pub async fn list_busy(&self) -> Result<bool, DestinationError> {
        let list = self.user_list.replace(['\'', '\\'], "");
        let running = self
            .jobs_where(&format!(
                "offline_user_data_job.status = 'RUNNING' AND \
                 offline_user_data_job.customer_match_user_list_metadata.user_list = '{list}'"
            ))
            .await?;
        Ok(!running.is_empty())
    }

    /// The list's name, when the list exists and is readable.
    pub async fn user_list_name(&self) -> Result<Option<String>, DestinationError> {
        let list = self.user_list.replace(['\'', '\\'], "");
        let rows = self
            .search(&format!(
                "SELECT user_list.id, user_list.name FROM user_list WHERE user_list.resource_name = '{list}'"
            ))
            .await?;
        Ok(rows.first().map(|row| row["userList"]["name"].as_str().unwrap_or("").to_owned()))
    }
}
