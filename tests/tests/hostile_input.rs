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
    // (what, body, extra headers, status, error code)
    type Case<'a> = (&'a str, Vec<u8>, Vec<(String, String)>, u16, &'a str);
    let catalogue: Vec<Case> = vec![
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
    let unknown = || gw.metric("tokenroute_key_cache_lookups_total{result=\"unknown\"}");
    let before = unknown().await;
    let mut statuses = Vec::new();
    for i in 0..60 {
        let bad = format!("tr-{i:0>43}");
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

/// One address holds at most `max-connections-per-client` connections: slow clients
/// (slowloris, headers never finished) from one address cannot take every connection.
/// The connection over the cap is told 429 in OpenAI's shape and closed; a kept-alive
/// connection counts once however many requests it carries; a closed one frees its
/// place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_more_connections_than_its_cap() {
    let fake = FakeOpenAi::start().await;
    let (gw, addr) = gateway_with_proxy(&fake, "max-connections-per-client = 8\n").await;
    let (key, _, _) = gw.key_with_credits("conns@example.com", "5").await;
    // One kept-alive client connection (reqwest's pool) and seven slow ones.
    let client = reqwest::Client::new();
    let chat = |client: &reqwest::Client| {
        client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    let first = chat(&client).await.unwrap();
    assert_eq!(first.status(), 200);
    first.text().await.unwrap();
    let mut slow: Vec<std::net::TcpStream> = (0..7)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The ninth connection is refused at once, with a body a client can read.
    let mut ninth = std::net::TcpStream::connect(&addr).unwrap();
    ninth
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    ninth.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 429 "), "{answer}");
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "too_many_connections");
    assert_eq!(refused(&gw).await, 1.0, "refused connections");
    // So is a new client's connection, in a shape OpenAI clients read.
    let (status, code) = send(&gw, &key, chat_with(json!("hi")), &[]).await;
    assert_eq!((status, code.as_str()), (429, "too_many_connections"));
    assert_eq!(refused(&gw).await, 2.0, "refused connections");

    // A kept-alive connection is counted once, however many requests it carries: the
    // eighth place, taken by one raw HTTP/1.1 connection for 20 requests.
    drop(client);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut kept = loop {
        let mut conn = std::net::TcpStream::connect(&addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        match raw_chat(&mut conn, &addr, &key) {
            (200, _) => break conn,
            // The pooled connection of the client just dropped may not be closed yet.
            other => assert!(Instant::now() < deadline, "no place: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for i in 0..20 {
        let (status, body) = raw_chat(&mut kept, &addr, &key);
        assert_eq!(
            status, 200,
            "request {i} on the kept-alive connection: {body}"
        );
    }
    let refused_before = refused(&gw).await;
    let mut extra = std::net::TcpStream::connect(&addr).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(raw_chat(&mut extra, &addr, &key).0, 429, "still full");
    assert_eq!(refused(&gw).await, refused_before + 1.0);
    drop(kept);

    // A slow client that gives up frees its place.
    drop(slow.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let fresh = reqwest::Client::new();
        match chat(&fresh).await {
            Ok(resp) if resp.status() == 200 => break,
            other => {
                assert!(Instant::now() < deadline, "place not freed: {other:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(slow);
}

/// A gateway with these `[proxy]` settings, and its data plane's `HOST:PORT` (for raw
/// connections).
async fn gateway_with_proxy(fake: &FakeOpenAi, proxy_toml: &str) -> (Gateway, String) {
    let gw = Gateway::start_with(
        Backend::Sqlite,
        fake,
        Options {
            proxy_toml: proxy_toml.into(),
            ..Options::default()
        },
    )
    .await;
    let addr = gw.base.trim_start_matches("http://").to_string();
    (gw, addr)
}

/// `tokenroute_connections_refused_total`, read from the metrics endpoint.
async fn refused(gw: &Gateway) -> f64 {
    gw.metric("tokenroute_connections_refused_total").await
}

/// One chat request on a raw HTTP/1.1 connection (kept alive); returns the status and
/// the body (content-length or chunked, read whole so the connection can carry more).
fn raw_chat(conn: &mut std::net::TcpStream, host: &str, key: &str) -> (u16, String) {
    let body = serde_json::to_string(
        &json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .unwrap();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            other => return (0, format!("connection ended in the head: {other:?}")),
        }
    }
    let head = String::from_utf8_lossy(&buf).to_lowercase();
    let status = head[9..12].parse().unwrap();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse::<usize>().unwrap());
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            conn.read_exact(&mut body).unwrap();
        }
        None => {
            while !body.ends_with(b"0\r\n\r\n") {
                conn.read_exact(&mut byte).unwrap();
                body.push(byte[0]);
            }
        }
    }
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A request's headers must be in within `client-header-timeout-ms` of their first
/// byte: a client dripping them (slowloris) is cut off, while a kept-alive connection
/// may idle between requests longer than that, and HTTP/2 connections are not timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_headers_are_cut_off_and_idle_keep_alive_is_not() {
    let fake = FakeOpenAi::start().await;
    let (gw, addr) = gateway_with_proxy(&fake, "client-header-timeout-ms = 1500\n").await;
    let (key, _, _) = gw.key_with_credits("slowloris@example.com", "5").await;

    // One byte every 200 ms: the headers are not in after 1.5 s, the connection ends.
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let head = format!("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\nx-padding: {}\r\n", "a".repeat(40));
    let started = Instant::now();
    let mut cut_after = None;
    for byte in head.as_bytes() {
        if slow.write_all(&[*byte]).is_err() {
            cut_after = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut probe = [0u8; 1];
        slow.set_nonblocking(true).unwrap();
        let ended = matches!(slow.read(&mut probe), Ok(0));
        slow.set_nonblocking(false).unwrap();
        if ended {
            cut_after = Some(started.elapsed());
            break;
        }
    }
    let cut_after = cut_after.expect("the slow client was never cut off");
    assert!(
        cut_after < Duration::from_secs(10),
        "cut off after {cut_after:?} (header timeout 1.5 s)"
    );

    // A kept-alive connection idles 2.5 s between requests (longer than the header
    // timeout): the clock starts at a request's first byte, so it keeps working.
    let mut kept = std::net::TcpStream::connect(&addr).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(raw_chat(&mut kept, &addr, &key).0, 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(raw_chat(&mut kept, &addr, &key).0, 200);

    // HTTP/2 with prior knowledge: one connection, requests 2.5 s apart.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for _ in 0..2 {
        let resp = h2
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        assert_eq!(resp.status(), 200);
        resp.text().await.unwrap();
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
}
