//! The retention jobs of the privacy notice, run hourly by the control plane under a
//! lease in the database (several control-plane instances may run; one runs the jobs,
//! which are idempotent anyway): expired sessions [P18], debug logs after 7 days [P6],
//! access logs after 30 days [P16], deleted accounts' personal data 30 days after
//! deletion [P14], usage and ledger after 7 years [P15] (on Postgres, the coming months'
//! usage partitions are created and expired ones dropped); and the nightly backup [P13].
//! [`run_once`] takes the time as an argument: that is the clock the tests move.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokenroute_domain::config::Config;
use tokenroute_store::access_log::purge_access_logs;
use tokenroute_store::{Store, StoreError};

const LEASE: &str = "retention";
const LEASE_MS: i64 = 15 * 60 * 1000;
const EVERY: Duration = Duration::from_secs(3600);
/// A backup is due when the newest is this old ("nightly", whatever the start time).
const BACKUP_EVERY_MS: i64 = 23 * 3600 * 1000;

/// What one run removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    pub sessions: u64,
    pub debug_logs: u64,
    pub access_log_files: usize,
    pub accounts_purged: u64,
    pub usage_rows: u64,
    pub ledger_entries: u64,
    /// Postgres: monthly usage partitions past the 7 years, dropped.
    pub usage_partitions_dropped: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("access logs: {0}")]
    AccessLogs(#[from] std::io::Error),
}

/// Every retention rule, applied as of `now_ms`.
pub async fn run_once(
    store: &Store,
    access_log_dir: &Path,
    now_ms: i64,
) -> Result<Report, RetentionError> {
    let expired = store.expire_old_usage(now_ms).await?;
    let (_, partitions_dropped) = store.maintain_usage_partitions(now_ms).await?;
    Ok(Report {
        usage_partitions_dropped: partitions_dropped,
        sessions: store.delete_expired_web_sessions(now_ms).await?,
        debug_logs: store.purge_debug_logs(now_ms).await?,
        access_log_files: purge_access_logs(access_log_dir, now_ms)?,
        accounts_purged: store.purge_deleted_accounts(now_ms).await?,
        usage_rows: expired.usage_rows,
        ledger_entries: expired.ledger_entries,
    })
}

/// Takes a backup when the newest is more than 23 hours old ([P13]: nightly, the
/// newest `backup.keep` kept). Returns the new file, if one was due.
pub async fn backup_if_due(
    store: &Store,
    config: &Config,
    now_ms: i64,
) -> Result<Option<std::path::PathBuf>, tokenroute_store::backup::BackupError> {
    let newest = tokenroute_store::backup::backups(&config.backup.dir)
        .last()
        .and_then(|p| p.metadata().ok())
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    if newest.is_some_and(|at| now_ms - at < BACKUP_EVERY_MS) {
        return Ok(None);
    }
    store
        .backup(
            &config.store.url,
            &config.backup.dir,
            now_ms,
            config.backup.keep,
        )
        .await
        .map(Some)
}

/// Runs the jobs hourly (and the nightly backup), when this instance holds the lease.
pub async fn schedule(
    store: Store,
    config: Arc<Config>,
    access_log_dir: std::path::PathBuf,
    logto: Option<Arc<crate::logto::Logto>>,
    mailer: Option<Arc<crate::mailer::Mailer>>,
) {
    let holder = tokenroute_store::new_id();
    let mut every = tokio::time::interval(EVERY);
    loop {
        every.tick().await;
        let now = tokenroute_domain::clock::now_ms();
        if config.backup.nightly {
            match backup_if_due(&store, &config, now).await {
                Ok(Some(file)) => tracing::info!(file = %file.display(), "nightly backup written"),
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "nightly backup failed"),
            }
        }
        match store.try_lease(LEASE, &holder, now, LEASE_MS).await {
            Ok(true) => {}
            Ok(false) => continue, // another instance is on it
            Err(e) => {
                tracing::warn!(error = %e, "retention: cannot take the lease");
                continue;
            }
        }
        if let Some(logto) = &logto {
            crate::logto::delete_pending(&store, logto, now).await;
        }
        if let Some(mailer) = &mailer {
            crate::mailer::email_policy_changes(
                &store,
                mailer,
                &config.control_plane.public_url,
                now,
            )
            .await;
        }
        match run_once(&store, &access_log_dir, now).await {
            Ok(report) if report != Report::default() => {
                tracing::info!(?report, "retention jobs removed expired data");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention jobs failed; retrying next hour"),
        }
        let _ = store.release_lease(LEASE, &holder).await;
    }
}
