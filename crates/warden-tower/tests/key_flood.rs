//! Clients inventing a session id per call cannot grow the gate's memory without bound:
//! 1,000,000 distinct session ids charged to a `per session` limit fill the counter up to
//! its cap (`max_keys_per_counter`, 100,000 by default), every charge past it is refused,
//! and the process's resident memory stays under a documented bound (docs/PERFORMANCE.md,
//! "Key floods"). The refusal's message, through the whole layer, is checked by
//! `keys_stay_bounded_when_clients_invent_them` in tests/layer.rs.
//!
//! The million go straight to the counter store, the layer's only per-key state: through
//! HTTP requests in a debug build the same run takes two minutes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use warden_tower::limit::{Charge, CounterSpec, CounterStore, MemoryStore, Refusal};

/// What this test holds the gate to: resident memory grown by a full counter of 100,000
/// keys and 900,000 refused charges.
const BOUND_MIB: u64 = 64;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn a_million_invented_session_ids_stay_within_the_key_cap_and_the_memory_bound() {
    // A day's window: no bucket refills (and is dropped) while the test runs.
    let spec = Arc::new(CounterSpec::new(
        "t_rate",
        5,
        86_400,
        warden_policy::Scope::Session,
    ));
    let store = MemoryStore::new(warden_tower::PolicyLayer::DEFAULT_MAX_KEYS);
    let before = rss_kib();
    let (mut allowed, mut refused, mut first_refused) = (0u64, 0u64, None);
    let mut charge = [Charge {
        limit: 0,
        counter: spec,
        key: String::new(),
        cost: 1,
    }];
    for i in 0..1_000_000u64 {
        charge[0].key = format!("session-{i}");
        match CounterStore::charge_now(&store, &charge).expect("the memory store answers at once") {
            Ok(_) => allowed += 1,
            Err(Refusal::TooManyKeys { at: 0 }) => {
                refused += 1;
                first_refused.get_or_insert(i);
            }
            Err(other) => panic!("call {i}: {other:?}"),
        }
    }
    let grown_kib = rss_kib().saturating_sub(before);
    eprintln!(
        "1,000,000 session ids: {allowed} charged, {refused} refused from id {first_refused:?}; \
         {:?} keys live; resident memory grew {grown_kib} KiB (~{} bytes per tracked key)",
        CounterStore::live_keys(&store),
        grown_kib * 1024 / 100_000
    );
    assert_eq!(
        CounterStore::live_keys(&store),
        Some(100_000),
        "the counter holds exactly its cap"
    );
    assert_eq!(
        (allowed, refused, first_refused),
        (100_000, 900_000, Some(100_000))
    );
    assert!(
        grown_kib < BOUND_MIB * 1024,
        "resident memory grew {grown_kib} KiB, over the {BOUND_MIB} MiB bound"
    );
}
