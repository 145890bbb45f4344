-- Per-key spend caps by calendar day and month (UTC), next to the lifetime cap
-- (api_keys.spend_limit_nanos). NULL means no cap.
ALTER TABLE api_keys ADD COLUMN spend_limit_day_nanos BIGINT;
ALTER TABLE api_keys ADD COLUMN spend_limit_month_nanos BIGINT;

-- The client went away before the answer was complete (it is still billed for what
-- the provider produced).
ALTER TABLE usage_events ADD COLUMN cancelled BIGINT NOT NULL DEFAULT 0;

-- Spend per key over a period (caps, GET /v1/key).
CREATE INDEX usage_events_key_time ON usage_events(key_id, created_at);

-- The balance projection: each account's ledger sum, maintained in the same
-- transaction as every ledger insert, so reading a balance is one row, not a scan of
-- years of entries. `tokenroute ledger verify` recomputes it from the ledger.
CREATE TABLE account_balances (
    account_id     TEXT PRIMARY KEY REFERENCES accounts(id),
    balance_nanos  BIGINT NOT NULL
);
INSERT INTO account_balances (account_id, balance_nanos)
    SELECT account_id, CAST(SUM(amount_nanos) AS BIGINT) FROM ledger_entries GROUP BY account_id;
