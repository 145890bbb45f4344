//! Dashboard banners: notices, and policy changes announced ahead of their effect
//! ([P21]).

use sqlx::Row;
use tokenroute_domain::clock::now_ms;

use crate::{new_id, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub id: String,
    /// `notice` or `policy`.
    pub kind: String,
    pub message: String,
    pub starts_at_ms: i64,
    pub ends_at_ms: Option<i64>,
    pub effective_at_ms: Option<i64>,
    pub created_by: String,
    pub created_at_ms: i64,
    pub retired_at_ms: Option<i64>,
}

/// What to announce.
#[derive(Debug, Clone)]
pub struct NewAnnouncement<'a> {
    pub kind: &'a str,
    pub message: &'a str,
    pub starts_at_ms: i64,
    pub ends_at_ms: Option<i64>,
    pub effective_at_ms: Option<i64>,
    pub created_by: &'a str,
}

const COLUMNS: &str =
    "id, kind, message, starts_at, ends_at, effective_at, created_by, created_at, retired_at";

fn from_row(r: &sqlx::any::AnyRow) -> Result<Announcement, sqlx::Error> {
    Ok(Announcement {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        message: r.try_get("message")?,
        starts_at_ms: r.try_get("starts_at")?,
        ends_at_ms: r.try_get("ends_at")?,
        effective_at_ms: r.try_get("effective_at")?,
        created_by: r.try_get("created_by")?,
        created_at_ms: r.try_get("created_at")?,
        retired_at_ms: r.try_get("retired_at")?,
    })
}

impl Store {
    pub async fn create_announcement(
        &self,
        new: &NewAnnouncement<'_>,
    ) -> Result<Announcement, StoreError> {
        let id = new_id();
        sqlx::query(&format!(
            "INSERT INTO announcements ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)"
        ))
        .bind(&id)
        .bind(new.kind)
        .bind(new.message)
        .bind(new.starts_at_ms)
        .bind(new.ends_at_ms)
        .bind(new.effective_at_ms)
        .bind(new.created_by)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        self.announcement(&id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("announcement {id} vanished")))
    }

    pub async fn announcement(&self, id: &str) -> Result<Option<Announcement>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM announcements WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    /// Every announcement, newest first (the admin console).
    pub async fn announcements(&self) -> Result<Vec<Announcement>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM announcements ORDER BY created_at DESC, id DESC"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// What the dashboard shows at `now_ms`: started, not ended, not retired.
    pub async fn live_announcements(&self, now_ms: i64) -> Result<Vec<Announcement>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM announcements
             WHERE starts_at <= $1 AND (ends_at IS NULL OR ends_at > $1) AND retired_at IS NULL
             ORDER BY starts_at DESC, id DESC"
        ))
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    pub async fn retire_announcement(&self, id: &str) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE announcements SET retired_at = $1 WHERE id = $2 AND retired_at IS NULL",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("no live announcement {id}")));
        }
        Ok(())
    }
}

impl Store {
    /// Policy changes not retired and not emailed yet.
    pub async fn policy_changes_to_email(&self) -> Result<Vec<Announcement>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM announcements
             WHERE kind = 'policy' AND emailed_at IS NULL AND retired_at IS NULL
             ORDER BY created_at"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    pub async fn mark_announcement_emailed(&self, id: &str, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE announcements SET emailed_at = $1 WHERE id = $2")
            .bind(now_ms)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The emails of every active account (policy-change notices go to them).
    pub async fn active_account_emails(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT email FROM accounts WHERE status = 'active' ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}
