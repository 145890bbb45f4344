//! [P14] an account deleted by its owner keeps its records for 30 days; then no email
//! or name of it is left anywhere in the database, while its usage and ledger stay
//! ([P15]), pseudonymous, with unchanged sums. Logto is asked to delete the user at
//! once (its Management API).

use reqwest::Method;
use serde_json::json;
use tokenroute_control_plane::retention;
use tokenroute_domain::clock::now_ms;
use tokenroute_domain::NanoUsd;
use tokenroute_store::LedgerKind;
use tokenroute_tests::dashboard::Dashboard;
use tokenroute_tests::evidence::dump;
use tokenroute_tests::{on_both_stores, Backend, Browser};

const EMAIL: &str = "zed.zulu@example.com";
const NAME: &str = "Zed Zulu-Quixote";

async fn p14_purge_after_30_days(backend: Backend) {
    let d = Dashboard::start(backend).await;
    let browser = Browser::new();
    d.sign_in(&browser, EMAIL, NAME, &[]).await;
    let store = &d.gateway.store;
    let account = store.account_by_email(EMAIL).await.unwrap().unwrap();
    store
        .book(
            &account.id,
            LedgerKind::Adjustment,
            NanoUsd::parse_usd("2").unwrap(),
            "p14",
            Some("test credit"),
        )
        .await
        .unwrap();
    let (_, created) = d
        .api_send(
            &browser,
            Method::POST,
            "/api/keys",
            Some(json!({"name": "Zed's laptop"})),
        )
        .await;
    let key = created["secret"].as_str().unwrap().to_string();
    let response = reqwest::Client::new()
        .post(d.gateway.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "openai/gpt-4o-mini",
                      "messages": [{"role": "user", "content": "What is the capital of France?"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    d.gateway.wait_usage(&account.id, 1).await;
    let spend = store.account_spend(&account.id).await.unwrap();
    let balance = store.balance(&account.id).await.unwrap();

    let (status, _) = d
        .api_send(
            &browser,
            Method::POST,
            "/api/me/delete",
            Some(json!({"confirm": EMAIL})),
        )
        .await;
    assert_eq!(status, 200);
    // Logto is asked to delete the user too (its Management API, [P11]).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while d.logto.deleted() != [EMAIL] {
        assert!(
            std::time::Instant::now() < deadline,
            "Logto never asked: {:?}",
            d.logto.deleted()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let dir = d.gateway.access_log_dir();
    // Within the 30 days the record is still there (deleted, its keys revoked).
    retention::run_once(store, &dir, now_ms() + 29 * 86_400_000)
        .await
        .unwrap();
    assert!(dump(store).await.contains(EMAIL));

    let report = retention::run_once(store, &dir, now_ms() + 30 * 86_400_000 + 60_000)
        .await
        .unwrap();
    assert_eq!(report.accounts_purged, 1);
    let everything = dump(store).await;
    for personal in [EMAIL, NAME, "Zed's laptop", "zed.zulu"] {
        let places: Vec<&str> = everything
            .lines()
            .filter(|l| l.contains(personal))
            .collect();
        assert!(places.is_empty(), "{personal} is still in {places:?}");
    }
    // Usage and ledger stay, with the same sums; the ledger still checks out.
    assert_eq!(store.account_spend(&account.id).await.unwrap(), spend);
    assert_eq!(store.balance(&account.id).await.unwrap(), balance);
    assert_eq!(
        store.usage_of_account(&account.id, 10).await.unwrap().len(),
        1
    );
    let report = store.verify_ledger().await.unwrap();
    assert!(
        report.discrepancies.is_empty(),
        "{:?}",
        report.discrepancies
    );
    // Purging again changes nothing.
    let again = retention::run_once(store, &dir, now_ms() + 31 * 86_400_000)
        .await
        .unwrap();
    assert_eq!(again.accounts_purged, 0);
}

on_both_stores!(p14_purge_after_30_days);
