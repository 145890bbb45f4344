//! Dashboard sessions, kept server-side so ending one (sign-out, an admin) is final
//! ([P18]). Rows are keyed by the SHA-256 of the cookie's session id: a copy of the
//! database does not hold live cookies.

use sqlx::Row;

use crate::{Store, StoreError};

/// A stored session: its data (JSON) and when it ends (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub data: String,
    pub expires_at_ms: i64,
}

impl Store {
    /// Creates a session; `false` when the id is taken (the caller draws another).
    pub async fn create_web_session(
        &self,
        id_hash: &str,
        account_id: Option<&str>,
        data: &str,
        expires_at_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO web_sessions (id, account_id, data, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id_hash)
        .bind(account_id)
        .bind(data)
        .bind(tokenroute_domain::clock::now_ms())
        .bind(expires_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Creates or replaces a session's data and expiry.
    pub async fn save_web_session(
        &self,
        id_hash: &str,
        account_id: Option<&str>,
        data: &str,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO web_sessions (id, account_id, data, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET account_id = excluded.account_id,
                 data = excluded.data, expires_at = excluded.expires_at",
        )
        .bind(id_hash)
        .bind(account_id)
        .bind(data)
        .bind(tokenroute_domain::clock::now_ms())
        .bind(expires_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The session, unless it has ended or expired.
    pub async fn load_web_session(
        &self,
        id_hash: &str,
        now_ms: i64,
    ) -> Result<Option<StoredSession>, StoreError> {
        let row = sqlx::query(
            "SELECT data, expires_at FROM web_sessions WHERE id = $1 AND expires_at > $2",
        )
        .bind(id_hash)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row
            .map(|r| {
                Ok::<_, sqlx::Error>(StoredSession {
                    data: r.try_get("data")?,
                    expires_at_ms: r.try_get("expires_at")?,
                })
            })
            .transpose()?)
    }

    pub async fn delete_web_session(&self, id_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM web_sessions WHERE id = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends every session of the account (an admin's "sign out everywhere").
    pub async fn end_sessions_of_account(&self, account_id: &str) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM web_sessions WHERE account_id = $1")
            .bind(account_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// The account's live sessions: (created, expires), Unix ms, newest first.
    pub async fn sessions_of_account(
        &self,
        account_id: &str,
        now_ms: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT created_at, expires_at FROM web_sessions
             WHERE account_id = $1 AND expires_at > $2 ORDER BY created_at DESC",
        )
        .bind(account_id)
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("created_at")?, r.try_get("expires_at")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// The account's live sessions.
    pub async fn count_sessions_of_account(
        &self,
        account_id: &str,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM web_sessions WHERE account_id = $1 AND expires_at > $2",
        )
        .bind(account_id)
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Deletes sessions that expired before `now_ms`; returns how many.
    pub async fn delete_expired_web_sessions(&self, now_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM web_sessions WHERE expires_at <= $1")
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
