//! [P15] usage metadata and ledger entries are kept 7 years, then removed; balances do
//! not move (the removed entries' sum is carried forward) and the ledger verifies.

use tokenroute_control_plane::retention;
use tokenroute_domain::clock::now_ms;
use tokenroute_domain::{NanoUsd, UsageEvent};
use tokenroute_store::{LedgerKind, USAGE_RETENTION_MS};
use tokenroute_tests::{on_both_stores, Backend, FakeOpenAi, Gateway};

fn event(id: &str, account: &str, key: &str, at: i64) -> UsageEvent {
    UsageEvent {
        request_id: id.into(),
        account_id: account.into(),
        key_id: key.into(),
        created_at_ms: at,
        model: "openai/gpt-4o-mini".into(),
        provider: "openai".into(),
        upstream_model: "gpt-4o-mini".into(),
        input_tokens: 10,
        output_tokens: 5,
        cached_input_tokens: 0,
        cost: NanoUsd(1_000),
        status: 200,
        streamed: false,
        estimated: false,
        cancelled: false,
        duration_ms: 3,
        route: String::new(),
        attempts: 1,
    }
}

async fn p15_seven_years(backend: Backend) {
    let fake = FakeOpenAi::start().await;
    let gw = Gateway::start(backend, &fake).await;
    let store = &gw.store;
    let (_, account, key) = gw.key_with_credits("ledger@example.com", "10").await;
    let now = now_ms();
    // The credit above is from today; these usage rows are from today and from (just
    // over, and just under) 7 years ago, as the clock will be moved instead.
    store
        .record_usage(&[event("recent", &account, &key, now)])
        .await
        .unwrap();
    let balance = store.balance(&account).await.unwrap();

    let dir = gw.access_log_dir();
    let later = now + USAGE_RETENTION_MS - 60_000;
    let report = retention::run_once(store, &dir, later).await.unwrap();
    assert_eq!(
        (report.usage_rows, report.ledger_entries),
        (0, 0),
        "kept for 7 years"
    );

    let expired = retention::run_once(store, &dir, now + USAGE_RETENTION_MS + 60_000)
        .await
        .unwrap();
    assert_eq!(expired.usage_rows, 1);
    assert_eq!(expired.ledger_entries, 2, "the credit and the usage debit");
    assert!(store
        .usage_of_account(&account, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.balance(&account).await.unwrap(), balance);
    let ledger = store.ledger(&account, 10).await.unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].kind, LedgerKind::CarriedForward.as_str());
    assert_eq!(ledger[0].amount, balance);
    let report = store.verify_ledger().await.unwrap();
    assert!(
        report.discrepancies.is_empty(),
        "{:?}",
        report.discrepancies
    );
    assert_eq!(report.balances, [(account.clone(), balance)]);
}

on_both_stores!(p15_seven_years);
