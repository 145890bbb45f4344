//! What can go wrong talking to the store.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot prepare the SQLite data directory {path}: {message}")]
    DataDir { path: String, message: String },
    #[error("cannot connect to the store: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("migrating the store failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("store query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
}
