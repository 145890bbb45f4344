//! The dashboard's JSON API over real sockets, signed in through the real OIDC
//! provider: keys (shown once, stored as hashes, revocation reaching the proxy within
//! 1 s, forever), CSRF on every change, Stripe Checkout and the webhook that credits
//! exactly once, refunds and disputes, and the OpenAPI document.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokenroute_control_plane::stripe::signature;
use tokenroute_domain::clock::now_ms;
use tokenroute_domain::NanoUsd;
use tokenroute_tests::dashboard::Dashboard;
use tokenroute_tests::fake_stripe::{self, WEBHOOK_SECRET};
use tokenroute_tests::{on_both_stores, Backend, Browser};

const MODEL: &str = "openai/gpt-4o-mini";

async fn chat(d: &Dashboard, key: &str, model: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(d.gateway.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "What is the capital of France?"}]}))
        .send()
        .await
        .unwrap()
}

/// Keys: created with CSRF only, the secret in exactly one response, listed by prefix
/// and last four, renamed and limited, revoked — refused by the proxy within 1 s and
/// forever after.
async fn keys_lifecycle(backend: Backend) {
    let d = Dashboard::start(backend).await;
    let browser = Browser::new();
    let account_id = d
        .sign_in_with_credit(&browser, "kim@example.com", "Kim", "5")
        .await;

    // No CSRF token, or a wrong one: refused, nothing created.
    for token in [None, Some("nope")] {
        let mut request = browser
            .client
            .post(d.at("/api/keys"))
            .json(&json!({"name": "ci"}));
        if let Some(token) = token {
            request = request.header("x-csrf-token", token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "csrf");
    }
    assert!(d
        .gateway
        .store
        .keys_of_account(&account_id)
        .await
        .unwrap()
        .is_empty());

    // Bad input gets the API's error shape.
    let (status, body) = d
        .api_send(
            &browser,
            Method::POST,
            "/api/keys",
            Some(json!({"name": ""})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "bad_request");
    let (status, body) = d
        .api_send(
            &browser,
            Method::POST,
            "/api/keys",
            Some(json!({"name": "x", "limits": {"allowed_models": ["nope/model"]}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = d
        .api_send(
            &browser,
            Method::POST,
            "/api/keys",
            Some(json!({"nmae": "typo"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, created) = d
        .api_send(
            &browser,
            Method::POST,
            "/api/keys",
            Some(json!({"name": "ci", "limits": {"rpm": 100, "spend_per_day_usd": "2.50"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().unwrap().to_string();
    let key_id = created["key"]["id"].as_str().unwrap().to_string();
    assert!(secret.starts_with("tr-"));
    assert_eq!(created["key"]["last_four"], &secret[secret.len() - 4..]);
    assert!(secret.starts_with(created["key"]["prefix"].as_str().unwrap()));
    assert_eq!(created["key"]["limits"]["rpm"], 100);
    assert_eq!(created["key"]["limits"]["spend_per_day_usd"], "2.50");

    // [P13]: the plaintext is nowhere else — not in listings, not in the database.
    let (_, list) = d.api_get(&browser, "/api/keys").await;
    assert_eq!(list["keys"].as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains(&secret));
    for path in ["/api/me", "/api/usage", "/api/ledger", "/api/topups"] {
        let (_, body) = d.api_get(&browser, path).await;
        assert!(!body.to_string().contains(&secret), "{path}");
    }
    let stored: Vec<String> = sqlx::query_scalar("SELECT key_hash FROM api_keys")
        .fetch_all(d.gateway.store.pool())
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], secret);
    assert_eq!(stored[0].len(), 64, "a SHA-256 in hex");

    // The key works on the proxy.
    assert_eq!(chat(&d, &secret, MODEL).await.status(), StatusCode::OK);

    // Rename and restrict to another model: the proxy enforces it.
    let (status, updated) = d
        .api_send(
            &browser,
            Method::PATCH,
            &format!("/api/keys/{key_id}"),
            Some(json!({"name": "ci-renamed", "limits": {"allowed_models": ["anthropic/claude-3-5-haiku"]}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["name"], "ci-renamed");
    assert_eq!(
        updated["limits"]["rpm"],
        Value::Null,
        "limits are replaced whole"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await; // the proxy's key cache
    assert_eq!(
        chat(&d, &secret, MODEL).await.status(),
        StatusCode::FORBIDDEN
    );

    // Another account cannot see or touch this key.
    let other = Browser::new();
    d.sign_in(&other, "lee@example.com", "Lee", &[]).await;
    let (status, _) = d
        .api_send(
            &other,
            Method::POST,
            &format!("/api/keys/{key_id}/revoke"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, their_list) = d.api_get(&other, "/api/keys").await;
    assert!(their_list["keys"].as_array().unwrap().is_empty());

    // Lift the restriction (an empty limits object: no limits): the key works again.
    let (status, lifted) = d
        .api_send(
            &browser,
            Method::PATCH,
            &format!("/api/keys/{key_id}"),
            Some(json!({"limits": {}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{lifted}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(chat(&d, &secret, MODEL).await.status(), StatusCode::OK);

    // Revoke: within 1 s (proxy.change-poll-ms, though keys are cached for a minute)
    // the proxy refuses it.
    let (status, revoked) = d
        .api_send(
            &browser,
            Method::POST,
            &format!("/api/keys/{key_id}/revoke"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(revoked["revoked_at"].is_string());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let refused = chat(&d, &secret, MODEL).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "revoked_api_key", "{body}");
    // ... and forever: it cannot be changed back, and stays refused.
    let (status, _) = d
        .api_send(
            &browser,
            Method::PATCH,
            &format!("/api/keys/{key_id}"),
            Some(json!({"name": "revived"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        chat(&d, &secret, MODEL).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let (_, list) = d.api_get(&browser, "/api/keys").await;
    assert!(
        list["keys"][0]["revoked_at"].is_string(),
        "revoked keys stay listed"
    );
}

fn signed(event: &Value, timestamp: i64) -> (String, String) {
    let payload = event.to_string();
    let header = signature::sign(payload.as_bytes(), WEBHOOK_SECRET, timestamp);
    (payload, header)
}

async fn deliver(d: &Dashboard, payload: &str, header: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(d.at("/stripe/webhook"))
        .header("stripe-signature", header)
        .header("content-type", "application/json")
        .body(payload.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Top-ups: Checkout within bounds, then the webhook credits once per Checkout
/// Session — retries, duplicates and concurrent deliveries included — and refuses bad
/// signatures, stale timestamps and unknown events without crediting; refunds and
/// disputes become negative entries.
async fn stripe_top_ups_credit_exactly_once(backend: Backend) {
    let d = Dashboard::start(backend).await;
    let browser = Browser::new();
    d.sign_in(&browser, "pat@example.com", "Pat", &[]).await;
    let (_, me) = d.api_get(&browser, "/api/me").await;
    let account_id = me["account"]["id"].as_str().unwrap().to_string();

    // Out of bounds or fractional cents: refused before Stripe is asked.
    for amount in ["4.99", "500.01", "10.001", "-5", "ten"] {
        let (status, body) = d
            .api_send(
                &browser,
                Method::POST,
                "/api/billing/checkout",
                Some(json!({"amount_usd": amount})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{amount}: {body}");
    }
    assert!(d.stripe.sessions().is_empty());

    let (status, checkout) = d
        .api_send(
            &browser,
            Method::POST,
            "/api/billing/checkout",
            Some(json!({"amount_usd": "20.50"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{checkout}");
    let session_id = checkout["session_id"].as_str().unwrap().to_string();
    assert!(checkout["checkout_url"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}/c/pay/", d.stripe.base)));
    let form: std::collections::HashMap<String, String> =
        d.stripe.sessions()[0].iter().cloned().collect();
    assert_eq!(form["client_reference_id"], account_id);
    assert_eq!(form["metadata[account_id]"], account_id);
    assert_eq!(form["line_items[0][price_data][unit_amount]"], "2050");
    assert_eq!(form["line_items[0][price_data][currency]"], "usd");
    assert_eq!(form["mode"], "payment");
    assert!(form["success_url"].starts_with(&d.at("/billing/success?session_id=")));
    let (_, topups) = d.api_get(&browser, "/api/topups").await;
    assert_eq!(topups["topups"][0]["status"], "pending");

    let paid = fake_stripe::checkout_completed("evt_1", &session_id, &account_id, 2050, "pi_1");
    let now = now_ms() / 1000;

    // Refused, nothing credited: bad signature, wrong secret, stale, missing, unknown type.
    let (payload, good_header) = signed(&paid, now);
    let tampered = payload.replace("2050", "205000");
    let (status, body) = deliver(&d, &tampered, &good_header).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let wrong_secret = signature::sign(payload.as_bytes(), "whsec_other", now);
    assert_eq!(
        deliver(&d, &payload, &wrong_secret).await.0,
        StatusCode::BAD_REQUEST
    );
    let (stale_payload, stale) = signed(&paid, now - 301);
    let (status, body) = deliver(&d, &stale_payload, &stale).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("5 minutes"));
    let response = reqwest::Client::new()
        .post(d.at("/stripe/webhook"))
        .body(payload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let mut unknown = paid.clone();
    unknown["type"] = json!("customer.created");
    let (unknown_payload, unknown_header) = signed(&unknown, now);
    let (status, body) = deliver(&d, &unknown_payload, &unknown_header).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("unsupported event"));
    assert_eq!(
        d.gateway.store.balance(&account_id).await.unwrap(),
        NanoUsd::ZERO
    );

    // The same event five times: credited once.
    for attempt in 0..5 {
        let (payload, header) = signed(&paid, now_ms() / 1000);
        let (status, body) = deliver(&d, &payload, &header).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["booked"], attempt == 0);
    }
    assert_eq!(
        d.gateway.store.balance(&account_id).await.unwrap(),
        NanoUsd::parse_usd("20.50").unwrap()
    );

    // Five concurrent deliveries of another session: credited once.
    let second =
        fake_stripe::checkout_completed("evt_2", "cs_test_concurrent", &account_id, 1000, "pi_2");
    let (payload, header) = signed(&second, now_ms() / 1000);
    let deliveries: Vec<_> = (0..5)
        .map(|_| {
            let (payload, header, url) = (payload.clone(), header.clone(), d.at("/stripe/webhook"));
            tokio::spawn(async move {
                reqwest::Client::new()
                    .post(url)
                    .header("stripe-signature", header)
                    .body(payload)
                    .send()
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut booked = 0;
    for delivery in deliveries {
        if delivery.await.unwrap()["booked"] == true {
            booked += 1;
        }
    }
    assert_eq!(booked, 1);
    assert_eq!(
        d.gateway.store.balance(&account_id).await.unwrap(),
        NanoUsd::parse_usd("30.50").unwrap()
    );

    // [P4]: the ledger names the session ids; the top-up is paid; the return page says so.
    let (_, ledger) = d.api_get(&browser, "/api/ledger").await;
    let topups: Vec<(&str, &str)> = ledger["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "topup")
        .map(|e| {
            (
                e["reference"].as_str().unwrap(),
                e["amount_usd"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        topups,
        [
            ("cs_test_concurrent", "10.00"),
            (session_id.as_str(), "20.50")
        ]
    );
    let (_, listed) = d.api_get(&browser, "/api/topups").await;
    assert_eq!(listed["topups"][0]["status"], "paid");
    let page = browser
        .get(&d.at(&format!("/billing/success?session_id={session_id}")))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("$20.50 was added"), "{page}");

    // A refund of $5 and a lost dispute of $10, each booked once however often sent.
    for _ in 0..2 {
        let (p, h) = signed(
            &fake_stripe::charge_refunded("evt_r", "pi_1", "re_1", 500),
            now_ms() / 1000,
        );
        assert_eq!(deliver(&d, &p, &h).await.0, StatusCode::OK);
        let (p, h) = signed(
            &fake_stripe::dispute(
                "charge.dispute.created",
                "dp_1",
                "pi_2",
                1000,
                "needs_response",
            ),
            now_ms() / 1000,
        );
        assert_eq!(deliver(&d, &p, &h).await.0, StatusCode::OK);
    }
    assert_eq!(
        d.gateway.store.balance(&account_id).await.unwrap(),
        NanoUsd::parse_usd("15.50").unwrap()
    );
    // The dispute is won: the money comes back once.
    for _ in 0..2 {
        let (p, h) = signed(
            &fake_stripe::dispute("charge.dispute.closed", "dp_1", "pi_2", 1000, "won"),
            now_ms() / 1000,
        );
        assert_eq!(deliver(&d, &p, &h).await.0, StatusCode::OK);
    }
    assert_eq!(
        d.gateway.store.balance(&account_id).await.unwrap(),
        NanoUsd::parse_usd("25.50").unwrap()
    );
    // A refund for a payment that is not a top-up of ours: refused (Stripe retries).
    let (p, h) = signed(
        &fake_stripe::charge_refunded("evt_x", "pi_unknown", "re_x", 100),
        now_ms() / 1000,
    );
    assert_eq!(deliver(&d, &p, &h).await.0, StatusCode::CONFLICT);

    let report = d.gateway.store.verify_ledger().await.unwrap();
    assert!(
        report.discrepancies.is_empty(),
        "{:?}",
        report.discrepancies
    );
}

/// The OpenAPI document lists the API; unknown API paths answer in the error shape.
async fn openapi_document_and_error_shape(backend: Backend) {
    let d = Dashboard::start(backend).await;
    let doc: Value = reqwest::get(d.at("/api/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/me",
        "/api/keys",
        "/api/keys/{id}",
        "/api/keys/{id}/revoke",
        "/api/usage",
        "/api/ledger",
        "/api/topups",
        "/api/billing/checkout",
        "/api/admin/accounts",
        "/api/admin/accounts/{id}/credit",
        "/api/admin/accounts/{id}/sessions/end",
        "/api/admin/audit",
        "/api/me/export",
        "/api/me/delete",
        "/api/announcements",
        "/api/admin/keys/{id}/suspend",
        "/api/admin/accounts/{id}/delete",
        "/api/admin/announcements",
        "/api/keys/{id}/debug",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the document"
        );
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    let response = reqwest::get(d.at("/api/nope")).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    let (status, body) = d.api_get(&Browser::new(), "/api/usage?limit=abc").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

/// The API twins of the console's actions: key and account suspension reach the
/// proxy, announcements keep the 14-day rule, and a user corrects, exports and deletes
/// their own data ([P19] [P21]); every admin change is audited with before and after.
async fn account_and_admin_api(backend: Backend) {
    let d = Dashboard::start(backend).await;
    let user = Browser::new();
    d.sign_in(&user, "vic@example.com", "Vic", &[]).await;
    let admin = Browser::new();
    d.sign_in(
        &admin,
        tokenroute_tests::dashboard::ADMIN_EMAIL,
        "Root",
        &[],
    )
    .await;
    let (_, me) = d.api_get(&user, "/api/me").await;
    let account_id = me["account"]["id"].as_str().unwrap().to_string();
    d.api_send(
        &admin,
        Method::POST,
        &format!("/api/admin/accounts/{account_id}/credit"),
        Some(json!({"amount_usd": "3", "reason": "trial"})),
    )
    .await;
    let (_, created) = d
        .api_send(&user, Method::POST, "/api/keys", Some(json!({"name": "k"})))
        .await;
    let secret = created["secret"].as_str().unwrap().to_string();
    let key_id = created["key"]["id"].as_str().unwrap().to_string();
    assert_eq!(chat(&d, &secret, MODEL).await.status(), StatusCode::OK);

    // Suspending the key: the proxy refuses it (403) until it is unsuspended.
    let (status, key) = d
        .api_send(
            &admin,
            Method::POST,
            &format!("/api/admin/keys/{key_id}/suspend"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{key}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let refused = chat(&d, &secret, MODEL).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "key_suspended");
    d.api_send(
        &admin,
        Method::POST,
        &format!("/api/admin/keys/{key_id}/unsuspend"),
        None,
    )
    .await;
    // Suspending the account: every key of it is refused.
    d.api_send(
        &admin,
        Method::POST,
        &format!("/api/admin/accounts/{account_id}/suspend"),
        None,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let refused = chat(&d, &secret, MODEL).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "account_inactive");
    d.api_send(
        &admin,
        Method::POST,
        &format!("/api/admin/accounts/{account_id}/unsuspend"),
        None,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(chat(&d, &secret, MODEL).await.status(), StatusCode::OK);
    // Users cannot do any of it.
    let (status, _) = d
        .api_send(
            &user,
            Method::POST,
            &format!("/api/admin/keys/{key_id}/suspend"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Announcements: a policy change needs 14 days' notice.
    let day = 86_400_000;
    let (status, body) = d
        .api_send(
            &admin,
            Method::POST,
            "/api/admin/announcements",
            Some(json!({"kind": "policy", "message": "New terms",
                        "effective_at": rfc3339(now_ms() + 13 * day)})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = d
        .api_send(
            &admin,
            Method::POST,
            "/api/admin/announcements",
            Some(json!({"kind": "policy", "message": "New terms",
                        "effective_at": rfc3339(now_ms() + 15 * day)})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, live) = d.api_get(&user, "/api/announcements").await;
    assert_eq!(live["announcements"][0]["message"], "New terms");
    // [P21] by email too: every active account gets one message about it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while d.smtp.mails().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no policy emails: {:?}",
            d.smtp.mails()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mails = d.smtp.mails();
    let mut to: Vec<String> = mails.iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    assert_eq!(
        to,
        [tokenroute_tests::dashboard::ADMIN_EMAIL, "vic@example.com"]
    );
    assert!(mails[0].data.contains("New terms"), "{}", mails[0].data);
    assert!(mails[0]
        .data
        .contains("Subject: TokenRoute: a policy change takes effect on"));
    d.api_send(
        &admin,
        Method::POST,
        &format!(
            "/api/admin/announcements/{}/retire",
            body["id"].as_str().unwrap()
        ),
        None,
    )
    .await;
    let (_, live) = d.api_get(&user, "/api/announcements").await;
    assert!(live["announcements"].as_array().unwrap().is_empty());

    // The audit log has before and after of each change.
    let (_, audit) = d.api_get(&admin, "/api/admin/audit").await;
    let suspended = audit["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "suspend_account")
        .unwrap();
    assert_eq!(suspended["target"], account_id.as_str());
    assert_eq!(suspended["before"], r#"{"status":"active"}"#);
    assert_eq!(suspended["after"], r#"{"status":"suspended"}"#);

    // [P19]: correct, export, delete.
    let (status, me) = d
        .api_send(
            &user,
            Method::PATCH,
            "/api/me",
            Some(json!({"display_name": "Victoria"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["account"]["display_name"], "Victoria");
    let (status, export) = d.api_get(&user, "/api/me/export").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(export["account"]["display_name"], "Victoria");
    assert_eq!(export["keys"][0]["id"], key_id.as_str());
    assert!(!export.to_string().contains(&secret));
    assert_eq!(
        export["ledger"].as_array().unwrap().len(),
        3,
        "the credit and two debits"
    );
    let (status, _) = d
        .api_send(
            &user,
            Method::POST,
            "/api/me/delete",
            Some(json!({"confirm": "not-me@example.com"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = d
        .api_send(
            &user,
            Method::POST,
            "/api/me/delete",
            Some(json!({"confirm": "vic@example.com"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        d.api_get(&user, "/api/me").await.0,
        StatusCode::UNAUTHORIZED
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        chat(&d, &secret, MODEL).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let account = d.gateway.store.account(&account_id).await.unwrap().unwrap();
    assert_eq!(account.status, "deleted");
}

async fn debug_log_count(d: &Dashboard) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM debug_logs")
        .fetch_one(d.gateway.store.pool())
        .await
        .unwrap()
}

/// [P6]: bodies are stored only for a key whose owner turned debugging on, streamed
/// answers included; at most 7 days; deleted when the key is revoked.
async fn request_debugging_keeps_bodies_only_while_on(backend: Backend) {
    let d = Dashboard::start(backend).await;
    let user = Browser::new();
    let account_id = d
        .sign_in_with_credit(&user, "dee@example.com", "Dee", "1")
        .await;
    let (_, created) = d
        .api_send(
            &user,
            Method::POST,
            "/api/keys",
            Some(json!({"name": "dbg"})),
        )
        .await;
    let secret = created["secret"].as_str().unwrap().to_string();
    let key_id = created["key"]["id"].as_str().unwrap().to_string();
    assert_eq!(created["key"]["debug"], false);

    // Off (the default): nothing but metadata is kept ([P3]).
    assert_eq!(chat(&d, &secret, MODEL).await.status(), StatusCode::OK);
    d.gateway.wait_usage(&account_id, 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(debug_log_count(&d).await, 0);

    // On: the next requests' bodies are kept, a stream's too.
    let (status, key) = d
        .api_send(
            &user,
            Method::PATCH,
            &format!("/api/keys/{key_id}"),
            Some(json!({"debug": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(key["debug"], true);
    tokio::time::sleep(Duration::from_millis(1100)).await; // the proxy's key cache
    assert_eq!(chat(&d, &secret, MODEL).await.status(), StatusCode::OK);
    let streamed = reqwest::Client::new()
        .post(d.gateway.url("/v1/chat/completions"))
        .bearer_auth(&secret)
        .json(&json!({"model": MODEL, "stream": true,
                      "messages": [{"role": "user", "content": "stream please"}]}))
        .send()
        .await
        .unwrap();
    let streamed_text = streamed.text().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let logs = loop {
        let (_, body) = d.api_get(&user, &format!("/api/keys/{key_id}/debug")).await;
        let logs = body["debug_logs"].as_array().unwrap().clone();
        if logs.len() == 2 || std::time::Instant::now() > deadline {
            break logs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(logs.len(), 2, "{logs:?}");
    let stream_log = logs
        .iter()
        .find(|l| {
            l["request_body"]
                .as_str()
                .unwrap()
                .contains("stream please")
        })
        .unwrap();
    assert_eq!(
        stream_log["response_body"],
        streamed_text.as_str(),
        "the stream as the client got it"
    );
    let whole_log = logs
        .iter()
        .find(|l| {
            l["request_body"]
                .as_str()
                .unwrap()
                .contains("capital of France")
        })
        .unwrap();
    assert!(whole_log["response_body"]
        .as_str()
        .unwrap()
        .contains("chat.completion"));
    assert_eq!(whole_log["status"], 200);
    // Nobody else can read them.
    let other = Browser::new();
    d.sign_in(&other, "eve@example.com", "Eve", &[]).await;
    assert_eq!(
        d.api_get(&other, &format!("/api/keys/{key_id}/debug"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // At most 7 days: the purge keeps today's and drops what is older.
    let now = now_ms();
    assert_eq!(d.gateway.store.purge_debug_logs(now).await.unwrap(), 0);
    assert_eq!(
        d.gateway
            .store
            .purge_debug_logs(now + 7 * 86_400_000 + 60_000)
            .await
            .unwrap(),
        2
    );
    assert_eq!(chat(&d, &secret, MODEL).await.status(), StatusCode::OK);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while debug_log_count(&d).await < 1 {
        assert!(std::time::Instant::now() < deadline, "not captured");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Revoking the key deletes its debug log.
    d.api_send(
        &user,
        Method::POST,
        &format!("/api/keys/{key_id}/revoke"),
        None,
    )
    .await;
    assert_eq!(debug_log_count(&d).await, 0);
}

/// RFC 3339 of a Unix-ms time.
fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339()
}

on_both_stores!(
    request_debugging_keeps_bodies_only_while_on,
    account_and_admin_api,
    keys_lifecycle,
    stripe_top_ups_credit_exactly_once,
    openapi_document_and_error_shape,
);
