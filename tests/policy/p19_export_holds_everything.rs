//! [P19] a user can export everything held about them: account, keys (metadata),
//! usage, ledger, top-ups, debug logs and sessions, from the dashboard and the API.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use tokenroute_control_plane::stripe::signature;
use tokenroute_domain::clock::now_ms;
use tokenroute_tests::dashboard::Dashboard;
use tokenroute_tests::fake_stripe::{self, WEBHOOK_SECRET};
use tokenroute_tests::{on_both_stores, Backend, Browser};

async fn p19_export_has_every_category(backend: Backend) {
    let d = Dashboard::start(backend).await;
    let browser = Browser::new();
    d.sign_in(&browser, "xena@example.com", "Xena", &[]).await;
    let (_, me) = d.api_get(&browser, "/api/me").await;
    let account = me["account"]["id"].as_str().unwrap().to_string();
    // A top-up through the webhook.
    let event = fake_stripe::checkout_completed("evt_x", "cs_test_x", &account, 500, "pi_x");
    let payload = event.to_string();
    let header = signature::sign(payload.as_bytes(), WEBHOOK_SECRET, now_ms() / 1000);
    let paid = reqwest::Client::new()
        .post(d.at("/stripe/webhook"))
        .header("stripe-signature", header)
        .body(payload)
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 200);
    // A key with debugging on, used once.
    let (_, created) = d
        .api_send(
            &browser,
            Method::POST,
            "/api/keys",
            Some(json!({"name": "export-key"})),
        )
        .await;
    let key_id = created["key"]["id"].as_str().unwrap().to_string();
    d.api_send(
        &browser,
        Method::PATCH,
        &format!("/api/keys/{key_id}"),
        Some(json!({"debug": true})),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let answer = reqwest::Client::new()
        .post(d.gateway.url("/v1/chat/completions"))
        .bearer_auth(created["secret"].as_str().unwrap())
        .json(&json!({"model": "openai/gpt-4o-mini",
                      "messages": [{"role": "user", "content": "What is the capital of France?"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    d.gateway.wait_usage(&account, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // the debug log writer

    let (status, export) = d.api_get(&browser, "/api/me/export").await;
    assert_eq!(status, 200);
    assert_eq!(export["account"]["email"], "xena@example.com");
    assert_eq!(export["account"]["display_name"], "Xena");
    assert!(export["account"]["first_sign_in_at"].is_string());
    assert_eq!(export["keys"][0]["name"], "export-key");
    assert_eq!(export["usage"].as_array().unwrap().len(), 1);
    let kinds: Vec<&str> = export["ledger"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"topup") && kinds.contains(&"usage"),
        "{kinds:?}"
    );
    assert_eq!(export["topups"][0]["session_id"], "cs_test_x");
    assert_eq!(export["debug_logs"].as_array().unwrap().len(), 1);
    assert!(export["debug_logs"][0]["request_body"]
        .as_str()
        .unwrap()
        .contains("capital of France"));
    assert_eq!(export["sessions"].as_array().unwrap().len(), 1);
    assert!(export["sessions"][0]["expires_at"].is_string());

    // The dashboard's download is the same document.
    let page = browser.get(&d.at("/account/export")).await;
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    let downloaded: serde_json::Value = page.json().await.unwrap();
    assert_eq!(downloaded["usage"], export["usage"]);
}

on_both_stores!(p19_export_has_every_category);
