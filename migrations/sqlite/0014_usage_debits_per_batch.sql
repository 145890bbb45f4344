-- Usage is debited once per account per written batch instead of once per request (see
-- the Postgres migration of the same name). Each usage row names the ledger entry that
-- charged it; rows written before this carry their own debit.
ALTER TABLE usage_events ADD COLUMN debit_id TEXT;
UPDATE usage_events SET debit_id = (
    SELECT l.id FROM ledger_entries l
    WHERE l.kind = 'usage' AND l.reference = usage_events.request_id);
