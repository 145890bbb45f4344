//! Per-key limits enforced to the request under concurrency, with the headers OpenAI
//! clients read; and what a client can ask about its own usage — on both stores.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokenroute_domain::{KeyLimits, NanoUsd};
use tokenroute_tests::gateway::Options;
use tokenroute_tests::{Backend, FakeOpenAi, Gateway, Reply};

const MODEL: &str = "openai/gpt-4o-mini";

fn body() -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": "What is the capital of France?"}]})
}

fn post(gw: &Gateway, key: &str, body: &Value) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(body)
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}"))
        .to_str()
        .unwrap()
        .to_string()
}

async fn error_code(resp: reqwest::Response) -> String {
    let v: Value = resp.json().await.unwrap();
    v["error"]["code"].as_str().unwrap().to_string()
}

/// 30 requests at once against a 10-per-minute key: exactly 10 are answered.
async fn requests_per_minute_hold_to_the_request(backend: Backend) {
    let fake = FakeOpenAi::start().await;
    let gw = Gateway::start(backend, &fake).await;
    let limits = KeyLimits {
        rpm: Some(10),
        ..KeyLimits::default()
    };
    let (key, account, _) = gw.key_with_limits("rpm@example.com", "10", limits).await;
    let responses: Vec<reqwest::Response> = futures_util::stream::iter(0..30)
        .map(|_| post(&gw, &key, &body()).send())
        .buffer_unordered(30)
        .map(Result::unwrap)
        .collect()
        .await;
    let (ok, limited): (Vec<_>, Vec<_>) = responses.into_iter().partition(|r| r.status() == 200);
    assert_eq!(ok.len(), 10);
    assert_eq!(limited.len(), 20);
    for r in &ok {
        assert_eq!(header(r, "x-ratelimit-limit-requests"), "10");
        assert!(header(r, "x-ratelimit-reset-requests").ends_with('s'));
    }
    let remaining: Vec<u64> = ok
        .iter()
        .map(|r| header(r, "x-ratelimit-remaining-requests").parse().unwrap())
        .collect();
    assert!(
        remaining.contains(&0) && remaining.contains(&9),
        "{remaining:?}"
    );
    for r in limited {
        assert_eq!(r.status(), 429);
        assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "0");
        let retry: u64 = header(&r, "retry-after").parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        assert_eq!(error_code(r).await, "rate_limit_exceeded");
    }
    assert_eq!(
        fake.requests().len(),
        10,
        "refused requests never reach the provider"
    );
    let rows = gw.wait_usage(&account, 30).await;
    assert_eq!(
        rows.iter()
            .filter(|r| r.status == 429 && r.cost == NanoUsd::ZERO)
            .count(),
        20
    );
}

/// Tokens per minute: each answer uses 32 tokens; a 100-token key gets three.
async fn tokens_per_minute_count_real_usage(backend: Backend) {
    let fake = FakeOpenAi::start().await;
    let gw = Gateway::start(backend, &fake).await;
    let limits = KeyLimits {
        tpm: Some(100),
        ..KeyLimits::default()
    };
    let (key, _, _) = gw.key_with_limits("tpm@example.com", "10", limits).await;
    for expected_remaining in [68, 36, 4] {
        let resp = post(&gw, &key, &body()).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-ratelimit-limit-tokens"), "100");
        // The header is computed at admission, before this request's real count.
        let remaining: u64 = header(&resp, "x-ratelimit-remaining-tokens")
            .parse()
            .unwrap();
        assert!(remaining <= expected_remaining + 32, "{remaining}");
    }
    let resp = post(&gw, &key, &body()).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "x-ratelimit-remaining-tokens"), "4");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "tokens");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("100 tokens per minute"));
}

/// A daily spend cap of $0.00002 covers two 8,400-nano answers and part of a third:
/// the third is answered (one request's excess is the bound), the fourth refused.
async fn spend_caps_refuse_once_spent(backend: Backend) {
    let fake = FakeOpenAi::start().await;
    let gw = Gateway::start(backend, &fake).await;
    let limits = KeyLimits {
        spend_per_day: Some(NanoUsd(20_000)),
        ..KeyLimits::default()
    };
    let (key, account, key_id) = gw.key_with_limits("cap@example.com", "10", limits).await;
    let mut body = body();
    body["max_tokens"] = json!(10);
    for _ in 0..3 {
        assert_eq!(post(&gw, &key, &body).send().await.unwrap().status(), 200);
    }
    let resp = post(&gw, &key, &body).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    let retry: u64 = header(&resp, "retry-after").parse().unwrap();
    assert!(retry <= 86_400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "spend_limit_reached");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("daily"),
        "{v}"
    );

    // Another key of the same account is not capped.
    let (other, _, _) = gw.key_with_credits("cap@example.com", "0").await;
    assert_eq!(post(&gw, &other, &body).send().await.unwrap().status(), 200);

    // GET /v1/key shows the limits and what was spent.
    let v: Value = reqwest::Client::new()
        .get(gw.url("/v1/key"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"]["id"], key_id);
    assert_eq!(v["data"]["limits"]["spend_per_day_usd"], "0.00002");
    assert_eq!(v["data"]["spent"]["today_usd"], "0.0000252");
    gw.wait_usage(&account, 5).await;
}

async fn keys_only_reach_their_allowed_models(backend: Backend) {
    let fake = FakeOpenAi::start().await;
    let gw = Gateway::start(backend, &fake).await;
    let limits = KeyLimits {
        allowed_models: Some(vec!["dead/model".into()]),
        ..KeyLimits::default()
    };
    let (key, _, _) = gw.key_with_limits("models@example.com", "1", limits).await;
    let resp = post(&gw, &key, &body()).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "model_not_allowed");
    assert_eq!(v["error"]["param"], "model");
    assert!(fake.requests().is_empty());
}

/// An account with 2 requests in flight gets 429 for a third, until one finishes.
async fn concurrent_requests_per_account_are_capped(backend: Backend) {
    let fake = FakeOpenAi::start().await;
    let opts = Options {
        max_concurrent_per_account: 2,
        ..Options::default()
    };
    let gw = Gateway::start_with(backend, &fake, opts).await;
    let (key, _, _) = gw.key_with_credits("conc@example.com", "10").await;
    fake.reply(Reply::Spaced {
        events: 3,
        gap: Duration::from_millis(300),
    });
    let mut stream_body = body();
    stream_body["stream"] = json!(true);
    let slow: Vec<_> = (0..2)
        .map(|_| post(&gw, &key, &stream_body).send())
        .collect();
    let slow = futures_util::future::join_all(slow).await;
    for r in &slow {
        assert_eq!(r.as_ref().unwrap().status(), 200);
    }
    // Both are still streaming: the third is refused.
    let third = post(&gw, &key, &body()).send().await.unwrap();
    assert_eq!(third.status(), 429);
    assert_eq!(error_code(third).await, "concurrency_limit_exceeded");
    for r in slow {
        r.unwrap().text().await.unwrap();
    }
    fake.reply(Reply::Fixture);
    assert_eq!(post(&gw, &key, &body()).send().await.unwrap().status(), 200);
}

/// `GET /v1/generation?id=` returns the metered record of an answer, `GET /v1/credits`
/// the balance and the spend; another account's generation is not found.
async fn clients_can_read_their_generations_and_credits(backend: Backend) {
    let fake = FakeOpenAi::start().await;
    let gw = Gateway::start(backend, &fake).await;
    let (key, account, _) = gw.key_with_credits("gen@example.com", "1").await;
    let resp = post(&gw, &key, &body()).send().await.unwrap();
    let id = header(&resp, "x-tokenroute-generation-id");
    resp.text().await.unwrap();
    gw.wait_usage(&account, 1).await;

    let gw = &gw;
    let get = |path: String, key: String| async move {
        reqwest::Client::new()
            .get(gw.url(&path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    };
    let resp = get(format!("/v1/generation?id={id}"), key.clone()).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let g = &v["data"];
    assert_eq!(g["id"], id);
    assert_eq!(
        (g["tokens_prompt"].as_i64(), g["tokens_completion"].as_i64()),
        (Some(24), Some(8))
    );
    assert_eq!(g["total_cost"], 0.0000084);
    assert_eq!(g["total_cost_usd"], "0.0000084");
    assert_eq!(
        (g["provider"].as_str(), g["model"].as_str()),
        (Some("openai"), Some(MODEL))
    );
    assert_eq!(
        (
            g["status"].as_u64(),
            g["streamed"].as_bool(),
            g["cancelled"].as_bool()
        ),
        (Some(200), Some(false), Some(false))
    );
    assert!(g["latency_ms"].as_i64().is_some());

    let (stranger, _, _) = gw.key_with_credits("stranger@example.com", "1").await;
    let resp = get(format!("/v1/generation?id={id}"), stranger).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(error_code(resp).await, "generation_not_found");
    let resp = get("/v1/generation".into(), key.clone()).await;
    assert_eq!(resp.status(), 400);

    let v: Value = get("/v1/credits".into(), key.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"]["balance_usd"], "0.9999916");
    assert_eq!(v["data"]["total_usage_usd"], "0.0000084");
}

tokenroute_tests::on_both_stores!(
    requests_per_minute_hold_to_the_request,
    tokens_per_minute_count_real_usage,
    spend_caps_refuse_once_spent,
    keys_only_reach_their_allowed_models,
    concurrent_requests_per_account_are_capped,
    clients_can_read_their_generations_and_credits,
);
