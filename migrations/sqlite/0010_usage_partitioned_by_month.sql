-- Postgres partitions usage by month here (see migrations/postgres/). SQLite — the
-- single-node embedded store — keeps one table; its indexes on (account_id,
-- created_at), (key_id, created_at) and (created_at) serve the same queries.
SELECT 1;
