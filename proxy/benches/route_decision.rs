#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The routing decision per request: fingerprint (the conversation's stable prefix),
//! request features, rules, eligibility and weighted rendezvous over a route's
//! candidates and their endpoints — what the data plane adds to every chat request.
//! `cargo bench -p tokenroute-proxy --bench route_decision`.

use criterion::{criterion_group, criterion_main, Criterion};
use http::HeaderMap;
use serde_json::{json, Map, Value};
use tokenroute_domain::config::Config;
use tokenroute_domain::KeyLimits;
use tokenroute_proxy::route::health::Health;
use tokenroute_proxy::route::{decide, Features, Fingerprint, RouteInput, Steering};

const CONFIG: &str = r#"
[[providers]]
id = "openai"
kind = "openai"
region = "us"
[[providers.endpoints]]
id = "eu"
base-url = "https://eu.api.openai.com/v1"
region = "eu"

[[providers]]
id = "anthropic"
kind = "anthropic"

[[providers]]
id = "google"
kind = "gemini"

[[models]]
id = "openai/gpt-4o-mini"
input-usd-per-mtok = "0.15"
output-usd-per-mtok = "0.60"
context-window = 128000

[[models]]
id = "anthropic/claude-3-5-haiku"
input-usd-per-mtok = "0.80"
output-usd-per-mtok = "4"
context-window = 200000

[[models]]
id = "google/gemini-2.0-flash"
input-usd-per-mtok = "0.10"
output-usd-per-mtok = "0.40"
context-window = 1048576

[[routes]]
id = "tokenroute-auto"
candidates = [
  { model = "openai/gpt-4o-mini", weight = 4 },
  { model = "anthropic/claude-3-5-haiku", weight = 2 },
  { model = "google/gemini-2.0-flash", weight = 3 },
]

[[rules]]
name = "eu-tenant"
when = { accounts = ["acc_eu"] }
then = { regions = ["eu"] }

[[rules]]
name = "canary"
when = { models = ["tokenroute-auto"], percent = 5 }
then = { candidates = [{ model = "anthropic/claude-3-5-haiku" }] }
"#;

fn bench(c: &mut Criterion) {
    let config = Config::from_toml(CONFIG, "bench", &|_| None).unwrap();
    let body: Map<String, Value> = serde_json::from_value(json!({
        "model": "tokenroute-auto",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": "And of Italy?"},
        ],
    }))
    .unwrap();
    let health = Health::default();
    let limits = KeyLimits::default();
    let headers = HeaderMap::new();
    let steering = Steering::NONE;
    let now = std::time::Instant::now();
    c.bench_function(
        "route decision (tokenroute-auto, 3 candidates, 2 rules)",
        |b| {
            b.iter(|| {
                let input = RouteInput {
                    requested: "tokenroute-auto",
                    account_id: "acc_123",
                    key_id: "key_123",
                    limits: &limits,
                    headers: &headers,
                    features: Features::of(&body, 40, None),
                    fingerprint: Fingerprint::of(None, &body, "acc_123"),
                    steering: &steering,
                };
                decide(&config, &input, &health, now).unwrap().targets.len()
            })
        },
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
