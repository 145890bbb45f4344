//! TokenRoute's store: accounts, API keys, the credit ledger, usage and top-ups.
//!
//! One set of SQL runs on both backends through sqlx's `Any` driver: Postgres in
//! production, SQLite (a file under a data directory) as the embedded default. The
//! schema conventions that make this possible are described in `migrations/`.
//! SQL lives here, in functions named for what they do; callers never write queries.

pub mod access_log;
mod accounts;
mod announcements;
mod audit;
pub mod backup;
mod changes;
mod connect;
mod debug_logs;
mod error;
mod keys;
mod ledger;
mod retention;
mod topups;
mod usage;
mod usage_pg;
mod usage_report;
mod web_sessions;

pub use accounts::{Account, AccountSummary};
pub use announcements::{Announcement, NewAnnouncement};
pub use audit::{AdminAction, NewAdminAction};
pub use changes::{Change, ChangeListener};
pub use connect::Backend;
pub use debug_logs::{DebugLog, DEBUG_LOG_RETENTION_MS};
pub use error::StoreError;
pub use keys::{KeyRecord, NewKey};
pub use ledger::{Discrepancy, LedgerEntry, LedgerKind, LedgerReport, Versioned};
pub use retention::{Expired, ACCOUNT_PURGE_AFTER_MS, USAGE_RETENTION_MS};
pub use topups::TopUp;
pub use usage::RecordedUsage;
pub use usage_report::{Traffic, UsageFilter, UsageTotals};
pub use web_sessions::StoredSession;

use sqlx::AnyPool;

/// A handle to the database; cheap to clone (it is a pool).
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    changes: changes::Listener,
}

impl Store {
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The underlying pool, for tests and tools that inspect the database directly.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Whether the database answers (for readiness checks).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes every connection (waits for checked-out ones to come back).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A new time-ordered id (UUIDv7), used for every primary key TokenRoute creates.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
