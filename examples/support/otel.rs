//! The OpenTelemetry recipe: rse's `tracing` spans exported by OTLP/HTTP (protobuf) to a
//! collector, through `tracing-opentelemetry`.
//!
//! rse depends on no OpenTelemetry crate: it emits `tracing` spans (a run, its read, diff,
//! batch writes and state commits) and the host decides where they go. The example
//! `examples/otel.rs` and the test `tests/otel.rs` both include this file, so what the test
//! receives is what the example sends.

use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing::{Subscriber, info, warn};
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{Filtered, Targets};
use tracing_subscriber::registry::LookupSpan;

/// The collector's base URL when `OTEL_EXPORTER_OTLP_ENDPOINT` names none (the OTLP/HTTP port
/// of a collector on this machine).
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4318";

/// How long one export may take, the answer included; the SDK retries a failed export a few
/// times within it. The run never waits for it: spans are exported from a thread of the SDK's.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// A response body larger than this (a collector answers with a few bytes) is refused.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// The traces URL from `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL, as the OTLP specification
/// reads it), or from [`DEFAULT_ENDPOINT`].
pub fn traces_url_from_env() -> String {
    let base = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok().filter(|s| !s.trim().is_empty());
    traces_url(base.as_deref().unwrap_or(DEFAULT_ENDPOINT))
}

/// The traces URL of a collector whose base URL is `base`: `base` followed by `/v1/traces`.
pub fn traces_url(base: &str) -> String {
    format!("{}/v1/traces", base.trim().trim_end_matches('/'))
}

/// Spans exported in batches by OTLP/HTTP protobuf to a collector.
///
/// A collector that is down or slow costs dropped spans, never a failed or slower run: the
/// SDK queues finished spans (up to 2,048, dropping beyond) and exports them from a thread of
/// its own.
pub struct OtlpTraces {
    provider: SdkTracerProvider,
    url: String,
    /// Whether the last export failed (set by the exporter's client).
    failing: Arc<AtomicBool>,
}

impl OtlpTraces {
    /// Exports to `traces_url` as `service` (unless `OTEL_SERVICE_NAME` says otherwise).
    ///
    /// Call it inside the tokio runtime that will run the syncs: the exports' HTTP requests
    /// run on it.
    pub fn new(traces_url: &str, service: &'static str) -> Result<Self, Box<dyn Error>> {
        let client = ReqwestClient::on_current_runtime(EXPORT_TIMEOUT)?;
        let failing = client.failing.clone();
        let exporter = SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(traces_url)
            .with_timeout(EXPORT_TIMEOUT)
            .with_http_client(client)
            .build()?;
        // The SDK reads `OTEL_SERVICE_NAME` (and `OTEL_RESOURCE_ATTRIBUTES`); a name given
        // here would override it.
        let mut resource = Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name(service);
        }
        let resource = resource.build();
        let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
        Ok(Self { provider, url: traces_url.to_owned(), failing })
    }

    /// The `tracing` layer that turns spans into OpenTelemetry spans: rse's spans and events
    /// at DEBUG and above, and the drivers' value-bearing targets capped at INFO whatever else
    /// the host exports (tokio-postgres puts a statement's parameters in its DEBUG events,
    /// which would become span events carrying row values).
    pub fn layer<S>(&self) -> Filtered<OpenTelemetryLayer<S, SdkTracer>, Targets, S>
    where
        S: Subscriber + for<'span> LookupSpan<'span>,
    {
        let filter: Targets = format!("debug,{}", rse::connectors::log_filter::DRIVER_DIRECTIVES)
            .parse()
            .unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO));
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("rse")).with_filter(filter)
    }

    /// Exports the spans still queued and stops the exporter. Call it before the process
    /// exits, or the last run's spans are lost.
    ///
    /// The SDK's shutdown blocks until the last export is answered, and that export's request
    /// runs on this runtime: so it waits on a blocking thread, leaving the runtime free.
    ///
    /// # Errors
    /// When the last export failed (no collector, a refusal: the exporter's client has logged
    /// a warning when exports started failing), or the exporter did not stop in time. The runs
    /// were not affected: a host logs it and exits as it would have.
    pub async fn shutdown(self) -> Result<(), Box<dyn Error + Send + Sync>> {
        let provider = self.provider;
        tokio::task::spawn_blocking(move || provider.shutdown()).await??;
        if self.failing.load(Ordering::Relaxed) {
            return Err(format!("the last export of spans to {} failed; they were dropped", self.url).into());
        }
        Ok(())
    }
}

/// The exporter's HTTP client: the reqwest 0.12 the workspace already builds (the OTLP
/// crate's own `reqwest-client` feature would bring a second, newer reqwest), driven by the
/// host's tokio runtime, since the SDK exports from a plain thread outside it.
#[derive(Debug)]
struct ReqwestClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
    /// Whether the last export failed: a collector that is down is worth one warning, not
    /// one per batch of spans.
    failing: Arc<AtomicBool>,
}

impl ReqwestClient {
    fn on_current_runtime(timeout: Duration) -> Result<Self, Box<dyn Error>> {
        let runtime = tokio::runtime::Handle::try_current().map_err(
            |_| "build the tracer provider inside the tokio runtime that runs the syncs: its HTTP requests run there",
        )?;
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(Self { client, runtime, failing: Arc::default() })
    }
}

#[async_trait]
impl HttpClient for ReqwestClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (client, failing) = (self.client.clone(), self.failing.clone());
        // On the runtime, so that the warning reaches the host's subscriber like its other logs.
        let exchange = async move {
            let answer = send(&client, request).await;
            match &answer {
                Err(error) if !failing.swap(true, Ordering::Relaxed) => {
                    warn!(%error, "Exporting spans failed; they are dropped until the collector answers.");
                }
                Ok(response) if !response.status().is_success() && !failing.swap(true, Ordering::Relaxed) => {
                    let status = response.status().as_u16();
                    warn!(status, "The collector refused spans; they are dropped until it takes them.");
                }
                Ok(response) if response.status().is_success() && failing.swap(false, Ordering::Relaxed) => {
                    info!("Exporting spans works again.");
                }
                _ => {}
            }
            answer
        };
        self.runtime.spawn(exchange).await?
    }
}

async fn send(client: &reqwest::Client, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
    let mut response = client.execute(reqwest::Request::try_from(request)?).await?;
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err("the collector's answer is larger than 1 MiB".into());
        }
        body.extend_from_slice(&chunk);
    }
    let mut answer = Response::builder().status(response.status()).body(Bytes::from(body))?;
    *answer.headers_mut() = std::mem::take(response.headers_mut());
    Ok(answer)
}
