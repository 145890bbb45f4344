-- Postgres drops the foreign keys of usage_events and ledger_entries here, for the
-- usage writer's insert rate (see migrations/postgres/0003). SQLite keeps them: its
-- single writer does not pay Postgres's per-row locks. Nothing changes in this file;
-- it keeps the two migration histories numbered alike.
SELECT 1;
