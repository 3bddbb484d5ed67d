//! OTLP export of the layer's spans (`--otlp-endpoint`, or the `OTEL_*` variables).
//!
//! The SDK's own pieces do the work: its batch span processor (a thread of its own, a
//! bounded queue, `OTEL_BSP_*`), its sampler (`OTEL_TRACES_SAMPLER`, by default
//! `parentbased_always_on`), its resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`;
//! the service is `warden` when neither names it) and opentelemetry-otlp's HTTP/protobuf
//! exporter (`OTEL_EXPORTER_OTLP_*` headers, timeout, compression). Two thin wrappers
//! around them count what never reaches the collector, which the SDK only logs once:
//! `warden_trace_spans_dropped_total{reason="queue_full"}` for a span the queue had no
//! room for, `{reason="export_failed"}` for a batch the collector did not take (down, slow,
//! refusing), and `warden_trace_spans_exported_total`. No call ever waits for any of it.
//!
//! The exporter's HTTP client is the gateway's own (hyper, and rustls for an `https://`
//! collector, verified against Mozilla's roots or only `--otlp-ca`), its requests run on the
//! gateway's runtime.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider, ShouldSample, SpanData,
    SpanExporter, SpanProcessor,
};

use crate::Error;

/// How long one export request may take, answer included (`OTEL_EXPORTER_OTLP_TIMEOUT`'s
/// default).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Traces sent to a collector, while this lives; [`Export::shutdown`] sends what is queued.
pub struct Export {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    sampler: Box<dyn ShouldSample>,
    /// Where the spans go, for the startup line.
    pub description: String,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Export {
    /// `endpoint`: the collector's base URL (`/v1/traces` is added), as
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` takes it. Without it, the variables decide; with
    /// neither, no traces (`None`). `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`
    /// turn them off. Must be called within the runtime the exports will run on.
    ///
    /// `ca`: the only CA an `https://` collector's certificate may be signed by
    /// (`--otlp-ca`); Mozilla's roots otherwise.
    pub fn start(
        endpoint: Option<&str>,
        ca: Option<&std::path::Path>,
    ) -> Result<Option<Export>, Error> {
        let from_env = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"));
        if endpoint.is_none() && from_env.is_none() {
            return Ok(None);
        }
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || env("OTEL_TRACES_EXPORTER").is_some_and(|v| v == "none")
        {
            return Ok(None);
        }
        if let Some(e) = env("OTEL_TRACES_EXPORTER").filter(|e| e != "otlp") {
            return Err(Error::Config(format!(
                "OTEL_TRACES_EXPORTER={e}: Warden exports traces over OTLP only (otlp or none)"
            )));
        }
        let protocol = env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"));
        if let Some(p) = protocol.filter(|p| p != "http/protobuf") {
            return Err(Error::Config(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={p}: Warden sends OTLP over HTTP as protobuf (http/protobuf); point it at the collector's HTTP port (4318)"
            )));
        }
        let url = match endpoint {
            Some(base) => {
                let uri: http::Uri = base.parse().ok().filter(|u: &http::Uri| {
                    matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some()
                }).ok_or_else(|| {
                    Error::Config(format!(
                        "--otlp-endpoint {base:?}: expected the collector's http:// or https:// base URL, such as http://localhost:4318"
                    ))
                })?;
                if ca.is_some() && uri.scheme_str() != Some("https") {
                    return Err(Error::Config(format!(
                        "--otlp-ca goes with an https:// collector, not {base:?}"
                    )));
                }
                Some(format!("{}/v1/traces", base.trim_end_matches('/')))
            }
            None => None,
        };
        let client = Client::new(ca)?;
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_http_client(client)
            .with_timeout(EXPORT_TIMEOUT);
        if let Some(url) = &url {
            builder = builder.with_endpoint(url.clone());
        }
        let exporter = builder
            .build()
            .map_err(|e| Error::Config(format!("OTLP exporter: {e}")))?;
        let queued = Arc::new(AtomicUsize::new(0));
        let max_queue = env("OTEL_BSP_MAX_QUEUE_SIZE")
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(2048);
        let batch = BatchSpanProcessor::builder(Counted {
            inner: exporter,
            queued: queued.clone(),
        })
        .with_batch_config(BatchConfigBuilder::default().build())
        .build();
        let mut resource = Resource::builder();
        let named = env("OTEL_SERVICE_NAME").is_some()
            || env("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| a.contains("service.name="));
        if !named {
            resource = resource.with_service_name("warden");
        }
        // The SDK's own reading of OTEL_TRACES_SAMPLER (and _ARG), kept so that the layers
        // can ask it before making a span (`PolicyLayer::tracer_with_sampler`).
        let sampler = opentelemetry_sdk::trace::Config::default().sampler;
        let provider = SdkTracerProvider::builder()
            .with_sampler(sampler.box_clone())
            .with_span_processor(Bounded {
                inner: batch,
                queued,
                max_queue,
            })
            .with_resource(resource.build())
            .build();
        let tracer = provider.tracer("warden");
        let description = url
            .or(from_env)
            .unwrap_or_else(|| "the OTEL_EXPORTER_OTLP_* endpoint".into());
        Ok(Some(Export {
            provider,
            tracer,
            sampler,
            description,
        }))
    }

    /// What the layers make their spans with.
    pub fn tracer(&self) -> SdkTracer {
        self.tracer.clone()
    }

    /// The sampler the tracer's provider uses.
    pub fn sampler(&self) -> Box<dyn ShouldSample> {
        self.sampler.box_clone()
    }

    /// Sends what is queued (within a few seconds) and stops. Blocks: call it off the
    /// runtime, or after it.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown_with_timeout(Duration::from_secs(5)) {
            tracing::warn!(target: "warden::gateway", error = %e, "traces not all sent at exit");
        }
    }
}

/// The batch processor, with a queue count of our own kept beside its queue: a span that
/// would overflow it is dropped here and counted (the SDK's processor only logs its first).
#[derive(Debug)]
struct Bounded {
    inner: BatchSpanProcessor,
    /// Spans handed to `inner` and not yet to the exporter.
    queued: Arc<AtomicUsize>,
    max_queue: usize,
}

impl SpanProcessor for Bounded {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.queued.fetch_add(1, Ordering::Relaxed) >= self.max_queue {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            metrics::counter!("warden_trace_spans_dropped_total", "reason" => "queue_full")
                .increment(1);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP exporter, counting what it sent and what it could not.
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    queued: Arc<AtomicUsize>,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        // Off the queue now, whatever becomes of them.
        let _ = self
            .queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
                Some(q.saturating_sub(n))
            });
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => {
                metrics::counter!("warden_trace_spans_exported_total").increment(n as u64);
            }
            Err(e) => {
                metrics::counter!("warden_trace_spans_dropped_total", "reason" => "export_failed")
                    .increment(n as u64);
                tracing::debug!(target: "warden::gateway", error = %e, spans = n, "spans not exported");
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The exporter's HTTP client: the gateway's hyper client, run on the gateway's runtime
/// (the batch processor calls it from a thread of its own).
#[derive(Debug, Clone)]
struct Client {
    http: warden_tower::tls::HttpsClient<Full<Bytes>>,
    runtime: tokio::runtime::Handle,
}

impl Client {
    fn new(ca: Option<&std::path::Path>) -> Result<Client, Error> {
        let tls = warden_tower::tls::ClientTls {
            ca: ca.map(std::path::Path::to_owned),
            identity: None,
        };
        let http = warden_tower::tls::https_client(&tls).map_err(|e| match ca {
            Some(ca) => Error::Config(format!("--otlp-ca {}: {e}", ca.display())),
            None => Error::Config(format!("OTLP exporter: {e}")),
        })?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| Error::Config(format!("OTLP exporter: {e}")))?;
        Ok(Client { http, runtime })
    }
}

#[async_trait::async_trait]
impl HttpClient for Client {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let http = self.http.clone();
        let exchange = async move {
            let (parts, body) = request.into_parts();
            let resp = http
                .request(http::Request::from_parts(parts, Full::new(body)))
                .await?;
            let (parts, body) = resp.into_parts();
            // A collector's answer is small; a huge one is not read past 1 MiB.
            let body = http_body_util::Limited::new(body, 1 << 20)
                .collect()
                .await?
                .to_bytes();
            Ok::<_, HttpError>(http::Response::from_parts(parts, body))
        };
        let timed = async move {
            tokio::time::timeout(EXPORT_TIMEOUT, exchange)
                .await
                .map_err(|_| HttpError::from("the collector did not answer in time"))?
        };
        self.runtime.spawn(timed).await?
    }
}
