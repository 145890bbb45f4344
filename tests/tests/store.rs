//! The store's promises, on both backends: usage is idempotent by request id (a
//! replayed batch charges nothing twice), the balance is the ledger's sum, ledger
//! references book once, and a key hash is never issued twice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tokenroute_domain::api_key::ApiKey;
use tokenroute_domain::{NanoUsd, UsageEvent};
use tokenroute_store::{LedgerKind, NewKey, Store, StoreError};
use tokenroute_tests::{Backend, TestDb};

async fn open(backend: Backend) -> (TestDb, Store) {
    let db = TestDb::new(backend).await;
    let store = Store::open(&db.url, 4).await.unwrap();
    (db, store)
}

/// A fresh key of the account, limits none.
async fn new_key(store: &Store, account_id: &str) -> tokenroute_store::KeyRecord {
    let new = NewKey {
        account_id,
        name: "k",
        limits: Default::default(),
    };
    store.create_key(&new, &ApiKey::generate()).await.unwrap()
}

fn event(request_id: &str, account: &str, key: &str, cost: i64) -> UsageEvent {
    UsageEvent {
        request_id: request_id.into(),
        account_id: account.into(),
        key_id: key.into(),
        created_at_ms: 1_700_000_000_000,
        model: "openai/gpt-4o-mini".into(),
        provider: "openai".into(),
        upstream_model: "gpt-4o-mini".into(),
        input_tokens: 24,
        output_tokens: 8,
        cost: NanoUsd(cost),
        status: 200,
        streamed: false,
        estimated: false,
        cancelled: false,
        duration_ms: 12,
        route: String::new(),
        attempts: 1,
        cached_input_tokens: 0,
    }
}

async fn replayed_usage_charges_nothing_twice(backend: Backend) {
    let (_db, store) = open(backend).await;
    let account = store
        .upsert_account_by_email("ops@example.com")
        .await
        .unwrap();
    store
        .book(
            &account.id,
            LedgerKind::Adjustment,
            NanoUsd(1_000_000),
            "grant-1",
            None,
        )
        .await
        .unwrap();
    let record = new_key(&store, &account.id).await;
    let batch = vec![
        event("req-1", &account.id, &record.id, 8_400),
        event("req-2", &account.id, &record.id, 1),
        event("req-3", &account.id, &record.id, 0),
    ];
    assert_eq!(store.record_usage(&batch).await.unwrap().inserted, 3);
    // A crash after commit, a retry, a spool replay: the same batch again, and overlapping.
    assert_eq!(store.record_usage(&batch).await.unwrap().inserted, 0);
    let overlapping = vec![
        batch[1].clone(),
        event("req-4", &account.id, &record.id, 100),
    ];
    let recorded = store.record_usage(&overlapping).await.unwrap();
    assert_eq!(recorded.inserted, 1);
    // The store hands back the balance after the batch, for caches to take.
    assert_eq!(recorded.balances[&account.id], NanoUsd(1_000_000 - 8_501));

    let usage = store.usage_of_account(&account.id, 100).await.unwrap();
    assert_eq!(usage.len(), 4);
    let ledger = store.ledger(&account.id, 100).await.unwrap();
    let debits: Vec<i64> = ledger
        .iter()
        .filter(|e| e.kind == "usage")
        .map(|e| e.amount.nanos())
        .collect();
    assert_eq!(
        debits.len(),
        2,
        "one debit per account per batch; free requests and replayed ones add none"
    );
    assert_eq!(store.debit_of_request("req-3").await.unwrap(), None, "free");
    let first = store.debit_of_request("req-1").await.unwrap().unwrap();
    assert_eq!(
        first.amount,
        NanoUsd(-8_401),
        "req-1 and req-2, in one debit"
    );
    assert_eq!(first.note.as_deref(), Some("2 requests"));
    assert_eq!(store.debit_of_request("req-2").await.unwrap(), Some(first));
    let fourth = store.debit_of_request("req-4").await.unwrap().unwrap();
    assert_eq!(fourth.amount, NanoUsd(-100), "the replay added req-4 only");
    let usage_sum: i64 = usage.iter().map(|u| u.cost.nanos()).sum();
    assert_eq!(
        -debits.iter().sum::<i64>(),
        usage_sum,
        "usage and ledger reconcile to the unit"
    );
    assert_eq!(
        store.balance(&account.id).await.unwrap(),
        NanoUsd(1_000_000 - 8_501)
    );
    let keys = store.keys_of_account(&account.id).await.unwrap();
    assert_eq!(keys[0].last_used_at_ms, Some(1_700_000_000_000));
    let report = store.verify_ledger().await.unwrap();
    assert!(
        report.discrepancies.is_empty(),
        "{:?}",
        report.discrepancies
    );
    assert_eq!(
        report.balances,
        vec![(account.id.clone(), NanoUsd(1_000_000 - 8_501))]
    );
}

async fn ledger_references_book_once(backend: Backend) {
    let (_db, store) = open(backend).await;
    let account = store
        .upsert_account_by_email("Pay@Example.com")
        .await
        .unwrap();
    assert_eq!(account.email, "pay@example.com");
    let again = store
        .upsert_account_by_email("pay@example.com ")
        .await
        .unwrap();
    assert_eq!(again.id, account.id, "one account per email");
    for _ in 0..3 {
        store
            .book(
                &account.id,
                LedgerKind::TopUp,
                NanoUsd(5_000_000_000),
                "cs_test_123",
                None,
            )
            .await
            .unwrap();
    }
    assert_eq!(
        store.balance(&account.id).await.unwrap(),
        NanoUsd(5_000_000_000)
    );
    // The same reference under another kind is another entry.
    assert!(store
        .book(
            &account.id,
            LedgerKind::Refund,
            NanoUsd(-1),
            "cs_test_123",
            None
        )
        .await
        .unwrap());
    assert_eq!(
        store.balance(&account.id).await.unwrap(),
        NanoUsd(4_999_999_999)
    );
}

async fn a_key_hash_is_never_issued_twice_and_revocation_keeps_it(backend: Backend) {
    let (_db, store) = open(backend).await;
    let account = store
        .upsert_account_by_email("k@example.com")
        .await
        .unwrap();
    let key = ApiKey::generate();
    let new = NewKey {
        account_id: &account.id,
        name: "first",
        limits: Default::default(),
    };
    let record = store.create_key(&new, &key).await.unwrap();
    assert!(store.revoke_key(&record.id).await.unwrap());
    assert!(
        !store.revoke_key(&record.id).await.unwrap(),
        "revoking twice is harmless"
    );
    let kept = store.key_by_hash(&key.hash()).await.unwrap().unwrap();
    assert!(
        kept.revoked_at_ms.is_some() && !kept.is_usable(),
        "the hash stays, revoked"
    );
    assert!(matches!(
        store.create_key(&new, &key).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.revoke_key("no-such-key").await,
        Err(StoreError::NotFound(_))
    ));
}

/// `ledger verify` finds a debit that does not match its usage rows, a charged row
/// without a debit, a usage debit charging no row, and a balance projection out of
/// step with the ledger.
async fn ledger_verify_finds_every_kind_of_discrepancy(backend: Backend) {
    let (_db, store) = open(backend).await;
    let account = store
        .upsert_account_by_email("v@example.com")
        .await
        .unwrap();
    let record = new_key(&store, &account.id).await;
    // Two batches: two debits.
    for (id, cost) in [("ok", 10), ("bad", 20)] {
        store
            .record_usage(&[event(id, &account.id, &record.id, cost)])
            .await
            .unwrap();
    }
    let debit = |id: &'static str| {
        let store = store.clone();
        async move { store.debit_of_request(id).await.unwrap().unwrap().reference }
    };
    let (ok_debit, bad_debit) = (debit("ok").await, debit("bad").await);
    assert!(store
        .verify_ledger()
        .await
        .unwrap()
        .discrepancies
        .is_empty());
    // Tamper, as a bug or a hand edit would.
    sqlx::query("UPDATE ledger_entries SET amount_nanos = -21 WHERE id = $1")
        .bind(&bad_debit)
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query("DELETE FROM ledger_entries WHERE id = $1")
        .bind(&ok_debit)
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO ledger_entries (id, account_id, kind, amount_nanos, reference, created_at)
         VALUES ('stray', $1, 'usage', -5, 'stray', 0)",
    )
    .bind(&account.id)
    .execute(store.pool())
    .await
    .unwrap();
    let report = store.verify_ledger().await.unwrap();
    let problems: Vec<&str> = report
        .discrepancies
        .iter()
        .map(|d| d.problem.as_str())
        .collect();
    assert_eq!(report.discrepancies.len(), 4, "{problems:?}");
    assert!(
        problems.iter().any(|p| p.contains("no ledger debit")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("charges no usage row")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("does not match")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("projection")),
        "{problems:?}"
    );
}

async fn migrations_are_idempotent(backend: Backend) {
    let (db, store) = open(backend).await;
    store.migrate().await.unwrap();
    let again = Store::open(&db.url, 1).await.unwrap();
    again.ping().await.unwrap();
}

/// A large batch (written as concurrent transactions on Postgres) is exact and
/// idempotent like a small one: every debit once, every balance right, a replay of the
/// whole batch — or of any part — changes nothing.
async fn a_large_batch_is_exact_and_replays_to_nothing(backend: Backend) {
    let (_db, store) = open(backend).await;
    let mut accounts = Vec::new();
    for i in 0..40 {
        let account = store
            .upsert_account_by_email(&format!("batch{i}@example.com"))
            .await
            .unwrap();
        let key = new_key(&store, &account.id).await;
        accounts.push((account.id, key.id));
    }
    let events: Vec<UsageEvent> = (0..1000)
        .map(|i| {
            let (account, key) = &accounts[i % accounts.len()];
            event(&format!("big-{i}"), account, key, 1_000 + i as i64)
        })
        .collect();
    // A batch the writer keeps up with (SQLite: statements of 32 rows), then the rest in
    // one large batch (statements of 512): both exact, each event once.
    assert_eq!(
        store.record_usage(&events[..100]).await.unwrap().inserted,
        100
    );
    let recorded = store.record_usage(&events).await.unwrap();
    assert_eq!(recorded.inserted, 900);
    assert_eq!(recorded.balances.len(), accounts.len());
    for (account, _) in &accounts {
        let expected: i64 = events
            .iter()
            .filter(|e| &e.account_id == account)
            .map(|e| -e.cost.nanos())
            .sum();
        assert_eq!(store.balance(account).await.unwrap(), NanoUsd(expected));
        assert_eq!(recorded.balances[account], NanoUsd(expected));
    }
    assert_eq!(store.record_usage(&events).await.unwrap().inserted, 0);
    assert_eq!(
        store
            .record_usage(&events[300..700])
            .await
            .unwrap()
            .inserted,
        0
    );
    let report = store.verify_ledger().await.unwrap();
    assert!(
        report.discrepancies.is_empty(),
        "{:?}",
        report.discrepancies
    );
    assert_eq!(report.usage_rows, 1000);
    assert_eq!(report.ledger_entries, 80, "one debit per account and batch");
}

/// Scheduled jobs run on one instance at a time: a lease is held until it expires or
/// is released, and renewed by its holder.
async fn job_leases_admit_one_holder_at_a_time(backend: Backend) {
    let (_db, store) = open(backend).await;
    let t = 1_800_000_000_000;
    assert!(store.try_lease("retention", "a", t, 60_000).await.unwrap());
    assert!(!store
        .try_lease("retention", "b", t + 1, 60_000)
        .await
        .unwrap());
    assert!(
        store
            .try_lease("retention", "a", t + 2, 60_000)
            .await
            .unwrap(),
        "renewed"
    );
    assert!(store
        .try_lease("other-job", "b", t + 3, 60_000)
        .await
        .unwrap());
    assert!(!store
        .try_lease("retention", "b", t + 60_001, 60_000)
        .await
        .unwrap());
    assert!(
        store
            .try_lease("retention", "b", t + 60_002, 60_000)
            .await
            .unwrap(),
        "expired"
    );
    store.release_lease("retention", "a").await.unwrap(); // not a's any more: no effect
    assert!(!store
        .try_lease("retention", "a", t + 60_003, 60_000)
        .await
        .unwrap());
    store.release_lease("retention", "b").await.unwrap();
    assert!(store
        .try_lease("retention", "a", t + 60_004, 60_000)
        .await
        .unwrap());
}

/// Postgres keeps usage in monthly partitions; replays stay idempotent across them and
/// the retention job keeps the coming months' partitions ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_partitions_usage_by_month() {
    let (_db, store) = open(Backend::Postgres).await;
    let account = store
        .upsert_account_by_email("p@example.com")
        .await
        .unwrap();
    let key = new_key(&store, &account.id).await;
    let now = tokenroute_domain::clock::now_ms();
    let mut this_month = event("r-now", &account.id, &key.id, 1_000);
    this_month.created_at_ms = now;
    let mut long_ago = event("r-old", &account.id, &key.id, 1_000);
    long_ago.created_at_ms = now - 3 * 365 * 86_400_000;
    let batch = [this_month.clone(), long_ago.clone()];
    assert_eq!(store.record_usage(&batch).await.unwrap().inserted, 2);
    assert_eq!(
        store.record_usage(&batch).await.unwrap().inserted,
        0,
        "replays charge nothing twice"
    );
    let month = chrono::DateTime::from_timestamp_millis(now)
        .unwrap()
        .format("%Y%m")
        .to_string();
    let partition_of = |id: &'static str| {
        let store = store.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT CAST(tableoid::regclass AS TEXT) FROM usage_events WHERE request_id = $1",
            )
            .bind(id)
            .fetch_one(store.pool())
            .await
            .unwrap()
        }
    };
    assert_eq!(
        partition_of("r-now").await,
        format!("usage_events_p{month}")
    );
    assert_eq!(partition_of("r-old").await, "usage_events_default");
    let in_a_year = now + 365 * 86_400_000;
    let (created, dropped) = store.maintain_usage_partitions(in_a_year).await.unwrap();
    assert_eq!((created, dropped), (4, 0));
    assert_eq!(
        store.maintain_usage_partitions(in_a_year).await.unwrap(),
        (0, 0)
    );
    assert!(store
        .verify_ledger()
        .await
        .unwrap()
        .discrepancies
        .is_empty());
}

/// A usage debit goes with its rows after 7 years, and only when all of them are that
/// old: a batch written across the cutoff keeps its older rows until its debit goes,
/// so `ledger verify` stays clean throughout.
async fn a_usage_debit_expires_with_all_its_rows(backend: Backend) {
    let (_db, store) = open(backend).await;
    let account = store
        .upsert_account_by_email("old@example.com")
        .await
        .unwrap();
    let record = new_key(&store, &account.id).await;
    let t0 = 1_700_000_000_000;
    let mut older = event("older", &account.id, &record.id, 30);
    older.created_at_ms = t0;
    let mut newer = event("newer", &account.id, &record.id, 12);
    newer.created_at_ms = t0 + 120_000;
    store.record_usage(&[older, newer]).await.unwrap();
    let balance = store.balance(&account.id).await.unwrap();
    let clean = |store: Store| async move {
        let report = store.verify_ledger().await.unwrap();
        assert!(
            report.discrepancies.is_empty(),
            "{:?}",
            report.discrepancies
        );
    };

    // The cutoff between the two rows: the debit is dated by the newer one, so nothing goes.
    let between = t0 + tokenroute_store::USAGE_RETENTION_MS + 60_000;
    let expired = store.expire_old_usage(between).await.unwrap();
    assert_eq!((expired.usage_rows, expired.ledger_entries), (0, 0));
    assert_eq!(
        store.usage_of_account(&account.id, 10).await.unwrap().len(),
        2
    );
    clean(store.clone()).await;

    let after = t0 + tokenroute_store::USAGE_RETENTION_MS + 180_000;
    let expired = store.expire_old_usage(after).await.unwrap();
    assert_eq!((expired.usage_rows, expired.ledger_entries), (2, 1));
    assert_eq!(store.balance(&account.id).await.unwrap(), balance);
    clean(store.clone()).await;
}

/// Upgrading a store whose usage was debited per request (before migration 0014): each
/// row is linked to its own debit, and the ledger verifies before new batches and after.
async fn per_request_debits_from_before_batch_debits_still_verify(backend: Backend) {
    let db = TestDb::new(backend).await;
    let before = tempfile::tempdir().unwrap();
    let dir = match backend {
        Backend::Postgres => "postgres",
        Backend::Sqlite => "sqlite",
    };
    let all = format!("{}/../migrations/{dir}", env!("CARGO_MANIFEST_DIR"));
    for entry in std::fs::read_dir(all).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.as_str() < "0014" {
            std::fs::copy(entry.path(), before.path().join(&name)).unwrap();
        }
    }
    let old_schema = [
        "INSERT INTO accounts (id, email, created_at) VALUES ('acct', 'a@example.com', 1)",
        "INSERT INTO api_keys (id, account_id, key_hash, name, display_prefix, last_four, created_at)
         VALUES ('key', 'acct', 'h', 'k', 'tr-', 'abcd', 1)",
        "INSERT INTO account_balances (account_id, balance_nanos, version) VALUES ('acct', -42, 2)",
        "INSERT INTO ledger_entries (id, account_id, kind, amount_nanos, reference, created_at)
         VALUES ('usage-r1', 'acct', 'usage', -30, 'r1', 5), ('usage-r2', 'acct', 'usage', -12, 'r2', 6)",
    ];
    let usage = "INSERT INTO usage_events (request_id, account_id, key_id, created_at, model,
             provider, upstream_model, input_tokens, output_tokens, cost_nanos, status,
             streamed, estimated, duration_ms)
         VALUES ('r1', 'acct', 'key', 5, 'm', 'p', 'u', 1, 2, 30, 200, 0, 0, 5),
                ('r2', 'acct', 'key', 6, 'm', 'p', 'u', 1, 2, 12, 200, 0, 0, 5),
                ('r3', 'acct', 'key', 7, 'm', 'p', 'u', 1, 2, 0, 200, 0, 0, 5)";
    let migrator = sqlx::migrate::Migrator::new(before.path()).await.unwrap();
    match backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            migrator.run(&pool).await.unwrap();
            for sql in old_schema.iter().chain([&usage]) {
                sqlx::query(sql).execute(&pool).await.unwrap();
            }
            pool.close().await;
        }
        Backend::Sqlite => {
            let options =
                <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&db.url)
                    .unwrap()
                    .create_if_missing(true);
            let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
            migrator.run(&pool).await.unwrap();
            for sql in old_schema.iter().chain([&usage]) {
                sqlx::query(sql).execute(&pool).await.unwrap();
            }
            pool.close().await;
        }
    }

    let store = Store::open(&db.url, 2).await.unwrap();
    let report = store.verify_ledger().await.unwrap();
    assert!(
        report.discrepancies.is_empty(),
        "{:?}",
        report.discrepancies
    );
    let r1 = store.debit_of_request("r1").await.unwrap().unwrap();
    assert_eq!((r1.amount, r1.reference.as_str()), (NanoUsd(-30), "r1"));
    assert_eq!(store.debit_of_request("r3").await.unwrap(), None);
    store
        .record_usage(&[event("r4", "acct", "key", 8)])
        .await
        .unwrap();
    let report = store.verify_ledger().await.unwrap();
    assert!(
        report.discrepancies.is_empty(),
        "{:?}",
        report.discrepancies
    );
    assert_eq!(store.balance("acct").await.unwrap(), NanoUsd(-50));
}

/// Upgrading a Postgres store that already holds usage moves every row into its month.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_partitioning_migration_keeps_existing_usage() {
    let db = TestDb::new(Backend::Postgres).await;
    // The schema as it was before partitioning: migrations 0001-0009 only.
    let before = tempfile::tempdir().unwrap();
    let all = concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations/postgres");
    for entry in std::fs::read_dir(all).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.as_str() < "0010" {
            std::fs::copy(entry.path(), before.path().join(&name)).unwrap();
        }
    }
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    sqlx::migrate::Migrator::new(before.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    let day = 86_400_000_i64;
    let now = tokenroute_domain::clock::now_ms();
    for (i, at) in [now - 400 * day, now - 40 * day, now].iter().enumerate() {
        sqlx::query(
            "INSERT INTO usage_events (request_id, account_id, key_id, created_at, model, provider,
                 upstream_model, input_tokens, output_tokens, cost_nanos, status, streamed,
                 estimated, duration_ms)
             VALUES ($1, 'a', 'k', $2, 'm', 'p', 'u', 1, 2, 3, 200, 0, 0, 5)",
        )
        .bind(format!("old-{i}"))
        .bind(at)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    let store = Store::open(&db.url, 2).await.unwrap();
    let placed: Vec<(String, String)> = sqlx::query_as(
        "SELECT request_id, CAST(tableoid::regclass AS TEXT) FROM usage_events ORDER BY created_at",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let month = |ms: i64| {
        format!(
            "usage_events_p{}",
            chrono::DateTime::from_timestamp_millis(ms)
                .unwrap()
                .format("%Y%m")
        )
    };
    assert_eq!(
        placed,
        [
            ("old-0".to_string(), month(now - 400 * day)),
            ("old-1".to_string(), month(now - 40 * day)),
            ("old-2".to_string(), month(now)),
        ]
    );
}

/// Every key and account change is in the change log, in commit order, written with
/// the change itself: a change that fails logs nothing. Proxies without Redis follow
/// the log (rows after the last one seen) to drop what they cached.
async fn key_and_account_changes_are_logged_in_commit_order(backend: Backend) {
    use tokenroute_store::Change;
    let (_db, store) = open(backend).await;
    let account = store
        .upsert_account_by_email("log@example.com")
        .await
        .unwrap();
    let other = store
        .upsert_account_by_email("gone@example.com")
        .await
        .unwrap();
    let key = new_key(&store, &account.id).await;
    let head = store.change_log_head().await.unwrap();
    assert!(store.changes_after(head, 100).await.unwrap().is_empty());

    let limits = tokenroute_domain::KeyLimits {
        rpm: Some(10),
        ..Default::default()
    };
    store.set_key_limits(&key.id, &limits).await.unwrap();
    store.set_key_suspended(&key.id, true).await.unwrap();
    store.set_key_debug(&key.id, true).await.unwrap();
    store
        .set_account_status(&account.id, "suspended")
        .await
        .unwrap();
    assert!(store.revoke_key(&key.id).await.unwrap());
    store.delete_account(&other.id).await.unwrap();
    // Failed changes: nothing committed, nothing logged.
    assert!(store.set_key_suspended("no-such-key", true).await.is_err());
    assert!(store.revoke_key("no-such-key").await.is_err());
    assert!(store.set_account_status(&other.id, "active").await.is_err());

    let logged = store.changes_after(head, 100).await.unwrap();
    let key_change = || Change::Key { id: key.id.clone() };
    let expected = vec![
        key_change(),
        key_change(),
        key_change(),
        Change::Account {
            id: account.id.clone(),
        },
        key_change(),
        Change::Account {
            id: other.id.clone(),
        },
    ];
    assert_eq!(
        logged.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>(),
        expected
    );
    let seqs: Vec<i64> = logged.iter().map(|(seq, _)| *seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(
        store.change_log_head().await.unwrap(),
        *seqs.last().unwrap()
    );
    // A follower reads on from where it stopped, in pages.
    let page = store.changes_after(head, 2).await.unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!(store.changes_after(page[1].0, 100).await.unwrap().len(), 4);

    // Pruning keeps what is newer than the cut.
    assert_eq!(store.prune_change_log(0).await.unwrap(), 0);
    let now = tokenroute_domain::clock::now_ms();
    assert!(store.prune_change_log(now + 1).await.unwrap() >= 6);
    assert!(store.changes_after(head, 100).await.unwrap().is_empty());
}

/// Changes committed concurrently still reach a follower that reads "after the last
/// seq I saw" while they commit: none is skipped (on Postgres, a sequence number taken
/// by a transaction that commits late would be, without the table lock).
async fn a_follower_misses_no_concurrent_change(backend: Backend) {
    use std::collections::HashSet;
    use tokenroute_store::Change;
    let (_db, store) = open(backend).await;
    let account = store
        .upsert_account_by_email("busy@example.com")
        .await
        .unwrap();
    let mut keys = Vec::new();
    for _ in 0..24 {
        keys.push(new_key(&store, &account.id).await.id);
    }
    let head = store.change_log_head().await.unwrap();
    let writers: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move {
                for round in 0..3 {
                    store
                        .set_key_suspended(&id, (i + round) % 2 == 0)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    // Follow while they write, as a proxy does.
    let mut last = head;
    let mut seen = Vec::new();
    let follow = |last: i64| {
        let store = store.clone();
        async move { store.changes_after(last, 1000).await.unwrap() }
    };
    while !writers.iter().all(|w| w.is_finished()) {
        for (seq, change) in follow(last).await {
            assert!(seq > last);
            last = seq;
            seen.push(change);
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    for w in writers {
        w.await.unwrap();
    }
    for (seq, change) in follow(last).await {
        assert!(seq > last);
        last = seq;
        seen.push(change);
    }
    assert_eq!(
        seen.len(),
        keys.len() * 3,
        "every committed change was read once"
    );
    let ids: HashSet<String> = seen
        .into_iter()
        .map(|c| match c {
            Change::Key { id } => id,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(ids, keys.into_iter().collect::<HashSet<_>>());
}

tokenroute_tests::on_both_stores!(
    a_follower_misses_no_concurrent_change,
    key_and_account_changes_are_logged_in_commit_order,
    a_large_batch_is_exact_and_replays_to_nothing,
    job_leases_admit_one_holder_at_a_time,
    replayed_usage_charges_nothing_twice,
    ledger_references_book_once,
    a_key_hash_is_never_issued_twice_and_revocation_keeps_it,
    migrations_are_idempotent,
    ledger_verify_finds_every_kind_of_discrepancy,
    a_usage_debit_expires_with_all_its_rows,
    per_request_debits_from_before_batch_debits_still_verify,
);
