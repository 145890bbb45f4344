//! Routing as an operator sees it, with the built-in config (`tokenroute-auto` over the
//! mock provider's models): the same 1,000 requests get the same decisions from
//! `tokenroute route simulate` in two processes, from a running `serve`, and from it
//! again after a restart; the config reloads under load (SIGHUP and file change)
//! without a failed request, and an invalid file is refused while the old one serves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{default_config_on_free_ports, last_line, tokenroute, wait_for_port, Serve, BIN};
use serde_json::{json, Value};

/// Creates an account with credit and a key; returns (key, account id, key id).
async fn key(dir: &Path, config: &str) -> (String, String, String) {
    let out = tokenroute(
        dir,
        &[
            "--config",
            config,
            "keys",
            "create",
            "--email",
            "router@example.com",
            "--credits",
            "50",
        ],
    );
    let key = last_line(&out);
    let db = dir.join("data/tokenroute.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let (key_id, account_id): (String, String) =
        sqlx::query_as("SELECT id, account_id FROM api_keys")
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    (key, account_id, key_id)
}

/// 1,000 varied requests: fresh conversations, later turns, `user`, route keys,
/// streams, JSON mode, the `auto` alias, client fallback lists.
fn requests(account: &str, key_id: &str) -> Vec<Value> {
    (0..1000)
        .map(|i| {
            let mut body = json!({
                "model": "tokenroute-auto",
                "messages": [
                    {"role": "system", "content": format!("persona {}", i % 17)},
                    {"role": "user", "content": format!("question {i}")},
                ],
            });
            let mut headers = json!({});
            match i % 8 {
                0 => body["user"] = json!(format!("user-{}", i % 97)),
                1 => headers = json!({"x-tokenroute-route-key": format!("tenant-{}", i % 31)}),
                2 => body["stream"] = json!(true),
                3 => body["model"] = json!("auto"),
                4 => body["response_format"] = json!({"type": "json_object"}),
                5 => {
                    body["model"] = json!("mock/echo");
                    body["models"] = json!(["mock/echo-large"]);
                }
                6 => {
                    let m = body["messages"].as_array_mut().unwrap();
                    m.push(json!({"role": "assistant", "content": "an answer"}));
                    m.push(json!({"role": "user", "content": "a follow-up"}));
                }
                _ => body["max_tokens"] = json!(100 + i),
            }
            json!({"request": body, "headers": headers, "account": account, "key": key_id})
        })
        .collect()
}

fn simulate(dir: &Path, config: &str, file: &Path, as_json: bool) -> String {
    let mut args = vec![
        "--config",
        config,
        "route",
        "simulate",
        "--requests",
        file.to_str().unwrap(),
    ];
    if as_json {
        args.push("--json");
    }
    let out = tokenroute(dir, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The order of targets (`model@endpoint`) of one decision.
fn order(decision: &Value) -> Vec<String> {
    decision["order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            format!(
                "{}@{}/{}",
                t["model"].as_str().unwrap(),
                t["provider"].as_str().unwrap(),
                t["endpoint"].as_str().unwrap()
            )
        })
        .collect()
}

async fn explain_all(port: u16, key: &str, requests: &[Value]) -> Vec<Vec<String>> {
    let client = reqwest::Client::new();
    let mut out = Vec::with_capacity(requests.len());
    for r in requests {
        let mut req = client
            .post(format!("http://127.0.0.1:{port}/v1/route/explain"))
            .bearer_auth(key)
            .json(&r["request"]);
        for (name, value) in r["headers"].as_object().unwrap() {
            req = req.header(name.as_str(), value.as_str().unwrap());
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        out.push(order(&resp.json().await.unwrap()));
    }
    out
}

fn serve(dir: &Path, config: &str, port: u16) -> Serve {
    let child = Command::new(BIN)
        .args(["--config", config, "serve"])
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_port(port);
    Serve(child)
}

/// SIGTERM, then the process's log.
async fn stop(mut serve: Serve) -> String {
    serve.signal("-TERM");
    serve.exited(Duration::from_secs(20)).await;
    std::io::read_to_string(serve.0.stderr.take().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_1000_requests_route_the_same_in_two_processes_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (config, port) = default_config_on_free_ports(dir.path());
    let config = config.to_str().unwrap().to_string();
    let (key, account, key_id) = key(dir.path(), &config).await;
    let requests = requests(&account, &key_id);
    let file = dir.path().join("requests.jsonl");
    let lines: Vec<String> = requests.iter().map(Value::to_string).collect();
    std::fs::write(&file, lines.join("\n")).unwrap();

    // Two separate processes decide identically.
    let first = simulate(dir.path(), &config, &file, true);
    let second = simulate(dir.path(), &config, &file, true);
    assert_eq!(first, second);
    let simulated: Vec<Vec<String>> = first
        .lines()
        .map(|l| order(&serde_json::from_str(l).unwrap()))
        .collect();
    assert_eq!(simulated.len(), 1000);

    // A running gateway decides as the simulator did, and again after a restart.
    let running = serve(dir.path(), &config, port);
    let live = explain_all(port, &key, &requests).await;
    stop(running).await;
    let running = serve(dir.path(), &config, port);
    let restarted = explain_all(port, &key, &requests).await;
    stop(running).await;
    for (i, (sim, (a, b))) in simulated
        .iter()
        .zip(live.iter().zip(&restarted))
        .enumerate()
    {
        assert_eq!(sim, a, "request {i}: simulator vs serve");
        assert_eq!(a, b, "request {i}: before vs after the restart");
    }

    // The table's shares follow the weights (3:1) for the requests left to the route.
    let table = simulate(dir.path(), &config, &file, false);
    assert!(table.contains("1000 routed, 0 not routable"), "{table}");
    let share = |model: &str| -> f64 {
        let line = table
            .lines()
            .skip_while(|l| !l.starts_with("share by model"))
            .find(|l| l.trim_start().starts_with(model))
            .unwrap_or_else(|| panic!("{model} in {table}"));
        line.trim_end_matches('%')
            .split_whitespace()
            .last()
            .unwrap()
            .parse()
            .unwrap()
    };
    // One request in 8 names mock/echo itself; the other 875 split 3:1.
    let echo = share("mock/echo ");
    assert!(
        (echo - (125.0 + 875.0 * 0.75) / 10.0).abs() < 4.0,
        "{table}"
    );
    assert!(
        (echo + share("mock/echo-large") - 100.0).abs() < 0.1,
        "{table}"
    );
}

/// The built-in config with the route's weights replaced.
fn with_weights(text: &str, echo: u32, large: u32) -> String {
    let replaced = text
        .replace(
            "{ model = \"mock/echo\", weight = 3 }",
            &format!("{{ model = \"mock/echo\", weight = {echo} }}"),
        )
        .replace(
            "{ model = \"mock/echo-large\", weight = 1 }",
            &format!("{{ model = \"mock/echo-large\", weight = {large} }}"),
        );
    assert_ne!(
        replaced, text,
        "the built-in route's candidates changed shape"
    );
    replaced
}

async fn version(port: u16, key: &str) -> String {
    let v: Value = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/route/explain"))
        .bearer_auth(key)
        .json(&json!({"model": "tokenroute-auto", "messages": [{"role": "user", "content": "v"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["config_version"].as_str().unwrap().to_string()
}

async fn wait_for_version_change(port: u16, key: &str, from: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = version(port, key).await;
        if now != from {
            return now;
        }
        assert!(Instant::now() < deadline, "the config was not reloaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_reloads_under_load_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let (config_path, port) = default_config_on_free_ports(dir.path());
    let config = config_path.to_str().unwrap().to_string();
    let original = std::fs::read_to_string(&config_path).unwrap();
    let (key, _, _) = key(dir.path(), &config).await;
    let running = serve(dir.path(), &config, port);
    let v1 = version(port, &key).await;

    // The embedded default lists tokenroute-auto.
    let models: Value = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/v1/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "tokenroute-auto"),
        "{models}"
    );

    // Load: four clients, streams and whole answers, until told to stop.
    let stop_load = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (stop_load, key) = (stop_load.clone(), key.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut results = Vec::new();
                let mut i = 0;
                while !stop_load.load(Ordering::Relaxed) {
                    i += 1;
                    let stream = i % 2 == 0;
                    let resp = client
                        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
                        .bearer_auth(&key)
                        .json(&json!({"model": "tokenroute-auto", "stream": stream,
                                      "messages": [{"role": "user", "content": format!("worker {w} request {i}")}]}))
                        .send()
                        .await;
                    let ok = match resp {
                        Ok(resp) if resp.status() == 200 => {
                            let why = resp.headers()["x-tokenroute-route"].to_str().unwrap().to_string();
                            let body = resp.text().await.unwrap_or_default();
                            let complete = if stream { body.trim_end().ends_with("data: [DONE]") } else { body.contains("\"usage\"") };
                            complete.then_some(why)
                        }
                        _ => None,
                    };
                    results.push(ok);
                }
                results
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(700)).await;
    // 1. A new file and SIGHUP.
    std::fs::write(&config_path, with_weights(&original, 1, 3)).unwrap();
    running.signal("-HUP");
    let v2 = wait_for_version_change(port, &key, &v1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 2. An invalid file: refused, the running config keeps serving.
    std::fs::write(
        &config_path,
        original.replace(
            "{ model = \"mock/echo\", weight = 3 }",
            "{ model = \"mock/nope\", weight = 3 }",
        ),
    )
    .unwrap();
    running.signal("-HUP");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        version(port, &key).await,
        v2,
        "an invalid config is not applied"
    );

    // 3. A valid file again, no signal: the change alone is picked up.
    std::fs::write(&config_path, with_weights(&original, 2, 2)).unwrap();
    let v3 = wait_for_version_change(port, &key, &v2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    stop_load.store(true, Ordering::Relaxed);
    let mut results = Vec::new();
    for w in workers {
        results.extend(w.await.unwrap());
    }
    let failed = results.iter().filter(|r| r.is_none()).count();
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed during reloads",
        results.len()
    );
    assert!(results.len() > 40, "load ran: {}", results.len());
    for version in [&v1, &v2, &v3] {
        assert!(
            results
                .iter()
                .flatten()
                .any(|why| why.ends_with(&format!("config={version}"))),
            "requests were served under config {version}"
        );
    }
    let log = stop(running).await;
    assert!(log.contains("config reload refused"), "{log}");
    assert!(
        log.contains("routes[0].candidates[0].model"),
        "the refusal names the key: {log}"
    );
}
