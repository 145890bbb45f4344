//! The privacy notice (`shared/PRIVACY.md`), statement by statement: each module is
//! named after the statement(s) it proves. `README.md` here maps every statement id to
//! its tests, including those proven in the other suites.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod p03_p06_bodies_are_kept_nowhere_but_debug_logs;
mod p05_p16_access_logs;
mod p13_backups;
mod p14_deleted_accounts_are_purged;
mod p15_usage_and_ledger_kept_seven_years;
mod p18_sessions_expire;
mod p19_export_holds_everything;
mod p20_admin_deletes_an_account;
