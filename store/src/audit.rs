//! The admin audit log: every admin action, who took it and on what.

use sqlx::Row;
use tokenroute_domain::clock::now_ms;

use crate::{new_id, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminAction {
    pub admin_email: String,
    pub action: String,
    pub target: String,
    pub detail: Option<String>,
    /// The state before and after (JSON), when the action changed one.
    pub before: Option<String>,
    pub after: Option<String>,
    pub created_at_ms: i64,
}

/// An admin action to record.
#[derive(Debug, Clone, Default)]
pub struct NewAdminAction<'a> {
    pub admin_email: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub detail: Option<&'a str>,
    pub before: Option<&'a str>,
    pub after: Option<&'a str>,
}

impl Store {
    pub async fn record_admin_action(&self, a: &NewAdminAction<'_>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO admin_actions (id, admin_email, action, target, detail, before_state,
                 after_state, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(new_id())
        .bind(a.admin_email)
        .bind(a.action)
        .bind(a.target)
        .bind(a.detail)
        .bind(a.before)
        .bind(a.after)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The most recent admin actions, newest first.
    pub async fn admin_actions(&self, limit: i64) -> Result<Vec<AdminAction>, StoreError> {
        let rows = sqlx::query(
            "SELECT admin_email, action, target, detail, before_state, after_state, created_at
             FROM admin_actions
             ORDER BY created_at DESC, id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AdminAction {
                    admin_email: r.try_get("admin_email")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    detail: r.try_get("detail")?,
                    before: r.try_get("before_state")?,
                    after: r.try_get("after_state")?,
                    created_at_ms: r.try_get("created_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}
