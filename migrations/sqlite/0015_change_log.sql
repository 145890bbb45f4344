-- The change log (see the Postgres migration of the same name): every key or account
-- change proxies cache, written in the same transaction as the change. SQLite has one
-- writer at a time, so `seq` order is commit order.
CREATE TABLE change_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    change TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
