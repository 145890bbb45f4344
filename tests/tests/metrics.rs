//! `/metrics` after known traffic: exact request counts by route, model, provider and
//! status; token and cost totals equal to the usage rows; errors by code; latency
//! histograms; key-cache lookups; the usage spool; the control plane's requests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use serde_json::json;
use tokenroute_tests::gateway::Options;
use tokenroute_tests::{on_both_stores, Backend, FakeOpenAi, Gateway};

/// The value of the sample `name{labels}` (every label given must match exactly, and
/// the sample must have no others); 0 when absent.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let wanted: BTreeMap<&str, &str> = labels.iter().copied().collect();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (metric, label_text) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        let found: BTreeMap<&str, &str> = label_text
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (k, v.trim_matches('"'))
            })
            .collect();
        if found == wanted {
            return value.parse().unwrap();
        }
    }
    0.0
}

/// Scrapes until `ready` holds for the text (a request is counted in Pingora's logging
/// phase, just after the client has its answer), at most 10 s; returns the last text.
async fn scrape_until(url: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = reqwest::get(url).await.unwrap().text().await.unwrap();
        if ready(&text) || std::time::Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn metrics_count_known_traffic_exactly(backend: Backend) {
    let fake = FakeOpenAi::start().await;
    let gw = Gateway::start(backend, &fake).await;
    let (key, account, _) = gw.key_with_credits("metrics@example.com", "5").await;
    let client = reqwest::Client::new();
    let ask = |stream: bool| {
        client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({"model": "openai/gpt-4o-mini", "stream": stream,
                          "messages": [{"role": "user", "content": "What is the capital of France?"}]}))
            .send()
    };
    for stream in [false, false, false, true] {
        let answer = ask(stream).await.unwrap();
        assert_eq!(answer.status(), 200);
        answer.bytes().await.unwrap();
    }
    let refused = client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("tr-not-a-real-key-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
        .json(&json!({"model": "openai/gpt-4o-mini", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let health = client
        .get(format!("{}/healthz", gw.control_plane))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let rows = gw.wait_usage(&account, 4).await;

    let chat = [
        ("route", "/v1/chat/completions"),
        ("model", "openai/gpt-4o-mini"),
        ("provider", "openai"),
        ("status", "200"),
    ];
    let refused_row = [
        ("route", "/v1/chat/completions"),
        ("model", ""),
        ("provider", ""),
        ("status", "401"),
    ];
    // Requests are counted last in the logging phase: once both are counted, every
    // other figure of theirs is in.
    let text = scrape_until(&gw.metrics, |t| {
        sample(t, "tokenroute_requests_total", &chat) >= 4.0
            && sample(t, "tokenroute_requests_total", &refused_row) >= 1.0
    })
    .await;
    assert_eq!(
        sample(&text, "tokenroute_requests_total", &chat),
        4.0,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "tokenroute_requests_total",
            &[
                ("route", "/v1/chat/completions"),
                ("model", ""),
                ("provider", ""),
                ("status", "401")
            ]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "tokenroute_errors_total",
            &[("code", "invalid_api_key")]
        ),
        1.0
    );
    let input: i64 = rows.iter().map(|r| r.input_tokens).sum();
    let output: i64 = rows.iter().map(|r| r.output_tokens).sum();
    let cost: i64 = rows.iter().map(|r| r.cost.nanos()).sum();
    let mp = [("model", "openai/gpt-4o-mini"), ("provider", "openai")];
    assert_eq!(
        sample(
            &text,
            "tokenroute_tokens_total",
            &[mp[0], mp[1], ("direction", "input")]
        ),
        input as f64
    );
    assert_eq!(
        sample(
            &text,
            "tokenroute_tokens_total",
            &[mp[0], mp[1], ("direction", "output")]
        ),
        output as f64
    );
    assert_eq!(
        sample(&text, "tokenroute_cost_nano_usd_total", &mp),
        cost as f64
    );
    assert_eq!(
        sample(
            &text,
            "tokenroute_request_duration_seconds_count",
            &[("route", "/v1/chat/completions")]
        ),
        5.0
    );
    assert_eq!(
        sample(
            &text,
            "tokenroute_time_to_first_byte_seconds_count",
            &[("provider", "openai")]
        ),
        4.0
    );
    let hits = sample(
        &text,
        "tokenroute_key_cache_lookups_total",
        &[("result", "hit")],
    );
    let misses = sample(
        &text,
        "tokenroute_key_cache_lookups_total",
        &[("result", "miss")],
    );
    assert_eq!(
        hits + misses,
        4.0,
        "one lookup per request with a known key"
    );
    assert!(misses >= 1.0);
    assert!(text.contains("tokenroute_usage_spool_bytes "));
    assert!(text.contains("tokenroute_usage_spool_pending_events "));
    assert!(
        text.lines()
            .any(|l| l == "tokenroute_usage_spool_stalled_seconds 0"),
        "everything is in the store: nothing waits"
    );
    assert_eq!(
        sample(
            &text,
            "tokenroute_dashboard_requests_total",
            &[("route", "/healthz"), ("method", "GET"), ("status", "200")]
        ),
        1.0
    );
    // No label carries a key or an account.
    assert!(!text.contains(&account));
    assert!(!text.contains("tr-"));
}

/// The Grafana dashboard and the alert rules in `conf/` use only metrics that exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_alerts_name_real_metrics() {
    let fake = FakeOpenAi::start().await;
    // With a Redis, as a fleet runs: its metrics are in the dashboard and the alerts too.
    let gw = Gateway::start_with(
        Backend::Sqlite,
        &fake,
        Options {
            extra_toml: format!(
                "[redis]\nurl = \"redis://127.0.0.1:6379\"\nkey-prefix = \"m{}\"\n",
                uuid::Uuid::new_v4().simple()
            ),
            ..Options::default()
        },
    )
    .await;
    // Traffic that touches every metric (labelled ones appear with their first sample).
    let (key, _, _) = gw.key_with_credits("grafana@example.com", "1").await;
    let client = reqwest::Client::new();
    for (bearer, stream) in [(key.as_str(), true), ("tr-nope", false)] {
        let answer = client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(bearer)
            .json(&json!({"model": "openai/gpt-4o-mini", "stream": stream,
                          "messages": [{"role": "user", "content": "What is the capital of France?"}]}))
            .send()
            .await
            .unwrap();
        answer.bytes().await.unwrap();
    }
    client
        .get(format!("{}/healthz", gw.control_plane))
        .send()
        .await
        .unwrap();
    let text = scrape_until(&gw.metrics, |t| {
        t.contains("tokenroute_requests_total{")
            && t.contains("tokenroute_errors_total{")
            && t.contains("tokenroute_invalidations_total{")
    })
    .await;
    let exported: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for file in ["grafana-dashboard.json", "prometheus-alerts.yml"] {
        let path = format!("{}/../conf/{file}", env!("CARGO_MANIFEST_DIR"));
        let content = std::fs::read_to_string(&path).unwrap();
        let mut named = 0;
        for (i, _) in content.match_indices("tokenroute_") {
            let name: String = content[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            assert!(
                exported.contains(&base),
                "{file} uses {name}, which /metrics does not export"
            );
            named += 1;
        }
        assert!(named >= 5, "{file} names the metrics");
    }
}

on_both_stores!(metrics_count_known_traffic_exactly);
