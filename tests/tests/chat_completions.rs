//! `POST /v1/chat/completions` end to end over real sockets, on both stores:
//! a key authenticates, the request is forwarded, its tokens and cost are metered,
//! and the ledger is debited to the nano-dollar — or the request is refused with the
//! right status in OpenAI's error shape, and nothing is charged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokenroute_domain::NanoUsd;
use tokenroute_store::LedgerKind;
use tokenroute_tests::fake_provider::fixture_events;
use tokenroute_tests::gateway::{Options, PROVIDER_KEY};
use tokenroute_tests::{Backend, FakeOpenAi, Gateway, Reply};

const MODEL: &str = "openai/gpt-4o-mini";

fn chat(stream: bool) -> Value {
    json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "stream": stream,
    })
}

async fn post(
    gw: &Gateway,
    key: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    req.send().await.unwrap()
}

fn body_of(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// Asserts an OpenAI-shaped error with this status and code; returns the message.
async fn expect_error(resp: reqwest::Response, status: u16, code: &str) -> String {
    assert_eq!(resp.status().as_u16(), status, "status");
    let request_id = resp
        .headers()
        .get("x-request-id")
        .expect("errors carry a request id")
        .to_str()
        .unwrap()
        .to_string();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], code, "{v}");
    assert_eq!(
        v["error"]["request_id"],
        request_id.as_str(),
        "the body names it too"
    );
    assert!(v["error"]["type"].is_string(), "{v}");
    let message = v["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.len() > 20,
        "a message a person can act on: {message}"
    );
    message
}

async fn non_streaming_request_is_metered_to_the_nano_dollar(backend: Backend) {
    let fake = FakeOpenAi::start().await;
    let gw = Gateway::start(backend, &fake).await;
    let (key, account, key_id) = gw.key_with_credits("alice@example.com", "10").await;

    let resp = post(&gw, Some(&key), body_of(&chat(false))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tokenroute-provider"], "openai");
    assert_eq!(resp.headers()["x-tokenroute-model"], MODEL);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "The capital of France is Paris."
    );

    // The provider saw its own key and model name, never the client's key.
    let seen = fake.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].headers["authorization"],
        format!("Bearer {PROVIDER_KEY}")
    );
    assert!(!String::from_utf8_lossy(&seen[0].body).contains(&key));
    assert_eq!(seen[0].json()["model"], "gpt-4o-mini");

    // Exactly one usage row, with the fixture's usage (24 in, 8 out) and its exact cost.
    let rows = gw.wait_usage(&account, 1).await;
    let expected = gw.price(MODEL).cost(24, 8);
    assert_eq!(expected, NanoUsd(24 * 150 + 8 * 600));
    let row = &rows[0];
    assert_eq!(row.request_id, request_id);
    assert_eq!(row.key_id, key_id);
    assert_eq!((row.input_tokens, row.output_tokens), (24, 8));
    assert_eq!(row.cost, expected);
    assert_eq!(
        (row.status, row.streamed, row.estimated),
        (200, false, false)
    );
    assert_eq!(
        (row.model.as_str(), row.provider.as_str()),
        (MODEL, "openai")
    );

    // And a ledger debit equal to the cost, to the nano-dollar.
    let ledger = gw.store.ledger(&account, 10).await.unwrap();
    let debits: Vec<_> = ledger.iter().filter(|e| e.kind == "usage").collect();
    assert_eq!(debits.len(), 1);
    assert_eq!(debits[0].amount, -expected);
    let debit = gw.store.debit_of_request(&request_id).await.unwrap();
    assert_eq!(debit.as_ref(), Some(debits[0]), "the request's debit");
    assert_eq!(debits[0].note.as_deref(), Some("1 request"));
    assert_eq!(
        gw.store.balance(&account).await.unwrap(),
        NanoUsd(10_000_000_000) - expected
    );
}

/// The stream as the client should see it: the fixture's events exactly, the usage
/// chunk (always sent) with its cost added.
fn expected_stream() -> String {
    fixture_events(true)
        .iter()
        .map(|b| {
            let event = String::from_utf8(b.to_vec()).unwrap();
            if !event.contains("\"choices\":[]") {
                return event;
            }
            let mut json: Value =
                serde_json::from_str(event.strip_prefix("data: ").unwrap().trim_end()).unwrap();
            json["usage"]["cost"] = json!(0.0000084);
            format!("data: {json}\n\n")
        })
        .collect()
}

async fn streaming_request_is_metered_from_the_usage_chunk(backend: Backend) {
    let fake = FakeOpenAi::start().await;
    let gw = Gateway::start(backend, &fake).await;
    let (key, account, _) = gw.key_with_credits("bob@example.com", "1").await;

    let resp = post(&gw, Some(&key), body_of(&chat(true))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    // TokenRoute asked the provider for usage on its own behalf, and the client gets
    // the usage chunk — with its cost — even though it did not ask.
    assert_eq!(
        fake.requests()[0].json()["stream_options"]["include_usage"],
        true
    );
    assert_eq!(text, expected_stream());
    assert!(text.ends_with("data: [DONE]\n\n"));

    let rows = gw.wait_usage(&account, 1).await;
    assert_eq!((rows[0].input_tokens, rows[0].output_tokens), (24, 8));
    assert_eq!(rows[0].cost, gw.price(MODEL).cost(24, 8));
    assert!(rows[0].streamed && !rows[0].estimated && !rows[0].cancelled);
    assert_eq!(
        gw.store.balance(&account).await.unwrap(),
        NanoUsd(1_000_000_000) - rows[0].cost
    );
}

async fn streaming_with_include_usage_gets_the_same_stream(backend: Backend) {
    let fake = FakeOpenAi::start().await;
    let gw = Gateway::start(backend, &fake).await;
    let (key, account, _) = gw.key_with_credits("carol@example.com", "1").await;
    let mut body = chat(true);
    body["stream_options"] = json!({"include_usage": true});
    let text = post(&gw, Some(&key), body_of(&body))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(text, expected_stream());
    gw.wait_usage(&account, 1).await;
}

/// Pingora replays only 64 KiB of a body; TokenRoute must forward 2 MiB whole.
async fn two_mib_requests_are_forwarded_whole(backend: Backend) {
    let fake = FakeOpenAi::start().await;
    let gw = Gateway::start(backend, &fake).await;
    let (key, account, _) = gw.key_with_credits("dave@example.com", "10").await;
    let long = "lorem ipsum dolor sit amet ".repeat(2 * 1024 * 1024 / 27 + 1);
    for stream in [false, true] {
        // `model` after `messages`, as many SDKs serialize it.
        let body = format!(
            r#"{{"messages":[{{"role":"user","content":"{long}"}}],"stream":{stream},"model":"{MODEL}"}}"#
        );
        assert!(body.len() > 2 * 1024 * 1024);
        let resp = post(&gw, Some(&key), body).await;
        assert_eq!(resp.status(), 200, "stream={stream}");
        let text = resp.text().await.unwrap();
        assert!(text.contains("Paris"), "stream={stream}");
        let got = fake.requests().last().unwrap().json();
        assert_eq!(
            got["messages"][0]["content"].as_str().unwrap(),
            long,
            "stream={stream}"
        );
    }
    let rows = gw.wait_usage(&account, 2).await;
    assert!(rows.iter().all(|r| r.status == 200 && r.cost.is_positive()));
}

/// A request reaches the provider as one TCP segment, header and body together (as
/// nginx sends it): every extra segment is one more wake-up of the other side and one
/// more trip through both kernels. Read from the provider's side of the connection
/// (`ss`'s `data_segs_in`), so it does not depend on how reads happen to coalesce.
async fn a_request_reaches_the_provider_in_one_segment(backend: Backend) {
    let fake = FakeOpenAi::start().await;
    let gw = Gateway::start(backend, &fake).await;
    let (key, _, _) = gw.key_with_credits("dora@example.com", "10").await;
    let long = "lorem ipsum ".repeat(8 * 1024 / 12);
    // A small body (buffered with the header) and one larger than the write buffer.
    for content in ["hi", long.as_str()] {
        let mut body = chat(false);
        body["messages"][0]["content"] = json!(content);
        let resp = post(&gw, Some(&key), body_of(&body)).await;
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    assert_eq!(fake.requests().len(), 2);
    let provider_side = format!(":{}", fake.addr.port());
    assert_eq!(data_segments(&["sport", "=", &provider_side]), 2);
}

/// An answer of a few KiB reaches the client as one TCP segment, header and body
/// together, as it does with nginx (counted on the client's side of the connection).
async fn an_answer_of_a_few_kib_reaches_the_client_in_one_segment(backend: Backend) {
    let fake = FakeOpenAi::start().await;
    let gw = Gateway::start(backend, &fake).await;
    let (key, _, _) = gw.key_with_credits("dina@example.com", "10").await;
    let content = "Paris is the capital of France. ".repeat(3 * 1024 / 32);
    fake.reply(Reply::Status(
        200,
        json!({
            "id": "chatcmpl-few-kib",
            "object": "chat.completion",
            "created": 1_741_570_283,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }],
            "usage": {"prompt_tokens": 24, "completion_tokens": 700, "total_tokens": 724},
        })
        .to_string(),
    ));
    let port = gw.base.rsplit(':').next().unwrap();
    // One client, so that its connection stays open (kept alive) to be counted.
    let client = reqwest::Client::new();
    let resp = client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(body_of(&chat(false)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let answer = resp.bytes().await.unwrap();
    assert!(answer.len() > 3 * 1024, "{}", answer.len());
    assert_eq!(data_segments(&["dport", "=", &format!(":{port}")]), 1);
}

/// The data segments received (`ss -tin`'s `data_segs_in`), summed over the
/// established connections that `filter` (an `ss` filter, e.g. `dport = :8080`) selects.
fn data_segments(filter: &[&str]) -> u64 {
    let out = std::process::Command::new("ss")
        .args(["-Htin", "state", "established"])
        .args(filter)
        .output()
        .expect("ss (iproute2) runs");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let counts: Vec<u64> = text
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("data_segs_in:"))
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(!counts.is_empty(), "no connection ({filter:?}): {text}");
    counts.iter().sum()
}

async fn requests_without_a_valid_key_get_401(backend: Backend) {
    let fake = FakeOpenAi::start().await;
    let gw = Gateway::start(backend, &fake).await;
    let body = body_of(&chat(false));
    expect_error(post(&gw, None, body.clone()).await, 401, "missing_api_key").await;
    expect_error(
        post(&gw, Some("sk-not-ours"), body.clone()).await,
        401,
        "invalid_api_key",
    )
    .await;
    let unknown = tokenroute_domain::ApiKey::generate();
    expect_error(
        post(&gw, Some(unknown.plaintext()), body).await,
        401,
        "invalid_api_key",
    )
    .await;
    assert!(fake.requests().is_empty(), "nothing reached the provider");
}

/// The status of a chat completion sent with `key`.
async fn status_of(gw: &Gateway, key: &str) -> u16 {
    post(gw, Some(key), body_of(&chat(false)))
        .await
        .status()
        .as_u16()
}

/// A key stays in memory — no store read per request, though a client calls less
/// often than once a second — and a change made by another process through the store
/// (as `tokenroute keys suspend/revoke` does) reaches the proxy through the store's
/// change log within a poll, although the key cache's TTL is a minute.
async fn a_revoked_key_is_refused(backend: Backend) {
    let fake = FakeOpenAi::start().await;
    let opts = Options {
        key_cache_ttl_ms: 60_000,
        ..Options::default()
    };
    let gw = Gateway::start_with(backend, &fake, opts).await;
    let (key, account, key_id) = gw.key_with_credits("erin@example.com", "1").await;
    // Sporadic calls, 1.6 s in all: the key is read from the store once.
    for _ in 0..4 {
        assert_eq!(status_of(&gw, &key).await, 200);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let misses = "tokenroute_key_cache_lookups_total{result=\"miss\"}";
    assert_eq!(gw.metric(misses).await, 1.0, "one store read for the key");

    // Suspended, lifted, revoked — each heard within 1 s.
    let within_a_second = |want: u16| {
        let (gw, key) = (&gw, &key);
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(1);
            loop {
                let got = status_of(gw, key).await;
                if got == want {
                    return;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "still {got} a second after the change (want {want})"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    gw.store.set_key_suspended(&key_id, true).await.unwrap();
    within_a_second(403).await;
    gw.store.set_key_suspended(&key_id, false).await.unwrap();
    within_a_second(200).await;
    assert!(gw.store.revoke_key(&key_id).await.unwrap());
    within_a_second(401).await;
    let message = expect_error(
        post(&gw, Some(&key), body_of(&chat(false))).await,
        401,
        "revoked_api_key",
    )
    .await;
    assert!(message.contains("revoked"));
    let served = fake.requests().len();
    gw.wait_usage(&account, served).await;
}

async fn an_exhausted_balance_gets_402_and_no_charge(backend: Backend) {
    let fake = FakeOpenAi::start().await;
    let gw = Gateway::start(backend, &fake).await;
    let (key, account, _) = gw.key_with_credits("frank@example.com", "0").await;
    let message = expect_error(
        post(&gw, Some(&key), body_of(&chat(false))).await,
        402,
        "insufficient_credits",
    )
    .await;
    assert!(message.contains("$0.00"), "{message}");
    assert!(fake.requests().is_empty());
    // The refusal is recorded (metadata of every call, [P3]) at no cost.
    let rows = gw.wait_usage(&account, 1).await;
    assert_eq!((rows[0].status, rows[0].cost), (402, NanoUsd::ZERO));
    assert_eq!(gw.store.balance(&account).await.unwrap(), NanoUsd::ZERO);

    // A top-up booked elsewhere (another process's store handle) is usable within
    // `proxy.balance-refresh-ms` (1 s) and the refresher's coalescing.
    let booked = gw
        .store
        .book(
            &account,
            LedgerKind::TopUp,
            NanoUsd(1_000_000_000),
            "top-up-elsewhere",
            None,
        )
        .await
        .unwrap();
    assert!(booked);
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let got = status_of(&gw, &key).await;
        if got == 200 {
            break;
        }
        assert_eq!(got, 402);
        assert!(
            std::time::Instant::now() < deadline,
            "the top-up was not seen within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn malformed_requests_get_400(backend: Backend) {
    let fake = FakeOpenAi::start().await;
    let gw = Gateway::start(backend, &fake).await;
    let (key, account, _) = gw.key_with_credits("grace@example.com", "1").await;
    expect_error(
        post(&gw, Some(&key), "{\"model\": ").await,
        400,
        "invalid_json",
    )
    .await;
    let mut unknown = chat(false);
    unknown["model"] = json!("nobody/nothing");
    let message = expect_error(
        post(&gw, Some(&key), body_of(&unknown)).await,
        400,
        "model_not_found",
    )
    .await;
    assert!(message.contains("nobody/nothing"));
    let no_messages = json!({"model": MODEL});
    expect_error(
        post(&gw, Some(&key), body_of(&no_messages)).await,
        400,
        "invalid_request",
    )
    .await;
    assert!(fake.requests().is_empty());
    let rows = gw.wait_usage(&account, 3).await;
    assert!(rows
        .iter()
        .all(|r| r.status == 400 && r.cost == NanoUsd::ZERO));
    assert_eq!(
        gw.store.balance(&account).await.unwrap(),
        NanoUsd(1_000_000_000)
    );
}

async fn a_body_over_the_limit_gets_413(backend: Backend) {
    let fake = FakeOpenAi::start().await;
    let opts = Options {
        max_body_bytes: 1024 * 1024,
        ..Options::default()
    };
    let gw = Gateway::start_with(backend, &fake, opts).await;
    let (key, _, _) = gw.key_with_credits("heidi@example.com", "1").await;
    let big = format!(
        r#"{{"model":"{MODEL}","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    expect_error(post(&gw, Some(&key), big).await, 413, "request_too_large").await;
    // Without a Content-Length (chunked upload), the limit holds while reading, and
    // the client still gets its 413 when it goes on sending long after the limit:
    // the proxy reads what is still coming before it closes, as a reset could cost
    // the client the answer.
    let huge = format!(
        r#"{{"model":"{MODEL}","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(16 * 1024 * 1024)
    );
    let chunks = futures_util::stream::iter(
        huge.into_bytes()
            .chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let resp = post(&gw, Some(&key), reqwest::Body::wrap_stream(chunks)).await;
    expect_error(resp, 413, "request_too_large").await;
    // Whether a client loses the 413 to the reset is a race, so it is also checked
    // directly: a client writing its whole chunked body before reading can send all
    // of it, and then reads the 413.
    let (sent, reply) = send_whole_then_read(&gw, &key, 16 * 1024 * 1024).await;
    assert!(sent, "the proxy stopped reading the refused body: {reply}");
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("request_too_large"), "{reply}");
    assert!(fake.requests().is_empty());
}

/// Sends a chunked body of `len` bytes over a plain socket, all of it before reading;
/// returns whether every byte could be written, and what the proxy answered.
async fn send_whole_then_read(gw: &Gateway, key: &str, len: usize) -> (bool, String) {
    use std::io::{Read, Write};
    let addr = gw.base.trim_start_matches("http://").to_string();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "x".repeat(64 * 1024));
        let sent = (0..len / (64 * 1024)).all(|_| s.write_all(chunk.as_bytes()).is_ok())
            && s.write_all(b"0\r\n\r\n").is_ok();
        let mut reply = Vec::new();
        let reply = match s.read_to_end(&mut reply) {
            Ok(_) => String::from_utf8_lossy(&reply).to_string(),
            Err(e) => format!("{e} after {} bytes", reply.len()),
        };
        (sent, reply)
    })
    .await
    .unwrap()
}

async fn provider_failures_get_502_or_504_and_no_charge(backend: Backend) {
    let fake = FakeOpenAi::start().await;
    let opts = Options {
        read_timeout_ms: 300,
        ..Options::default()
    };
    let gw = Gateway::start_with(backend, &fake, opts).await;
    let (key, account, _) = gw.key_with_credits("ivan@example.com", "1").await;

    let mut dead = chat(false);
    dead["model"] = json!("dead/model");
    let message = expect_error(
        post(&gw, Some(&key), body_of(&dead)).await,
        502,
        "upstream_unavailable",
    )
    .await;
    assert!(message.contains("dead"), "{message}");

    fake.reply(Reply::Status(
        500,
        r#"{"error":{"message":"The server had an error"}}"#.into(),
    ));
    let message = expect_error(
        post(&gw, Some(&key), body_of(&chat(false))).await,
        502,
        "upstream_failed",
    )
    .await;
    assert!(message.contains("500"), "{message}");

    fake.reply(Reply::Hang);
    expect_error(
        post(&gw, Some(&key), body_of(&chat(true))).await,
        504,
        "upstream_timeout",
    )
    .await;

    // A provider's own refusal of the client's request (429) is relayed as the provider said it.
    let limited = String::from_utf8(tokenroute_tests::fixture("openai/error-429.json")).unwrap();
    fake.reply(Reply::Status(429, limited));
    let resp = post(&gw, Some(&key), body_of(&chat(false))).await;
    assert_eq!(resp.status(), 429);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");

    // What a provider echoes of a credential — TokenRoute's key for it, the client's
    // key, any `Bearer` token — is redacted before the refusal is relayed.
    fake.reply(Reply::Status(
        400,
        format!(
            r#"{{"error":{{"message":"Invalid request from {PROVIDER_KEY}, echoing Authorization: Bearer {key} and {key}","type":"invalid_request_error"}}}}"#
        ),
    ));
    let resp = post(&gw, Some(&key), body_of(&chat(false))).await;
    assert_eq!(resp.status(), 400);
    let text = resp.text().await.unwrap();
    assert!(
        !text.contains(PROVIDER_KEY) && !text.contains(&key),
        "a credential reached the client: {text}"
    );
    assert!(text.contains("Invalid request from [redacted]"), "{text}");

    let rows = gw.wait_usage(&account, 5).await;
    let mut statuses: Vec<u16> = rows.iter().map(|r| r.status).collect();
    statuses.sort();
    assert_eq!(statuses, vec![400, 429, 502, 502, 504]);
    assert!(rows.iter().all(|r| r.cost == NanoUsd::ZERO));
    assert_eq!(
        gw.store.balance(&account).await.unwrap(),
        NanoUsd(1_000_000_000)
    );
}

/// A stream the provider cuts before its usage: the client is told in-band, and
/// billed a marked estimate of what was produced.
async fn a_stream_cut_by_the_provider_is_billed_as_a_marked_estimate(backend: Backend) {
    let fake = FakeOpenAi::start().await;
    let gw = Gateway::start(backend, &fake).await;
    let (key, account, _) = gw.key_with_credits("judy@example.com", "1").await;
    fake.reply(Reply::Cut { after_events: 4 });
    let resp = post(&gw, Some(&key), body_of(&chat(true))).await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    while let Some(Ok(chunk)) = body.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("The capital"), "{text}");
    assert!(
        text.contains("upstream_failed"),
        "the client learns the stream broke: {text}"
    );
    let rows = gw.wait_usage(&account, 1).await;
    assert!(rows[0].estimated);
    assert!(rows[0].output_tokens > 0 && rows[0].cost.is_positive());
}

/// The first usage after a quiet spell reaches the store one commit interval after it
/// is on disk, not at once: a client calling in a loop sends its next request as the
/// answer ends, and the commit would run on the same core just then. Nothing waits for
/// it (balances are kept in memory) and nothing is lost: the row arrives.
async fn usage_after_a_quiet_spell_is_committed_one_interval_later(backend: Backend) {
    let fake = FakeOpenAi::start().await;
    let opts = Options {
        usage_toml: "commit-interval-ms = 2000\n".into(),
        ..Options::default()
    };
    let gw = Gateway::start_with(backend, &fake, opts).await;
    let (key, account, _) = gw.key_with_credits("alice@example.com", "10").await;

    let resp = post(&gw, Some(&key), body_of(&chat(false))).await;
    assert_eq!(resp.status(), 200);
    // The usage was on disk before the answer's body was sent.
    let answered = std::time::Instant::now();
    resp.bytes().await.unwrap();
    let rows = gw.wait_usage(&account, 1).await;
    assert!(
        answered.elapsed() >= Duration::from_millis(1500),
        "committed {:?} after the answer, before the 2 s interval",
        answered.elapsed()
    );
    assert_eq!((rows[0].input_tokens, rows[0].output_tokens), (24, 8));
}

/// The spool writes usage into a segment file zeroed ahead of use, in place, so that
/// the fsync every answer waits for does not change the file's size (no journal
/// commit); the file stays its full size, and the event is read back from it whole.
async fn usage_is_spooled_in_place_into_a_segment_zeroed_ahead_of_use(backend: Backend) {
    const SEGMENT: u64 = 64 * 1024;
    let fake = FakeOpenAi::start().await;
    let opts = Options {
        usage_toml: format!("spool-segment-bytes = {SEGMENT}\n"),
        ..Options::default()
    };
    let gw = Gateway::start_with(backend, &fake, opts).await;
    let (key, account, _) = gw.key_with_credits("alice@example.com", "10").await;
    let prepared = gw.spool_dir().join("prepared.zero");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !prepared.exists() {
        assert!(std::time::Instant::now() < deadline, "no zeroed segment");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let resp = post(&gw, Some(&key), body_of(&chat(false))).await;
    assert_eq!(resp.status(), 200);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    resp.bytes().await.unwrap();
    let rows = gw.wait_usage(&account, 1).await;
    assert_eq!(rows[0].request_id, request_id);

    let segment = gw.spool_dir().join("usage-000000000001.jsonl");
    let bytes = std::fs::read(&segment).unwrap();
    assert_eq!(
        bytes.len() as u64,
        SEGMENT,
        "written in place, not appended"
    );
    let data_end = bytes.iter().position(|&b| b == 0).unwrap();
    let data = std::str::from_utf8(&bytes[..data_end]).unwrap();
    assert_eq!(data.lines().count(), 1, "{data}");
    assert!(data.contains(&request_id), "{data}");
    assert!(bytes[data_end..].iter().all(|&b| b == 0));
}

/// The usage writer commits from a thread of its own at `usage.writer-nice`, and on
/// SQLite so do the connection threads it opens, so that commits yield the core to
/// requests; the data plane and the runtime serving key reads keep nice 0. (Other
/// gateways of this test process run at the default, 10: 7 is this one's.)
async fn usage_is_committed_from_threads_below_the_data_planes_priority(backend: Backend) {
    let fake = FakeOpenAi::start().await;
    let opts = Options {
        usage_toml: "writer-nice = 7\n".into(),
        ..Options::default()
    };
    let gw = Gateway::start_with(backend, &fake, opts).await;
    let (key, account, _) = gw.key_with_credits("alice@example.com", "10").await;
    let resp = post(&gw, Some(&key), body_of(&chat(false))).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    assert_eq!(gw.wait_usage(&account, 1).await.len(), 1);

    let threads = threads_and_nice();
    let at_7 = |name: &str| threads.iter().any(|(n, nice)| n == name && *nice == 7);
    assert!(at_7("tokenroute-usag"), "{threads:?}");
    if backend == Backend::Sqlite {
        assert!(at_7("sqlx-sqlite-wor"), "{threads:?}");
    }
    for (name, nice) in &threads {
        if name == "TokenRoute data" || name == "tokenroute-app" {
            assert_eq!(*nice, 0, "{name}: {threads:?}");
        }
    }
}

/// This process's threads: (name as the kernel keeps it, 15 bytes at most; nice).
fn threads_and_nice() -> Vec<(String, i32)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue; // ended meanwhile
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        // After the name: state, then 15 more fields up to nice, the 19th of the line.
        let nice = stat[close + 1..].split_whitespace().nth(16).unwrap();
        threads.push((stat[open + 1..close].to_string(), nice.parse().unwrap()));
    }
    threads
}

tokenroute_tests::on_both_stores!(
    non_streaming_request_is_metered_to_the_nano_dollar,
    streaming_request_is_metered_from_the_usage_chunk,
    streaming_with_include_usage_gets_the_same_stream,
    two_mib_requests_are_forwarded_whole,
    a_request_reaches_the_provider_in_one_segment,
    an_answer_of_a_few_kib_reaches_the_client_in_one_segment,
    requests_without_a_valid_key_get_401,
    a_revoked_key_is_refused,
    an_exhausted_balance_gets_402_and_no_charge,
    malformed_requests_get_400,
    a_body_over_the_limit_gets_413,
    provider_failures_get_502_or_504_and_no_charge,
    a_stream_cut_by_the_provider_is_billed_as_a_marked_estimate,
    usage_after_a_quiet_spell_is_committed_one_interval_later,
    usage_is_spooled_in_place_into_a_segment_zeroed_ahead_of_use,
    usage_is_committed_from_threads_below_the_data_planes_priority,
);
