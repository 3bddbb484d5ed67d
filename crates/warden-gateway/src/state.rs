//! Where counters and pending approvals live: in this process, or in a Redis shared by
//! every replica (`--redis`).

use std::sync::Arc;

use warden_policy::CompiledPolicy;
use warden_tower::redis::{Redis, RedisApprovals, RedisConfig, RedisStore};
use warden_tower::{ApprovalDesk, ApprovalQueue, PolicyLayer};

use crate::Error;

/// `--approval-notify`: where each approval request is announced, and the console's URL
/// the announcement links to.
#[derive(Debug, Clone)]
pub struct Notify {
    pub url: http::Uri,
    /// How an `https://` URL is verified.
    pub tls: warden_tower::tls::ClientTls,
    pub console: String,
}

/// The layer with its stores, and the desk a person answers approvals at (if anyone can).
pub struct Stores {
    pub layer: PolicyLayer,
    /// One more layer per further server ([`Stores::layer_for`]): its own policy and
    /// counters, the same desk and Redis.
    extra: Option<Extra>,
    pub desk: Option<Arc<dyn ApprovalDesk>>,
    /// What the startup line says about where state lives (no secrets).
    pub description: String,
    pub redis: Option<Redis>,
}

/// What a further server's layer shares with the first.
struct Extra {
    redis: Option<Redis>,
    desk: Option<Arc<dyn ApprovalDesk>>,
}

impl Stores {
    /// A layer for `server` (its policy; counters of its own, under `server:NAME:` in Redis),
    /// answering approvals at the same desk as every other server's.
    pub fn layer_for(&self, server: &str, policy: CompiledPolicy) -> PolicyLayer {
        let mut layer = PolicyLayer::new(policy).server(server);
        let Some(extra) = &self.extra else {
            return layer;
        };
        if let Some(redis) = &extra.redis {
            layer = layer.counter_store(RedisStore::new(redis.clone()).for_server(server));
        }
        if let Some(desk) = &extra.desk {
            layer = layer.approver(desk.clone());
        }
        layer
    }

    /// Asks Redis once before serving, so health is known from the first request and an
    /// unreachable Redis is reported at start (the gate still starts, failing closed).
    pub async fn check(&self) {
        if let Some(redis) = &self.redis {
            if let Err(why) = redis.ping().await {
                tracing::warn!(
                    target: "warden::store",
                    url = %redis.config().display_url(), error = %why,
                    "Redis unreachable at start: calls charged by a limit are refused until it answers"
                );
            }
        }
    }
}

/// In memory, approvals go to a local queue when this process has an admin address (someone
/// can answer) and are refused otherwise. With Redis, counters and the queue are shared, so
/// any replica's admin address can answer any replica's call.
///
/// `server` names the first server when the gateway fronts several: its counters then live
/// under `server:NAME:` too.
pub fn build(
    policy: CompiledPolicy,
    server: Option<&str>,
    redis: Option<&RedisConfig>,
    local_admin: bool,
    notify: Option<&Notify>,
) -> Result<Stores, Error> {
    let mut layer = PolicyLayer::new(policy);
    if let Some(name) = server {
        layer = layer.server(name);
    }
    // Each request announced to a URL, with a link to the console (the desk stays the judge).
    let announce = |desk: Arc<dyn ApprovalDesk>| -> Result<Arc<dyn ApprovalDesk>, Error> {
        Ok(match notify {
            Some(n) => Arc::new(crate::notify::Notified::new(
                desk,
                n.url.clone(),
                &n.tls,
                n.console.clone(),
            )?),
            None => desk,
        })
    };
    match redis {
        Some(config) => {
            let redis = Redis::connect(config.clone()).map_err(|e| Error::Config(e.to_string()))?;
            let desk = announce(Arc::new(RedisApprovals::new(redis.clone())))?;
            let description = format!(
                "counters and approvals in Redis {} (prefix {:?}, {} ms deadline, fail {})",
                config.display_url(),
                config.prefix,
                config.timeout.as_millis(),
                match config.fail {
                    warden_tower::redis::FailMode::Closed => "closed",
                    warden_tower::redis::FailMode::Open => "open",
                }
            );
            let store = match server {
                Some(name) => RedisStore::new(redis.clone()).for_server(name),
                None => RedisStore::new(redis.clone()),
            };
            Ok(Stores {
                layer: layer.counter_store(store).approver(desk.clone()),
                extra: Some(Extra {
                    redis: Some(redis.clone()),
                    desk: Some(desk.clone()),
                }),
                desk: Some(desk),
                description,
                redis: Some(redis),
            })
        }
        None if local_admin => {
            let queue = announce(Arc::new(ApprovalQueue::new()))?;
            Ok(Stores {
                layer: layer.approver(queue.clone()),
                extra: Some(Extra {
                    redis: None,
                    desk: Some(queue.clone()),
                }),
                desk: Some(queue),
                description: "counters and approvals in memory".into(),
                redis: None,
            })
        }
        None => Ok(Stores {
            layer,
            extra: None,
            desk: None,
            description: "counters in memory; approvals refused (no --admin to answer them)".into(),
            redis: None,
        }),
    }
}
