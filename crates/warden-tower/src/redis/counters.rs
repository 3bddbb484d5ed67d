//! [`RedisStore`]: the counters of every replica in one Redis, charged by one Lua script.

use std::sync::Arc;

use ::redis::Script;

use super::{FailMode, Redis};
use crate::limit::{
    Charge, Charged, CounterSpec, CounterStore, Refusal, StoreFuture, StoreHealth, retry_after_secs,
};

/// Rate-limit counters shared by every replica that points at the same Redis and prefix.
///
/// A call's charges are checked and applied in one script round trip, atomically, with
/// Redis's own clock (`TIME`), so replicas' clocks never matter. Keys are
/// `<prefix><counter>:<hash of quota and scope>:<scope key>`: a quota change starts fresh
/// buckets, and a key expires once its bucket is full again (at most one window later).
#[derive(Clone)]
pub struct RedisStore {
    redis: Redis,
    /// A gateway in front of several servers keeps each server's buckets apart.
    server: Option<Arc<str>>,
    charge: Arc<Script>,
    refund: Arc<Script>,
    used: Arc<Script>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("redis", &self.redis)
            .finish()
    }
}

impl RedisStore {
    pub fn new(redis: Redis) -> Self {
        RedisStore {
            redis,
            server: None,
            charge: Arc::new(Script::new(include_str!("gcra.lua"))),
            refund: Arc::new(Script::new(include_str!("refund.lua"))),
            used: Arc::new(Script::new(include_str!("used.lua"))),
        }
    }

    /// The same store with every bucket under `server:NAME:`, so a limit in one server's
    /// policy never charges another server's calls.
    pub fn for_server(mut self, name: &str) -> Self {
        self.server = Some(name.into());
        self
    }

    /// The Redis key of one bucket.
    pub fn bucket_key(&self, spec: &CounterSpec, key: &str) -> String {
        match &self.server {
            Some(server) => self
                .redis
                .key(&["server", server, &spec.name, spec.quota_id(), key]),
            None => self.redis.key(&[&spec.name, spec.quota_id(), key]),
        }
    }

    async fn charge_all(&self, charges: &[Charge]) -> Result<Charged, Refusal> {
        let live: Vec<(usize, &Charge)> = charges
            .iter()
            .enumerate()
            .filter(|(_, c)| c.cost > 0)
            .collect();
        // Checked here, as governor does before touching state: no round trip can help.
        if let Some((at, _)) = live.iter().find(|(_, c)| c.cost > c.counter.max) {
            return Err(Refusal::TooCostly { at: *at });
        }
        let mut keys = Vec::with_capacity(live.len());
        let mut args = Vec::with_capacity(live.len() * 3);
        for (_, c) in &live {
            let t = emission_micros(&c.counter);
            keys.push(self.bucket_key(&c.counter, &c.key));
            args.push(t.to_string());
            args.push(c.cost.to_string());
            args.push((t * (c.counter.max - 1) as f64).to_string());
        }
        let answer: Result<Vec<i64>, String> = self
            .redis
            .run("charge", |mut con| {
                let mut invocation = self.charge.prepare_invoke();
                invocation.key(&keys).arg(&args);
                async move { invocation.invoke_async(&mut con).await }
            })
            .await;
        match answer {
            Ok(v) if v.first() == Some(&1) => Ok(Charged::All),
            Ok(v) => {
                let i = v
                    .get(1)
                    .and_then(|i| usize::try_from(*i).ok())
                    .and_then(|i| i.checked_sub(1));
                let wait_us = v.get(2).copied().unwrap_or(0).max(0).unsigned_abs();
                match i.and_then(|i| live.get(i)) {
                    Some((at, _)) => Err(Refusal::Exhausted {
                        at: *at,
                        retry_after_secs: retry_after_secs(wait_us.saturating_mul(1000)),
                    }),
                    None => self.unavailable(format!("unexpected script answer {v:?}")),
                }
            }
            Err(why) => self.unavailable(why),
        }
    }

    fn unavailable(&self, why: String) -> Result<Charged, Refusal> {
        match self.redis.config().fail {
            FailMode::Closed => Err(Refusal::Unavailable { reason: why }),
            FailMode::Open => {
                tracing::warn!(
                    target: "warden::store", error = %why,
                    "rate-limit store unavailable: call allowed unchecked (--redis-fail open)"
                );
                metrics::counter!("warden_store_fail_open_total").increment(1);
                Ok(Charged::Nothing)
            }
        }
    }

    async fn refund_all(&self, charges: &[Charge]) {
        if charges.iter().all(|c| c.cost == 0) {
            return;
        }
        let (keys, args): (Vec<String>, Vec<String>) = charges
            .iter()
            .filter(|c| c.cost > 0)
            .map(|c| {
                (
                    self.bucket_key(&c.counter, &c.key),
                    (emission_micros(&c.counter) * c.cost as f64).to_string(),
                )
            })
            .unzip();
        if let Err(why) = self
            .redis
            .run("refund", |mut con| {
                let mut invocation = self.refund.prepare_invoke();
                invocation.key(&keys).arg(&args);
                async move { invocation.invoke_async::<i64>(&mut con).await }
            })
            .await
        {
            tracing::warn!(target: "warden::store", error = %why, "refund not applied");
        }
    }
}

/// The emission interval in microseconds (the script's unit); fractions are kept.
fn emission_micros(spec: &CounterSpec) -> f64 {
    spec.emission_nanos() as f64 / 1000.0
}

impl CounterStore for RedisStore {
    fn charge<'a>(&'a self, charges: &'a [Charge]) -> StoreFuture<'a, Result<Charged, Refusal>> {
        Box::pin(self.charge_all(charges))
    }

    fn refund<'a>(&'a self, charges: &'a [Charge]) -> StoreFuture<'a, ()> {
        Box::pin(self.refund_all(charges))
    }

    fn used<'a>(&'a self, spec: &'a CounterSpec, key: &'a str) -> StoreFuture<'a, Option<u64>> {
        Box::pin(async move {
            let bucket = self.bucket_key(spec, key);
            let t = emission_micros(spec).to_string();
            let answer: Result<i64, String> = self
                .redis
                .run("used", |mut con| {
                    let mut invocation = self.used.prepare_invoke();
                    invocation.key(&bucket).arg(&t);
                    async move { invocation.invoke_async(&mut con).await }
                })
                .await;
            // Unreadable: the condition cannot be evaluated, and counts against the caller.
            answer.ok().map(|u| u.max(0).unsigned_abs().min(spec.max))
        })
    }

    fn health(&self) -> StoreHealth {
        StoreHealth {
            store: "redis",
            ok: self.redis.is_up(),
            detail: self.redis.last_error(),
        }
    }
}
