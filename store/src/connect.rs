//! Opening the store by URL, and applying migrations.

use std::path::Path;
use std::time::Duration;

use std::str::FromStr;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{ConnectOptions, Executor};

use crate::{Store, StoreError};

static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Store {
    /// Connects to `url` (`postgres://...` or `sqlite://PATH`), creating the SQLite file
    /// and its folder when missing. Does not migrate; see [`Store::migrate`].
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let url = match backend {
            Backend::Sqlite => prepare_sqlite(url)?,
            Backend::Postgres => url.to_string(),
        };
        let mut options = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10));
        if backend == Backend::Sqlite {
            // Per connection: wait for a writer in another process (the CLI while `serve`
            // runs) instead of failing, and durability that WAL makes cheap.
            options = options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute("PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
                        .await?;
                    Ok(())
                })
            });
        }
        // sqlx logs a slow statement at WARN with its whole text — a 16,000-parameter
        // usage batch fills the log. Slow statements are debug news here.
        let connect = AnyConnectOptions::from_str(&url)
            .map_err(StoreError::Connect)?
            .log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1));
        let pool = options
            .connect_with(connect)
            .await
            .map_err(StoreError::Connect)?;
        if backend == Backend::Sqlite {
            // WAL lets readers and one writer work at once; it is a property of the file.
            pool.execute("PRAGMA journal_mode = WAL")
                .await
                .map_err(StoreError::Connect)?;
        }
        Ok(Store {
            pool,
            backend,
            changes: crate::changes::Listener::default(),
        })
    }

    /// Applies the migrations in `migrations/<backend>/` that have not run yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.backend {
            Backend::Postgres => &POSTGRES_MIGRATIONS,
            Backend::Sqlite => &SQLITE_MIGRATIONS,
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// Connects and migrates: what every command that uses the store does first.
    pub async fn open(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        let store = Store::connect(url, max_connections).await?;
        store.migrate().await?;
        Ok(store)
    }
}

/// Creates the folder of a SQLite database and asks sqlx to create the file.
fn prepare_sqlite(url: &str) -> Result<String, StoreError> {
    let path = tokenroute_domain::config::sqlite_path(url).unwrap_or("");
    if let Some(dir) = Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::DataDir {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
    }
    Ok(if url.contains('?') {
        url.to_string()
    } else {
        format!("{url}?mode=rwc")
    })
}
