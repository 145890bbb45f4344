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
    pub created_at_ms: i64,
}

impl Store {
    pub async fn record_admin_action(
        &self,
        admin_email: &str,
        action: &str,
        target: &str,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO admin_actions (id, admin_email, action, target, detail, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(new_id())
        .bind(admin_email)
        .bind(action)
        .bind(target)
        .bind(detail)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The most recent admin actions, newest first.
    pub async fn admin_actions(&self, limit: i64) -> Result<Vec<AdminAction>, StoreError> {
        let rows = sqlx::query(
            "SELECT admin_email, action, target, detail, created_at FROM admin_actions
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
                    created_at_ms: r.try_get("created_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}
