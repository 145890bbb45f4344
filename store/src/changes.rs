//! Changes other processes must hear of: a proxy node caches keys, accounts and
//! balances, so every write that changes one of them is announced once committed.
//!
//! The store does not know how the news travels; [`Store::with_changes`] installs a
//! [`ChangeListener`] (Redis pub/sub in a fleet, see the proxy's `shared` module).
//! Without one, nodes find changes by re-reading (the key cache's TTL, the balance
//! refresh).

use std::fmt;
use std::sync::Arc;

use crate::Store;

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

    pub(crate) async fn announce(&self, change: Change) {
        if let Some(listener) = &self.changes.0 {
            listener.changed(change).await;
        }
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
