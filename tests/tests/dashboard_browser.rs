//! The dashboard and admin console in real headless Chromium, signed in through the
//! real OpenID Connect provider: a user tops up through (fake) Stripe Checkout,
//! creates a key, calls the API, sees the request in Usage and the debit in Credits;
//! an admin adjusts the credit with a reason the user then sees, and announces a
//! change; the user exports their data and deletes the account. Every page is
//! screenshotted (`<target>/tmp/dashboard-screenshots-*`) and checked to load nothing
//! from another origin and to set no cookie but the session's ([P7] [P18]). The core
//! actions are also done with JavaScript off.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokenroute_tests::chrome::Chrome;
use tokenroute_tests::dashboard::{Dashboard, ADMIN_EMAIL};
use tokenroute_tests::{on_both_stores, Backend};

fn shots(backend: Backend, who: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "dashboard-screenshots-{}/{who}",
        format!("{backend:?}").to_lowercase()
    ))
}

/// Waits until the element's text contains `expected`.
async fn wait_text(browser: &Chrome, css: &str, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = browser
            .client
            .find(fantoccini::Locator::Css(css))
            .await
            .ok();
        let text = match found {
            Some(element) => element.text().await.unwrap_or_default(),
            None => String::new(),
        };
        if text.contains(expected) {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "`{css}` never contained {expected:?} (last: {text:?}) on {}",
                browser.url().await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Screenshots the page and checks it used only the dashboard's origin and cookie.
async fn check_page(browser: &Chrome, d: &Dashboard, name: &str) {
    browser.screenshot(name).await;
    for url in browser.loaded_urls().await {
        assert!(
            url.starts_with(&format!("{}/", d.url)),
            "{name}: loaded {url} from another origin"
        );
    }
    let cookies = browser.cookie_names().await;
    assert!(
        cookies.iter().all(|c| c == "tokenroute_session"),
        "{name}: cookies {cookies:?}"
    );
    // The policy that makes "nothing from elsewhere" hold for whatever the page holds.
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(browser.url().await)
        .send()
        .await
        .unwrap();
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{name}: {csp}");
}

async fn sign_in(browser: &Chrome, d: &Dashboard, email: &str, name: &str) {
    d.oidc.next_login(email, email, name, &[]).await;
    browser.goto(&d.at("/")).await;
    browser.click_link("Sign in").await;
    wait_text(browser, "h1", "Overview").await;
}

async fn chat(d: &Dashboard, key: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(d.gateway.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "openai/gpt-4o-mini",
                      "messages": [{"role": "user", "content": "What is the capital of France?"}]}))
        .send()
        .await
        .unwrap()
}

/// Waits until the proxy refuses `key` with 401: running proxies hear of a revocation
/// (or an account's deletion) within `proxy.change-poll-ms`, so within a second.
async fn refused_within_a_second(d: &Dashboard, key: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    loop {
        let status = chat(d, key).await.status();
        if status == StatusCode::UNAUTHORIZED {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the key still gets {status} a second after it was revoked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_day_in_the_dashboard(backend: Backend) {
    let d = Dashboard::start(backend).await;
    let user = Chrome::start(true, &shots(backend, "user")).await;

    // Landing page, then sign-in through the identity provider.
    user.goto(&d.at("/")).await;
    check_page(&user, &d, "01-landing").await;
    sign_in(&user, &d, "uma@example.com", "Uma Example").await;
    assert_eq!(user.cookie_names().await, ["tokenroute_session"]);
    check_page(&user, &d, "02-overview").await;

    // Top up $20 through Stripe Checkout (the fake's hosted page) and the webhook.
    user.goto(&d.at("/credits")).await;
    wait_text(&user, "#balance", "$0.00").await;
    user.fill("amount_usd", "20").await;
    user.click("form[action='/billing/checkout'] button").await;
    wait_text(&user, "h1", "Pay $20.00").await;
    user.click("#pay").await;
    wait_text(&user, "h1", "Payment received").await;
    user.goto(&d.at("/credits")).await;
    wait_text(&user, "#balance", "$20.00").await;
    wait_text(&user, "#ledger", "cs_test_1").await;

    // A key, shown once, with a copy button.
    user.goto(&d.at("/keys")).await;
    check_page(&user, &d, "03-keys").await;
    user.fill("name", "laptop").await;
    user.click("form[action='/keys'] button[type='submit']")
        .await;
    wait_text(&user, "h1", "Key created: laptop").await;
    let secret = user.text("#secret").await;
    assert!(secret.starts_with("tr-"), "{secret}");
    let copy = user
        .client
        .find(fantoccini::Locator::Css("button[data-copy]"))
        .await
        .unwrap();
    assert!(
        copy.is_displayed().await.unwrap(),
        "the copy button shows with JavaScript"
    );
    check_page(&user, &d, "04-key-created").await;
    user.goto(&d.at("/keys")).await;
    assert!(!user.page_text().await.contains(&secret), "shown once only");
    // Request debugging on, with its explanation ([P6]).
    wait_text(&user, ".debug-toggle", "7 days at most").await;
    user.click(".debug-toggle button").await;
    wait_text(&user, "main", "Request debugging is on").await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // the proxy's key cache

    // The key works; the request shows in Usage, the debit in Credits.
    assert_eq!(chat(&d, &secret).await.status(), StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Reloaded until the row is there: the model's name alone is also in the
        // filter's list, before any usage is.
        user.goto(&d.at("/usage")).await;
        let table = match user
            .client
            .find(fantoccini::Locator::Css("#usage-table"))
            .await
        {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if table.contains("openai/gpt-4o-mini") && table.contains("laptop") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the request never showed in Usage"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_text(&user, "#usage-table", "laptop").await;
    check_page(&user, &d, "05-usage").await;
    user.click_link("Export CSV").await;
    let csv = String::from_utf8(user.downloaded("tokenroute-usage.csv").await).unwrap();
    assert!(csv.starts_with("time_utc,request_id,"), "{csv}");
    assert!(csv.contains("openai/gpt-4o-mini"));
    user.goto(&d.at("/keys")).await;
    user.click_link("View the debug log").await;
    wait_text(&user, "h1", "Debug log: laptop").await;
    wait_text(&user, "main", "What is the capital of France?").await;
    check_page(&user, &d, "05-debug-log").await;
    user.goto(&d.at("/credits")).await;
    wait_text(&user, "#ledger", "usage").await;
    let balance = user.text("#balance").await;
    assert!(balance.starts_with("$19.99"), "debited: {balance}");
    check_page(&user, &d, "06-credits").await;

    // An admin finds the user, books an adjustment with a reason, and announces.
    let admin = Chrome::start(true, &shots(backend, "admin")).await;
    sign_in(&admin, &d, ADMIN_EMAIL, "Root").await;
    admin.goto(&d.at("/admin?q=uma")).await;
    check_page(&admin, &d, "01-admin-accounts").await;
    admin.click_link("uma@example.com").await;
    wait_text(&admin, "h1", "uma@example.com").await;
    admin.fill("amount_usd", "5").await;
    admin.fill("reason", "Sorry for the outage").await;
    admin
        .click("form[action$='/credit'] button[type='submit']")
        .await;
    wait_text(&admin, "main", "The adjustment was booked.").await;
    check_page(&admin, &d, "02-admin-account").await;
    admin.goto(&d.at("/admin/models")).await;
    wait_text(&admin, "main", "openai/gpt-4o-mini").await;
    check_page(&admin, &d, "03-admin-models").await;
    admin.goto(&d.at("/admin/announcements")).await;
    // A policy change effective in 5 days is refused ([P21]: 14 days' notice).
    admin.fill("message", "New retention terms").await;
    admin
        .client
        .find(fantoccini::Locator::Css("select[name='kind']"))
        .await
        .unwrap()
        .select_by_value("policy")
        .await
        .unwrap();
    let in_days = |n: i64| {
        (chrono_like_date(tokenroute_domain::clock::now_ms() + n * 86_400_000)).to_string()
    };
    set_date(&admin, "effective", &in_days(5)).await;
    admin
        .click("form[action='/admin/announcements'] button[type='submit']")
        .await;
    wait_text(&admin, "main", "at least 14 days").await;
    admin
        .fill("message", "Scheduled maintenance on Sunday")
        .await;
    admin
        .click("form[action='/admin/announcements'] button[type='submit']")
        .await;
    wait_text(&admin, "main", "The announcement was published.").await;
    check_page(&admin, &d, "04-admin-announcements").await;
    admin.goto(&d.at("/admin/audit")).await;
    wait_text(&admin, "#audit", "Sorry for the outage").await;
    wait_text(&admin, "#audit", "announce").await;
    check_page(&admin, &d, "05-admin-audit").await;

    // The user sees the reason, the new balance and the banner.
    user.goto(&d.at("/credits")).await;
    wait_text(&user, "#ledger", "Sorry for the outage").await;
    assert!(user.text("#balance").await.starts_with("$24.99"));
    wait_text(&user, ".banner", "Scheduled maintenance on Sunday").await;

    // Export everything held about me ([P19]).
    user.goto(&d.at("/account")).await;
    check_page(&user, &d, "07-account").await;
    user.click_link("Export my data").await;
    let export: Value =
        serde_json::from_slice(&user.downloaded("tokenroute-account.json").await).unwrap();
    assert_eq!(export["account"]["email"], "uma@example.com");
    assert_eq!(export["keys"][0]["name"], "laptop");
    assert_eq!(export["usage"].as_array().unwrap().len(), 1);
    assert!(!export.to_string().contains(&secret));

    // On a phone-sized screen every page fits its width (wide tables scroll inside
    // their own box).
    user.client.set_window_size(390, 844).await.unwrap();
    for (path, name) in [
        ("/", "09-phone-overview"),
        ("/keys", "10-phone-keys"),
        ("/usage", "11-phone-usage"),
        ("/credits", "12-phone-credits"),
    ] {
        user.goto(&d.at(path)).await;
        let overflow = user
            .client
            .execute(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
                vec![],
            )
            .await
            .unwrap();
        assert!(
            overflow.as_i64().unwrap() <= 0,
            "{path} overflows a phone screen by {overflow}px"
        );
        check_page(&user, &d, name).await;
    }
    user.client.set_window_size(1280, 1000).await.unwrap();

    // Delete the account: signed out, the key refused, sign-in refused.
    user.goto(&d.at("/account")).await;
    user.click_link("Delete my account…").await;
    wait_text(&user, "h1", "Delete your account?").await;
    check_page(&user, &d, "08-account-delete").await;
    user.fill("confirm", "uma@example.com").await;
    user.click("button.danger").await;
    wait_text(&user, "h1", "TokenRoute").await;
    assert!(user.cookie_names().await.is_empty(), "signed out");
    refused_within_a_second(&d, &secret).await;
    d.oidc
        .next_login("uma@example.com", "uma@example.com", "Uma Example", &[])
        .await;
    user.goto(&d.at("/keys")).await;
    wait_text(&user, "h1", "This account was deleted").await;

    user.close().await;
    admin.close().await;
}

/// Every core action is a plain form: sign in, create a key, rename it and revoke it
/// (with its confirmation page) with JavaScript off.
async fn core_actions_work_without_javascript(backend: Backend) {
    let d = Dashboard::start(backend).await;
    let browser = Chrome::start(false, &shots(backend, "no-js")).await;
    sign_in(&browser, &d, "nojs@example.com", "No Script").await;
    browser.goto(&d.at("/keys")).await;
    browser.fill("name", "no-js key").await;
    browser
        .click("form[action='/keys'] button[type='submit']")
        .await;
    wait_text(&browser, "h1", "Key created").await;
    let copy = browser
        .client
        .find(fantoccini::Locator::Css("button[data-copy]"))
        .await
        .unwrap();
    assert!(
        !copy.is_displayed().await.unwrap(),
        "no copy button without script"
    );
    let secret = browser.text("#secret").await;
    browser.screenshot("key-created-no-js").await;

    browser.goto(&d.at("/keys")).await;
    browser.click("details summary").await;
    let rename = "form[action$='/rename']";
    let field = browser
        .client
        .find(fantoccini::Locator::Css(&format!(
            "{rename} input[name='name']"
        )))
        .await
        .unwrap();
    field.clear().await.unwrap();
    field.send_keys("renamed").await.unwrap();
    browser.click(&format!("{rename} button")).await;
    wait_text(&browser, "main", "The key was renamed.").await;
    browser.click_link("Revoke…").await;
    wait_text(&browser, "h1", "Revoke “renamed”?").await;
    browser.click("button.danger").await;
    wait_text(&browser, "main", "The key was revoked.").await;
    refused_within_a_second(&d, &secret).await;
    browser.close().await;
}

/// `YYYY-MM-DD` of a Unix-ms time (UTC).
fn chrono_like_date(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    // Civil-from-days (Howard Hinnant), to avoid a date dependency in the test.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    format!("{:04}-{m:02}-{d:02}", if m <= 2 { y + 1 } else { y })
}

/// Sets a date input (typing into one depends on the locale; setting its value does not).
async fn set_date(browser: &Chrome, name: &str, value: &str) {
    browser
        .client
        .execute(
            "document.querySelector(`[name='${arguments[0]}']`).value = arguments[1];",
            vec![json!(name), json!(value)],
        )
        .await
        .unwrap();
}

on_both_stores!(a_day_in_the_dashboard, core_actions_work_without_javascript);
