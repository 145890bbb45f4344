//! [P5] an access log line per request on both planes — time, client IP, method, URL,
//! status, user agent — with no secrets in URLs; [P16] kept 30 days, then deleted.

use std::time::Duration;

use serde_json::Value;
use tokenroute_control_plane::retention;
use tokenroute_domain::clock::now_ms;
use tokenroute_tests::gateway::Options;
use tokenroute_tests::{on_both_stores, Backend, FakeOpenAi, Gateway};

fn lines(gw: &Gateway) -> Vec<Value> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(gw.access_log_dir()).unwrap().flatten() {
        // A line being written right now may be cut; the next read has it whole.
        for line in std::fs::read_to_string(entry.path()).unwrap().lines() {
            if let Ok(value) = serde_json::from_str(line) {
                out.push(value);
            }
        }
    }
    out
}

async fn p05_p16_access_logs(backend: Backend) {
    let fake = FakeOpenAi::start().await;
    let gw = Gateway::start_with(
        backend,
        &fake,
        Options {
            // The test client is 127.0.0.1; as a trusted proxy, its X-Forwarded-For counts.
            log_toml: "trusted-proxies = [\"127.0.0.1/32\"]\n".into(),
            ..Options::default()
        },
    )
    .await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("policy-test/1.0")
        .build()
        .unwrap();
    let (key, _, _) = gw.key_with_credits("logs@example.com", "1").await;
    let api = client
        .get(gw.url("/v1/models?api_key=sk-should-not-be-logged"))
        .bearer_auth(&key)
        .header("x-forwarded-for", "198.51.100.7")
        .header("x-request-id", "client-trace-7")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 200);
    let dashboard = client
        .get(format!(
            "{}/auth/callback?code=secret-code&state=secret-state",
            gw.control_plane
        ))
        .send()
        .await
        .unwrap();
    assert!(dashboard.status().is_client_error() || dashboard.status().is_redirection());
    // Lines are written after the answer (the logging phase) by a background writer.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let logged = loop {
        let logged = lines(&gw);
        let planes = |p: &str| logged.iter().any(|l| l["plane"] == p);
        if (planes("api") && planes("dashboard")) || std::time::Instant::now() > deadline {
            break logged;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let api_line = logged
        .iter()
        .find(|l| l["plane"] == "api" && l["url"].as_str().unwrap().starts_with("/v1/models"))
        .unwrap();
    assert_eq!(api_line["url"], "/v1/models?api_key=***");
    assert_eq!(api_line["client_ip"], "198.51.100.7");
    assert_eq!(api_line["method"], "GET");
    assert_eq!(api_line["status"], 200);
    assert_eq!(api_line["user_agent"], "policy-test/1.0");
    assert_eq!(api_line["client_request_id"], "client-trace-7");
    assert_eq!(
        api_line["request_id"],
        api.headers()["x-request-id"].to_str().unwrap()
    );
    assert!(api_line["time_ms"].as_i64().unwrap() > now_ms() - 60_000);
    let dashboard_id = dashboard.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let dash_line = logged
        .iter()
        .find(|l| {
            l["plane"] == "dashboard" && l["url"].as_str().unwrap().starts_with("/auth/callback")
        })
        .unwrap();
    assert_eq!(dash_line["url"], "/auth/callback?code=***&state=***");
    assert_eq!(dash_line["request_id"], dashboard_id.as_str());
    let everything = serde_json::to_string(&logged).unwrap();
    for secret in [
        "sk-should-not-be-logged",
        "secret-code",
        "secret-state",
        key.as_str(),
    ] {
        assert!(
            !everything.contains(secret),
            "{secret} reached the access log"
        );
    }

    // [P16]: 30 days after its day, a file is deleted (the clock moved, not slept).
    let dir = gw.access_log_dir();
    let today = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(today, 1);
    retention::run_once(&gw.store, &dir, now_ms() + 29 * 86_400_000)
        .await
        .unwrap();
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "kept 30 days");
    let report = retention::run_once(&gw.store, &dir, now_ms() + 31 * 86_400_000)
        .await
        .unwrap();
    assert_eq!(report.access_log_files, 1);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

on_both_stores!(p05_p16_access_logs);
