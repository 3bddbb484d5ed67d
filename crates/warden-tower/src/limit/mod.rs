//! Rate limits: named, keyed GCRA counters, charged all-or-nothing through a [`CounterStore`].
//!
//! A policy's limits become [`CounterSpec`]s (name, quota, scope). A call's charges go to the
//! store in one step: every counter has room and all are charged, or none is. Two stores:
//! - [`MemoryStore`] (the default): governor's GCRA in this process, keys bounded;
//! - `RedisStore` (feature `redis`): the same arithmetic in one Lua script on a Redis server
//!   shared by several replicas, failing closed when Redis cannot answer in time.
//!
//! State belongs to a spec, not to a policy: after a reload, a limit whose name, quota and
//! scope are unchanged finds its buckets where it left them.
//!
//! ```
//! use std::sync::Arc;
//! use warden_tower::limit::{Charge, CounterSpec, CounterStore, MemoryStore, Refusal};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let store = MemoryStore::new(1000);
//! let spec = Arc::new(CounterSpec::new("calls", 2, 60, warden_policy::Scope::Grant));
//! let charge = [Charge { limit: 0, counter: spec, key: "alice".into(), cost: 1 }];
//! assert!(store.charge(&charge).await.is_ok());
//! assert!(store.charge(&charge).await.is_ok());
//! assert!(matches!(store.charge(&charge).await, Err(Refusal::Exhausted { at: 0, retry_after_secs: 30 })));
//! # }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use warden_policy::{CompiledLimit, CompiledPolicy, Scope};

mod memory;

pub use memory::MemoryStore;

/// What identifies a bucket family: limits with the same name, quota and scope share state,
/// across policy reloads and (with a shared store) across replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterSpec {
    pub name: String,
    /// Burst: this many units fit in an empty bucket.
    pub max: u64,
    /// The bucket refills evenly over this many seconds.
    pub window_secs: u64,
    pub scope: Scope,
    /// With [`Scope::Claim`]: the claim whose value keys the buckets.
    pub claim: Option<String>,
    /// A hash of the fields above, computed once: stores look specs up on every call.
    fingerprint: u64,
    /// SHA-256 (16 hex digits) of quota, scope and claim: the same in every process, so a
    /// shared store can name buckets by it (a quota change starts fresh ones).
    quota_id: String,
}

impl std::hash::Hash for CounterSpec {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.fingerprint);
    }
}

impl CounterSpec {
    pub fn new(name: impl Into<String>, max: u64, window_secs: u64, scope: Scope) -> Self {
        let mut spec = CounterSpec {
            name: name.into(),
            max,
            window_secs,
            scope,
            claim: None,
            fingerprint: 0,
            quota_id: String::new(),
        };
        spec.derive_ids();
        spec
    }

    /// The spec of a compiled limit.
    pub fn of(limit: &CompiledLimit) -> Self {
        CounterSpec::new(
            limit.counter_name.clone(),
            limit.quota.max,
            limit.quota.window_secs,
            limit.scope,
        )
        .with_claim(limit.claim().map(str::to_owned))
    }

    /// The same spec keyed by a claim (`per claim team`).
    pub fn with_claim(mut self, claim: Option<String>) -> Self {
        self.claim = claim;
        self.derive_ids();
        self
    }

    /// The quota's stable id (see the field).
    pub fn quota_id(&self) -> &str {
        &self.quota_id
    }

    fn derive_ids(&mut self) {
        use std::hash::BuildHasher;
        // Fixed keys: the same spec always has the same fingerprint.
        self.fingerprint =
            std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
                .hash_one((
                    &self.name,
                    self.max,
                    self.window_secs,
                    self.scope.as_str(),
                    &self.claim,
                ));
        let mut quota = format!("{}/{}/{}", self.max, self.window_secs, self.scope.as_str());
        if let Some(claim) = &self.claim {
            quota.push('/');
            quota.push_str(claim);
        }
        self.quota_id = crate::grant::short_hash(quota.as_bytes());
    }

    /// The GCRA emission interval: one unit comes back every `window / max`.
    pub fn emission_nanos(&self) -> u64 {
        let window = u128::from(self.window_secs) * 1_000_000_000;
        u64::try_from(window / u128::from(self.max.max(1))).unwrap_or(u64::MAX)
    }
}

/// A charge to make: which limit (its index in the policy), whose bucket, how much.
#[derive(Debug, Clone)]
pub struct Charge {
    pub limit: usize,
    pub counter: Arc<CounterSpec>,
    /// The scope key: the grant, session id or client address (empty for `global`).
    pub key: String,
    pub cost: u64,
}

/// What a successful charge did. Only `All` may be given back ([`CounterStore::refund`]).
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charged {
    /// Every counter was charged.
    All,
    /// Nothing was charged: a store configured to fail open could not be reached.
    Nothing,
}

/// Why a store refused a charge. `at` is the position of the refusing charge in the slice
/// the store was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The bucket has room again after `retry_after_secs` (rounded up, at least 1).
    Exhausted { at: usize, retry_after_secs: u64 },
    /// One call costs more than the whole quota: it can never pass.
    TooCostly { at: usize },
    /// The counter tracks as many keys as it may (clients inventing session ids).
    TooManyKeys { at: usize },
    /// The store could not answer (Redis down or too slow) and fails closed.
    Unavailable { reason: String },
}

/// Whether a store can answer, for `/healthz` and metrics.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoreHealth {
    /// `memory` or `redis`.
    pub store: &'static str,
    pub ok: bool,
    /// What is wrong when not ok (never a secret).
    pub detail: Option<String>,
}

/// A boxed future: stores answer asynchronously; the in-memory one is ready at once.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where counter state lives. Implementations must charge a slice all-or-nothing and
/// atomically with respect to every other charge of the same counters.
pub trait CounterStore: Send + Sync + 'static {
    /// Charges every entry or none; the first refusing entry is named.
    fn charge<'a>(&'a self, charges: &'a [Charge]) -> StoreFuture<'a, Result<Charged, Refusal>>;

    /// The same, for a store that can answer without waiting (`None`: it cannot). The layer
    /// tries this first, so the in-memory path allocates no future.
    fn charge_now(&self, _charges: &[Charge]) -> Option<Result<Charged, Refusal>> {
        None
    }

    /// Gives back charges that were [`Charged::All`] (each bucket at most back to full).
    /// Best effort: a store that cannot be reached keeps them, erring on the limit's side.
    fn refund<'a>(&'a self, charges: &'a [Charge]) -> StoreFuture<'a, ()>;

    /// What `key` has used of the bucket (units not yet refilled; 0 for a full bucket), for
    /// conditions that read a counter (`counter.NAME`). `None`: the store cannot tell, and
    /// those conditions are false (they count against the caller).
    fn used<'a>(&'a self, spec: &'a CounterSpec, key: &'a str) -> StoreFuture<'a, Option<u64>> {
        let _ = (spec, key);
        Box::pin(std::future::ready(None))
    }

    /// The same, for a store that can answer without waiting (`None`: it cannot).
    fn used_now(&self, _spec: &CounterSpec, _key: &str) -> Option<Option<u64>> {
        None
    }

    /// A new policy is in force with these counters; a store may drop state of the others.
    fn retain(&self, _live: &[Arc<CounterSpec>]) {}

    /// Keys held in this process (for metrics); `None` when state lives elsewhere.
    fn live_keys(&self) -> Option<usize> {
        None
    }

    fn health(&self) -> StoreHealth;

    /// For people (the console): each counter in use, and its `top` busiest keys with the
    /// room left. A store that cannot list its keys cheaply (Redis) returns nothing.
    fn snapshot(&self, top: usize) -> Vec<CounterSnapshot> {
        let _ = top;
        Vec::new()
    }
}

/// The clock `warden test` runs policies on: time passes only when a test says so.
pub use governor::clock::FakeRelativeClock as VirtualClock;

/// A counter as the console shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CounterSnapshot {
    pub counter: String,
    pub max: u64,
    pub window_secs: u64,
    /// Live keys (buckets not full again).
    pub keys: usize,
    /// The busiest keys, emptiest bucket first.
    pub busiest: Vec<KeyRoom>,
}

/// One key of a counter: how many calls it may still make now, and when its bucket is full.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyRoom {
    pub key: String,
    pub remaining: u64,
    pub full_in_secs: u64,
}

/// Why a charge was refused, as the layer reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limited {
    /// The bucket is empty; it has room again after `retry_after` (rounded up to seconds).
    Exhausted {
        limit: String,
        counter: String,
        retry_after_secs: u64,
        /// The policy's own words for this limit, if it has them.
        message: Option<String>,
    },
    /// One call costs more than the whole quota: it can never pass.
    TooCostly {
        limit: String,
        counter: String,
        cost: u64,
        max: u64,
        message: Option<String>,
    },
    /// The counter already tracks `max_keys` live keys (clients inventing session ids).
    TooManyKeys { limit: String, counter: String },
    /// The counter store could not answer; the call is refused (fail closed).
    Unavailable {
        limit: String,
        counter: String,
        reason: String,
    },
}

impl Limited {
    /// The text an agent reads.
    pub fn message(&self) -> String {
        match self {
            Limited::Exhausted {
                retry_after_secs,
                message: Some(m),
                ..
            } => format!(
                "{m} (retry in {retry_after_secs} second{})",
                if *retry_after_secs == 1 { "" } else { "s" }
            ),
            Limited::Exhausted {
                counter,
                retry_after_secs,
                ..
            } => format!(
                "rate limit `{counter}` reached; retry in {retry_after_secs} second{}",
                if *retry_after_secs == 1 { "" } else { "s" }
            ),
            Limited::TooCostly {
                message: Some(m), ..
            } => m.clone(),
            Limited::TooCostly {
                counter, cost, max, ..
            } => {
                format!(
                    "this call costs {cost}, more than limit `{counter}` allows in a whole window ({max})"
                )
            }
            Limited::TooManyKeys { counter, .. } => {
                format!("rate limit `{counter}` is tracking too many callers; try again later")
            }
            Limited::Unavailable { counter, .. } => format!(
                "the rate-limit store is unavailable, so limit `{counter}` cannot be checked; \
                 the call was not forwarded (try again shortly)"
            ),
        }
    }

    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Limited::Exhausted {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// The JSON Pointer of the refusing limit.
    pub fn rule(&self) -> &str {
        match self {
            Limited::Exhausted { limit, .. }
            | Limited::TooCostly { limit, .. }
            | Limited::TooManyKeys { limit, .. }
            | Limited::Unavailable { limit, .. } => limit,
        }
    }

    /// The name of the refusing counter.
    pub fn counter(&self) -> &str {
        match self {
            Limited::Exhausted { counter, .. }
            | Limited::TooCostly { counter, .. }
            | Limited::TooManyKeys { counter, .. }
            | Limited::Unavailable { counter, .. } => counter,
        }
    }
}

/// The counters of one compiled policy, by limit index: what a verdict's charges point at.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    specs: Vec<Arc<CounterSpec>>,
    distinct: Vec<Arc<CounterSpec>>,
}

impl Counters {
    /// Specs for every limit of `policy`; equal specs are one `Arc`, so they share buckets.
    pub(crate) fn new(policy: &CompiledPolicy) -> Counters {
        let mut distinct: HashMap<CounterSpec, Arc<CounterSpec>> = HashMap::new();
        let mut specs = Vec::with_capacity(policy.limits().len());
        for limit in policy.limits() {
            let spec = distinct
                .entry(CounterSpec::of(limit))
                .or_insert_with_key(|s| Arc::new(s.clone()))
                .clone();
            specs.push(spec);
        }
        Counters {
            distinct: distinct.into_values().collect(),
            specs,
        }
    }

    /// The spec of `limit`. Both come from one policy, so the index always matches; were it
    /// ever not to, the spec is built on the spot rather than the charge skipped.
    /// What the caller has used of each counter the policy's conditions read, from `store`.
    pub(crate) async fn read(
        &self,
        policy: &CompiledPolicy,
        store: &dyn CounterStore,
        call: &warden_policy::Call<'_>,
    ) -> warden_policy::CounterValues {
        let mut out = warden_policy::CounterValues::new();
        for (name, at) in policy.counters_read() {
            let Some(limit) = policy.limits().get(*at) else {
                continue;
            };
            // No scope key (a grant-scoped counter and no grant): nothing to read.
            let Some(key) = limit.scope_key(call) else {
                continue;
            };
            let spec = self.spec(limit);
            let used = match store.used_now(&spec, &key) {
                Some(now) => now,
                None => store.used(&spec, &key).await,
            };
            if let Some(used) = used {
                out.insert(name.clone(), used);
            }
        }
        out
    }

    pub(crate) fn spec(&self, limit: &CompiledLimit) -> Arc<CounterSpec> {
        self.specs
            .get(limit.index)
            .cloned()
            .unwrap_or_else(|| Arc::new(CounterSpec::of(limit)))
    }

    /// Every distinct spec, for [`CounterStore::retain`].
    pub(crate) fn distinct(&self) -> &[Arc<CounterSpec>] {
        &self.distinct
    }

    /// Charges through `store`, turning a refusal into what the layer reports (the
    /// refusing limit named by its pointer in `policy`).
    pub(crate) async fn charge(
        &self,
        policy: &CompiledPolicy,
        store: &dyn CounterStore,
        charges: &[Charge],
    ) -> Result<Charged, Limited> {
        if charges.iter().all(|c| c.cost == 0) {
            return Ok(Charged::All);
        }
        let answer = match store.charge_now(charges) {
            Some(now) => now,
            None => store.charge(charges).await,
        };
        answer.map_err(|refusal| limited(policy, charges, refusal))
    }
}

/// A store's refusal, named: the refusing limit's pointer and counter.
fn limited(policy: &CompiledPolicy, charges: &[Charge], refusal: Refusal) -> Limited {
    let at = match &refusal {
        Refusal::Exhausted { at, .. } | Refusal::TooCostly { at } | Refusal::TooManyKeys { at } => {
            *at
        }
        Refusal::Unavailable { .. } => 0,
    };
    let c = charges.get(at).or_else(|| charges.first());
    let limit = c
        .and_then(|c| policy.limits().get(c.limit))
        .map(|l| l.pointer.clone())
        .unwrap_or_default();
    let counter = c.map(|c| c.counter.name.clone()).unwrap_or_default();
    let message = c
        .and_then(|c| policy.limits().get(c.limit))
        .and_then(|l| l.on_deny.clone());
    match refusal {
        Refusal::Exhausted {
            retry_after_secs, ..
        } => Limited::Exhausted {
            limit,
            counter,
            retry_after_secs,
            message,
        },
        Refusal::TooCostly { .. } => Limited::TooCostly {
            limit,
            counter,
            cost: c.map_or(0, |c| c.cost),
            max: c.map_or(0, |c| c.counter.max),
            message,
        },
        Refusal::TooManyKeys { .. } => Limited::TooManyKeys { limit, counter },
        Refusal::Unavailable { reason } => Limited::Unavailable {
            limit,
            counter,
            reason,
        },
    }
}

/// Seconds until `wait_nanos` has passed, rounded up, at least 1: what `retry-after` says.
pub(crate) fn retry_after_secs(wait_nanos: u64) -> u64 {
    wait_nanos.div_ceil(1_000_000_000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(0), 1);
        assert_eq!(retry_after_secs(1), 1);
        assert_eq!(retry_after_secs(1_000_000_000), 1);
        assert_eq!(retry_after_secs(1_000_000_001), 2);
    }

    #[test]
    fn emission_interval_is_window_over_max() {
        let s = CounterSpec::new("c", 30, 60, Scope::Grant);
        assert_eq!(s.emission_nanos(), 2_000_000_000);
    }
}
