//! Wall-clock time as the store keeps it: integer milliseconds since the Unix epoch.
//!
//! Both store backends hold timestamps as BIGINT milliseconds so one set of queries
//! works on Postgres and SQLite alike.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Datelike, TimeZone, Utc};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

const DAY_MS: i64 = 86_400_000;

/// Start (ms) of the UTC day holding `ms`.
pub fn day_start_ms(ms: i64) -> i64 {
    ms - ms.rem_euclid(DAY_MS)
}

/// Start (ms) of the UTC calendar month holding `ms`.
pub fn month_start_ms(ms: i64) -> i64 {
    let t = utc(ms);
    first_of_month(t.year(), t.month())
}

/// Start (ms) of the UTC calendar month after the one holding `ms`.
pub fn next_month_start_ms(ms: i64) -> i64 {
    let t = utc(ms);
    match t.month() {
        12 => first_of_month(t.year() + 1, 1),
        m => first_of_month(t.year(), m + 1),
    }
}

/// The UTC day of `ms` as `YYYY-MM-DD` (empty for a time chrono cannot represent).
pub fn ymd(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// `YYYY-MM-DD` → the first millisecond of that UTC day.
pub fn parse_ymd(text: &str) -> Option<i64> {
    chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .ok()?
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp_millis())
}

fn utc(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn first_of_month(year: i32, month: u32) -> i64 {
    Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0)
        .single()
        .map_or(0, |d| d.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_boundaries_are_utc() {
        // 2026-11-28T23:17:41Z
        let t = 1_795_907_861_000;
        assert_eq!(day_start_ms(t), 1_795_824_000_000); // 2026-11-28T00:00Z
        assert_eq!(month_start_ms(t), 1_793_491_200_000); // 2026-11-01T00:00Z
        assert_eq!(next_month_start_ms(t), 1_796_083_200_000); // 2026-12-01T00:00Z
                                                               // December rolls into the next year.
        assert_eq!(next_month_start_ms(1_796_083_200_000), 1_798_761_600_000); // 2027-01-01
        assert_eq!(month_start_ms(1_709_208_000_000), 1_706_745_600_000); // 2024-02-29 → 02-01
    }
}
