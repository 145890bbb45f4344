#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The data plane's per-request pieces besides routing (`route_decision`) and streaming
//! (`stream_event`): the key check of a cached key, parsing the chat body, translating
//! it for each provider dialect, and the local credit reservation (reserve, then settle
//! to the real cost). `cargo bench -p tokenroute-proxy --bench hot_path`.
//!
//! The async pieces run on a current-thread runtime with `block_on` per iteration, as
//! the data plane awaits them; that adds tens of nanoseconds to their figures.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use pingora::http::RequestHeader;
use tokenroute_domain::api_key::ApiKey;
use tokenroute_domain::{KeyLimits, NanoUsd};
use tokenroute_proxy::auth::KeyCache;
use tokenroute_proxy::chat::ChatRequest;
use tokenroute_proxy::credit::CreditBook;
use tokenroute_proxy::dialect::Dialect;
use tokenroute_store::{LedgerKind, NewKey, Store};

/// A small chat request, as most API traffic is: a system prompt and one user turn.
const BODY: &[u8] = br#"{"model":"tokenroute-auto","messages":[{"role":"system","content":"You are a concise assistant."},{"role":"user","content":"Summarise the plot of Hamlet in two sentences."}],"max_tokens":256,"temperature":0.2,"stream":false}"#;

fn hot_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/bench.db", dir.path().display());
    let (store, key) = rt.block_on(async {
        let store = Store::open(&url, 2).await.unwrap();
        let account = store
            .upsert_account_by_email("bench@example.com")
            .await
            .unwrap();
        store
            .book(
                &account.id,
                LedgerKind::Adjustment,
                NanoUsd::parse_usd("1000000").unwrap(),
                "grant",
                None,
            )
            .await
            .unwrap();
        let key = ApiKey::generate();
        let new = NewKey {
            account_id: &account.id,
            name: "bench",
            limits: KeyLimits::default(),
        };
        store.create_key(&new, &key).await.unwrap();
        (store, key)
    });

    let keys = KeyCache::new(store.clone(), Duration::from_secs(3600));
    let mut req = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
    req.insert_header("authorization", format!("Bearer {}", key.plaintext()))
        .unwrap();
    let record = rt.block_on(keys.authenticate(&req)).unwrap();
    c.bench_function("key check (cached key)", |b| {
        b.iter(|| rt.block_on(keys.authenticate(&req)).unwrap())
    });

    c.bench_function("chat body parse", |b| {
        b.iter(|| ChatRequest::parse(BODY).unwrap())
    });
    let chat = ChatRequest::parse(BODY).unwrap();
    for (name, dialect) in [
        ("openai", Dialect::OpenAi),
        ("anthropic", Dialect::Anthropic),
        ("gemini", Dialect::Gemini),
    ] {
        c.bench_function(&format!("request translation to {name}"), |b| {
            b.iter(|| dialect.call(&chat, "upstream-model").unwrap())
        });
    }

    let (book, _refresh) = CreditBook::new(store.clone(), Duration::from_secs(3600), None);
    c.bench_function("reservation (reserve + settle, local book)", |b| {
        b.iter(|| {
            rt.block_on(async {
                let held = book.reserve(&record, NanoUsd(2_000), 1024).await.unwrap();
                held.settle(NanoUsd(1_000), 32).await;
            })
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = hot_path
}
criterion_main!(benches);
