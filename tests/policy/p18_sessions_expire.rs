//! [P18] the one authentication cookie expires after 14 days (or at sign-out, proven
//! in `sign_in.rs`): the server-side session ends then, and the retention job deletes it.

use tokenroute_control_plane::retention;
use tokenroute_domain::clock::now_ms;
use tokenroute_tests::dashboard::Dashboard;
use tokenroute_tests::{on_both_stores, Backend, Browser};

async fn sessions(d: &Dashboard) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM web_sessions")
        .fetch_one(d.gateway.store.pool())
        .await
        .unwrap()
}

async fn p18_sessions_end_after_14_days(backend: Backend) {
    let d = Dashboard::start(backend).await;
    let browser = Browser::new();
    d.sign_in(&browser, "sam@example.com", "Sam", &[]).await;
    assert_eq!(sessions(&d).await, 1);
    let dir = d.gateway.access_log_dir();
    retention::run_once(&d.gateway.store, &dir, now_ms() + 13 * 86_400_000)
        .await
        .unwrap();
    assert_eq!(sessions(&d).await, 1, "a 13-day-old session lives");
    assert_eq!(d.api_get(&browser, "/api/me").await.0, 200);
    let report = retention::run_once(&d.gateway.store, &dir, now_ms() + 14 * 86_400_000 + 60_000)
        .await
        .unwrap();
    assert_eq!(report.sessions, 1);
    assert_eq!(d.api_get(&browser, "/api/me").await.0, 401);
}

on_both_stores!(p18_sessions_end_after_14_days);
