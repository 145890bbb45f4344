//! Routing end to end over real sockets: `tokenroute-auto` keeps a conversation on one
//! provider and says why; fallback on a refused connection, a 500, a 429 and a
//! timeout — never after the first byte of a stream; the retry budget caps attempts
//! during a full outage; an open circuit takes an endpoint out until its half-open
//! probe succeeds; `POST /v1/route/explain` decides without calling anyone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::{json, Value};
use tokenroute_tests::gateway::Options;
use tokenroute_tests::{Backend, FakeOpenAi, Gateway, Reply};

/// A second provider (`flaky`, OpenAI dialect, dearer than `openai`) on its own fake,
/// and routes over the harness's providers.
fn routing_toml(flaky: &FakeOpenAi) -> String {
    format!(
        r#"
[[providers]]
id = "flaky"
kind = "openai"
base-url = "{flaky}"
api-key-env = "PROVIDER_KEY"

[[providers]]
id = "flaky2"
kind = "openai"
base-url = "{flaky}"
api-key-env = "PROVIDER_KEY"

[[models]]
id = "flaky/gpt"
upstream = "gpt-4o-mini"
input-usd-per-mtok = "5"
output-usd-per-mtok = "20"
context-window = 128000
max-output-tokens = 1000

[[models]]
id = "flaky2/gpt"
upstream = "gpt-4o-mini"
input-usd-per-mtok = "5"
output-usd-per-mtok = "20"
context-window = 128000
max-output-tokens = 1000

[[routes]]
id = "tokenroute-auto"
candidates = [
  {{ model = "openai/gpt-4o-mini" }},
  {{ model = "anthropic/claude-3-5-haiku" }},
  {{ model = "gemini/gemini-2.0-flash" }},
]

# flaky first for every request but one in a million; openai behind it.
[[routes]]
id = "flaky-first"
candidates = [
  {{ model = "flaky/gpt", weight = 1000000 }},
  {{ model = "openai/gpt-4o-mini", weight = 1 }},
]

[[routes]]
id = "all-flaky"
candidates = [{{ model = "flaky/gpt" }}, {{ model = "flaky2/gpt" }}]

[aliases]
auto = "tokenroute-auto"

[[rules]]
name = "tools-to-anthropic"
when = {{ tools = true, models = ["tokenroute-auto"] }}
then = {{ candidates = [{{ model = "anthropic/claude-3-5-haiku" }}] }}
"#,
        flaky = flaky.base_url()
    )
}

async fn gateway(fake: &FakeOpenAi, flaky: &FakeOpenAi, routing: &str) -> Gateway {
    Gateway::start_with(
        Backend::Sqlite,
        fake,
        Options {
            read_timeout_ms: 1000,
            extra_toml: routing_toml(flaky),
            routing_toml: if routing.contains("health-check-interval-ms") {
                routing.to_string()
            } else {
                format!("health-check-interval-ms = 0\n{routing}")
            },
            ..Options::default()
        },
    )
    .await
}

async fn post(gw: &Gateway, key: &str, path: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(gw.url(path))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_string()
}

fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokenroute_auto_keeps_a_conversation_on_one_provider_and_says_why() {
    let fake = FakeOpenAi::start().await;
    let flaky = FakeOpenAi::start().await;
    let gw = gateway(&fake, &flaky, "").await;
    let (key, account, _) = gw.key_with_credits("auto@example.com", "10").await;

    // Ten turns of one conversation: the history grows, the provider stays.
    let mut messages = vec![
        json!({"role": "system", "content": "You are terse."}),
        json!({"role": "user", "content": "Name a prime."}),
    ];
    let mut chosen: Option<(String, String)> = None;
    for turn in 0..10 {
        let body = json!({"model": "tokenroute-auto", "messages": messages});
        let resp = post(&gw, &key, "/v1/chat/completions", &body).await;
        assert_eq!(resp.status(), 200, "turn {turn}");
        let provider = header(&resp, "x-tokenroute-provider");
        let model = header(&resp, "x-tokenroute-model");
        let why = header(&resp, "x-tokenroute-route");
        assert!(
            why.starts_with("tokenroute-auto; rank=1 of 3; fingerprint=conversation; config="),
            "{why}"
        );
        assert_eq!(header(&resp, "x-tokenroute-attempts"), "1");
        match &chosen {
            None => chosen = Some((provider, model)),
            Some(first) => assert_eq!(first, &(provider, model), "turn {turn} moved"),
        }
        let _ = resp.bytes().await.unwrap();
        messages.push(json!({"role": "assistant", "content": "7"}));
        messages.push(json!({"role": "user", "content": format!("Another, please ({turn}).")}));
    }
    let (provider, model) = chosen.unwrap();
    assert!(model.starts_with(&format!("{provider}/")));

    // Usage rows name the model that served, the route asked for, the attempts.
    let rows = gw.wait_usage(&account, 10).await;
    for row in &rows {
        assert_eq!(
            (row.model.as_str(), row.route.as_str(), row.attempts),
            (model.as_str(), "tokenroute-auto", 1)
        );
        assert_eq!(row.provider, provider);
    }

    // Different conversations spread over the candidates.
    let mut providers = std::collections::BTreeSet::new();
    for n in 0..30 {
        let resp = post(
            &gw,
            &key,
            "/v1/route/explain",
            &ask("auto", &format!("conversation {n}")),
        )
        .await;
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(
            v["route"], "tokenroute-auto",
            "the alias resolves to the route"
        );
        providers.insert(v["choice"]["provider"].as_str().unwrap().to_string());
    }
    assert!(providers.len() >= 2, "{providers:?}");

    // Explain names the same choice the conversation got, and calls no provider.
    let calls = fake.requests().len();
    let first_turn = json!({"model": "tokenroute-auto", "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name a prime."},
    ]});
    let v: Value = post(&gw, &key, "/v1/route/explain", &first_turn)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["choice"]["model"], model.as_str(), "{v}");
    assert_eq!(v["fingerprint"]["source"], "conversation");
    assert_eq!(v["order"].as_array().unwrap().len(), 3);
    assert_eq!(fake.requests().len(), calls, "explain calls no provider");
    assert_eq!(
        gw.store
            .usage_of_account(&account, 100)
            .await
            .unwrap()
            .len(),
        10,
        "nor is it metered"
    );

    // A route key moves the fingerprint; a rule fires on tools, and says so.
    let resp = reqwest::Client::new()
        .post(gw.url("/v1/route/explain"))
        .bearer_auth(&key)
        .header("x-tokenroute-route-key", "tenant-42")
        .json(&json!({"model": "tokenroute-auto", "tools": [{"type": "function", "function": {"name": "f"}}],
                      "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["fingerprint"]["source"], "route-key");
    assert_eq!(v["rule"], "tools-to-anthropic");
    assert_eq!(v["choice"]["model"], "anthropic/claude-3-5-haiku");

    // A bad fallback list is the client's to fix, in OpenAI's error shape.
    let mut bad = ask("openai/gpt-4o-mini", "x");
    bad["models"] = json!(["nope/nothing"]);
    let resp = post(&gw, &key, "/v1/chat/completions", &bad).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["param"], "models", "{v}");

    // GET /v1/models lists the route with its candidates, and the alias.
    let models: Value = reqwest::Client::new()
        .get(gw.url("/v1/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let auto = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "tokenroute-auto")
        .unwrap();
    assert_eq!(auto["routing"]["candidates"].as_array().unwrap().len(), 3);
    assert!(models["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == "auto" && m["alias_of"] == "tokenroute-auto"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_500s_429s_and_timeouts_fall_back_and_bill_the_model_that_answered() {
    let fake = FakeOpenAi::start().await;
    let flaky = FakeOpenAi::start().await;
    let gw = gateway(&fake, &flaky, "").await;
    let (key, account, _) = gw.key_with_credits("fallback@example.com", "10").await;
    let cases = [
        ("refused connection", None),
        (
            "500",
            Some(Reply::Status(500, r#"{"error":{"message":"boom"}}"#.into())),
        ),
        (
            "429",
            Some(Reply::Status(
                429,
                r#"{"error":{"message":"slow down"}}"#.into(),
            )),
        ),
        ("timeout", Some(Reply::Hang)),
    ];
    for (n, (case, reply)) in cases.into_iter().enumerate() {
        let flaky_before = flaky.requests().len();
        let body = match reply {
            // Nothing listens on dead/model's port; `models` is the client's fallback list.
            None => json!({"model": "dead/model", "models": ["openai/gpt-4o-mini"],
                           "messages": [{"role": "user", "content": case}]}),
            Some(reply) => {
                flaky.reply(reply);
                ask("flaky-first", case)
            }
        };
        let resp = post(&gw, &key, "/v1/chat/completions", &body).await;
        assert_eq!(resp.status(), 200, "{case}");
        assert_eq!(header(&resp, "x-tokenroute-attempts"), "2", "{case}");
        assert_eq!(header(&resp, "x-tokenroute-provider"), "openai", "{case}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["object"], "chat.completion");
        if case != "refused connection" {
            assert_eq!(
                flaky.requests().len(),
                flaky_before + 1,
                "{case}: flaky was tried first"
            );
        }
        let rows = gw.wait_usage(&account, n + 1).await;
        let row = rows
            .iter()
            .find(|r| {
                r.attempts == 2 && r.status == 200 && r.created_at_ms > 0 && rows.len() == n + 1
            })
            .unwrap();
        assert_eq!(
            row.model, "openai/gpt-4o-mini",
            "{case}: billed to the model that answered"
        );
        let price = gw.price("openai/gpt-4o-mini");
        assert_eq!(
            row.cost,
            price.cost_with_cache(
                row.input_tokens as u64,
                row.cached_input_tokens as u64,
                row.output_tokens as u64
            )
        );
    }
    let rows = gw.store.usage_of_account(&account, 100).await.unwrap();
    assert!(
        rows.iter()
            .all(|r| r.attempts == 2 && r.model == "openai/gpt-4o-mini"),
        "{rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_already_sent_bytes_does_not_fall_back() {
    let fake = FakeOpenAi::start().await;
    let flaky = FakeOpenAi::start().await;
    flaky.reply(Reply::Cut { after_events: 2 });
    let gw = gateway(&fake, &flaky, "").await;
    let (key, account, _) = gw.key_with_credits("cut@example.com", "10").await;
    let mut body = ask("flaky-first", "stream, then die");
    body["stream"] = json!(true);
    let resp = post(&gw, &key, "/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-tokenroute-attempts"), "1");
    assert_eq!(header(&resp, "x-tokenroute-provider"), "flaky");
    let text = String::from_utf8(resp.bytes().await.unwrap().to_vec()).unwrap();
    assert!(
        text.contains("chat.completion.chunk"),
        "the client got the first events: {text}"
    );
    assert!(
        text.contains("\"error\""),
        "and then the failure, in band: {text}"
    );
    assert_eq!(
        fake.requests().len(),
        0,
        "no second provider after bytes reached the client"
    );
    let rows = gw.wait_usage(&account, 1).await;
    assert_eq!(rows[0].attempts, 1);
    assert!(
        rows[0].cost.is_positive() && rows[0].estimated,
        "what was produced is billed: {:?}",
        rows[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_caps_attempts_during_a_full_outage() {
    let fake = FakeOpenAi::start().await;
    let flaky = FakeOpenAi::start().await;
    flaky.reply(Reply::Status(500, r#"{"error":{"message":"down"}}"#.into()));
    // 10 fallbacks per 100 requests, none for time alone, a bucket of 10.
    let gw = gateway(
        &fake,
        &flaky,
        "retry-budget-percent = 10\nretry-budget-min-per-sec = 0\nmax-attempts = 3\nbreaker-failures = 1000000\n",
    )
    .await;
    let (key, _, _) = gw.key_with_credits("outage@example.com", "10").await;
    let requests = 200;
    let client = reqwest::Client::new();
    let statuses = futures_util::future::join_all((0..requests).map(|i| {
        let (client, key, url) = (client.clone(), key.clone(), gw.url("/v1/chat/completions"));
        async move {
            client
                .post(url)
                .bearer_auth(key)
                .json(&ask("all-flaky", &format!("request {i}")))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    }))
    .await;
    assert!(statuses.iter().all(|&s| s == 502), "{statuses:?}");
    let attempts = flaky.requests().len();
    // Without a budget: up to 2 attempts each (two candidates) = 400.
    assert!(attempts > requests, "some fallbacks were made: {attempts}");
    assert!(
        attempts <= requests + 10 + requests / 10,
        "the budget caps them: {attempts}"
    );
    let metrics = client
        .get(&gw.metrics)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.lines().any(
            |l| l.starts_with("tokenroute_retry_budget_exhausted_total ") && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_circuit_takes_an_endpoint_out_until_its_probe_succeeds() {
    let fake = FakeOpenAi::start().await;
    let flaky = FakeOpenAi::start().await;
    flaky.reply(Reply::Status(
        503,
        r#"{"error":{"message":"overloaded"}}"#.into(),
    ));
    let gw = gateway(
        &fake,
        &flaky,
        "breaker-failures = 2\nbreaker-open-ms = 700\n",
    )
    .await;
    let (key, _, _) = gw.key_with_credits("breaker@example.com", "10").await;
    for _ in 0..2 {
        let resp = post(&gw, &key, "/v1/chat/completions", &ask("flaky-first", "x")).await;
        assert_eq!(
            (
                resp.status().as_u16(),
                header(&resp, "x-tokenroute-attempts")
            ),
            (200, "2".into())
        );
    }
    assert_eq!(flaky.requests().len(), 2);
    // Open: flaky is no candidate; requests go straight to openai.
    let resp = post(&gw, &key, "/v1/chat/completions", &ask("flaky-first", "x")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-tokenroute-attempts"), "1");
    assert_eq!(header(&resp, "x-tokenroute-provider"), "openai");
    assert_eq!(flaky.requests().len(), 2, "the open circuit kept flaky out");
    let v: Value = post(&gw, &key, "/v1/route/explain", &ask("flaky-first", "x"))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        v["excluded"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["endpoint"] == "flaky/default" && x["reason"] == "circuit open"),
        "{v}"
    );
    let metrics = reqwest::get(&gw.metrics)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tokenroute_circuit_state{endpoint=\"flaky/default\"} 2"),
        "{metrics}"
    );

    // Half-open after the open period: one probe, which succeeds and closes it.
    flaky.reply(Reply::Fixture);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let resp = post(&gw, &key, "/v1/chat/completions", &ask("flaky-first", "x")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "x-tokenroute-provider"),
        "flaky",
        "the probe went to flaky"
    );
    assert_eq!(flaky.requests().len(), 3);
    let metrics = reqwest::get(&gw.metrics)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tokenroute_circuit_state{endpoint=\"flaky/default\"} 0"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_its_health_check_is_no_candidate_before_any_request_fails() {
    let fake = FakeOpenAi::start().await;
    let flaky = FakeOpenAi::start().await;
    // Checks every 100 ms; `dead/model`'s endpoint has nothing listening.
    let gw = gateway(&fake, &flaky, "health-check-interval-ms = 100\n").await;
    let (key, _, _) = gw.key_with_credits("checks@example.com", "10").await;
    let mut body = ask("dead/model", "x");
    body["models"] = json!(["openai/gpt-4o-mini"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let v = loop {
        let v: Value = post(&gw, &key, "/v1/route/explain", &body)
            .await
            .json()
            .await
            .unwrap();
        if v["excluded"].as_array().is_some_and(|x| !x.is_empty())
            || std::time::Instant::now() > deadline
        {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let excluded = v["excluded"].as_array().unwrap();
    assert!(
        excluded
            .iter()
            .any(|x| x["endpoint"] == "dead/default" && x["reason"] == "health check failing"),
        "{v}"
    );
    assert!(
        !excluded.iter().any(|x| x["endpoint"] == "openai/default"),
        "a live endpoint passes its check: {v}"
    );
    // The request goes straight to the fallback: one attempt, no connect error paid.
    let resp = post(&gw, &key, "/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-tokenroute-attempts"), "1");
    assert_eq!(header(&resp, "x-tokenroute-provider"), "openai");
}
