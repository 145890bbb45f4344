//! Zero-downtime restart: under a bounded load with open streams, a new `serve
//! --upgrade` takes over from the running one (SIGQUIT): no request fails, every
//! stream completes, the old process exits cleanly after writing its usage, and every
//! answered request has exactly one usage row.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::convert::Infallible;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::response::Response;
use axum::routing::post;
use axum::Json;
use common::{default_config_on_free_ports, last_line, tokenroute, wait_for_port, Serve, BIN};
use futures_util::stream;
use serde_json::{json, Value};

/// An OpenAI-compatible upstream whose streams take ~1.2 s (12 events, 100 ms apart),
/// so that streams are open while the processes change over.
async fn slow_upstream() -> String {
    async fn chat(Json(req): Json<Value>) -> Response {
        let usage = json!({"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21});
        if req["stream"] != true {
            let body = json!({"id": "x", "object": "chat.completion", "created": 1, "model": "gpt",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
                "usage": usage});
            return Response::builder()
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap();
        }
        let events = stream::unfold(0, move |i| {
            let usage = usage.clone();
            async move {
                let event = match i {
                    0..12 => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        json!({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "gpt",
                               "choices": [{"index": 0, "delta": {"content": "word "}, "finish_reason": null}]})
                            .to_string()
                    }
                    12 => json!({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "gpt",
                                 "choices": [], "usage": usage})
                        .to_string(),
                    13 => "[DONE]".to_string(),
                    _ => return None,
                };
                Some((
                    Ok::<_, Infallible>(Bytes::from(format!("data: {event}\n\n"))),
                    i + 1,
                ))
            }
        });
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(events))
            .unwrap()
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            axum::Router::new().route("/v1/chat/completions", post(chat)),
        )
        .await
        .unwrap()
    });
    format!("http://{addr}/v1")
}

fn serve(dir: &Path, config: &str, upgrade: bool) -> Serve {
    let mut args = vec!["--config", config, "serve"];
    if upgrade {
        args.push("--upgrade");
    }
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null());
    common::log_to_suite_or_discard(&mut cmd, "upgrade");
    Serve(cmd.spawn().unwrap())
}

/// One answered request: its generation id, and whether it was whole.
type Outcome = Result<String, String>;

async fn one_request(client: &reqwest::Client, port: u16, key: &str, stream: bool) -> Outcome {
    let resp = client
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "slow/gpt", "stream": stream,
                      "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = resp.status();
    let id = resp
        .headers()
        .get("x-tokenroute-generation-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = resp.text().await.map_err(|e| format!("body: {e}"))?;
    if status != 200 {
        return Err(format!("{status}: {body}"));
    }
    let whole = if stream {
        body.trim_end().ends_with("data: [DONE]") && body.matches("word ").count() == 12
    } else {
        body.contains("\"usage\"")
    };
    if whole {
        Ok(id)
    } else {
        Err(format!("incomplete answer: {body}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_upgrade_under_load_fails_no_request_and_completes_every_stream() {
    let upstream = slow_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let (config_path, port) = default_config_on_free_ports(dir.path());
    let text = std::fs::read_to_string(&config_path)
        .unwrap()
        .replace("grace-period-secs = 0", "grace-period-secs = 5")
        + &format!(
            r#"
[[providers]]
id = "slow"
kind = "openai"
base-url = "{upstream}"

[[models]]
id = "slow/gpt"
upstream = "gpt"
input-usd-per-mtok = "1"
output-usd-per-mtok = "2"
context-window = 100000
max-output-tokens = 1000
"#
        );
    std::fs::write(&config_path, text).unwrap();
    let config = config_path.to_str().unwrap().to_string();
    let key = last_line(&tokenroute(
        dir.path(),
        &[
            "--config",
            &config,
            "keys",
            "create",
            "--email",
            "up@example.com",
            "--credits",
            "100",
        ],
    ));

    let old = serve(dir.path(), &config, false);
    wait_for_port(port);

    // Load: six clients, half of them streaming, a new connection per request (see
    // docs/operations.md on keep-alive connections during a restart).
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let (stop, key) = (stop.clone(), key.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(0)
                    .build()
                    .unwrap();
                let mut outcomes = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    outcomes.push(one_request(&client, port, &key, w % 2 == 0).await);
                }
                outcomes
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // The new process waits on the upgrade socket; then the old one is told to go.
    let new = serve(dir.path(), &config, true);
    let socket = dir.path().join("data/upgrade.sock");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "the new process did not wait for the sockets"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut old = old;
    old.signal("-QUIT");
    let status = old.exited(Duration::from_secs(40)).await;
    assert!(
        status.success(),
        "the old process exits cleanly: {status:?}"
    );
    // The new one alone, for a while.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Vec::new();
    for w in workers {
        outcomes.extend(w.await.unwrap());
    }
    let failures: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        outcomes.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(outcomes.len() > 30, "the load ran: {}", outcomes.len());

    // Every answer is billed once, whichever process served it.
    let mut new = new;
    new.signal("-TERM");
    new.exited(Duration::from_secs(30)).await;
    let ids: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    let db = dir.path().join("data/tokenroute.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let rows: Vec<(String,)> = sqlx::query_as("SELECT request_id FROM usage_events")
        .fetch_all(&pool)
        .await
        .unwrap();
    let stored: std::collections::HashSet<String> = rows.into_iter().map(|r| r.0).collect();
    for id in &ids {
        assert!(stored.contains(*id), "request {id} has no usage row");
    }
    assert_eq!(
        stored.len(),
        ids.len(),
        "one row per answered request, no more"
    );
    pool.close().await;
    let verify = tokenroute(dir.path(), &["--config", &config, "ledger", "verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}
