//! `NatsDestination`: one JetStream message per change, deduplicated by `Nats-Msg-Id`.
//!
//! Each change is published to its subject template (e.g. `crm.contacts.{id}`) with headers:
//! - `Nats-Msg-Id`: the change's idempotency key, so the stream drops a re-sent change
//!   within its duplicate window (two minutes by default; set the stream's
//!   `duplicate_window` longer than the runner's longest retry);
//! - `Rse-Operation`: `insert`, `update`, `delete` or `append`;
//! - `Rse-Key`: the key columns as a JSON object.
//!
//! The payload is the record as a JSON object ([`record_to_json`]); a delete has an empty
//! payload and `Rse-Operation: delete`. Every message of a batch is published before any
//! acknowledgement is awaited, and a change counts as applied only once the
//! stream acknowledged it. Key values are percent-encoded into subject tokens (`.`, `*`,
//! `>`, `%`, whitespace and control characters), so every key gets a valid subject.
//!
//! # Messages too large to publish
//! A message (payload and headers) larger than the server's `max_payload` (from the
//! connection's server info, 1 MiB by default) or than the stream's `max_msg_size` is
//! refused for that change alone: `Rejected`, not retryable, with its size and the limit
//! in the reason. The rest of the batch is delivered, so one oversized record neither
//! blocks its batch nor makes the runner re-publish the others run after run.
//!
//! # Errors name the template, never a subject
//! A rendered subject holds key values, so errors and rejection reasons name the subject
//! template (the destination's name, `nats:<template>`) instead.
//!
//! # TLS
//! async-nats connects with TLS (rustls) when the URL is `tls://…`, when the server asks
//! for it, or under [`NatsDestinationOptions::with_require_tls`]; the server's certificate
//! chain and host name are always checked, against the operating system's trusted roots
//! plus the CA of [`NatsDestinationOptions::with_root_certificates`]. A client certificate
//! goes with [`NatsDestinationOptions::with_client_certificate`].

use std::fmt;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{Context, PublishError, PublishErrorKind};
use async_trait::async_trait;
use bytes::Bytes;
use rse_core::{
    ChangeBatch, ChangeOutcome, Destination, DestinationCapabilities, DestinationError, Op, WriteOutcome, WriteOutcomes,
};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::template::{fill_template, parse_template};
use crate::encode::{key_to_json, record_to_json};

/// Options of a [`NatsDestination`], built with `with_*` methods from [`new`](Self::new)
/// or read from a configuration file.
///
/// In a file only `subject_template` is required; every other field takes the default
/// `new` gives it, an unknown field is refused, and `ack_timeout` reads as `"10s"`.
///
/// ```
/// use rse_connectors::NatsDestinationOptions;
/// let options: NatsDestinationOptions = serde_json::from_str(
///     r#"{ "subject_template": "crm.contacts.{id}", "ack_timeout": "30s", "require_tls": true }"#,
/// )?;
/// assert_eq!(options, NatsDestinationOptions::new("crm.contacts.{id}")
///     .with_ack_timeout(std::time::Duration::from_secs(30))
///     .with_require_tls(true));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsDestinationOptions {
    subject_template: String,
    #[serde(default = "default_max_batch_rows")]
    max_batch_rows: usize,
    #[serde(default = "default_max_concurrency")]
    max_concurrency: usize,
    #[serde(default = "default_ack_timeout", with = "rse_core::config::duration")]
    ack_timeout: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    root_certificates: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_certificate: Option<ClientCertificate>,
    #[serde(default)]
    require_tls: bool,
}

/// The PEM files of a client certificate chain and its unencrypted key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientCertificate {
    chain: PathBuf,
    key: PathBuf,
}

fn default_max_batch_rows() -> usize {
    1_000
}

fn default_max_concurrency() -> usize {
    4
}

fn default_ack_timeout() -> Duration {
    Duration::from_secs(10)
}

impl NatsDestinationOptions {
    /// Publishes to `subject_template`: `{column}` is replaced by that key column's value
    /// (percent-encoded) and `{sync_id}` by the sync's id, e.g. `"crm.contacts.{id}"`. A
    /// JetStream stream must capture these subjects.
    pub fn new(subject_template: impl Into<String>) -> Self {
        Self {
            subject_template: subject_template.into(),
            max_batch_rows: default_max_batch_rows(),
            max_concurrency: default_max_concurrency(),
            ack_timeout: default_ack_timeout(),
            root_certificates: None,
            client_certificate: None,
            require_tls: false,
        }
    }

    /// Trusts the CA certificates in the PEM file at `path` besides the system's roots:
    /// the CA that signed the server's certificate.
    pub fn with_root_certificates(mut self, path: impl Into<PathBuf>) -> Self {
        self.root_certificates = Some(path.into());
        self
    }

    /// Presents the client certificate in the PEM files `chain` and `key` (unencrypted).
    pub fn with_client_certificate(mut self, chain: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_certificate = Some(ClientCertificate { chain: chain.into(), key: key.into() });
        self
    }

    /// Refuses to connect without TLS, whatever the URL says (default: TLS for `tls://`
    /// URLs and servers that ask for it).
    pub fn with_require_tls(mut self, require: bool) -> Self {
        self.require_tls = require;
        self
    }

    /// The most changes per write (default 1,000).
    pub fn with_max_batch_rows(mut self, rows: usize) -> Self {
        self.max_batch_rows = rows.max(1);
        self
    }

    /// The most writes at once (default 4).
    pub fn with_max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n.max(1);
        self
    }

    /// How long to wait for the stream's acknowledgements (default 10 s).
    pub fn with_ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = timeout;
        self
    }
}

/// Publishes one JetStream message per change; see the module docs.
pub struct NatsDestination {
    name: String,
    options: NatsDestinationOptions,
    client: async_nats::Client,
    jetstream: Context,
}

impl fmt::Debug for NatsDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsDestination")
            .field("name", &self.name)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Percent-encodes what a subject token may not hold.
fn subject_token(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '.' | '*' | '>' | '%') || c.is_whitespace() || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
    if out.is_empty() { "%00".to_owned() } else { out }
}

impl NatsDestination {
    /// Connects to `url` (`nats://host:4222`, or `tls://host:4222` for TLS: see the module
    /// docs).
    ///
    /// # Errors
    /// `Transient` when the server cannot be reached, `Unauthorized` when it refuses us,
    /// `Fatal` when TLS fails (a certificate not trusted, a server without TLS while TLS is
    /// required).
    pub async fn connect(url: &str, options: NatsDestinationOptions) -> Result<Self, DestinationError> {
        let name = format!("nats:{}", options.subject_template);
        let mut connect = async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(5));
        if options.require_tls {
            connect = connect.require_tls(true);
        }
        if let Some(path) = &options.root_certificates {
            connect = connect.add_root_certificates(path.clone());
        }
        if let Some(ClientCertificate { chain, key }) = &options.client_certificate {
            connect = connect.add_client_certificate(chain.clone(), key.clone());
        }
        let client = connect.connect(url).await.map_err(|e| {
            let message = format!("{name}: connecting failed: {e}");
            // async-nats reports a refused certificate as I/O; retrying will not make it trusted.
            if let Some(tls) = crate::tls::rustls_error(&e) {
                return DestinationError::Fatal {
                    message: format!(
                        "{name}: the TLS handshake failed ({tls}); if the server's certificate is not trusted, give \
                         the CA that signed it with `NatsDestinationOptions::with_root_certificates`"
                    ),
                    source: Some(Box::new(e)),
                };
            }
            match e.kind() {
                async_nats::ConnectErrorKind::Authentication | async_nats::ConnectErrorKind::AuthorizationViolation => {
                    DestinationError::Unauthorized { message }
                }
                async_nats::ConnectErrorKind::Tls => DestinationError::fatal(format!(
                    "{message}; if the server's certificate is not trusted, give the CA that signed it with \
                     `NatsDestinationOptions::with_root_certificates`"
                )),
                async_nats::ConnectErrorKind::ServerParse => DestinationError::fatal(message),
                _ => DestinationError::transient(message),
            }
        })?;
        Ok(Self::from_client(client, options))
    }

    /// Publishes through `client`, a connection the host already holds, waiting
    /// [`ack_timeout`](NatsDestinationOptions::with_ack_timeout) for each acknowledgement.
    ///
    /// The options' TLS settings are not used: the client is connected already, with its own.
    pub fn from_client(client: async_nats::Client, options: NatsDestinationOptions) -> Self {
        let mut jetstream = async_nats::jetstream::new(client.clone());
        jetstream.set_timeout(options.ack_timeout);
        Self::from_context(jetstream, client, options)
    }

    /// Publishes to an existing JetStream context (a JetStream domain or API prefix the host
    /// chose) of `client`, as the context is configured: its own timeout, not the options'
    /// `ack_timeout`. The options' TLS settings are not used either.
    pub fn from_context(jetstream: Context, client: async_nats::Client, options: NatsDestinationOptions) -> Self {
        Self { name: format!("nats:{}", options.subject_template), options, client, jetstream }
    }

    /// The batch's error for a failed publish. It names the subject template, not the
    /// subject: the subject holds key values.
    fn publish_error(&self, kind: PublishErrorKind) -> DestinationError {
        match kind {
            PublishErrorKind::StreamNotFound => DestinationError::fatal(format!(
                "{}: no JetStream stream captures the subjects of template `{}`; create a stream whose subjects \
                 match the template",
                self.name, self.options.subject_template
            )),
            other => DestinationError::transient(format!("{}: publish failed: {other}", self.name)),
        }
    }
}

/// The headers of a message, with the size they take on the wire.
struct Headers {
    map: HeaderMap,
    wire_len: usize,
}

impl Headers {
    fn new(pairs: [(&'static str, &str); 3]) -> Self {
        let mut map = HeaderMap::new();
        // As the client writes them: `NATS/1.0\r\n`, a `name: value\r\n` line each, `\r\n`.
        let mut wire_len = "NATS/1.0\r\n\r\n".len();
        for (name, value) in pairs {
            wire_len += name.len() + ": ".len() + value.len() + "\r\n".len();
            map.insert(name, value);
        }
        Headers { map, wire_len }
    }
}

/// The rejection of a message larger than the server accepts; sizes only, never values.
fn over_max_payload(size: usize, max_payload: usize) -> ChangeOutcome {
    ChangeOutcome::rejected(format!(
        "the message is {size} bytes (payload and headers), over the NATS server's max_payload of {max_payload} \
         bytes; make the record smaller (select fewer or shorter fields) or raise the server's max_payload"
    ))
}

/// The rejection for a refusal the stream gives one message because of its size, if that
/// is what `error` is.
fn refused_for_size(error: &PublishError, size: usize) -> Option<ChangeOutcome> {
    let code = std::error::Error::source(error)?.downcast_ref::<async_nats::jetstream::Error>()?.error_code();
    let what = if code == ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM {
        "the stream's maximum message size (max_msg_size)"
    } else if code == ErrorCode::STREAM_HEADER_EXCEEDS_MAXIMUM {
        "the stream's maximum header size (the key is too long for the `Rse-Key` header)"
    } else {
        return None;
    };
    Some(ChangeOutcome::rejected(format!(
        "the message is {size} bytes (payload and headers), over {what}; make the record smaller or raise the limit"
    )))
}

#[async_trait]
impl Destination for NatsDestination {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> DestinationCapabilities {
        DestinationCapabilities::new(Op::ALL)
            .with_max_batch_rows(self.options.max_batch_rows.max(1))
            .with_max_concurrency(self.options.max_concurrency.max(1))
            .with_idempotency_keys(true)
    }

    async fn check(&self) -> Result<(), DestinationError> {
        // The account-info request answers only when JetStream is enabled for us.
        let reply = tokio::time::timeout(self.options.ack_timeout, self.client.request("$JS.API.INFO", Bytes::new()))
            .await
            .map_err(|_| DestinationError::transient(format!("{}: JetStream did not answer in time", self.name)))?
            .map_err(|e| DestinationError::transient(format!("{}: JetStream is not answering: {e}", self.name)))?;
        let body: Json = serde_json::from_slice(&reply.payload).unwrap_or(Json::Null);
        if let Some(error) = body.get("error") {
            let code = error.get("code").and_then(Json::as_u64).unwrap_or(0);
            let text = error.get("description").and_then(Json::as_str).unwrap_or("unknown error");
            let message = format!("{}: JetStream refused the account-info request: {text}", self.name);
            return Err(if code == 401 || code == 403 {
                DestinationError::Unauthorized { message }
            } else {
                DestinationError::fatal(message)
            });
        }
        Ok(())
    }

    async fn write(&self, batch: &ChangeBatch) -> Result<WriteOutcome, DestinationError> {
        if batch.changes.is_empty() {
            return Ok(WriteOutcome::default());
        }
        let template = parse_template(&self.options.subject_template, &batch.schema)
            .map_err(|m| DestinationError::fatal(format!("{}: {m}", self.name)))?;
        // Zero when the client has not yet heard from the server: the client checks again
        // when publishing, and that refusal is mapped to the change as well.
        let max_payload = self.client.server_info().max_payload;
        let sync_id = subject_token(&batch.sync_id);
        let mut outcomes = WriteOutcomes::new(batch.changes.len());
        let mut pending = Vec::with_capacity(batch.changes.len());
        for (i, change) in batch.changes.iter().enumerate() {
            let Ok(key_values) = change.key.decode() else {
                outcomes.rejected(i, "key could not be decoded");
                continue;
            };
            let subject = fill_template(&template, &sync_id, &key_values, subject_token);
            let message_id = change.idempotency_key.to_string();
            let key = Json::Object(key_to_json(&batch.schema, &key_values)).to_string();
            let headers =
                Headers::new([("Nats-Msg-Id", &message_id), ("Rse-Operation", change.op.as_str()), ("Rse-Key", &key)]);
            let payload = match (&change.record, change.op) {
                (_, Op::Delete) => Bytes::new(),
                (Some(record), _) => match serde_json::to_vec(&record_to_json(&batch.schema, record)) {
                    Ok(body) => Bytes::from(body),
                    Err(_) => {
                        outcomes.rejected(i, "record could not be encoded as JSON");
                        continue;
                    }
                },
                (None, op) => {
                    outcomes.rejected(i, format!("{op} without a record"));
                    continue;
                }
            };
            let size = headers.wire_len + payload.len();
            // The server would close the connection on a message over its limit; the client
            // refuses it before sending. Either way it is this change's refusal, not the batch's.
            if max_payload > 0 && size > max_payload {
                outcomes.set(i, over_max_payload(size, max_payload));
                continue;
            }
            match self.jetstream.publish_with_headers(subject, headers.map, payload).await {
                Ok(ack) => pending.push((i, size, ack)),
                Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                    outcomes.set(i, over_max_payload(size, self.client.max_payload()));
                }
                Err(e) => return Err(self.publish_error(e.kind())),
            }
        }
        // Every message is on its way; now wait for the stream to acknowledge each.
        let acks =
            futures::future::join_all(pending.into_iter().map(|(i, size, ack)| async move { (i, size, ack.await) }))
                .await;
        for (i, size, ack) in acks {
            match ack {
                Ok(_) => outcomes.applied(i),
                Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                    outcomes.set(i, over_max_payload(size, self.client.max_payload()));
                }
                Err(e) => match refused_for_size(&e, size) {
                    Some(rejected) => outcomes.set(i, rejected),
                    // Re-publishing the whole batch is safe: acknowledged messages are
                    // dropped as duplicates by their Nats-Msg-Id.
                    None => return Err(self.publish_error(e.kind())),
                },
            }
        }
        // Each change was refused above or answered by the stream, one by one.
        outcomes.finish(&self.name)
    }
}
