//! State shared by several replicas through one Redis (feature `redis`): rate-limit counters
//! ([`RedisStore`]) and the approval queue ([`RedisApprovals`]).
//!
//! ```no_run
//! use warden_tower::redis::{FailMode, Redis, RedisConfig, RedisApprovals, RedisStore};
//! # fn layer(policy: warden_policy::CompiledPolicy) -> Result<(), warden_tower::Error> {
//! // Inside a tokio runtime: the connection is made lazily and remade after every outage.
//! let redis = Redis::connect(RedisConfig::new("redis://127.0.0.1:6379/0"))?;
//! let layer = warden_tower::PolicyLayer::new(policy)
//!     .counter_store(RedisStore::new(redis.clone()))
//!     .approver(RedisApprovals::new(redis));
//! # Ok(()) }
//! ```
//!
//! Every command has a deadline ([`RedisConfig::timeout`], 250 ms by default). A store that
//! misses it fails closed: the call is refused with a message saying the rate-limit store is
//! unavailable, unless [`FailMode::Open`] was chosen. The connection manager reconnects by
//! itself, and a background ping every second keeps `/healthz` current, so calls pass again
//! as soon as Redis is back.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};

mod approvals;
mod counters;

pub use approvals::RedisApprovals;
pub use counters::RedisStore;

/// What to do with a call when Redis cannot answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailMode {
    /// Refuse it (the default): a limit that cannot be checked is not a limit.
    #[default]
    Closed,
    /// Forward it and log a warning: availability over the limit.
    Open,
}

impl std::str::FromStr for FailMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "closed" => Ok(FailMode::Closed),
            "open" => Ok(FailMode::Open),
            other => Err(format!("expected `closed` or `open`, not {other:?}")),
        }
    }
}

/// How to reach Redis and how to name keys there.
#[derive(Clone)]
pub struct RedisConfig {
    url: String,
    /// Prepended to every key and channel, so several deployments can share one Redis.
    pub prefix: String,
    /// The deadline of one command, connection included.
    pub timeout: Duration,
    pub fail: FailMode,
    /// For `rediss://`: the CA that signed the server's certificate (Mozilla's roots when
    /// absent) and a client certificate if the server asks for one.
    #[cfg(feature = "tls")]
    pub tls: crate::tls::ClientTls,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact(&self.url))
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("fail", &self.fail)
            .finish()
    }
}

impl RedisConfig {
    pub const DEFAULT_PREFIX: &'static str = "warden:";
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

    /// `redis://[user:password@]host:port[/db]`.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            prefix: Self::DEFAULT_PREFIX.to_owned(),
            timeout: Self::DEFAULT_TIMEOUT,
            fail: FailMode::Closed,
            #[cfg(feature = "tls")]
            tls: crate::tls::ClientTls::default(),
        }
    }

    /// How a `rediss://` connection verifies the server and identifies itself.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::tls::ClientTls) -> Self {
        self.tls = tls;
        self
    }

    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn fail(mut self, fail: FailMode) -> Self {
        self.fail = fail;
        self
    }

    /// The URL with any password replaced, fit for logs.
    pub fn display_url(&self) -> String {
        redact(&self.url)
    }
}

/// `redis://user:secret@host/0` → `redis://user:***@host/0`: logs never carry the secret.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(unparsable Redis URL)".into();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}")
            } else {
                // `redis://secret@host` puts the password where a user name would be.
                format!("{scheme}://***@{host}")
            }
        }
        None => url.to_owned(),
    }
}

/// `redis://` as it is; `rediss://` over rustls, trusting what `config.tls` names.
fn client(config: &RedisConfig) -> Result<::redis::Client, crate::Error> {
    let bad = |e: ::redis::RedisError| {
        crate::Error::Config(format!("Redis URL {}: {e}", config.display_url()))
    };
    if config.url.starts_with("rediss://") {
        #[cfg(feature = "tls")]
        return ::redis::Client::build_with_tls(config.url.as_str(), config.tls.for_redis()?)
            .map_err(bad);
        #[cfg(not(feature = "tls"))]
        return Err(crate::Error::Config(format!(
            "Redis URL {}: rediss:// needs warden-tower's `tls` feature",
            config.display_url()
        )));
    }
    #[cfg(feature = "tls")]
    if config.tls != crate::tls::ClientTls::default() {
        return Err(crate::Error::Config(format!(
            "Redis URL {}: a CA or client certificate was given for a plain redis:// URL (use rediss://)",
            config.display_url()
        )));
    }
    ::redis::Client::open(config.url.as_str()).map_err(bad)
}

/// A shared, self-reconnecting connection to Redis. Cloning shares it.
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    client: ::redis::Client,
    manager: ConnectionManager,
    config: RedisConfig,
    up: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("url", &self.inner.config.display_url())
            .field("up", &self.is_up())
            .finish()
    }
}

impl Redis {
    /// Prepares the connection without waiting for it (Redis may be down at start: calls
    /// then fail closed until it is up). Must be called inside a tokio runtime.
    pub fn connect(config: RedisConfig) -> Result<Redis, crate::Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            crate::Error::Config("Redis::connect must be called inside a tokio runtime".into())
        })?;
        let client = client(&config)?;
        // Few, quick retries: a caller waits at most `timeout` anyway, and the next command
        // (or the health ping) starts a new attempt.
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(200));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
            .map_err(|e| crate::Error::Config(format!("Redis {}: {e}", config.display_url())))?;
        let redis = Redis {
            inner: Arc::new(Inner {
                client,
                manager,
                config,
                up: AtomicBool::new(false),
                last_error: Mutex::new(Some("not connected yet".into())),
            }),
        };
        redis.spawn_health_ping(&runtime);
        Ok(redis)
    }

    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// Whether the last command (or ping) got an answer in time.
    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Relaxed)
    }

    /// Why the last command failed, while it is down.
    pub fn last_error(&self) -> Option<String> {
        if self.is_up() {
            return None;
        }
        self.inner
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn key(&self, parts: &[&str]) -> String {
        let mut k = self.inner.config.prefix.clone();
        k.push_str(&parts.join(":"));
        k
    }

    pub(crate) fn manager(&self) -> ConnectionManager {
        self.inner.manager.clone()
    }

    pub(crate) fn client(&self) -> &::redis::Client {
        &self.inner.client
    }

    /// Runs one Redis operation under the deadline, recording latency, errors and health.
    /// The error text never contains the URL.
    ///
    /// A connection that died while Redis was away fails its next command, and the manager
    /// starts reconnecting; so a command that fails on a lost connection is tried once more
    /// within the same deadline (the retry waits for the new connection). A command whose
    /// reply was lost may then run twice: a charge counts twice, erring on the limit's side.
    pub(crate) async fn run<T, F, Fut>(&self, op: &'static str, mut attempt: F) -> Result<T, String>
    where
        F: FnMut(ConnectionManager) -> Fut,
        Fut: Future<Output = ::redis::RedisResult<T>>,
    {
        let fut = async {
            match attempt(self.manager()).await {
                Err(e) if e.is_connection_dropped() || e.is_io_error() => {
                    attempt(self.manager()).await
                }
                done => done,
            }
        };
        let started = Instant::now();
        let late = || {
            format!(
                "no answer within {} ms",
                self.inner.config.timeout.as_millis()
            )
        };
        // The client's own response timeout and ours are the same deadline: one message.
        let out = match tokio::time::timeout(self.inner.config.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if e.is_timeout() => Err(late()),
            Ok(Err(e)) => Err(describe(&e)),
            Err(_) => Err(late()),
        };
        metrics::histogram!("warden_store_seconds", "op" => op)
            .record(started.elapsed().as_secs_f64());
        match &out {
            Ok(_) => self.mark_up(),
            Err(why) => {
                metrics::counter!("warden_store_errors_total", "op" => op).increment(1);
                self.mark_down(why);
            }
        }
        out
    }

    fn mark_up(&self) {
        if !self.inner.up.swap(true, Ordering::Relaxed) {
            metrics::gauge!("warden_store_up").set(1.0);
            tracing::info!(target: "warden::store", url = %self.inner.config.display_url(), "Redis reachable");
        }
    }

    fn mark_down(&self, why: &str) {
        *self
            .inner
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(why.to_owned());
        if self.inner.up.swap(false, Ordering::Relaxed) {
            metrics::gauge!("warden_store_up").set(0.0);
            tracing::warn!(target: "warden::store", url = %self.inner.config.display_url(), error = %why, "Redis unreachable");
        }
    }

    /// `PING`, under the deadline.
    pub async fn ping(&self) -> Result<(), String> {
        self.run("ping", |mut con| async move {
            ::redis::cmd("PING").query_async::<String>(&mut con).await
        })
        .await
        .map(|_| ())
    }

    /// Pings every second while any clone is alive: health stays current and a dead
    /// connection is replaced before the next call needs it.
    fn spawn_health_ping(&self, runtime: &tokio::runtime::Handle) {
        let weak = Arc::downgrade(&self.inner);
        runtime.spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let _ = Redis { inner }.ping().await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}

/// A Redis error without anything that could hold a secret.
fn describe(e: &::redis::RedisError) -> String {
    // A certificate problem is what an operator must fix; say it, not "connection lost".
    #[cfg(feature = "tls")]
    if let Some(why) = crate::tls::explain(e) {
        return why;
    }
    if e.is_connection_refusal() {
        "connection refused".into()
    } else if e.is_io_error() || e.is_connection_dropped() {
        "connection lost".into()
    } else {
        format!("{:?}: {}", e.kind(), e.detail().unwrap_or(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(
            redact("redis://user:s3cret@db:6379/1"),
            "redis://user:***@db:6379/1"
        );
        assert_eq!(redact("redis://s3cret@db:6379"), "redis://***@db:6379");
        assert_eq!(redact("redis://db:6379/2"), "redis://db:6379/2");
        assert!(!format!("{:?}", RedisConfig::new("redis://:pw@h/0")).contains("pw"));
    }

    #[test]
    fn fail_modes_parse() {
        assert_eq!("open".parse::<FailMode>(), Ok(FailMode::Open));
        assert_eq!("closed".parse::<FailMode>(), Ok(FailMode::Closed));
        assert!("maybe".parse::<FailMode>().is_err());
    }
}
