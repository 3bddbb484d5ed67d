//! The Redis store and approval queue against a real `redis-server` each test starts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../tests/redis_server.rs"]
mod redis_server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_server::RedisServer;
use serde_json::json;
use warden_policy::Scope;
use warden_tower::limit::{Charge, Charged, CounterSpec, CounterStore, MemoryStore, Refusal};
use warden_tower::redis::{FailMode, Redis, RedisApprovals, RedisConfig, RedisStore};
use warden_tower::{Answer, ApprovalDesk, ApprovalRequest, Approver};

fn store(server: &RedisServer, prefix: &str) -> RedisStore {
    RedisStore::new(Redis::connect(RedisConfig::new(server.url()).prefix(prefix)).unwrap())
}

fn spec(name: &str, max: u64, window: u64) -> Arc<CounterSpec> {
    Arc::new(CounterSpec::new(name, max, window, Scope::Grant))
}

fn charge(spec: &Arc<CounterSpec>, key: &str, cost: u64) -> Charge {
    Charge {
        limit: 0,
        counter: spec.clone(),
        key: key.into(),
        cost,
    }
}

async fn passes(store: &dyn CounterStore, charges: &[Charge], times: usize) -> usize {
    let mut n = 0;
    for _ in 0..times {
        if store.charge(charges).await.is_ok() {
            n += 1;
        }
    }
    n
}

#[tokio::test]
async fn burst_of_max_then_retry_after_rounded_up() {
    let server = RedisServer::start();
    let s = store(&server, "t:");
    let calls = spec("calls", 5, 60);
    assert_eq!(passes(&s, &[charge(&calls, "alice", 1)], 8).await, 5);
    // One unit comes back every 12 s.
    assert_eq!(
        s.charge(&[charge(&calls, "alice", 1)]).await.unwrap_err(),
        Refusal::Exhausted {
            at: 0,
            retry_after_secs: 12
        }
    );
    // Another key has its own bucket.
    assert_eq!(passes(&s, &[charge(&calls, "bob", 1)], 1).await, 1);
}

#[tokio::test]
async fn the_same_sequence_gets_the_same_answers_as_in_memory() {
    let server = RedisServer::start();
    let redis = store(&server, "same:");
    let memory = MemoryStore::new(100);
    let a = spec("a", 7, 3600);
    let b = spec("b", 3, 60);
    let sequence: Vec<Vec<Charge>> = vec![
        vec![charge(&a, "k", 2)],
        vec![charge(&a, "k", 3), charge(&b, "k", 1)],
        vec![charge(&b, "k", 2)],
        vec![charge(&a, "k", 1), charge(&b, "k", 1)],
        vec![charge(&a, "k", 2)],
        vec![charge(&a, "k", 1)],
        vec![charge(&b, "j", 3)],
        vec![charge(&b, "j", 4)],
    ];
    for (i, charges) in sequence.iter().enumerate() {
        let r = redis.charge(charges).await.map(|_| ());
        let m = memory.charge(charges).await.map(|_| ());
        assert_eq!(r, m, "step {i}");
    }
}

#[tokio::test]
async fn buckets_refill_evenly_over_the_window() {
    let server = RedisServer::start();
    let s = store(&server, "refill:");
    // 10 per second: one unit every 100 ms.
    let fast = spec("fast", 10, 1);
    assert_eq!(passes(&s, &[charge(&fast, "k", 1)], 12).await, 10);
    tokio::time::sleep(Duration::from_millis(250)).await;
    // Two units came back (a third if the sleep overran by 50 ms).
    let n = passes(&s, &[charge(&fast, "k", 1)], 5).await;
    assert!((2..=3).contains(&n), "{n} passed after 250 ms");
}

#[tokio::test]
async fn weighted_cost_and_a_cost_over_the_quota() {
    let server = RedisServer::start();
    let s = store(&server, "cost:");
    let spend = spec("spend", 10, 3600);
    assert_eq!(passes(&s, &[charge(&spend, "k", 4)], 2).await, 2);
    assert!(matches!(
        s.charge(&[charge(&spend, "k", 4)]).await,
        Err(Refusal::Exhausted { at: 0, .. })
    ));
    assert_eq!(passes(&s, &[charge(&spend, "k", 2)], 1).await, 1);
    assert_eq!(
        s.charge(&[charge(&spend, "other", 11)]).await.unwrap_err(),
        Refusal::TooCostly { at: 0 }
    );
}

#[tokio::test]
async fn all_or_nothing_across_two_counters_in_one_round_trip() {
    let server = RedisServer::start();
    let s = store(&server, "tx:");
    let a = spec("a", 5, 60);
    let b = spec("b", 1, 60);
    assert_eq!(passes(&s, &[charge(&b, "k", 1)], 1).await, 1);
    assert_eq!(
        s.charge(&[charge(&a, "k", 1), charge(&b, "k", 1)])
            .await
            .unwrap_err(),
        Refusal::Exhausted {
            at: 1,
            retry_after_secs: 60
        }
    );
    // `a` was not charged by the refused call.
    assert_eq!(passes(&s, &[charge(&a, "k", 1)], 6).await, 5);
    // The same bucket twice in one call counts twice.
    let c = spec("c", 3, 60);
    assert_eq!(
        passes(&s, &[charge(&c, "k", 2), charge(&c, "k", 2)], 1).await,
        0
    );
    assert_eq!(
        passes(&s, &[charge(&c, "k", 1), charge(&c, "k", 2)], 1).await,
        1
    );
}

#[tokio::test]
async fn keys_are_namespaced_and_expire_when_full_again() {
    let server = RedisServer::start();
    let s = store(&server, "ns:");
    let calls = spec("calls", 30, 60);
    assert_eq!(
        s.charge(&[charge(&calls, "alice", 1)]).await,
        Ok(Charged::All)
    );
    let key = s.bucket_key(&calls, "alice");
    assert!(key.starts_with("ns:calls:"), "{key}");
    assert!(key.ends_with(":alice"), "{key}");
    let ttl: i64 = server
        .command(&["PTTL", &key])
        .trim_start_matches(':')
        .parse()
        .unwrap();
    // One unit taken: full again after one emission interval (2 s), never past the window.
    assert!(ttl > 0 && ttl <= 2_000, "PTTL {ttl}");
    // A quota change is a fresh bucket under another key.
    let changed = spec("calls", 31, 60);
    assert_ne!(s.bucket_key(&changed, "alice"), key);
    // Another prefix shares nothing.
    let other = store(&server, "other:");
    assert_eq!(
        passes(&other, &[charge(&spec("one", 1, 60), "k", 1)], 1).await,
        1
    );
    assert_eq!(
        passes(&s, &[charge(&spec("one", 1, 60), "k", 1)], 1).await,
        1
    );
}

#[tokio::test]
async fn what_a_key_has_used_reads_the_same_as_in_memory() {
    let server = RedisServer::start();
    let s = store(&server, "used:");
    let memory = warden_tower::MemoryStore::new(100);
    let a = spec("a", 10, 3600);
    for (cost, used) in [(0, 0), (3, 3), (4, 7)] {
        if cost > 0 {
            let c = [charge(&a, "k", cost)];
            assert_eq!(s.charge(&c).await, Ok(Charged::All));
            assert_eq!(memory.charge(&c).await, Ok(Charged::All));
        }
        assert_eq!(s.used(&a, "k").await, Some(used), "redis after {used}");
        assert_eq!(memory.used(&a, "k"), Some(used), "memory after {used}");
    }
    assert_eq!(s.used(&a, "nobody").await, Some(0));
}

#[tokio::test]
async fn a_refund_gives_back_every_counter_of_the_charge() {
    let server = RedisServer::start();
    let s = store(&server, "refund:");
    let a = spec("a", 2, 3600);
    let b = spec("b", 3, 3600);
    let taken = [charge(&a, "k", 2), charge(&b, "k", 3)];
    assert_eq!(s.charge(&taken).await, Ok(Charged::All));
    assert_eq!(passes(&s, &[charge(&a, "k", 1)], 1).await, 0);
    s.refund(&taken).await;
    assert_eq!(
        passes(&s, &[charge(&a, "k", 2), charge(&b, "k", 3)], 1).await,
        1
    );
}

#[tokio::test]
async fn redis_down_fails_closed_or_open_and_recovers_without_restart() {
    let mut server = RedisServer::start();
    let closed = store(&server, "down:");
    let open = RedisStore::new(
        Redis::connect(
            RedisConfig::new(server.url())
                .prefix("down:")
                .fail(FailMode::Open),
        )
        .unwrap(),
    );
    let calls = spec("calls", 100, 60);
    assert_eq!(passes(&closed, &[charge(&calls, "k", 1)], 1).await, 1);
    assert!(closed.health().ok);

    server.stop();
    let started = Instant::now();
    let refused = closed.charge(&[charge(&calls, "k", 1)]).await.unwrap_err();
    assert!(
        matches!(refused, Refusal::Unavailable { .. }),
        "{refused:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the refusal took {:?}; the deadline is 250 ms",
        started.elapsed()
    );
    assert!(!closed.health().ok);
    assert_eq!(
        open.charge(&[charge(&calls, "k", 1)]).await,
        Ok(Charged::Nothing),
        "fail open forwards, charging nothing"
    );

    server.resume();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if closed.charge(&[charge(&calls, "k", 1)]).await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still refused 10 s after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(closed.health().ok);
}

fn request(args: serde_json::Value) -> ApprovalRequest {
    ApprovalRequest::new(
        Some("alice"),
        "pay",
        Some(&args),
        "/tools/pay",
        Duration::from_secs(30),
    )
}

#[tokio::test]
async fn an_approval_asked_on_one_replica_is_answered_on_another() {
    let server = RedisServer::start();
    let a = RedisApprovals::new(Redis::connect(RedisConfig::new(server.url())).unwrap());
    let b = RedisApprovals::new(Redis::connect(RedisConfig::new(server.url())).unwrap());

    let first = request(json!({"amount": 5}));
    let second = request(json!({"amount": 500}));
    let (first_id, second_id) = (first.id.clone(), second.id.clone());
    let waiting_first = tokio::spawn(a.ask(first));
    let waiting_second = tokio::spawn(a.ask(second));

    let deadline = Instant::now() + Duration::from_secs(10);
    let pending = loop {
        let p = b.pending().await.unwrap();
        if p.len() == 2 {
            break p;
        }
        assert!(Instant::now() < deadline, "B sees {p:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(pending[0].tool, "pay");

    assert!(b.answer(&first_id, Answer::Approved).await.unwrap());
    let answer = tokio::time::timeout(Duration::from_secs(5), waiting_first)
        .await
        .expect("A's call released within 5 s")
        .unwrap();
    assert_eq!(answer, Answer::Approved);
    // Answered once: the same answer again finds nothing, and the other call still waits.
    assert!(!b.answer(&first_id, Answer::Approved).await.unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting_second.is_finished());
    let left = b.pending().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, second_id);

    assert!(
        b.answer(&second_id, Answer::Denied(Some("too much".into())))
            .await
            .unwrap()
    );
    assert_eq!(
        waiting_second.await.unwrap(),
        Answer::Denied(Some("too much".into()))
    );
    assert!(a.pending().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_abandoned_approval_leaves_the_queue() {
    let server = RedisServer::start();
    let a = RedisApprovals::new(Redis::connect(RedisConfig::new(server.url())).unwrap());
    let r = request(json!({"amount": 1}));
    let id = r.id.clone();
    // The caller gives up after 300 ms (as the layer's timeout does).
    let _ = tokio::time::timeout(Duration::from_millis(300), a.ask(r)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !a.pending().await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "abandoned request still listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!a.answer(&id, Answer::Approved).await.unwrap());
}

#[tokio::test]
async fn without_redis_nobody_can_be_asked_so_the_call_is_refused() {
    let mut server = RedisServer::start();
    let url = server.url();
    server.stop();
    let a = RedisApprovals::new(Redis::connect(RedisConfig::new(url)).unwrap());
    let answer = tokio::time::timeout(Duration::from_secs(5), a.ask(request(json!({}))))
        .await
        .unwrap();
    assert!(
        matches!(&answer, Answer::Denied(Some(why)) if why.contains("unavailable")),
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_redis_slower_than_the_deadline_fails_closed_in_time() {
    let server = RedisServer::start();
    let s = store(&server, "slow:");
    let calls = spec("calls", 100, 60);
    assert_eq!(passes(&s, &[charge(&calls, "k", 1)], 1).await, 1);
    // Redis holds every client's commands for 2 s: alive, but too slow.
    assert_eq!(server.command(&["CLIENT", "PAUSE", "2000", "ALL"]), "+OK");
    let started = Instant::now();
    let refused = s.charge(&[charge(&calls, "k", 1)]).await.unwrap_err();
    let took = started.elapsed();
    match &refused {
        Refusal::Unavailable { reason } => assert!(reason.contains("250 ms"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(
        took < Duration::from_millis(1500),
        "refused after {took:?}, not at the 250 ms deadline"
    );
    // The pause ends: the same store answers again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.charge(&[charge(&calls, "k", 1)]).await.is_err() {
        assert!(Instant::now() < deadline, "still refused after the pause");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
