//! The fleet's book (`proxy/src/shared/lua/`) against a real Redis (127.0.0.1:6379, as
//! the test command starts it), each test under a key prefix of its own: the rules that
//! keep credit exact when many nodes share it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use tokenroute_domain::config::{RedisConfig, RedisOutage};
use tokenroute_domain::secret::Secret;
use tokenroute_domain::{KeyLimits, NanoUsd};
use tokenroute_proxy::credit::Cap;
use tokenroute_proxy::shared::book::{Admitted, Hold, Refused, SharedBook, Source};
use tokenroute_proxy::shared::{Metrics, Shared};
use tokenroute_store::{RecordedUsage, Versioned};

fn book(hold_lease: Duration) -> Arc<SharedBook> {
    let config = RedisConfig {
        nodes: vec![Secret::new("redis://127.0.0.1:6379".to_string())],
        cluster: false,
        on_outage: RedisOutage::Local,
        timeout: Duration::from_secs(2),
        hold_lease,
        settled_lease: Duration::from_secs(60),
        key_prefix: format!("t{}", uuid::Uuid::new_v4().simple()),
    };
    let metrics = Metrics::new(&prometheus::Registry::new()).unwrap();
    SharedBook::new(Shared::new(config, metrics).unwrap())
}

fn hold(request: &str) -> Hold {
    Hold {
        account_id: "acct".into(),
        key_id: "key".into(),
        request_id: request.into(),
    }
}

fn balance(nanos: i64, version: i64) -> Versioned {
    Versioned {
        balance: NanoUsd(nanos),
        version,
    }
}

/// The store as the book sees it: a balance of 100 (version 1); the key spent 5 today,
/// 20 this month, 70 in all.
struct Stored;

#[async_trait::async_trait]
impl Source for Stored {
    async fn balance(&self, _: &str) -> Option<Versioned> {
        Some(balance(100, 1))
    }
    async fn key_spend(&self, _: &str, _: i64, _: i64) -> Option<[NanoUsd; 3]> {
        Some([NanoUsd(5), NanoUsd(20), NanoUsd(70)])
    }
}

async fn admit(
    book: &SharedBook,
    request: &str,
    worst: i64,
    limits: &KeyLimits,
) -> Result<Admitted, Refused> {
    book.admit(&hold(request), limits, NanoUsd(worst), 100, 10, &Stored)
        .await
}

#[tokio::test]
async fn holds_are_taken_against_the_balance_one_partial_at_a_time() {
    let book = book(Duration::from_secs(30));
    let none = KeyLimits::default();
    // The store's balance (100) is loaded on first use.
    assert_eq!(
        admit(&book, "r1", 60, &none).await.unwrap().amount,
        NanoUsd(60)
    );
    // 40 left: the next request may hold less than its worst case...
    assert_eq!(
        admit(&book, "r2", 60, &none).await.unwrap().amount,
        NanoUsd(40)
    );
    // ...but only one at a time, and nothing is left anyway.
    assert!(matches!(
        admit(&book, "r3", 1, &none).await,
        Err(Refused::Insufficient { .. })
    ));
    // r1 costs 10 in the end: 50 of its hold comes back.
    book.settle(&hold("r1"), NanoUsd(10), 5).await;
    assert!(
        matches!(
            admit(&book, "r4", 60, &none).await,
            Err(Refused::Insufficient { .. })
        ),
        "r2 still holds the one partial place"
    );
    assert_eq!(
        admit(&book, "r5", 50, &none).await.unwrap().amount,
        NanoUsd(50)
    );
    // r2 ends without output: its hold is released.
    book.release(&hold("r2")).await;
    book.release(&hold("r5")).await;
    // Held now: r1's settled 10. Available 90.
    assert_eq!(
        admit(&book, "r6", 95, &none).await.unwrap().amount,
        NanoUsd(90)
    );
}

#[tokio::test]
async fn the_store_s_balance_never_goes_back_to_an_older_version() {
    let book = book(Duration::from_secs(30));
    let none = KeyLimits::default();
    book.load("acct", balance(1_000, 7)).await.unwrap();
    // A slow node's older read does not replace the newer balance.
    book.load("acct", balance(5_000, 6)).await.unwrap();
    assert_eq!(
        admit(&book, "a", 2_000, &none).await.unwrap().amount,
        NanoUsd(1_000)
    );
    book.settle(&hold("a"), NanoUsd(300), 5).await;
    // The writer committed `a` (balance 700 at version 8): the hold goes, the balance
    // becomes the store's — the charge counted once.
    let event = tokenroute_domain::UsageEvent {
        request_id: "a".into(),
        account_id: "acct".into(),
        key_id: "key".into(),
        created_at_ms: 0,
        model: "m".into(),
        provider: "p".into(),
        upstream_model: "m".into(),
        input_tokens: 1,
        output_tokens: 1,
        cached_input_tokens: 0,
        cost: NanoUsd(300),
        status: 200,
        streamed: false,
        estimated: false,
        cancelled: false,
        duration_ms: 1,
        route: String::new(),
        attempts: 1,
    };
    let recorded = |nanos: i64, version: i64| RecordedUsage {
        inserted: 1,
        balances: [("acct".to_string(), NanoUsd(nanos))].into(),
        versions: [("acct".to_string(), version)].into(),
    };
    book.committed(std::slice::from_ref(&event), &recorded(700, 8))
        .await;
    assert_eq!(
        admit(&book, "b", 2_000, &none).await.unwrap().amount,
        NanoUsd(700)
    );
    book.release(&hold("b")).await;
    // A commit that arrives late with an older version still drops nothing twice and
    // keeps the newer balance.
    book.load("acct", balance(650, 9)).await.unwrap();
    book.committed(std::slice::from_ref(&event), &recorded(700, 8))
        .await;
    assert_eq!(
        admit(&book, "c", 2_000, &none).await.unwrap().amount,
        NanoUsd(650)
    );
}

#[tokio::test]
async fn a_dead_node_s_holds_lapse() {
    let book = book(Duration::from_millis(200));
    let none = KeyLimits::default();
    assert_eq!(
        admit(&book, "x", 100, &none).await.unwrap().amount,
        NanoUsd(100)
    );
    assert!(matches!(
        admit(&book, "y", 100, &none).await,
        Err(Refused::Insufficient { .. })
    ));
    // Nobody renews `x` (its node died): after the lease it no longer holds credit.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        admit(&book, "y", 100, &none).await.unwrap().amount,
        NanoUsd(100)
    );
}

#[tokio::test]
async fn the_windows_count_requests_and_tokens_across_callers() {
    let book = book(Duration::from_secs(30));
    let limits = KeyLimits {
        rpm: Some(2),
        tpm: Some(25),
        ..KeyLimits::default()
    };
    let first = admit(&book, "1", 1, &limits).await.unwrap();
    assert_eq!((first.window.requests, first.window.tokens), (1, 10));
    // 10 estimated tokens; 3 used in the end.
    book.settle(&hold("1"), NanoUsd(1), 3).await;
    let second = admit(&book, "2", 1, &limits).await.unwrap();
    assert_eq!((second.window.requests, second.window.tokens), (2, 13));
    match admit(&book, "3", 1, &limits).await {
        Err(Refused::Rate {
            what,
            limit,
            retry_after,
            window,
        }) => {
            assert_eq!((what, limit), ("requests per minute", 2));
            assert!(
                retry_after > Duration::from_secs(58) && retry_after <= Duration::from_secs(60)
            );
            assert_eq!(window.requests, 2);
        }
        other => panic!("{other:?}"),
    }
    let tokens_only = KeyLimits {
        tpm: Some(25),
        ..KeyLimits::default()
    };
    // 13 counted + 10 estimated = 23 ≤ 25; then 33 > 25.
    admit(&book, "4", 1, &tokens_only).await.unwrap();
    match admit(&book, "5", 1, &tokens_only).await {
        Err(Refused::Rate { what, .. }) => assert_eq!(what, "tokens per minute"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn spend_caps_are_counted_across_callers_from_the_store_s_spend() {
    let book = book(Duration::from_secs(30));
    // 5 spent today (from the store): 25 left of a daily cap of 30.
    let daily = KeyLimits {
        spend_per_day: Some(NanoUsd(30)),
        spend_total: Some(NanoUsd(1_000)),
        ..KeyLimits::default()
    };
    assert_eq!(
        admit(&book, "d1", 10, &daily).await.unwrap().amount,
        NanoUsd(10)
    );
    // 15 left: a request whose worst case is 20 holds 15, the key's one partial place.
    assert_eq!(
        admit(&book, "d2", 20, &daily).await.unwrap().amount,
        NanoUsd(15)
    );
    match admit(&book, "d3", 1, &daily).await {
        Err(Refused::Spend { cap, .. }) => assert_eq!(cap, Cap::Day),
        other => panic!("{other:?}"),
    }
    // d1 cost 4: 6 of its hold comes back; d2 ends unused.
    book.settle(&hold("d1"), NanoUsd(4), 1).await;
    book.release(&hold("d2")).await;
    // Spent today: 5 + 4; 21 left.
    assert_eq!(
        admit(&book, "d4", 50, &daily).await.unwrap().amount,
        NanoUsd(21)
    );
    book.release(&hold("d4")).await;
    // The total cap binds once it is the tightest: 70 + 4 spent of 80.
    let total = KeyLimits {
        spend_total: Some(NanoUsd(80)),
        ..KeyLimits::default()
    };
    assert_eq!(
        admit(&book, "t1", 50, &total).await.unwrap().amount,
        NanoUsd(6)
    );
    match admit(&book, "t2", 1, &total).await {
        Err(Refused::Spend { cap, .. }) => assert_eq!(cap, Cap::Total),
        other => panic!("{other:?}"),
    }
}
