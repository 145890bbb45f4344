//! Accounts: who holds credit.

use sqlx::Row;
use tokenroute_domain::clock::now_ms;
use tokenroute_domain::NanoUsd;

use crate::changes::Change;
use crate::ledger::Versioned;
use crate::{new_id, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub email: String,
    pub display_name: Option<String>,
    pub status: String,
    pub created_at_ms: i64,
    pub first_sign_in_at_ms: Option<i64>,
    pub last_sign_in_at_ms: Option<i64>,
}

/// An account as the admin console lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSummary {
    pub account: Account,
    pub balance: NanoUsd,
}

const ACCOUNT_COLUMNS: &str =
    "id, email, display_name, status, created_at, first_sign_in_at, last_sign_in_at";

impl Account {
    fn from_row(row: &sqlx::any::AnyRow) -> Result<Account, sqlx::Error> {
        Ok(Account {
            id: row.try_get("id")?,
            email: row.try_get("email")?,
            display_name: row.try_get("display_name")?,
            status: row.try_get("status")?,
            created_at_ms: row.try_get("created_at")?,
            first_sign_in_at_ms: row.try_get("first_sign_in_at")?,
            last_sign_in_at_ms: row.try_get("last_sign_in_at")?,
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
        let row = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE email = $1"
        ))
        .bind(email.trim().to_lowercase())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(Account::from_row).transpose()?)
    }

    pub async fn account(&self, id: &str) -> Result<Option<Account>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(Account::from_row).transpose()?)
    }

    /// Records a sign-in through the identity provider ([P2]): the account with this
    /// email (created when new), its display name as the provider states it now, the
    /// first sign-in time (kept once set) and the most recent one.
    pub async fn record_sign_in(
        &self,
        email: &str,
        display_name: Option<&str>,
        idp_subject: Option<&str>,
    ) -> Result<Account, StoreError> {
        let account = self.upsert_account_by_email(email).await?;
        let now = now_ms();
        sqlx::query(
            "UPDATE accounts SET display_name = COALESCE($2, display_name),
                 first_sign_in_at = COALESCE(first_sign_in_at, $3), last_sign_in_at = $3,
                 idp_subject = COALESCE($4, idp_subject)
             WHERE id = $1",
        )
        .bind(&account.id)
        .bind(display_name)
        .bind(now)
        .bind(idp_subject)
        .execute(&self.pool)
        .await?;
        self.account(&account.id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("account {} vanished", account.id)))
    }

    /// Corrects the display name ([P19]).
    pub async fn set_display_name(&self, id: &str, name: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE accounts SET display_name = $1 WHERE id = $2")
            .bind(name)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Suspends (`suspended`) or reactivates (`active`) an account. A deleted account
    /// stays deleted.
    pub async fn set_account_status(&self, id: &str, status: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let done =
            sqlx::query("UPDATE accounts SET status = $1 WHERE id = $2 AND status <> 'deleted'")
                .bind(status)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("no live account {id}")));
        }
        self.commit_change(tx, Change::Account { id: id.to_string() })
            .await
    }

    /// Deletes an account ([P14] [P19] [P20]): marked deleted now, every key revoked,
    /// every session ended, in one transaction. Its personal data is purged 30 days
    /// later; usage and ledger stay (7 years, [P15]).
    pub async fn delete_account(&self, id: &str) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE accounts SET status = 'deleted', deleted_at = $1 WHERE id = $2 AND status <> 'deleted'",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("no live account {id}")));
        }
        sqlx::query(
            "UPDATE api_keys SET revoked_at = $1, debug_enabled = 0
             WHERE account_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        // Revoked keys take their debug logs with them ([P6]).
        end_sessions_and_debug_logs(&mut tx, id).await?;
        self.commit_change(tx, Change::Account { id: id.to_string() })
            .await
    }

    /// Deleted accounts whose user the identity provider has not deleted yet: (account
    /// id, the provider's subject).
    pub async fn accounts_awaiting_idp_deletion(
        &self,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, idp_subject FROM accounts
             WHERE status = 'deleted' AND idp_subject IS NOT NULL AND idp_deleted_at IS NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("idp_subject")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Records that the identity provider deleted the account's user.
    pub async fn mark_idp_deleted(&self, id: &str, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE accounts SET idp_deleted_at = $1 WHERE id = $2")
            .bind(now_ms)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Accounts whose email or display name contains `query` (case-insensitive), with
    /// balances, newest first.
    pub async fn search_accounts(
        &self,
        query: &str,
        limit: i64,
    ) -> Result<Vec<AccountSummary>, StoreError> {
        let pattern = format!(
            "%{}%",
            query
                .trim()
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let rows = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS}, COALESCE(b.balance_nanos, 0) AS balance_nanos
             FROM accounts LEFT JOIN account_balances b ON b.account_id = accounts.id
             WHERE email LIKE $1 ESCAPE '\\' OR LOWER(COALESCE(display_name, '')) LIKE $1 ESCAPE '\\'
             ORDER BY created_at DESC, id DESC LIMIT $2"
        ))
        .bind(pattern)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        summaries(&rows)
    }

    /// Accounts with their balances, newest first, for the admin console.
    pub async fn list_accounts(
        &self,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<AccountSummary>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS}, COALESCE(b.balance_nanos, 0) AS balance_nanos
             FROM accounts LEFT JOIN account_balances b ON b.account_id = accounts.id
             ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2"
        ))
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        summaries(&rows)
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

    /// The balance with its version: of two reads, the higher version is the later
    /// balance (changes of one account are serialized by its row's lock).
    pub async fn balance_versioned(&self, account_id: &str) -> Result<Versioned, StoreError> {
        let row = sqlx::query(
            "SELECT balance_nanos, version FROM account_balances WHERE account_id = $1",
        )
        .bind(account_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(row) => Versioned {
                balance: NanoUsd(row.try_get("balance_nanos")?),
                version: row.try_get("version")?,
            },
            None => Versioned {
                balance: NanoUsd::ZERO,
                version: 0,
            },
        })
    }
}

fn summaries(rows: &[sqlx::any::AnyRow]) -> Result<Vec<AccountSummary>, StoreError> {
    rows.iter()
        .map(|row| {
            Ok(AccountSummary {
                account: Account::from_row(row)?,
                balance: NanoUsd(row.try_get("balance_nanos")?),
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::from)
}

/// Deletes the account's sessions and debug logs (inside the caller's transaction):
/// what must go at once when an account is deleted, and again at its purge.
pub(crate) async fn end_sessions_and_debug_logs(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    account_id: &str,
) -> Result<(), StoreError> {
    for table in ["web_sessions", "debug_logs"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE account_id = $1"))
            .bind(account_id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
