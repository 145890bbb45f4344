//! [P20] an admin can delete an account reported as a minor's: with a reason, the keys
//! stop working, the sessions end, the audit log records who and why (without the
//! account's email, which the purge will remove everywhere else [P14]).

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use tokenroute_tests::dashboard::{Dashboard, ADMIN_EMAIL};
use tokenroute_tests::{on_both_stores, Backend, Browser};

async fn p20_admin_deletes(backend: Backend) {
    let d = Dashboard::start(backend).await;
    let minor = Browser::new();
    d.sign_in(&minor, "kid@example.com", "Kid", &[]).await;
    let (_, created) = d
        .api_send(
            &minor,
            Method::POST,
            "/api/keys",
            Some(json!({"name": "k"})),
        )
        .await;
    let key = created["secret"].as_str().unwrap().to_string();
    let (_, me) = d.api_get(&minor, "/api/me").await;
    let id = me["account"]["id"].as_str().unwrap().to_string();

    let admin = Browser::new();
    d.sign_in(&admin, ADMIN_EMAIL, "Root", &[]).await;
    let path = format!("/api/admin/accounts/{id}/delete");
    let (status, _) = d
        .api_send(&admin, Method::POST, &path, Some(json!({"reason": " "})))
        .await;
    assert_eq!(status, 400, "a reason is required");
    let (status, _) = d
        .api_send(
            &admin,
            Method::POST,
            &path,
            Some(json!({"reason": "reported as under 16"})),
        )
        .await;
    assert_eq!(status, 200);

    assert_eq!(d.api_get(&minor, "/api/me").await.0, 401, "signed out");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while d.logto.deleted() != ["kid@example.com"] {
        assert!(std::time::Instant::now() < deadline, "Logto never asked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let refused = reqwest::Client::new()
        .get(d.gateway.url("/v1/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let (_, audit) = d.api_get(&admin, "/api/admin/audit").await;
    let entry = &audit["actions"][0];
    assert_eq!(entry["action"], "delete_account");
    assert_eq!(entry["admin_email"], ADMIN_EMAIL);
    assert_eq!(entry["detail"], "reported as under 16");
    assert!(!audit.to_string().contains("kid@example.com"));
}

on_both_stores!(p20_admin_deletes);
