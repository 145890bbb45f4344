//! [P13] the database is backed up nightly and 14 backups are kept: a backup restores
//! what was there after a wipe, the 15th removes the oldest, and the nightly job runs
//! once a day.

use tokenroute_control_plane::retention;
use tokenroute_domain::api_key::ApiKey;
use tokenroute_domain::clock::now_ms;
use tokenroute_domain::config::Config;
use tokenroute_domain::NanoUsd;
use tokenroute_store::backup::{backups, restore};
use tokenroute_store::{Backend as StoreBackend, LedgerKind, NewKey, Store};
use tokenroute_tests::{on_both_stores, Backend, TestDb};

const DAY: i64 = 86_400_000;

async fn p13_backup_wipe_restore(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = Store::open(&db.url, 2).await.unwrap();
    let account = store
        .upsert_account_by_email("backup@example.com")
        .await
        .unwrap();
    store
        .book(
            &account.id,
            LedgerKind::TopUp,
            NanoUsd::parse_usd("12.5").unwrap(),
            "cs_backup",
            None,
        )
        .await
        .unwrap();
    let key = ApiKey::generate();
    store
        .create_key(
            &NewKey {
                account_id: &account.id,
                name: "k",
                limits: Default::default(),
            },
            &key,
        )
        .await
        .unwrap();

    let dir = db.dir.path().join("backups");
    let file = store.backup(&db.url, &dir, now_ms(), 14).await.unwrap();
    assert!(file.exists());

    // Wipe everything.
    match store.backend() {
        StoreBackend::Postgres => {
            sqlx::query("DROP SCHEMA public CASCADE")
                .execute(store.pool())
                .await
                .unwrap();
            sqlx::query("CREATE SCHEMA public")
                .execute(store.pool())
                .await
                .unwrap();
            store.close().await;
        }
        StoreBackend::Sqlite => {
            store.close().await;
            let path = tokenroute_domain::config::sqlite_path(&db.url).unwrap();
            std::fs::remove_file(path).unwrap();
        }
    }
    restore(&db.url, &file).unwrap();
    let store = Store::open(&db.url, 2).await.unwrap();
    let back = store
        .account_by_email("backup@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.id, account.id);
    assert_eq!(
        store.balance(&account.id).await.unwrap(),
        NanoUsd::parse_usd("12.5").unwrap()
    );
    assert!(store.key_by_hash(&key.hash()).await.unwrap().is_some());
    assert!(store
        .verify_ledger()
        .await
        .unwrap()
        .discrepancies
        .is_empty());

    // Fifteen nightly backups: fourteen stay, the oldest went.
    let rotating = db.dir.path().join("rotating");
    let mut made = Vec::new();
    for night in 0..15 {
        made.push(
            store
                .backup(&db.url, &rotating, now_ms() + night * DAY, 14)
                .await
                .unwrap(),
        );
    }
    let kept = backups(&rotating);
    assert_eq!(kept.len(), 14);
    assert!(!made[0].exists(), "the 15th backup removes the oldest");
    assert_eq!(kept, made[1..]);
    store.close().await;
}

async fn p13_nightly_job_runs_once_a_day(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = Store::open(&db.url, 2).await.unwrap();
    let dir = db.dir.path().join("nightly");
    let toml = format!(
        "[store]\nurl = \"{}\"\n[backup]\ndir = \"{}\"\nkeep = 14\n",
        db.url,
        dir.display()
    );
    let config = Config::from_toml(&toml, "t", &|_| None).unwrap();
    let now = now_ms();
    assert!(retention::backup_if_due(&store, &config, now)
        .await
        .unwrap()
        .is_some());
    assert!(
        retention::backup_if_due(&store, &config, now + 3_600_000)
            .await
            .unwrap()
            .is_none(),
        "one an hour later is not due"
    );
    assert!(retention::backup_if_due(&store, &config, now + DAY)
        .await
        .unwrap()
        .is_some());
    assert_eq!(backups(&dir).len(), 2);
    store.close().await;
}

on_both_stores!(p13_backup_wipe_restore, p13_nightly_job_runs_once_a_day);
