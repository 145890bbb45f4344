//! [P3] prompts and completions are not persisted by default; [P6] with request
//! debugging on they are kept only in that key's debug log, for 7 days, and deleted
//! when the key is revoked. A canary string in the prompt is searched for in the whole
//! database (every value of every table), the spool, the access logs, Redis and the
//! metrics output.

use std::time::{Duration, Instant};

use serde_json::json;
use tokenroute_control_plane::retention;
use tokenroute_domain::clock::now_ms;
use tokenroute_tests::evidence::{dump, files_containing, redis_containing};
use tokenroute_tests::{on_both_stores, Backend, FakeOpenAi, Gateway};

const ANSWER: &str = "The capital of France is Paris";

async fn ask(gw: &Gateway, key: &str, prompt: &str, stream: bool) {
    let response = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "openai/gpt-4o-mini", "stream": stream,
                      "messages": [{"role": "user", "content": prompt}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(text.contains("Paris"), "{text}");
}

/// Where the canary is found: `table.column` of the dump, and files.
async fn found(gw: &Gateway, canary: &str) -> Vec<String> {
    let mut places: Vec<String> = dump(&gw.store)
        .await
        .lines()
        .filter(|l| l.contains(canary))
        .map(|l| l.split(':').next().unwrap_or("").to_string())
        .collect();
    places.extend(files_containing(&gw.spool_dir(), canary));
    places.extend(files_containing(&gw.access_log_dir(), canary));
    places.extend(redis_containing(canary));
    let metrics = reqwest::get(&gw.metrics)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    if metrics.contains(canary) {
        places.push("/metrics".to_string());
    }
    places.sort();
    places.dedup();
    places
}

async fn debug_logs(gw: &Gateway) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM debug_logs")
        .fetch_one(gw.store.pool())
        .await
        .unwrap()
}

async fn wait_debug_logs(gw: &Gateway, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while debug_logs(gw).await < n {
        assert!(Instant::now() < deadline, "debug logs never reached {n}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn p03_p06_canary(backend: Backend) {
    let fake = FakeOpenAi::start().await;
    let gw = Gateway::start(backend, &fake).await;
    let (key, account, key_id) = gw.key_with_credits("canary@example.com", "5").await;

    // Debugging off (the default): the prompt and the answer are nowhere.
    let off = format!("canary-off-{}", uuid::Uuid::new_v4());
    ask(&gw, &key, &off, false).await;
    ask(&gw, &key, &off, true).await;
    gw.wait_usage(&account, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // access-log flush
    assert_eq!(found(&gw, &off).await, Vec::<String>::new());
    assert_eq!(found(&gw, ANSWER).await, Vec::<String>::new());
    assert_eq!(debug_logs(&gw).await, 0);

    // On: only the key's debug log holds them.
    gw.store.set_key_debug(&key_id, true).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await; // the proxy's key cache
    let on = format!("canary-on-{}", uuid::Uuid::new_v4());
    ask(&gw, &key, &on, false).await;
    ask(&gw, &key, &on, true).await;
    wait_debug_logs(&gw, 2).await;
    assert_eq!(found(&gw, &on).await, ["debug_logs.request_body"]);
    assert_eq!(found(&gw, ANSWER).await, ["debug_logs.response_body"]);

    // Seven days later (the retention job with the clock moved): gone.
    let dir = gw.access_log_dir();
    retention::run_once(&gw.store, &dir, now_ms() + 6 * 86_400_000)
        .await
        .unwrap();
    assert_eq!(debug_logs(&gw).await, 2, "kept for 7 days");
    retention::run_once(&gw.store, &dir, now_ms() + 7 * 86_400_000 + 60_000)
        .await
        .unwrap();
    assert_eq!(found(&gw, &on).await, Vec::<String>::new());

    // Revoking the key deletes its debug log at once.
    let again = format!("canary-revoke-{}", uuid::Uuid::new_v4());
    ask(&gw, &key, &again, false).await;
    wait_debug_logs(&gw, 1).await;
    assert_eq!(found(&gw, &again).await, ["debug_logs.request_body"]);
    gw.store.revoke_key(&key_id).await.unwrap();
    assert_eq!(found(&gw, &again).await, Vec::<String>::new());
}

on_both_stores!(p03_p06_canary);
