//! Retention rules of the privacy notice, as store operations that take the time as an
//! argument (so a test can move the clock): deleted accounts lose their personal data
//! 30 days after deletion ([P14]); usage and ledger entries go after 7 years ([P15]),
//! the ledger keeping each account's balance through a carried-forward entry; debug
//! logs (7 days, [P6]) and sessions (their expiry) are in their own modules. Every
//! operation is idempotent.

use sqlx::Row;

use tokenroute_domain::clock;

use crate::ledger::LedgerKind;
use crate::{new_id, Store, StoreError};

const DAY_MS: i64 = 86_400_000;
/// A deleted account's email and name are purged this long after deletion ([P14]).
pub const ACCOUNT_PURGE_AFTER_MS: i64 = 30 * DAY_MS;
/// Usage rows and ledger entries are kept this long ([P15]): 7 years of 365 days plus
/// the two leap days seven years can hold.
pub const USAGE_RETENTION_MS: i64 = (7 * 365 + 2) * DAY_MS;

/// What one expiry of old usage removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expired {
    pub usage_rows: u64,
    pub ledger_entries: u64,
}

impl Store {
    /// Purges the personal data of accounts deleted at least 30 days before `now_ms`:
    /// the email becomes `deleted-<id>@invalid`, the display name and key names go.
    /// Usage and ledger stay, keyed by the account id only. Returns how many.
    pub async fn purge_deleted_accounts(&self, now_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let doomed: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM accounts
             WHERE status = 'deleted' AND deleted_at <= $1 AND purged_at IS NULL",
        )
        .bind(now_ms - ACCOUNT_PURGE_AFTER_MS)
        .fetch_all(&mut *tx)
        .await?;
        for id in &doomed {
            sqlx::query(
                "UPDATE accounts SET email = $1, display_name = NULL, first_sign_in_at = NULL,
                     last_sign_in_at = NULL, idp_subject = NULL, purged_at = $2
                 WHERE id = $3",
            )
            .bind(format!("deleted-{id}@invalid"))
            .bind(now_ms)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            // Key names are the user's words; the keys' hashes stay forever ([P17]).
            sqlx::query("UPDATE api_keys SET name = 'deleted' WHERE account_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            crate::accounts::end_sessions_and_debug_logs(&mut tx, id).await?;
        }
        tx.commit().await?;
        Ok(doomed.len() as u64)
    }

    /// Removes usage rows and ledger entries older than 7 years at `now_ms` ([P15]). A
    /// usage debit is dated by the newest row it charges and goes with its rows: a row
    /// whose debit is younger than the cutoff (a batch written across it) stays until
    /// the debit goes, seconds later. What the removed entries added up to stays in the
    /// ledger as one `carried_forward` entry per account, so balances (and `ledger
    /// verify`) are unchanged.
    pub async fn expire_old_usage(&self, now_ms: i64) -> Result<Expired, StoreError> {
        let cutoff = now_ms - USAGE_RETENTION_MS;
        let doomed = "created_at < $1";
        let mut tx = self.pool.begin().await?;
        let sums = sqlx::query(&format!(
            "SELECT account_id, CAST(SUM(amount_nanos) AS BIGINT) AS total, COUNT(*) AS n
             FROM ledger_entries WHERE {doomed} GROUP BY account_id"
        ))
        .bind(cutoff)
        .fetch_all(&mut *tx)
        .await?;
        for row in &sums {
            let account: String = row.try_get("account_id")?;
            let total: i64 = row.try_get("total")?;
            sqlx::query(
                "INSERT INTO ledger_entries (id, account_id, kind, amount_nanos, reference, note, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(new_id())
            .bind(&account)
            .bind(LedgerKind::CarriedForward.as_str())
            .bind(total)
            .bind(format!("carry:{account}:{cutoff}"))
            .bind("the sum of entries older than 7 years, removed ([P15])")
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        // The carried-forward entries just made are dated now: they do not match.
        let ledger_entries = sqlx::query(&format!("DELETE FROM ledger_entries WHERE {doomed}"))
            .bind(cutoff)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let usage_rows = sqlx::query(
            "DELETE FROM usage_events WHERE created_at < $1 AND NOT EXISTS
                 (SELECT 1 FROM ledger_entries l
                  WHERE l.id = usage_events.debit_id AND l.created_at >= $1)",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(Expired {
            usage_rows,
            ledger_entries,
        })
    }

    /// Takes (or renews) the lease on job `name` for `holder` until `now_ms + ttl_ms`;
    /// `false` when another holder's lease is still running.
    pub async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO job_leases (name, holder, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE job_leases.expires_at <= $4 OR job_leases.holder = excluded.holder",
        )
        .bind(name)
        .bind(holder)
        .bind(now_ms + ttl_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives the lease back (only the holder can).
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM job_leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// The partition of the month starting at `month_start_ms`: `usage_events_pYYYYMM`.
fn partition_name(month_start_ms: i64) -> String {
    format!(
        "usage_events_p{}",
        clock::ymd(month_start_ms)[..7].replace('-', "")
    )
}

impl Store {
    /// Postgres keeps usage in monthly partitions: makes sure this month's and the next
    /// three exist, and drops those that ended before the 7-year cutoff once
    /// [`Store::expire_old_usage`] has emptied them. Returns how many were created and dropped. A no-op
    /// on SQLite.
    pub async fn maintain_usage_partitions(&self, now_ms: i64) -> Result<(u64, u64), StoreError> {
        if self.backend != crate::Backend::Postgres {
            return Ok((0, 0));
        }
        let existing: Vec<String> = sqlx::query_scalar(
            "SELECT CAST(c.relname AS TEXT) FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
             WHERE p.relname = 'usage_events'",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut created = 0;
        let mut from = clock::month_start_ms(now_ms);
        for _ in 0..4 {
            let to = clock::next_month_start_ms(from);
            let table = partition_name(from);
            if !existing.contains(&table) {
                let made = sqlx::query(&format!(
                    "CREATE TABLE IF NOT EXISTS {table} PARTITION OF usage_events
                     FOR VALUES FROM ({from}) TO ({to})"
                ))
                .execute(&self.pool)
                .await;
                match made {
                    Ok(_) => created += 1,
                    // Rows of that month already in the default partition: they stay there.
                    Err(e) => tracing::warn!(%table, error = %e, "cannot create a usage partition"),
                }
            }
            from = to;
        }
        let cutoff = now_ms - USAGE_RETENTION_MS;
        let mut dropped = 0;
        for table in existing {
            let Some(month) = table.strip_prefix("usage_events_p") else {
                continue;
            };
            let Some(end) = (month.len() == 6)
                .then(|| format!("{}-{}-01", &month[..4], &month[4..]))
                .and_then(|day| clock::parse_ymd(&day))
                .map(clock::next_month_start_ms)
            else {
                continue;
            };
            // A month's rows are gone once expired; one whose debit is younger than
            // the cutoff waits a run (see `expire_old_usage`), and so does its month.
            if end > cutoff {
                continue;
            }
            let rows: i64 = sqlx::query_scalar(&format!(
                "SELECT COUNT(*) FROM (SELECT 1 FROM {table} LIMIT 1) t"
            ))
            .fetch_one(&self.pool)
            .await?;
            if rows == 0 {
                sqlx::query(&format!("DROP TABLE IF EXISTS {table}"))
                    .execute(&self.pool)
                    .await?;
                dropped += 1;
            }
        }
        Ok((created, dropped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_named_by_month() {
        let nov_2026 = 1_795_910_400_000; // 2026-11-29T00:00Z
        assert_eq!(
            partition_name(clock::month_start_ms(nov_2026)),
            "usage_events_p202611"
        );
        let next = clock::next_month_start_ms(clock::next_month_start_ms(nov_2026));
        assert_eq!(next, 1_798_761_600_000);
        assert_eq!(partition_name(next), "usage_events_p202701");
    }
}
