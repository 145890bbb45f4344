//! Stripe top-ups: the Checkout Session id of each, for bookkeeping ([P4] [P10]), and
//! the credit it buys, booked exactly once whatever Stripe retries.

use sqlx::Row;
use tokenroute_domain::clock::now_ms;
use tokenroute_domain::NanoUsd;

use crate::changes::Change;
use crate::ledger::{add_to_balance, LedgerKind};
use crate::{new_id, Store, StoreError};

/// A top-up as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopUp {
    pub account_id: String,
    pub stripe_session_id: String,
    pub amount: NanoUsd,
    /// `pending` (checkout started) or `paid` (credited).
    pub status: String,
    pub created_at_ms: i64,
    pub paid_at_ms: Option<i64>,
}

impl TopUp {
    fn from_row(row: &sqlx::any::AnyRow) -> Result<TopUp, sqlx::Error> {
        Ok(TopUp {
            account_id: row.try_get("account_id")?,
            stripe_session_id: row.try_get("stripe_session_id")?,
            amount: NanoUsd(row.try_get("amount_nanos")?),
            status: row.try_get("status")?,
            created_at_ms: row.try_get("created_at")?,
            paid_at_ms: row.try_get("paid_at")?,
        })
    }
}

const TOPUP_COLUMNS: &str =
    "account_id, stripe_session_id, amount_nanos, status, created_at, paid_at";

impl Store {
    /// Remembers a Checkout Session the account started (nothing is credited yet).
    pub async fn record_pending_topup(
        &self,
        account_id: &str,
        stripe_session_id: &str,
        amount: NanoUsd,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO topups (id, account_id, stripe_session_id, amount_nanos, status, created_at)
             VALUES ($1, $2, $3, $4, 'pending', $5) ON CONFLICT (stripe_session_id) DO NOTHING",
        )
        .bind(new_id())
        .bind(account_id)
        .bind(stripe_session_id)
        .bind(amount.nanos())
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Credits a paid Checkout Session: one transaction marks the top-up paid and books
    /// `amount` to the ledger under the session id. The ledger's unique `(kind,
    /// reference)` makes every later call — a retried or concurrent webhook — a no-op.
    /// Returns whether this call credited it.
    pub async fn credit_topup(
        &self,
        account_id: &str,
        stripe_session_id: &str,
        payment_intent: Option<&str>,
        amount: NanoUsd,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let booked = sqlx::query(
            "INSERT INTO ledger_entries (id, account_id, kind, amount_nanos, reference, note, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (kind, reference) DO NOTHING",
        )
        .bind(new_id())
        .bind(account_id)
        .bind(LedgerKind::TopUp.as_str())
        .bind(amount.nanos())
        .bind(stripe_session_id)
        .bind("Stripe Checkout top-up")
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if booked {
            add_to_balance(&mut tx, account_id, amount).await?;
            sqlx::query(
                "INSERT INTO topups (id, account_id, stripe_session_id, amount_nanos, status,
                     created_at, paid_at, stripe_payment_intent)
                 VALUES ($1, $2, $3, $4, 'paid', $5, $5, $6)
                 ON CONFLICT (stripe_session_id) DO UPDATE SET status = 'paid',
                     amount_nanos = excluded.amount_nanos, paid_at = excluded.paid_at,
                     stripe_payment_intent = excluded.stripe_payment_intent",
            )
            .bind(new_id())
            .bind(account_id)
            .bind(stripe_session_id)
            .bind(amount.nanos())
            .bind(now)
            .bind(payment_intent)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        if booked {
            self.announce(Change::Balance {
                account_id: account_id.to_string(),
            })
            .await;
        }
        Ok(booked)
    }

    pub async fn topup_by_session(
        &self,
        stripe_session_id: &str,
    ) -> Result<Option<TopUp>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {TOPUP_COLUMNS} FROM topups WHERE stripe_session_id = $1"
        ))
        .bind(stripe_session_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(TopUp::from_row).transpose()?)
    }

    /// The account's top-ups, newest first.
    pub async fn topups_of_account(&self, account_id: &str) -> Result<Vec<TopUp>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TOPUP_COLUMNS} FROM topups WHERE account_id = $1
             ORDER BY created_at DESC, id DESC"
        ))
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(TopUp::from_row).collect::<Result<_, _>>()?)
    }

    /// The account a paid top-up's PaymentIntent belongs to (refunds, disputes).
    pub async fn account_of_payment_intent(
        &self,
        payment_intent: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT account_id FROM topups WHERE stripe_payment_intent = $1 AND status = 'paid'",
        )
        .bind(payment_intent)
        .fetch_optional(&self.pool)
        .await?)
    }
}
