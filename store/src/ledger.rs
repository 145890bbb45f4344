//! The credit ledger: append-only entries whose sum is the balance.

use tokenroute_domain::clock::now_ms;
use tokenroute_domain::NanoUsd;

use crate::{new_id, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerKind {
    TopUp,
    Usage,
    Adjustment,
    Refund,
}

impl LedgerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::TopUp => "topup",
            LedgerKind::Usage => "usage",
            LedgerKind::Adjustment => "adjustment",
            LedgerKind::Refund => "refund",
        }
    }
}

/// One ledger row as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub kind: String,
    pub amount: NanoUsd,
    pub reference: String,
    pub note: Option<String>,
    pub created_at_ms: i64,
}

impl Store {
    /// Books an entry once: `(kind, reference)` is unique, so booking the same top-up
    /// or request twice is a no-op. Returns whether this call booked it.
    pub async fn book(
        &self,
        account_id: &str,
        kind: LedgerKind,
        amount: NanoUsd,
        reference: &str,
        note: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO ledger_entries (id, account_id, kind, amount_nanos, reference, note, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (kind, reference) DO NOTHING",
        )
        .bind(new_id())
        .bind(account_id)
        .bind(kind.as_str())
        .bind(amount.nanos())
        .bind(reference)
        .bind(note)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The account's ledger, newest first.
    pub async fn ledger(
        &self,
        account_id: &str,
        limit: i64,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        use sqlx::Row;
        let rows = sqlx::query(
            "SELECT kind, amount_nanos, reference, note, created_at FROM ledger_entries
             WHERE account_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
        )
        .bind(account_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LedgerEntry {
                    kind: r.try_get("kind")?,
                    amount: NanoUsd(r.try_get("amount_nanos")?),
                    reference: r.try_get("reference")?,
                    note: r.try_get("note")?,
                    created_at_ms: r.try_get("created_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}
