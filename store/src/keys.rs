//! API keys, by hash. The plaintext never reaches this module.

use sqlx::Row;
use tokenroute_domain::api_key::ApiKey;
use tokenroute_domain::clock::now_ms;
use tokenroute_domain::{KeyHash, KeyLimits, NanoUsd};

use crate::{new_id, Store, StoreError};

/// What to create: the key's owner and its name.
#[derive(Debug, Clone)]
pub struct NewKey<'a> {
    pub account_id: &'a str,
    pub name: &'a str,
    pub limits: KeyLimits,
}

/// A stored key, as authentication and listings need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub display_prefix: String,
    pub last_four: String,
    pub created_at_ms: i64,
    pub last_used_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
    /// Suspended by an admin: refused until unsuspended.
    pub suspended_at_ms: Option<i64>,
    /// Request debugging is on: bodies are kept for 7 days ([P6]).
    pub debug_enabled: bool,
    /// The owning account's status (`active`, `suspended`, `deleted`).
    pub account_status: String,
    pub limits: KeyLimits,
}

impl KeyRecord {
    pub fn is_usable(&self) -> bool {
        self.revoked_at_ms.is_none()
            && self.suspended_at_ms.is_none()
            && self.account_status == "active"
    }

    fn from_row(row: &sqlx::any::AnyRow) -> Result<KeyRecord, sqlx::Error> {
        Ok(KeyRecord {
            id: row.try_get("id")?,
            account_id: row.try_get("account_id")?,
            name: row.try_get("name")?,
            display_prefix: row.try_get("display_prefix")?,
            last_four: row.try_get("last_four")?,
            created_at_ms: row.try_get("created_at")?,
            last_used_at_ms: row.try_get("last_used_at")?,
            revoked_at_ms: row.try_get("revoked_at")?,
            suspended_at_ms: row.try_get("suspended_at")?,
            debug_enabled: row.try_get::<i64, _>("debug_enabled")? != 0,
            account_status: row.try_get("status")?,
            limits: KeyLimits {
                rpm: row
                    .try_get::<Option<i64>, _>("rpm_limit")?
                    .map(|n| n.max(0) as u64),
                tpm: row
                    .try_get::<Option<i64>, _>("tpm_limit")?
                    .map(|n| n.max(0) as u64),
                spend_per_day: row
                    .try_get::<Option<i64>, _>("spend_limit_day_nanos")?
                    .map(NanoUsd),
                spend_per_month: row
                    .try_get::<Option<i64>, _>("spend_limit_month_nanos")?
                    .map(NanoUsd),
                spend_total: row
                    .try_get::<Option<i64>, _>("spend_limit_nanos")?
                    .map(NanoUsd),
                allowed_models: row
                    .try_get::<Option<String>, _>("allowed_models")?
                    .and_then(|json| serde_json::from_str(&json).ok()),
            },
        })
    }
}

/// The limit columns' values, in the order of [`LIMIT_COLUMNS`].
fn limit_values(l: &KeyLimits) -> [Option<i64>; 5] {
    let count = |n: Option<u64>| n.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    [
        count(l.rpm),
        count(l.tpm),
        l.spend_per_day.map(NanoUsd::nanos),
        l.spend_per_month.map(NanoUsd::nanos),
        l.spend_total.map(NanoUsd::nanos),
    ]
}

fn models_json(l: &KeyLimits) -> Option<String> {
    l.allowed_models
        .as_ref()
        .map(|m| serde_json::Value::from(m.clone()).to_string())
}

const KEY_COLUMNS: &str = "k.id, k.account_id, k.name, k.display_prefix, k.last_four, k.created_at,
     k.last_used_at, k.revoked_at, k.suspended_at, k.debug_enabled, a.status, k.rpm_limit, k.tpm_limit, k.spend_limit_day_nanos,
     k.spend_limit_month_nanos, k.spend_limit_nanos, k.allowed_models";

impl Store {
    /// Stores a new key's hash. A hash that was ever stored — revoked or not — is
    /// refused (the unique index), so a key can never be issued twice.
    pub async fn create_key(
        &self,
        new: &NewKey<'_>,
        key: &ApiKey,
    ) -> Result<KeyRecord, StoreError> {
        let id = new_id();
        let [rpm, tpm, day, month, total] = limit_values(&new.limits);
        let result = sqlx::query(
            "INSERT INTO api_keys (id, account_id, key_hash, name, display_prefix, last_four, created_at,
                 rpm_limit, tpm_limit, spend_limit_day_nanos, spend_limit_month_nanos, spend_limit_nanos,
                 allowed_models)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&id)
        .bind(new.account_id)
        .bind(key.hash().as_str())
        .bind(new.name)
        .bind(key.display_prefix())
        .bind(key.last_four())
        .bind(now_ms())
        .bind(rpm)
        .bind(tpm)
        .bind(day)
        .bind(month)
        .bind(total)
        .bind(models_json(&new.limits))
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::Conflict(
                    "this key was issued before and can never be issued again".into(),
                ))
            }
            Err(e) => return Err(e.into()),
        }
        self.key_by_hash(&key.hash())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("key {id} vanished")))
    }

    /// The key with this hash, revoked or not, with its account's status.
    pub async fn key_by_hash(&self, hash: &KeyHash) -> Result<Option<KeyRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys k JOIN accounts a ON a.id = k.account_id
             WHERE k.key_hash = $1"
        ))
        .bind(hash.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(KeyRecord::from_row).transpose()?)
    }

    /// The account's keys, newest first, revoked ones included.
    pub async fn keys_of_account(&self, account_id: &str) -> Result<Vec<KeyRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys k JOIN accounts a ON a.id = k.account_id
             WHERE k.account_id = $1 ORDER BY k.created_at DESC, k.id DESC"
        ))
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(KeyRecord::from_row)
            .collect::<Result<_, _>>()?)
    }

    /// Replaces a key's limits.
    pub async fn set_key_limits(&self, key_id: &str, limits: &KeyLimits) -> Result<(), StoreError> {
        let [rpm, tpm, day, month, total] = limit_values(limits);
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE api_keys SET rpm_limit = $1, tpm_limit = $2, spend_limit_day_nanos = $3,
                 spend_limit_month_nanos = $4, spend_limit_nanos = $5, allowed_models = $6
             WHERE id = $7",
        )
        .bind(rpm)
        .bind(tpm)
        .bind(day)
        .bind(month)
        .bind(total)
        .bind(models_json(limits))
        .bind(key_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("no key with id {key_id}")));
        }
        self.commit_key_change(tx, key_id).await
    }

    /// The key by id, revoked or not.
    pub async fn key_by_id(&self, key_id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys k JOIN accounts a ON a.id = k.account_id
             WHERE k.id = $1"
        ))
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(KeyRecord::from_row).transpose()?)
    }

    /// Revokes a key by id. Its row and hash stay forever ([P17]); its debug logs are
    /// deleted with it ([P6]). Returns whether it was active until now (revoking twice
    /// is harmless).
    pub async fn revoke_key(&self, key_id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = $1, debug_enabled = 0 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(key_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM debug_logs WHERE key_id = $1")
            .bind(key_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            let exists: Option<String> =
                sqlx::query_scalar("SELECT id FROM api_keys WHERE id = $1")
                    .bind(key_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if exists.is_none() {
                return Err(StoreError::NotFound(format!("no key with id {key_id}")));
            }
        }
        self.commit_key_change(tx, key_id).await?;
        Ok(done.rows_affected() == 1)
    }

    /// Suspends a key (the proxy refuses it) or lifts the suspension. Revoked keys stay
    /// revoked whatever this says.
    pub async fn set_key_suspended(&self, key_id: &str, suspended: bool) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE api_keys SET suspended_at = CASE WHEN $1 = 1 THEN COALESCE(suspended_at, $2) ELSE NULL END
             WHERE id = $3",
        )
        .bind(i64::from(suspended))
        .bind(now_ms())
        .bind(key_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("no key with id {key_id}")));
        }
        self.commit_key_change(tx, key_id).await
    }

    /// Gives a key a new name (revoked keys keep theirs).
    pub async fn rename_key(&self, key_id: &str, name: &str) -> Result<(), StoreError> {
        let done =
            sqlx::query("UPDATE api_keys SET name = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(name)
                .bind(key_id)
                .execute(&self.pool)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "no usable key with id {key_id}"
            )));
        }
        Ok(())
    }
}
