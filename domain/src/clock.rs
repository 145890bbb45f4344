//! Wall-clock time as the store keeps it: integer milliseconds since the Unix epoch.
//!
//! Both store backends hold timestamps as BIGINT milliseconds so one set of queries
//! works on Postgres and SQLite alike.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
