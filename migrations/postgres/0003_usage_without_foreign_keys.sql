-- The two tables written for every metered request lose their foreign keys on
-- Postgres: checking them (an index probe and a row lock on the account and the key
-- for every row) more than halved the usage writer's insert rate. Their integrity
-- is the writer's: every usage event comes from an authenticated key of an existing
-- account, accounts are never deleted (only purged of personal data), and
-- `tokenroute ledger verify` reports any usage row or ledger entry without its
-- account. (SQLite keeps them: its single writer does not pay the row locks.)
ALTER TABLE usage_events DROP CONSTRAINT IF EXISTS usage_events_account_id_fkey;
ALTER TABLE usage_events DROP CONSTRAINT IF EXISTS usage_events_key_id_fkey;
ALTER TABLE ledger_entries DROP CONSTRAINT IF EXISTS ledger_entries_account_id_fkey;
