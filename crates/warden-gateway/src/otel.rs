//! OTLP export of the layer's spans (`--otlp-endpoint`, or the `OTEL_*` variables).
//!
//! The SDK makes the spans, with its sampler (`OTEL_TRACES_SAMPLER`, by default
//! `parentbased_always_on`) and its resource (`OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`; the service is `warden` when neither names it). Each span is
//! written as OTLP protobuf where it ends, by `encode` straight from the SDK's span
//! (opentelemetry-otlp's conversion and encoding cost some 22,000 instructions a call, a
//! third as many as the traced call's own connection task: see that module), into the
//! batches of `batch` (the SDK's batch processor's settings, `OTEL_BSP_*`, without its
//! thread), which go to the collector over HTTP with the `OTEL_EXPORTER_OTLP_*` endpoint,
//! headers and timeout as the specification defines them. What never reaches the collector
//! is counted, which the SDK only logs once:
//! `warden_trace_spans_dropped_total{reason="queue_full"}` for a span the queue had no
//! room for, `{reason="export_failed"}` for a batch the collector did not take (down, slow,
//! refusing), `{reason="rejected"}` for spans a collector's partial success turned away,
//! and `warden_trace_spans_exported_total`. No call ever waits for any of it.
//!
//! The exporter's HTTP client is the gateway's own (hyper, and rustls for an `https://`
//! collector, verified against Mozilla's roots or only `--otlp-ca`), and it runs on the
//! gateway's runtime.

mod batch;
mod encode;

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, ShouldSample};

use crate::Error;

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
        // Named in the error as it was set: the traces' own variable, or the general one.
        let protocol = [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ]
        .into_iter()
        .find_map(|name| Some((name, env(name)?)));
        if let Some((name, p)) = protocol.filter(|(_, p)| p != "http/protobuf") {
            return Err(Error::Config(format!(
                "{name}={p}: Warden sends OTLP over HTTP as protobuf (http/protobuf); point it at the collector's HTTP port (4318)"
            )));
        }
        let url = collector_url(endpoint, ca)?;
        let config = ExportConfig::from_env()?;
        let client = Client::new(ca)?;
        let description = url.to_string();
        let queue = batch::Queue::new(batch::Settings::from_env());
        let exporter = std::sync::Arc::new(Exporter {
            client,
            url,
            timeout: config.timeout.min(queue.settings.timeout),
            config,
            queue: queue.clone(),
        });
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| Error::Config(format!("OTLP exporter: {e}")))?;
        runtime.spawn(batch::send(queue.clone(), move |chunk| {
            let exporter = exporter.clone();
            async move { exporter.export(chunk).await }
        }));
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
            .with_span_processor(batch::Batches { queue })
            .with_resource(resource.build())
            .build();
        let tracer = provider.tracer("warden");
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

    /// Sends what is queued (within a few seconds) and stops. Blocks until then, and the
    /// sending runs on the runtime `start` was called in: call it from another thread
    /// (`spawn_blocking`) while that runtime still runs.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown_with_timeout(Duration::from_secs(5)) {
            tracing::warn!(target: "warden::gateway", error = %e, "traces not all sent at exit");
        }
    }
}

/// Where the spans go: `--otlp-endpoint` (a base URL), else
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (taken as it is), else `OTEL_EXPORTER_OTLP_ENDPOINT`
/// (a base URL), as the specification orders them.
fn collector_url(flag: Option<&str>, ca: Option<&std::path::Path>) -> Result<http::Uri, Error> {
    // `shown` is the value as the user gave it, for errors; `text` the URL it makes.
    let (source, shown, text) = match flag {
        Some(base) => ("--otlp-endpoint", base.to_owned(), traces_path(base)),
        None => match env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Some(url) => {
                let text = url.trim().to_owned();
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url, text)
            }
            None => {
                let base = env("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_default();
                let text = traces_path(&base);
                ("OTEL_EXPORTER_OTLP_ENDPOINT", base, text)
            }
        },
    };
    let uri = text
        .parse::<http::Uri>()
        .ok()
        .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some())
        .ok_or_else(|| {
            Error::Config(format!(
                "{source} {shown:?}: expected the collector's http:// or https:// URL, such as http://localhost:4318"
            ))
        })?;
    if ca.is_some() && uri.scheme_str() != Some("https") {
        return Err(Error::Config(format!(
            "--otlp-ca goes with an https:// collector, not {shown:?} ({source})"
        )));
    }
    Ok(uri)
}

fn traces_path(base: &str) -> String {
    format!("{}/v1/traces", base.trim().trim_end_matches('/'))
}

/// The `OTEL_EXPORTER_OTLP_*` settings of each request, the traces' own variable before the
/// general one.
#[derive(Debug)]
struct ExportConfig {
    /// `OTEL_EXPORTER_OTLP_HEADERS`: `key=value` pairs split by commas, values
    /// percent-decoded (a vendor's API key).
    headers: HeaderMap,
    /// `OTEL_EXPORTER_OTLP_TIMEOUT`, in milliseconds: one request, answer included.
    timeout: Duration,
}

/// `OTEL_EXPORTER_OTLP_TIMEOUT`'s default.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

impl ExportConfig {
    fn from_env() -> Result<ExportConfig, Error> {
        let either = |name: &str| {
            let own = format!("OTEL_EXPORTER_OTLP_TRACES_{name}");
            match env(&own) {
                Some(v) => Some((own, v)),
                None => {
                    let general = format!("OTEL_EXPORTER_OTLP_{name}");
                    env(&general).map(|v| (general, v))
                }
            }
        };
        if let Some((var, c)) = either("COMPRESSION").filter(|(_, c)| c != "none") {
            return Err(Error::Config(format!(
                "{var}={c}: Warden sends OTLP uncompressed; unset it or set it to none"
            )));
        }
        let timeout = match either("TIMEOUT") {
            None => EXPORT_TIMEOUT,
            Some((var, ms)) => ms
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|&ms| ms > 0)
                .map(Duration::from_millis)
                .ok_or_else(|| {
                    Error::Config(format!(
                        "{var}={ms}: expected a whole number of milliseconds above 0"
                    ))
                })?,
        };
        let headers = match either("HEADERS") {
            None => HeaderMap::new(),
            Some((var, list)) => parse_headers(&list).map_err(|why| {
                // The values are secrets: the message names the pair by its key only.
                Error::Config(format!("{var}: {why}"))
            })?,
        };
        Ok(ExportConfig { headers, timeout })
    }
}

/// `key1=value1,key2=value2` (the W3C baggage form the specification names), each value
/// percent-decoded. What cannot be sent is an error, not a header silently left out.
fn parse_headers(list: &str) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (n, pair) in list.split(',').map(str::trim).enumerate() {
        if pair.is_empty() {
            continue;
        }
        let Some((key, value)) = pair.split_once('=') else {
            return Err(format!(
                "entry {} has no `=` (expected key=value pairs split by commas)",
                n + 1
            ));
        };
        let key = key.trim();
        let name = HeaderName::from_bytes(key.as_bytes())
            .map_err(|_| format!("entry {}: {key:?} is not a header name", n + 1))?;
        let decoded = percent_encoding::percent_decode_str(value.trim()).collect::<Vec<u8>>();
        let mut value = HeaderValue::from_bytes(&decoded)
            .map_err(|_| format!("the value of {key:?} cannot be sent in a header"))?;
        value.set_sensitive(true);
        headers.append(name, value);
    }
    Ok(headers)
}

/// The OTLP/HTTP exporter: each batch framed as one protobuf request ([`encode`]), posted,
/// and counted as sent or dropped.
#[derive(Debug)]
struct Exporter {
    client: Client,
    url: http::Uri,
    config: ExportConfig,
    /// `OTEL_EXPORTER_OTLP_TIMEOUT` or `OTEL_BSP_EXPORT_TIMEOUT`, whichever is shorter.
    timeout: Duration,
    queue: std::sync::Arc<batch::Queue>,
}

impl Exporter {
    async fn export(&self, chunk: batch::Chunk) {
        let n = chunk.spans as u64;
        let mut body =
            Vec::with_capacity(chunk.scopes.iter().map(|(_, b)| b.len()).sum::<usize>() + 256);
        encode::framed(&self.queue.resource(), &chunk.scopes(), &mut body);
        drop(chunk);
        match self
            .client
            .post(&self.url, &self.config, self.timeout, body)
            .await
        {
            Ok(rejected) => {
                let rejected = rejected.min(n);
                metrics::counter!("warden_trace_spans_exported_total").increment(n - rejected);
                if rejected > 0 {
                    metrics::counter!("warden_trace_spans_dropped_total", "reason" => "rejected")
                        .increment(rejected);
                }
            }
            Err(why) => {
                metrics::counter!("warden_trace_spans_dropped_total", "reason" => "export_failed")
                    .increment(n);
                tracing::debug!(target: "warden::gateway", error = %why, spans = n, "spans not exported");
            }
        }
    }
}

/// The exporter's HTTP client: the gateway's hyper client.
#[derive(Debug, Clone)]
struct Client {
    http: warden_tower::tls::HttpsClient<Full<Bytes>>,
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
        Ok(Client { http })
    }

    /// Posts one export request; `Ok` with the spans a partial success rejected.
    async fn post(
        &self,
        url: &http::Uri,
        config: &ExportConfig,
        timeout: Duration,
        body: Vec<u8>,
    ) -> Result<u64, String> {
        let mut request = http::Request::post(url.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        request.headers_mut().extend(config.headers.clone());
        let exchange = async move {
            let resp = self
                .http
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = resp.status();
            // A collector's answer is small; a huge one is not read past 1 MiB.
            let body = http_body_util::Limited::new(resp.into_body(), 1 << 20)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            if !status.is_success() {
                return Err(format!("the collector answered {status}"));
            }
            Ok(rejected(&body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| "the collector did not answer in time".to_owned())?
    }
}

/// The spans an `ExportTraceServiceResponse` says were rejected (a partial success), logged
/// with the collector's words; 0 for an empty or unreadable answer.
fn rejected(answer: &[u8]) -> u64 {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    use prost::Message as _;
    let Some(partial) = ExportTraceServiceResponse::decode(answer)
        .ok()
        .and_then(|r| r.partial_success)
    else {
        return 0;
    };
    if partial.rejected_spans > 0 || !partial.error_message.is_empty() {
        tracing::warn!(
            target: "warden::gateway",
            rejected = partial.rejected_spans,
            message = %partial.error_message,
            "the collector took the spans in part"
        );
    }
    partial.rejected_spans.max(0) as u64
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceResponse,
    };
    use prost::Message as _;

    #[test]
    fn a_partial_success_says_how_many_spans_were_turned_away() {
        let answer = |rejected, message: &str| {
            ExportTraceServiceResponse {
                partial_success: Some(ExportTracePartialSuccess {
                    rejected_spans: rejected,
                    error_message: message.into(),
                }),
            }
            .encode_to_vec()
        };
        assert_eq!(super::rejected(&answer(7, "too old")), 7);
        assert_eq!(super::rejected(&answer(0, "")), 0);
        // A count below zero is none; an empty or unreadable answer, a full success.
        assert_eq!(super::rejected(&answer(-3, "?")), 0);
        assert_eq!(super::rejected(b""), 0);
        assert_eq!(super::rejected(b"\xff\xff not protobuf"), 0);
    }

    #[test]
    fn headers_are_key_value_pairs_with_percent_encoded_values() {
        let h = super::parse_headers(" x-api-key = k%3Dv%2C1 ,, X-Team=ops").unwrap();
        assert_eq!(h["x-api-key"], "k=v,1");
        assert_eq!(h["x-team"], "ops");
        assert!(h["x-api-key"].is_sensitive());
        let why = super::parse_headers("a=1,no-equals").unwrap_err();
        assert!(why.contains("entry 2 has no `=`"), "{why}");
        let why = super::parse_headers("bad key=1").unwrap_err();
        assert!(why.contains("\"bad key\" is not a header name"), "{why}");
        let why = super::parse_headers("k=sec%0Aret").unwrap_err();
        assert!(why.contains("\"k\"") && !why.contains("sec"), "{why}");
    }
}
