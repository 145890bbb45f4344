//! Accounts: who holds credit.

use sqlx::Row;
use tokenroute_domain::clock::now_ms;
use tokenroute_domain::NanoUsd;

use crate::{new_id, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub email: String,
    pub display_name: Option<String>,
    pub status: String,
    pub created_at_ms: i64,
}

impl Account {
    fn from_row(row: &sqlx::any::AnyRow) -> Result<Account, sqlx::Error> {
        Ok(Account {
            id: row.try_get("id")?,
            email: row.try_get("email")?,
            display_name: row.try_get("display_name")?,
            status: row.try_get("status")?,
            created_at_ms: row.try_get("created_at")?,
        })
    }
}

impl Store {
    /// The account with this email, created (active, no credit) when there is none.
    /// Emails are compared case-insensitively: they are stored lower-cased.
    pub async fn upsert_account_by_email(&self, email: &str) -> Result<Account, StoreError> {
        let email = email.trim().to_lowercase();
        sqlx::query(
            "INSERT INTO accounts (id, email, status, created_at) VALUES ($1, $2, 'active', $3)
             ON CONFLICT (email) DO NOTHING",
        )
        .bind(new_id())
        .bind(&email)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        self.account_by_email(&email)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("account {email} vanished")))
    }

    pub async fn account_by_email(&self, email: &str) -> Result<Option<Account>, StoreError> {
        let row = sqlx::query(
            "SELECT id, email, display_name, status, created_at FROM accounts WHERE email = $1",
        )
        .bind(email.trim().to_lowercase())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(Account::from_row).transpose()?)
    }

    pub async fn account(&self, id: &str) -> Result<Option<Account>, StoreError> {
        let row = sqlx::query(
            "SELECT id, email, display_name, status, created_at FROM accounts WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(Account::from_row).transpose()?)
    }

    /// The balance: the sum of the account's ledger entries, read from the projection
    /// kept in step with them (see `account_balances` in the migrations).
    pub async fn balance(&self, account_id: &str) -> Result<NanoUsd, StoreError> {
        let nanos: Option<i64> =
            sqlx::query_scalar("SELECT balance_nanos FROM account_balances WHERE account_id = $1")
                .bind(account_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(NanoUsd(nanos.unwrap_or(0)))
    }
}
