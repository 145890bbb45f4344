//! Streams delivered as they are produced, clients that walk away mid-stream, and
//! balances that stay exact under concurrent requests — on both stores.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokenroute_domain::NanoUsd;
use tokenroute_tests::{Backend, FakeOpenAi, Gateway, Reply};

const MODEL: &str = "openai/gpt-4o-mini";

fn request(gw: &Gateway, key: &str, body: &Value) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(body)
}

/// Events spaced 300 ms apart reach the client one by one: nothing buffers the stream.
async fn streams_are_forwarded_event_by_event(backend: Backend) {
    let fake = FakeOpenAi::start().await;
    let gw = Gateway::start(backend, &fake).await;
    let (key, account, _) = gw.key_with_credits("sam@example.com", "1").await;
    fake.reply(Reply::Spaced {
        events: 5,
        gap: Duration::from_millis(300),
    });
    let body =
        json!({"model": MODEL, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let resp = request(&gw, &key, &body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut chunks = resp.bytes_stream();
    let first = String::from_utf8(chunks.next().await.unwrap().unwrap().to_vec()).unwrap();
    assert!(first.contains("w0"), "{first}");
    assert!(
        !first.contains("w4"),
        "the first event arrived alone, before the provider sent the last: {first}"
    );
    let mut rest = String::new();
    while let Some(chunk) = chunks.next().await {
        rest.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(
        rest.contains("w4") && rest.ends_with("data: [DONE]\n\n"),
        "{rest}"
    );
    let rows = gw.wait_usage(&account, 1).await;
    assert_eq!((rows[0].input_tokens, rows[0].output_tokens), (10, 5));
    assert!(!rows[0].estimated);
}

/// A client that disconnects mid-stream still pays for what the provider produced.
async fn a_client_that_disconnects_mid_stream_is_billed(backend: Backend) {
    let fake = FakeOpenAi::start().await;
    let gw = Gateway::start(backend, &fake).await;
    let (key, account, _) = gw.key_with_credits("tom@example.com", "1").await;
    fake.reply(Reply::Spaced {
        events: 100,
        gap: Duration::from_millis(20),
    });
    let body =
        json!({"model": MODEL, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let resp = request(&gw, &key, &body).send().await.unwrap();
    let mut chunks = resp.bytes_stream();
    let first = chunks.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(chunks); // hang up

    let rows = gw.wait_usage(&account, 1).await;
    let row = &rows[0];
    assert!(
        row.estimated,
        "the provider never reported usage to us: a marked estimate"
    );
    assert!(row.cancelled, "the client went away");
    assert!(row.output_tokens > 0 && row.cost.is_positive(), "{row:?}");
    let balance = gw.store.balance(&account).await.unwrap();
    assert_eq!(balance, NanoUsd(1_000_000_000) - row.cost);
}

/// A provider that ends its stream early but cleanly — no usage chunk, no `[DONE]` —
/// still gets the request billed: a marked estimate of what it produced, never zero.
async fn a_stream_missing_its_final_events_is_billed_as_a_marked_estimate(backend: Backend) {
    let fake = FakeOpenAi::start().await;
    let gw = Gateway::start(backend, &fake).await;
    let (key, account, _) = gw.key_with_credits("vic@example.com", "1").await;
    fake.reply(Reply::Truncated { after_events: 3 });
    let body =
        json!({"model": MODEL, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let resp = request(&gw, &key, &body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("The capital"), "{text}");
    assert!(
        !text.contains("[DONE]"),
        "TokenRoute does not invent an ending: {}",
        &text[text.len().saturating_sub(400)..]
    );
    let rows = gw.wait_usage(&account, 1).await;
    assert!(rows[0].estimated && !rows[0].cancelled);
    assert!(
        rows[0].input_tokens > 0 && rows[0].output_tokens > 0,
        "{:?}",
        rows[0]
    );
    assert_eq!(
        rows[0].cost,
        gw.price(MODEL)
            .cost(rows[0].input_tokens as u64, rows[0].output_tokens as u64)
    );
}

/// 200 requests at once against a balance that covers 50 of them:
/// every answered request is charged exactly once, refused ones not at all, and the
/// balance goes below zero by at most one request's excess over its reservation.
async fn concurrent_requests_cannot_overspend(backend: Backend) {
    let fake = FakeOpenAi::start().await;
    let gw = Gateway::start(backend, &fake).await;
    // Each answer costs 24×0.15 + 8×0.60 = 8,400 nano-USD; $0.00042 covers 50 of them.
    let (key, account, _) = gw.key_with_credits("uma@example.com", "0.00042").await;
    let body =
        json!({"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let statuses: Vec<u16> = futures_util::stream::iter(0..200)
        .map(|_| {
            let req = request(&gw, &key, &body);
            async move { req.send().await.unwrap().status().as_u16() }
        })
        .buffer_unordered(200)
        .collect()
        .await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 402).count();
    assert_eq!(ok + refused, 200, "{statuses:?}");
    assert!(ok > 0 && refused > 0, "ok {ok}, refused {refused}");
    assert!(
        ok <= 51,
        "no more answers than the balance covers, plus one: {ok}"
    );

    let rows = gw.wait_usage(&account, 200).await;
    let charged: Vec<_> = rows.iter().filter(|r| r.cost.is_positive()).collect();
    assert_eq!(charged.len(), ok);
    let per_request = gw.price(MODEL).cost(24, 8);
    assert!(charged
        .iter()
        .all(|r| r.cost == per_request && r.status == 200));
    let ledger = gw.store.ledger(&account, 1000).await.unwrap();
    let debited: i64 = ledger
        .iter()
        .filter(|e| e.kind == "usage")
        .map(|e| e.amount.nanos())
        .sum();
    assert_eq!(
        debited,
        -(per_request.nanos() * ok as i64),
        "usage and ledger reconcile to the unit"
    );
    let balance = gw.store.balance(&account).await.unwrap();
    assert_eq!(
        balance,
        NanoUsd(420_000) - NanoUsd(per_request.nanos() * ok as i64)
    );
    assert!(
        balance > -per_request,
        "overspend bounded by one request: {balance}"
    );
    let report = gw.store.verify_ledger().await.unwrap();
    assert!(
        report.discrepancies.is_empty(),
        "ledger verifies: {:?}",
        report.discrepancies
    );
}

tokenroute_tests::on_both_stores!(
    streams_are_forwarded_event_by_event,
    a_client_that_disconnects_mid_stream_is_billed,
    a_stream_missing_its_final_events_is_billed_as_a_marked_estimate,
    concurrent_requests_cannot_overspend,
);
