//! Where requests go (the org's instance URL, the API version) and how they are sent: every
//! answer's limit header noted, every failure classified the Salesforce way.

use reqwest::Url;
use rse_core::DestinationError;

use super::classify::SalesforceClassifier;
use super::limits::Usage;
use crate::saas::{SaasClient, SaasRequest, SaasResponse};

/// The client and the settings every request needs.
#[derive(Debug, Clone)]
pub(super) struct Api {
    pub(super) client: SaasClient,
    /// `vNN.N`.
    pub(super) version: String,
    /// The configured instance URL, for credentials whose token endpoint names none.
    pub(super) fallback_instance: Option<String>,
}

/// What one write works against: the org's host as the current token says, and the
/// integration user.
#[derive(Debug, Clone)]
pub(super) struct Session {
    base: Url,
    /// The user the token acts as (the last segment of the token answer's `id` URL).
    pub(super) user_id: Option<String>,
}

impl Api {
    /// The current session: the token is fetched first when there is none.
    pub(super) async fn session(&self) -> Result<Session, DestinationError> {
        let token = self.client.auth().current_token().await?;
        let instance = token.as_ref().and_then(|t| t.instance_url()).map(str::to_owned);
        let Some(instance) = instance.or_else(|| self.fallback_instance.clone()) else {
            return Err(DestinationError::fatal(format!(
                "{}: the token endpoint named no instance URL; set `instance_url` to the org's API host (https://<my-domain>.my.salesforce.com)",
                self.client.name()
            )));
        };
        let mut base = Url::parse(&instance)
            .map_err(|_| DestinationError::fatal(format!("{}: the instance URL is not a URL", self.client.name())))?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let user_id = token
            .as_ref()
            .and_then(|t| t.extra("id"))
            .and_then(|id| id.as_str())
            .and_then(|id| id.trim_end_matches('/').rsplit('/').next())
            .filter(|id| record_id(id))
            .map(str::to_owned);
        Ok(Session { base, user_id })
    }

    /// `<instance>/services/data/<version>/<path>`.
    pub(super) fn data_url(&self, session: &Session, path: &str) -> Result<Url, DestinationError> {
        self.instance_url(session, &format!("services/data/{}/{path}", self.version))
    }

    /// A path the API handed back (a job's `contentUrl`, a listing's `nextRecordsUrl`),
    /// relative to the instance URL.
    pub(super) fn instance_url(&self, session: &Session, path: &str) -> Result<Url, DestinationError> {
        session.base.join(path.trim_start_matches('/')).map_err(|_| {
            DestinationError::fatal(format!(
                "{}: a request path could not be joined to the instance URL; this is a bug in the connector",
                self.client.name()
            ))
        })
    }

    /// Sends `request`; the answer, whatever its status, after noting its limit header.
    pub(super) async fn send(
        &self,
        request: &SaasRequest,
        usage: &mut Usage,
    ) -> Result<SaasResponse, DestinationError> {
        let response = self.client.send(request).await?;
        usage.observe(&response);
        Ok(response)
    }

    /// Sends `request`; a non-2xx answer as its error.
    pub(super) async fn call(
        &self,
        request: &SaasRequest,
        usage: &mut Usage,
    ) -> Result<SaasResponse, DestinationError> {
        self.send(request, usage).await?.success_or(&SalesforceClassifier)
    }

    /// The destination's name.
    pub(super) fn name(&self) -> &str {
        self.client.name()
    }
}

/// Whether `id` has the shape of a Salesforce record id: 15 or 18 letters and digits.
pub(super) fn record_id(id: &str) -> bool {
    matches!(id.len(), 15 | 18) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}
