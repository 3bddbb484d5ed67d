//! Rate limits: governor's GCRA over named, keyed counters, charged all-or-nothing.
//!
//! Each limit of the policy gets a `Counter`: one governor `RateLimiter` whose state store
//! holds a theoretical-arrival time per scope key. Governor does the arithmetic; the store is
//! ours so that a call with several limits can be charged as one transaction (the previous
//! state of each key is kept and put back if a later limit refuses), and so that keys stay
//! bounded: a key whose bucket is full again is indistinguishable from a new key and is
//! dropped, and past `max_keys` live keys a new key is refused rather than let memory grow.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::{Quota, RateLimiter};
use warden_policy::{CompiledLimit, CompiledPolicy, Scope};

/// Why a charge was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limited {
    /// The bucket is empty; it has room again after `retry_after` (rounded up to seconds).
    Exhausted {
        limit: String,
        counter: String,
        retry_after_secs: u64,
    },
    /// One call costs more than the whole quota: it can never pass.
    TooCostly {
        limit: String,
        counter: String,
        cost: u64,
        max: u64,
    },
    /// The counter already tracks `max_keys` live keys (clients inventing session ids).
    TooManyKeys { limit: String, counter: String },
}

impl Limited {
    /// The text an agent reads.
    pub fn message(&self) -> String {
        match self {
            Limited::Exhausted {
                counter,
                retry_after_secs,
                ..
            } => format!(
                "rate limit `{counter}` reached; retry in {retry_after_secs} second{}",
                if *retry_after_secs == 1 { "" } else { "s" }
            ),
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
            | Limited::TooManyKeys { limit, .. } => limit,
        }
    }
}

/// The state of one GCRA bucket per key, shared by every limit that names the counter.
#[derive(Debug, Default)]
struct Tats {
    map: Mutex<HashMap<String, u64>>,
}

impl Tats {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, u64>> {
        // A poisoned map still holds valid integers; keep using it.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, Clone)]
struct Store(Arc<Tats>);

impl StateStore for Store {
    type Key = String;

    fn measure_and_replace<T, F, E>(&self, key: &String, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut map = self.0.lock();
        let old = map.get(key).map(|t| Nanos::from(Duration::from_nanos(*t)));
        let (out, new) = f(old)?;
        map.insert(key.clone(), new.as_u64());
        Ok(out)
    }
}

type Limiter =
    RateLimiter<String, Store, DefaultClock, NoOpMiddleware<<DefaultClock as Clock>::Instant>>;

/// One named counter with one quota and scope.
pub(crate) struct Counter {
    limiter: Limiter,
    tats: Arc<Tats>,
    clock: DefaultClock,
    /// The limiter's zero: governor stores times relative to its creation.
    start: <DefaultClock as Clock>::Instant,
    max: u64,
    max_keys: usize,
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counter")
            .field("keys", &self.tats.lock().len())
            .finish()
    }
}

/// What identifies a bucket across policy reloads: same name, quota and scope → same state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CounterKey {
    name: String,
    max: u64,
    window_secs: u64,
    scope: Scope,
}

impl Counter {
    fn new(limit: &CompiledLimit, max_keys: usize) -> Option<Counter> {
        let max = u32::try_from(limit.quota.max)
            .ok()
            .and_then(NonZeroU32::new)?;
        let window = Duration::from_secs(limit.quota.window_secs);
        let quota = Quota::with_period(window / max.get())?.allow_burst(max);
        let clock = DefaultClock::default();
        let tats = Arc::new(Tats::default());
        let limiter = RateLimiter::new(quota, Store(tats.clone()), clock.clone());
        let start = clock.now();
        Some(Counter {
            limiter,
            tats,
            clock,
            start,
            max: limit.quota.max,
            max_keys,
        })
    }

    fn now(&self) -> u64 {
        self.clock.now().duration_since(self.start).as_u64()
    }

    /// Drops keys whose bucket is full again (their time is past): lossless.
    fn evict_idle(&self) -> usize {
        let now = self.now();
        let mut map = self.tats.lock();
        map.retain(|_, tat| *tat > now);
        map.len()
    }

    fn keys(&self) -> usize {
        self.tats.lock().len()
    }
}

/// A charge to make: which limit, whose bucket, how much.
#[derive(Debug, Clone)]
pub struct Charge {
    pub limit: usize,
    pub key: String,
    pub cost: u64,
}

/// The counters of one compiled policy, by limit index.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    by_limit: Vec<Option<Arc<Counter>>>,
    by_key: HashMap<CounterKey, Arc<Counter>>,
    pointers: Vec<(String, String)>,
    /// Serializes charge transactions so an undo never races another charge.
    tx: Mutex<()>,
}

impl Counters {
    /// Counters for `policy`, reusing the state of `previous` for every limit whose name,
    /// quota and scope are unchanged.
    pub(crate) fn new(
        policy: &CompiledPolicy,
        previous: Option<&Counters>,
        max_keys: usize,
    ) -> Counters {
        let mut by_key: HashMap<CounterKey, Arc<Counter>> = HashMap::new();
        let mut by_limit = Vec::with_capacity(policy.limits().len());
        let mut pointers = Vec::with_capacity(policy.limits().len());
        for limit in policy.limits() {
            let key = CounterKey {
                name: limit.counter_name.clone(),
                max: limit.quota.max,
                window_secs: limit.quota.window_secs,
                scope: limit.scope,
            };
            let counter = match by_key.get(&key) {
                Some(c) => Some(c.clone()),
                None => previous
                    .and_then(|p| p.by_key.get(&key).cloned())
                    .or_else(|| Counter::new(limit, max_keys).map(Arc::new)),
            };
            if let Some(c) = &counter {
                by_key.insert(key, c.clone());
            }
            by_limit.push(counter);
            pointers.push((limit.pointer.clone(), limit.counter_name.clone()));
        }
        Counters {
            by_limit,
            by_key,
            pointers,
            tx: Mutex::new(()),
        }
    }

    /// Charges every entry or none. The first refusing limit is returned.
    pub(crate) fn charge(&self, charges: &[Charge]) -> Result<(), Limited> {
        let _tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let mut undo: Vec<(&Counter, &str, Option<u64>)> = Vec::with_capacity(charges.len());
        for c in charges {
            if c.cost == 0 {
                continue;
            }
            let (pointer, name) = self.pointers.get(c.limit).cloned().unwrap_or_default();
            let refuse = |l: Limited, undo: &mut Vec<(&Counter, &str, Option<u64>)>| {
                for (counter, key, old) in undo.drain(..).rev() {
                    let mut map = counter.tats.lock();
                    match old {
                        Some(t) => map.insert(key.to_owned(), t),
                        None => map.remove(key),
                    };
                }
                Err(l)
            };
            // A limit that could not be built (a quota governor cannot represent) fails closed.
            let Some(counter) = self.by_limit.get(c.limit).and_then(Option::as_deref) else {
                return refuse(
                    Limited::TooManyKeys {
                        limit: pointer,
                        counter: name,
                    },
                    &mut undo,
                );
            };
            let old = counter.tats.lock().get(&c.key).copied();
            if old.is_none()
                && counter.keys() >= counter.max_keys
                && counter.evict_idle() >= counter.max_keys
            {
                return refuse(
                    Limited::TooManyKeys {
                        limit: pointer,
                        counter: name,
                    },
                    &mut undo,
                );
            }
            // A cost beyond u32 or beyond the whole quota can never be charged.
            let n = u32::try_from(c.cost).ok().and_then(NonZeroU32::new);
            match n.map(|n| counter.limiter.check_key_n(&c.key, n)) {
                Some(Ok(Ok(()))) => undo.push((counter, c.key.as_str(), old)),
                Some(Ok(Err(not_until))) => {
                    let wait = not_until.wait_time_from(counter.clock.now());
                    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                    return refuse(
                        Limited::Exhausted {
                            limit: pointer,
                            counter: name,
                            retry_after_secs: secs.max(1),
                        },
                        &mut undo,
                    );
                }
                None | Some(Err(_)) => {
                    return refuse(
                        Limited::TooCostly {
                            limit: pointer,
                            counter: name,
                            cost: c.cost,
                            max: counter.max,
                        },
                        &mut undo,
                    );
                }
            }
        }
        Ok(())
    }

    /// Live keys across all counters (for metrics).
    pub(crate) fn live_keys(&self) -> usize {
        self.by_key.values().map(|c| c.keys()).sum()
    }
}
