//! The in-memory store: governor's GCRA in this process, the embedded default.
//!
//! Each counter is one governor `RateLimiter` whose state store holds a theoretical-arrival
//! time per scope key. Governor does the arithmetic; the store is ours so that a call with
//! several limits can be charged as one transaction (the previous state of each key is kept
//! and put back if a later limit refuses), and so that keys stay bounded: a key whose bucket
//! is full again is indistinguishable from a new key and is dropped, and past `max_keys` live
//! keys a new key is refused rather than let memory grow.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::{Quota, RateLimiter};

use super::{
    Charge, Charged, CounterSnapshot, CounterSpec, CounterStore, KeyRoom, Refusal, StoreFuture,
    StoreHealth,
};

/// The state of one GCRA bucket per key, shared by every limit that names the counter.
#[derive(Debug)]
struct Tats {
    map: Mutex<HashMap<String, u64>>,
    /// No bucket is full again before this time (the earliest key's): a sweep for idle keys
    /// before it would find none. Without it, a counter at its key cap swept all its keys
    /// for every new key refused — a flood of invented session ids cost O(keys) per call.
    /// Lowered under the map's lock by every write, set by each sweep.
    next_idle: AtomicU64,
}

impl Default for Tats {
    fn default() -> Self {
        Tats {
            map: Mutex::default(),
            next_idle: AtomicU64::new(u64::MAX),
        }
    }
}

impl Tats {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, u64>> {
        // A poisoned map still holds valid integers; keep using it.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets a key's time; the caller holds the map's lock. A key already there is updated
    /// in place: copying the key for every charge was an allocation per call.
    fn put(&self, map: &mut HashMap<String, u64>, key: &str, tat: u64) {
        match map.get_mut(key) {
            Some(t) => *t = tat,
            None => {
                map.insert(key.to_owned(), tat);
            }
        }
        self.next_idle.fetch_min(tat, Ordering::Relaxed);
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
        self.0.put(&mut map, key, new.as_u64());
        Ok(out)
    }
}

type Limiter<C> = RateLimiter<String, Store, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// One named counter with one quota and scope.
struct Counter<C: Clock> {
    limiter: Limiter<C>,
    tats: Arc<Tats>,
    clock: C,
    /// The limiter's zero: governor stores times relative to its creation.
    start: C::Instant,
    /// Nanoseconds per unit: what a refund takes off a key's time.
    emission: u64,
    max_keys: usize,
}

impl<C: Clock> std::fmt::Debug for Counter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counter")
            .field("keys", &self.tats.lock().len())
            .finish()
    }
}

impl<C: Clock + Clone> Counter<C> {
    fn new(spec: &CounterSpec, max_keys: usize, clock: &C) -> Option<Counter<C>> {
        let max = u32::try_from(spec.max).ok().and_then(NonZeroU32::new)?;
        let window = Duration::from_secs(spec.window_secs);
        let quota = Quota::with_period(window / max.get())?.allow_burst(max);
        let clock = clock.clone();
        let tats = Arc::new(Tats::default());
        let limiter = RateLimiter::new(quota, Store(tats.clone()), clock.clone());
        let start = clock.now();
        Some(Counter {
            limiter,
            tats,
            clock,
            start,
            emission: spec.emission_nanos(),
            max_keys,
        })
    }

    fn now(&self) -> u64 {
        self.clock.now().duration_since(self.start).as_u64()
    }

    /// Drops keys whose bucket is full again (their time is past): lossless. Sweeps only
    /// once some key can have become idle, so a flood of new keys at the cap costs O(1) each.
    fn evict_idle(&self) -> usize {
        let now = self.now();
        let mut map = self.tats.lock();
        if now < self.tats.next_idle.load(Ordering::Relaxed) {
            return map.len();
        }
        map.retain(|_, tat| *tat > now);
        let next = map.values().copied().min().unwrap_or(u64::MAX);
        self.tats.next_idle.store(next, Ordering::Relaxed);
        map.len()
    }

    fn keys(&self) -> usize {
        self.tats.lock().len()
    }

    /// The keys whose buckets are emptiest: a key's time ahead of now, in units, is what it
    /// has used of the burst.
    fn busiest(&self, spec: &CounterSpec, top: usize) -> CounterSnapshot {
        let now = self.now();
        let emission = self.emission.max(1);
        let mut keys: Vec<(String, u64)> = self
            .tats
            .lock()
            .iter()
            .filter(|(_, tat)| **tat > now)
            .map(|(k, tat)| (k.clone(), tat - now))
            .collect();
        let live = keys.len();
        keys.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        keys.truncate(top);
        CounterSnapshot {
            counter: spec.name.clone(),
            max: spec.max,
            window_secs: spec.window_secs,
            keys: live,
            busiest: keys
                .into_iter()
                .map(|(key, ahead)| KeyRoom {
                    key,
                    remaining: spec.max.saturating_sub(ahead.div_ceil(emission)),
                    full_in_secs: Duration::from_nanos(ahead).as_secs_f64().ceil() as u64,
                })
                .collect(),
        }
    }
}

/// Counters in this process, by spec; the default store. The clock is the real one except
/// in `warden test`, which runs policies on a virtual clock (governor's fake clock) so that
/// refills can be tested without waiting.
#[derive(Debug)]
pub struct MemoryStore<C: Clock = DefaultClock> {
    /// By spec (a spec hashes as its precomputed fingerprint: one u64 per lookup).
    counters: RwLock<HashMap<CounterSpec, Option<Arc<Counter<C>>>>>,
    /// Serializes charge transactions so an undo never races another charge.
    tx: Mutex<()>,
    max_keys: usize,
    clock: C,
}

/// A key's previous time, kept to undo a charge when a later one refuses.
type Undo<'a, C> = Vec<(Arc<Counter<C>>, &'a str, Option<u64>)>;

impl MemoryStore {
    /// A store that tracks at most `max_keys` live keys per counter.
    pub fn new(max_keys: usize) -> Self {
        MemoryStore::with_clock(max_keys, DefaultClock::default())
    }
}

impl<C: Clock + Clone> MemoryStore<C> {
    /// A store on another clock (a `governor::clock::FakeRelativeClock`, say).
    pub fn with_clock(max_keys: usize, clock: C) -> Self {
        MemoryStore {
            counters: RwLock::new(HashMap::default()),
            tx: Mutex::new(()),
            max_keys: max_keys.max(1),
            clock,
        }
    }

    /// The counter of `spec`, made on first use. `None`: a quota governor cannot represent.
    fn counter(&self, spec: &CounterSpec) -> Option<Arc<Counter<C>>> {
        if let Some(c) = self
            .counters
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(spec)
        {
            return c.clone();
        }
        let mut map = self.counters.write().unwrap_or_else(|e| e.into_inner());
        map.entry(spec.clone())
            .or_insert_with(|| Counter::new(spec, self.max_keys, &self.clock).map(Arc::new))
            .clone()
    }

    /// What `key` has used of `spec`'s bucket: units not yet refilled (0 when full).
    pub fn used(&self, spec: &CounterSpec, key: &str) -> Option<u64> {
        let counter = self.counter(spec)?;
        let now = counter.now();
        let tat = counter.tats.lock().get(key).copied().unwrap_or(0);
        let ahead = tat.saturating_sub(now);
        Some(ahead.div_ceil(counter.emission.max(1)).min(spec.max))
    }

    /// Charges every entry or none, now.
    pub fn charge_now(&self, charges: &[Charge]) -> Result<Charged, Refusal> {
        let _tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let mut undo: Undo<'_, C> = Vec::with_capacity(charges.len());
        let refuse = |r: Refusal, undo: &mut Undo<'_, C>| {
            for (counter, key, old) in undo.drain(..).rev() {
                let mut map = counter.tats.lock();
                match old {
                    Some(t) => counter.tats.put(&mut map, key, t),
                    None => {
                        map.remove(key);
                    }
                }
            }
            Err(r)
        };
        for (at, c) in charges.iter().enumerate() {
            if c.cost == 0 {
                continue;
            }
            // A quota governor cannot represent fails closed.
            let Some(counter) = self.counter(&c.counter) else {
                return refuse(Refusal::TooManyKeys { at }, &mut undo);
            };
            let old = counter.tats.lock().get(&c.key).copied();
            if old.is_none()
                && counter.keys() >= counter.max_keys
                && counter.evict_idle() >= counter.max_keys
            {
                return refuse(Refusal::TooManyKeys { at }, &mut undo);
            }
            // A cost beyond u32 or beyond the whole quota can never be charged.
            let n = u32::try_from(c.cost).ok().and_then(NonZeroU32::new);
            match n.map(|n| counter.limiter.check_key_n(&c.key, n)) {
                Some(Ok(Ok(()))) => undo.push((counter, c.key.as_str(), old)),
                Some(Ok(Err(not_until))) => {
                    let wait = not_until.wait_time_from(counter.clock.now());
                    let wait = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
                    return refuse(
                        Refusal::Exhausted {
                            at,
                            retry_after_secs: super::retry_after_secs(wait),
                        },
                        &mut undo,
                    );
                }
                None | Some(Err(_)) => return refuse(Refusal::TooCostly { at }, &mut undo),
            }
        }
        Ok(Charged::All)
    }

    /// Gives `charges` back at once (a call that ran nothing).
    pub fn refund_now(&self, charges: &[Charge]) {
        let _tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        for c in charges.iter().filter(|c| c.cost > 0) {
            let Some(counter) = self.counter(&c.counter) else {
                continue;
            };
            let now = counter.now();
            let mut map = counter.tats.lock();
            if let Some(tat) = map.get(&c.key).copied() {
                let back = tat.saturating_sub(c.cost.saturating_mul(counter.emission));
                if back <= now {
                    map.remove(&c.key);
                } else {
                    counter.tats.put(&mut map, &c.key, back);
                }
            }
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new(crate::PolicyLayer::DEFAULT_MAX_KEYS)
    }
}

impl<C> CounterStore for MemoryStore<C>
where
    C: Clock + Clone + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    fn charge<'a>(&'a self, charges: &'a [Charge]) -> StoreFuture<'a, Result<Charged, Refusal>> {
        Box::pin(std::future::ready(MemoryStore::charge_now(self, charges)))
    }

    fn used_now(&self, spec: &CounterSpec, key: &str) -> Option<Option<u64>> {
        Some(self.used(spec, key))
    }

    fn charge_now(&self, charges: &[Charge]) -> Option<Result<Charged, Refusal>> {
        Some(MemoryStore::charge_now(self, charges))
    }

    fn refund<'a>(&'a self, charges: &'a [Charge]) -> StoreFuture<'a, ()> {
        self.refund_now(charges);
        Box::pin(std::future::ready(()))
    }

    fn retain(&self, live: &[Arc<CounterSpec>]) {
        let live: std::collections::HashSet<&CounterSpec> = live.iter().map(|s| &**s).collect();
        self.counters
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|spec, _| live.contains(spec));
    }

    fn live_keys(&self) -> Option<usize> {
        let map = self.counters.read().unwrap_or_else(|e| e.into_inner());
        Some(map.values().flatten().map(|c| c.keys()).sum())
    }

    fn health(&self) -> StoreHealth {
        StoreHealth {
            store: "memory",
            ok: true,
            detail: None,
        }
    }

    fn snapshot(&self, top: usize) -> Vec<CounterSnapshot> {
        let counters = self.counters.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<CounterSnapshot> = counters
            .iter()
            .filter_map(|(spec, c)| c.as_ref().map(|c| c.busiest(spec, top)))
            .collect();
        out.sort_by(|a, b| a.counter.cmp(&b.counter));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_policy::Scope;

    fn charge(spec: &Arc<CounterSpec>, key: &str, cost: u64) -> Charge {
        Charge {
            limit: 0,
            counter: spec.clone(),
            key: key.into(),
            cost,
        }
    }

    #[test]
    fn a_snapshot_shows_the_room_left_busiest_first() {
        let store = MemoryStore::new(10);
        let a = Arc::new(CounterSpec::new("writes", 5, 60, Scope::Grant));
        let _ = store.charge_now(&[charge(&a, "alice", 3)]).unwrap();
        let _ = store.charge_now(&[charge(&a, "bob", 1)]).unwrap();
        let snap = store.snapshot(10);
        assert_eq!(snap.len(), 1);
        assert_eq!(
            (snap[0].counter.as_str(), snap[0].max, snap[0].keys),
            ("writes", 5, 2)
        );
        let rooms: Vec<(&str, u64)> = snap[0]
            .busiest
            .iter()
            .map(|k| (k.key.as_str(), k.remaining))
            .collect();
        assert_eq!(rooms, [("alice", 2), ("bob", 4)]);
        // Three units of a 5-per-minute bucket refill in 36 s.
        assert!((35..=36).contains(&snap[0].busiest[0].full_in_secs));
        assert_eq!(store.snapshot(1)[0].busiest.len(), 1);
    }

    #[test]
    fn all_or_nothing_across_two_counters() {
        let store = MemoryStore::new(10);
        let a = Arc::new(CounterSpec::new("a", 5, 60, Scope::Grant));
        let b = Arc::new(CounterSpec::new("b", 1, 60, Scope::Grant));
        assert!(store.charge_now(&[charge(&b, "k", 1)]).is_ok());
        let both = [charge(&a, "k", 1), charge(&b, "k", 1)];
        assert_eq!(
            store.charge_now(&both).unwrap_err(),
            Refusal::Exhausted {
                at: 1,
                retry_after_secs: 60
            }
        );
        // `a` was not charged by the refused call: five more fit.
        for _ in 0..5 {
            assert!(store.charge_now(&[charge(&a, "k", 1)]).is_ok());
        }
        assert!(store.charge_now(&[charge(&a, "k", 1)]).is_err());
    }

    #[test]
    fn a_refund_gives_the_quota_back() {
        let store = MemoryStore::new(10);
        let a = Arc::new(CounterSpec::new("a", 3, 60, Scope::Grant));
        let taken = [charge(&a, "k", 3)];
        assert_eq!(store.charge_now(&taken), Ok(Charged::All));
        assert!(store.charge_now(&[charge(&a, "k", 1)]).is_err());
        store.refund_now(&taken);
        assert!(store.charge_now(&[charge(&a, "k", 3)]).is_ok());
        assert_eq!(store.live_keys(), Some(1));
    }

    #[test]
    fn keys_are_bounded_and_retain_drops_old_counters() {
        let store = MemoryStore::new(2);
        let a = Arc::new(CounterSpec::new("a", 3, 60, Scope::Session));
        assert!(store.charge_now(&[charge(&a, "s1", 1)]).is_ok());
        assert!(store.charge_now(&[charge(&a, "s2", 1)]).is_ok());
        assert_eq!(
            store.charge_now(&[charge(&a, "s3", 1)]).unwrap_err(),
            Refusal::TooManyKeys { at: 0 }
        );
        store.retain(&[]);
        assert_eq!(store.live_keys(), Some(0));
    }

    /// At the cap, a new key sweeps for idle keys only once one can be idle, and a key
    /// written after a sweep still counts: it is dropped as soon as its bucket is full.
    #[test]
    fn at_the_cap_idle_keys_make_room_when_their_buckets_are_full_again() {
        let clock = governor::clock::FakeRelativeClock::default();
        let store = MemoryStore::with_clock(2, clock.clone());
        // 6 per minute: one call takes 10 s to refill.
        let a = Arc::new(CounterSpec::new("a", 6, 60, Scope::Session));
        assert!(store.charge_now(&[charge(&a, "heavy", 6)]).is_ok()); // full in 60 s
        assert!(store.charge_now(&[charge(&a, "light", 1)]).is_ok()); // full in 10 s
        assert!(store.charge_now(&[charge(&a, "new", 1)]).is_err());
        clock.advance(Duration::from_secs(5));
        assert!(
            store.charge_now(&[charge(&a, "new", 1)]).is_err(),
            "nothing idle yet"
        );
        clock.advance(Duration::from_secs(6));
        // `light` is full again: it makes room; `heavy` stays.
        assert!(store.charge_now(&[charge(&a, "new", 1)]).is_ok());
        assert_eq!(store.live_keys(), Some(2));
        // `new` was written after the last sweep, and is the next to be idle (in 10 s).
        assert!(store.charge_now(&[charge(&a, "newer", 1)]).is_err());
        clock.advance(Duration::from_secs(11));
        assert!(store.charge_now(&[charge(&a, "newer", 1)]).is_ok());
        // 22 s in, `heavy` has 2 units back, not 3: its state was kept.
        assert!(
            store.charge_now(&[charge(&a, "heavy", 3)]).is_err(),
            "heavy kept its state"
        );
        assert!(store.charge_now(&[charge(&a, "heavy", 2)]).is_ok());
    }
}
