//! Sign-in through a real OpenID Connect provider (`oidc-provider`, configured like
//! Logto: issuer `/oidc`, ES384), browser-less over HTTP: the flow, the session cookie
//! ([P18]), the account record ([P2]), every way an ID token or a callback can be bad,
//! key rotation, sign-out, and the admin role.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use reqwest::{Method, StatusCode};
use serde_json::json;
use tokenroute_tests::browser::redirect_target;
use tokenroute_tests::dashboard::{Dashboard, ADMIN_EMAIL};
use tokenroute_tests::{on_both_stores, Backend, Browser};

/// The `Set-Cookie` headers of a response.
fn set_cookies(headers: &reqwest::header::HeaderMap) -> Vec<String> {
    headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// [P2] [P18]: a full sign-in; one HttpOnly, SameSite=Lax, 14-day cookie; the
/// account holds email, display name, first and latest sign-in.
async fn signs_in_with_one_http_only_cookie(backend: Backend) {
    let d = Dashboard::start(backend).await;
    let browser = Browser::new();

    // Not signed in: the API says so in its error shape.
    let (status, body) = d.api_get(&browser, "/api/me").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthenticated");

    let headers = d
        .sign_in(&browser, "Alice@Example.com", "Alice Example", &[])
        .await;
    let cookies = set_cookies(&headers);
    assert_eq!(
        cookies.len(),
        1,
        "exactly one cookie at sign-in: {cookies:?}"
    );
    let cookie = &cookies[0];
    assert!(cookie.starts_with("tokenroute_session="), "{cookie}");
    let attributes: Vec<String> = cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    assert!(attributes.contains(&"httponly".to_string()), "{cookie}");
    assert!(attributes.contains(&"samesite=lax".to_string()), "{cookie}");
    assert!(attributes.contains(&"path=/".to_string()), "{cookie}");
    // Plain-http localhost: the one place the cookie may lack Secure.
    assert!(!attributes.contains(&"secure".to_string()), "{cookie}");
    let max_age: i64 = attributes
        .iter()
        .find_map(|a| a.strip_prefix("max-age="))
        .expect("Max-Age")
        .parse()
        .unwrap();
    assert!(
        (14 * 24 * 3600 - 60..=14 * 24 * 3600).contains(&max_age),
        "14 days, got {max_age}s"
    );

    let (status, me) = d.api_get(&browser, "/api/me").await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["account"]["email"], "alice@example.com");
    assert_eq!(me["account"]["display_name"], "Alice Example");
    assert_eq!(me["is_admin"], false);
    assert_eq!(me["balance_usd"], "0.00");
    let first = me["account"]["first_sign_in_at"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(me["account"]["last_sign_in_at"].as_str().unwrap(), first);

    // The session lives server-side, keyed by a hash: the cookie value is not stored.
    let session_id = browser.cookie(&d.url, "tokenroute_session").unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM web_sessions WHERE id = $1")
        .bind(&session_id)
        .fetch_one(d.gateway.store.pool())
        .await
        .unwrap();
    assert_eq!(stored, 0, "the raw session id must not be a database key");

    // A second sign-in (another browser, new name) moves only the latest sign-in.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let other = Browser::new();
    d.sign_in(&other, "alice@example.com", "Alice E.", &[])
        .await;
    let (_, me2) = d.api_get(&other, "/api/me").await;
    assert_eq!(me2["account"]["id"], me["account"]["id"]);
    assert_eq!(me2["account"]["display_name"], "Alice E.");
    assert_eq!(me2["account"]["first_sign_in_at"].as_str().unwrap(), first);
    assert!(me2["account"]["last_sign_in_at"].as_str().unwrap() > first.as_str());
}

/// Every spoiled ID token is refused, no session results, and nobody is signed in as
/// whoever the token claimed to be.
async fn refuses_bad_id_tokens(backend: Backend) {
    let d = Dashboard::start(backend).await;
    d.oidc
        .next_login("bob", "bob@example.com", "Bob", &[])
        .await;
    for (mode, expected) in [
        ("signature", "Signature verification failed"),
        ("issuer", "Invalid issuer"),
        ("audience", "Invalid audiences"),
        ("expired", "Expired"),
        ("nonce", "Invalid nonce"),
    ] {
        let browser = Browser::new();
        let callback = d.start_sign_in(&browser).await;
        d.oidc.tamper_next_token(mode).await;
        let response = browser.get(&callback).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{mode}");
        let page = response.text().await.unwrap();
        assert!(page.contains(expected), "{mode}: {page}");
        let (status, _) = d.api_get(&browser, "/api/me").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{mode}: no session");
    }
    // The tampered-signature token claimed mallory: no account was made for her.
    assert!(d
        .gateway
        .store
        .account_by_email("mallory@example.com")
        .await
        .unwrap()
        .is_none());
    // The provider itself is fine: an untampered sign-in works.
    d.sign_in(&Browser::new(), "bob@example.com", "Bob", &[])
        .await;
}

/// A callback whose `state` is not the one this browser started is refused, and so is
/// an authorization code that was already used.
async fn refuses_state_mismatch_and_reused_codes(backend: Backend) {
    let d = Dashboard::start(backend).await;
    d.oidc
        .next_login("carol", "carol@example.com", "Carol", &[])
        .await;

    // State mismatch.
    let browser = Browser::new();
    let callback = d.start_sign_in(&browser).await;
    let mut forged = url::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = forged
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(
        pairs
            .iter()
            .map(|(k, v)| (k.as_str(), if k == "state" { "forged" } else { v.as_str() })),
    );
    let response = browser.get(forged.as_str()).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.text().await.unwrap().contains("state mismatch"));
    // The pending sign-in was used up: even the genuine callback is refused now.
    let response = browser.get(&callback).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = d.api_get(&browser, "/api/me").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A used code: browser A signs in with it; browser B starts its own sign-in and
    // brings A's code with B's own state. The provider refuses the second exchange.
    let a = Browser::new();
    let a_callback = d.start_sign_in(&a).await;
    assert_eq!(
        redirect_target(&a.get(&a_callback).await, &a_callback),
        d.at("/")
    );
    let code = url::Url::parse(&a_callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let b = Browser::new();
    let b_callback = d.start_sign_in(&b).await;
    let mut replay = url::Url::parse(&b_callback).unwrap();
    let state = replay
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    replay
        .query_pairs_mut()
        .clear()
        .append_pair("code", &code)
        .append_pair("state", &state);
    let response = b.get(replay.as_str()).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("refused the authorization code"));
    let (status, _) = d.api_get(&b, "/api/me").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// The provider rotates its signing key: the next sign-in names a key id we have not
/// seen, and the JWKS is fetched again.
async fn follows_signing_key_rotation(backend: Backend) {
    let d = Dashboard::start(backend).await;
    d.sign_in(&Browser::new(), "dave@example.com", "Dave", &[])
        .await;
    let kid = d.oidc.rotate_key().await;
    assert!(!kid.is_empty());
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let browser = Browser::new();
    d.sign_in(&browser, "dave@example.com", "Dave", &[]).await;
    let (status, _) = d.api_get(&browser, "/api/me").await;
    assert_eq!(status, StatusCode::OK);
}

/// Sign-out needs the CSRF token, ends the session server-side (the old cookie is
/// worthless everywhere) and sends the browser to the provider's end-session endpoint.
async fn signs_out_everywhere(backend: Backend) {
    let d = Dashboard::start(backend).await;
    let browser = Browser::new();
    d.sign_in(&browser, "erin@example.com", "Erin", &[]).await;
    let cookie = browser.cookie(&d.url, "tokenroute_session").unwrap();
    let csrf = d.csrf(&browser).await;

    // Without the token: refused, still signed in.
    let response = browser
        .client
        .post(d.at("/auth/logout"))
        .form(&[("csrf_token", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(d.api_get(&browser, "/api/me").await.0, StatusCode::OK);

    let response = browser
        .client
        .post(d.at("/auth/logout"))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    let target = redirect_target(&response, &d.url);
    let end_session = format!("{}/session/end", d.oidc.issuer);
    assert!(target.starts_with(&end_session), "{target}");
    let target = url::Url::parse(&target).unwrap();
    let params: std::collections::HashMap<_, _> = target.query_pairs().into_owned().collect();
    assert!(params.contains_key("id_token_hint"));
    assert_eq!(params["post_logout_redirect_uri"], d.at("/"));
    assert_eq!(params["client_id"], "tokenroute");
    // The provider accepts that request (its logout confirmation page).
    let ended = browser.get(target.as_str()).await;
    assert_eq!(ended.status(), StatusCode::OK);

    // The browser's cookie and a copy of it elsewhere are both dead.
    assert_eq!(
        d.api_get(&browser, "/api/me").await.0,
        StatusCode::UNAUTHORIZED
    );
    let replay = reqwest::Client::new()
        .get(d.at("/api/me"))
        .header("cookie", format!("tokenroute_session={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
}

/// Admins come from the provider's `roles` claim or the configured emails; admin
/// routes refuse everyone else; an admin can end a user's sessions and credit them,
/// and both land in the audit log.
async fn admin_role_guards_admin_routes(backend: Backend) {
    let d = Dashboard::start(backend).await;
    let user = Browser::new();
    d.sign_in(&user, "frank@example.com", "Frank", &[]).await;
    let (status, body) = d.api_get(&user, "/api/admin/accounts").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "forbidden");

    let by_role = Browser::new();
    d.sign_in(&by_role, "grace@example.com", "Grace", &["admin"])
        .await;
    let by_email = Browser::new();
    d.sign_in(&by_email, ADMIN_EMAIL, "Root", &[]).await;
    for admin in [&by_role, &by_email] {
        let (_, me) = d.api_get(admin, "/api/me").await;
        assert_eq!(me["is_admin"], true);
        let (status, accounts) = d.api_get(admin, "/api/admin/accounts").await;
        assert_eq!(status, StatusCode::OK);
        assert!(accounts["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["account"]["email"] == "frank@example.com"));
    }

    let frank = d
        .gateway
        .store
        .account_by_email("frank@example.com")
        .await
        .unwrap()
        .unwrap();
    // A credit with a reason, idempotent by key.
    for _ in 0..2 {
        let (status, credit) = d
            .api_send(
                &by_role,
                Method::POST,
                &format!("/api/admin/accounts/{}/credit", frank.id),
                Some(json!({"amount_usd": "7.25", "reason": "goodwill", "idempotency_key": "t-1"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{credit}");
        assert_eq!(credit["balance_usd"], "7.25");
    }
    let (_, me) = d.api_get(&user, "/api/me").await;
    assert_eq!(me["balance_usd"], "7.25");

    // Ending Frank's sessions signs him out.
    let (status, ended) = d
        .api_send(
            &by_email,
            Method::POST,
            &format!("/api/admin/accounts/{}/sessions/end", frank.id),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ended["ended"], 1);
    assert_eq!(
        d.api_get(&user, "/api/me").await.0,
        StatusCode::UNAUTHORIZED
    );

    let (_, audit) = d.api_get(&by_email, "/api/admin/audit").await;
    let actions: Vec<(&str, &str)> = audit["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap(),
                a["admin_email"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("end_sessions", ADMIN_EMAIL),
            ("credit", "grace@example.com")
        ]
    );
}

on_both_stores!(
    signs_in_with_one_http_only_cookie,
    refuses_bad_id_tokens,
    refuses_state_mismatch_and_reused_codes,
    follows_signing_key_rotation,
    signs_out_everywhere,
    admin_role_guards_admin_routes,
);
