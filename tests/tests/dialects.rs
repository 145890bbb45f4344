//! Any client surface to any provider: OpenAI Chat Completions and Anthropic Messages
//! clients, against OpenAI, Anthropic and Gemini upstreams (fakes that serve the
//! shapes in `fixtures/providers/`), whole and streamed, metered exactly —
//! and provider errors in the client's own shape. On SQLite (the store is not what
//! these exercise; the metering suites run on both).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use tokenroute_tests::gateway::PROVIDER_KEY;
use tokenroute_tests::{Backend, Dialect, FakeProvider, Gateway, Reply};

const ANTHROPIC: &str = "anthropic/claude-3-5-haiku";
const GEMINI: &str = "gemini/gemini-2.0-flash";
const OPENAI: &str = "openai/gpt-4o-mini";

async fn setup() -> (FakeProvider, Gateway, String, String) {
    let fake = FakeProvider::start().await;
    let gw = Gateway::start(Backend::Sqlite, &fake).await;
    let (key, account, _) = gw.key_with_credits("dialects@example.com", "10").await;
    (fake, gw, key, account)
}

fn chat(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "stream": stream,
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "What is the capital of France?"}
        ],
    })
}

async fn post_chat(gw: &Gateway, key: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn post_messages(gw: &Gateway, key: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The content of an OpenAI stream, and its usage chunk.
fn openai_stream(text: &str) -> (String, Value) {
    let mut content = String::new();
    let mut usage = Value::Null;
    for event in text.split("\n\n").filter(|e| !e.is_empty()) {
        let data = event
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("not SSE: {event}"));
        if data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
            content.push_str(c);
        }
        if v["usage"].is_object() {
            usage = v["usage"].clone();
        }
    }
    (content, usage)
}

async fn openai_client_to_anthropic_upstream() {
    let (fake, gw, key, account) = setup().await;
    let resp = post_chat(&gw, &key, &chat(ANTHROPIC, false)).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], ANTHROPIC);
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "The capital of France is Paris."
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        (
            v["usage"]["prompt_tokens"].as_u64(),
            v["usage"]["completion_tokens"].as_u64()
        ),
        (Some(21), Some(10))
    );
    let cost = gw.price(ANTHROPIC).cost(21, 10);
    assert_eq!(v["usage"]["cost"], json!(cost.as_usd_f64()));

    let seen = &fake.requests()[0];
    assert_eq!(seen.dialect, Dialect::Anthropic);
    assert_eq!(seen.uri, "/v1/messages");
    assert_eq!(seen.headers["x-api-key"], PROVIDER_KEY);
    assert!(seen.headers.get("authorization").is_none());
    assert_eq!(seen.headers["anthropic-version"], "2023-06-01");
    let sent: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(sent["model"], "claude-3-5-haiku-20241022");
    assert_eq!(
        sent["system"]
            .as_str()
            .map(|s| s.contains("Answer briefly")),
        Some(true)
    );
    assert!(
        sent["max_tokens"].as_u64().unwrap() > 0,
        "Anthropic requires max_tokens"
    );

    let rows = gw.wait_usage(&account, 1).await;
    assert_eq!(
        (rows[0].input_tokens, rows[0].output_tokens, rows[0].cost),
        (21, 10, cost)
    );
    assert_eq!(rows[0].provider, "anthropic");
}

async fn openai_client_streams_from_anthropic() {
    let (_fake, gw, key, account) = setup().await;
    let text = post_chat(&gw, &key, &chat(ANTHROPIC, true))
        .await
        .text()
        .await
        .unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let (content, usage) = openai_stream(&text);
    assert_eq!(content, "The capital of France is Paris.");
    assert_eq!(
        (
            usage["prompt_tokens"].as_u64(),
            usage["completion_tokens"].as_u64()
        ),
        (Some(21), Some(10))
    );
    let rows = gw.wait_usage(&account, 1).await;
    assert_eq!((rows[0].input_tokens, rows[0].output_tokens), (21, 10));
    assert!(rows[0].streamed && !rows[0].estimated);
}

async fn openai_client_gets_anthropic_tool_calls_streamed() {
    let (_fake, gw, key, _) = setup().await;
    let mut body = chat(ANTHROPIC, true);
    body["tools"] = json!([{"type": "function", "function": {
        "name": "get_weather", "description": "Weather now",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}
    }}]);
    let text = post_chat(&gw, &key, &body).await.text().await.unwrap();
    let mut arguments = String::new();
    let mut name = None;
    let mut finish = None;
    for event in text.split("\n\n").filter(|e| e.starts_with("data: {")) {
        let v: Value = serde_json::from_str(&event[6..]).unwrap();
        if let Some(call) = v["choices"][0]["delta"]["tool_calls"][0].as_object() {
            if let Some(n) = call["function"]["name"].as_str() {
                name = Some(n.to_string());
            }
            arguments.push_str(call["function"]["arguments"].as_str().unwrap_or(""));
        }
        if let Some(f) = v["choices"][0]["finish_reason"].as_str() {
            finish = Some(f.to_string());
        }
    }
    assert_eq!(name.as_deref(), Some("get_weather"));
    let args: Value = serde_json::from_str(&arguments).unwrap();
    assert_eq!(args, json!({"location": "Paris, France"}));
    assert_eq!(finish.as_deref(), Some("tool_calls"));
}

async fn openai_client_to_gemini_upstream() {
    let (fake, gw, key, account) = setup().await;
    let v: Value = post_chat(&gw, &key, &chat(GEMINI, false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .trim(),
        "The capital of France is Paris."
    );
    assert_eq!(
        (
            v["usage"]["prompt_tokens"].as_u64(),
            v["usage"]["completion_tokens"].as_u64()
        ),
        (Some(9), Some(8))
    );
    let seen = &fake.requests()[0];
    assert_eq!(seen.uri, "/v1beta/models/gemini-2.0-flash:generateContent");
    assert_eq!(seen.headers["x-goog-api-key"], PROVIDER_KEY);
    let sent: Value = serde_json::from_slice(&seen.body).unwrap();
    assert!(sent["systemInstruction"].is_object());
    assert_eq!(sent["contents"][0]["role"], "user");

    let text = post_chat(&gw, &key, &chat(GEMINI, true))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        fake.requests()[1].uri,
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    );
    let (content, usage) = openai_stream(&text);
    assert_eq!(content.trim(), "The capital of France is Paris.");
    assert_eq!(
        (
            usage["prompt_tokens"].as_u64(),
            usage["completion_tokens"].as_u64()
        ),
        (Some(9), Some(8)),
        "the last usageMetadata counts"
    );
    assert!(text.ends_with("data: [DONE]\n\n"));
    let rows = gw.wait_usage(&account, 2).await;
    assert!(rows
        .iter()
        .all(|r| (r.input_tokens, r.output_tokens) == (9, 8)));
    assert!(rows.iter().all(|r| r.cost == gw.price(GEMINI).cost(9, 8)));
}

fn messages_body(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "max_tokens": 256,
        "stream": stream,
        "system": "Answer briefly.",
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
    })
}

/// Anthropic SDK clients reach every provider through `/v1/messages`.
async fn anthropic_client_reaches_every_provider() {
    let (_fake, gw, key, account) = setup().await;
    for (model, input, output) in [(OPENAI, 24, 8), (ANTHROPIC, 21, 10), (GEMINI, 9, 8)] {
        let resp = post_messages(&gw, &key, &messages_body(model, false)).await;
        assert_eq!(resp.status(), 200, "{model}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["type"], "message", "{model}: {v}");
        assert_eq!(v["role"], "assistant");
        assert_eq!(v["model"], model);
        assert_eq!(v["content"][0]["type"], "text");
        assert!(v["content"][0]["text"].as_str().unwrap().contains("Paris"));
        assert_eq!(v["stop_reason"], "end_turn", "{model}");
        assert_eq!(v["usage"]["output_tokens"], output, "{model}");
        assert_eq!(
            v["usage"]["input_tokens"].as_u64().unwrap()
                + v["usage"]["cache_read_input_tokens"].as_u64().unwrap_or(0),
            input,
            "{model}"
        );
    }
    let rows = gw.wait_usage(&account, 3).await;
    assert!(rows.iter().all(|r| r.status == 200 && r.cost.is_positive()));
}

async fn anthropic_client_streams_from_every_provider() {
    let (_fake, gw, key, account) = setup().await;
    for model in [OPENAI, ANTHROPIC, GEMINI] {
        let text = post_messages(&gw, &key, &messages_body(model, true))
            .await
            .text()
            .await
            .unwrap();
        let events: Vec<(String, Value)> = text
            .split("\n\n")
            .filter(|e| !e.trim().is_empty())
            .map(|e| {
                let mut lines = e.lines();
                let name = lines
                    .next()
                    .unwrap()
                    .strip_prefix("event: ")
                    .unwrap()
                    .to_string();
                let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
                (name, serde_json::from_str(data).unwrap())
            })
            .collect();
        assert_eq!(events.first().unwrap().0, "message_start", "{model}");
        assert_eq!(events.last().unwrap().0, "message_stop", "{model}");
        let text: String = events
            .iter()
            .filter(|(name, _)| name == "content_block_delta")
            .filter_map(|(_, v)| v["delta"]["text"].as_str())
            .collect();
        assert!(
            text.contains("The capital of France is Paris."),
            "{model}: {text}"
        );
        let delta = events.iter().find(|(n, _)| n == "message_delta").unwrap();
        assert_eq!(delta.1["delta"]["stop_reason"], "end_turn", "{model}");
        assert!(
            delta.1["usage"]["output_tokens"].as_u64().unwrap() > 0,
            "{model}"
        );
    }
    let rows = gw.wait_usage(&account, 3).await;
    assert!(rows
        .iter()
        .all(|r| r.streamed && !r.estimated && r.cost.is_positive()));
}

/// Provider errors reach the client in its own shape, with a fitting status.
async fn provider_errors_keep_the_client_shape() {
    let (fake, gw, key, account) = setup().await;
    // Anthropic overloaded (529) → 503 for an OpenAI client.
    let overloaded =
        String::from_utf8(tokenroute_tests::fixture("anthropic/error-529.json")).unwrap();
    fake.reply(Reply::Status(529, overloaded));
    let resp = post_chat(&gw, &key, &chat(ANTHROPIC, false)).await;
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_overloaded");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Overloaded"));

    // Gemini quota (429) → 429 with the provider's Retry-After, OpenAI-shaped.
    let quota = String::from_utf8(tokenroute_tests::fixture("gemini/error-429.json")).unwrap();
    fake.reply(Reply::Status(429, quota));
    let resp = post_chat(&gw, &key, &chat(GEMINI, false)).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    let v: Value = resp.json().await.unwrap();
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Resource has been exhausted"));

    // An Anthropic client gets Anthropic's error shape, for TokenRoute's own errors too.
    let resp = post_messages(&gw, &key, &messages_body(GEMINI, false)).await;
    assert_eq!(resp.status(), 429);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    let resp = post_messages(&gw, "tr-nonsense", &messages_body(GEMINI, false)).await;
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "authentication_error");
    let mut no_max = messages_body(OPENAI, false);
    no_max.as_object_mut().unwrap().remove("max_tokens");
    let resp = post_messages(&gw, &key, &no_max).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_tokens"));

    let rows = gw.wait_usage(&account, 4).await;
    assert!(
        rows.iter()
            .all(|r| r.cost == tokenroute_domain::NanoUsd::ZERO),
        "refusals are free"
    );
}

/// Streams that stop early are never billed at zero, whatever the provider.
async fn early_stops_are_billed_for_every_dialect() {
    for (model, reply) in [
        (ANTHROPIC, Reply::Cut { after_events: 4 }),
        (ANTHROPIC, Reply::Truncated { after_events: 4 }),
        (GEMINI, Reply::Cut { after_events: 1 }),
        (GEMINI, Reply::Truncated { after_events: 1 }),
        (OPENAI, Reply::Truncated { after_events: 3 }),
    ] {
        let (fake, gw, key, account) = setup().await;
        fake.reply(reply.clone());
        let resp = post_chat(&gw, &key, &chat(model, true)).await;
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap_or_default();
        assert!(
            !text.contains("[DONE]"),
            "{model} {reply:?}: no invented ending"
        );
        let rows = gw.wait_usage(&account, 1).await;
        assert!(
            rows[0].cost.is_positive(),
            "{model} {reply:?}: {:?}",
            rows[0]
        );
        assert!(rows[0].input_tokens > 0, "{model} {reply:?}");
    }
}

/// A client that hangs up mid-stream pays for what the provider produced, whatever
/// the provider's dialect.
async fn client_disconnects_are_billed_for_every_dialect() {
    for model in [OPENAI, ANTHROPIC, GEMINI] {
        let (fake, gw, key, account) = setup().await;
        fake.reply(Reply::Spaced {
            events: 100,
            gap: std::time::Duration::from_millis(20),
        });
        let resp = post_chat(&gw, &key, &chat(model, true)).await;
        assert_eq!(resp.status(), 200, "{model}");
        let mut body = resp.bytes_stream();
        use futures_util::StreamExt;
        let first = body.next().await.unwrap().unwrap();
        assert!(!first.is_empty(), "{model}");
        drop(body); // hang up
        let rows = gw.wait_usage(&account, 1).await;
        assert!(rows[0].cancelled, "{model}: {:?}", rows[0]);
        assert!(
            rows[0].cost.is_positive() && rows[0].input_tokens > 0,
            "{model}: {:?}",
            rows[0]
        );
        assert!(
            rows[0].output_tokens > 0,
            "{model}: billed what was produced: {:?}",
            rows[0]
        );
    }
}

macro_rules! tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name().await
            }
        )*
    };
}

mod dialect {
    tests!(
        openai_client_to_anthropic_upstream,
        openai_client_streams_from_anthropic,
        openai_client_gets_anthropic_tool_calls_streamed,
        openai_client_to_gemini_upstream,
        anthropic_client_reaches_every_provider,
        anthropic_client_streams_from_every_provider,
        provider_errors_keep_the_client_shape,
        early_stops_are_billed_for_every_dialect,
        client_disconnects_are_billed_for_every_dialect,
    );
}
