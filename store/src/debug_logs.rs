//! Request debugging ([P6]): bodies of a key's requests and answers, only while its
//! owner has debugging on, for 7 days at most, deleted when the key is revoked.

use sqlx::Row;

use crate::{Store, StoreError};

/// How long a debug log is kept ([P6]).
pub const DEBUG_LOG_RETENTION_MS: i64 = 7 * 86_400_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugLog {
    pub request_id: String,
    pub account_id: String,
    pub key_id: String,
    pub created_at_ms: i64,
    pub status: u16,
    pub model: String,
    pub request_body: String,
    pub response_body: String,
    pub truncated: bool,
}

impl Store {
    /// Stores one captured exchange (a replay of the same request id is ignored).
    pub async fn insert_debug_log(&self, log: &DebugLog) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO debug_logs (request_id, account_id, key_id, created_at, status, model,
                 request_body, response_body, truncated)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (request_id) DO NOTHING",
        )
        .bind(&log.request_id)
        .bind(&log.account_id)
        .bind(&log.key_id)
        .bind(log.created_at_ms)
        .bind(i64::from(log.status))
        .bind(&log.model)
        .bind(&log.request_body)
        .bind(&log.response_body)
        .bind(i64::from(log.truncated))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The key's debug logs, newest first.
    pub async fn debug_logs_of_key(
        &self,
        key_id: &str,
        limit: i64,
    ) -> Result<Vec<DebugLog>, StoreError> {
        let rows = sqlx::query(
            "SELECT request_id, account_id, key_id, created_at, status, model, request_body,
                    response_body, truncated
             FROM debug_logs WHERE key_id = $1 ORDER BY created_at DESC, request_id DESC LIMIT $2",
        )
        .bind(key_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DebugLog {
                    request_id: r.try_get("request_id")?,
                    account_id: r.try_get("account_id")?,
                    key_id: r.try_get("key_id")?,
                    created_at_ms: r.try_get("created_at")?,
                    status: u16::try_from(r.try_get::<i64, _>("status")?).unwrap_or(0),
                    model: r.try_get("model")?,
                    request_body: r.try_get("request_body")?,
                    response_body: r.try_get("response_body")?,
                    truncated: r.try_get::<i64, _>("truncated")? != 0,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Deletes debug logs older than the retention at `now_ms`; returns how many.
    pub async fn purge_debug_logs(&self, now_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM debug_logs WHERE created_at < $1")
            .bind(now_ms - DEBUG_LOG_RETENTION_MS)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Turns request debugging on or off for a key.
    pub async fn set_key_debug(&self, key_id: &str, enabled: bool) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE api_keys SET debug_enabled = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(i64::from(enabled))
        .bind(key_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "no usable key with id {key_id}"
            )));
        }
        self.commit_key_change(tx, key_id).await
    }
}
