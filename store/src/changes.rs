//! Changes other processes must hear of: a proxy node caches keys, accounts and
//! balances, so every write that changes one of them is announced once committed.
//!
//! Key and account changes are also written to the change log (the `change_log`
//! table) in the same transaction as the change, so a node that hears no broadcast
//! can follow the log instead ([`Store::changes_after`]) and still never miss one —
//! not even when the writer dies right after committing.
//!
//! How else the news travels is not the store's business: [`Store::with_changes`]
//! installs a [`ChangeListener`] (Redis pub/sub in a fleet, see the proxy's `shared`
//! module). Balances are not logged: nodes re-read them (the balance refresh).

use std::fmt;
use std::sync::Arc;

use sqlx::Row;
use tokenroute_domain::clock::now_ms;

use crate::{Backend, Store, StoreError};

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A key's state: revoked, suspended, limits, debugging.
    Key { id: String },
    /// An account's state: suspended, reactivated, deleted (its keys with it).
    Account { id: String },
    /// An account's balance, other than by usage (top-ups, credits, refunds).
    Balance { account_id: String },
}

impl Change {
    /// `key <id>`, `account <id>`, `balance <id>`: the form sent between processes.
    pub fn encode(&self) -> String {
        match self {
            Change::Key { id } => format!("key {id}"),
            Change::Account { id } => format!("account {id}"),
            Change::Balance { account_id } => format!("balance {account_id}"),
        }
    }

    pub fn decode(text: &str) -> Option<Change> {
        let (what, id) = text.split_once(' ')?;
        let id = id.to_string();
        match what {
            "key" => Some(Change::Key { id }),
            "account" => Some(Change::Account { id }),
            "balance" => Some(Change::Balance { account_id: id }),
            _ => None,
        }
    }
}

/// Hears of committed changes. Announcing must not fail the write it follows: a
/// listener logs its own errors.
#[async_trait::async_trait]
pub trait ChangeListener: Send + Sync {
    async fn changed(&self, change: Change);
}

/// The installed listener (a newtype so that [`Store`] stays `Debug`).
#[derive(Clone, Default)]
pub(crate) struct Listener(pub(crate) Option<Arc<dyn ChangeListener>>);

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Listener(installed)"
        } else {
            "Listener(none)"
        })
    }
}

impl Store {
    /// This store announcing its committed changes to `listener`.
    pub fn with_changes(mut self, listener: Arc<dyn ChangeListener>) -> Store {
        self.changes = Listener(Some(listener));
        self
    }

    /// Logs `change` in `tx`, commits, then announces it.
    pub(crate) async fn commit_change(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Any>,
        change: Change,
    ) -> Result<(), StoreError> {
        log_change(&mut tx, self.backend, &change).await?;
        tx.commit().await?;
        self.announce(change).await;
        Ok(())
    }

    /// [`Store::commit_change`] of a key's change.
    pub(crate) async fn commit_key_change(
        &self,
        tx: sqlx::Transaction<'_, sqlx::Any>,
        key_id: &str,
    ) -> Result<(), StoreError> {
        self.commit_change(
            tx,
            Change::Key {
                id: key_id.to_string(),
            },
        )
        .await
    }

    pub(crate) async fn announce(&self, change: Change) {
        if let Some(listener) = &self.changes.0 {
            listener.changed(change).await;
        }
    }
}

/// Writes `change` to the change log inside `tx`, the transaction making the change.
/// On Postgres the table is locked first (until commit), so sequence numbers are
/// handed out in commit order and a follower reading "after the last seq I saw"
/// never skips a row that committed late. Key and account changes are rare (admin
/// actions), so serializing them costs nothing that matters.
pub(crate) async fn log_change(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    change: &Change,
) -> Result<(), StoreError> {
    if backend == Backend::Postgres {
        sqlx::query("LOCK TABLE change_log IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query("INSERT INTO change_log (change, created_at) VALUES ($1, $2)")
        .bind(change.encode())
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl Store {
    /// The sequence number of the newest change logged (0 when none): where a
    /// follower starting now begins.
    pub async fn change_log_head(&self) -> Result<i64, StoreError> {
        let seq: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM change_log")
            .fetch_one(&self.pool)
            .await?;
        Ok(seq)
    }

    /// Up to `limit` changes logged after `seq`, oldest first, with their sequence
    /// numbers. Rows this version cannot read are skipped (a newer writer's kind).
    pub async fn changes_after(
        &self,
        seq: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Change)>, StoreError> {
        let rows =
            sqlx::query("SELECT seq, change FROM change_log WHERE seq > $1 ORDER BY seq LIMIT $2")
                .bind(seq)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
        let mut changes = Vec::with_capacity(rows.len());
        for row in rows {
            let seq: i64 = row.try_get("seq")?;
            let text: String = row.try_get("change")?;
            if let Some(change) = Change::decode(&text) {
                changes.push((seq, change));
            }
        }
        Ok(changes)
    }

    /// Deletes changes logged before `before_ms` (followers only need the last few
    /// seconds; one that fell behind further starts over and forgets its cache).
    /// Returns how many went.
    pub async fn prune_change_log(&self, before_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM change_log WHERE created_at < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::Change;

    #[test]
    fn changes_travel_as_text_and_back() {
        for change in [
            Change::Key { id: "k1".into() },
            Change::Account { id: "a 1".into() },
            Change::Balance {
                account_id: "a2".into(),
            },
        ] {
            assert_eq!(Change::decode(&change.encode()), Some(change));
        }
        assert_eq!(Change::decode("nonsense"), None);
        assert_eq!(Change::decode("other x"), None);
    }
}
