-- The control plane: dashboard sessions, Stripe bookkeeping, the admin audit log.
-- (Same in migrations/postgres/ and migrations/sqlite/.)

-- Dashboard sessions, server-side so sign-out (or an admin) ends them everywhere
-- ([P18]). The foundation's `sessions` table was never used; sessions now also hold
-- the sign-in state before there is an account, so account_id may be NULL.
-- id is the SHA-256 of the session id in the cookie: the cookie itself is never stored.
DROP TABLE sessions;
CREATE TABLE web_sessions (
    id          TEXT PRIMARY KEY,
    account_id  TEXT,                        -- NULL until sign-in completes
    data        TEXT NOT NULL,               -- JSON: sign-in state, CSRF token, role
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX web_sessions_account ON web_sessions(account_id);
CREATE INDEX web_sessions_expiry ON web_sessions(expires_at);

-- A paid top-up's PaymentIntent, so refunds and disputes (which name the payment, not
-- the Checkout Session) find their account ([P4]: ids only, never card data).
ALTER TABLE topups ADD COLUMN stripe_payment_intent TEXT;
CREATE INDEX topups_payment_intent ON topups(stripe_payment_intent);

-- Every admin action, who did it and to what.
CREATE TABLE admin_actions (
    id           TEXT PRIMARY KEY,
    admin_email  TEXT NOT NULL,
    action       TEXT NOT NULL,
    target       TEXT NOT NULL,
    detail       TEXT,
    created_at   BIGINT NOT NULL
);
CREATE INDEX admin_actions_time ON admin_actions(created_at);
