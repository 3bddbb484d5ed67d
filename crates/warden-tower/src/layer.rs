//! [`PolicyLayer`]: configuration, and the policy shared by every clone of the service.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tower::Layer;
use warden_policy::CompiledPolicy;

use crate::answer::DenyStyle;
use crate::approval::{Approver, Refuse};
use crate::grant::{DefaultGrant, GrantExtractor};
use crate::limit::{CounterStore, Counters, MemoryStore};
use crate::service::PolicyService;

/// What the layer guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// MCP over Streamable HTTP: JSON-RPC in POST bodies.
    #[default]
    Mcp,
    /// Plain HTTP routes: each `METHOD /route` is a tool.
    Http,
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) mode: Mode,
    pub(crate) max_body: usize,
    pub(crate) deny_style: DenyStyle,
    pub(crate) max_keys: usize,
    pub(crate) shadow: bool,
    pub(crate) recorder: Option<RecorderRef>,
    /// Where the console is, for links in URL-mode elicitations.
    pub(crate) console_url: Option<String>,
    /// The server this gate stands in front of, when a gateway fronts several: named in
    /// every audit line and recorded call.
    pub(crate) server: Option<Arc<str>>,
    /// Where spans go, when traces are on.
    pub(crate) tracing: Option<crate::otel::Tracing>,
    /// The counters live in another process: their round trip gets a span of its own.
    pub(crate) remote_store: bool,
}

/// The recorder, shared; shown only as present in debug output.
#[derive(Clone)]
pub(crate) struct RecorderRef(pub(crate) Arc<dyn crate::observe::Recorder>);

impl std::fmt::Debug for RecorderRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recorder")
    }
}

/// A compiled policy and the counters of its limits: swapped together on reload.
#[derive(Debug)]
pub(crate) struct Enforcer {
    pub(crate) policy: Arc<CompiledPolicy>,
    pub(crate) counters: Counters,
    /// Distinct for every policy loaded, so an approval asked under one is not used under
    /// another.
    pub(crate) revision: u64,
}

fn next_revision() -> u64 {
    static REVISION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    REVISION.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

pub(crate) struct Shared {
    pub(crate) state: Arc<ArcSwap<Enforcer>>,
    pub(crate) config: Config,
    pub(crate) grants: Arc<dyn GrantExtractor>,
    pub(crate) approver: Arc<dyn Approver>,
    pub(crate) store: Arc<dyn CounterStore>,
    /// Approvals asked in the MCP client, and what each session's client can be asked.
    pub(crate) elicit: Arc<crate::elicit::Book>,
    /// The lists a reload changed, for the `list_changed` notifications of open streams.
    pub(crate) lists_changed: crate::view::Changes,
    /// List answers filtered lately, to answer the same list again without scanning it.
    pub(crate) list_cache: Arc<crate::view::ListCache>,
    /// Which lists each session holds, for streams opened after a reload.
    pub(crate) listed: Arc<crate::view::Listed>,
}

/// Enforces a Warden policy on every MCP tool call (or HTTP route) of the wrapped service.
///
/// ```
/// use std::convert::Infallible;
/// use tower::{ServiceBuilder, ServiceExt};
/// use warden_tower::{Body, PolicyLayer};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let policy = warden_policy::Policy::from_json_str(
///     r#"{"version": "1", "default": "deny", "tools": {"get_weather": {}}}"#).unwrap();
/// let layer = PolicyLayer::new(warden_policy::CompiledPolicy::new(&policy).unwrap());
///
/// // Any tower service of HTTP requests: an axum Router, rmcp's StreamableHttpService, ...
/// let upstream = tower::service_fn(|_req: http::Request<Body>| async {
///     Ok::<_, Infallible>(http::Response::new(Body::full("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}")))
/// });
/// let svc = ServiceBuilder::new().layer(layer).service(upstream);
///
/// let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_everything"}}"#;
/// let req: http::Request<Body> = http::Request::post("/mcp").body(Body::full(call)).unwrap();
/// let resp = svc.oneshot(req).await.unwrap();
/// let text = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
/// assert!(String::from_utf8_lossy(&text).contains("[POLICY DENIED]"));
/// # }
/// ```
#[derive(Clone)]
pub struct PolicyLayer {
    state: Arc<ArcSwap<Enforcer>>,
    config: Config,
    grants: Arc<dyn GrantExtractor>,
    approver: Arc<dyn Approver>,
    store: Arc<dyn CounterStore>,
    /// The store was chosen by the user: `max_keys_per_counter` must not replace it.
    custom_store: bool,
    elicit: Arc<crate::elicit::Book>,
    lists_changed: crate::view::Changes,
    // Shared by every service the layer makes (the gateway makes one per connection).
    list_cache: Arc<crate::view::ListCache>,
    listed: Arc<crate::view::Listed>,
}

impl std::fmt::Debug for PolicyLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyLayer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl PolicyLayer {
    /// Default limits: 1 MiB request bodies, denials as tool results, 100,000 live keys per
    /// counter, grants from a [`crate::Grant`] extension or the hashed bearer token,
    /// approvals refused (the hosted behaviour), counters in memory ([`MemoryStore`]).
    pub const DEFAULT_MAX_BODY: usize = 1 << 20;
    pub const DEFAULT_MAX_KEYS: usize = 100_000;

    pub fn new(policy: CompiledPolicy) -> Self {
        let config = Config {
            mode: Mode::Mcp,
            max_body: Self::DEFAULT_MAX_BODY,
            deny_style: DenyStyle::ToolResult,
            max_keys: Self::DEFAULT_MAX_KEYS,
            shadow: false,
            recorder: None,
            console_url: None,
            server: None,
            tracing: None,
            remote_store: false,
        };
        let counters = Counters::new(&policy);
        PolicyLayer {
            state: Arc::new(ArcSwap::from_pointee(Enforcer {
                policy: Arc::new(policy),
                counters,
                revision: next_revision(),
            })),
            config,
            grants: Arc::new(DefaultGrant),
            approver: Arc::new(Refuse),
            store: Arc::new(MemoryStore::new(Self::DEFAULT_MAX_KEYS)),
            custom_store: false,
            elicit: Arc::default(),
            lists_changed: crate::view::Changes::default(),
            list_cache: Arc::default(),
            listed: Arc::default(),
        }
    }

    /// Guard plain HTTP routes instead of MCP: the tool name is `METHOD /matched/route`.
    pub fn http_mode(mut self) -> Self {
        self.config.mode = Mode::Http;
        self
    }

    /// Request bodies over `bytes` get 413 and never reach the service.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.config.max_body = bytes;
        self
    }

    pub fn deny_style(mut self, style: DenyStyle) -> Self {
        self.config.deny_style = style;
        self
    }

    /// Past this many live keys in one counter, calls with a new key are refused (the
    /// in-memory store; a store given to [`Self::counter_store`] bounds keys its own way).
    pub fn max_keys_per_counter(mut self, keys: usize) -> Self {
        self.config.max_keys = keys.max(1);
        if !self.custom_store {
            self.store = Arc::new(MemoryStore::new(self.config.max_keys));
        }
        self
    }

    /// Where rate-limit counters live: [`MemoryStore`] by default; a Redis store (feature
    /// `redis`) when several replicas must share one quota.
    pub fn counter_store(mut self, store: impl CounterStore) -> Self {
        // A store that holds no keys here keeps them elsewhere.
        self.config.remote_store = store.live_keys().is_none();
        self.store = Arc::new(store);
        self.custom_store = true;
        self
    }

    /// Hands every decided call, arguments included, to `recorder` (for replaying real
    /// traffic against another policy). Off by default: arguments are sensitive.
    pub fn recorder(mut self, recorder: impl crate::observe::Recorder) -> Self {
        self.config.recorder = Some(RecorderRef(Arc::new(recorder)));
        self
    }

    /// Names the server behind this layer in every decision event and recorded call (a
    /// gateway in front of several servers has a layer per server).
    pub fn server(mut self, name: impl Into<Arc<str>>) -> Self {
        self.config.server = Some(name.into());
        self
    }

    /// One OpenTelemetry span per MCP message, and children for the upstream call, the
    /// counter store's round trip and an approval's wait ([`crate::otel`]). Off by default.
    pub fn tracer(mut self, tracer: opentelemetry_sdk::trace::SdkTracer) -> Self {
        self.config.tracing = Some(crate::otel::Tracing::new(tracer, None));
        self
    }

    /// [`Self::tracer`], told the sampler the tracer's provider was built with (its
    /// `with_sampler`). The layer asks it first, so that a message from a trace it drops
    /// (an agent's unsampled trace, under the default `parentbased_always_on`) costs no span
    /// at all.
    pub fn tracer_with_sampler(
        mut self,
        tracer: opentelemetry_sdk::trace::SdkTracer,
        sampler: Box<dyn opentelemetry_sdk::trace::ShouldSample>,
    ) -> Self {
        self.config.tracing = Some(crate::otel::Tracing::new(tracer, Some(sampler)));
        self
    }

    /// Decide and log everything, block nothing (on top of the policy's own `mode`).
    pub fn shadow(mut self, on: bool) -> Self {
        self.config.shadow = on;
        self
    }

    pub fn grant_extractor(mut self, grants: impl GrantExtractor) -> Self {
        self.grants = Arc::new(grants);
        self
    }

    pub fn approver(mut self, approver: impl Approver) -> Self {
        self.approver = Arc::new(approver);
        self
    }

    /// The console's address as people open it (`https://warden.example.com`): an approval
    /// asked in an MCP client that can open links (URL-mode elicitation) sends the person
    /// to the console's page for it rather than asking in the client's own form.
    pub fn console_url(mut self, url: impl Into<String>) -> Self {
        self.config.console_url = Some(url.into().trim_end_matches('/').to_owned());
        self
    }

    /// A handle to swap the policy of every service made by this layer.
    pub fn handle(&self) -> PolicyHandle {
        PolicyHandle {
            state: self.state.clone(),
            store: self.store.clone(),
            lists_changed: self.lists_changed.clone(),
        }
    }
}

impl<S> Layer<S> for PolicyLayer {
    type Service = PolicyService<S>;

    fn layer(&self, inner: S) -> PolicyService<S> {
        PolicyService {
            inner,
            shared: Arc::new(Shared {
                state: self.state.clone(),
                config: self.config.clone(),
                grants: self.grants.clone(),
                approver: self.approver.clone(),
                store: self.store.clone(),
                elicit: self.elicit.clone(),
                lists_changed: self.lists_changed.clone(),
                list_cache: self.list_cache.clone(),
                listed: self.listed.clone(),
            }),
        }
    }
}

/// Replaces the policy at run time. Calls in flight finish under the policy they started
/// with; limits whose counter name, quota and scope are unchanged keep their state.
#[derive(Clone)]
pub struct PolicyHandle {
    state: Arc<ArcSwap<Enforcer>>,
    store: Arc<dyn CounterStore>,
    lists_changed: crate::view::Changes,
}

impl std::fmt::Debug for PolicyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyHandle").finish_non_exhaustive()
    }
}

impl PolicyHandle {
    /// Open standalone streams are sent `notifications/tools/list_changed` (and the
    /// resource and prompt ones) when the new policy rules that kind differently.
    pub fn swap(&self, policy: CompiledPolicy) {
        let counters = Counters::new(&policy);
        self.store.retain(counters.distinct());
        let changed = crate::view::changed_lists(self.current().policy(), policy.policy());
        self.state.store(Arc::new(Enforcer {
            policy: Arc::new(policy),
            counters,
            revision: next_revision(),
        }));
        metrics::counter!("warden_policy_reloads_total").increment(1);
        self.lists_changed.send(changed);
    }

    /// The policy in force.
    pub fn current(&self) -> Arc<CompiledPolicy> {
        self.state.load().policy.clone()
    }

    /// Rate-limit keys currently held in memory, across all counters (0 when the store
    /// keeps them elsewhere).
    pub fn live_keys(&self) -> usize {
        self.store.live_keys().unwrap_or(0)
    }

    /// Whether the counter store can answer.
    pub fn store_health(&self) -> crate::limit::StoreHealth {
        self.store.health()
    }

    /// The counters in use and their busiest keys (empty for a store that cannot list them).
    pub fn counters(&self, top: usize) -> Vec<crate::limit::CounterSnapshot> {
        self.store.snapshot(top)
    }
}
