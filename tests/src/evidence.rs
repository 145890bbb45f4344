//! Where a test looks for data TokenRoute might hold: every text value of every table
//! (a logical dump, so deleted rows in free pages do not count as held), every file
//! under a folder, and every key and string value in Redis.

use std::path::Path;

use sqlx::Row;
use tokenroute_store::{Backend, Store};

/// Every value of every table as text, one per line (newlines in a value written
/// `\n`), prefixed `table.column:`.
pub async fn dump(store: &Store) -> String {
    let tables: Vec<String> = match store.backend() {
        Backend::Postgres => sqlx::query_scalar(
            "SELECT CAST(table_name AS TEXT) FROM information_schema.tables
             WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
        ),
        Backend::Sqlite => sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        ),
    }
    .fetch_all(store.pool())
    .await
    .unwrap();
    let mut out = String::new();
    // sqlx's own bookkeeping (migration checksums are binary) holds no user data.
    for table in tables.into_iter().filter(|t| !t.starts_with("_sqlx")) {
        let columns: Vec<String> = match store.backend() {
            Backend::Postgres => sqlx::query_scalar(
                "SELECT CAST(column_name AS TEXT) FROM information_schema.columns
                 WHERE table_schema = 'public' AND table_name = $1",
            )
            .bind(table.clone())
            .fetch_all(store.pool())
            .await
            .unwrap(),
            // Table names come from sqlite_master itself, not from input.
            Backend::Sqlite => {
                sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{table}')"))
                    .fetch_all(store.pool())
                    .await
                    .unwrap()
            }
        };
        for column in columns {
            let rows = sqlx::query(&format!(
                "SELECT CAST(\"{column}\" AS TEXT) AS v FROM \"{table}\""
            ))
            .fetch_all(store.pool())
            .await
            .unwrap();
            for row in rows {
                if let Ok(Some(v)) = row.try_get::<Option<String>, _>("v") {
                    // One line per value, whatever it holds (a provider's answer
                    // kept as it came may span lines).
                    let v = v.replace('\n', "\\n");
                    out.push_str(&format!("{table}.{column}: {v}\n"));
                }
            }
        }
    }
    out
}

/// Every file under `dir` (recursively) that contains `needle`, by path.
pub fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path) {
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// Redis keys (and string values) containing `needle`; empty when Redis is not there.
pub fn redis_containing(needle: &str) -> Vec<String> {
    let cli = |args: &[&str]| {
        std::process::Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", "6379"])
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let Some(keys) = cli(&["--scan"]) else {
        return Vec::new();
    };
    keys.lines()
        .filter(|key| {
            key.contains(needle) || cli(&["GET", key]).is_some_and(|value| value.contains(needle))
        })
        .map(str::to_string)
        .collect()
}
