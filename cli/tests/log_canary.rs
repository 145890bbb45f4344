//! [P3] [P6] Nothing the process writes holds a prompt or a completion when request
//! debugging is off: `tokenroute serve` runs with debug-level logging (as JSON lines,
//! which the test checks too), answers a
//! non-streamed and a streamed request whose prompt carries a canary (the built-in mock
//! provider echoes it into the completion), stops; then its log output and every file
//! of its data folder — the SQLite database file itself, the usage spool, the access
//! logs — are searched byte by byte. See `tests/policy/README.md`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tokenroute");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn contains(bytes: &[u8], needle: &str) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn files_with(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_with(&path, needle));
        } else if contains(&std::fs::read(&path).unwrap_or_default(), needle) {
            found.push(path.display().to_string());
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p03_no_log_line_or_file_holds_a_prompt_or_a_completion() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("work");
    std::fs::create_dir_all(&data).unwrap();
    let port = free_port();
    let config = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../conf/tokenroute.toml"
    ))
    .unwrap()
    .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
    .replace("127.0.0.1:8081", &format!("127.0.0.1:{}", free_port()))
    .replace("grace-period-secs = 5", "grace-period-secs = 0")
    .replace("127.0.0.1:9090", "127.0.0.1:0")
    .replace("format = \"text\"", "format = \"json\"")
    // No active checks: the request below must try the keyed provider.
    .replace("health-check-interval-ms = 10000", "health-check-interval-ms = 0")
        // A provider with a key, unreachable: its key must show nowhere either.
        + "\n[[providers]]\nid = \"keyed\"\nkind = \"openai\"\nbase-url = \"http://127.0.0.1:1/v1\"\napi-key-env = \"CANARY_PROVIDER_KEY\"\n\n[[models]]\nid = \"keyed/x\"\ninput-usd-per-mtok = \"1\"\noutput-usd-per-mtok = \"1\"\ncontext-window = 1000\n";
    let provider_key = format!("sk-canary{}", uuid::Uuid::new_v4().simple());
    let config_path = dir.path().join("tokenroute.toml");
    std::fs::write(&config_path, config).unwrap();
    let config_path = config_path.to_str().unwrap().to_string();
    let logs = dir.path().join("serve.log");
    let log_file = std::fs::File::create(&logs).unwrap();
    let mut serve = Command::new(BIN)
        .args(["--config", &config_path, "serve"])
        .current_dir(&data)
        .env("RUST_LOG", "debug")
        .env("CANARY_PROVIDER_KEY", &provider_key)
        .stdout(Stdio::from(log_file.try_clone().unwrap()))
        .stderr(Stdio::from(log_file))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let created = Command::new(BIN)
        .args([
            "--config",
            &config_path,
            "keys",
            "create",
            "--email",
            "c@example.com",
            "--credits",
            "1",
        ])
        .current_dir(&data)
        .env("CANARY_PROVIDER_KEY", &provider_key)
        .output()
        .unwrap();
    assert!(created.status.success());
    let key = String::from_utf8(created.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_string();

    let canary = format!("canary{}", uuid::Uuid::new_v4().simple());
    for stream in [false, true] {
        let answer = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&serde_json::json!({"model": "mock/echo", "stream": stream,
                                      "messages": [{"role": "user", "content": canary}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let text = answer.text().await.unwrap();
        assert!(text.contains(&canary), "the mock echoes the prompt: {text}");
    }
    // A request to the keyed (unreachable) provider, and one with a wrong key.
    let failed = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"model": "keyed/x", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 502);
    let wrong_key = format!("tr-{}", uuid::Uuid::new_v4().simple());
    let refused = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .bearer_auth(&wrong_key)
        .json(&serde_json::json!({"model": "mock/echo", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    // Let the usage writer and the access log catch up, then stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = serve.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while serve.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "serve did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }

    let log_text = std::fs::read_to_string(&logs).unwrap();
    assert!(
        log_text.contains("DEBUG"),
        "debug logging was on: {log_text}"
    );
    // `log.format = "json"`: every line is one JSON object with its level.
    for line in log_text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
    }
    assert!(
        log_text.contains("/v1/chat/completions"),
        "requests were logged"
    );
    assert!(
        !log_text.contains(&canary),
        "a log line holds the prompt or completion"
    );
    let in_data = files_with(&data, &canary);
    assert!(in_data.is_empty(), "found in {in_data:?}");
    // No key — ours (valid or not) or the provider's — in a log line or a data file.
    for (what, secret) in [
        ("the client's key", &key[3..]),
        ("a wrong key", &wrong_key[3..]),
        ("the provider's key", provider_key.as_str()),
    ] {
        assert!(!log_text.contains(secret), "a log line holds {what}");
        let found = files_with(&data, secret);
        assert!(found.is_empty(), "{what} found in {found:?}");
    }
    // The folder held what it should: the database, the spool, the access logs.
    assert!(data.join("data/tokenroute.db").exists());
    assert!(data.join("data/access-logs").is_dir());
    assert!(!files_with(&data.join("data/access-logs"), "/v1/chat/completions").is_empty());
}
