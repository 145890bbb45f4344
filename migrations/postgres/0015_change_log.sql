-- The change log: every key or account change proxies cache, written in the same
-- transaction as the change itself. Nodes without a Redis broadcast follow it (a read
-- of the rows after the last one they saw, a few times a second) and drop what they
-- cached, so keys can stay in memory for long without a revoked key working for more
-- than a moment (see proxy/src/change_log.rs). Writers take a lock on the table first,
-- so `seq` order is commit order and a follower never skips a late-committing row.
CREATE TABLE change_log (
    seq BIGSERIAL PRIMARY KEY,
    change TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
