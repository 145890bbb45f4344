//! A catalogue of bad input, each with the status and error code it must get, in
//! OpenAI's error shape — and after all of it, the gateway still answers a normal
//! request. Also: a slow client cannot hold a request open, a storm of bad keys from
//! one address stops reaching the store, and HTTP/2 (prior knowledge) is served.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokenroute_tests::gateway::Options;
use tokenroute_tests::{Backend, FakeOpenAi, Gateway};

const MODEL: &str = "openai/gpt-4o-mini";

async fn gateway(fake: &FakeOpenAi) -> Gateway {
    Gateway::start_with(
        Backend::Sqlite,
        fake,
        Options {
            max_body_bytes: 4 * 1024 * 1024,
            proxy_toml: "client-body-timeout-ms = 1500\nmax-messages = 100\nmax-json-depth = 32\nfailed-auth-per-client-per-minute = 20\n".into(),
            ..Options::default()
        },
    )
    .await
}

/// Sends raw bytes as a request body (with optional extra headers); returns status
/// and the error code of the body.
async fn send(
    gw: &Gateway,
    key: &str,
    body: Vec<u8>,
    headers: &[(String, String)],
) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body);
    for (name, value) in headers {
        req = req.header(name.as_str(), value.as_str());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let code = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("<not an error body: {}>", &text[..text.len().min(200)]));
    (status, code)
}

fn chat_with(content: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"model": MODEL, "messages": [{"role": "user", "content": content}]}))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_its_clear_error_and_the_gateway_keeps_serving() {
    let fake = FakeOpenAi::start().await;
    let gw = gateway(&fake).await;
    let (key, _, _) = gw.key_with_credits("hostile@example.com", "5").await;
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let many_messages: Vec<Value> = (0..101)
        .map(|_| json!({"role": "user", "content": "x"}))
        .collect();
    let many_headers: Vec<(String, String)> =
        (0..150).map(|i| (format!("x-h{i}"), "1".into())).collect();
    let catalogue: Vec<(&str, Vec<u8>, Vec<(String, String)>, u16, &str)> = vec![
        ("empty body", vec![], vec![], 400, "invalid_json"),
        ("not JSON", b"hello".to_vec(), vec![], 400, "invalid_json"),
        ("JSON not an object", b"[1, 2, 3]".to_vec(), vec![], 400, "invalid_request"),
        ("model not a string", br#"{"model": 5, "messages": [{"role":"user","content":"x"}]}"#.to_vec(), vec![], 400, "invalid_request"),
        ("messages not an array", br#"{"model": "openai/gpt-4o-mini", "messages": "x"}"#.to_vec(), vec![], 400, "invalid_request"),
        ("stream not a boolean", br#"{"model": "openai/gpt-4o-mini", "stream": "yes", "messages": [{"role":"user","content":"x"}]}"#.to_vec(), vec![], 400, "invalid_request"),
        ("max_tokens not a number", br#"{"model": "openai/gpt-4o-mini", "max_tokens": "ten", "messages": [{"role":"user","content":"x"}]}"#.to_vec(), vec![], 400, "invalid_request"),
        ("huge integer", br#"{"model": "openai/gpt-4o-mini", "max_tokens": 123456789012345678901234567890, "messages": [{"role":"user","content":"x"}]}"#.to_vec(), vec![], 400, "invalid_request"),
        ("number out of range", br#"{"model": "openai/gpt-4o-mini", "max_tokens": 1e400, "messages": [{"role":"user","content":"x"}]}"#.to_vec(), vec![], 400, "invalid_json"),
        ("deep nesting", format!(r#"{{"model": "{MODEL}", "messages": {deep}}}"#).into_bytes(), vec![], 400, "invalid_request"),
        ("10 MB body", chat_with(json!("x".repeat(10 * 1024 * 1024))), vec![], 413, "request_too_large"),
        ("invalid UTF-8", [br#"{"model": "openai/gpt-4o-mini", "messages": [{"role":"user","content":""#.as_slice(), &[0xff, 0xfe, 0xfd], br#""}]}"#].concat(), vec![], 400, "invalid_json"),
        ("raw NUL byte in a string", [br#"{"model": "openai/gpt-4o-mini", "messages": [{"role":"user","content":"a"#.as_slice(), &[0], br#"b"}]}"#].concat(), vec![], 400, "invalid_json"),
        ("unknown model", br#"{"model": "nobody/nothing", "messages": [{"role":"user","content":"x"}]}"#.to_vec(), vec![], 400, "model_not_found"),
        ("missing messages", br#"{"model": "openai/gpt-4o-mini"}"#.to_vec(), vec![], 400, "invalid_request"),
        ("too many messages", serde_json::to_vec(&json!({"model": MODEL, "messages": many_messages})).unwrap(), vec![], 400, "invalid_request"),
        ("oversized header", chat_with(json!("x")), vec![("x-big".into(), "a".repeat(70 * 1024))], 431, "request_headers_too_large"),
        ("too many headers", chat_with(json!("x")), many_headers, 431, "request_headers_too_large"),
    ];
    for (name, body, headers, status, code) in catalogue {
        let got = send(&gw, &key, body, &headers).await;
        assert_eq!(got, (status, code.to_string()), "{name}");
    }
    assert!(
        fake.requests().is_empty(),
        "none of it reached the provider"
    );

    // A client sending its body one byte a second is cut off at the body timeout.
    let addr = gw.base.trim_start_matches("http://").to_string();
    let started = Instant::now();
    let slow_key = key.clone();
    let reply = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key_for_slow}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n", key_for_slow = slow_key).unwrap();
        let mut reply = Vec::new();
        for _ in 0..10 {
            if s.write_all(b"{").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
            let mut buf = [0u8; 4096];
            s.set_nonblocking(true).unwrap();
            if let Ok(n) = s.read(&mut buf) {
                reply.extend_from_slice(&buf[..n]);
                if n > 0 {
                    break;
                }
            }
            s.set_nonblocking(false).unwrap();
        }
        String::from_utf8_lossy(&reply).to_string()
    })
    .await
    .unwrap();
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("request_timeout"), "{reply}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cut off in time: {:?}",
        started.elapsed()
    );

    // After all of that, a normal request is served.
    let (status, _) = send(
        &gw,
        &key,
        chat_with(json!("What is the capital of France?")),
        &[],
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_bad_keys_stops_reaching_the_store_and_known_keys_keep_working() {
    let fake = FakeOpenAi::start().await;
    let gw = gateway(&fake).await;
    let (key, _, _) = gw.key_with_credits("storm@example.com", "5").await;
    // The good key is in memory before the storm.
    assert_eq!(send(&gw, &key, chat_with(json!("hi")), &[]).await.0, 200);
    let unknown = || async {
        let text = reqwest::get(&gw.metrics)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find(|l| l.starts_with("tokenroute_key_cache_lookups_total{result=\"unknown\"}"))
            .and_then(|l| l.split_whitespace().last())
            .map_or(0.0, |v| v.parse::<f64>().unwrap())
    };
    let before = unknown().await;
    let mut statuses = Vec::new();
    for i in 0..60 {
        let bad = format!("tr-{}", format!("{i:0>43}"));
        statuses.push(send(&gw, &bad, chat_with(json!("x")), &[]).await);
    }
    assert!(statuses[..20].iter().all(|s| s.0 == 401), "{statuses:?}");
    assert!(
        statuses[20..]
            .iter()
            .all(|s| *s == (429, "too_many_failed_authentications".to_string())),
        "{statuses:?}"
    );
    // The store was asked about the first 20 unknown keys, and then no more.
    assert_eq!(
        unknown().await - before,
        20.0,
        "store lookups of unknown keys"
    );
    // The key this node knows still works from that address.
    assert_eq!(
        send(&gw, &key, chat_with(json!("still here")), &[]).await.0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_with_prior_knowledge_is_served() {
    let fake = FakeOpenAi::start().await;
    let gw = gateway(&fake).await;
    let (key, _, _) = gw.key_with_credits("h2@example.com", "5").await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": MODEL, "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
}
