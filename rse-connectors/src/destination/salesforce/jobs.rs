//! Bulk API 2.0 ingest jobs as objects: their info, the requests that move them along, a
//! guard that aborts a job its write abandoned, and the clean-up of jobs a killed process
//! left open.

use reqwest::{Method, Url};
use rse_core::DestinationError;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::OnceCell;
use tracing::{debug, info, warn};

use super::api::{Api, Session};
use super::limits::Usage;
use crate::saas::{SaasClient, SaasRequest};

/// The most pages of the job list read when looking for stale jobs.
const MAX_LIST_PAGES: usize = 50;

/// A job as "Get Job Info" (and "Get All Jobs") describe it; what this connector reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct JobInfo {
    #[serde(default)]
    pub(super) id: String,
    #[serde(default)]
    pub(super) state: String,
    #[serde(default)]
    pub(super) object: Option<String>,
    #[serde(default)]
    pub(super) operation: Option<String>,
    #[serde(default)]
    pub(super) external_id_field_name: Option<String>,
    #[serde(default)]
    pub(super) created_by_id: Option<String>,
    #[serde(default)]
    pub(super) content_url: Option<String>,
    #[serde(default)]
    pub(super) number_records_processed: u64,
    #[serde(default)]
    pub(super) number_records_failed: u64,
    #[serde(default)]
    pub(super) error_message: Option<String>,
}

impl JobInfo {
    /// Whether the job has ended.
    pub(super) fn terminal(&self) -> bool {
        matches!(self.state.as_str(), "JobComplete" | "Failed" | "Aborted")
    }
}

/// "Get All Jobs": a page of jobs.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobList {
    #[serde(default)]
    records: Vec<JobInfo>,
    #[serde(default)]
    done: Option<bool>,
    #[serde(default)]
    next_records_url: Option<String>,
}

/// What the Bulk path of one destination shares across its writes.
#[derive(Debug, Default)]
pub(super) struct BulkState {
    /// Set once stale jobs were looked for (by the first Bulk write of the process).
    cleaned: OnceCell<()>,
}

/// A job this write created and has not seen end: dropped armed (the write failed, or the
/// runner abandoned it), it aborts the job in the background, so that an abandoned job does
/// not run on beside the batch sent again.
pub(super) struct OpenJob {
    client: SaasClient,
    url: Url,
    pub(super) id: String,
    armed: bool,
}

impl OpenJob {
    /// The job answered by "Create a Job".
    pub(super) fn new(api: &Api, session: &Session, id: String) -> Result<Self, DestinationError> {
        let url = api.data_url(session, &format!("jobs/ingest/{id}"))?;
        Ok(Self { client: api.client.clone(), url, id, armed: true })
    }

    /// The job's own URL.
    pub(super) fn url(&self) -> &Url {
        &self.url
    }

    /// The job has ended: nothing to abort.
    pub(super) fn ended(&mut self) {
        self.armed = false;
    }

    /// Aborts the job now (best effort) and disarms the guard.
    pub(super) async fn abort(&mut self) {
        self.armed = false;
        abort(&self.client, &self.url, &self.id).await;
    }
}

impl Drop for OpenJob {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (client, url, id) = (self.client.clone(), self.url.clone(), std::mem::take(&mut self.id));
            runtime.spawn(async move { abort(&client, &url, &id).await });
        }
    }
}

/// `PATCH <job> {"state": "Aborted"}`, its failure logged and otherwise ignored: a job that
/// cannot be aborted has ended already.
async fn abort(client: &SaasClient, url: &Url, id: &str) {
    let request = match SaasRequest::json(Method::PATCH, url.clone(), &json!({ "state": "Aborted" })) {
        Ok(request) => request,
        Err(_) => return,
    };
    match client.send(&request).await {
        Ok(answer) if answer.is_success() => debug!(destination = %client.name(), job = %id, "Aborted a Bulk job."),
        Ok(answer) => {
            debug!(destination = %client.name(), job = %id, status = answer.status().as_u16(), "A Bulk job could not be aborted.")
        }
        Err(error) => debug!(destination = %client.name(), job = %id, %error, "A Bulk job could not be aborted."),
    }
}

/// `GET <job>`.
pub(super) async fn job_info(api: &Api, url: &Url, usage: &mut Usage) -> Result<JobInfo, DestinationError> {
    api.call(&SaasRequest::get(url.clone()), usage).await?.json("the Bulk job info")
}

impl BulkState {
    /// Aborts, once per process, the `Open` upsert jobs of this user, object and external id
    /// field: jobs a process created and was killed before closing (Salesforce never
    /// processes an `Open` job; its rows are sent again, as the runner still holds their
    /// changes as pending). A failure that may pass is returned (the write is retried);
    /// any other is logged and the look is not repeated.
    pub(super) async fn clean_up_once(
        &self,
        api: &Api,
        session: &Session,
        object: &str,
        external_id_field: &str,
        usage: &mut Usage,
    ) -> Result<(), DestinationError> {
        self.cleaned
            .get_or_try_init(|| async {
                match abort_stale(api, session, object, external_id_field, usage).await {
                    Err(error) if error.is_retryable() => Err(error),
                    Err(error) => {
                        warn!(destination = %api.name(), %error, "Could not look for Bulk jobs left open by an earlier process.");
                        Ok(())
                    }
                    Ok(()) => Ok(()),
                }
            })
            .await
            .map(|_| ())
    }
}

async fn abort_stale(
    api: &Api,
    session: &Session,
    object: &str,
    external_id_field: &str,
    usage: &mut Usage,
) -> Result<(), DestinationError> {
    let Some(user) = session.user_id.as_deref() else {
        debug!(destination = %api.name(), "The token names no user; not looking for Bulk jobs left open.");
        return Ok(());
    };
    let same_user = |id: &str| id.len() >= 15 && user.len() >= 15 && id[..15] == user[..15];
    let mut url = api.data_url(session, "jobs/ingest")?;
    let mut aborted = 0usize;
    for _ in 0..MAX_LIST_PAGES {
        let page: JobList = api.call(&SaasRequest::get(url.clone()), usage).await?.json("the Bulk job list")?;
        for job in page.records {
            let ours = job.state == "Open"
                && job.operation.as_deref() == Some("upsert")
                && job.object.as_deref().is_some_and(|o| o.eq_ignore_ascii_case(object))
                && job.external_id_field_name.as_deref().is_some_and(|f| f.eq_ignore_ascii_case(external_id_field))
                && job.created_by_id.as_deref().is_some_and(same_user);
            if ours && !job.id.is_empty() && job.id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                let mut stale = OpenJob::new(api, session, job.id)?;
                stale.abort().await;
                aborted += 1;
            }
        }
        match page.next_records_url {
            Some(next) if page.done != Some(true) && !next.is_empty() => url = api.instance_url(session, &next)?,
            _ => break,
        }
    }
    if aborted > 0 {
        info!(destination = %api.name(), jobs = aborted, "Aborted Bulk jobs an earlier process left open; their rows are sent again.");
    }
    Ok(())
}
