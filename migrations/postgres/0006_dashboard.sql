-- The dashboard and admin console. (Same in migrations/postgres/ and migrations/sqlite/.)

-- An admin can suspend a key (refused by the proxy until unsuspended) without revoking
-- it for good.
ALTER TABLE api_keys ADD COLUMN suspended_at BIGINT;

-- The audit log keeps what an admin action changed: the state before and after (JSON).
ALTER TABLE admin_actions ADD COLUMN before_state TEXT;
ALTER TABLE admin_actions ADD COLUMN after_state TEXT;

-- Dashboard banners. A policy change ([P21]) names the day it takes effect, at least
-- 14 days after it is announced.
CREATE TABLE announcements (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,              -- notice | policy
    message       TEXT NOT NULL,
    starts_at     BIGINT NOT NULL,            -- shown from
    ends_at       BIGINT,                     -- shown until (NULL: until retired)
    effective_at  BIGINT,                     -- policy changes: when they take effect
    created_by    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    retired_at    BIGINT
);
CREATE INDEX announcements_starts ON announcements(starts_at);
