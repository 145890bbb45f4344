//! Usage events and their ledger debits, written in batches.

use sqlx::Row;
use tokenroute_domain::{NanoUsd, UsageEvent};

use crate::ledger::LedgerKind;
use crate::{new_id, Store, StoreError};

impl Store {
    /// Writes a batch of usage events in one transaction, each with its ledger debit.
    ///
    /// Idempotent by request id: an event already stored is skipped together with its
    /// debit, so replaying a batch after a crash or a retry charges nothing twice.
    /// Returns how many events were new.
    pub async fn record_usage(&self, events: &[UsageEvent]) -> Result<usize, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut inserted = 0;
        for e in events {
            let done = sqlx::query(
                "INSERT INTO usage_events (request_id, account_id, key_id, created_at, model, provider,
                     upstream_model, input_tokens, output_tokens, cost_nanos, status, streamed,
                     estimated, duration_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                 ON CONFLICT (request_id) DO NOTHING",
            )
            .bind(&e.request_id)
            .bind(&e.account_id)
            .bind(&e.key_id)
            .bind(e.created_at_ms)
            .bind(&e.model)
            .bind(&e.provider)
            .bind(&e.upstream_model)
            .bind(e.input_tokens)
            .bind(e.output_tokens)
            .bind(e.cost.nanos())
            .bind(i64::from(e.status))
            .bind(i64::from(e.streamed))
            .bind(i64::from(e.estimated))
            .bind(e.duration_ms)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                continue;
            }
            inserted += 1;
            if e.cost.is_positive() {
                sqlx::query(
                    "INSERT INTO ledger_entries (id, account_id, kind, amount_nanos, reference, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (kind, reference) DO NOTHING",
                )
                .bind(new_id())
                .bind(&e.account_id)
                .bind(LedgerKind::Usage.as_str())
                .bind((-e.cost).nanos())
                .bind(&e.request_id)
                .bind(e.created_at_ms)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "UPDATE api_keys SET last_used_at = $1
                 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
            )
            .bind(e.created_at_ms)
            .bind(&e.key_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// The account's usage, newest first.
    pub async fn usage_of_account(
        &self,
        account_id: &str,
        limit: i64,
    ) -> Result<Vec<UsageEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT request_id, account_id, key_id, created_at, model, provider, upstream_model,
                    input_tokens, output_tokens, cost_nanos, status, streamed, estimated, duration_ms
             FROM usage_events WHERE account_id = $1
             ORDER BY created_at DESC, request_id DESC LIMIT $2",
        )
        .bind(account_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(UsageEvent {
                    request_id: r.try_get("request_id")?,
                    account_id: r.try_get("account_id")?,
                    key_id: r.try_get("key_id")?,
                    created_at_ms: r.try_get("created_at")?,
                    model: r.try_get("model")?,
                    provider: r.try_get("provider")?,
                    upstream_model: r.try_get("upstream_model")?,
                    input_tokens: r.try_get("input_tokens")?,
                    output_tokens: r.try_get("output_tokens")?,
                    cost: NanoUsd(r.try_get("cost_nanos")?),
                    status: u16::try_from(r.try_get::<i64, _>("status")?).unwrap_or(0),
                    streamed: r.try_get::<i64, _>("streamed")? != 0,
                    estimated: r.try_get::<i64, _>("estimated")? != 0,
                    duration_ms: r.try_get("duration_ms")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}
