//! Backups ([P13]): a full copy of the database in one file — `pg_dump` custom format
//! for Postgres, `VACUUM INTO` for SQLite — named by its UTC time, the newest `keep`
//! kept; and the way back. The control plane takes one nightly.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::connect::Backend;
use crate::{Store, StoreError};

const PREFIX: &str = "tokenroute-";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("backup folder {0}: {1}")]
    Folder(String, std::io::Error),
    #[error("{tool} failed: {message}")]
    Tool { tool: &'static str, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} is not a TokenRoute backup (expected {PREFIX}<time>.dump or .sqlite)")]
    NotABackup(String),
}

fn extension(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "dump",
        Backend::Sqlite => "sqlite",
    }
}

/// `tokenroute-20261129T030000Z.dump`: names sort in time order.
fn file_name(backend: Backend, now_ms: i64) -> String {
    let time = chrono::DateTime::from_timestamp_millis(now_ms)
        .map(|t| t.format("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_else(|| "unknown".into());
    format!("{PREFIX}{time}.{}", extension(backend))
}

/// The backups in `dir`, oldest first.
pub fn backups(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with(PREFIX) && (n.ends_with(".dump") || n.ends_with(".sqlite"))
            })
        })
        .collect();
    found.sort();
    found
}

fn run(tool: &'static str, command: &mut Command) -> Result<(), BackupError> {
    let output = command.output().map_err(|e| BackupError::Tool {
        tool,
        message: format!("cannot run it ({e}); is the PostgreSQL client installed?"),
    })?;
    if !output.status.success() {
        return Err(BackupError::Tool {
            tool,
            message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(())
}

impl Store {
    /// Writes a backup of the whole database into `dir` as of `now_ms`, then deletes all
    /// but the newest `keep` backups there. Returns the new file.
    pub async fn backup(
        &self,
        url: &str,
        dir: &Path,
        now_ms: i64,
        keep: usize,
    ) -> Result<PathBuf, BackupError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| BackupError::Folder(dir.display().to_string(), e))?;
        let path = dir.join(file_name(self.backend, now_ms));
        // Written under a temporary name, renamed when complete: a crash mid-way never
        // leaves a half backup that looks whole.
        let partial = path.with_extension("partial");
        let _ = std::fs::remove_file(&partial);
        match self.backend {
            Backend::Postgres => run(
                "pg_dump",
                Command::new("pg_dump")
                    .arg("--format=custom")
                    .arg("--no-owner")
                    .arg(format!("--file={}", partial.display()))
                    .arg(url),
            )?,
            Backend::Sqlite => {
                sqlx::query("VACUUM INTO $1")
                    .bind(partial.display().to_string())
                    .execute(&self.pool)
                    .await
                    .map_err(StoreError::from)?;
            }
        }
        std::fs::rename(&partial, &path)
            .map_err(|e| BackupError::Folder(dir.display().to_string(), e))?;
        let all = backups(dir);
        for old in all.iter().take(all.len().saturating_sub(keep.max(1))) {
            std::fs::remove_file(old)
                .map_err(|e| BackupError::Folder(old.display().to_string(), e))?;
        }
        Ok(path)
    }
}

/// Restores `file` into the database at `url`, replacing what is there. For SQLite the
/// database file is replaced: stop TokenRoute first. For Postgres, `pg_restore --clean`
/// drops and recreates every object of the backup.
pub fn restore(url: &str, file: &Path) -> Result<(), BackupError> {
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    if !name.starts_with(PREFIX) {
        return Err(BackupError::NotABackup(file.display().to_string()));
    }
    if let Some(db) = tokenroute_domain::config::sqlite_path(url) {
        if !name.ends_with(".sqlite") {
            return Err(BackupError::NotABackup(file.display().to_string()));
        }
        for stale in [format!("{db}-wal"), format!("{db}-shm")] {
            let _ = std::fs::remove_file(stale);
        }
        std::fs::copy(file, db).map_err(|e| BackupError::Folder(db.to_string(), e))?;
        return Ok(());
    }
    if !name.ends_with(".dump") {
        return Err(BackupError::NotABackup(file.display().to_string()));
    }
    run(
        "pg_restore",
        Command::new("pg_restore")
            .arg("--clean")
            .arg("--if-exists")
            .arg("--no-owner")
            .arg("--single-transaction")
            .arg(format!("--dbname={url}"))
            .arg(file),
    )
}
