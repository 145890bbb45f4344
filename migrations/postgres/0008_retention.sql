-- Retention ([P14] [P15]). (Same in migrations/postgres/ and migrations/sqlite/.)

-- When a deleted account's personal data (email, name) was purged, 30 days after its
-- deletion. Its usage and ledger stay, pseudonymous, for their 7 years.
ALTER TABLE accounts ADD COLUMN purged_at BIGINT;
CREATE INDEX accounts_deleted ON accounts(status, deleted_at);

-- Leases for scheduled jobs: several control-plane instances may run; one at a time
-- runs a job (the jobs are idempotent anyway).
CREATE TABLE job_leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);

-- Ledger entries by time, for expiring those past 7 years.
CREATE INDEX ledger_entries_time ON ledger_entries(created_at);
CREATE INDEX usage_events_time ON usage_events(created_at);
